//! APPEND, EXPUNGE (and UID EXPUNGE), COPY, MOVE and STORE: the commands
//! that change messages.

use crate::imap::parser::{DateTime, Flag, MessageSet, StoreMode, StoreRequest};
use crate::imap::response::flag_list_recent;
use crate::imap::session::{Session, State};
use crate::services::Shared;
use crate::store::{FlagChange, Flags};

/// Splits client flags into system flag bits and keywords.
pub fn split_flags(flags: &[Flag]) -> (Flags, Vec<String>) {
    let mut bits = Flags::default();
    let mut keywords = Vec::new();
    for flag in flags {
        bits = bits.with(match flag {
            Flag::Seen => Flags::SEEN,
            Flag::Answered => Flags::ANSWERED,
            Flag::Flagged => Flags::FLAGGED,
            Flag::Deleted => Flags::DELETED,
            Flag::Draft => Flags::DRAFT,
            Flag::Keyword(k) => {
                if !keywords
                    .iter()
                    .any(|have: &String| have.eq_ignore_ascii_case(k))
                {
                    keywords.push(k.clone());
                }
                continue;
            }
        });
    }
    (bits, keywords)
}

/// `1:3,7` from sorted numbers.
pub fn compress_set(numbers: &[u32]) -> String {
    let mut out = String::new();
    let mut i = 0;
    while i < numbers.len() {
        let start = numbers[i];
        let mut end = start;
        while i + 1 < numbers.len() && numbers[i + 1] == end + 1 {
            i += 1;
            end = numbers[i];
        }
        if !out.is_empty() {
            out.push(',');
        }
        if start == end {
            out.push_str(&start.to_string());
        } else {
            out.push_str(&format!("{start}:{end}"));
        }
        i += 1;
    }
    out
}

/// Keywords are atoms; keep them to a sane number per message.
const MAX_KEYWORDS: usize = 64;

impl Session {
    /// The UIDs a set names in the selected mailbox, in UID order.
    pub(in crate::imap) fn uids_of(&self, set: &MessageSet, uid: bool) -> Vec<u32> {
        let numbers = self.resolve_set(set, uid);
        if uid {
            return numbers;
        }
        let Some(view) = self.view() else {
            return Vec::new();
        };
        numbers
            .iter()
            .filter_map(|&seq| view.uids.get(seq as usize - 1).copied())
            .collect()
    }

    /// The id of a mailbox a message is to go into; when it does not exist
    /// the client is told to CREATE it (TRYCREATE) and None is returned.
    fn existing_mailbox(&mut self, tag: &str, name: &str) -> Option<crate::store::MailboxId> {
        let found = self
            .shared
            .store
            .snapshot()
            .and_then(|s| s.mailbox_id(&self.user, name));
        match found {
            Ok(Some(id)) => Some(id),
            Ok(None) => {
                self.no(tag, "[TRYCREATE] No such mailbox");
                None
            }
            Err(e) => {
                self.store_failed(tag, &e);
                None
            }
        }
    }

    pub(in crate::imap) async fn append(
        &mut self,
        tag: &str,
        raw_name: &[u8],
        flags: Vec<Flag>,
        date: Option<DateTime>,
        message: Vec<u8>,
    ) {
        let name = match self.mailbox_arg(raw_name) {
            Ok(name) => name,
            Err(e) => return self.no_such_name(tag, &e),
        };
        if message.is_empty() {
            return self.no(tag, "Cannot store an empty message");
        }
        if message.len() > self.shared.config.max_message_size {
            return self.no(
                tag,
                "[TOOBIG] Message is over the size limit (see APPENDLIMIT)",
            );
        }
        let (bits, keywords) = split_flags(&flags);
        if keywords.len() > MAX_KEYWORDS {
            return self.no(tag, "[LIMIT] Too many keywords");
        }
        let Some(mailbox) = self.existing_mailbox(tag, &name) else {
            return;
        };
        if let Err(e) = self.shared.store.room_for_new_mail() {
            return self.store_failed(tag, &e);
        }
        let when = date.map_or_else(crate::clock::now, |d| (d.unix, d.offset_minutes));
        let (message, analysis) = self.shared.analyse(message).await;
        let (user, quota) = (self.user.clone(), self.shared.quota_check(&self.user));
        let result = self
            .shared
            .store
            .write(move |tx| {
                tx.quota_room(&user, &quota.limits, message.len() as u64, 1)?;
                let uid = tx.append_message(mailbox, &message, &analysis, bits, keywords, when)?;
                tx.quota_notice(&user, &quota);
                let validity = tx.uid_validity(mailbox)?;
                Ok((validity, uid))
            })
            .await;
        match result {
            Ok((validity, uid)) => self.ok(
                tag,
                &format!("[APPENDUID {validity} {uid}] APPEND completed"),
            ),
            Err(e) => self.store_failed(tag, &e),
        }
    }

    pub(in crate::imap) async fn expunge(&mut self, tag: &str, uids: Option<MessageSet>) {
        let Some(view) = self.view() else { return };
        if view.read_only {
            return self.no(tag, "[READ-ONLY] Mailbox is read-only");
        }
        let mailbox = view.mailbox;
        let only = uids.map(|set| self.uids_of(&set, true));
        let result = self
            .shared
            .store
            .write(move |tx| tx.expunge_deleted(mailbox, only.as_deref()))
            .await;
        if let Err(e) = result {
            return self.store_failed(tag, &e);
        }
        self.sync(true);
        self.ok(tag, "EXPUNGE completed");
    }

    pub(in crate::imap) async fn copy(
        &mut self,
        tag: &str,
        uid: bool,
        set: &MessageSet,
        raw_name: &[u8],
        moving: bool,
    ) {
        let Some(view) = self.view() else { return };
        if moving && view.read_only {
            return self.no(tag, "[READ-ONLY] Mailbox is read-only");
        }
        let source = view.mailbox;
        let name = match self.mailbox_arg(raw_name) {
            Ok(name) => name,
            Err(e) => return self.no_such_name(tag, &e),
        };
        let uids = self.uids_of(set, uid);
        let Some(target) = self.existing_mailbox(tag, &name) else {
            return;
        };
        // A copy adds records, not bytes, but it is still new mail; a move
        // frees about as much as it takes, and may be how room is made.
        if !moving {
            if let Err(e) = self.shared.store.room_for_new_mail() {
                return self.store_failed(tag, &e);
            }
        }
        // A move stays within the user's one quota root and frees what it
        // takes, so only a copy is checked (Dovecot does the same): a full
        // user must still be able to move mail to Trash.
        let (user, quota) = (self.user.clone(), self.shared.quota_check(&self.user));
        let result = self
            .shared
            .store
            .write(move |tx| {
                if !moving {
                    let (bytes, count) = tx.messages_size(source, &uids)?;
                    tx.quota_room(&user, &quota.limits, bytes, count)?;
                }
                let pairs = tx.copy_messages(source, &uids, target)?;
                if moving {
                    let moved: Vec<u32> = pairs.iter().map(|(from, _)| *from).collect();
                    tx.expunge(source, &moved)?;
                } else {
                    tx.quota_notice(&user, &quota);
                }
                Ok((tx.uid_validity(target)?, pairs))
            })
            .await;
        let (validity, pairs) = match result {
            Ok(done) => done,
            Err(e) => return self.store_failed(tag, &e),
        };
        let code = if pairs.is_empty() {
            String::new()
        } else {
            let from: Vec<u32> = pairs.iter().map(|p| p.0).collect();
            let to: Vec<u32> = pairs.iter().map(|p| p.1).collect();
            format!(
                "[COPYUID {validity} {} {}] ",
                compress_set(&from),
                compress_set(&to)
            )
        };
        if moving {
            // RFC 6851: COPYUID goes in an untagged OK before the EXPUNGEs.
            if !code.is_empty() {
                self.untagged(&format!("OK {code}Moved"));
            }
            self.sync(true);
            self.ok(tag, "MOVE completed");
        } else {
            self.ok(tag, &format!("{code}COPY completed"));
        }
    }

    pub(in crate::imap) async fn store(
        &mut self,
        tag: &str,
        uid: bool,
        set: &MessageSet,
        request: StoreRequest,
    ) {
        let StoreRequest {
            mode,
            silent,
            flags,
            unchanged_since,
        } = request;
        let Some(view) = self.view() else { return };
        if view.read_only {
            return self.no(tag, "[READ-ONLY] Mailbox is read-only");
        }
        let mailbox = view.mailbox;
        let (bits, keywords) = split_flags(&flags);
        if keywords.len() > MAX_KEYWORDS {
            return self.no(tag, "[LIMIT] Too many keywords");
        }
        let change = match mode {
            StoreMode::Add => FlagChange::Add(bits, keywords),
            StoreMode::Remove => FlagChange::Remove(bits, keywords),
            StoreMode::Replace => FlagChange::Replace(bits, keywords),
        };
        let uids = self.uids_of(set, uid);
        let (low, high) = (
            uids.first().copied().unwrap_or(1),
            uids.last().copied().unwrap_or(0),
        );
        let read = |shared: &Shared| {
            shared
                .store
                .snapshot()
                .and_then(|s| Ok((s.messages_between(mailbox, low, high)?, s)))
        };
        let (before, snapshot) = match read(&self.shared) {
            Ok(before) => before,
            Err(e) => return self.store_failed(tag, &e),
        };
        // Setting flags a message already has (clients often re-send \Seen)
        // changes nothing, so it costs no write: the reply is this snapshot.
        // A conditional STORE checks MODSEQs in the write itself.
        let needs_write = unchanged_since.is_some()
            || before.iter().any(|(msg_uid, m)| {
                uids.binary_search(msg_uid).is_ok() && change.changes(m.flags, &m.keywords)
            });
        let mut changed: Vec<u32> = Vec::new();
        let mut modified: Vec<u32> = Vec::new();
        let (current, snapshot) = if needs_write {
            let wanted = uids.clone();
            let change = change.clone();
            let result = self
                .shared
                .store
                .write(move |tx| {
                    tx.change_flags_unless_modified(mailbox, &wanted, &change, unchanged_since)
                })
                .await;
            match result {
                Ok((done, left)) => {
                    changed = done.into_iter().map(|c| c.uid).collect();
                    modified = left;
                }
                Err(e) => return self.store_failed(tag, &e),
            }
            // Report the current flags of every message asked about, changed
            // or not, from one fresh snapshot.
            match read(&self.shared) {
                Ok(current) => current,
                Err(e) => return self.store_failed(tag, &e),
            }
        } else {
            (before, snapshot)
        };
        // A keyword new to the mailbox is announced before the FETCH that
        // carries it (RFC 9051 §7.3.5).
        self.announce_keywords(&snapshot);
        // The keywords the client has been told of: a message gone from the
        // store can take no other (its keyword never reached the mailbox).
        let known_keywords = snapshot
            .mailbox(mailbox)
            .ok()
            .flatten()
            .map(|r| r.keywords)
            .unwrap_or_default();
        let condstore = self.condstore;
        let State::Selected(view) = &mut self.state else {
            return;
        };
        let mut current = current.into_iter().peekable();
        for &msg_uid in &uids {
            while current.peek().is_some_and(|(u, _)| *u < msg_uid) {
                current.next();
            }
            let Some(seq) = view.seq_of(msg_uid) else {
                continue;
            };
            let Some((_, record)) = current.next_if(|(u, _)| *u == msg_uid) else {
                // Expunged by another session, not yet reported to this one:
                // the change is made to what the client sees, and the
                // EXPUNGE follows at the next chance (RFC 2180 §4.2.1).
                let index = seq as usize - 1;
                let (flags, keywords) = view.flags_at(index);
                let (flags, mut keywords) = change.apply(flags, keywords);
                keywords.retain(|k| known_keywords.iter().any(|n| n.eq_ignore_ascii_case(k)));
                if !silent {
                    let line = format!("* {seq} FETCH (FLAGS ");
                    self.out.extend_from_slice(line.as_bytes());
                    flag_list_recent(&mut self.out, flags, &keywords, view.is_recent(msg_uid));
                    if uid {
                        self.out
                            .extend_from_slice(format!(" UID {msg_uid}").as_bytes());
                    }
                    self.out.extend_from_slice(b")\r\n");
                }
                view.set_flags_of_gone(msg_uid, flags, keywords);
                continue;
            };
            view.saw_flags(msg_uid, &record);
            // Left alone by UNCHANGEDSINCE: named in MODIFIED instead.
            if modified.binary_search(&msg_uid).is_ok() {
                continue;
            }
            if silent {
                // RFC 7162 §3.1.3: even .SILENT tells a CONDSTORE client the
                // new MODSEQ of what changed.
                if condstore && changed.binary_search(&msg_uid).is_ok() {
                    let line = format!(
                        "* {seq} FETCH (UID {msg_uid} MODSEQ ({}))\r\n",
                        record.modseq
                    );
                    self.out.extend_from_slice(line.as_bytes());
                }
                continue;
            }
            self.out
                .extend_from_slice(format!("* {seq} FETCH (FLAGS ").as_bytes());
            flag_list_recent(
                &mut self.out,
                record.flags,
                &record.keywords,
                view.is_recent(msg_uid),
            );
            if uid || condstore {
                self.out
                    .extend_from_slice(format!(" UID {msg_uid}").as_bytes());
            }
            if condstore {
                self.out
                    .extend_from_slice(format!(" MODSEQ ({})", record.modseq).as_bytes());
            }
            self.out.extend_from_slice(b")\r\n");
        }
        if !modified.is_empty() {
            let numbers: Vec<u32> = if uid {
                modified
            } else {
                modified.iter().filter_map(|u| view.seq_of(*u)).collect()
            };
            let set = compress_set(&numbers);
            self.ok(tag, &format!("[MODIFIED {set}] Conditional STORE failed"));
        } else {
            self.ok(tag, "STORE completed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sets_compress() {
        assert_eq!(compress_set(&[1, 2, 3, 5, 7, 8]), "1:3,5,7:8");
        assert_eq!(compress_set(&[4]), "4");
        assert_eq!(compress_set(&[]), "");
    }

    #[test]
    fn flags_split() {
        let (bits, kw) = split_flags(&[
            Flag::Seen,
            Flag::Keyword("$A".into()),
            Flag::Keyword("$a".into()),
        ]);
        assert_eq!(bits, Flags::SEEN);
        assert_eq!(kw, ["$A"]);
    }
}
