//! Reading `/etc/passwd` and `/etc/group` ourselves, for `--run-as`.
//!
//! A statically linked glibc binary (the armv7 release build, linked with
//! `+crt-static` so that it runs on any glibc) cannot use NSS: `getpwnam_r`
//! and `initgroups` would try to load glibc's `libnss_*.so` modules at run
//! time, which fails or misbehaves when the board's glibc differs from the
//! one we linked against. musl has no NSS modules either. So the server looks
//! the user up in the files itself; a dynamically linked build still falls
//! back to NSS for users the files do not have (LDAP and the like).
//!
//! Both files are trusted system files, but they are still parsed without
//! panics and with a size limit: a malformed line is skipped, not fatal.

/// A `passwd` entry: just what dropping privileges needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswdEntry {
    pub uid: u32,
    pub gid: u32,
}

/// Larger files are not read: no real passwd or group file comes near it,
/// and the server must not read an unbounded file at start.
pub const MAX_FILE_SIZE: u64 = 16 * 1024 * 1024;

/// Reads a file of at most [`MAX_FILE_SIZE`] bytes, lossily as UTF-8 (a
/// GECOS field in Latin-1 must not hide the lines after it).
pub fn read_limited(path: &std::path::Path) -> std::io::Result<String> {
    use std::io::Read;
    let file = std::fs::File::open(path)?;
    let mut bytes = Vec::new();
    file.take(MAX_FILE_SIZE + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_FILE_SIZE {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{} is larger than {MAX_FILE_SIZE} bytes", path.display()),
        ));
    }
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// The lines of an `/etc/passwd`-style file that hold `name` in field 1,
/// split into fields; comments, blank lines and NIS compat lines (`+`/`-`)
/// are skipped.
fn records<'a>(text: &'a str) -> impl Iterator<Item = Vec<&'a str>> + 'a {
    text.lines()
        .map(|line| line.strip_suffix('\r').unwrap_or(line))
        .filter(|line| !line.is_empty() && !line.starts_with('#') && !line.starts_with(['+', '-']))
        .map(|line| line.split(':').collect())
}

/// Finds `name` in the text of a passwd(5) file:
/// `name:password:UID:GID:GECOS:home:shell`. The first well-formed line for
/// the name wins, as with glibc's files backend.
pub fn find_user(passwd: &str, name: &str) -> Option<PasswdEntry> {
    if name.is_empty() {
        return None;
    }
    records(passwd)
        .filter(|f| f.len() >= 4 && f[0] == name)
        .find_map(|f| {
            Some(PasswdEntry {
                uid: f[2].parse().ok()?,
                gid: f[3].parse().ok()?,
            })
        })
}

/// The groups `name` belongs to according to a group(5) file
/// (`group:password:GID:member,member,...`), plus `primary_gid`, without
/// duplicates and with the primary group first: what `initgroups` would set.
pub fn groups_of(group: &str, name: &str, primary_gid: u32) -> Vec<u32> {
    let mut gids = vec![primary_gid];
    for f in records(group) {
        if f.len() < 4 {
            continue;
        }
        let Ok(gid) = f[2].parse::<u32>() else {
            continue;
        };
        if f[3].split(',').any(|member| member.trim() == name) && !gids.contains(&gid) {
            gids.push(gid);
        }
    }
    gids
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "\
# a comment line
root:x:0:0:root:/root:/bin/bash
+nisuser::::::

letterbox:x:998:997:letterbox mail store:/var/lib/letterbox:/usr/sbin/nologin
broken:x:notanumber:5::/:/bin/sh
broken:x:1234:1235::/:/bin/sh
short:x:12
latin1:x:1001:1001:Jos\u{fffd} Garc\u{fffd}a:/home/latin1:/bin/sh
crlf:x:1002:1003::/:/bin/sh\r
letterbox:x:5:5:second entry is ignored:/:/bin/sh
";

    #[test]
    fn finds_a_user_by_exact_name() {
        assert_eq!(
            find_user(PASSWD, "letterbox"),
            Some(PasswdEntry { uid: 998, gid: 997 })
        );
        assert_eq!(
            find_user(PASSWD, "root"),
            Some(PasswdEntry { uid: 0, gid: 0 })
        );
        assert_eq!(
            find_user(PASSWD, "latin1"),
            Some(PasswdEntry {
                uid: 1001,
                gid: 1001
            })
        );
        assert_eq!(
            find_user(PASSWD, "crlf"),
            Some(PasswdEntry {
                uid: 1002,
                gid: 1003
            })
        );
    }

    #[test]
    fn skips_malformed_lines_and_misses() {
        // The first "broken" line has no numeric UID; the next one is used.
        assert_eq!(
            find_user(PASSWD, "broken"),
            Some(PasswdEntry {
                uid: 1234,
                gid: 1235
            })
        );
        assert_eq!(find_user(PASSWD, "short"), None);
        assert_eq!(find_user(PASSWD, "nobody"), None);
        assert_eq!(find_user(PASSWD, "letter"), None, "no prefix match");
        assert_eq!(find_user(PASSWD, ""), None);
        assert_eq!(find_user(PASSWD, "+nisuser"), None);
        assert_eq!(find_user("", "root"), None);
        assert_eq!(find_user(":::::::\n::\n", ""), None);
    }

    #[test]
    fn supplementary_groups_like_initgroups() {
        let group = "\
root:x:0:
letterbox:x:997:
mail:x:8:letterbox
postfix:x:120:
ssl-cert:x:111:postfix, letterbox
bad:x:abc:letterbox
users:x:100:alice,letterboxer
mail2:x:8:letterbox
";
        assert_eq!(groups_of(group, "letterbox", 997), vec![997, 8, 111]);
        assert_eq!(groups_of(group, "alice", 1000), vec![1000, 100]);
        assert_eq!(groups_of(group, "nobody", 65534), vec![65534]);
        assert_eq!(groups_of("", "x", 1), vec![1]);
    }

    #[test]
    fn reads_this_machines_files() {
        // Every Linux system has root as UID 0 in /etc/passwd.
        let text = read_limited(std::path::Path::new("/etc/passwd")).expect("read /etc/passwd");
        assert_eq!(find_user(&text, "root").map(|e| e.uid), Some(0));
    }
}
