//! Overlong lines and numbers past their limits, in every protocol, against
//! the real binary: each gets a clear reply, never a silent close.

mod common;

use common::*;

fn long_line(n: usize) -> Vec<u8> {
    let mut line = vec![b'x'; n];
    line.extend_from_slice(b"\r\n");
    line
}

#[test]
fn an_overlong_line_in_idle_is_answered_not_dropped() {
    let mut server = Server::new("idlelong", &["alice"]);
    server.start();
    let mut c = Raw::connect(server.ports.imap);
    c.line();
    assert!(c.cmd("a LOGIN alice pw-alice").starts_with("a OK"));
    c.cmd("b SELECT INBOX");
    while !c.line().starts_with("b OK") {}
    assert!(c.cmd("c IDLE").starts_with("+ "));
    c.send(&long_line(70_000));
    assert_eq!(c.line(), "* BAD Line too long (limit 65536 bytes)\r\n");
    assert_eq!(c.line(), "c BAD Expected DONE to end IDLE\r\n");
    // Still in step: the next command is served.
    assert!(c.cmd("d NOOP").starts_with("d OK"));
    // And outside IDLE too.
    let mut tagged = b"f NOOP ".to_vec();
    tagged.extend_from_slice(&long_line(70_000));
    c.send(&tagged);
    assert_eq!(
        c.line(),
        "f BAD [TOOBIG] line longer than the limit of 65536 bytes\r\n"
    );
    assert!(c.cmd("e NOOP").starts_with("e OK"));
    // And in AUTHENTICATE's exchange.
    let mut c = Raw::connect(server.ports.imap);
    c.line();
    assert!(c.cmd("g AUTHENTICATE PLAIN").starts_with("+"));
    c.send(&long_line(70_000));
    assert_eq!(
        c.line(),
        "g BAD Bad authentication exchange: response too long\r\n"
    );
    assert!(c.cmd("h NOOP").starts_with("h OK"));
}

#[test]
fn overlong_lines_in_pop3_and_lmtp_get_an_error_reply() {
    let mut server = Server::new("longlines", &["alice"]);
    server.start();
    let mut pop3 = Raw::connect(server.ports.pop3);
    pop3.line();
    pop3.send(&long_line(20_000));
    assert_eq!(pop3.line(), "-ERR Line too long (limit 2048 bytes)\r\n");
    assert!(pop3.cmd("USER alice").starts_with("+OK"));
    pop3.send(&long_line(20_000));
    assert!(pop3.line().starts_with("-ERR Line too long"));
    assert!(pop3.cmd("PASS pw-alice").starts_with("+OK"));
    pop3.send(&long_line(20_000));
    assert!(pop3.line().starts_with("-ERR Line too long"));
    assert!(pop3.cmd("STAT").starts_with("+OK"));
    let mut lmtp = Raw::connect(server.ports.lmtp);
    lmtp.line();
    lmtp.send(&long_line(20_000));
    assert_eq!(
        lmtp.line(),
        "500 5.5.2 Line too long (limit 4096 bytes)\r\n"
    );
    assert!(lmtp.cmd("NOOP").starts_with("250"));
}

#[test]
fn numbers_too_large_are_named_as_such() {
    let mut server = Server::new("numbers", &["alice"]);
    server.start();
    let replies = lmtp_deliver(&server, "a@b", &["alice"], b"Subject: x\r\n\r\nbody\r\n");
    assert!(replies[0].starts_with("250"));
    let mut imap = Raw::connect(server.ports.imap);
    imap.line();
    assert!(imap.cmd("a LOGIN alice pw-alice").starts_with("a OK"));
    assert_eq!(
        imap.cmd("b APPEND INBOX {99999999999999999999}"),
        "b NO [TOOBIG] literal size too large (the limit is 52428800 bytes)\r\n"
    );
    assert_eq!(
        imap.cmd("c APPEND INBOX {99999999999}"),
        "c NO [TOOBIG] literal of 99999999999 bytes is over the limit of 52428800 bytes\r\n"
    );
    assert!(imap.cmd("d NOOP").starts_with("d OK"));
    let mut pop3 = Raw::connect(server.ports.pop3);
    pop3.line();
    pop3.cmd("USER alice");
    assert!(pop3.cmd("PASS pw-alice").starts_with("+OK"));
    assert_eq!(
        pop3.cmd("RETR +1"),
        "-ERR Syntax: the message number must be a number\r\n"
    );
    let too_large = "-ERR The number of lines is too large (the limit is 4294967295)\r\n";
    assert_eq!(pop3.cmd("TOP 1 4294967296"), too_large);
    assert_eq!(pop3.cmd(&format!("TOP 1 {}", "9".repeat(23))), too_large);
    assert!(pop3.cmd("TOP 1 0").starts_with("+OK"));
    let lines = pop3.multiline();
    assert!(lines.iter().any(|l| l == "Subject: x\r\n"), "{lines:?}");
    assert!(!lines.iter().any(|l| l == "body\r\n"), "{lines:?}");
}
