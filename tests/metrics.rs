//! `--metrics`: the counters move with what happens on the other listeners,
//! read over a real socket from the real binary.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::*;

/// The metrics page's body.
fn scrape(port: u16) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut reply = String::new();
    stream.read_to_string(&mut reply).unwrap();
    let (head, body) = reply.split_once("\r\n\r\n").expect("an HTTP reply");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    body.to_string()
}

/// One sample's value, by its name and labels as written.
fn value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {series} in:\n{text}"))
}

fn open(text: &str, protocol: &str) -> f64 {
    value(
        text,
        &format!("letterbox_connections_open{{protocol=\"{protocol}\"}}"),
    )
}

#[test]
fn counters_follow_connections_logins_deliveries_and_commits() {
    let mut server = Server::new("metrics-counters", &["alice"]);
    let metrics = free_port();
    // One message fills alice's quota: the second is refused (452).
    server.extra_args = vec![
        "--metrics".into(),
        format!("127.0.0.1:{metrics}"),
        "--quota-messages".into(),
        "1".into(),
    ];
    server.start();
    let before = scrape(metrics);
    assert_eq!(open(&before, "imap"), 0.0);
    let commits_before = value(&before, "letterbox_store_commit_seconds_count");

    let mut first = Raw::connect(server.ports.imap);
    assert!(first.line().starts_with("* OK"));
    let mut second = Raw::connect(server.ports.imap);
    assert!(second.line().starts_with("* OK"));
    let mut pop = Raw::connect(server.ports.pop3);
    assert!(pop.line().starts_with("+OK"));
    assert!(first.cmd("a LOGIN alice pw-alice").starts_with("a OK"));
    assert!(second.cmd("b LOGIN alice wrong").starts_with("b NO"));
    let message = b"From: bob@example.org\r\nSubject: counted\r\n\r\nhello\r\n";
    let replies = lmtp_deliver(&server, "bob@example.org", &["alice@localhost"], message);
    assert!(replies.iter().all(|r| r.starts_with("250")), "{replies:?}");
    let full = lmtp_deliver(&server, "bob@example.org", &["alice@localhost"], message);
    assert!(full.iter().any(|r| r.starts_with("452")), "{full:?}");

    let during = scrape(metrics);
    assert_eq!(open(&during, "imap"), 2.0);
    assert_eq!(open(&during, "pop3"), 1.0);
    // The metrics listener does not count its own scrapes.
    assert_eq!(open(&during, "web"), 0.0);
    assert_eq!(
        value(&during, "letterbox_logins_total{result=\"success\"}"),
        1.0
    );
    assert_eq!(
        value(&during, "letterbox_logins_total{result=\"failure\"}"),
        1.0
    );
    assert_eq!(value(&during, "letterbox_deliveries_total"), 1.0);
    assert_eq!(value(&during, "letterbox_delivery_failures_total"), 1.0);
    // The stored message carries the trace headers LMTP adds.
    let bytes = value(&during, "letterbox_delivered_bytes_total");
    assert!(bytes > message.len() as f64, "{bytes}");
    // The login made INBOX and the delivery stored a message: both commits.
    let commits = value(&during, "letterbox_store_commit_seconds_count");
    assert!(commits >= commits_before + 2.0, "{commits}");
    assert_eq!(
        value(
            &during,
            "letterbox_store_commit_seconds_bucket{le=\"+Inf\"}"
        ),
        commits
    );
    let file = std::fs::metadata(server.data.join("letterbox.redb")).unwrap();
    assert!(value(&during, "letterbox_store_file_bytes") > 0.0);
    assert!(value(&during, "letterbox_store_file_bytes") <= file.len() as f64);
    assert_eq!(
        value(&during, "letterbox_memory_budget_used_bytes"),
        0.0,
        "nothing is arriving now"
    );
    assert_eq!(
        value(&during, "letterbox_memory_budget_bytes"),
        64.0 * 1024.0 * 1024.0
    );

    // Closed connections leave the gauge once the server has seen them go.
    drop((first, second, pop));
    let mut text = scrape(metrics);
    for _ in 0..200 {
        if open(&text, "imap") == 0.0 && open(&text, "pop3") == 0.0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
        text = scrape(metrics);
    }
    assert_eq!(open(&text, "imap"), 0.0, "{text}");
    assert_eq!(open(&text, "pop3"), 0.0, "{text}");
}
