//! An IMAP client over a raw socket for the integration tests, and the
//! helpers most IMAP tests share: start a server, deliver, build a message.

use std::io::{BufRead, Read};
use std::time::Duration;

use super::*;
/// An IMAP client over a raw socket: tags its commands, reads replies as
/// logical lines (a literal and the rest of its line make one line).
pub struct Client {
    pub raw: Raw,
    pub next_tag: u32,
}

/// A tagged command's reply: the untagged and continuation lines before the
/// tagged one, and the tagged line without its tag. No CRLF at line ends.
#[derive(Debug)]
pub struct Reply {
    pub lines: Vec<String>,
    pub tagged: String,
}

impl Reply {
    pub fn is_ok(&self) -> bool {
        self.tagged.starts_with("OK")
    }
}

impl Client {
    /// Connects and reads the greeting, which must be `* OK`.
    pub fn connect(port: u16) -> Client {
        let (client, greeting) = Client::connect_greeting(port);
        assert!(greeting.starts_with("* OK "), "{greeting}");
        client
    }

    pub fn connect_greeting(port: u16) -> (Client, String) {
        let mut client = Client {
            raw: Raw::connect(port),
            next_tag: 1,
        };
        client.set_timeout(Duration::from_secs(20));
        let greeting = client.line();
        (client, greeting)
    }

    /// Connects and logs in as `user` (password "pw-" + user).
    pub fn login(port: u16, user: &str) -> Client {
        let mut client = Client::connect(port);
        let reply = client.call(&format!("LOGIN {user} pw-{user}"));
        assert!(reply.is_ok(), "{reply:?}");
        client
    }

    pub fn set_timeout(&mut self, timeout: Duration) {
        self.raw
            .reader
            .get_ref()
            .set_read_timeout(Some(timeout))
            .unwrap();
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.raw.send(bytes);
    }

    /// One logical response line as bytes, CRLF removed; panics on EOF or timeout.
    pub fn line_bytes(&mut self) -> Vec<u8> {
        match self.try_line_bytes() {
            Ok(line) => line,
            Err(e) => panic!("reading a reply: {e}"),
        }
    }

    pub fn try_line_bytes(&mut self) -> Result<Vec<u8>, String> {
        let mut line = Vec::new();
        loop {
            let start = line.len();
            match self.raw.reader.read_until(b'\n', &mut line) {
                Ok(0) => return Err(format!("connection closed after {:?}", lossy(&line))),
                Err(e) => return Err(format!("{e} after {:?}", lossy(&line))),
                Ok(_) => {}
            }
            if !line.ends_with(b"\n") {
                return Err(format!("connection closed mid-line: {:?}", lossy(&line)));
            }
            let piece = &line[start..];
            match literal_size(piece) {
                Some(size) => {
                    let mut data = vec![0; size];
                    self.raw
                        .reader
                        .read_exact(&mut data)
                        .map_err(|e| format!("{e} in a literal after {:?}", lossy(&line)))?;
                    line.extend_from_slice(&data);
                }
                None => {
                    line.truncate(line.len() - 1);
                    if line.ends_with(b"\r") {
                        line.pop();
                    }
                    return Ok(line);
                }
            }
        }
    }

    pub fn line(&mut self) -> String {
        String::from_utf8_lossy(&self.line_bytes()).into_owned()
    }

    /// Reads lines up to the one tagged `tag`.
    pub fn reply(&mut self, tag: &str) -> Reply {
        let mut lines = Vec::new();
        loop {
            let line = self.line();
            if let Some(rest) = line.strip_prefix(&format!("{tag} ")) {
                return Reply {
                    lines,
                    tagged: rest.to_string(),
                };
            }
            lines.push(line);
        }
    }

    pub fn tag(&mut self) -> String {
        let tag = format!("t{}", self.next_tag);
        self.next_tag += 1;
        tag
    }

    /// The tag of the command sent last.
    pub fn last_tag(&self) -> String {
        format!("t{}", self.next_tag - 1)
    }

    /// Sends one command line under a fresh tag and reads its reply.
    pub fn call(&mut self, command: &str) -> Reply {
        let tag = self.tag();
        self.send(format!("{tag} {command}\r\n").as_bytes());
        self.reply(&tag)
    }

    /// A command that must succeed; returns its untagged lines.
    pub fn ok(&mut self, command: &str) -> Vec<String> {
        let reply = self.call(command);
        assert!(reply.is_ok(), "{command}: {reply:?}");
        reply.lines
    }

    /// The tagged line (without tag) of a command expected to have no
    /// untagged output.
    pub fn only_tagged(&mut self, command: &str) -> String {
        let reply = self.call(command);
        assert!(reply.lines.is_empty(), "{command}: {reply:?}");
        reply.tagged
    }

    pub fn select(&mut self, mailbox: &str) -> Vec<String> {
        self.ok(&format!("SELECT {mailbox}"))
    }

    /// APPENDs `message` with a synchronizing literal; returns its UID.
    pub fn append(&mut self, mailbox: &str, extra: &str, message: &[u8]) -> u32 {
        let tag = self.tag();
        let sep = if extra.is_empty() { "" } else { " " };
        self.send(
            format!(
                "{tag} APPEND {mailbox}{sep}{extra} {{{}}}\r\n",
                message.len()
            )
            .as_bytes(),
        );
        let go = self.line();
        assert!(go.starts_with("+ "), "{go}");
        self.send(message);
        self.send(b"\r\n");
        let reply = self.reply(&tag);
        assert!(reply.is_ok(), "{reply:?}");
        appenduid(&reply.tagged).1
    }

    /// True once the server has closed the connection (after reading
    /// whatever it still sent).
    pub fn closed(&mut self) -> bool {
        let mut rest = Vec::new();
        self.raw.reader.read_to_end(&mut rest).is_ok()
    }
}

pub fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `{123}\r\n` or `~{123}\r\n` at the end of a line piece.
pub fn literal_size(piece: &[u8]) -> Option<usize> {
    let body = piece.strip_suffix(b"}\r\n")?;
    let open = body.iter().rposition(|&b| b == b'{')?;
    let digits = &body[open + 1..];
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// (UIDVALIDITY, UID) from `OK [APPENDUID v u] ...`.
pub fn appenduid(tagged: &str) -> (u32, u32) {
    let code = tagged
        .strip_prefix("OK [APPENDUID ")
        .unwrap_or_else(|| panic!("no APPENDUID in {tagged}"));
    let mut fields = code.split([' ', ']']);
    let validity = fields.next().unwrap().parse().unwrap();
    let uid = fields.next().unwrap().parse().unwrap();
    (validity, uid)
}

pub fn deliver(server: &Server, user: &str, subject: &str, body: &str) {
    let message = format!(
        "From: Sender <sender@example.org>\r\nTo: {user}@example.org\r\nSubject: {subject}\r\n\r\n{body}\r\n"
    );
    let replies = lmtp_deliver(server, "sender@example.org", &[user], message.as_bytes());
    assert!(replies[0].starts_with("250"), "{replies:?}");
}

pub fn started(name: &str, users: &[&str]) -> Server {
    let mut server = Server::new(name, users);
    start(&mut server);
    server
}

/// Starts the server, on fresh ports if one of its ports was taken in the
/// meantime: the harness hands out ports that were free a moment ago, and
/// the other tests running in parallel (and their clients) may take one first.
pub fn start(server: &mut Server) {
    for attempt in 1.. {
        let log_start = server.log_text().len();
        let started = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            server.start();
        }));
        let Err(panic) = started else { return };
        let taken = server.log_text()[log_start..].contains("Address already in use");
        if !taken || attempt == 5 {
            std::panic::resume_unwind(panic);
        }
        // wait_ready saw the child exit, so it has been reaped.
        server.child = None;
        server.ports = Ports {
            imap: free_port(),
            imaps: free_port(),
            pop3: free_port(),
            pop3s: free_port(),
            lmtp: free_port(),
        };
    }
}

/// A simple message with a date and a body.
pub fn simple_message(subject: &str, body: &str) -> Vec<u8> {
    format!(
        "From: Alice <alice@example.org>\r\nTo: bob@example.org\r\nSubject: {subject}\r\nDate: Tue, 3 Mar 2026 10:00:00 +0100\r\nMessage-ID: <{subject}@example.org>\r\n\r\n{body}\r\n"
    )
    .into_bytes()
}

pub fn lines(expected: &[&str]) -> Vec<String> {
    expected.iter().map(|l| l.to_string()).collect()
}
