//! Live events from the core to sockets, in order.
//!
//! One task per conversation that has visitor sockets here, and one for all admins. Each
//! task owns the order of what its sockets see: a socket that subscribes gets its history up
//! to the task's cursor and only then joins the Socket.IO room that live messages go to, so
//! no message is missed, shown twice, or shown before older ones (LEGACY.md §9.6, §9.8).
//! Legacy pages and Socketgram's widget sit in separate rooms: the legacy pages insert
//! `message` as HTML and get it escaped; the widget renders text and gets it plain.

use std::{
    collections::{BTreeSet, HashMap},
    sync::{Arc, Mutex},
    time::Duration,
};

use socketgram_admin_php_compat::events::{
    self, MessagePayload, NO_ARGS, PresencePayload, SUBSCRIBE_HISTORY, outgoing,
};
use socketgram_proto::v1::{self as pb, event::Kind, subscribe_request::Scope};
use socketioxide::{
    SendError, SocketError, SocketIo,
    extract::{AckSender, SocketRef},
};
use tokio::sync::mpsc;
use tracing::warn;

use crate::{
    core_link::{CoreLink, LinkEvent, Subscription},
    socket::{ok, refuse_with_ack},
};

/// How a socket wants message text.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Flavor {
    /// HTML-escaped: the legacy pages and the PHP admin insert it as HTML.
    Legacy,
    /// As typed: Socketgram's widget renders text.
    Plain,
}

impl Flavor {
    fn tag(self) -> &'static str {
        match self {
            Flavor::Legacy => "h",
            Flavor::Plain => "t",
        }
    }
}

/// The room of a conversation's visitor sockets of one flavor.
fn conversation_room(conversation: u64, flavor: Flavor) -> String {
    format!("c:{conversation}:{}", flavor.tag())
}

/// The room of admin sockets of one flavor.
fn admin_room(flavor: Flavor) -> String {
    format!("admins:{}", flavor.tag())
}

/// The legacy payload of a message for a flavor (LEGACY.md §4).
pub fn payload(m: &pb::Message, flavor: Flavor) -> MessagePayload {
    let to_support = m.direction == pb::Direction::ToSupport as i32;
    MessagePayload {
        username: m.conversation_id,
        message: match flavor {
            Flavor::Legacy => events::legacy_html(&m.text),
            Flavor::Plain => m.text.clone(),
        },
        date: m.local_date.clone(),
        adm: if to_support {
            "0".into()
        } else {
            m.admin_display_name.clone()
        },
        label: m.id,
    }
}

/// Emits one message to every socket of both flavors' rooms. A socket whose send buffer is
/// full is disconnected, never left silently without the message: it reconnects and resumes
/// from what it has (`subscribe` with `since`).
fn broadcast(io: &SocketIo, rooms: impl Fn(Flavor) -> String, m: &pb::Message) {
    for flavor in [Flavor::Legacy, Flavor::Plain] {
        let sockets = io.to(rooms(flavor)).sockets();
        if sockets.is_empty() {
            continue;
        }
        let payload = payload(m, flavor);
        for socket in sockets {
            match socket.emit(outgoing::NEW_MESSAGE, &payload) {
                Ok(()) => {}
                Err(SendError::Socket(SocketError::Closed)) => {}
                Err(e) => {
                    warn!(sid = %socket.id, error = %e, "cannot deliver a message; disconnecting the socket");
                    let _ = socket.disconnect();
                }
            }
        }
    }
}

enum Join {
    /// `ack` is answered once the history is sent and the socket is live.
    Visitor {
        socket: SocketRef,
        flavor: Flavor,
        since: Option<u64>,
        ack: Option<AckSender>,
    },
    Admin {
        socket: SocketRef,
        flavor: Flavor,
    },
}

struct Handle {
    tx: mpsc::UnboundedSender<Join>,
    members: usize,
}

/// The fan-out tasks.
pub struct Fanout {
    io: SocketIo,
    link: Arc<CoreLink>,
    conversations: Mutex<HashMap<u64, Handle>>,
    admins: mpsc::UnboundedSender<Join>,
}

impl Fanout {
    pub fn start(io: SocketIo, link: Arc<CoreLink>) -> Arc<Self> {
        let (admins, rx) = mpsc::unbounded_channel();
        tokio::spawn(admins_task(io.clone(), link.clone(), rx));
        Arc::new(Self {
            io,
            link,
            conversations: Mutex::default(),
            admins,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Handle>> {
        self.conversations.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A visitor socket subscribes: history (the last page, or everything after `since`),
    /// then live messages. Call [`Fanout::leave`] once when the socket goes.
    pub fn join_visitor(
        &self,
        conversation: u64,
        socket: SocketRef,
        flavor: Flavor,
        since: Option<u64>,
        ack: Option<AckSender>,
    ) {
        let mut map = self.lock();
        let handle = map.entry(conversation).or_insert_with(|| {
            let (tx, rx) = mpsc::unbounded_channel();
            tokio::spawn(conversation_task(
                conversation,
                self.io.clone(),
                self.link.clone(),
                rx,
            ));
            Handle { tx, members: 0 }
        });
        handle.members += 1;
        let _ = handle.tx.send(Join::Visitor {
            socket,
            flavor,
            since,
            ack,
        });
    }

    /// A visitor socket that joined has gone.
    pub fn leave(&self, conversation: u64) {
        let mut map = self.lock();
        if let Some(handle) = map.get_mut(&conversation) {
            handle.members -= 1;
            if handle.members == 0 {
                // Dropping the sender ends the task, which unsubscribes.
                map.remove(&conversation);
            }
        }
    }

    /// An admin socket: who is online now, then every message and presence change.
    pub fn join_admin(&self, socket: SocketRef, flavor: Flavor) {
        let _ = self.admins.send(Join::Admin { socket, flavor });
    }
}

/// Most messages a reconnecting socket catches up with one by one.
const CATCH_UP: u32 = 500;

/// Pause before subscribing again after the core ended a subscription.
const RESUBSCRIBE: Duration = Duration::from_millis(500);

async fn conversation_task(
    conversation: u64,
    io: SocketIo,
    link: Arc<CoreLink>,
    mut joins: mpsc::UnboundedReceiver<Join>,
) {
    let scope = Scope::ConversationId(conversation);
    let mut sub: Subscription = link.subscribe(scope, None);
    let mut cursor: Option<u64> = None;
    let mut waiting = Vec::new();
    loop {
        tokio::select! {
            join = joins.recv() => match join {
                Some(join) if cursor.is_some() => admit(&link, conversation, join, cursor.unwrap_or(0)).await,
                Some(join) => waiting.push(join),
                None => return,
            },
            event = sub.recv() => match event {
                Some(LinkEvent::Event(Kind::CaughtUp(c))) => {
                    let at = cursor.unwrap_or(0).max(c.last_message_id);
                    cursor = Some(at);
                    for join in waiting.drain(..) {
                        admit(&link, conversation, join, at).await;
                    }
                }
                Some(LinkEvent::Event(Kind::Message(m))) => {
                    if cursor.is_none_or(|c| m.id > c) {
                        cursor = Some(m.id);
                        broadcast(&io, |f| conversation_room(conversation, f), &m);
                    }
                }
                Some(LinkEvent::Event(_)) => {}
                Some(LinkEvent::Ended { code, message }) => {
                    warn!(conversation, code, %message, "conversation subscription ended; subscribing again");
                    tokio::time::sleep(RESUBSCRIBE).await;
                    sub = link.subscribe(scope, cursor);
                }
                None => return,
            },
        }
    }
}

/// Sends a joining visitor socket its history up to `cursor`, then puts it in the room.
async fn admit(link: &CoreLink, conversation: u64, join: Join, cursor: u64) {
    let Join::Visitor {
        socket,
        flavor,
        since,
        ack,
    } = join
    else {
        return;
    };
    let mut chat = link.client().chat;
    let request = |before_id, limit, after_id| pb::HistoryRequest {
        conversation_id: conversation,
        before_id,
        limit,
        after_id,
    };
    // A reconnecting widget gets everything after what it has, oldest first, when that fits
    // one page; otherwise (and for a first subscribe) the last page and the history button.
    let mut page = None;
    if let Some(since) = since.filter(|&s| s < cursor) {
        match chat.history(request(0, CATCH_UP, since)).await {
            Ok(p) if !p.get_ref().has_more => page = Some((p.into_inner().messages, false)),
            Ok(_) => {}
            Err(status) => {
                return refuse_with_ack(&socket, ack, events::incoming::SUBSCRIBE, &status);
            }
        }
    } else if since.is_some() {
        page = Some((Vec::new(), false));
    }
    let (messages, more) = match page {
        Some(page) => page,
        None => match chat
            .history(request(cursor.saturating_add(1), SUBSCRIBE_HISTORY, 0))
            .await
        {
            Ok(p) => {
                let p = p.into_inner();
                // Oldest first (LEGACY.md §3).
                (p.messages.into_iter().rev().collect(), p.has_more)
            }
            Err(status) => {
                return refuse_with_ack(&socket, ack, events::incoming::SUBSCRIBE, &status);
            }
        },
    };
    for m in messages.iter().filter(|m| m.id <= cursor) {
        if socket
            .emit(outgoing::NEW_MESSAGE, &payload(m, flavor))
            .is_err()
        {
            // A full or closed socket: better gone than silently missing a message; the
            // client reconnects and resumes from what it has.
            let _ = socket.disconnect();
            return;
        }
    }
    if more {
        let _ = socket.emit(outgoing::ADD_HISTORY_BUTTON, &NO_ARGS);
    }
    if !socket.connected() {
        return;
    }
    socket.join(conversation_room(conversation, flavor));
    if let Some(ack) = ack {
        ok(ack, serde_json::json!({ "conversation": conversation }));
    }
}

async fn admins_task(io: SocketIo, link: Arc<CoreLink>, mut joins: mpsc::UnboundedReceiver<Join>) {
    let scope = Scope::AllConversations(true);
    let mut sub = link.subscribe(scope, None);
    let mut cursor: Option<u64> = None;
    let mut online: BTreeSet<u64> = BTreeSet::new();
    let mut waiting = Vec::new();
    let presence = async |io: &SocketIo, conversation: u64, is_online: bool| {
        let event = if is_online {
            outgoing::ONLINE
        } else {
            outgoing::OFFLINE
        };
        let payload = PresencePayload {
            cid: conversation.to_string(),
        };
        for flavor in [Flavor::Legacy, Flavor::Plain] {
            let _ = io.to(admin_room(flavor)).emit(event, &payload).await;
        }
    };
    loop {
        tokio::select! {
            join = joins.recv() => match join {
                Some(join) if cursor.is_some() => admit_admin(join, &online),
                Some(join) => waiting.push(join),
                None => return,
            },
            event = sub.recv() => match event {
                Some(LinkEvent::Event(Kind::PresenceSnapshot(s))) => {
                    // After a reconnect the snapshot may differ from what admins were told.
                    let now: BTreeSet<u64> = s.online.into_iter().collect();
                    for &gone in online.difference(&now) {
                        presence(&io, gone, false).await;
                    }
                    for &came in now.difference(&online) {
                        presence(&io, came, true).await;
                    }
                    online = now;
                }
                Some(LinkEvent::Event(Kind::CaughtUp(c))) => {
                    cursor = Some(cursor.unwrap_or(0).max(c.last_message_id));
                    for join in waiting.drain(..) {
                        admit_admin(join, &online);
                    }
                }
                Some(LinkEvent::Event(Kind::Presence(p))) => {
                    let changed = if p.online { online.insert(p.conversation_id) } else { online.remove(&p.conversation_id) };
                    if changed {
                        presence(&io, p.conversation_id, p.online).await;
                    }
                }
                Some(LinkEvent::Event(Kind::Message(m))) => {
                    if cursor.is_none_or(|c| m.id > c) {
                        cursor = Some(m.id);
                        broadcast(&io, admin_room, &m);
                    }
                }
                Some(LinkEvent::Event(_)) => {}
                Some(LinkEvent::Ended { code, message }) => {
                    warn!(code, %message, "admin subscription ended; subscribing again");
                    tokio::time::sleep(RESUBSCRIBE).await;
                    sub = link.subscribe(scope, cursor);
                }
                None => return,
            },
        }
    }
}

/// Tells a new admin who is online (LEGACY.md §9.7), then puts it in the admins' room.
fn admit_admin(join: Join, online: &BTreeSet<u64>) {
    let Join::Admin { socket, flavor } = join else {
        return;
    };
    for &conversation in online {
        let _ = socket.emit(
            outgoing::ONLINE,
            &PresencePayload {
                cid: conversation.to_string(),
            },
        );
    }
    socket.join(admin_room(flavor));
}
