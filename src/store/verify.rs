//! Reads a whole store back and checks that its parts agree: every record
//! decodes, every message's bytes are there whole, each mailbox's running
//! totals, message index and subject order match its messages, UIDNEXT is
//! above every UID, and each blob's reference count matches the messages that use it.
//! It only reads, from one snapshot, so it can run beside a live server.

use std::collections::HashMap;

use redb::ReadableTable;

use super::index::ChunkRef;
use super::records::{Flags, MailboxRecord, MessageRecord};
use super::{
    blobs, chunk_of, BlobId, Snapshot, StoreError, BLOB_CHUNKS, BLOB_REFS, MAILBOXES,
    MAILBOX_NAMES, MESSAGES, MESSAGE_INDEX,
};

/// One thing found wrong, and where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// `user/mailbox`, or what else it concerns (`blob 12`).
    pub place: String,
    pub what: String,
}

/// What [`Snapshot::verify`] read, and what it found wrong.
#[derive(Debug, Default)]
pub struct Verified {
    pub mailboxes: u64,
    pub messages: u64,
    pub bytes: u64,
    pub problems: Vec<Problem>,
}

impl Verified {
    pub(super) fn problem(&mut self, place: &str, what: impl Into<String>) {
        self.problems.push(Problem {
            place: place.to_string(),
            what: what.into(),
        });
    }
}

impl Snapshot {
    /// Checks everything; `progress` is told the messages read so far now
    /// and then. An error means the check itself could not go on (the
    /// database file cannot be read); damage it can name is a [`Problem`].
    pub fn verify(&self, progress: &mut dyn FnMut(u64)) -> Result<Verified, StoreError> {
        let mut report = Verified::default();
        let names = self.txn.open_table(MAILBOX_NAMES)?;
        let mailboxes = self.txn.open_table(MAILBOXES)?;
        let mut uses: HashMap<BlobId, u32> = HashMap::new();
        // Each owner's (bytes, messages), counted from the messages.
        let mut usage: HashMap<String, (u64, u64)> = HashMap::new();
        for entry in mailboxes.iter()? {
            let (id, value) = entry?;
            let id = id.value();
            let record = match MailboxRecord::decode(value.value()) {
                Ok(record) => record,
                Err(e) => {
                    report.problem(&format!("mailbox {id}"), e.to_string());
                    continue;
                }
            };
            let place = format!("{}/{}", record.owner, record.name);
            report.mailboxes += 1;
            match names.get((record.owner.as_str(), record.name.as_str()))? {
                Some(found) if found.value() == id => {}
                _ => report.problem(&place, "the name does not lead to this mailbox"),
            }
            let counted =
                self.verify_mailbox(id, &record, &place, &mut uses, &mut report, progress)?;
            let total = usage.entry(record.owner.clone()).or_default();
            total.0 += counted.0;
            total.1 += counted.1;
        }
        self.verify_usage(usage, &mut report)?;
        let refs = self.txn.open_table(BLOB_REFS)?;
        for entry in refs.iter()? {
            let (blob, count) = entry?;
            let (blob, count) = (blob.value(), count.value());
            match uses.remove(&blob) {
                Some(used) if used == count => {}
                Some(used) => report.problem(
                    &format!("blob {blob}"),
                    format!("reference count {count}, but {used} messages use it"),
                ),
                None => report.problem(
                    &format!("blob {blob}"),
                    format!("reference count {count}, but no message uses it"),
                ),
            }
        }
        let mut unreferenced: Vec<BlobId> = uses.into_keys().collect();
        unreferenced.sort_unstable();
        for blob in unreferenced {
            report.problem(
                &format!("blob {blob}"),
                "used by messages but has no reference count",
            );
        }
        Ok(report)
    }

    fn verify_mailbox(
        &self,
        id: u64,
        record: &MailboxRecord,
        place: &str,
        uses: &mut HashMap<BlobId, u32>,
        report: &mut Verified,
        progress: &mut dyn FnMut(u64),
    ) -> Result<(u64, u64), StoreError> {
        let messages = self.txn.open_table(MESSAGES)?;
        let chunks = self.txn.open_table(BLOB_CHUNKS)?;
        let (mut exists, mut unseen, mut deleted, mut size) = (0u32, 0u32, 0u32, 0u64);
        let mut listed: Vec<(u32, u64, Flags, Vec<String>)> = Vec::new();
        let mut blobs: Vec<super::sort_orders::Listed> = Vec::new();
        for entry in messages.range((id, 0)..=(id, u32::MAX))? {
            let (key, value) = entry?;
            let uid = key.value().1;
            let message = match MessageRecord::decode(value.value()) {
                Ok(message) => message,
                Err(e) => {
                    report.problem(place, format!("UID {uid}: {e}"));
                    continue;
                }
            };
            if uid >= record.uid_next {
                report.problem(
                    place,
                    format!("UID {uid} is not below UIDNEXT {}", record.uid_next),
                );
            }
            if message.modseq > record.highest_modseq {
                report.problem(
                    place,
                    format!("UID {uid}: MODSEQ above the mailbox's highest"),
                );
            }
            exists += 1;
            size += u64::from(message.size);
            unseen += u32::from(!message.flags.contains(Flags::SEEN));
            deleted += u32::from(message.flags.contains(Flags::DELETED));
            *uses.entry(message.blob).or_default() += 1;
            if let Err(e) = read_whole(&chunks, message.blob, message.size) {
                report.problem(place, format!("UID {uid}: {e}"));
            }
            report.messages += 1;
            report.bytes += u64::from(message.size);
            if report.messages % 1000 == 0 {
                progress(report.messages);
            }
            blobs.push((uid, message.blob, message.internal_date));
            listed.push((uid, message.modseq, message.flags, message.keywords));
        }
        let totals = [
            ("MESSAGES", u64::from(record.exists), u64::from(exists)),
            ("UNSEEN", u64::from(record.unseen), u64::from(unseen)),
            ("deleted", u64::from(record.deleted), u64::from(deleted)),
            ("size", record.size, size),
        ];
        for (what, kept, counted) in totals {
            if kept != counted {
                report.problem(
                    place,
                    format!("{what} is kept as {kept} but the messages count {counted}"),
                );
            }
        }
        self.verify_index(id, place, &listed, report)?;
        self.verify_sort_orders(id, place, &blobs, report)?;
        Ok((size, u64::from(exists)))
    }

    /// Each user's kept quota usage must be what their messages add up to.
    fn verify_usage(
        &self,
        mut counted: HashMap<String, (u64, u64)>,
        report: &mut Verified,
    ) -> Result<(), StoreError> {
        for (user, kept) in self.kept_usage()? {
            let place = format!("quota of {user}");
            let kept = match kept {
                Ok(kept) => kept,
                Err(e) => {
                    report.problem(&place, e.to_string());
                    continue;
                }
            };
            let (bytes, messages) = counted.remove(&user).unwrap_or_default();
            if (kept.storage, kept.messages) != (bytes, messages) {
                report.problem(
                    &place,
                    format!(
                        "usage is kept as {} bytes in {} messages, but the messages count {bytes} bytes in {messages}",
                        kept.storage, kept.messages
                    ),
                );
            }
        }
        let mut missing: Vec<(String, (u64, u64))> = counted
            .into_iter()
            .filter(|(_, total)| *total != (0, 0))
            .collect();
        missing.sort_unstable();
        for (user, (bytes, messages)) in missing {
            report.problem(
                &format!("quota of {user}"),
                format!("no usage is kept, but the messages count {bytes} bytes in {messages}"),
            );
        }
        Ok(())
    }

    /// The message index must list exactly the messages, with their MODSEQ,
    /// flags and keywords, each in the chunk its UID belongs to.
    fn verify_index(
        &self,
        id: u64,
        place: &str,
        listed: &[(u32, u64, Flags, Vec<String>)],
        report: &mut Verified,
    ) -> Result<(), StoreError> {
        let index = self.txn.open_table(MESSAGE_INDEX)?;
        let mut indexed: Vec<(u32, u64, Flags, Vec<String>)> = Vec::with_capacity(listed.len());
        for entry in index.range((id, 0)..=(id, u32::MAX))? {
            let (key, value) = entry?;
            let number = key.value().1;
            let chunk = match ChunkRef::parse(number, value.value()) {
                Ok(chunk) => chunk,
                Err(e) => {
                    report.problem(place, format!("index chunk {number}: {e}"));
                    continue;
                }
            };
            let keywords: HashMap<usize, Vec<String>> = match chunk.keywords() {
                Ok(k) => k.into_iter().collect(),
                Err(e) => {
                    report.problem(place, format!("index chunk {number}: {e}"));
                    continue;
                }
            };
            for (i, ((uid, modseq), flags)) in chunk
                .uids()
                .zip(chunk.modseqs())
                .zip(chunk.flags())
                .enumerate()
            {
                if chunk_of(uid) != number {
                    report.problem(place, format!("index chunk {number} holds UID {uid}"));
                }
                let k = keywords.get(&i).cloned().unwrap_or_default();
                indexed.push((uid, modseq, flags, k));
            }
        }
        if indexed.as_slice() != listed {
            let first = indexed
                .iter()
                .zip(listed)
                .position(|(a, b)| a != b)
                .unwrap_or(indexed.len().min(listed.len()));
            let uid = listed.get(first).or(indexed.get(first)).map_or(0, |m| m.0);
            report.problem(
                place,
                format!(
                    "the message index does not match the messages ({} indexed, {} stored; first difference at UID {uid})",
                    indexed.len(),
                    listed.len()
                ),
            );
        }
        Ok(())
    }
}

/// Reads every chunk of a message's bytes, one at a time, checking that
/// they add up to its size.
fn read_whole(
    chunks: &impl ReadableTable<(u64, u32), &'static [u8]>,
    blob: BlobId,
    size: u32,
) -> Result<(), StoreError> {
    let total = blobs::len(chunks, blob)?.unwrap_or(0);
    if total != u64::from(size) {
        return Err(StoreError::Corrupt(format!(
            "message body {blob} is {total} bytes, its record says {size}"
        )));
    }
    let mut at = 0;
    while at < total {
        let piece = blobs::piece(chunks, blob, total, at, blobs::BLOB_CHUNK)?;
        if piece.is_empty() {
            break;
        }
        at += piece.len() as u64;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use redb::ReadableTable;

    use crate::store::index::Chunk;
    use crate::store::records::{Flags, MailboxRecord};
    use crate::store::testing::{random_batch, temp_store, two_mailboxes, Lcg};
    use crate::store::Store;

    fn problems(store: &Store) -> Vec<String> {
        let verified = store.snapshot().unwrap().verify(&mut |_| {}).unwrap();
        verified
            .problems
            .iter()
            .map(|p| format!("{}: {}", p.place, p.what))
            .collect()
    }

    /// Damage planted in a sound store is found, and named where it is.
    #[test]
    fn planted_damage_is_found() {
        let (_dir, store) = temp_store();
        let mailboxes = two_mailboxes(&store);
        let mut rng = Lcg(11);
        for _ in 0..3 {
            random_batch(&store, &mailboxes, &mut rng);
        }
        let sound = store.snapshot().unwrap().verify(&mut |_| {}).unwrap();
        assert!(sound.problems.is_empty(), "{:?}", sound.problems);
        assert!(sound.messages > 100);

        // A reference count off by one.
        store
            .write_blocking(|tx| {
                let (blob, count) = {
                    let first = tx.blob_refs.first()?.expect("a blob");
                    (first.0.value(), first.1.value())
                };
                tx.blob_refs.insert(blob, count + 1)?;
                Ok(())
            })
            .unwrap();
        let found = problems(&store);
        assert!(
            found.len() == 1 && found[0].contains("reference count"),
            "{found:?}"
        );
        store
            .write_blocking(|tx| {
                let (blob, count) = {
                    let first = tx.blob_refs.first()?.expect("a blob");
                    (first.0.value(), first.1.value())
                };
                tx.blob_refs.insert(blob, count - 1)?;
                Ok(())
            })
            .unwrap();
        assert!(problems(&store).is_empty());

        // An index chunk that says a message has flags it has not.
        let mailbox = mailboxes[0];
        store
            .write_blocking(move |tx| {
                let (number, mut chunk) = {
                    let found = tx
                        .message_index
                        .range((mailbox, 0)..=(mailbox, u32::MAX))?
                        .next()
                        .expect("a chunk")?;
                    let number = found.0.value().1;
                    (number, Chunk::decode(number, found.1.value())?)
                };
                let flags = chunk.entries[0].flags;
                chunk.entries[0].flags = if flags.contains(Flags::FLAGGED) {
                    flags.without(Flags::FLAGGED)
                } else {
                    flags.with(Flags::FLAGGED)
                };
                tx.message_index
                    .insert((mailbox, number), chunk.encode().as_slice())?;
                Ok(())
            })
            .unwrap();
        let found = problems(&store);
        assert!(
            found.len() == 1 && found[0].contains("message index does not match"),
            "{found:?}"
        );

        // A mailbox whose running total is wrong.
        let other = mailboxes[1];
        store
            .write_blocking(move |tx| {
                let mut record = {
                    let found = tx.mailboxes.get(other)?.expect("a mailbox");
                    MailboxRecord::decode(found.value())?
                };
                record.exists += 1;
                tx.mailboxes.insert(other, record.encode().as_slice())?;
                Ok(())
            })
            .unwrap();
        let found = problems(&store);
        assert!(
            found.iter().any(|p| p.contains("MESSAGES is kept as")),
            "{found:?}"
        );

        // A message whose last chunk of bytes is gone.
        store
            .write_blocking(|tx| {
                let key = {
                    let last = tx.blob_chunks.last()?.expect("a chunk");
                    last.0.value()
                };
                tx.blob_chunks.remove(key)?;
                Ok(())
            })
            .unwrap();
        let found = problems(&store);
        assert!(
            found.iter().any(|p| p.contains("message body")),
            "{found:?}"
        );
    }
}
