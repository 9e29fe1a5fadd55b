//! The real `socketgram` binary, started on port 0 for a test, and gRPC clients for it.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use socketgram_proto::client::{ChatClient, CoreClient, TelegramClient};
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, Command},
};
use tonic::transport::Channel;

/// The bearer token test servers accept.
pub const TOKEN: &str = "test-backend-token";

/// A running `socketgram` process.
pub struct TestServer {
    child: Child,
    /// The gRPC address it reported.
    pub grpc: SocketAddr,
    /// The web edge's address (`serve` only).
    pub web: Option<SocketAddr>,
    _dir: tempfile::TempDir,
}

impl TestServer {
    /// Starts `bin serve` with a config file of `toml` (a `[grpc]` section on port 0 with
    /// [`TOKEN`] is added) and waits for its ready line.
    pub async fn start(bin: &Path, command: &str, database_url: &str, toml: &str) -> Self {
        Self::start_with_web(bin, command, database_url, toml, "127.0.0.1:0").await
    }

    /// [`TestServer::start`] with the web edge on a given address (e.g. a port chosen ahead,
    /// for a Telegram webhook URL that must be known before the start).
    pub async fn start_with_web(
        bin: &Path,
        command: &str,
        database_url: &str,
        toml: &str,
        web_listen: &str,
    ) -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        let config = dir.path().join("socketgram.toml");
        let text = format!(
            "[grpc]\nlisten = \"127.0.0.1:0\"\ntokens = [\"{TOKEN}\"]\n\n[core.database]\nurl = \"{database_url}\"\nacquire_timeout_ms = 1000\n\n{toml}"
        );
        std::fs::write(&config, text).expect("write config");
        let mut child = Command::new(bin)
            .arg(command)
            .arg("--config")
            .arg(&config)
            .current_dir(dir.path())
            .env(
                "RUST_LOG",
                "socketgram=info,socketgram_core=info,socketgram_edge_web=info",
            )
            .env("SOCKETGRAM_WEB__LISTEN", web_listen)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("start socketgram");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let ready = tokio::time::timeout(Duration::from_secs(60), async {
            while let Some(line) = lines.next_line().await.expect("read stdout") {
                if let Some(rest) = line.strip_prefix("socketgram: listening ") {
                    return parse_ready(rest);
                }
            }
            panic!("socketgram exited before it was ready");
        })
        .await
        .expect("socketgram did not get ready in time");
        // Keep draining stdout so the child never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let (grpc, web) = ready;
        Self {
            child,
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

    /// Sends SIGTERM and waits for the exit; returns whether it exited successfully.
    pub async fn terminate(self) -> bool {
        self.send_sigterm();
        self.exited().await
    }

    /// Sends SIGTERM, without waiting.
    pub fn send_sigterm(&self) {
        let pid = self.child.id().expect("running");
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .expect("kill");
        assert!(sent.success());
    }

    /// Waits for the exit (after [`TestServer::send_sigterm`]); whether it was a success.
    pub async fn exited(mut self) -> bool {
        let status = tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .expect("socketgram did not stop after SIGTERM")
            .expect("wait");
        status.success()
    }
}

/// Reads `grpc=ADDR [web=ADDR]` of the ready line.
fn parse_ready(rest: &str) -> (SocketAddr, Option<SocketAddr>) {
    let mut grpc = None;
    let mut web = None;
    for part in rest.split_whitespace() {
        match part.split_once('=') {
            Some(("grpc", addr)) => grpc = addr.parse().ok(),
            Some(("web", addr)) => web = addr.parse().ok(),
            _ => {}
        }
    }
    (grpc.expect("grpc address in the ready line"), web)
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
