//! `letterbox serve`.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use argh::FromArgs;

use crate::services::{Config, Pop3Mode};

/// run the mail server: LMTP in; IMAP, POP3 and the web interface out
#[derive(FromArgs)]
#[argh(subcommand, name = "serve")]
pub struct ServeArgs {
    /// where the database, users file and TLS pair live (default /var/lib/letterbox)
    #[argh(option)]
    data: Option<PathBuf>,
    /// IMAP with STARTTLS, host:port or off (default 0.0.0.0:143)
    #[argh(option)]
    imap: Option<String>,
    /// IMAP over TLS, host:port or off (default 0.0.0.0:993)
    #[argh(option)]
    imaps: Option<String>,
    /// POP3 with STLS, host:port or off (default 0.0.0.0:110)
    #[argh(option)]
    pop3: Option<String>,
    /// POP3 over TLS, host:port or off (default 0.0.0.0:995)
    #[argh(option)]
    pop3s: Option<String>,
    /// LMTP over TCP, host:port or off (default off; LMTP's port is 24)
    #[argh(option)]
    lmtp: Option<String>,
    /// LMTP unix socket path, or off (default DATA/lmtp.sock)
    #[argh(option)]
    lmtp_socket: Option<String>,
    /// the web interface over HTTPS, host:port or off (default 0.0.0.0:443; if that port is taken, a warning and mail service without the web)
    #[argh(option)]
    https: Option<String>,
    /// the web interface over plain HTTP, for a reverse proxy or loopback, host:port or off (default off)
    #[argh(option)]
    http: Option<String>,
    /// a reverse proxy's IP address whose X-Forwarded-For and X-Forwarded-Proto are believed; repeat for more (default none)
    #[argh(option)]
    trusted_proxy: Vec<String>,
    /// serve Prometheus metrics at GET /metrics over plain HTTP on its own listener, host:port or off (default off)
    #[argh(option)]
    metrics: Option<String>,
    /// how long an unused web session stays logged in: a number with s, m, h or d (default 30m)
    #[argh(option, default = "String::from(\"30m\")")]
    web_session_idle: String,
    /// how long a web session stays logged in at most, however busy: a number with s, m, h or d (default 7d)
    #[argh(option, default = "String::from(\"7d\")")]
    web_session_max: String,
    /// seconds a web client has to send a request's headers, and the longest a kept-alive web connection waits for the next request (default 20)
    #[argh(option, default = "20")]
    web_header_timeout: u64,
    /// shift the default ports to 10143, 10993, 10110, 10995 and 10443, for running without root
    #[argh(switch)]
    unprivileged_ports: bool,
    /// TLS certificate chain, PEM (default: a self-signed one made in DATA)
    #[argh(option)]
    tls_cert: Option<PathBuf>,
    /// TLS private key, PEM (goes with --tls-cert)
    #[argh(option)]
    tls_key: Option<PathBuf>,
    /// the name in greetings and trace headers (default: this machine's hostname)
    #[argh(option)]
    hostname: Option<String>,
    /// accept passwords over unencrypted connections from other machines (default: only over TLS or from loopback)
    #[argh(switch)]
    allow_plaintext_auth: bool,
    /// the largest message accepted, in bytes (default 52428800, 50 MiB)
    #[argh(option, default = "50 * 1024 * 1024")]
    max_message_size: usize,
    /// the most client connections at once (default 1000)
    #[argh(option, default = "1000")]
    max_connections: usize,
    /// the most connections from one address, IPv6 counted by its /64 (default 50)
    #[argh(option, default = "50")]
    max_connections_per_ip: usize,
    /// database page cache, in bytes (default 33554432, 32 MiB; fits a 512 MB board)
    #[argh(option, default = "32 * 1024 * 1024")]
    cache_size: usize,
    /// what POP3's DELE does: delete removes the message, keep only hides it from POP3 (default delete; a user's pop3_mode=keep field overrides)
    #[argh(option, default = "String::from(\"delete\")")]
    pop3_mode: String,
    /// seconds between the `* OK Still here` lines sent to an idling IMAP client, so that NAT and firewalls keep the connection (default 120)
    #[argh(option, default = "120")]
    idle_keepalive: u64,
    /// seconds an IMAP client may stay silent before it is logged out; RFC 9051 asks for at least 1800 (default 1800)
    #[argh(option, default = "1800")]
    imap_autologout: u64,
    /// seconds an IMAP or POP3 client has to log in before it is disconnected (default 60)
    #[argh(option, default = "60")]
    login_timeout: u64,
    /// seconds a correct login is remembered in memory, so that logging in again skips the password hash; 0 turns it off (default 300)
    #[argh(option, default = "300")]
    login_cache: u64,
    /// memory, in bytes, that incoming message bodies (LMTP DATA, IMAP APPEND) may hold at once, analysis included; more wait their turn (default 67108864, 64 MiB)
    #[argh(option, default = "64 * 1024 * 1024")]
    memory_budget: u64,
    /// seconds an incoming message waits for --memory-budget before it is refused for now with LMTP 452 4.3.1 or IMAP NO [LIMIT] (default 30)
    #[argh(option, default = "30")]
    memory_wait: u64,
    /// make a backup (as `letterbox backup DIR` does) every --backup-every into this existing directory, e.g. a USB disk (default off)
    #[argh(option)]
    backup_dir: Option<PathBuf>,
    /// how often --backup-dir gets a backup: a number with s, m, h or d (default 24h)
    #[argh(option, default = "String::from(\"24h\")")]
    backup_every: String,
    /// how many backups to keep in --backup-dir; the oldest beyond it are deleted (default 7)
    #[argh(option, default = "7")]
    backup_keep: usize,
    /// bytes kept free on the disk holding DATA: below it, deliveries, APPEND and COPY are refused for now (LMTP 452 4.3.1, IMAP NO [OVERQUOTA]) while expunges and deletes still work; 0 turns it off (default 64 MiB or 2% of that disk, whichever is smaller)
    #[argh(option)]
    min_free_space: Option<u64>,
    /// every user's storage limit, in bytes or with a K, M, G or T suffix; a user's quota_storage= or userdb_quota_rule= field in the users file overrides it (default none)
    #[argh(option)]
    quota_storage: Option<String>,
    /// every user's limit on the number of messages; a user's quota_messages= or userdb_quota_rule= field overrides it (default none)
    #[argh(option)]
    quota_messages: Option<u64>,
    /// what LMTP answers for a full mailbox: defer (452 4.2.2, the MTA keeps the message and retries) or bounce (552 5.2.2, returned to the sender) (default defer)
    #[argh(option, default = "String::from(\"defer\")")]
    quota_full: String,
    /// the command the webmail sends mail through, with the message on its standard input and the recipients in it, e.g. "/usr/sbin/sendmail -i -t"; split into words as a shell would, but run without one (default off: the webmail only saves drafts)
    #[argh(option)]
    sendmail: Option<String>,
    /// the domain of a user's From address in the webmail, USER@DOMAIN, unless the users file gives the user an address= field (default: --hostname)
    #[argh(option)]
    mail_domain: Option<String>,
    /// the user to switch to after binding ports, when started as root (default letterbox)
    #[argh(option)]
    run_as: Option<String>,
}

/// `90s`, `15m`, `24h`, `7d`.
fn interval(flag: &str, text: &str) -> Result<Duration, String> {
    let (digits, unit) = text.split_at(text.len().saturating_sub(1));
    let scale = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => 0,
    };
    match digits.parse::<u64>() {
        Ok(n) if n > 0 && scale > 0 => Ok(Duration::from_secs(n.saturating_mul(scale))),
        _ => Err(format!(
            "{flag} {text:?}: give a number and a unit, e.g. 24h, 90m, 7d"
        )),
    }
}

pub fn run(args: ServeArgs) -> i32 {
    super::init_logging();
    let config = match config(args) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("letterbox serve: {e}");
            return 64;
        }
    };
    match crate::server::run(config) {
        Ok(()) => 0,
        Err(e) => {
            log::error!("{e}");
            1
        }
    }
}

fn config(args: ServeArgs) -> Result<Config, String> {
    let data_dir = super::data_dir(args.data);
    let shift = if args.unprivileged_ports { 10_000 } else { 0 };
    let default = |port: u16| Some(SocketAddr::from(([0, 0, 0, 0], port + shift)));
    let lmtp_socket = match args.lmtp_socket.as_deref() {
        Some("off") => None,
        Some(path) => Some(PathBuf::from(path)),
        None => Some(data_dir.join("lmtp.sock")),
    };
    let pop3_mode = match args.pop3_mode.as_str() {
        "delete" => Pop3Mode::Delete,
        "keep" => Pop3Mode::Keep,
        other => return Err(format!("--pop3-mode takes delete or keep, not {other:?}")),
    };
    if args.max_connections == 0 || args.max_connections_per_ip == 0 {
        return Err("--max-connections and --max-connections-per-ip must be at least 1".into());
    }
    if args.idle_keepalive == 0 || args.imap_autologout == 0 {
        return Err("--idle-keepalive and --imap-autologout must be at least 1 second".into());
    }
    if args.login_timeout == 0 {
        return Err("--login-timeout must be at least 1 second".into());
    }
    if args.memory_budget < crate::net::spool::SPOOL_THRESHOLD as u64 {
        return Err(format!(
            "--memory-budget must be at least {} bytes: one incoming message's buffer",
            crate::net::spool::SPOOL_THRESHOLD
        ));
    }
    if args.memory_wait == 0 {
        return Err("--memory-wait must be at least 1 second".into());
    }
    if args.imap_autologout < 1800 {
        log::warn!(
            "--imap-autologout {} is below the 30 minutes RFC 9051 asks for; clients may be cut off mid-session",
            args.imap_autologout
        );
    }
    if args.max_message_size < 1024 {
        return Err("--max-message-size must be at least 1024 bytes".into());
    }
    let quota = crate::store::QuotaLimits {
        storage: match args.quota_storage.as_deref() {
            Some(text) => Some(
                crate::quota::parse_size(text, 1).map_err(|e| format!("--quota-storage: {e}"))?,
            )
            .filter(|&n| n > 0),
            None => None,
        },
        messages: args.quota_messages.filter(|&n| n > 0),
    };
    let quota_bounce = match args.quota_full.as_str() {
        "defer" => false,
        "bounce" => true,
        other => return Err(format!("--quota-full takes defer or bounce, not {other:?}")),
    };
    let sendmail = match args.sendmail.as_deref() {
        None | Some("off") => None,
        Some(command) => {
            Some(crate::web::api::split_command(command).map_err(|e| format!("--sendmail: {e}"))?)
        }
    };
    let mail_domain = match args.mail_domain {
        Some(domain)
            if domain.is_empty()
                || domain.contains(|c: char| {
                    c.is_whitespace() || c.is_control() || "@<>,;\"\\".contains(c)
                }) =>
        {
            return Err(format!("--mail-domain {domain:?} is not a domain name"))
        }
        other => other,
    };
    if args.web_header_timeout == 0 {
        return Err("--web-header-timeout must be at least 1 second".into());
    }
    let trusted_proxies = args
        .trusted_proxy
        .iter()
        .map(|text| {
            text.parse::<std::net::IpAddr>().map_err(|_| {
                format!("--trusted-proxy takes an IP address (like 127.0.0.1 or ::1), not {text:?}")
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let web = crate::web::http::WebConfig {
        https_is_default: args.https.is_none(),
        https: address("--https", args.https, default(443))?,
        http: address("--http", args.http, None)?,
        metrics: address("--metrics", args.metrics, None)?,
        trusted_proxies,
        session_idle: interval("--web-session-idle", &args.web_session_idle)?,
        session_max: interval("--web-session-max", &args.web_session_max)?,
        header_timeout: Duration::from_secs(args.web_header_timeout),
    };
    Ok(Config {
        web,
        sendmail,
        mail_domain,
        quota,
        quota_bounce,
        imap: address("--imap", args.imap, default(143))?,
        imaps: address("--imaps", args.imaps, default(993))?,
        pop3: address("--pop3", args.pop3, default(110))?,
        pop3s: address("--pop3s", args.pop3s, default(995))?,
        lmtp: address("--lmtp", args.lmtp, None)?,
        lmtp_socket,
        tls_cert: args.tls_cert,
        tls_key: args.tls_key,
        hostname: args.hostname.unwrap_or_else(system_hostname),
        allow_plaintext_auth: args.allow_plaintext_auth,
        max_message_size: args.max_message_size,
        max_connections: args.max_connections,
        max_connections_per_ip: args.max_connections_per_ip,
        cache_size: args.cache_size,
        pop3_mode,
        idle_keepalive: Duration::from_secs(args.idle_keepalive),
        imap_autologout: Duration::from_secs(args.imap_autologout),
        login_timeout: Duration::from_secs(args.login_timeout),
        login_cache: Duration::from_secs(args.login_cache),
        memory_budget: args.memory_budget,
        memory_wait: Duration::from_secs(args.memory_wait),
        backup_dir: match args.backup_dir {
            Some(dir) => Some(std::path::absolute(&dir).map_err(|e| format!("--backup-dir: {e}"))?),
            None => None,
        },
        backup_every: interval("--backup-every", &args.backup_every)?,
        backup_keep: args.backup_keep.max(1),
        min_free_space: args.min_free_space,
        run_as: args.run_as,
        data_dir,
    })
}

/// `host:port`, or `off`, or the default when the flag is absent.
fn address(
    flag: &str,
    value: Option<String>,
    default: Option<SocketAddr>,
) -> Result<Option<SocketAddr>, String> {
    let Some(value) = value else {
        return Ok(default);
    };
    if value == "off" {
        return Ok(None);
    }
    value
        .to_socket_addrs()
        .ok()
        .and_then(|mut addrs| addrs.next())
        .map(Some)
        .ok_or_else(|| format!("{flag} takes host:port (like 127.0.0.1:24) or off, not {value:?}"))
}

fn system_hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most buf.len() bytes into buf.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    match std::str::from_utf8(&buf[..end]) {
        Ok(name) if rc == 0 && !name.is_empty() => name.to_string(),
        _ => "localhost".into(),
    }
}
