//! SEARCH criteria (RFC 9051 §6.4.4) evaluated against one message at a time.
//!
//! [`Matcher::new`] compiles the parser's [`SearchKey`] tree once per command:
//! sequence sets and `$` become sorted ranges, search strings are lowercased,
//! constant keys fold away, and the children of every AND and OR are ordered so
//! that keys answered from the message record run before keys that need the
//! stored [`MessageInfo`], then the header, then the body. [`Matcher::matches`]
//! short-circuits, so a message whose flags already decide the answer is never
//! read.
//!
//! Content is loaded at most once per message: header keys parse only the
//! header block (mail-parser's `parse_headers`), BODY and TEXT parse the whole
//! message once. A message needing both pays for its header block twice, which
//! is cheap beside the body and spares the body parse whenever a header key
//! already decides.
//!
//! Where the RFC leaves room:
//! - Text keys are substring matches after lowercasing both sides character by
//!   character (Unicode lowercase, not full case folding; per character so that
//!   a final sigma lowercases the same in a needle as in a text). HTML parts
//!   are searched with their markup.
//! - SENT* keys use the Date header's calendar date in UTC, since
//!   [`MessageInfo::sent_date`] keeps the instant but not the zone. A message
//!   without a parseable Date header matches no SENT* key (Dovecot falls back
//!   to INTERNALDATE; inventing a sent date would make SENTBEFORE lie).
//! - RECENT never matches: letterbox keeps no \Recent, which RFC 9051 dropped.
//!   So NEW matches nothing and OLD everything.
//! - `$` holds UIDs and means the same messages in a sequence set as in a UID
//!   set (RFC 5182 §2.1).
//! - TEXT searches the top-level header (field names and decoded values) and
//!   the body text; MIME headers of sub-parts are not searched.
//! - An empty string matches a message that has the field (HEADER, SUBJECT) or
//!   at least one address in it (FROM, TO, CC, BCC); BODY "" and TEXT "" match
//!   every message.

use std::ops::RangeInclusive;
use std::panic::catch_unwind;
use std::sync::OnceLock;

use mail_parser::{Address, HeaderName, HeaderValue, Message, MessageParser, PartType};

use super::parser::{DateMatch, Flag, MessageSet, SearchKey, TextField};
use crate::mime::MessageInfo;
use crate::store::Flags;

const DAY: i64 = 86_400;

/// What the session knows about a message without reading its bytes.
#[derive(Debug, Clone, Copy)]
pub struct Candidate<'a> {
    pub seq: u32,
    pub uid: u32,
    pub flags: Flags,
    pub keywords: &'a [String],
    /// Unix seconds.
    pub internal_date: i64,
    /// Minutes east of UTC that INTERNALDATE was given in.
    pub internal_date_offset: i16,
    /// RFC822.SIZE.
    pub size: u32,
}

/// Lazily loaded message content; the matcher asks only when a key needs it.
pub trait Content {
    fn info(&mut self) -> Option<&MessageInfo>;
    fn raw(&mut self) -> Option<&[u8]>;
}

/// A compiled SEARCH program, reusable for every message of the mailbox.
#[derive(Debug)]
pub struct Matcher {
    root: Node,
    needs_content: bool,
}

impl Matcher {
    /// Resolves sequence sets and `$` once: `saved` is the session's saved
    /// SEARCH result as UIDs (None if nothing saved: `$` then matches
    /// nothing), `max_seq`/`max_uid` are what `*` means.
    pub fn new(key: &SearchKey, saved: Option<&[u32]>, max_seq: u32, max_uid: u32) -> Matcher {
        let scope = Scope {
            saved: saved.map(|uids| {
                let mut uids = uids.to_vec();
                uids.sort_unstable();
                uids.dedup();
                uids.into_iter().map(|uid| uid..=uid).collect()
            }),
            max_seq,
            max_uid,
        };
        let root = scope.compile(key);
        let needs_content = root.cost() > Cost::Record;
        Matcher {
            root,
            needs_content,
        }
    }

    /// True if any key needs the message's header or body (so the caller can
    /// plan I/O). SENT* keys count: they read [`Content::info`].
    pub fn needs_content(&self) -> bool {
        self.needs_content
    }

    pub fn matches(&self, message: &Candidate<'_>, content: &mut dyn Content) -> bool {
        let mut loaded = Loaded {
            content,
            sent_day: None,
            header: None,
            body: None,
        };
        self.root.eval(message, &mut loaded)
    }
}

/// What a key must load to be answered, cheapest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Cost {
    Record,
    Info,
    Header,
    Body,
}

#[derive(Debug)]
enum Node {
    Const(bool),
    System(Flags),
    /// Kept as the client wrote it; compared ignoring ASCII case.
    Keyword(String),
    Sequence(Vec<RangeInclusive<u32>>),
    Uid(Vec<RangeInclusive<u32>>),
    /// A day number (days since 1970-01-01) to compare with.
    Arrived(DateMatch, i64),
    Sent(DateMatch, i64),
    Larger(u64),
    Smaller(u64),
    /// The needle is lowercased.
    Text(TextField, String),
    /// Field name in ASCII lowercase, needle lowercased.
    Header(String, String),
    Not(Box<Node>),
    Or(Box<Node>, Box<Node>),
    And(Vec<Node>),
}

struct Scope {
    saved: Option<Vec<RangeInclusive<u32>>>,
    max_seq: u32,
    max_uid: u32,
}

impl Scope {
    /// Recursion is bounded by the parser's nesting limit (`MAX_DEPTH`).
    fn compile(&self, key: &SearchKey) -> Node {
        let saved = || self.saved.clone().map_or(Node::Const(false), Node::Uid);
        match key {
            SearchKey::All => Node::Const(true),
            SearchKey::Recent => Node::Const(false),
            SearchKey::Flag(flag) => Node::System(match flag {
                Flag::Seen => Flags::SEEN,
                Flag::Answered => Flags::ANSWERED,
                Flag::Flagged => Flags::FLAGGED,
                Flag::Deleted => Flags::DELETED,
                Flag::Draft => Flags::DRAFT,
                Flag::Keyword(keyword) => return Node::Keyword(keyword.clone()),
            }),
            SearchKey::Contains(field, needle) => {
                let needle = lower(&String::from_utf8_lossy(needle));
                match field {
                    TextField::Body | TextField::Text if needle.is_empty() => Node::Const(true),
                    _ => Node::Text(*field, needle),
                }
            }
            SearchKey::Header(name, needle) => Node::Header(
                name.to_ascii_lowercase(),
                lower(&String::from_utf8_lossy(needle)),
            ),
            SearchKey::InternalDate(how, date) => Node::Arrived(*how, date.days_since_epoch()),
            SearchKey::SentDate(how, date) => Node::Sent(*how, date.days_since_epoch()),
            SearchKey::Larger(size) => Node::Larger(*size),
            SearchKey::Smaller(size) => Node::Smaller(*size),
            SearchKey::Sequence(MessageSet::Set(set)) => Node::Sequence(set.resolve(self.max_seq)),
            SearchKey::Uid(MessageSet::Set(set)) => Node::Uid(set.resolve(self.max_uid)),
            SearchKey::Sequence(MessageSet::Saved) | SearchKey::Uid(MessageSet::Saved) => saved(),
            SearchKey::Not(inner) => match self.compile(inner) {
                Node::Const(value) => Node::Const(!value),
                Node::Not(inner) => *inner,
                node => Node::Not(Box::new(node)),
            },
            SearchKey::Or(left, right) => match (self.compile(left), self.compile(right)) {
                (Node::Const(true), _) | (_, Node::Const(true)) => Node::Const(true),
                (Node::Const(false), node) | (node, Node::Const(false)) => node,
                (left, right) if right.cost() < left.cost() => {
                    Node::Or(Box::new(right), Box::new(left))
                }
                (left, right) => Node::Or(Box::new(left), Box::new(right)),
            },
            SearchKey::And(keys) => {
                let mut nodes = Vec::with_capacity(keys.len());
                for key in keys {
                    match self.compile(key) {
                        Node::Const(true) => {}
                        Node::Const(false) => return Node::Const(false),
                        Node::And(inner) => nodes.extend(inner),
                        node => nodes.push(node),
                    }
                }
                // Stable, so equally cheap keys keep the client's order.
                nodes.sort_by_cached_key(Node::cost);
                match nodes.len() {
                    0 => Node::Const(true),
                    1 => nodes.pop().unwrap_or(Node::Const(true)),
                    _ => Node::And(nodes),
                }
            }
        }
    }
}

impl Node {
    fn cost(&self) -> Cost {
        match self {
            Node::Sent(..) => Cost::Info,
            Node::Text(TextField::Body | TextField::Text, _) => Cost::Body,
            Node::Text(..) | Node::Header(..) => Cost::Header,
            Node::Not(inner) => inner.cost(),
            Node::Or(left, right) => left.cost().max(right.cost()),
            Node::And(nodes) => nodes.iter().map(Node::cost).max().unwrap_or(Cost::Record),
            _ => Cost::Record,
        }
    }

    fn eval(&self, message: &Candidate<'_>, loaded: &mut Loaded<'_>) -> bool {
        match self {
            Node::Const(value) => *value,
            Node::System(flag) => message.flags.contains(*flag),
            Node::Keyword(keyword) => message
                .keywords
                .iter()
                .any(|k| k.eq_ignore_ascii_case(keyword)),
            Node::Sequence(ranges) => in_ranges(ranges, message.seq),
            Node::Uid(ranges) => in_ranges(ranges, message.uid),
            Node::Arrived(how, day) => {
                // The calendar date in the zone the date was given in.
                let offset = i64::from(message.internal_date_offset) * 60;
                let local = message.internal_date.saturating_add(offset);
                compare_day(*how, local.div_euclid(DAY), *day)
            }
            Node::Sent(how, day) => loaded
                .sent_day()
                .is_some_and(|sent| compare_day(*how, sent, *day)),
            Node::Larger(size) => u64::from(message.size) > *size,
            Node::Smaller(size) => u64::from(message.size) < *size,
            Node::Text(field, needle) => loaded.contains(*field, needle),
            Node::Header(name, needle) => loaded
                .header()
                .fields
                .iter()
                .any(|(field, value)| field == name && value.contains(needle.as_str())),
            Node::Not(inner) => !inner.eval(message, loaded),
            Node::Or(left, right) => left.eval(message, loaded) || right.eval(message, loaded),
            Node::And(nodes) => nodes.iter().all(|node| node.eval(message, loaded)),
        }
    }
}

fn compare_day(how: DateMatch, day: i64, key: i64) -> bool {
    match how {
        DateMatch::Before => day < key,
        DateMatch::On => day == key,
        DateMatch::Since => day >= key,
    }
}

/// `ranges` sorted and disjoint, as [`super::parser::SequenceSet::resolve`] returns.
fn in_ranges(ranges: &[RangeInclusive<u32>], n: u32) -> bool {
    let at = ranges.partition_point(|range| *range.end() < n);
    ranges.get(at).is_some_and(|range| range.contains(&n))
}

/// Per character rather than `str::to_lowercase`, whose final-sigma rule
/// depends on context and so can lowercase a needle and a text differently.
fn lower(text: &str) -> String {
    if text.is_ascii() {
        text.to_ascii_lowercase()
    } else {
        text.chars().flat_map(char::to_lowercase).collect()
    }
}

/// One message's content, loaded on first use within one `matches` call.
struct Loaded<'c> {
    content: &'c mut dyn Content,
    sent_day: Option<Option<i64>>,
    header: Option<HeaderText>,
    body: Option<Vec<String>>,
}

impl Loaded<'_> {
    fn sent_day(&mut self) -> Option<i64> {
        let content = &mut self.content;
        *self.sent_day.get_or_insert_with(|| {
            let sent = content.info().and_then(|info| info.sent_date);
            sent.map(|seconds| seconds.div_euclid(DAY))
        })
    }

    fn header(&mut self) -> &HeaderText {
        let content = &mut self.content;
        self.header
            .get_or_insert_with(|| content.raw().map(HeaderText::parse).unwrap_or_default())
    }

    fn body(&mut self) -> &[String] {
        let content = &mut self.content;
        self.body
            .get_or_insert_with(|| content.raw().map(body_text).unwrap_or_default())
    }

    fn contains(&mut self, field: TextField, needle: &str) -> bool {
        match field {
            TextField::Subject => self
                .header()
                .fields
                .iter()
                .any(|(name, value)| name == "subject" && value.contains(needle)),
            TextField::Body => self.body().iter().any(|text| text.contains(needle)),
            TextField::Text => {
                let fields = &self.header().fields;
                fields
                    .iter()
                    .any(|(name, value)| name.contains(needle) || value.contains(needle))
                    || self.body().iter().any(|text| text.contains(needle))
            }
            TextField::From | TextField::To | TextField::Cc | TextField::Bcc => self
                .header()
                .addresses
                .iter()
                .any(|(which, text)| *which == field && text.contains(needle)),
        }
    }
}

/// The top-level header, decoded and lowercased for matching.
#[derive(Debug, Default)]
struct HeaderText {
    /// Every field as (ASCII-lowercase name, lowercased decoded value).
    fields: Vec<(String, String)>,
    /// Display names, group names and addresses of From, To, Cc and Bcc, one
    /// entry each, so FROM "alice" and FROM "example.org" both find
    /// `Alice <alice@example.org>`.
    addresses: Vec<(TextField, String)>,
}

/// Address fields parsed as addresses; every other field as unstructured
/// text, which decodes RFC 2047 encoded-words (HEADER wants decoded values).
fn header_parser() -> &'static MessageParser {
    static PARSER: OnceLock<MessageParser> = OnceLock::new();
    PARSER.get_or_init(|| {
        [
            HeaderName::From,
            HeaderName::To,
            HeaderName::Cc,
            HeaderName::Bcc,
        ]
        .into_iter()
        .fold(
            MessageParser::new().default_header_text(),
            |parser, name| parser.header_address(name),
        )
    })
}

/// Only what locating and decoding the text parts needs.
fn body_parser() -> &'static MessageParser {
    static PARSER: OnceLock<MessageParser> = OnceLock::new();
    PARSER.get_or_init(|| {
        MessageParser::new()
            .with_mime_headers()
            .default_header_ignore()
    })
}

impl HeaderText {
    fn parse(raw: &[u8]) -> HeaderText {
        let mut text = HeaderText::default();
        // mail-parser has debug_asserts on odd input; a panic there must
        // not take the session down, so such a message just matches nothing.
        let parsed = catch_unwind(|| header_parser().parse_headers(raw)).unwrap_or(None);
        let Some(root) = parsed.as_ref().and_then(|message| message.parts.first()) else {
            return text;
        };
        for header in &root.headers {
            let value = match &header.value {
                HeaderValue::Text(value) => lower(value),
                HeaderValue::TextList(values) => lower(&values.join(", ")),
                HeaderValue::Address(address) => {
                    let field = match header.name {
                        HeaderName::From => TextField::From,
                        HeaderName::To => TextField::To,
                        HeaderName::Cc => TextField::Cc,
                        _ => TextField::Bcc,
                    };
                    text.add_addresses(field, address)
                }
                // Not produced by this parser's settings; the raw value is
                // the honest fallback.
                _ => {
                    let range = header.offset_start as usize..header.offset_end as usize;
                    lower(String::from_utf8_lossy(raw.get(range).unwrap_or_default()).trim())
                }
            };
            text.fields
                .push((header.name.as_str().to_ascii_lowercase(), value));
        }
        text
    }

    /// Records the address entries and returns the field's text for HEADER,
    /// rebuilt as `name <address>, ...` from the decoded parts.
    fn add_addresses(&mut self, field: TextField, address: &Address<'_>) -> String {
        let mut rendered = String::new();
        if let Address::Group(groups) = address {
            for name in groups.iter().filter_map(|group| group.name.as_deref()) {
                self.addresses.push((field, lower(name)));
                rendered.push_str(&lower(name));
                rendered.push_str(": ");
            }
        }
        for addr in address.iter() {
            if !rendered.is_empty() {
                rendered.push_str(", ");
            }
            if let Some(name) = addr.name() {
                self.addresses.push((field, lower(name)));
                rendered.push_str(&lower(name));
                rendered.push(' ');
            }
            if let Some(email) = addr.address() {
                self.addresses.push((field, lower(email)));
                rendered.push('<');
                rendered.push_str(&lower(email));
                rendered.push('>');
            }
        }
        rendered
    }
}

/// The lowercased text of every text/* part, nested messages included,
/// decoded to UTF-8 by mail-parser.
fn body_text(raw: &[u8]) -> Vec<String> {
    let parsed = catch_unwind(|| body_parser().parse(raw)).unwrap_or(None);
    let mut texts = Vec::new();
    // Walks and takes apart nested messages with a stack: mail-parser's Drop
    // recurses once per nesting level, and deep nesting would overflow.
    let mut pending: Vec<Message<'_>> = parsed.into_iter().collect();
    while let Some(mut message) = pending.pop() {
        for part in message.parts.drain(..) {
            match part.body {
                PartType::Text(text) | PartType::Html(text) => texts.push(lower(&text)),
                PartType::Message(inner) => pending.push(inner),
                PartType::Binary(_) | PartType::InlineBinary(_) | PartType::Multipart(_) => {}
            }
        }
    }
    texts
}
