//! The Socket.IO side: who connects (the handshake, checked before anything else happens),
//! the event table and its per-socket order. Wire names and payload shapes come from
//! `admin-php-compat`; the handlers for each role are in [`visitor`] and [`admin`].

mod admin;
mod visitor;
mod workflow;

use std::{
    net::IpAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering},
    },
    time::Duration,
};

use axum::extract::ConnectInfo;
use serde_json::Value;
use socketgram_admin_php_compat::{
    events::incoming,
    handshake::{self, Credentials, HandshakeError, Identity},
    workflow::incoming as support,
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

pub use crate::answer::{Answer, Refusal, Reply};
pub(crate) use crate::peer::{ConsoleSession, Peer, cut_off, shown_from};
use crate::{
    Edge,
    conn::ConnInfo,
    core_link::SendResult,
    log::{clip, log_id},
    peer::Order,
};

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
    /// in the queue, so a flood never piles up waiting handlers. `typing` has a budget of
    /// its own, so keystrokes never use up the one of messages.
    fn take_for_event(extensions: &Extensions, typing: bool) -> Result<Self, NoPeer> {
        let peer = extensions.get::<Arc<Peer>>().ok_or(NoPeer)?;
        let allowed = if typing {
            peer.typing_limiter.check().is_ok()
        } else {
            peer.limits.allow_event(&peer.limiter, peer.ip)
        };
        if !allowed {
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
        value: &mut RawValue,
        ack: &Option<i64>,
    ) -> Result<Self, NoPeer> {
        // The event's name, as the `Event` extractor reads it (without consuming it).
        let typing = Event::from_message_parts(s, value, ack)
            .is_ok_and(|Event(name)| name == incoming::TYPING || name == incoming::TYPING_ADMIN);
        Self::take_for_event(&s.extensions, typing)
    }
}

impl<A: Adapter> FromDisconnectParts<A> for Turn {
    type Error = NoPeer;
    fn from_disconnect_parts(s: &Arc<Socket<A>>, _: DisconnectReason) -> Result<Self, NoPeer> {
        Self::take(&s.extensions)
    }
}

/// A console socket lasts as long as its session: cut off when the session runs out (the
/// page's reconnect is then refused as expired, and it shows the sign-in).
fn end_at_expiry(s: &SocketRef, expires_at_ms: i64, gone: CancellationToken) {
    let left_ms = expires_at_ms.saturating_sub(chrono::Utc::now().timestamp_millis());
    let left = Duration::from_millis(u64::try_from(left_ms).unwrap_or(0));
    let s = s.clone();
    tokio::spawn(async move {
        tokio::select! {
            () = tokio::time::sleep(left) => cut_off(&s, "its console session expired"),
            () = gone.cancelled() => {}
        }
    });
}

/// Cuts off the console sockets at this edge of a session that ended (`session`), or of
/// every session of `admin` (`None`: signed out everywhere).
pub(crate) fn end_console_sessions(io: &SocketIo, admin: &str, session: Option<&str>) {
    for s in io.sockets() {
        let Some(peer) = s.extensions.get::<Arc<Peer>>() else {
            continue;
        };
        let Some(ConsoleSession { key, .. }) = &peer.console_session else {
            continue;
        };
        let admin_matches =
            matches!(&peer.identity, Identity::Admin { admin_id: Some(a), .. } if a == admin);
        if admin_matches && session.is_none_or(|only| only == key) {
            cut_off(&s, "its console session ended");
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
    #[error(transparent)]
    Console(#[from] crate::console::SocketRefusal),
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
    let auth = auth.ok();
    // The operator console's socket: a token admin known by the session cookie (asked for
    // explicitly, so a page on the chat's own origin is never taken for an admin by accident).
    let console = auth.as_ref().and_then(|a| a.get("console")) == Some(&Value::Bool(true));
    let (identity, console_session) = if console {
        match crate::console::socket_admin(&edge, s.req_parts()).await {
            Ok(admin) => {
                let gone = CancellationToken::new();
                end_at_expiry(&s, admin.expires_at_ms, gone.clone());
                (
                    Identity::Admin {
                        admin_id: Some(admin.admin_id),
                        legacy: false,
                    },
                    Some(ConsoleSession {
                        key: admin.session,
                        gone,
                    }),
                )
            }
            Err(e) => {
                warn!(%ip, reason = %e, "console handshake refused");
                return Err(e.into());
            }
        }
    } else {
        let credentials = Credentials::from_handshake(s.req_parts().uri.query(), auth.as_ref());
        match handshake::identify(&credentials, &edge.legacy, &edge.signer) {
            Ok(identity) => (identity, None),
            Err(e) => {
                warn!(%ip, reason = %e, "handshake refused");
                return Err(e.into());
            }
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
        typing_limiter: edge.limiter.typing_for_socket(),
        limits: edge.limiter.clone(),
        refused_in_a_row: AtomicU32::new(0),
        order: Order::default(),
        console_session,
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
    if let Identity::Admin { admin_id, .. } = &peer.identity {
        edge.fanout().join_admin(s.clone(), peer.flavor());
        // A token admin is someone: online for auto-assignment while connected. The legacy
        // shared parameter names nobody.
        if let Some(admin) = admin_id {
            edge.link.admin_presence(admin, true);
        }
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
    crate::metrics::received(&event);
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
        (incoming::MARK_READ, false) => visitor::mark_read(&s, &edge, &peer, &data).await,
        (incoming::TYPING, false) => visitor::typing(&s, &edge, &peer, &data),
        (incoming::UPLOAD, false) => visitor::upload(&s, &edge, &peer, &data).await,
        (incoming::TELEGRAM_LINK, false) => visitor::telegram_link(&s, &edge, &peer, &data).await,
        (incoming::UPLOAD_ADMIN, true) => admin::upload(&edge, &peer, &data).await,
        (incoming::TYPING_ADMIN, true) => admin::typing(&edge, &peer, &data),
        (incoming::SUBSCRIBE_ADMIN, true) => admin::subscribe(&peer, &data),
        (incoming::NEW_MESSAGE_ADMIN, true) => {
            admin::new_message(&s, &edge, &peer, turn, &data).await
        }
        (incoming::UPDATE_ADMIN_LIST, true) => admin::update_list(&edge).await,
        (support::CONVERSATION, true) => workflow::conversation(&edge, &data).await,
        (support::ASSIGN, true) => workflow::assign(&edge, &peer, &data).await,
        (support::STATUS, true) => workflow::status(&edge, &peer, &data).await,
        (support::NOTE, true) => workflow::note(&edge, &peer, &data).await,
        (support::CANNED_REPLIES, true) => workflow::canned_replies(&edge, &data).await,
        (support::INBOX, true) => workflow::inbox_page(&edge, &peer, &data).await,
        (support::SEARCH, true) => workflow::search(&edge, &data).await,
        (support::HISTORY, true) => workflow::history(&edge, &data).await,
        (support::READ, true) => workflow::read(&edge, &data).await,
        (support::NOTES, true) => workflow::notes(&edge, &data).await,
        (support::ONLINE, true) => workflow::online(&edge).await,
        (
            incoming::SUBSCRIBE_ADMIN
            | incoming::NEW_MESSAGE_ADMIN
            | incoming::UPDATE_ADMIN_LIST
            | incoming::TYPING_ADMIN
            | incoming::UPLOAD_ADMIN
            | support::CONVERSATION
            | support::ASSIGN
            | support::STATUS
            | support::NOTE
            | support::CANNED_REPLIES
            | support::INBOX
            | support::SEARCH
            | support::HISTORY
            | support::READ
            | support::NOTES
            | support::ONLINE,
            false,
        ) => {
            // LEGACY.md §9.2: the legacy server took these from anyone.
            warn!(conn = %log_id(&s.id), ip = %peer.ip, event = %clip(&event), "admin-only event from a visitor socket refused");
            Err(Refusal::Forbidden(
                "this event is for support staff only".into(),
            ))
        }
        (
            incoming::SUBSCRIBE
            | incoming::NEW_MESSAGE
            | incoming::TAKE_HISTORY
            | incoming::MARK_READ
            | incoming::TYPING
            | incoming::UPLOAD
            | incoming::TELEGRAM_LINK,
            true,
        ) => Err(Refusal::Forbidden(
            "this event is for visitors; admins use the :servadm events".into(),
        )),
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
    if let Some(session) = &peer.console_session {
        session.gone.cancel();
    }
    edge.limiter.close(peer.ip);
    match &peer.identity {
        Identity::Visitor { cid, .. } if peer.subscribed.load(Ordering::SeqCst) => {
            edge.fanout().release_id(*cid);
            edge.link.presence(*cid, false);
        }
        Identity::Admin {
            admin_id: Some(admin),
            ..
        } => edge.link.admin_presence(admin, false),
        Identity::Visitor { .. } | Identity::Admin { .. } => {}
    }
}

/// Events refused in a row (over the rate limits) after which a socket is cut off: a client
/// that ignores "slow down" this long is flooding.
const FLOOD_CUT: u32 = 200;

/// How socketioxide 0.18's parser says an event came with no argument.
const NO_ARGUMENT: &str = "first element not found";

/// Where one file's bytes may be sent for `conversation` (`upload`, `upload:servadm`), with
/// the core's limits, so a page can refuse a file before sending it.
async fn upload_ticket(
    edge: &Edge,
    conversation: u64,
    uploader: &crate::files::Uploader,
    name: &str,
    size: u64,
) -> Result<socketgram_admin_php_compat::events::UploadTicketPayload, Refusal> {
    let info = edge
        .link
        .client()
        .chat
        .clone()
        .get_info(pb::GetInfoRequest {})
        .await?
        .into_inner();
    edge.files
        .ticket_payload(&info, conversation, uploader, name, size)
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
