//! A session's view of its selected mailbox: its own sequence numbers, and
//! what it has told the client so far. Other sessions' and deliveries'
//! changes reach the client only through [`View::sync`], and expunges only
//! when the command in progress allows them (RFC 9051 §7.5.1).

use std::collections::HashMap;
use std::ops::Range;

use super::response::{flag_list_recent, flags_announcement};
use crate::store::{
    chunk_of, ExpungePin, Flags, MailboxId, MailboxRecord, MessageRecord, Snapshot, StoreError,
    CHUNK_UIDS,
};

/// A message as sync found it: UID, MODSEQ, flags, keywords.
type Message = (u32, u64, Flags, Vec<String>);

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
    /// The EXISTS that SELECT announced, until [`View::load`] has read the
    /// messages.
    announced: Option<u32>,
    /// Until [`View::load`], the store keeps the expunge records it will
    /// read (those after `highest_modseq`) from being pruned.
    expunge_pin: Option<ExpungePin>,
    /// The UIDs that are \Recent in this session (RFC 3501 §2.3.2), as the
    /// ranges it claimed, ascending; empty for IMAP4rev2 sessions.
    recent: Vec<Range<u32>>,
    /// How many of the mailbox's keywords the client was told of in FLAGS
    /// (the list only grows): a new one is announced before it is used.
    announced_keywords: usize,
}

impl View {
    /// Opens a view as SELECT needs it: from the mailbox record alone. The
    /// messages are read by [`View::load`] when a command first needs them,
    /// so SELECT costs the same for ten messages and for a hundred thousand.
    pub fn open(
        snapshot: &Snapshot,
        mailbox: MailboxId,
        read_only: bool,
    ) -> Result<(View, MailboxRecord), StoreError> {
        let record = snapshot
            .mailbox(mailbox)?
            .ok_or(StoreError::NoSuchMailbox)?;
        let view = View {
            mailbox,
            read_only,
            uid_validity: record.uid_validity,
            uids: Vec::new(),
            modseqs: Vec::new(),
            flags: Vec::new(),
            keywords: HashMap::new(),
            highest_modseq: record.highest_modseq,
            uid_next: record.uid_next,
            vanished: Vec::new(),
            announced: Some(record.exists),
            expunge_pin: None,
            recent: Vec::new(),
            announced_keywords: record.keywords.len(),
        };
        Ok((view, record))
    }

    /// Keeps the expunge records this view needs until it is loaded; `pin`
    /// is for its mailbox at its MODSEQ (see store/expunges.rs).
    pub fn keep_expunges(&mut self, pin: ExpungePin) {
        if self.announced.is_some() {
            self.expunge_pin = Some(pin);
        }
    }

    /// Reads the messages, as the client was told of them at SELECT, from a
    /// later snapshot: messages that arrived since are left for the next
    /// sync to announce, and those expunged since are put back (from the
    /// `expunged` table) for it to report.
    pub fn load(&mut self, snapshot: &Snapshot) -> Result<(), StoreError> {
        let Some(announced) = self.announced else {
            return Ok(());
        };
        let (uid_next, highest_modseq) = (self.uid_next, self.highest_modseq);
        let mut expunged = snapshot.expunged_since(self.mailbox, highest_modseq)?;
        if snapshot.expunge_horizon(self.mailbox)? > highest_modseq {
            // The pin taken at SELECT rules this out; if it happens anyway
            // the count check below says so.
            log::warn!(
                "mailbox {}: expunge records after MODSEQ {highest_modseq} were pruned before this view read them",
                self.mailbox
            );
        }
        expunged.retain(|&uid| uid < uid_next);
        let capacity = announced as usize;
        let mut uids = Vec::with_capacity(capacity);
        let mut modseqs = Vec::with_capacity(capacity);
        let mut flags = Vec::with_capacity(capacity);
        let mut keywords = HashMap::new();
        let mut gone = expunged.iter().copied().peekable();
        snapshot.for_each_chunk(self.mailbox, |chunk| {
            let first = uids.len();
            for ((uid, modseq), f) in chunk.uids().zip(chunk.modseqs()).zip(chunk.flags()) {
                if uid >= uid_next {
                    break;
                }
                // Gone since SELECT: known by UID only, and found gone by
                // the next sync.
                while let Some(g) = gone.next_if(|&g| g < uid) {
                    uids.push(g);
                    modseqs.push(0);
                    flags.push(Flags::default());
                }
                uids.push(uid);
                // Changed since SELECT: the next sync reports it, as it would
                // have had the view been read at SELECT.
                modseqs.push(if modseq > highest_modseq { 0 } else { modseq });
                flags.push(f);
            }
            let with_keywords = chunk.keywords()?;
            if uids.len() > first && !with_keywords.is_empty() {
                let chunk_uids: Vec<u32> = chunk.uids().collect();
                for (position, k) in with_keywords {
                    if chunk_uids[position] < uid_next {
                        keywords.insert(chunk_uids[position], k);
                    }
                }
            }
            Ok(())
        })?;
        for g in gone {
            uids.push(g);
            modseqs.push(0);
            flags.push(Flags::default());
        }
        if uids.len() != capacity {
            log::warn!(
                "mailbox {}: SELECT announced {announced} messages, the store accounts for {}",
                self.mailbox,
                uids.len()
            );
        }
        self.uids = uids;
        self.modseqs = modseqs;
        self.flags = flags;
        self.keywords = keywords;
        self.announced = None;
        self.expunge_pin = None;
        Ok(())
    }

    /// Makes `uids` \Recent in this session.
    pub fn add_recent(&mut self, uids: Range<u32>) {
        match self.recent.last_mut() {
            Some(last) if last.end == uids.start => last.end = uids.end,
            _ => self.recent.push(uids),
        }
    }

    pub fn is_recent(&self, uid: u32) -> bool {
        let i = self.recent.partition_point(|r| r.end <= uid);
        self.recent.get(i).is_some_and(|r| r.contains(&uid))
    }

    /// The UID ranges that are \Recent in this session.
    pub fn recent(&self) -> &[Range<u32>] {
        &self.recent
    }

    /// How many of the view's messages are \Recent (the view is loaded).
    pub fn recent_count(&self) -> u32 {
        self.recent
            .iter()
            .map(|r| {
                let from = self.uids.partition_point(|&u| u < r.start);
                let to = self.uids.partition_point(|&u| u < r.end);
                (to - from) as u32
            })
            .sum()
    }

    /// Writes FLAGS and PERMANENTFLAGS if the mailbox has keywords the
    /// client was not yet told of; true if it did.
    pub fn announce_keywords(&mut self, record: &MailboxRecord, out: &mut Vec<u8>) -> bool {
        if record.keywords.len() <= self.announced_keywords {
            return false;
        }
        flags_announcement(out, &record.keywords, self.read_only);
        self.announced_keywords = record.keywords.len();
        true
    }

    /// A STORE on a message another session expunged, which this view still
    /// shows (RFC 2180 §4.2): the change is kept here until the EXPUNGE is
    /// reported.
    pub fn set_flags_of_gone(&mut self, uid: u32, flags: Flags, keywords: Vec<String>) {
        let Ok(i) = self.uids.binary_search(&uid) else {
            return;
        };
        self.flags[i] = flags;
        if keywords.is_empty() {
            self.keywords.remove(&uid);
        } else {
            self.keywords.insert(uid, keywords);
        }
    }

    /// The mailbox's HIGHESTMODSEQ as of the last sync.
    pub fn highest_modseq(&self) -> u64 {
        self.highest_modseq
    }

    /// The MODSEQ of the message at `index` (sequence number - 1) as of the
    /// last sync.
    pub fn modseq_at(&self, index: usize) -> u64 {
        self.modseqs[index]
    }

    pub fn uid_next(&self) -> u32 {
        self.uid_next
    }

    pub fn exists(&self) -> u32 {
        self.announced.unwrap_or(self.uids.len() as u32)
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
    /// responses that say so: FLAGS for new keywords, EXPUNGE (only if
    /// `allow_expunge`), EXISTS (and RECENT when `rev1`), and FETCH FLAGS for
    /// flags changed elsewhere. Only index chunks changed since the last
    /// sync are read message by message. `claim_recent` is asked for the
    /// new messages this session may see as \Recent.
    pub fn sync(
        &mut self,
        snapshot: &Snapshot,
        out: &mut Vec<u8>,
        allow_expunge: bool,
        condstore: bool,
        rev1: bool,
        claim_recent: &mut dyn FnMut(&MailboxRecord) -> Option<Range<u32>>,
    ) -> Result<(), StoreError> {
        let Some(record) = snapshot.mailbox(self.mailbox)? else {
            // Deleted under us: every message is gone.
            if let Some(announced) = self.announced {
                // Never loaded: the numbers are all the client has.
                if allow_expunge {
                    for seq in (1..=announced).rev() {
                        out.extend_from_slice(format!("* {seq} EXPUNGE\r\n").as_bytes());
                    }
                    self.announced = None;
                }
                return Ok(());
            }
            let all = self.uids.clone();
            self.note_gone(all, out, allow_expunge);
            return Ok(());
        };
        self.announce_keywords(&record, out);
        let pending_expunge = allow_expunge && !self.vanished.is_empty();
        if record.highest_modseq == self.highest_modseq
            && record.uid_next == self.uid_next
            && !pending_expunge
        {
            return Ok(());
        }
        self.load(snapshot)?;
        let mut gone = Vec::new();
        let mut changed = Vec::new();
        let mut arrived = Vec::new();
        if record.highest_modseq != self.highest_modseq || record.uid_next != self.uid_next {
            self.diff(snapshot, &mut gone, &mut changed, &mut arrived)?;
        }
        self.note_gone(gone, out, allow_expunge);
        for (uid, modseq, flags, keywords) in changed {
            // Gone messages were removed above, so look the UID up again.
            let Ok(i) = self.uids.binary_search(&uid) else {
                continue;
            };
            self.modseqs[i] = modseq;
            self.flags[i] = flags;
            out.extend_from_slice(format!("* {} FETCH (UID {uid} FLAGS ", i + 1).as_bytes());
            flag_list_recent(out, flags, &keywords, self.is_recent(uid));
            if condstore {
                out.extend_from_slice(format!(" MODSEQ ({modseq})").as_bytes());
            }
            out.extend_from_slice(b")\r\n");
            if keywords.is_empty() {
                self.keywords.remove(&uid);
            } else {
                self.keywords.insert(uid, keywords);
            }
        }
        if !arrived.is_empty() {
            for (uid, modseq, flags, keywords) in arrived {
                self.uids.push(uid);
                self.modseqs.push(modseq);
                self.flags.push(flags);
                if !keywords.is_empty() {
                    self.keywords.insert(uid, keywords);
                }
            }
            if let Some(claimed) = claim_recent(&record) {
                self.add_recent(claimed);
            }
            out.extend_from_slice(format!("* {} EXISTS\r\n", self.uids.len()).as_bytes());
            if rev1 {
                out.extend_from_slice(format!("* {} RECENT\r\n", self.recent_count()).as_bytes());
            }
        }
        self.highest_modseq = record.highest_modseq;
        self.uid_next = record.uid_next;
        Ok(())
    }

    /// Compares the view with the store's index: which of the view's
    /// messages are gone, whose flags changed, and which messages arrived.
    /// Chunks whose MODSEQ is not past the view's are unchanged and skipped.
    fn diff(
        &self,
        snapshot: &Snapshot,
        gone: &mut Vec<u32>,
        changed: &mut Vec<Message>,
        arrived: &mut Vec<Message>,
    ) -> Result<(), StoreError> {
        let last = self.uids.last().copied().unwrap_or(0);
        // Position in `self.uids` of the first UID not yet accounted for.
        let mut pos = 0;
        snapshot.for_each_chunk(self.mailbox, |chunk| {
            let low = chunk.number.saturating_mul(CHUNK_UIDS);
            // The view's UIDs before this chunk whose chunks no longer exist.
            let skipped = self.uids[pos..].partition_point(|&u| u < low);
            gone.extend_from_slice(&self.uids[pos..pos + skipped]);
            pos += skipped;
            let mine = self.uids[pos..].partition_point(|&u| chunk_of(u) == chunk.number);
            let (start, end) = (pos, pos + mine);
            pos = end;
            if chunk.modseq <= self.highest_modseq {
                return Ok(());
            }
            let mut keywords: HashMap<usize, Vec<String>> = chunk.keywords()?.into_iter().collect();
            let mut i = start;
            for (position, ((uid, modseq), flags)) in chunk
                .uids()
                .zip(chunk.modseqs())
                .zip(chunk.flags())
                .enumerate()
            {
                while i < end && self.uids[i] < uid {
                    gone.push(self.uids[i]);
                    i += 1;
                }
                if i < end && self.uids[i] == uid {
                    if modseq > self.modseqs[i] {
                        let k = keywords.remove(&position).unwrap_or_default();
                        changed.push((uid, modseq, flags, k));
                    }
                    i += 1;
                } else if uid > last {
                    let k = keywords.remove(&position).unwrap_or_default();
                    arrived.push((uid, modseq, flags, k));
                }
            }
            gone.extend_from_slice(&self.uids[i..end]);
            Ok(())
        })?;
        gone.extend_from_slice(&self.uids[pos..]);
        Ok(())
    }

    /// Reports messages found gone from the store: as EXPUNGE now if allowed,
    /// else kept in the view and remembered until it is.
    fn note_gone(&mut self, gone: Vec<u32>, out: &mut Vec<u8>, allow_expunge: bool) {
        self.vanished.extend(gone);
        self.vanished.sort_unstable();
        self.vanished.dedup();
        if !allow_expunge || self.vanished.is_empty() {
            return;
        }
        let doomed = std::mem::take(&mut self.vanished);
        let keep: Vec<bool> = self
            .uids
            .iter()
            .map(|u| doomed.binary_search(u).is_err())
            .collect();
        // Highest first, so each number still means what the client thinks
        // it means when it reads that line.
        for (i, _) in keep.iter().enumerate().rev().filter(|(_, k)| !**k) {
            out.extend_from_slice(format!("* {} EXPUNGE\r\n", i + 1).as_bytes());
        }
        // One pass, not one removal per message: expunging half of a large
        // mailbox must not be quadratic.
        let mut k = keep.iter();
        self.modseqs.retain(|_| *k.next().unwrap_or(&false));
        let mut k = keep.iter();
        self.flags.retain(|_| *k.next().unwrap_or(&false));
        self.uids.retain(|u| doomed.binary_search(u).is_err());
        self.keywords
            .retain(|u, _| doomed.binary_search(u).is_err());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::imap::response::flag_list;
    use crate::store::testing::{random_batch, temp_store, two_mailboxes, Lcg};

    /// What a client knows of the mailbox, kept only from the responses it
    /// was sent: the flags of each message by sequence number, where told.
    fn apply(client: &mut Vec<Option<String>>, out: &[u8]) {
        for line in std::str::from_utf8(out).unwrap().split_terminator("\r\n") {
            // New keywords are announced; nothing is \Recent here.
            if line.starts_with("* FLAGS ") || line.starts_with("* OK [PERMANENTFLAGS") {
                continue;
            }
            let words: Vec<&str> = line.splitn(4, ' ').collect();
            let n: usize = words[1].parse().unwrap();
            match words[2] {
                "EXPUNGE" => {
                    assert!(n >= 1 && n <= client.len(), "{line}");
                    client.remove(n - 1);
                }
                "EXISTS" => {
                    assert!(n >= client.len(), "EXISTS may not shrink: {line}");
                    client.resize(n, None);
                }
                "RECENT" => assert_eq!(n, 0, "{line}"),
                "FETCH" => {
                    let flags = &words[3][words[3].find("FLAGS ").unwrap() + 6..];
                    client[n - 1] = Some(flags.strip_suffix(')').unwrap().to_string());
                }
                _ => panic!("unexpected {line}"),
            }
        }
    }

    fn loaded(store: &crate::store::Store, mailbox: MailboxId) -> View {
        let snapshot = store.snapshot().unwrap();
        let (mut view, _) = View::open(&snapshot, mailbox, false).unwrap();
        view.load(&snapshot).unwrap();
        view
    }

    #[test]
    fn sync_keeps_a_client_in_step_with_the_store() {
        let (_dir, store) = temp_store();
        let mailboxes = two_mailboxes(&store);
        let inbox = mailboxes[0];
        let mut rng = Lcg(5);
        let change = |rng: &mut Lcg| random_batch(&store, &mailboxes, rng);
        for _ in 0..5 {
            change(&mut rng);
        }
        // SELECT, then changes before the messages are first read: the
        // view is loaded by the first sync, and must still report them.
        let (mut view, _) = View::open(&store.snapshot().unwrap(), inbox, false).unwrap();
        let mut client: Vec<Option<String>> = vec![None; view.exists() as usize];
        assert!(!client.is_empty());
        for round in 0..60 {
            if round % 7 == 6 {
                // SELECT again.
                let (again, _) = View::open(&store.snapshot().unwrap(), inbox, false).unwrap();
                view = again;
                client = vec![None; view.exists() as usize];
            }
            change(&mut rng);
            // Some commands may not report expunges (FETCH, STORE, SEARCH).
            let allow_expunge = rng.below(3) != 0;
            let mut out = Vec::new();
            view.sync(
                &store.snapshot().unwrap(),
                &mut out,
                allow_expunge,
                false,
                true,
                &mut |_| None,
            )
            .unwrap();
            apply(&mut client, &out);
            assert_eq!(client.len(), view.exists() as usize, "round {round}");
            if allow_expunge {
                // As a command would, before looking at the messages.
                view.load(&store.snapshot().unwrap()).unwrap();
                let fresh = loaded(&store, inbox);
                assert_eq!(view.uids, fresh.uids, "round {round}");
                assert_eq!(view.flags, fresh.flags, "round {round}");
            }
        }
        let mut out = Vec::new();
        view.sync(
            &store.snapshot().unwrap(),
            &mut out,
            true,
            false,
            true,
            &mut |_| None,
        )
        .unwrap();
        apply(&mut client, &out);
        assert!(view.vanished.is_empty());

        // The synced view and the client agree with a freshly opened view.
        let fresh = loaded(&store, inbox);
        assert!(fresh.exists() > 1000, "the changes should span chunks");
        assert_eq!(view.uids, fresh.uids);
        assert_eq!(view.modseqs, fresh.modseqs);
        assert_eq!(view.flags, fresh.flags);
        assert_eq!(view.keywords, fresh.keywords);
        assert_eq!(client.len(), fresh.uids.len());
        for (i, told) in client.iter().enumerate() {
            if let Some(told) = told {
                let (flags, keywords) = fresh.flags_at(i);
                let mut expected = Vec::new();
                flag_list(&mut expected, flags, keywords);
                assert_eq!(told.as_bytes(), expected.as_slice(), "message {}", i + 1);
            }
        }
    }
}
