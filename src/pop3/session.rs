//! The POP3 state machine (RFC 1939, with RFC 2449 CAPA and response codes,
//! RFC 2595 STLS and RFC 5034 SASL), with no I/O. It takes command lines and
//! returns what to send or what the shell must do: check a password, fetch a
//! message, commit deletions.

use crate::auth::sasl;

/// Longer lines are refused. RFC 2449 allows 255 octets for a command, but a
/// SASL response carries base64 credentials.
pub const MAX_LINE: usize = 2048;
/// After this many failed logins the connection is closed.
pub const MAX_AUTH_FAILURES: u32 = 3;

/// A message as the maildrop lists it, fixed at login.
#[derive(Clone, Debug)]
pub struct Entry {
    pub uid: u32,
    pub size: u64,
    pub blob: u64,
    pub deleted: bool,
    pub retrieved: bool,
}

/// What the shell does next.
#[derive(Debug, PartialEq, Eq)]
pub enum Action {
    Reply(Vec<u8>),
    /// Send the reply, then run the TLS handshake.
    StartTls(Vec<u8>),
    /// Check these credentials and report with [`Session::login_failed`] or
    /// by loading the maildrop and calling [`Session::logged_in`].
    CheckPassword {
        user: String,
        password: Vec<u8>,
    },
    /// Send message `index` (0-based): the whole of it, or the headers and
    /// this many body lines.
    SendMessage {
        index: usize,
        body_lines: Option<usize>,
    },
    /// Apply the deletions (UPDATE state), then close with [`Session::updated`].
    Update,
    /// Send the reply and close.
    Close(Vec<u8>),
}

enum State {
    Authorization {
        user: Option<String>,
        sasl: Option<Sasl>,
    },
    Transaction {
        user: String,
        uid_validity: u32,
        messages: Vec<Entry>,
    },
}

enum Sasl {
    Plain,
    LoginUser,
    LoginPassword(String),
}

pub struct Session {
    state: State,
    /// May passwords be sent on this connection (TLS, loopback, or allowed)?
    plaintext_ok: bool,
    /// Is STLS possible (a plain connection with TLS configured)?
    stls_ok: bool,
    failures: u32,
    unknown_in_a_row: u32,
}

/// Every command this server knows, in any state.
const VERBS: [&str; 15] = [
    "CAPA", "QUIT", "USER", "PASS", "AUTH", "STLS", "APOP", "STAT", "LIST", "RETR", "DELE", "NOOP",
    "RSET", "TOP", "UIDL",
];
/// Unknown commands in a row before the connection is closed, as Dovecot
/// does: such a client is not speaking POP3 (a web form posted at the port,
/// say), and answering it forever only helps cross-protocol tricks.
pub const MAX_UNKNOWN_IN_A_ROW: u32 = 20;

impl Session {
    pub fn new(plaintext_ok: bool, stls_ok: bool) -> Session {
        Session {
            state: State::Authorization {
                user: None,
                sasl: None,
            },
            plaintext_ok,
            stls_ok,
            failures: 0,
            unknown_in_a_row: 0,
        }
    }

    pub fn greeting(hostname: &str) -> Vec<u8> {
        format!("+OK {hostname} POP3 letterbox ready\r\n").into_bytes()
    }

    /// After STLS: passwords are now fine, and STLS is used up.
    pub fn tls_started(&mut self) {
        self.plaintext_ok = true;
        self.stls_ok = false;
    }

    pub fn user(&self) -> Option<&str> {
        match &self.state {
            State::Transaction { user, .. } => Some(user),
            State::Authorization { .. } => None,
        }
    }

    pub fn messages(&self) -> &[Entry] {
        match &self.state {
            State::Transaction { messages, .. } => messages,
            State::Authorization { .. } => &[],
        }
    }

    pub fn line_too_long(&self) -> Vec<u8> {
        format!("-ERR Line too long (limit {MAX_LINE} bytes)\r\n").into_bytes()
    }

    pub fn command(&mut self, line: &[u8]) -> Action {
        if let State::Authorization { sasl: Some(_), .. } = &self.state {
            return self.sasl_step(line);
        }
        let text = std::str::from_utf8(line)
            .ok()
            .filter(|_| !line.contains(&0));
        let verb = text
            .and_then(|t| t.split(' ').next())
            .unwrap_or("")
            .to_ascii_uppercase();
        if VERBS.contains(&verb.as_str()) {
            self.unknown_in_a_row = 0;
        } else {
            self.unknown_in_a_row += 1;
            if self.unknown_in_a_row >= MAX_UNKNOWN_IN_A_ROW {
                return Action::Close(
                    b"-ERR Too many unknown commands, closing connection\r\n".to_vec(),
                );
            }
        }
        if line.contains(&0) {
            return err("Invalid command: NUL byte");
        }
        let Some(line) = text else {
            return err("Invalid command: not UTF-8");
        };
        let args: Vec<&str> = line.split(' ').skip(1).collect();
        if verb == "CAPA" {
            return self.capa();
        }
        if verb == "QUIT" {
            return match &self.state {
                State::Authorization { .. } => Action::Close(b"+OK Bye\r\n".to_vec()),
                State::Transaction { .. } => Action::Update,
            };
        }
        match &mut self.state {
            State::Authorization { .. } => self.authorization(&verb, &args),
            State::Transaction { .. } => self.transaction(&verb, &args),
        }
    }

    fn capa(&self) -> Action {
        let mut text = String::from("+OK Capability list follows\r\nTOP\r\nUIDL\r\nRESP-CODES\r\nPIPELINING\r\nAUTH-RESP-CODE\r\n");
        if let State::Authorization { .. } = self.state {
            if self.plaintext_ok {
                text.push_str("USER\r\nSASL PLAIN LOGIN\r\n");
            }
            if self.stls_ok {
                text.push_str("STLS\r\n");
            }
        }
        text.push_str("IMPLEMENTATION letterbox\r\n.\r\n");
        Action::Reply(text.into_bytes())
    }

    fn refuse_plaintext(&self) -> Option<Action> {
        (!self.plaintext_ok).then(|| {
            err("[AUTH] Plaintext authentication is not allowed on an unencrypted connection; use STLS or port 995")
        })
    }

    fn authorization(&mut self, verb: &str, args: &[&str]) -> Action {
        match verb {
            "USER" => {
                if let Some(refused) = self.refuse_plaintext() {
                    return refused;
                }
                let [name] = args else {
                    return err("Syntax: USER name");
                };
                if name.is_empty() || name.len() > 256 {
                    return err("Syntax: USER name");
                }
                self.state = State::Authorization {
                    user: Some(name.to_string()),
                    sasl: None,
                };
                ok("Send PASS")
            }
            "PASS" => {
                if let Some(refused) = self.refuse_plaintext() {
                    return refused;
                }
                let State::Authorization { user, .. } = &mut self.state else {
                    return err("Already logged in");
                };
                let Some(user) = user.take() else {
                    return err("Send USER first");
                };
                // The password is the rest of the line: it may contain spaces.
                let password = args.join(" ").into_bytes();
                Action::CheckPassword { user, password }
            }
            "AUTH" => self.auth(args),
            "STLS" => {
                if !self.stls_ok {
                    return err("STLS is not available (TLS is already active or not configured)");
                }
                Action::StartTls(b"+OK Begin TLS negotiation\r\n".to_vec())
            }
            "APOP" => err("APOP is not supported; use USER/PASS or AUTH over TLS"),
            "STAT" | "LIST" | "RETR" | "DELE" | "NOOP" | "RSET" | "TOP" | "UIDL" => {
                err("Not logged in")
            }
            _ => err("Unknown command"),
        }
    }

    fn auth(&mut self, args: &[&str]) -> Action {
        if args.is_empty() {
            // The RFC 1734 mechanism list that older clients probe for.
            return Action::Reply(b"+OK Mechanisms follow\r\nPLAIN\r\nLOGIN\r\n.\r\n".to_vec());
        }
        if let Some(refused) = self.refuse_plaintext() {
            return refused;
        }
        let mechanism = args[0].to_ascii_uppercase();
        let initial = args.get(1).copied();
        if args.len() > 2 {
            return err("Syntax: AUTH mechanism [initial-response]");
        }
        match (mechanism.as_str(), initial) {
            ("PLAIN", None) => self.begin_sasl(Sasl::Plain, "+ \r\n"),
            ("PLAIN", Some(ir)) => match sasl::decode_initial_response(ir) {
                Ok(bytes) => self.plain(&bytes),
                Err(e) => self.sasl_error(e),
            },
            ("LOGIN", None) => self.begin_sasl(
                Sasl::LoginUser,
                &format!("+ {}\r\n", sasl::LOGIN_USERNAME_CHALLENGE),
            ),
            ("LOGIN", Some(ir)) => {
                match sasl::decode_initial_response(ir).and_then(|b| sasl::login_username(&b)) {
                    Ok(user) => self.begin_sasl(
                        Sasl::LoginPassword(user),
                        &format!("+ {}\r\n", sasl::LOGIN_PASSWORD_CHALLENGE),
                    ),
                    Err(e) => self.sasl_error(e),
                }
            }
            _ => err("Unsupported authentication mechanism (PLAIN and LOGIN are offered)"),
        }
    }

    fn begin_sasl(&mut self, step: Sasl, challenge: &str) -> Action {
        self.state = State::Authorization {
            user: None,
            sasl: Some(step),
        };
        Action::Reply(challenge.as_bytes().to_vec())
    }

    fn sasl_step(&mut self, line: &[u8]) -> Action {
        let State::Authorization { sasl: step, .. } = &mut self.state else {
            return err("Not authenticating");
        };
        let Some(step) = step.take() else {
            return err("Not authenticating");
        };
        let decoded = std::str::from_utf8(line)
            .map_err(|_| sasl::SaslError::BadBase64)
            .and_then(sasl::decode_response);
        let bytes = match decoded {
            Ok(bytes) => bytes,
            Err(e) => return self.sasl_error(e),
        };
        match step {
            Sasl::Plain => self.plain(&bytes),
            Sasl::LoginUser => match sasl::login_username(&bytes) {
                Ok(user) => self.begin_sasl(
                    Sasl::LoginPassword(user),
                    &format!("+ {}\r\n", sasl::LOGIN_PASSWORD_CHALLENGE),
                ),
                Err(e) => self.sasl_error(e),
            },
            Sasl::LoginPassword(user) => match sasl::login_password(&bytes) {
                Ok(password) => Action::CheckPassword { user, password },
                Err(e) => self.sasl_error(e),
            },
        }
    }

    fn plain(&mut self, bytes: &[u8]) -> Action {
        match sasl::parse_plain(bytes) {
            Ok(creds) => Action::CheckPassword {
                user: creds.username,
                password: creds.password,
            },
            Err(e) => self.sasl_error(e),
        }
    }

    fn sasl_error(&mut self, e: sasl::SaslError) -> Action {
        self.state = State::Authorization {
            user: None,
            sasl: None,
        };
        match e {
            sasl::SaslError::Cancelled => err("Authentication cancelled"),
            other => err(&format!("[AUTH] Bad authentication exchange: {other}")),
        }
    }

    /// The password was wrong (or the user unknown).
    pub fn login_failed(&mut self) -> Action {
        self.failures += 1;
        self.state = State::Authorization {
            user: None,
            sasl: None,
        };
        if self.failures >= MAX_AUTH_FAILURES {
            return Action::Close(
                b"-ERR [AUTH] Authentication failed; too many attempts, closing\r\n".to_vec(),
            );
        }
        err("[AUTH] Authentication failed")
    }

    /// The user is authenticated and holds the maildrop: enter TRANSACTION.
    pub fn logged_in(&mut self, user: String, uid_validity: u32, messages: Vec<Entry>) -> Action {
        let count = messages.len();
        let size: u64 = messages.iter().map(|m| m.size).sum();
        self.state = State::Transaction {
            user,
            uid_validity,
            messages,
        };
        ok(&format!("Logged in, {count} messages ({size} octets)"))
    }

    /// Authenticated, but another session holds the maildrop.
    pub fn maildrop_busy(&mut self) -> Action {
        Action::Close(b"-ERR [IN-USE] Mailbox is locked by another POP3 session\r\n".to_vec())
    }

    fn transaction(&mut self, verb: &str, args: &[&str]) -> Action {
        let State::Transaction {
            messages,
            uid_validity,
            ..
        } = &mut self.state
        else {
            return err("Not logged in");
        };
        let uid_validity = *uid_validity;
        match verb {
            "STAT" => {
                if !args.is_empty() {
                    return err("Syntax: STAT");
                }
                let live = messages.iter().filter(|m| !m.deleted);
                let (count, size) = live.fold((0, 0u64), |(c, s), m| (c + 1, s + m.size));
                Action::Reply(format!("+OK {count} {size}\r\n").into_bytes())
            }
            "LIST" | "UIDL" => {
                let line = |i: usize, m: &Entry| {
                    if verb == "LIST" {
                        format!("{} {}", i + 1, m.size)
                    } else {
                        format!("{} {}", i + 1, unique_id(m.uid, uid_validity))
                    }
                };
                match args {
                    [] => {
                        let mut text = String::from("+OK\r\n");
                        for (i, m) in messages.iter().enumerate().filter(|(_, m)| !m.deleted) {
                            text.push_str(&line(i, m));
                            text.push_str("\r\n");
                        }
                        text.push_str(".\r\n");
                        Action::Reply(text.into_bytes())
                    }
                    [n] => match find(messages, n) {
                        Ok(i) => {
                            Action::Reply(format!("+OK {}\r\n", line(i, &messages[i])).into_bytes())
                        }
                        Err(e) => e,
                    },
                    _ => err(&format!("Syntax: {verb} [message]")),
                }
            }
            "RETR" => match args {
                [n] => match find(messages, n) {
                    Ok(index) => Action::SendMessage {
                        index,
                        body_lines: None,
                    },
                    Err(e) => e,
                },
                _ => err("Syntax: RETR message"),
            },
            "TOP" => match args {
                [n, lines] => match (find(messages, n), number(lines, "number of lines")) {
                    (Ok(index), Ok(lines)) => Action::SendMessage {
                        index,
                        body_lines: Some(lines as usize),
                    },
                    (Err(e), _) | (_, Err(e)) => e,
                },
                _ => err("Syntax: TOP message lines"),
            },
            "DELE" => match args {
                [n] => match find(messages, n) {
                    Ok(i) => {
                        messages[i].deleted = true;
                        ok(&format!("Message {} deleted", i + 1))
                    }
                    Err(e) => e,
                },
                _ => err("Syntax: DELE message"),
            },
            "NOOP" if args.is_empty() => ok(""),
            "RSET" if args.is_empty() => {
                messages.iter_mut().for_each(|m| m.deleted = false);
                let count = messages.len();
                let size: u64 = messages.iter().map(|m| m.size).sum();
                ok(&format!("{count} messages ({size} octets)"))
            }
            "NOOP" | "RSET" => err(&format!("Syntax: {verb}")),
            "USER" | "PASS" | "AUTH" | "APOP" => err("Already logged in"),
            "STLS" => err("STLS is only allowed before login"),
            _ => err("Unknown command"),
        }
    }

    /// The message was sent; RETR (not TOP) marks it read at QUIT.
    pub fn message_sent(&mut self, index: usize, whole: bool) {
        if let State::Transaction { messages, .. } = &mut self.state {
            if let Some(m) = messages.get_mut(index) {
                m.retrieved |= whole;
            }
        }
    }

    /// UPDATE finished: `Ok(count)` messages removed, or the store failed.
    pub fn updated(&self, outcome: Result<usize, String>) -> Action {
        match outcome {
            Ok(n) => Action::Close(format!("+OK Bye ({n} messages deleted)\r\n").into_bytes()),
            Err(e) => Action::Close(
                format!("-ERR [SYS/TEMP] Could not apply the deletions ({e}); they stay for next time\r\n").into_bytes(),
            ),
        }
    }
}

/// The whole UIDL value for a message: UID and UIDVALIDITY in hex, the form
/// Dovecot uses by default (`%08Xu%08Xv`), so the same message has the same
/// UIDL here as under Dovecot's IMAP numbering.
pub fn unique_id(uid: u32, uid_validity: u32) -> String {
    format!("{uid:08X}{uid_validity:08X}")
}

/// One rule for every number a client sends: digits only (no sign, no
/// space), and at most 32 bits; anything larger is refused as too large,
/// never wrapped, capped or read as "all".
fn number(arg: &str, what: &str) -> Result<u32, Action> {
    if arg.is_empty() || !arg.bytes().all(|b| b.is_ascii_digit()) {
        return Err(err(&format!("Syntax: the {what} must be a number")));
    }
    arg.parse().map_err(|_| {
        err(&format!(
            "The {what} is too large (the limit is {})",
            u32::MAX
        ))
    })
}

fn find(messages: &[Entry], arg: &str) -> Result<usize, Action> {
    let n = number(arg, "message number")? as usize;
    if n == 0 || n > messages.len() {
        return Err(err(&format!("No such message {arg}")));
    }
    if messages[n - 1].deleted {
        return Err(err(&format!("Message {n} is already deleted")));
    }
    Ok(n - 1)
}

fn ok(text: &str) -> Action {
    if text.is_empty() {
        return Action::Reply(b"+OK\r\n".to_vec());
    }
    Action::Reply(format!("+OK {text}\r\n").into_bytes())
}

fn err(text: &str) -> Action {
    Action::Reply(format!("-ERR {text}\r\n").into_bytes())
}

/// The bytes RETR or TOP sends after "+OK": CRLF line ends however the
/// message was stored, no NUL bytes (clients choke on them; they become
/// '?'), dot-stuffing, an empty line after headers even for a message
/// without a body, and the final ".". The whole message at once; the server
/// streams it through [`Renderer`] instead.
pub fn render_message(raw: &[u8], body_lines: Option<usize>) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len() + raw.len() / 40 + 8);
    let mut renderer = Renderer::new(body_lines);
    renderer.feed(raw, &mut out);
    renderer.finish(&mut out);
    out
}

/// [`render_message`] for a message that arrives in pieces, split anywhere:
/// a line, a CR LF pair or a dot may straddle two pieces. Holds a few
/// flags, never a line.
pub struct Renderer {
    body_lines: Option<usize>,
    in_body: bool,
    body_sent: usize,
    /// The next byte starts a line.
    line_start: bool,
    /// The current line has bytes other than its line end.
    line_has_text: bool,
    /// A CR was seen and not yet sent: it is dropped if LF follows.
    pending_cr: bool,
    /// TOP has sent its lines; the rest is ignored.
    stopped: bool,
}

impl Renderer {
    pub fn new(body_lines: Option<usize>) -> Renderer {
        Renderer {
            body_lines,
            in_body: false,
            body_sent: 0,
            line_start: true,
            line_has_text: false,
            pending_cr: false,
            stopped: false,
        }
    }

    /// True once nothing more of the message will be sent (TOP's count is
    /// reached): the reader can stop reading.
    pub fn is_done(&self) -> bool {
        self.stopped
    }

    /// Renders the next piece of the message into `out`.
    pub fn feed(&mut self, mut input: &[u8], out: &mut Vec<u8>) {
        while !input.is_empty() && !self.stopped {
            if self.line_start {
                if self.in_body {
                    if self.body_lines.is_some_and(|max| self.body_sent >= max) {
                        self.stopped = true;
                        return;
                    }
                    self.body_sent += 1;
                }
                self.line_start = false;
                self.line_has_text = false;
                if input[0] == b'.' {
                    out.push(b'.');
                }
            }
            // A run of plain bytes goes out in one copy.
            let run = input
                .iter()
                .position(|&b| matches!(b, b'\r' | b'\n' | 0))
                .unwrap_or(input.len());
            if run > 0 {
                self.send_pending_cr(out);
                out.extend_from_slice(&input[..run]);
                self.line_has_text = true;
                input = &input[run..];
                continue;
            }
            match input[0] {
                b'\n' => {
                    // A CR just before the LF belongs to the line end.
                    self.pending_cr = false;
                    self.end_line(out);
                }
                b'\r' => {
                    self.send_pending_cr(out);
                    self.pending_cr = true;
                }
                _ => {
                    self.send_pending_cr(out);
                    out.push(b'?');
                    self.line_has_text = true;
                }
            }
            input = &input[1..];
        }
    }

    fn send_pending_cr(&mut self, out: &mut Vec<u8>) {
        if self.pending_cr {
            out.push(b'\r');
            self.pending_cr = false;
            self.line_has_text = true;
        }
    }

    fn end_line(&mut self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"\r\n");
        if !self.in_body && !self.line_has_text {
            self.in_body = true;
        }
        self.line_start = true;
    }

    /// Ends the message: its last line, the blank line a message without a
    /// body lacks, and the final ".".
    pub fn finish(mut self, out: &mut Vec<u8>) {
        if !self.stopped && !self.line_start {
            // A last line without a line end; a CR at its very end is
            // taken as a line end, as in a whole-message read.
            self.pending_cr = false;
            self.end_line(out);
        }
        if !self.in_body {
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b".\r\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(a: Action) -> String {
        match a {
            Action::Reply(r) | Action::Close(r) | Action::StartTls(r) => {
                String::from_utf8(r).unwrap()
            }
            other => format!("{other:?}"),
        }
    }

    fn logged_in() -> Session {
        let mut s = Session::new(true, false);
        let entries = (1..=3)
            .map(|uid| Entry {
                uid,
                size: 100 * u64::from(uid),
                blob: uid.into(),
                deleted: false,
                retrieved: false,
            })
            .collect();
        s.logged_in("alice".into(), 0x5f00_0001, entries);
        s
    }

    #[test]
    fn user_pass_and_capa_follow_the_connection() {
        let mut plain = Session::new(false, true);
        let capa = text(plain.command(b"CAPA"));
        assert!(capa.contains("STLS\r\n") && !capa.contains("USER\r\n"));
        assert!(text(plain.command(b"USER alice")).starts_with("-ERR [AUTH]"));
        assert!(text(plain.command(b"AUTH PLAIN AGFsaWNlAHNlY3JldA==")).starts_with("-ERR [AUTH]"));
        plain.tls_started();
        let capa = text(plain.command(b"CAPA"));
        assert!(
            capa.contains("USER\r\n")
                && capa.contains("SASL PLAIN LOGIN")
                && !capa.contains("STLS")
        );
        assert!(text(plain.command(b"PASS x")).starts_with("-ERR Send USER"));
        assert!(text(plain.command(b"USER alice")).starts_with("+OK"));
        assert_eq!(
            plain.command(b"PASS pass word"),
            Action::CheckPassword {
                user: "alice".into(),
                password: b"pass word".to_vec()
            }
        );
    }

    #[test]
    fn sasl_plain_and_login() {
        let mut s = Session::new(true, false);
        assert_eq!(
            s.command(b"AUTH PLAIN AGFsaWNlAHNlY3JldA=="),
            Action::CheckPassword {
                user: "alice".into(),
                password: b"secret".to_vec()
            }
        );
        assert_eq!(text(s.command(b"AUTH PLAIN")), "+ \r\n");
        assert!(text(s.command(b"*")).starts_with("-ERR Authentication cancelled"));
        assert!(text(s.command(b"AUTH LOGIN")).starts_with("+ VXNlcm5hbWU6"));
        assert!(text(s.command(b"YWxpY2U=")).starts_with("+ UGFzc3dvcmQ6"));
        assert_eq!(
            s.command(b"c2VjcmV0"),
            Action::CheckPassword {
                user: "alice".into(),
                password: b"secret".to_vec()
            }
        );
        assert!(text(s.command(b"AUTH PLAIN !!!")).starts_with("-ERR [AUTH]"));
        assert!(text(s.command(b"AUTH CRAM-MD5")).starts_with("-ERR Unsupported"));
    }

    #[test]
    fn failures_close_the_connection() {
        let mut s = Session::new(true, false);
        assert!(text(s.login_failed()).starts_with("-ERR [AUTH]"));
        s.login_failed();
        assert!(matches!(s.login_failed(), Action::Close(_)));
    }

    #[test]
    fn twenty_unknown_commands_in_a_row_close_the_connection() {
        let mut s = Session::new(true, false);
        for _ in 0..3 {
            for line in [&b"GET / HTTP/1.1"[..], b"Host: x", b"\0", b"\xff"].repeat(5)[..19].iter()
            {
                assert!(text(s.command(line)).starts_with("-ERR"));
            }
            // A command it knows, even refused, starts the count again.
            assert!(text(s.command(b"STAT")).starts_with("-ERR Not logged in"));
        }
        for _ in 0..19 {
            s.command(b"FROB");
        }
        assert_eq!(
            s.command(b"FROB"),
            Action::Close(b"-ERR Too many unknown commands, closing connection\r\n".to_vec())
        );
    }

    #[test]
    fn wrong_state_commands() {
        let mut s = Session::new(true, false);
        for cmd in [
            "STAT", "LIST", "RETR 1", "DELE 1", "NOOP", "RSET", "TOP 1 1", "UIDL",
        ] {
            assert!(
                text(s.command(cmd.as_bytes())).starts_with("-ERR Not logged in"),
                "{cmd}"
            );
        }
        let mut s = logged_in();
        for cmd in ["USER a", "PASS b", "AUTH PLAIN x", "STLS"] {
            assert!(text(s.command(cmd.as_bytes())).starts_with("-ERR"), "{cmd}");
        }
    }

    #[test]
    fn transaction_commands() {
        let mut s = logged_in();
        assert_eq!(text(s.command(b"STAT")), "+OK 3 600\r\n");
        assert_eq!(
            text(s.command(b"LIST")),
            "+OK\r\n1 100\r\n2 200\r\n3 300\r\n.\r\n"
        );
        assert_eq!(text(s.command(b"LIST 2")), "+OK 2 200\r\n");
        assert_eq!(text(s.command(b"UIDL 3")), "+OK 3 000000035F000001\r\n");
        for bad in [
            "RETR 0",
            "RETR 99999",
            "LIST garbage",
            "RETR",
            "TOP 1",
            "TOP 1 x",
            "LIST 1 2",
            "RETR -1",
        ] {
            assert!(text(s.command(bad.as_bytes())).starts_with("-ERR"), "{bad}");
        }
        assert!(text(s.command(b"DELE 2")).starts_with("+OK"));
        assert!(text(s.command(b"DELE 2")).contains("already deleted"));
        assert!(text(s.command(b"RETR 2")).contains("already deleted"));
        assert_eq!(text(s.command(b"STAT")), "+OK 2 400\r\n");
        assert_eq!(text(s.command(b"LIST")), "+OK\r\n1 100\r\n3 300\r\n.\r\n");
        assert_eq!(
            s.command(b"RETR 3"),
            Action::SendMessage {
                index: 2,
                body_lines: None
            }
        );
        assert_eq!(
            s.command(b"TOP 1 0"),
            Action::SendMessage {
                index: 0,
                body_lines: Some(0)
            }
        );
        assert!(text(s.command(b"RSET")).starts_with("+OK 3 messages"));
        assert_eq!(text(s.command(b"STAT")), "+OK 3 600\r\n");
        assert_eq!(s.command(b"QUIT"), Action::Update);
    }

    #[test]
    fn numbers_follow_one_rule() {
        let mut s = logged_in();
        for (command, want) in [
            (
                "RETR +1",
                "-ERR Syntax: the message number must be a number\r\n",
            ),
            (
                "LIST +2",
                "-ERR Syntax: the message number must be a number\r\n",
            ),
            (
                "TOP 1 +3",
                "-ERR Syntax: the number of lines must be a number\r\n",
            ),
            (
                "TOP 1 4294967296",
                "-ERR The number of lines is too large (the limit is 4294967295)\r\n",
            ),
            (
                "TOP 1 12345678901234567890123",
                "-ERR The number of lines is too large (the limit is 4294967295)\r\n",
            ),
            (
                "DELE 4294967296",
                "-ERR The message number is too large (the limit is 4294967295)\r\n",
            ),
            ("RETR 4294967295", "-ERR No such message 4294967295\r\n"),
        ] {
            assert_eq!(text(s.command(command.as_bytes())), want, "{command}");
        }
        assert_eq!(
            s.command(b"TOP 01 4294967295"),
            Action::SendMessage {
                index: 0,
                body_lines: Some(4294967295)
            }
        );
    }

    #[test]
    fn rendering() {
        let raw = b"Subject: x\n\n.dot\r\nline2\nline3\0\r\n";
        assert_eq!(
            render_message(raw, None),
            b"Subject: x\r\n\r\n..dot\r\nline2\r\nline3?\r\n.\r\n".to_vec()
        );
        assert_eq!(
            render_message(raw, Some(1)),
            b"Subject: x\r\n\r\n..dot\r\n.\r\n".to_vec()
        );
        assert_eq!(
            render_message(raw, Some(0)),
            b"Subject: x\r\n\r\n.\r\n".to_vec()
        );
        assert_eq!(
            render_message(b"Subject: no body\r\n", Some(5)),
            b"Subject: no body\r\n\r\n.\r\n".to_vec()
        );
        assert_eq!(render_message(b"", None), b"\r\n.\r\n".to_vec());
    }

    /// The old whole-message renderer, kept here as the reference the
    /// streaming one must match.
    fn reference(raw: &[u8], body_lines: Option<usize>) -> Vec<u8> {
        let mut out = Vec::new();
        let mut in_body = false;
        let mut body_sent = 0usize;
        for line in raw.split_inclusive(|&b| b == b'\n') {
            let text = line.strip_suffix(b"\n").unwrap_or(line);
            let text = text.strip_suffix(b"\r").unwrap_or(text);
            if in_body {
                if body_lines.is_some_and(|max| body_sent >= max) {
                    break;
                }
                body_sent += 1;
            }
            if text.first() == Some(&b'.') {
                out.push(b'.');
            }
            out.extend(text.iter().map(|&b| if b == 0 { b'?' } else { b }));
            out.extend_from_slice(b"\r\n");
            if !in_body && text.is_empty() {
                in_body = true;
            }
        }
        if !in_body {
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b".\r\n");
        out
    }

    #[test]
    fn streaming_matches_whole_wherever_split() {
        let samples: [&[u8]; 6] = [
            b"Subject: x\n\n.dot\r\nline2\nline3\0\r\n",
            b"A: b\r\n\r\n.\r\n..\r\n\r.x\r\r\nend\r",
            b"no body\r",
            b"\r\n\r\n.\n.",
            b"H: 1\r\n\r\n\r\n\r\r\n\n\0\0.\r\n.end",
            b"",
        ];
        for raw in samples {
            for lines in [None, Some(0), Some(1), Some(2), Some(5)] {
                let want = reference(raw, lines);
                assert_eq!(render_message(raw, lines), want, "{raw:?} {lines:?}");
                for a in 0..=raw.len() {
                    for b in a..=raw.len() {
                        let mut r = Renderer::new(lines);
                        let mut out = Vec::new();
                        r.feed(&raw[..a], &mut out);
                        r.feed(&raw[a..b], &mut out);
                        r.feed(&raw[b..], &mut out);
                        r.finish(&mut out);
                        assert_eq!(out, want, "{raw:?} {lines:?} split {a} {b}");
                    }
                }
            }
        }
    }
}
