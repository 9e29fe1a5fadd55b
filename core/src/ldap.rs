//! Support staff's directory passwords (`[core.staff_ldap]`): is this the password of this
//! login in the LDAP directory, and is the person in the support group?
//!
//! As the PHP admin's LDAP mode: a search (as the configured account) finds the person's entry
//! by login, a bind as that entry checks the password, and a search finds the support group
//! with them in it. Unlike it, the login is escaped in every filter (no `*` widens a search),
//! an empty password never reaches the directory (an empty simple bind is an anonymous bind,
//! which "succeeds"), a search must find exactly one person, and a failed bind is a failure.

use std::time::Duration;

use ldap3::{Ldap, LdapConnAsync, LdapConnSettings, LdapError, Scope, SearchEntry, ldap_escape};

use crate::{CoreError, CoreResult, config::LdapConfig};

/// The LDAP result code of a bind with a wrong password (RFC 4511).
const INVALID_CREDENTIALS: u32 = 49;

/// What the directory says of a sign-in.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The password is the person's, and they may support.
    Member,
    /// The password is the person's, but they are not in the support group.
    NotInGroup,
    /// No such person, several, or not their password.
    Wrong,
}

/// The directory of `[core.staff_ldap]`.
pub struct Directory {
    config: LdapConfig,
}

fn unavailable(what: &str, e: &LdapError) -> CoreError {
    CoreError::Directory(format!("{what}: {e}"))
}

impl Directory {
    pub fn new(config: LdapConfig) -> Self {
        Self { config }
    }

    /// Checks `password` for `login`.
    #[tracing::instrument(skip_all, name = "ldap.check", fields(login))]
    pub async fn check(&self, login: &str, password: &str) -> CoreResult<Verdict> {
        if password.is_empty() || login.is_empty() {
            return Ok(Verdict::Wrong);
        }
        let timeout = Duration::from_secs(self.config.timeout_secs);
        let settings = LdapConnSettings::new().set_conn_timeout(timeout);
        let (conn, mut ldap) = LdapConnAsync::with_settings(settings, &self.config.url)
            .await
            .map_err(|e| unavailable("cannot reach the LDAP directory", &e))?;
        ldap3::drive!(conn);
        ldap.with_timeout(timeout);
        let verdict = self.verdict(&mut ldap, login, password, timeout).await;
        let _ = ldap.unbind().await;
        verdict
    }

    /// The searches and binds of [`Directory::check`] on an open connection.
    async fn verdict(
        &self,
        ldap: &mut Ldap,
        login: &str,
        password: &str,
        timeout: Duration,
    ) -> CoreResult<Verdict> {
        if !self.config.bind_dn.is_empty() {
            ldap.simple_bind(&self.config.bind_dn, self.config.bind_password.expose())
                .await
                .and_then(|r| r.success())
                .map_err(|e| unavailable("the LDAP search account cannot bind", &e))?;
        }
        let escaped = ldap_escape(login).into_owned();
        let filter = self.config.user_filter.replace("{login}", &escaped);
        let (entries, _) = ldap
            .with_timeout(timeout)
            .search(&self.config.base_dn, Scope::Subtree, &filter, vec!["1.1"])
            .await
            .and_then(|r| r.success())
            .map_err(|e| unavailable("the LDAP search for the person failed", &e))?;
        let [entry] = entries.as_slice() else {
            tracing::info!(
                found = entries.len(),
                "the directory has no single person of this login"
            );
            return Ok(Verdict::Wrong);
        };
        let dn = SearchEntry::construct(entry.clone()).dn;
        let bound = ldap.with_timeout(timeout).simple_bind(&dn, password).await;
        match bound.map(|r| r.rc) {
            Ok(0) => {}
            Ok(INVALID_CREDENTIALS) => return Ok(Verdict::Wrong),
            Ok(rc) => {
                return Err(CoreError::Directory(format!(
                    "the LDAP bind as the person failed (result code {rc})"
                )));
            }
            Err(e) => return Err(unavailable("the LDAP bind as the person failed", &e)),
        }
        if self.config.group_dn.is_empty() {
            return Ok(Verdict::Member);
        }
        let filter = self.config.group_filter.replace("{login}", &escaped);
        let (groups, _) = ldap
            .with_timeout(timeout)
            .search(&self.config.group_dn, Scope::Subtree, &filter, vec!["1.1"])
            .await
            .and_then(|r| r.success())
            .map_err(|e| unavailable("the LDAP search for the support group failed", &e))?;
        Ok(if groups.is_empty() {
            Verdict::NotInGroup
        } else {
            Verdict::Member
        })
    }
}
