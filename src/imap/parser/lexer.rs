//! The cursor and the lexical pieces every command is made of: atoms,
//! strings, literals, numbers and mailbox names.

use super::{is_astring_char, is_atom_char, Parsed, Parser};

impl Parser {
    // ---- cursor ----

    pub(super) fn literal_here(&self) -> bool {
        self.literals
            .get(self.next_literal)
            .is_some_and(|l| l.offset == self.pos)
    }

    /// The next text byte; None at the end and where a literal sits.
    pub(super) fn peek(&self) -> Option<u8> {
        if self.literal_here() {
            return None;
        }
        self.text.get(self.pos).copied()
    }

    pub(super) fn at_end(&self) -> bool {
        !self.literal_here() && self.pos >= self.text.len()
    }

    pub(super) fn eat(&mut self, b: u8) -> bool {
        let found = self.peek() == Some(b);
        self.pos += usize::from(found);
        found
    }

    /// Consumes text bytes while `pred` holds, never past a literal.
    pub(super) fn take_while(&mut self, pred: impl Fn(u8) -> bool) -> &[u8] {
        let text = &self.text;
        let limit = self
            .literals
            .get(self.next_literal)
            .map_or(text.len(), |l| l.offset);
        let start = self.pos;
        while self.pos < limit && pred(text[self.pos]) {
            self.pos += 1;
        }
        &text[start..self.pos]
    }

    pub(super) fn take_literal(&mut self) -> Option<(Vec<u8>, bool)> {
        if !self.literal_here() {
            return None;
        }
        let literal = self.literals.get_mut(self.next_literal)?;
        self.next_literal += 1;
        Some((std::mem::take(&mut literal.data), literal.binary))
    }

    /// A short, printable account of what is at the cursor, for errors.
    pub(super) fn found(&self) -> String {
        if self.literal_here() {
            return "a literal".into();
        }
        let rest = self.text.get(self.pos..).unwrap_or_default();
        let shown = String::from_utf8_lossy(&rest[..rest.len().min(20)])
            .escape_default()
            .to_string();
        let more = if rest.len() > 20 { "..." } else { "" };
        format!("\"{shown}{more}\"")
    }

    pub(super) fn expected(&self, what: &str) -> String {
        if self.at_end() {
            format!("missing {what}")
        } else {
            format!("expected {what}, found {}", self.found())
        }
    }

    pub(super) fn expect(&mut self, b: u8, what: &str) -> Parsed<()> {
        if self.eat(b) {
            Ok(())
        } else {
            Err(self.expected(what))
        }
    }

    /// The SP before an argument named `next`.
    pub(super) fn sp(&mut self, next: &str) -> Parsed<()> {
        if self.eat(b' ') {
            Ok(())
        } else if self.at_end() {
            Err(format!("missing {next}"))
        } else {
            Err(format!("expected SP before {next}, found {}", self.found()))
        }
    }

    /// True, and consumed, if the next atom is `word` (case-insensitively).
    pub(super) fn eat_word(&mut self, word: &str) -> bool {
        let start = self.pos;
        let matches = self
            .take_while(is_atom_char)
            .eq_ignore_ascii_case(word.as_bytes());
        if !matches {
            self.pos = start;
        }
        matches
    }

    /// A `(item SP item ...)` list.
    pub(super) fn paren_list<T>(
        &mut self,
        what: &str,
        allow_empty: bool,
        mut item: impl FnMut(&mut Self) -> Parsed<T>,
    ) -> Parsed<Vec<T>> {
        self.expect(b'(', &format!("( to open {what}"))?;
        let mut items = Vec::new();
        if self.eat(b')') {
            return if allow_empty {
                Ok(items)
            } else {
                Err(format!("empty {what}"))
            };
        }
        loop {
            items.push(item(self)?);
            if self.eat(b')') {
                return Ok(items);
            }
            if !self.eat(b' ') {
                return Err(self.expected(&format!("SP or ) in {what}")));
            }
        }
    }

    // ---- tokens ----

    pub(super) fn atom(&mut self, what: &str) -> Parsed<String> {
        let atom = self.take_while(is_atom_char);
        if atom.is_empty() {
            return Err(self.expected(what));
        }
        Ok(String::from_utf8_lossy(atom).into_owned())
    }

    pub(super) fn upper_atom(&mut self, what: &str) -> Parsed<String> {
        Ok(self.atom(what)?.to_ascii_uppercase())
    }

    pub(super) fn quoted(&mut self) -> Parsed<Option<Vec<u8>>> {
        if !self.eat(b'"') {
            return Ok(None);
        }
        let mut value = Vec::new();
        loop {
            match self.peek() {
                None => return Err("unterminated quoted string".into()),
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(Some(value));
                }
                Some(b'\\') => {
                    self.pos += 1;
                    match self.peek() {
                        Some(c @ (b'"' | b'\\')) => value.push(c),
                        _ => {
                            return Err(
                                "bad escape in quoted string: only \\\" and \\\\ are allowed"
                                    .into(),
                            )
                        }
                    }
                }
                Some(b'\r' | b'\n' | 0) => return Err("CR, LF or NUL in quoted string".into()),
                Some(c) => value.push(c),
            }
            self.pos += 1;
        }
    }

    /// A literal; literal8 only where `allow_binary` (APPEND's message).
    pub(super) fn literal(&mut self, allow_binary: bool) -> Parsed<Option<(Vec<u8>, bool)>> {
        let Some((data, binary)) = self.take_literal() else {
            return Ok(None);
        };
        if binary && !allow_binary {
            return Err("literal8 (~{n}) is only allowed for an APPEND message".into());
        }
        if !binary && data.contains(&0) {
            return Err("literal contains NUL; binary data needs literal8 (~{n})".into());
        }
        Ok(Some((data, binary)))
    }

    pub(super) fn string(&mut self, what: &str) -> Parsed<Vec<u8>> {
        if let Some(value) = self.quoted()? {
            return Ok(value);
        }
        match self.literal(false)? {
            Some((data, _)) => Ok(data),
            None => Err(self.expected(what)),
        }
    }

    pub(super) fn astring(&mut self, what: &str) -> Parsed<Vec<u8>> {
        if self.peek().is_some_and(is_astring_char) {
            return Ok(self.take_while(is_astring_char).to_vec());
        }
        self.string(what)
    }

    pub(super) fn utf8_astring(&mut self, what: &str) -> Parsed<String> {
        String::from_utf8(self.astring(what)?).map_err(|_| format!("{what} is not UTF-8"))
    }

    pub(super) fn nstring(&mut self, what: &str) -> Parsed<Option<Vec<u8>>> {
        if self.eat_word("NIL") {
            return Ok(None);
        }
        self.string(what).map(Some)
    }

    pub(super) fn mailbox(&mut self) -> Parsed<Vec<u8>> {
        self.astring("mailbox name")
    }

    pub(super) fn sp_mailbox(&mut self) -> Parsed<Vec<u8>> {
        self.sp("mailbox name")?;
        self.mailbox()
    }

    pub(super) fn number64(&mut self, what: &str) -> Parsed<u64> {
        self.bounded_number(what, i64::MAX as u64)
    }

    pub(super) fn number(&mut self, what: &str) -> Parsed<u32> {
        self.bounded_number(what, u64::from(u32::MAX))
            .map(|n| n as u32)
    }

    /// Digits up to `max`. Every number in the grammar goes through here or
    /// [`too_large`], so a number out of range is always reported the same
    /// way, with the digits as the client sent them.
    fn bounded_number(&mut self, what: &str, max: u64) -> Parsed<u64> {
        let digits = self.take_while(|b| b.is_ascii_digit());
        if digits.is_empty() {
            return Err(self.expected(what));
        }
        parse_decimal(digits)
            .filter(|&n| n <= max)
            .ok_or_else(|| too_large(what, digits, max))
    }

    pub(super) fn nz_number(&mut self, what: &str) -> Parsed<u32> {
        match self.number(what)? {
            0 => Err(format!("{what} must not be 0")),
            n => Ok(n),
        }
    }

    pub(super) fn header_name(&mut self) -> Parsed<String> {
        let name = self.astring("header field name")?;
        // RFC 5322 ftext: printable ASCII but ":".
        if name.is_empty() || !name.iter().all(|&b| matches!(b, 33..=57 | 59..=126)) {
            return Err(format!(
                "invalid header field name \"{}\"",
                String::from_utf8_lossy(&name).escape_default()
            ));
        }
        Ok(String::from_utf8_lossy(&name).into_owned())
    }
}

/// The one message for a number out of range: `what 99999999999 is too large (the limit is 4294967295)`.
pub(super) fn too_large(what: &str, digits: &[u8], max: u64) -> String {
    format!(
        "{what} {} is too large (the limit is {max})",
        String::from_utf8_lossy(digits)
    )
}

pub(super) fn parse_decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &d| {
        n.checked_mul(10)?
            .checked_add(u64::from(d.wrapping_sub(b'0')))
    })
}

pub(super) fn fixed_number(digits: &[u8], len: usize) -> Option<u32> {
    if digits.len() != len || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    parse_decimal(digits).and_then(|n| u32::try_from(n).ok())
}
