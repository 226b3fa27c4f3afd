//! A short-lived memory of correct logins, so that a client that logs in
//! again and again (webmail logs in for every click, phones on every
//! reconnect) does not pay an Argon2 hash each time.
//!
//! What is kept is an HMAC-SHA256 tag of (user, stored hash, password) under
//! a random key made when the process starts, never the password: the memory
//! of a running server gives nothing to crack offline without the key, and
//! the key dies with the process. The stored hash is in the tag, so a
//! changed password never matches an old entry; the server also clears the
//! cache whenever the users file changes and on SIGHUP. Only successes are
//! kept: a wrong password never matches, and pays the full hash.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};

/// Enough for every user of a home server several times over; at about 100
/// bytes an entry, well under a megabyte.
const MAX_ENTRIES: usize = 4096;

pub struct LoginCache {
    key: hmac::Key,
    ttl: Duration,
    /// Tag → when the login was verified.
    entries: HashMap<[u8; 32], Instant>,
}

/// The cache's name for one (user, stored hash, password).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Tag([u8; 32]);

impl LoginCache {
    /// `ttl` zero turns the cache off. Fails only if the OS random source
    /// cannot be read.
    pub fn new(ttl: Duration) -> Result<LoginCache, String> {
        let mut key = [0u8; 32];
        SystemRandom::new()
            .fill(&mut key)
            .map_err(|_| "cannot read the system's random source".to_string())?;
        Ok(LoginCache {
            key: hmac::Key::new(hmac::HMAC_SHA256, &key),
            ttl,
            entries: HashMap::new(),
        })
    }

    pub fn enabled(&self) -> bool {
        !self.ttl.is_zero()
    }

    /// Each part is length-prefixed, so no two inputs run together.
    pub fn tag(&self, user: &str, stored_hash: &str, password: &[u8]) -> Tag {
        let mut ctx = hmac::Context::with_key(&self.key);
        for part in [user.as_bytes(), stored_hash.as_bytes(), password] {
            ctx.update(&(part.len() as u64).to_be_bytes());
            ctx.update(part);
        }
        let mut out = [0u8; 32];
        out.copy_from_slice(ctx.sign().as_ref());
        Tag(out)
    }

    /// Whether this login was verified within the last `ttl`.
    pub fn hit(&mut self, tag: Tag, now: Instant) -> bool {
        if !self.enabled() {
            return false;
        }
        match self.entries.get(&tag.0) {
            Some(&at) if now.saturating_duration_since(at) < self.ttl => true,
            Some(_) => {
                self.entries.remove(&tag.0);
                false
            }
            None => false,
        }
    }

    /// Remembers a login that was just verified by a full hash.
    pub fn insert(&mut self, tag: Tag, now: Instant) {
        if !self.enabled() {
            return;
        }
        if self.entries.len() >= MAX_ENTRIES && !self.entries.contains_key(&tag.0) {
            let ttl = self.ttl;
            self.entries
                .retain(|_, at| now.saturating_duration_since(*at) < ttl);
            if self.entries.len() >= MAX_ENTRIES {
                let oldest = self.entries.iter().min_by_key(|(_, at)| **at);
                if let Some(k) = oldest.map(|(k, _)| *k) {
                    self.entries.remove(&k);
                }
            }
        }
        self.entries.insert(tag.0, now);
    }

    pub fn clear(&mut self) {
        self.entries.clear();
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn remembers_only_what_it_was_told_for_ttl() {
        let mut c = LoginCache::new(300 * S).expect("random");
        let now = Instant::now();
        let good = c.tag("alice", "{ARGON2ID}h1", b"pw");
        assert!(!c.hit(good, now));
        c.insert(good, now);
        assert!(c.hit(good, now + 299 * S));
        // Another password, another user, another stored hash: all misses.
        assert!(!c.hit(c.tag("alice", "{ARGON2ID}h1", b"pW"), now));
        assert!(!c.hit(c.tag("bob", "{ARGON2ID}h1", b"pw"), now));
        assert!(!c.hit(c.tag("alice", "{ARGON2ID}h2", b"pw"), now));
        // Parts cannot run into each other.
        assert!(c.tag("ab", "c", b"") != c.tag("a", "bc", b""));
        assert!(!c.hit(good, now + 300 * S));
        assert!(c.is_empty(), "an expired entry is dropped when seen");
        c.insert(good, now);
        c.clear();
        assert!(!c.hit(good, now));
    }

    #[test]
    fn keys_differ_per_process_and_zero_is_off() {
        let (a, b) = (
            LoginCache::new(S).expect("random"),
            LoginCache::new(S).expect("random"),
        );
        assert!(a.tag("u", "h", b"p") != b.tag("u", "h", b"p"));
        let mut off = LoginCache::new(Duration::ZERO).expect("random");
        let t = off.tag("u", "h", b"p");
        off.insert(t, Instant::now());
        assert!(!off.hit(t, Instant::now()));
        assert_eq!(off.len(), 0);
    }

    #[test]
    fn memory_is_bounded() {
        let mut c = LoginCache::new(300 * S).expect("random");
        let start = Instant::now();
        for i in 0..MAX_ENTRIES + 10 {
            let t = c.tag(&format!("u{i}"), "h", b"p");
            c.insert(t, start + Duration::from_millis(i as u64));
        }
        assert_eq!(c.len(), MAX_ENTRIES);
        assert!(
            !c.hit(c.tag("u0", "h", b"p"), start),
            "the oldest went first"
        );
        let last = c.tag(&format!("u{}", MAX_ENTRIES + 9), "h", b"p");
        assert!(c.hit(last, start));
    }
}
