//! The bot's dialogue (LEGACY.md §7): `/start`, the two menus, contacts, the log-in dialogue,
//! "write to support" and back, and what a visitor writes in that mode: texts, photos and
//! files. Group chats are not visitors: the bot says once that it talks in private only; the
//! staff chat's messages go to `crate::staff`.
//!
//! State lives where it belongs: whether a chat is linked, to whom, its mode and its active
//! flag are the core's (asked over gRPC on each message); the only state kept here is the
//! step of an unfinished log-in (asked for the login, asked for the password), a transient
//! conversation step held in teloxide's in-memory dialogue storage. A restart forgets it, and
//! the user simply presses "Log in" again.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use socketgram_proto::reason;
use teloxide::{
    dispatching::{
        HandlerExt as _, UpdateFilterExt as _, UpdateHandler,
        dialogue::{Dialogue, InMemStorage},
    },
    dptree,
    net::Download as _,
    prelude::{Requester as _, Update},
    types::{FileId, ForceReply, KeyboardButton, KeyboardMarkup, Message, ReplyMarkup, UserId},
};
use tracing::{info, warn};

use crate::{
    core_api::{self, CoreApi, CoreInfo, Link, Verdict},
    error::TelegramError,
    sender::{self, Retry, SendError, TgBot, send_html},
    staff::Staff,
    texts::Texts,
};

/// The step of an unfinished log-in.
#[derive(Clone, Debug, Default)]
pub enum Step {
    /// No dialogue in progress: the menu, or writing to support.
    #[default]
    Idle,
    /// Asked for the login.
    Login,
    /// Asked for the password of `login`.
    Password { login: String },
}

type ChatDialogue = Dialogue<Step, InMemStorage<Step>>;

/// Failed log-ins a chat may make within [`FAILED_LOGIN_WINDOW`] before it must wait.
const MAX_FAILED_LOGINS: usize = 5;
const FAILED_LOGIN_WINDOW: Duration = Duration::from_secs(600);
/// The largest file the Bot API lets a bot download (`getFile`).
const BOT_API_DOWNLOAD_BYTES: u64 = 20 * 1024 * 1024;
/// What Telegram's `file_size` reads when it was not given (teloxide's fallback).
const UNKNOWN_SIZE: u32 = u32::MAX;

/// What every handler needs besides the bot and the update.
pub struct Context {
    pub core: CoreApi,
    pub texts: Texts,
    pub info: CoreInfo,
    pub contacts_html: String,
    /// Recent failed log-ins per chat: passwords are not to be guessed at Telegram's pace.
    pub failed_logins: FailedLogins,
    /// The bot's own user id (a group that removed it is not answered).
    pub bot_id: UserId,
    /// Groups told that the bot talks in private only.
    pub groups_told: GroupsTold,
    /// The staff chat (`[telegram] staff_chat_id`), when one is configured.
    pub staff: Option<Arc<Staff>>,
}

/// The group chats told that the bot talks in private only, so that each is told once. In
/// memory, for the life of the process: after a restart a group that writes again is told
/// once more, which costs one message.
#[derive(Default)]
pub struct GroupsTold(Mutex<HashSet<i64>>);

/// How many groups are remembered before the memory starts afresh.
const MAX_GROUPS_TOLD: usize = 100_000;

impl GroupsTold {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<i64>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether the group is to be told now (the first time), remembering that it was.
    fn first_time(&self, chat_id: i64) -> bool {
        let mut told = self.lock();
        if told.len() >= MAX_GROUPS_TOLD {
            told.clear();
        }
        told.insert(chat_id)
    }

    /// The telling failed: the group's next message tries again.
    fn forget(&self, chat_id: i64) {
        self.lock().remove(&chat_id);
    }
}

/// Recent failed log-ins per chat (in memory: a restart forgives, which is no risk at
/// [`MAX_FAILED_LOGINS`] per [`FAILED_LOGIN_WINDOW`]).
#[derive(Default)]
pub struct FailedLogins(Mutex<HashMap<i64, Vec<Instant>>>);

impl FailedLogins {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<i64, Vec<Instant>>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether the chat has used up its attempts for now.
    fn exhausted(&self, chat_id: i64) -> bool {
        let mut all = self.lock();
        let now = Instant::now();
        if all.len() > 10_000 {
            // Forget chats whose failures are all old, so the map stays small.
            all.retain(|_, times| times.iter().any(|t| now - *t < FAILED_LOGIN_WINDOW));
        }
        let times = all.entry(chat_id).or_default();
        times.retain(|t| now - *t < FAILED_LOGIN_WINDOW);
        times.len() >= MAX_FAILED_LOGINS
    }

    fn failed(&self, chat_id: i64) {
        self.lock().entry(chat_id).or_default().push(Instant::now());
    }

    fn succeeded(&self, chat_id: i64) {
        self.lock().remove(&chat_id);
    }
}

/// The handler tree: private chats' messages, with their log-in step; group chats' messages.
/// Channels' posts are other updates, ignored.
pub fn schema() -> UpdateHandler<TelegramError> {
    Update::filter_message()
        .branch(
            dptree::filter(|m: Message| m.chat.is_private())
                .enter_dialogue::<Message, InMemStorage<Step>, Step>()
                .endpoint(on_message),
        )
        .branch(
            dptree::filter(|m: Message| m.chat.is_group() || m.chat.is_supergroup())
                .endpoint(on_group_message),
        )
}

/// A button press is its label, sent as a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Button {
    Login,
    Contacts,
    Write,
    Back,
}

fn button(texts: &Texts, text: &str) -> Option<Button> {
    let text = text.trim();
    [
        (texts.button_login(), Button::Login),
        (texts.button_contacts(), Button::Contacts),
        (texts.button_write(), Button::Write),
        (texts.button_back(), Button::Back),
    ]
    .into_iter()
    .find_map(|(label, b)| (label == text).then_some(b))
}

fn is_start(text: &str) -> bool {
    let command = text.split_whitespace().next().unwrap_or_default();
    command == "/start" || command.starts_with("/start@")
}

/// The menu keyboard: [log in] [contacts] when not linked, [write to support] [contacts]
/// when linked (LEGACY.md §7).
fn menu(texts: &Texts, linked: bool) -> ReplyMarkup {
    let first = if linked {
        texts.button_write()
    } else {
        texts.button_login()
    };
    ReplyMarkup::Keyboard(
        KeyboardMarkup::new([[
            KeyboardButton::new(first),
            KeyboardButton::new(texts.button_contacts()),
        ]])
        .resize_keyboard(),
    )
}

/// The writing-mode keyboard: [back].
fn back(texts: &Texts) -> ReplyMarkup {
    ReplyMarkup::Keyboard(
        KeyboardMarkup::new([[KeyboardButton::new(texts.button_back())]]).resize_keyboard(),
    )
}

fn force_reply(placeholder: &str) -> ReplyMarkup {
    ReplyMarkup::ForceReply(ForceReply::new().input_field_placeholder(placeholder.to_owned()))
}

/// What a linked chat is shown when the bot starts (its mode was just reset to the menu).
pub fn restart_menu(texts: &Texts) -> (String, ReplyMarkup) {
    (texts.restarted().to_owned(), menu(texts, true))
}

/// Sends a dialogue answer; a chat that blocked the bot in the meantime gets its link marked
/// inactive. Failures are logged, not returned: the next message gets another chance.
async fn reply(ctx: &Context, bot: &TgBot, chat_id: i64, html: &str, markup: ReplyMarkup) {
    answer(ctx, bot, chat_id, html, Some(markup)).await;
}

/// [`reply`] with the keyboard left as it is when `markup` is `None`.
async fn answer(ctx: &Context, bot: &TgBot, chat_id: i64, html: &str, markup: Option<ReplyMarkup>) {
    match send_html(bot, chat_id, html, markup, &Retry::Reply).await {
        Ok(()) => {}
        Err(SendError::ChatGone(e)) => {
            warn!(chat_id, error = %e, "chat refuses messages; marking its link inactive");
            if let Err(e) = ctx.core.set_state(chat_id, None, Some(false)).await {
                warn!(chat_id, error = %e, "cannot mark the link inactive");
            }
        }
        Err(e) => warn!(chat_id, error = %e, "cannot answer the chat"),
    }
}

async fn on_message(
    bot: TgBot,
    ctx: Arc<Context>,
    dialogue: ChatDialogue,
    msg: Message,
) -> Result<(), TelegramError> {
    if let Err(e) = handle(&bot, &ctx, &dialogue, &msg).await {
        // The core could not be reached or refused: the user is told, nothing half-done stays
        // (each core call is one transaction).
        warn!(chat_id = msg.chat.id.0, error = %e, "cannot handle a Telegram message");
        answer(&ctx, &bot, msg.chat.id.0, ctx.texts.unavailable(), None).await;
    }
    Ok(())
}

async fn handle(
    bot: &TgBot,
    ctx: &Context,
    dialogue: &ChatDialogue,
    msg: &Message,
) -> Result<(), TelegramError> {
    let chat_id = msg.chat.id.0;
    let texts = ctx.texts;
    let mut link = ctx.core.link(chat_id).await?;
    // A user who blocked the bot and writes again has unblocked it.
    if let Some(l) = link.filter(|l| !l.active) {
        info!(
            chat_id,
            conversation = l.conversation_id,
            "chat is back; link active again"
        );
        link = ctx.core.set_state(chat_id, None, Some(true)).await?;
    }
    let step = dialogue.get().await.ok().flatten().unwrap_or_default();
    let text = msg.text();
    if text.is_some_and(is_start) {
        let _ = dialogue.exit().await;
        return start(ctx, bot, msg, link).await;
    }
    match step {
        Step::Login | Step::Password { .. } if text.and_then(|t| button(&texts, t)).is_some() => {
            // A menu button pressed instead of answering: the log-in is abandoned.
            let _ = dialogue.exit().await;
            idle(ctx, bot, dialogue, msg, link).await
        }
        Step::Login => {
            let Some(login) = text else {
                let prompt = format!("{} {}", texts.text_only_login(), texts.ask_login());
                reply(
                    ctx,
                    bot,
                    chat_id,
                    &prompt,
                    force_reply(texts.login_placeholder()),
                )
                .await;
                return Ok(());
            };
            let login = login.trim().to_owned();
            let _ = dialogue.update(Step::Password { login }).await;
            reply(
                ctx,
                bot,
                chat_id,
                texts.ask_password(),
                force_reply(texts.password_placeholder()),
            )
            .await;
            Ok(())
        }
        Step::Password { login } => {
            let Some(password) = text else {
                let prompt = format!("{} {}", texts.text_only_login(), texts.ask_password());
                reply(
                    ctx,
                    bot,
                    chat_id,
                    &prompt,
                    force_reply(texts.password_placeholder()),
                )
                .await;
                return Ok(());
            };
            let _ = dialogue.exit().await;
            // The password should not stay readable in the chat; best effort (a bot may
            // delete incoming messages of a private chat for 48 hours).
            if let Err(e) = bot.delete_message(msg.chat.id, msg.id).await {
                warn!(chat_id, error = %e, "cannot delete the password message");
            }
            log_in(ctx, bot, chat_id, &login, password, link).await
        }
        Step::Idle => idle(ctx, bot, dialogue, msg, link).await,
    }
}

/// The parameter of `/start <parameter>`, what a deep link `t.me/<bot>?start=<parameter>`
/// sends.
fn start_parameter(text: &str) -> Option<&str> {
    let mut words = text.split_whitespace();
    words.next().filter(|command| is_start(command))?;
    words.next()
}

/// `/start`: the greeting by first name and company, and the menu. A chat in writing mode
/// goes back to the menu, which is what it is shown. `/start <token>`, the widget's
/// "Continue in Telegram", links the chat to that visitor first (see [`start_linked`]).
async fn start(
    ctx: &Context,
    bot: &TgBot,
    msg: &Message,
    link: Option<Link>,
) -> Result<(), TelegramError> {
    let chat_id = msg.chat.id.0;
    let first_name = msg
        .from
        .as_ref()
        .map(|u| u.first_name.as_str())
        .or_else(|| msg.chat.first_name())
        .unwrap_or_default();
    if let Some(token) = msg.text().and_then(start_parameter) {
        return start_linked(ctx, bot, chat_id, first_name, token, link).await;
    }
    if link.is_some_and(|l| l.writing) {
        ctx.core.set_state(chat_id, Some(false), None).await?;
    }
    let greeting = format!(
        "{}\n{}",
        ctx.texts.greeting(first_name, &ctx.info.company),
        ctx.texts.menu()
    );
    reply(
        ctx,
        bot,
        chat_id,
        &greeting,
        menu(&ctx.texts, link.is_some()),
    )
    .await;
    Ok(())
}

/// `/start <token>`: redeems the widget's one-time token, which links the chat to the
/// token's visitor (moving older links, as a log-in does) without a password, and puts it in
/// writing mode: the visitor came to go on with the conversation. A token that is unknown,
/// used or expired links nothing and is said to be so; the chat keeps the link it had.
async fn start_linked(
    ctx: &Context,
    bot: &TgBot,
    chat_id: i64,
    first_name: &str,
    token: &str,
    link: Option<Link>,
) -> Result<(), TelegramError> {
    let texts = &ctx.texts;
    let Some(linked) = ctx.core.redeem_link_token(chat_id, token).await? else {
        info!(chat_id, "a start link that is unknown, used or expired");
        if link.is_some_and(|l| l.writing) {
            ctx.core.set_state(chat_id, Some(false), None).await?;
        }
        reply(
            ctx,
            bot,
            chat_id,
            texts.link_invalid(),
            menu(texts, link.is_some()),
        )
        .await;
        return Ok(());
    };
    ctx.core.set_state(chat_id, Some(true), None).await?;
    info!(
        chat_id,
        conversation = linked.conversation_id,
        "Telegram chat linked by the widget's start link"
    );
    let text = texts.linked_by_link(first_name, &format!("id{}", linked.conversation_id));
    reply(ctx, bot, chat_id, &text, back(texts)).await;
    Ok(())
}

/// Checks the credentials with the core; links the chat on success (moving any older link).
async fn log_in(
    ctx: &Context,
    bot: &TgBot,
    chat_id: i64,
    login: &str,
    password: &str,
    link: Option<Link>,
) -> Result<(), TelegramError> {
    let texts = &ctx.texts;
    if ctx.failed_logins.exhausted(chat_id) {
        info!(chat_id, "too many failed log-ins; not checked");
        let markup = menu(texts, link.is_some());
        reply(ctx, bot, chat_id, texts.too_many_attempts(), markup).await;
        return Ok(());
    }
    let verdict = match ctx.core.check_credentials(login, password).await {
        Ok(v) => v,
        Err(e) => {
            warn!(chat_id, error = %e, "cannot check credentials");
            reply(
                ctx,
                bot,
                chat_id,
                texts.unavailable(),
                menu(texts, link.is_some()),
            )
            .await;
            return Ok(());
        }
    };
    let refusal = match verdict {
        Verdict::Accepted(conversation) => {
            ctx.failed_logins.succeeded(chat_id);
            let linked = ctx.core.link_chat(chat_id, conversation).await?;
            info!(
                chat_id,
                conversation = linked.conversation_id,
                "Telegram chat linked"
            );
            let text = texts.logged_in(&format!("id{conversation}"));
            reply(ctx, bot, chat_id, &text, menu(texts, true)).await;
            return Ok(());
        }
        Verdict::MalformedLogin => texts.malformed_login().to_owned(),
        Verdict::UnknownLogin => texts.unknown_login(login),
        Verdict::WrongPassword => texts.wrong_password().to_owned(),
        Verdict::WrongCredentials => texts.wrong_credentials().to_owned(),
    };
    ctx.failed_logins.failed(chat_id);
    info!(chat_id, verdict = ?verdict, "Telegram login refused");
    // A chat that was linked before keeps its link: it shows the linked menu.
    reply(ctx, bot, chat_id, &refusal, menu(texts, link.is_some())).await;
    Ok(())
}

/// No log-in in progress: menu buttons, or (in writing mode) a message to support.
async fn idle(
    ctx: &Context,
    bot: &TgBot,
    dialogue: &ChatDialogue,
    msg: &Message,
    link: Option<Link>,
) -> Result<(), TelegramError> {
    let chat_id = msg.chat.id.0;
    let texts = &ctx.texts;
    let linked = link.is_some();
    let content = Content::of(msg);
    if let Content::Other = content {
        // A sticker, a voice message, a video note...: nothing is stored.
        let markup = match link {
            Some(l) if l.writing => back(texts),
            _ => menu(texts, linked),
        };
        reply(ctx, bot, chat_id, texts.text_only(), markup).await;
        return Ok(());
    }
    let pressed = match &content {
        Content::Text(text) => button(texts, text),
        _ => None,
    };
    if let Some(l) = link.filter(|l| l.writing) {
        if pressed == Some(Button::Back) {
            ctx.core.set_state(chat_id, Some(false), None).await?;
            reply(ctx, bot, chat_id, texts.menu(), menu(texts, true)).await;
        } else {
            match content {
                Content::Text(text) => to_support(ctx, bot, msg, l, text).await,
                Content::File(file) => file_to_support(ctx, bot, msg, l, &file).await,
                Content::Other => {}
            }
        }
        return Ok(());
    }
    // Outside writing mode a photo or a file is answered as a text would be.
    match pressed {
        Some(Button::Contacts) => {
            let contacts = if ctx.contacts_html.trim().is_empty() {
                texts.no_contacts()
            } else {
                ctx.contacts_html.as_str()
            };
            reply(ctx, bot, chat_id, contacts, menu(texts, linked)).await;
        }
        Some(Button::Login) => {
            let _ = dialogue.update(Step::Login).await;
            reply(
                ctx,
                bot,
                chat_id,
                texts.ask_login(),
                force_reply(texts.login_placeholder()),
            )
            .await;
        }
        Some(Button::Write) if linked => {
            ctx.core.set_state(chat_id, Some(true), None).await?;
            reply(ctx, bot, chat_id, texts.writing(), back(texts)).await;
        }
        Some(Button::Back) => {
            reply(ctx, bot, chat_id, texts.menu(), menu(texts, linked)).await;
        }
        Some(Button::Write) | None if !linked => {
            reply(ctx, bot, chat_id, texts.not_linked(), menu(texts, false)).await;
        }
        _ => {
            reply(ctx, bot, chat_id, texts.press_write(), menu(texts, true)).await;
        }
    }
    Ok(())
}

/// A text in writing mode: a visitor message of the linked conversation (author TELEGRAM),
/// delivered by the core to admins and the visitor's web tabs like any other.
async fn to_support(ctx: &Context, bot: &TgBot, msg: &Message, link: Link, text: &str) {
    let chat_id = msg.chat.id.0;
    let texts = &ctx.texts;
    let chars = text.chars().count();
    let limit = ctx.info.max_message_chars;
    if chars > limit {
        reply(
            ctx,
            bot,
            chat_id,
            &texts.too_long(chars, limit),
            back(texts),
        )
        .await;
        return;
    }
    match ctx
        .core
        .send_visitor_message(link.conversation_id, text, client_msg_id(msg), Vec::new())
        .await
    {
        Ok(id) => info!(
            chat_id,
            conversation = link.conversation_id,
            message = id,
            "Telegram message stored"
        ),
        Err(e) if e.core_reason().as_deref() == Some(socketgram_proto::reason::TEXT_TOO_LONG) => {
            // Within the character limit but over the column once escaped for storage.
            info!(chat_id, error = %e, "message refused by the core");
            reply(
                ctx,
                bot,
                chat_id,
                &texts.too_long(chars, limit),
                back(texts),
            )
            .await;
        }
        Err(e) => {
            warn!(chat_id, error = %e, "cannot store the Telegram message");
            reply(ctx, bot, chat_id, texts.unavailable(), back(texts)).await;
        }
    }
}

/// The update's identity: a webhook retried by Telegram, or updates fetched again after a
/// crash, store the message once.
pub(crate) fn client_msg_id(msg: &Message) -> String {
    format!("tg:{}:{}", msg.chat.id.0, msg.id.0)
}

/// What a message carries, as far as support is concerned.
pub(crate) enum Content<'a> {
    Text(&'a str),
    /// A photo or a file, with its caption.
    File(IncomingFile),
    /// Stickers, voice messages, video notes, locations...: not for support.
    Other,
}

/// A photo or a document a visitor (or a staff member) sends.
#[derive(Debug)]
pub(crate) struct IncomingFile {
    id: FileId,
    /// Telegram's `file_size`; `None` when it did not say.
    pub size: Option<u64>,
    /// The document's name, or `photo.jpg` (Telegram keeps photos as JPEG).
    pub name: String,
    pub caption: String,
}

impl<'a> Content<'a> {
    pub(crate) fn of(msg: &'a Message) -> Self {
        let caption = || msg.caption().unwrap_or_default().to_owned();
        let size = |size: u32| (size != UNKNOWN_SIZE).then_some(u64::from(size));
        if let Some(text) = msg.text() {
            Content::Text(text)
        } else if let Some(document) = msg.document() {
            Content::File(IncomingFile {
                id: document.file.id.clone(),
                size: size(document.file.size),
                name: document
                    .file_name
                    .clone()
                    .filter(|n| !n.trim().is_empty())
                    .unwrap_or_else(|| "file".to_owned()),
                caption: caption(),
            })
        } else if let Some(largest) = msg.photo().and_then(|sizes| {
            sizes
                .iter()
                .max_by_key(|p| (u64::from(p.width) * u64::from(p.height), p.file.size))
        }) {
            // Telegram offers each photo in several sizes; support gets the largest.
            Content::File(IncomingFile {
                id: largest.file.id.clone(),
                size: size(largest.file.size),
                name: "photo.jpg".to_owned(),
                caption: caption(),
            })
        } else {
            Content::Other
        }
    }
}

/// Why a visitor's file was not stored; each is told as such.
#[derive(Debug)]
pub(crate) enum FileRefusal {
    /// Over this many bytes.
    TooLarge(u64),
    /// A type the core does not take (as it sniffed it).
    Type(String),
    /// The caption is over the core's limit (escaped for storage).
    CaptionTooLong,
    /// Telegram or the core failed; the user may try again.
    Failed(String),
}

impl FileRefusal {
    /// What the sender is told (`chars`: the caption's length; `limit`: the core's).
    pub(crate) fn told(&self, texts: &Texts, chars: usize, limit: usize) -> String {
        match self {
            FileRefusal::TooLarge(limit) => texts.file_too_large(*limit),
            FileRefusal::Type(content_type) => texts.file_type_refused(content_type),
            FileRefusal::CaptionTooLong => texts.too_long(chars, limit),
            FileRefusal::Failed(_) => texts.file_failed().to_owned(),
        }
    }
}

/// The largest file a visitor may send: what the Bot API lets a bot download, and what the
/// core takes.
fn file_limit(info: &CoreInfo) -> u64 {
    match info.max_attachment_bytes {
        0 => BOT_API_DOWNLOAD_BYTES,
        core => core.min(BOT_API_DOWNLOAD_BYTES),
    }
}

/// A photo or a file in writing mode: downloaded from Telegram and uploaded to the core as it
/// comes, then a visitor message of the linked conversation with it and the caption (author
/// TELEGRAM). A file over the limits is refused before it is downloaded; nothing is stored of
/// a refused or failed one, and the user is told why.
async fn file_to_support(
    ctx: &Context,
    bot: &TgBot,
    msg: &Message,
    link: Link,
    file: &IncomingFile,
) {
    let chat_id = msg.chat.id.0;
    let texts = &ctx.texts;
    let chars = file.caption.chars().count();
    let limit = ctx.info.max_message_chars;
    let refusal = if chars > limit {
        FileRefusal::CaptionTooLong
    } else {
        match store_file(ctx, bot, msg, link, file).await {
            Ok(id) => {
                info!(
                    chat_id,
                    conversation = link.conversation_id,
                    message = id,
                    "Telegram file stored"
                );
                return;
            }
            Err(refusal) => refusal,
        }
    };
    match &refusal {
        FileRefusal::Failed(error) => {
            warn!(chat_id, error, "cannot pass a Telegram file on to support");
        }
        refusal => info!(chat_id, size = ?file.size, chars, ?refusal, "file refused"),
    }
    let text = refusal.told(texts, chars, limit);
    reply(ctx, bot, chat_id, &text, back(texts)).await;
}

/// Downloads the file from Telegram into an upload to the core, and sends the message.
async fn store_file(
    ctx: &Context,
    bot: &TgBot,
    msg: &Message,
    link: Link,
    file: &IncomingFile,
) -> Result<u64, FileRefusal> {
    let attachment = upload_file(
        ctx,
        bot,
        msg.chat.id.0,
        link.conversation_id,
        core_api::telegram_visitor(),
        file,
    )
    .await?;
    ctx.core
        .send_visitor_message(
            link.conversation_id,
            &file.caption,
            client_msg_id(msg),
            vec![attachment.id],
        )
        .await
        .map_err(|e| match e.core_reason().as_deref() {
            Some(reason::TEXT_TOO_LONG) => FileRefusal::CaptionTooLong,
            _ => FileRefusal::Failed(e.to_string()),
        })
}

/// Downloads a photo or a file sent in `chat_id` from Telegram into an upload to the core for
/// `conversation`, by `author` (the visitor from a private chat, or a staff member in the
/// staff group), as it comes. A file over the limits is refused before it is downloaded;
/// nothing is kept of a refused or failed one.
pub(crate) async fn upload_file(
    ctx: &Context,
    bot: &TgBot,
    chat_id: i64,
    conversation: u64,
    author: socketgram_proto::v1::Author,
    file: &IncomingFile,
) -> Result<socketgram_proto::v1::Attachment, FileRefusal> {
    let limit = file_limit(&ctx.info);
    if file.size.is_some_and(|size| size > limit) {
        return Err(FileRefusal::TooLarge(limit));
    }
    let found = sender::request(chat_id, &Retry::Reply, || bot.get_file(file.id.clone()))
        .await
        .map_err(|e| match &e {
            // What the Bot API answers for a file over its download limit.
            SendError::Rejected(e) if e.to_string().contains("too big") => {
                FileRefusal::TooLarge(limit)
            }
            _ => FileRefusal::Failed(format!("getFile: {e}")),
        })?;
    // Telegram may say the size only now.
    let size = match found.meta.size {
        UNKNOWN_SIZE => file.size.unwrap_or_default(),
        size => u64::from(size),
    };
    if size > limit {
        return Err(FileRefusal::TooLarge(limit));
    }
    let bytes = bot.download_file_stream(&found.path);
    ctx.core
        .upload(conversation, author, &file.name, size, bytes)
        .await
        .map_err(|e| match e.core_reason().as_deref() {
            Some(reason::FILE_TOO_LARGE) => FileRefusal::TooLarge(
                e.core_metadata("limit")
                    .and_then(|l| l.parse().ok())
                    .unwrap_or(limit),
            ),
            Some(reason::FILE_TYPE_NOT_ALLOWED) => {
                FileRefusal::Type(e.core_metadata("type").unwrap_or_default())
            }
            _ => FileRefusal::Failed(e.to_string()),
        })
}

/// A message in a group or a supergroup the bot was added to. Groups are not visitors: the
/// bot never shows them a menu nor stores what they write, and says once that it talks in
/// private chats only.
async fn on_group_message(
    bot: TgBot,
    ctx: Arc<Context>,
    msg: Message,
) -> Result<(), TelegramError> {
    let chat_id = msg.chat.id.0;
    if let Some(staff) = ctx.staff.as_ref().filter(|s| s.chat_id == chat_id) {
        // The staff chat is no stranger: it is never told to go private.
        staff.on_message(&bot, &ctx, &msg).await;
        return Ok(());
    }
    if msg.left_chat_member().is_some_and(|u| u.id == ctx.bot_id) {
        // Removed from the group: nothing can be said there any more.
        return Ok(());
    }
    if !ctx.groups_told.first_time(chat_id) {
        return Ok(());
    }
    info!(
        chat_id,
        "a group wrote to the bot; told it talks in private only"
    );
    match send_html(&bot, chat_id, ctx.texts.private_only(), None, &Retry::Reply).await {
        Ok(()) => {}
        // A group that refuses messages is not told again.
        Err(e @ SendError::ChatGone(_)) => warn!(chat_id, error = %e, "cannot answer the group"),
        Err(e) => {
            warn!(chat_id, error = %e, "cannot answer the group; its next message tries again");
            ctx.groups_told.forget(chat_id);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_start_link_passes_its_parameter() {
        assert_eq!(start_parameter("/start"), None);
        assert_eq!(start_parameter("/start  "), None);
        assert_eq!(start_parameter("/start abc_-1"), Some("abc_-1"));
        assert_eq!(start_parameter("/start@AcmeBot abc"), Some("abc"));
        assert_eq!(start_parameter("/starter abc"), None);
        assert_eq!(start_parameter("hello /start abc"), None);
    }
}
