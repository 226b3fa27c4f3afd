//! The write operations `letterbox import` needs beyond delivery: taking
//! over a source mailbox's UIDVALIDITY, and storing a message under the UID
//! it had there. Both keep the writer's rule (check first, then change).

use redb::ReadableTable;

use super::ops::{keyword_room, Analysis};
use super::records::{Flags, MailboxRecord};
use super::{Change, MailboxId, StoreError, WriteCtx};

/// Which UID an imported message gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImportUid {
    /// The UID it had in the source; refused if the mailbox has passed it.
    Exact(u32),
    /// The mailbox's next UID, but at least `floor` (the source's UIDNEXT,
    /// so that a message the source had not numbered yet never takes a UID
    /// the source may have handed out).
    Fresh { floor: u32 },
}

impl WriteCtx<'_> {
    fn mailbox_record(&self, id: MailboxId) -> Result<MailboxRecord, StoreError> {
        let found = self.mailboxes.get(id)?;
        match found {
            Some(v) => MailboxRecord::decode(v.value()),
            None => Err(StoreError::NoSuchMailbox),
        }
    }

    /// Gives an empty mailbox the source's UIDVALIDITY, with UIDs starting
    /// again at 1: a client that synced with the old server then finds the
    /// same UIDVALIDITY and UIDs. Refused while the mailbox holds messages,
    /// whose UIDs would lose their meaning.
    pub fn adopt_uid_validity(
        &mut self,
        mailbox: MailboxId,
        uid_validity: u32,
    ) -> Result<(), StoreError> {
        let mut record = self.mailbox_record(mailbox)?;
        if record.exists != 0 {
            return Err(StoreError::Refused(format!(
                "mailbox {} holds messages; its UIDVALIDITY stays",
                record.name
            )));
        }
        if uid_validity == 0 {
            return Err(StoreError::Refused("UIDVALIDITY 0 is not valid".into()));
        }
        if record.uid_validity == uid_validity {
            return Ok(());
        }
        record.uid_validity = uid_validity;
        record.uid_next = 1;
        record.recent_horizon = 1;
        // MODSEQs never go back, whatever the UIDs do.
        record.highest_modseq += 1;
        self.mailboxes.insert(mailbox, record.encode().as_slice())?;
        self.changes.push(Change::Mailbox(mailbox));
        Ok(())
    }

    /// Raises a mailbox's UIDNEXT to `uid_next` (never lowers it): the
    /// source's UIDNEXT, so that UIDs it handed out for messages since
    /// expunged are not handed out again here.
    pub fn raise_uid_next(&mut self, mailbox: MailboxId, uid_next: u32) -> Result<(), StoreError> {
        let mut record = self.mailbox_record(mailbox)?;
        if uid_next > record.uid_next && uid_next < u32::MAX {
            record.uid_next = uid_next;
            self.mailboxes.insert(mailbox, record.encode().as_slice())?;
        }
        Ok(())
    }

    /// Stores an imported message in `mailbox` under the UID `uid` asks
    /// for; returns the UID it got.
    #[allow(clippy::too_many_arguments)]
    pub fn import_message(
        &mut self,
        mailbox: MailboxId,
        uid: ImportUid,
        raw: &[u8],
        analysis: &Analysis,
        flags: Flags,
        keywords: Vec<String>,
        internal_date: (i64, i16),
    ) -> Result<u32, StoreError> {
        let mut record = self.mailbox_record(mailbox)?;
        let next = match uid {
            ImportUid::Exact(wanted) if wanted < record.uid_next || wanted == 0 => {
                return Err(StoreError::Refused(format!(
                    "UID {wanted} is already used in {}",
                    record.name
                )))
            }
            ImportUid::Exact(wanted) => wanted,
            ImportUid::Fresh { floor } => record.uid_next.max(floor),
        };
        if next == u32::MAX {
            return Err(StoreError::Storage("mailbox has used up its UIDs".into()));
        }
        keyword_room(&record, &keywords)?;
        if next != record.uid_next {
            record.uid_next = next;
            self.mailboxes.insert(mailbox, record.encode().as_slice())?;
        }
        // Only the flags a client can see come in; letterbox's own stay off.
        let flags = flags.without(Flags::POP3_HIDDEN);
        self.append_message(mailbox, raw, analysis, flags, keywords, internal_date)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing::temp_store;

    #[test]
    fn adopts_uids_and_refuses_clashes() {
        let (_dir, store) = temp_store();
        let inbox = store.write_blocking(|tx| tx.ensure_user("a")).unwrap();
        let uids = store
            .write_blocking(move |tx| {
                tx.adopt_uid_validity(inbox, 1234)?;
                let a = tx.import_message(
                    inbox,
                    ImportUid::Exact(7),
                    b"Subject: a\r\n\r\n",
                    &Analysis::default(),
                    Flags::SEEN,
                    vec!["work".into()],
                    (5, 0),
                )?;
                let b = tx.import_message(
                    inbox,
                    ImportUid::Fresh { floor: 20 },
                    b"Subject: b\r\n\r\n",
                    &Analysis::default(),
                    Flags::default(),
                    vec![],
                    (5, 0),
                )?;
                tx.raise_uid_next(inbox, 30)?;
                Ok((a, b))
            })
            .unwrap();
        assert_eq!(uids, (7, 20));
        let record = store.snapshot().unwrap().mailbox(inbox).unwrap().unwrap();
        assert_eq!(
            (record.uid_validity, record.uid_next, record.exists),
            (1234, 30, 2)
        );
        assert!(matches!(
            store.write_blocking(move |tx| tx.adopt_uid_validity(inbox, 99)),
            Err(StoreError::Refused(_))
        ));
        assert!(matches!(
            store.write_blocking(move |tx| tx.import_message(
                inbox,
                ImportUid::Exact(7),
                b"x",
                &Analysis::default(),
                Flags::default(),
                vec![],
                (0, 0)
            )),
            Err(StoreError::Refused(_))
        ));
        store.shutdown();
    }
}
