//! What the edge knows about one socket (its [`Peer`], fixed at the handshake and kept in the
//! socket's extensions), and what the delivery may do to one: cut it off, or note how far back
//! it has been shown history. Used by the event handlers (`socket`) and the live delivery
//! (`fanout`) alike.

use std::{
    collections::{HashMap, HashSet},
    net::IpAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering},
    },
};

use governor::DefaultDirectRateLimiter;
use socketgram_admin_php_compat::handshake::Identity;
use socketioxide::extract::SocketRef;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::{limits::Limiter, log::log_id, wire::Flavor};

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
    pub(crate) cut: Option<CancellationToken>,
    pub limiter: DefaultDirectRateLimiter,
    /// The socket's budget of `typing` events, apart from `limiter`'s.
    pub typing_limiter: DefaultDirectRateLimiter,
    /// The per-address limits shared by every socket (checked with `limiter`).
    pub(crate) limits: Arc<Limiter>,
    /// Events refused by the rate limits since the last one let through.
    pub(crate) refused_in_a_row: AtomicU32,
    /// Puts the socket's events (and its disconnect) back in arrival order.
    pub(crate) order: Order,
    /// The session of a console socket.
    pub(crate) console_session: Option<ConsoleSession>,
}

/// The session a console socket was opened with.
pub(crate) struct ConsoleSession {
    /// `console::session_key` of its token.
    pub(crate) key: String,
    /// Cancelled when the socket goes: its expiry timer stops.
    pub(crate) gone: CancellationToken,
}

/// socketioxide runs every handler in a task of its own, so two events of one socket (or an
/// event and the disconnect) could be handled in any order: messages stored out of order, or
/// a tab that closed while subscribing left online forever. Extractors still run in arrival
/// order, so `socket::Turn` takes a ticket there and the handler waits until it is served. Handing
/// the turn on wakes exactly the next ticket's handler (waking every waiter would cost the
/// square of a burst).
#[derive(Default)]
pub(crate) struct Order {
    pub(crate) next_ticket: AtomicU64,
    queue: std::sync::Mutex<Queue>,
}

#[derive(Default)]
pub(crate) struct Queue {
    pub(crate) serving: u64,
    /// Handlers waiting for their ticket.
    pub(crate) waiting: HashMap<u64, oneshot::Sender<()>>,
    /// Tickets whose turn was dropped before it came (a handler that never ran): skipped.
    pub(crate) abandoned: HashSet<u64>,
}

impl Order {
    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
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
        // A polling client has no connection of its own to cut (and one that upgraded from
        // polling, not the one that was); socketioxide refuses to close it while its queue
        // is full.
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
