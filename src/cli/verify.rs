//! `letterbox verify PATH`: checks a data directory or a backup.

use std::path::PathBuf;

use argh::FromArgs;

use crate::control::{self, backup, Request};
use crate::store::ReadOnlyStore;

/// check a data directory or a backup: every record and message is read, counts, indexes and reference counts are compared, and a backup's checksums are checked; exits 1 if anything is wrong (never writes)
#[derive(FromArgs)]
#[argh(subcommand, name = "verify")]
pub struct VerifyArgs {
    /// a data directory (a running server's too) or a backup directory
    #[argh(positional)]
    path: PathBuf,
}

pub fn run(args: VerifyArgs) -> i32 {
    let mut say = |line: String| println!("{line}");
    match verify(&args.path, &mut say) {
        Ok(text) => {
            println!("{text}");
            0
        }
        Err(e) => {
            eprintln!("letterbox verify: {e}");
            1
        }
    }
}

fn verify(path: &std::path::Path, say: &mut dyn FnMut(String)) -> Result<String, String> {
    if path.join(backup::MANIFEST).exists() {
        let verified = backup::verify(path, say)?;
        return control::report(&verified, say);
    }
    if let Some(answer) = control::call(path, &Request::Verify, &mut |l| say(l.to_string())) {
        return answer;
    }
    let db = path.join(backup::DATABASE);
    if !db.exists() {
        return Err(format!(
            "{} is neither a backup (no manifest) nor a data directory (no {})",
            path.display(),
            backup::DATABASE
        ));
    }
    let store = ReadOnlyStore::open(&db).map_err(|e| format!("{}: {e}", db.display()))?;
    let snapshot = store.snapshot().map_err(|e| e.to_string())?;
    let verified = snapshot
        .verify(&mut |n| say(format!("{n} messages read")))
        .map_err(|e| e.to_string())?;
    control::report(&verified, say)
}
