//! Building IMAP responses: strings, flag lists, mailbox names.

use crate::store::Flags;

/// The system flags a client may see and set, in the order shown.
pub const SYSTEM_FLAGS: [(Flags, &str); 5] = [
    (Flags::ANSWERED, "\\Answered"),
    (Flags::FLAGGED, "\\Flagged"),
    (Flags::DELETED, "\\Deleted"),
    (Flags::SEEN, "\\Seen"),
    (Flags::DRAFT, "\\Draft"),
];

/// `(\Seen $Label1)`: a message's flags and keywords as FETCH FLAGS shows
/// them. Flags letterbox keeps for itself never appear.
pub fn flag_list(out: &mut Vec<u8>, flags: Flags, keywords: &[String]) {
    flag_list_recent(out, flags, keywords, false);
}

/// [`flag_list`], with `\Recent` for a message recent in this session.
pub fn flag_list_recent(out: &mut Vec<u8>, flags: Flags, keywords: &[String], recent: bool) {
    out.push(b'(');
    let mut first = true;
    let recent = recent.then_some("\\Recent");
    for name in SYSTEM_FLAGS
        .iter()
        .filter(|(flag, _)| flags.contains(*flag))
        .map(|(_, name)| *name)
        .chain(recent)
    {
        if !first {
            out.push(b' ');
        }
        out.extend_from_slice(name.as_bytes());
        first = false;
    }
    for keyword in keywords {
        if !first {
            out.push(b' ');
        }
        out.extend_from_slice(keyword.as_bytes());
        first = false;
    }
    out.push(b')');
}

/// The FLAGS and PERMANENTFLAGS responses for a mailbox with these
/// keywords: SELECT sends them, and so does any later update that brings a
/// keyword the client has not been told of (RFC 9051 §7.3.5).
pub fn flags_announcement(out: &mut Vec<u8>, keywords: &[String], read_only: bool) {
    let keyword_list: String = keywords.iter().map(|k| format!(" {k}")).collect();
    out.extend_from_slice(
        format!("* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft{keyword_list})\r\n")
            .as_bytes(),
    );
    if read_only {
        out.extend_from_slice(b"* OK [PERMANENTFLAGS ()] Read-only mailbox\r\n");
    } else {
        // `\*` only while the mailbox can take another keyword.
        let more = if keywords.len() < crate::store::MAX_MAILBOX_KEYWORDS {
            " \\*"
        } else {
            ""
        };
        out.extend_from_slice(
            format!("* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft{keyword_list}{more})] Flags permitted\r\n")
                .as_bytes(),
        );
    }
}

/// A string as a quoted string when it can be one, else as a literal (the
/// same rule ENVELOPE and BODYSTRUCTURE follow).
pub fn string(out: &mut Vec<u8>, value: &[u8]) {
    crate::mime::imap_syntax::string(out, value);
}

/// `{n}\r\n` and the bytes.
pub fn literal(out: &mut Vec<u8>, value: &[u8]) {
    out.extend_from_slice(format!("{{{}}}\r\n", value.len()).as_bytes());
    out.extend_from_slice(value);
}

/// A mailbox name as the client expects it: UTF-8 once it enabled UTF8=ACCEPT
/// or IMAP4rev2, modified UTF-7 otherwise.
pub fn mailbox_name(out: &mut Vec<u8>, name: &str, utf8: bool) {
    if name == "INBOX" {
        out.extend_from_slice(b"\"INBOX\"");
    } else if utf8 {
        // UTF-8 names go as quoted strings when they have no specials; the
        // quoted form allows 8-bit text once UTF8=ACCEPT is on.
        let simple = !name
            .bytes()
            .any(|b| b == b'"' || b == b'\\' || b < 0x20 || b == 0x7f);
        if simple {
            out.push(b'"');
            out.extend_from_slice(name.as_bytes());
            out.push(b'"');
        } else {
            literal(out, name.as_bytes());
        }
    } else {
        string(out, super::mutf7::encode(name).as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_and_flags() {
        let mut out = Vec::new();
        string(&mut out, b"a \"b\" \\c");
        assert_eq!(out, b"\"a \\\"b\\\" \\\\c\"");
        out.clear();
        string(&mut out, "grüße".as_bytes());
        assert_eq!(out, "{7}\r\ngrüße".as_bytes());
        out.clear();
        flag_list(
            &mut out,
            Flags::SEEN.with(Flags::ANSWERED).with(Flags::POP3_HIDDEN),
            &["$Work".into()],
        );
        assert_eq!(out, b"(\\Answered \\Seen $Work)");
        out.clear();
        mailbox_name(&mut out, "Entwürfe", false);
        assert_eq!(out, b"\"Entw&APw-rfe\"");
        out.clear();
        mailbox_name(&mut out, "Entwürfe", true);
        assert_eq!(out, "\"Entwürfe\"".as_bytes());
    }
}
