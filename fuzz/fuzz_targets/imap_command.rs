//! IMAP command assembly and parsing: the bytes a client sends, read by the
//! real `Conn`, assembled with literals by `imap::assembler` and parsed by
//! `imap::parser::parse`, exactly as the IMAP shell (src/imap/mod.rs) does
//! before a command reaches the session.
#![no_main]

use letterbox::imap::assembler::{Assembler, Feed, Limits};
use letterbox::imap::{parser, MAX_LINE};
use letterbox::net::ReadError;
use letterbox_fuzz::{assert_one_line, over_conn};
use libfuzzer_sys::fuzz_target;

fuzz_target!(
    init: letterbox_fuzz::init(),
    |data: &[u8]| {
        over_conn(data, |mut conn| async move {
            // The shell's limits, with the default --max-message-size.
            let mut asm = Assembler::new(Limits {
                max_line: MAX_LINE,
                max_literal: 50 * 1024 * 1024,
                max_nonsync_literal: u64::MAX,
                max_command: 64 * 1024,
                max_literals: 32,
            });
            loop {
                let feed = match conn.read_line(MAX_LINE).await {
                    Ok(line) => asm.line(line),
                    Err(ReadError::LineTooLong) => {
                        let (head, tail) = conn.overlong_line();
                        asm.overlong_line(head, tail)
                    }
                    Err(_) => return,
                };
                match feed {
                    Feed::NeedLiteral { size, .. } => {
                        let mut literal = Vec::new();
                        if conn.read_exact_into(size as usize, &mut literal).await.is_err() {
                            return;
                        }
                        assert_eq!(literal.len() as u64, size);
                        asm.literal(literal);
                    }
                    Feed::Discard { size } => {
                        if conn.skip_exact(size).await.is_err() {
                            return;
                        }
                    }
                    Feed::Error(e) => {
                        assert_one_line(&e.response());
                        if e.close_connection {
                            return;
                        }
                    }
                    Feed::Complete(assembled) => match parser::parse(assembled) {
                        Ok(command) => {
                            assert!(!command.tag.is_empty(), "{command:?}");
                            assert!(command.tag.bytes().all(parser_tag_char), "{command:?}");
                        }
                        Err(e) => {
                            if let Some(tag) = &e.tag {
                                assert!(!tag.is_empty() && tag.bytes().all(parser_tag_char), "{e:?}");
                            }
                            assert_one_line(&e.message);
                        }
                    },
                }
            }
        });
    }
);

/// RFC 9051's tag: ASTRING-CHAR except "+".
fn parser_tag_char(b: u8) -> bool {
    b.is_ascii_graphic() && !b"(){%*\"\\+".contains(&b)
}
