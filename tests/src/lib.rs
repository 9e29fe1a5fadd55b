//! Shared harness of the end-to-end tests: real databases ([`db::TestDb`]), the real server
//! started on port 0, in process or as the binary ([`server::TestServer`]), a TCP proxy that can cut a
//! database away mid-run ([`proxy::FaultProxy`]), real Socket.IO clients under Node.js
//! ([`sio::SioClient`], with [`node`] finding Node.js and installing `tests/js`), a real
//! nginx in front of a server, configured from the README ([`nginx::Nginx`]), and a stand-in
//! for the legacy server that acknowledges nothing ([`noack::NoAckServer`]), and a scaled-out
//! deployment of real processes: NATS, core replicas, edges ([`cluster`]), and a real LDAP
//! directory (`slapd`, [`ldap::TestLdap`]); and files for attachments ([`files`]).
//!
//! Tests that need an outside service (MariaDB, PostgreSQL, nginx, ...) skip with a printed
//! note when it is missing, except under `CI=true`, where a missing service fails the test.

pub mod botapi;
pub mod cluster;
pub mod db;
pub mod files;
pub mod ldap;
pub mod nginx;
pub mod noack;
pub mod node;
pub mod proxy;
pub mod server;
pub mod sio;

/// Whether we run under CI, where every service must be present.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Handles a missing service: panics under CI, otherwise prints why the test is skipped.
pub fn service_missing(what: &str, why: &str) {
    if in_ci() {
        panic!("{what} is required under CI=true but is not available: {why}");
    }
    eprintln!("SKIPPED: {what} is not available ({why}); set it up to run this test");
}
