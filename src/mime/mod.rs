//! Delivery-time MIME indexing: one parse per message produces everything
//! IMAP FETCH needs (ENVELOPE, BODY, BODYSTRUCTURE, part offsets) so later
//! fetches are lookups.
//!
//! mail-parser finds the structure and offsets; header values are re-read
//! from the raw bytes because IMAP wants them undecoded. Work is bounded:
//! entities nested deeper than [`MAX_DEPTH`] or beyond the first
//! [`MAX_PARTS`] are not descended into. A multipart or message/rfc822 cut
//! off that way (or a message/rfc822 with a base64/quoted-printable encoding,
//! which RFC 2046 forbids and whose offsets would not be raw offsets) is
//! reported as an opaque "application/octet-stream" leaf, because a
//! "message" "rfc822" body without envelope would break clients' parsers.
//! Children of a multipart beyond the part budget are left out; their bytes
//! stay inside the parent's body.
//!
//! Where the RFCs leave room the output follows Dovecot: types, subtypes and
//! parameters as written; text/* without a charset gets ("charset"
//! "us-ascii"); md5 is the Content-MD5 value; sizes are stored bytes and line
//! counts are LF counts, so the line break before a boundary (part of the
//! delimiter) is not in the body. The missing-encoding default is "7BIT"
//! (Dovecot writes "7bit"; the RFC examples use upper case).
//!
//! Known limitation: mail-parser does not look for the enclosing boundary
//! while reading an encapsulated message's header, so a message/rfc822 part
//! whose body is empty or header-only swallows the sibling parts after it.
//! Offsets stay inside the parent; those siblings are just not listed.

pub mod casemap;
mod header;
pub(crate) mod imap_syntax;
pub(crate) mod sort_keys;
pub mod transfer;

pub use sort_keys::{SortKeys, Wanted};

use mail_parser::{DateTime, Message, MessageParser, PartType};
use std::ops::Range;
use std::sync::OnceLock;

/// Entities nested deeper than this are opaque.
pub const MAX_DEPTH: u32 = 32;
/// MIME entities examined per message.
pub const MAX_PARTS: usize = 1000;
const FORMAT_VERSION: u8 = 1;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MessageInfo {
    /// IMAP ENVELOPE as it appears after "ENVELOPE " in a FETCH response: a parenthesized list.
    pub envelope: Vec<u8>,
    /// IMAP BODYSTRUCTURE with extension data (what follows "BODYSTRUCTURE ").
    pub bodystructure: Vec<u8>,
    /// IMAP BODY (the non-extensible form, what follows "BODY ").
    pub body: Vec<u8>,
    /// Every MIME part, depth-first, the root first. Offsets are byte offsets into the raw message.
    pub parts: Vec<Part>,
    /// Date: header as seconds since the Unix epoch (UTC), if it parses.
    pub sent_date: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartKind {
    Multipart,
    /// message/rfc822 or message/global whose encapsulated message was indexed.
    Message,
    Leaf,
}

/// One addressable IMAP section.
///
/// Numbering follows RFC 9051 §6.4.5, and every section a client can name has
/// its own entry, so FETCH never has to walk the tree:
///
/// * The root (`section == []`) is the whole message: `header_start == 0`,
///   `header_start..body_start` is BODY[HEADER], `body_start..body_end` is
///   BODY[TEXT].
/// * Children of a multipart are `S.1 ..= S.n`. For them
///   `header_start..body_start` is the MIME header (BODY[S.MIME], blank line
///   included) and `body_start..body_end` is BODY[S].
/// * A message/rfc822 (or message/global) part at `S` has kind `Message`; its
///   body is the encapsulated message, so `body_start..inner_body_start` is
///   BODY[S.HEADER] and `inner_body_start..body_end` is BODY[S.TEXT]. The
///   encapsulated message is numbered from `S` exactly as the top-level
///   message is numbered from `[]`: its multipart children are `S.1, S.2, ...`,
///   and the encapsulated message itself gets no entry of its own.
/// * A message (top-level or encapsulated, at prefix `P`) that is not
///   multipart gets an extra entry `P.1` for its body, with the same offsets
///   as the message: BODY[P.1] is the body and BODY[P.1.MIME] is the
///   message's header (what Dovecot returns). If that body is itself a
///   message/rfc822, numbering continues under `P.1`.
/// * A multipart without any recognisable child gets one synthetic empty
///   text/plain child (all offsets equal to the multipart's `body_end`), the
///   same placeholder BODYSTRUCTURE shows for it.
///
/// `parts` is sorted by `section` (depth-first order is lexicographic order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    /// IMAP section number path: root = [], "1.2" = [1,2].
    pub section: Vec<u32>,
    pub header_start: u32,
    pub body_start: u32,
    pub body_end: u32,
    /// For `PartKind::Message`: where the encapsulated message's body starts.
    /// Equal to `body_start` for other kinds.
    pub inner_body_start: u32,
    pub kind: PartKind,
    /// Content-Transfer-Encoding, lowercase ("7bit" when absent or invalid).
    pub encoding: String,
    /// Lowercase "type/subtype" as reported in BODYSTRUCTURE.
    pub content_type: String,
    /// The charset parameter, as written, if present.
    pub charset: Option<String>,
}

/// One MIME entity while indexing; offsets are already clamped so that
/// `hs <= bs <= be <= raw.len()` and children lie inside their parent's body.
#[derive(Debug)]
struct Entity {
    hs: u32,
    bs: u32,
    be: u32,
    hdr: header::MimeHeader,
    shape: Shape,
}

#[derive(Debug)]
enum Shape {
    Leaf,
    Multipart(Vec<Entity>),
    /// The encapsulated message, spanning the whole body.
    Message(Box<Entity>),
}

fn is_message_type(t: &[u8], s: &[u8]) -> bool {
    t.eq_ignore_ascii_case(b"message")
        && (s.eq_ignore_ascii_case(b"rfc822") || s.eq_ignore_ascii_case(b"global"))
}

impl Entity {
    /// Reported type and subtype, and whether the real type was hidden
    /// because the entity's structure was not indexed.
    fn media(&self) -> (&[u8], &[u8], bool) {
        match (&self.hdr.ctype, &self.shape) {
            (Some((t, s)), Shape::Leaf)
                if t.eq_ignore_ascii_case(b"multipart") || is_message_type(t, s) =>
            {
                (b"application", b"octet-stream", true)
            }
            (Some((t, s)), _) => (t, s, false),
            (None, _) => (b"text", b"plain", false),
        }
    }

    fn part(&self, section: Vec<u32>) -> Part {
        let (t, s, opaque) = self.media();
        let (kind, inner_body_start) = match &self.shape {
            Shape::Leaf => (PartKind::Leaf, self.bs),
            Shape::Multipart(_) => (PartKind::Multipart, self.bs),
            Shape::Message(inner) => (PartKind::Message, inner.bs),
        };
        let lossy = |v: &[u8]| String::from_utf8_lossy(v).to_ascii_lowercase();
        Part {
            section,
            header_start: self.hs,
            body_start: self.bs,
            body_end: self.be,
            inner_body_start,
            kind,
            encoding: self.hdr.cte.as_deref().map_or("7bit".into(), lossy),
            content_type: format!("{}/{}", lossy(t), lossy(s)),
            charset: (!opaque)
                .then(|| self.hdr.param("charset"))
                .flatten()
                .map(|c| String::from_utf8_lossy(c).into_owned()),
        }
    }
}

struct Builder<'a> {
    raw: &'a [u8],
    count: usize,
}

impl Builder<'_> {
    /// Converts mail-parser's part `idx` of `msg`, keeping it inside `lo..hi`.
    /// `whole` forces the entity to span `lo..hi` (a top-level or encapsulated
    /// message).
    fn build(
        &mut self,
        msg: &Message<'_>,
        idx: usize,
        (lo, hi): (usize, usize),
        whole: bool,
        depth: u32,
        in_digest: bool,
    ) -> Option<Entity> {
        let p = msg.parts.get(idx)?;
        let fit = |v: u32, min: usize| (v as usize).max(min).min(hi);
        let hs = if whole { lo } else { fit(p.offset_header, lo) };
        let bs = fit(p.offset_body, hs);
        let be = if whole { hi } else { fit(p.offset_end, bs) };
        self.count += 1;
        let hdr = header::MimeHeader::parse(self.raw.get(hs..bs).unwrap_or_default(), in_digest);
        let room = depth < MAX_DEPTH && self.count < MAX_PARTS;
        let identity = hdr.cte.as_deref().is_none_or(|c| {
            [&b"7bit"[..], b"8bit", b"binary"]
                .iter()
                .any(|k| c.eq_ignore_ascii_case(k))
        });
        let shape = match (&hdr.ctype, &p.body) {
            _ if !room => Shape::Leaf,
            (Some((t, s)), body) if t.eq_ignore_ascii_case(b"multipart") => {
                let digest = s.eq_ignore_ascii_case(b"digest");
                let mut kids = Vec::new();
                if let PartType::Multipart(ids) = body {
                    for &id in ids {
                        if self.count >= MAX_PARTS {
                            break;
                        }
                        kids.extend(self.build(
                            msg,
                            id as usize,
                            (bs, be),
                            false,
                            depth + 1,
                            digest,
                        ));
                    }
                }
                if kids.is_empty() {
                    kids.push(self.raw_leaf(be, be));
                }
                Shape::Multipart(kids)
            }
            (Some((t, s)), body) if is_message_type(t, s) && identity => {
                // Only trust a nested parse that starts where this body starts;
                // anything else (e.g. an empty body) is indexed as a plain leaf.
                let inner = match body {
                    PartType::Message(m)
                        if m.parts
                            .first()
                            .is_some_and(|r| r.offset_header as usize == bs) =>
                    {
                        self.build(m, 0, (bs, be), true, depth + 1, false)
                    }
                    _ => None,
                };
                Shape::Message(Box::new(inner.unwrap_or_else(|| self.raw_leaf(bs, be))))
            }
            _ => Shape::Leaf,
        };
        Some(Entity {
            hs: hs as u32,
            bs: bs as u32,
            be: be as u32,
            hdr,
            shape,
        })
    }

    /// A leaf found without mail-parser: header up to the first blank line.
    fn raw_leaf(&mut self, lo: usize, hi: usize) -> Entity {
        self.count += 1;
        let bs = header::header_end(self.raw, lo, hi);
        Entity {
            hs: lo as u32,
            bs: bs as u32,
            be: hi as u32,
            hdr: header::MimeHeader::parse(self.raw.get(lo..bs).unwrap_or_default(), false),
            shape: Shape::Leaf,
        }
    }
}

/// Drops mail-parser's tree without recursion: its derived Drop recurses once
/// per nested message/rfc822, and ~10k levels (a few hundred KB of input)
/// overflow a 2 MiB thread stack.
fn dismantle(msg: Message<'_>) {
    let mut stack = vec![msg];
    while let Some(mut m) = stack.pop() {
        for part in m.parts.drain(..) {
            if let PartType::Message(inner) = part.body {
                stack.push(inner);
            }
        }
    }
}

/// Newline counts at every entity boundary, from one pass over the message,
/// so nested parts do not rescan the same bytes.
struct LineIndex {
    marks: Vec<(u32, u32)>,
}

impl LineIndex {
    fn new(raw: &[u8], root: &Entity) -> Self {
        fn collect(e: &Entity, out: &mut Vec<u32>) {
            out.extend([e.bs, e.be]);
            match &e.shape {
                Shape::Leaf => {}
                Shape::Multipart(kids) => kids.iter().for_each(|k| collect(k, out)),
                Shape::Message(inner) => collect(inner, out),
            }
        }
        let mut points = Vec::new();
        collect(root, &mut points);
        points.sort_unstable();
        points.dedup();
        let (mut prev, mut n) = (0usize, 0u32);
        let marks = points
            .into_iter()
            .map(|p| {
                let chunk = raw.get(prev..p as usize).unwrap_or_default();
                n += chunk.iter().filter(|&&b| b == b'\n').count() as u32;
                prev = p as usize;
                (p, n)
            })
            .collect();
        LineIndex { marks }
    }

    fn count(&self, from: u32, to: u32) -> u32 {
        let at = |p: u32| {
            self.marks
                .binary_search_by_key(&p, |m| m.0)
                .map_or(0, |i| self.marks[i].1)
        };
        at(to).saturating_sub(at(from))
    }
}

fn emit(out: &mut Vec<Part>, e: &Entity, section: Vec<u32>) {
    out.push(e.part(section.clone()));
    match &e.shape {
        Shape::Leaf => {}
        Shape::Multipart(kids) => emit_children(out, kids, &section),
        Shape::Message(inner) => emit_message(out, inner, &section),
    }
}

fn emit_children(out: &mut Vec<Part>, kids: &[Entity], prefix: &[u32]) {
    for (i, k) in kids.iter().enumerate() {
        emit(out, k, [prefix, &[i as u32 + 1]].concat());
    }
}

/// Numbers a (top-level or encapsulated) message's contents under `prefix`.
fn emit_message(out: &mut Vec<Part>, m: &Entity, prefix: &[u32]) {
    match &m.shape {
        Shape::Multipart(kids) => emit_children(out, kids, prefix),
        _ => emit(out, m, [prefix, &[1]].concat()),
    }
}

fn parser() -> &'static MessageParser {
    static PARSER: OnceLock<MessageParser> = OnceLock::new();
    // Only the MIME fields matter for structure; the rest are read raw.
    PARSER.get_or_init(|| MessageParser::new().with_mime_headers())
}

impl MessageInfo {
    /// Indexes one message. Never panics; garbage yields a text/plain body
    /// with whatever header could be found.
    pub fn parse(raw: &[u8]) -> MessageInfo {
        // Offsets are u32 (as in mail-parser); nothing past that is indexed.
        let raw = &raw[..raw.len().min(u32::MAX as usize)];
        let mut b = Builder { raw, count: 0 };
        // mail-parser aims never to panic, but it has debug_asserts on odd
        // input; a panic there must not take the delivery down with it.
        let parsed = std::panic::catch_unwind(|| parser().parse(raw)).unwrap_or(None);
        let root = parsed
            .as_ref()
            .and_then(|m| b.build(m, 0, (0, raw.len()), true, 0, false))
            .unwrap_or_else(|| b.raw_leaf(0, raw.len()));
        if let Some(m) = parsed {
            dismantle(m);
        }

        let head = raw.get(..root.bs as usize).unwrap_or_default();
        let lines = LineIndex::new(raw, &root);
        let mut info = MessageInfo::default();
        imap_syntax::envelope(&mut info.envelope, head);
        imap_syntax::body(&mut info.bodystructure, &root, raw, &lines, true);
        imap_syntax::body(&mut info.body, &root, raw, &lines, false);
        info.parts.push(root.part(Vec::new()));
        emit_message(&mut info.parts, &root, &[]);
        info.sent_date = header::get(head, "date")
            .and_then(|d| DateTime::parse_rfc822(&String::from_utf8_lossy(&d)))
            .filter(DateTime::is_valid)
            .map(|d| d.to_timestamp());
        info
    }

    /// Find a part by IMAP section path.
    pub fn part(&self, section: &[u32]) -> Option<&Part> {
        self.parts
            .binary_search_by(|p| p.section.as_slice().cmp(section))
            .ok()
            .and_then(|i| self.parts.get(i))
    }

    /// BODY[section]; the empty section is the whole message.
    pub fn body_range(&self, section: &[u32]) -> Option<Range<usize>> {
        let p = self.part(section)?;
        let start = if section.is_empty() {
            p.header_start
        } else {
            p.body_start
        };
        Some(start as usize..p.body_end as usize)
    }

    /// BODY[section.MIME]; None for the root, which has no MIME header of its own.
    pub fn mime_range(&self, section: &[u32]) -> Option<Range<usize>> {
        let p = self.part(section).filter(|_| !section.is_empty())?;
        Some(p.header_start as usize..p.body_start as usize)
    }

    /// BODY[HEADER] or BODY[section.HEADER]; None unless the section is a
    /// message/rfc822 (RFC 9051 §6.4.5 allows HEADER/TEXT only there).
    pub fn header_range(&self, section: &[u32]) -> Option<Range<usize>> {
        let p = self.part(section)?;
        match (section.is_empty(), p.kind) {
            (true, _) => Some(p.header_start as usize..p.body_start as usize),
            (false, PartKind::Message) => Some(p.body_start as usize..p.inner_body_start as usize),
            _ => None,
        }
    }

    /// BODY[TEXT] or BODY[section.TEXT]; same rule as [`Self::header_range`].
    pub fn text_range(&self, section: &[u32]) -> Option<Range<usize>> {
        let p = self.part(section)?;
        match (section.is_empty(), p.kind) {
            (true, _) => Some(p.body_start as usize..p.body_end as usize),
            (false, PartKind::Message) => Some(p.inner_body_start as usize..p.body_end as usize),
            _ => None,
        }
    }

    /// Compact versioned binary encoding for storage (first byte = format version 1).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![FORMAT_VERSION];
        for b in [&self.envelope, &self.bodystructure, &self.body] {
            put_bytes(&mut out, b);
        }
        match self.sent_date {
            Some(t) => {
                out.push(1);
                put_uv(&mut out, ((t << 1) ^ (t >> 63)) as u64);
            }
            None => out.push(0),
        }
        put_uv(&mut out, self.parts.len() as u64);
        for p in &self.parts {
            put_uv(&mut out, p.section.len() as u64);
            for &n in &p.section {
                put_uv(&mut out, n.into());
            }
            for v in [p.header_start, p.body_start, p.body_end, p.inner_body_start] {
                put_uv(&mut out, v.into());
            }
            out.push(match p.kind {
                PartKind::Multipart => 0,
                PartKind::Message => 1,
                PartKind::Leaf => 2,
            });
            put_bytes(&mut out, p.encoding.as_bytes());
            put_bytes(&mut out, p.content_type.as_bytes());
            match &p.charset {
                Some(c) => {
                    out.push(1);
                    put_bytes(&mut out, c.as_bytes());
                }
                None => out.push(0),
            }
        }
        out
    }

    /// None on any malformed/unknown-version input, never panics.
    pub fn decode(bytes: &[u8]) -> Option<MessageInfo> {
        let (&version, rest) = bytes.split_first()?;
        if version != FORMAT_VERSION {
            return None;
        }
        let mut r = Reader(rest);
        let mut info = MessageInfo {
            envelope: r.bytes()?.to_vec(),
            bodystructure: r.bytes()?.to_vec(),
            body: r.bytes()?.to_vec(),
            ..MessageInfo::default()
        };
        info.sent_date = match r.byte()? {
            0 => None,
            1 => {
                let z = r.uv()?;
                Some((z >> 1) as i64 ^ -((z & 1) as i64))
            }
            _ => return None,
        };
        let count = r.uv()?;
        for _ in 0..count {
            let len = r.uv()?;
            let mut section = Vec::new();
            for _ in 0..len {
                section.push(r.u32()?);
            }
            let (header_start, body_start, body_end, inner_body_start) =
                (r.u32()?, r.u32()?, r.u32()?, r.u32()?);
            let kind = match r.byte()? {
                0 => PartKind::Multipart,
                1 => PartKind::Message,
                2 => PartKind::Leaf,
                _ => return None,
            };
            let encoding = r.string()?;
            let content_type = r.string()?;
            let charset = match r.byte()? {
                0 => None,
                1 => Some(r.string()?),
                _ => return None,
            };
            // The invariants FETCH relies on when slicing and searching.
            let ordered = header_start <= body_start
                && body_start <= inner_body_start
                && inner_body_start <= body_end
                && info.parts.last().is_none_or(|q: &Part| q.section < section);
            if !ordered {
                return None;
            }
            info.parts.push(Part {
                section,
                header_start,
                body_start,
                body_end,
                inner_body_start,
                kind,
                encoding,
                content_type,
                charset,
            });
        }
        r.0.is_empty().then_some(info)
    }
}

fn put_uv(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_uv(out, b.len() as u64);
    out.extend_from_slice(b);
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }

    fn uv(&mut self) -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    }

    fn u32(&mut self) -> Option<u32> {
        u32::try_from(self.uv()?).ok()
    }

    fn bytes(&mut self) -> Option<&'a [u8]> {
        let n = usize::try_from(self.uv()?).ok()?;
        if n > self.0.len() {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }

    fn string(&mut self) -> Option<String> {
        String::from_utf8(self.bytes()?.to_vec()).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(b: &[u8]) -> String {
        String::from_utf8_lossy(b).into_owned()
    }

    fn slice(raw: &[u8], r: Option<Range<usize>>) -> &str {
        std::str::from_utf8(&raw[r.expect("range")]).expect("utf8")
    }

    /// Checks IMAP syntax of a parenthesised response item: lists, NIL,
    /// numbers, quoted strings and literals (no NUL, exact lengths).
    fn well_formed(b: &[u8]) -> bool {
        fn item(b: &[u8], mut i: usize, depth: u32) -> Option<usize> {
            match *b.get(i)? {
                b'(' if depth < 200 => {
                    i += 1;
                    while *b.get(i)? != b')' {
                        i = item(b, i, depth + 1)?;
                        if b.get(i) == Some(&b' ') && b.get(i + 1) != Some(&b')') {
                            i += 1;
                        }
                    }
                    Some(i + 1)
                }
                b'"' => loop {
                    i += 1;
                    match *b.get(i)? {
                        b'"' => return Some(i + 1),
                        b'\\' if matches!(b.get(i + 1), Some(b'"' | b'\\')) => i += 1,
                        b'\\' | b'\r' | b'\n' | 0 | 0x80.. => return None,
                        _ => {}
                    }
                },
                b'{' => {
                    let close = i + b[i..].iter().position(|&c| c == b'}')?;
                    let n: usize = std::str::from_utf8(&b[i + 1..close]).ok()?.parse().ok()?;
                    let data = b.get(close + 1..)?.strip_prefix(b"\r\n")?.get(..n)?;
                    (!data.contains(&0)).then_some(close + 3 + n)
                }
                b'N' => b[i..].starts_with(b"NIL").then_some(i + 3),
                b'0'..=b'9' => Some(i + b[i..].iter().take_while(|c| c.is_ascii_digit()).count()),
                _ => None,
            }
        }
        b.first() == Some(&b'(') && item(b, 0, 0) == Some(b.len())
    }

    /// Invariants every parse must satisfy, whatever the input.
    fn check(raw: &[u8]) -> MessageInfo {
        let info = MessageInfo::parse(raw);
        for out in [&info.envelope, &info.bodystructure, &info.body] {
            assert!(well_formed(out), "bad syntax: {}", s(out));
        }
        assert_eq!(info.parts[0].section, Vec::<u32>::new());
        assert!(info.parts.windows(2).all(|w| w[0].section < w[1].section));
        for p in &info.parts {
            assert!(p.header_start <= p.body_start && p.body_start <= p.inner_body_start);
            assert!(p.inner_body_start <= p.body_end && p.body_end as usize <= raw.len());
            assert_eq!(info.part(&p.section), Some(p));
        }
        assert_eq!(MessageInfo::decode(&info.encode()).as_ref(), Some(&info));
        info
    }

    const SIMPLE: &[u8] = b"From: Alice Example <alice@example.com>\r\n\
        To: bob@example.org\r\nSubject: Hello\r\n\
        Date: Mon, 7 Feb 1994 21:52:25 -0800\r\nMessage-ID: <1@example.com>\r\n\r\n\
        Hi Bob,\r\nbye\r\n";

    #[test]
    fn simple_text_message() {
        let info = check(SIMPLE);
        let alice = "((\"Alice Example\" NIL \"alice\" \"example.com\"))";
        assert_eq!(
            s(&info.envelope),
            format!(
                "(\"Mon, 7 Feb 1994 21:52:25 -0800\" \"Hello\" {alice} {alice} {alice} \
                 ((NIL NIL \"bob\" \"example.org\")) NIL NIL NIL \"<1@example.com>\")"
            )
        );
        let plain = "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7BIT\" 14 2";
        assert_eq!(s(&info.bodystructure), format!("{plain} NIL NIL NIL NIL)"));
        assert_eq!(s(&info.body), format!("{plain})"));
        // 1994-02-08 05:52:25 UTC: 8804 days after the epoch plus 21145 s.
        assert_eq!(info.sent_date, Some(8804 * 86400 + 21145));
        assert_eq!(info.parts.len(), 2);
        let one = info.part(&[1]).expect("section 1");
        assert_eq!(
            (one.kind, one.content_type.as_str()),
            (PartKind::Leaf, "text/plain")
        );
        assert_eq!(slice(SIMPLE, info.body_range(&[1])), "Hi Bob,\r\nbye\r\n");
        assert_eq!(slice(SIMPLE, info.text_range(&[])), "Hi Bob,\r\nbye\r\n");
        assert!(slice(SIMPLE, info.mime_range(&[1])).starts_with("From: Alice"));
        assert!(slice(SIMPLE, info.header_range(&[])).ends_with(">\r\n\r\n"));
        assert_eq!(info.body_range(&[]), Some(0..SIMPLE.len()));
        assert_eq!(
            (info.mime_range(&[]), info.header_range(&[1])),
            (None, None)
        );
    }

    #[test]
    fn multipart_alternative() {
        let raw = b"From: a@example.com\r\nSubject: alt\r\nMIME-Version: 1.0\r\n\
            Content-Type: multipart/alternative; boundary=\"b1\"\r\n\r\n\
            --b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nplain\r\n\
            --b1\r\nContent-Type: text/html; charset=utf-8\r\n\
            Content-Transfer-Encoding: quoted-printable\r\n\r\n<p>html</p>\r\n\r\n--b1--\r\n";
        let info = check(raw);
        let a = "((NIL NIL \"a\" \"example.com\"))";
        assert_eq!(
            s(&info.envelope),
            format!("(NIL \"alt\" {a} {a} {a} NIL NIL NIL NIL NIL)")
        );
        assert_eq!(
            s(&info.bodystructure),
            "((\"text\" \"plain\" (\"charset\" \"utf-8\") NIL NIL \"7BIT\" 5 0 NIL NIL NIL NIL)\
             (\"text\" \"html\" (\"charset\" \"utf-8\") NIL NIL \"quoted-printable\" 13 1 \
             NIL NIL NIL NIL) \"alternative\" (\"boundary\" \"b1\") NIL NIL NIL)"
        );
        assert_eq!(
            s(&info.body),
            "((\"text\" \"plain\" (\"charset\" \"utf-8\") NIL NIL \"7BIT\" 5 0)\
             (\"text\" \"html\" (\"charset\" \"utf-8\") NIL NIL \"quoted-printable\" 13 1) \
             \"alternative\")"
        );
        let sections: Vec<_> = info.parts.iter().map(|p| p.section.clone()).collect();
        assert_eq!(sections, [vec![], vec![1], vec![2]]);
        assert_eq!(info.parts[0].kind, PartKind::Multipart);
        let html = info.part(&[2]).expect("html");
        assert_eq!(html.encoding, "quoted-printable");
        assert_eq!(html.charset.as_deref(), Some("utf-8"));
        assert_eq!(slice(raw, info.body_range(&[1])), "plain");
        assert_eq!(slice(raw, info.body_range(&[2])), "<p>html</p>\r\n");
        assert_eq!(
            slice(raw, info.mime_range(&[1])),
            "Content-Type: text/plain; charset=utf-8\r\n\r\n"
        );
        assert_eq!(info.part(&[3]), None);
    }

    #[test]
    fn mixed_with_attachment() {
        let raw = b"From: \"Smith, J.\" <j.smith@example.net>\r\n\
            To: a@example.com, \"B\" <b@example.com>\r\nCc: c@example.com\r\n\
            Subject: report\r\nContent-Type: multipart/mixed; boundary=XyZ\r\n\r\n\
            preamble\r\n--XyZ\r\n\r\nSee attached.\r\n--XyZ\r\n\
            Content-Type: application/pdf; name=\"r.pdf\"\r\n\
            Content-Disposition: attachment;\r\n filename=\"r.pdf\"\r\n\
            Content-Transfer-Encoding: base64\r\nContent-Description: The report\r\n\
            Content-ID: <pdf@x>\r\nContent-Language: en, de\r\n\r\n\
            JVBERi0xLjQK\r\n--XyZ--\r\nepilogue\r\n";
        let info = check(raw);
        let j = "((\"Smith, J.\" NIL \"j.smith\" \"example.net\"))";
        assert_eq!(
            s(&info.envelope),
            format!(
                "(NIL \"report\" {j} {j} {j} ((NIL NIL \"a\" \"example.com\")\
                 (\"B\" NIL \"b\" \"example.com\")) ((NIL NIL \"c\" \"example.com\")) NIL NIL NIL)"
            )
        );
        assert_eq!(
            s(&info.bodystructure),
            "((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7BIT\" 13 0 NIL NIL NIL NIL)\
             (\"application\" \"pdf\" (\"name\" \"r.pdf\") \"<pdf@x>\" \"The report\" \"base64\" \
             12 NIL (\"attachment\" (\"filename\" \"r.pdf\")) (\"en\" \"de\") NIL) \
             \"mixed\" (\"boundary\" \"XyZ\") NIL NIL NIL)"
        );
        let pdf = info.part(&[2]).expect("pdf");
        assert_eq!(
            (pdf.encoding.as_str(), pdf.content_type.as_str()),
            ("base64", "application/pdf")
        );
        assert_eq!(slice(raw, info.body_range(&[2])), "JVBERi0xLjQK");
        assert_eq!(slice(raw, info.body_range(&[1])), "See attached.");
    }

    const NESTED: &[u8] = b"From: outer@example.com\r\nSubject: fwd\r\n\
        Content-Type: multipart/mixed; boundary=\"outer\"\r\n\r\n\
        --outer\r\nContent-Type: text/plain\r\n\r\nsee below\r\n\
        --outer\r\nContent-Type: message/rfc822\r\nContent-Description: forwarded\r\n\r\n\
        From: Inner <inner@example.com>\r\nSubject: inside\r\n\
        Content-Type: multipart/alternative; boundary=inner\r\n\r\n\
        --inner\r\nContent-Type: text/plain\r\n\r\ninner text\r\n\
        --inner\r\nContent-Type: text/html\r\n\r\n<b>inner</b>\r\n--inner--\r\n--outer--\r\n";

    #[test]
    fn nested_message_numbering_and_offsets() {
        let info = check(NESTED);
        let inner = "((\"Inner\" NIL \"inner\" \"example.com\"))";
        let txt = |n| format!("\"charset\" \"us-ascii\") NIL NIL \"7BIT\" {n} 0 NIL NIL NIL NIL)");
        assert_eq!(
            s(&info.bodystructure),
            format!(
                "((\"text\" \"plain\" ({}(\"message\" \"rfc822\" NIL NIL \"forwarded\" \"7BIT\" 213 \
                 (NIL \"inside\" {inner} {inner} {inner} NIL NIL NIL NIL NIL) \
                 ((\"text\" \"plain\" ({}(\"text\" \"html\" ({} \"alternative\" \
                 (\"boundary\" \"inner\") NIL NIL NIL) 12 NIL NIL NIL NIL) \
                 \"mixed\" (\"boundary\" \"outer\") NIL NIL NIL)",
                txt(9),
                txt(10),
                txt(12)
            )
        );
        let sections: Vec<_> = info.parts.iter().map(|p| p.section.clone()).collect();
        assert_eq!(sections, [vec![], vec![1], vec![2], vec![2, 1], vec![2, 2]]);
        assert_eq!(info.part(&[2]).map(|p| p.kind), Some(PartKind::Message));
        assert_eq!(
            slice(NESTED, info.header_range(&[2])),
            "From: Inner <inner@example.com>\r\nSubject: inside\r\n\
             Content-Type: multipart/alternative; boundary=inner\r\n\r\n"
        );
        assert!(slice(NESTED, info.text_range(&[2])).starts_with("--inner\r\nContent-Type"));
        assert!(slice(NESTED, info.text_range(&[2])).ends_with("<b>inner</b>\r\n--inner--"));
        assert!(slice(NESTED, info.body_range(&[2])).starts_with("From: Inner"));
        assert_eq!(
            slice(NESTED, info.mime_range(&[2])),
            "Content-Type: message/rfc822\r\nContent-Description: forwarded\r\n\r\n"
        );
        assert_eq!(slice(NESTED, info.body_range(&[2, 1])), "inner text");
        assert_eq!(slice(NESTED, info.body_range(&[2, 2])), "<b>inner</b>");
        assert_eq!(
            slice(NESTED, info.mime_range(&[2, 2])),
            "Content-Type: text/html\r\n\r\n"
        );
        assert_eq!(info.header_range(&[2, 1]), None);
        assert_eq!(info.part(&[2, 3]), None);
    }

    #[test]
    fn top_level_message_rfc822_numbering() {
        let raw = b"Subject: outer\r\nContent-Type: message/rfc822\r\n\r\n\
            Subject: inner\r\n\r\ninner body\r\n";
        let info = check(raw);
        assert_eq!(
            s(&info.body),
            "(\"message\" \"rfc822\" NIL NIL NIL \"7BIT\" 30 \
             (NIL \"inner\" NIL NIL NIL NIL NIL NIL NIL NIL) \
             (\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7BIT\" 12 1) 3)"
        );
        let sections: Vec<_> = info.parts.iter().map(|p| p.section.clone()).collect();
        assert_eq!(sections, [vec![], vec![1], vec![1, 1]]);
        assert_eq!(
            slice(raw, info.header_range(&[1])),
            "Subject: inner\r\n\r\n"
        );
        assert_eq!(slice(raw, info.text_range(&[1])), "inner body\r\n");
        assert_eq!(slice(raw, info.body_range(&[1, 1])), "inner body\r\n");
        assert_eq!(
            slice(raw, info.mime_range(&[1, 1])),
            "Subject: inner\r\n\r\n"
        );
        assert!(slice(raw, info.mime_range(&[1])).starts_with("Subject: outer"));
    }

    #[test]
    fn group_addresses_and_defaults() {
        let raw = b"From: Boss <boss@example.com>\r\n\
            To: Team: alice@example.com, \"Bob B\" <bob@example.com>;, carol@example.com\r\n\
            Cc: undisclosed-recipients:;\r\nReply-To: lists@example.com\r\nSender: \r\n\
            Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\n\r\nx";
        let boss = "((\"Boss\" NIL \"boss\" \"example.com\"))";
        assert_eq!(
            s(&check(raw).envelope),
            format!(
                "(NIL \"=?utf-8?q?Gr=C3=BC=C3=9Fe?=\" {boss} {boss} \
                 ((NIL NIL \"lists\" \"example.com\")) ((NIL NIL \"Team\" NIL)\
                 (NIL NIL \"alice\" \"example.com\")(\"Bob B\" NIL \"bob\" \"example.com\")\
                 (NIL NIL NIL NIL)(NIL NIL \"carol\" \"example.com\")) \
                 ((NIL NIL \"undisclosed-recipients\" NIL)(NIL NIL NIL NIL)) NIL NIL NIL)"
            )
        );
    }

    #[test]
    fn missing_headers_give_nil_and_defaults() {
        for raw in [
            &b"\r\nbody only\r\n"[..],
            b"X-Other: 1\r\n\r\nbody only\r\n",
        ] {
            let info = check(raw);
            assert_eq!(
                s(&info.envelope),
                "(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)"
            );
            assert_eq!(
                s(&info.bodystructure),
                "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7BIT\" 11 1 NIL NIL NIL NIL)"
            );
            assert_eq!(info.sent_date, None);
            assert_eq!(info.parts[1].encoding, "7bit");
        }
    }

    #[test]
    fn values_needing_literals_or_escapes() {
        let raw = "Subject: Grüße\r\nFrom: \"Dr. \\\"Q\\\"\" <q@x.de>\r\n\
                   Message-ID: <a\"b\\c@x>\r\nIn-Reply-To: <p@x>\r\n (folded)\r\n\r\n";
        let want = "(NIL {7}\r\nGrüße ((\"Dr. \\\"Q\\\"\" NIL \"q\" \"x.de\")) \
                    ((\"Dr. \\\"Q\\\"\" NIL \"q\" \"x.de\")) ((\"Dr. \\\"Q\\\"\" NIL \"q\" \"x.de\")) \
                    NIL NIL NIL \"<p@x> (folded)\" \"<a\\\"b\\\\c@x>\")";
        assert_eq!(s(&check(raw.as_bytes()).envelope), want);
    }

    #[test]
    fn rfc3501_body_example() {
        let mut raw = b"Content-Type: MULTIPART/MIXED; BOUNDARY=x\r\n\r\n--x\r\n\
            Content-Type: TEXT/PLAIN; CHARSET=US-ASCII\r\n\r\n"
            .to_vec();
        // 23 lines, 1152 bytes.
        raw.extend([&[b'L'; 48][..], b"\r\n"].concat().repeat(22));
        raw.extend([&[b'M'; 50][..], b"\r\n"].concat());
        raw.extend_from_slice(
            b"\r\n--x\r\nContent-Type: TEXT/PLAIN; CHARSET=US-ASCII; NAME=cc.diff\r\n\
              Content-ID: <960723163407.20117h@cac.washington.edu>\r\n\
              Content-Description: Compiler diff\r\nContent-Transfer-Encoding: BASE64\r\n\r\n",
        );
        // 73 lines, 4554 bytes.
        raw.extend([&[b'A'; 60][..], b"\r\n"].concat().repeat(72));
        raw.extend([&[b'A'; 88][..], b"\r\n\r\n--x--\r\n"].concat());
        let rfc = "(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 1152 23)\
                   (\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\" \"NAME\" \"cc.diff\") \
                   \"<960723163407.20117h@cac.washington.edu>\" \"Compiler diff\" \
                   \"BASE64\" 4554 73) \"MIXED\"";
        assert_eq!(s(&check(&raw).body), format!("({rfc})"));
    }

    #[test]
    fn odd_structures() {
        let no_parts = b"Content-Type: multipart/mixed; boundary=\"zz\"\r\n\r\nno parts\r\n";
        let info = check(no_parts);
        assert_eq!(
            s(&info.bodystructure),
            "((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7BIT\" 0 0 NIL NIL NIL NIL) \
             \"mixed\" (\"boundary\" \"zz\") NIL NIL NIL)"
        );
        assert_eq!(info.body_range(&[1]), Some(no_parts.len()..no_parts.len()));

        let encoded = b"Content-Type: multipart/mixed; boundary=q\r\n\r\n--q\r\n\
            Content-Type: message/rfc822\r\nContent-Transfer-Encoding: base64\r\n\r\n\
            U3ViamVjdDogaQ0KDQpoaQ0K\r\n--q--\r\n";
        let info = check(encoded);
        assert!(s(&info.body).starts_with(
            "((\"application\" \"octet-stream\" NIL NIL NIL \"base64\" 24) \"mixed\")"
        ));
        assert_eq!(info.part(&[1]).map(|p| p.kind), Some(PartKind::Leaf));

        let digest = b"Content-Type: multipart/digest; boundary=d\r\n\r\n--d\r\n\r\n\
            Subject: in digest\r\n\r\nhi\r\n--d--\r\n";
        let info = check(digest);
        assert!(s(&info.body)
            .starts_with("((\"message\" \"rfc822\" NIL NIL NIL \"7BIT\" 24 (NIL \"in digest\""));
        assert_eq!(
            info.part(&[1, 1]).map(|p| p.body_end - p.body_start),
            Some(2)
        );
    }

    #[test]
    fn decode_rejects_garbage() {
        let good = MessageInfo::parse(NESTED).encode();
        for bad in [&[][..], &[0], &[2], &[1], &[1, 0xff, 0xff, 0xff]] {
            assert_eq!(MessageInfo::decode(bad), None);
        }
        for n in 0..good.len() {
            assert_eq!(MessageInfo::decode(&good[..n]), None, "prefix {n}");
        }
        assert_eq!(MessageInfo::decode(&[&good[..], &[0]].concat()), None);
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..2000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let mut m = good.clone();
            let i = (seed % m.len() as u64) as usize;
            m[i] ^= (seed >> 32) as u8 | 1;
            let _ = MessageInfo::decode(&m);
        }
    }

    fn nested_multiparts(depth: usize) -> Vec<u8> {
        let mut raw = Vec::new();
        for i in 0..depth {
            raw.extend(
                format!("Content-Type: multipart/mixed; boundary=b{i}\r\n\r\n--b{i}\r\n").bytes(),
            );
        }
        raw.extend_from_slice(b"\r\nleaf\r\n");
        raw
    }

    #[test]
    fn never_panics_on_hostile_input() {
        let mut cases: Vec<Vec<u8>> = vec![
            Vec::new(),
            b"Subject: x".to_vec(),
            b"Subject: x\r\nFrom: a@b\r\n".to_vec(),
            b"Subject: a\0b\r\nFrom: \0<a\0@b>\r\n\r\n\0\0body".to_vec(),
            b"Subject: \xff\xfe\r\nContent-Type: text/plain; charset=\"\xff\"\r\n\r\n\xc3("
                .to_vec(),
            b"Content-Type: multipart/mixed; boundary=q\r\n\r\n--q\r\n\r\nnever closed".to_vec(),
            b"Content-Type: message/rfc822\r\n\r\n".to_vec(),
            b"From: ((((\"\\\r\nTo: <<<@@@:;;,,\r\nContent-Type: a/b; x*9999999999*=1;;".to_vec(),
            // Trips a debug_assert inside mail-parser (caught; see parse()).
            b"Content-Type: multipart/mixed; boundary=q\r\n\r\n--q\r\n\r\n--qContent-Type: \
              message/rfc822\r\n\r\nContent-Type: message/rfc822\r\n\r\n--q\r\n\r\nx\r\n--q--\r\n"
                .to_vec(),
            nested_multiparts(200),
            nested_multiparts(20_000),
            b"Content-Type: message/rfc822\r\n\r\n".repeat(20_000),
        ];
        let mut many = b"Content-Type: multipart/mixed; boundary=p\r\n\r\n".to_vec();
        many.extend(b"--p\r\n\r\nx\r\n".repeat(10_000));
        cases.push(many);
        cases.extend((0..NESTED.len()).map(|n| NESTED[..n].to_vec()));
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..300 {
            let mut m = [NESTED, SIMPLE][(seed & 1) as usize].to_vec();
            for _ in 0..8 {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let i = (seed % m.len() as u64) as usize;
                m[i] = b"\r\n-:;<>\"(\0\xff"[(seed >> 40) as usize % 11];
            }
            cases.push(m);
        }
        for raw in &cases {
            let info = check(raw);
            assert!(info.parts.len() <= 2 * MAX_PARTS + 2);
            assert!(info
                .parts
                .iter()
                .all(|p| p.section.len() <= MAX_DEPTH as usize + 1));
        }

        let deep = check(&cases[9]);
        let last = deep.parts.iter().max_by_key(|p| p.section.len());
        let last = last.map(|p| (p.section.len(), p.content_type.as_str()));
        assert_eq!(last, Some((32, "application/octet-stream")));
        // The root plus the first 999 children fill the budget.
        assert_eq!(check(&cases[12]).parts.len(), MAX_PARTS);
    }
}
