//! Raw header handling. IMAP wants header values byte-for-byte (no MIME
//! decoding), so these helpers work on the stored bytes rather than on
//! mail-parser's decoded values.

/// Iterates `(name, raw value)` of every field in a header block, stopping at
/// the blank line. Values still contain their folding line breaks.
pub(super) fn fields(block: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    let mut rest = block;
    std::iter::from_fn(move || {
        loop {
            if rest.is_empty() || rest[0] == b'\n' || rest.starts_with(b"\r\n") {
                return None;
            }
            let mut end = 0;
            loop {
                let line = rest[end..].iter().position(|&b| b == b'\n');
                end = line.map_or(rest.len(), |i| end + i + 1);
                if !matches!(rest.get(end), Some(b' ' | b'\t')) {
                    break;
                }
            }
            let (field, tail) = rest.split_at(end);
            rest = tail;
            // Lines without a colon are junk; skipping them keeps the rest usable.
            if let Some(colon) = field.iter().position(|&b| b == b':') {
                let name = field[..colon].trim_ascii_end();
                return Some((name, &field[colon + 1..]));
            }
        }
    })
}

/// First occurrence of a field, unfolded. Later duplicates are ignored, as
/// Dovecot does.
pub(super) fn get(block: &[u8], name: &str) -> Option<Vec<u8>> {
    fields(block)
        .find(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
        .map(|(_, v)| unfold(v))
}

/// Removes folding (a line break followed by whitespace keeps the whitespace),
/// leading whitespace and the field's own line break.
pub(super) fn unfold(v: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(v.len());
    let mut i = 0;
    while i < v.len() {
        let wsp_at = |j: usize| matches!(v.get(j), Some(b' ' | b'\t'));
        match v[i] {
            b'\r' if v.get(i + 1) == Some(&b'\n') && wsp_at(i + 2) => i += 2,
            b'\n' if wsp_at(i + 1) => i += 1,
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    while matches!(out.last(), Some(b'\r' | b'\n')) {
        out.pop();
    }
    let lead = out.iter().take_while(|b| matches!(b, b' ' | b'\t')).count();
    out.drain(..lead);
    out
}

/// Where the body starts when the header has to be found without
/// mail-parser's help: after the first empty line, at `start` if the first
/// line is not a header field, or at `end` if no empty line exists.
pub(super) fn header_end(raw: &[u8], start: usize, end: usize) -> usize {
    let data = raw.get(start..end).unwrap_or_default();
    if let Some(eol) = [&b"\r\n"[..], b"\n"].iter().find(|e| data.starts_with(e)) {
        return start + eol.len();
    }
    let name = data
        .iter()
        .take_while(|&&b| b > b' ' && b < 0x7f && b != b':');
    let name = name.count();
    if name == 0 || data.get(name) != Some(&b':') {
        return start;
    }
    let lf = data.windows(2).position(|w| w == b"\n\n").map(|i| i + 2);
    let crlf = data.windows(3).position(|w| w == b"\n\r\n").map(|i| i + 3);
    start + lf.into_iter().chain(crlf).min().unwrap_or(data.len())
}

/// Minimal RFC 5322 lexer shared by the MIME and address parsers.
pub(super) struct Cursor<'a> {
    s: &'a [u8],
    pos: usize,
}

pub(super) type Params = Vec<(Vec<u8>, Vec<u8>)>;

fn is_token(b: u8) -> bool {
    b > b' ' && b != 0x7f && !b"()<>@,;:\\\"/[]?=".contains(&b)
}

fn is_atext(b: u8) -> bool {
    b > b' ' && b != 0x7f && !b"()<>[]:;@\\,\"".contains(&b)
}

impl<'a> Cursor<'a> {
    pub(super) fn new(s: &'a [u8]) -> Self {
        Cursor { s, pos: 0 }
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    fn eat(&mut self, b: u8) -> bool {
        let hit = self.peek() == Some(b);
        if hit {
            self.pos += 1;
        }
        hit
    }

    fn take_while(&mut self, f: impl Fn(u8) -> bool) -> &'a [u8] {
        let start = self.pos;
        while self.peek().is_some_and(&f) {
            self.pos += 1;
        }
        &self.s[start..self.pos]
    }

    /// Skips whitespace and comments; returns the text of the last comment
    /// because a bare addr-spec takes its display name from it.
    fn skip_cfws(&mut self) -> Option<Vec<u8>> {
        let mut last = None;
        loop {
            self.take_while(|b| b.is_ascii_whitespace());
            if self.peek() != Some(b'(') {
                return last;
            }
            last = Some(self.enclosed(b'(', b')'));
        }
    }

    /// Reads a quoted string or a (nestable) comment, cursor on `open`:
    /// the content without delimiters, backslash escapes resolved.
    fn enclosed(&mut self, open: u8, close: u8) -> Vec<u8> {
        self.pos += 1;
        let (mut out, mut depth) = (Vec::new(), 1u32);
        while let Some(b) = self.peek() {
            self.pos += 1;
            if b == b'\\' {
                out.extend(self.peek());
                self.pos = (self.pos + 1).min(self.s.len());
                continue;
            } else if b == close {
                depth -= 1;
                if depth == 0 {
                    break;
                }
            } else if b == open {
                depth = depth.saturating_add(1);
            }
            out.push(b);
        }
        out
    }

    /// Words of a phrase or local-part: atoms (dots allowed, for obs-phrase)
    /// and quoted strings.
    fn words(&mut self, comment: &mut Option<Vec<u8>>) -> Vec<Vec<u8>> {
        let mut words = Vec::new();
        loop {
            if let Some(c) = self.skip_cfws() {
                *comment = Some(c);
            }
            match self.peek() {
                Some(b'"') => words.push(self.enclosed(b'"', b'"')),
                Some(b) if is_atext(b) => words.push(self.take_while(is_atext).to_vec()),
                _ => return words,
            }
        }
    }
}

/// `type/subtype` and parameters, or None when the value is not valid
/// (Dovecot then falls back to the defaults, and so do we).
pub(super) fn content_type(v: &[u8]) -> Option<(Vec<u8>, Vec<u8>, Params)> {
    let mut c = Cursor::new(v);
    c.skip_cfws();
    let ty = c.take_while(is_token).to_vec();
    c.skip_cfws();
    if ty.is_empty() || !c.eat(b'/') {
        return None;
    }
    c.skip_cfws();
    let sub = c.take_while(is_token).to_vec();
    c.skip_cfws();
    if sub.is_empty() || !matches!(c.peek(), None | Some(b';')) {
        return None;
    }
    Some((ty, sub, params(&mut c)))
}

/// Content-Disposition: a token and parameters.
pub(super) fn disposition(v: &[u8]) -> Option<(Vec<u8>, Params)> {
    let mut c = Cursor::new(v);
    c.skip_cfws();
    let kind = c.take_while(is_token).to_vec();
    (!kind.is_empty()).then(|| (kind, params(&mut c)))
}

/// The leading token of a value (Content-Transfer-Encoding).
pub(super) fn token(v: &[u8]) -> Option<Vec<u8>> {
    let mut c = Cursor::new(v);
    c.skip_cfws();
    let t = c.take_while(is_token);
    (!t.is_empty()).then(|| t.to_vec())
}

/// Content-Language: comma-separated language tags.
pub(super) fn languages(v: &[u8]) -> Vec<Vec<u8>> {
    let mut c = Cursor::new(v);
    let mut out = Vec::new();
    loop {
        c.skip_cfws();
        let tag = c.take_while(|b| b.is_ascii_alphanumeric() || b == b'-');
        if !tag.is_empty() {
            out.push(tag.to_vec());
        }
        c.skip_cfws();
        if !c.eat(b',') {
            return out;
        }
    }
}

/// Parameters after the type. Parsing stops at the first malformed one and
/// keeps what came before. RFC 2231 continuations are joined; an extended
/// value keeps its `charset'lang'` prefix and percent-encoding, under the
/// name with a trailing `*` (Dovecot's presentation).
fn params(c: &mut Cursor<'_>) -> Params {
    let mut plain = Vec::new();
    let mut pieces: Vec<(Vec<u8>, u32, bool, Vec<u8>)> = Vec::new();
    loop {
        c.skip_cfws();
        if !c.eat(b';') {
            break;
        }
        c.skip_cfws();
        let name = c.take_while(is_token).to_vec();
        c.skip_cfws();
        if name.is_empty() || !c.eat(b'=') {
            break;
        }
        c.skip_cfws();
        let value = match c.peek() {
            Some(b'"') => c.enclosed(b'"', b'"'),
            // Unquoted encoded-words and 8-bit names are common enough to accept.
            _ => c
                .take_while(|b| b >= 0x80 || is_token(b) || b == b'=' || b == b'?')
                .to_vec(),
        };
        let Some(star) = name.iter().position(|&b| b == b'*') else {
            plain.push((name, value));
            continue;
        };
        let (base, rest) = (&name[..star], &name[star + 1..]);
        let extended = rest.last() == Some(&b'*') || rest.is_empty();
        let digits = rest.strip_suffix(b"*").unwrap_or(rest);
        let index = std::str::from_utf8(digits)
            .ok()
            .and_then(|d| d.parse::<u32>().ok());
        match index {
            Some(i) => pieces.push((base.to_ascii_lowercase(), i, extended, value)),
            None => plain.push((name, value)),
        }
    }
    pieces.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
    let mut i = 0;
    while i < pieces.len() {
        let (base, _, extended, _) = &pieces[i];
        let mut name = base.clone();
        if *extended {
            name.push(b'*');
        }
        let mut value = Vec::new();
        while let Some(p) = pieces.get(i).filter(|p| p.0 == name[..base.len()]) {
            value.extend_from_slice(&p.3);
            i += 1;
        }
        plain.push((name, value));
    }
    plain
}

/// One IMAP address: group start is (NIL NIL name NIL), group end all NIL.
#[derive(Debug, Default, PartialEq)]
pub(super) struct Addr {
    pub name: Option<Vec<u8>>,
    pub adl: Option<Vec<u8>>,
    pub mailbox: Option<Vec<u8>>,
    pub host: Option<Vec<u8>>,
}

fn mailbox(name: Option<Vec<u8>>, adl: Option<Vec<u8>>, local: Vec<u8>, host: Vec<u8>) -> Addr {
    // NIL host would read as group syntax, so missing pieces get placeholders
    // (the same ones Dovecot uses).
    let or = |v: Vec<u8>, d: &str| Some(if v.is_empty() { d.into() } else { v });
    Addr {
        name: name.filter(|n| !n.is_empty()),
        adl,
        mailbox: or(local, "MISSING_MAILBOX"),
        host: or(host, "MISSING_DOMAIN"),
    }
}

fn domain(c: &mut Cursor<'_>, comment: &mut Option<Vec<u8>>) -> Vec<u8> {
    if let Some(cm) = c.skip_cfws() {
        *comment = Some(cm);
    }
    if c.peek() == Some(b'[') {
        let lit = c.take_while(|b| b != b']').to_vec();
        return if c.eat(b']') {
            [lit, b"]".to_vec()].concat()
        } else {
            lit
        };
    }
    c.words(comment).concat()
}

/// Parses an address-list header leniently: display names stay raw (encoded
/// words are not decoded, quoted strings are unquoted), a bare addr-spec uses
/// its comment as the name, junk characters are skipped.
pub(super) fn addresses(v: &[u8]) -> Vec<Addr> {
    let mut c = Cursor::new(v);
    let mut out = Vec::new();
    let mut in_group = false;
    loop {
        let mut comment = None;
        let words = c.words(&mut comment);
        let phrase = || (!words.is_empty()).then(|| words.join(&b' '));
        match c.peek() {
            Some(b'<') => {
                c.pos += 1;
                let mut adl = None;
                let save = c.pos;
                c.skip_cfws();
                if c.peek() == Some(b'@') {
                    let route = c.take_while(|b| b != b':' && b != b'>');
                    if c.eat(b':') {
                        adl = Some(route.trim_ascii().to_vec());
                    } else {
                        c.pos = save;
                    }
                }
                let local = c.words(&mut None).concat();
                let host = if c.eat(b'@') {
                    domain(&mut c, &mut None)
                } else {
                    Vec::new()
                };
                c.take_while(|b| b != b'>');
                c.eat(b'>');
                out.push(mailbox(phrase(), adl, local, host));
            }
            Some(b'@') => {
                c.pos += 1;
                let host = domain(&mut c, &mut comment);
                out.push(mailbox(comment, None, words.concat(), host));
            }
            Some(b':') if !in_group => {
                c.pos += 1;
                in_group = true;
                out.push(Addr {
                    mailbox: Some(phrase().unwrap_or_default()),
                    ..Addr::default()
                });
            }
            Some(b';') if in_group => {
                c.pos += 1;
                if !words.is_empty() {
                    out.push(mailbox(comment, None, words.concat(), Vec::new()));
                }
                in_group = false;
                out.push(Addr::default());
            }
            Some(b',') | None => {
                if !words.is_empty() {
                    out.push(mailbox(comment, None, words.concat(), Vec::new()));
                }
                if !c.eat(b',') {
                    break;
                }
            }
            Some(_) => c.pos += 1,
        }
    }
    if in_group {
        out.push(Addr::default());
    }
    out
}

/// The Content-* fields of one entity, raw but tokenised.
#[derive(Debug, Default)]
pub(super) struct MimeHeader {
    pub ctype: Option<(Vec<u8>, Vec<u8>)>,
    pub params: Params,
    pub cte: Option<Vec<u8>>,
    pub id: Option<Vec<u8>>,
    pub description: Option<Vec<u8>>,
    pub md5: Option<Vec<u8>>,
    pub location: Option<Vec<u8>>,
    pub disposition: Option<(Vec<u8>, Params)>,
    pub language: Vec<Vec<u8>>,
}

impl MimeHeader {
    /// `in_digest`: inside multipart/digest the default type is message/rfc822.
    pub(super) fn parse(block: &[u8], in_digest: bool) -> Self {
        let mut h = MimeHeader::default();
        for (name, raw) in fields(block) {
            let Some(rest) = name
                .get(8..)
                .filter(|_| name[..8].eq_ignore_ascii_case(b"content-"))
            else {
                continue;
            };
            let is = |n: &str| rest.eq_ignore_ascii_case(n.as_bytes());
            let once = |slot: &mut Option<Vec<u8>>| {
                slot.get_or_insert_with(|| unfold(raw));
            };
            if is("type") && h.ctype.is_none() {
                if let Some((t, s, p)) = content_type(&unfold(raw)) {
                    h.ctype = Some((t, s));
                    h.params = p;
                }
            } else if is("transfer-encoding") && h.cte.is_none() {
                h.cte = token(&unfold(raw));
            } else if is("disposition") && h.disposition.is_none() {
                h.disposition = disposition(&unfold(raw));
            } else if is("language") && h.language.is_empty() {
                h.language = languages(&unfold(raw));
            } else if is("id") {
                once(&mut h.id);
            } else if is("description") {
                once(&mut h.description);
            } else if is("md5") {
                once(&mut h.md5);
            } else if is("location") {
                once(&mut h.location);
            }
        }
        if h.ctype.is_none() && in_digest {
            h.ctype = Some((b"message".to_vec(), b"rfc822".to_vec()));
        }
        h
    }

    pub(super) fn param(&self, name: &str) -> Option<&[u8]> {
        self.params
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| v.as_slice())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unfolds_and_finds_first_field() {
        let block = b"Subject: a\r\n  b\tc\r\nX: 1\r\nsubject: second\r\n\r\nbody: no\r\n";
        assert_eq!(get(block, "SUBJECT").unwrap(), b"a  b\tc");
        assert_eq!(get(block, "body"), None);
        assert_eq!(unfold(b"  x\n y\r\n"), b"x y");
    }

    #[test]
    fn content_type_params_and_rfc2231() {
        let (t, s, p) = content_type(
            b" Text/Plain (comment); charset=\"utf-8\";\r\n title*1*=%20b; title*0*=us-ascii''a;\r\n name==?utf-8?q?x?=",
        )
        .unwrap();
        assert_eq!((t.as_slice(), s.as_slice()), (&b"Text"[..], &b"Plain"[..]));
        let want: Params = vec![
            (b"charset".to_vec(), b"utf-8".to_vec()),
            (b"name".to_vec(), b"=?utf-8?q?x?=".to_vec()),
            (b"title*".to_vec(), b"us-ascii''a%20b".to_vec()),
        ];
        assert_eq!(p, want);
        assert!(content_type(b"text").is_none());
        assert!(content_type(b"text/plain garbage").is_none());
    }

    #[test]
    fn address_forms() {
        let v = b"\"Joe Q. Public\" <john@example.com>, =?utf-8?q?J=C3=B6?= <j@x.org>,\r\n \
                  bare@host (Comment Name), Team: a@b, <@r1,@r2:c@d>;, root, <>";
        let got = addresses(v);
        let s = |x: &str| Some(x.as_bytes().to_vec());
        let m = |n: Option<Vec<u8>>, adl, mb: &str, h: &str| Addr {
            name: n,
            adl,
            mailbox: s(mb),
            host: s(h),
        };
        let want = vec![
            m(s("Joe Q. Public"), None, "john", "example.com"),
            m(s("=?utf-8?q?J=C3=B6?="), None, "j", "x.org"),
            m(s("Comment Name"), None, "bare", "host"),
            Addr {
                mailbox: s("Team"),
                ..Addr::default()
            },
            m(None, None, "a", "b"),
            m(None, s("@r1,@r2"), "c", "d"),
            Addr::default(),
            m(None, None, "root", "MISSING_DOMAIN"),
            m(None, None, "MISSING_MAILBOX", "MISSING_DOMAIN"),
        ];
        assert_eq!(got, want);
    }

    #[test]
    fn header_end_cases() {
        assert_eq!(header_end(b"A: b\r\n\r\nbody", 0, 12), 8);
        assert_eq!(header_end(b"no header here\r\n\r\nx", 0, 19), 0);
        assert_eq!(header_end(b"A: b\r\n", 0, 6), 6);
        assert_eq!(header_end(b"\r\nbody", 0, 6), 2);
    }
}
