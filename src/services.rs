//! The services every protocol shares, below the protocols and above the
//! store: the configuration, the users file with authentication, throttling
//! and the login cache, the store handle and its change hub, heavy-work
//! offloading, the memory budget and the TLS acceptor. `server` builds one
//! [`Shared`] and hands it to each listener; IMAP, POP3, LMTP, the control
//! socket and the web interface use it and never import `server`.

use std::cell::{Cell, RefCell};
use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_rustls::TlsAcceptor;
use smol::lock::Semaphore;
use smol::Timer;

use crate::auth::fair::{AddressQueue, HashGate};
use crate::auth::{LoginCache, Throttle, Users};
use crate::net::tls::TlsFiles;
use crate::net::{ConnectionLimits, Peer};
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
    /// `--sendmail`: the command the webmail sends through, split into its
    /// words; None: sending is off.
    pub sendmail: Option<Vec<String>>,
    /// `--mail-domain`: the domain of `USER@` From addresses; None: the
    /// hostname.
    pub mail_domain: Option<String>,
    /// `--https`, `--http`, `--metrics` and the web sessions' settings.
    pub web: crate::web::http::WebConfig,
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
    /// What `--metrics` reports.
    pub metrics: crate::metrics::Metrics,
    /// The web interface's logged-in sessions.
    pub web_sessions: RefCell<crate::web::session::Sessions>,
    /// The web's threaded and searched message lists, worked out once
    /// per folder state.
    pub web_lists: RefCell<crate::web::api::list::ListCache>,
}

/// The outcome of a password check.
#[derive(Debug, PartialEq, Eq)]
pub enum Login {
    /// The canonical user name.
    Ok(String),
    Failed,
}

/// Runs `work` on a blocking thread, as `smol::unblock` does (it starts at
/// once, before the returned future is first polled), through one
/// type-erased instance: each instance of the generic one costs the binary
/// several KiB of task machinery, and the aarch64 binary has a 4 MB budget.
pub fn unblock<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> impl std::future::Future<Output = T> {
    let erased: Box<dyn FnOnce() -> Box<dyn std::any::Any + Send> + Send> =
        Box::new(move || Box::new(work()) as Box<dyn std::any::Any + Send>);
    let task = unblock_erased(erased);
    async move {
        match task.await.downcast::<T>() {
            Ok(value) => *value,
            // The box holds what `work` returned, a T: it cannot be another type.
            Err(_) => unreachable!("unblock: the result is the closure's own type"),
        }
    }
}

fn unblock_erased(
    work: Box<dyn FnOnce() -> Box<dyn std::any::Any + Send> + Send>,
) -> smol::Task<Box<dyn std::any::Any + Send>> {
    smol::unblock(work)
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
    /// Opens the store, the TLS files and the users file for `serve`, after
    /// privileges are dropped. Errors are for a person to read. Also returns
    /// the store's stream of committed changes, for the hub to publish.
    pub fn open(
        config: Config,
    ) -> Result<(Shared, smol::channel::Receiver<Vec<crate::store::Change>>), String> {
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
        let data_dir = config.data_dir.clone();
        let budget = crate::net::budget::Budget::new(config.memory_budget);
        let (web_session_idle, web_session_max) = (config.web.session_idle, config.web.session_max);
        let shared = Shared {
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
            budget: budget.clone(),
            spool_dir: crate::net::spool::spool_dir(&data_dir),
            metrics: crate::metrics::Metrics::new(db_path, budget, store.commit_latency()),
            web_sessions: RefCell::new(crate::web::session::Sessions::new(
                web_session_idle,
                web_session_max,
            )),
            web_lists: RefCell::default(),
        };
        Ok((shared, changes))
    }

    /// Maps a name a client or MTA gave to a known user, re-reading the
    /// users file if it changed (one stat), so `letterbox user add` takes
    /// effect at once.
    pub fn resolve_user(&self, name: &str) -> Option<String> {
        self.user_entry(name).map(|entry| entry.name)
    }

    /// A known user's entry in the users file as it is now (re-read as
    /// [`Shared::resolve_user`] does).
    pub fn user_entry(&self, name: &str) -> Option<crate::auth::passwd::UserEntry> {
        self.refresh_users();
        let users = self.users.borrow();
        users.lookup(&name.to_lowercase())
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

    /// Whether the users file names nobody yet.
    pub fn has_no_users(&self) -> bool {
        self.users.borrow().is_empty()
    }

    /// A number for the log that tells one connection from another.
    pub fn next_connection_id(&self) -> u64 {
        let id = self.next_conn_id.get();
        self.next_conn_id.set(id + 1);
        id
    }

    /// The caps on connections in all and per address (`--max-connections`,
    /// `--max-connections-per-ip`).
    pub fn connection_limits(&self) -> &Rc<ConnectionLimits> {
        &self.limits
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
        unblock(work).await
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
            tasks.push(unblock(move || {
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
            unblock(move || crate::auth::verify_password(&stored, &password)).await
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
                self.metrics.login(true);
                Login::Ok(entry.name)
            }
            _ => {
                log::info!("{peer}: failed login for {name:?}");
                self.metrics.login(false);
                Login::Failed
            }
        }
    }

    /// SIGHUP: the TLS certificate and the users file are read again.
    pub fn reload(&self) {
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
