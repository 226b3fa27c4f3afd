//! LIST and STATUS options (RFC 5258, RFC 5819, RFC 6154, RFC 9051 §6.3.9-6.3.11).

use super::{is_list_char, CommandBody, Parsed, Parser};

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
    /// RFC 9208 §4.2: the storage EXPUNGE would free, in KiB.
    DeletedStorage,
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
impl Parser {
    pub(super) fn status_items(&mut self) -> Parsed<Vec<StatusItem>> {
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
                "DELETED-STORAGE" => StatusItem::DeletedStorage,
                other => return Err(format!("unknown status item {other}")),
            })
        })
    }

    // ---- commands ----

    pub(super) fn list_mailbox(&mut self) -> Parsed<Vec<u8>> {
        if self.peek().is_some_and(is_list_char) {
            return Ok(self.take_while(is_list_char).to_vec());
        }
        self.string("mailbox pattern")
    }

    pub(super) fn list(&mut self) -> Parsed<CommandBody> {
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
}
