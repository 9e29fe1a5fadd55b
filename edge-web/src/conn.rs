//! The web listener's connections: accepted, admitted per client address before a byte is
//! read, given a deadline to prove themselves, served (HTTP/1.1 and HTTP/2, with WebSocket
//! upgrades, plain or TLS), and each with a handle that cuts it.
//!
//! Admission bounds what one address can hold before it has shown it is a client at all: a
//! connection is *unproven* until it has sent a complete request head (plain HTTP, long
//! polling) or, for a WebSocket, authenticated a socket. Unproven connections per address are
//! capped, and one still unproven at the handshake timeout is cut: slow request heads, silent
//! connections and WebSockets stalled before their Socket.IO CONNECT (or in the middle of a
//! frame) cost their buffers for seconds, not until the ping timeout. Trusted reverse proxies
//! are not counted: every client behind them shares their address, and the proxy is where
//! such limits belong for them.
//!
//! The cut exists because socketioxide closes a socket only through that socket's send queue,
//! and a queue that is full (its reader fell behind) refuses the close too. Cutting the
//! connection from underneath shows the client a transport close, as after any network drop,
//! and it reconnects (the legacy pages do by themselves; the widget and gRPC clients resume
//! from their cursors).

use std::{
    collections::HashMap,
    future::Future,
    io,
    net::{IpAddr, SocketAddr},
    pin::Pin,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use axum::{
    Router,
    extract::{ConnectInfo, Request},
    http::{HeaderValue, Method, Uri, header},
};
use bytes::BytesMut;
use hyper::body::Incoming;
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::conn::auto::Builder,
    service::TowerToHyperService,
};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
};
use tokio_rustls::TlsAcceptor;
use tokio_util::{
    sync::{CancellationToken, WaitForCancellationFutureOwned},
    task::{TaskTracker, task_tracker::TaskTrackerToken},
};
use tower::ServiceExt as _;
use tracing::{debug, warn};

use crate::client_addr::TrustedProxies;

/// Whether the Engine.IO session of this id has an authenticated socket: a WebSocket that
/// upgrades such a session (after it started with long polling) is proven by it.
pub type Authenticated = Arc<dyn Fn(&str) -> bool + Send + Sync>;

/// How many connections one client address may hold.
#[derive(Clone, Copy, Debug)]
pub struct Admission {
    /// Open connections per address.
    pub per_ip: u32,
    /// Of those, unproven ones.
    pub unproven_per_ip: u32,
    /// How long a connection may stay unproven; also the limit on each request head.
    pub handshake_timeout: Duration,
}

/// Serves `app` on `listener` (TLS when `tls` is given) until `shutdown`, then lets the HTTP
/// requests in flight finish. Returns when the last connection has ended, upgraded ones
/// included (their sockets end them): by then what was queued for them has been written.
pub async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    admission: Admission,
    proxies: Arc<TrustedProxies>,
    authenticated: Authenticated,
    app: Router,
    shutdown: CancellationToken,
) {
    let gate = Arc::new(Gate {
        admission,
        proxies,
        counts: Mutex::default(),
        refused: AtomicU64::new(0),
    });
    // Built once, shared by every connection: a router cloned before this step builds its
    // layers again for each clone (each with an Engine.IO of its own, its sessions unknown to
    // the others).
    let app = app.with_state::<()>(());
    let connections = TaskTracker::new();
    let mut pause = Duration::from_millis(10);
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (tcp, peer) = match accepted {
            Ok(accepted) => {
                pause = Duration::from_millis(10);
                accepted
            }
            // Out of file descriptors (or another passing error): wait, longer each time,
            // instead of spinning on accept.
            Err(e) => {
                warn!(error = %e, pause_ms = pause.as_millis() as u64, "cannot accept a connection");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        let Some(ticket) = gate.admit(peer.ip()) else {
            // Closed before anything is read: it costs nothing more.
            drop(tcp);
            crate::metrics::connection_refused();
            continue;
        };
        // Replies are small writes: without TCP_NODELAY they wait for the peer's delayed ACK
        // (tens of milliseconds on every exchange).
        let _ = tcp.set_nodelay(true);
        let conn = Conn::new(tcp, ticket, connections.token());
        let (tls, app, stop) = (tls.clone(), app.clone(), shutdown.clone());
        let authenticated = authenticated.clone();
        connections.spawn(serve_connection(
            conn,
            peer,
            tls,
            app,
            admission,
            authenticated,
            stop,
        ));
    }
    drop(listener);
    connections.close();
    connections.wait().await;
}

async fn serve_connection(
    conn: Conn,
    peer: SocketAddr,
    tls: Option<TlsAcceptor>,
    app: Router,
    admission: Admission,
    authenticated: Authenticated,
    stop: CancellationToken,
) {
    let deadline = tokio::time::Instant::now() + admission.handshake_timeout;
    let info = ConnInfo {
        peer,
        cut: conn.cut.clone(),
        proof: conn.ticket.proof.clone(),
        tls: tls.is_some(),
    };
    let (cut, proof) = (info.cut.clone(), info.proof.clone());
    let upgraded_session = Arc::new(std::sync::OnceLock::<String>::new());
    let session = upgraded_session.clone();
    let service = app.map_request(move |mut request: Request<Incoming>| {
        own_head(&mut request);
        // A whole request head came in time. A WebSocket upgrade proves itself later, when
        // its socket authenticates (or when the session it upgrades has one): until then it
        // is a buffer anyone can fill.
        if !is_upgrade(&request) {
            info.proof.prove();
        } else if let Some(sid) = session_id(&request) {
            let _ = session.set(sid.to_owned());
        }
        request.extensions_mut().insert(ConnectInfo(info.clone()));
        request.map(axum::body::Body::new)
    });
    let service = TowerToHyperService::new(service);
    let serving = async {
        match tls {
            None => serve_http(conn, service, admission.handshake_timeout, &stop).await,
            Some(acceptor) => match acceptor.accept(conn).await {
                Ok(stream) => serve_http(stream, service, admission.handshake_timeout, &stop).await,
                Err(e) => debug!(%peer, error = %e, "TLS handshake failed"),
            },
        }
    };
    // Whatever it is doing then (silent, in a TLS handshake, upgraded but not authenticated),
    // a connection still unproven at the deadline is cut.
    let unproven = || {
        if proof.is_pending() && upgraded_session.get().is_some_and(|sid| authenticated(sid)) {
            proof.prove();
        }
        proof.is_pending()
    };
    let cut_unproven = || {
        if unproven() {
            debug!(%peer, "unproven at the handshake timeout; cut");
            cut.cancel();
        }
    };
    let served = {
        let watchdog = tokio::time::sleep_until(deadline);
        tokio::pin!(serving, watchdog);
        tokio::select! {
            () = &mut serving => true,
            () = &mut watchdog => {
                cut_unproven();
                serving.await;
                false
            }
        }
        // The HTTP side of the connection (its buffers) is dropped here, before any wait.
    };
    if served && unproven() {
        // Upgraded (or closed) without proving itself yet: it has until the deadline, or
        // until the edge stops. Most prove themselves a moment later (the socket's CONNECT).
        tokio::select! {
            () = proof.proven.cancelled() => {}
            () = tokio::time::sleep_until(deadline) => cut_unproven(),
            () = stop.cancelled() => cut_unproven(),
        }
    }
}

/// HTTP on one connection until it closes, is upgraded, or `stop` (then gracefully).
async fn serve_http<I, S>(io: I, service: S, head_timeout: Duration, stop: &CancellationToken)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: hyper::service::Service<hyper::Request<Incoming>, Response = axum::response::Response>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut builder = Builder::new(TokioExecutor::new());
    // The timer also starts while a kept-alive connection waits for its next request: an idle
    // connection is closed at the same limit.
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(head_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .enable_connect_protocol();
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
    tokio::pin!(conn);
    tokio::select! {
        served = conn.as_mut() => {
            if let Err(e) = served {
                debug!(error = %e, "connection ended with an error");
            }
            return;
        }
        () = stop.cancelled() => conn.as_mut().graceful_shutdown(),
    }
    let _ = conn.await;
}

/// Gives `request` a URI and header values that own their bytes (one small buffer for them
/// all) instead of slices of hyper's 8 KB read buffer.
///
/// Why: Engine.IO keeps a socket's request parts for the socket's life (and axum a copy of
/// the URI in `OriginalUri`, made before the Socket.IO layer sees the request), so a single
/// slice of the head keeps the whole read buffer of an upgraded connection alive: 8 KB per
/// idle visitor for a head of a few hundred bytes.
fn own_head<B>(request: &mut axum::http::Request<B>) {
    let uri = request.uri();
    let uri_text = uri.to_string();
    let values: usize = request.headers().values().map(|v| v.len()).sum();
    let mut bytes = BytesMut::with_capacity(uri_text.len() + values);
    bytes.extend_from_slice(uri_text.as_bytes());
    for value in request.headers().values() {
        bytes.extend_from_slice(value.as_bytes());
    }
    let bytes = bytes.freeze();
    let mut at = uri_text.len();
    // Both came out of a parsed URI and a parsed head, so they parse again; if one somehow
    // did not, the original (sharing hyper's buffer) is kept, which is only bigger.
    if let Ok(owned) = Uri::from_maybe_shared(bytes.slice(..at)) {
        *request.uri_mut() = owned;
    }
    for value in request.headers_mut().values_mut() {
        let piece = bytes.slice(at..at + value.len());
        at += value.len();
        if let Ok(owned) = HeaderValue::from_maybe_shared(piece) {
            let sensitive = value.is_sensitive();
            *value = owned;
            value.set_sensitive(sensitive);
        }
    }
}

fn is_upgrade(request: &Request<Incoming>) -> bool {
    request.headers().contains_key(header::UPGRADE) || request.method() == Method::CONNECT
}

/// The Engine.IO session a request names (`?sid=`).
fn session_id(request: &Request<Incoming>) -> Option<&str> {
    request
        .uri()
        .query()?
        .split('&')
        .find_map(|pair| pair.strip_prefix("sid="))
}

/// The per-address counts.
struct Gate {
    admission: Admission,
    proxies: Arc<TrustedProxies>,
    counts: Mutex<HashMap<IpAddr, Counts>>,
    /// Connections refused, for the log (one line per power of two).
    refused: AtomicU64,
}

#[derive(Default)]
struct Counts {
    open: u32,
    unproven: u32,
}

impl Gate {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, Counts>> {
        self.counts.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts a new connection from `ip` (open and unproven), or `None` when the address has
    /// too many already.
    fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<Ticket> {
        let ip = ip.to_canonical();
        if self.proxies.trusts(ip) {
            return Some(Ticket {
                proof: Proof::proven(),
            });
        }
        {
            let mut counts = self.lock();
            let count = counts.entry(ip).or_default();
            let a = &self.admission;
            if count.open >= a.per_ip || count.unproven >= a.unproven_per_ip {
                let (open, unproven) = (count.open, count.unproven);
                if count.open == 0 {
                    counts.remove(&ip);
                }
                drop(counts);
                let refused = self.refused.fetch_add(1, Ordering::Relaxed) + 1;
                if refused.is_power_of_two() {
                    warn!(%ip, open, unproven, refused_so_far = refused,
                          "connection refused: too many from this address");
                }
                return None;
            }
            count.open += 1;
            count.unproven += 1;
        }
        Some(Ticket {
            proof: Proof {
                pending: Arc::new(AtomicBool::new(true)),
                proven: CancellationToken::new(),
                gate: Some((self.clone(), ip)),
            },
        })
    }

    fn release(&self, ip: IpAddr, open: bool) {
        let mut counts = self.lock();
        if let Some(count) = counts.get_mut(&ip) {
            if open {
                count.open = count.open.saturating_sub(1);
            } else {
                count.unproven = count.unproven.saturating_sub(1);
            }
            if count.open == 0 {
                counts.remove(&ip);
            }
        }
    }
}

/// A connection's place in its address's counts (those of its [`Proof`]: none for a trusted
/// proxy), given back when the connection ends.
struct Ticket {
    proof: Proof,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.proof.prove();
        if let Some((gate, ip)) = &self.proof.gate {
            gate.release(*ip, true);
        }
    }
}

/// Whether a connection has proven itself (see the module docs); shared by the connection and
/// the requests on it.
#[derive(Clone, Debug)]
pub struct Proof {
    pending: Arc<AtomicBool>,
    /// Cancelled once proven: the connection's task stops waiting for the deadline.
    proven: CancellationToken,
    /// The counts the connection is in (`None`: a trusted proxy, counted nowhere).
    gate: Option<(Arc<Gate>, IpAddr)>,
}

impl std::fmt::Debug for Gate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gate").finish_non_exhaustive()
    }
}

impl Proof {
    fn proven() -> Self {
        let proven = CancellationToken::new();
        proven.cancel();
        Self {
            pending: Arc::new(AtomicBool::new(false)),
            proven,
            gate: None,
        }
    }

    /// The connection has shown it is a client: it no longer counts as unproven.
    pub fn prove(&self) {
        if self.pending.swap(false, Ordering::SeqCst)
            && let Some((gate, ip)) = &self.gate
        {
            gate.release(*ip, false);
        }
        self.proven.cancel();
    }

    fn is_pending(&self) -> bool {
        self.pending.load(Ordering::SeqCst)
    }
}

/// How long a closed connection keeps reading what its client still sends (see [`linger`]).
const LINGER: Duration = Duration::from_secs(2);

/// One accepted connection; reads and writes fail once it is cut. Dropped, it closes
/// lingering (see [`linger`]) unless it was cut.
struct Conn {
    /// `None` only once handed to [`linger`] on drop.
    tcp: Option<TcpStream>,
    cut: CancellationToken,
    cutting: Pin<Box<WaitForCancellationFutureOwned>>,
    ticket: Ticket,
    /// Counts the connection as open until it is dropped, or has lingered (the listener's
    /// shutdown waits).
    open: Option<TaskTrackerToken>,
    /// And in `socketgram_web_connections`.
    _gauge: crate::metrics::OpenConnection,
}

impl Conn {
    fn new(tcp: TcpStream, ticket: Ticket, open: TaskTrackerToken) -> Self {
        let cut = CancellationToken::new();
        Self {
            tcp: Some(tcp),
            cutting: Box::pin(cut.clone().cancelled_owned()),
            cut,
            ticket,
            open: Some(open),
            _gauge: crate::metrics::OpenConnection::new(),
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

    fn tcp(&mut self) -> Pin<&mut TcpStream> {
        Pin::new(self.tcp.as_mut().expect("taken only on drop"))
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        let (Some(tcp), Some(open)) = (self.tcp.take(), self.open.take()) else {
            return;
        };
        // A cut connection is dropped on purpose, unread input and all.
        if self.cut.is_cancelled() {
            return;
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(linger(tcp, open));
        }
    }
}

/// Closes `tcp` without losing what was written to it: the write side is shut (the client
/// reads everything, then end of stream), and what the client still sends is read and
/// dropped until it closes too, for at most [`LINGER`].
///
/// Why: closing a socket whose input has not all been read makes the kernel answer with a
/// reset, which throws away what is still in the send buffer. That is exactly the state of
/// a socket closed on SIGTERM while its client is still sending: the answers to the events
/// the edge accepted were written, but some of them would never arrive. `open` keeps the
/// listener's shutdown waiting until then.
async fn linger(mut tcp: TcpStream, open: TaskTrackerToken) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let _ = tokio::time::timeout(LINGER, async {
        if tcp.shutdown().await.is_err() {
            return;
        }
        let mut sink = [0u8; 4096];
        while matches!(tcp.read(&mut sink).await, Ok(n) if n > 0) {}
    })
    .await;
    drop(open);
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
        self.tcp().poll_read(cx, buf)
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
        self.tcp().poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Some(e) = self.poll_cut(cx) {
            return Poll::Ready(Err(e));
        }
        self.tcp().poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.tcp().poll_shutdown(cx)
    }
}

/// What a request knows of its connection (as `ConnectInfo<ConnInfo>`).
#[derive(Clone, Debug)]
pub struct ConnInfo {
    /// The TCP peer (a proxy, when one is in front).
    pub peer: SocketAddr,
    /// Ends the connection.
    pub cut: CancellationToken,
    /// Marks the connection as a proven client (an authenticated socket on it).
    pub proof: Proof,
    /// Whether it is TLS here (a proxy in front may also have been reached over TLS).
    pub tls: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What hyper hands over: URI and values slicing one read buffer. After `own_head` the
    /// request is the same, and holds no byte of that buffer.
    #[test]
    fn the_head_owns_its_bytes_and_is_unchanged() {
        let head = bytes::Bytes::from(
            b"/socket.io/?EIO=4&transport=websocket&id=7|example.org|secret-ish|x".to_vec(),
        );
        let piece = |from: usize, to: usize| head.slice(from..to);
        let mut request = axum::http::Request::builder()
            .uri(Uri::from_maybe_shared(piece(0, 37)).unwrap())
            .body(())
            .unwrap();
        let host = HeaderValue::from_maybe_shared(piece(43, 54)).unwrap();
        let mut token = HeaderValue::from_maybe_shared(piece(55, 65)).unwrap();
        token.set_sensitive(true);
        let headers = request.headers_mut();
        headers.insert(header::HOST, host);
        headers.append("x-token", token);
        headers.append(
            "x-token",
            HeaderValue::from_maybe_shared(piece(66, 67)).unwrap(),
        );
        own_head(&mut request);

        assert_eq!(request.uri(), "/socket.io/?EIO=4&transport=websocket");
        assert_eq!(request.uri().query(), Some("EIO=4&transport=websocket"));
        assert_eq!(request.headers()[header::HOST], "example.org");
        let tokens: Vec<_> = request.headers().get_all("x-token").iter().collect();
        assert_eq!(tokens, ["secret-ish", "x"]);
        assert!(tokens[0].is_sensitive(), "sensitivity is kept");
        assert!(!tokens[1].is_sensitive());
        assert!(
            head.is_unique(),
            "nothing of the request still points into the read buffer"
        );

        // An absolute-form URI (a proxy's, or HTTP/2's) comes through whole.
        let mut request = axum::http::Request::builder()
            .uri("http://example.org:3000/socket.io/?EIO=4")
            .body(())
            .unwrap();
        own_head(&mut request);
        assert_eq!(request.uri(), "http://example.org:3000/socket.io/?EIO=4");
    }

    fn gate(proxies: &[&str]) -> Arc<Gate> {
        Arc::new(Gate {
            admission: Admission {
                per_ip: 3,
                unproven_per_ip: 2,
                handshake_timeout: Duration::from_secs(1),
            },
            proxies: Arc::new(TrustedProxies::parse(proxies).unwrap()),
            counts: Mutex::default(),
            refused: AtomicU64::new(0),
        })
    }

    #[test]
    fn unproven_and_open_connections_are_capped_per_address() {
        let gate = gate(&[]);
        let ip = IpAddr::from([10, 0, 0, 1]);
        let (a, b) = (gate.admit(ip).unwrap(), gate.admit(ip).unwrap());
        assert!(gate.admit(ip).is_none(), "two unproven at most");
        a.proof.prove();
        a.proof.prove();
        let c = gate.admit(ip).expect("room once one proved itself");
        c.proof.prove();
        assert!(gate.admit(ip).is_none(), "three open at most");
        assert!(
            gate.admit(IpAddr::from([10, 0, 0, 2])).is_some(),
            "per address"
        );
        drop((a, b, c));
        assert!(
            gate.lock().get(&ip).is_none(),
            "forgotten when all are gone"
        );
    }

    #[test]
    fn trusted_proxies_are_not_counted() {
        let gate = gate(&["10.0.0.0/8"]);
        let proxy = IpAddr::from([10, 1, 2, 3]);
        let tickets: Vec<_> = (0..10).map(|_| gate.admit(proxy).unwrap()).collect();
        assert!(tickets.iter().all(|t| !t.proof.is_pending()));
        assert!(gate.lock().is_empty());
    }
}
