//! `[web]` of the configuration: the HTTP listener browsers connect to, visitor tokens, the
//! demo page, the reverse proxies trusted to name the client, the Telegram bot the widget
//! offers, and the limits that protect the edge.

use serde::{Deserialize, Serialize};
use socketgram_common::{ConfigError, Secret, TlsConfig};

use crate::client_addr::TrustedProxies;

/// The web listener (legacy http/https, port, key and certificate paths).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct WebConfig {
    /// Address to listen on.
    pub listen: String,
    /// HTTPS with these PEM files; plain HTTP when absent.
    pub tls: Option<TlsConfig>,
    /// Key that signs visitor and admin tokens (`v1.` / `a1.` tokens; the host site mints
    /// them with the same key, or with `socketgram token`). Empty: a random key of each run,
    /// which nobody else has (so no token from elsewhere is accepted).
    pub token_secret: Secret,
    /// Serve `/demo`, a page that issues visitor tokens to anyone: development only.
    pub demo: bool,
    /// Serve the operator console at `/console/` (and send `/` there): support staff sign in
    /// with their passwords (`socketgram admin passwd`) and answer from the browser.
    pub console: bool,
    /// Serve the core's gRPC API (gRPC-web for browsers) on this listener too.
    pub grpc_web: bool,
    /// Reverse proxies (addresses and CIDR networks) whose `X-Forwarded-For` / `Forwarded`
    /// headers name the client: behind a proxy every connection comes from the proxy, and
    /// without this the limits would count all visitors as one client.
    pub trusted_proxies: Vec<String>,
    /// The address browsers reach this server at (`https://chat.example.com`), for the links
    /// to files in the legacy pages' messages (they show text only, so the link must be whole).
    /// Empty: `http(s)://<listen address>`, right only when browsers reach the listener
    /// directly. Socketgram's own pages get paths and need no setting.
    pub public_url: String,
    /// How long a link to a file that a message shows stays valid, in seconds (a page shown
    /// again gets new links).
    pub file_link_ttl_secs: u64,
    /// The Telegram bot's username (without `@`) the widget offers with "Continue in
    /// Telegram": a one-time link that connects the visitor's Telegram to its conversation,
    /// no password typed. Empty: `socketgram serve` fills it in from Telegram when the bot's
    /// token is configured; otherwise the widget shows no such button.
    pub telegram_bot: String,
    pub limits: Limits,
}

/// What one client may do.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Events one socket may send per second (sustained)...
    pub events_per_second: u32,
    /// ...and in a burst.
    pub events_burst: u32,
    /// Events all sockets of one IP address may send per second (sustained)...
    pub ip_events_per_second: u32,
    /// ...and in a burst.
    pub ip_events_burst: u32,
    /// `typing` events one socket may send per second (sustained), a budget of their own:
    /// keystrokes never use up the budget of messages...
    pub typing_per_second: u32,
    /// ...and in a burst.
    pub typing_burst: u32,
    /// Open sockets per IP address.
    pub connections_per_ip: u32,
    /// Open TCP connections per IP address, counted before anything is read (trusted proxies
    /// are not counted).
    pub http_connections_per_ip: u32,
    /// Of those, connections that have neither sent a complete request head nor authenticated
    /// a socket: what a client can make the edge hold before showing who it is.
    pub unauthenticated_per_ip: u32,
    /// Seconds a connection has to send each request head (a kept-alive one: to start the
    /// next), to finish a TLS handshake, and, for a WebSocket, to authenticate its socket.
    pub handshake_timeout_secs: u64,
    /// Largest Socket.IO packet accepted, in bytes; a larger one closes the connection.
    /// Messages over the text limit but under this get a clear `chat error` instead.
    pub max_packet_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            events_per_second: 10,
            events_burst: 30,
            ip_events_per_second: 100,
            ip_events_burst: 300,
            typing_per_second: 10,
            typing_burst: 20,
            connections_per_ip: 200,
            // A socket is one connection (WebSocket) or two (long polling); pages fetch
            // scripts too.
            http_connections_per_ip: 512,
            unauthenticated_per_ip: 64,
            handshake_timeout_secs: 10,
            max_packet_bytes: 1 << 20,
        }
    }
}

impl Default for WebConfig {
    fn default() -> Self {
        Self {
            listen: "0.0.0.0:3000".into(),
            tls: None,
            token_secret: Secret::default(),
            demo: false,
            console: true,
            grpc_web: true,
            trusted_proxies: Vec::new(),
            public_url: String::new(),
            file_link_ttl_secs: 24 * 3600,
            telegram_bot: String::new(),
            limits: Limits::default(),
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
            tls.read("web")?;
        }
        TrustedProxies::parse(&self.trusted_proxies)
            .map_err(|e| ConfigError::new("web.trusted_proxies", e.to_string()))?;
        if self.demo && self.token_secret.is_empty() {
            return Err(ConfigError::new(
                "web.token_secret",
                "the demo page issues visitor tokens: set a token secret",
            ));
        }
        if !self.public_url.is_empty() {
            let url = url::Url::parse(&self.public_url).map_err(|e| {
                ConfigError::new("web.public_url", format!("{:?}: {e}", self.public_url))
            })?;
            if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
                return Err(ConfigError::new(
                    "web.public_url",
                    "must be an http:// or https:// address, e.g. https://chat.example.com",
                ));
            }
        }
        if !(60..=30 * 24 * 3600).contains(&self.file_link_ttl_secs) {
            return Err(ConfigError::new(
                "web.file_link_ttl_secs",
                "must be between 60 and 2592000 (30 days)",
            ));
        }
        if !self.telegram_bot.is_empty() {
            crate::telegram::check_username(&self.telegram_bot)
                .map_err(|e| ConfigError::new("web.telegram_bot", e))?;
        }
        let l = &self.limits;
        for (key, value) in [
            ("web.limits.events_per_second", l.events_per_second),
            ("web.limits.events_burst", l.events_burst),
            ("web.limits.ip_events_per_second", l.ip_events_per_second),
            ("web.limits.ip_events_burst", l.ip_events_burst),
            ("web.limits.typing_per_second", l.typing_per_second),
            ("web.limits.typing_burst", l.typing_burst),
            ("web.limits.connections_per_ip", l.connections_per_ip),
            (
                "web.limits.http_connections_per_ip",
                l.http_connections_per_ip,
            ),
            (
                "web.limits.unauthenticated_per_ip",
                l.unauthenticated_per_ip,
            ),
        ] {
            if value == 0 {
                return Err(ConfigError::new(key, "must be at least 1"));
            }
        }
        if !(1..=300).contains(&l.handshake_timeout_secs) {
            return Err(ConfigError::new(
                "web.limits.handshake_timeout_secs",
                "must be between 1 and 300",
            ));
        }
        if l.max_packet_bytes < 64 * 1024 {
            return Err(ConfigError::new(
                "web.limits.max_packet_bytes",
                "must be at least 65536: a 10,000-character message must fit",
            ));
        }
        Ok(())
    }
}
