//! Who is online: a visitor is online while any edge on any replica holds at least one socket
//! for it (DESIGN.md, Presence). Admins are counted the same way, by login: an admin is online
//! while any support client holds a connection for them (a token admin's socket, a gRPC
//! subscription naming the admin), which is who auto-assignment chooses among.
//!
//! Each edge session of this replica counts its own sockets, so a session that ends (an edge
//! that died) takes exactly its visitors offline. Other replicas tell, over the bus, which
//! visitors are online through them: changes as they happen and a full snapshot every
//! heartbeat. A replica not heard from for the presence timeout is gone, and its visitors with
//! it, unless someone else holds them: no "ghost online" outlives a dead replica by more than
//! that.

use std::{
    collections::{HashMap, HashSet},
    hash::Hash,
    time::Instant,
};

use crate::domain::ConversationId;

/// Identifies one edge session (one `EdgeSession` stream).
pub type SessionId = u64;

/// A change of whether a visitor is online.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Changed {
    /// Through this replica (what the other replicas are told).
    pub here: bool,
    /// Anywhere (what subscribers are told).
    pub anywhere: bool,
}

/// Socket counts per session, and the visitors other replicas hold. Not synchronised itself:
/// the core keeps it under the lock that also orders presence events.
/// `K` is who is online: a visitor (their conversation id) or an admin (their login).
pub struct Presence<K = ConversationId> {
    /// Sockets per visitor through this replica.
    here: HashMap<K, u32>,
    sessions: HashMap<SessionId, HashMap<K, u32>>,
    replicas: HashMap<String, Replica<K>>,
    /// How many holders (this replica, each other replica) each online visitor has.
    holders: HashMap<K, u32>,
}

impl<K> Default for Presence<K> {
    fn default() -> Self {
        Self {
            here: HashMap::new(),
            sessions: HashMap::new(),
            replicas: HashMap::new(),
            holders: HashMap::new(),
        }
    }
}

struct Replica<K> {
    online: HashSet<K>,
    heard: Instant,
}

impl<K: Clone + Eq + Hash + Ord> Presence<K> {
    /// One socket more for `visitor` on `session`.
    pub fn connect(&mut self, session: SessionId, visitor: K) -> Changed {
        *self
            .sessions
            .entry(session)
            .or_default()
            .entry(visitor.clone())
            .or_default() += 1;
        let here = self.here.entry(visitor.clone()).or_default();
        *here += 1;
        if *here > 1 {
            return Changed::default();
        }
        Changed {
            here: true,
            anywhere: self.hold(visitor),
        }
    }

    /// One socket less. A disconnect the session never connected is ignored.
    pub fn disconnect(&mut self, session: SessionId, visitor: K) -> Changed {
        let Some(counts) = self.sessions.get_mut(&session) else {
            return Changed::default();
        };
        let Some(count) = counts.get_mut(&visitor) else {
            return Changed::default();
        };
        *count -= 1;
        if *count == 0 {
            counts.remove(&visitor);
        }
        self.release_here(visitor, 1)
    }

    /// Forgets a session. Returns the visitors no longer online through this replica, with
    /// whether each went offline everywhere, ascending.
    pub fn drop_session(&mut self, session: SessionId) -> Vec<(K, bool)> {
        let Some(counts) = self.sessions.remove(&session) else {
            return Vec::new();
        };
        let mut gone: Vec<_> = counts
            .into_iter()
            .filter_map(|(visitor, count)| {
                let changed = self.release_here(visitor.clone(), count);
                changed.here.then_some((visitor, changed.anywhere))
            })
            .collect();
        gone.sort_unstable();
        gone
    }

    fn release_here(&mut self, visitor: K, count: u32) -> Changed {
        let Some(here) = self.here.get_mut(&visitor) else {
            return Changed::default();
        };
        *here = here.saturating_sub(count);
        if *here > 0 {
            return Changed::default();
        }
        self.here.remove(&visitor);
        Changed {
            here: true,
            anywhere: self.unhold(visitor),
        }
    }

    /// Another replica says a visitor came online or went offline through it. Returns
    /// whether that changed whether the visitor is online anywhere.
    pub fn remote_change(&mut self, replica: &str, visitor: K, online: bool, now: Instant) -> bool {
        let entry = self.replica(replica, now);
        let changed = if online {
            entry.online.insert(visitor.clone())
        } else {
            entry.online.remove(&visitor)
        };
        match (changed, online) {
            (false, _) => false,
            (true, true) => self.hold(visitor),
            (true, false) => self.unhold(visitor),
        }
    }

    /// Another replica's full list. Returns the visitors whose being online anywhere changed
    /// with it, with their new state, ascending.
    pub fn remote_snapshot(
        &mut self,
        replica: &str,
        online: HashSet<K>,
        now: Instant,
    ) -> Vec<(K, bool)> {
        let before = std::mem::take(&mut self.replica(replica, now).online);
        let mut changes = Vec::new();
        for visitor in online.difference(&before) {
            if self.hold(visitor.clone()) {
                changes.push((visitor.clone(), true));
            }
        }
        for visitor in before.difference(&online) {
            if self.unhold(visitor.clone()) {
                changes.push((visitor.clone(), false));
            }
        }
        self.replica(replica, now).online = online;
        changes.sort_unstable();
        changes
    }

    /// Forgets a replica (it said goodbye). Returns the visitors that went offline with it.
    pub fn remote_gone(&mut self, replica: &str) -> Vec<K> {
        let Some(gone) = self.replicas.remove(replica) else {
            return Vec::new();
        };
        let mut offline: Vec<_> = gone
            .online
            .into_iter()
            .filter(|visitor| self.unhold(visitor.clone()))
            .collect();
        offline.sort_unstable();
        offline
    }

    /// Forgets every replica not heard from since `heard_since`. Returns the visitors that
    /// went offline with them.
    pub fn expire(&mut self, heard_since: Instant) -> Vec<K> {
        let silent: Vec<String> = self
            .replicas
            .iter()
            .filter(|(_, r)| r.heard < heard_since)
            .map(|(name, _)| name.clone())
            .collect();
        let mut offline: Vec<_> = silent
            .iter()
            .flat_map(|name| self.remote_gone(name))
            .collect();
        offline.sort_unstable();
        offline
    }

    /// Notes that a replica is alive (any message from it).
    pub fn heard(&mut self, replica: &str, now: Instant) {
        self.replica(replica, now);
    }

    fn replica(&mut self, name: &str, now: Instant) -> &mut Replica<K> {
        let replica = self
            .replicas
            .entry(name.to_owned())
            .or_insert_with(|| Replica {
                online: HashSet::new(),
                heard: now,
            });
        replica.heard = now;
        replica
    }

    /// One holder more; true when the visitor came online.
    fn hold(&mut self, visitor: K) -> bool {
        let holders = self.holders.entry(visitor).or_default();
        *holders += 1;
        *holders == 1
    }

    /// One holder less; true when the visitor went offline.
    fn unhold(&mut self, visitor: K) -> bool {
        let Some(holders) = self.holders.get_mut(&visitor) else {
            return false;
        };
        *holders -= 1;
        if *holders == 0 {
            self.holders.remove(&visitor);
            true
        } else {
            false
        }
    }

    /// Whether the visitor is online anywhere.
    pub fn is_online(&self, visitor: K) -> bool {
        self.holders.contains_key(&visitor)
    }

    /// Every visitor online anywhere, ascending.
    pub fn online(&self) -> Vec<K> {
        let mut all: Vec<_> = self.holders.keys().cloned().collect();
        all.sort_unstable();
        all
    }

    /// Every visitor online through this replica, ascending (its heartbeat snapshot).
    pub fn online_here(&self) -> Vec<K> {
        let mut here: Vec<_> = self.here.keys().cloned().collect();
        here.sort_unstable();
        here
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const BOTH: Changed = Changed {
        here: true,
        anywhere: true,
    };

    #[test]
    fn online_until_the_last_socket_leaves() {
        let mut p = Presence::default();
        assert_eq!(p.connect(1, 7), BOTH);
        assert_eq!(p.connect(1, 7), Changed::default(), "a second tab");
        assert_eq!(p.connect(2, 7), Changed::default(), "a tab on another edge");
        assert_eq!(p.disconnect(1, 7), Changed::default());
        assert_eq!(
            p.disconnect(1, 7),
            Changed::default(),
            "the tab on the other edge is still open"
        );
        assert!(p.is_online(7));
        assert_eq!(p.disconnect(2, 7), BOTH);
        assert!(!p.is_online(7));
        assert_eq!(
            p.disconnect(2, 7),
            Changed::default(),
            "unknown disconnects are ignored"
        );
    }

    #[test]
    fn a_dead_session_takes_its_visitors_offline() {
        let mut p = Presence::default();
        p.connect(1, 1);
        p.connect(1, 2);
        p.connect(1, 2);
        p.connect(2, 2);
        assert_eq!(p.drop_session(1), vec![(1, true)]);
        assert_eq!(p.online(), vec![2]);
        assert_eq!(p.drop_session(2), vec![(2, true)]);
        assert!(p.online().is_empty());
    }

    #[test]
    fn a_visitor_held_by_another_replica_stays_online_here_going() {
        let now = Instant::now();
        let mut p = Presence::default();
        assert!(p.remote_change("b", 5, true, now), "online through b");
        assert_eq!(
            p.connect(1, 5),
            Changed {
                here: true,
                anywhere: false
            },
            "already online: the others are told, subscribers are not"
        );
        assert_eq!(p.drop_session(1), vec![(5, false)]);
        assert!(p.is_online(5));
        assert!(p.remote_change("b", 5, false, now));
        assert!(!p.is_online(5));
    }

    #[test]
    fn snapshots_replace_a_replicas_list_and_silence_expires_it() {
        let start = Instant::now();
        let mut p = Presence::default();
        p.connect(1, 3);
        assert_eq!(
            p.remote_snapshot("b", HashSet::from([1, 2, 3]), start),
            vec![(1, true), (2, true)]
        );
        assert_eq!(
            p.remote_snapshot("b", HashSet::from([2, 3, 4]), start),
            vec![(1, false), (4, true)]
        );
        p.remote_change("c", 2, true, start + Duration::from_secs(5));
        // b is silent for the timeout, c is not: b's visitors that nobody else holds go.
        assert_eq!(p.expire(start + Duration::from_secs(1)), vec![4]);
        assert_eq!(p.online(), vec![2, 3]);
        assert_eq!(p.remote_gone("c"), vec![2]);
        assert_eq!(p.online(), vec![3]);
        assert_eq!(p.online_here(), vec![3]);
    }
}
