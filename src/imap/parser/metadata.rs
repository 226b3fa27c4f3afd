//! GETMETADATA and SETMETADATA (RFC 5464 §4.2, §4.3), and the rules an
//! entry name must keep: they are checked here, so a name with a wildcard
//! or a `..` level is a BAD before the session sees it.

use super::{Parsed, Parser};

/// The most entries one GETMETADATA or SETMETADATA may name.
pub const MAX_METADATA_ENTRIES: usize = 100;
/// The longest entry name, in bytes.
pub const MAX_ENTRY_NAME: usize = 256;

/// GETMETADATA's DEPTH (RFC 5464 §4.2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetadataDepth {
    /// The entry only.
    Zero,
    /// The entry and its children.
    One,
    /// The entry and everything below it.
    Infinity,
}

impl Parser {
    pub(super) fn getmetadata(&mut self) -> Parsed<super::CommandBody> {
        self.sp("GETMETADATA options or mailbox name")?;
        let mut depth = None;
        let mut max_size = None;
        if self.peek() == Some(b'(') {
            self.paren_list("GETMETADATA options", false, |p| {
                let option = p.upper_atom("GETMETADATA option (MAXSIZE or DEPTH)")?;
                p.sp(&format!("value of {option}"))?;
                match option.as_str() {
                    "MAXSIZE" if max_size.is_none() => {
                        max_size = Some(p.number("MAXSIZE value")?);
                    }
                    "DEPTH" if depth.is_none() => {
                        let value = p.atom("DEPTH value")?;
                        depth = Some(match value.to_ascii_lowercase().as_str() {
                            "0" => MetadataDepth::Zero,
                            "1" => MetadataDepth::One,
                            "infinity" => MetadataDepth::Infinity,
                            _ => {
                                return Err(format!(
                                    "DEPTH must be 0, 1 or infinity, not {}",
                                    value.chars().take(20).collect::<String>()
                                ))
                            }
                        });
                    }
                    "MAXSIZE" | "DEPTH" => return Err(format!("{option} given twice")),
                    _ => {
                        return Err(format!(
                            "unknown GETMETADATA option {}",
                            option.chars().take(40).collect::<String>()
                        ))
                    }
                }
                Ok(())
            })?;
            self.sp("mailbox name")?;
        }
        let mailbox = self.mailbox()?;
        self.sp("entry names")?;
        let entries = if self.peek() == Some(b'(') {
            self.paren_list("entry names", false, |p| p.entry_name(true))?
        } else {
            vec![self.entry_name(true)?]
        };
        if entries.len() > MAX_METADATA_ENTRIES {
            return Err(format!(
                "more than {MAX_METADATA_ENTRIES} entries in one GETMETADATA"
            ));
        }
        Ok(super::CommandBody::GetMetadata {
            mailbox,
            entries,
            depth: depth.unwrap_or(MetadataDepth::Zero),
            max_size,
        })
    }

    pub(super) fn setmetadata(&mut self) -> Parsed<super::CommandBody> {
        let mailbox = self.sp_mailbox()?;
        self.sp("entry list")?;
        let entries = self.paren_list("entry list", false, |p| {
            let name = p.entry_name(false)?;
            p.sp(&format!("value of {name}"))?;
            let value = if p.eat_word("NIL") {
                None
            } else if let Some(quoted) = p.quoted()? {
                Some(quoted)
            } else if let Some((data, _)) = p.literal(true)? {
                Some(data)
            } else {
                return Err(p.expected("entry value (a string, a literal or NIL)"));
            };
            Ok((name, value))
        })?;
        if entries.len() > MAX_METADATA_ENTRIES {
            return Err(format!(
                "more than {MAX_METADATA_ENTRIES} entries in one SETMETADATA"
            ));
        }
        Ok(super::CommandBody::SetMetadata { mailbox, entries })
    }

    /// An entry name, lowercased (names are case-insensitive). A top-level
    /// name (`/private`, `/shared`) is allowed only where `top_ok`: it can
    /// be read with a DEPTH, never set.
    fn entry_name(&mut self, top_ok: bool) -> Parsed<String> {
        let raw = self.astring("entry name")?;
        check_entry_name(&raw, top_ok)
    }
}

/// RFC 5464 §3.2's rules, plus a length limit and no `.`/`..` levels.
pub fn check_entry_name(raw: &[u8], top_ok: bool) -> Parsed<String> {
    let shown = || String::from_utf8_lossy(&raw[..raw.len().min(60)]).into_owned();
    if raw.len() > MAX_ENTRY_NAME {
        return Err(format!(
            "entry name longer than {MAX_ENTRY_NAME} bytes: {}...",
            shown()
        ));
    }
    if let Some(&b) = raw
        .iter()
        .find(|&&b| !(0x21..=0x7e).contains(&b) || b == b'*' || b == b'%')
    {
        return Err(format!(
            "entry name {} holds {}: wildcards, spaces and non-ASCII are not allowed",
            shown().escape_default(),
            if b == b'*' || b == b'%' {
                format!("the wildcard {}", b as char)
            } else {
                format!("the byte 0x{b:02x}")
            }
        ));
    }
    let name = String::from_utf8_lossy(raw).to_ascii_lowercase();
    let (top, rest) = match name.strip_prefix('/').map(|n| n.split_once('/')) {
        Some(Some((top, rest))) => (top, Some(rest)),
        Some(None) => (&name[1..], None),
        None => ("", None),
    };
    if top != "private" && top != "shared" {
        return Err(format!(
            "entry name {name} must start with /private/ or /shared/"
        ));
    }
    match rest {
        None if top_ok => return Ok(name),
        None => {
            return Err(format!(
                "entry name {name} names a whole namespace; set entries below it"
            ))
        }
        Some(rest) => {
            if rest
                .split('/')
                .any(|level| level.is_empty() || level == "." || level == "..")
            {
                return Err(format!(
                    "entry name {name} has an empty, . or .. level (or a trailing /)"
                ));
            }
        }
    }
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_names() {
        assert_eq!(
            check_entry_name(b"/Private/Comment", false).unwrap(),
            "/private/comment"
        );
        assert_eq!(
            check_entry_name(b"/shared/vendor/deltachat/x", false).unwrap(),
            "/shared/vendor/deltachat/x"
        );
        assert_eq!(check_entry_name(b"/shared", true).unwrap(), "/shared");
        for bad in [
            &b"/shared"[..],
            b"/private/",
            b"/private//x",
            b"/private/../x",
            b"/private/a/./b",
            b"/private/*",
            b"/private/a%",
            b"/other/x",
            b"private/x",
            b"/private/a b",
            b"/private/\xc3\xa4",
            b"",
        ] {
            assert!(check_entry_name(bad, false).is_err(), "{bad:?}");
        }
        assert!(check_entry_name(&[b'a'; 300], true).is_err());
    }
}
