//! An LMTP session fed arbitrary bytes: the real `Conn` reads command lines,
//! dot-stuffed DATA and BDAT chunks, and the real sans-IO `lmtp::session::Session`
//! answers, driven by a loop that mirrors the shell (src/lmtp/mod.rs). The
//! store is a stand-in: users "alice" and "bob" exist, and a delivery
//! succeeds for every recipient unless the message's first byte is '!'
//! (then the store "fails", to reach the 451 path).
#![no_main]

use letterbox::lmtp::session::{Next, Session, MAX_COMMAND_LINE};
use letterbox::net::spool::Spool;
use letterbox::net::{DataError, ReadError};
use letterbox::store::{Delivered, StoreError};
use letterbox_fuzz::{assert_crlf_lines, over_conn};
use libfuzzer_sys::fuzz_target;

/// Small, so the fuzzer reaches the size limit.
const MAX_MESSAGE: usize = 4096;

fn resolve(name: &str) -> Option<String> {
    let name = name.to_lowercase();
    matches!(name.as_str(), "alice" | "bob").then_some(name)
}

/// What the stand-in store answers for a received message, checked the
/// way both DATA and BDAT LAST must be: one reply per recipient.
fn deliver(session: &mut Session, message: &[u8], dot_data: bool) -> Vec<u8> {
    assert!(message.len() <= MAX_MESSAGE);
    if dot_data {
        // Stored mail has CRLF line ends only (BDAT bytes are taken as sent).
        for (i, &b) in message.iter().enumerate() {
            if b == b'\n' {
                assert!(i > 0 && message[i - 1] == b'\r', "bare LF stored");
            }
        }
    }
    let delivery = session.delivery();
    assert!(!delivery.targets.is_empty(), "a message without recipients");
    let outcome = if message.first() == Some(&b'!') {
        Err(StoreError::Storage("fuzz".into()))
    } else {
        Ok(delivery
            .targets
            .iter()
            .enumerate()
            .map(|(i, t)| {
                // Some recipients full, as a quota makes them.
                if message.first() == Some(&b'?') && i % 2 == 1 {
                    return Err(StoreError::OverQuota("full".into()));
                }
                Ok(Delivered {
                    mailbox: i as u64,
                    mailbox_name: t.folder.clone().unwrap_or("INBOX".into()),
                    uid: i as u32 + 1,
                })
            })
            .collect())
    };
    let reply = session.delivered(&outcome);
    // One reply per recipient (RFC 2033 §4.2).
    let lines = reply.windows(2).filter(|w| w == b"\r\n").count();
    assert_eq!(lines, delivery.targets.len());
    reply
}

fuzz_target!(
    init: letterbox_fuzz::init(),
    |data: &[u8]| {
        over_conn(data, |mut conn| async move {
            let mut session = Session::new("fuzz.example", MAX_MESSAGE);
            assert_crlf_lines(&session.greeting());
            // The message BDAT chunks are building, as in the shell.
            let mut chunks: Option<Spool> = None;
            loop {
                let next = match conn.read_line(MAX_COMMAND_LINE).await {
                    Ok(line) => session.command(line, &resolve),
                    Err(ReadError::LineTooLong) => Next::Reply(session.line_too_long()),
                    Err(_) => return,
                };
                if !session.chunking() {
                    chunks = None;
                }
                match next {
                    Next::SkipChunk { size, reply } => {
                        assert_crlf_lines(&reply);
                        if conn.skip_exact(size).await.is_err() {
                            return;
                        }
                    }
                    Next::ReadChunk { size, last } => {
                        let spool =
                            chunks.get_or_insert_with(|| Spool::new(&std::env::temp_dir()));
                        match conn.read_chunk(size, spool).await {
                            Ok(()) => {}
                            Err(DataError::Spool(_) | DataError::Read(_)) => return,
                            Err(DataError::TooBig) => panic!("read_chunk has no limit of its own"),
                        }
                        assert!(spool.len() <= MAX_MESSAGE as u64, "BDAT past the size limit");
                        let reply = if last {
                            let Some(spool) = chunks.take() else { return };
                            let Ok(message) = spool.into_bytes(Vec::new()).await else {
                                return;
                            };
                            deliver(&mut session, &message, false)
                        } else {
                            session.chunk_received(size)
                        };
                        assert_crlf_lines(&reply);
                    }
                    Next::Reply(reply) => assert_crlf_lines(&reply),
                    Next::Close(reply) => {
                        assert_crlf_lines(&reply);
                        return;
                    }
                    Next::ReadData(reply) => {
                        assert_crlf_lines(&reply);
                        // Small bodies stay in the spool's memory; a larger
                        // one would go to an unlinked file in the temp dir.
                        let mut spool = Spool::new(&std::env::temp_dir());
                        let read = conn.read_dot_data(MAX_MESSAGE, &mut spool).await;
                        let read = match read {
                            Ok(()) => match spool.into_bytes(Vec::new()).await {
                                Ok(message) => Ok(message),
                                Err(_) => return,
                            },
                            Err(e) => Err(e),
                        };
                        let reply = match read {
                            Ok(message) => deliver(&mut session, &message, true),
                            Err(DataError::TooBig) => session.too_big(),
                            Err(DataError::Read(_) | DataError::Spool(_)) => return,
                        };
                        assert_crlf_lines(&reply);
                    }
                }
            }
        });
    }
);
