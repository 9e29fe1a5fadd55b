//! Live events from the core to sockets, in order.
//!
//! One task and one core subscription (all conversations, with presence) for every socket of
//! the edge: per-visitor subscriptions to the core would cost a task, channels and a stream
//! entry per socket on both sides. The task owns the order of what sockets see: a visitor
//! socket that subscribes gets its history up to the task's cursor, then the live messages of
//! its conversation that came meanwhile, and only then joins the Socket.IO room that live
//! messages go to, so no message is missed, shown twice, or shown before older ones
//! (LEGACY.md §9.6, §9.8).
//! Legacy pages and Socketgram's widget sit in separate rooms: the legacy pages insert
//! `message` as HTML and get it escaped; the widget renders text and gets it plain.

use std::{
    collections::{BTreeSet, HashMap},
    sync::{Arc, Mutex},
    time::Duration,
};

use socketgram_admin_php_compat::events::{
    self, NO_ARGS, PresencePayload, ReadPayload, SUBSCRIBE_HISTORY, TypingPayload, outgoing,
};
use socketgram_admin_php_compat::workflow::outgoing as support;
use socketgram_proto::v1::{self as pb, event::Kind, subscribe_request::Scope};
use socketioxide::{SendError, SocketError, SocketIo, extract::SocketRef, socket::Sid};
use tokio::sync::mpsc;
use tracing::warn;

use crate::{
    answer::{Reply, answer_with},
    core_link::{CoreLink, LinkEvent},
    files::FileLinks,
    telegram::TelegramBot,
    wire::{Flavor, admin_room, conversation_room, payload, support_payload, workflow as wire},
};

/// Emits one message to every socket of both flavors' rooms. A socket whose send buffer is
/// full is cut off (`peer::cut_off`: out of every room, its connection closed), never left
/// connected without the message: it reconnects and resumes from what it has.
fn broadcast(
    io: &SocketIo,
    rooms: impl Fn(Flavor) -> String,
    m: &pb::Message,
    to: Audience,
    files: &FileLinks,
) {
    let Some(root) = root(io) else { return };
    for flavor in [Flavor::Legacy, Flavor::Plain] {
        let sockets = root.clone().to(rooms(flavor)).sockets();
        if sockets.is_empty() {
            continue;
        }
        let payload = match to {
            Audience::Visitors => payload(m, flavor, files),
            Audience::Support => support_payload(m, flavor, files),
        };
        for socket in sockets {
            match socket.emit(outgoing::NEW_MESSAGE, &payload) {
                Ok(()) => crate::metrics::sent(outgoing::NEW_MESSAGE, 1),
                Err(SendError::Socket(SocketError::Closed)) => {}
                Err(e) => crate::peer::cut_off(&socket, &e.to_string()),
            }
        }
    }
}

/// Whom a broadcast goes to (support's payloads say more).
#[derive(Clone, Copy)]
enum Audience {
    Visitors,
    Support,
}

enum Join {
    /// `ack` is answered once the history is sent and the socket is live.
    Visitor {
        conversation: u64,
        socket: SocketRef,
        flavor: Flavor,
        since: Option<u64>,
        ack: Option<Reply>,
    },
    Admin {
        socket: SocketRef,
        flavor: Flavor,
    },
}

/// What the fan-out task is told.
enum Input {
    Join(Join),
    /// A joining visitor socket has had its history (or was refused: `ack` taken).
    Admitted {
        conversation: u64,
        socket: SocketRef,
        flavor: Flavor,
        ack: Option<Reply>,
        live: Option<Live>,
    },
}

/// The fan-out: one task and one core subscription (every conversation, with presence) for
/// all of this edge's sockets, however many visitors there are.
pub struct Fanout {
    input: mpsc::UnboundedSender<Input>,
    ids: Arc<HandshakeIds>,
}

/// The fan-out's task, made with its handle and started once the Socket.IO handle exists
/// (which needs the edge, which holds the handle): what joins meanwhile waits in its queue.
pub struct FanoutTask {
    link: Arc<CoreLink>,
    files: Arc<FileLinks>,
    telegram_bot: TelegramBot,
    input: mpsc::WeakUnboundedSender<Input>,
    rx: mpsc::UnboundedReceiver<Input>,
    ids: Arc<HandshakeIds>,
}

impl FanoutTask {
    /// Starts delivering to the sockets of `io`.
    pub fn start(self, io: SocketIo) {
        let state = State {
            io,
            link: self.link,
            files: self.files,
            telegram_bot: self.telegram_bot,
            input: self.input,
            ids: self.ids,
            cursor: None,
            online: BTreeSet::new(),
            waiting: Vec::new(),
            admitting: HashMap::new(),
        };
        tokio::spawn(run(state, self.rx));
    }
}

/// The ids visitors' handshakes gave (e.g. `"0123"`), which `online`/`offline` carry back to
/// admins as they were (LEGACY.md §4): per conversation, the text and how many subscribed
/// sockets of this edge hold it. An entry outlives its last socket until the `offline` that
/// follows has been sent with it.
#[derive(Default)]
struct HandshakeIds(Mutex<HashMap<u64, (String, usize)>>);

impl HandshakeIds {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, (String, usize)>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The id to show for a conversation: its visitor's handshake text, else the number.
    fn text(&self, conversation: u64, offline: bool) -> String {
        let mut ids = self.lock();
        let text = ids
            .get(&conversation)
            .map_or_else(|| conversation.to_string(), |(text, _)| text.clone());
        if offline && ids.get(&conversation).is_some_and(|(_, held)| *held == 0) {
            ids.remove(&conversation);
        }
        text
    }
}

impl Fanout {
    /// The handle, and the task to start with the Socket.IO handle.
    pub fn new(
        link: Arc<CoreLink>,
        files: Arc<FileLinks>,
        telegram_bot: TelegramBot,
    ) -> (Arc<Self>, FanoutTask) {
        // Unbounded: joins come from handlers that must not wait (their socket's turn is
        // held), at most one per accepted `subscribe`, which the rate limits bound; the task
        // never waits on a client (emits go to the sockets' own bounded queues).
        let (input, rx) = mpsc::unbounded_channel();
        let ids = Arc::new(HandshakeIds::default());
        let task = FanoutTask {
            link,
            files,
            telegram_bot,
            input: input.downgrade(),
            rx,
            ids: ids.clone(),
        };
        (Arc::new(Self { input, ids }), task)
    }

    /// A visitor socket is about to count as online: admins are told the id as `cid_text`.
    pub fn hold_id(&self, conversation: u64, cid_text: &str) {
        let mut ids = self.ids.lock();
        let entry = ids
            .entry(conversation)
            .or_insert_with(|| (cid_text.to_owned(), 0));
        if entry.1 == 0 {
            cid_text.clone_into(&mut entry.0);
        }
        entry.1 += 1;
    }

    /// A socket counted by [`Fanout::hold_id`] has gone.
    pub fn release_id(&self, conversation: u64) {
        if let Some((_, held)) = self.ids.lock().get_mut(&conversation) {
            *held = held.saturating_sub(1);
        }
    }

    /// The live sockets of a conversation's visitor that take text in `flavor` (`socket` is
    /// any socket of the edge: the rooms are its namespace's).
    pub fn visitor_sockets(
        &self,
        socket: &SocketRef,
        conversation: u64,
        flavor: Flavor,
    ) -> Vec<SocketRef> {
        socket
            .within(conversation_room(conversation, flavor))
            .sockets()
    }

    /// A visitor socket subscribes: history (the last page, or everything after `since`),
    /// then live messages. It leaves by disconnecting.
    pub fn join_visitor(
        &self,
        conversation: u64,
        socket: SocketRef,
        flavor: Flavor,
        since: Option<u64>,
        ack: Option<Reply>,
    ) {
        let _ = self.input.send(Input::Join(Join::Visitor {
            conversation,
            socket,
            flavor,
            since,
            ack,
        }));
    }

    /// An admin socket: who is online now, then every message and presence change.
    pub fn join_admin(&self, socket: SocketRef, flavor: Flavor) {
        let _ = self.input.send(Input::Join(Join::Admin { socket, flavor }));
    }
}

/// Most messages a reconnecting socket catches up with one by one.
const CATCH_UP: u32 = 500;

/// Pause before subscribing again after the core ended a subscription.
const RESUBSCRIBE: Duration = Duration::from_millis(500);

/// The task's state.
struct State {
    io: SocketIo,
    link: Arc<CoreLink>,
    files: Arc<FileLinks>,
    /// The bot the widget may offer, told in the `subscribe` answer.
    telegram_bot: TelegramBot,
    /// For the history readers to report back; weak, so the task ends with the `Fanout`.
    input: mpsc::WeakUnboundedSender<Input>,
    ids: Arc<HandshakeIds>,
    /// The greatest message id seen; `None` until the subscription has caught up.
    cursor: Option<u64>,
    online: BTreeSet<u64>,
    /// Joins that came before the first catch-up.
    waiting: Vec<Join>,
    /// Visitor sockets fetching their history, per conversation, with the live messages
    /// that came meanwhile (sent after the history, before the socket joins its room).
    admitting: HashMap<u64, Vec<(Sid, Vec<pb::Message>)>>,
}

async fn run(mut state: State, mut rx: mpsc::UnboundedReceiver<Input>) {
    let scope = Scope::AllConversations(true);
    let mut sub = state.link.subscribe(scope, None);
    loop {
        tokio::select! {
            input = rx.recv() => match input {
                Some(Input::Join(join)) if state.cursor.is_some() => state.join(join),
                Some(Input::Join(join)) => state.waiting.push(join),
                Some(Input::Admitted { conversation, socket, flavor, ack, live }) => {
                    state.admitted(conversation, socket, flavor, ack, live);
                }
                None => return,
            },
            event = sub.recv() => match event {
                Some(LinkEvent::Event(event)) => state.event(event).await,
                Some(LinkEvent::Ended { code, message }) => {
                    warn!(code, %message, "live subscription ended; subscribing again");
                    tokio::time::sleep(RESUBSCRIBE).await;
                    sub = state.link.subscribe(scope, state.cursor);
                }
                None => return,
            },
        }
    }
}

impl State {
    async fn event(&mut self, event: Kind) {
        match event {
            Kind::PresenceSnapshot(s) => {
                // After a reconnect the snapshot may differ from what admins were told.
                let now: BTreeSet<u64> = s.online.into_iter().collect();
                for &gone in self.online.difference(&now) {
                    presence(&self.io, &self.ids, gone, false).await;
                }
                for &came in now.difference(&self.online) {
                    presence(&self.io, &self.ids, came, true).await;
                }
                self.online = now;
            }
            Kind::CaughtUp(c) => {
                self.cursor = Some(self.cursor.unwrap_or(0).max(c.last_message_id));
                for join in std::mem::take(&mut self.waiting) {
                    self.join(join);
                }
            }
            Kind::Presence(p) => {
                let changed = if p.online {
                    self.online.insert(p.conversation_id)
                } else {
                    self.online.remove(&p.conversation_id)
                };
                if changed {
                    presence(&self.io, &self.ids, p.conversation_id, p.online).await;
                }
            }
            // Replays after a reconnect of the link may repeat what was seen.
            Kind::Message(m) if self.cursor.is_none_or(|c| m.id > c) => {
                self.cursor = Some(m.id);
                broadcast(&self.io, admin_room, &m, Audience::Support, &self.files);
                broadcast(
                    &self.io,
                    |f| conversation_room(m.conversation_id, f),
                    &m,
                    Audience::Visitors,
                    &self.files,
                );
                if let Some(joining) = self.admitting.get_mut(&m.conversation_id) {
                    for (_, held) in joining {
                        held.push(m.clone());
                    }
                }
            }
            Kind::Message(_) => {}
            // Names are the core's to put on messages; the web edge shows what it is sent.
            Kind::AdminsChanged(_) => {}
            Kind::ReadMark(mark) => read_mark(&self.io, &mark).await,
            Kind::Typing(typing) => typing_to_clients(&self.io, &typing).await,
            // Support's workflow: to token admins only (no page of the legacy protocol has
            // it; the core sends it on all-conversation subscriptions only, never to visitors).
            Kind::Note(n) => to_support(&self.io, support::NOTE, wire::note(&n)).await,
            Kind::Assigned(a) => to_support(&self.io, support::ASSIGNED, wire::assigned(&a)).await,
            Kind::StatusChanged(c) => to_support(&self.io, support::STATUS, wire::status(&c)).await,
            Kind::Erased(e) => to_support(&self.io, support::ERASED, wire::erased(&e)).await,
            Kind::VisitorContext(c) => {
                if let Some(context) = &c.context {
                    let payload = wire::context(c.conversation_id, context);
                    to_support(&self.io, support::CONTEXT, payload).await;
                }
            }
        }
    }

    fn join(&mut self, join: Join) {
        let at = self.cursor.unwrap_or(0);
        match join {
            Join::Admin { socket, flavor } => admit_admin(socket, flavor, &self.online, &self.ids),
            Join::Visitor {
                conversation,
                socket,
                flavor,
                since,
                ack,
            } => {
                let Some(input) = self.input.upgrade() else {
                    return; // The edge is going away.
                };
                // History up to `at` is read on the side (joins do not wait for each other);
                // what comes after it is held here until then.
                self.admitting
                    .entry(conversation)
                    .or_default()
                    .push((socket.id, Vec::new()));
                let (link, files) = (self.link.clone(), self.files.clone());
                tokio::spawn(async move {
                    let to = (&*files, &socket, flavor);
                    let (ack, live) = send_history(&link, conversation, to, since, ack, at).await;
                    let _ = input.send(Input::Admitted {
                        conversation,
                        socket,
                        flavor,
                        ack,
                        live,
                    });
                });
            }
        }
    }

    fn admitted(
        &mut self,
        conversation: u64,
        socket: SocketRef,
        flavor: Flavor,
        ack: Option<Reply>,
        live: Option<Live>,
    ) {
        let Some(joining) = self.admitting.get_mut(&conversation) else {
            return;
        };
        let Some(i) = joining.iter().position(|(sid, _)| *sid == socket.id) else {
            return;
        };
        let (_, held) = joining.swap_remove(i);
        if joining.is_empty() {
            self.admitting.remove(&conversation);
        }
        let Some(live) = live.filter(|_| socket.connected()) else {
            return;
        };
        for m in &held {
            if !emit_or_drop(&socket, m, flavor, &self.files) {
                return;
            }
        }
        socket.join(conversation_room(conversation, flavor));
        // `telegram_bot` (null: none) came later than the other two: a client that does not
        // know it reads the answer as before.
        let answer = Ok(serde_json::json!({
            "conversation": conversation,
            "typing_preview": live.typing_preview,
            "telegram_bot": self.telegram_bot.username(),
        }));
        answer_with(&socket, ack, events::incoming::SUBSCRIBE, answer);
    }
}

/// Emits a message to one socket; a full or closed socket is cut off (better gone than
/// silently missing a message: the client reconnects and resumes from what it has).
fn emit_or_drop(socket: &SocketRef, m: &pb::Message, flavor: Flavor, files: &FileLinks) -> bool {
    match socket.emit(outgoing::NEW_MESSAGE, &payload(m, flavor, files)) {
        Ok(()) => {
            crate::metrics::sent(outgoing::NEW_MESSAGE, 1);
            true
        }
        Err(e) => {
            crate::peer::cut_off(socket, &e.to_string());
            false
        }
    }
}

/// Sends a joining visitor socket its history up to `cursor`: the last page with the history
/// button, or (a reconnecting widget, `since`) everything after what it has when that fits one
/// page. One request to the core (`EdgeJoin`). Returns the ack still to answer, and whether the
/// socket may go live (with what the core said of itself).
async fn send_history(
    link: &CoreLink,
    conversation: u64,
    (files, socket, flavor): (&FileLinks, &SocketRef, Flavor),
    since: Option<u64>,
    ack: Option<Reply>,
    cursor: u64,
) -> (Option<Reply>, Option<Live>) {
    let join = link.join(pb::EdgeJoin {
        request_id: 0,
        conversation_id: conversation,
        up_to_message_id: Some(cursor),
        recent: SUBSCRIBE_HISTORY,
        since_message_id: since,
        catch_up: CATCH_UP,
    });
    let history = match join.await {
        Ok(history) => history,
        Err(status) => {
            answer_with(socket, ack, events::incoming::SUBSCRIBE, Err(status.into()));
            return (None, None);
        }
    };
    // Oldest first (LEGACY.md §3).
    for m in &history.messages {
        if !emit_or_drop(socket, m, flavor, files) {
            return (ack, None);
        }
    }
    if let Some(oldest) = history.messages.first() {
        crate::peer::shown_from(socket, oldest.id);
    }
    if history.has_more && socket.emit(outgoing::ADD_HISTORY_BUTTON, &NO_ARGS).is_ok() {
        crate::metrics::sent(outgoing::ADD_HISTORY_BUTTON, 1);
    }
    (
        ack,
        Some(Live {
            typing_preview: history.typing_preview,
        }),
    )
}

/// A joining visitor socket that may go live, and what its `subscribe` is answered with
/// besides its conversation.
struct Live {
    /// Whether the core shows support the visitor's draft: only then does the widget send it.
    typing_preview: bool,
}

async fn presence(io: &SocketIo, ids: &HandshakeIds, conversation: u64, is_online: bool) {
    let event = if is_online {
        outgoing::ONLINE
    } else {
        outgoing::OFFLINE
    };
    let payload = PresencePayload {
        cid: ids.text(conversation, !is_online),
    };
    let Some(root) = root(io) else { return };
    for flavor in [Flavor::Legacy, Flavor::Plain] {
        let room = root.clone().to(admin_room(flavor));
        // Counted as the room is now (the admins are few; one may join or leave meanwhile).
        let admins = room.clone().sockets().len();
        if room.emit(event, &payload).await.is_ok() {
            crate::metrics::sent(event, admins);
        }
    }
}

/// A moved read mark, to the sockets that render text (the widget's tabs of that visitor,
/// token admins): the legacy pages and the PHP admin know no read marks, so get nothing new.
async fn read_mark(io: &SocketIo, mark: &pb::ReadMark) {
    let reader = match pb::Reader::try_from(mark.reader) {
        Ok(pb::Reader::Support) => "support",
        Ok(pb::Reader::Visitor) => "visitor",
        _ => return,
    };
    let payload = ReadPayload {
        cid: mark.conversation_id,
        reader,
        mid: mark.up_to_message_id,
    };
    let rooms = [
        conversation_room(mark.conversation_id, Flavor::Plain),
        admin_room(Flavor::Plain),
    ];
    emit_plain(io, rooms, outgoing::READ, &payload).await;
}

/// Someone types, to the sockets that render it (the legacy pages know no typing): a
/// visitor's to token admins, support's to the visitor's widget tabs and token admins.
async fn typing_to_clients(io: &SocketIo, typing: &pb::Typing) {
    let by_support = !typing.admin_id.is_empty();
    let payload = TypingPayload {
        cid: typing.conversation_id,
        typist: if by_support { "support" } else { "visitor" },
        name: Some(typing.admin_display_name.clone()).filter(|n| !n.is_empty()),
        active: typing.active,
        chars: typing.draft_chars,
        preview: typing.preview.clone(),
        shown_for_ms: typing.shown_for_ms,
    };
    let mut rooms = vec![admin_room(Flavor::Plain)];
    if by_support {
        rooms.push(conversation_room(typing.conversation_id, Flavor::Plain));
    }
    emit_plain(io, rooms, outgoing::TYPING, &payload).await;
}

/// Emits a workflow event to token admins (the Plain admin room).
async fn to_support(io: &SocketIo, event: &'static str, payload: impl serde::Serialize) {
    emit_plain(io, [admin_room(Flavor::Plain)], event, &payload).await;
}

/// Emits one of Socketgram's own events (which only Plain-flavor clients know) to each room
/// that has sockets, counting what was sent.
async fn emit_plain(
    io: &SocketIo,
    rooms: impl IntoIterator<Item = String>,
    event: &'static str,
    payload: &impl serde::Serialize,
) {
    let Some(root) = root(io) else { return };
    for room in rooms {
        let room = root.clone().to(room);
        let sockets = room.clone().sockets().len();
        if sockets > 0 && room.emit(event, payload).await.is_ok() {
            crate::metrics::sent(event, sockets);
        }
    }
}

/// The default namespace; `None` once the edge has closed it (events still arriving from the
/// core during a shutdown have no one to go to).
fn root(io: &SocketIo) -> Option<socketioxide::operators::BroadcastOperators> {
    io.of("/")
}

/// Tells a new admin who is online (LEGACY.md §9.7), then puts it in the admins' room.
fn admit_admin(socket: SocketRef, flavor: Flavor, online: &BTreeSet<u64>, ids: &HandshakeIds) {
    for &conversation in online {
        let sent = socket.emit(
            outgoing::ONLINE,
            &PresencePayload {
                cid: ids.text(conversation, false),
            },
        );
        if sent.is_ok() {
            crate::metrics::sent(outgoing::ONLINE, 1);
        }
    }
    socket.join(admin_room(flavor));
}
