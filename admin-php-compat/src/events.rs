//! The legacy Socket.IO events (LEGACY.md §3, §4): their wire names and payloads, in one
//! table. Payloads from clients are parsed leniently where the legacy pages are loose (ids as
//! numbers or strings) and strictly everywhere else: a payload of the wrong shape is refused
//! with a reason, never half-applied.

use serde::Serialize;
use serde_json::Value;

/// Events clients send.
pub mod incoming {
    /// Visitor, right after connecting: `{room, username}`.
    pub const SUBSCRIBE: &str = "subscribe";
    /// Visitor message: `{username, message, room}`.
    pub const NEW_MESSAGE: &str = "new message";
    /// Visitor's "More msg" button: `{username, room, mid}`.
    pub const TAKE_HISTORY: &str = "take history";
    /// Admin opens a conversation: `{room, adm}`.
    pub const SUBSCRIBE_ADMIN: &str = "subscribe:servadm";
    /// Admin reply: `{username, message, room, adm}`.
    pub const NEW_MESSAGE_ADMIN: &str = "new message:servadm";
    /// PHP admin after creating an admin: no payload.
    pub const UPDATE_ADMIN_LIST: &str = "update admlist";
}

/// Events the server sends.
pub mod outgoing {
    /// A message: [`super::MessagePayload`].
    pub const NEW_MESSAGE: &str = "new message";
    /// A history message (the page prepends it): [`super::MessagePayload`].
    pub const NEW_MESSAGE_HISTORY: &str = "new message history";
    /// To admins: `{cid}`.
    pub const ONLINE: &str = "online";
    /// To admins: `{cid}`.
    pub const OFFLINE: &str = "offline";
    /// No payload: older messages exist.
    pub const ADD_HISTORY_BUTTON: &str = "add history button";
    /// No payload: the history request is being answered.
    pub const DROP_HISTORY_BUTTON: &str = "drop history button";
    /// Socketgram's own: a request was refused: [`super::ErrorPayload`].
    pub const ERROR: &str = "chat error";
}

/// The "payload" of events that carry none (`add history button`, `drop history button`):
/// zero arguments, as the legacy server sends them (an empty array emits no argument).
pub const NO_ARGS: [(); 0] = [];

/// Messages sent on `subscribe` (LEGACY.md §3).
pub const SUBSCRIBE_HISTORY: u32 = 20;
/// Messages sent per `take history`.
pub const HISTORY_PAGE: u32 = 10;

/// `new message` / `new message history` to clients (LEGACY.md §4).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MessagePayload {
    /// The visitor's id, a JSON number.
    pub username: u64,
    /// The text: HTML-escaped for the legacy pages (they insert it as HTML), plain for
    /// Socketgram's own widget.
    pub message: String,
    /// `"YYYY-MM-DD HH:MM:SS"`, wall-clock in the configured GMT offset.
    pub date: String,
    /// `"0"` for a visitor's message, else the admin's display name.
    pub adm: String,
    /// The message id.
    pub label: u64,
}

/// `online` / `offline` to admins.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PresencePayload {
    /// The visitor id as its handshake gave it (LEGACY.md §4).
    pub cid: String,
}

/// `chat error`: why a request was refused.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ErrorPayload {
    /// The event that was refused.
    pub event: String,
    /// A stable machine-readable code.
    pub code: &'static str,
    /// For people.
    pub message: String,
}

/// Why a payload was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PayloadError(pub String);

/// The fields of a client payload, read defensively.
pub struct Fields<'a>(&'a serde_json::Map<String, Value>);

impl<'a> Fields<'a> {
    /// The payload must be a JSON object.
    pub fn of(payload: &'a Value) -> Result<Self, PayloadError> {
        match payload {
            Value::Object(map) => Ok(Self(map)),
            Value::Null => Err(PayloadError(
                "the event has no payload; an object is expected".into(),
            )),
            other => Err(PayloadError(format!(
                "the payload is {}; an object is expected",
                kind(other)
            ))),
        }
    }

    /// A visitor id: a positive integer, as a number or a string of digits.
    pub fn id(&self, name: &str) -> Result<Option<u64>, PayloadError> {
        match self.0.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => n
                .as_u64()
                .filter(|&n| n > 0)
                .map(Some)
                .ok_or_else(|| PayloadError(format!("`{name}` must be a positive integer"))),
            Some(Value::String(s)) => parse_id(s)
                .map(Some)
                .ok_or_else(|| PayloadError(format!("`{name}` must be a positive integer"))),
            Some(other) => Err(PayloadError(format!(
                "`{name}` is {}; a number is expected",
                kind(other)
            ))),
        }
    }

    /// A string field (numbers are accepted as their decimal text, as the pages send ids).
    pub fn text(&self, name: &str) -> Result<Option<String>, PayloadError> {
        match self.0.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(Value::Number(n)) => Ok(Some(n.to_string())),
            Some(other) => Err(PayloadError(format!(
                "`{name}` is {}; a string is expected",
                kind(other)
            ))),
        }
    }

    /// A required string field.
    pub fn required_text(&self, name: &str) -> Result<String, PayloadError> {
        self.text(name)?
            .ok_or_else(|| PayloadError(format!("`{name}` is missing")))
    }
}

/// A visitor id in text: digits only, positive.
pub fn parse_id(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok().filter(|&n| n > 0)
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The text as the legacy pages must receive it: they insert `message` as HTML, so it is
/// escaped here and shows as typed (LEGACY.md §9.4).
pub fn legacy_html(text: &str) -> String {
    html_escape::encode_quoted_attribute(text).into_owned()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn ids_are_read_leniently_but_safely() {
        let p = json!({"a": 5, "b": "17", "c": "1e3", "d": -1, "e": {"x": 1}, "f": "", "g": 0});
        let f = Fields::of(&p).unwrap();
        assert_eq!(f.id("a").unwrap(), Some(5));
        assert_eq!(f.id("b").unwrap(), Some(17));
        assert_eq!(f.id("missing").unwrap(), None);
        for bad in ["c", "d", "e", "f", "g"] {
            assert!(f.id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn payloads_must_be_objects() {
        for bad in [json!(null), json!("x"), json!(3), json!([1])] {
            assert!(Fields::of(&bad).is_err());
        }
        let p = json!({"message": {"html": "<b>"}});
        assert!(Fields::of(&p).unwrap().text("message").is_err());
    }

    #[test]
    fn html_is_escaped_for_legacy_pages() {
        assert_eq!(
            legacy_html("<b>\"x\"</b> & 'y'"),
            "&lt;b&gt;&quot;x&quot;&lt;/b&gt; &amp; &#x27;y&#x27;"
        );
    }
}
