//! The crash test: eight LMTP senders deliver while the server is killed
//! with SIGKILL at a random moment. After a restart, every message that got
//! 250 must be there byte for byte, and nothing half-written may be visible.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};

use common::*;

/// Eight threads, each delivering numbered messages with smtplib.LMTP until
/// the server goes away; "ACK id" is printed only after the 250 reply.
const SENDERS: &str = r#"
import os, smtplib, sys, threading
port = int(os.environ['LMTP_PORT'])
round_no = os.environ['ROUND']
lock = threading.Lock()

def body(mid):
    lines = ''.join('%s line %04d .. the quick brown fox\r\n' % (mid, n) for n in range(400))
    return ('Subject: %s\r\nMessage-Id: <%s@crash.test>\r\n\r\n.leading dot\r\n' % (mid, mid) + lines).encode()

def sender(t):
    try:
        l = smtplib.LMTP('127.0.0.1', port)
        n = 0
        while True:
            mid = 'r%s-t%d-m%d' % (round_no, t, n)
            refused = l.sendmail('s@crash.test', ['alice'], body(mid))
            if not refused:
                with lock:
                    sys.stdout.write('ACK %s\n' % mid)
                    sys.stdout.flush()
            n += 1
    except Exception:
        pass

threads = [threading.Thread(target=sender, args=(t,)) for t in range(8)]
for th in threads: th.start()
for th in threads: th.join()
"#;

/// The exact bytes the senders send for a message id (smtplib sends the
/// bytes as given: CRLF lines, dot-stuffed on the wire only).
fn expected_body(mid: &str) -> Vec<u8> {
    let mut text =
        format!("Subject: {mid}\r\nMessage-Id: <{mid}@crash.test>\r\n\r\n.leading dot\r\n");
    for n in 0..400 {
        text.push_str(&format!("{mid} line {n:04} .. the quick brown fox\r\n"));
    }
    text.into_bytes()
}

fn random_millis(low: u64, high: u64) -> u64 {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64;
    low + nanos % (high - low)
}

#[test]
fn sigkill_during_eight_concurrent_senders_loses_nothing_acknowledged() {
    let mut server = Server::new("crash", &["alice"]);
    let mut acked: Vec<String> = Vec::new();
    for round in 0..4 {
        server.start();
        let mut senders = Command::new("python3")
            .arg("-c")
            .arg(SENDERS)
            .env("LMTP_PORT", server.ports.lmtp.to_string())
            .env("ROUND", round.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3");
        let stdout = senders.stdout.take().unwrap();
        let (first_ack, acked_once) = std::sync::mpsc::channel();
        let reader = std::thread::spawn(move || {
            let acks = BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
                .filter_map(|l| l.strip_prefix("ACK ").map(str::to_string));
            let mut all = Vec::new();
            for ack in acks {
                if all.is_empty() {
                    let _ = first_ack.send(());
                }
                all.push(ack);
            }
            all
        });
        // Kill at a random moment once deliveries are flowing: on a loaded
        // machine the senders can take a while to start at all.
        let _ = acked_once.recv_timeout(Duration::from_secs(60));
        std::thread::sleep(Duration::from_millis(random_millis(50, 1000)));
        server.kill();
        let _ = senders.wait();
        let round_acked = reader.join().unwrap();
        assert!(
            !round_acked.is_empty(),
            "round {round}: nothing was delivered before the kill"
        );
        acked.extend(round_acked);
    }
    // The restart after the last kill must open the database (redb repairs
    // it) and serve.
    server.start();
    assert!(
        lmtp_deliver(&server, "s@x", &["alice"], b"Subject: after\r\n\r\nx\r\n")[0]
            .starts_with("250")
    );
    server.stop();

    let mut stored: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for (mailbox, _, bytes) in server.export("alice") {
        assert_eq!(mailbox, "INBOX");
        let text = String::from_utf8_lossy(&bytes);
        let Some(mid) = text.lines().find_map(|l| l.strip_prefix("Subject: ")) else {
            panic!("a stored message without a subject: {text:.200}");
        };
        if mid == "after" {
            continue;
        }
        let mid = mid.to_string();
        // Whatever is stored is whole: exactly what was sent, after the
        // trace headers the server adds.
        let body = expected_body(&mid);
        assert!(
            bytes.ends_with(&body),
            "{mid} is stored incomplete or altered"
        );
        let headers = &bytes[..bytes.len() - body.len()];
        assert!(
            headers.starts_with(b"Return-Path: <s@crash.test>\r\nReceived: "),
            "{mid}"
        );
        assert!(
            stored.insert(mid.clone(), bytes).is_none(),
            "{mid} stored twice"
        );
    }
    for mid in &acked {
        assert!(
            stored.contains_key(mid),
            "{mid} got 250 but is missing after the crash"
        );
    }
    eprintln!(
        "{} acknowledged, {} stored over 4 kills",
        acked.len(),
        stored.len()
    );
}
