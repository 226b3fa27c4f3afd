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
//!
//! One file per grammar area: `lexer` (cursor, atoms, strings, numbers),
//! `sequence` (sets), `store` (flags), `list` (LIST and STATUS options),
//! `search`, `fetch` and `date`; this file holds the command dispatch and
//! the small commands. The assembler depends on the types here, never the
//! other way round.

mod date;
mod fetch;
mod lexer;
mod list;
mod metadata;
mod quota;
mod search;
mod sequence;
mod sort;
mod store;
#[cfg(test)]
mod tests;

pub use date::*;
pub use fetch::*;
pub use list::*;
pub use metadata::*;
pub use search::*;
pub use sequence::*;
pub use sort::*;
pub use store::*;

use std::fmt;

/// Deepest nesting of parentheses, NOT and OR in a SEARCH.
pub const MAX_DEPTH: usize = 64;
/// Most ranges in one sequence set.
pub const MAX_RANGES: usize = 1000;
/// RFC 2971 §3.3: at most 30 pairs, names of 30 octets, values of 1024.
const MAX_ID_PAIRS: usize = 30;
const MAX_ID_FIELD: usize = 30;
const MAX_ID_VALUE: usize = 1024;

/// One complete command: its text with every literal cut out and kept
/// aside, so the parser can tell a literal from an atom and never scans a
/// message body as command text.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Assembled {
    /// The command's lines, joined, without CRLFs or literal announcements.
    pub(crate) text: Vec<u8>,
    /// The literals in order; each sits at `offset` in `text`.
    pub(crate) literals: Vec<Literal>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Literal {
    pub(crate) offset: usize,
    pub(crate) data: Vec<u8>,
    /// Sent as `~{n}` (literal8, RFC 3516): may hold NUL.
    pub(crate) binary: bool,
}

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
    /// SORT (RFC 5256); `return_options` as for SEARCH (ESORT, RFC 5267).
    Sort {
        uid: bool,
        return_options: Option<Vec<SearchReturn>>,
        keys: Vec<SortKey>,
        charset: String,
        key: SearchKey,
    },
    Thread {
        uid: bool,
        algorithm: ThreadAlgorithm,
        charset: String,
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
    /// COMPRESS (RFC 4978); the mechanism upper-cased.
    Compress {
        mechanism: String,
    },
    /// GETMETADATA (RFC 5464); entry names checked and lowercased.
    GetMetadata {
        mailbox: Vec<u8>,
        entries: Vec<String>,
        depth: MetadataDepth,
        max_size: Option<u32>,
    },
    /// SETMETADATA (RFC 5464); a None value removes the entry.
    SetMetadata {
        mailbox: Vec<u8>,
        entries: Vec<(String, Option<Vec<u8>>)>,
    },
    /// None for `ID NIL`. Values that are not UTF-8 are decoded lossily.
    Id(Option<Vec<(String, Option<String>)>>),
    /// RFC 9208.
    GetQuotaRoot {
        mailbox: Vec<u8>,
    },
    GetQuota {
        root: Vec<u8>,
    },
    /// Resource names upper-cased, with their limits.
    SetQuota {
        root: Vec<u8>,
        resources: Vec<(String, u64)>,
    },
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
            "SORT" => self.sort(false)?,
            "THREAD" => self.thread(false)?,
            "FETCH" => self.fetch(false)?,
            "STORE" => self.store(false)?,
            "COPY" => self.copy_or_move(false, false)?,
            "MOVE" => self.copy_or_move(false, true)?,
            "ID" => self.id()?,
            "GETQUOTAROOT" => CommandBody::GetQuotaRoot {
                mailbox: self.sp_mailbox()?,
            },
            "GETQUOTA" => self.getquota()?,
            "SETQUOTA" => self.setquota()?,
            "GETMETADATA" => self.getmetadata()?,
            "SETMETADATA" => self.setmetadata()?,
            "COMPRESS" => {
                self.sp("compression mechanism")?;
                CommandBody::Compress {
                    mechanism: self.upper_atom("compression mechanism")?,
                }
            }
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
            "SORT" => self.sort(true),
            "THREAD" => self.thread(true),
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
                "unknown UID command {name}: expected FETCH, SEARCH, SORT, THREAD, STORE, COPY, MOVE or EXPUNGE"
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
