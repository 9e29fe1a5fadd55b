//! The composed server: every part of Socketgram in one process (the core, its gRPC listener,
//! the web edge and the Telegram edge), the core alone (one replica of several), or one edge
//! alone in front of a list of cores, on listeners the caller bound and until a token the
//! caller owns. `main` parses, loads, binds and calls [`Server::start`] (or
//! [`Server::start_edge`]) then [`Server::run`]; tests do the same on port 0, in process. The
//! operations endpoints (`/metrics`, `/healthz`, `/readyz`) are on the web listener under
//! `serve` and `edge-web`, on the gRPC listener for the core alone, and on the webhook
//! listener of `edge-telegram` when it has one.

pub mod config;

use std::{net::SocketAddr, sync::Arc, time::Duration};

use socketgram_common::ops::Ops;
use socketgram_core::{
    Core,
    config::Secret,
    error::CoreError,
    grpc::BearerAuth,
    server::{self, GrpcConfig},
    store::{self, Store, StoreError},
};
use socketgram_edge_telegram::{
    TelegramError,
    config::{TelegramConfig, UpdateMode},
};
use socketgram_edge_web::{Extras, WebError, telegram::TelegramBot};
use socketgram_proto::client::{ClientError, Cores};
use tokio::{net::TcpListener, task::JoinSet};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

pub use crate::config::{Config, Role};

/// Why the server did not start, or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot open the database {url}: {source}")]
    OpenDatabase { url: String, source: StoreError },
    #[error("cannot run a core on {url}: {source}")]
    SingleNode { url: String, source: StoreError },
    #[error("cannot migrate the database {url}: {source}")]
    Migrate { url: String, source: StoreError },
    #[error("cannot start the core: {0}")]
    Core(#[from] CoreError),
    #[error("{what}: {source}")]
    Io {
        what: &'static str,
        source: std::io::Error,
    },
    #[error("the internal core client: {0}")]
    Client(#[from] ClientError),
    #[error("the gRPC server stopped: {0}")]
    Grpc(#[from] server::ServeError),
    #[error("the web edge stopped: {0}")]
    Web(#[from] WebError),
    #[error("the Telegram edge stopped: {0}")]
    Telegram(#[from] TelegramError),
    #[error("a part of the server panicked: {0}")]
    Panicked(String),
}

/// The listeners the caller bound: gRPC always; the web listener runs every part in this
/// process (`serve`), its absence the core alone (`core`).
pub struct Listeners {
    pub grpc: TcpListener,
    pub web: Option<TcpListener>,
}

/// A started server: its parts run until [`Server::run`] is told to stop.
pub struct Server {
    /// Where gRPC listens (not for an edge alone).
    pub grpc_addr: Option<SocketAddr>,
    /// Where the web edge listens (`serve`, `edge-web`).
    pub web_addr: Option<SocketAddr>,
    /// The database (not for an edge alone).
    store: Option<Arc<dyn Store>>,
    core_parts: JoinSet<Result<(), ServeError>>,
    edges: JoinSet<Result<(), ServeError>>,
    /// Shutdown in two steps: the edges first (they stop taking requests and finish what they
    /// took, which needs the core), then the core and its gRPC listeners.
    edge_stop: CancellationToken,
    core_stop: CancellationToken,
    drain: Duration,
    /// This process's hold on a single-node database (SQLite), released when it stops.
    _single_node: Option<store::SingleNode>,
}

/// Names the I/O step that failed.
fn io(what: &'static str) -> impl FnOnce(std::io::Error) -> ServeError {
    move |source| ServeError::Io { what, source }
}

/// Opens and migrates the configured database.
pub async fn open_store(config: &Config) -> Result<Arc<dyn Store>, ServeError> {
    let url = store::redact_url(config.core.database.url.expose());
    let store = store::connect(&config.core.database)
        .await
        .map_err(|source| ServeError::OpenDatabase {
            url: url.clone(),
            source,
        })?;
    store
        .migrate()
        .await
        .map_err(|source| ServeError::Migrate { url, source })?;
    Ok(store)
}

impl Server {
    /// Opens the database and starts every part on `listeners`.
    pub async fn start(listeners: Listeners, config: &Config) -> Result<Self, ServeError> {
        // Before anything is opened: a second core on a SQLite file is refused at once.
        let single_node = store::claim_single_node(&config.core.database).map_err(|source| {
            ServeError::SingleNode {
                url: store::redact_url(config.core.database.url.expose()),
                source,
            }
        })?;
        let store = open_store(config).await?;
        let (core_stop, edge_stop) = (CancellationToken::new(), CancellationToken::new());
        // Before the core: what it records as it starts (the NATS gauge) would otherwise go to
        // no recorder and miss the first scrape.
        let ops = Ops::new();
        let core = Core::start(store.clone(), &config.core, core_stop.clone()).await?;
        let grpc_addr = listeners
            .grpc
            .local_addr()
            .map_err(io("the gRPC listener"))?;
        if listeners.web.is_some() && config.legacy.secret.is_empty() {
            warn!(
                "legacy.secret is empty: a legacy visitor's room is then the hash of its id \
                 alone, which anyone can compute; set the secret the host site and the PHP \
                 admin use"
            );
        }
        if config.grpc.tokens.is_empty() {
            warn!("grpc.tokens is empty: every Chat/Telegram call from outside will be refused");
        }
        let mut server = Self {
            grpc_addr: Some(grpc_addr),
            store: Some(store),
            _single_node: single_node,
            ..Self::empty(config, core_stop, edge_stop)
        };
        let auth = BearerAuth::new(config.grpc.tokens.iter().cloned());
        let ops = socketgram_core::ops::register(ops, &core);
        let Some(web) = listeners.web else {
            let ops = Some(ops.router());
            server.serve_grpc(listeners.grpc, &core, config.grpc.clone(), auth, ops);
            return Ok(server);
        };
        server.serve_grpc(
            listeners.grpc,
            &core,
            config.grpc.clone(),
            auth.clone(),
            None,
        );
        server.web_addr = Some(web.local_addr().map_err(io("the web listener"))?);
        server.start_edges(web, &core, auth, ops, config).await?;
        Ok(server)
    }

    /// Starts one edge alone on `web` (`Role::EdgeWeb`: the web edge; `Role::EdgeTelegram`:
    /// the Telegram edge, with only the operations endpoints on `web`), calling the cores of
    /// `[edge] core`, moving to the next when one goes away.
    pub async fn start_edge(
        web: TcpListener,
        role: Role,
        config: &Config,
    ) -> Result<Self, ServeError> {
        let cores = Cores::lazy(&config.edge.core, config.edge.token.expose())?;
        let mut server = Self::empty(config, CancellationToken::new(), CancellationToken::new());
        server.web_addr = Some(web.local_addr().map_err(io("the web listener"))?);
        let mut ops = Ops::new();
        if config.telegram.enabled() {
            ops = socketgram_edge_telegram::register_ops(ops, &config.telegram);
        }
        if role == Role::EdgeTelegram {
            server.start_telegram(config, cores);
            let (router, stop) = (ops.router(), server.edge_stop.clone());
            server.edges.spawn(async move {
                axum::serve(web, router)
                    .with_graceful_shutdown(stop.cancelled_owned())
                    .await
                    .map_err(io("the operations listener"))
            });
        } else {
            let mut extra = axum::Router::new();
            if config.telegram.enabled()
                && config.telegram.mode == UpdateMode::Webhook
                && config.telegram.webhook_listen.is_none()
            {
                // Webhook updates may arrive at any edge: this one takes them too.
                extra = extra.merge(server.start_telegram_webhook(config, cores.clone()));
            }
            server.start_web(web, config, cores, extra, ops);
        }
        info!(cores = ?config.edge.core, ?role, "edge started");
        Ok(server)
    }

    fn empty(config: &Config, core_stop: CancellationToken, edge_stop: CancellationToken) -> Self {
        Self {
            grpc_addr: None,
            web_addr: None,
            store: None,
            core_parts: JoinSet::new(),
            edges: JoinSet::new(),
            edge_stop,
            core_stop,
            drain: Duration::from_secs(config.shutdown_timeout_secs),
            _single_node: None,
        }
    }

    fn serve_grpc(
        &mut self,
        listener: TcpListener,
        core: &Arc<Core>,
        config: GrpcConfig,
        auth: BearerAuth,
        ops: Option<axum::Router>,
    ) {
        let (core, stop) = (core.clone(), self.core_stop.clone());
        self.core_parts.spawn(async move {
            server::serve(listener, core, &config, auth, ops, stop.cancelled_owned()).await?;
            Ok(())
        });
    }

    /// The edges of this process. They still call the core through gRPC (DESIGN.md): over
    /// in-memory pipes, with a token that exists only in this process.
    async fn start_edges(
        &mut self,
        web: TcpListener,
        core: &Arc<Core>,
        auth: BearerAuth,
        mut ops: Ops,
        config: &Config,
    ) -> Result<(), ServeError> {
        let internal_token = hex::encode(rand::random::<[u8; 32]>());
        let (client, incoming) = socketgram_proto::client::in_process(&internal_token)?;
        let internal_auth = BearerAuth::new([Secret::new(internal_token)]);
        let (served, stop) = (core.clone(), self.core_stop.clone());
        self.core_parts.spawn(async move {
            server::serve_in_process(incoming, served, internal_auth, stop.cancelled_owned())
                .await?;
            Ok(())
        });
        let cores = Cores::one(client);

        // The web listener also serves the core's gRPC-web API and, in webhook mode without
        // a listener of its own, the Telegram webhook route.
        let mut extra = axum::Router::new();
        if config.telegram.enabled() {
            ops = socketgram_edge_telegram::register_ops(ops, &config.telegram);
            if config.telegram.mode == UpdateMode::Webhook
                && config.telegram.webhook_listen.is_none()
            {
                extra = extra.merge(self.start_telegram_webhook(config, cores.clone()));
            } else {
                self.start_telegram(config, cores.clone());
            }
        }
        if config.web.grpc_web {
            extra = extra.merge(server::grpc_web_router(core.clone(), auth).await?);
        }
        self.start_web(web, config, cores, extra, ops);
        Ok(())
    }

    /// The web edge on `web`, calling `cores`, with `extra` routes and those of `ops` beside
    /// its own. With a bot token and no `[web] telegram_bot`, the widget's "Continue in
    /// Telegram" names the bot Telegram says the token is.
    fn start_web(
        &mut self,
        web: TcpListener,
        config: &Config,
        cores: Cores,
        extra: axum::Router,
        ops: Ops,
    ) {
        let telegram_bot = TelegramBot::default();
        if config.web.telegram_bot.is_empty() && config.telegram.enabled() {
            self.learn_bot_username(&config.telegram, telegram_bot.clone());
        }
        let extras = Extras {
            routes: Some(extra),
            ops,
            telegram_bot,
        };
        let (web_config, legacy, stop) = (
            config.web.clone(),
            config.legacy.clone(),
            self.edge_stop.clone(),
        );
        self.edges.spawn(async move {
            socketgram_edge_web::serve(web, &web_config, &legacy, cores, extras, stop).await?;
            Ok(())
        });
    }

    /// Fills `bot` with the bot's username from Telegram's `getMe`, asked until it answers
    /// or the edges stop. The Telegram edge asks `getMe` for itself as it starts; the web edge
    /// may run without it (`edge-web`), so it asks on its own. Not one of `edges`: a part that
    /// ends there stops the server, and this one ends once it knows.
    fn learn_bot_username(&self, telegram: &TelegramConfig, bot: TelegramBot) {
        let (telegram, stop) = (telegram.clone(), self.edge_stop.clone());
        tokio::spawn(async move {
            match socketgram_edge_telegram::bot_username(&telegram, &stop).await {
                Ok(username) => match bot.fill(&username) {
                    Ok(()) => info!(bot = %username, "the widget offers \"Continue in Telegram\""),
                    Err(e) => {
                        warn!(error = %e, "Telegram named the bot oddly; the widget offers no \"Continue in Telegram\" (set web.telegram_bot)")
                    }
                },
                // Shutdown, or a token the Telegram edge refuses (and stops the server with).
                Err(e) => debug!(error = %e, "the widget offers no \"Continue in Telegram\""),
            }
        });
    }

    /// The Telegram edge, taking updates by long polling or on its own webhook listener.
    fn start_telegram(&mut self, config: &Config, cores: Cores) {
        let (telegram, stop) = (config.telegram.clone(), self.edge_stop.clone());
        self.edges.spawn(async move {
            socketgram_edge_telegram::run(telegram, cores, stop).await?;
            Ok(())
        });
    }

    /// The Telegram edge taking webhook updates on the route returned, for the web listener.
    fn start_telegram_webhook(&mut self, config: &Config, cores: Cores) -> axum::Router {
        let (telegram, stop) = (config.telegram.clone(), self.edge_stop.clone());
        let (route, inbox) = socketgram_edge_telegram::webhook_router(&telegram);
        self.edges.spawn(async move {
            socketgram_edge_telegram::run_with_webhook(telegram, cores, inbox, stop).await?;
            Ok(())
        });
        route
    }

    /// Runs until `shutdown` is cancelled or a part fails, then drains: the edges first, then
    /// the core, within `shutdown_timeout_secs` in all. The error is the failed part's.
    pub async fn run(mut self, shutdown: CancellationToken) -> Result<(), ServeError> {
        let failed = tokio::select! {
            // The signal first: parts that end because of it are no failure.
            biased;
            () = shutdown.cancelled() => {
                info!("shutting down; draining calls in flight");
                None
            }
            Some(ended) = self.core_parts.join_next() => Some(ended),
            Some(ended) = self.edges.join_next() => Some(ended),
        };
        let deadline = tokio::time::Instant::now() + self.drain;
        self.edge_stop.cancel();
        let edges_drained = drain(&mut self.edges, deadline).await;
        self.core_stop.cancel();
        if !(edges_drained && drain(&mut self.core_parts, deadline).await) {
            warn!(seconds = self.drain.as_secs(), "drain time is up; exiting");
        }
        if let Some(store) = &self.store {
            store.close().await;
        }
        if let Some(ended) = failed {
            ended.map_err(|e| ServeError::Panicked(e.to_string()))??;
            warn!("a part of the server stopped; shut down");
        }
        info!("stopped");
        Ok(())
    }
}

/// Waits for `parts` to end, until `deadline`; false when time ran out.
async fn drain(
    parts: &mut JoinSet<Result<(), ServeError>>,
    deadline: tokio::time::Instant,
) -> bool {
    tokio::time::timeout_at(deadline, async {
        while let Some(ended) = parts.join_next().await {
            match ended {
                Ok(Err(e)) => error!("{e}"),
                Err(e) => error!("a part of the server panicked: {e}"),
                Ok(Ok(())) => {}
            }
        }
    })
    .await
    .is_ok()
}
