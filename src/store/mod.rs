//! The mail store: the only code that knows redb.
//!
//! Everything lives in one redb file (`DATA/letterbox.redb`). Reads happen on
//! the caller's thread in MVCC snapshots ([`Snapshot`]); writes go to one
//! writer thread that commits whatever is queued in one transaction and one
//! fsync (see [`writer`]). Protocols speak in users, mailboxes, UIDs and flags.

mod backup;
mod blobs;
mod events;
mod expunges;
mod import;
mod index;
mod metadata;
mod ops;
mod quota;
mod records;
mod sort_orders;
mod space;
mod verify;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};

use redb::{ReadableDatabase, ReadableTable, TableDefinition};

pub use blobs::BLOB_CHUNK;
pub use events::{Change, Hub};
pub use expunges::{ExpungeHold, ExpungePin, KEEP_RECORDS, KEEP_UIDS};
pub use import::ImportUid;
pub use index::{chunk_of, ChunkRef, CHUNK_UIDS};
pub use metadata::{MetadataSet, SERVER_ENTRIES};
pub use ops::{Analysis, Changed, Delivered, DeliveryTarget, FlagChange};
pub use quota::{NoticeMaker, QuotaCheck, QuotaLimits, Usage, WARN_PERCENT};
/// For the fuzz targets (fuzz/): the one record decoder with no other public path.
#[doc(hidden)]
pub use records::{decode_uids, encode_uids};
pub use records::{Flags, MailboxRecord, MessageRecord, SpecialUse};
pub use sort_orders::{date_key, StoredOrder};
pub use space::{DEFAULT_MIN_FREE, DEFAULT_PERCENT};
pub use verify::{Problem, Verified};
pub use writer::WriteCtx;

pub type MailboxId = u64;
pub type BlobId = u64;

/// The schema this binary writes. A file with a newer one is refused, since an
/// older binary cannot know what the newer one's records mean (or, as with
/// version 2's message index, would not keep them up to date).
pub const SCHEMA_VERSION: u32 = 8;

/// The most distinct keywords one mailbox may hold: SELECT lists them all,
/// and every write to the mailbox carries the list.
pub const MAX_MAILBOX_KEYWORDS: usize = 256;

const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const MAILBOXES: TableDefinition<u64, &[u8]> = TableDefinition::new("mailboxes");
const MAILBOX_NAMES: TableDefinition<(&str, &str), u64> = TableDefinition::new("mailbox_names");
const MESSAGES: TableDefinition<(u64, u32), &[u8]> = TableDefinition::new("messages");
/// Schemas 1 and 2 kept each message's bytes as one value; read only to
/// upgrade (blobs.rs).
const BLOBS_V2: TableDefinition<u64, &[u8]> = TableDefinition::new("blobs");
/// (blob id, chunk number) → up to [`BLOB_CHUNK`] bytes of a message.
const BLOB_CHUNKS: TableDefinition<(u64, u32), &[u8]> = TableDefinition::new("blob_chunks");
/// Reference counts live apart from the blobs so that a COPY or a second
/// recipient rewrites four bytes, not the whole message.
const BLOB_REFS: TableDefinition<u64, u32> = TableDefinition::new("blob_refs");
const PARSED: TableDefinition<u64, &[u8]> = TableDefinition::new("parsed");
/// The decoded, lowercased header SEARCH's header keys read, made at
/// delivery: a header search reads this small record instead of the message.
const SEARCH_HEADERS: TableDefinition<u64, &[u8]> = TableDefinition::new("search_headers");
/// What SORT and THREAD compare ([`crate::mime::SortKeys`]), made at
/// delivery: a SORT reads these small records, never the messages.
const SORT_KEYS: TableDefinition<u64, &[u8]> = TableDefinition::new("sort_keys");
const EXPUNGED: TableDefinition<(u64, u64), &[u8]> = TableDefinition::new("expunged");
/// (mailbox, UID / CHUNK_UIDS) → packed UIDs, MODSEQs and flags (index.rs).
const MESSAGE_INDEX: TableDefinition<(u64, u32), &[u8]> = TableDefinition::new("message_index");
/// (user, mailbox name) of every subscription. Apart from the mailboxes: a
/// name stays subscribed when its mailbox is deleted (RFC 9051 §6.3.7), and
/// may be subscribed before it exists.
const SUBSCRIPTIONS: TableDefinition<(&str, &str), ()> = TableDefinition::new("subscriptions");

/// The mailboxes every user starts with, and their special use.
pub const DEFAULT_MAILBOXES: [(&str, Option<SpecialUse>); 6] = [
    ("INBOX", None),
    ("Sent", Some(SpecialUse::Sent)),
    ("Drafts", Some(SpecialUse::Drafts)),
    ("Trash", Some(SpecialUse::Trash)),
    ("Junk", Some(SpecialUse::Junk)),
    ("Archive", Some(SpecialUse::Archive)),
];

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreError {
    /// The database file or the disk under it failed.
    Storage(String),
    /// A record could not be decoded: the file is damaged or was written by
    /// something else.
    Corrupt(String),
    /// The file was written by a newer letterbox.
    NewerSchema(u32),
    /// Another process holds the database open.
    Locked,
    NoSuchMailbox,
    MailboxExists,
    /// The operation is not allowed; the text says why.
    Refused(String),
    /// The operation would pass one of the store's limits; the text says which.
    Limit(String),
    /// The writer thread is gone (the server is shutting down).
    Closed,
    /// The disk holding the store is down to its free-space reserve: new
    /// mail waits, what makes room goes on.
    LowOnSpace,
    /// The user's quota has no room for this (quota.rs); the text says how
    /// full it is.
    OverQuota(String),
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreError::Storage(e) => write!(f, "storage error: {e}"),
            StoreError::Corrupt(what) => write!(
                f,
                "the database holds a damaged {what}; restore a backup or export what is readable"
            ),
            StoreError::NewerSchema(v) => write!(
                f,
                "the database was written by a newer letterbox (schema {v}; this binary knows up to {SCHEMA_VERSION}); \
                 run the newer letterbox, or restore a backup made with this version"
            ),
            StoreError::Locked => write!(
                f,
                "the database is in use by another process (is a letterbox server running on this data directory? stop it first)"
            ),
            StoreError::NoSuchMailbox => write!(f, "no such mailbox"),
            StoreError::MailboxExists => write!(f, "mailbox already exists"),
            StoreError::Refused(why) | StoreError::Limit(why) | StoreError::OverQuota(why) => {
                write!(f, "{why}")
            }
            StoreError::Closed => write!(f, "the store is shutting down"),
            StoreError::LowOnSpace => write!(
                f,
                "the mail store's disk is nearly full; new mail is refused for now, try again later"
            ),
        }
    }
}

impl std::error::Error for StoreError {}

macro_rules! storage_error_from {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self {
                StoreError::Storage(e.to_string())
            }
        }
    )*};
}
storage_error_from!(
    redb::Error,
    redb::StorageError,
    redb::TableError,
    redb::TransactionError,
    redb::CommitError
);

impl From<redb::DatabaseError> for StoreError {
    fn from(e: redb::DatabaseError) -> Self {
        match e {
            redb::DatabaseError::DatabaseAlreadyOpen => StoreError::Locked,
            other => StoreError::Storage(other.to_string()),
        }
    }
}

/// A handle on the store. Cheap to clone; every clone shares the database and
/// the writer thread.
#[derive(Clone)]
pub struct Store {
    db: Arc<DbSlot>,
    writer: writer::WriterHandle,
    reserve: Arc<space::Reserve>,
    /// What open views still need of the `expunged` table (expunges.rs).
    expunge_pins: Arc<expunges::ExpungePins>,
    /// Messages found damaged and logged, so each is logged once.
    damaged: Arc<std::sync::Mutex<std::collections::HashSet<(MailboxId, u32)>>>,
    /// How long the writer's commits take, for `--metrics`.
    commit_latency: Arc<crate::metrics::Histogram>,
}

/// The open database, which the writer replaces after a failed commit.
///
/// After an I/O error (a full disk, say) redb fails every later operation
/// until the database is closed and opened again. The writer does that
/// itself, at once, so one ENOSPC costs the batch that met it and nothing
/// after. Readers take their snapshots through the slot, so they find the
/// new database as soon as it is open; the lock is held for writing only
/// while it is swapped (an open with quick repair, milliseconds).
pub(super) struct DbSlot {
    path: PathBuf,
    cache_bytes: usize,
    current: RwLock<Option<redb::Database>>,
    /// Set by [`Store::shutdown`]: no reopening after that.
    shut: std::sync::atomic::AtomicBool,
}

impl DbSlot {
    fn open_file(path: &Path, cache_bytes: usize) -> Result<redb::Database, StoreError> {
        Ok(redb::Database::builder()
            .set_cache_size(cache_bytes)
            .create(path)?)
    }

    /// Runs `f` on the open database; an error while none is open (a reopen
    /// failed, and is tried again by the next write or read).
    pub(super) fn with<T>(
        &self,
        f: impl FnOnce(&redb::Database) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        {
            let current = self.current.read().unwrap_or_else(PoisonError::into_inner);
            if let Some(db) = current.as_ref() {
                return f(db);
            }
        }
        if self.shut.load(std::sync::atomic::Ordering::Acquire) {
            return Err(StoreError::Closed);
        }
        self.open_if_closed()?;
        let current = self.current.read().unwrap_or_else(PoisonError::into_inner);
        match current.as_ref() {
            Some(db) => f(db),
            None => Err(StoreError::Storage(
                "the database could not be opened again after a write error".into(),
            )),
        }
    }

    /// Closes the database for good, cleanly: the next open (the server's,
    /// or `verify`'s read-only one) then needs no repair.
    fn close(&self) {
        self.shut.store(true, std::sync::atomic::Ordering::Release);
        let mut current = self.current.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(db) = current.take() {
            if let Err(e) = db.close() {
                log::warn!("store: closing the database: {e}");
            }
        }
    }

    fn open_if_closed(&self) -> Result<(), StoreError> {
        let mut current = self.current.write().unwrap_or_else(PoisonError::into_inner);
        if current.is_none() {
            *current = Some(Self::open_file(&self.path, self.cache_bytes)?);
            log::warn!("store: database opened again; serving goes on");
        }
        Ok(())
    }

    /// Closes the database and opens it again: what redb asks for after an
    /// I/O error. Read transactions still open on the old one fail from
    /// here on (their commands answer a temporary error); new ones see the
    /// last commit.
    pub(super) fn reopen(&self) -> Result<(), StoreError> {
        let mut current = self.current.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(old) = current.take() {
            if let Err(e) = old.close() {
                log::warn!("store: closing the database after a write error: {e}");
            }
        }
        match Self::open_file(&self.path, self.cache_bytes) {
            Ok(db) => {
                *current = Some(db);
                log::warn!("store: database reopened after a write error; serving goes on");
                Ok(())
            }
            Err(e) => {
                log::error!("store: cannot reopen the database after a write error: {e}");
                Err(e)
            }
        }
    }
}

impl Store {
    /// Opens (or creates) `path`, checks the schema version, and starts the
    /// writer thread. `changes` receives what each commit changed.
    pub fn open(
        path: &Path,
        cache_bytes: usize,
    ) -> Result<(Store, smol::channel::Receiver<Vec<Change>>), StoreError> {
        let db = DbSlot::open_file(path, cache_bytes)?;
        init_schema(&db)?;
        let db = Arc::new(DbSlot {
            path: path.to_path_buf(),
            cache_bytes,
            current: RwLock::new(Some(db)),
            shut: std::sync::atomic::AtomicBool::new(false),
        });
        let dir = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let reserve = Arc::new(space::Reserve::new(dir));
        let expunge_pins = Arc::new(expunges::ExpungePins::default());
        let commit_latency = Arc::new(crate::metrics::Histogram::default());
        let (writer, changes) = writer::start(
            db.clone(),
            reserve.clone(),
            expunge_pins.clone(),
            commit_latency.clone(),
        )?;
        Ok((
            Store {
                db,
                writer,
                reserve,
                expunge_pins,
                damaged: Default::default(),
                commit_latency,
            },
            changes,
        ))
    }

    /// Stops the pruning of expunge records until dropped; a view opened
    /// from a snapshot taken meanwhile pins what it needs with
    /// [`ExpungeHold::pin`] (expunges.rs).
    pub fn hold_expunges(&self) -> ExpungeHold {
        ExpungeHold::new(&self.expunge_pins)
    }

    /// The durations of the writer's commits so far.
    pub fn commit_latency(&self) -> Arc<crate::metrics::Histogram> {
        self.commit_latency.clone()
    }

    /// Sets the free-space reserve (`--min-free-space`); None: the default,
    /// [`DEFAULT_MIN_FREE`] or [`DEFAULT_PERCENT`] of the disk, whichever is
    /// smaller.
    pub fn set_min_free_space(&self, bytes: Option<u64>) {
        self.reserve.set_min_free(bytes);
    }

    /// Logs that a message's stored bytes are damaged, once per message
    /// for the life of the process, with what the administrator should do.
    pub fn report_damage(
        &self,
        user: &str,
        mailbox: &str,
        mailbox_id: MailboxId,
        uid: u32,
        err: &StoreError,
    ) {
        let first = self
            .damaged
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert((mailbox_id, uid));
        if first {
            log::error!(
                "store: DAMAGED MESSAGE: user {user}, mailbox {mailbox:?}, UID {uid}: {err}. \
                 The database file is damaged (a failing disk or SD card?): run `letterbox verify` \
                 to list every damaged message, and restore from a backup"
            );
        }
    }

    /// Whether new mail (a delivery, an APPEND, a COPY) may be stored now:
    /// [`StoreError::LowOnSpace`] while the disk is down to its reserve.
    /// Cheap: the disk is looked at once a second at most.
    pub fn room_for_new_mail(&self) -> Result<(), StoreError> {
        self.reserve.check()
    }

    /// A consistent read-only view of the store as of now. Never blocked by
    /// the writer.
    pub fn snapshot(&self) -> Result<Snapshot, StoreError> {
        self.db.with(|db| {
            guarded(|| {
                Ok(Snapshot {
                    txn: db.begin_read()?,
                })
            })
        })
    }

    /// Runs `op` in the writer's next transaction and resolves once that
    /// transaction is durable on disk. `op` must return an error only before
    /// it has changed anything (see [`writer`]).
    pub async fn write<T, F>(&self, op: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut WriteCtx) -> Result<T, StoreError> + Send + 'static,
    {
        self.writer.submit(op).await
    }

    /// The same as [`Store::write`], for threads outside the event loop.
    pub fn write_blocking<T, F>(&self, op: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut WriteCtx) -> Result<T, StoreError> + Send + 'static,
    {
        smol::block_on(self.writer.submit(op))
    }

    /// Stops taking writes, commits what is queued, waits for the writer,
    /// and closes the database file cleanly. Reads after this fail.
    pub fn shutdown(&self) {
        self.writer.shutdown();
        self.db.close();
    }
}

fn init_schema(db: &redb::Database) -> Result<(), StoreError> {
    let txn = db.begin_write()?;
    {
        let mut meta = txn.open_table(META)?;
        let existing = meta.get("schema_version")?.map(|v| v.value().to_vec());
        match existing {
            Some(bytes) => {
                let version = <[u8; 4]>::try_from(bytes.as_slice())
                    .map(u32::from_le_bytes)
                    .map_err(|_| StoreError::Corrupt("schema version".into()))?;
                if version > SCHEMA_VERSION {
                    return Err(StoreError::NewerSchema(version));
                }
                if version < 3 {
                    // First, while the mailbox records still hold it.
                    upgrade_subscriptions(&txn)?;
                }
                if version < 2 {
                    upgrade_to_v2(&txn)?;
                }
                if version < 3 {
                    blobs::upgrade_to_v3(&txn)?;
                }
                // Chunks written by the step to 3 above already carry
                // their checksums.
                if version == 3 {
                    blobs::upgrade_to_v4(&txn)?;
                }
                if version < 5 {
                    quota::upgrade_to_v5(&txn)?;
                }
                // After every step that rewrites blobs (and after 5's), so
                // the bytes read here are in their final form.
                if version < 6 {
                    upgrade_sort_keys(&txn)?;
                }
                // After 6's, which reads the sort keys they order by.
                if version < 8 {
                    sort_orders::fill_orders(&txn, version < 7)?;
                }
                if version < SCHEMA_VERSION {
                    meta.insert("schema_version", SCHEMA_VERSION.to_le_bytes().as_slice())?;
                }
            }
            None => {
                meta.insert("schema_version", SCHEMA_VERSION.to_le_bytes().as_slice())?;
                let created = now_unix().to_le_bytes();
                meta.insert("created", created.as_slice())?;
            }
        }
        // Creating every table up front lets readers assume they exist.
        txn.open_table(MAILBOXES)?;
        txn.open_table(MAILBOX_NAMES)?;
        txn.open_table(MESSAGES)?;
        txn.open_table(BLOB_CHUNKS)?;
        txn.open_table(BLOB_REFS)?;
        txn.open_table(PARSED)?;
        txn.open_table(SEARCH_HEADERS)?;
        txn.open_table(SORT_KEYS)?;
        txn.open_table(sort_orders::SUBJECT_ORDER)?;
        txn.open_table(sort_orders::DATE_ORDER)?;
        txn.open_table(EXPUNGED)?;
        txn.open_table(MESSAGE_INDEX)?;
        txn.open_table(SUBSCRIPTIONS)?;
        txn.open_table(quota::QUOTA_USAGE)?;
        txn.open_table(metadata::METADATA)?;
    }
    txn.commit()?;
    Ok(())
}

/// The most of a message's start the upgrade to schema 6 reads to find
/// its header; a longer header is read up to here.
const SORT_KEYS_HEADER_READ: u64 = 64 * 1024;

/// Schema 5 → 6: the sort keys of every stored message, read from its
/// header as delivery now does.
fn upgrade_sort_keys(txn: &redb::WriteTransaction) -> Result<(), StoreError> {
    let refs = txn.open_table(BLOB_REFS)?;
    let chunks = txn.open_table(BLOB_CHUNKS)?;
    let mut sort_keys = txn.open_table(SORT_KEYS)?;
    let mut done = 0u64;
    for entry in refs.iter()? {
        let (blob, _) = entry?;
        let blob = blob.value();
        let total = blobs::len(&chunks, blob)?.unwrap_or(0);
        let head = blobs::read_range(&chunks, blob, total, 0..SORT_KEYS_HEADER_READ)?;
        let keys = crate::mime::SortKeys::parse(&head).encode();
        sort_keys.insert(blob, keys.as_slice())?;
        done += 1;
    }
    log::info!("store: upgraded the database to schema 6 (sort keys of {done} messages)");
    Ok(())
}

/// Schema 2 → 3: subscriptions move from a byte in each mailbox record to
/// their own table.
fn upgrade_subscriptions(txn: &redb::WriteTransaction) -> Result<(), StoreError> {
    let mailboxes = txn.open_table(MAILBOXES)?;
    let mut subscriptions = txn.open_table(SUBSCRIPTIONS)?;
    let mut moved = 0;
    for entry in mailboxes.iter()? {
        let (_, value) = entry?;
        if records::legacy_subscribed(value.value()) == Some(true) {
            let record = MailboxRecord::decode(value.value())?;
            subscriptions.insert((record.owner.as_str(), record.name.as_str()), ())?;
            moved += 1;
        }
    }
    log::info!(
        "store: upgraded the database to schema 3 ({moved} subscriptions in their own table)"
    );
    Ok(())
}

/// Schema 1 → 2: builds the message index and each mailbox's keyword list
/// from the message records.
fn upgrade_to_v2(txn: &redb::WriteTransaction) -> Result<(), StoreError> {
    let messages = txn.open_table(MESSAGES)?;
    let mut mailboxes = txn.open_table(MAILBOXES)?;
    let mut chunks = txn.open_table(MESSAGE_INDEX)?;
    let mut keywords: std::collections::HashMap<MailboxId, Vec<String>> = Default::default();
    let mut current: Option<((MailboxId, u32), index::Chunk)> = None;
    for entry in messages.iter()? {
        let (key, value) = entry?;
        let (mailbox, uid) = key.value();
        let message = MessageRecord::decode(value.value())?;
        let key = (mailbox, chunk_of(uid));
        if current.as_ref().is_some_and(|(k, _)| *k != key) {
            if let Some((k, chunk)) = current.take() {
                chunks.insert(k, chunk.encode().as_slice())?;
            }
        }
        let (_, chunk) = current.get_or_insert_with(|| (key, index::Chunk::default()));
        chunk.modseq = chunk.modseq.max(message.modseq);
        records::add_keywords(keywords.entry(mailbox).or_default(), &message.keywords);
        chunk.entries.push(index::IndexEntry {
            uid,
            modseq: message.modseq,
            flags: message.flags,
            keywords: message.keywords,
        });
    }
    if let Some((k, chunk)) = current {
        chunks.insert(k, chunk.encode().as_slice())?;
    }
    let ids: Vec<MailboxId> = mailboxes
        .iter()?
        .map(|entry| entry.map(|(id, _)| id.value()))
        .collect::<Result<_, _>>()?;
    for id in ids {
        let found = mailboxes.get(id)?;
        let Some(mut record) = found
            .map(|v| MailboxRecord::decode(v.value()))
            .transpose()?
        else {
            continue;
        };
        record.keywords = keywords.remove(&id).unwrap_or_default();
        mailboxes.insert(id, record.encode().as_slice())?;
    }
    log::info!("store: upgraded the database to schema 2 (message index built)");
    Ok(())
}

pub(crate) fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// The stored spelling of a mailbox name: INBOX is case-insensitive (RFC 9051
/// §5.1), and so is the INBOX part of its children, as Dovecot has it.
pub fn canonical_mailbox_name(name: &str) -> std::borrow::Cow<'_, str> {
    if name.eq_ignore_ascii_case("INBOX") && name != "INBOX" {
        return "INBOX".into();
    }
    if name.len() > 6 && name.as_bytes()[5] == b'/' && name[..5].eq_ignore_ascii_case("INBOX") {
        if name.starts_with("INBOX/") {
            return name.into();
        }
        return format!("INBOX{}", &name[5..]).into();
    }
    name.into()
}

/// Runs a read that may meet a damaged page of the file. redb trusts its
/// pages, and some damage makes it panic (an `unreachable!` in its page
/// parsing); that becomes [`StoreError::Corrupt`], so one command fails and
/// the session goes on.
fn guarded<T>(read: impl FnOnce() -> Result<T, StoreError>) -> Result<T, StoreError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(read)).unwrap_or_else(|_| {
        Err(StoreError::Corrupt(
            "page (the storage library failed reading it)".into(),
        ))
    })
}

/// A database file opened only to be read (`verify`, `restore`'s check):
/// nothing is ever written to it, and no writer thread starts.
pub struct ReadOnlyStore {
    db: redb::ReadOnlyDatabase,
}

/// The oldest schema a backup may have to be verified and restored by
/// this binary: the server upgrades the restored file when it opens it.
/// Older ones differ in more than tables `verify` can leave out.
pub const OLDEST_RESTORABLE: u32 = 7;

impl ReadOnlyStore {
    /// A data directory's database, of this binary's schema.
    pub fn open(path: &Path) -> Result<ReadOnlyStore, StoreError> {
        let (store, version) = ReadOnlyStore::open_any(path)?;
        if version < SCHEMA_VERSION {
            return Err(StoreError::Refused(format!(
                "the database has schema {version}; open it once with `letterbox serve` to upgrade it to {SCHEMA_VERSION}"
            )));
        }
        Ok(store)
    }

    /// A backup's database, of this binary's schema or one back to
    /// [`OLDEST_RESTORABLE`]: a backup made before an upgrade must still
    /// verify and restore after it.
    pub fn open_backup(path: &Path) -> Result<ReadOnlyStore, StoreError> {
        let (store, version) = ReadOnlyStore::open_any(path)?;
        if version < OLDEST_RESTORABLE {
            return Err(StoreError::Refused(format!(
                "the backup has schema {version}, and this letterbox reads backups from schema \
                 {OLDEST_RESTORABLE} on: restore it with the letterbox that made it, then start \
                 this one, which upgrades the database"
            )));
        }
        Ok(store)
    }

    fn open_any(path: &Path) -> Result<(ReadOnlyStore, u32), StoreError> {
        let db = redb::Database::builder()
            .set_cache_size(4 << 20)
            .open_read_only(path)?;
        let store = ReadOnlyStore { db };
        let version = store.snapshot()?.schema_version()?;
        if version > SCHEMA_VERSION {
            return Err(StoreError::NewerSchema(version));
        }
        Ok((store, version))
    }

    pub fn snapshot(&self) -> Result<Snapshot, StoreError> {
        Ok(Snapshot {
            txn: self.db.begin_read()?,
        })
    }
}

/// A read-only, consistent view of the whole store.
pub struct Snapshot {
    txn: redb::ReadTransaction,
}

impl Snapshot {
    pub fn mailbox_id(&self, user: &str, name: &str) -> Result<Option<MailboxId>, StoreError> {
        guarded(|| {
            let names = self.txn.open_table(MAILBOX_NAMES)?;
            let name = canonical_mailbox_name(name);
            Ok(names.get((user, name.as_ref()))?.map(|v| v.value()))
        })
    }

    pub fn mailbox(&self, id: MailboxId) -> Result<Option<MailboxRecord>, StoreError> {
        guarded(|| {
            let mailboxes = self.txn.open_table(MAILBOXES)?;
            let found = mailboxes.get(id)?;
            found.map(|v| MailboxRecord::decode(v.value())).transpose()
        })
    }

    /// The user's mailboxes in name order.
    pub fn mailboxes(&self, user: &str) -> Result<Vec<(MailboxId, MailboxRecord)>, StoreError> {
        guarded(|| {
            let names = self.txn.open_table(MAILBOX_NAMES)?;
            let mailboxes = self.txn.open_table(MAILBOXES)?;
            let mut out = Vec::new();
            for entry in names.range((user, "")..)? {
                let (key, id) = entry?;
                if key.value().0 != user {
                    break;
                }
                if let Some(record) = mailboxes.get(id.value())? {
                    out.push((id.value(), MailboxRecord::decode(record.value())?));
                }
            }
            Ok(out)
        })
    }

    /// The names a user is subscribed to, in name order, whether or not
    /// their mailboxes exist.
    pub fn subscriptions(&self, user: &str) -> Result<Vec<String>, StoreError> {
        guarded(|| {
            let table = self.txn.open_table(SUBSCRIPTIONS)?;
            let mut out = Vec::new();
            for entry in table.range((user, "")..)? {
                let (key, _) = entry?;
                let (owner, name) = key.value();
                if owner != user {
                    break;
                }
                out.push(name.to_string());
            }
            Ok(out)
        })
    }

    /// How many messages of a mailbox have a UID of at least `uid`. Reads
    /// only the index chunks from that UID on.
    pub fn count_from(&self, mailbox: MailboxId, uid: u32) -> Result<u32, StoreError> {
        guarded(|| {
            let chunks = self.txn.open_table(MESSAGE_INDEX)?;
            let mut count = 0;
            for entry in chunks.range((mailbox, chunk_of(uid))..=(mailbox, u32::MAX))? {
                let (key, value) = entry?;
                let chunk = ChunkRef::parse(key.value().1, value.value())?;
                count += chunk.uids().filter(|&u| u >= uid).count() as u32;
            }
            Ok(count)
        })
    }

    /// Every message of a mailbox in UID order.
    pub fn messages(&self, mailbox: MailboxId) -> Result<Vec<(u32, MessageRecord)>, StoreError> {
        self.messages_between(mailbox, 0, u32::MAX)
    }

    /// Visits the mailbox's message index chunks in UID order (index.rs).
    pub fn for_each_chunk(
        &self,
        mailbox: MailboxId,
        mut visit: impl FnMut(ChunkRef<'_>) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        guarded(|| {
            let chunks = self.txn.open_table(MESSAGE_INDEX)?;
            for entry in chunks.range((mailbox, 0)..=(mailbox, u32::MAX))? {
                let (key, value) = entry?;
                visit(ChunkRef::parse(key.value().1, value.value())?)?;
            }
            Ok(())
        })
    }

    /// The UIDs expunged from a mailbox after MODSEQ `since`, in UID order.
    pub fn expunged_since(&self, mailbox: MailboxId, since: u64) -> Result<Vec<u32>, StoreError> {
        guarded(|| {
            let expunged = self.txn.open_table(EXPUNGED)?;
            let mut out = Vec::new();
            for entry in expunged.range((mailbox, since.saturating_add(1))..=(mailbox, u64::MAX))? {
                let (_, uids) = entry?;
                out.extend(records::decode_uids(uids.value())?);
            }
            out.sort_unstable();
            Ok(out)
        })
    }

    /// The highest MODSEQ whose expunge records may have been pruned from
    /// `mailbox` (0: none ever were): [`Snapshot::expunged_since`] is
    /// complete only from there on.
    pub fn expunge_horizon(&self, mailbox: MailboxId) -> Result<u64, StoreError> {
        guarded(|| {
            let meta = self.txn.open_table(META)?;
            let found = meta.get(expunges::horizon_key(mailbox).as_str())?;
            expunges::decode_horizon(found.as_ref().map(|v| v.value()))
        })
    }

    /// The sequence number of the first message without \Seen, if any:
    /// rev1's SELECT announces it. Reads the index only up to that message.
    pub fn first_unseen(&self, mailbox: MailboxId) -> Result<Option<u32>, StoreError> {
        guarded(|| {
            let chunks = self.txn.open_table(MESSAGE_INDEX)?;
            let mut before = 0;
            for entry in chunks.range((mailbox, 0)..=(mailbox, u32::MAX))? {
                let (key, value) = entry?;
                let chunk = ChunkRef::parse(key.value().1, value.value())?;
                if let Some(i) = chunk.flags().position(|f| !f.contains(Flags::SEEN)) {
                    return Ok(Some(before + i as u32 + 1));
                }
                before += chunk.len() as u32;
            }
            Ok(None)
        })
    }

    /// The messages of a mailbox with UIDs in `low..=high`, in UID order.
    pub fn messages_between(
        &self,
        mailbox: MailboxId,
        low: u32,
        high: u32,
    ) -> Result<Vec<(u32, MessageRecord)>, StoreError> {
        guarded(|| {
            let messages = self.txn.open_table(MESSAGES)?;
            let mut out = Vec::new();
            for entry in messages.range((mailbox, low)..=(mailbox, high))? {
                let (key, value) = entry?;
                out.push((key.value().1, MessageRecord::decode(value.value())?));
            }
            Ok(out)
        })
    }

    /// Opens the message bodies and their analyses once, for reading many.
    pub fn content(&self) -> Result<Content, StoreError> {
        guarded(|| {
            Ok(Content {
                chunks: self.txn.open_table(BLOB_CHUNKS)?,
                parsed: self.txn.open_table(PARSED)?,
                search_headers: self.txn.open_table(SEARCH_HEADERS)?,
                sort_keys: self.txn.open_table(SORT_KEYS)?,
            })
        })
    }

    pub fn message(
        &self,
        mailbox: MailboxId,
        uid: u32,
    ) -> Result<Option<MessageRecord>, StoreError> {
        guarded(|| {
            let messages = self.txn.open_table(MESSAGES)?;
            let found = messages.get((mailbox, uid))?;
            found.map(|v| MessageRecord::decode(v.value())).transpose()
        })
    }

    /// The raw RFC 5322 bytes of a message, whole. For tests and small
    /// messages; whatever may meet a large message reads it through
    /// [`Content`] in pieces.
    pub fn blob(&self, blob: BlobId) -> Result<Vec<u8>, StoreError> {
        guarded(|| {
            self.content()?
                .blob(blob)?
                .ok_or_else(|| StoreError::Corrupt(format!("message body {blob} (missing)")))
        })
    }

    /// What [`crate::mime::MessageInfo::encode`] stored for a blob at delivery.
    pub fn parsed(&self, blob: BlobId) -> Result<Option<Vec<u8>>, StoreError> {
        guarded(|| {
            let parsed = self.txn.open_table(PARSED)?;
            let found = parsed.get(blob)?;
            Ok(found.map(|v| v.value().to_vec()))
        })
    }

    /// Every user that has mailboxes, in name order.
    pub fn users(&self) -> Result<Vec<String>, StoreError> {
        guarded(|| {
            let names = self.txn.open_table(MAILBOX_NAMES)?;
            let mut out: Vec<String> = Vec::new();
            for entry in names.iter()? {
                let (key, _) = entry?;
                let user = key.value().0;
                if out.last().map(String::as_str) != Some(user) {
                    out.push(user.to_string());
                }
            }
            Ok(out)
        })
    }
}

/// Message bytes and analyses, with their tables open: for commands that
/// read many messages (FETCH, SEARCH).
pub struct Content {
    chunks: redb::ReadOnlyTable<(u64, u32), &'static [u8]>,
    parsed: redb::ReadOnlyTable<u64, &'static [u8]>,
    search_headers: redb::ReadOnlyTable<u64, &'static [u8]>,
    sort_keys: redb::ReadOnlyTable<u64, &'static [u8]>,
}

impl Content {
    /// A message's bytes, whole; None when they are gone. Loads the whole
    /// message: streaming readers use [`Content::blob_piece`].
    pub fn blob(&self, blob: BlobId) -> Result<Option<Vec<u8>>, StoreError> {
        match self.blob_len(blob)? {
            None => Ok(None),
            Some(total) => {
                guarded(|| blobs::read_range(&self.chunks, blob, total, 0..total)).map(Some)
            }
        }
    }

    /// Checks a message's bytes (`total` long, from [`Content::blob_len`])
    /// against their checksums, before a reply that cannot be taken back
    /// starts: a literal's size, POP3's +OK.
    pub fn verify(&self, blob: BlobId, total: u64) -> Result<(), StoreError> {
        guarded(|| blobs::verify(&self.chunks, blob, total))
    }

    /// A message's length in bytes, or None when its bytes are gone (or it
    /// is empty, which letterbox never stores).
    pub fn blob_len(&self, blob: BlobId) -> Result<Option<u64>, StoreError> {
        guarded(|| blobs::len(&self.chunks, blob))
    }

    /// Up to `max` bytes from `offset` of a message `total` bytes long (from
    /// [`Content::blob_len`]), never more than one chunk: what a streaming
    /// reader sends next. Empty at the end.
    pub fn blob_piece(
        &self,
        blob: BlobId,
        total: u64,
        offset: u64,
        max: usize,
    ) -> Result<Vec<u8>, StoreError> {
        guarded(|| blobs::piece(&self.chunks, blob, total, offset, max))
    }

    /// The bytes of `range` of a message, clipped to its end, in memory:
    /// for reads known to be small, or that must be whole (a part to decode).
    pub fn blob_range(
        &self,
        blob: BlobId,
        range: std::ops::Range<u64>,
    ) -> Result<Vec<u8>, StoreError> {
        let total = self.blob_len(blob)?.unwrap_or(0);
        guarded(|| blobs::read_range(&self.chunks, blob, total, range))
    }

    pub fn parsed(&self, blob: BlobId) -> Result<Option<Vec<u8>>, StoreError> {
        guarded(|| Ok(self.parsed.get(blob)?.map(|v| v.value().to_vec())))
    }

    pub fn search_header(&self, blob: BlobId) -> Result<Option<Vec<u8>>, StoreError> {
        guarded(|| Ok(self.search_headers.get(blob)?.map(|v| v.value().to_vec())))
    }

    /// Reads what [`crate::mime::SortKeys::encode`] stored for a blob at
    /// delivery, in place: a SORT reads one for every message.
    pub fn with_sort_keys<T>(
        &self,
        blob: BlobId,
        read: impl FnOnce(&[u8]) -> T,
    ) -> Result<Option<T>, StoreError> {
        guarded(|| Ok(self.sort_keys.get(blob)?.map(|v| read(v.value()))))
    }
}

/// Throwaway stores for unit tests.
#[cfg(test)]
pub(crate) mod testing {
    use redb::ReadableTable;

    use super::Store;

    pub fn temp_store() -> (tempdir::Dir, Store) {
        let dir = tempdir::Dir::new();
        let (store, _changes) = Store::open(&dir.path().join("t.redb"), 1 << 20).unwrap();
        (dir, store)
    }

    /// A small deterministic generator, so a failing case can be replayed.
    pub struct Lcg(pub u64);
    impl Lcg {
        pub fn below(&mut self, n: u64) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (self.0 >> 33) % n.max(1)
        }
    }

    /// Gives alice INBOX (first) and a second mailbox, for random changes.
    pub fn two_mailboxes(store: &Store) -> Vec<super::MailboxId> {
        store
            .write_blocking(|tx| {
                let inbox = tx.ensure_user("alice")?;
                let other = tx.create_mailbox("alice", "Other", None)?;
                Ok(vec![inbox, other])
            })
            .unwrap()
    }

    /// Commits one batch of [`random_changes`], seeded from `rng`.
    pub fn random_batch(store: &Store, mailboxes: &[super::MailboxId], rng: &mut Lcg) {
        let seed = rng.below(u64::MAX);
        let list = mailboxes.to_vec();
        store
            .write_blocking(move |tx| random_changes(tx, &list, &mut Lcg(seed)))
            .unwrap();
    }

    /// One batch of random changes to `mailboxes`: arrivals (some with flags
    /// and keywords), flag changes, copies, and expunges of single messages
    /// and of long runs, so that chunks fill, split across boundaries and
    /// empty.
    pub fn random_changes(
        tx: &mut super::WriteCtx,
        mailboxes: &[super::MailboxId],
        rng: &mut Lcg,
    ) -> Result<(), super::StoreError> {
        use super::{Analysis, FlagChange, Flags};
        const KEYWORDS: [&str; 3] = ["$Forwarded", "work", "$Junk"];
        let pick_keywords = |rng: &mut Lcg| -> Vec<String> {
            (0..rng.below(3))
                .map(|_| KEYWORDS[rng.below(3) as usize].to_string())
                .collect()
        };
        for _ in 0..1 + rng.below(4) {
            let mailbox = mailboxes[rng.below(mailboxes.len() as u64) as usize];
            let uids: Vec<u32> = tx
                .messages
                .range((mailbox, 0)..=(mailbox, u32::MAX))?
                .map(|entry| entry.map(|(key, _)| key.value().1))
                .collect::<Result<_, _>>()?;
            let some = |rng: &mut Lcg| -> Vec<u32> {
                uids.iter().copied().filter(|_| rng.below(4) == 0).collect()
            };
            match rng.below(6) {
                0 | 1 => {
                    for _ in 0..rng.below(700) {
                        let flags = Flags(rng.below(32) as u16);
                        let keywords = pick_keywords(rng);
                        // A few subjects, some the same, some none: what
                        // SORT's subject order is keyed by.
                        let raw = match rng.below(12) {
                            0 => "From: a@b\r\n\r\nbody\r\n".to_string(),
                            n => format!("Subject: Re: s{n}\r\n\r\nbody\r\n"),
                        };
                        // Some dated (SORT (DATE) takes the Date header),
                        // some not (it takes INTERNALDATE); a few the same.
                        let raw = match rng.below(3) {
                            0 => raw,
                            _ => format!(
                                "Date: Mon, 2 Nov 2026 10:{:02}:00 +0000\r\n{raw}",
                                rng.below(20)
                            ),
                        };
                        let internal_date = (rng.below(1000) as i64, 0);
                        let analysis = Analysis {
                            sort_keys: crate::mime::SortKeys::parse(raw.as_bytes()).encode(),
                            ..Analysis::default()
                        };
                        tx.append_message(
                            mailbox,
                            raw.as_bytes(),
                            &analysis,
                            flags,
                            keywords,
                            internal_date,
                        )?;
                    }
                }
                2 => {
                    let flags = Flags(rng.below(32) as u16);
                    let change = match rng.below(3) {
                        0 => FlagChange::Add(flags, pick_keywords(rng)),
                        1 => FlagChange::Remove(flags, pick_keywords(rng)),
                        _ => FlagChange::Replace(flags, pick_keywords(rng)),
                    };
                    tx.change_flags(mailbox, &some(rng), &change)?;
                }
                3 => {
                    let to = mailboxes[rng.below(mailboxes.len() as u64) as usize];
                    tx.copy_messages(mailbox, &some(rng), to)?;
                }
                4 => {
                    tx.expunge(mailbox, &some(rng))?;
                }
                _ => {
                    // A run of UIDs, often a whole chunk or more.
                    let start = rng.below(uids.len() as u64 + 1) as usize;
                    let len = rng.below(1500) as usize;
                    let run = &uids[start..(start + len).min(uids.len())];
                    tx.expunge(mailbox, run)?;
                }
            }
        }
        Ok(())
    }

    /// A throwaway directory, removed on drop.
    pub mod tempdir {
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_inside_a_read_is_corruption() {
        let read = || -> Result<u32, StoreError> { unreachable!("a damaged page") };
        assert!(matches!(guarded(read), Err(StoreError::Corrupt(_))));
        assert_eq!(guarded(|| Ok(7)), Ok(7));
    }

    #[test]
    fn a_flipped_byte_in_a_chunk_fails_its_checksum() {
        let (dir, store) = testing::temp_store();
        let inbox = testing::two_mailboxes(&store)[0];
        let raw = vec![b'x'; BLOB_CHUNK + 10];
        let copy = raw.clone();
        store
            .write_blocking(move |tx| {
                tx.append_message(
                    inbox,
                    &copy,
                    &Analysis::default(),
                    Flags::default(),
                    Vec::new(),
                    (0, 0),
                )
            })
            .unwrap();
        let blob = store.snapshot().unwrap().messages(inbox).unwrap()[0].1.blob;
        store.shutdown();
        drop(store);
        let path = dir.path().join("t.redb");
        {
            let db = redb::Database::create(&path).unwrap();
            let txn = db.begin_write().unwrap();
            {
                let mut chunks = txn.open_table(BLOB_CHUNKS).unwrap();
                let mut second = chunks.get((blob, 1)).unwrap().unwrap().value().to_vec();
                second[3] ^= 1;
                chunks.insert((blob, 1), second.as_slice()).unwrap();
            }
            txn.commit().unwrap();
        }
        let (store, _changes) = Store::open(&path, 1 << 20).unwrap();
        let snap = store.snapshot().unwrap();
        let content = snap.content().unwrap();
        let total = content.blob_len(blob).unwrap().unwrap();
        assert_eq!(total, raw.len() as u64);
        assert!(matches!(
            content.verify(blob, total),
            Err(StoreError::Corrupt(_))
        ));
        assert!(matches!(
            content.blob_piece(blob, total, BLOB_CHUNK as u64, 5),
            Err(StoreError::Corrupt(_))
        ));
        // The first chunk is intact and still reads.
        assert_eq!(content.blob_range(blob, 0..10).unwrap(), &raw[..10]);
        drop(content);
        drop(snap);
        store.shutdown();
    }

    #[test]
    fn inbox_is_case_insensitive() {
        assert_eq!(canonical_mailbox_name("inbox"), "INBOX");
        assert_eq!(canonical_mailbox_name("Inbox/Lists"), "INBOX/Lists");
        assert_eq!(canonical_mailbox_name("INBOX/x"), "INBOX/x");
        assert_eq!(canonical_mailbox_name("Inboxes"), "Inboxes");
        assert_eq!(canonical_mailbox_name("Sent"), "Sent");
    }

    #[test]
    fn each_committed_batch_is_timed_and_a_failed_one_is_not() {
        let (_dir, store) = testing::temp_store();
        let latency = store.commit_latency();
        let before = latency.count();
        store.write_blocking(|tx| tx.ensure_user("alice")).unwrap();
        assert_eq!(latency.count(), before + 1);
        // A job that panics rolls its batch back: nothing was committed.
        let failed =
            store.write_blocking(|_| -> Result<(), StoreError> { panic!("a bug in a write job") });
        assert!(failed.is_err());
        assert_eq!(latency.count(), before + 1);
    }
}
