//! Socketgram's own support-workflow events on the socket, for support clients other than the
//! legacy PHP admin (which knows none of them and is sent none): a conversation's state,
//! assignment, status, private notes, canned replies, the visitor's context, erasure. Their
//! wire names and payloads, in one table, as [`crate::events`] has the legacy ones.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use socketgram_common::context::{Page, Vouched};

/// Events support clients send (each answered by its acknowledgement).
pub mod incoming {
    /// `{username}`: the conversation as support sees it: [`super::ConversationPayload`].
    pub const CONVERSATION: &str = "conversation:servadm";
    /// `{username, assignee, take, adm}`: assign to `assignee` (empty or absent: nobody), or
    /// with `take` to oneself only if nobody has it.
    pub const ASSIGN: &str = "assign:servadm";
    /// `{username, status, snoozed_until_ms, adm}`: `open`, `pending`, `resolved` or `snoozed`
    /// (until the time given, in milliseconds since 1970).
    pub const STATUS: &str = "status:servadm";
    /// `{username, text, adm}`: a private note, never sent to the visitor.
    pub const NOTE: &str = "note:servadm";
    /// `{prefix}`: the team's canned replies whose shortcut starts so, for the client to
    /// expand `/shortcut` before sending.
    pub const CANNED_REPLIES: &str = "canned replies:servadm";
    /// `{filter, before}`: a page of conversations, most recently active first:
    /// [`super::InboxPayload`].
    pub const INBOX: &str = "inbox:servadm";
    /// `{query}`: the conversations a text finds (visitor id, vouched name or email, words of
    /// a message): [`super::InboxPayload`].
    pub const SEARCH: &str = "search:servadm";
    /// `{username, before}`: a page of a conversation's history, newest first:
    /// [`super::HistoryPayload`].
    pub const HISTORY: &str = "history:servadm";
    /// `{username, mid}`: support has read the conversation up to message `mid`.
    pub const READ: &str = "read:servadm";
    /// `{username}`: the conversation's private notes, oldest first: [`super::NotesPayload`].
    pub const NOTES: &str = "notes:servadm";
    /// No payload: who is online now: [`super::OnlinePayload`].
    pub const ONLINE: &str = "online:servadm";
}

/// Events support clients (token admins) receive.
pub mod outgoing {
    /// [`super::AssignedPayload`].
    pub const ASSIGNED: &str = "assigned";
    /// [`super::StatusPayload`].
    pub const STATUS: &str = "status";
    /// [`super::NotePayload`].
    pub const NOTE: &str = "note";
    /// [`super::ContextPayload`].
    pub const CONTEXT: &str = "context";
    /// [`super::ErasedPayload`].
    pub const ERASED: &str = "erased";
}

/// `conversation:servadm {username}`.
#[derive(Debug, Deserialize)]
pub struct ConversationQuery {
    #[serde(deserialize_with = "crate::events::required_id")]
    pub username: u64,
}

/// `assign:servadm {username, assignee, take, adm}`.
#[derive(Debug, Deserialize)]
pub struct Assign {
    #[serde(deserialize_with = "crate::events::required_id")]
    pub username: u64,
    #[serde(default, deserialize_with = "crate::events::text")]
    pub assignee: Option<String>,
    #[serde(default)]
    pub take: bool,
    #[serde(default, deserialize_with = "crate::events::text")]
    pub adm: Option<String>,
}

/// `status:servadm {username, status, snoozed_until_ms, adm}`.
#[derive(Debug, Deserialize)]
pub struct SetStatus {
    #[serde(deserialize_with = "crate::events::required_id")]
    pub username: u64,
    pub status: StatusName,
    #[serde(default)]
    pub snoozed_until_ms: i64,
    #[serde(default, deserialize_with = "crate::events::text")]
    pub adm: Option<String>,
}

/// A conversation's status by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StatusName {
    Open,
    Pending,
    Resolved,
    Snoozed,
}

/// `note:servadm {username, text, adm}`.
#[derive(Debug, Deserialize)]
pub struct AddNote {
    #[serde(deserialize_with = "crate::events::required_id")]
    pub username: u64,
    #[serde(deserialize_with = "crate::events::required_text")]
    pub text: String,
    #[serde(default, deserialize_with = "crate::events::text")]
    pub adm: Option<String>,
}

/// `inbox:servadm {filter, before}`.
#[derive(Debug, Default, Deserialize)]
pub struct InboxQuery {
    #[serde(default)]
    pub filter: InboxFilter,
    /// Only conversations whose last message id is smaller (the next page).
    #[serde(default, deserialize_with = "crate::events::optional_id")]
    pub before: Option<u64>,
}

/// Which conversations an inbox page lists.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InboxFilter {
    #[default]
    All,
    /// Those assigned to the admin asking.
    Mine,
    Unassigned,
    Open,
    Pending,
    Resolved,
}

/// `search:servadm {query}`.
#[derive(Debug, Deserialize)]
pub struct SearchQuery {
    #[serde(deserialize_with = "crate::events::required_text")]
    pub query: String,
}

/// `history:servadm {username, before}`.
#[derive(Debug, Deserialize)]
pub struct HistoryQuery {
    #[serde(deserialize_with = "crate::events::required_id")]
    pub username: u64,
    /// Strictly older than this message id; absent: from the newest.
    #[serde(default, deserialize_with = "crate::events::optional_id")]
    pub before: Option<u64>,
}

/// `read:servadm {username, mid}`.
#[derive(Debug, Deserialize)]
pub struct ReadUpTo {
    #[serde(deserialize_with = "crate::events::required_id")]
    pub username: u64,
    #[serde(deserialize_with = "crate::events::required_id")]
    pub mid: u64,
}

/// The answer of `inbox:servadm` and `search:servadm`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct InboxPayload {
    pub conversations: Vec<ConversationPayload>,
    pub has_more: bool,
}

/// The answer of `history:servadm`: messages newest first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct HistoryPayload {
    pub messages: Vec<crate::events::MessagePayload>,
    pub has_more: bool,
}

/// The answer of `read:servadm`: the read marks as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ReadMarksPayload {
    pub support_read_up_to: u64,
    pub visitor_read_up_to: u64,
}

/// The answer of `notes:servadm`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NotesPayload {
    pub notes: Vec<NotePayload>,
}

/// The answer of `online:servadm`: visitors (ids) and support staff (logins) online now.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct OnlinePayload {
    pub visitors: Vec<u64>,
    pub admins: Vec<String>,
}

/// `canned replies:servadm {prefix}`.
#[derive(Debug, Default, Deserialize)]
pub struct CannedQuery {
    #[serde(default, deserialize_with = "crate::events::text")]
    pub prefix: Option<String>,
}

/// A conversation as support sees it (the answer of `conversation:servadm`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ConversationPayload {
    pub cid: u64,
    pub status: StatusName,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snoozed_until_ms: Option<i64>,
    /// The admin it belongs to; absent: nobody.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub assignee: Option<String>,
    pub online: bool,
    pub unread_by_support: u32,
    pub support_read_up_to: u64,
    pub visitor_read_up_to: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub context: Option<ContextPayload>,
    /// `web`, or `telegram` when a Telegram chat is linked to the visitor.
    pub channel: &'static str,
    /// The newest message, as `new message` carries it; absent before the first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_message: Option<crate::events::MessagePayload>,
}

/// What is known of the visitor: `verified` (vouched for by the host site) and `page`
/// (reported by the visitor's page, unverified).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ContextPayload {
    pub cid: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verified: Option<Vouched>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub page: Option<Page>,
    pub updated_at_ms: i64,
}

/// `assigned`: conversation `cid` now belongs to `assignee` (absent: nobody), by `by`
/// (absent: auto-assignment).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AssignedPayload {
    pub cid: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub assignee: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
}

/// `status`: conversation `cid`'s status changed, because of `cause` (`support`, with the
/// admin in `by`; `visitor_message`; `snooze_ended`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StatusPayload {
    pub cid: u64,
    pub status: StatusName,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snoozed_until_ms: Option<i64>,
    pub cause: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
}

/// `note`: a private note on conversation `cid` (also the answer of `note:servadm`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NotePayload {
    pub cid: u64,
    pub id: u64,
    pub admin: String,
    pub text: String,
    pub created_at_ms: i64,
}

/// `erased`: conversation `cid` was erased by `by`; clients drop what they show of it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ErasedPayload {
    pub cid: u64,
    pub by: String,
    pub erased_at_ms: i64,
}

/// The answer of `canned replies:servadm`: shortcut -> text.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CannedPayload {
    pub replies: BTreeMap<String, String>,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::events::parse;

    #[test]
    fn payloads_are_read_by_name_and_shape() {
        let s: SetStatus =
            parse(&json!({"username": "12", "status": "snoozed", "snoozed_until_ms": 5})).unwrap();
        assert_eq!(
            (s.username, s.status, s.snoozed_until_ms),
            (12, StatusName::Snoozed, 5)
        );
        assert!(parse::<SetStatus>(&json!({"username": 12, "status": "closed"})).is_err());
        let a: Assign = parse(&json!({"username": 12, "take": true})).unwrap();
        assert!(a.take && a.assignee.is_none());
        assert!(parse::<AddNote>(&json!({"username": 12})).is_err());
        assert_eq!(
            parse::<ConversationQuery>(&json!({"username": 3}))
                .unwrap()
                .username,
            3
        );
        assert!(parse::<CannedQuery>(&json!({})).unwrap().prefix.is_none());
    }
}
