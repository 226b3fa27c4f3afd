//! The memory budget for incoming message bodies (`--memory-budget`).
//!
//! Every body on its way in holds a [`Reservation`] for the memory it
//! occupies: a small one while its bytes arrive (they go to a [`Spool`],
//! which keeps at most [`SPOOL_THRESHOLD`] in memory), then one for the whole
//! message while it is analysed and written to the store. Reservations are
//! granted first come, first served, so a large message is not starved by a
//! stream of small ones. A protocol asks with a deadline before it lets the
//! client send (no `+`, no `354`), and refuses for now when the deadline
//! passes; the reservation for analysis and storing is waited for without
//! one, since whoever holds it is working, not waiting on a client.
//!
//! [`Spool`]: super::spool::Spool
//! [`SPOOL_THRESHOLD`]: super::spool::SPOOL_THRESHOLD

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;
use std::time::Duration;

use event_listener::Event;
use smol::Timer;

/// What a message of `size` bytes costs in memory while it is analysed and
/// stored: the bytes, and about as much again for what MIME analysis decodes
/// and the writer copies into chunks.
pub fn in_memory_cost(size: u64) -> u64 {
    size.saturating_mul(2)
}

/// A shared budget of bytes. Cheap to clone; lives on the event loop.
#[derive(Clone)]
pub struct Budget {
    inner: Rc<Inner>,
}

struct Inner {
    capacity: u64,
    state: RefCell<State>,
    /// Woken whenever bytes are given back or the queue's head changes.
    changed: Event,
}

#[derive(Default)]
struct State {
    used: u64,
    /// Tickets of the waiting reservations, oldest first.
    queue: VecDeque<u64>,
    next_ticket: u64,
}

/// Bytes taken from a [`Budget`], given back on drop.
pub struct Reservation {
    budget: Budget,
    bytes: u64,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let mut state = self.budget.inner.state.borrow_mut();
        state.used = state.used.saturating_sub(self.bytes);
        drop(state);
        self.budget.inner.changed.notify(usize::MAX);
    }
}

impl Budget {
    pub fn new(capacity: u64) -> Budget {
        Budget {
            inner: Rc::new(Inner {
                capacity: capacity.max(1),
                state: RefCell::new(State::default()),
                changed: Event::new(),
            }),
        }
    }

    pub fn capacity(&self) -> u64 {
        self.inner.capacity
    }

    /// Bytes reserved now.
    pub fn used(&self) -> u64 {
        self.inner.state.borrow().used
    }

    /// Takes `bytes` (at most the whole budget, so that one message larger
    /// than the budget still goes through, alone), waiting in line for them.
    /// With a `deadline`, gives up and returns None once it has passed.
    pub async fn reserve(&self, bytes: u64, deadline: Option<Duration>) -> Option<Reservation> {
        let bytes = bytes.min(self.inner.capacity);
        let ticket = {
            let mut state = self.inner.state.borrow_mut();
            let ticket = state.next_ticket;
            state.next_ticket += 1;
            state.queue.push_back(ticket);
            ticket
        };
        // Dropping the future (the connection went away) leaves the line.
        let mut in_line = InLine {
            budget: self,
            ticket,
            granted: false,
        };
        let timer = deadline.map(Timer::after);
        let mut timer = std::pin::pin!(async move {
            match timer {
                Some(t) => {
                    t.await;
                }
                None => std::future::pending::<()>().await,
            }
        });
        loop {
            if in_line.try_take(bytes) {
                return Some(Reservation {
                    budget: self.clone(),
                    bytes,
                });
            }
            let listener = self.inner.changed.listen();
            if in_line.try_take(bytes) {
                return Some(Reservation {
                    budget: self.clone(),
                    bytes,
                });
            }
            let woke = smol::future::or(
                async {
                    listener.await;
                    true
                },
                async {
                    (&mut timer).await;
                    false
                },
            )
            .await;
            if !woke {
                return None;
            }
        }
    }
}

/// A place in the budget's line; leaves it on drop unless granted.
struct InLine<'a> {
    budget: &'a Budget,
    ticket: u64,
    granted: bool,
}

impl InLine<'_> {
    fn try_take(&mut self, bytes: u64) -> bool {
        let inner = &self.budget.inner;
        let mut state = inner.state.borrow_mut();
        if state.queue.front() != Some(&self.ticket) || state.used + bytes > inner.capacity {
            return false;
        }
        state.queue.pop_front();
        state.used += bytes;
        self.granted = true;
        drop(state);
        // The next in line may fit too.
        inner.changed.notify(usize::MAX);
        true
    }
}

impl Drop for InLine<'_> {
    fn drop(&mut self) {
        if self.granted {
            return;
        }
        let inner = &self.budget.inner;
        inner.state.borrow_mut().queue.retain(|&t| t != self.ticket);
        inner.changed.notify(usize::MAX);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grants_in_order_and_gives_back_on_drop() {
        let ex = smol::LocalExecutor::new();
        smol::block_on(ex.run(async {
            let budget = Budget::new(100);
            let a = budget.reserve(60, None).await.unwrap();
            assert_eq!(budget.used(), 60);
            // Does not fit: times out and leaves the line.
            assert!(budget
                .reserve(50, Some(Duration::from_millis(20)))
                .await
                .is_none());
            // A request larger than the budget is cut to the whole budget.
            let big = budget.clone();
            let waiter = ex.spawn(async move { big.reserve(1000, None).await.map(|r| r.bytes) });
            smol::Timer::after(Duration::from_millis(20)).await;
            // The big one is first in line: a small request that would fit
            // waits behind it.
            assert!(budget
                .reserve(10, Some(Duration::from_millis(20)))
                .await
                .is_none());
            drop(a);
            assert_eq!(waiter.await, Some(100));
            assert_eq!(budget.used(), 0);
        }));
    }
}
