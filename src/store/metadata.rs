//! Per-user annotations (IMAP METADATA, RFC 5464) and the special-use
//! check of CREATE-SPECIAL-USE.
//!
//! One table, keyed by (user, mailbox id, entry name): the server's entries
//! use mailbox id [`SERVER_ENTRIES`] (0, which no mailbox has). Keying by
//! id rather than name makes entries follow RENAME for free; DELETE removes
//! them in its own transaction. `/shared` entries are per user too: no
//! other user can see them, so "shared" only names the namespace.
//!
//! A new, empty table needs no schema bump: an older binary never opens it.

use redb::{ReadableTable, TableDefinition};

use super::records::SpecialUse;
use super::{guarded, MailboxId, Snapshot, StoreError, WriteCtx};

pub(super) const METADATA: TableDefinition<(&str, u64, &str), &[u8]> =
    TableDefinition::new("metadata");

/// The mailbox id under which the server's own entries (mailbox "") live.
pub const SERVER_ENTRIES: MailboxId = 0;

/// Whether setting entries was done or refused for the per-user count.
#[derive(Debug, PartialEq, Eq)]
pub enum MetadataSet {
    Done,
    /// The user would hold more entries than allowed; nothing was changed.
    TooMany,
}

impl WriteCtx<'_> {
    /// Sets (Some) or removes (None) entries of one mailbox, or of the
    /// server with [`SERVER_ENTRIES`]. Names arrive checked and lowercased.
    /// All or nothing: past `max_entries` for the user, nothing changes.
    pub fn set_metadata(
        &mut self,
        user: &str,
        mailbox: MailboxId,
        entries: &[(String, Option<Vec<u8>>)],
        max_entries: usize,
    ) -> Result<MetadataSet, StoreError> {
        if mailbox != SERVER_ENTRIES {
            let record = self.load_mailbox(mailbox)?;
            if record.owner != user {
                return Err(StoreError::NoSuchMailbox);
            }
        }
        let mut count = self.metadata_count(user)?;
        for (name, value) in entries {
            let exists = self.metadata.get((user, mailbox, name.as_str()))?.is_some();
            match (exists, value) {
                (false, Some(_)) => count += 1,
                (true, None) => count -= 1,
                _ => {}
            }
        }
        if count > max_entries {
            return Ok(MetadataSet::TooMany);
        }
        for (name, value) in entries {
            match value {
                Some(value) => {
                    self.metadata
                        .insert((user, mailbox, name.as_str()), value.as_slice())?;
                }
                None => {
                    self.metadata.remove((user, mailbox, name.as_str()))?;
                }
            }
        }
        Ok(MetadataSet::Done)
    }

    /// How many entries a user holds, over the server and every mailbox.
    fn metadata_count(&self, user: &str) -> Result<usize, StoreError> {
        let mut count = 0;
        for entry in self.metadata.range((user, 0, "")..)? {
            let (key, _) = entry?;
            if key.value().0 != user {
                break;
            }
            count += 1;
        }
        Ok(count)
    }

    /// Removes a mailbox's entries: DELETE calls this in its transaction.
    pub fn delete_metadata(&mut self, user: &str, mailbox: MailboxId) -> Result<(), StoreError> {
        let mut names = Vec::new();
        for entry in self.metadata.range((user, mailbox, "")..)? {
            let (key, _) = entry?;
            let (owner, id, name) = key.value();
            if owner != user || id != mailbox {
                break;
            }
            names.push(name.to_string());
        }
        for name in names {
            self.metadata.remove((user, mailbox, name.as_str()))?;
        }
        Ok(())
    }

    /// Whether one of the user's mailboxes already has this special use.
    pub fn special_use_taken(
        &self,
        user: &str,
        special_use: SpecialUse,
    ) -> Result<bool, StoreError> {
        for entry in self.mailbox_names.range((user, "")..)? {
            let (key, id) = entry?;
            if key.value().0 != user {
                break;
            }
            if self.load_mailbox(id.value())?.special_use == Some(special_use) {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

impl Snapshot {
    /// The entries of one mailbox (or the server) whose names are `name` or
    /// start with `name/`, in name order; at most `limit`, so a reply stays
    /// bounded whatever the table holds.
    pub fn metadata(
        &self,
        user: &str,
        mailbox: MailboxId,
        name: &str,
        limit: usize,
    ) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        guarded(|| {
            let table = self.txn.open_table(METADATA)?;
            let below = format!("{name}/");
            let mut out = Vec::new();
            for entry in table.range((user, mailbox, name)..)? {
                let (key, value) = entry?;
                let (owner, id, found) = key.value();
                if owner != user || id != mailbox || !found.starts_with(name) {
                    break;
                }
                // "/a-b" sorts between "/a" and "/a/b": skip, do not stop.
                if found == name || found.starts_with(&below) {
                    out.push((found.to_string(), value.value().to_vec()));
                    if out.len() >= limit {
                        break;
                    }
                }
            }
            Ok(out)
        })
    }
}
