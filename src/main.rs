//! `socketgram`: the one binary. `main` only wires: parse the command line, load the
//! configuration, install tracing, bind, and hand over to the libraries.

mod admin;

use std::{net::SocketAddr, path::PathBuf, process::ExitCode};

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use socketgram::{Listeners, Role, Server, config};
use tokio::net::{TcpListener, TcpSocket};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

/// jemalloc instead of glibc's allocator, for speed: with it the server took 56 % more
/// connections and 18 % more messages per second, for about 4 KB more resident memory per
/// connection (it keeps freed pages a while); see BENCHMARKS.md.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

use socketgram::Config;

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
    /// Run only the gRPC core: one replica of several with `[core.cluster]` (edges run as
    /// separate processes).
    Core,
    /// Run only the web edge, in front of the cores of `[edge] core`.
    EdgeWeb(EdgeArgs),
    /// Run only the Telegram edge, calling the cores of `[edge] core`.
    EdgeTelegram(EdgeArgs),
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

#[derive(clap::Args)]
struct EdgeArgs {
    /// The cores' gRPC URLs, comma-separated (replaces `[edge] core`): the edge uses one and
    /// moves on to the next when it goes away.
    #[arg(long, value_delimiter = ',')]
    core: Vec<String>,
}

#[derive(Subcommand)]
enum TokenCommand {
    /// A visitor token for the widget: `v1.<cid>.<expiry>.<signature>`, or with what the
    /// site vouches for (any of `--name`, `--email`, `--field`) `v2.<cid>.<expiry>.<claims>.<signature>`.
    Visitor {
        cid: u32,
        /// Lifetime in seconds.
        #[arg(long, default_value_t = 86_400)]
        ttl: u64,
        /// The visitor's name, as the site knows it (shown to support as verified).
        #[arg(long)]
        name: Option<String>,
        /// The visitor's email address (shown to support as verified).
        #[arg(long)]
        email: Option<String>,
        /// A custom field, `name=value` (repeatable).
        #[arg(long = "field", value_parser = parse_field)]
        fields: Vec<(String, String)>,
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
    Check {
        /// Also check what this process role needs (e.g. `edge-web` needs `[edge] token`).
        #[arg(long, value_enum, default_value = "serve")]
        role: Role,
    },
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
    let mut config = match Config::load(file.as_deref()) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("socketgram: configuration refused: {e}");
            return ExitCode::from(2);
        }
    };
    let role = match &cli.command {
        Command::Serve => Some(Role::Serve),
        Command::Core => Some(Role::Core),
        Command::EdgeWeb(_) => Some(Role::EdgeWeb),
        Command::EdgeTelegram(_) => Some(Role::EdgeTelegram),
        Command::Config {
            command: ConfigCommand::Check { role },
        } => Some(*role),
        _ => None,
    };
    if let Command::EdgeWeb(args) | Command::EdgeTelegram(args) = &cli.command
        && !args.core.is_empty()
    {
        config.edge.core = args.core.clone();
    }
    if let Some(role) = role
        && let Err(e) = config
            .edge
            .validate()
            .and_then(|()| config.validate_role(role))
    {
        eprintln!("socketgram: configuration refused for {role:?}: {e}");
        return ExitCode::from(2);
    }
    if let Command::Config {
        command: ConfigCommand::Check { .. },
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
            Command::Serve => run(config, Role::Serve).await,
            Command::Core => run(config, Role::Core).await,
            Command::EdgeWeb(_) => run(config, Role::EdgeWeb).await,
            Command::EdgeTelegram(_) => run(config, Role::EdgeTelegram).await,
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
        TokenCommand::Visitor {
            cid,
            ttl,
            name,
            email,
            fields,
        } => {
            let vouched = (name.is_some() || email.is_some() || !fields.is_empty()).then(|| {
                socketgram_common::context::Vouched {
                    name: name.clone().unwrap_or_default(),
                    email: email.clone().unwrap_or_default(),
                    fields: fields.iter().cloned().collect(),
                }
            });
            match signer.sign_visitor(&cid.to_string(), vouched.as_ref(), *ttl) {
                Ok(token) => token,
                Err(e) => {
                    eprintln!("socketgram: {e}");
                    return ExitCode::from(2);
                }
            }
        }
        TokenCommand::Admin { login, ttl } => signer.sign(TokenKind::Admin, login, *ttl),
    };
    print_out(&format!("{token}\n"))
}

/// `name=value` of `--field`.
fn parse_field(arg: &str) -> Result<(String, String), String> {
    arg.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("{arg:?} is not name=value"))
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

async fn migrate(config: &Config) -> anyhow::Result<()> {
    let store = socketgram::open_store(config).await?;
    info!(backend = ?store.backend(), "schema is up to date");
    store.close().await;
    Ok(())
}

async fn manage_admins(config: &Config, command: admin::AdminCommand) -> anyhow::Result<()> {
    let store = socketgram::open_store(config).await?;
    let outcome = admin::run(store.as_ref(), command).await;
    store.close().await;
    print_out(&outcome?);
    Ok(())
}

/// Any serving role: bind its listeners, start it, say where, run until a signal. `core`
/// listens for gRPC, the edges on `[web] listen` (the web edge, or the Telegram edge's
/// operations endpoints), `serve` on both.
async fn run(config: Config, role: Role) -> anyhow::Result<()> {
    raise_open_files_limit();
    let shutdown = CancellationToken::new();
    tokio::spawn(watch_signals(shutdown.clone()));
    let server = match role {
        Role::Serve | Role::Core => {
            let grpc = bind("grpc.listen", &config.grpc.listen).await?;
            let web = match role {
                Role::Serve => Some(bind("web.listen", &config.web.listen).await?),
                _ => None,
            };
            Server::start(Listeners { grpc, web }, &config).await?
        }
        Role::EdgeWeb | Role::EdgeTelegram => {
            let web = bind("web.listen", &config.web.listen).await?;
            Server::start_edge(web, role, &config).await?
        }
    };
    ready(&server, &config.web);
    server.run(shutdown).await?;
    Ok(())
}

/// Connections the kernel may hold for a listener before it accepts them (capped at
/// `net.core.somaxconn`). `TcpListener::bind` listens with 128: a burst of visitors opening
/// the page at once overflowed it, and each dropped handshake waited a second for its SYN to
/// be sent again (BENCHMARKS.md, issue 13).
const LISTEN_BACKLOG: u32 = 4096;

/// Binds the address configured as `key` (the first of its addresses that binds).
async fn bind(key: &str, addr: &str) -> anyhow::Result<TcpListener> {
    let listen = |at: SocketAddr| -> std::io::Result<TcpListener> {
        let socket = if at.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        // As `TcpListener::bind` does: a restart can bind while old connections linger.
        socket.set_reuseaddr(true)?;
        socket.bind(at)?;
        socket.listen(LISTEN_BACKLOG)
    };
    let mut last = None;
    for at in tokio::net::lookup_host(addr)
        .await
        .with_context(|| format!("cannot resolve {key} = {addr}"))?
    {
        match listen(at) {
            Ok(listener) => return Ok(listener),
            Err(e) => last = Some(e),
        }
    }
    let e = last.unwrap_or_else(|| std::io::Error::other("the name has no address"));
    Err(e).with_context(|| format!("cannot listen on {key} = {addr}"))
}

/// The ready line: supervisors and tests read the bound addresses (port 0 allowed) here.
/// Then, for people, the address to open in a browser.
fn ready(server: &Server, web_config: &socketgram_edge_web::config::WebConfig) {
    let mut ready = "socketgram: listening".to_owned();
    if let Some(grpc) = server.grpc_addr {
        ready.push_str(&format!(" grpc={grpc}"));
    }
    if let Some(web) = server.web_addr {
        ready.push_str(&format!(" web={web}"));
    }
    let mut lines = vec![ready];
    if let Some(web) = server.web_addr {
        // A listener on every address is reached on this machine at the loopback one.
        let host = match web.ip() {
            ip if ip.is_unspecified() && ip.is_ipv4() => "127.0.0.1".to_owned(),
            ip if ip.is_unspecified() => "[::1]".to_owned(),
            std::net::IpAddr::V6(ip) => format!("[{ip}]"),
            ip => ip.to_string(),
        };
        let scheme = if web_config.tls.is_some() {
            "https"
        } else {
            "http"
        };
        let base = format!("{scheme}://{host}:{}", web.port());
        if web_config.console {
            lines.push(format!(
                "socketgram: open {base}/ in a browser: the operator console"
            ));
        }
        if web_config.demo {
            lines.push(format!(
                "socketgram: the demo visitor page is at {base}/demo"
            ));
        }
    }
    // One write, and never a panic: a supervisor may stop reading (or close stdout) once it
    // has the ready line, and a server must not die of that.
    use std::io::Write as _;
    let _ = writeln!(std::io::stdout().lock(), "{}", lines.join("\n"));
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
