//! The web interface: a webmail served from the same binary and store.
//!
//! Layers, top to bottom:
//! - [`http`] speaks HTTP/1.1 (hyper, driven by smol on the event loop),
//!   applies the limits and timeouts, and sets the security headers on
//!   every response;
//! - [`session`] logs users in and out, keeps their sessions and checks the
//!   CSRF token of every request that changes anything;
//! - [`assets`] serves the page itself (HTML, CSS, JavaScript from `web/`);
//! - [`api`] answers the page's requests (`/api/...`) from the store, and
//!   streams changes to it as server-sent events.
//!
//! [`Request`] and [`Response`] are the plain values passed between them, so
//! [`api`] and [`session`] stay free of sockets and of hyper.

pub mod api;
pub mod assets;
pub mod http;
pub mod json;
pub mod session;

use std::pin::Pin;

use smol::stream::Stream;

/// The HTTP methods the web interface answers; anything else is 405.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Post,
    Other,
}

/// One request, its body already read in full (bounded by
/// `--max-message-size`, and charged to the memory budget while held).
#[derive(Debug)]
pub struct Request {
    pub method: Method,
    /// The path, still percent-encoded, without the query: `/api/folders`.
    pub path: String,
    /// The query's pairs, percent-decoded, in order.
    pub query: Vec<(String, String)>,
    /// `Content-Type`, if given.
    pub content_type: Option<String>,
    pub body: Vec<u8>,
}

impl Request {
    /// The first value of a query parameter.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Who a request of a logged-in session comes from.
#[derive(Clone, Debug)]
pub struct Caller {
    /// The canonical user name from the users file.
    pub user: String,
    /// The client's address (after `--trusted-proxy`), for logs.
    pub peer: String,
}

/// A body sent in pieces: server-sent events, or a large message or
/// attachment read from the store chunk by chunk. The stream ending ends
/// the body.
pub type ChunkStream = Pin<Box<dyn Stream<Item = Vec<u8>>>>;

pub enum Body {
    Bytes(Vec<u8>),
    Stream(ChunkStream),
}

/// One response. [`http`] adds the security headers, the session cookie
/// and `Content-Length` or chunking; handlers set the rest.
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    /// Extra headers, e.g. `Content-Disposition`, or a stricter
    /// `Content-Security-Policy` for a message's HTML.
    pub headers: Vec<(&'static str, String)>,
    pub body: Body,
}

impl Response {
    pub fn new(status: u16, content_type: &'static str, body: Vec<u8>) -> Response {
        Response {
            status,
            content_type,
            headers: Vec::new(),
            body: Body::Bytes(body),
        }
    }

    /// A JSON body (see [`json`]).
    pub fn json(status: u16, body: String) -> Response {
        Response::new(status, "application/json", body.into_bytes())
    }

    /// `{"error": why}` with the given status; `why` is for a person.
    pub fn error(status: u16, why: &str) -> Response {
        let mut out = json::Object::new();
        out.str("error", why);
        Response::json(status, out.finish())
    }

    pub fn not_found() -> Response {
        Response::error(404, "not found")
    }

    pub fn with_header(mut self, name: &'static str, value: String) -> Response {
        self.headers.push((name, value));
        self
    }
}
