//! `letterbox serve`: binds the listeners, drops privileges, opens the store,
//! and runs every session on one event-loop thread until SIGTERM.

use std::cell::{Cell, RefCell};
use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_rustls::TlsAcceptor;
use smol::lock::Semaphore;
use smol::net::unix::UnixListener;
use smol::net::TcpListener;
use smol::stream::StreamExt;
use smol::{LocalExecutor, Timer};

use crate::auth::fair::{AddressQueue, HashGate};
use crate::auth::{LoginCache, Throttle, Users};
use crate::net::tls::TlsFiles;
use crate::net::{accept_tls, Conn, ConnectionLimits, Peer, Slot, Stream};
use crate::store::{Hub, Store, StoreError};

/// Whether POP3's DELE removes mail from the server or only from POP3's view.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pop3Mode {
    Delete,
    Keep,
}

/// Everything `serve` was told on the command line.
#[derive(Clone, Debug)]
pub struct Config {
    pub data_dir: PathBuf,
    pub imap: Option<SocketAddr>,
    pub imaps: Option<SocketAddr>,
    pub pop3: Option<SocketAddr>,
    pub pop3s: Option<SocketAddr>,
    pub lmtp: Option<SocketAddr>,
    pub lmtp_socket: Option<PathBuf>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub hostname: String,
    pub allow_plaintext_auth: bool,
    pub max_message_size: usize,
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    pub cache_size: usize,
    pub pop3_mode: Pop3Mode,
    /// How often an idling IMAP client hears from the server.
    pub idle_keepalive: Duration,
    /// How long an IMAP client may stay silent.
    pub imap_autologout: Duration,
    /// How long an IMAP or POP3 client has to log in.
    pub login_timeout: Duration,
    /// How long a verified login is remembered (zero: not at all).
    pub login_cache: Duration,
    /// Bytes incoming message bodies may hold in memory at once.
    pub memory_budget: u64,
    /// How long an incoming message waits for the budget before a
    /// temporary refusal.
    pub memory_wait: Duration,
    /// Where scheduled backups go, how often, and how many are kept.
    pub backup_dir: Option<PathBuf>,
    pub backup_every: Duration,
    pub backup_keep: usize,
    /// Bytes kept free on DATA's disk; None: the store's default.
    pub min_free_space: Option<u64>,
    pub run_as: Option<String>,
    /// Every user's limits unless their users-file line sets their own
    /// (`--quota-storage`, `--quota-messages`; default none).
    pub quota: crate::store::QuotaLimits,
    /// `--quota-full bounce`: LMTP answers a full mailbox with a permanent
    /// 552 5.2.2 instead of the temporary 452 4.2.2.
    pub quota_bounce: bool,
}

/// The protocol a listener speaks, and whether TLS starts at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Imap { implicit_tls: bool },
    Pop3 { implicit_tls: bool },
    Lmtp,
}

impl Protocol {
    fn name(self) -> &'static str {
        match self {
            Protocol::Imap {
                implicit_tls: false,
            } => "IMAP",
            Protocol::Imap { implicit_tls: true } => "IMAPS",
            Protocol::Pop3 {
                implicit_tls: false,
            } => "POP3",
            Protocol::Pop3 { implicit_tls: true } => "POP3S",
            Protocol::Lmtp => "LMTP",
        }
    }
    fn flag(self) -> &'static str {
        match self {
            Protocol::Imap {
                implicit_tls: false,
            } => "--imap",
            Protocol::Imap { implicit_tls: true } => "--imaps",
            Protocol::Pop3 {
                implicit_tls: false,
            } => "--pop3",
            Protocol::Pop3 { implicit_tls: true } => "--pop3s",
            Protocol::Lmtp => "--lmtp",
        }
    }
    /// What a connection turned away at the door is told, in its protocol.
    fn refusal(self, why: &str) -> String {
        match self {
            Protocol::Imap { .. } => format!("* BYE [UNAVAILABLE] {why}\r\n"),
            Protocol::Pop3 { .. } => format!("-ERR [SYS/TEMP] {why}\r\n"),
            Protocol::Lmtp => format!("421 4.3.2 {why}\r\n"),
        }
    }
}

/// State shared by every session on the event loop.
pub struct Shared {
    pub config: Config,
    pub store: Store,
    pub hub: Hub,
    users: RefCell<Users>,
    throttle: RefCell<Throttle>,
    /// Logins from one address run one after another.
    login_queue: Rc<AddressQueue>,
    /// Password hashes running at once, cleanest address first.
    hash_gate: Rc<HashGate>,
    login_cache: RefCell<LoginCache>,
    tls: RefCell<Option<TlsAcceptor>>,
    tls_files: TlsFiles,
    limits: Rc<ConnectionLimits>,
    /// Bounds CPU-heavy work (password hashing, MIME parsing) run on blocking
    /// threads, so a burst of logins cannot starve the board.
    heavy: Arc<Semaphore>,
    /// How many blocking threads heavy work may use at once.
    pub heavy_threads: usize,
    next_conn_id: Cell<u64>,
    /// Users whose POP3 maildrop is held by a session (RFC 1939's lock).
    pub pop3_locked: RefCell<HashSet<String>>,
    /// Each mailbox's \Recent horizon as far as this process has claimed
    /// it; ahead of the stored one until the claiming session writes it.
    recent_horizons: RefCell<std::collections::HashMap<crate::store::MailboxId, u32>>,
    /// What incoming message bodies may hold in memory (`--memory-budget`).
    pub budget: crate::net::budget::Budget,
    /// Where incoming bodies wait while they arrive (DATA/tmp).
    pub spool_dir: PathBuf,
}

/// The outcome of a password check.
#[derive(Debug, PartialEq, Eq)]
pub enum Login {
    /// The canonical user name.
    Ok(String),
    Failed,
}

/// What is stored beside a new message, however it arrives (LMTP, APPEND,
/// import, the quota notice): its IMAP structure, the header SEARCH reads,
/// and the keys SORT and THREAD compare. Slow for a big message: call it
/// off the event loop.
pub fn analysis_of(raw: &[u8]) -> crate::store::Analysis {
    crate::store::Analysis {
        parsed: crate::mime::MessageInfo::parse(raw).encode(),
        search_header: crate::imap::matcher::search_header(raw),
        sort_keys: crate::mime::SortKeys::parse(raw).encode(),
    }
}

impl Shared {
    /// Maps a name a client or MTA gave to a known user, re-reading the
    /// users file if it changed (one stat), so `letterbox user add` takes
    /// effect at once.
    pub fn resolve_user(&self, name: &str) -> Option<String> {
        self.refresh_users();
        let users = self.users.borrow();
        users.lookup(&name.to_lowercase()).map(|entry| entry.name)
    }

    /// Re-reads the users file if it changed; a changed file forgets every
    /// cached login, whatever changed in it.
    fn refresh_users(&self) {
        if self.users.borrow_mut().refresh() {
            self.forget_logins("the users file changed");
        }
    }

    fn forget_logins(&self, why: &str) {
        let mut cache = self.login_cache.borrow_mut();
        if !cache.is_empty() {
            log::info!("login cache cleared: {why}");
        }
        cache.clear();
    }

    /// The users in the users file, in file order (re-read if it changed).
    pub fn user_names(&self) -> Vec<String> {
        self.refresh_users();
        self.users.borrow().names()
    }

    /// A user's quota: their own limits from the users file over the
    /// server-wide ones, and the maker of the 90% notice when there is a
    /// limit to warn about.
    pub fn quota_check(&self, user: &str) -> crate::store::QuotaCheck {
        let limits = self.quota_limits(user);
        let notice =
            (!limits.is_unlimited()).then(|| crate::quota::notice_maker(&self.config.hostname));
        crate::store::QuotaCheck::new(limits, notice)
    }

    /// A user's limits: their own from the users file over the server-wide
    /// ones. The file was checked when it was read, so a field that does
    /// not parse cannot be met here; were it met, the server-wide limits
    /// hold.
    pub fn quota_limits(&self, user: &str) -> crate::store::QuotaLimits {
        let users = self.users.borrow();
        let own = users
            .lookup(user)
            .and_then(|entry| crate::quota::UserLimits::from_entry(&entry).ok())
            .unwrap_or_default();
        own.over(self.config.quota)
    }

    /// A user's extra field from the users file (e.g. `pop3_mode=keep`).
    pub fn user_setting(&self, user: &str, key: &str) -> Option<String> {
        let users = self.users.borrow();
        let entry = users.lookup(user)?;
        entry.extra_field(key).map(str::to_string)
    }

    /// Plaintext passwords are only taken over TLS or from this machine,
    /// unless the admin allowed them.
    pub fn plaintext_auth_allowed(&self, peer: &Peer) -> bool {
        peer.tls || peer.is_local() || self.config.allow_plaintext_auth
    }

    pub fn tls_acceptor(&self) -> Option<TlsAcceptor> {
        self.tls.borrow().clone()
    }

    /// Gives a user INBOX and the special-use mailboxes if they have none
    /// yet; returns INBOX's id. Looks in a snapshot first, so that a login
    /// (which calls this every time) costs no write transaction and no
    /// fsync once the mailboxes exist: a cached login is then memory only.
    pub async fn ensure_user(&self, user: &str) -> Result<crate::store::MailboxId, StoreError> {
        if let Some(inbox) = self.store.snapshot()?.mailbox_id(user, "INBOX")? {
            return Ok(inbox);
        }
        let owner = user.to_string();
        self.store.write(move |tx| tx.ensure_user(&owner)).await
    }

    /// Runs CPU-heavy work on a blocking thread, a bounded number at once.
    pub async fn run_heavy<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> T {
        let _permit = self.heavy.acquire().await;
        smol::unblock(work).await
    }

    /// Runs several pieces of heavy work side by side, each taking its own
    /// place under the same bound; returns their results in order.
    pub async fn run_heavy_parallel<T: Send + 'static>(
        &self,
        jobs: Vec<Box<dyn FnOnce() -> T + Send + 'static>>,
    ) -> Vec<T> {
        let mut tasks = Vec::with_capacity(jobs.len());
        for job in jobs {
            let permit = self.heavy.acquire_arc().await;
            // unblock starts the job at once; awaiting the tasks in turn
            // below does not serialise them.
            tasks.push(smol::unblock(move || {
                let result = job();
                drop(permit);
                result
            }));
        }
        let mut results = Vec::with_capacity(tasks.len());
        for task in tasks {
            results.push(task.await);
        }
        results
    }

    /// Works out, off the event loop, what is stored beside a new message:
    /// its IMAP structure and the header SEARCH reads.
    pub async fn analyse(&self, raw: Vec<u8>) -> (Vec<u8>, crate::store::Analysis) {
        self.run_heavy(move || {
            let analysis = analysis_of(&raw);
            (raw, analysis)
        })
        .await
    }

    /// The lowest UID of a mailbox not yet \Recent in any session, given the
    /// stored horizon: claims made here are ahead of the store until written.
    pub fn recent_horizon(&self, mailbox: crate::store::MailboxId, stored: u32) -> u32 {
        let claimed = self.recent_horizons.borrow().get(&mailbox).copied();
        claimed.map_or(stored, |c| c.max(stored))
    }

    /// Claims the messages from the horizon up to `uid_next` as \Recent for
    /// one session (RFC 3501 §2.3.2: exactly one session sees a message as
    /// recent). Returns the claimed UIDs as `start..end`, if any. The event
    /// loop is one thread, so two sessions can never claim the same UID.
    pub fn claim_recent(
        &self,
        mailbox: crate::store::MailboxId,
        stored: u32,
        uid_next: u32,
    ) -> Option<std::ops::Range<u32>> {
        let start = self.recent_horizon(mailbox, stored);
        if uid_next <= start {
            return None;
        }
        self.recent_horizons.borrow_mut().insert(mailbox, uid_next);
        Some(start..uid_next)
    }

    /// Drops a deleted mailbox's \Recent horizon (ids are never reused).
    pub fn forget_recent(&self, mailbox: crate::store::MailboxId) {
        self.recent_horizons.borrow_mut().remove(&mailbox);
    }

    /// Checks a password. Attempts from one address (IPv6 by its /64) take
    /// turns, each after the throttle's delay for that address and user, so
    /// parallel connections gain an attacker nothing. A login verified in the
    /// last --login-cache seconds is answered from the cache; anything else
    /// waits for a place to hash, where the address with the fewest recent
    /// failures, then the fewest attempts lined up, goes first. Unknown users
    /// cost the same hash as known ones, so timing does not tell which names
    /// exist.
    pub async fn authenticate(&self, peer: &Peer, username: &str, password: &[u8]) -> Login {
        let ip = peer_ip(peer);
        let name = username.to_lowercase();
        let turn = self.login_queue.turn(ip).await;
        let delay = self
            .throttle
            .borrow()
            .delay(ip, Some(&name), Instant::now());
        if !delay.is_zero() {
            log::info!("{peer}: login for {name:?} delayed {delay:?} after recent failures");
            Timer::after(delay).await;
        }
        let failures = self.throttle.borrow().recent_failures(ip, Instant::now());
        // Counted as a failure until it proves otherwise: a client that
        // hangs up mid-check, or as soon as an answer is slow to come, must
        // not escape the count.
        self.throttle
            .borrow_mut()
            .record_failure(ip, Some(&name), Instant::now());
        self.refresh_users();
        let entry = self.users.borrow().lookup(&name);
        let cache_tag = entry.as_ref().and_then(|e| {
            let cache = self.login_cache.borrow();
            cache
                .enabled()
                .then(|| cache.tag(&e.name, &e.password, password))
        });
        let cached =
            cache_tag.is_some_and(|tag| self.login_cache.borrow_mut().hit(tag, Instant::now()));
        let matches = cached || {
            let stored = entry
                .as_ref()
                .map_or_else(|| dummy_hash().to_string(), |e| e.password.clone());
            let password = password.to_vec();
            let queued = self.login_queue.queued(&turn);
            let _permit = self.hash_gate.acquire(failures, queued).await;
            smol::unblock(move || crate::auth::verify_password(&stored, &password)).await
        };
        match entry {
            Some(entry) if matches => {
                self.throttle
                    .borrow_mut()
                    .record_success(ip, Some(&name), Instant::now());
                if let (Some(tag), false) = (cache_tag, cached) {
                    self.login_cache.borrow_mut().insert(tag, Instant::now());
                }
                let how = if cached { " (cached)" } else { "" };
                log::info!("{peer}: logged in as {}{how}", entry.name);
                Login::Ok(entry.name)
            }
            _ => {
                log::info!("{peer}: failed login for {name:?}");
                Login::Failed
            }
        }
    }

    fn reload(&self) {
        match self.tls_files.load() {
            Ok((acceptor, fingerprint)) => {
                *self.tls.borrow_mut() = Some(acceptor);
                log::info!(
                    "tls: reloaded {} (SHA-256 {fingerprint})",
                    self.tls_files.cert.display()
                );
            }
            Err(e) => log::error!("tls: reload failed, keeping the old certificate: {e}"),
        }
        self.users.borrow_mut().refresh();
        self.forget_logins("SIGHUP");
    }
}

fn peer_ip(peer: &Peer) -> IpAddr {
    peer.addr
        .map_or(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), |a| a.ip())
}

/// A fixed hash to verify against when the user does not exist.
fn dummy_hash() -> &'static str {
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HASH.get_or_init(|| crate::auth::hash_password(b"letterbox-no-such-user").unwrap_or_default())
}

struct Listener {
    protocol: Protocol,
    kind: ListenerKind,
}

enum ListenerKind {
    Tcp(std::net::TcpListener),
    Unix(std::os::unix::net::UnixListener, PathBuf),
}

/// Runs the server until SIGTERM or SIGINT. Errors are for a person to read.
pub fn run(config: Config) -> Result<(), String> {
    // The database holds everyone's mail: nothing we create is for others.
    // SAFETY: umask only changes this process's file-creation mask.
    unsafe {
        libc::umask(0o027);
    }
    raise_file_limit(config.max_connections);
    return_big_allocations_to_the_system();
    let run_as = privileges::target_user(config.run_as.as_deref())?;
    prepare_data_dir(&config.data_dir, run_as.as_ref())?;
    let listeners = bind_all(&config, run_as.as_ref())?;
    let control = bind_control(&config.data_dir, run_as.as_ref())?;
    if let Some(user) = &run_as {
        privileges::drop_to(user)?;
    }
    let db_path = config.data_dir.join("letterbox.redb");
    let (store, changes) = Store::open(&db_path, config.cache_size)
        .map_err(|e| format!("cannot open {}: {e}", db_path.display()))?;
    store.set_min_free_space(config.min_free_space);
    let tls_files = TlsFiles::resolve(
        &config.data_dir,
        config.tls_cert.as_deref(),
        config.tls_key.as_deref(),
        &config.hostname,
    )?;
    let (acceptor, fingerprint) = tls_files.load()?;
    log::info!(
        "tls: certificate {} (SHA-256 {fingerprint})",
        tls_files.cert.display()
    );
    let users_path = config.data_dir.join("users");
    let users = Users::open(&users_path)
        .map_err(|e| format!("cannot read {}: {e}", users_path.display()))?;
    let heavy_threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let login_cache = LoginCache::new(config.login_cache)?;
    // Spool files are unlinked once open; a crash between the two can
    // leave one behind, removed here.
    crate::net::spool::prepare_spool_dir(&config.data_dir).map_err(|e| {
        format!(
            "cannot prepare {}: {e}",
            crate::net::spool::spool_dir(&config.data_dir).display()
        )
    })?;
    let (memory_budget, data_dir) = (config.memory_budget, config.data_dir.clone());
    let shared = Rc::new(Shared {
        limits: ConnectionLimits::new(config.max_connections, config.max_connections_per_ip),
        config,
        store: store.clone(),
        hub: Hub::default(),
        users: RefCell::new(users),
        throttle: RefCell::new(Throttle::new(
            10_000,
            Duration::from_secs(15 * 60),
            Duration::from_secs(15),
        )),
        login_queue: Rc::default(),
        hash_gate: HashGate::new(heavy_threads),
        login_cache: RefCell::new(login_cache),
        tls: RefCell::new(Some(acceptor)),
        tls_files,
        heavy: Arc::new(Semaphore::new(heavy_threads)),
        heavy_threads,
        next_conn_id: Cell::new(1),
        pop3_locked: RefCell::default(),
        recent_horizons: RefCell::default(),
        budget: crate::net::budget::Budget::new(memory_budget),
        spool_dir: crate::net::spool::spool_dir(&data_dir),
    });

    let ex = Rc::new(LocalExecutor::new());
    let result = smol::block_on(ex.run(async {
        let mut signals = async_signal::Signals::new([
            async_signal::Signal::Hup,
            async_signal::Signal::Term,
            async_signal::Signal::Int,
        ])
        .map_err(|e| format!("cannot watch signals: {e}"))?;
        for listener in listeners {
            start_listener(&ex, &shared, listener)?;
        }
        start_control(&ex, &shared, control)?;
        if let Some(dir) = shared.config.backup_dir.clone() {
            ex.spawn(scheduled_backups(shared.clone(), dir)).detach();
        }
        if shared.users.borrow().is_empty() {
            log::warn!(
                "no users yet: add one with `letterbox user add NAME --data {}`",
                shared.config.data_dir.display()
            );
        }
        let hub_shared = shared.clone();
        ex.spawn(async move {
            while let Ok(batch) = changes.recv().await {
                hub_shared.hub.publish(&batch);
            }
        })
        .detach();
        while let Some(signal) = signals.next().await {
            match signal {
                Ok(async_signal::Signal::Hup) => {
                    log::info!("SIGHUP: reloading the TLS certificate and the users file");
                    shared.reload();
                }
                Ok(_) => {
                    log::info!("shutting down");
                    break;
                }
                Err(e) => log::warn!("signal stream: {e}"),
            }
        }
        Ok::<(), String>(())
    }));
    store.shutdown();
    if let Some(path) = &shared.config.lmtp_socket {
        let _ = std::fs::remove_file(path);
    }
    let _ = std::fs::remove_file(crate::control::socket_path(&shared.config.data_dir));
    result
}

/// The control socket (see [`crate::control`]): only the server's own user
/// may connect, so the file is mode 0600 and owned by that user.
fn bind_control(
    data_dir: &Path,
    run_as: Option<&privileges::Account>,
) -> Result<std::os::unix::net::UnixListener, String> {
    let path = crate::control::socket_path(data_dir);
    remove_stale_socket(&path)?;
    let listener = std::os::unix::net::UnixListener::bind(&path)
        .map_err(|e| format!("cannot create the control socket {}: {e}", path.display()))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| format!("cannot restrict {}: {e}", path.display()))?;
    if let Some(account) = run_as {
        privileges::chown(&path, account)?;
    }
    Ok(listener)
}

/// `--backup-dir`: a backup every `--backup-every`, the oldest beyond
/// `--backup-keep` deleted. A failure is logged and tried again at the next
/// interval; it never stops the server.
async fn scheduled_backups(shared: Rc<Shared>, dir: PathBuf) {
    loop {
        Timer::after(shared.config.backup_every).await;
        let (store, data_dir, keep) = (
            shared.store.clone(),
            shared.config.data_dir.clone(),
            shared.config.backup_keep,
        );
        let dest = dir.clone();
        let outcome = smol::unblock(move || {
            let request = crate::control::Request::Backup { dest: dest.clone() };
            let written = crate::control::run(&store, &data_dir, request, &mut |_| {})?;
            let pruned = crate::control::backup::prune(&dest, keep)?;
            Ok::<_, String>((written, pruned))
        })
        .await;
        match outcome {
            Ok((written, pruned)) => {
                log::info!("scheduled backup: {written}");
                for old in pruned {
                    log::info!("scheduled backup: deleted the old backup {}", old.display());
                }
            }
            Err(e) => log::error!(
                "scheduled backup into {} failed, trying again in {:?}: {e}",
                dir.display(),
                shared.config.backup_every
            ),
        }
    }
}

fn start_control(
    ex: &Rc<LocalExecutor<'static>>,
    shared: &Rc<Shared>,
    listener: std::os::unix::net::UnixListener,
) -> Result<(), String> {
    listener.set_nonblocking(true).map_err(|e| e.to_string())?;
    let listener = UnixListener::try_from(listener).map_err(|e| e.to_string())?;
    let (ex2, shared) = (ex.clone(), shared.clone());
    ex.spawn(async move {
        loop {
            match listener.accept().await {
                Ok((stream, _)) => ex2
                    .spawn(crate::control::serve(shared.clone(), stream))
                    .detach(),
                Err(e) => {
                    log::warn!("control socket: accept failed: {e}");
                    Timer::after(Duration::from_millis(100)).await;
                }
            }
        }
    })
    .detach();
    Ok(())
}

/// A password check allocates 19 MiB and a large message tens of MiB, on
/// whichever blocking thread runs it. glibc's malloc raises its mmap
/// threshold after such blocks are freed and then keeps them in per-thread
/// arenas: twenty logins left 200 MiB resident. A fixed threshold makes big
/// blocks mmap'd and handed back at once, which matters on a 512 MB board.
/// (musl's malloc already does this.)
fn return_big_allocations_to_the_system() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only adjusts allocator tuning; called before any
    // thread but this one exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 * 1024);
    }
}

/// Each connection is a file descriptor, and the usual soft limit (1024)
/// is below what --max-connections allows: raise it toward the hard limit.
// rlim_t is 64 bits on some targets and 32 on others (armv7): the casts are
// needed there.
#[allow(clippy::unnecessary_cast)]
fn raise_file_limit(max_connections: usize) {
    let want = (max_connections as u64)
        .saturating_mul(2)
        .saturating_add(64);
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct we own.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 || limit.rlim_cur as u64 >= want {
            return;
        }
        let wanted = limit.rlim_max.min(want as libc::rlim_t);
        limit.rlim_cur = wanted;
        if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 || (wanted as u64) < want {
            log::warn!(
                "can only open {wanted} files at once (ulimit -n); --max-connections {max_connections} may not be reachable"
            );
        }
    }
}

/// Creates the data directory if needed; when starting as root, hands it to
/// the user the server will run as.
fn prepare_data_dir(dir: &Path, run_as: Option<&privileges::Account>) -> Result<(), String> {
    if !dir.exists() {
        std::fs::create_dir_all(dir).map_err(|e| {
            format!(
                "cannot create the data directory {}: {e} (choose another with --data)",
                dir.display()
            )
        })?;
        // Others may pass through (to reach lmtp.sock for `letterbox
        // deliver`) but not list it; the files inside are not theirs to read.
        let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o751));
    }
    if let Some(account) = run_as {
        privileges::chown_tree(dir, account)?;
    }
    Ok(())
}

fn bind_all(
    config: &Config,
    run_as: Option<&privileges::Account>,
) -> Result<Vec<Listener>, String> {
    let mut out = Vec::new();
    let tcp = [
        (
            config.imap,
            Protocol::Imap {
                implicit_tls: false,
            },
        ),
        (config.imaps, Protocol::Imap { implicit_tls: true }),
        (
            config.pop3,
            Protocol::Pop3 {
                implicit_tls: false,
            },
        ),
        (config.pop3s, Protocol::Pop3 { implicit_tls: true }),
        (config.lmtp, Protocol::Lmtp),
    ];
    for (addr, protocol) in tcp {
        let Some(addr) = addr else { continue };
        let listener = std::net::TcpListener::bind(addr).map_err(|e| {
            let hint = if e.kind() == std::io::ErrorKind::PermissionDenied {
                " (ports below 1024 need root or CAP_NET_BIND_SERVICE; try --unprivileged-ports)"
            } else {
                ""
            };
            format!(
                "cannot listen for {} on {addr}: {e}{hint}; choose another address with {} ADDR, or {} off",
                protocol.name(),
                protocol.flag(),
                protocol.flag()
            )
        })?;
        out.push(Listener {
            protocol,
            kind: ListenerKind::Tcp(listener),
        });
    }
    if let Some(path) = &config.lmtp_socket {
        remove_stale_socket(path)?;
        let listener = std::os::unix::net::UnixListener::bind(path).map_err(|e| {
            format!(
                "cannot create the LMTP socket {}: {e}; choose another path with --lmtp-socket PATH, or --lmtp-socket off",
                path.display()
            )
        })?;
        // Any local process may hand mail in, as with Dovecot's LMTP socket.
        let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666));
        if let Some(account) = run_as {
            privileges::chown(path, account)?;
        }
        out.push(Listener {
            protocol: Protocol::Lmtp,
            kind: ListenerKind::Unix(listener, path.clone()),
        });
    }
    if out.is_empty() {
        return Err("every listener is off: nothing to serve".into());
    }
    Ok(out)
}

/// A socket file left by a server that died is removed; one a live server
/// answers on is not.
fn remove_stale_socket(path: &Path) -> Result<(), String> {
    if !path.exists() {
        return Ok(());
    }
    if std::os::unix::net::UnixStream::connect(path).is_ok() {
        return Err(format!(
            "another server is already listening on {} (is letterbox already running on this data directory? stop it first)",
            path.display()
        ));
    }
    std::fs::remove_file(path)
        .map_err(|e| format!("cannot remove the stale socket {}: {e}", path.display()))
}

fn start_listener(
    ex: &Rc<LocalExecutor<'static>>,
    shared: &Rc<Shared>,
    listener: Listener,
) -> Result<(), String> {
    let protocol = listener.protocol;
    match listener.kind {
        ListenerKind::Tcp(std_listener) => {
            let addr = std_listener.local_addr().map_err(|e| e.to_string())?;
            std_listener
                .set_nonblocking(true)
                .map_err(|e| e.to_string())?;
            let listener = TcpListener::try_from(std_listener).map_err(|e| e.to_string())?;
            log::info!("{} listening on {addr}", protocol.name());
            let (ex2, shared) = (ex.clone(), shared.clone());
            ex.spawn(async move {
                loop {
                    match listener.accept().await {
                        Ok((tcp, peer_addr)) => {
                            // Replies leave in whole buffers (net::Conn), so
                            // Nagle's algorithm only delays each reply's last
                            // segment until the client's delayed ACK: 40 ms
                            // added to a large FETCH.
                            let _ = tcp.set_nodelay(true);
                            admit(&ex2, &shared, protocol, Stream::Tcp(tcp), Some(peer_addr))
                        }
                        Err(e) => accept_failed(protocol, e).await,
                    }
                }
            })
            .detach();
        }
        ListenerKind::Unix(std_listener, path) => {
            std_listener
                .set_nonblocking(true)
                .map_err(|e| e.to_string())?;
            let listener = UnixListener::try_from(std_listener).map_err(|e| e.to_string())?;
            log::info!("LMTP listening on unix socket {}", path.display());
            let (ex2, shared) = (ex.clone(), shared.clone());
            ex.spawn(async move {
                loop {
                    match listener.accept().await {
                        Ok((unix, _)) => admit(&ex2, &shared, protocol, Stream::Unix(unix), None),
                        Err(e) => accept_failed(protocol, e).await,
                    }
                }
            })
            .detach();
        }
    }
    Ok(())
}

/// Out of file descriptors and the like: say so, and back off instead of
/// spinning.
async fn accept_failed(protocol: Protocol, e: std::io::Error) {
    log::warn!("{}: accept failed: {e}", protocol.name());
    Timer::after(Duration::from_millis(100)).await;
}

fn admit(
    ex: &Rc<LocalExecutor<'static>>,
    shared: &Rc<Shared>,
    protocol: Protocol,
    stream: Stream,
    addr: Option<SocketAddr>,
) {
    let id = shared.next_conn_id.get();
    shared.next_conn_id.set(id + 1);
    let peer = Peer {
        id,
        addr,
        tls: false,
    };
    let slot = shared.limits.try_acquire(addr.map(|a| a.ip()));
    let shared = shared.clone();
    ex.spawn(async move {
        let slot = match slot {
            Ok(slot) => slot,
            Err(refused) => {
                log::warn!("{peer}: refused: {refused}");
                // On an implicit-TLS port the reason must go inside TLS, or
                // the client only sees a broken handshake.
                let mut peer = peer;
                let Some(stream) = implicit_tls(&shared, protocol, stream, &mut peer).await else {
                    return;
                };
                let mut conn = Conn::new(stream, peer, Duration::from_secs(10));
                let _ = conn
                    .write(protocol.refusal(&refused.to_string()).as_bytes())
                    .await;
                conn.close().await;
                return;
            }
        };
        serve_connection(shared, protocol, stream, peer, slot).await;
    })
    .detach();
}

/// For IMAPS and POP3S, runs the TLS handshake; other streams pass through.
/// None when the handshake fails.
async fn implicit_tls(
    shared: &Shared,
    protocol: Protocol,
    stream: Stream,
    peer: &mut Peer,
) -> Option<Stream> {
    match (protocol, stream) {
        (
            Protocol::Imap { implicit_tls: true } | Protocol::Pop3 { implicit_tls: true },
            Stream::Tcp(tcp),
        ) => {
            let acceptor = shared.tls_acceptor()?;
            match accept_tls(&acceptor, tcp).await {
                Ok(tls) => {
                    peer.tls = true;
                    Some(Stream::Tls(Box::new(tls)))
                }
                Err(e) => {
                    log::info!("{peer}: TLS handshake failed: {e}");
                    None
                }
            }
        }
        (_, stream) => Some(stream),
    }
}

async fn serve_connection(
    shared: Rc<Shared>,
    protocol: Protocol,
    stream: Stream,
    mut peer: Peer,
    _slot: Slot,
) {
    log::info!("{peer}: {} connection", protocol.name());
    let Some(stream) = implicit_tls(&shared, protocol, stream, &mut peer).await else {
        return;
    };
    let conn = Conn::new(stream, peer.clone(), Duration::from_secs(60));
    let session = async {
        match protocol {
            Protocol::Lmtp => crate::lmtp::serve(shared.clone(), conn).await,
            Protocol::Pop3 { .. } => crate::pop3::serve(shared.clone(), conn).await,
            Protocol::Imap { .. } => crate::imap::serve(shared.clone(), conn).await,
        }
    };
    // A bug in one session must not take the whole server down with it.
    use smol::future::FutureExt;
    if std::panic::AssertUnwindSafe(session)
        .catch_unwind()
        .await
        .is_err()
    {
        log::error!("{peer}: session ended by an internal error (a bug: please report it)");
    }
    log::info!("{peer}: closed");
}

/// Dropping root after binding the privileged ports.
mod privileges {
    #[cfg(not(target_feature = "crt-static"))]
    use std::ffi::CString;
    use std::path::Path;

    pub struct Account {
        pub name: String,
        pub uid: libc::uid_t,
        pub gid: libc::gid_t,
    }

    /// The account to switch to: only when started as root.
    pub fn target_user(requested: Option<&str>) -> Result<Option<Account>, String> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return Ok(None);
        }
        let name = requested.unwrap_or("letterbox");
        if name == "root" {
            log::warn!("running as root (--run-as root); a dedicated user is safer");
            return Ok(None);
        }
        lookup(name).map(Some).ok_or_else(|| {
            format!(
                "started as root, but the user {name:?} to run as does not exist; \
                 create it (useradd --system --home-dir /var/lib/letterbox {name}) or pass --run-as USER"
            )
        })
    }

    /// Looks the user up in /etc/passwd first (see crate::unix_accounts for
    /// why), then, in a dynamically linked build only, through NSS.
    fn lookup(name: &str) -> Option<Account> {
        let from_files = crate::unix_accounts::read_limited(Path::new("/etc/passwd"))
            .ok()
            .and_then(|text| crate::unix_accounts::find_user(&text, name));
        if let Some(entry) = from_files {
            return Some(Account {
                name: name.to_string(),
                uid: entry.uid,
                gid: entry.gid,
            });
        }
        lookup_nss(name)
    }

    /// A static binary must not call into NSS (glibc would try to load its
    /// shared modules): the files are all it has.
    #[cfg(target_feature = "crt-static")]
    fn lookup_nss(_name: &str) -> Option<Account> {
        None
    }

    #[cfg(not(target_feature = "crt-static"))]
    fn lookup_nss(name: &str) -> Option<Account> {
        let cname = CString::new(name).ok()?;
        let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
        let mut buf = vec![0 as libc::c_char; 4096];
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        // SAFETY: every pointer is valid for the call; pwd's strings point
        // into buf, which outlives the uses below.
        let rc = unsafe {
            libc::getpwnam_r(
                cname.as_ptr(),
                &mut pwd,
                buf.as_mut_ptr(),
                buf.len(),
                &mut result,
            )
        };
        if rc != 0 || result.is_null() {
            return None;
        }
        Some(Account {
            name: name.to_string(),
            uid: pwd.pw_uid,
            gid: pwd.pw_gid,
        })
    }

    /// Sets the supplementary groups /etc/group gives the user (static
    /// builds: no NSS, see lookup_nss).
    #[cfg(target_feature = "crt-static")]
    fn set_groups(account: &Account) -> bool {
        let group = crate::unix_accounts::read_limited(Path::new("/etc/group")).unwrap_or_default();
        let gids: Vec<libc::gid_t> =
            crate::unix_accounts::groups_of(&group, &account.name, account.gid);
        // SAFETY: gids is a valid array of gids.len() elements.
        unsafe { libc::setgroups(gids.len() as _, gids.as_ptr()) == 0 }
    }

    #[cfg(not(target_feature = "crt-static"))]
    fn set_groups(account: &Account) -> bool {
        let Ok(name) = CString::new(account.name.as_str()) else {
            return false;
        };
        // SAFETY: plain system calls on values we own.
        unsafe {
            libc::setgroups(0, std::ptr::null()) == 0
                && libc::initgroups(name.as_ptr(), account.gid) == 0
        }
    }

    pub fn chown(path: &Path, account: &Account) -> Result<(), String> {
        std::os::unix::fs::chown(path, Some(account.uid), Some(account.gid)).map_err(|e| {
            format!(
                "cannot give {} to user {}: {e}",
                path.display(),
                account.name
            )
        })
    }

    /// The data directory and what is directly in it (the database, the
    /// users file, the TLS pair) must belong to the server's user.
    pub fn chown_tree(dir: &Path, account: &Account) -> Result<(), String> {
        chown(dir, account)?;
        let entries =
            std::fs::read_dir(dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
        for entry in entries.flatten() {
            chown(&entry.path(), account)?;
        }
        Ok(())
    }

    /// Switches group, supplementary groups and user, in that order (the
    /// user last, since after it nothing else may be changed).
    pub fn drop_to(account: &Account) -> Result<(), String> {
        // SAFETY: plain system calls on values we own; each result is checked.
        let ok = set_groups(account)
            && unsafe { libc::setgid(account.gid) == 0 && libc::setuid(account.uid) == 0 };
        if !ok {
            return Err(format!(
                "cannot switch to user {}: {}",
                account.name,
                std::io::Error::last_os_error()
            ));
        }
        log::info!("running as user {} (uid {})", account.name, account.uid);
        Ok(())
    }
}
