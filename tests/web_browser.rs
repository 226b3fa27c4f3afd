//! The webmail in a real browser: Debian's headless `chromium`, driven over
//! WebDriver (`chromium-driver`) by Python's selenium (`python3-selenium`);
//! .ci/run installs all three. The scripts are in tests/web/; this file
//! starts the real binary with `--http` on loopback and `--sendmail` pointing
//! at a fake sendmail, fills the mailboxes, runs a script and checks what it
//! left behind. Missing browser tools fail the test with a clear message:
//! they are never a reason to skip.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

const HELP: &str = "the browser tests need Debian's chromium, chromium-driver and \
                    python3-selenium (apt-get install chromium chromium-driver python3-selenium; \
                    .ci/run installs them)";

/// A Python interpreter that can import selenium, with chromium and
/// chromedriver present; panics with what is missing.
fn browser_python() -> String {
    for tool in ["CHROMIUM", "CHROMEDRIVER"] {
        let default = if tool == "CHROMIUM" {
            "/usr/bin/chromium"
        } else {
            "/usr/bin/chromedriver"
        };
        let path = std::env::var(tool).unwrap_or_else(|_| default.to_string());
        assert!(Path::new(&path).exists(), "{path} not found: {HELP}");
    }
    // Debian's python3-selenium is for the system python3; a python3 earlier
    // on PATH (pyenv, a venv) may not see it.
    for python in ["python3", "/usr/bin/python3"] {
        let ok = Command::new(python)
            .args(["-c", "import selenium"])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        if ok {
            return python.to_string();
        }
    }
    panic!("no python3 can import selenium: {HELP}");
}

/// A server with the web interface on a loopback port and a fake sendmail
/// that keeps what it is given in `spool` (and fails while `fail_flag`
/// exists).
struct Web {
    server: Server,
    http: u16,
    spool: PathBuf,
    fail_flag: PathBuf,
}

impl Web {
    fn start(name: &str, users: &[&str]) -> Web {
        Web::start_with(name, users, true, &[])
    }

    fn start_with(name: &str, users: &[&str], with_sendmail: bool, extra: &[&str]) -> Web {
        let mut server = Server::new(name, users);
        let spool = server.dir.0.join("spool");
        std::fs::create_dir_all(&spool).unwrap();
        // The server may run as nobody (tests run as root in CI).
        set_mode(&spool, 0o777);
        let fail_flag = spool.join("fail");
        let sendmail = server.dir.0.join("fake-sendmail");
        std::fs::write(
            &sendmail,
            format!(
                "#!/bin/sh\n\
                 # A fake sendmail: keeps its arguments and its input.\n\
                 if [ -e '{fail}' ]; then cat >/dev/null; echo 'mail system down' >&2; exit 75; fi\n\
                 n=$(date +%s%N)\n\
                 printf '%s\\n' \"$@\" > '{spool}'/$n.args\n\
                 cat > '{spool}'/$n.tmp && mv '{spool}'/$n.tmp '{spool}'/$n.eml\n",
                fail = fail_flag.display(),
                spool = spool.display()
            ),
        )
        .unwrap();
        set_mode(&sendmail, 0o755);
        let mut http = free_port();
        let mut tries = 0;
        loop {
            let addr = format!("127.0.0.1:{http}");
            let command = format!("{} -i -t", sendmail.display());
            let mut args = vec!["--http", &addr];
            if with_sendmail {
                args.extend(["--sendmail", &command]);
            }
            args.extend(extra);
            let started = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                server.start_with(&args);
            }));
            match started {
                Ok(()) => break,
                // free_port() is only a guess; another test may take it first.
                Err(e) if tries < 3 && server.log_text().contains("in use") => {
                    drop(e);
                    tries += 1;
                    http = free_port();
                }
                Err(e) => std::panic::resume_unwind(e),
            }
        }
        // The listener is bound before the log says so; still, wait for it.
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", http)).is_err() {
            assert!(Instant::now() < deadline, "--http {http} never accepted");
            std::thread::sleep(Duration::from_millis(20));
        }
        Web {
            server,
            http,
            spool,
            fail_flag,
        }
    }

    /// Runs tests/web/<script> with the ports in its environment; panics
    /// with its output when it fails.
    fn run(&self, python: &str, script: &str, env: &[(&str, String)]) -> String {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/web");
        let mut cmd = Command::new(python);
        cmd.arg(dir.join(script))
            .env("WEB_BASE", format!("http://127.0.0.1:{}", self.http))
            .env("IMAP_PORT", self.server.ports.imap.to_string())
            .env("LMTP_PORT", self.server.ports.lmtp.to_string())
            .env("SPOOL", &self.spool)
            .env("FAIL_FLAG", &self.fail_flag)
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .env("PYTHONUNBUFFERED", "1");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = run_with_stdin(cmd, b"");
        let stdout = out.stdout_text();
        assert!(
            out.status.success() && stdout.trim_end().ends_with("OK"),
            "{script} failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{}\n--- server log (tail)\n{}",
            out.status,
            out.stderr_text(),
            tail(&self.server.log_text(), 60)
        );
        stdout
    }

    /// The messages the fake sendmail was given, oldest first.
    fn sent(&self) -> Vec<(String, String)> {
        let mut names: Vec<String> = std::fs::read_dir(&self.spool)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".eml"))
            .collect();
        names.sort();
        names
            .iter()
            .map(|n| {
                let eml = std::fs::read_to_string(self.spool.join(n)).unwrap();
                let args =
                    std::fs::read_to_string(self.spool.join(n.replace(".eml", ".args"))).unwrap();
                (eml, args)
            })
            .collect()
    }
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// The log's last lines, without the many deliveries of the setup.
fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text
        .lines()
        .filter(|l| !l.contains(": delivered "))
        .collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Report number `n`: sender, subject, date and text vary with n, and the
/// body of number 123 alone holds the word "quasar".
fn report(n: u32) -> Vec<u8> {
    // 2026-01-01 was a Thursday; two messages an hour from then on.
    let day = 1 + n / 48;
    let weekday = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"][((day - 1) % 7) as usize];
    let extra = if n == 123 {
        "The quasar measurements are attached.\r\n"
    } else {
        ""
    };
    format!(
        "From: Sender {n} <sender{n}@example.net>\r\n\
         To: Alice <alice@mail.test>\r\n\
         Subject: Status report {n}\r\n\
         Date: {weekday}, {day:02} Jan 2026 {:02}:{:02}:00 +0000\r\n\
         Message-ID: <report-{n}@example.net>\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\
         \r\n\
         Hello Alice,\r\n\
         \r\n\
         This is report number {n}. Details: https://example.org/reports/{n}\r\n\
         {extra}\
         \r\n\
         > From the previous report:\r\n\
         > the previous report said all was well.\r\n\
         \r\n\
         -- \r\n\
         Sender {n}\r\n",
        (n / 2) % 24,
        (n % 2) * 30
    )
    .into_bytes()
}

/// Delivers messages over one LMTP session, in order.
fn deliver_all(server: &Server, messages: impl Iterator<Item = Vec<u8>>) {
    let stream = server.lmtp();
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let mut c = BufReader::new(stream);
    let mut line = String::new();
    let mut reply = |c: &mut BufReader<TcpStream>, want: &str| loop {
        line.clear();
        c.read_line(&mut line).unwrap();
        assert!(line.starts_with(want), "LMTP: wanted {want}, got {line:?}");
        if line.as_bytes().get(3) != Some(&b'-') {
            break;
        }
    };
    reply(&mut c, "220");
    c.get_mut().write_all(b"LHLO test\r\n").unwrap();
    reply(&mut c, "250");
    for body in messages {
        let mut data = Vec::with_capacity(body.len() + 64);
        data.extend_from_slice(b"MAIL FROM:<reports@example.net>\r\nRCPT TO:<alice@mail.test>\r\n");
        c.get_mut().write_all(&data).unwrap();
        reply(&mut c, "250");
        reply(&mut c, "250");
        c.get_mut().write_all(b"DATA\r\n").unwrap();
        reply(&mut c, "354");
        data.clear();
        for l in body.split_inclusive(|&b| b == b'\n') {
            if l.starts_with(b".") {
                data.push(b'.');
            }
            data.extend_from_slice(l);
        }
        data.extend_from_slice(b".\r\n");
        c.get_mut().write_all(&data).unwrap();
        reply(&mut c, "250");
    }
    c.get_mut().write_all(b"QUIT\r\n").unwrap();
}

/// Fills alice's INBOX with reports 1..=1000: in parallel for speed, then
/// the newest ten one by one so their UIDs (and sequence numbers) follow n.
fn fill_inbox(server: &Server) {
    std::thread::scope(|s| {
        for part in 0..4u32 {
            s.spawn(move || {
                deliver_all(server, (1..=990).filter(move |n| n % 4 == part).map(report))
            });
        }
    });
    deliver_all(server, (991..=1000).map(report));
}

/// Runs an IMAP command list on a fresh session; returns every line.
fn imap(server: &Server, user: &str, commands: &[&str]) -> String {
    let mut c = Raw::connect(server.ports.imap);
    c.line();
    let mut all = String::new();
    let mut script = vec![format!("LOGIN {user} pw-{user}")];
    script.extend(commands.iter().map(|s| s.to_string()));
    for (i, command) in script.iter().enumerate() {
        let tag = format!("t{i}");
        c.send(format!("{tag} {command}\r\n").as_bytes());
        loop {
            let line = c.line();
            assert!(!line.is_empty(), "IMAP closed during {command}");
            all.push_str(&line);
            if line.starts_with(&format!("{tag} ")) {
                assert!(line.starts_with(&format!("{tag} OK")), "{command}: {line}");
                break;
            }
        }
    }
    all
}

fn header<'a>(message: &'a str, name: &str) -> Option<&'a str> {
    message
        .split("\r\n\r\n")
        .next()
        .unwrap_or_default()
        .split("\r\n")
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim())
        })
}

#[test]
fn browser_flow() {
    let python = browser_python();
    let web = Web::start("web-flow", &["alice"]);
    fill_inbox(&web.server);
    imap(&web.server, "alice", &["CREATE Projects"]);
    let attachment = web.server.dir.0.join("notes.txt");
    std::fs::write(&attachment, "Numbers for Friday: 4, 8, 15, 16, 23, 42.\n").unwrap();

    web.run(
        &python,
        "flow.py",
        &[("ATTACH_FILE", attachment.display().to_string())],
    );

    // What the fake sendmail got: one message, the reply, from alice only.
    let sent = web.sent();
    assert_eq!(sent.len(), 1, "exactly one message was sent: {sent:?}");
    let (eml, args) = &sent[0];
    let eml = eml.replace("\r\n", "\n").replace('\n', "\r\n");
    assert_eq!(
        header(&eml, "Subject"),
        Some("Re: Status report 998"),
        "{eml}"
    );
    assert!(
        header(&eml, "To").is_some_and(|t| t.contains("sender998@example.net")),
        "{eml}"
    );
    assert!(
        header(&eml, "From").is_some_and(|f| f.contains("alice@mail.test")),
        "{eml}"
    );
    assert_eq!(
        header(&eml, "In-Reply-To"),
        Some("<report-998@example.net>"),
        "{eml}"
    );
    assert!(
        header(&eml, "References").is_some_and(|r| r.contains("<report-998@example.net>")),
        "{eml}"
    );
    assert!(eml.contains("Thanks, noted. More later."), "{eml}");
    assert!(eml.contains("> This is report number 998."), "{eml}");
    assert!(
        eml.contains("notes.txt"),
        "the attachment went along: {eml}"
    );
    assert!(!args.is_empty(), "sendmail's arguments: {args:?}");

    // The store agrees with what the page showed.
    let status = imap(
        &web.server,
        "alice",
        &[
            "STATUS INBOX (MESSAGES)",
            "STATUS Projects (MESSAGES)",
            "STATUS Trash (MESSAGES)",
            "STATUS Sent (MESSAGES)",
            "STATUS Drafts (MESSAGES)",
            "STATUS Archive (MESSAGES)",
            "LIST \"\" *",
            "SELECT Drafts",
            "FETCH 1 (FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT TO)])",
            "SELECT INBOX",
            "UID SEARCH FLAGGED",
        ],
    );
    for want in [
        "* STATUS \"INBOX\" (MESSAGES 998)",
        "* STATUS \"Archive\" (MESSAGES 1)",
        "* STATUS \"Projects\" (MESSAGES 1)",
        "* STATUS \"Trash\" (MESSAGES 1)",
        "* STATUS \"Sent\" (MESSAGES 1)",
        "* STATUS \"Drafts\" (MESSAGES 1)",
        "Subject: Plans for Friday",
        "To: carol@example.net",
        "* SEARCH 997",
    ] {
        assert!(status.contains(want), "missing {want:?} in:\n{status}");
    }
    assert!(status.contains("\\Draft"), "{status}");
    assert!(status.contains("\"Elsewhere too\""), "{status}");
    assert!(!status.contains("Receipts"), "{status}");
}

#[test]
fn hostile_mail() {
    let python = browser_python();
    let web = Web::start("web-xss", &["alice"]);
    web.run(&python, "xss.py", &[]);
    // The form inside the mail did not post to the app: all four are there.
    let status = imap(&web.server, "alice", &["STATUS INBOX (MESSAGES)"]);
    assert!(status.contains("(MESSAGES 4)"), "{status}");
}

/// Needs no browser: plain HTTP requests with and without the CSRF token,
/// and one user's cookie against another user's ids.
#[test]
fn csrf_and_users() {
    let web = Web::start("web-csrf", &["alice", "bob"]);
    let message = b"From: Carol <carol@example.net>\r\nTo: alice@mail.test\r\n\
                    Subject: For Alice only\r\nMessage-ID: <secret@example.net>\r\n\r\n\
                    The secret is 42.\r\n";
    let replies = lmtp_deliver(
        &web.server,
        "carol@example.net",
        &["alice@mail.test"],
        message,
    );
    assert!(replies[0].starts_with("250"), "{replies:?}");
    // Plain python3 is enough here (no selenium).
    web.run("python3", "csrf.py", &[]);
}

#[test]
fn compose_without_sendmail() {
    let python = browser_python();
    let web = Web::start_with("web-compose", &["alice"], false, &[]);
    web.run(&python, "compose.py", &[]);
    // The forward went into Drafts with the original's attachment.
    let drafts = imap(
        &web.server,
        "alice",
        &["SELECT Drafts", "FETCH 1 (FLAGS BODY.PEEK[])"],
    );
    for want in [
        "Subject: Fwd: The plan",
        "To: erin@example.net",
        "plan.pdf",
        "JVBERi0xLjQKJSB0aGUgcGxhbgolJUVPRgo=",
        "\\Draft",
    ] {
        assert!(
            drafts.contains(want),
            "missing {want:?} in the draft:\n{drafts}"
        );
    }
    assert!(web.sent().is_empty());
}

#[test]
fn session_expiry() {
    let python = browser_python();
    let web = Web::start_with(
        "web-expiry",
        &["alice"],
        true,
        &["--web-session-idle", "2s"],
    );
    web.run(&python, "expiry.py", &[]);
}

#[test]
fn layout_and_screenshot() {
    let python = browser_python();
    let web = Web::start("web-layout", &["alice"]);
    let shot = web.server.dir.0.join("webmail.png");
    web.run(
        &python,
        "layout.py",
        &[("SCREENSHOT", shot.display().to_string())],
    );
    let png = std::fs::read(&shot).unwrap();
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    let width = u32::from_be_bytes(png[16..20].try_into().unwrap());
    assert!(width >= 1000, "a desktop-sized screenshot: {width} px");
    // LETTERBOX_SCREENSHOT=1 cargo test --test web_browser layout refreshes
    // the README's picture.
    if std::env::var_os("LETTERBOX_SCREENSHOT").is_some() {
        let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/webmail.png");
        std::fs::create_dir_all(docs.parent().unwrap()).unwrap();
        std::fs::write(docs, png).unwrap();
    }
}
