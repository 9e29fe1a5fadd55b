//! The Socket.IO side: who connects (the handshake, checked before anything else happens),
//! the event table, limits, and refusals. Wire names and payload shapes come from
//! `admin-php-compat`; the handlers for each role are in [`visitor`] and [`admin`].

mod admin;
pub mod limits;
mod visitor;

use std::{
    collections::{HashMap, HashSet},
    net::IpAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering},
    },
};

use axum::extract::ConnectInfo;
use governor::DefaultDirectRateLimiter;
use serde_json::Value;
use socketgram_admin_php_compat::{
    events::incoming,
    handshake::{self, Credentials, HandshakeError, Identity},
};
use socketgram_proto::v1 as pb;
use socketioxide::{
    SocketIo,
    adapter::Adapter,
    extensions::Extensions,
    extract::{Event, Extension, SocketRef, State, TryData},
    handler::{ConnectHandler, FromDisconnectParts, FromMessageParts, Value as RawValue},
    socket::{DisconnectReason, Socket},
};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use self::limits::Limiter;
pub use crate::answer::{Answer, Refusal, Reply};
use crate::{Edge, conn::ConnInfo, core_link::SendResult, wire::Flavor};

/// What the edge knows about one socket, fixed at the handshake.
pub struct Peer {
    pub identity: Identity,
    pub ip: IpAddr,
    /// A visitor socket that sent `subscribe` (counted online, in its conversation's task).
    pub subscribed: AtomicBool,
    /// The oldest message id this socket has been shown (`u64::MAX`: none). The legacy page
    /// asks for older history without saying what it has (LEGACY.md §3, `take history`).
    pub oldest_shown: AtomicU64,
    /// Cuts the TCP connection of the handshake (for a WebSocket, the socket's own).
    cut: Option<CancellationToken>,
    pub limiter: DefaultDirectRateLimiter,
    /// The per-address limits shared by every socket (checked with `limiter`).
    limits: Arc<Limiter>,
    /// Events refused by the rate limits since the last one let through.
    refused_in_a_row: AtomicU32,
    /// Puts the socket's events (and its disconnect) back in arrival order.
    order: Order,
}

/// socketioxide runs every handler in a task of its own, so two events of one socket (or an
/// event and the disconnect) could be handled in any order: messages stored out of order, or
/// a tab that closed while subscribing left online forever. Extractors still run in arrival
/// order, so [`Turn`] takes a ticket there and the handler waits until it is served. Handing
/// the turn on wakes exactly the next ticket's handler (waking every waiter would cost the
/// square of a burst).
#[derive(Default)]
struct Order {
    next_ticket: AtomicU64,
    queue: std::sync::Mutex<Queue>,
}

#[derive(Default)]
struct Queue {
    serving: u64,
    /// Handlers waiting for their ticket.
    waiting: HashMap<u64, oneshot::Sender<()>>,
    /// Tickets whose turn was dropped before it came (a handler that never ran): skipped.
    abandoned: HashSet<u64>,
}

impl Order {
    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A place in its socket's queue of events; the turn passes on when this is dropped. An
/// event the rate limiter refused has none: it is answered at once and waits for nothing.
pub struct Turn {
    peer: Arc<Peer>,
    ticket: Option<u64>,
}

impl Turn {
    fn take(extensions: &Extensions) -> Result<Self, NoPeer> {
        let peer = extensions.get::<Arc<Peer>>().ok_or(NoPeer)?;
        Ok(Self::queued(peer))
    }

    /// [`Turn::take`] for an event, after the rate limits: refused before it costs a place
    /// in the queue, so a flood never piles up waiting handlers.
    fn take_for_event(extensions: &Extensions) -> Result<Self, NoPeer> {
        let peer = extensions.get::<Arc<Peer>>().ok_or(NoPeer)?;
        if !peer.limits.allow_event(&peer.limiter, peer.ip) {
            return Ok(Self { peer, ticket: None });
        }
        Ok(Self::queued(peer))
    }

    /// The next place in the socket's queue.
    fn queued(peer: Arc<Peer>) -> Self {
        let ticket = Some(peer.order.next_ticket.fetch_add(1, Ordering::SeqCst));
        Self { peer, ticket }
    }

    /// Whether the rate limiter refused this event.
    fn refused(&self) -> bool {
        self.ticket.is_none()
    }

    /// Waits until every earlier event of the socket has been handled.
    async fn wait(&self) {
        let Some(ticket) = self.ticket else { return };
        let served = {
            let mut queue = self.peer.order.lock();
            if queue.serving == ticket {
                return;
            }
            let (tx, rx) = oneshot::channel();
            queue.waiting.insert(ticket, tx);
            rx
        };
        let _ = served.await;
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        let Some(ticket) = self.ticket else { return };
        let mut queue = self.peer.order.lock();
        if queue.serving != ticket {
            // Dropped before its turn: skipped when the queue gets there, never earlier.
            queue.waiting.remove(&ticket);
            queue.abandoned.insert(ticket);
            return;
        }
        queue.serving += 1;
        loop {
            let next = queue.serving;
            if queue.abandoned.remove(&next) {
                queue.serving += 1;
                continue;
            }
            if let Some(waiter) = queue.waiting.remove(&next) {
                let _ = waiter.send(());
            }
            return;
        }
    }
}

/// The socket has no [`Peer`]: it never passed the handshake (cannot happen for registered
/// handlers, which are added by the handshake).
#[derive(Debug, thiserror::Error)]
#[error("socket without handshake state")]
pub struct NoPeer;

impl<A: Adapter> FromMessageParts<A> for Turn {
    type Error = NoPeer;
    fn from_message_parts(
        s: &Arc<Socket<A>>,
        _: &mut RawValue,
        _: &Option<i64>,
    ) -> Result<Self, NoPeer> {
        Self::take_for_event(&s.extensions)
    }
}

impl<A: Adapter> FromDisconnectParts<A> for Turn {
    type Error = NoPeer;
    fn from_disconnect_parts(s: &Arc<Socket<A>>, _: DisconnectReason) -> Result<Self, NoPeer> {
        Self::take(&s.extensions)
    }
}

impl Peer {
    pub fn flavor(&self) -> Flavor {
        let legacy = match &self.identity {
            Identity::Visitor { legacy, .. } | Identity::Admin { legacy, .. } => *legacy,
        };
        if legacy {
            Flavor::Legacy
        } else {
            Flavor::Plain
        }
    }
}

/// Registers the default namespace.
pub fn register(io: &SocketIo) {
    io.ns("/", on_connect.with(authenticate));
}

/// Why a connection was refused; the client gets it as `connect_error`.
#[derive(Debug, thiserror::Error)]
enum Refused {
    #[error("too many connections from your address")]
    TooManyConnections,
    #[error(transparent)]
    Handshake(#[from] HandshakeError),
}

/// The connection of the handshake request: the WebSocket upgrade or the first long-polling
/// request (which carries a proxy's headers like every polling request).
fn connection(s: &SocketRef) -> Option<ConnInfo> {
    s.req_parts()
        .extensions
        .get::<ConnectInfo<ConnInfo>>()
        .map(|ConnectInfo(conn)| conn.clone())
}

/// The handshake (LEGACY.md §2): runs before the socket is connected, so a refused client
/// never reaches an event handler.
async fn authenticate(
    s: SocketRef,
    State(edge): State<Arc<Edge>>,
    TryData(auth): TryData<Value>,
) -> Result<(), Refused> {
    let conn = connection(&s);
    let peer = conn
        .as_ref()
        .map_or(IpAddr::from([0, 0, 0, 0]), |c| c.peer.ip());
    let ip = edge.proxies.client_ip(peer, &s.req_parts().headers);
    let credentials = Credentials::from_handshake(s.req_parts().uri.query(), auth.ok().as_ref());
    let identity = match handshake::identify(&credentials, &edge.legacy, &edge.signer) {
        Ok(identity) => identity,
        Err(e) => {
            warn!(%ip, reason = %e, "handshake refused");
            return Err(e.into());
        }
    };
    if !edge.limiter.open(ip) {
        warn!(%ip, "handshake refused: too many connections");
        return Err(Refused::TooManyConnections);
    }
    if let Some(conn) = &conn {
        conn.proof.prove();
    }
    s.extensions.insert(Arc::new(Peer {
        identity,
        ip,
        subscribed: AtomicBool::new(false),
        oldest_shown: AtomicU64::new(u64::MAX),
        cut: conn.map(|c| c.cut),
        limiter: edge.limiter.for_socket(),
        limits: edge.limiter.clone(),
        refused_in_a_row: AtomicU32::new(0),
        order: Order::default(),
    }));
    // Handlers go on here, not in the connect handler: socketioxide sends the CONNECT packet
    // and only then spawns the connect handler, so a client that emits right after connecting
    // (the legacy page sends `subscribe` at once) would race it and its event would be lost.
    s.on_fallback(dispatch);
    s.on_disconnect(on_disconnect);
    Ok(())
}

async fn on_connect(
    s: SocketRef,
    State(edge): State<Arc<Edge>>,
    Extension(peer): Extension<Arc<Peer>>,
) {
    debug!(conn = %log_id(&s.id), identity = ?peer.identity, "connected");
    if let Identity::Admin { .. } = peer.identity {
        edge.fanout().join_admin(s.clone(), peer.flavor());
    }
}

/// The event table (LEGACY.md §3): every event of every socket comes here, and is answered
/// here once (the `subscribe` handler hands its reply to the conversation's task).
async fn dispatch(
    s: SocketRef,
    turn: Turn,
    Event(event): Event,
    TryData(data): TryData<Value>,
    ack: Reply,
    State(edge): State<Arc<Edge>>,
    Extension(peer): Extension<Arc<Peer>>,
) {
    if turn.refused() {
        // A socket that goes on flooding after being told to slow down is cut off.
        if peer.refused_in_a_row.fetch_add(1, Ordering::Relaxed) + 1 >= FLOOD_CUT {
            return cut_off(&s, "kept sending over its rate limit");
        }
        return ack.answer(&s, &event, Err(Refusal::RateLimited));
    }
    peer.refused_in_a_row.store(0, Ordering::Relaxed);
    let Some(_in_flight) = edge.drain.enter() else {
        let refusal = Refusal::Unavailable(
            "the server is shutting down and did not handle this (a message is not stored); \
             send it again after reconnecting"
                .into(),
        );
        return ack.answer(&s, &event, Err(refusal));
    };
    turn.wait().await;
    let data = match data {
        Ok(data) => data,
        // An event with no argument at all (`update admlist`): socketioxide's parser reports
        // it as this error; handlers see no payload.
        Err(e) if e.to_string().starts_with(NO_ARGUMENT) => Value::Null,
        // Unreadable JSON (a lone surrogate, 1e400, nesting past the parser's limit) or a
        // binary attachment: say what is wrong, do nothing.
        Err(e) => {
            let refusal = Refusal::Invalid(format!(
                "the payload cannot be read: {}",
                clip(&e.to_string())
            ));
            return ack.answer(&s, &event, Err(refusal));
        }
    };
    let is_admin = matches!(peer.identity, Identity::Admin { .. });
    let answer = match (event.as_str(), is_admin) {
        (incoming::SUBSCRIBE, false) => {
            return visitor::subscribe(&s, &edge, &peer, &data, ack).await;
        }
        (incoming::NEW_MESSAGE, false) => visitor::new_message(&s, &edge, &peer, turn, &data).await,
        (incoming::TAKE_HISTORY, false) => visitor::take_history(&s, &edge, &peer, &data).await,
        (incoming::SUBSCRIBE_ADMIN, true) => admin::subscribe(&peer, &data),
        (incoming::NEW_MESSAGE_ADMIN, true) => {
            admin::new_message(&s, &edge, &peer, turn, &data).await
        }
        (incoming::UPDATE_ADMIN_LIST, true) => admin::update_list(&edge).await,
        (
            incoming::SUBSCRIBE_ADMIN | incoming::NEW_MESSAGE_ADMIN | incoming::UPDATE_ADMIN_LIST,
            false,
        ) => {
            // LEGACY.md §9.2: the legacy server took these from anyone.
            warn!(conn = %log_id(&s.id), ip = %peer.ip, event = %clip(&event), "admin-only event from a visitor socket refused");
            Err(Refusal::Forbidden(
                "this event is for support staff only".into(),
            ))
        }
        (incoming::SUBSCRIBE | incoming::NEW_MESSAGE | incoming::TAKE_HISTORY, true) => Err(
            Refusal::Forbidden("this event is for visitors; admins use the :servadm events".into()),
        ),
        _ => Err(Refusal::UnknownEvent(clip(&event))),
    };
    ack.answer(&s, &event, answer);
}

async fn on_disconnect(
    s: SocketRef,
    turn: Turn,
    State(edge): State<Arc<Edge>>,
    Extension(peer): Extension<Arc<Peer>>,
) {
    // After every event the socket sent before it went.
    turn.wait().await;
    debug!(conn = %log_id(&s.id), "disconnected");
    edge.limiter.close(peer.ip);
    if let Identity::Visitor { cid, .. } = peer.identity
        && peer.subscribed.load(Ordering::SeqCst)
    {
        edge.fanout().release_id(cid);
        edge.link.presence(cid, false);
    }
}

/// Events refused in a row (over the rate limits) after which a socket is cut off: a client
/// that ignores "slow down" this long is flooding.
const FLOOD_CUT: u32 = 200;

/// How socketioxide 0.18's parser says an event came with no argument.
const NO_ARGUMENT: &str = "first element not found";

/// Longest event name (or parser error) repeated in a log line or an answer: a client's
/// megabyte-long event name must not come back as a megabyte, nor fill the log.
const CLIP: usize = 64;

/// `text` cut to [`CLIP`] characters, marked when cut.
pub(crate) fn clip(text: &str) -> String {
    match text.char_indices().nth(CLIP) {
        None => text.to_owned(),
        Some((end, _)) => format!("{}… ({} bytes)", &text[..end], text.len()),
    }
}

/// A socket's name in the log. The session id itself is a credential (a long-polling request
/// carrying it acts as that socket, from anywhere), so the log shows a keyed hash of it,
/// stable for the socket's life and the process's, useless to anyone reading the log.
pub(crate) fn log_id(sid: &socketioxide::socket::Sid) -> String {
    use std::hash::BuildHasher;
    static KEY: std::sync::OnceLock<std::hash::RandomState> = std::sync::OnceLock::new();
    format!(
        "{:016x}",
        KEY.get_or_init(std::hash::RandomState::new).hash_one(sid)
    )
}

/// Refusals are logged at most this often per second (a flood is refused thousands of times
/// a second); the next line logged says how many were left out.
const REFUSAL_LOG_PER_SECOND: u32 = 20;

/// The sampler of refusal log lines.
pub(crate) static REFUSALS: SampledLog = SampledLog::new();

/// At most [`REFUSAL_LOG_PER_SECOND`] lines per second, counting what it leaves out.
pub(crate) struct SampledLog {
    limiter: std::sync::OnceLock<governor::DefaultDirectRateLimiter>,
    suppressed: AtomicU64,
}

impl SampledLog {
    const fn new() -> Self {
        Self {
            limiter: std::sync::OnceLock::new(),
            suppressed: AtomicU64::new(0),
        }
    }

    /// Calls `line` with the count of lines left out since the last one, or counts this one.
    pub(crate) fn log(&self, line: impl FnOnce(u64)) {
        let limiter = self.limiter.get_or_init(|| {
            let rate = std::num::NonZeroU32::new(REFUSAL_LOG_PER_SECOND)
                .unwrap_or(std::num::NonZeroU32::MIN);
            governor::RateLimiter::direct(governor::Quota::per_second(rate))
        });
        if limiter.check().is_ok() {
            line(self.suppressed.swap(0, Ordering::Relaxed));
        } else {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Cuts off a socket that cannot take a message (its reader fell behind) or floods: it leaves every
/// room at once, so what it got is an unbroken prefix of what was sent, never a gap, and it
/// is closed for real, by its connection when the edge holds that (the client sees its
/// transport close and reconnects), else through socketioxide as soon as its queue has room.
pub(crate) fn cut_off(socket: &SocketRef, why: &str) {
    if !socket.connected() {
        return;
    }
    socket.leave_all();
    warn!(conn = %log_id(&socket.id), reason = why, "cutting the socket off");
    if let Some(peer) = socket.extensions.get::<Arc<Peer>>()
        && let Some(cut) = &peer.cut
    {
        cut.cancel();
    }
    let socket = socket.clone();
    tokio::spawn(async move {
        // A polling client, or one behind the TLS listener, has no connection of its own to
        // cut; socketioxide refuses to close it while its queue is full.
        for _ in 0..600 {
            match socket.clone().disconnect() {
                Err(socketioxide::SocketError::InternalChannelFull) if socket.connected() => {
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
                _ => return,
            }
        }
    });
}

/// Notes that `socket` has been shown history down to message `oldest`.
pub(crate) fn shown_from(socket: &SocketRef, oldest: u64) {
    if let Some(peer) = socket.extensions.get::<Arc<Peer>>() {
        peer.oldest_shown.fetch_min(oldest, Ordering::SeqCst);
    }
}

/// Sends a message through the core link and ends the socket's turn as soon as the message has
/// its place in the store order: the socket's next event need not wait for this one's commit.
async fn send_in_order(edge: &Edge, turn: Turn, request: pb::SendMessageRequest) -> SendResult {
    let sent = edge.link.send(request);
    drop(turn);
    sent.await
}

/// A send's answer: the stored message's id (`label`, as the legacy payloads name it).
fn sent(result: SendResult) -> Answer {
    let sent = result?;
    let message = sent
        .message
        .ok_or_else(|| Refusal::Internal("the core answered a send without its message".into()))?;
    debug!(
        message = message.id,
        conversation = message.conversation_id,
        "sent"
    );
    Ok(serde_json::json!({ "label": message.id }))
}

#[cfg(test)]
mod tests {
    use socketioxide::socket::Sid;

    use super::*;

    #[test]
    fn log_ids_name_a_socket_without_its_session_id() {
        let (a, b) = (Sid::new(), Sid::new());
        assert_eq!(log_id(&a), log_id(&a), "stable for one socket");
        assert_ne!(log_id(&a), log_id(&b));
        assert!(!log_id(&a).contains(a.as_str()) && !a.as_str().contains(&log_id(&a)));
    }

    #[test]
    fn clipped_text_is_short_and_says_so() {
        assert_eq!(clip("subscribe"), "subscribe");
        let long = "é".repeat(100_000);
        let clipped = clip(&long);
        assert!(clipped.chars().count() < CLIP + 20, "{clipped}");
        assert!(clipped.ends_with("(200000 bytes)"), "{clipped}");
    }
}
