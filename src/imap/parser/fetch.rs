//! FETCH items, body sections and partials (RFC 9051 §6.4.5, RFC 3516 BINARY).

use super::{is_astring_char, CommandBody, Parsed, Parser};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchItem {
    Flags,
    InternalDate,
    Rfc822Size,
    Envelope,
    /// BODY without a section: the structure without extension data.
    Body,
    BodyStructure,
    Uid,
    Rfc822,
    Rfc822Header,
    Rfc822Text,
    BodySection {
        peek: bool,
        section: Section,
        partial: Option<Partial>,
    },
    Binary {
        peek: bool,
        part: Vec<u32>,
        partial: Option<Partial>,
    },
    BinarySize {
        part: Vec<u32>,
    },
    /// RFC 7162's MODSEQ: the message's modification sequence.
    Modseq,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Section {
    pub part: Vec<u32>,
    pub text: Option<SectionText>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SectionText {
    Header,
    /// Field names as the client spelled them.
    HeaderFields(Vec<String>),
    HeaderFieldsNot(Vec<String>),
    Text,
    Mime,
}

/// `<offset.length>`. A length past 2^32-1 is clamped (it means "to the
/// end" for any message letterbox can store); such an offset is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Partial {
    pub offset: u32,
    pub length: u32,
}

impl FetchItem {
    /// The item's name in a FETCH response, e.g. `BODY[HEADER.FIELDS (From)]<0>`
    /// for `BODY.PEEK[header.fields (From)]<0.100>`: .PEEK dropped, keywords
    /// upper-cased, header names as the client wrote them, only the origin
    /// of a partial (RFC 9051 §7.5.2).
    pub fn response_name(&self) -> String {
        let partial = |partial: &Option<Partial>| {
            partial.map_or(String::new(), |p| format!("<{}>", p.offset))
        };
        match self {
            FetchItem::Flags => "FLAGS".into(),
            FetchItem::InternalDate => "INTERNALDATE".into(),
            FetchItem::Rfc822Size => "RFC822.SIZE".into(),
            FetchItem::Envelope => "ENVELOPE".into(),
            FetchItem::Body => "BODY".into(),
            FetchItem::BodyStructure => "BODYSTRUCTURE".into(),
            FetchItem::Uid => "UID".into(),
            FetchItem::Modseq => "MODSEQ".into(),
            FetchItem::Rfc822 => "RFC822".into(),
            FetchItem::Rfc822Header => "RFC822.HEADER".into(),
            FetchItem::Rfc822Text => "RFC822.TEXT".into(),
            FetchItem::BodySection {
                section,
                partial: p,
                ..
            } => {
                format!("BODY[{}]{}", render_section(section), partial(p))
            }
            FetchItem::Binary {
                part, partial: p, ..
            } => format!("BINARY[{}]{}", render_part(part), partial(p)),
            FetchItem::BinarySize { part } => format!("BINARY.SIZE[{}]", render_part(part)),
        }
    }
}

fn render_part(part: &[u32]) -> String {
    part.iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(".")
}

fn render_section(section: &Section) -> String {
    let mut out = render_part(&section.part);
    let Some(text) = &section.text else {
        return out;
    };
    if !out.is_empty() {
        out.push('.');
    }
    let fields = |keyword: &str, names: &[String]| {
        let names: Vec<String> = names.iter().map(|n| render_astring(n)).collect();
        format!("{keyword} ({})", names.join(" "))
    };
    out += &match text {
        SectionText::Header => "HEADER".into(),
        SectionText::HeaderFields(names) => fields("HEADER.FIELDS", names),
        SectionText::HeaderFieldsNot(names) => fields("HEADER.FIELDS.NOT", names),
        SectionText::Text => "TEXT".into(),
        SectionText::Mime => "MIME".into(),
    };
    out
}

/// Header names are printable ASCII (checked when parsed), so an atom or a
/// quoted string always does.
fn render_astring(value: &str) -> String {
    if !value.is_empty() && value.bytes().all(is_astring_char) {
        return value.to_string();
    }
    let mut quoted = String::from("\"");
    for c in value.chars() {
        if c == '"' || c == '\\' {
            quoted.push('\\');
        }
        quoted.push(c);
    }
    quoted.push('"');
    quoted
}

impl Parser {
    pub(super) fn fetch(&mut self, uid: bool) -> Parsed<CommandBody> {
        self.sp("message set")?;
        let set = self.message_set()?;
        self.sp("fetch items")?;
        let items = if self.peek() == Some(b'(') {
            self.paren_list("fetch items", false, Self::fetch_item)?
        } else if self.eat_word("ALL") {
            vec![
                FetchItem::Flags,
                FetchItem::InternalDate,
                FetchItem::Rfc822Size,
                FetchItem::Envelope,
            ]
        } else if self.eat_word("FAST") {
            vec![
                FetchItem::Flags,
                FetchItem::InternalDate,
                FetchItem::Rfc822Size,
            ]
        } else if self.eat_word("FULL") {
            vec![
                FetchItem::Flags,
                FetchItem::InternalDate,
                FetchItem::Rfc822Size,
                FetchItem::Envelope,
                FetchItem::Body,
            ]
        } else {
            vec![self.fetch_item()?]
        };
        let mut changed_since = None;
        if self.eat(b' ') {
            changed_since = self.modseq_modifier("FETCH modifier", "CHANGEDSINCE")?;
        }
        Ok(CommandBody::Fetch {
            uid,
            set,
            items,
            changed_since,
        })
    }

    pub(super) fn fetch_item(&mut self) -> Parsed<FetchItem> {
        let name = self
            .take_while(|b| b.is_ascii_alphanumeric() || b == b'.')
            .to_ascii_uppercase();
        Ok(match &name[..] {
            b"FLAGS" => FetchItem::Flags,
            b"INTERNALDATE" => FetchItem::InternalDate,
            b"RFC822.SIZE" => FetchItem::Rfc822Size,
            b"ENVELOPE" => FetchItem::Envelope,
            b"BODYSTRUCTURE" => FetchItem::BodyStructure,
            b"UID" => FetchItem::Uid,
            b"MODSEQ" => FetchItem::Modseq,
            b"RFC822" => FetchItem::Rfc822,
            b"RFC822.HEADER" => FetchItem::Rfc822Header,
            b"RFC822.TEXT" => FetchItem::Rfc822Text,
            b"BODY" if self.peek() != Some(b'[') => FetchItem::Body,
            b"BODY" | b"BODY.PEEK" => {
                let section = self.section()?;
                FetchItem::BodySection {
                    peek: name.len() > 4,
                    section,
                    partial: self.partial()?,
                }
            }
            b"BINARY" | b"BINARY.PEEK" => {
                let part = self.binary_section()?;
                FetchItem::Binary {
                    peek: name.len() > 6,
                    part,
                    partial: self.partial()?,
                }
            }
            b"BINARY.SIZE" => FetchItem::BinarySize {
                part: self.binary_section()?,
            },
            b"" => return Err(self.expected("fetch item")),
            _ => {
                return Err(format!(
                    "unknown fetch item {}",
                    String::from_utf8_lossy(&name)
                ))
            }
        })
    }

    pub(super) fn section(&mut self) -> Parsed<Section> {
        self.expect(b'[', "[ to open a section")?;
        let mut section = Section::default();
        if self.eat(b']') {
            return Ok(section);
        }
        while self.peek().is_some_and(|b| b.is_ascii_digit()) {
            section.part.push(self.nz_number("section part number")?);
            if !self.eat(b'.') {
                return self
                    .expect(b']', "] to close the section")
                    .map(|()| section);
            }
        }
        let keyword = self
            .take_while(|b| b.is_ascii_alphabetic() || b == b'.')
            .to_ascii_uppercase();
        section.text = Some(match &keyword[..] {
            b"HEADER" => SectionText::Header,
            b"TEXT" => SectionText::Text,
            b"MIME" if !section.part.is_empty() => SectionText::Mime,
            b"MIME" => return Err("MIME needs a part number, as in BODY[1.MIME]".into()),
            b"HEADER.FIELDS" | b"HEADER.FIELDS.NOT" => {
                self.sp("header field list")?;
                let names = self.paren_list("header field list", false, Self::header_name)?;
                if keyword.len() > 13 {
                    SectionText::HeaderFieldsNot(names)
                } else {
                    SectionText::HeaderFields(names)
                }
            }
            _ => {
                return Err(self
                    .expected("section: HEADER, HEADER.FIELDS, HEADER.FIELDS.NOT, TEXT or MIME"))
            }
        });
        self.expect(b']', "] to close the section")?;
        Ok(section)
    }

    pub(super) fn binary_section(&mut self) -> Parsed<Vec<u32>> {
        self.expect(b'[', "[ to open a section")?;
        let mut part = Vec::new();
        if !self.eat(b']') {
            loop {
                part.push(self.nz_number("section part number")?);
                if !self.eat(b'.') {
                    break;
                }
            }
            self.expect(b']', "] to close the section")?;
        }
        Ok(part)
    }

    pub(super) fn partial(&mut self) -> Parsed<Option<Partial>> {
        if !self.eat(b'<') {
            return Ok(None);
        }
        let offset = self.number("partial offset")?;
        self.expect(b'.', ". in <offset.length>")?;
        let length = self.number64("partial length")?;
        if length == 0 {
            return Err("partial length must not be 0".into());
        }
        self.expect(b'>', "> to close <offset.length>")?;
        Ok(Some(Partial {
            offset,
            length: u32::try_from(length).unwrap_or(u32::MAX),
        }))
    }

    /// A parenthesized list of modifiers in which only `name`, with a
    /// mod-sequence, is known (RFC 7162's CHANGEDSINCE and UNCHANGEDSINCE).
    pub(super) fn modseq_modifier(&mut self, what: &str, name: &str) -> Parsed<Option<u64>> {
        let values = self.paren_list(&format!("{what}s"), false, |p| {
            let found = p.upper_atom(what)?;
            if found != name {
                return Err(format!("unknown {what} {found}"));
            }
            p.sp("mod-sequence")?;
            p.number64("mod-sequence")
        })?;
        Ok(values.last().copied())
    }
}
