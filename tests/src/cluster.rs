//! A scaled-out deployment for a test, every part a real process on port 0: a `nats-server`
//! of the test's own (Debian's package, on a free port; stopped and started again at will),
//! `socketgram core` replicas on one shared database, and `socketgram edge-web` processes in
//! front of them. Each can be killed with SIGKILL, as a crash would.

use std::{
    net::{SocketAddr, TcpListener as StdListener},
    path::PathBuf,
    process::Stdio,
    time::Duration,
};

use tokio::process::{Child, Command};

use crate::server::{TOKEN, binary_path, ready_line};

/// Where Debian's package puts the server.
const NATS_SERVER: &str = "/usr/sbin/nats-server";

/// A `nats-server` of this test's own.
pub struct Nats {
    exe: PathBuf,
    pub port: u16,
    child: Option<Child>,
}

impl Nats {
    /// Starts one on a free port; `None` (after printing `SKIPPED`, or failing under
    /// `CI=true`) when the package is not installed.
    pub async fn start() -> Option<Self> {
        let exe = std::env::var_os("SOCKETGRAM_TEST_NATS_SERVER")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(NATS_SERVER));
        if !exe.exists() {
            crate::service_missing(
                "nats-server",
                &format!(
                    "{} is not installed (Debian package nats-server)",
                    exe.display()
                ),
            );
            return None;
        }
        let mut nats = Self {
            exe,
            port: free_port(),
            child: None,
        };
        nats.restart().await;
        Some(nats)
    }

    /// `nats://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Starts it (again, on the same port) and waits until it accepts connections.
    pub async fn restart(&mut self) {
        let child = Command::new(&self.exe)
            .args(["-a", "127.0.0.1", "-p", &self.port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start nats-server");
        self.child = Some(child);
        wait_for_port(self.port).await;
    }

    /// Kills it (SIGKILL) and waits until it is gone.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
        }
    }
}

/// A `socketgram` process: a core replica or an edge.
pub struct Process {
    pub name: String,
    child: Option<Child>,
    pub grpc: Option<SocketAddr>,
    pub web: Option<SocketAddr>,
    _dir: tempfile::TempDir,
}

impl Process {
    /// `socketgram core` on `database_url` as replica `name` of the cluster on `nats`, with
    /// the test's own TOML after the generated sections.
    pub async fn core(name: &str, database_url: &str, nats: &str, toml: &str) -> Self {
        let config = format!(
            "[grpc]\nlisten = \"127.0.0.1:0\"\ntokens = [\"{TOKEN}\"]\n\n\
             [core.database]\nurl = \"{database_url}\"\nacquire_timeout_ms = 1000\n\n\
             [core.cluster]\nnats_url = \"{nats}\"\nreplica = \"{name}\"\n\
             presence_timeout_secs = 3\npoll_interval_ms = 200\n\n{toml}"
        );
        Self::spawn(name, &["core"], &config).await
    }

    /// `socketgram edge-web --core ...` in front of `cores` (used in that order).
    pub async fn edge_web(name: &str, cores: &[&Process], toml: &str) -> Self {
        let urls: Vec<String> = cores.iter().map(|c| c.grpc_url()).collect();
        let config = format!("[edge]\ntoken = \"{TOKEN}\"\n\n{toml}");
        Self::spawn(name, &["edge-web", "--core", &urls.join(",")], &config).await
    }

    /// `socketgram edge-telegram --core ...` calling `cores` (gRPC URLs, in that order).
    pub async fn edge_telegram(name: &str, cores: &[String], toml: &str) -> Self {
        let config = format!("[edge]\ntoken = \"{TOKEN}\"\n\n{toml}");
        Self::spawn(
            name,
            &["edge-telegram", "--core", &cores.join(",")],
            &config,
        )
        .await
    }

    async fn spawn(name: &str, args: &[&str], config: &str) -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        let file = dir.path().join("socketgram.toml");
        std::fs::write(&file, config).expect("write config");
        let mut command = Command::new(binary_path());
        command
            .args(args)
            .arg("--config")
            .arg(&file)
            .current_dir(dir.path())
            .env(
                "RUST_LOG",
                "warn,socketgram=info,socketgram_core=info,socketgram_edge_web=info",
            )
            .env("SOCKETGRAM_WEB__LISTEN", "127.0.0.1:0");
        let (child, grpc, web) = ready_line(command, name).await;
        Self {
            name: name.to_owned(),
            child: Some(child),
            grpc,
            web,
            _dir: dir,
        }
    }

    /// `http://ADDR` of its gRPC listener.
    pub fn grpc_url(&self) -> String {
        format!("http://{}", self.grpc.expect("a core listens for gRPC"))
    }

    /// `http://ADDR` of its web listener.
    pub fn web_url(&self) -> String {
        format!("http://{}", self.web.expect("an edge listens for the web"))
    }

    /// SIGKILL, as a crash: nothing is drained, no goodbye is said.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
        }
    }

    /// SIGTERM, then waits; whether it exited cleanly.
    pub async fn terminate(&mut self) -> bool {
        let Some(mut child) = self.child.take() else {
            return true;
        };
        let pid = child.id().expect("running");
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status();
        tokio::time::timeout(Duration::from_secs(30), child.wait())
            .await
            .expect("did not stop after SIGTERM")
            .expect("wait")
            .success()
    }
}

/// A port nothing listens on now.
pub fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

pub(crate) async fn wait_for_port(port: u16) {
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("nothing listens on port {port}");
}
