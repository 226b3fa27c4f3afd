//! The web interface's login sessions, in memory: a session is a random
//! token in the `lb_session` cookie, the user it belongs to, and a CSRF
//! token the page sends back in `X-CSRF-Token` with everything that changes
//! something.
//!
//! Sans-IO: the caller passes the time in, so expiry is tested without
//! waiting. Sessions do not outlive the process; a restart logs everyone
//! out, which a home server's users meet rarely and accept.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::time::{Duration, Instant};

use ring::rand::{SecureRandom, SystemRandom};

/// The cookie that carries the session token.
pub const COOKIE: &str = "lb_session";

/// Sessions one user may hold at once (browsers, devices); a login beyond
/// it ends that user's least recently used one.
pub const MAX_PER_USER: usize = 32;
/// Sessions in all; a login beyond it ends the least recently used one.
/// About 300 bytes each, so the bound is a few MiB at most.
pub const MAX_TOTAL: usize = 10_000;

/// What a live session tells a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Session {
    pub user: String,
    pub csrf: String,
    /// The [`Sessions::fingerprint`] of the user's password entry at login.
    pub credential: u64,
}

struct Entry {
    user: String,
    csrf: String,
    credential: u64,
    created: Instant,
    last_used: Instant,
}

impl Entry {
    fn session(&self) -> Session {
        Session {
            user: self.user.clone(),
            csrf: self.csrf.clone(),
            credential: self.credential,
        }
    }

    fn live(&self, idle: Duration, max_age: Duration, now: Instant) -> bool {
        now.saturating_duration_since(self.last_used) < idle
            && now.saturating_duration_since(self.created) < max_age
    }
}

pub struct Sessions {
    /// Keyed by the cookie's token. A timing difference in the map's lookup
    /// would tell an attacker nothing: SipHash's keys are random per process,
    /// and a token has 256 bits to guess.
    entries: HashMap<String, Entry>,
    idle: Duration,
    max_age: Duration,
    random: SystemRandom,
    /// Random keys for [`Sessions::fingerprint`], new with each process.
    fingerprint_keys: RandomState,
}

impl Sessions {
    /// `idle`: how long a session lives unused (`--web-session-idle`);
    /// `max_age`: how long it lives at most (`--web-session-max`).
    pub fn new(idle: Duration, max_age: Duration) -> Sessions {
        Sessions {
            entries: HashMap::new(),
            idle,
            max_age,
            random: SystemRandom::new(),
            fingerprint_keys: RandomState::new(),
        }
    }

    /// What a session keeps of its user's password entry (the hash in the
    /// users file): a keyed 64-bit digest, so a changed password can be
    /// told from the old one without holding a copy of either.
    pub fn fingerprint(&self, password_entry: &str) -> u64 {
        self.fingerprint_keys.hash_one(password_entry)
    }

    /// Starts a session for `user`, whose password entry has the
    /// fingerprint `credential`; returns its cookie token and the session.
    /// None only if the system's random source fails.
    pub fn create(
        &mut self,
        user: &str,
        credential: u64,
        now: Instant,
    ) -> Option<(String, Session)> {
        let token = self.random_token()?;
        let csrf = self.random_token()?;
        self.expire(now);
        let mine: Vec<(&String, Instant)> = self
            .entries
            .iter()
            .filter(|(_, e)| e.user == user)
            .map(|(t, e)| (t, e.last_used))
            .collect();
        if mine.len() >= MAX_PER_USER {
            if let Some(oldest) = mine
                .iter()
                .min_by_key(|(_, used)| *used)
                .map(|(t, _)| (*t).clone())
            {
                self.entries.remove(&oldest);
            }
        }
        if self.entries.len() >= MAX_TOTAL {
            if let Some(oldest) = self
                .entries
                .iter()
                .min_by_key(|(_, e)| e.last_used)
                .map(|(t, _)| t.clone())
            {
                self.entries.remove(&oldest);
            }
        }
        self.entries.insert(
            token.clone(),
            Entry {
                user: user.to_string(),
                csrf: csrf.clone(),
                credential,
                created: now,
                last_used: now,
            },
        );
        Some((
            token,
            Session {
                user: user.to_string(),
                csrf,
                credential,
            },
        ))
    }

    /// The live session of a cookie token, marked as used now. An expired
    /// one is removed and is None, as is an unknown token.
    pub fn touch(&mut self, token: &str, now: Instant) -> Option<Session> {
        let entry = self.entries.get(token)?;
        if !self.live(entry, now) {
            self.entries.remove(token);
            return None;
        }
        let entry = self.entries.get_mut(token)?;
        entry.last_used = now;
        Some(entry.session())
    }

    /// A token's live session, without counting this as a use: what a long
    /// response (an event stream) checks as it goes.
    pub fn peek(&self, token: &str, now: Instant) -> Option<Session> {
        let entry = self.entries.get(token)?;
        self.live(entry, now).then(|| entry.session())
    }

    /// Ends a session (logout, or its user no longer exists).
    pub fn remove(&mut self, token: &str) {
        self.entries.remove(token);
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn live(&self, entry: &Entry, now: Instant) -> bool {
        entry.live(self.idle, self.max_age, now)
    }

    /// Drops every expired session; run at each login, so that sessions
    /// never touched again do not pile up.
    fn expire(&mut self, now: Instant) {
        let (idle, max_age) = (self.idle, self.max_age);
        self.entries.retain(|_, e| e.live(idle, max_age, now));
    }

    /// 256 random bits, as 64 hex digits (safe in a cookie and a header).
    fn random_token(&self) -> Option<String> {
        let mut bytes = [0u8; 32];
        self.random.fill(&mut bytes).ok()?;
        let mut out = String::with_capacity(64);
        for b in bytes {
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 15)]));
        }
        Some(out)
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Compares a token the client sent with the real one in time that does not
/// depend on where they differ, so the CSRF token cannot be guessed byte by
/// byte.
pub fn tokens_match(given: &[u8], real: &[u8]) -> bool {
    if given.len() != real.len() {
        return false;
    }
    let diff = given
        .iter()
        .zip(real)
        .fold(0u8, |acc, (a, b)| acc | (a ^ b));
    std::hint::black_box(diff) == 0
}

/// The `lb_session` value among a request's `Cookie` headers.
pub fn token_from_cookies<'a>(headers: impl Iterator<Item = &'a [u8]>) -> Option<&'a str> {
    for header in headers {
        let Ok(text) = std::str::from_utf8(header) else {
            continue;
        };
        for pair in text.split(';') {
            if let Some((name, value)) = pair.trim().split_once('=') {
                if name == COOKIE && !value.is_empty() {
                    return Some(value);
                }
            }
        }
    }
    None
}

/// The `Set-Cookie` value that starts a session.
pub fn set_cookie(token: &str, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!("{COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/{secure}")
}

/// The `Set-Cookie` value that ends one in the browser.
pub fn clear_cookie(secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!("{COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0{secure}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_secs(60);

    #[test]
    fn a_session_lives_while_used_and_dies_idle() {
        let mut sessions = Sessions::new(30 * MIN, 7 * 24 * 60 * MIN);
        let t0 = Instant::now();
        let (token, session) = sessions.create("alice", 1, t0).unwrap();
        assert_eq!(token.len(), 64);
        assert_eq!(session.csrf.len(), 64);
        assert_ne!(token, session.csrf);
        assert_eq!(sessions.touch(&token, t0 + 29 * MIN), Some(session.clone()));
        // Used at 29 minutes: alive until 59.
        assert!(sessions.touch(&token, t0 + 58 * MIN).is_some());
        assert!(sessions.peek(&token, t0 + 87 * MIN).is_some());
        assert!(
            sessions.peek(&token, t0 + 88 * MIN).is_none(),
            "peek is no use"
        );
        assert!(sessions.touch(&token, t0 + 89 * MIN).is_none());
        assert!(sessions.is_empty(), "an expired session is removed");
        assert!(sessions.touch("nope", t0).is_none());
    }

    #[test]
    fn a_session_ends_at_its_maximum_age_however_busy() {
        let mut sessions = Sessions::new(30 * MIN, 120 * MIN);
        let t0 = Instant::now();
        let (token, _) = sessions.create("alice", 1, t0).unwrap();
        for step in 1..12 {
            assert!(sessions.touch(&token, t0 + step * 10 * MIN).is_some());
        }
        assert!(sessions.touch(&token, t0 + 120 * MIN).is_none());
    }

    #[test]
    fn bounded_per_user_least_recently_used_first() {
        let mut sessions = Sessions::new(30 * MIN, 120 * MIN);
        let t0 = Instant::now();
        let (first, _) = sessions.create("alice", 1, t0).unwrap();
        let (second, _) = sessions
            .create("alice", 1, t0 + Duration::from_secs(1))
            .unwrap();
        assert!(sessions
            .touch(&first, t0 + Duration::from_secs(2))
            .is_some());
        for i in 0..MAX_PER_USER - 1 {
            sessions
                .create("alice", 1, t0 + Duration::from_secs(3 + i as u64))
                .unwrap();
        }
        let (bob, _) = sessions
            .create("bob", 1, t0 + Duration::from_secs(100))
            .unwrap();
        assert_eq!(sessions.len(), MAX_PER_USER + 1);
        assert!(sessions
            .touch(&second, t0 + Duration::from_secs(101))
            .is_none());
        assert!(sessions
            .touch(&first, t0 + Duration::from_secs(101))
            .is_some());
        assert!(sessions
            .touch(&bob, t0 + Duration::from_secs(101))
            .is_some());
        sessions.remove(&bob);
        assert!(sessions
            .touch(&bob, t0 + Duration::from_secs(102))
            .is_none());
    }

    #[test]
    fn tokens_compare_whole() {
        assert!(tokens_match(b"abcd", b"abcd"));
        assert!(!tokens_match(b"abce", b"abcd"));
        assert!(!tokens_match(b"abc", b"abcd"));
        assert!(!tokens_match(b"", b"abcd"));
    }

    #[test]
    fn cookie_is_found_among_others() {
        let headers: Vec<&[u8]> = vec![b"theme=dark; lb_sessionx=1", b"a=b; lb_session=tok; c=d"];
        assert_eq!(token_from_cookies(headers.into_iter()), Some("tok"));
        let none: Vec<&[u8]> = vec![b"lb_session="];
        assert_eq!(token_from_cookies(none.into_iter()), None);
        assert_eq!(
            set_cookie("t", true),
            "lb_session=t; HttpOnly; SameSite=Strict; Path=/; Secure"
        );
        assert!(!clear_cookie(false).contains("Secure"));
    }
}
