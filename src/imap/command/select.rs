//! SELECT, EXAMINE and CLOSE.

use crate::imap::response::mailbox_name;
use crate::imap::session::{Session, State};
use crate::imap::view::View;
use crate::store::{StoreError, MAX_MAILBOX_KEYWORDS};

impl Session {
    pub(in crate::imap) fn select(&mut self, tag: &str, raw: &[u8], read_only: bool) {
        if matches!(self.state, State::Selected(_)) {
            // The old mailbox is closed first, whatever happens next.
            self.state = State::Authenticated;
            self.untagged("OK [CLOSED] Previous mailbox closed");
        }
        let name = match self.mailbox_arg(raw) {
            Ok(name) => name,
            Err(e) => return self.no_such_name(tag, &e),
        };
        let rev1 = !self.rev2;
        let opened = self.shared.store.snapshot().and_then(|snapshot| {
            let id = snapshot
                .mailbox_id(&self.user, &name)?
                .ok_or(StoreError::NoSuchMailbox)?;
            let (view, record) = View::open(&snapshot, id, read_only)?;
            let first_unseen = if rev1 && record.unseen > 0 {
                snapshot.first_unseen(id)?
            } else {
                None
            };
            Ok((view, record, first_unseen))
        });
        let (view, record, first_unseen) = match opened {
            Ok(opened) => opened,
            Err(e) => return self.store_failed(tag, &e),
        };
        let keyword_list: String = record.keywords.iter().map(|k| format!(" {k}")).collect();
        self.untagged(&format!(
            "FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft{keyword_list})"
        ));
        if read_only {
            self.untagged("OK [PERMANENTFLAGS ()] Read-only mailbox");
        } else {
            // `\*` only while the mailbox can take another keyword.
            let more = if record.keywords.len() < MAX_MAILBOX_KEYWORDS {
                " \\*"
            } else {
                ""
            };
            self.untagged(&format!(
                "OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft{keyword_list}{more})] Flags permitted"
            ));
        }
        self.untagged(&format!("{} EXISTS", view.exists()));
        if !self.rev2 {
            self.untagged("0 RECENT");
            if let Some(first) = first_unseen {
                self.untagged(&format!("OK [UNSEEN {first}] First unseen"));
            }
        }
        self.untagged(&format!(
            "OK [UIDVALIDITY {}] UIDs valid",
            view.uid_validity
        ));
        self.untagged(&format!(
            "OK [UIDNEXT {}] Predicted next UID",
            view.uid_next()
        ));
        if self.condstore {
            self.untagged(&format!(
                "OK [HIGHESTMODSEQ {}] Highest",
                view.highest_modseq()
            ));
        }
        if self.rev2 {
            let mut line = b"* LIST () \"/\" ".to_vec();
            mailbox_name(&mut line, &name, self.utf8);
            line.extend_from_slice(b"\r\n");
            self.out.extend_from_slice(&line);
        }
        let verb = if read_only {
            "[READ-ONLY] EXAMINE"
        } else {
            "[READ-WRITE] SELECT"
        };
        self.state = State::Selected(view);
        // RFC 5182 §2.1: `$` starts out empty in every newly selected mailbox.
        self.saved = None;
        self.ok(tag, &format!("{verb} completed"));
    }

    /// CLOSE: expunge what is marked \Deleted (silently), then deselect.
    pub(in crate::imap) async fn close(&mut self, tag: &str) {
        let State::Selected(view) = std::mem::replace(&mut self.state, State::Authenticated) else {
            return self.bad(tag, "No mailbox selected");
        };
        if !view.read_only {
            let mailbox = view.mailbox;
            let result = self
                .shared
                .store
                .write(move |tx| tx.expunge_deleted(mailbox, None))
                .await;
            match result {
                // Deleted under this session: nothing left to expunge, and
                // the mailbox is closed all the same.
                Ok(_) | Err(StoreError::NoSuchMailbox) => {}
                Err(e) => return self.store_failed(tag, &e),
            }
        }
        self.ok(tag, "CLOSE completed");
    }
}
