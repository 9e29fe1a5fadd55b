//! The `Staff` service: support staff's sign-in and sessions (see `staff`).

use std::sync::Arc;

use socketgram_proto::v1::{self as pb, staff_server::Staff};
use tonic::{Request, Response, Status};

use super::{convert, status};
use crate::{Core, staff::SignedIn};

/// `socketgram.v1.Staff` over a [`Core`].
#[derive(Clone)]
pub struct StaffApi {
    core: Arc<Core>,
}

impl StaffApi {
    pub fn new(core: Arc<Core>) -> Self {
        Self { core }
    }

    fn session(&self, token: String, signed_in: &SignedIn) -> pb::StaffSession {
        pb::StaffSession {
            token,
            admin: Some(convert::admin(&self.core, &signed_in.admin)),
            expires_at_ms: signed_in.expires_at_ms,
        }
    }
}

#[tonic::async_trait]
impl Staff for StaffApi {
    #[tracing::instrument(skip_all, name = "Staff.SignIn")]
    async fn sign_in(
        &self,
        request: Request<pb::SignInRequest>,
    ) -> Result<Response<pb::StaffSession>, Status> {
        let r = request.into_inner();
        let (token, signed_in) = self
            .core
            .staff()
            .sign_in(&r.login, &r.password)
            .await
            .map_err(status)?;
        Ok(Response::new(self.session(token, &signed_in)))
    }

    #[tracing::instrument(skip_all, name = "Staff.GetSession")]
    async fn get_session(
        &self,
        request: Request<pb::GetSessionRequest>,
    ) -> Result<Response<pb::StaffSession>, Status> {
        let signed_in = self
            .core
            .staff()
            .session(&request.into_inner().token)
            .await
            .map_err(status)?;
        Ok(Response::new(self.session(String::new(), &signed_in)))
    }

    #[tracing::instrument(skip_all, name = "Staff.SignOut")]
    async fn sign_out(
        &self,
        request: Request<pb::SignOutRequest>,
    ) -> Result<Response<pb::SignOutResponse>, Status> {
        let r = request.into_inner();
        let (ended, admin_id) = self
            .core
            .staff()
            .sign_out(&r.token, r.everywhere)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::SignOutResponse {
            ended: u32::try_from(ended).unwrap_or(u32::MAX),
            admin_id,
        }))
    }

    #[tracing::instrument(skip_all, name = "Staff.GetSignInSetup")]
    async fn get_sign_in_setup(
        &self,
        _: Request<pb::GetSignInSetupRequest>,
    ) -> Result<Response<pb::SignInSetup>, Status> {
        let admins = self
            .core
            .staff()
            .admins_who_can_sign_in()
            .await
            .map_err(status)?;
        Ok(Response::new(pb::SignInSetup {
            admins_with_password: u32::try_from(admins).unwrap_or(u32::MAX),
        }))
    }
}
