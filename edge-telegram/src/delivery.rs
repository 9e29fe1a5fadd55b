//! Support replies out to Telegram, durably (LEGACY.md §7; the legacy server lost them on
//! any error, §9.11), by one edge at a time.
//!
//! The edge subscribes to every conversation from its delivery cursor, a message id the core
//! stores per consumer (`Chat.GetDeliveryCursor` / `AdvanceDeliveryCursor`). Each support reply
//! (direction to the visitor, whatever its origin) to a conversation with an active linked chat
//! is sent as HTML: a bold "answer from <admin>:" header, then the escaped text. Its files
//! follow, fetched from the core one at a time: images as photos, the rest (GIFs too) as
//! documents, under their names; the header and text are the first file's caption when they
//! fit in one, else a message before the files. The cursor moves past a message only once
//! Telegram accepted all its parts, or refused them for good (a blocked bot marks the link
//! inactive; a bad request is logged; a file Telegram will not take, such as one over its
//! 50 MB upload limit, is replaced by a text naming it). So a reply accepted by the core while
//! the bot was down, or while Telegram was failing, is delivered once the bot is back: the
//! core replays everything after the cursor.
//!
//! The loop is [`Delivery`], generic over a [`Route`]: what it delivers and where. [`Replies`]
//! is the route described here; the staff group's topics (`crate::staff`) are another, with a
//! cursor and a lease of their own. [`Poster`] sends one stored message (text and files) to one
//! chat or forum topic, for both.
//!
//! Only the holder of the delivery lease ([`crate::lease`]) delivers: while it holds it, and
//! not a moment longer. Whenever the lease is taken (again), delivery starts from the cursor
//! stored in the core, since another edge may have moved it meanwhile.
//!
//! Messages are delivered one at a time in id order: the cursor is a single id, so nothing
//! after a message is marked done before it, and after a reply is sent the cursor is stored
//! before anything else is sent. So a crash (kill -9) or a lost lease between Telegram's
//! acceptance and the cursor's advance delivers that one message again (at least once, all its
//! pieces and chats), never more than that one; a graceful shutdown finishes or abandons the
//! message in flight before the cursor is saved.

use std::time::Duration;

use socketgram_proto::v1::{self as pb, event::Kind};
use teloxide::{
    prelude::Requester as _,
    types::{ChatAction, ChatId},
};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::{
    core_api::CoreApi,
    error::TelegramError,
    lease::DeliveryLease,
    sender::{
        Backoff, Dest, FileKind, NamedBytes, Retry, SendError, TgBot, is_thread_gone, send_file,
        send_html,
    },
    texts::Texts,
};

/// Telegram takes at most 4096 characters per message; the rest of a longer reply follows in
/// more messages. Kept under the limit to leave room for the header.
const CHUNK_CHARS: usize = 3500;
/// Skipped messages (visitors', other conversations') move the stored cursor at most this
/// often: replaying a few of them after a restart costs nothing, a write per message would.
const SAVE_EVERY: Duration = Duration::from_secs(5);
/// Telegram takes captions of at most 1024 characters (after entities are parsed). Counted
/// in UTF-16 code units, as Telegram counts entities: never more than its characters.
const CAPTION_CHARS: usize = 1024;
/// The largest file a bot may send (the Bot API's upload limit): a larger one is not fetched.
const BOT_API_UPLOAD_BYTES: u64 = 50 * 1024 * 1024;
/// sendPhoto's own limits: 10 MB, width + height at most 10,000, a ratio of at most 20. An
/// image past them goes as a document.
const PHOTO_BYTES: u64 = 10 * 1024 * 1024;
const PHOTO_SIDES: u64 = 10_000;
const PHOTO_RATIO: u64 = 20;
/// The types Telegram shows as photos. A GIF would lose its animation: it goes as a document.
const PHOTO_TYPES: [&str; 3] = ["image/jpeg", "image/png", "image/webp"];

/// What a delivery loop delivers, and where: support replies to the linked chats
/// ([`Replies`]), or visitor messages to the staff group's topics (`crate::staff`). The loop
/// (lease, cursor, subscription, order) is the same for both.
pub trait Route: Send + Sync {
    /// Whether `m` is this route's to deliver; the others are skipped (their ids passed).
    fn wants(&self, m: &pb::Message) -> bool;
    /// Delivers one message. `Err` only when it must be tried again (the core unreachable,
    /// or shutdown mid-way): the loop then resumes from the cursor, this message first.
    fn deliver(&self, m: &pb::Message) -> impl Future<Output = Result<(), TelegramError>> + Send;
    /// Someone typing in a conversation; nothing by default.
    fn typing(&self, _typing: &pb::Typing) {}
}

/// The delivery loop's state.
pub struct Delivery<R> {
    pub core: CoreApi,
    /// What is delivered where.
    pub route: R,
    /// Whose cursor: `telegram:<bot id>` for the replies, so another bot starts afresh.
    pub consumer: String,
    /// Whether this edge may deliver now (the lease of `consumer`).
    pub lease: DeliveryLease,
    pub shutdown: CancellationToken,
}

/// Where the loop has got to: `done` is finished; `saved` is what the core has stored.
#[derive(Debug, Default)]
struct Cursor {
    done: u64,
    saved: u64,
}

impl<R: Route> Delivery<R> {
    /// Until shutdown: waits for the delivery lease, delivers while it holds it, and when it
    /// loses it, stops at once and waits for it again. At shutdown the cursor is saved and the
    /// lease released.
    pub async fn run(self) {
        while let Some(until) = self.lease.acquire(&self.shutdown).await {
            info!(lease = %self.lease.name, holder = %self.lease.holder,
                "delivery lease taken: this edge delivers");
            // A term's own cursor, read from the core: another edge may have delivered since.
            let mut cursor: Option<Cursor> = None;
            let lost = tokio::select! {
                lost = self.lease.keep(until) => lost,
                () = self.deliver_while_held(&mut cursor) => {
                    // Shutdown: still the holder, so the cursor is ours to save.
                    if let Some(c) = cursor.as_mut() {
                        self.save_or_log(c).await;
                    }
                    self.lease.release().await;
                    break;
                }
            };
            // Dropping the delivery above stopped it wherever it was; a send in flight may
            // have reached Telegram, and the next holder sends that one again.
            warn!(lease = %self.lease.name, reason = %lost,
                "delivery lease lost: delivery stopped; asking for it again");
        }
        info!(consumer = %self.consumer, "delivery stopped");
    }

    /// Delivers until shutdown, subscribing again (from the cursor) whenever the core's stream
    /// breaks.
    async fn deliver_while_held(&self, cursor: &mut Option<Cursor>) {
        let mut backoff = Backoff::default();
        loop {
            match self.pass(cursor, &mut backoff).await {
                Ok(()) | Err(TelegramError::Shutdown) => return,
                Err(e) => {
                    warn!(consumer = %self.consumer, error = %e, "delivery interrupted; resuming")
                }
            }
            if !backoff.wait(&self.shutdown).await {
                return;
            }
        }
    }

    /// One subscription: from the cursor, until the stream breaks or shutdown.
    async fn pass(
        &self,
        cursor: &mut Option<Cursor>,
        backoff: &mut Backoff,
    ) -> Result<(), TelegramError> {
        let c = match cursor {
            Some(c) => {
                // Whatever was finished before the stream broke is stored before anything
                // more is sent.
                self.save(c).await?;
                c
            }
            None => {
                let stored = self.core.cursor(&self.consumer).await?;
                info!(consumer = %self.consumer, cursor = stored, "delivery starts");
                cursor.insert(Cursor {
                    done: stored,
                    saved: stored,
                })
            }
        };
        let mut stream = self.core.subscribe_all(c.done).await?;
        let mut save_tick = tokio::time::interval(SAVE_EVERY);
        loop {
            let event = tokio::select! {
                () = self.shutdown.cancelled() => return Ok(()),
                _ = save_tick.tick() => {
                    self.save_or_log(c).await;
                    continue;
                }
                event = stream.message() => event,
            };
            let event = event
                .map_err(TelegramError::core("Subscribe"))?
                .ok_or(TelegramError::StreamEnded)?;
            backoff.reset();
            match event.kind {
                Some(Kind::Message(m)) if m.id > c.done => {
                    if self.route.wants(&m) {
                        self.route.deliver(&m).await?;
                        c.done = m.id;
                        // Stored before the next send: a crash from here on repeats this
                        // message alone. Failing, the pass ends and the next one stores it
                        // first.
                        self.save(c).await?;
                    } else {
                        c.done = m.id;
                    }
                }
                Some(Kind::CaughtUp(_)) => self.save_or_log(c).await,
                Some(Kind::Typing(t)) => self.route.typing(&t),
                // Delivered already (a replay at or below the cursor).
                Some(Kind::Message(_)) => {}
                // Presence, the admin list, read marks, notes, assignments, statuses are not
                // Telegram's (notes are never the visitor's); an empty event carries nothing
                // (a newer core's kind).
                Some(
                    Kind::Presence(_)
                    | Kind::PresenceSnapshot(_)
                    | Kind::AdminsChanged(_)
                    | Kind::ReadMark(_)
                    | Kind::Note(_)
                    | Kind::Assigned(_)
                    | Kind::StatusChanged(_)
                    | Kind::Erased(_)
                    | Kind::VisitorContext(_),
                )
                | None => {}
            }
        }
    }

    /// Stores the cursor when it moved.
    async fn save(&self, c: &mut Cursor) -> Result<(), TelegramError> {
        if c.done <= c.saved {
            return Ok(());
        }
        c.saved = self.core.advance(&self.consumer, c.done).await?;
        Ok(())
    }

    /// [`Self::save`] where only skipped messages can be unsaved (a delivered message's cursor
    /// is stored before the next send): a failure is logged, the next save carries it.
    async fn save_or_log(&self, c: &mut Cursor) {
        if let Err(e) = self.save(c).await {
            warn!(error = %e, cursor = c.done, "cannot store the delivery cursor");
        }
    }
}

/// Support replies (direction to the visitor, whatever its origin) to every active chat linked
/// to their conversation, under a bold "answer from <admin>:" header.
pub struct Replies {
    pub core: CoreApi,
    pub poster: Poster,
}

impl Route for Replies {
    fn wants(&self, m: &pb::Message) -> bool {
        is_support_reply(m)
    }

    /// Sends one reply to every active chat linked to its conversation.
    async fn deliver(&self, m: &pb::Message) -> Result<(), TelegramError> {
        let links = self.core.links_of(m.conversation_id).await?;
        let header = self.poster.texts.answer_header(signer(m));
        for link in links {
            if !link.active {
                self.poster.count("inactive");
                info!(
                    chat_id = link.chat_id,
                    message = m.id,
                    "link inactive; reply not sent"
                );
                continue;
            }
            match self
                .poster
                .post(link.chat_id.into(), Some(&header), m)
                .await?
            {
                Reached::Delivered => info!(
                    chat_id = link.chat_id,
                    message = m.id,
                    "support reply delivered to Telegram"
                ),
                // A private chat has no topics; what was refused was skipped.
                Reached::ThreadGone(e) => warn!(chat_id = link.chat_id, error = %e,
                    "Telegram refused a support reply"),
                Reached::ChatGone(e) => {
                    warn!(chat_id = link.chat_id, error = %e,
                        "chat refuses messages; marking its link inactive");
                    self.core.set_state(link.chat_id, None, Some(false)).await?;
                }
            }
        }
        Ok(())
    }

    /// Support types to a conversation: its linked chats show "typing" (Telegram shows it
    /// for five seconds or until the reply). Best effort, on the side: a typing hint must
    /// never hold up a reply, and one that fails is only logged. Sent past the throttle, which
    /// paces messages: the hint does not count against a chat's message rate.
    fn typing(&self, t: &pb::Typing) {
        if t.admin_id.is_empty() || !t.active {
            // The visitor's own typing is support's business, not the visitor's chat's.
            return;
        }
        let conversation = t.conversation_id;
        let (core, bot) = (self.core.clone(), self.poster.bot.inner().clone());
        tokio::spawn(async move {
            let links = match core.links_of(conversation).await {
                Ok(links) => links,
                Err(e) => {
                    debug!(conversation, error = %e, "cannot read the links to show typing");
                    return;
                }
            };
            for link in links.into_iter().filter(|l| l.active) {
                let action = bot.send_chat_action(ChatId(link.chat_id), ChatAction::Typing);
                if let Err(e) = action.await {
                    debug!(chat_id = link.chat_id, error = %e, "typing not shown");
                }
            }
        });
    }
}

/// Sends one stored message (its text and its files, fetched from the core) to one
/// destination, as Telegram will take it; shared by the replies and the staff group.
pub struct Poster {
    pub core: CoreApi,
    pub bot: TgBot,
    pub texts: Texts,
    pub shutdown: CancellationToken,
    /// The counter of pieces sent by outcome (`socketgram_telegram_deliveries_total` for the
    /// replies).
    pub metric: &'static str,
}

impl Poster {
    /// Sends one message to `to`: its text (a caption of the first file when it fits) under
    /// `header` (plain text, shown bold) when given, then its files in order. `Err` only when
    /// it must be tried again.
    pub async fn post(
        &self,
        to: Dest,
        header: Option<&str>,
        m: &pb::Message,
    ) -> Result<Reached, TelegramError> {
        let chat_id = to.chat_id;
        let mut caption = (!m.attachments.is_empty() && fits_caption(header, &m.text))
            .then(|| self.texts.headed(header, &m.text))
            .filter(|c| !c.is_empty());
        if caption.is_none() {
            for html in self.text_pieces(header, &m.text) {
                match self.send_text(to, &html).await? {
                    Piece::Sent => {}
                    Piece::Gone(e) => return Ok(Reached::ChatGone(e)),
                    Piece::ThreadGone(e) => return Ok(Reached::ThreadGone(e)),
                    Piece::Refused(e) => {
                        error!(chat_id, message = m.id, error = %e,
                            "Telegram refused a message; skipping its text");
                        break;
                    }
                }
            }
        }
        for file in &m.attachments {
            let caption_html = caption.take();
            let piece = match self
                .send_attachment(to, m, file, caption_html.as_deref())
                .await?
            {
                Piece::Refused(why) => {
                    warn!(chat_id, message = m.id, file = file.id, name = %file.name, reason = %why,
                        "a file cannot go to Telegram; sending its name");
                    // The caption it would have carried goes with the notice.
                    let notice = self.texts.file_not_delivered(&file.name, file.size);
                    let html = match caption_html {
                        Some(caption) => format!("{caption}\n{notice}"),
                        None => notice,
                    };
                    self.send_text(to, &html).await?
                }
                piece => piece,
            };
            match piece {
                Piece::Sent => {}
                Piece::Gone(e) => return Ok(Reached::ChatGone(e)),
                Piece::ThreadGone(e) => return Ok(Reached::ThreadGone(e)),
                Piece::Refused(e) => {
                    error!(chat_id, message = m.id, error = %e,
                        "Telegram refused the notice of a file; skipping it");
                }
            }
        }
        Ok(Reached::Delivered)
    }

    /// A message's text as HTML messages: the header on the first; the header alone when
    /// there is no text; nothing without either.
    fn text_pieces(&self, header: Option<&str>, text: &str) -> Vec<String> {
        if text.is_empty() {
            return header
                .map(|_| self.texts.headed(header, ""))
                .into_iter()
                .collect();
        }
        chunks(text, CHUNK_CHARS)
            .enumerate()
            .map(|(i, chunk)| {
                if i == 0 {
                    self.texts.headed(header, chunk)
                } else {
                    crate::texts::escape(chunk)
                }
            })
            .collect()
    }

    /// Sends one HTML message, until it is sent or refused.
    async fn send_text(&self, to: Dest, html: &str) -> Result<Piece, TelegramError> {
        let retry = Retry::UntilDone(self.shutdown.clone());
        self.piece(send_html(&self.bot, to, html, None, &retry).await)
    }

    /// Fetches one file from the core and sends it, until it is sent or refused (`Refused`
    /// also for a file the core no longer has, or one too large for Telegram).
    async fn send_attachment(
        &self,
        to: Dest,
        m: &pb::Message,
        file: &pb::Attachment,
        caption_html: Option<&str>,
    ) -> Result<Piece, TelegramError> {
        if file.size > BOT_API_UPLOAD_BYTES {
            self.count("rejected");
            return Ok(Piece::Refused(format!(
                "{} bytes, over the Bot API's upload limit",
                file.size
            )));
        }
        let bytes = match self.fetch(file.id, m.conversation_id).await? {
            Ok(bytes) => bytes,
            Err(e) => {
                self.count("rejected");
                return Ok(Piece::Refused(e.to_string()));
            }
        };
        let named = NamedBytes {
            name: file.name.clone(),
            bytes,
        };
        let retry = Retry::UntilDone(self.shutdown.clone());
        let mut kind = file_kind(file);
        loop {
            let sent = send_file(&self.bot, to, kind, &named, caption_html, &retry).await;
            match (kind, sent) {
                // What Telegram will not show as a photo it may still take as a file.
                (FileKind::Photo, Err(SendError::Rejected(e))) if !is_thread_gone(&e) => {
                    info!(chat_id = to.chat_id, file = file.id, error = %e,
                        "photo refused; sending it as a file");
                    kind = FileKind::Document;
                }
                (_, sent) => return self.piece(sent),
            }
        }
    }

    /// A file's bytes from the core, fetched again while the core (or its storage) is away;
    /// the inner `Err` when the core will not give it (erased meanwhile, say).
    async fn fetch(
        &self,
        id: u64,
        conversation: u64,
    ) -> Result<Result<bytes::Bytes, TelegramError>, TelegramError> {
        let mut backoff = Backoff::default();
        loop {
            let fetched = tokio::select! {
                () = self.shutdown.cancelled() => return Err(TelegramError::Shutdown),
                fetched = self.core.attachment(id, conversation) => fetched,
            };
            match fetched {
                Ok((_, bytes)) => return Ok(Ok(bytes)),
                // In place rather than from the cursor: what this message sent already is not
                // sent again.
                Err(e) if e.is_transient_core() => {
                    warn!(file = id, error = %e, "cannot fetch a file yet; trying again");
                    if !backoff.wait(&self.shutdown).await {
                        return Err(TelegramError::Shutdown);
                    }
                }
                Err(e) => return Ok(Err(e)),
            }
        }
    }

    /// A send's outcome as a [`Piece`], counted; `Err` when the message is to be tried again.
    fn piece(&self, sent: Result<(), SendError>) -> Result<Piece, TelegramError> {
        match sent {
            Ok(()) => {
                self.count("sent");
                Ok(Piece::Sent)
            }
            Err(SendError::ChatGone(e)) => {
                self.count("chat_gone");
                Ok(Piece::Gone(e))
            }
            // Not counted: the message is sent again, to a new topic.
            Err(SendError::Rejected(e)) if is_thread_gone(&e) => Ok(Piece::ThreadGone(e)),
            Err(SendError::Rejected(e)) => {
                self.count("rejected");
                Ok(Piece::Refused(e.to_string()))
            }
            Err(SendError::Shutdown) => Err(TelegramError::Shutdown),
            Err(SendError::GaveUp(e)) => Err(TelegramError::Telegram(e)),
        }
    }

    /// Counts one piece (a text or a file) for one destination by how it ended: `sent`,
    /// `chat_gone` (the link is made inactive), `rejected` (skipped; a file's notice is
    /// counted apart), `inactive` (not tried). Pieces that will be tried again (shutdown, the
    /// core unreachable, a topic made anew) are not counted yet.
    pub fn count(&self, outcome: &'static str) {
        metrics::counter!(self.metric, "outcome" => outcome).increment(1);
    }
}

/// How a message went for one destination.
pub enum Reached {
    /// Every part sent, or refused for good.
    Delivered,
    /// The chat will never take a message: its link is to be made inactive.
    ChatGone(teloxide::RequestError),
    /// The forum topic it went to is gone (deleted): to be made anew, and the message sent
    /// there whole.
    ThreadGone(teloxide::RequestError),
}

/// How one part of a message went.
enum Piece {
    Sent,
    Gone(teloxide::RequestError),
    ThreadGone(teloxide::RequestError),
    /// Refused for good (why): skipped.
    Refused(String),
}

/// Whether a message's header and text fit in one caption.
fn fits_caption(header: Option<&str>, text: &str) -> bool {
    let header = header.map_or(0, |h| {
        h.encode_utf16().count() + usize::from(!text.is_empty())
    });
    header + text.encode_utf16().count() <= CAPTION_CHARS
}

/// How a file is shown: a photo when Telegram would show it as one, else a file.
fn file_kind(file: &pb::Attachment) -> FileKind {
    let (w, h) = (u64::from(file.width), u64::from(file.height));
    let photo = PHOTO_TYPES.contains(&file.content_type.as_str())
        && file.size <= PHOTO_BYTES
        && w > 0
        && h > 0
        && w + h <= PHOTO_SIDES
        && w.max(h) <= PHOTO_RATIO * w.min(h);
    if photo {
        FileKind::Photo
    } else {
        FileKind::Document
    }
}

/// Who signs a support reply: the admin's display name, else their login.
pub(crate) fn signer(m: &pb::Message) -> &str {
    if m.admin_display_name.is_empty() {
        &m.admin_id
    } else {
        &m.admin_display_name
    }
}

/// A support reply: to the visitor, from anyone but the visitor's own Telegram chat.
pub(crate) fn is_support_reply(m: &pb::Message) -> bool {
    m.direction == pb::Direction::ToVisitor as i32 && m.origin != pb::AuthorKind::Telegram as i32
}

/// `text` in pieces of at most `max` characters, cut at a line break when one is near.
fn chunks(text: &str, max: usize) -> impl Iterator<Item = &str> {
    let mut rest = text;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let end = match rest.char_indices().nth(max) {
            None => rest.len(),
            Some((hard, _)) => match rest[..hard].rfind('\n') {
                Some(nl) if nl > hard / 2 => nl + 1,
                _ => hard,
            },
        };
        let (piece, tail) = rest.split_at(end);
        rest = tail;
        Some(piece)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_replies_are_cut_into_pieces() {
        assert_eq!(chunks("hello", 10).collect::<Vec<_>>(), ["hello"]);
        assert_eq!(chunks("ééééé", 2).collect::<Vec<_>>(), ["éé", "éé", "é"]);
        assert_eq!(
            chunks("line one\nline two", 12).collect::<Vec<_>>(),
            ["line one\n", "line two"]
        );
        let long = "x".repeat(10_000);
        assert!(chunks(&long, CHUNK_CHARS).all(|c| c.chars().count() <= CHUNK_CHARS));
        assert_eq!(
            chunks(&long, CHUNK_CHARS).map(str::len).sum::<usize>(),
            10_000
        );
    }

    #[test]
    fn captions_are_measured_as_telegram_does() {
        let header = Some("answer from Bob:");
        assert!(fits_caption(header, ""));
        let text = "x".repeat(CAPTION_CHARS - "answer from Bob:".len() - 1);
        assert!(fits_caption(header, &text));
        assert!(!fits_caption(header, &format!("{text}x")));
        // An emoji is two UTF-16 units.
        let emoji = "😀".repeat(CAPTION_CHARS / 2);
        assert!(!fits_caption(Some("h"), &emoji));
        assert!(fits_caption(None, &emoji));
    }

    #[test]
    fn images_go_as_photos_within_telegram_limits() {
        let file = |content_type: &str, size: u64, width: u32, height: u32| pb::Attachment {
            content_type: content_type.into(),
            size,
            width,
            height,
            ..Default::default()
        };
        assert_eq!(file_kind(&file("image/png", 1000, 64, 48)), FileKind::Photo);
        assert_eq!(
            file_kind(&file("image/webp", 1000, 64, 48)),
            FileKind::Photo
        );
        assert_eq!(
            file_kind(&file("image/gif", 1000, 64, 48)),
            FileKind::Document
        );
        assert_eq!(
            file_kind(&file("application/pdf", 1000, 0, 0)),
            FileKind::Document
        );
        assert_eq!(
            file_kind(&file("image/jpeg", PHOTO_BYTES + 1, 64, 48)),
            FileKind::Document
        );
        assert_eq!(
            file_kind(&file("image/png", 1000, 8000, 3000)),
            FileKind::Document
        );
        assert_eq!(
            file_kind(&file("image/png", 1000, 2100, 100)),
            FileKind::Document
        );
    }

    #[test]
    fn only_support_replies_go_out() {
        let mut m = pb::Message {
            direction: pb::Direction::ToVisitor as i32,
            origin: pb::AuthorKind::Admin as i32,
            ..Default::default()
        };
        assert!(is_support_reply(&m));
        m.origin = pb::AuthorKind::Backend as i32;
        assert!(is_support_reply(&m));
        m.direction = pb::Direction::ToSupport as i32;
        m.origin = pb::AuthorKind::Telegram as i32;
        assert!(!is_support_reply(&m));
        m.origin = pb::AuthorKind::Visitor as i32;
        assert!(!is_support_reply(&m));
    }
}
