//! Fair service for password checks, on the event loop.
//!
//! Two pieces, used in this order by a login:
//! - [`AddressQueue`]: attempts from one client address (IPv6 by its /64)
//!   pass one after another, so the throttle's delay, which counts from the
//!   previous failure, holds for each attempt in turn. Ten parallel
//!   connections then get no more guesses per minute than one.
//! - [`HashGate`]: at most `limit` password hashes run at once, and when
//!   several wait, the one from the address with the fewest recent failures
//!   goes first, then the one from the address with the fewest attempts
//!   queued behind it, then arrival order. Since an address has at most one
//!   attempt waiting (the queue above), a correct login from an address with
//!   a clean record waits at most for the hashes already running: one hash
//!   time, however many addresses are guessing. The queued count matters at
//!   the start of a flood, when the flooding addresses have no failures on
//!   record yet but dozens of attempts lined up.
//!
//! Both hand out guards that give their place back when dropped, so a client
//! that disconnects mid-login frees it at once.

use std::cell::{Cell, RefCell};
use std::collections::{BinaryHeap, HashMap};
use std::net::IpAddr;
use std::rc::Rc;
use std::sync::Arc;

use smol::channel::{bounded, Receiver, Sender};
use smol::lock::{Mutex, MutexGuardArc};

use crate::net::address_key;

/// One lock per client address with a login in progress or waiting, and
/// how many attempts hold or wait for it.
#[derive(Default)]
pub struct AddressQueue {
    locks: RefCell<HashMap<IpAddr, AddressLock>>,
}

/// The lock, and how many attempts hold it or wait for it.
type AddressLock = (Arc<Mutex<()>>, usize);

/// Held while an address's attempt runs; the next one starts when it drops.
pub struct AddressTurn {
    queue: Rc<AddressQueue>,
    key: IpAddr,
    guard: Option<MutexGuardArc<()>>,
}

impl AddressQueue {
    /// Waits until no other attempt from `ip`'s address is running.
    pub async fn turn(self: &Rc<Self>, ip: IpAddr) -> AddressTurn {
        let key = address_key(ip);
        let lock = {
            let mut locks = self.locks.borrow_mut();
            let entry = locks.entry(key).or_default();
            entry.1 += 1;
            entry.0.clone()
        };
        // The turn exists before the wait, so that a client that leaves
        // while waiting still gives back its count.
        let mut turn = AddressTurn {
            queue: self.clone(),
            key,
            guard: None,
        };
        turn.guard = Some(lock.lock_arc().await);
        turn
    }

    /// Attempts from `turn`'s address holding or waiting for the turn,
    /// itself included.
    pub fn queued(&self, turn: &AddressTurn) -> u32 {
        let locks = self.locks.borrow();
        locks.get(&turn.key).map_or(1, |entry| entry.1 as u32)
    }

    /// Addresses with an attempt running or waiting (for tests).
    pub fn addresses(&self) -> usize {
        self.locks.borrow().len()
    }
}

impl Drop for AddressTurn {
    fn drop(&mut self) {
        drop(self.guard.take());
        let mut locks = self.queue.locks.borrow_mut();
        if let Some(entry) = locks.get_mut(&self.key) {
            entry.1 -= 1;
            if entry.1 == 0 {
                locks.remove(&self.key);
            }
        }
    }
}

/// Bounds how many password hashes run at once, serving the cleanest
/// address first.
pub struct HashGate {
    limit: usize,
    running: Cell<usize>,
    waiting: RefCell<BinaryHeap<Waiter>>,
    next_seq: Cell<u64>,
}

struct Waiter {
    failures: u32,
    queued: u32,
    seq: u64,
    wake: Sender<()>,
}

impl Waiter {
    /// Fewer failures first, then fewer queued, then earlier arrival
    /// (BinaryHeap pops the max).
    fn rank(&self) -> std::cmp::Reverse<(u32, u32, u64)> {
        std::cmp::Reverse((self.failures, self.queued, self.seq))
    }
}

impl PartialEq for Waiter {
    fn eq(&self, other: &Self) -> bool {
        self.rank() == other.rank()
    }
}
impl Eq for Waiter {}
impl PartialOrd for Waiter {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Waiter {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.rank().cmp(&other.rank())
    }
}

/// A waiter in line. If its client leaves just after being handed a place,
/// before taking it, the place is passed on rather than lost.
struct Waiting {
    gate: Rc<HashGate>,
    woken: Receiver<()>,
}

impl Drop for Waiting {
    fn drop(&mut self) {
        if self.woken.try_recv().is_ok() {
            self.gate.release();
        }
    }
}

/// A place to run one hash; the next waiter gets it when this drops.
pub struct HashPermit {
    gate: Rc<HashGate>,
}

impl HashGate {
    pub fn new(limit: usize) -> Rc<HashGate> {
        Rc::new(HashGate {
            limit: limit.max(1),
            running: Cell::new(0),
            waiting: RefCell::default(),
            next_seq: Cell::new(0),
        })
    }

    /// Waits for a place; `failures` is the address's recent failure count,
    /// `queued` how many of its attempts are lined up (this one included).
    pub async fn acquire(self: &Rc<Self>, failures: u32, queued: u32) -> HashPermit {
        if self.running.get() < self.limit && self.waiting.borrow().is_empty() {
            self.running.set(self.running.get() + 1);
            return HashPermit { gate: self.clone() };
        }
        let (wake, woken) = bounded(1);
        let seq = self.next_seq.get();
        self.next_seq.set(seq + 1);
        self.waiting.borrow_mut().push(Waiter {
            failures,
            queued,
            seq,
            wake,
        });
        // A place is handed over by a permit's drop, through the channel.
        let waiting = Waiting {
            gate: self.clone(),
            woken,
        };
        let _ = waiting.woken.recv().await;
        drop(waiting);
        HashPermit { gate: self.clone() }
    }

    /// Gives a place to the best live waiter, or frees it.
    fn release(&self) {
        loop {
            let Some(next) = self.waiting.borrow_mut().pop() else {
                self.running.set(self.running.get() - 1);
                return;
            };
            // A waiter whose client left has dropped its receiver.
            if next.wake.try_send(()).is_ok() {
                return;
            }
        }
    }

    /// Hashes running now (for tests).
    pub fn running(&self) -> usize {
        self.running.get()
    }
}

impl Drop for HashPermit {
    fn drop(&mut self) {
        self.gate.release();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;
    use std::task::{Context, Poll, Waker};

    fn poll<F: Future + Unpin>(f: &mut F) -> Poll<F::Output> {
        Pin::new(f).poll(&mut Context::from_waker(Waker::noop()))
    }
    use std::pin::Pin;

    #[test]
    fn the_cleanest_address_is_served_first() {
        let gate = HashGate::new(1);
        let mut first = Box::pin(gate.acquire(0, 1));
        let Poll::Ready(running) = poll(&mut first) else {
            panic!("a free gate admits at once");
        };
        let mut guesser = Box::pin(gate.acquire(5, 1));
        let mut other_guesser = Box::pin(gate.acquire(3, 1));
        let mut clean = Box::pin(gate.acquire(0, 1));
        let mut leaver = Box::pin(gate.acquire(0, 1));
        for f in [&mut guesser, &mut other_guesser, &mut clean] {
            assert!(poll(f).is_pending());
        }
        assert!(poll(&mut leaver).is_pending());
        drop(leaver);
        drop(running);
        assert!(poll(&mut guesser).is_pending());
        let Poll::Ready(p) = poll(&mut clean) else {
            panic!("the clean address goes before the guessers");
        };
        drop(p);
        assert!(poll(&mut guesser).is_pending());
        let Poll::Ready(p) = poll(&mut other_guesser) else {
            panic!("then fewer failures first");
        };
        drop(p);
        let Poll::Ready(p) = poll(&mut guesser) else {
            panic!("and the worst last");
        };
        assert_eq!(gate.running(), 1);
        drop(p);
        assert_eq!(gate.running(), 0);
    }

    #[test]
    fn among_clean_addresses_the_one_with_less_queued_goes_first() {
        let gate = HashGate::new(1);
        let mut first = Box::pin(gate.acquire(0, 1));
        let Poll::Ready(running) = poll(&mut first) else {
            panic!("a free gate admits at once");
        };
        let mut flooder = Box::pin(gate.acquire(0, 50));
        let mut client = Box::pin(gate.acquire(0, 1));
        assert!(poll(&mut flooder).is_pending());
        assert!(poll(&mut client).is_pending());
        drop(running);
        assert!(poll(&mut flooder).is_pending());
        assert!(poll(&mut client).is_ready());
        assert!(poll(&mut flooder).is_ready());
    }

    #[test]
    fn a_place_handed_to_a_client_that_left_is_passed_on() {
        let gate = HashGate::new(1);
        let mut first = Box::pin(gate.acquire(0, 1));
        let Poll::Ready(running) = poll(&mut first) else {
            panic!("a free gate admits at once");
        };
        let mut leaver = Box::pin(gate.acquire(0, 1));
        let mut next = Box::pin(gate.acquire(0, 1));
        assert!(poll(&mut leaver).is_pending());
        assert!(poll(&mut next).is_pending());
        // The place goes to the leaver, who is gone before taking it.
        drop(running);
        drop(leaver);
        assert!(poll(&mut next).is_ready());
        assert_eq!(gate.running(), 0);
    }

    #[test]
    fn one_address_one_attempt_at_a_time() {
        let queue = Rc::new(AddressQueue::default());
        let a: IpAddr = "2001:db8:1:2::1".parse().expect("literal");
        let same_64: IpAddr = "2001:db8:1:2:ffff::9".parse().expect("literal");
        let other: IpAddr = "192.0.2.1".parse().expect("literal");
        let mut t1 = Box::pin(queue.turn(a));
        let Poll::Ready(turn) = poll(&mut t1) else {
            panic!("first turn at once");
        };
        let mut t2 = Box::pin(queue.turn(same_64));
        assert!(poll(&mut t2).is_pending(), "the same /64 waits");
        let mut t3 = Box::pin(queue.turn(other));
        assert!(poll(&mut t3).is_ready(), "another address does not");
        assert_eq!(queue.queued(&turn), 2);
        drop(turn);
        let Poll::Ready(turn2) = poll(&mut t2) else {
            panic!("the next turn after the first ends");
        };
        drop(turn2);
        drop(t1);
        drop(t2);
        drop(t3);
        assert_eq!(queue.addresses(), 0, "nothing is kept once idle");
    }
}
