//! The Telegram edge: Bot API updates in (long polling or webhook), gRPC to the core, replies
//! out. For now it owns its configuration sections; the bot itself is to come.

pub mod config;
