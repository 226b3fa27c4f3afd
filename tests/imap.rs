//! IMAP against the real binary: a raw protocol suite with exact replies,
//! Python's imaplib and curl as real clients, two sessions syncing and IDLE
//! push, bad input, the plaintext rules off loopback, and the limits.

mod common;

use std::io::{BufRead, Read};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

/// An IMAP client over a raw socket: tags its commands, reads replies as
/// logical lines (a literal and the rest of its line make one line).
struct Client {
    raw: Raw,
    next_tag: u32,
}

/// A tagged command's reply: the untagged and continuation lines before the
/// tagged one, and the tagged line without its tag. No CRLF at line ends.
#[derive(Debug)]
struct Reply {
    lines: Vec<String>,
    tagged: String,
}

impl Reply {
    fn is_ok(&self) -> bool {
        self.tagged.starts_with("OK")
    }
    /// The untagged lines that start with `prefix` (after `* `).
    fn with(&self, prefix: &str) -> Vec<&str> {
        self.lines
            .iter()
            .filter_map(|l| l.strip_prefix("* "))
            .filter(|l| l.starts_with(prefix))
            .collect()
    }
}

impl Client {
    /// Connects and reads the greeting, which must be `* OK`.
    fn connect(port: u16) -> Client {
        let (client, greeting) = Client::connect_greeting(port);
        assert!(greeting.starts_with("* OK "), "{greeting}");
        client
    }

    fn connect_greeting(port: u16) -> (Client, String) {
        let mut client = Client {
            raw: Raw::connect(port),
            next_tag: 1,
        };
        client.set_timeout(Duration::from_secs(20));
        let greeting = client.line();
        (client, greeting)
    }

    /// Connects and logs in as `user` (password "pw-" + user).
    fn login(port: u16, user: &str) -> Client {
        let mut client = Client::connect(port);
        let reply = client.call(&format!("LOGIN {user} pw-{user}"));
        assert!(reply.is_ok(), "{reply:?}");
        client
    }

    fn set_timeout(&mut self, timeout: Duration) {
        self.raw
            .reader
            .get_ref()
            .set_read_timeout(Some(timeout))
            .unwrap();
    }

    fn send(&mut self, bytes: &[u8]) {
        self.raw.send(bytes);
    }

    /// One logical response line as bytes, CRLF removed; panics on EOF or timeout.
    fn line_bytes(&mut self) -> Vec<u8> {
        match self.try_line_bytes() {
            Ok(line) => line,
            Err(e) => panic!("reading a reply: {e}"),
        }
    }

    fn try_line_bytes(&mut self) -> Result<Vec<u8>, String> {
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

    fn line(&mut self) -> String {
        String::from_utf8_lossy(&self.line_bytes()).into_owned()
    }

    /// Reads lines up to the one tagged `tag`.
    fn reply(&mut self, tag: &str) -> Reply {
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

    fn tag(&mut self) -> String {
        let tag = format!("t{}", self.next_tag);
        self.next_tag += 1;
        tag
    }

    /// Sends one command line under a fresh tag and reads its reply.
    fn call(&mut self, command: &str) -> Reply {
        let tag = self.tag();
        self.send(format!("{tag} {command}\r\n").as_bytes());
        self.reply(&tag)
    }

    /// A command that must succeed; returns its untagged lines.
    fn ok(&mut self, command: &str) -> Vec<String> {
        let reply = self.call(command);
        assert!(reply.is_ok(), "{command}: {reply:?}");
        reply.lines
    }

    /// The tagged line (without tag) of a command expected to have no
    /// untagged output.
    fn only_tagged(&mut self, command: &str) -> String {
        let reply = self.call(command);
        assert!(reply.lines.is_empty(), "{command}: {reply:?}");
        reply.tagged
    }

    fn select(&mut self, mailbox: &str) -> Vec<String> {
        self.ok(&format!("SELECT {mailbox}"))
    }

    /// APPENDs `message` with a synchronizing literal; returns its UID.
    fn append(&mut self, mailbox: &str, extra: &str, message: &[u8]) -> u32 {
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
    fn closed(&mut self) -> bool {
        let mut rest = Vec::new();
        self.raw.reader.read_to_end(&mut rest).is_ok()
    }
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `{123}\r\n` or `~{123}\r\n` at the end of a line piece.
fn literal_size(piece: &[u8]) -> Option<usize> {
    let body = piece.strip_suffix(b"}\r\n")?;
    let open = body.iter().rposition(|&b| b == b'{')?;
    let digits = &body[open + 1..];
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// (UIDVALIDITY, UID) from `OK [APPENDUID v u] ...`.
fn appenduid(tagged: &str) -> (u32, u32) {
    let code = tagged
        .strip_prefix("OK [APPENDUID ")
        .unwrap_or_else(|| panic!("no APPENDUID in {tagged}"));
    let mut fields = code.split([' ', ']']);
    let validity = fields.next().unwrap().parse().unwrap();
    let uid = fields.next().unwrap().parse().unwrap();
    (validity, uid)
}

fn deliver(server: &Server, user: &str, subject: &str, body: &str) {
    let message = format!(
        "From: Sender <sender@example.org>\r\nTo: {user}@example.org\r\nSubject: {subject}\r\n\r\n{body}\r\n"
    );
    let replies = lmtp_deliver(server, "sender@example.org", &[user], message.as_bytes());
    assert!(replies[0].starts_with("250"), "{replies:?}");
}

fn curl(args: &[&str]) -> std::process::Output {
    Command::new("curl")
        .args(["-s", "-S", "--max-time", "20"])
        .args(args)
        .output()
        .expect("curl is a test dependency (.ci/run installs it)")
}

/// Runs a Python script and checks that it ends by printing "ok".
fn python_ok(server: &Server, script: &str) -> String {
    let out = python(server, script);
    let stdout = out.stdout_text();
    assert!(
        out.status.success() && stdout.trim_end().ends_with("ok"),
        "python failed ({}):\n{stdout}\n{}",
        out.status,
        out.stderr_text()
    );
    stdout
}

fn started(name: &str, users: &[&str]) -> Server {
    let mut server = Server::new(name, users);
    server.start();
    server
}

/// A simple message with a date and a body.
fn simple_message(subject: &str, body: &str) -> Vec<u8> {
    format!(
        "From: Alice <alice@example.org>\r\nTo: bob@example.org\r\nSubject: {subject}\r\nDate: Tue, 3 Mar 2026 10:00:00 +0100\r\nMessage-ID: <{subject}@example.org>\r\n\r\n{body}\r\n"
    )
    .into_bytes()
}

const CAPS_BEFORE_LOGIN: &str =
    "IMAP4rev1 IMAP4rev2 LITERAL+ SASL-IR ID ENABLE IDLE STARTTLS AUTH=PLAIN AUTH=LOGIN";
const CAPS_AFTER_LOGIN: &str = "IMAP4rev1 IMAP4rev2 LITERAL+ SASL-IR ID ENABLE IDLE NAMESPACE \
     UNSELECT UIDPLUS MOVE CHILDREN LIST-EXTENDED LIST-STATUS SPECIAL-USE ESEARCH SEARCHRES \
     BINARY UTF8=ACCEPT STATUS=SIZE APPENDLIMIT=52428800";

/// Commands that need a login, and a form of each that parses.
const AUTHENTICATED_COMMANDS: &[&str] = &[
    "SELECT INBOX",
    "EXAMINE INBOX",
    "CREATE x",
    "DELETE x",
    "RENAME x y",
    "SUBSCRIBE INBOX",
    "UNSUBSCRIBE INBOX",
    "LIST \"\" *",
    "LSUB \"\" *",
    "STATUS INBOX (MESSAGES)",
    "NAMESPACE",
    "ENABLE IMAP4rev2",
    "IDLE",
    "APPEND INBOX {1+}\r\nx",
];

/// Commands that need a selected mailbox.
const SELECTED_COMMANDS: &[&str] = &[
    "CHECK",
    "CLOSE",
    "UNSELECT",
    "EXPUNGE",
    "SEARCH ALL",
    "FETCH 1 FLAGS",
    "STORE 1 +FLAGS (\\Seen)",
    "COPY 1 Trash",
    "MOVE 1 Trash",
    "UID SEARCH ALL",
    "UID FETCH 1 FLAGS",
    "UID STORE 1 +FLAGS (\\Seen)",
    "UID COPY 1 Trash",
    "UID MOVE 1 Trash",
    "UID EXPUNGE 1",
];

#[test]
fn greeting_capability_and_every_command_in_the_wrong_state() {
    let server = started("states", &["alice"]);
    let (mut c, greeting) = Client::connect_greeting(server.ports.imap);
    assert_eq!(
        greeting,
        format!("* OK [CAPABILITY {CAPS_BEFORE_LOGIN}] mail.test letterbox IMAP ready")
    );
    let caps = c.call("CAPABILITY");
    assert_eq!(caps.lines, [format!("* CAPABILITY {CAPS_BEFORE_LOGIN}")]);
    assert_eq!(caps.tagged, "OK CAPABILITY completed");

    // Not authenticated.
    for command in AUTHENTICATED_COMMANDS {
        assert_eq!(
            c.only_tagged(command),
            "BAD Command is only valid after login",
            "{command}"
        );
    }
    for command in SELECTED_COMMANDS {
        assert_eq!(
            c.only_tagged(command),
            "BAD Command is only valid with a mailbox selected",
            "{command}"
        );
    }
    assert_eq!(c.only_tagged("NOOP"), "OK NOOP completed");
    assert_eq!(c.ok("ID NIL"), ["* ID (\"name\" \"letterbox\")"]);

    let login = c.call("LOGIN alice pw-alice");
    assert!(login.lines.is_empty(), "{login:?}");
    assert_eq!(
        login.tagged,
        format!("OK [CAPABILITY {CAPS_AFTER_LOGIN}] Logged in")
    );

    // Authenticated.
    for command in [
        "LOGIN alice pw-alice",
        "AUTHENTICATE PLAIN AGFsaWNlAHB3LWFsaWNl",
        "AUTHENTICATE LOGIN",
        "STARTTLS",
    ] {
        assert_eq!(
            c.only_tagged(command),
            "BAD Command is only valid before login",
            "{command}"
        );
    }
    for command in SELECTED_COMMANDS {
        assert_eq!(
            c.only_tagged(command),
            "BAD Command is only valid with a mailbox selected",
            "{command}"
        );
    }
    assert_eq!(
        c.ok("CAPABILITY"),
        [format!("* CAPABILITY {CAPS_AFTER_LOGIN}")]
    );

    // Selected: login commands stay refused, the rest works.
    c.select("INBOX");
    for command in ["LOGIN alice pw-alice", "STARTTLS"] {
        assert_eq!(
            c.only_tagged(command),
            "BAD Command is only valid before login"
        );
    }
    assert_eq!(c.only_tagged("CHECK"), "OK CHECK completed");
    assert_eq!(c.only_tagged("FETCH 1:* FLAGS"), "OK FETCH completed");
    assert_eq!(c.only_tagged("UNSELECT"), "OK UNSELECT completed");
    assert_eq!(
        c.only_tagged("FETCH 1 FLAGS"),
        "BAD Command is only valid with a mailbox selected"
    );

    let bye = c.call("LOGOUT");
    assert_eq!(bye.lines, ["* BYE Logging out"]);
    assert_eq!(bye.tagged, "OK LOGOUT completed");
    assert!(c.closed());
}

#[test]
fn login_forms_and_failures() {
    let server = started("login", &["alice", "bob"]);
    let mut c = Client::connect(server.ports.imap);
    // A quoted user name and a password sent as a synchronizing literal.
    c.send(b"a1 LOGIN \"alice\" {8}\r\n");
    assert_eq!(c.line(), "+ Ready for literal data");
    c.send(b"pw-alice\r\n");
    assert!(c.reply("a1").tagged.starts_with("OK [CAPABILITY "));
    c.ok("LOGOUT");

    // User names are case-insensitive; the same with LITERAL+.
    let mut c = Client::connect(server.ports.imap);
    c.send(b"a1 LOGIN BOB {6+}\r\npw-bob\r\n");
    assert!(c.reply("a1").is_ok());
    c.ok("LOGOUT");

    // Three failures end the connection; the session stays usable until then.
    let mut c = Client::connect(server.ports.imap);
    let started = Instant::now();
    assert_eq!(
        c.only_tagged("LOGIN alice wrong"),
        "NO [AUTHENTICATIONFAILED] Authentication failed"
    );
    assert_eq!(
        c.only_tagged("LOGIN nobody pw-nobody"),
        "NO [AUTHENTICATIONFAILED] Authentication failed"
    );
    assert_eq!(c.only_tagged("NOOP"), "OK NOOP completed");
    let last = c.call("LOGIN alice wrong-again");
    assert_eq!(
        last.tagged,
        "NO [AUTHENTICATIONFAILED] Authentication failed"
    );
    assert_eq!(c.line(), "* BYE Too many failed logins");
    assert!(c.closed());
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "failed logins are slowed down"
    );
    // A good login still works (after the back-off).
    let mut c = Client::login(server.ports.imap, "alice");
    c.ok("LOGOUT");
}

#[test]
fn authenticate_plain_and_login_with_and_without_sasl_ir() {
    let server = started("sasl", &["alice"]);
    let plain = "AGFsaWNlAHB3LWFsaWNl"; // \0alice\0pw-alice
                                        // PLAIN with SASL-IR.
    let mut c = Client::connect(server.ports.imap);
    let r = c.call(&format!("AUTHENTICATE PLAIN {plain}"));
    assert_eq!(
        r.tagged,
        format!("OK [CAPABILITY {CAPS_AFTER_LOGIN}] Logged in")
    );
    c.ok("SELECT INBOX");
    // PLAIN with an empty challenge.
    let mut c = Client::connect(server.ports.imap);
    c.send(b"a AUTHENTICATE plain\r\n");
    assert_eq!(c.line(), "+ ");
    c.send(format!("{plain}\r\n").as_bytes());
    assert!(c.reply("a").is_ok());
    // LOGIN: both challenges, then with the user name as initial response.
    let mut c = Client::connect(server.ports.imap);
    c.send(b"a AUTHENTICATE LOGIN\r\n");
    assert_eq!(c.line(), "+ VXNlcm5hbWU6");
    c.send(b"YWxpY2U=\r\n");
    assert_eq!(c.line(), "+ UGFzc3dvcmQ6");
    c.send(b"cHctYWxpY2U=\r\n");
    assert!(c.reply("a").is_ok());
    let mut c = Client::connect(server.ports.imap);
    c.send(b"a AUTHENTICATE LOGIN YWxpY2U=\r\n");
    assert_eq!(c.line(), "+ UGFzc3dvcmQ6");
    c.send(b"cHctYWxpY2U=\r\n");
    assert!(c.reply("a").is_ok());
    // Cancelled, malformed, unknown: the session goes on, still unauthenticated.
    let mut c = Client::connect(server.ports.imap);
    c.send(b"a AUTHENTICATE PLAIN\r\n");
    assert_eq!(c.line(), "+ ");
    c.send(b"*\r\n");
    assert_eq!(c.reply("a").tagged, "BAD Authentication cancelled");
    c.send(b"b AUTHENTICATE PLAIN\r\n");
    assert_eq!(c.line(), "+ ");
    c.send(b"not base64!\r\n");
    assert!(c.reply("b").tagged.starts_with("BAD "));
    assert!(c.only_tagged("AUTHENTICATE PLAIN ***").starts_with("BAD "));
    assert_eq!(
        c.only_tagged("AUTHENTICATE CRAM-MD5"),
        "NO Unsupported authentication mechanism (PLAIN and LOGIN are offered)"
    );
    assert_eq!(
        c.only_tagged("SELECT INBOX"),
        "BAD Command is only valid after login"
    );
    let r = c.call(&format!("AUTHENTICATE PLAIN {plain}"));
    assert!(r.is_ok(), "{r:?}");
}

#[test]
fn enable_id_namespace_and_rev2_mode() {
    let server = started("enable", &["alice"]);
    let mut c = Client::login(server.ports.imap, "alice");
    let id = c.call("ID (\"name\" \"test\" \"version\" NIL)");
    assert_eq!(id.lines, ["* ID (\"name\" \"letterbox\")"]);
    assert_eq!(id.tagged, "OK ID completed");
    assert_eq!(c.ok("NAMESPACE"), ["* NAMESPACE ((\"\" \"/\")) NIL NIL"]);
    assert_eq!(c.ok("ENABLE CONDSTORE"), ["* ENABLED"]);
    assert_eq!(
        c.ok("ENABLE UTF8=ACCEPT IMAP4rev2"),
        ["* ENABLED UTF8=ACCEPT IMAP4rev2"]
    );
    // Enabling again lists nothing new.
    assert_eq!(c.ok("ENABLE IMAP4rev2 utf8=accept"), ["* ENABLED"]);
    assert!(c.only_tagged("ENABLE").starts_with("BAD "));
    // rev2: no RECENT or UNSEEN in SELECT, a LIST reply, ESEARCH.
    c.append("INBOX", "", &simple_message("one", "x"));
    let select = c.select("inbox");
    assert!(!select.iter().any(|l| l.contains("RECENT")), "{select:?}");
    assert!(!select.iter().any(|l| l.contains("UNSEEN")), "{select:?}");
    assert!(select.contains(&"* LIST () \"/\" \"INBOX\"".to_string()));
    let search = c.call("SEARCH ALL");
    assert_eq!(
        search.lines,
        [format!("* ESEARCH (TAG \"t{}\") ALL 1", c.next_tag - 1)]
    );
    // UTF-8 names once enabled.
    c.ok("CREATE \"Entwürfe\"");
    assert!(c
        .ok("LIST \"\" Entw*")
        .contains(&"* LIST (\\HasNoChildren) \"/\" \"Entwürfe\"".to_string()));
    let mut rev1 = Client::login(server.ports.imap, "alice");
    assert!(rev1
        .ok("LIST \"\" Entw*")
        .contains(&"* LIST (\\HasNoChildren) \"/\" \"Entw&APw-rfe\"".to_string()));
    rev1.ok("SELECT Entw&APw-rfe");
    rev1.ok("CREATE &ZeVnLIqe-");
    assert!(c
        .ok("LIST \"\" %")
        .contains(&"* LIST (\\HasNoChildren) \"/\" \"日本語\"".to_string()));
}

fn lines(expected: &[&str]) -> Vec<String> {
    expected.iter().map(|l| l.to_string()).collect()
}

#[test]
fn list_lsub_and_list_extended() {
    let server = started("list", &["alice"]);
    let mut c = Client::login(server.ports.imap, "alice");
    // A first login makes INBOX and the special-use mailboxes.
    assert_eq!(
        c.ok("LIST \"\" *"),
        lines(&[
            "* LIST (\\HasNoChildren \\Archive) \"/\" \"Archive\"",
            "* LIST (\\HasNoChildren \\Drafts) \"/\" \"Drafts\"",
            "* LIST (\\HasNoChildren) \"/\" \"INBOX\"",
            "* LIST (\\HasNoChildren \\Junk) \"/\" \"Junk\"",
            "* LIST (\\HasNoChildren \\Sent) \"/\" \"Sent\"",
            "* LIST (\\HasNoChildren \\Trash) \"/\" \"Trash\"",
        ])
    );
    // The hierarchy delimiter (RFC 9051 §6.3.9).
    assert_eq!(c.ok("LIST \"\" \"\""), ["* LIST (\\Noselect) \"/\" \"\""]);
    c.ok("CREATE Work/Projects/2026");
    // A trailing delimiter declares a parent; it is not part of the name.
    c.ok("CREATE Work/Old/");
    c.ok("CREATE Zeta");
    assert_eq!(
        c.ok("LIST \"\" %").last().unwrap(),
        "* LIST (\\HasNoChildren) \"/\" \"Zeta\""
    );
    assert!(c
        .ok("LIST \"\" %")
        .contains(&"* LIST (\\HasChildren) \"/\" \"Work\"".to_string()));
    let all = c.ok("LIST \"\" Work*");
    assert_eq!(
        all,
        lines(&[
            "* LIST (\\HasChildren) \"/\" \"Work\"",
            "* LIST (\\HasNoChildren) \"/\" \"Work/Old\"",
            "* LIST (\\HasChildren) \"/\" \"Work/Projects\"",
            "* LIST (\\HasNoChildren) \"/\" \"Work/Projects/2026\"",
        ])
    );
    let level = lines(&[
        "* LIST (\\HasNoChildren) \"/\" \"Work/Old\"",
        "* LIST (\\HasChildren) \"/\" \"Work/Projects\"",
    ]);
    assert_eq!(c.ok("LIST \"\" Work/%"), level);
    assert_eq!(c.ok("LIST Work/ %"), level, "reference and pattern join");
    assert_eq!(c.ok("LIST \"Work/\" \"%\""), level);
    assert_eq!(
        c.ok("LIST \"\" */2026"),
        ["* LIST (\\HasNoChildren) \"/\" \"Work/Projects/2026\""]
    );
    assert_eq!(
        c.ok("LIST \"\" %/%/%"),
        ["* LIST (\\HasNoChildren) \"/\" \"Work/Projects/2026\""]
    );
    assert!(c.ok("LIST \"\" nothing*").is_empty());
    // INBOX is case-insensitive, in names and in patterns.
    assert_eq!(
        c.ok("LIST \"\" inbox"),
        ["* LIST (\\HasNoChildren) \"/\" \"INBOX\""]
    );
    assert_eq!(
        c.ok("LIST \"\" InBoX*"),
        ["* LIST (\\HasNoChildren) \"/\" \"INBOX\""]
    );
    // Several patterns (LIST-EXTENDED).
    assert_eq!(
        c.ok("LIST \"\" (INBOX Zeta)"),
        lines(&[
            "* LIST (\\HasNoChildren) \"/\" \"INBOX\"",
            "* LIST (\\HasNoChildren) \"/\" \"Zeta\"",
        ])
    );

    // Selection: SPECIAL-USE.
    assert_eq!(
        c.ok("LIST (SPECIAL-USE) \"\" *"),
        lines(&[
            "* LIST (\\HasNoChildren \\Archive) \"/\" \"Archive\"",
            "* LIST (\\HasNoChildren \\Drafts) \"/\" \"Drafts\"",
            "* LIST (\\HasNoChildren \\Junk) \"/\" \"Junk\"",
            "* LIST (\\HasNoChildren \\Sent) \"/\" \"Sent\"",
            "* LIST (\\HasNoChildren \\Trash) \"/\" \"Trash\"",
        ])
    );
    // Return options: CHILDREN, SUBSCRIBED, SPECIAL-USE and STATUS.
    c.append("INBOX", "", &simple_message("one", "1"));
    c.append("INBOX", "(\\Seen)", &simple_message("two", "2"));
    c.ok("UNSUBSCRIBE Zeta");
    assert_eq!(
        c.ok("LIST \"\" (INBOX Zeta Sent) RETURN (CHILDREN SUBSCRIBED SPECIAL-USE STATUS (MESSAGES UNSEEN))"),
        lines(&[
            "* LIST (\\HasNoChildren \\Subscribed) \"/\" \"INBOX\"",
            "* STATUS \"INBOX\" (MESSAGES 2 UNSEEN 1)",
            "* LIST (\\HasNoChildren \\Subscribed \\Sent) \"/\" \"Sent\"",
            "* STATUS \"Sent\" (MESSAGES 0 UNSEEN 0)",
            "* LIST (\\HasNoChildren) \"/\" \"Zeta\"",
            "* STATUS \"Zeta\" (MESSAGES 0 UNSEEN 0)",
        ])
    );
    assert!(c
        .only_tagged("LIST \"\" * RETURN (BOGUS)")
        .starts_with("BAD "));
    assert!(c.only_tagged("LIST (BOGUS) \"\" *").starts_with("BAD "));
    assert!(c
        .only_tagged("LIST (RECURSIVEMATCH) \"\" *")
        .starts_with("BAD RECURSIVEMATCH needs"));

    // SUBSCRIBE / UNSUBSCRIBE and the SUBSCRIBED selection. New mailboxes
    // start subscribed.
    c.ok("UNSUBSCRIBE Work");
    c.ok("UNSUBSCRIBE Work/Old");
    c.ok("UNSUBSCRIBE Work/Projects/2026");
    assert_eq!(
        c.ok("LIST (SUBSCRIBED) \"\" W*"),
        ["* LIST (\\HasChildren \\Subscribed) \"/\" \"Work/Projects\""]
    );
    // RECURSIVEMATCH: a parent that is not subscribed itself, but has a
    // subscribed child, comes with CHILDINFO (RFC 5258 §3).
    assert_eq!(
        c.ok("LIST (SUBSCRIBED RECURSIVEMATCH) \"\" W%"),
        ["* LIST (\\HasChildren) \"/\" \"Work\" (\"CHILDINFO\" (\"SUBSCRIBED\"))"]
    );
    assert_eq!(
        c.ok("LIST \"\" Work/* RETURN (SUBSCRIBED)"),
        lines(&[
            "* LIST (\\HasNoChildren) \"/\" \"Work/Old\"",
            "* LIST (\\HasChildren \\Subscribed) \"/\" \"Work/Projects\"",
            "* LIST (\\HasNoChildren) \"/\" \"Work/Projects/2026\"",
        ])
    );
    assert_eq!(
        c.only_tagged("SUBSCRIBE Nope"),
        "NO [NONEXISTENT] No such mailbox"
    );
    c.ok("SUBSCRIBE Work/Old");
    // LSUB: '%' stops at an unsubscribed parent of a subscribed mailbox and
    // shows it \Noselect (RFC 3501 §6.3.9); '*' reaches the children.
    assert_eq!(c.ok("LSUB \"\" W%"), ["* LSUB (\\Noselect) \"/\" \"Work\""]);
    assert_eq!(
        c.ok("LSUB \"\" W*"),
        lines(&[
            "* LSUB () \"/\" \"Work/Old\"",
            "* LSUB () \"/\" \"Work/Projects\"",
        ])
    );
    assert_eq!(c.ok("LSUB Work/ %"), c.ok("LSUB \"\" Work/%"));
    assert_eq!(c.ok("LSUB \"\" Zeta"), Vec::<String>::new());
    assert_eq!(c.ok("LSUB \"\" inbox"), ["* LSUB () \"/\" \"INBOX\""]);
}

#[test]
fn create_delete_and_rename_with_children_and_inbox() {
    let server = started("mailboxes", &["alice"]);
    let mut c = Client::login(server.ports.imap, "alice");
    assert_eq!(c.only_tagged("CREATE a/b/c"), "OK CREATE completed");
    // Missing parents are made too.
    assert_eq!(
        c.ok("LIST \"\" a*"),
        lines(&[
            "* LIST (\\HasChildren) \"/\" \"a\"",
            "* LIST (\\HasChildren) \"/\" \"a/b\"",
            "* LIST (\\HasNoChildren) \"/\" \"a/b/c\"",
        ])
    );
    assert_eq!(
        c.only_tagged("CREATE a/b"),
        "NO [ALREADYEXISTS] Mailbox already exists"
    );
    assert_eq!(
        c.only_tagged("CREATE inbox"),
        "NO [ALREADYEXISTS] INBOX always exists"
    );
    for bad in ["a//x", "/lead", "x*", "x%y"] {
        assert!(
            c.only_tagged(&format!("CREATE \"{bad}\""))
                .starts_with("NO [CANNOT]"),
            "{bad}"
        );
    }
    assert!(c.only_tagged("CREATE \"\"").starts_with("BAD "));
    assert!(c.only_tagged("CREATE").starts_with("BAD "));
    // CREATE with a special use (RFC 6154).
    c.ok("CREATE Outbox (USE (\\Sent))");
    assert_eq!(
        c.ok("LIST \"\" Outbox"),
        ["* LIST (\\HasNoChildren \\Sent) \"/\" \"Outbox\""]
    );
    assert!(c
        .only_tagged("CREATE Odd (USE (\\Flagged))")
        .starts_with("NO [USEATTR]"));
    // A mailbox created with a child inside INBOX.
    c.ok("CREATE INBOX/Child");

    // DELETE.
    assert_eq!(
        c.only_tagged("DELETE a/b"),
        "NO [HASCHILDREN] Mailbox has children; delete or move them first"
    );
    assert_eq!(
        c.only_tagged("DELETE nope"),
        "NO [NONEXISTENT] No such mailbox"
    );
    assert!(c.only_tagged("DELETE INBOX").starts_with("NO "));
    c.append("a/b/c", "", &simple_message("kept", "x"));
    assert_eq!(c.only_tagged("DELETE a/b/c"), "OK DELETE completed");
    assert_eq!(
        c.only_tagged("STATUS a/b/c (MESSAGES)"),
        "NO [NONEXISTENT] No such mailbox"
    );
    // Its name can be made again, with a new UIDVALIDITY and no messages.
    c.ok("CREATE a/b/c");
    assert_eq!(
        c.ok("STATUS a/b/c (MESSAGES UIDNEXT)"),
        ["* STATUS \"a/b/c\" (MESSAGES 0 UIDNEXT 1)"]
    );

    // RENAME takes the children along, and keeps UIDVALIDITY and messages.
    c.append("a/b/c", "", &simple_message("moved", "x"));
    let before = c.ok("STATUS a/b/c (MESSAGES UIDNEXT UIDVALIDITY)");
    assert_eq!(c.only_tagged("RENAME a z"), "OK RENAME completed");
    assert!(c.ok("LIST \"\" a*").is_empty());
    assert_eq!(
        c.ok("LIST \"\" z*"),
        lines(&[
            "* LIST (\\HasChildren) \"/\" \"z\"",
            "* LIST (\\HasChildren) \"/\" \"z/b\"",
            "* LIST (\\HasNoChildren) \"/\" \"z/b/c\"",
        ])
    );
    let after = c.ok("STATUS z/b/c (MESSAGES UIDNEXT UIDVALIDITY)");
    assert_eq!(after[0].replace("z/b/c", "a/b/c"), before[0]);
    assert_eq!(
        c.only_tagged("RENAME z Sent"),
        "NO [ALREADYEXISTS] Mailbox already exists"
    );
    assert!(c
        .only_tagged("RENAME z z/inside")
        .starts_with("NO [CANNOT]"));
    assert_eq!(
        c.only_tagged("RENAME nope other"),
        "NO [NONEXISTENT] No such mailbox"
    );
    // RENAME to a deeper name.
    c.ok("RENAME z/b/c Deep/er/c");
    assert_eq!(
        c.ok("STATUS Deep/er/c (MESSAGES)"),
        ["* STATUS \"Deep/er/c\" (MESSAGES 1)"]
    );

    // Renaming INBOX moves its messages to the new name and leaves INBOX
    // empty; its children stay where they are (RFC 9051 §6.3.6).
    c.append("INBOX", "", &simple_message("in1", "x"));
    c.append("INBOX", "(\\Seen)", &simple_message("in2", "x"));
    let inbox_next = c.ok("STATUS INBOX (UIDNEXT)");
    assert_eq!(
        c.only_tagged("RENAME INBOX Old-Inbox"),
        "OK RENAME completed"
    );
    assert_eq!(
        c.ok("STATUS Old-Inbox (MESSAGES UNSEEN)"),
        ["* STATUS \"Old-Inbox\" (MESSAGES 2 UNSEEN 1)"]
    );
    assert_eq!(
        c.ok("STATUS INBOX (MESSAGES)"),
        ["* STATUS \"INBOX\" (MESSAGES 0)"]
    );
    assert_eq!(
        c.ok("STATUS INBOX (UIDNEXT)"),
        inbox_next,
        "UIDs are never reused"
    );
    assert_eq!(
        c.ok("LIST \"\" INBOX*"),
        lines(&[
            "* LIST (\\HasChildren) \"/\" \"INBOX\"",
            "* LIST (\\HasNoChildren) \"/\" \"INBOX/Child\"",
        ])
    );
    let mut selected = c.select("Old-Inbox");
    selected.retain(|l| l.contains("EXISTS"));
    assert_eq!(selected, ["* 2 EXISTS"]);
}

#[test]
fn status_items_follow_the_mailbox() {
    let server = started("status", &["alice"]);
    let mut c = Client::login(server.ports.imap, "alice");
    let one = simple_message("one", "first");
    let two = simple_message("two", "second message");
    c.append("INBOX", "", &one);
    c.append("INBOX", "(\\Seen \\Deleted)", &two);
    let validity = appenduid(&{
        let r = c.call("APPEND INBOX (\\Seen) {1+}\r\nx");
        r.tagged
    })
    .0;
    let status = c.ok("STATUS INBOX (MESSAGES UIDNEXT UIDVALIDITY UNSEEN DELETED SIZE)");
    assert_eq!(
        status,
        [format!(
            "* STATUS \"INBOX\" (MESSAGES 3 UIDNEXT 4 UIDVALIDITY {validity} UNSEEN 1 DELETED 1 SIZE {})",
            one.len() + two.len() + 1
        )]
    );
    assert_eq!(
        c.ok("status inbox (recent appendlimit)"),
        ["* STATUS \"INBOX\" (RECENT 0 APPENDLIMIT 52428800)"]
    );
    assert!(c.only_tagged("STATUS INBOX ()").starts_with("BAD "));
    assert!(c.only_tagged("STATUS INBOX (BOGUS)").starts_with("BAD "));
    assert!(c.only_tagged("STATUS INBOX").starts_with("BAD "));
    assert_eq!(
        c.only_tagged("STATUS Nope (MESSAGES)"),
        "NO [NONEXISTENT] No such mailbox"
    );
    // STATUS works on the selected mailbox too, and follows EXPUNGE.
    c.select("INBOX");
    let expunge = c.call("EXPUNGE");
    assert_eq!(expunge.lines, ["* 2 EXPUNGE"]);
    assert_eq!(
        c.ok("STATUS INBOX (MESSAGES UIDNEXT DELETED SIZE)"),
        [format!(
            "* STATUS \"INBOX\" (MESSAGES 2 UIDNEXT 4 DELETED 0 SIZE {})",
            one.len() + 1
        )]
    );
}

#[test]
fn select_and_examine_responses_and_close_versus_unselect() {
    let server = started("select", &["alice"]);
    let mut c = Client::login(server.ports.imap, "alice");
    let validity = appenduid(&c.call("APPEND INBOX (\\Seen $Work) {1+}\r\na").tagged).0;
    c.append("INBOX", "", &simple_message("unseen", "x"));
    c.append("INBOX", "(\\Deleted)", &simple_message("deleted", "x"));
    let select = c.call("SELECT INBOX");
    assert_eq!(
        select.lines,
        lines(&[
            "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Work)",
            "* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft \\*)] Flags permitted",
            "* 3 EXISTS",
            "* 0 RECENT",
            "* OK [UNSEEN 2] First unseen",
            &format!("* OK [UIDVALIDITY {validity}] UIDs valid"),
            "* OK [UIDNEXT 4] Predicted next UID",
        ])
    );
    assert_eq!(select.tagged, "OK [READ-WRITE] SELECT completed");

    // EXAMINE: read-only; a body fetch does not set \Seen; CLOSE expunges nothing.
    let examine = c.call("EXAMINE INBOX");
    assert_eq!(examine.lines[0], "* OK [CLOSED] Previous mailbox closed");
    assert_eq!(
        examine.lines[2],
        "* OK [PERMANENTFLAGS ()] Read-only mailbox"
    );
    assert_eq!(examine.tagged, "OK [READ-ONLY] EXAMINE completed");
    let body = c.call("FETCH 2 BODY[TEXT]");
    assert_eq!(body.lines, ["* 2 FETCH (BODY[TEXT] {3}\r\nx\r\n)"]);
    assert_eq!(
        c.only_tagged("STORE 2 +FLAGS (\\Seen)"),
        "NO [READ-ONLY] Mailbox is read-only"
    );
    assert_eq!(
        c.only_tagged("EXPUNGE"),
        "NO [READ-ONLY] Mailbox is read-only"
    );
    assert_eq!(
        c.only_tagged("UID EXPUNGE 3"),
        "NO [READ-ONLY] Mailbox is read-only"
    );
    assert_eq!(
        c.only_tagged("MOVE 1 Trash"),
        "NO [READ-ONLY] Mailbox is read-only"
    );
    assert!(c.only_tagged("COPY 1 Trash").starts_with("OK [COPYUID "));
    assert_eq!(c.only_tagged("CLOSE"), "OK CLOSE completed");
    assert_eq!(
        c.ok("STATUS INBOX (MESSAGES UNSEEN)"),
        ["* STATUS \"INBOX\" (MESSAGES 3 UNSEEN 2)"]
    );

    // A failed SELECT leaves no mailbox selected.
    c.select("INBOX");
    let failed = c.call("SELECT Nope");
    assert_eq!(failed.lines, ["* OK [CLOSED] Previous mailbox closed"]);
    assert_eq!(failed.tagged, "NO [NONEXISTENT] No such mailbox");
    assert_eq!(
        c.only_tagged("FETCH 1 FLAGS"),
        "BAD Command is only valid with a mailbox selected"
    );

    // UNSELECT leaves \Deleted messages; CLOSE expunges them, silently.
    c.select("INBOX");
    assert_eq!(c.only_tagged("UNSELECT"), "OK UNSELECT completed");
    assert_eq!(
        c.ok("STATUS INBOX (MESSAGES)"),
        ["* STATUS \"INBOX\" (MESSAGES 3)"]
    );
    c.select("INBOX");
    c.ok("STORE 1 +FLAGS.SILENT (\\Deleted)");
    assert_eq!(c.only_tagged("CLOSE"), "OK CLOSE completed");
    assert_eq!(
        c.ok("STATUS INBOX (MESSAGES DELETED UIDNEXT)"),
        ["* STATUS \"INBOX\" (MESSAGES 1 DELETED 0 UIDNEXT 4)"]
    );
    let again = c.select("INBOX");
    assert!(again.contains(&"* 1 EXISTS".to_string()), "{again:?}");
    assert!(again.contains(&"* OK [UNSEEN 1] First unseen".to_string()));
}

#[test]
fn append_with_flags_dates_literals_and_appenduid() {
    let server = started("append", &["alice"]);
    let mut c = Client::login(server.ports.imap, "alice");
    let message = simple_message("appended", "hello");
    // Synchronizing literal, with flags and a date.
    c.send(
        format!(
            "a1 APPEND INBOX (\\Seen \\Flagged $Label1) \" 7-Feb-2024 09:05:00 -0800\" {{{}}}\r\n",
            message.len()
        )
        .as_bytes(),
    );
    assert_eq!(c.line(), "+ Ready for literal data");
    c.send(&message);
    c.send(b"\r\n");
    let (validity, uid) = appenduid(&c.reply("a1").tagged);
    assert_eq!(uid, 1);
    // LITERAL+: no continuation request.
    c.send(b"a2 APPEND INBOX {5+}\r\nworld\r\n");
    let reply = c.reply("a2");
    assert!(reply.lines.is_empty(), "{reply:?}");
    assert_eq!(appenduid(&reply.tagged), (validity, 2));
    assert_eq!(
        reply.tagged,
        format!("OK [APPENDUID {validity} 2] APPEND completed")
    );
    // Only flags; only a date (date-day-fixed as two digits).
    c.send(b"a3 APPEND INBOX () {1+}\r\n3\r\n");
    assert!(c.reply("a3").is_ok());
    c.send(b"a4 APPEND INBOX \"29-Feb-2024 23:59:59 +0000\" {1+}\r\n4\r\n");
    assert!(c.reply("a4").is_ok());
    // A binary literal (RFC 3516) may hold NUL.
    c.send(b"a5 APPEND INBOX ~{8+}\r\nx\r\n\r\na\0b\r\n");
    assert!(c.reply("a5").is_ok());

    c.select("INBOX");
    let fetched = c.ok("FETCH 1:* (UID FLAGS INTERNALDATE RFC822.SIZE)");
    assert_eq!(fetched[0], format!(
        "* 1 FETCH (UID 1 FLAGS (\\Flagged \\Seen $Label1) INTERNALDATE \"07-Feb-2024 09:05:00 -0800\" RFC822.SIZE {})",
        message.len()
    ));
    assert!(
        fetched[1].starts_with("* 2 FETCH (UID 2 FLAGS () INTERNALDATE \""),
        "{}",
        fetched[1]
    );
    assert!(
        fetched[1].ends_with(" +0000\" RFC822.SIZE 5)"),
        "{}",
        fetched[1]
    );
    assert_eq!(
        fetched[3],
        "* 4 FETCH (UID 4 FLAGS () INTERNALDATE \"29-Feb-2024 23:59:59 +0000\" RFC822.SIZE 1)"
    );
    assert_eq!(
        c.ok("FETCH 1 BODY.PEEK[]"),
        [format!(
            "* 1 FETCH (BODY[] {{{}}}\r\n{})",
            message.len(),
            lossy(&message)
        )]
    );
    assert_eq!(
        c.ok("FETCH 5 BINARY.PEEK[]"),
        ["* 5 FETCH (BINARY[] ~{8}\r\nx\r\n\r\na\0b)"]
    );
    // The keyword is now one of the mailbox's FLAGS.
    assert!(c
        .select("INBOX")
        .contains(&"* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Label1)".to_string()));

    // APPEND to the selected mailbox: the session hears of the new message.
    c.send(b"a6 APPEND INBOX {1+}\r\n6\r\n");
    let reply = c.reply("a6");
    assert_eq!(reply.lines, ["* 6 EXISTS"]);
    assert_eq!(appenduid(&reply.tagged), (validity, 6));

    // Refusals.
    c.send(b"b1 APPEND Nope {1+}\r\nx\r\n");
    assert_eq!(c.reply("b1").tagged, "NO [TRYCREATE] No such mailbox");
    c.send(b"b2 APPEND INBOX {0+}\r\n\r\n");
    assert_eq!(c.reply("b2").tagged, "NO Cannot store an empty message");
    c.send(b"b3 APPEND INBOX \"30-Feb-2024 00:00:00 +0000\" {1+}\r\nx\r\n");
    assert!(c.reply("b3").tagged.starts_with("BAD invalid date-time"));
    c.send(b"b4 APPEND INBOX (\\Recent) {1+}\r\nx\r\n");
    assert_eq!(
        c.reply("b4").tagged,
        "BAD \\Recent cannot be set by a client"
    );
    c.send(b"b5 APPEND INBOX (\\Bogus) {1+}\r\nx\r\n");
    assert!(c.reply("b5").tagged.starts_with("BAD "));
    c.send(b"b6 APPEND INBOX {3+}\r\na\0b\r\n");
    assert!(c.reply("b6").tagged.starts_with("BAD literal contains NUL"));
    c.send(b"b7 APPEND INBOX\r\n");
    assert!(c.reply("b7").tagged.starts_with("BAD "));
    // Nothing was stored by the refusals.
    assert_eq!(c.ok("NOOP"), Vec::<String>::new());
    assert_eq!(
        c.ok("STATUS INBOX (MESSAGES UIDNEXT)"),
        ["* STATUS \"INBOX\" (MESSAGES 6 UIDNEXT 7)"]
    );
}
