//! The LMTP protocol state machine (RFC 2033 over RFC 5321's commands), with
//! no I/O: it takes command lines and returns reply bytes and what to do
//! next. The shell in `lmtp/mod.rs` does the reading, writing and storing.

use crate::store::{Delivered, DeliveryTarget, StoreError};

/// More recipients than this in one transaction get 452, which tells the
/// MTA to send the rest in another transaction (RFC 5321 §4.5.3.1.10).
pub const MAX_RECIPIENTS: usize = 1000;
/// RFC 5321 allows 512 for a command line; extensions make them longer.
pub const MAX_COMMAND_LINE: usize = 4096;
/// Addresses longer than RFC 5321's path limit are refused as syntax errors.
const MAX_PATH: usize = 256;

/// What the shell does after a command.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    Reply(Vec<u8>),
    /// Send the reply (354), then read the message data.
    ReadData(Vec<u8>),
    /// Send the reply and close the connection.
    Close(Vec<u8>),
    /// BDAT (RFC 3030): read the next `size` bytes into the message; after
    /// the `last` one, store it and send [`Session::delivered`]'s replies,
    /// else send [`Session::chunk_received`]'s.
    ReadChunk {
        size: u64,
        last: bool,
    },
    /// BDAT that is refused: its `size` bytes still follow the command, so
    /// read them and throw them away, then send the reply.
    SkipChunk {
        size: u64,
        reply: Vec<u8>,
    },
}

/// An accepted recipient: what the client wrote, and where it delivers.
#[derive(Clone, Debug)]
struct Recipient {
    address: String,
    target: DeliveryTarget,
}

/// The message to store once the data is read.
pub struct Delivery {
    pub return_path: String,
    pub targets: Vec<DeliveryTarget>,
}

pub struct Session {
    hostname: String,
    max_message_size: usize,
    greeted: Option<String>,
    mail_from: Option<String>,
    /// MAIL FROM carried SMTPUTF8 (RFC 6531): addresses may be UTF-8, and
    /// the message's header too.
    smtputf8: bool,
    recipients: Vec<Recipient>,
    quota_bounce: bool,
    /// Bytes taken by BDAT in this transaction; `Some` from the first BDAT
    /// on, which rules out DATA until the transaction ends.
    chunked: Option<u64>,
    /// What the last command did that an administrator should find in the
    /// log; the shell logs it with the connection's name.
    note: Option<String>,
}

impl Session {
    pub fn new(hostname: &str, max_message_size: usize) -> Session {
        Session {
            hostname: hostname.to_string(),
            max_message_size,
            greeted: None,
            mail_from: None,
            smtputf8: false,
            recipients: Vec::new(),
            quota_bounce: false,
            chunked: None,
            note: None,
        }
    }

    /// The log line the last command left, if any (addresses and sizes,
    /// never message content).
    pub fn take_note(&mut self) -> Option<String> {
        self.note.take()
    }

    pub fn greeting(&self) -> Vec<u8> {
        format!("220 {} LMTP letterbox ready\r\n", self.hostname).into_bytes()
    }

    /// The name the client gave in LHLO, for the Received header.
    pub fn client_name(&self) -> &str {
        self.greeted.as_deref().unwrap_or("unknown")
    }

    pub fn line_too_long(&self) -> Vec<u8> {
        format!("500 5.5.2 Line too long (limit {MAX_COMMAND_LINE} bytes)\r\n").into_bytes()
    }

    /// A command line that ended in LF without CR (it is not obeyed). A
    /// BDAT so ended still has its chunk behind it, which must not be read
    /// as commands: that connection closes.
    pub fn bare_lf(&self, line: &[u8]) -> Next {
        const REPLY: &[u8] =
            b"500 5.5.2 Bare LF line ending: end each command with CRLF (RFC 5321 section 2.3.8)\r\n";
        if line
            .get(..4)
            .is_some_and(|verb| verb.eq_ignore_ascii_case(b"BDAT"))
        {
            Next::Close(REPLY.to_vec())
        } else {
            Next::Reply(REPLY.to_vec())
        }
    }

    pub fn timeout(&self) -> Vec<u8> {
        format!(
            "421 4.4.2 {} Idle timeout, closing connection\r\n",
            self.hostname
        )
        .into_bytes()
    }

    /// The protocol for the Received header's WITH clause: RFC 6531 §4.3
    /// registers UTF8LMTP for a transaction that used SMTPUTF8.
    pub fn protocol_name(&self) -> &'static str {
        if self.smtputf8 {
            "UTF8LMTP"
        } else {
            "LMTP"
        }
    }

    fn reset(&mut self) {
        self.mail_from = None;
        self.smtputf8 = false;
        self.recipients.clear();
        self.chunked = None;
    }

    /// Handles one command line (without its CRLF). `resolve` maps a local
    /// part or address to a known user's canonical name.
    pub fn command(&mut self, line: &[u8], resolve: &dyn Fn(&str) -> Option<String>) -> Next {
        if line.contains(&0) {
            return reply("500 5.5.2 Syntax error: NUL byte in command");
        }
        let Ok(line) = std::str::from_utf8(line) else {
            return reply("500 5.5.2 Syntax error: command is not valid UTF-8");
        };
        let (verb, args) = match line.find(' ') {
            Some(i) => (&line[..i], line[i + 1..].trim_start()),
            None => (line, ""),
        };
        match verb.to_ascii_uppercase().as_str() {
            "LHLO" => self.lhlo(args),
            "HELO" | "EHLO" => reply("500 5.5.1 This is an LMTP server: use LHLO (RFC 2033)"),
            "MAIL" => self.mail(args),
            "RCPT" => self.rcpt(args, resolve),
            "DATA" => self.data(args),
            "BDAT" => self.bdat(args),
            "RSET" => {
                self.reset();
                reply("250 2.0.0 Ok")
            }
            "NOOP" => reply("250 2.0.0 Ok"),
            "VRFY" => reply("252 2.5.2 Cannot VRFY, but will accept the message and try delivery"),
            "QUIT" => Next::Close(
                format!("221 2.0.0 {} closing connection\r\n", self.hostname).into_bytes(),
            ),
            "HELP" => reply("214 2.0.0 Commands: LHLO MAIL RCPT DATA BDAT RSET NOOP VRFY QUIT"),
            "STARTTLS" | "AUTH" | "ETRN" | "EXPN" | "TURN" => {
                reply("502 5.5.1 Command not implemented")
            }
            _ => reply("500 5.5.2 Unknown command"),
        }
    }

    fn lhlo(&mut self, args: &str) -> Next {
        if args.is_empty() || args.contains(char::is_whitespace) {
            return reply("501 5.5.4 Syntax: LHLO hostname");
        }
        self.reset();
        self.greeted = Some(args.chars().take(64).collect());
        let text = format!(
            "250-{}\r\n250-PIPELINING\r\n250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250-CHUNKING\r\n250 SIZE {}\r\n",
            self.hostname, self.max_message_size
        );
        Next::Reply(text.into_bytes())
    }

    fn mail(&mut self, args: &str) -> Next {
        if self.greeted.is_none() {
            return reply("503 5.5.1 Send LHLO first");
        }
        if self.mail_from.is_some() {
            return reply("503 5.5.1 Nested MAIL command");
        }
        let Some(rest) = strip_prefix_ci(args, "FROM:") else {
            return reply("501 5.5.4 Syntax: MAIL FROM:<address>");
        };
        let Some((path, params)) = parse_path(rest.trim_start()) else {
            return reply("501 5.1.7 Bad sender address syntax");
        };
        let mut smtputf8 = false;
        for param in params.split_ascii_whitespace() {
            let (key, value) = param.split_once('=').unwrap_or((param, ""));
            match key.to_ascii_uppercase().as_str() {
                "SMTPUTF8" if !param.contains('=') => smtputf8 = true,
                "SMTPUTF8" => return reply("501 5.5.4 SMTPUTF8 takes no value"),
                "SIZE" => match value.parse::<u64>() {
                    Ok(n) if n > self.max_message_size as u64 => {
                        self.note = Some(format!(
                            "refused MAIL FROM:<{path}> with SIZE={n}: over the limit of {} bytes (552)",
                            self.max_message_size
                        ));
                        return reply(&format!(
                            "552 5.3.4 Message too big for this server (limit {} bytes)",
                            self.max_message_size
                        ));
                    }
                    Ok(_) => {}
                    Err(_) => return reply("501 5.5.4 Bad SIZE parameter"),
                },
                "BODY"
                    if value.eq_ignore_ascii_case("7BIT")
                        || value.eq_ignore_ascii_case("8BITMIME") => {}
                _ => return reply("555 5.5.4 Unsupported MAIL parameter"),
            }
        }
        if !smtputf8 && !path.is_ascii() {
            return reply(NEEDS_SMTPUTF8);
        }
        self.mail_from = Some(path);
        self.smtputf8 = smtputf8;
        reply("250 2.1.0 Ok")
    }

    fn rcpt(&mut self, args: &str, resolve: &dyn Fn(&str) -> Option<String>) -> Next {
        if self.mail_from.is_none() {
            return reply("503 5.5.1 Need MAIL before RCPT");
        }
        let Some(rest) = strip_prefix_ci(args, "TO:") else {
            return reply("501 5.5.4 Syntax: RCPT TO:<address>");
        };
        let Some((address, params)) = parse_path(rest.trim_start()) else {
            return reply("501 5.1.3 Bad recipient address syntax");
        };
        if !params.trim().is_empty() {
            return reply("555 5.5.4 Unsupported RCPT parameter");
        }
        if address.is_empty() {
            return reply("501 5.1.3 Bad recipient address syntax: empty address");
        }
        if !self.smtputf8 && !address.is_ascii() {
            return reply(NEEDS_SMTPUTF8);
        }
        if self.recipients.len() >= MAX_RECIPIENTS {
            return reply(
                "452 4.5.3 Too many recipients in one transaction; send the rest in another",
            );
        }
        match find_user(&address, resolve) {
            Some(target) => {
                self.recipients.push(Recipient { address, target });
                reply("250 2.1.5 Ok")
            }
            None => {
                self.note = Some(format!("refused RCPT TO:<{address}>: no such user (550)"));
                reply(&format!("550 5.1.1 <{address}>: no such user here"))
            }
        }
    }

    fn data(&mut self, args: &str) -> Next {
        if !args.is_empty() {
            return reply("501 5.5.4 Syntax: DATA takes no arguments");
        }
        if self.mail_from.is_none() {
            return reply("503 5.5.1 Need MAIL before DATA");
        }
        if self.recipients.is_empty() {
            return reply("503 5.5.1 No valid recipients");
        }
        if self.chunked.is_some() {
            // RFC 3030 §2: one transaction sends its message with DATA or
            // with BDAT, never both.
            return reply("503 5.5.1 DATA after BDAT in one transaction; send RSET first");
        }
        Next::ReadData(b"354 Start mail input; end with <CRLF>.<CRLF>\r\n".to_vec())
    }

    /// `BDAT chunk-size [LAST]` (RFC 3030 §2). The chunk's bytes follow the
    /// command whatever the reply, so a refusal still reads them (and a
    /// size that cannot be read leaves no way to find the next command:
    /// the connection closes). A refused chunk ends the transaction, as the
    /// client must then send no more chunks of it.
    fn bdat(&mut self, args: &str) -> Next {
        let mut words = args.split(' ');
        let digits = words.next().unwrap_or("");
        let last = words.next().map(|w| w.eq_ignore_ascii_case("LAST"));
        let size = (!digits.is_empty()
            && digits.len() <= 19
            && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse::<u64>().ok())
        .flatten();
        let (Some(size), None | Some(true), None) = (size, last, words.next()) else {
            return Next::Close(
                b"501 5.5.4 Syntax: BDAT chunk-size [LAST]; the chunk's end is unknown, closing\r\n"
                    .to_vec(),
            );
        };
        let last = last.is_some();
        let skip = |reply: &str| Next::SkipChunk {
            size,
            reply: format!("{reply}\r\n").into_bytes(),
        };
        if self.mail_from.is_none() {
            return skip("503 5.5.1 Need MAIL before BDAT");
        }
        if self.recipients.is_empty() {
            return skip("503 5.5.1 No valid recipients");
        }
        let total = self.chunked.unwrap_or(0).saturating_add(size);
        if total > self.max_message_size as u64 {
            self.note = Some(format!(
                "refused BDAT chunks of {total} bytes in all: over the limit of {} bytes (552)",
                self.max_message_size
            ));
            let text = format!("message too big (limit {} bytes)", self.max_message_size);
            return Next::SkipChunk {
                size,
                reply: self.chunk_refused(last, "552 5.3.4", &text),
            };
        }
        self.chunked = Some(total);
        Next::ReadChunk { size, last }
    }

    /// True while a BDAT transaction is under way: the shell keeps its
    /// spool only as long as this holds.
    pub fn chunking(&self) -> bool {
        self.chunked.is_some()
    }

    /// Refuses a BDAT chunk, which ends the transaction. After the LAST
    /// chunk an LMTP client waits for one reply per recipient (RFC 2033
    /// §4.2), so it gets that many; after any other chunk, one.
    pub fn chunk_refused(&mut self, last: bool, status: &str, text: &str) -> Vec<u8> {
        let mut out = Vec::new();
        if last && !self.recipients.is_empty() {
            for r in &self.recipients {
                out.extend_from_slice(format!("{status} <{}> {text}\r\n", r.address).as_bytes());
            }
        } else {
            out.extend_from_slice(format!("{status} {text}\r\n").as_bytes());
        }
        self.reset();
        out
    }

    /// A BDAT chunk that is not the last was read into the message.
    pub fn chunk_received(&self, size: u64) -> Vec<u8> {
        format!("250 2.0.0 {size} octets received\r\n").into_bytes()
    }

    /// The data has been read: what to store.
    pub fn delivery(&self) -> Delivery {
        Delivery {
            return_path: self.mail_from.clone().unwrap_or_default(),
            targets: self.recipients.iter().map(|r| r.target.clone()).collect(),
        }
    }

    /// A full mailbox gets a permanent 552 5.2.2 (`--quota-full bounce`)
    /// instead of the temporary 452 4.2.2.
    pub fn bounce_when_full(&mut self, bounce: bool) {
        self.quota_bounce = bounce;
    }

    /// One reply per recipient after storing (or failing to), RFC 2033 §4.2:
    /// the store's outcome for each recipient, or one failure for all. The
    /// transaction ends either way.
    /// Recipients accepted in this transaction.
    pub fn recipient_count(&self) -> usize {
        self.recipients.len()
    }

    pub fn delivered(
        &mut self,
        outcome: &Result<Vec<Result<Delivered, StoreError>>, StoreError>,
    ) -> Vec<u8> {
        let mut out = Vec::new();
        for (i, r) in self.recipients.iter().enumerate() {
            let each = match outcome {
                Ok(done) => done.get(i).map(|d| d.as_ref()),
                Err(e) => Some(Err(e)),
            };
            let line = match each {
                Some(Ok(d)) => format!(
                    "250 2.0.0 <{}> delivered to {} as UID {}\r\n",
                    r.address, d.mailbox_name, d.uid
                ),
                None => format!("451 4.3.0 <{}> not stored; try again later\r\n", r.address),
                // RFC 3463: 4.2.2 and 5.2.2 are "mailbox full".
                Some(Err(StoreError::OverQuota(why))) if self.quota_bounce => {
                    format!("552 5.2.2 <{}> {why}\r\n", r.address)
                }
                Some(Err(StoreError::OverQuota(why))) => {
                    format!("452 4.2.2 <{}> {why}; try again later\r\n", r.address)
                }
                Some(Err(StoreError::LowOnSpace)) => format!(
                    "452 4.3.1 <{}> mail store's disk is nearly full; try again later\r\n",
                    r.address
                ),
                Some(Err(_)) => format!(
                    "451 4.3.0 <{}> temporary storage failure; try again later\r\n",
                    r.address
                ),
            };
            out.extend_from_slice(line.as_bytes());
        }
        self.reset();
        out
    }

    /// DATA waited too long for memory to receive the message in: a
    /// temporary refusal of the whole transaction (RFC 3463 4.3.1), which
    /// the MTA retries later.
    pub fn short_of_memory(&mut self) -> Vec<u8> {
        self.reset();
        b"452 4.3.1 Insufficient system resources to receive the message now; try again later\r\n"
            .to_vec()
    }

    /// The store's disk is down to its free-space reserve: a temporary
    /// refusal of the whole transaction before the body is sent.
    pub fn short_of_space(&mut self) -> Vec<u8> {
        self.reset();
        b"452 4.3.1 Insufficient system storage: the mail store's disk is nearly full; try again later\r\n"
            .to_vec()
    }

    /// The data went past the size limit: every recipient is refused.
    pub fn too_big(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        for r in &self.recipients {
            out.extend_from_slice(
                format!(
                    "552 5.3.4 <{}> message too big (limit {} bytes)\r\n",
                    r.address, self.max_message_size
                )
                .as_bytes(),
            );
        }
        self.reset();
        out
    }
}

/// A UTF-8 address in a transaction that did not announce it: refused as
/// Postfix refuses it, since the sender then may not know the message needs
/// an SMTPUTF8-capable path (RFC 6531 §3.2).
const NEEDS_SMTPUTF8: &str =
    "553 5.6.7 Non-ASCII address: give the SMTPUTF8 parameter on MAIL FROM (RFC 6531)";

fn reply(text: &str) -> Next {
    Next::Reply(format!("{text}\r\n").into_bytes())
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

/// Parses `<address> params`: returns the address (without brackets, source
/// route dropped) and the parameter text. Quoted local parts are allowed.
fn parse_path(s: &str) -> Option<(String, &str)> {
    let rest = s.strip_prefix('<')?;
    let mut in_quotes = false;
    let mut escaped = false;
    let mut end = None;
    for (i, c) in rest.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if in_quotes => escaped = true,
            '"' => in_quotes = !in_quotes,
            '>' if !in_quotes => {
                end = Some(i);
                break;
            }
            _ => {}
        }
    }
    let end = end?;
    let mut address = &rest[..end];
    let params = &rest[end + 1..];
    if !params.is_empty() && !params.starts_with(' ') {
        return None;
    }
    // "<@relay1,@relay2:user@host>": the source route is obsolete and ignored.
    if address.starts_with('@') {
        address = &address[address.find(':')? + 1..];
    }
    if address.len() > MAX_PATH
        || address
            .chars()
            .any(|c| c.is_control() || c == ' ' && !address.starts_with('"'))
    {
        return None;
    }
    if !address.is_empty() {
        let (local, domain) = address.rsplit_once('@').unwrap_or((address, ""));
        if local.is_empty() || address.contains('@') && domain.is_empty() {
            return None;
        }
    }
    Some((address.to_string(), params))
}

/// Maps an address to a user and an optional folder. Tries, in order, the
/// whole address and its local part, then the same with a `+detail` removed
/// (the detail names the folder to deliver into).
fn find_user(address: &str, resolve: &dyn Fn(&str) -> Option<String>) -> Option<DeliveryTarget> {
    let (local, domain) = match address.rsplit_once('@') {
        Some((l, d)) => (l.trim_matches('"'), Some(d)),
        None => (address.trim_matches('"'), None),
    };
    let full = |l: &str| domain.map(|d| format!("{l}@{d}"));
    let plain = |l: &str| full(l).and_then(|a| resolve(&a)).or_else(|| resolve(l));
    if let Some(user) = plain(local) {
        return Some(DeliveryTarget { user, folder: None });
    }
    let (base, detail) = local.split_once('+')?;
    let user = plain(base)?;
    Some(DeliveryTarget {
        user,
        folder: (!detail.is_empty()).then(|| detail.to_string()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn users(name: &str) -> Option<String> {
        let name = name.to_ascii_lowercase();
        ["alice", "bob@example.org"]
            .contains(&name.as_str())
            .then_some(name)
    }

    fn run(s: &mut Session, line: &str) -> String {
        match s.command(line.as_bytes(), &users) {
            Next::Reply(r) | Next::ReadData(r) | Next::Close(r) => String::from_utf8(r).unwrap(),
            Next::SkipChunk { reply, .. } => format!("skip: {}", String::from_utf8(reply).unwrap()),
            Next::ReadChunk { size, last } => format!("read {size} last={last}"),
        }
    }

    #[test]
    fn a_whole_transaction() {
        let mut s = Session::new("mx.test", 1000);
        assert!(run(&mut s, "MAIL FROM:<a@b>").starts_with("503"));
        assert!(run(&mut s, "LHLO client").contains("250 SIZE 1000"));
        assert!(run(&mut s, "RCPT TO:<alice@x>").starts_with("503"));
        assert_eq!(
            run(&mut s, "MAIL FROM:<> BODY=8BITMIME"),
            "250 2.1.0 Ok\r\n"
        );
        assert!(run(&mut s, "MAIL FROM:<a@b>").starts_with("503 5.5.1 Nested"));
        assert!(run(&mut s, "DATA").starts_with("503 5.5.1 No valid"));
        assert_eq!(run(&mut s, "RCPT TO:<Alice@x.org>"), "250 2.1.5 Ok\r\n");
        assert_eq!(s.take_note(), None);
        assert!(run(&mut s, "RCPT TO:<carol@x.org>").starts_with("550 5.1.1 <carol@x.org>"));
        assert_eq!(
            s.take_note().as_deref(),
            Some("refused RCPT TO:<carol@x.org>: no such user (550)")
        );
        assert_eq!(s.take_note(), None);
        assert_eq!(
            run(&mut s, "rcpt to:<alice+Lists@x.org>"),
            "250 2.1.5 Ok\r\n"
        );
        assert_eq!(run(&mut s, "RCPT TO:<bob@example.org>"), "250 2.1.5 Ok\r\n");
        assert!(run(&mut s, "DATA").starts_with("354"));
        let d = s.delivery();
        let got: Vec<_> = d
            .targets
            .iter()
            .map(|t| (t.user.as_str(), t.folder.as_deref()))
            .collect();
        assert_eq!(
            got,
            [
                ("alice", None),
                ("alice", Some("Lists")),
                ("bob@example.org", None)
            ]
        );
        let done = Ok(vec![
            Ok(Delivered {
                mailbox: 1,
                mailbox_name: "INBOX".into(),
                uid: 5,
            }),
            Ok(Delivered {
                mailbox: 2,
                mailbox_name: "Lists".into(),
                uid: 1,
            }),
            Err(StoreError::OverQuota("Mailbox full".into())),
        ]);
        let replies = String::from_utf8(s.delivered(&done)).unwrap();
        assert_eq!(replies.lines().count(), 3);
        assert!(replies.starts_with("250 2.0.0 <Alice@x.org> delivered to INBOX as UID 5"));
        assert!(replies.contains("\r\n452 4.2.2 <bob@example.org> Mailbox full"));
        assert!(
            run(&mut s, "DATA").starts_with("503"),
            "the transaction is over"
        );
    }

    #[test]
    fn size_limits_and_failures() {
        let mut s = Session::new("h", 100);
        run(&mut s, "LHLO c");
        assert!(run(&mut s, "MAIL FROM:<a@b> SIZE=101").starts_with("552 5.3.4"));
        assert_eq!(
            s.take_note().as_deref(),
            Some("refused MAIL FROM:<a@b> with SIZE=101: over the limit of 100 bytes (552)")
        );
        assert!(run(&mut s, "MAIL FROM:<a@b> SIZE=x").starts_with("501"));
        assert!(run(&mut s, "MAIL FROM:<a@b> FOO=1").starts_with("555"));
        run(&mut s, "MAIL FROM:<a@b> SIZE=50");
        run(&mut s, "RCPT TO:<alice>");
        assert!(String::from_utf8(s.too_big())
            .unwrap()
            .starts_with("552 5.3.4 <alice>"));
        run(&mut s, "MAIL FROM:<a@b>");
        run(&mut s, "RCPT TO:<alice>");
        let failed = s.delivered(&Err(StoreError::Closed));
        assert!(String::from_utf8(failed).unwrap().starts_with("451 4.3.0"));
        run(&mut s, "MAIL FROM:<a@b>");
        run(&mut s, "RCPT TO:<alice>");
        let full = s.delivered(&Err(StoreError::LowOnSpace));
        assert!(String::from_utf8(full)
            .unwrap()
            .starts_with("452 4.3.1 <alice>"));
        run(&mut s, "MAIL FROM:<a@b>");
        run(&mut s, "RCPT TO:<alice>");
        assert!(String::from_utf8(s.short_of_space())
            .unwrap()
            .starts_with("452 4.3.1"));
        assert!(
            run(&mut s, "DATA").starts_with("503"),
            "the transaction is over"
        );
    }

    #[test]
    fn bad_input_gets_clear_errors() {
        let mut s = Session::new("h", 100);
        assert!(run(&mut s, "HELO x").starts_with("500 5.5.1"));
        assert!(run(&mut s, "LHLO").starts_with("501"));
        run(&mut s, "LHLO c");
        assert!(
            s.command(b"NOOP\0", &users) == reply("500 5.5.2 Syntax error: NUL byte in command")
        );
        assert!(
            matches!(s.command(b"MAIL FROM:<\xff>", &users), Next::Reply(r) if r.starts_with(b"500"))
        );
        run(&mut s, "MAIL FROM:<a@b>");
        for bad in [
            "RCPT TO:alice",
            "RCPT TO:<alice",
            "RCPT TO:<>",
            "RCPT TO:<@>",
            "RCPT TO:<a@>",
            "RCPT TO:<a b@c>",
            "RCPT TO:<alice>x",
        ] {
            assert!(run(&mut s, bad).starts_with("501"), "{bad}");
        }
        for _ in 0..MAX_RECIPIENTS {
            run(&mut s, "RCPT TO:<alice>");
        }
        assert!(run(&mut s, "RCPT TO:<alice>").starts_with("452 4.5.3"));
        assert!(run(&mut s, "FROB").starts_with("500 5.5.2"));
        assert!(matches!(s.command(b"QUIT", &users), Next::Close(_)));
    }

    #[test]
    fn utf8_addresses_need_smtputf8() {
        let utf8_users = |name: &str| (name.to_lowercase() == "jörg").then(|| "jörg".to_string());
        let mut s = Session::new("h", 100);
        let run = |s: &mut Session, line: &str| match s.command(line.as_bytes(), &utf8_users) {
            Next::Reply(r) | Next::ReadData(r) | Next::Close(r) => String::from_utf8(r).unwrap(),
            Next::SkipChunk { reply, .. } => format!("skip: {}", String::from_utf8(reply).unwrap()),
            Next::ReadChunk { size, last } => format!("read {size} last={last}"),
        };
        assert!(run(&mut s, "LHLO c").contains("250-SMTPUTF8\r\n"));
        assert!(run(&mut s, "MAIL FROM:<müller@example.org>").starts_with("553 5.6.7"));
        assert_eq!(run(&mut s, "MAIL FROM:<a@b>"), "250 2.1.0 Ok\r\n");
        assert_eq!(s.protocol_name(), "LMTP");
        assert!(run(&mut s, "RCPT TO:<jörg@example.org>").starts_with("553 5.6.7"));
        run(&mut s, "RSET");
        assert!(run(&mut s, "MAIL FROM:<a@b> SMTPUTF8=yes").starts_with("501"));
        assert_eq!(
            run(
                &mut s,
                "MAIL FROM:<müller@exämple.org> BODY=8BITMIME SMTPUTF8"
            ),
            "250 2.1.0 Ok\r\n"
        );
        assert_eq!(s.protocol_name(), "UTF8LMTP");
        assert_eq!(
            run(&mut s, "RCPT TO:<JÖRG@exämple.org>"),
            "250 2.1.5 Ok\r\n"
        );
        assert!(run(&mut s, "RCPT TO:<zoë@example.org>").starts_with("550 5.1.1"));
        run(&mut s, "RSET");
        assert_eq!(s.protocol_name(), "LMTP", "SMTPUTF8 lasts one transaction");
    }

    #[test]
    fn bdat_chunks_limits_and_mixing_with_data() {
        let mut s = Session::new("h", 100);
        assert!(run(&mut s, "LHLO c").contains("250-CHUNKING\r\n"));
        assert_eq!(
            run(&mut s, "BDAT 5"),
            "skip: 503 5.5.1 Need MAIL before BDAT\r\n"
        );
        run(&mut s, "MAIL FROM:<a@b>");
        assert_eq!(
            run(&mut s, "BDAT 5 LAST"),
            "skip: 503 5.5.1 No valid recipients\r\n"
        );
        run(&mut s, "RCPT TO:<alice>");
        run(&mut s, "RCPT TO:<bob@example.org>");
        assert_eq!(run(&mut s, "BDAT 60"), "read 60 last=false");
        assert!(s.chunking());
        assert!(run(&mut s, "DATA").starts_with("503 5.5.1 DATA after BDAT"));
        assert_eq!(run(&mut s, "bdat 40 last"), "read 40 last=true");
        assert_eq!(s.delivery().targets.len(), 2);
        run(&mut s, "RSET");
        assert!(!s.chunking());

        // Over the limit in all: the chunk is read and dropped, and the
        // transaction is over. After LAST, one reply per recipient.
        run(&mut s, "MAIL FROM:<a@b>");
        run(&mut s, "RCPT TO:<alice>");
        assert_eq!(run(&mut s, "BDAT 60"), "read 60 last=false");
        assert_eq!(
            run(&mut s, "BDAT 41"),
            "skip: 552 5.3.4 message too big (limit 100 bytes)\r\n"
        );
        assert!(s.take_note().unwrap().contains("101 bytes in all"));
        assert!(!s.chunking());
        assert!(run(&mut s, "BDAT 1 LAST").contains("503 5.5.1 Need MAIL"));
        run(&mut s, "MAIL FROM:<a@b>");
        run(&mut s, "RCPT TO:<alice>");
        run(&mut s, "RCPT TO:<alice+x>");
        assert_eq!(
            run(&mut s, "BDAT 101 LAST"),
            "skip: 552 5.3.4 <alice> message too big (limit 100 bytes)\r\n\
             552 5.3.4 <alice+x> message too big (limit 100 bytes)\r\n"
        );
        run(&mut s, "MAIL FROM:<a@b>");
        run(&mut s, "RCPT TO:<alice>");
        assert_eq!(run(&mut s, "BDAT 0 LAST"), "read 0 last=true");
        assert_eq!(run(&mut s, "BDAT 100"), "read 100 last=false");

        // A size that cannot be read leaves no way to find the next command.
        for bad in [
            "BDAT",
            "BDAT x",
            "BDAT -1",
            "BDAT +1",
            "BDAT 1 FIRST",
            "BDAT 1 LAST x",
            "BDAT 99999999999999999999",
        ] {
            assert!(
                matches!(s.command(bad.as_bytes(), &users), Next::Close(r) if r.starts_with(b"501 5.5.4")),
                "{bad}"
            );
        }
        assert!(matches!(s.bare_lf(b"bdat 5"), Next::Close(_)));
        assert!(matches!(s.bare_lf(b"NOOP"), Next::Reply(_)));
    }

    #[test]
    fn paths() {
        assert_eq!(
            parse_path("<@r1,@r2:u@h> X=1").unwrap(),
            ("u@h".into(), " X=1")
        );
        assert_eq!(parse_path("<\"a>b\"@h>").unwrap().0, "\"a>b\"@h");
        assert!(parse_path(&format!("<{}@h>", "a".repeat(300))).is_none());
    }
}
