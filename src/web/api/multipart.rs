//! `multipart/form-data` bodies (RFC 7578), as the compose form sends
//! them. Sans-IO and bounded: the body is already read (and bounded by
//! `--max-message-size`); the parser limits the number of parts and the
//! size of each part's header, and borrows the parts' contents from the
//! body instead of copying them.

/// The most parts one form may have.
pub const MAX_PARTS: usize = 128;
/// The most bytes of one part's header block.
pub const MAX_PART_HEADER: usize = 8 * 1024;
/// RFC 2046 §5.1.1: a boundary is 1 to 70 characters.
const MAX_BOUNDARY: usize = 70;

/// One field or file of the form.
#[derive(Debug, PartialEq, Eq)]
pub struct Field<'a> {
    pub name: String,
    /// Set for a file, even an empty name.
    pub filename: Option<String>,
    pub content_type: Option<String>,
    pub data: &'a [u8],
}

/// Why a body was refused; the text is for a person.
#[derive(Debug, PartialEq, Eq)]
pub struct Malformed(pub &'static str);

/// The boundary named by a `Content-Type: multipart/form-data; boundary=…`.
pub fn boundary(content_type: &str) -> Result<String, Malformed> {
    let mut pieces = content_type.split(';');
    let kind = pieces.next().unwrap_or_default().trim();
    if !kind.eq_ignore_ascii_case("multipart/form-data") {
        return Err(Malformed("expected a multipart/form-data body"));
    }
    for piece in pieces {
        let Some((key, value)) = piece.split_once('=') else {
            continue;
        };
        if key.trim().eq_ignore_ascii_case("boundary") {
            let value = value.trim();
            let value = value
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(value);
            if value.is_empty()
                || value.len() > MAX_BOUNDARY
                || !value.bytes().all(|b| b.is_ascii_graphic() || b == b' ')
            {
                return Err(Malformed("the multipart boundary is invalid"));
            }
            return Ok(value.to_string());
        }
    }
    Err(Malformed("the multipart body has no boundary"))
}

/// Where `needle` first occurs: a scan for its first byte, then a compare.
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    let (&first, _) = needle.split_first()?;
    let last_start = haystack.len().checked_sub(needle.len())?;
    let mut at = 0;
    while at <= last_start {
        let i = at + haystack[at..=last_start].iter().position(|&b| b == first)?;
        if haystack[i..].starts_with(needle) {
            return Some(i);
        }
        at = i + 1;
    }
    None
}

/// Splits a form body into its fields.
pub fn parse<'a>(content_type: &str, body: &'a [u8]) -> Result<Vec<Field<'a>>, Malformed> {
    let boundary = boundary(content_type)?;
    let opening = format!("--{boundary}");
    let delimiter = format!("\r\n--{boundary}");
    // The preamble is ignored; the first delimiter may start the body.
    let mut at = if body.starts_with(opening.as_bytes()) {
        opening.len()
    } else {
        find(body, delimiter.as_bytes()).ok_or(Malformed("the multipart body has no parts"))?
            + delimiter.len()
    };
    let mut fields = Vec::new();
    loop {
        let rest = &body[at..];
        if rest.starts_with(b"--") {
            return Ok(fields);
        }
        // Transport padding, then the line break ending the delimiter line.
        let line_end = find(rest, b"\r\n").ok_or(Malformed("a multipart part is cut off"))?;
        if !rest[..line_end].iter().all(|&b| b == b' ' || b == b'\t') {
            return Err(Malformed("text after a multipart boundary"));
        }
        let part_start = at + line_end + 2;
        let part = &body[part_start..];
        let header_end = if part.starts_with(b"\r\n") {
            0
        } else {
            let window = &part[..part.len().min(MAX_PART_HEADER + 4)];
            find(window, b"\r\n\r\n").ok_or(Malformed(
                "a multipart part's header is too long or cut off",
            ))? + 2
        };
        let header = &part[..header_end];
        let data_start = part_start + header_end + 2;
        let data_len = find(&body[data_start..], delimiter.as_bytes()).ok_or(Malformed(
            "the multipart body does not end with its boundary",
        ))?;
        if fields.len() == MAX_PARTS {
            return Err(Malformed("the form has too many parts"));
        }
        fields.push(field(header, &body[data_start..data_start + data_len])?);
        at = data_start + data_len + delimiter.len();
    }
}

fn field<'a>(header: &[u8], data: &'a [u8]) -> Result<Field<'a>, Malformed> {
    let header =
        std::str::from_utf8(header).map_err(|_| Malformed("a part's header is not UTF-8"))?;
    let mut name = None;
    let mut filename = None;
    let mut content_type = None;
    for line in header.split("\r\n").filter(|l| !l.is_empty()) {
        let Some((key, value)) = line.split_once(':') else {
            return Err(Malformed("a part's header line has no colon"));
        };
        let value = value.trim();
        if key.eq_ignore_ascii_case("content-disposition") {
            let (kind, params) = value.split_once(';').unwrap_or((value, ""));
            if !kind.trim().eq_ignore_ascii_case("form-data") {
                return Err(Malformed("a part is not form-data"));
            }
            for (key, value) in parameters(params)? {
                match key.to_ascii_lowercase().as_str() {
                    "name" => name = Some(value),
                    "filename" => filename = Some(value),
                    _ => {}
                }
            }
        } else if key.eq_ignore_ascii_case("content-type") {
            content_type = Some(value.to_string());
        }
    }
    Ok(Field {
        name: name.ok_or(Malformed("a part has no name"))?,
        filename,
        content_type,
        data,
    })
}

/// `; name="a"; filename="b \"c\".txt"` → pairs. Browsers send names as
/// UTF-8 in quotes, with `"` as `%22` (WHATWG) or `\"` (older ones).
fn parameters(text: &str) -> Result<Vec<(String, String)>, Malformed> {
    let mut out = Vec::new();
    let mut rest = text.trim_start_matches([';', ' ', '\t']);
    while !rest.is_empty() {
        let eq = rest
            .find('=')
            .ok_or(Malformed("a parameter has no value"))?;
        let key = rest[..eq].trim().to_string();
        rest = rest[eq + 1..].trim_start();
        let value;
        if let Some(quoted) = rest.strip_prefix('"') {
            let mut text = String::new();
            let mut chars = quoted.char_indices();
            let mut end = None;
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, escaped)) = chars.next() {
                            text.push(escaped);
                        }
                    }
                    '"' => {
                        end = Some(i);
                        break;
                    }
                    c => text.push(c),
                }
            }
            let end = end.ok_or(Malformed("a quoted parameter does not end"))?;
            value = text.replace("%22", "\"");
            rest = &quoted[end + 1..];
        } else {
            let end = rest.find(';').unwrap_or(rest.len());
            value = rest[..end].trim().to_string();
            rest = &rest[end..];
        }
        out.push((key, value));
        rest = rest.trim_start_matches([';', ' ', '\t']);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TYPE: &str = "multipart/form-data; boundary=----xyz";

    #[test]
    fn reads_fields_and_files() {
        let body = b"------xyz\r\n\
            Content-Disposition: form-data; name=\"to\"\r\n\r\n\
            bob@example.org\r\n\
            ------xyz\r\n\
            Content-Disposition: form-data; name=\"attachment\"; filename=\"r\xc3\xa9 %22q%22.txt\"\r\n\
            Content-Type: text/plain\r\n\r\n\
            line1\r\nline2\r\n\
            ------xyz\r\n\
            Content-Disposition: form-data; name=\"empty\"\r\n\r\n\
            \r\n\
            ------xyz--\r\n";
        let fields = parse(TYPE, body).unwrap();
        assert_eq!(fields.len(), 3);
        assert_eq!(fields[0].name, "to");
        assert_eq!(fields[0].data, b"bob@example.org");
        assert_eq!(fields[1].filename.as_deref(), Some("r\u{e9} \"q\".txt"));
        assert_eq!(fields[1].content_type.as_deref(), Some("text/plain"));
        assert_eq!(fields[1].data, b"line1\r\nline2");
        assert_eq!(fields[2].data, b"");
    }

    #[test]
    fn refuses_bad_bodies() {
        assert!(parse("text/plain", b"").is_err());
        assert!(parse("multipart/form-data", b"").is_err());
        assert!(parse(
            TYPE,
            b"------xyz\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nno end"
        )
        .is_err());
        assert!(parse(TYPE, b"------xyz\r\nno colon\r\n\r\nx\r\n------xyz--").is_err());
        let mut many = Vec::new();
        for _ in 0..=MAX_PARTS {
            many.extend_from_slice(
                b"------xyz\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nx\r\n",
            );
        }
        many.extend_from_slice(b"------xyz--");
        assert_eq!(
            parse(TYPE, &many),
            Err(Malformed("the form has too many parts"))
        );
        let long = format!(
            "------xyz\r\nContent-Disposition: form-data; name=\"a\"\r\nX: {}\r\n\r\nx\r\n------xyz--",
            "a".repeat(MAX_PART_HEADER)
        );
        assert!(parse(TYPE, long.as_bytes()).is_err());
    }
}
