//! Quota usage (RFC 9208's STORAGE and MESSAGE resources), one quota root per
//! user.
//!
//! Each user's usage is a small record in `quota_usage`, changed by
//! [`WriteCtx::append`] and [`WriteCtx::expunge`] in the same transaction as
//! the messages themselves, so it is never recounted and never drifts: every
//! way mail comes or goes (delivery, APPEND, COPY, MOVE, EXPUNGE, DELETE of a
//! mailbox, RENAME of INBOX) goes through those two.
//!
//! As in Dovecot, a message counts its full size in every mailbox that holds
//! it, even when two copies share one stored blob: the user sees each copy,
//! and deleting one frees it from the quota, whatever the store shares.
//!
//! The limits are not stored: they come from the server's flags and the users
//! file, and the caller hands them to each checked write ([`QuotaCheck`]).
//! The check runs inside the writer's transaction, against usage that
//! includes every earlier job of the batch, so concurrent deliveries cannot
//! overshoot a limit at all.

use std::collections::HashMap;
use std::sync::Arc;

use redb::{ReadableTable, TableDefinition};

use super::ops::{Analysis, Delivered, DeliveryTarget};
use super::records::{Decoder, Encoder, Flags, MailboxRecord, MessageRecord};
use super::{
    guarded, MailboxId, Snapshot, StoreError, WriteCtx, MAILBOXES, MESSAGES, MESSAGE_INDEX,
};

/// user → [`Usage`], in the record layout below.
pub(super) const QUOTA_USAGE: TableDefinition<&str, &[u8]> = TableDefinition::new("quota_usage");

const USAGE_V1: u8 = 1;

/// The share of a limit at which the user is told, once, that the mailbox is
/// filling up.
pub const WARN_PERCENT: u64 = 90;

const NOTIFIED_STORAGE: u8 = 1;
const NOTIFIED_MESSAGES: u8 = 2;

/// A user's limits; None is no limit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QuotaLimits {
    /// Bytes.
    pub storage: Option<u64>,
    pub messages: Option<u64>,
}

impl QuotaLimits {
    pub fn is_unlimited(&self) -> bool {
        self.storage.is_none() && self.messages.is_none()
    }
}

/// What a user's mail takes, and which 90% notices they have had.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// Bytes: the sum of every message's size, each copy counted.
    pub storage: u64,
    pub messages: u64,
    /// NOTIFIED_* bits: kept with the usage, so a restart does not send
    /// the notice again.
    notified: u8,
}

impl Usage {
    fn encode(&self) -> Vec<u8> {
        let mut e = Encoder(Vec::with_capacity(18));
        e.u8(USAGE_V1);
        e.u64(self.storage);
        e.u64(self.messages);
        e.u8(self.notified);
        e.0
    }

    fn decode(bytes: &[u8]) -> Result<Usage, StoreError> {
        let mut d = Decoder(bytes);
        let usage = (|| {
            if d.u8()? != USAGE_V1 {
                return None;
            }
            Some(Usage {
                storage: d.u64()?,
                messages: d.u64()?,
                notified: d.u8()?,
            })
        })();
        usage.ok_or_else(|| StoreError::Corrupt("quota usage record".into()))
    }
}

/// Each user's stored usage, or why it could not be read.
pub(super) type KeptUsage = Vec<(String, Result<Usage, StoreError>)>;

/// Makes the short message that tells a user their mail has passed 90% of a
/// limit: its bytes and their analysis. Made by the caller, since the store
/// knows nothing of MIME; called inside the writer's transaction.
pub type NoticeMaker = Arc<dyn Fn(&str, &Usage, &QuotaLimits) -> (Vec<u8>, Analysis) + Send + Sync>;

/// What a checked write needs to know about one user's quota.
#[derive(Clone, Default)]
pub struct QuotaCheck {
    pub limits: QuotaLimits,
    /// None: no notice is delivered.
    pub notice: Option<NoticeMaker>,
}

impl QuotaCheck {
    pub fn new(limits: QuotaLimits, notice: Option<NoticeMaker>) -> QuotaCheck {
        QuotaCheck { limits, notice }
    }
}

fn at_warning(used: u64, limit: u64) -> bool {
    u128::from(used) * 100 >= u128::from(limit) * u128::from(WARN_PERCENT)
}

impl WriteCtx<'_> {
    /// A user's usage as this transaction sees it.
    pub fn usage(&self, user: &str) -> Result<Usage, StoreError> {
        match self.quota_usage.get(user)? {
            Some(v) => Usage::decode(v.value()),
            None => Ok(Usage::default()),
        }
    }

    fn save_usage(&mut self, user: &str, usage: &Usage) -> Result<(), StoreError> {
        self.quota_usage.insert(user, usage.encode().as_slice())?;
        Ok(())
    }

    /// Counts a message in or out of its owner's usage; called by every
    /// write that adds or removes a message.
    pub(super) fn count_usage(
        &mut self,
        user: &str,
        bytes: u64,
        messages: u64,
        adding: bool,
    ) -> Result<(), StoreError> {
        if bytes == 0 && messages == 0 {
            return Ok(());
        }
        let mut usage = self.usage(user)?;
        if adding {
            usage.storage = usage.storage.saturating_add(bytes);
            usage.messages = usage.messages.saturating_add(messages);
        } else {
            usage.storage = usage.storage.saturating_sub(bytes);
            usage.messages = usage.messages.saturating_sub(messages);
        }
        self.save_usage(user, &usage)
    }

    /// Whether `user` may add `messages` messages of `bytes` bytes in all:
    /// [`StoreError::OverQuota`] when that would take them past a limit,
    /// with nothing changed. When they may, also re-arms the 90% notice of
    /// a resource that is back below 90% (after expunges, or a raised
    /// limit), so that the next crossing is told.
    pub fn quota_room(
        &mut self,
        user: &str,
        limits: &QuotaLimits,
        bytes: u64,
        messages: u64,
    ) -> Result<(), StoreError> {
        if limits.is_unlimited() {
            return Ok(());
        }
        let mut usage = self.usage(user)?;
        let mut notified = usage.notified;
        if limits.storage.is_none_or(|l| !at_warning(usage.storage, l)) {
            notified &= !NOTIFIED_STORAGE;
        }
        if limits
            .messages
            .is_none_or(|l| !at_warning(usage.messages, l))
        {
            notified &= !NOTIFIED_MESSAGES;
        }
        if let Some(limit) = limits.storage {
            if usage.storage.saturating_add(bytes) > limit {
                return Err(StoreError::OverQuota(format!(
                    "Mailbox full: {} of {} KiB used, and this needs {} KiB more",
                    usage.storage.div_ceil(1024),
                    limit / 1024,
                    bytes.div_ceil(1024)
                )));
            }
        }
        if let Some(limit) = limits.messages {
            if usage.messages.saturating_add(messages) > limit {
                return Err(StoreError::OverQuota(format!(
                    "Mailbox full: {} of {limit} messages",
                    usage.messages
                )));
            }
        }
        // Only now: an error must leave the store as it was (writer.rs).
        if notified != usage.notified {
            usage.notified = notified;
            self.save_usage(user, &usage)?;
        }
        Ok(())
    }

    /// After a checked write: the first time a limit is 90% used, one
    /// notice goes into the user's INBOX, and the crossing is remembered
    /// with the usage. The notice itself is never refused for quota (it is
    /// a few hundred bytes, and the user must hear). A failure here is
    /// logged, not returned: the write it follows is already done.
    pub fn quota_notice(&mut self, user: &str, check: &QuotaCheck) {
        if let Err(e) = self.try_quota_notice(user, check) {
            log::error!("store: cannot deliver the quota notice to {user}: {e}");
        }
    }

    fn try_quota_notice(&mut self, user: &str, check: &QuotaCheck) -> Result<(), StoreError> {
        let Some(maker) = &check.notice else {
            return Ok(());
        };
        let limits = &check.limits;
        let mut usage = self.usage(user)?;
        let mut crossed = 0;
        if limits.storage.is_some_and(|l| at_warning(usage.storage, l)) {
            crossed |= NOTIFIED_STORAGE;
        }
        if limits
            .messages
            .is_some_and(|l| at_warning(usage.messages, l))
        {
            crossed |= NOTIFIED_MESSAGES;
        }
        let new = crossed & !usage.notified;
        if new == 0 {
            return Ok(());
        }
        usage.notified |= new;
        self.save_usage(user, &usage)?;
        let (raw, analysis) = maker(user, &usage, limits);
        let inbox = self.ensure_user(user)?;
        let now = super::now_unix();
        self.append_message(
            inbox,
            &raw,
            &analysis,
            Flags::default(),
            Vec::new(),
            (now, 0),
        )?;
        log::info!("store: {user} passed {WARN_PERCENT}% of a quota limit; notice delivered");
        Ok(())
    }

    /// The bytes and number of the messages of `uids` that exist in
    /// `mailbox`: what copying them adds to the quota.
    pub fn messages_size(
        &self,
        mailbox: MailboxId,
        uids: &[u32],
    ) -> Result<(u64, u64), StoreError> {
        let (mut bytes, mut count) = (0u64, 0u64);
        for &uid in uids {
            if let Some(v) = self.messages.get((mailbox, uid))? {
                bytes += u64::from(MessageRecord::decode(v.value())?.size);
                count += 1;
            }
        }
        Ok((bytes, count))
    }

    /// [`WriteCtx::deliver`] with each target's quota checked: a target over
    /// quota gets [`StoreError::OverQuota`] and the others still get the
    /// message. `checks` goes with `targets`, one each. The bytes are stored
    /// only if some target takes them.
    pub fn deliver_checked(
        &mut self,
        raw: &[u8],
        analysis: &Analysis,
        internal_date: (i64, i16),
        targets: &[DeliveryTarget],
        checks: &[QuotaCheck],
    ) -> Result<Vec<Result<Delivered, StoreError>>, StoreError> {
        let size = u32::try_from(raw.len())
            .map_err(|_| StoreError::Storage("message larger than 4 GiB".into()))?;
        let mut blob = None;
        let mut out = Vec::with_capacity(targets.len());
        let unlimited = QuotaCheck::default();
        for (i, target) in targets.iter().enumerate() {
            let check = checks.get(i).unwrap_or(&unlimited);
            if let Err(e) = self.quota_room(&target.user, &check.limits, u64::from(size), 1) {
                out.push(Err(e));
                continue;
            }
            let blob = match blob {
                Some(blob) => blob,
                None => *blob.insert(self.put_blob(raw, analysis)?),
            };
            let delivered = self.deliver_one(blob, size, internal_date, target)?;
            self.quota_notice(&target.user, check);
            out.push(Ok(delivered));
        }
        Ok(out)
    }
}

impl Snapshot {
    /// A user's usage (nothing, for a user with no mail yet).
    pub fn usage(&self, user: &str) -> Result<Usage, StoreError> {
        guarded(|| {
            let table = self.txn.open_table(QUOTA_USAGE)?;
            let found = table.get(user)?;
            match found {
                Some(v) => Usage::decode(v.value()),
                None => Ok(Usage::default()),
            }
        })
    }

    /// The bytes EXPUNGE would free in a mailbox (STATUS DELETED-STORAGE):
    /// the sizes of its messages marked \Deleted. Reads the message index
    /// and then only the \Deleted messages' records, and nothing at all when
    /// the mailbox's running total says none is marked.
    pub fn deleted_storage(
        &self,
        mailbox: MailboxId,
        record: &MailboxRecord,
    ) -> Result<u64, StoreError> {
        if record.deleted == 0 {
            return Ok(0);
        }
        guarded(|| {
            let chunks = self.txn.open_table(MESSAGE_INDEX)?;
            let messages = self.txn.open_table(MESSAGES)?;
            let mut doomed = Vec::new();
            for entry in chunks.range((mailbox, 0)..=(mailbox, u32::MAX))? {
                let (key, value) = entry?;
                let chunk = super::ChunkRef::parse(key.value().1, value.value())?;
                doomed.extend(
                    chunk
                        .uids()
                        .zip(chunk.flags())
                        .filter(|(_, f)| f.contains(Flags::DELETED))
                        .map(|(uid, _)| uid),
                );
            }
            let mut bytes = 0u64;
            for uid in doomed {
                if let Some(v) = messages.get((mailbox, uid))? {
                    bytes += u64::from(MessageRecord::decode(v.value())?.size);
                }
            }
            Ok(bytes)
        })
    }

    /// Every stored usage record, user by user (users with no record have
    /// never had mail).
    pub(super) fn kept_usage(&self) -> Result<KeptUsage, StoreError> {
        let table = self.txn.open_table(QUOTA_USAGE)?;
        let mut out = Vec::new();
        for entry in table.iter()? {
            let (user, value) = entry?;
            out.push((user.value().to_string(), Usage::decode(value.value())));
        }
        Ok(out)
    }
}

/// Sums each owner's messages: (bytes, count) per user.
fn recount(
    mailboxes: &impl ReadableTable<u64, &'static [u8]>,
    messages: &impl ReadableTable<(u64, u32), &'static [u8]>,
) -> Result<HashMap<String, (u64, u64)>, StoreError> {
    let mut owners: HashMap<MailboxId, String> = HashMap::new();
    for entry in mailboxes.iter()? {
        let (id, value) = entry?;
        owners.insert(id.value(), MailboxRecord::decode(value.value())?.owner);
    }
    let mut totals: HashMap<String, (u64, u64)> = HashMap::new();
    for entry in messages.iter()? {
        let (key, value) = entry?;
        let Some(owner) = owners.get(&key.value().0) else {
            continue;
        };
        let size = MessageRecord::decode(value.value())?.size;
        let total = totals.entry(owner.clone()).or_default();
        total.0 += u64::from(size);
        total.1 += 1;
    }
    Ok(totals)
}

/// Schema 4 → 5: counts every user's usage once, from the messages.
pub(super) fn upgrade_to_v5(txn: &redb::WriteTransaction) -> Result<(), StoreError> {
    let totals = {
        let mailboxes = txn.open_table(MAILBOXES)?;
        let messages = txn.open_table(MESSAGES)?;
        recount(&mailboxes, &messages)?
    };
    let mut table = txn.open_table(QUOTA_USAGE)?;
    for (user, (storage, messages)) in &totals {
        let usage = Usage {
            storage: *storage,
            messages: *messages,
            notified: 0,
        };
        table.insert(user.as_str(), usage.encode().as_slice())?;
    }
    log::info!(
        "store: upgraded the database to schema 5 (quota usage counted for {} users)",
        totals.len()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing::temp_store;

    fn to(user: &str) -> DeliveryTarget {
        DeliveryTarget {
            user: user.into(),
            folder: None,
        }
    }

    fn limits(storage: Option<u64>, messages: Option<u64>) -> QuotaCheck {
        QuotaCheck::new(QuotaLimits { storage, messages }, None)
    }

    #[test]
    fn usage_follows_every_change_and_each_copy_counts() {
        let (_dir, store) = temp_store();
        let inbox = store
            .write_blocking(|tx| {
                tx.deliver(b"12345", &Analysis::default(), (0, 0), &[to("a"), to("b")])?;
                tx.deliver(b"123", &Analysis::default(), (0, 0), &[to("a")])?;
                tx.ensure_user("a")
            })
            .unwrap();
        let usage = |store: &crate::store::Store, u: &str| {
            let usage = store.snapshot().unwrap().usage(u).unwrap();
            (usage.storage, usage.messages)
        };
        assert_eq!(usage(&store, "a"), (8, 2));
        assert_eq!(usage(&store, "b"), (5, 1));
        store
            .write_blocking(move |tx| {
                let other = tx.create_mailbox("a", "Other", None)?;
                tx.copy_messages(inbox, &[1, 2], other)
            })
            .unwrap();
        assert_eq!(usage(&store, "a"), (16, 4), "a copy counts again");
        store
            .write_blocking(|tx| tx.rename_mailbox("a", "INBOX", "Old"))
            .unwrap();
        assert_eq!(
            usage(&store, "a"),
            (16, 4),
            "renaming INBOX moves, adds nothing"
        );
        store
            .write_blocking(|tx| tx.delete_mailbox("a", "Other"))
            .unwrap();
        assert_eq!(usage(&store, "a"), (8, 2));
        store
            .write_blocking(move |tx| tx.expunge(inbox, &[1, 2]))
            .unwrap();
        assert_eq!(
            usage(&store, "a"),
            (8, 2),
            "INBOX was emptied by the rename"
        );
        let verified = store.snapshot().unwrap().verify(&mut |_| {}).unwrap();
        assert_eq!(verified.problems, []);
        store.shutdown();
    }

    #[test]
    fn a_checked_delivery_stops_at_the_limit_for_that_target_only() {
        let (_dir, store) = temp_store();
        let checks = vec![limits(Some(10), None), limits(None, None)];
        let outcome = store
            .write_blocking(move |tx| {
                let mut all = Vec::new();
                for _ in 0..3 {
                    all.push(tx.deliver_checked(
                        b"1234",
                        &Analysis::default(),
                        (0, 0),
                        &[to("a"), to("b")],
                        &checks,
                    )?);
                }
                Ok(all)
            })
            .unwrap();
        assert!(outcome[0][0].is_ok() && outcome[1][0].is_ok());
        assert!(matches!(outcome[2][0], Err(StoreError::OverQuota(_))));
        assert!(outcome.iter().all(|o| o[1].is_ok()));
        let snap = store.snapshot().unwrap();
        assert_eq!(snap.usage("a").unwrap().storage, 8);
        assert_eq!(snap.usage("b").unwrap().messages, 3);
        // Nobody takes it: nothing is stored.
        let checks = vec![limits(None, Some(2))];
        let refused = store
            .write_blocking(move |tx| {
                tx.deliver_checked(b"x", &Analysis::default(), (0, 0), &[to("a")], &checks)
            })
            .unwrap();
        assert!(matches!(refused[0], Err(StoreError::OverQuota(_))));
        let verified = store.snapshot().unwrap().verify(&mut |_| {}).unwrap();
        assert_eq!(verified.problems, []);
        store.shutdown();
    }

    #[test]
    fn the_notice_comes_once_per_crossing() {
        let (_dir, store) = temp_store();
        let maker: NoticeMaker =
            Arc::new(|_, _, _| (b"Subject: full\r\n\r\n.\r\n".to_vec(), Analysis::default()));
        let check = QuotaCheck::new(
            QuotaLimits {
                storage: None,
                messages: Some(10),
            },
            Some(maker),
        );
        let deliver = |store: &crate::store::Store, n: usize| {
            let check = check.clone();
            store
                .write_blocking(move |tx| {
                    for _ in 0..n {
                        tx.deliver_checked(
                            b"m",
                            &Analysis::default(),
                            (0, 0),
                            &[to("a")],
                            std::slice::from_ref(&check),
                        )?;
                    }
                    Ok(())
                })
                .unwrap()
        };
        deliver(&store, 8);
        assert_eq!(store.snapshot().unwrap().usage("a").unwrap().messages, 8);
        deliver(&store, 1);
        // The ninth message crossed 90%: the notice is the tenth.
        assert_eq!(store.snapshot().unwrap().usage("a").unwrap().messages, 10);
        let inbox = store
            .snapshot()
            .unwrap()
            .mailbox_id("a", "INBOX")
            .unwrap()
            .unwrap();
        store
            .write_blocking(move |tx| tx.expunge(inbox, &[1, 2, 3, 4, 5]))
            .unwrap();
        deliver(&store, 2);
        assert_eq!(store.snapshot().unwrap().usage("a").unwrap().messages, 7);
        deliver(&store, 2);
        // Re-armed below 90%, crossed again: a second notice.
        assert_eq!(store.snapshot().unwrap().usage("a").unwrap().messages, 10);
        store.shutdown();
    }

    #[test]
    fn a_schema_4_file_gets_its_usage_counted_once() {
        let (dir, store) = temp_store();
        store
            .write_blocking(|tx| {
                tx.deliver(b"12345", &Analysis::default(), (0, 0), &[to("a"), to("b")])?;
                tx.deliver(b"1", &Analysis::default(), (0, 0), &[to("a")])
            })
            .unwrap();
        store.shutdown();
        drop(store);
        let path = dir.path().join("t.redb");
        {
            // What a schema 4 letterbox left: no usage table.
            let db = redb::Database::create(&path).unwrap();
            let txn = db.begin_write().unwrap();
            txn.delete_table(QUOTA_USAGE).unwrap();
            {
                let mut meta = txn.open_table(crate::store::META).unwrap();
                meta.insert("schema_version", 4u32.to_le_bytes().as_slice())
                    .unwrap();
            }
            txn.commit().unwrap();
        }
        let (store, _changes) = crate::store::Store::open(&path, 1 << 20).unwrap();
        let snap = store.snapshot().unwrap();
        assert_eq!(snap.schema_version().unwrap(), crate::store::SCHEMA_VERSION);
        let a = snap.usage("a").unwrap();
        assert_eq!((a.storage, a.messages), (6, 2));
        assert_eq!(snap.usage("b").unwrap().storage, 5);
        assert_eq!(snap.verify(&mut |_| {}).unwrap().problems, []);
        drop(snap);
        store.shutdown();
    }

    #[test]
    fn verify_finds_usage_that_does_not_match_the_messages() {
        let (_dir, store) = temp_store();
        store
            .write_blocking(|tx| tx.deliver(b"12345", &Analysis::default(), (0, 0), &[to("a")]))
            .unwrap();
        store
            .write_blocking(|tx| tx.count_usage("a", 7, 1, true))
            .unwrap();
        let verified = store.snapshot().unwrap().verify(&mut |_| {}).unwrap();
        let found: Vec<String> = verified
            .problems
            .iter()
            .map(|p| format!("{}: {}", p.place, p.what))
            .collect();
        assert_eq!(
            found,
            ["quota of a: usage is kept as 12 bytes in 2 messages, but the messages count 5 bytes in 1"]
        );
        store
            .write_blocking(|tx| {
                tx.quota_usage.remove("a")?;
                Ok(())
            })
            .unwrap();
        let verified = store.snapshot().unwrap().verify(&mut |_| {}).unwrap();
        assert_eq!(verified.problems.len(), 1);
        assert!(verified.problems[0].what.starts_with("no usage is kept"));
        store.shutdown();
    }
}
