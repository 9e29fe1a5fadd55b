//! A stand-in for the legacy Node.js chat server (`tests/js/noack_server.mjs`): its event
//! protocol in memory, never acknowledging anything, on a free port. The load generator's
//! tests point `socketgram-bench` at it to prove it drives a server that sends no acks (the
//! real legacy server cannot run in CI).

use std::{net::SocketAddr, process::Stdio, time::Duration};

use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::Child,
};

use crate::node;

/// How the stand-in behaves.
#[derive(Clone, Debug)]
pub struct NoAckOptions {
    /// The room hash secret (`md5("id" + cid + secret)`).
    pub secret: String,
    /// The admin handshake parameter (name, value).
    pub admin_param: (String, String),
    /// Send the visitor's newest message after each store instead of the stored one, as the
    /// legacy server does (LEGACY.md §9.6).
    pub newest_of_cid: bool,
}

impl Default for NoAckOptions {
    fn default() -> Self {
        Self {
            secret: "qwerty".into(),
            admin_param: ("adminpass".into(), "admin".into()),
            newest_of_cid: false,
        }
    }
}

/// A running stand-in; killed when dropped.
pub struct NoAckServer {
    /// Its Socket.IO address.
    pub addr: SocketAddr,
    /// Its process id (for memory and CPU figures).
    pub pid: Option<u32>,
    _child: Child,
}

impl NoAckServer {
    /// Starts the stand-in and waits for its `listening port=N` line; `None` (printed as
    /// `SKIPPED`) when Node.js is missing outside CI, a panic under `CI=true`.
    pub async fn start(options: &NoAckOptions) -> Option<Self> {
        // Finding Node.js may run `npm ci`: not on the test's runtime thread.
        let node = match tokio::task::spawn_blocking(node::node).await {
            Ok(node) => node?,
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        };
        let mut command = node.script("noack_server.mjs");
        command
            .arg("--secret")
            .arg(&options.secret)
            .arg("--admin")
            .arg(format!(
                "{}={}",
                options.admin_param.0, options.admin_param.1
            ));
        if options.newest_of_cid {
            command.arg("--newest-of-cid");
        }
        // stdin stays open (piped) for as long as the child lives: the stand-in exits when
        // it closes, so it never outlives a test that panicked.
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("start tests/js/noack_server.mjs under Node.js");
        let stdout = child.stdout.take().expect("stand-in stdout");
        let mut lines = BufReader::new(stdout).lines();
        let port = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(line) = lines.next_line().await.expect("read stand-in stdout") {
                if let Some(port) = line.strip_prefix("listening port=") {
                    return port.trim().parse::<u16>().expect("a port number");
                }
            }
            panic!("noack_server.mjs exited before listening");
        })
        .await
        .expect("noack_server.mjs did not listen in time");
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Some(Self {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            pid: child.id(),
            _child: child,
        })
    }
}
