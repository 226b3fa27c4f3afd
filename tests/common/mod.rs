//! The test harness: runs the real `letterbox` binary on loopback ports in a
//! throwaway data directory, and drives it with real clients (Python's
//! smtplib/poplib, curl) and raw sockets.

#![allow(dead_code)]

pub mod imap_client;
pub mod source_addr;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_letterbox");

/// A directory under the system temp dir, removed on drop. World-traversable
/// so a server that dropped root privileges can still reach its data.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("letterbox-it-{name}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        set_mode(&path, 0o755);
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// Starts `letterbox serve` with `flag`'s listener on a port another
/// socket holds and every other listener off; it must refuse to start.
/// Returns what it said on stderr.
pub fn startup_error_with_taken(name: &str, flag: &str) -> String {
    let server = Server::new(name, &[]);
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let mut cmd = Command::new(BIN);
    cmd.arg("serve").arg("--data").arg(&server.data);
    for other in [
        "--imap",
        "--imaps",
        "--pop3",
        "--pop3s",
        "--lmtp-socket",
        "--https",
    ] {
        if other != flag {
            cmd.args([other, "off"]);
        }
    }
    cmd.args([flag, &format!("127.0.0.1:{port}")]);
    if is_root() {
        cmd.args(["--run-as", "nobody"]);
    }
    let out = cmd.output().unwrap();
    assert!(!out.status.success(), "{flag} on a taken port started");
    drop(taken);
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub struct Ports {
    pub imap: u16,
    pub imaps: u16,
    pub pop3: u16,
    pub pop3s: u16,
    pub lmtp: u16,
}

/// One letterbox server and its data directory.
pub struct Server {
    pub dir: TempDir,
    pub data: PathBuf,
    pub ports: Ports,
    pub child: Option<Child>,
    pub log: PathBuf,
    pub extra_args: Vec<String>,
    /// Environment variables for the server, on top of RUST_LOG=info.
    pub extra_env: Vec<(String, String)>,
    /// Where the POP3 listeners bind; readiness is checked on loopback.
    pub bind_ip: String,
    /// Leave `--https` at its default instead of passing `--https off`.
    pub https_default: bool,
}

impl Server {
    /// A data directory with the given users (password = "pw-" + name).
    pub fn new(name: &str, users: &[&str]) -> Server {
        let dir = TempDir::new(name);
        let data = dir.0.join("data");
        let server = Server {
            log: dir.0.join("server.log"),
            data,
            dir,
            ports: Ports {
                imap: free_port(),
                imaps: free_port(),
                pop3: free_port(),
                pop3s: free_port(),
                lmtp: free_port(),
            },
            child: None,
            extra_args: Vec::new(),
            extra_env: Vec::new(),
            bind_ip: "127.0.0.1".into(),
            https_default: false,
        };
        for user in users {
            server
                .user(&["add", user], &format!("pw-{user}\n"))
                .assert_ok();
        }
        server
    }

    pub fn user(&self, args: &[&str], stdin: &str) -> Output {
        let mut cmd = Command::new(BIN);
        cmd.arg("user").args(args).arg("--data").arg(&self.data);
        if args[0] != "del" && args[0] != "list" {
            cmd.arg("--password-stdin");
        }
        run_with_stdin(cmd, stdin.as_bytes())
    }

    pub fn start(&mut self) -> &mut Server {
        self.start_with(&[])
    }

    pub fn start_with(&mut self, args: &[&str]) -> &mut Server {
        assert!(self.child.is_none());
        // free_port() only says a port was free a moment ago; a test running
        // in parallel may take it first. Then start again on new ports.
        for _ in 0..5 {
            match self.spawn(args) {
                Ok(()) => return self,
                Err(log) if log.contains("in use") => {
                    self.ports = Ports {
                        imap: free_port(),
                        imaps: free_port(),
                        pop3: free_port(),
                        pop3s: free_port(),
                        lmtp: free_port(),
                    };
                }
                Err(log) => panic!("server did not start:\n{log}"),
            }
        }
        panic!("no free ports after five tries:\n{}", self.log_text());
    }

    fn spawn(&mut self, args: &[&str]) -> Result<(), String> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let mut cmd = Command::new(BIN);
        cmd.arg("serve")
            .arg("--data")
            .arg(&self.data)
            .args(["--imap", &format!("{}:{}", self.bind_ip, self.ports.imap)])
            .args(["--imaps", &format!("{}:{}", self.bind_ip, self.ports.imaps)])
            .args(["--pop3", &format!("{}:{}", self.bind_ip, self.ports.pop3)])
            .args(["--pop3s", &format!("{}:{}", self.bind_ip, self.ports.pop3s)])
            .args(["--lmtp", &format!("127.0.0.1:{}", self.ports.lmtp)])
            .args(["--hostname", "mail.test"]);
        // The web interface's default port (443) is not for tests to
        // fight over: only a test that asks for the web gets it.
        let https_given = self
            .extra_args
            .iter()
            .map(String::as_str)
            .chain(args.iter().copied())
            .any(|a| a == "--https");
        if !https_given && !self.https_default {
            cmd.args(["--https", "off"]);
        }
        cmd.args(&self.extra_args)
            .args(args)
            .env("RUST_LOG", "info")
            .envs(self.extra_env.iter().map(|(k, v)| (k, v)))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .stdin(Stdio::null());
        if is_root() {
            cmd.args(["--run-as", "nobody"]);
        }
        let log_start = self.log_text().len();
        self.child = Some(cmd.spawn().expect("start letterbox"));
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let new_log = self
                .log_text()
                .get(log_start..)
                .unwrap_or_default()
                .to_string();
            // Ports accept connections from the moment they are bound, before
            // the store and TLS are ready; the log says when serving starts.
            if new_log.contains(&format!("LMTP listening on 127.0.0.1:{}", self.ports.lmtp)) {
                return Ok(());
            }
            if self.child.as_mut().unwrap().try_wait().unwrap().is_some() {
                self.child = None;
                return Err(new_log);
            }
            assert!(Instant::now() < deadline, "server not ready:\n{new_log}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().unwrap().id() as i32
    }

    pub fn signal(&self, signal: i32) {
        // SAFETY: kill on our own child's pid.
        unsafe {
            libc::kill(self.pid(), signal);
        }
    }

    /// SIGTERM and wait: a clean shutdown.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            unsafe {
                libc::kill(child.id() as i32, libc::SIGTERM);
            }
            let deadline = Instant::now() + Duration::from_secs(20);
            while child.try_wait().unwrap().is_none() {
                assert!(Instant::now() < deadline, "server ignored SIGTERM");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    /// SIGKILL: the crash.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }

    /// The server's peak resident memory so far (VmHWM), in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The user's mail as the `export` command writes it (server stopped):
    /// (mailbox, file name, bytes) for every message.
    pub fn export(&self, user: &str) -> Vec<(String, String, Vec<u8>)> {
        let out = self.dir.0.join(format!("export-{user}-{}", free_port()));
        let result = Command::new(BIN)
            .args(["export", user])
            .arg(&out)
            .arg("--data")
            .arg(&self.data)
            .output()
            .unwrap();
        assert!(
            result.status.success(),
            "export failed: {}",
            String::from_utf8_lossy(&result.stderr)
        );
        let mut found = Vec::new();
        collect_maildir(&out, &out, &mut found);
        let _ = std::fs::remove_dir_all(&out);
        found.sort();
        found
    }

    pub fn lmtp(&self) -> TcpStream {
        TcpStream::connect(("127.0.0.1", self.ports.lmtp)).unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

fn collect_maildir(root: &Path, dir: &Path, found: &mut Vec<(String, String, Vec<u8>)>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect_maildir(root, &path, found);
        } else if path.parent().and_then(|p| p.file_name()) == Some("cur".as_ref()) {
            let mailbox = path
                .parent()
                .unwrap()
                .parent()
                .unwrap()
                .strip_prefix(root)
                .unwrap();
            found.push((
                mailbox.to_string_lossy().into_owned(),
                path.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&path).unwrap(),
            ));
        }
    }
}

pub trait OutputExt {
    fn assert_ok(&self) -> &Self;
    fn stdout_text(&self) -> String;
    fn stderr_text(&self) -> String;
}

impl OutputExt for Output {
    fn assert_ok(&self) -> &Self {
        assert!(
            self.status.success(),
            "command failed ({}): {}\n{}",
            self.status,
            self.stdout_text(),
            self.stderr_text()
        );
        self
    }
    fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
    fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}

pub fn run_with_stdin(mut cmd: Command, stdin: &[u8]) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    // A command may exit without reading its input (a refused `user add`).
    let _ = input.write_all(stdin);
    drop(input);
    child.wait_with_output().unwrap()
}

/// Runs a Python script (python3 is a test dependency: .ci/run installs it).
/// The script gets the server's ports as environment variables.
pub fn python(server: &Server, script: &str) -> Output {
    let mut cmd = Command::new("python3");
    cmd.arg("-c")
        .arg(script)
        .env("LMTP_PORT", server.ports.lmtp.to_string())
        .env("IMAP_PORT", server.ports.imap.to_string())
        .env("IMAPS_PORT", server.ports.imaps.to_string())
        .env("POP3_PORT", server.ports.pop3.to_string())
        .env("POP3S_PORT", server.ports.pop3s.to_string())
        .env("DATA_DIR", &server.data);
    run_with_stdin(cmd, b"")
}

/// A line-oriented raw client, for exact protocol checks.
pub struct Raw {
    pub reader: BufReader<TcpStream>,
}

impl Raw {
    pub fn connect(port: u16) -> Raw {
        let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        Raw {
            reader: BufReader::new(stream),
        }
    }
    pub fn send(&mut self, bytes: &[u8]) {
        self.reader.get_mut().write_all(bytes).unwrap();
    }
    pub fn line(&mut self) -> String {
        let mut line = Vec::new();
        self.reader.read_until(b'\n', &mut line).unwrap();
        String::from_utf8_lossy(&line).into_owned()
    }
    /// Sends a command line and reads one reply line.
    pub fn cmd(&mut self, line: &str) -> String {
        self.send(format!("{line}\r\n").as_bytes());
        self.line()
    }
    /// Reads a POP3 multi-line body up to the "." line.
    pub fn multiline(&mut self) -> Vec<String> {
        let mut lines = Vec::new();
        loop {
            let line = self.line();
            assert!(!line.is_empty(), "connection closed in a multi-line reply");
            if line == ".\r\n" {
                return lines;
            }
            lines.push(line);
        }
    }
    /// True once the server has closed the connection.
    pub fn closed(&mut self) -> bool {
        let mut buf = [0u8; 1];
        matches!(self.reader.read(&mut buf), Ok(0))
    }
}

/// Delivers one message over raw LMTP; returns the per-recipient replies.
pub fn lmtp_deliver(server: &Server, from: &str, to: &[&str], body: &[u8]) -> Vec<String> {
    let mut c = Raw {
        reader: BufReader::new(server.lmtp()),
    };
    assert!(c.line().starts_with("220"));
    c.send(b"LHLO test\r\n");
    while c.line().starts_with("250-") {}
    assert!(c.cmd(&format!("MAIL FROM:<{from}>")).starts_with("250"));
    let mut accepted = 0;
    for rcpt in to {
        if c.cmd(&format!("RCPT TO:<{rcpt}>")).starts_with("250") {
            accepted += 1;
        }
    }
    if accepted == 0 {
        assert!(c.cmd("DATA").starts_with("503"));
        return Vec::new();
    }
    assert!(c.cmd("DATA").starts_with("354"));
    let mut data = Vec::new();
    for line in body.split_inclusive(|&b| b == b'\n') {
        if line.starts_with(b".") {
            data.push(b'.');
        }
        data.extend_from_slice(line);
    }
    if !data.ends_with(b"\r\n") {
        data.extend_from_slice(b"\r\n");
    }
    data.extend_from_slice(b".\r\n");
    c.send(&data);
    (0..accepted).map(|_| c.line()).collect()
}

/// A network namespace with a veth pair, so a client can reach the server
/// from a non-loopback address (198.51.100.2 -> 198.51.100.1, a documentation
/// range that is never routed). Needs root; removed on drop.
pub struct TestHost {
    pub name: String,
    host_if: String,
}

impl TestHost {
    pub const SERVER_IP: &'static str = "198.51.100.1";

    /// None when this machine cannot make namespaces (not root, no `ip`).
    pub fn create() -> Option<TestHost> {
        if !is_root() {
            return None;
        }
        let id = std::process::id() % 100_000;
        let host = TestHost {
            name: format!("lbt{id}"),
            host_if: format!("lbh{id}"),
        };
        let peer_if = format!("lbp{id}");
        let ip = |args: &[&str]| {
            Command::new("ip")
                .args(args)
                .status()
                .map(|s| s.success())
                .unwrap_or(false)
        };
        let ns = host.name.clone();
        let ok = ip(&["netns", "add", &ns])
            && ip(&[
                "link",
                "add",
                &host.host_if,
                "type",
                "veth",
                "peer",
                "name",
                &peer_if,
                "netns",
                &ns,
            ])
            && ip(&["addr", "add", "198.51.100.1/30", "dev", &host.host_if])
            && ip(&["link", "set", &host.host_if, "up"])
            && ip(&["-n", &ns, "addr", "add", "198.51.100.2/30", "dev", &peer_if])
            && ip(&["-n", &ns, "link", "set", &peer_if, "up"])
            && ip(&["-n", &ns, "link", "set", "lo", "up"]);
        ok.then_some(host)
    }

    /// Runs a Python script inside the namespace.
    pub fn python(&self, script: &str, env: &[(&str, String)]) -> Output {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name, "python3", "-c", script]);
        for (k, v) in env {
            cmd.env(k, v);
        }
        run_with_stdin(cmd, b"")
    }
}

impl Drop for TestHost {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_if])
            .status();
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// The names in `letterbox user list`'s output (its first column; the
/// others are quota usage).
pub fn names(listed: &str) -> Vec<&str> {
    listed
        .lines()
        .map(|line| line.split('\t').next().unwrap_or_default())
        .collect()
}
