//! Support in a Telegram group ("staff mode", `[telegram] staff_chat_id`): a forum supergroup
//! where each conversation has a topic of its own, named after its visitor (the name the host
//! site vouched for, else `id<cid>`). This module owns:
//!
//! - the start check ([`check`]): the chat is a forum and the bot an administrator allowed to
//!   manage topics; otherwise a clear error is logged, staff mode stays off (nothing is posted
//!   in the chat, its messages are ignored) and the rest of the bot works on;
//! - the mirror ([`Topics`], a [`Route`] of the delivery loop): every visitor message (from the
//!   web widget or a linked Telegram chat; direction to support) goes to its conversation's
//!   topic, its files too (photos as photos, other files as documents, as the replies'), and
//!   so do support's replies written elsewhere (the console, the PHP admin, a backend: "answer
//!   from <admin>:"), so that a topic reads as the whole conversation. A reply written in a
//!   topic of this chat is known by its key (`tg:<chat>:<message>`, `Message.client_msg_id`)
//!   and never echoed. The mirror has a durable cursor and a lease of its own
//!   (`telegram-staff:<bot id>:<chat id>`), so one edge of a bot mirrors, at least once and at
//!   most one message twice after a crash, as [`crate::delivery`] delivers. Topics are made by
//!   the mirror alone, one message at a time, and kept in the core (`Telegram.PutStaffTopic`),
//!   so a restart makes none twice; a topic staff deleted is made anew when a send finds it
//!   gone, and the message goes there whole;
//! - what staff write in a topic ([`Staff::on_message`]): texts and files go to the visitor as
//!   a reply signed by the admin the Telegram user is paired with (`socketgram admin
//!   link-telegram`), stored once however often Telegram delivers the update; `/resolve`,
//!   `/assign [login]` and `/note <text>` act on the conversation. A user paired with nobody
//!   is told how to be paired, and nothing is sent. Messages in the general topic, in topics
//!   of no conversation (staff's own) and service messages are ignored quietly: the group is
//!   the staff's room, and the bot speaks there only when spoken to in a conversation's topic.

use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};

use socketgram_proto::v1 as pb;
use teloxide::{
    payloads::CreateForumTopicSetters as _,
    prelude::Requester as _,
    types::{ChatFullInfoKind, ChatFullInfoPublicKind, ChatId, ChatMemberKind, Message, UserId},
};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::{
    core_api::{self, CoreApi},
    delivery::{self, Delivery, Poster, Reached, Route},
    dialogue::{self, Content, Context, FileRefusal},
    error::{StaffSetup, TelegramError},
    lease::DeliveryLease,
    sender::{Dest, Retry, SendError, TgBot, request, send_html},
    texts::Texts,
};

/// Telegram takes topic names of 1 to 128 characters.
const TOPIC_NAME_CHARS: usize = 128;
/// A message whose new topic is gone again at once is not chased further than this.
const TOPIC_ATTEMPTS: usize = 3;

/// The staff chat, as the dialogue's handlers see it.
pub struct Staff {
    /// `[telegram] staff_chat_id`.
    pub chat_id: i64,
    /// Whether the start check passed: until then, and for good when it failed, the chat's
    /// messages are ignored and nothing is posted there.
    ready: AtomicBool,
}

impl Staff {
    pub fn new(chat_id: i64) -> Self {
        Self {
            chat_id,
            ready: AtomicBool::new(false),
        }
    }

    fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// A message in the staff chat. Failures are told in the topic or logged, not returned.
    pub async fn on_message(&self, bot: &TgBot, ctx: &Context, msg: &Message) {
        if !self.is_ready() {
            debug!(chat_id = self.chat_id, "staff mode is off; message ignored");
            return;
        }
        let Some(thread) = msg.thread_id.filter(|_| msg.is_topic_message) else {
            // The general topic: staff talking among themselves.
            return;
        };
        let Some(from) = msg.from.as_ref().filter(|u| !u.is_bot) else {
            return;
        };
        if !matches!(msg.kind, teloxide::types::MessageKind::Common(_)) {
            // A topic made, renamed, closed...: Telegram's notices, not staff's words.
            return;
        }
        let topic = Dest::topic(self.chat_id, thread.0.0);
        let said = match self
            .act(bot, ctx, msg, from.id, i64::from(thread.0.0))
            .await
        {
            Ok(Some(said)) => said,
            Ok(None) => return,
            // The core away: nothing was done, and the staff member may simply try again.
            Err(e) if e.is_transient_core() || e.core_message().is_none() => {
                warn!(chat_id = self.chat_id, thread = thread.0.0, error = %e,
                    "cannot handle a staff message");
                ctx.texts.unavailable().to_owned()
            }
            // The core refused (a reply too long, say): its words.
            Err(e) => {
                info!(chat_id = self.chat_id, thread = thread.0.0, error = %e,
                    "staff message refused by the core");
                ctx.texts
                    .staff_refused(e.core_message().unwrap_or_default())
            }
        };
        if let Err(e) = send_html(bot, topic, &said, None, &Retry::Reply).await {
            warn!(chat_id = self.chat_id, thread = thread.0.0, error = %e,
                "cannot answer in the staff topic");
        }
    }

    /// What a staff message does; what to answer in the topic, if anything.
    async fn act(
        &self,
        bot: &TgBot,
        ctx: &Context,
        msg: &Message,
        user: UserId,
        thread: i64,
    ) -> Result<Option<String>, TelegramError> {
        let texts = &ctx.texts;
        let Some(conversation) = ctx
            .core
            .staff_topic_conversation(self.chat_id, thread)
            .await?
        else {
            // A topic staff made for themselves.
            return Ok(None);
        };
        let user_id = i64::try_from(user.0).unwrap_or(i64::MAX);
        let Some(admin) = ctx.core.staff_member(user_id).await? else {
            info!(
                user_id,
                conversation, "staff member paired with nobody; nothing sent"
            );
            return Ok(Some(texts.staff_not_linked(user_id)));
        };
        let admin = admin.admin_id;
        let content = Content::of(msg);
        if let Content::Text(text) = &content
            && let Some(command) = Command::parse(text)
        {
            return self
                .command(ctx, conversation, &admin, command)
                .await
                .map(Some);
        }
        let client_msg_id = dialogue::client_msg_id(msg);
        let (text, attachments) = match &content {
            Content::Text(text) => ((*text).to_owned(), Vec::new()),
            Content::File(file) => {
                let author = core_api::admin(&admin);
                match dialogue::upload_file(ctx, bot, self.chat_id, conversation, author, file)
                    .await
                {
                    Ok(attachment) => (file.caption.clone(), vec![attachment.id]),
                    Err(refusal) => {
                        info!(conversation, refusal = ?refusal, "staff file not sent");
                        let chars = file.caption.chars().count();
                        let why = match refusal {
                            FileRefusal::Failed(_) => texts.staff_file_failed().to_owned(),
                            refusal => refusal.told(texts, chars, ctx.info.max_message_chars),
                        };
                        return Ok(Some(texts.staff_not_sent(&why)));
                    }
                }
            }
            Content::Other => return Ok(Some(texts.staff_text_only().to_owned())),
        };
        let sent = ctx
            .core
            .send_message(
                conversation,
                core_api::admin(&admin),
                &text,
                client_msg_id,
                attachments,
            )
            .await?;
        metrics::counter!("socketgram_telegram_staff_replies_total").increment(1);
        info!(
            conversation,
            admin,
            message = sent,
            "staff reply from the Telegram group stored"
        );
        Ok(None)
    }

    /// Runs a topic command as `admin`; the confirmation, or the core's refusal.
    async fn command(
        &self,
        ctx: &Context,
        conversation: u64,
        admin: &str,
        command: Command<'_>,
    ) -> Result<String, TelegramError> {
        let texts = &ctx.texts;
        let done = match command {
            Command::Resolve => ctx
                .core
                .set_status(conversation, pb::ConversationStatus::Resolved, admin)
                .await
                .map(|_| texts.staff_resolved().to_owned()),
            Command::Assign(login) => {
                let login = login.unwrap_or(admin);
                ctx.core
                    .assign(conversation, login, admin)
                    .await
                    .map(|_| texts.staff_assigned(login))
            }
            Command::Note("") => return Ok(texts.staff_note_empty().to_owned()),
            Command::Note(text) => ctx
                .core
                .add_note(conversation, admin, text)
                .await
                .map(|()| texts.staff_noted().to_owned()),
        };
        match done {
            Ok(done) => {
                info!(conversation, admin, ?command, "staff command done");
                Ok(done)
            }
            // The core said no (an unknown login, a note too long): its words, in the topic.
            Err(e) if !e.is_transient_core() => {
                info!(conversation, admin, ?command, error = %e, "staff command refused");
                Ok(texts.staff_refused(e.core_message().unwrap_or_default()))
            }
            Err(e) => Err(e),
        }
    }
}

/// A command written in a conversation's topic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Command<'a> {
    /// `/resolve`: the conversation is done.
    Resolve,
    /// `/assign [login]`: to that admin, or to the one who asks.
    Assign(Option<&'a str>),
    /// `/note <text>`: support's private note.
    Note(&'a str),
}

impl<'a> Command<'a> {
    /// The command `text` starts with (`/resolve`, `/resolve@bot`...); anything else is a
    /// reply to the visitor.
    fn parse(text: &'a str) -> Option<Self> {
        let text = text.trim();
        let (word, rest) = text
            .split_once(char::is_whitespace)
            .map_or((text, ""), |(w, r)| (w, r.trim()));
        let name = word.strip_prefix('/')?;
        let name = name.split_once('@').map_or(name, |(n, _)| n);
        match name {
            "resolve" => Some(Command::Resolve),
            "assign" => Some(Command::Assign(
                rest.split_whitespace().next().filter(|l| !l.is_empty()),
            )),
            "note" => Some(Command::Note(rest)),
            _ => None,
        }
    }
}

/// Checks that the bot can run the staff chat: a forum supergroup where it is an
/// administrator allowed to manage topics. Transient failures are tried again until
/// `shutdown`.
pub async fn check(
    bot: &TgBot,
    chat_id: i64,
    bot_id: UserId,
    shutdown: &CancellationToken,
) -> Result<(), StaffSetup> {
    let retry = Retry::UntilDone(shutdown.clone());
    let refused = |e: SendError| match e {
        SendError::Shutdown => StaffSetup::Shutdown,
        SendError::ChatGone(_) => StaffSetup::NotMember { chat_id },
        SendError::Rejected(e) | SendError::GaveUp(e) => StaffSetup::Telegram { chat_id, error: e },
    };
    let member = request(chat_id, &retry, || {
        bot.get_chat_member(ChatId(chat_id), bot_id)
    })
    .await
    .map_err(refused)?;
    match member.kind {
        // The owner may do anything.
        ChatMemberKind::Owner(_) => {}
        ChatMemberKind::Administrator(a) if a.can_manage_topics => {}
        ChatMemberKind::Administrator(_) => return Err(StaffSetup::NoManageTopics { chat_id }),
        ChatMemberKind::Left | ChatMemberKind::Banned(_) => {
            return Err(StaffSetup::NotMember { chat_id });
        }
        ChatMemberKind::Member(_) | ChatMemberKind::Restricted(_) => {
            return Err(StaffSetup::NotAdmin { chat_id });
        }
    }
    let chat = request(chat_id, &retry, || bot.get_chat(ChatId(chat_id)))
        .await
        .map_err(refused)?;
    let forum = match &chat.kind {
        ChatFullInfoKind::Public(public) => {
            matches!(&public.kind, ChatFullInfoPublicKind::Supergroup(s) if s.is_forum)
        }
        ChatFullInfoKind::Private(_) => false,
    };
    if !forum {
        return Err(StaffSetup::NotForum { chat_id });
    }
    Ok(())
}

/// The staff chat's mirror, for [`run`].
pub struct Mirror {
    pub staff: Arc<Staff>,
    pub core: CoreApi,
    pub bot: TgBot,
    pub texts: Texts,
    pub bot_id: UserId,
    /// `telegram-staff:<bot id>:<chat id>`: the cursor's consumer and the lease's name.
    pub consumer: String,
    pub lease: DeliveryLease,
    pub shutdown: CancellationToken,
}

/// Checks the staff chat ([`check`]); when it is fit, turns staff mode on and mirrors visitor
/// messages into it until shutdown. When it is not, logs what to fix and returns: the rest of
/// the bot works on without it.
pub async fn run(mirror: Mirror) {
    let chat_id = mirror.staff.chat_id;
    match check(&mirror.bot, chat_id, mirror.bot_id, &mirror.shutdown).await {
        Ok(()) => {}
        Err(StaffSetup::Shutdown) => return,
        Err(e) => {
            metrics::counter!("socketgram_telegram_staff_setup_failures_total").increment(1);
            error!(chat_id, "staff mode is off: {e}");
            return;
        }
    }
    mirror.staff.ready.store(true, Ordering::Release);
    info!(
        chat_id,
        "staff mode on: conversations are mirrored into the staff chat's topics"
    );
    let route = Topics {
        chat_id,
        poster: Poster {
            core: mirror.core.clone(),
            bot: mirror.bot,
            texts: mirror.texts,
            shutdown: mirror.shutdown.clone(),
            metric: "socketgram_telegram_staff_mirrored_total",
        },
    };
    Delivery {
        core: mirror.core,
        route,
        consumer: mirror.consumer,
        lease: mirror.lease,
        shutdown: mirror.shutdown,
    }
    .run()
    .await;
}

/// Visitor messages, and support replies written elsewhere, to their conversation's topic in
/// the staff chat.
pub struct Topics {
    chat_id: i64,
    /// Sends into the topics (and holds the core, the bot and the shutdown).
    poster: Poster,
}

impl Topics {
    /// Whether `m` was written in a topic of this staff chat (its key is the update's,
    /// `tg:<chat>:<message>`): it is there already.
    fn written_here(&self, m: &pb::Message) -> bool {
        m.client_msg_id
            .strip_prefix("tg:")
            .and_then(|rest| rest.split_once(':'))
            .is_some_and(|(chat, _)| chat == self.chat_id.to_string())
    }
}

impl Route for Topics {
    /// The visitor's messages, from the web or Telegram, and support's replies written
    /// elsewhere (the console, the PHP admin, a backend), so that a topic reads as the whole
    /// conversation; never a reply written in a topic here (no echo).
    fn wants(&self, m: &pb::Message) -> bool {
        m.direction == pb::Direction::ToSupport as i32
            || (delivery::is_support_reply(m) && !self.written_here(m))
    }

    async fn deliver(&self, m: &pb::Message) -> Result<(), TelegramError> {
        let conversation = m.conversation_id;
        let mut thread = match self
            .poster
            .core
            .staff_topic(self.chat_id, conversation)
            .await?
        {
            Some(thread) => thread,
            None => match self.create_topic(conversation).await? {
                Some(thread) => thread,
                None => return Ok(()),
            },
        };
        for _ in 0..TOPIC_ATTEMPTS {
            let Ok(to) = i32::try_from(thread).map(|t| Dest::topic(self.chat_id, t)) else {
                warn!(
                    thread,
                    "a stored topic id out of Telegram's range; making a new one"
                );
                thread = match self.create_topic(conversation).await? {
                    Some(thread) => thread,
                    None => return Ok(()),
                };
                continue;
            };
            let header = (m.direction == pb::Direction::ToVisitor as i32)
                .then(|| self.poster.texts.answer_header(delivery::signer(m)));
            match self.poster.post(to, header.as_deref(), m).await? {
                Reached::Delivered => {
                    debug!(
                        conversation,
                        message = m.id,
                        thread,
                        "visitor message mirrored"
                    );
                    return Ok(());
                }
                Reached::ChatGone(e) => {
                    error!(chat_id = self.chat_id, message = m.id, error = %e,
                        "the staff chat refuses the bot's messages; message not mirrored");
                    return Ok(());
                }
                Reached::ThreadGone(e) => {
                    info!(conversation, thread, error = %e, "staff topic deleted; making it anew");
                    thread = match self.create_topic(conversation).await? {
                        Some(thread) => thread,
                        None => return Ok(()),
                    };
                }
            }
        }
        warn!(
            conversation,
            message = m.id,
            "the conversation's topic keeps disappearing; message not mirrored"
        );
        Ok(())
    }
}

impl Topics {
    /// Makes the conversation's topic (flood limits waited out) and keeps it in the core right
    /// away: a crash between the two is the only way one is made twice. `None` when Telegram
    /// refuses for good (logged): the message is skipped.
    async fn create_topic(&self, conversation: u64) -> Result<Option<i64>, TelegramError> {
        let name = self.topic_name(conversation).await?;
        let retry = Retry::UntilDone(self.poster.shutdown.clone());
        let made = request(self.chat_id, &retry, || {
            // A colour of Telegram's list: topics of conversations look alike.
            self.poster
                .bot
                .create_forum_topic(ChatId(self.chat_id), name.clone())
                .icon_color(teloxide::types::Rgb::from_u32(0x6F_B9_F0))
        })
        .await;
        let topic = match made {
            Ok(topic) => topic,
            Err(SendError::Shutdown) => return Err(TelegramError::Shutdown),
            Err(SendError::GaveUp(e)) => return Err(TelegramError::Telegram(e)),
            Err(SendError::ChatGone(e) | SendError::Rejected(e)) => {
                error!(chat_id = self.chat_id, conversation, error = %e,
                    "cannot make a topic in the staff chat (does the bot still have the right \"Manage topics\"?); message not mirrored");
                return Ok(None);
            }
        };
        let thread = i64::from(topic.thread_id.0.0);
        self.poster
            .core
            .put_staff_topic(self.chat_id, conversation, thread)
            .await?;
        metrics::counter!("socketgram_telegram_staff_topics_total").increment(1);
        info!(conversation, thread, name = %name, "staff topic made");
        Ok(Some(thread))
    }

    /// The topic's name: the visitor's name when the host site vouched for one, else their id.
    async fn topic_name(&self, conversation: u64) -> Result<String, TelegramError> {
        let summary = self.poster.core.conversation(conversation).await?;
        let name = summary
            .context
            .and_then(|c| c.verified)
            .map(|v| v.name.trim().to_owned())
            .filter(|n| !n.is_empty());
        Ok(topic_name(name.as_deref(), conversation))
    }
}

/// A topic's name: `name` (cut to Telegram's limit), else `id<conversation>`.
fn topic_name(name: Option<&str>, conversation: u64) -> String {
    match name {
        Some(name) => name.chars().take(TOPIC_NAME_CHARS).collect(),
        None => format!("id{conversation}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_parsed() {
        assert_eq!(Command::parse("/resolve"), Some(Command::Resolve));
        assert_eq!(Command::parse("/resolve@acme_bot"), Some(Command::Resolve));
        assert_eq!(Command::parse("/assign"), Some(Command::Assign(None)));
        assert_eq!(
            Command::parse("/assign  bob "),
            Some(Command::Assign(Some("bob")))
        );
        assert_eq!(
            Command::parse("/note call back\ntomorrow"),
            Some(Command::Note("call back\ntomorrow"))
        );
        assert_eq!(Command::parse("/note"), Some(Command::Note("")));
        assert_eq!(Command::parse("/etc/hosts is broken"), None);
        assert_eq!(Command::parse("resolve"), None);
    }

    #[test]
    fn topics_are_named_after_the_visitor() {
        assert_eq!(topic_name(Some("Ann Lee"), 123), "Ann Lee");
        assert_eq!(topic_name(None, 123), "id123");
        assert_eq!(topic_name(Some(&"é".repeat(200)), 1).chars().count(), 128);
    }
}
