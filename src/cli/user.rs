//! `letterbox user add|passwd|del|list`: edits DATA/users. Safe while the
//! server runs: the file is replaced atomically and the server notices the
//! change at the next login or delivery.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use argh::FromArgs;

use crate::auth::{self, UsersFile};

/// manage the users who can log in and receive mail
#[derive(FromArgs)]
#[argh(subcommand, name = "user")]
pub struct UserArgs {
    #[argh(subcommand)]
    action: Action,
}

#[derive(FromArgs)]
#[argh(subcommand)]
enum Action {
    Add(Add),
    Passwd(Passwd),
    Del(Del),
    List(List),
}

/// add a user (the password is asked for, or read from stdin)
#[derive(FromArgs)]
#[argh(subcommand, name = "add")]
struct Add {
    /// the login name, which is also the address's local part (alice receives alice@any-domain)
    #[argh(positional)]
    name: String,
    /// data directory (default /var/lib/letterbox)
    #[argh(option)]
    data: Option<PathBuf>,
    /// read the password from the first line of stdin instead of the terminal
    #[argh(switch)]
    password_stdin: bool,
}

/// change a user's password
#[derive(FromArgs)]
#[argh(subcommand, name = "passwd")]
struct Passwd {
    /// the login name
    #[argh(positional)]
    name: String,
    /// data directory (default /var/lib/letterbox)
    #[argh(option)]
    data: Option<PathBuf>,
    /// read the password from the first line of stdin instead of the terminal
    #[argh(switch)]
    password_stdin: bool,
}

/// remove a user's login (their mail stays in the database)
#[derive(FromArgs)]
#[argh(subcommand, name = "del")]
struct Del {
    /// the login name
    #[argh(positional)]
    name: String,
    /// data directory (default /var/lib/letterbox)
    #[argh(option)]
    data: Option<PathBuf>,
}

/// list the users, one per line, each with their quota usage and limits (tab-separated: name, storage, messages)
#[derive(FromArgs)]
#[argh(subcommand, name = "list")]
struct List {
    /// data directory (default /var/lib/letterbox)
    #[argh(option)]
    data: Option<PathBuf>,
}

pub fn run(args: UserArgs) -> i32 {
    let result = match args.action {
        Action::Add(a) => set_password(a.data, &a.name, a.password_stdin, true),
        Action::Passwd(a) => set_password(a.data, &a.name, a.password_stdin, false),
        Action::Del(a) => delete(a.data, &a.name),
        Action::List(a) => list(a.data),
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("letterbox user: {e}");
            1
        }
    }
}

fn users_path(data: Option<PathBuf>) -> Result<PathBuf, String> {
    let dir = super::data_dir(data);
    if !dir.is_dir() {
        std::fs::create_dir_all(&dir).map_err(|e| {
            format!(
                "cannot create the data directory {}: {e} (choose one with --data DIR)",
                dir.display()
            )
        })?;
    }
    Ok(dir.join("users"))
}

fn load(path: &Path) -> Result<UsersFile, String> {
    UsersFile::load(path).map_err(|e| format!("{}: {e}", path.display()))
}

fn save(file: &UsersFile, path: &Path) -> Result<(), String> {
    let existed = path.exists();
    file.save_atomic(path)
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    // Made by root for a server that runs as its own user: give the new file
    // to whoever owns the data directory, or the server could not read it.
    if !existed {
        if let Some(dir) = path.parent().and_then(|d| std::fs::metadata(d).ok()) {
            let _ = std::os::unix::fs::chown(path, Some(dir.uid()), Some(dir.gid()));
        }
    }
    Ok(())
}

fn set_password(
    data: Option<PathBuf>,
    name: &str,
    from_stdin: bool,
    adding: bool,
) -> Result<(), String> {
    let name = name.to_ascii_lowercase();
    // A name already in the file keeps working (its password can change);
    // a new one must not clash with the file's, addresses' or IMAP's syntax.
    if adding {
        auth::validate_new_name(&name).map_err(|e| format!("{name:?}: {e}"))?;
    } else {
        auth::validate_name(&name).map_err(|e| format!("{name:?}: {e}"))?;
    }
    let path = users_path(data)?;
    let exists = load(&path)?.get(&name).is_some();
    if adding && exists {
        return Err(format!(
            "{name} already exists; use `letterbox user passwd {name}` to change the password"
        ));
    }
    if !adding && !exists {
        return Err(format!(
            "no user {name}; add one with `letterbox user add {name}`"
        ));
    }
    let password = if from_stdin {
        auth::read_password_stdin()
    } else {
        auth::read_password(&format!("Password for {name}: ")).and_then(|first| {
            let again = auth::read_password("Again: ")?;
            if first == again {
                Ok(first)
            } else {
                Err(std::io::Error::other("the passwords differ"))
            }
        })
    }
    .map_err(|e| format!("cannot read the password: {e}"))?;
    let hash = auth::hash_password(password.as_bytes())
        .map_err(|e| format!("cannot hash the password: {e}"))?;
    // Re-read just before writing, so a change made while the password was
    // being typed is not lost.
    let mut file = load(&path)?;
    file.set_password(&name, &hash).map_err(|e| e.to_string())?;
    save(&file, &path)?;
    println!(
        "{} {name}",
        if adding {
            "added"
        } else {
            "changed the password of"
        }
    );
    Ok(())
}

fn delete(data: Option<PathBuf>, name: &str) -> Result<(), String> {
    let name = name.to_ascii_lowercase();
    let path = users_path(data)?;
    let mut file = load(&path)?;
    if !file.remove(&name) {
        return Err(format!("no user {name}"));
    }
    save(&file, &path)?;
    println!("removed {name}; their mail stays in the database");
    Ok(())
}

/// Each user with their quota usage and limits: from the running server
/// when there is one (it knows the server-wide limits), else from the
/// database and the users file.
fn list(data: Option<PathBuf>) -> Result<(), String> {
    let dir = super::data_dir(data);
    let path = dir.join("users");
    let file = load(&path)?;
    let request = crate::control::Request::Usage;
    match crate::control::call(&dir, &request, &mut |line| println!("{line}")) {
        Some(Ok(_)) => {}
        Some(Err(e)) => return Err(e),
        None => list_offline(&dir, &file),
    }
    for name in file.commented_users() {
        eprintln!(
            "letterbox user: {name:?} is written in {} but is read as a comment, so it cannot log in; remove it with `letterbox user del '{name}'`",
            path.display()
        );
    }
    Ok(())
}

/// Without a server: usage from the database (when there is one to read)
/// and each user's own limits; the server-wide ones are flags of `serve`.
fn list_offline(dir: &Path, file: &UsersFile) {
    let db = dir.join(crate::control::backup::DATABASE);
    let store = db
        .exists()
        .then(|| crate::store::ReadOnlyStore::open(&db))
        .transpose();
    let snapshot = match store {
        Ok(store) => store.and_then(|s| s.snapshot().ok()),
        Err(e) => {
            eprintln!("letterbox user: {}: {e}; usage not shown", db.display());
            None
        }
    };
    for name in file.names() {
        let usage = snapshot
            .as_ref()
            .and_then(|s| s.usage(name).ok())
            .unwrap_or_default();
        let own = file
            .get(name)
            .and_then(|entry| crate::quota::UserLimits::from_entry(entry).ok())
            .unwrap_or_default();
        let limits = own.over(crate::store::QuotaLimits::default());
        let no_limit = "no limit of its own; the server may set one";
        println!(
            "{}",
            crate::quota::usage_line(name, &usage, &limits, no_limit)
        );
    }
}
