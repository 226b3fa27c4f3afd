//! A mail's HTML made into a document for the sandboxed frame: the second
//! line of defence, behind the frame's sandbox (no scripts, no forms, no
//! top navigation) and the route's `default-src 'none'` CSP.
//!
//! It is a rewriter, not a full HTML parser: it reads tags and attributes
//! the way the HTML tokenizer does and writes back only what it read and
//! judged, so nothing reaches the browser unexamined:
//! - text is copied with every `<` escaped: only tags written here open
//!   markup;
//! - tags are written again from their parts: a name of letters, digits
//!   and `-`, attributes with vetted names and double-quoted values in
//!   which `"`, `<` and `>` are escaped, so no value can close a `<style>`
//!   or open a tag;
//! - `<script>`, `<iframe>`, `<object>`, `<embed>`, `<svg>`, `<math>` and
//!   the like go with everything inside them; `<form>`, its controls,
//!   `<meta>`, `<link>`, `<base>`, comments and doctypes go, their
//!   contents stay;
//! - `on*` event attributes go; URLs stay only when they are http(s) or
//!   mailto links, `#` anchors, `cid:` references (rewritten to the
//!   message's own image route) or `data:` raster images;
//! - a `<base target="_blank">` in front makes links open in a new tab.

use super::form::percent_encode;

/// Elements dropped with everything inside them.
const DROP_WITH_CONTENT: &[&str] = &[
    "script",
    "iframe",
    "object",
    "embed",
    "applet",
    "frame",
    "frameset",
    "noembed",
    "noframes",
    "svg",
    "math",
    "template",
    "title",
    "xmp",
    "portal",
    "plaintext",
];
/// Elements whose tags are dropped and whose contents stay.
const DROP_TAG: &[&str] = &[
    "html", "head", "body", "meta", "link", "base", "form", "input", "button", "select",
    "textarea", "keygen", "noscript", "param", "source", "track", "dialog",
];
/// Attributes that hold a URL.
const URL_ATTRIBUTES: &[&str] = &[
    "href",
    "src",
    "background",
    "poster",
    "cite",
    "longdesc",
    "lowsrc",
    "dynsrc",
    "xlink:href",
    "data",
    "codebase",
    "action",
    "formaction",
    "usemap",
    "manifest",
    "profile",
    "icon",
];
/// Attributes that never stay, whatever their value.
const DROP_ATTRIBUTES: &[&str] = &[
    "srcdoc",
    "srcset",
    "http-equiv",
    "target",
    "ping",
    "rel",
    "is",
    "nonce",
    "autofocus",
];

/// The document for the frame: the mail's HTML, rewritten as above.
/// `cid_base` is the URL that a `cid:` reference's id is appended to.
pub fn sanitize(html: &str, cid_base: &str) -> String {
    let mut out = String::with_capacity(html.len() + 128);
    out.push_str("<!DOCTYPE html><meta charset=\"utf-8\"><base target=\"_blank\">");
    let bytes = html.as_bytes();
    let mut i = 0;
    // Inside an element dropped with its contents: its name and nesting.
    let mut skipping: Option<(String, u32)> = None;
    while i < bytes.len() {
        if bytes[i] != b'<' {
            let end = html[i..].find('<').map_or(bytes.len(), |n| i + n);
            if skipping.is_none() {
                out.push_str(&html[i..end]);
            }
            i = end;
            continue;
        }
        let rest = &html[i..];
        if let Some(comment) = rest.strip_prefix("<!--") {
            // A comment: gone, up to its end (or the end of the input).
            i = comment.find("-->").map_or(bytes.len(), |n| i + 4 + n + 3);
            continue;
        }
        let next = bytes.get(i + 1).copied();
        match next {
            Some(b'!') | Some(b'?') => {
                // Doctype, CDATA, processing instruction: gone.
                i = rest.find('>').map_or(bytes.len(), |n| i + n + 1);
            }
            Some(b'/') if bytes.get(i + 2).is_some_and(u8::is_ascii_alphabetic) => {
                let Some(tag) = Tag::read(html, i + 2) else {
                    break;
                };
                i = tag.end;
                if let Some((name, depth)) = &mut skipping {
                    if *name == tag.name {
                        *depth -= 1;
                        if *depth == 0 {
                            skipping = None;
                        }
                    }
                    continue;
                }
                if valid_name(&tag.name)
                    && !DROP_TAG.contains(&tag.name.as_str())
                    && !DROP_WITH_CONTENT.contains(&tag.name.as_str())
                {
                    out.push_str("</");
                    out.push_str(&tag.name);
                    out.push('>');
                }
            }
            Some(c) if c.is_ascii_alphabetic() => {
                let Some(tag) = Tag::read(html, i + 1) else {
                    // A tag the input ends inside: the browser drops it too.
                    break;
                };
                i = tag.end;
                if let Some((name, depth)) = &mut skipping {
                    if *name == tag.name && !tag.self_closing {
                        *depth = depth.saturating_add(1);
                    }
                    continue;
                }
                if DROP_WITH_CONTENT.contains(&tag.name.as_str()) {
                    if !tag.self_closing && tag.name != "embed" {
                        skipping = Some((tag.name, 1));
                    }
                    continue;
                }
                if !valid_name(&tag.name) || DROP_TAG.contains(&tag.name.as_str()) {
                    continue;
                }
                write_tag(&mut out, &tag, cid_base);
            }
            _ => {
                if skipping.is_none() {
                    out.push_str("&lt;");
                }
                i += 1;
            }
        }
    }
    out
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

fn valid_attribute(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b':' | b'.')
        })
}

/// One start or end tag as the HTML tokenizer reads it.
struct Tag {
    /// Lowercased.
    name: String,
    /// (lowercased name, raw value with its entities) in order.
    attributes: Vec<(String, Option<String>)>,
    self_closing: bool,
    /// Just past the closing `>`.
    end: usize,
}

impl Tag {
    /// Reads from the tag name at `start` up to its `>`; None when the
    /// input ends first.
    fn read(html: &str, start: usize) -> Option<Tag> {
        let b = html.as_bytes();
        let space = |c: u8| matches!(c, b' ' | b'\t' | b'\n' | b'\r' | b'\x0c');
        let mut i = start;
        while i < b.len() && !space(b[i]) && b[i] != b'/' && b[i] != b'>' {
            i += 1;
        }
        let name = html[start..i].to_ascii_lowercase();
        let mut attributes = Vec::new();
        let mut self_closing = false;
        loop {
            while i < b.len() && (space(b[i]) || b[i] == b'/') {
                self_closing = b[i] == b'/';
                i += 1;
            }
            match b.get(i)? {
                b'>' => {
                    return Some(Tag {
                        name,
                        attributes,
                        self_closing,
                        end: i + 1,
                    })
                }
                _ => self_closing = false,
            }
            // An attribute name; a leading `=` belongs to it (as in HTML).
            let name_start = i;
            i += 1;
            while i < b.len() && !space(b[i]) && !matches!(b[i], b'/' | b'>' | b'=') {
                i += 1;
            }
            let attr = html[name_start..i].to_ascii_lowercase();
            let mut j = i;
            while j < b.len() && space(b[j]) {
                j += 1;
            }
            if b.get(j) != Some(&b'=') {
                attributes.push((attr, None));
                continue;
            }
            i = j + 1;
            while i < b.len() && space(b[i]) {
                i += 1;
            }
            let value = match b.get(i)? {
                &quote @ (b'"' | b'\'') => {
                    let close = html[i + 1..].find(quote as char)? + i + 1;
                    let value = &html[i + 1..close];
                    i = close + 1;
                    value
                }
                _ => {
                    let value_start = i;
                    while i < b.len() && !space(b[i]) && b[i] != b'>' {
                        i += 1;
                    }
                    &html[value_start..i]
                }
            };
            attributes.push((attr, Some(value.to_string())));
        }
    }
}

fn write_tag(out: &mut String, tag: &Tag, cid_base: &str) {
    out.push('<');
    out.push_str(&tag.name);
    let mut seen: Vec<&str> = Vec::new();
    for (name, value) in &tag.attributes {
        if !valid_attribute(name)
            || name.starts_with("on")
            || DROP_ATTRIBUTES.contains(&name.as_str())
            || seen.contains(&name.as_str())
        {
            continue;
        }
        // As in HTML, the first of a repeated attribute is the one.
        seen.push(name);
        let value = match value {
            Some(value) if URL_ATTRIBUTES.contains(&name.as_str()) => {
                match vet_url(&tag.name, name, value, cid_base) {
                    Some(url) => Some(url),
                    None => continue,
                }
            }
            Some(value) => Some(value.clone()),
            None if URL_ATTRIBUTES.contains(&name.as_str()) => continue,
            None => None,
        };
        out.push(' ');
        out.push_str(name);
        if let Some(value) = value {
            out.push_str("=\"");
            for c in value.chars() {
                match c {
                    '"' => out.push_str("&quot;"),
                    '<' => out.push_str("&lt;"),
                    '>' => out.push_str("&gt;"),
                    c => out.push(c),
                }
            }
            out.push('"');
        }
    }
    if matches!(tag.name.as_str(), "a" | "area") {
        out.push_str(" rel=\"noopener noreferrer\"");
    }
    out.push('>');
}

/// The URL to write for an attribute, or None to drop the attribute.
/// Judged after decoding character references and removing what a
/// browser ignores in a URL (whitespace and control characters), so
/// `jav&#x61;script:` and `java\tscript:` are seen for what they are.
fn vet_url(element: &str, attribute: &str, raw: &str, cid_base: &str) -> Option<String> {
    let decoded: String = decode_references(raw)
        .chars()
        .filter(|c| !c.is_whitespace() && !c.is_control())
        .collect();
    let lower = decoded.to_ascii_lowercase();
    if let Some(id) = lower
        .get(..4)
        .filter(|p| *p == "cid:")
        .map(|_| &decoded[4..])
    {
        return Some(format!("{cid_base}{}", percent_encode(id)));
    }
    let link = matches!(attribute, "href" | "xlink:href") && matches!(element, "a" | "area");
    if link && (lower.starts_with("mailto:") || lower.starts_with('#')) {
        return Some(raw.to_string());
    }
    let image_source = attribute == "src" && element == "img";
    if image_source
        && [
            "data:image/png",
            "data:image/jpeg",
            "data:image/gif",
            "data:image/webp",
        ]
        .iter()
        .any(|p| lower.starts_with(p))
    {
        return Some(raw.to_string());
    }
    let web = lower.starts_with("https://") || lower.starts_with("http://");
    // Remote images, backgrounds and links; the CSP decides whether an
    // image loads. Anything relative would point into this server.
    (web && (link || matches!(attribute, "src" | "background" | "poster"))).then(|| raw.to_string())
}

/// Decodes numeric character references and the named ones that matter
/// in a URL's scheme; others stay as written (as a browser keeps an
/// unknown one).
fn decode_references(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        let end = rest[1..]
            .find(|c: char| !c.is_ascii_alphanumeric() && c != '#')
            .map_or(rest.len(), |n| n + 1);
        let name = &rest[1..end];
        let decoded = if let Some(number) = name.strip_prefix('#') {
            let value = match number.strip_prefix(['x', 'X']) {
                Some(hex) => u32::from_str_radix(hex, 16).ok(),
                None => number.parse::<u32>().ok(),
            };
            value.map(|v| char::from_u32(v).unwrap_or('\u{fffd}'))
        } else {
            match name.to_ascii_lowercase().as_str() {
                "colon" => Some(':'),
                "tab" => Some('\t'),
                "newline" => Some('\n'),
                "sol" => Some('/'),
                "amp" => Some('&'),
                "num" => Some('#'),
                "lpar" => Some('('),
                "period" => Some('.'),
                _ => None,
            }
        };
        match decoded {
            Some(c) if name.len() > 1 => {
                out.push(c);
                rest = &rest[end..];
                rest = rest.strip_prefix(';').unwrap_or(rest);
            }
            _ => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clean(html: &str) -> String {
        let out = sanitize(html, "/api/folders/3/messages/7/cid/");
        out.strip_prefix("<!DOCTYPE html><meta charset=\"utf-8\"><base target=\"_blank\">")
            .unwrap()
            .to_string()
    }

    #[test]
    fn scripts_and_handlers_go() {
        assert_eq!(clean("a<script>alert(1)</script>b"), "ab");
        assert_eq!(clean("<SCRIPT src=x></SCRIPT >b"), "b");
        assert_eq!(clean("<img src=x onerror=alert(1)>"), "<img>");
        assert_eq!(clean("<svg onload=alert(1)><g/></svg>x"), "x");
        assert_eq!(clean("<iframe src=/></iframe>y"), "y");
        assert_eq!(clean("<object data=x><embed src=y></object>z"), "z");
        assert_eq!(clean("<embed src=y>z"), "z");
        assert_eq!(clean("<body onload=x><p>t</p></body>"), "<p>t</p>");
        assert_eq!(
            clean("<math><mi xlink:href=javascript:x>t</mi></math>u"),
            "u"
        );
    }

    #[test]
    fn links_are_vetted() {
        assert_eq!(
            clean("<a href=\"javascript:alert(1)\">x</a>"),
            "<a rel=\"noopener noreferrer\">x</a>"
        );
        assert_eq!(
            clean("<a href=\"jav&#x61;script&colon;x\">x</a>"),
            "<a rel=\"noopener noreferrer\">x</a>"
        );
        assert_eq!(
            clean("<a href=\"java\tscript:x\" target=_top>x</a>"),
            "<a rel=\"noopener noreferrer\">x</a>"
        );
        assert_eq!(
            clean("<a href=\"data:text/html,<script>x</script>\">x</a>"),
            "<a rel=\"noopener noreferrer\">x</a>"
        );
        assert_eq!(
            clean("<a href='https://example.org/?a=1&amp;b=\"2\"'>x</a>"),
            "<a href=\"https://example.org/?a=1&amp;b=&quot;2&quot;\" rel=\"noopener noreferrer\">x</a>"
        );
        assert_eq!(
            clean("<a href=mailto:bob@example.org>m</a>"),
            "<a href=\"mailto:bob@example.org\" rel=\"noopener noreferrer\">m</a>"
        );
        assert_eq!(
            clean("<a href=/api/folders/1/delete>x</a>"),
            "<a rel=\"noopener noreferrer\">x</a>"
        );
    }

    #[test]
    fn meta_base_and_forms_go() {
        assert_eq!(
            clean("<meta http-equiv=refresh content=\"0;url=http://x\">t"),
            "t"
        );
        assert_eq!(clean("<base href=http://evil/>t"), "t");
        assert_eq!(
            clean("<form action=/api/send method=post><input name=to><button>go</button></form>"),
            "go"
        );
        assert_eq!(clean("<!-- <script>x</script> -->t<!DOCTYPE x>"), "t");
    }

    #[test]
    fn images_and_cids() {
        assert_eq!(
            clean("<img src=\"cid:part1.abc@example\">"),
            "<img src=\"/api/folders/3/messages/7/cid/part1.abc%40example\">"
        );
        assert_eq!(
            clean("<img src=\"http://remote.example/t.png\">"),
            "<img src=\"http://remote.example/t.png\">"
        );
        assert_eq!(clean("<img src=\"data:image/svg+xml,<svg>\">"), "<img>");
        assert_eq!(
            clean("<img src=\"data:image/png;base64,AAAA\">"),
            "<img src=\"data:image/png;base64,AAAA\">"
        );
        assert_eq!(clean("<img src=/api/folders/1/messages/2>"), "<img>");
    }

    #[test]
    fn nothing_breaks_out_of_style_or_attributes() {
        assert_eq!(
            clean("<style><b title=\"</style><img src=x onerror=alert(1)>\"></style>"),
            "<style><b title=\"&lt;/style&gt;&lt;img src=x onerror=alert(1)&gt;\"></style>"
        );
        assert_eq!(clean("a < b <3 <"), "a &lt; b &lt;3 &lt;");
        assert_eq!(clean("<p title=\"unclosed>t"), "");
        assert_eq!(clean("<p a\"b=1 c=2>"), "<p c=\"2\">");
        assert_eq!(clean("<x:y>t</x:y>"), "t");
    }
}
