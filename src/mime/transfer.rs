//! Undoing a content-transfer-encoding (base64, quoted-printable) on bytes
//! that arrive in pieces split anywhere, for BINARY[part] (RFC 3516), which
//! streams a part from the store a chunk at a time.
//!
//! The rules are mail-parser's own (`decoders::base64::base64_decode`,
//! `decoders::quoted_printable::quoted_printable_decode`), kept as state
//! machines, so a part decodes the same whole or in pieces; the tests check
//! that against mail-parser at every split.

/// The transfer encodings BINARY can undo.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    Base64,
    QuotedPrintable,
}

impl Encoding {
    /// The encoding named by a Content-Transfer-Encoding value (lower case),
    /// if it is one that needs decoding.
    pub fn from_name(name: &str) -> Option<Encoding> {
        match name {
            "base64" => Some(Encoding::Base64),
            "quoted-printable" => Some(Encoding::QuotedPrintable),
            _ => None,
        }
    }
}

/// The bytes are not valid in their encoding.
#[derive(Debug, PartialEq, Eq)]
pub struct Invalid;

/// Trailing whitespace of a quoted-printable line is held back until it is
/// known whether the line ends (then it is dropped); past this much it is
/// let through, so a pathological line cannot grow memory.
const MAX_HELD_WHITESPACE: usize = 4096;

#[derive(Clone, Copy, PartialEq, Eq)]
enum QpState {
    None,
    Eq,
    Hex1(u8),
}

pub struct Decoder {
    encoding: Encoding,
    // base64
    word: u32,
    count: u8,
    /// A byte that ends base64 decoding (0xFF) was seen.
    stopped: bool,
    // quoted-printable
    qp: QpState,
    held_whitespace: Vec<u8>,
    line_end: &'static [u8],
}

impl Decoder {
    pub fn new(encoding: Encoding) -> Decoder {
        Decoder {
            encoding,
            word: 0,
            count: 0,
            stopped: false,
            qp: QpState::None,
            held_whitespace: Vec::new(),
            line_end: b"\n",
        }
    }

    /// Decodes the next piece into `out`.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(), Invalid> {
        match self.encoding {
            Encoding::Base64 => self.base64(input, out),
            Encoding::QuotedPrintable => self.quoted_printable(input, out),
        }
    }

    /// Ends the input: what is still held goes out.
    pub fn finish(mut self, out: &mut Vec<u8>) {
        match self.encoding {
            Encoding::Base64 => self.base64_flush(out),
            Encoding::QuotedPrintable => out.append(&mut self.held_whitespace),
        }
    }

    fn base64(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(), Invalid> {
        for &b in input {
            if self.stopped {
                return Ok(());
            }
            let value = base64_value(b);
            if value < 0x40 {
                self.word = (self.word << 6) | u32::from(value);
                self.count = (self.count + 1) & 3;
                if self.count == 0 {
                    out.extend_from_slice(&self.word.to_be_bytes()[1..]);
                }
            } else if b == b'=' {
                self.base64_flush(out);
            } else if matches!(b, b' ' | b'\t' | b'\r' | b'\n') {
            } else if b == u8::MAX {
                self.stopped = true;
            } else {
                return Err(Invalid);
            }
        }
        Ok(())
    }

    fn base64_flush(&mut self, out: &mut Vec<u8>) {
        match self.count {
            2 => out.push((self.word >> 4) as u8),
            3 => out.extend_from_slice(&[(self.word >> 10) as u8, (self.word >> 2) as u8]),
            _ => {}
        }
        self.count = 0;
    }

    fn quoted_printable(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(), Invalid> {
        for &b in input {
            match b {
                b'=' => {
                    if self.qp != QpState::None {
                        return Err(Invalid);
                    }
                    self.qp = QpState::Eq;
                }
                b'\n' => {
                    if self.qp == QpState::Eq {
                        // A soft line break: whitespace before it is text.
                        self.qp = QpState::None;
                        out.append(&mut self.held_whitespace);
                    } else {
                        // Whitespace at a line's end is padding.
                        self.held_whitespace.clear();
                        out.extend_from_slice(self.line_end);
                    }
                }
                b'\r' => self.line_end = b"\r\n",
                _ => match self.qp {
                    QpState::None => {
                        if b.is_ascii_whitespace() {
                            if self.held_whitespace.len() >= MAX_HELD_WHITESPACE {
                                out.append(&mut self.held_whitespace);
                            }
                            self.held_whitespace.push(b);
                        } else {
                            out.append(&mut self.held_whitespace);
                            out.push(b);
                        }
                    }
                    QpState::Eq => {
                        if let Some(high) = hex_value(b) {
                            self.qp = QpState::Hex1(high);
                        } else if !b.is_ascii_whitespace() {
                            return Err(Invalid);
                        }
                    }
                    QpState::Hex1(high) => {
                        self.qp = QpState::None;
                        let low = hex_value(b).ok_or(Invalid)?;
                        out.append(&mut self.held_whitespace);
                        out.push((high << 4) | low);
                    }
                },
            }
        }
        Ok(())
    }
}

fn base64_value(b: u8) -> u8 {
    match b {
        b'A'..=b'Z' => b - b'A',
        b'a'..=b'z' => b - b'a' + 26,
        b'0'..=b'9' => b - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => 0xff,
    }
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'A'..=b'F' => Some(b - b'A' + 10),
        b'a'..=b'f' => Some(b - b'a' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mail_parser::decoders::base64::base64_decode;
    use mail_parser::decoders::quoted_printable::quoted_printable_decode;

    fn in_pieces(encoding: Encoding, input: &[u8], a: usize, b: usize) -> Option<Vec<u8>> {
        let mut d = Decoder::new(encoding);
        let mut out = Vec::new();
        for piece in [&input[..a], &input[a..b], &input[b..]] {
            d.feed(piece, &mut out).ok()?;
        }
        d.finish(&mut out);
        Some(out)
    }

    #[test]
    fn same_as_mail_parser_wherever_split() {
        let base64: [&[u8]; 6] = [
            b"AAECAw==",
            b"SGVs\r\nbG8g d29y\tbGQ=\r\n",
            b"QUJD=REVG",
            b"QQ",
            b"QUJ*",
            b"QUJD\xffgarbage",
        ];
        for input in base64 {
            let want = base64_decode(input);
            for a in 0..=input.len() {
                for b in a..=input.len() {
                    assert_eq!(in_pieces(Encoding::Base64, input, a, b), want, "{input:?}");
                }
            }
        }
        let qp: [&[u8]; 8] = [
            b"a \t=\r\nb  =20 \n",
            b"caf=C3=A9",
            b"soft=\r\nbreak  \r\nnext \t\r\n",
            b"trailing  \nlf only=\n x",
            b"bad=G1",
            b"==",
            b"= \r\nend  ",
            b"=41=4",
        ];
        for input in qp {
            let want = quoted_printable_decode(input);
            for a in 0..=input.len() {
                for b in a..=input.len() {
                    assert_eq!(
                        in_pieces(Encoding::QuotedPrintable, input, a, b),
                        want,
                        "{input:?} split {a} {b}"
                    );
                }
            }
        }
    }
}
