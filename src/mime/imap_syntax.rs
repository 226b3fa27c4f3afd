//! Rendering of ENVELOPE, BODY and BODYSTRUCTURE (RFC 9051 §7.5.2, RFC 3501
//! §7.4.2 and the formal syntax). Where the RFCs leave a choice the output
//! follows Dovecot: types, subtypes and parameters as written in the message,
//! header values raw.

use super::header::{self, Addr, Params};
use super::{Entity, LineIndex, Shape};

/// Writes `v` as a quoted string when IMAP allows it (7-bit, no CR/LF),
/// otherwise as a literal. NUL is legal in neither form, so it is dropped.
pub(crate) fn string(out: &mut Vec<u8>, v: &[u8]) {
    let owned;
    let v = if v.contains(&0) {
        owned = v.iter().copied().filter(|&b| b != 0).collect::<Vec<u8>>();
        &owned[..]
    } else {
        v
    };
    if v.iter().all(|&b| b < 0x80 && b != b'\r' && b != b'\n') {
        out.push(b'"');
        for &b in v {
            if b == b'"' || b == b'\\' {
                out.push(b'\\');
            }
            out.push(b);
        }
        out.push(b'"');
    } else {
        out.extend_from_slice(format!("{{{}}}\r\n", v.len()).as_bytes());
        out.extend_from_slice(v);
    }
}

fn nstring(out: &mut Vec<u8>, v: Option<&[u8]>) {
    match v {
        Some(v) => string(out, v),
        None => out.extend_from_slice(b"NIL"),
    }
}

fn address_list(out: &mut Vec<u8>, list: &[Addr]) {
    if list.is_empty() {
        out.extend_from_slice(b"NIL");
        return;
    }
    out.push(b'(');
    for a in list {
        out.push(b'(');
        for (i, f) in [&a.name, &a.adl, &a.mailbox, &a.host]
            .into_iter()
            .enumerate()
        {
            if i > 0 {
                out.push(b' ');
            }
            nstring(out, f.as_deref());
        }
        out.push(b')');
    }
    out.push(b')');
}

const ENVELOPE_FIELDS: [&str; 10] = [
    "date",
    "subject",
    "from",
    "sender",
    "reply-to",
    "to",
    "cc",
    "bcc",
    "in-reply-to",
    "message-id",
];

/// ENVELOPE of the message whose header block is `block`.
pub(super) fn envelope(out: &mut Vec<u8>, block: &[u8]) {
    let mut vals: [Option<&[u8]>; 10] = [None; 10];
    for (name, value) in header::fields(block) {
        if let Some(i) = ENVELOPE_FIELDS
            .iter()
            .position(|f| name.eq_ignore_ascii_case(f.as_bytes()))
        {
            vals[i].get_or_insert(value);
        }
    }
    let text = |i: usize| vals[i].map(header::unfold);
    let addrs = |i: usize| {
        vals[i]
            .map(|v| header::addresses(&header::unfold(v)))
            .unwrap_or_default()
    };
    out.push(b'(');
    nstring(out, text(0).as_deref());
    out.push(b' ');
    nstring(out, text(1).as_deref());
    let from = addrs(2);
    for i in 2..8 {
        out.push(b' ');
        let list = addrs(i);
        // RFC 3501: absent or empty Sender/Reply-To repeat From.
        let use_from = (i == 3 || i == 4) && list.is_empty();
        address_list(out, if use_from { &from } else { &list });
    }
    for i in 8..10 {
        out.push(b' ');
        nstring(out, text(i).as_deref());
    }
    out.push(b')');
}

fn param_list(out: &mut Vec<u8>, params: &Params, add_charset: bool) {
    if params.is_empty() && !add_charset {
        out.extend_from_slice(b"NIL");
        return;
    }
    out.push(b'(');
    for (i, (k, v)) in params.iter().enumerate() {
        if i > 0 {
            out.push(b' ');
        }
        string(out, k);
        out.push(b' ');
        string(out, v);
    }
    if add_charset {
        if !params.is_empty() {
            out.push(b' ');
        }
        out.extend_from_slice(b"\"charset\" \"us-ascii\"");
    }
    out.push(b')');
}

/// disposition, language and location: the extension fields both body forms share.
fn common_extension(out: &mut Vec<u8>, e: &Entity) {
    out.push(b' ');
    match &e.hdr.disposition {
        Some((kind, params)) => {
            out.push(b'(');
            string(out, kind);
            out.push(b' ');
            param_list(out, params, false);
            out.push(b')');
        }
        None => out.extend_from_slice(b"NIL"),
    }
    out.push(b' ');
    if e.hdr.language.is_empty() {
        out.extend_from_slice(b"NIL");
    } else {
        out.push(b'(');
        for (i, l) in e.hdr.language.iter().enumerate() {
            if i > 0 {
                out.push(b' ');
            }
            string(out, l);
        }
        out.push(b')');
    }
    out.push(b' ');
    nstring(out, e.hdr.location.as_deref());
}

/// One parenthesised `body`; `ext` selects BODYSTRUCTURE over BODY.
pub(super) fn body(out: &mut Vec<u8>, e: &Entity, raw: &[u8], lines: &LineIndex, ext: bool) {
    out.push(b'(');
    if let Shape::Multipart(kids) = &e.shape {
        for k in kids {
            body(out, k, raw, lines, ext);
        }
        out.push(b' ');
        let sub = e.hdr.ctype.as_ref().map_or(&b"mixed"[..], |c| &c.1);
        string(out, sub);
        if ext {
            out.push(b' ');
            param_list(out, &e.hdr.params, false);
            common_extension(out, e);
        }
        out.push(b')');
        return;
    }
    let (ty, sub, opaque) = e.media();
    let text = ty.eq_ignore_ascii_case(b"text");
    string(out, ty);
    out.push(b' ');
    string(out, sub);
    out.push(b' ');
    if opaque {
        out.extend_from_slice(b"NIL");
    } else {
        param_list(out, &e.hdr.params, text && e.hdr.param("charset").is_none());
    }
    out.push(b' ');
    nstring(out, e.hdr.id.as_deref());
    out.push(b' ');
    nstring(out, e.hdr.description.as_deref());
    out.push(b' ');
    string(out, e.hdr.cte.as_deref().unwrap_or(b"7BIT"));
    out.extend_from_slice(format!(" {}", e.be - e.bs).as_bytes());
    if let Shape::Message(inner) = &e.shape {
        out.push(b' ');
        envelope(
            out,
            raw.get(inner.hs as usize..inner.bs as usize)
                .unwrap_or_default(),
        );
        out.push(b' ');
        body(out, inner, raw, lines, ext);
    }
    if text || matches!(e.shape, Shape::Message(_)) {
        out.extend_from_slice(format!(" {}", lines.count(e.bs, e.be)).as_bytes());
    }
    if ext {
        out.push(b' ');
        nstring(out, e.hdr.md5.as_deref());
        common_extension(out, e);
    }
    out.push(b')');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_rules() {
        let s = |v: &[u8]| {
            let mut o = Vec::new();
            string(&mut o, v);
            o
        };
        assert_eq!(s(b"plain"), b"\"plain\"");
        assert_eq!(s(b"a \"q\" \\ b"), b"\"a \\\"q\\\" \\\\ b\"");
        assert_eq!(s("é".as_bytes()), b"{2}\r\n\xc3\xa9");
        assert_eq!(s(b"a\rb"), b"{3}\r\na\rb");
        assert_eq!(s(b"a\0b"), b"\"ab\"");
        assert_eq!(s(b""), b"\"\"");
    }
}
