//! The command line: one file per subcommand, each a function from parsed
//! flags to an exit code.

mod backup;
mod deliver;
mod export;
mod import;
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

/// Logs go to stderr; RUST_LOG sets the level (default: info).
fn init_logging() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .format_target(false)
        .init();
}
