//! `letterbox serve`: binds the listeners, drops privileges, opens the store,
//! and runs every session on one event-loop thread until SIGTERM.

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Duration;

use smol::net::unix::UnixListener;
use smol::net::TcpListener;
use smol::stream::StreamExt;
use smol::{LocalExecutor, Timer};

use crate::net::{accept_tls, Conn, Peer, Slot, Stream};
use crate::services::{Config, Shared};

/// The protocol a listener speaks, and whether TLS starts at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Imap {
        implicit_tls: bool,
    },
    Pop3 {
        implicit_tls: bool,
    },
    Lmtp,
    /// The web interface, over HTTPS (`--https`) or plain HTTP (`--http`).
    Web {
        tls: bool,
    },
    /// `--metrics`.
    Metrics,
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
            Protocol::Web { tls: true } => "HTTPS",
            Protocol::Web { tls: false } => "HTTP",
            Protocol::Metrics => "metrics",
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
            Protocol::Web { tls: true } => "--https",
            Protocol::Web { tls: false } => "--http",
            Protocol::Metrics => "--metrics",
        }
    }
    /// Which open-connections gauge counts this protocol's connections;
    /// none for the metrics listener, whose scrapes would only count
    /// themselves.
    fn metrics_kind(self) -> Option<crate::metrics::ConnectionKind> {
        use crate::metrics::ConnectionKind;
        Some(match self {
            Protocol::Imap {
                implicit_tls: false,
            } => ConnectionKind::Imap,
            Protocol::Imap { implicit_tls: true } => ConnectionKind::Imaps,
            Protocol::Pop3 {
                implicit_tls: false,
            } => ConnectionKind::Pop3,
            Protocol::Pop3 { implicit_tls: true } => ConnectionKind::Pop3s,
            Protocol::Lmtp => ConnectionKind::Lmtp,
            Protocol::Web { .. } => ConnectionKind::Web,
            Protocol::Metrics => return None,
        })
    }
    /// What a connection turned away at the door is told, in its protocol.
    fn refusal(self, why: &str) -> String {
        match self {
            Protocol::Imap { .. } => format!("* BYE [UNAVAILABLE] {why}\r\n"),
            Protocol::Pop3 { .. } => format!("-ERR [SYS/TEMP] {why}\r\n"),
            Protocol::Lmtp => format!("421 4.3.2 {why}\r\n"),
            Protocol::Web { .. } | Protocol::Metrics => format!(
                "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n\
                 Content-Length: {}\r\nConnection: close\r\n\r\n{why}\n",
                why.len() + 1
            ),
        }
    }
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
    let (shared, changes) = Shared::open(config)?;
    let shared = Rc::new(shared);
    let store = shared.store.clone();

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
            spawn(&ex, scheduled_backups(shared.clone(), dir));
        }
        if shared.has_no_users() {
            log::warn!(
                "no users yet: add one with `letterbox user add NAME --data {}`",
                shared.config.data_dir.display()
            );
        }
        let hub_shared = shared.clone();
        spawn(&ex, async move {
            while let Ok(batch) = changes.recv().await {
                hub_shared.hub.publish(&batch);
            }
        });
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
        let outcome = crate::services::unblock(move || {
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
    spawn(ex, async move {
        loop {
            match listener.accept().await {
                Ok((stream, _)) => spawn(&ex2, crate::control::serve(shared.clone(), stream)),
                Err(e) => {
                    log::warn!("control socket: accept failed: {e}");
                    Timer::after(Duration::from_millis(100)).await;
                }
            }
        }
    });
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
        (config.web.https, Protocol::Web { tls: true }),
        (config.web.http, Protocol::Web { tls: false }),
        (config.web.metrics, Protocol::Metrics),
    ];
    for (addr, protocol) in tcp {
        let Some(addr) = addr else { continue };
        let bound = std::net::TcpListener::bind(addr);
        // Port 443 is often taken on a home server (a reverse proxy,
        // Pi-hole, Nextcloud): left at its default, that costs the web
        // interface and not the mail.
        if let (Err(e), Protocol::Web { tls: true }, true) =
            (&bound, protocol, config.web.https_is_default)
        {
            if matches!(
                e.kind(),
                std::io::ErrorKind::AddrInUse | std::io::ErrorKind::PermissionDenied
            ) {
                log::warn!(
                    "the web interface is off: cannot listen for HTTPS on {addr}: {e}; \
                     choose another address with --https ADDR (e.g. 0.0.0.0:8443), or --https off to silence this"
                );
                continue;
            }
        }
        let listener = bound.map_err(|e| {
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
            spawn(ex, async move {
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
            });
        }
        ListenerKind::Unix(std_listener, path) => {
            std_listener
                .set_nonblocking(true)
                .map_err(|e| e.to_string())?;
            let listener = UnixListener::try_from(std_listener).map_err(|e| e.to_string())?;
            log::info!("LMTP listening on unix socket {}", path.display());
            let (ex2, shared) = (ex.clone(), shared.clone());
            spawn(ex, async move {
                loop {
                    match listener.accept().await {
                        Ok((unix, _)) => admit(&ex2, &shared, protocol, Stream::Unix(unix), None),
                        Err(e) => accept_failed(protocol, e).await,
                    }
                }
            });
        }
    }
    Ok(())
}

/// Runs a task on the loop until it ends. Boxed, so that the executor's
/// task code is made once for every task rather than once per future type
/// (about 6 KB of binary each); the price is one allocation per task, next
/// to the one the executor makes anyway.
fn spawn(ex: &LocalExecutor<'static>, task: impl std::future::Future<Output = ()> + 'static) {
    let task: std::pin::Pin<Box<dyn std::future::Future<Output = ()>>> = Box::pin(task);
    ex.spawn(task).detach();
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
    let id = shared.next_connection_id();
    let peer = Peer {
        id,
        addr,
        tls: false,
    };
    // A trusted reverse proxy carries many clients on its connections:
    // they count towards --max-connections only, not one address's share.
    let limited_ip = addr.map(|a| a.ip()).filter(|ip| {
        !(matches!(protocol, Protocol::Web { .. })
            && shared.config.web.trusted_proxies.contains(ip))
    });
    let slot = shared.connection_limits().try_acquire(limited_ip);
    let shared = shared.clone();
    spawn(ex, async move {
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
    });
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
            Protocol::Imap { implicit_tls: true }
            | Protocol::Pop3 { implicit_tls: true }
            | Protocol::Web { tls: true },
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
    let _open = protocol
        .metrics_kind()
        .map(|kind| shared.metrics.connection_opened(kind));
    log::info!("{peer}: {} connection", protocol.name());
    let Some(stream) = implicit_tls(&shared, protocol, stream, &mut peer).await else {
        return;
    };
    let session = async {
        use crate::web::http::Site;
        let line_based = |stream| Conn::new(stream, peer.clone(), Duration::from_secs(60));
        match protocol {
            Protocol::Lmtp => crate::lmtp::serve(shared.clone(), line_based(stream)).await,
            Protocol::Pop3 { .. } => crate::pop3::serve(shared.clone(), line_based(stream)).await,
            Protocol::Imap { .. } => crate::imap::serve(shared.clone(), line_based(stream)).await,
            Protocol::Web { .. } => {
                crate::web::http::serve(shared.clone(), stream, peer.clone(), Site::Webmail).await
            }
            Protocol::Metrics => {
                crate::web::http::serve(shared.clone(), stream, peer.clone(), Site::Metrics).await
            }
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
