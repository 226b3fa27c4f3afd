//! Reading Maildir as Dovecot writes it, and letterbox's own export.
//!
//! - Folders: Maildir++ (`.Folder.Sub/` beside the root's `cur/`) or
//!   `LAYOUT=fs` (`Folder/Sub/`, each with its own `cur/`); letterbox's
//!   export is the second without messages at the root. Names on disk are
//!   modified UTF-7, as Dovecot writes them.
//! - `dovecot-uidlist` (version 3, `3 V<uidvalidity> N<uidnext> G<guid>`
//!   then `<uid> [fields] :<file>`; version 1, `1 <uidvalidity> <uidnext>`
//!   then `<uid> <file>`) gives the UIDs and UIDVALIDITY.
//! - `dovecot-keywords` (`<index> <keyword>`) names the letters a-z in a
//!   file name's `:2,` info; the capitals there are the system flags.
//! - `subscriptions` at the root: Dovecot 2.3's `V\t2` form (levels split by
//!   tabs) or the older one name per line.
//! - INTERNALDATE is the file's mtime, as Dovecot has it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::{
    label, looks_like_message, to_crlf, valid_keyword, Item, Sink, SourceMessage, SourceUids,
};
use crate::store::Flags;

/// Deeper folder trees than this are not followed (a symlink loop).
const MAX_DEPTH: usize = 32;

/// Whether `dir` is one Maildir folder (has `cur/` or `new/`).
pub fn is_maildir(dir: &Path) -> bool {
    dir.join("cur").is_dir() || dir.join("new").is_dir()
}

/// Whether `dir` holds Maildir folders at any depth: a Maildir tree rather
/// than a directory of mbox files.
pub fn is_maildir_tree(dir: &Path) -> bool {
    fn search(dir: &Path, depth: usize) -> bool {
        if is_maildir(dir) {
            return true;
        }
        if depth >= MAX_DEPTH {
            return false;
        }
        subdirs(dir).iter().any(|(_, path)| search(path, depth + 1))
    }
    search(dir, 0)
}

/// The subdirectories of `dir` in name order, with their names.
fn subdirs(dir: &Path) -> Vec<(String, PathBuf)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<(String, PathBuf)> = entries
        .filter_map(Result::ok)
        .filter(|e| e.path().is_dir())
        .filter_map(|e| Some((e.file_name().into_string().ok()?, e.path())))
        .collect();
    out.sort_unstable();
    out
}

/// A folder name as stored on disk (modified UTF-7) in letterbox's UTF-8;
/// a name that is not valid modified UTF-7 (letterbox's export writes
/// UTF-8) is taken as it is.
fn decode_level(level: &str) -> String {
    crate::imap::mutf7::decode(level).unwrap_or_else(|| level.to_string())
}

fn join(prefix: Option<&str>, name: &str) -> String {
    match prefix {
        Some(p) => format!("{p}/{name}"),
        None => name.to_string(),
    }
}

/// Reads a Maildir tree rooted at `root`. The root's own messages go to
/// `folder` (INBOX when None); its folders go below `folder`, or to the top
/// level when None.
pub fn read_tree(
    root: &Path,
    folder: Option<&str>,
    limit: usize,
    sink: &mut dyn Sink,
) -> Result<(), String> {
    let root_is_maildir = is_maildir(root);
    if root_is_maildir {
        read_folder(root, folder.unwrap_or("INBOX"), limit, sink)?;
    }
    let mut plus_plus = false;
    for (name, path) in subdirs(root) {
        if let Some(stored) = name.strip_prefix('.') {
            // Maildir++: `.Folder.Sub` beside the root's cur/.
            if root_is_maildir && !stored.is_empty() && is_maildir(&path) {
                plus_plus = true;
                let levels: Vec<String> = stored.split('.').map(decode_level).collect();
                read_folder(&path, &join(folder, &levels.join("/")), limit, sink)?;
            }
            continue;
        }
        if root_is_maildir && matches!(name.as_str(), "cur" | "new" | "tmp") {
            continue;
        }
        read_fs(&path, &join(folder, &decode_level(&name)), limit, sink, 1)?;
    }
    let subscriptions = root.join("subscriptions");
    if subscriptions.exists() {
        match std::fs::read(&subscriptions) {
            Ok(bytes) => {
                for name in parse_subscriptions(&String::from_utf8_lossy(&bytes), plus_plus) {
                    let name = match folder {
                        Some(f) if name.eq_ignore_ascii_case("INBOX") => f.to_string(),
                        _ => join(folder, &name),
                    };
                    sink.item(Item::Subscribe(name))?;
                }
            }
            Err(e) => sink.problem(format!("{}: {e}", subscriptions.display())),
        }
    }
    Ok(())
}

/// `LAYOUT=fs`: a folder per directory, children below.
fn read_fs(
    dir: &Path,
    name: &str,
    limit: usize,
    sink: &mut dyn Sink,
    depth: usize,
) -> Result<(), String> {
    if depth > MAX_DEPTH {
        sink.problem(format!(
            "{}: folders nested too deep; skipped",
            dir.display()
        ));
        return Ok(());
    }
    let maildir = is_maildir(dir);
    if maildir {
        read_folder(dir, name, limit, sink)?;
    }
    for (child, path) in subdirs(dir) {
        if child.starts_with('.') || (maildir && matches!(child.as_str(), "cur" | "new" | "tmp")) {
            continue;
        }
        read_fs(
            &path,
            &format!("{name}/{}", decode_level(&child)),
            limit,
            sink,
            depth + 1,
        )?;
    }
    Ok(())
}

/// A message file found in `cur/` or `new/`.
struct Found {
    path: PathBuf,
    /// The name up to the `:2,` info: what dovecot-uidlist lists.
    base: String,
    info: String,
    uid: Option<u32>,
    date: i64,
    size: u64,
}

/// Reads one Maildir folder into mailbox `name`.
fn read_folder(dir: &Path, name: &str, limit: usize, sink: &mut dyn Sink) -> Result<(), String> {
    let keywords = read_keywords(&dir.join("dovecot-keywords"), sink);
    let uidlist_path = dir.join("dovecot-uidlist");
    let uidlist = if uidlist_path.exists() {
        match std::fs::read(&uidlist_path) {
            Ok(bytes) => {
                let text = String::from_utf8_lossy(&bytes);
                let mut bad = |line: usize, what: &str| {
                    sink.problem(format!(
                        "{} line {line}: {what}; the files it names get new UIDs",
                        uidlist_path.display()
                    ))
                };
                parse_uidlist(&text, &mut bad)
            }
            Err(e) => {
                sink.problem(format!("{}: {e}", uidlist_path.display()));
                None
            }
        }
    } else {
        None
    };
    let mut found = Vec::new();
    for sub in ["cur", "new"] {
        let Ok(entries) = std::fs::read_dir(dir.join(sub)) else {
            continue;
        };
        for entry in entries.filter_map(Result::ok) {
            let Ok(file_name) = entry.file_name().into_string() else {
                sink.problem(format!(
                    "{}: file name is not UTF-8; skipped",
                    entry.path().display()
                ));
                continue;
            };
            if file_name.starts_with('.') {
                continue;
            }
            let path = entry.path();
            // Follows symlinks: a dangling one is a file that cannot be read.
            let meta = match std::fs::metadata(&path) {
                Ok(meta) => meta,
                Err(e) => {
                    sink.problem(format!("{}: cannot read: {e}", path.display()));
                    continue;
                }
            };
            if !meta.is_file() {
                continue;
            }
            let (base, info) = match file_name.split_once(":2,") {
                Some((base, info)) => (base.to_string(), info.to_string()),
                None => (
                    file_name.split(':').next().unwrap_or("").to_string(),
                    String::new(),
                ),
            };
            let date = meta
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_secs() as i64);
            found.push(Found {
                path,
                uid: uidlist
                    .as_ref()
                    .and_then(|l| l.files.get(unique_part(&base)).copied()),
                base,
                info,
                date,
                size: meta.len(),
            });
        }
    }
    let mut uids = uidlist.as_ref().map(|l| l.uids);
    if uidlist.is_none() {
        uids = letterbox_export_uids(&mut found);
    }
    // Numbered messages first, in UID order: the target takes them as they
    // come.
    found.sort_by(|a, b| {
        (a.uid.is_none(), a.uid, a.date, &a.base).cmp(&(b.uid.is_none(), b.uid, b.date, &b.base))
    });
    sink.item(Item::Mailbox {
        name: name.to_string(),
        uids,
    })?;
    for file in found {
        sink.progress(file.size);
        if file.size > limit as u64 {
            sink.problem(format!(
                "{}: {} bytes, more than the largest message accepted ({limit} bytes, --max-message-size); skipped",
                file.path.display(),
                file.size
            ));
            continue;
        }
        let raw = match std::fs::read(&file.path) {
            Ok(raw) => raw,
            Err(e) => {
                sink.problem(format!("{}: cannot read: {e}", file.path.display()));
                continue;
            }
        };
        if !looks_like_message(&raw) {
            sink.problem(format!(
                "{}: not a mail message (no header at its start); skipped",
                file.path.display()
            ));
            continue;
        }
        let raw = to_crlf(raw);
        if raw.len() > limit {
            sink.problem(format!(
                "{}: {} bytes with CRLF line ends, more than the largest message accepted ({limit} bytes); skipped",
                file.path.display(),
                raw.len()
            ));
            continue;
        }
        let (flags, keywords) = info_flags(&file.info, &keywords);
        sink.item(Item::Message(SourceMessage {
            label: label(file.path.display()),
            uid: file.uid,
            flags,
            keywords,
            date: file.date,
            raw,
        }))?;
    }
    Ok(())
}

/// Files named by letterbox's export, `<date>.<uidvalidity>.<uid>.letterbox,S=<size>`:
/// their UIDs, UIDVALIDITY and dates come back from the names, when every
/// file in the folder has such a name with the same UIDVALIDITY.
fn letterbox_export_uids(found: &mut [Found]) -> Option<SourceUids> {
    let parse = |base: &str| -> Option<(i64, u32, u32)> {
        let mut parts = base.split('.');
        let date = parts.next()?.parse().ok()?;
        let validity = parts.next()?.parse().ok()?;
        let uid = parts.next()?.parse().ok()?;
        let rest = parts.next()?;
        (rest.starts_with("letterbox") && parts.next().is_none()).then_some((date, validity, uid))
    };
    let parsed: Vec<(i64, u32, u32)> = found
        .iter()
        .map(|f| parse(&f.base))
        .collect::<Option<_>>()?;
    let validity = parsed.first()?.1;
    if validity == 0
        || parsed
            .iter()
            .any(|p| p.1 != validity || p.2 == 0 || p.2 == u32::MAX)
    {
        return None;
    }
    let mut next = 1;
    for (file, (date, _, uid)) in found.iter_mut().zip(parsed) {
        file.uid = Some(uid);
        file.date = date;
        next = next.max(uid + 1);
    }
    Some(SourceUids {
        uid_validity: validity,
        uid_next: next,
    })
}

/// dovecot-keywords: the keyword for each letter a-z.
fn read_keywords(path: &Path, sink: &mut dyn Sink) -> Vec<Option<String>> {
    let mut out = vec![None; 26];
    if !path.exists() {
        return out;
    }
    let text = match std::fs::read(path) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(e) => {
            sink.problem(format!("{}: {e}", path.display()));
            return out;
        }
    };
    for (n, line) in text.lines().enumerate() {
        if line.is_empty() {
            continue;
        }
        let parsed = line
            .split_once(' ')
            .and_then(|(index, keyword)| Some((index.parse::<usize>().ok()?, keyword)));
        match parsed {
            Some((index, keyword)) if index < 26 && valid_keyword(keyword) => {
                out[index] = Some(keyword.to_string())
            }
            _ => sink.problem(format!(
                "{} line {}: not understood; ignored",
                path.display(),
                n + 1
            )),
        }
    }
    out
}

/// The flags and keywords of a `:2,` info part.
pub fn info_flags(info: &str, keywords: &[Option<String>]) -> (Flags, Vec<String>) {
    let mut flags = Flags::default();
    let mut names = Vec::new();
    for letter in info.chars() {
        match letter {
            'D' => flags = flags.with(Flags::DRAFT),
            'F' => flags = flags.with(Flags::FLAGGED),
            'R' => flags = flags.with(Flags::ANSWERED),
            'S' => flags = flags.with(Flags::SEEN),
            'T' => flags = flags.with(Flags::DELETED),
            // P (passed) has no IMAP flag, and Dovecot shows none.
            'a'..='z' => {
                if let Some(Some(keyword)) = keywords.get((letter as u8 - b'a') as usize) {
                    if !names.contains(keyword) {
                        names.push(keyword.clone());
                    }
                }
            }
            _ => {}
        }
    }
    (flags, names)
}

/// The part of a Maildir file name that names the message for good: up to
/// the `,S=<size>,W=<vsize>` fields and the `:2,` info, which a uidlist
/// may or may not carry and which change when flags do.
fn unique_part(name: &str) -> &str {
    name.split([',', ':']).next().unwrap_or(name)
}

#[derive(Debug, PartialEq, Eq)]
pub struct UidList {
    pub uids: SourceUids,
    /// File name up to `,` or `:` ([`unique_part`]) → UID.
    pub files: HashMap<String, u32>,
}

/// Parses a dovecot-uidlist; `bad` hears of each line not understood (by
/// number, from 1). None when the header itself is not understood.
pub fn parse_uidlist(text: &str, bad: &mut dyn FnMut(usize, &str)) -> Option<UidList> {
    let mut lines = text.lines();
    let header = lines.next().unwrap_or("");
    let mut words = header.split(' ');
    let version = words.next().unwrap_or("");
    let (mut validity, mut next) = (None, None);
    match version {
        "3" => {
            for word in words {
                if let Some(v) = word.strip_prefix('V') {
                    validity = v.parse::<u32>().ok();
                } else if let Some(n) = word.strip_prefix('N') {
                    next = n.parse::<u32>().ok();
                }
            }
        }
        "1" => {
            validity = words.next().and_then(|v| v.parse().ok());
            next = words.next().and_then(|n| n.parse().ok());
        }
        _ => {}
    }
    let (Some(uid_validity), Some(uid_next)) = (validity, next) else {
        bad(
            1,
            "header not understood (expected `3 V<uidvalidity> N<uidnext> ...`)",
        );
        return None;
    };
    if uid_validity == 0 {
        bad(1, "UIDVALIDITY 0");
        return None;
    }
    let mut files = HashMap::new();
    for (n, line) in lines.enumerate() {
        if line.is_empty() {
            continue;
        }
        let parsed = (|| {
            let (uid, rest) = line.split_once(' ')?;
            let uid: u32 = uid.parse().ok().filter(|&u| u > 0 && u < u32::MAX)?;
            let file = if version == "3" {
                // Extension fields (W<vsize> S<size> ...), then `:<file>`.
                let at = rest.find(':')?;
                if rest[..at]
                    .split(' ')
                    .any(|w| !w.is_empty() && !w.starts_with(|c: char| c.is_ascii_uppercase()))
                {
                    return None;
                }
                &rest[at + 1..]
            } else {
                rest
            };
            let base = unique_part(file);
            (!base.is_empty() && !base.contains(' ')).then(|| (base.to_string(), uid))
        })();
        match parsed {
            Some((base, uid)) => {
                files.insert(base, uid);
            }
            None => bad(n + 2, "not understood"),
        }
    }
    Some(UidList {
        uids: SourceUids {
            uid_validity,
            uid_next: uid_next.max(files.values().max().map_or(1, |m| m + 1)),
        },
        files,
    })
}

/// Parses Dovecot's subscriptions file into letterbox names (`/` between
/// levels). `plus_plus`: the old one-name-per-line form from a Maildir++
/// tree, whose names use `.` between levels.
pub fn parse_subscriptions(text: &str, plus_plus: bool) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(body) = text.strip_prefix("V\t2\n\n") {
        for line in body.lines().filter(|l| !l.is_empty()) {
            let levels: Vec<String> = line
                .split('\t')
                .map(|l| decode_level(&tab_unescape(l)))
                .collect();
            out.push(levels.join("/"));
        }
    } else {
        for line in text.lines().filter(|l| !l.is_empty()) {
            let separator = if plus_plus { '.' } else { '/' };
            let levels: Vec<String> = line.split(separator).map(decode_level).collect();
            out.push(levels.join("/"));
        }
    }
    out.retain(|name| super::valid_mailbox_name(name));
    out
}

/// Undoes Dovecot's tab escaping (`\x01` then `1`, `t`, `r`, `n`).
fn tab_unescape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\x01' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('1') => out.push('\x01'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some('n') => out.push('\n'),
            Some(other) => out.push(other),
            None => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uidlists_of_both_versions_and_garbage() {
        let mut problems = Vec::new();
        let text = "3 V1275660208 N25 G3085f01b7f11094c501100008c4a11c1\n\
                    3 :1.M1.host\n\
                    7 W1234 S1200 :2.M2.host:2,S\n\
                    garbage here\n\
                    9 lowercase :3.M3.host\n";
        let list = parse_uidlist(text, &mut |n, _| problems.push(n)).unwrap();
        assert_eq!(
            list.uids,
            SourceUids {
                uid_validity: 1275660208,
                uid_next: 25
            }
        );
        assert_eq!(list.files.get("1.M1.host"), Some(&3));
        assert_eq!(list.files.get("2.M2.host"), Some(&7));
        assert_eq!(list.files.len(), 2);
        assert_eq!(problems, [4, 5]);
        let v1 = parse_uidlist("1 99 5\n4 file\n", &mut |_, _| panic!()).unwrap();
        assert_eq!((v1.uids.uid_validity, v1.files["file"]), (99, 4));
        problems.clear();
        assert!(parse_uidlist("nonsense\n", &mut |n, _| problems.push(n)).is_none());
        assert_eq!(problems, [1]);
    }

    #[test]
    fn info_letters_and_subscriptions() {
        let keywords = vec![Some("$Label1".to_string()), None, Some("work".to_string())];
        let (flags, names) = info_flags("DFPRSTac", &keywords);
        assert_eq!(
            flags,
            Flags::DRAFT
                .with(Flags::FLAGGED)
                .with(Flags::ANSWERED)
                .with(Flags::SEEN)
                .with(Flags::DELETED)
        );
        assert_eq!(names, ["$Label1", "work"]);
        assert_eq!(
            parse_subscriptions("V\t2\n\nINBOX\nLists\trust\nA&AOQ-b\n", false),
            ["INBOX", "Lists/rust", "Aäb"]
        );
        assert_eq!(
            parse_subscriptions("INBOX\nLists.rust\n", true),
            ["INBOX", "Lists/rust"]
        );
        assert_eq!(parse_subscriptions("Lists/rust\n", false), ["Lists/rust"]);
    }
}
