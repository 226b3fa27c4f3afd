//! The write operations. Each runs inside the writer's batch transaction and
//! keeps the writer's rule: check first, then change, so that an `Err` means
//! nothing was changed.

use redb::ReadableTable;

use super::records::{encode_uids, Flags, MailboxRecord, MessageRecord, SpecialUse};
use super::{
    canonical_mailbox_name, now_unix, BlobId, Change, MailboxId, StoreError, WriteCtx,
    DEFAULT_MAILBOXES,
};

/// One recipient of a delivery: `user`, and the folder named by a
/// `user+folder@domain` address, if any.
#[derive(Clone, Debug)]
pub struct DeliveryTarget {
    pub user: String,
    pub folder: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivered {
    pub mailbox: MailboxId,
    pub mailbox_name: String,
    pub uid: u32,
}

/// How STORE (or POP3) changes a message's flags.
#[derive(Clone, Debug)]
pub enum FlagChange {
    Add(Flags, Vec<String>),
    Remove(Flags, Vec<String>),
    Replace(Flags, Vec<String>),
}

impl WriteCtx<'_> {
    /// Takes the next value of a counter kept in `meta`.
    fn next_counter(&mut self, key: &'static str, floor: u64) -> Result<u64, StoreError> {
        let stored = match self.meta.get(key)? {
            Some(v) => {
                let bytes = <[u8; 8]>::try_from(v.value())
                    .map_err(|_| StoreError::Corrupt(format!("counter {key}")))?;
                u64::from_le_bytes(bytes)
            }
            None => 1,
        };
        let value = stored.max(floor);
        self.meta
            .insert(key, (value + 1).to_le_bytes().as_slice())?;
        Ok(value)
    }

    fn load_mailbox(&self, id: MailboxId) -> Result<MailboxRecord, StoreError> {
        let found = self.mailboxes.get(id)?;
        match found {
            Some(v) => MailboxRecord::decode(v.value()),
            None => Err(StoreError::NoSuchMailbox),
        }
    }

    fn save_mailbox(&mut self, id: MailboxId, record: &MailboxRecord) -> Result<(), StoreError> {
        self.mailboxes.insert(id, record.encode().as_slice())?;
        Ok(())
    }

    pub fn mailbox_id(&self, user: &str, name: &str) -> Result<Option<MailboxId>, StoreError> {
        let name = canonical_mailbox_name(name);
        Ok(self
            .mailbox_names
            .get((user, name.as_ref()))?
            .map(|v| v.value()))
    }

    pub fn create_mailbox(
        &mut self,
        user: &str,
        name: &str,
        special_use: Option<SpecialUse>,
    ) -> Result<MailboxId, StoreError> {
        let name = canonical_mailbox_name(name).into_owned();
        if self.mailbox_id(user, &name)?.is_some() {
            return Err(StoreError::MailboxExists);
        }
        let id = self.next_counter("next_mailbox_id", 1)?;
        // UIDVALIDITY must differ from any earlier mailbox of the same name,
        // including one deleted and re-created within the same second.
        let uid_validity = self.next_counter("next_uidvalidity", now_unix().max(1) as u64)?;
        let record = MailboxRecord {
            owner: user.to_string(),
            name: name.clone(),
            uid_validity: uid_validity as u32,
            uid_next: 1,
            highest_modseq: 1,
            special_use,
            subscribed: true,
            exists: 0,
            unseen: 0,
            deleted: 0,
            size: 0,
        };
        self.save_mailbox(id, &record)?;
        self.mailbox_names.insert((user, name.as_str()), id)?;
        self.changes.push(Change::MailboxList(user.to_string()));
        Ok(id)
    }

    /// Gives a user INBOX and the special-use mailboxes the first time they
    /// are needed. Returns INBOX's id.
    pub fn ensure_user(&mut self, user: &str) -> Result<MailboxId, StoreError> {
        if let Some(inbox) = self.mailbox_id(user, "INBOX")? {
            return Ok(inbox);
        }
        let mut inbox = 0;
        for (name, special_use) in DEFAULT_MAILBOXES {
            if self.mailbox_id(user, name)?.is_none() {
                let id = self.create_mailbox(user, name, special_use)?;
                if name == "INBOX" {
                    inbox = id;
                }
            }
        }
        Ok(inbox)
    }

    /// Stores a message's bytes once and returns its blob id with one
    /// reference per recipient still to be added by `append`.
    pub fn put_blob(&mut self, raw: &[u8], parsed: &[u8]) -> Result<BlobId, StoreError> {
        let blob = self.next_counter("next_blob_id", 1)?;
        self.blobs.insert(blob, raw)?;
        self.parsed.insert(blob, parsed)?;
        self.blob_refs.insert(blob, 0)?;
        Ok(blob)
    }

    fn add_blob_ref(&mut self, blob: BlobId) -> Result<(), StoreError> {
        let refs = self.blob_refs.get(blob)?.map(|v| v.value()).unwrap_or(0);
        self.blob_refs.insert(blob, refs.saturating_add(1))?;
        Ok(())
    }

    fn drop_blob_ref(&mut self, blob: BlobId) -> Result<(), StoreError> {
        let refs = self.blob_refs.get(blob)?.map(|v| v.value()).unwrap_or(0);
        if refs <= 1 {
            self.blob_refs.remove(blob)?;
            self.blobs.remove(blob)?;
            self.parsed.remove(blob)?;
        } else {
            self.blob_refs.insert(blob, refs - 1)?;
        }
        Ok(())
    }

    /// Adds a message that refers to an existing blob to a mailbox; returns
    /// its UID.
    pub fn append(
        &mut self,
        mailbox: MailboxId,
        blob: BlobId,
        size: u32,
        flags: Flags,
        keywords: Vec<String>,
        internal_date: (i64, i16),
    ) -> Result<u32, StoreError> {
        let mut record = self.load_mailbox(mailbox)?;
        let uid = record.uid_next;
        if uid == u32::MAX {
            // UIDs may not be reused or wrap; the RFC's way out is a new
            // UIDVALIDITY, which a later version can offer as a repair.
            return Err(StoreError::Storage("mailbox has used up its UIDs".into()));
        }
        record.uid_next += 1;
        record.highest_modseq += 1;
        record.exists += 1;
        record.size += u64::from(size);
        if !flags.contains(Flags::SEEN) {
            record.unseen += 1;
        }
        if flags.contains(Flags::DELETED) {
            record.deleted += 1;
        }
        let message = MessageRecord {
            blob,
            size,
            internal_date: internal_date.0,
            internal_date_offset: internal_date.1,
            modseq: record.highest_modseq,
            flags,
            keywords,
        };
        self.add_blob_ref(blob)?;
        self.messages
            .insert((mailbox, uid), message.encode().as_slice())?;
        self.save_mailbox(mailbox, &record)?;
        self.changes.push(Change::Mailbox(mailbox));
        Ok(uid)
    }

    /// Delivers one message to every target: the bytes are stored once, and
    /// each target gets its own UID in its folder (or INBOX when the folder
    /// does not exist).
    pub fn deliver(
        &mut self,
        raw: &[u8],
        parsed: &[u8],
        internal_date: (i64, i16),
        targets: &[DeliveryTarget],
    ) -> Result<Vec<Delivered>, StoreError> {
        let size = u32::try_from(raw.len())
            .map_err(|_| StoreError::Storage("message larger than 4 GiB".into()))?;
        let blob = self.put_blob(raw, parsed)?;
        let mut delivered = Vec::with_capacity(targets.len());
        for target in targets {
            let inbox = self.ensure_user(&target.user)?;
            let folder = match &target.folder {
                Some(name) => self.mailbox_id(&target.user, name)?,
                None => None,
            };
            let mailbox = folder.unwrap_or(inbox);
            let uid = self.append(
                mailbox,
                blob,
                size,
                Flags::default(),
                Vec::new(),
                internal_date,
            )?;
            let mailbox_name = self.load_mailbox(mailbox)?.name;
            delivered.push(Delivered {
                mailbox,
                mailbox_name,
                uid,
            });
        }
        if targets.is_empty() {
            self.drop_blob_ref(blob)?;
        }
        Ok(delivered)
    }

    /// Removes messages for good. Returns the UIDs that were there.
    pub fn expunge(&mut self, mailbox: MailboxId, uids: &[u32]) -> Result<Vec<u32>, StoreError> {
        let mut record = self.load_mailbox(mailbox)?;
        let mut removed = Vec::with_capacity(uids.len());
        for &uid in uids {
            let Some(bytes) = self.messages.remove((mailbox, uid))? else {
                continue;
            };
            let message = MessageRecord::decode(bytes.value())?;
            drop(bytes);
            record.exists = record.exists.saturating_sub(1);
            record.size = record.size.saturating_sub(u64::from(message.size));
            if !message.flags.contains(Flags::SEEN) {
                record.unseen = record.unseen.saturating_sub(1);
            }
            if message.flags.contains(Flags::DELETED) {
                record.deleted = record.deleted.saturating_sub(1);
            }
            self.drop_blob_ref(message.blob)?;
            removed.push(uid);
        }
        if !removed.is_empty() {
            record.highest_modseq += 1;
            self.expunged.insert(
                (mailbox, record.highest_modseq),
                encode_uids(&removed).as_slice(),
            )?;
            self.save_mailbox(mailbox, &record)?;
            self.changes.push(Change::Mailbox(mailbox));
        }
        Ok(removed)
    }

    /// Changes flags on the given messages; returns each changed message's
    /// UID and new flags and keywords. Unchanged messages keep their MODSEQ.
    pub fn change_flags(
        &mut self,
        mailbox: MailboxId,
        uids: &[u32],
        change: &FlagChange,
    ) -> Result<Vec<(u32, Flags, Vec<String>)>, StoreError> {
        let mut record = self.load_mailbox(mailbox)?;
        let mut changed = Vec::new();
        for &uid in uids {
            let found = self.messages.get((mailbox, uid))?;
            let Some(mut message) = found
                .map(|bytes| MessageRecord::decode(bytes.value()))
                .transpose()?
            else {
                continue;
            };
            let (flags, keywords) = match change {
                FlagChange::Add(f, k) => {
                    let mut keywords = message.keywords.clone();
                    for kw in k {
                        if !keywords.iter().any(|have| have.eq_ignore_ascii_case(kw)) {
                            keywords.push(kw.clone());
                        }
                    }
                    (message.flags.with(*f), keywords)
                }
                FlagChange::Remove(f, k) => {
                    let mut keywords = message.keywords.clone();
                    keywords.retain(|have| !k.iter().any(|kw| kw.eq_ignore_ascii_case(have)));
                    (message.flags.without(*f), keywords)
                }
                FlagChange::Replace(f, k) => {
                    // Flags letterbox keeps for itself survive a client's
                    // FLAGS replacement.
                    let internal = Flags(message.flags.0 & Flags::POP3_HIDDEN.0);
                    (f.with(internal), k.clone())
                }
            };
            if flags == message.flags && keywords == message.keywords {
                continue;
            }
            let was_seen = message.flags.contains(Flags::SEEN);
            let was_deleted = message.flags.contains(Flags::DELETED);
            match (was_seen, flags.contains(Flags::SEEN)) {
                (false, true) => record.unseen = record.unseen.saturating_sub(1),
                (true, false) => record.unseen += 1,
                _ => {}
            }
            match (was_deleted, flags.contains(Flags::DELETED)) {
                (false, true) => record.deleted += 1,
                (true, false) => record.deleted = record.deleted.saturating_sub(1),
                _ => {}
            }
            record.highest_modseq += 1;
            message.flags = flags;
            message.keywords = keywords;
            message.modseq = record.highest_modseq;
            self.messages
                .insert((mailbox, uid), message.encode().as_slice())?;
            changed.push((uid, message.flags, message.keywords));
        }
        if !changed.is_empty() {
            self.save_mailbox(mailbox, &record)?;
            self.changes.push(Change::Mailbox(mailbox));
        }
        Ok(changed)
    }
}

#[cfg(test)]
mod tests {
    use crate::store::{Store, StoreError};

    use super::*;

    fn temp_store() -> (tempdir::Dir, Store) {
        let dir = tempdir::Dir::new();
        let (store, _changes) = Store::open(&dir.path().join("t.redb"), 1 << 20).unwrap();
        (dir, store)
    }

    /// A throwaway directory, removed on drop; tests only.
    mod tempdir {
        pub struct Dir(std::path::PathBuf);
        impl Dir {
            pub fn new() -> Dir {
                static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
                let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let path = std::env::temp_dir()
                    .join(format!("letterbox-store-test-{}-{n}", std::process::id()));
                let _ = std::fs::remove_dir_all(&path);
                std::fs::create_dir_all(&path).unwrap();
                Dir(path)
            }
            pub fn path(&self) -> &std::path::Path {
                &self.0
            }
        }
        impl Drop for Dir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
    }

    fn target(user: &str, folder: Option<&str>) -> DeliveryTarget {
        DeliveryTarget {
            user: user.into(),
            folder: folder.map(str::to_string),
        }
    }

    #[test]
    fn delivery_creates_default_mailboxes_and_shares_the_blob() {
        let (_dir, store) = temp_store();
        let delivered = store
            .write_blocking(|tx| {
                tx.deliver(
                    b"Subject: hi\r\n\r\nbody\r\n",
                    b"",
                    (0, 0),
                    &[target("alice", None), target("bob", Some("Junk"))],
                )
            })
            .unwrap();
        assert_eq!(delivered.len(), 2);
        assert_eq!(delivered[0].mailbox_name, "INBOX");
        assert_eq!(delivered[1].mailbox_name, "Junk");
        let snap = store.snapshot().unwrap();
        let names: Vec<String> = snap
            .mailboxes("alice")
            .unwrap()
            .into_iter()
            .map(|(_, r)| r.name)
            .collect();
        assert_eq!(
            names,
            ["Archive", "Drafts", "INBOX", "Junk", "Sent", "Trash"]
        );
        let alice = snap.messages(delivered[0].mailbox).unwrap();
        let bob = snap.messages(delivered[1].mailbox).unwrap();
        assert_eq!(alice[0].1.blob, bob[0].1.blob);
        assert_eq!(snap.users().unwrap(), ["alice", "bob"]);
        store.shutdown();
    }

    #[test]
    fn expunge_frees_the_blob_after_the_last_reference() {
        let (_dir, store) = temp_store();
        let delivered = store
            .write_blocking(|tx| {
                tx.deliver(b"x", b"", (0, 0), &[target("a", None), target("b", None)])
            })
            .unwrap();
        let blob = store
            .snapshot()
            .unwrap()
            .messages(delivered[0].mailbox)
            .unwrap()[0]
            .1
            .blob;
        let (a, b) = (delivered[0].mailbox, delivered[1].mailbox);
        store.write_blocking(move |tx| tx.expunge(a, &[1])).unwrap();
        assert!(store.snapshot().unwrap().blob(blob).is_ok());
        store.write_blocking(move |tx| tx.expunge(b, &[1])).unwrap();
        assert!(matches!(
            store.snapshot().unwrap().blob(blob),
            Err(StoreError::Corrupt(_))
        ));
        let record = store.snapshot().unwrap().mailbox(b).unwrap().unwrap();
        assert_eq!((record.exists, record.size, record.uid_next), (0, 0, 2));
        store.shutdown();
    }

    #[test]
    fn flag_changes_keep_counts_and_modseq() {
        let (_dir, store) = temp_store();
        let inbox = store
            .write_blocking(|tx| {
                tx.deliver(b"m", b"", (0, 0), &[target("a", None)])?;
                tx.deliver(b"n", b"", (0, 0), &[target("a", None)])?;
                tx.ensure_user("a")
            })
            .unwrap();
        let changed = store
            .write_blocking(move |tx| {
                tx.change_flags(
                    inbox,
                    &[1, 2, 9],
                    &FlagChange::Add(Flags::SEEN, vec!["work".into()]),
                )
            })
            .unwrap();
        assert_eq!(changed.len(), 2);
        let again = store
            .write_blocking(move |tx| {
                tx.change_flags(inbox, &[1], &FlagChange::Add(Flags::SEEN, vec![]))
            })
            .unwrap();
        assert!(again.is_empty(), "a no-op change must not bump MODSEQ");
        let snap = store.snapshot().unwrap();
        let record = snap.mailbox(inbox).unwrap().unwrap();
        assert_eq!(record.unseen, 0);
        assert_eq!(snap.message(inbox, 2).unwrap().unwrap().keywords, ["work"]);
        store.shutdown();
    }

    #[test]
    fn newer_schema_is_refused() {
        let dir = tempdir::Dir::new();
        let path = dir.path().join("t.redb");
        {
            let db = redb::Database::create(&path).unwrap();
            let txn = db.begin_write().unwrap();
            {
                let mut meta = txn.open_table(crate::store::META).unwrap();
                meta.insert("schema_version", 999u32.to_le_bytes().as_slice())
                    .unwrap();
            }
            txn.commit().unwrap();
        }
        assert!(matches!(
            Store::open(&path, 1 << 20),
            Err(StoreError::NewerSchema(999))
        ));
    }
}
