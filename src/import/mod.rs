//! `letterbox import`: mail moving in from another server's files.
//!
//! Two halves meet in a stream of [`Item`]s (a mailbox, then its messages,
//! and subscriptions):
//! - the source readers ([`maildir`], [`mbox`]) walk Dovecot's Maildir
//!   layouts, letterbox's own export, and mbox files, one message at a time;
//!   they run in the `letterbox import` process, as the user who runs it,
//!   so the server never needs to read another user's home directory;
//! - the [`target::Importer`] decides, per message, whether it is already
//!   there and which UID it gets, and stores it through the store's writer,
//!   so the server's change events fire and IDLE clients see it arrive.
//!
//! With a server running, the items travel over the control socket
//! ([`wire`]); without one, the command opens the store itself.

pub mod maildir;
pub mod mbox;
pub mod target;
pub mod wire;

use crate::store::Flags;

/// The UIDs a source mailbox had: what a client that synced with it knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SourceUids {
    pub uid_validity: u32,
    pub uid_next: u32,
}

/// A message as a source reader found it: bytes with CRLF line ends, and
/// what the source said about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceMessage {
    /// Where it came from (a file, or an mbox file and a line number), for
    /// error messages.
    pub label: String,
    pub uid: Option<u32>,
    pub flags: Flags,
    pub keywords: Vec<String>,
    /// INTERNALDATE, seconds since the epoch (UTC).
    pub date: i64,
    pub raw: Vec<u8>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Item {
    /// The messages that follow go into this mailbox (created if missing).
    /// Messages with UIDs come first, in UID order.
    Mailbox {
        name: String,
        uids: Option<SourceUids>,
    },
    Message(SourceMessage),
    Subscribe(String),
}

/// What an import did, message by message.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    pub imported: u64,
    /// Already there (by UID, or by Message-ID and size).
    pub skipped: u64,
    /// Could not be read or stored; each was reported with its file.
    pub failed: u64,
    /// Imported, but under a new UID because the target's clashed.
    pub renumbered: u64,
}

impl Tally {
    pub fn summary(&self) -> String {
        format!(
            "imported {}, skipped {}, failed {}, renumbered {}",
            self.imported, self.skipped, self.failed, self.renumbered
        )
    }

    /// Reads [`Tally::summary`] back (the server's answer over the socket).
    pub fn parse(text: &str) -> Option<Tally> {
        let mut numbers = text
            .split(", ")
            .map(|part| part.rsplit(' ').next().and_then(|n| n.parse::<u64>().ok()));
        Some(Tally {
            imported: numbers.next()??,
            skipped: numbers.next()??,
            failed: numbers.next()??,
            renumbered: numbers.next()??,
        })
    }
}

/// Where the source readers hand what they find.
pub trait Sink {
    /// The next item; an error stops the import (the server went away).
    fn item(&mut self, item: Item) -> Result<(), String>;
    /// A file that could not be imported, named in `text`; the import goes
    /// on with the next.
    fn problem(&mut self, text: String);
    /// `bytes` more of the source were read (for progress).
    fn progress(&mut self, _bytes: u64) {}
}

/// Reads a source of any kind the command takes: an mbox file; a Maildir
/// tree (Dovecot's, or letterbox's export); or a directory of mbox files.
/// The root's messages go to `folder` (INBOX when None), its folders below
/// `folder`. An error only when the source itself cannot be read or the
/// sink fails; a bad file inside is a [`Sink::problem`].
pub fn read_source(
    source: &std::path::Path,
    folder: Option<&str>,
    limit: usize,
    sink: &mut dyn Sink,
) -> Result<(), String> {
    let meta = std::fs::metadata(source).map_err(|e| format!("{}: {e}", source.display()))?;
    if meta.is_file() {
        mbox::read_file(source, folder.unwrap_or("INBOX"), limit, sink)
    } else if maildir::is_maildir_tree(source) {
        maildir::read_tree(source, folder, limit, sink)
    } else {
        mbox::read_dir(source, folder, limit, sink)
    }
}

/// The bytes of every file under `path`, for progress's time left.
pub fn source_size(path: &std::path::Path) -> u64 {
    fn walk(path: &std::path::Path, depth: usize) -> u64 {
        let Ok(meta) = std::fs::metadata(path) else {
            return 0;
        };
        if meta.is_file() {
            return meta.len();
        }
        if !meta.is_dir() || depth > 32 {
            return 0;
        }
        std::fs::read_dir(path)
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .map(|e| walk(&e.path(), depth + 1))
                    .sum()
            })
            .unwrap_or(0)
    }
    walk(path, 0)
}

/// Bytes of a message's start that identify it when it has no UID: its
/// Message-ID, or failing that, a digest of this much of it.
pub const IDENTITY_BYTES: usize = 16 * 1024;

/// How a message is recognised when it arrives again without a UID that
/// says so: its size and Message-ID, or its size and a digest of its first
/// [`IDENTITY_BYTES`] when it has no Message-ID.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Identity {
    size: u64,
    id: Vec<u8>,
}

impl Identity {
    /// `head` is the message's first bytes (at least [`IDENTITY_BYTES`] of
    /// them, or all), `size` its whole length.
    pub fn of(head: &[u8], size: u64) -> Identity {
        let head = &head[..head.len().min(IDENTITY_BYTES)];
        if let Some(id) = header_value(head, b"message-id") {
            let id: Vec<u8> = id
                .iter()
                .copied()
                .filter(|b| !b.is_ascii_whitespace())
                .collect();
            if !id.is_empty() {
                return Identity { size, id };
            }
        }
        let digest = ring::digest::digest(&ring::digest::SHA256, head);
        let mut id = b"sha256:".to_vec();
        id.extend_from_slice(digest.as_ref());
        Identity { size, id }
    }
}

/// The value of the first header field `name` (lowercase) in a message's
/// header section, unfolded lines joined; None if absent.
pub fn header_value(message: &[u8], name: &[u8]) -> Option<Vec<u8>> {
    let mut found: Option<Vec<u8>> = None;
    for line in message.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            break;
        }
        if line[0] == b' ' || line[0] == b'\t' {
            if let Some(value) = found.as_mut() {
                value.extend_from_slice(line);
            }
            continue;
        }
        if found.is_some() {
            break;
        }
        if let Some(colon) = line.iter().position(|&b| b == b':') {
            if line[..colon].trim_ascii_end().eq_ignore_ascii_case(name) {
                found = Some(line[colon + 1..].trim_ascii().to_vec());
            }
        }
    }
    found
}

/// Whether a file's bytes look like an RFC 5322 message: a header section
/// that starts with a header field. What this refuses (an empty file, a
/// picture, a text note) cannot be served as mail.
pub fn looks_like_message(raw: &[u8]) -> bool {
    let first = raw.split(|&b| b == b'\n').next().unwrap_or(&[]);
    let Some(colon) = first.iter().position(|&b| b == b':') else {
        return false;
    };
    colon > 0
        && first[..colon]
            .iter()
            .all(|&b| (33..=126).contains(&b) && b != b':')
        && !raw[..raw.len().min(IDENTITY_BYTES)].contains(&0)
}

/// Line ends as IMAP serves them: every bare LF becomes CRLF (Maildir and
/// mbox files keep LF, as Dovecot writes them).
pub fn to_crlf(raw: Vec<u8>) -> Vec<u8> {
    let bare = raw
        .iter()
        .enumerate()
        .filter(|&(i, &b)| b == b'\n' && (i == 0 || raw[i - 1] != b'\r'))
        .count();
    if bare == 0 {
        return raw;
    }
    let mut out = Vec::with_capacity(raw.len() + bare);
    for (i, &b) in raw.iter().enumerate() {
        if b == b'\n' && (i == 0 || raw[i - 1] != b'\r') {
            out.push(b'\r');
        }
        out.push(b);
    }
    out
}

/// Whether a keyword can be stored and sent as an IMAP flag: an atom, not a
/// system flag, of sane length.
pub fn valid_keyword(keyword: &str) -> bool {
    !keyword.is_empty()
        && keyword.len() <= 100
        && !keyword.starts_with('\\')
        && keyword.bytes().all(crate::imap::parser::is_atom_char)
}

/// A mailbox name letterbox can store: levels separated by `/`, none
/// empty, no control characters.
pub fn valid_mailbox_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 1000
        && name.split('/').all(|level| !level.is_empty())
        && !name.chars().any(|c| c.is_control())
}

/// One label for a place in a source, safe on one line of the wire.
pub fn label(text: impl std::fmt::Display) -> String {
    text.to_string()
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_use_message_id_or_a_digest() {
        let a = b"Subject: x\r\nMessage-ID:\r\n <a@b>\r\n\r\nbody";
        let b = b"Message-Id: <a@b>\r\n\r\nother";
        assert_eq!(Identity::of(a, 10), Identity::of(b, 10));
        assert_ne!(Identity::of(a, 10), Identity::of(b, 11));
        let c = b"Subject: y\r\n\r\nno id";
        let d = b"Subject: z\r\n\r\nno id";
        assert_ne!(Identity::of(c, 5), Identity::of(d, 5));
        assert_eq!(Identity::of(c, 5), Identity::of(c, 5));
        // A Message-ID in the body is not the message's.
        assert_eq!(
            header_value(b"A: 1\r\n\r\nMessage-ID: <x>", b"message-id"),
            None
        );
    }

    #[test]
    fn line_ends_and_message_shapes() {
        assert_eq!(to_crlf(b"a\nb\r\nc\n".to_vec()), b"a\r\nb\r\nc\r\n");
        assert_eq!(to_crlf(b"\n".to_vec()), b"\r\n");
        assert!(looks_like_message(b"From: a@b\n\nhi"));
        assert!(!looks_like_message(b"this is not mail\n"));
        assert!(!looks_like_message(b""));
        assert!(!looks_like_message(b"\x89PNG\r\n\x1a\n\0\0"));
        assert!(!looks_like_message(b"From a@b Mon Jan  1 00:00:00 2024\n"));
        assert!(valid_keyword("$Label1") && !valid_keyword("\\Seen") && !valid_keyword("a b"));
        assert!(
            valid_mailbox_name("a/b") && !valid_mailbox_name("a//b") && !valid_mailbox_name("")
        );
    }

    #[test]
    fn tallies_round_trip() {
        let t = Tally {
            imported: 5,
            skipped: 4,
            failed: 3,
            renumbered: 2,
        };
        assert_eq!(Tally::parse(&t.summary()), Some(t));
        assert_eq!(Tally::parse("nonsense"), None);
    }
}
