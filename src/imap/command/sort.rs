//! SORT and UID SORT (RFC 5256, RFC 5957's display keys, RFC 5267's
//! RETURN options) and THREAD (RFC 5256). The keys compared are those
//! stored at delivery ([`SortKeys`]); loading them and sorting or threading
//! run on a blocking thread, so a SORT over a large mailbox never stalls
//! the other sessions.

use std::cmp::Ordering;
use std::fmt::Write as _;

use crate::imap::parser::{SearchKey, SearchReturn, SortField, SortKey, ThreadAlgorithm};
use crate::imap::session::Session;
use crate::imap::thread::{self, ThreadKeys, ThreadMessage};
use crate::mime::{SortKeys, Wanted};
use crate::store::{date_key, Store, StoreError, StoredOrder};

use super::messages::compress_set;
use super::search::{saved_result, Found};

/// What THREAD knows of one message.
struct Entry {
    /// RFC 5256's sent date: the Date header, or INTERNALDATE when it is
    /// missing or unreadable.
    sent_date: i64,
    keys: ThreadKeys,
}

fn charset_ok(charset: &str) -> bool {
    charset.eq_ignore_ascii_case("UTF-8") || charset.eq_ignore_ascii_case("US-ASCII")
}

impl Session {
    pub(in crate::imap) async fn sort(
        &mut self,
        tag: &str,
        uid: bool,
        return_options: Option<Vec<SearchReturn>>,
        keys: Vec<SortKey>,
        charset: String,
        key: SearchKey,
    ) {
        let saving = return_options
            .as_ref()
            .is_some_and(|o| o.contains(&SearchReturn::Save));
        if !charset_ok(&charset) {
            if saving {
                self.saved = None;
            }
            return self.no(tag, "[BADCHARSET (UTF-8 US-ASCII)] Unsupported charset");
        }
        let sorted = match self.sorted_uids(&key, keys).await {
            Some(Ok(sorted)) => sorted,
            Some(Err(e)) => {
                if saving {
                    self.saved = None;
                }
                return self.store_failed(tag, &e);
            }
            None => return,
        };
        let Some(view) = self.view() else { return };
        let numbers: Vec<u32> = if uid {
            sorted.clone()
        } else {
            sorted.iter().filter_map(|u| view.seq_of(*u)).collect()
        };
        let Some(options) = return_options else {
            let mut line = String::with_capacity(5 + numbers.len() * 7);
            line.push_str("SORT");
            for n in &numbers {
                // Into the line itself: no string of its own per number.
                let _ = write!(line, " {n}");
            }
            self.untagged(&line);
            return self.ok(tag, "SORT completed");
        };
        if saving {
            let mut saved = saved_result(&options, sorted);
            saved.sort_unstable();
            self.saved = Some(saved);
        }
        // RFC 5267 §3.1: RETURN () means ALL; MIN and MAX are the first and
        // last in sort order, ALL keeps that order.
        let wanted: Vec<SearchReturn> = if options.is_empty() {
            vec![SearchReturn::All]
        } else {
            options
        };
        if wanted == [SearchReturn::Save] {
            return self.ok(tag, "SORT completed");
        }
        let mut line = format!("ESEARCH (TAG \"{tag}\")");
        if uid {
            line.push_str(" UID");
        }
        if let (Some(first), Some(last)) = (numbers.first(), numbers.last()) {
            for option in &wanted {
                match option {
                    SearchReturn::Min => line.push_str(&format!(" MIN {first}")),
                    SearchReturn::Max => line.push_str(&format!(" MAX {last}")),
                    SearchReturn::All => line.push_str(&format!(" ALL {}", compress_set(&numbers))),
                    SearchReturn::Count | SearchReturn::Save => {}
                }
            }
        }
        if wanted.contains(&SearchReturn::Count) {
            line.push_str(&format!(" COUNT {}", numbers.len()));
        }
        self.untagged(&line);
        self.ok(tag, "SORT completed");
    }

    pub(in crate::imap) async fn thread(
        &mut self,
        tag: &str,
        uid: bool,
        algorithm: ThreadAlgorithm,
        charset: String,
        key: SearchKey,
    ) {
        if !charset_ok(&charset) {
            return self.no(tag, "[BADCHARSET (UTF-8 US-ASCII)] Unsupported charset");
        }
        let found = match self.matching(&key, true).await {
            Some(Ok(found)) => found,
            Some(Err(e)) => return self.store_failed(tag, &e),
            None => return,
        };
        let Some(view) = self.view() else { return };
        let numbers: Vec<u32> = if uid {
            found.iter().map(|f| f.uid).collect()
        } else {
            found
                .iter()
                .map(|f| view.seq_of(f.uid).unwrap_or(0))
                .collect()
        };
        let store = self.shared.store.clone();
        let threads = self
            .shared
            .run_heavy(move || -> Result<String, StoreError> {
                let entries = load(&store, &found, Wanted::SUBJECT | Wanted::THREAD)?;
                let messages: Vec<ThreadMessage<'_>> = entries
                    .iter()
                    .zip(numbers)
                    .map(|(entry, number)| ThreadMessage {
                        number,
                        date: entry.sent_date,
                        keys: &entry.keys,
                    })
                    .collect();
                Ok(match algorithm {
                    ThreadAlgorithm::OrderedSubject => thread::ordered_subject(&messages),
                    ThreadAlgorithm::References => thread::references(&messages),
                })
            })
            .await;
        match threads {
            Ok(threads) if threads.is_empty() => self.untagged("THREAD"),
            Ok(threads) => self.untagged(&format!("THREAD {threads}")),
            Err(e) => return self.store_failed(tag, &e),
        }
        self.ok(tag, "THREAD completed");
    }

    /// The UIDs matching `key`, in the order `keys` give.
    async fn sorted_uids(
        &self,
        key: &SearchKey,
        keys: Vec<SortKey>,
    ) -> Option<Result<Vec<u32>, StoreError>> {
        if let [SortKey {
            field: field @ (SortField::Subject | SortField::Date),
            reverse,
        }] = keys[..]
        {
            return self.sorted_in_stored_order(key, field, reverse).await;
        }
        let found = match self.matching(key, true).await? {
            Ok(found) => found,
            Err(e) => return Some(Err(e)),
        };
        let store = self.shared.store.clone();
        let sorted = self
            .shared
            .run_heavy(move || {
                let table = SortTable::load(&store, &found, &keys)?;
                drop(found);
                Ok(table.sorted(&keys))
            })
            .await;
        Some(sorted)
    }
}

impl Session {
    /// SORT by SUBJECT or by DATE alone, with or without REVERSE, what
    /// clients ask for a folder's list: from the store's subject or date
    /// order (one scan, already in order), filtered to the messages
    /// matching `key`. ALL, what clients send, is the client's view
    /// itself, so the message records are not read at all.
    async fn sorted_in_stored_order(
        &self,
        key: &SearchKey,
        field: SortField,
        reverse: bool,
    ) -> Option<Result<Vec<u32>, StoreError>> {
        let view = self.view()?;
        let mailbox = view.mailbox;
        let candidates: Vec<u32> = if matches!(key, SearchKey::All) {
            view.uids.clone()
        } else {
            match self.matching(key, true).await? {
                Ok(found) => found.iter().map(|f| f.uid).collect(),
                Err(e) => return Some(Err(e)),
            }
        };
        let store = self.shared.store.clone();
        let sorted = self
            .shared
            .run_heavy(move || {
                let gone_date = date_key(0);
                let (order, gone): (_, &[u8]) = match field {
                    SortField::Date => (StoredOrder::Date, &gone_date),
                    _ => (StoredOrder::Subject, b""),
                };
                let mut sorter = OrderSorter::new(&candidates, reverse, gone);
                store
                    .snapshot()?
                    .in_order(order, mailbox, |key, uid| sorter.visit(key, uid))?;
                Ok(sorter.finish())
            })
            .await;
        Some(sorted)
    }
}

/// Picks the messages wanted out of a mailbox's stored subject or date
/// order (given entry by entry, as the store keeps it: by key, then UID)
/// and puts them in RFC 5256's order, forward or REVERSE. Its memory is a
/// few bytes a candidate: the candidates, [`Pending`], and the result.
struct OrderSorter<'a> {
    /// The candidates the order has not given yet.
    pending: Pending<'a>,
    reverse: bool,
    /// The key a candidate the order does not give sorts under: one
    /// expunged by another session since the client's view was made sorts
    /// as a message without header fields, dated 1970, as by other keys.
    gone_key: &'a [u8],
    /// Candidates whose key is `gone_key`; they and the gone ones end up
    /// together, in UID order.
    at_gone_key: Vec<u32>,
    /// The other candidates, in order of key, then UID.
    rest: Vec<u32>,
    /// Where in `rest` the keys above `gone_key` start.
    split: Option<usize>,
    /// For REVERSE, where each run of one key starts in `rest`.
    runs: Vec<usize>,
    last_key: Vec<u8>,
}

impl<'a> OrderSorter<'a> {
    /// `candidates`: the messages to sort, in UID order.
    fn new(candidates: &'a [u32], reverse: bool, gone_key: &'a [u8]) -> OrderSorter<'a> {
        OrderSorter {
            pending: Pending::new(candidates),
            reverse,
            gone_key,
            at_gone_key: Vec::new(),
            rest: Vec::with_capacity(candidates.len()),
            split: None,
            runs: Vec::new(),
            last_key: Vec::new(),
        }
    }

    fn visit(&mut self, key: &[u8], uid: u32) {
        if !self.pending.take(uid) {
            return;
        }
        match key.cmp(self.gone_key) {
            Ordering::Equal => return self.at_gone_key.push(uid),
            Ordering::Greater if self.split.is_none() => self.split = Some(self.rest.len()),
            _ => {}
        }
        if self.reverse && (self.runs.is_empty() || key != self.last_key.as_slice()) {
            self.runs.push(self.rest.len());
            self.last_key.clear();
            self.last_key.extend_from_slice(key);
        }
        self.rest.push(uid);
    }

    /// The candidates in order.
    fn finish(self) -> Vec<u32> {
        let mut gone = self.at_gone_key;
        gone.extend(self.pending.left());
        gone.sort_unstable();
        let split = self.split.unwrap_or(self.rest.len());
        let mut out = Vec::with_capacity(gone.len() + self.rest.len());
        if !self.reverse {
            out.extend_from_slice(&self.rest[..split]);
            out.extend(gone);
            out.extend_from_slice(&self.rest[split..]);
            return out;
        }
        // REVERSE turns the keys around; messages of one key stay in UID
        // order (RFC 5256 §3's tie-break, not a key of its own). A run
        // starts at `split`, the first key above `gone_key`.
        let mut end = self.rest.len();
        for &start in self.runs.iter().rev() {
            if start < split && end == split {
                out.append(&mut gone);
            }
            out.extend_from_slice(&self.rest[start..end]);
            end = start;
        }
        out.extend(gone);
        out
    }
}

/// The candidates of an [`OrderSorter`] not taken yet. A mailbox's UIDs
/// are mostly consecutive, so usually a bit per UID over the candidates'
/// span, at most 4 bytes a candidate; when they are sparser than that, a
/// mark beside each, found by binary search (slower, as small).
enum Pending<'a> {
    Bits {
        first: u32,
        words: Vec<u64>,
    },
    Marks {
        candidates: &'a [u32],
        taken: Vec<bool>,
    },
}

impl<'a> Pending<'a> {
    /// `candidates` in UID order.
    fn new(candidates: &'a [u32]) -> Pending<'a> {
        let (Some(&first), Some(&last)) = (candidates.first(), candidates.last()) else {
            return Pending::Bits {
                first: 0,
                words: Vec::new(),
            };
        };
        let span = u64::from(last - first) + 1;
        if span > 32 * candidates.len() as u64 {
            return Pending::Marks {
                candidates,
                taken: vec![false; candidates.len()],
            };
        }
        let mut words = vec![0u64; span.div_ceil(64) as usize];
        for &uid in candidates {
            let bit = (uid - first) as usize;
            words[bit / 64] |= 1 << (bit % 64);
        }
        Pending::Bits { first, words }
    }

    /// True when `uid` is a candidate not taken before; takes it.
    fn take(&mut self, uid: u32) -> bool {
        match self {
            Pending::Bits { first, words } => {
                let Some(bit) = uid.checked_sub(*first).map(|b| b as usize) else {
                    return false;
                };
                let Some(word) = words.get_mut(bit / 64) else {
                    return false;
                };
                let mask = 1 << (bit % 64);
                let pending = *word & mask != 0;
                *word &= !mask;
                pending
            }
            Pending::Marks { candidates, taken } => match candidates.binary_search(&uid) {
                Ok(i) => !std::mem::replace(&mut taken[i], true),
                Err(_) => false,
            },
        }
    }

    /// The candidates never taken, in UID order.
    fn left(self) -> Vec<u32> {
        match self {
            Pending::Bits { first, words } => {
                let mut left = Vec::new();
                for (i, &word) in words.iter().enumerate() {
                    let mut word = word;
                    while word != 0 {
                        let bit = i * 64 + word.trailing_zeros() as usize;
                        left.push(first + bit as u32);
                        word &= word - 1;
                    }
                }
                left
            }
            Pending::Marks { candidates, taken } => candidates
                .iter()
                .zip(taken)
                .filter(|(_, taken)| !taken)
                .map(|(uid, _)| *uid)
                .collect(),
        }
    }
}

/// The stored keys THREAD reads of the messages found (`wanted` parts of
/// them). A message another session expunged, still in the client's view,
/// threads as one without header fields, dated 1970.
fn load(store: &Store, found: &[Found], wanted: Wanted) -> Result<Vec<Entry>, StoreError> {
    if found.is_empty() {
        return Ok(Vec::new());
    }
    let content = store.snapshot()?.content()?;
    let mut entries = Vec::with_capacity(found.len());
    for message in found {
        let keys = match message.blob {
            Some(blob) => content
                .with_sort_keys(blob, |bytes| SortKeys::decode_some(bytes, wanted))?
                .flatten()
                .unwrap_or_default(),
            None => SortKeys::default(),
        };
        entries.push(Entry {
            sent_date: keys.date.unwrap_or(message.internal_date),
            keys: keys.into(),
        });
    }
    Ok(entries)
}

/// The parts of the stored keys a sort by `field` reads.
fn wanted(field: SortField) -> Wanted {
    match field {
        SortField::Arrival | SortField::Date | SortField::Size => Wanted::NONE,
        SortField::Subject => Wanted::SUBJECT,
        SortField::From => Wanted::FROM,
        SortField::To => Wanted::TO,
        SortField::Cc => Wanted::CC,
        SortField::DisplayFrom => Wanted::DISPLAY_FROM,
        SortField::DisplayTo => Wanted::DISPLAY_TO,
    }
}

/// What the general SORT path keeps of the messages found: a row of
/// numbers per message and, for the text keys the SORT names, spans of one
/// shared buffer. About 24 bytes a message, 8 more per text key, and the
/// text itself, where whole [`SortKeys`] records would take 240.
struct SortTable {
    rows: Vec<Row>,
    /// The text fields the SORT names, each once.
    fields: Vec<SortField>,
    /// `fields.len()` spans of `text` per row, (start, length).
    spans: Vec<(u32, u32)>,
    text: String,
}

struct Row {
    uid: u32,
    size: u32,
    internal_date: i64,
    /// RFC 5256's sent date: the Date header, or INTERNALDATE when it is
    /// missing or unreadable.
    sent_date: i64,
}

impl SortTable {
    fn new(keys: &[SortKey]) -> SortTable {
        let mut fields: Vec<SortField> = Vec::new();
        for key in keys {
            if wanted(key.field) != Wanted::NONE && !fields.contains(&key.field) {
                fields.push(key.field);
            }
        }
        SortTable {
            rows: Vec::new(),
            fields,
            spans: Vec::new(),
            text: String::new(),
        }
    }

    /// The stored keys of the messages found, as far as `keys` need them:
    /// ARRIVAL and SIZE alone read only the message records. A message
    /// another session expunged, still in the client's view, sorts as one
    /// without header fields, dated 1970.
    fn load(store: &Store, found: &[Found], keys: &[SortKey]) -> Result<SortTable, StoreError> {
        let mut table = SortTable::new(keys);
        let wanted = table
            .fields
            .iter()
            .fold(Wanted::NONE, |w, f| w | wanted(*f));
        let header = keys
            .iter()
            .any(|k| !matches!(k.field, SortField::Arrival | SortField::Size));
        table.rows.reserve_exact(found.len());
        table.spans.reserve_exact(found.len() * table.fields.len());
        let content = store.snapshot()?.content()?;
        for message in found {
            let keys = match message.blob {
                Some(blob) if header => content
                    .with_sort_keys(blob, |bytes| SortKeys::decode_some(bytes, wanted))?
                    .flatten()
                    .unwrap_or_default(),
                _ => SortKeys::default(),
            };
            table.push(message.uid, message.size, message.internal_date, &keys)?;
        }
        Ok(table)
    }

    fn push(
        &mut self,
        uid: u32,
        size: u32,
        internal_date: i64,
        keys: &SortKeys,
    ) -> Result<(), StoreError> {
        self.rows.push(Row {
            uid,
            size,
            internal_date,
            sent_date: keys.date.unwrap_or(internal_date),
        });
        for &field in &self.fields {
            let text = match field {
                SortField::Subject => &keys.subject,
                SortField::From => &keys.from,
                SortField::To => &keys.to,
                SortField::Cc => &keys.cc,
                SortField::DisplayFrom => &keys.display_from,
                _ => &keys.display_to,
            };
            // 4 GiB of text is beyond any SORT (8 million messages with
            // six 512-byte keys each), but is refused rather than wrapped.
            let too_big = || StoreError::Storage("this SORT's keys are over 4 GiB".into());
            let start = u32::try_from(self.text.len()).map_err(|_| too_big())?;
            let len = u32::try_from(text.len()).map_err(|_| too_big())?;
            start.checked_add(len).ok_or_else(too_big)?;
            self.spans.push((start, len));
            self.text.push_str(text);
        }
        Ok(())
    }

    /// Row `row`'s text for `field`, one of `fields`.
    fn text(&self, row: usize, field: SortField) -> &[u8] {
        let slot = self.fields.iter().position(|f| *f == field).unwrap_or(0);
        let (start, len) = self.spans[row * self.fields.len() + slot];
        &self.text.as_bytes()[start as usize..(start + len) as usize]
    }

    /// A number that orders as `field` does where two rows differ (and is
    /// equal where the field's first 8 bytes are): numbers with their sign
    /// bit flipped, text as its first 8 bytes, zero-padded, read
    /// big-endian.
    fn prefix(&self, row: usize, field: SortField) -> u64 {
        let number = |n: i64| (n as u64) ^ (1 << 63);
        let r = &self.rows[row];
        match field {
            SortField::Arrival => number(r.internal_date),
            SortField::Date => number(r.sent_date),
            SortField::Size => u64::from(r.size),
            text => {
                let text = self.text(row, text);
                let mut bytes = [0u8; 8];
                let n = text.len().min(8);
                bytes[..n].copy_from_slice(&text[..n]);
                u64::from_be_bytes(bytes)
            }
        }
    }

    /// RFC 5256 §3: key by key, REVERSE turning one key around; rows equal
    /// on every key keep mailbox order.
    fn compare(&self, a: usize, b: usize, keys: &[SortKey]) -> Ordering {
        let (ra, rb) = (&self.rows[a], &self.rows[b]);
        for key in keys {
            let order = match key.field {
                SortField::Arrival => ra.internal_date.cmp(&rb.internal_date),
                SortField::Date => ra.sent_date.cmp(&rb.sent_date),
                SortField::Size => ra.size.cmp(&rb.size),
                text => self.text(a, text).cmp(self.text(b, text)),
            };
            let order = if key.reverse { order.reverse() } else { order };
            if order != Ordering::Equal {
                return order;
            }
        }
        ra.uid.cmp(&rb.uid)
    }

    /// The UIDs in the order `keys` give.
    fn sorted(&self, keys: &[SortKey]) -> Vec<u32> {
        // Row numbers, each beside a prefix of its first key: most
        // comparisons end on the prefixes, without reaching the rows and
        // their text.
        let first = keys.first().copied();
        let mut order: Vec<(u64, u32)> = (0..self.rows.len())
            .map(|i| (first.map_or(0, |k| self.prefix(i, k.field)), i as u32))
            .collect();
        let reverse = first.is_some_and(|k| k.reverse);
        // Unstable is enough: ties end in UID order, so no two rows
        // compare equal.
        order.sort_unstable_by(|&(pa, a), &(pb, b)| {
            let by_prefix = if reverse { pb.cmp(&pa) } else { pa.cmp(&pb) };
            by_prefix.then_with(|| self.compare(a as usize, b as usize, keys))
        });
        order
            .into_iter()
            .map(|(_, i)| self.rows[i as usize].uid)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Puts a message in `table`: `date` is its INTERNALDATE, with no Date
    /// header, so also its sent date; its size is its UID.
    fn push(table: &mut SortTable, uid: u32, date: i64, subject: &str) {
        let keys = SortKeys {
            subject: subject.into(),
            ..SortKeys::default()
        };
        table.push(uid, uid, date, &keys).unwrap();
    }

    /// A message of the test mailbox: UID, subject, date.
    type Stored<'s> = (u32, &'s str, i64);

    #[test]
    fn the_stored_orders_give_what_the_full_comparison_does() {
        // A mailbox of 200 messages over a few subjects (some empty) and
        // dates (some 1970, the date the gone sort under, some before); a
        // pseudo-random half are candidates, and some candidates are gone
        // from the store (expunged by another session).
        let subjects = ["", "A", "AB", "B", "\u{e4}RGER", "SUBJECT 1", "SUBJECT 10"];
        let dates = [-86_400, -1, 0, 0, 1, 1_700_000_000, 1_700_000_000];
        let mut seed = 7u32;
        let mut next = move || {
            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            seed >> 8
        };
        let mut mailbox: Vec<Stored> = (1..=200)
            .map(|uid| {
                let subject = subjects[next() as usize % subjects.len()];
                (uid * 3, subject, dates[next() as usize % dates.len()])
            })
            .collect();
        // Then the same with one far UID, which makes the candidates
        // sparse (`Pending` marks instead of bits).
        for far in [None, Some(u32::MAX - 1)] {
            mailbox.extend(far.map(|uid| (uid, "B", 5)));
            let candidates: Vec<u32> = mailbox
                .iter()
                .filter(|(u, ..)| far == Some(*u) || next() % 2 == 0)
                .map(|(u, ..)| *u)
                .collect();
            check_sorter(&mailbox, &candidates);
        }
    }

    fn check_sorter(mailbox: &[Stored], candidates: &[u32]) {
        let dense = matches!(Pending::new(candidates), Pending::Bits { .. });
        assert_eq!(dense, candidates.last().copied() < Some(u32::MAX - 1));
        let gone: Vec<u32> = candidates.iter().copied().filter(|u| u % 7 == 0).collect();
        let stored: Vec<Stored> = mailbox
            .iter()
            .copied()
            .filter(|(u, ..)| !gone.contains(u))
            .collect();
        for (field, reverse) in [
            (SortField::Subject, false),
            (SortField::Subject, true),
            (SortField::Date, false),
            (SortField::Date, true),
        ] {
            // The order as the store gives it: by key, then UID.
            let mut order: Vec<(Vec<u8>, u32)> = stored
                .iter()
                .map(|&(uid, subject, date)| match field {
                    SortField::Date => (date_key(date).to_vec(), uid),
                    _ => (subject.as_bytes().to_vec(), uid),
                })
                .collect();
            order.sort();
            let gone_key = date_key(0);
            let gone_key: &[u8] = if field == SortField::Date {
                &gone_key
            } else {
                b""
            };
            let mut sorter = OrderSorter::new(candidates, reverse, gone_key);
            for (key, uid) in order {
                sorter.visit(&key, uid);
            }
            let keys = [SortKey { field, reverse }];
            let mut table = SortTable::new(&keys);
            for &uid in candidates {
                match stored.iter().find(|m| m.0 == uid) {
                    Some(&(_, subject, date)) => push(&mut table, uid, date, subject),
                    None => push(&mut table, uid, 0, ""),
                }
            }
            let expected = table.sorted(&keys);
            assert_eq!(sorter.finish(), expected, "{field:?} reverse {reverse}");
        }
    }

    #[test]
    fn prefixes_never_contradict_the_full_comparison() {
        let messages = [
            (1, -5, ""),
            (2, 0, "A"),
            (3, i64::MIN, "A\u{0}"),
            (4, i64::MAX, "AB"),
            (5, 7, "SUBJECT-12345 WEEKLY"),
            (6, 7, "SUBJECT-12345 WEEKLZ"),
            (7, -1, "\u{10FFFF}"),
            (8, 1, "ABCDEFGH"),
            (9, 1, "ABCDEFGHI"),
        ];
        for field in [
            SortField::Arrival,
            SortField::Date,
            SortField::Subject,
            SortField::Size,
        ] {
            let keys = [SortKey {
                field,
                reverse: false,
            }];
            let mut table = SortTable::new(&keys);
            for (uid, date, subject) in messages {
                push(&mut table, uid, date, subject);
            }
            for a in 0..messages.len() {
                for b in 0..messages.len() {
                    let (pa, pb) = (table.prefix(a, field), table.prefix(b, field));
                    if pa != pb {
                        assert_eq!(pa.cmp(&pb), table.compare(a, b, &keys), "{field:?} {a} {b}");
                    }
                }
            }
        }
    }

    #[test]
    fn several_keys_sort_key_by_key_with_reverse_on_one() {
        // (SUBJECT REVERSE DATE REVERSE SUBJECT): subject first, then
        // newest first; a text key named twice is kept once.
        let keys = [
            SortKey {
                field: SortField::Subject,
                reverse: false,
            },
            SortKey {
                field: SortField::Date,
                reverse: true,
            },
            SortKey {
                field: SortField::Subject,
                reverse: true,
            },
        ];
        let mut table = SortTable::new(&keys);
        assert_eq!(table.fields, [SortField::Subject]);
        for (uid, date, subject) in [
            (1, 5, "B"),
            (2, 9, "A"),
            (3, 5, "A"),
            (4, 9, "A"),
            (5, 1, ""),
        ] {
            push(&mut table, uid, date, subject);
        }
        assert_eq!(table.sorted(&keys), [5, 2, 4, 3, 1]);
    }
}
