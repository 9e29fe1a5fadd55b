//! A Bot API server of our own on loopback, for the Telegram edge's end-to-end tests: the
//! bot under test points `telegram.api_url` here.
//!
//! It serves `/bot<token>/<method>` the way Telegram does for what the edge calls (getMe,
//! getUpdates with long polling, sendMessage, deleteMessage, getWebhookInfo, setWebhook,
//! deleteWebhook), records every call, and delivers the updates a test feeds it: through
//! getUpdates, or (once a webhook is set) by POSTing them to the webhook with the secret
//! token header, again until the bot answers 200, as Telegram does. It can be told to answer
//! the next calls of a method with a fault: 429 with `retry_after`, a 5xx, a 403, or a reply
//! that is not the Bot API's JSON, and to answer sendMessage late (the message already in the
//! chat). Tests wait on what it records, under a timeout.

use std::{
    collections::VecDeque,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{
    Json, Router,
    body::Bytes,
    extract::{Path, State},
    http::{HeaderMap, StatusCode, header::CONTENT_TYPE},
    response::{IntoResponse, Response},
    routing::any,
};
use serde_json::{Value, json};
use tokio::{net::TcpListener, sync::watch, task::JoinHandle};

/// How long a test waits for the bot to do something.
pub const WAIT: Duration = Duration::from_secs(20);

/// The bot's own user id (the token starts with it).
pub const BOT_ID: i64 = 123_456;

/// A scripted answer instead of the normal one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// 429 Too Many Requests with `parameters.retry_after` (seconds).
    TooManyRequests { retry_after: u32 },
    /// A 5xx with Telegram's JSON error body.
    ServerError(u16),
    /// 403 with this description, e.g. "Forbidden: bot was blocked by the user".
    Forbidden(String),
    /// 200 with a body that is not the Bot API's JSON (a proxy's error page).
    Garbage,
}

/// One call the bot made.
#[derive(Clone, Debug)]
pub struct Call {
    pub method: String,
    /// The JSON body (`Null` when there was none).
    pub body: Value,
    /// The HTTP status answered.
    pub status: u16,
    /// Whether the answer was the Bot API's `{"ok": true, ...}` (a garbage 200 is not).
    pub ok: bool,
    pub at: Instant,
}

/// A message the bot sent (a sendMessage answered 200).
#[derive(Clone, Debug)]
pub struct Sent {
    pub chat_id: i64,
    pub text: String,
    pub parse_mode: Option<String>,
    /// `reply_markup` as sent: a keyboard, a force-reply, ...
    pub reply_markup: Option<Value>,
    pub at: Instant,
}

impl Sent {
    /// The reply keyboard's button labels, row by row (empty when there is none).
    pub fn keyboard(&self) -> Vec<Vec<String>> {
        self.reply_markup
            .as_ref()
            .and_then(|m| m.get("keyboard"))
            .and_then(Value::as_array)
            .map(|rows| {
                rows.iter()
                    .map(|row| {
                        row.as_array()
                            .into_iter()
                            .flatten()
                            .filter_map(|b| {
                                b.get("text")
                                    .and_then(Value::as_str)
                                    .or_else(|| b.as_str())
                                    .map(str::to_owned)
                            })
                            .collect()
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Whether the message asks for a reply (force_reply).
    pub fn forces_reply(&self) -> bool {
        self.reply_markup
            .as_ref()
            .and_then(|m| m.get("force_reply"))
            .and_then(Value::as_bool)
            .unwrap_or(false)
    }
}

#[derive(Default)]
struct Inner {
    /// Updates not yet confirmed (getUpdates offset) or not yet taken by the webhook.
    pending: VecDeque<Value>,
    next_update_id: i64,
    next_message_id: i32,
    calls: Vec<Call>,
    /// Scripted faults: (method, fault), consumed in order by calls of that method.
    faults: VecDeque<(String, Fault)>,
    /// The webhook URL and secret set with setWebhook.
    webhook: Option<(String, Option<String>)>,
    /// Webhook deliveries: (update id, HTTP status or 0 for a connection failure).
    webhook_posts: Vec<(i64, u16)>,
    /// A successful sendMessage is recorded (the message is in the chat) at once, but
    /// answered only after this long: the bot's process can die not knowing it was sent.
    send_answer_delay: Duration,
}

struct Shared {
    token: String,
    inner: Mutex<Inner>,
    /// Bumped on every change, to wake long polls and waiting tests.
    changed: watch::Sender<u64>,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn bump(&self) {
        self.changed.send_modify(|v| *v += 1);
    }
}

/// The fake Bot API server; stops when dropped.
pub struct BotApi {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    server: JoinHandle<()>,
    webhook_task: JoinHandle<()>,
}

impl Drop for BotApi {
    fn drop(&mut self) {
        self.server.abort();
        self.webhook_task.abort();
    }
}

impl BotApi {
    /// Starts on 127.0.0.1:0, serving the bot with `token`.
    pub async fn start(token: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let shared = Arc::new(Shared {
            token: token.to_owned(),
            inner: Mutex::new(Inner {
                next_update_id: 1,
                next_message_id: 1,
                ..Inner::default()
            }),
            changed: watch::channel(0).0,
        });
        let app = Router::new()
            .route("/{bot}/{method}", any(method))
            .with_state(shared.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        let webhook_task = tokio::spawn(deliver_to_webhook(shared.clone()));
        Self {
            addr,
            shared,
            server,
            webhook_task,
        }
    }

    /// What to put in `telegram.api_url`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn push(&self, chat_id: i64, first_name: &str, content: Value) -> i32 {
        let mut inner = self.shared.lock();
        let message_id = inner.next_message_id;
        inner.next_message_id += 1;
        let update_id = inner.next_update_id;
        inner.next_update_id += 1;
        let mut message = json!({
            "message_id": message_id,
            "date": unix_now(),
            "chat": {"id": chat_id, "type": "private", "first_name": first_name},
            "from": {"id": chat_id, "is_bot": false, "first_name": first_name},
        });
        if let (Some(m), Some(c)) = (message.as_object_mut(), content.as_object()) {
            m.extend(c.clone());
        }
        inner
            .pending
            .push_back(json!({"update_id": update_id, "message": message}));
        drop(inner);
        self.shared.bump();
        message_id
    }

    /// A user writes `text` in the private chat `chat_id`; returns the message id.
    pub fn send_text(&self, chat_id: i64, first_name: &str, text: &str) -> i32 {
        self.push(chat_id, first_name, json!({"text": text}))
    }

    /// A user sends a photo.
    pub fn send_photo(&self, chat_id: i64, first_name: &str) -> i32 {
        self.push(
            chat_id,
            first_name,
            json!({"photo": [{"file_id": "photo-1", "file_unique_id": "p1", "width": 90,
                               "height": 90, "file_size": 1000}]}),
        )
    }

    /// A user sends a sticker.
    pub fn send_sticker(&self, chat_id: i64, first_name: &str) -> i32 {
        self.push(
            chat_id,
            first_name,
            json!({"sticker": {"file_id": "sticker-1", "file_unique_id": "s1", "type": "regular",
                               "width": 512, "height": 512, "is_animated": false,
                               "is_video": false}}),
        )
    }

    /// The next `count` calls of `method` answer with `fault`.
    pub fn fail_next(&self, method: &str, count: usize, fault: Fault) {
        let mut inner = self.shared.lock();
        for _ in 0..count {
            inner.faults.push_back((method.to_owned(), fault.clone()));
        }
    }

    /// From now on, a successful sendMessage is in the chat at once but answered after
    /// `delay` (zero: at once again).
    pub fn delay_send_answers(&self, delay: Duration) {
        self.shared.lock().send_answer_delay = delay;
    }

    /// Forgets every scripted fault not used yet.
    pub fn clear_faults(&self) {
        self.shared.lock().faults.clear();
    }

    /// Every call so far, in order.
    pub fn calls(&self) -> Vec<Call> {
        self.shared.lock().calls.clone()
    }

    /// Calls of one method.
    pub fn calls_of(&self, method: &str) -> Vec<Call> {
        self.calls()
            .into_iter()
            .filter(|c| c.method == method)
            .collect()
    }

    /// Every message the bot sent successfully, in order.
    pub fn sent(&self) -> Vec<Sent> {
        sent_of(&self.shared.lock())
    }

    /// Messages sent successfully to one chat.
    pub fn sent_to(&self, chat_id: i64) -> Vec<Sent> {
        self.sent()
            .into_iter()
            .filter(|s| s.chat_id == chat_id)
            .collect()
    }

    /// The webhook set with setWebhook (URL, secret), if any.
    pub fn webhook(&self) -> Option<(String, Option<String>)> {
        self.shared.lock().webhook.clone()
    }

    /// Webhook deliveries so far: (update id, status).
    pub fn webhook_posts(&self) -> Vec<(i64, u16)> {
        self.shared.lock().webhook_posts.clone()
    }

    /// Updates not yet delivered (or confirmed).
    pub fn pending_updates(&self) -> usize {
        self.shared.lock().pending.len()
    }

    /// Waits until `check` finds something in the calls made so far, under [`WAIT`].
    pub async fn wait_for<T>(&self, what: &str, check: impl Fn(&[Call]) -> Option<T>) -> T {
        let mut changed = self.shared.changed.subscribe();
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if let Some(found) = check(&self.shared.lock().calls) {
                return found;
            }
            match tokio::time::timeout_at(deadline, changed.changed()).await {
                Ok(Ok(())) => {}
                _ => panic!(
                    "timed out waiting for the bot: {what}; calls so far: {:#?}",
                    self.calls()
                        .iter()
                        .map(|c| (&c.method, c.status, &c.body))
                        .collect::<Vec<_>>()
                ),
            }
        }
    }

    /// Waits for the `n`-th (0-based) message sent to `chat_id`.
    pub async fn nth_sent_to(&self, chat_id: i64, n: usize) -> Sent {
        self.wait_for(&format!("message #{n} to chat {chat_id}"), |calls| {
            sent_in(calls)
                .into_iter()
                .filter(|s| s.chat_id == chat_id)
                .nth(n)
        })
        .await
    }

    /// Waits for a message to `chat_id` whose text contains `needle`.
    pub async fn sent_containing(&self, chat_id: i64, needle: &str) -> Sent {
        self.wait_for(
            &format!("a message to chat {chat_id} containing {needle:?}"),
            |calls| {
                sent_in(calls)
                    .into_iter()
                    .find(|s| s.chat_id == chat_id && s.text.contains(needle))
            },
        )
        .await
    }

    /// Posts a raw update to the webhook with this secret (or none); returns the status.
    pub async fn post_webhook(&self, secret: Option<&str>, body: &Value) -> u16 {
        let (url, _) = self.webhook().expect("a webhook is set");
        post(&url, secret, body).await
    }
}

/// A user in a private chat with the bot, reading the bot's answers one by one.
pub struct TgUser<'a> {
    pub api: &'a BotApi,
    pub chat_id: i64,
    pub first_name: String,
    /// How many of the bot's messages to this chat were read.
    read: usize,
}

impl<'a> TgUser<'a> {
    pub fn new(api: &'a BotApi, chat_id: i64, first_name: &str) -> Self {
        Self {
            api,
            chat_id,
            first_name: first_name.to_owned(),
            read: 0,
        }
    }

    /// Skips what the bot sent so far.
    pub fn skip_sent(&mut self) {
        self.read = self.api.sent_to(self.chat_id).len();
    }

    /// Writes a text; returns the message id.
    pub fn says(&self, text: &str) -> i32 {
        self.api.send_text(self.chat_id, &self.first_name, text)
    }

    /// The bot's next message to this chat.
    pub async fn next(&mut self) -> Sent {
        let sent = self.api.nth_sent_to(self.chat_id, self.read).await;
        self.read += 1;
        sent
    }

    /// Writes a text and returns the bot's next message.
    pub async fn ask(&mut self, text: &str) -> Sent {
        self.says(text);
        self.next().await
    }
}

fn sent_of(inner: &Inner) -> Vec<Sent> {
    sent_in(&inner.calls)
}

/// The successful sendMessage calls among `calls`.
pub fn sent_in(calls: &[Call]) -> Vec<Sent> {
    calls
        .iter()
        .filter(|c| c.method == "sendMessage" && c.ok)
        .map(|c| Sent {
            chat_id: chat_id_of(&c.body),
            text: c.body["text"].as_str().unwrap_or_default().to_owned(),
            parse_mode: c.body["parse_mode"].as_str().map(str::to_owned),
            reply_markup: reply_markup_of(&c.body),
            at: c.at,
        })
        .collect()
}

fn chat_id_of(body: &Value) -> i64 {
    match &body["chat_id"] {
        Value::Number(n) => n.as_i64().unwrap_or_default(),
        Value::String(s) => s.parse().unwrap_or_default(),
        _ => 0,
    }
}

/// `reply_markup` may come as an object or as a JSON string.
fn reply_markup_of(body: &Value) -> Option<Value> {
    match body.get("reply_markup")? {
        Value::String(s) => serde_json::from_str(s).ok(),
        Value::Null => None,
        other => Some(other.clone()),
    }
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

fn ok(result: Value) -> Response {
    (StatusCode::OK, Json(json!({"ok": true, "result": result}))).into_response()
}

fn error(status: u16, description: &str, parameters: Option<Value>) -> Response {
    let mut body = json!({"ok": false, "error_code": status, "description": description});
    if let Some(p) = parameters {
        body["parameters"] = p;
    }
    (
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        Json(body),
    )
        .into_response()
}

fn fault_response(fault: &Fault) -> Response {
    match fault {
        Fault::TooManyRequests { retry_after } => error(
            429,
            &format!("Too Many Requests: retry after {retry_after}"),
            Some(json!({"retry_after": retry_after})),
        ),
        Fault::ServerError(status) => error(*status, "Internal Server Error", None),
        Fault::Forbidden(description) => error(403, description, None),
        Fault::Garbage => (
            StatusCode::OK,
            "<html><body>upstream is having a moment</body></html>",
        )
            .into_response(),
    }
}

fn record(shared: &Shared, method: &str, body: Value, status: u16, ok: bool) {
    shared.lock().calls.push(Call {
        method: method.to_owned(),
        body,
        status,
        ok,
        at: Instant::now(),
    });
    shared.bump();
}

async fn method(
    State(shared): State<Arc<Shared>>,
    Path((bot, method)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let body = parse_body(&headers, &body);
    // Method names are case-insensitive (teloxide sends "GetMe"); recorded as documented.
    let method = canonical(&method);
    if bot != format!("bot{}", shared.token) {
        record(&shared, &method, body, 401, false);
        return error(401, "Unauthorized", None);
    }
    let fault = {
        let mut inner = shared.lock();
        let position = inner.faults.iter().position(|(m, _)| *m == method);
        position
            .and_then(|i| inner.faults.remove(i))
            .map(|(_, f)| f)
    };
    if let Some(fault) = fault {
        let response = fault_response(&fault);
        record(&shared, &method, body, response.status().as_u16(), false);
        return response;
    }
    let response = match method.as_str() {
        "getMe" => ok(json!({
            "id": BOT_ID, "is_bot": true, "first_name": "Socketgram",
            "username": "socketgram_test_bot", "can_join_groups": false,
            "can_read_all_group_messages": false, "supports_inline_queries": false,
            "can_connect_to_business": false, "has_main_web_app": false,
        })),
        "getUpdates" => return get_updates(shared, body).await,
        "sendMessage" => {
            let message_id = {
                let mut inner = shared.lock();
                inner.next_message_id += 1;
                inner.next_message_id
            };
            ok(json!({
                "message_id": message_id,
                "date": unix_now(),
                "chat": {"id": chat_id_of(&body), "type": "private", "first_name": "User"},
                "from": {"id": BOT_ID, "is_bot": true, "first_name": "Socketgram",
                         "username": "socketgram_test_bot"},
                "text": body["text"].as_str().unwrap_or_default(),
            }))
        }
        "deleteMessage" | "sendChatAction" => ok(json!(true)),
        "getWebhookInfo" => {
            let url = shared
                .lock()
                .webhook
                .as_ref()
                .map(|(u, _)| u.clone())
                .unwrap_or_default();
            ok(json!({"url": url, "has_custom_certificate": false, "pending_update_count": 0}))
        }
        "setWebhook" => {
            let url = body["url"].as_str().unwrap_or_default().to_owned();
            let secret = body["secret_token"].as_str().map(str::to_owned);
            shared.lock().webhook = Some((url, secret));
            ok(json!(true))
        }
        "deleteWebhook" => {
            shared.lock().webhook = None;
            ok(json!(true))
        }
        _ => error(404, "Not Found: method not found", None),
    };
    let status = response.status().as_u16();
    record(&shared, &method, body, status, status == 200);
    let delay = shared.lock().send_answer_delay;
    if method == "sendMessage" && !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    response
}

/// A request body as JSON: teloxide sends JSON, or multipart form data for methods that may
/// carry a file (setWebhook), whose fields become a JSON object of strings.
fn parse_body(headers: &HeaderMap, body: &[u8]) -> Value {
    let content_type = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let Some(boundary) = content_type
        .strip_prefix("multipart/form-data")
        .and_then(|rest| rest.split("boundary=").nth(1))
    else {
        return serde_json::from_slice(body).unwrap_or(Value::Null);
    };
    let boundary = format!("--{}", boundary.trim_matches('"'));
    let text = String::from_utf8_lossy(body);
    let mut fields = serde_json::Map::new();
    for part in text.split(boundary.as_str()) {
        let Some((head, value)) = part.split_once("\r\n\r\n") else {
            continue;
        };
        let Some(name) = head
            .split("name=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
        else {
            continue;
        };
        let value = value.strip_suffix("\r\n").unwrap_or(value);
        fields.insert(name.to_owned(), Value::String(value.to_owned()));
    }
    Value::Object(fields)
}

/// The documented spelling of a method name, whatever its case.
fn canonical(method: &str) -> String {
    const KNOWN: &[&str] = &[
        "getMe",
        "getUpdates",
        "sendMessage",
        "deleteMessage",
        "sendChatAction",
        "getWebhookInfo",
        "setWebhook",
        "deleteWebhook",
    ];
    KNOWN
        .iter()
        .find(|known| known.eq_ignore_ascii_case(method))
        .map_or_else(|| method.to_owned(), |known| (*known).to_owned())
}

/// Long polling: confirms updates below `offset`, then answers the pending ones, waiting up
/// to `timeout` seconds for one when there is none.
async fn get_updates(shared: Arc<Shared>, body: Value) -> Response {
    if shared.lock().webhook.is_some() {
        let response = error(
            409,
            "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to \
             delete the webhook first",
            None,
        );
        record(&shared, "getUpdates", body, 409, false);
        return response;
    }
    let offset = body["offset"].as_i64().unwrap_or(0);
    let timeout = Duration::from_secs(body["timeout"].as_u64().unwrap_or(0));
    let limit = body["limit"].as_u64().unwrap_or(100).clamp(1, 100) as usize;
    let mut changed = shared.changed.subscribe();
    let deadline = tokio::time::Instant::now() + timeout;
    let updates = loop {
        let updates: Vec<Value> = {
            let mut inner = shared.lock();
            while inner
                .pending
                .front()
                .is_some_and(|u| u["update_id"].as_i64().unwrap_or(0) < offset)
            {
                inner.pending.pop_front();
            }
            inner.pending.iter().take(limit).cloned().collect()
        };
        if !updates.is_empty() {
            break updates;
        }
        match tokio::time::timeout_at(deadline, changed.changed()).await {
            Ok(Ok(())) => {}
            _ => break Vec::new(),
        }
    };
    record(&shared, "getUpdates", body, 200, true);
    ok(Value::Array(updates))
}

/// Telegram's side of webhook mode: each pending update is POSTed to the webhook until it is
/// answered 200.
async fn deliver_to_webhook(shared: Arc<Shared>) {
    let mut changed = shared.changed.subscribe();
    loop {
        let next = {
            let inner = shared.lock();
            match (&inner.webhook, inner.pending.front()) {
                (Some((url, secret)), Some(update)) => {
                    Some((url.clone(), secret.clone(), update.clone()))
                }
                _ => None,
            }
        };
        let Some((url, secret, update)) = next else {
            let _ = tokio::time::timeout(Duration::from_millis(200), changed.changed()).await;
            continue;
        };
        let status = post(&url, secret.as_deref(), &update).await;
        let id = update["update_id"].as_i64().unwrap_or_default();
        {
            let mut inner = shared.lock();
            inner.webhook_posts.push((id, status));
            if status == 200
                && inner
                    .pending
                    .front()
                    .is_some_and(|u| u["update_id"] == update["update_id"])
            {
                inner.pending.pop_front();
            }
        }
        shared.bump();
        if status != 200 {
            // Telegram backs off too; the bot may not be listening yet.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// POSTs JSON with the secret token header; the status, or 0 when the connection failed.
async fn post(url: &str, secret: Option<&str>, body: &Value) -> u16 {
    let client = reqwest::Client::new();
    let mut request = client.post(url).json(body);
    if let Some(secret) = secret {
        request = request.header("X-Telegram-Bot-Api-Secret-Token", secret);
    }
    match request.timeout(Duration::from_secs(5)).send().await {
        Ok(response) => response.status().as_u16(),
        Err(_) => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The updates this server makes are what teloxide reads.
    #[tokio::test]
    async fn updates_parse_as_teloxide_updates() {
        let api = BotApi::start("1:x").await;
        api.send_text(42, "Ann", "hello");
        api.send_photo(42, "Ann");
        api.send_sticker(42, "Ann");
        let pending: Vec<Value> = api.shared.lock().pending.iter().cloned().collect();
        let kinds: Vec<String> = pending
            .iter()
            .map(|u| {
                // From text, as teloxide reads the Bot API's answers (its update parser needs
                // borrowed keys, which a `Value` cannot lend).
                let update: teloxide::types::Update =
                    serde_json::from_str(&u.to_string()).expect("teloxide parses the update");
                match update.kind {
                    teloxide::types::UpdateKind::Message(m) => {
                        assert_eq!(m.chat.id.0, 42);
                        assert!(m.chat.is_private());
                        if let Some(t) = m.text() {
                            t.to_owned()
                        } else if m.photo().is_some() {
                            "photo".into()
                        } else if m.sticker().is_some() {
                            "sticker".into()
                        } else {
                            "other".into()
                        }
                    }
                    other => panic!("not a message: {other:?}"),
                }
            })
            .collect();
        assert_eq!(kinds, ["hello", "photo", "sticker"]);
    }
}
