//! LMTP delivery (RFC 2033): the async shell around [`session::Session`].
//! A message is acknowledged with 250 only after the store has committed it
//! to disk.

pub mod session;

use std::rc::Rc;
use std::time::Duration;

use crate::net::budget::Reservation;
use crate::net::spool::{Spool, SPOOL_THRESHOLD};
use crate::net::{Conn, DataError, ReadError};
use crate::services::Shared;
use crate::store::{Delivered, StoreError};
use session::{Delivery, Next, Session, MAX_COMMAND_LINE};

/// RFC 5321 §4.5.3.2 asks for at least 5 minutes between commands.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(5 * 60);

pub async fn serve(shared: Rc<Shared>, mut conn: Conn) {
    let mut session = Session::new(&shared.config.hostname, shared.config.max_message_size);
    session.bounce_when_full(shared.config.quota_bounce);
    conn.idle_timeout = IDLE_TIMEOUT;
    if conn.write(&session.greeting()).await.is_err() {
        return;
    }
    // The message BDAT chunks are building, from the first chunk to LAST,
    // with its share of the memory budget.
    let mut chunks: Option<(Spool, Reservation)> = None;
    loop {
        let (line, bare_lf) = match conn.read_line_with_ending(MAX_COMMAND_LINE).await {
            Ok(read) => read,
            Err(ReadError::LineTooLong) => {
                if conn.write(&session.line_too_long()).await.is_err() {
                    return;
                }
                continue;
            }
            Err(ReadError::Timeout) => {
                let _ = conn.write(&session.timeout()).await;
                conn.close().await;
                return;
            }
            Err(ReadError::Closed | ReadError::Io(_)) => return,
        };
        // RFC 5321 §2.3.8: commands end in CRLF. A client that ends them in
        // a bare LF would also read "LF . LF" as the end of its data, which
        // is the disagreement SMTP smuggling lives on: refuse, as Postfix's
        // smtpd_forbid_bare_newline does.
        let next = if bare_lf {
            session.bare_lf(line)
        } else {
            let resolve = |name: &str| shared.resolve_user(name);
            session.command(line, &resolve)
        };
        if let Some(note) = session.take_note() {
            log::info!("{}: {note}", conn.peer);
        }
        if !session.chunking() {
            // RSET, a refused chunk or a new LHLO ended the transaction.
            chunks = None;
        }
        let sent = match next {
            Next::Reply(reply) => conn.write(&reply).await,
            Next::Close(reply) => {
                let _ = conn.write(&reply).await;
                conn.close().await;
                return;
            }
            Next::ReadData(reply) => {
                // Refused before the body is sent, so the MTA keeps it and
                // retries; the store logs why, once a minute.
                if shared.store.room_for_new_mail().is_err() {
                    if conn.write(&session.short_of_space()).await.is_err() {
                        return;
                    }
                    continue;
                }
                // The body's buffer comes out of the memory budget; until it
                // is granted the sender hears nothing and sends nothing.
                let Some(receiving) = shared
                    .budget
                    .reserve(SPOOL_THRESHOLD as u64, Some(shared.config.memory_wait))
                    .await
                else {
                    log::info!(
                        "{}: memory budget for incoming mail in use for {:?}; DATA refused for now",
                        conn.peer,
                        shared.config.memory_wait
                    );
                    if conn.write(&session.short_of_memory()).await.is_err() {
                        return;
                    }
                    continue;
                };
                if conn.write(&reply).await.is_err() {
                    return;
                }
                let mut spool = Spool::new(&shared.spool_dir);
                let read = conn
                    .read_dot_data(shared.config.max_message_size, &mut spool)
                    .await;
                drop(receiving);
                match read {
                    Ok(()) => {
                        let outcome = store(&shared, &session, &conn, spool).await;
                        conn.write(&answer(&shared, &mut session, &outcome)).await
                    }
                    Err(DataError::TooBig) => {
                        log::info!(
                            "{}: refused a message over the size limit of {} bytes (552)",
                            conn.peer,
                            shared.config.max_message_size
                        );
                        conn.write(&session.too_big()).await
                    }
                    Err(DataError::Spool(e)) => {
                        log::error!("{}: cannot spool an incoming message: {e}", conn.peer);
                        let failed = Err(StoreError::Storage(e.to_string()));
                        conn.write(&answer(&shared, &mut session, &failed)).await
                    }
                    // Cut off mid-message: nothing was stored or acknowledged.
                    Err(DataError::Read(_)) => return,
                }
            }
            Next::SkipChunk { size, reply } => {
                if conn.skip_exact(size).await.is_err() {
                    return;
                }
                conn.write(&reply).await
            }
            Next::ReadChunk { size, last } => {
                if chunks.is_none() {
                    // The first chunk: the same checks as DATA makes before
                    // its 354, but the chunk is on its way already, so a
                    // refusal reads it and ends the transaction.
                    let refusal = if shared.store.room_for_new_mail().is_err() {
                        Some(session.chunk_refused(
                            last,
                            "452 4.3.1",
                            "mail store's disk is nearly full; try again later",
                        ))
                    } else {
                        match shared
                            .budget
                            .reserve(SPOOL_THRESHOLD as u64, Some(shared.config.memory_wait))
                            .await
                        {
                            Some(receiving) => {
                                chunks = Some((Spool::new(&shared.spool_dir), receiving));
                                None
                            }
                            None => {
                                log::info!(
                                    "{}: memory budget for incoming mail in use for {:?}; BDAT refused for now",
                                    conn.peer,
                                    shared.config.memory_wait
                                );
                                Some(session.chunk_refused(
                                    last,
                                    "452 4.3.1",
                                    "insufficient system resources to receive the message now; try again later",
                                ))
                            }
                        }
                    };
                    if let Some(refusal) = refusal {
                        if conn.skip_exact(size).await.is_err()
                            || conn.write(&refusal).await.is_err()
                        {
                            return;
                        }
                        continue;
                    }
                }
                let Some((spool, _)) = chunks.as_mut() else {
                    return;
                };
                match conn.read_chunk(size, spool).await {
                    Ok(()) if !last => conn.write(&session.chunk_received(size)).await,
                    Ok(()) => {
                        let Some((spool, receiving)) = chunks.take() else {
                            return;
                        };
                        drop(receiving);
                        let outcome = store(&shared, &session, &conn, spool).await;
                        conn.write(&answer(&shared, &mut session, &outcome)).await
                    }
                    Err(DataError::Spool(e)) => {
                        log::error!("{}: cannot spool an incoming message: {e}", conn.peer);
                        shared
                            .metrics
                            .not_delivered(session.recipient_count() as u64);
                        chunks = None;
                        let text = "temporary storage failure; try again later";
                        conn.write(&session.chunk_refused(last, "451 4.3.0", text))
                            .await
                    }
                    // Cut off mid-chunk: nothing stored or acknowledged.
                    // (No TooBig here: the session checked the sizes.)
                    Err(DataError::Read(_) | DataError::TooBig) => return,
                }
            }
        };
        if sent.is_err() {
            return;
        }
    }
}

/// The replies to the end of a message, per recipient; the recipients it
/// was not stored for are counted in the metrics.
fn answer(
    shared: &Shared,
    session: &mut Session,
    outcome: &Result<Vec<Result<Delivered, StoreError>>, StoreError>,
) -> Vec<u8> {
    let stored = outcome
        .as_ref()
        .map_or(0, |done| done.iter().filter(|d| d.is_ok()).count());
    let failed = session.recipient_count().saturating_sub(stored);
    shared.metrics.not_delivered(failed as u64);
    session.delivered(outcome)
}

/// Adds the trace headers of final delivery, works out ENVELOPE and
/// BODYSTRUCTURE off the event loop, and stores the message for every
/// recipient in one commit. The message is in memory only from here on,
/// under a reservation of the memory budget.
async fn store(
    shared: &Rc<Shared>,
    session: &Session,
    conn: &Conn,
    message: Spool,
) -> Result<Vec<Result<Delivered, StoreError>>, StoreError> {
    let Delivery {
        return_path,
        targets,
    } = session.delivery();
    let (now, offset) = crate::clock::now();
    let from = match conn.peer.addr {
        Some(addr) => addr.ip().to_string(),
        None => "local".into(),
    };
    let raw = format!(
        "Return-Path: <{return_path}>\r\nReceived: from {} ({from})\r\n\tby {} (letterbox) with {};\r\n\t{}\r\n",
        session.client_name(),
        shared.config.hostname,
        session.protocol_name(),
        crate::clock::rfc5322(now, offset)
    )
    .into_bytes();
    let _held = shared
        .budget
        .reserve(
            crate::net::budget::in_memory_cost(raw.len() as u64 + message.len()),
            None,
        )
        .await;
    let raw = message
        .into_bytes(raw)
        .await
        .map_err(|e| StoreError::Storage(format!("cannot read back the spooled message: {e}")))?;
    let (raw, analysis) = shared.analyse(raw).await;
    let size = raw.len();
    // The disk may have filled while the body came in.
    shared.store.room_for_new_mail()?;
    let users: Vec<String> = targets.iter().map(|t| t.user.clone()).collect();
    let checks: Vec<_> = targets
        .iter()
        .map(|t| shared.quota_check(&t.user))
        .collect();
    let outcome = shared
        .store
        .write(move |tx| tx.deliver_checked(&raw, &analysis, (now, offset), &targets, &checks))
        .await;
    match &outcome {
        Ok(done) => {
            for (d, user) in done.iter().zip(&users) {
                match d {
                    Ok(d) => {
                        shared.metrics.delivered(size as u64);
                        log::info!(
                            "{}: delivered {size} bytes to mailbox {} as UID {}",
                            conn.peer,
                            d.mailbox,
                            d.uid
                        )
                    }
                    Err(e) => log::info!("{}: not delivered to {user}: {e}", conn.peer),
                }
            }
        }
        Err(e) => log::error!("{}: delivery failed, answered 451: {e}", conn.peer),
    }
    outcome
}
