//! The `Telegram` service: the links between Telegram chats and visitors (by login, or by a
//! one-time link token), leases and the staff group's state.

use std::{sync::Arc, time::Duration};

use socketgram_proto::v1::{self as pb, telegram_server::Telegram};
use tonic::{Request, Response, Status};

use super::{convert, status};
use crate::Core;

/// `socketgram.v1.Telegram` over a [`Core`].
#[derive(Clone)]
pub struct TelegramApi {
    core: Arc<Core>,
}

impl TelegramApi {
    pub fn new(core: Arc<Core>) -> Self {
        Self { core }
    }
}

fn links(links: &[crate::domain::TelegramLink]) -> pb::ListTelegramLinksResponse {
    pb::ListTelegramLinksResponse {
        links: links.iter().map(convert::telegram_link).collect(),
    }
}

#[tonic::async_trait]
impl Telegram for TelegramApi {
    #[tracing::instrument(skip_all, name = "Telegram.GetLink")]
    async fn get_link(
        &self,
        request: Request<pb::GetTelegramLinkRequest>,
    ) -> Result<Response<pb::TelegramLink>, Status> {
        let link = self
            .core
            .telegram_link(request.into_inner().chat_id)
            .await
            .map_err(status)?;
        Ok(Response::new(convert::telegram_link(&link)))
    }

    #[tracing::instrument(skip_all, name = "Telegram.Link", fields(chat_id = request.get_ref().chat_id))]
    async fn link(
        &self,
        request: Request<pb::LinkTelegramRequest>,
    ) -> Result<Response<pb::TelegramLink>, Status> {
        let r = request.into_inner();
        let link = self
            .core
            .link_telegram(r.chat_id, r.conversation_id)
            .await
            .map_err(status)?;
        Ok(Response::new(convert::telegram_link(&link)))
    }

    #[tracing::instrument(skip_all, name = "Telegram.SetState", fields(chat_id = request.get_ref().chat_id))]
    async fn set_state(
        &self,
        request: Request<pb::SetTelegramStateRequest>,
    ) -> Result<Response<pb::TelegramLink>, Status> {
        let r = request.into_inner();
        let mode = convert::telegram_mode(r.mode).map_err(status)?;
        let link = self
            .core
            .set_telegram_state(r.chat_id, mode, r.active)
            .await
            .map_err(status)?;
        Ok(Response::new(convert::telegram_link(&link)))
    }

    #[tracing::instrument(skip_all, name = "Telegram.ListLinks")]
    async fn list_links(
        &self,
        request: Request<pb::ListTelegramLinksRequest>,
    ) -> Result<Response<pb::ListTelegramLinksResponse>, Status> {
        let conversation = convert::cursor(request.into_inner().conversation_id);
        let all = self
            .core
            .telegram_links(conversation)
            .await
            .map_err(status)?;
        Ok(Response::new(links(&all)))
    }

    #[tracing::instrument(skip_all, name = "Telegram.ResetModes")]
    async fn reset_modes(
        &self,
        _request: Request<pb::ResetTelegramModesRequest>,
    ) -> Result<Response<pb::ListTelegramLinksResponse>, Status> {
        let all = self.core.reset_telegram_modes().await.map_err(status)?;
        Ok(Response::new(links(&all)))
    }

    #[tracing::instrument(skip_all, name = "Telegram.CheckCredentials")]
    async fn check_credentials(
        &self,
        request: Request<pb::CheckCredentialsRequest>,
    ) -> Result<Response<pb::CheckCredentialsResponse>, Status> {
        let r = request.into_inner();
        let verdict = self
            .core
            .check_credentials(&r.login, &r.password)
            .await
            .map_err(status)?;
        Ok(Response::new(convert::credentials_verdict(verdict)))
    }

    #[tracing::instrument(skip_all, name = "Telegram.AcquireLease", fields(name = %request.get_ref().name))]
    async fn acquire_lease(
        &self,
        request: Request<pb::AcquireLeaseRequest>,
    ) -> Result<Response<pb::Lease>, Status> {
        let r = request.into_inner();
        let ttl = Duration::from_millis(u64::from(r.ttl_ms));
        let lease = self
            .core
            .acquire_lease(&r.name, &r.holder, ttl)
            .await
            .map_err(status)?;
        Ok(Response::new(convert::lease(&lease)))
    }

    #[tracing::instrument(skip_all, name = "Telegram.ReleaseLease", fields(name = %request.get_ref().name))]
    async fn release_lease(
        &self,
        request: Request<pb::ReleaseLeaseRequest>,
    ) -> Result<Response<pb::ReleaseLeaseResponse>, Status> {
        let r = request.into_inner();
        let released = self
            .core
            .release_lease(&r.name, &r.holder)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::ReleaseLeaseResponse { released }))
    }

    #[tracing::instrument(skip_all, name = "Telegram.CreateLinkToken", fields(conversation = request.get_ref().conversation_id))]
    async fn create_link_token(
        &self,
        request: Request<pb::CreateLinkTokenRequest>,
    ) -> Result<Response<pb::LinkToken>, Status> {
        let issued = self
            .core
            .create_link_token(request.into_inner().conversation_id)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::LinkToken {
            token: issued.token,
            expires_at_ms: issued.expires_at_ms,
        }))
    }

    #[tracing::instrument(skip_all, name = "Telegram.RedeemLinkToken", fields(chat_id = request.get_ref().chat_id))]
    async fn redeem_link_token(
        &self,
        request: Request<pb::RedeemLinkTokenRequest>,
    ) -> Result<Response<pb::TelegramLink>, Status> {
        let r = request.into_inner();
        let link = self
            .core
            .redeem_link_token(&r.token, r.chat_id)
            .await
            .map_err(status)?;
        Ok(Response::new(convert::telegram_link(&link)))
    }

    #[tracing::instrument(skip_all, name = "Telegram.GetStaffMember")]
    async fn get_staff_member(
        &self,
        request: Request<pb::GetStaffMemberRequest>,
    ) -> Result<Response<pb::Admin>, Status> {
        let admin = self
            .core
            .staff_member(request.into_inner().telegram_user_id)
            .await
            .map_err(status)?;
        Ok(Response::new(convert::admin(&self.core, &admin)))
    }

    #[tracing::instrument(skip_all, name = "Telegram.GetStaffTopic", fields(chat_id = request.get_ref().chat_id))]
    async fn get_staff_topic(
        &self,
        request: Request<pb::GetStaffTopicRequest>,
    ) -> Result<Response<pb::StaffTopic>, Status> {
        use pb::get_staff_topic_request::By;
        let r = request.into_inner();
        let topic = match r.by {
            Some(By::ConversationId(conversation)) => pb::StaffTopic {
                chat_id: r.chat_id,
                conversation_id: conversation,
                thread_id: self
                    .core
                    .staff_topic(r.chat_id, conversation)
                    .await
                    .map_err(status)?,
            },
            Some(By::ThreadId(thread)) => pb::StaffTopic {
                chat_id: r.chat_id,
                conversation_id: self
                    .core
                    .staff_topic_conversation(r.chat_id, thread)
                    .await
                    .map_err(status)?,
                thread_id: thread,
            },
            None => {
                return Err(status(crate::CoreError::InvalidArgument(
                    "give conversation_id or thread_id".into(),
                )));
            }
        };
        Ok(Response::new(topic))
    }

    #[tracing::instrument(skip_all, name = "Telegram.PutStaffTopic", fields(chat_id = request.get_ref().chat_id))]
    async fn put_staff_topic(
        &self,
        request: Request<pb::StaffTopic>,
    ) -> Result<Response<pb::StaffTopic>, Status> {
        let topic = request.into_inner();
        self.core
            .put_staff_topic(topic.chat_id, topic.conversation_id, topic.thread_id)
            .await
            .map_err(status)?;
        Ok(Response::new(topic))
    }
}
