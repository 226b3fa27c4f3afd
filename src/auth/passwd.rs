//! The users file, in Dovecot's passwd-file form:
//! `name:password[:uid:gid:gecos:home:shell:extra_fields]`.
//!
//! Only the name, the password and field 8 (space-separated `key=value` items)
//! mean anything to us; other fields, blank lines and `#` comments are kept
//! verbatim so an admin's hand edits survive a rewrite by `letterbox passwd`.

use std::collections::HashSet;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// A line of the users file that could not be understood (`line` is 1-based).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub line: usize,
    pub reason: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.reason)
    }
}

impl std::error::Error for ParseError {}

/// A user name or password hash that cannot be written to the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryError(pub &'static str);

impl fmt::Display for EntryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for EntryError {}

/// Names are compared case-insensitively, but only ASCII letters are folded:
/// Unicode case mapping is not one-to-one and would make distinct names
/// collide in surprising ways.
pub fn validate_name(name: &str) -> Result<(), EntryError> {
    let has = |f: fn(char) -> bool| name.chars().any(f);
    if name.is_empty() {
        Err(EntryError("user name is empty"))
    } else if name.len() > 64 {
        Err(EntryError("user name is longer than 64 bytes"))
    } else if name.starts_with('#') {
        // The file would read the line back as a comment: the user could
        // neither log in nor be deleted.
        Err(EntryError(
            "user name starts with '#', which the users file reads as a comment",
        ))
    } else if has(|c| c == ':' || c == '/') {
        Err(EntryError("user name contains ':' or '/'"))
    } else if has(char::is_whitespace) || has(char::is_control) {
        Err(EntryError(
            "user name contains a space or control character",
        ))
    } else {
        Ok(())
    }
}

/// The stricter rule for a name being added: on top of [`validate_name`]
/// (what the file can hold), nothing that reads differently somewhere else.
/// `@` stays allowed: a whole address is a fine user name.
pub fn validate_new_name(name: &str) -> Result<(), String> {
    validate_name(name).map_err(|e| e.to_string())?;
    let why = |c: char| match c {
        '+' => Some("addresses use it for folders (alice+Junk delivers to alice's Junk)"),
        '*' | '%' => Some("IMAP uses it as a wildcard"),
        '"' | '\\' | '{' | '}' => Some("IMAP uses it for quoting and literals"),
        _ => None,
    };
    match name.chars().find_map(|c| why(c).map(|w| (c, w))) {
        Some((c, why)) => Err(format!("a user name may not contain {c:?}: {why}")),
        None => Ok(()),
    }
}

#[derive(Clone, PartialEq, Eq)]
pub struct UserEntry {
    /// Always ASCII-lowercase.
    pub name: String,
    pub password: String,
    /// Fields 3..=8 as written; field 8 keeps any ':' it contains.
    pub extra: Vec<String>,
}

// A hash is offline-cracking material; keep it out of debug logs.
impl fmt::Debug for UserEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (name, extra) = (&self.name, &self.extra);
        write!(f, "UserEntry {{ name: {name:?}, extra: {extra:?}, .. }}")
    }
}

impl UserEntry {
    /// Value of `key` among field 8's `key=value` items; a bare `key` gives "".
    pub fn extra_field(&self, key: &str) -> Option<&str> {
        let items = self.extra.get(5)?.split_ascii_whitespace();
        let (_, value) = items
            .map(|i| i.split_once('=').unwrap_or((i, "")))
            .find(|kv| kv.0 == key)?;
        Some(value)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Line {
    /// Blank or comment, kept as written.
    Other(String),
    User(UserEntry),
}

impl Line {
    fn user(name: &str, password: &str, extra: Vec<String>) -> Line {
        let (name, password) = (name.to_ascii_lowercase(), password.to_string());
        Line::User(UserEntry {
            name,
            password,
            extra,
        })
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UsersFile {
    lines: Vec<Line>,
}

impl UsersFile {
    pub fn parse(text: &str) -> Result<UsersFile, ParseError> {
        let (mut lines, mut seen) = (Vec::new(), HashSet::new());
        for (i, raw) in text.lines().enumerate() {
            // `lines` strips "\r\n" but keeps a CR before it, or ending a last
            // line without LF, which a rewrite (always "\n") would then drop.
            let raw = raw.trim_end_matches('\r');
            let line = parse_line(raw, &mut seen);
            lines.push(line.map_err(|reason| ParseError {
                line: i + 1,
                reason,
            })?);
        }
        Ok(UsersFile { lines })
    }

    /// A missing file is an empty one, so a fresh install needs no setup step.
    /// Parse errors come back as `InvalidData` wrapping a [`ParseError`].
    pub fn load(path: impl AsRef<Path>) -> io::Result<UsersFile> {
        let file = read(path.as_ref())?;
        Ok(file.map(|(file, _)| file).unwrap_or_default())
    }

    pub fn get(&self, name: &str) -> Option<&UserEntry> {
        self.users().find(|u| u.name.eq_ignore_ascii_case(name))
    }

    /// Sets a user's hash, appending the user if new; returns whether it was.
    pub fn set_password(&mut self, name: &str, hash: &str) -> Result<bool, EntryError> {
        validate_name(name)?;
        if hash.contains(':') || hash.chars().any(char::is_control) {
            return Err(EntryError(
                "password hash contains ':' or a control character",
            ));
        }
        let existing = self.lines.iter_mut().find_map(|l| match l {
            Line::User(u) if u.name.eq_ignore_ascii_case(name) => Some(u),
            _ => None,
        });
        if let Some(u) = existing {
            u.password = hash.to_string();
            return Ok(false);
        }
        self.lines.push(Line::user(name, hash, Vec::new()));
        Ok(true)
    }

    /// Returns whether the user existed. Also removes a user line that an
    /// older `letterbox user add` wrote for a name starting with '#', which
    /// the file reads as a comment (see [`UsersFile::commented_users`]).
    pub fn remove(&mut self, name: &str) -> bool {
        let before = self.lines.len();
        self.lines.retain(|l| match l {
            Line::User(u) => !u.name.eq_ignore_ascii_case(name),
            Line::Other(text) => commented_user(text).is_none_or(|n| !n.eq_ignore_ascii_case(name)),
        });
        self.lines.len() != before
    }

    /// In file order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.users().map(|u| u.name.as_str())
    }

    /// Names of user lines that the file reads as comments because the
    /// name starts with '#' (older versions let `user add` write them).
    pub fn commented_users(&self) -> impl Iterator<Item = &str> {
        self.lines.iter().filter_map(|l| match l {
            Line::Other(text) => commented_user(text),
            Line::User(_) => None,
        })
    }

    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for line in &self.lines {
            match line {
                Line::Other(s) => out.push_str(s),
                Line::User(u) => {
                    out.push_str(&u.name);
                    for field in std::iter::once(&u.password).chain(&u.extra) {
                        out.push(':');
                        out.push_str(field);
                    }
                }
            }
            out.push('\n');
        }
        out
    }

    /// Replaces `path` so that a concurrent reader sees the old or the new
    /// file, never a partial one, and the new one survives a power cut (SD
    /// cards on Pi boards see plenty of those).
    pub fn save_atomic(&self, path: impl AsRef<Path>) -> io::Result<()> {
        let path = path.as_ref();
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        let tmp = path.with_file_name(format!(".{name}.tmp{}", std::process::id()));
        let result = (|| {
            let mut opts = OpenOptions::new();
            let mut f = opts.write(true).create_new(true).mode(0o640).open(&tmp)?;
            // The umask may have narrowed the mode; the server needs group read.
            f.set_permissions(fs::Permissions::from_mode(0o640))?;
            keep_owner(&f, path);
            f.write_all(self.to_text().as_bytes())?;
            f.sync_all()?;
            fs::rename(&tmp, path)?;
            let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
            File::open(dir.unwrap_or(Path::new(".")))?.sync_all()
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }

    fn users(&self) -> impl Iterator<Item = &UserEntry> {
        self.lines.iter().filter_map(|l| match l {
            Line::User(u) => Some(u),
            Line::Other(_) => None,
        })
    }
}

fn parse_line(raw: &str, seen: &mut HashSet<String>) -> Result<Line, String> {
    let trimmed = raw.trim_start();
    if trimmed.is_empty() || trimmed.starts_with('#') {
        return Ok(Line::Other(raw.to_string()));
    }
    let mut fields = raw.splitn(8, ':');
    let name = fields.next().unwrap_or_default();
    validate_name(name).map_err(|e| e.to_string())?;
    let password = fields.next().ok_or("no ':' after the name")?;
    if !seen.insert(name.to_ascii_lowercase()) {
        return Err(format!("user {name:?} is listed twice"));
    }
    let line = Line::user(name, password, fields.map(str::to_string).collect());
    // A quota that does not parse is refused with its line, like any other
    // mistake in the file: at startup the server does not start, and a
    // reload keeps the users it had.
    if let Line::User(entry) = &line {
        crate::quota::UserLimits::from_entry(entry).map_err(|e| format!("user {name}: {e}"))?;
    }
    Ok(line)
}

/// A comment line that is really a user line with a '#' name: `#name:{SCHEME}…`
/// as `user add` wrote it. An admin's own comment has no `:{` after a name.
fn commented_user(text: &str) -> Option<&str> {
    let (name, rest) = text.split_once(':')?;
    // A name the file can hold once its '#' is taken away (older versions
    // wrote such lines).
    let looks_written = name.starts_with('#')
        && rest.starts_with('{')
        && validate_name(name.trim_start_matches('#')).is_ok();
    looks_written.then_some(name)
}

/// `sudo letterbox passwd` would otherwise leave a root-owned file that a
/// server running as its own user can no longer read.
fn keep_owner(f: &File, path: &Path) {
    if let Ok(old) = fs::metadata(path) {
        if let Err(e) = std::os::unix::fs::fchown(f, Some(old.uid()), Some(old.gid())) {
            log::warn!("{}: could not keep owner and group: {e}", path.display());
        }
    }
}

/// Device, inode, size, mtime and ctime (with nanoseconds): a rename-over
/// changes the inode even within one second, an in-place edit the rest.
type Stamp = (u64, u64, u64, i64, i64, i64, i64);

fn stamp(m: &fs::Metadata) -> Stamp {
    (
        m.dev(),
        m.ino(),
        m.size(),
        m.mtime(),
        m.mtime_nsec(),
        m.ctime(),
        m.ctime_nsec(),
    )
}

/// Reads through one descriptor so that stamp and contents belong to the same
/// version of the file even if it is replaced meanwhile. `None` if missing.
fn read(path: &Path) -> io::Result<Option<(UsersFile, Stamp)>> {
    let mut f = match File::open(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        f => f?,
    };
    let stamp = stamp(&f.metadata()?);
    let mut text = String::new();
    f.read_to_string(&mut text)?;
    let file =
        UsersFile::parse(&text).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    Ok(Some((file, stamp)))
}

/// The server's live view of the users file.
#[derive(Debug)]
pub struct Users {
    path: PathBuf,
    file: UsersFile,
    /// `None` while the file is missing or unreadable.
    stamp: Option<Stamp>,
}

impl Users {
    /// Unlike [`Users::refresh`], fails on a bad file, so that it is noticed at
    /// startup rather than running with no users.
    pub fn open(path: impl Into<PathBuf>) -> io::Result<Users> {
        let path = path.into();
        let (file, stamp) = read(&path)?.map_or_else(Default::default, |(f, s)| (f, Some(s)));
        Ok(Users { path, file, stamp })
    }

    /// Re-reads the file if it changed. One `stat` when it has not, so it can
    /// run on every login. Returns whether the file changed (even if the new
    /// version could not be read).
    pub fn refresh(&mut self) -> bool {
        let now = fs::metadata(&self.path).ok().map(|m| stamp(&m));
        if now == self.stamp {
            return false;
        }
        match read(&self.path) {
            Ok(Some((file, stamp))) => (self.file, self.stamp) = (file, Some(stamp)),
            Ok(None) => {
                log::warn!("{}: removed; no one can log in now", self.path.display());
                (self.file, self.stamp) = (UsersFile::default(), None);
            }
            Err(e) => {
                log::warn!(
                    "{}: {e}; keeping the users loaded before",
                    self.path.display()
                );
                // Warn once per bad version, not on every login.
                self.stamp = now;
            }
        }
        true
    }

    pub fn lookup(&self, name: &str) -> Option<UserEntry> {
        self.file.get(name).cloned()
    }

    pub fn exists(&self, name: &str) -> bool {
        self.file.get(name).is_some()
    }

    pub fn is_empty(&self) -> bool {
        self.file.names().next().is_none()
    }

    /// In file order.
    pub fn names(&self) -> Vec<String> {
        self.file.names().map(str::to_string).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "# letterbox users\n\n\
        alice:{ARGON2ID}$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaA\n\
        bob:{ARGON2ID}x:1000:1000:Bob B:/home/bob:/bin/false:pop3_mode=keep quota=1G\n\
        \t# indented comment\n\
        carol:x::::::a=b:c flag\n";

    fn scratch_dir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("lb-auth-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("mkdir");
        dir
    }

    #[test]
    fn parses_and_round_trips() {
        let f = UsersFile::parse(SAMPLE).expect("parse");
        assert_eq!(f.names().collect::<Vec<_>>(), ["alice", "bob", "carol"]);
        let bob = f.get("BOB").expect("bob");
        assert_eq!(bob.extra[2], "Bob B");
        assert_eq!(bob.extra_field("pop3_mode"), Some("keep"));
        assert_eq!(bob.extra_field("quota"), Some("1G"));
        assert_eq!(bob.extra_field("nope"), None);
        assert!(!format!("{bob:?}").contains("ARGON2ID"));
        let carol = f.get("carol").expect("carol");
        assert_eq!(
            (carol.extra_field("a"), carol.extra_field("flag")),
            (Some("b:c"), Some(""))
        );
        assert_eq!(f.get("alice").map(|a| a.extra.len()), Some(0));
        assert_eq!(f.to_text(), SAMPLE);
    }

    #[test]
    fn bad_lines_name_their_number() {
        let long = format!("{}:x", "n".repeat(65));
        let cases = [
            ("# ok\nalice\n", 2, "no ':'"),
            ("a:x\n\nA:y\n", 3, "twice"),
            ("bad name:x\n", 1, "space"),
            ("a/b:x\n", 1, "'/'"),
            (":x\n", 1, "empty"),
            (&long, 1, "64"),
        ];
        for (text, line, what) in cases {
            let e = UsersFile::parse(text).expect_err(text);
            assert!(
                e.line == line && e.to_string().contains(what),
                "{text:?}: {e}"
            );
        }
    }

    /// Found by fuzz/fuzz_targets/users_file.rs: "#shared" was added, then
    /// read back as a comment.
    #[test]
    fn a_name_that_would_read_back_as_a_comment_is_refused() {
        let mut f = UsersFile::parse("alice:h\n").expect("parse");
        assert!(f.set_password("#shared", "h").is_err());
        assert!(validate_name("#").is_err());
        assert!(validate_name("a#b").is_ok());
        assert_eq!(f.to_text(), "alice:h\n");
    }

    /// Found by fuzz/fuzz_targets/users_file.rs: a line ending in CR (before
    /// CRLF, or at the end without LF) kept the CR in its last field, and
    /// lost it when rewritten.
    #[test]
    fn a_cr_ending_the_file_is_a_line_end() {
        for text in ["\r\r", "a:h\r\r\n\r\r\r\n"] {
            let f = UsersFile::parse(text).expect("parse");
            assert_eq!(UsersFile::parse(&f.to_text()), Ok(f), "{text:?}");
        }
        let f = UsersFile::parse("alice:x\r\nbob:h:i\r").expect("parse");
        assert_eq!(
            f.get("bob").map(|b| b.extra.clone()),
            Some(vec!["i".into()])
        );
        assert_eq!(UsersFile::parse(&f.to_text()), Ok(f));
    }

    #[test]
    fn new_names_must_not_clash_with_address_or_imap_syntax() {
        for good in ["alice", "alice@example.org", "a.b-c_d", "..", "élise"] {
            assert_eq!(validate_new_name(good), Ok(()), "{good}");
        }
        for (bad, what) in [
            ("#shared", "comment"),
            ("alice+x", "folders"),
            ("*", "wildcard"),
            ("a%", "wildcard"),
            ("x\"y", "quoting"),
            ("{5}", "literals"),
            ("a\\b", "quoting"),
            ("a b", "space"),
            ("a\tb", "space"),
            ("a\u{7}b", "control"),
            ("a:b", "':'"),
            ("a/b", "'/'"),
            ("", "empty"),
        ] {
            let e = validate_new_name(bad).expect_err(bad);
            assert!(e.contains(what), "{bad:?}: {e}");
        }
    }

    #[test]
    fn a_commented_user_can_be_seen_and_removed() {
        let text = "# admin: alice looks after this\n\
            #shared:{ARGON2ID}$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA\n\
            bob:{ARGON2ID}x\n";
        let mut f = UsersFile::parse(text).expect("parse");
        assert_eq!(f.names().collect::<Vec<_>>(), ["bob"]);
        assert_eq!(f.commented_users().collect::<Vec<_>>(), ["#shared"]);
        assert!(!f.remove("# admin"));
        assert!(f.remove("#Shared"));
        assert_eq!(
            f.to_text(),
            "# admin: alice looks after this\nbob:{ARGON2ID}x\n"
        );
    }

    #[test]
    fn edits_keep_other_lines() {
        let mut f = UsersFile::parse(SAMPLE).expect("parse");
        assert_eq!(f.set_password("Bob", "{ARGON2ID}new"), Ok(false));
        assert_eq!(f.set_password("Dave", "{ARGON2ID}d"), Ok(true));
        for (name, hash) in [("eve:", "h"), ("eve", "a:b"), ("eve", "a\nb")] {
            assert!(f.set_password(name, hash).is_err(), "{name} {hash}");
        }
        assert!(f.remove("ALICE"));
        assert!(!f.remove("alice"));
        let text = f.to_text();
        assert!(text.starts_with("# letterbox users\n\nbob:{ARGON2ID}new:1000:1000:Bob B:"));
        assert!(text.contains("\t# indented comment\n"));
        assert!(text.ends_with("dave:{ARGON2ID}d\n"));
        assert_eq!(UsersFile::parse(&text), Ok(f));
    }

    #[test]
    fn save_is_atomic_and_group_readable() {
        let dir = scratch_dir("save");
        let path = dir.join("users");
        assert_eq!(UsersFile::load(&path).ok(), Some(UsersFile::default()));
        let f = UsersFile::parse(SAMPLE).expect("parse");
        f.save_atomic(&path).expect("save");
        f.save_atomic(&path).expect("save over an existing file");
        assert_eq!(UsersFile::load(&path).ok(), Some(f));
        assert_eq!(fs::read_to_string(&path).ok().as_deref(), Some(SAMPLE));
        let mode = fs::metadata(&path).expect("stat").permissions().mode();
        assert_eq!(mode & 0o777, 0o640);
        let names: Vec<_> = fs::read_dir(&dir)
            .expect("ls")
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(names, ["users"]);
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn users_refresh_sees_changes_and_survives_bad_edits() {
        let dir = scratch_dir("refresh");
        let path = dir.join("users");
        let mut users = Users::open(&path).expect("open missing");
        let password = |users: &Users| users.lookup("alice").map(|u| u.password);
        assert!(!users.exists("alice"));
        let mut f = UsersFile::default();
        f.set_password("alice", "h1").expect("set");
        f.save_atomic(&path).expect("save");
        users.refresh();
        assert!(users.exists("Alice"));
        // Same size and quite likely the same timestamp: the inode tells.
        f.set_password("alice", "h2").expect("set");
        f.save_atomic(&path).expect("save");
        users.refresh();
        assert_eq!(password(&users).as_deref(), Some("h2"));
        fs::write(&path, "alice:h3\nbroken line\n").expect("write");
        users.refresh();
        assert_eq!(password(&users).as_deref(), Some("h2"));
        fs::write(&path, "alice:h3\nbob:h4\n").expect("write");
        users.refresh();
        assert!(users.exists("bob"));
        fs::write(&path, "alice:h3\nbroken line\n").expect("write");
        assert!(Users::open(&path).is_err());
        fs::remove_file(&path).expect("rm");
        users.refresh();
        assert!(!users.exists("alice"));
        let _ = fs::remove_dir_all(&dir);
    }
}
