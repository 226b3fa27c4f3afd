//! LIST (with LIST-EXTENDED, SPECIAL-USE and LIST-STATUS), LSUB and STATUS.

use std::collections::BTreeMap;

use crate::imap::parser::{ListReturn, ListSelection, StatusItem};
use crate::imap::response::mailbox_name;
use crate::imap::session::Session;
use crate::store::{canonical_mailbox_name, MailboxRecord, StoreError};

/// One name in the hierarchy: a mailbox, a parent that only exists because
/// it has children, or a subscribed name (which may have no mailbox).
#[derive(Default)]
struct Node<'a> {
    /// The mailbox's id and record, if a mailbox has this name.
    id: u64,
    record: Option<&'a MailboxRecord>,
    subscribed: bool,
    /// A mailbox exists below this name.
    has_children: bool,
    /// A subscribed name exists below this name.
    subscribed_child: bool,
}

impl Node<'_> {
    /// Whether a LIST without the SUBSCRIBED selection shows the name: it is
    /// a mailbox or the parent of one.
    fn exists_in_hierarchy(&self) -> bool {
        self.record.is_some() || self.has_children
    }
}

/// A user's mailboxes and the names they are subscribed to.
type MailboxesAndSubscriptions = (Vec<(u64, MailboxRecord)>, Vec<String>);

impl Session {
    /// A LIST pattern or reference: like a mailbox name, but may be empty
    /// and hold wildcards.
    fn pattern_arg(&self, raw: &[u8]) -> Result<String, String> {
        if raw.is_empty() {
            return Ok(String::new());
        }
        self.mailbox_arg(raw)
    }

    /// The user's mailboxes and subscriptions; on a storage error the
    /// client is told and None is returned.
    fn user_mailboxes(&mut self, tag: &str) -> Option<MailboxesAndSubscriptions> {
        match self
            .shared
            .store
            .snapshot()
            .and_then(|s| Ok((s.mailboxes(&self.user)?, s.subscriptions(&self.user)?)))
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
        // A reference or pattern that is no valid name (bad modified UTF-7,
        // say) is well-formed IMAP that matches nothing: OK, no names.
        let reference = self.pattern_arg(reference);
        let mut full = Vec::new();
        for pattern in patterns {
            if let (Ok(r), Ok(p)) = (&reference, self.pattern_arg(pattern)) {
                full.push(canonical_pattern(&format!("{r}{p}")));
            }
        }
        // An empty pattern asks for the delimiter, whatever the reference.
        if patterns.len() == 1 && patterns[0].is_empty() {
            // The hierarchy delimiter and root (RFC 9051 §6.3.9).
            self.untagged("LIST (\\Noselect) \"/\" \"\"");
            return self.ok(tag, "LIST completed");
        }
        let Some((mailboxes, subscriptions)) = self.user_mailboxes(tag) else {
            return;
        };
        let tree = hierarchy(&mailboxes, &subscriptions);
        let matches = |name: &str| {
            full.iter()
                .any(|p| wildcard_match(p.as_bytes(), name.as_bytes()))
        };
        let show_subscribed = selection.subscribed || returns.subscribed;
        for (name, node) in &tree {
            if !matches(name) {
                continue;
            }
            // RFC 5258 §3.5: with RECURSIVEMATCH, a name whose subscribed
            // descendants the patterns do not reach says so in CHILDINFO.
            let child_info = selection.recursive_match
                && node.subscribed_child
                && subscribed_descendants(&tree, name).any(|child| !matches(child));
            let selected = if selection.subscribed {
                node.subscribed
            } else {
                node.exists_in_hierarchy()
            };
            if !selected && !child_info {
                continue;
            }
            if selection.special_use && node.record.and_then(|r| r.special_use).is_none() {
                continue;
            }
            let mut attrs: Vec<&str> = Vec::new();
            if node.record.is_none() {
                // A subscribed name with no mailbox is \NonExistent in the
                // extended LIST whatever the revision (RFC 5258 §3.4).
                attrs.push(if self.rev2 || selection.subscribed {
                    "\\NonExistent"
                } else {
                    "\\Noselect"
                });
            }
            attrs.push(if node.has_children {
                "\\HasChildren"
            } else {
                "\\HasNoChildren"
            });
            if show_subscribed && node.subscribed {
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
            // RFC 5819 §3: STATUS only for mailboxes the selection chose.
            if let (Some(items), Some(record), true) = (&returns.status, node.record, selected) {
                self.status_line(name, node.id, record, items);
            }
        }
        self.ok(tag, "LIST completed");
    }

    pub(in crate::imap) fn lsub(&mut self, tag: &str, reference: &[u8], pattern: &[u8]) {
        let (reference, pattern) = match (self.pattern_arg(reference), self.pattern_arg(pattern)) {
            (Ok(r), Ok(p)) => (r, p),
            (Err(e), _) | (_, Err(e)) => return self.no(tag, &e),
        };
        let pattern = canonical_pattern(&format!("{reference}{pattern}"));
        let Some((mailboxes, subscriptions)) = self.user_mailboxes(tag) else {
            return;
        };
        let tree = hierarchy(&mailboxes, &subscriptions);
        for (name, node) in &tree {
            if !(node.subscribed || node.subscribed_child)
                || !wildcard_match(pattern.as_bytes(), name.as_bytes())
            {
                continue;
            }
            // A '%' that stops above a subscribed child lists the parent as
            // \Noselect (RFC 3501 §6.3.9); when the pattern reaches that
            // child itself (as '*' does), the child is listed and the
            // unsubscribed parent is not.
            if !node.subscribed
                && subscribed_descendants(&tree, name)
                    .any(|child| wildcard_match(pattern.as_bytes(), child.as_bytes()))
            {
                continue;
            }
            let attrs = if node.subscribed { "" } else { "\\Noselect" };
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
            Err(e) => return self.no_such_name(tag, &e),
        };
        let found = self.shared.store.snapshot().and_then(|s| {
            let id = s
                .mailbox_id(&self.user, &name)?
                .ok_or(StoreError::NoSuchMailbox)?;
            Ok((id, s.mailbox(id)?.ok_or(StoreError::NoSuchMailbox)?))
        });
        match found {
            Ok((id, record)) => {
                self.status_line(&name, id, &record, items);
                self.ok(tag, "STATUS completed");
            }
            Err(e) => self.store_failed(tag, &e),
        }
    }

    /// `* STATUS name (items)`, all from the mailbox's running totals.
    fn status_line(&mut self, name: &str, id: u64, record: &MailboxRecord, items: &[StatusItem]) {
        let mut values = Vec::new();
        for item in items {
            values.push(match item {
                StatusItem::Messages => format!("MESSAGES {}", record.exists),
                StatusItem::UidNext => format!("UIDNEXT {}", record.uid_next),
                StatusItem::UidValidity => format!("UIDVALIDITY {}", record.uid_validity),
                StatusItem::Unseen => format!("UNSEEN {}", record.unseen),
                StatusItem::Deleted => format!("DELETED {}", record.deleted),
                StatusItem::Size => format!("SIZE {}", record.size),
                // What the next SELECT would take: messages past the
                // mailbox's \Recent horizon (reads only the index's tail).
                StatusItem::Recent => {
                    let horizon = self.shared.recent_horizon(id, record.recent_horizon);
                    let count = self
                        .shared
                        .store
                        .snapshot()
                        .and_then(|s| s.count_from(id, horizon))
                        .unwrap_or(0);
                    format!("RECENT {count}")
                }
                StatusItem::HighestModseq => format!("HIGHESTMODSEQ {}", record.highest_modseq),
                StatusItem::AppendLimit => {
                    format!("APPENDLIMIT {}", self.shared.config.max_message_size)
                }
                StatusItem::DeletedStorage => {
                    let bytes = self
                        .shared
                        .store
                        .snapshot()
                        .and_then(|s| s.deleted_storage(id, record))
                        .unwrap_or(0);
                    format!("DELETED-STORAGE {}", bytes.div_ceil(1024))
                }
            });
        }
        let mut line = b"* STATUS ".to_vec();
        mailbox_name(&mut line, name, self.utf8);
        line.extend_from_slice(format!(" ({})\r\n", values.join(" ")).as_bytes());
        self.out.extend_from_slice(&line);
    }
}

/// Every mailbox and every subscribed name, plus the parents they imply,
/// in name order.
fn hierarchy<'a>(
    mailboxes: &'a [(u64, MailboxRecord)],
    subscriptions: &[String],
) -> BTreeMap<String, Node<'a>> {
    let mut tree: BTreeMap<String, Node<'a>> = BTreeMap::new();
    for (id, record) in mailboxes {
        let node = tree.entry(record.name.clone()).or_default();
        node.record = Some(record);
        node.id = *id;
        for parent in parents(&record.name) {
            tree.entry(parent.to_string()).or_default().has_children = true;
        }
    }
    for name in subscriptions {
        tree.entry(name.clone()).or_default().subscribed = true;
        for parent in parents(name) {
            tree.entry(parent.to_string()).or_default().subscribed_child = true;
        }
    }
    tree
}

/// `a/b/c` → `a/b`, `a`.
fn parents(name: &str) -> impl Iterator<Item = &str> {
    std::iter::successors(name.rsplit_once('/').map(|(p, _)| p), |n| {
        n.rsplit_once('/').map(|(p, _)| p)
    })
}

/// The subscribed names below `parent`.
fn subscribed_descendants<'t>(
    tree: &'t BTreeMap<String, Node<'_>>,
    parent: &str,
) -> impl Iterator<Item = &'t str> {
    let prefix = format!("{parent}/");
    tree.range(prefix.clone()..)
        .take_while(move |(name, _)| name.starts_with(&prefix))
        .filter(|(_, node)| node.subscribed)
        .map(|(name, _)| name.as_str())
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
