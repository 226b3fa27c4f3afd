//! A small JSON writer: the web interface only ever writes JSON (requests
//! come as forms), so a serializer crate would be weight without use.

use std::fmt::Write;

/// Appends `s` as a JSON string literal, quotes included. Besides the
/// escapes JSON requires, `<`, `>` and `&` are escaped so that a value can
/// never close a `<script>` or start markup wherever the text lands.
pub fn push_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Builds one JSON object, field by field.
pub struct Object {
    out: String,
    empty: bool,
}

impl Default for Object {
    fn default() -> Self {
        Object::new()
    }
}

impl Object {
    pub fn new() -> Object {
        Object {
            out: String::from("{"),
            empty: true,
        }
    }

    fn key(&mut self, key: &str) {
        if !self.empty {
            self.out.push(',');
        }
        self.empty = false;
        push_str(&mut self.out, key);
        self.out.push(':');
    }

    pub fn str(&mut self, key: &str, value: &str) -> &mut Self {
        self.key(key);
        push_str(&mut self.out, value);
        self
    }

    pub fn num(&mut self, key: &str, value: impl Into<i128>) -> &mut Self {
        self.key(key);
        let _ = write!(self.out, "{}", value.into());
        self
    }

    pub fn bool(&mut self, key: &str, value: bool) -> &mut Self {
        self.key(key);
        self.out.push_str(if value { "true" } else { "false" });
        self
    }

    pub fn null(&mut self, key: &str) -> &mut Self {
        self.key(key);
        self.out.push_str("null");
        self
    }

    /// A value that is already JSON (an [`Object`] or [`Array`] finished).
    pub fn raw(&mut self, key: &str, json: &str) -> &mut Self {
        self.key(key);
        self.out.push_str(json);
        self
    }

    pub fn finish(&mut self) -> String {
        let mut out = std::mem::take(&mut self.out);
        out.push('}');
        out
    }
}

/// Builds one JSON array of already-written JSON values.
#[derive(Default)]
pub struct Array {
    out: String,
}

impl Array {
    pub fn new() -> Array {
        Array::default()
    }

    pub fn raw(&mut self, json: &str) -> &mut Self {
        self.out.push(if self.out.is_empty() { '[' } else { ',' });
        self.out.push_str(json);
        self
    }

    pub fn str(&mut self, value: &str) -> &mut Self {
        let mut s = String::new();
        push_str(&mut s, value);
        self.raw(&s)
    }

    pub fn finish(&mut self) -> String {
        let mut out = std::mem::take(&mut self.out);
        if out.is_empty() {
            out.push('[');
        }
        out.push(']');
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_cannot_break_out() {
        let mut o = Object::new();
        o.str("s", "a\"b\\c\n</script><x>&\u{1}\u{2028}")
            .num("n", -3)
            .bool("b", true)
            .null("z");
        assert_eq!(
            o.finish(),
            r#"{"s":"a\"b\\c\n\u003c/script\u003e\u003cx\u003e\u0026\u0001\u2028","n":-3,"b":true,"z":null}"#
        );
    }

    #[test]
    fn arrays_nest() {
        let mut inner = Object::new();
        inner.num("id", 1u32);
        let mut a = Array::new();
        a.raw(&inner.finish()).str("x");
        assert_eq!(a.finish(), r#"[{"id":1},"x"]"#);
        assert_eq!(Array::new().finish(), "[]");
    }
}
