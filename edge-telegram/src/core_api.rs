//! The core as the Telegram edge sees it: typed calls over the gRPC contract
//! ([`CoreClient`]), never the core's crate itself, even when both run in one process. Links,
//! modes, the active flag, credentials, the delivery cursor and the delivery lease all live in
//! the core. Calls go to the core of the list the edge uses now; one that finds it unavailable
//! moves the edge on to the next (core replicas share the database, so any will do), and the
//! caller's retry goes there.

use std::{fmt::Display, time::Duration};

use bytes::Bytes;
use futures::{Stream, StreamExt as _};
use socketgram_proto::{
    client::{CoreClient, Cores},
    v1::{self as pb, subscribe_request::Scope, upload_attachment_request::Part},
};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Streaming};

use crate::error::TelegramError;

/// What the edge needs to know about the core.
#[derive(Clone, Debug)]
pub struct CoreInfo {
    pub company: String,
    pub max_message_chars: usize,
    /// The largest file the core takes (`[core.attachments] max_bytes`); 0 from a core that
    /// does not say.
    pub max_attachment_bytes: u64,
}

/// The bytes of one upload message: well under the gRPC message limit.
const UPLOAD_CHUNK: usize = 64 * 1024;

/// A Telegram chat linked to a visitor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Link {
    pub chat_id: i64,
    pub conversation_id: u64,
    /// "Writing to support" mode (legacy status 1): texts go to support.
    pub writing: bool,
    /// False once Telegram refused delivery for good (the user blocked the bot).
    pub active: bool,
}

impl Link {
    fn from_pb(link: &pb::TelegramLink) -> Self {
        Self {
            chat_id: link.chat_id,
            conversation_id: link.conversation_id,
            writing: link.mode == pb::TelegramMode::Writing as i32,
            active: link.active,
        }
    }
}

/// The outcome of a credentials check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Accepted(u64),
    MalformedLogin,
    UnknownLogin,
    WrongPassword,
    /// Login or password wrong (an external credentials query cannot tell which).
    WrongCredentials,
}

/// A lease as the core answered an acquire or renewal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseAnswer {
    /// Whether the asking holder holds it now.
    pub granted: bool,
    /// Who holds it; empty when nobody does.
    pub holder: String,
    /// How long it still ran when the core read it, by the database's clock.
    pub remaining: Duration,
}

/// Typed calls to the core. Cheap to clone: the channel is shared.
#[derive(Clone, Debug)]
pub struct CoreApi {
    cores: Cores,
}

type Result<T> = std::result::Result<T, TelegramError>;

impl CoreApi {
    pub fn new(cores: Cores) -> Self {
        Self { cores }
    }

    /// The client of the core used now.
    fn client(&self) -> CoreClient {
        self.cores.current().1
    }

    /// Wraps a failed call, naming it; a core that is not there is left for the next one.
    fn failed(&self, call: &'static str) -> impl FnOnce(tonic::Status) -> TelegramError + '_ {
        move |status| {
            if matches!(
                status.code(),
                Code::Unavailable | Code::Unknown | Code::Cancelled
            ) {
                let (at, _) = self.cores.current();
                let next = self.cores.failed(at);
                tracing::warn!(error = %status, core = self.cores.url(at), next = self.cores.url(next), "core unavailable; moving to the next");
            }
            TelegramError::core(call)(status)
        }
    }

    pub async fn info(&self) -> Result<CoreInfo> {
        let info = self
            .client()
            .chat
            .clone()
            .get_info(pb::GetInfoRequest {})
            .await
            .map_err(self.failed("GetInfo"))?
            .into_inner();
        Ok(CoreInfo {
            company: info.company,
            max_message_chars: info.max_message_chars as usize,
            max_attachment_bytes: info.max_attachment_bytes,
        })
    }

    /// The chat's link; `None` when it is not linked.
    pub async fn link(&self, chat_id: i64) -> Result<Option<Link>> {
        match self
            .client()
            .telegram
            .clone()
            .get_link(pb::GetTelegramLinkRequest { chat_id })
            .await
        {
            Ok(link) => Ok(Some(Link::from_pb(link.get_ref()))),
            Err(status) if status.code() == Code::NotFound => Ok(None),
            Err(status) => Err(self.failed("GetLink")(status)),
        }
    }

    /// Links the chat to a visitor (the core moves any older link of either).
    pub async fn link_chat(&self, chat_id: i64, conversation_id: u64) -> Result<Link> {
        let link = self
            .client()
            .telegram
            .clone()
            .link(pb::LinkTelegramRequest {
                chat_id,
                conversation_id,
            })
            .await
            .map_err(self.failed("Link"))?;
        Ok(Link::from_pb(link.get_ref()))
    }

    /// Redeems a "Continue in Telegram" token (`/start <token>`): links the chat to the
    /// token's visitor. `None` when the token is unknown, used or expired, or is no token of
    /// ours at all (another deep link's parameter): nothing was linked.
    pub async fn redeem_link_token(&self, chat_id: i64, token: &str) -> Result<Option<Link>> {
        match self
            .client()
            .telegram
            .clone()
            .redeem_link_token(pb::RedeemLinkTokenRequest {
                token: token.to_owned(),
                chat_id,
            })
            .await
        {
            Ok(link) => Ok(Some(Link::from_pb(link.get_ref()))),
            Err(status) if matches!(status.code(), Code::NotFound | Code::InvalidArgument) => {
                Ok(None)
            }
            Err(status) => Err(self.failed("RedeemLinkToken")(status)),
        }
    }

    /// Sets the mode and/or the active flag; `None` when the chat is not linked (any more).
    pub async fn set_state(
        &self,
        chat_id: i64,
        writing: Option<bool>,
        active: Option<bool>,
    ) -> Result<Option<Link>> {
        let mode = match writing {
            None => pb::TelegramMode::Unspecified,
            Some(true) => pb::TelegramMode::Writing,
            Some(false) => pb::TelegramMode::Menu,
        };
        match self
            .client()
            .telegram
            .clone()
            .set_state(pb::SetTelegramStateRequest {
                chat_id,
                mode: mode as i32,
                active,
            })
            .await
        {
            Ok(link) => Ok(Some(Link::from_pb(link.get_ref()))),
            Err(status) if status.code() == Code::NotFound => Ok(None),
            Err(status) => Err(self.failed("SetState")(status)),
        }
    }

    /// The links of one visitor.
    pub async fn links_of(&self, conversation_id: u64) -> Result<Vec<Link>> {
        let links = self
            .client()
            .telegram
            .clone()
            .list_links(pb::ListTelegramLinksRequest { conversation_id })
            .await
            .map_err(self.failed("ListLinks"))?;
        Ok(links.get_ref().links.iter().map(Link::from_pb).collect())
    }

    /// Puts every link in menu mode; returns them all.
    pub async fn reset_modes(&self) -> Result<Vec<Link>> {
        let links = self
            .client()
            .telegram
            .clone()
            .reset_modes(pb::ResetTelegramModesRequest {})
            .await
            .map_err(self.failed("ResetModes"))?;
        Ok(links.get_ref().links.iter().map(Link::from_pb).collect())
    }

    pub async fn check_credentials(&self, login: &str, password: &str) -> Result<Verdict> {
        let r = self
            .client()
            .telegram
            .clone()
            .check_credentials(pb::CheckCredentialsRequest {
                login: login.to_owned(),
                password: password.to_owned(),
            })
            .await
            .map_err(self.failed("CheckCredentials"))?
            .into_inner();
        Ok(match pb::CredentialsRefusal::try_from(r.refusal) {
            Ok(pb::CredentialsRefusal::Unspecified) if r.conversation_id != 0 => {
                Verdict::Accepted(r.conversation_id)
            }
            Ok(pb::CredentialsRefusal::MalformedLogin) => Verdict::MalformedLogin,
            Ok(pb::CredentialsRefusal::UnknownLogin) => Verdict::UnknownLogin,
            Ok(pb::CredentialsRefusal::WrongPassword) => Verdict::WrongPassword,
            _ => Verdict::WrongCredentials,
        })
    }

    /// Stores a message the visitor wrote from Telegram: a text, or files uploaded for it
    /// ([`Self::upload`]) with a caption, possibly empty. `client_msg_id` makes a redelivered
    /// update (webhook retry, polling after a crash) store once.
    pub async fn send_visitor_message(
        &self,
        conversation_id: u64,
        text: &str,
        client_msg_id: String,
        attachment_ids: Vec<u64>,
    ) -> Result<u64> {
        self.send_message(
            conversation_id,
            telegram_visitor(),
            text,
            client_msg_id,
            attachment_ids,
        )
        .await
    }

    /// Stores a message of `author`; its id. Idempotent on `client_msg_id`.
    pub async fn send_message(
        &self,
        conversation_id: u64,
        author: pb::Author,
        text: &str,
        client_msg_id: String,
        attachment_ids: Vec<u64>,
    ) -> Result<u64> {
        let r = self
            .client()
            .chat
            .clone()
            .send_message(pb::SendMessageRequest {
                attachment_ids,
                conversation_id,
                author: Some(author),
                text: text.to_owned(),
                client_msg_id,
            })
            .await
            .map_err(self.failed("SendMessage"))?
            .into_inner();
        Ok(r.message.map_or(0, |m| m.id))
    }

    /// A conversation's summary (its visitor's context among it).
    pub async fn conversation(&self, conversation_id: u64) -> Result<pb::Conversation> {
        Ok(self
            .client()
            .chat
            .clone()
            .open_conversation(pb::OpenConversationRequest { conversation_id })
            .await
            .map_err(self.failed("OpenConversation"))?
            .into_inner())
    }

    /// Sets a conversation's status as the admin `by` asks (not a snooze).
    pub async fn set_status(
        &self,
        conversation_id: u64,
        status: pb::ConversationStatus,
        by: &str,
    ) -> Result<pb::Conversation> {
        Ok(self
            .client()
            .chat
            .clone()
            .set_conversation_status(pb::SetConversationStatusRequest {
                conversation_id,
                status: status as i32,
                snoozed_until_ms: 0,
                by: by.to_owned(),
            })
            .await
            .map_err(self.failed("SetConversationStatus"))?
            .into_inner())
    }

    /// Gives a conversation to `assignee` as the admin `by` asks.
    pub async fn assign(
        &self,
        conversation_id: u64,
        assignee: &str,
        by: &str,
    ) -> Result<pb::Conversation> {
        Ok(self
            .client()
            .chat
            .clone()
            .assign_conversation(pb::AssignConversationRequest {
                conversation_id,
                assignee: assignee.to_owned(),
                by: by.to_owned(),
                take: false,
            })
            .await
            .map_err(self.failed("AssignConversation"))?
            .into_inner())
    }

    /// Adds the admin's private note to a conversation.
    pub async fn add_note(&self, conversation_id: u64, admin_id: &str, text: &str) -> Result<()> {
        self.client()
            .chat
            .clone()
            .add_note(pb::AddNoteRequest {
                conversation_id,
                admin_id: admin_id.to_owned(),
                text: text.to_owned(),
            })
            .await
            .map_err(self.failed("AddNote"))?;
        Ok(())
    }

    /// The admin a Telegram user of the staff group is; `None` when paired with nobody.
    pub async fn staff_member(&self, telegram_user_id: i64) -> Result<Option<pb::Admin>> {
        match self
            .client()
            .telegram
            .clone()
            .get_staff_member(pb::GetStaffMemberRequest { telegram_user_id })
            .await
        {
            Ok(admin) => Ok(Some(admin.into_inner())),
            Err(status) if status.code() == Code::NotFound => Ok(None),
            Err(status) => Err(self.failed("GetStaffMember")(status)),
        }
    }

    /// The forum topic (`message_thread_id`) of a conversation in the staff chat, if any.
    pub async fn staff_topic(&self, chat_id: i64, conversation_id: u64) -> Result<Option<i64>> {
        let by = pb::get_staff_topic_request::By::ConversationId(conversation_id);
        Ok(self
            .get_staff_topic(chat_id, by)
            .await?
            .map(|t| t.thread_id))
    }

    /// The conversation of a forum topic of the staff chat, if any.
    pub async fn staff_topic_conversation(
        &self,
        chat_id: i64,
        thread_id: i64,
    ) -> Result<Option<u64>> {
        let by = pb::get_staff_topic_request::By::ThreadId(thread_id);
        Ok(self
            .get_staff_topic(chat_id, by)
            .await?
            .map(|t| t.conversation_id))
    }

    async fn get_staff_topic(
        &self,
        chat_id: i64,
        by: pb::get_staff_topic_request::By,
    ) -> Result<Option<pb::StaffTopic>> {
        match self
            .client()
            .telegram
            .clone()
            .get_staff_topic(pb::GetStaffTopicRequest {
                chat_id,
                by: Some(by),
            })
            .await
        {
            Ok(topic) => Ok(Some(topic.into_inner())),
            Err(status) if status.code() == Code::NotFound => Ok(None),
            Err(status) => Err(self.failed("GetStaffTopic")(status)),
        }
    }

    /// Keeps a conversation's forum topic in the staff chat (replacing an older one).
    pub async fn put_staff_topic(
        &self,
        chat_id: i64,
        conversation_id: u64,
        thread_id: i64,
    ) -> Result<()> {
        self.client()
            .telegram
            .clone()
            .put_staff_topic(pb::StaffTopic {
                chat_id,
                conversation_id,
                thread_id,
            })
            .await
            .map_err(self.failed("PutStaffTopic"))?;
        Ok(())
    }

    /// Stores a file for a conversation uploaded by `author` (the visitor from Telegram, or a
    /// staff member), its bytes passed on as they come from `bytes`; `size` is what Telegram
    /// announced (0 = not known), so that the core can tell a cut-off download. A download
    /// that fails cancels the call instead of ending it, and the core keeps nothing
    /// (`TelegramError::Download`).
    pub async fn upload<S, E>(
        &self,
        conversation_id: u64,
        author: pb::Author,
        name: &str,
        size: u64,
        bytes: S,
    ) -> Result<pb::Attachment>
    where
        S: Stream<Item = std::result::Result<Bytes, E>> + Send,
        E: Display,
    {
        let start = pb::UploadAttachmentRequest {
            part: Some(Part::Start(pb::UploadStart {
                conversation_id,
                name: name.to_owned(),
                size,
                author: Some(author),
            })),
        };
        let (parts, rx) = tokio::sync::mpsc::channel(4);
        let _ = parts.send(start.clone()).await;
        let mut client = self.client().chat.clone();
        let call = client.upload_attachment(ReceiverStream::new(rx));
        let pump = async move {
            let chunk = |data: Vec<u8>| pb::UploadAttachmentRequest {
                part: Some(Part::Chunk(data)),
            };
            let mut bytes = std::pin::pin!(bytes);
            let mut pending = Vec::with_capacity(UPLOAD_CHUNK);
            while let Some(piece) = bytes.next().await {
                let piece = match piece {
                    Ok(piece) => piece,
                    Err(e) => {
                        // The stream's end must not pass for the file's (the size may be
                        // unknown): a second start is what the core refuses outright. The
                        // call is also dropped, which cancels it.
                        let _ = parts.send(start).await;
                        return Err(e.to_string());
                    }
                };
                pending.extend_from_slice(&piece);
                while pending.len() >= UPLOAD_CHUNK {
                    let rest = pending.split_off(UPLOAD_CHUNK);
                    let full = std::mem::replace(&mut pending, rest);
                    if parts.send(chunk(full)).await.is_err() {
                        // The core answered already (a refusal): its answer says why.
                        return Ok(());
                    }
                }
            }
            if !pending.is_empty() {
                let _ = parts.send(chunk(pending)).await;
            }
            // `parts` is dropped here: the stream ends, the upload is complete.
            Ok::<(), String>(())
        };
        let mut call = std::pin::pin!(call);
        let answer = tokio::select! {
            answered = &mut call => answered,
            pumped = pump => match pumped {
                Ok(()) => call.await,
                // Returning drops the call, which cancels it.
                Err(e) => return Err(TelegramError::Download(e)),
            },
        };
        Ok(answer
            .map_err(self.failed("UploadAttachment"))?
            .into_inner())
    }

    /// A file attached to a message of `conversation_id`, whole: its description and bytes.
    pub async fn attachment(
        &self,
        id: u64,
        conversation_id: u64,
    ) -> Result<(pb::Attachment, Bytes)> {
        let mut chunks = self
            .client()
            .chat
            .clone()
            .get_attachment(pb::GetAttachmentRequest {
                id,
                conversation_id,
                thumbnail: false,
            })
            .await
            .map_err(self.failed("GetAttachment"))?
            .into_inner();
        let mut description = None;
        let mut bytes = Vec::new();
        while let Some(chunk) = chunks
            .message()
            .await
            .map_err(self.failed("GetAttachment"))?
        {
            if description.is_none() {
                description = chunk.attachment;
                if let Some(d) = &description {
                    bytes.reserve(usize::try_from(d.size).unwrap_or_default());
                }
            }
            bytes.extend_from_slice(&chunk.data);
        }
        let description = description.ok_or_else(|| {
            TelegramError::core("GetAttachment")(tonic::Status::internal(
                "the file came without its description",
            ))
        })?;
        Ok((description, Bytes::from(bytes)))
    }

    /// The consumer's delivery cursor (created at the newest message when new).
    pub async fn cursor(&self, consumer: &str) -> Result<u64> {
        Ok(self
            .client()
            .chat
            .clone()
            .get_delivery_cursor(pb::GetDeliveryCursorRequest {
                consumer: consumer.to_owned(),
            })
            .await
            .map_err(self.failed("GetDeliveryCursor"))?
            .into_inner()
            .message_id)
    }

    /// Moves the consumer's delivery cursor forward.
    pub async fn advance(&self, consumer: &str, message_id: u64) -> Result<u64> {
        Ok(self
            .client()
            .chat
            .clone()
            .advance_delivery_cursor(pb::AdvanceDeliveryCursorRequest {
                consumer: consumer.to_owned(),
                message_id,
            })
            .await
            .map_err(self.failed("AdvanceDeliveryCursor"))?
            .into_inner()
            .message_id)
    }

    /// Acquires or renews the lease `name` for `holder` for `ttl`.
    pub async fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<LeaseAnswer> {
        let lease = self
            .client()
            .telegram
            .clone()
            .acquire_lease(pb::AcquireLeaseRequest {
                name: name.to_owned(),
                holder: holder.to_owned(),
                ttl_ms: u32::try_from(ttl.as_millis()).unwrap_or(u32::MAX),
            })
            .await
            .map_err(self.failed("AcquireLease"))?
            .into_inner();
        Ok(LeaseAnswer {
            granted: lease.granted,
            holder: lease.holder,
            remaining: Duration::from_millis(lease.remaining_ms),
        })
    }

    /// Frees the lease `name` if `holder` holds it; whether it did.
    pub async fn release_lease(&self, name: &str, holder: &str) -> Result<bool> {
        Ok(self
            .client()
            .telegram
            .clone()
            .release_lease(pb::ReleaseLeaseRequest {
                name: name.to_owned(),
                holder: holder.to_owned(),
            })
            .await
            .map_err(self.failed("ReleaseLease"))?
            .into_inner()
            .released)
    }

    /// Every conversation's events, replaying what came after `since` first.
    pub async fn subscribe_all(&self, since: u64) -> Result<Streaming<pb::Event>> {
        Ok(self
            .client()
            .chat
            .clone()
            .subscribe(pb::SubscribeRequest {
                scope: Some(Scope::AllConversations(true)),
                since_message_id: Some(since),
                as_admin: String::new(),
            })
            .await
            .map_err(self.failed("Subscribe"))?
            .into_inner())
    }
}

/// The visitor, writing from Telegram.
pub fn telegram_visitor() -> pb::Author {
    pb::Author {
        kind: pb::AuthorKind::Telegram as i32,
        admin_id: String::new(),
    }
}

/// A support admin (`adm_account.aid`), e.g. a staff member writing in the staff group.
pub fn admin(admin_id: &str) -> pb::Author {
    pb::Author {
        kind: pb::AuthorKind::Admin as i32,
        admin_id: admin_id.to_owned(),
    }
}
