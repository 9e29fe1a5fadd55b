//! Admin events: `subscribe:servadm`, `new message:servadm`, `update admlist` (LEGACY.md §3).
//! An admin who logged in with a per-admin token is that admin; one who used the legacy
//! shared parameter names itself in `adm`, as the PHP admin does.

use serde_json::{Value, json};
use socketgram_admin_php_compat::{
    events::{Fields, incoming},
    handshake::Identity,
    room,
};
use socketgram_proto::v1 as pb;
use socketioxide::extract::SocketRef;
use tracing::warn;

use super::{Peer, Reply, Turn, ok, refuse, refuse_with_ack, send_in_order};
use crate::Edge;

/// The admin login for a request: the token's, or the payload's `adm` for legacy admins.
fn admin_id(peer: &Peer, fields: &Fields<'_>) -> Result<String, (&'static str, String)> {
    let claimed = fields.text("adm").map_err(|e| ("invalid", e.to_string()))?;
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
        ) => Err((
            "forbidden",
            "`adm` names another admin than this connection's".into(),
        )),
        (_, Some(claimed)) if !claimed.is_empty() => Ok(claimed),
        _ => Err(("invalid", "`adm` (the admin login) is missing".into())),
    }
}

/// `subscribe:servadm {room, adm}`: the PHP admin opens a conversation. Admins already get
/// every conversation's messages; this only checks the request.
pub fn subscribe(s: &SocketRef, peer: &Peer, data: &Value, ack: Reply) {
    let event = incoming::SUBSCRIBE_ADMIN;
    let fields = match Fields::of(data) {
        Ok(f) => f,
        Err(e) => return refuse(s, Some(ack), event, "invalid", e.to_string()),
    };
    if let Err(e) = fields.required_text("room") {
        return refuse(s, Some(ack), event, "invalid", e.to_string());
    }
    match admin_id(peer, &fields) {
        Ok(admin) => ok(ack, json!({ "admin": admin })),
        Err((code, message)) => refuse(s, Some(ack), event, code, message),
    }
}

/// `new message:servadm {username, message, room, adm}`: a reply, stored and delivered to
/// every tab of the visitor and every admin (and, by the Telegram edge, to a linked chat).
pub async fn new_message(
    s: &SocketRef,
    edge: &Edge,
    peer: &Peer,
    turn: Turn,
    data: &Value,
    ack: Reply,
) {
    let event = incoming::NEW_MESSAGE_ADMIN;
    let fields = match Fields::of(data) {
        Ok(f) => f,
        Err(e) => return refuse(s, Some(ack), event, "invalid", e.to_string()),
    };
    let parsed = (|| {
        let cid = fields
            .id("username")?
            .ok_or_else(|| invalid("`username` (the visitor id) is missing"))?;
        let room = fields.required_text("room")?;
        let text = fields.required_text("message")?;
        let client_msg_id = fields.text("client_msg_id")?.unwrap_or_default();
        Ok::<_, socketgram_admin_php_compat::events::PayloadError>((cid, room, text, client_msg_id))
    })();
    let (cid, room, text, client_msg_id) = match parsed {
        Ok(p) => p,
        Err(e) => return refuse(s, Some(ack), event, "invalid", e.to_string()),
    };
    // The room must be the visitor's: a reply never goes to someone else by mistake.
    if !room::room_matches(
        edge.legacy.room_hash,
        &cid.to_string(),
        edge.legacy.secret.expose(),
        &room,
    ) {
        warn!(conn = %super::log_id(&s.id), cid, "admin reply whose room is not the visitor's; refused");
        return refuse(
            s,
            Some(ack),
            event,
            "invalid",
            "`room` is not the room of `username`".into(),
        );
    }
    let admin = match admin_id(peer, &fields) {
        Ok(admin) => admin,
        Err((code, message)) => return refuse(s, Some(ack), event, code, message),
    };
    let request = pb::SendMessageRequest {
        conversation_id: cid,
        author: Some(pb::Author {
            kind: pb::AuthorKind::Admin as i32,
            admin_id: admin,
        }),
        text,
        client_msg_id,
    };
    match send_in_order(edge, turn, request).await {
        Ok(sent) => {
            if let Some(m) = sent.message {
                ok(ack, json!({ "label": m.id }));
            }
        }
        Err(status) => refuse_with_ack(s, Some(ack), event, &status),
    }
}

fn invalid(message: &str) -> socketgram_admin_php_compat::events::PayloadError {
    socketgram_admin_php_compat::events::PayloadError(message.to_owned())
}

/// `update admlist`: the PHP admin created an admin; re-read the names.
pub async fn update_list(s: &SocketRef, edge: &Edge, ack: Reply) {
    match edge
        .link
        .client()
        .chat
        .reload_admins(pb::ReloadAdminsRequest {})
        .await
    {
        Ok(list) => ok(ack, json!({ "admins": list.into_inner().admins.len() })),
        Err(status) => refuse_with_ack(s, Some(ack), incoming::UPDATE_ADMIN_LIST, &status),
    }
}
