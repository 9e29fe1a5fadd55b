//! The legacy settings shared with the host site and the PHP admin (LEGACY.md §8): they must
//! hold the same values there and here.

use serde::{Deserialize, Serialize};
use socketgram_common::{ConfigError, Secret};

use crate::room::HashKind;

/// `[legacy]` of the configuration.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct LegacyConfig {
    /// The secret in `HASH("id" + cid + SECRET)` (legacy `secret`, PHP `SECRET_KEY`).
    pub secret: Secret,
    /// The hash of visitor room names (legacy room hash type, PHP `HASHTYPE`).
    pub room_hash: HashKind,
    /// The admin handshake's query parameter; `None` turns the legacy admin login off.
    pub admin_param: Option<AdminParam>,
}

/// `?<name>=<value>` in the admin's Socket.IO handshake (LEGACY.md §2).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AdminParam {
    pub name: String,
    pub value: Secret,
}

impl Default for LegacyConfig {
    fn default() -> Self {
        Self {
            secret: Secret::default(),
            room_hash: HashKind::Md5,
            admin_param: None,
        }
    }
}

impl LegacyConfig {
    /// Checks every value; errors name the key under `[legacy]`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(param) = &self.admin_param {
            if param.name.is_empty() {
                return Err(ConfigError::new(
                    "legacy.admin_param.name",
                    "must not be empty",
                ));
            }
            if param.value.is_empty() {
                return Err(ConfigError::new(
                    "legacy.admin_param.value",
                    "must not be empty (leave [legacy.admin_param] out to turn it off)",
                ));
            }
        }
        Ok(())
    }
}
