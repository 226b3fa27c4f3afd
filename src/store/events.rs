//! Change events: what a commit changed, fanned out on the event loop to the
//! sessions watching it (IMAP IDLE and NOOP, and anything else that must
//! notice another session's or a delivery's work).
//!
//! Events say only *which* mailbox changed. A woken session re-reads the
//! store and works out the difference against its own view, so an event can
//! never be misapplied and a missed one costs nothing but latency.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use event_listener::{Event, EventListener};

use super::MailboxId;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// Messages arrived, flags changed, or messages were expunged.
    Mailbox(MailboxId),
    /// A user's mailbox list changed (created, deleted, renamed).
    MailboxList(String),
}

/// Lives on the event loop; never crosses threads.
#[derive(Default)]
pub struct Hub {
    mailboxes: RefCell<HashMap<MailboxId, Rc<Event>>>,
    /// Per user, for whoever follows a user's folder list (the web
    /// interface's event stream).
    users: RefCell<HashMap<String, Rc<Event>>>,
}

impl Hub {
    /// Registers interest in a mailbox. Take the listener *before* reading the
    /// store, so a change committed in between still wakes it.
    pub fn listen(&self, mailbox: MailboxId) -> EventListener {
        let mut map = self.mailboxes.borrow_mut();
        map.entry(mailbox).or_default().listen()
    }

    /// Registers interest in a user's mailbox list (created, deleted,
    /// renamed mailboxes). Same rule: listen first, then read.
    pub fn listen_user(&self, user: &str) -> EventListener {
        let mut map = self.users.borrow_mut();
        match map.get(user) {
            Some(event) => event.listen(),
            None => map.entry(user.to_string()).or_default().listen(),
        }
    }

    pub fn publish(&self, changes: &[Change]) {
        let mut map = self.mailboxes.borrow_mut();
        let mut users = self.users.borrow_mut();
        for change in changes {
            match change {
                Change::Mailbox(id) => {
                    if let Some(event) = map.get(id) {
                        event.notify(usize::MAX);
                    }
                }
                Change::MailboxList(user) => {
                    if let Some(event) = users.get(user) {
                        event.notify(usize::MAX);
                    }
                }
            }
        }
        // Forget mailboxes nobody listens to any more, so the map stays as
        // small as the set of open sessions.
        map.retain(|_, event| event.total_listeners() > 0);
        users.retain(|_, event| event.total_listeners() > 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wakes_only_listeners_of_the_changed_mailbox() {
        let hub = Hub::default();
        let one = hub.listen(1);
        let two = hub.listen(2);
        hub.publish(&[Change::Mailbox(1)]);
        assert!(smol::future::block_on(smol::future::poll_once(one)).is_some());
        assert!(smol::future::block_on(smol::future::poll_once(two)).is_none());
    }

    #[test]
    fn wakes_listeners_of_a_users_mailbox_list() {
        let hub = Hub::default();
        let alice = hub.listen_user("alice");
        let bob = hub.listen_user("bob");
        hub.publish(&[Change::MailboxList("alice".into())]);
        assert!(smol::future::block_on(smol::future::poll_once(alice)).is_some());
        assert!(smol::future::block_on(smol::future::poll_once(bob)).is_none());
    }
}
