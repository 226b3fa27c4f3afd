//! How import items cross the control socket, after the `import` request
//! line: one header line per item, a message's bytes right after its line.
//!
//! ```text
//! mailbox<TAB>NAME<TAB>UIDVALIDITY<TAB>UIDNEXT      (0 0: the source has no UIDs)
//! message<TAB>UID<TAB>FLAGS<TAB>DATE<TAB>KEYWORDS<TAB>LABEL<TAB>SIZE   then SIZE bytes
//! subscribe<TAB>NAME
//! end
//! ```
//! UID 0 means none; FLAGS is the store's flag bits; KEYWORDS are
//! space-separated. The server first answers `limit BYTES` (its
//! --max-message-size), so the command skips what it would refuse anyway.

use std::io::Write;

use super::{label, Item, SourceMessage, SourceUids};
use crate::store::Flags;

/// The longest header line taken.
pub const MAX_LINE: usize = 16 * 1024;

/// Writes one item.
pub fn write_item(out: &mut impl Write, item: &Item) -> std::io::Result<()> {
    match item {
        Item::Mailbox { name, uids } => {
            let (v, n) = uids.map_or((0, 0), |u| (u.uid_validity, u.uid_next));
            writeln!(out, "mailbox\t{}\t{v}\t{n}", label(name))
        }
        Item::Message(m) => {
            writeln!(
                out,
                "message\t{}\t{}\t{}\t{}\t{}\t{}",
                m.uid.unwrap_or(0),
                m.flags.0,
                m.date,
                m.keywords.join(" "),
                label(&m.label),
                m.raw.len()
            )?;
            out.write_all(&m.raw)
        }
        Item::Subscribe(name) => writeln!(out, "subscribe\t{}", label(name)),
    }
}

pub fn write_end(out: &mut impl Write) -> std::io::Result<()> {
    out.write_all(b"end\n")
}

/// One header line, read back.
#[derive(Debug, PartialEq, Eq)]
pub enum Header {
    /// An item complete in its line.
    Item(Item),
    /// A message whose `size` bytes follow; `raw` is still empty.
    Message(SourceMessage, u64),
    End,
}

pub fn parse_header(line: &str) -> Result<Header, String> {
    let line = line.strip_suffix('\n').unwrap_or(line);
    if line.chars().any(|c| c.is_control() && c != '\t') {
        return Err(format!("control character in import item {line:?}"));
    }
    let fields: Vec<&str> = line.split('\t').collect();
    let number = |text: &str| -> Result<u64, String> {
        text.parse::<u64>()
            .map_err(|_| format!("bad number {text:?} in {line:?}"))
    };
    match fields.as_slice() {
        ["mailbox", name, v, n] => {
            let (v, n) = (number(v)?, number(n)?);
            let uids = (v != 0).then_some(SourceUids {
                uid_validity: u32::try_from(v).map_err(|_| "UIDVALIDITY too large")?,
                uid_next: u32::try_from(n).map_err(|_| "UIDNEXT too large")?,
            });
            Ok(Header::Item(Item::Mailbox {
                name: name.to_string(),
                uids,
            }))
        }
        ["message", uid, flags, date, keywords, label, size] => {
            let uid = u32::try_from(number(uid)?).map_err(|_| "UID too large")?;
            let date = date
                .parse::<i64>()
                .map_err(|_| format!("bad date in {line:?}"))?;
            Ok(Header::Message(
                SourceMessage {
                    label: label.to_string(),
                    uid: (uid != 0).then_some(uid),
                    flags: Flags(u16::try_from(number(flags)?).map_err(|_| "bad flags")?),
                    keywords: keywords
                        .split(' ')
                        .filter(|k| !k.is_empty())
                        .map(str::to_string)
                        .collect(),
                    date,
                    raw: Vec::new(),
                },
                number(size)?,
            ))
        }
        ["subscribe", name] => Ok(Header::Item(Item::Subscribe(name.to_string()))),
        ["end"] => Ok(Header::End),
        _ => Err(format!("import item not understood: {line:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_round_trip() {
        let message = SourceMessage {
            label: "/m/cur/1:2,S".into(),
            uid: Some(7),
            flags: Flags::SEEN,
            keywords: vec!["$Label1".into(), "work".into()],
            date: 1_700_000_000,
            raw: b"Subject: x\r\n\r\nhi\r\n".to_vec(),
        };
        let items = [
            Item::Mailbox {
                name: "Lists/rust".into(),
                uids: Some(SourceUids {
                    uid_validity: 5,
                    uid_next: 9,
                }),
            },
            Item::Mailbox {
                name: "INBOX".into(),
                uids: None,
            },
            Item::Subscribe("Lists".into()),
        ];
        for item in items {
            let mut out = Vec::new();
            write_item(&mut out, &item).unwrap();
            let line = String::from_utf8(out).unwrap();
            assert_eq!(parse_header(&line), Ok(Header::Item(item)));
        }
        let mut out = Vec::new();
        write_item(&mut out, &Item::Message(message.clone())).unwrap();
        let at = out.iter().position(|&b| b == b'\n').unwrap() + 1;
        let header = parse_header(std::str::from_utf8(&out[..at]).unwrap()).unwrap();
        let expected_size = message.raw.len() as u64;
        assert_eq!(&out[at..], message.raw.as_slice());
        let mut bare = message;
        bare.raw.clear();
        assert_eq!(header, Header::Message(bare, expected_size));
        assert!(parse_header("message\tx\n").is_err());
        assert!(parse_header("drop tables\n").is_err());
        assert!(parse_header("subscribe\ta\rb\n").is_err());
    }
}
