//! A POP3 session fed arbitrary bytes: the real `Conn` reads the lines and
//! the real sans-IO `pop3::session::Session` answers them, driven by a loop
//! that mirrors the shell (src/pop3/mod.rs). The shell's two calls into the
//! rest of the server are stand-ins: the password "secret" logs in (any user),
//! "busy" finds the maildrop locked, anything else fails; and the maildrop is
//! a fixed list of awkward messages. The first input byte picks whether
//! plaintext passwords and STLS are offered.
#![no_main]

use letterbox::net::ReadError;
use letterbox::pop3::session::{render_message, Action, Entry, Session, MAX_LINE};
use letterbox_fuzz::{assert_crlf_lines, over_conn};
use libfuzzer_sys::fuzz_target;

/// Messages as a store might hold them: CRLF and bare LF line ends, lines
/// starting with dots, NUL, no body, no header end, an empty message.
const MAILDROP: [&[u8]; 5] = [
    b"From: a@example.org\r\nSubject: hi\r\n\r\nline 1\r\n.line 2\r\n..\r\n.\r\nend\r\n",
    b"Subject: bare\n\nbody\nwith\0nul\n.\n",
    b"Subject: no body\r\n",
    b"",
    b"\r\n\r\n\r\n.",
];

fn maildrop() -> Vec<Entry> {
    MAILDROP
        .iter()
        .enumerate()
        .map(|(i, m)| Entry {
            uid: i as u32 * 3 + 1,
            size: m.len() as u64,
            blob: i as u64,
            deleted: false,
            retrieved: false,
        })
        .collect()
}

fuzz_target!(
    init: letterbox_fuzz::init(),
    |data: &[u8]| {
        let Some((&mode, input)) = data.split_first() else {
            return;
        };
        over_conn(input, |mut conn| async move {
            let mut session = Session::new(mode & 1 != 0, mode & 2 != 0);
            loop {
                let mut action = match conn.read_line(MAX_LINE).await {
                    Ok(line) => session.command(line),
                    Err(ReadError::LineTooLong) => Action::Reply(session.line_too_long()),
                    Err(_) => return,
                };
                loop {
                    match action {
                        Action::Reply(reply) => assert_crlf_lines(&reply),
                        Action::StartTls(reply) => {
                            assert_crlf_lines(&reply);
                            session.tls_started();
                        }
                        Action::Close(reply) => {
                            assert_crlf_lines(&reply);
                            return;
                        }
                        Action::CheckPassword { user, password } => {
                            assert!(session.user().is_none());
                            action = match password.as_slice() {
                                b"secret" => session.logged_in(user, 0x5eed, maildrop()),
                                b"busy" => session.maildrop_busy(),
                                _ => session.login_failed(),
                            };
                            continue;
                        }
                        Action::SendMessage { index, body_lines } => {
                            let entry = session.messages().get(index).expect("index in the maildrop");
                            assert!(!entry.deleted, "sending deleted message {index}");
                            let rendered = render_message(MAILDROP[index], body_lines);
                            assert_crlf_lines(&rendered);
                            assert!(rendered.ends_with(b"\r\n.\r\n"));
                            // Dot-stuffed: the only line that is "." is the last.
                            let lines = rendered.len() - 3;
                            assert!(!rendered[..lines].windows(5).any(|w| w == b"\r\n.\r\n"));
                            assert!(!rendered.contains(&0));
                            session.message_sent(index, body_lines.is_none());
                        }
                        Action::Update => {
                            assert!(session.user().is_some());
                            let deleted = session.messages().iter().filter(|m| m.deleted).count();
                            action = session.updated(Ok(deleted));
                            continue;
                        }
                    }
                    break;
                }
            }
        });
    }
);
