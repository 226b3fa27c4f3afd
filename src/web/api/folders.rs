//! The folder list, and creating, renaming and deleting folders, through
//! the same store calls as IMAP's CREATE, RENAME and DELETE.

use std::rc::Rc;

use super::{form, json, store_error, Folder, Response};
use crate::services::Shared;
use crate::store::{MailboxRecord, SpecialUse, StoreError, DEFAULT_MAILBOXES};

/// Where a folder goes in the list: INBOX, the special-use folders in the
/// order every user gets them, then the rest by name.
fn rank(record: &MailboxRecord) -> (usize, &str) {
    if record.name == "INBOX" {
        return (0, "");
    }
    match record.special_use {
        Some(special) => {
            let place = DEFAULT_MAILBOXES
                .iter()
                .position(|(_, s)| *s == Some(special))
                .unwrap_or(DEFAULT_MAILBOXES.len());
            (1 + place, "")
        }
        None => (1 + DEFAULT_MAILBOXES.len(), record.name.as_str()),
    }
}

pub fn list(shared: &Shared, user: &str) -> Response {
    let mut folders = match shared.store.snapshot().and_then(|s| s.mailboxes(user)) {
        Ok(folders) => folders,
        Err(e) => return store_error(&e),
    };
    folders.sort_by(|(a_id, a), (b_id, b)| rank(a).cmp(&rank(b)).then(a_id.cmp(b_id)));
    let mut array = json::Array::new();
    for (id, record) in &folders {
        let mut folder = json::Object::new();
        folder.num("id", *id).str("name", &record.name);
        match record.special_use {
            Some(special) => folder.str("special_use", special.attribute()),
            None => folder.null("special_use"),
        };
        folder
            .num("unread", record.unseen)
            .num("total", record.exists);
        array.raw(&folder.finish());
    }
    let mut out = json::Object::new();
    out.raw("folders", &array.finish());
    Response::json(200, out.finish())
}

/// A folder name as IMAP's CREATE takes it: levels split by `/`, none
/// empty, no wildcards, no control characters; at most 255 bytes.
fn valid_name(raw: &str) -> Result<String, Response> {
    let name = raw.trim().trim_end_matches('/');
    if name.is_empty()
        || name.len() > 255
        || name.contains(['*', '%'])
        || name.starts_with('/')
        || name.contains("//")
        || name.chars().any(char::is_control)
    {
        return Err(Response::error(
            400,
            "invalid folder name (no *, %, control characters or empty levels)",
        ));
    }
    if name.eq_ignore_ascii_case("INBOX") {
        return Err(Response::error(400, "INBOX always exists"));
    }
    Ok(name.to_string())
}

pub async fn create(shared: &Rc<Shared>, user: &str, request: &super::Request) -> Response {
    let form = form::parse(&request.body);
    let name = match valid_name(form::get(&form, "name").unwrap_or_default()) {
        Ok(name) => name,
        Err(refusal) => return refusal,
    };
    let owner = user.to_string();
    let result = shared
        .store
        .write(move |tx| {
            if tx.mailbox_id(&owner, &name)?.is_some() {
                return Err(StoreError::MailboxExists);
            }
            // Missing parents are made too, as IMAP's CREATE does.
            let mut parent = String::new();
            for level in name.split('/') {
                if !parent.is_empty() {
                    parent.push('/');
                }
                parent.push_str(level);
                if parent != name && tx.mailbox_id(&owner, &parent)?.is_none() {
                    tx.create_mailbox(&owner, &parent, None)?;
                }
            }
            tx.create_mailbox(&owner, &name, None)
        })
        .await;
    match result {
        Ok(id) => {
            let mut out = json::Object::new();
            out.num("id", id);
            Response::json(200, out.finish())
        }
        Err(e) => store_error(&e),
    }
}

pub async fn rename(
    shared: &Rc<Shared>,
    folder: &Folder<'_>,
    request: &super::Request,
) -> Response {
    if folder.record.name == "INBOX" {
        return Response::error(400, "INBOX cannot be renamed");
    }
    let form = form::parse(&request.body);
    let to = match valid_name(form::get(&form, "name").unwrap_or_default()) {
        Ok(name) => name,
        Err(refusal) => return refusal,
    };
    let (user, from) = (folder.user.to_string(), folder.record.name.clone());
    let result = shared
        .store
        .write(move |tx| {
            // The new parent levels must exist, as after a CREATE.
            if let Some((parent, _)) = to.rsplit_once('/') {
                let mut path = String::new();
                for level in parent.split('/') {
                    if !path.is_empty() {
                        path.push('/');
                    }
                    path.push_str(level);
                    if tx.mailbox_id(&user, &path)?.is_none() {
                        tx.create_mailbox(&user, &path, None)?;
                    }
                }
            }
            tx.rename_mailbox(&user, &from, &to)
        })
        .await;
    match result {
        Ok(()) => super::ok(),
        Err(e) => store_error(&e),
    }
}

pub async fn delete(shared: &Rc<Shared>, folder: &Folder<'_>) -> Response {
    if folder.record.name == "INBOX" {
        return Response::error(400, "INBOX cannot be deleted");
    }
    let (user, name, id) = (
        folder.user.to_string(),
        folder.record.name.clone(),
        folder.id,
    );
    let result = shared
        .store
        .write(move |tx| {
            tx.delete_mailbox(&user, &name)?;
            tx.delete_metadata(&user, id)
        })
        .await;
    match result {
        Ok(()) => {
            shared.forget_recent(id);
            super::ok()
        }
        Err(e) => store_error(&e),
    }
}

/// The user's folder with this special use, if any.
pub fn special(
    shared: &Shared,
    user: &str,
    special: SpecialUse,
) -> Result<Option<crate::store::MailboxId>, StoreError> {
    Ok(shared
        .store
        .snapshot()?
        .mailboxes(user)?
        .into_iter()
        .find(|(_, r)| r.special_use == Some(special))
        .map(|(id, _)| id))
}
