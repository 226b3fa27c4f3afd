//! SORT and UID SORT (RFC 5256, RFC 5957's display keys, RFC 5267's
//! RETURN options) and THREAD (RFC 5256). The keys compared are those
//! stored at delivery ([`SortKeys`]); loading them and sorting or threading
//! run on a blocking thread, so a SORT over a large mailbox never stalls
//! the other sessions.

use std::cmp::Ordering;
use std::fmt::Write as _;

use crate::imap::parser::{SearchKey, SearchReturn, SortField, SortKey, ThreadAlgorithm};
use crate::imap::session::Session;
use crate::imap::thread::{self, ThreadMessage};
use crate::mime::{SortKeys, Wanted};
use crate::store::{date_key, Store, StoreError, StoredOrder};

use super::messages::compress_set;
use super::search::{saved_result, Found};

/// What SORT and THREAD know of one message.
struct Entry {
    uid: u32,
    internal_date: i64,
    size: u32,
    keys: SortKeys,
}

impl Entry {
    /// RFC 5256's sent date: the Date header, or INTERNALDATE when it is
    /// missing or unreadable.
    fn sent_date(&self) -> i64 {
        self.keys.date.unwrap_or(self.internal_date)
    }
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
                let entries = load(&store, &found, true, Wanted::SUBJECT | Wanted::THREAD)?;
                let messages: Vec<ThreadMessage<'_>> = entries
                    .iter()
                    .zip(numbers)
                    .map(|(entry, number)| ThreadMessage {
                        number,
                        date: entry.sent_date(),
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
                let wanted = keys.iter().fold(Wanted::NONE, |w, k| w | wanted(k.field));
                let header = keys
                    .iter()
                    .any(|k| !matches!(k.field, SortField::Arrival | SortField::Size));
                let entries = load(&store, &found, header, wanted)?;
                // References, each beside a prefix of its first key: most
                // comparisons end on the prefixes, without following a
                // pointer to an entry and its strings.
                let first = keys.first().copied();
                let mut order: Vec<(u128, &Entry)> = entries
                    .iter()
                    .map(|e| (first.map_or(0, |k| prefix(e, k.field)), e))
                    .collect();
                let reverse = first.is_some_and(|k| k.reverse);
                // Unstable is enough: ties end in UID order, so no two
                // entries compare equal.
                order.sort_unstable_by(|(pa, a), (pb, b)| {
                    let by_prefix = if reverse { pb.cmp(pa) } else { pa.cmp(pb) };
                    by_prefix.then_with(|| compare(a, b, &keys))
                });
                Ok(order.into_iter().map(|(_, e)| e.uid).collect())
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

/// The stored keys of the messages found (`wanted` parts of them; none
/// at all when `header` is false, for ARRIVAL and SIZE, which the message
/// records hold). A message another session expunged, still in the
/// client's view, sorts as one without header fields, dated 1970.
fn load(
    store: &Store,
    found: &[Found],
    header: bool,
    wanted: Wanted,
) -> Result<Vec<Entry>, StoreError> {
    if found.is_empty() {
        return Ok(Vec::new());
    }
    let content = store.snapshot()?.content()?;
    let mut entries = Vec::with_capacity(found.len());
    for message in found {
        let keys = match message.blob {
            Some(blob) if header => content
                .with_sort_keys(blob, |bytes| SortKeys::decode_some(bytes, wanted))?
                .flatten()
                .unwrap_or_default(),
            _ => SortKeys::default(),
        };
        entries.push(Entry {
            uid: message.uid,
            internal_date: message.internal_date,
            size: message.size,
            keys,
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

/// A number that orders as `field` does where two differ (and is equal
/// where the field's first 16 bytes are): numbers with their sign bit
/// flipped, text as its first 16 bytes, zero-padded, read big-endian.
fn prefix(entry: &Entry, field: SortField) -> u128 {
    let number = |n: i64| u128::from((n as u64) ^ (1 << 63)) << 64;
    let text = |s: &str| {
        let mut bytes = [0u8; 16];
        let n = s.len().min(16);
        bytes[..n].copy_from_slice(&s.as_bytes()[..n]);
        u128::from_be_bytes(bytes)
    };
    match field {
        SortField::Arrival => number(entry.internal_date),
        SortField::Date => number(entry.sent_date()),
        SortField::Size => number(i64::from(entry.size)),
        SortField::Subject => text(&entry.keys.subject),
        SortField::From => text(&entry.keys.from),
        SortField::To => text(&entry.keys.to),
        SortField::Cc => text(&entry.keys.cc),
        SortField::DisplayFrom => text(&entry.keys.display_from),
        SortField::DisplayTo => text(&entry.keys.display_to),
    }
}

/// RFC 5256 §3: key by key, REVERSE turning one key around; messages equal
/// on every key keep mailbox order.
fn compare(a: &Entry, b: &Entry, keys: &[SortKey]) -> Ordering {
    for key in keys {
        let order = match key.field {
            SortField::Arrival => a.internal_date.cmp(&b.internal_date),
            SortField::Date => a.sent_date().cmp(&b.sent_date()),
            SortField::Size => a.size.cmp(&b.size),
            SortField::Subject => a.keys.subject.cmp(&b.keys.subject),
            SortField::From => a.keys.from.cmp(&b.keys.from),
            SortField::To => a.keys.to.cmp(&b.keys.to),
            SortField::Cc => a.keys.cc.cmp(&b.keys.cc),
            SortField::DisplayFrom => a.keys.display_from.cmp(&b.keys.display_from),
            SortField::DisplayTo => a.keys.display_to.cmp(&b.keys.display_to),
        };
        let order = if key.reverse { order.reverse() } else { order };
        if order != Ordering::Equal {
            return order;
        }
    }
    a.uid.cmp(&b.uid)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(uid: u32, date: i64, subject: &str) -> Entry {
        Entry {
            uid,
            internal_date: date,
            size: uid,
            keys: SortKeys {
                subject: subject.into(),
                ..SortKeys::default()
            },
        }
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
            let mut entries: Vec<Entry> = candidates
                .iter()
                .map(|&uid| match stored.iter().find(|m| m.0 == uid) {
                    Some(&(_, subject, date)) => entry(uid, date, subject),
                    None => entry(uid, 0, ""),
                })
                .collect();
            let keys = [SortKey { field, reverse }];
            entries.sort_by(|a, b| compare(a, b, &keys));
            let expected: Vec<u32> = entries.iter().map(|e| e.uid).collect();
            assert_eq!(sorter.finish(), expected, "{field:?} reverse {reverse}");
        }
    }

    #[test]
    fn prefixes_never_contradict_the_full_comparison() {
        let entries = [
            entry(1, -5, ""),
            entry(2, 0, "A"),
            entry(3, i64::MIN, "A\u{0}"),
            entry(4, i64::MAX, "AB"),
            entry(5, 7, "SUBJECT-12345 WEEKLY"),
            entry(6, 7, "SUBJECT-12345 WEEKLZ"),
            entry(7, -1, "\u{10FFFF}"),
        ];
        for field in [SortField::Arrival, SortField::Subject, SortField::Size] {
            let keys = [SortKey {
                field,
                reverse: false,
            }];
            for a in &entries {
                for b in &entries {
                    let (pa, pb) = (prefix(a, field), prefix(b, field));
                    if pa != pb {
                        assert_eq!(
                            pa.cmp(&pb),
                            compare(a, b, &keys),
                            "{field:?} {} {}",
                            a.uid,
                            b.uid
                        );
                    }
                }
            }
        }
    }
}
