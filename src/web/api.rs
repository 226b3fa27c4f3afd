//! The page's requests under `/api/`: folders, message lists, messages,
//! changes to them, compose and send, and the live event stream.
//!
//! Every route reads and writes through the same store calls IMAP uses, so
//! a change made here wakes IMAP IDLE sessions through the hub, and a
//! change made over IMAP reaches the page through [`events`]. A folder id
//! or UID of another user's answers 404 exactly as an unknown one does.

mod actions;
mod compose;
mod events;
mod folders;
pub mod form;
pub mod html;
pub(crate) mod list;
mod message;
pub mod multipart;

pub use compose::split_command;

use std::rc::Rc;

use super::{json, Caller, Method, Request, Response};
use crate::services::Shared;
use crate::store::{MailboxId, MailboxRecord, StoreError};

/// Answers one `/api/...` request of a logged-in session. The CSRF token of
/// a request that changes anything was checked before this is called.
pub async fn handle(shared: &Rc<Shared>, caller: &Caller, request: Request) -> Response {
    let Some(rest) = request.path.strip_prefix("/api/") else {
        return Response::not_found();
    };
    let user = caller.user.as_str();
    let get = matches!(request.method, Method::Get | Method::Head);
    let post = request.method == Method::Post;
    if !get && !post {
        return Response::error(405, "method not allowed");
    }
    // The user's folders are made on first use, as an IMAP login does.
    if let Err(e) = shared.ensure_user(user).await {
        return store_error(&e);
    }
    let rest = rest.to_string();
    // The compose routes take the body itself: it may be large.
    if post && (rest == "drafts" || rest == "send") {
        return if rest == "drafts" {
            compose::draft(shared, user, request).await
        } else {
            compose::send(shared, user, request).await
        };
    }
    let segments: Vec<&str> = rest.split('/').collect();
    match (post, segments.as_slice()) {
        (false, ["config"]) => config(shared, user),
        (false, ["events"]) => events::stream(shared.clone(), user.to_string()),
        (false, ["folders"]) => folders::list(shared, user),
        (true, ["folders", "create"]) => folders::create(shared, user, &request).await,
        (_, ["folders", f, rest @ ..]) => {
            let Some(folder) = id::<MailboxId>(f) else {
                return Response::not_found();
            };
            let record = match owned_folder(shared, user, folder) {
                Ok(Some(record)) => record,
                Ok(None) => return Response::not_found(),
                Err(e) => return store_error(&e),
            };
            let target = Folder {
                id: folder,
                record,
                user,
            };
            folder_route(shared, &target, post, rest, &request).await
        }
        _ => Response::not_found(),
    }
}

/// A folder of the caller's, checked.
pub(crate) struct Folder<'a> {
    pub id: MailboxId,
    pub record: MailboxRecord,
    pub user: &'a str,
}

async fn folder_route(
    shared: &Rc<Shared>,
    folder: &Folder<'_>,
    post: bool,
    rest: &[&str],
    request: &Request,
) -> Response {
    match (post, rest) {
        (false, ["messages"]) => list::list(shared, folder, request).await,
        (true, ["rename"]) => folders::rename(shared, folder, request).await,
        // Deleting messages and deleting the folder are two paths, so a
        // form that lost its `uids` is a 400, never the whole folder gone.
        (true, ["delete"]) => actions::delete(shared, folder, &form::parse(&request.body)).await,
        (true, ["delete-folder"]) => folders::delete(shared, folder).await,
        (true, ["flags"]) => actions::flags(shared, folder, request).await,
        (true, ["move"]) => actions::move_to(shared, folder, request).await,
        (false, ["messages", u, more @ ..]) => {
            let Some(uid) = id::<u32>(u) else {
                return Response::not_found();
            };
            match more {
                [] => message::view(shared, folder, uid).await,
                ["html"] => {
                    message::html(shared, folder, uid, request.param("remote") == Some("1")).await
                }
                ["part", part] => message::part(shared, folder, uid, part),
                ["cid", cid] => message::cid(shared, folder, uid, &form::percent_decode(cid)),
                ["source"] => message::source(shared, folder, uid),
                _ => Response::not_found(),
            }
        }
        _ => Response::not_found(),
    }
}

/// A number in a path: plain decimal digits only (no sign, no spaces, no
/// percent-encoding), so `..` or `%2e` can never name anything.
fn id<T: std::str::FromStr>(text: &str) -> Option<T> {
    if text.is_empty() || text.len() > 20 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// The folder's record if it exists and belongs to `user`.
fn owned_folder(
    shared: &Shared,
    user: &str,
    folder: MailboxId,
) -> Result<Option<MailboxRecord>, StoreError> {
    let record = shared.store.snapshot()?.mailbox(folder)?;
    Ok(record.filter(|r| r.owner == user))
}

fn config(shared: &Shared, user: &str) -> Response {
    let mut out = json::Object::new();
    out.str("user", user)
        .str("from", &compose::from_address(shared, user))
        .bool("can_send", shared.config.sendmail.is_some())
        .num("max_message_size", shared.config.max_message_size as u64);
    Response::json(200, out.finish())
}

/// The JSON answer to a store error: what a person can act on, never a
/// panic and never the innards.
pub(crate) fn store_error(e: &StoreError) -> Response {
    match e {
        StoreError::NoSuchMailbox => Response::not_found(),
        StoreError::MailboxExists => Response::error(409, "a folder of that name exists"),
        StoreError::Refused(why) | StoreError::Limit(why) => Response::error(400, why),
        StoreError::OverQuota(why) => Response::error(507, why),
        StoreError::LowOnSpace => Response::error(507, "the server is low on disk space"),
        StoreError::Closed => Response::error(503, "the server is shutting down"),
        other => {
            log::error!("web: store error: {other}");
            Response::error(500, "the mail store failed; see the server log")
        }
    }
}

/// `{"ok":true}`.
pub(crate) fn ok() -> Response {
    Response::json(200, "{\"ok\":true}".to_string())
}
