//! A Bot API server of our own on loopback, for the Telegram edge's end-to-end tests: the
//! bot under test points `telegram.api_url` here.
//!
//! It serves `/bot<token>/<method>` the way Telegram does for what the edge calls (getMe,
//! getUpdates with long polling, sendMessage, sendPhoto, sendDocument, getFile,
//! deleteMessage, sendChatAction, getWebhookInfo, setWebhook, deleteWebhook) and the file
//! downloads at `/file/bot<token>/<file_path>`, records every call (multipart bodies with
//! their files' names and bytes), and delivers the updates a test feeds it (texts, photos,
//! documents, other media; private chats and groups): through getUpdates, or (once a webhook
//! is set) by POSTing them to the webhook with the secret token header, again until the bot
//! answers 200, as Telegram does. Telegram's file limits hold: getFile refuses files over
//! 20 MB, uploads over 50 MB (or a test's lower limit) are answered 413. It can be told to
//! answer the next calls of a method with a fault: 429 with `retry_after`, a 5xx, a 403, or a
//! reply that is not the Bot API's JSON, and to answer sendMessage late (the message already
//! in the chat). Tests wait on what it records, under a timeout.
//!
//! Forum supergroups ([`Forum`]) have topics: createForumTopic makes one (a thread id, its
//! name recorded; refused without the right "Manage topics"), sends with `message_thread_id`
//! go to it (400 "message thread not found" once a test deleted it), getChat says `is_forum`,
//! getChatMember says whether the bot is an administrator allowed to manage topics, and users
//! write in topics (`is_topic_message`) or in the general topic.

use std::{
    collections::{HashMap, VecDeque},
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{
    Json, Router,
    body::Bytes,
    extract::{DefaultBodyLimit, Path, State},
    http::{HeaderMap, StatusCode, header::CONTENT_TYPE},
    response::{IntoResponse, Response},
    routing::{any, get},
};
use serde_json::{Value, json};
use tokio::{net::TcpListener, sync::watch, task::JoinHandle};

/// How long a test waits for the bot to do something.
pub const WAIT: Duration = Duration::from_secs(20);

/// The bot's own user id (the token starts with it).
pub const BOT_ID: i64 = 123_456;

/// The largest file the Bot API lets a bot download (getFile answers "file is too big").
pub const DOWNLOAD_LIMIT: usize = 20 * 1024 * 1024;
/// The largest file a bot may upload (sendPhoto, sendDocument answer 413 past it).
pub const UPLOAD_LIMIT: usize = 50 * 1024 * 1024;

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
    /// The JSON body (`Null` when there was none); a multipart body's text fields as strings.
    pub body: Value,
    /// The files of a multipart body.
    pub files: Vec<FilePart>,
    /// The HTTP status answered.
    pub status: u16,
    /// Whether the answer was the Bot API's `{"ok": true, ...}` (a garbage 200 is not).
    pub ok: bool,
    pub at: Instant,
}

/// A file in a multipart body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FilePart {
    /// The field it stands for (`photo`, `document`), also when it came `attach://`-ed.
    pub field: String,
    /// Its file name.
    pub name: String,
    pub bytes: Vec<u8>,
}

/// A photo or a document the bot sent (a sendPhoto or sendDocument answered 200).
#[derive(Clone, Debug)]
pub struct SentFile {
    /// `sendPhoto` or `sendDocument`.
    pub method: String,
    pub chat_id: i64,
    pub caption: Option<String>,
    pub parse_mode: Option<String>,
    /// The file's name and bytes as uploaded.
    pub name: String,
    pub bytes: Vec<u8>,
    /// The forum topic it went to (`message_thread_id`).
    pub thread: Option<i64>,
    pub at: Instant,
}

/// A group chat the bot is in.
#[derive(Clone, Debug)]
pub struct Group {
    /// Negative, as Telegram's group ids are.
    pub id: i64,
    /// A supergroup rather than a basic group.
    pub supergroup: bool,
    pub title: String,
}

impl Group {
    fn chat(&self) -> Value {
        let kind = if self.supergroup {
            "supergroup"
        } else {
            "group"
        };
        json!({"id": self.id, "type": kind, "title": self.title})
    }
}

/// A supergroup with topics (a forum), and what the bot may do there.
#[derive(Clone, Debug)]
pub struct Forum {
    /// Negative, `-100…`, as supergroups' ids are.
    pub id: i64,
    pub title: String,
    /// Topics turned on (`is_forum`); off, it is a plain supergroup.
    pub is_forum: bool,
    /// The bot's standing in it.
    pub bot: BotRights,
}

/// What the bot is in a chat (getChatMember).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BotRights {
    /// An administrator, with or without the right "Manage topics".
    Admin { can_manage_topics: bool },
    /// A member without rights.
    Member,
}

impl Forum {
    fn chat(&self) -> Value {
        json!({"id": self.id, "type": "supergroup", "title": self.title,
               "is_forum": self.is_forum})
    }
}

/// A forum topic made with createForumTopic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Topic {
    pub chat_id: i64,
    pub thread: i64,
    pub name: String,
    /// Deleted by a test: sends to it are refused.
    pub deleted: bool,
}

/// A file Telegram holds for the bot to download.
struct HeldFile {
    file_id: String,
    path: String,
    size: usize,
    /// `None` for a file that is only described (too large to be downloaded anyway).
    bytes: Option<Vec<u8>>,
}

/// A message the bot sent (a sendMessage answered 200).
#[derive(Clone, Debug)]
pub struct Sent {
    pub chat_id: i64,
    pub text: String,
    pub parse_mode: Option<String>,
    /// `reply_markup` as sent: a keyboard, a force-reply, ...
    pub reply_markup: Option<Value>,
    /// The forum topic it went to (`message_thread_id`).
    pub thread: Option<i64>,
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
    /// Files users sent, by file id.
    files: HashMap<String, HeldFile>,
    /// Every message users sent, by message id, to deliver again.
    messages: HashMap<i32, Value>,
    next_file: u64,
    /// The largest upload taken ([`UPLOAD_LIMIT`] unless a test lowers it).
    upload_limit: usize,
    /// Forum supergroups the bot is in, by id.
    forums: HashMap<i64, Forum>,
    /// Topics made, in order.
    topics: Vec<Topic>,
}

impl Inner {
    /// Keeps a file users sent; its file id and unique id.
    fn hold(
        &mut self,
        folder: &str,
        extension: &str,
        size: usize,
        bytes: Option<Vec<u8>>,
    ) -> (String, String) {
        self.next_file += 1;
        let n = self.next_file;
        let file_id = format!("{folder}-file-{n}");
        self.files.insert(
            file_id.clone(),
            HeldFile {
                file_id: file_id.clone(),
                // As Telegram names them: a folder per kind.
                path: format!("{folder}/file_{n}.{extension}"),
                size,
                bytes,
            },
        );
        (file_id, format!("u{n}"))
    }
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
                upload_limit: UPLOAD_LIMIT,
                ..Inner::default()
            }),
            changed: watch::channel(0).0,
        });
        let app = Router::new()
            .route("/{bot}/{method}", any(method))
            .route("/file/{bot}/{*path}", get(download))
            // Uploads up to Telegram's own limit and past it (answered 413 by the method).
            .layer(DefaultBodyLimit::max(2 * UPLOAD_LIMIT))
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
        let chat = json!({"id": chat_id, "type": "private", "first_name": first_name});
        self.push_in(chat, chat_id, first_name, content)
    }

    /// A message from user `from` in `chat`, with `content`'s fields.
    fn push_in(&self, chat: Value, from: i64, first_name: &str, content: Value) -> i32 {
        let mut inner = self.shared.lock();
        let message_id = inner.next_message_id;
        inner.next_message_id += 1;
        let update_id = inner.next_update_id;
        inner.next_update_id += 1;
        let mut message = json!({
            "message_id": message_id,
            "date": unix_now(),
            "chat": chat,
            "from": {"id": from, "is_bot": false, "first_name": first_name},
        });
        if let (Some(m), Some(c)) = (message.as_object_mut(), content.as_object()) {
            m.extend(c.clone());
        }
        inner.messages.insert(message_id, message.clone());
        inner
            .pending
            .push_back(json!({"update_id": update_id, "message": message}));
        drop(inner);
        self.shared.bump();
        message_id
    }

    /// Delivers a message users sent once more, in an update of its own, as a bot gets it
    /// again after a crash (the updates were not confirmed) or a webhook call that failed.
    pub fn deliver_again(&self, message_id: i32) {
        let mut inner = self.shared.lock();
        let message = inner
            .messages
            .get(&message_id)
            .cloned()
            .expect("a message users sent");
        let update_id = inner.next_update_id;
        inner.next_update_id += 1;
        inner
            .pending
            .push_back(json!({"update_id": update_id, "message": message}));
        drop(inner);
        self.shared.bump();
    }

    /// A user writes `text` in the private chat `chat_id`; returns the message id.
    pub fn send_text(&self, chat_id: i64, first_name: &str, text: &str) -> i32 {
        self.push(chat_id, first_name, json!({"text": text}))
    }

    /// A user sends a photo (`bytes`, which getFile and the download then serve), with a
    /// caption or none. Telegram offers it in several sizes: two smaller copies (other files)
    /// come with it, and the full size is not last, so the bot must pick it by its size.
    pub fn send_photo(
        &self,
        chat_id: i64,
        first_name: &str,
        bytes: &[u8],
        caption: Option<&str>,
    ) -> i32 {
        let (width, height) = image::load_from_memory(bytes)
            .map(|i| (i.width(), i.height()))
            .unwrap_or((1280, 960));
        let sizes = {
            let mut inner = self.shared.lock();
            let mut size = |w: u32, h: u32, bytes: Vec<u8>| {
                let len = bytes.len();
                let (id, unique) = inner.hold("photos", "jpg", len, Some(bytes));
                json!({"file_id": id, "file_unique_id": unique, "width": w, "height": h,
                       "file_size": len})
            };
            let thumbnail = size(90, 68, b"a thumbnail, not the photo".to_vec());
            let full = size(width, height, bytes.to_vec());
            let medium = size(320, 240, b"a medium copy, not the photo".to_vec());
            vec![thumbnail, full, medium]
        };
        let mut content = json!({"photo": sizes});
        if let Some(caption) = caption {
            content["caption"] = json!(caption);
        }
        self.push(chat_id, first_name, content)
    }

    /// A user sends a file (`bytes`, served by getFile and the download), as Telegram
    /// describes it: its name, the type the user's app claimed, its size.
    pub fn send_document(
        &self,
        chat_id: i64,
        first_name: &str,
        name: &str,
        mime_type: &str,
        bytes: &[u8],
        caption: Option<&str>,
    ) -> i32 {
        let extension = name.rsplit_once('.').map_or("bin", |(_, e)| e);
        let (id, unique) =
            self.shared
                .lock()
                .hold("documents", extension, bytes.len(), Some(bytes.to_vec()));
        let mut content = json!({"document": {"file_id": id, "file_unique_id": unique,
            "file_name": name, "mime_type": mime_type, "file_size": bytes.len()}});
        if let Some(caption) = caption {
            content["caption"] = json!(caption);
        }
        self.push(chat_id, first_name, content)
    }

    /// A user sends a file of `size` bytes that is only described (none are served: past
    /// [`DOWNLOAD_LIMIT`], getFile refuses it as Telegram does).
    pub fn send_large_document(
        &self,
        chat_id: i64,
        first_name: &str,
        name: &str,
        size: usize,
    ) -> i32 {
        let (id, unique) = self.shared.lock().hold("documents", "bin", size, None);
        self.push(
            chat_id,
            first_name,
            json!({"document": {"file_id": id, "file_unique_id": unique, "file_name": name,
                                "mime_type": "application/octet-stream", "file_size": size}}),
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

    /// A user sends a voice message.
    pub fn send_voice(&self, chat_id: i64, first_name: &str) -> i32 {
        self.push(
            chat_id,
            first_name,
            json!({"voice": {"file_id": "voice-1", "file_unique_id": "v1", "duration": 2,
                             "mime_type": "audio/ogg", "file_size": 4000}}),
        )
    }

    /// User `from` adds the bot to `group` (the service message Telegram sends there).
    pub fn add_to_group(&self, group: &Group, from: i64, first_name: &str) -> i32 {
        let bot = json!({"id": BOT_ID, "is_bot": true, "first_name": "Socketgram",
                         "username": "socketgram_test_bot"});
        self.push_in(
            group.chat(),
            from,
            first_name,
            json!({"new_chat_members": [bot]}),
        )
    }

    /// User `from` writes `text` in `group`.
    pub fn group_text(&self, group: &Group, from: i64, first_name: &str, text: &str) -> i32 {
        self.push_in(group.chat(), from, first_name, json!({"text": text}))
    }

    /// The bot is in `forum` (getChat and getChatMember answer for it from now on).
    pub fn add_forum(&self, forum: &Forum) {
        self.shared.lock().forums.insert(forum.id, forum.clone());
    }

    /// Topics made so far, in order (deleted ones too).
    pub fn topics(&self) -> Vec<Topic> {
        self.shared.lock().topics.clone()
    }

    /// Waits until `n` topics were made in total; returns them.
    pub async fn wait_topics(&self, n: usize) -> Vec<Topic> {
        let mut changed = self.shared.changed.subscribe();
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let topics = self.topics();
            if topics.len() >= n {
                return topics;
            }
            if !matches!(
                tokio::time::timeout_at(deadline, changed.changed()).await,
                Ok(Ok(()))
            ) {
                panic!("timed out waiting for {n} topics; made: {topics:?}");
            }
        }
    }

    /// Staff delete a topic: sends to it answer 400 "message thread not found" from now on.
    pub fn delete_topic(&self, chat_id: i64, thread: i64) {
        let mut inner = self.shared.lock();
        for topic in inner
            .topics
            .iter_mut()
            .filter(|t| t.chat_id == chat_id && t.thread == thread)
        {
            topic.deleted = true;
        }
    }

    /// User `from` writes `text` in a topic of `forum` (`thread`), or in its general topic
    /// (`None`).
    pub fn topic_text(
        &self,
        forum: &Forum,
        thread: Option<i64>,
        from: i64,
        first_name: &str,
        text: &str,
    ) -> i32 {
        self.push_in(
            forum.chat(),
            from,
            first_name,
            topic_fields(thread, json!({"text": text})),
        )
    }

    /// User `from` posts a photo (`bytes`, served by getFile and the download) in a topic.
    pub fn topic_photo(
        &self,
        forum: &Forum,
        thread: i64,
        from: i64,
        first_name: &str,
        bytes: &[u8],
        caption: Option<&str>,
    ) -> i32 {
        let len = bytes.len();
        let (id, unique) = self
            .shared
            .lock()
            .hold("photos", "jpg", len, Some(bytes.to_vec()));
        let (width, height) = image::load_from_memory(bytes)
            .map(|i| (i.width(), i.height()))
            .unwrap_or((1280, 960));
        let mut content = json!({"photo": [{"file_id": id, "file_unique_id": unique,
            "width": width, "height": height, "file_size": len}]});
        if let Some(caption) = caption {
            content["caption"] = json!(caption);
        }
        self.push_in(
            forum.chat(),
            from,
            first_name,
            topic_fields(Some(thread), content),
        )
    }

    /// From now on, uploads larger than `bytes` are answered 413 ("Request Entity Too
    /// Large"), as Telegram answers those over [`UPLOAD_LIMIT`].
    pub fn limit_uploads(&self, bytes: usize) {
        self.shared.lock().upload_limit = bytes;
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

    /// Every photo and document the bot sent successfully, in order.
    pub fn files_sent(&self) -> Vec<SentFile> {
        files_in(&self.shared.lock().calls)
    }

    /// Photos and documents sent successfully to one chat.
    pub fn files_sent_to(&self, chat_id: i64) -> Vec<SentFile> {
        self.files_sent()
            .into_iter()
            .filter(|f| f.chat_id == chat_id)
            .collect()
    }

    /// Waits for the `n`-th (0-based) photo or document sent to `chat_id`.
    pub async fn nth_file_to(&self, chat_id: i64, n: usize) -> SentFile {
        self.wait_for(&format!("file #{n} to chat {chat_id}"), |calls| {
            files_in(calls)
                .into_iter()
                .filter(|f| f.chat_id == chat_id)
                .nth(n)
        })
        .await
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

/// A photo as Telegram keeps them: a JPEG of `width` x `height` pixels, a gradient.
pub fn jpeg(width: u32, height: u32) -> Vec<u8> {
    let image = image::RgbImage::from_fn(width, height, |x, y| {
        image::Rgb([(x * 3 % 256) as u8, (y * 11 % 256) as u8, 200])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    image
        .write_to(&mut out, image::ImageFormat::Jpeg)
        .expect("encode a JPEG");
    out.into_inner()
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
            thread: thread_of(&c.body),
            at: c.at,
        })
        .collect()
}

/// The successful sendPhoto and sendDocument calls among `calls`.
pub fn files_in(calls: &[Call]) -> Vec<SentFile> {
    calls
        .iter()
        .filter(|c| (c.method == "sendPhoto" || c.method == "sendDocument") && c.ok)
        .filter_map(|c| {
            let field = if c.method == "sendPhoto" {
                "photo"
            } else {
                "document"
            };
            let file = c.files.iter().find(|f| f.field == field)?;
            Some(SentFile {
                method: c.method.clone(),
                chat_id: chat_id_of(&c.body),
                caption: c.body["caption"].as_str().map(str::to_owned),
                parse_mode: c.body["parse_mode"].as_str().map(str::to_owned),
                name: file.name.clone(),
                bytes: file.bytes.clone(),
                thread: thread_of(&c.body),
                at: c.at,
            })
        })
        .collect()
}

/// A message's fields in a forum: in a topic (`message_thread_id`, `is_topic_message`), or in
/// the general topic (neither).
fn topic_fields(thread: Option<i64>, mut content: Value) -> Value {
    if let Some(thread) = thread {
        content["message_thread_id"] = json!(thread);
        content["is_topic_message"] = json!(true);
    }
    content
}

/// `message_thread_id` of a call (a number in JSON, a string in multipart).
fn thread_of(body: &Value) -> Option<i64> {
    match &body["message_thread_id"] {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
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
    record_with_files(shared, method, body, Vec::new(), status, ok);
}

fn record_with_files(
    shared: &Shared,
    method: &str,
    body: Value,
    files: Vec<FilePart>,
    status: u16,
    ok: bool,
) {
    shared.lock().calls.push(Call {
        method: method.to_owned(),
        body,
        files,
        status,
        ok,
        at: Instant::now(),
    });
    shared.bump();
}

/// The bot's message that answers a successful send to the chat of `body`.
fn sent_message(shared: &Shared, body: &Value, content: Value) -> Value {
    let message_id = {
        let mut inner = shared.lock();
        inner.next_message_id += 1;
        inner.next_message_id
    };
    let mut message = json!({
        "message_id": message_id,
        "date": unix_now(),
        "chat": {"id": chat_id_of(body), "type": "private", "first_name": "User"},
        "from": {"id": BOT_ID, "is_bot": true, "first_name": "Socketgram",
                 "username": "socketgram_test_bot"},
    });
    if let (Some(m), Some(c)) = (message.as_object_mut(), content.as_object()) {
        m.extend(c.clone());
    }
    message
}

/// sendPhoto, sendDocument: the file of `field` kept as Telegram would, or 413 past the
/// upload limit.
fn send_file(shared: &Shared, body: &Value, files: &[FilePart], field: &str) -> Response {
    let Some(file) = files.iter().find(|f| f.field == field) else {
        return error(
            400,
            &format!("Bad Request: there is no {field} in the request"),
            None,
        );
    };
    if file.bytes.len() > shared.lock().upload_limit {
        return error(413, "Request Entity Too Large", None);
    }
    let size = file.bytes.len();
    let n = {
        let mut inner = shared.lock();
        inner.next_file += 1;
        inner.next_file
    };
    let (id, unique) = (format!("sent-{n}"), format!("s{n}"));
    let mut content = if field == "photo" {
        json!({"photo": [{"file_id": id, "file_unique_id": unique, "width": 100, "height": 100,
                          "file_size": size}]})
    } else {
        json!({"document": {"file_id": id, "file_unique_id": unique, "file_name": file.name,
                            "file_size": size}})
    };
    if let Some(caption) = body["caption"].as_str() {
        content["caption"] = json!(caption);
    }
    ok(sent_message(shared, body, content))
}

/// Whether a send names a topic of a forum that does not exist or was deleted.
fn thread_refused(shared: &Shared, body: &Value) -> bool {
    let Some(thread) = thread_of(body) else {
        return false;
    };
    let chat_id = chat_id_of(body);
    let inner = shared.lock();
    !inner
        .topics
        .iter()
        .any(|t| t.chat_id == chat_id && t.thread == thread && !t.deleted)
}

/// createForumTopic: a topic of a forum where the bot may manage topics.
fn create_forum_topic(shared: &Shared, body: &Value) -> Response {
    let chat_id = chat_id_of(body);
    let name = body["name"].as_str().unwrap_or_default().to_owned();
    let mut inner = shared.lock();
    let Some(forum) = inner.forums.get(&chat_id).cloned() else {
        return error(400, "Bad Request: chat not found", None);
    };
    if !forum.is_forum {
        return error(400, "Bad Request: the chat is not a forum", None);
    }
    if forum.bot
        != (BotRights::Admin {
            can_manage_topics: true,
        })
    {
        return error(
            400,
            "Bad Request: not enough rights to create a topic",
            None,
        );
    }
    if name.is_empty() || name.chars().count() > 128 {
        return error(400, "Bad Request: TOPIC_NAME_INVALID", None);
    }
    // The topic's id is the id of the message that opens it, as in Telegram.
    inner.next_message_id += 1;
    let thread = i64::from(inner.next_message_id);
    inner.topics.push(Topic {
        chat_id,
        thread,
        name: name.clone(),
        deleted: false,
    });
    let color = body["icon_color"].as_u64().unwrap_or(7_322_096);
    ok(json!({"message_thread_id": thread, "name": name, "icon_color": color}))
}

/// getChat: a forum the bot is in, as the Bot API's `ChatFullInfo`.
fn get_chat(shared: &Shared, body: &Value) -> Response {
    let Some(forum) = shared.lock().forums.get(&chat_id_of(body)).cloned() else {
        return error(400, "Bad Request: chat not found", None);
    };
    ok(json!({
        "id": forum.id, "type": "supergroup", "title": forum.title, "is_forum": forum.is_forum,
        "accent_color_id": 0, "max_reaction_count": 11,
        "accepted_gift_types": {"unlimited_gifts": false, "limited_gifts": false,
                                "unique_gifts": false, "premium_subscription": false},
    }))
}

/// getChatMember: the bot in a forum it is in (others are plain members).
fn get_chat_member(shared: &Shared, body: &Value) -> Response {
    let Some(forum) = shared.lock().forums.get(&chat_id_of(body)).cloned() else {
        return error(400, "Bad Request: chat not found", None);
    };
    let user_id = match &body["user_id"] {
        Value::Number(n) => n.as_i64().unwrap_or_default(),
        Value::String(s) => s.parse().unwrap_or_default(),
        _ => 0,
    };
    let user = json!({"id": user_id, "is_bot": user_id == BOT_ID, "first_name": "Member"});
    let rights = if user_id == BOT_ID {
        forum.bot
    } else {
        BotRights::Member
    };
    match rights {
        BotRights::Member => ok(json!({"user": user, "status": "member"})),
        BotRights::Admin { can_manage_topics } => ok(json!({
            "user": user, "status": "administrator", "can_be_edited": false,
            "is_anonymous": false, "can_manage_chat": true, "can_change_info": true,
            "can_delete_messages": true, "can_manage_video_chats": true,
            "can_invite_users": true, "can_restrict_members": true, "can_pin_messages": true,
            "can_promote_members": false, "can_post_stories": false, "can_edit_stories": false,
            "can_delete_stories": false, "can_manage_topics": can_manage_topics,
        })),
    }
}

/// getFile: where a file users sent can be downloaded; files over [`DOWNLOAD_LIMIT`] are
/// refused, as Telegram refuses them.
fn get_file(shared: &Shared, body: &Value) -> Response {
    let inner = shared.lock();
    let Some(file) = body["file_id"].as_str().and_then(|id| inner.files.get(id)) else {
        return error(400, "Bad Request: invalid file_id", None);
    };
    if file.size > DOWNLOAD_LIMIT {
        return error(400, "Bad Request: file is too big", None);
    }
    ok(
        json!({"file_id": file.file_id, "file_unique_id": format!("u-{}", file.file_id),
              "file_size": file.size, "file_path": file.path}),
    )
}

/// The next scripted fault for `method`, taken.
fn take_fault(shared: &Shared, method: &str) -> Option<Fault> {
    let mut inner = shared.lock();
    let position = inner.faults.iter().position(|(m, _)| m == method);
    position
        .and_then(|i| inner.faults.remove(i))
        .map(|(_, f)| f)
}

/// `GET /file/bot<token>/<file_path>`: a file's bytes, recorded as a `download` call (whose
/// faults are scripted as the method `download`'s).
async fn download(
    State(shared): State<Arc<Shared>>,
    Path((bot, path)): Path<(String, String)>,
) -> Response {
    let body = json!({"file_path": path});
    if bot != format!("bot{}", shared.token) {
        record(&shared, "download", body, 401, false);
        return error(401, "Unauthorized", None);
    }
    if let Some(fault) = take_fault(&shared, "download") {
        let response = fault_response(&fault);
        record(&shared, "download", body, response.status().as_u16(), false);
        return response;
    }
    let bytes = shared
        .lock()
        .files
        .values()
        .find(|f| f.path == path)
        .and_then(|f| f.bytes.clone());
    match bytes {
        Some(bytes) => {
            record(&shared, "download", body, 200, true);
            (StatusCode::OK, bytes).into_response()
        }
        None => {
            record(&shared, "download", body, 404, false);
            error(404, "Not Found", None)
        }
    }
}

async fn method(
    State(shared): State<Arc<Shared>>,
    Path((bot, method)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (body, files) = parse_body(&headers, &body);
    // Method names are case-insensitive (teloxide sends "GetMe"); recorded as documented.
    let method = canonical(&method);
    if bot != format!("bot{}", shared.token) {
        record_with_files(&shared, &method, body, files, 401, false);
        return error(401, "Unauthorized", None);
    }
    if let Some(fault) = take_fault(&shared, &method) {
        let response = fault_response(&fault);
        record_with_files(
            &shared,
            &method,
            body,
            files,
            response.status().as_u16(),
            false,
        );
        return response;
    }
    let response = match method.as_str() {
        "sendMessage" | "sendPhoto" | "sendDocument" if thread_refused(&shared, &body) => {
            error(400, "Bad Request: message thread not found", None)
        }
        "createForumTopic" => create_forum_topic(&shared, &body),
        "getChat" => get_chat(&shared, &body),
        "getChatMember" => get_chat_member(&shared, &body),
        "getMe" => ok(json!({
            "id": BOT_ID, "is_bot": true, "first_name": "Socketgram",
            "username": "socketgram_test_bot", "can_join_groups": false,
            "can_read_all_group_messages": false, "supports_inline_queries": false,
            "can_connect_to_business": false, "has_main_web_app": false,
        })),
        "getUpdates" => return get_updates(shared, body).await,
        "sendMessage" => {
            let text = json!({"text": body["text"].as_str().unwrap_or_default()});
            ok(sent_message(&shared, &body, text))
        }
        "sendPhoto" => send_file(&shared, &body, &files, "photo"),
        "sendDocument" => send_file(&shared, &body, &files, "document"),
        "getFile" => get_file(&shared, &body),
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
    record_with_files(&shared, &method, body, files, status, status == 200);
    let delay = shared.lock().send_answer_delay;
    if method == "sendMessage" && !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    response
}

/// A request body as JSON and its files: teloxide sends JSON, or multipart form data for
/// methods that may carry a file (sendPhoto, sendDocument, setWebhook), whose text fields
/// become a JSON object of strings. teloxide puts a file in a part of its own, named by the
/// field's value `attach://<name>`; a file in the field's own part is taken too.
fn parse_body(headers: &HeaderMap, body: &[u8]) -> (Value, Vec<FilePart>) {
    let content_type = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let Some(boundary) = content_type
        .strip_prefix("multipart/form-data")
        .and_then(|rest| rest.split("boundary=").nth(1))
    else {
        return (
            serde_json::from_slice(body).unwrap_or(Value::Null),
            Vec::new(),
        );
    };
    let boundary = boundary
        .split(';')
        .next()
        .unwrap_or_default()
        .trim_matches('"');
    let parts = multipart_parts(body, boundary);
    let mut fields = serde_json::Map::new();
    let mut files = Vec::new();
    for part in parts.iter().filter(|p| p.file_name.is_none()) {
        let value = String::from_utf8_lossy(&part.data).into_owned();
        if let Some(attached) = value.strip_prefix("attach://")
            && let Some(file) = parts.iter().find(|p| p.name == attached)
        {
            files.push(FilePart {
                field: part.name.clone(),
                name: file.file_name.clone().unwrap_or_default(),
                bytes: file.data.clone(),
            });
        }
        fields.insert(part.name.clone(), Value::String(value));
    }
    let attached: Vec<String> = fields
        .values()
        .filter_map(|v| v.as_str()?.strip_prefix("attach://").map(str::to_owned))
        .collect();
    for part in &parts {
        if let Some(file_name) = &part.file_name
            && !attached.contains(&part.name)
        {
            files.push(FilePart {
                field: part.name.clone(),
                name: file_name.clone(),
                bytes: part.data.clone(),
            });
        }
    }
    (Value::Object(fields), files)
}

/// One part of a multipart body.
struct MultipartPart {
    name: String,
    file_name: Option<String>,
    data: Vec<u8>,
}

/// The parts of a multipart body (RFC 7578), bytes kept as they are.
fn multipart_parts(body: &[u8], boundary: &str) -> Vec<MultipartPart> {
    let delimiter = format!("--{boundary}").into_bytes();
    let between = [b"\r\n".as_slice(), &delimiter].concat();
    let mut parts = Vec::new();
    let Some(first) = find(body, &delimiter) else {
        return parts;
    };
    let mut rest = &body[first + delimiter.len()..];
    // After each delimiter: "--" closes the body, a line break starts a part.
    while let Some(after) = rest.strip_prefix(b"\r\n") {
        let Some(end) = find(after, &between) else {
            break;
        };
        let part = &after[..end];
        rest = &after[end + between.len()..];
        let Some(split) = find(part, b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&part[..split]);
        let mut name = None;
        let mut file_name = None;
        for param in head
            .lines()
            .filter(|l| l.to_ascii_lowercase().starts_with("content-disposition:"))
            .flat_map(|l| l.split(';').skip(1))
        {
            if let Some((key, value)) = param.trim().split_once('=') {
                let value = value.trim_matches('"').to_owned();
                match key {
                    "name" => name = Some(value),
                    "filename" => file_name = Some(value),
                    _ => {}
                }
            }
        }
        if let Some(name) = name {
            parts.push(MultipartPart {
                name,
                file_name,
                data: part[split + 4..].to_vec(),
            });
        }
    }
    parts
}

/// Where `needle` first occurs in `haystack`.
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The documented spelling of a method name, whatever its case.
fn canonical(method: &str) -> String {
    const KNOWN: &[&str] = &[
        "getMe",
        "getUpdates",
        "sendMessage",
        "sendPhoto",
        "sendDocument",
        "getFile",
        "deleteMessage",
        "sendChatAction",
        "getWebhookInfo",
        "setWebhook",
        "deleteWebhook",
        "createForumTopic",
        "getChat",
        "getChatMember",
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
        api.send_photo(42, "Ann", b"not really a JPEG", Some("a caption"));
        api.send_sticker(42, "Ann");
        api.send_document(42, "Ann", "report.pdf", "application/pdf", b"%PDF-", None);
        api.send_voice(42, "Ann");
        let group = Group {
            id: -100_200,
            supergroup: false,
            title: "Friends".into(),
        };
        let supergroup = Group {
            id: -1_000_000_000_300,
            supergroup: true,
            title: "Staff".into(),
        };
        api.add_to_group(&group, 42, "Ann");
        api.group_text(&supergroup, 42, "Ann", "in a supergroup");
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
                        if m.chat.is_group() {
                            assert_eq!(m.chat.id.0, -100_200);
                            let added = m.new_chat_members().expect("members");
                            assert_eq!(added[0].id.0, BOT_ID as u64);
                            return "group".into();
                        }
                        if m.chat.is_supergroup() {
                            return format!("supergroup: {}", m.text().unwrap_or_default());
                        }
                        assert_eq!(m.chat.id.0, 42);
                        assert!(m.chat.is_private());
                        if let Some(t) = m.text() {
                            t.to_owned()
                        } else if let Some(sizes) = m.photo() {
                            assert_eq!(sizes.len(), 3);
                            assert_eq!(m.caption(), Some("a caption"));
                            "photo".into()
                        } else if m.sticker().is_some() {
                            "sticker".into()
                        } else if let Some(d) = m.document() {
                            assert_eq!(d.file_name.as_deref(), Some("report.pdf"));
                            assert_eq!(d.file.size, 5);
                            "document".into()
                        } else if m.voice().is_some() {
                            "voice".into()
                        } else {
                            "other".into()
                        }
                    }
                    other => panic!("not a message: {other:?}"),
                }
            })
            .collect();
        assert_eq!(
            kinds,
            [
                "hello",
                "photo",
                "sticker",
                "document",
                "voice",
                "group",
                "supergroup: in a supergroup"
            ]
        );
    }

    /// Forums as teloxide reads them: getChat's `is_forum`, getChatMember's rights, a topic
    /// made and written to, refused once deleted, and users' topic messages.
    #[tokio::test]
    async fn forums_parse_as_teloxide_reads_them() {
        use teloxide::{
            payloads::SendMessageSetters as _,
            prelude::Requester as _,
            types::{ChatFullInfoKind, ChatFullInfoPublicKind, ChatId, ChatMemberKind, UserId},
        };
        let token = "1:x";
        let api = BotApi::start(token).await;
        let bot = teloxide::Bot::new(token).set_api_url(api.url().parse().expect("url"));
        let forum = Forum {
            id: -1_000_000_000_777,
            title: "Staff".into(),
            is_forum: true,
            bot: BotRights::Admin {
                can_manage_topics: true,
            },
        };
        api.add_forum(&forum);
        let chat = bot.get_chat(ChatId(forum.id)).await.expect("getChat");
        let ChatFullInfoKind::Public(public) = chat.kind else {
            panic!("a public chat")
        };
        let ChatFullInfoPublicKind::Supergroup(supergroup) = public.kind else {
            panic!("a supergroup")
        };
        assert!(supergroup.is_forum);
        let member = bot
            .get_chat_member(ChatId(forum.id), UserId(BOT_ID as u64))
            .await
            .expect("getChatMember");
        assert!(
            matches!(&member.kind, ChatMemberKind::Administrator(a) if a.can_manage_topics),
            "{member:?}"
        );
        let topic = bot
            .create_forum_topic(ChatId(forum.id), "Ann")
            .await
            .expect("createForumTopic");
        let thread = topic.thread_id;
        bot.send_message(ChatId(forum.id), "hi")
            .message_thread_id(thread)
            .await
            .expect("sendMessage in the topic");
        assert_eq!(api.sent_to(forum.id)[0].thread, Some(i64::from(thread.0.0)));
        api.delete_topic(forum.id, i64::from(thread.0.0));
        let refused = bot
            .send_message(ChatId(forum.id), "hi")
            .message_thread_id(thread)
            .await
            .expect_err("the topic is gone");
        assert!(
            refused.to_string().contains("message thread not found"),
            "{refused}"
        );
        api.topic_text(&forum, Some(i64::from(thread.0.0)), 42, "Ann", "in a topic");
        api.topic_text(&forum, None, 42, "Ann", "in general");
        let pending: Vec<Value> = api.shared.lock().pending.iter().cloned().collect();
        let topics: Vec<(Option<i32>, bool)> = pending
            .iter()
            .map(|u| {
                let update: teloxide::types::Update =
                    serde_json::from_str(&u.to_string()).expect("teloxide parses the update");
                let teloxide::types::UpdateKind::Message(m) = update.kind else {
                    panic!("a message")
                };
                (m.thread_id.map(|t| t.0.0), m.is_topic_message)
            })
            .collect();
        assert_eq!(topics, [(Some(thread.0.0), true), (None, false)]);
    }

    /// Files go both ways as teloxide sends and fetches them: its multipart uploads are read
    /// back byte for byte, getFile and the download serve what a user sent, and the upload
    /// limit answers 413 as Telegram does.
    #[tokio::test]
    async fn files_round_trip_with_teloxide() {
        use teloxide::{
            net::Download as _,
            payloads::SendPhotoSetters as _,
            prelude::Requester as _,
            types::{ChatId, FileId, InputFile, ParseMode},
        };
        let token = "1:x";
        let api = BotApi::start(token).await;
        let bot = teloxide::Bot::new(token).set_api_url(api.url().parse().expect("url"));
        // Every byte value, and the delimiter's own start inside the content.
        let mut bytes: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
        bytes.extend_from_slice(b"\r\n--not-the-boundary\r\n");
        bot.send_photo(
            ChatId(42),
            InputFile::memory(bytes.clone()).file_name("a.png"),
        )
        .caption("<b>hi</b>")
        .parse_mode(ParseMode::Html)
        .await
        .expect("sendPhoto");
        bot.send_document(
            ChatId(42),
            InputFile::memory(b"%PDF-1.4".to_vec()).file_name("r.pdf"),
        )
        .await
        .expect("sendDocument");
        let sent = api.files_sent_to(42);
        assert_eq!(sent.len(), 2);
        assert_eq!(
            (sent[0].method.as_str(), sent[0].name.as_str()),
            ("sendPhoto", "a.png")
        );
        assert_eq!(sent[0].bytes, bytes);
        assert_eq!(sent[0].caption.as_deref(), Some("<b>hi</b>"));
        assert_eq!(sent[0].parse_mode.as_deref(), Some("HTML"));
        assert_eq!(
            (
                sent[1].method.as_str(),
                sent[1].name.as_str(),
                sent[1].caption.as_deref()
            ),
            ("sendDocument", "r.pdf", None)
        );

        api.send_document(
            42,
            "Ann",
            "data.bin",
            "application/octet-stream",
            &bytes,
            None,
        );
        let id = api
            .shared
            .lock()
            .files
            .keys()
            .next()
            .cloned()
            .expect("a held file");
        let file = bot.get_file(FileId(id)).await.expect("getFile");
        assert!(file.path.starts_with("documents/"), "{file:?}");
        let mut downloaded = Vec::new();
        bot.download_file(&file.path, &mut downloaded)
            .await
            .expect("download");
        assert_eq!(downloaded, bytes);

        api.limit_uploads(100);
        let refused = bot
            .send_document(
                ChatId(42),
                InputFile::memory(bytes.clone()).file_name("big.bin"),
            )
            .await
            .expect_err("over the upload limit");
        assert!(
            matches!(
                refused,
                teloxide::RequestError::Api(teloxide::ApiError::RequestEntityTooLarge)
            ),
            "{refused:?}"
        );
        api.send_large_document(42, "Ann", "huge.iso", DOWNLOAD_LIMIT + 1);
        let huge = api
            .shared
            .lock()
            .files
            .values()
            .find(|f| f.bytes.is_none())
            .map(|f| f.file_id.clone())
            .expect("the huge file");
        let refused = bot.get_file(FileId(huge)).await.expect_err("too big");
        assert!(refused.to_string().contains("file is too big"), "{refused}");
    }
}
