//! Keeping the `expunged` table bounded.
//!
//! Every expunge writes a record (mailbox, MODSEQ) → UIDs. Two readers need
//! them: a lazy view (SELECT reads only the mailbox record; the messages are
//! read later, and the UIDs expunged in between are put back from this
//! table so that sequence numbers match what SELECT announced), and a
//! future QRESYNC, whose VANISHED (EARLIER) answers "what went since MODSEQ
//! n". Left alone the table grows with every expunge ever made.
//!
//! What is kept, per mailbox:
//! - every record newer than the oldest MODSEQ an open lazy view still
//!   needs ([`ExpungePin`]): those views cannot work without them;
//! - the newest [`KEEP_RECORDS`] records, up to [`KEEP_UIDS`] UIDs in all
//!   (and always the newest record): the tail a resync can use, as Dovecot
//!   keeps expunges in its transaction log until the log rotates.
//!
//! Older records are deleted by the expunge that pushes them out, in the
//! same transaction, but never records that transaction wrote itself. With
//! [`ExpungeHold`] that makes the pins airtight: a view's snapshot sees
//! every record committed before a pruning transaction began, so what such
//! a transaction may prune is at or below the view's MODSEQ. The highest MODSEQ deleted so far is kept in `meta`
//! (`expunge_horizon/<mailbox>`): below it the table is incomplete, so a
//! resync from an older MODSEQ must fall back to a full UID comparison
//! (RFC 7162 §3.2.5.2 lets the server send VANISHED for UIDs the client
//! names even if they were not known expunged).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use redb::ReadableTable;

use super::{MailboxId, StoreError, WriteCtx};

/// Expunge records kept per mailbox beyond what open views need.
pub const KEEP_RECORDS: usize = 1024;
/// UIDs those records may hold in all, so that a few mass expunges cannot
/// make the tail large; the newest record is kept whatever its size.
pub const KEEP_UIDS: u64 = 100_000;

/// The MODSEQs open lazy views still need records after, per mailbox.
/// Shared by the event loop (which pins) and the writer (which prunes).
#[derive(Default)]
pub struct ExpungePins {
    state: Mutex<PinState>,
}

#[derive(Default)]
struct PinState {
    /// While above zero, nothing is pruned anywhere: a SELECT is between
    /// taking its snapshot and pinning what it read there.
    holds: usize,
    /// mailbox → (MODSEQ → how many views are pinned at it).
    pins: HashMap<MailboxId, BTreeMap<u64, usize>>,
}

impl ExpungePins {
    fn lock(&self) -> MutexGuard<'_, PinState> {
        // A panic while holding this lock leaves counts that are still
        // consistent (each change is one insert or remove): go on.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records with a MODSEQ at or below this may be pruned from `mailbox`
    /// as far as open views go; None: none may be, for now.
    fn floor(&self, mailbox: MailboxId) -> Option<u64> {
        let state = self.lock();
        if state.holds > 0 {
            return None;
        }
        let oldest = state
            .pins
            .get(&mailbox)
            .and_then(|pins| pins.keys().next().copied());
        Some(oldest.unwrap_or(u64::MAX))
    }
}

/// Stops all pruning while held. Take it before the snapshot a view is
/// opened from, and drop it once the view holds its [`ExpungePin`]: a
/// prune committed in between could otherwise remove records the view
/// needs, before the writer knew of it.
pub struct ExpungeHold {
    pins: Arc<ExpungePins>,
}

impl ExpungeHold {
    pub(super) fn new(pins: &Arc<ExpungePins>) -> ExpungeHold {
        pins.lock().holds += 1;
        ExpungeHold { pins: pins.clone() }
    }

    /// Keeps the records of `mailbox` newer than `modseq` until dropped.
    pub fn pin(&self, mailbox: MailboxId, modseq: u64) -> ExpungePin {
        *self
            .pins
            .lock()
            .pins
            .entry(mailbox)
            .or_default()
            .entry(modseq)
            .or_default() += 1;
        ExpungePin {
            pins: self.pins.clone(),
            mailbox,
            modseq,
        }
    }
}

impl Drop for ExpungeHold {
    fn drop(&mut self) {
        let mut state = self.pins.lock();
        state.holds = state.holds.saturating_sub(1);
    }
}

/// An open view's claim on a mailbox's expunge records newer than a MODSEQ.
pub struct ExpungePin {
    pins: Arc<ExpungePins>,
    mailbox: MailboxId,
    modseq: u64,
}

impl Drop for ExpungePin {
    fn drop(&mut self) {
        let mut state = self.pins.lock();
        let Some(pins) = state.pins.get_mut(&self.mailbox) else {
            return;
        };
        if let Some(count) = pins.get_mut(&self.modseq) {
            *count -= 1;
            if *count == 0 {
                pins.remove(&self.modseq);
            }
        }
        if pins.is_empty() {
            state.pins.remove(&self.mailbox);
        }
    }
}

/// The `meta` key of a mailbox's horizon.
pub(super) fn horizon_key(mailbox: MailboxId) -> String {
    format!("expunge_horizon/{mailbox}")
}

/// How many UIDs a stored record holds, from its length (see
/// `records::encode_uids`: a version byte, then four bytes per UID).
fn uid_count(record: &[u8]) -> u64 {
    (record.len().saturating_sub(1) / 4) as u64
}

impl WriteCtx<'_> {
    /// Deletes the records of `mailbox` that neither the tail nor an open
    /// view needs (see the module comment), oldest first, and moves the
    /// horizon up past them.
    pub(super) fn prune_expunged(&mut self, mailbox: MailboxId) -> Result<(), StoreError> {
        self.prune_expunged_to(mailbox, KEEP_RECORDS, KEEP_UIDS)
    }

    fn prune_expunged_to(
        &mut self,
        mailbox: MailboxId,
        keep_records: usize,
        keep_uids: u64,
    ) -> Result<(), StoreError> {
        let Some(floor) = self.expunge_pins.floor(mailbox) else {
            return Ok(());
        };
        let fresh = self
            .first_expunge_of_batch
            .get(&mailbox)
            .copied()
            .unwrap_or(u64::MAX);
        let floor = floor.min(fresh.saturating_sub(1));
        let mut records = 0;
        let mut uids = 0;
        let mut doomed = Vec::new();
        for entry in self
            .expunged
            .range((mailbox, 0)..=(mailbox, u64::MAX))?
            .rev()
        {
            let (key, value) = entry?;
            let modseq = key.value().1;
            records += 1;
            uids += uid_count(value.value());
            let in_tail = records == 1 || (records <= keep_records && uids <= keep_uids);
            if !in_tail && modseq <= floor {
                doomed.push(modseq);
            }
        }
        let Some(&horizon) = doomed.first() else {
            return Ok(());
        };
        for modseq in &doomed {
            self.expunged.remove((mailbox, *modseq))?;
        }
        self.meta.insert(
            horizon_key(mailbox).as_str(),
            horizon.to_le_bytes().as_slice(),
        )?;
        Ok(())
    }
}

/// Reads a horizon value from `meta` (0: nothing was ever pruned).
pub(super) fn decode_horizon(bytes: Option<&[u8]>) -> Result<u64, StoreError> {
    match bytes {
        None => Ok(0),
        Some(b) => b
            .try_into()
            .map(u64::from_le_bytes)
            .map_err(|_| StoreError::Corrupt("expunge horizon".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing::temp_store;
    use crate::store::{Analysis, DeliveryTarget, Store};

    /// A mailbox with `n` messages, UIDs 1..=n.
    fn mailbox_of(store: &Store, n: usize) -> MailboxId {
        let targets = vec![
            DeliveryTarget {
                user: "alice".into(),
                folder: None,
            };
            n
        ];
        store
            .write_blocking(move |tx| tx.deliver(b"x", &Analysis::default(), (0, 0), &targets))
            .unwrap()[0]
            .mailbox
    }

    fn expunge(store: &Store, mailbox: MailboxId, uids: Vec<u32>) {
        store
            .write_blocking(move |tx| tx.expunge(mailbox, &uids))
            .unwrap();
    }

    fn records(store: &Store, mailbox: MailboxId) -> Vec<u32> {
        store
            .snapshot()
            .unwrap()
            .expunged_since(mailbox, 0)
            .unwrap()
    }

    #[test]
    fn many_expunges_keep_a_bounded_tail_and_the_horizon_says_where_it_starts() {
        let (_dir, store) = temp_store();
        let inbox = mailbox_of(&store, KEEP_RECORDS + 300);
        // One batch writes 1,299 records and prunes none of them: a batch
        // never prunes what it wrote itself.
        store
            .write_blocking(move |tx| {
                for uid in 1..KEEP_RECORDS as u32 + 300 {
                    tx.expunge(inbox, &[uid])?;
                }
                Ok(())
            })
            .unwrap();
        assert_eq!(records(&store, inbox).len(), KEEP_RECORDS + 299);
        // The next expunge prunes down to the tail.
        expunge(&store, inbox, vec![KEEP_RECORDS as u32 + 300]);
        let kept = records(&store, inbox);
        assert_eq!(kept.len(), KEEP_RECORDS, "one UID per record");
        assert_eq!(kept[0], 301, "the newest ones are kept");
        let snapshot = store.snapshot().unwrap();
        let horizon = snapshot.expunge_horizon(inbox).unwrap();
        let highest = snapshot.mailbox(inbox).unwrap().unwrap().highest_modseq;
        assert_eq!(
            snapshot.expunged_since(inbox, horizon).unwrap().len(),
            KEEP_RECORDS,
            "complete from the horizon on"
        );
        assert!(horizon < highest);
        store.shutdown();
    }

    #[test]
    fn the_uid_bound_and_the_newest_record_and_pins() {
        let (_dir, store) = temp_store();
        let inbox = mailbox_of(&store, 40);
        let prune = |keep_records: usize, keep_uids: u64| {
            store
                .write_blocking(move |tx| tx.prune_expunged_to(inbox, keep_records, keep_uids))
                .unwrap()
        };
        expunge(&store, inbox, (1..=10).collect());
        expunge(&store, inbox, (11..=20).collect());
        expunge(&store, inbox, (21..=30).collect());
        // 25 UIDs allowed: the two newest records hold 20, the third would
        // make 30.
        prune(100, 25);
        assert_eq!(records(&store, inbox), (11..=30).collect::<Vec<_>>());
        // The newest record stays, however big.
        prune(100, 5);
        assert_eq!(records(&store, inbox), (21..=30).collect::<Vec<_>>());
        let h_before = store
            .snapshot()
            .unwrap()
            .mailbox(inbox)
            .unwrap()
            .unwrap()
            .highest_modseq;

        // A view pinned at the current MODSEQ keeps every later record;
        // once it lets go, they may go.
        let hold = store.hold_expunges();
        prune(0, 0);
        assert_eq!(records(&store, inbox).len(), 10, "a hold stops pruning");
        let pin = hold.pin(inbox, h_before);
        drop(hold);
        expunge(&store, inbox, (31..=35).collect());
        expunge(&store, inbox, (36..=40).collect());
        prune(1, 0);
        assert_eq!(
            records(&store, inbox),
            (31..=40).collect::<Vec<_>>(),
            "what the view needs is kept, what it does not is pruned"
        );
        drop(pin);
        prune(1, 0);
        assert_eq!(records(&store, inbox), (36..=40).collect::<Vec<_>>());

        // Deleting a mailbox forgets its records and its horizon.
        let gone = store
            .write_blocking(|tx| {
                tx.create_mailbox("alice", "Gone", None)?;
                let target = DeliveryTarget {
                    user: "alice".into(),
                    folder: Some("Gone".into()),
                };
                tx.deliver(
                    b"x",
                    &Analysis::default(),
                    (0, 0),
                    &[target.clone(), target],
                )
            })
            .unwrap()[0]
            .mailbox;
        let first = store.snapshot().unwrap().messages(gone).unwrap()[0].0;
        expunge(&store, gone, vec![first]);
        expunge(&store, gone, vec![first + 1]);
        store
            .write_blocking(move |tx| tx.prune_expunged_to(gone, 1, 0))
            .unwrap();
        let snapshot = store.snapshot().unwrap();
        assert!(snapshot.expunge_horizon(gone).unwrap() > 0);
        assert_eq!(snapshot.expunged_since(gone, 0).unwrap(), [first + 1]);
        store
            .write_blocking(|tx| tx.delete_mailbox("alice", "Gone"))
            .unwrap();
        assert_eq!(store.snapshot().unwrap().expunge_horizon(gone).unwrap(), 0);
        store.shutdown();
    }
}
