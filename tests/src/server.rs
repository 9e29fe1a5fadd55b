//! The real server, started on port 0 for a test (in process, or as the binary), and gRPC
//! clients for it.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use socketgram::{Listeners, Server};
use socketgram_proto::client::{ChatClient, CoreClient, TelegramClient};
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    net::TcpListener,
    process::{Child, Command},
    sync::oneshot,
};
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

/// The bearer token test servers accept.
pub const TOKEN: &str = "test-backend-token";

/// A running server: `socketgram serve` in this process (its own runtime and thread), or the
/// real binary in a child process (for what only a process has: the CLI, signals, the ready
/// line).
pub struct TestServer {
    running: Running,
    /// The gRPC address it reported.
    pub grpc: SocketAddr,
    /// The web edge's address (`serve` only).
    pub web: Option<SocketAddr>,
    _dir: tempfile::TempDir,
}

enum Running {
    Process(Child),
    InProcess {
        shutdown: CancellationToken,
        /// How `Server::run` ended.
        ended: oneshot::Receiver<Result<(), String>>,
    },
    /// Waited for.
    Ended,
}

/// The configuration file of a test server: a `[grpc]` section on port 0 with [`TOKEN`], the
/// database, then the test's own TOML.
fn config_text(database_url: &str, toml: &str, dir: &Path) -> String {
    // Files go to the test's own directory unless the test chose one.
    let files = if toml.contains("[core.attachments]") {
        String::new()
    } else {
        format!(
            "[core.attachments]\ndir = \"{}\"\n\n",
            dir.join("files").display()
        )
    };
    format!(
        "[grpc]\nlisten = \"127.0.0.1:0\"\ntokens = [\"{TOKEN}\"]\n\n[core.database]\nurl = \"{database_url}\"\nacquire_timeout_ms = 1000\n\n{files}{toml}"
    )
}

/// The servers' log, as the binary writes it (`RUST_LOG` chooses, as for the binary).
fn log_to_stderr() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(
            "socketgram=info,socketgram_core=info,socketgram_edge_web=info",
        )
    });
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .try_init();
}

impl TestServer {
    /// Starts `socketgram serve` in this process with the configuration `toml` (see
    /// [`config_text`]), the web edge on port 0.
    pub async fn start(database_url: &str, toml: &str) -> Self {
        Self::start_with_web(database_url, toml, "127.0.0.1:0").await
    }

    /// [`TestServer::start`] with the web edge on a given address (e.g. a port chosen ahead,
    /// for a Telegram webhook URL that must be known before the start).
    pub async fn start_with_web(database_url: &str, toml: &str, web_listen: &str) -> Self {
        log_to_stderr();
        let dir = tempfile::tempdir().expect("temporary directory");
        let text = config_text(database_url, toml, dir.path());
        let config = socketgram::Config::from_figment(figment::Figment::from(
            <figment::providers::Toml as figment::providers::Format>::string(&text),
        ))
        .unwrap_or_else(|e| panic!("test configuration refused: {e}"));
        let web_listen = web_listen.to_owned();
        let shutdown = CancellationToken::new();
        let (ready_tx, ready) = oneshot::channel();
        let (ended_tx, ended) = oneshot::channel();
        let stop = shutdown.clone();
        // A runtime of its own, as the binary has: the test's runtime (one thread) drives the
        // clients, and nothing the server does waits on them.
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("a runtime for the server");
            runtime.block_on(async move {
                let grpc = TcpListener::bind(&config.grpc.listen)
                    .await
                    .expect("bind gRPC");
                let web = TcpListener::bind(&web_listen).await.expect("bind web");
                let server = match Server::start(
                    Listeners {
                        grpc,
                        web: Some(web),
                    },
                    &config,
                )
                .await
                {
                    Ok(server) => server,
                    Err(e) => panic!("socketgram did not start: {e}"),
                };
                let _ = ready_tx.send((
                    server.grpc_addr.expect("serve listens for gRPC"),
                    server.web_addr,
                ));
                let _ = ended_tx.send(server.run(stop).await.map_err(|e| e.to_string()));
            });
        });
        let (grpc, web) = tokio::time::timeout(Duration::from_secs(60), ready)
            .await
            .expect("socketgram did not get ready in time")
            .expect("socketgram did not start");
        Self {
            running: Running::InProcess { shutdown, ended },
            grpc,
            web,
            _dir: dir,
        }
    }

    /// Starts the real binary `bin` with `command` and a config file of `toml` (see
    /// [`config_text`]) and waits for its ready line.
    pub async fn binary(bin: &Path, command_name: &str, database_url: &str, toml: &str) -> Self {
        Self::binary_with(bin, command_name, database_url, toml, None).await
    }

    /// [`TestServer::binary`], its log (stderr, every crate's at info) kept for the test to
    /// read, and still shown.
    pub async fn binary_with_log(
        bin: &Path,
        command_name: &str,
        database_url: &str,
        toml: &str,
    ) -> (Self, Log) {
        let log = Log::default();
        let server = Self::binary_with(bin, command_name, database_url, toml, Some(log.clone()));
        (server.await, log)
    }

    async fn binary_with(
        bin: &Path,
        command_name: &str,
        database_url: &str,
        toml: &str,
        log: Option<Log>,
    ) -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        let config = dir.path().join("socketgram.toml");
        std::fs::write(&config, config_text(database_url, toml, dir.path())).expect("write config");
        let mut command = Command::new(bin);
        command
            .arg(command_name)
            .arg("--config")
            .arg(&config)
            .current_dir(dir.path())
            .env(
                "RUST_LOG",
                "socketgram=info,socketgram_core=info,socketgram_edge_web=info",
            )
            .env("SOCKETGRAM_WEB__LISTEN", "127.0.0.1:0");
        if log.is_some() {
            command.env("RUST_LOG", "info");
        }
        let (child, grpc, web) = ready_line_with(command, "socketgram", log).await;
        let grpc = grpc.expect("grpc address in the ready line");
        Self {
            running: Running::Process(child),
            grpc,
            web,
            _dir: dir,
        }
    }

    /// The web edge's base URL (`http://127.0.0.1:PORT`).
    pub fn web_url(&self) -> String {
        format!(
            "http://{}",
            self.web.expect("the web edge runs under `serve`")
        )
    }

    /// A fresh HTTP/2 channel.
    pub async fn channel(&self) -> Channel {
        Channel::from_shared(format!("http://{}", self.grpc))
            .expect("uri")
            .connect()
            .await
            .expect("connect")
    }

    /// Authenticated clients of both services.
    pub async fn client(&self) -> CoreClient {
        CoreClient::connect(&format!("http://{}", self.grpc), TOKEN)
            .await
            .expect("connect")
    }

    pub async fn chat(&self) -> ChatClient {
        self.client().await.chat
    }

    pub async fn telegram(&self) -> TelegramClient {
        self.client().await.telegram
    }

    /// Stops it as SIGTERM does and waits for the end; returns whether it ended cleanly.
    pub async fn terminate(self) -> bool {
        self.begin_shutdown();
        self.exited().await
    }

    /// Starts the shutdown without waiting: SIGTERM to the binary, or, in process, what its
    /// signal handler does (cancels the server's shutdown token).
    pub fn begin_shutdown(&self) {
        match &self.running {
            Running::Process(child) => {
                let pid = child.id().expect("running");
                let sent = std::process::Command::new("kill")
                    .args(["-TERM", &pid.to_string()])
                    .status()
                    .expect("kill");
                assert!(sent.success());
            }
            Running::InProcess { shutdown, .. } => shutdown.cancel(),
            Running::Ended => {}
        }
    }

    /// Waits for the end (after [`TestServer::begin_shutdown`]); whether it was clean.
    pub async fn exited(mut self) -> bool {
        const LIMIT: Duration = Duration::from_secs(30);
        match std::mem::replace(&mut self.running, Running::Ended) {
            Running::Ended => true,
            Running::Process(mut child) => tokio::time::timeout(LIMIT, child.wait())
                .await
                .expect("socketgram did not stop after SIGTERM")
                .expect("wait")
                .success(),
            Running::InProcess { ended, .. } => {
                match tokio::time::timeout(LIMIT, ended)
                    .await
                    .expect("socketgram did not stop after its shutdown began")
                {
                    Ok(Ok(())) => true,
                    Ok(Err(e)) => {
                        eprintln!("socketgram stopped with an error: {e}");
                        false
                    }
                    Err(_) => false,
                }
            }
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        // A test that panicked leaves its server: stop it (a child is killed on drop).
        if let Running::InProcess { shutdown, .. } = &self.running {
            shutdown.cancel();
        }
    }
}

/// Starts `command` (the binary, stdout piped here, stderr inherited, killed on drop) and
/// waits for its ready line; returns the child and the addresses the line names. Its stdout
/// goes on being drained, so the child never blocks on a full pipe.
pub async fn ready_line(
    command: Command,
    name: &str,
) -> (Child, Option<SocketAddr>, Option<SocketAddr>) {
    ready_line_with(command, name, None).await
}

/// [`ready_line`], stderr kept in `log` (and shown) when given.
async fn ready_line_with(
    mut command: Command,
    name: &str,
    log: Option<Log>,
) -> (Child, Option<SocketAddr>, Option<SocketAddr>) {
    let stderr = if log.is_some() {
        Stdio::piped()
    } else {
        Stdio::inherit()
    };
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(stderr)
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("start {name}: {e}"));
    if let (Some(log), Some(stderr)) = (log, child.stderr.take()) {
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                eprintln!("{line}");
                log.push(line);
            }
        });
    }
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let ready = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await.expect("read stdout") {
            if let Some(rest) = line.strip_prefix("socketgram: listening") {
                return parse_ready(rest);
            }
        }
        panic!("{name} exited before it was ready");
    })
    .await
    .unwrap_or_else(|_| panic!("{name} did not get ready in time"));
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, ready.0, ready.1)
}

/// A child process's log lines, as they come.
#[derive(Clone, Default)]
pub struct Log(std::sync::Arc<std::sync::Mutex<Vec<String>>>);

impl Log {
    fn push(&self, line: String) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).push(line);
    }

    /// Every line so far.
    pub fn lines(&self) -> Vec<String> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Waits (up to 20 s) for a line containing every one of `needles`; returns it.
    pub async fn wait_for(&self, needles: &[&str]) -> String {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(line) = self
                .lines()
                .into_iter()
                .find(|l| needles.iter().all(|n| l.contains(n)))
            {
                return line;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no log line with {needles:?}; the log: {:#?}",
                self.lines()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Reads `[grpc=ADDR] [web=ADDR]` of the ready line.
fn parse_ready(rest: &str) -> (Option<SocketAddr>, Option<SocketAddr>) {
    let mut grpc = None;
    let mut web = None;
    for part in rest.split_whitespace() {
        match part.split_once('=') {
            Some(("grpc", addr)) => grpc = addr.parse().ok(),
            Some(("web", addr)) => web = addr.parse().ok(),
            _ => {}
        }
    }
    (grpc, web)
}

/// The `socketgram` binary next to the running test executable (cargo puts test binaries in
/// `target/<profile>/deps`).
pub fn binary_path() -> PathBuf {
    if let Ok(path) = std::env::var("SOCKETGRAM_BIN") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("test executable");
    exe.parent()
        .and_then(Path::parent)
        .expect("target dir")
        .join("socketgram")
}

/// Runs the `socketgram` binary `bin` with `args` on the database `database_url` (as a person
/// types a command beside a running server), with `stdin` as its input: whether it succeeded,
/// and what it printed (stdout, then stderr).
pub async fn run_command(
    bin: &str,
    database_url: &str,
    args: &[&str],
    stdin: &str,
) -> (bool, String) {
    use tokio::io::AsyncWriteExt as _;
    let mut child = Command::new(bin)
        .args(args)
        .env("SOCKETGRAM_CORE__DATABASE__URL", database_url)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("run {bin}: {e}"));
    let mut input = child.stdin.take().expect("its stdin");
    input
        .write_all(stdin.as_bytes())
        .await
        .expect("type into it");
    drop(input);
    let out = child.wait_with_output().await.expect("it ran");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}
