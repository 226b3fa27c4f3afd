//! Argon2 password hashes in Dovecot's `{SCHEME}$argon2id$...` form, so a
//! users file can move between Dovecot and letterbox either way.

use std::io::{self, Read};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Algorithm::{self, Argon2d, Argon2i, Argon2id};
use argon2::{Argon2, Params, Version};

// OWASP's minimum for Argon2id (19 MiB, 2 passes, 1 lane) rather than
// Dovecot's 64 MiB default: every login in flight holds the whole memory
// cost, and on a 512 MB board a few parallel logins at 64 MiB each would push
// the mail store into swap. Dovecot verifies these hashes just as well.
const M_COST_KIB: u32 = 19 * 1024;
const T_COST: u32 = 2;
const P_COST: u32 = 1;

/// Hashes whose memory cost is above this are refused: a mistaken or hostile
/// users file must not be able to exhaust a Pi's RAM one login at a time.
pub const MAX_VERIFY_MEMORY_KIB: u32 = 256 * 1024;
/// Likewise for passes, which only cost time, but a lot of it on a small CPU.
pub const MAX_VERIFY_TIME_COST: u32 = 16;

/// Hashes `pw` with a fresh random salt, giving
/// `{ARGON2ID}$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>`.
/// Fails only if the OS random source cannot be read.
pub fn hash_password(pw: &[u8]) -> io::Result<String> {
    let other = |e: argon2::password_hash::Error| io::Error::other(e.to_string());
    let mut salt = [0u8; 16];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut salt)?;
    let salt = SaltString::encode_b64(&salt).map_err(other)?;
    let params = Params::new(M_COST_KIB, T_COST, P_COST, None).map_err(|e| other(e.into()))?;
    let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
    let hash = argon.hash_password(pw, &salt).map_err(other)?;
    Ok(format!("{{ARGON2ID}}{hash}"))
}

/// Checks `pw` against a stored `{ARGON2ID}`, `{ARGON2I}` (scheme names in
/// any case, as Dovecot allows) or bare `$argon2id$` / `$argon2i$` hash.
/// Anything unknown, malformed or too costly is `false`.
pub fn verify_password(stored: &str, pw: &[u8]) -> bool {
    verify(stored, pw).is_some()
}

fn verify(stored: &str, pw: &[u8]) -> Option<()> {
    let (scheme, phc) = match stored.strip_prefix('{').and_then(|s| s.split_once('}')) {
        Some((name, rest)) if name.eq_ignore_ascii_case("ARGON2ID") => (Some(Argon2id), rest),
        Some((name, rest)) if name.eq_ignore_ascii_case("ARGON2I") => (Some(Argon2i), rest),
        Some(_) => return None,
        None => (None, stored),
    };
    let hash = PasswordHash::new(phc).ok()?;
    let alg = Algorithm::try_from(hash.algorithm).ok()?;
    // Argon2d is not meant for passwords, and a scheme prefix that disagrees
    // with the body suggests a damaged line rather than something to guess at.
    if alg == Argon2d || scheme.is_some_and(|s| s != alg) {
        return None;
    }
    let params = Params::try_from(&hash).ok()?;
    let (m, t) = (params.m_cost(), params.t_cost());
    if m > MAX_VERIFY_MEMORY_KIB || t > MAX_VERIFY_TIME_COST {
        log::warn!("refusing to verify an argon2 hash with m={m} KiB, t={t}: over the limits");
        return None;
    }
    // The crate recomputes with the hash's own algorithm, version and
    // parameters and compares the outputs in constant time.
    Argon2::default().verify_password(pw, &hash).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    // Made by Dovecot 2.3's `doveadm pw -s ARGON2ID -p 'correct horse'` and
    // `doveadm pw -s ARGON2I -p 'correct horse'`.
    const DOVECOT_ID: &str = "{ARGON2ID}$argon2id$v=19$m=65536,t=3,p=1$vJL5CRFk8B2A6+UU7d1fBw$yrfkSSIQQTz0AHmgVqfBHslEEmXtyHaUPbIg5ffJv/A";
    const DOVECOT_I: &str = "{ARGON2I}$argon2i$v=19$m=32768,t=4,p=1$TmqFBfq6rY3stuNJM40P7Q$DNykPrANea4iCqZFVKzFUENXXGxt4kUHnCPzMdGBz6Y";

    #[test]
    fn round_trip() {
        let h = hash_password(b"s3cret").expect("hash");
        let phc = h.strip_prefix("{ARGON2ID}").expect("scheme");
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{h}");
        assert!(verify_password(&h, b"s3cret"));
        assert!(!verify_password(&h, b"s3cret "));
        assert!(!verify_password(&h, b""));
        // Bare PHC and a lowercase scheme name are accepted too.
        assert!(verify_password(phc, b"s3cret"));
        assert!(verify_password(&format!("{{Argon2id}}{phc}"), b"s3cret"));
        assert_ne!(hash_password(b"s3cret").ok(), Some(h), "salt must differ");
    }

    #[test]
    fn dovecot_hashes_verify() {
        assert!(verify_password(DOVECOT_ID, b"correct horse"));
        assert!(!verify_password(DOVECOT_ID, b"correct horsf"));
        assert!(verify_password(DOVECOT_I, b"correct horse"));
    }

    #[test]
    fn dovecot_parameters_from_the_crate_verify() {
        let params = Params::new(65536, 3, 1, None).expect("params");
        let salt = SaltString::encode_b64(b"0123456789abcdef").expect("salt");
        let argon = Argon2::new(Argon2id, Version::V0x13, params);
        let phc = argon.hash_password(b"pw", &salt).expect("hash");
        assert!(verify_password(&format!("{{ARGON2ID}}{phc}"), b"pw"));
    }

    #[test]
    fn malformed_or_foreign_is_false() {
        let good = DOVECOT_ID.strip_prefix("{ARGON2ID}").expect("scheme");
        for bad in [
            "",
            "{ARGON2ID}",
            "{PLAIN}correct horse",
            "{SHA512-CRYPT}$6$abc$def",
            "correct horse",
            "{ARGON2ID",
            "$argon2id$v=19$m=65536,t=3,p=1$!!!$hash",
            "$argon2id$v=19$m=65536,t=3$vJL5CRFk8B2A6+UU7d1fBw",
            &format!("{{ARGON2I}}{good}"),
            &good.replace("argon2id", "argon2d"),
            &good.replace("m=65536", "m=1048576"),
            &good.replace("t=3", "t=1000"),
            &good.replace("m=65536", "m=99999999999"),
            &good[..good.len() - 5],
        ] {
            assert!(!verify_password(bad, b"correct horse"), "{bad}");
        }
    }
}
