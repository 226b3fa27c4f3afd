//! FETCH and UID FETCH. ENVELOPE, BODYSTRUCTURE and section offsets were
//! worked out at delivery, so most items are lookups; only BINARY decodes.

use std::io::Write as _;
use std::ops::Range;

use crate::imap::parser::{FetchItem, MessageSet, Partial, Section, SectionText};
use crate::imap::response::{flag_list_recent, literal};
use crate::imap::session::{Session, State};
use crate::mime::{MessageInfo, PartKind};
use crate::net::Conn;
use crate::store::{FlagChange, Flags, MessageRecord};

/// Output is sent in pieces of about this size, so a FETCH of a whole large
/// mailbox never sits in memory at once.
const FLUSH_AT: usize = 64 * 1024;
/// Other sessions get a turn on the event loop this often.
const YIELD_EVERY: usize = 256;

/// Does fetching this item set \Seen (RFC 9051 §6.4.5)?
fn sets_seen(item: &FetchItem) -> bool {
    matches!(
        item,
        FetchItem::BodySection { peek: false, .. }
            | FetchItem::Binary { peek: false, .. }
            | FetchItem::Rfc822
            | FetchItem::Rfc822Text
    )
}

fn needs_raw(item: &FetchItem) -> bool {
    matches!(
        item,
        FetchItem::Rfc822
            | FetchItem::Rfc822Header
            | FetchItem::Rfc822Text
            | FetchItem::BodySection { .. }
            | FetchItem::Binary { .. }
            | FetchItem::BinarySize { .. }
    )
}

fn needs_info(item: &FetchItem) -> bool {
    needs_raw(item)
        || matches!(
            item,
            FetchItem::Envelope | FetchItem::Body | FetchItem::BodyStructure
        )
}

/// Why a message's data could not all be given.
#[derive(Default)]
struct Trouble {
    expunged: bool,
    unknown_cte: bool,
}

impl Session {
    pub(in crate::imap) async fn fetch(
        &mut self,
        tag: &str,
        uid: bool,
        set: &MessageSet,
        mut items: Vec<FetchItem>,
        changed_since: Option<u64>,
        conn: &mut Conn,
    ) {
        let Some(view) = self.view() else { return };
        let (mailbox, read_only) = (view.mailbox, view.read_only);
        let mut uids = self.uids_of(set, uid);
        if uid && !items.contains(&FetchItem::Uid) {
            items.insert(0, FetchItem::Uid);
        }
        if let Some(since) = changed_since {
            // RFC 7162 §3.1.4.1: CHANGEDSINCE implies MODSEQ. The view was
            // synced just before, so its MODSEQs are the store's.
            if !items.contains(&FetchItem::Modseq) {
                items.push(FetchItem::Modseq);
            }
            let State::Selected(view) = &self.state else {
                return;
            };
            uids.retain(|u| {
                view.seq_of(*u)
                    .is_none_or(|seq| view.modseq_at(seq as usize - 1) > since)
            });
        }
        if items
            .iter()
            .all(|i| matches!(i, FetchItem::Uid | FetchItem::Flags | FetchItem::Modseq))
        {
            return self.fetch_flags_from_view(tag, &uids, &items, conn).await;
        }
        let mut seen_now: Vec<u32> = Vec::new();
        if !read_only && items.iter().any(sets_seen) && !uids.is_empty() {
            let wanted = uids.clone();
            let change = FlagChange::Add(Flags::SEEN, Vec::new());
            match self
                .shared
                .store
                .write(move |tx| tx.change_flags(mailbox, &wanted, &change))
                .await
            {
                Ok(changed) => seen_now = changed.into_iter().map(|c| c.uid).collect(),
                Err(e) => return self.store_failed(tag, &e),
            }
        }
        let (low, high) = (
            uids.first().copied().unwrap_or(1),
            uids.last().copied().unwrap_or(0),
        );
        let snapshot = match self.shared.store.snapshot() {
            Ok(s) => s,
            Err(e) => return self.store_failed(tag, &e),
        };
        self.announce_keywords(&snapshot);
        let records = match snapshot.messages_between(mailbox, low, high) {
            Ok(r) => r,
            Err(e) => return self.store_failed(tag, &e),
        };
        let wants_content = items.iter().any(needs_info);
        let wants_raw = items.iter().any(needs_raw);
        let content = match wants_content.then(|| snapshot.content()).transpose() {
            Ok(c) => c,
            Err(e) => return self.store_failed(tag, &e),
        };
        let mut trouble = Trouble::default();
        let mut records = records.into_iter().peekable();
        for (n, &msg_uid) in uids.iter().enumerate() {
            while records.peek().is_some_and(|(u, _)| *u < msg_uid) {
                records.next();
            }
            let State::Selected(view) = &mut self.state else {
                return;
            };
            let Some(seq) = view.seq_of(msg_uid) else {
                continue;
            };
            let record = match records.peek() {
                Some((u, r)) if *u == msg_uid => r,
                _ => {
                    // Expunged by another session, and not yet reported:
                    // the client still has its number, so it gets what the
                    // view knows and NIL for the content (RFC 2180 §4.1.3),
                    // as Dovecot answers.
                    trouble.expunged = true;
                    render_gone(&mut self.out, &items, view, seq);
                    if !self.pace(n, conn).await {
                        return;
                    }
                    continue;
                }
            };
            let recent = view.is_recent(msg_uid);
            let flags_changed = seen_now.binary_search(&msg_uid).is_ok();
            if flags_changed {
                view.saw_flags(msg_uid, record);
            }
            let mut raw: Option<Vec<u8>> = None;
            let mut info: Option<MessageInfo> = None;
            if let Some(content) = &content {
                if wants_raw {
                    raw = content.blob(record.blob).ok().flatten();
                }
                if wants_content {
                    info = content
                        .parsed(record.blob)
                        .ok()
                        .flatten()
                        .and_then(|bytes| MessageInfo::decode(&bytes));
                    if info.is_none() {
                        // Stored by something that did not analyse it.
                        let bytes = raw
                            .clone()
                            .or_else(|| content.blob(record.blob).ok().flatten())
                            .unwrap_or_default();
                        info = Some(MessageInfo::parse(&bytes));
                    }
                }
                if (wants_raw && raw.is_none()) || info.is_none() {
                    trouble.expunged = true;
                    continue;
                }
            }
            let message = Message {
                uid: msg_uid,
                recent,
                record,
                raw: raw.as_deref().unwrap_or_default(),
                info: info.as_ref(),
            };
            let _ = write!(self.out, "* {seq} FETCH (");
            let mut first = true;
            for item in &items {
                if !first {
                    self.out.push(b' ');
                }
                first = false;
                render(&mut self.out, item, &message, &mut trouble);
            }
            if flags_changed && !items.contains(&FetchItem::Flags) {
                self.out.extend_from_slice(b" FLAGS ");
                flag_list_recent(&mut self.out, record.flags, &record.keywords, recent);
            }
            // RFC 7162 §3.1: with CONDSTORE, a FETCH that changed the flags
            // (\Seen) also says which message and at which MODSEQ.
            if flags_changed && self.condstore {
                if !items.contains(&FetchItem::Uid) {
                    let _ = write!(self.out, " UID {msg_uid}");
                }
                if !items.contains(&FetchItem::Modseq) {
                    let _ = write!(self.out, " MODSEQ ({})", record.modseq);
                }
            }
            self.out.extend_from_slice(b")\r\n");
            if !self.pace(n, conn).await {
                return;
            }
        }
        if trouble.unknown_cte {
            self.no(
                tag,
                "[UNKNOWN-CTE] A part has a content-transfer-encoding letterbox cannot decode",
            );
        } else if trouble.expunged {
            self.ok(tag, EXPUNGE_ISSUED);
        } else {
            self.ok(tag, "FETCH completed");
        }
    }
}

/// The tagged OK of a FETCH that named messages another session expunged.
const EXPUNGE_ISSUED: &str = "[EXPUNGEISSUED] Some messages were already expunged";

/// A FETCH response for a message gone from the store that the client still
/// sees: UID, FLAGS and MODSEQ as the view has them, NIL for content, and
/// nothing for the items that have no NIL form.
fn render_gone(out: &mut Vec<u8>, items: &[FetchItem], view: &crate::imap::view::View, seq: u32) {
    let index = seq as usize - 1;
    let uid = view.uids[index];
    let (flags, keywords) = view.flags_at(index);
    let mut parts: Vec<Vec<u8>> = Vec::new();
    for item in items {
        let mut part = Vec::new();
        match item {
            FetchItem::Uid => {
                let _ = write!(part, "UID {uid}");
            }
            FetchItem::Flags => {
                part.extend_from_slice(b"FLAGS ");
                flag_list_recent(&mut part, flags, keywords, view.is_recent(uid));
            }
            FetchItem::Modseq => {
                let _ = write!(part, "MODSEQ ({})", view.modseq_at(index));
            }
            FetchItem::Rfc822
            | FetchItem::Rfc822Header
            | FetchItem::Rfc822Text
            | FetchItem::BodySection { .. }
            | FetchItem::Binary { .. } => {
                let _ = write!(part, "{} NIL", item.response_name());
            }
            _ => continue,
        }
        parts.push(part);
    }
    let _ = write!(out, "* {seq} FETCH (");
    out.extend_from_slice(&parts.join(&b' '));
    out.extend_from_slice(b")\r\n");
}

impl Session {
    /// Between two messages of a long FETCH: sends what has piled up and
    /// lets other sessions run now and then. False if the client is gone.
    async fn pace(&mut self, n: usize, conn: &mut Conn) -> bool {
        if self.out.len() >= FLUSH_AT {
            if conn.write(&self.out).await.is_err() {
                return false;
            }
            self.out.clear();
        }
        if n % YIELD_EVERY == YIELD_EVERY - 1 {
            smol::future::yield_now().await;
        }
        true
    }

    /// FETCH of nothing but UID, FLAGS and MODSEQ, answered from the view (synced
    /// just before), without reading the store: the command clients send on
    /// every connect to learn what changed.
    async fn fetch_flags_from_view(
        &mut self,
        tag: &str,
        uids: &[u32],
        items: &[FetchItem],
        conn: &mut Conn,
    ) {
        let mut index = 0;
        let mut expunged = false;
        for (n, &uid) in uids.iter().enumerate() {
            let State::Selected(view) = &self.state else {
                return;
            };
            // Both lists are in UID order: walk forward instead of searching.
            while view.uids.get(index).is_some_and(|&u| u < uid) {
                index += 1;
            }
            if view.uids.get(index) != Some(&uid) {
                continue;
            }
            // Gone from the store but not yet reported: the view still has
            // its flags, and the tagged reply says it is gone.
            expunged |= view.vanished.binary_search(&uid).is_ok();
            let recent = view.is_recent(uid);
            let (flags, keywords) = view.flags_at(index);
            let modseq = view.modseq_at(index);
            let _ = write!(self.out, "* {} FETCH (", index + 1);
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    self.out.push(b' ');
                }
                match item {
                    FetchItem::Uid => {
                        let _ = write!(self.out, "UID {uid}");
                    }
                    FetchItem::Modseq => {
                        let _ = write!(self.out, "MODSEQ ({modseq})");
                    }
                    _ => {
                        self.out.extend_from_slice(b"FLAGS ");
                        flag_list_recent(&mut self.out, flags, keywords, recent);
                    }
                }
            }
            self.out.extend_from_slice(b")\r\n");
            if !self.pace(n, conn).await {
                return;
            }
        }
        if expunged {
            self.ok(tag, EXPUNGE_ISSUED);
        } else {
            self.ok(tag, "FETCH completed");
        }
    }
}

struct Message<'a> {
    uid: u32,
    recent: bool,
    record: &'a MessageRecord,
    raw: &'a [u8],
    info: Option<&'a MessageInfo>,
}

fn render(out: &mut Vec<u8>, item: &FetchItem, m: &Message<'_>, trouble: &mut Trouble) {
    let info = m.info;
    match item {
        FetchItem::Flags => {
            out.extend_from_slice(b"FLAGS ");
            flag_list_recent(out, m.record.flags, &m.record.keywords, m.recent);
        }
        FetchItem::Uid => {
            let _ = write!(out, "UID {}", m.uid);
        }
        FetchItem::Modseq => {
            let _ = write!(out, "MODSEQ ({})", m.record.modseq);
        }
        FetchItem::InternalDate => {
            let date =
                crate::clock::imap_datetime(m.record.internal_date, m.record.internal_date_offset);
            out.extend_from_slice(format!("INTERNALDATE \"{date}\"").as_bytes());
        }
        FetchItem::Rfc822Size => {
            let _ = write!(out, "RFC822.SIZE {}", m.record.size);
        }
        FetchItem::Envelope => {
            out.extend_from_slice(b"ENVELOPE ");
            out.extend_from_slice(info.map_or(&b"NIL"[..], |i| &i.envelope));
        }
        FetchItem::Body => {
            out.extend_from_slice(b"BODY ");
            out.extend_from_slice(info.map_or(&b"NIL"[..], |i| &i.body));
        }
        FetchItem::BodyStructure => {
            out.extend_from_slice(b"BODYSTRUCTURE ");
            out.extend_from_slice(info.map_or(&b"NIL"[..], |i| &i.bodystructure));
        }
        FetchItem::Rfc822 => {
            out.extend_from_slice(b"RFC822 ");
            literal(out, m.raw);
        }
        FetchItem::Rfc822Header => {
            out.extend_from_slice(b"RFC822.HEADER ");
            let range = info.and_then(|i| i.header_range(&[])).unwrap_or(0..0);
            literal(out, slice(m.raw, range));
        }
        FetchItem::Rfc822Text => {
            out.extend_from_slice(b"RFC822.TEXT ");
            let range = info.and_then(|i| i.text_range(&[])).unwrap_or(0..0);
            literal(out, slice(m.raw, range));
        }
        FetchItem::BodySection {
            section, partial, ..
        } => {
            out.extend_from_slice(item.response_name().as_bytes());
            out.push(b' ');
            match info.and_then(|i| section_bytes(m.raw, i, section)) {
                Some(bytes) => literal(out, clip(&bytes, partial)),
                None => out.extend_from_slice(b"NIL"),
            }
        }
        FetchItem::Binary { part, partial, .. } => {
            out.extend_from_slice(item.response_name().as_bytes());
            out.push(b' ');
            match info.map(|i| binary_bytes(m.raw, i, part)) {
                Some(Ok(bytes)) => {
                    let bytes = clip(&bytes, partial);
                    if bytes.contains(&0) {
                        out.push(b'~');
                    }
                    literal(out, bytes);
                }
                Some(Err(BinaryError::UnknownEncoding)) => {
                    trouble.unknown_cte = true;
                    out.extend_from_slice(b"NIL");
                }
                _ => out.extend_from_slice(b"NIL"),
            }
        }
        FetchItem::BinarySize { part } => {
            out.extend_from_slice(item.response_name().as_bytes());
            match info.map(|i| binary_bytes(m.raw, i, part)) {
                Some(Ok(bytes)) => out.extend_from_slice(format!(" {}", bytes.len()).as_bytes()),
                Some(Err(BinaryError::UnknownEncoding)) => {
                    trouble.unknown_cte = true;
                    out.extend_from_slice(b" NIL");
                }
                _ => out.extend_from_slice(b" NIL"),
            }
        }
    }
}

fn slice(raw: &[u8], range: Range<usize>) -> &[u8] {
    raw.get(range).unwrap_or_default()
}

/// `<offset.length>`: the part of the data asked for (RFC 9051 §6.4.5).
fn clip<'a>(bytes: &'a [u8], partial: &Option<Partial>) -> &'a [u8] {
    match partial {
        None => bytes,
        Some(p) => {
            let start = (p.offset as usize).min(bytes.len());
            let end = start.saturating_add(p.length as usize).min(bytes.len());
            &bytes[start..end]
        }
    }
}

/// The bytes of BODY[section], or None when the section does not exist.
fn section_bytes(raw: &[u8], info: &MessageInfo, section: &Section) -> Option<Vec<u8>> {
    let part = &section.part;
    let range = match &section.text {
        None => info.body_range(part)?,
        Some(SectionText::Mime) => info.mime_range(part)?,
        Some(SectionText::Header) => info.header_range(part)?,
        Some(SectionText::Text) => info.text_range(part)?,
        Some(SectionText::HeaderFields(names)) => {
            return Some(header_fields(
                raw.get(info.header_range(part)?)?,
                names,
                true,
            ))
        }
        Some(SectionText::HeaderFieldsNot(names)) => {
            return Some(header_fields(
                raw.get(info.header_range(part)?)?,
                names,
                false,
            ))
        }
    };
    raw.get(range).map(<[u8]>::to_vec)
}

/// The header fields named (or all but those named), with their
/// continuation lines, and the blank line that ends a header.
fn header_fields(header: &[u8], names: &[String], keep_named: bool) -> Vec<u8> {
    let mut out = Vec::new();
    let mut keep = false;
    for line in header.split_inclusive(|&b| b == b'\n') {
        let body = line.strip_suffix(b"\n").unwrap_or(line);
        let body = body.strip_suffix(b"\r").unwrap_or(body);
        if body.is_empty() {
            break;
        }
        if !matches!(body[0], b' ' | b'\t') {
            let name = body.split(|&b| b == b':').next().unwrap_or_default();
            let name = name.trim_ascii_end();
            let named = names
                .iter()
                .any(|n| n.as_bytes().eq_ignore_ascii_case(name));
            keep = named == keep_named;
        }
        if keep {
            out.extend_from_slice(body);
            out.extend_from_slice(b"\r\n");
        }
    }
    out.extend_from_slice(b"\r\n");
    out
}

enum BinaryError {
    NoSuchPart,
    UnknownEncoding,
}

/// BINARY[part]: the part's body with its content-transfer-encoding undone
/// (RFC 3516).
fn binary_bytes(raw: &[u8], info: &MessageInfo, part: &[u32]) -> Result<Vec<u8>, BinaryError> {
    if part.is_empty() {
        return Ok(raw.to_vec());
    }
    let found = info.part(part).ok_or(BinaryError::NoSuchPart)?;
    let range = info.body_range(part).ok_or(BinaryError::NoSuchPart)?;
    let body = raw.get(range).ok_or(BinaryError::NoSuchPart)?;
    if found.kind != PartKind::Leaf {
        return Ok(body.to_vec());
    }
    match found.encoding.as_str() {
        "" | "7bit" | "8bit" | "binary" => Ok(body.to_vec()),
        "base64" => {
            let compact: Vec<u8> = body
                .iter()
                .copied()
                .filter(|b| !b.is_ascii_whitespace())
                .collect();
            mail_parser::decoders::base64::base64_decode(&compact)
                .ok_or(BinaryError::UnknownEncoding)
        }
        "quoted-printable" => {
            mail_parser::decoders::quoted_printable::quoted_printable_decode(body)
                .ok_or(BinaryError::UnknownEncoding)
        }
        _ => Err(BinaryError::UnknownEncoding),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_field_selection() {
        let header = b"From: a@b\r\nSubject: one\r\n two\r\nTo: c@d\r\n\r\n";
        let names = vec!["subject".to_string(), "TO".to_string()];
        assert_eq!(
            header_fields(header, &names, true),
            b"Subject: one\r\n two\r\nTo: c@d\r\n\r\n"
        );
        assert_eq!(header_fields(header, &names, false), b"From: a@b\r\n\r\n");
    }

    #[test]
    fn partials_clip() {
        let p = |offset, length| Some(Partial { offset, length });
        assert_eq!(clip(b"0123456789", &p(2, 3)), b"234");
        assert_eq!(clip(b"0123", &p(2, 100)), b"23");
        assert_eq!(clip(b"0123", &p(10, 1)), b"");
    }

    #[test]
    fn binary_decodes_base64_and_quoted_printable() {
        let raw = b"Content-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\nContent-Transfer-Encoding: base64\r\n\r\nAAECAw==\r\n--x\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\ncaf=C3=A9\r\n--x\r\nContent-Transfer-Encoding: x-uuencode\r\n\r\nabc\r\n--x--\r\n";
        let info = MessageInfo::parse(raw);
        assert!(matches!(binary_bytes(raw, &info, &[1]), Ok(b) if b == [0, 1, 2, 3]));
        assert!(matches!(binary_bytes(raw, &info, &[2]), Ok(b) if b == "café".as_bytes()));
        assert!(matches!(
            binary_bytes(raw, &info, &[3]),
            Err(BinaryError::UnknownEncoding)
        ));
        assert!(matches!(
            binary_bytes(raw, &info, &[9]),
            Err(BinaryError::NoSuchPart)
        ));
    }
}
