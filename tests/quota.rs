//! QUOTA against the real binary: LMTP until the mailbox is full, APPEND and
//! COPY refused with [OVERQUOTA] while MOVE and EXPUNGE still work, the 90%
//! notice once, GETQUOTAROOT over curl and imaplib, `--quota-full bounce`,
//! usage after a restart and after kill -9 mid-delivery (checked against
//! `letterbox verify`'s recount), and a users file whose quota field does not
//! parse.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::imap_client::*;
use common::*;

const NOTICE_SUBJECT: &str = "Your mailbox is 90% full";

/// Gives `user`'s line in the users file these extra fields (field 8).
fn set_fields(server: &Server, user: &str, fields: &str) {
    let path = server.data.join("users");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut out = String::new();
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (name, password) = (parts.next().unwrap(), parts.next().unwrap_or(""));
        if name == user {
            out.push_str(&format!("{name}:{password}::::::{fields}\n"));
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    // Replaced, not edited in place: the server's reload sees a new file.
    let tmp = server.data.join("users.new");
    std::fs::write(&tmp, out).unwrap();
    std::fs::rename(&tmp, &path).unwrap();
}

/// A message of about `size` bytes.
fn message(subject: &str, size: usize) -> Vec<u8> {
    let mut text =
        format!("From: s@example.org\r\nTo: alice@example.org\r\nSubject: {subject}\r\n\r\n");
    while text.len() + 2 < size {
        text.push_str(&"x".repeat(70.min(size - text.len() - 2)));
        text.push_str("\r\n");
    }
    text.into_bytes()
}

/// The QUOTA response's numbers: (STORAGE used, limit) or (MESSAGE used, limit).
fn resource(lines: &[String], name: &str) -> Option<(u64, u64)> {
    let quota = lines.iter().find(|l| l.starts_with("* QUOTA "))?;
    let list = quota.split_once('(')?.1.trim_end_matches(')');
    let words: Vec<&str> = list.split(' ').collect();
    let at = words.iter().position(|w| *w == name)?;
    Some((words[at + 1].parse().ok()?, words[at + 2].parse().ok()?))
}

fn notices(client: &mut Client) -> usize {
    client.select("INBOX");
    let found = client.ok(&format!("SEARCH SUBJECT \"{NOTICE_SUBJECT}\""));
    found[0].split(' ').count() - 2
}

fn verify(server: &Server) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_letterbox"))
        .arg("verify")
        .arg(&server.data)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn a_full_mailbox_defers_delivery_refuses_append_and_copy_and_expunge_makes_room() {
    let mut server = Server::new("quota-full", &["alice", "bob"]);
    // 20 KiB for alice; bob has no limit.
    set_fields(&server, "alice", "userdb_quota_rule=*:storage=20");
    start(&mut server);
    let mut delivered = 0;
    let refusal = loop {
        let reply = lmtp_deliver(
            &server,
            "s@example.org",
            &["alice", "bob"],
            &message(&format!("m{delivered}"), 1500),
        );
        assert!(reply[1].starts_with("250"), "bob has no limit: {reply:?}");
        if !reply[0].starts_with("250") {
            break reply[0].clone();
        }
        delivered += 1;
        assert!(delivered < 100, "the limit never took hold");
    };
    assert!(
        refusal.starts_with("452 4.2.2 <alice> Mailbox full"),
        "{refusal}"
    );
    // 20 KiB hold 13 messages of 1500 bytes, and the notice took some room.
    assert!((11..=13).contains(&delivered), "{delivered} delivered");
    // Deferred again, not stored: usage stays put.
    let again = lmtp_deliver(
        &server,
        "s@example.org",
        &["alice"],
        &message("again", 1500),
    );
    assert!(again[0].starts_with("452 4.2.2"), "{again:?}");

    let mut alice = Client::login(server.ports.imap, "alice");
    let caps = alice.ok("CAPABILITY");
    assert!(
        caps[0].contains(" QUOTA QUOTA=RES-STORAGE QUOTA=RES-MESSAGE "),
        "{caps:?}"
    );
    let root = alice.ok("GETQUOTAROOT INBOX");
    assert_eq!(root[0], "* QUOTAROOT \"INBOX\" \"\"");
    let (used, limit) = resource(&root, "STORAGE").unwrap();
    assert_eq!(limit, 20);
    // Full, give or take the notice, which is let in over the limit.
    assert!(used > 18 && used <= 21, "{root:?}");
    assert_eq!(resource(&root, "MESSAGE"), None, "no message limit was set");
    assert_eq!(alice.ok("GETQUOTA \"\""), root[1..]);
    assert!(alice
        .call("GETQUOTA \"other\"")
        .tagged
        .starts_with("NO [NONEXISTENT]"));
    assert!(alice
        .call("SETQUOTA \"\" (STORAGE 99999)")
        .tagged
        .starts_with("NO [NOPERM]"));
    assert!(alice
        .call("SETQUOTA \"\" (STORAGE x)")
        .tagged
        .starts_with("BAD"));

    // Exactly one notice, however many deliveries were deferred after it.
    assert_eq!(notices(&mut alice), 1);

    // APPEND and COPY would add: refused. MOVE adds nothing.
    let small = message("appended", 3000);
    let tag = alice.tag();
    alice.send(format!("{tag} APPEND INBOX {{{}+}}\r\n", small.len()).as_bytes());
    alice.send(&small);
    alice.send(b"\r\n");
    let append = alice.reply(&tag);
    assert!(append.tagged.starts_with("NO [OVERQUOTA]"), "{append:?}");
    alice.select("INBOX");
    let copy = alice.call("COPY 1:2 Archive");
    assert!(copy.tagged.starts_with("NO [OVERQUOTA]"), "{copy:?}");
    alice.ok("MOVE 1:2 Trash");
    let after_move = alice.ok("GETQUOTAROOT INBOX");
    assert_eq!(resource(&after_move, "STORAGE"), Some((used, limit)));

    // Expunge always works, and makes room.
    alice.ok("STORE 1:4 +FLAGS.SILENT (\\Deleted)");
    let status = alice.ok("STATUS INBOX (DELETED DELETED-STORAGE)");
    let kib: u64 = status[0]
        .strip_prefix("* STATUS \"INBOX\" (DELETED 4 DELETED-STORAGE ")
        .and_then(|rest| rest.strip_suffix(')'))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{status:?}"));
    // Four messages of 1500 bytes and their trace headers.
    assert!((6..=7).contains(&kib), "{status:?}");
    alice.ok("EXPUNGE");
    let freed = alice.ok("GETQUOTAROOT INBOX");
    assert!(
        resource(&freed, "STORAGE").unwrap().0 <= used - 5,
        "{freed:?}"
    );
    let room = lmtp_deliver(&server, "s@example.org", &["alice"], &message("room", 1500));
    assert!(room[0].starts_with("250"), "{room:?}");
    // Back under 90% after the expunge: re-armed, but not crossed again.
    assert_eq!(notices(&mut alice), 1);
    assert!(verify(&server).0, "{}", verify(&server).1);
}

#[test]
fn bounce_mode_answers_552_and_the_server_wide_limit_applies_to_everyone() {
    let mut server = Server::new("quota-bounce", &["alice", "bob", "carol"]);
    // carol's own field lifts the server-wide limit.
    set_fields(&server, "carol", "quota_messages=0");
    server.extra_args = ["--quota-messages", "3", "--quota-full", "bounce"]
        .map(String::from)
        .to_vec();
    start(&mut server);
    for n in 0..2 {
        let reply = lmtp_deliver(
            &server,
            "s@x",
            &["alice", "bob", "carol"],
            &message(&format!("{n}"), 200),
        );
        assert!(reply.iter().all(|r| r.starts_with("250")), "{reply:?}");
    }
    // The second message reached 2 of 3, under 90%; the third is 100% and
    // brings the notice, which is let in over the limit.
    let third = lmtp_deliver(&server, "s@x", &["alice", "carol"], &message("3", 200));
    assert!(third.iter().all(|r| r.starts_with("250")), "{third:?}");
    let full = lmtp_deliver(
        &server,
        "s@x",
        &["alice", "bob", "carol"],
        &message("4", 200),
    );
    assert!(
        full[0].starts_with("552 5.2.2 <alice> Mailbox full"),
        "{full:?}"
    );
    assert!(
        full[1].starts_with("250"),
        "bob had room for one more: {full:?}"
    );
    assert!(full[2].starts_with("250"), "carol has no limit: {full:?}");
    let mut bob = Client::login(server.ports.imap, "bob");
    let root = bob.ok("GETQUOTAROOT INBOX");
    assert_eq!(resource(&root, "MESSAGE"), Some((4, 3)), "3 and the notice");
    assert_eq!(resource(&root, "STORAGE"), None);
    let mut carol = Client::login(server.ports.imap, "carol");
    assert_eq!(carol.ok("GETQUOTAROOT INBOX"), ["* QUOTAROOT \"INBOX\""]);
    assert!(carol
        .call("GETQUOTA \"\"")
        .tagged
        .starts_with("NO [NONEXISTENT]"));
    assert_eq!(notices(&mut carol), 0);
    // `user list` asks the running server, which knows its flags.
    let listed = server.user(&["list"], "").stdout_text();
    let line = |name: &str| {
        listed
            .lines()
            .find(|l| l.starts_with(&format!("{name}\t")))
            .unwrap_or_default()
            .to_string()
    };
    assert!(
        line("alice").ends_with("\t4 of 3 messages (133%)"),
        "{listed}"
    );
    assert!(
        line("carol").ends_with("\t4 messages (no limit)"),
        "{listed}"
    );
}

#[test]
fn real_clients_ask_for_the_quota_root() {
    let mut server = Server::new("quota-clients", &["alice"]);
    set_fields(&server, "alice", "quota_storage=1M quota_messages=100");
    start(&mut server);
    deliver(&server, "alice", "hello", "a short message");
    let script = r#"
import imaplib, os
m = imaplib.IMAP4('127.0.0.1', int(os.environ['IMAP_PORT']))
m.login('alice', 'pw-alice')
typ, data = m.getquotaroot('INBOX')
print(typ, data)
typ, data = m.getquota('""')
print(typ, data)
typ, data = m.status('INBOX', '(DELETED DELETED-STORAGE)')
print(typ, data)
m.logout()
"#;
    let out = python(&server, script);
    let text = out.stdout_text();
    assert!(out.status.success(), "{}{}", text, out.stderr_text());
    assert!(
        text.contains("OK [[b'\"INBOX\" \"\"'], [b'\"\" (STORAGE 1 1024 MESSAGE 1 100)']]"),
        "{text}"
    );
    assert!(
        text.contains("OK [b'\"\" (STORAGE 1 1024 MESSAGE 1 100)']"),
        "{text}"
    );
    assert!(text.contains("(DELETED 0 DELETED-STORAGE 0)"), "{text}");
    let curl = Command::new("curl")
        .args(["-s", "-S", "--max-time", "20", "-u", "alice:pw-alice"])
        .arg(format!("imap://127.0.0.1:{}/", server.ports.imap))
        .args(["-X", "GETQUOTAROOT INBOX"])
        .output()
        .expect("curl is a test dependency (.ci/run installs it)");
    let text = String::from_utf8_lossy(&curl.stdout);
    assert!(
        text.contains("* QUOTAROOT \"INBOX\" \"\"")
            && text.contains("* QUOTA \"\" (STORAGE 1 1024 MESSAGE 1 100)"),
        "{text}{}",
        String::from_utf8_lossy(&curl.stderr)
    );
}

/// Four senders deliver until the server is killed; after the restart the
/// kept usage must be what the messages add up to (verify recounts it), and
/// what GETQUOTA says. Then a clean restart keeps it.
#[test]
fn usage_is_right_after_kill_9_during_deliveries_and_after_a_restart() {
    const SENDERS: &str = r#"
import os, smtplib, threading
port = int(os.environ['LMTP_PORT'])
def sender(t):
    try:
        l = smtplib.LMTP('127.0.0.1', port)
        n = 0
        while True:
            body = ('Subject: t%d m%d\r\n\r\n' % (t, n) + 'y' * (500 + 37 * n) + '\r\n').encode()
            # smtplib reads one reply after DATA: one recipient each.
            l.sendmail('s@x', [['alice', 'bob'][t % 2]], body)
            n += 1
    except Exception:
        pass
threads = [threading.Thread(target=sender, args=(t,)) for t in range(4)]
for th in threads: th.start()
for th in threads: th.join()
"#;
    let mut server = Server::new("quota-crash", &["alice", "bob"]);
    set_fields(&server, "alice", "quota_storage=1G quota_messages=1000000");
    server.extra_args = ["--quota-storage", "10G"].map(String::from).to_vec();
    start(&mut server);
    let mut alice = Client::login(server.ports.imap, "alice");
    alice.select("INBOX");
    alice.ok("APPEND Drafts {5+}\r\nhello");
    let senders = Command::new("python3")
        .arg("-c")
        .arg(SENDERS)
        .env("LMTP_PORT", server.ports.lmtp.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Let mail flow, with expunges and copies from IMAP meanwhile.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        // The answer's `* SEARCH` line, wherever EXISTS updates fall.
        let found = alice.ok("SEARCH ALL");
        let search = found.iter().find(|l| l.starts_with("* SEARCH"));
        if search.is_some_and(|l| l.split(' ').count() > 30) {
            break;
        }
        assert!(Instant::now() < deadline, "no deliveries");
        std::thread::sleep(Duration::from_millis(50));
    }
    alice.ok("COPY 1:5 Archive");
    alice.ok("STORE 1:3 +FLAGS.SILENT (\\Deleted)");
    alice.ok("EXPUNGE");
    std::thread::sleep(Duration::from_millis(300));
    server.kill();
    let mut senders = senders;
    let _ = senders.kill();
    let _ = senders.wait();

    start(&mut server);
    let (ok, report) = verify(&server);
    assert!(
        ok,
        "after kill -9, verify through the running server: {report}"
    );
    let mut alice = Client::login(server.ports.imap, "alice");
    let quota = alice.ok("GETQUOTAROOT INBOX");
    let (storage, _) = resource(&quota, "STORAGE").unwrap();
    let (messages, limit) = resource(&quota, "MESSAGE").unwrap();
    assert_eq!(limit, 1_000_000);
    // The user's own count from IMAP: every mailbox's MESSAGES and SIZE.
    let (mut counted, mut bytes) = (0u64, 0u64);
    for mailbox in ["INBOX", "Archive", "Drafts", "Sent", "Trash", "Junk"] {
        let status = alice.ok(&format!("STATUS {mailbox} (MESSAGES SIZE)"));
        let words: Vec<&str> = status[0].trim_end_matches(')').split(' ').collect();
        counted += words[words.len() - 3].parse::<u64>().unwrap();
        bytes += words[words.len() - 1].parse::<u64>().unwrap();
    }
    assert!(counted > 30);
    assert_eq!((messages, storage), (counted, bytes.div_ceil(1024)));
    server.stop();
    let (ok, report) = verify(&server);
    assert!(ok, "offline, after a clean stop: {report}");
    start(&mut server);
    let mut alice = Client::login(server.ports.imap, "alice");
    assert_eq!(alice.ok("GETQUOTAROOT INBOX"), quota);
}

#[test]
fn a_quota_field_that_does_not_parse_refuses_start_and_a_reload_keeps_the_old_file() {
    let mut server = Server::new("quota-bad", &["alice", "bob"]);
    set_fields(&server, "bob", "quota_storage=lots");
    let out = Command::new(env!("CARGO_BIN_EXE_letterbox"))
        .arg("serve")
        .arg("--data")
        .arg(&server.data)
        .args([
            "--imap", "off", "--imaps", "off", "--pop3", "off", "--pop3s", "off",
        ])
        .args(["--lmtp-socket", "off"])
        .args(["--lmtp", &format!("127.0.0.1:{}", free_port())])
        .args(if is_root() {
            &["--run-as", "nobody"][..]
        } else {
            &[]
        })
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "started with a bad quota field: {text}"
    );
    assert!(
        text.contains("line 2: user bob: quota_storage=lots: \"lots\" is not a size"),
        "{text}"
    );

    set_fields(&server, "bob", "quota_messages=1");
    start(&mut server);
    assert!(
        lmtp_deliver(&server, "s@x", &["bob"], b"Subject: 1\r\n\r\n.\r\n")[0].starts_with("250")
    );
    set_fields(&server, "bob", "userdb_quota_rule=Trash:storage=+10M");
    let log_start = server.log_text().len();
    server.signal(libc::SIGHUP);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !server.log_text()[log_start..].contains("keeping the users loaded before") {
        assert!(Instant::now() < deadline, "{}", server.log_text());
        std::thread::sleep(Duration::from_millis(20));
    }
    let log = server.log_text()[log_start..].to_string();
    assert!(
        log.contains("line 2: user bob: userdb_quota_rule="),
        "{log}"
    );
    // The old file's limit still holds.
    let full = lmtp_deliver(&server, "s@x", &["bob"], b"Subject: 2\r\n\r\n.\r\n");
    assert!(full[0].starts_with("452 4.2.2"), "{full:?}");
}

/// Eight senders at once against a limit of 20 messages: the check runs in
/// the writer's transaction, so the limit holds exactly, however the
/// deliveries interleave in one group commit.
#[test]
fn concurrent_deliveries_do_not_overshoot() {
    const SENDERS: &str = r#"
import os, smtplib, threading
port = int(os.environ['LMTP_PORT'])
lock = threading.Lock()
answers = {'ok': 0, 'full': 0, 'other': 0}
def sender(t):
    l = smtplib.LMTP('127.0.0.1', port)
    for n in range(6):
        body = ('Subject: t%d m%d\r\n\r\nhello\r\n' % (t, n)).encode()
        try:
            l.sendmail('s@x', ['alice'], body)
            what = 'ok'
        except smtplib.SMTPDataError as e:
            what = 'full' if e.smtp_code == 452 and b'4.2.2' in e.smtp_error else 'other'
        with lock:
            answers[what] += 1
threads = [threading.Thread(target=sender, args=(t,)) for t in range(8)]
for th in threads: th.start()
for th in threads: th.join()
print(answers['ok'], answers['full'], answers['other'])
"#;
    let mut server = Server::new("quota-race", &["alice"]);
    set_fields(&server, "alice", "quota_messages=20");
    start(&mut server);
    let out = python(&server, SENDERS);
    assert!(out.status.success(), "{}", out.stderr_text());
    // 18 reach 90%, which brings the notice (the 19th message); one more
    // fits, and the other 29 are deferred.
    assert_eq!(out.stdout_text().trim(), "19 29 0");
    let mut alice = Client::login(server.ports.imap, "alice");
    let root = alice.ok("GETQUOTAROOT INBOX");
    assert_eq!(resource(&root, "MESSAGE"), Some((20, 20)));
    assert_eq!(notices(&mut alice), 1);
}

#[test]
fn quota_commands_check_their_arguments() {
    let mut server = Server::new("quota-args", &["alice"]);
    start(&mut server);
    let mut c = Client::connect(server.ports.imap);
    assert!(
        c.call("GETQUOTAROOT INBOX").tagged.starts_with("BAD"),
        "before login"
    );
    let mut alice = Client::login(server.ports.imap, "alice");
    assert!(alice
        .call("GETQUOTAROOT Nowhere")
        .tagged
        .starts_with("NO [NONEXISTENT]"));
    assert!(alice.call("GETQUOTAROOT").tagged.starts_with("BAD"));
    assert!(alice.call("GETQUOTA").tagged.starts_with("BAD"));
    assert!(alice.call("SETQUOTA \"\"").tagged.starts_with("BAD"));
    let many = vec!["STORAGE 1"; 17].join(" ");
    let refused = alice.call(&format!("SETQUOTA \"\" ({many})"));
    assert!(
        refused.tagged.starts_with("BAD") && refused.tagged.contains("limit 16"),
        "{refused:?}"
    );
    assert!(alice
        .call("STATUS INBOX (DELETED-STORAGE BOGUS)")
        .tagged
        .starts_with("BAD"));
    // The session goes on.
    assert_eq!(
        alice.ok("STATUS INBOX (DELETED DELETED-STORAGE)"),
        ["* STATUS \"INBOX\" (DELETED 0 DELETED-STORAGE 0)"]
    );
}

/// The notice's "sent" mark is kept with the usage: a restart between two
/// deliveries above 90% does not send it again.
#[test]
fn the_notice_is_not_sent_again_after_a_restart() {
    let mut server = Server::new("quota-notice", &["alice"]);
    set_fields(&server, "alice", "quota_messages=30");
    start(&mut server);
    for n in 0..27 {
        deliver(&server, "alice", &format!("m{n}"), "hello");
    }
    // 27 of 30 is 90%: the notice came with the 27th, as the 28th message.
    let mut alice = Client::login(server.ports.imap, "alice");
    assert_eq!(notices(&mut alice), 1);
    let notice = alice.ok("FETCH 28 (BODY.PEEK[HEADER.FIELDS (SUBJECT FROM)] BODY.PEEK[TEXT])");
    let text = notice.join("\n");
    assert!(
        text.contains(&format!("Subject: {NOTICE_SUBJECT}"))
            && text.contains("Messages: 27 of 30."),
        "{text}"
    );
    server.stop();
    start(&mut server);
    deliver(&server, "alice", "after the restart", "hello");
    let mut alice = Client::login(server.ports.imap, "alice");
    assert_eq!(notices(&mut alice), 1);
    let root = alice.ok("GETQUOTAROOT INBOX");
    assert_eq!(resource(&root, "MESSAGE"), Some((29, 30)));
}
