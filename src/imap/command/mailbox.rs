//! CREATE, DELETE, RENAME, SUBSCRIBE and UNSUBSCRIBE.

use crate::imap::session::Session;
use crate::store::SpecialUse;

impl Session {
    pub(in crate::imap) async fn create(
        &mut self,
        tag: &str,
        raw: &[u8],
        special_use: Option<Vec<String>>,
    ) {
        let name = match self.mailbox_arg(raw) {
            Ok(name) => name.trim_end_matches('/').to_string(),
            Err(e) => return self.no(tag, &format!("[CANNOT] {e}")),
        };
        if name.is_empty()
            || name.contains(['*', '%'])
            || name.starts_with('/')
            || name.contains("//")
        {
            return self.no(
                tag,
                "[CANNOT] Invalid mailbox name (no *, %, empty levels or leading /)",
            );
        }
        if name == "INBOX" {
            return self.no(tag, "[ALREADYEXISTS] INBOX always exists");
        }
        let use_attr = match special_use.as_deref() {
            None | Some([]) => None,
            Some([one]) => match one.to_ascii_lowercase().as_str() {
                "\\sent" => Some(SpecialUse::Sent),
                "\\drafts" => Some(SpecialUse::Drafts),
                "\\trash" => Some(SpecialUse::Trash),
                "\\junk" => Some(SpecialUse::Junk),
                "\\archive" => Some(SpecialUse::Archive),
                _ => return self.no(tag, "[USEATTR] Unsupported special-use attribute"),
            },
            Some(_) => return self.no(tag, "[USEATTR] One special-use attribute per mailbox"),
        };
        let user = self.user.clone();
        let result = self
            .shared
            .store
            .write(move |tx| {
                if tx.mailbox_id(&user, &name)?.is_some() {
                    return Err(crate::store::StoreError::MailboxExists);
                }
                // One mailbox per use, so a client that looks for \Sent
                // finds one answer (RFC 6154 §3 lets the server refuse).
                if let Some(use_attr) = use_attr {
                    if tx.special_use_taken(&user, use_attr)? {
                        return Ok(None);
                    }
                }
                // Missing parents are made too, so the hierarchy has no holes.
                let mut parent = String::new();
                for level in name.split('/') {
                    if !parent.is_empty() {
                        parent.push('/');
                    }
                    parent.push_str(level);
                    if parent != name && tx.mailbox_id(&user, &parent)?.is_none() {
                        tx.create_mailbox(&user, &parent, None)?;
                    }
                }
                tx.create_mailbox(&user, &name, use_attr).map(Some)
            })
            .await;
        match result {
            Ok(Some(_)) => self.ok(tag, "CREATE completed"),
            Ok(None) => self.no(
                tag,
                "[USEATTR] Another mailbox already has that special use",
            ),
            Err(e) => self.store_failed(tag, &e),
        }
    }

    pub(in crate::imap) async fn delete(&mut self, tag: &str, raw: &[u8]) {
        let name = match self.mailbox_arg(raw) {
            Ok(name) => name,
            Err(e) => return self.no_such_name(tag, &e),
        };
        // RFC 9051 §6.3.4: a refusal because of inferior names SHOULD say
        // HASCHILDREN, so the client can tell the user what to do.
        let prefix = format!("{name}/");
        let has_children = self
            .shared
            .store
            .snapshot()
            .and_then(|s| s.mailboxes(&self.user))
            .is_ok_and(|all| all.iter().any(|(_, r)| r.name.starts_with(&prefix)));
        if has_children && name != "INBOX" {
            return self.no(
                tag,
                "[HASCHILDREN] Mailbox has children; delete or move them first",
            );
        }
        let user = self.user.clone();
        let id = self
            .shared
            .store
            .snapshot()
            .and_then(|s| s.mailbox_id(&self.user, &name))
            .ok()
            .flatten();
        match self
            .shared
            .store
            .write(move |tx| {
                let id = tx.mailbox_id(&user, &name)?;
                tx.delete_mailbox(&user, &name)?;
                // Its annotations go with it, in the same transaction.
                match id {
                    Some(id) => tx.delete_metadata(&user, id),
                    None => Ok(()),
                }
            })
            .await
        {
            Ok(()) => {
                if let Some(id) = id {
                    self.shared.forget_recent(id);
                }
                self.ok(tag, "DELETE completed")
            }
            Err(e) => self.store_failed(tag, &e),
        }
    }

    pub(in crate::imap) async fn rename(&mut self, tag: &str, from: &[u8], to: &[u8]) {
        let (from, to) = match (self.mailbox_arg(from), self.mailbox_arg(to)) {
            (Ok(from), Ok(to)) => (from, to.trim_end_matches('/').to_string()),
            (Err(e), _) | (_, Err(e)) => return self.no(tag, &format!("[CANNOT] {e}")),
        };
        if to.is_empty() || to.contains(['*', '%']) || to.starts_with('/') || to.contains("//") {
            return self.no(
                tag,
                "[CANNOT] Invalid mailbox name (no *, %, empty levels or leading /)",
            );
        }
        let user = self.user.clone();
        match self
            .shared
            .store
            .write(move |tx| {
                tx.rename_mailbox(&user, &from, &to)?;
                // RFC 9051 §6.3.6: superior names the new name needs SHOULD
                // be created, as CREATE does, so the hierarchy has no holes.
                let mut parent = to.as_str();
                while let Some((above, _)) = parent.rsplit_once('/') {
                    if tx.mailbox_id(&user, above)?.is_none() {
                        tx.create_mailbox(&user, above, None)?;
                    }
                    parent = above;
                }
                Ok(())
            })
            .await
        {
            Ok(()) => self.ok(tag, "RENAME completed"),
            Err(e) => self.store_failed(tag, &e),
        }
    }

    pub(in crate::imap) async fn subscribe(&mut self, tag: &str, raw: &[u8], subscribed: bool) {
        let name = match self.mailbox_arg(raw) {
            Ok(name) => name,
            Err(e) => return self.no_such_name(tag, &e),
        };
        let user = self.user.clone();
        // Only an existing mailbox can be subscribed (as in Dovecot); any
        // name can be unsubscribed, so a client cleaning up after a DELETE
        // or RENAME (Roundcube does) is never refused.
        let done = self
            .shared
            .store
            .write(move |tx| {
                if subscribed && tx.mailbox_id(&user, &name)?.is_none() {
                    return Err(crate::store::StoreError::NoSuchMailbox);
                }
                tx.set_subscribed(&user, &name, subscribed)
            })
            .await;
        let verb = if subscribed {
            "SUBSCRIBE"
        } else {
            "UNSUBSCRIBE"
        };
        match done {
            Ok(()) => self.ok(tag, &format!("{verb} completed")),
            Err(e) => self.store_failed(tag, &e),
        }
    }
}
