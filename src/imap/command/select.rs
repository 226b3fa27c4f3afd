//! SELECT, EXAMINE and CLOSE.

use crate::imap::response::{flags_announcement, mailbox_name};
use crate::imap::session::{claims_recent, Session, State};
use crate::imap::view::View;
use crate::store::StoreError;

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
        let claims = claims_recent(self.rev2, read_only);
        let shared = self.shared.clone();
        let mut claimed_to = None;
        // Taken before the snapshot: until the view pins the expunge records
        // it will read at its first load, none may be pruned.
        let hold = self.shared.store.hold_expunges();
        let opened = self.shared.store.snapshot().and_then(|snapshot| {
            let id = snapshot
                .mailbox_id(&self.user, &name)?
                .ok_or(StoreError::NoSuchMailbox)?;
            let (mut view, record) = View::open(&snapshot, id, read_only)?;
            view.keep_expunges(hold.pin(id, record.highest_modseq));
            let first_unseen = if rev1 && record.unseen > 0 {
                snapshot.first_unseen(id)?
            } else {
                None
            };
            // \Recent (rev1 only): SELECT takes what no session has seen
            // yet; EXAMINE shows it without taking it.
            let mut recent = 0;
            if claims {
                if let Some(claimed) =
                    shared.claim_recent(id, record.recent_horizon, record.uid_next)
                {
                    recent = snapshot.count_from(id, claimed.start)?;
                    claimed_to = Some((id, claimed.end));
                    view.add_recent(claimed);
                }
            } else if rev1 {
                let horizon = shared.recent_horizon(id, record.recent_horizon);
                recent = snapshot.count_from(id, horizon)?;
                view.add_recent(horizon..u32::MAX);
            }
            Ok((view, record, first_unseen, recent))
        });
        drop(hold);
        let (view, record, first_unseen, recent) = match opened {
            Ok(opened) => opened,
            Err(e) => return self.store_failed(tag, &e),
        };
        flags_announcement(&mut self.out, &record.keywords, read_only);
        self.untagged(&format!("{} EXISTS", view.exists()));
        if !self.rev2 {
            self.untagged(&format!("{recent} RECENT"));
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
        if let Some((mailbox, end)) = claimed_to {
            self.recent_claimed(mailbox, end);
        }
        self.state = State::Selected(Box::new(view));
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
