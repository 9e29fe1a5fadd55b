//! Visitor events: `subscribe`, `new message`, `take history` (LEGACY.md §3), and
//! Socketgram's own `mark read`, `typing`, `upload` and `telegram link`. The visitor's
//! identity is the handshake's; a payload naming another visitor or room is refused and
//! logged, and nothing is stored (LEGACY.md §9.1).

use std::sync::{Arc, atomic::Ordering};

use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use socketgram_admin_php_compat::{
    events::{
        self, Claims, HISTORY_PAGE, MarkRead, NO_ARGS, NewMessage, Subscribe, TakeHistory,
        TelegramLink, TelegramLinkPayload, Typing, Upload, incoming, outgoing,
    },
    handshake::Identity,
};
use socketgram_common::context::{Page, Vouched};
use socketgram_proto::v1 as pb;
use socketioxide::extract::SocketRef;
use tracing::warn;

use super::{Answer, Peer, Refusal, Reply, Turn, send_in_order, sent, shown_from};
use crate::{Edge, files::Uploader, wire::payload};

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

/// The payload as `T`, once it names (if anyone) this connection's visitor: its
/// `username`/`room`, when present, must be the handshake's.
fn own<T: Claims + DeserializeOwned>(
    s: &SocketRef,
    peer: &Peer,
    data: &Value,
    event: &str,
) -> Result<T, Refusal> {
    let payload: T = events::parse(data)?;
    let me = visitor(peer);
    let username = payload.username();
    if username.is_some_and(|u| u != me.cid) || payload.room().is_some_and(|r| r != me.room) {
        warn!(conn = %super::log_id(&s.id), ip = %peer.ip, cid = me.cid, claimed = ?username, %event,
              "payload names another visitor; refused");
        return Err(Refusal::Forbidden(
            "the payload names another visitor than this connection's".into(),
        ));
    }
    Ok(payload)
}

/// [`own`] for an event whose payload may be left out (the widget's identity is its token):
/// none reads as `{}`.
fn own_optional<T: Claims + DeserializeOwned>(
    s: &SocketRef,
    peer: &Peer,
    data: &Value,
    event: &str,
) -> Result<T, Refusal> {
    if data.is_null() {
        return own(s, peer, &json!({}), event);
    }
    own(s, peer, data, event)
}

/// `subscribe {room, username}`: the last 20 messages (or, with `since`, everything after
/// it), then live messages; the visitor is online from now until its last socket goes. The
/// conversation's task answers, once the history is out and live is on. What the visitor's
/// token vouches for and the page it reports (the widget's `page`) go to the core as the
/// visitor's context.
pub async fn subscribe(s: &SocketRef, edge: &Edge, peer: &Peer, data: &Value, ack: Reply) {
    let event = incoming::SUBSCRIBE;
    let Subscribe { since, page, .. } = match open(s, peer, data) {
        Ok(subscribe) => subscribe,
        Err(refusal) => return ack.answer(s, event, Err(refusal)),
    };
    let cid = visitor(peer).cid;
    if let Identity::Visitor {
        cid_text, vouched, ..
    } = &peer.identity
    {
        edge.fanout().hold_id(cid, cid_text);
        if vouched.is_some() || page.is_some() {
            edge.link
                .visitor_context(context_request(cid, vouched.as_deref(), page));
        }
    }
    edge.link.presence(cid, true);
    edge.fanout()
        .join_visitor(cid, s.clone(), peer.flavor(), since, Some(ack));
}

/// Checks a `subscribe` (its page within bounds). Nothing is written: the conversation is
/// stored with its first message.
fn open(s: &SocketRef, peer: &Peer, data: &Value) -> Result<Subscribe, Refusal> {
    let subscribe = own_optional::<Subscribe>(s, peer, data, incoming::SUBSCRIBE)?;
    if let Some(page) = &subscribe.page {
        page.check().map_err(|e| Refusal::Invalid(e.0))?;
    }
    if peer.subscribed.swap(true, Ordering::SeqCst) {
        return Err(Refusal::Invalid(
            "this connection is already subscribed".into(),
        ));
    }
    Ok(subscribe)
}

/// The context a subscribing visitor brings, as the contract says it.
fn context_request(
    cid: u64,
    vouched: Option<&Vouched>,
    page: Option<Page>,
) -> pb::SetVisitorContextRequest {
    pb::SetVisitorContextRequest {
        conversation_id: cid,
        verified: vouched.map(Into::into),
        page: page.as_ref().map(Into::into),
    }
}

/// `new message {username, message, room}`: stored, then delivered to every tab of the
/// visitor and to every admin through the live stream.
pub async fn new_message(
    s: &SocketRef,
    edge: &Edge,
    peer: &Peer,
    turn: Turn,
    data: &Value,
) -> Answer {
    let payload: NewMessage = own(s, peer, data, incoming::NEW_MESSAGE)?;
    let request = pb::SendMessageRequest {
        conversation_id: visitor(peer).cid,
        author: Some(pb::Author {
            kind: pb::AuthorKind::Visitor as i32,
            admin_id: String::new(),
        }),
        text: payload.message,
        client_msg_id: payload.client_msg_id.unwrap_or_default(),
        attachment_ids: payload.attachments,
    };
    sent(send_in_order(edge, turn, request).await)
}

/// `upload {name, size}`: where the visitor's page may send one file's bytes for its own
/// conversation, and the limits (checked again by the core).
pub async fn upload(s: &SocketRef, edge: &Edge, peer: &Peer, data: &Value) -> Answer {
    let payload: Upload = own(s, peer, data, incoming::UPLOAD)?;
    let cid = visitor(peer).cid;
    let ticket =
        super::upload_ticket(edge, cid, &Uploader::Visitor, &payload.name, payload.size).await?;
    Ok(serde_json::to_value(ticket).unwrap_or_default())
}

/// `telegram link` (the widget's "Continue in Telegram", no payload): the bot's start link
/// for this connection's visitor, with a one-time token from the core, and when it stops
/// working. Refused when the edge knows no bot (`[web] telegram_bot`).
pub async fn telegram_link(s: &SocketRef, edge: &Edge, peer: &Peer, data: &Value) -> Answer {
    own_optional::<TelegramLink>(s, peer, data, incoming::TELEGRAM_LINK)?;
    let Some(bot) = edge.telegram_bot.username() else {
        return Err(Refusal::Refused(
            "this chat has no Telegram bot to continue in ([web] telegram_bot is not set)".into(),
        ));
    };
    let request = pb::CreateLinkTokenRequest {
        conversation_id: visitor(peer).cid,
    };
    let issued = edge
        .link
        .client()
        .telegram
        .create_link_token(request)
        .await?
        .into_inner();
    let payload = TelegramLinkPayload {
        url: crate::telegram::start_link(&bot, &issued.token),
        expires_at_ms: issued.expires_at_ms,
    };
    Ok(serde_json::to_value(payload).unwrap_or_default())
}

/// `take history {username, room, mid}`: up to 10 messages older than `mid`, newest first,
/// between the history button events, to every socket of this visitor (LEGACY.md §3, §9.8):
/// the legacy page asks on a second, fresh connection and shows the answer on its first.
/// That page always asks with `mid = 50000000`, never knowing what it shows, so when `mid` is
/// past the oldest message already shown, the page starts below that one: the asking
/// socket's own, or (a fresh connection that was shown nothing) the oldest any socket of the
/// visitor was shown. Each click shows the next older messages, none twice.
pub async fn take_history(s: &SocketRef, edge: &Edge, peer: &Peer, data: &Value) -> Answer {
    let mid = own::<TakeHistory>(s, peer, data, incoming::TAKE_HISTORY)?.mid;
    let cid = visitor(peer).cid;
    let flavor = peer.flavor();
    let mut sockets = edge.fanout().visitor_sockets(s, cid, flavor);
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
    // A visitor's own conversation that holds no message yet has no row in the core (it is
    // stored with its first message) and may not be known online there yet either: the
    // legacy page asks on a fresh connection, whose presence can reach the core after this
    // call. Its history is empty, as the legacy server answers, not an error.
    let page = match edge.link.client().chat.history(request).await {
        Ok(page) => page.into_inner(),
        Err(status) if status.code() == tonic::Code::NotFound => pb::HistoryResponse::default(),
        Err(status) => return Err(status.into()),
    };
    for m in &page.messages {
        emit_all(
            &sockets,
            outgoing::NEW_MESSAGE_HISTORY,
            &payload(m, flavor, &edge.files),
        );
    }
    if let Some(oldest) = page.messages.last() {
        for socket in &sockets {
            shown_from(socket, oldest.id);
        }
    }
    if page.has_more {
        emit_all(&sockets, outgoing::ADD_HISTORY_BUTTON, &NO_ARGS);
    }
    Ok(json!({ "count": page.messages.len(), "has_more": page.has_more }))
}

/// `mark read {mid}` (the widget): the visitor has seen its conversation up to `mid`. The
/// core keeps the mark (never back) and tells support; the answer is both marks as stored.
pub async fn mark_read(s: &SocketRef, edge: &Edge, peer: &Peer, data: &Value) -> Answer {
    let mid = own::<MarkRead>(s, peer, data, incoming::MARK_READ)?.mid;
    let request = pb::MarkReadRequest {
        conversation_id: visitor(peer).cid,
        reader: pb::Reader::Visitor as i32,
        up_to_message_id: mid,
    };
    let conversation = edge
        .link
        .client()
        .chat
        .mark_read(request)
        .await?
        .into_inner();
    Ok(json!({
        "visitor_read_up_to": conversation.visitor_read_up_to,
        "support_read_up_to": conversation.support_read_up_to,
    }))
}

/// `typing {chars, draft}`: the visitor types (0 characters: stopped). Told to support
/// through the core, which thins keystrokes out; the ack says only that it was taken.
pub fn typing(s: &SocketRef, edge: &Edge, peer: &Peer, data: &Value) -> Answer {
    let typing = own::<Typing>(s, peer, data, incoming::TYPING)?;
    edge.link.typing(pb::SetTypingRequest {
        conversation_id: visitor(peer).cid,
        author: Some(pb::Author {
            kind: pb::AuthorKind::Visitor as i32,
            admin_id: String::new(),
        }),
        active: typing.chars > 0,
        draft_chars: typing.chars,
        draft: typing.draft.unwrap_or_default(),
    });
    Ok(json!({ "typing": typing.chars > 0 }))
}

fn emit_all<T: serde::Serialize + ?Sized>(sockets: &[SocketRef], event: &'static str, payload: &T) {
    let sent = sockets
        .iter()
        .filter(|socket| socket.emit(event, payload).is_ok())
        .count();
    crate::metrics::sent(event, sent);
}
