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
    web_with(name, &[])
}

fn web_with(name: &str, extra: &[String]) -> Web {
    let mut server = Server::new(name, &["alice"]);
    let http = free_port();
    server.extra_args = vec![
        "--http".into(),
        format!("127.0.0.1:{http}"),
        "--https".into(),
        "off".into(),
    ];
    server.extra_args.extend_from_slice(extra);
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

/// The header lines of a curl -i reply, lowercased names.
fn header<'a>(reply: &'a str, name: &str) -> Option<&'a str> {
    let head = reply.split("\r\n\r\n").next()?;
    head.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.eq_ignore_ascii_case(name).then(|| value.trim())
    })
}

#[test]
fn hostile_html_and_names_keep_their_headers_through_http() {
    let web = web("web-sync-html");
    let message = "From: x@example.org\r\nSubject: <script>alert(1)</script>\r\nMIME-Version: 1.0\r\n\
        Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/html\r\n\r\n\
        <p>hi</p><script>alert(1)</script><img src=x onerror=alert(2)>\r\n--b\r\n\
        Content-Type: application/x-msdownload\r\n\
        Content-Disposition: attachment; filename*=UTF-8''%22%0D%0AX-Evil%3A%201%22%E2%82%AC.exe\r\n\r\nMZ\r\n--b--\r\n";
    let replies = lmtp_deliver(&web.server, "s@example.org", &["alice"], message.as_bytes());
    assert!(replies[0].starts_with("250"), "{replies:?}");
    let inbox = web.folder("INBOX");
    let html = web.get(&format!("/api/folders/{inbox}/messages/1/html"));
    assert!(html.starts_with("HTTP/1.1 200"), "{html}");
    let csp = header(&html, "content-security-policy").unwrap();
    assert!(
        csp.starts_with("default-src 'none';") && csp.contains("frame-ancestors 'self'"),
        "{csp}"
    );
    assert_eq!(header(&html, "x-frame-options"), Some("SAMEORIGIN"));
    assert!(
        !html.contains("<script") && !html.contains("onerror"),
        "{html}"
    );
    let part = web.get(&format!("/api/folders/{inbox}/messages/1/part/2"));
    assert!(part.starts_with("HTTP/1.1 200"), "{part}");
    assert!(header(&part, "x-evil").is_none(), "{part}");
    assert_eq!(
        header(&part, "content-type"),
        Some("application/octet-stream")
    );
    assert_eq!(
        header(&part, "content-disposition"),
        Some("attachment; filename=\"___X-Evil: 1__.exe\"; filename*=UTF-8''%22__X-Evil%3A%201%22%E2%82%AC.exe")
    );
    assert!(part.ends_with("\r\n\r\nMZ"), "{part}");
}

#[test]
fn send_through_the_sendmail_flag() {
    let dir = common::TempDir::new("web-sync-sendmail");
    let out = dir.0.join("out.eml");
    let script = dir.0.join("fake sendmail");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\n[ \"$1 $2\" = \"-i -t\" ] || exit 64\ncat > '{}'\n",
            out.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    // Started as root, the server runs the command as the user it drops to.
    std::fs::set_permissions(&dir.0, std::fs::Permissions::from_mode(0o777)).unwrap();
    let command = format!("'{}' -i -t", script.display());
    let web = web_with(
        "web-sync-send",
        &[
            "--sendmail".into(),
            command,
            "--mail-domain".into(),
            "example.net".into(),
        ],
    );
    let config = web.get("/api/config");
    assert!(
        config.contains(r#""from":"alice@example.net","can_send":true"#),
        "{config}"
    );
    let sent = web.post("/api/send", "to=bob%40example.org&subject=Hi&body=hello");
    assert!(sent.ends_with("{\"ok\":true}"), "{sent}");
    let piped = std::fs::read_to_string(&out).unwrap();
    assert!(
        piped.contains("From: alice@example.net\r\nTo: bob@example.org\r\nSubject: Hi\r\n"),
        "{piped}"
    );
    let mut imap = Client::login(web.server.ports.imap, "alice");
    let status = imap.ok("STATUS Sent (MESSAGES)");
    assert!(status[0].contains("MESSAGES 1"), "{status:?}");
}
