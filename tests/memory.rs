//! Bounded memory against the real binary: message bytes stream from the
//! store in chunks (FETCH, POP3), incoming bodies live under a budget, and
//! the server's peak RSS (VmHWM) does not grow with message size or with
//! the number of clients that stop reading or stall mid-message.

mod common;

use std::io::{BufRead, Read};
use std::time::Duration;

use common::*;

/// The store's chunk size (src/store/blobs.rs): tests place edge cases on it.
const CHUNK: usize = 64 * 1024;

/// A raw IMAP connection, logged in as alice with INBOX selected.
fn imap(server: &Server) -> Raw {
    let mut c = Raw::connect(server.ports.imap);
    assert!(c.line().starts_with("* OK"));
    read_reply(&mut c, "l", Some("l LOGIN alice pw-alice"));
    read_reply(&mut c, "s", Some("s SELECT INBOX"));
    c
}

/// Sends `command` (if any) and reads everything up to the tagged reply,
/// literals included, as raw bytes.
fn read_reply(c: &mut Raw, tag: &str, command: Option<&str>) -> Vec<u8> {
    if let Some(command) = command {
        c.send(format!("{command}\r\n").as_bytes());
    }
    let mut all = Vec::new();
    loop {
        let mut line = Vec::new();
        c.reader.read_until(b'\n', &mut line).unwrap();
        assert!(!line.is_empty(), "connection closed: {}", lossy(&all));
        all.extend_from_slice(&line);
        if let Some(n) = literal_size(&line) {
            let mut data = vec![0; n];
            c.reader.read_exact(&mut data).unwrap();
            all.extend_from_slice(&data);
            continue;
        }
        if line.starts_with(format!("{tag} ").as_bytes()) {
            return all;
        }
    }
}

fn literal_size(line: &[u8]) -> Option<usize> {
    let body = line.strip_suffix(b"}\r\n")?;
    let open = body.iter().rposition(|&b| b == b'{')?;
    std::str::from_utf8(&body[open + 1..]).ok()?.parse().ok()
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(&bytes[..bytes.len().min(2000)]).into_owned()
}

/// The bytes of the first literal after `name` in a FETCH reply, and the
/// announcement that introduced it (`{n}` or `~{n}`).
fn literal_after(reply: &[u8], name: &str) -> (String, Vec<u8>) {
    let named = format!("{name} ");
    let at = find(reply, named.as_bytes()).unwrap_or_else(|| panic!("no {name}: {}", lossy(reply)))
        + named.len();
    let line_end = at + find(&reply[at..], b"\r\n").unwrap();
    let announcement = String::from_utf8(reply[at..line_end].to_vec()).unwrap();
    let n = literal_size(&reply[at..line_end + 2]).expect("a literal");
    (announcement, reply[line_end + 2..line_end + 2 + n].to_vec())
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// APPENDs `message` to INBOX with a synchronizing literal.
fn append(c: &mut Raw, message: &[u8]) {
    c.send(format!("ap APPEND INBOX {{{}}}\r\n", message.len()).as_bytes());
    assert!(c.line().starts_with('+'));
    c.send(message);
    c.send(b"\r\n");
    let reply = read_reply(c, "ap", None);
    assert!(lossy(&reply).contains("ap OK"), "{}", lossy(&reply));
}

/// A message of `size` bytes of CRLF lines of letters.
fn big_message(size: usize) -> Vec<u8> {
    let mut m = b"From: a@example.org\r\nSubject: big\r\n\r\n".to_vec();
    let mut i = 0u32;
    while m.len() < size {
        let line = format!("line {i:09} {}\r\n", "abcdefghij".repeat(7));
        m.extend_from_slice(line.as_bytes());
        i += 1;
    }
    m.truncate(size - 2);
    m.extend_from_slice(b"\r\n");
    m
}

#[test]
fn memory_does_not_grow_with_message_size_or_stalled_clients() {
    const SIZE: usize = 40 << 20;
    let mut server = Server::new("memory-peak", &["alice"]);
    // A small page cache, so what the test sees is what sessions hold.
    server.extra_args = vec!["--cache-size".into(), (4 << 20).to_string()];
    server.start();
    let message = big_message(SIZE);
    let replies = lmtp_deliver(&server, "s@example.org", &["alice"], &message);
    assert!(replies[0].starts_with("250"), "{replies:?}");
    // Delivery takes its share of the budget; restart so that the peak
    // below is what serving the message costs.
    server.stop();
    server.start();
    let mut check = imap(&server);
    let before = server.peak_rss_kib();

    // Ten clients ask for the message twice over and read nothing.
    let mut fetchers = Vec::new();
    for i in 0..10 {
        let mut c = imap(&server);
        c.send(format!("f{i} FETCH 1 (BODY.PEEK[] BODY.PEEK[])\r\n").as_bytes());
        fetchers.push(c);
    }
    // Ten clients send half of a 40 MiB APPEND and stall, half of them
    // with LITERAL+ (the server cannot hold them off with "+").
    let mut appenders = Vec::new();
    let half = vec![b'x'; SIZE / 2];
    for i in 0..10 {
        let mut c = imap(&server);
        if i % 2 == 0 {
            c.send(format!("a{i} APPEND INBOX {{{SIZE}}}\r\n").as_bytes());
            assert!(c.line().starts_with('+'));
        } else {
            c.send(format!("a{i} APPEND INBOX {{{SIZE}+}}\r\n").as_bytes());
        }
        c.send(&half);
        appenders.push(c);
    }
    // And four LMTP senders stall halfway through DATA.
    let mut senders = Vec::new();
    for _ in 0..4 {
        let mut c = Raw {
            reader: std::io::BufReader::new(server.lmtp()),
        };
        assert!(c.line().starts_with("220"));
        c.send(b"LHLO test\r\n");
        while c.line().starts_with("250-") {}
        assert!(c.cmd("MAIL FROM:<s@example.org>").starts_with("250"));
        assert!(c.cmd("RCPT TO:<alice>").starts_with("250"));
        assert!(c.cmd("DATA").starts_with("354"));
        c.send(&message[..SIZE / 2]);
        senders.push(c);
    }
    // The server is still serving everyone else: a partial FETCH across a
    // chunk edge deep in the message comes back right.
    let start = 20 * CHUNK - 7;
    let reply = read_reply(
        &mut check,
        "p",
        Some(&format!("p FETCH 1 (BODY.PEEK[]<{start}.100>)")),
    );
    let (_, bytes) = literal_after(&reply, &format!("BODY[]<{start}>"));
    assert_eq!(
        bytes,
        &message_as_stored(&server, &message)[start..start + 100]
    );
    // Let every stalled session reach its stall.
    std::thread::sleep(Duration::from_secs(3));
    read_reply(&mut check, "n", Some("n NOOP"));
    let peak = server.peak_rss_kib();
    let grown_mib = (peak.saturating_sub(before)) / 1024;
    eprintln!("VmHWM before {before} KiB, after {peak} KiB: grew {grown_mib} MiB");
    // Twenty-four clients that each held a message's worth would be 960 MiB;
    // one copy would be 40 MiB. What is allowed: the page cache (4 MiB),
    // and per connection a chunk or two of buffers (about 24 × 256 KiB).
    assert!(
        grown_mib < 24,
        "peak RSS grew by {grown_mib} MiB serving 24 stalled clients of a 40 MiB message"
    );
    drop(fetchers);
    drop(appenders);
    drop(senders);
}

/// The message as stored by LMTP: the trace headers come first.
fn message_as_stored(server: &Server, sent: &[u8]) -> Vec<u8> {
    let mut c = imap(server);
    let reply = read_reply(&mut c, "h", Some("h FETCH 1 (BODY.PEEK[]<0.2000>)"));
    let (_, head) = literal_after(&reply, "BODY[]<0>");
    let prefix = find(&head, b"From: a@example.org").expect("the sent message follows the trace");
    let mut stored = head[..prefix].to_vec();
    stored.extend_from_slice(sent);
    stored
}

#[test]
fn empty_sections_are_literals_nul_becomes_0x80_and_binary_uses_literal8() {
    let mut server = Server::new("memory-sections", &["alice"]);
    server.start();
    let mut c = imap(&server);
    let message = b"From: a@example.org\r\nSubject: parts\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=b\r\n\r\n\
--b\r\nContent-Type: text/plain\r\n\r\n\
--b\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\nAAECAw==\r\n\
--b\r\nContent-Type: text/plain\r\n\r\nnul\x00here\r\n--b--\r\n";
    c.send(format!("ap APPEND INBOX ~{{{}}}\r\n", message.len()).as_bytes());
    assert!(c.line().starts_with('+'));
    c.send(message);
    c.send(b"\r\n");
    assert!(lossy(&read_reply(&mut c, "ap", None)).contains("ap OK"));

    let reply = read_reply(
        &mut c,
        "f",
        Some("f FETCH 1 (BODY.PEEK[1] BODY.PEEK[]<100000.5> BODY.PEEK[3] BODY.PEEK[] BINARY.PEEK[2] BINARY.PEEK[] BINARY.PEEK[1])"),
    );
    let text = lossy(&reply);
    assert!(text.contains("f OK"), "{text}");
    // Empty content is a literal, never "".
    assert!(!text.contains("\"\""), "{text}");
    assert_eq!(literal_after(&reply, "BODY[1]"), ("{0}".into(), Vec::new()));
    assert_eq!(
        literal_after(&reply, "BODY[]<100000>"),
        ("{0}".into(), Vec::new())
    );
    // NUL in BODY output is 0x80, the length unchanged.
    assert_eq!(
        literal_after(&reply, "BODY[3]"),
        ("{8}".into(), b"nul\x80here".to_vec())
    );
    let (announced, whole) = literal_after(&reply, "BODY[]");
    assert_eq!(announced, format!("{{{}}}", message.len()));
    let mut want = message.to_vec();
    want.iter_mut().filter(|b| **b == 0).for_each(|b| *b = 0x80);
    assert_eq!(whole, want);
    // BINARY gives the stored bytes; with NUL in them, as literal8.
    assert_eq!(
        literal_after(&reply, "BINARY[2]"),
        ("~{4}".into(), vec![0, 1, 2, 3])
    );
    assert_eq!(
        literal_after(&reply, "BINARY[]"),
        (format!("~{{{}}}", message.len()), message.to_vec())
    );
    assert_eq!(
        literal_after(&reply, "BINARY[1]"),
        ("{0}".into(), Vec::new())
    );
    // A window of the decoded bytes: literal8 only if the window has NUL.
    let reply = read_reply(
        &mut c,
        "g",
        Some("g FETCH 1 (BINARY.PEEK[2]<1.2> BINARY.PEEK[2]<0.2> BINARY.SIZE[2])"),
    );
    assert_eq!(
        literal_after(&reply, "BINARY[2]<1>"),
        ("{2}".into(), vec![1, 2])
    );
    assert_eq!(
        literal_after(&reply, "BINARY[2]<0>"),
        ("~{2}".into(), vec![0, 1])
    );
    assert!(
        lossy(&reply).contains("BINARY.SIZE[2] 4"),
        "{}",
        lossy(&reply)
    );
}

#[test]
fn binary_of_a_large_encoded_part_decodes_across_chunk_edges() {
    let mut server = Server::new("memory-binary", &["alice"]);
    server.start();
    let mut c = imap(&server);
    // 600 KiB of every byte value, base64 in 76-column lines, and a
    // quoted-printable part with soft breaks and escapes over many chunks.
    let data: Vec<u8> = (0..600 * 1024u32).map(|i| (i * 7 % 256) as u8).collect();
    let mut message = b"From: a@example.org\r\nSubject: attachment\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\
Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        .to_vec();
    for line in base64(&data).chunks(76) {
        message.extend_from_slice(line);
        message.extend_from_slice(b"\r\n");
    }
    message.extend_from_slice(
        b"--b\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n",
    );
    let mut qp_want = Vec::new();
    for _ in 0..15_000 {
        message.extend_from_slice(b"caf=C3=A9 soft=\r\nbreak\r\n");
        qp_want.extend_from_slice("café softbreak\r\n".as_bytes());
    }
    message.extend_from_slice(b"--b--\r\n");
    append(&mut c, &message);
    let reply = read_reply(
        &mut c,
        "b",
        Some("b FETCH 1 (BINARY.SIZE[1] BINARY.PEEK[1] BINARY.PEEK[1]<65530.20> BINARY.PEEK[2])"),
    );
    assert!(lossy(&reply).contains(&format!("BINARY.SIZE[1] {}", data.len())));
    let (announced, got) = literal_after(&reply, "BINARY[1]");
    assert_eq!(announced, format!("~{{{}}}", data.len()));
    assert!(got == data, "BINARY[1] differs from the attachment");
    assert_eq!(
        literal_after(&reply, "BINARY[1]<65530>").1,
        &data[65530..65550]
    );
    // The part's last line break belongs to the boundary.
    let (_, got) = literal_after(&reply, "BINARY[2]");
    assert_eq!(got, &qp_want[..qp_want.len() - 2]);
}

fn base64(data: &[u8]) -> Vec<u8> {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::new();
    for group in data.chunks(3) {
        let n = group
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= group.len() {
                out.push(ABC[(n >> (18 - 6 * i) & 63) as usize]);
            } else {
                out.push(b'=');
            }
        }
    }
    out
}

/// A message whose chunk edges fall on the awkward places: a line that
/// starts with "." right at an edge, a CR and its LF on either side of one,
/// and a "." line straddling one.
fn edgy_message() -> Vec<u8> {
    let mut m = b"From: a@example.org\r\nSubject: edges\r\n\r\n".to_vec();
    let fill_to = |m: &mut Vec<u8>, at: usize| {
        // Lines of x up to `at`, the last one sized to end exactly there.
        while m.len() + 80 < at {
            m.extend_from_slice(&[b'x'; 78]);
            m.extend_from_slice(b"\r\n");
        }
        let n = at - m.len() - 2;
        m.extend(std::iter::repeat_n(b'y', n));
        m.extend_from_slice(b"\r\n");
    };
    fill_to(&mut m, CHUNK);
    m.extend_from_slice(b".starts at the first edge\r\n");
    fill_to(&mut m, 2 * CHUNK - 1);
    // CR at 2*CHUNK-2... make the CR the last byte of chunk 1.
    m.truncate(2 * CHUNK - 2);
    m.extend_from_slice(b"z\r\n.\r\n..\r\n");
    fill_to(&mut m, 3 * CHUNK - 1);
    m.truncate(3 * CHUNK - 1);
    m.extend_from_slice(b".. dot line straddling the third edge\r\nend\r\n");
    assert_eq!(m[2 * CHUNK - 1], b'\r');
    assert_eq!(m[2 * CHUNK], b'\n');
    assert_eq!(m[CHUNK], b'.');
    m
}

#[test]
fn partial_fetch_and_pop3_retr_are_right_across_chunk_edges() {
    let mut server = Server::new("memory-edges", &["alice"]);
    server.start();
    let mut c = imap(&server);
    let message = edgy_message();
    append(&mut c, &message);
    let text_start = find(&message, b"\r\n\r\n").unwrap() + 4;
    for (offset, len) in [
        (0, CHUNK + 1),
        (CHUNK - 3, 6),
        (CHUNK, CHUNK),
        (2 * CHUNK - 1, 2),
        (3 * CHUNK - 10, 1_000_000),
    ] {
        let reply = read_reply(
            &mut c,
            "p",
            Some(&format!(
                "p FETCH 1 (BODY.PEEK[]<{offset}.{len}> BODY.PEEK[TEXT]<{offset}.{len}>)"
            )),
        );
        let (_, got) = literal_after(&reply, &format!("BODY[]<{offset}>"));
        assert_eq!(got, &message[offset..(offset + len).min(message.len())]);
        let text = &message[text_start..];
        let (_, got) = literal_after(&reply, &format!("BODY[TEXT]<{offset}>"));
        assert_eq!(
            got,
            &text[offset.min(text.len())..(offset + len).min(text.len())]
        );
    }

    // POP3 RETR sends it dot-stuffed, byte for byte.
    let mut pop = Raw::connect(server.ports.pop3);
    assert!(pop.line().starts_with("+OK"));
    assert!(pop.cmd("USER alice").starts_with("+OK"));
    assert!(pop.cmd("PASS pw-alice").starts_with("+OK"));
    assert!(pop.cmd("RETR 1").starts_with("+OK"));
    let mut want = Vec::new();
    for line in message.split_inclusive(|&b| b == b'\n') {
        if line.starts_with(b".") {
            want.push(b'.');
        }
        want.extend_from_slice(line);
    }
    want.extend_from_slice(b".\r\n");
    let mut got = vec![0; want.len()];
    pop.reader.read_exact(&mut got).unwrap();
    assert!(got == want, "RETR differs from the dot-stuffed message");
    // TOP stops after its lines even deep in the message.
    assert!(pop.cmd("TOP 1 1").starts_with("+OK"));
    let top = pop.multiline();
    assert_eq!(
        top.last().map(String::as_str),
        Some(&*format!("{}\r\n", "x".repeat(78)))
    );
    assert!(pop.cmd("QUIT").starts_with("+OK"));
}

#[test]
fn a_taken_budget_refuses_for_now_after_the_wait() {
    let mut server = Server::new("memory-budget", &["alice"]);
    server.extra_args = vec![
        "--memory-budget".into(),
        "65536".into(),
        "--memory-wait".into(),
        "1".into(),
    ];
    // A spool file left by a crash is removed at startup.
    std::fs::create_dir_all(server.data.join("tmp")).unwrap();
    std::fs::write(server.data.join("tmp/incoming-1-0"), b"half a message").unwrap();
    server.start();
    assert!(!server.data.join("tmp/incoming-1-0").exists());
    // This sender takes the whole budget and stalls.
    let mut staller = imap(&server);
    staller.send(b"s1 APPEND INBOX {200000}\r\n");
    assert!(staller.line().starts_with('+'));
    staller.send(&[b'x'; 1000]);

    // A synchronizing literal gets no "+", then NO [LIMIT].
    let mut other = imap(&server);
    other.send(b"b1 APPEND INBOX {100000}\r\n");
    let reply = other.line();
    assert!(reply.starts_with("b1 NO [LIMIT]"), "{reply}");
    // A LITERAL+ one is read and dropped, then NO [LIMIT]; the session
    // goes on.
    other.send(b"b2 APPEND INBOX {100000+}\r\n");
    other.send(&[b'y'; 100000]);
    other.send(b"\r\n");
    let reply = other.line();
    assert!(reply.starts_with("b2 NO [LIMIT]"), "{reply}");
    assert!(lossy(&read_reply(&mut other, "n", Some("n NOOP"))).contains("n OK"));

    // LMTP: no 354, then 452 4.3.1.
    let mut lmtp = Raw {
        reader: std::io::BufReader::new(server.lmtp()),
    };
    assert!(lmtp.line().starts_with("220"));
    lmtp.send(b"LHLO test\r\n");
    while lmtp.line().starts_with("250-") {}
    assert!(lmtp.cmd("MAIL FROM:<s@example.org>").starts_with("250"));
    assert!(lmtp.cmd("RCPT TO:<alice>").starts_with("250"));
    let reply = lmtp.cmd("DATA");
    assert!(reply.starts_with("452 4.3.1"), "{reply}");

    // Once the stalled sender finishes, the budget is free again.
    let rest = 200000 - 1000;
    let mut body = b"Subject: slow\r\n\r\n".to_vec();
    body.resize(rest, b'z');
    staller.send(&body);
    staller.send(b"\r\n");
    let reply = lossy(&read_reply(&mut staller, "s1", None));
    assert!(reply.contains("s1 OK [APPENDUID"), "{reply}");
    lmtp.send(b"MAIL FROM:<s@example.org>\r\nRCPT TO:<alice>\r\n");
    assert!(lmtp.line().starts_with("250"));
    assert!(lmtp.line().starts_with("250"));
    assert!(lmtp.cmd("DATA").starts_with("354"));
    let reply = lmtp.cmd("Subject: now\r\n\r\nhello\r\n.");
    assert!(reply.starts_with("250"), "{reply}");
    // Nothing is left behind in the spool directory.
    assert_eq!(
        std::fs::read_dir(server.data.join("tmp")).unwrap().count(),
        0
    );
}

#[test]
fn a_large_append_is_spooled_and_keeps_the_parser_rules() {
    let mut server = Server::new("memory-utf8", &["alice"]);
    server.start();
    let mut c = imap(&server);
    let mut message = b"Subject: big utf8\r\n\r\n".to_vec();
    message.resize(3 * CHUNK, b'u');
    // UTF8 (~{n}) may not hold NUL (RFC 6855), however large.
    let mut with_nul = message.clone();
    with_nul[2 * CHUNK] = 0;
    c.send(format!("u1 APPEND INBOX UTF8 (~{{{}+}}\r\n", with_nul.len()).as_bytes());
    c.send(&with_nul);
    c.send(b")\r\n");
    let reply = lossy(&read_reply(&mut c, "u1", None));
    assert!(
        reply.starts_with("u1 BAD UTF8 message contains NUL"),
        "{reply}"
    );
    c.send(format!("u2 APPEND INBOX UTF8 (~{{{}}}\r\n", message.len()).as_bytes());
    assert!(c.line().starts_with('+'));
    c.send(&message);
    c.send(b")\r\n");
    let reply = lossy(&read_reply(&mut c, "u2", None));
    assert!(reply.contains("u2 OK [APPENDUID"), "{reply}");
    let reply = read_reply(&mut c, "f", Some("f FETCH 1 BODY.PEEK[]"));
    assert!(literal_after(&reply, "BODY[]").1 == message);
}
