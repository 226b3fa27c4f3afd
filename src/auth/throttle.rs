//! Failed-login throttling by client address and by user name.
//!
//! The caller asks [`Throttle::delay`] before checking a password, waits that
//! long (holding only that connection), then reports the outcome. Attempts
//! from one address take turns (`auth::fair`), so the delay, counted from
//! the previous failure, holds for each in turn; and an attempt is recorded
//! as a failure before it is checked, so one that is abandoned midway still
//! counts. Time is passed in so the logic is testable without sleeping.
//!
//! Per-user counters mean an attacker who knows a user name could make that
//! user's own logins wait up to the cap (15 s by default). They are what
//! keeps a botnet spread over many addresses from guessing one account at
//! full speed, so they stay; but an address the user logged in from in the
//! last 30 days is not held back by the user's counter (only by its own),
//! so the user's usual phone and home connection are not slowed by someone
//! guessing elsewhere. A new address still waits: it is a delay, never a
//! lockout. A valid login
//! clears both counters, so an attacker holding one account can reset its
//! address's counter, but not the counters of the users it is guessing.
//! Loopback is not exempt: a proxy or webmail on the same host would
//! otherwise turn into an unthrottled path.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

const SEC: Duration = Duration::from_secs(1);
/// How long a successful login vouches for its address.
const KNOWN_FOR: Duration = Duration::from_secs(30 * 24 * 3600);

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Ip(IpAddr),
    User(String),
}

#[derive(Debug)]
pub struct Throttle {
    /// Failures in the current run, and when the last one happened.
    records: HashMap<Key, (u32, Instant)>,
    /// (user, address) → the last successful login from there.
    known: HashMap<(String, IpAddr), Instant>,
    max_keys: usize,
    forget_after: Duration,
    max_delay: Duration,
}

impl Default for Throttle {
    /// 10,000 keys (well under a megabyte), 15 minutes, 15 seconds.
    fn default() -> Self {
        Throttle::new(10_000, 15 * 60 * SEC, 15 * SEC)
    }
}

impl Throttle {
    /// `max_keys` bounds memory (addresses and user names together);
    /// failures older than `forget_after` no longer count; no delay exceeds
    /// `max_delay`.
    pub fn new(max_keys: usize, forget_after: Duration, max_delay: Duration) -> Throttle {
        Throttle {
            records: HashMap::new(),
            known: HashMap::new(),
            max_keys: max_keys.max(1),
            forget_after,
            max_delay,
        }
    }

    /// After n recent failures (by address or by user, whichever has more),
    /// 2^(n-1) seconds counted from the last failure, so a user who already
    /// waited is not made to wait again.
    /// An address the user recently logged in from is not held back by the
    /// user's counter.
    pub fn delay(&self, ip: IpAddr, user: Option<&str>, now: Instant) -> Duration {
        let known = user.is_some_and(|u| self.is_known(ip, u, now));
        let keys = [
            Some(Key::Ip(ip_key(ip))),
            user.filter(|_| !known).map(user_key),
        ];
        let records = keys.iter().flatten().filter_map(|k| self.records.get(k));
        records.fold(Duration::ZERO, |max, r| max.max(self.backoff(*r, now)))
    }

    /// Failures from this address that still count, for ordering waiting
    /// password checks (the cleanest address goes first).
    pub fn recent_failures(&self, ip: IpAddr, now: Instant) -> u32 {
        match self.records.get(&Key::Ip(ip_key(ip))) {
            Some((n, last)) if now.saturating_duration_since(*last) < self.forget_after => *n,
            _ => 0,
        }
    }

    pub fn record_failure(&mut self, ip: IpAddr, user: Option<&str>, now: Instant) {
        self.bump(Key::Ip(ip_key(ip)), now);
        if let Some(u) = user {
            self.bump(user_key(u), now);
        }
    }

    pub fn record_success(&mut self, ip: IpAddr, user: Option<&str>, now: Instant) {
        self.records.remove(&Key::Ip(ip_key(ip)));
        if let Some(u) = user {
            self.remember(ip, u, now);
            self.records.remove(&user_key(u));
        }
    }

    fn is_known(&self, ip: IpAddr, user: &str, now: Instant) -> bool {
        let Key::User(name) = user_key(user) else {
            return false;
        };
        self.known
            .get(&(name, ip_key(ip)))
            .is_some_and(|&at| now.saturating_duration_since(at) < KNOWN_FOR)
    }

    /// Bounded like the counters: the stalest pair goes when full.
    fn remember(&mut self, ip: IpAddr, user: &str, now: Instant) {
        let Key::User(name) = user_key(user) else {
            return;
        };
        let key = (name, ip_key(ip));
        if !self.known.contains_key(&key) && self.known.len() >= self.max_keys {
            self.known
                .retain(|_, at| now.saturating_duration_since(*at) < KNOWN_FOR);
            if self.known.len() >= self.max_keys {
                let oldest = self.known.iter().min_by_key(|(_, at)| **at);
                if let Some(k) = oldest.map(|(k, _)| k.clone()) {
                    self.known.remove(&k);
                }
            }
        }
        self.known.insert(key, now);
    }

    fn backoff(&self, (failures, last): (u32, Instant), now: Instant) -> Duration {
        let since = now.saturating_duration_since(last);
        if failures == 0 || since >= self.forget_after {
            return Duration::ZERO;
        }
        // Past 2^20 s any sane cap has long been reached.
        let full = SEC * (1 << (failures - 1).min(20));
        full.min(self.max_delay).saturating_sub(since)
    }

    fn bump(&mut self, key: Key, now: Instant) {
        if !self.records.contains_key(&key) && self.records.len() >= self.max_keys {
            self.make_room(now);
        }
        let forget_after = self.forget_after;
        let (failures, last) = self.records.entry(key).or_insert((0, now));
        let stale = now.saturating_duration_since(*last) >= forget_after;
        *failures = if stale { 1 } else { failures.saturating_add(1) };
        *last = now;
    }

    /// Drops forgotten records or, failing that, the stalest one, taking a
    /// user name before an address on a tie so that spraying user names does
    /// not push out the sprayer's own address. The linear scan only runs on a
    /// failed login with the table full, which has just cost an Argon2 hash.
    fn make_room(&mut self, now: Instant) {
        let forget_after = self.forget_after;
        self.records
            .retain(|_, (_, last)| now.saturating_duration_since(*last) < forget_after);
        if self.records.len() >= self.max_keys {
            let by_age = |(k, r): &(&Key, &(u32, Instant))| (r.1, matches!(k, Key::Ip(_)));
            let victim = self.records.iter().min_by_key(by_age);
            if let Some(k) = victim.map(|(k, _)| k.clone()) {
                self.records.remove(&k);
            }
        }
    }
}

/// IPv4-mapped addresses count as IPv4, and IPv6 clients by their /64, as
/// for the connection limits.
fn ip_key(ip: IpAddr) -> IpAddr {
    crate::net::address_key(ip)
}

/// Lowercased like the users file, and cut short so a client cannot make a
/// key arbitrarily large.
fn user_key(user: &str) -> Key {
    let short: String = user.chars().take(256).collect();
    Key::User(short.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 2));
    const S: Duration = SEC;

    #[test]
    fn grows_then_caps() {
        let mut t = Throttle::default();
        let now = Instant::now();
        assert_eq!(t.delay(A, Some("alice"), now), Duration::ZERO);
        let mut seen = Vec::new();
        for _ in 0..7 {
            t.record_failure(A, Some("alice"), now);
            seen.push(t.delay(A, Some("alice"), now).as_secs());
        }
        assert_eq!(seen, [1, 2, 4, 8, 15, 15, 15]);
        // Time already waited counts.
        assert_eq!(t.delay(A, None, now + 10 * S), 5 * S);
        // The user counter follows the user to another address, in any case.
        assert_eq!(t.delay(B, Some("ALICE"), now), 15 * S);
        assert_eq!(t.delay(B, Some("bob"), now), Duration::ZERO);
        assert_eq!(t.recent_failures(A, now), 7);
        assert_eq!(t.recent_failures(B, now), 0);
        assert_eq!(t.recent_failures(A, now + 15 * 60 * S), 0);
        t.record_success(A, Some("alice"), now);
        assert_eq!(t.delay(A, Some("alice"), now), Duration::ZERO);
        assert!(t.records.is_empty());
    }

    #[test]
    fn an_address_the_user_logged_in_from_is_not_held_back_by_the_user() {
        let mut t = Throttle::new(3, 15 * 60 * S, 15 * S);
        let now = Instant::now();
        let home: IpAddr = "2001:db8:1:2::1".parse().expect("literal");
        let home_later: IpAddr = "2001:db8:1:2::77".parse().expect("literal");
        t.record_success(home, Some("alice"), now);
        for _ in 0..5 {
            t.record_failure(B, Some("alice"), now);
        }
        // B guesses alice's password: B and any new address wait…
        assert_eq!(t.delay(B, Some("alice"), now), 15 * S);
        assert_eq!(t.delay(A, Some("Alice"), now), 15 * S);
        // …but not alice's own /64, though its own failures still count.
        assert_eq!(t.delay(home_later, Some("alice"), now), Duration::ZERO);
        assert_eq!(t.delay(home, Some("bob"), now), Duration::ZERO);
        t.record_failure(home, Some("alice"), now);
        assert_eq!(t.delay(home, Some("alice"), now), S);
        // The vouching ends after 30 days, and memory stays bounded.
        assert_eq!(
            t.delay(home, Some("alice"), now + KNOWN_FOR),
            Duration::ZERO,
            "by then every counter is forgotten too"
        );
        assert!(!t.is_known(home, "alice", now + KNOWN_FOR));
        t.record_success(A, Some("u1"), now + S);
        t.record_success(A, Some("u2"), now + S);
        t.record_success(A, Some("u3"), now + S);
        assert_eq!(t.known.len(), 3);
        assert!(!t.is_known(home, "alice", now + S), "the stalest went");
    }

    #[test]
    fn forgets_after_quiet_period() {
        let mut t = Throttle::new(100, 60 * S, 15 * S);
        let start = Instant::now();
        for _ in 0..3 {
            t.record_failure(A, None, start);
        }
        assert_eq!(t.delay(A, None, start), 4 * S);
        let later = start + 60 * S;
        assert_eq!(t.delay(A, None, later), Duration::ZERO);
        // The next failure starts a fresh count.
        t.record_failure(A, None, later);
        assert_eq!(t.delay(A, None, later), S);
    }

    #[test]
    fn ipv6_neighbours_share_a_counter() {
        let mut t = Throttle::default();
        let now = Instant::now();
        let ip = |s: &str| s.parse::<IpAddr>().expect("literal");
        t.record_failure(ip("2001:db8:1:2::1"), None, now);
        assert_eq!(t.delay(ip("2001:db8:1:2:ffff::9"), None, now), S);
        assert_eq!(t.delay(ip("2001:db8:1:3::1"), None, now), Duration::ZERO);
        t.record_failure(ip("::ffff:192.0.2.1"), None, now);
        assert_eq!(t.delay(A, None, now), S);
        // Loopback is throttled like anything else.
        t.record_failure(ip("127.0.0.1"), None, now);
        assert_eq!(t.delay(ip("127.0.0.1"), None, now), S);
    }

    #[test]
    fn memory_is_bounded_and_oldest_goes_first() {
        let mut t = Throttle::new(3, 60 * S, 15 * S);
        let start = Instant::now();
        for i in 0..3u32 {
            t.record_failure(A, Some(&format!("u{i}")), start + i * S);
        }
        // A was refreshed on every failure, so u2 pushed out u0, the stalest.
        assert_eq!(t.records.len(), 3);
        assert_eq!(t.delay(B, Some("u2"), start + 2 * S), S);
        assert_eq!(t.delay(B, Some("u0"), start + 2 * S), Duration::ZERO);
        // Forgotten records are dropped before live ones.
        t.record_failure(B, None, start + 62 * S);
        assert_eq!(t.records.len(), 1);
        assert_eq!(t.delay(A, None, start + 62 * S), Duration::ZERO);
        // Spraying user names, all in the same instant, must not push out
        // the sprayer's own address.
        for i in 0..50u32 {
            t.record_failure(B, Some(&format!("spray{i}")), start + 70 * S);
        }
        assert_eq!(t.records.len(), 3);
        assert_eq!(t.delay(B, None, start + 70 * S), 15 * S);
    }
}
