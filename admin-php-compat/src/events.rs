//! The legacy Socket.IO events (LEGACY.md §3, §4): their wire names and payloads, in one
//! table. Payloads from clients are parsed leniently where the legacy pages are loose (ids as
//! numbers or strings) and strictly everywhere else: a payload of the wrong shape is refused
//! with a reason, never half-applied.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use socketgram_common::context::Page;

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
    /// Socketgram's own, from the widget: the visitor has seen its conversation up to
    /// `{mid}` (a message id).
    pub const MARK_READ: &str = "mark read";
    /// Socketgram's own, from the widget: the visitor's draft is `{chars}` long (0: it
    /// stopped typing), with the draft itself in `draft` (shown to support only with
    /// `[core] typing_preview`).
    pub const TYPING: &str = "typing";
    /// Socketgram's own, from a support client: typing to visitor `{username, chars}`
    /// (`adm` as on `new message:servadm`).
    pub const TYPING_ADMIN: &str = "typing:servadm";
    /// Socketgram's own, from the widget: a file `{name, size}` is about to be uploaded; the
    /// answer is where to send its bytes ([`super::UploadTicketPayload`]).
    pub const UPLOAD: &str = "upload";
    /// Socketgram's own, from a support client: as `upload`, for visitor `{username}`.
    pub const UPLOAD_ADMIN: &str = "upload:servadm";
    /// Socketgram's own, from the widget ("Continue in Telegram"), no payload: a one-time
    /// link to the bot that links the visitor's Telegram chat to its conversation
    /// ([`super::TelegramLinkPayload`]).
    pub const TELEGRAM_LINK: &str = "telegram link";
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
    /// Socketgram's own, to the widget and token admins only (the legacy pages know no read
    /// marks): a read mark moved: [`super::ReadPayload`].
    pub const READ: &str = "read";
    /// Socketgram's own, to the widget and token admins only: someone types:
    /// [`super::TypingPayload`].
    pub const TYPING: &str = "typing";
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
    /// The login of the admin who wrote it: only to Socketgram's own support clients (the
    /// legacy pages and the PHP admin get exactly the legacy payload).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    /// Its files: only to Socketgram's own clients (the legacy pages get a line with a link
    /// for each in `message`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<FilePayload>,
}

/// A file of a message, as Socketgram's own clients get it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FilePayload {
    pub id: u64,
    pub name: String,
    /// Sniffed from the content.
    #[serde(rename = "type")]
    pub content_type: String,
    pub size: u64,
    /// Images: pixels (0 otherwise).
    pub width: u32,
    pub height: u32,
    /// Where to fetch it: a path on the chat server, signed, for a while.
    pub url: String,
    /// Images: where to fetch the thumbnail.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thumb_url: Option<String>,
}

/// The answer to `upload`: where to send the file's bytes (one `POST`, the bytes as the
/// body) and the limits the server holds them to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct UploadTicketPayload {
    pub url: String,
    pub max_bytes: u64,
    pub max_files: u32,
    pub types: Vec<String>,
}

/// The answer to `telegram link`: the bot's start link (`https://t.me/<bot>?start=<token>`),
/// which links the Telegram chat that opens it to the visitor once, until `expires_at_ms`
/// (milliseconds since 1970).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TelegramLinkPayload {
    pub url: String,
    pub expires_at_ms: i64,
}

/// `online` / `offline` to admins.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PresencePayload {
    /// The visitor id as its handshake gave it (LEGACY.md §4).
    pub cid: String,
}

/// `read`: `reader` (`"support"` or `"visitor"`) has read conversation `cid` up to message
/// `mid`. The widget shows "Seen" under the visitor's messages up to support's mark.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ReadPayload {
    pub cid: u64,
    pub reader: &'static str,
    pub mid: u64,
}

/// `typing`: in conversation `cid`, the visitor or support (`typist`: `"visitor"` or
/// `"support"`, with the admin's `name`) types a draft of `chars` characters (`active` false:
/// stopped). Show it for `shown_for_ms` unless told again.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TypingPayload {
    pub cid: u64,
    pub typist: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub active: bool,
    pub chars: u32,
    /// The visitor's draft, only with `[core] typing_preview`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preview: Option<String>,
    pub shown_for_ms: u32,
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

/// `subscribe {room, username}` (LEGACY.md §3); the widget sends `{since, page}` or nothing.
#[derive(Debug, Default, Deserialize)]
pub struct Subscribe {
    #[serde(default, deserialize_with = "visitor_id")]
    pub username: Option<u64>,
    #[serde(default, deserialize_with = "text")]
    pub room: Option<String>,
    /// Resume after this message id (the widget).
    #[serde(default, deserialize_with = "visitor_id")]
    pub since: Option<u64>,
    /// What the widget's page reports of itself (unverified).
    #[serde(default)]
    pub page: Option<Page>,
}

/// `new message {username, message, room}`, with the widget's `client_msg_id`.
#[derive(Debug, Deserialize)]
pub struct NewMessage {
    #[serde(default, deserialize_with = "visitor_id")]
    pub username: Option<u64>,
    #[serde(default, deserialize_with = "text")]
    pub room: Option<String>,
    #[serde(deserialize_with = "required_text")]
    pub message: String,
    #[serde(default, deserialize_with = "text")]
    pub client_msg_id: Option<String>,
    /// Socketgram's own: files uploaded for it (their ids).
    #[serde(default, deserialize_with = "ids")]
    pub attachments: Vec<u64>,
}

/// `upload {name, size}` (the widget; `username`/`room` optional, as on its other events).
#[derive(Debug, Deserialize)]
pub struct Upload {
    #[serde(default, deserialize_with = "visitor_id")]
    pub username: Option<u64>,
    #[serde(default, deserialize_with = "text")]
    pub room: Option<String>,
    #[serde(deserialize_with = "required_text")]
    pub name: String,
    /// Bytes the file has.
    #[serde(deserialize_with = "required_size")]
    pub size: u64,
}

/// `telegram link` (the widget: no payload; `username`/`room` optional, as on its other
/// events).
#[derive(Debug, Deserialize)]
pub struct TelegramLink {
    #[serde(default, deserialize_with = "visitor_id")]
    pub username: Option<u64>,
    #[serde(default, deserialize_with = "text")]
    pub room: Option<String>,
}

/// `upload:servadm {username, name, size}`.
#[derive(Debug, Deserialize)]
pub struct UploadAdmin {
    /// The visitor the file is for.
    #[serde(deserialize_with = "required_id")]
    pub username: u64,
    #[serde(deserialize_with = "required_text")]
    pub name: String,
    #[serde(deserialize_with = "required_size")]
    pub size: u64,
    #[serde(default, deserialize_with = "text")]
    pub adm: Option<String>,
}

/// `take history {username, room, mid}`.
#[derive(Debug, Deserialize)]
pub struct TakeHistory {
    #[serde(default, deserialize_with = "visitor_id")]
    pub username: Option<u64>,
    #[serde(default, deserialize_with = "text")]
    pub room: Option<String>,
    /// Older than this message id.
    #[serde(deserialize_with = "required_id")]
    pub mid: u64,
}

/// `mark read {mid}` (the widget; `username`/`room` optional, as on its other events).
#[derive(Debug, Deserialize)]
pub struct MarkRead {
    #[serde(default, deserialize_with = "visitor_id")]
    pub username: Option<u64>,
    #[serde(default, deserialize_with = "text")]
    pub room: Option<String>,
    /// Everything up to and including this message id is seen.
    #[serde(deserialize_with = "required_id")]
    pub mid: u64,
}

/// `typing {chars, draft}` (the widget; `username`/`room` optional, as on its other events).
#[derive(Debug, Deserialize)]
pub struct Typing {
    #[serde(default, deserialize_with = "visitor_id")]
    pub username: Option<u64>,
    #[serde(default, deserialize_with = "text")]
    pub room: Option<String>,
    /// The draft's length in characters; 0: stopped typing.
    #[serde(deserialize_with = "required_count")]
    pub chars: u32,
    #[serde(default, deserialize_with = "text")]
    pub draft: Option<String>,
}

/// `typing:servadm {username, chars, adm}`.
#[derive(Debug, Deserialize)]
pub struct TypingAdmin {
    /// The visitor typed to.
    #[serde(deserialize_with = "required_id")]
    pub username: u64,
    #[serde(deserialize_with = "required_count")]
    pub chars: u32,
    #[serde(default, deserialize_with = "text")]
    pub adm: Option<String>,
}

/// `subscribe:servadm {room, adm}`.
#[derive(Debug, Deserialize)]
pub struct SubscribeAdmin {
    #[serde(deserialize_with = "required_text")]
    pub room: String,
    /// The admin login (legacy admins name themselves).
    #[serde(default, deserialize_with = "text")]
    pub adm: Option<String>,
}

/// `new message:servadm {username, message, room, adm}`, with `client_msg_id`.
#[derive(Debug, Deserialize)]
pub struct NewMessageAdmin {
    /// The visitor replied to.
    #[serde(deserialize_with = "required_id")]
    pub username: u64,
    /// The visitor's room: required of the legacy shared-parameter login (the PHP admin sends
    /// it); a token admin is known without it, and when one gives it, it must match.
    #[serde(default, deserialize_with = "text")]
    pub room: Option<String>,
    #[serde(deserialize_with = "required_text")]
    pub message: String,
    #[serde(default, deserialize_with = "text")]
    pub adm: Option<String>,
    #[serde(default, deserialize_with = "text")]
    pub client_msg_id: Option<String>,
    /// Socketgram's own: files uploaded for it (their ids).
    #[serde(default, deserialize_with = "ids")]
    pub attachments: Vec<u64>,
}

/// The names a visitor's payload gives itself (LEGACY.md §9.1: checked against the
/// handshake's identity, never trusted).
pub trait Claims {
    fn username(&self) -> Option<u64>;
    fn room(&self) -> Option<&str>;
}

macro_rules! claims {
    ($($t:ty),*) => {$(
        impl Claims for $t {
            fn username(&self) -> Option<u64> {
                self.username
            }
            fn room(&self) -> Option<&str> {
                self.room.as_deref()
            }
        }
    )*};
}
claims!(
    Subscribe,
    NewMessage,
    TakeHistory,
    MarkRead,
    Typing,
    Upload,
    TelegramLink
);

/// Reads a client payload as `T`: it must be a JSON object, and every field the shape it
/// should have; the error names the field.
pub fn parse<T: serde::de::DeserializeOwned>(payload: &Value) -> Result<T, PayloadError> {
    match payload {
        Value::Object(_) => {}
        Value::Null => {
            return Err(PayloadError(
                "the event has no payload; an object is expected".into(),
            ));
        }
        other => {
            return Err(PayloadError(format!(
                "the payload is {}; an object is expected",
                kind(other)
            )));
        }
    }
    serde_path_to_error::deserialize(payload).map_err(|e| {
        let field = e.path().to_string();
        let inner = e.into_inner().to_string();
        match inner.strip_prefix("missing field ") {
            Some(name) => PayloadError(format!("{name} is missing")),
            None => PayloadError(format!("`{field}` {inner}")),
        }
    })
}

/// A visitor id: a positive integer, as a number or a string of digits.
fn visitor_id<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    use serde::de::Error as _;
    match Value::deserialize(d)? {
        Value::Null => Ok(None),
        Value::Number(n) => n
            .as_u64()
            .filter(|&n| n > 0)
            .map(Some)
            .ok_or_else(|| D::Error::custom("must be a positive integer")),
        Value::String(s) => parse_id(&s)
            .map(Some)
            .ok_or_else(|| D::Error::custom("must be a positive integer")),
        other => Err(D::Error::custom(format!(
            "is {}; a number is expected",
            kind(&other)
        ))),
    }
}

pub(crate) fn required_id<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    use serde::de::Error as _;
    visitor_id(d)?.ok_or_else(|| D::Error::custom("is missing"))
}

/// An id that may be left out (`null` or absent): a positive integer when given.
pub(crate) fn optional_id<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    visitor_id(d)
}

/// The most ids a list of files may hold (more is refused before the core counts them).
const MAX_IDS: usize = 100;

/// A list of ids (files of a message): positive integers, as numbers or digit strings.
fn ids<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<u64>, D::Error> {
    use serde::de::Error as _;
    let items = match Value::deserialize(d)? {
        Value::Null => return Ok(Vec::new()),
        Value::Array(items) if items.len() <= MAX_IDS => items,
        Value::Array(_) => return Err(D::Error::custom(format!("has more than {MAX_IDS} ids"))),
        other => {
            return Err(D::Error::custom(format!(
                "is {}; a list of ids is expected",
                kind(&other)
            )));
        }
    };
    items
        .iter()
        .map(|item| match item {
            Value::Number(n) => n.as_u64().filter(|&n| n > 0),
            Value::String(s) => parse_id(s),
            _ => None,
        })
        .collect::<Option<Vec<u64>>>()
        .ok_or_else(|| D::Error::custom("must hold only positive ids"))
}

/// A size in bytes: a non-negative integer number.
fn required_size<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    use serde::de::Error as _;
    match Value::deserialize(d)? {
        Value::Number(n) => n
            .as_u64()
            .ok_or_else(|| D::Error::custom("must be a whole number of bytes")),
        Value::Null => Err(D::Error::custom("is missing")),
        other => Err(D::Error::custom(format!(
            "is {}; a number is expected",
            kind(&other)
        ))),
    }
}

/// A count: a non-negative integer number (a draft's length), at most `u32::MAX`.
fn required_count<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    use serde::de::Error as _;
    match Value::deserialize(d)? {
        Value::Number(n) => n
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| D::Error::custom("must be a whole number of characters")),
        Value::Null => Err(D::Error::custom("is missing")),
        other => Err(D::Error::custom(format!(
            "is {}; a number is expected",
            kind(&other)
        ))),
    }
}

/// A string field (numbers are accepted as their decimal text, as the pages send ids).
pub(crate) fn text<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    use serde::de::Error as _;
    match Value::deserialize(d)? {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s)),
        Value::Number(n) => Ok(Some(n.to_string())),
        other => Err(D::Error::custom(format!(
            "is {}; a string is expected",
            kind(&other)
        ))),
    }
}

pub(crate) fn required_text<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    use serde::de::Error as _;
    text(d)?.ok_or_else(|| D::Error::custom("is missing"))
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
        let mid = |v: Value| parse::<TakeHistory>(&json!({ "mid": v })).map(|p| p.mid);
        assert_eq!(mid(json!(5)), Ok(5));
        assert_eq!(mid(json!("17")), Ok(17), "the pages send ids as text");
        for bad in [
            json!("1e3"),
            json!(-1),
            json!({"x": 1}),
            json!(""),
            json!(0),
        ] {
            let e = mid(bad.clone()).unwrap_err();
            assert!(e.0.starts_with("`mid` "), "{bad}: {e}");
        }
        let e = parse::<TakeHistory>(&json!({})).unwrap_err();
        assert_eq!(e.0, "`mid` is missing");
        let p: Subscribe = parse(&json!({"username": "12", "since": null})).unwrap();
        assert_eq!((p.username, p.since), (Some(12), None));
    }

    #[test]
    fn payloads_must_be_objects_with_fields_of_their_shape() {
        for bad in [json!(null), json!("x"), json!(3), json!([1])] {
            assert!(parse::<Subscribe>(&bad).is_err());
        }
        let e = parse::<NewMessage>(&json!({"message": {"html": "<b>"}})).unwrap_err();
        assert_eq!(e.0, "`message` is an object; a string is expected");
        let e = parse::<NewMessage>(&json!({"room": "r"})).unwrap_err();
        assert_eq!(e.0, "`message` is missing");
        let p: NewMessage = parse(&json!({"message": 42, "extra": true})).unwrap();
        assert_eq!(
            p.message, "42",
            "numbers read as their text; unknown fields ignored"
        );
    }

    #[test]
    fn html_is_escaped_for_legacy_pages() {
        assert_eq!(
            legacy_html("<b>\"x\"</b> & 'y'"),
            "&lt;b&gt;&quot;x&quot;&lt;/b&gt; &amp; &#x27;y&#x27;"
        );
    }
}
