//! What the edge serves over plain HTTP: the official Socket.IO v4 browser client (at
//! `/socket.io/socket.io.js`, where the PHP admin loads it from, LEGACY.md §2), the widget
//! script (`/widget.js`: that client plus Socketgram's widget, one `<script>` tag), and in
//! development mode the demo page and its token endpoint.

use std::sync::Arc;

use axum::{
    Json, Router,
    extract::{Query, Request, State},
    http::{HeaderValue, StatusCode, header},
    middleware::Next,
    response::{Html, IntoResponse, Response},
    routing::get,
};
use serde::Deserialize;
use socketgram_admin_php_compat::events::parse_id;
use socketgram_common::context::Vouched;

use crate::{Edge, config::WebConfig};

/// The official client, fetched from the npm registry at build time (see build.rs).
const SOCKET_IO_JS: &str = include_str!(concat!(env!("OUT_DIR"), "/socket.io.js"));
const SOCKET_IO_MIN_JS: &str = include_str!(concat!(env!("OUT_DIR"), "/socket.io.min.js"));
/// Socketgram's widget (no dependencies but the client above).
const WIDGET_JS: &str = include_str!("../assets/widget.js");
pub(crate) const DEMO_HTML: &str = include_str!("../assets/demo.html");

/// How long demo tokens last.
const DEMO_TOKEN_TTL_SECS: u64 = 24 * 3600;

fn javascript(body: &'static str) -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/javascript; charset=utf-8"),
            ),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=3600"),
            ),
        ],
        body,
    )
        .into_response()
}

/// Serves the client script before the Socket.IO layer, which owns every other
/// `/socket.io/` path.
pub async fn socket_io_client(request: Request, next: Next) -> Response {
    match request.uri().path() {
        "/socket.io/socket.io.js" => javascript(SOCKET_IO_JS),
        "/socket.io/socket.io.min.js" => javascript(SOCKET_IO_MIN_JS),
        _ => next.run(request).await,
    }
}

/// `/widget.js`: the Socket.IO client and the widget in one script that leaves the host page
/// as it found it: the host's own `io` (if any) is kept, an AMD `define` of the page is not
/// called, and the client's source-map comment (pointing at a file not served) is dropped.
fn widget_script() -> String {
    let client: String = SOCKET_IO_MIN_JS
        .lines()
        .filter(|l| !l.starts_with("//# sourceMappingURL="))
        .collect::<Vec<_>>()
        .join("\n");
    format!(
        "(function () {{ var previousIo = window.io, define, module, exports;\n{client}\n\
         ;var socketgramIo = window.io;\n\
         if (previousIo === undefined) {{ delete window.io; }} else {{ window.io = previousIo; }}\n\
         {WIDGET_JS}\n}}).call(window);\n"
    )
}

/// The plain HTTP routes.
pub fn router(config: &WebConfig, edge: &Arc<Edge>) -> Router {
    static WIDGET: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let widget = WIDGET.get_or_init(widget_script);
    // `/healthz` is the operations router's (`socketgram_common::ops`), merged in `serve`.
    let mut router =
        Router::new().route("/widget.js", get(move || async move { javascript(widget) }));
    if config.demo {
        router = router
            .route("/demo", get(|| async { Html(DEMO_HTML) }))
            .route("/demo/token", get(demo_token).with_state(edge.clone()));
    }
    router
}

/// `?cid=`: the visitor a demo token is for.
#[derive(Deserialize)]
pub(crate) struct TokenQuery {
    pub(crate) cid: String,
}

/// Development only: a visitor token for any visitor id, so a newcomer can try the widget.
/// It vouches for a demo name, as a host site vouches for its signed-in users, so support sees
/// what a verified visitor looks like.
async fn demo_token(State(edge): State<Arc<Edge>>, Query(q): Query<TokenQuery>) -> Response {
    demo_visitor_token(&edge, &q.cid)
}

/// A demo visitor's token for `cid` (also the console's test visitor's).
pub(crate) fn demo_visitor_token(edge: &Edge, cid: &str) -> Response {
    match parse_id(cid).filter(|&c| c <= u64::from(u32::MAX)) {
        Some(cid) => {
            let vouched = Vouched {
                name: format!("Demo visitor {cid}"),
                fields: [("source".to_owned(), "demo".to_owned())].into(),
                ..Vouched::default()
            };
            let token = edge
                .signer
                .sign_visitor(&cid.to_string(), Some(&vouched), DEMO_TOKEN_TTL_SECS)
                .expect("the demo's claims are within bounds");
            Json(serde_json::json!({ "cid": cid, "token": token })).into_response()
        }
        None => (StatusCode::BAD_REQUEST, "cid must be a positive integer").into_response(),
    }
}
