//! IMAP (RFC 9051 IMAP4rev2 and RFC 3501 IMAP4rev1): the async shell around
//! [`session::Session`]. The shell frames commands with the [`assembler`]
//! (literals and limits), parses them with the [`parser`], and runs the few
//! exchanges that need the connection itself: STARTTLS, AUTHENTICATE's
//! continuation lines, and IDLE.

pub mod assembler;
pub(crate) mod command;
pub mod matcher;
pub mod mutf7;
pub mod parser;
pub mod response;
pub mod session;
pub mod thread;
pub mod view;

use std::rc::Rc;
use std::time::Instant;

use smol::Timer;

use crate::auth::sasl;
use crate::net::budget::{in_memory_cost, Reservation};
use crate::net::spool::{Spool, SPOOL_THRESHOLD};
use crate::net::{Conn, ReadError};
use crate::services::Shared;
use assembler::{is_idle_done, Assembler, Feed, Limits};
use session::{Flow, Session, State};

/// The longest command line (literals aside), as Dovecot's 64 KiB: an ID
/// with its 30 fields of 1,024 bytes is real. The read buffer grows to it
/// only while such a line is being read.
pub const MAX_LINE: usize = 64 * 1024;
/// Unparsable commands in a row before the connection is closed, as Dovecot
/// does: a client this far out of step is not speaking IMAP (a web form
/// posted at the port, say), and answering it forever only helps
/// cross-protocol tricks. Commands refused in the wrong state do not count.
pub const MAX_BAD_IN_A_ROW: u32 = 20;
/// Literals up to this size are read without asking the memory budget: a
/// password, a search string. The command size limit bounds them.
const SMALL_LITERAL: u64 = 16 * 1024;

/// Whether a reply ends in a tagged (or untagged) BAD.
fn ends_in_bad(reply: &[u8]) -> bool {
    let body = reply.strip_suffix(b"\r\n").unwrap_or(reply);
    let last = body
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(body, |i| &body[i + 1..]);
    let mut words = last.splitn(3, |&b| b == b' ');
    words.next();
    words.next() == Some(b"BAD")
}

pub async fn serve(shared: Rc<Shared>, mut conn: Conn) {
    // RFC 9051 §5.4: at least 30 minutes unless the operator says otherwise
    // (--imap-autologout); IDLE keeps its own count, below.
    conn.idle_timeout = shared.config.imap_autologout;
    let mut session = Session::new(shared.clone(), conn.peer.clone());
    let mut asm = Assembler::new(Limits {
        max_line: MAX_LINE,
        max_literal: shared.config.max_message_size as u64,
        max_nonsync_literal: u64::MAX,
        max_command: MAX_LINE,
        max_literals: 32,
    });
    if conn.write(&session.greeting()).await.is_err() {
        return;
    }
    // As Dovecot's login processes: a client that has not logged in within
    // --login-timeout goes, so idle unauthenticated connections cannot hold
    // the connection slots for the 30 minutes of autologout.
    conn.set_deadline(Some(Instant::now() + shared.config.login_timeout));
    let mut bad_in_a_row = 0;
    // An APPEND's message while the rest of its command arrives: in a
    // spool, so a client that stalls after it holds no memory.
    let mut spooled: Option<Spool> = None;
    // Budget held by literals read into memory, until their command is done.
    let mut held: Vec<Reservation> = Vec::new();
    loop {
        if bad_in_a_row >= MAX_BAD_IN_A_ROW {
            log::info!(
                "{}: closing after {bad_in_a_row} invalid IMAP commands in a row",
                conn.peer
            );
            let _ = conn.write(b"* BYE Too many invalid commands\r\n").await;
            conn.close().await;
            return;
        }
        let feed = match conn.read_line(MAX_LINE).await {
            Ok(line) => asm.line(line),
            Err(ReadError::LineTooLong) => {
                let (head, tail) = conn.overlong_line();
                asm.overlong_line(head, tail)
            }
            Err(ReadError::Timeout) => {
                let bye = if conn.deadline_passed() {
                    // Else the BYE itself could not be sent.
                    conn.set_deadline(None);
                    format!(
                        "* BYE Login timeout: log in within {} seconds\r\n",
                        shared.config.login_timeout.as_secs()
                    )
                } else {
                    "* BYE Autologout: idle for too long\r\n".to_string()
                };
                let _ = conn.write(bye.as_bytes()).await;
                conn.close().await;
                return;
            }
            Err(ReadError::Io(e)) if e.kind() == std::io::ErrorKind::InvalidData => {
                bad_stream_goodbye(&mut conn, &e).await;
                return;
            }
            Err(ReadError::Closed | ReadError::Io(_)) => return,
        };
        // A large literal waits for its share of the memory budget before
        // the client may send it; past --memory-wait it is declined.
        let mut receiving: Option<Reservation> = None;
        let feed = match feed {
            Feed::NeedLiteral {
                size,
                synchronizing,
            } if size > SMALL_LITERAL => {
                let wait = Some(shared.config.memory_wait);
                let want = size.min(SPOOL_THRESHOLD as u64);
                receiving = shared.budget.reserve(want, wait).await;
                if receiving.is_some() {
                    Feed::NeedLiteral {
                        size,
                        synchronizing,
                    }
                } else {
                    log::info!(
                        "{}: memory budget for incoming messages in use for {:?}; literal of {size} bytes declined",
                        conn.peer,
                        shared.config.memory_wait
                    );
                    asm.decline_literal(size, synchronizing)
                }
            }
            other => other,
        };
        let command = match feed {
            Feed::NeedLiteral {
                size,
                synchronizing,
            } => {
                if synchronizing
                    && (conn.write(b"+ Ready for literal data\r\n").await.is_err()
                        || conn.flush().await.is_err())
                {
                    return;
                }
                if size > SPOOL_THRESHOLD as u64 && asm.in_append() {
                    let mut spool = Spool::new(&shared.spool_dir);
                    if let Err(e) = conn.read_exact_to_spool(size, &mut spool).await {
                        if let ReadError::Io(e) = e {
                            log::info!("{}: APPEND cut off: {e}", conn.peer);
                        }
                        return;
                    }
                    // The parser sees an empty literal; the message is put
                    // in once the command is whole (see `with_message`).
                    spooled = Some(spool);
                    asm.literal(Vec::new());
                    continue;
                }
                let mut data = Vec::with_capacity((size as usize).min(64 * 1024));
                if conn
                    .read_exact_into(size as usize, &mut data)
                    .await
                    .is_err()
                {
                    return;
                }
                held.extend(receiving.take());
                asm.literal(data);
                continue;
            }
            Feed::Discard { size } => {
                if conn.skip_exact(size).await.is_err() {
                    return;
                }
                continue;
            }
            Feed::Error(e) => {
                spooled = None;
                held.clear();
                let reply = format!("{}\r\n", e.response());
                bad_in_a_row = if ends_in_bad(reply.as_bytes()) {
                    bad_in_a_row + 1
                } else {
                    0
                };
                if conn.write(reply.as_bytes()).await.is_err() || e.close_connection {
                    conn.close().await;
                    return;
                }
                continue;
            }
            Feed::Complete(assembled) => match parser::parse(assembled) {
                Ok(command) => command,
                Err(e) => {
                    spooled = None;
                    held.clear();
                    let reply =
                        format!("{} BAD {}\r\n", e.tag.as_deref().unwrap_or("*"), e.message);
                    bad_in_a_row += 1;
                    if conn.write(reply.as_bytes()).await.is_err() {
                        return;
                    }
                    continue;
                }
            },
        };
        // A command that parsed is IMAP, even if refused (wrong state).
        bad_in_a_row = 0;
        drop(receiving);
        let command = match spooled.take() {
            None => command,
            Some(spool) => {
                // The message's share covers the command's other literals:
                // holding theirs while waiting for it could wait forever.
                held.clear();
                match with_message(&shared, command, spool).await {
                    Ok((command, message)) => {
                        held.extend(message);
                        command
                    }
                    Err(reply) => {
                        if conn.write(reply.as_bytes()).await.is_err() {
                            return;
                        }
                        continue;
                    }
                }
            }
        };
        let flow = session.run(command, &mut conn).await;
        held.clear();
        if conn.write(&session.out).await.is_err() {
            return;
        }
        session.out.clear();
        let next = match flow {
            Flow::Continue => Flow::Continue,
            Flow::Close => Flow::Close,
            Flow::StartTls(_) => match shared.tls_acceptor() {
                Some(acceptor) => match conn.start_tls(&acceptor).await {
                    Ok(()) => {
                        session.tls_started();
                        Flow::Continue
                    }
                    Err(e) => {
                        log::info!("{}: STARTTLS handshake failed: {e}", conn.peer);
                        return;
                    }
                },
                None => return,
            },
            Flow::Authenticate {
                tag,
                mechanism,
                initial_response,
            } => authenticate(&mut session, &mut conn, &tag, &mechanism, initial_response).await,
            Flow::Idle(tag) => idle(&shared, &mut session, &mut conn, &tag).await,
            Flow::Compress => match conn.start_compression().await {
                Ok(()) => Flow::Continue,
                Err(e) => {
                    log::info!("{}: cannot start COMPRESS: {e}", conn.peer);
                    return;
                }
            },
        };
        if !matches!(session.state, State::NotAuthenticated) {
            conn.set_deadline(None);
        }
        if conn.write(&session.out).await.is_err() {
            return;
        }
        session.out.clear();
        if session.has_recent_claim() {
            // The reply goes first; the horizon's write then costs no one a wait.
            if conn.flush().await.is_err() {
                return;
            }
            session.store_recent_claim().await;
        }
        if let Flow::Close = next {
            conn.close().await;
            return;
        }
    }
}

/// Puts a spooled APPEND message into its parsed command, once the command
/// is whole, under a reservation of the memory budget that lasts while the
/// command runs (analysis and storing). Waits for the reservation without a
/// deadline: whoever holds the budget then is working, not waiting on a
/// client. Err is the reply to send instead.
async fn with_message(
    shared: &Shared,
    mut command: parser::Command,
    spool: Spool,
) -> Result<(parser::Command, Option<Reservation>), String> {
    let tag = command.tag.clone();
    let parser::CommandBody::Append { message, utf8, .. } = &mut command.body else {
        // Only an APPEND's literal is spooled (Assembler::in_append).
        return Err(format!("{tag} BAD Unexpected large literal\r\n"));
    };
    // Without a deadline this is always granted, in turn.
    let held = shared
        .budget
        .reserve(in_memory_cost(spool.len()), None)
        .await;
    let bytes = match spool.into_bytes(Vec::new()).await {
        Ok(bytes) => bytes,
        Err(e) => {
            log::error!("cannot read back a spooled APPEND: {e}");
            return Err(format!(
                "{tag} NO [SERVERBUG] Cannot read back the message; try again later\r\n"
            ));
        }
    };
    // The parser's rule for UTF8 (~{n}), which saw only the placeholder.
    if *utf8 && bytes.contains(&0) {
        return Err(format!("{tag} BAD UTF8 message contains NUL\r\n"));
    }
    *message = bytes;
    Ok((command, held))
}

/// AUTHENTICATE PLAIN or LOGIN (RFC 4616, with SASL-IR from RFC 4959).
async fn authenticate(
    session: &mut Session,
    conn: &mut Conn,
    tag: &str,
    mechanism: &str,
    initial: Option<Vec<u8>>,
) -> Flow {
    if !session.plaintext_ok() {
        session.no(tag, "[PRIVACYREQUIRED] Authentication is not allowed on an unencrypted connection; use STARTTLS or port 993");
        return Flow::Continue;
    }
    let initial =
        initial.map(|bytes| sasl::decode_initial_response(&String::from_utf8_lossy(&bytes)));
    let result = match mechanism {
        "PLAIN" => {
            let response = match initial {
                Some(r) => r,
                None => challenge(conn, "").await,
            };
            response
                .and_then(|bytes| sasl::parse_plain(&bytes))
                .map(|c| (c.username, c.password))
        }
        "LOGIN" => {
            let user = match initial {
                Some(r) => r,
                None => challenge(conn, sasl::LOGIN_USERNAME_CHALLENGE).await,
            }
            .and_then(|bytes| sasl::login_username(&bytes));
            match user {
                Ok(user) => challenge(conn, sasl::LOGIN_PASSWORD_CHALLENGE)
                    .await
                    .and_then(|bytes| sasl::login_password(&bytes))
                    .map(|password| (user, password)),
                Err(e) => Err(e),
            }
        }
        _ => {
            session.no(
                tag,
                "Unsupported authentication mechanism (PLAIN and LOGIN are offered)",
            );
            return Flow::Continue;
        }
    };
    match result {
        Ok((user, password)) => session.check_password(tag, &user, &password).await,
        Err(sasl::SaslError::Cancelled) => {
            session.bad(tag, "Authentication cancelled");
            Flow::Continue
        }
        // A well-formed request that is refused, not a protocol error
        // (RFC 4616 §2, RFC 5530).
        Err(sasl::SaslError::AuthzidMismatch) => {
            session.no(
                tag,
                "[AUTHORIZATIONFAILED] Logging in as another user (an authorization identity) is not supported",
            );
            Flow::Continue
        }
        Err(e) => {
            session.bad(tag, &format!("Bad authentication exchange: {e}"));
            Flow::Continue
        }
    }
}

/// The client's compressed stream broke (COMPRESS=DEFLATE): nothing more
/// it sends can be read, but our direction still works, so say why.
async fn bad_stream_goodbye(conn: &mut Conn, e: &std::io::Error) {
    log::info!("{}: closing: {e}", conn.peer);
    let _ = conn
        .write(b"* BYE Invalid compressed data; closing the connection\r\n")
        .await;
    conn.close().await;
}

/// Sends a SASL challenge and reads the client's answer.
async fn challenge(conn: &mut Conn, text: &str) -> Result<Vec<u8>, sasl::SaslError> {
    let sent = conn.write(format!("+ {text}\r\n").as_bytes()).await;
    if sent.is_err() || conn.flush().await.is_err() {
        return Err(sasl::SaslError::Cancelled);
    }
    match conn.read_line(MAX_LINE).await {
        Ok(line) => sasl::decode_response(&String::from_utf8_lossy(line)),
        Err(ReadError::LineTooLong) => Err(sasl::SaslError::TooLong),
        // The main loop's next read meets the same end and says goodbye.
        Err(_) => Err(sasl::SaslError::Cancelled),
    }
}

/// IDLE (RFC 2177): push what changes in the selected mailbox until DONE.
async fn idle(shared: &Rc<Shared>, session: &mut Session, conn: &mut Conn, tag: &str) -> Flow {
    enum Wake {
        Line(Result<bool, ReadError>),
        Changed,
        Keepalive,
    }
    let mailbox = session.view().map(|v| v.mailbox);
    let listen = || mailbox.map(|id| shared.hub.listen(id));
    // Listen before looking, so a change between the two still wakes us.
    let mut listener = listen();
    session.sync(true);
    session.out.extend_from_slice(b"+ idling\r\n");
    let started = Instant::now();
    loop {
        if conn.write(&session.out).await.is_err() || conn.flush().await.is_err() {
            return Flow::Close;
        }
        session.out.clear();
        session.store_recent_claim().await;
        let read = async {
            match conn.read_line(MAX_LINE).await {
                Ok(line) => Wake::Line(Ok(is_idle_done(line))),
                Err(e) => Wake::Line(Err(e)),
            }
        };
        let changed = async {
            match listener.as_mut() {
                Some(l) => {
                    l.await;
                    Wake::Changed
                }
                None => std::future::pending().await,
            }
        };
        let tick = async {
            Timer::after(shared.config.idle_keepalive).await;
            Wake::Keepalive
        };
        match smol::future::or(read, smol::future::or(changed, tick)).await {
            Wake::Line(Ok(true)) => {
                session.sync(true);
                session.ok(tag, "IDLE terminated");
                return Flow::Continue;
            }
            Wake::Line(Ok(false)) => {
                session.bad(tag, "Expected DONE to end IDLE");
                return Flow::Continue;
            }
            // Not DONE either, but the client deserves to hear why.
            Wake::Line(Err(ReadError::LineTooLong)) => {
                session.untagged(&format!("BAD Line too long (limit {MAX_LINE} bytes)"));
                session.bad(tag, "Expected DONE to end IDLE");
                return Flow::Continue;
            }
            Wake::Line(Err(ReadError::Timeout)) => {
                session.untagged("BYE Autologout: idle for too long");
                return Flow::Close;
            }
            Wake::Line(Err(ReadError::Io(e))) if e.kind() == std::io::ErrorKind::InvalidData => {
                log::info!("{}: closing: {e}", conn.peer);
                session.untagged("BYE Invalid compressed data; closing the connection");
                return Flow::Close;
            }
            Wake::Line(Err(ReadError::Closed | ReadError::Io(_))) => return Flow::Close,
            Wake::Changed => {
                listener = listen();
                session.sync(true);
            }
            Wake::Keepalive => {
                if started.elapsed() >= shared.config.imap_autologout {
                    session.untagged("BYE Autologout: idle for too long");
                    return Flow::Close;
                }
                session.untagged("OK Still here");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ends_in_bad;

    #[test]
    fn bad_replies_are_recognised() {
        assert!(ends_in_bad(b"a1 BAD Unknown command\r\n"));
        assert!(ends_in_bad(b"* 1 EXISTS\r\na1 BAD No mailbox selected\r\n"));
        assert!(ends_in_bad(b"* BAD Line too long\r\n"));
        assert!(!ends_in_bad(b"a1 OK BAD things happen\r\n"));
        assert!(!ends_in_bad(
            b"* 1 FETCH (FLAGS ())\r\na1 NO [CANNOT] BAD\r\n"
        ));
        assert!(!ends_in_bad(b""));
    }
}
