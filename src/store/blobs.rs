//! Message bytes, kept in chunks of [`BLOB_CHUNK`] bytes under (blob id,
//! chunk number).
//!
//! redb hands a value back whole, so a message stored as one value is read
//! whole: a FETCH of a 50 MiB message would hold 50 MiB per client. In
//! chunks, a reader holds one chunk at a time, and a partial FETCH reads
//! only the chunks its range touches. Chunk `n` holds bytes
//! `n * BLOB_CHUNK ..`; every chunk but the last is full, which lets a reader
//! find a blob's length from its last chunk alone and check every chunk it
//! reads for damage.
//!
//! Since schema 4 each stored chunk ends in the CRC32C of its bytes (4
//! bytes, little-endian), written at delivery and checked on every read: a
//! damaged page of the file becomes [`StoreError::Corrupt`], never altered
//! content. CRC32C has hardware instructions on x86-64 (SSE 4.2) and ARMv8,
//! which the `crc32c` crate uses when the CPU has them: tens of GB/s, so the
//! check costs nothing next to the read.

use std::ops::Range;

use redb::ReadableTable;

use super::{BlobId, StoreError, BLOBS_V2, BLOB_CHUNKS};

/// Bytes per chunk. 64 KiB keeps what one streaming client holds small and
/// is large enough that a 50 MiB message is only 800 lookups.
pub const BLOB_CHUNK: usize = 64 * 1024;

/// The checksum's length at the end of each stored chunk.
const SUM: usize = 4;

/// Writes `raw` as the chunks of `blob`, each with its checksum.
pub(super) fn put(
    table: &mut redb::Table<'_, (u64, u32), &'static [u8]>,
    blob: BlobId,
    raw: &[u8],
) -> Result<(), StoreError> {
    let mut stored = Vec::with_capacity(BLOB_CHUNK.min(raw.len()) + SUM);
    for (n, piece) in raw.chunks(BLOB_CHUNK).enumerate() {
        let n = u32::try_from(n).map_err(|_| StoreError::Limit("message too large".into()))?;
        sealed(piece, &mut stored);
        table.insert((blob, n), stored.as_slice())?;
    }
    Ok(())
}

/// `piece` followed by its checksum, into `out`.
fn sealed(piece: &[u8], out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(piece);
    out.extend_from_slice(&crc32c::crc32c(piece).to_le_bytes());
}

/// The bytes of stored chunk `n` of `blob`, checked against its checksum.
fn unsealed(blob: BlobId, n: u32, stored: &[u8]) -> Result<&[u8], StoreError> {
    let Some(split) = stored.len().checked_sub(SUM) else {
        return Err(StoreError::Corrupt(format!(
            "message body {blob} (chunk {n} is too short)"
        )));
    };
    let (bytes, sum) = stored.split_at(split);
    let sum = u32::from_le_bytes([sum[0], sum[1], sum[2], sum[3]]);
    if crc32c::crc32c(bytes) != sum {
        return Err(StoreError::Corrupt(format!(
            "message body {blob} (chunk {n} fails its checksum)"
        )));
    }
    Ok(bytes)
}

/// Removes every chunk of `blob`; returns how many bytes they held.
pub(super) fn remove(
    table: &mut redb::Table<'_, (u64, u32), &'static [u8]>,
    blob: BlobId,
) -> Result<u64, StoreError> {
    let mut freed = 0u64;
    table.retain_in((blob, 0)..=(blob, u32::MAX), |_, value| {
        freed += value.len() as u64;
        false
    })?;
    Ok(freed)
}

/// The length of a blob, from its last chunk; None when it has no chunks
/// (an empty message, or one that is gone: callers tell them apart by the
/// message record's size).
pub(super) fn len(
    table: &impl ReadableTable<(u64, u32), &'static [u8]>,
    blob: BlobId,
) -> Result<Option<u64>, StoreError> {
    let last = table.range((blob, 0)..=(blob, u32::MAX))?.next_back();
    match last {
        None => Ok(None),
        Some(entry) => {
            let (key, value) = entry?;
            let n = u64::from(key.value().1);
            let bytes = value.value().len().checked_sub(SUM).ok_or_else(|| {
                StoreError::Corrupt(format!("message body {blob} (last chunk is too short)"))
            })?;
            Ok(Some(n * BLOB_CHUNK as u64 + bytes as u64))
        }
    }
}

/// Up to `max` bytes of `blob` from `offset`, never crossing a chunk: what a
/// streaming reader sends next. Empty at or past the end. `total` is the
/// blob's length from [`len`], against which the chunk is checked.
pub(super) fn piece(
    table: &impl ReadableTable<(u64, u32), &'static [u8]>,
    blob: BlobId,
    total: u64,
    offset: u64,
    max: usize,
) -> Result<Vec<u8>, StoreError> {
    if offset >= total || max == 0 {
        return Ok(Vec::new());
    }
    let chunk = BLOB_CHUNK as u64;
    let n = u32::try_from(offset / chunk)
        .map_err(|_| StoreError::Corrupt(format!("message body {blob} (offset)")))?;
    let want_len = (total - u64::from(n) * chunk).min(chunk) as usize;
    let found = table.get((blob, n))?;
    let Some(value) = found else {
        return Err(StoreError::Corrupt(format!(
            "message body {blob} (chunk {n} missing)"
        )));
    };
    let bytes = unsealed(blob, n, value.value())?;
    if bytes.len() != want_len {
        return Err(StoreError::Corrupt(format!(
            "message body {blob} (chunk {n} has the wrong length)"
        )));
    }
    let start = (offset % chunk) as usize;
    let end = start.saturating_add(max).min(bytes.len());
    Ok(bytes[start..end].to_vec())
}

/// The bytes of `range` within `blob`, clipped to its end, in memory: for
/// the small reads (a header, a MIME part being decoded).
pub(super) fn read_range(
    table: &impl ReadableTable<(u64, u32), &'static [u8]>,
    blob: BlobId,
    total: u64,
    range: Range<u64>,
) -> Result<Vec<u8>, StoreError> {
    let end = range.end.min(total);
    let mut out = Vec::with_capacity(end.saturating_sub(range.start) as usize);
    let mut at = range.start;
    while at < end {
        let piece = piece(table, blob, total, at, (end - at) as usize)?;
        if piece.is_empty() {
            break;
        }
        at += piece.len() as u64;
        out.extend_from_slice(&piece);
    }
    Ok(out)
}

/// Checks every chunk of `blob` (`total` bytes long, from [`len`]) against
/// its checksum without keeping any: done before a reply that cannot be
/// taken back (a literal's size, POP3's +OK) starts.
pub(super) fn verify(
    table: &impl ReadableTable<(u64, u32), &'static [u8]>,
    blob: BlobId,
    total: u64,
) -> Result<(), StoreError> {
    let mut at = 0;
    while at < total {
        let n = at / BLOB_CHUNK as u64;
        let piece = piece(table, blob, total, at, BLOB_CHUNK)?;
        if piece.is_empty() {
            break;
        }
        at = (n + 1) * BLOB_CHUNK as u64;
    }
    Ok(())
}

/// Schema 3 → 4: every chunk gets its checksum. The bytes are taken as they
/// are now: damage older than the upgrade cannot be told apart from mail.
pub(super) fn upgrade_to_v4(txn: &redb::WriteTransaction) -> Result<(), StoreError> {
    let mut chunks = txn.open_table(BLOB_CHUNKS)?;
    let mut sealed_chunks = 0u64;
    let mut stored = Vec::with_capacity(BLOB_CHUNK + SUM);
    // A key at a time: the table is edited while walked, and one chunk is
    // all that is held in memory.
    let mut next = chunks.first()?.map(|(key, _)| key.value());
    while let Some(key) = next {
        {
            let found = chunks.get(key)?;
            let Some(value) = found else { break };
            sealed(value.value(), &mut stored);
        }
        chunks.insert(key, stored.as_slice())?;
        sealed_chunks += 1;
        next = match chunks
            .range((std::ops::Bound::Excluded(key), std::ops::Bound::Unbounded))?
            .next()
        {
            Some(entry) => Some(entry?.0.value()),
            None => None,
        };
    }
    log::info!(
        "store: upgraded the database to schema 4 ({sealed_chunks} message chunks now carry a checksum)"
    );
    Ok(())
}

/// Schema 2 → 3: splits each message kept as one value (the `blobs` table
/// of schemas 1 and 2) into chunks, then drops the old table. Reference
/// counts, analyses and message records keep their blob ids, so COPY's
/// sharing is untouched.
pub(super) fn upgrade_to_v3(txn: &redb::WriteTransaction) -> Result<(), StoreError> {
    let mut moved = 0u64;
    {
        let old = txn.open_table(BLOBS_V2)?;
        let mut chunks = txn.open_table(BLOB_CHUNKS)?;
        for entry in old.iter()? {
            let (blob, raw) = entry?;
            put(&mut chunks, blob.value(), raw.value())?;
            moved += 1;
        }
    }
    txn.delete_table(BLOBS_V2)?;
    log::info!("store: upgraded the database to schema 3 ({moved} message bodies now in chunks)");
    Ok(())
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::store::testing::{temp_store, two_mailboxes, Lcg};
    use crate::store::{Analysis, Flags, Store, META};
    use redb::ReadableDatabase;

    /// Sizes around the chunk edges.
    fn sizes() -> Vec<usize> {
        let c = BLOB_CHUNK;
        vec![1, 2, c - 1, c, c + 1, 2 * c, 3 * c + 5]
    }

    fn body(size: usize, seed: u64) -> Vec<u8> {
        let mut rng = Lcg(seed);
        let mut raw = b"Subject: chunks\r\n\r\n".to_vec();
        while raw.len() < size {
            raw.push(b'a' + rng.below(26) as u8);
        }
        raw.truncate(size);
        raw
    }

    /// Appends messages of every size in `sizes` to INBOX, plus a COPY of
    /// each to the second mailbox (the blob then has two references).
    fn fill(store: &Store) -> Vec<crate::store::MailboxId> {
        let mailboxes = two_mailboxes(store);
        let (inbox, other) = (mailboxes[0], mailboxes[1]);
        for (i, size) in sizes().into_iter().enumerate() {
            let raw = body(size, i as u64);
            store
                .write_blocking(move |tx| {
                    let uid = tx.append_message(
                        inbox,
                        &raw,
                        &Analysis::default(),
                        Flags::default(),
                        Vec::new(),
                        (0, 0),
                    )?;
                    tx.copy_messages(inbox, &[uid], other)
                })
                .unwrap();
        }
        mailboxes
    }

    #[test]
    fn pieces_and_ranges_across_chunk_edges() {
        let (_dir, store) = temp_store();
        let inbox = fill(&store)[0];
        let snap = store.snapshot().unwrap();
        let content = snap.content().unwrap();
        for (i, (uid, record)) in snap.messages(inbox).unwrap().into_iter().enumerate() {
            let want = body(sizes()[i], i as u64);
            assert_eq!(record.size as usize, want.len(), "uid {uid}");
            let total = content.blob_len(record.blob).unwrap().unwrap();
            assert_eq!(total, want.len() as u64);
            assert_eq!(snap.blob(record.blob).unwrap(), want);
            let c = BLOB_CHUNK as u64;
            for (start, end) in [(0, 1), (c - 3, c + 3), (c, 2 * c + 1), (5, u64::MAX)] {
                let got = content.blob_range(record.blob, start..end).unwrap();
                let s = (start as usize).min(want.len());
                let e = (end.min(want.len() as u64)) as usize;
                assert_eq!(got, want[s..e.max(s)], "uid {uid} {start}..{end}");
            }
        }
        store.shutdown();
    }

    #[test]
    fn a_damaged_chunk_is_an_error() {
        let (dir, store) = temp_store();
        let inbox = fill(&store)[0];
        let blob = store.snapshot().unwrap().messages(inbox).unwrap()[6].1.blob;
        store.shutdown();
        drop(store);
        let path = dir.path().join("t.redb");
        {
            let db = redb::Database::create(&path).unwrap();
            let txn = db.begin_write().unwrap();
            txn.open_table(BLOB_CHUNKS)
                .unwrap()
                .insert((blob, 1), b"short".as_slice())
                .unwrap();
            txn.commit().unwrap();
        }
        let (store, _changes) = Store::open(&path, 1 << 20).unwrap();
        let snap = store.snapshot().unwrap();
        assert!(matches!(snap.blob(blob), Err(StoreError::Corrupt(_))));
        let content = snap.content().unwrap();
        // The first chunk is intact and still reads.
        assert_eq!(content.blob_range(blob, 0..10).unwrap().len(), 10);
        store.shutdown();
    }

    /// Turns the file's chunked bodies back into what schemas 1 and 2
    /// wrote: one value per message in the `blobs` table.
    pub(crate) fn unchunk(txn: &redb::WriteTransaction) {
        {
            let chunks = txn.open_table(BLOB_CHUNKS).unwrap();
            let mut old = txn.open_table(BLOBS_V2).unwrap();
            let mut whole: std::collections::BTreeMap<u64, Vec<u8>> = Default::default();
            for entry in chunks.iter().unwrap() {
                let (key, value) = entry.unwrap();
                let stored = value.value();
                whole
                    .entry(key.value().0)
                    .or_default()
                    .extend_from_slice(&stored[..stored.len() - SUM]);
            }
            for (blob, raw) in whole {
                old.insert(blob, raw.as_slice()).unwrap();
            }
        }
        txn.delete_table(BLOB_CHUNKS).unwrap();
    }

    #[test]
    fn schema_2_files_get_their_bodies_chunked() {
        let (dir, store) = temp_store();
        let mailboxes = fill(&store);
        let read_all = |store: &Store| {
            let snap = store.snapshot().unwrap();
            let mut all = Vec::new();
            for &m in &mailboxes {
                for (uid, record) in snap.messages(m).unwrap() {
                    all.push((m, uid, record.blob, snap.blob(record.blob).unwrap()));
                }
            }
            all
        };
        let before = read_all(&store);
        store.shutdown();
        drop(store);
        let path = dir.path().join("t.redb");
        {
            let db = redb::Database::create(&path).unwrap();
            let txn = db.begin_write().unwrap();
            unchunk(&txn);
            txn.open_table(META)
                .unwrap()
                .insert("schema_version", 2u32.to_le_bytes().as_slice())
                .unwrap();
            txn.commit().unwrap();
        }
        let (store, _changes) = Store::open(&path, 1 << 20).unwrap();
        assert_eq!(read_all(&store), before);
        // The old table is gone, and COPY's shared references still count:
        // expunging one copy keeps the bytes, expunging both frees them.
        let (inbox, other) = (mailboxes[0], mailboxes[1]);
        let blob = before[0].2;
        store
            .write_blocking(move |tx| tx.expunge(inbox, &[1]))
            .unwrap();
        assert!(store.snapshot().unwrap().blob(blob).is_ok());
        store
            .write_blocking(move |tx| tx.expunge(other, &[1]))
            .unwrap();
        assert!(store.snapshot().unwrap().blob(blob).is_err());
        store.shutdown();
        drop(store);
        let db = redb::Database::create(&path).unwrap();
        let txn = db.begin_read().unwrap();
        assert!(txn.open_table(BLOBS_V2).is_err());
    }
}
