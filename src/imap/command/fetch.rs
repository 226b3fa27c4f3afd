//! FETCH and UID FETCH. ENVELOPE, BODYSTRUCTURE and section offsets were
//! worked out at delivery, so most items are lookups; only BINARY decodes.
//!
//! Message bytes are never loaded whole: a body section goes out as a
//! literal whose bytes are read from the store one chunk at a time and
//! written as the socket drains, so a client that stops reading holds its
//! socket buffer and one chunk, whatever the message size.

use std::io::Write as _;
use std::ops::Range;

use crate::imap::parser::{FetchItem, MessageSet, Partial, Section, SectionText};
use crate::imap::response::{flag_list_recent, literal};
use crate::imap::session::{Session, State};
use crate::mime::transfer::{Decoder, Encoding};
use crate::mime::{MessageInfo, PartKind};
use crate::net::Conn;
use crate::store::{BlobId, Content, FlagChange, Flags, MessageRecord, StoreError, BLOB_CHUNK};

/// Output is sent in pieces of about this size, so a FETCH of a whole large
/// mailbox never sits in memory at once.
const FLUSH_AT: usize = 64 * 1024;
/// Other sessions get a turn on the event loop this often.
const YIELD_EVERY: usize = 256;
/// ... and this often (in chunks) while one large body streams to a fast
/// client, whose socket never makes us wait.
const YIELD_EVERY_CHUNKS: usize = 16;

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
    /// A stored body could not be read back intact.
    corrupt: bool,
    /// The store could not be read just now (an I/O error, a reopen).
    unavailable: bool,
}

impl Trouble {
    /// Notes a read error met before a message's line started.
    fn read_failed(&mut self, e: &StoreError) {
        match e {
            StoreError::Corrupt(_) => self.corrupt = true,
            _ => self.unavailable = true,
        }
    }
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
            let mut body: Option<Body<'_>> = None;
            let mut info: Option<MessageInfo> = None;
            if let Some(content) = &content {
                // Damage found before the message's line starts: that one
                // message is left out and the command answers NO
                // [CORRUPTION]; the session goes on.
                let damaged = |e: &StoreError| {
                    if !matches!(e, StoreError::Corrupt(_)) {
                        log::error!("{}: store: {e}", self.peer);
                        return;
                    }
                    let name = snapshot
                        .mailbox(mailbox)
                        .ok()
                        .flatten()
                        .map(|r| r.name)
                        .unwrap_or_default();
                    self.shared
                        .store
                        .report_damage(&self.user, &name, mailbox, msg_uid, e);
                };
                if wants_raw {
                    // Only the length is read here, and the checksums
                    // checked; the bytes are read as they are sent.
                    body = match content.blob_len(record.blob) {
                        Ok(Some(len)) => Some(Body {
                            content,
                            blob: record.blob,
                            len,
                        }),
                        // letterbox stores no empty message, but an empty
                        // one would have no chunks.
                        Ok(None) if record.size == 0 => Some(Body {
                            content,
                            blob: record.blob,
                            len: 0,
                        }),
                        Ok(None) => None,
                        Err(e) => {
                            damaged(&e);
                            trouble.read_failed(&e);
                            continue;
                        }
                    };
                    if let Some(b) = &body {
                        if let Err(e) = content.verify(b.blob, b.len) {
                            damaged(&e);
                            trouble.read_failed(&e);
                            continue;
                        }
                    }
                }
                if wants_content {
                    info = match content.parsed(record.blob) {
                        Ok(found) => found.and_then(|bytes| MessageInfo::decode(&bytes)),
                        Err(e) => {
                            damaged(&e);
                            trouble.read_failed(&e);
                            continue;
                        }
                    };
                    if info.is_none() {
                        // Stored by something that did not analyse it.
                        match content.blob(record.blob) {
                            Ok(bytes) => {
                                info = Some(MessageInfo::parse(&bytes.unwrap_or_default()))
                            }
                            Err(e) => {
                                damaged(&e);
                                trouble.read_failed(&e);
                                continue;
                            }
                        }
                    }
                }
                if (wants_raw && body.is_none()) || info.is_none() {
                    trouble.expunged = true;
                    continue;
                }
            }
            let message = Message {
                uid: msg_uid,
                recent,
                record,
                body,
                info: info.as_ref(),
            };
            let _ = write!(self.out, "* {seq} FETCH (");
            let mut first = true;
            for item in &items {
                if !first {
                    self.out.push(b' ');
                }
                first = false;
                let streamed = render(&mut self.out, item, &message, &mut trouble);
                if let (Some(range), Some(body)) = (streamed, &message.body) {
                    if !self.stream_body(conn, body, range).await {
                        return;
                    }
                }
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
        if trouble.unavailable {
            self.no(
                tag,
                "[UNAVAILABLE] Some messages could not be read just now; try again later",
            );
        } else if trouble.corrupt {
            self.no(
                tag,
                "[CORRUPTION] A message could not be read back intact; see the server log",
            );
        } else if trouble.unknown_cte {
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
    /// Sends what is queued, then the body bytes in `range`, one chunk at a
    /// time as the socket drains: the literal's announcement is already in
    /// `out`. False if the client is gone, or if the stored bytes turn out
    /// damaged part way: the literal cannot be finished truthfully, so the
    /// connection is closed.
    async fn stream_body(&mut self, conn: &mut Conn, body: &Body<'_>, range: Streamed) -> bool {
        if conn.write(&self.out).await.is_err() {
            return false;
        }
        self.out.clear();
        if let Some((encoding, window)) = range.decode {
            return self
                .stream_decoded(conn, body, range.range, encoding, window)
                .await;
        }
        let mut at = range.range.start;
        let mut pieces = 0;
        while at < range.range.end {
            let want = (range.range.end - at).min(BLOB_CHUNK as u64) as usize;
            let mut piece = match body.content.blob_piece(body.blob, body.len, at, want) {
                Ok(piece) if !piece.is_empty() => piece,
                Ok(_) | Err(_) => {
                    log::error!(
                        "{}: message body {} could not be read back whole; closing the connection mid-literal",
                        self.peer,
                        body.blob
                    );
                    conn.close().await;
                    return false;
                }
            };
            at += piece.len() as u64;
            if range.nul_to_80 {
                nul_to_80(&mut piece);
            }
            if conn.write(&piece).await.is_err() {
                return false;
            }
            pieces += 1;
            if pieces % YIELD_EVERY_CHUNKS == 0 {
                smol::future::yield_now().await;
            }
        }
        true
    }

    /// Streams the decoded bytes `window` of the encoded part at `range`
    /// (BINARY[part]<partial>), decoding one chunk at a time. The literal's
    /// size came from [`scan_decoded`] over the same bytes.
    async fn stream_decoded(
        &mut self,
        conn: &mut Conn,
        body: &Body<'_>,
        range: Range<u64>,
        encoding: Encoding,
        window: Range<u64>,
    ) -> bool {
        let mut decoder = Decoder::new(encoding);
        let mut decoded = Vec::new();
        let mut position = 0u64;
        let mut sent = 0u64;
        let mut at = range.start;
        let mut pieces = 0;
        let mut ended = false;
        while position < window.end && !ended {
            decoded.clear();
            if at < range.end {
                let want = (range.end - at).min(BLOB_CHUNK as u64) as usize;
                match body.content.blob_piece(body.blob, body.len, at, want) {
                    Ok(piece) if !piece.is_empty() => {
                        at += piece.len() as u64;
                        if decoder.feed(&piece, &mut decoded).is_err() {
                            break;
                        }
                    }
                    Ok(_) | Err(_) => break,
                }
            } else {
                std::mem::replace(&mut decoder, Decoder::new(encoding)).finish(&mut decoded);
                ended = true;
            }
            let start = window
                .start
                .saturating_sub(position)
                .min(decoded.len() as u64);
            let end = window
                .end
                .saturating_sub(position)
                .min(decoded.len() as u64);
            position += decoded.len() as u64;
            if start < end {
                sent += end - start;
                if conn
                    .write(&decoded[start as usize..end as usize])
                    .await
                    .is_err()
                {
                    return false;
                }
            }
            pieces += 1;
            if pieces % YIELD_EVERY_CHUNKS == 0 {
                smol::future::yield_now().await;
            }
        }
        if sent != window.end - window.start {
            log::error!(
                "{}: message body {} did not decode as it did a moment ago; closing the connection mid-literal",
                self.peer,
                body.blob
            );
            conn.close().await;
            return false;
        }
        true
    }

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
    body: Option<Body<'a>>,
    info: Option<&'a MessageInfo>,
}

/// Where a message's bytes are, and how many there are.
struct Body<'a> {
    content: &'a Content,
    blob: BlobId,
    len: u64,
}

impl Body<'_> {
    /// The bytes of `range`, in memory: for the parts that are small or
    /// must be whole (a header to filter, a part to decode).
    fn read(&self, range: Range<usize>, trouble: &mut Trouble) -> Option<Vec<u8>> {
        match self
            .content
            .blob_range(self.blob, range.start as u64..range.end as u64)
        {
            Ok(bytes) => Some(bytes),
            Err(e) => {
                log::error!("store: message body {}: {e}", self.blob);
                trouble.corrupt = true;
                None
            }
        }
    }

    /// Whether the bytes of `range` hold a NUL, read chunk by chunk.
    fn has_nul(&self, range: &Range<u64>, trouble: &mut Trouble) -> bool {
        let mut at = range.start;
        while at < range.end {
            let want = (range.end - at).min(BLOB_CHUNK as u64) as usize;
            match self.content.blob_piece(self.blob, self.len, at, want) {
                Ok(piece) if !piece.is_empty() => {
                    if piece.contains(&0) {
                        return true;
                    }
                    at += piece.len() as u64;
                }
                Ok(_) | Err(_) => {
                    trouble.corrupt = true;
                    return false;
                }
            }
        }
        false
    }
}

/// A body range to stream after what `render` wrote (which ends with the
/// literal's announcement).
struct Streamed {
    range: Range<u64>,
    /// NUL may not appear in an IMAP literal (RFC 9051 §4.3); like Dovecot,
    /// BODY and RFC822 send it as 0x80. BINARY sends a literal8 instead.
    nul_to_80: bool,
    /// BINARY of an encoded part: `range` is decoded, and the decoded bytes
    /// in this window are sent.
    decode: Option<(Encoding, Range<u64>)>,
}

fn nul_to_80(bytes: &mut [u8]) {
    for b in bytes.iter_mut().filter(|b| **b == 0) {
        *b = 0x80;
    }
}

/// A literal of in-memory body bytes, with NUL sent as 0x80.
fn body_literal(out: &mut Vec<u8>, mut bytes: Vec<u8>) {
    nul_to_80(&mut bytes);
    literal(out, &bytes);
}

/// Announces a literal of `range` (after `<partial>`), to be streamed.
fn stream_literal(out: &mut Vec<u8>, range: Range<u64>, binary: bool) -> Streamed {
    if binary {
        out.push(b'~');
    }
    let _ = write!(out, "{{{}}}\r\n", range.end - range.start);
    Streamed {
        range,
        nul_to_80: !binary,
        decode: None,
    }
}

/// Writes one FETCH item into `out`. A body range that must be streamed is
/// announced in `out` and returned: the caller sends `out`, then the bytes.
fn render(
    out: &mut Vec<u8>,
    item: &FetchItem,
    m: &Message<'_>,
    trouble: &mut Trouble,
) -> Option<Streamed> {
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
            let len = m.body.as_ref().map_or(0, |b| b.len);
            return Some(stream_literal(out, 0..len, false));
        }
        FetchItem::Rfc822Header => {
            out.extend_from_slice(b"RFC822.HEADER ");
            let range = info.and_then(|i| i.header_range(&[])).unwrap_or(0..0);
            return Some(stream_literal(out, within(m, range), false));
        }
        FetchItem::Rfc822Text => {
            out.extend_from_slice(b"RFC822.TEXT ");
            let range = info.and_then(|i| i.text_range(&[])).unwrap_or(0..0);
            return Some(stream_literal(out, within(m, range), false));
        }
        FetchItem::BodySection {
            section, partial, ..
        } => {
            out.extend_from_slice(item.response_name().as_bytes());
            out.push(b' ');
            match info.and_then(|i| section_bytes(m, i, section, trouble)) {
                Some(SectionBytes::Range(range)) => {
                    return Some(stream_literal(out, clip_range(range, partial), false));
                }
                Some(SectionBytes::Built(bytes)) => {
                    body_literal(out, clip(&bytes, partial).to_vec());
                }
                None => out.extend_from_slice(b"NIL"),
            }
        }
        FetchItem::Binary { part, partial, .. } => {
            out.extend_from_slice(item.response_name().as_bytes());
            out.push(b' ');
            match info.map(|i| binary_bytes(m, i, part)) {
                Some(Ok(BinaryBody::Range(range))) => {
                    let range = clip_range(range, partial);
                    let binary = m.body.as_ref().is_some_and(|b| b.has_nul(&range, trouble));
                    let mut streamed = stream_literal(out, range, binary);
                    streamed.nul_to_80 = false;
                    return Some(streamed);
                }
                Some(Ok(BinaryBody::Encoded { range, encoding })) => {
                    let body = m.body.as_ref()?;
                    match scan_decoded(body, &range, encoding, partial, trouble) {
                        Ok((_, window, nul)) => {
                            if nul {
                                out.push(b'~');
                            }
                            let _ = write!(out, "{{{}}}\r\n", window.end - window.start);
                            return Some(Streamed {
                                range,
                                nul_to_80: false,
                                decode: Some((encoding, window)),
                            });
                        }
                        Err(BinaryError::UnknownEncoding) => {
                            trouble.unknown_cte = true;
                            out.extend_from_slice(b"NIL");
                        }
                        Err(BinaryError::NoSuchPart) => out.extend_from_slice(b"NIL"),
                    }
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
            match info.map(|i| binary_bytes(m, i, part)) {
                Some(Ok(BinaryBody::Range(range))) => {
                    out.extend_from_slice(format!(" {}", range.end - range.start).as_bytes());
                }
                Some(Ok(BinaryBody::Encoded { range, encoding })) => {
                    let scanned = m
                        .body
                        .as_ref()
                        .ok_or(BinaryError::NoSuchPart)
                        .and_then(|body| scan_decoded(body, &range, encoding, &None, trouble));
                    match scanned {
                        Ok((size, _, _)) => out.extend_from_slice(format!(" {size}").as_bytes()),
                        Err(BinaryError::UnknownEncoding) => {
                            trouble.unknown_cte = true;
                            out.extend_from_slice(b" NIL");
                        }
                        Err(BinaryError::NoSuchPart) => out.extend_from_slice(b" NIL"),
                    }
                }
                Some(Err(BinaryError::UnknownEncoding)) => {
                    trouble.unknown_cte = true;
                    out.extend_from_slice(b" NIL");
                }
                _ => out.extend_from_slice(b" NIL"),
            }
        }
    }
    None
}

/// A range of the message, clipped to its bytes.
fn within(m: &Message<'_>, range: Range<usize>) -> Range<u64> {
    let len = m.body.as_ref().map_or(0, |b| b.len);
    let end = (range.end as u64).min(len);
    (range.start as u64).min(end)..end
}

/// `<offset.length>`: the part of the data asked for (RFC 9051 §6.4.5).
fn clip<'a>(bytes: &'a [u8], partial: &Option<Partial>) -> &'a [u8] {
    let range = clip_range(0..bytes.len() as u64, partial);
    &bytes[range.start as usize..range.end as usize]
}

/// [`clip`] for a range of the message.
fn clip_range(range: Range<u64>, partial: &Option<Partial>) -> Range<u64> {
    match partial {
        None => range,
        Some(p) => {
            let start = range
                .start
                .saturating_add(u64::from(p.offset))
                .min(range.end);
            let end = start.saturating_add(u64::from(p.length)).min(range.end);
            start..end
        }
    }
}

/// What BODY[section] sends: a range of the message, or bytes built from it.
enum SectionBytes {
    Range(Range<u64>),
    Built(Vec<u8>),
}

/// The bytes of BODY[section], or None when the section does not exist.
fn section_bytes(
    m: &Message<'_>,
    info: &MessageInfo,
    section: &Section,
    trouble: &mut Trouble,
) -> Option<SectionBytes> {
    let part = &section.part;
    let range = match &section.text {
        None => info.body_range(part)?,
        Some(SectionText::Mime) => info.mime_range(part)?,
        Some(SectionText::Header) => info.header_range(part)?,
        Some(SectionText::Text) => info.text_range(part)?,
        Some(SectionText::HeaderFields(names)) => {
            let header = m.body.as_ref()?.read(info.header_range(part)?, trouble)?;
            return Some(SectionBytes::Built(header_fields(&header, names, true)));
        }
        Some(SectionText::HeaderFieldsNot(names)) => {
            let header = m.body.as_ref()?.read(info.header_range(part)?, trouble)?;
            return Some(SectionBytes::Built(header_fields(&header, names, false)));
        }
    };
    let len = m.body.as_ref()?.len;
    if range.end as u64 > len {
        return None;
    }
    Some(SectionBytes::Range(range.start as u64..range.end as u64))
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

/// BINARY[part]'s content: a range of the message, sent as it is or
/// decoded on the way (both streamed like BODY[]).
enum BinaryBody {
    Range(Range<u64>),
    Encoded {
        range: Range<u64>,
        encoding: Encoding,
    },
}

/// BINARY[part]: the part's body with its content-transfer-encoding undone
/// (RFC 3516).
fn binary_bytes(
    m: &Message<'_>,
    info: &MessageInfo,
    part: &[u32],
) -> Result<BinaryBody, BinaryError> {
    let body = m.body.as_ref().ok_or(BinaryError::NoSuchPart)?;
    if part.is_empty() {
        return Ok(BinaryBody::Range(0..body.len));
    }
    let found = info.part(part).ok_or(BinaryError::NoSuchPart)?;
    let range = info.body_range(part).ok_or(BinaryError::NoSuchPart)?;
    if range.end as u64 > body.len {
        return Err(BinaryError::NoSuchPart);
    }
    let encoding = found.encoding.as_str();
    let range = range.start as u64..range.end as u64;
    if found.kind != PartKind::Leaf || matches!(encoding, "" | "7bit" | "8bit" | "binary") {
        return Ok(BinaryBody::Range(range));
    }
    match Encoding::from_name(encoding) {
        Some(encoding) => Ok(BinaryBody::Encoded { range, encoding }),
        None => Err(BinaryError::UnknownEncoding),
    }
}

/// Decodes the part at `range` once without keeping it, as BINARY must
/// announce its size before sending: returns the decoded size, the window
/// `<partial>` picks from it, and whether that window holds a NUL.
fn scan_decoded(
    body: &Body<'_>,
    range: &Range<u64>,
    encoding: Encoding,
    partial: &Option<Partial>,
    trouble: &mut Trouble,
) -> Result<(u64, Range<u64>, bool), BinaryError> {
    // The window as asked for; it is clipped to the size at the end.
    let wanted = clip_range(0..u64::MAX, partial);
    let mut decoder = Decoder::new(encoding);
    let mut decoded = Vec::new();
    let mut size = 0u64;
    let mut nul = false;
    let mut account = |decoded: &[u8], size: &mut u64| {
        if !nul {
            let start = wanted.start.saturating_sub(*size).min(decoded.len() as u64) as usize;
            let end = wanted.end.saturating_sub(*size).min(decoded.len() as u64) as usize;
            nul = decoded[start..end].contains(&0);
        }
        *size += decoded.len() as u64;
    };
    let mut at = range.start;
    while at < range.end {
        let want = (range.end - at).min(BLOB_CHUNK as u64) as usize;
        let piece = match body.content.blob_piece(body.blob, body.len, at, want) {
            Ok(piece) if !piece.is_empty() => piece,
            Ok(_) | Err(_) => {
                trouble.corrupt = true;
                return Err(BinaryError::NoSuchPart);
            }
        };
        at += piece.len() as u64;
        decoded.clear();
        decoder
            .feed(&piece, &mut decoded)
            .map_err(|_| BinaryError::UnknownEncoding)?;
        account(&decoded, &mut size);
    }
    decoded.clear();
    decoder.finish(&mut decoded);
    account(&decoded, &mut size);
    Ok((size, clip_range(0..size, partial), nul))
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
    fn partial_ranges_clip_inside_the_section() {
        let p = |offset, length| Some(Partial { offset, length });
        assert_eq!(clip_range(100..200, &p(10, 5)), 110..115);
        assert_eq!(clip_range(100..200, &p(90, 50)), 190..200);
        assert_eq!(clip_range(100..200, &p(500, 1)), 200..200);
        assert_eq!(clip_range(100..200, &None), 100..200);
    }
}
