//! `application/x-www-form-urlencoded` bodies and percent-decoding.

/// The pairs of a form body, percent-decoded (`+` is a space), in order.
/// Invalid UTF-8 is replaced, never trusted.
pub fn parse(body: &[u8]) -> Vec<(String, String)> {
    body.split(|&b| b == b'&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = match pair.iter().position(|&b| b == b'=') {
                Some(i) => (&pair[..i], &pair[i + 1..]),
                None => (pair, &b""[..]),
            };
            (decode(key, true), decode(value, true))
        })
        .collect()
}

/// The first value of `name`.
pub fn get<'a>(form: &'a [(String, String)], name: &str) -> Option<&'a str> {
    form.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// Every value of `name`, in order.
pub fn all<'a>(form: &'a [(String, String)], name: &'a str) -> impl Iterator<Item = &'a str> {
    form.iter()
        .filter(move |(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// Percent-decodes a path segment (`+` stays `+`).
pub fn percent_decode(text: &str) -> String {
    decode(text.as_bytes(), false)
}

fn decode(raw: &[u8], plus_is_space: bool) -> String {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        match raw[i] {
            b'+' if plus_is_space => out.push(b' '),
            b'%' if i + 2 < raw.len() => match (hex(raw[i + 1]), hex(raw[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// Percent-encodes everything but RFC 3986's unreserved characters: for
/// URL path segments and RFC 8187 values alike.
pub fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_pairs() {
        let form = parse(b"uids=1%2C2&add=%5CSeen&add=%5CFlagged&name=a+b&empty&bad=%zz%4");
        assert_eq!(get(&form, "uids"), Some("1,2"));
        assert_eq!(
            all(&form, "add").collect::<Vec<_>>(),
            ["\\Seen", "\\Flagged"]
        );
        assert_eq!(get(&form, "name"), Some("a b"));
        assert_eq!(get(&form, "empty"), Some(""));
        assert_eq!(get(&form, "bad"), Some("%zz%4"));
        assert_eq!(percent_decode("a%40b+c%2F"), "a@b+c/");
        assert_eq!(percent_encode("ä b/<"), "%C3%A4%20b%2F%3C");
    }
}
