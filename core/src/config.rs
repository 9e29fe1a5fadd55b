//! The core's configuration sections. The binary composes them into its one `Config`; tests
//! build them directly.

use serde::{Deserialize, Serialize};

use crate::store::DatabaseConfig;

pub use socketgram_common::{ConfigError, Secret};

/// Serializes a database URL with only its password hidden (`config check`).
pub fn serialize_url<S: serde::Serializer>(url: &Secret, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&crate::store::redact_url(url.expose()))
}

/// What the core needs to know.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CoreConfig {
    /// Company name: appended to admin names ("<name> <company>", LEGACY.md §4).
    pub company: String,
    /// Offset of the wall-clock time written to `messages.date`, in hours from UTC
    /// (legacy `time`; fractions allowed, e.g. 5.5).
    pub gmt_offset_hours: f64,
    /// Longest message accepted, in characters (the legacy column holds 10,000).
    pub max_message_chars: usize,
    /// Whether support sees what a visitor is typing before it is sent (the draft's text in
    /// typing events); otherwise only its length.
    pub typing_preview: bool,
    /// Whether a visitor's message to a conversation nobody has assigns it, round robin, to
    /// an admin online with fewer than `auto_assign_max_open` open or pending conversations.
    pub auto_assign: bool,
    /// The most open or pending conversations auto-assignment gives one admin (at least 1).
    pub auto_assign_max_open: u64,
    /// How long a support member's sign-in lasts (the console's session), in seconds.
    pub staff_session_ttl_secs: u64,
    /// How long a "Continue in Telegram" link (its one-time token) is accepted by the bot, in
    /// seconds.
    pub telegram_link_ttl_secs: u64,
    pub database: DatabaseConfig,
    /// How visitors' Telegram logins are checked (`[core.credentials]`).
    pub credentials: CredentialsConfig,
    /// Core replicas sharing the database (`[core.cluster]`).
    pub cluster: ClusterConfig,
    /// Support staff signing in with their directory password (`[core.staff_ldap]`).
    pub staff_ldap: Option<LdapConfig>,
    /// Files attached to messages (`[core.attachments]`).
    pub attachments: crate::files::AttachmentsConfig,
}

/// The longest a sign-in may last: 30 days.
const MAX_SESSION_TTL_SECS: u64 = 30 * 24 * 3600;
/// The shortest and longest a Telegram link token may last: time to switch to Telegram, and
/// short enough that a link copied or left in a page soon links no one.
const LINK_TTL_SECS: std::ops::RangeInclusive<u64> = 10..=3600;

impl Default for CoreConfig {
    fn default() -> Self {
        Self {
            company: String::new(),
            gmt_offset_hours: 0.0,
            max_message_chars: crate::store::text::COLUMN_CHARS,
            typing_preview: false,
            auto_assign: false,
            auto_assign_max_open: 10,
            staff_session_ttl_secs: 12 * 3600,
            telegram_link_ttl_secs: 600,
            database: DatabaseConfig::default(),
            credentials: CredentialsConfig::default(),
            cluster: ClusterConfig::default(),
            staff_ldap: None,
            attachments: crate::files::AttachmentsConfig::default(),
        }
    }
}

impl CoreConfig {
    /// Checks every value; the error names the key (relative to the `[core]` section).
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(-12.0..=14.0).contains(&self.gmt_offset_hours) {
            return Err(ConfigError::new(
                "gmt_offset_hours",
                format!("{} is not between -12 and 14", self.gmt_offset_hours),
            ));
        }
        if self.max_message_chars == 0 || self.max_message_chars > crate::store::text::COLUMN_CHARS
        {
            return Err(ConfigError::new(
                "max_message_chars",
                format!(
                    "{} is not between 1 and {} (the size of the legacy messages.message column)",
                    self.max_message_chars,
                    crate::store::text::COLUMN_CHARS
                ),
            ));
        }
        if self.auto_assign_max_open == 0 {
            return Err(ConfigError::new(
                "auto_assign_max_open",
                "must be at least 1",
            ));
        }
        if !(1..=MAX_SESSION_TTL_SECS).contains(&self.staff_session_ttl_secs) {
            return Err(ConfigError::new(
                "staff_session_ttl_secs",
                format!("must be between 1 and {MAX_SESSION_TTL_SECS} (30 days)"),
            ));
        }
        if !LINK_TTL_SECS.contains(&self.telegram_link_ttl_secs) {
            return Err(ConfigError::new(
                "telegram_link_ttl_secs",
                format!(
                    "must be between {} and {} (an hour)",
                    LINK_TTL_SECS.start(),
                    LINK_TTL_SECS.end()
                ),
            ));
        }
        crate::store::Backend::from_url(self.database.url.expose())
            .map_err(|e| ConfigError::new("database.url", e.to_string()))?;
        if self.database.max_connections == 0 {
            return Err(ConfigError::new(
                "database.max_connections",
                "must be at least 1",
            ));
        }
        self.credentials.validate()?;
        self.attachments
            .validate()
            .map_err(|e| ConfigError::new(format!("attachments.{}", e.key), e.reason))?;
        if let Some(ldap) = &self.staff_ldap {
            ldap.validate()?;
        }
        self.cluster.validate()?;
        if self.cluster.enabled()
            && crate::store::Backend::from_url(self.database.url.expose())
                .is_ok_and(|b| b == crate::store::Backend::Sqlite)
        {
            return Err(ConfigError::new(
                "cluster.nats_url",
                "core replicas share one MySQL/MariaDB or PostgreSQL database; SQLite is \
                 single-node (leave nats_url empty, or set database.url to mysql:// or \
                 postgres://)",
            ));
        }
        Ok(())
    }

    /// The GMT offset as a chrono offset, whole minutes.
    pub fn offset(&self) -> chrono::FixedOffset {
        let seconds = (self.gmt_offset_hours * 60.0).round() as i32 * 60;
        chrono::FixedOffset::east_opt(seconds)
            .unwrap_or_else(|| chrono::FixedOffset::east_opt(0).expect("zero offset"))
    }
}

/// How `users.password` (or the external database's password column) is hashed: the password
/// the visitor types is hashed this way, hex, then compared.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum PasswordHash {
    #[default]
    Md5,
    Sha1,
    Sha256,
    /// Stored as typed.
    None,
}

/// `[core.credentials]`: how visitors log in from Telegram (login `id<cid>` and password,
/// LEGACY.md §5, §7). The core checks them: it owns the chat database.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct CredentialsConfig {
    pub password_hash: PasswordHash,
    /// Check against another database instead of the chat's `users` table.
    pub external: Option<ExternalCredentials>,
}

/// The "another db" variant (LEGACY.md §5).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ExternalCredentials {
    /// Database URL (mysql://, mariadb://, postgres://, sqlite://).
    #[serde(serialize_with = "serialize_url")]
    pub url: Secret,
    /// Query taking (login, hashed password), as two `?`, and returning a count column `col`
    /// and the visitor id `id` (the legacy query). On PostgreSQL the `?` become `$1`, `$2`.
    pub query: String,
}

impl CredentialsConfig {
    /// Checks every value; errors name the key relative to the `[core]` section.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(external) = &self.external {
            crate::store::Backend::from_url(external.url.expose())
                .map_err(|e| ConfigError::new("credentials.external.url", e.to_string()))?;
            if external.query.matches('?').count() != 2 {
                return Err(ConfigError::new(
                    "credentials.external.query",
                    "must take two parameters (?, ?): the login and the hashed password",
                ));
            }
        }
        Ok(())
    }
}

/// `[core.staff_ldap]`: support staff sign in with their password of an LDAP directory, as the
/// PHP admin's LDAP mode does: the directory finds the person by login, the password is
/// checked by binding as them, and (optionally) they must be a member of the support group.
/// The login is also their `adm_account` login (who they are in the chat); a local password
/// (`socketgram admin passwd`) still works beside it.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct LdapConfig {
    /// `ldap://host:389` or `ldaps://host:636`.
    pub url: String,
    /// The account that searches for the person (empty: an anonymous search).
    #[serde(default)]
    pub bind_dn: String,
    #[serde(default)]
    pub bind_password: Secret,
    /// Where people are searched, the whole subtree.
    pub base_dn: String,
    /// The search for one person; `{login}` is replaced by the login, escaped.
    #[serde(default = "default_user_filter")]
    pub user_filter: String,
    /// Where the support group is searched; empty: anyone the directory knows may sign in.
    #[serde(default)]
    pub group_dn: String,
    /// The search that finds the group when the person is a member.
    #[serde(default = "default_group_filter")]
    pub group_filter: String,
    /// The longest the directory may take to answer, in seconds.
    #[serde(default = "default_ldap_timeout")]
    pub timeout_secs: u64,
}

fn default_user_filter() -> String {
    "(uid={login})".into()
}

fn default_group_filter() -> String {
    "(memberUid={login})".into()
}

fn default_ldap_timeout() -> u64 {
    5
}

impl LdapConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if !(self.url.starts_with("ldap://") || self.url.starts_with("ldaps://")) {
            return Err(ConfigError::new(
                "staff_ldap.url",
                "must start with ldap:// or ldaps://",
            ));
        }
        if self.base_dn.trim().is_empty() {
            return Err(ConfigError::new("staff_ldap.base_dn", "must be set"));
        }
        for (key, filter) in [
            ("staff_ldap.user_filter", &self.user_filter),
            ("staff_ldap.group_filter", &self.group_filter),
        ] {
            if !filter.contains("{login}") {
                return Err(ConfigError::new(key, "must contain {login}"));
            }
        }
        if self.timeout_secs == 0 {
            return Err(ConfigError::new(
                "staff_ldap.timeout_secs",
                "must be at least 1",
            ));
        }
        Ok(())
    }
}

/// `[core.cluster]`: core replicas sharing one database, with NATS carrying news between them.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// NATS server(s), comma-separated (`nats://host:4222`); empty: this core is alone.
    pub nats_url: String,
    /// This replica's name on the bus and in logs; empty: made up at start (unique per run).
    pub replica: String,
    /// Subjects are `<prefix>.messages`, `.presence`, `.admins`: deployments sharing one NATS
    /// use different prefixes.
    pub subject_prefix: String,
    /// A replica not heard from for this long is gone, and the visitors online only through
    /// it go offline everywhere. Heartbeats go out every quarter of it.
    pub presence_timeout_secs: u64,
    /// How often the newest message id is read, to find messages no news announced (and to
    /// measure how far this replica lags the database).
    pub poll_interval_ms: u64,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            nats_url: String::new(),
            replica: String::new(),
            subject_prefix: "socketgram".into(),
            presence_timeout_secs: 10,
            poll_interval_ms: 1_000,
        }
    }
}

impl ClusterConfig {
    /// Whether replicas are configured.
    pub fn enabled(&self) -> bool {
        self.nats_urls().next().is_some()
    }

    /// The NATS URLs.
    pub fn nats_urls(&self) -> impl Iterator<Item = &str> {
        self.nats_url
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
    }

    /// Checks every value; errors name the key relative to the `[core]` section.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for url in self.nats_urls() {
            url.parse::<async_nats::ServerAddr>().map_err(|e| {
                ConfigError::new(
                    "cluster.nats_url",
                    format!("{url:?} is not a NATS URL: {e}"),
                )
            })?;
        }
        let prefix_ok = !self.subject_prefix.is_empty()
            && self.subject_prefix.split('.').all(|t| {
                !t.is_empty()
                    && t.chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            });
        if !prefix_ok {
            return Err(ConfigError::new(
                "cluster.subject_prefix",
                "must be NATS subject tokens (letters, digits, _ or -) joined by dots",
            ));
        }
        if self.presence_timeout_secs < 2 {
            return Err(ConfigError::new(
                "cluster.presence_timeout_secs",
                "must be at least 2",
            ));
        }
        if !(10..=60_000).contains(&self.poll_interval_ms) {
            return Err(ConfigError::new(
                "cluster.poll_interval_ms",
                "must be between 10 and 60000",
            ));
        }
        Ok(())
    }

    /// This replica's name: the configured one, or one made up for this run.
    pub fn replica_name(&self) -> String {
        if self.replica.is_empty() {
            format!("core-{}-{:08x}", std::process::id(), rand::random::<u32>())
        } else {
            self.replica.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster(nats_url: &str, database: &str) -> CoreConfig {
        let mut config = CoreConfig::default();
        config.cluster.nats_url = nats_url.into();
        config.database.url = Secret::new(database);
        config
    }

    #[test]
    fn a_cluster_needs_nats_urls_a_prefix_and_a_shared_database() {
        let mysql = "mysql://chat@127.0.0.1/chat";
        cluster("nats://127.0.0.1:4222, nats://10.0.0.2:4222", mysql)
            .validate()
            .expect("two NATS servers");
        assert!(!cluster("", mysql).cluster.enabled(), "no URL: alone");
        let refused = |config: CoreConfig, key: &str| {
            let e = config.validate().expect_err("refused");
            assert_eq!(e.key, key, "{e}");
        };
        refused(cluster("http://[::1", mysql), "cluster.nats_url");
        refused(
            cluster("nats://127.0.0.1:4222", "sqlite://chat.db"),
            "cluster.nats_url",
        );
        let mut prefix = cluster("nats://127.0.0.1:4222", mysql);
        prefix.cluster.subject_prefix = "chat.>".into();
        refused(prefix, "cluster.subject_prefix");
        let mut timeout = cluster("nats://127.0.0.1:4222", mysql);
        timeout.cluster.presence_timeout_secs = 1;
        refused(timeout, "cluster.presence_timeout_secs");
        let mut poll = cluster("nats://127.0.0.1:4222", mysql);
        poll.cluster.poll_interval_ms = 0;
        refused(poll, "cluster.poll_interval_ms");
    }

    #[test]
    fn auto_assignment_needs_room_for_one_conversation() {
        let mut config = CoreConfig {
            auto_assign: true,
            auto_assign_max_open: 0,
            ..CoreConfig::default()
        };
        let e = config.validate().expect_err("refused");
        assert_eq!(e.key, "auto_assign_max_open", "{e}");
        config.auto_assign_max_open = 1;
        config.validate().expect("one is enough");
    }

    #[test]
    fn a_sign_in_lasts_between_a_second_and_thirty_days() {
        for bad in [0, 30 * 24 * 3600 + 1] {
            let config = CoreConfig {
                staff_session_ttl_secs: bad,
                ..CoreConfig::default()
            };
            let e = config.validate().expect_err("refused");
            assert_eq!(e.key, "staff_session_ttl_secs", "{e}");
        }
        for good in [1, 30 * 24 * 3600] {
            let config = CoreConfig {
                staff_session_ttl_secs: good,
                ..CoreConfig::default()
            };
            config.validate().expect("accepted");
        }
    }

    #[test]
    fn a_telegram_link_lasts_between_ten_seconds_and_an_hour() {
        assert_eq!(CoreConfig::default().telegram_link_ttl_secs, 600);
        for (ttl, ok) in [(9, false), (10, true), (3600, true), (3601, false)] {
            let config = CoreConfig {
                telegram_link_ttl_secs: ttl,
                ..CoreConfig::default()
            };
            match config.validate() {
                Ok(()) => assert!(ok, "{ttl} accepted"),
                Err(e) => {
                    assert!(!ok, "{ttl} refused: {e}");
                    assert_eq!(e.key, "telegram_link_ttl_secs", "{e}");
                }
            }
        }
    }

    #[test]
    fn a_directory_needs_an_ldap_url_a_base_and_the_login_in_its_filters() {
        let ldap = LdapConfig {
            url: "ldap://127.0.0.1:389".into(),
            bind_dn: String::new(),
            bind_password: Secret::default(),
            base_dn: "ou=people,dc=example,dc=com".into(),
            user_filter: default_user_filter(),
            group_dn: String::new(),
            group_filter: default_group_filter(),
            timeout_secs: 5,
        };
        let with = |ldap: LdapConfig| CoreConfig {
            staff_ldap: Some(ldap),
            ..CoreConfig::default()
        };
        with(ldap.clone()).validate().expect("accepted");
        for (broken, key) in [
            (
                LdapConfig {
                    url: "http://x".into(),
                    ..ldap.clone()
                },
                "staff_ldap.url",
            ),
            (
                LdapConfig {
                    base_dn: " ".into(),
                    ..ldap.clone()
                },
                "staff_ldap.base_dn",
            ),
            (
                LdapConfig {
                    user_filter: "(uid=*)".into(),
                    ..ldap.clone()
                },
                "staff_ldap.user_filter",
            ),
            (
                LdapConfig {
                    group_filter: "(cn=x)".into(),
                    ..ldap.clone()
                },
                "staff_ldap.group_filter",
            ),
            (
                LdapConfig {
                    timeout_secs: 0,
                    ..ldap.clone()
                },
                "staff_ldap.timeout_secs",
            ),
        ] {
            let e = with(broken).validate().expect_err("refused");
            assert_eq!(e.key, key, "{e}");
        }
    }
}
