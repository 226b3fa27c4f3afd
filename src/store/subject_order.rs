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

use super::{
    guarded, MailboxId, MessageRecord, Snapshot, StoreError, WriteCtx, MESSAGES, SORT_KEYS,
};
use crate::mime::SortKeys;
use crate::store::BlobId;

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
    /// Puts a message that just entered `mailbox` in its subject order.
    pub(super) fn subject_order_put(
        &mut self,
        mailbox: MailboxId,
        uid: u32,
        blob: BlobId,
    ) -> Result<(), StoreError> {
        let record = self.sort_keys.get(blob)?;
        let subject = subject_of(record.as_ref().map(|r| r.value()));
        self.subject_order.insert((mailbox, subject, uid), ())?;
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
        let record = self.sort_keys.get(blob)?;
        let subject = subject_of(record.as_ref().map(|r| r.value()));
        self.subject_order.remove((mailbox, subject, uid))?;
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
