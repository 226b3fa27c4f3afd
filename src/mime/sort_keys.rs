//! What SORT and THREAD need of one message, worked out once at delivery
//! and stored beside it (the store's `sort_keys` table), so a SORT over
//! 100,000 messages reads small records and never parses a message.

use std::panic::catch_unwind;
use std::sync::OnceLock;

use mail_parser::{Addr, Address, HeaderValue, MessageParser};

use super::casemap::{base_subject, casemap};

/// The stored form's version; a record of another version is ignored (the
/// message then sorts as one with no header fields).
const SORT_KEYS_V1: u8 = 1;

/// A References header longer than this keeps its last ids: the nearest
/// ancestors, which are the ones that place the message in its thread.
pub const MAX_REFERENCES: usize = 256;
/// Longer header values are cut (at a character boundary): sorting never
/// looks that far, and a record stays small.
const MAX_TEXT: usize = 512;
/// Message-IDs longer than this are treated as absent.
const MAX_ID: usize = 998;

/// One message's sort and thread keys. Text keys are already in their
/// `i;unicode-casemap` form, so comparing two is a byte comparison.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SortKeys {
    /// The Date header as Unix seconds, if it is there and readable.
    pub date: Option<i64>,
    /// The base subject (RFC 5256 §2.1), casemapped.
    pub subject: String,
    /// Whether the subject marked a reply or forward (for THREAD).
    pub reply: bool,
    /// addr-mailbox of the first From, To and Cc address, casemapped.
    pub from: String,
    pub to: String,
    pub cc: String,
    /// RFC 5957: the display name of the first From/To address, or its
    /// addr-spec when it has none, casemapped.
    pub display_from: String,
    pub display_to: String,
    /// The Message-ID without its angle brackets, as written.
    pub message_id: Option<String>,
    /// The ids of References, oldest first; if it has none, the first id of
    /// In-Reply-To (RFC 5256 §3, REFERENCES step 1A).
    pub references: Vec<String>,
}

fn parser() -> &'static MessageParser {
    static PARSER: OnceLock<MessageParser> = OnceLock::new();
    PARSER.get_or_init(MessageParser::new)
}

fn cut(text: &str) -> &str {
    if text.len() <= MAX_TEXT {
        return text;
    }
    let mut end = MAX_TEXT;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

fn mailbox_of(addr: &Addr<'_>) -> String {
    let address = addr.address().unwrap_or_default();
    let local = address.rsplit_once('@').map_or(address, |(local, _)| local);
    casemap(cut(local))
}

fn display_of(addr: &Addr<'_>) -> String {
    match addr.name().map(str::trim).filter(|n| !n.is_empty()) {
        Some(name) => casemap(cut(name)),
        None => casemap(cut(addr.address().unwrap_or_default())),
    }
}

fn first<'a, 'x>(address: Option<&'a Address<'x>>) -> Option<&'a Addr<'x>> {
    address.and_then(Address::first)
}

fn valid_id(id: &str) -> Option<String> {
    let id = id.trim();
    (!id.is_empty() && id.len() <= MAX_ID && !id.contains(char::is_whitespace))
        .then(|| id.to_string())
}

fn ids(value: &HeaderValue<'_>) -> Vec<String> {
    value
        .as_text_list()
        .unwrap_or_default()
        .iter()
        .filter_map(|id| valid_id(id))
        .collect()
}

impl SortKeys {
    /// Reads the keys from a message's header.
    pub fn parse(raw: &[u8]) -> SortKeys {
        // mail-parser has debug_asserts on odd input; such a message sorts
        // as one without header fields rather than taking a thread down.
        let parsed = catch_unwind(|| parser().parse_headers(raw)).unwrap_or(None);
        let Some(message) = parsed else {
            return SortKeys::default();
        };
        let (subject, reply) = base_subject(message.subject().unwrap_or_default());
        let date = message
            .date()
            .filter(|d| (1..=12).contains(&d.month) && (1..=31).contains(&d.day))
            .filter(|d| d.hour < 24 && d.minute < 60 && d.second < 61)
            .map(|d| d.to_timestamp());
        let mut references = ids(message.references());
        if references.len() > MAX_REFERENCES {
            references.drain(..references.len() - MAX_REFERENCES);
        }
        if references.is_empty() {
            references.extend(ids(message.in_reply_to()).into_iter().take(1));
        }
        SortKeys {
            date,
            subject: casemap(cut(&subject)),
            reply,
            from: first(message.from()).map(mailbox_of).unwrap_or_default(),
            to: first(message.to()).map(mailbox_of).unwrap_or_default(),
            cc: first(message.cc()).map(mailbox_of).unwrap_or_default(),
            display_from: first(message.from()).map(display_of).unwrap_or_default(),
            display_to: first(message.to()).map(display_of).unwrap_or_default(),
            message_id: message.message_id().and_then(valid_id),
            references,
        }
    }

    /// Version, flags (bit 0 a date follows, bit 1 a reply, bit 2 a
    /// Message-ID follows), the date (i64), then length-prefixed (u32)
    /// strings: subject, from, to, cc, display from, display to, the
    /// Message-ID if any, then the number of references (u32) and each.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![SORT_KEYS_V1];
        let flags = u8::from(self.date.is_some())
            | u8::from(self.reply) << 1
            | u8::from(self.message_id.is_some()) << 2;
        out.push(flags);
        if let Some(date) = self.date {
            out.extend_from_slice(&date.to_le_bytes());
        }
        let put = |out: &mut Vec<u8>, s: &str| {
            out.extend_from_slice(&(s.len() as u32).to_le_bytes());
            out.extend_from_slice(s.as_bytes());
        };
        for text in [
            &self.subject,
            &self.from,
            &self.to,
            &self.cc,
            &self.display_from,
            &self.display_to,
        ] {
            put(&mut out, text);
        }
        if let Some(id) = &self.message_id {
            put(&mut out, id);
        }
        out.extend_from_slice(&(self.references.len() as u32).to_le_bytes());
        for id in &self.references {
            put(&mut out, id);
        }
        out
    }

    /// The base subject of a stored record, in place and as SORT compares
    /// it: what the store's subject order is keyed by, read without
    /// copying. None if the bytes are not a record this version wrote.
    /// A record that [`SortKeys::decode_some`] refuses has none, as it
    /// sorts there as one without header fields.
    pub fn stored_subject(bytes: &[u8]) -> Option<&[u8]> {
        SortKeys::decode_some(bytes, Wanted::NONE)?;
        let (&flags, rest) = bytes.get(1..)?.split_first()?;
        let rest = if flags & 1 != 0 { rest.get(8..)? } else { rest };
        let (len, rest) = rest.split_first_chunk::<4>()?;
        let subject = rest.get(..u32::from_le_bytes(*len) as usize)?;
        std::str::from_utf8(subject).ok()?;
        Some(subject)
    }

    /// None if the bytes are not a record this version wrote.
    pub fn decode(bytes: &[u8]) -> Option<SortKeys> {
        SortKeys::decode_some(bytes, Wanted::ALL)
    }

    /// Decodes the date, the reply mark and only the `wanted` parts,
    /// leaving the others empty: a SORT by one key over 100,000 messages
    /// then copies one string a message, or none. None if the bytes are
    /// not a record this version wrote, as far as they were read.
    pub fn decode_some(bytes: &[u8], wanted: Wanted) -> Option<SortKeys> {
        let mut rest = bytes;
        let mut take = |n: usize| -> Option<&[u8]> {
            let (head, tail) = rest.split_at_checked(n)?;
            rest = tail;
            Some(head)
        };
        if take(1)? != [SORT_KEYS_V1] {
            return None;
        }
        let flags = take(1)?[0];
        let mut keys = SortKeys {
            reply: flags & 2 != 0,
            ..SortKeys::default()
        };
        if flags & 1 != 0 {
            keys.date = Some(i64::from_le_bytes(take(8)?.try_into().ok()?));
        }
        fn string<'b>(take: &mut impl FnMut(usize) -> Option<&'b [u8]>) -> Option<&'b [u8]> {
            let len = u32::from_le_bytes(take(4)?.try_into().ok()?) as usize;
            take(len)
        }
        fn owned(bytes: &[u8]) -> Option<String> {
            String::from_utf8(bytes.to_vec()).ok()
        }
        let texts = [
            (Wanted::SUBJECT, &mut keys.subject),
            (Wanted::FROM, &mut keys.from),
            (Wanted::TO, &mut keys.to),
            (Wanted::CC, &mut keys.cc),
            (Wanted::DISPLAY_FROM, &mut keys.display_from),
            (Wanted::DISPLAY_TO, &mut keys.display_to),
        ];
        for (part, slot) in texts {
            let text = string(&mut take)?;
            if wanted.0 & part.0 != 0 {
                *slot = owned(text)?;
            }
        }
        if wanted.0 & Wanted::THREAD.0 == 0 {
            return Some(keys);
        }
        if flags & 4 != 0 {
            keys.message_id = Some(owned(string(&mut take)?)?);
        }
        let count = u32::from_le_bytes(take(4)?.try_into().ok()?) as usize;
        // Each reference costs at least four bytes, so a damaged count
        // cannot make this allocate more than the record's size.
        let mut references = Vec::with_capacity(count.min(bytes.len() / 4));
        for _ in 0..count {
            references.push(owned(string(&mut take)?)?);
        }
        keys.references = references;
        Some(keys)
    }
}

/// Which parts of a stored record [`SortKeys::decode_some`] copies out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wanted(u8);

impl Wanted {
    pub const NONE: Wanted = Wanted(0);
    pub const SUBJECT: Wanted = Wanted(1);
    pub const FROM: Wanted = Wanted(2);
    pub const TO: Wanted = Wanted(4);
    pub const CC: Wanted = Wanted(8);
    pub const DISPLAY_FROM: Wanted = Wanted(16);
    pub const DISPLAY_TO: Wanted = Wanted(32);
    /// The Message-ID and references.
    pub const THREAD: Wanted = Wanted(64);
    pub const ALL: Wanted = Wanted(127);
}

impl std::ops::BitOr for Wanted {
    type Output = Wanted;
    fn bitor(self, other: Wanted) -> Wanted {
        Wanted(self.0 | other.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_read_from_the_header() {
        let raw = b"From: =?UTF-8?Q?J=C3=B6rg?= <Joerg@Example.org>\r\n\
            To: bob@example.org, carol@example.org\r\n\
            Cc: \"Dan\" <dan@example.org>\r\n\
            Subject: Re: [list] =?UTF-8?B?w4RyZ2Vy?=\r\n\
            Date: Mon, 7 Feb 1994 21:52:25 -0800\r\n\
            Message-ID: <m1@example.org>\r\n\
            References: <r1@x> <r2@x>\r\n\
            In-Reply-To: <r9@x>\r\n\r\nbody";
        let keys = SortKeys::parse(raw);
        assert_eq!(keys.subject, casemap("Ärger"));
        assert!(keys.reply);
        assert_eq!(keys.date, Some(760_686_745));
        assert_eq!(keys.from, "JOERG");
        assert_eq!(keys.display_from, casemap("Jörg"));
        assert_eq!(keys.to, "BOB");
        assert_eq!(keys.display_to, "BOB@EXAMPLE.ORG");
        assert_eq!(keys.cc, "DAN");
        assert_eq!(keys.message_id.as_deref(), Some("m1@example.org"));
        assert_eq!(keys.references, ["r1@x", "r2@x"]);
        assert_eq!(SortKeys::decode(&keys.encode()), Some(keys.clone()));
        assert_eq!(
            SortKeys::stored_subject(&keys.encode()),
            Some(keys.subject.as_bytes())
        );
        let some = SortKeys::decode_some(&keys.encode(), Wanted::SUBJECT | Wanted::CC).unwrap();
        assert_eq!(
            some,
            SortKeys {
                date: keys.date,
                subject: keys.subject.clone(),
                reply: true,
                cc: keys.cc.clone(),
                ..SortKeys::default()
            }
        );
    }

    #[test]
    fn in_reply_to_stands_in_for_missing_references() {
        let keys = SortKeys::parse(b"Subject: x\r\nIn-Reply-To: <a@x> <b@x>\r\n\r\n");
        assert_eq!(keys.references, ["a@x"]);
        assert_eq!(keys.date, None);
        assert_eq!(keys.message_id, None);
        assert_eq!(SortKeys::decode(&keys.encode()), Some(keys));
    }

    #[test]
    fn damaged_records_are_refused() {
        let bytes = SortKeys::parse(b"Subject: hello\r\nReferences: <a@b>\r\n\r\n").encode();
        for end in 0..bytes.len() {
            assert_eq!(SortKeys::decode(&bytes[..end]), None, "cut at {end}");
        }
        // As a SORT by subject reads a record: whole up to the six texts
        // (the subject and five empty ones), the references not read.
        let texts_end = 2 + 6 * 4 + "HELLO".len();
        for end in 0..=bytes.len() {
            let expected = (end >= texts_end).then_some(&b"HELLO"[..]);
            assert_eq!(
                SortKeys::stored_subject(&bytes[..end]),
                expected,
                "cut at {end}"
            );
        }
        let mut huge = bytes.clone();
        let at = huge.len() - 4 - 4 - 3;
        huge[at..at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(SortKeys::decode(&huge), None);
        assert_eq!(SortKeys::decode(b"\x09"), None);
    }
}
