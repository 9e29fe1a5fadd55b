//! The bot's dialogue (LEGACY.md §7): `/start`, the two menus, contacts, the log-in dialogue,
//! "write to support" and back, and what a visitor writes in that mode.
//!
//! State lives where it belongs: whether a chat is linked, to whom, its mode and its active
//! flag are the core's (asked over gRPC on each message); the only state kept here is the
//! step of an unfinished log-in (asked for the login, asked for the password), a transient
//! conversation step held in teloxide's in-memory dialogue storage. A restart forgets it, and
//! the user simply presses "Log in" again.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use teloxide::{
    dispatching::{
        HandlerExt as _, UpdateFilterExt as _, UpdateHandler,
        dialogue::{Dialogue, InMemStorage},
    },
    prelude::{Requester as _, Update},
    types::{ForceReply, KeyboardButton, KeyboardMarkup, Message, ReplyMarkup},
};
use tracing::{info, warn};

use crate::{
    core_api::{CoreApi, CoreInfo, Link, Verdict},
    error::TelegramError,
    sender::{Retry, SendError, TgBot, send_html},
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

/// What every handler needs besides the bot and the update.
pub struct Context {
    pub core: CoreApi,
    pub texts: Texts,
    pub info: CoreInfo,
    pub contacts_html: String,
    /// Recent failed log-ins per chat: passwords are not to be guessed at Telegram's pace.
    pub failed_logins: FailedLogins,
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

/// The handler tree: private chats' messages, with their log-in step.
pub fn schema() -> UpdateHandler<TelegramError> {
    Update::filter_message()
        // Groups and channels are not visitors: the bot talks in private chats only.
        .filter(|m: Message| m.chat.is_private())
        .enter_dialogue::<Message, InMemStorage<Step>, Step>()
        .endpoint(on_message)
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

/// `/start`: the greeting by first name and company, and the menu. A chat in writing mode
/// goes back to the menu, which is what it is shown.
async fn start(
    ctx: &Context,
    bot: &TgBot,
    msg: &Message,
    link: Option<Link>,
) -> Result<(), TelegramError> {
    let chat_id = msg.chat.id.0;
    if link.is_some_and(|l| l.writing) {
        ctx.core.set_state(chat_id, Some(false), None).await?;
    }
    let first_name = msg
        .from
        .as_ref()
        .map(|u| u.first_name.as_str())
        .or_else(|| msg.chat.first_name())
        .unwrap_or_default();
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
    let Some(text) = msg.text() else {
        // A photo, a sticker, a file, a voice message...: nothing is stored.
        let markup = match link {
            Some(l) if l.writing => back(texts),
            _ => menu(texts, linked),
        };
        reply(ctx, bot, chat_id, texts.text_only(), markup).await;
        return Ok(());
    };
    let pressed = button(texts, text);
    if let Some(l) = link.filter(|l| l.writing) {
        if pressed == Some(Button::Back) {
            ctx.core.set_state(chat_id, Some(false), None).await?;
            reply(ctx, bot, chat_id, texts.menu(), menu(texts, true)).await;
        } else {
            to_support(ctx, bot, msg, l, text).await;
        }
        return Ok(());
    }
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
    // The update's identity: a webhook retried by Telegram, or updates fetched again after a
    // crash, store the message once.
    let client_msg_id = format!("tg:{chat_id}:{}", msg.id.0);
    match ctx
        .core
        .send_visitor_text(link.conversation_id, text, client_msg_id)
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
