//! The client-command grammar of IMAP4rev2 (RFC 9051) and IMAP4rev1
//! (RFC 3501), with the extensions letterbox announces: LITERAL+/-, SASL-IR,
//! ENABLE, UNSELECT, MOVE, UIDPLUS, ID, IDLE, NAMESPACE, LIST-EXTENDED,
//! LIST-STATUS, SPECIAL-USE, ESEARCH, SEARCHRES, BINARY, APPENDLIMIT and
//! UTF8=ACCEPT's APPEND form.
//!
//! The parser checks syntax only: whether a command is allowed in the
//! session's state, how a mailbox name is decoded and whether INBOX matches
//! case-insensitively are the session's business. Mailbox names and search
//! strings are returned as the raw bytes the client sent.
//!
//! It never panics, recurses at most [`MAX_DEPTH`] levels (SEARCH is the only
//! nested grammar) and allocates only in proportion to the command's bytes,
//! which the assembler has already bounded.

use std::fmt;
use std::ops::RangeInclusive;

use super::assembler::{Assembled, Literal};

/// Deepest nesting of parentheses, NOT and OR in a SEARCH.
pub const MAX_DEPTH: usize = 64;
/// Most ranges in one sequence set.
pub const MAX_RANGES: usize = 1000;
/// RFC 2971 §3.3: at most 30 pairs, names of 30 octets, values of 1024.
const MAX_ID_PAIRS: usize = 30;
const MAX_ID_FIELD: usize = 30;
const MAX_ID_VALUE: usize = 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    pub tag: String,
    pub body: CommandBody,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandBody {
    Capability,
    Noop,
    Logout,
    StartTls,
    /// `mechanism` is upper-cased; `initial_response` (SASL-IR) is the raw
    /// base64 text, `=` standing for an empty response.
    Authenticate {
        mechanism: String,
        initial_response: Option<Vec<u8>>,
    },
    Login {
        user: String,
        password: Vec<u8>,
    },
    /// Capability names as the client wrote them.
    Enable(Vec<String>),
    /// SELECT, or EXAMINE when `read_only`.
    Select {
        mailbox: Vec<u8>,
        read_only: bool,
        condstore: bool,
    },
    /// `special_use`: the attributes of RFC 6154's `USE (...)`, e.g. `\Drafts`.
    Create {
        mailbox: Vec<u8>,
        special_use: Option<Vec<String>>,
    },
    Delete {
        mailbox: Vec<u8>,
    },
    Rename {
        from: Vec<u8>,
        to: Vec<u8>,
    },
    Subscribe {
        mailbox: Vec<u8>,
    },
    Unsubscribe {
        mailbox: Vec<u8>,
    },
    List {
        selection: ListSelection,
        reference: Vec<u8>,
        patterns: Vec<Vec<u8>>,
        returns: ListReturn,
    },
    Lsub {
        reference: Vec<u8>,
        pattern: Vec<u8>,
    },
    Namespace,
    Status {
        mailbox: Vec<u8>,
        items: Vec<StatusItem>,
    },
    /// `binary`: the message came as literal8 (`~{n}`, RFC 3516) and may hold
    /// NUL; `utf8`: it came as `UTF8 (~{n})` (RFC 6855).
    Append {
        mailbox: Vec<u8>,
        flags: Vec<Flag>,
        date: Option<DateTime>,
        message: Vec<u8>,
        binary: bool,
        utf8: bool,
    },
    Check,
    Close,
    Unselect,
    /// EXPUNGE, or UID EXPUNGE (UIDPLUS) with its UID set.
    Expunge {
        uids: Option<MessageSet>,
    },
    /// `return_options`: None without RETURN; `RETURN ()` is an empty list,
    /// which means ALL (RFC 4731).
    Search {
        uid: bool,
        charset: Option<String>,
        return_options: Option<Vec<SearchReturn>>,
        key: SearchKey,
    },
    /// The macros ALL, FAST and FULL arrive expanded.
    Fetch {
        uid: bool,
        set: MessageSet,
        items: Vec<FetchItem>,
        /// RFC 7162's CHANGEDSINCE: only messages with a greater MODSEQ.
        changed_since: Option<u64>,
    },
    Store {
        uid: bool,
        set: MessageSet,
        request: StoreRequest,
    },
    Copy {
        uid: bool,
        set: MessageSet,
        mailbox: Vec<u8>,
    },
    Move {
        uid: bool,
        set: MessageSet,
        mailbox: Vec<u8>,
    },
    Idle,
    /// None for `ID NIL`. Values that are not UTF-8 are decoded lossily.
    Id(Option<Vec<(String, Option<String>)>>),
}

/// What a STORE asks for, besides the messages (RFC 9051 §6.4.6, RFC 7162).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreRequest {
    pub mode: StoreMode,
    /// FLAGS.SILENT: no FETCH replies (but see RFC 7162 §3.1.3).
    pub silent: bool,
    pub flags: Vec<Flag>,
    /// RFC 7162's UNCHANGEDSINCE: leave messages with a greater MODSEQ.
    pub unchanged_since: Option<u64>,
}

/// What went wrong, for the tagged BAD reply (`*` when `tag` is None).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub tag: Option<String>,
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ParseError {}

/// A flag a client may set. `\Recent`, `\*` and unknown `\` flags are
/// refused at parse time: none of them can be stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Flag {
    Seen,
    Answered,
    Flagged,
    Deleted,
    Draft,
    Keyword(String),
}

impl Flag {
    pub fn as_str(&self) -> &str {
        match self {
            Flag::Seen => "\\Seen",
            Flag::Answered => "\\Answered",
            Flag::Flagged => "\\Flagged",
            Flag::Deleted => "\\Deleted",
            Flag::Draft => "\\Draft",
            Flag::Keyword(keyword) => keyword,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreMode {
    Replace,
    Add,
    Remove,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusItem {
    Messages,
    UidNext,
    UidValidity,
    Unseen,
    Deleted,
    Size,
    Recent,
    AppendLimit,
    HighestModseq,
}

/// LIST selection options (RFC 5258, RFC 6154).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ListSelection {
    pub subscribed: bool,
    pub remote: bool,
    pub recursive_match: bool,
    pub special_use: bool,
}

/// LIST return options (RFC 5258, RFC 5819, RFC 6154).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListReturn {
    pub subscribed: bool,
    pub children: bool,
    pub special_use: bool,
    pub status: Option<Vec<StatusItem>>,
}

/// ESEARCH return options (RFC 4731, SAVE from RFC 5182).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SearchReturn {
    Min,
    Max,
    Count,
    All,
    Save,
}

/// An APPEND date-time: the instant as Unix seconds, and the zone the client
/// wrote, in minutes east of UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DateTime {
    pub unix: i64,
    pub offset_minutes: i16,
}

/// A SEARCH date (no time or zone, RFC 9051 §6.4.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Date {
    pub year: u16,
    pub month: u8,
    pub day: u8,
}

impl Date {
    pub fn days_since_epoch(&self) -> i64 {
        // Civil-to-days on a calendar whose years start in March, so the
        // leap day falls at the end of the year.
        let year = i64::from(self.year) - i64::from(self.month <= 2);
        let era = year.div_euclid(400);
        let year_of_era = year - era * 400;
        let month_from_march = (i64::from(self.month) + 9) % 12;
        let day_of_year = (153 * month_from_march + 2) / 5 + i64::from(self.day) - 1;
        let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
        era * 146_097 + day_of_era - 719_468
    }
}

/// A message set as the client wrote it: explicit ranges, or `$`, the
/// result saved by SEARCH RETURN (SAVE) (RFC 5182), which only the session
/// can resolve. `$` is accepted only on its own, not inside a list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MessageSet {
    Set(SequenceSet),
    Saved,
}

/// One or more ranges, at most [`MAX_RANGES`], in the client's order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SequenceSet(Vec<SeqRange>);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeqRange {
    pub start: SeqBound,
    pub end: SeqBound,
}

/// A sequence number or UID (never 0), or `*`, the largest in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeqBound {
    Num(u32),
    Star,
}

impl SeqRange {
    /// Lowest and highest number covered, `*` standing for `star`; a range
    /// may be written either way round (RFC 9051 §9, seq-range).
    pub fn bounds(&self, star: u32) -> (u32, u32) {
        let value = |bound: SeqBound| match bound {
            SeqBound::Num(n) => n,
            SeqBound::Star => star,
        };
        let (a, b) = (value(self.start), value(self.end));
        (a.min(b), a.max(b))
    }
}

impl SequenceSet {
    pub fn ranges(&self) -> &[SeqRange] {
        &self.0
    }

    /// Whether `n` is in the set, `*` standing for `star`. Linear in the
    /// number of ranges; for many lookups, [`Self::resolve`] once instead.
    pub fn contains(&self, n: u32, star: u32) -> bool {
        self.0.iter().any(|range| {
            let (low, high) = range.bounds(star);
            (low..=high).contains(&n)
        })
    }

    /// The set as sorted, disjoint ranges within `1..=max`, `*` standing for
    /// `max`: what a redb range scan over UIDs wants.
    pub fn resolve(&self, max: u32) -> Vec<RangeInclusive<u32>> {
        let mut spans: Vec<(u32, u32)> = self
            .0
            .iter()
            .map(|range| range.bounds(max))
            .map(|(low, high)| (low.max(1), high.min(max)))
            .filter(|(low, high)| low <= high)
            .collect();
        spans.sort_unstable();
        let mut merged: Vec<RangeInclusive<u32>> = Vec::with_capacity(spans.len());
        for (low, high) in spans {
            match merged.last_mut() {
                Some(last) if low <= last.end().saturating_add(1) => {
                    *last = *last.start()..=high.max(*last.end());
                }
                _ => merged.push(low..=high),
            }
        }
        merged
    }

    /// Every number of the set within `1..=max`, ascending, each once.
    pub fn iter_within(&self, max: u32) -> impl Iterator<Item = u32> {
        self.resolve(max).into_iter().flatten()
    }
}

/// A SEARCH criterion. Flag keys are folded: ANSWERED is `Flag(Answered)`,
/// UNANSWERED `Not(Flag(Answered))`, KEYWORD k `Flag(Keyword(k))`; rev1's
/// NEW is `And[Recent, Not(Flag(Seen))]`, OLD `Not(Recent)`. A
/// parenthesized list and a list of top-level keys are `And`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SearchKey {
    All,
    Flag(Flag),
    Recent,
    Contains(TextField, Vec<u8>),
    Header(String, Vec<u8>),
    InternalDate(DateMatch, Date),
    SentDate(DateMatch, Date),
    Larger(u64),
    Smaller(u64),
    Uid(MessageSet),
    Sequence(MessageSet),
    /// RFC 7162: messages whose MODSEQ is at least this.
    Modseq(u64),
    Not(Box<SearchKey>),
    Or(Box<SearchKey>, Box<SearchKey>),
    And(Vec<SearchKey>),
}

impl SearchKey {
    /// Whether a MODSEQ criterion is anywhere in the key (RFC 7162 §3.1.5).
    pub fn mentions_modseq(&self) -> bool {
        match self {
            SearchKey::Modseq(_) => true,
            SearchKey::Not(k) => k.mentions_modseq(),
            SearchKey::Or(a, b) => a.mentions_modseq() || b.mentions_modseq(),
            SearchKey::And(keys) => keys.iter().any(SearchKey::mentions_modseq),
            _ => false,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextField {
    Bcc,
    Body,
    Cc,
    From,
    Subject,
    Text,
    To,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DateMatch {
    Before,
    On,
    Since,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchItem {
    Flags,
    InternalDate,
    Rfc822Size,
    Envelope,
    /// BODY without a section: the structure without extension data.
    Body,
    BodyStructure,
    Uid,
    Rfc822,
    Rfc822Header,
    Rfc822Text,
    BodySection {
        peek: bool,
        section: Section,
        partial: Option<Partial>,
    },
    Binary {
        peek: bool,
        part: Vec<u32>,
        partial: Option<Partial>,
    },
    BinarySize {
        part: Vec<u32>,
    },
    /// RFC 7162's MODSEQ: the message's modification sequence.
    Modseq,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Section {
    pub part: Vec<u32>,
    pub text: Option<SectionText>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SectionText {
    Header,
    /// Field names as the client spelled them.
    HeaderFields(Vec<String>),
    HeaderFieldsNot(Vec<String>),
    Text,
    Mime,
}

/// `<offset.length>`. A length past 2^32-1 is clamped (it means "to the
/// end" for any message letterbox can store); such an offset is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Partial {
    pub offset: u32,
    pub length: u32,
}

impl FetchItem {
    /// The item's name in a FETCH response, e.g. `BODY[HEADER.FIELDS (From)]<0>`
    /// for `BODY.PEEK[header.fields (From)]<0.100>`: .PEEK dropped, keywords
    /// upper-cased, header names as the client wrote them, only the origin
    /// of a partial (RFC 9051 §7.5.2).
    pub fn response_name(&self) -> String {
        let partial = |partial: &Option<Partial>| {
            partial.map_or(String::new(), |p| format!("<{}>", p.offset))
        };
        match self {
            FetchItem::Flags => "FLAGS".into(),
            FetchItem::InternalDate => "INTERNALDATE".into(),
            FetchItem::Rfc822Size => "RFC822.SIZE".into(),
            FetchItem::Envelope => "ENVELOPE".into(),
            FetchItem::Body => "BODY".into(),
            FetchItem::BodyStructure => "BODYSTRUCTURE".into(),
            FetchItem::Uid => "UID".into(),
            FetchItem::Modseq => "MODSEQ".into(),
            FetchItem::Rfc822 => "RFC822".into(),
            FetchItem::Rfc822Header => "RFC822.HEADER".into(),
            FetchItem::Rfc822Text => "RFC822.TEXT".into(),
            FetchItem::BodySection {
                section,
                partial: p,
                ..
            } => {
                format!("BODY[{}]{}", render_section(section), partial(p))
            }
            FetchItem::Binary {
                part, partial: p, ..
            } => format!("BINARY[{}]{}", render_part(part), partial(p)),
            FetchItem::BinarySize { part } => format!("BINARY.SIZE[{}]", render_part(part)),
        }
    }
}

fn render_part(part: &[u32]) -> String {
    part.iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(".")
}

fn render_section(section: &Section) -> String {
    let mut out = render_part(&section.part);
    let Some(text) = &section.text else {
        return out;
    };
    if !out.is_empty() {
        out.push('.');
    }
    let fields = |keyword: &str, names: &[String]| {
        let names: Vec<String> = names.iter().map(|n| render_astring(n)).collect();
        format!("{keyword} ({})", names.join(" "))
    };
    out += &match text {
        SectionText::Header => "HEADER".into(),
        SectionText::HeaderFields(names) => fields("HEADER.FIELDS", names),
        SectionText::HeaderFieldsNot(names) => fields("HEADER.FIELDS.NOT", names),
        SectionText::Text => "TEXT".into(),
        SectionText::Mime => "MIME".into(),
    };
    out
}

/// Header names are printable ASCII (checked when parsed), so an atom or a
/// quoted string always does.
fn render_astring(value: &str) -> String {
    if !value.is_empty() && value.bytes().all(is_astring_char) {
        return value.to_string();
    }
    let mut quoted = String::from("\"");
    for c in value.chars() {
        if c == '"' || c == '\\' {
            quoted.push('\\');
        }
        quoted.push(c);
    }
    quoted.push('"');
    quoted
}

/// Parses one assembled command. Takes ownership so an APPEND's message
/// moves into the result instead of being copied.
pub fn parse(command: Assembled) -> Result<Command, ParseError> {
    let Assembled { text, literals } = command;
    let mut parser = Parser {
        text,
        literals,
        pos: 0,
        next_literal: 0,
    };
    let tag = parser
        .tag()
        .map_err(|message| ParseError { tag: None, message })?;
    match parser.command() {
        Ok(body) => Ok(Command { tag, body }),
        Err(message) => Err(ParseError {
            tag: Some(tag),
            message,
        }),
    }
}

type Parsed<T> = Result<T, String>;

/// Anything but atom-specials: `( ) { SP CTL % * " \ ]` (RFC 9051 §9).
pub(crate) fn is_atom_char(b: u8) -> bool {
    matches!(b, 0x21..=0x7e) && !matches!(b, b'(' | b')' | b'{' | b'%' | b'*' | b'"' | b'\\' | b']')
}

fn is_astring_char(b: u8) -> bool {
    is_atom_char(b) || b == b']'
}

pub(crate) fn is_tag_char(b: u8) -> bool {
    is_astring_char(b) && b != b'+'
}

fn is_list_char(b: u8) -> bool {
    is_astring_char(b) || b == b'%' || b == b'*'
}

struct Parser {
    text: Vec<u8>,
    /// Ordered by offset; `next_literal` indexes the first not yet taken.
    literals: Vec<Literal>,
    pos: usize,
    next_literal: usize,
}

impl Parser {
    // ---- cursor ----

    fn literal_here(&self) -> bool {
        self.literals
            .get(self.next_literal)
            .is_some_and(|l| l.offset == self.pos)
    }

    /// The next text byte; None at the end and where a literal sits.
    fn peek(&self) -> Option<u8> {
        if self.literal_here() {
            return None;
        }
        self.text.get(self.pos).copied()
    }

    fn at_end(&self) -> bool {
        !self.literal_here() && self.pos >= self.text.len()
    }

    fn eat(&mut self, b: u8) -> bool {
        let found = self.peek() == Some(b);
        self.pos += usize::from(found);
        found
    }

    /// Consumes text bytes while `pred` holds, never past a literal.
    fn take_while(&mut self, pred: impl Fn(u8) -> bool) -> &[u8] {
        let text = &self.text;
        let limit = self
            .literals
            .get(self.next_literal)
            .map_or(text.len(), |l| l.offset);
        let start = self.pos;
        while self.pos < limit && pred(text[self.pos]) {
            self.pos += 1;
        }
        &text[start..self.pos]
    }

    fn take_literal(&mut self) -> Option<(Vec<u8>, bool)> {
        if !self.literal_here() {
            return None;
        }
        let literal = self.literals.get_mut(self.next_literal)?;
        self.next_literal += 1;
        Some((std::mem::take(&mut literal.data), literal.binary))
    }

    /// A short, printable account of what is at the cursor, for errors.
    fn found(&self) -> String {
        if self.literal_here() {
            return "a literal".into();
        }
        let rest = self.text.get(self.pos..).unwrap_or_default();
        let shown = String::from_utf8_lossy(&rest[..rest.len().min(20)])
            .escape_default()
            .to_string();
        let more = if rest.len() > 20 { "..." } else { "" };
        format!("\"{shown}{more}\"")
    }

    fn expected(&self, what: &str) -> String {
        if self.at_end() {
            format!("missing {what}")
        } else {
            format!("expected {what}, found {}", self.found())
        }
    }

    fn expect(&mut self, b: u8, what: &str) -> Parsed<()> {
        if self.eat(b) {
            Ok(())
        } else {
            Err(self.expected(what))
        }
    }

    /// The SP before an argument named `next`.
    fn sp(&mut self, next: &str) -> Parsed<()> {
        if self.eat(b' ') {
            Ok(())
        } else if self.at_end() {
            Err(format!("missing {next}"))
        } else {
            Err(format!("expected SP before {next}, found {}", self.found()))
        }
    }

    /// True, and consumed, if the next atom is `word` (case-insensitively).
    fn eat_word(&mut self, word: &str) -> bool {
        let start = self.pos;
        let matches = self
            .take_while(is_atom_char)
            .eq_ignore_ascii_case(word.as_bytes());
        if !matches {
            self.pos = start;
        }
        matches
    }

    /// A `(item SP item ...)` list.
    fn paren_list<T>(
        &mut self,
        what: &str,
        allow_empty: bool,
        mut item: impl FnMut(&mut Self) -> Parsed<T>,
    ) -> Parsed<Vec<T>> {
        self.expect(b'(', &format!("( to open {what}"))?;
        let mut items = Vec::new();
        if self.eat(b')') {
            return if allow_empty {
                Ok(items)
            } else {
                Err(format!("empty {what}"))
            };
        }
        loop {
            items.push(item(self)?);
            if self.eat(b')') {
                return Ok(items);
            }
            if !self.eat(b' ') {
                return Err(self.expected(&format!("SP or ) in {what}")));
            }
        }
    }

    // ---- tokens ----

    fn atom(&mut self, what: &str) -> Parsed<String> {
        let atom = self.take_while(is_atom_char);
        if atom.is_empty() {
            return Err(self.expected(what));
        }
        Ok(String::from_utf8_lossy(atom).into_owned())
    }

    fn upper_atom(&mut self, what: &str) -> Parsed<String> {
        Ok(self.atom(what)?.to_ascii_uppercase())
    }

    fn quoted(&mut self) -> Parsed<Option<Vec<u8>>> {
        if !self.eat(b'"') {
            return Ok(None);
        }
        let mut value = Vec::new();
        loop {
            match self.peek() {
                None => return Err("unterminated quoted string".into()),
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(Some(value));
                }
                Some(b'\\') => {
                    self.pos += 1;
                    match self.peek() {
                        Some(c @ (b'"' | b'\\')) => value.push(c),
                        _ => {
                            return Err(
                                "bad escape in quoted string: only \\\" and \\\\ are allowed"
                                    .into(),
                            )
                        }
                    }
                }
                Some(b'\r' | b'\n' | 0) => return Err("CR, LF or NUL in quoted string".into()),
                Some(c) => value.push(c),
            }
            self.pos += 1;
        }
    }

    /// A literal; literal8 only where `allow_binary` (APPEND's message).
    fn literal(&mut self, allow_binary: bool) -> Parsed<Option<(Vec<u8>, bool)>> {
        let Some((data, binary)) = self.take_literal() else {
            return Ok(None);
        };
        if binary && !allow_binary {
            return Err("literal8 (~{n}) is only allowed for an APPEND message".into());
        }
        if !binary && data.contains(&0) {
            return Err("literal contains NUL; binary data needs literal8 (~{n})".into());
        }
        Ok(Some((data, binary)))
    }

    fn string(&mut self, what: &str) -> Parsed<Vec<u8>> {
        if let Some(value) = self.quoted()? {
            return Ok(value);
        }
        match self.literal(false)? {
            Some((data, _)) => Ok(data),
            None => Err(self.expected(what)),
        }
    }

    fn astring(&mut self, what: &str) -> Parsed<Vec<u8>> {
        if self.peek().is_some_and(is_astring_char) {
            return Ok(self.take_while(is_astring_char).to_vec());
        }
        self.string(what)
    }

    fn utf8_astring(&mut self, what: &str) -> Parsed<String> {
        String::from_utf8(self.astring(what)?).map_err(|_| format!("{what} is not UTF-8"))
    }

    fn nstring(&mut self, what: &str) -> Parsed<Option<Vec<u8>>> {
        if self.eat_word("NIL") {
            return Ok(None);
        }
        self.string(what).map(Some)
    }

    fn mailbox(&mut self) -> Parsed<Vec<u8>> {
        self.astring("mailbox name")
    }

    fn sp_mailbox(&mut self) -> Parsed<Vec<u8>> {
        self.sp("mailbox name")?;
        self.mailbox()
    }

    fn number64(&mut self, what: &str) -> Parsed<u64> {
        let digits = self.take_while(|b| b.is_ascii_digit());
        if digits.is_empty() {
            return Err(self.expected(what));
        }
        parse_decimal(digits)
            .filter(|&n| n <= i64::MAX as u64)
            .ok_or_else(|| format!("{what} {} is too large", String::from_utf8_lossy(digits)))
    }

    fn number(&mut self, what: &str) -> Parsed<u32> {
        let n = self.number64(what)?;
        u32::try_from(n).map_err(|_| format!("{what} {n} is over 4294967295"))
    }

    fn nz_number(&mut self, what: &str) -> Parsed<u32> {
        match self.number(what)? {
            0 => Err(format!("{what} must not be 0")),
            n => Ok(n),
        }
    }

    fn header_name(&mut self) -> Parsed<String> {
        let name = self.astring("header field name")?;
        // RFC 5322 ftext: printable ASCII but ":".
        if name.is_empty() || !name.iter().all(|&b| matches!(b, 33..=57 | 59..=126)) {
            return Err(format!(
                "invalid header field name \"{}\"",
                String::from_utf8_lossy(&name).escape_default()
            ));
        }
        Ok(String::from_utf8_lossy(&name).into_owned())
    }

    // ---- sets, flags, dates ----

    fn message_set(&mut self) -> Parsed<MessageSet> {
        if self.eat(b'$') {
            return Ok(MessageSet::Saved);
        }
        let mut ranges = Vec::new();
        loop {
            let start = self.seq_bound()?;
            let end = if self.eat(b':') {
                self.seq_bound()?
            } else {
                start
            };
            if ranges.len() == MAX_RANGES {
                return Err(format!("sequence set has more than {MAX_RANGES} ranges"));
            }
            ranges.push(SeqRange { start, end });
            if !self.eat(b',') {
                return Ok(MessageSet::Set(SequenceSet(ranges)));
            }
        }
    }

    fn seq_bound(&mut self) -> Parsed<SeqBound> {
        if self.eat(b'*') {
            return Ok(SeqBound::Star);
        }
        let digits = self.take_while(|b| b.is_ascii_digit());
        let shown = String::from_utf8_lossy(digits).into_owned();
        match (
            digits.first(),
            parse_decimal(digits).and_then(|n| u32::try_from(n).ok()),
        ) {
            (None, _) => Err(self.expected("sequence number or *")),
            (Some(b'0'), _) => Err(format!(
                "invalid sequence number {shown}: numbers start at 1"
            )),
            (_, None) => Err(format!("sequence number {shown} is over 4294967295")),
            (_, Some(n)) => Ok(SeqBound::Num(n)),
        }
    }

    fn flag(&mut self) -> Parsed<Flag> {
        if !self.eat(b'\\') {
            return Ok(Flag::Keyword(self.atom("flag")?));
        }
        if self.peek() == Some(b'*') {
            return Err("\\* is not a flag that can be set".into());
        }
        let name = self.atom("flag name after \\")?;
        match name.to_ascii_lowercase().as_str() {
            "seen" => Ok(Flag::Seen),
            "answered" => Ok(Flag::Answered),
            "flagged" => Ok(Flag::Flagged),
            "deleted" => Ok(Flag::Deleted),
            "draft" => Ok(Flag::Draft),
            "recent" => Err("\\Recent cannot be set by a client".into()),
            _ => Err(format!("unknown system flag \\{name}")),
        }
    }

    fn flag_list(&mut self) -> Parsed<Vec<Flag>> {
        self.paren_list("flag list", true, Self::flag)
    }

    fn date(&mut self) -> Parsed<Date> {
        let text = match self.quoted()? {
            Some(text) => text,
            None => self
                .take_while(|b| b.is_ascii_alphanumeric() || b == b'-')
                .to_vec(),
        };
        parse_date(&text).ok_or_else(|| {
            format!(
                "invalid date \"{}\": expected d-Mon-yyyy, as in 1-Feb-1994",
                String::from_utf8_lossy(&text).escape_default()
            )
        })
    }

    fn status_items(&mut self) -> Parsed<Vec<StatusItem>> {
        self.paren_list("status items", false, |p| {
            Ok(match p.upper_atom("status item")?.as_str() {
                "MESSAGES" => StatusItem::Messages,
                "UIDNEXT" => StatusItem::UidNext,
                "UIDVALIDITY" => StatusItem::UidValidity,
                "UNSEEN" => StatusItem::Unseen,
                "DELETED" => StatusItem::Deleted,
                "SIZE" => StatusItem::Size,
                "RECENT" => StatusItem::Recent,
                "APPENDLIMIT" => StatusItem::AppendLimit,
                "HIGHESTMODSEQ" => StatusItem::HighestModseq,
                other => return Err(format!("unknown status item {other}")),
            })
        })
    }

    // ---- commands ----

    fn tag(&mut self) -> Parsed<String> {
        let tag = self.take_while(is_tag_char);
        if tag.is_empty() {
            return Err(if self.at_end() {
                "empty command line".into()
            } else {
                "invalid or missing tag".into()
            });
        }
        Ok(String::from_utf8_lossy(tag).into_owned())
    }

    fn command(&mut self) -> Parsed<CommandBody> {
        if !self.eat(b' ') {
            return Err(if self.at_end() {
                "missing command after tag".into()
            } else {
                "expected SP after tag".into()
            });
        }
        let name = self.atom("command name")?;
        let body = match name.to_ascii_uppercase().as_str() {
            "CAPABILITY" => CommandBody::Capability,
            "NOOP" => CommandBody::Noop,
            "LOGOUT" => CommandBody::Logout,
            "STARTTLS" => CommandBody::StartTls,
            "CHECK" => CommandBody::Check,
            "CLOSE" => CommandBody::Close,
            "UNSELECT" => CommandBody::Unselect,
            "NAMESPACE" => CommandBody::Namespace,
            "IDLE" => CommandBody::Idle,
            "EXPUNGE" => CommandBody::Expunge { uids: None },
            "AUTHENTICATE" => self.authenticate()?,
            "LOGIN" => {
                self.sp("user name")?;
                let user = self.utf8_astring("user name")?;
                self.sp("password")?;
                CommandBody::Login {
                    user,
                    password: self.astring("password")?,
                }
            }
            "ENABLE" => {
                self.sp("capability")?;
                let mut capabilities = vec![self.atom("capability")?];
                while self.eat(b' ') {
                    capabilities.push(self.atom("capability")?);
                }
                CommandBody::Enable(capabilities)
            }
            "SELECT" => self.select(false)?,
            "EXAMINE" => self.select(true)?,
            "CREATE" => self.create()?,
            "DELETE" => CommandBody::Delete {
                mailbox: self.sp_mailbox()?,
            },
            "RENAME" => CommandBody::Rename {
                from: self.sp_mailbox()?,
                to: self.sp_mailbox()?,
            },
            "SUBSCRIBE" => CommandBody::Subscribe {
                mailbox: self.sp_mailbox()?,
            },
            "UNSUBSCRIBE" => CommandBody::Unsubscribe {
                mailbox: self.sp_mailbox()?,
            },
            "LIST" => self.list()?,
            "LSUB" => {
                let reference = self.sp_mailbox()?;
                self.sp("mailbox pattern")?;
                CommandBody::Lsub {
                    reference,
                    pattern: self.list_mailbox()?,
                }
            }
            "STATUS" => {
                let mailbox = self.sp_mailbox()?;
                self.sp("status items")?;
                CommandBody::Status {
                    mailbox,
                    items: self.status_items()?,
                }
            }
            "APPEND" => self.append()?,
            "UID" => self.uid()?,
            "SEARCH" => self.search(false)?,
            "FETCH" => self.fetch(false)?,
            "STORE" => self.store(false)?,
            "COPY" => self.copy_or_move(false, false)?,
            "MOVE" => self.copy_or_move(false, true)?,
            "ID" => self.id()?,
            _ => {
                return Err(format!(
                    "unknown command {}",
                    name.chars().take(40).collect::<String>()
                ))
            }
        };
        if !self.at_end() {
            return Err(format!(
                "unexpected characters after command: {}",
                self.found()
            ));
        }
        Ok(body)
    }

    fn uid(&mut self) -> Parsed<CommandBody> {
        self.sp("command after UID")?;
        let name = self.atom("command after UID")?;
        match name.to_ascii_uppercase().as_str() {
            "FETCH" => self.fetch(true),
            "SEARCH" => self.search(true),
            "STORE" => self.store(true),
            "COPY" => self.copy_or_move(true, false),
            "MOVE" => self.copy_or_move(true, true),
            "EXPUNGE" => {
                self.sp("UID set")?;
                Ok(CommandBody::Expunge {
                    uids: Some(self.message_set()?),
                })
            }
            _ => Err(format!(
                "unknown UID command {name}: expected FETCH, SEARCH, STORE, COPY, MOVE or EXPUNGE"
            )),
        }
    }

    fn authenticate(&mut self) -> Parsed<CommandBody> {
        self.sp("SASL mechanism")?;
        let mechanism = self.upper_atom("SASL mechanism")?;
        let mut initial_response = None;
        if self.eat(b' ') {
            let response = self.take_while(is_atom_char).to_vec();
            let data_len = response
                .iter()
                .position(|&b| b == b'=')
                .unwrap_or(response.len());
            let padding_ok = response == b"=" || (data_len > 0 && response.len() - data_len <= 2);
            let alphabet_ok = response[..data_len]
                .iter()
                .all(|&b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
                && response[data_len..].iter().all(|&b| b == b'=');
            if !padding_ok || !alphabet_ok {
                return Err("initial response must be base64, or = for an empty one".into());
            }
            initial_response = Some(response);
        }
        Ok(CommandBody::Authenticate {
            mechanism,
            initial_response,
        })
    }

    fn select(&mut self, read_only: bool) -> Parsed<CommandBody> {
        let mailbox = self.sp_mailbox()?;
        let mut condstore = false;
        if self.eat(b' ') {
            for param in self.paren_list("SELECT parameters", false, |p| {
                p.upper_atom("SELECT parameter")
            })? {
                match param.as_str() {
                    "CONDSTORE" => condstore = true,
                    _ => return Err(format!("unknown SELECT parameter {param}")),
                }
            }
        }
        Ok(CommandBody::Select {
            mailbox,
            read_only,
            condstore,
        })
    }

    fn create(&mut self) -> Parsed<CommandBody> {
        let mailbox = self.sp_mailbox()?;
        let mut special_use: Option<Vec<String>> = None;
        if self.eat(b' ') {
            self.paren_list("CREATE parameters", false, |p| {
                let name = p.atom("CREATE parameter")?;
                if !name.eq_ignore_ascii_case("USE") {
                    return Err(format!("unknown CREATE parameter {name}"));
                }
                p.sp("special-use attributes")?;
                let attributes = p.paren_list("special-use attributes", true, |p| {
                    p.expect(b'\\', "special-use attribute such as \\Drafts")?;
                    Ok(format!("\\{}", p.atom("special-use attribute")?))
                })?;
                special_use.get_or_insert_with(Vec::new).extend(attributes);
                Ok(())
            })?;
        }
        Ok(CommandBody::Create {
            mailbox,
            special_use,
        })
    }

    fn list_mailbox(&mut self) -> Parsed<Vec<u8>> {
        if self.peek().is_some_and(is_list_char) {
            return Ok(self.take_while(is_list_char).to_vec());
        }
        self.string("mailbox pattern")
    }

    fn list(&mut self) -> Parsed<CommandBody> {
        self.sp("reference name")?;
        let mut selection = ListSelection::default();
        if self.peek() == Some(b'(') {
            for option in self.paren_list("LIST selection options", true, |p| {
                p.upper_atom("selection option")
            })? {
                match option.as_str() {
                    "SUBSCRIBED" => selection.subscribed = true,
                    "REMOTE" => selection.remote = true,
                    "RECURSIVEMATCH" => selection.recursive_match = true,
                    "SPECIAL-USE" => selection.special_use = true,
                    _ => return Err(format!("unknown LIST selection option {option}")),
                }
            }
            // RFC 5258 §3: RECURSIVEMATCH only modifies another option.
            if selection.recursive_match && !selection.subscribed && !selection.special_use {
                return Err("RECURSIVEMATCH needs SUBSCRIBED or SPECIAL-USE beside it".into());
            }
            self.sp("reference name")?;
        }
        let reference = self.mailbox()?;
        self.sp("mailbox pattern")?;
        let patterns = if self.peek() == Some(b'(') {
            self.paren_list("mailbox patterns", false, Self::list_mailbox)?
        } else {
            vec![self.list_mailbox()?]
        };
        let mut returns = ListReturn::default();
        if self.eat(b' ') {
            if !self.eat_word("RETURN") {
                return Err(self.expected("RETURN"));
            }
            self.sp("LIST return options")?;
            self.paren_list("LIST return options", true, |p| {
                match p.upper_atom("return option")?.as_str() {
                    "SUBSCRIBED" => returns.subscribed = true,
                    "CHILDREN" => returns.children = true,
                    "SPECIAL-USE" => returns.special_use = true,
                    "STATUS" => {
                        p.sp("status items")?;
                        returns.status = Some(p.status_items()?);
                    }
                    other => return Err(format!("unknown LIST return option {other}")),
                }
                Ok(())
            })?;
        }
        Ok(CommandBody::List {
            selection,
            reference,
            patterns,
            returns,
        })
    }

    fn append(&mut self) -> Parsed<CommandBody> {
        let mailbox = self.sp_mailbox()?;
        self.sp("message literal")?;
        let mut flags = Vec::new();
        if self.peek() == Some(b'(') {
            flags = self.flag_list()?;
            self.sp("message literal")?;
        }
        let mut date = None;
        if let Some(text) = self.quoted()? {
            date = Some(parse_date_time(&text).ok_or_else(|| {
                format!(
                    "invalid date-time \"{}\": expected \"dd-Mon-yyyy hh:mm:ss +zzzz\"",
                    String::from_utf8_lossy(&text).escape_default()
                )
            })?);
            self.sp("message literal")?;
        }
        if let Some((message, binary)) = self.literal(true)? {
            return Ok(CommandBody::Append {
                mailbox,
                flags,
                date,
                message,
                binary,
                utf8: false,
            });
        }
        if !self.eat_word("UTF8") {
            return Err(self.expected("message literal"));
        }
        self.sp("( before UTF8 message")?;
        self.expect(b'(', "( before UTF8 message")?;
        let message = match self.literal(true)? {
            Some((message, true)) if !message.contains(&0) => message,
            Some((_, true)) => return Err("UTF8 message contains NUL".into()),
            _ => return Err(self.expected("literal8 (~{n}) in UTF8 (...)")),
        };
        self.expect(b')', ") after UTF8 message")?;
        Ok(CommandBody::Append {
            mailbox,
            flags,
            date,
            message,
            binary: false,
            utf8: true,
        })
    }

    fn search(&mut self, uid: bool) -> Parsed<CommandBody> {
        self.sp("search criteria")?;
        let mut return_options = None;
        if self.eat_word("RETURN") {
            self.sp("search return options")?;
            return_options = Some(self.paren_list("search return options", true, |p| {
                Ok(match p.upper_atom("search return option")?.as_str() {
                    "MIN" => SearchReturn::Min,
                    "MAX" => SearchReturn::Max,
                    "COUNT" => SearchReturn::Count,
                    "ALL" => SearchReturn::All,
                    "SAVE" => SearchReturn::Save,
                    other => return Err(format!("unknown search return option {other}")),
                })
            })?);
            self.sp("search criteria")?;
        }
        let mut charset = None;
        if self.eat_word("CHARSET") {
            self.sp("charset")?;
            charset = Some(match self.quoted()? {
                Some(name) => String::from_utf8_lossy(&name).into_owned(),
                None => self.atom("charset")?,
            });
            self.sp("search criteria")?;
        }
        let mut keys = vec![self.search_key(0)?];
        while self.eat(b' ') {
            keys.push(self.search_key(0)?);
        }
        let key = if keys.len() == 1 {
            keys.remove(0)
        } else {
            SearchKey::And(keys)
        };
        Ok(CommandBody::Search {
            uid,
            charset,
            return_options,
            key,
        })
    }

    /// One search key; `depth` counts the parentheses, NOTs and ORs around
    /// it, so hostile nesting ends in an error long before the stack does.
    fn search_key(&mut self, depth: usize) -> Parsed<SearchKey> {
        match self.peek() {
            Some(b'(') => {
                if depth >= MAX_DEPTH {
                    return Err(format!("parentheses nested deeper than {MAX_DEPTH}"));
                }
                self.pos += 1;
                let mut keys = vec![self.search_key(depth + 1)?];
                while self.eat(b' ') {
                    keys.push(self.search_key(depth + 1)?);
                }
                self.expect(b')', "SP or ) in search key list")?;
                return Ok(if keys.len() == 1 {
                    keys.remove(0)
                } else {
                    SearchKey::And(keys)
                });
            }
            Some(b'0'..=b'9' | b'*' | b'$') => return Ok(SearchKey::Sequence(self.message_set()?)),
            _ => {}
        }
        let name = self.upper_atom("search key")?;
        let not = |key| SearchKey::Not(Box::new(key));
        let text = |p: &mut Self, field| -> Parsed<SearchKey> {
            p.sp("search string")?;
            Ok(SearchKey::Contains(field, p.astring("search string")?))
        };
        let date = |p: &mut Self, sent: bool, how| -> Parsed<SearchKey> {
            p.sp("date")?;
            let date = p.date()?;
            Ok(if sent {
                SearchKey::SentDate(how, date)
            } else {
                SearchKey::InternalDate(how, date)
            })
        };
        Ok(match name.as_str() {
            "ALL" => SearchKey::All,
            "ANSWERED" => SearchKey::Flag(Flag::Answered),
            "DELETED" => SearchKey::Flag(Flag::Deleted),
            "DRAFT" => SearchKey::Flag(Flag::Draft),
            "FLAGGED" => SearchKey::Flag(Flag::Flagged),
            "SEEN" => SearchKey::Flag(Flag::Seen),
            "UNANSWERED" => not(SearchKey::Flag(Flag::Answered)),
            "UNDELETED" => not(SearchKey::Flag(Flag::Deleted)),
            "UNDRAFT" => not(SearchKey::Flag(Flag::Draft)),
            "UNFLAGGED" => not(SearchKey::Flag(Flag::Flagged)),
            "UNSEEN" => not(SearchKey::Flag(Flag::Seen)),
            "RECENT" => SearchKey::Recent,
            "NEW" => SearchKey::And(vec![SearchKey::Recent, not(SearchKey::Flag(Flag::Seen))]),
            "OLD" | "UNRECENT" => not(SearchKey::Recent),
            "KEYWORD" | "UNKEYWORD" => {
                self.sp("keyword")?;
                let keyword = SearchKey::Flag(Flag::Keyword(self.atom("keyword")?));
                if name == "KEYWORD" {
                    keyword
                } else {
                    not(keyword)
                }
            }
            "BCC" => text(self, TextField::Bcc)?,
            "BODY" => text(self, TextField::Body)?,
            "CC" => text(self, TextField::Cc)?,
            "FROM" => text(self, TextField::From)?,
            "SUBJECT" => text(self, TextField::Subject)?,
            "TEXT" => text(self, TextField::Text)?,
            "TO" => text(self, TextField::To)?,
            "HEADER" => {
                self.sp("header field name")?;
                let field = self.header_name()?;
                self.sp("search string")?;
                SearchKey::Header(field, self.astring("search string")?)
            }
            "BEFORE" => date(self, false, DateMatch::Before)?,
            "ON" => date(self, false, DateMatch::On)?,
            "SINCE" => date(self, false, DateMatch::Since)?,
            "SENTBEFORE" => date(self, true, DateMatch::Before)?,
            "SENTON" => date(self, true, DateMatch::On)?,
            "SENTSINCE" => date(self, true, DateMatch::Since)?,
            "LARGER" | "SMALLER" => {
                self.sp("size")?;
                let size = self.number64("size")?;
                if name == "LARGER" {
                    SearchKey::Larger(size)
                } else {
                    SearchKey::Smaller(size)
                }
            }
            "UID" => {
                self.sp("UID set")?;
                SearchKey::Uid(self.message_set()?)
            }
            "MODSEQ" => {
                self.sp("mod-sequence")?;
                // An optional metadata entry and type ("/flags/\\seen" all):
                // every flag shares the message's one MODSEQ here.
                if self.peek() == Some(b'"') {
                    self.quoted()?;
                    self.sp("entry type")?;
                    let kind = self.upper_atom("entry type")?;
                    if !matches!(kind.as_str(), "PRIV" | "SHARED" | "ALL") {
                        return Err(format!("entry type {kind} is not priv, shared or all"));
                    }
                    self.sp("mod-sequence")?;
                }
                SearchKey::Modseq(self.number64("mod-sequence")?)
            }
            "NOT" | "OR" if depth >= MAX_DEPTH => {
                return Err(format!("search keys nested deeper than {MAX_DEPTH}"));
            }
            "NOT" => {
                self.sp("search key after NOT")?;
                not(self.search_key(depth + 1)?)
            }
            "OR" => {
                self.sp("search key after OR")?;
                let left = self.search_key(depth + 1)?;
                self.sp("second search key of OR")?;
                SearchKey::Or(Box::new(left), Box::new(self.search_key(depth + 1)?))
            }
            _ => return Err(format!("unknown search key {name}")),
        })
    }

    fn fetch(&mut self, uid: bool) -> Parsed<CommandBody> {
        self.sp("message set")?;
        let set = self.message_set()?;
        self.sp("fetch items")?;
        let items = if self.peek() == Some(b'(') {
            self.paren_list("fetch items", false, Self::fetch_item)?
        } else if self.eat_word("ALL") {
            vec![
                FetchItem::Flags,
                FetchItem::InternalDate,
                FetchItem::Rfc822Size,
                FetchItem::Envelope,
            ]
        } else if self.eat_word("FAST") {
            vec![
                FetchItem::Flags,
                FetchItem::InternalDate,
                FetchItem::Rfc822Size,
            ]
        } else if self.eat_word("FULL") {
            vec![
                FetchItem::Flags,
                FetchItem::InternalDate,
                FetchItem::Rfc822Size,
                FetchItem::Envelope,
                FetchItem::Body,
            ]
        } else {
            vec![self.fetch_item()?]
        };
        let mut changed_since = None;
        if self.eat(b' ') {
            changed_since = self.modseq_modifier("FETCH modifier", "CHANGEDSINCE")?;
        }
        Ok(CommandBody::Fetch {
            uid,
            set,
            items,
            changed_since,
        })
    }

    fn fetch_item(&mut self) -> Parsed<FetchItem> {
        let name = self
            .take_while(|b| b.is_ascii_alphanumeric() || b == b'.')
            .to_ascii_uppercase();
        Ok(match &name[..] {
            b"FLAGS" => FetchItem::Flags,
            b"INTERNALDATE" => FetchItem::InternalDate,
            b"RFC822.SIZE" => FetchItem::Rfc822Size,
            b"ENVELOPE" => FetchItem::Envelope,
            b"BODYSTRUCTURE" => FetchItem::BodyStructure,
            b"UID" => FetchItem::Uid,
            b"MODSEQ" => FetchItem::Modseq,
            b"RFC822" => FetchItem::Rfc822,
            b"RFC822.HEADER" => FetchItem::Rfc822Header,
            b"RFC822.TEXT" => FetchItem::Rfc822Text,
            b"BODY" if self.peek() != Some(b'[') => FetchItem::Body,
            b"BODY" | b"BODY.PEEK" => {
                let section = self.section()?;
                FetchItem::BodySection {
                    peek: name.len() > 4,
                    section,
                    partial: self.partial()?,
                }
            }
            b"BINARY" | b"BINARY.PEEK" => {
                let part = self.binary_section()?;
                FetchItem::Binary {
                    peek: name.len() > 6,
                    part,
                    partial: self.partial()?,
                }
            }
            b"BINARY.SIZE" => FetchItem::BinarySize {
                part: self.binary_section()?,
            },
            b"" => return Err(self.expected("fetch item")),
            _ => {
                return Err(format!(
                    "unknown fetch item {}",
                    String::from_utf8_lossy(&name)
                ))
            }
        })
    }

    fn section(&mut self) -> Parsed<Section> {
        self.expect(b'[', "[ to open a section")?;
        let mut section = Section::default();
        if self.eat(b']') {
            return Ok(section);
        }
        while self.peek().is_some_and(|b| b.is_ascii_digit()) {
            section.part.push(self.nz_number("section part number")?);
            if !self.eat(b'.') {
                return self
                    .expect(b']', "] to close the section")
                    .map(|()| section);
            }
        }
        let keyword = self
            .take_while(|b| b.is_ascii_alphabetic() || b == b'.')
            .to_ascii_uppercase();
        section.text = Some(match &keyword[..] {
            b"HEADER" => SectionText::Header,
            b"TEXT" => SectionText::Text,
            b"MIME" if !section.part.is_empty() => SectionText::Mime,
            b"MIME" => return Err("MIME needs a part number, as in BODY[1.MIME]".into()),
            b"HEADER.FIELDS" | b"HEADER.FIELDS.NOT" => {
                self.sp("header field list")?;
                let names = self.paren_list("header field list", false, Self::header_name)?;
                if keyword.len() > 13 {
                    SectionText::HeaderFieldsNot(names)
                } else {
                    SectionText::HeaderFields(names)
                }
            }
            _ => {
                return Err(self
                    .expected("section: HEADER, HEADER.FIELDS, HEADER.FIELDS.NOT, TEXT or MIME"))
            }
        });
        self.expect(b']', "] to close the section")?;
        Ok(section)
    }

    fn binary_section(&mut self) -> Parsed<Vec<u32>> {
        self.expect(b'[', "[ to open a section")?;
        let mut part = Vec::new();
        if !self.eat(b']') {
            loop {
                part.push(self.nz_number("section part number")?);
                if !self.eat(b'.') {
                    break;
                }
            }
            self.expect(b']', "] to close the section")?;
        }
        Ok(part)
    }

    fn partial(&mut self) -> Parsed<Option<Partial>> {
        if !self.eat(b'<') {
            return Ok(None);
        }
        let offset = self.number("partial offset")?;
        self.expect(b'.', ". in <offset.length>")?;
        let length = self.number64("partial length")?;
        if length == 0 {
            return Err("partial length must not be 0".into());
        }
        self.expect(b'>', "> to close <offset.length>")?;
        Ok(Some(Partial {
            offset,
            length: u32::try_from(length).unwrap_or(u32::MAX),
        }))
    }

    /// A parenthesized list of modifiers in which only `name`, with a
    /// mod-sequence, is known (RFC 7162's CHANGEDSINCE and UNCHANGEDSINCE).
    fn modseq_modifier(&mut self, what: &str, name: &str) -> Parsed<Option<u64>> {
        let values = self.paren_list(&format!("{what}s"), false, |p| {
            let found = p.upper_atom(what)?;
            if found != name {
                return Err(format!("unknown {what} {found}"));
            }
            p.sp("mod-sequence")?;
            p.number64("mod-sequence")
        })?;
        Ok(values.last().copied())
    }

    fn store(&mut self, uid: bool) -> Parsed<CommandBody> {
        self.sp("message set")?;
        let set = self.message_set()?;
        self.sp("FLAGS, +FLAGS or -FLAGS")?;
        let mut unchanged_since = None;
        if self.peek() == Some(b'(') {
            unchanged_since = self.modseq_modifier("STORE modifier", "UNCHANGEDSINCE")?;
            self.sp("FLAGS, +FLAGS or -FLAGS")?;
        }
        let mode = if self.eat(b'+') {
            StoreMode::Add
        } else if self.eat(b'-') {
            StoreMode::Remove
        } else {
            StoreMode::Replace
        };
        let silent = match self.upper_atom("FLAGS, +FLAGS or -FLAGS")?.as_str() {
            "FLAGS" => false,
            "FLAGS.SILENT" => true,
            other => return Err(format!("expected FLAGS, +FLAGS or -FLAGS, found {other}")),
        };
        self.sp("flags")?;
        let flags = if self.peek() == Some(b'(') {
            self.flag_list()?
        } else {
            let mut flags = vec![self.flag()?];
            while self.eat(b' ') {
                flags.push(self.flag()?);
            }
            flags
        };
        Ok(CommandBody::Store {
            uid,
            set,
            request: StoreRequest {
                mode,
                silent,
                flags,
                unchanged_since,
            },
        })
    }

    fn copy_or_move(&mut self, uid: bool, is_move: bool) -> Parsed<CommandBody> {
        self.sp("message set")?;
        let set = self.message_set()?;
        let mailbox = self.sp_mailbox()?;
        Ok(if is_move {
            CommandBody::Move { uid, set, mailbox }
        } else {
            CommandBody::Copy { uid, set, mailbox }
        })
    }

    fn id(&mut self) -> Parsed<CommandBody> {
        self.sp("ID parameters or NIL")?;
        if self.eat_word("NIL") {
            return Ok(CommandBody::Id(None));
        }
        let pairs = self.paren_list("ID parameters", true, |p| {
            let field = p.string("ID field name")?;
            p.sp("ID field value")?;
            let value = p.nstring("ID field value")?;
            if field.len() > MAX_ID_FIELD || value.as_ref().is_some_and(|v| v.len() > MAX_ID_VALUE)
            {
                return Err(format!(
                    "ID field names are limited to {MAX_ID_FIELD} bytes, values to {MAX_ID_VALUE}"
                ));
            }
            let text = |bytes: Vec<u8>| String::from_utf8_lossy(&bytes).into_owned();
            Ok((text(field), value.map(text)))
        })?;
        if pairs.len() > MAX_ID_PAIRS {
            return Err(format!("ID has more than {MAX_ID_PAIRS} field-value pairs"));
        }
        Ok(CommandBody::Id(Some(pairs)))
    }
}

fn parse_decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &d| {
        n.checked_mul(10)?
            .checked_add(u64::from(d.wrapping_sub(b'0')))
    })
}

fn fixed_number(digits: &[u8], len: usize) -> Option<u32> {
    if digits.len() != len || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    parse_decimal(digits).and_then(|n| u32::try_from(n).ok())
}

/// `d-Mon-yyyy` (day of one or two digits), checked against the calendar.
fn parse_date(text: &[u8]) -> Option<Date> {
    let mut fields = text.split(|&b| b == b'-');
    let (day, month, year) = (fields.next()?, fields.next()?, fields.next()?);
    if fields.next().is_some() {
        return None;
    }
    const MONTHS: [&[u8]; 12] = [
        b"jan", b"feb", b"mar", b"apr", b"may", b"jun", b"jul", b"aug", b"sep", b"oct", b"nov",
        b"dec",
    ];
    let month = MONTHS.iter().position(|m| m.eq_ignore_ascii_case(month))? as u8 + 1;
    let year = fixed_number(year, 4)? as u16;
    let day = fixed_number(day, day.len().clamp(1, 2))? as u8;
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let days_in_month = match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    };
    (1..=days_in_month)
        .contains(&day)
        .then_some(Date { year, month, day })
}

/// `dd-Mon-yyyy hh:mm:ss +zzzz`, the day also as ` d` (date-day-fixed) or `d`.
fn parse_date_time(text: &[u8]) -> Option<DateTime> {
    let text = text.strip_prefix(b" ").unwrap_or(text);
    let mut fields = text.split(|&b| b == b' ');
    let (date, time, zone) = (fields.next()?, fields.next()?, fields.next()?);
    if fields.next().is_some()
        || time.len() != 8
        || time[2] != b':'
        || time[5] != b':'
        || zone.len() != 5
    {
        return None;
    }
    let date = parse_date(date)?;
    let (hour, minute, second) = (
        fixed_number(&time[0..2], 2)?,
        fixed_number(&time[3..5], 2)?,
        fixed_number(&time[6..8], 2)?,
    );
    if hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let sign = match zone[0] {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let (zone_hours, zone_minutes) = (fixed_number(&zone[1..3], 2)?, fixed_number(&zone[3..5], 2)?);
    if zone_minutes > 59 {
        return None;
    }
    let offset_minutes = sign * (zone_hours * 60 + zone_minutes) as i16;
    let local = date.days_since_epoch() * 86_400 + i64::from(hour * 3600 + minute * 60 + second);
    Some(DateTime {
        unix: local - i64::from(offset_minutes) * 60,
        offset_minutes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::imap::assembler::{assemble_wire, Feed, Limits};
    use CommandBody as C;

    fn parse_wire(wire: &[u8]) -> Result<Command, ParseError> {
        let limits = Limits {
            max_line: 100_000,
            max_command: 1 << 20,
            max_literals: 100,
            ..Limits::default()
        };
        match assemble_wire(limits, wire).pop() {
            Some(Feed::Complete(cmd)) => parse(cmd),
            other => panic!("assembler gave {other:?}"),
        }
    }

    fn ok(wire: &str) -> CommandBody {
        match parse_wire(wire.as_bytes()) {
            Ok(command) => command.body,
            Err(e) => panic!("{wire:?}: {e}"),
        }
    }

    fn err(wire: &str) -> String {
        match parse_wire(wire.as_bytes()) {
            Ok(command) => panic!("{wire:?} parsed as {command:?}"),
            Err(e) => e.message,
        }
    }

    fn b(text: &str) -> Vec<u8> {
        text.as_bytes().to_vec()
    }

    fn set(text: &str) -> MessageSet {
        match ok(&format!("t FETCH {text} UID")) {
            C::Fetch { set, .. } => set,
            other => panic!("{other:?}"),
        }
    }

    fn ranges(text: &str) -> SequenceSet {
        match set(text) {
            MessageSet::Set(ranges) => ranges,
            MessageSet::Saved => panic!("saved set"),
        }
    }

    fn search_key(criteria: &str) -> SearchKey {
        match ok(&format!("t SEARCH {criteria}")) {
            C::Search { key, .. } => key,
            other => panic!("{other:?}"),
        }
    }

    fn fetch_items(items: &str) -> Vec<FetchItem> {
        match ok(&format!("t FETCH 1 {items}")) {
            C::Fetch { items, .. } => items,
            other => panic!("{other:?}"),
        }
    }

    fn not(key: SearchKey) -> SearchKey {
        SearchKey::Not(Box::new(key))
    }

    #[test]
    fn commands_without_arguments() {
        for (wire, body) in [
            ("a001 CAPABILITY", C::Capability),
            ("a002 noop", C::Noop),
            ("A023 LOGOUT", C::Logout),
            ("a001 StartTLS", C::StartTls),
            ("FXXZ CHECK", C::Check),
            ("A341 CLOSE", C::Close),
            ("A342 UNSELECT", C::Unselect),
            ("A001 NAMESPACE", C::Namespace),
            ("A002 IDLE", C::Idle),
            ("A202 EXPUNGE", C::Expunge { uids: None }),
        ] {
            assert_eq!(ok(wire), body, "{wire}");
        }
        assert_eq!(
            parse_wire(b"a.b[c]$! NOOP").map(|c| c.tag),
            Ok("a.b[c]$!".into())
        );
    }

    #[test]
    fn authentication() {
        let auth = |mechanism: &str, initial: Option<&str>| C::Authenticate {
            mechanism: mechanism.into(),
            initial_response: initial.map(b),
        };
        assert_eq!(ok("A001 AUTHENTICATE GSSAPI"), auth("GSSAPI", None));
        assert_eq!(
            ok("A01 authenticate plain dGVzdAB0ZXN0AHRlc3Q="),
            auth("PLAIN", Some("dGVzdAB0ZXN0AHRlc3Q="))
        );
        assert_eq!(
            ok("A02 AUTHENTICATE EXTERNAL ="),
            auth("EXTERNAL", Some("="))
        );
        let login = |user: &str, password: &[u8]| C::Login {
            user: user.into(),
            password: password.to_vec(),
        };
        assert_eq!(ok("a001 LOGIN SMITH SESAME"), login("SMITH", b"SESAME"));
        assert_eq!(ok(r#"a LOGIN "j\"d" "p\\w d""#), login("j\"d", b"p\\w d"));
        assert_eq!(ok("a LOGIN {5}\r\njörg x"), login("jörg", b"x"));
        let two_literals = parse_wire(b"a1 LOGIN {4}\r\nfred {6+}\r\nse\"c\r\n\r\n");
        assert_eq!(
            two_literals.map(|c| c.body),
            Ok(login("fred", b"se\"c\r\n"))
        );
        let latin1 = parse_wire(b"a LOGIN {2}\r\n\xff\xfe x").map_err(|e| e.message);
        assert_eq!(latin1, Err("user name is not UTF-8".into()));
        assert_eq!(
            ok("a1 ENABLE CONDSTORE X-GOOD-IDEA"),
            C::Enable(vec!["CONDSTORE".into(), "X-GOOD-IDEA".into()])
        );
    }

    #[test]
    fn mailbox_commands() {
        let select = |mailbox: &str, read_only, condstore| C::Select {
            mailbox: b(mailbox),
            read_only,
            condstore,
        };
        assert_eq!(ok("A142 SELECT INBOX"), select("INBOX", false, false));
        assert_eq!(
            ok("A932 EXAMINE blurdybloop"),
            select("blurdybloop", true, false)
        );
        assert_eq!(
            ok("A1 SELECT \"Sent Items\" (condstore)"),
            select("Sent Items", false, true)
        );
        assert_eq!(
            ok("A1 SELECT Entw&APw-rfe"),
            select("Entw&APw-rfe", false, false)
        );
        assert_eq!(
            ok("A1 SELECT {9}\r\nEntwürfe"),
            select("Entwürfe", false, false)
        );
        let create = |mailbox: &str, special_use: Option<&[&str]>| C::Create {
            mailbox: b(mailbox),
            special_use: special_use.map(|uses| uses.iter().map(|u| u.to_string()).collect()),
        };
        assert_eq!(ok("A003 CREATE owatagusiam/"), create("owatagusiam/", None));
        assert_eq!(
            ok(r"t1 CREATE MySpecial (USE (\Drafts \Sent))"),
            create("MySpecial", Some(&[r"\Drafts", r"\Sent"]))
        );
        let mailbox = b("blurdybloop");
        assert_eq!(ok("A682 DELETE blurdybloop"), C::Delete { mailbox });
        let (from, to) = (b("foo"), b("zowie"));
        assert_eq!(ok("A683 RENAME foo zowie"), C::Rename { from, to });
        let mailbox = b("#news.comp.mail.mime");
        assert_eq!(
            ok("A002 SUBSCRIBE #news.comp.mail.mime"),
            C::Subscribe { mailbox }
        );
        let mailbox = Vec::new();
        assert_eq!(ok("A002 UNSUBSCRIBE \"\""), C::Unsubscribe { mailbox });
        let (mailbox, items) = (
            b("blurdybloop"),
            vec![StatusItem::UidNext, StatusItem::Messages],
        );
        assert_eq!(
            ok("A042 STATUS blurdybloop (UIDNEXT MESSAGES)"),
            C::Status { mailbox, items }
        );
        let items = match ok("A1 STATUS x (size deleted appendlimit recent unseen uidvalidity)") {
            C::Status { items, .. } => items,
            other => panic!("{other:?}"),
        };
        use StatusItem::*;
        assert_eq!(
            items,
            [Size, Deleted, AppendLimit, Recent, Unseen, UidValidity]
        );
        let (reference, pattern) = (b("#news."), b("comp.mail.*"));
        assert_eq!(
            ok("A002 LSUB \"#news.\" \"comp.mail.*\""),
            C::Lsub { reference, pattern }
        );
    }

    #[test]
    fn list_basic_and_extended() {
        let list = |wire: &str| match ok(wire) {
            C::List {
                selection,
                reference,
                patterns,
                returns,
            } => (selection, reference, patterns, returns),
            other => panic!("{other:?}"),
        };
        let patterns = |items: &[&str]| items.iter().map(|s| b(s)).collect::<Vec<_>>();
        let basic = list("A101 LIST \"\" \"\"");
        let nothing = (
            ListSelection::default(),
            vec![],
            patterns(&[""]),
            ListReturn::default(),
        );
        assert_eq!(basic, nothing);
        assert_eq!(list("A202 LIST ~/Mail/ %").1, b"~/Mail/");
        assert_eq!(list("A202 LIST ~/Mail/ %").2, patterns(&["%"]));
        assert_eq!(list("A1 LIST \"\" foo/%/[x]*").2, patterns(&["foo/%/[x]*"]));
        let (selection, .., returns) = list("A02 LIST (SUBSCRIBED) \"\" \"*\"");
        assert!(selection.subscribed && !selection.remote && returns == ListReturn::default());
        let (selection, .., returns) = list("A03 LIST () \"\" \"%\" RETURN (CHILDREN)");
        assert!(selection == ListSelection::default() && returns.children);
        let (selection, ..) = list("A05 LIST (REMOTE SUBSCRIBED) \"\" \"*\"");
        assert!(selection.remote && selection.subscribed);
        let (selection, .., returns) =
            list("A06 LIST (SUBSCRIBED RECURSIVEMATCH) \"\" \"%\" RETURN (CHILDREN)");
        assert!(selection.recursive_match && returns.children);
        let (.., many, _) = list("A07 LIST \"\" (\"INBOX\" \"Drafts\" Sent/%)");
        assert_eq!(many, patterns(&["INBOX", "Drafts", "Sent/%"]));
        let (.., returns) = list("A01 LIST \"\" % RETURN (STATUS (MESSAGES UNSEEN))");
        assert_eq!(
            returns.status,
            Some(vec![StatusItem::Messages, StatusItem::Unseen])
        );
        let (selection, .., returns) =
            list("t3 LIST (SPECIAL-USE) \"\" \"*\" RETURN (SPECIAL-USE SUBSCRIBED)");
        assert!(selection.special_use && returns.special_use && returns.subscribed);
    }

    #[test]
    fn append_forms() {
        let message = "Date: Mon, 7 Feb 1994 21:52:25 -0800 (PST)\r\n\r\nHello Joe\r\n";
        let wire = format!(
            "A003 APPEND saved-messages (\\Seen) {{{}+}}\r\n{message}\r\n",
            message.len()
        );
        let append = ok(&wire);
        let expected = C::Append {
            mailbox: b("saved-messages"),
            flags: vec![Flag::Seen],
            date: None,
            message: b(message),
            binary: false,
            utf8: false,
        };
        assert_eq!(append, expected);
        let C::Append { flags, date, .. } =
            ok("a APPEND INBOX (\\Draft $Forwarded) \" 7-Feb-1994 21:52:25 -0800\" {2}\r\nhi")
        else {
            panic!("not an APPEND")
        };
        assert_eq!(flags, vec![Flag::Draft, Flag::Keyword("$Forwarded".into())]);
        let (unix, offset_minutes) = (760686745, -480);
        assert_eq!(
            date,
            Some(DateTime {
                unix,
                offset_minutes
            })
        );
        let binary = b"a APPEND x () \"17-Jul-1996 02:44:25 -0700\" ~{6}\r\na\r\n\0\xffb\r\n";
        let Ok(C::Append {
            message,
            binary,
            date,
            ..
        }) = parse_wire(binary).map(|c| c.body)
        else {
            panic!("not an APPEND")
        };
        assert_eq!((&message[..], binary), (&b"a\r\n\0\xffb"[..], true));
        let (unix, offset_minutes) = (837596665, -420);
        assert_eq!(
            date,
            Some(DateTime {
                unix,
                offset_minutes
            })
        );
        let C::Append {
            message,
            utf8,
            binary,
            ..
        } = ok("a APPEND x UTF8 (~{3}\r\nabc)")
        else {
            panic!("not an APPEND")
        };
        assert_eq!((&message[..], utf8, binary), (&b"abc"[..], true, false));
    }

    #[test]
    fn search_rfc_examples() {
        let smith = SearchKey::And(vec![
            SearchKey::Flag(Flag::Flagged),
            SearchKey::InternalDate(
                DateMatch::Since,
                Date {
                    year: 1994,
                    month: 2,
                    day: 1,
                },
            ),
            not(SearchKey::Contains(TextField::From, b("Smith"))),
        ]);
        let search = |uid, charset: Option<&str>, return_options, key| C::Search {
            uid,
            charset: charset.map(String::from),
            return_options,
            key,
        };
        use SearchReturn::*;
        assert_eq!(
            ok("A282 SEARCH RETURN (MIN COUNT) FLAGGED SINCE 1-Feb-1994 NOT FROM \"Smith\""),
            search(false, None, Some(vec![Min, Count]), smith.clone())
        );
        assert_eq!(
            ok("A283 SEARCH RETURN () FLAGGED SINCE 1-Feb-1994 NOT FROM \"Smith\""),
            search(false, None, Some(vec![]), smith)
        );
        let text = SearchKey::Contains(TextField::Text, b("台北\u{3000}台"));
        assert_eq!(
            ok("A285 SEARCH CHARSET UTF-8 TEXT {12}\r\n台北\u{3000}台"),
            search(false, Some("UTF-8"), None, text)
        );
        let since = SearchKey::InternalDate(
            DateMatch::Since,
            Date {
                year: 2007,
                month: 3,
                day: 19,
            },
        );
        assert_eq!(
            ok("A301 UID SEARCH RETURN (SAVE) SINCE 19-Mar-2007 NOT SEEN"),
            search(
                true,
                None,
                Some(vec![Save]),
                SearchKey::And(vec![since, not(SearchKey::Flag(Flag::Seen))])
            )
        );
        let any = search(false, Some("utf-8"), Some(vec![Max, All]), SearchKey::All);
        assert_eq!(ok("a SEARCH RETURN (MAX ALL) CHARSET \"utf-8\" ALL"), any);
    }

    #[test]
    fn search_keys() {
        let date = Date {
            year: 2024,
            month: 2,
            day: 29,
        };
        let flag = SearchKey::Flag;
        let text = |field, value: &str| SearchKey::Contains(field, b(value));
        for (criteria, key) in [
            ("ANSWERED", flag(Flag::Answered)),
            ("undeleted", not(flag(Flag::Deleted))),
            ("DRAFT", flag(Flag::Draft)),
            ("UNDRAFT", not(flag(Flag::Draft))),
            ("UNFLAGGED", not(flag(Flag::Flagged))),
            ("UNANSWERED", not(flag(Flag::Answered))),
            ("KEYWORD $Junk", flag(Flag::Keyword("$Junk".into()))),
            ("UNKEYWORD work", not(flag(Flag::Keyword("work".into())))),
            (
                "NEW",
                SearchKey::And(vec![SearchKey::Recent, not(flag(Flag::Seen))]),
            ),
            ("OLD", not(SearchKey::Recent)),
            ("UNRECENT", not(SearchKey::Recent)),
            ("RECENT", SearchKey::Recent),
            ("BCC a", text(TextField::Bcc, "a")),
            ("BODY \"two words\"", text(TextField::Body, "two words")),
            ("CC c", text(TextField::Cc, "c")),
            ("SUBJECT s", text(TextField::Subject, "s")),
            ("TO t", text(TextField::To, "t")),
            (
                "HEADER Message-ID <x@y>",
                SearchKey::Header("Message-ID".into(), b("<x@y>")),
            ),
            (
                "HEADER X-Spam \"\"",
                SearchKey::Header("X-Spam".into(), Vec::new()),
            ),
            (
                "BEFORE 29-feb-2024",
                SearchKey::InternalDate(DateMatch::Before, date),
            ),
            (
                "ON \"29-Feb-2024\"",
                SearchKey::InternalDate(DateMatch::On, date),
            ),
            (
                "SENTBEFORE 29-Feb-2024",
                SearchKey::SentDate(DateMatch::Before, date),
            ),
            (
                "SENTON 29-Feb-2024",
                SearchKey::SentDate(DateMatch::On, date),
            ),
            (
                "SENTSINCE 29-Feb-2024",
                SearchKey::SentDate(DateMatch::Since, date),
            ),
            ("LARGER 4096", SearchKey::Larger(4096)),
            ("SMALLER 10000000000", SearchKey::Smaller(10_000_000_000)),
            ("UID 1:5,7", SearchKey::Uid(set("1:5,7"))),
            ("UID $", SearchKey::Uid(MessageSet::Saved)),
            ("2:*", SearchKey::Sequence(set("2:*"))),
            ("$", SearchKey::Sequence(MessageSet::Saved)),
            ("((ALL))", SearchKey::All),
            (
                "OR SEEN (FLAGGED DELETED)",
                SearchKey::Or(
                    Box::new(flag(Flag::Seen)),
                    Box::new(SearchKey::And(vec![
                        flag(Flag::Flagged),
                        flag(Flag::Deleted),
                    ])),
                ),
            ),
        ] {
            assert_eq!(search_key(criteria), key, "{criteria}");
        }
    }

    #[test]
    fn deep_nesting_fails_fast() {
        let start = std::time::Instant::now();
        let deep = format!("a SEARCH {}ALL{}", "(".repeat(10_000), ")".repeat(10_000));
        assert_eq!(err(&deep), "parentheses nested deeper than 64");
        let nots = format!("a SEARCH {}ALL", "NOT ".repeat(10_000));
        assert_eq!(err(&nots), "search keys nested deeper than 64");
        let ors = format!("a SEARCH {}ALL", "OR ALL ".repeat(10_000));
        assert_eq!(err(&ors), "search keys nested deeper than 64");
        assert!(start.elapsed().as_secs() < 2);
        let deepest = format!("a SEARCH {}ALL{}", "(".repeat(64), ")".repeat(64));
        assert!(matches!(
            ok(&deepest),
            C::Search {
                key: SearchKey::All,
                ..
            }
        ));
    }

    #[test]
    fn fetch_items_and_macros() {
        use FetchItem::*;
        assert_eq!(
            fetch_items("ALL"),
            [Flags, InternalDate, Rfc822Size, Envelope]
        );
        assert_eq!(fetch_items("fast"), [Flags, InternalDate, Rfc822Size]);
        assert_eq!(
            fetch_items("FULL"),
            [Flags, InternalDate, Rfc822Size, Envelope, Body]
        );
        assert_eq!(
            fetch_items("(uid body bodystructure rfc822 rfc822.header rfc822.text envelope)"),
            [
                Uid,
                Body,
                BodyStructure,
                Rfc822,
                Rfc822Header,
                Rfc822Text,
                Envelope
            ]
        );
        let body = |part: Vec<u32>, text| BodySection {
            peek: false,
            section: Section { part, text },
            partial: None,
        };
        let date_from = SectionText::HeaderFields(vec!["DATE".into(), "FROM".into()]);
        assert_eq!(
            ok("A654 FETCH 2:4 (FLAGS BODY[HEADER.FIELDS (DATE FROM)])"),
            C::Fetch {
                uid: false,
                set: set("2:4"),
                items: vec![Flags, body(vec![], Some(date_from))],
                changed_since: None,
            }
        );
        let not_fields = vec!["X-A".into(), "X-B".into(), "X-C".into()];
        assert_eq!(
            fetch_items("(BODY[1.2.MIME] BODY[3.header.fields.not (X-A \"X-B\" {3}\r\nX-C)] BODY[4.TEXT] BODY[HEADER] BODY[5])"),
            [
                body(vec![1, 2], Some(SectionText::Mime)),
                body(vec![3], Some(SectionText::HeaderFieldsNot(not_fields))),
                body(vec![4], Some(SectionText::Text)),
                body(vec![], Some(SectionText::Header)),
                body(vec![5], None),
            ]
        );
        let partial = |offset, length| Some(Partial { offset, length });
        assert_eq!(
            fetch_items("(BODY.PEEK[]<0.2048> BODY[]<10.99999999999>)"),
            [
                BodySection {
                    peek: true,
                    section: Section::default(),
                    partial: partial(0, 2048)
                },
                BodySection {
                    peek: false,
                    section: Section::default(),
                    partial: partial(10, u32::MAX)
                },
            ]
        );
        assert_eq!(
            fetch_items("(BINARY.PEEK[1.2]<0.100> BINARY[] BINARY.SIZE[1])"),
            [
                Binary {
                    peek: true,
                    part: vec![1, 2],
                    partial: partial(0, 100)
                },
                Binary {
                    peek: false,
                    part: vec![],
                    partial: None
                },
                BinarySize { part: vec![1] },
            ]
        );
        assert_eq!(fetch_items("(FLAGS) (CHANGEDSINCE 12345)"), [Flags]);
        assert_eq!(fetch_items("(UID MODSEQ)"), [Uid, FetchItem::Modseq]);
    }

    #[test]
    fn response_names() {
        let items = r#"(BODY.PEEK[header.fields (From "X\"Q")]<0.100> BINARY.PEEK[1.2]<5.10> BINARY.SIZE[] BODY[1.MIME] rfc822.size BODY[])"#;
        let names: Vec<String> = fetch_items(items)
            .iter()
            .map(FetchItem::response_name)
            .collect();
        assert_eq!(
            names,
            [
                r#"BODY[HEADER.FIELDS (From "X\"Q")]<0>"#,
                "BINARY[1.2]<5>",
                "BINARY.SIZE[]",
                "BODY[1.MIME]",
                "RFC822.SIZE",
                "BODY[]"
            ]
        );
    }

    #[test]
    fn condstore_syntax() {
        // RFC 7162's examples.
        assert_eq!(
            ok("s100 UID FETCH 1:* (FLAGS) (CHANGEDSINCE 12345)"),
            C::Fetch {
                uid: true,
                set: set("1:*"),
                items: vec![FetchItem::Flags],
                changed_since: Some(12345),
            }
        );
        assert_eq!(
            ok(r"d105 STORE 7,5,9 (UNCHANGEDSINCE 320162338) +FLAGS.SILENT (\Deleted)"),
            C::Store {
                uid: false,
                set: set("7,5,9"),
                request: StoreRequest {
                    mode: StoreMode::Add,
                    silent: true,
                    flags: vec![Flag::Deleted],
                    unchanged_since: Some(320162338),
                },
            }
        );
        let search = |line: &str| match ok(line) {
            C::Search { key, .. } => key,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            search("a SEARCH MODSEQ 620162338"),
            SearchKey::Modseq(620162338)
        );
        assert_eq!(
            search(
                r#"a SEARCH OR NOT MODSEQ 720162338 LARGER 50000 MODSEQ "/flags/\\draft" all 620162338"#
            ),
            SearchKey::And(vec![
                SearchKey::Or(
                    Box::new(SearchKey::Not(Box::new(SearchKey::Modseq(720162338)))),
                    Box::new(SearchKey::Larger(50000))
                ),
                SearchKey::Modseq(620162338),
            ])
        );
        assert!(SearchKey::Not(Box::new(SearchKey::Modseq(1))).mentions_modseq());
        assert!(!SearchKey::Larger(1).mentions_modseq());
        match ok("a STATUS INBOX (HIGHESTMODSEQ MESSAGES)") {
            C::Status { items, .. } => {
                assert_eq!(items, [StatusItem::HighestModseq, StatusItem::Messages])
            }
            other => panic!("{other:?}"),
        }
        for (line, error) in [
            (
                "a STORE 1 (UNCHANGEDSINCE x) +FLAGS (\\Seen)",
                "expected mod-sequence",
            ),
            (
                "a STORE 1 (CHANGEDSINCE 1) +FLAGS (\\Seen)",
                "unknown STORE modifier CHANGEDSINCE",
            ),
            (
                "a FETCH 1 FLAGS (UNCHANGEDSINCE 1)",
                "unknown FETCH modifier UNCHANGEDSINCE",
            ),
            (
                "a SEARCH MODSEQ \"/flags/x\" mine 5",
                "entry type MINE is not priv, shared or all",
            ),
        ] {
            assert!(err(line).starts_with(error), "{line}: {}", err(line));
        }
    }

    #[test]
    fn store_copy_move_and_uid() {
        let store = |uid, set, mode, silent, flags| C::Store {
            uid,
            set,
            request: StoreRequest {
                mode,
                silent,
                flags,
                unchanged_since: None,
            },
        };
        assert_eq!(
            ok(r"A003 STORE 2:4 +FLAGS (\Deleted)"),
            store(
                false,
                set("2:4"),
                StoreMode::Add,
                false,
                vec![Flag::Deleted]
            )
        );
        assert_eq!(
            ok(r"A4 UID STORE 1 -FLAGS.SILENT \seen Junk"),
            store(
                true,
                set("1"),
                StoreMode::Remove,
                true,
                vec![Flag::Seen, Flag::Keyword("Junk".into())]
            )
        );
        assert_eq!(
            ok("A5 STORE $ FLAGS ()"),
            store(false, MessageSet::Saved, StoreMode::Replace, false, vec![])
        );
        let mailbox = b("MEETING");
        assert_eq!(
            ok("A003 COPY 2:4 MEETING"),
            C::Copy {
                uid: false,
                set: set("2:4"),
                mailbox
            }
        );
        let mailbox = b("foo");
        assert_eq!(
            ok("a UID MOVE 42:69 foo"),
            C::Move {
                uid: true,
                set: set("42:69"),
                mailbox
            }
        );
        let mailbox = b("Other Messages");
        let saved = MessageSet::Saved;
        assert_eq!(
            ok("A003 UID COPY $ \"Other Messages\""),
            C::Copy {
                uid: true,
                set: saved,
                mailbox
            }
        );
        let uids = Some(set("3000:3002"));
        assert_eq!(ok("A003 UID EXPUNGE 3000:3002"), C::Expunge { uids });
        assert!(matches!(
            ok("A999 UID FETCH 4827313:4828442 FLAGS"),
            C::Fetch { uid: true, .. }
        ));
        assert_eq!(
            ok("a023 ID (\"name\" \"sodr\" \"version\" \"19.34\" \"vendor\" NIL)"),
            C::Id(Some(vec![
                ("name".into(), Some("sodr".into())),
                ("version".into(), Some("19.34".into())),
                ("vendor".into(), None),
            ]))
        );
        assert_eq!(ok("a ID NIL"), C::Id(None));
        assert_eq!(ok("a ID ()"), C::Id(Some(vec![])));
    }

    #[test]
    fn sequence_sets() {
        let s = ranges("1,3:5,*,9:7,10:*");
        let range = |start, end| SeqRange { start, end };
        assert_eq!(s.ranges()[1], range(SeqBound::Num(3), SeqBound::Num(5)));
        assert_eq!(s.ranges()[2], range(SeqBound::Star, SeqBound::Star));
        assert!(s.contains(4, 20) && s.contains(8, 20) && s.contains(20, 20) && !s.contains(2, 20));
        assert!(s.contains(6, 6), "10:* covers * even when * < 10");
        assert_eq!(s.resolve(20), vec![1..=1, 3..=5, 7..=20]);
        assert_eq!(s.resolve(4), vec![1..=1, 3..=4]);
        assert_eq!(s.iter_within(6).collect::<Vec<_>>(), vec![1, 3, 4, 5, 6]);
        assert_eq!(s.iter_within(0).count(), 0);
        let everything = ranges("1:*");
        let first: Vec<u32> = everything.iter_within(u32::MAX).take(3).collect();
        assert_eq!(first, [1, 2, 3]);
        assert_eq!(everything.iter_within(u32::MAX).last(), Some(u32::MAX));
        assert!(everything.contains(u32::MAX, u32::MAX));
        let top = SeqBound::Num(u32::MAX);
        assert_eq!(ranges("4294967295").ranges(), [range(top, top)]);
        let most = (1..=1000)
            .map(|n| (n * 2).to_string())
            .collect::<Vec<_>>()
            .join(",");
        assert_eq!(ranges(&most).ranges().len(), 1000);
    }

    #[test]
    fn error_messages_name_the_problem() {
        let many = (1..=1001)
            .map(|n| (n * 2).to_string())
            .collect::<Vec<_>>()
            .join(",");
        let many_ranges = format!("a FETCH {many} FLAGS");
        let many_ids = format!("a ID ({})", "\"k\" \"v\" ".repeat(31).trim_end());
        for (wire, message) in [
            // framing, tags and command names
            ("x1 FROB", "unknown command FROB"),
            ("x1", "missing command after tag"),
            ("x1\tNOOP", "expected SP after tag"),
            ("a NOOP extra", "unexpected characters after command: \" extra\""),
            ("a SEARCH ALL)", "unexpected characters after command: \")\""),
            ("a SELECT {3}\r\nabc{3}\r\nabc", "unexpected characters after command: a literal"),
            // strings and literals
            ("a SELECT \"INBOX", "unterminated quoted string"),
            ("a SELECT \"IN\\BOX\"", r#"bad escape in quoted string: only \" and \\ are allowed"#),
            ("a SELECT \"IN\rBOX\"", "CR, LF or NUL in quoted string"),
            ("a LOGIN {3}\r\na\0b x", "literal contains NUL; binary data needs literal8 (~{n})"),
            ("a APPEND x {3}\r\na\0b", "literal contains NUL; binary data needs literal8 (~{n})"),
            ("a LOGIN ~{1}\r\nx y", "literal8 (~{n}) is only allowed for an APPEND message"),
            ("a APPEND ~{1}\r\nx {1}\r\ny", "literal8 (~{n}) is only allowed for an APPEND message"),
            // missing and wrong arguments
            ("A05 AUTHENTICATE", "missing SASL mechanism"),
            ("A03 AUTHENTICATE PLAIN abc=d", "initial response must be base64, or = for an empty one"),
            ("A04 AUTHENTICATE PLAIN a=b=", "initial response must be base64, or = for an empty one"),
            ("a LOGIN smith", "missing password"),
            ("a1 ENABLE", "missing capability"),
            ("A1 SELECT", "missing mailbox name"),
            ("A1 SELECT x (QRESYNC)", "unknown SELECT parameter QRESYNC"),
            ("t1 CREATE x (FOO)", "unknown CREATE parameter FOO"),
            ("t1 CREATE x (USE (Drafts))", r#"expected special-use attribute such as \Drafts, found "Drafts))""#),
            ("A683 RENAME foo", "missing mailbox name"),
            ("A1 STATUS x ()", "empty status items"),
            ("A1 LIST \"\"", "missing mailbox pattern"),
            ("A1 LIST (RECURSIVEMATCH) \"\" *", "RECURSIVEMATCH needs SUBSCRIBED or SPECIAL-USE beside it"),
            ("A1 LIST (REMOTE RECURSIVEMATCH) \"\" *", "RECURSIVEMATCH needs SUBSCRIBED or SPECIAL-USE beside it"),
            ("A1 LIST (FOO) \"\" *", "unknown LIST selection option FOO"),
            ("A1 LIST \"\" * RETURN (MYRIGHTS)", "unknown LIST return option MYRIGHTS"),
            ("A1 LIST \"\" * (CHILDREN)", "expected RETURN, found \"(CHILDREN)\""),
            ("a APPEND x", "missing message literal"),
            ("a APPEND x hello", "expected message literal, found \"hello\""),
            ("a APPEND x {1}\r\nx y", "unexpected characters after command: \" y\""),
            ("a APPEND x UTF8 ({1}\r\nx)", "expected literal8 (~{n}) in UTF8 (...), found \")\""),
            ("a APPEND x \"hello\"", r#"invalid date-time "hello": expected "dd-Mon-yyyy hh:mm:ss +zzzz""#),
            ("a APPEND x \"30-Feb-2024 10:00:00 +0000\" {1}\r\nx", r#"invalid date-time "30-Feb-2024 10:00:00 +0000": expected "dd-Mon-yyyy hh:mm:ss +zzzz""#),
            ("a APPEND x \"01-Feb-2024 24:00:00 +0000\" {1}\r\nx", r#"invalid date-time "01-Feb-2024 24:00:00 +0000": expected "dd-Mon-yyyy hh:mm:ss +zzzz""#),
            ("a APPEND x \"01-Feb-2024 10:00:00 +0060\" {1}\r\nx", r#"invalid date-time "01-Feb-2024 10:00:00 +0060": expected "dd-Mon-yyyy hh:mm:ss +zzzz""#),
            // flags
            ("a APPEND x (\\Recent) {1}\r\nx", r"\Recent cannot be set by a client"),
            (r"A6 STORE 1 +FLAGS (\Recent)", r"\Recent cannot be set by a client"),
            ("a APPEND x (\\Junk) {1}\r\nx", r"unknown system flag \Junk"),
            (r"A6 STORE 1 +FLAGS \*", r"\* is not a flag that can be set"),
            ("A6 STORE 1 LABELS (x)", "expected FLAGS, +FLAGS or -FLAGS, found LABELS"),
            // sequence sets
            ("a FETCH 0 FLAGS", "invalid sequence number 0: numbers start at 1"),
            ("a FETCH 1:0 FLAGS", "invalid sequence number 0: numbers start at 1"),
            ("a FETCH *:4294967296 FLAGS", "sequence number 4294967296 is over 4294967295"),
            ("a FETCH 1:99999999999999999999999 FLAGS", "sequence number 99999999999999999999999 is over 4294967295"),
            ("a FETCH , FLAGS", "expected sequence number or *, found \", FLAGS\""),
            ("a FETCH 1, FLAGS", "expected sequence number or *, found \" FLAGS\""),
            (&many_ranges, "sequence set has more than 1000 ranges"),
            ("A1 COPY 1", "missing mailbox name"),
            ("A1 UID FROB 1", "unknown UID command FROB: expected FETCH, SEARCH, STORE, COPY, MOVE or EXPUNGE"),
            ("A1 UID EXPUNGE", "missing UID set"),
            // SEARCH
            ("a SEARCH", "missing search criteria"),
            ("a SEARCH FROB", "unknown search key FROB"),
            ("a SEARCH FROM", "missing search string"),
            ("a SEARCH SINCE 30-Feb-2024", "invalid date \"30-Feb-2024\": expected d-Mon-yyyy, as in 1-Feb-1994"),
            ("a SEARCH SINCE 1-Foo-2024", "invalid date \"1-Foo-2024\": expected d-Mon-yyyy, as in 1-Feb-1994"),
            ("a SEARCH SINCE 1-Feb-24", "invalid date \"1-Feb-24\": expected d-Mon-yyyy, as in 1-Feb-1994"),
            ("a SEARCH OR SEEN", "missing second search key of OR"),
            ("a SEARCH (SEEN", "missing SP or ) in search key list"),
            ("a SEARCH RETURN (FOO) ALL", "unknown search return option FOO"),
            ("a SEARCH HEADER \"a:b\" x", "invalid header field name \"a:b\""),
            // FETCH
            ("a FETCH", "missing message set"),
            ("a FETCH 1", "missing fetch items"),
            ("a FETCH 1 (FLAGS FROB)", "unknown fetch item FROB"),
            ("a FETCH 1 ()", "empty fetch items"),
            ("a FETCH 1 BODY[MIME]", "MIME needs a part number, as in BODY[1.MIME]"),
            ("a FETCH 1 BODY[0]", "section part number must not be 0"),
            ("a FETCH 1 BODY[1.]", "expected section: HEADER, HEADER.FIELDS, HEADER.FIELDS.NOT, TEXT or MIME, found \"]\""),
            ("a FETCH 1 BODY[HEADER", "missing ] to close the section"),
            ("a FETCH 1 BODY.PEEK", "missing [ to open a section"),
            ("a FETCH 1 BODY[]<1.0>", "partial length must not be 0"),
            ("a FETCH 1 BODY[]<4294967296.1>", "partial offset 4294967296 is over 4294967295"),
            ("a FETCH 1 BINARY[TEXT]", "expected section part number, found \"TEXT]\""),
            ("a FETCH 1 (FLAGS) (VANISHED)", "unknown FETCH modifier VANISHED"),
            // ID
            ("a ID (\"name\")", "expected SP before ID field value, found \")\""),
            (&many_ids, "ID has more than 30 field-value pairs"),
        ] {
            assert_eq!(err(wire), message, "{wire:?}");
        }
    }

    #[test]
    fn errors_carry_the_tag_when_there_is_one() {
        let e = parse_wire(b"x1 FROB").expect_err("unknown command");
        assert_eq!(e.tag.as_deref(), Some("x1"));
        let e = parse_wire(b"").expect_err("empty");
        assert_eq!((e.tag, e.message.as_str()), (None, "empty command line"));
        let e = parse_wire(b"+tag NOOP").expect_err("bad tag");
        assert_eq!(
            (e.tag, e.message.as_str()),
            (None, "invalid or missing tag")
        );
    }

    #[test]
    fn dates() {
        let date = |year, month, day| Date { year, month, day };
        assert_eq!(date(1970, 1, 1).days_since_epoch(), 0);
        assert_eq!(date(1994, 2, 1).days_since_epoch(), 8797);
        assert_eq!(date(2000, 3, 1).days_since_epoch(), 11017);
        assert_eq!(date(1, 1, 1).days_since_epoch(), -719162);
        let (unix, offset_minutes) = (1709231400, 330);
        let leap_second = parse_date_time(b"29-Feb-2024 23:59:60 +0530");
        assert_eq!(
            leap_second,
            Some(DateTime {
                unix,
                offset_minutes
            })
        );
        assert_eq!(parse_date_time(b"29-Feb-2023 23:59:59 +0530"), None);
        assert_eq!(parse_date(b"1-Jan-1900"), Some(date(1900, 1, 1)));
        assert_eq!(parse_date(b"29-Feb-1900"), None);
        assert_eq!(parse_date(b"29-Feb-2000"), Some(date(2000, 2, 29)));
        assert_eq!(parse_date(b"123-Feb-2000"), None);
    }

    /// Mutations of valid commands, fed through assembler and parser: the
    /// answer may be anything but a panic.
    #[test]
    fn mangled_commands_never_panic() {
        let seeds: [&[u8]; 6] = [
            b"a1 UID FETCH 1:*,5 (BODY.PEEK[1.2.HEADER.FIELDS (A B)]<0.5> BINARY[1] FLAGS)",
            b"a2 SEARCH RETURN (MIN) CHARSET UTF-8 OR (SEEN 1:4) NOT HEADER X \"y\" SINCE 1-Feb-1994",
            b"a3 APPEND x (\\Seen) \"17-Jul-1996 02:44:25 -0700\" {3+}\r\nabc",
            b"a4 LIST (SUBSCRIBED RECURSIVEMATCH) \"\" (% \"a\") RETURN (STATUS (MESSAGES) CHILDREN)",
            b"a5 STORE $ +FLAGS.SILENT (\\Deleted kw)",
            b"a6 ID (\"name\" {2+}\r\nxy) ",
        ];
        let alphabet = b" ()[]<>{}\"\\*$%:,.+-~0123456789AZaz\r\n\0\xff";
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut random = move |below: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % below as u64) as usize
        };
        for round in 0..20_000 {
            let mut wire = seeds[round % seeds.len()].to_vec();
            for _ in 0..1 + random(4) {
                let at = random(wire.len() + 1);
                match random(3) {
                    0 if at < wire.len() => {
                        wire.remove(at);
                    }
                    1 if at < wire.len() => wire[at] = alphabet[random(alphabet.len())],
                    _ => wire.insert(at, alphabet[random(alphabet.len())]),
                }
            }
            for feed in assemble_wire(Limits::default(), &wire) {
                if let Feed::Complete(cmd) = feed {
                    let _ = parse(cmd);
                }
            }
        }
    }
}
