//! `letterbox backup DEST` and `letterbox restore BACKUP`.

use std::path::PathBuf;

use argh::FromArgs;

use crate::control::{self, backup, Request};
use crate::store::Store;

/// write a consistent backup into DEST/letterbox-YYYYMMDD-HHMMSS/ (through the running server if there is one; DEST may be a USB disk or a NAS mount)
#[derive(FromArgs)]
#[argh(subcommand, name = "backup")]
pub struct BackupArgs {
    /// an existing directory to write the backup into
    #[argh(positional)]
    dest: PathBuf,
    /// data directory (default /var/lib/letterbox)
    #[argh(option)]
    data: Option<PathBuf>,
}

pub fn run(args: BackupArgs) -> i32 {
    let data_dir = super::data_dir(args.data);
    let result = std::path::absolute(&args.dest)
        .map_err(|e| format!("{}: {e}", args.dest.display()))
        .and_then(|dest| backup_to(&data_dir, dest));
    match result {
        Ok(text) => {
            println!("{text}");
            0
        }
        Err(e) => {
            eprintln!("letterbox backup: {e}");
            1
        }
    }
}

fn backup_to(data_dir: &std::path::Path, dest: PathBuf) -> Result<String, String> {
    let request = Request::Backup { dest };
    if let Some(answer) = control::call(data_dir, &request, &mut |l| eprintln!("{l}")) {
        return answer;
    }
    // No server: open the store here (it is locked if a server runs
    // without its control socket, and then says so).
    let db = data_dir.join(backup::DATABASE);
    if !db.exists() {
        return Err(format!("no database at {} (give --data DIR)", db.display()));
    }
    let (store, _changes) =
        Store::open(&db, 16 << 20).map_err(|e| format!("{}: {e}", db.display()))?;
    let result = control::run(&store, data_dir, request, &mut |l| eprintln!("{l}"));
    store.shutdown();
    result
}

/// put a backup back in place, with the server stopped: it is verified first, and the files it replaces are kept aside in DATA/replaced-*
#[derive(FromArgs)]
#[argh(subcommand, name = "restore")]
pub struct RestoreArgs {
    /// the backup directory (DEST/letterbox-YYYYMMDD-HHMMSS)
    #[argh(positional)]
    backup: PathBuf,
    /// data directory (default /var/lib/letterbox)
    #[argh(option)]
    data: Option<PathBuf>,
}

pub fn restore(args: RestoreArgs) -> i32 {
    let data_dir = super::data_dir(args.data);
    match restore_into(&args.backup, &data_dir) {
        Ok(()) => {
            println!(
                "restored {} into {}",
                args.backup.display(),
                data_dir.display()
            );
            0
        }
        Err(e) => {
            eprintln!("letterbox restore: {e}");
            1
        }
    }
}

fn restore_into(backup_dir: &std::path::Path, data_dir: &std::path::Path) -> Result<(), String> {
    let running = std::os::unix::net::UnixStream::connect(control::socket_path(data_dir)).is_ok();
    let db = data_dir.join(backup::DATABASE);
    // Opening the database takes its lock: a server without a control
    // socket is found this way.
    let locked = db.exists()
        && matches!(
            Store::open(&db, 1 << 20).map(|(store, _)| store.shutdown()),
            Err(crate::store::StoreError::Locked)
        );
    if running || locked {
        return Err(format!(
            "a server is running on {}: stop it first",
            data_dir.display()
        ));
    }
    backup::restore(backup_dir, data_dir, &mut |l| eprintln!("{l}"))
}
