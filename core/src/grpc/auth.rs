//! Bearer-token authentication of backends (`authorization: Bearer <token>`), compared in
//! constant time against the configured tokens.

use std::sync::Arc;

use tonic::{Request, Status, service::Interceptor};

use crate::config::Secret;

/// Accepts a call whose bearer token is one of the configured ones.
#[derive(Clone)]
pub struct BearerAuth {
    tokens: Arc<Vec<Secret>>,
}

impl BearerAuth {
    /// Empty tokens are ignored: they would let anyone in.
    pub fn new(tokens: impl IntoIterator<Item = Secret>) -> Self {
        Self {
            tokens: Arc::new(tokens.into_iter().filter(|t| !t.is_empty()).collect()),
        }
    }

    fn accepts(&self, presented: &[u8]) -> bool {
        // Check every token, so timing does not tell which one (or whether any) matched.
        self.tokens
            .iter()
            .fold(false, |ok, t| ok | t.matches(presented))
    }
}

impl Interceptor for BearerAuth {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        let Some(value) = request.metadata().get("authorization") else {
            return Err(Status::unauthenticated(
                "missing `authorization: Bearer <token>` metadata",
            ));
        };
        let token = value
            .as_bytes()
            .strip_prefix(b"Bearer ")
            .ok_or_else(|| Status::unauthenticated("authorization must be `Bearer <token>`"))?;
        if self.accepts(token) {
            Ok(request)
        } else {
            Err(Status::unauthenticated("invalid bearer token"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(auth: &mut BearerAuth, header: Option<&str>) -> Result<(), Status> {
        let mut request = Request::new(());
        if let Some(h) = header {
            request
                .metadata_mut()
                .insert("authorization", h.parse().unwrap());
        }
        auth.call(request).map(|_| ())
    }

    #[test]
    fn tokens() {
        let mut auth = BearerAuth::new([Secret::new("s3cret"), Secret::new("")]);
        assert!(call(&mut auth, Some("Bearer s3cret")).is_ok());
        for bad in [
            None,
            Some("Bearer wrong"),
            Some("s3cret"),
            Some("Bearer "),
            Some("Bearer s3cre"),
        ] {
            let e = call(&mut auth, bad).unwrap_err();
            assert_eq!(e.code(), tonic::Code::Unauthenticated, "{bad:?}");
        }
    }
}
