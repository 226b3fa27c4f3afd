//! The web interface's HTTP layer against the real binary: login, sessions,
//! CSRF, headers, assets, limits and listeners, spoken to with curl and raw
//! sockets.

mod common;

use std::io::{Read, Write};
use std::net::{IpAddr, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{free_port, OutputExt, Server};

/// A server with the web on plain HTTP and HTTPS (both on loopback).
struct Web {
    server: Server,
    http: u16,
    https: u16,
    jar: std::path::PathBuf,
}

fn web(name: &str, extra: &[&str]) -> Web {
    let mut server = Server::new(name, &["alice", "bob"]);
    let (http, https) = (free_port(), free_port());
    let mut args = vec![
        "--http".to_string(),
        format!("127.0.0.1:{http}"),
        "--https".to_string(),
        format!("127.0.0.1:{https}"),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    server.extra_args = args;
    server.extra_env = vec![("RUST_LOG".into(), "debug".into())];
    server.start();
    let jar = server.dir.0.join("cookies");
    Web {
        server,
        http,
        https,
        jar,
    }
}

/// One exchange as curl saw it.
#[derive(Debug)]
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// A field of the JSON body, as a string (our bodies are flat).
    fn field(&self, name: &str) -> Option<String> {
        let key = format!("\"{name}\":\"");
        let start = self.body.find(&key)? + key.len();
        let end = self.body[start..].find('"')? + start;
        Some(self.body[start..end].to_string())
    }
}

/// Runs curl with `args` (`-s -i` added) and parses the last response.
fn curl(args: &[&str]) -> Reply {
    let out = Command::new("curl")
        .args(["-s", "-i", "--max-time", "30"])
        .args(args)
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    parse_reply(&text).unwrap_or_else(|| panic!("no HTTP reply from curl {args:?}: {text:?}"))
}

fn parse_reply(text: &str) -> Option<Reply> {
    let (head, body) = text.split_once("\r\n\r\n")?;
    let mut lines = head.lines();
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    Some(Reply {
        status,
        headers,
        body: body.to_string(),
    })
}

impl Web {
    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.http)
    }

    fn login(&self, user: &str, password: &str) -> Reply {
        let jar = self.jar.to_str().unwrap();
        curl(&[
            "-c",
            jar,
            "--data-urlencode",
            &format!("user={user}"),
            "--data-urlencode",
            &format!("password={password}"),
            &self.url("/login"),
        ])
    }

    /// Logs in; the session's cookie token and CSRF token, for requests
    /// written by hand.
    fn login_tokens(&self, user: &str, password: &str) -> (String, String) {
        let ok = self.login(user, password);
        let csrf = ok.field("csrf").unwrap();
        let jar = std::fs::read_to_string(&self.jar).unwrap();
        let token = jar
            .lines()
            .find(|l| l.contains("lb_session"))
            .and_then(|l| l.split('\t').next_back())
            .unwrap()
            .to_string();
        (token, csrf)
    }

    /// A request with the cookie jar and the given extra curl arguments.
    fn with_cookie(&self, path: &str, extra: &[&str]) -> Reply {
        let jar = self.jar.to_str().unwrap();
        let mut args = vec!["-b", jar, "-c", jar];
        args.extend_from_slice(extra);
        let url = self.url(path);
        args.push(&url);
        curl(&args)
    }
}

/// A raw HTTP exchange: sends `request`, reads until the server closes or
/// `timeout` passes; returns what came back.
fn raw(port: u16, request: &[u8], timeout: Duration) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(timeout)).unwrap();
    stream.write_all(request).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn login_session_csrf_and_logout() {
    let web = web("web-login", &[]);
    let wrong = web.login("alice", "nope");
    assert_eq!(wrong.status, 401, "{wrong:?}");
    assert!(wrong.field("error").is_some());
    assert!(wrong.header("set-cookie").is_none());

    // No session yet.
    assert_eq!(web.with_cookie("/session", &[]).status, 401);
    let no_session = web.with_cookie("/api/folders", &[]);
    assert_eq!(no_session.status, 401);
    assert_eq!(no_session.body, r#"{"error":"not logged in"}"#);

    let ok = web.login("alice", "pw-alice");
    assert_eq!(ok.status, 200, "{ok:?}");
    assert_eq!(ok.field("user").as_deref(), Some("alice"));
    let csrf = ok.field("csrf").unwrap();
    assert_eq!(csrf.len(), 64);
    let cookie = ok.header("set-cookie").unwrap();
    assert!(cookie.starts_with("lb_session="), "{cookie}");
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(attribute), "{cookie}");
    }
    assert!(!cookie.contains("Secure"), "plain HTTP: {cookie}");
    assert_eq!(ok.header("cache-control"), Some("no-store"));
    assert!(
        !web.server.log_text().contains("pw-alice"),
        "the password is never logged"
    );

    let session = web.with_cookie("/session", &[]);
    assert_eq!(session.status, 200);
    assert_eq!(session.field("user").as_deref(), Some("alice"));
    assert_eq!(session.field("csrf").as_deref(), Some(csrf.as_str()));

    // A POST under /api needs the session's CSRF token.
    let missing = web.with_cookie("/api/folders/create", &["-d", "name=x"]);
    assert_eq!(missing.status, 403, "{missing:?}");
    let wrong_token = "0".repeat(64);
    let wrong = web.with_cookie(
        "/api/folders/create",
        &[
            "-d",
            "name=x",
            "-H",
            &format!("X-CSRF-Token: {wrong_token}"),
        ],
    );
    assert_eq!(wrong.status, 403);
    let right = web.with_cookie(
        "/api/folders/create",
        &["-d", "name=x", "-H", &format!("X-CSRF-Token: {csrf}")],
    );
    assert!(
        right.status != 401 && right.status != 403,
        "the token opens the API: {right:?}"
    );
    // GETs under /api need the session only.
    let get = web.with_cookie("/api/folders", &[]);
    assert!(get.status != 401 && get.status != 403, "{get:?}");
    assert_eq!(get.header("cache-control"), Some("no-store"));

    // Another user's session is another token and another CSRF token.
    let bob_jar = web.server.dir.0.join("bob-cookies");
    let bob = curl(&[
        "-c",
        bob_jar.to_str().unwrap(),
        "-d",
        "user=bob&password=pw-bob",
        &web.url("/login"),
    ]);
    assert_eq!(bob.status, 200);
    assert_ne!(bob.field("csrf").unwrap(), csrf);

    // Logout needs the token too; then the session is gone.
    assert_eq!(web.with_cookie("/logout", &["-X", "POST"]).status, 403);
    let out = web.with_cookie(
        "/logout",
        &["-X", "POST", "-H", &format!("X-CSRF-Token: {csrf}")],
    );
    assert_eq!(out.status, 204, "{out:?}");
    assert!(out.header("set-cookie").unwrap().contains("Max-Age=0"));
    assert_eq!(web.with_cookie("/session", &[]).status, 401);
    // The old cookie, replayed by hand, is dead on the server too.
    let token = cookie
        .trim_start_matches("lb_session=")
        .split(';')
        .next()
        .unwrap();
    let replay = curl(&[
        "-H",
        &format!("Cookie: lb_session={token}"),
        &web.url("/session"),
    ]);
    assert_eq!(replay.status, 401);
    // Bob is still logged in.
    let bob_session = curl(&["-b", bob_jar.to_str().unwrap(), &web.url("/session")]);
    assert_eq!(bob_session.field("user").as_deref(), Some("bob"));
}

#[test]
fn https_sets_a_secure_cookie() {
    let web = web("web-https", &[]);
    let url = format!("https://127.0.0.1:{}", web.https);
    let jar = web.jar.to_str().unwrap();
    let ok = curl(&[
        "-k",
        "-c",
        jar,
        "-d",
        "user=alice&password=pw-alice",
        &format!("{url}/login"),
    ]);
    assert_eq!(ok.status, 200, "{ok:?}");
    assert!(ok.header("set-cookie").unwrap().contains("; Secure"));
    let session = curl(&["-k", "-b", jar, &format!("{url}/session")]);
    assert_eq!(session.status, 200);
    let page = curl(&["-k", &format!("{url}/")]);
    assert_eq!(page.status, 200);
    assert!(page.body.contains("<html"));
}

/// This machine's address on a non-loopback interface, if it has one: a
/// connection to it from here comes from that address, not loopback.
fn non_loopback_address() -> Option<IpAddr> {
    let probe = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    // No packet is sent: connect only picks the route and its source.
    probe.connect("192.0.2.123:9").ok()?;
    let ip = probe.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}

#[test]
fn plaintext_login_from_another_machine_is_refused_unless_a_trusted_proxy_says_https() {
    let Some(ip) = non_loopback_address() else {
        eprintln!("skipped: this machine has no non-loopback address");
        return;
    };
    let mut server = Server::new("web-plain", &["alice"]);
    let port = free_port();
    server.extra_args = vec![
        "--http".into(),
        format!("0.0.0.0:{port}"),
        "--trusted-proxy".into(),
        ip.to_string(),
    ];
    server.extra_env = vec![("RUST_LOG".into(), "debug".into())];
    server.start();
    let url = format!("http://{ip}:{port}/login");
    let form = "user=alice&password=pw-alice";

    // From a non-loopback address over plain HTTP: refused, unchecked.
    let refused = curl(&["-d", form, &url]);
    assert_eq!(refused.status, 403, "{refused:?}");
    assert!(refused.header("set-cookie").is_none());
    // The proxy saying plain http changes nothing.
    let via_http = curl(&["-d", form, "-H", "X-Forwarded-Proto: http", &url]);
    assert_eq!(via_http.status, 403);
    let log = server.log_text();
    assert!(
        !log.contains("failed login") && !log.contains("logged in as"),
        "the password was never checked:\n{log}"
    );

    // Through the trusted proxy that says the client used HTTPS: accepted,
    // with a Secure cookie, and the client's address in the log.
    let ok = curl(&[
        "-d",
        form,
        "-H",
        "X-Forwarded-Proto: https",
        "-H",
        "X-Forwarded-For: 6.6.6.6, 203.0.113.77",
        &url,
    ]);
    assert_eq!(ok.status, 200, "{ok:?}");
    assert!(ok.header("set-cookie").unwrap().contains("; Secure"));
    let log = server.log_text();
    assert!(
        log.contains("from 203.0.113.77:0: logged in as alice"),
        "{log}"
    );
    assert!(
        !log.contains("6.6.6.6:0"),
        "a spoofable hop is not the client"
    );
}

#[test]
fn an_untrusted_peer_cannot_claim_https() {
    let Some(ip) = non_loopback_address() else {
        eprintln!("skipped: this machine has no non-loopback address");
        return;
    };
    let mut server = Server::new("web-untrusted", &["alice"]);
    let port = free_port();
    server.extra_args = vec![
        "--http".into(),
        format!("0.0.0.0:{port}"),
        "--trusted-proxy".into(),
        "127.0.0.1".into(),
    ];
    server.start();
    let claimed = curl(&[
        "-d",
        "user=alice&password=pw-alice",
        "-H",
        "X-Forwarded-Proto: https",
        "-H",
        "X-Forwarded-For: 127.0.0.1",
        &format!("http://{ip}:{port}/login"),
    ]);
    assert_eq!(claimed.status, 403, "{claimed:?}");
}

#[test]
fn every_response_has_the_security_headers() {
    let web = web("web-headers", &[]);
    for path in ["/", "/assets/app.js", "/nope", "/api/folders", "/session"] {
        let reply = curl(&[&web.url(path)]);
        assert!(
            reply
                .header("content-security-policy")
                .is_some_and(|csp| csp.contains("default-src 'self'")
                    && csp.contains("frame-ancestors 'none'")),
            "{path}: {reply:?}"
        );
        assert_eq!(reply.header("x-content-type-options"), Some("nosniff"));
        assert_eq!(reply.header("referrer-policy"), Some("no-referrer"));
        assert_eq!(reply.header("x-frame-options"), Some("DENY"));
    }
    let not_found = curl(&[&web.url("/nope")]);
    assert_eq!(not_found.status, 404);
    assert!(not_found.body.starts_with("{\"error\""));
    let wrong_method = curl(&["-X", "PUT", &web.url("/")]);
    assert_eq!(wrong_method.status, 405);
    let get_login = curl(&[&web.url("/login")]);
    assert_eq!(get_login.status, 405);
}

#[test]
fn assets_revalidate_with_etags_and_head_works() {
    let web = web("web-assets", &[]);
    let page = curl(&[&web.url("/")]);
    assert_eq!(page.status, 200);
    assert_eq!(page.header("cache-control"), Some("no-cache"));
    assert!(page
        .header("content-type")
        .unwrap()
        .starts_with("text/html"));
    // The shell names each asset by its version.
    let start = page
        .body
        .find("/assets/app.js?v=")
        .expect("versioned script");
    let versioned = &page.body[start..];
    let versioned = &versioned[..versioned.find('"').unwrap()];
    let js = curl(&[&web.url(versioned)]);
    assert_eq!(js.status, 200);
    assert!(js.header("cache-control").unwrap().contains("max-age="));
    let etag = js.header("etag").unwrap().to_string();
    let again = curl(&["-H", &format!("If-None-Match: {etag}"), &web.url(versioned)]);
    assert_eq!(again.status, 304, "{again:?}");
    assert!(again.body.is_empty());
    let changed = curl(&["-H", "If-None-Match: \"other\"", &web.url("/assets/app.js")]);
    assert_eq!(changed.status, 200);

    let head = curl(&["-I", &web.url("/assets/app.js")]);
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-length"), js.header("content-length"));
    assert!(head.body.is_empty());
    let on_disk = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/web/app.js")).unwrap();
    assert_eq!(js.body.as_bytes(), on_disk.as_slice());
}

#[test]
fn path_traversal_is_refused() {
    let web = web("web-traversal", &[]);
    for path in [
        "/assets/../Cargo.toml",
        "/assets/%2e%2e/Cargo.toml",
        "/assets/%2E%2e/%2e%2e/Cargo.toml",
        "/assets/..%2fCargo.toml",
        "/assets/app.js%00.png",
        "/assets/..%5cCargo.toml",
        "/assets/.gitignore",
        "/api/../assets/app.js",
    ] {
        // --path-as-is: curl would otherwise squash the dots itself.
        let reply = raw(
            web.http,
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
            Duration::from_secs(10),
        );
        let status = &reply[9..12];
        assert!(status == "400" || status == "404", "{path}: {reply}");
        assert!(!reply.contains("[package]"), "{path}");
    }
}

#[test]
fn malformed_and_oversized_requests_get_clean_errors() {
    let web = web("web-limits", &["--max-message-size", "100000"]);
    let t = Duration::from_secs(20);
    // A head over the limit.
    let big_header = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(40_000)
    );
    let reply = raw(web.http, big_header.as_bytes(), t);
    assert!(reply.starts_with("HTTP/1.1 431"), "{reply}");

    // A declared 1 GB upload: refused before a byte of it is read (none is
    // sent; the answer comes anyway).
    let (token, csrf) = web.login_tokens("alice", "pw-alice");
    let upload = format!(
        "POST /api/drafts HTTP/1.1\r\nHost: x\r\nCookie: lb_session={token}\r\nX-CSRF-Token: {csrf}\r\n\
         Content-Type: multipart/form-data; boundary=b\r\nContent-Length: 1000000000\r\n\r\n"
    );
    let reply = raw(web.http, upload.as_bytes(), t);
    assert!(reply.starts_with("HTTP/1.1 413"), "{reply}");
    assert!(reply.to_lowercase().contains("connection: close"));
    let small_login = raw(
        web.http,
        b"POST /login HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000\r\n\r\n",
        t,
    );
    assert!(small_login.starts_with("HTTP/1.1 413"), "{small_login}");

    // A chunked body that grows past the limit is cut off.
    let mut chunked = format!(
        "POST /api/drafts HTTP/1.1\r\nHost: x\r\nCookie: lb_session={token}\r\nX-CSRF-Token: {csrf}\r\n\
         Transfer-Encoding: chunked\r\n\r\n"
    )
    .into_bytes();
    for _ in 0..40 {
        chunked.extend_from_slice(format!("{:x}\r\n{}\r\n", 8000, "x".repeat(8000)).as_bytes());
    }
    let mut stream = TcpStream::connect(("127.0.0.1", web.http)).unwrap();
    stream.set_read_timeout(Some(t)).unwrap();
    // The server may close before taking it all: a failed write is fine.
    let _ = stream.write_all(&chunked);
    let mut reply = String::new();
    let _ = stream.read_to_string(&mut reply);
    assert!(reply.starts_with("HTTP/1.1 413"), "{reply}");

    // Broken chunked encoding.
    let broken = raw(
        web.http,
        b"POST /login HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
        t,
    );
    assert!(broken.starts_with("HTTP/1.1 400"), "{broken}");
    // Not HTTP at all.
    let garbage = raw(web.http, b"\x16\x03\x01 hello\r\n\r\n", t);
    assert!(
        garbage.is_empty() || garbage.starts_with("HTTP/1.1 400"),
        "{garbage}"
    );

    // The server is fine and still serves.
    assert_eq!(curl(&[&web.url("/")]).status, 200);
    assert!(!web.server.log_text().contains("panicked"));
}

#[test]
fn a_slowloris_is_closed_while_others_are_served() {
    let web = web("web-slow", &["--web-header-timeout", "2"]);
    let mut slow = TcpStream::connect(("127.0.0.1", web.http)).unwrap();
    slow.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").unwrap();
    slow.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let started = Instant::now();
    let mut closed = false;
    let mut got = Vec::new();
    // A header line every 200 ms, never the end of the head.
    while started.elapsed() < Duration::from_secs(60) {
        if slow.write_all(b"X-A: b\r\n").is_err() {
            closed = true;
            break;
        }
        let mut buf = [0u8; 1024];
        match slow.read(&mut buf) {
            Ok(0) => {
                closed = true;
                break;
            }
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => {
                closed = true;
                break;
            }
        }
        // Meanwhile another client is served at once.
        if started.elapsed() > Duration::from_millis(500) && got.is_empty() {
            assert_eq!(curl(&[&web.url("/")]).status, 200);
        }
    }
    assert!(closed, "the slow client is cut off");
    assert!(
        !String::from_utf8_lossy(&got).contains("200 OK"),
        "the slow client got no page"
    );
}

#[test]
fn a_changed_password_ends_the_users_web_sessions_and_streams() {
    // A password changed because it leaked must shut the thief out of the
    // web too, not only out of new logins.
    let web = web("web-passwd", &[]);
    assert_eq!(web.login("alice", "pw-alice").status, 200);
    let bob_jar = web.server.dir.0.join("bob-cookies");
    let bob_jar = bob_jar.to_str().unwrap();
    let bob = curl(&[
        "-c",
        bob_jar,
        "-d",
        "user=bob&password=pw-bob",
        &web.url("/login"),
    ]);
    assert_eq!(bob.status, 200);
    // Alice's page has its event stream open.
    let mut events = Command::new("curl")
        .args(["-s", "-N", "--max-time", "60", "-b"])
        .arg(&web.jar)
        .arg(web.url("/api/events"))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));

    web.server
        .user(&["passwd", "alice"], "new-pw\n")
        .assert_ok();
    assert_eq!(web.with_cookie("/session", &[]).status, 401);
    assert_eq!(web.with_cookie("/api/folders", &[]).status, 401);
    // The stream ends at its next event (a delivery), without sending it:
    // curl sees the response end (0), not its own time limit (28).
    common::lmtp_deliver(
        &web.server,
        "x@example.org",
        &["alice"],
        b"Subject: for alice\r\n\r\nbody\r\n",
    );
    let status = events.wait().unwrap();
    assert_eq!(status.code(), Some(0), "the stream was ended by the server");
    // Bob's session is his own and goes on; alice logs in anew.
    let bob_session = curl(&["-b", bob_jar, &web.url("/session")]);
    assert_eq!(bob_session.field("user").as_deref(), Some("bob"));
    assert_eq!(web.login("alice", "pw-alice").status, 401);
    assert_eq!(web.login("alice", "new-pw").status, 200);
    assert_eq!(web.with_cookie("/api/folders", &[]).status, 200);
    // Removing the user ends the new session too.
    web.server.user(&["del", "alice"], "").assert_ok();
    assert_eq!(web.with_cookie("/session", &[]).status, 401);
}

#[test]
fn a_session_expires_when_idle() {
    let web = web("web-idle", &["--web-session-idle", "3s"]);
    assert_eq!(web.login("alice", "pw-alice").status, 200);
    assert_eq!(web.with_cookie("/session", &[]).status, 200);
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(web.with_cookie("/session", &[]).status, 401);
    assert_eq!(web.with_cookie("/api/folders", &[]).status, 401);
}

#[test]
fn metrics_are_served_as_text() {
    let mut server = Server::new("web-metrics", &[]);
    let (metrics, http) = (free_port(), free_port());
    server.extra_args = vec![
        "--metrics".into(),
        format!("127.0.0.1:{metrics}"),
        "--http".into(),
        format!("127.0.0.1:{http}"),
    ];
    server.start();
    assert_eq!(curl(&[&format!("http://127.0.0.1:{http}/")]).status, 200);
    let reply = curl(&[&format!("http://127.0.0.1:{metrics}/metrics")]);
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let count: u64 = reply
        .body
        .lines()
        .find_map(|l| l.strip_prefix("letterbox_web_requests_total "))
        .and_then(|n| n.parse().ok())
        .expect("the web request counter");
    assert!(count >= 1, "{}", reply.body);
    assert_eq!(curl(&[&format!("http://127.0.0.1:{metrics}/")]).status, 404);
    // The metrics listener is not the webmail.
    assert_eq!(
        curl(&[&format!("http://127.0.0.1:{metrics}/session")]).status,
        404
    );
}

#[test]
fn a_taken_default_https_port_costs_only_the_web() {
    // With --unprivileged-ports, --https defaults to 0.0.0.0:10443.
    let holder = std::net::TcpListener::bind("0.0.0.0:10443");
    let mut server = Server::new("web-default", &["alice"]);
    server.https_default = true;
    server.extra_args = vec!["--unprivileged-ports".into()];
    server.start();
    let log = server.log_text();
    assert!(
        log.contains("the web interface is off") && log.contains("--https"),
        "{log}"
    );
    let mut imap = common::Raw::connect(server.ports.imap);
    assert!(imap.line().starts_with("* OK"));
    drop(holder);
}

#[test]
fn a_taken_explicit_https_address_stops_startup() {
    let err = common::startup_error_with_taken("web-explicit", "--https");
    assert!(
        err.contains("--https ADDR") && err.contains("in use"),
        "{err}"
    );
}

/// Holds web pages open from Python: logs in on each connection (a session
/// each), then either leaves it idle or opens `path` on it (the page's
/// event stream). Prints `warm` after `warm` pages and `ready` after
/// `pages` more, reading a line from stdin between the two.
const HOLD_PAGES: &str = r#"
import socket, ssl, sys
port, tls, warm, pages, path = int(sys.argv[1]), sys.argv[2] == '1', int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
def head(s):
    buf = b''
    while b'\r\n\r\n' not in buf:
        chunk = s.recv(65536)
        if not chunk: raise SystemExit('closed: %r' % buf)
        buf += chunk
    h, rest = buf.split(b'\r\n\r\n', 1)
    return h.decode(), rest
def page():
    s = socket.create_connection(('127.0.0.1', port))
    if tls: s = ctx.wrap_socket(s)
    body = b'user=alice&password=pw-alice'
    s.sendall(b'POST /login HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: %d\r\n\r\n' % len(body) + body)
    h, rest = head(s)
    assert ' 200 ' in h.split('\r\n')[0], h
    length = int([l.split(':')[1] for l in h.split('\r\n') if l.lower().startswith('content-length')][0])
    while len(rest) < length: rest += s.recv(65536)
    cookie = [l.split(':', 1)[1].split(';')[0].strip() for l in h.split('\r\n') if l.lower().startswith('set-cookie')][0]
    if path != '-':
        s.sendall(('GET %s HTTP/1.1\r\nHost: x\r\nCookie: %s\r\n\r\n' % (path, cookie)).encode())
        h, _ = head(s)
        assert ' 200 ' in h.split('\r\n')[0], h
    return s
held = [page() for _ in range(warm)]
print('warm', flush=True)
sys.stdin.readline()
held += [page() for _ in range(pages)]
print('ready', flush=True)
sys.stdin.read()
"#;

/// Memory per open web page (a connection and its session, idle or
/// holding `path` open), as the server's RSS delta over `pages` pages.
fn kib_per_page(tls: bool, path: &str, pages: usize) -> f64 {
    use std::io::BufRead;
    use std::process::Stdio;
    let web = web(
        "web-memory",
        &[
            "--web-header-timeout",
            "600",
            "--max-connections-per-ip",
            "1000",
        ],
    );
    let port = if tls { web.https } else { web.http };
    let mut child = Command::new("python3")
        .args(["-c", HOLD_PAGES, &port.to_string()])
        .arg(if tls { "1" } else { "0" })
        .args(["20", &pages.to_string(), path])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3");
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "warm");
    std::thread::sleep(Duration::from_millis(500));
    let before = web.server.rss_kib();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"go\n").unwrap();
    assert_eq!(lines.next().unwrap().unwrap(), "ready");
    std::thread::sleep(Duration::from_millis(500));
    let after = web.server.rss_kib();
    drop(stdin);
    let _ = child.wait();
    (after as f64 - before as f64) / pages as f64
}

/// `cargo test --test web_http memory -- --ignored --nocapture`: the
/// figures for the README (RSS depends on the allocator and the machine,
/// so they are printed, and bounded only loosely here). Needs web-api's
/// `/api/events`.
#[test]
#[ignore]
fn memory_per_open_page() {
    for (tls, name) in [(false, "http"), (true, "https")] {
        for path in ["-", "/api/events"] {
            let kib = kib_per_page(tls, path, 200);
            println!("{name} {path}: {kib:.1} KiB per page (200 pages)");
            assert!(kib < 128.0, "{name} {path}: {kib} KiB per page");
        }
    }
}

#[test]
fn per_address_limits_hold_on_the_web_but_not_for_a_trusted_proxy() {
    let t = Duration::from_secs(20);
    let open = |port: u16| {
        let mut held = Vec::new();
        for _ in 0..3 {
            let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
            s.set_read_timeout(Some(t)).unwrap();
            s.write_all(b"GET /assets/app.js HTTP/1.1\r\nHost: x\r\n\r\n")
                .unwrap();
            let mut buf = [0u8; 64];
            let n = s.read(&mut buf).unwrap_or(0);
            held.push((String::from_utf8_lossy(&buf[..n]).into_owned(), s));
        }
        held.into_iter().map(|(reply, _)| reply).collect::<Vec<_>>()
    };
    let direct = web("web-per-ip", &["--max-connections-per-ip", "2"]);
    let replies = open(direct.http);
    assert!(replies[0].starts_with("HTTP/1.1 200") && replies[1].starts_with("HTTP/1.1 200"));
    assert!(replies[2].starts_with("HTTP/1.1 503"), "{replies:?}");
    let proxied = web(
        "web-per-ip-proxy",
        &[
            "--max-connections-per-ip",
            "2",
            "--trusted-proxy",
            "127.0.0.1",
        ],
    );
    let replies = open(proxied.http);
    assert!(
        replies.iter().all(|r| r.starts_with("HTTP/1.1 200")),
        "{replies:?}"
    );
}

#[test]
fn bodies_held_in_memory_wait_for_the_budget_or_get_503() {
    let web = web(
        "web-budget",
        &["--memory-budget", "65536", "--memory-wait", "1"],
    );
    let (token, csrf) = web.login_tokens("alice", "pw-alice");
    let post = |length: usize| {
        format!(
            "POST /api/drafts HTTP/1.1\r\nHost: x\r\nCookie: lb_session={token}\r\nX-CSRF-Token: {csrf}\r\n\
             Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {length}\r\n\r\n"
        )
    };
    // One upload takes the whole budget and dawdles.
    let mut holder = TcpStream::connect(("127.0.0.1", web.http)).unwrap();
    holder.write_all(post(65536).as_bytes()).unwrap();
    holder.write_all(&[b'a'; 1000]).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    // Another finds no room within --memory-wait.
    let refused = raw(
        web.http,
        format!("{}subject=x", post(9)).as_bytes(),
        Duration::from_secs(20),
    );
    assert!(refused.starts_with("HTTP/1.1 503"), "{refused}");
    // A request without a body needs no room.
    assert_eq!(web.with_cookie("/session", &[]).status, 200);
    // The dawdler leaves: room again.
    drop(holder);
    std::thread::sleep(Duration::from_millis(300));
    let mut admitted = raw(
        web.http,
        format!("{}subject=x", post(9)).as_bytes(),
        Duration::from_millis(1500),
    );
    admitted.truncate(12);
    assert!(
        admitted.starts_with("HTTP/1.1") && admitted != "HTTP/1.1 503",
        "{admitted}"
    );
}

#[test]
fn a_compose_is_charged_for_its_copies_and_a_large_one_still_goes_through() {
    // A draft or a message to send holds its attachments' copy and the
    // built message beside the body: 2.5 times the body, charged up front.
    let metrics = free_port();
    let budget: u64 = 2 << 20;
    let web = web(
        "web-compose-budget",
        &[
            "--memory-budget",
            &budget.to_string(),
            "--memory-wait",
            "2",
            "--metrics",
            &format!("127.0.0.1:{metrics}"),
        ],
    );
    let used = || {
        let text = curl(&[&format!("http://127.0.0.1:{metrics}/metrics")]).body;
        text.lines()
            .find_map(|l| l.strip_prefix("letterbox_memory_budget_used_bytes "))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap()
    };
    let (token, csrf) = web.login_tokens("alice", "pw-alice");
    let post = |path: &str, length: usize| {
        format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nCookie: lb_session={token}\r\nX-CSRF-Token: {csrf}\r\n\
             Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {length}\r\n\r\n"
        )
    };
    let wait_for = |want: u64| {
        let mut now = used();
        for _ in 0..100 {
            if now == want {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
            now = used();
        }
        assert_eq!(now, want);
    };
    assert_eq!(used(), 0);
    // Two uploads stall halfway: a draft, and a plain API post.
    let mut draft = TcpStream::connect(("127.0.0.1", web.http)).unwrap();
    draft
        .write_all(post("/api/drafts", 100_000).as_bytes())
        .unwrap();
    draft.write_all(b"subject=x").unwrap();
    wait_for(250_000);
    let mut plain = TcpStream::connect(("127.0.0.1", web.http)).unwrap();
    plain
        .write_all(post("/api/folders/create", 100_000).as_bytes())
        .unwrap();
    wait_for(350_000);
    drop((draft, plain));
    wait_for(0);

    // An upload whose 2.5 times is more than the whole budget is charged
    // the whole budget, alone, and is saved.
    let attachment = web.server.dir.0.join("big.bin");
    std::fs::write(&attachment, vec![b'x'; 1 << 20]).unwrap();
    let saved = web.with_cookie(
        "/api/drafts",
        &[
            "-H",
            &format!("X-CSRF-Token: {csrf}"),
            "-H",
            "Expect:",
            "-F",
            "subject=big",
            "-F",
            &format!("attachment=@{}", attachment.display()),
        ],
    );
    assert_eq!(saved.status, 200, "{saved:?}");
    wait_for(0);
}

#[test]
fn https_uses_the_certificate_sighup_reloads() {
    let web = web("web-sighup", &[]);
    let served = || {
        let script = format!(
            "import ssl; print(ssl.get_server_certificate(('127.0.0.1', {})))",
            web.https
        );
        let out = Command::new("python3")
            .args(["-c", &script])
            .output()
            .unwrap();
        assert!(out.status.success());
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .collect::<String>()
    };
    let cert = web.server.data.join("tls-cert.pem");
    let on_disk = || {
        std::fs::read_to_string(&cert)
            .unwrap()
            .split_whitespace()
            .collect::<String>()
    };
    assert_eq!(served(), on_disk(), "the same certificate as IMAPS");
    // A renewal, as a certbot deploy hook would copy it in.
    let mut other = Server::new("web-sighup-gen", &[]);
    other.start();
    other.stop();
    let key = web.server.data.join("tls-key.pem");
    std::fs::copy(other.data.join("tls-key.pem"), &key).unwrap();
    std::fs::copy(other.data.join("tls-cert.pem"), &cert).unwrap();
    web.server.signal(libc::SIGHUP);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !web.server.log_text().contains("tls: reloaded") {
        assert!(Instant::now() < deadline, "{}", web.server.log_text());
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(served(), on_disk(), "new connections get the new one");
}
