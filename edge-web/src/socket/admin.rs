//! Admin events: `subscribe:servadm`, `new message:servadm`, `update admlist` (LEGACY.md §3).
//! An admin who logged in with a per-admin token is that admin; one who used the legacy
//! shared parameter names itself in `adm`, as the PHP admin does.

use serde_json::{Value, json};
use socketgram_admin_php_compat::{
    events::{self, NewMessageAdmin, SubscribeAdmin, TypingAdmin, UploadAdmin},
    handshake::Identity,
    room,
};
use socketgram_proto::v1 as pb;
use socketioxide::extract::SocketRef;
use tracing::warn;

use super::{Answer, Peer, Refusal, Turn, send_in_order, sent};
use crate::{Edge, files::Uploader};

/// The admin login for a request: the token's, or the payload's `adm` for legacy admins.
pub(super) fn admin_id(peer: &Peer, claimed: Option<String>) -> Result<String, Refusal> {
    match (&peer.identity, claimed) {
        (
            Identity::Admin {
                admin_id: Some(me), ..
            },
            None,
        ) => Ok(me.clone()),
        (
            Identity::Admin {
                admin_id: Some(me), ..
            },
            Some(claimed),
        ) if &claimed == me => Ok(claimed),
        (
            Identity::Admin {
                admin_id: Some(_), ..
            },
            Some(_),
        ) => Err(Refusal::Forbidden(
            "`adm` names another admin than this connection's".into(),
        )),
        (_, Some(claimed)) if !claimed.is_empty() => Ok(claimed),
        _ => Err(Refusal::Invalid(
            "`adm` (the admin login) is missing".into(),
        )),
    }
}

/// `subscribe:servadm {room, adm}`: the PHP admin opens a conversation. Admins already get
/// every conversation's messages; this only checks the request.
pub fn subscribe(peer: &Peer, data: &Value) -> Answer {
    let payload: SubscribeAdmin = events::parse(data)?;
    Ok(json!({ "admin": admin_id(peer, payload.adm)? }))
}

/// `new message:servadm {username, message, room, adm}`: a reply, stored and delivered to
/// every tab of the visitor and every admin (and, by the Telegram edge, to a linked chat).
pub async fn new_message(
    s: &SocketRef,
    edge: &Edge,
    peer: &Peer,
    turn: Turn,
    data: &Value,
) -> Answer {
    let payload: NewMessageAdmin = events::parse(data)?;
    let cid = payload.username;
    // The room must be the visitor's: a reply never goes to someone else by mistake. A
    // token admin, who is someone, may leave it out (it cannot know the legacy secret).
    let token_admin = matches!(
        peer.identity,
        Identity::Admin {
            admin_id: Some(_),
            ..
        }
    );
    let room_ok = match &payload.room {
        Some(room) => room::room_matches(
            edge.legacy.room_hash,
            &cid.to_string(),
            edge.legacy.secret.expose(),
            room,
        ),
        None if token_admin => true,
        None => {
            return Err(Refusal::Invalid("`room` is missing".into()));
        }
    };
    if !room_ok {
        warn!(conn = %super::log_id(&s.id), cid, "admin reply whose room is not the visitor's; refused");
        return Err(Refusal::Invalid(
            "`room` is not the room of `username`".into(),
        ));
    }
    let request = pb::SendMessageRequest {
        conversation_id: cid,
        author: Some(pb::Author {
            kind: pb::AuthorKind::Admin as i32,
            admin_id: admin_id(peer, payload.adm)?,
        }),
        text: payload.message,
        client_msg_id: payload.client_msg_id.unwrap_or_default(),
        attachment_ids: payload.attachments,
    };
    sent(send_in_order(edge, turn, request).await)
}

/// `upload:servadm {username, name, size}`: where support may send one file's bytes for a
/// visitor's conversation, and the limits (checked again by the core).
pub async fn upload(edge: &Edge, peer: &Peer, data: &Value) -> Answer {
    let payload: UploadAdmin = events::parse(data)?;
    let uploader = Uploader::Admin(admin_id(peer, payload.adm)?);
    let ticket = super::upload_ticket(
        edge,
        payload.username,
        &uploader,
        &payload.name,
        payload.size,
    )
    .await?;
    Ok(serde_json::to_value(ticket).unwrap_or_default())
}

/// `typing:servadm {username, chars, adm}`: support types to a visitor (0 characters:
/// stopped). Told to the visitor's widget and support's other clients through the core.
pub fn typing(edge: &Edge, peer: &Peer, data: &Value) -> Answer {
    let payload: TypingAdmin = events::parse(data)?;
    edge.link.typing(pb::SetTypingRequest {
        conversation_id: payload.username,
        author: Some(pb::Author {
            kind: pb::AuthorKind::Admin as i32,
            admin_id: admin_id(peer, payload.adm)?,
        }),
        active: payload.chars > 0,
        draft_chars: payload.chars,
        draft: String::new(),
    });
    Ok(json!({ "typing": payload.chars > 0 }))
}

/// `update admlist`: the PHP admin created an admin; re-read the names.
pub async fn update_list(edge: &Edge) -> Answer {
    let list = edge
        .link
        .client()
        .chat
        .reload_admins(pb::ReloadAdminsRequest {})
        .await?;
    Ok(json!({ "admins": list.into_inner().admins.len() }))
}
