//! Reading mbox files (mboxrd and mboxo, as mutt, Thunderbird and Dovecot
//! write them), and directories of them.
//!
//! A message starts at a `From ` line at the file's start or after an empty
//! line; the empty line before it belongs to the separator. `>From ` lines
//! lose one `>` (mboxrd's quoting, which also undoes mboxo's). The status
//! headers mail programs keep in the file (Status, X-Status, X-Keywords,
//! X-UID, Content-Length, X-IMAP, X-IMAPbase) give the flags and are then
//! dropped, as Dovecot drops them; Dovecot's X-IMAPbase (in a file's first
//! message) and X-UID give the UIDVALIDITY and UIDs. The `From ` line's date
//! is the INTERNALDATE. Memory stays bounded: lines are read in pieces, and a
//! message over the size limit is counted, not kept.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use super::{label, to_crlf, valid_keyword, Item, Sink, SourceMessage, SourceUids};
use crate::store::Flags;

/// The longest piece of a line read at once; longer lines come in pieces.
const PIECE: u64 = 64 * 1024;
/// Deeper folder trees than this are not followed.
const MAX_DEPTH: usize = 32;

/// Reads a directory of mbox files: each file is a mailbox named by its
/// path below `dir` (below `folder` when given); Thunderbird's `Name.sbd/`
/// holds the folders below `Name`, and its `.msf` index files are skipped.
pub fn read_dir(
    dir: &Path,
    folder: Option<&str>,
    limit: usize,
    sink: &mut dyn Sink,
) -> Result<(), String> {
    walk(dir, folder, limit, sink, 0)
}

fn walk(
    dir: &Path,
    prefix: Option<&str>,
    limit: usize,
    sink: &mut dyn Sink,
    depth: usize,
) -> Result<(), String> {
    if depth > MAX_DEPTH {
        sink.problem(format!(
            "{}: folders nested too deep; skipped",
            dir.display()
        ));
        return Ok(());
    }
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => {
            sink.problem(format!("{}: {e}", dir.display()));
            return Ok(());
        }
    };
    let mut names: Vec<(String, std::path::PathBuf)> = Vec::new();
    for entry in entries.filter_map(Result::ok) {
        match entry.file_name().into_string() {
            Ok(name) => names.push((name, entry.path())),
            Err(_) => sink.problem(format!(
                "{}: name is not UTF-8; skipped",
                entry.path().display()
            )),
        }
    }
    names.sort_unstable();
    for (name, path) in names {
        if name.starts_with('.') || name.ends_with(".msf") {
            continue;
        }
        let child = |n: &str| match prefix {
            Some(p) => format!("{p}/{n}"),
            None => n.to_string(),
        };
        if path.is_dir() {
            let base = name.strip_suffix(".sbd").unwrap_or(&name);
            walk(&path, Some(&child(base)), limit, sink, depth + 1)?;
        } else {
            read_file(&path, &child(&name), limit, sink)?;
        }
    }
    Ok(())
}

/// The message being gathered.
struct Pending {
    line: u64,
    date: Option<i64>,
    raw: Vec<u8>,
    size: u64,
}

/// Reads one mbox file into mailbox `name`.
pub fn read_file(path: &Path, name: &str, limit: usize, sink: &mut dyn Sink) -> Result<(), String> {
    let file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) => {
            sink.problem(format!("{}: cannot read: {e}", path.display()));
            return Ok(());
        }
    };
    let mtime = file
        .metadata()
        .ok()
        .and_then(|m| m.modified().ok())
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs() as i64);
    let mut reader = BufReader::with_capacity(PIECE as usize, file);
    let mut piece = Vec::new();
    let mut at_line_start = true;
    let mut previous_blank = true;
    let mut line_number = 0u64;
    let mut pending: Option<Pending> = None;
    let mut announce = Announce {
        name: name.to_string(),
        done: false,
    };
    loop {
        piece.clear();
        let read = (&mut reader).take(PIECE).read_until(b'\n', &mut piece);
        let n = match read {
            Ok(n) => n,
            Err(e) => {
                sink.problem(format!(
                    "{}: read error at line {line_number}: {e}",
                    path.display()
                ));
                break;
            }
        };
        if n == 0 {
            break;
        }
        sink.progress(n as u64);
        let starts_line = at_line_start;
        at_line_start = piece.ends_with(b"\n");
        if starts_line {
            line_number += 1;
        }
        if starts_line && previous_blank && piece.starts_with(b"From ") {
            if let Some(done) = pending.take() {
                finish(path, done, mtime, limit, sink, &mut announce)?;
            }
            pending = Some(Pending {
                line: line_number,
                date: from_line_date(&piece),
                raw: Vec::new(),
                size: 0,
            });
            previous_blank = false;
            // A From line longer than a piece: the rest is not the message.
            while !at_line_start {
                piece.clear();
                match (&mut reader).take(PIECE).read_until(b'\n', &mut piece) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => at_line_start = piece.ends_with(b"\n"),
                }
            }
            continue;
        }
        let blank = starts_line && (piece == b"\n" || piece == b"\r\n");
        let Some(message) = pending.as_mut() else {
            if blank {
                continue;
            }
            sink.problem(format!(
                "{}: not an mbox file (line {line_number} is not a \"From \" line); skipped",
                path.display()
            ));
            return Ok(());
        };
        let mut content: &[u8] = &piece;
        if starts_line && content.starts_with(b">") {
            let quoted = content.iter().take_while(|&&b| b == b'>').count();
            if content[quoted..].starts_with(b"From ") {
                content = &content[1..];
            }
        }
        message.size += content.len() as u64;
        if message.size <= limit as u64 + 2 {
            message.raw.extend_from_slice(content);
        } else if !message.raw.is_empty() {
            // Over the limit: counted on, no longer kept.
            message.raw = Vec::new();
        }
        previous_blank = blank;
    }
    if let Some(done) = pending.take() {
        finish(path, done, mtime, limit, sink, &mut announce)?;
    }
    if !announce.done {
        // An empty file is an empty folder (Thunderbird makes them).
        sink.item(Item::Mailbox {
            name: name.to_string(),
            uids: None,
        })?;
        sink.item(Item::Subscribe(name.to_string()))?;
    }
    Ok(())
}

/// The mailbox an mbox file fills, announced with its first message, whose
/// X-IMAPbase (Dovecot's) gives the UIDVALIDITY and UIDNEXT.
struct Announce {
    name: String,
    done: bool,
}

fn finish(
    path: &Path,
    mut message: Pending,
    mtime: i64,
    limit: usize,
    sink: &mut dyn Sink,
    announce: &mut Announce,
) -> Result<(), String> {
    let place = format!("{} (message at line {})", path.display(), message.line);
    // The empty line before the next From line is the separator's.
    if message.raw.ends_with(b"\r\n\r\n") {
        message.raw.truncate(message.raw.len() - 2);
        message.size -= 2;
    } else if message.raw.ends_with(b"\n\n") {
        message.raw.truncate(message.raw.len() - 1);
        message.size -= 1;
    }
    if message.size > limit as u64 {
        sink.problem(format!(
            "{place}: {} bytes, more than the largest message accepted ({limit} bytes, --max-message-size); skipped",
            message.size
        ));
        return Ok(());
    }
    let (raw, status) = strip_status_headers(&message.raw);
    if !announce.done {
        sink.item(Item::Mailbox {
            name: announce.name.clone(),
            uids: status.base,
        })?;
        // mbox keeps no subscriptions, and the programs that write it show
        // every folder: subscribed, it shows in IMAP clients too (as
        // `doveadm import -s` does).
        sink.item(Item::Subscribe(announce.name.clone()))?;
        announce.done = true;
    }
    let raw = to_crlf(raw);
    if raw.is_empty() {
        sink.problem(format!("{place}: empty message; skipped"));
        return Ok(());
    }
    if raw.len() > limit {
        sink.problem(format!(
            "{place}: {} bytes with CRLF line ends, more than the largest message accepted ({limit} bytes); skipped",
            raw.len()
        ));
        return Ok(());
    }
    sink.item(Item::Message(SourceMessage {
        label: label(place),
        uid: status.uid,
        flags: status.flags,
        keywords: status.keywords,
        date: message.date.unwrap_or(mtime),
        raw,
    }))
}

/// The headers mail programs keep their state in, which Dovecot drops when
/// it reads an mbox.
const STATUS_HEADERS: [&[u8]; 7] = [
    b"status",
    b"x-status",
    b"x-keywords",
    b"x-uid",
    b"content-length",
    b"x-imap",
    b"x-imapbase",
];

/// What an mbox message's status headers said.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Status {
    pub flags: Flags,
    pub keywords: Vec<String>,
    /// X-UID, which Dovecot writes.
    pub uid: Option<u32>,
    /// X-IMAPbase (`UIDVALIDITY UIDNEXT [keywords]`), which Dovecot writes
    /// in a file's first message.
    pub base: Option<SourceUids>,
}

/// Takes the status headers out of a message's header section and reads
/// its flags, and Dovecot's UIDs, from them.
pub fn strip_status_headers(raw: &[u8]) -> (Vec<u8>, Status) {
    let mut out = Vec::with_capacity(raw.len());
    let mut status = Status::default();
    let mut at = 0;
    let mut dropping = false;
    let mut current: Option<(Vec<u8>, Vec<u8>)> = None;
    let take = |field: Option<(Vec<u8>, Vec<u8>)>, status: &mut Status| {
        let Some((name, value)) = field else { return };
        let value = String::from_utf8_lossy(&value).into_owned();
        let (flags, keywords) = (&mut status.flags, &mut status.keywords);
        match name.as_slice() {
            // O (old: seen by a program, not by a person) is \Recent's
            // business, which a new arrival gets anyway.
            b"status" if value.contains('R') => *flags = flags.with(Flags::SEEN),
            b"x-status" => {
                for (letter, flag) in [
                    ('A', Flags::ANSWERED),
                    ('F', Flags::FLAGGED),
                    ('T', Flags::DRAFT),
                    ('D', Flags::DELETED),
                ] {
                    if value.contains(letter) {
                        *flags = flags.with(flag);
                    }
                }
            }
            b"x-keywords" => {
                for keyword in value
                    .split([' ', ',', '\t', '\r', '\n'])
                    .filter(|k| valid_keyword(k))
                {
                    if !keywords.iter().any(|k| k.eq_ignore_ascii_case(keyword)) {
                        keywords.push(keyword.to_string());
                    }
                }
            }
            b"x-uid" => status.uid = value.trim().parse().ok().filter(|&u| u > 0 && u < u32::MAX),
            b"x-imapbase" => {
                let mut words = value.split_whitespace().map(|w| w.parse::<u32>().ok());
                if let (Some(Some(uid_validity)), Some(Some(uid_next))) =
                    (words.next(), words.next())
                {
                    if uid_validity > 0 {
                        status.base = Some(SourceUids {
                            uid_validity,
                            uid_next,
                        });
                    }
                }
            }
            _ => {}
        }
    };
    while at < raw.len() {
        let end = raw[at..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(raw.len(), |p| at + p + 1);
        let line = &raw[at..end];
        let content = line.strip_suffix(b"\n").unwrap_or(line);
        let content = content.strip_suffix(b"\r").unwrap_or(content);
        if content.is_empty() {
            break;
        }
        if content[0] == b' ' || content[0] == b'\t' {
            if dropping {
                if let Some((_, value)) = current.as_mut() {
                    value.push(b' ');
                    value.extend_from_slice(content.trim_ascii());
                }
            } else {
                out.extend_from_slice(line);
            }
        } else {
            take(current.take(), &mut status);
            let name = content
                .iter()
                .position(|&b| b == b':')
                .map(|c| content[..c].trim_ascii_end().to_ascii_lowercase());
            dropping = name.as_deref().is_some_and(|n| STATUS_HEADERS.contains(&n));
            if dropping {
                let colon = content.iter().position(|&b| b == b':').unwrap_or(0);
                current = name.map(|n| (n, content[colon + 1..].trim_ascii().to_vec()));
            } else {
                out.extend_from_slice(line);
            }
        }
        at = end;
    }
    take(current.take(), &mut status);
    out.extend_from_slice(&raw[at..]);
    (out, status)
}

/// The date of a `From sender Www Mmm dd hh:mm:ss yyyy` line (asctime,
/// perhaps with a zone before the year), as UTC.
pub fn from_line_date(line: &[u8]) -> Option<i64> {
    let text = String::from_utf8_lossy(line);
    let words: Vec<&str> = text.split_whitespace().collect();
    let month_at = words
        .iter()
        .skip(2)
        .position(|w| crate::clock::month_number(w).is_some())?
        + 2;
    let month = crate::clock::month_number(words[month_at])?;
    let day: u32 = words.get(month_at + 1)?.parse().ok()?;
    let time = words.get(month_at + 2)?;
    let mut hms = time.split(':').map(|p| p.parse::<i64>().ok());
    let (hour, minute) = (hms.next()??, hms.next()??);
    let second = hms.next().flatten().unwrap_or(0);
    let year: i64 = words[month_at + 3..]
        .iter()
        .find_map(|w| w.parse::<i64>().ok().filter(|y| (1970..=9999).contains(y)))?;
    if !(1..=31).contains(&day) || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    Some(
        crate::clock::days_from_civil(year, month, day) * 86400
            + hour * 3600
            + minute * 60
            + second,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_headers_give_flags_and_go() {
        let raw = b"From: a@b\nStatus: RO\nX-Status: AF\nX-Keywords: $Label1 work\n  later\nX-UID: 4\nSubject: s\n\nStatus: body\n";
        let (out, status) = strip_status_headers(raw);
        assert_eq!(out, b"From: a@b\nSubject: s\n\nStatus: body\n");
        assert_eq!(
            status.flags,
            Flags::SEEN.with(Flags::ANSWERED).with(Flags::FLAGGED)
        );
        assert_eq!(status.keywords, ["$Label1", "work", "later"]);
        assert_eq!(status.uid, Some(4));
        let dovecot = b"X-IMAPbase: 1700000000 12 $Label1\nX-UID: 11\nSubject: s\n\nb\n";
        let (out, status) = strip_status_headers(dovecot);
        assert_eq!(out, b"Subject: s\n\nb\n");
        assert_eq!(
            (status.base, status.uid),
            (
                Some(SourceUids {
                    uid_validity: 1_700_000_000,
                    uid_next: 12
                }),
                Some(11)
            )
        );
    }

    #[derive(Default)]
    struct Collect {
        items: Vec<Item>,
        problems: Vec<String>,
        bytes: u64,
    }

    impl Sink for Collect {
        fn item(&mut self, item: Item) -> Result<(), String> {
            self.items.push(item);
            Ok(())
        }
        fn problem(&mut self, text: String) {
            self.problems.push(text);
        }
        fn progress(&mut self, bytes: u64) {
            self.bytes += bytes;
        }
    }

    #[test]
    fn a_message_over_the_limit_is_skipped_and_the_next_one_is_whole() {
        let dir = crate::store::testing::tempdir::Dir::new();
        let path = dir.path().join("mbox");
        // The long message has one line longer than a read piece, and a
        // "From " inside that line that must not split it.
        let long_line = format!("{}From inside\n", "x".repeat(200_000));
        let text = format!(
            "From a Fri Jan  5 13:04:05 2024\nSubject: small\n\nhi\n\n\
             From b Fri Jan  5 13:04:06 2024\nSubject: big\n\n{long_line}\n\
             From c Fri Jan  5 13:04:07 2024\nSubject: after\n\n>From kept\n"
        );
        std::fs::write(&path, &text).unwrap();
        let mut sink = Collect::default();
        read_file(&path, "INBOX", 100_000, &mut sink).unwrap();
        assert_eq!(sink.bytes, text.len() as u64);
        assert_eq!(sink.problems.len(), 1, "{:?}", sink.problems);
        assert!(sink.problems[0].contains("line 6"), "{:?}", sink.problems);
        let bodies: Vec<Vec<u8>> = sink
            .items
            .iter()
            .filter_map(|item| match item {
                Item::Message(m) => Some(m.raw.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(
            bodies,
            [
                b"Subject: small\r\n\r\nhi\r\n".to_vec(),
                b"Subject: after\r\n\r\nFrom kept\r\n".to_vec()
            ]
        );
        // Not an mbox at all: named, nothing imported.
        std::fs::write(&path, "Subject: x\n\nbody\n").unwrap();
        let mut sink = Collect::default();
        read_file(&path, "INBOX", 100_000, &mut sink).unwrap();
        assert!(sink.items.is_empty() && sink.problems[0].contains("not an mbox"));
    }

    #[test]
    fn from_line_dates() {
        let expect = crate::clock::days_from_civil(2024, 1, 5) * 86400 + 13 * 3600 + 4 * 60 + 5;
        assert_eq!(
            from_line_date(b"From a@b Fri Jan  5 13:04:05 2024\n"),
            Some(expect)
        );
        assert_eq!(
            from_line_date(b"From MAILER-DAEMON Fri Jan 5 13:04:05 +0000 2024\n"),
            Some(expect)
        );
        assert_eq!(from_line_date(b"From nobody\n"), None);
    }
}
