//! LMTP delivery against the real binary: Python's smtplib.LMTP, the
//! `deliver` command, restarts, and bad input.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;

#[test]
fn smtplib_delivers_to_several_users_and_refuses_unknown_ones() {
    let mut server = Server::new("multi", &["alice", "bob", "carol"]);
    server.start();
    let out = python(
        &server,
        r#"
import os, smtplib
l = smtplib.LMTP('127.0.0.1', int(os.environ['LMTP_PORT']))
msg = b'From: x@example.org\r\nSubject: to three\r\n\r\nhello all\r\n'
refused = l.sendmail('x@example.org', ['alice@example.org', 'Bob@Example.org', 'nobody@example.org', 'carol+Junk@example.org'], msg)
print(sorted(refused.items()))
l.quit()
"#,
    );
    out.assert_ok();
    let stdout = out.stdout_text();
    assert!(stdout.contains("'nobody@example.org', (550"), "{stdout}");
    assert!(stdout.contains("5.1.1"), "{stdout}");
    server.stop();
    let log = server.log_text();
    assert!(
        log.contains("refused RCPT TO:<nobody@example.org>: no such user (550)"),
        "an administrator sees the refusal: {log}"
    );
    assert!(!log.contains("hello all"), "no message content in the log");
    for user in ["alice", "bob", "carol"] {
        let mail = server.export(user);
        assert_eq!(mail.len(), 1, "{user}: {mail:?}");
        let want_box = if user == "carol" { "Junk" } else { "INBOX" };
        assert_eq!(mail[0].0, want_box);
        assert!(mail[0]
            .2
            .ends_with(b"Subject: to three\r\n\r\nhello all\r\n"));
        assert!(mail[0].2.starts_with(b"Return-Path: <x@example.org>\r\n"));
    }
}

#[test]
fn mail_survives_a_restart() {
    let mut server = Server::new("restart", &["alice"]);
    server.start();
    for i in 0..5 {
        let replies = lmtp_deliver(
            &server,
            "s@x",
            &["alice"],
            format!("Subject: {i}\r\n\r\nbody {i}\r\n").as_bytes(),
        );
        assert!(replies[0].starts_with("250 2.0.0"), "{replies:?}");
    }
    server.stop();
    server.start();
    let replies = lmtp_deliver(
        &server,
        "s@x",
        &["alice"],
        b"Subject: after\r\n\r\nafter restart\r\n",
    );
    assert!(
        replies[0].contains("as UID 6"),
        "UIDs continue after a restart: {replies:?}"
    );
    server.stop();
    assert_eq!(server.export("alice").len(), 6);
}

#[test]
fn deliver_command_uses_the_socket_and_reports_sysexits() {
    let mut server = Server::new("deliver", &["alice"]);
    server.start();
    let deliver = |args: &[&str], input: &[u8]| {
        let mut cmd = Command::new(BIN);
        cmd.arg("deliver").args(args);
        run_with_stdin(cmd, input)
    };
    let data = server.data.to_str().unwrap().to_string();
    let ok = deliver(
        &["--data", &data, "-f", "s@x", "alice"],
        b"Subject: piped\n\n.starts with a dot\nbare LF lines\n",
    );
    ok.assert_ok();
    let tcp = deliver(
        &[
            "--lmtp",
            &format!("127.0.0.1:{}", server.ports.lmtp),
            "alice+Archive",
        ],
        b"Subject: tcp\n\nx\n",
    );
    tcp.assert_ok();
    let unknown = deliver(&["--data", &data, "nobody"], b"Subject: x\n\nx\n");
    assert_eq!(
        unknown.status.code(),
        Some(67),
        "EX_NOUSER: {}",
        unknown.stderr_text()
    );
    let unreachable = deliver(
        &["--socket", "/nonexistent/lmtp.sock", "alice"],
        b"Subject: x\n\nx\n",
    );
    assert_eq!(unreachable.status.code(), Some(75), "EX_TEMPFAIL");
    assert!(unreachable
        .stderr_text()
        .contains("is letterbox serve running"));
    let empty = deliver(&["--data", &data, "alice"], b"");
    assert_eq!(empty.status.code(), Some(66), "EX_NOINPUT");
    server.stop();
    let mail = server.export("alice");
    let inbox: Vec<_> = mail.iter().filter(|m| m.0 == "INBOX").collect();
    assert_eq!(inbox.len(), 1);
    assert!(inbox[0]
        .2
        .ends_with(b"Subject: piped\r\n\r\n.starts with a dot\r\nbare LF lines\r\n"));
    assert!(mail
        .iter()
        .any(|m| m.0 == "Archive" && m.2.ends_with(b"Subject: tcp\r\n\r\nx\r\n")));
}

#[test]
fn oversized_messages_get_552_and_nothing_is_stored() {
    let mut server = Server::new("size", &["alice"]);
    server.extra_args = vec!["--max-message-size".into(), "10000".into()];
    server.start();
    let mut c = Raw::connect(server.ports.lmtp);
    c.line();
    c.send(b"LHLO t\r\n");
    let mut caps = Vec::new();
    loop {
        let l = c.line();
        caps.push(l.clone());
        if !l.starts_with("250-") {
            break;
        }
    }
    assert!(caps.iter().any(|l| l.contains("SIZE 10000")), "{caps:?}");
    assert!(c.cmd("MAIL FROM:<a@b> SIZE=20000").starts_with("552 5.3.4"));
    let replies = lmtp_deliver(&server, "a@b", &["alice"], &vec![b'x'; 20_000]);
    assert!(replies[0].starts_with("552 5.3.4"), "{replies:?}");
    server.stop();
    let log = server.log_text();
    assert!(
        log.contains(
            "refused MAIL FROM:<a@b> with SIZE=20000: over the limit of 10000 bytes (552)"
        ),
        "{log}"
    );
    assert!(
        log.contains("refused a message over the size limit of 10000 bytes"),
        "{log}"
    );
    assert!(server.export_or_empty("alice").is_empty());
}

#[test]
fn bad_input_gets_clear_replies_and_the_server_keeps_serving() {
    let mut server = Server::new("badinput", &["alice"]);
    server.start();
    let rss_before = server.rss_kib();
    let mut c = Raw::connect(server.ports.lmtp);
    assert!(c.line().starts_with("220 mail.test"));
    // A 1 MB line.
    let mut long = vec![b'A'; 1 << 20];
    long.extend_from_slice(b"\r\n");
    c.send(&long);
    assert!(c.line().starts_with("500 5.5.2 Line too long"));
    // NUL bytes and invalid UTF-8.
    assert!(c.cmd("NO\0OP").starts_with("500 5.5.2"));
    c.send(b"MAIL FROM:<\xff\xfe@x>\r\n");
    assert!(c.line().starts_with("500 5.5.2"));
    assert!(c.cmd("LHLO t").starts_with("250-"));
    while !c.line().starts_with("250 ") {}
    // DATA without MAIL and without RCPT.
    assert!(c.cmd("DATA").starts_with("503"));
    assert!(c.cmd("MAIL FROM:<a@b>").starts_with("250"));
    assert!(c.cmd("DATA").starts_with("503 5.5.1 No valid recipients"));
    // Invalid addresses.
    for bad in [
        "RCPT TO:alice",
        "RCPT TO:<alice",
        "RCPT TO:<a b@c>",
        "RCPT TO:<@@>",
        "RCPT TO:<>",
    ] {
        assert!(c.cmd(bad).starts_with("501"), "{bad}");
    }
    // 10,000 recipients, pipelined in one write.
    let mut many = Vec::new();
    for _ in 0..10_000 {
        many.extend_from_slice(b"RCPT TO:<alice@example.org>\r\n");
    }
    c.send(&many);
    let replies: Vec<String> = (0..10_000).map(|_| c.line()).collect();
    assert_eq!(
        replies.iter().filter(|r| r.starts_with("250")).count(),
        1000
    );
    assert!(replies[1000].starts_with("452 4.5.3"), "{}", replies[1000]);
    assert!(c.cmd("RSET").starts_with("250"));
    // Another client is served meanwhile, and afterwards.
    let replies = lmtp_deliver(&server, "a@b", &["alice"], b"Subject: fine\r\n\r\nok\r\n");
    assert!(replies[0].starts_with("250"), "{replies:?}");
    // DATA cut off by a disconnect stores nothing.
    {
        let mut cut = Raw::connect(server.ports.lmtp);
        cut.line();
        cut.cmd("LHLO t");
        while !cut.line().starts_with("250 ") {}
        cut.cmd("MAIL FROM:<a@b>");
        cut.cmd("RCPT TO:<alice>");
        assert!(cut.cmd("DATA").starts_with("354"));
        cut.send(b"Subject: cut off\r\n\r\nhalf a message");
    }
    std::thread::sleep(Duration::from_millis(300));
    let rss_after = server.rss_kib();
    assert!(
        rss_after < rss_before + 32 * 1024,
        "memory ran away: {rss_before} KiB -> {rss_after} KiB"
    );
    assert!(c.cmd("QUIT").starts_with("221"));
    server.stop();
    let mail = server.export("alice");
    assert_eq!(mail.len(), 1, "only the complete message is stored");
    assert!(mail[0].2.ends_with(b"Subject: fine\r\n\r\nok\r\n"));
}

#[test]
fn a_listener_that_cannot_bind_names_its_flag() {
    let err = startup_error_with_taken("bind", "--pop3");
    assert!(
        err.contains("--pop3 ADDR") && err.contains("in use"),
        "{err}"
    );
    let mut bad = Command::new(BIN);
    bad.args(["serve", "--pop3", "nonsense"]);
    let out = bad.output().unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(out.stderr_text().contains("--pop3 takes host:port"));
}

#[test]
fn users_file_changes_apply_without_a_restart() {
    let mut server = Server::new("users", &["alice"]);
    server.start();
    let login = |user: &str, pass: &str| {
        let mut c = Raw::connect(server.ports.pop3);
        c.line();
        c.cmd(&format!("USER {user}"));
        c.cmd(&format!("PASS {pass}"))
    };
    assert!(
        lmtp_deliver(&server, "a@b", &["dave"], b"x").is_empty(),
        "dave is unknown yet"
    );
    server.user(&["add", "dave"], "pw-dave\n").assert_ok();
    assert!(login("dave", "pw-dave").starts_with("+OK"));
    assert!(
        lmtp_deliver(&server, "a@b", &["dave"], b"Subject: x\r\n\r\ny\r\n")[0].starts_with("250")
    );
    server.user(&["passwd", "dave"], "new-secret\n").assert_ok();
    assert!(login("dave", "new-secret").starts_with("+OK"));
    server.user(&["del", "dave"], "").assert_ok();
    assert!(login("dave", "new-secret").starts_with("-ERR [AUTH]"));
    let listed = server.user(&["list"], "");
    assert_eq!(names(&listed.stdout_text()), ["alice"]);
    let dup = server.user(&["add", "alice"], "x\n");
    assert!(!dup.status.success() && dup.stderr_text().contains("already exists"));
}

#[test]
fn wrong_passwords_are_refused_and_slowed_down() {
    let mut server = Server::new("throttle", &["alice"]);
    server.start();
    let attempt = |pass: &str| {
        let mut c = Raw::connect(server.ports.pop3);
        c.line();
        c.cmd("USER alice");
        let started = std::time::Instant::now();
        let reply = c.cmd(&format!("PASS {pass}"));
        (reply, started.elapsed())
    };
    let (first, _) = attempt("wrong");
    assert!(
        first.starts_with("-ERR [AUTH] Authentication failed"),
        "{first}"
    );
    let (second, _) = attempt("wrong");
    assert!(second.starts_with("-ERR [AUTH]"));
    // After two failures the throttle holds the next attempt back before it
    // is even checked. This asserts the deliberate delay exists (a lower
    // bound the server promises), not how fast anything runs.
    let (third, waited) = attempt("pw-alice");
    assert!(
        third.starts_with("+OK"),
        "the right password still works: {third}"
    );
    assert!(
        waited >= Duration::from_millis(900),
        "no delay after failures: {waited:?}"
    );
    assert!(server.log_text().contains("delayed"), "the delay is logged");
    assert!(
        !server.log_text().contains("wrong"),
        "passwords never reach the log"
    );
}

impl Server {
    fn export_or_empty(&self, user: &str) -> Vec<(String, String, Vec<u8>)> {
        let out = Command::new(BIN)
            .args(["export", user, "/nonexistent-unused"])
            .arg("--data")
            .arg(&self.data)
            .output()
            .unwrap();
        if out.stderr_text().contains("has no mail here") {
            return Vec::new();
        }
        self.export(user)
    }
}

#[test]
fn sighup_reloads_the_certificate_without_dropping_connections() {
    let mut server = Server::new("sighup", &["alice"]);
    server.start();
    let served = |server: &Server| {
        let out = python(
            server,
            "import os, ssl; print(ssl.get_server_certificate(('127.0.0.1', int(os.environ['POP3S_PORT']))))",
        );
        out.assert_ok();
        out.stdout_text().split_whitespace().collect::<String>()
    };
    let on_disk = |path: &std::path::Path| {
        std::fs::read_to_string(path)
            .unwrap()
            .split_whitespace()
            .collect::<String>()
    };
    let cert = server.data.join("tls-cert.pem");
    assert_eq!(served(&server), on_disk(&cert));
    let mut held = Raw::connect(server.ports.pop3);
    held.line();
    // Renew: another server's first start makes a fresh self-signed pair,
    // which is copied over this one's, as a certbot deploy hook would.
    let mut other = Server::new("sighup-gen", &[]);
    other.start();
    other.stop();
    std::fs::copy(
        other.data.join("tls-key.pem"),
        server.data.join("tls-key.pem"),
    )
    .unwrap();
    std::fs::copy(other.data.join("tls-cert.pem"), &cert).unwrap();
    server.signal(libc::SIGHUP);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !server.log_text().contains("tls: reloaded") {
        assert!(
            std::time::Instant::now() < deadline,
            "{}",
            server.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        served(&server),
        on_disk(&cert),
        "new connections get the new certificate"
    );
    assert!(
        held.cmd("CAPA").starts_with("+OK"),
        "the open connection survives"
    );
}

/// RFC 5321 §4.1.1.4: only CRLF "." CRLF ends the data. The smuggling shape
/// (a bare-LF "end", then a second transaction inside the same DATA) must
/// give one message, whether it comes over LMTP or through `deliver`.
#[test]
fn a_bare_lf_dot_never_ends_the_data() {
    let mut server = Server::new("smuggle", &["bob"]);
    server.start();
    let smuggled =
        b"MAIL FROM:<evil@x>\r\nRCPT TO:<bob>\r\nDATA\r\nSubject: smuggled\r\n\r\nevil\r\n";
    let mut c = Raw::connect(server.ports.lmtp);
    assert!(c.line().starts_with("220"));
    // Commands that end in a bare LF are refused, not obeyed.
    c.send(b"LHLO t\n");
    assert!(c.line().starts_with("500 5.5.2 Bare LF"));
    assert!(c.cmd("LHLO t").starts_with("250-"));
    while !c.line().starts_with("250 ") {}
    assert!(c.cmd("MAIL FROM:<a@b>").starts_with("250"));
    c.send(b"RCPT TO:<bob>\n");
    assert!(c.line().starts_with("500 5.5.2 Bare LF"));
    assert!(c.cmd("RCPT TO:<bob>").starts_with("250"));
    assert!(c.cmd("DATA").starts_with("354"));
    let mut data = b"Subject: one\r\n\r\nbody\n.\n".to_vec();
    data.extend_from_slice(smuggled);
    data.extend_from_slice(b".\r\n");
    c.send(&data);
    assert!(c.line().starts_with("250 2.0.0 <bob>"));
    // Had the smuggled commands run, this would be their replies instead.
    assert!(c.cmd("QUIT").starts_with("221"), "one reply per command");
    // The same shape on stdin of `letterbox deliver`.
    let mut input = b"Subject: two\n\nbody\n.\n".to_vec();
    input.extend_from_slice(smuggled);
    let mut cmd = Command::new(BIN);
    cmd.args(["deliver", "--data"]).arg(&server.data).arg("bob");
    run_with_stdin(cmd, &input).assert_ok();
    server.stop();
    let mail = server.export("bob");
    assert_eq!(mail.len(), 2, "one message per DATA: {mail:?}");
    let mut bodies: Vec<&[u8]> = mail.iter().map(|m| &m.2[..]).collect();
    bodies.sort_by_key(|b| b.windows(12).position(|w| w == b"Subject: two"));
    for (body, subject) in bodies.iter().zip(["one", "two"]) {
        let mut want = format!("Subject: {subject}\r\n\r\nbody\r\n.\r\n").into_bytes();
        want.extend_from_slice(smuggled);
        assert!(body.ends_with(&want), "{}", String::from_utf8_lossy(body));
    }
}

#[test]
fn deliver_to_several_users_exits_with_the_most_serious_failure_and_names_it() {
    let mut server = Server::new("deliver-multi", &["alice", "bob"]);
    server.extra_args = vec!["--max-message-size".into(), "2000".into()];
    server.start();
    let data = server.data.to_str().unwrap().to_string();
    let deliver = |users: &[&str], input: &[u8]| {
        let mut cmd = Command::new(BIN);
        cmd.args(["deliver", "--data", &data]).args(users);
        run_with_stdin(cmd, input)
    };
    let help = Command::new(BIN)
        .args(["deliver", "--help"])
        .output()
        .unwrap();
    let help = help.stdout_text();
    assert!(help.contains("75, then 69, 67, 65"), "{help}");
    assert!(help.contains("67 unknown user"), "{help}");
    let both = deliver(&["alice", "bob+archive"], b"Subject: both\n\nx\n");
    both.assert_ok();
    assert_eq!(both.stderr_text(), "", "nothing to say when all got it");
    let partly = deliver(&["alice", "nosuchuser"], b"Subject: partly\n\nx\n");
    let stderr = partly.stderr_text();
    assert_eq!(partly.status.code(), Some(67), "EX_NOUSER: {stderr}");
    assert!(stderr.contains("nosuchuser: 550 5.1.1"), "{stderr}");
    assert!(
        stderr.contains("delivered to alice; not delivered to nosuchuser; exit 67"),
        "{stderr}"
    );
    // Too big for alice (65) and unknown (67): the unknown user ranks higher.
    let big = [b"Subject: big\n\n".as_slice(), &[b'x'; 3000]].concat();
    let too_big = deliver(&["alice", "nosuchuser"], &big);
    assert_eq!(too_big.status.code(), Some(67), "{}", too_big.stderr_text());
    assert!(too_big.stderr_text().contains("alice: 552 5.3.4"));
    let only_big = deliver(&["alice"], &big);
    assert_eq!(only_big.status.code(), Some(65), "EX_DATAERR");
    server.stop();
    let alice = server.export("alice");
    assert_eq!(alice.len(), 2, "{alice:?}");
    let bob = server.export("bob");
    assert_eq!(bob.len(), 1);
    assert_eq!(
        bob[0].0, "Archive",
        "+archive matched Archive ignoring case"
    );

    // A disk short of space refuses DATA for now (452): the temporary
    // failure outranks the unknown user, so the MTA keeps the message.
    server.start_with(&["--min-free-space", "1000000000000000"]);
    let full = deliver(&["alice", "nosuchuser"], b"Subject: later\n\nx\n");
    assert_eq!(full.status.code(), Some(75), "{}", full.stderr_text());
    assert!(
        full.stderr_text()
            .contains("not delivered to nosuchuser, alice; exit 75"),
        "{}",
        full.stderr_text()
    );
    server.stop();
    assert_eq!(server.export("alice").len(), 2, "nothing stored meanwhile");
}

/// Under systemd, with stderr connected to the journal, each log line
/// starts with its syslog priority and has no timestamp; the same
/// variable with stderr elsewhere leaves the usual format alone.
#[test]
fn logs_carry_syslog_priorities_when_stderr_is_the_journal() {
    use std::os::unix::fs::MetadataExt;
    let mut server = Server::new("journal", &[]);
    server.extra_args = vec!["--max-connections-per-ip".into(), "1".into()];
    std::fs::write(&server.log, "").unwrap();
    let meta = std::fs::metadata(&server.log).unwrap();
    let stream = format!("{}:{}", meta.dev(), meta.ino());
    server.extra_env = vec![("JOURNAL_STREAM".into(), stream)];
    server.start();
    let mut first = Raw::connect(server.ports.lmtp);
    assert!(first.line().starts_with("220"));
    let mut second = Raw::connect(server.ports.lmtp);
    second.line();
    drop((first, second));
    server.stop();
    let log = server.log_text();
    let lines: Vec<&str> = log.lines().collect();
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("<6>") && l.contains("LMTP listening on")),
        "{log}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("<4>") && l.contains("refused")),
        "the refused connection is a warning: {log}"
    );
    assert!(
        lines
            .iter()
            .all(|l| l.starts_with('<') && !l.contains(" INFO ")),
        "every line has a priority and no timestamp: {log}"
    );

    // A stale JOURNAL_STREAM (stderr redirected to another file).
    let mut elsewhere = Server::new("journal-stale", &[]);
    elsewhere.extra_env = vec![("JOURNAL_STREAM".into(), "1:2".into())];
    elsewhere.start();
    elsewhere.stop();
    let log = elsewhere.log_text();
    assert!(log.lines().all(|l| !l.starts_with("<")), "{log}");
    assert!(log.contains("LMTP listening on"), "{log}");
}

/// SMTPUTF8 (RFC 6531): Python's smtplib.LMTP sends UTF-8 addresses once
/// the server offers it; without the parameter they are refused, and
/// `letterbox deliver` sets it by itself.
#[test]
fn smtputf8_delivers_to_utf8_addresses() {
    let mut server = Server::new("smtputf8", &["jörg"]);
    server.start();
    let out = python(
        &server,
        r#"
import os, smtplib
l = smtplib.LMTP('127.0.0.1', int(os.environ['LMTP_PORT']))
l.ehlo_or_helo_if_needed()
print('offered', l.has_extn('smtputf8'))
msg = 'From: Müller <müller@exämple.org>\r\nSubject: grüße\r\n\r\nhallo\r\n'.encode()
refused = l.sendmail('müller@exämple.org', ['Jörg@exämple.org', 'jörg+archive@exämple.org'],
                     msg, mail_options=['SMTPUTF8', 'BODY=8BITMIME'])
print('refused', refused)
l.quit()
"#,
    );
    out.assert_ok();
    assert_eq!(out.stdout_text(), "offered True\nrefused {}\n");

    let mut c = Raw::connect(server.ports.lmtp);
    c.line();
    c.send(b"LHLO t\r\n");
    while c.line().starts_with("250-") {}
    assert!(c.cmd("MAIL FROM:<a@b>").starts_with("250"));
    let refused = c.cmd("RCPT TO:<jörg@exämple.org>");
    assert!(refused.starts_with("553 5.6.7"), "{refused}");

    let mut cmd = Command::new(BIN);
    cmd.args(["deliver", "--data", server.data.to_str().unwrap(), "jörg"]);
    run_with_stdin(cmd, "Subject: piped\n\nx\n".as_bytes()).assert_ok();
    server.stop();
    let mail = server.export("jörg");
    assert_eq!(mail.len(), 3, "{mail:?}");
    let stored = mail
        .iter()
        .find(|m| m.0 == "INBOX" && m.2.ends_with("Subject: grüße\r\n\r\nhallo\r\n".as_bytes()))
        .expect("the UTF-8 message in INBOX");
    let text = String::from_utf8_lossy(&stored.2);
    assert!(
        text.starts_with("Return-Path: <müller@exämple.org>\r\n"),
        "{text}"
    );
    assert!(text.contains("with UTF8LMTP;"), "{text}");
    assert!(mail.iter().any(|m| m.0 == "Archive"));
}

fn lhlo(c: &mut Raw) -> Vec<String> {
    assert!(c.line().starts_with("220"));
    c.send(b"LHLO t\r\n");
    let mut caps = Vec::new();
    loop {
        let l = c.line();
        caps.push(l.trim_end().to_string());
        if !l.starts_with("250-") {
            return caps;
        }
    }
}

/// CHUNKING (RFC 3030) over a raw socket: chunks pipelined, one reply per
/// recipient after LAST (RFC 2033), BDAT 0 LAST, refusals that still read
/// the chunk so the next command is found, DATA after BDAT refused, the
/// size limit over all chunks, and a size that cannot be read closing.
#[test]
fn bdat_chunks_deliver_with_per_recipient_replies() {
    let mut server = Server::new("bdat", &["alice", "bob"]);
    server.extra_args = vec!["--max-message-size".into(), "10000".into()];
    server.start();
    let mut c = Raw::connect(server.ports.lmtp);
    assert!(lhlo(&mut c).contains(&"250-CHUNKING".to_string()));

    // Everything pipelined in one write.
    let first = b"Subject: chunked\r\n\r\nline one\r\n.not stuffed\r\n";
    let second = b"line two\r\n";
    let mut batch = Vec::new();
    batch.extend_from_slice(b"MAIL FROM:<s@x>\r\nRCPT TO:<alice>\r\nRCPT TO:<bob+archive>\r\n");
    batch.extend_from_slice(format!("BDAT {}\r\n", first.len()).as_bytes());
    batch.extend_from_slice(first);
    batch.extend_from_slice(format!("BDAT {} LAST\r\n", second.len()).as_bytes());
    batch.extend_from_slice(second);
    batch.extend_from_slice(b"NOOP\r\n");
    c.send(&batch);
    let replies: Vec<String> = (0..7).map(|_| c.line()).collect();
    assert!(
        replies[..3].iter().all(|r| r.starts_with("250")),
        "{replies:?}"
    );
    assert_eq!(
        replies[3],
        format!("250 2.0.0 {} octets received\r\n", first.len())
    );
    assert!(
        replies[4].starts_with("250 2.0.0 <alice> delivered to INBOX as UID 1"),
        "{replies:?}"
    );
    assert!(
        replies[5].starts_with("250 2.0.0 <bob+archive> delivered to Archive"),
        "{replies:?}"
    );
    assert!(replies[6].starts_with("250 2.0.0 Ok"), "{replies:?}");

    // BDAT 0 LAST ends a message sent in earlier chunks.
    c.cmd("MAIL FROM:<s@x>");
    c.cmd("RCPT TO:<alice>");
    c.send(b"BDAT 15\r\nSubject: zero\r\n");
    assert!(c.line().starts_with("250 2.0.0 15 octets"));
    assert!(c
        .cmd("BDAT 0 LAST")
        .starts_with("250 2.0.0 <alice> delivered"));

    // Refused chunks are still read: the next command is found.
    c.send(b"BDAT 10\r\nNOOP\r\nXY\r\n");
    assert!(c.line().starts_with("503 5.5.1 Need MAIL"));
    assert!(c.cmd("NOOP").starts_with("250"));
    c.cmd("MAIL FROM:<s@x>");
    c.send(b"BDAT 6 LAST\r\nQUIT\r\n");
    assert!(c.line().starts_with("503 5.5.1 No valid recipients"));
    // DATA after BDAT in one transaction; then RSET drops the chunks.
    c.cmd("RCPT TO:<alice>");
    c.send(b"BDAT 15\r\nSubject: drop\r\n");
    assert!(c.line().starts_with("250 2.0.0 15 octets"));
    assert!(c.cmd("DATA").starts_with("503 5.5.1 DATA after BDAT"));
    assert!(c.cmd("RSET").starts_with("250"));
    // Over the size limit in all: 552, the transaction ends, the rest of
    // the chunks of it are refused too, and the connection stays usable.
    c.cmd("MAIL FROM:<s@x>");
    c.cmd("RCPT TO:<alice>");
    c.cmd("RCPT TO:<bob>");
    c.send(b"BDAT 6000\r\n");
    c.send(&[b'x'; 6000]);
    assert!(c.line().starts_with("250 2.0.0 6000 octets"));
    c.send(b"BDAT 6000\r\n");
    c.send(&[b'y'; 6000]);
    assert!(c
        .line()
        .starts_with("552 5.3.4 message too big (limit 10000 bytes)"));
    c.send(b"BDAT 3 LAST\r\nabc");
    assert!(c.line().starts_with("503 5.5.1 Need MAIL"));
    // Too big at LAST: one 552 per recipient.
    c.cmd("MAIL FROM:<s@x>");
    c.cmd("RCPT TO:<alice>");
    c.cmd("RCPT TO:<bob>");
    c.send(b"BDAT 10001 LAST\r\n");
    c.send(&[b'z'; 10001]);
    assert!(c.line().starts_with("552 5.3.4 <alice>"));
    assert!(c.line().starts_with("552 5.3.4 <bob>"));
    // BDAT right after DATA's data works too: separate transactions.
    let replies = lmtp_deliver(&server, "s@x", &["bob"], b"Subject: by DATA\r\n\r\nd\r\n");
    assert!(replies[0].starts_with("250"), "{replies:?}");
    assert!(c.cmd("NOOP").starts_with("250"));
    // DATA ends its transaction: a BDAT after it needs a new MAIL.
    c.cmd("MAIL FROM:<s@x>");
    c.cmd("RCPT TO:<bob>");
    assert!(c.cmd("DATA").starts_with("354"));
    c.send(b"Subject: data then bdat\r\n\r\nd\r\n.\r\n");
    assert!(c.line().starts_with("250 2.0.0 <bob> delivered"));
    c.send(b"BDAT 3 LAST\r\nabc");
    assert!(c.line().starts_with("503 5.5.1 Need MAIL"));
    // Cut off mid-chunk: nothing is stored.
    {
        let mut cut = Raw::connect(server.ports.lmtp);
        lhlo(&mut cut);
        cut.cmd("MAIL FROM:<s@x>");
        cut.cmd("RCPT TO:<alice>");
        cut.send(b"BDAT 100 LAST\r\nSubject: cut off\r\n");
    }
    // A size that cannot be read: 501, and the connection closes.
    assert!(c.cmd("BDAT many").starts_with("501 5.5.4"));
    assert!(c.closed());
    server.stop();
    let log = server.log_text();
    assert!(
        log.contains("refused BDAT chunks of 12000 bytes in all"),
        "{log}"
    );

    let alice = server.export("alice");
    assert_eq!(alice.len(), 2, "{alice:?}");
    let chunked = alice
        .iter()
        .find(|m| m.2.ends_with(b"\r\n.not stuffed\r\nline two\r\n"))
        .expect("the chunked message, bytes as sent");
    assert!(String::from_utf8_lossy(&chunked.2).contains("Subject: chunked\r\n\r\nline one"));
    assert!(alice.iter().any(|m| m.2.ends_with(b"Subject: zero\r\n")));
    let bob = server.export("bob");
    assert_eq!(bob.len(), 3);
    assert!(bob.iter().any(|m| m.0 == "Archive"));
}

/// Stalled BDAT senders hold spool files, not memory: the peak RSS does
/// not grow with what they sent.
#[test]
fn stalled_bdat_chunks_are_spooled_not_held_in_memory() {
    let mut server = Server::new("bdat-memory", &["alice"]);
    server.extra_args = vec!["--cache-size".into(), (4 << 20).to_string()];
    server.start();
    let before = server.peak_rss_kib();
    let mut senders = Vec::new();
    let piece = vec![b'x'; 8 << 20];
    for i in 0..6 {
        let mut c = Raw::connect(server.ports.lmtp);
        lhlo(&mut c);
        assert!(c.cmd("MAIL FROM:<s@x>").starts_with("250"));
        assert!(c.cmd("RCPT TO:<alice>").starts_with("250"));
        if i == 0 {
            // Several whole chunks, then a stall before LAST.
            for _ in 0..3 {
                c.send(format!("BDAT {}\r\n", piece.len()).as_bytes());
                c.send(&piece);
                assert!(c.line().starts_with("250 2.0.0"));
            }
        } else {
            // Half of a 16 MiB chunk, then a stall.
            c.send(format!("BDAT {}\r\n", 2 * piece.len()).as_bytes());
            c.send(&piece);
        }
        senders.push(c);
    }
    // Let the server read what was sent.
    std::thread::sleep(Duration::from_secs(2));
    let mut check = Raw::connect(server.ports.lmtp);
    lhlo(&mut check);
    let peak = server.peak_rss_kib();
    let grown_mib = peak.saturating_sub(before) / 1024;
    // Held in memory, the 64 MiB sent would show; spooled, each session
    // keeps a buffer or two.
    assert!(
        grown_mib < 20,
        "peak RSS grew by {grown_mib} MiB for 64 MiB of stalled chunks"
    );
    drop(senders);
}
