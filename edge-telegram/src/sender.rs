//! Everything the bot sends goes through here: the throttled bot (Telegram's flood limits kept,
//! 429 `retry_after` honoured by teloxide's `Throttle`), HTML parse mode, and what to do with
//! each kind of failure (LEGACY.md §9.11: the legacy server had no retry at all):
//! - network errors, 5xx and unparsable answers are retried with exponential back-off;
//! - "forbidden" answers (the user blocked the bot, deleted the account, the chat is gone)
//!   mean this chat will never take a message: no retry, the caller marks the link inactive;
//! - other refusals ("Bad Request: ...", "Request Entity Too Large") concern this message: no
//!   retry.
//!
//! Texts ([`send_html`]), photos and documents ([`send_file`]) and the edge's other calls
//! ([`request`], e.g. `getFile`, `createForumTopic`) share that one path. A send goes to a
//! [`Dest`]: a chat, or a forum topic of one (the staff group's).

use std::time::Duration;

use bytes::Bytes;
use teloxide::{
    ApiError, RequestError,
    adaptors::{Throttle, throttle::Limits},
    payloads::{SendDocumentSetters as _, SendMessageSetters as _, SendPhotoSetters as _},
    prelude::Requester as _,
    requests::{Output, Request},
    types::{ChatId, InputFile, MessageId, ParseMode, ReplyMarkup, ThreadId},
};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::config::TelegramConfig;

/// The bot every request goes through.
pub type TgBot = Throttle<teloxide::Bot>;

/// First pause after a transient failure; doubled each time.
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
/// Longest pause between attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Attempts at an interactive reply before giving up (the user can simply ask again).
const REPLY_ATTEMPTS: u32 = 4;
/// How long a delivery in flight may still take once shutdown began.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);
/// How long one Bot API request may take, its body included. teloxide's default (17 s) is
/// too short for files: a 50 MB upload would need 3 MB/s, and one that times out is tried
/// again forever, holding up every reply after it. Longer than the polling timeout too.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

/// Builds the bot: the configured Bot API server, Telegram's limits kept by `Throttle` (which
/// also waits `retry_after` and retries on 429). Needs a tokio runtime (the throttle worker).
pub fn bot(config: &TelegramConfig) -> Result<TgBot, String> {
    let api_url = url::Url::parse(&config.api_url).map_err(|e| format!("telegram.api_url: {e}"))?;
    let mut client = teloxide::net::default_reqwest_settings().timeout(REQUEST_TIMEOUT);
    // As `Bot::new` does: a proxy for the Bot API from the environment.
    if let Ok(proxy) = std::env::var("TELOXIDE_PROXY") {
        client =
            client.proxy(reqwest::Proxy::all(&proxy).map_err(|e| format!("TELOXIDE_PROXY: {e}"))?);
    }
    let client = client
        .build()
        .map_err(|e| format!("the Bot API's HTTP client: {e}"))?;
    let bot = teloxide::Bot::with_client(config.token.expose(), client).set_api_url(api_url);
    Ok(Throttle::new_spawn(
        bot,
        Limits {
            messages_per_sec_chat: config.limits.per_chat_per_second,
            messages_per_min_chat: config.limits.per_chat_per_minute,
            messages_per_min_channel_or_supergroup: config.limits.per_chat_per_minute,
            messages_per_sec_overall: config.limits.overall_per_second,
        },
    ))
}

/// What a failure means for the chat and the message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureKind {
    /// Try again later: network, 5xx, flood control, an answer we could not read.
    Transient,
    /// The chat will never take a message (blocked, deactivated, kicked, gone).
    ChatGone,
    /// Telegram refused this message; sending it again would fail again.
    Rejected,
}

/// Sorts a Bot API failure.
pub fn classify(e: &RequestError) -> FailureKind {
    match e {
        RequestError::Network(_) | RequestError::InvalidJson { .. } | RequestError::Io(_) => {
            FailureKind::Transient
        }
        RequestError::RetryAfter(_) => FailureKind::Transient,
        RequestError::MigrateToChatId(_) => FailureKind::Rejected,
        RequestError::Api(api) => match api {
            ApiError::BotBlocked
            | ApiError::UserDeactivated
            | ApiError::BotKicked
            | ApiError::BotKickedFromSupergroup
            | ApiError::BotKickedFromChannel
            | ApiError::ChatNotFound
            | ApiError::CantInitiateConversation
            | ApiError::CantTalkWithBots => FailureKind::ChatGone,
            // A wrong token fails every request alike: waiting for the operator to fix it loses
            // nothing, skipping would.
            ApiError::InvalidToken => FailureKind::Transient,
            // teloxide keeps the description, not the HTTP status: Telegram's 403s read
            // "Forbidden: ...", its 400s "Bad Request: ...", and 5xx answers anything else
            // ("Internal Server Error", "Bad Gateway").
            ApiError::Unknown(description) => {
                if description.starts_with("Forbidden") {
                    FailureKind::ChatGone
                } else if description.starts_with("Bad Request")
                    || description.starts_with("Conflict")
                {
                    FailureKind::Rejected
                } else {
                    FailureKind::Transient
                }
            }
            _ => FailureKind::Rejected,
        },
    }
}

/// How hard to try.
#[derive(Clone, Debug)]
pub enum Retry {
    /// An answer in a dialogue: a few attempts.
    Reply,
    /// A support reply being delivered: until it is delivered or refused, or `shutdown`.
    UntilDone(CancellationToken),
}

/// Why a message was not sent.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The chat will never take a message: mark its link inactive.
    #[error("the chat refuses messages for good: {0}")]
    ChatGone(RequestError),
    /// Telegram refused this message.
    #[error("Telegram refused the message: {0}")]
    Rejected(RequestError),
    /// Transient failures until the attempts (or the process) ran out.
    #[error("gave up after transient failures: {0}")]
    GaveUp(RequestError),
    /// Shutting down while waiting to try again.
    #[error("shutting down")]
    Shutdown,
}

/// Where a message goes: a chat, or one forum topic of a supergroup.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dest {
    pub chat_id: i64,
    /// The topic's `message_thread_id`; `None`: the chat itself.
    pub thread: Option<i32>,
}

impl Dest {
    /// A forum topic of `chat_id`.
    pub fn topic(chat_id: i64, thread: i32) -> Self {
        Self {
            chat_id,
            thread: Some(thread),
        }
    }

    fn thread_id(&self) -> Option<ThreadId> {
        self.thread.map(|t| ThreadId(MessageId(t)))
    }
}

impl From<i64> for Dest {
    fn from(chat_id: i64) -> Self {
        Self {
            chat_id,
            thread: None,
        }
    }
}

/// Whether Telegram refused a send because its forum topic is gone (deleted by staff): the
/// topic is to be made anew. Telegram words it several ways.
pub fn is_thread_gone(e: &RequestError) -> bool {
    let text = e.to_string();
    let lower = text.to_ascii_lowercase();
    lower.contains("thread not found") || text.contains("TOPIC_DELETED")
}

/// Sends an HTML message to a chat (or a topic of one), with a reply markup (keyboard or
/// force-reply) when given, trying again on transient failures as `retry` says.
pub async fn send_html(
    bot: &TgBot,
    to: impl Into<Dest>,
    html: &str,
    markup: Option<ReplyMarkup>,
    retry: &Retry,
) -> Result<(), SendError> {
    let to = to.into();
    request(to.chat_id, retry, || {
        let mut request = bot
            .send_message(ChatId(to.chat_id), html)
            .parse_mode(ParseMode::Html);
        if let Some(thread) = to.thread_id() {
            request = request.message_thread_id(thread);
        }
        match markup.clone() {
            Some(markup) => request.reply_markup(markup),
            None => request,
        }
    })
    .await
    .map(drop)
}

/// How a file is shown in the chat.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileKind {
    /// `sendPhoto`: shown as an image (Telegram re-encodes it).
    Photo,
    /// `sendDocument`: a file to open or save, as it is.
    Document,
}

/// Sends a file to a chat (or a topic of one) under `name`, with an HTML caption when given,
/// trying again on transient failures (a 429 through the same throttle as texts) as `retry`
/// says.
pub async fn send_file(
    bot: &TgBot,
    to: impl Into<Dest>,
    kind: FileKind,
    file: &NamedBytes,
    caption_html: Option<&str>,
    retry: &Retry,
) -> Result<(), SendError> {
    let to = to.into();
    let chat_id = to.chat_id;
    // A cheap copy per attempt: `Bytes` shares the buffer.
    let input = || InputFile::memory(file.bytes.clone()).file_name(file.name.clone());
    match kind {
        FileKind::Photo => request(chat_id, retry, || {
            let mut request = bot.send_photo(ChatId(chat_id), input());
            if let Some(thread) = to.thread_id() {
                request = request.message_thread_id(thread);
            }
            match caption_html {
                Some(caption) => request.caption(caption).parse_mode(ParseMode::Html),
                None => request,
            }
        })
        .await
        .map(drop),
        FileKind::Document => request(chat_id, retry, || {
            let mut request = bot.send_document(ChatId(chat_id), input());
            if let Some(thread) = to.thread_id() {
                request = request.message_thread_id(thread);
            }
            match caption_html {
                Some(caption) => request.caption(caption).parse_mode(ParseMode::Html),
                None => request,
            }
        })
        .await
        .map(drop),
    }
}

/// A file's bytes and the name it is sent under.
#[derive(Clone, Debug)]
pub struct NamedBytes {
    pub name: String,
    pub bytes: Bytes,
}

/// Makes a Bot API request (built anew by `make` for each attempt) concerning `chat_id`,
/// trying again on transient failures as `retry` says; its answer.
pub async fn request<R, F>(chat_id: i64, retry: &Retry, make: F) -> Result<Output<R>, SendError>
where
    R: Request<Err = RequestError>,
    F: Fn() -> R,
{
    let mut backoff = FIRST_BACKOFF;
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        let request = make();
        let result = match retry {
            Retry::Reply => request.send().await,
            Retry::UntilDone(shutdown) => {
                let request = request.send();
                tokio::pin!(request);
                tokio::select! {
                    result = &mut request => result,
                    // Telegram may be accepting this very message: give the answer a moment,
                    // so that it is not sent again after the restart.
                    () = shutdown.cancelled() => {
                        match tokio::time::timeout(SHUTDOWN_GRACE, &mut request).await {
                            Ok(result) => result,
                            Err(_) => return Err(SendError::Shutdown),
                        }
                    }
                }
            }
        };
        let error = match result {
            Ok(output) => return Ok(output),
            Err(e) => e,
        };
        match classify(&error) {
            FailureKind::ChatGone => return Err(SendError::ChatGone(error)),
            FailureKind::Rejected => return Err(SendError::Rejected(error)),
            FailureKind::Transient => {}
        }
        let wait = match &error {
            // Throttle normally absorbs these; one that comes through is still honoured.
            RequestError::RetryAfter(after) => after.duration(),
            _ => backoff,
        };
        let cancel = match retry {
            Retry::Reply if attempt >= REPLY_ATTEMPTS => return Err(SendError::GaveUp(error)),
            Retry::Reply => None,
            Retry::UntilDone(shutdown) => Some(shutdown),
        };
        warn!(chat_id, attempt, wait_ms = wait.as_millis() as u64, error = %error,
            "Telegram request failed; trying again");
        metrics::counter!("socketgram_telegram_retries_total").increment(1);
        if let Some(shutdown) = cancel {
            tokio::select! {
                () = shutdown.cancelled() => return Err(SendError::Shutdown),
                () = tokio::time::sleep(wait) => {}
            }
        } else {
            tokio::time::sleep(wait).await;
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
        debug!(chat_id, attempt = attempt + 1, "retrying the request");
    }
}

/// Pause before trying again to reach the core or Telegram at start, doubling up to a limit.
#[derive(Debug)]
pub struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            next: FIRST_BACKOFF,
        }
    }
}

impl Backoff {
    /// Waits the current pause (false when `shutdown` came first), then doubles it.
    pub async fn wait(&mut self, shutdown: &CancellationToken) -> bool {
        let wait = self.next;
        self.next = (self.next * 2).min(MAX_BACKOFF);
        tokio::select! {
            () = shutdown.cancelled() => false,
            () = tokio::time::sleep(wait) => true,
        }
    }

    /// Back to the first pause after a success.
    pub fn reset(&mut self) {
        self.next = FIRST_BACKOFF;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(description: &str) -> RequestError {
        let json = format!("\"{description}\"");
        RequestError::Api(serde_json::from_str(&json).expect("ApiError from its description"))
    }

    #[test]
    fn failures_are_sorted() {
        assert_eq!(
            classify(&api("Forbidden: bot was blocked by the user")),
            FailureKind::ChatGone
        );
        assert_eq!(
            classify(&api("Forbidden: something new")),
            FailureKind::ChatGone
        );
        assert_eq!(
            classify(&api("Bad Request: can't parse entities")),
            FailureKind::Rejected
        );
        assert_eq!(
            classify(&api("Internal Server Error")),
            FailureKind::Transient
        );
        assert_eq!(classify(&api("Bad Gateway")), FailureKind::Transient);
        assert_eq!(classify(&api("Unauthorized")), FailureKind::Transient);
        // A file over the Bot API's upload limit: that file will never go.
        assert_eq!(
            classify(&api("Request Entity Too Large")),
            FailureKind::Rejected
        );
    }

    #[test]
    fn a_deleted_topic_is_recognised() {
        assert!(is_thread_gone(&api(
            "Bad Request: message thread not found"
        )));
        assert!(is_thread_gone(&api("Bad Request: TOPIC_DELETED")));
        assert!(is_thread_gone(&api("Bad Request: thread not found")));
        assert!(!is_thread_gone(&api("Bad Request: chat not found")));
    }
}
