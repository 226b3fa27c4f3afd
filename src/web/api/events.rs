//! `/api/events`: server-sent events from the hub that drives IMAP IDLE.
//!
//! A stream keeps only ids and counters: the user's folder ids with each
//! one's name, MODSEQ and counts. Woken by the hub (the user's folder list
//! or any of their folders changed), it reads the folder records again,
//! compares, and says which changed; the page fetches what it shows. Like
//! IDLE, it listens before it reads, so no change falls between the two.

use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::Poll;
use std::time::Duration;

use event_listener::EventListener;
use smol::Timer;

use super::{store_error, Response};
use crate::services::Shared;
use crate::store::{MailboxId, StoreError};
use crate::web::Body;

/// A comment line this often keeps proxies and NAT from closing the stream.
pub const KEEPALIVE: Duration = Duration::from_secs(25);

/// What the stream remembers of one folder.
#[derive(PartialEq, Eq)]
struct Known {
    id: MailboxId,
    name: String,
    modseq: u64,
    exists: u32,
    unseen: u32,
}

struct Watch {
    shared: Rc<Shared>,
    user: String,
    known: Vec<Known>,
}

impl Watch {
    fn read(&self) -> Result<Vec<Known>, StoreError> {
        Ok(self
            .shared
            .store
            .snapshot()?
            .mailboxes(&self.user)?
            .into_iter()
            .map(|(id, r)| Known {
                id,
                name: r.name,
                modseq: r.highest_modseq,
                exists: r.exists,
                unseen: r.unseen,
            })
            .collect())
    }

    /// The next piece of the stream: events, or a keepalive; None ends it
    /// (the store failed; the page's EventSource reconnects).
    async fn next(&mut self) -> Option<Vec<u8>> {
        loop {
            let mut listeners = Vec::with_capacity(self.known.len() + 1);
            listeners.push(self.shared.hub.listen_user(&self.user));
            for folder in &self.known {
                listeners.push(self.shared.hub.listen(folder.id));
            }
            let current = match self.read() {
                Ok(current) => current,
                Err(e) => {
                    log::error!("web: event stream of {}: {e}", self.user);
                    return None;
                }
            };
            let out = differences(&self.known, &current);
            self.known = current;
            if !out.is_empty() {
                return Some(out);
            }
            if !woken(listeners, KEEPALIVE).await {
                return Some(b": keepalive\n\n".to_vec());
            }
        }
    }
}

/// The events that tell a page what changed from `old` to `new`.
fn differences(old: &[Known], new: &[Known]) -> Vec<u8> {
    let mut out = Vec::new();
    let same_list = old.len() == new.len()
        && old
            .iter()
            .zip(new)
            .all(|(a, b)| a.id == b.id && a.name == b.name);
    if !same_list {
        out.extend_from_slice(b"event: folders\ndata: {}\n\n");
    }
    for folder in new {
        if let Some(before) = old.iter().find(|k| k.id == folder.id) {
            if before != folder {
                out.extend_from_slice(
                    format!("event: folder\ndata: {{\"id\":{}}}\n\n", folder.id).as_bytes(),
                );
            }
        }
    }
    out
}

/// Waits for any listener, or the time out; true when woken.
async fn woken(mut listeners: Vec<EventListener>, timeout: Duration) -> bool {
    let any = std::future::poll_fn(move |cx| {
        for listener in listeners.iter_mut() {
            if Pin::new(listener).poll(cx).is_ready() {
                return Poll::Ready(true);
            }
        }
        Poll::Pending
    });
    smol::future::or(any, async {
        Timer::after(timeout).await;
        false
    })
    .await
}

pub fn stream(shared: Rc<Shared>, user: String) -> Response {
    let mut watch = Watch {
        shared,
        user,
        known: Vec::new(),
    };
    // The first read sets what later changes are compared with.
    watch.known = match watch.read() {
        Ok(known) => known,
        Err(e) => return store_error(&e),
    };
    // A first line at once, so the page knows the stream is open.
    let opening = smol::stream::once(b"retry: 3000\n: open\n\n".to_vec());
    let changes = smol::stream::unfold(watch, |mut watch| async move {
        let piece = watch.next().await?;
        Some((piece, watch))
    });
    Response {
        status: 200,
        content_type: "text/event-stream",
        // nginx would otherwise hold the events back in its buffer.
        headers: vec![("X-Accel-Buffering", "no".to_string())],
        body: Body::Stream(Box::pin(smol::stream::StreamExt::chain(opening, changes))),
    }
}
