//! Modified UTF-7, the mailbox-name encoding of IMAP4rev1 (RFC 3501 §5.1.3).
//!
//! Printable ASCII stands for itself ("&" is written "&-"); every other run of
//! characters is UTF-16, in base64 with "," for "/", no padding, between "&"
//! and "-". Decoding is strict: only the one canonical spelling of a name is
//! accepted, so two spellings can never name the same mailbox.

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";

/// Encodes a mailbox name into modified UTF-7.
pub fn encode(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut shifted: Vec<u16> = Vec::new();
    for ch in name.chars() {
        if matches!(ch, ' '..='~') {
            flush_shifted(&mut out, &mut shifted);
            if ch == '&' {
                out.push_str("&-");
            } else {
                out.push(ch);
            }
        } else {
            shifted.extend_from_slice(ch.encode_utf16(&mut [0; 2]));
        }
    }
    flush_shifted(&mut out, &mut shifted);
    out
}

fn flush_shifted(out: &mut String, units: &mut Vec<u16>) {
    if units.is_empty() {
        return;
    }
    out.push('&');
    let mut bits: u32 = 0;
    let mut held = 0;
    for byte in units.drain(..).flat_map(u16::to_be_bytes) {
        bits = (bits << 8) | u32::from(byte);
        held += 8;
        while held >= 6 {
            held -= 6;
            out.push(ALPHABET[((bits >> held) & 0x3f) as usize] as char);
        }
    }
    if held > 0 {
        out.push(ALPHABET[((bits << (6 - held)) & 0x3f) as usize] as char);
    }
    out.push('-');
}

/// Decodes a modified UTF-7 mailbox name. Returns None for anything that is
/// not the canonical encoding of some name: 8-bit or control characters, an
/// unterminated "&" shift, bad base64, broken UTF-16, a printable ASCII
/// character hidden in base64, or two shifts where one would do.
pub fn decode(encoded: &str) -> Option<String> {
    let bytes = encoded.as_bytes();
    if !bytes.iter().all(|b| (0x20..=0x7e).contains(b)) {
        return None;
    }
    let mut out = String::with_capacity(bytes.len());
    let mut rest = bytes;
    while let Some((&first, tail)) = rest.split_first() {
        if first != b'&' {
            out.push(first as char);
            rest = tail;
            continue;
        }
        let end = tail.iter().position(|&b| b == b'-')?;
        if end == 0 {
            out.push('&');
        } else {
            let units = decode_base64_utf16(&tail[..end])?;
            for ch in char::decode_utf16(units) {
                out.push(ch.ok()?);
            }
        }
        rest = &tail[end + 1..];
    }
    // Re-encoding is the simplest complete test for canonical form: it
    // catches encoded printable ASCII, split shifts and stray padding bits.
    (encode(&out) == encoded).then_some(out)
}

fn decode_base64_utf16(text: &[u8]) -> Option<Vec<u16>> {
    let mut bytes = Vec::with_capacity(text.len() * 3 / 4);
    let mut bits: u32 = 0;
    let mut held = 0;
    for &c in text {
        let value = ALPHABET.iter().position(|&a| a == c)?;
        bits = (bits << 6) | value as u32;
        held += 6;
        if held >= 8 {
            held -= 8;
            bytes.push((bits >> held) as u8);
        }
    }
    if bytes.len() % 2 != 0 {
        return None;
    }
    Some(
        bytes
            .chunks_exact(2)
            .map(|pair| u16::from_be_bytes([pair[0], pair[1]]))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_rfc_and_common_names() {
        for (plain, encoded) in [
            ("Entwürfe", "Entw&APw-rfe"),
            ("台北", "&U,BTFw-"),
            ("~peter/mail/台北/日本語", "~peter/mail/&U,BTFw-/&ZeVnLIqe-"),
            ("Tom & Jerry", "Tom &- Jerry"),
            ("INBOX", "INBOX"),
            ("", ""),
            ("😀 smile", "&2D3eAA- smile"),
            ("a\u{7f}b", "a&AH8-b"),
        ] {
            assert_eq!(encode(plain), encoded, "encoding {plain:?}");
            assert_eq!(
                decode(encoded).as_deref(),
                Some(plain),
                "decoding {encoded:?}"
            );
        }
    }

    #[test]
    fn rejects_non_canonical_and_malformed() {
        for bad in [
            "&AGE-",              // "a" must stand for itself
            "&U,BTFw",            // unterminated shift
            "&U,BTFw-&ZeVnLIqe-", // two adjacent shifts
            "&U,B!Fw-",           // not base64
            "&U,BTFx-",           // padding bits not zero
            "&AP-",               // half a UTF-16 unit
            "&2D0-",              // lone high surrogate
            "Entwürfe",           // 8-bit text is not modified UTF-7
            "tab\there",
            "&&-",
        ] {
            assert_eq!(decode(bad), None, "{bad:?} should be rejected");
        }
    }
}
