//! The load tool: letterbox against Dovecot, in the same run, on loopback.
//!
//! ```sh
//! cargo bench --bench load -- lmtp          # LMTP delivery, 1 and 8 senders
//! cargo bench --bench load -- pop3          # POP3 retrieval and memory per connection
//! cargo bench --bench load -- all --rounds 5 --messages 500
//! cargo bench --bench load -- lmtp --no-dovecot
//! ```
//!
//! Dovecot comes from Debian's packages and runs on a private config made by
//! `benches/dovecot/setup.sh` (see benches/README.md). Each figure is the
//! median of several rounds, and the two servers take turns within each
//! round so that both see the same machine noise. Figures are printed, never
//! asserted.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_rustls::rustls;

const BIN: &str = env!("CARGO_BIN_EXE_letterbox");
const PASSWORD: &str = "benchpass";

struct Options {
    what: String,
    rounds: usize,
    messages: usize,
    dovecot: bool,
}

fn options() -> Options {
    let mut o = Options {
        what: "all".into(),
        rounds: 5,
        messages: 400,
        dovecot: true,
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
            // cargo bench passes --bench; ignore it and any other flag.
            a if a.starts_with("--") => {}
            a => o.what = a.to_string(),
        }
    }
    o
}

/// A 20 KB message that looks like mail: headers, then wrapped text.
fn message(n: usize) -> Vec<u8> {
    let mut m = format!(
        "From: Load Generator <load@bench.test>\r\nTo: bench@bench.test\r\nSubject: benchmark message {n}\r\n\
         Date: Thu, 26 Nov 2026 10:00:00 +0000\r\nMessage-ID: <{n}.{}@bench.test>\r\nMIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\r\n",
        std::process::id()
    );
    let mut line = 0;
    while m.len() < 20 * 1024 - 80 {
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
        let dir = std::env::temp_dir().join(format!("letterbox-bench-{}", std::process::id()));
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
        };
        let mut cmd = Command::new(BIN);
        cmd.arg("serve")
            .arg("--data")
            .arg(&data)
            .args(["--imap", "off", "--imaps", "off", "--lmtp-socket", "off"])
            .args(["--lmtp", &format!("127.0.0.1:{}", ports.lmtp)])
            .args(["--pop3", &format!("127.0.0.1:{}", ports.pop3)])
            .args(["--pop3s", &format!("127.0.0.1:{}", ports.pop3s)])
            .args(["--max-connections-per-ip", "1000"])
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
        };
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/dovecot/setup.sh");
        let status = Command::new("bash")
            .arg(&script)
            .arg(&dir)
            .env("LMTP_PORT", ports.lmtp.to_string())
            .env("POP3_PORT", ports.pop3.to_string())
            .env("POP3S_PORT", ports.pop3s.to_string())
            .env("IMAP_PORT", free_port().to_string())
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
        let w = self.r.get_mut();
        w.write_all(
            format!("MAIL FROM:<load@bench.test>\r\nRCPT TO:<{rcpt}>\r\nDATA\r\n").as_bytes(),
        )
        .unwrap();
        for what in ["MAIL", "RCPT", "DATA"] {
            let r = self.reply();
            assert!(r.starts_with('2') || r.starts_with('3'), "{what}: {r}");
        }
        self.r.get_mut().write_all(stuffed).unwrap();
        let r = self.reply();
        assert!(r.starts_with("250"), "delivery: {r}");
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
    let users: Vec<String> = (1..=8).map(|i| format!("bench{i}")).collect();
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
    let mut users: Vec<String> = (1..=8).map(|i| format!("bench{i}")).collect();
    users.extend((1..=200).map(|i| format!("mem{i}")));
    let lb = Letterbox::start(&users);
    let dc = if o.dovecot { Dovecot::start() } else { None };
    fill(lb.ports.lmtp, USER, COUNT);
    if let Some(dc) = &dc {
        fill(dc.ports.lmtp, USER, COUNT);
    }
    println!("POP3 retrieval: {COUNT} messages of 20 KB in one session (STAT, then RETR each), median of {} rounds", o.rounds);
    for tls in [false, true] {
        let (mut lb_r, mut dc_r) = (vec![], vec![]);
        for _ in 0..o.rounds {
            lb_r.push(pop3_retrieve(
                if tls { lb.ports.pop3s } else { lb.ports.pop3 },
                tls,
                USER,
            ));
            if let Some(dc) = &dc {
                dc_r.push(pop3_retrieve(
                    if tls { dc.ports.pop3s } else { dc.ports.pop3 },
                    tls,
                    USER,
                ));
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
    for tls in [false, true] {
        let before = lb.status_kib("VmRSS:");
        let port = if tls { lb.ports.pop3s } else { lb.ports.pop3 };
        // Each connection logs in as its own user: POP3 allows one session
        // per maildrop.
        let held: Vec<Pop3Stream> = (1..=200)
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
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn main() {
    let o = options();
    if o.what == "lmtp" || o.what == "all" {
        bench_lmtp(&o);
    }
    if o.what == "pop3" || o.what == "all" {
        bench_pop3(&o);
    }
    let _ = std::io::stdout().flush();
}
