//! The web edge: speaks Socket.IO v4 to browsers (the visitor widget, the legacy visitor page
//! and the PHP admin) and gRPC to the core, holding no state beyond its open sockets.
//! For now it owns its configuration section; the Socket.IO server itself is to come.

pub mod config;
