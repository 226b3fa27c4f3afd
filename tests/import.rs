//! `letterbox import` against the real binary: a Maildir tree written the
//! way Dovecot writes it, mbox files with quoting and status headers, a
//! re-import that adds nothing, UIDs that clash, bad sources that are named
//! while the import goes on, and an IDLE client that sees imported mail.

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, SystemTime};

use common::imap_client::*;
use common::*;

fn import(server: &Server, user: &str, source: &Path, extra: &[&str]) -> Output {
    Command::new(BIN)
        .arg("import")
        .arg(user)
        .arg(source)
        .args(extra)
        .arg("--data")
        .arg(&server.data)
        .output()
        .expect("letterbox import")
}

fn summary(output: &Output) -> String {
    output.stdout_text().trim().to_string()
}

/// Writes a file with a chosen mtime.
fn write_at(path: &Path, bytes: &[u8], mtime: i64) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
    let file = std::fs::File::options().write(true).open(path).unwrap();
    file.set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(mtime as u64))
        .unwrap();
}

fn maildir(dir: &Path) {
    for sub in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
    }
}

fn message(subject: &str, id: &str) -> String {
    format!("From: a@example.org\nTo: alice@example.org\nSubject: {subject}\nMessage-ID: <{id}@example.org>\n\nbody of {subject}\n")
}

const INBOX_VALIDITY: u32 = 1_700_000_123;
const LISTS_VALIDITY: u32 = 1_600_000_007;
/// 2023-01-02 03:04:05 UTC and the INTERNALDATE IMAP gives for it.
const MTIME: i64 = 1_672_628_645;
const MTIME_IMAP: &str = "02-Jan-2023 03:04:05 +0000";

/// A Maildir++ tree as Dovecot writes it: INBOX at the root with a version 3
/// dovecot-uidlist and dovecot-keywords, flags and keyword letters in file
/// names, a message Dovecot has not numbered yet in new/, `.Lists.rust`
/// below, and a version 2 subscriptions file.
fn dovecot_tree(root: &Path) {
    maildir(root);
    std::fs::write(
        root.join("dovecot-uidlist"),
        format!(
            "3 V{INBOX_VALIDITY} N10 G3085f01b7f11094c501100008c4a11c1\n\
             3 :1672628645.M1P1.host\n\
             5 W400 S390 :1672628645.M2P1.host\n\
             7 :1672628645.M3P1.host\n"
        ),
    )
    .unwrap();
    std::fs::write(root.join("dovecot-keywords"), "0 $Label1\n1 work\n").unwrap();
    write_at(
        &root.join("cur/1672628645.M1P1.host,S=390:2,S"),
        message("three", "m3").as_bytes(),
        MTIME,
    );
    write_at(
        &root.join("cur/1672628645.M2P1.host,S=390:2,FRSa"),
        message("five", "m5").as_bytes(),
        MTIME + 60,
    );
    write_at(
        &root.join("cur/1672628645.M3P1.host:2,Dab"),
        message("seven", "m7").as_bytes(),
        MTIME + 120,
    );
    write_at(
        &root.join("new/1672628999.M9P1.host"),
        message("unnumbered", "m10").as_bytes(),
        MTIME + 180,
    );
    let lists = root.join(".Lists.rust");
    maildir(&lists);
    std::fs::write(
        lists.join("dovecot-uidlist"),
        format!("3 V{LISTS_VALIDITY} N43\n42 :1.M1.host\n"),
    )
    .unwrap();
    write_at(
        &lists.join("cur/1.M1.host:2,ST"),
        message("rust", "r42").as_bytes(),
        MTIME,
    );
    std::fs::write(root.join("subscriptions"), "V\t2\n\nINBOX\nLists\trust\n").unwrap();
}

/// (UID, FLAGS, INTERNALDATE) of each message, and the UIDVALIDITY.
fn listing(c: &mut Client, mailbox: &str) -> (u32, Vec<(u32, String, String)>) {
    let examined = c.ok(&format!("EXAMINE {mailbox}"));
    let validity: u32 = examined
        .iter()
        .find_map(|l| l.strip_prefix("* OK [UIDVALIDITY "))
        .and_then(|l| l.split(']').next())
        .unwrap()
        .parse()
        .unwrap();
    let mut out = Vec::new();
    for line in c.ok("UID FETCH 1:* (UID FLAGS INTERNALDATE)") {
        let uid = line
            .split("UID ")
            .nth(1)
            .unwrap()
            .split([' ', ')'])
            .next()
            .unwrap()
            .parse()
            .unwrap();
        let flags = line
            .split("FLAGS (")
            .nth(1)
            .unwrap()
            .split(')')
            .next()
            .unwrap()
            .to_string();
        let date = line
            .split("INTERNALDATE \"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap()
            .to_string();
        out.push((uid, flags, date));
    }
    (validity, out)
}

#[test]
fn a_dovecot_maildir_keeps_uids_flags_keywords_dates_and_subscriptions() {
    let mut server = Server::new("import-dovecot", &["alice"]);
    server.start();
    let source = TempDir::new("import-dovecot-src");
    dovecot_tree(&source.0);
    let out = import(&server, "alice", &source.0, &[]);
    assert!(
        out.status.success(),
        "{}{}",
        out.stdout_text(),
        out.stderr_text()
    );
    assert_eq!(
        summary(&out),
        "imported 5, skipped 0, failed 0, renumbered 0"
    );

    let mut c = Client::login(server.ports.imap, "alice");
    let (validity, inbox) = listing(&mut c, "INBOX");
    assert_eq!(validity, INBOX_VALIDITY);
    let uids: Vec<u32> = inbox.iter().map(|m| m.0).collect();
    // The unnumbered message comes after the source's UIDNEXT, as Dovecot
    // would have numbered it.
    assert_eq!(uids, [3, 5, 7, 10]);
    let flags: Vec<String> = inbox
        .iter()
        .map(|m| m.1.replace("\\Recent", "").trim().to_string())
        .collect();
    assert_eq!(flags[0], "\\Seen");
    for want in ["\\Flagged", "\\Answered", "\\Seen", "$Label1"] {
        assert!(flags[1].contains(want), "{flags:?}");
    }
    for want in ["\\Draft", "$Label1", "work"] {
        assert!(flags[2].contains(want), "{flags:?}");
    }
    assert!(!flags[2].contains("\\Seen"));
    assert_eq!(inbox[0].2, MTIME_IMAP);
    let status = c.ok("STATUS INBOX (UIDNEXT)").join(" ");
    assert!(status.contains("UIDNEXT 11"), "{status}");

    let (validity, lists) = listing(&mut c, "Lists/rust");
    assert_eq!(validity, LISTS_VALIDITY);
    assert_eq!(lists.len(), 1);
    assert_eq!(lists[0].0, 42);
    assert!(lists[0].1.contains("\\Deleted") && lists[0].1.contains("\\Seen"));
    let status = c.ok("STATUS Lists/rust (UIDNEXT)").join(" ");
    assert!(status.contains("UIDNEXT 43"), "{status}");
    let subscribed = c.ok("LSUB \"\" *").join("\n");
    assert!(subscribed.contains("Lists/rust"), "{subscribed}");
    assert!(subscribed.contains("INBOX"), "{subscribed}");
    c.ok("LOGOUT");

    // POP3 clients in keep mode see Dovecot's default UIDLs.
    let script = r#"
import os, poplib
p = poplib.POP3("127.0.0.1", int(os.environ["POP3_PORT"]))
p.user("alice"); p.pass_("pw-alice")
for line in p.uidl()[1]:
    print(line.decode().split()[1])
p.quit()
"#;
    let out = python(&server, script);
    out.assert_ok();
    let mut uidls: Vec<String> = out.stdout_text().lines().map(str::to_string).collect();
    uidls.sort();
    let mut expected: Vec<String> = [3u32, 5, 7, 10]
        .iter()
        .map(|uid| format!("{uid:08X}{INBOX_VALIDITY:08X}"))
        .collect();
    expected.sort();
    assert_eq!(uidls, expected);

    // A second run adds nothing.
    let again = import(&server, "alice", &source.0, &[]);
    assert!(again.status.success(), "{}", again.stderr_text());
    assert_eq!(
        summary(&again),
        "imported 0, skipped 5, failed 0, renumbered 0"
    );
    let mut c = Client::login(server.ports.imap, "alice");
    assert_eq!(listing(&mut c, "INBOX").1.len(), 4);
}

#[test]
fn uids_that_clash_get_new_ones_and_nothing_is_overwritten() {
    let mut server = Server::new("import-clash", &["carol"]);
    server.start();
    let replies = lmtp_deliver(
        &server,
        "x@example.org",
        &["carol"],
        b"Subject: already here\r\n\r\nhi\r\n",
    );
    assert!(replies.iter().all(|r| r.starts_with("250")), "{replies:?}");
    let source = TempDir::new("import-clash-src");
    dovecot_tree(&source.0);
    let out = import(&server, "carol", &source.0, &[]);
    assert!(out.status.success(), "{}", out.stderr_text());
    // INBOX held other mail: its three numbered ones are renumbered
    // (the fourth had no UID yet, and Lists/rust was new).
    assert_eq!(
        summary(&out),
        "imported 5, skipped 0, failed 0, renumbered 3"
    );
    assert!(
        out.stderr_text().contains("new UIDs"),
        "{}",
        out.stderr_text()
    );
    let mut c = Client::login(server.ports.imap, "carol");
    let (validity, inbox) = listing(&mut c, "INBOX");
    assert_ne!(validity, INBOX_VALIDITY);
    assert_eq!(
        inbox.iter().map(|m| m.0).collect::<Vec<_>>(),
        [1, 2, 3, 4, 5]
    );
    let first = c
        .ok("UID FETCH 1 BODY.PEEK[HEADER.FIELDS (Subject)]")
        .join(" ");
    assert!(first.contains("already here"), "{first}");
    // Again: found by Message-ID and size, nothing added.
    let again = import(&server, "carol", &source.0, &[]);
    assert_eq!(
        summary(&again),
        "imported 0, skipped 5, failed 0, renumbered 0"
    );
}

#[test]
fn an_mbox_with_quoting_status_flags_and_no_final_newline_with_the_server_stopped() {
    let mut server = Server::new("import-mbox", &["bob"]);
    let source = TempDir::new("import-mbox-src");
    let mbox = source.0.join("saved");
    std::fs::write(
        &mbox,
        "From alice@example.org Fri Jan  5 13:04:05 2024\n\
         From: alice@example.org\n\
         Subject: one\n\
         Message-ID: <one@example.org>\n\
         Status: RO\n\
         X-Status: AF\n\
         Content-Length: 999\n\
         \n\
         >From the start\n\
         >>From twice quoted\n\
         \n\
         From bob@example.org Sat Jan  6 00:00:00 2024\n\
         From: bob@example.org\n\
         Subject: two\n\
         X-Keywords: $Label2 project\n\
         \n\
         second body\n\
         \n\
         From carol@example.org Sun Jan  7 10:20:30 2024\n\
         Subject: three\n\
         \n\
         no final newline",
    )
    .unwrap();
    // With the server stopped, the command opens the store itself.
    let out = import(&server, "bob", &mbox, &["--folder", "Old/Saved"]);
    assert!(out.status.success(), "{}", out.stderr_text());
    assert_eq!(
        summary(&out),
        "imported 3, skipped 0, failed 0, renumbered 0"
    );
    server.start();
    let mut c = Client::login(server.ports.imap, "bob");
    let (_, messages) = listing(&mut c, "Old/Saved");
    assert_eq!(messages.len(), 3);
    for want in ["\\Seen", "\\Answered", "\\Flagged"] {
        assert!(messages[0].1.contains(want), "{messages:?}");
    }
    assert!(messages[1].1.contains("$Label2") && messages[1].1.contains("project"));
    assert!(!messages[1].1.contains("\\Seen"));
    assert_eq!(messages[0].2, "05-Jan-2024 13:04:05 +0000");
    assert_eq!(messages[2].2, "07-Jan-2024 10:20:30 +0000");
    let one = c.ok("UID FETCH 1 (BODY.PEEK[] RFC822.SIZE)").join("\n");
    assert!(
        one.contains("\r\nFrom the start\r\n>From twice quoted\r\n"),
        "{one:?}"
    );
    assert!(
        !one.contains("Status:") && !one.contains("Content-Length"),
        "{one:?}"
    );
    // The separator's empty line is not the message's.
    assert!(
        one.contains("twice quoted\r\n)") || one.contains("twice quoted\r\n RFC822"),
        "{one:?}"
    );
    let three = c.ok("UID FETCH 3 BODY.PEEK[TEXT]").join("\n");
    assert!(three.contains("no final newline"), "{three}");
    c.ok("LOGOUT");
    // Through the running server this time: nothing added.
    let again = import(&server, "bob", &mbox, &["--folder", "Old/Saved"]);
    assert_eq!(
        summary(&again),
        "imported 0, skipped 3, failed 0, renumbered 0"
    );
}

#[test]
fn bad_sources_are_named_and_the_import_goes_on() {
    let mut server = Server::new("import-bad", &["dave"]);
    server.start();
    let source = TempDir::new("import-bad-src");
    let root = source.0.join("Maildir");
    maildir(&root);
    std::fs::write(
        root.join("dovecot-uidlist"),
        "3 V42 N9\n1 :good.1\nthis is garbage for good.2\n",
    )
    .unwrap();
    write_at(
        &root.join("cur/good.1:2,S"),
        message("good one", "g1").as_bytes(),
        MTIME,
    );
    write_at(
        &root.join("cur/good.2:2,"),
        message("good two", "g2").as_bytes(),
        MTIME,
    );
    std::os::unix::fs::symlink(root.join("gone"), root.join("cur/unreadable.3:2,")).unwrap();
    std::fs::write(root.join("cur/note.txt"), "this is not mail\njust a note\n").unwrap();
    // 60 MB, over the default 50 MiB limit; sparse, so it costs no disk.
    let big = std::fs::File::create(root.join("new/big.4")).unwrap();
    big.set_len(60_000_000).unwrap();
    drop(big);
    let out = import(&server, "dave", &root, &[]);
    let errors = out.stderr_text();
    assert!(!out.status.success(), "{errors}");
    for named in [
        "dovecot-uidlist line 3",
        "unreadable.3",
        "note.txt",
        "big.4",
    ] {
        assert!(errors.contains(named), "{named} not named in: {errors}");
    }
    assert!(errors.contains("more than the largest message"), "{errors}");
    assert_eq!(
        summary(&out),
        "imported 2, skipped 0, failed 4, renumbered 0"
    );

    let mboxes = source.0.join("mail");
    std::fs::create_dir_all(&mboxes).unwrap();
    std::fs::write(
        mboxes.join("notes"),
        "Subject: no From line here\n\nhello\n",
    )
    .unwrap();
    std::fs::write(
        mboxes.join("lists"),
        "From x@example.org Fri Jan  5 13:04:05 2024\nSubject: fine\n\nok\n",
    )
    .unwrap();
    let locked = mboxes.join("locked");
    std::fs::write(
        &locked,
        "From x Fri Jan  5 13:04:05 2024\nSubject: s\n\nx\n",
    )
    .unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o000)).unwrap();
    }
    let out = import(&server, "dave", &mboxes, &[]);
    let errors = out.stderr_text();
    assert!(!out.status.success(), "{errors}");
    assert!(
        errors.contains("notes") && errors.contains("not an mbox file"),
        "{errors}"
    );
    // Root reads any file; only another user meets the permission.
    let expected_failed = if is_root() { 1 } else { 2 };
    if !is_root() {
        assert!(errors.contains("locked"), "{errors}");
    }
    assert_eq!(
        summary(&out),
        format!(
            "imported {}, skipped 0, failed {expected_failed}, renumbered 0",
            if is_root() { 2 } else { 1 }
        )
    );
    // A user the server does not know, and a source that is not there.
    let out = import(&server, "nobody-here", &mboxes, &[]);
    assert!(!out.status.success());
    assert!(
        out.stderr_text().contains("no user nobody-here"),
        "{}",
        out.stderr_text()
    );
    let out = import(&server, "dave", &source.0.join("missing"), &[]);
    assert!(!out.status.success());
    assert!(
        out.stderr_text().contains("missing"),
        "{}",
        out.stderr_text()
    );

    let mut c = Client::login(server.ports.imap, "dave");
    let (_, lists) = listing(&mut c, "lists");
    assert_eq!(lists.len(), 1);
    let (validity, inbox) = listing(&mut c, "INBOX");
    assert_eq!(validity, 42);
    assert_eq!(inbox.iter().map(|m| m.0).collect::<Vec<_>>(), [1, 9]);
}

#[test]
fn an_idle_client_sees_imported_mail_arrive() {
    let mut server = Server::new("import-idle", &["erin"]);
    server.start();
    let mut c = Client::login(server.ports.imap, "erin");
    c.select("INBOX");
    c.send(b"i1 IDLE\r\n");
    assert!(c.line().starts_with("+ "));
    let source = TempDir::new("import-idle-src");
    let mbox = source.0.join("inbox.mbox");
    std::fs::write(
        &mbox,
        "From x Fri Jan  5 13:04:05 2024\nSubject: a\n\none\n\nFrom x Fri Jan  5 13:04:06 2024\nSubject: b\n\ntwo\n",
    )
    .unwrap();
    let out = import(&server, "erin", &mbox, &[]);
    assert!(out.status.success(), "{}", out.stderr_text());
    let mut saw = Vec::new();
    loop {
        let line = c.line();
        saw.push(line.clone());
        if line.contains("2 EXISTS") {
            break;
        }
        assert!(saw.len() < 20, "{saw:?}");
    }
    c.send(b"DONE\r\n");
    let done = c.reply("i1");
    assert!(done.is_ok(), "{done:?}");
}

#[test]
fn letterbox_export_comes_back_with_its_uids() {
    let mut server = Server::new("import-export", &["frank", "gina"]);
    server.start();
    for i in 0..3 {
        let body = format!("Subject: m{i}\r\nMessage-ID: <e{i}@x>\r\n\r\nx\r\n");
        lmtp_deliver(&server, "x@example.org", &["frank"], body.as_bytes());
    }
    let mut c = Client::login(server.ports.imap, "frank");
    c.select("INBOX");
    c.ok("UID STORE 2 +FLAGS (\\Flagged)");
    c.ok("UID STORE 1 +FLAGS (\\Deleted)");
    c.ok("EXPUNGE");
    let (validity, before) = listing(&mut c, "INBOX");
    c.ok("LOGOUT");
    let out_dir = TempDir::new("import-export-out");
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&out_dir.0, std::fs::Permissions::from_mode(0o777)).unwrap();
    }
    let exported = Command::new(BIN)
        .args(["export", "frank"])
        .arg(out_dir.0.join("x"))
        .arg("--data")
        .arg(&server.data)
        .output()
        .unwrap();
    exported.assert_ok();
    let out = import(&server, "gina", &out_dir.0.join("x"), &[]);
    assert!(out.status.success(), "{}", out.stderr_text());
    let mut c = Client::login(server.ports.imap, "gina");
    let (gina_validity, after) = listing(&mut c, "INBOX");
    assert_eq!(gina_validity, validity);
    let strip = |l: &[(u32, String, String)]| -> Vec<(u32, String)> {
        l.iter()
            .map(|m| (m.0, m.1.replace("\\Recent", "").trim().to_string()))
            .collect()
    };
    assert_eq!(strip(&after), strip(&before));
}

#[test]
fn layout_fs_trees_and_thunderbird_folders_keep_their_hierarchy() {
    let mut server = Server::new("import-layouts", &["hana"]);
    server.start();
    let source = TempDir::new("import-layouts-src");
    // Dovecot's LAYOUT=fs: INBOX at the root, folders as directories, names
    // in modified UTF-7.
    let fs = source.0.join("fs");
    maildir(&fs);
    write_at(
        &fs.join("cur/1.M1.h:2,S"),
        message("root", "fs1").as_bytes(),
        MTIME,
    );
    maildir(&fs.join("Work"));
    maildir(&fs.join("Work/Caf&AOk-"));
    write_at(
        &fs.join("Work/Caf&AOk-/cur/2.M2.h:2,"),
        message("cafe", "fs2").as_bytes(),
        MTIME,
    );
    std::fs::write(fs.join("subscriptions"), "Work/Caf&AOk-\n").unwrap();
    let out = import(&server, "hana", &fs, &["--folder", "Old"]);
    assert!(out.status.success(), "{}", out.stderr_text());
    assert_eq!(
        summary(&out),
        "imported 2, skipped 0, failed 0, renumbered 0"
    );
    // Thunderbird: mbox files, `Name.sbd/` holding the folders below Name,
    // `.msf` index files beside them.
    let tb = source.0.join("thunderbird");
    std::fs::create_dir_all(tb.join("Lists.sbd")).unwrap();
    let one = |subject: &str| format!("From - Fri Jan  5 13:04:05 2024\nSubject: {subject}\n\nx\n");
    std::fs::write(tb.join("Inbox"), one("tb inbox")).unwrap();
    std::fs::write(tb.join("Inbox.msf"), "// mork index, not mail").unwrap();
    std::fs::write(tb.join("Lists"), one("tb lists")).unwrap();
    std::fs::write(tb.join("Lists.sbd/rust"), one("tb rust")).unwrap();
    let out = import(&server, "hana", &tb, &[]);
    assert!(out.status.success(), "{}", out.stderr_text());
    assert_eq!(
        summary(&out),
        "imported 3, skipped 0, failed 0, renumbered 0"
    );

    let mut c = Client::login(server.ports.imap, "hana");
    for (mailbox, count) in [
        ("Old", 1),
        ("Old/Work/Caf&AOk-", 1),
        ("INBOX", 1),
        ("Lists", 1),
        ("Lists/rust", 1),
    ] {
        assert_eq!(listing(&mut c, mailbox).1.len(), count, "{mailbox}");
    }
    let subscribed = c.ok("LSUB \"\" *").join("\n");
    assert!(subscribed.contains("Old/Work/Caf&AOk-"), "{subscribed}");
    // mbox folders are subscribed, as the programs that wrote them show them.
    assert!(subscribed.contains("\"Lists/rust\""), "{subscribed}");
}

#[test]
fn imports_at_once_take_turns_and_both_finish() {
    let mut server = Server::new("import-turns", &["ivan", "jill"]);
    server.start();
    let source = TempDir::new("import-turns-src");
    let mut text = String::new();
    for i in 0..300 {
        text += &format!(
            "From x Fri Jan  5 13:04:05 2024\nSubject: {i}\nMessage-ID: <{i}@turns>\n\n{}\n\n",
            "line of text\n".repeat(200)
        );
    }
    let mbox = source.0.join("big.mbox");
    std::fs::write(&mbox, text).unwrap();
    let runs: Vec<_> = ["ivan", "jill"]
        .into_iter()
        .map(|user| {
            let (data, mbox) = (server.data.clone(), mbox.clone());
            std::thread::spawn(move || {
                Command::new(BIN)
                    .args(["import", user])
                    .arg(&mbox)
                    .arg("--data")
                    .arg(&data)
                    .output()
                    .unwrap()
            })
        })
        .collect();
    for run in runs {
        let out = run.join().unwrap();
        assert!(out.status.success(), "{}", out.stderr_text());
        assert_eq!(
            summary(&out),
            "imported 300, skipped 0, failed 0, renumbered 0"
        );
    }
}

#[test]
fn a_dovecot_mbox_keeps_its_uids_from_x_imapbase_and_x_uid() {
    let mut server = Server::new("import-dovecot-mbox", &["kim"]);
    server.start();
    let source = TempDir::new("import-dovecot-mbox-src");
    let mbox = source.0.join("Archive");
    std::fs::write(
        &mbox,
        "From a Fri Jan  5 13:04:05 2024\n\
         X-IMAPbase: 1500000000 31 $Label1\n\
         X-UID: 4\n\
         Status: RO\n\
         Subject: four\n\
         \n\
         x\n\
         \n\
         From a Fri Jan  5 13:04:06 2024\n\
         X-UID: 30\n\
         Subject: thirty\n\
         \n\
         y\n",
    )
    .unwrap();
    let out = import(&server, "kim", &mbox, &["--folder", "Archive"]);
    assert!(out.status.success(), "{}", out.stderr_text());
    assert_eq!(
        summary(&out),
        "imported 2, skipped 0, failed 0, renumbered 0"
    );
    let mut c = Client::login(server.ports.imap, "kim");
    let (validity, messages) = listing(&mut c, "Archive");
    assert_eq!(validity, 1_500_000_000);
    assert_eq!(messages.iter().map(|m| m.0).collect::<Vec<_>>(), [4, 30]);
    assert!(messages[0].1.contains("\\Seen"));
    let status = c.ok("STATUS Archive (UIDNEXT)").join(" ");
    assert!(status.contains("UIDNEXT 31"), "{status}");
    let header = c.ok("UID FETCH 4 BODY.PEEK[HEADER]").join(" ");
    assert!(
        !header.contains("X-UID") && !header.contains("X-IMAPbase"),
        "{header}"
    );
    let again = import(&server, "kim", &mbox, &["--folder", "Archive"]);
    assert_eq!(
        summary(&again),
        "imported 0, skipped 2, failed 0, renumbered 0"
    );
}

#[test]
fn an_import_stops_with_the_reason_when_the_disk_is_down_to_its_reserve() {
    let mut server = Server::new("import-full", &["lena"]);
    // A reserve no disk has: new mail is refused, as on a full disk.
    server.start_with(&["--min-free-space", "1000000000000000000"]);
    let source = TempDir::new("import-full-src");
    let mut text = String::new();
    for i in 0..600 {
        text += &format!(
            "From x Fri Jan  5 13:04:05 2024\nSubject: {i}\n\n{}\n",
            "line of text\n".repeat(200)
        );
    }
    let mbox = source.0.join("big.mbox");
    std::fs::write(&mbox, text).unwrap();
    let out = import(&server, "lena", &mbox, &[]);
    assert!(!out.status.success());
    assert!(
        out.stderr_text().contains("nearly full"),
        "{}",
        out.stderr_text()
    );
    let mut c = Client::login(server.ports.imap, "lena");
    assert!(listing(&mut c, "INBOX").1.is_empty());
}
