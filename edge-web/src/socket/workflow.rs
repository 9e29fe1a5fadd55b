//! Support's workflow events (`conversation:servadm`, `assign:servadm`, `status:servadm`,
//! `note:servadm`, `canned replies:servadm`): each one call to the core, answered with what it
//! stored. Admin sockets only, as `adm` or the token names the admin; the core checks the
//! rest (a known admin, a stored conversation) and its refusals are answered as they come.

use serde::Serialize;
use serde_json::Value;
use socketgram_admin_php_compat::{
    events,
    workflow::{AddNote, Assign, CannedPayload, CannedQuery, ConversationQuery, SetStatus},
};
use socketgram_proto::v1 as pb;

use super::{Answer, Peer, admin::admin_id};
use crate::{Edge, wire::workflow as wire};

fn value(payload: impl Serialize) -> Answer {
    Ok(serde_json::to_value(payload).expect("a workflow payload serialises"))
}

/// The conversation as support sees it: status, assignee, read marks, the visitor's context.
pub async fn conversation(edge: &Edge, data: &Value) -> Answer {
    let query: ConversationQuery = events::parse(data)?;
    let conversation = edge
        .link
        .client()
        .chat
        .open_conversation(pb::OpenConversationRequest {
            conversation_id: query.username,
        })
        .await?
        .into_inner();
    value(wire::conversation(&conversation))
}

/// Assigns, unassigns or (`take`) takes for oneself.
pub async fn assign(edge: &Edge, peer: &Peer, data: &Value) -> Answer {
    let request: Assign = events::parse(data)?;
    let by = admin_id(peer, request.adm)?;
    let assignee = if request.take {
        by.clone()
    } else {
        request.assignee.unwrap_or_default()
    };
    let conversation = edge
        .link
        .client()
        .chat
        .assign_conversation(pb::AssignConversationRequest {
            conversation_id: request.username,
            assignee,
            by,
            take: request.take,
        })
        .await?
        .into_inner();
    value(wire::conversation(&conversation))
}

/// Sets the status (a snooze until `snoozed_until_ms`).
pub async fn status(edge: &Edge, peer: &Peer, data: &Value) -> Answer {
    let request: SetStatus = events::parse(data)?;
    let conversation = edge
        .link
        .client()
        .chat
        .set_conversation_status(pb::SetConversationStatusRequest {
            conversation_id: request.username,
            status: wire::status_code(request.status).into(),
            snoozed_until_ms: request.snoozed_until_ms,
            by: admin_id(peer, request.adm)?,
        })
        .await?
        .into_inner();
    value(wire::conversation(&conversation))
}

/// Adds a private note (the visitor never receives it).
pub async fn note(edge: &Edge, peer: &Peer, data: &Value) -> Answer {
    let request: AddNote = events::parse(data)?;
    let note = edge
        .link
        .client()
        .chat
        .add_note(pb::AddNoteRequest {
            conversation_id: request.username,
            admin_id: admin_id(peer, request.adm)?,
            text: request.text,
        })
        .await?
        .into_inner();
    value(wire::note(&note))
}

/// The team's canned replies by shortcut, for the client to expand `/shortcut`.
pub async fn canned_replies(edge: &Edge, data: &Value) -> Answer {
    let query: CannedQuery = if data.is_null() {
        CannedQuery::default()
    } else {
        events::parse(data)?
    };
    let replies = edge
        .link
        .client()
        .chat
        .list_canned_replies(pb::ListCannedRepliesRequest {
            prefix: query.prefix.unwrap_or_default(),
        })
        .await?
        .into_inner()
        .replies;
    value(CannedPayload {
        replies: replies.into_iter().map(|r| (r.shortcut, r.text)).collect(),
    })
}
