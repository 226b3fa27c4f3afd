//! The `compress` part: COMPRESS=DEFLATE (RFC 4978) against plain IMAP on
//! letterbox alone (what it costs, not a race with Dovecot).
//!
//! - FETCH of a 10 MB message, plain and compressed: MB/s of message bytes
//!   the client gets, the server's CPU time per FETCH (utime + stime from
//!   `/proc/PID/stat`), and the bytes on the wire. Two messages: mail text,
//!   which compresses well, and a base64 attachment of random bytes, the
//!   worst case for the server's CPU.
//! - Memory per idle connection: RSS before and after 1,000 connections
//!   that log in, SELECT INBOX and IDLE, plain on one fresh server and
//!   with COMPRESS on another; measured after the server has given back
//!   idle deflaters (2 s without input, see src/net/compress.rs).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use flate2::read::DeflateDecoder;
use flate2::write::DeflateEncoder;
use flate2::Compression;

use super::{
    median, message_of, read_to_tagged, stuffed, Letterbox, Lmtp, Options, BENCH_USERS,
    CLIENT_TIMEOUT, PASSWORD,
};

const FETCH_SIZE: usize = 10 * 1024 * 1024;
/// FETCHes per figure, so the CPU time (in clock ticks) is not all rounding.
const FETCHES: usize = 5;
const IDLERS: usize = 1000;

/// Counts the bytes read off the socket, under any decompression.
struct Counting {
    inner: TcpStream,
    read: Arc<AtomicUsize>,
}

impl Read for Counting {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read.fetch_add(n, Ordering::Relaxed);
        Ok(n)
    }
}

/// A blocking IMAP client that can turn on COMPRESS.
struct Client {
    r: BufReader<Box<dyn Read + Send>>,
    w: Box<dyn Write + Send>,
    tcp: TcpStream,
    wire: Arc<AtomicUsize>,
    next_tag: u32,
}

impl Client {
    fn login(port: u16, user: &str, compress: bool) -> Client {
        let tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
        tcp.set_nodelay(true).unwrap();
        tcp.set_read_timeout(Some(CLIENT_TIMEOUT)).unwrap();
        let wire = Arc::new(AtomicUsize::new(0));
        let reader = Counting {
            inner: tcp.try_clone().unwrap(),
            read: wire.clone(),
        };
        let mut c = Client {
            r: BufReader::with_capacity(64 * 1024, Box::new(reader)),
            w: Box::new(tcp.try_clone().unwrap()),
            tcp,
            wire,
            next_tag: 1,
        };
        let mut greeting = String::new();
        c.r.read_line(&mut greeting).unwrap();
        assert!(greeting.starts_with("* OK"), "greeting: {greeting}");
        let (_, status) = c.cmd(&format!("LOGIN {user} {PASSWORD}"));
        assert!(status.contains(" OK"), "login {user}: {status}");
        if compress {
            let (_, status) = c.cmd("COMPRESS DEFLATE");
            assert!(status.contains(" OK"), "COMPRESS: {status}");
            // Nothing follows the OK until the next command, so no
            // compressed byte is left in the plain reader's buffer.
            let reader = Counting {
                inner: c.tcp.try_clone().unwrap(),
                read: c.wire.clone(),
            };
            c.r = BufReader::with_capacity(64 * 1024, Box::new(DeflateDecoder::new(reader)));
            c.w = Box::new(DeflateEncoder::new(
                c.tcp.try_clone().unwrap(),
                Compression::new(6),
            ));
        }
        c
    }

    fn send_line(&mut self, line: &str) {
        self.w.write_all(line.as_bytes()).unwrap();
        // On the encoder: a sync flush, so the server can read it all now.
        self.w.flush().unwrap();
    }

    /// Sends a command and reads to its tagged reply; returns the bytes
    /// of the reply (after decompression) and the tagged line.
    fn cmd(&mut self, text: &str) -> (usize, String) {
        let tag = format!("a{}", self.next_tag);
        self.next_tag += 1;
        self.send_line(&format!("{tag} {text}\r\n"));
        read_to_tagged(&mut self.r, &tag, text)
    }
}

/// The server's CPU time so far, in seconds (user + system).
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // The command name may hold spaces; the fields count from after it.
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    ticks as f64 / hz
}

/// About `size` bytes of a MIME message whose body is base64 of bytes from
/// a fixed pseudo-random sequence: an attachment deflate cannot shrink
/// much below base64's 3/4.
fn attachment_message(size: usize) -> Vec<u8> {
    const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut m = b"From: Load Generator <load@bench.test>\r\nTo: bench@bench.test\r\n\
Subject: attachment\r\nDate: Thu, 26 Nov 2026 10:00:00 +0000\r\nMIME-Version: 1.0\r\n\
Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        .to_vec();
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    while m.len() < size - 80 {
        for _ in 0..76 {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            m.push(B64[(state >> 58) as usize]);
        }
        m.extend_from_slice(b"\r\n");
    }
    m
}

struct FetchFigure {
    mb_per_s: f64,
    cpu_ms: f64,
    wire_bytes: usize,
}

/// `FETCHES` FETCHes of message `seq` on one connection.
fn fetch_figure(lb: &Letterbox, seq: u32, compress: bool) -> FetchFigure {
    let mut c = Client::login(lb.ports.imap, "bench1", compress);
    let (_, status) = c.cmd("SELECT INBOX");
    assert!(status.contains(" OK"), "SELECT: {status}");
    let wire_before = c.wire.load(Ordering::Relaxed);
    let cpu_before = cpu_seconds(lb.child.id());
    let start = Instant::now();
    let mut bytes = 0;
    for _ in 0..FETCHES {
        let (n, status) = c.cmd(&format!("FETCH {seq} (BODY.PEEK[])"));
        assert!(status.contains(" OK"), "FETCH: {status}");
        assert!(n >= FETCH_SIZE - 1024, "FETCH returned {n} bytes");
        bytes += n;
    }
    let secs = start.elapsed().as_secs_f64();
    let cpu = cpu_seconds(lb.child.id()) - cpu_before;
    let wire = c.wire.load(Ordering::Relaxed) - wire_before;
    c.cmd("LOGOUT");
    FetchFigure {
        mb_per_s: bytes as f64 / secs / 1e6,
        cpu_ms: cpu * 1000.0 / FETCHES as f64,
        wire_bytes: wire / FETCHES,
    }
}

/// RSS per connection of `IDLERS` connections in IDLE, on a fresh server.
fn idle_memory(users: &[String], compress: bool) -> (u64, u64) {
    let lb = Letterbox::start(users);
    let mut first = Client::login(lb.ports.imap, "bench1", compress);
    first.cmd("SELECT INBOX");
    std::thread::sleep(Duration::from_millis(300));
    let before = lb.status_kib("VmRSS:");
    let idlers: Vec<Client> = (0..IDLERS)
        .map(|i| {
            let mut c = Client::login(lb.ports.imap, &format!("bench{}", i % 50 + 1), compress);
            c.cmd("SELECT INBOX");
            c.send_line("i IDLE\r\n");
            let mut cont = String::new();
            c.r.read_line(&mut cont).unwrap();
            assert!(cont.starts_with('+'), "IDLE: {cont}");
            c
        })
        .collect();
    // Past the 2 s after which an idle session's deflater is given back.
    std::thread::sleep(Duration::from_secs(4));
    let after = lb.status_kib("VmRSS:");
    drop(idlers);
    drop(first);
    (before, after)
}

pub(super) fn bench_compress(o: &Options) {
    let users: Vec<String> = (1..=BENCH_USERS).map(|i| format!("bench{i}")).collect();
    let lb = Letterbox::start(&users);
    let mut lmtp = Lmtp::connect(lb.ports.lmtp);
    lmtp.deliver("bench1", &stuffed(&message_of(0, FETCH_SIZE)));
    lmtp.deliver("bench1", &stuffed(&attachment_message(FETCH_SIZE)));
    for (seq, what) in [(1, "text"), (2, "base64 attachment")] {
        let mut plain = Vec::new();
        let mut compressed = Vec::new();
        for _ in 0..o.rounds {
            plain.push(fetch_figure(&lb, seq, false));
            compressed.push(fetch_figure(&lb, seq, true));
        }
        for (mode, figures) in [("plain", plain), ("COMPRESS", compressed)] {
            let wire = figures[0].wire_bytes;
            println!(
                "  FETCH 10 MB {what}, {mode:8}: {:7.1} MB/s, server CPU {:6.1} ms per FETCH, {:.2} MB on the wire",
                median(figures.iter().map(|f| f.mb_per_s).collect()),
                median(figures.iter().map(|f| f.cpu_ms).collect()),
                wire as f64 / 1e6
            );
        }
    }
    drop(lmtp);
    drop(lb);
    for compress in [false, true] {
        let (before, after) = idle_memory(&users, compress);
        println!(
            "  {IDLERS} IDLE connections{}: {before} KiB -> {after} KiB, {:.1} KiB each",
            if compress { " with COMPRESS" } else { "" },
            after.saturating_sub(before) as f64 / IDLERS as f64
        );
    }
}
