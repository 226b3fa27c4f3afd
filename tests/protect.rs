//! The store protects itself: a full disk costs the writes that meet it and
//! nothing after, a reserve of free space is kept for the writes that make
//! room, and damaged message bytes are answered as damage, not served.

mod common;

use std::io::Write;
use std::path::PathBuf;
use std::process::Command;

use common::imap_client::Client;
use common::*;

/// A small tmpfs, unmounted on drop: a disk the test can fill.
struct Tmpfs(PathBuf);

impl Tmpfs {
    /// None (with a note) when not root, since only root may mount.
    fn mount(name: &str, megabytes: u32) -> Option<Tmpfs> {
        if !is_root() {
            eprintln!("note: {name} skipped: mounting a small tmpfs needs root");
            return None;
        }
        let path =
            std::env::temp_dir().join(format!("letterbox-disk-{name}-{}", std::process::id()));
        let _ = Command::new("umount").arg(&path).output();
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={megabytes}m,mode=0755")])
            .arg("tmpfs")
            .arg(&path)
            .status()
            .unwrap();
        assert!(status.success(), "mount a tmpfs on {}", path.display());
        Some(Tmpfs(path))
    }

    fn free_bytes(&self) -> u64 {
        let path = std::ffi::CString::new(self.0.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: statvfs writes into the zeroed struct we pass.
        unsafe {
            let mut st: libc::statvfs = std::mem::zeroed();
            assert_eq!(libc::statvfs(path.as_ptr(), &mut st), 0);
            st.f_bavail as u64 * st.f_frsize as u64
        }
    }

    /// Writes a file of zeros until about `leave` bytes stay free.
    fn fill_leaving(&self, leave: u64) -> PathBuf {
        let path = self.0.join("filler");
        let mut file = std::fs::File::create(&path).unwrap();
        let block = vec![0u8; 1 << 20];
        while self.free_bytes() > leave + block.len() as u64 {
            file.write_all(&block).unwrap();
        }
        file.sync_all().unwrap();
        path
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        let _ = std::fs::remove_dir(&self.0);
    }
}

/// A server whose DATA is on `disk`, with alice's users file.
fn server_on(disk: &Tmpfs, name: &str) -> Server {
    let mut server = Server::new(name, &["alice"]);
    let data = disk.0.join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::copy(server.data.join("users"), data.join("users")).unwrap();
    server.data = data;
    server
}

/// A message of about `size` bytes whose subject names it.
fn message(n: usize, size: usize) -> Vec<u8> {
    let mut raw = format!("From: fill@example.org\r\nSubject: fill {n}\r\n\r\n").into_bytes();
    let mut x = n as u64 + 1;
    while raw.len() < size {
        for _ in 0..76 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            raw.push(b'a' + ((x >> 33) % 26) as u8);
        }
        raw.extend_from_slice(b"\r\n");
    }
    raw
}

/// One LMTP transaction for alice; the reply that decided it (the DATA
/// refusal, or the reply after the message).
fn deliver(server: &Server, body: &[u8]) -> String {
    let mut c = Raw {
        reader: std::io::BufReader::new(server.lmtp()),
    };
    assert!(c.line().starts_with("220"));
    c.send(b"LHLO test\r\n");
    while c.line().starts_with("250-") {}
    assert!(c.cmd("MAIL FROM:<fill@example.org>").starts_with("250"));
    assert!(c.cmd("RCPT TO:<alice>").starts_with("250"));
    let data = c.cmd("DATA");
    if !data.starts_with("354") {
        return data;
    }
    c.send(body);
    c.send(b"\r\n.\r\n");
    c.line()
}

/// The subjects of every message in alice's INBOX, read over IMAP, and the
/// FETCH's tagged reply.
fn subjects(client: &mut Client) -> (Vec<String>, String) {
    client.select("INBOX");
    let reply = client.call("FETCH 1:* (BODY.PEEK[HEADER.FIELDS (SUBJECT)])");
    let found = reply
        .lines
        .iter()
        .filter_map(|l| l.split("Subject: ").nth(1))
        .map(|s| s.split('\r').next().unwrap_or_default().to_string())
        .collect();
    (found, reply.tagged)
}

fn assert_all_there(server: &Server, acked: &[usize]) {
    let mut client = Client::login(server.ports.imap, "alice");
    let (found, tagged) = subjects(&mut client);
    assert_eq!(
        tagged, "OK FETCH completed",
        "no stored message reads as expunged"
    );
    for n in acked {
        assert!(
            found.contains(&format!("fill {n}")),
            "acknowledged message {n} is lost: {found:?}"
        );
    }
}

/// Fills DATA's disk until a delivery fails; returns what was acknowledged.
fn fill_until_refused(server: &Server, expect: &str) -> Vec<usize> {
    let mut acked = Vec::new();
    for n in 0..400 {
        let reply = deliver(server, &message(n, 50_000));
        if reply.starts_with("250") {
            acked.push(n);
            continue;
        }
        assert!(reply.starts_with(expect), "delivery {n}: {reply}");
        return acked;
    }
    panic!("the disk never filled");
}

#[test]
fn a_full_disk_costs_only_the_writes_that_meet_it() {
    let Some(disk) = Tmpfs::mount("enospc", 40) else {
        return;
    };
    let mut server = server_on(&disk, "enospc");
    // No reserve: the commits themselves meet the full disk.
    server.start_with(&["--min-free-space", "0"]);
    let filler = disk.fill_leaving(6 << 20);
    let acked = fill_until_refused(&server, "451 4.3.0");
    assert!(!acked.is_empty());
    // Reads go on while the disk is full.
    assert_all_there(&server, &acked);
    // Space comes back (the admin deletes something); no restart.
    std::fs::remove_file(&filler).unwrap();
    let reply = deliver(&server, &message(1000, 5_000));
    assert!(reply.starts_with("250"), "{reply}");
    let mut client = Client::login(server.ports.imap, "alice");
    client.select("INBOX");
    client.ok("STORE 1 +FLAGS (\\Seen)");
    client.ok("CREATE Later");
    client.ok("STORE 2 +FLAGS (\\Deleted)");
    client.ok("EXPUNGE");
    let mut still: Vec<usize> = acked.iter().copied().filter(|&n| n != acked[1]).collect();
    still.push(1000);
    assert_all_there(&server, &still);
    let log = server.log_text();
    assert!(
        log.contains("database reopened after a write error"),
        "{log}"
    );
    server.stop();
    // And what was acknowledged is durable across a restart.
    server.start_with(&["--min-free-space", "0"]);
    assert_all_there(&server, &still);
}

#[test]
fn below_the_reserve_new_mail_waits_and_expunges_make_room() {
    let Some(disk) = Tmpfs::mount("reserve", 40) else {
        return;
    };
    let mut server = server_on(&disk, "reserve");
    server.start_with(&["--min-free-space", "8388608"]);
    let reserve = 8u64 << 20;
    disk.fill_leaving(20 << 20);
    let acked = fill_until_refused(&server, "452 4.3.1");
    // More tries are refused the same way, and the log says why once.
    for n in 0..5 {
        let reply = deliver(&server, &message(2000 + n, 50_000));
        assert!(reply.starts_with("452 4.3.1"), "{reply}");
    }
    let log = server.log_text();
    assert_eq!(log.matches("under the").count(), 1, "{log}");
    let mut client = Client::login(server.ports.imap, "alice");
    client.select("INBOX");
    let tag = client.tag();
    client.send(format!("{tag} APPEND INBOX {{20}}\r\n").as_bytes());
    let reply = client.line();
    let reply = if reply.starts_with('+') {
        client.send(b"Subject: x\r\n\r\nbody\r\n\r\n");
        client.reply(&tag).tagged
    } else {
        reply
            .strip_prefix(&format!("{tag} "))
            .unwrap_or(&reply)
            .to_string()
    };
    assert!(reply.starts_with("NO [OVERQUOTA]"), "{reply}");
    let copy = client.call("COPY 1 Archive");
    assert!(copy.tagged.starts_with("NO [OVERQUOTA]"), "{copy:?}");
    // What makes room still works: flags, then expunging enough messages to
    // be back above the reserve (redb grows its file in steps, so the disk
    // may be well under it by now). The margin covers a step taken by the
    // STORE's and EXPUNGE's own commits: how full the disk got before the
    // refusal, and so where the steps fall, depends on timing (the free
    // space is looked at once a second).
    let short = reserve.saturating_sub(disk.free_bytes()) + (3 << 20);
    let half = (short / 50_000 + 1) as usize;
    assert!(half < acked.len(), "{half} of {}", acked.len());
    client.ok(&format!("STORE 1:{half} +FLAGS (\\Deleted)"));
    client.ok("EXPUNGE");
    let reply = deliver(&server, &message(3000, 50_000));
    assert!(
        reply.starts_with("250"),
        "after expunging: {reply}\n{}",
        server.log_text()
    );
    let mut still: Vec<usize> = acked[half..].to_vec();
    still.push(3000);
    assert_all_there(&server, &still);
}

/// Flips one byte inside every copy of `marker` in the stopped server's
/// database file; returns how many it found.
fn damage(server: &Server, marker: &[u8]) -> usize {
    let path = server.data.join("letterbox.redb");
    let mut bytes = std::fs::read(&path).unwrap();
    let mut found = 0;
    let mut at = 0;
    while let Some(i) = bytes[at..].windows(marker.len()).position(|w| w == marker) {
        let hit = at + i;
        bytes[hit + marker.len() / 2] ^= 0x20;
        found += 1;
        at = hit + marker.len();
    }
    std::fs::write(&path, bytes).unwrap();
    found
}

fn marked(subject: &str, marker: &str, lines: usize) -> Vec<u8> {
    let mut raw = format!("From: a@example.org\r\nSubject: {subject}\r\n\r\n").into_bytes();
    for i in 0..lines {
        raw.extend_from_slice(
            format!("line {i:06} {marker} abcdefghijklmnopqrstuvwxyz\r\n").as_bytes(),
        );
    }
    raw
}

#[test]
fn damaged_message_bytes_answer_corruption_and_the_session_goes_on() {
    let mut server = Server::new("damage", &["alice"]);
    server.start();
    // 1: intact; 2: small and damaged; 3: three chunks, damaged in the
    // last one only; 4: intact.
    let one = marked("one", "INTACT-ONE", 10);
    let two = marked("two", "DAMAGE-ME-SMALL", 10);
    let mut three = marked("three", "INTACT-THREE", 2500);
    three.extend_from_slice(b"DAMAGE-ME-AT-THE-END\r\n");
    let four = marked("four", "INTACT-FOUR", 10);
    for m in [&one, &two, &three, &four] {
        let reply = deliver(&server, m);
        assert!(reply.starts_with("250"), "{reply}");
    }
    server.stop();
    assert!(damage(&server, b"DAMAGE-ME-SMALL") >= 1);
    assert!(damage(&server, b"DAMAGE-ME-AT-THE-END") >= 1);
    server.start();

    let mut client = Client::login(server.ports.imap, "alice");
    client.select("INBOX");
    let reply = client.call("FETCH 2 BODY[]");
    assert!(reply.tagged.starts_with("NO [CORRUPTION]"), "{reply:?}");
    assert!(
        reply.lines.is_empty(),
        "no altered content is sent: {reply:?}"
    );
    let reply = client.call("FETCH 3 BODY.PEEK[]");
    assert!(reply.tagged.starts_with("NO [CORRUPTION]"), "{reply:?}");
    // The session goes on, and the intact messages read whole.
    let reply = client.call("FETCH 1 BODY[]");
    assert!(reply.is_ok(), "{reply:?}");
    assert!(reply.lines[0].contains("INTACT-ONE"));
    let reply = client.call("FETCH 1:4 (UID BODY.PEEK[])");
    assert!(reply.tagged.starts_with("NO [CORRUPTION]"), "{reply:?}");
    let bodies = reply.lines.join("\n");
    assert!(
        bodies.contains("INTACT-ONE") && bodies.contains("INTACT-FOUR"),
        "{reply:?}"
    );
    assert!(
        !bodies.contains("DAMAGE") && !bodies.contains("INTACT-THREE"),
        "{reply:?}"
    );
    // Flags are not message bytes: they still answer.
    client.ok("FETCH 2:3 (FLAGS UID)");
    client.ok("NOOP");

    let mut pop = Raw::connect(server.ports.pop3);
    assert!(pop.line().starts_with("+OK"));
    assert!(pop.cmd("USER alice").starts_with("+OK"));
    assert!(pop.cmd("PASS pw-alice").starts_with("+OK"));
    let reply = pop.cmd("RETR 2");
    assert!(reply.starts_with("-ERR"), "{reply}");
    let reply = pop.cmd("RETR 3");
    assert!(reply.starts_with("-ERR"), "{reply}");
    assert!(pop.cmd("RETR 4").starts_with("+OK"));
    let body = pop.multiline().join("");
    assert!(body.contains("INTACT-FOUR"), "{body}");
    assert!(pop.cmd("NOOP").starts_with("+OK"));
    assert!(pop.cmd("QUIT").starts_with("+OK"));

    // Logged once per message, with where it is and what to do.
    let log = server.log_text();
    for uid in [2, 3] {
        let line = format!("DAMAGED MESSAGE: user alice, mailbox \"INBOX\", UID {uid}:");
        assert_eq!(log.matches(&line).count(), 1, "{log}");
    }
    assert!(log.contains("letterbox verify"));
    assert!(!log.contains("panicked"), "{log}");

    // verify lists exactly the damaged messages.
    server.stop();
    let out = Command::new(BIN)
        .arg("verify")
        .arg(&server.data)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "{text}");
    for uid in [2, 3] {
        assert!(text.contains(&format!("UID {uid}: ")), "{text}");
    }
    for uid in [1, 4] {
        assert!(!text.contains(&format!("UID {uid}: ")), "{text}");
    }
    assert_eq!(text.matches("fails its checksum").count(), 2, "{text}");
}

#[test]
fn a_schema_3_store_gets_its_checksums_when_upgraded() {
    // Written by the schema-3 letterbox: alice's INBOX with a small message
    // (UID 1) and a 118,132-byte one in two chunks (UID 2).
    let mut server = Server::new("upgrade3", &["alice"]);
    let fixture = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/schema3.redb.gz"
    );
    let out = Command::new("gzip")
        .args(["-dc", fixture])
        .output()
        .unwrap();
    assert!(out.status.success());
    std::fs::write(server.data.join("letterbox.redb"), &out.stdout).unwrap();
    server.start();
    let log = server.log_text();
    assert!(
        log.contains("upgraded the database to schema 4 (3 message chunks"),
        "{log}"
    );
    let mut client = Client::login(server.ports.imap, "alice");
    client.select("INBOX");
    let reply = client.call("FETCH 1:2 (RFC822.SIZE BODY.PEEK[])");
    assert!(reply.is_ok(), "{reply:?}");
    let all = reply.lines.join("\n");
    assert!(all.contains("small body CHECKSUM-FIXTURE-1"));
    assert!(all.contains("RFC822.SIZE 118132"));
    assert_eq!(all.matches("CHECKSUM-FIXTURE-2").count(), 2000);
    server.stop();
    // The checksums are real: damage written after the upgrade is found.
    assert!(damage(&server, b"CHECKSUM-FIXTURE-1") >= 1);
    server.start();
    let mut client = Client::login(server.ports.imap, "alice");
    client.select("INBOX");
    let reply = client.call("FETCH 1 BODY.PEEK[]");
    assert!(reply.tagged.starts_with("NO [CORRUPTION]"), "{reply:?}");
    client.ok("FETCH 2 BODY.PEEK[]");
}

/// Reads IMAP lines up to the tagged reply, or None when the connection
/// ends first.
fn try_reply(client: &mut Client, tag: &str) -> Option<String> {
    loop {
        let line = client.try_line_bytes().ok()?;
        let line = String::from_utf8_lossy(&line).into_owned();
        if let Some(rest) = line.strip_prefix(&format!("{tag} ")) {
            return Some(rest.to_string());
        }
    }
}

#[test]
fn four_kib_of_garbage_never_drops_a_session_or_the_server() {
    let mut server = Server::new("garbage", &["alice"]);
    server.start();
    for n in 0..24 {
        let body = marked(&format!("m{n}"), &format!("GARBAGE-{n}"), 20 + n * 150);
        assert!(deliver(&server, &body).starts_with("250"));
    }
    server.stop();
    let path = server.data.join("letterbox.redb");
    let pristine = std::fs::read(&path).unwrap();
    let pages = pristine.len() / 4096;
    let mut x = 0x9e3779b97f4a7c15u64;
    for trial in 1..=8 {
        // A page somewhere past the header, overwritten with noise.
        let page = 1 + (pages - 2) * trial / 9;
        let mut bytes = pristine.clone();
        for b in &mut bytes[page * 4096..(page + 1) * 4096] {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            *b = (x >> 56) as u8;
        }
        std::fs::write(&path, &bytes).unwrap();
        server.start();
        let mut client = Client::login(server.ports.imap, "alice");
        for command in [
            "SELECT INBOX",
            "FETCH 1:* (UID FLAGS RFC822.SIZE ENVELOPE BODYSTRUCTURE)",
            "FETCH 1:* (BODY.PEEK[])",
            "UID SEARCH BODY GARBAGE-3",
            "STATUS INBOX (MESSAGES UNSEEN)",
            "NOOP",
        ] {
            let tag = client.tag();
            client.send(format!("{tag} {command}\r\n").as_bytes());
            let reply = try_reply(&mut client, &tag);
            let reply = reply.unwrap_or_else(|| {
                panic!(
                    "page {page}: the session was dropped in {command}\n{}",
                    server.log_text()
                )
            });
            assert!(
                reply.starts_with("OK") || reply.starts_with("NO"),
                "page {page}: {command}: {reply}"
            );
        }
        let mut pop = Raw::connect(server.ports.pop3);
        assert!(pop.line().starts_with("+OK"));
        pop.cmd("USER alice");
        if pop.cmd("PASS pw-alice").starts_with("+OK") {
            for n in 1..=24 {
                let reply = pop.cmd(&format!("RETR {n}"));
                assert!(
                    !reply.is_empty(),
                    "page {page}: RETR {n} dropped the session"
                );
                if reply.starts_with("+OK") {
                    pop.multiline();
                }
            }
            assert!(pop.cmd("NOOP").starts_with("+OK"), "page {page}");
        }
        assert!(
            server.child.as_mut().unwrap().try_wait().unwrap().is_none(),
            "page {page}: the server died"
        );
        server.stop();
    }
}
