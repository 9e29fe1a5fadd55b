//! The one configuration of the `socketgram` binary: defaults, then a TOML file, then
//! environment variables (`SOCKETGRAM_<SECTION>__<KEY>`, `__` between nested keys, e.g.
//! `SOCKETGRAM_CORE__DATABASE__URL`). `socketgram config example` prints every key.

use std::path::Path;

use figment::{
    Figment,
    providers::{Env, Format, Toml},
};
use serde::{Deserialize, Serialize};
use socketgram_admin_php_compat::config::LegacyConfig;
use socketgram_core::{
    config::{ConfigError, CoreConfig, Secret},
    server::GrpcConfig,
};
use socketgram_edge_telegram::config::TelegramConfig;
use socketgram_edge_web::config::WebConfig;

/// The documented example: every key with its default or a typical value.
pub const EXAMPLE: &str = include_str!("../socketgram.example.toml");

/// Everything the binary reads.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub core: CoreConfig,
    pub grpc: GrpcConfig,
    pub web: WebConfig,
    pub legacy: LegacyConfig,
    pub telegram: TelegramConfig,
    pub edge: EdgeConfig,
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
            edge: EdgeConfig::default(),
            log: LogConfig::default(),
            shutdown_timeout_secs: 10,
        }
    }
}

/// `[log]`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
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

/// `[edge]`: how an edge running in a process of its own (`socketgram edge-web`,
/// `socketgram edge-telegram`) reaches the core replicas.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct EdgeConfig {
    /// The cores' gRPC URLs; the edge uses one and moves on to the next when it goes away.
    /// `--core URL[,URL...]` on the command line replaces the list.
    pub core: Vec<String>,
    /// A bearer token the cores accept (one of their `grpc.tokens`).
    pub token: Secret,
}

impl Default for EdgeConfig {
    fn default() -> Self {
        Self {
            core: vec!["http://127.0.0.1:50051".into()],
            token: Secret::default(),
        }
    }
}

impl EdgeConfig {
    /// Checks every value; errors name the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.core.is_empty() {
            return Err(ConfigError::new("edge.core", "name at least one core URL"));
        }
        for url in &self.core {
            let parsed = url::Url::parse(url)
                .map_err(|e| ConfigError::new("edge.core", format!("{url:?}: {e}")))?;
            if !matches!(parsed.scheme(), "http" | "https") || parsed.host().is_none() {
                return Err(ConfigError::new(
                    "edge.core",
                    format!("{url:?}: a core URL is http://host:port or https://host:port"),
                ));
            }
        }
        Ok(())
    }
}

/// What a process runs: which sections it reads and must have right.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Role {
    /// Everything in one process.
    Serve,
    /// The gRPC core alone (one replica of several, with `[core.cluster]`).
    Core,
    /// The web edge alone, calling the cores of `[edge] core`.
    EdgeWeb,
    /// The Telegram edge alone, calling the cores of `[edge] core`.
    EdgeTelegram,
}

/// Why the configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// Unreadable file, TOML syntax, unknown key or wrong type, one line per problem, each
    /// naming the key as it is written in the file.
    #[error("{}", describe(.0))]
    Parse(#[from] Box<figment::Error>),
    /// A value out of range.
    #[error(transparent)]
    Invalid(#[from] ConfigError),
}

/// figment's own text names keys with its profile (`default.core.x`) and quotes serde's
/// already quoted lists again; this says each problem in the file's terms.
fn describe(errors: &figment::Error) -> String {
    use figment::error::Kind;
    let lines: Vec<String> = errors
        .clone()
        .into_iter()
        .map(|e| {
            let key = e.path.join(".");
            let problem = match &e.kind {
                Kind::UnknownField(field, expected) => {
                    // The path names the unknown key itself, unless figment left it out.
                    let full = if key.is_empty() {
                        field.clone()
                    } else if key == *field || key.ends_with(&format!(".{field}")) {
                        key.clone()
                    } else {
                        format!("{key}.{field}")
                    };
                    return format!(
                        "unknown key `{full}`{}; known keys here: {}",
                        source(&e),
                        expected.join(", ")
                    );
                }
                Kind::UnknownVariant(value, expected) => {
                    format!("unknown value {value:?}; one of: {}", expected.join(", "))
                }
                Kind::InvalidType(actual, expected) | Kind::InvalidValue(actual, expected) => {
                    format!("expected {expected}, found {actual}")
                }
                other => other.to_string(),
            };
            if key.is_empty() {
                format!("{problem}{}", source(&e))
            } else {
                format!("`{key}`{}: {problem}", source(&e))
            }
        })
        .collect();
    lines.join("\n")
}

/// Where a value came from (a file, an environment variable), when figment knows.
fn source(e: &figment::Error) -> String {
    e.metadata
        .as_ref()
        .map(|m| match &m.source {
            Some(source) => format!(" (in {source})"),
            None => format!(" (in {})", m.name),
        })
        .unwrap_or_default()
}

/// The example configuration's placeholders for secrets start with this: they are public, so
/// a server must never run with one.
const EXAMPLE_SECRET: &str = "change-me";

impl Config {
    /// Refuses secrets still holding the documented example's public placeholder.
    fn refuse_example_secrets(&self) -> Result<(), ConfigError> {
        let mut secrets = vec![
            ("legacy.secret", Some(&self.legacy.secret)),
            ("web.token_secret", Some(&self.web.token_secret)),
            (
                "telegram.webhook_secret",
                self.telegram.webhook_secret.as_ref(),
            ),
            (
                "legacy.admin_param.value",
                self.legacy.admin_param.as_ref().map(|p| &p.value),
            ),
            (
                "core.staff_ldap.bind_password",
                self.core.staff_ldap.as_ref().map(|l| &l.bind_password),
            ),
        ];
        secrets.extend(self.grpc.tokens.iter().map(|t| ("grpc.tokens", Some(t))));
        for (key, secret) in secrets {
            if secret.is_some_and(|s| s.expose().starts_with(EXAMPLE_SECRET)) {
                return Err(ConfigError::new(
                    key,
                    "is still the example value: set a secret of your own (e.g. `openssl rand -hex 32`)",
                ));
            }
        }
        Ok(())
    }

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
        // First: a public placeholder is the one mistake every other check could hide.
        self.refuse_example_secrets()?;
        self.core
            .validate()
            .map_err(|e| ConfigError::new(format!("core.{}", e.key), e.reason))?;
        self.grpc.validate("grpc")?;
        self.web.validate()?;
        self.legacy.validate()?;
        self.telegram.validate()?;
        self.edge.validate()?;
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.log.filter) {
            return Err(ConfigError::new("log.filter", e.to_string()));
        }
        Ok(())
    }

    /// What `role` needs beyond [`Config::validate`]: the sections it reads must be usable
    /// for it, not merely well-formed.
    pub fn validate_role(&self, role: Role) -> Result<(), ConfigError> {
        match role {
            Role::Serve | Role::Core => Ok(()),
            Role::EdgeWeb | Role::EdgeTelegram => {
                if self.edge.token.is_empty() {
                    return Err(ConfigError::new(
                        "edge.token",
                        "an edge in its own process calls the cores with a token they accept \
                         (one of their grpc.tokens)",
                    ));
                }
                if role == Role::EdgeTelegram && !self.telegram.enabled() {
                    return Err(ConfigError::new(
                        "telegram.token",
                        "edge-telegram needs the bot's token",
                    ));
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use figment::Jail;
    use socketgram_admin_php_compat::config::AdminParam;
    use socketgram_core::config::Secret;

    use super::*;

    /// The example with every commented-out `key = value` line and `[section]` header
    /// switched on.
    fn example_uncommented() -> String {
        EXAMPLE
            .lines()
            .map(|line| match line.strip_prefix("# ") {
                Some(rest)
                    if rest.starts_with('[')
                        || rest.split_once(" = ").is_some_and(|(key, _)| {
                            !key.is_empty()
                                && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                        }) =>
                {
                    rest
                }
                _ => line,
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn the_example_runs_as_it_is_with_nothing_made_up_switched_on() {
        let parsed: Config = Figment::new()
            .merge(Toml::string(EXAMPLE))
            .extract()
            .expect("example parses");
        parsed.validate().expect("example is valid as it is");
        assert_eq!(parsed.core.company, "Acme");
        // Switched on only by the operator: another database, public placeholder secrets.
        assert!(parsed.core.credentials.external.is_none());
        assert!(parsed.legacy.admin_param.is_none());
        assert!(parsed.web.token_secret.is_empty());
        assert!(parsed.grpc.tokens.is_empty());
        assert!(parsed.telegram.webhook_secret.is_none());
        assert_eq!(parsed.web.trusted_proxies, ["127.0.0.1", "::1"]);
    }

    #[test]
    fn the_examples_commented_keys_are_real_and_their_placeholders_refused() {
        let all = example_uncommented();
        let parsed: Config = Figment::new()
            .merge(Toml::string(&all))
            .extract()
            .expect("every commented-out key of the example is a real key");
        assert!(parsed.core.credentials.external.is_some());
        assert!(parsed.legacy.admin_param.is_some());
        assert!(parsed.grpc.tls.is_some() && parsed.web.tls.is_some());
        let err = parsed.validate().expect_err("placeholders are refused");
        assert!(err.to_string().contains("example value"), "{err}");
        for key in [
            "legacy.secret",
            "web.token_secret",
            "telegram.webhook_secret",
            "legacy.admin_param.value",
            "grpc.tokens",
        ] {
            let mut config = Config::default();
            let placeholder = Secret::new("change-me-please");
            match key {
                "legacy.secret" => config.legacy.secret = placeholder,
                "web.token_secret" => config.web.token_secret = placeholder,
                "telegram.webhook_secret" => config.telegram.webhook_secret = Some(placeholder),
                "legacy.admin_param.value" => {
                    config.legacy.admin_param = Some(AdminParam {
                        name: "admin".into(),
                        value: placeholder,
                    });
                }
                _ => config.grpc.tokens = vec![placeholder],
            }
            let err = config.validate().expect_err(key);
            assert_eq!(err.key, key);
        }
    }

    #[test]
    fn printed_configuration_hides_secrets_only_and_reads_back() {
        let mut config = Config::default();
        config.web.token_secret = Secret::new("s3cret-token");
        config.grpc.tokens = vec![Secret::new("backend-token")];
        config.core.database.url = Secret::new("mysql://chat:hunter2@db.example.com/chat");
        let printed = toml::to_string_pretty(&config).expect("serializes");
        assert!(!printed.contains("s3cret") && !printed.contains("backend-token"));
        assert!(!printed.contains("hunter2"), "{printed}");
        assert!(
            printed.contains("mysql://chat:***@db.example.com/chat"),
            "{printed}"
        );
        assert!(printed.contains("company = "), "{printed}");
        let back: Config = Figment::new()
            .merge(Toml::string(&printed))
            .extract()
            .expect("the printed configuration is a configuration");
        assert_eq!(back.core.max_message_chars, config.core.max_message_chars);
        assert_eq!(back.web.limits, config.web.limits);
    }

    #[test]
    fn parse_errors_name_the_key_as_written() {
        let err = Config::from_figment(
            Figment::new().merge(Toml::string("[core]\ngmt_offset_hours = \"three\"\n")),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("`core.gmt_offset_hours`"), "{err}");
        assert!(!err.contains("default."), "{err}");
        let err = Config::from_figment(Figment::new().merge(Toml::string("[core]\ncompnay = 1\n")))
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown key `core.compnay`"), "{err}");
        assert!(!err.contains("``"), "{err}");
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
            ("[web]\ntelegram_bot = \"@AcmeBot\"\n", "web.telegram_bot"),
            (
                "[web]\ntelegram_bot = \"t.me/AcmeBot\"\n",
                "web.telegram_bot",
            ),
            (
                "[core]\ntelegram_link_ttl_secs = 0\n",
                "core.telegram_link_ttl_secs",
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
