//! The write operations. Each runs inside the writer's batch transaction and
//! keeps the writer's rule: check first, then change, so that an `Err` means
//! nothing was changed.

use redb::ReadableTable;

use super::index::IndexEntry;
use super::records::{add_keywords, encode_uids, Flags, MailboxRecord, MessageRecord, SpecialUse};
use super::{
    canonical_mailbox_name, now_unix, BlobId, Change, MailboxId, StoreError, WriteCtx,
    DEFAULT_MAILBOXES, MAX_MAILBOX_KEYWORDS,
};

/// Checks that the mailbox's keyword list has room for `keywords`.
pub(super) fn keyword_room<'k>(
    record: &MailboxRecord,
    keywords: impl IntoIterator<Item = &'k String>,
) -> Result<(), StoreError> {
    let mut keywords = keywords.into_iter().peekable();
    if keywords.peek().is_none() {
        return Ok(());
    }
    let mut list = record.keywords.clone();
    for k in keywords {
        add_keywords(&mut list, std::slice::from_ref(k));
        if list.len() > MAX_MAILBOX_KEYWORDS {
            return Err(StoreError::Limit(format!(
                "a mailbox holds at most {MAX_MAILBOX_KEYWORDS} different keywords"
            )));
        }
    }
    Ok(())
}

/// What is worked out about a message once, when it arrives, and stored
/// beside it: the IMAP structure ([`crate::mime::MessageInfo::encode`]) and
/// the header SEARCH reads ([`crate::imap::matcher::search_header`]), and
/// what SORT and THREAD compare ([`crate::mime::SortKeys::encode`]).
#[derive(Clone, Debug, Default)]
pub struct Analysis {
    pub parsed: Vec<u8>,
    pub search_header: Vec<u8>,
    pub sort_keys: Vec<u8>,
}

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

/// A message whose flags a [`FlagChange`] changed, as it is now.
#[derive(Clone, Debug)]
pub struct Changed {
    pub uid: u32,
    pub flags: Flags,
    pub keywords: Vec<String>,
    pub modseq: u64,
}

/// How STORE (or POP3) changes a message's flags.
#[derive(Clone, Debug)]
pub enum FlagChange {
    Add(Flags, Vec<String>),
    Remove(Flags, Vec<String>),
    Replace(Flags, Vec<String>),
}

impl FlagChange {
    /// The flags and keywords a message has after this change.
    pub fn apply(&self, flags: Flags, keywords: &[String]) -> (Flags, Vec<String>) {
        match self {
            FlagChange::Add(f, k) => {
                let mut keywords = keywords.to_vec();
                add_keywords(&mut keywords, k);
                (flags.with(*f), keywords)
            }
            FlagChange::Remove(f, k) => {
                let mut keywords = keywords.to_vec();
                keywords.retain(|have| !k.iter().any(|kw| kw.eq_ignore_ascii_case(have)));
                (flags.without(*f), keywords)
            }
            FlagChange::Replace(f, k) => {
                // Flags letterbox keeps for itself survive a client's FLAGS
                // replacement.
                let internal = Flags(flags.0 & Flags::POP3_HIDDEN.0);
                (f.with(internal), k.clone())
            }
        }
    }

    /// Whether this change would change a message with these flags.
    pub fn changes(&self, flags: Flags, keywords: &[String]) -> bool {
        let (new_flags, new_keywords) = self.apply(flags, keywords);
        new_flags != flags || new_keywords != keywords
    }
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

    pub(super) fn load_mailbox(&self, id: MailboxId) -> Result<MailboxRecord, StoreError> {
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

    /// Writes a message's record and its entry in the message index.
    fn put_message(
        &mut self,
        mailbox: MailboxId,
        uid: u32,
        message: &MessageRecord,
    ) -> Result<(), StoreError> {
        self.messages
            .insert((mailbox, uid), message.encode().as_slice())?;
        self.index_put(
            mailbox,
            IndexEntry {
                uid,
                modseq: message.modseq,
                flags: message.flags,
                keywords: message.keywords.clone(),
            },
        )
    }

    pub fn uid_validity(&self, mailbox: MailboxId) -> Result<u32, StoreError> {
        Ok(self.load_mailbox(mailbox)?.uid_validity)
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
            exists: 0,
            unseen: 0,
            deleted: 0,
            size: 0,
            keywords: Vec::new(),
            recent_horizon: 1,
        };
        self.save_mailbox(id, &record)?;
        self.mailbox_names.insert((user, name.as_str()), id)?;
        self.changes.push(Change::MailboxList(user.to_string()));
        Ok(id)
    }

    /// Gives a user INBOX and the special-use mailboxes the first time they
    /// are needed, subscribed (a mailbox a client creates is not: RFC 9051
    /// §6.3.4 leaves that to the client). Returns INBOX's id.
    pub fn ensure_user(&mut self, user: &str) -> Result<MailboxId, StoreError> {
        if let Some(inbox) = self.mailbox_id(user, "INBOX")? {
            return Ok(inbox);
        }
        let mut inbox = 0;
        for (name, special_use) in DEFAULT_MAILBOXES {
            if self.mailbox_id(user, name)?.is_none() {
                let id = self.create_mailbox(user, name, special_use)?;
                self.subscriptions.insert((user, name), ())?;
                if name == "INBOX" {
                    inbox = id;
                }
            }
        }
        Ok(inbox)
    }

    /// Stores a message's bytes once, with what delivery worked out about
    /// them, and returns its blob id; `append` adds the references.
    pub fn put_blob(&mut self, raw: &[u8], analysis: &Analysis) -> Result<BlobId, StoreError> {
        let blob = self.next_counter("next_blob_id", 1)?;
        super::blobs::put(&mut self.blob_chunks, blob, raw)?;
        self.bytes_added += raw.len() as u64;
        self.parsed.insert(blob, analysis.parsed.as_slice())?;
        self.search_headers
            .insert(blob, analysis.search_header.as_slice())?;
        if !analysis.sort_keys.is_empty() {
            self.sort_keys.insert(blob, analysis.sort_keys.as_slice())?;
        }
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
            self.bytes_freed += super::blobs::remove(&mut self.blob_chunks, blob)?;
            self.parsed.remove(blob)?;
            self.search_headers.remove(blob)?;
            self.sort_keys.remove(blob)?;
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
        keyword_room(&record, &keywords)?;
        self.load_chunks(mailbox, [uid])?;
        add_keywords(&mut record.keywords, &keywords);
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
        self.put_message(mailbox, uid, &message)?;
        self.sort_orders_change(mailbox, uid, &message, true)?;
        self.count_usage(&record.owner, u64::from(size), 1, true)?;
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
        analysis: &Analysis,
        internal_date: (i64, i16),
        targets: &[DeliveryTarget],
    ) -> Result<Vec<Delivered>, StoreError> {
        let size = u32::try_from(raw.len())
            .map_err(|_| StoreError::Storage("message larger than 4 GiB".into()))?;
        let blob = self.put_blob(raw, analysis)?;
        let mut delivered = Vec::with_capacity(targets.len());
        for target in targets {
            delivered.push(self.deliver_one(blob, size, internal_date, target)?);
        }
        if targets.is_empty() {
            self.drop_blob_ref(blob)?;
        }
        Ok(delivered)
    }

    /// Adds a stored blob to one target's folder (or INBOX when the folder
    /// does not exist).
    pub(super) fn deliver_one(
        &mut self,
        blob: BlobId,
        size: u32,
        internal_date: (i64, i16),
        target: &DeliveryTarget,
    ) -> Result<Delivered, StoreError> {
        let inbox = self.ensure_user(&target.user)?;
        let folder = match &target.folder {
            Some(name) => self.delivery_folder(&target.user, name)?,
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
        Ok(Delivered {
            mailbox,
            mailbox_name,
            uid,
        })
    }

    /// The folder a `user+folder` address names: the mailbox of exactly
    /// that name, else the one mailbox whose name matches it ignoring case
    /// (`alice+archive` finds `Archive`), as people type the detail in
    /// whatever case. Two mailboxes matching only that way (`Lists` and
    /// `lists`) make the address ambiguous, and it goes to INBOX rather than
    /// to a guess.
    fn delivery_folder(&self, user: &str, name: &str) -> Result<Option<MailboxId>, StoreError> {
        if let Some(exact) = self.mailbox_id(user, name)? {
            return Ok(Some(exact));
        }
        let wanted = name.to_lowercase();
        let mut found = None;
        for entry in self.mailbox_names.range((user, "")..)? {
            let (key, id) = entry?;
            let (owner, candidate) = key.value();
            if owner != user {
                break;
            }
            if candidate.to_lowercase() == wanted {
                if found.is_some() {
                    return Ok(None);
                }
                found = Some(id.value());
            }
        }
        Ok(found)
    }

    /// Stores a new message (IMAP APPEND) in one mailbox; returns its UID.
    pub fn append_message(
        &mut self,
        mailbox: MailboxId,
        raw: &[u8],
        analysis: &Analysis,
        flags: Flags,
        keywords: Vec<String>,
        internal_date: (i64, i16),
    ) -> Result<u32, StoreError> {
        keyword_room(&self.load_mailbox(mailbox)?, &keywords)?;
        let size = u32::try_from(raw.len())
            .map_err(|_| StoreError::Storage("message larger than 4 GiB".into()))?;
        let blob = self.put_blob(raw, analysis)?;
        self.append(mailbox, blob, size, flags, keywords, internal_date)
    }

    /// Copies messages to another mailbox, sharing their bytes. Returns
    /// (source UID, new UID) pairs in source UID order.
    pub fn copy_messages(
        &mut self,
        from: MailboxId,
        uids: &[u32],
        to: MailboxId,
    ) -> Result<Vec<(u32, u32)>, StoreError> {
        let target = self.load_mailbox(to)?;
        let mut sources = Vec::with_capacity(uids.len());
        for &uid in uids {
            let found = self.messages.get((from, uid))?;
            if let Some(bytes) = found {
                sources.push((uid, MessageRecord::decode(bytes.value())?));
            }
        }
        keyword_room(&target, sources.iter().flat_map(|(_, m)| &m.keywords))?;
        let mut pairs = Vec::with_capacity(sources.len());
        for (uid, message) in sources {
            // Letterbox-internal flags belong to the source copy only.
            let flags = message.flags.without(Flags::POP3_HIDDEN);
            let new_uid = self.append(
                to,
                message.blob,
                message.size,
                flags,
                message.keywords,
                (message.internal_date, message.internal_date_offset),
            )?;
            pairs.push((uid, new_uid));
        }
        Ok(pairs)
    }

    /// Every mailbox of a user whose name is `name` or below it.
    fn family(&self, user: &str, name: &str) -> Result<Vec<(String, MailboxId)>, StoreError> {
        let prefix = format!("{name}/");
        let mut out = Vec::new();
        // Names sort so that everything starting with `name` is contiguous;
        // "name-x" sorts between "name" and "name/a", so filter, don't stop.
        for entry in self.mailbox_names.range((user, name)..)? {
            let (key, id) = entry?;
            let (owner, found) = key.value();
            if owner != user || !found.starts_with(name) {
                break;
            }
            if found == name || found.starts_with(&prefix) {
                out.push((found.to_string(), id.value()));
            }
        }
        Ok(out)
    }

    /// Deletes a mailbox and its messages. INBOX cannot be deleted, and
    /// neither can a mailbox with children (delete those first), as Dovecot
    /// does.
    pub fn delete_mailbox(&mut self, user: &str, name: &str) -> Result<(), StoreError> {
        let name = canonical_mailbox_name(name).into_owned();
        if name == "INBOX" {
            return Err(StoreError::Refused("INBOX cannot be deleted".into()));
        }
        let id = self
            .mailbox_id(user, &name)?
            .ok_or(StoreError::NoSuchMailbox)?;
        if self.family(user, &name)?.len() > 1 {
            return Err(StoreError::Refused(
                "mailbox has children; delete them first".into(),
            ));
        }
        let uids: Vec<u32> = self
            .messages
            .range((id, 0)..=(id, u32::MAX))?
            .map(|entry| entry.map(|(key, _)| key.value().1))
            .collect::<Result<_, _>>()?;
        self.expunge(id, &uids)?;
        let stale: Vec<(u64, u64)> = self
            .expunged
            .range((id, 0)..=(id, u64::MAX))?
            .map(|entry| entry.map(|(key, _)| key.value()))
            .collect::<Result<_, _>>()?;
        for key in stale {
            self.expunged.remove(key)?;
        }
        self.meta
            .remove(super::expunges::horizon_key(id).as_str())?;
        self.mailboxes.remove(id)?;
        self.mailbox_names.remove((user, name.as_str()))?;
        self.changes.push(Change::Mailbox(id));
        self.changes.push(Change::MailboxList(user.to_string()));
        Ok(())
    }

    /// Renames a mailbox and everything below it. Renaming INBOX moves its
    /// messages into a new mailbox and leaves INBOX empty (RFC 9051 §6.3.6).
    pub fn rename_mailbox(&mut self, user: &str, from: &str, to: &str) -> Result<(), StoreError> {
        let from = canonical_mailbox_name(from).into_owned();
        let to = canonical_mailbox_name(to).into_owned();
        if self.mailbox_id(user, &from)?.is_none() {
            return Err(StoreError::NoSuchMailbox);
        }
        if self.mailbox_id(user, &to)?.is_some() {
            return Err(StoreError::MailboxExists);
        }
        if to == from || to.starts_with(&format!("{from}/")) {
            return Err(StoreError::Refused(
                "cannot rename a mailbox into itself".into(),
            ));
        }
        if from == "INBOX" {
            let inbox = self
                .mailbox_id(user, "INBOX")?
                .ok_or(StoreError::NoSuchMailbox)?;
            let target = self.create_mailbox(user, &to, None)?;
            let uids: Vec<u32> = self
                .messages
                .range((inbox, 0)..=(inbox, u32::MAX))?
                .map(|entry| entry.map(|(key, _)| key.value().1))
                .collect::<Result<_, _>>()?;
            self.copy_messages(inbox, &uids, target)?;
            self.expunge(inbox, &uids)?;
            return Ok(());
        }
        let family = self.family(user, &from)?;
        // Every new name is checked before anything moves: an error must
        // leave the store as it was (see writer.rs).
        for (old_name, _) in &family {
            let new_name = format!("{to}{}", &old_name[from.len()..]);
            if self.mailbox_id(user, &new_name)?.is_some() {
                return Err(StoreError::MailboxExists);
            }
        }
        for (old_name, id) in family {
            let new_name = format!("{to}{}", &old_name[from.len()..]);
            let mut record = self.load_mailbox(id)?;
            record.name = new_name.clone();
            self.save_mailbox(id, &record)?;
            self.mailbox_names.remove((user, old_name.as_str()))?;
            self.mailbox_names.insert((user, new_name.as_str()), id)?;
            self.changes.push(Change::Mailbox(id));
        }
        // Subscriptions follow the names, as in Dovecot, so the renamed
        // folders stay visible to clients that list subscribed ones.
        let prefix = format!("{from}/");
        let mut moved: Vec<String> = Vec::new();
        for entry in self.subscriptions.range((user, from.as_str())..)? {
            let (key, _) = entry?;
            let (owner, name) = key.value();
            if owner != user || !(name == from || name.starts_with(&prefix)) {
                break;
            }
            moved.push(name.to_string());
        }
        for old_name in moved {
            let new_name = format!("{to}{}", &old_name[from.len()..]);
            self.subscriptions.remove((user, old_name.as_str()))?;
            self.subscriptions.insert((user, new_name.as_str()), ())?;
        }
        self.changes.push(Change::MailboxList(user.to_string()));
        Ok(())
    }

    /// Subscribes or unsubscribes a name, whether or not a mailbox has it:
    /// a subscription outlives DELETE (RFC 9051 §6.3.7), and removing one
    /// that is not there is no error (Dovecot answers OK too).
    pub fn set_subscribed(
        &mut self,
        user: &str,
        name: &str,
        subscribed: bool,
    ) -> Result<(), StoreError> {
        let name = canonical_mailbox_name(name);
        let changed = if subscribed {
            self.subscriptions
                .insert((user, name.as_ref()), ())?
                .is_none()
        } else {
            self.subscriptions.remove((user, name.as_ref()))?.is_some()
        };
        if changed {
            self.changes.push(Change::MailboxList(user.to_string()));
        }
        Ok(())
    }

    /// Moves a mailbox's \Recent horizon up to `uid` (never down): the
    /// messages below it have been seen as recent by a session.
    pub fn advance_recent_horizon(
        &mut self,
        mailbox: MailboxId,
        uid: u32,
    ) -> Result<(), StoreError> {
        let mut record = self.load_mailbox(mailbox)?;
        if uid > record.recent_horizon {
            record.recent_horizon = uid;
            self.save_mailbox(mailbox, &record)?;
        }
        Ok(())
    }

    /// Removes messages for good. Returns the UIDs that were there.
    pub fn expunge(&mut self, mailbox: MailboxId, uids: &[u32]) -> Result<Vec<u32>, StoreError> {
        let mut record = self.load_mailbox(mailbox)?;
        self.load_chunks(mailbox, uids.iter().copied())?;
        let modseq = record.highest_modseq + 1;
        let mut removed = Vec::with_capacity(uids.len());
        let mut freed = 0u64;
        for &uid in uids {
            let Some(bytes) = self.messages.remove((mailbox, uid))? else {
                continue;
            };
            let message = MessageRecord::decode(bytes.value())?;
            drop(bytes);
            self.index_remove(mailbox, uid, modseq)?;
            record.exists = record.exists.saturating_sub(1);
            record.size = record.size.saturating_sub(u64::from(message.size));
            freed += u64::from(message.size);
            if !message.flags.contains(Flags::SEEN) {
                record.unseen = record.unseen.saturating_sub(1);
            }
            if message.flags.contains(Flags::DELETED) {
                record.deleted = record.deleted.saturating_sub(1);
            }
            self.sort_orders_change(mailbox, uid, &message, false)?;
            self.drop_blob_ref(message.blob)?;
            removed.push(uid);
        }
        if !removed.is_empty() {
            record.highest_modseq = modseq;
            self.expunged.insert(
                (mailbox, record.highest_modseq),
                encode_uids(&removed).as_slice(),
            )?;
            self.count_usage(&record.owner, freed, removed.len() as u64, false)?;
            self.first_expunge_of_batch
                .entry(mailbox)
                .or_insert(record.highest_modseq);
            self.prune_expunged(mailbox)?;
            self.save_mailbox(mailbox, &record)?;
            self.changes.push(Change::Mailbox(mailbox));
        }
        Ok(removed)
    }

    /// Expunges the messages marked \Deleted (of `only`, when given: UID
    /// EXPUNGE). Returns the UIDs removed.
    pub fn expunge_deleted(
        &mut self,
        mailbox: MailboxId,
        only: Option<&[u32]>,
    ) -> Result<Vec<u32>, StoreError> {
        let mut doomed = Vec::new();
        for entry in self.messages.range((mailbox, 0)..=(mailbox, u32::MAX))? {
            let (key, value) = entry?;
            let uid = key.value().1;
            if only.is_some_and(|o| o.binary_search(&uid).is_err()) {
                continue;
            }
            if MessageRecord::decode(value.value())?
                .flags
                .contains(Flags::DELETED)
            {
                doomed.push(uid);
            }
        }
        self.expunge(mailbox, &doomed)
    }

    /// Changes flags on the given messages; returns each changed message's
    /// UID, new flags and keywords, and new MODSEQ. Unchanged messages keep
    /// their MODSEQ.
    pub fn change_flags(
        &mut self,
        mailbox: MailboxId,
        uids: &[u32],
        change: &FlagChange,
    ) -> Result<Vec<Changed>, StoreError> {
        Ok(self
            .change_flags_unless_modified(mailbox, uids, change, None)?
            .0)
    }

    /// [`WriteCtx::change_flags`], leaving alone each message whose MODSEQ
    /// is above `unchanged_since` (RFC 7162's conditional STORE). Returns the
    /// changed messages and the UIDs of those left alone for that reason.
    pub fn change_flags_unless_modified(
        &mut self,
        mailbox: MailboxId,
        uids: &[u32],
        change: &FlagChange,
        unchanged_since: Option<u64>,
    ) -> Result<(Vec<Changed>, Vec<u32>), StoreError> {
        let mut modified = Vec::new();
        let mut record = self.load_mailbox(mailbox)?;
        if let FlagChange::Add(_, keywords) | FlagChange::Replace(_, keywords) = change {
            keyword_room(&record, keywords)?;
            add_keywords(&mut record.keywords, keywords);
        }
        self.load_chunks(mailbox, uids.iter().copied())?;
        let mut changed = Vec::new();
        for &uid in uids {
            let found = self.messages.get((mailbox, uid))?;
            let Some(mut message) = found
                .map(|bytes| MessageRecord::decode(bytes.value()))
                .transpose()?
            else {
                continue;
            };
            if unchanged_since.is_some_and(|since| message.modseq > since) {
                modified.push(uid);
                continue;
            }
            let (flags, keywords) = change.apply(message.flags, &message.keywords);
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
            self.put_message(mailbox, uid, &message)?;
            changed.push(Changed {
                uid,
                flags: message.flags,
                keywords: message.keywords,
                modseq: message.modseq,
            });
        }
        if !changed.is_empty() {
            self.save_mailbox(mailbox, &record)?;
            self.changes.push(Change::Mailbox(mailbox));
        }
        Ok((changed, modified))
    }
}

#[cfg(test)]
mod tests {
    use crate::store::testing::{temp_store, tempdir};
    use crate::store::{Store, StoreError};

    use super::*;

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
                    &Analysis::default(),
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
    fn folder_details_match_exactly_then_by_unique_case_insensitive_name() {
        let (_dir, store) = temp_store();
        store
            .write_blocking(|tx| {
                tx.ensure_user("alice")?;
                tx.create_mailbox("alice", "Lists", None)?;
                tx.create_mailbox("alice", "lists", None)?;
                tx.create_mailbox("alice", "Ünïcode", None)
            })
            .unwrap();
        let into = |folder: &str| {
            let folder = folder.to_string();
            store
                .write_blocking(move |tx| {
                    tx.deliver(
                        b"x",
                        &Analysis::default(),
                        (0, 0),
                        &[target("alice", Some(&folder))],
                    )
                })
                .unwrap()
                .remove(0)
                .mailbox_name
        };
        assert_eq!(into("Archive"), "Archive");
        assert_eq!(into("archive"), "Archive");
        assert_eq!(into("ARCHIVE"), "Archive");
        assert_eq!(into("üNÏCODE"), "Ünïcode");
        assert_eq!(into("lists"), "lists", "an exact match wins");
        assert_eq!(into("Lists"), "Lists");
        assert_eq!(into("LISTS"), "INBOX", "ambiguous: INBOX, not a guess");
        assert_eq!(into("nosuch"), "INBOX");
        assert_eq!(into("inbox"), "INBOX");
        store.shutdown();
    }

    #[test]
    fn expunge_frees_the_blob_after_the_last_reference() {
        let (_dir, store) = temp_store();
        let delivered = store
            .write_blocking(|tx| {
                tx.deliver(
                    b"x",
                    &Analysis::default(),
                    (0, 0),
                    &[target("a", None), target("b", None)],
                )
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
                tx.deliver(b"m", &Analysis::default(), (0, 0), &[target("a", None)])?;
                tx.deliver(b"n", &Analysis::default(), (0, 0), &[target("a", None)])?;
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
    fn rename_moves_children_and_inbox_rename_empties_inbox() {
        let (_dir, store) = temp_store();
        store
            .write_blocking(|tx| {
                tx.ensure_user("u")?;
                tx.create_mailbox("u", "Lists", None)?;
                tx.create_mailbox("u", "Lists-old", None)?;
                tx.create_mailbox("u", "Lists/rust", None)?;
                tx.deliver(b"m", &Analysis::default(), (0, 0), &[target("u", None)])?;
                tx.deliver(
                    b"n",
                    &Analysis::default(),
                    (0, 0),
                    &[target("u", Some("Lists/rust"))],
                )
            })
            .unwrap();
        store
            .write_blocking(|tx| tx.rename_mailbox("u", "Lists", "Archive/Lists"))
            .unwrap();
        let snap = store.snapshot().unwrap();
        let names: Vec<String> = snap
            .mailboxes("u")
            .unwrap()
            .into_iter()
            .map(|(_, r)| r.name)
            .collect();
        assert!(
            names.contains(&"Archive/Lists/rust".to_string())
                && names.contains(&"Lists-old".to_string())
        );
        assert!(!names.contains(&"Lists".to_string()));
        let moved = snap.mailbox_id("u", "Archive/Lists/rust").unwrap().unwrap();
        assert_eq!(snap.messages(moved).unwrap().len(), 1);
        store
            .write_blocking(|tx| tx.rename_mailbox("u", "INBOX", "Old"))
            .unwrap();
        let snap = store.snapshot().unwrap();
        let inbox = snap.mailbox_id("u", "inbox").unwrap().unwrap();
        assert!(snap.messages(inbox).unwrap().is_empty());
        let old = snap.mailbox_id("u", "Old").unwrap().unwrap();
        assert_eq!(snap.messages(old).unwrap().len(), 1);
        assert!(matches!(
            store.write_blocking(|tx| tx.delete_mailbox("u", "Archive/Lists")),
            Err(StoreError::Refused(_))
        ));
        store
            .write_blocking(|tx| tx.delete_mailbox("u", "Archive/Lists/rust"))
            .unwrap();
        assert!(matches!(
            store.write_blocking(|tx| tx.delete_mailbox("u", "INBOX")),
            Err(StoreError::Refused(_))
        ));
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
