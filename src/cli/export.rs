//! `letterbox export USER OUTDIR`: writes a user's mail out as Maildir, one
//! folder per mailbox, for backups and for moving to another server (Dovecot
//! and most mail tools read Maildir).

use std::path::{Component, Path, PathBuf};

use argh::FromArgs;

use crate::store::{Flags, Store};

/// write a user's mailboxes out as Maildir folders, from one consistent snapshot (through the running server if there is one)
#[derive(FromArgs)]
#[argh(subcommand, name = "export")]
pub struct ExportArgs {
    /// whose mail
    #[argh(positional)]
    user: String,
    /// where to write: OUTDIR/<mailbox>/cur/<message files>
    #[argh(positional)]
    out: PathBuf,
    /// data directory (default /var/lib/letterbox)
    #[argh(option)]
    data: Option<PathBuf>,
}

pub fn run(args: ExportArgs) -> i32 {
    match export(args) {
        Ok(count) => {
            eprintln!("exported {count} messages");
            0
        }
        Err(e) => {
            eprintln!("letterbox export: {e}");
            1
        }
    }
}

fn export(args: ExportArgs) -> Result<usize, String> {
    let data_dir = super::data_dir(args.data);
    let user = args.user.to_ascii_lowercase();
    // A running server holds the database: it writes the export itself.
    let out = std::path::absolute(&args.out).map_err(|e| format!("{}: {e}", args.out.display()))?;
    let request = crate::control::Request::Export {
        user: user.clone(),
        out: out.clone(),
    };
    if let Some(answer) = crate::control::call(&data_dir, &request, &mut |l| eprintln!("{l}")) {
        let text = answer?;
        return Ok(text
            .split_whitespace()
            .nth(1)
            .and_then(|n| n.parse().ok())
            .unwrap_or(0));
    }
    let db = data_dir.join("letterbox.redb");
    if !db.exists() {
        return Err(format!("no database at {} (give --data DIR)", db.display()));
    }
    let (store, _changes) =
        Store::open(&db, 16 << 20).map_err(|e| format!("{}: {e}", db.display()))?;
    let result = store
        .snapshot()
        .map_err(|e| e.to_string())
        .and_then(|snapshot| write_maildirs(&snapshot, &user, &out));
    store.shutdown();
    result
}

/// Writes `user`'s mailboxes under `out` as Maildir folders.
pub fn write_maildirs(
    snapshot: &crate::store::Snapshot,
    user: &str,
    out: &Path,
) -> Result<usize, String> {
    let mailboxes = snapshot.mailboxes(user).map_err(|e| e.to_string())?;
    if mailboxes.is_empty() {
        return Err(format!("{user} has no mail here"));
    }
    let content = snapshot.content().map_err(|e| e.to_string())?;
    let mut count = 0;
    for (id, mailbox) in mailboxes {
        let dir = out.join(safe_relative(&mailbox.name));
        for sub in ["cur", "new", "tmp"] {
            std::fs::create_dir_all(dir.join(sub))
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        }
        for (uid, message) in snapshot.messages(id).map_err(|e| e.to_string())? {
            let len = content
                .blob_len(message.blob)
                .map_err(|e| e.to_string())?
                .unwrap_or(0);
            let name = format!(
                "{}.{}.{uid}.letterbox,S={len}:2,{}",
                message.internal_date,
                mailbox.uid_validity,
                maildir_flags(message.flags)
            );
            let path = dir.join("cur").join(name);
            write_body(&content, message.blob, len, &path)
                .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
            count += 1;
        }
    }
    Ok(count)
}

/// Writes a message to `path` one chunk at a time, so exporting a large
/// message never holds it whole.
fn write_body(
    content: &crate::store::Content,
    blob: crate::store::BlobId,
    len: u64,
    path: &Path,
) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut file = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut at = 0;
    while at < len {
        let piece = content
            .blob_piece(blob, len, at, crate::store::BLOB_CHUNK)
            .map_err(std::io::Error::other)?;
        if piece.is_empty() {
            return Err(std::io::Error::other("message body ends early"));
        }
        at += piece.len() as u64;
        file.write_all(&piece)?;
    }
    file.flush()
}

/// Maildir's info letters, in the ASCII order the format asks for.
fn maildir_flags(flags: Flags) -> String {
    [
        (Flags::DRAFT, 'D'),
        (Flags::FLAGGED, 'F'),
        (Flags::ANSWERED, 'R'),
        (Flags::SEEN, 'S'),
        (Flags::DELETED, 'T'),
    ]
    .iter()
    .filter(|(flag, _)| flags.contains(*flag))
    .map(|(_, letter)| *letter)
    .collect()
}

/// A mailbox name as a path below OUTDIR: hierarchy levels become folders,
/// and nothing can climb out.
fn safe_relative(name: &str) -> PathBuf {
    Path::new(name)
        .components()
        .filter_map(|c| match c {
            Component::Normal(part) => Some(part),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_stay_inside() {
        assert_eq!(safe_relative("../../etc/x"), PathBuf::from("etc/x"));
        assert_eq!(safe_relative("/INBOX/a"), PathBuf::from("INBOX/a"));
        assert_eq!(maildir_flags(Flags::SEEN.with(Flags::DRAFT)), "DS");
    }
}
