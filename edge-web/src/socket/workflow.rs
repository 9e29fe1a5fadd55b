//! Support's workflow events (`conversation:servadm`, `assign:servadm`, `status:servadm`,
//! `note:servadm`, `canned replies:servadm`, and the inbox's `inbox:servadm`, `search:servadm`,
//! `history:servadm`, `read:servadm`, `notes:servadm`, `online:servadm`): each one call to
//! the core, answered with what it stored or read. Admin sockets only, as `adm` or the token
//! names the admin; the core checks the rest (a known admin, a stored conversation) and its
//! refusals are answered as they come.

use serde::Serialize;
use serde_json::Value;
use socketgram_admin_php_compat::{
    events,
    workflow::{
        AddNote, Assign, CannedPayload, CannedQuery, ConversationQuery, HistoryPayload,
        HistoryQuery, InboxFilter, InboxPayload, InboxQuery, NotesPayload, OnlinePayload,
        ReadMarksPayload, ReadUpTo, SearchQuery, SetStatus,
    },
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
    value(wire::conversation(&conversation, &edge.files))
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
    value(wire::conversation(&conversation, &edge.files))
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
    value(wire::conversation(&conversation, &edge.files))
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

/// Conversations per inbox page.
const INBOX_PAGE: u32 = 50;
/// Messages per `history:servadm` page.
const HISTORY_PAGE: u32 = 30;

/// One page of `ListConversations` (at most [`INBOX_PAGE`]), as `inbox:servadm` answers it.
async fn inbox(edge: &Edge, request: pb::ListConversationsRequest) -> Answer {
    let page = edge
        .link
        .client()
        .chat
        .list_conversations(pb::ListConversationsRequest {
            limit: INBOX_PAGE,
            ..request
        })
        .await?
        .into_inner();
    value(InboxPayload {
        conversations: page
            .conversations
            .iter()
            .map(|c| wire::conversation(c, &edge.files))
            .collect(),
        has_more: page.has_more,
    })
}

/// A page of conversations, most recently active first, of those the filter keeps (`mine`:
/// the asking admin's).
pub async fn inbox_page(edge: &Edge, peer: &Peer, data: &Value) -> Answer {
    let query: InboxQuery = if data.is_null() {
        InboxQuery::default()
    } else {
        events::parse(data)?
    };
    let (assignee, statuses) = match query.filter {
        InboxFilter::All => (None, vec![]),
        InboxFilter::Mine => (Some(admin_id(peer, None)?), vec![]),
        InboxFilter::Unassigned => (Some(String::new()), vec![]),
        InboxFilter::Open => (None, vec![pb::ConversationStatus::Open]),
        InboxFilter::Pending => (None, vec![pb::ConversationStatus::Pending]),
        InboxFilter::Resolved => (None, vec![pb::ConversationStatus::Resolved]),
    };
    let request = pb::ListConversationsRequest {
        before_last_message_id: query.before.unwrap_or_default(),
        assignee,
        statuses: statuses.into_iter().map(Into::into).collect(),
        ..Default::default()
    };
    inbox(edge, request).await
}

/// The conversations a text finds: a visitor id, what the host site vouched for, or words of
/// a message.
pub async fn search(edge: &Edge, data: &Value) -> Answer {
    let query: SearchQuery = events::parse(data)?;
    let request = pb::ListConversationsRequest {
        search: query.query,
        ..Default::default()
    };
    inbox(edge, request).await
}

/// A page of a conversation's history, newest first, older than `before`.
pub async fn history(edge: &Edge, data: &Value) -> Answer {
    let query: HistoryQuery = events::parse(data)?;
    let page = edge
        .link
        .client()
        .chat
        .history(pb::HistoryRequest {
            conversation_id: query.username,
            before_id: query.before.unwrap_or_default(),
            limit: HISTORY_PAGE,
            after_id: 0,
        })
        .await?
        .into_inner();
    value(HistoryPayload {
        messages: page
            .messages
            .iter()
            .map(|m| crate::wire::support_payload(m, crate::wire::Flavor::Plain, &edge.files))
            .collect(),
        has_more: page.has_more,
    })
}

/// Support has read the conversation up to `mid` (marks never move back).
pub async fn read(edge: &Edge, data: &Value) -> Answer {
    let request: ReadUpTo = events::parse(data)?;
    let conversation = edge
        .link
        .client()
        .chat
        .mark_read(pb::MarkReadRequest {
            conversation_id: request.username,
            reader: pb::Reader::Support.into(),
            up_to_message_id: request.mid,
        })
        .await?
        .into_inner();
    value(ReadMarksPayload {
        support_read_up_to: conversation.support_read_up_to,
        visitor_read_up_to: conversation.visitor_read_up_to,
    })
}

/// The conversation's private notes, oldest first.
pub async fn notes(edge: &Edge, data: &Value) -> Answer {
    let query: ConversationQuery = events::parse(data)?;
    let notes = edge
        .link
        .client()
        .chat
        .list_notes(pb::ListNotesRequest {
            conversation_id: query.username,
        })
        .await?
        .into_inner()
        .notes;
    value(NotesPayload {
        notes: notes.iter().map(wire::note).collect(),
    })
}

/// Who is online now: visitors and support staff.
pub async fn online(edge: &Edge) -> Answer {
    let online = edge
        .link
        .client()
        .chat
        .list_online(pb::ListOnlineRequest {})
        .await?
        .into_inner();
    value(OnlinePayload {
        visitors: online.online,
        admins: online.admins,
    })
}
