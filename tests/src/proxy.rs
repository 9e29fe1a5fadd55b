//! A TCP proxy between the core and its database that a test can cut and restore: the
//! database "goes away" for the core while the shared server keeps serving everyone else.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use tokio::{
    net::{TcpListener, TcpStream},
    sync::watch,
    task::JoinHandle,
};

/// Forwards `127.0.0.1:<port>` to a target address.
pub struct FaultProxy {
    /// Where clients connect instead of the target.
    pub addr: SocketAddr,
    up: Arc<AtomicBool>,
    /// Bumped on every cut: open connections watch it and close.
    cuts: watch::Sender<u64>,
    task: JoinHandle<()>,
}

impl FaultProxy {
    pub async fn start(target: SocketAddr) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let up = Arc::new(AtomicBool::new(true));
        let (cuts, _) = watch::channel(0u64);
        let task = tokio::spawn(accept_loop(listener, target, up.clone(), cuts.clone()));
        Ok(Self {
            addr,
            up,
            cuts,
            task,
        })
    }

    /// Closes every open connection and refuses new ones until [`FaultProxy::restore`].
    pub fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        self.cuts.send_modify(|n| *n += 1);
    }

    /// Forwards again.
    pub fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
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
        self.cuts.send_modify(|n| *n += 1);
    }
}

async fn accept_loop(
    listener: TcpListener,
    target: SocketAddr,
    up: Arc<AtomicBool>,
    cuts: watch::Sender<u64>,
) {
    while let Ok((mut client, _)) = listener.accept().await {
        if !up.load(Ordering::SeqCst) {
            drop(client);
            continue;
        }
        let mut cut = cuts.subscribe();
        tokio::spawn(async move {
            let Ok(mut server) = TcpStream::connect(target).await else {
                return;
            };
            tokio::select! {
                _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                _ = cut.changed() => {}
            }
        });
    }
}
