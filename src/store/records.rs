//! The byte layout of every stored record.
//!
//! The database outlives the binary that wrote it, so every record starts with
//! a version byte and is decoded field by field. A newer binary must keep
//! decoding every version it ever wrote; a record with an unknown version is
//! reported as corrupt rather than guessed at.

use super::StoreError;

/// A flag set kept as bits: the five system flags IMAP defines, plus flags that
/// only letterbox itself uses and never shows a client.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Flags(pub u16);

impl Flags {
    pub const SEEN: Flags = Flags(1);
    pub const ANSWERED: Flags = Flags(1 << 1);
    pub const FLAGGED: Flags = Flags(1 << 2);
    pub const DELETED: Flags = Flags(1 << 3);
    pub const DRAFT: Flags = Flags(1 << 4);
    /// Set by POP3 in leave-on-server mode: the message stays for IMAP but POP3
    /// never lists it again.
    pub const POP3_HIDDEN: Flags = Flags(1 << 15);

    pub fn contains(self, other: Flags) -> bool {
        self.0 & other.0 == other.0
    }
    pub fn with(self, other: Flags) -> Flags {
        Flags(self.0 | other.0)
    }
    pub fn without(self, other: Flags) -> Flags {
        Flags(self.0 & !other.0)
    }
}

/// The special-use attribute of a mailbox (RFC 6154).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpecialUse {
    Sent,
    Drafts,
    Trash,
    Junk,
    Archive,
}

impl SpecialUse {
    fn code(self) -> u8 {
        match self {
            SpecialUse::Sent => 1,
            SpecialUse::Drafts => 2,
            SpecialUse::Trash => 3,
            SpecialUse::Junk => 4,
            SpecialUse::Archive => 5,
        }
    }
    fn from_code(code: u8) -> Option<Option<SpecialUse>> {
        Some(match code {
            0 => None,
            1 => Some(SpecialUse::Sent),
            2 => Some(SpecialUse::Drafts),
            3 => Some(SpecialUse::Trash),
            4 => Some(SpecialUse::Junk),
            5 => Some(SpecialUse::Archive),
            _ => return None,
        })
    }
    /// The IMAP attribute, as LIST shows it.
    pub fn attribute(self) -> &'static str {
        match self {
            SpecialUse::Sent => "\\Sent",
            SpecialUse::Drafts => "\\Drafts",
            SpecialUse::Trash => "\\Trash",
            SpecialUse::Junk => "\\Junk",
            SpecialUse::Archive => "\\Archive",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MailboxRecord {
    pub owner: String,
    pub name: String,
    pub uid_validity: u32,
    pub uid_next: u32,
    pub highest_modseq: u64,
    pub special_use: Option<SpecialUse>,
    /// Running totals, so STATUS and POP3 STAT never scan the messages.
    pub exists: u32,
    pub unseen: u32,
    pub deleted: u32,
    pub size: u64,
    /// Every keyword ever set on a message here, in the order first seen: the
    /// FLAGS that SELECT announces. Like Dovecot's, the list only grows.
    pub keywords: Vec<String>,
    /// The lowest UID no session has yet seen as \Recent (RFC 3501 §2.3.2):
    /// every message from here on is recent for the next session that
    /// selects the mailbox. One number per mailbox, not a flag per message.
    pub recent_horizon: u32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MessageRecord {
    pub blob: u64,
    pub size: u32,
    /// INTERNALDATE: seconds since the Unix epoch, and the offset east of UTC
    /// in minutes that the date was given in.
    pub internal_date: i64,
    pub internal_date_offset: i16,
    pub modseq: u64,
    pub flags: Flags,
    pub keywords: Vec<String>,
}

const MAILBOX_V1: u8 = 1;
/// Version 2 adds the keyword list.
const MAILBOX_V2: u8 = 2;
/// Version 3 drops the subscribed byte (subscriptions have their own table,
/// since a name can stay subscribed after its mailbox is deleted) and adds
/// the \Recent horizon.
const MAILBOX_V3: u8 = 3;
const MESSAGE_V1: u8 = 1;

impl MailboxRecord {
    pub fn encode(&self) -> Vec<u8> {
        let mut e = Encoder(Vec::with_capacity(64 + self.name.len()));
        e.u8(MAILBOX_V3);
        e.str(&self.owner);
        e.str(&self.name);
        e.u32(self.uid_validity);
        e.u32(self.uid_next);
        e.u64(self.highest_modseq);
        e.u8(self.special_use.map_or(0, SpecialUse::code));
        e.u32(self.exists);
        e.u32(self.unseen);
        e.u32(self.deleted);
        e.u64(self.size);
        e.u16(self.keywords.len() as u16);
        self.keywords.iter().for_each(|k| e.str(k));
        e.u32(self.recent_horizon);
        e.0
    }

    pub fn decode(bytes: &[u8]) -> Result<MailboxRecord, StoreError> {
        let mut d = Decoder(bytes);
        let record = (|| {
            let version = d.u8()?;
            if !(MAILBOX_V1..=MAILBOX_V3).contains(&version) {
                return None;
            }
            let (owner, name) = (d.str()?, d.str()?);
            let (uid_validity, uid_next, highest_modseq) = (d.u32()?, d.u32()?, d.u64()?);
            let special_use = SpecialUse::from_code(d.u8()?)?;
            if version < MAILBOX_V3 {
                // The old subscribed byte: read by the schema 3 upgrade
                // through `legacy_subscribed`, ignored here.
                d.u8()?;
            }
            let mut record = MailboxRecord {
                owner,
                name,
                uid_validity,
                uid_next,
                highest_modseq,
                special_use,
                exists: d.u32()?,
                unseen: d.u32()?,
                deleted: d.u32()?,
                size: d.u64()?,
                keywords: Vec::new(),
                // Nothing is recent in a mailbox from before \Recent was kept.
                recent_horizon: uid_next,
            };
            if version >= MAILBOX_V2 {
                for _ in 0..d.u16()? {
                    record.keywords.push(d.str()?);
                }
            }
            if version >= MAILBOX_V3 {
                record.recent_horizon = d.u32()?;
            }
            Some(record)
        })();
        record.ok_or_else(|| StoreError::Corrupt("mailbox record".into()))
    }
}

/// A mailbox record as versions 1 and 2 wrote it: a subscribed byte after
/// the special use; version 2 adds the keyword list. For upgrade tests.
#[cfg(test)]
pub fn encode_legacy(record: &MailboxRecord, version: u8, subscribed: bool) -> Vec<u8> {
    let mut e = Encoder(Vec::new());
    e.u8(version);
    e.str(&record.owner);
    e.str(&record.name);
    e.u32(record.uid_validity);
    e.u32(record.uid_next);
    e.u64(record.highest_modseq);
    e.u8(record.special_use.map_or(0, SpecialUse::code));
    e.u8(subscribed as u8);
    e.u32(record.exists);
    e.u32(record.unseen);
    e.u32(record.deleted);
    e.u64(record.size);
    if version == MAILBOX_V2 {
        e.u16(record.keywords.len() as u16);
        record.keywords.iter().for_each(|k| e.str(k));
    }
    e.0
}

/// Whether a version 1 or 2 mailbox record was subscribed; None for a
/// version 3 record (or a damaged one). For the schema 3 upgrade only.
pub fn legacy_subscribed(bytes: &[u8]) -> Option<bool> {
    let mut d = Decoder(bytes);
    let version = d.u8()?;
    if version != MAILBOX_V1 && version != MAILBOX_V2 {
        return None;
    }
    // Owner, name, UIDVALIDITY, UIDNEXT, HIGHESTMODSEQ, special use.
    d.str()?;
    d.str()?;
    d.u32()?;
    d.u32()?;
    d.u64()?;
    d.u8()?;
    Some(d.u8()? != 0)
}

impl MessageRecord {
    pub fn encode(&self) -> Vec<u8> {
        let mut e = Encoder(Vec::with_capacity(40));
        e.u8(MESSAGE_V1);
        e.u64(self.blob);
        e.u32(self.size);
        e.u64(self.internal_date as u64);
        e.u16(self.internal_date_offset as u16);
        e.u64(self.modseq);
        e.u16(self.flags.0);
        e.u16(self.keywords.len() as u16);
        for k in &self.keywords {
            e.str(k);
        }
        e.0
    }

    pub fn decode(bytes: &[u8]) -> Result<MessageRecord, StoreError> {
        let mut d = Decoder(bytes);
        let record = (|| {
            if d.u8()? != MESSAGE_V1 {
                return None;
            }
            let blob = d.u64()?;
            let size = d.u32()?;
            let internal_date = d.u64()? as i64;
            let internal_date_offset = d.u16()? as i16;
            let modseq = d.u64()?;
            let flags = Flags(d.u16()?);
            let count = d.u16()?;
            let mut keywords = Vec::with_capacity(count.min(64) as usize);
            for _ in 0..count {
                keywords.push(d.str()?);
            }
            Some(MessageRecord {
                blob,
                size,
                internal_date,
                internal_date_offset,
                modseq,
                flags,
                keywords,
            })
        })();
        record.ok_or_else(|| StoreError::Corrupt("message record".into()))
    }
}

/// Adds to `list` each of `new` it lacks (keywords compare without case).
/// Returns how many were added.
pub fn add_keywords(list: &mut Vec<String>, new: &[String]) -> usize {
    let before = list.len();
    for k in new {
        if !list.iter().any(|have| have.eq_ignore_ascii_case(k)) {
            list.push(k.clone());
        }
    }
    list.len() - before
}

/// UIDs expunged at one MODSEQ, for QRESYNC's VANISHED.
pub fn encode_uids(uids: &[u32]) -> Vec<u8> {
    let mut e = Encoder(Vec::with_capacity(1 + uids.len() * 4));
    e.u8(1);
    for &uid in uids {
        e.u32(uid);
    }
    e.0
}

/// The reverse of [`encode_uids`].
pub fn decode_uids(bytes: &[u8]) -> Result<Vec<u32>, StoreError> {
    match bytes.split_first() {
        Some((1, rest)) if rest.len() % 4 == 0 => Ok(rest
            .chunks_exact(4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect()),
        _ => Err(StoreError::Corrupt("expunged UID list".into())),
    }
}

pub(super) struct Encoder(pub(super) Vec<u8>);

impl Encoder {
    pub(super) fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    pub(super) fn u16(&mut self, v: u16) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    pub(super) fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    pub(super) fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    /// Strings here are mailbox names, user names and keywords, all far below
    /// 64 KiB: their parsers enforce much smaller limits.
    pub(super) fn str(&mut self, s: &str) {
        let len = s.len().min(u16::MAX as usize);
        self.u16(len as u16);
        self.0.extend_from_slice(&s.as_bytes()[..len]);
    }
}

pub(super) struct Decoder<'a>(pub(super) &'a [u8]);

impl Decoder<'_> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (head, rest) = self.0.split_first_chunk::<N>()?;
        self.0 = rest;
        Some(*head)
    }
    pub(super) fn u8(&mut self) -> Option<u8> {
        Some(self.take::<1>()?[0])
    }
    pub(super) fn u16(&mut self) -> Option<u16> {
        self.take().map(u16::from_le_bytes)
    }
    pub(super) fn u32(&mut self) -> Option<u32> {
        self.take().map(u32::from_le_bytes)
    }
    pub(super) fn u64(&mut self) -> Option<u64> {
        self.take().map(u64::from_le_bytes)
    }
    pub(super) fn str(&mut self) -> Option<String> {
        let len = self.u16()? as usize;
        if self.0.len() < len {
            return None;
        }
        let (s, rest) = self.0.split_at(len);
        self.0 = rest;
        String::from_utf8(s.to_vec()).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mailbox_round_trip() {
        let record = MailboxRecord {
            owner: "alice".into(),
            name: "Lists/rust".into(),
            uid_validity: 1_700_000_000,
            uid_next: 42,
            highest_modseq: 99,
            special_use: Some(SpecialUse::Junk),
            exists: 3,
            unseen: 1,
            deleted: 0,
            size: 12345,
            keywords: vec!["$Junk".into(), "todo".into()],
            recent_horizon: 40,
        };
        let bytes = record.encode();
        assert_eq!(MailboxRecord::decode(&bytes).unwrap(), record);
        assert_eq!(legacy_subscribed(&bytes), None);
        let old = |version, subscribed| encode_legacy(&record, version, subscribed);
        let v2 = MailboxRecord::decode(&old(2, true)).unwrap();
        assert_eq!(v2.keywords, record.keywords);
        assert_eq!(v2.recent_horizon, 42, "nothing is recent after an upgrade");
        assert_eq!(legacy_subscribed(&old(2, true)), Some(true));
        let v1 = MailboxRecord::decode(&old(1, false)).unwrap();
        assert_eq!(v1.keywords, Vec::<String>::new());
        assert_eq!(v1.size, record.size);
        assert_eq!(legacy_subscribed(&old(1, false)), Some(false));
    }

    #[test]
    fn message_round_trip() {
        let record = MessageRecord {
            blob: 7,
            size: 20_000,
            internal_date: -5,
            internal_date_offset: -480,
            modseq: 12,
            flags: Flags::SEEN.with(Flags::POP3_HIDDEN),
            keywords: vec!["$Forwarded".into(), "work".into()],
        };
        assert_eq!(MessageRecord::decode(&record.encode()).unwrap(), record);
    }

    #[test]
    fn expunged_uids_round_trip() {
        let uids = [1, 7, 4_000_000_000];
        assert_eq!(decode_uids(&encode_uids(&uids)).unwrap(), uids);
        assert!(decode_uids(&encode_uids(&uids)[..4]).is_err());
        assert!(decode_uids(&[2]).is_err());
    }

    #[test]
    fn truncated_and_unknown_versions_are_corrupt() {
        let bytes = MessageRecord {
            blob: 1,
            size: 1,
            internal_date: 0,
            internal_date_offset: 0,
            modseq: 1,
            flags: Flags::default(),
            keywords: vec!["x".into()],
        }
        .encode();
        for cut in 0..bytes.len() {
            assert!(MessageRecord::decode(&bytes[..cut]).is_err());
        }
        let mut newer = bytes.clone();
        newer[0] = 200;
        assert!(MessageRecord::decode(&newer).is_err());
        assert!(MailboxRecord::decode(&[9, 9, 9]).is_err());
    }
}
