//! `i;unicode-casemap` (RFC 5051) and the base subject of RFC 5256 §2.1.

use unicode_normalization::UnicodeNormalization;

/// The RFC 5051 form of `text`: each character mapped to its titlecase,
/// then the whole decomposed (NFKD), so that "ä", "Ä" and "a\u{308}" compare
/// equal. Two such strings compare with a plain byte comparison.
///
/// Rust's standard library has no titlecase mapping; uppercase is the same
/// for every character except a few digraphs (ǅ-style), and where the
/// uppercase is more than one character ("ß" → "SS") the titlecase mapping
/// of UnicodeData keeps the character, so it is kept here too.
pub fn casemap(text: &str) -> String {
    let titled = text.chars().map(|c| {
        let mut upper = c.to_uppercase();
        match (upper.next(), upper.next()) {
            (Some(u), None) => u,
            _ => c,
        }
    });
    titled.nfkd().collect()
}

/// The RFC 5256 §2.1 base subject of a decoded subject, and whether
/// anything marking a reply or forward ("Re:", "Fwd:", "(fwd)", "[fwd: …]")
/// was taken off. The result is not yet casemapped.
pub fn base_subject(subject: &str) -> (String, bool) {
    // Step 1: tabs and line breaks become spaces, runs of spaces one space.
    let mut text = String::with_capacity(subject.len());
    let mut space = false;
    for c in subject.chars() {
        if matches!(c, ' ' | '\t' | '\r' | '\n') {
            space = true;
        } else {
            if space && !text.is_empty() {
                text.push(' ');
            }
            space = false;
            text.push(c);
        }
    }
    let mut s: &str = &text;
    let mut reply = false;
    loop {
        // Step 2: trailers "(fwd)" and spaces.
        loop {
            let trimmed = s.trim_end_matches(' ');
            if let Some(head) = strip_suffix_ci(trimmed, "(fwd)") {
                reply = true;
                s = head;
            } else {
                s = trimmed;
                break;
            }
        }
        // Steps 3 to 5: leaders ("Re:", "[blob] Fwd:", spaces), then one
        // blob if something is left after it, until nothing changes.
        loop {
            let before = s.len();
            loop {
                let trimmed = s.trim_start_matches(' ');
                if trimmed.len() != s.len() {
                    s = trimmed;
                    continue;
                }
                match strip_refwd_leader(s) {
                    Some(rest) => {
                        reply = true;
                        s = rest;
                    }
                    None => break,
                }
            }
            if let Some(rest) = strip_blob(s) {
                if !rest.is_empty() {
                    s = rest;
                }
            }
            if s.len() == before {
                break;
            }
        }
        // Step 6: "[fwd: subject]" wraps a forwarded subject.
        if let Some(inner) = strip_prefix_ci(s, "[fwd:").and_then(|r| r.strip_suffix(']')) {
            reply = true;
            s = inner;
            continue;
        }
        break;
    }
    (s.to_string(), reply)
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

fn strip_suffix_ci<'a>(s: &'a str, suffix: &str) -> Option<&'a str> {
    let at = s.len().checked_sub(suffix.len())?;
    let tail = s.get(at..)?;
    tail.eq_ignore_ascii_case(suffix).then(|| &s[..at])
}

/// `subj-blob = "[" *BLOBCHAR "]" *WSP`: what follows it.
fn strip_blob(s: &str) -> Option<&str> {
    let rest = s.strip_prefix('[')?;
    let end = rest.find(['[', ']'])?;
    let rest = rest[end..].strip_prefix(']')?;
    Some(rest.trim_start_matches(' '))
}

/// `*subj-blob subj-refwd` with `subj-refwd = ("re" / ("fw" ["d"])) *WSP
/// [subj-blob] ":"`: what follows it.
fn strip_refwd_leader(s: &str) -> Option<&str> {
    let mut rest = s;
    while let Some(after) = strip_blob(rest) {
        rest = after;
    }
    rest = if let Some(r) = strip_prefix_ci(rest, "re") {
        r
    } else if let Some(r) = strip_prefix_ci(rest, "fwd") {
        r
    } else {
        strip_prefix_ci(rest, "fw")?
    };
    rest = rest.trim_start_matches(' ');
    if let Some(after) = strip_blob(rest) {
        rest = after;
    }
    rest.strip_prefix(':')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base(s: &str) -> (String, bool) {
        base_subject(s)
    }

    #[test]
    fn base_subjects_follow_rfc_5256() {
        assert_eq!(base("Hello"), ("Hello".into(), false));
        assert_eq!(base("Re: Hello"), ("Hello".into(), true));
        assert_eq!(base("RE:  re: Hello "), ("Hello".into(), true));
        assert_eq!(base("Fwd: Hello (fwd)"), ("Hello".into(), true));
        assert_eq!(base("Fw: Hello"), ("Hello".into(), true));
        assert_eq!(base("[list] Re: Hello"), ("Hello".into(), true));
        assert_eq!(base("Re [list]: Hello"), ("Hello".into(), true));
        assert_eq!(base("[list] Hello"), ("Hello".into(), false));
        assert_eq!(base("[Fwd: Re: Hello]"), ("Hello".into(), true));
        assert_eq!(base("[fwd: [list] Hello] (fwd)"), ("Hello".into(), true));
        // A blob that is the whole subject stays.
        assert_eq!(base("[list]"), ("[list]".into(), false));
        assert_eq!(base("Re: [list]"), ("[list]".into(), true));
        assert_eq!(base("Reply"), ("Reply".into(), false));
        assert_eq!(base("Re:"), ("".into(), true));
        assert_eq!(
            base("\tRe:\r\n\tHello   world"),
            ("Hello world".into(), true)
        );
        assert_eq!(base(""), ("".into(), false));
        assert_eq!(base("Re: Fwd: [a] [b] Re: x"), ("x".into(), true));
        // Non-ASCII text next to the markers never splits a character.
        assert_eq!(base("Ré: ü"), ("Ré: ü".into(), false));
        assert_eq!(base("[ä"), ("[ä".into(), false));
    }

    #[test]
    fn casemap_folds_case_and_decomposes() {
        assert_eq!(casemap("abc"), casemap("ABC"));
        assert_eq!(casemap("Ärger"), casemap("a\u{308}rger"));
        assert!(casemap("Ärger") > casemap("Apfel"));
        assert!(casemap("Ärger") < casemap("B"));
        assert_eq!(casemap("ß"), "ß");
        // Titlecase puts letters before '_' as uppercase does.
        assert!(casemap("z") < casemap("_"));
    }
}
