//! Quota settings: the server-wide limits (`--quota-storage`,
//! `--quota-messages`), a user's own limits from the users file, and the 90%
//! notice. The usage itself, and the check, live in the store (store/quota.rs).
//!
//! A user's limits go in the users file's extra fields, in Dovecot's form
//! (`userdb_quota_rule=*:storage=1G:messages=50000`, so a Dovecot users file
//! keeps its quotas) or plainly (`quota_storage=1G quota_messages=50000`).
//! A field that is there overrides the server-wide limit for that resource;
//! 0 or `unlimited` means no limit (Dovecot's 0 means the same).

use std::sync::Arc;

use crate::auth::UserEntry;
use crate::store::{NoticeMaker, QuotaLimits, Usage, WARN_PERCENT};

/// Parses a size: a number with an optional K, M, G or T suffix (powers of
/// 1024, as Dovecot reads them), or B for bytes; a bare number counts
/// `bare_unit` bytes (1 for letterbox's own settings, 1024 in Dovecot's
/// quota rules, where `storage=` is in kilobytes).
pub fn parse_size(text: &str, bare_unit: u64) -> Result<u64, String> {
    let bad = || {
        format!(
            "{text:?} is not a size: give a number with an optional K, M, G or T suffix (like 500M or 2G)"
        )
    };
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let number: u64 = digits.parse().map_err(|_| bad())?;
    let scale: u64 = match unit.to_ascii_uppercase().as_str() {
        "" => bare_unit,
        "B" => 1,
        "K" | "KB" | "KIB" => 1 << 10,
        "M" | "MB" | "MIB" => 1 << 20,
        "G" | "GB" | "GIB" => 1 << 30,
        "T" | "TB" | "TIB" => 1 << 40,
        _ => return Err(bad()),
    };
    number
        .checked_mul(scale)
        .ok_or_else(|| format!("{text:?} is too large"))
}

/// A limit as written: 0 and `unlimited` are no limit.
fn parse_limit(
    text: &str,
    parse: impl Fn(&str) -> Result<u64, String>,
) -> Result<Option<u64>, String> {
    if text.eq_ignore_ascii_case("unlimited") || text.eq_ignore_ascii_case("none") {
        return Ok(None);
    }
    Ok(Some(parse(text)?).filter(|&n| n > 0))
}

fn parse_count(text: &str) -> Result<u64, String> {
    text.parse()
        .map_err(|_| format!("{text:?} is not a number of messages"))
}

/// The limits one user's fields set; None leaves the server-wide one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UserLimits {
    pub storage: Option<Option<u64>>,
    pub messages: Option<Option<u64>>,
}

impl UserLimits {
    /// Reads a user's quota fields. An error names the field and says what
    /// is wrong with it; the users file refuses the line for it.
    pub fn from_entry(entry: &UserEntry) -> Result<UserLimits, String> {
        let mut limits = UserLimits::default();
        if let Some(rule) = entry.extra_field("userdb_quota_rule") {
            limits = dovecot_rule(rule).map_err(|e| format!("userdb_quota_rule={rule}: {e}"))?;
        }
        if let Some(text) = entry.extra_field("quota_storage") {
            let parsed = parse_limit(text, |t| parse_size(t, 1));
            limits.storage = Some(parsed.map_err(|e| format!("quota_storage={text}: {e}"))?);
        }
        if let Some(text) = entry.extra_field("quota_messages") {
            let parsed = parse_limit(text, parse_count);
            limits.messages = Some(parsed.map_err(|e| format!("quota_messages={text}: {e}"))?);
        }
        Ok(limits)
    }

    /// These over the server-wide `defaults`.
    pub fn over(&self, defaults: QuotaLimits) -> QuotaLimits {
        QuotaLimits {
            storage: self.storage.unwrap_or(defaults.storage),
            messages: self.messages.unwrap_or(defaults.messages),
        }
    }
}

/// Dovecot's `*:storage=1G:messages=50000`. letterbox has one quota root
/// per user and no per-mailbox rules, so only `*` is taken; `bytes=` is
/// Dovecot's older spelling of `storage=` in bytes.
fn dovecot_rule(rule: &str) -> Result<UserLimits, String> {
    let mut parts = rule.split(':');
    match parts.next() {
        Some("*") => {}
        _ => {
            return Err(
                "only the rule for all mailboxes (starting \"*:\") is supported: letterbox has one quota per user".into(),
            )
        }
    }
    let mut limits = UserLimits::default();
    for part in parts {
        let (key, value) = part.split_once('=').unwrap_or((part, ""));
        match key {
            "storage" => limits.storage = Some(parse_limit(value, |t| parse_size(t, 1024))?),
            "bytes" => limits.storage = Some(parse_limit(value, |t| parse_size(t, 1))?),
            "messages" => limits.messages = Some(parse_limit(value, parse_count)?),
            "ignore" | "" => {}
            other => return Err(format!("unknown quota rule item {other:?}")),
        }
    }
    Ok(limits)
}

/// A size for a person: `512 KiB`, `1.5 MiB`.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["bytes", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} bytes")
    } else if value < 10.0 {
        format!("{value:.1} {}", UNITS[unit])
    } else {
        format!("{value:.0} {}", UNITS[unit])
    }
}

/// One user's line in `letterbox user list`: name, storage and messages,
/// tab-separated, so that `cut -f1` still gives the names. `no_limit` is
/// what a resource without a limit says: the server-wide limits are known
/// only to the running server.
pub fn usage_line(name: &str, usage: &Usage, limits: &QuotaLimits, no_limit: &str) -> String {
    let storage = match limits.storage {
        Some(limit) => format!(
            "{} of {} ({}%)",
            human_size(usage.storage),
            human_size(limit),
            percent(usage.storage, limit)
        ),
        None => format!("{} ({no_limit})", human_size(usage.storage)),
    };
    let messages = match limits.messages {
        Some(limit) => format!(
            "{} of {limit} messages ({}%)",
            usage.messages,
            percent(usage.messages, limit)
        ),
        None => format!("{} messages ({no_limit})", usage.messages),
    };
    format!("{name}\t{storage}\t{messages}")
}

fn percent(used: u64, limit: u64) -> u64 {
    (u128::from(used) * 100 / u128::from(limit.max(1))) as u64
}

/// The notice a user gets on passing 90% of a limit: a short plain-text
/// message from the server, with the analysis delivery would make.
pub fn notice_maker(hostname: &str) -> NoticeMaker {
    let hostname = hostname.to_string();
    Arc::new(move |user: &str, usage: &Usage, limits: &QuotaLimits| {
        let (now, offset) = crate::clock::now();
        let mut lines = Vec::new();
        if let Some(limit) = limits.storage {
            lines.push(format!(
                "Storage: {} of {} used.",
                human_size(usage.storage),
                human_size(limit)
            ));
        }
        if let Some(limit) = limits.messages {
            lines.push(format!("Messages: {} of {limit}.", usage.messages));
        }
        let raw = format!(
            "From: Mail system <postmaster@{hostname}>\r\n\
             To: {user}\r\n\
             Subject: Your mailbox is {WARN_PERCENT}% full\r\n\
             Date: {}\r\n\
             Message-ID: <quota.{now}.{}@{hostname}>\r\n\
             Auto-Submitted: auto-generated\r\n\
             MIME-Version: 1.0\r\n\
             Content-Type: text/plain; charset=utf-8\r\n\
             \r\n\
             Your mailbox has passed {WARN_PERCENT}% of its limit.\r\n\
             \r\n\
             {}\r\n\
             \r\n\
             When it is full, new mail waits at the sender's server and is\r\n\
             returned to the sender after a few days. Delete messages you no\r\n\
             longer need (and empty the Trash) to make room.\r\n",
            crate::clock::rfc5322(now, offset),
            // A user name may be a whole address; a Message-ID has one '@'.
            user.replace('@', "="),
            lines.join("\r\n"),
        )
        .into_bytes();
        let analysis = crate::services::analysis_of(&raw);
        (raw, analysis)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(fields: &str) -> UserEntry {
        crate::auth::UsersFile::parse(&format!("u:x::::::{fields}\n"))
            .ok()
            .and_then(|f| f.get("u").cloned())
            .unwrap_or_else(|| panic!("{fields} should parse"))
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("100", 1), Ok(100));
        assert_eq!(parse_size("100", 1024), Ok(102_400));
        assert_eq!(parse_size("2K", 1), Ok(2048));
        assert_eq!(parse_size("1G", 1024), Ok(1 << 30));
        assert_eq!(parse_size("3t", 1), Ok(3 << 40));
        assert_eq!(parse_size("10B", 1024), Ok(10));
        for bad in ["", "G", "1.5G", "-1", "1X", "99999999999T"] {
            assert!(parse_size(bad, 1).is_err(), "{bad}");
        }
    }

    #[test]
    fn user_fields_in_both_forms() {
        let both = UserLimits {
            storage: Some(Some(1 << 30)),
            messages: Some(Some(50_000)),
        };
        assert_eq!(
            UserLimits::from_entry(&entry("userdb_quota_rule=*:storage=1G:messages=50000")),
            Ok(both)
        );
        assert_eq!(
            UserLimits::from_entry(&entry("quota_storage=1G quota_messages=50000")),
            Ok(both)
        );
        // Dovecot's bare storage number is in kilobytes.
        let kib = UserLimits::from_entry(&entry("userdb_quota_rule=*:storage=100"));
        assert_eq!(kib.map(|l| l.storage), Ok(Some(Some(102_400))));
        let off = UserLimits::from_entry(&entry("quota_storage=0 quota_messages=unlimited"));
        assert_eq!(
            off.map(|l| l.over(QuotaLimits {
                storage: Some(5),
                messages: Some(5)
            })),
            Ok(QuotaLimits::default())
        );
        let none = UserLimits::from_entry(&entry("pop3_mode=keep"));
        assert_eq!(none, Ok(UserLimits::default()));
    }

    #[test]
    fn bad_fields_are_named() {
        for (fields, what) in [
            ("quota_storage=lots", "quota_storage=lots"),
            ("quota_messages=1K", "quota_messages=1K"),
            ("userdb_quota_rule=Trash:storage=1G", "one quota per user"),
            ("userdb_quota_rule=*:storage=+10%", "not a size"),
            ("userdb_quota_rule=*:stroage=1G", "stroage"),
        ] {
            let e = crate::auth::UsersFile::parse(&format!("u:x::::::{fields}\n"))
                .expect_err(fields)
                .to_string();
            assert!(
                e.contains("line 1") && e.contains("user u") && e.contains(what),
                "{fields}: {e}"
            );
        }
    }
}
