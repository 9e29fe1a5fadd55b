//! What sockets are sent, per flavor of client, and the rooms that group them: the payload
//! of a message (LEGACY.md §4) and the room names. Shared by the event handlers (`socket`) and
//! the live delivery (`fanout`).

use socketgram_admin_php_compat::events::{self, MessagePayload};
use socketgram_proto::v1 as pb;

use crate::files::FileLinks;

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
pub(crate) fn conversation_room(conversation: u64, flavor: Flavor) -> String {
    format!("c:{conversation}:{}", flavor.tag())
}

/// The room of admin sockets of one flavor.
pub(crate) fn admin_room(flavor: Flavor) -> String {
    format!("admins:{}", flavor.tag())
}

/// The legacy payload of a message for a flavor (LEGACY.md §4). Files are links in the
/// legacy pages' text, and a list of their own for Socketgram's pages.
pub fn payload(m: &pb::Message, flavor: Flavor, files: &FileLinks) -> MessagePayload {
    let to_support = m.direction == pb::Direction::ToSupport as i32;
    MessagePayload {
        username: m.conversation_id,
        message: match flavor {
            Flavor::Legacy => events::legacy_html(&files.legacy_text(m)),
            Flavor::Plain => m.text.clone(),
        },
        attachments: match flavor {
            Flavor::Legacy => Vec::new(),
            Flavor::Plain => m.attachments.iter().map(|a| files.payload(a)).collect(),
        },
        date: m.local_date.clone(),
        adm: if to_support {
            "0".into()
        } else {
            m.admin_display_name.clone()
        },
        label: m.id,
        author: None,
    }
}

/// A message as support's clients get it: Socketgram's own (plain) ones also learn which
/// admin wrote a reply (by login, where the payload's `adm` has the display name).
pub fn support_payload(m: &pb::Message, flavor: Flavor, files: &FileLinks) -> MessagePayload {
    let mut payload = payload(m, flavor, files);
    if flavor == Flavor::Plain
        && !m.admin_id.is_empty()
        && m.direction != pb::Direction::ToSupport as i32
    {
        payload.author = Some(m.admin_id.clone());
    }
    payload
}

/// Support's workflow payloads (token admins only), from the contract's messages.
pub(crate) mod workflow {
    use socketgram_admin_php_compat::workflow::{
        AssignedPayload, ContextPayload, ConversationPayload, ErasedPayload, NotePayload,
        StatusName, StatusPayload,
    };
    use socketgram_proto::v1 as pb;

    pub(crate) fn status_name(code: i32) -> StatusName {
        match pb::ConversationStatus::try_from(code).unwrap_or_default() {
            pb::ConversationStatus::Pending => StatusName::Pending,
            pb::ConversationStatus::Resolved => StatusName::Resolved,
            pb::ConversationStatus::Snoozed => StatusName::Snoozed,
            pb::ConversationStatus::Open | pb::ConversationStatus::Unspecified => StatusName::Open,
        }
    }

    pub(crate) fn status_code(name: StatusName) -> pb::ConversationStatus {
        match name {
            StatusName::Open => pb::ConversationStatus::Open,
            StatusName::Pending => pb::ConversationStatus::Pending,
            StatusName::Resolved => pb::ConversationStatus::Resolved,
            StatusName::Snoozed => pb::ConversationStatus::Snoozed,
        }
    }

    fn nonzero(ms: i64) -> Option<i64> {
        (ms != 0).then_some(ms)
    }

    fn nonempty(text: &str) -> Option<String> {
        (!text.is_empty()).then(|| text.to_owned())
    }

    pub(crate) fn conversation(
        c: &pb::Conversation,
        files: &crate::files::FileLinks,
    ) -> ConversationPayload {
        ConversationPayload {
            cid: c.conversation_id,
            status: status_name(c.status),
            snoozed_until_ms: nonzero(c.snoozed_until_ms),
            assignee: nonempty(&c.assignee),
            online: c.online,
            unread_by_support: c.unread_by_support,
            support_read_up_to: c.support_read_up_to,
            visitor_read_up_to: c.visitor_read_up_to,
            context: c
                .context
                .as_ref()
                .map(|context| self::context(c.conversation_id, context)),
            channel: if c.telegram_linked { "telegram" } else { "web" },
            last_message: c
                .last_message
                .as_ref()
                .map(|m| super::support_payload(m, super::Flavor::Plain, files)),
        }
    }

    pub(crate) fn context(cid: u64, c: &pb::VisitorContext) -> ContextPayload {
        ContextPayload {
            cid,
            verified: c.verified.as_ref().map(Into::into),
            page: c.page.as_ref().map(Into::into),
            updated_at_ms: c.updated_at_ms,
        }
    }

    pub(crate) fn assigned(a: &pb::ConversationAssigned) -> AssignedPayload {
        AssignedPayload {
            cid: a.conversation_id,
            assignee: nonempty(&a.assignee),
            by: nonempty(&a.by),
        }
    }

    pub(crate) fn status(s: &pb::StatusChanged) -> StatusPayload {
        StatusPayload {
            cid: s.conversation_id,
            status: status_name(s.status),
            snoozed_until_ms: nonzero(s.snoozed_until_ms),
            cause: match pb::StatusCause::try_from(s.cause).unwrap_or_default() {
                pb::StatusCause::Support => "support",
                pb::StatusCause::VisitorMessage => "visitor_message",
                pb::StatusCause::SnoozeEnded => "snooze_ended",
                pb::StatusCause::Unspecified => "unspecified",
            },
            by: nonempty(&s.by),
        }
    }

    pub(crate) fn note(n: &pb::Note) -> NotePayload {
        NotePayload {
            cid: n.conversation_id,
            id: n.id,
            admin: n.admin_id.clone(),
            text: n.text.clone(),
            created_at_ms: n.created_at_ms,
        }
    }

    pub(crate) fn erased(e: &pb::Erasure) -> ErasedPayload {
        ErasedPayload {
            cid: e.conversation_id,
            by: e.erased_by.clone(),
            erased_at_ms: e.erased_at_ms,
        }
    }
}
