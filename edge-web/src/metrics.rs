//! What the web edge records for `/metrics` (`socketgram_common::ops`), one function per
//! boundary: connections open on the listener (`conn`), Socket.IO events in (`dispatch`) and
//! out (every emit to a socket), refusals by wire code (`answer`, where codes are chosen).
//! Labels are bounded: event names are the known ones (the legacy table and support's
//! workflow), anything else a client invents is `other`.

use socketgram_admin_php_compat::{events::incoming, workflow::incoming as support};

/// A client's event name as a label: one of the known names, or `other`.
fn incoming_label(event: &str) -> &'static str {
    [
        incoming::SUBSCRIBE,
        incoming::NEW_MESSAGE,
        incoming::TAKE_HISTORY,
        incoming::SUBSCRIBE_ADMIN,
        incoming::NEW_MESSAGE_ADMIN,
        incoming::UPDATE_ADMIN_LIST,
        incoming::MARK_READ,
        incoming::TYPING,
        incoming::TYPING_ADMIN,
        incoming::TELEGRAM_LINK,
        support::CONVERSATION,
        support::ASSIGN,
        support::STATUS,
        support::NOTE,
        support::CANNED_REPLIES,
        support::INBOX,
        support::SEARCH,
        support::HISTORY,
        support::READ,
        support::NOTES,
        support::ONLINE,
    ]
    .into_iter()
    .find(|known| *known == event)
    .unwrap_or("other")
}

/// An event came in from a socket (before any limit or check).
pub(crate) fn received(event: &str) {
    metrics::counter!("socketgram_web_events_received_total", "event" => incoming_label(event))
        .increment(1);
}

/// `event` went out to `sockets` sockets (the names are the edge's own constants).
pub(crate) fn sent(event: &'static str, sockets: usize) {
    metrics::counter!("socketgram_web_events_sent_total", "event" => event)
        .increment(sockets as u64);
}

/// A request was refused with wire code `code`.
pub(crate) fn refused(code: &'static str) {
    metrics::counter!("socketgram_web_refusals_total", "code" => code).increment(1);
}

/// A connection the listener closed before reading it (too many from its address).
pub(crate) fn connection_refused() {
    metrics::counter!("socketgram_web_connections_refused_total").increment(1);
}

/// Counts one open connection on the web listener while it lives.
pub(crate) struct OpenConnection(());

impl OpenConnection {
    pub(crate) fn new() -> Self {
        metrics::gauge!("socketgram_web_connections").increment(1.0);
        Self(())
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        metrics::gauge!("socketgram_web_connections").decrement(1.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_known_event_names_become_labels() {
        assert_eq!(incoming_label("new message"), "new message");
        assert_eq!(incoming_label("update admlist"), "update admlist");
        assert_eq!(incoming_label("x".repeat(100).as_str()), "other");
        assert_eq!(incoming_label("New Message"), "other");
    }
}
