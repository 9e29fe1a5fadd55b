//! `[telegram]` of the configuration (LEGACY.md §7, §8): the bot token, how updates arrive
//! (long polling or webhook), the Bot API server, the language, Telegram's flood limits, the
//! delivery lease and the staff chat.
//! Visitors' credentials are the core's business (`[core.credentials]`).

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};
use socketgram_common::{ConfigError, Secret};

/// The official Bot API server.
pub const OFFICIAL_API_URL: &str = "https://api.telegram.org";

/// `delivery_lease_secs` by default: a dead deliverer's replies wait up to this long.
pub const DEFAULT_DELIVERY_LEASE_SECS: u64 = 10;
/// The longest lease the core grants (1 hour).
pub const MAX_DELIVERY_LEASE_SECS: u64 = 3600;
/// Supergroup ids are -(10^12 + the channel id): -100… in decimal. Any id above this one is a
/// user's, a basic group's, or not Telegram's.
const MAX_SUPERGROUP_ID: i64 = -1_000_000_000_000;

/// How the bot receives updates.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum UpdateMode {
    /// The bot asks Telegram (`getUpdates`): nothing public needed.
    #[default]
    Polling,
    /// Telegram calls a public HTTPS URL (`setWebhook`).
    Webhook,
}

/// Language of the bot's texts.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Language {
    #[default]
    En,
    Ru,
}

/// `[telegram]`: the bot. No token, no bot.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct TelegramConfig {
    /// The bot token from @BotFather (`<bot id>:<secret>`); empty turns the Telegram edge off.
    pub token: Secret,
    pub mode: UpdateMode,
    /// Webhook mode: the public URL Telegram calls. Without a path, [`Self::webhook_path`]
    /// is appended.
    pub webhook_url: Option<String>,
    /// The path the webhook is served on; default: the path of `webhook_url`, else
    /// `/bot<token>` (as the legacy server served it).
    pub webhook_path: Option<String>,
    /// Webhook mode: serve the webhook on a listener of its own at this address. Without it
    /// the webhook route is mounted on the caller's listener (the web edge).
    pub webhook_listen: Option<String>,
    /// The secret Telegram sends in `X-Telegram-Bot-Api-Secret-Token`; a random one per start
    /// when absent.
    pub webhook_secret: Option<Secret>,
    /// Bot API server; the official one by default (a local `telegram-bot-api` server, or the
    /// test suite's, otherwise).
    pub api_url: String,
    pub language: Language,
    /// Sent for "contacts" (HTML).
    pub contacts_html: String,
    /// Telegram's flood limits the bot keeps to.
    pub limits: Limits,
    /// How long the delivery lease runs without a renewal, in seconds: of several Telegram
    /// edges of one bot, only the holder of the lease delivers support replies; it renews
    /// every third of this, and when it dies another edge takes over after at most this long.
    pub delivery_lease_secs: u64,
    /// The staff chat: a supergroup with topics where each conversation gets a topic and
    /// staff answer (see `crate::staff`); `None`: no staff chat. A supergroup's id, as the Bot
    /// API gives it (`-100…`).
    pub staff_chat_id: Option<i64>,
}

impl Default for TelegramConfig {
    fn default() -> Self {
        Self {
            token: Secret::default(),
            mode: UpdateMode::Polling,
            webhook_url: None,
            webhook_path: None,
            webhook_listen: None,
            webhook_secret: None,
            api_url: OFFICIAL_API_URL.into(),
            language: Language::En,
            contacts_html: String::new(),
            limits: Limits::default(),
            delivery_lease_secs: DEFAULT_DELIVERY_LEASE_SECS,
            staff_chat_id: None,
        }
    }
}

/// `[telegram.limits]`: messages the bot sends, per chat and overall (Telegram's published
/// limits by default; raise them only if Telegram raised them for the bot).
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    pub per_chat_per_second: u32,
    pub per_chat_per_minute: u32,
    pub overall_per_second: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            per_chat_per_second: 1,
            per_chat_per_minute: 20,
            overall_per_second: 30,
        }
    }
}

impl TelegramConfig {
    /// Whether a bot is configured.
    pub fn enabled(&self) -> bool {
        !self.token.is_empty()
    }

    /// The numeric id at the start of the token (`<bot id>:<secret>`).
    pub fn bot_id(&self) -> Option<&str> {
        let (id, rest) = self.token.expose().split_once(':')?;
        (!id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()) && !rest.is_empty()).then_some(id)
    }

    /// The path the webhook is served on.
    pub fn webhook_path(&self) -> String {
        if let Some(path) = &self.webhook_path {
            return path.clone();
        }
        if let Some(path) = self.webhook_url_path() {
            return path;
        }
        format!("/bot{}", self.token.expose())
    }

    /// The path of `webhook_url`, when it has one beyond `/`.
    fn webhook_url_path(&self) -> Option<String> {
        let url = url::Url::parse(self.webhook_url.as_deref()?).ok()?;
        (url.path() != "/" && !url.path().is_empty()).then(|| url.path().to_owned())
    }

    /// The URL given to `setWebhook`: `webhook_url`, with the webhook path appended when it
    /// has none.
    pub fn webhook_target(&self) -> Option<url::Url> {
        let mut url = url::Url::parse(self.webhook_url.as_deref()?).ok()?;
        if self.webhook_url_path().is_none() {
            url.set_path(&self.webhook_path());
        }
        Some(url)
    }

    /// How long the delivery lease runs without a renewal.
    pub fn delivery_lease(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.delivery_lease_secs)
    }

    /// Checks every value; errors name the key under `[telegram]`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.enabled() && self.bot_id().is_none() {
            return Err(ConfigError::new(
                "telegram.token",
                "expected <bot id>:<secret>, as @BotFather gives it",
            ));
        }
        let api = url::Url::parse(&self.api_url).map_err(|e| {
            ConfigError::new("telegram.api_url", format!("{:?}: {e}", self.api_url))
        })?;
        if !matches!(api.scheme(), "http" | "https") {
            return Err(ConfigError::new(
                "telegram.api_url",
                "must be an http:// or https:// URL",
            ));
        }
        if let Some(path) = &self.webhook_path
            && !path.starts_with('/')
        {
            return Err(ConfigError::new(
                "telegram.webhook_path",
                format!("{path:?} must start with /"),
            ));
        }
        if let Some(listen) = &self.webhook_listen {
            listen.parse::<SocketAddr>().map_err(|e| {
                ConfigError::new("telegram.webhook_listen", format!("{listen:?}: {e}"))
            })?;
        }
        if let Some(secret) = &self.webhook_secret {
            let s = secret.expose();
            let allowed = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
            if s.is_empty() || s.len() > 256 || !s.chars().all(allowed) {
                return Err(ConfigError::new(
                    "telegram.webhook_secret",
                    "must be 1 to 256 characters of A-Z, a-z, 0-9, _ and - (Telegram's rule)",
                ));
            }
        }
        for (key, value) in [
            ("per_chat_per_second", self.limits.per_chat_per_second),
            ("per_chat_per_minute", self.limits.per_chat_per_minute),
            ("overall_per_second", self.limits.overall_per_second),
        ] {
            if value == 0 {
                return Err(ConfigError::new(
                    format!("telegram.limits.{key}"),
                    "must be at least 1",
                ));
            }
        }
        if !(1..=MAX_DELIVERY_LEASE_SECS).contains(&self.delivery_lease_secs) {
            return Err(ConfigError::new(
                "telegram.delivery_lease_secs",
                format!("must be 1 to {MAX_DELIVERY_LEASE_SECS} seconds"),
            ));
        }
        if let Some(id) = self.staff_chat_id
            && id > MAX_SUPERGROUP_ID
        {
            return Err(ConfigError::new(
                "telegram.staff_chat_id",
                format!(
                    "{id} is not a supergroup's id: those start with -100 (e.g. -1001234567890; \
                     a group with topics is a supergroup)"
                ),
            ));
        }
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
            // The official Bot API only calls https:// webhooks; a local Bot API server
            // (telegram-bot-api --local) also calls http:// ones.
            let official = self.api_url.trim_end_matches('/') == OFFICIAL_API_URL;
            let ok = parsed.scheme() == "https" || (parsed.scheme() == "http" && !official);
            if !ok {
                return Err(ConfigError::new(
                    "telegram.webhook_url",
                    "Telegram only calls https:// webhooks",
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bot(token: &str) -> TelegramConfig {
        TelegramConfig {
            token: Secret::new(token),
            ..TelegramConfig::default()
        }
    }

    #[test]
    fn the_bot_id_is_the_start_of_the_token() {
        assert_eq!(bot("123456:ABC-def").bot_id(), Some("123456"));
        assert_eq!(bot("123456").bot_id(), None);
        assert_eq!(bot("abc:def").bot_id(), None);
        assert_eq!(bot("123:").bot_id(), None);
    }

    #[test]
    fn webhook_paths() {
        let mut c = bot("1:x");
        assert_eq!(c.webhook_path(), "/bot1:x");
        c.webhook_url = Some("https://chat.example.com".into());
        assert_eq!(
            c.webhook_target().unwrap().as_str(),
            "https://chat.example.com/bot1:x"
        );
        c.webhook_url = Some("https://chat.example.com/tg/hook".into());
        assert_eq!(c.webhook_path(), "/tg/hook");
        assert_eq!(
            c.webhook_target().unwrap().as_str(),
            "https://chat.example.com/tg/hook"
        );
        c.webhook_path = Some("/local".into());
        c.webhook_url = Some("https://chat.example.com".into());
        assert_eq!(
            c.webhook_target().unwrap().as_str(),
            "https://chat.example.com/local"
        );
    }

    #[test]
    fn plain_http_webhooks_only_with_a_local_bot_api_server() {
        let mut c = bot("1:x");
        c.mode = UpdateMode::Webhook;
        c.webhook_url = Some("http://127.0.0.1:8443".into());
        assert_eq!(c.validate().unwrap_err().key, "telegram.webhook_url");
        c.api_url = "http://127.0.0.1:8081".into();
        c.validate()
            .expect("a local Bot API server calls http webhooks");
    }

    #[test]
    fn the_staff_chat_is_a_supergroup() {
        let mut c = bot("1:x");
        c.staff_chat_id = Some(-1_001_234_567_890);
        c.validate().expect("a supergroup's id");
        for bad in [-4_001, 5_000_000_001, 0] {
            c.staff_chat_id = Some(bad);
            assert_eq!(c.validate().unwrap_err().key, "telegram.staff_chat_id");
        }
    }

    #[test]
    fn the_delivery_lease_runs_one_second_to_one_hour() {
        let mut c = bot("1:x");
        assert_eq!(c.delivery_lease(), std::time::Duration::from_secs(10));
        c.validate().expect("the default is valid");
        for bad in [0, MAX_DELIVERY_LEASE_SECS + 1] {
            c.delivery_lease_secs = bad;
            assert_eq!(
                c.validate().unwrap_err().key,
                "telegram.delivery_lease_secs"
            );
        }
        c.delivery_lease_secs = 1;
        c.validate().expect("one second is enough for tests");
    }
}
