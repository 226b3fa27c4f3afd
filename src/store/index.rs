//! The message index: per mailbox, each message's UID, MODSEQ, flags and
//! keywords, packed by UID range into chunks of [`CHUNK_UIDS`] UIDs.
//!
//! `messages` keeps one record per message, which suits reading a message but
//! not the questions asked about a whole mailbox at once: SELECT and every
//! session's sync want each message's UID, MODSEQ and flags, and decoding
//! 100,000 records one by one took 10 ms. Here they come in about a hundred
//! values laid out as columns that decode at memory speed. Each chunk also
//! carries the MODSEQ of its last change, so a sync passes over every chunk
//! that has not changed since it last looked.
//!
//! The write operations (ops.rs) keep the index in the same transaction as
//! the records it mirrors. A batch edits each chunk it touches once, in
//! memory ([`WriteCtx::chunk_mut`]), and writes it back before the commit
//! ([`WriteCtx::flush_index`]): copying a thousand messages rewrites one
//! chunk once, not a thousand times.

use redb::ReadableTable;

use super::records::{Decoder, Encoder, Flags};
use super::{MailboxId, StoreError, WriteCtx};

/// UIDs per chunk: a chunk holds at most this many messages, about 14 KiB.
/// Chunk `n` holds UIDs `n * CHUNK_UIDS .. (n + 1) * CHUNK_UIDS`, so a UID's
/// chunk never changes and appends only ever touch the last one.
pub const CHUNK_UIDS: u32 = 1024;

pub fn chunk_of(uid: u32) -> u32 {
    uid / CHUNK_UIDS
}

/// One message as the index knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexEntry {
    pub uid: u32,
    pub modseq: u64,
    pub flags: Flags,
    pub keywords: Vec<String>,
}

/// A chunk decoded for editing, in the writer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Chunk {
    /// The MODSEQ of the last change to any message in the chunk, including
    /// arrivals and expunges.
    pub modseq: u64,
    /// In UID order.
    pub entries: Vec<IndexEntry>,
}

const CHUNK_V1: u8 = 1;
/// Version, chunk MODSEQ, count.
const HEADER_LEN: usize = 1 + 8 + 4;

impl Chunk {
    /// Layout: version, MODSEQ, count, then the columns (UIDs, MODSEQs,
    /// flags), then the keywords of the messages that have any, each as its
    /// position in the chunk and its list.
    pub fn encode(&self) -> Vec<u8> {
        let n = self.entries.len();
        let mut e = Encoder(Vec::with_capacity(HEADER_LEN + n * 14 + 4));
        e.u8(CHUNK_V1);
        e.u64(self.modseq);
        e.u32(n as u32);
        self.entries.iter().for_each(|m| e.u32(m.uid));
        self.entries.iter().for_each(|m| e.u64(m.modseq));
        self.entries.iter().for_each(|m| e.u16(m.flags.0));
        let with_keywords = self.entries.iter().filter(|m| !m.keywords.is_empty());
        e.u32(with_keywords.clone().count() as u32);
        for (position, m) in self.entries.iter().enumerate() {
            if m.keywords.is_empty() {
                continue;
            }
            e.u16(position as u16);
            e.u16(m.keywords.len() as u16);
            m.keywords.iter().for_each(|k| e.str(k));
        }
        e.0
    }

    pub fn decode(number: u32, bytes: &[u8]) -> Result<Chunk, StoreError> {
        ChunkRef::parse(number, bytes)?.to_chunk()
    }

    fn find(&self, uid: u32) -> Result<usize, usize> {
        self.entries.binary_search_by_key(&uid, |m| m.uid)
    }
}

/// A stored chunk read in place, for sessions building and syncing their
/// views. [`ChunkRef::parse`] checks the whole layout, so the accessors
/// cannot run past the end.
pub struct ChunkRef<'a> {
    pub number: u32,
    pub modseq: u64,
    count: usize,
    uids: &'a [u8],
    modseqs: &'a [u8],
    flags: &'a [u8],
    keywords: &'a [u8],
}

impl<'a> ChunkRef<'a> {
    pub fn parse(number: u32, bytes: &'a [u8]) -> Result<ChunkRef<'a>, StoreError> {
        let corrupt = || StoreError::Corrupt(format!("message index chunk {number}"));
        let mut d = Decoder(bytes);
        if d.u8() != Some(CHUNK_V1) {
            return Err(corrupt());
        }
        let modseq = d.u64().ok_or_else(corrupt)?;
        let count = d.u32().ok_or_else(corrupt)? as usize;
        if count > CHUNK_UIDS as usize {
            return Err(corrupt());
        }
        let rest = d.0;
        let columns = count * (4 + 8 + 2);
        if rest.len() < columns + 4 {
            return Err(corrupt());
        }
        let (uids, rest) = rest.split_at(count * 4);
        let (modseqs, rest) = rest.split_at(count * 8);
        let (flags, keywords) = rest.split_at(count * 2);
        let chunk = ChunkRef {
            number,
            modseq,
            count,
            uids,
            modseqs,
            flags,
            keywords,
        };
        // The views binary-search these UIDs: they must ascend and belong here.
        let mut previous = None;
        for uid in chunk.uids() {
            if chunk_of(uid) != number || previous.is_some_and(|p| p >= uid) {
                return Err(corrupt());
            }
            previous = Some(uid);
        }
        Ok(chunk)
    }

    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    pub fn uids(&self) -> impl Iterator<Item = u32> + 'a {
        self.uids
            .chunks_exact(4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub fn modseqs(&self) -> impl Iterator<Item = u64> + 'a {
        self.modseqs
            .chunks_exact(8)
            .map(|b| u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))
    }

    pub fn flags(&self) -> impl Iterator<Item = Flags> + 'a {
        self.flags
            .chunks_exact(2)
            .map(|b| Flags(u16::from_le_bytes([b[0], b[1]])))
    }

    /// The chunk decoded for editing.
    pub fn to_chunk(&self) -> Result<Chunk, StoreError> {
        let mut entries: Vec<IndexEntry> = self
            .uids()
            .zip(self.modseqs())
            .zip(self.flags())
            .map(|((uid, modseq), flags)| IndexEntry {
                uid,
                modseq,
                flags,
                keywords: Vec::new(),
            })
            .collect();
        for (position, keywords) in self.keywords()? {
            entries[position].keywords = keywords;
        }
        Ok(Chunk {
            modseq: self.modseq,
            entries,
        })
    }

    /// The messages that have keywords: (position in the chunk, keywords).
    pub fn keywords(&self) -> Result<Vec<(usize, Vec<String>)>, StoreError> {
        let corrupt = || StoreError::Corrupt(format!("message index chunk {}", self.number));
        let mut d = Decoder(self.keywords);
        let n = d.u32().ok_or_else(corrupt)? as usize;
        if n > self.count {
            return Err(corrupt());
        }
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            let position = d.u16().ok_or_else(corrupt)? as usize;
            let k = d.u16().ok_or_else(corrupt)?;
            if position >= self.count {
                return Err(corrupt());
            }
            let mut keywords = Vec::with_capacity(usize::from(k).min(64));
            for _ in 0..k {
                keywords.push(d.str().ok_or_else(corrupt)?);
            }
            out.push((position, keywords));
        }
        Ok(out)
    }
}

/// A chunk being edited by a batch, and whether the batch changed it.
#[derive(Default)]
pub(super) struct PendingChunk {
    chunk: Chunk,
    changed: bool,
}

impl WriteCtx<'_> {
    /// Reads the chunks holding `uids` into the batch's edits. Operations call
    /// this before changing anything, so that a damaged chunk is an error
    /// while an error still means nothing was changed.
    pub(super) fn load_chunks(
        &mut self,
        mailbox: MailboxId,
        uids: impl IntoIterator<Item = u32>,
    ) -> Result<(), StoreError> {
        let mut last = None;
        for uid in uids {
            let number = chunk_of(uid);
            if last == Some(number) {
                continue;
            }
            last = Some(number);
            self.chunk_mut(mailbox, number)?;
        }
        Ok(())
    }

    /// The chunk `number` of `mailbox` as this batch has it so far (empty if
    /// there is none yet).
    fn chunk_mut(
        &mut self,
        mailbox: MailboxId,
        number: u32,
    ) -> Result<&mut PendingChunk, StoreError> {
        let key = (mailbox, number);
        if !self.pending_chunks.contains_key(&key) {
            let stored = self.message_index.get(key)?;
            let chunk = match stored {
                Some(bytes) => Chunk::decode(number, bytes.value())?,
                None => Chunk::default(),
            };
            let pending = PendingChunk {
                chunk,
                changed: false,
            };
            self.pending_chunks.insert(key, pending);
        }
        Ok(self.pending_chunks.entry(key).or_default())
    }

    /// Adds a message to the index, or replaces its entry.
    pub(super) fn index_put(
        &mut self,
        mailbox: MailboxId,
        entry: IndexEntry,
    ) -> Result<(), StoreError> {
        let pending = self.chunk_mut(mailbox, chunk_of(entry.uid))?;
        pending.changed = true;
        let chunk = &mut pending.chunk;
        chunk.modseq = chunk.modseq.max(entry.modseq);
        match chunk.find(entry.uid) {
            Ok(i) => chunk.entries[i] = entry,
            Err(i) => chunk.entries.insert(i, entry),
        }
        Ok(())
    }

    /// Removes a message from the index; `modseq` is the MODSEQ of the
    /// expunge.
    pub(super) fn index_remove(
        &mut self,
        mailbox: MailboxId,
        uid: u32,
        modseq: u64,
    ) -> Result<(), StoreError> {
        let pending = self.chunk_mut(mailbox, chunk_of(uid))?;
        if let Ok(i) = pending.chunk.find(uid) {
            pending.chunk.entries.remove(i);
            pending.chunk.modseq = pending.chunk.modseq.max(modseq);
            pending.changed = true;
        }
        Ok(())
    }

    /// Writes back every chunk this batch changed; empty ones are removed.
    pub(super) fn flush_index(&mut self) -> Result<(), StoreError> {
        for (key, pending) in std::mem::take(&mut self.pending_chunks) {
            let chunk = pending.chunk;
            if !pending.changed {
                continue;
            }
            if chunk.entries.is_empty() {
                self.message_index.remove(key)?;
            } else {
                self.message_index.insert(key, chunk.encode().as_slice())?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing::{random_batch, temp_store, two_mailboxes, Lcg};
    use crate::store::Store;

    /// The index must say exactly what the message records say.
    fn check(store: &Store, mailbox: MailboxId) {
        let snapshot = store.snapshot().unwrap();
        let record = snapshot.mailbox(mailbox).unwrap().unwrap();
        let mut indexed = Vec::new();
        snapshot
            .for_each_chunk(mailbox, |chunk| {
                assert!(!chunk.is_empty(), "empty chunk {} kept", chunk.number);
                assert!(chunk.modseq <= record.highest_modseq);
                let mut entries = chunk.to_chunk()?.entries;
                assert!(entries.iter().all(|e| e.modseq <= chunk.modseq));
                indexed.append(&mut entries);
                Ok(())
            })
            .unwrap();
        let stored: Vec<IndexEntry> = snapshot
            .messages(mailbox)
            .unwrap()
            .into_iter()
            .map(|(uid, m)| IndexEntry {
                uid,
                modseq: m.modseq,
                flags: m.flags,
                keywords: m.keywords,
            })
            .collect();
        assert_eq!(indexed, stored);
        for k in stored.iter().flat_map(|e| &e.keywords) {
            assert!(record.keywords.contains(k), "{k} missing from the list");
        }
    }

    #[test]
    fn index_follows_every_change() {
        let (_dir, store) = temp_store();
        let mailboxes = two_mailboxes(&store);
        let mut rng = Lcg(11);
        for _ in 0..40 {
            random_batch(&store, &mailboxes, &mut rng);
            for &mailbox in &mailboxes {
                check(&store, mailbox);
            }
        }
        // Deleting a mailbox takes its index with it.
        store
            .write_blocking(|tx| tx.delete_mailbox("alice", "Other"))
            .unwrap();
        let mut left = 0;
        let snapshot = store.snapshot().unwrap();
        snapshot
            .for_each_chunk(mailboxes[1], |_| {
                left += 1;
                Ok(())
            })
            .unwrap();
        assert_eq!(left, 0);
    }

    fn sample() -> Chunk {
        Chunk {
            modseq: 77,
            entries: vec![
                IndexEntry {
                    uid: 1025,
                    modseq: 5,
                    flags: Flags::SEEN,
                    keywords: Vec::new(),
                },
                IndexEntry {
                    uid: 1030,
                    modseq: 77,
                    flags: Flags::DELETED.with(Flags::POP3_HIDDEN),
                    keywords: vec!["$Forwarded".into(), "work".into()],
                },
                IndexEntry {
                    uid: 2047,
                    modseq: 9,
                    flags: Flags::default(),
                    keywords: vec!["x".into()],
                },
            ],
        }
    }

    /// Every index entry of a mailbox, and the mailbox's keyword list sorted.
    fn indexed(store: &Store, mailbox: MailboxId) -> (Vec<IndexEntry>, Vec<String>) {
        let snapshot = store.snapshot().unwrap();
        let mut entries = Vec::new();
        snapshot
            .for_each_chunk(mailbox, |chunk| {
                entries.extend(chunk.to_chunk()?.entries);
                Ok(())
            })
            .unwrap();
        let mut keywords = snapshot.mailbox(mailbox).unwrap().unwrap().keywords;
        keywords.sort();
        (entries, keywords)
    }

    #[test]
    fn schema_1_files_get_their_index_built() {
        use crate::store::{MAILBOXES, MESSAGE_INDEX, META};
        let (dir, store) = temp_store();
        let mailboxes = two_mailboxes(&store);
        let mut rng = Lcg(3);
        for _ in 0..10 {
            random_batch(&store, &mailboxes, &mut rng);
        }
        let before: Vec<_> = mailboxes.iter().map(|&m| indexed(&store, m)).collect();
        assert!(before.iter().any(|(e, k)| !e.is_empty() && !k.is_empty()));
        let bodies = |store: &Store| -> Vec<Vec<u8>> {
            let snapshot = store.snapshot().unwrap();
            let mut all = Vec::new();
            for &mailbox in &mailboxes {
                for (_, message) in snapshot.messages(mailbox).unwrap() {
                    all.push(snapshot.blob(message.blob).unwrap());
                }
            }
            all
        };
        let bodies_before = bodies(&store);
        store.shutdown();
        drop(store);

        // Turn the file back into what schema 1 wrote: no index, and
        // mailbox records without the keyword list.
        let path = dir.path().join("t.redb");
        {
            let db = redb::Database::create(&path).unwrap();
            let txn = db.begin_write().unwrap();
            txn.delete_table(MESSAGE_INDEX).unwrap();
            txn.delete_table(crate::store::sort_orders::SUBJECT_ORDER)
                .unwrap();
            txn.delete_table(crate::store::sort_orders::DATE_ORDER)
                .unwrap();
            crate::store::blobs::tests::unchunk(&txn);
            {
                let mut meta = txn.open_table(META).unwrap();
                meta.insert("schema_version", 1u32.to_le_bytes().as_slice())
                    .unwrap();
                let mut table = txn.open_table(MAILBOXES).unwrap();
                for &id in &mailboxes {
                    let mut record = crate::store::MailboxRecord::decode(
                        table.get(id).unwrap().unwrap().value(),
                    )
                    .unwrap();
                    record.keywords.clear();
                    // Schema 1 kept subscriptions in the record: the first
                    // mailbox was subscribed, the second not.
                    let v1 = crate::store::records::encode_legacy(&record, 1, id == mailboxes[0]);
                    table.insert(id, v1.as_slice()).unwrap();
                }
                txn.delete_table(crate::store::SUBSCRIPTIONS).unwrap();
            }
            txn.commit().unwrap();
        }
        let (store, _changes) = Store::open(&path, 1 << 20).unwrap();
        let snapshot = store.snapshot().unwrap();
        let names: Vec<String> = mailboxes
            .iter()
            .map(|&m| snapshot.mailbox(m).unwrap().unwrap().name)
            .collect();
        let owner = snapshot.mailbox(mailboxes[0]).unwrap().unwrap().owner;
        assert_eq!(snapshot.subscriptions(&owner).unwrap(), [names[0].clone()]);
        let after: Vec<_> = mailboxes.iter().map(|&m| indexed(&store, m)).collect();
        assert_eq!(after, before);
        // And through schema 2 to 3: the bodies are in chunks. Through 7,
        // the subject order is built.
        assert_eq!(bodies(&store), bodies_before);
        let verified = store.snapshot().unwrap().verify(&mut |_| {}).unwrap();
        assert_eq!(verified.problems, []);
        for &mailbox in &mailboxes {
            check(&store, mailbox);
        }
    }

    #[test]
    fn round_trip() {
        let chunk = sample();
        assert_eq!(Chunk::decode(1, &chunk.encode()).unwrap(), chunk);
        assert_eq!(
            Chunk::decode(0, &Chunk::default().encode()).unwrap(),
            Chunk::default()
        );
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut rng = Lcg(99);
        let valid = sample().encode();
        for _ in 0..20_000 {
            // Mostly damaged copies of a valid chunk, some pure noise.
            let mut bytes = if rng.below(4) == 0 {
                (0..rng.below(200)).map(|_| rng.below(256) as u8).collect()
            } else {
                valid.clone()
            };
            for _ in 0..1 + rng.below(4) {
                if !bytes.is_empty() {
                    let at = rng.below(bytes.len() as u64) as usize;
                    bytes[at] = rng.below(256) as u8;
                }
            }
            bytes.truncate(rng.below(bytes.len() as u64 + 1) as usize);
            if let Ok(chunk) = ChunkRef::parse(1, &bytes) {
                let _ = chunk.to_chunk();
                assert_eq!(chunk.uids().count(), chunk.len());
            }
        }
    }

    #[test]
    fn damage_is_an_error_not_a_panic() {
        let bytes = sample().encode();
        for cut in 0..bytes.len() {
            assert!(Chunk::decode(1, &bytes[..cut]).is_err(), "cut at {cut}");
        }
        // The UIDs belong to chunk 1, not 0 or 2.
        assert!(Chunk::decode(0, &bytes).is_err());
        assert!(Chunk::decode(2, &bytes).is_err());
        // UIDs out of order.
        let mut swapped = sample();
        swapped.entries.swap(0, 1);
        assert!(Chunk::decode(1, &swapped.encode()).is_err());
        // A keyword entry pointing past the messages.
        let mut past = bytes.clone();
        let at = HEADER_LEN + 3 * 14 + 4;
        past[at] = 9;
        assert!(Chunk::decode(1, &past).is_err());
        let mut newer = bytes;
        newer[0] = 2;
        assert!(Chunk::decode(1, &newer).is_err());
    }
}
