//! GETMETADATA and SETMETADATA (RFC 5464): per-user annotations on the
//! server (mailbox "") and on each mailbox. Every user's entries, `/shared`
//! ones included, are theirs alone (see store/metadata.rs).

use std::collections::BTreeMap;

use crate::imap::parser::{is_atom_char, MetadataDepth};
use crate::imap::response;
use crate::imap::session::Session;
use crate::store::{MailboxId, MetadataSet, SERVER_ENTRIES};

/// The largest value one entry may hold (`[METADATA MAXSIZE n]`). Delta
/// Chat's push token and Roundcube's settings are far smaller; the command
/// size limit (64 KiB with its literals) would stop more anyway.
pub const MAX_METADATA_VALUE: usize = 32 * 1024;
/// The most entries one user may hold over the server and all mailboxes
/// (`[METADATA TOOMANY]`), so one user's annotations stay small.
pub const MAX_METADATA_ENTRIES_PER_USER: usize = 256;

impl Session {
    /// The mailbox an annotation command names: "" is the server.
    fn metadata_target(&mut self, tag: &str, raw: &[u8]) -> Option<(MailboxId, String)> {
        if raw.is_empty() {
            return Some((SERVER_ENTRIES, String::new()));
        }
        let name = match self.mailbox_arg(raw) {
            Ok(name) => name,
            Err(e) => {
                self.no_such_name(tag, &e);
                return None;
            }
        };
        let found = self
            .shared
            .store
            .snapshot()
            .and_then(|s| s.mailbox_id(&self.user, &name));
        match found {
            Ok(Some(id)) => Some((id, name)),
            Ok(None) => {
                self.no(tag, "[NONEXISTENT] No such mailbox");
                None
            }
            Err(e) => {
                self.store_failed(tag, &e);
                None
            }
        }
    }

    pub(in crate::imap) fn getmetadata(
        &mut self,
        tag: &str,
        raw: &[u8],
        entries: &[String],
        depth: MetadataDepth,
        max_size: Option<u32>,
    ) {
        let Some((mailbox, name)) = self.metadata_target(tag, raw) else {
            return;
        };
        let snapshot = match self.shared.store.snapshot() {
            Ok(s) => s,
            Err(e) => return self.store_failed(tag, &e),
        };
        // Sorted and without repeats, however the requests overlap.
        let mut found: BTreeMap<String, Option<Vec<u8>>> = BTreeMap::new();
        for entry in entries {
            let rows = match snapshot.metadata(
                &self.user,
                mailbox,
                entry,
                MAX_METADATA_ENTRIES_PER_USER,
            ) {
                Ok(rows) => rows,
                Err(e) => return self.store_failed(tag, &e),
            };
            let top_level = entry.matches('/').count() == 1;
            if !top_level && !rows.iter().any(|(n, _)| n == entry) {
                // As Dovecot: a named entry without a value is NIL.
                found.entry(entry.clone()).or_insert(None);
            }
            for (name, value) in rows {
                let below = name.len() > entry.len();
                let wanted = match depth {
                    MetadataDepth::Zero => !below,
                    MetadataDepth::One => !below || !name[entry.len() + 1..].contains('/'),
                    MetadataDepth::Infinity => true,
                };
                if wanted {
                    found.insert(name, Some(value));
                }
            }
        }
        let mut longest_skipped = 0;
        let mut line = Vec::new();
        for (entry, value) in &found {
            if let (Some(max), Some(value)) = (max_size, value) {
                if value.len() > max as usize {
                    longest_skipped = longest_skipped.max(value.len());
                    continue;
                }
            }
            if !line.is_empty() {
                line.push(b' ');
            }
            if entry.bytes().all(is_atom_char) {
                line.extend_from_slice(entry.as_bytes());
            } else {
                response::string(&mut line, entry.as_bytes());
            }
            line.push(b' ');
            match value {
                None => line.extend_from_slice(b"NIL"),
                // NUL needs literal8 (RFC 5464 §5: value = nstring / literal8).
                Some(v) if v.contains(&0) => {
                    line.extend_from_slice(format!("~{{{}}}\r\n", v.len()).as_bytes());
                    line.extend_from_slice(v);
                }
                Some(v) => response::string(&mut line, v),
            }
        }
        if !line.is_empty() {
            self.out.extend_from_slice(b"* METADATA ");
            if mailbox == SERVER_ENTRIES {
                self.out.extend_from_slice(b"\"\"");
            } else {
                response::mailbox_name(&mut self.out, &name, self.utf8);
            }
            self.out.extend_from_slice(b" (");
            self.out.extend_from_slice(&line);
            self.out.extend_from_slice(b")\r\n");
        }
        if longest_skipped > 0 {
            self.ok(
                tag,
                &format!("[METADATA LONGENTRIES {longest_skipped}] GETMETADATA completed"),
            );
        } else {
            self.ok(tag, "GETMETADATA completed");
        }
    }

    pub(in crate::imap) async fn setmetadata(
        &mut self,
        tag: &str,
        raw: &[u8],
        entries: Vec<(String, Option<Vec<u8>>)>,
    ) {
        if let Some((name, _)) = entries
            .iter()
            .find(|(_, v)| v.as_ref().is_some_and(|v| v.len() > MAX_METADATA_VALUE))
        {
            return self.no(
                tag,
                &format!(
                    "[METADATA MAXSIZE {MAX_METADATA_VALUE}] The value of {name} is over the limit of {MAX_METADATA_VALUE} bytes"
                ),
            );
        }
        let Some((mailbox, _)) = self.metadata_target(tag, raw) else {
            return;
        };
        let user = self.user.clone();
        let result = self
            .shared
            .store
            .write(move |tx| {
                tx.set_metadata(&user, mailbox, &entries, MAX_METADATA_ENTRIES_PER_USER)
            })
            .await;
        match result {
            Ok(MetadataSet::Done) => self.ok(tag, "SETMETADATA completed"),
            Ok(MetadataSet::TooMany) => self.no(
                tag,
                &format!(
                    "[METADATA TOOMANY] A user may keep at most {MAX_METADATA_ENTRIES_PER_USER} entries; remove some first"
                ),
            ),
            Err(e) => self.store_failed(tag, &e),
        }
    }
}
