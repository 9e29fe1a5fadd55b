//! Support staff signing in with their own passwords (`passwords`, set with `socketgram admin
//! passwd`), and the sessions that follow: a random secret handed to the client once, known to
//! the database only by its SHA-256 (`sg_admin_sessions`), so a read of the database gives no
//! one a session. Sessions last `[core] staff_session_ttl_secs`; signing out ends one, or every
//! one of an admin; a new password and the admin's removal end them all.
//!
//! Guessing is slowed per login: each login has a small budget of attempts that refills over
//! time (a client's address is the edge's to limit). Which part of a failed sign-in was wrong
//! is never said, and an unknown login costs the same hash as a known one.

use std::{sync::Arc, sync::LazyLock, time::Duration};

use base64::Engine as _;
use rand::RngCore as _;
use sha2::{Digest as _, Sha256};
use socketgram_common::attempts::Attempts;

use crate::{
    CoreError, CoreResult,
    config::LdapConfig,
    domain::{Admin, AdminSession},
    passwords,
    store::Store,
};

/// Sign-ins one login may try in a row...
const ATTEMPTS_BURST: u32 = 5;
/// ...and then one more per this long.
const ATTEMPT_REFILL: Duration = Duration::from_secs(12);
/// Logins are at most this long (`adm_account.aid`): longer ones cannot be an admin.
const MAX_LOGIN_CHARS: usize = 20;
/// Logins remembered by the limiter before idle ones are forgotten.
const LIMITER_KEYS: usize = 10_000;

/// A signed-in admin.
#[derive(Clone, Debug)]
pub struct SignedIn {
    pub admin: Admin,
    pub expires_at_ms: i64,
}

/// Sign-ins and sessions.
pub struct Staff {
    store: Arc<dyn Store>,
    /// `[core.staff_ldap]`: directory passwords too.
    directory: Option<crate::ldap::Directory>,
    ttl_ms: i64,
    attempts: Attempts<String>,
}

/// What an unknown login is checked against, so that it takes as long as a known one.
static DECOY: LazyLock<String> = LazyLock::new(|| passwords::hash("not anyone's password"));

/// The id a session is stored under: the SHA-256 of its token.
fn session_id(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl Staff {
    pub fn new(store: Arc<dyn Store>, ttl_secs: u64, ldap: Option<LdapConfig>) -> Self {
        Self {
            store,
            directory: ldap.map(crate::ldap::Directory::new),
            ttl_ms: i64::try_from(ttl_secs.saturating_mul(1000)).unwrap_or(i64::MAX),
            attempts: Attempts::new(ATTEMPTS_BURST, ATTEMPT_REFILL, LIMITER_KEYS),
        }
    }

    /// Checks `login` and `password`; opens a session, whose token is returned with it.
    pub async fn sign_in(&self, login: &str, password: &str) -> CoreResult<(String, SignedIn)> {
        if login.chars().count() > MAX_LOGIN_CHARS
            || password.chars().count() > passwords::MAX_PASSWORD_CHARS
        {
            return Err(CoreError::WrongCredentials);
        }
        self.spend_attempt(login)?;
        let admin = self.admin(login).await?;
        let hash = match &admin {
            Some(_) => self.store.admin_password(login).await?,
            None => None,
        };
        let known = hash.is_some();
        let (hash, typed) = (hash.unwrap_or_else(|| DECOY.clone()), password.to_owned());
        let matches = tokio::task::spawn_blocking(move || passwords::verify(&typed, &hash))
            .await
            .map_err(|e| CoreError::Internal(format!("password check: {e}")))?;
        let matches = (known && matches) || self.directory_says(admin.as_ref(), password).await?;
        let Some(admin) = admin.filter(|_| matches) else {
            tracing::info!(login, "sign-in refused: wrong login or password");
            return Err(CoreError::WrongCredentials);
        };
        check_rights(&admin)?;
        let mut secret = [0u8; 32];
        rand::rng().fill_bytes(&mut secret);
        let token = format!(
            "s1.{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret)
        );
        let now = now_ms();
        let session = AdminSession {
            id: session_id(&token),
            admin_id: admin.admin_id.clone(),
            created_at_ms: now,
            expires_at_ms: now.saturating_add(self.ttl_ms),
        };
        self.store.create_admin_session(&session).await?;
        tracing::info!(login, "signed in");
        Ok((
            token,
            SignedIn {
                admin,
                expires_at_ms: session.expires_at_ms,
            },
        ))
    }

    /// The admin a session token is for, while the session lasts and the admin may chat.
    pub async fn session(&self, token: &str) -> CoreResult<SignedIn> {
        let Some(session) = self.store.admin_session(&session_id(token)).await? else {
            return Err(CoreError::SessionEnded(
                "not signed in (the session is unknown or was signed out)",
            ));
        };
        if session.expires_at_ms <= now_ms() {
            return Err(CoreError::SessionExpired);
        }
        let admin = self
            .admin(&session.admin_id)
            .await?
            .ok_or(CoreError::SessionEnded(
                "the session's admin no longer exists",
            ))?;
        check_rights(&admin).map_err(|_| {
            CoreError::SessionEnded("the session's admin no longer has rights to the chat")
        })?;
        Ok(SignedIn {
            admin,
            expires_at_ms: session.expires_at_ms,
        })
    }

    /// Ends the token's session, or every session of its admin; how many ended, and whose.
    pub async fn sign_out(&self, token: &str, everywhere: bool) -> CoreResult<(u64, String)> {
        let id = session_id(token);
        let Some(session) = self.store.admin_session(&id).await? else {
            return Ok((0, String::new()));
        };
        let ended = if everywhere {
            self.store.end_admin_sessions(&session.admin_id).await?
        } else {
            u64::from(self.store.end_admin_session(&id).await?)
        };
        tracing::info!(login = %session.admin_id, everywhere, ended, "signed out");
        Ok((ended, session.admin_id))
    }

    /// Whether the directory (when there is one) knows `password` as the admin's. Only
    /// admins of `adm_account` are looked up: the directory says who may sign in, the
    /// directory of admins says who they are in the chat.
    async fn directory_says(&self, admin: Option<&Admin>, password: &str) -> CoreResult<bool> {
        let (Some(directory), Some(admin)) = (&self.directory, admin) else {
            return Ok(false);
        };
        match directory.check(&admin.admin_id, password).await? {
            crate::ldap::Verdict::Member => Ok(true),
            crate::ldap::Verdict::Wrong => Ok(false),
            crate::ldap::Verdict::NotInGroup => Err(CoreError::NoRights(format!(
                "{:?} is not in the directory's support group",
                admin.admin_id
            ))),
        }
    }

    /// How many admins can sign in (none: a first run): those with a password, or with a
    /// directory, every admin.
    pub async fn admins_who_can_sign_in(&self) -> CoreResult<usize> {
        if self.directory.is_some() {
            return Ok(self.store.admins().await?.len());
        }
        Ok(self.store.admins_with_password().await?.len())
    }

    async fn admin(&self, login: &str) -> CoreResult<Option<Admin>> {
        Ok(self
            .store
            .admins()
            .await?
            .into_iter()
            .find(|a| a.admin_id == login))
    }

    fn spend_attempt(&self, login: &str) -> CoreResult<()> {
        self.attempts
            .spend(&login.to_owned())
            .map_err(|retry_after_secs| {
                tracing::warn!(login, "sign-in refused: too many attempts");
                CoreError::TooManyAttempts { retry_after_secs }
            })
    }
}

/// Rights 0 (`lid`): an admin of the directory who may not use the chat.
fn check_rights(admin: &Admin) -> CoreResult<()> {
    if admin.rights == 0 {
        return Err(CoreError::NoRights(format!(
            "the admin {:?} has no rights to the chat (role 0)",
            admin.admin_id
        )));
    }
    Ok(())
}
