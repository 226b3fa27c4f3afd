//! One message: its headers and text, its HTML for a sandboxed frame, its
//! parts and inline images, and its source.
//!
//! Structure and part offsets come from what delivery stored
//! ([`MessageInfo`]); only the header and the parts asked for are read,
//! and a part or the source is sent as a stream of pieces, so memory does
//! not grow with the message's size.

use std::collections::VecDeque;
use std::rc::Rc;

use mail_parser::{Address, HeaderValue, MessageParser, MimeHeaders};

use super::{form, html as sanitize, json, store_error, Folder, Response};
use crate::mime::transfer::{Decoder, Encoding};
use crate::mime::{MessageInfo, Part, PartKind};
use crate::services::Shared;
use crate::store::{
    BlobId, Content, FlagChange, Flags, MailboxId, MessageRecord, Store, StoreError, BLOB_CHUNK,
};
use crate::web::Body;

/// The most of a text part shown decoded; the rest is cut, with a note.
const MAX_TEXT: u64 = 4 * 1024 * 1024;
/// The most of a header (the message's or a part's) read.
const MAX_HEADER: u64 = 64 * 1024;

/// The content security policy of a message's HTML: nothing may load but
/// inline styles and images from here or data: URLs, nothing may run.
const HTML_CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; \
     frame-ancestors 'self'; base-uri 'none'; form-action 'none'";
/// The same, with remote images allowed, after the reader asked for them.
const HTML_CSP_REMOTE: &str = "default-src 'none'; style-src 'unsafe-inline'; \
     img-src 'self' data: https: http:; frame-ancestors 'self'; base-uri 'none'; \
     form-action 'none'";

/// What a leaf part is, from its MIME header.
#[derive(Debug)]
struct PartMeta {
    section: String,
    content_type: String,
    name: Option<String>,
    cid: Option<String>,
    attachment: bool,
    inline: bool,
    size: u64,
}

/// The parts of a message sorted into its text, its HTML and the rest.
#[derive(Default)]
struct Layout {
    text: Option<usize>,
    html: Option<usize>,
    attachments: Vec<PartMeta>,
}

fn load(
    shared: &Shared,
    folder: &Folder<'_>,
    uid: u32,
) -> Result<Option<(MessageRecord, MessageInfo, Content)>, StoreError> {
    load_from(&shared.store, folder.id, uid)
}

fn load_from(
    store: &Store,
    mailbox: MailboxId,
    uid: u32,
) -> Result<Option<(MessageRecord, MessageInfo, Content)>, StoreError> {
    let snapshot = store.snapshot()?;
    let Some(record) = snapshot.message(mailbox, uid)? else {
        return Ok(None);
    };
    let content = snapshot.content()?;
    let info = content
        .parsed(record.blob)?
        .and_then(|bytes| MessageInfo::decode(&bytes))
        .ok_or_else(|| StoreError::Corrupt(format!("analysis of message {uid}")))?;
    Ok(Some((record, info, content)))
}

fn section_text(section: &[u32]) -> String {
    section
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(".")
}

/// Reads every leaf's MIME header and sorts the parts. Parts inside an
/// attached message belong to it: it is one attachment.
fn layout(content: &Content, blob: BlobId, info: &MessageInfo) -> Result<Layout, StoreError> {
    let mut out = Layout::default();
    let mut inside: Option<&[u32]> = None;
    for part in info.parts.iter().skip(1) {
        if inside.is_some_and(|outer| part.section.starts_with(outer)) {
            continue;
        }
        if part.kind == PartKind::Multipart {
            continue;
        }
        let header = content.blob_range(blob, header_range(part))?;
        let meta = part_meta(part, &header);
        if part.kind == PartKind::Message {
            inside = Some(&part.section);
            out.attachments.push(PartMeta {
                attachment: true,
                ..meta
            });
            continue;
        }
        if !meta.attachment && out.text.is_none() && meta.content_type == "text/plain" {
            out.text = Some(out.attachments.len());
        } else if !meta.attachment && out.html.is_none() && meta.content_type == "text/html" {
            out.html = Some(out.attachments.len());
        }
        out.attachments.push(meta);
    }
    Ok(out)
}

/// Where a part's MIME header is, at most [`MAX_HEADER`] of it. The
/// offsets were stored at delivery; a damaged record gives an empty range,
/// never a reversed one.
fn header_range(part: &Part) -> std::ops::Range<u64> {
    let start = u64::from(part.header_start);
    start..u64::from(part.body_start).clamp(start, start + MAX_HEADER)
}

fn part_meta(part: &Part, header: &[u8]) -> PartMeta {
    let parsed = std::panic::catch_unwind(|| MessageParser::new().parse_headers(header))
        .ok()
        .flatten();
    let (mut name, mut cid, mut disposition) = (None, None, None);
    if let Some(message) = &parsed {
        name = message
            .content_disposition()
            .and_then(|d| d.attribute("filename"))
            .or_else(|| message.content_type().and_then(|t| t.attribute("name")))
            .map(str::to_string);
        cid = message.content_id().map(|id| {
            id.trim()
                .trim_start_matches('<')
                .trim_end_matches('>')
                .to_string()
        });
        disposition = message
            .content_disposition()
            .map(|d| d.ctype().to_ascii_lowercase());
    }
    let attachment = disposition.as_deref() == Some("attachment") || name.is_some();
    PartMeta {
        section: section_text(&part.section),
        content_type: part.content_type.clone(),
        inline: disposition.as_deref() != Some("attachment")
            && cid.is_some()
            && safe_image(&part.content_type).is_some(),
        name,
        cid,
        attachment,
        size: u64::from(part.body_end.saturating_sub(part.body_start)),
    }
}

/// The image types shown inline and served as themselves; anything else
/// downloads as application/octet-stream. SVG is not one: it can carry
/// script.
fn safe_image(content_type: &str) -> Option<&'static str> {
    Some(match content_type {
        "image/png" => "image/png",
        "image/jpeg" | "image/jpg" | "image/pjpeg" => "image/jpeg",
        "image/gif" => "image/gif",
        "image/webp" => "image/webp",
        "image/bmp" => "image/bmp",
        _ => return None,
    })
}

/// A text part decoded to UTF-8 (at most [`MAX_TEXT`] of it).
fn decoded_text(content: &Content, blob: BlobId, part: &Part) -> Result<String, StoreError> {
    let start = u64::from(part.body_start);
    let end = u64::from(part.body_end).clamp(start, start + MAX_TEXT);
    let raw = content.blob_range(blob, start..end)?;
    let mut bytes = Vec::with_capacity(raw.len());
    match Encoding::from_name(&part.encoding) {
        Some(encoding) => {
            let mut decoder = Decoder::new(encoding);
            // Undecodable input is shown as far as it went.
            let _ = decoder.feed(&raw, &mut bytes);
            decoder.finish(&mut bytes);
        }
        None => bytes = raw,
    }
    let charset = part.charset.as_deref().unwrap_or("utf-8");
    let text = match mail_parser::decoders::charsets::map::charset_decoder(charset.as_bytes()) {
        Some(decode) if !charset.eq_ignore_ascii_case("utf-8") => decode(&bytes),
        _ => String::from_utf8_lossy(&bytes).into_owned(),
    };
    Ok(text)
}

/// Addresses as `Name <addr>, addr`.
fn addresses(value: Option<&Address<'_>>) -> String {
    let Some(address) = value else {
        return String::new();
    };
    address
        .iter()
        .map(|addr| match (addr.name(), addr.address()) {
            (Some(name), Some(address)) if !name.trim().is_empty() => {
                format!("{} <{address}>", name.trim())
            }
            (_, Some(address)) => address.to_string(),
            (Some(name), None) => name.to_string(),
            (None, None) => String::new(),
        })
        .filter(|a| !a.is_empty())
        .collect::<Vec<_>>()
        .join(", ")
}

fn ids(value: &HeaderValue<'_>) -> Vec<String> {
    value
        .as_text_list()
        .unwrap_or_default()
        .iter()
        .map(|id| format!("<{}>", id.trim()))
        .collect()
}

pub async fn view(shared: &Rc<Shared>, folder: &Folder<'_>, uid: u32) -> Response {
    // Decoding a large text part takes a while: off the event loop.
    let (store, mailbox) = (shared.store.clone(), folder.id);
    let built = shared
        .run_heavy(move || -> Result<Option<(String, Flags)>, StoreError> {
            let Some((record, info, content)) = load_from(&store, mailbox, uid)? else {
                return Ok(None);
            };
            let body = build_view(&content, uid, &record, &info)?;
            Ok(Some((body, record.flags)))
        })
        .await;
    let (body, flags) = match built {
        Ok(Some(built)) => built,
        Ok(None) => return Response::not_found(),
        Err(e) => return store_error(&e),
    };
    // Reading the message sets \Seen, as IMAP's FETCH BODY[] does, through
    // the same store call: IDLE sessions hear of it.
    if !flags.contains(Flags::SEEN) {
        let change = FlagChange::Add(Flags::SEEN, Vec::new());
        if let Err(e) = shared
            .store
            .write(move |tx| tx.change_flags(mailbox, &[uid], &change))
            .await
        {
            return store_error(&e);
        }
    }
    Response::json(200, body)
}

/// The message's own header, at most [`MAX_HEADER`] of it.
pub(super) fn top_header(
    content: &Content,
    record: &MessageRecord,
    info: &MessageInfo,
) -> Result<Vec<u8>, StoreError> {
    let header_end = info
        .parts
        .first()
        .map_or(0, |root| u64::from(root.body_start))
        .min(MAX_HEADER);
    content.blob_range(record.blob, 0..header_end)
}

fn build_view(
    content: &Content,
    uid: u32,
    record: &MessageRecord,
    info: &MessageInfo,
) -> Result<String, StoreError> {
    let header = top_header(content, record, info)?;
    let parsed = std::panic::catch_unwind(|| MessageParser::new().parse_headers(&header[..]))
        .ok()
        .flatten();
    let layout = layout(content, record.blob, info)?;
    let part_of = |index: Option<usize>| {
        index
            .and_then(|i| layout.attachments.get(i))
            .and_then(|meta| info.part(&section_of(&meta.section)?))
    };
    let text = match (part_of(layout.text), part_of(layout.html)) {
        (Some(part), _) => decoded_text(content, record.blob, part)?,
        (None, Some(part)) => {
            mail_parser::decoders::html::html_to_text(&decoded_text(content, record.blob, part)?)
        }
        (None, None) => String::new(),
    };
    let mut out = json::Object::new();
    out.num("uid", uid);
    let mut flags = json::Array::new();
    for (bit, name) in [
        (Flags::SEEN, "\\Seen"),
        (Flags::ANSWERED, "\\Answered"),
        (Flags::FLAGGED, "\\Flagged"),
        (Flags::DELETED, "\\Deleted"),
        (Flags::DRAFT, "\\Draft"),
    ] {
        // Shown as it will be once this read has set \Seen.
        if record.flags.contains(bit) || bit == Flags::SEEN {
            flags.str(name);
        }
    }
    match &parsed {
        Some(m) => {
            let date = info.sent_date.unwrap_or(record.internal_date);
            out.str("from", &addresses(m.from()))
                .str("to", &addresses(m.to()))
                .str("cc", &addresses(m.cc()))
                .str("date", &super::list::rfc3339(date))
                .str("subject", m.subject().unwrap_or_default())
                .str(
                    "message_id",
                    &m.message_id()
                        .map(|id| format!("<{}>", id.trim()))
                        .unwrap_or_default(),
                )
                .str("references", &ids(m.references()).join(" "))
                .str("in_reply_to", &ids(m.in_reply_to()).join(" "));
        }
        None => {
            for key in [
                "from",
                "to",
                "cc",
                "subject",
                "message_id",
                "references",
                "in_reply_to",
            ] {
                out.str(key, "");
            }
            out.str("date", &super::list::rfc3339(record.internal_date));
        }
    }
    let mut attachments = json::Array::new();
    for (i, meta) in layout.attachments.iter().enumerate() {
        if Some(i) == layout.text || Some(i) == layout.html {
            continue;
        }
        let mut a = json::Object::new();
        a.str("part", &meta.section)
            .str("name", meta.name.as_deref().unwrap_or(""))
            .str("type", &meta.content_type)
            .num("size", meta.size)
            .bool("inline", meta.inline);
        match &meta.cid {
            Some(cid) => a.str("cid", cid),
            None => a.null("cid"),
        };
        attachments.raw(&a.finish());
    }
    out.raw("flags", &flags.finish())
        .str("text", &text)
        .bool("has_html", layout.html.is_some())
        .raw("attachments", &attachments.finish());
    Ok(out.finish())
}

/// `2.1` → `[2, 1]`; None for anything else.
fn section_of(text: &str) -> Option<Vec<u32>> {
    if text.is_empty() || text.len() > 100 {
        return None;
    }
    text.split('.')
        .map(|n| {
            (!n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
                .then(|| n.parse::<u32>().ok())
                .flatten()
                .filter(|&n| n > 0)
        })
        .collect()
}

pub async fn html(shared: &Rc<Shared>, folder: &Folder<'_>, uid: u32, remote: bool) -> Response {
    // Decoding and rewriting a large HTML part takes a while: off the loop.
    let (store, mailbox) = (shared.store.clone(), folder.id);
    let document = shared
        .run_heavy(move || -> Result<Option<String>, StoreError> {
            let Some((record, info, content)) = load_from(&store, mailbox, uid)? else {
                return Ok(None);
            };
            let layout = layout(&content, record.blob, &info)?;
            let Some(meta) = layout.html.and_then(|i| layout.attachments.get(i)) else {
                return Ok(None);
            };
            let Some(part) = section_of(&meta.section).and_then(|s| info.part(&s)) else {
                return Ok(None);
            };
            let raw = decoded_text(&content, record.blob, part)?;
            let cid_base = format!("/api/folders/{mailbox}/messages/{uid}/cid/");
            Ok(Some(sanitize::sanitize(&raw, &cid_base)))
        })
        .await;
    match document {
        Ok(Some(document)) => Response::new(200, "text/html; charset=utf-8", document.into_bytes())
            .with_header(
                "Content-Security-Policy",
                (if remote { HTML_CSP_REMOTE } else { HTML_CSP }).to_string(),
            ),
        Ok(None) => Response::not_found(),
        Err(e) => store_error(&e),
    }
}

pub fn part(shared: &Rc<Shared>, folder: &Folder<'_>, uid: u32, section: &str) -> Response {
    let Some(section) = section_of(section) else {
        return Response::not_found();
    };
    let (record, info, content) = match load(shared, folder, uid) {
        Ok(Some(found)) => found,
        Ok(None) => return Response::not_found(),
        Err(e) => return store_error(&e),
    };
    let Some(part) = info
        .part(&section)
        .filter(|p| p.kind != PartKind::Multipart)
    else {
        return Response::not_found();
    };
    let meta = match content.blob_range(record.blob, header_range(part)) {
        Ok(header) => part_meta(part, &header),
        Err(e) => return store_error(&e),
    };
    let fallback = format!("part-{}", meta.section);
    let name = meta.name.as_deref().unwrap_or(&fallback);
    let content_type = safe_image(&meta.content_type).unwrap_or("application/octet-stream");
    stream_part(content, record.blob, part, content_type).with_header(
        "Content-Disposition",
        content_disposition("attachment", name),
    )
}

pub fn cid(shared: &Rc<Shared>, folder: &Folder<'_>, uid: u32, cid: &str) -> Response {
    let (record, info, content) = match load(shared, folder, uid) {
        Ok(Some(found)) => found,
        Ok(None) => return Response::not_found(),
        Err(e) => return store_error(&e),
    };
    let layout = match layout(&content, record.blob, &info) {
        Ok(layout) => layout,
        Err(e) => return store_error(&e),
    };
    let found = layout
        .attachments
        .iter()
        .find(|m| m.cid.as_deref() == Some(cid))
        .and_then(|m| Some((safe_image(&m.content_type)?, section_of(&m.section)?)));
    let Some((content_type, section)) = found else {
        return Response::not_found();
    };
    let Some(part) = info.part(&section) else {
        return Response::not_found();
    };
    stream_part(content, record.blob, part, content_type)
        .with_header("Content-Disposition", "inline".to_string())
}

pub fn source(shared: &Rc<Shared>, folder: &Folder<'_>, uid: u32) -> Response {
    let (record, _info, content) = match load(shared, folder, uid) {
        Ok(Some(found)) => found,
        Ok(None) => return Response::not_found(),
        Err(e) => return store_error(&e),
    };
    let total = match content.blob_len(record.blob) {
        Ok(Some(total)) => total,
        Ok(None) => return store_error(&StoreError::Corrupt(format!("message {uid} (missing)"))),
        Err(e) => return store_error(&e),
    };
    let pieces = Pieces {
        content,
        blob: record.blob,
        at: 0,
        end: total,
        decoder: None,
        ready: VecDeque::new(),
    };
    Response {
        status: 200,
        content_type: "text/plain; charset=utf-8",
        headers: vec![("Content-Disposition", "inline".to_string())],
        body: Body::Stream(Box::pin(smol::stream::iter(pieces))),
    }
}

/// A part's body, transfer-decoded piece by piece as it is sent.
fn stream_part(
    content: Content,
    blob: BlobId,
    part: &Part,
    content_type: &'static str,
) -> Response {
    let encoding = Encoding::from_name(&part.encoding);
    let pieces = Pieces {
        content,
        blob,
        at: u64::from(part.body_start),
        end: u64::from(part.body_end.max(part.body_start)),
        decoder: encoding.map(Decoder::new),
        ready: VecDeque::new(),
    };
    Response {
        status: 200,
        content_type,
        headers: Vec::new(),
        body: Body::Stream(Box::pin(smol::stream::iter(pieces))),
    }
}

/// Reads a range of a message one store chunk at a time, decoding it if
/// asked: at most one chunk of it is in memory at once. The read
/// transaction it holds keeps the bytes readable while the client takes
/// them, even if the message is expunged meanwhile.
struct Pieces {
    content: Content,
    blob: BlobId,
    at: u64,
    end: u64,
    decoder: Option<Decoder>,
    ready: VecDeque<Vec<u8>>,
}

impl Iterator for Pieces {
    type Item = Vec<u8>;

    fn next(&mut self) -> Option<Vec<u8>> {
        loop {
            if let Some(piece) = self.ready.pop_front() {
                return Some(piece);
            }
            if self.at >= self.end {
                let decoder = self.decoder.take()?;
                let mut tail = Vec::new();
                decoder.finish(&mut tail);
                return (!tail.is_empty()).then_some(tail);
            }
            let want = (self.end - self.at).min(BLOB_CHUNK as u64) as usize;
            let piece = match self
                .content
                .blob_range(self.blob, self.at..self.at + want as u64)
            {
                Ok(piece) if !piece.is_empty() => piece,
                // A damaged store ends the body early; the log says why.
                Ok(_) => return None,
                Err(e) => {
                    log::error!("web: reading message body: {e}");
                    return None;
                }
            };
            self.at += piece.len() as u64;
            match &mut self.decoder {
                Some(decoder) => {
                    let mut out = Vec::with_capacity(piece.len());
                    // Undecodable input: what decoded so far is sent.
                    let _ = decoder.feed(&piece, &mut out);
                    if !out.is_empty() {
                        self.ready.push_back(out);
                    }
                }
                None => self.ready.push_back(piece),
            }
        }
    }
}

/// `attachment; filename="ascii"; filename*=UTF-8''pct` (RFC 6266 with
/// RFC 8187): the quoted fallback has every non-ASCII, control, quote and
/// backslash character replaced, so no name can break the header.
pub(crate) fn content_disposition(kind: &str, name: &str) -> String {
    // Path separators go too: a name is a name, never a path.
    let cleaned: String = name
        .chars()
        .map(|c| {
            if c == '/' || c == '\\' || c.is_control() {
                '_'
            } else {
                c
            }
        })
        .collect();
    let cleaned = cleaned.trim();
    let cleaned = if cleaned.is_empty() || cleaned == "." || cleaned == ".." {
        "attachment"
    } else {
        cleaned
    };
    let ascii: String = cleaned
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!(
        "{kind}; filename=\"{ascii}\"; filename*=UTF-8''{}",
        form::percent_encode(cleaned)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dispositions_are_safe() {
        assert_eq!(
            content_disposition("attachment", "résumé \"final\".pdf"),
            "attachment; filename=\"r_sum_ _final_.pdf\"; filename*=UTF-8''r%C3%A9sum%C3%A9%20%22final%22.pdf"
        );
        assert_eq!(
            content_disposition("attachment", "a\r\nSet-Cookie: x\\..\\..\\b"),
            "attachment; filename=\"a__Set-Cookie: x_.._.._b\"; filename*=UTF-8''a__Set-Cookie%3A%20x_.._.._b"
        );
        assert_eq!(
            content_disposition("attachment", ".."),
            "attachment; filename=\"attachment\"; filename*=UTF-8''attachment"
        );
    }

    #[test]
    fn sections() {
        assert_eq!(section_of("2.1"), Some(vec![2, 1]));
        assert_eq!(section_of("0"), None);
        assert_eq!(section_of("1..2"), None);
        assert_eq!(section_of("../1"), None);
        assert_eq!(section_of(""), None);
    }
}
