//! The load tool: letterbox against Dovecot, in the same run, on loopback.
//!
//! ```sh
//! cargo bench --bench load -- lmtp          # LMTP delivery, 1 and 8 senders
//! cargo bench --bench load -- pop3          # POP3 retrieval and memory per connection
//! cargo bench --bench load -- imap          # 100,000-message INBOX, mixed load, IDLE memory
//! cargo bench --bench load -- imap --big 20000   # a smaller big mailbox, for a quick look
//! cargo bench --bench load -- logins        # login fairness under a flood; repeated logins
//! cargo bench --bench load -- sort          # SORT and THREAD on the big INBOX, warm and after new mail
//! cargo bench --bench load -- memory        # peak RSS under a hostile mix; big FETCH, POP3 RETR
//! cargo bench --bench load -- quota         # LMTP delivery with quotas on and off
//! cargo bench --bench load -- compress      # 10 MB FETCH and idle memory with and without COMPRESS
//! cargo bench --bench load -- memory imap pop3 --rounds 3   # several parts in one run
//! cargo bench --bench load -- all --rounds 5 --messages 500
//! cargo bench --bench load -- lmtp --no-dovecot
//! cargo bench --bench load -- import --big 2000   # import, backup and verify of a Maildir
//! ```
//!
//! Dovecot comes from Debian's packages and runs on a private config made by
//! `benches/dovecot/setup.sh` (see benches/README.md). Each figure is the
//! median of several rounds, and the two servers take turns within each
//! round so that both see the same machine noise. Figures are printed, never
//! asserted.

#[path = "load/compress.rs"]
mod compress;
#[path = "load/import.rs"]
mod import;
#[path = "load/sort.rs"]
mod sort;
#[path = "../tests/common/source_addr.rs"]
mod source_addr;
#[path = "load/web.rs"]
mod web;
use source_addr::connect_from;
#[path = "load/quota.rs"]
mod quota;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_rustls::rustls;

const BIN: &str = env!("CARGO_BIN_EXE_letterbox");
const PASSWORD: &str = "benchpass";
/// Users bench1..benchN exist on both servers.
const BENCH_USERS: usize = 100;
/// How long a client waits for a reply before the run fails: longer than
/// the slowest command measured (Dovecot's SEARCH BODY of 100,000
/// messages), short enough that no run hangs.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(300);

struct Options {
    /// The parts to run (`all`, or none, is every part).
    parts: Vec<String>,
    rounds: usize,
    messages: usize,
    dovecot: bool,
    /// Messages in the big IMAP mailbox.
    big: usize,
    /// Seconds each mixed-load run lasts.
    seconds: u64,
}

fn options() -> Options {
    let mut o = Options {
        parts: Vec::new(),
        rounds: 5,
        messages: 400,
        dovecot: true,
        big: 100_000,
        seconds: 10,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--rounds" => o.rounds = args.next().and_then(|v| v.parse().ok()).unwrap_or(o.rounds),
            "--messages" => {
                o.messages = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(o.messages)
            }
            "--no-dovecot" => o.dovecot = false,
            "--big" => o.big = args.next().and_then(|v| v.parse().ok()).unwrap_or(o.big),
            "--seconds" => {
                o.seconds = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(o.seconds)
            }
            // cargo bench passes --bench; ignore it and any other flag.
            a if a.starts_with("--") => {}
            "all" => {}
            a => o.parts.push(a.to_string()),
        }
    }
    o
}

impl Options {
    fn wants(&self, part: &str) -> bool {
        self.parts.is_empty() || self.parts.iter().any(|p| p == part)
    }
}

/// A 20 KB message that looks like mail: headers, then wrapped text.
fn message(n: usize) -> Vec<u8> {
    message_of(n, 20 * 1024)
}

/// A message of about `size` bytes (never more) that looks like mail.
fn message_of(n: usize, size: usize) -> Vec<u8> {
    let mut m = format!(
        "From: Load Generator <load@bench.test>\r\nTo: bench@bench.test\r\nSubject: benchmark message {n}\r\n\
         Date: Thu, 26 Nov 2026 10:00:00 +0000\r\nMessage-ID: <{n}.{}@bench.test>\r\nMIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\r\n",
        std::process::id()
    );
    let mut line = 0;
    while m.len() < size - 80 {
        m.push_str(&format!(
            "{n:06} {line:04} Lorem ipsum dolor sit amet, consectetur adipiscing elit sed.\r\n"
        ));
        line += 1;
    }
    m.into_bytes()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

struct Ports {
    lmtp: u16,
    pop3: u16,
    pop3s: u16,
    imap: u16,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "port {port} never opened");
        std::thread::sleep(Duration::from_millis(20));
    }
}

struct Letterbox {
    dir: PathBuf,
    child: Child,
    ports: Ports,
}

impl Letterbox {
    fn start(users: &[String]) -> Letterbox {
        Letterbox::start_with(users, "", &[])
    }

    /// A server of its own (`name` tells its directory from another's)
    /// with extra `serve` flags.
    fn start_with(users: &[String], name: &str, extra: &[&str]) -> Letterbox {
        let dir =
            std::env::temp_dir().join(format!("letterbox-bench{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let data = dir.join("data");
        // One real `user add`, then the same hash for every other name: a
        // few hundred argon2 runs would only slow the setup down.
        let mut add = Command::new(BIN)
            .args(["user", "add", &users[0], "--password-stdin", "--data"])
            .arg(&data)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        add.stdin
            .take()
            .unwrap()
            .write_all(format!("{PASSWORD}\n").as_bytes())
            .unwrap();
        assert!(add.wait().unwrap().success());
        let first = std::fs::read_to_string(data.join("users")).unwrap();
        let hash = first.trim_end().split_once(':').unwrap().1.to_string();
        let all: String = users.iter().map(|u| format!("{u}:{hash}\n")).collect();
        std::fs::write(data.join("users"), all).unwrap();
        let ports = Ports {
            lmtp: free_port(),
            pop3: free_port(),
            pop3s: free_port(),
            imap: free_port(),
        };
        let mut cmd = Command::new(BIN);
        cmd.arg("serve")
            .arg("--data")
            .arg(&data)
            .args(["--imaps", "off", "--lmtp-socket", "off", "--https", "off"])
            .args(["--lmtp", &format!("127.0.0.1:{}", ports.lmtp)])
            .args(["--pop3", &format!("127.0.0.1:{}", ports.pop3)])
            .args(["--pop3s", &format!("127.0.0.1:{}", ports.pop3s)])
            .args(["--imap", &format!("127.0.0.1:{}", ports.imap)])
            .args([
                "--max-connections-per-ip",
                "3000",
                "--max-connections",
                "3000",
            ])
            .args(extra)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            cmd.args(["--run-as", "root"]);
        }
        let child = cmd.spawn().unwrap();
        wait_port(ports.lmtp);
        wait_port(ports.pop3);
        Letterbox { dir, child, ports }
    }

    fn status_kib(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for Letterbox {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

struct Dovecot {
    dir: PathBuf,
    ports: Ports,
}

impl Dovecot {
    fn start() -> Option<Dovecot> {
        let dir = std::env::temp_dir().join(format!("dovecot-bench-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let ports = Ports {
            lmtp: free_port(),
            pop3: free_port(),
            pop3s: free_port(),
            imap: free_port(),
        };
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/dovecot/setup.sh");
        let status = Command::new("bash")
            .arg(&script)
            .arg(&dir)
            .env("LMTP_PORT", ports.lmtp.to_string())
            .env("POP3_PORT", ports.pop3.to_string())
            .env("POP3S_PORT", ports.pop3s.to_string())
            .env("IMAP_PORT", ports.imap.to_string())
            .env("BENCH_USERS", BENCH_USERS.to_string())
            .env("IMAPS_PORT", free_port().to_string())
            .stdout(Stdio::null())
            .status();
        match status {
            Ok(s) if s.success() => Some(Dovecot { dir, ports }),
            _ => {
                eprintln!("Dovecot did not start (is dovecot-core installed? see benches/README.md); letterbox only");
                None
            }
        }
    }
}

impl Dovecot {
    /// The master process, from its pid file.
    fn pid(&self) -> u32 {
        let file = self.dir.join("run/master.pid");
        std::fs::read_to_string(&file)
            .ok()
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or_else(|| panic!("no pid in {}", file.display()))
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/dovecot/stop.sh");
        let _ = Command::new("bash").arg(script).arg(&self.dir).status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A blocking LMTP client that reuses one connection for many messages.
struct Lmtp {
    r: BufReader<TcpStream>,
}

impl Lmtp {
    fn connect(port: u16) -> Lmtp {
        let tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
        tcp.set_nodelay(true).unwrap();
        // No run may hang: a server that stops answering fails the run.
        tcp.set_read_timeout(Some(CLIENT_TIMEOUT)).unwrap();
        let mut c = Lmtp {
            r: BufReader::new(tcp),
        };
        c.reply();
        c.r.get_mut().write_all(b"LHLO bench\r\n").unwrap();
        c.reply();
        c
    }
    fn reply(&mut self) -> String {
        loop {
            let mut line = String::new();
            assert!(
                self.r.read_line(&mut line).unwrap() > 0,
                "LMTP server closed"
            );
            if line.as_bytes().get(3) != Some(&b'-') {
                return line;
            }
        }
    }
    fn deliver(&mut self, rcpt: &str, stuffed: &[u8]) {
        let r = self.try_deliver(rcpt, stuffed);
        assert!(r.starts_with("250"), "delivery: {r}");
    }
    /// Delivers one message; returns the reply that ended the attempt: the
    /// final one, or the first refusal of MAIL, RCPT or DATA.
    fn try_deliver(&mut self, rcpt: &str, stuffed: &[u8]) -> String {
        let w = self.r.get_mut();
        w.write_all(
            format!("MAIL FROM:<load@bench.test>\r\nRCPT TO:<{rcpt}>\r\nDATA\r\n").as_bytes(),
        )
        .unwrap();
        let mut refused = None;
        for what in ["MAIL", "RCPT", "DATA"] {
            let r = self.reply();
            if !(r.starts_with('2') || r.starts_with('3')) && refused.is_none() {
                refused = Some(format!("{what}: {r}"));
            }
        }
        if let Some(r) = refused {
            return r;
        }
        self.r.get_mut().write_all(stuffed).unwrap();
        self.reply()
    }
}

fn stuffed(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + 8);
    for line in message.split_inclusive(|&b| b == b'\n') {
        if line.starts_with(b".") {
            out.push(b'.');
        }
        out.extend_from_slice(line);
    }
    out.extend_from_slice(b".\r\n");
    out
}

/// Messages per second with `senders` connections, each delivering
/// `per_sender` messages to its own user.
fn lmtp_rate(port: u16, senders: usize, per_sender: usize) -> f64 {
    let body = Arc::new(stuffed(&message(1)));
    let start = Instant::now();
    let threads: Vec<_> = (0..senders)
        .map(|t| {
            let body = body.clone();
            std::thread::spawn(move || {
                let mut c = Lmtp::connect(port);
                let rcpt = format!("bench{}", t + 1);
                for _ in 0..per_sender {
                    c.deliver(&rcpt, &body);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    (senders * per_sender) as f64 / start.elapsed().as_secs_f64()
}

fn bench_lmtp(o: &Options) {
    let users: Vec<String> = (1..=BENCH_USERS).map(|i| format!("bench{i}")).collect();
    let lb = Letterbox::start(&users);
    std::thread::sleep(Duration::from_secs(1));
    let idle_rss = lb.status_kib("VmRSS:");
    let dc = if o.dovecot { Dovecot::start() } else { None };
    let (mut lb1, mut lb8, mut dc1, mut dc8) = (vec![], vec![], vec![], vec![]);
    for round in 0..o.rounds {
        lb1.push(lmtp_rate(lb.ports.lmtp, 1, o.messages));
        if let Some(dc) = &dc {
            dc1.push(lmtp_rate(dc.ports.lmtp, 1, o.messages));
            dc8.push(lmtp_rate(dc.ports.lmtp, 8, o.messages / 4));
        }
        lb8.push(lmtp_rate(lb.ports.lmtp, 8, o.messages / 4));
        eprintln!(
            "round {}: letterbox 1={:.0}/s 8={:.0}/s{}",
            round + 1,
            lb1[round],
            lb8[round],
            dc.as_ref().map_or(String::new(), |_| format!(
                "  dovecot 1={:.0}/s 8={:.0}/s",
                dc1[round], dc8[round]
            ))
        );
    }
    let peak = lb.status_kib("VmHWM:");
    println!("LMTP delivery, 20 KB messages, median of {} rounds ({} messages per 1-sender run, {} per 8-sender run)",
        o.rounds, o.messages, o.messages / 4 * 8);
    println!("  letterbox 1 sender : {:8.0} msg/s", median(lb1.clone()));
    println!("  letterbox 8 senders: {:8.0} msg/s", median(lb8.clone()));
    if !dc1.is_empty() {
        let (d1, d8) = (median(dc1), median(dc8));
        println!("  dovecot   1 sender : {d1:8.0} msg/s");
        println!("  dovecot   8 senders: {d8:8.0} msg/s");
        println!(
            "  ratio 1 sender  (letterbox / dovecot 1): {:.2}x",
            median(lb1) / d1
        );
        println!(
            "  ratio 8 senders (letterbox 8 / dovecot 1): {:.2}x",
            median(lb8.clone()) / d1
        );
        println!(
            "  ratio 8 senders (letterbox 8 / dovecot 8): {:.2}x",
            median(lb8) / d8
        );
    }
    println!("  letterbox idle RSS after start: {idle_rss} KiB; peak RSS over the run: {peak} KiB");
}

/// One POP3 session, plain or TLS.
enum Pop3Stream {
    Plain(BufReader<TcpStream>),
    Tls(Box<BufReader<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>>),
}

impl Pop3Stream {
    fn connect(port: u16, tls: bool) -> Pop3Stream {
        let tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
        tcp.set_nodelay(true).unwrap();
        let mut s = if tls {
            let conn = rustls::ClientConnection::new(tls_config(), "localhost".try_into().unwrap())
                .unwrap();
            Pop3Stream::Tls(Box::new(BufReader::with_capacity(
                64 * 1024,
                rustls::StreamOwned::new(conn, tcp),
            )))
        } else {
            Pop3Stream::Plain(BufReader::with_capacity(64 * 1024, tcp))
        };
        s.line();
        s
    }
    fn reader(&mut self) -> &mut dyn BufRead {
        match self {
            Pop3Stream::Plain(r) => r,
            Pop3Stream::Tls(r) => r.as_mut(),
        }
    }
    fn send(&mut self, text: &str) {
        let w: &mut dyn Write = match self {
            Pop3Stream::Plain(r) => r.get_mut(),
            Pop3Stream::Tls(r) => r.get_mut(),
        };
        w.write_all(text.as_bytes()).unwrap();
        w.flush().unwrap();
    }
    fn line(&mut self) -> String {
        let mut line = String::new();
        self.reader().read_line(&mut line).unwrap();
        line
    }
    fn login(&mut self, user: &str) {
        self.send(&format!("USER {user}\r\nPASS {PASSWORD}\r\n"));
        self.line();
        let reply = self.line();
        assert!(reply.starts_with("+OK"), "login: {reply}");
    }
    /// Reads a multi-line reply body; returns its size in bytes.
    fn multiline(&mut self) -> usize {
        let mut total = 0;
        let mut line = Vec::new();
        loop {
            line.clear();
            let n = self.reader().read_until(b'\n', &mut line).unwrap();
            assert!(n > 0, "closed mid-reply");
            if line == b".\r\n" {
                return total;
            }
            total += n;
        }
    }
}

fn tls_config() -> Arc<rustls::ClientConfig> {
    #[derive(Debug)]
    struct AnyCert(Arc<rustls::crypto::CryptoProvider>);
    impl rustls::client::danger::ServerCertVerifier for AnyCert {
        fn verify_server_cert(
            &self,
            _: &rustls::pki_types::CertificateDer<'_>,
            _: &[rustls::pki_types::CertificateDer<'_>],
            _: &rustls::pki_types::ServerName<'_>,
            _: &[u8],
            _: rustls::pki_types::UnixTime,
        ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
            Ok(rustls::client::danger::ServerCertVerified::assertion())
        }
        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &rustls::pki_types::CertificateDer<'_>,
            dss: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls12_signature(
                message,
                cert,
                dss,
                &self.0.signature_verification_algorithms,
            )
        }
        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &rustls::pki_types::CertificateDer<'_>,
            dss: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(
                message,
                cert,
                dss,
                &self.0.signature_verification_algorithms,
            )
        }
        fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
            self.0.signature_verification_algorithms.supported_schemes()
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCert(provider)))
        .with_no_client_auth();
    Arc::new(config)
}

/// STAT, then RETR of every message, in one session; returns (msg/s, MB/s).
fn pop3_retrieve(port: u16, tls: bool, user: &str) -> (f64, f64) {
    let mut s = Pop3Stream::connect(port, tls);
    s.login(user);
    let start = Instant::now();
    s.send("STAT\r\n");
    let stat = s.line();
    let count: usize = stat
        .split(' ')
        .nth(1)
        .and_then(|n| n.parse().ok())
        .expect("STAT count");
    let mut bytes = 0;
    for i in 1..=count {
        s.send(&format!("RETR {i}\r\n"));
        let ok = s.line();
        assert!(ok.starts_with("+OK"), "RETR {i}: {ok}");
        bytes += s.multiline();
    }
    let secs = start.elapsed().as_secs_f64();
    s.send("QUIT\r\n");
    (count as f64 / secs, bytes as f64 / secs / 1e6)
}

/// RETR of `user`'s whole maildrop, the servers taking turns each round;
/// prints the medians.
fn pop3_figures(o: &Options, lb: &Letterbox, dc: Option<&Dovecot>, user: &str, tls: bool) {
    let port = |p: &Ports| if tls { p.pop3s } else { p.pop3 };
    let (mut lb_r, mut dc_r) = (vec![], vec![]);
    for _ in 0..o.rounds {
        lb_r.push(pop3_retrieve(port(&lb.ports), tls, user));
        if let Some(dc) = dc {
            dc_r.push(pop3_retrieve(port(&dc.ports), tls, user));
        }
    }
    let kind = if tls { "POP3S" } else { "POP3 " };
    let lb_msgs = median(lb_r.iter().map(|r| r.0).collect());
    let lb_mb = median(lb_r.iter().map(|r| r.1).collect());
    println!("  letterbox {kind}: {lb_msgs:8.0} msg/s {lb_mb:7.1} MB/s");
    if !dc_r.is_empty() {
        let dc_msgs = median(dc_r.iter().map(|r| r.0).collect());
        let dc_mb = median(dc_r.iter().map(|r| r.1).collect());
        println!(
            "  dovecot   {kind}: {dc_msgs:8.0} msg/s {dc_mb:7.1} MB/s   ratio {:.2}x",
            lb_msgs / dc_msgs
        );
    }
}

fn fill(port: u16, user: &str, count: usize) {
    let mut c = Lmtp::connect(port);
    let mut n = 0;
    while n < count {
        c.deliver(user, &stuffed(&message(n)));
        n += 1;
    }
}

fn bench_pop3(o: &Options) {
    const USER: &str = "bench1";
    const COUNT: usize = 1000;
    let mut users: Vec<String> = (1..=BENCH_USERS).map(|i| format!("bench{i}")).collect();
    // mem1 for the warm-up connection, mem2..mem201 for the 200 measured.
    users.extend((1..=201).map(|i| format!("mem{i}")));
    let lb = Letterbox::start(&users);
    let dc = if o.dovecot { Dovecot::start() } else { None };
    fill(lb.ports.lmtp, USER, COUNT);
    if let Some(dc) = &dc {
        fill(dc.ports.lmtp, USER, COUNT);
    }
    println!("POP3 retrieval: {COUNT} messages of 20 KB in one session (STAT, then RETR each), median of {} rounds", o.rounds);
    for tls in [false, true] {
        pop3_figures(o, &lb, dc.as_ref(), USER, tls);
    }
    drop(lb);
    drop(dc);
    for tls in [false, true] {
        // A fresh server, so freed memory from the retrieval runs cannot
        // hide what the connections cost. One connection first, so that
        // one-off allocations (TLS setup, the first login) are not counted.
        let lb = Letterbox::start(&users);
        let port = if tls { lb.ports.pop3s } else { lb.ports.pop3 };
        let mut first = Pop3Stream::connect(port, tls);
        first.login("mem1");
        std::thread::sleep(Duration::from_millis(300));
        let before = lb.status_kib("VmRSS:");
        // Each connection logs in as its own user: POP3 allows one session
        // per maildrop.
        let held: Vec<Pop3Stream> = (2..=201)
            .map(|i| {
                let mut s = Pop3Stream::connect(port, tls);
                s.login(&format!("mem{i}"));
                s
            })
            .collect();
        std::thread::sleep(Duration::from_millis(500));
        let after = lb.status_kib("VmRSS:");
        println!(
            "  letterbox memory, 200 {} POP3 connections logged in: {} KiB -> {} KiB, {:.1} KiB each",
            if tls { "TLS" } else { "plain" },
            before,
            after,
            (after.saturating_sub(before)) as f64 / 200.0
        );
        drop(held);
        drop(first);
    }
}

fn main() {
    raise_file_limit();
    let o = options();
    type Part = (&'static str, fn(&Options));
    let parts: &[Part] = &[
        ("memory", bench_memory),
        ("compress", compress::bench_compress),
        ("lmtp", bench_lmtp),
        ("pop3", bench_pop3),
        ("imap", bench_imap),
        ("logins", bench_logins),
        ("quota", quota::bench_quota),
        ("import", import::bench_import),
        ("sort", sort::bench_sort),
        ("web", web::bench_web),
    ];
    for unknown in o
        .parts
        .iter()
        .filter(|p| !parts.iter().any(|(n, _)| n == p))
    {
        eprintln!(
            "unknown part {unknown:?}; the parts are memory, compress, lmtp, pop3, imap, logins, quota, import, sort, web, all"
        );
    }
    for (name, run) in parts {
        if o.wants(name) {
            eprintln!("== {name}: {}", uptime());
            run(&o);
            eprintln!("== {name} done: {}", uptime());
        }
    }
    let _ = std::io::stdout().flush();
}

/// A thousand connections need more descriptors than the usual 1024.
fn raise_file_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain calls on a struct we own.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

/// Fills `user`'s INBOX with `n` messages on each server (name, IMAP port,
/// LMTP port), saying how long each took.
fn fill_each(servers: &[(&str, u16, u16)], user: &str, n: usize) {
    for (name, _, lmtp) in servers {
        let start = Instant::now();
        fill_big(*lmtp, user, n);
        eprintln!(
            "filled {name}'s {user} with {n} messages in {:.0} s",
            start.elapsed().as_secs_f64()
        );
    }
}

/// A blocking IMAP client that counts what it reads.
struct Imap {
    r: BufReader<TcpStream>,
    next_tag: u32,
}

impl Imap {
    fn connect(port: u16) -> Imap {
        let tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
        tcp.set_nodelay(true).unwrap();
        tcp.set_read_timeout(Some(CLIENT_TIMEOUT)).unwrap();
        let mut c = Imap {
            r: BufReader::with_capacity(64 * 1024, tcp),
            next_tag: 1,
        };
        let mut greeting = String::new();
        c.r.read_line(&mut greeting).unwrap();
        assert!(greeting.starts_with("* OK"), "greeting: {greeting}");
        c
    }

    fn login(port: u16, user: &str) -> Imap {
        let mut c = Imap::connect(port);
        let (_, status) = c.cmd(&format!("LOGIN {user} {PASSWORD}"));
        assert!(status.contains("OK"), "login {user}: {status}");
        c
    }

    /// Sends a command (with an optional literal as its last argument) and
    /// reads to its tagged reply; returns bytes read and the tagged line.
    fn send(&mut self, text: &str, literal: Option<&[u8]>) -> (usize, String) {
        let tag = format!("a{}", self.next_tag);
        self.next_tag += 1;
        let w = self.r.get_mut();
        match literal {
            Some(data) => {
                w.write_all(format!("{tag} {text} {{{}+}}\r\n", data.len()).as_bytes())
                    .unwrap();
                w.write_all(data).unwrap();
                w.write_all(b"\r\n").unwrap();
            }
            None => w.write_all(format!("{tag} {text}\r\n").as_bytes()).unwrap(),
        }
        read_to_tagged(&mut self.r, &tag, text)
    }

    fn cmd(&mut self, text: &str) -> (usize, String) {
        self.send(text, None)
    }
}

/// Reads replies up to the one tagged `tag`; returns the bytes read and the
/// tagged line. Literals are counted, not kept: one may be 50 MiB.
fn read_to_tagged(r: &mut impl BufRead, tag: &str, text: &str) -> (usize, String) {
    let mut total = 0;
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = r.read_until(b'\n', &mut line).unwrap();
        assert!(n > 0, "server closed during {text}");
        total += n;
        // A line ending in {n} is followed by n bytes of literal.
        if let Some(size) = literal_size(&line) {
            let read = std::io::copy(&mut r.take(size as u64), &mut std::io::sink()).unwrap();
            assert_eq!(read, size as u64, "server closed inside a literal");
            total += size;
            continue;
        }
        if line.starts_with(tag.as_bytes()) && line.get(tag.len()) == Some(&b' ') {
            return (total, String::from_utf8_lossy(&line).trim_end().to_string());
        }
    }
}

fn literal_size(line: &[u8]) -> Option<usize> {
    let body = line.strip_suffix(b"\r\n")?.strip_suffix(b"}")?;
    let open = body.iter().rposition(|&b| b == b'{')?;
    std::str::from_utf8(&body[open + 1..])
        .ok()?
        .trim_end_matches('+')
        .parse()
        .ok()
}

/// A 4 KB message with a findable subject and body word.
fn small_message(n: usize) -> Vec<u8> {
    let mut m = format!(
        "From: Load Generator <load@bench.test>\r\nTo: bench@bench.test\r\nSubject: subject-{n} weekly report\r\n\
         Date: Thu, 26 Nov 2026 10:00:00 +0000\r\nMessage-ID: <{n}.big@bench.test>\r\nMIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\r\nbodyword-{n} starts the text.\r\n"
    );
    while m.len() < 4 * 1024 - 80 {
        m.push_str("Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod.\r\n");
    }
    m.into_bytes()
}

fn fill_big(port: u16, user: &str, count: usize) {
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let user = user.to_string();
            std::thread::spawn(move || {
                let mut c = Lmtp::connect(port);
                let mut n = t;
                while n < count {
                    c.deliver(&user, &stuffed(&small_message(n)));
                    n += 8;
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

fn time_command(port: u16, user: &str, select_first: bool, command: &str) -> f64 {
    let mut c = Imap::login(port, user);
    if select_first {
        let (_, status) = c.cmd("SELECT INBOX");
        assert!(status.contains("OK"), "{status}");
    }
    let start = Instant::now();
    let (_, status) = c.cmd(command);
    let secs = start.elapsed().as_secs_f64();
    assert!(status.contains(" OK"), "{command}: {status}");
    c.cmd("LOGOUT");
    secs
}

/// One client's share of the mixed load; returns each command's latency.
/// One mixed-load client: logs in, waits at `ready` until every client
/// has, then loops for `seconds`.
fn mixed_client(port: u16, user: String, ready: &std::sync::Barrier, seconds: u64) -> Vec<f64> {
    let mut c = Imap::login(port, &user);
    ready.wait();
    let until = Instant::now() + Duration::from_secs(seconds);
    let mut latencies = Vec::new();
    let message = small_message(0);
    let mut timed = |c: &mut Imap, text: &str, literal: Option<&[u8]>| {
        let start = Instant::now();
        let (_, status) = c.send(text, literal);
        latencies.push(start.elapsed().as_secs_f64());
        assert!(status.contains(" OK"), "{text}: {status}");
    };
    while Instant::now() < until {
        timed(&mut c, "SELECT INBOX", None);
        timed(&mut c, "APPEND INBOX (\\Seen)", Some(&message));
        timed(&mut c, "FETCH 1:10 (FLAGS ENVELOPE)", None);
        timed(&mut c, "STORE 1:5 +FLAGS (\\Flagged)", None);
        timed(&mut c, "SEARCH UNSEEN", None);
        timed(&mut c, "STORE 1 +FLAGS (\\Deleted)", None);
        timed(&mut c, "EXPUNGE", None);
    }
    c.cmd("LOGOUT");
    latencies
}

/// Commands per second and p99 latency of `clients` looping for `seconds`.
/// The clock starts once all have logged in: the logins come from one
/// address, which letterbox serves one after another (fair logins), and
/// are not what this part measures (the `logins` part does).
fn mixed_load(port: u16, clients: usize, seconds: u64) -> (f64, f64) {
    let ready = Arc::new(std::sync::Barrier::new(clients + 1));
    let threads: Vec<_> = (1..=clients)
        .map(|i| {
            let ready = ready.clone();
            std::thread::spawn(move || mixed_client(port, format!("bench{i}"), &ready, seconds))
        })
        .collect();
    ready.wait();
    let start = Instant::now();
    let mut all: Vec<f64> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    let secs = start.elapsed().as_secs_f64();
    all.sort_by(|a, b| a.total_cmp(b));
    let p99 = all[(all.len() * 99 / 100).min(all.len() - 1)];
    (all.len() as f64 / secs, p99 * 1000.0)
}

fn bench_imap(o: &Options) {
    const BIG_USER: &str = "bench100";
    let users: Vec<String> = (1..=BENCH_USERS).map(|i| format!("bench{i}")).collect();
    let lb = Letterbox::start(&users);
    std::thread::sleep(Duration::from_secs(1));
    let idle_rss = lb.status_kib("VmRSS:");
    let dc = if o.dovecot { Dovecot::start() } else { None };
    let servers: Vec<(&str, u16, u16)> =
        std::iter::once(("letterbox", lb.ports.imap, lb.ports.lmtp))
            .chain(dc.as_ref().map(|d| ("dovecot", d.ports.imap, d.ports.lmtp)))
            .collect();
    fill_each(&servers, BIG_USER, o.big);
    for (_, imap, _) in &servers {
        // Dovecot builds its index on first open; time the steady state.
        time_command(*imap, BIG_USER, false, "SELECT INBOX");
    }
    let needle = o.big / 3;
    let commands = [
        ("SELECT INBOX", false, "SELECT INBOX".to_string()),
        (
            "UID FETCH 1:* (UID FLAGS)",
            true,
            "UID FETCH 1:* (UID FLAGS)".to_string(),
        ),
        (
            "FETCH 1:* (ENVELOPE BODYSTRUCTURE)",
            true,
            "FETCH 1:* (ENVELOPE BODYSTRUCTURE)".to_string(),
        ),
        (
            "SEARCH header string",
            true,
            format!("SEARCH HEADER Subject \"subject-{needle} \""),
        ),
        (
            "SEARCH body text",
            true,
            format!("SEARCH BODY \"bodyword-{needle} \""),
        ),
    ];
    println!(
        "IMAP, a {}-message INBOX (4 KB messages): seconds per command, median of {} rounds",
        o.big, o.rounds
    );
    for (label, select_first, command) in &commands {
        let mut times: Vec<Vec<f64>> = vec![Vec::new(); servers.len()];
        for _ in 0..o.rounds {
            for (i, (_, imap, _)) in servers.iter().enumerate() {
                // Let the other server's work after its last command (Dovecot
                // writes index and cache files when a session ends) finish,
                // so it is not timed against this one.
                std::thread::sleep(Duration::from_millis(500));
                times[i].push(time_command(*imap, BIG_USER, *select_first, command));
            }
        }
        let medians: Vec<f64> = times.into_iter().map(median).collect();
        let mut line = format!("  {label:36}");
        for ((name, _, _), m) in servers.iter().zip(&medians) {
            line.push_str(&format!(" {name} {m:9.4} s"));
        }
        if medians.len() == 2 {
            line.push_str(&format!(
                "   letterbox/dovecot time {:.2}",
                medians[0] / medians[1]
            ));
        }
        println!("{line}");
    }
    // Mixed load: each client its own account with a few messages.
    for (_, _, lmtp) in &servers {
        for i in 1..=50 {
            let mut c = Lmtp::connect(*lmtp);
            for n in 0..20 {
                c.deliver(&format!("bench{i}"), &stuffed(&small_message(n)));
            }
        }
    }
    println!("IMAP mixed load (SELECT, APPEND, FETCH, STORE, SEARCH, EXPUNGE), {} s per run, median of {} rounds", o.seconds, o.rounds.min(3));
    for clients in [10, 50] {
        let mut results: Vec<Vec<(f64, f64)>> = vec![Vec::new(); servers.len()];
        for _ in 0..o.rounds.min(3) {
            for (i, (_, imap, _)) in servers.iter().enumerate() {
                results[i].push(mixed_load(*imap, clients, o.seconds));
            }
        }
        let mut rates = Vec::new();
        for ((name, _, _), r) in servers.iter().zip(&results) {
            let rate = median(r.iter().map(|x| x.0).collect());
            let p99 = median(r.iter().map(|x| x.1).collect());
            println!("  {clients:2} clients {name:9}: {rate:8.0} commands/s, p99 {p99:7.1} ms");
            rates.push(rate);
        }
        if rates.len() == 2 {
            println!(
                "  {clients:2} clients ratio letterbox/dovecot: {:.2}x",
                rates[0] / rates[1]
            );
        }
    }
    // Memory: 1,000 connections, INBOX selected, in IDLE, on a fresh
    // server (see bench_pop3 for why).
    drop(lb);
    drop(dc);
    let lb = Letterbox::start(&users);
    let mut first = Imap::login(lb.ports.imap, "bench1");
    first.cmd("SELECT INBOX");
    std::thread::sleep(Duration::from_millis(300));
    let before = lb.status_kib("VmRSS:");
    let idlers: Vec<Imap> = (0..1000)
        .map(|i| {
            let mut c = Imap::login(lb.ports.imap, &format!("bench{}", i % 50 + 1));
            c.cmd("SELECT INBOX");
            c.r.get_mut().write_all(b"i IDLE\r\n").unwrap();
            let mut cont = String::new();
            c.r.read_line(&mut cont).unwrap();
            assert!(cont.starts_with('+'), "IDLE: {cont}");
            c
        })
        .collect();
    std::thread::sleep(Duration::from_secs(1));
    let after = lb.status_kib("VmRSS:");
    println!(
        "  letterbox memory: idle after start {idle_rss} KiB; 1000 IDLE connections {before} KiB -> {after} KiB, {:.1} KiB each",
        after.saturating_sub(before) as f64 / 1000.0
    );
    drop(idlers);
    drop(first);
}

/// Connects from `from`, reads the greeting and logs in over IMAP; returns
/// the seconds from connecting to the tagged reply, and whether it was OK.
fn timed_imap_login(port: u16, from: std::net::Ipv4Addr, user: &str, pass: &str) -> (f64, bool) {
    let start = Instant::now();
    let Ok(tcp) = connect_from(from, port) else {
        return (start.elapsed().as_secs_f64(), false);
    };
    let _ = tcp.set_read_timeout(Some(Duration::from_secs(120)));
    let _ = tcp.set_nodelay(true);
    let mut r = BufReader::new(tcp);
    let mut line = String::new();
    if r.read_line(&mut line).is_err() || !line.starts_with("* OK") {
        return (start.elapsed().as_secs_f64(), false);
    }
    if r.get_mut()
        .write_all(format!("l LOGIN {user} {pass}\r\n").as_bytes())
        .is_err()
    {
        return (start.elapsed().as_secs_f64(), false);
    }
    loop {
        line.clear();
        match r.read_line(&mut line) {
            Ok(n) if n > 0 => {}
            _ => return (start.elapsed().as_secs_f64(), false),
        }
        if line.starts_with("l ") {
            let took = start.elapsed().as_secs_f64();
            let _ = r.get_mut().write_all(b"z LOGOUT\r\n");
            return (took, line.starts_with("l OK"));
        }
    }
}

fn percentile(mut v: Vec<f64>, p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() as f64 * p).ceil() as usize).clamp(1, v.len()) - 1]
}

/// One round's figures, in seconds.
struct LoginRound {
    /// Median of first logins with nothing else running: one hash, for scale.
    alone: f64,
    /// A correct login from a fresh address under the flood.
    p50: f64,
    p99: f64,
    /// Median of repeated correct logins of one user.
    repeated: f64,
}

/// One round on a fresh server.
fn login_round(imap: u16) -> LoginRound {
    let fresh = |i: usize| std::net::Ipv4Addr::new(127, 0, 1, i as u8 + 1);
    // A first login per user pays the whole hash (letterbox's cache is
    // keyed by user): the unloaded hash time, for scale.
    let alone: Vec<f64> = (1..=10)
        .map(|i| {
            let (t, ok) = timed_imap_login(imap, fresh(i), &format!("bench{i}"), PASSWORD);
            assert!(ok, "bench{i} could not log in");
            t
        })
        .collect();
    // 200 wrong logins from 4 addresses, all at once, for users the
    // measured logins do not use.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut flood = Vec::new();
    for n in 0..200 {
        let stop = stop.clone();
        flood.push(std::thread::spawn(move || {
            let from = std::net::Ipv4Addr::new(127, 0, 2, (n % 4) as u8 + 1);
            let user = format!("bench{}", 31 + n % 70);
            if !stop.load(std::sync::atomic::Ordering::Relaxed) {
                timed_imap_login(imap, from, &user, "wrong-password");
            }
        }));
    }
    std::thread::sleep(Duration::from_millis(200));
    let loaded: Vec<f64> = (11..=30)
        .map(|i| {
            let (t, ok) = timed_imap_login(imap, fresh(i), &format!("bench{i}"), PASSWORD);
            assert!(ok, "bench{i} could not log in under the flood");
            t
        })
        .collect();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    eprintln!(
        "logins under the flood, in order (ms): {:?}",
        loaded.iter().map(|t| (t * 1e3).round()).collect::<Vec<_>>()
    );
    // Repeated logins of one user, as webmail makes: one connection and
    // login per request.
    let repeated: Vec<f64> = (0..50)
        .map(|_| timed_imap_login(imap, fresh(1), "bench1", PASSWORD).0)
        .collect();
    // The flood threads end when the server they talk to is stopped.
    drop(flood);
    LoginRound {
        alone: median(alone),
        p50: percentile(loaded.clone(), 0.5),
        p99: percentile(loaded, 0.99),
        repeated: median(repeated),
    }
}

fn bench_logins(o: &Options) {
    let users: Vec<String> = (1..=BENCH_USERS).map(|i| format!("bench{i}")).collect();
    let mut results: Vec<(&str, Vec<LoginRound>)> = vec![("letterbox", Vec::new())];
    if o.dovecot {
        results.push(("dovecot", Vec::new()));
    }
    for _ in 0..o.rounds {
        for (name, rounds) in results.iter_mut() {
            // A fresh server each round: the flood leaves throttle state.
            if *name == "letterbox" {
                let lb = Letterbox::start(&users);
                rounds.push(login_round(lb.ports.imap));
            } else if let Some(dc) = Dovecot::start() {
                wait_port(dc.ports.imap);
                rounds.push(login_round(dc.ports.imap));
            }
        }
    }
    println!(
        "\n## logins (IMAP LOGIN from connect to OK, medians of {} rounds)",
        o.rounds
    );
    for (name, rounds) in &results {
        if rounds.is_empty() {
            continue;
        }
        let pick = |f: fn(&LoginRound) -> f64| median(rounds.iter().map(f).collect());
        let hash = pick(|r| r.alone);
        let (p50, p99) = (pick(|r| r.p50), pick(|r| r.p99));
        println!(
            "{name:9}: unloaded first login {:.1} ms; under 200 wrong logins from 4 addresses: p50 {:.1} ms, p99 {:.1} ms ({:.1} unloaded logins); repeated logins p50 {:.2} ms",
            hash * 1e3,
            p50 * 1e3,
            p99 * 1e3,
            p99 / hash,
            pick(|r| r.repeated) * 1e3
        );
    }
}

/// The machine's load, for the log: other work on a shared machine moves
/// every figure.
fn uptime() -> String {
    Command::new("uptime")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

/// A server's processes: `root` and all its descendants (Dovecot runs a
/// process per connection, besides its auth, lmtp and index workers).
fn process_tree(root: u32) -> Vec<u32> {
    let mut parents = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        // "pid (comm) state ppid ...": comm may hold spaces and parentheses.
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if let Some(ppid) = ppid {
            parents.push((pid, ppid));
        }
    }
    let mut tree = vec![root];
    let mut i = 0;
    while i < tree.len() {
        let parent = tree[i];
        tree.extend(parents.iter().filter(|p| p.1 == parent).map(|p| p.0));
        i += 1;
    }
    tree
}

/// RSS and PSS (KiB) summed over `pids`. PSS shares each shared page
/// among the processes that map it, so it does not count Dovecot's
/// libraries once per process as the RSS sum does.
fn memory_kib(pids: &[u32]) -> (u64, u64) {
    let (mut rss, mut pss) = (0, 0);
    for pid in pids {
        let Ok(rollup) = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")) else {
            continue; // it ended meanwhile
        };
        for line in rollup.lines() {
            let kib = |field: &str| {
                line.strip_prefix(field)
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            };
            if let Some(k) = kib("Rss:") {
                rss += k;
            } else if let Some(k) = kib("Pss:") {
                pss += k;
            }
        }
    }
    (rss, pss)
}

/// Samples a server's summed RSS and PSS every 100 ms until `stop`;
/// returns the peaks (KiB). Processes that live less than a sample are
/// missed, which VmHWM would not miss, but Dovecot's per-connection
/// processes take their VmHWM with them when they end.
fn sample_peak(
    root: u32,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<(u64, u64)> {
    std::thread::spawn(move || {
        let mut peak = (0, 0);
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            let (rss, pss) = memory_kib(&process_tree(root));
            peak = (peak.0.max(rss), peak.1.max(pss));
            std::thread::sleep(Duration::from_millis(100));
        }
        peak
    })
}

/// Connections to `ports` that the server still holds open (any TCP state
/// but LISTEN and TIME_WAIT on the server's side), from /proc/net/tcp.
fn open_connections(ports: &Ports) -> usize {
    let ours = [ports.lmtp, ports.pop3, ports.pop3s, ports.imap];
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    table
        .lines()
        .skip(1)
        .filter(|row| {
            let f: Vec<&str> = row.split_whitespace().collect();
            let port = f
                .get(1)
                .and_then(|a| a.rsplit_once(':'))
                .and_then(|(_, p)| u16::from_str_radix(p, 16).ok());
            port.is_some_and(|p| ours.contains(&p)) && !matches!(f.get(3), Some(&"0A" | &"06"))
        })
        .count()
}

/// Waits (at most 30 s) until the server has closed every connection of
/// the last run; says so if it has not.
fn settle(name: &str, ports: &Ports) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while open_connections(ports) > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let left = open_connections(ports);
    if left > 0 {
        eprintln!("warning: {name} still holds {left} connections 30 s after the clients closed");
    }
    std::thread::sleep(Duration::from_millis(500));
}

/// A message of a little under 50 MiB: letterbox's trace header must fit
/// under its default --max-message-size of exactly 50 MiB.
const BIG_MESSAGE: usize = 50 * 1024 * 1024 - 64 * 1024;
/// What each stalled APPEND sends of its literal before it stops.
const APPEND_SENT: usize = 40 * 1024 * 1024;
const READERS: usize = 20;
const APPENDS: usize = 20;
const LMTP_SENDERS: usize = 8;
/// The users of the memory part: the reader's mailbox, then the APPENDs',
/// the LMTP senders' and the POP3 maildrop.
const READER_USER: &str = "bench1";
const FIRST_APPEND_USER: usize = 2;
const FIRST_LMTP_USER: usize = FIRST_APPEND_USER + APPENDS;
const POP3_USER: &str = "bench40";

/// What one run of the hostile mix saw.
struct MixRun {
    /// Peak of the summed RSS and PSS over the server's processes, sampled.
    sampled: (u64, u64),
    /// LMTP messages accepted with 250, of LMTP_SENDERS.
    delivered: usize,
    /// Bytes of APPEND literal the server took before the clients stalled.
    append_sent: usize,
    /// Seconds from the start to the last LMTP reply.
    lmtp_secs: f64,
}

/// The hostile mix, all at once: READERS connections FETCH the big message
/// (half read 16 KiB every half second, half never read), APPENDS
/// connections send a LITERAL+ APPEND of BIG_MESSAGE bytes and stop after
/// APPEND_SENT (or when the server stops reading), and LMTP_SENDERS
/// connections each deliver a 20 MiB message. The readers and APPENDs hold
/// on until the LMTP senders are answered and every APPEND has stalled,
/// plus 2 s; then every connection closes. Bounded in time throughout.
fn hostile_mix(root: u32, ports: &Ports, big: &Arc<Vec<u8>>, lmtp_body: &Arc<Vec<u8>>) -> MixRun {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let stop_sampling = Arc::new(AtomicBool::new(false));
    let sampler = sample_peak(root, stop_sampling.clone());
    let done = Arc::new(AtomicBool::new(false));
    let hard_stop = Instant::now() + Duration::from_secs(150);
    let holding =
        move |done: &AtomicBool| !done.load(Ordering::Relaxed) && Instant::now() < hard_stop;
    let start = Instant::now();
    let imap = ports.imap;
    let readers: Vec<_> = (0..READERS)
        .map(|i| {
            let done = done.clone();
            std::thread::spawn(move || {
                let mut c = Imap::login(imap, READER_USER);
                let (_, status) = c.cmd("SELECT INBOX");
                assert!(status.contains(" OK"), "SELECT: {status}");
                c.r.get_mut()
                    .write_all(b"f FETCH 1 (BODY.PEEK[])\r\n")
                    .unwrap();
                c.r.get_mut()
                    .set_read_timeout(Some(Duration::from_millis(500)))
                    .unwrap();
                let mut buf = vec![0u8; 16 * 1024];
                while holding(&done) {
                    if i % 2 == 0 {
                        let _ = c.r.read(&mut buf);
                    }
                    std::thread::sleep(Duration::from_millis(500));
                }
            })
        })
        .collect();
    let stalled = Arc::new(AtomicUsize::new(0));
    let append_sent = Arc::new(AtomicUsize::new(0));
    let appends: Vec<_> = (0..APPENDS)
        .map(|i| {
            let (done, stalled, sent) = (done.clone(), stalled.clone(), append_sent.clone());
            let data = big.clone();
            std::thread::spawn(move || {
                let mut c = Imap::login(imap, &format!("bench{}", FIRST_APPEND_USER + i));
                let w = c.r.get_mut();
                w.write_all(format!("s APPEND INBOX {{{}+}}\r\n", data.len()).as_bytes())
                    .unwrap();
                // A server that stops reading (as letterbox does while its
                // memory budget is taken) stalls the client earlier.
                w.set_write_timeout(Some(Duration::from_secs(2))).unwrap();
                let mut at = 0;
                while at < APPEND_SENT {
                    match w.write(&data[at..(at + 64 * 1024).min(APPEND_SENT)]) {
                        Ok(n) if n > 0 => at += n,
                        _ => break,
                    }
                }
                sent.fetch_add(at, Ordering::Relaxed);
                stalled.fetch_add(1, Ordering::Relaxed);
                while holding(&done) {
                    std::thread::sleep(Duration::from_millis(100));
                }
            })
        })
        .collect();
    let lmtp = ports.lmtp;
    let senders: Vec<_> = (0..LMTP_SENDERS)
        .map(|i| {
            let body = lmtp_body.clone();
            std::thread::spawn(move || {
                let mut c = Lmtp::connect(lmtp);
                let reply = c.try_deliver(&format!("bench{}", FIRST_LMTP_USER + i), &body);
                let _ = c.r.get_mut().write_all(b"QUIT\r\n");
                reply
            })
        })
        .collect();
    let replies: Vec<String> = senders
        .into_iter()
        .map(|t| t.join().unwrap_or_else(|_| "LMTP client failed".into()))
        .collect();
    let lmtp_secs = start.elapsed().as_secs_f64();
    for r in replies.iter().filter(|r| !r.starts_with("250")) {
        eprintln!("  LMTP 20 MiB not delivered: {}", r.trim_end());
    }
    while stalled.load(Ordering::Relaxed) < APPENDS && Instant::now() < hard_stop {
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(2));
    done.store(true, Ordering::Relaxed);
    for t in readers.into_iter().chain(appends) {
        let _ = t.join();
    }
    stop_sampling.store(true, Ordering::Relaxed);
    MixRun {
        sampled: sampler.join().unwrap(),
        delivered: replies.iter().filter(|r| r.starts_with("250")).count(),
        append_sent: append_sent.load(Ordering::Relaxed),
        lmtp_secs,
    }
}

/// MB/s of one `FETCH 1 (BODY.PEEK[])` of the big message, read as fast
/// as the client can.
fn fetch_rate(port: u16) -> f64 {
    let mut c = Imap::login(port, READER_USER);
    let (_, status) = c.cmd("SELECT INBOX");
    assert!(status.contains(" OK"), "SELECT: {status}");
    let start = Instant::now();
    let (bytes, status) = c.cmd("FETCH 1 (BODY.PEEK[])");
    let secs = start.elapsed().as_secs_f64();
    assert!(status.contains(" OK"), "FETCH: {status}");
    assert!(bytes >= BIG_MESSAGE, "FETCH returned {bytes} bytes");
    c.cmd("LOGOUT");
    bytes as f64 / secs / 1e6
}

fn bench_memory(o: &Options) {
    let users: Vec<String> = (1..=BENCH_USERS).map(|i| format!("bench{i}")).collect();
    let lb = Letterbox::start(&users);
    let dc = if o.dovecot { Dovecot::start() } else { None };
    let big = Arc::new(message_of(0, BIG_MESSAGE));
    let lmtp_body = Arc::new(stuffed(&message_of(1, 20 * 1024 * 1024)));
    let mut servers: Vec<(&str, &Ports, u32)> = vec![("letterbox", &lb.ports, lb.child.id())];
    if let Some(dc) = &dc {
        servers.push(("dovecot", &dc.ports, dc.pid()));
    }
    for (_, ports, _) in &servers {
        Lmtp::connect(ports.lmtp).deliver(READER_USER, &stuffed(&big));
        fill(ports.lmtp, POP3_USER, 1000);
    }
    let mut runs: Vec<Vec<MixRun>> = servers.iter().map(|_| Vec::new()).collect();
    let mut hwm: Vec<f64> = Vec::new();
    let mut fetch: Vec<Vec<f64>> = servers.iter().map(|_| Vec::new()).collect();
    for round in 0..o.rounds {
        for (i, (name, ports, root)) in servers.iter().enumerate() {
            fetch[i].push(fetch_rate(ports.imap));
            if i == 0 {
                // VmHWM from here on: "5" resets it to the current RSS.
                std::fs::write(format!("/proc/{root}/clear_refs"), "5").unwrap();
            }
            let run = hostile_mix(*root, ports, &big, &lmtp_body);
            let peak = if i == 0 {
                let kib = lb.status_kib("VmHWM:");
                hwm.push(kib as f64);
                format!("VmHWM {:.1} MiB, ", kib as f64 / 1024.0)
            } else {
                String::new()
            };
            eprintln!(
                "round {}: {name}: FETCH {:.0} MB/s; mix: {peak}sampled RSS {:.1} MiB, PSS {:.1} MiB; LMTP {}/{LMTP_SENDERS} delivered in {:.1} s; APPENDs took {:.0} MiB before stalling",
                round + 1,
                fetch[i][round],
                run.sampled.0 as f64 / 1024.0,
                run.sampled.1 as f64 / 1024.0,
                run.delivered,
                run.lmtp_secs,
                run.append_sent as f64 / 1048576.0,
            );
            runs[i].push(run);
            settle(name, ports);
        }
    }
    let spooled = std::fs::read_dir(lb.dir.join("data/tmp")).map_or(0, |d| d.count());
    if spooled > 0 {
        eprintln!("warning: letterbox left {spooled} files in DATA/tmp after the clients closed");
    }
    println!(
        "Memory under a hostile mix: {READERS} slow readers of a 50 MiB message, {APPENDS} stalled 50 MiB APPENDs, {LMTP_SENDERS} LMTP senders of 20 MiB, all at once; median of {} rounds",
        o.rounds
    );
    let mib = |kib: f64| kib / 1024.0;
    for (i, (name, _, _)) in servers.iter().enumerate() {
        let r = &runs[i];
        let rss = median(r.iter().map(|x| x.sampled.0 as f64).collect());
        let pss = median(r.iter().map(|x| x.sampled.1 as f64).collect());
        let exact = if i == 0 {
            format!("peak RSS (VmHWM) {:.1} MiB; ", mib(median(hwm.clone())))
        } else {
            String::new()
        };
        println!(
            "  {name:9}: {exact}sampled every 100 ms over all its processes: peak RSS sum {:.1} MiB, peak PSS sum {:.1} MiB; LMTP delivered {:.0}/{LMTP_SENDERS} in {:.1} s",
            mib(rss),
            mib(pss),
            median(r.iter().map(|x| x.delivered as f64).collect()),
            median(r.iter().map(|x| x.lmtp_secs).collect()),
        );
    }
    println!("FETCH 1 (BODY.PEEK[]) of the 50 MiB message, one connection reading at full speed, median of {} rounds", o.rounds);
    let rates: Vec<f64> = fetch.into_iter().map(median).collect();
    for ((name, _, _), rate) in servers.iter().zip(&rates) {
        println!("  {name:9}: {rate:7.1} MB/s");
    }
    if rates.len() == 2 {
        println!("  ratio letterbox/dovecot: {:.2}x", rates[0] / rates[1]);
    }
    println!("POP3 retrieval: 1000 messages of 20 KB in one session (STAT, then RETR each), median of {} rounds", o.rounds);
    pop3_figures(o, &lb, dc.as_ref(), POP3_USER, false);
}
