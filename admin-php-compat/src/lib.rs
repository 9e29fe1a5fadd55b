//! Compatibility with the legacy deployment that stays as it is: the PHP admin panel and the
//! legacy visitor page (LEGACY.md §2-§4, §6). This crate owns the legacy *rules* — room
//! hashes, the admin query parameter, and (as the web edge grows) the event names, payload
//! shapes and date format — so that the edges can apply them without knowing PHP's habits.
//! It is a library the web edge uses, not a process.

pub mod config;
pub mod room;
