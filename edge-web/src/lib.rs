//! The web edge: speaks Socket.IO v4 to browsers (Socketgram's widget, the legacy visitor
//! page and the unchanged PHP admin) and gRPC to the core, holding no state beyond its open
//! sockets. It also serves the official Socket.IO browser client, the widget script, the
//! development demo page and, optionally, the core's gRPC API for browsers (gRPC-web).
//!
//! - [`socket`]: handshake, event table, limits and refusals.
//! - [`client_addr`]: the client's address behind trusted reverse proxies.
//! - [`fanout`]: live events to sockets, in order, with history on subscribe.
//! - [`core_link`]: the one multiplexed stream to the core.
//! - [`drain`]: what a shutdown lets finish.
//! - [`assets`]: the scripts and pages served over plain HTTP.
//! - [`console`]: the operator console's page, sign-in and sessions.
//! - [`files`]: uploads with a socket's ticket and downloads by signed links.
//! - [`answer`]: the one refusal type and the one path answers take.
//! - [`wire`]: message payloads per flavor of client, and the rooms.
//! - [`peer`]: what the edge knows about one socket; cutting one off.
//! - [`log`]: how sockets and requests appear in the log.
//! - [`limits`]: events per second and sockets per client address.
//! - [`telegram`]: the bot the widget offers ("Continue in Telegram") and its start links.
//! - `metrics`: what the edge records for `/metrics`; `/readyz` adds its `core_link` check.

pub mod answer;
pub mod assets;
pub mod client_addr;
pub mod config;
pub mod conn;
pub mod console;
pub mod core_link;
pub mod drain;
pub mod fanout;
pub mod files;
pub mod limits;
pub mod log;
mod metrics;
pub mod peer;
pub mod socket;
pub mod telegram;
pub mod wire;

use std::{sync::Arc, time::Duration};

use axum::http::Method;
use socketgram_admin_php_compat::{config::LegacyConfig, handshake::TokenSigner};
use socketgram_common::{
    TlsConfig,
    ops::{NotReady, Ops},
};
use socketgram_proto::client::Cores;
use socketioxide::SocketIo;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower_http::cors::{Any, CorsLayer};
use tracing::{info, warn};

use crate::{
    client_addr::{BadProxyEntry, TrustedProxies},
    config::WebConfig,
    core_link::CoreLink,
    drain::Drain,
    fanout::Fanout,
    limits::Limiter,
    telegram::TelegramBot,
};

/// Shared by every handler.
pub struct Edge {
    pub link: Arc<CoreLink>,
    fanout: Arc<Fanout>,
    pub legacy: LegacyConfig,
    pub signer: TokenSigner,
    /// Signs upload tickets and links to files.
    pub files: Arc<files::FileLinks>,
    pub limiter: Arc<Limiter>,
    /// Decides each socket's client address (the one the limits count).
    pub proxies: Arc<TrustedProxies>,
    /// Events in flight, waited for on shutdown.
    pub drain: Drain,
    /// The bot the widget offers ("Continue in Telegram"), once there is one.
    pub telegram_bot: TelegramBot,
}

impl Edge {
    /// The live delivery to sockets.
    pub fn fanout(&self) -> &Fanout {
        &self.fanout
    }
}

/// Errors of the web edge.
#[derive(Debug, thiserror::Error)]
pub enum WebError {
    #[error("web server failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("invalid web.trusted_proxies: {0}")]
    TrustedProxies(#[from] BadProxyEntry),
    #[error("web.tls: {0}")]
    Tls(String),
    #[error("{0}")]
    Config(String),
}

/// Packets queued per socket before emits to it fail: room for a full history replay.
const SOCKET_BUFFER: usize = 2048;

/// Bytes each WebSocket reads at a time. Chat packets are small; engineioxide's default (4 KB)
/// is held by every idle visitor.
const WS_READ_BUFFER: usize = 1024;

/// What the caller adds to the web edge.
#[derive(Default)]
pub struct Extras {
    /// Routes served beside the edge's own (e.g. the core's gRPC-web API, the Telegram
    /// webhook).
    pub routes: Option<axum::Router>,
    /// The operations endpoints, served beside them with the edge's own readiness check
    /// (`core_link`: its session with the core is open).
    pub ops: Ops,
    /// Where the caller fills in the Telegram bot the widget offers when `[web] telegram_bot`
    /// is empty (the configured one wins).
    pub telegram_bot: TelegramBot,
}

/// Serves the web edge on `listener` until `shutdown`, with what the caller adds (`extras`).
/// On `shutdown` it stops accepting connections and events, answers every event already
/// accepted, closes the sockets, then returns: the core must keep serving until then.
pub async fn serve(
    listener: TcpListener,
    config: &WebConfig,
    legacy: &LegacyConfig,
    core: Cores,
    extras: Extras,
    shutdown: CancellationToken,
) -> Result<(), WebError> {
    let Extras {
        routes: extra,
        ops,
        telegram_bot,
    } = extras;
    if !config.telegram_bot.is_empty() {
        telegram_bot
            .configure(&config.telegram_bot)
            .map_err(|e| WebError::Config(format!("web.telegram_bot: {e}")))?;
    }
    let proxies = Arc::new(TrustedProxies::parse(&config.trusted_proxies)?);
    let local = listener.local_addr()?;
    if proxies.is_empty() && local.ip().is_loopback() {
        // A loopback listener is nearly always behind a proxy on the same machine.
        warn!(
            addr = %local,
            "the web listener is on a loopback address and web.trusted_proxies is empty: if a \
             reverse proxy runs in front, every visitor counts as the proxy's address for the \
             connection and event limits; add the proxy (e.g. \"127.0.0.1\") to \
             web.trusted_proxies"
        );
    }
    // The link outlives the drain: answers to what was accepted come through it.
    let link = CoreLink::start(core);
    let limiter = Limiter::new(config.limits.clone());
    let signer = token_signer(config);
    let base = if config.public_url.is_empty() {
        let scheme = if config.tls.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{local}")
    } else {
        config.public_url.clone()
    };
    let files = Arc::new(files::FileLinks::new(
        signer.clone(),
        &base,
        config.file_link_ttl_secs,
    ));
    let (fanout, fanout_task) = Fanout::new(link.clone(), files.clone(), telegram_bot.clone());
    let edge = Arc::new(Edge {
        link: link.clone(),
        fanout,
        legacy: legacy.clone(),
        signer,
        files,
        limiter: limiter.clone(),
        proxies,
        drain: Drain::new(shutdown.clone()),
        telegram_bot,
    });
    let (layer, io) = SocketIo::builder()
        .max_payload(config.limits.max_packet_bytes)
        .ws_max_message_size(config.limits.max_packet_bytes as usize)
        // A frame's announced length is checked before any of it is buffered, and before the
        // client has authenticated: no frame larger than a packet may be.
        .ws_max_frame_size(config.limits.max_packet_bytes as usize)
        .max_buffer_size(SOCKET_BUFFER)
        .ws_read_buffer_size(WS_READ_BUFFER)
        // An Engine.IO session must connect a socket (with its credentials) this soon.
        .connect_timeout(Duration::from_secs(config.limits.handshake_timeout_secs))
        .with_state(edge.clone())
        .build_layer();
    fanout_task.start(io.clone());
    socket::register(&io);

    let ops = ops.ready("core_link", {
        let link = link.clone();
        move || {
            let open = link.is_connected();
            async move {
                open.then_some(())
                    .ok_or_else(|| NotReady::because("no session with the core is open"))
            }
        }
    });
    if config.console {
        tokio::spawn(console::first_run_hint(edge.clone()));
    }
    let mut app = assets::router(config, &edge)
        .merge(console::router(config, &edge, io.clone()))
        .merge(files::router(&edge))
        .merge(ops.router());
    if let Some(extra) = extra {
        app = app.merge(extra);
    }
    // The Socket.IO layer owns `/socket.io/` (reached through the fallback, since no route
    // matches it); the client script is served in front of it.
    let app = app
        .fallback(|| async { axum::http::StatusCode::NOT_FOUND })
        .layer(layer)
        .layer(axum::middleware::from_fn(assets::socket_io_client))
        // A span per request (method, path; at DEBUG: the response and its latency).
        .layer(tower_http::trace::TraceLayer::new_for_http())
        // The PHP admin and host sites live on other origins: long polling (the fallback
        // transport) and /widget.js need CORS. No cookies are involved: credentials travel
        // in the handshake query or `auth`.
        .layer(
            CorsLayer::new()
                .allow_origin(Any)
                .allow_methods([Method::GET, Method::POST, Method::OPTIONS])
                .allow_headers(Any),
        );

    // Quiet addresses are forgotten now and then, so the per-IP table stays small.
    let janitor = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        loop {
            tick.tick().await;
            limiter.forget_idle();
        }
    });
    // Open sockets would hold a graceful shutdown forever: once every accepted event has
    // been answered, close them.
    let closer = {
        let (io, edge) = (io.clone(), edge.clone());
        tokio::spawn(async move {
            edge.drain.finished().await;
            io.close().await;
        })
    };
    let tls = config.tls.as_ref().map(tls_acceptor).transpose()?;
    info!(addr = %local, tls = tls.is_some(), trusted_proxies = ?config.trusted_proxies, "web edge listening");
    let l = &config.limits;
    let admission = conn::Admission {
        per_ip: l.http_connections_per_ip,
        unproven_per_ip: l.unauthenticated_per_ip,
        handshake_timeout: Duration::from_secs(l.handshake_timeout_secs),
    };
    // socketioxide gives a socket its Engine.IO session's id, and has it only once the
    // socket passed the handshake.
    let authenticated: conn::Authenticated = {
        let io = io.clone();
        Arc::new(move |sid: &str| {
            sid.parse()
                .is_ok_and(|sid| io.get_socket(sid).is_some_and(|s| s.connected()))
        })
    };
    conn::serve(
        listener,
        tls,
        admission,
        edge.proxies.clone(),
        authenticated,
        app,
        shutdown.clone(),
    )
    .await;
    janitor.abort();
    // Every connection has ended: the sockets were closed after the drain.
    let _ = closer.await;
    edge.link.stop().await;
    Ok(())
}

/// What signs and checks tokens: `[web] token_secret`, or without one a random key made for
/// this run. An empty key would be a key everyone has (anyone could sign an admin's token);
/// a key nobody else knows means only this edge's own pages (the console's test visitor)
/// make tokens, and no host site can until it shares a secret.
fn token_signer(config: &WebConfig) -> TokenSigner {
    if config.token_secret.is_empty() {
        info!(
            "web.token_secret is not set: only this server's own pages can make tokens until it is"
        );
        return TokenSigner::new(&rand::random::<[u8; 32]>());
    }
    TokenSigner::new(config.token_secret.expose().as_bytes())
}

/// The TLS side of the web listener, from the PEM files of `[web.tls]` (read as the gRPC
/// listener reads its own: `TlsConfig::read`, whose error names the key).
fn tls_acceptor(tls: &TlsConfig) -> Result<tokio_rustls::TlsAcceptor, WebError> {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
    let bad = |what: &str, path: &std::path::Path, e: &dyn std::fmt::Display| {
        WebError::Tls(format!("{what} {}: {e}", path.display()))
    };
    let (cert, key) = tls.read("web").map_err(|e| WebError::Tls(e.to_string()))?;
    let certs = CertificateDer::pem_slice_iter(&cert)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad("certificate", &tls.cert, &e))?;
    let key = PrivateKeyDer::from_pem_slice(&key).map_err(|e| bad("key", &tls.key, &e))?;
    // rustls needs a process-wide crypto provider; ring, as everywhere else here.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| bad("certificate and key", &tls.cert, &e))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}
