//! A folder's message list: newest first, paged, filtered, searched and
//! threaded.
//!
//! Which messages and in what order comes from the store's message index
//! (UIDs and flags packed 1024 to a chunk), never from the message
//! records: a page of a 100,000-message folder reads the index and then
//! only the 50 messages it shows. Search runs IMAP SEARCH's matcher over
//! the stored search headers and bodies, off the event loop; the thread
//! view runs IMAP THREAD=REFERENCES over the keys stored at delivery.

use std::rc::Rc;
use std::sync::Arc;

use mail_parser::MessageParser;

use super::{json, store_error, Folder, Request, Response};
use crate::imap::command::search;
use crate::imap::matcher::Matcher;
use crate::imap::parser::{SearchKey, TextField};
use crate::imap::thread::{self, ThreadKeys, ThreadMessage};
use crate::mime::{MessageInfo, SortKeys, Wanted};
use crate::services::Shared;
use crate::store::{Flags, MailboxId, Store, StoreError};

/// The longest page.
const MAX_LIMIT: usize = 500;
/// The longest search text.
const MAX_QUERY: usize = 1000;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Filter {
    All,
    Unread,
    Flagged,
}

impl Filter {
    fn keeps(self, flags: Flags) -> bool {
        match self {
            Filter::All => true,
            Filter::Unread => !flags.contains(Flags::SEEN),
            Filter::Flagged => flags.contains(Flags::FLAGGED),
        }
    }
}

pub async fn list(shared: &Rc<Shared>, folder: &Folder<'_>, request: &Request) -> Response {
    let number = |name: &str, default: usize| match request.param(name) {
        None | Some("") => Some(default),
        Some(text) => text.parse::<usize>().ok(),
    };
    let (Some(offset), Some(limit)) = (number("offset", 0), number("limit", 50)) else {
        return Response::error(400, "offset and limit are numbers");
    };
    let limit = limit.clamp(1, MAX_LIMIT);
    let filter = match request.param("filter") {
        None | Some("") => Filter::All,
        Some("unread") => Filter::Unread,
        Some("flagged") => Filter::Flagged,
        Some(_) => return Response::error(400, "filter is unread or flagged"),
    };
    let query = request.param("q").map(str::trim).unwrap_or_default();
    if query.len() > MAX_QUERY || query.chars().any(char::is_control) {
        return Response::error(400, "search text too long or not text");
    }
    let threaded = request.param("thread") == Some("1");
    let mailbox = folder.id;
    let order = match ordered(shared, mailbox, filter, query, threaded).await {
        Ok(order) => order,
        Err(e) => return store_error(&e),
    };
    let page = order.iter().skip(offset).take(limit);
    let mut messages = json::Array::new();
    let lines = shared.store.snapshot().and_then(|snapshot| {
        let content = snapshot.content()?;
        for &(uid, depth) in page {
            // Gone since the index was read: left out of the page.
            if let Some(record) = snapshot.message(mailbox, uid)? {
                messages.raw(&line(&content, uid, depth, &record)?);
            }
        }
        Ok(())
    });
    if let Err(e) = lines {
        return store_error(&e);
    }
    let mut out = json::Object::new();
    out.num("total", order.len() as u64)
        .num("offset", offset as u64)
        .raw("messages", &messages.finish());
    Response::json(200, out.finish())
}

/// The folder's messages to list, in order, each with its depth in its
/// thread (0 when not threaded). Threading and text search read the
/// whole folder; their outcome is kept in [`ListCache`] until the folder
/// changes, so paging through it costs one page.
async fn ordered(
    shared: &Rc<Shared>,
    mailbox: MailboxId,
    filter: Filter,
    query: &str,
    threaded: bool,
) -> Result<Order, StoreError> {
    let snapshot = shared.store.snapshot()?;
    let record = snapshot
        .mailbox(mailbox)?
        .ok_or(StoreError::NoSuchMailbox)?;
    let expensive = threaded || !query.is_empty();
    let key = ListKey {
        mailbox,
        uid_validity: record.uid_validity,
        uid_next: record.uid_next,
        exists: record.exists,
        // Flags matter only to a filter: reading a message must not make
        // a threaded list be worked out again.
        modseq: (filter != Filter::All).then_some(record.highest_modseq),
        filter,
        query: query.to_string(),
        threaded,
    };
    if expensive {
        if let Some(order) = shared.web_lists.borrow_mut().get(&key) {
            return Ok(order);
        }
    }
    // Newest first: the index in UID order, reversed.
    let mut uids = Vec::with_capacity(record.exists as usize);
    snapshot.for_each_chunk(mailbox, |chunk| {
        for (uid, flags) in chunk.uids().zip(chunk.flags()) {
            if filter.keeps(flags) {
                uids.push(uid);
            }
        }
        Ok(())
    })?;
    drop(snapshot);
    if !query.is_empty() {
        uids = text_search(shared, mailbox, uids, query).await?;
    }
    let order = Rc::new(if threaded {
        let store = shared.store.clone();
        shared
            .run_heavy(move || threads_newest_first(&store, mailbox, &uids))
            .await?
    } else {
        uids.iter().rev().map(|&uid| (uid, 0)).collect()
    });
    if expensive {
        shared.web_lists.borrow_mut().put(key, order.clone());
    }
    Ok(order)
}

/// A list's messages in order, each with its depth in its thread.
type Order = Rc<Vec<(u32, u32)>>;

/// What a cached list order was worked out for. A folder's UIDNEXT and
/// message count together change with every arrival and expunge; an
/// import into an emptied folder may set UIDNEXT back, but then gives it
/// a new UIDVALIDITY.
#[derive(Clone, PartialEq, Eq)]
pub struct ListKey {
    mailbox: MailboxId,
    uid_validity: u32,
    uid_next: u32,
    exists: u32,
    modseq: Option<u64>,
    filter: Filter,
    query: String,
    threaded: bool,
}

/// The last few threaded or searched list orders, shared by all web
/// sessions: at most [`ListCache::KEEP`], 8 bytes a message each.
#[derive(Default)]
pub struct ListCache {
    /// Most recently used last.
    entries: Vec<(ListKey, Order)>,
}

impl ListCache {
    const KEEP: usize = 4;

    fn get(&mut self, key: &ListKey) -> Option<Order> {
        let at = self.entries.iter().position(|(k, _)| k == key)?;
        let entry = self.entries.remove(at);
        let order = entry.1.clone();
        self.entries.push(entry);
        Some(order)
    }

    fn put(&mut self, key: ListKey, order: Order) {
        // A folder's older orders will never be asked for again.
        self.entries.retain(|(k, _)| {
            k.mailbox != key.mailbox
                || (k.uid_validity, k.uid_next) == (key.uid_validity, key.uid_next)
        });
        if self.entries.len() >= Self::KEEP {
            self.entries.remove(0);
        }
        self.entries.push((key, order));
    }
}

/// Mailboxes at least this large are searched on several threads, as
/// IMAP's SEARCH does.
const PARALLEL_FROM: usize = 4096;

type SearchJob = Box<dyn FnOnce() -> Result<Vec<u32>, StoreError> + Send>;

/// The messages of `uids` (UID order) with `query` in From, To, Subject
/// or the body: IMAP's `OR FROM q OR TO q OR SUBJECT q BODY q`, run by
/// SEARCH's own matcher off the event loop.
async fn text_search(
    shared: &Shared,
    mailbox: MailboxId,
    uids: Vec<u32>,
    query: &str,
) -> Result<Vec<u32>, StoreError> {
    let contains = |field| Box::new(SearchKey::Contains(field, query.as_bytes().to_vec()));
    let key = SearchKey::Or(
        contains(TextField::From),
        Box::new(SearchKey::Or(
            contains(TextField::To),
            Box::new(SearchKey::Or(
                contains(TextField::Subject),
                contains(TextField::Body),
            )),
        )),
    );
    let last = uids.last().copied().unwrap_or(0);
    let matcher = Arc::new(Matcher::new(&key, None, uids.len() as u32, last));
    let pieces = if uids.len() >= PARALLEL_FROM {
        shared.heavy_threads.max(1)
    } else {
        1
    };
    let uids = Arc::new(uids);
    let chunk = uids.len().div_ceil(pieces).max(1);
    let jobs: Vec<SearchJob> = (0..pieces)
        .map(|i| {
            let (store, matcher, uids) = (shared.store.clone(), matcher.clone(), uids.clone());
            let range = (i * chunk).min(uids.len())..((i + 1) * chunk).min(uids.len());
            Box::new(move || {
                let part = &uids[range.clone()];
                let searched = search::run(&store, mailbox, part, range.start, &matcher, &[])?;
                Ok(searched.found.iter().map(|f| f.uid).collect())
            }) as SearchJob
        })
        .collect();
    let mut found = Vec::new();
    for piece in shared.run_heavy_parallel(jobs).await {
        found.extend(piece?);
    }
    Ok(found)
}

/// One message's list line.
fn line(
    content: &crate::store::Content,
    uid: u32,
    depth: u32,
    record: &crate::store::MessageRecord,
) -> Result<String, StoreError> {
    let info = content
        .parsed(record.blob)?
        .and_then(|bytes| MessageInfo::decode(&bytes))
        .unwrap_or_default();
    let header = super::message::top_header(content, record, &info)?;
    let summary = Summary::of(&header);
    let date = info.sent_date.unwrap_or(record.internal_date);
    let mut out = json::Object::new();
    out.num("uid", uid)
        .str("from", &summary.from)
        .str("subject", &summary.subject)
        .str("date", &rfc3339(date))
        .num("size", record.size)
        .bool("attachment", has_attachment(&info))
        .bool("seen", record.flags.contains(Flags::SEEN))
        .bool("flagged", record.flags.contains(Flags::FLAGGED))
        .bool("answered", record.flags.contains(Flags::ANSWERED))
        .num("depth", depth);
    Ok(out.finish())
}

/// The decoded From (a name, else the address) and Subject of a header.
pub(super) struct Summary {
    pub from: String,
    pub subject: String,
}

impl Summary {
    pub fn of(header: &[u8]) -> Summary {
        let parsed = std::panic::catch_unwind(|| MessageParser::new().parse_headers(header))
            .ok()
            .flatten();
        let Some(message) = parsed else {
            return Summary {
                from: String::new(),
                subject: String::new(),
            };
        };
        let from = message
            .from()
            .and_then(|a| a.first())
            .map(|addr| {
                addr.name()
                    .map(str::trim)
                    .filter(|n| !n.is_empty())
                    .or(addr.address())
                    .unwrap_or_default()
                    .to_string()
            })
            .unwrap_or_default();
        Summary {
            from,
            subject: message.subject().unwrap_or_default().to_string(),
        }
    }
}

/// Whether a message has something beside its text: a part that is not
/// text or multipart, an attached message, or a disposition of attachment.
pub(super) fn has_attachment(info: &MessageInfo) -> bool {
    use crate::mime::PartKind;
    let disposed = {
        let lower = String::from_utf8_lossy(&info.bodystructure).to_ascii_lowercase();
        lower.contains("(\"attachment\"")
    };
    disposed
        || info.parts.iter().any(|p| {
            !p.section.is_empty()
                && match p.kind {
                    PartKind::Message => true,
                    PartKind::Multipart => false,
                    PartKind::Leaf => !p.content_type.starts_with("text/"),
                }
        })
}

/// `2026-11-26T11:26:36Z`.
pub(super) fn rfc3339(unix: i64) -> String {
    let c = crate::clock::civil(unix, 0);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        c.year, c.month, c.day, c.hour, c.minute, c.second
    )
}

/// The messages `uids` (in UID order) threaded by REFERENCES: each with
/// its depth, the thread with the newest message first, each thread in
/// RFC 5256's order.
fn threads_newest_first(
    store: &Store,
    mailbox: MailboxId,
    uids: &[u32],
) -> Result<Vec<(u32, u32)>, StoreError> {
    let (Some(&low), Some(&high)) = (uids.first(), uids.last()) else {
        return Ok(Vec::new());
    };
    let snapshot = store.snapshot()?;
    let content = snapshot.content()?;
    let mut entries: Vec<(u32, i64, ThreadKeys)> = Vec::with_capacity(uids.len());
    let mut wanted = uids.iter().peekable();
    for (uid, record) in snapshot.messages_between(mailbox, low, high)? {
        while wanted.next_if(|&&w| w < uid).is_some() {}
        if wanted.next_if(|&&w| w == uid).is_none() {
            continue;
        }
        let keys = content
            .with_sort_keys(record.blob, |bytes| {
                SortKeys::decode_some(bytes, Wanted::SUBJECT | Wanted::THREAD)
            })?
            .flatten()
            .unwrap_or_default();
        let date = keys.date.unwrap_or(record.internal_date);
        entries.push((uid, date, keys.into()));
    }
    let messages: Vec<ThreadMessage<'_>> = entries
        .iter()
        .map(|(uid, date, keys)| ThreadMessage {
            number: *uid,
            date: *date,
            keys,
        })
        .collect();
    let mut threads = parse_threads(&thread::references(&messages));
    // Newest thread first: by its highest UID, the last to arrive.
    threads.sort_by_key(|t| std::cmp::Reverse(t.iter().map(|(uid, _)| *uid).max()));
    Ok(threads.into_iter().flatten().collect())
}

/// Reads THREAD's response text, `(1 2 (3)(4 5))(6)`, as one list of
/// (number, depth) per thread, in the order the text gives. In a list,
/// each number is the child of the one before it; sublists are siblings
/// under the last number before them.
fn parse_threads(text: &str) -> Vec<Vec<(u32, u32)>> {
    let mut threads = Vec::new();
    let mut current: Vec<(u32, u32)> = Vec::new();
    // The depth the next number gets, for each open parenthesis.
    let mut stack: Vec<u32> = Vec::new();
    let mut number: Option<u32> = None;
    let flush = |number: &mut Option<u32>, stack: &mut Vec<u32>, out: &mut Vec<(u32, u32)>| {
        if let (Some(n), Some(depth)) = (number.take(), stack.last_mut()) {
            out.push((n, *depth));
            *depth += 1;
        }
    };
    for c in text.chars() {
        match c {
            '0'..='9' => {
                let digit = c as u32 - '0' as u32;
                number = Some(number.unwrap_or(0).saturating_mul(10).saturating_add(digit));
            }
            '(' => {
                flush(&mut number, &mut stack, &mut current);
                let depth = stack.last().copied().unwrap_or(0);
                stack.push(depth);
            }
            ')' => {
                flush(&mut number, &mut stack, &mut current);
                stack.pop();
                if stack.is_empty() && !current.is_empty() {
                    threads.push(std::mem::take(&mut current));
                }
            }
            _ => flush(&mut number, &mut stack, &mut current),
        }
    }
    threads
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thread_text_to_depths() {
        assert_eq!(
            parse_threads("(1 2 (3)(4 5))(6)"),
            vec![vec![(1, 0), (2, 1), (3, 2), (4, 2), (5, 3)], vec![(6, 0)]]
        );
        assert_eq!(
            parse_threads("((1)(2))"),
            vec![vec![(1, 0), (2, 0)]],
            "a dummy root's children share depth 0"
        );
        assert!(parse_threads("").is_empty());
    }

    #[test]
    fn dates_in_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_795_692_396), "2026-11-26T11:26:36Z");
    }
}
