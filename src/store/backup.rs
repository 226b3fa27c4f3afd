//! A consistent copy of the whole store, made from one read snapshot while
//! the server goes on writing (MVCC: the writer never waits for it).
//!
//! The copy is logical, table by table, into a new database file: it comes
//! out compact, and a damaged page in the source shows up as an error here
//! instead of being copied on. Each table is copied in batches of a few MiB,
//! each its own commit in the new file, so the copy's memory stays small
//! whatever the store's size.

use std::ops::Bound;
use std::path::Path;

use redb::TableDefinition;

use super::{
    Snapshot, StoreError, BLOB_CHUNKS, BLOB_REFS, EXPUNGED, MAILBOXES, MAILBOX_NAMES, MESSAGES,
    MESSAGE_INDEX, META, PARSED, SEARCH_HEADERS, SORT_KEYS, SUBSCRIPTIONS,
};

/// Bytes copied per commit in the new file.
const BATCH_BYTES: usize = 8 << 20;

/// A key type whose values can be kept across transactions, to resume a
/// batched copy after the last key copied.
trait ResumableKey: redb::Key + 'static {
    type Owned;
    fn own(key: Self::SelfType<'_>) -> Self::Owned;
    fn view(owned: &Self::Owned) -> Self::SelfType<'_>;
}

/// Keys that are plain numbers are their own owned form.
macro_rules! resumable_as_is {
    ($($key:ty),*) => {$(
        impl ResumableKey for $key {
            type Owned = $key;
            fn own(key: $key) -> $key {
                key
            }
            fn view(owned: &$key) -> $key {
                *owned
            }
        }
    )*};
}

resumable_as_is!(u64, (u64, u32), (u64, u64));

impl ResumableKey for (u64, &'static [u8], u32) {
    type Owned = (u64, Vec<u8>, u32);
    fn own(key: (u64, &[u8], u32)) -> (u64, Vec<u8>, u32) {
        (key.0, key.1.to_vec(), key.2)
    }
    fn view(owned: &(u64, Vec<u8>, u32)) -> (u64, &[u8], u32) {
        (owned.0, &owned.1, owned.2)
    }
}

impl ResumableKey for &'static str {
    type Owned = String;
    fn own(key: &str) -> String {
        key.to_string()
    }
    fn view(owned: &String) -> &str {
        owned
    }
}

impl ResumableKey for (&'static str, &'static str) {
    type Owned = (String, String);
    fn own(key: (&str, &str)) -> (String, String) {
        (key.0.to_string(), key.1.to_string())
    }
    fn view(owned: &(String, String)) -> (&str, &str) {
        (&owned.0, &owned.1)
    }
}

impl ResumableKey for (&'static str, u64, &'static str) {
    type Owned = (String, u64, String);
    fn own(key: (&str, u64, &str)) -> (String, u64, String) {
        (key.0.to_string(), key.1, key.2.to_string())
    }
    fn view(owned: &(String, u64, String)) -> (&str, u64, &str) {
        (&owned.0, owned.1, &owned.2)
    }
}

/// Copies one table from the snapshot into `dest`, a few MiB per commit.
fn copy_table<K: ResumableKey, V: redb::Value + 'static>(
    snapshot: &Snapshot,
    dest: &redb::Database,
    definition: TableDefinition<K, V>,
) -> Result<u64, StoreError> {
    let source = snapshot.txn.open_table(definition)?;
    let mut after: Option<K::Owned> = None;
    let mut copied = 0u64;
    loop {
        let txn = dest.begin_write()?;
        let mut finished = true;
        {
            let mut out = txn.open_table(definition)?;
            let start = match &after {
                Some(key) => Bound::Excluded(K::view(key)),
                None => Bound::Unbounded,
            };
            let mut bytes = 0;
            for entry in source.range::<K::SelfType<'_>>((start, Bound::Unbounded))? {
                let (key, value) = entry?;
                out.insert(key.value(), value.value())?;
                copied += 1;
                bytes += K::as_bytes(&key.value()).as_ref().len()
                    + V::as_bytes(&value.value()).as_ref().len();
                if bytes >= BATCH_BYTES {
                    after = Some(K::own(key.value()));
                    finished = false;
                    break;
                }
            }
        }
        txn.commit()?;
        if finished {
            return Ok(copied);
        }
    }
}

impl Snapshot {
    /// Writes everything this snapshot sees into a new database at `path`
    /// (which must not exist), durably. Returns how many records it copied.
    pub fn copy_into(&self, path: &Path) -> Result<u64, StoreError> {
        if path.exists() {
            return Err(StoreError::Refused(format!(
                "{} already exists",
                path.display()
            )));
        }
        let dest = redb::Database::builder()
            .set_cache_size(4 << 20)
            .create(path)?;
        let mut copied = 0;
        copied += copy_table(self, &dest, META)?;
        copied += copy_table(self, &dest, MAILBOXES)?;
        copied += copy_table(self, &dest, MAILBOX_NAMES)?;
        copied += copy_table(self, &dest, MESSAGES)?;
        copied += copy_table(self, &dest, BLOB_CHUNKS)?;
        copied += copy_table(self, &dest, BLOB_REFS)?;
        copied += copy_table(self, &dest, PARSED)?;
        copied += copy_table(self, &dest, SEARCH_HEADERS)?;
        copied += copy_table(self, &dest, SORT_KEYS)?;
        copied += copy_table(self, &dest, super::sort_orders::SUBJECT_ORDER)?;
        copied += copy_table(self, &dest, super::sort_orders::DATE_ORDER)?;
        copied += copy_table(self, &dest, EXPUNGED)?;
        copied += copy_table(self, &dest, MESSAGE_INDEX)?;
        copied += copy_table(self, &dest, SUBSCRIPTIONS)?;
        copied += copy_table(self, &dest, super::quota::QUOTA_USAGE)?;
        copied += copy_table(self, &dest, super::metadata::METADATA)?;
        Ok(copied)
    }

    /// The schema version the snapshot's file was written with.
    pub fn schema_version(&self) -> Result<u32, StoreError> {
        let meta = self.txn.open_table(META)?;
        let found = meta.get("schema_version")?;
        let bytes = found.ok_or_else(|| StoreError::Corrupt("schema version (missing)".into()))?;
        <[u8; 4]>::try_from(bytes.value())
            .map(u32::from_le_bytes)
            .map_err(|_| StoreError::Corrupt("schema version".into()))
    }
}
