//! Compatibility with the legacy deployment that stays as it is: the PHP admin panel and the
//! legacy visitor page (LEGACY.md §2-§4, §6). This crate owns the legacy *rules* — room
//! hashes, handshake identities, event names and payload shapes — so that the web edge can
//! apply them without knowing PHP's habits. It is a library the edge uses, not a process.
//! Socketgram's own socket events beside them (signed tokens in `handshake`, the widget's
//! events in `events`, support's workflow events in `workflow`) live here too, so every wire
//! name and payload of the web edge is in one crate.

pub mod config;
pub mod events;
pub mod handshake;
pub mod room;
pub mod workflow;
