//! Backups, verify, restore and export against the real binary: a live
//! backup through the running server's control socket during a delivery
//! storm, a restore that keeps UIDVALIDITY and UIDs, damage that verify
//! must name, and a backup killed halfway.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;

use common::imap_client::*;
use common::*;

fn letterbox(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().expect("letterbox")
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// A directory the server (which drops to `nobody` when the tests run as
/// root) may write into.
fn writable_dir(name: &str) -> TempDir {
    let dir = TempDir::new(name);
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&dir.0, std::fs::Permissions::from_mode(0o777)).unwrap();
    dir
}

fn finished_backups(dest: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dest)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("letterbox-")
        })
        .collect();
    found.sort();
    found
}

/// UIDVALIDITY and (UID, Subject) of a mailbox's messages.
fn uids_and_subjects(port: u16, mailbox: &str) -> (String, Vec<(u32, String)>) {
    let mut c = Client::login(port, "alice");
    let examined = c.ok(&format!("EXAMINE {mailbox}"));
    let validity = examined
        .iter()
        .find_map(|l| l.strip_prefix("* OK [UIDVALIDITY "))
        .and_then(|l| l.split(']').next())
        .unwrap()
        .to_string();
    let mut messages = Vec::new();
    for line in c.ok("UID FETCH 1:* (UID BODY.PEEK[HEADER.FIELDS (Subject)])") {
        let uid = line.split("UID ").nth(1).unwrap();
        let uid: u32 = uid.split(' ').next().unwrap().parse().unwrap();
        let subject = line.split("Subject: ").nth(1).unwrap_or("").trim();
        messages.push((uid, subject.trim_end_matches(')').trim().to_string()));
    }
    (validity, messages)
}

#[test]
fn a_live_backup_during_a_delivery_storm_verifies_and_restores_the_same_uids() {
    let mut server = Server::new("live-backup", &["alice"]);
    server.start();
    for i in 0..30 {
        deliver(&server, "alice", &format!("before {i:02}"), "x");
    }
    {
        // Some history: an expunge and a flag, so UIDs have a gap.
        let mut c = Client::login(server.ports.imap, "alice");
        c.select("INBOX");
        c.ok("STORE 3 +FLAGS (\\Deleted \\Seen)");
        c.ok("EXPUNGE");
        c.ok("CREATE Archive/2026");
        // Per-user settings (METADATA) are part of what a backup keeps.
        c.ok("SETMETADATA Archive/2026 (/private/comment \"kept\")");
    }
    let (validity, before) = uids_and_subjects(server.ports.imap, "INBOX");
    assert_eq!(before.len(), 29);

    // Deliveries go on while the backup is taken.
    let stop = Arc::new(AtomicBool::new(false));
    let delivered = Arc::new(AtomicU32::new(0));
    let storm = {
        let (stop, delivered) = (stop.clone(), delivered.clone());
        let server_lmtp = server.ports.lmtp;
        std::thread::spawn(move || {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) && n < 2000 {
                let body = format!("Subject: during {n}\r\n\r\nstorm\r\n");
                if lmtp_send(server_lmtp, body.as_bytes()) {
                    delivered.fetch_add(1, Ordering::Relaxed);
                }
                n += 1;
            }
        })
    };
    while delivered.load(Ordering::Relaxed) < 5 {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let dest = writable_dir("backup-dest");
    let data = server.data.to_str().unwrap().to_string();
    let output = letterbox(&["backup", dest.0.to_str().unwrap(), "--data", &data]);
    stop.store(true, Ordering::Relaxed);
    storm.join().unwrap();
    assert!(output.status.success(), "{}", text(&output));
    let backups = finished_backups(&dest.0);
    assert_eq!(backups.len(), 1, "{}", text(&output));
    let backup = backups[0].to_str().unwrap().to_string();
    assert!(text(&output).contains(&backup), "{}", text(&output));
    assert!(delivered.load(Ordering::Relaxed) > 5);

    // verify passes on the backup, and on the live data directory (through
    // the server).
    let verified = letterbox(&["verify", &backup]);
    assert!(verified.status.success(), "{}", text(&verified));
    assert!(
        text(&verified).contains("no problems found"),
        "{}",
        text(&verified)
    );
    let live = letterbox(&["verify", &data]);
    assert!(live.status.success(), "{}", text(&live));
    assert!(text(&live).contains("no problems found"), "{}", text(&live));

    // export while the server runs: from the server's own snapshot.
    let out = writable_dir("live-export");
    let target = out.0.join("alice");
    let exported = letterbox(&["export", "alice", target.to_str().unwrap(), "--data", &data]);
    assert!(exported.status.success(), "{}", text(&exported));
    let files = std::fs::read_dir(target.join("INBOX/cur")).unwrap().count();
    assert!(files >= 29, "{files} files exported");

    // Restore into a new data directory: the same UIDVALIDITY and UIDs.
    server.stop();
    let mut restored = Server::new("restored", &[]);
    let target_data = restored.data.to_str().unwrap().to_string();
    let output = letterbox(&["restore", &backup, "--data", &target_data]);
    assert!(output.status.success(), "{}", text(&output));
    restored.start();
    let (validity_after, after) = uids_and_subjects(restored.ports.imap, "INBOX");
    assert_eq!(validity_after, validity);
    assert_eq!(
        after[..29],
        before[..],
        "the messages from before the backup"
    );
    assert!(after[29..].iter().all(|(_, s)| s.starts_with("during ")));
    let mut c = Client::login(restored.ports.imap, "alice");
    assert_eq!(
        c.ok("LIST \"\" Archive/*"),
        ["* LIST (\\HasNoChildren) \"/\" \"Archive/2026\""]
    );
    assert_eq!(
        c.ok("GETMETADATA Archive/2026 /private/comment"),
        ["* METADATA \"Archive/2026\" (/private/comment \"kept\")"]
    );

    // A restore over a directory in use is refused; one over a stopped
    // server keeps the replaced files aside.
    let again = letterbox(&["restore", &backup, "--data", &target_data]);
    assert!(!again.status.success());
    assert!(text(&again).contains("stop it first"), "{}", text(&again));
    restored.stop();
    let again = letterbox(&["restore", &backup, "--data", &target_data]);
    assert!(again.status.success(), "{}", text(&again));
    let aside = std::fs::read_dir(&restored.data)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("replaced-"))
        .count();
    assert_eq!(aside, 1);
}

/// One message over LMTP; true if it got 250.
fn lmtp_send(port: u16, body: &[u8]) -> bool {
    use std::io::{BufRead, BufReader, Write};
    let Ok(stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    // Reads reply lines until one starts with `code` (true) or the
    // connection ends (false).
    let mut until = |code: &str| {
        let mut line = String::new();
        loop {
            line.clear();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return false;
            }
            if line.starts_with(code) {
                return true;
            }
        }
    };
    if !until("220") {
        return false;
    }
    let _ =
        writer.write_all(b"LHLO test\r\nMAIL FROM:<s@example.org>\r\nRCPT TO:<alice>\r\nDATA\r\n");
    if !until("354") {
        return false;
    }
    let _ = writer.write_all(body);
    let _ = writer.write_all(b".\r\n");
    until("250")
}

#[test]
fn verify_names_a_truncated_or_changed_backup() {
    let mut server = Server::new("damaged-backup", &["alice"]);
    server.start();
    for i in 0..10 {
        deliver(&server, "alice", &format!("m{i}"), "some text to back up");
    }
    server.stop();
    // The server is stopped: the command opens the store itself.
    let dest = writable_dir("damage-dest");
    let data = server.data.to_str().unwrap().to_string();
    let output = letterbox(&["backup", dest.0.to_str().unwrap(), "--data", &data]);
    assert!(output.status.success(), "{}", text(&output));
    let backup = finished_backups(&dest.0).remove(0);
    assert!(letterbox(&["verify", backup.to_str().unwrap()])
        .status
        .success());

    let copy = |name: &str| {
        let to = dest.0.join(name);
        std::fs::create_dir(&to).unwrap();
        for file in ["letterbox.redb", "users", "manifest"] {
            std::fs::copy(backup.join(file), to.join(file)).unwrap();
        }
        to
    };
    let truncated = copy("truncated");
    let db = truncated.join("letterbox.redb");
    let len = std::fs::metadata(&db).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&db)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    let changed = copy("changed");
    let db = changed.join("letterbox.redb");
    let mut bytes = std::fs::read(&db).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    std::fs::write(&db, bytes).unwrap();
    for damaged in [truncated, changed] {
        let output = letterbox(&["verify", damaged.to_str().unwrap()]);
        assert!(!output.status.success(), "{}", text(&output));
        assert!(
            text(&output).contains("letterbox.redb: checksum or size differs from the manifest"),
            "{}",
            text(&output)
        );
    }
    // A changed users file is named too.
    let users = copy("users-changed");
    std::fs::write(users.join("users"), "mallory:{PLAIN}x\n").unwrap();
    let output = letterbox(&["verify", users.to_str().unwrap()]);
    assert!(!output.status.success());
    assert!(
        text(&output).contains("users: checksum"),
        "{}",
        text(&output)
    );
}

#[test]
fn a_backup_killed_halfway_never_looks_finished() {
    let mut server = Server::new("killed-backup", &["alice"]);
    server.start();
    let big = format!(
        "Subject: big\r\n\r\n{}\r\n",
        "0123456789abcdef".repeat(65536)
    );
    for _ in 0..12 {
        let replies = lmtp_deliver(&server, "s@example.org", &["alice"], big.as_bytes());
        assert!(replies[0].starts_with("250"), "{replies:?}");
    }
    server.stop();
    let dest = writable_dir("killed-dest");
    let data = server.data.to_str().unwrap().to_string();
    for delay in [5, 30, 120] {
        let mut child = Command::new(BIN)
            .args(["backup", dest.0.to_str().unwrap(), "--data", &data])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(delay));
        let _ = child.kill();
        let _ = child.wait();
        // Whatever the moment: a directory with a finished name is whole.
        for backup in finished_backups(&dest.0) {
            let output = letterbox(&["verify", backup.to_str().unwrap()]);
            assert!(output.status.success(), "{}", text(&output));
        }
        // Names are per second: the next round gets a new one.
        std::thread::sleep(std::time::Duration::from_millis(1100));
    }
    let output = letterbox(&["backup", dest.0.to_str().unwrap(), "--data", &data]);
    assert!(output.status.success(), "{}", text(&output));
    // The store itself was never touched.
    assert!(letterbox(&["verify", &data]).status.success());
}

#[test]
fn the_control_socket_is_for_the_server_user_only() {
    let mut server = Server::new("control", &["alice"]);
    server.start();
    let socket = server.data.join("control.sock");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    // A request the server does not know, and a relative path, are refused.
    for request in ["format\t/\n", "backup\trelative\n"] {
        let mut raw = std::os::unix::net::UnixStream::connect(&socket).unwrap();
        use std::io::{Read, Write};
        raw.write_all(request.as_bytes()).unwrap();
        let mut answer = String::new();
        raw.read_to_string(&mut answer).unwrap();
        assert!(answer.starts_with("err "), "{answer}");
    }
    server.stop();
    assert!(!socket.exists(), "removed at shutdown");
}

#[test]
fn scheduled_backups_keep_the_newest_and_survive_a_missing_disk() {
    let dest = writable_dir("scheduled");
    let mut server = Server::new("scheduled", &["alice"]);
    let dest_arg = dest.0.to_str().unwrap().to_string();
    server.start_with(&[
        "--backup-dir",
        &dest_arg,
        "--backup-every",
        "1s",
        "--backup-keep",
        "2",
    ]);
    deliver(&server, "alice", "kept", "x");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while server.log_text().matches("deleted the old backup").count() < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "{}",
            server.log_text()
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let kept = finished_backups(&dest.0);
    assert!(kept.len() <= 3, "{kept:?}");
    for backup in &kept[..2] {
        let output = letterbox(&["verify", backup.to_str().unwrap()]);
        assert!(output.status.success(), "{}", text(&output));
    }
    // The disk goes away: logged, retried, and the server goes on.
    std::fs::remove_dir_all(&dest.0).unwrap();
    while !server.log_text().contains("scheduled backup into") {
        assert!(
            std::time::Instant::now() < deadline,
            "{}",
            server.log_text()
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(server
        .log_text()
        .contains("is not a directory (is the disk mounted?)"));
    let mut c = Client::login(server.ports.imap, "alice");
    assert!(c.select("INBOX").contains(&"* 1 EXISTS".to_string()));
}

/// Turns a backup's database into what the previous schema (7) wrote: no
/// date order. The manifest follows, as that letterbox wrote it.
fn make_schema_7(backup: &Path) {
    let db = backup.join("letterbox.redb");
    {
        let database = redb::Database::create(&db).unwrap();
        let txn = database.begin_write().unwrap();
        let date_order: redb::TableDefinition<(u64, &[u8], u32), ()> =
            redb::TableDefinition::new("date_order");
        assert!(txn.delete_table(date_order).unwrap());
        let meta: redb::TableDefinition<&str, &[u8]> = redb::TableDefinition::new("meta");
        txn.open_table(meta)
            .unwrap()
            .insert("schema_version", 7u32.to_le_bytes().as_slice())
            .unwrap();
        txn.commit().unwrap();
    }
    let digest = Command::new("sha256sum").arg(&db).output().unwrap();
    let digest = String::from_utf8(digest.stdout).unwrap();
    let digest = digest.split(' ').next().unwrap();
    let size = std::fs::metadata(&db).unwrap().len();
    let manifest = std::fs::read_to_string(backup.join("manifest")).unwrap();
    let manifest: Vec<String> = manifest
        .lines()
        .map(|line| match line {
            l if l.starts_with("schema ") => "schema 7".to_string(),
            l if l.starts_with("file letterbox.redb ") => {
                format!("file letterbox.redb {size} sha256:{digest}")
            }
            l => l.to_string(),
        })
        .collect();
    std::fs::write(backup.join("manifest"), manifest.join("\n") + "\n").unwrap();
}

#[test]
fn a_backup_from_before_an_upgrade_verifies_restores_and_is_upgraded() {
    // Backups made by the previous letterbox (schema 7) must still verify
    // and restore after the upgrade to this one.
    let mut server = Server::new("old-backup", &["alice"]);
    server.start();
    for (i, day) in [3, 1, 2].iter().enumerate() {
        let message =
            format!("Date: {day} Jan 2026 10:00:00 +0000\r\nSubject: m{i}\r\n\r\nbody\r\n");
        let replies = lmtp_deliver(&server, "x@example.org", &["alice"], message.as_bytes());
        assert!(replies.iter().all(|r| r.starts_with("250")), "{replies:?}");
    }
    server.stop();
    let dest = writable_dir("old-backup-dest");
    let data = server.data.to_str().unwrap().to_string();
    let output = letterbox(&["backup", dest.0.to_str().unwrap(), "--data", &data]);
    assert!(output.status.success(), "{}", text(&output));
    let backup = finished_backups(&dest.0).remove(0);
    make_schema_7(&backup);

    let verified = letterbox(&["verify", backup.to_str().unwrap()]);
    assert!(verified.status.success(), "{}", text(&verified));
    let mut restored = Server::new("old-backup-restored", &[]);
    let target = restored.data.to_str().unwrap().to_string();
    let output = letterbox(&["restore", backup.to_str().unwrap(), "--data", &target]);
    assert!(output.status.success(), "{}", text(&output));
    restored.start();
    let log = restored.log_text();
    assert!(
        log.contains("upgraded the database to schema 8 (date order of 3 messages)"),
        "{log}"
    );
    let mut c = Client::login(restored.ports.imap, "alice");
    c.select("INBOX");
    assert_eq!(c.ok("SORT (DATE) UTF-8 ALL"), ["* SORT 2 3 1"]);
    restored.stop();
    let verified = letterbox(&["verify", &target]);
    assert!(verified.status.success(), "{}", text(&verified));
}
