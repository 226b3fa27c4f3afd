//! POP3: the async shell around [`session::Session`]. The maildrop is the
//! user's INBOX, listed once at login and held exclusively until the session
//! ends; deletions are applied only after QUIT.

pub mod session;

use std::rc::Rc;
use std::time::Duration;

use crate::net::{Conn, ReadError};
use crate::services::{Login, Pop3Mode, Shared};
use crate::store::{FlagChange, Flags, MailboxId, StoreError};
use session::{Action, Entry, Session, MAX_LINE};

/// RFC 1939 §3: an inactivity autologout timer of at least 10 minutes.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(10 * 60);

/// Holds a user's maildrop; dropping it (however the session ends) frees it.
struct MaildropLock {
    shared: Rc<Shared>,
    user: String,
}

impl MaildropLock {
    fn take(shared: &Rc<Shared>, user: &str) -> Option<MaildropLock> {
        shared
            .pop3_locked
            .borrow_mut()
            .insert(user.to_string())
            .then(|| MaildropLock {
                shared: shared.clone(),
                user: user.to_string(),
            })
    }
}

impl Drop for MaildropLock {
    fn drop(&mut self) {
        self.shared.pop3_locked.borrow_mut().remove(&self.user);
    }
}

/// What the session holds once logged in.
struct Maildrop {
    _lock: MaildropLock,
    inbox: MailboxId,
    mode: Pop3Mode,
}

pub async fn serve(shared: Rc<Shared>, mut conn: Conn) {
    conn.idle_timeout = IDLE_TIMEOUT;
    let stls_ok = !conn.peer.tls && shared.tls_acceptor().is_some();
    let mut session = Session::new(shared.plaintext_auth_allowed(&conn.peer), stls_ok);
    let mut maildrop: Option<Maildrop> = None;
    if conn
        .write(&Session::greeting(&shared.config.hostname))
        .await
        .is_err()
    {
        return;
    }
    // As Dovecot's login processes: --login-timeout to log in.
    conn.set_deadline(Some(
        std::time::Instant::now() + shared.config.login_timeout,
    ));
    loop {
        let mut action = match conn.read_line(MAX_LINE).await {
            Ok(line) => session.command(line),
            Err(ReadError::LineTooLong) => Action::Reply(session.line_too_long()),
            Err(ReadError::Timeout) => Action::Close(if conn.deadline_passed() {
                // Else the reply itself could not be sent.
                conn.set_deadline(None);
                format!(
                    "-ERR Login timeout: log in within {} seconds, closing connection\r\n",
                    shared.config.login_timeout.as_secs()
                )
                .into_bytes()
            } else {
                b"-ERR Idle for too long, closing connection\r\n".to_vec()
            }),
            // A dropped connection deletes nothing (RFC 1939 §6).
            Err(ReadError::Closed | ReadError::Io(_)) => return,
        };
        // One command may take several steps (a password check, then the
        // maildrop); each step yields the next action.
        loop {
            let sent = match action {
                Action::Reply(reply) => conn.write(&reply).await,
                Action::Close(reply) => {
                    let _ = conn.write(&reply).await;
                    conn.close().await;
                    return;
                }
                Action::StartTls(reply) => {
                    let Some(acceptor) = shared.tls_acceptor() else {
                        return;
                    };
                    if conn.write(&reply).await.is_err() {
                        return;
                    }
                    if let Err(e) = conn.start_tls(&acceptor).await {
                        log::info!("{}: STLS handshake failed: {e}", conn.peer);
                        return;
                    }
                    session.tls_started();
                    Ok(())
                }
                Action::CheckPassword { user, password } => {
                    action = match shared.authenticate(&conn.peer, &user, &password).await {
                        Login::Ok(user) => {
                            match open_maildrop(&shared, &user).await {
                                Ok(Some((drop, uid_validity, entries))) => {
                                    maildrop = Some(drop);
                                    conn.set_deadline(None);
                                    session.logged_in(user, uid_validity, entries)
                                }
                                Ok(None) => session.maildrop_busy(),
                                Err(e) => {
                                    log::error!(
                                        "{}: cannot open the maildrop of {user}: {e}",
                                        conn.peer
                                    );
                                    Action::Reply(b"-ERR [SYS/TEMP] Cannot open the mailbox; try again later\r\n".to_vec())
                                }
                            }
                        }
                        Login::Failed => session.login_failed(),
                    };
                    continue;
                }
                Action::SendMessage { index, body_lines } => {
                    let inbox = maildrop.as_ref().map_or(0, |m| m.inbox);
                    send_message(&shared, &mut conn, &mut session, inbox, index, body_lines).await
                }
                Action::Update => {
                    let outcome = match &maildrop {
                        Some(drop) => update(&shared, drop, session.messages()).await,
                        None => Ok(0),
                    };
                    if let Err(e) = &outcome {
                        log::error!("{}: POP3 update failed: {e}", conn.peer);
                    }
                    action = session.updated(outcome.map_err(|e| e.to_string()));
                    continue;
                }
            };
            if sent.is_err() {
                return;
            }
            break;
        }
    }
}

/// Locks the user's maildrop and lists INBOX as it is now. `Ok(None)` when
/// another session holds it.
async fn open_maildrop(
    shared: &Rc<Shared>,
    user: &str,
) -> Result<Option<(Maildrop, u32, Vec<Entry>)>, StoreError> {
    let Some(lock) = MaildropLock::take(shared, user) else {
        return Ok(None);
    };
    let inbox = shared.ensure_user(user).await?;
    let snapshot = shared.store.snapshot()?;
    let uid_validity = snapshot
        .mailbox(inbox)?
        .ok_or(StoreError::NoSuchMailbox)?
        .uid_validity;
    let entries = snapshot
        .messages(inbox)?
        .into_iter()
        .filter(|(_, m)| !m.flags.contains(Flags::POP3_HIDDEN))
        .map(|(uid, m)| Entry {
            uid,
            size: u64::from(m.size),
            blob: m.blob,
            deleted: false,
            retrieved: false,
        })
        .collect();
    let mode = match shared.user_setting(user, "pop3_mode").as_deref() {
        Some("keep") => Pop3Mode::Keep,
        Some("delete") => Pop3Mode::Delete,
        _ => shared.config.pop3_mode,
    };
    let drop = Maildrop {
        _lock: lock,
        inbox,
        mode,
    };
    Ok(Some((drop, uid_validity, entries)))
}

async fn send_message(
    shared: &Rc<Shared>,
    conn: &mut Conn,
    session: &mut Session,
    inbox: crate::store::MailboxId,
    index: usize,
    body_lines: Option<usize>,
) -> std::io::Result<()> {
    let Some(entry) = session.messages().get(index) else {
        return conn.write(b"-ERR No such message\r\n").await;
    };
    let (blob, size, uid) = (entry.blob, entry.size, entry.uid);
    // The checksums are checked before "+OK", which cannot be taken back.
    let opened = shared.store.snapshot().and_then(|snapshot| {
        let content = snapshot.content()?;
        let len = content.blob_len(blob)?;
        if let Some(len) = len {
            content.verify(blob, len)?;
        }
        Ok((content, len))
    });
    let (content, len) = match opened {
        Ok((content, Some(len))) => (content, len),
        // Expunged over IMAP since this session's listing was made.
        Ok((_, None)) => {
            return conn
                .write(b"-ERR Message was removed by another session\r\n")
                .await
        }
        Err(e @ StoreError::Corrupt(_)) => {
            let user = session.user().unwrap_or_default();
            shared.store.report_damage(user, "INBOX", inbox, uid, &e);
            return conn
                .write(b"-ERR [SYS/PERM] This message is damaged in the store; the administrator has been told\r\n")
                .await;
        }
        Err(e) => {
            log::error!("{}: store: {e}", conn.peer);
            return conn
                .write(b"-ERR [SYS/TEMP] Cannot read the message now; try again later\r\n")
                .await;
        }
    };
    conn.write(format!("+OK {size} octets\r\n").as_bytes())
        .await?;
    // One chunk at a time, written as the socket drains: a client that
    // stops reading holds its socket buffer and one chunk.
    let mut renderer = session::Renderer::new(body_lines);
    let mut out = Vec::new();
    let mut at = 0;
    let mut pieces = 0usize;
    while at < len && !renderer.is_done() {
        let piece = match content.blob_piece(blob, len, at, crate::store::BLOB_CHUNK) {
            Ok(piece) if !piece.is_empty() => piece,
            Ok(_) | Err(_) => {
                // "+OK" has gone out; the message cannot be finished
                // truthfully, so the connection ends.
                log::error!(
                    "{}: message body {blob} could not be read back whole; closing",
                    conn.peer
                );
                conn.close().await;
                return Err(std::io::Error::other("damaged message body"));
            }
        };
        at += piece.len() as u64;
        out.clear();
        renderer.feed(&piece, &mut out);
        conn.write(&out).await?;
        pieces += 1;
        if pieces % 16 == 0 {
            smol::future::yield_now().await;
        }
    }
    out.clear();
    renderer.finish(&mut out);
    conn.write(&out).await?;
    session.message_sent(index, body_lines.is_none());
    Ok(())
}

/// The UPDATE state: deletes (or hides) what DELE marked and marks what
/// RETR fetched as seen, in one commit. Returns how many were deleted.
async fn update(
    shared: &Rc<Shared>,
    drop: &Maildrop,
    messages: &[Entry],
) -> Result<usize, StoreError> {
    let deleted: Vec<u32> = messages
        .iter()
        .filter(|m| m.deleted)
        .map(|m| m.uid)
        .collect();
    let seen: Vec<u32> = messages
        .iter()
        .filter(|m| m.retrieved && !m.deleted)
        .map(|m| m.uid)
        .collect();
    if deleted.is_empty() && seen.is_empty() {
        return Ok(0);
    }
    let (inbox, mode) = (drop.inbox, drop.mode);
    let count = deleted.len();
    shared
        .store
        .write(move |tx| {
            tx.change_flags(inbox, &seen, &FlagChange::Add(Flags::SEEN, Vec::new()))?;
            match mode {
                Pop3Mode::Delete => {
                    tx.expunge(inbox, &deleted)?;
                }
                Pop3Mode::Keep => {
                    let hide = Flags::POP3_HIDDEN.with(Flags::SEEN);
                    tx.change_flags(inbox, &deleted, &FlagChange::Add(hide, Vec::new()))?;
                }
            }
            Ok(())
        })
        .await?;
    Ok(count)
}
