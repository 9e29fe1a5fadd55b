//! What sockets are sent, per flavor of client, and the rooms that group them: the payload
//! of a message (LEGACY.md §4) and the room names. Shared by the event handlers (`socket`) and
//! the live delivery (`fanout`).

use socketgram_admin_php_compat::events::{self, MessagePayload};
use socketgram_proto::v1 as pb;

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
