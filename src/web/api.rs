//! The page's requests under `/api/`: folders, message lists, messages,
//! changes to them, compose and send, and the live event stream.

use std::rc::Rc;

use super::{Caller, Request, Response};
use crate::services::Shared;

/// Answers one `/api/...` request of a logged-in session. The CSRF token of
/// a request that changes anything was checked before this is called.
pub async fn handle(_shared: &Rc<Shared>, _caller: &Caller, _request: Request) -> Response {
    Response::not_found()
}
