//! Compatibility with the legacy deployment that stays as it is: the PHP admin panel and the
//! legacy visitor page (LEGACY.md §2-§4, §6). This crate owns the legacy *rules* — room
//! hashes, handshake identities, event names and payload shapes — so that the web edge can
//! apply them without knowing PHP's habits. It is a library the edge uses, not a process.

pub mod config;
pub mod events;
pub mod handshake;
pub mod room;
