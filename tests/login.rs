//! Logins against the real binary: fairness between addresses, the throttle
//! under parallel connections, the login cache and the login timeout.
//!
//! Loopback has a whole /8, so clients bind to 127.0.0.2, 127.0.0.3… to come
//! from different addresses. Timing assertions are lower bounds the server
//! promises (a deliberate delay) or orderings, never "this was fast".

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;

/// A TCP connection to 127.0.0.1:`port` whose source address is `from`.
fn connect_from(from: Ipv4Addr, port: u16) -> TcpStream {
    let stream = common::source_addr::connect_from(from, port).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    stream
}

fn ip(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, last)
}

/// A POP3 login from `from`; returns the reply to PASS.
fn pop3_login(port: u16, from: Ipv4Addr, user: &str, pass: &str) -> String {
    let stream = connect_from(from, port);
    let mut r = BufReader::new(stream);
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    assert!(line.starts_with("+OK"), "{line}");
    write!(r.get_mut(), "USER {user}\r\nPASS {pass}\r\n").unwrap();
    line.clear();
    r.read_line(&mut line).unwrap();
    assert!(line.starts_with("+OK"), "USER: {line}");
    line.clear();
    r.read_line(&mut line).unwrap();
    let _ = r.get_mut().write_all(b"QUIT\r\n");
    line
}

#[test]
fn parallel_guesses_from_one_address_take_turns() {
    let mut server = Server::new("turns", &["alice"]);
    server.start();
    let port = server.ports.pop3;
    let (done, answers) = mpsc::channel();
    let sent = Instant::now();
    for _ in 0..3 {
        let done = done.clone();
        std::thread::spawn(move || {
            let reply = pop3_login(port, ip(1), "alice", "wrong");
            let _ = done.send((reply, Instant::now()));
        });
    }
    let got: Vec<(String, Instant)> = (0..3).map(|_| answers.recv().unwrap()).collect();
    for (reply, _) in &got {
        assert!(reply.starts_with("-ERR [AUTH]"), "{reply}");
    }
    // Taking turns, the second guess is checked 1 s after the first failed
    // and the third 2 s after the second: the last answer comes at least
    // 3 s after they were sent, however fast hashing is. Checked all at
    // once, the three would be answered within a few hash times.
    let last = got.iter().map(|(_, at)| *at).max().unwrap() - sent;
    assert!(
        last >= Duration::from_millis(2900),
        "parallel guesses were not held back in turn: all answered within {last:?}"
    );
}

#[test]
fn a_flood_from_other_addresses_does_not_hold_up_a_correct_login() {
    let mut server = Server::new("fair", &["alice", "bob"]);
    server.start();
    let port = server.ports.pop3;
    let (done, flood_answers) = mpsc::channel();
    // Two addresses: one guessing bob's password, one spraying unknown names.
    for i in 0..30 {
        let done = done.clone();
        std::thread::spawn(move || {
            let (from, user) = if i % 2 == 0 {
                (ip(2), "bob".to_string())
            } else {
                (ip(3), format!("nobody{i}"))
            };
            let reply = pop3_login(port, from, &user, "wrong");
            let _ = done.send(reply);
        });
    }
    drop(done);
    // Once the flood is under way…
    let first = flood_answers.recv().unwrap();
    assert!(first.starts_with("-ERR [AUTH]"), "{first}");
    // …a correct login from a third address is checked next, not after the
    // rest of the flood.
    let ok = pop3_login(port, ip(4), "alice", "pw-alice");
    assert!(ok.starts_with("+OK"), "{ok}");
    let flood_before = 1 + flood_answers.try_iter().count();
    // Each flooding address gets one hash at once and then waits 1 s, 2 s…
    // before the next; served in arrival order, all 30 would come first.
    assert!(
        flood_before <= 6,
        "{flood_before} of 30 flood attempts were answered before the correct login"
    );
}

/// A server log line count, for lines a login writes.
fn count(server: &Server, what: &str) -> usize {
    server.log_text().matches(what).count()
}

#[test]
fn repeated_logins_are_answered_from_the_cache() {
    let mut server = Server::new("cache", &["alice"]);
    server.start();
    let port = server.ports.pop3;
    let login = |pass: &str| pop3_login(port, ip(1), "alice", pass);
    assert!(login("pw-alice").starts_with("+OK"));
    assert_eq!(count(&server, "logged in as alice (cached)"), 0);
    assert!(login("pw-alice").starts_with("+OK"));
    assert_eq!(count(&server, "logged in as alice (cached)"), 1);
    // IMAP shares the cache.
    let mut imap = Raw::connect(server.ports.imap);
    imap.line();
    assert!(imap.cmd("a LOGIN alice pw-alice").starts_with("a OK"));
    assert_eq!(count(&server, "logged in as alice (cached)"), 2);
    // A wrong password is never a hit, and is not remembered as one.
    assert!(login("pw-alicf").starts_with("-ERR [AUTH]"));
    assert!(
        login("pw-alice").starts_with("+OK"),
        "after the throttle's wait"
    );
    assert_eq!(count(&server, "logged in as alice (cached)"), 3);
    // A changed users file forgets everything: the old password no longer
    // works, and the new one is checked by a full hash first.
    server.user(&["passwd", "alice"], "new-pw\n").assert_ok();
    assert!(login("pw-alice").starts_with("-ERR [AUTH]"));
    assert!(server
        .log_text()
        .contains("login cache cleared: the users file changed"));
    assert!(login("new-pw").starts_with("+OK"));
    assert_eq!(count(&server, "logged in as alice (cached)"), 3);
    assert!(login("new-pw").starts_with("+OK"));
    assert_eq!(count(&server, "logged in as alice (cached)"), 4);
    // SIGHUP forgets too.
    server.signal(libc::SIGHUP);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !server.log_text().contains("login cache cleared: SIGHUP") {
        assert!(Instant::now() < deadline, "SIGHUP did not clear the cache");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(login("new-pw").starts_with("+OK"));
    assert_eq!(count(&server, "logged in as alice (cached)"), 4);
    assert!(!server.log_text().contains("pw-alice") && !server.log_text().contains("new-pw"));
}

#[test]
fn login_cache_zero_turns_it_off() {
    let mut server = Server::new("nocache", &["alice"]);
    server.start_with(&["--login-cache", "0"]);
    let port = server.ports.pop3;
    for _ in 0..3 {
        assert!(pop3_login(port, ip(1), "alice", "pw-alice").starts_with("+OK"));
    }
    assert_eq!(count(&server, "logged in as alice"), 3);
    assert_eq!(count(&server, "(cached)"), 0);
}

#[test]
fn guessing_addresses_wait_behind_a_clean_one() {
    let mut server = Server::new("priority", &["alice", "bob"]);
    server.start();
    let port = server.ports.pop3;
    let guessers: Vec<Ipv4Addr> = (10..20).map(ip).collect();
    let guess_all = |guessers: &[Ipv4Addr]| {
        let (done, answers) = mpsc::channel();
        for &from in guessers {
            let done = done.clone();
            std::thread::spawn(move || {
                let _ = done.send(pop3_login(port, from, "bob", "wrong"));
            });
        }
        answers
    };
    // Every guessing address gets a failure on its record…
    let answers = guess_all(&guessers);
    for _ in &guessers {
        assert!(answers.recv().unwrap().starts_with("-ERR [AUTH]"));
    }
    // …and, once its 1 s wait is over, guesses again, all at once.
    std::thread::sleep(Duration::from_millis(1100));
    let answers = guess_all(&guessers);
    assert!(answers.recv().unwrap().starts_with("-ERR [AUTH]"));
    // A correct login from a clean address goes ahead of those still
    // waiting for a hash; in arrival order it would wait for all of them.
    let ok = pop3_login(port, ip(4), "alice", "pw-alice");
    assert!(ok.starts_with("+OK"), "{ok}");
    let before = 1 + answers.try_iter().count();
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    assert!(
        before <= 2 * threads + 1,
        "{before} of {} guesses were checked before the clean login ({threads} hash threads)",
        guessers.len()
    );
}

#[test]
fn unauthenticated_connections_get_login_timeout_to_log_in() {
    let mut server = Server::new("logintimeout", &["alice"]);
    server.start_with(&["--login-timeout", "2"]);
    // A client that keeps talking but never logs in is still let go.
    let mut imap = Raw::connect(server.ports.imap);
    imap.line();
    let mut pop3 = Raw::connect(server.ports.pop3);
    pop3.line();
    let started = Instant::now();
    let bye = loop {
        let reply = imap.cmd("a NOOP");
        if !reply.starts_with("a OK") {
            break reply;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "never let go");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(bye, "* BYE Login timeout: log in within 2 seconds\r\n");
    assert!(imap.closed());
    assert_eq!(
        pop3.line(),
        "-ERR Login timeout: log in within 2 seconds, closing connection\r\n"
    );
    assert!(pop3.closed());
    // Logged in in time, a client stays past the login timeout.
    let mut imap = Raw::connect(server.ports.imap);
    imap.line();
    assert!(imap.cmd("a LOGIN alice pw-alice").starts_with("a OK"));
    let mut pop3 = Raw::connect(server.ports.pop3);
    pop3.line();
    pop3.cmd("USER alice");
    assert!(pop3.cmd("PASS pw-alice").starts_with("+OK"));
    std::thread::sleep(Duration::from_millis(2500));
    assert!(imap.cmd("b NOOP").starts_with("b OK"));
    assert!(pop3.cmd("NOOP").starts_with("+OK"));
}

#[test]
fn a_reply_due_when_the_login_time_runs_out_is_still_sent() {
    let mut server = Server::new("logintimeout2", &["alice"]);
    server.start_with(&["--login-timeout", "1"]);
    let mut imap = Raw::connect(server.ports.imap);
    imap.line();
    assert!(imap.cmd("a LOGIN alice wrong").starts_with("a NO"));
    // The throttle holds this one back 1 s, past the login timeout: its
    // answer still comes, then the goodbye.
    assert!(imap.cmd("b LOGIN alice wrong").starts_with("b NO"));
    assert_eq!(
        imap.line(),
        "* BYE Login timeout: log in within 1 seconds\r\n"
    );
    assert!(imap.closed());
}

#[test]
fn guessing_a_users_password_does_not_slow_the_user_at_a_known_address() {
    let mut server = Server::new("known", &["alice"]);
    server.start();
    let port = server.ports.pop3;
    // Alice's phone has logged in before.
    assert!(pop3_login(port, ip(3), "alice", "pw-alice").starts_with("+OK"));
    // Someone else guesses her password.
    for _ in 0..2 {
        assert!(pop3_login(port, ip(2), "alice", "wrong").starts_with("-ERR [AUTH]"));
    }
    let delayed_from = |server: &Server, from: &str| {
        server
            .log_text()
            .lines()
            .any(|l| l.contains(&format!("from {from}:")) && l.contains("delayed"))
    };
    // Her phone is not held back by the guessing (its login then clears
    // her counter)…
    assert!(pop3_login(port, ip(3), "alice", "pw-alice").starts_with("+OK"));
    assert!(!delayed_from(&server, "127.0.0.3"));
    // …but a new address is, as is the guesser.
    assert!(pop3_login(port, ip(2), "alice", "wrong").starts_with("-ERR [AUTH]"));
    assert!(pop3_login(port, ip(4), "alice", "pw-alice").starts_with("+OK"));
    assert!(delayed_from(&server, "127.0.0.4"));
    assert!(delayed_from(&server, "127.0.0.2"));
}
