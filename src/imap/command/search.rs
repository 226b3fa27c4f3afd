//! SEARCH and UID SEARCH, with ESEARCH's RETURN options and SEARCHRES's
//! SAVE. Keys that read message content run on a blocking thread, so a
//! SEARCH BODY over a large mailbox never stalls the other sessions.

use std::sync::Arc;

use crate::imap::matcher::{Candidate, Content, Matcher};
use crate::imap::parser::{SearchKey, SearchReturn};
use crate::imap::session::{Session, State};
use crate::mime::MessageInfo;
use crate::store::{MailboxId, Store, StoreError};

use super::messages::compress_set;

/// Mailboxes at least this large have content searches split across threads.
const PARALLEL_FROM: usize = 4096;

type SearchJob = Box<dyn FnOnce() -> Result<Vec<u32>, StoreError> + Send>;

impl Session {
    pub(in crate::imap) async fn search(
        &mut self,
        tag: &str,
        uid: bool,
        charset: Option<String>,
        return_options: Option<Vec<SearchReturn>>,
        key: SearchKey,
    ) {
        // RFC 5182 §2.1: a SEARCH ... RETURN (SAVE) answered with NO leaves
        // `$` empty, so a pipelined `FETCH $` cannot act on an older result.
        let saving = return_options
            .as_ref()
            .is_some_and(|o| o.contains(&SearchReturn::Save));
        if let Some(charset) = &charset {
            if !charset.eq_ignore_ascii_case("UTF-8") && !charset.eq_ignore_ascii_case("US-ASCII") {
                if saving {
                    self.saved = None;
                }
                return self.no(tag, "[BADCHARSET (UTF-8 US-ASCII)] Unsupported charset");
            }
        }
        let Some(view) = self.view() else { return };
        let uids = view.uids.clone();
        let mailbox = view.mailbox;
        let matcher = Matcher::new(
            &key,
            self.saved.as_deref(),
            uids.len() as u32,
            uids.last().copied().unwrap_or(0),
        );
        let store = self.shared.store.clone();
        let found = if matcher.needs_content() {
            // Content keys cost microseconds a message: a large mailbox is
            // split across the blocking threads, each with its own snapshot.
            let pieces = if uids.len() >= PARALLEL_FROM {
                self.shared.heavy_threads.max(1)
            } else {
                1
            };
            let matcher = Arc::new(matcher);
            let uids = Arc::new(uids);
            let chunk = uids.len().div_ceil(pieces).max(1);
            let jobs: Vec<SearchJob> = (0..pieces)
                .map(|i| {
                    let (store, matcher, uids) = (store.clone(), matcher.clone(), uids.clone());
                    let range = (i * chunk).min(uids.len())..((i + 1) * chunk).min(uids.len());
                    Box::new(move || {
                        run(&store, mailbox, &uids[range.clone()], range.start, &matcher)
                    }) as SearchJob
                })
                .collect();
            let mut found = Ok(Vec::new());
            for piece in self.shared.run_heavy_parallel(jobs).await {
                found = match (found, piece) {
                    (Ok(mut all), Ok(part)) => {
                        all.extend(part);
                        Ok(all)
                    }
                    (Err(e), _) | (_, Err(e)) => Err(e),
                };
            }
            found
        } else {
            run(&store, mailbox, &uids, 0, &matcher)
        };
        let found = match found {
            Ok(found) => found,
            Err(e) => {
                if saving {
                    self.saved = None;
                }
                return self.store_failed(tag, &e);
            }
        };
        let State::Selected(view) = &self.state else {
            return;
        };
        let numbers: Vec<u32> = if uid {
            found.clone()
        } else {
            found.iter().filter_map(|u| view.seq_of(*u)).collect()
        };
        // RFC 7162 §3.1.5: a search by MODSEQ also gives the highest MODSEQ
        // of what it found (the view was synced just before).
        let highest = key
            .mentions_modseq()
            .then(|| {
                found
                    .iter()
                    .filter_map(|u| view.seq_of(*u))
                    .map(|seq| view.modseq_at(seq as usize - 1))
                    .max()
            })
            .flatten();
        let options = return_options.clone().unwrap_or_default();
        let save = options.contains(&SearchReturn::Save);
        if save {
            self.saved = Some(saved_result(&options, found));
        }
        let esearch = return_options.is_some() || self.rev2;
        if !esearch {
            let list: String = numbers.iter().map(|n| format!(" {n}")).collect();
            let modseq = highest.map_or(String::new(), |m| format!(" (MODSEQ {m})"));
            self.untagged(&format!("SEARCH{list}{modseq}"));
        } else if !(save && options.len() == 1) {
            // RETURN () means ALL; so does a rev2 SEARCH without RETURN.
            let wanted: Vec<SearchReturn> =
                match options.iter().filter(|o| **o != SearchReturn::Save).count() {
                    0 if !save => vec![SearchReturn::All],
                    _ => options.clone(),
                };
            let mut line = format!("ESEARCH (TAG \"{tag}\")");
            if uid {
                line.push_str(" UID");
            }
            if !numbers.is_empty() {
                for option in &wanted {
                    match option {
                        SearchReturn::Min => line.push_str(&format!(" MIN {}", numbers[0])),
                        SearchReturn::Max => {
                            line.push_str(&format!(" MAX {}", numbers[numbers.len() - 1]))
                        }
                        SearchReturn::All => {
                            line.push_str(&format!(" ALL {}", compress_set(&numbers)))
                        }
                        SearchReturn::Count | SearchReturn::Save => {}
                    }
                }
            }
            if wanted.contains(&SearchReturn::Count) {
                line.push_str(&format!(" COUNT {}", numbers.len()));
            }
            if let Some(m) = highest {
                line.push_str(&format!(" MODSEQ {m}"));
            }
            self.untagged(&line);
        }
        self.ok(tag, "SEARCH completed");
    }
}

/// What SAVE keeps (RFC 5182 §2.4): with MIN and/or MAX but neither ALL
/// nor COUNT, only the messages those name; otherwise the whole result.
fn saved_result(options: &[SearchReturn], found: Vec<u32>) -> Vec<u32> {
    let has = |o: SearchReturn| options.contains(&o);
    if has(SearchReturn::All) || has(SearchReturn::Count) {
        return found;
    }
    let (min, max) = (has(SearchReturn::Min), has(SearchReturn::Max));
    if !min && !max {
        return found;
    }
    let mut kept: Vec<u32> = Vec::new();
    if let (true, Some(&first)) = (min, found.first()) {
        kept.push(first);
    }
    if let (true, Some(&last)) = (max, found.last()) {
        if kept.last() != Some(&last) {
            kept.push(last);
        }
    }
    kept
}

/// What the matcher may ask for, loaded only when it asks.
struct Lazy<'a> {
    content: &'a crate::store::Content,
    blob: u64,
    info: Option<Option<MessageInfo>>,
    raw: Option<Option<Vec<u8>>>,
    header: Option<Option<Vec<u8>>>,
}

impl Content for Lazy<'_> {
    fn info(&mut self) -> Option<&MessageInfo> {
        if self.info.is_none() {
            let decoded = self
                .content
                .parsed(self.blob)
                .ok()
                .flatten()
                .and_then(|bytes| MessageInfo::decode(&bytes));
            self.info = Some(decoded);
        }
        self.info.as_ref().and_then(Option::as_ref)
    }

    fn raw(&mut self) -> Option<&[u8]> {
        if self.raw.is_none() {
            self.raw = Some(self.content.blob(self.blob).ok().flatten());
        }
        self.raw.as_ref().and_then(|r| r.as_deref())
    }

    fn search_header(&mut self) -> Option<&[u8]> {
        if self.header.is_none() {
            self.header = Some(self.content.search_header(self.blob).ok().flatten());
        }
        self.header.as_ref().and_then(|r| r.as_deref())
    }
}

/// Evaluates the search over some of the view's messages (`uids`, whose
/// first has sequence number `first_index + 1`); returns matching UIDs.
fn run(
    store: &Store,
    mailbox: MailboxId,
    uids: &[u32],
    first_index: usize,
    matcher: &Matcher,
) -> Result<Vec<u32>, StoreError> {
    let snapshot = store.snapshot()?;
    let Some(last) = uids.last().copied() else {
        return Ok(Vec::new());
    };
    let records = snapshot.messages_between(mailbox, uids[0], last)?;
    let content = snapshot.content()?;
    let mut found = Vec::new();
    let mut records = records.into_iter().peekable();
    for (index, &uid) in uids.iter().enumerate() {
        let seq = (first_index + index) as u32 + 1;
        while records.peek().is_some_and(|(u, _)| *u < uid) {
            records.next();
        }
        let Some((_, record)) = records.next_if(|(u, _)| *u == uid) else {
            continue;
        };
        let candidate = Candidate {
            seq,
            uid,
            flags: record.flags,
            keywords: &record.keywords,
            internal_date: record.internal_date,
            internal_date_offset: record.internal_date_offset,
            size: record.size,
            modseq: record.modseq,
        };
        let mut lazy = Lazy {
            content: &content,
            blob: record.blob,
            info: None,
            raw: None,
            header: None,
        };
        if matcher.matches(&candidate, &mut lazy) {
            found.push(uid);
        }
    }
    Ok(found)
}
