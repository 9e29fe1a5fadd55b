//! `socketgram`: the one binary. `main` only wires: parse the command line, load the
//! configuration, install tracing, bind, and hand over to the libraries.

mod admin;
mod config;

use std::{path::PathBuf, process::ExitCode, sync::Arc, time::Duration};

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use socketgram_core::{Core, config::Secret, grpc::BearerAuth, server, store};
use socketgram_edge_telegram::config::UpdateMode;
use socketgram_proto::client::CoreClient;
use tokio::{net::TcpListener, task::JoinSet};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

/// jemalloc instead of glibc's allocator, for speed: with it the server took 56 % more
/// connections and 18 % more messages per second, for about 4 KB more resident memory per
/// connection (it keeps freed pages a while); see BENCHMARKS.md.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

use crate::config::Config;

/// Self-hosted support chat: Socket.IO widget, Telegram bot, legacy PHP admin, gRPC core.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// Configuration file (TOML). Default: ./socketgram.toml when it exists.
    #[arg(long, short, env = "SOCKETGRAM_CONFIG", global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run everything in one process (the default deployment).
    Serve,
    /// Run only the gRPC core (edges run as separate processes).
    Core,
    /// Create the database schema, or adopt an existing legacy database, then exit.
    Migrate,
    /// Manage the admins replies are signed with (`adm_account`), without SQL.
    Admin {
        #[command(subcommand)]
        command: admin::AdminCommand,
    },
    /// Mint a signed token with `[web] token_secret` (what the host site does itself).
    Token {
        #[command(subcommand)]
        kind: TokenCommand,
    },
    /// Configuration tools.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// A visitor token for the widget: `v1.<cid>.<expiry>.<signature>`.
    Visitor {
        cid: u32,
        /// Lifetime in seconds.
        #[arg(long, default_value_t = 86_400)]
        ttl: u64,
    },
    /// A per-admin token for an admin client: `a1.<login>.<expiry>.<signature>`.
    Admin {
        login: String,
        /// Lifetime in seconds.
        #[arg(long, default_value_t = 86_400)]
        ttl: u64,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Load and validate the configuration, then print it (secrets hidden).
    Check,
    /// Print the documented example configuration.
    Example,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Config {
        command: ConfigCommand::Example,
    } = cli.command
    {
        return print_out(config::EXAMPLE);
    }
    let file = cli.config.clone().or_else(|| {
        let default = PathBuf::from("socketgram.toml");
        default.exists().then_some(default)
    });
    let config = match Config::load(file.as_deref()) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("socketgram: configuration refused: {e}");
            return ExitCode::from(2);
        }
    };
    if let Command::Config {
        command: ConfigCommand::Check,
    } = cli.command
    {
        let source = file.map_or("defaults and environment".into(), |f| {
            f.display().to_string()
        });
        // The effective configuration, as a file would say it; secrets show as "***".
        return match toml::to_string_pretty(&config) {
            Ok(effective) => print_out(&format!("# configuration OK ({source})\n{effective}")),
            Err(e) => {
                eprintln!("socketgram: cannot print the configuration: {e}");
                ExitCode::FAILURE
            }
        };
    }
    if let Command::Token { kind } = &cli.command {
        return mint_token(&config, kind);
    }
    let _log = init_tracing(&config.log);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            error!(error = %e, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(async {
        match cli.command {
            Command::Serve => run(config, Mode::Everything).await,
            Command::Core => run(config, Mode::CoreOnly).await,
            Command::Migrate => migrate(&config).await,
            Command::Admin { command } => manage_admins(&config, command).await,
            Command::Config { .. } | Command::Token { .. } => Ok(()),
        }
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!("{e:#}");
            eprintln!("socketgram: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn mint_token(config: &Config, kind: &TokenCommand) -> ExitCode {
    use socketgram_admin_php_compat::handshake::{TokenKind, TokenSigner};
    if config.web.token_secret.is_empty() {
        eprintln!("socketgram: set web.token_secret first: tokens are signed with it");
        return ExitCode::from(2);
    }
    let signer = TokenSigner::new(config.web.token_secret.expose().as_bytes());
    let token = match kind {
        TokenCommand::Visitor { cid, ttl } => {
            signer.sign(TokenKind::Visitor, &cid.to_string(), *ttl)
        }
        TokenCommand::Admin { login, ttl } => signer.sign(TokenKind::Admin, login, *ttl),
    };
    print_out(&format!("{token}\n"))
}

/// Prints a command's output; a closed pipe (`| head`) is not an error.
fn print_out(text: &str) -> ExitCode {
    use std::io::Write as _;
    let _ = std::io::stdout().write_all(text.as_bytes());
    ExitCode::SUCCESS
}

/// Installs the log. Lines go to stderr from a thread of their own: a stderr nobody reads (a
/// full pipe) would otherwise block whichever task logs, and with it SIGTERM's drain; when
/// it stalls, lines are dropped instead. The guard flushes what is queued when dropped.
fn init_tracing(log: &config::LogConfig) -> tracing_appender::non_blocking::WorkerGuard {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&log.filter));
    let (writer, guard) = tracing_appender::non_blocking(std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(writer);
    if log.json {
        builder.json().init();
    } else {
        builder.init();
    }
    guard
}

/// Every connection holds a file descriptor; the usual soft limit (1,024) would refuse
/// clients long before the machine runs out of anything. Raised to the hard limit.
fn raise_open_files_limit() {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => info!(limit, "open files limit"),
        Err(e) => warn!(error = %e, "cannot raise the open files limit"),
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Everything,
    CoreOnly,
}

async fn open_store(config: &Config) -> anyhow::Result<Arc<dyn store::Store>> {
    let url = store::redact_url(config.core.database.url.expose());
    let store = store::connect(&config.core.database)
        .await
        .with_context(|| format!("cannot open the database {url}"))?;
    store
        .migrate()
        .await
        .with_context(|| format!("cannot migrate the database {url}"))?;
    Ok(store)
}

async fn migrate(config: &Config) -> anyhow::Result<()> {
    let store = open_store(config).await?;
    info!(backend = ?store.backend(), "schema is up to date");
    store.close().await;
    Ok(())
}

async fn manage_admins(config: &Config, command: admin::AdminCommand) -> anyhow::Result<()> {
    let store = open_store(config).await?;
    let outcome = admin::run(store.as_ref(), command).await;
    store.close().await;
    print_out(&outcome?);
    Ok(())
}

async fn run(config: Config, mode: Mode) -> anyhow::Result<()> {
    raise_open_files_limit();
    let signal = CancellationToken::new();
    tokio::spawn(watch_signals(signal.clone()));
    // Shutdown in two steps: the edges first (they stop taking requests and finish what they
    // took, which needs the core), then the core and its gRPC listeners.
    let (core_stop, edge_stop) = (CancellationToken::new(), CancellationToken::new());

    let store = open_store(&config).await?;
    let core = Core::start(store.clone(), &config.core, core_stop.clone())
        .await
        .context("cannot start the core")?;
    let listener = TcpListener::bind(&config.grpc.listen)
        .await
        .with_context(|| format!("cannot listen on grpc.listen = {}", config.grpc.listen))?;
    if mode == Mode::Everything && config.legacy.secret.is_empty() {
        warn!(
            "legacy.secret is empty: a legacy visitor's room is then the hash of its id alone, \
             which anyone can compute; set the secret the host site and the PHP admin use"
        );
    }
    if config.grpc.tokens.is_empty() {
        warn!("grpc.tokens is empty: every Chat/Telegram call from outside will be refused");
    }
    let mut ready = format!("socketgram: listening grpc={}", listener.local_addr()?);
    let mut core_parts: JoinSet<anyhow::Result<()>> = JoinSet::new();
    let mut edges: JoinSet<anyhow::Result<()>> = JoinSet::new();
    let auth = BearerAuth::new(config.grpc.tokens.iter().cloned());
    core_parts.spawn(serve_grpc(
        listener,
        core.clone(),
        config.grpc.clone(),
        auth.clone(),
        core_stop.clone(),
    ));

    if mode == Mode::Everything {
        // In one process the edges still call the core through gRPC (DESIGN.md): over a
        // loopback listener of their own, with a token that exists only in this process.
        let internal_token = hex::encode(rand::random::<[u8; 32]>());
        let internal = TcpListener::bind("127.0.0.1:0")
            .await
            .context("cannot bind the internal gRPC listener")?;
        let core_url = format!("http://{}", internal.local_addr()?);
        info!(
            addr = %core_url,
            "internal gRPC listener: the edges of this process call the core through it, \
             with a token made for this run (not for outside use)"
        );
        let internal_auth = BearerAuth::new([Secret::new(internal_token.clone())]);
        let internal_config = server::GrpcConfig {
            listen: core_url.clone(),
            tokens: Vec::new(),
            tls: None,
        };
        core_parts.spawn(serve_grpc(
            internal,
            core.clone(),
            internal_config,
            internal_auth,
            core_stop.clone(),
        ));
        let client =
            CoreClient::lazy(&core_url, &internal_token).context("internal core client")?;
        // The web listener also serves the core's gRPC-web API and, in webhook mode without
        // a listener of its own, the Telegram webhook route.
        let mut extra = axum::Router::new();
        if config.telegram.enabled() {
            let (telegram, client, shutdown) =
                (config.telegram.clone(), client.clone(), edge_stop.clone());
            if telegram.mode == UpdateMode::Webhook && telegram.webhook_listen.is_none() {
                let (route, inbox) = socketgram_edge_telegram::webhook_router(&telegram);
                extra = extra.merge(route);
                edges.spawn(async move {
                    socketgram_edge_telegram::run_with_webhook(telegram, client, inbox, shutdown)
                        .await
                        .context("the Telegram edge stopped")
                });
            } else {
                edges.spawn(async move {
                    socketgram_edge_telegram::run(telegram, client, shutdown)
                        .await
                        .context("the Telegram edge stopped")
                });
            }
        }

        let web = TcpListener::bind(&config.web.listen)
            .await
            .with_context(|| format!("cannot listen on web.listen = {}", config.web.listen))?;
        ready.push_str(&format!(" web={}", web.local_addr()?));
        if config.web.grpc_web {
            extra = extra.merge(server::grpc_web_router(core.clone(), auth.clone()).await?);
        }
        let grpc_web = Some(extra);
        let (web_config, legacy, shutdown) =
            (config.web.clone(), config.legacy.clone(), edge_stop.clone());
        edges.spawn(async move {
            socketgram_edge_web::serve(web, &web_config, &legacy, client, grpc_web, shutdown)
                .await
                .context("the web edge stopped")
        });
    }
    // The ready line: supervisors and tests read the bound addresses (port 0 allowed) here.
    println!("{ready}");

    // Run until a signal, or until a part fails (then stop the others).
    let failed = tokio::select! {
        // A signal first: parts that end because of it are no failure.
        biased;
        () = signal.cancelled() => {
            info!("shutting down; draining calls in flight");
            None
        }
        Some(ended) = core_parts.join_next() => Some(ended),
        Some(ended) = edges.join_next() => Some(ended),
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(config.shutdown_timeout_secs);
    edge_stop.cancel();
    let edges_drained = drain(&mut edges, deadline).await;
    core_stop.cancel();
    if !(edges_drained && drain(&mut core_parts, deadline).await) {
        warn!(
            seconds = config.shutdown_timeout_secs,
            "drain time is up; exiting"
        );
    }
    store.close().await;
    if let Some(ended) = failed {
        ended.context("a part of the server panicked")??;
        warn!("a part of the server stopped; shut down");
    }
    info!("stopped");
    Ok(())
}

/// Waits for `parts` to end, until `deadline`; false when time ran out.
async fn drain(parts: &mut JoinSet<anyhow::Result<()>>, deadline: tokio::time::Instant) -> bool {
    tokio::time::timeout_at(deadline, async {
        while let Some(ended) = parts.join_next().await {
            match ended {
                Ok(Err(e)) => error!("{e:#}"),
                Err(e) => error!("a part of the server panicked: {e}"),
                Ok(Ok(())) => {}
            }
        }
    })
    .await
    .is_ok()
}

async fn serve_grpc(
    listener: TcpListener,
    core: Arc<Core>,
    config: server::GrpcConfig,
    auth: BearerAuth,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    server::serve(listener, core, &config, auth, shutdown.cancelled_owned())
        .await
        .context("the gRPC server stopped")
}

/// Cancels `shutdown` on SIGTERM or Ctrl-C.
async fn watch_signals(shutdown: CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                warn!(error = %e, "cannot watch SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => info!("Ctrl-C received"),
        () = term => info!("SIGTERM received"),
    }
    shutdown.cancel();
}
