//! Backups as directories: `DEST/letterbox-YYYYMMDD-HHMMSS/` holds a
//! compact copy of the database, the users file and a manifest (schema,
//! counts per mailbox, a SHA-256 of each file). It is written under a
//! hidden temporary name, fsynced, and renamed only when whole, so a backup
//! cut off halfway never looks finished.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use crate::store::{ReadOnlyStore, Snapshot, Verified};

pub const DATABASE: &str = "letterbox.redb";
pub const USERS: &str = "users";
pub const MANIFEST: &str = "manifest";
/// Finished backups are named with this prefix and a UTC timestamp.
pub const PREFIX: &str = "letterbox-";

/// Writes a backup of `snapshot` (and of `data_dir`'s users file) into a new
/// directory under `dest`; returns its path.
pub fn write(
    snapshot: &Snapshot,
    data_dir: &Path,
    dest: &Path,
    say: &mut dyn FnMut(String),
) -> Result<PathBuf, String> {
    if !dest.is_dir() {
        // A USB disk or NAS share that is not mounted must not silently
        // become a directory on the SD card.
        return Err(format!(
            "{} is not a directory (is the disk mounted?)",
            dest.display()
        ));
    }
    let (unix, _) = crate::clock::now();
    let c = crate::clock::civil(unix, 0);
    let stamp = format!(
        "{:04}{:02}{:02}-{:02}{:02}{:02}",
        c.year, c.month, c.day, c.hour, c.minute, c.second
    );
    let name = format!("{PREFIX}{stamp}");
    let finished = dest.join(&name);
    if finished.exists() {
        return Err(format!("{} already exists", finished.display()));
    }
    let partial = dest.join(format!(".{name}.partial"));
    if partial.exists() {
        std::fs::remove_dir_all(&partial)
            .map_err(|e| format!("cannot clear {}: {e}", partial.display()))?;
    }
    std::fs::create_dir(&partial)
        .map_err(|e| format!("cannot create {}: {e}", partial.display()))?;
    let result = fill(snapshot, data_dir, &partial, say);
    if let Err(e) = result {
        let _ = std::fs::remove_dir_all(&partial);
        return Err(e);
    }
    std::fs::rename(&partial, &finished)
        .map_err(|e| format!("cannot rename {} into place: {e}", partial.display()))?;
    sync_dir(dest)?;
    Ok(finished)
}

fn fill(
    snapshot: &Snapshot,
    data_dir: &Path,
    dir: &Path,
    say: &mut dyn FnMut(String),
) -> Result<(), String> {
    let database = dir.join(DATABASE);
    let records = snapshot
        .copy_into(&database)
        .map_err(|e| format!("copying the database: {e}"))?;
    say(format!("copied {records} records"));
    let mut files = vec![DATABASE];
    let users = data_dir.join(USERS);
    if users.exists() {
        std::fs::copy(&users, dir.join(USERS))
            .map_err(|e| format!("copying {}: {e}", users.display()))?;
        sync_file(&dir.join(USERS))?;
        files.push(USERS);
    }
    let mut manifest = String::from("letterbox backup\n");
    let schema = snapshot.schema_version().map_err(|e| e.to_string())?;
    manifest += &format!("schema {schema}\n");
    for file in files {
        let (size, digest) = digest(&dir.join(file))?;
        manifest += &format!("file {file} {size} sha256:{digest}\n");
    }
    for line in mailbox_lines(snapshot)? {
        manifest += &line;
    }
    let path = dir.join(MANIFEST);
    let mut out =
        File::create(&path).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    out.write_all(manifest.as_bytes())
        .and_then(|()| out.sync_all())
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    sync_dir(dir)
}

/// `mailbox USER UIDVALIDITY UIDNEXT MESSAGES NAME` for every mailbox: what
/// a restore must bring back, readable by a person.
fn mailbox_lines(snapshot: &Snapshot) -> Result<Vec<String>, String> {
    let mut lines = Vec::new();
    for user in snapshot.users().map_err(|e| e.to_string())? {
        for (_, m) in snapshot.mailboxes(&user).map_err(|e| e.to_string())? {
            lines.push(format!(
                "mailbox {user} {} {} {} {}\n",
                m.uid_validity, m.uid_next, m.exists, m.name
            ));
        }
    }
    Ok(lines)
}

/// Checks a backup directory: the manifest's checksums, then the database
/// itself, then that its mailboxes are the ones the manifest lists.
pub fn verify(dir: &Path, say: &mut dyn FnMut(String)) -> Result<Verified, String> {
    let manifest_path = dir.join(MANIFEST);
    let manifest = std::fs::read_to_string(&manifest_path).map_err(|e| {
        format!(
            "{}: {e} (an unfinished or damaged backup?)",
            manifest_path.display()
        )
    })?;
    let mut report = Verified::default();
    let mut bad = |place: &str, what: String| {
        report.problems.push(crate::store::Problem {
            place: place.to_string(),
            what,
        })
    };
    if manifest.lines().next() != Some("letterbox backup") {
        return Err(format!(
            "{} is not a letterbox manifest",
            manifest_path.display()
        ));
    }
    let mut listed = Vec::new();
    let mut has_database = false;
    for line in manifest.lines().skip(1) {
        let mut words = line.splitn(3, ' ');
        match (words.next(), words.next(), words.next()) {
            (Some("file"), Some(name), Some(rest)) => {
                has_database |= name == DATABASE;
                let expected = rest.to_string();
                match digest(&dir.join(name)) {
                    Ok((size, sum)) if format!("{size} sha256:{sum}") == expected => {}
                    Ok((size, _)) => bad(
                        name,
                        format!("checksum or size differs from the manifest (now {size} bytes)"),
                    ),
                    Err(e) => bad(name, e),
                }
            }
            (Some("mailbox"), Some(_), Some(_)) => {
                listed.push(line["mailbox ".len()..].to_string())
            }
            (Some("schema"), Some(_), None) => {}
            _ => bad(MANIFEST, format!("line not understood: {line}")),
        }
    }
    if !has_database {
        bad(MANIFEST, "lists no database".into());
    }
    if !report.problems.is_empty() {
        // A file that fails its checksum is not opened: damaged pages are
        // for the checksum to find, not for the database code to trip on.
        return Ok(report);
    }
    say("checksums match the manifest".into());
    let store = ReadOnlyStore::open_backup(&dir.join(DATABASE)).map_err(|e| e.to_string())?;
    let snapshot = store.snapshot().map_err(|e| e.to_string())?;
    let mut checked = snapshot
        .verify(&mut |n| say(format!("{n} messages read")))
        .map_err(|e| e.to_string())?;
    let found: Vec<String> = mailbox_lines(&snapshot)?
        .into_iter()
        .map(|l| l["mailbox ".len()..].trim_end().to_string())
        .collect();
    if found != listed {
        checked.problems.push(crate::store::Problem {
            place: MANIFEST.into(),
            what: "the database's mailboxes differ from the manifest's".into(),
        });
    }
    Ok(checked)
}

/// Size and SHA-256 (hex) of a file, read in pieces.
fn digest(path: &Path) -> Result<(u64, String), String> {
    let mut file = File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut context = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buffer = vec![0; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = file
            .read(&mut buffer)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        if n == 0 {
            break;
        }
        size += n as u64;
        context.update(&buffer[..n]);
    }
    let hex: String = context
        .finish()
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok((size, hex))
}

fn sync_file(path: &Path) -> Result<(), String> {
    File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(|e| format!("cannot sync {}: {e}", path.display()))
}

fn sync_dir(path: &Path) -> Result<(), String> {
    File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(|e| format!("cannot sync {}: {e}", path.display()))
}

/// Puts a verified backup in place in a data directory whose server is
/// stopped. The files it replaces are moved aside, never deleted.
pub fn restore(backup: &Path, data_dir: &Path, say: &mut dyn FnMut(String)) -> Result<(), String> {
    let verified = verify(backup, say)?;
    if !verified.problems.is_empty() {
        let list: Vec<String> = verified
            .problems
            .iter()
            .map(|p| format!("  {}: {}", p.place, p.what))
            .collect();
        return Err(format!(
            "the backup does not verify; nothing was changed:\n{}",
            list.join("\n")
        ));
    }
    std::fs::create_dir_all(data_dir)
        .map_err(|e| format!("cannot create {}: {e}", data_dir.display()))?;
    let (unix, _) = crate::clock::now();
    let c = crate::clock::civil(unix, 0);
    let aside = data_dir.join(format!(
        "replaced-{:04}{:02}{:02}-{:02}{:02}{:02}",
        c.year, c.month, c.day, c.hour, c.minute, c.second
    ));
    let mut moved_aside = false;
    for file in [DATABASE, USERS] {
        let current = data_dir.join(file);
        if current.exists() {
            if !moved_aside {
                std::fs::create_dir(&aside)
                    .map_err(|e| format!("cannot create {}: {e}", aside.display()))?;
                moved_aside = true;
            }
            std::fs::rename(&current, aside.join(file))
                .map_err(|e| format!("cannot move {} aside: {e}", current.display()))?;
        }
    }
    if moved_aside {
        say(format!("the replaced files are in {}", aside.display()));
    }
    for file in [DATABASE, USERS] {
        let from = backup.join(file);
        if !from.exists() {
            continue;
        }
        let temporary = data_dir.join(format!(".{file}.restoring"));
        std::fs::copy(&from, &temporary)
            .map_err(|e| format!("cannot copy {}: {e}", from.display()))?;
        sync_file(&temporary)?;
        std::fs::rename(&temporary, data_dir.join(file))
            .map_err(|e| format!("cannot put {file} in place: {e}"))?;
    }
    sync_dir(data_dir)
}

/// Deletes the oldest finished backups in `dir` beyond the newest `keep`.
pub fn prune(dir: &Path, keep: usize) -> Result<Vec<PathBuf>, String> {
    let mut finished: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(PREFIX))
                && p.join(MANIFEST).exists()
        })
        .collect();
    // The names hold the time, so name order is age order.
    finished.sort_unstable();
    let excess = finished.len().saturating_sub(keep);
    let doomed: Vec<PathBuf> = finished.drain(..excess).collect();
    for path in &doomed {
        std::fs::remove_dir_all(path)
            .map_err(|e| format!("cannot delete {}: {e}", path.display()))?;
    }
    Ok(doomed)
}
