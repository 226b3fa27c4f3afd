//! GETQUOTAROOT and GETQUOTA (RFC 9208). Each user has one quota root, "",
//! that holds every mailbox of theirs; SETQUOTA is refused in session.rs,
//! since limits come from the administrator (flags and the users file).

use crate::imap::response::mailbox_name;
use crate::imap::session::Session;
use crate::store::StoreError;

impl Session {
    /// `* QUOTAROOT mailbox ""` and the root's QUOTA. A user with no limit
    /// has no quota root, as with Dovecot: the mailbox is named alone.
    pub(in crate::imap) fn getquotaroot(&mut self, tag: &str, raw: &[u8]) {
        let name = match self.mailbox_arg(raw) {
            Ok(name) => name,
            Err(e) => return self.no_such_name(tag, &e),
        };
        let exists = self
            .shared
            .store
            .snapshot()
            .and_then(|s| s.mailbox_id(&self.user, &name));
        match exists {
            Ok(Some(_)) => {}
            Ok(None) => return self.store_failed(tag, &StoreError::NoSuchMailbox),
            Err(e) => return self.store_failed(tag, &e),
        }
        let Some(quota) = self.quota_line() else {
            let mut line = b"* QUOTAROOT ".to_vec();
            mailbox_name(&mut line, &name, self.utf8);
            line.extend_from_slice(b"\r\n");
            self.out.extend_from_slice(&line);
            return self.ok(tag, "GETQUOTAROOT completed");
        };
        let quota = match quota {
            Ok(quota) => quota,
            Err(e) => return self.store_failed(tag, &e),
        };
        let mut line = b"* QUOTAROOT ".to_vec();
        mailbox_name(&mut line, &name, self.utf8);
        line.extend_from_slice(b" \"\"\r\n");
        self.out.extend_from_slice(&line);
        self.out.extend_from_slice(&quota);
        self.ok(tag, "GETQUOTAROOT completed");
    }

    /// `* QUOTA "" (...)` for the user's one root.
    pub(in crate::imap) fn getquota(&mut self, tag: &str, root: &[u8]) {
        if !root.is_empty() {
            return self.no(
                tag,
                "[NONEXISTENT] No such quota root; each user has one, \"\"",
            );
        }
        match self.quota_line() {
            Some(Ok(quota)) => {
                self.out.extend_from_slice(&quota);
                self.ok(tag, "GETQUOTA completed");
            }
            Some(Err(e)) => self.store_failed(tag, &e),
            None => self.no(tag, "[NONEXISTENT] No quota limits are set for this user"),
        }
    }

    /// The QUOTA response for the user's root, with usage and limits in
    /// RFC 9208's units (STORAGE in KiB); None when the user has no limit.
    fn quota_line(&self) -> Option<Result<Vec<u8>, StoreError>> {
        let limits = self.shared.quota_limits(&self.user);
        if limits.is_unlimited() {
            return None;
        }
        let usage = match self
            .shared
            .store
            .snapshot()
            .and_then(|s| s.usage(&self.user))
        {
            Ok(usage) => usage,
            Err(e) => return Some(Err(e)),
        };
        let mut resources = Vec::new();
        if let Some(limit) = limits.storage {
            resources.push(format!(
                "STORAGE {} {}",
                usage.storage.div_ceil(1024),
                limit / 1024
            ));
        }
        if let Some(limit) = limits.messages {
            resources.push(format!("MESSAGE {} {limit}", usage.messages));
        }
        Some(Ok(
            format!("* QUOTA \"\" ({})\r\n", resources.join(" ")).into_bytes()
        ))
    }
}
