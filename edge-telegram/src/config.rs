//! `[telegram]` and `[credentials]` of the configuration (LEGACY.md §5, §7, §8).

use serde::Deserialize;
use socketgram_core::config::{ConfigError, Secret};

/// How the bot receives updates.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum UpdateMode {
    #[default]
    Polling,
    Webhook,
}

/// Language of the bot's texts.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Language {
    #[default]
    En,
    Ru,
}

/// `[telegram]`: the bot. No token, no bot.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct TelegramConfig {
    /// The bot token from @BotFather; empty turns the Telegram edge off.
    pub token: Secret,
    pub mode: UpdateMode,
    /// Public HTTPS URL Telegram calls in webhook mode (its path is served by the web edge).
    pub webhook_url: Option<String>,
    /// Bot API server; the official one by default.
    pub api_url: String,
    pub language: Language,
    /// Sent for "contacts" (HTML).
    pub contacts_html: String,
}

impl Default for TelegramConfig {
    fn default() -> Self {
        Self {
            token: Secret::default(),
            mode: UpdateMode::Polling,
            webhook_url: None,
            api_url: "https://api.telegram.org".into(),
            language: Language::En,
            contacts_html: String::new(),
        }
    }
}

impl TelegramConfig {
    /// Whether a bot is configured.
    pub fn enabled(&self) -> bool {
        !self.token.is_empty()
    }

    /// Checks every value; errors name the key under `[telegram]`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        url::Url::parse(&self.api_url).map_err(|e| {
            ConfigError::new("telegram.api_url", format!("{:?}: {e}", self.api_url))
        })?;
        if self.enabled() && self.mode == UpdateMode::Webhook {
            let Some(webhook) = &self.webhook_url else {
                return Err(ConfigError::new(
                    "telegram.webhook_url",
                    "webhook mode needs the public https:// URL Telegram should call",
                ));
            };
            let parsed = url::Url::parse(webhook).map_err(|e| {
                ConfigError::new("telegram.webhook_url", format!("{webhook:?}: {e}"))
            })?;
            if parsed.scheme() != "https" {
                return Err(ConfigError::new(
                    "telegram.webhook_url",
                    "Telegram only calls https:// webhooks",
                ));
            }
        }
        Ok(())
    }
}

/// How `users.password` (or the external database's password) is hashed.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum PasswordHash {
    #[default]
    Md5,
    Sha1,
    Sha256,
    /// Stored as typed.
    None,
}

/// `[credentials]`: how visitors log in from Telegram (login `id<cid>` and password).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct CredentialsConfig {
    pub password_hash: PasswordHash,
    /// Check against another database instead of the chat's `users` table.
    pub external: Option<ExternalCredentials>,
}

impl Default for CredentialsConfig {
    fn default() -> Self {
        Self {
            password_hash: PasswordHash::Md5,
            external: None,
        }
    }
}

/// The "another db" variant (LEGACY.md §5).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ExternalCredentials {
    /// Database URL (mysql://, postgres://, sqlite://).
    pub url: Secret,
    /// Query taking (login, hashed password) and returning a count column `col` and `id`.
    pub query: String,
}

impl CredentialsConfig {
    /// Checks every value; errors name the key under `[credentials]`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(external) = &self.external {
            socketgram_core::store::Backend::from_url(external.url.expose())
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
