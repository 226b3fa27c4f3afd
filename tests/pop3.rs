//! POP3 against the real binary: curl, Python's poplib (plain, POP3S, STLS,
//! AUTH PLAIN), a raw protocol suite, and both DELE modes end to end.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;

fn deliver_n(server: &Server, user: &str, n: usize) {
    for i in 1..=n {
        let body =
            format!("Subject: message {i}\r\nFrom: <s@x>\r\n\r\nbody of {i}\r\n.dotted {i}\r\n");
        let replies = lmtp_deliver(server, "s@x", &[user], body.as_bytes());
        assert!(replies[0].starts_with("250"), "{replies:?}");
    }
}

fn curl(args: &[&str]) -> std::process::Output {
    Command::new("curl")
        .args(["-s", "-S", "--max-time", "20"])
        .args(args)
        .output()
        .expect("curl is a test dependency (.ci/run installs it)")
}

#[test]
fn curl_lists_retrieves_and_deletes_over_pop3_and_pop3s() {
    let mut server = Server::new("curl", &["alice"]);
    server.start();
    deliver_n(&server, "alice", 3);
    let plain = format!("pop3://127.0.0.1:{}/", server.ports.pop3);
    let tls = format!("pop3s://127.0.0.1:{}/", server.ports.pop3s);
    let list = curl(&["-u", "alice:pw-alice", &plain]);
    list.assert_ok();
    assert_eq!(
        list.stdout_text().lines().count(),
        3,
        "{}",
        list.stdout_text()
    );
    let retr = curl(&["-k", "-u", "alice:pw-alice", &format!("{tls}2")]);
    retr.assert_ok();
    assert!(retr.stdout_text().contains("Subject: message 2\r\n"));
    assert!(
        retr.stdout_text().ends_with("body of 2\r\n.dotted 2\r\n"),
        "dot-stuffing undone by curl"
    );
    let stls = curl(&[
        "-k",
        "--ssl-reqd",
        "-u",
        "alice:pw-alice",
        &format!("{plain}3"),
    ]);
    stls.assert_ok();
    assert!(stls.stdout_text().contains("Subject: message 3"));
    curl(&[
        "-u",
        "alice:pw-alice",
        "-X",
        "DELE",
        "-I",
        &format!("{plain}1"),
    ])
    .assert_ok();
    let after = curl(&["-k", "-u", "alice:pw-alice", &tls]);
    assert_eq!(after.stdout_text().lines().count(), 2);
    let wrong = curl(&["-u", "alice:nope", &plain]);
    assert!(!wrong.status.success());
}

#[test]
fn poplib_plain_tls_stls_and_auth_plain() {
    let mut server = Server::new("poplib", &["alice"]);
    server.start();
    deliver_n(&server, "alice", 2);
    let out = python(
        &server,
        r#"
import os, poplib, ssl, base64
port, sport = int(os.environ['POP3_PORT']), int(os.environ['POP3S_PORT'])
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE

p = poplib.POP3('127.0.0.1', port)
caps = p.capa()
assert 'STLS' in caps and 'UIDL' in caps and 'TOP' in caps and caps['SASL'] == ['PLAIN', 'LOGIN'], caps
p.stls(ctx)
assert 'STLS' not in p.capa()
p.user('alice'); p.pass_('pw-alice')
count, size = p.stat(); assert count == 2, count
resp, lines, octets = p.retr(1)
assert b'Subject: message 1' in lines, lines
resp, lines, octets = p.top(2, 0)
assert lines[-1] == b'' and b'Subject: message 2' in lines, lines
u1 = p.uidl()[1]
p.quit()

s = poplib.POP3_SSL('127.0.0.1', sport, context=ctx)
s.user('alice'); s.pass_('pw-alice')
assert s.uidl()[1] == u1, 'UIDL is stable across sessions'
s.quit()

a = poplib.POP3('127.0.0.1', port)
resp = a._shortcmd('AUTH PLAIN ' + base64.b64encode(b'\0alice\0pw-alice').decode())
assert resp.startswith(b'+OK'), resp
assert a.stat()[0] == 2
a.quit()

b = poplib.POP3('127.0.0.1', port)
try:
    b._shortcmd('AUTH PLAIN ' + base64.b64encode(b'\0alice\0wrong').decode())
    raise SystemExit('wrong password accepted')
except poplib.error_proto as e:
    assert b'[AUTH]' in e.args[0], e
print('ok')
"#,
    );
    out.assert_ok();
    assert_eq!(out.stdout_text().trim(), "ok", "{}", out.stderr_text());
}

#[test]
fn every_command_in_every_state_and_bad_arguments() {
    let mut server = Server::new("suite", &["alice"]);
    server.start();
    deliver_n(&server, "alice", 2);
    let mut c = Raw::connect(server.ports.pop3);
    assert!(c.line().starts_with("+OK mail.test"));
    // AUTHORIZATION state.
    for cmd in [
        "STAT", "LIST", "RETR 1", "DELE 1", "NOOP", "RSET", "TOP 1 1", "UIDL", "PASS x",
    ] {
        assert!(c.cmd(cmd).starts_with("-ERR"), "{cmd} before login");
    }
    assert!(c.cmd("FROB").starts_with("-ERR Unknown command"));
    assert!(c.cmd("APOP alice 0123").starts_with("-ERR"));
    c.send(b"AUTH\r\n");
    assert!(c.line().starts_with("+OK"));
    assert_eq!(c.multiline(), ["PLAIN\r\n", "LOGIN\r\n"]);
    assert!(c.cmd("AUTH LOGIN").starts_with("+ VXNlcm5hbWU6"));
    assert!(c.cmd("YWxpY2U=").starts_with("+ UGFzc3dvcmQ6"));
    assert!(c.cmd("*").starts_with("-ERR Authentication cancelled"));
    assert!(c.cmd("USER alice").starts_with("+OK"));
    assert!(c
        .cmd("PASS pw-alice")
        .starts_with("+OK Logged in, 2 messages"));
    // TRANSACTION state.
    for cmd in ["USER alice", "PASS x", "AUTH PLAIN", "STLS"] {
        assert!(c.cmd(cmd).starts_with("-ERR"), "{cmd} after login");
    }
    for bad in [
        "RETR 0",
        "RETR 99999",
        "RETR -1",
        "RETR x",
        "LIST garbage",
        "LIST 1 2",
        "TOP 1",
        "TOP 1 x",
        "DELE",
        "NOOP x",
    ] {
        assert!(c.cmd(bad).starts_with("-ERR"), "{bad}");
    }
    let mut long = vec![b'N'; 100_000];
    long.extend_from_slice(b"\r\n");
    c.send(&long);
    assert!(c.line().starts_with("-ERR Line too long"));
    assert!(
        c.cmd("NOOP").starts_with("+OK"),
        "the session goes on after an overlong line"
    );
    assert!(c.cmd("DELE 1").starts_with("+OK"));
    assert!(c.cmd("DELE 1").contains("already deleted"));
    assert!(c.cmd("RETR 1").contains("already deleted"));
    assert!(c.cmd("STAT").starts_with("+OK 1 "));
    assert!(c.cmd("RSET").starts_with("+OK"));
    assert!(c.cmd("STAT").starts_with("+OK 2 "));
    // Pipelined: everything in one write, answered in order.
    c.send(b"STAT\r\nLIST 1\r\nUIDL 2\r\nNOOP\r\nTOP 1 0\r\nDELE 2\r\n");
    assert!(c.line().starts_with("+OK 2 "));
    assert!(c.line().starts_with("+OK 1 "));
    assert!(c.line().starts_with("+OK 2 "));
    assert_eq!(c.line(), "+OK\r\n");
    assert!(c.line().starts_with("+OK"));
    let top = c.multiline();
    assert!(top.iter().any(|l| l == "Subject: message 1\r\n") && top.last().unwrap() == "\r\n");
    assert!(c.line().starts_with("+OK Message 2 deleted"));
    assert!(c.cmd("QUIT").starts_with("+OK Bye (1 messages deleted)"));
    assert!(c.closed());
    // A web form posted at the port: twenty unknown commands in a row close
    // the connection.
    let mut web = Raw::connect(server.ports.pop3);
    assert!(web.line().starts_with("+OK"));
    let mut post = String::from("POST /form HTTP/1.1\r\nHost: mail.example.org\r\n");
    for i in 0..30 {
        post.push_str(&format!("X-Filler-{i}: USER alice\r\n"));
    }
    web.send(post.as_bytes());
    for i in 0..19 {
        assert!(web.line().starts_with("-ERR Unknown command"), "line {i}");
    }
    assert_eq!(
        web.line(),
        "-ERR Too many unknown commands, closing connection\r\n"
    );
    assert!(web.closed());
    server.stop();
    let left = server.export("alice");
    assert_eq!(left.len(), 1);
    assert!(String::from_utf8_lossy(&left[0].2).contains("Subject: message 1"));
}

#[test]
fn a_dropped_connection_deletes_nothing_and_releases_the_maildrop() {
    let mut server = Server::new("drop", &["alice"]);
    server.start();
    let big = format!("Subject: big\r\n\r\n{}", "x".repeat(200) + "\r\n").repeat(2000);
    assert!(lmtp_deliver(&server, "s@x", &["alice"], big.as_bytes())[0].starts_with("250"));
    deliver_n(&server, "alice", 1);
    {
        let mut c = Raw::connect(server.ports.pop3);
        c.line();
        c.cmd("USER alice");
        assert!(c.cmd("PASS pw-alice").starts_with("+OK"));
        // A second session is refused while this one holds the maildrop.
        let mut other = Raw::connect(server.ports.pop3);
        other.line();
        other.cmd("USER alice");
        assert!(other.cmd("PASS pw-alice").starts_with("-ERR [IN-USE]"));
        assert!(c.cmd("DELE 2").starts_with("+OK"));
        // Drop mid-RETR: ask for the big message and hang up unread.
        c.send(b"RETR 1\r\n");
    }
    std::thread::sleep(Duration::from_millis(300));
    let mut again = Raw::connect(server.ports.pop3);
    again.line();
    again.cmd("USER alice");
    assert!(
        again
            .cmd("PASS pw-alice")
            .starts_with("+OK Logged in, 2 messages"),
        "lock released, nothing deleted"
    );
    again.cmd("QUIT");
}

#[test]
fn the_listing_is_fixed_at_login_and_uidl_is_never_reused() {
    let mut server = Server::new("fixed", &["alice"]);
    server.start();
    deliver_n(&server, "alice", 2);
    let mut c = Raw::connect(server.ports.pop3);
    c.line();
    c.cmd("USER alice");
    c.cmd("PASS pw-alice");
    deliver_n(&server, "alice", 1);
    assert!(
        c.cmd("STAT").starts_with("+OK 2 "),
        "new mail waits for the next session"
    );
    c.send(b"UIDL\r\n");
    c.line();
    let first: Vec<String> = c
        .multiline()
        .iter()
        .map(|l| l.split(" ").nth(1).unwrap().trim_end().to_string())
        .collect();
    c.cmd("DELE 2");
    c.cmd("QUIT");
    deliver_n(&server, "alice", 1);
    let mut d = Raw::connect(server.ports.pop3);
    d.line();
    d.cmd("USER alice");
    assert!(d
        .cmd("PASS pw-alice")
        .starts_with("+OK Logged in, 3 messages"));
    d.send(b"UIDL\r\n");
    d.line();
    let second: Vec<String> = d
        .multiline()
        .iter()
        .map(|l| l.split(" ").nth(1).unwrap().trim_end().to_string())
        .collect();
    assert_eq!(second[0], first[0], "a message keeps its UIDL");
    assert!(
        !second.contains(&first[1]),
        "a deleted message's UIDL is never reused"
    );
    let all: std::collections::HashSet<_> = second.iter().collect();
    assert_eq!(all.len(), 3);
    for uidl in &second {
        assert!(
            uidl.len() == 16 && uidl.bytes().all(|b| b.is_ascii_hexdigit()),
            "{uidl}"
        );
    }
}

#[test]
fn delete_mode_expunges_and_keep_mode_only_hides_from_pop3() {
    for (mode, user_field) in [
        ("delete", None),
        ("keep", None),
        ("delete", Some("pop3_mode=keep")),
    ] {
        let mut server = Server::new("modes", &["alice"]);
        if let Some(field) = user_field {
            // Dovecot's passwd-file form keeps extra fields in field 8.
            let users = server.data.join("users");
            let text = std::fs::read_to_string(&users).unwrap();
            let line = text.lines().find(|l| l.starts_with("alice:")).unwrap();
            std::fs::write(&users, format!("{line}::::::{field}\n")).unwrap();
        }
        server.extra_args = vec!["--pop3-mode".into(), mode.into()];
        server.start();
        deliver_n(&server, "alice", 3);
        let mut c = Raw::connect(server.ports.pop3);
        c.line();
        c.cmd("USER alice");
        c.cmd("PASS pw-alice");
        c.send(b"RETR 3\r\n");
        c.line();
        c.multiline();
        assert!(c.cmd("DELE 1").starts_with("+OK"));
        assert!(c.cmd("DELE 2").starts_with("+OK"));
        assert!(c.cmd("QUIT").starts_with("+OK Bye (2 messages deleted)"));
        let mut d = Raw::connect(server.ports.pop3);
        d.line();
        d.cmd("USER alice");
        assert!(
            d.cmd("PASS pw-alice")
                .starts_with("+OK Logged in, 1 messages"),
            "{mode} {user_field:?}"
        );
        d.cmd("QUIT");
        server.stop();
        let stored = server.export("alice");
        let keep = mode == "keep" || user_field.is_some();
        assert_eq!(
            stored.len(),
            if keep { 3 } else { 1 },
            "{mode} {user_field:?}"
        );
        // RETR marks a message seen (Maildir flag S), and so does a hidden DELE.
        let seen = stored
            .iter()
            .filter(|m| m.1.ends_with(",S") || m.1.contains(":2,S"))
            .count();
        assert_eq!(
            seen,
            stored.len(),
            "{:?}",
            stored.iter().map(|m| &m.1).collect::<Vec<_>>()
        );
    }
}

#[test]
fn bad_logins_close_after_three_tries_and_plaintext_rules_show_in_capa() {
    let mut server = Server::new("pop3auth", &["alice"]);
    server.start();
    let mut c = Raw::connect(server.ports.pop3);
    c.line();
    c.send(b"CAPA\r\n");
    assert!(c.line().starts_with("+OK"));
    let caps = c.multiline();
    // Loopback counts as local, so USER and SASL are offered even without TLS.
    for cap in [
        "USER\r\n",
        "STLS\r\n",
        "RESP-CODES\r\n",
        "PIPELINING\r\n",
        "AUTH-RESP-CODE\r\n",
        "IMPLEMENTATION letterbox\r\n",
    ] {
        assert!(caps.iter().any(|c| c == cap), "{cap:?} in {caps:?}");
    }
    for _ in 0..2 {
        c.cmd("USER alice");
        assert!(c.cmd("PASS bad").starts_with("-ERR [AUTH]"));
    }
    c.cmd("USER alice");
    assert!(c.cmd("PASS bad").contains("too many attempts"));
    assert!(c.closed());
}

#[test]
fn passwords_are_refused_off_loopback_without_tls() {
    let Some(host) = TestHost::create() else {
        eprintln!("skipped: making a network namespace needs root and iproute2");
        return;
    };
    let script = r#"
import os, poplib, ssl
ip, port = os.environ['SERVER_IP'], int(os.environ['POP3_PORT'])
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
p = poplib.POP3(ip, port, timeout=20)
caps = p.capa()
print('capa', 'USER' in caps, 'SASL' in caps, 'STLS' in caps)
try:
    p.user('alice'); print('user accepted')
except poplib.error_proto as e:
    print('user refused', e.args[0].decode())
p.stls(ctx)
p.user('alice'); p.pass_('pw-alice'); print('login over STLS ok')
p.quit()
"#;
    for allow in [false, true] {
        let mut server = Server::new("offloopback", &["alice"]);
        server.bind_ip = "0.0.0.0".into();
        if allow {
            server.extra_args.push("--allow-plaintext-auth".into());
        }
        server.start();
        let out = host.python(
            script,
            &[
                ("SERVER_IP", TestHost::SERVER_IP.into()),
                ("POP3_PORT", server.ports.pop3.to_string()),
            ],
        );
        out.assert_ok();
        let text = out.stdout_text();
        if allow {
            assert!(
                text.contains("capa True True True") && text.contains("user accepted"),
                "{text}"
            );
        } else {
            assert!(text.contains("capa False False True"), "{text}");
            assert!(
                text.contains("user refused -ERR [AUTH] Plaintext authentication is not allowed"),
                "{text}"
            );
        }
        assert!(text.contains("login over STLS ok"), "{text}");
    }
}
