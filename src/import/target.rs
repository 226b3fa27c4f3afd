//! The store's side of an import: where each message goes and under which
//! UID, or whether it is already there.
//!
//! Per mailbox, one of three ways:
//! - **Keep**: the source has UIDs, and the target mailbox is empty (it then
//!   takes the source's UIDVALIDITY) or already has that UIDVALIDITY (an
//!   import run before). Messages keep their UIDs; a UID below the target's
//!   UIDNEXT is already there (or was expunged since), and is skipped,
//!   unless a message of another size has it (a delivery between an
//!   interrupted import and its rerun): from there on, Renumber.
//! - **Renumber**: the source has UIDs but the target holds other mail. The
//!   messages get new UIDs, and are counted and reported as renumbered.
//! - **Fresh**: the source has no UIDs (most mbox files).
//!
//! Whatever is not skipped by UID is looked for by Message-ID and size
//! ([`super::Identity`]), so a second run adds nothing either way.
//!
//! Messages are stored in batches of a few MiB, one writer job and one
//! commit each, through the store's writer: the change events fire as for
//! any delivery.

use std::collections::HashSet;

use super::{
    valid_keyword, valid_mailbox_name, Identity, Item, SourceMessage, SourceUids, Tally,
    IDENTITY_BYTES,
};
use crate::store::{Analysis, Flags, ImportUid, MailboxId, Store, StoreError};

/// A batch is committed when it holds this many bytes or messages.
const BATCH_BYTES: usize = 4 << 20;
const BATCH_MESSAGES: usize = 256;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Keep,
    Renumber,
    Fresh,
}

struct Current {
    id: MailboxId,
    name: String,
    mode: Mode,
    source: Option<SourceUids>,
    /// The target's UIDNEXT when this import reached the mailbox: UIDs
    /// below it were there before.
    uid_next_before: u32,
    /// The highest UID kept so far in this run, plus one.
    uid_next_now: u32,
    /// The identities of the messages already there, read when first
    /// needed.
    present: Option<HashSet<Identity>>,
}

struct Ready {
    label: String,
    uid: ImportUid,
    renumbered: bool,
    raw: Vec<u8>,
    analysis: Analysis,
    flags: Flags,
    keywords: Vec<String>,
    date: i64,
}

pub struct Importer {
    store: Store,
    user: String,
    limit: usize,
    tally: Tally,
    current: Option<Current>,
    batch: Vec<Ready>,
    batch_bytes: usize,
    /// The batch the writer has and has not yet answered for.
    in_flight: Option<(Written, Vec<(String, bool)>)>,
}

impl Importer {
    /// Imports into `user`'s mailboxes (created as delivery would, if the
    /// user has none yet); messages over `limit` bytes are refused.
    pub fn new(store: Store, user: &str, limit: usize) -> Importer {
        Importer {
            store,
            user: user.to_string(),
            limit,
            tally: Tally::default(),
            current: None,
            batch: Vec::new(),
            batch_bytes: 0,
            in_flight: None,
        }
    }

    /// Takes one item; `say` hears of each message that fails, with its
    /// file. An error means the store itself is failing.
    pub fn handle(&mut self, item: Item, say: &mut dyn FnMut(String)) -> Result<(), String> {
        match item {
            Item::Mailbox { name, uids } => {
                self.finish_mailbox(true, say)?;
                self.begin_mailbox(name, uids, say)
            }
            Item::Message(message) => self.message(message, say),
            Item::Subscribe(name) => {
                if !valid_mailbox_name(&name) {
                    say(format!(
                        "subscription {name:?}: not a valid mailbox name; skipped"
                    ));
                    return Ok(());
                }
                let user = self.user.clone();
                self.store
                    .write_blocking(move |tx| tx.set_subscribed(&user, &name, true))
                    .map_err(|e| format!("storing a subscription: {e}"))
            }
        }
    }

    /// Stores what is still waiting; returns the counts. `complete`: the
    /// source was read to its end. When it was not (the command was
    /// interrupted), the last mailbox keeps its UIDNEXT where its last
    /// message left it, so that running the import again brings the rest
    /// under their own UIDs.
    pub fn finish(mut self, complete: bool, say: &mut dyn FnMut(String)) -> Result<Tally, String> {
        self.finish_mailbox(complete, say)?;
        Ok(self.tally)
    }

    /// Counts a message the source side could not read (already reported).
    pub fn count_failed(&mut self, n: u64) {
        self.tally.failed += n;
    }

    fn begin_mailbox(
        &mut self,
        name: String,
        source: Option<SourceUids>,
        say: &mut dyn FnMut(String),
    ) -> Result<(), String> {
        if !valid_mailbox_name(&name) {
            say(format!(
                "mailbox {name:?}: not a valid mailbox name; its messages are skipped"
            ));
            return Ok(());
        }
        let user = self.user.clone();
        let wanted = name.clone();
        let outcome = self.store.write_blocking(move |tx| {
            tx.ensure_user(&user)?;
            let id = match tx.mailbox_id(&user, &wanted)? {
                Some(id) => id,
                None => tx.create_mailbox(&user, &wanted, None)?,
            };
            Ok(id)
        });
        let id = match outcome {
            Ok(id) => id,
            Err(e) => {
                say(format!("mailbox {name}: {e}; its messages are skipped"));
                return Ok(());
            }
        };
        let record = self
            .store
            .snapshot()
            .and_then(|s| s.mailbox(id))
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("mailbox {name} vanished"))?;
        let mut uid_next = record.uid_next;
        let mode = match source {
            None => Mode::Fresh,
            Some(s) if s.uid_validity == record.uid_validity => Mode::Keep,
            Some(s) if record.exists == 0 => {
                self.store
                    .write_blocking(move |tx| tx.adopt_uid_validity(id, s.uid_validity))
                    .map_err(|e| format!("mailbox {name}: {e}"))?;
                uid_next = 1;
                Mode::Keep
            }
            Some(s) => {
                say(format!(
                    "mailbox {name} already holds {} other messages (UIDVALIDITY {}, the source's is {}): \
                     the imported messages get new UIDs, and clients download them again",
                    record.exists, record.uid_validity, s.uid_validity
                ));
                Mode::Renumber
            }
        };
        self.current = Some(Current {
            id,
            name,
            mode,
            source,
            uid_next_before: uid_next,
            uid_next_now: uid_next,
            present: None,
        });
        Ok(())
    }

    fn finish_mailbox(
        &mut self,
        complete: bool,
        say: &mut dyn FnMut(String),
    ) -> Result<(), String> {
        self.flush(say)?;
        self.settle(say)?;
        if let Some(current) = self.current.take() {
            if let (Mode::Keep, Some(source), true) = (current.mode, current.source, complete) {
                let id = current.id;
                self.store
                    .write_blocking(move |tx| tx.raise_uid_next(id, source.uid_next))
                    .map_err(|e| format!("mailbox {}: {e}", current.name))?;
            }
        }
        Ok(())
    }

    fn message(
        &mut self,
        message: SourceMessage,
        say: &mut dyn FnMut(String),
    ) -> Result<(), String> {
        let Some(current) = self.current.as_mut() else {
            self.tally.failed += 1;
            say(format!(
                "{}: its mailbox could not be made; skipped",
                message.label
            ));
            return Ok(());
        };
        if message.raw.len() > self.limit {
            self.tally.failed += 1;
            say(format!(
                "{}: {} bytes, more than the largest message accepted ({} bytes); skipped",
                message.label,
                message.raw.len(),
                self.limit
            ));
            return Ok(());
        }
        if current.present.is_none()
            && !matches!((current.mode, message.uid), (Mode::Keep, Some(_)))
        {
            // The identities are read from the store: what this run sent
            // the writer must be there first.
            self.settle(say)?;
        }
        let Some(current) = self.current.as_mut() else {
            return Ok(());
        };
        let has_source_uids = current.source.is_some();
        let kept_uid = match (current.mode, message.uid) {
            (Mode::Keep, Some(uid)) if uid < current.uid_next_before => {
                // Below the UIDNEXT the mailbox had: imported before (and
                // perhaps expunged since), unless another message took the
                // UID meanwhile (an interrupted import, then a delivery).
                let there = self
                    .store
                    .snapshot()
                    .and_then(|s| s.message(current.id, uid))
                    .map_err(|e| format!("mailbox {}: {e}", current.name))?;
                match there {
                    Some(other) if other.size as usize != message.raw.len() => {
                        say(format!(
                            "mailbox {}: UID {uid} is another message's here; {} and the \
                             messages after it get new UIDs",
                            current.name, message.label
                        ));
                        current.mode = Mode::Renumber;
                        None
                    }
                    _ => {
                        self.tally.skipped += 1;
                        return Ok(());
                    }
                }
            }
            (Mode::Keep, Some(uid)) if uid >= current.uid_next_now && uid < u32::MAX => Some(uid),
            _ => None,
        };
        let uid = match kept_uid {
            Some(uid) => {
                current.uid_next_now = uid + 1;
                ImportUid::Exact(uid)
            }
            None => {
                if already_there(&self.store, current, &message.raw)? {
                    self.tally.skipped += 1;
                    return Ok(());
                }
                let floor = match (current.mode, current.source) {
                    (Mode::Keep, Some(source)) => source.uid_next.max(current.uid_next_now),
                    _ => 0,
                };
                ImportUid::Fresh { floor }
            }
        };
        // A UID counts only with its UIDVALIDITY: an mbox's X-UID without
        // X-IMAPbase promised a client nothing.
        let renumbered = message.uid.is_some() && kept_uid.is_none() && has_source_uids;
        let analysis = crate::services::analysis_of(&message.raw);
        let keywords = message
            .keywords
            .into_iter()
            .filter(|k| valid_keyword(k))
            .collect();
        // Only the system flags a client sets come in; letterbox's own
        // (POP3's hidden mark) never come from outside.
        let client_flags = [
            Flags::SEEN,
            Flags::ANSWERED,
            Flags::FLAGGED,
            Flags::DELETED,
            Flags::DRAFT,
        ];
        let flags = client_flags
            .into_iter()
            .filter(|&f| message.flags.contains(f))
            .fold(Flags::default(), Flags::with);
        self.batch_bytes += message.raw.len();
        self.batch.push(Ready {
            label: message.label,
            uid,
            renumbered,
            raw: message.raw,
            analysis,
            flags,
            keywords,
            date: message.date,
        });
        if self.batch_bytes >= BATCH_BYTES || self.batch.len() >= BATCH_MESSAGES {
            self.flush(say)?;
        }
        Ok(())
    }

    /// Hands the batch to the writer as one job (one commit, one fsync) and
    /// goes on without waiting for it: the next batch is read and analysed
    /// while this one is written. At most one is in flight.
    fn flush(&mut self, say: &mut dyn FnMut(String)) -> Result<(), String> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let Some(current) = self.current.as_ref() else {
            return Ok(());
        };
        let id = current.id;
        self.settle(say)?;
        // New mail waits while the disk is down to its reserve; an import
        // is new mail too, and stops with the reason.
        if let Err(e) = self.store.room_for_new_mail() {
            self.tally.failed += self.batch.len() as u64;
            self.batch.clear();
            return Err(format!("storing messages: {e}"));
        }
        let batch = std::mem::take(&mut self.batch);
        self.batch_bytes = 0;
        let labels: Vec<(String, bool)> = batch
            .iter()
            .map(|r| (r.label.clone(), r.renumbered))
            .collect();
        let store = self.store.clone();
        let mut written: Written = Box::pin(async move {
            store
                .write(move |tx| {
                    let mut results = Vec::with_capacity(batch.len());
                    for ready in batch {
                        results.push(tx.import_message(
                            id,
                            ready.uid,
                            &ready.raw,
                            &ready.analysis,
                            ready.flags,
                            ready.keywords,
                            (ready.date, 0),
                        ));
                    }
                    Ok(results)
                })
                .await
        });
        // The first poll queues the job with the writer, in order.
        match smol::block_on(smol::future::poll_once(&mut written)) {
            Some(outcome) => self.account(outcome, labels, say),
            None => {
                self.in_flight = Some((written, labels));
                Ok(())
            }
        }
    }

    /// Waits for the batch in flight, if any, and counts its outcome.
    fn settle(&mut self, say: &mut dyn FnMut(String)) -> Result<(), String> {
        match self.in_flight.take() {
            Some((written, labels)) => {
                let outcome = smol::block_on(written);
                self.account(outcome, labels, say)
            }
            None => Ok(()),
        }
    }

    fn account(
        &mut self,
        outcome: Result<Vec<Result<u32, StoreError>>, StoreError>,
        labels: Vec<(String, bool)>,
        say: &mut dyn FnMut(String),
    ) -> Result<(), String> {
        match outcome {
            Ok(results) => {
                for ((label, renumbered), result) in labels.into_iter().zip(results) {
                    match result {
                        Ok(_) => {
                            self.tally.imported += 1;
                            if renumbered {
                                self.tally.renumbered += 1;
                            }
                        }
                        Err(e) => {
                            self.tally.failed += 1;
                            say(format!("{label}: {e}; skipped"));
                        }
                    }
                }
                Ok(())
            }
            Err(e @ (StoreError::LowOnSpace | StoreError::Closed)) => {
                self.tally.failed += labels.len() as u64;
                Err(format!("storing messages: {e}"))
            }
            Err(e) => {
                self.tally.failed += labels.len() as u64;
                say(format!("storing {} messages failed: {e}", labels.len()));
                Ok(())
            }
        }
    }
}

/// A batch's job with the writer: each message's outcome, once committed.
type Written = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<Vec<Result<u32, StoreError>>, StoreError>> + Send>,
>;

/// Whether a message with this identity is in the mailbox already.
fn already_there(store: &Store, current: &mut Current, raw: &[u8]) -> Result<bool, String> {
    if current.present.is_none() {
        current.present = Some(
            identities(store, current.id).map_err(|e| format!("mailbox {}: {e}", current.name))?,
        );
    }
    let identity = Identity::of(raw, raw.len() as u64);
    Ok(current
        .present
        .as_ref()
        .is_some_and(|p| p.contains(&identity)))
}

/// The identities of a mailbox's messages, from the start of each.
fn identities(store: &Store, mailbox: MailboxId) -> Result<HashSet<Identity>, StoreError> {
    let snapshot = store.snapshot()?;
    let content = snapshot.content()?;
    let mut out = HashSet::new();
    for (_, message) in snapshot.messages(mailbox)? {
        let head = content.blob_range(message.blob, 0..IDENTITY_BYTES as u64)?;
        out.insert(Identity::of(&head, u64::from(message.size)));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing::temp_store;

    fn numbered(uid: u32) -> Item {
        Item::Message(SourceMessage {
            label: format!("file {uid}"),
            uid: Some(uid),
            flags: Flags::SEEN,
            keywords: vec!["work".into()],
            date: 1_700_000_000,
            raw: format!("Subject: {uid}\r\nMessage-ID: <{uid}@x>\r\n\r\nbody\r\n").into_bytes(),
        })
    }

    fn mailbox() -> Item {
        Item::Mailbox {
            name: "INBOX".into(),
            uids: Some(SourceUids {
                uid_validity: 777,
                uid_next: 100,
            }),
        }
    }

    #[test]
    fn an_interrupted_import_resumes_under_the_same_uids() {
        let (_dir, store) = temp_store();
        let mut say = |text: String| panic!("unexpected: {text}");
        let mut first = Importer::new(store.clone(), "u", 1 << 20);
        for item in [mailbox(), numbered(3), numbered(8)] {
            first.handle(item, &mut say).unwrap();
        }
        // Cut off before UID 20: UIDNEXT stays behind it.
        let tally = first.finish(false, &mut say).unwrap();
        assert_eq!((tally.imported, tally.skipped), (2, 0));
        let mut second = Importer::new(store.clone(), "u", 1 << 20);
        for item in [mailbox(), numbered(3), numbered(8), numbered(20)] {
            second.handle(item, &mut say).unwrap();
        }
        let tally = second.finish(true, &mut say).unwrap();
        assert_eq!((tally.imported, tally.skipped, tally.renumbered), (1, 2, 0));
        let snapshot = store.snapshot().unwrap();
        let inbox = snapshot.mailbox_id("u", "INBOX").unwrap().unwrap();
        let uids: Vec<u32> = snapshot
            .messages(inbox)
            .unwrap()
            .iter()
            .map(|m| m.0)
            .collect();
        assert_eq!(uids, [3, 8, 20]);
        let record = snapshot.mailbox(inbox).unwrap().unwrap();
        assert_eq!((record.uid_validity, record.uid_next), (777, 100));
        let message = snapshot.message(inbox, 8).unwrap().unwrap();
        assert_eq!(message.keywords, ["work"]);
        assert!(message.flags.contains(Flags::SEEN));
        drop(snapshot);
        store.shutdown();
    }

    #[test]
    fn a_uid_taken_meanwhile_renumbers_the_rest_and_fails_nothing() {
        let (_dir, store) = temp_store();
        let mut said = Vec::new();
        let mut first = Importer::new(store.clone(), "u", 1 << 20);
        for item in [mailbox(), numbered(3)] {
            first.handle(item, &mut |t| said.push(t)).unwrap();
        }
        first.finish(false, &mut |t| said.push(t)).unwrap();
        // A delivery between the two runs takes UID 4.
        let inbox = store.write_blocking(|tx| tx.ensure_user("u")).unwrap();
        store
            .write_blocking(move |tx| {
                tx.append_message(
                    inbox,
                    b"Subject: delivered\r\n\r\n",
                    &Analysis::default(),
                    Flags::default(),
                    vec![],
                    (0, 0),
                )
            })
            .unwrap();
        let mut second = Importer::new(store.clone(), "u", 1 << 20);
        for item in [mailbox(), numbered(3), numbered(4), numbered(5)] {
            second.handle(item, &mut |t| said.push(t)).unwrap();
        }
        let tally = second.finish(true, &mut |t| said.push(t)).unwrap();
        assert_eq!(
            (
                tally.imported,
                tally.skipped,
                tally.failed,
                tally.renumbered
            ),
            (2, 1, 0, 2)
        );
        assert!(
            said.iter().any(|t| t.contains("UID 4 is another message")),
            "{said:?}"
        );
        let snapshot = store.snapshot().unwrap();
        let uids: Vec<u32> = snapshot
            .messages(inbox)
            .unwrap()
            .iter()
            .map(|m| m.0)
            .collect();
        assert_eq!(uids, [3, 4, 5, 6]);
        drop(snapshot);
        store.shutdown();
    }
}
