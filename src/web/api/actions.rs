//! Flags, move and delete on a selection of messages, through the store
//! calls IMAP's STORE, MOVE and EXPUNGE make: the hub then wakes every IDLE
//! session on the folders touched.

use std::rc::Rc;

use super::{form, store_error, Folder, Request, Response};
use crate::services::Shared;
use crate::store::{FlagChange, Flags, MailboxId, SpecialUse};

/// The most UIDs one request may name.
const MAX_UIDS: usize = 100_000;

/// `uids=1,2,3`: sorted, without repeats; a bad list is a 400.
fn uids(form: &[(String, String)]) -> Result<Vec<u32>, Response> {
    let text = form::get(form, "uids").unwrap_or_default();
    let mut uids = Vec::new();
    for piece in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match piece.parse::<u32>() {
            Ok(uid) if uid > 0 && uids.len() < MAX_UIDS => uids.push(uid),
            _ => return Err(Response::error(400, "uids must be a list like 1,2,3")),
        }
    }
    if uids.is_empty() {
        return Err(Response::error(400, "no messages given (uids)"));
    }
    uids.sort_unstable();
    uids.dedup();
    Ok(uids)
}

fn flag_bits<'a>(names: impl Iterator<Item = &'a str>) -> Result<Flags, Response> {
    let mut bits = Flags::default();
    for name in names {
        bits = bits.with(match name.to_ascii_lowercase().as_str() {
            "\\seen" => Flags::SEEN,
            "\\flagged" => Flags::FLAGGED,
            "\\answered" => Flags::ANSWERED,
            "\\draft" => Flags::DRAFT,
            _ => {
                return Err(Response::error(
                    400,
                    "flags are \\Seen, \\Flagged, \\Answered or \\Draft",
                ))
            }
        });
    }
    Ok(bits)
}

pub async fn flags(shared: &Rc<Shared>, folder: &Folder<'_>, request: &Request) -> Response {
    let form = form::parse(&request.body);
    let uids = match uids(&form) {
        Ok(uids) => uids,
        Err(refusal) => return refusal,
    };
    let (add, remove) = match (
        flag_bits(form::all(&form, "add")),
        flag_bits(form::all(&form, "remove")),
    ) {
        (Ok(add), Ok(remove)) => (add, remove),
        (Err(refusal), _) | (_, Err(refusal)) => return refusal,
    };
    if add == Flags::default() && remove == Flags::default() {
        return Response::error(400, "nothing to change (add or remove)");
    }
    let mailbox = folder.id;
    let result = shared
        .store
        .write(move |tx| {
            if add != Flags::default() {
                tx.change_flags(mailbox, &uids, &FlagChange::Add(add, Vec::new()))?;
            }
            if remove != Flags::default() {
                tx.change_flags(mailbox, &uids, &FlagChange::Remove(remove, Vec::new()))?;
            }
            Ok(())
        })
        .await;
    match result {
        Ok(()) => super::ok(),
        Err(e) => store_error(&e),
    }
}

pub async fn move_to(shared: &Rc<Shared>, folder: &Folder<'_>, request: &Request) -> Response {
    let form = form::parse(&request.body);
    let uids = match uids(&form) {
        Ok(uids) => uids,
        Err(refusal) => return refusal,
    };
    let target = match form::get(&form, "to").and_then(super::id::<MailboxId>) {
        Some(target) => target,
        None => return Response::not_found(),
    };
    match super::owned_folder(shared, folder.user, target) {
        Ok(Some(_)) => {}
        Ok(None) => return Response::not_found(),
        Err(e) => return store_error(&e),
    }
    if target == folder.id {
        return super::ok();
    }
    match move_messages(shared, folder.id, uids, target).await {
        Ok(()) => super::ok(),
        Err(e) => store_error(&e),
    }
}

/// IMAP's MOVE: copy and expunge in one transaction. A move stays within
/// the user's quota root and frees what it takes, so like IMAP (and
/// Dovecot) it is not checked against the quota: a full user must still be
/// able to move mail to Trash.
async fn move_messages(
    shared: &Shared,
    from: MailboxId,
    uids: Vec<u32>,
    to: MailboxId,
) -> Result<(), crate::store::StoreError> {
    shared
        .store
        .write(move |tx| {
            let pairs = tx.copy_messages(from, &uids, to)?;
            let moved: Vec<u32> = pairs.iter().map(|(from, _)| *from).collect();
            tx.expunge(from, &moved)?;
            Ok(())
        })
        .await
}

/// To Trash; inside Trash (or for a user without one), for good.
pub async fn delete(
    shared: &Rc<Shared>,
    folder: &Folder<'_>,
    form: &[(String, String)],
) -> Response {
    let uids = match uids(form) {
        Ok(uids) => uids,
        Err(refusal) => return refusal,
    };
    let trash = match super::folders::special(shared, folder.user, SpecialUse::Trash) {
        Ok(trash) => trash,
        Err(e) => return store_error(&e),
    };
    let result = match trash {
        Some(trash) if trash != folder.id => move_messages(shared, folder.id, uids, trash).await,
        _ => {
            let mailbox = folder.id;
            shared
                .store
                .write(move |tx| tx.expunge(mailbox, &uids).map(drop))
                .await
        }
    };
    match result {
        Ok(()) => super::ok(),
        Err(e) => store_error(&e),
    }
}
