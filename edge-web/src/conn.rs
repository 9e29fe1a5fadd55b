//! The web listener's TCP connections, each with a handle that cuts it.
//!
//! socketioxide closes a socket only through that socket's send queue, and a queue that is full
//! (its reader fell behind) refuses the close too. So the edge keeps, for every connection, a
//! token that ends it from underneath: the client sees its transport close, as after any network
//! drop, and reconnects (the legacy pages do by themselves; the widget and gRPC clients resume
//! from their cursors).

use std::{
    future::Future,
    io,
    net::SocketAddr,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use axum::{
    extract::connect_info::Connected,
    serve::{IncomingStream, Listener},
};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};
use tracing::warn;

/// The web listener: accepts connections with TCP_NODELAY and a cut handle each.
pub struct CuttableListener(pub TcpListener);

impl Listener for CuttableListener {
    type Io = Conn;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Conn, SocketAddr) {
        let mut pause = Duration::from_millis(10);
        loop {
            match self.0.accept().await {
                Ok((tcp, peer)) => {
                    // Replies are small writes: without TCP_NODELAY they wait for the peer's
                    // delayed ACK (tens of milliseconds on every exchange).
                    let _ = tcp.set_nodelay(true);
                    return (Conn::new(tcp), peer);
                }
                // Out of file descriptors (or another passing error): wait, longer each time,
                // instead of spinning on accept.
                Err(e) => {
                    warn!(error = %e, pause_ms = pause.as_millis() as u64, "cannot accept a connection");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(1));
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.local_addr()
    }
}

/// One accepted connection; reads and writes fail once it is cut.
pub struct Conn {
    tcp: TcpStream,
    cut: CancellationToken,
    cutting: Pin<Box<WaitForCancellationFutureOwned>>,
}

impl Conn {
    fn new(tcp: TcpStream) -> Self {
        let cut = CancellationToken::new();
        Self {
            tcp,
            cutting: Box::pin(cut.clone().cancelled_owned()),
            cut,
        }
    }

    /// Polls the cut: once it happened, every read and write fails (and wakes up to fail).
    fn poll_cut(&mut self, cx: &mut Context<'_>) -> Option<io::Error> {
        self.cutting
            .as_mut()
            .poll(cx)
            .is_ready()
            .then(|| io::Error::new(io::ErrorKind::ConnectionAborted, "cut by the edge"))
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if let Some(e) = self.poll_cut(cx) {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.tcp).poll_read(cx, buf)
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if let Some(e) = self.poll_cut(cx) {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.tcp).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Some(e) = self.poll_cut(cx) {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
}

/// What a request knows of its connection (as `ConnectInfo<ConnInfo>`).
#[derive(Clone, Debug)]
pub struct ConnInfo {
    /// The TCP peer (a proxy, when one is in front).
    pub peer: SocketAddr,
    /// Ends the connection.
    pub cut: CancellationToken,
}

impl Connected<IncomingStream<'_, CuttableListener>> for ConnInfo {
    fn connect_info(stream: IncomingStream<'_, CuttableListener>) -> Self {
        Self {
            peer: *stream.remote_addr(),
            cut: stream.io().cut.clone(),
        }
    }
}
