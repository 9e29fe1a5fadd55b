//! `socketgram`: the one binary. `main` only wires: parse the command line, load the
//! configuration, install tracing, bind, and hand over to the libraries.

mod config;

use std::{path::PathBuf, process::ExitCode, sync::Arc, time::Duration};

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use socketgram_core::{Core, grpc::BearerAuth, server, store};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

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
    /// Configuration tools.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
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
        return print_out(&format!("configuration OK ({source})\n{config:#?}\n"));
    }
    init_tracing(&config.log);
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
            Command::Config { .. } => Ok(()),
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

/// Prints a command's output; a closed pipe (`| head`) is not an error.
fn print_out(text: &str) -> ExitCode {
    use std::io::Write as _;
    let _ = std::io::stdout().write_all(text.as_bytes());
    ExitCode::SUCCESS
}

fn init_tracing(log: &config::LogConfig) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&log.filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if log.json {
        builder.json().init();
    } else {
        builder.init();
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

async fn run(config: Config, mode: Mode) -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
    tokio::spawn(watch_signals(shutdown.clone()));

    let store = open_store(&config).await?;
    let core = Core::start(store.clone(), &config.core, shutdown.clone())
        .await
        .context("cannot start the core")?;
    let listener = TcpListener::bind(&config.grpc.listen)
        .await
        .with_context(|| format!("cannot listen on grpc.listen = {}", config.grpc.listen))?;
    if config.grpc.tokens.is_empty() {
        warn!("grpc.tokens is empty: every Chat/Telegram call from outside will be refused");
    }
    if mode == Mode::Everything {
        info!("web and Telegram edges are not part of this build yet; serving the core");
    }
    // The ready line: supervisors and tests read the bound address (port 0 allowed) here.
    println!("socketgram: listening grpc={}", listener.local_addr()?);

    let auth = BearerAuth::new(config.grpc.tokens.iter().cloned());
    let server = server::serve(
        listener,
        core,
        &config.grpc,
        auth,
        shutdown.clone().cancelled_owned(),
    );
    tokio::pin!(server);
    tokio::select! {
        result = &mut server => result.context("the gRPC server stopped")?,
        () = shutdown.cancelled() => {
            info!("shutting down; draining calls in flight");
            let drain = Duration::from_secs(config.shutdown_timeout_secs);
            match tokio::time::timeout(drain, &mut server).await {
                Ok(result) => result.context("the gRPC server failed while draining")?,
                Err(_) => warn!(seconds = drain.as_secs(), "drain time is up; exiting"),
            }
        }
    }
    store.close().await;
    info!("stopped");
    Ok(())
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
