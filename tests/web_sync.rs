//! Live sync between the webmail and IMAP, against the real binary over
//! real sockets: a change made through the web API reaches an IMAP session
//! in IDLE, and new mail over LMTP and changes made over IMAP reach an open
//! page's event stream.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use common::imap_client::*;
use common::{free_port, lmtp_deliver, Server};

struct Web {
    server: Server,
    http: u16,
    cookie: String,
    csrf: String,
}

/// A started server with plain HTTP on loopback, and alice logged in.
fn web(name: &str) -> Web {
    let mut server = Server::new(name, &["alice"]);
    let http = free_port();
    server.extra_args = vec![
        "--http".into(),
        format!("127.0.0.1:{http}"),
        "--https".into(),
        "off".into(),
    ];
    start(&mut server);
    let login = curl(
        http,
        &[
            "--data-urlencode",
            "user=alice",
            "--data-urlencode",
            "password=pw-alice",
        ],
        "/login",
    );
    assert!(login.starts_with("HTTP/1.1 200"), "{login}");
    let cookie = login
        .lines()
        .find_map(|l| {
            l.strip_prefix("set-cookie: ")
                .or_else(|| l.strip_prefix("Set-Cookie: "))
        })
        .and_then(|c| c.split(';').next())
        .expect("a session cookie")
        .to_string();
    let csrf = field(&login, "csrf");
    Web {
        server,
        http,
        cookie,
        csrf,
    }
}

fn curl(port: u16, args: &[&str], path: &str) -> String {
    let out = Command::new("curl")
        .args(["-s", "-i", "--max-time", "30"])
        .args(args)
        .arg(format!("http://127.0.0.1:{port}{path}"))
        .output()
        .expect("curl");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A string field of a flat JSON body.
fn field(reply: &str, name: &str) -> String {
    let key = format!("\"{name}\":\"");
    let start = reply
        .find(&key)
        .unwrap_or_else(|| panic!("no {name} in {reply}"))
        + key.len();
    let end = reply[start..].find('"').unwrap() + start;
    reply[start..end].to_string()
}

impl Web {
    fn get(&self, path: &str) -> String {
        let cookie = format!("Cookie: {}", self.cookie);
        curl(self.http, &["-H", &cookie], path)
    }

    fn post(&self, path: &str, form: &str) -> String {
        let cookie = format!("Cookie: {}", self.cookie);
        let csrf = format!("X-CSRF-Token: {}", self.csrf);
        curl(
            self.http,
            &["-H", &cookie, "-H", &csrf, "--data", form],
            path,
        )
    }

    /// The id of a folder of alice's, from the folder list.
    fn folder(&self, name: &str) -> u64 {
        let list = self.get("/api/folders");
        let at = list
            .find(&format!("\"name\":\"{name}\""))
            .unwrap_or_else(|| panic!("no {name} in {list}"));
        let id = list[..at].rfind("\"id\":").unwrap() + 5;
        list[id..].split(',').next().unwrap().parse().unwrap()
    }
}

/// Reads IDLE's untagged lines until one contains `wanted` (or the read
/// times out, which fails the test).
fn idle_until(client: &mut Client, wanted: &str) -> String {
    loop {
        let line = client.line();
        if line.contains(wanted) {
            return line;
        }
        assert!(line.starts_with('*'), "unexpected in IDLE: {line}");
    }
}

#[test]
fn web_changes_reach_imap_idle() {
    let web = web("web-sync-idle");
    deliver(&web.server, "alice", "first", "hello");
    deliver(&web.server, "alice", "second", "hello");
    let inbox = web.folder("INBOX");
    let archive = web.folder("Archive");

    let mut imap = Client::login(web.server.ports.imap, "alice");
    imap.select("INBOX");
    imap.send(b"I1 IDLE\r\n");
    assert!(imap.line().starts_with("+ "));

    let flagged = web.post(
        &format!("/api/folders/{inbox}/flags"),
        "uids=1&add=%5CFlagged",
    );
    assert!(flagged.ends_with("{\"ok\":true}"), "{flagged}");
    let line = idle_until(&mut imap, "FETCH");
    assert!(
        line.starts_with("* 1 FETCH (") && line.contains("\\Flagged"),
        "{line}"
    );

    // Reading a message on the web sets \Seen, as FETCH BODY[] does.
    let read = web.get(&format!("/api/folders/{inbox}/messages/2"));
    assert!(read.starts_with("HTTP/1.1 200"), "{read}");
    let line = idle_until(&mut imap, "FETCH");
    assert!(
        line.starts_with("* 2 FETCH (") && line.contains("\\Seen"),
        "{line}"
    );

    let moved = web.post(
        &format!("/api/folders/{inbox}/move"),
        &format!("uids=1&to={archive}"),
    );
    assert!(moved.ends_with("{\"ok\":true}"), "{moved}");
    assert_eq!(idle_until(&mut imap, "EXPUNGE"), "* 1 EXPUNGE");

    imap.send(b"DONE\r\n");
    assert!(imap.reply("I1").is_ok());
    let archived = imap.ok("STATUS Archive (MESSAGES)");
    assert!(archived[0].contains("MESSAGES 1"), "{archived:?}");
}

/// An open event stream: the request sent, the response head read.
fn events(web: &Web) -> BufReader<TcpStream> {
    let stream = TcpStream::connect(("127.0.0.1", web.http)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut reader = BufReader::new(stream);
    write!(
        reader.get_mut(),
        "GET /api/events HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: {}\r\nAccept: text/event-stream\r\n\r\n",
        web.cookie
    )
    .unwrap();
    let mut head = String::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        head.push_str(&line);
        if line == "\r\n" || line.is_empty() {
            break;
        }
    }
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/event-stream"),
        "{head}"
    );
    reader
}

/// Reads the stream until `wanted` has come (the read timeout fails it).
fn stream_until(reader: &mut BufReader<TcpStream>, wanted: &str) {
    let mut seen = String::new();
    let mut buf = [0u8; 1024];
    while !seen.contains(wanted) {
        let n = reader
            .read(&mut buf)
            .expect("the event came before the timeout");
        assert!(n > 0, "the stream closed; saw {seen:?}");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
}

#[test]
fn lmtp_and_imap_changes_reach_the_event_stream() {
    let web = web("web-sync-events");
    let inbox = web.folder("INBOX");
    let mut stream = events(&web);
    stream_until(&mut stream, ": open");

    let message = simple_message("live", "hello");
    let replies = lmtp_deliver(&web.server, "s@example.org", &["alice"], &message);
    assert!(replies[0].starts_with("250"), "{replies:?}");
    stream_until(
        &mut stream,
        &format!("event: folder\ndata: {{\"id\":{inbox}}}"),
    );

    let mut imap = Client::login(web.server.ports.imap, "alice");
    imap.select("INBOX");
    imap.ok("STORE 1 +FLAGS (\\Flagged)");
    stream_until(
        &mut stream,
        &format!("event: folder\ndata: {{\"id\":{inbox}}}"),
    );

    imap.ok("CREATE Projects");
    stream_until(&mut stream, "event: folders");
    imap.ok("RENAME Projects Work");
    stream_until(&mut stream, "event: folders");
}
