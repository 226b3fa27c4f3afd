//! SORT (RFC 5256, with RFC 5957's DISPLAYFROM/DISPLAYTO and RFC 5267's
//! RETURN options) and THREAD (RFC 5256).

use super::{CommandBody, Parsed, Parser, SearchKey, SearchReturn};

/// Sort criteria in one SORT; more would only repeat keys.
pub const MAX_SORT_KEYS: usize = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortField {
    Arrival,
    Cc,
    Date,
    From,
    Size,
    Subject,
    To,
    DisplayFrom,
    DisplayTo,
}

/// One sort key: the field, and whether REVERSE came before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SortKey {
    pub field: SortField,
    pub reverse: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThreadAlgorithm {
    OrderedSubject,
    References,
}

impl Parser {
    pub(super) fn sort(&mut self, uid: bool) -> Parsed<CommandBody> {
        self.sp("sort criteria")?;
        let mut return_options = None;
        if self.eat_word("RETURN") {
            self.sp("sort return options")?;
            return_options = Some(self.search_return_options()?);
            self.sp("sort criteria")?;
        }
        let mut reverse = false;
        let mut count = 0usize;
        let keys = self.paren_list("sort criteria", false, |p| {
            count += 1;
            if count > MAX_SORT_KEYS {
                return Err(format!("more than {MAX_SORT_KEYS} sort criteria"));
            }
            let name = p.upper_atom("sort key")?;
            if name == "REVERSE" {
                if reverse {
                    return Err("REVERSE twice in a row".into());
                }
                reverse = true;
                return Ok(None);
            }
            let field = match name.as_str() {
                "ARRIVAL" => SortField::Arrival,
                "CC" => SortField::Cc,
                "DATE" => SortField::Date,
                "FROM" => SortField::From,
                "SIZE" => SortField::Size,
                "SUBJECT" => SortField::Subject,
                "TO" => SortField::To,
                "DISPLAYFROM" => SortField::DisplayFrom,
                "DISPLAYTO" => SortField::DisplayTo,
                other => return Err(format!("unknown sort key {other}")),
            };
            let key = SortKey { field, reverse };
            reverse = false;
            Ok(Some(key))
        })?;
        if reverse {
            return Err("REVERSE must be followed by a sort key".into());
        }
        let keys: Vec<SortKey> = keys.into_iter().flatten().collect();
        self.sp("charset")?;
        let charset = self.charset()?;
        self.sp("search criteria")?;
        let key = self.search_criteria()?;
        Ok(CommandBody::Sort {
            uid,
            return_options,
            keys,
            charset,
            key,
        })
    }

    pub(super) fn thread(&mut self, uid: bool) -> Parsed<CommandBody> {
        self.sp("thread algorithm")?;
        let algorithm = match self.upper_atom("thread algorithm")?.as_str() {
            "ORDEREDSUBJECT" => ThreadAlgorithm::OrderedSubject,
            "REFERENCES" => ThreadAlgorithm::References,
            other => {
                return Err(format!(
                    "unknown thread algorithm {other}: expected ORDEREDSUBJECT or REFERENCES"
                ))
            }
        };
        self.sp("charset")?;
        let charset = self.charset()?;
        self.sp("search criteria")?;
        let key = self.search_criteria()?;
        Ok(CommandBody::Thread {
            uid,
            algorithm,
            charset,
            key,
        })
    }

    /// A charset name, as an atom or a quoted string.
    pub(super) fn charset(&mut self) -> Parsed<String> {
        Ok(match self.quoted()? {
            Some(name) => String::from_utf8_lossy(&name).into_owned(),
            None => self.atom("charset")?,
        })
    }

    /// One or more search keys separated by SP, as one key.
    pub(super) fn search_criteria(&mut self) -> Parsed<SearchKey> {
        let mut keys = vec![self.search_key(0)?];
        while self.eat(b' ') {
            keys.push(self.search_key(0)?);
        }
        Ok(if keys.len() == 1 {
            keys.remove(0)
        } else {
            SearchKey::And(keys)
        })
    }

    /// `( [option *(SP option)] )` of RFC 4731 / RFC 5267.
    pub(super) fn search_return_options(&mut self) -> Parsed<Vec<SearchReturn>> {
        self.paren_list("search return options", true, |p| {
            Ok(match p.upper_atom("search return option")?.as_str() {
                "MIN" => SearchReturn::Min,
                "MAX" => SearchReturn::Max,
                "COUNT" => SearchReturn::Count,
                "ALL" => SearchReturn::All,
                "SAVE" => SearchReturn::Save,
                other => return Err(format!("unknown search return option {other}")),
            })
        })
    }
}
