//! The `Chat` service.

use std::{pin::Pin, sync::Arc};

use futures::{Stream, StreamExt};
use socketgram_proto::v1::{self as pb, chat_server::Chat};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::{convert, edge, status};
use crate::{
    Core, CoreError,
    chat::Cursor,
    domain::{AssigneeFilter, ConversationFilter},
};

/// Longest search text of `ListConversations`, in characters.
const MAX_SEARCH_CHARS: usize = 200;

/// `ListConversationsRequest.search`: none when blank.
fn search(text: String) -> Result<Option<String>, Status> {
    if text.chars().count() > MAX_SEARCH_CHARS {
        return Err(status(CoreError::InvalidArgument(format!(
            "search is longer than {MAX_SEARCH_CHARS} characters"
        ))));
    }
    Ok((!text.trim().is_empty()).then_some(text))
}

type EventStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// `socketgram.v1.Chat` over a [`Core`].
#[derive(Clone)]
pub struct ChatApi {
    core: Arc<Core>,
}

impl ChatApi {
    pub fn new(core: Arc<Core>) -> Self {
        Self { core }
    }
}

#[tonic::async_trait]
impl Chat for ChatApi {
    #[tracing::instrument(
        skip_all,
        name = "Chat.SendMessage",
        fields(conversation = request.get_ref().conversation_id, message = tracing::field::Empty)
    )]
    async fn send_message(
        &self,
        request: Request<pb::SendMessageRequest>,
    ) -> Result<Response<pb::SendMessageResponse>, Status> {
        let send = convert::send(request.into_inner()).map_err(status)?;
        let appended = self.core.send(send).await.map_err(status)?;
        tracing::Span::current().record("message", appended.message.id);
        Ok(Response::new(convert::sent(&self.core, &appended)))
    }

    #[tracing::instrument(skip_all, name = "Chat.History", fields(conversation = request.get_ref().conversation_id))]
    async fn history(
        &self,
        request: Request<pb::HistoryRequest>,
    ) -> Result<Response<pb::HistoryResponse>, Status> {
        let r = request.into_inner();
        let cursor = match (r.before_id, r.after_id) {
            (before, 0) => Cursor::Before(convert::cursor(before)),
            (0, after) => Cursor::After(after),
            _ => {
                return Err(status(CoreError::InvalidArgument(
                    "give before_id or after_id, not both".into(),
                )));
            }
        };
        let (messages, has_more) = self
            .core
            .history(r.conversation_id, cursor, convert::limit(r.limit, 20))
            .await
            .map_err(status)?;
        Ok(Response::new(pb::HistoryResponse {
            messages: messages
                .iter()
                .map(|m| convert::message(&self.core, m))
                .collect(),
            has_more,
        }))
    }

    #[tracing::instrument(skip_all, name = "Chat.UploadAttachment")]
    async fn upload_attachment(
        &self,
        request: Request<Streaming<pb::UploadAttachmentRequest>>,
    ) -> Result<Response<pb::Attachment>, Status> {
        let (upload, bytes) = super::files::upload_parts(request.into_inner()).await?;
        let stored = self
            .core
            .upload_attachment(upload, bytes)
            .await
            .map_err(status)?;
        Ok(Response::new(convert::attachment(&stored)))
    }

    type GetAttachmentStream = EventStream<pb::AttachmentChunk>;

    #[tracing::instrument(skip_all, name = "Chat.GetAttachment", fields(file = request.get_ref().id))]
    async fn get_attachment(
        &self,
        request: Request<pb::GetAttachmentRequest>,
    ) -> Result<Response<Self::GetAttachmentStream>, Status> {
        let chunks = super::files::download(&self.core, request.into_inner()).await?;
        Ok(Response::new(Box::pin(chunks)))
    }

    type SubscribeStream = EventStream<pb::Event>;

    #[tracing::instrument(skip_all, name = "Chat.Subscribe")]
    async fn subscribe(
        &self,
        request: Request<pb::SubscribeRequest>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        let r = request.into_inner();
        let scope = convert::scope(r.scope).map_err(status)?;
        let online = match r.as_admin {
            admin if admin.is_empty() => None,
            admin => Some(self.core.admin_online(admin).await.map_err(status)?),
        };
        let subscription = self
            .core
            .subscribe(scope, r.since_message_id)
            .await
            .map_err(status)?;
        let core = self.core.clone();
        // The admin is online for as long as the stream lives (it holds the guard).
        let stream = ReceiverStream::new(subscription).map(move |item| {
            let _online = &online;
            item.map(|e| convert::event(&core, &e)).map_err(status)
        });
        Ok(Response::new(Box::pin(stream)))
    }

    type EdgeSessionStream = EventStream<pb::EdgeEvent>;

    #[tracing::instrument(skip_all, name = "Chat.EdgeSession")]
    async fn edge_session(
        &self,
        request: Request<Streaming<pb::EdgeCommand>>,
    ) -> Result<Response<Self::EdgeSessionStream>, Status> {
        let events = edge::start(self.core.clone(), request.into_inner());
        Ok(Response::new(Box::pin(ReceiverStream::new(events))))
    }

    #[tracing::instrument(skip_all, name = "Chat.OpenConversation", fields(conversation = request.get_ref().conversation_id))]
    async fn open_conversation(
        &self,
        request: Request<pb::OpenConversationRequest>,
    ) -> Result<Response<pb::Conversation>, Status> {
        let summary = self
            .core
            .open_conversation(request.into_inner().conversation_id)
            .await
            .map_err(status)?;
        Ok(Response::new(convert::conversation(&self.core, &summary)))
    }

    #[tracing::instrument(skip_all, name = "Chat.ListConversations")]
    async fn list_conversations(
        &self,
        request: Request<pb::ListConversationsRequest>,
    ) -> Result<Response<pb::ListConversationsResponse>, Status> {
        let r = request.into_inner();
        let (page, has_more) = self
            .core
            .conversations(
                convert::cursor(r.before_last_message_id),
                convert::limit(r.limit, 50),
                &ConversationFilter {
                    assignee: match r.assignee {
                        None => AssigneeFilter::Any,
                        Some(a) if a.is_empty() => AssigneeFilter::Nobody,
                        Some(a) => AssigneeFilter::Admin(a),
                    },
                    statuses: r
                        .statuses
                        .iter()
                        .map(|&s| {
                            convert::requested_kind(s).ok_or_else(|| {
                                status(CoreError::InvalidArgument(
                                    "statuses holds an unspecified status".into(),
                                ))
                            })
                        })
                        .collect::<Result<_, _>>()?,
                    text: search(r.search)?,
                },
            )
            .await
            .map_err(status)?;
        Ok(Response::new(pb::ListConversationsResponse {
            conversations: page
                .iter()
                .map(|c| convert::conversation(&self.core, c))
                .collect(),
            has_more,
        }))
    }

    #[tracing::instrument(skip_all, name = "Chat.MarkRead", fields(conversation = request.get_ref().conversation_id))]
    async fn mark_read(
        &self,
        request: Request<pb::MarkReadRequest>,
    ) -> Result<Response<pb::Conversation>, Status> {
        let r = request.into_inner();
        let reader = convert::reader(r.reader).map_err(status)?;
        let summary = self
            .core
            .mark_read(r.conversation_id, reader, r.up_to_message_id)
            .await
            .map_err(status)?;
        Ok(Response::new(convert::conversation(&self.core, &summary)))
    }

    #[tracing::instrument(skip_all, name = "Chat.ListOnline")]
    async fn list_online(
        &self,
        _request: Request<pb::ListOnlineRequest>,
    ) -> Result<Response<pb::ListOnlineResponse>, Status> {
        Ok(Response::new(pb::ListOnlineResponse {
            online: self.core.online(),
            admins: self.core.online_admins(),
        }))
    }

    #[tracing::instrument(skip_all, name = "Chat.ListAdmins")]
    async fn list_admins(
        &self,
        _request: Request<pb::ListAdminsRequest>,
    ) -> Result<Response<pb::ListAdminsResponse>, Status> {
        let admins = self.core.admins().list();
        Ok(Response::new(pb::ListAdminsResponse {
            admins: admins
                .iter()
                .map(|a| convert::admin(&self.core, a))
                .collect(),
        }))
    }

    #[tracing::instrument(skip_all, name = "Chat.ReloadAdmins")]
    async fn reload_admins(
        &self,
        _request: Request<pb::ReloadAdminsRequest>,
    ) -> Result<Response<pb::ListAdminsResponse>, Status> {
        let admins = self.core.reload_admins().await.map_err(status)?;
        Ok(Response::new(pb::ListAdminsResponse {
            admins: admins
                .iter()
                .map(|a| convert::admin(&self.core, a))
                .collect(),
        }))
    }

    #[tracing::instrument(skip_all, name = "Chat.GetInfo")]
    async fn get_info(
        &self,
        _request: Request<pb::GetInfoRequest>,
    ) -> Result<Response<pb::CoreInfo>, Status> {
        Ok(Response::new(pb::CoreInfo {
            company: self.core.company().to_owned(),
            max_message_chars: u32::try_from(self.core.max_message_chars()).unwrap_or(u32::MAX),
            typing_preview: self.core.typing_preview(),
            max_attachment_bytes: self.core.files().config().max_bytes,
            max_attachments: self.core.files().config().max_per_message,
            attachment_types: self.core.files().config().types.clone(),
        }))
    }

    #[tracing::instrument(skip_all, name = "Chat.GetDeliveryCursor")]
    async fn get_delivery_cursor(
        &self,
        request: Request<pb::GetDeliveryCursorRequest>,
    ) -> Result<Response<pb::DeliveryCursor>, Status> {
        let consumer = request.into_inner().consumer;
        let message_id = self.core.delivery_cursor(&consumer).await.map_err(status)?;
        Ok(Response::new(pb::DeliveryCursor {
            consumer,
            message_id,
        }))
    }

    #[tracing::instrument(skip_all, name = "Chat.AdvanceDeliveryCursor")]
    async fn advance_delivery_cursor(
        &self,
        request: Request<pb::AdvanceDeliveryCursorRequest>,
    ) -> Result<Response<pb::DeliveryCursor>, Status> {
        let r = request.into_inner();
        let message_id = self
            .core
            .advance_delivery_cursor(&r.consumer, r.message_id)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::DeliveryCursor {
            consumer: r.consumer,
            message_id,
        }))
    }

    #[tracing::instrument(skip_all, name = "Chat.ListCannedReplies")]
    async fn list_canned_replies(
        &self,
        request: Request<pb::ListCannedRepliesRequest>,
    ) -> Result<Response<pb::ListCannedRepliesResponse>, Status> {
        let prefix = request.into_inner().prefix;
        let replies = self.core.canned_replies(&prefix).await.map_err(status)?;
        Ok(Response::new(pb::ListCannedRepliesResponse {
            replies: replies.into_iter().map(convert::canned_reply).collect(),
        }))
    }

    #[tracing::instrument(skip_all, name = "Chat.PutCannedReply", fields(shortcut = %request.get_ref().shortcut))]
    async fn put_canned_reply(
        &self,
        request: Request<pb::PutCannedReplyRequest>,
    ) -> Result<Response<pb::CannedReply>, Status> {
        let r = request.into_inner();
        let stored = self
            .core
            .put_canned_reply(&r.shortcut, &r.text, r.updated_by)
            .await
            .map_err(status)?;
        Ok(Response::new(convert::canned_reply(stored)))
    }

    #[tracing::instrument(skip_all, name = "Chat.DeleteCannedReply", fields(shortcut = %request.get_ref().shortcut))]
    async fn delete_canned_reply(
        &self,
        request: Request<pb::DeleteCannedReplyRequest>,
    ) -> Result<Response<pb::DeleteCannedReplyResponse>, Status> {
        let shortcut = request.into_inner().shortcut;
        let deleted = self
            .core
            .delete_canned_reply(&shortcut)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::DeleteCannedReplyResponse { deleted }))
    }

    #[tracing::instrument(skip_all, name = "Chat.AddNote", fields(conversation = request.get_ref().conversation_id))]
    async fn add_note(
        &self,
        request: Request<pb::AddNoteRequest>,
    ) -> Result<Response<pb::Note>, Status> {
        let r = request.into_inner();
        let note = self
            .core
            .add_note(r.conversation_id, r.admin_id, &r.text)
            .await
            .map_err(status)?;
        Ok(Response::new(convert::note(&note)))
    }

    #[tracing::instrument(skip_all, name = "Chat.ListNotes", fields(conversation = request.get_ref().conversation_id))]
    async fn list_notes(
        &self,
        request: Request<pb::ListNotesRequest>,
    ) -> Result<Response<pb::ListNotesResponse>, Status> {
        let notes = self
            .core
            .notes(request.into_inner().conversation_id)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::ListNotesResponse {
            notes: notes.iter().map(convert::note).collect(),
        }))
    }

    #[tracing::instrument(skip_all, name = "Chat.ExportTranscript", fields(conversation = request.get_ref().conversation_id))]
    async fn export_transcript(
        &self,
        request: Request<pb::ExportTranscriptRequest>,
    ) -> Result<Response<pb::Transcript>, Status> {
        let r = request.into_inner();
        let format = convert::transcript_format(r.format).map_err(status)?;
        let t = self
            .core
            .export_transcript(
                r.conversation_id,
                format,
                r.include_notes,
                r.after_message_id,
            )
            .await
            .map_err(status)?;
        Ok(Response::new(pb::Transcript {
            content_type: t.content_type.to_owned(),
            file_name: t.file_name,
            body: t.body,
            messages: u32::try_from(t.messages).unwrap_or(u32::MAX),
            notes: u32::try_from(t.notes).unwrap_or(u32::MAX),
            next_after_message_id: t.next_after,
        }))
    }

    #[tracing::instrument(skip_all, name = "Chat.EraseConversation", fields(conversation = request.get_ref().conversation_id))]
    async fn erase_conversation(
        &self,
        request: Request<pb::EraseConversationRequest>,
    ) -> Result<Response<pb::Erasure>, Status> {
        let r = request.into_inner();
        let e = self
            .core
            .erase_conversation(r.conversation_id, r.admin_id)
            .await
            .map_err(status)?;
        Ok(Response::new(convert::erasure(&e)))
    }

    #[tracing::instrument(skip_all, name = "Chat.AssignConversation", fields(conversation = request.get_ref().conversation_id))]
    async fn assign_conversation(
        &self,
        request: Request<pb::AssignConversationRequest>,
    ) -> Result<Response<pb::Conversation>, Status> {
        let r = request.into_inner();
        let assignee = Some(r.assignee).filter(|a| !a.is_empty());
        let summary = self
            .core
            .assign(r.conversation_id, assignee, r.by, r.take)
            .await
            .map_err(status)?;
        Ok(Response::new(convert::conversation(&self.core, &summary)))
    }

    #[tracing::instrument(skip_all, name = "Chat.SetConversationStatus", fields(conversation = request.get_ref().conversation_id))]
    async fn set_conversation_status(
        &self,
        request: Request<pb::SetConversationStatusRequest>,
    ) -> Result<Response<pb::Conversation>, Status> {
        let r = request.into_inner();
        let wanted = convert::requested_status(r.status, r.snoozed_until_ms).map_err(status)?;
        let summary = self
            .core
            .set_status(r.conversation_id, wanted, r.by)
            .await
            .map_err(status)?;
        Ok(Response::new(convert::conversation(&self.core, &summary)))
    }

    #[tracing::instrument(skip_all, name = "Chat.SetTyping", fields(conversation = request.get_ref().conversation_id))]
    async fn set_typing(
        &self,
        request: Request<pb::SetTypingRequest>,
    ) -> Result<Response<pb::SetTypingResponse>, Status> {
        let typing = convert::typing(request.into_inner()).map_err(status)?;
        self.core.typing(typing).await.map_err(status)?;
        Ok(Response::new(pb::SetTypingResponse {}))
    }

    #[tracing::instrument(skip_all, name = "Chat.SetVisitorContext", fields(conversation = request.get_ref().conversation_id))]
    async fn set_visitor_context(
        &self,
        request: Request<pb::SetVisitorContextRequest>,
    ) -> Result<Response<pb::VisitorContext>, Status> {
        let r = request.into_inner();
        let conversation = r.conversation_id;
        let (verified, page) = convert::context_parts(&r);
        let context = self
            .core
            .set_visitor_context(conversation, verified, page)
            .await
            .map_err(status)?;
        Ok(Response::new(convert::visitor_context(&context)))
    }
}
