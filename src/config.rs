//! The one configuration of the `socketgram` binary: defaults, then a TOML file, then
//! environment variables (`SOCKETGRAM_<SECTION>__<KEY>`, `__` between nested keys, e.g.
//! `SOCKETGRAM_CORE__DATABASE__URL`). `socketgram config example` prints every key.

use std::path::Path;

use figment::{
    Figment,
    providers::{Env, Format, Toml},
};
use serde::Deserialize;
use socketgram_admin_php_compat::config::LegacyConfig;
use socketgram_core::{
    config::{ConfigError, CoreConfig},
    server::GrpcConfig,
};
use socketgram_edge_telegram::config::TelegramConfig;
use socketgram_edge_web::config::WebConfig;

/// The documented example: every key with its default or a typical value.
pub const EXAMPLE: &str = include_str!("../socketgram.example.toml");

/// Everything the binary reads.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub core: CoreConfig,
    pub grpc: GrpcConfig,
    pub web: WebConfig,
    pub legacy: LegacyConfig,
    pub telegram: TelegramConfig,
    pub log: LogConfig,
    /// Seconds given to calls in flight after SIGTERM / Ctrl-C before the process exits anyway.
    pub shutdown_timeout_secs: u64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            core: CoreConfig::default(),
            grpc: GrpcConfig::default(),
            web: WebConfig::default(),
            legacy: LegacyConfig::default(),
            telegram: TelegramConfig::default(),
            log: LogConfig::default(),
            shutdown_timeout_secs: 10,
        }
    }
}

/// `[log]`.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `tracing` filter (`RUST_LOG` syntax); `RUST_LOG` wins when set.
    pub filter: String,
    /// Lines as JSON instead of text.
    pub json: bool,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            filter: "info".into(),
            json: false,
        }
    }
}

/// Why the configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// Unreadable file, TOML syntax, unknown key or wrong type (figment names the key).
    #[error("{0}")]
    Parse(#[from] Box<figment::Error>),
    /// A value out of range.
    #[error(transparent)]
    Invalid(#[from] ConfigError),
}

impl Config {
    /// Loads defaults <- `file` (when given; it must exist) <- environment, then validates.
    pub fn load(file: Option<&Path>) -> Result<Self, LoadError> {
        Self::from_figment(Self::figment(file))
    }

    /// The layered sources, for `load` and tests.
    pub fn figment(file: Option<&Path>) -> Figment {
        let mut figment = Figment::new();
        if let Some(file) = file {
            figment = figment.merge(Toml::file_exact(file));
        }
        // SOCKETGRAM_CONFIG names the file; SOCKETGRAM_TEST_* and SOCKETGRAM_BIN belong to the
        // test suite, which runs this binary with its own environment.
        figment.merge(
            Env::prefixed("SOCKETGRAM_")
                .filter(|key| {
                    key != "config"
                        && key != "bin"
                        && !key.as_str().to_ascii_lowercase().starts_with("test_")
                })
                .split("__"),
        )
    }

    /// Extracts and validates.
    pub fn from_figment(figment: Figment) -> Result<Self, LoadError> {
        let config: Config = figment.extract().map_err(Box::new)?;
        config.validate()?;
        Ok(config)
    }

    /// Checks every section; the error names the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.core
            .validate()
            .map_err(|e| ConfigError::new(format!("core.{}", e.key), e.reason))?;
        self.grpc.validate("grpc")?;
        self.web.validate()?;
        self.legacy.validate()?;
        self.telegram.validate()?;
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.log.filter) {
            return Err(ConfigError::new("log.filter", e.to_string()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use figment::Jail;

    use super::*;

    #[test]
    fn the_example_is_valid_and_covers_every_section() {
        let parsed: Config = Figment::new()
            .merge(Toml::string(EXAMPLE))
            .extract()
            .expect("example parses");
        parsed.validate().expect("example is valid");
        assert_eq!(parsed.core.company, "Acme");
        assert!(parsed.legacy.admin_param.is_some());
        assert!(parsed.core.credentials.external.is_some());
        assert!(parsed.telegram.webhook_secret.is_some());
        assert!(parsed.grpc.tls.is_none());
        assert_eq!(parsed.web.trusted_proxies, ["127.0.0.1", "::1"]);
    }

    #[test]
    #[allow(
        clippy::result_large_err,
        reason = "figment::Jail's closure type is figment's"
    )]
    fn environment_overrides_the_file() {
        Jail::expect_with(|jail| {
            jail.create_file(
                "chat.toml",
                "[core]\ncompany = \"FromFile\"\ngmt_offset_hours = 3\n",
            )?;
            jail.set_env("SOCKETGRAM_CORE__COMPANY", "FromEnv");
            // The test suite's own variables are not configuration.
            jail.set_env("SOCKETGRAM_TEST_MYSQL_URL", "mysql://root@127.0.0.1/test");
            jail.set_env("SOCKETGRAM_BIN", "/usr/bin/false");
            jail.set_env("SOCKETGRAM_CORE__DATABASE__URL", "postgres://db/chat");
            let config = Config::load(Some(Path::new("chat.toml"))).expect("loads");
            assert_eq!(config.core.company, "FromEnv");
            assert_eq!(config.core.gmt_offset_hours, 3.0);
            assert_eq!(config.core.database.url.expose(), "postgres://db/chat");
            Ok(())
        });
    }

    #[test]
    fn errors_name_the_key() {
        let cases = [
            ("[core]\ngmt_offset_hours = 40\n", "core.gmt_offset_hours"),
            (
                "[core]\nmax_message_chars = 20000\n",
                "core.max_message_chars",
            ),
            (
                "[core.database]\nurl = \"oracle://x\"\n",
                "core.database.url",
            ),
            ("[grpc]\nlisten = \"nowhere\"\n", "grpc.listen"),
            (
                "[web]\ntrusted_proxies = [\"127.0.0.1\", \"nginx\"]\n",
                "web.trusted_proxies",
            ),
            (
                "[web]\ntrusted_proxies = [\"10.0.0.0/40\"]\n",
                "web.trusted_proxies",
            ),
            ("[core]\ncompnay = \"typo\"\n", "compnay"),
            ("[core]\ngmt_offset_hours = \"three\"\n", "gmt_offset_hours"),
            (
                "[telegram]\ntoken = \"1:x\"\nmode = \"webhook\"\n",
                "telegram.webhook_url",
            ),
            ("[telegram]\nmode = \"carrier-pigeon\"\n", "mode"),
            ("[legacy]\nroom_hash = \"crc32\"\n", "room_hash"),
            (
                "[legacy.admin_param]\nname = \"adminpass\"\nvalue = \"\"\n",
                "legacy.admin_param.value",
            ),
            (
                "[core.credentials.external]\nurl = \"mysql://x/y\"\nquery = \"SELECT 1\"\n",
                "core.credentials.external.query",
            ),
            (
                "[core.credentials]\npassword_hash = \"bcrypt\"\n",
                "password_hash",
            ),
            (
                "[telegram]\ntoken = \"1:x\"\nmode = \"webhook\"\nwebhook_url = \"http://chat.example.com\"\n",
                "telegram.webhook_url",
            ),
            ("[telegram]\ntoken = \"no-colon\"\n", "telegram.token"),
            (
                "[telegram]\nwebhook_listen = \"nowhere\"\n",
                "telegram.webhook_listen",
            ),
            (
                "[telegram]\nwebhook_path = \"bot\"\n",
                "telegram.webhook_path",
            ),
            (
                "[telegram]\nwebhook_secret = \"has space\"\n",
                "telegram.webhook_secret",
            ),
            (
                "[telegram.limits]\nper_chat_per_second = 0\n",
                "telegram.limits.per_chat_per_second",
            ),
        ];
        for (toml, key) in cases {
            let err = Config::from_figment(Figment::new().merge(Toml::string(toml))).unwrap_err();
            assert!(err.to_string().contains(key), "{toml:?}: {err}");
        }
    }
}
