//! A TCP proxy between the core and its database that a test can cut and restore: the
//! database "goes away" for the core while the shared server keeps serving everyone else.
//! It can also drop a connection at the worst moment: right after the database answered a
//! COMMIT, before the answer reaches the client (the commit happened; the client cannot know).

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU8, Ordering},
    },
    time::Duration,
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::{Notify, watch},
    task::JoinHandle,
};

/// What happens at the next COMMIT a client sends.
const COMMIT_PASSES: u8 = 0;
/// Its connection drops once the database has answered it; the proxy stays up.
const COMMIT_DROPS: u8 = 1;
/// Its connection drops once the database has answered it, and the proxy goes down.
const COMMIT_DROPS_AND_CUTS: u8 = 2;

/// What every connection of one proxy shares.
struct Shared {
    target: SocketAddr,
    up: AtomicBool,
    /// Bumped on every cut: open connections watch it and close.
    cuts: watch::Sender<u64>,
    on_commit: AtomicU8,
    /// Told when an armed COMMIT has been let through and its answer dropped.
    commit_dropped: Notify,
}

/// Forwards `127.0.0.1:<port>` to a target address.
pub struct FaultProxy {
    /// Where clients connect instead of the target.
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl FaultProxy {
    /// A proxy in front of the server a database URL names, and the URL that goes through it.
    pub async fn in_front_of(database_url: &str) -> (Self, String) {
        let parsed = url::Url::parse(database_url).expect("database URL");
        let host = parsed.host_str().expect("a host in the database URL");
        let port = parsed.port().expect("a port in the database URL");
        let target = tokio::net::lookup_host((host, port))
            .await
            .expect("resolve the database host")
            .next()
            .expect("an address of the database host");
        let proxy = Self::start(target).await.expect("start the proxy");
        let url = proxy.url_for(database_url);
        (proxy, url)
    }

    pub async fn start(target: SocketAddr) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            target,
            up: AtomicBool::new(true),
            cuts: watch::channel(0u64).0,
            on_commit: AtomicU8::new(COMMIT_PASSES),
            commit_dropped: Notify::new(),
        });
        let task = tokio::spawn(accept_loop(listener, shared.clone()));
        Ok(Self { addr, shared, task })
    }

    /// Closes every open connection and refuses new ones until [`FaultProxy::restore`].
    pub fn cut(&self) {
        self.shared.up.store(false, Ordering::SeqCst);
        self.shared.cuts.send_modify(|n| *n += 1);
    }

    /// Forwards again.
    pub fn restore(&self) {
        self.shared.up.store(true, Ordering::SeqCst);
    }

    /// Arms the next COMMIT: the proxy lets it through, waits for the database's answer,
    /// drops that answer and the connection; with `then_cut`, it also goes down (as
    /// [`FaultProxy::cut`]) until [`FaultProxy::restore`].
    pub fn drop_after_next_commit(&self, then_cut: bool) {
        let mode = if then_cut {
            COMMIT_DROPS_AND_CUTS
        } else {
            COMMIT_DROPS
        };
        self.shared.on_commit.store(mode, Ordering::SeqCst);
    }

    /// Waits until an armed COMMIT has been dropped (or `within` has passed: false).
    pub async fn commit_dropped(&self, within: Duration) -> bool {
        tokio::time::timeout(within, self.shared.commit_dropped.notified())
            .await
            .is_ok()
    }

    /// The target URL with its host and port replaced by the proxy's.
    pub fn url_for(&self, target_url: &str) -> String {
        let mut url = url::Url::parse(target_url).expect("database URL");
        url.set_ip_host(self.addr.ip()).expect("ip host");
        url.set_port(Some(self.addr.port())).expect("port");
        url.to_string()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
        self.shared.cuts.send_modify(|n| *n += 1);
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    while let Ok((client, _)) = listener.accept().await {
        if !shared.up.load(Ordering::SeqCst) {
            drop(client);
            continue;
        }
        let mut cut = shared.cuts.subscribe();
        let shared = shared.clone();
        tokio::spawn(async move {
            let Ok(server) = TcpStream::connect(shared.target).await else {
                return;
            };
            tokio::select! {
                () = forward(client, server, &shared) => {}
                _ = cut.changed() => {}
            }
        });
    }
}

/// Copies both ways until either side closes, or an armed COMMIT has been answered.
async fn forward(client: TcpStream, server: TcpStream, shared: &Shared) {
    let (mut client_rx, mut client_tx) = client.into_split();
    let (mut server_rx, mut server_tx) = server.into_split();
    let upstream = async {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match client_rx.read(&mut buf).await {
                Ok(0) | Err(_) => return false,
                Ok(n) => n,
            };
            let armed = shared.on_commit.load(Ordering::SeqCst);
            // Both MySQL and PostgreSQL send the statement as text in one packet.
            let commit = armed != COMMIT_PASSES && contains_commit(&buf[..n]);
            if server_tx.write_all(&buf[..n]).await.is_err() {
                return false;
            }
            if commit
                && shared
                    .on_commit
                    .compare_exchange(armed, COMMIT_PASSES, Ordering::SeqCst, Ordering::SeqCst)
                    .is_ok()
            {
                return armed == COMMIT_DROPS_AND_CUTS;
            }
        }
    };
    let downstream = tokio::io::copy(&mut server_rx, &mut client_tx);
    let commit = tokio::select! {
        then_cut = upstream => Some(then_cut),
        _ = downstream => None,
    };
    if let Some(then_cut) = commit {
        // Hold the connection until the database has answered the COMMIT (so it is
        // committed), then drop the answer with the connection.
        let mut answer = [0u8; 512];
        let _ = tokio::time::timeout(Duration::from_secs(5), server_rx.read(&mut answer)).await;
        if then_cut {
            shared.up.store(false, Ordering::SeqCst);
            shared.cuts.send_modify(|n| *n += 1);
        }
        shared.commit_dropped.notify_one();
    }
}

fn contains_commit(packet: &[u8]) -> bool {
    packet.windows(6).any(|w| w.eq_ignore_ascii_case(b"COMMIT"))
}
