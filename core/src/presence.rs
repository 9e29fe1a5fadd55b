//! Who is online: a visitor is online while any edge holds at least one socket for it. Each
//! edge session counts its own sockets, so a session that ends (an edge that died) takes
//! exactly its visitors offline and no "ghost online" is left (DESIGN.md, Presence).

use std::collections::HashMap;

use crate::domain::ConversationId;

/// Identifies one edge session (one `EdgeSession` stream).
pub type SessionId = u64;

/// Socket counts per session and in total. Not synchronised itself: the core keeps it under
/// the lock that also orders presence events.
#[derive(Default)]
pub struct Presence {
    totals: HashMap<ConversationId, u32>,
    sessions: HashMap<SessionId, HashMap<ConversationId, u32>>,
}

impl Presence {
    /// One socket more for `visitor` on `session`. Returns true when the visitor came online.
    pub fn connect(&mut self, session: SessionId, visitor: ConversationId) -> bool {
        *self
            .sessions
            .entry(session)
            .or_default()
            .entry(visitor)
            .or_default() += 1;
        let total = self.totals.entry(visitor).or_default();
        *total += 1;
        *total == 1
    }

    /// One socket less. Returns true when the visitor went offline. A disconnect the session
    /// never connected is ignored.
    pub fn disconnect(&mut self, session: SessionId, visitor: ConversationId) -> bool {
        let Some(counts) = self.sessions.get_mut(&session) else {
            return false;
        };
        let Some(count) = counts.get_mut(&visitor) else {
            return false;
        };
        *count -= 1;
        if *count == 0 {
            counts.remove(&visitor);
        }
        self.release(visitor, 1)
    }

    /// Forgets a session. Returns the visitors that went offline with it.
    pub fn drop_session(&mut self, session: SessionId) -> Vec<ConversationId> {
        let Some(counts) = self.sessions.remove(&session) else {
            return Vec::new();
        };
        let mut offline: Vec<_> = counts
            .into_iter()
            .filter(|&(visitor, count)| self.release(visitor, count))
            .map(|(visitor, _)| visitor)
            .collect();
        offline.sort_unstable();
        offline
    }

    fn release(&mut self, visitor: ConversationId, count: u32) -> bool {
        let Some(total) = self.totals.get_mut(&visitor) else {
            return false;
        };
        *total = total.saturating_sub(count);
        if *total == 0 {
            self.totals.remove(&visitor);
            true
        } else {
            false
        }
    }

    pub fn is_online(&self, visitor: ConversationId) -> bool {
        self.totals.contains_key(&visitor)
    }

    /// Every visitor online, ascending.
    pub fn online(&self) -> Vec<ConversationId> {
        let mut all: Vec<_> = self.totals.keys().copied().collect();
        all.sort_unstable();
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn online_until_the_last_socket_leaves() {
        let mut p = Presence::default();
        assert!(p.connect(1, 7));
        assert!(!p.connect(1, 7), "a second tab");
        assert!(!p.connect(2, 7), "a tab on another edge");
        assert!(!p.disconnect(1, 7));
        assert!(
            !p.disconnect(1, 7),
            "the tab on the other edge is still open"
        );
        assert!(p.is_online(7));
        assert!(p.disconnect(2, 7));
        assert!(!p.is_online(7));
        assert!(!p.disconnect(2, 7), "unknown disconnects are ignored");
    }

    #[test]
    fn a_dead_session_takes_its_visitors_offline() {
        let mut p = Presence::default();
        p.connect(1, 1);
        p.connect(1, 2);
        p.connect(1, 2);
        p.connect(2, 2);
        assert_eq!(p.drop_session(1), vec![1]);
        assert_eq!(p.online(), vec![2]);
        assert_eq!(p.drop_session(2), vec![2]);
        assert!(p.online().is_empty());
    }
}
