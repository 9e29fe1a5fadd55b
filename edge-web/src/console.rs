//! The operator console: support staff's inbox in the browser, served by the edge itself at
//! `/console/` (`/` redirects there), with no PHP and nothing fetched from elsewhere.
//!
//! - The page (`assets/console/`) and its JSON API under `/console/api/`: sign in, the
//!   session, sign out (here or everywhere). Passwords are checked, and sessions kept, by the
//!   core's `Staff` service; the edge holds the session's token in an HttpOnly, SameSite=Strict
//!   cookie the page's scripts never see, and checks a CSRF token (derived from the session)
//!   on every request that changes something, and the `Origin` on each.
//! - The console's live socket is a token admin's socket of the default namespace, opened with
//!   `auth: {console: true}` and authenticated by the same cookie ([`socket_admin`]): the page
//!   uses the public socket contract (support's `:servadm` events), nothing of its own.
//!
//! This module is the console's HTTP boundary: the one place its status codes and error codes
//! are chosen.

use std::{net::IpAddr, sync::Arc, time::Duration};

use axum::{
    Json, Router,
    extract::{ConnectInfo, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Redirect, Response},
    routing::{get, post},
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use socketgram_common::attempts::Attempts;
use socketgram_proto::{reason, v1 as pb};
use socketioxide::SocketIo;
use tonic::Code;
use tracing::warn;

use crate::{Edge, config::WebConfig, conn::ConnInfo};

/// The session cookie: the core's session token.
pub const COOKIE: &str = "sg_session";
/// The header that carries the CSRF token on requests that change something.
pub const CSRF_HEADER: &str = "x-csrf-token";

const INDEX_HTML: &str = include_str!("../assets/console/index.html");
const CONSOLE_JS: &str = include_str!("../assets/console/console.js");
const CONSOLE_CSS: &str = include_str!("../assets/console/console.css");

/// The console's pages run nothing but their own files, from this origin.
const CSP: &str = "default-src 'self'; connect-src 'self'; img-src 'self' data:; \
                   style-src 'self'; script-src 'self'; media-src 'self' data:; \
                   frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/// Sign-ins one client address may try in a row, then one more per [`IP_REFILL`].
const IP_BURST: u32 = 10;
const IP_REFILL: Duration = Duration::from_secs(3);
/// Client addresses remembered by that limit before idle ones are forgotten.
const IP_KEYS: usize = 10_000;

/// The console's routes (none when `[web] console` is off).
pub fn router(config: &WebConfig, edge: &Arc<Edge>, io: SocketIo) -> Router {
    if !config.console {
        return Router::new();
    }
    let state = Arc::new(Console {
        edge: edge.clone(),
        io,
        demo: config.demo,
        sign_ins: Attempts::new(IP_BURST, IP_REFILL, IP_KEYS),
    });
    Router::new()
        .route("/", get(|| async { Redirect::to("/console/") }))
        .route("/console", get(|| async { Redirect::to("/console/") }))
        .route(
            "/console/",
            get(|| async { page(INDEX_HTML, "text/html; charset=utf-8") }),
        )
        .route(
            "/console/console.js",
            get(|| async { page(CONSOLE_JS, "application/javascript; charset=utf-8") }),
        )
        .route(
            "/console/console.css",
            get(|| async { page(CONSOLE_CSS, "text/css; charset=utf-8") }),
        )
        .route("/console/try", get(test_visitor_page))
        .route("/console/try/token", get(test_visitor_token))
        .route("/console/api/session", get(session))
        .route("/console/api/sign-in", post(sign_in))
        .route("/console/api/sign-out", post(sign_out_here))
        .route(
            "/console/api/sign-out-everywhere",
            post(sign_out_everywhere),
        )
        .with_state(state)
}

struct Console {
    edge: Arc<Edge>,
    /// To disconnect the sockets of a session that ends.
    io: SocketIo,
    demo: bool,
    /// Sign-in attempts per client address (the core limits them per login as well).
    sign_ins: Attempts<IpAddr>,
}

fn page(body: &'static str, content_type: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(CSP),
            ),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
            (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
            (
                header::REFERRER_POLICY,
                HeaderValue::from_static("same-origin"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        body,
    )
        .into_response()
}

/// Why a console request was refused: its HTTP status and wire code are chosen here.
#[derive(Debug, thiserror::Error)]
enum ApiError {
    /// Not signed in, a wrong password, an ended session.
    #[error("{message}")]
    Unauthenticated { code: &'static str, message: String },
    #[error("{0}")]
    Forbidden(String),
    /// A request that changes something without the session's CSRF token, or from another
    /// origin.
    #[error("{0}")]
    Csrf(&'static str),
    #[error("{message}")]
    RateLimited {
        message: String,
        retry_after_secs: u64,
    },
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Internal(String),
}

impl From<tonic::Status> for ApiError {
    fn from(s: tonic::Status) -> Self {
        let message = s.message().to_owned();
        match s.code() {
            Code::Unauthenticated => ApiError::Unauthenticated {
                code: match reason::of(&s).as_deref() {
                    Some(reason::SESSION_EXPIRED) => "session_expired",
                    _ => "unauthenticated",
                },
                message,
            },
            Code::PermissionDenied => ApiError::Forbidden(message),
            Code::ResourceExhausted => ApiError::RateLimited {
                retry_after_secs: reason::metadata(&s, "retry_after_secs")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(60),
                message,
            },
            Code::InvalidArgument => ApiError::Invalid(message),
            Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled => {
                ApiError::Unavailable(message)
            }
            _ => ApiError::Internal(message),
        }
    }
}

impl ApiError {
    fn not_signed_in() -> Self {
        ApiError::Unauthenticated {
            code: "unauthenticated",
            message: "not signed in".into(),
        }
    }

    fn parts(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::Unauthenticated { code, .. } => (StatusCode::UNAUTHORIZED, code),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            ApiError::Csrf(_) => (StatusCode::FORBIDDEN, "csrf"),
            ApiError::RateLimited { .. } => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
            ApiError::Invalid(_) => (StatusCode::BAD_REQUEST, "invalid"),
            ApiError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }

    /// The error's JSON body, with `extra` fields beside `error`.
    fn body(&self, extra: Value) -> Value {
        let (_, code) = self.parts();
        let mut body = json!({ "error": { "code": code, "message": self.to_string() } });
        if let ApiError::RateLimited {
            retry_after_secs, ..
        } = self
        {
            body["retry_after_secs"] = json!(retry_after_secs);
        }
        if let (Value::Object(body), Value::Object(extra)) = (&mut body, extra) {
            body.extend(extra);
        }
        body
    }

    fn respond(self, extra: Value) -> Response {
        let (status, _) = self.parts();
        let mut response = (status, Json(self.body(extra))).into_response();
        if let ApiError::RateLimited {
            retry_after_secs, ..
        } = self
        {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
        }
        response
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        self.respond(Value::Null)
    }
}

/// The session's token, from the request's cookie.
pub fn session_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(cookie::Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|c| c.name() == COOKIE && !c.value().is_empty())
        .map(|c| c.value().to_owned())
}

/// The session's key at this edge (its sockets are marked with it): not the token itself, so
/// nothing that holds it holds a credential.
pub fn session_key(token: &str) -> String {
    hex::encode(Sha256::digest(format!("session:{token}").as_bytes()))
}

/// The CSRF token of a session: derived from its secret, which no other origin can read.
fn csrf_token(token: &str) -> String {
    hex::encode(Sha256::digest(format!("csrf:{token}").as_bytes()))
}

/// Whether the request comes from the console's own origin: a browser names the page's
/// origin in `Origin` on every POST and WebSocket; it must be this host's (a reverse proxy
/// passes the `Host` it was asked for, as the README's nginx configuration does).
///
/// Host names are compared without ports: a proxy's `Host $host` has none, and the session
/// cookie itself is not bound to a port either. HTTP/2 names the host in the URI, not `Host`.
pub fn same_origin(headers: &HeaderMap, uri: &axum::http::Uri) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|o| o.to_str().ok()) else {
        // Not a browser's cross-site request (browsers send Origin on those).
        return true;
    };
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| uri.authority().map(|a| a.as_str()));
    let Some(host) = host else {
        return false;
    };
    let origin_host = origin
        .split_once("://")
        .map_or(origin, |(_, rest)| rest)
        .trim_end_matches('/');
    hostname(origin_host).eq_ignore_ascii_case(hostname(host))
}

/// [`same_origin`], or the refusal of a request from another site.
fn check_origin(headers: &HeaderMap, uri: &axum::http::Uri) -> Result<(), ApiError> {
    if same_origin(headers, uri) {
        Ok(())
    } else {
        Err(ApiError::Csrf("this request comes from another site"))
    }
}

/// `host[:port]` without the port (`[v6]:port` too).
fn hostname(authority: &str) -> &str {
    if authority.starts_with('[') {
        return authority.split_inclusive(']').next().unwrap_or(authority);
    }
    match authority.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => authority,
    }
}

/// Whether the session cookie should be marked `Secure`: the page came over HTTPS (here, or
/// at a proxy that says so).
fn over_https(headers: &HeaderMap, tls_here: bool) -> bool {
    tls_here
        || headers
            .get("x-forwarded-proto")
            .and_then(|p| p.to_str().ok())
            .is_some_and(|p| p.eq_ignore_ascii_case("https"))
}

fn session_cookie(token: &str, expires_at_ms: i64, secure: bool) -> HeaderValue {
    let now_ms = chrono::Utc::now().timestamp_millis();
    let max_age = ((expires_at_ms - now_ms) / 1000).max(0);
    let cookie = cookie::Cookie::build((COOKIE, token.to_owned()))
        .http_only(true)
        .same_site(cookie::SameSite::Strict)
        .secure(secure)
        .path("/")
        .max_age(cookie::time::Duration::seconds(max_age))
        .build();
    HeaderValue::from_str(&cookie.to_string()).expect("a cookie of base64url is a header value")
}

fn cleared_cookie() -> HeaderValue {
    let cookie = cookie::Cookie::build((COOKIE, ""))
        .http_only(true)
        .same_site(cookie::SameSite::Strict)
        .path("/")
        .max_age(cookie::time::Duration::ZERO)
        .build();
    HeaderValue::from_str(&cookie.to_string()).expect("an empty cookie is a header value")
}

#[derive(Serialize)]
struct AdminJson {
    login: String,
    name: String,
    display_name: String,
}

impl Console {
    fn links(&self) -> Value {
        json!({ "demo": self.demo.then_some("/demo"), "health": "/healthz" })
    }

    /// The links of a signed-in admin: also the test visitor.
    fn signed_in_links(&self) -> Value {
        let mut links = self.links();
        links["try"] = json!("/console/try");
        links
    }

    fn signed_in(&self, token: &str, session: pb::StaffSession) -> Value {
        let admin = session.admin.unwrap_or_default();
        json!({
            "admin": AdminJson {
                login: admin.admin_id,
                name: admin.name,
                display_name: admin.display_name,
            },
            "csrf": csrf_token(token),
            "expires_at_ms": session.expires_at_ms,
            "links": self.signed_in_links(),
        })
    }

    /// What the sign-in page needs to know when nobody is signed in: whether anyone can sign
    /// in yet, and if not, how to make the first admin.
    async fn signed_out(&self, error: ApiError) -> Response {
        let setup = self
            .edge
            .link
            .client()
            .staff
            .get_sign_in_setup(pb::GetSignInSetupRequest {})
            .await;
        let first_run = match setup {
            Ok(setup) => setup.into_inner().admins_with_password == 0,
            Err(e) => return ApiError::from(e).into_response(),
        };
        error.respond(json!({
            "first_run": first_run,
            "first_run_commands": [
                "socketgram admin add <login> <name>",
                "socketgram admin passwd <login>",
            ],
            "links": self.links(),
        }))
    }

    /// The session of the request's cookie, from the core.
    async fn current(&self, headers: &HeaderMap) -> Result<(String, pb::StaffSession), ApiError> {
        let token = session_token(headers).ok_or_else(ApiError::not_signed_in)?;
        let session = self
            .edge
            .link
            .client()
            .staff
            .get_session(pb::GetSessionRequest {
                token: token.clone(),
            })
            .await?
            .into_inner();
        Ok((token, session))
    }

    /// A request that changes something: same origin, and the session's CSRF token.
    fn check_csrf(headers: &HeaderMap, uri: &axum::http::Uri, token: &str) -> Result<(), ApiError> {
        use subtle::ConstantTimeEq as _;
        check_origin(headers, uri)?;
        let presented = headers
            .get(CSRF_HEADER)
            .map(HeaderValue::as_bytes)
            .unwrap_or_default();
        if bool::from(presented.ct_eq(csrf_token(token).as_bytes())) {
            Ok(())
        } else {
            Err(ApiError::Csrf(
                "the request lacks the session's CSRF token (X-CSRF-Token)",
            ))
        }
    }

    /// Ends a session (or all of its admin's), and disconnects the console sockets of what
    /// ended at this edge.
    async fn sign_out(
        &self,
        headers: &HeaderMap,
        uri: &axum::http::Uri,
        everywhere: bool,
    ) -> Result<Response, ApiError> {
        let token = session_token(headers).ok_or_else(ApiError::not_signed_in)?;
        Self::check_csrf(headers, uri, &token)?;
        let ended = self
            .edge
            .link
            .client()
            .staff
            .sign_out(pb::SignOutRequest {
                token: token.clone(),
                everywhere,
            })
            .await?
            .into_inner();
        let key = session_key(&token);
        crate::socket::end_console_sessions(
            &self.io,
            &ended.admin_id,
            (!everywhere).then_some(&key),
        );
        Ok((
            StatusCode::NO_CONTENT,
            [(header::SET_COOKIE, cleared_cookie())],
        )
            .into_response())
    }
}

async fn session(State(console): State<Arc<Console>>, headers: HeaderMap) -> Response {
    match console.current(&headers).await {
        Ok((token, session)) => Json(console.signed_in(&token, session)).into_response(),
        Err(e @ ApiError::Unauthenticated { .. }) => {
            let mut response = console.signed_out(e).await;
            if session_token(&headers).is_some() {
                response
                    .headers_mut()
                    .insert(header::SET_COOKIE, cleared_cookie());
            }
            response
        }
        Err(e) => e.into_response(),
    }
}

/// `/console/try`: a visitor's page with the widget, for signed-in staff to try the chat from
/// the other side (the demo page, which `[web] demo` serves to anyone, here behind the
/// session). Without a session: to the sign-in.
async fn test_visitor_page(State(console): State<Arc<Console>>, headers: HeaderMap) -> Response {
    match console.current(&headers).await {
        Ok(_) => axum::response::Html(crate::assets::DEMO_HTML).into_response(),
        Err(ApiError::Unauthenticated { .. }) => Redirect::to("/console/").into_response(),
        Err(e) => e.into_response(),
    }
}

/// A test visitor's token, for signed-in staff on the console's own origin.
async fn test_visitor_token(
    State(console): State<Arc<Console>>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    axum::extract::Query(query): axum::extract::Query<crate::assets::TokenQuery>,
) -> Response {
    if let Err(e) = check_origin(&headers, &uri) {
        return e.into_response();
    }
    match console.current(&headers).await {
        Ok(_) => crate::assets::demo_visitor_token(&console.edge, &query.cid),
        Err(e) => e.into_response(),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SignIn {
    login: String,
    password: String,
}

async fn sign_in(
    State(console): State<Arc<Console>>,
    ConnectInfo(conn): ConnectInfo<ConnInfo>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    match try_sign_in(&console, &conn, (&headers, &uri), &body).await {
        Ok(response) => response,
        Err(e) => e.into_response(),
    }
}

async fn try_sign_in(
    console: &Console,
    conn: &ConnInfo,
    (headers, uri): (&HeaderMap, &axum::http::Uri),
    body: &[u8],
) -> Result<Response, ApiError> {
    // A form another site posts has no JSON type (and a JSON one from another origin is
    // named by Origin): no one signs a visitor's browser into an account of theirs.
    check_origin(headers, uri)?;
    let json_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("application/json"));
    if !json_type {
        return Err(ApiError::Invalid(
            "send the sign-in as JSON (Content-Type: application/json)".into(),
        ));
    }
    let request: SignIn = serde_json::from_slice(body)
        .map_err(|e| ApiError::Invalid(format!("the sign-in must be {{login, password}}: {e}")))?;
    let ip = console.edge.proxies.client_ip(conn.peer.ip(), headers);
    if let Err(retry_after_secs) = console.sign_ins.spend(&ip) {
        warn!(%ip, "sign-in refused: too many attempts from this address");
        return Err(ApiError::RateLimited {
            message: "too many sign-in attempts from your address; wait a moment".into(),
            retry_after_secs,
        });
    }
    let session = console
        .edge
        .link
        .client()
        .staff
        .sign_in(pb::SignInRequest {
            login: request.login,
            password: request.password,
        })
        .await?
        .into_inner();
    let token = session.token.clone();
    let cookie = session_cookie(&token, session.expires_at_ms, over_https(headers, conn.tls));
    Ok((
        [(header::SET_COOKIE, cookie)],
        Json(console.signed_in(&token, session)),
    )
        .into_response())
}

async fn sign_out_here(
    State(console): State<Arc<Console>>,
    uri: axum::http::Uri,
    headers: HeaderMap,
) -> Response {
    console
        .sign_out(&headers, &uri, false)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

async fn sign_out_everywhere(
    State(console): State<Arc<Console>>,
    uri: axum::http::Uri,
    headers: HeaderMap,
) -> Response {
    console
        .sign_out(&headers, &uri, true)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

/// Says in the log, once the core answers, when nobody can sign in to the console yet, and
/// how to make the first admin (the sign-in page says the same).
pub async fn first_run_hint(edge: Arc<Edge>) {
    let setup = edge
        .link
        .client()
        .staff
        .get_sign_in_setup(pb::GetSignInSetupRequest {})
        .await;
    match setup {
        Ok(setup) if setup.get_ref().admins_with_password == 0 => warn!(
            "no admin can sign in to the console yet: create one with `socketgram admin add \
             <login> <name>`, then `socketgram admin passwd <login>`"
        ),
        Ok(_) => {}
        Err(e) => tracing::debug!(error = %e, "cannot ask the core whether anyone can sign in"),
    }
}

/// Why a console socket was refused (the client sees it as `connect_error`; its message
/// says "session" so the page knows to sign in again).
#[derive(Debug, thiserror::Error)]
pub enum SocketRefusal {
    #[error("console socket refused: the session cookie is missing (sign in first)")]
    NoSession,
    #[error("console socket refused: it comes from another site than the session's")]
    OtherOrigin,
    #[error("console socket refused: {0} (session)")]
    Session(String),
}

/// Who a console socket is, from its handshake's session cookie (the core says whether the
/// session lasts).
pub struct ConsoleAdmin {
    pub admin_id: String,
    /// The session's key ([`session_key`]).
    pub session: String,
    /// When the session ends (milliseconds since 1970): the socket is cut then.
    pub expires_at_ms: i64,
}

/// The admin a console socket acts as, from its handshake's session cookie.
pub async fn socket_admin(
    edge: &Edge,
    parts: &axum::http::request::Parts,
) -> Result<ConsoleAdmin, SocketRefusal> {
    let headers = &parts.headers;
    if !same_origin(headers, &parts.uri) {
        return Err(SocketRefusal::OtherOrigin);
    }
    let token = session_token(headers).ok_or(SocketRefusal::NoSession)?;
    let session = edge
        .link
        .client()
        .staff
        .get_session(pb::GetSessionRequest {
            token: token.clone(),
        })
        .await
        .map_err(|s| SocketRefusal::Session(s.message().to_owned()))?
        .into_inner();
    Ok(ConsoleAdmin {
        admin_id: session.admin.unwrap_or_default().admin_id,
        session: session_key(&token),
        expires_at_ms: session.expires_at_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn the_session_comes_from_its_cookie_only() {
        let h = headers(&[("cookie", "theme=dark; sg_session=s1.abc; other=1")]);
        assert_eq!(session_token(&h).as_deref(), Some("s1.abc"));
        let h = headers(&[("cookie", "a=1"), ("cookie", "sg_session=s1.two")]);
        assert_eq!(session_token(&h).as_deref(), Some("s1.two"));
        for none in ["sg_session=", "xsg_session=s1.abc", "theme=dark"] {
            assert_eq!(session_token(&headers(&[("cookie", none)])), None, "{none}");
        }
        assert_eq!(session_token(&HeaderMap::new()), None);
    }

    #[test]
    fn only_the_consoles_own_origin_passes() {
        let uri = axum::http::Uri::from_static("/console/api/sign-in");
        let same = |pairs: &[(&'static str, &str)]| same_origin(&headers(pairs), &uri);
        let host = ("host", "chat.example.com:3000");
        assert!(same(&[host]), "no Origin: not a cross-site browser request");
        assert!(same(&[host, ("origin", "https://chat.example.com:3000")]));
        assert!(
            same(&[host, ("origin", "https://chat.example.com")]),
            "behind a proxy that passes `Host $host` (no port)"
        );
        assert!(!same(&[host, ("origin", "https://evil.example")]));
        assert!(!same(&[host, ("origin", "https://chat.example.com.evil")]));
        assert!(!same(&[host, ("origin", "null")]));
        assert!(same(&[
            ("host", "[::1]:3000"),
            ("origin", "http://[::1]:3000")
        ]));
        assert!(
            !same(&[
                ("host", "127.0.0.1:3000"),
                ("x-forwarded-host", "evil.example"),
                ("origin", "https://evil.example"),
            ]),
            "a header anyone can send names no origin"
        );
        let h2 = axum::http::Uri::from_static("https://chat.example.com/console/api/sign-in");
        let no_host = headers(&[("origin", "https://chat.example.com")]);
        assert!(
            same_origin(&no_host, &h2),
            "HTTP/2 names the host in the URI"
        );
        assert!(!same_origin(&no_host, &uri), "no host at all");
    }

    #[test]
    fn the_csrf_token_and_the_key_are_not_the_session() {
        let token = "s1.secret";
        assert_ne!(csrf_token(token), session_key(token));
        assert!(!csrf_token(token).contains("secret"));
        assert_eq!(csrf_token(token), csrf_token(token));
        assert_ne!(csrf_token(token), csrf_token("s1.other"));
    }
}
