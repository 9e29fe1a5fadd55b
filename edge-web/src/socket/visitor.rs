//! Visitor events: `subscribe`, `new message`, `take history` (LEGACY.md §3). The visitor's
//! identity is the handshake's; a payload naming another visitor or room is refused and
//! logged, and nothing is stored (LEGACY.md §9.1).

use std::sync::{Arc, atomic::Ordering};

use serde_json::{Value, json};
use socketgram_admin_php_compat::{
    events::{Fields, HISTORY_PAGE, NO_ARGS, incoming, outgoing},
    handshake::Identity,
};
use socketgram_proto::v1 as pb;
use socketioxide::extract::SocketRef;
use tracing::warn;

use super::{Peer, Reply, Turn, ok, refuse, refuse_with_ack, send_in_order, shown_from};
use crate::{Edge, fanout::payload};

/// The visitor behind a socket.
struct Visitor<'a> {
    cid: u64,
    room: &'a str,
}

fn visitor(peer: &Peer) -> Visitor<'_> {
    match &peer.identity {
        Identity::Visitor { cid, room, .. } => Visitor { cid: *cid, room },
        Identity::Admin { .. } => unreachable!("dispatch sends only visitor sockets here"),
    }
}

/// Checks that the payload's `username`/`room`, when present, are the handshake's.
fn same_visitor(
    s: &SocketRef,
    peer: &Peer,
    fields: &Fields<'_>,
    event: &str,
    ack: &mut Option<Reply>,
) -> bool {
    let me = visitor(peer);
    let username = fields.id("username");
    let room = fields.text("room");
    let (username, room) = match (username, room) {
        (Ok(u), Ok(r)) => (u, r),
        (Err(e), _) | (_, Err(e)) => {
            refuse(s, ack.take(), event, "invalid", e.to_string());
            return false;
        }
    };
    if username.is_some_and(|u| u != me.cid) || room.as_deref().is_some_and(|r| r != me.room) {
        warn!(conn = %super::log_id(&s.id), ip = %peer.ip, cid = me.cid, claimed = ?username, %event,
              "payload names another visitor; refused");
        refuse(
            s,
            ack.take(),
            event,
            "forbidden",
            "the payload names another visitor than this connection's".into(),
        );
        return false;
    }
    true
}

/// The payload's fields, once it is an object naming (if anyone) this connection's visitor;
/// otherwise the request is refused and `None` returned.
fn own_fields<'a>(
    s: &SocketRef,
    peer: &Peer,
    data: &'a Value,
    event: &str,
    ack: Reply,
) -> Option<(Fields<'a>, Option<Reply>)> {
    let fields = match Fields::of(data) {
        Ok(f) => f,
        Err(e) => {
            refuse(s, Some(ack), event, "invalid", e.to_string());
            return None;
        }
    };
    let mut ack = Some(ack);
    same_visitor(s, peer, &fields, event, &mut ack).then_some((fields, ack))
}

/// `subscribe {room, username}`: the last 20 messages (or, with `since`, everything after
/// it), then live messages; the visitor is online from now until its last socket goes.
pub async fn subscribe(s: &SocketRef, edge: &Edge, peer: &Peer, data: &Value, ack: Reply) {
    let event = incoming::SUBSCRIBE;
    let empty = json!({});
    // The widget may subscribe without a payload: its identity is its token.
    let data = if data.is_null() { &empty } else { data };
    let Some((fields, ack)) = own_fields(s, peer, data, event, ack) else {
        return;
    };
    let since = match fields.id("since") {
        Ok(since) => since,
        Err(e) => return refuse(s, ack, event, "invalid", e.to_string()),
    };
    if peer.subscribed.swap(true, Ordering::SeqCst) {
        return refuse(
            s,
            ack,
            event,
            "invalid",
            "this connection is already subscribed".into(),
        );
    }
    let cid = visitor(peer).cid;
    let opened = edge
        .link
        .client()
        .chat
        .open_conversation(pb::OpenConversationRequest {
            conversation_id: cid,
        })
        .await;
    if let Err(status) = opened {
        peer.subscribed.store(false, Ordering::SeqCst);
        return refuse_with_ack(s, ack, event, &status);
    }
    if let Identity::Visitor { cid_text, .. } = &peer.identity {
        edge.fanout().hold_id(cid, cid_text);
    }
    edge.link.presence(cid, true);
    // Acknowledged by the conversation's task once the history is out and live is on.
    edge.fanout()
        .join_visitor(cid, s.clone(), peer.flavor(), since, ack);
}

/// `new message {username, message, room}`: stored, then delivered to every tab of the
/// visitor and to every admin through the live stream.
pub async fn new_message(
    s: &SocketRef,
    edge: &Edge,
    peer: &Peer,
    turn: Turn,
    data: &Value,
    ack: Reply,
) {
    let event = incoming::NEW_MESSAGE;
    let Some((fields, ack)) = own_fields(s, peer, data, event, ack) else {
        return;
    };
    let (text, client_msg_id) = match (
        fields.required_text("message"),
        fields.text("client_msg_id"),
    ) {
        (Ok(text), Ok(id)) => (text, id.unwrap_or_default()),
        (Err(e), _) | (_, Err(e)) => return refuse(s, ack, event, "invalid", e.to_string()),
    };
    let request = pb::SendMessageRequest {
        conversation_id: visitor(peer).cid,
        author: Some(pb::Author {
            kind: pb::AuthorKind::Visitor as i32,
            admin_id: String::new(),
        }),
        text,
        client_msg_id,
    };
    match send_in_order(edge, turn, request).await {
        Ok(sent) => {
            if let (Some(ack), Some(m)) = (ack, sent.message) {
                ok(ack, json!({ "label": m.id }));
            }
        }
        Err(status) => refuse_with_ack(s, ack, event, &status),
    }
}

/// `take history {username, room, mid}`: up to 10 messages older than `mid`, newest first,
/// between the history button events, to every socket of this visitor (LEGACY.md §3, §9.8):
/// the legacy page asks on a second, fresh connection and shows the answer on its first.
/// That page always asks with `mid = 50000000`, never knowing what it shows, so when `mid` is
/// past the oldest message already shown, the page starts below that one: the asking
/// socket's own, or (a fresh connection that was shown nothing) the oldest any socket of the
/// visitor was shown. Each click shows the next older messages, none twice.
pub async fn take_history(s: &SocketRef, edge: &Edge, peer: &Peer, data: &Value, ack: Reply) {
    let event = incoming::TAKE_HISTORY;
    let Some((fields, ack)) = own_fields(s, peer, data, event, ack) else {
        return;
    };
    let mid = match fields.id("mid") {
        Ok(Some(mid)) => mid,
        Ok(None) => return refuse(s, ack, event, "invalid", "`mid` is missing".into()),
        Err(e) => return refuse(s, ack, event, "invalid", e.to_string()),
    };
    let cid = visitor(peer).cid;
    let flavor = peer.flavor();
    let mut sockets = edge.fanout().visitor_sockets(cid, flavor);
    if !sockets.iter().any(|other| other.id == s.id) {
        sockets.push(s.clone());
    }
    let shown = match peer.oldest_shown.load(Ordering::SeqCst) {
        u64::MAX => sockets
            .iter()
            .filter_map(|socket| socket.extensions.get::<Arc<Peer>>())
            .map(|p| p.oldest_shown.load(Ordering::SeqCst))
            .min()
            .unwrap_or(u64::MAX),
        own => own,
    };
    emit_all(&sockets, outgoing::DROP_HISTORY_BUTTON, &NO_ARGS);
    let request = pb::HistoryRequest {
        conversation_id: cid,
        before_id: mid.min(shown),
        limit: HISTORY_PAGE,
        after_id: 0,
    };
    let page = match edge.link.client().chat.history(request).await {
        Ok(page) => page.into_inner(),
        Err(status) => return refuse_with_ack(s, ack, event, &status),
    };
    for m in &page.messages {
        emit_all(&sockets, outgoing::NEW_MESSAGE_HISTORY, &payload(m, flavor));
    }
    if let Some(oldest) = page.messages.last() {
        for socket in &sockets {
            shown_from(socket, oldest.id);
        }
    }
    if page.has_more {
        emit_all(&sockets, outgoing::ADD_HISTORY_BUTTON, &NO_ARGS);
    }
    if let Some(ack) = ack {
        ok(
            ack,
            json!({ "count": page.messages.len(), "has_more": page.has_more }),
        );
    }
}

fn emit_all<T: serde::Serialize + ?Sized>(sockets: &[SocketRef], event: &str, payload: &T) {
    for socket in sockets {
        let _ = socket.emit(event, payload);
    }
}
