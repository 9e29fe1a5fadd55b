//! `socketgram-bench`: runs one scenario against a server and prints one JSON line and a
//! table; exits non-zero when a message was lost, duplicated or mangled, or the measured
//! server process exited during the run.

use std::{net::ToSocketAddrs, path::PathBuf, process::ExitCode, time::Duration};

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use socketgram_admin_php_compat::room::HashKind;
use socketgram_bench::{
    Acks, Target, abuse,
    faults::{self, DbFault, FaultLoad, ServerSpec},
    scenarios,
    stats::ProcSample,
};

#[derive(Parser)]
#[command(
    version,
    about = "Load generator for Socketgram-protocol (legacy Socket.IO) chat servers"
)]
struct Cli {
    /// Socket.IO server, e.g. http://127.0.0.1:3000.
    #[arg(long, default_value = "http://127.0.0.1:3000")]
    url: String,
    /// Where the admins connect, when not at `--url` (another edge of a scaled-out
    /// deployment).
    #[arg(long)]
    admin_url: Option<String>,
    /// The legacy secret of room hashes.
    #[arg(long, default_value = "qwerty")]
    secret: String,
    /// md5, sha1, sha256 or sha512.
    #[arg(long, default_value = "md5")]
    room_hash: String,
    /// The admin handshake parameter, NAME=VALUE.
    #[arg(long, default_value = "adminpass=admin")]
    admin_param: String,
    /// Admin login replies are signed with (scenario reply-latency).
    #[arg(long, default_value = "bench")]
    admin_login: String,
    /// Server process to measure (memory, CPU).
    #[arg(long)]
    server_pid: Option<u32>,
    /// Database server's process name to measure (CPU of all its processes), e.g. mariadbd.
    #[arg(long)]
    db_process: Option<String>,
    /// gRPC API URL (scenario grpc).
    #[arg(long)]
    grpc_url: Option<String>,
    /// gRPC bearer token (scenario grpc).
    #[arg(long, default_value = "")]
    grpc_token: String,
    /// First visitor id; default: a random block of a million.
    #[arg(long)]
    cid_base: Option<u64>,
    /// Loopback source addresses to spread client ports over (127.0.0.1, .2, ...).
    #[arg(long, default_value_t = 16)]
    source_addresses: u8,
    /// `subscribe`: the server acknowledges `subscribe` (Socketgram). `none`: it acknowledges
    /// nothing (the legacy Node.js server); a subscribe is then done when the answer to a
    /// `take history` sent after it arrives.
    #[arg(long, default_value = "subscribe", global = true)]
    acks: Acks,
    /// Visitors subscribing at once before the messages of scenarios 2-6 start (the legacy
    /// server exits when too many subscribes reach its database at once).
    #[arg(long, default_value_t = 256, global = true)]
    connect_concurrency: usize,
    /// The server's log file (abuse amplification: how much it grew).
    #[arg(long, global = true)]
    server_log: Option<PathBuf>,
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Subcommand)]
enum Scenario {
    /// 1: connect and subscribe N visitors; connect rate, memory per connection.
    Connect {
        #[arg(long, default_value_t = 1000)]
        visitors: usize,
        #[arg(long, default_value_t = 256)]
        concurrency: usize,
        #[arg(long, default_value_t = 0)]
        hold_secs: u64,
        /// Only connect (no `subscribe`): what a connection costs without its subscription.
        #[arg(long)]
        handshake_only: bool,
    },
    /// 2: sustained visitor -> admin throughput with K messages in flight.
    Throughput {
        #[arg(long, default_value_t = 100)]
        visitors: usize,
        #[arg(long, default_value_t = 1000)]
        in_flight: usize,
        #[arg(long, default_value_t = 100_000)]
        messages: u64,
    },
    /// 3: visitor -> admin latency at a fixed rate.
    Latency {
        #[arg(long, default_value_t = 50)]
        visitors: usize,
        #[arg(long, default_value_t = 1000)]
        rate: u64,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
    },
    /// 4: admin reply -> visitor latency at a fixed rate.
    ReplyLatency {
        #[arg(long, default_value_t = 50)]
        visitors: usize,
        #[arg(long, default_value_t = 1000)]
        rate: u64,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
    },
    /// 5: M admins all receiving every message.
    Fanout {
        #[arg(long, default_value_t = 10)]
        admins: usize,
        #[arg(long, default_value_t = 50)]
        visitors: usize,
        #[arg(long, default_value_t = 500)]
        rate: u64,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
    },
    /// 6: sends through the gRPC API on many concurrent callers.
    Grpc {
        #[arg(long, default_value_t = 64)]
        streams: usize,
        #[arg(long, default_value_t = 50_000)]
        messages: u64,
    },
    /// An attack while an innocent client chats (run with the default [web.limits]).
    Abuse {
        #[command(subcommand)]
        attack: Attack,
    },
    /// A fault of the server or its database under load; the generator starts the server.
    Fault {
        #[command(flatten)]
        server: ServerArgs,
        #[command(subcommand)]
        case: FaultCase,
    },
}

#[derive(Subcommand)]
enum Attack {
    /// Upgraded WebSockets (no Socket.IO connect) announcing a huge frame, sending part of it.
    PartialFrames {
        #[arg(long, default_value_t = 20)]
        connections: usize,
        #[arg(long, default_value_t = 16 << 20)]
        announced_bytes: u64,
        #[arg(long, default_value_t = 900_000)]
        payload_bytes: usize,
        #[arg(long, default_value_t = 20)]
        hold_secs: u64,
    },
    /// One visitor writes N `new message` packets in one go (and polling POSTs, optionally).
    Flood {
        #[arg(long, default_value_t = 20_000)]
        events: u64,
        #[arg(long, default_value_t = 0)]
        polling_posts: u64,
        #[arg(long, default_value_t = 5_000)]
        events_per_post: u64,
        #[arg(long, default_value_t = 15)]
        after_secs: u64,
    },
    /// An admin that stops reading while visitors send.
    SlowAdmin {
        #[arg(long, default_value_t = 200)]
        visitors: usize,
        #[arg(long, default_value_t = 1000)]
        rate: u64,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        #[arg(long, default_value_t = 1000)]
        message_bytes: usize,
    },
    /// Connections trickling an HTTP request head, one byte every few seconds.
    Slowloris {
        #[arg(long, default_value_t = 1000)]
        connections: usize,
        #[arg(long, default_value_t = 5.0)]
        interval_secs: f64,
        #[arg(long, default_value_t = 30)]
        seconds: u64,
    },
    /// Events with huge names: bytes sent back, log growth (--server-log).
    Amplification {
        #[arg(long, default_value_t = 100)]
        events: u64,
        /// Default: a packet just under the default max_packet_bytes (1 MiB).
        #[arg(long, default_value_t = 1_048_000)]
        name_bytes: usize,
    },
}

#[derive(clap::Args)]
struct ServerArgs {
    /// The `socketgram` binary.
    #[arg(long, default_value = "target/release/socketgram")]
    server_bin: PathBuf,
    /// Its configuration (the database it uses, already migrated).
    #[arg(long)]
    config: PathBuf,
    /// Visitors sending, messages a second each (0: as fast as the window allows), unanswered
    /// sends at most per visitor.
    #[arg(long, default_value_t = 20)]
    visitors: usize,
    #[arg(long, default_value_t = 50)]
    rate: u64,
    #[arg(long, default_value_t = 8)]
    window: usize,
    /// Load before the fault, milliseconds; default a random 2,000-4,000.
    #[arg(long)]
    before_ms: Option<u64>,
}

#[derive(Subcommand)]
enum FaultCase {
    /// kill -9 mid-load, restart on the same database.
    Kill9,
    /// SIGTERM mid-load.
    Sigterm,
    /// Database connections cut / refused / stalled through a proxy of the generator's.
    Db {
        /// cut, refuse or stall.
        #[arg(long)]
        fault: String,
        /// The real database (the server gets the proxy's address instead).
        #[arg(long)]
        db_url: String,
        #[arg(long, default_value_t = 10)]
        fault_secs: u64,
    },
}

/// The address of a server URL given as `flag`.
fn server_addr(url: &str, flag: &str) -> anyhow::Result<std::net::SocketAddr> {
    let url = url::Url::parse(url).with_context(|| flag.to_owned())?;
    let host = url
        .host_str()
        .with_context(|| format!("{flag} needs a host"))?;
    let port = url
        .port_or_known_default()
        .with_context(|| format!("{flag} needs a port"))?;
    (host, port)
        .to_socket_addrs()?
        .next()
        .with_context(|| format!("{flag} does not resolve"))
}

fn target(cli: &Cli) -> anyhow::Result<Target> {
    let server = server_addr(&cli.url, "--url")?;
    let admin_server = match &cli.admin_url {
        Some(url) => server_addr(url, "--admin-url")?,
        None => server,
    };
    let room_hash = match cli.room_hash.as_str() {
        "md5" => HashKind::Md5,
        "sha1" => HashKind::Sha1,
        "sha256" => HashKind::Sha256,
        "sha512" => HashKind::Sha512,
        other => anyhow::bail!("--room-hash {other:?}: use md5, sha1, sha256 or sha512"),
    };
    let (name, value) = cli
        .admin_param
        .split_once('=')
        .context("--admin-param must be NAME=VALUE")?;
    Ok(Target {
        server,
        admin_server,
        secret: cli.secret.clone(),
        room_hash,
        admin_param: (name.into(), value.into()),
        admin_login: cli.admin_login.clone(),
        server_pid: cli.server_pid,
        db_process: cli.db_process.clone(),
        grpc: cli.grpc_url.clone().map(|u| (u, cli.grpc_token.clone())),
        cid_base: cli
            .cid_base
            .unwrap_or_else(|| 1_000_000 * u64::from(rand::random::<u16>() % 4000 + 1)),
        source_addresses: cli.source_addresses,
        acks: cli.acks,
        connect_concurrency: cli.connect_concurrency.max(1),
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    let t = target(&cli)?;
    let run = rand::random::<u32>();
    let mut report = match cli.scenario {
        Scenario::Connect {
            visitors,
            concurrency,
            hold_secs,
            handshake_only,
        } => {
            scenarios::connect(
                &t,
                visitors,
                concurrency,
                Duration::from_secs(hold_secs),
                handshake_only,
            )
            .await
        }
        Scenario::Throughput {
            visitors,
            in_flight,
            messages,
        } => scenarios::throughput(&t, run, visitors, in_flight, messages).await,
        Scenario::Latency {
            visitors,
            rate,
            seconds,
        } => scenarios::visitor_to_admin(&t, run, visitors, 1, rate, seconds).await,
        Scenario::ReplyLatency {
            visitors,
            rate,
            seconds,
        } => scenarios::admin_to_visitor(&t, run, visitors, rate, seconds).await,
        Scenario::Fanout {
            admins,
            visitors,
            rate,
            seconds,
        } => scenarios::visitor_to_admin(&t, run, visitors, admins, rate, seconds).await,
        Scenario::Grpc { streams, messages } => scenarios::grpc(&t, run, streams, messages).await,
        Scenario::Abuse { attack } => match attack {
            Attack::PartialFrames {
                connections,
                announced_bytes,
                payload_bytes,
                hold_secs,
            } => {
                abuse::partial_frames(
                    &t,
                    run,
                    connections,
                    announced_bytes,
                    payload_bytes,
                    Duration::from_secs(hold_secs),
                )
                .await
            }
            Attack::Flood {
                events,
                polling_posts,
                events_per_post,
                after_secs,
            } => {
                abuse::flood(
                    &t,
                    run,
                    events,
                    polling_posts,
                    events_per_post,
                    Duration::from_secs(after_secs),
                )
                .await
            }
            Attack::SlowAdmin {
                visitors,
                rate,
                seconds,
                message_bytes,
            } => abuse::slow_admin(&t, run, visitors, rate, seconds, message_bytes).await,
            Attack::Slowloris {
                connections,
                interval_secs,
                seconds,
            } => {
                abuse::slowloris(
                    &t,
                    run,
                    connections,
                    Duration::from_secs_f64(interval_secs),
                    seconds,
                )
                .await
            }
            Attack::Amplification { events, name_bytes } => {
                abuse::amplification(&t, run, events, name_bytes, cli.server_log.as_deref()).await
            }
        },
        Scenario::Fault { server, case } => {
            let spec = ServerSpec {
                bin: server.server_bin,
                config: server.config,
                env: Vec::new(),
                log: cli.server_log.clone(),
                grpc_token: cli.grpc_token.clone(),
            };
            let load = FaultLoad {
                visitors: server.visitors,
                rate: server.rate,
                window: server.window.max(1),
                before: Duration::from_millis(
                    server
                        .before_ms
                        .unwrap_or_else(|| 2000 + u64::from(rand::random::<u16>() % 2000)),
                ),
            };
            match case {
                FaultCase::Kill9 => faults::kill9(&t, run, &spec, &load).await,
                FaultCase::Sigterm => faults::sigterm(&t, run, &spec, &load).await,
                FaultCase::Db {
                    fault,
                    db_url,
                    fault_secs,
                } => {
                    let fault = match fault.as_str() {
                        "cut" => DbFault::Cut,
                        "refuse" => DbFault::Refuse,
                        "stall" => DbFault::Stall,
                        other => anyhow::bail!("--fault {other:?}: use cut, refuse or stall"),
                    };
                    faults::db_fault(
                        &t,
                        run,
                        &spec,
                        &db_url,
                        fault,
                        Duration::from_secs(fault_secs),
                        &load,
                    )
                    .await
                }
            }
        }
    };
    // A server that crashed under the load is the run's finding, not just lost messages.
    if let Some(pid) = t.server_pid
        && ProcSample::read(pid).is_none()
    {
        report
            .errors
            .push(format!("the server process {pid} exited during the run"));
    }
    // The table first: a log that takes both streams then never has it inside the JSON line.
    eprint!("{}", report.table());
    println!("{}", report.json());
    Ok(if report.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
