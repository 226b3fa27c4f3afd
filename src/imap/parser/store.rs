//! STORE and flags (RFC 9051 §6.4.6, RFC 7162 UNCHANGEDSINCE).

use super::{CommandBody, Parsed, Parser};

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

impl Parser {
    pub(super) fn flag(&mut self) -> Parsed<Flag> {
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

    pub(super) fn flag_list(&mut self) -> Parsed<Vec<Flag>> {
        self.paren_list("flag list", true, Self::flag)
    }

    pub(super) fn store(&mut self, uid: bool) -> Parsed<CommandBody> {
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
}
