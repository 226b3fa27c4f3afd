//! SASL PLAIN (RFC 4616) and LOGIN decoding, shared by IMAP AUTHENTICATE and
//! POP3 AUTH. The protocol code drives the exchange; this turns the client's
//! lines into credentials.
//!
//! Base64 is strict RFC 4648 with the standard alphabet: padding required, no
//! whitespace, and non-zero bits after the last byte rejected. Neither IMAP
//! nor POP3 waives padding, so there is no reason to accept the ambiguity.

use std::fmt;

/// Longest user name or password accepted from a client, in bytes.
pub const MAX_FIELD_LEN: usize = 1024;
/// Longest base64 line accepted: room for PLAIN's three fields and two NULs.
pub const MAX_RESPONSE_LEN: usize = (3 * MAX_FIELD_LEN + 2).div_ceil(3) * 4;

/// LOGIN's challenges, already base64: "Username:" and "Password:".
pub const LOGIN_USERNAME_CHALLENGE: &str = "VXNlcm5hbWU6";
pub const LOGIN_PASSWORD_CHALLENGE: &str = "UGFzc3dvcmQ6";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaslError {
    /// The client sent `*`.
    Cancelled,
    BadBase64,
    TooLong,
    /// The decoded message does not have the mechanism's shape.
    Malformed(&'static str),
    /// PLAIN asked to act as someone else; we do not support proxy login.
    AuthzidMismatch,
}

impl fmt::Display for SaslError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SaslError::Cancelled => "authentication cancelled",
            SaslError::BadBase64 => "invalid base64",
            SaslError::TooLong => "response too long",
            SaslError::Malformed(what) => what,
            SaslError::AuthzidMismatch => "authorization identity not supported",
        })
    }
}

impl std::error::Error for SaslError {}

pub struct Credentials {
    pub username: String,
    pub password: Vec<u8>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Credentials {{ username: {:?}, password: <redacted> }}",
            self.username
        )
    }
}

/// Decodes a continuation line (CRLF already stripped). A lone `*` cancels
/// (IMAP: RFC 3501 §6.2.2; POP3: RFC 5034 §4).
pub fn decode_response(line: &str) -> Result<Vec<u8>, SaslError> {
    match line {
        "*" => Err(SaslError::Cancelled),
        _ if line.len() > MAX_RESPONSE_LEN => Err(SaslError::TooLong),
        _ => base64_decode(line).ok_or(SaslError::BadBase64),
    }
}

/// Decodes an initial response given with the command, where a lone `=` is
/// an empty one (RFC 4959 §3, RFC 5034 §4).
pub fn decode_initial_response(arg: &str) -> Result<Vec<u8>, SaslError> {
    if arg == "=" {
        return Ok(Vec::new());
    }
    decode_response(arg)
}

/// Parses a decoded PLAIN message: `[authzid] NUL authcid NUL passwd`.
pub fn parse_plain(msg: &[u8]) -> Result<Credentials, SaslError> {
    let mut parts = msg.splitn(3, |&b| b == 0);
    let (Some(authzid), Some(authcid), Some(pw)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(SaslError::Malformed("PLAIN needs two NUL separators"));
    };
    if pw.contains(&0) {
        return Err(SaslError::Malformed("NUL in password"));
    }
    let username = login_username(authcid)?;
    if !authzid.is_empty() && authzid != authcid {
        return Err(SaslError::AuthzidMismatch);
    }
    let password = login_password(pw)?;
    Ok(Credentials { username, password })
}

/// Checks the decoded reply to [`LOGIN_USERNAME_CHALLENGE`] (and PLAIN's
/// authcid). Control characters are refused so a name can be logged as is;
/// no valid account has one anyway.
pub fn login_username(msg: &[u8]) -> Result<String, SaslError> {
    let name = std::str::from_utf8(msg).map_err(|_| SaslError::Malformed("name not UTF-8"))?;
    if name.is_empty() || name.chars().any(char::is_control) {
        return Err(SaslError::Malformed(
            "empty name or control character in it",
        ));
    }
    if name.len() > MAX_FIELD_LEN {
        return Err(SaslError::TooLong);
    }
    Ok(name.to_string())
}

/// Checks the decoded reply to [`LOGIN_PASSWORD_CHALLENGE`] (and PLAIN's
/// passwd, which RFC 4616 requires to be non-empty).
pub fn login_password(msg: &[u8]) -> Result<Vec<u8>, SaslError> {
    match msg.len() {
        0 => Err(SaslError::Malformed("empty password")),
        n if n > MAX_FIELD_LEN => Err(SaslError::TooLong),
        _ => Ok(msg.to_vec()),
    }
}

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

pub fn base64_encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let n = (0..3).fold(0u32, |n, i| n << 8 | u32::from(*chunk.get(i).unwrap_or(&0)));
        for i in 0..4 {
            let sextet = (n >> (18 - 6 * i)) as usize & 63;
            out.push(if i <= chunk.len() {
                char::from(ALPHABET[sextet])
            } else {
                '='
            });
        }
    }
    out
}

/// `None` for anything that is not canonical, padded base64.
pub fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let bytes = text.as_bytes();
    if bytes.len() % 4 != 0 {
        return None;
    }
    let mut out = Vec::with_capacity(bytes.len() / 4 * 3);
    let quads = bytes.chunks_exact(4);
    let last = quads.len().saturating_sub(1);
    for (i, quad) in quads.enumerate() {
        let pad = quad.iter().rev().take_while(|&&c| c == b'=').count();
        if pad > 2 || (pad > 0 && i != last) {
            return None;
        }
        let mut n = 0u32;
        for &c in &quad[..4 - pad] {
            n = n << 6 | ALPHABET.iter().position(|&a| a == c)? as u32;
        }
        let [_, b0, b1, b2] = (n << (6 * pad)).to_be_bytes();
        // Bits under the padding must be zero, or two texts would decode to
        // the same bytes.
        let decoded = [b0, b1, b2];
        if decoded[3 - pad..].iter().any(|&b| b != 0) {
            return None;
        }
        out.extend_from_slice(&decoded[..3 - pad]);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::SaslError::*;
    use super::*;

    fn plain(raw: &[u8]) -> Result<Credentials, SaslError> {
        parse_plain(&decode_initial_response(&base64_encode(raw))?)
    }

    #[test]
    fn base64_vectors_and_strictness() {
        // RFC 4648 §10.
        let good = [
            "", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy",
        ];
        for (len, enc) in good.into_iter().enumerate() {
            assert_eq!(base64_encode(&b"foobar"[..len]), enc);
            assert_eq!(base64_decode(enc).as_deref(), Some(&b"foobar"[..len]));
        }
        assert_eq!(base64_encode(b"Username:"), LOGIN_USERNAME_CHALLENGE);
        assert_eq!(base64_encode(b"Password:"), LOGIN_PASSWORD_CHALLENGE);
        let all: Vec<u8> = (0..=255).collect();
        assert_eq!(base64_decode(&base64_encode(&all)), Some(all));
        let bad = [
            "Zg", "Zg=", "Zg==Zg==", "Z===", "Zh==", "Zm9=", "Zm 9v", "Zm9v\r\n", "Zm-v",
        ];
        for bad in bad.into_iter().chain(["====", "Zé==", "Zm8"]) {
            assert_eq!(base64_decode(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn plain_rfc_examples() {
        // RFC 4616 §4: "tim" with password "tanstaaftanstaaf", no authzid.
        let c = plain(b"\0tim\0tanstaaftanstaaf").expect("tim");
        assert_eq!(
            (c.username.as_str(), &c.password[..]),
            ("tim", &b"tanstaaftanstaaf"[..])
        );
        assert!(!format!("{c:?}").contains("tanstaaf"));
        // Its other example asks to act as "Ursel" while logging in as "Kurt".
        assert_eq!(
            plain(b"Ursel\0Kurt\0xipj3plmq").err(),
            Some(AuthzidMismatch)
        );
        // RFC 4959 §3: authzid, authcid and password all "test"; an authzid
        // equal to the authcid is the same as none.
        let c = decode_initial_response("dGVzdAB0ZXN0AHRlc3Q=").and_then(|m| parse_plain(&m));
        assert_eq!(
            c.map(|c| (c.username, c.password)),
            Ok(("test".into(), b"test".to_vec()))
        );
    }

    #[test]
    fn plain_rejects_bad_messages() {
        let no_nul = Malformed("PLAIN needs two NUL separators");
        let bad_name = Malformed("empty name or control character in it");
        let cases: [(&[u8], _); 8] = [
            (b"", no_nul),
            (b"\0tim", no_nul),
            (b"\0\0pw", bad_name),
            (b"\0t\nim\0pw", bad_name),
            (b"\0\xff\0pw", Malformed("name not UTF-8")),
            (b"\0tim\0", Malformed("empty password")),
            (b"\0tim\0p\0w", Malformed("NUL in password")),
            (
                &[&[0][..], &[b'a'; MAX_FIELD_LEN + 1], b"\0pw"].concat(),
                TooLong,
            ),
        ];
        for (msg, want) in cases {
            assert_eq!(plain(msg).err(), Some(want), "{msg:?}");
        }
        assert_eq!(decode_response("AHRpbQB0aW0=!").err(), Some(BadBase64));
        let long = "A".repeat(MAX_RESPONSE_LEN + 4);
        assert_eq!(decode_initial_response(&long).err(), Some(TooLong));
    }

    #[test]
    fn cancel_empty_and_login() {
        assert_eq!(decode_response("*").err(), Some(Cancelled));
        assert_eq!(decode_initial_response("="), Ok(Vec::new()));
        assert_eq!(decode_response("=").err(), Some(BadBase64));
        let user = decode_response("dGlt").and_then(|m| login_username(&m));
        assert_eq!(user.as_deref(), Ok("tim"));
        let pw = decode_response("dGFuc3RhYWY=").and_then(|m| login_password(&m));
        assert_eq!(pw.as_deref(), Ok(&b"tanstaaf"[..]));
        assert!(login_username(b"").is_err() && login_password(b"").is_err());
        assert_eq!(
            login_password(&[b'x'; MAX_FIELD_LEN + 1]).err(),
            Some(TooLong)
        );
    }
}
