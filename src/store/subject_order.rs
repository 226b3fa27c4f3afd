//! Each mailbox's messages in SORT (SUBJECT) order, kept as a table
//! beside the messages and changed in the same transaction, as Dovecot
//! keeps its sort ids in the mailbox index: a SORT by subject over 100,000
//! messages is then one range scan in order, with no per-message lookups
//! and no string comparisons.
//!
//! The key is (mailbox, base subject, UID): the base subject as SORT
//! compares it ([`crate::mime::SortKeys::stored_subject`]: RFC 5256 §2.1,
//! `i;unicode-casemap`, as bytes), so redb's order is RFC 5256's, ties in
//! UID order. A message's subject never changes, so the entry is written
//! once, when the message enters the mailbox, and removed when it is
//! expunged.

use redb::{ReadableTable, TableDefinition};

use super::verify::Verified;
use super::{
    guarded, BlobId, MailboxId, MessageRecord, Snapshot, StoreError, WriteCtx, MESSAGES, SORT_KEYS,
};
use crate::mime::SortKeys;

pub(super) const SUBJECT_ORDER: TableDefinition<(u64, &[u8], u32), ()> =
    TableDefinition::new("subject_order");

/// The subject key of a stored sort-keys record; empty when there is none
/// or it does not decode, as such a message sorts as one without a subject.
fn subject_of(record: Option<&[u8]>) -> &[u8] {
    record
        .and_then(SortKeys::stored_subject)
        .unwrap_or_default()
}

impl WriteCtx<'_> {
    /// A message's key in the subject order, from its stored sort keys.
    fn stored_subject_of(&self, blob: BlobId) -> Result<Vec<u8>, StoreError> {
        let record = self.sort_keys.get(blob)?;
        Ok(subject_of(record.as_ref().map(|r| r.value())).to_vec())
    }

    /// Puts a message that just entered `mailbox` in its subject order.
    pub(super) fn subject_order_put(
        &mut self,
        mailbox: MailboxId,
        uid: u32,
        blob: BlobId,
    ) -> Result<(), StoreError> {
        let subject = self.stored_subject_of(blob)?;
        self.subject_order
            .insert((mailbox, subject.as_slice(), uid), ())?;
        Ok(())
    }

    /// Takes an expunged message out of its mailbox's subject order; call
    /// it while the message's blob is still stored.
    pub(super) fn subject_order_remove(
        &mut self,
        mailbox: MailboxId,
        uid: u32,
        blob: BlobId,
    ) -> Result<(), StoreError> {
        let subject = self.stored_subject_of(blob)?;
        self.subject_order
            .remove((mailbox, subject.as_slice(), uid))?;
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
}

impl Snapshot {
    /// For `verify`: `mailbox`'s subject order must hold each of its
    /// `messages` ((UID, blob), in UID order) once, under the subject its
    /// sort keys give, and nothing else; SORT would silently leave out or
    /// misplace a message otherwise.
    pub(super) fn verify_subject_order(
        &self,
        mailbox: MailboxId,
        place: &str,
        messages: &[(u32, BlobId)],
        report: &mut Verified,
    ) -> Result<(), StoreError> {
        let sort_keys = self.txn.open_table(SORT_KEYS)?;
        let table = self.txn.open_table(SUBJECT_ORDER)?;
        let mut met = vec![false; messages.len()];
        for entry in table.range((mailbox, &[][..], 0)..)? {
            let (key, _) = entry?;
            let (owner, subject, uid) = key.value();
            if owner != mailbox {
                break;
            }
            let Ok(i) = messages.binary_search_by_key(&uid, |m| m.0) else {
                report.problem(
                    place,
                    format!("the subject order holds UID {uid}, not a message"),
                );
                continue;
            };
            if std::mem::replace(&mut met[i], true) {
                report.problem(place, format!("UID {uid} is in the subject order twice"));
                continue;
            }
            let record = sort_keys.get(messages[i].1)?;
            if subject_of(record.as_ref().map(|r| r.value())) != subject {
                report.problem(
                    place,
                    format!("UID {uid} is in the subject order under another subject"),
                );
            }
        }
        for ((uid, _), met) in messages.iter().zip(met) {
            if !met {
                report.problem(
                    place,
                    format!("UID {uid} is missing from the subject order"),
                );
            }
        }
        Ok(())
    }
}

/// Schema 6 → 7: every stored message enters its mailbox's subject order.
pub(super) fn upgrade_to_v7(txn: &redb::WriteTransaction) -> Result<(), StoreError> {
    let messages = txn.open_table(MESSAGES)?;
    let sort_keys = txn.open_table(SORT_KEYS)?;
    let mut order = txn.open_table(SUBJECT_ORDER)?;
    let mut done = 0u64;
    for entry in messages.iter()? {
        let (key, value) = entry?;
        let (mailbox, uid) = key.value();
        let blob = MessageRecord::decode(value.value())?.blob;
        let record = sort_keys.get(blob)?;
        let subject = subject_of(record.as_ref().map(|r| r.value()));
        order.insert((mailbox, subject, uid), ())?;
        done += 1;
    }
    log::info!("store: upgraded the database to schema 7 (subject order of {done} messages)");
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

    /// Every arrival, copy and expunge keeps the order: it lists each
    /// mailbox's messages once, by subject then UID, and damage is found.
    #[test]
    fn the_order_follows_every_change_and_damage_is_found() {
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
        drop(snapshot);

        let (mailbox, first, last) = (mailboxes[0], order[0].1, order[order.len() - 1].1);
        store
            .write_blocking(move |tx| {
                tx.subject_order.remove((mailbox, &[][..], first))?;
                tx.subject_order.insert((mailbox, &b"ZZZ"[..], first), ())?;
                tx.subject_order.insert((mailbox, &[][..], last), ())?;
                tx.subject_order
                    .insert((mailbox, &[][..], u32::MAX - 1), ())?;
                Ok(())
            })
            .unwrap();
        let mut found = problems(&store);
        found.sort();
        let mut expected = vec![
            format!("UID {first} is in the subject order under another subject"),
            format!("UID {last} is in the subject order under another subject"),
            format!("UID {last} is in the subject order twice"),
            format!(
                "the subject order holds UID {}, not a message",
                u32::MAX - 1
            ),
        ];
        expected.sort();
        assert_eq!(found, expected);
    }
}
