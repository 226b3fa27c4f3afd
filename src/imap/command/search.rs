//! SEARCH and UID SEARCH, with ESEARCH's RETURN options and SEARCHRES's
//! SAVE. Keys that read message content run on a blocking thread, so a
//! SEARCH BODY over a large mailbox never stalls the other sessions.

use std::ops::Range;
use std::sync::Arc;

use crate::imap::matcher::{Candidate, Content, Matcher};
use crate::imap::parser::{SearchKey, SearchReturn};
use crate::imap::session::{Session, State};
use crate::mime::MessageInfo;
use crate::store::{BlobId, MailboxId, Store, StoreError};

use super::messages::compress_set;

/// Mailboxes at least this large have content searches split across threads.
const PARALLEL_FROM: usize = 4096;

type SearchJob = Box<dyn FnOnce() -> Result<Searched, StoreError> + Send>;

/// What a search over the store found, and the view's messages it could
/// not look at because another session expunged them.
#[derive(Default)]
pub(crate) struct Searched {
    pub(crate) found: Vec<Found>,
    pub(crate) gone: Vec<u32>,
}

/// A matching message, with what SORT needs of its record.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Found {
    pub uid: u32,
    /// None for a message another session expunged (still in the view).
    pub blob: Option<BlobId>,
    pub internal_date: i64,
    pub size: u32,
}

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
        let found = match self.matching(&key, false).await {
            Some(Ok(found)) => found.iter().map(|f| f.uid).collect::<Vec<u32>>(),
            Some(Err(e)) => {
                if saving {
                    self.saved = None;
                }
                return self.store_failed(tag, &e);
            }
            None => return,
        };
        let State::Selected(view) = &self.state else {
            return;
        };
        let numbers: Vec<u32> = if uid {
            found.clone()
        } else {
            found.iter().filter_map(|u| view.seq_of(*u)).collect()
        };
        let options = return_options.clone().unwrap_or_default();
        // RFC 7162 §3.1.5: a search by MODSEQ also gives the highest MODSEQ
        // of what it returns (the view was synced just before): with only
        // MIN and/or MAX, of those messages, not of every match.
        let modseq_of = |u: &u32| view.seq_of(*u).map(|seq| view.modseq_at(seq as usize - 1));
        let has = |o: SearchReturn| options.contains(&o);
        let highest = if !key.mentions_modseq() {
            None
        } else if return_options.is_some()
            && (has(SearchReturn::Min) || has(SearchReturn::Max))
            && !has(SearchReturn::All)
            && !has(SearchReturn::Count)
        {
            let min = has(SearchReturn::Min).then(|| found.first()).flatten();
            let max = has(SearchReturn::Max).then(|| found.last()).flatten();
            min.into_iter().chain(max).filter_map(modseq_of).max()
        } else {
            found.iter().filter_map(modseq_of).max()
        };
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

    /// The selected mailbox's messages that match `key`, in UID order;
    /// None when no mailbox is selected. Shared by SEARCH, SORT and THREAD.
    /// `off_loop`: keys answered from the message records alone are
    /// evaluated on a blocking thread too (SORT and THREAD, whose work
    /// afterwards is there anyway), instead of on the event loop.
    pub(super) async fn matching(
        &self,
        key: &SearchKey,
        off_loop: bool,
    ) -> Option<Result<Vec<Found>, StoreError>> {
        let view = self.view()?;
        let uids = view.uids.clone();
        let mailbox = view.mailbox;
        let recent: Arc<[Range<u32>]> = view.recent().into();
        let matcher = Matcher::new(
            key,
            self.saved.as_deref(),
            uids.len() as u32,
            uids.last().copied().unwrap_or(0),
        );
        let store = self.shared.store.clone();
        let matcher = Arc::new(matcher);
        let found = if matcher.needs_content() {
            // Content keys cost microseconds a message: a large mailbox is
            // split across the blocking threads, each with its own snapshot.
            let pieces = if uids.len() >= PARALLEL_FROM {
                self.shared.heavy_threads.max(1)
            } else {
                1
            };
            let uids = Arc::new(uids);
            let chunk = uids.len().div_ceil(pieces).max(1);
            let jobs: Vec<SearchJob> = (0..pieces)
                .map(|i| {
                    let (store, matcher, uids) = (store.clone(), matcher.clone(), uids.clone());
                    let recent = recent.clone();
                    let range = (i * chunk).min(uids.len())..((i + 1) * chunk).min(uids.len());
                    Box::new(move || {
                        let part = &uids[range.clone()];
                        run(&store, mailbox, part, range.start, &matcher, &recent)
                    }) as SearchJob
                })
                .collect();
            let mut found = Ok(Searched::default());
            for piece in self.shared.run_heavy_parallel(jobs).await {
                found = match (found, piece) {
                    (Ok(mut all), Ok(part)) => {
                        all.found.extend(part.found);
                        all.gone.extend(part.gone);
                        Ok(all)
                    }
                    (Err(e), _) | (_, Err(e)) => Err(e),
                };
            }
            found
        } else if off_loop {
            let matcher = matcher.clone();
            self.shared
                .run_heavy(move || run(&store, mailbox, &uids, 0, &matcher, &recent))
                .await
        } else {
            run(&store, mailbox, &uids, 0, &matcher, &recent)
        };
        Some(found.map(|searched| self.with_gone_messages(searched, &matcher)))
    }
}

/// What SAVE keeps (RFC 5182 §2.4): with MIN and/or MAX but neither ALL
/// nor COUNT, only the messages those name; otherwise the whole result.
pub(super) fn saved_result(options: &[SearchReturn], found: Vec<u32>) -> Vec<u32> {
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
/// The web interface's search runs it too.
pub(crate) fn run(
    store: &Store,
    mailbox: MailboxId,
    uids: &[u32],
    first_index: usize,
    matcher: &Matcher,
    recent: &[Range<u32>],
) -> Result<Searched, StoreError> {
    let snapshot = store.snapshot()?;
    let Some(last) = uids.last().copied() else {
        return Ok(Searched::default());
    };
    let records = snapshot.messages_between(mailbox, uids[0], last)?;
    let content = snapshot.content()?;
    let mut found = Vec::new();
    let mut gone = Vec::new();
    let mut records = records.into_iter().peekable();
    for (index, &uid) in uids.iter().enumerate() {
        let seq = (first_index + index) as u32 + 1;
        while records.peek().is_some_and(|(u, _)| *u < uid) {
            records.next();
        }
        let Some((_, record)) = records.next_if(|(u, _)| *u == uid) else {
            gone.push(uid);
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
            recent: in_ranges(recent, uid),
        };
        let mut lazy = Lazy {
            content: &content,
            blob: record.blob,
            info: None,
            raw: None,
            header: None,
        };
        if matcher.matches(&candidate, &mut lazy) {
            found.push(Found {
                uid,
                blob: Some(record.blob),
                internal_date: record.internal_date,
                size: record.size,
            });
        }
    }
    Ok(Searched { found, gone })
}

fn in_ranges(ranges: &[Range<u32>], uid: u32) -> bool {
    let i = ranges.partition_point(|r| r.end <= uid);
    ranges.get(i).is_some_and(|r| r.contains(&uid))
}

/// Content of a message that is no longer stored.
struct NoContent;

impl Content for NoContent {
    fn info(&mut self) -> Option<&MessageInfo> {
        None
    }
    fn raw(&mut self) -> Option<&[u8]> {
        None
    }
}

impl Session {
    /// Adds the matches among messages another session expunged that this
    /// client still sees (RFC 2180 §4.1.2: they keep their numbers until
    /// the EXPUNGE is sent), judged on what the view knows of them.
    fn with_gone_messages(&self, searched: Searched, matcher: &Matcher) -> Vec<Found> {
        let Searched { mut found, gone } = searched;
        let Some(view) = self.view() else {
            return found;
        };
        for uid in gone {
            let Some(seq) = view.seq_of(uid) else {
                continue;
            };
            let index = seq as usize - 1;
            let (flags, keywords) = view.flags_at(index);
            let candidate = Candidate {
                seq,
                uid,
                flags,
                keywords,
                internal_date: 0,
                internal_date_offset: 0,
                size: 0,
                modseq: view.modseq_at(index),
                recent: view.is_recent(uid),
            };
            if matcher.matches(&candidate, &mut NoContent) {
                found.push(Found {
                    uid,
                    blob: None,
                    internal_date: 0,
                    size: 0,
                });
            }
        }
        found.sort_unstable_by_key(|f| f.uid);
        found
    }
}
