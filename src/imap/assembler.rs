//! Sans-IO framing of IMAP commands: gathers the lines and literals of one
//! command into an [`Assembled`] value, checking every limit before the shell
//! reads (or the assembler keeps) a byte of a literal.
//!
//! # How the shell drives it
//!
//! ```text
//! loop {
//!     let feed = match conn.read_line(limits.max_line) {
//!         Ok(line) => asm.line(line),
//!         // head: the first bytes of the line (for the tag); tail: its last
//!         // 32 bytes (for a literal announcement). See `overlong_line`.
//!         Err(LineTooLong { head, tail }) => asm.overlong_line(&head, &tail),
//!     };
//!     match feed {
//!         Feed::Complete(cmd) => session.command(parser::parse(cmd)),
//!         Feed::NeedLiteral { size, synchronizing } => {
//!             if synchronizing { send("+ OK\r\n") }
//!             asm.literal(conn.read_exact(size));   // then read the next line
//!         }
//!         Feed::Discard { size } => conn.skip_exact(size), // then the next line
//!         Feed::Error(e) => {
//!             send(e.response() + "\r\n");
//!             if e.close_connection { close() }
//!         }
//!     }
//! }
//! ```
//!
//! Lines that are not commands never reach the assembler. Once the session
//! has answered IDLE with `+ idling`, the shell reads lines (same `max_line`)
//! and hands them to the session: [`is_idle_done`] ends the IDLE with the
//! tagged OK, any other line ends it with a tagged BAD. The client's lines
//! in an AUTHENTICATE exchange go to the SASL mechanism the same way.
//!
//! # A refused literal
//!
//! A synchronizing literal is refused before the client sends it: the shell
//! answers with the tagged `NO [TOOBIG]` and the client abandons the command.
//! A non-synchronizing literal (`{n+}`) is already on its way, so the
//! assembler returns [`Feed::Discard`]: the shell skips its bytes and goes on
//! feeding lines, which the assembler swallows (skipping further literals the
//! same way) up to the end of the refused command. Only then does it return
//! the `BAD [TOOBIG]` error, so replies stay in command order. A literal too
//! large to be worth skipping (over twice `max_literal`, at least 1 MiB) ends
//! the connection instead, since reading it would only waste bandwidth.

use std::fmt;

pub use super::parser::Assembled;
use super::parser::{is_tag_char, Literal};

/// The largest non-synchronizing literal a LITERAL- server accepts (RFC 7888).
pub const LITERAL_MINUS_MAX: u64 = 4096;

/// Never discard less than this: refusing a modest literal must not cost the
/// client its connection when `max_literal` is small.
const MIN_DISCARD_CEILING: u64 = 1 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest line, without its CRLF.
    pub max_line: usize,
    /// Largest literal: the message size limit (--max-message-size).
    pub max_literal: u64,
    /// Largest non-synchronizing literal: [`LITERAL_MINUS_MAX`] when the
    /// server announces LITERAL-, `u64::MAX` under LITERAL+.
    pub max_nonsync_literal: u64,
    /// Total bytes of one command's lines and literals, except the one
    /// literal of an APPEND that carries the message.
    pub max_command: usize,
    /// Literals in one command.
    pub max_literals: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_line: 8192,
            max_literal: 50 * 1024 * 1024,
            max_nonsync_literal: u64::MAX,
            max_command: 64 * 1024,
            max_literals: 32,
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum Feed {
    /// A whole command; hand it to [`super::parser::parse`].
    Complete(Assembled),
    /// Read exactly `size` bytes and pass them to [`Assembler::literal`];
    /// for a synchronizing literal, send a continuation request first.
    NeedLiteral { size: u64, synchronizing: bool },
    /// Read and drop exactly `size` bytes of a refused non-synchronizing
    /// literal, then go on feeding lines.
    Discard { size: u64 },
    /// The command is refused: send [`AssembleError::response`].
    Error(AssembleError),
}

/// Which limit a command broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitExceeded {
    Line {
        max: usize,
    },
    Literal {
        size: u64,
        max: u64,
    },
    NonSyncLiteral {
        size: u64,
        max: u64,
    },
    Literals {
        max: usize,
    },
    Command {
        max: usize,
    },
    /// Not a limit of the command: the server's memory budget for incoming
    /// messages stayed taken (`--memory-budget`). Answered `NO [LIMIT]`.
    Memory,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssembleError {
    pub tag: Option<String>,
    pub limit: LimitExceeded,
    /// A synchronizing literal was declined before the client sent it, so
    /// the reply is `NO [TOOBIG]`; every other refusal is `BAD [TOOBIG]`.
    pub declined_before_sending: bool,
    /// The stream cannot be brought back in step cheaply: close after replying.
    pub close_connection: bool,
}

impl AssembleError {
    /// The full tagged reply, without CRLF.
    pub fn response(&self) -> String {
        let tag = self.tag.as_deref().unwrap_or("*");
        if self.limit == LimitExceeded::Memory {
            // The command was fine; the client may send it again later.
            return format!("{tag} NO [LIMIT] {self}");
        }
        let status = if self.declined_before_sending {
            "NO"
        } else {
            "BAD"
        };
        format!("{tag} {status} [TOOBIG] {self}")
    }
}

impl fmt::Display for AssembleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.limit {
            LimitExceeded::Line { max } => write!(f, "line longer than the limit of {max} bytes"),
            LimitExceeded::Literal { size: TOO_LARGE, max }
            | LimitExceeded::NonSyncLiteral {
                size: TOO_LARGE,
                max,
            } => write!(f, "literal size too large (the limit is {max} bytes)"),
            LimitExceeded::Literal { size, max } => {
                write!(f, "literal of {size} bytes is over the limit of {max} bytes")
            }
            LimitExceeded::NonSyncLiteral { size, max } => write!(
                f,
                "non-synchronizing literal of {size} bytes is over the LITERAL- limit of {max} bytes; use {{{size}}}"
            ),
            LimitExceeded::Literals { max } => write!(f, "command has more than {max} literals"),
            LimitExceeded::Command { max } => {
                write!(f, "command longer than the limit of {max} bytes")
            }
            LimitExceeded::Memory => write!(
                f,
                "the server is busy receiving other messages; try again later"
            ),
        }
    }
}

impl std::error::Error for AssembleError {}

/// The size of a literal whose digits do not fit in 64 bits: errors say
/// "too large" rather than print a number the client never sent.
pub const TOO_LARGE: u64 = u64::MAX;

/// A literal announced at the end of a line: `{n}`, `{n+}`, `~{n}`, `~{n+}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Announcement {
    /// Where the announcement starts in the line.
    start: usize,
    /// [`TOO_LARGE`] when the digits overflow; refused like any size.
    size: u64,
    synchronizing: bool,
    binary: bool,
}

#[derive(Debug, Default)]
enum State {
    #[default]
    Lines,
    AwaitingLiteral {
        binary: bool,
    },
    /// Swallowing the rest of a refused command; the error is reported once
    /// it ends.
    Discarding(AssembleError),
}

#[derive(Debug)]
pub struct Assembler {
    limits: Limits,
    command: Assembled,
    tag: Option<String>,
    is_append: bool,
    /// Bytes counted against `max_command`.
    counted: usize,
    /// An APPEND's message literal has been let past `max_command`.
    message_literal_seen: bool,
    state: State,
}

impl Assembler {
    pub fn new(limits: Limits) -> Assembler {
        Assembler {
            limits,
            command: Assembled::default(),
            tag: None,
            is_append: false,
            counted: 0,
            message_literal_seen: false,
            state: State::Lines,
        }
    }

    /// Feeds one line, without its CRLF.
    pub fn line(&mut self, line: &[u8]) -> Feed {
        match std::mem::take(&mut self.state) {
            State::Discarding(error) => return self.discard_line(line, error),
            // The shell skipped a literal it was told to read; start afresh
            // rather than glue unrelated text together.
            State::AwaitingLiteral { .. } => self.reset(),
            State::Lines => {}
        }
        if self.command.text.is_empty() && self.command.literals.is_empty() {
            self.start_command(line);
        }
        let announced = line_announcement(line);
        if line.len() > self.limits.max_line {
            let max = self.limits.max_line;
            return self.refuse(LimitExceeded::Line { max }, announced);
        }
        self.counted += line.len();
        if self.counted > self.limits.max_command {
            let max = self.limits.max_command;
            return self.refuse(LimitExceeded::Command { max }, announced);
        }
        let Some(literal) = announced else {
            self.command.text.extend_from_slice(line);
            return Feed::Complete(self.take());
        };
        self.command.text.extend_from_slice(&line[..literal.start]);
        if let Some(limit) = self.literal_limit(literal) {
            return self.refuse(limit, Some(literal));
        }
        self.state = State::AwaitingLiteral {
            binary: literal.binary,
        };
        Feed::NeedLiteral {
            size: literal.size,
            synchronizing: literal.synchronizing,
        }
    }

    /// Reports a line the shell could not hold: `head` is its start (up to
    /// `max_line` bytes), `tail` its last few bytes (32 suffice). The tail
    /// shows whether the line announced a literal, which must then be
    /// declined or skipped, lest its bytes be read as commands. A shell that
    /// cannot keep the tail passes an empty one and closes the connection
    /// after replying if the error asks to.
    pub fn overlong_line(&mut self, head: &[u8], tail: &[u8]) -> Feed {
        if let State::Discarding(error) = std::mem::take(&mut self.state) {
            return self.follow_refused(announcement(tail), error);
        }
        if self.command.text.is_empty() && self.command.literals.is_empty() {
            self.start_command(head);
        }
        let max = self.limits.max_line;
        let mut feed = self.refuse(LimitExceeded::Line { max }, announcement(tail));
        if let (Feed::Error(error), true) = (&mut feed, tail.is_empty()) {
            error.close_connection = true;
        }
        feed
    }

    /// Hands over the bytes of the literal asked for by [`Feed::NeedLiteral`].
    pub fn literal(&mut self, data: Vec<u8>) {
        if let State::AwaitingLiteral { binary } = std::mem::take(&mut self.state) {
            let offset = self.command.text.len();
            self.command.literals.push(Literal {
                offset,
                data,
                binary,
            });
        }
    }

    /// Whether the command being assembled is an APPEND, whose large
    /// literal is the message.
    pub fn in_append(&self) -> bool {
        self.is_append
    }

    /// Declines the literal the last [`Feed::NeedLiteral`] asked for, for
    /// want of memory (`NO [LIMIT]`): a synchronizing one before the client
    /// sends it; a non-synchronizing one is skipped with the rest of its
    /// command, like any refused literal.
    pub fn decline_literal(&mut self, size: u64, synchronizing: bool) -> Feed {
        let literal = Announcement {
            start: 0,
            size,
            synchronizing,
            binary: false,
        };
        self.refuse(LimitExceeded::Memory, Some(literal))
    }

    fn start_command(&mut self, line: &[u8]) {
        let tag_len = line.iter().take_while(|&&b| is_tag_char(b)).count();
        self.tag = (tag_len > 0).then(|| String::from_utf8_lossy(&line[..tag_len]).into_owned());
        let rest = line.get(tag_len..).unwrap_or_default();
        self.is_append = rest.len() > 8
            && rest[0] == b' '
            && rest[1..7].eq_ignore_ascii_case(b"APPEND")
            && rest[7] == b' ';
    }

    /// Which limit, if any, the announced literal breaks; counts it if not.
    fn literal_limit(&mut self, literal: Announcement) -> Option<LimitExceeded> {
        let limits = self.limits;
        let size = literal.size;
        if self.command.literals.len() >= limits.max_literals {
            return Some(LimitExceeded::Literals {
                max: limits.max_literals,
            });
        }
        if !literal.synchronizing && size > limits.max_nonsync_literal {
            return Some(LimitExceeded::NonSyncLiteral {
                size,
                max: limits.max_nonsync_literal,
            });
        }
        if size > limits.max_literal {
            return Some(LimitExceeded::Literal {
                size,
                max: limits.max_literal,
            });
        }
        let room = (limits.max_command - self.counted) as u64;
        if size <= room {
            self.counted += size as usize;
        } else if self.is_append && !self.message_literal_seen {
            // The message of an APPEND is bounded by max_literal alone; any
            // other literal of that command still counts.
            self.message_literal_seen = true;
        } else {
            return Some(LimitExceeded::Command {
                max: limits.max_command,
            });
        }
        None
    }

    fn refuse(&mut self, limit: LimitExceeded, literal: Option<Announcement>) -> Feed {
        let error = AssembleError {
            tag: self.tag.clone(),
            limit,
            declined_before_sending: literal.is_some_and(|l| l.synchronizing),
            close_connection: false,
        };
        self.reset();
        self.follow_refused(literal, error)
    }

    /// After a refusal: skip a non-synchronizing literal already on its way,
    /// or report the error if nothing more of the command will come.
    fn follow_refused(&mut self, literal: Option<Announcement>, mut error: AssembleError) -> Feed {
        match literal {
            Some(l) if !l.synchronizing => {
                let ceiling = self
                    .limits
                    .max_literal
                    .saturating_mul(2)
                    .max(MIN_DISCARD_CEILING);
                if l.size > ceiling {
                    error.close_connection = true;
                    return Feed::Error(error);
                }
                self.state = State::Discarding(error);
                Feed::Discard { size: l.size }
            }
            _ => Feed::Error(error),
        }
    }

    fn discard_line(&mut self, line: &[u8], error: AssembleError) -> Feed {
        match line_announcement(line) {
            // The client waits for "+" before sending; the error ends it.
            Some(l) if l.synchronizing => Feed::Error(AssembleError {
                declined_before_sending: false,
                ..error
            }),
            literal => self.follow_refused(literal, error),
        }
    }

    fn take(&mut self) -> Assembled {
        let command = std::mem::take(&mut self.command);
        self.reset();
        command
    }

    fn reset(&mut self) {
        *self = Assembler::new(self.limits);
    }
}

/// The literal announced at the end of a whole line, unless it sits inside a
/// quoted string left open (a syntax error the parser will report).
fn line_announcement(line: &[u8]) -> Option<Announcement> {
    announcement(line).filter(|a| !inside_quotes(&line[..a.start]))
}

/// A literal announcement ending `text`, which may be only the tail of a line.
fn announcement(text: &[u8]) -> Option<Announcement> {
    let body = text.strip_suffix(b"}")?;
    let open = body.iter().rposition(|&b| b == b'{')?;
    let (digits, synchronizing) = match body[open + 1..].strip_suffix(b"+") {
        Some(digits) => (digits, false),
        None => (&body[open + 1..], true),
    };
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let size = digits.iter().try_fold(0u64, |n, &d| {
        n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    });
    let binary = open > 0 && body[open - 1] == b'~';
    Some(Announcement {
        start: if binary { open - 1 } else { open },
        size: size.unwrap_or(TOO_LARGE),
        synchronizing,
        binary,
    })
}

fn inside_quotes(text: &[u8]) -> bool {
    let mut quoted = false;
    let mut escaped = false;
    for &b in text {
        match b {
            _ if escaped => escaped = false,
            b'\\' if quoted => escaped = true,
            b'"' => quoted = !quoted,
            _ => {}
        }
    }
    quoted
}

/// True for the line that ends IDLE (RFC 2177).
pub fn is_idle_done(line: &[u8]) -> bool {
    line.eq_ignore_ascii_case(b"DONE")
}

/// Test helper: assembles one command from its wire form (CRLF line ends,
/// literals inline), as a shell would.
#[cfg(test)]
pub(crate) fn assemble_wire(limits: Limits, mut wire: &[u8]) -> Vec<Feed> {
    let mut asm = Assembler::new(limits);
    let mut feeds = Vec::new();
    loop {
        let end = wire
            .windows(2)
            .position(|w| w == b"\r\n")
            .unwrap_or(wire.len());
        let feed = asm.line(&wire[..end]);
        wire = wire.get(end + 2..).unwrap_or_default();
        let more = match feed {
            Feed::NeedLiteral { size, .. } | Feed::Discard { size } => {
                let (data, rest) = wire.split_at((size as usize).min(wire.len()));
                if matches!(feed, Feed::NeedLiteral { .. }) {
                    asm.literal(data.to_vec());
                }
                wire = rest;
                true
            }
            _ => !wire.is_empty(),
        };
        feeds.push(feed);
        if !more {
            return feeds;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> Limits {
        Limits {
            max_line: 100,
            max_literal: 1000,
            max_nonsync_literal: u64::MAX,
            max_command: 200,
            max_literals: 3,
        }
    }

    fn complete(feeds: &[Feed]) -> &Assembled {
        match feeds.last() {
            Some(Feed::Complete(cmd)) => cmd,
            other => panic!("expected a complete command, got {other:?}"),
        }
    }

    fn error(feeds: &[Feed]) -> &AssembleError {
        match feeds.last() {
            Some(Feed::Error(e)) => e,
            other => panic!("expected an error, got {other:?}"),
        }
    }

    #[test]
    fn login_with_two_literals() {
        let feeds = assemble_wire(small(), b"a1 LOGIN {4}\r\nfred {6+}\r\nse\"c\r\n\r\n");
        assert_eq!(
            feeds[0],
            Feed::NeedLiteral {
                size: 4,
                synchronizing: true
            }
        );
        assert_eq!(
            feeds[1],
            Feed::NeedLiteral {
                size: 6,
                synchronizing: false
            }
        );
        let cmd = complete(&feeds);
        assert_eq!(cmd.text, b"a1 LOGIN  ");
        assert_eq!(cmd.literals.len(), 2);
        assert_eq!(
            (cmd.literals[0].offset, &cmd.literals[0].data[..]),
            (9, &b"fred"[..])
        );
        assert_eq!(
            (cmd.literals[1].offset, &cmd.literals[1].data[..]),
            (10, &b"se\"c\r\n"[..])
        );
    }

    #[test]
    fn binary_literal_keeps_crlf_and_nul() {
        let feeds = assemble_wire(small(), b"A APPEND x ~{5}\r\na\r\n\0b\r\n");
        let cmd = complete(&feeds);
        assert!(cmd.literals[0].binary);
        assert_eq!(cmd.literals[0].data, b"a\r\n\0b");
    }

    #[test]
    fn braces_inside_quotes_are_not_literals() {
        let feeds = assemble_wire(small(), b"A LOGIN \"x {3}\r\n");
        assert_eq!(complete(&feeds).text, b"A LOGIN \"x {3}");
        assert_eq!(
            line_announcement(b"A LOGIN \"a\\\"\" {3}").map(|a| a.size),
            Some(3)
        );
        assert_eq!(line_announcement(b"A LOGIN \"a {3}"), None);
        assert_eq!(announcement(b"A X {}"), None);
        assert_eq!(announcement(b"A X {1a}"), None);
    }

    #[test]
    fn synchronizing_literal_over_limit_is_declined_with_no() {
        let feeds = assemble_wire(small(), b"t1 LOGIN {1001}\r\n");
        let e = error(&feeds);
        assert_eq!(
            e.limit,
            LimitExceeded::Literal {
                size: 1001,
                max: 1000
            }
        );
        assert_eq!(
            e.response(),
            "t1 NO [TOOBIG] literal of 1001 bytes is over the limit of 1000 bytes"
        );
        assert!(!e.close_connection);
    }

    #[test]
    fn refused_nonsync_literal_is_skipped_with_rest_of_command() {
        let mut wire = b"t2 APPEND box {1500+}\r\n".to_vec();
        wire.extend(std::iter::repeat_n(b'x', 1500));
        wire.extend(b" {3+}\r\nabc\r\nt3 NOOP\r\n");
        let feeds = assemble_wire(small(), &wire);
        assert_eq!(feeds[0], Feed::Discard { size: 1500 });
        assert_eq!(feeds[1], Feed::Discard { size: 3 });
        let e = match &feeds[2] {
            Feed::Error(e) => e,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            e.response(),
            "t2 BAD [TOOBIG] literal of 1500 bytes is over the limit of 1000 bytes"
        );
        assert_eq!(complete(&feeds).text, b"t3 NOOP");
    }

    #[test]
    fn huge_nonsync_literal_closes_connection() {
        let e = error(&assemble_wire(
            small(),
            b"t APPEND x {99999999999999999999999+}\r\n",
        ))
        .clone();
        assert!(e.close_connection);
        assert_eq!(
            e.limit,
            LimitExceeded::Literal {
                size: TOO_LARGE,
                max: 1000
            }
        );
        assert_eq!(
            e.response(),
            "t BAD [TOOBIG] literal size too large (the limit is 1000 bytes)"
        );
        // A size that fits is given as sent.
        let e = error(&assemble_wire(small(), b"t APPEND x {99999999999999}\r\n")).clone();
        assert_eq!(
            e.response(),
            "t NO [TOOBIG] literal of 99999999999999 bytes is over the limit of 1000 bytes"
        );
    }

    #[test]
    fn literal_minus_refuses_big_nonsync_literals() {
        let limits = Limits {
            max_nonsync_literal: LITERAL_MINUS_MAX,
            max_literal: 10_000,
            ..small()
        };
        let mut asm = Assembler::new(limits);
        assert_eq!(
            asm.line(b"a APPEND x {4097+}"),
            Feed::Discard { size: 4097 }
        );
        let Feed::Error(e) = asm.line(b"") else {
            panic!("expected error")
        };
        assert_eq!(
            e.limit,
            LimitExceeded::NonSyncLiteral {
                size: 4097,
                max: 4096
            }
        );
        assert!(e
            .response()
            .starts_with("a BAD [TOOBIG] non-synchronizing literal of 4097 bytes"));
        assert_eq!(
            asm.line(b"b APPEND x {4097}"),
            Feed::NeedLiteral {
                size: 4097,
                synchronizing: true
            }
        );
    }

    #[test]
    fn too_many_literals_and_too_long_commands() {
        let e = error(&assemble_wire(
            small(),
            b"a X {1}\r\na {1}\r\nb {1}\r\nc {1}\r\n",
        ))
        .clone();
        assert_eq!(e.limit, LimitExceeded::Literals { max: 3 });
        assert_eq!(e.tag.as_deref(), Some("a"));
        let e = error(&assemble_wire(small(), b"a LOGIN {190}\r\n")).clone();
        assert_eq!(e.limit, LimitExceeded::Command { max: 200 });
        let mut asm = Assembler::new(small());
        assert!(matches!(
            asm.line(&[b'a'; 101]),
            Feed::Error(AssembleError {
                limit: LimitExceeded::Line { max: 100 },
                ..
            })
        ));
    }

    #[test]
    fn append_message_literal_may_exceed_command_limit_once() {
        let mut asm = Assembler::new(small());
        assert_eq!(
            asm.line(b"a append x {900+}"),
            Feed::NeedLiteral {
                size: 900,
                synchronizing: false
            }
        );
        asm.literal(vec![b'm'; 900]);
        assert!(matches!(
            asm.line(b" {900}"),
            Feed::Error(AssembleError {
                limit: LimitExceeded::Command { .. },
                ..
            })
        ));
    }

    #[test]
    fn overlong_line_reports_tag_and_skips_announced_literal() {
        let mut asm = Assembler::new(small());
        assert_eq!(
            asm.overlong_line(b"x7 UID FETCH 1,2,3", b"7,9 {12+}"),
            Feed::Discard { size: 12 }
        );
        let Feed::Error(e) = asm.line(b"") else {
            panic!("expected error")
        };
        assert_eq!(
            e.response(),
            "x7 BAD [TOOBIG] line longer than the limit of 100 bytes"
        );
        let Feed::Error(e) = asm.overlong_line(b"x8 FETCH", b"") else {
            panic!("expected error")
        };
        assert!(e.close_connection);
    }

    #[test]
    fn idle_done_is_case_insensitive() {
        assert!(is_idle_done(b"done"));
        assert!(!is_idle_done(b"DONE "));
    }
}
