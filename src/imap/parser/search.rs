//! SEARCH keys and ESEARCH return options (RFC 9051 §6.4.4, RFC 4731, RFC 5182, RFC 7162).

use super::{CommandBody, Date, Flag, MessageSet, Parsed, Parser, MAX_DEPTH};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SearchReturn {
    Min,
    Max,
    Count,
    All,
    Save,
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
    /// RFC 5032: INTERNALDATE more than this many seconds ago.
    Older(u32),
    /// RFC 5032: INTERNALDATE at most this many seconds ago.
    Younger(u32),
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

impl Parser {
    pub(super) fn search(&mut self, uid: bool) -> Parsed<CommandBody> {
        self.sp("search criteria")?;
        let mut return_options = None;
        if self.eat_word("RETURN") {
            self.sp("search return options")?;
            return_options = Some(self.search_return_options()?);
            self.sp("search criteria")?;
        }
        let mut charset = None;
        if self.eat_word("CHARSET") {
            self.sp("charset")?;
            charset = Some(self.charset()?);
            self.sp("search criteria")?;
        }
        let key = self.search_criteria()?;
        Ok(CommandBody::Search {
            uid,
            charset,
            return_options,
            key,
        })
    }

    /// One search key; `depth` counts the parentheses, NOTs and ORs around
    /// it, so hostile nesting ends in an error long before the stack does.
    pub(super) fn search_key(&mut self, depth: usize) -> Parsed<SearchKey> {
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
            "OLDER" | "YOUNGER" => {
                self.sp("interval")?;
                let seconds = self.number("interval in seconds")?;
                if seconds == 0 {
                    return Err(format!("{name} needs an interval of at least 1 second"));
                }
                if name == "OLDER" {
                    SearchKey::Older(seconds)
                } else {
                    SearchKey::Younger(seconds)
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
}
