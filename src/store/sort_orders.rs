//! Each mailbox's messages in SORT (SUBJECT) and SORT (DATE) order, kept
//! as two tables beside the messages and changed in the same transaction,
//! as Dovecot keeps its sort ids in the mailbox index: a SORT by subject or
//! by date over 100,000 messages is then one range scan in order, with no
//! per-message lookups and no comparisons.
//!
//! The subject order's key is (mailbox, base subject, UID): the base
//! subject as SORT compares it ([`crate::mime::SortKeys::stored_subject`]:
//! RFC 5256 §2.1, `i;unicode-casemap`, as bytes). The date order's is
//! (mailbox, sent date, UID), the sent date being the Date header's, or the
//! INTERNALDATE when there is none (RFC 5256 §3). So redb's order is
//! RFC 5256's, ties in UID order. Neither key of a message ever changes, so
//! its entries are written once, when it enters the mailbox, and removed
//! when it is expunged.

use redb::{ReadableTable, TableDefinition};

use super::verify::Verified;
use super::{
    guarded, BlobId, MailboxId, MessageRecord, Snapshot, StoreError, WriteCtx, MESSAGES, SORT_KEYS,
};
use crate::mime::{SortKeys, Wanted};

pub(super) const SUBJECT_ORDER: TableDefinition<(u64, &[u8], u32), ()> =
    TableDefinition::new("subject_order");
pub(super) const DATE_ORDER: TableDefinition<(u64, i64, u32), ()> =
    TableDefinition::new("date_order");

/// The subject key of a stored sort-keys record; empty when there is none
/// or it does not decode, as such a message sorts as one without a subject.
fn subject_of(record: Option<&[u8]>) -> &[u8] {
    record
        .and_then(SortKeys::stored_subject)
        .unwrap_or_default()
}

/// The date key of a message with this stored sort-keys record and
/// INTERNALDATE: what SORT (DATE) compares.
fn date_of(record: Option<&[u8]>, internal_date: i64) -> i64 {
    record
        .and_then(|bytes| SortKeys::decode_some(bytes, Wanted::NONE))
        .and_then(|keys| keys.date)
        .unwrap_or(internal_date)
}

impl WriteCtx<'_> {
    /// Puts a message that just entered `mailbox` in its sort orders.
    pub(super) fn sort_orders_put(
        &mut self,
        mailbox: MailboxId,
        uid: u32,
        message: &MessageRecord,
    ) -> Result<(), StoreError> {
        let record = self.sort_keys.get(message.blob)?;
        let record = record.as_ref().map(|r| r.value());
        self.subject_order
            .insert((mailbox, subject_of(record), uid), ())?;
        self.date_order
            .insert((mailbox, date_of(record, message.internal_date), uid), ())?;
        Ok(())
    }

    /// Takes an expunged message out of its mailbox's sort orders; call it
    /// while the message's blob is still stored.
    pub(super) fn sort_orders_remove(
        &mut self,
        mailbox: MailboxId,
        uid: u32,
        message: &MessageRecord,
    ) -> Result<(), StoreError> {
        let record = self.sort_keys.get(message.blob)?;
        let record = record.as_ref().map(|r| r.value());
        self.subject_order
            .remove((mailbox, subject_of(record), uid))?;
        self.date_order
            .remove((mailbox, date_of(record, message.internal_date), uid))?;
        Ok(())
    }
}

impl Snapshot {
    /// Calls `visit` with the base subject and UID of each of `mailbox`'s
    /// messages, in SORT (SUBJECT) order: by base subject, then by UID.
    pub fn in_subject_order(
        &self,
        mailbox: MailboxId,
        mut visit: impl FnMut(&[u8], u32),
    ) -> Result<(), StoreError> {
        guarded(|| {
            let table = self.txn.open_table(SUBJECT_ORDER)?;
            for entry in table.range((mailbox, &[][..], 0)..)? {
                let (key, _) = entry?;
                let (owner, subject, uid) = key.value();
                if owner != mailbox {
                    break;
                }
                visit(subject, uid);
            }
            Ok(())
        })
    }

    /// Calls `visit` with the sent date and UID of each of `mailbox`'s
    /// messages, in SORT (DATE) order: by date, then by UID.
    pub fn in_date_order(
        &self,
        mailbox: MailboxId,
        mut visit: impl FnMut(i64, u32),
    ) -> Result<(), StoreError> {
        guarded(|| {
            let table = self.txn.open_table(DATE_ORDER)?;
            for entry in table.range((mailbox, i64::MIN, 0)..=(mailbox, i64::MAX, u32::MAX))? {
                let (key, _) = entry?;
                let (_, date, uid) = key.value();
                visit(date, uid);
            }
            Ok(())
        })
    }
}

/// A message as `verify` lists it for the sort orders: UID, blob and
/// INTERNALDATE, in UID order.
pub(super) type Listed = (u32, BlobId, i64);

impl Snapshot {
    /// For `verify`: `mailbox`'s subject and date orders must each hold each
    /// of its `messages` once, under the key its sort keys give, and
    /// nothing else; SORT would silently leave out or misplace a message
    /// otherwise.
    pub(super) fn verify_sort_orders(
        &self,
        mailbox: MailboxId,
        place: &str,
        messages: &[Listed],
        report: &mut Verified,
    ) -> Result<(), StoreError> {
        let sort_keys = self.txn.open_table(SORT_KEYS)?;
        let record = |i: usize| sort_keys.get(messages[i].1);
        let subjects = self.txn.open_table(SUBJECT_ORDER)?;
        let mut entries = Vec::new();
        for entry in subjects.range((mailbox, &[][..], 0)..)? {
            let (key, _) = entry?;
            let (owner, subject, uid) = key.value();
            if owner != mailbox {
                break;
            }
            entries.push((uid, subject.to_vec()));
        }
        let mut check = OrderCheck::new("subject order", place, messages);
        for (uid, subject) in entries {
            if let Some(i) = check.met(uid, report) {
                let stored = record(i)?;
                let right = subject_of(stored.as_ref().map(|r| r.value())) == subject;
                check.key_right(uid, right, report);
            }
        }
        check.finish(report);

        let dates = self.txn.open_table(DATE_ORDER)?;
        let mut check = OrderCheck::new("date order", place, messages);
        for entry in dates.range((mailbox, i64::MIN, 0)..=(mailbox, i64::MAX, u32::MAX))? {
            let (key, _) = entry?;
            let (_, date, uid) = key.value();
            if let Some(i) = check.met(uid, report) {
                let stored = record(i)?;
                let right = date_of(stored.as_ref().map(|r| r.value()), messages[i].2) == date;
                check.key_right(uid, right, report);
            }
        }
        check.finish(report);
        Ok(())
    }
}

/// What `verify` has met of one sort order, entry by entry.
struct OrderCheck<'a> {
    what: &'static str,
    place: &'a str,
    messages: &'a [Listed],
    met: Vec<bool>,
}

impl<'a> OrderCheck<'a> {
    fn new(what: &'static str, place: &'a str, messages: &'a [Listed]) -> OrderCheck<'a> {
        OrderCheck {
            what,
            place,
            messages,
            met: vec![false; messages.len()],
        }
    }

    /// The message an entry for `uid` stands for, the first time it is met.
    fn met(&mut self, uid: u32, report: &mut Verified) -> Option<usize> {
        let what = self.what;
        let Ok(i) = self.messages.binary_search_by_key(&uid, |m| m.0) else {
            report.problem(
                self.place,
                format!("the {what} holds UID {uid}, not a message"),
            );
            return None;
        };
        if std::mem::replace(&mut self.met[i], true) {
            report.problem(self.place, format!("UID {uid} is in the {what} twice"));
            return None;
        }
        Some(i)
    }

    fn key_right(&self, uid: u32, right: bool, report: &mut Verified) {
        if !right {
            let what = self.what;
            report.problem(
                self.place,
                format!("UID {uid} is in the {what} under another key"),
            );
        }
    }

    fn finish(self, report: &mut Verified) {
        for (message, met) in self.messages.iter().zip(self.met) {
            if !met {
                let (uid, what) = (message.0, self.what);
                report.problem(self.place, format!("UID {uid} is missing from the {what}"));
            }
        }
    }
}

/// Schema 7 → 8: every stored message enters its mailbox's date order,
/// and from 6, its subject order too (`subject`).
pub(super) fn fill_orders(txn: &redb::WriteTransaction, subject: bool) -> Result<(), StoreError> {
    let messages = txn.open_table(MESSAGES)?;
    let sort_keys = txn.open_table(SORT_KEYS)?;
    let mut subjects = txn.open_table(SUBJECT_ORDER)?;
    let mut dates = txn.open_table(DATE_ORDER)?;
    let mut done = 0u64;
    for entry in messages.iter()? {
        let (key, value) = entry?;
        let (mailbox, uid) = key.value();
        let message = MessageRecord::decode(value.value())?;
        let record = sort_keys.get(message.blob)?;
        let record = record.as_ref().map(|r| r.value());
        if subject {
            subjects.insert((mailbox, subject_of(record), uid), ())?;
        }
        dates.insert((mailbox, date_of(record, message.internal_date), uid), ())?;
        done += 1;
    }
    if subject {
        log::info!("store: upgraded the database to schema 7 (subject order of {done} messages)");
    }
    log::info!("store: upgraded the database to schema 8 (date order of {done} messages)");
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::store::testing::{random_batch, temp_store, two_mailboxes, Lcg};
    use crate::store::Store;

    fn problems(store: &Store) -> Vec<String> {
        let verified = store.snapshot().unwrap().verify(&mut |_| {}).unwrap();
        verified.problems.iter().map(|p| p.what.clone()).collect()
    }

    /// Every arrival, copy and expunge keeps the orders: each lists each
    /// mailbox's messages once, by its key then UID, and damage is found.
    #[test]
    fn the_orders_follow_every_change_and_damage_is_found() {
        let (_dir, store) = temp_store();
        let mailboxes = two_mailboxes(&store);
        let mut rng = Lcg(5);
        for _ in 0..6 {
            random_batch(&store, &mailboxes, &mut rng);
            assert_eq!(problems(&store), Vec::<String>::new());
        }
        let snapshot = store.snapshot().unwrap();
        let mut order = Vec::new();
        snapshot
            .in_subject_order(mailboxes[0], |subject, uid| {
                order.push((subject.to_vec(), uid))
            })
            .unwrap();
        assert!(order.len() > 50, "{}", order.len());
        assert!(order.windows(2).all(|w| w[0] < w[1]));
        assert!(order[0].0.is_empty() && !order[order.len() - 1].0.is_empty());
        let mut dates = Vec::new();
        snapshot
            .in_date_order(mailboxes[0], |date, uid| dates.push((date, uid)))
            .unwrap();
        assert_eq!(dates.len(), order.len());
        assert!(dates.windows(2).all(|w| w[0] < w[1]));
        // Both kinds of date: from the Date header, and INTERNALDATE.
        assert!(dates.iter().any(|d| d.0 >= 1_000_000_000));
        assert!(dates.iter().any(|d| d.0 < 1_000_000_000));
        drop(snapshot);

        let (mailbox, first, last) = (mailboxes[0], order[0].1, order[order.len() - 1].1);
        let (dated, date) = (dates[0].1, dates[0].0);
        store
            .write_blocking(move |tx| {
                tx.subject_order.remove((mailbox, &[][..], first))?;
                tx.subject_order.insert((mailbox, &b"ZZZ"[..], first), ())?;
                tx.subject_order.insert((mailbox, &[][..], last), ())?;
                tx.subject_order
                    .insert((mailbox, &[][..], u32::MAX - 1), ())?;
                tx.date_order.remove((mailbox, date, dated))?;
                tx.date_order.insert((mailbox, date + 1, dated), ())?;
                Ok(())
            })
            .unwrap();
        let mut found = problems(&store);
        found.sort();
        let mut expected = vec![
            format!("UID {first} is in the subject order under another key"),
            format!("UID {last} is in the subject order under another key"),
            format!("UID {last} is in the subject order twice"),
            format!(
                "the subject order holds UID {}, not a message",
                u32::MAX - 1
            ),
            format!("UID {dated} is in the date order under another key"),
        ];
        expected.sort();
        assert_eq!(found, expected);
    }

    /// A schema-7 file (the subject order, no date order) gets its date
    /// order on opening, and SORT (DATE) then reads the same order.
    #[test]
    fn schema_7_files_get_their_date_order() {
        let (dir, store) = temp_store();
        let mailboxes = two_mailboxes(&store);
        let mut rng = Lcg(11);
        for _ in 0..4 {
            random_batch(&store, &mailboxes, &mut rng);
        }
        let dates = |store: &Store| {
            let mut dates = Vec::new();
            store
                .snapshot()
                .unwrap()
                .in_date_order(mailboxes[0], |date, uid| dates.push((date, uid)))
                .unwrap();
            dates
        };
        let before = dates(&store);
        assert!(before.len() > 50, "{}", before.len());
        store.shutdown();
        drop(store);

        let path = dir.path().join("t.redb");
        {
            let db = redb::Database::create(&path).unwrap();
            let txn = db.begin_write().unwrap();
            txn.delete_table(super::DATE_ORDER).unwrap();
            txn.open_table(crate::store::META)
                .unwrap()
                .insert("schema_version", 7u32.to_le_bytes().as_slice())
                .unwrap();
            txn.commit().unwrap();
        }
        let (store, _changes) = Store::open(&path, 1 << 20).unwrap();
        assert_eq!(dates(&store), before);
        assert_eq!(problems(&store), Vec::<String>::new());
        let version = store.snapshot().unwrap().schema_version().unwrap();
        assert_eq!(version, crate::store::SCHEMA_VERSION);
    }
}
