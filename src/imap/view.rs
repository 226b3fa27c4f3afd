//! A session's view of its selected mailbox: its own sequence numbers, and
//! what it has told the client so far. Other sessions' and deliveries'
//! changes reach the client only through [`View::sync`], and expunges only
//! when the command in progress allows them (RFC 9051 §7.5.1).

use std::collections::HashMap;

use super::response::flag_list;
use crate::store::{Flags, MailboxId, MessageRecord, Snapshot, StoreError};

pub struct View {
    pub mailbox: MailboxId,
    pub read_only: bool,
    pub uid_validity: u32,
    /// Sequence number - 1 → UID, ascending.
    pub uids: Vec<u32>,
    /// The MODSEQ of each message's flags as last shown, parallel to `uids`.
    modseqs: Vec<u64>,
    /// Each message's flags as last synced, parallel to `uids`, and the
    /// keywords of those that have any: `UID FETCH 1:* (UID FLAGS)`, which
    /// clients send on every connect, is answered from here.
    flags: Vec<Flags>,
    keywords: HashMap<u32, Vec<String>>,
    /// The mailbox's MODSEQ and UIDNEXT when last synced: unchanged means
    /// nothing to do, without scanning the messages.
    highest_modseq: u64,
    uid_next: u32,
    /// Messages gone from the store but not yet reported (an EXPUNGE was not
    /// allowed when they went).
    pub vanished: Vec<u32>,
}

impl View {
    /// Opens a view; the messages and the mailbox record come from one snapshot.
    pub fn open(
        snapshot: &Snapshot,
        mailbox: MailboxId,
        read_only: bool,
    ) -> Result<(View, Vec<(u32, MessageRecord)>), StoreError> {
        let record = snapshot
            .mailbox(mailbox)?
            .ok_or(StoreError::NoSuchMailbox)?;
        let messages = snapshot.messages(mailbox)?;
        let view = View {
            mailbox,
            read_only,
            uid_validity: record.uid_validity,
            uids: messages.iter().map(|(uid, _)| *uid).collect(),
            modseqs: messages.iter().map(|(_, m)| m.modseq).collect(),
            flags: messages.iter().map(|(_, m)| m.flags).collect(),
            keywords: messages
                .iter()
                .filter(|(_, m)| !m.keywords.is_empty())
                .map(|(uid, m)| (*uid, m.keywords.clone()))
                .collect(),
            highest_modseq: record.highest_modseq,
            uid_next: record.uid_next,
            vanished: Vec::new(),
        };
        Ok((view, messages))
    }

    pub fn uid_next(&self) -> u32 {
        self.uid_next
    }

    pub fn exists(&self) -> u32 {
        self.uids.len() as u32
    }

    /// The sequence number of a UID in this view.
    pub fn seq_of(&self, uid: u32) -> Option<u32> {
        self.uids.binary_search(&uid).ok().map(|i| i as u32 + 1)
    }

    /// Notes that this session itself changed a message's flags (and told
    /// the client, or was told to be silent), so sync does not repeat it.
    pub fn saw_flags(&mut self, uid: u32, message: &MessageRecord) {
        if let Ok(i) = self.uids.binary_search(&uid) {
            self.remember(i, message);
        }
    }

    fn remember(&mut self, index: usize, message: &MessageRecord) {
        let uid = self.uids[index];
        self.modseqs[index] = message.modseq;
        self.flags[index] = message.flags;
        if message.keywords.is_empty() {
            self.keywords.remove(&uid);
        } else {
            self.keywords.insert(uid, message.keywords.clone());
        }
    }

    /// The flags and keywords of the message at `index` (sequence number - 1)
    /// as of the last sync.
    pub fn flags_at(&self, index: usize) -> (Flags, &[String]) {
        let uid = self.uids[index];
        let keywords = self.keywords.get(&uid).map_or(&[][..], Vec::as_slice);
        (self.flags[index], keywords)
    }

    /// Brings the view up to date with the store and writes the untagged
    /// responses that says so: EXPUNGE (only if `allow_expunge`), EXISTS,
    /// and FETCH FLAGS for flags changed elsewhere.
    pub fn sync(
        &mut self,
        snapshot: &Snapshot,
        out: &mut Vec<u8>,
        allow_expunge: bool,
    ) -> Result<(), StoreError> {
        let record = match snapshot.mailbox(self.mailbox)? {
            Some(record) => record,
            // Deleted under us: every message is gone.
            None => {
                if allow_expunge {
                    for seq in (1..=self.uids.len()).rev() {
                        out.extend_from_slice(format!("* {seq} EXPUNGE\r\n").as_bytes());
                    }
                    self.uids.clear();
                    self.modseqs.clear();
                    self.flags.clear();
                    self.keywords.clear();
                }
                return Ok(());
            }
        };
        let pending_expunge = allow_expunge && !self.vanished.is_empty();
        if record.highest_modseq == self.highest_modseq
            && record.uid_next == self.uid_next
            && !pending_expunge
        {
            return Ok(());
        }
        let current: HashMap<u32, MessageRecord> =
            snapshot.messages(self.mailbox)?.into_iter().collect();
        if allow_expunge {
            // Highest first, so each number still means what the client
            // thinks it means when it reads that line.
            let mut gone = false;
            for i in (0..self.uids.len()).rev() {
                if !current.contains_key(&self.uids[i]) {
                    out.extend_from_slice(format!("* {} EXPUNGE\r\n", i + 1).as_bytes());
                    gone = true;
                }
            }
            if gone {
                // One pass, not one removal per message: expunging half of a
                // large mailbox must not be quadratic.
                let keep: Vec<bool> = self.uids.iter().map(|u| current.contains_key(u)).collect();
                let mut keep_iter = keep.iter();
                self.modseqs.retain(|_| *keep_iter.next().unwrap_or(&false));
                let mut keep_iter = keep.iter();
                self.flags.retain(|_| *keep_iter.next().unwrap_or(&false));
                self.uids.retain(|u| current.contains_key(u));
                self.keywords.retain(|u, _| current.contains_key(u));
            }
            self.vanished.clear();
        } else {
            self.vanished = self
                .uids
                .iter()
                .copied()
                .filter(|uid| !current.contains_key(uid))
                .collect();
        }
        for i in 0..self.uids.len() {
            let Some(message) = current.get(&self.uids[i]) else {
                continue;
            };
            if message.modseq > self.modseqs[i] {
                self.remember(i, message);
                out.extend_from_slice(
                    format!("* {} FETCH (UID {} FLAGS ", i + 1, self.uids[i]).as_bytes(),
                );
                flag_list(out, message.flags, &message.keywords);
                out.extend_from_slice(b")\r\n");
            }
        }
        let last = self.uids.last().copied().unwrap_or(0);
        let mut arrived: Vec<(u32, &MessageRecord)> = current
            .iter()
            .filter(|(uid, _)| **uid > last)
            .map(|(uid, m)| (*uid, m))
            .collect();
        if !arrived.is_empty() {
            arrived.sort_unstable_by_key(|(uid, _)| *uid);
            for (uid, message) in arrived {
                self.uids.push(uid);
                self.modseqs.push(message.modseq);
                self.flags.push(message.flags);
                if !message.keywords.is_empty() {
                    self.keywords.insert(uid, message.keywords.clone());
                }
            }
            out.extend_from_slice(format!("* {} EXISTS\r\n", self.uids.len()).as_bytes());
        }
        self.highest_modseq = record.highest_modseq;
        self.uid_next = record.uid_next;
        Ok(())
    }
}
