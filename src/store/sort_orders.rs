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

/// Both orders are keyed (mailbox, key as bytes, UID): one key type, so
/// redb's B-tree code is built once for both.
type OrderTable = TableDefinition<'static, (u64, &'static [u8], u32), ()>;

pub(super) const SUBJECT_ORDER: OrderTable = TableDefinition::new("subject_order");
pub(super) const DATE_ORDER: OrderTable = TableDefinition::new("date_order");

/// The orders the store keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoredOrder {
    Subject,
    Date,
}

impl StoredOrder {
    const ALL: [StoredOrder; 2] = [StoredOrder::Subject, StoredOrder::Date];

    fn table(self) -> OrderTable {
        match self {
            StoredOrder::Subject => SUBJECT_ORDER,
            StoredOrder::Date => DATE_ORDER,
        }
    }

    /// The schema that brought the order in: an older file (a backup
    /// being verified) has no table for it yet.
    fn since(self) -> u32 {
        match self {
            StoredOrder::Subject => 7,
            StoredOrder::Date => 8,
        }
    }

    fn name(self) -> &'static str {
        match self {
            StoredOrder::Subject => "subject order",
            StoredOrder::Date => "date order",
        }
    }

    /// A message's key in this order, from its stored sort-keys record and
    /// INTERNALDATE (`date` holds a date key). The subject key is empty
    /// when there is no record or it does not decode, as such a message
    /// sorts as one without header fields.
    fn key_of<'a>(
        self,
        record: Option<&'a [u8]>,
        internal_date: i64,
        date: &'a mut [u8; 8],
    ) -> &'a [u8] {
        match self {
            StoredOrder::Subject => record
                .and_then(SortKeys::stored_subject)
                .unwrap_or_default(),
            StoredOrder::Date => {
                let sent = record
                    .and_then(|bytes| SortKeys::decode_some(bytes, Wanted::NONE))
                    .and_then(|keys| keys.date);
                *date = date_key(sent.unwrap_or(internal_date));
                date
            }
        }
    }
}

/// A date as bytes that order as the dates do: big-endian, sign bit
/// flipped. Never empty, so no date sorts with the missing subjects.
pub fn date_key(date: i64) -> [u8; 8] {
    ((date as u64) ^ (1 << 63)).to_be_bytes()
}

impl WriteCtx<'_> {
    /// Puts a message that just entered `mailbox` in its sort orders
    /// (`add`), or takes an expunged one out (call that while the message's
    /// blob is still stored).
    pub(super) fn sort_orders_change(
        &mut self,
        mailbox: MailboxId,
        uid: u32,
        message: &MessageRecord,
        add: bool,
    ) -> Result<(), StoreError> {
        let record = self.sort_keys.get(message.blob)?;
        let record = record.as_ref().map(|r| r.value());
        for order in StoredOrder::ALL {
            let mut date = [0; 8];
            let key = (
                mailbox,
                order.key_of(record, message.internal_date, &mut date),
                uid,
            );
            let table = match order {
                StoredOrder::Subject => &mut self.subject_order,
                StoredOrder::Date => &mut self.date_order,
            };
            if add {
                table.insert(key, ())?;
            } else {
                table.remove(key)?;
            }
        }
        Ok(())
    }
}

impl Snapshot {
    /// Calls `visit` with the key and UID of each of `mailbox`'s messages,
    /// in the order's order: by key (base subject, or [`date_key`] of the
    /// sent date), then by UID.
    pub fn in_order(
        &self,
        order: StoredOrder,
        mailbox: MailboxId,
        mut visit: impl FnMut(&[u8], u32),
    ) -> Result<(), StoreError> {
        guarded(|| {
            let table = self.txn.open_table(order.table())?;
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
}

/// A message as `verify` lists it for the sort orders: UID, blob and
/// INTERNALDATE, in UID order.
pub(super) type Listed = (u32, BlobId, i64);

impl Snapshot {
    /// For `verify`: each of `mailbox`'s sort orders must hold each of its
    /// `messages` once, under the key its sort keys give, and nothing else;
    /// SORT would silently leave out or misplace a message otherwise.
    pub(super) fn verify_sort_orders(
        &self,
        mailbox: MailboxId,
        place: &str,
        messages: &[Listed],
        report: &mut Verified,
    ) -> Result<(), StoreError> {
        let sort_keys = self.txn.open_table(SORT_KEYS)?;
        let schema = self.schema_version()?;
        for order in StoredOrder::ALL.into_iter().filter(|o| o.since() <= schema) {
            let what = order.name();
            let mut entries = Vec::new();
            self.in_order(order, mailbox, |key, uid| entries.push((key.to_vec(), uid)))?;
            let mut met = vec![false; messages.len()];
            for (key, uid) in entries {
                let Ok(i) = messages.binary_search_by_key(&uid, |m| m.0) else {
                    report.problem(place, format!("the {what} holds UID {uid}, not a message"));
                    continue;
                };
                if std::mem::replace(&mut met[i], true) {
                    report.problem(place, format!("UID {uid} is in the {what} twice"));
                    continue;
                }
                let record = sort_keys.get(messages[i].1)?;
                let mut date = [0; 8];
                let record = record.as_ref().map(|r| r.value());
                if order.key_of(record, messages[i].2, &mut date) != key.as_slice() {
                    report.problem(
                        place,
                        format!("UID {uid} is in the {what} under another key"),
                    );
                }
            }
            for ((uid, ..), met) in messages.iter().zip(met) {
                if !met {
                    report.problem(place, format!("UID {uid} is missing from the {what}"));
                }
            }
        }
        Ok(())
    }
}

/// Schema 7 → 8: every stored message enters its mailbox's date order,
/// and from 6, its subject order too (`subject`).
pub(super) fn fill_orders(txn: &redb::WriteTransaction, subject: bool) -> Result<(), StoreError> {
    let orders: &[StoredOrder] = if subject {
        &StoredOrder::ALL
    } else {
        &[StoredOrder::Date]
    };
    let messages = txn.open_table(MESSAGES)?;
    let sort_keys = txn.open_table(SORT_KEYS)?;
    let mut tables = Vec::new();
    for order in orders {
        tables.push(txn.open_table(order.table())?);
    }
    let mut done = 0u64;
    for entry in messages.iter()? {
        let (key, value) = entry?;
        let (mailbox, uid) = key.value();
        let message = MessageRecord::decode(value.value())?;
        let record = sort_keys.get(message.blob)?;
        let record = record.as_ref().map(|r| r.value());
        for (order, table) in orders.iter().zip(&mut tables) {
            let mut date = [0; 8];
            let key = order.key_of(record, message.internal_date, &mut date);
            table.insert((mailbox, key, uid), ())?;
        }
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
    use super::{date_key, StoredOrder};
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
            .in_order(StoredOrder::Subject, mailboxes[0], |subject, uid| {
                order.push((subject.to_vec(), uid))
            })
            .unwrap();
        assert!(order.len() > 50, "{}", order.len());
        assert!(order.windows(2).all(|w| w[0] < w[1]));
        assert!(order[0].0.is_empty() && !order[order.len() - 1].0.is_empty());
        let mut dates = Vec::new();
        snapshot
            .in_order(StoredOrder::Date, mailboxes[0], |date, uid| {
                dates.push((date.to_vec(), uid))
            })
            .unwrap();
        assert_eq!(dates.len(), order.len());
        assert!(dates.windows(2).all(|w| w[0] < w[1]));
        // Both kinds of date: from the Date header, and INTERNALDATE.
        let header_dated = date_key(1_000_000_000).to_vec();
        assert!(dates.iter().any(|d| d.0 >= header_dated));
        assert!(dates.iter().any(|d| d.0 < header_dated));
        drop(snapshot);

        let (mailbox, first, last) = (mailboxes[0], order[0].1, order[order.len() - 1].1);
        let (dated, date) = (dates[0].1, dates[0].0.clone());
        let later = date_key(i64::from_be_bytes(date.clone().try_into().unwrap()) + 1);
        store
            .write_blocking(move |tx| {
                tx.subject_order.remove((mailbox, &[][..], first))?;
                tx.subject_order.insert((mailbox, &b"ZZZ"[..], first), ())?;
                tx.subject_order.insert((mailbox, &[][..], last), ())?;
                tx.subject_order
                    .insert((mailbox, &[][..], u32::MAX - 1), ())?;
                tx.date_order.remove((mailbox, date.as_slice(), dated))?;
                tx.date_order.insert((mailbox, &later[..], dated), ())?;
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
                .in_order(StoredOrder::Date, mailboxes[0], |date, uid| {
                    dates.push((date.to_vec(), uid))
                })
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
