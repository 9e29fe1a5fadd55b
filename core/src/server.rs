//! Serves the core's gRPC API on a listener the caller bound: `Chat` and `Telegram` behind
//! bearer-token auth, the standard health and reflection services open, gRPC-web (HTTP/1.1)
//! accepted for browsers, TLS when configured.

use std::{future::Future, sync::Arc};

use serde::{Deserialize, Serialize};
use socketgram_proto::{
    client::InProcessIncoming,
    v1::{chat_server::ChatServer, staff_server::StaffServer, telegram_server::TelegramServer},
};
use tokio::{
    io::{AsyncRead, AsyncWrite},
    net::TcpListener,
};
use tokio_stream::Stream;
use tonic::{
    service::{Routes, interceptor::InterceptedService},
    transport::{
        Identity, Server, ServerTlsConfig,
        server::{Connected, TcpIncoming},
    },
};
use tracing::info;

use crate::{
    Core,
    config::{ConfigError, Secret},
    grpc::{BearerAuth, ChatApi, StaffApi, TelegramApi},
};

/// The gRPC listener.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct GrpcConfig {
    /// Address to listen on.
    pub listen: String,
    /// Bearer tokens accepted from backends (and edges running in other processes).
    pub tokens: Vec<Secret>,
    /// PEM certificate chain and key; plain HTTP/2 when absent.
    pub tls: Option<TlsConfig>,
}

impl Default for GrpcConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:50051".into(),
            tokens: Vec::new(),
            tls: None,
        }
    }
}

pub use socketgram_common::TlsConfig;

/// The tonic identity of a listener's TLS files; the error names the key (under `section`).
fn identity(tls: &TlsConfig, section: &str) -> Result<Identity, ConfigError> {
    let (cert, key) = tls.read(section)?;
    Ok(Identity::from_pem(cert, key))
}

impl GrpcConfig {
    /// Checks every value; errors name the key relative to `section`.
    pub fn validate(&self, section: &str) -> Result<(), ConfigError> {
        self.listen.parse::<std::net::SocketAddr>().map_err(|e| {
            ConfigError::new(
                format!("{section}.listen"),
                format!("{:?}: {e}", self.listen),
            )
        })?;
        if let Some(tls) = &self.tls {
            identity(tls, section)?;
        }
        Ok(())
    }
}

/// How often an idle HTTP/2 connection is pinged, and how long an answer may take.
const KEEPALIVE: std::time::Duration = std::time::Duration::from_secs(5);

/// Errors of serving.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("gRPC server failed: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error("reflection service: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error(transparent)]
    Config(#[from] ConfigError),
}

/// The core's services as routes, for a server of the caller's (e.g. mounted beside the web
/// edge on one listener).
pub async fn routes(core: Arc<Core>, auth: BearerAuth) -> Result<Routes, ServeError> {
    let (health_reporter, health) = tonic_health::server::health_reporter();
    health_reporter.set_serving::<ChatServer<ChatApi>>().await;
    health_reporter
        .set_serving::<TelegramServer<TelegramApi>>()
        .await;
    health_reporter.set_serving::<StaffServer<StaffApi>>().await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(socketgram_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    Ok(Routes::builder()
        .add_service(health)
        .add_service(reflection)
        .add_service(InterceptedService::new(
            ChatServer::new(ChatApi::new(core.clone())),
            auth.clone(),
        ))
        .add_service(InterceptedService::new(
            TelegramServer::new(TelegramApi::new(core.clone())),
            auth.clone(),
        ))
        .add_service(InterceptedService::new(
            StaffServer::new(StaffApi::new(core)),
            auth,
        ))
        .clone()
        .routes())
}

/// The same services for a web listener: gRPC-web (and plain gRPC) under the services' own
/// paths, to mount beside other routes.
pub async fn grpc_web_router(
    core: Arc<Core>,
    auth: BearerAuth,
) -> Result<axum::Router, ServeError> {
    let service = tower::Layer::layer(&tonic_web::GrpcWebLayer::new(), routes(core, auth).await?);
    let mut router = axum::Router::new();
    for name in [
        "socketgram.v1.Chat",
        "socketgram.v1.Telegram",
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
    ] {
        router = router.route_service(&format!("/{name}/{{*method}}"), service.clone());
    }
    Ok(router)
}

/// Serves until `shutdown` resolves, then lets calls in flight finish (streams end on the
/// core's shutdown token). `ops` (the operations endpoints, `socketgram_common::ops`) are
/// served on the same listener, over HTTP/1.1 or HTTP/2, beside the gRPC paths.
pub async fn serve(
    listener: TcpListener,
    core: Arc<Core>,
    config: &GrpcConfig,
    auth: BearerAuth,
    ops: Option<axum::Router>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    info!(addr = ?listener.local_addr().ok(), tls = config.tls.is_some(), "gRPC listening");
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    serve_on(incoming, core, config.tls.as_ref(), auth, ops, shutdown).await
}

/// Serves the connections of an in-process client (`socketgram_proto::client::in_process`):
/// the edges of this process, until `shutdown` resolves.
pub async fn serve_in_process(
    incoming: InProcessIncoming,
    core: Arc<Core>,
    auth: BearerAuth,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    serve_on(incoming, core, None, auth, None, shutdown).await
}

async fn serve_on<IO, IE>(
    incoming: impl Stream<Item = Result<IO, IE>>,
    core: Arc<Core>,
    tls: Option<&TlsConfig>,
    auth: BearerAuth,
    ops: Option<axum::Router>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError>
where
    IO: AsyncRead + AsyncWrite + Connected + Unpin + Send + 'static,
    IO::ConnectInfo: Clone + Send + Sync + 'static,
    IE: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    // HTTP/2 pings: an edge whose machine vanished without closing its connection (power,
    // network) is found out within seconds, and its visitors go offline.
    let mut builder = Server::builder()
        .accept_http1(true)
        .http2_keepalive_interval(Some(KEEPALIVE))
        .http2_keepalive_timeout(Some(KEEPALIVE));
    if let Some(tls) = tls {
        builder = builder.tls_config(ServerTlsConfig::new().identity(identity(tls, "grpc")?))?;
    }
    // gRPC-web wraps the gRPC services only: it answers any other HTTP/1.1 request with 400,
    // which would hide the operations routes from plain HTTP clients (probes, Prometheus).
    let grpc = tower::Layer::layer(&tonic_web::GrpcWebLayer::new(), routes(core, auth).await?);
    let app = axum::Router::new()
        .fallback_service(grpc)
        .merge(ops.unwrap_or_default());
    builder
        // A span per call (its method), around the handlers' own spans.
        .layer(tower_http::trace::TraceLayer::new_for_grpc())
        .add_routes(Routes::from(app))
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await?;
    Ok(())
}
