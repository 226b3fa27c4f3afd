//! LIST (with LIST-EXTENDED, SPECIAL-USE and LIST-STATUS), LSUB and STATUS.

use std::collections::BTreeMap;

use crate::imap::parser::{ListReturn, ListSelection, StatusItem};
use crate::imap::response::mailbox_name;
use crate::imap::session::Session;
use crate::store::{canonical_mailbox_name, MailboxRecord, StoreError};

/// One name in the hierarchy: a mailbox, or a parent that only exists
/// because it has children.
struct Node<'a> {
    record: Option<&'a MailboxRecord>,
    has_children: bool,
    subscribed_child: bool,
}

impl Session {
    /// A LIST pattern or reference: like a mailbox name, but may be empty
    /// and hold wildcards.
    fn pattern_arg(&self, raw: &[u8]) -> Result<String, String> {
        if raw.is_empty() {
            return Ok(String::new());
        }
        self.mailbox_arg(raw)
    }

    /// The user's mailboxes; on a storage error the client is told and
    /// None is returned.
    fn user_mailboxes(&mut self, tag: &str) -> Option<Vec<(u64, MailboxRecord)>> {
        match self
            .shared
            .store
            .snapshot()
            .and_then(|s| s.mailboxes(&self.user))
        {
            Ok(mailboxes) => Some(mailboxes),
            Err(e) => {
                self.store_failed(tag, &e);
                None
            }
        }
    }

    pub(in crate::imap) fn list(
        &mut self,
        tag: &str,
        selection: ListSelection,
        reference: &[u8],
        patterns: &[Vec<u8>],
        returns: ListReturn,
    ) {
        let reference = match self.pattern_arg(reference) {
            Ok(r) => r,
            Err(e) => return self.bad(tag, &e),
        };
        let mut full = Vec::new();
        for pattern in patterns {
            match self.pattern_arg(pattern) {
                Ok(p) => full.push(canonical_pattern(&format!("{reference}{p}"))),
                Err(e) => return self.bad(tag, &e),
            }
        }
        // An empty pattern asks for the delimiter, whatever the reference.
        if patterns.len() == 1 && patterns[0].is_empty() {
            // The hierarchy delimiter and root (RFC 9051 §6.3.9).
            self.untagged("LIST (\\Noselect) \"/\" \"\"");
            return self.ok(tag, "LIST completed");
        }
        let Some(mailboxes) = self.user_mailboxes(tag) else {
            return;
        };
        let tree = hierarchy(&mailboxes);
        let show_subscribed = selection.subscribed || returns.subscribed;
        for (name, node) in &tree {
            if !full
                .iter()
                .any(|p| wildcard_match(p.as_bytes(), name.as_bytes()))
            {
                continue;
            }
            let subscribed = node.record.is_some_and(|r| r.subscribed);
            let mut child_info = false;
            if selection.subscribed && !subscribed {
                if selection.recursive_match && node.subscribed_child {
                    child_info = true;
                } else {
                    continue;
                }
            }
            if selection.special_use && node.record.and_then(|r| r.special_use).is_none() {
                continue;
            }
            let mut attrs: Vec<&str> = Vec::new();
            match node.record {
                None if self.rev2 => attrs.push("\\NonExistent"),
                None => attrs.push("\\Noselect"),
                Some(_) => {}
            }
            attrs.push(if node.has_children {
                "\\HasChildren"
            } else {
                "\\HasNoChildren"
            });
            if show_subscribed && subscribed {
                attrs.push("\\Subscribed");
            }
            if let Some(use_attr) = node.record.and_then(|r| r.special_use) {
                attrs.push(use_attr.attribute());
            }
            let mut line = format!("* LIST ({}) \"/\" ", attrs.join(" ")).into_bytes();
            mailbox_name(&mut line, name, self.utf8);
            if child_info {
                line.extend_from_slice(b" (\"CHILDINFO\" (\"SUBSCRIBED\"))");
            }
            line.extend_from_slice(b"\r\n");
            self.out.extend_from_slice(&line);
            if let (Some(items), Some(record)) = (&returns.status, node.record) {
                self.status_line(name, record, items);
            }
        }
        self.ok(tag, "LIST completed");
    }

    pub(in crate::imap) fn lsub(&mut self, tag: &str, reference: &[u8], pattern: &[u8]) {
        let (reference, pattern) = match (self.pattern_arg(reference), self.pattern_arg(pattern)) {
            (Ok(r), Ok(p)) => (r, p),
            (Err(e), _) | (_, Err(e)) => return self.bad(tag, &e),
        };
        let pattern = canonical_pattern(&format!("{reference}{pattern}"));
        let Some(mailboxes) = self.user_mailboxes(tag) else {
            return;
        };
        let tree = hierarchy(&mailboxes);
        for (name, node) in &tree {
            let subscribed = node.record.is_some_and(|r| r.subscribed);
            if !(subscribed || node.subscribed_child)
                || !wildcard_match(pattern.as_bytes(), name.as_bytes())
            {
                continue;
            }
            // A '%' that stops above a subscribed child lists the parent as
            // \Noselect (RFC 3501 §6.3.9); when the pattern reaches that
            // child itself (as '*' does), the child is listed and the
            // unsubscribed parent is not.
            if !subscribed && subscribed_descendant_matches(&tree, name, &pattern) {
                continue;
            }
            let attrs = if subscribed { "" } else { "\\Noselect" };
            let mut line = format!("* LSUB ({attrs}) \"/\" ").into_bytes();
            mailbox_name(&mut line, name, self.utf8);
            line.extend_from_slice(b"\r\n");
            self.out.extend_from_slice(&line);
        }
        self.ok(tag, "LSUB completed");
    }

    pub(in crate::imap) fn status(&mut self, tag: &str, raw: &[u8], items: &[StatusItem]) {
        let name = match self.mailbox_arg(raw) {
            Ok(name) => name,
            Err(e) => return self.bad(tag, &e),
        };
        let found = self.shared.store.snapshot().and_then(|s| {
            let id = s
                .mailbox_id(&self.user, &name)?
                .ok_or(StoreError::NoSuchMailbox)?;
            s.mailbox(id)?.ok_or(StoreError::NoSuchMailbox)
        });
        match found {
            Ok(record) => {
                self.status_line(&name, &record, items);
                self.ok(tag, "STATUS completed");
            }
            Err(e) => self.store_failed(tag, &e),
        }
    }

    /// `* STATUS name (items)`, all from the mailbox's running totals.
    fn status_line(&mut self, name: &str, record: &MailboxRecord, items: &[StatusItem]) {
        let mut values = Vec::new();
        for item in items {
            values.push(match item {
                StatusItem::Messages => format!("MESSAGES {}", record.exists),
                StatusItem::UidNext => format!("UIDNEXT {}", record.uid_next),
                StatusItem::UidValidity => format!("UIDVALIDITY {}", record.uid_validity),
                StatusItem::Unseen => format!("UNSEEN {}", record.unseen),
                StatusItem::Deleted => format!("DELETED {}", record.deleted),
                StatusItem::Size => format!("SIZE {}", record.size),
                StatusItem::Recent => "RECENT 0".to_string(),
                StatusItem::HighestModseq => format!("HIGHESTMODSEQ {}", record.highest_modseq),
                StatusItem::AppendLimit => {
                    format!("APPENDLIMIT {}", self.shared.config.max_message_size)
                }
            });
        }
        let mut line = b"* STATUS ".to_vec();
        mailbox_name(&mut line, name, self.utf8);
        line.extend_from_slice(format!(" ({})\r\n", values.join(" ")).as_bytes());
        self.out.extend_from_slice(&line);
    }
}

/// Every mailbox, plus parents implied by children, in name order.
fn hierarchy(mailboxes: &[(u64, MailboxRecord)]) -> BTreeMap<String, Node<'_>> {
    let mut tree: BTreeMap<String, Node<'_>> = BTreeMap::new();
    for (_, record) in mailboxes {
        tree.entry(record.name.clone())
            .or_insert(Node {
                record: None,
                has_children: false,
                subscribed_child: false,
            })
            .record = Some(record);
        let mut name = record.name.as_str();
        while let Some((parent, _)) = name.rsplit_once('/') {
            let node = tree.entry(parent.to_string()).or_insert(Node {
                record: None,
                has_children: false,
                subscribed_child: false,
            });
            node.has_children = true;
            node.subscribed_child |= record.subscribed;
            name = parent;
        }
    }
    tree
}

/// Whether a subscribed mailbox below `parent` matches `pattern`.
fn subscribed_descendant_matches(
    tree: &BTreeMap<String, Node<'_>>,
    parent: &str,
    pattern: &str,
) -> bool {
    let prefix = format!("{parent}/");
    tree.range(prefix.clone()..)
        .take_while(|(name, _)| name.starts_with(&prefix))
        .any(|(name, node)| {
            node.record.is_some_and(|r| r.subscribed)
                && wildcard_match(pattern.as_bytes(), name.as_bytes())
        })
}

/// INBOX is case-insensitive in patterns too.
fn canonical_pattern(pattern: &str) -> String {
    let head = pattern.get(..5);
    let rest = pattern.get(5..).unwrap_or("");
    if head.is_some_and(|h| h.eq_ignore_ascii_case("INBOX"))
        && (rest.is_empty() || rest.starts_with(['/', '*', '%']))
    {
        return format!("INBOX{rest}");
    }
    canonical_mailbox_name(pattern).into_owned()
}

/// LIST wildcards: `*` matches anything, `%` anything but the delimiter.
fn wildcard_match(pattern: &[u8], name: &[u8]) -> bool {
    // A set of reachable pattern positions, advanced one name byte at a time:
    // linear in pattern × name, no recursion, whatever the client sends.
    let mut states = vec![false; pattern.len() + 1];
    states[0] = true;
    let close = |states: &mut Vec<bool>| {
        for i in 0..pattern.len() {
            if states[i] && matches!(pattern[i], b'*' | b'%') {
                states[i + 1] = true;
            }
        }
    };
    close(&mut states);
    let mut next = vec![false; pattern.len() + 1];
    for &c in name {
        next.iter_mut().for_each(|s| *s = false);
        for i in 0..pattern.len() {
            if !states[i] {
                continue;
            }
            match pattern[i] {
                b'*' => next[i] = true,
                b'%' if c != b'/' => next[i] = true,
                b'%' => {}
                p if p == c => next[i + 1] = true,
                _ => {}
            }
        }
        std::mem::swap(&mut states, &mut next);
        close(&mut states);
        if !states.contains(&true) {
            return false;
        }
    }
    states[pattern.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards() {
        assert!(wildcard_match(b"*", b"a/b/c"));
        assert!(wildcard_match(b"%", b"abc"));
        assert!(!wildcard_match(b"%", b"a/b"));
        assert!(wildcard_match(b"a/%", b"a/b"));
        assert!(!wildcard_match(b"a/%", b"a/b/c"));
        assert!(wildcard_match(b"a*c", b"a/b/c"));
        assert!(wildcard_match(b"%/c", b"ab/c"));
        assert!(!wildcard_match(b"x*", b"a"));
        assert!(wildcard_match(b"INBOX", b"INBOX"));
        assert_eq!(canonical_pattern("inbox*"), "INBOX*");
        assert_eq!(canonical_pattern("Inboxes"), "Inboxes");
        assert!(wildcard_match(b"*/%", b"a/b/c"));
        assert!(!wildcard_match(b"%/%", b"a/b/c"));
        let long = vec![b'%'; 5000];
        assert!(!wildcard_match(&long, &[b'/'; 500]));
    }
}
