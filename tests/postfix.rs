//! A real Postfix (Debian's package) delivering into the real letterbox
//! binary, configured with the lines of configs/postfix-main.cf.snippet.
//!
//! Each test runs its own Postfix instance: its own config directory
//! (`postfix -c DIR`), queue and data directories and log file under a temp
//! dir, SMTP on a free loopback port, every daemon unchrooted. The system's
//! /etc/postfix (and a Postfix running from it) is never touched.
//!
//! Skipped, with the reason printed, when Postfix is not installed (.ci/run
//! installs it) or when not run as root (Postfix's master must start as root).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

const POSTFIX: &str = "/usr/sbin/postfix";

/// Why these tests cannot run here, if they cannot.
fn skip_reason() -> Option<&'static str> {
    if !Path::new(POSTFIX).exists() {
        return Some("Postfix is not installed (apt-get install postfix; .ci/run does)");
    }
    if !is_root() {
        return Some("Postfix's master daemon must be started as root");
    }
    None
}

macro_rules! require_postfix {
    () => {
        if let Some(reason) = skip_reason() {
            eprintln!("SKIPPED: {reason}");
            return;
        }
    };
}

/// The snippet's settings, as `key = value` lines: the uncommented ones
/// (the recommended virtual-domain setup) and, when `with_commented` names
/// them, commented-out alternatives such as `mailbox_command`. Paths and the
/// LMTP port are rewritten for this test instance.
fn snippet_settings(with_commented: &[&str], lmtp_port: u16, conf_dir: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/postfix-main.cf.snippet"),
    )
    .unwrap();
    let mut lines = Vec::new();
    for line in text.lines() {
        let setting = if let Some(rest) = line.strip_prefix('#') {
            match rest.split_once(" = ") {
                Some((key, _)) if with_commented.contains(&key) => rest,
                _ => continue,
            }
        } else if line.trim().is_empty() {
            continue;
        } else {
            line
        };
        lines.push(
            setting
                .replace("127.0.0.1:24", &format!("127.0.0.1:{lmtp_port}"))
                .replace("/etc/postfix/", &format!("{}/", conf_dir.display()))
                .replace("/usr/bin/letterbox", BIN),
        );
    }
    lines
}

/// One private Postfix instance, stopped on drop.
struct Postfix {
    conf: PathBuf,
    maillog: PathBuf,
    smtp_port: u16,
}

impl Postfix {
    /// Starts Postfix with the snippet's settings plus the ones a private
    /// instance needs. `snippet` is the snippet's settings, as
    /// [`snippet_settings`] returns them.
    fn start(dir: &Path, snippet: &[String]) -> Postfix {
        let conf = dir.join("postfix-conf");
        let queue = dir.join("postfix-queue");
        let data = dir.join("postfix-data");
        let maillog = dir.join("maillog");
        std::fs::create_dir_all(&conf).unwrap();
        // postmap and postconf chdir to the queue directory.
        std::fs::create_dir_all(&queue).unwrap();
        let smtp_port = free_port();
        std::fs::copy("/etc/postfix/master.cf", conf.join("master.cf")).unwrap();
        let main_cf = format!(
            "# A private test instance (tests/postfix.rs).
compatibility_level = 3.6
queue_directory = {queue}
data_directory = {data}
mail_owner = postfix
setgid_group = postdrop
myhostname = mx.example.org
mydomain = example.org
myorigin = $myhostname
mydestination = localhost
inet_interfaces = loopback-only
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
alias_maps =
alias_database =
maillog_file = {maillog}
maillog_file_prefixes = {dir}
# Retry only when told to (postqueue -f), so that a deferral stays put.
queue_run_delay = 3600s
minimal_backoff_time = 3600s
maximal_backoff_time = 3600s
# --- configs/postfix-main.cf.snippet ---
{snippet}
",
            queue = queue.display(),
            data = data.display(),
            maillog = maillog.display(),
            dir = dir.display(),
            snippet = snippet.join("\n"),
        );
        std::fs::write(conf.join("main.cf"), main_cf).unwrap();
        std::fs::write(
            conf.join("letterbox-recipients"),
            "alice@example.org OK\nbob@example.org OK\n\
             # in Postfix's table but not a letterbox user: letterbox refuses it\n\
             ghost@example.org OK\n",
        )
        .unwrap();
        let postfix = Postfix {
            conf,
            maillog,
            smtp_port,
        };
        postfix.run(
            "postmap",
            &[&format!("hash:{}", postfix.file("letterbox-recipients"))],
        );
        // SMTP on our loopback port instead of port 25; no chroot (the
        // chroot would need copies of /etc files in the queue directory).
        postfix.run("postconf", &["-M#", "smtp/inet"]);
        postfix.run(
            "postconf",
            &[
                "-M",
                "-e",
                &format!("127.0.0.1:{smtp_port}/inet = 127.0.0.1:{smtp_port} inet n - n - - smtpd"),
            ],
        );
        postfix.run("postconf", &["-F", "-e", "*/*/chroot = n"]);
        postfix.run(POSTFIX, &["check"]);
        postfix.run(POSTFIX, &["start"]);
        // Ready once smtpd greets.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(stream) = std::net::TcpStream::connect(("127.0.0.1", smtp_port)) {
                let mut raw = Raw {
                    reader: std::io::BufReader::new(stream),
                };
                raw.reader
                    .get_ref()
                    .set_read_timeout(Some(Duration::from_secs(30)))
                    .unwrap();
                if raw.line().starts_with("220") {
                    break;
                }
            }
            assert!(
                Instant::now() < deadline,
                "Postfix did not start:\n{}",
                postfix.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        postfix
    }

    fn file(&self, name: &str) -> String {
        self.conf.join(name).display().to_string()
    }

    /// Runs a Postfix command with `-c CONF` and checks it succeeded.
    fn run(&self, program: &str, args: &[&str]) -> String {
        let out = Command::new(program)
            .arg("-c")
            .arg(&self.conf)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
        assert!(
            out.status.success(),
            "{program} -c {} {args:?} failed ({}):\n{}{}\nmaillog:\n{}",
            self.conf.display(),
            out.status,
            out.stdout_text(),
            out.stderr_text(),
            self.log()
        );
        out.stdout_text()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.maillog).unwrap_or_default()
    }

    /// Waits until Postfix's log has a line with every one of `parts`, and
    /// returns it. The bound is generous: it only stops a hung test.
    fn wait_log(&self, parts: &[&str]) -> String {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            if let Some(line) = self
                .log()
                .lines()
                .find(|line| parts.iter().all(|p| line.contains(p)))
            {
                return line.to_string();
            }
            assert!(
                Instant::now() < deadline,
                "no log line with {parts:?} in Postfix's log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The queue as `postqueue -p` lists it.
    fn queue(&self) -> String {
        Command::new("postqueue")
            .arg("-c")
            .arg(&self.conf)
            .arg("-p")
            .output()
            .unwrap()
            .stdout_text()
    }

    /// Sends one message over SMTP with smtplib; returns what Python printed:
    /// `sent` or `refused {...}`.
    fn send(&self, to: &str, token: &str) -> String {
        let script = format!(
            r#"
import smtplib
msg = "From: <bob@example.org>\r\nTo: <{to}>\r\nSubject: {token}\r\nMessage-ID: <{token}@example.org>\r\n\r\nbody {token}\r\n"
with smtplib.SMTP("127.0.0.1", {port}, timeout=60) as s:
    try:
        refused = s.sendmail("bob@example.org", ["{to}"], msg)
        print("sent", refused)
    except smtplib.SMTPRecipientsRefused as e:
        print("refused", e.recipients)
"#,
            port = self.smtp_port
        );
        let mut cmd = Command::new("python3");
        cmd.arg("-c").arg(script);
        let out = run_with_stdin(cmd, b"");
        out.assert_ok();
        out.stdout_text()
    }
}

impl Drop for Postfix {
    fn drop(&mut self) {
        let _ = Command::new(POSTFIX)
            .arg("-c")
            .arg(&self.conf)
            .arg("stop")
            .output();
    }
}

/// The mailbox (folder) of each exported message, keyed by the test token in
/// its Subject.
fn mailbox_of(mail: &[(String, String, Vec<u8>)], token: &str) -> Vec<String> {
    mail.iter()
        .filter(|(_, _, bytes)| {
            String::from_utf8_lossy(bytes).contains(&format!("Subject: {token}"))
        })
        .map(|(mailbox, _, _)| mailbox.clone())
        .collect()
}

#[test]
fn recommended_virtual_domain_setup_delivers_refuses_and_bounces() {
    require_postfix!();
    let mut server = Server::new("postfix-virtual", &["alice", "bob"]);
    server.start();
    let settings = snippet_settings(&[], server.ports.lmtp, &server.dir.0.join("postfix-conf"));
    assert!(
        settings
            .iter()
            .any(|s| s.starts_with("virtual_transport = lmtp:inet:")),
        "the snippet's uncommented lines are the virtual-domain setup: {settings:?}"
    );
    // The README's short form shows the same lines.
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    for line in [
        "virtual_mailbox_domains = example.org",
        "virtual_transport = lmtp:inet:127.0.0.1:24",
        "virtual_mailbox_maps = hash:/etc/postfix/letterbox-recipients",
        "recipient_delimiter = +",
    ] {
        assert!(readme.contains(line), "README.md lacks {line:?}");
    }
    let postfix = Postfix::start(&server.dir.0, &settings);

    // Plain delivery and +folder.
    assert!(postfix
        .send("alice@example.org", "pf-plain")
        .starts_with("sent"));
    assert!(postfix
        .send("alice+Archive@example.org", "pf-folder")
        .starts_with("sent"));
    postfix.wait_log(&["to=<alice@example.org>", "status=sent", "250 2.0.0"]);
    postfix.wait_log(&["to=<alice+Archive@example.org>", "status=sent"]);

    // Not in Postfix's table: refused during SMTP, nothing queued.
    let refused = postfix.send("nosuch@example.org", "pf-unknown-smtp");
    assert!(
        refused.starts_with("refused") && refused.contains("550"),
        "{refused}"
    );

    // In Postfix's table but no letterbox user: letterbox's 550 at RCPT makes
    // Postfix bounce it at once (no retry), and the bounce reaches the
    // sender, bob, through letterbox as well.
    assert!(postfix
        .send("ghost@example.org", "pf-unknown-lmtp")
        .starts_with("sent"));
    let bounced = postfix.wait_log(&["to=<ghost@example.org>", "status=bounced"]);
    assert!(bounced.contains("550 5.1.1"), "{bounced}");
    postfix.wait_log(&["to=<bob@example.org>", "status=sent"]);
    assert!(
        postfix
            .log()
            .lines()
            .all(|l| !l.contains("status=deferred")),
        "nothing should be deferred:\n{}",
        postfix.log()
    );
    drop(postfix);

    server.stop();
    let alice = server.export("alice");
    assert_eq!(mailbox_of(&alice, "pf-plain"), ["INBOX"]);
    assert_eq!(mailbox_of(&alice, "pf-folder"), ["Archive"]);
    let bob = server.export("bob");
    let bounce: Vec<_> = bob
        .iter()
        .filter(|(_, _, bytes)| {
            String::from_utf8_lossy(bytes).contains("Undelivered Mail Returned to Sender")
        })
        .collect();
    assert_eq!(bounce.len(), 1, "bob got one bounce: {bob:?}");
    assert_eq!(bounce[0].0, "INBOX");
    let text = String::from_utf8_lossy(&bounce[0].2);
    assert!(
        text.contains("ghost@example.org") && text.contains("pf-unknown-lmtp"),
        "{text}"
    );
    for token in ["pf-unknown-smtp", "pf-unknown-lmtp"] {
        assert!(mailbox_of(&alice, token).is_empty());
    }
}

#[test]
fn mailbox_command_keeps_the_folder_and_deferred_mail_arrives_after_a_flush() {
    require_postfix!();
    // local(8) delivers to Unix accounts; mail for root is run as
    // default_privs (nobody), so letterbox user "root" stands for any Unix
    // user without creating one on the test machine.
    let mut server = Server::new("postfix-local", &["alice", "bob", "root"]);
    server.start();
    // local(8) runs the command as nobody, who may not reach the build
    // directory (a checkout under /root): give it a copy in the temp dir.
    let bin = server.dir.0.join("letterbox");
    std::fs::copy(BIN, &bin).unwrap();
    let settings: Vec<String> = snippet_settings(
        &["mailbox_command"],
        server.ports.lmtp,
        &server.dir.0.join("postfix-conf"),
    )
    .into_iter()
    .map(|s| s.replace(BIN, &bin.display().to_string()))
    .collect();
    let command = settings
        .iter()
        .find(|s| s.starts_with("mailbox_command = "))
        .expect("the snippet has a mailbox_command line");
    assert!(command.contains("\"$RECIPIENT\""), "{command}");
    let postfix = Postfix::start(&server.dir.0, &settings);

    assert!(postfix
        .send("root+Archive@localhost", "pf-command-folder")
        .starts_with("sent"));
    let sent = postfix.wait_log(&["to=<root+Archive@localhost>", "status="]);
    assert!(
        sent.contains("status=sent") && sent.contains("delivered to command"),
        "{sent}"
    );

    // letterbox down: both paths defer, and the mail stays queued.
    server.stop();
    assert!(postfix
        .send("alice@example.org", "pf-deferred-lmtp")
        .starts_with("sent"));
    assert!(postfix
        .send("root@localhost", "pf-deferred-command")
        .starts_with("sent"));
    let lmtp = postfix.wait_log(&["to=<alice@example.org>", "status=deferred"]);
    assert!(lmtp.contains("Connection refused"), "{lmtp}");
    let command = postfix.wait_log(&["to=<root@localhost>", "status=deferred"]);
    assert!(command.contains("cannot reach"), "{command}");
    let queue = postfix.queue();
    assert!(queue.contains("in 2 Requests"), "{queue}");

    // Back up; a flush delivers both, and nothing bounced.
    server.start();
    postfix.run("postqueue", &["-f"]);
    postfix.wait_log(&["to=<alice@example.org>", "status=sent"]);
    postfix.wait_log(&["to=<root@localhost>", "status=sent"]);
    assert!(
        postfix.queue().contains("Mail queue is empty"),
        "{}",
        postfix.queue()
    );
    assert!(
        postfix.log().lines().all(|l| !l.contains("status=bounced")),
        "{}",
        postfix.log()
    );
    drop(postfix);

    server.stop();
    let root = server.export("root");
    assert_eq!(mailbox_of(&root, "pf-command-folder"), ["Archive"]);
    assert_eq!(mailbox_of(&root, "pf-deferred-command"), ["INBOX"]);
    assert_eq!(
        mailbox_of(&server.export("alice"), "pf-deferred-lmtp"),
        ["INBOX"]
    );
}
