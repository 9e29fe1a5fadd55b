//! `[web]` of the configuration: the HTTP listener browsers connect to.

use serde::Deserialize;
use socketgram_core::{config::ConfigError, server::TlsConfig};

/// The web listener (legacy http/https, port, key and certificate paths).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct WebConfig {
    /// Address to listen on.
    pub listen: String,
    /// HTTPS with these PEM files; plain HTTP when absent.
    pub tls: Option<TlsConfig>,
}

impl Default for WebConfig {
    fn default() -> Self {
        Self {
            listen: "0.0.0.0:3000".into(),
            tls: None,
        }
    }
}

impl WebConfig {
    /// Checks every value; errors name the key under `[web]`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.listen
            .parse::<std::net::SocketAddr>()
            .map_err(|e| ConfigError::new("web.listen", format!("{:?}: {e}", self.listen)))?;
        if let Some(tls) = &self.tls {
            tls.identity("web")?;
        }
        Ok(())
    }
}
