//! "Continue in Telegram" without a password: one-time tokens that link a Telegram chat to a
//! visitor's conversation. The web edge asks for one for its socket's visitor and puts it in
//! the bot's start link (`https://t.me/<bot>?start=<token>`); the bot redeems it when the
//! visitor's Telegram sends `/start <token>`. A token is 16 random bytes, base64url (22
//! characters, all of them allowed in a start parameter), known to the database only by its
//! SHA-256 (`sg_telegram_link_tokens`, as `sg_admin_sessions` keeps sessions), so a read of the
//! database links no one. It lasts `[core] telegram_link_ttl_secs` by the database's clock and
//! is taken by its first redeem; expired ones are deleted when a new one is made.

use std::{sync::Arc, time::Duration};

use base64::Engine as _;
use rand::RngCore as _;
use sha2::{Digest as _, Sha256};

use crate::{CoreError, CoreResult, domain::ConversationId, store::Store};

/// Random bytes in a token: 128 bits, past guessing.
const TOKEN_BYTES: usize = 16;
/// The longest start parameter Telegram passes on (`/start <parameter>`).
const MAX_START_PARAMETER: usize = 64;

/// A token just made: the secret (only ever in this answer) and when it stops being accepted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkToken {
    pub token: String,
    /// Milliseconds since 1970, by the database's clock.
    pub expires_at_ms: i64,
}

/// Makes and takes link tokens.
pub struct LinkTokens {
    store: Arc<dyn Store>,
    ttl: Duration,
}

/// The id a token is stored under: the lowercase hex SHA-256 of its text.
fn token_id(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Whether `token` can be a start parameter at all (1-64 of A-Z a-z 0-9 _ -): anything else
/// is a malformed request, not a token that was used or ran out.
fn check_format(token: &str) -> CoreResult<()> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
    if token.is_empty() || token.len() > MAX_START_PARAMETER || !token.chars().all(allowed) {
        return Err(CoreError::InvalidArgument(format!(
            "a link token is 1 to {MAX_START_PARAMETER} characters of A-Z a-z 0-9 _ -"
        )));
    }
    Ok(())
}

impl LinkTokens {
    pub fn new(store: Arc<dyn Store>, ttl_secs: u64) -> Self {
        Self {
            store,
            ttl: Duration::from_secs(ttl_secs),
        }
    }

    /// A new token for `conversation` (the caller checked that it may have one).
    pub async fn create(&self, conversation: ConversationId) -> CoreResult<LinkToken> {
        let mut secret = [0u8; TOKEN_BYTES];
        rand::rng().fill_bytes(&mut secret);
        let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret);
        let expires_at_ms = self
            .store
            .create_link_token(&token_id(&token), conversation, self.ttl)
            .await?;
        Ok(LinkToken {
            token,
            expires_at_ms,
        })
    }

    /// The conversation of `token`, which is used up by this call; refused when it is
    /// malformed, unknown, used already or expired.
    pub async fn take(&self, token: &str) -> CoreResult<ConversationId> {
        check_format(token)?;
        self.store
            .take_link_token(&token_id(token))
            .await?
            .ok_or(CoreError::LinkTokenInvalid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_what_a_start_parameter_may_hold() {
        let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode([0xfb; TOKEN_BYTES]);
        assert_eq!(token.len(), 22);
        check_format(&token).expect("a token of ours");
        check_format(&"a".repeat(64)).expect("the longest start parameter");
        for bad in ["", "with space", "dot.ted", "plus+", "ünï", &"a".repeat(65)] {
            let e = check_format(bad).expect_err(bad);
            assert!(matches!(e, CoreError::InvalidArgument(_)), "{bad:?}: {e}");
        }
    }

    #[test]
    fn a_token_is_stored_by_its_digest() {
        let id = token_id("abc");
        assert_eq!(
            id,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_ne!(id, token_id("abd"));
    }
}
