//! HTTP/1.1 for the web interface and `--metrics`: hyper's server, driven
//! by smol on the event loop through a small adapter (no second runtime),
//! with the limits and timeouts every listener has, routing, the login
//! session and CSRF checks, and the security headers on every response.
//!
//! Limits, and what a client that breaks them meets:
//! - a request head over [`MAX_HEAD`] bytes: 431, closed (hyper);
//! - a head not complete within `--web-header-timeout` (slowloris), or no
//!   new request on a kept-alive connection within it: closed (hyper);
//! - a body over the route's limit: 413 before a byte of it is read when
//!   `Content-Length` says so, else as soon as it grows past the limit;
//! - a body held in memory is charged to `--memory-budget`: 503 when
//!   there is no room within `--memory-wait`;
//! - a body that stalls for [`BODY_STALL`] or takes longer than
//!   [`BODY_TIMEOUT`] in all: 408; a broken chunked encoding: 400;
//! - a client that stops reading what we send for [`WRITE_STALL`]: closed.
//!
//! Everything runs on the one event-loop thread, each connection a task,
//! so a slow client only ever waits for itself.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};

use hyper::body::{Body as HttpBody, Bytes, Frame, Incoming, SizeHint};
use hyper::header::{HeaderMap, HeaderName, HeaderValue};
use smol::io::{AsyncRead, AsyncWrite};
use smol::Timer;

use super::session::{self, Session};
use super::{json, Body, Caller, Method, Request, Response};
use crate::net::{Peer, Stream};
use crate::services::{Login, Shared};

/// The most a request's head (request line and headers) may take.
pub const MAX_HEAD: usize = 16 * 1024;
/// What an upload may add to `--max-message-size` for its multipart
/// framing and the form's other fields.
const UPLOAD_FRAMING: usize = 64 * 1024;
/// The most a body may take outside `/api/` (the login form).
const SMALL_BODY: usize = 8 * 1024;
/// A body that sends nothing for this long is given up.
const BODY_STALL: Duration = Duration::from_secs(60);
/// A body must be whole within this, however steadily it trickles.
const BODY_TIMEOUT: Duration = Duration::from_secs(15 * 60);
/// A client that reads nothing of what we send for this long is dropped.
const WRITE_STALL: Duration = Duration::from_secs(300);
/// Bodies of unknown length are charged to the memory budget in steps of
/// this as they grow.
const BUDGET_STEP: usize = 256 * 1024;

/// What a compose request (a draft or a message to send) holds beside its
/// body while it runs, in halves of the body's size: the attachments'
/// copy (1) and the message built from them (base64's 4/3 with line
/// ends, under 1.5), so 2.5 in all. Charged with the body, in one
/// reservation, so that a large upload never waits for memory it holds.
const COMPOSE_COST_HALVES: u64 = 5;

const DEFAULT_CSP: &str = "default-src 'self'; img-src 'self' data:; style-src 'self'; \
     script-src 'self'; frame-src 'self'; frame-ancestors 'none'; base-uri 'none'; \
     form-action 'self'";

/// The web interface's part of `serve`'s command line.
#[derive(Clone, Debug)]
pub struct WebConfig {
    /// `--https`.
    pub https: Option<SocketAddr>,
    /// Whether `--https` was left at its default: then a port that cannot
    /// be bound only costs the web interface, not the mail service.
    pub https_is_default: bool,
    /// `--http`: plain HTTP, for a reverse proxy or loopback.
    pub http: Option<SocketAddr>,
    /// `--metrics`: Prometheus text on its own plain listener.
    pub metrics: Option<SocketAddr>,
    /// `--trusted-proxy`: peers whose X-Forwarded-For and
    /// X-Forwarded-Proto are believed.
    pub trusted_proxies: Vec<IpAddr>,
    pub session_idle: Duration,
    pub session_max: Duration,
    /// `--web-header-timeout`.
    pub header_timeout: Duration,
}

impl Default for WebConfig {
    fn default() -> Self {
        WebConfig {
            https: None,
            https_is_default: false,
            http: None,
            metrics: None,
            trusted_proxies: Vec::new(),
            session_idle: Duration::from_secs(30 * 60),
            session_max: Duration::from_secs(7 * 24 * 3600),
            header_timeout: Duration::from_secs(20),
        }
    }
}

/// What a listener serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Site {
    /// The webmail (`--https`, `--http`).
    Webmail,
    /// `GET /metrics` only (`--metrics`).
    Metrics,
}

/// Serves one connection until the client leaves, a limit ends it, or it
/// breaks.
pub async fn serve(shared: Rc<Shared>, stream: Stream, peer: Peer, site: Site) {
    let header_timeout = shared.config.web.header_timeout;
    let io = Io {
        stream,
        write_stall: None,
    };
    let peer = Rc::new(peer);
    let service_peer = peer.clone();
    let service = hyper::service::service_fn(move |request| {
        let (shared, peer) = (shared.clone(), service_peer.clone());
        async move { Ok::<_, Infallible>(respond(&shared, &peer, site, request).await) }
    });
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(SmolTimer)
        .header_read_timeout(header_timeout)
        .max_buf_size(MAX_HEAD)
        .serve_connection(io, service);
    if let Err(e) = connection.await {
        // A client that hangs up or times out is ordinary; a malformed
        // request was already answered by hyper where it could be.
        log::debug!("{peer}: http: {e}");
    }
}

/// Who a request comes from once `--trusted-proxy` is applied: the
/// address for throttling and logs, and whether the page came over HTTPS.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Client {
    addr: SocketAddr,
    https: bool,
}

impl Client {
    /// A [`Peer`] with the client's address and HTTPS as its TLS, so the
    /// shared login rules (throttle, plaintext) see the real client.
    fn peer(&self, connection: &Peer) -> Peer {
        Peer {
            id: connection.id,
            addr: Some(self.addr),
            tls: self.https,
        }
    }
}

/// The client behind a request. Only a `--trusted-proxy` peer is believed:
/// X-Forwarded-For's right-most address that is not itself a trusted proxy
/// (the ones to its left could be made up by the client), and
/// X-Forwarded-Proto's right-most value (the nearest proxy's).
fn client_of(peer: &Peer, headers: &HeaderMap, trusted: &[IpAddr]) -> Client {
    let direct = peer
        .addr
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)));
    let is_trusted = |ip: IpAddr| {
        trusted
            .iter()
            .any(|t| t.to_canonical() == ip.to_canonical())
    };
    if !is_trusted(direct.ip()) {
        return Client {
            addr: direct,
            https: peer.tls,
        };
    }
    let mut addr = direct;
    let hops = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect::<Vec<_>>();
    for hop in hops.iter().rev() {
        let Some(ip) = parse_forwarded_ip(hop) else {
            break;
        };
        addr = SocketAddr::new(ip, 0);
        if !is_trusted(ip) {
            break;
        }
    }
    let proto = headers
        .get_all("x-forwarded-proto")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .next_back();
    let https = match proto {
        Some(p) => p.eq_ignore_ascii_case("https"),
        None => peer.tls,
    };
    Client { addr, https }
}

/// An address as proxies write it in X-Forwarded-For: `192.0.2.1`,
/// `2001:db8::1`, `[2001:db8::1]:443` or `192.0.2.1:5555`.
fn parse_forwarded_ip(text: &str) -> Option<IpAddr> {
    text.parse::<IpAddr>()
        .ok()
        .or_else(|| text.parse::<SocketAddr>().ok().map(|a| a.ip()))
}

/// What [`respond`] knows about the request it is answering.
struct Exchange<'a> {
    shared: &'a Rc<Shared>,
    connection: &'a Peer,
    client: Client,
    headers: HeaderMap,
}

async fn respond(
    shared: &Rc<Shared>,
    connection: &Peer,
    site: Site,
    request: hyper::Request<Incoming>,
) -> hyper::Response<OutBody> {
    let (parts, body) = request.into_parts();
    let method = match parts.method {
        hyper::Method::GET => Method::Get,
        hyper::Method::HEAD => Method::Head,
        hyper::Method::POST => Method::Post,
        _ => Method::Other,
    };
    let path = parts.uri.path().to_string();
    let query = parts.uri.query().unwrap_or("").to_string();
    let ctx = Exchange {
        shared,
        connection,
        client: client_of(
            connection,
            &parts.headers,
            &shared.config.web.trusted_proxies,
        ),
        headers: parts.headers,
    };
    let private = path == "/session"
        || path == "/login"
        || path == "/logout"
        || path == "/api"
        || path.starts_with("/api/");
    let (response, close) = match site {
        Site::Metrics => (metrics(shared, method, &path), false),
        Site::Webmail => match route(&ctx, method, &path, &query, body).await {
            Ok(response) => (response, false),
            // The body was not read to its end: the connection cannot
            // carry another request.
            Err(response) => (response, true),
        },
    };
    shared
        .metrics
        .web_requests
        .set(shared.metrics.web_requests.get() + 1);
    log::debug!(
        "{}: {} {} {}",
        ctx.client.peer(connection),
        method_name(method),
        path,
        response.status
    );
    into_hyper(response, private, close)
}

fn method_name(method: Method) -> &'static str {
    match method {
        Method::Get => "GET",
        Method::Head => "HEAD",
        Method::Post => "POST",
        Method::Other => "(other method)",
    }
}

/// `--metrics`: `GET /metrics` and nothing else.
fn metrics(shared: &Shared, method: Method, path: &str) -> Response {
    match (method, path) {
        (Method::Get | Method::Head, "/metrics") => Response::new(
            200,
            "text/plain; version=0.0.4; charset=utf-8",
            shared.metrics.render().into_bytes(),
        ),
        (_, "/metrics") => method_not_allowed("GET, HEAD"),
        _ => Response::not_found(),
    }
}

fn method_not_allowed(allow: &str) -> Response {
    Response::error(405, "method not allowed").with_header("Allow", allow.to_string())
}

/// The webmail's routes. An `Err` is an answer given without reading the
/// whole body, after which the connection closes.
async fn route(
    ctx: &Exchange<'_>,
    method: Method,
    path: &str,
    query: &str,
    body: Incoming,
) -> Result<Response, Response> {
    if method == Method::Other {
        return Ok(method_not_allowed("GET, HEAD, POST"));
    }
    if !path_is_clean(path) {
        return Ok(Response::error(400, "bad path"));
    }
    let read = matches!(method, Method::Post);
    let get = matches!(method, Method::Get | Method::Head);
    match path {
        "/" if get => Ok(super::assets::serve(None, ctx.header("if-none-match"))),
        "/login" if read => {
            let (body, _charge) = read_body(ctx, body, SMALL_BODY, 2).await?;
            Ok(login(ctx, &body).await)
        }
        "/session" if get => Ok(match ctx.session() {
            Some((_, session)) => session_json(200, &session),
            None => not_logged_in(),
        }),
        "/logout" if read => Ok(logout(ctx)),
        "/" | "/login" | "/session" | "/logout" => {
            Ok(method_not_allowed(if read { "GET, HEAD" } else { "POST" }))
        }
        _ if path == "/api" || path.starts_with("/api/") => {
            api(ctx, method, path, query, body).await
        }
        _ => match path.strip_prefix("/assets/") {
            Some(name) if get => Ok(super::assets::serve(
                Some(name),
                ctx.header("if-none-match"),
            )),
            Some(_) => Ok(method_not_allowed("GET, HEAD")),
            None => Ok(Response::not_found()),
        },
    }
}

/// Refuses paths that try to leave where they point: `..` as a segment,
/// raw or percent-encoded, an encoded `/` or backslash that a later decoding
/// would turn into a separator, NUL, and raw backslashes.
fn path_is_clean(path: &str) -> bool {
    if !path.starts_with('/') {
        return false;
    }
    let lower = path.to_ascii_lowercase();
    if ["%2f", "%5c", "%00", "\\", "\0"]
        .iter()
        .any(|bad| lower.contains(bad))
    {
        return false;
    }
    lower.split('/').all(|segment| {
        let decoded = segment.replace("%2e", ".");
        decoded != ".." && decoded != "."
    })
}

impl Exchange<'_> {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The request's live session, and its cookie token. A session whose
    /// user left the users file or changed password ends here.
    fn session(&self) -> Option<(String, Session)> {
        let token = session::token_from_cookies(
            self.headers
                .get_all(hyper::header::COOKIE)
                .iter()
                .map(|v| v.as_bytes()),
        )?;
        let now = Instant::now();
        let session = self.shared.web_sessions.borrow_mut().touch(token, now)?;
        if !credential_holds(self.shared, &session) {
            self.shared.web_sessions.borrow_mut().remove(token);
            return None;
        }
        Some((token.to_string(), session))
    }

    /// Whether the request carries the session's CSRF token.
    fn csrf_ok(&self, session: &Session) -> bool {
        self.headers
            .get("x-csrf-token")
            .is_some_and(|given| session::tokens_match(given.as_bytes(), session.csrf.as_bytes()))
    }
}

/// Whether `session`'s user is still in the users file with the password
/// entry it logged in with: changing a password (say, one that leaked)
/// ends every web session of that user at its next request or event.
fn credential_holds(shared: &Shared, session: &Session) -> bool {
    shared.user_entry(&session.user).is_some_and(|entry| {
        shared.web_sessions.borrow().fingerprint(&entry.password) == session.credential
    })
}

fn not_logged_in() -> Response {
    Response::error(401, "not logged in")
}

fn bad_csrf() -> Response {
    Response::error(403, "missing or wrong CSRF token: reload the page")
}

fn session_json(status: u16, session: &Session) -> Response {
    let mut out = json::Object::new();
    out.str("user", &session.user).str("csrf", &session.csrf);
    Response::json(status, out.finish())
}

/// `POST /login`: the same users, throttle and plaintext rule as IMAP.
async fn login(ctx: &Exchange<'_>, body: &[u8]) -> Response {
    let peer = ctx.client.peer(ctx.connection);
    if !ctx.shared.plaintext_auth_allowed(&peer) {
        log::info!("{peer}: web login refused: a password over plain HTTP from another machine");
        return Response::error(
            403,
            "passwords are only accepted over HTTPS (or from this machine): use the https:// address",
        );
    }
    let form = parse_form(body);
    let field = |name: &str| {
        form.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let (Some(user), Some(password)) = (field("user"), field("password")) else {
        return Response::error(400, "the form needs user and password");
    };
    // The entry as it is before the password is checked: if it changes
    // while the hash is worked out (a leaked password being replaced), the
    // new session already carries the old fingerprint and ends at once.
    let credential = ctx.shared.user_entry(user).map(|entry| {
        ctx.shared
            .web_sessions
            .borrow()
            .fingerprint(&entry.password)
    });
    let user = match ctx
        .shared
        .authenticate(&peer, user, password.as_bytes())
        .await
    {
        Login::Ok(user) => user,
        Login::Failed => return Response::error(401, "wrong user name or password"),
    };
    if let Err(e) = ctx.shared.ensure_user(&user).await {
        log::error!("{peer}: cannot prepare the mailboxes of {user}: {e}");
        return Response::error(500, "the mail store failed; see the server's log");
    }
    let Some(credential) = credential else {
        return Response::error(401, "wrong user name or password");
    };
    let created = ctx
        .shared
        .web_sessions
        .borrow_mut()
        .create(&user, credential, Instant::now());
    let Some((token, session)) = created else {
        log::error!("{peer}: no random numbers for a session token");
        return Response::error(500, "cannot start a session; see the server's log");
    };
    session_json(200, &session)
        .with_header("Set-Cookie", session::set_cookie(&token, ctx.client.https))
}

/// `POST /logout`: ends the session. Without a live session there is
/// nothing to end, and the browser's cookie is cleared all the same.
fn logout(ctx: &Exchange<'_>) -> Response {
    let clear = session::clear_cookie(ctx.client.https);
    let Some((token, session)) = ctx.session() else {
        return Response::new(204, "text/plain", Vec::new()).with_header("Set-Cookie", clear);
    };
    if !ctx.csrf_ok(&session) {
        return bad_csrf();
    }
    ctx.shared.web_sessions.borrow_mut().remove(&token);
    log::info!(
        "{}: web logout of {}",
        ctx.client.peer(ctx.connection),
        session.user
    );
    Response::new(204, "text/plain", Vec::new()).with_header("Set-Cookie", clear)
}

/// `/api/...`: a live session, the CSRF token on a POST, then web-api.
async fn api(
    ctx: &Exchange<'_>,
    method: Method,
    path: &str,
    query: &str,
    body: Incoming,
) -> Result<Response, Response> {
    let Some((token, session)) = ctx.session() else {
        return Ok(not_logged_in());
    };
    if method == Method::Post && !ctx.csrf_ok(&session) {
        return Ok(bad_csrf());
    }
    let limit = ctx
        .shared
        .config
        .max_message_size
        .saturating_add(UPLOAD_FRAMING);
    let cost_halves = if matches!(path, "/api/drafts" | "/api/send") {
        COMPOSE_COST_HALVES
    } else {
        2
    };
    let (body, _charge) = if method == Method::Post {
        read_body(ctx, body, limit, cost_halves).await?
    } else {
        (Vec::new(), Vec::new())
    };
    let request = Request {
        // hyper leaves a HEAD response's body out, so the API answers it
        // as the GET it mirrors.
        method: if method == Method::Head {
            Method::Get
        } else {
            method
        },
        path: path.to_string(),
        query: parse_form(query.as_bytes()),
        content_type: ctx.header("content-type").map(str::to_string),
        body,
    };
    let caller = Caller {
        user: session.user,
        peer: ctx.client.addr.ip().to_string(),
    };
    let mut response = super::api::handle(ctx.shared, &caller, request).await;
    // A stream (the page's events, a long download) ends with its session:
    // after a logout or expiry, not another event reaches that page.
    if let Body::Stream(stream) = response.body {
        let shared = ctx.shared.clone();
        let live = move || {
            let session = shared.web_sessions.borrow().peek(&token, Instant::now());
            session.is_some_and(|session| credential_holds(&shared, &session))
        };
        response.body = Body::Stream(Box::pin(WhileLive { stream, live }));
    }
    Ok(response)
}

/// A stream that ends at the first chunk after `live` says no.
struct WhileLive<F> {
    stream: super::ChunkStream,
    live: F,
}

impl<F: Fn() -> bool + Unpin> smol::stream::Stream for WhileLive<F> {
    type Item = Vec<u8>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Vec<u8>>> {
        let this = self.get_mut();
        match ready!(this.stream.as_mut().poll_next(cx)) {
            Some(chunk) if (this.live)() => Poll::Ready(Some(chunk)),
            _ => Poll::Ready(None),
        }
    }
}

/// Reads a request body of at most `limit` bytes into memory, charged to
/// the memory budget while it is held (the reservations returned).
/// `cost_halves`: what the request holds in memory per byte of body, in
/// halves (2 for the body alone).
async fn read_body(
    ctx: &Exchange<'_>,
    mut body: Incoming,
    limit: usize,
    cost_halves: u64,
) -> Result<(Vec<u8>, Vec<crate::net::budget::Reservation>), Response> {
    let cost = |bytes: u64| bytes.saturating_mul(cost_halves) / 2;
    let too_large = || {
        Response::error(
            413,
            &format!("the request is larger than the limit of {limit} bytes"),
        )
    };
    let hint = body.size_hint();
    if hint.lower() > limit as u64 {
        return Err(too_large());
    }
    let budget = &ctx.shared.budget;
    let wait = Some(ctx.shared.config.memory_wait);
    let busy = || Response::error(503, "the server is busy; try again in a moment");
    let mut charges = Vec::new();
    let mut charged = 0usize;
    if let Some(exact) = hint.exact() {
        if exact > 0 {
            charges.push(budget.reserve(cost(exact), wait).await.ok_or_else(busy)?);
        }
        charged = exact as usize;
    }
    let mut out = Vec::with_capacity(charged.min(limit));
    let started = Instant::now();
    loop {
        let left = BODY_TIMEOUT.saturating_sub(started.elapsed());
        let frame = smol::future::or(
            async { Some(std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await) },
            async {
                Timer::after(left.min(BODY_STALL)).await;
                None
            },
        )
        .await;
        let frame = match frame {
            None => return Err(Response::error(408, "the request body came too slowly")),
            Some(None) => break,
            Some(Some(Err(e))) => {
                log::debug!("{}: bad request body: {e}", ctx.connection);
                return Err(Response::error(400, "malformed request body"));
            }
            Some(Some(Ok(frame))) => frame,
        };
        let Ok(data) = frame.into_data() else {
            continue; // trailers
        };
        if out.len() + data.len() > limit {
            return Err(too_large());
        }
        while out.len() + data.len() > charged {
            charges.push(
                budget
                    .reserve(cost(BUDGET_STEP as u64), wait)
                    .await
                    .ok_or_else(busy)?,
            );
            charged += BUDGET_STEP;
        }
        out.extend_from_slice(&data);
    }
    Ok((out, charges))
}

/// The pairs of an `application/x-www-form-urlencoded` body or a query,
/// decoded; pairs that do not decode to UTF-8 are left out.
pub fn parse_form(text: &[u8]) -> Vec<(String, String)> {
    text.split(|&b| b == b'&')
        .filter(|pair| !pair.is_empty())
        .filter_map(|pair| {
            let mut halves = pair.splitn(2, |&b| b == b'=');
            let name = percent_decode(halves.next().unwrap_or_default())?;
            let value = percent_decode(halves.next().unwrap_or_default())?;
            Some((name, value))
        })
        .collect()
}

/// `+` is a space and `%XX` a byte; a `%` not followed by two hex digits
/// stays as it is, as browsers do.
fn percent_decode(text: &[u8]) -> Option<String> {
    let hex = |b: Option<&u8>| b.and_then(|&b| (b as char).to_digit(16)).map(|d| d as u8);
    let mut out = Vec::with_capacity(text.len());
    let mut i = 0;
    while i < text.len() {
        match text[i] {
            b'+' => out.push(b' '),
            b'%' => match (hex(text.get(i + 1)), hex(text.get(i + 2))) {
                (Some(high), Some(low)) => {
                    out.push(high << 4 | low);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            byte => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// Turns a handler's [`Response`] into hyper's, with the security headers
/// (a handler's own Content-Security-Policy wins, and then the page may
/// frame it), `Cache-Control: no-store` on private routes, and
/// `Connection: close` when the request's body was left unread.
fn into_hyper(response: Response, private: bool, close: bool) -> hyper::Response<OutBody> {
    match build(response, private, close) {
        Ok(built) => built,
        Err(e) => {
            // Only a handler's header value can fail (a byte not allowed
            // in a header); sending the response without it could change
            // its meaning (a Content-Disposition lost), so it is an error.
            log::error!("web: a response header could not be sent: {e} (a bug: please report it)");
            let fallback = Response::error(500, "internal error");
            build(fallback, private, close).unwrap_or_else(|_| {
                let mut plain = hyper::Response::new(OutBody::Empty);
                *plain.status_mut() = hyper::StatusCode::INTERNAL_SERVER_ERROR;
                plain
            })
        }
    }
}

fn build(
    response: Response,
    private: bool,
    close: bool,
) -> Result<hyper::Response<OutBody>, String> {
    let status = hyper::StatusCode::from_u16(response.status).map_err(|e| e.to_string())?;
    let mut headers = HeaderMap::new();
    let own_csp = response
        .headers
        .iter()
        .any(|(name, _)| name.eq_ignore_ascii_case("content-security-policy"));
    for (name, value) in &response.headers {
        let name = HeaderName::from_bytes(name.as_bytes()).map_err(|e| e.to_string())?;
        let value = HeaderValue::from_str(value).map_err(|e| format!("{name}: {e}"))?;
        headers.append(name, value);
    }
    let fixed = |value: &'static str| HeaderValue::from_static(value);
    if status != hyper::StatusCode::NOT_MODIFIED && status != hyper::StatusCode::NO_CONTENT {
        headers.insert(hyper::header::CONTENT_TYPE, fixed(response.content_type));
    }
    if own_csp {
        headers.insert("x-frame-options", fixed("SAMEORIGIN"));
    } else {
        headers.insert("content-security-policy", fixed(DEFAULT_CSP));
        headers.insert("x-frame-options", fixed("DENY"));
    }
    headers.insert("x-content-type-options", fixed("nosniff"));
    headers.insert("referrer-policy", fixed("no-referrer"));
    if private {
        headers.insert(hyper::header::CACHE_CONTROL, fixed("no-store"));
    }
    if close {
        headers.insert(hyper::header::CONNECTION, fixed("close"));
    }
    let body = match response.body {
        Body::Bytes(bytes) if bytes.is_empty() => OutBody::Empty,
        Body::Bytes(bytes) => OutBody::Full(Some(Bytes::from(bytes))),
        Body::Stream(stream) => OutBody::Stream(stream),
    };
    let mut out = hyper::Response::new(body);
    *out.status_mut() = status;
    *out.headers_mut() = headers;
    Ok(out)
}

/// A response body as hyper sends it: whole (with `Content-Length`), or
/// streamed in chunks, each sent at once (server-sent events need that:
/// hyper flushes whenever the stream has nothing more ready).
pub enum OutBody {
    Empty,
    Full(Option<Bytes>),
    Stream(super::ChunkStream),
}

impl HttpBody for OutBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.get_mut() {
            OutBody::Empty => Poll::Ready(None),
            OutBody::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            OutBody::Stream(stream) => loop {
                match ready!(stream.as_mut().poll_next(cx)) {
                    // An empty chunk would end a chunked body early.
                    Some(chunk) if chunk.is_empty() => continue,
                    Some(chunk) => return Poll::Ready(Some(Ok(Frame::data(Bytes::from(chunk))))),
                    None => return Poll::Ready(None),
                }
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            OutBody::Empty => true,
            OutBody::Full(bytes) => bytes.is_none(),
            OutBody::Stream(_) => false,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            OutBody::Empty => SizeHint::with_exact(0),
            OutBody::Full(bytes) => {
                SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64))
            }
            OutBody::Stream(_) => SizeHint::default(),
        }
    }
}

/// Our streams as hyper's I/O, with a stall timeout on writing: a client
/// that stops reading cannot hold its connection (and what the response
/// holds) forever.
struct Io {
    stream: Stream,
    write_stall: Option<Timer>,
}

impl Io {
    fn stalled<T>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        let timer = self
            .write_stall
            .get_or_insert_with(|| Timer::after(WRITE_STALL));
        match Pin::new(timer).poll(cx) {
            Poll::Ready(_) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client stopped reading",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn progressed<T>(&mut self, result: io::Result<T>) -> Poll<io::Result<T>> {
        self.write_stall = None;
        Poll::Ready(result)
    }
}

impl hyper::rt::Read for Io {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        mut buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        // Read through a buffer on the stack: filling hyper's uninitialised
        // one directly would need unsafe code for a copy that costs little.
        let mut chunk = [0u8; 8192];
        let want = buf.remaining().min(chunk.len());
        let n = ready!(Pin::new(&mut self.get_mut().stream).poll_read(cx, &mut chunk[..want]))?;
        buf.put_slice(&chunk[..n]);
        Poll::Ready(Ok(()))
    }
}

impl hyper::rt::Write for Io {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.stream).poll_write(cx, buf) {
            Poll::Ready(result) => this.progressed(result),
            Poll::Pending => this.stalled(cx),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.stream).poll_flush(cx) {
            Poll::Ready(result) => this.progressed(result),
            Poll::Pending => this.stalled(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.stream).poll_close(cx) {
            Poll::Ready(result) => this.progressed(result),
            Poll::Pending => this.stalled(cx),
        }
    }
}

/// smol's timers for hyper's header-read timeout.
#[derive(Clone)]
struct SmolTimer;

struct SmolSleep(Timer);

impl Future for SmolSleep {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        Pin::new(&mut self.get_mut().0).poll(cx).map(|_| ())
    }
}

impl hyper::rt::Sleep for SmolSleep {}

impl hyper::rt::Timer for SmolTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(SmolSleep(Timer::after(duration)))
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(SmolSleep(Timer::at(deadline)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(addr: &str, tls: bool) -> Peer {
        Peer {
            id: 1,
            addr: Some(addr.parse().unwrap()),
            tls,
        }
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn forwarded_headers_count_only_from_trusted_proxies() {
        let proxy: IpAddr = "10.0.0.1".parse().unwrap();
        let trusted = [proxy, "10.0.0.2".parse().unwrap()];
        let h = headers(&[
            ("x-forwarded-for", "6.6.6.6, 203.0.113.9"),
            ("x-forwarded-for", "10.0.0.2"),
            ("x-forwarded-proto", "https"),
        ]);
        // From a stranger: the headers are ignored.
        let direct = client_of(&peer("198.51.100.7:4000", false), &h, &trusted);
        assert_eq!(direct.addr, "198.51.100.7:4000".parse().unwrap());
        assert!(!direct.https);
        // Through the proxies: the right-most untrusted hop.
        let via = client_of(&peer("10.0.0.1:5000", false), &h, &trusted);
        assert_eq!(via.addr.ip(), "203.0.113.9".parse::<IpAddr>().unwrap());
        assert!(via.https);
        // No header: the proxy itself, plain HTTP.
        let bare = client_of(&peer("10.0.0.1:5000", false), &HeaderMap::new(), &trusted);
        assert_eq!(bare.addr.ip(), proxy);
        assert!(!bare.https);
        // Garbage stops the walk at the last good hop.
        let h = headers(&[
            ("x-forwarded-for", "203.0.113.9, nonsense"),
            ("x-forwarded-proto", "https, http"),
        ]);
        let via = client_of(&peer("10.0.0.1:5000", true), &h, &trusted);
        assert_eq!(via.addr.ip(), proxy);
        assert!(!via.https, "the nearest proxy's word counts");
        let h = headers(&[("x-forwarded-for", "[2001:db8::1]:443")]);
        let via = client_of(&peer("10.0.0.1:5000", false), &h, &trusted);
        assert_eq!(via.addr.ip(), "2001:db8::1".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn traversal_is_refused() {
        for bad in [
            "/assets/../Cargo.toml",
            "/assets/%2e%2e/x",
            "/assets/.%2E/x",
            "/assets/..",
            "/assets/a%2fb",
            "/assets/a%2Fb",
            "/assets/a%00",
            "/assets/a%5cb",
            "/assets/a\\b",
            "/./x",
            "x",
        ] {
            assert!(!path_is_clean(bad), "{bad}");
        }
        for good in [
            "/",
            "/assets/app.js",
            "/api/folders/3/messages/7",
            "/a..b/c.d",
        ] {
            assert!(path_is_clean(good), "{good}");
        }
    }

    fn header<'a>(response: &'a hyper::Response<OutBody>, name: &str) -> Option<&'a str> {
        response.headers().get(name).and_then(|v| v.to_str().ok())
    }

    #[test]
    fn a_handlers_own_policy_wins_and_may_be_framed_by_the_page() {
        let own = Response::new(200, "text/html; charset=utf-8", b"<p>hi".to_vec()).with_header(
            "Content-Security-Policy",
            "default-src 'none'; frame-ancestors 'self'".to_string(),
        );
        let built = into_hyper(own, true, false);
        assert_eq!(
            header(&built, "content-security-policy"),
            Some("default-src 'none'; frame-ancestors 'self'")
        );
        assert_eq!(header(&built, "x-frame-options"), Some("SAMEORIGIN"));
        assert_eq!(header(&built, "cache-control"), Some("no-store"));
        let plain = into_hyper(Response::not_found(), false, true);
        assert_eq!(header(&plain, "content-security-policy"), Some(DEFAULT_CSP));
        assert_eq!(header(&plain, "x-frame-options"), Some("DENY"));
        assert_eq!(header(&plain, "connection"), Some("close"));
        assert_eq!(header(&plain, "cache-control"), None);
    }

    #[test]
    fn a_header_value_with_a_line_break_is_never_sent() {
        let injected = Response::new(200, "text/plain", b"x".to_vec()).with_header(
            "Content-Disposition",
            "attachment\r\nSet-Cookie: x=y".to_string(),
        );
        let built = into_hyper(injected, false, false);
        assert_eq!(built.status(), 500);
        assert!(built.headers().get("set-cookie").is_none());
        assert!(built.headers().get("content-disposition").is_none());
    }

    #[test]
    fn a_stream_ends_with_its_session() {
        use smol::stream::StreamExt;
        let live = Rc::new(std::cell::Cell::new(true));
        let flag = live.clone();
        let chunks: super::super::ChunkStream = Box::pin(smol::stream::iter(vec![
            b"a".to_vec(),
            b"b".to_vec(),
            b"c".to_vec(),
        ]));
        let mut stream = WhileLive {
            stream: chunks,
            live: move || flag.get(),
        };
        smol::block_on(async {
            assert_eq!(stream.next().await, Some(b"a".to_vec()));
            live.set(false);
            assert_eq!(stream.next().await, None);
        });
    }

    #[test]
    fn forms_decode() {
        assert_eq!(
            parse_form(b"user=al%69ce&password=a+b%26c%3D&x&bad=%zz%4"),
            vec![
                ("user".into(), "alice".into()),
                ("password".into(), "a b&c=".into()),
                ("x".into(), "".into()),
                ("bad".into(), "%zz%4".into())
            ]
        );
        assert_eq!(parse_form(b"a=%ff"), vec![]);
    }
}
