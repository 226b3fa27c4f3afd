//! The command line: one file per subcommand, each a function from parsed
//! flags to an exit code.

mod backup;
mod deliver;
mod export;
mod import;
mod logger;
mod serve;
mod user;
mod verify;

pub use export::write_maildirs as export_maildirs;

use std::path::PathBuf;

use argh::FromArgs;

/// The default data directory, as DESIGN.md and the systemd unit have it.
pub const DEFAULT_DATA_DIR: &str = "/var/lib/letterbox";

/// letterbox: a single-binary mail store. Mail arrives over LMTP, lives in
/// one database file, and is read over IMAP and POP3.
#[derive(FromArgs)]
struct Top {
    #[argh(subcommand)]
    command: Command,
}

#[derive(FromArgs)]
#[argh(subcommand)]
enum Command {
    Serve(Box<serve::ServeArgs>),
    User(user::UserArgs),
    Deliver(deliver::DeliverArgs),
    Export(export::ExportArgs),
    Import(import::ImportArgs),
    Backup(backup::BackupArgs),
    Restore(backup::RestoreArgs),
    Verify(verify::VerifyArgs),
}

/// Parses the command line, runs the subcommand, and returns the exit code.
pub fn main() -> i32 {
    let top: Top = argh::from_env();
    match top.command {
        Command::Serve(args) => serve::run(*args),
        Command::User(args) => user::run(args),
        Command::Deliver(args) => deliver::run(args),
        Command::Export(args) => export::run(args),
        Command::Import(args) => import::run(args),
        Command::Backup(args) => backup::run(args),
        Command::Restore(args) => backup::restore(args),
        Command::Verify(args) => verify::run(args),
    }
}

fn data_dir(flag: Option<PathBuf>) -> PathBuf {
    flag.unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR))
}

/// Logs go to stderr; RUST_LOG sets the level (default: info). Under
/// systemd, when stderr is the journal, each line starts with its syslog
/// priority instead of a timestamp (the journal keeps its own), so that
/// `journalctl -p warning` finds the warnings (sd-daemon(3)).
fn init_logging() {
    logger::init(if stderr_is_journal() {
        logger::Style::Journal
    } else {
        logger::Style::Timestamped
    });
}

/// systemd sets JOURNAL_STREAM to the device and inode of the stream it
/// connected to stdout/stderr. It is inherited by children, so it counts
/// only when stderr is still that stream, not when a script redirected it
/// to a file (systemd.exec(5) asks for exactly this check).
fn stderr_is_journal() -> bool {
    use std::os::unix::fs::MetadataExt;
    use std::os::unix::io::FromRawFd;
    let Some(stream) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = stream.to_str().and_then(|s| s.split_once(':')) else {
        return false;
    };
    let (Ok(dev), Ok(ino)) = (dev.parse::<u64>(), ino.parse::<u64>()) else {
        return false;
    };
    // SAFETY: dup has no preconditions; it fails if stderr is closed.
    let copy = unsafe { libc::dup(2) };
    if copy < 0 {
        return false;
    }
    // SAFETY: `copy` is a descriptor we own, and only this File closes it.
    let stderr = unsafe { std::fs::File::from_raw_fd(copy) };
    // std's metadata is 64-bit clean on 32-bit boards too (statx/fstat64).
    let Ok(meta) = stderr.metadata() else {
        return false;
    };
    meta.dev() == dev && meta.ino() == ino
}
