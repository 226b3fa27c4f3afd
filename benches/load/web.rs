//! The `web` part: the webmail's message list on the big INBOX (the same
//! 4 KB messages as the `imap` part), and the memory an open web page
//! costs. Dovecot has no web interface, so these figures stand alone.
//!
//! "Server time" is measured by the client on loopback from the request's
//! first byte to the response's last, so it includes the transfer.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use super::{
    fill_each, free_port, median, percentile, small_message, stuffed, Letterbox, Lmtp, Options,
    PASSWORD,
};

const BIG_USER: &str = "bench100";
const PAGES: usize = 200;
const LIST_REQUESTS: usize = 200;

/// A keep-alive HTTP/1.1 client with one session's cookie and CSRF token.
struct Web {
    r: BufReader<TcpStream>,
    cookie: String,
}

impl Web {
    fn connect(port: u16) -> Web {
        let tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
        tcp.set_nodelay(true).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(120)))
            .unwrap();
        Web {
            r: BufReader::with_capacity(64 * 1024, tcp),
            cookie: String::new(),
        }
    }

    fn login(port: u16, user: &str) -> Web {
        let mut w = Web::connect(port);
        let form = format!("user={user}&password={PASSWORD}");
        let (status, headers, body) = w.request("POST", "/login", Some(form.as_bytes()));
        assert_eq!(
            status,
            200,
            "login {user}: {}",
            String::from_utf8_lossy(&body)
        );
        let set = headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("set-cookie"))
            .map(|(_, v)| v.clone())
            .expect("login sets a cookie");
        w.cookie = set.split(';').next().unwrap().to_string();
        w
    }

    /// Sends a request and reads its whole response (Content-Length or
    /// chunked): status, headers, body.
    fn request(
        &mut self,
        method: &str,
        path: &str,
        form: Option<&[u8]>,
    ) -> (u16, Vec<(String, String)>, Vec<u8>) {
        self.send_head(method, path, form);
        let (status, headers) = self.read_head();
        let length = header(&headers, "content-length").map(|v| v.parse::<usize>().unwrap());
        let mut body = Vec::new();
        if let Some(n) = length {
            body.resize(n, 0);
            self.r.read_exact(&mut body).unwrap();
        } else if header(&headers, "transfer-encoding").is_some_and(|v| v.contains("chunked")) {
            loop {
                let mut size = String::new();
                self.r.read_line(&mut size).unwrap();
                let n = usize::from_str_radix(size.trim(), 16).unwrap();
                let mut chunk = vec![0; n + 2];
                self.r.read_exact(&mut chunk).unwrap();
                if n == 0 {
                    break;
                }
                body.extend_from_slice(&chunk[..n]);
            }
        }
        (status, headers, body)
    }

    fn send_head(&mut self, method: &str, path: &str, form: Option<&[u8]>) {
        let mut head = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n");
        if !self.cookie.is_empty() {
            head.push_str(&format!("Cookie: {}\r\n", self.cookie));
        }
        if let Some(form) = form {
            head.push_str(&format!(
                "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n",
                form.len()
            ));
        }
        head.push_str("\r\n");
        let w = self.r.get_mut();
        w.write_all(head.as_bytes()).unwrap();
        if let Some(form) = form {
            w.write_all(form).unwrap();
        }
    }

    fn read_head(&mut self) -> (u16, Vec<(String, String)>) {
        let mut line = String::new();
        self.r.read_line(&mut line).unwrap();
        let status: u16 = line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("status line: {line:?}"));
        let mut headers = Vec::new();
        loop {
            line.clear();
            self.r.read_line(&mut line).unwrap();
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                headers.push((k.trim().to_string(), v.trim().to_string()));
            }
        }
        (status, headers)
    }
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// INBOX's folder id, from the folder list.
fn inbox_id(w: &mut Web) -> String {
    let (status, _, body) = w.request("GET", "/api/folders", None);
    assert_eq!(status, 200);
    let text = String::from_utf8(body).unwrap();
    // {"folders":[{"id":N,"name":"INBOX",...  INBOX is listed first.
    let at = text.find("\"id\":").expect("a folder id") + 5;
    text[at..]
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect()
}

fn time_list(w: &mut Web, path: &str) -> Vec<f64> {
    (0..LIST_REQUESTS)
        .map(|_| {
            let start = Instant::now();
            let (status, _, body) = w.request("GET", path, None);
            let t = start.elapsed().as_secs_f64() * 1000.0;
            assert_eq!(status, 200, "{path}: {}", String::from_utf8_lossy(&body));
            t
        })
        .collect()
}

pub fn bench_web(o: &Options) {
    let mut users = vec![BIG_USER.to_string()];
    users.extend((1..=PAGES + 1).map(|i| format!("page{i}")));
    let http = free_port();
    let address = format!("127.0.0.1:{http}");
    let lb = Letterbox::start_with(&users, "-web", &["--http", &address]);
    fill_each(
        &[("letterbox", lb.ports.imap, lb.ports.lmtp)],
        BIG_USER,
        o.big,
    );
    let mut w = Web::login(http, BIG_USER);
    let inbox = inbox_id(&mut w);
    println!(
        "Web message list, a {}-message INBOX (4 KB messages): ms per request over loopback, {LIST_REQUESTS} requests per round, median of {} rounds",
        o.big, o.rounds
    );
    let pages = [
        (
            "first page of 50, newest first",
            format!("/api/folders/{inbox}/messages?offset=0&limit=50"),
        ),
        (
            "a page in the middle",
            format!(
                "/api/folders/{inbox}/messages?offset={}&limit=50",
                o.big / 2
            ),
        ),
        (
            "unread filter, first page",
            format!("/api/folders/{inbox}/messages?offset=0&limit=50&filter=unread"),
        ),
    ];
    for (label, path) in &pages {
        // One request first: the first one pays for warming the cache.
        time_list(&mut w, path);
        let mut p50 = Vec::new();
        let mut p99 = Vec::new();
        for _ in 0..o.rounds {
            let times = time_list(&mut w, path);
            p50.push(percentile(times.clone(), 0.50));
            p99.push(percentile(times, 0.99));
        }
        println!(
            "  {label:34} p50 {:7.2} ms   p99 {:7.2} ms",
            median(p50),
            median(p99)
        );
    }
    // The thread view threads the whole folder; the order is kept until
    // the folder changes, so paging costs one page. Timed both ways: a
    // page after one new message (worked out again), and the next page.
    let thread =
        |offset: usize| format!("/api/folders/{inbox}/messages?offset={offset}&limit=50&thread=1");
    let mut lmtp = Lmtp::connect(lb.ports.lmtp);
    let (mut fresh, mut kept) = (Vec::new(), Vec::new());
    for round in 0..o.rounds.max(3) {
        lmtp.deliver(BIG_USER, &stuffed(&small_message(o.big + round)));
        let start = Instant::now();
        let (status, _, _) = w.request("GET", &thread(0), None);
        fresh.push(start.elapsed().as_secs_f64() * 1000.0);
        assert_eq!(status, 200);
        let times = time_list(&mut w, &thread(50));
        kept.push(percentile(times, 0.50));
    }
    println!(
        "  {:34} {:7.1} ms (median of {})",
        "thread view after a new message",
        median(fresh),
        o.rounds.max(3)
    );
    println!(
        "  {:34} p50 {:7.2} ms",
        "thread view, the next page",
        median(kept)
    );
    drop(w);
    drop(lb);

    // Memory per open page: a session and its event stream. A fresh
    // server, one page open first so one-off allocations are not counted.
    {
        let lb = Letterbox::start_with(&users, "-webmem", &["--http", &address]);
        let open_page = |user: &str| {
            let mut w = Web::login(http, user);
            w.send_head("GET", "/api/events", None);
            let (status, _) = w.read_head();
            assert_eq!(status, 200, "event stream");
            w
        };
        let first = open_page("page1");
        std::thread::sleep(Duration::from_millis(300));
        let before = lb.status_kib("VmRSS:");
        let held: Vec<Web> = (2..=PAGES + 1)
            .map(|i| open_page(&format!("page{i}")))
            .collect();
        std::thread::sleep(Duration::from_millis(500));
        let after = lb.status_kib("VmRSS:");
        println!(
            "  letterbox memory, {PAGES} open web pages (a session and an event stream each, plain HTTP): {before} KiB -> {after} KiB, {:.1} KiB each",
            after.saturating_sub(before) as f64 / PAGES as f64
        );
        drop(held);
        drop(first);
    }
}
