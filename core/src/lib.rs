//! The Socketgram core: owns conversations, messages, admins, Telegram links, presence and
//! live streams, and serves them over gRPC (`socketgram.v1`). Nothing else touches the
//! database.
//!
//! - [`store`]: the database (SQLite, MySQL/MariaDB with the legacy schema, PostgreSQL).
//! - [`chat`]: the domain service ([`Core`]) every entry point goes through.
//! - [`files`]: attachments' bytes (a directory, behind a storage trait), their sniffed
//!   types, thumbnails and limits, and the sweep of what no message took.
//! - [`credentials`]: visitors' Telegram logins checked against `users` or an external database.
//! - [`link_tokens`]: one-time tokens that link a Telegram chat to a visitor without a
//!   password ("Continue in Telegram").
//! - [`staff`], [`passwords`] and [`ldap`]: support staff's sign-in (their own password or
//!   their directory's) and their sessions.
//! - [`hub`] and [`presence`]: in-process fan-out of live events and who is online.
//! - `sequencer` and `bus`: messages into the hub in id order whoever stored them, and NATS
//!   between core replicas (news of the database, presence, admin reloads).
//! - [`grpc`]: the tonic adapters, the only place a gRPC status is chosen.
//! - [`server`]: serves the gRPC API (with health, reflection and gRPC-web) on a listener.
//! - [`ops`]: the core's readiness checks and sampled metrics for `/readyz` and `/metrics`.

pub mod admins;
mod assignment;
mod bus;
pub mod chat;
pub mod config;
pub mod credentials;
pub mod domain;
pub mod error;
pub mod files;
pub mod hub;
pub mod ldap;
pub mod link_tokens;
pub mod ops;
pub mod passwords;
pub mod presence;
mod sequencer;
pub mod staff;
mod status;
pub mod store;
pub mod transcript;
pub mod typing;
mod writer;

pub use bus::BusState;
pub use chat::Core;
pub use error::{CoreError, CoreResult};
pub mod grpc;
pub mod server;
