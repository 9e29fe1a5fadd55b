//! A TCP proxy between the server and its database that can fail on command: cut every
//! connection, refuse new ones (the port closed), or stall (stop forwarding, connections kept).

use std::{io, net::SocketAddr};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{
        TcpListener, TcpSocket, TcpStream,
        tcp::{OwnedReadHalf, OwnedWriteHalf},
    },
    sync::watch,
};

/// What the proxy does with traffic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Forward,
    /// The listening port is closed: connects are refused.
    Refuse,
    /// Nothing is forwarded; connections stay open.
    Stall,
}

/// A running proxy.
pub struct Proxy {
    pub addr: SocketAddr,
    mode: watch::Sender<Mode>,
    cuts: watch::Sender<u64>,
}

fn listen(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

impl Proxy {
    /// Listens on a free loopback port and forwards to `upstream`.
    pub fn start(upstream: SocketAddr) -> io::Result<Self> {
        let first = listen("127.0.0.1:0".parse().expect("address"))?;
        let addr = first.local_addr()?;
        let (mode, mode_rx) = watch::channel(Mode::Forward);
        let (cuts, cuts_rx) = watch::channel(0u64);
        tokio::spawn(accept_loop(first, addr, upstream, mode_rx, cuts_rx));
        Ok(Self { addr, mode, cuts })
    }

    /// Closes every open connection (new ones are accepted).
    pub fn cut(&self) {
        self.cuts.send_modify(|n| *n += 1);
    }

    /// Sets the mode; [`Mode::Refuse`] also cuts what is open.
    pub fn set(&self, mode: Mode) {
        self.mode.send_replace(mode);
        if mode == Mode::Refuse {
            self.cut();
        }
    }
}

async fn accept_loop(
    first: TcpListener,
    addr: SocketAddr,
    upstream: SocketAddr,
    mut mode: watch::Receiver<Mode>,
    cuts: watch::Receiver<u64>,
) {
    let mut listener = Some(first);
    loop {
        let Some(l) = listener.take() else {
            // Refusing: the port stays closed until the mode changes.
            if mode.wait_for(|m| *m != Mode::Refuse).await.is_err() {
                return;
            }
            // The port may take a moment to be free again.
            for _ in 0..100 {
                if let Ok(l) = listen(addr) {
                    listener = Some(l);
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            continue;
        };
        tokio::select! {
            accepted = l.accept() => {
                if let Ok((client, _)) = accepted {
                    tokio::spawn(pump(client, upstream, mode.clone(), cuts.clone()));
                }
                listener = Some(l);
            }
            changed = mode.changed() => {
                if changed.is_err() {
                    return;
                }
                if *mode.borrow() != Mode::Refuse {
                    listener = Some(l);
                }
            }
        }
    }
}

async fn pump(
    client: TcpStream,
    upstream: SocketAddr,
    mode: watch::Receiver<Mode>,
    mut cuts: watch::Receiver<u64>,
) {
    cuts.mark_unchanged();
    let Ok(server) = TcpStream::connect(upstream).await else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (cr, cw) = client.into_split();
    let (sr, sw) = server.into_split();
    tokio::select! {
        () = pipe(cr, sw, mode.clone()) => {}
        () = pipe(sr, cw, mode) => {}
        _ = cuts.changed() => {}
    }
}

async fn flowing(mode: &mut watch::Receiver<Mode>) -> bool {
    mode.wait_for(|m| *m != Mode::Stall).await.is_ok()
}

async fn pipe(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, mut mode: watch::Receiver<Mode>) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        if !flowing(&mut mode).await {
            return;
        }
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if !flowing(&mut mode).await || to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
