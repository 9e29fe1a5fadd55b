//! Auto-assignment (`[core] auto_assign`): a visitor's message to a conversation nobody has
//! goes to the next admin, round robin, among the admins online now (on any replica) who hold
//! fewer open or pending conversations than `auto_assign_max_open`. The take is the store's
//! conditional one, so it never overrides an assignment made meanwhile, here or elsewhere.
//!
//! Owns the round robin's place and a cache of who has each conversation, so that a message
//! to an assigned conversation costs no query; it learns every assignment (this replica's and,
//! through the bus, the others').

use std::{
    collections::HashMap,
    sync::{Mutex, MutexGuard},
};

use crate::domain::ConversationId;

/// The state of auto-assignment on this replica.
pub(crate) struct AutoAssign {
    /// The most open or pending conversations an admin is given automatically.
    pub(crate) max_open: u64,
    /// Who has each conversation, as last learnt (`None`: nobody).
    assignees: Mutex<HashMap<ConversationId, Option<String>>>,
    /// The admin chosen last: the next choice is the one after (by login).
    last: tokio::sync::Mutex<Option<String>>,
}

impl AutoAssign {
    pub(crate) fn new(max_open: u64) -> Self {
        Self {
            max_open,
            assignees: Mutex::default(),
            last: tokio::sync::Mutex::new(None),
        }
    }

    fn assignees(&self) -> MutexGuard<'_, HashMap<ConversationId, Option<String>>> {
        self.assignees.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Who has the conversation, when known here: `Some(None)` for nobody.
    pub(crate) fn known(&self, conversation: ConversationId) -> Option<Option<String>> {
        self.assignees().get(&conversation).cloned()
    }

    /// Learns an assignment (or that nobody has it).
    pub(crate) fn learn(&self, conversation: ConversationId, assignee: Option<String>) {
        self.assignees().insert(conversation, assignee);
    }

    /// Forgets a conversation (erased).
    pub(crate) fn forget(&self, conversation: ConversationId) {
        self.assignees().remove(&conversation);
    }

    /// Serialises this replica's choices, so that two at once do not both count an admin as
    /// free; the guard holds the admin chosen last.
    pub(crate) async fn turn(&self) -> tokio::sync::MutexGuard<'_, Option<String>> {
        self.last.lock().await
    }
}

/// The admin after `last` (by login, wrapping) among `online` who holds fewer than `max_open`
/// open conversations (`open` counts them per admin).
pub(crate) fn next_admin(
    online: &[String],
    open: &HashMap<String, u64>,
    max_open: u64,
    last: Option<&str>,
) -> Option<String> {
    let mut free: Vec<&String> = online
        .iter()
        .filter(|admin| open.get(*admin).copied().unwrap_or(0) < max_open)
        .collect();
    free.sort_unstable();
    free.dedup();
    let after = last.and_then(|last| free.iter().position(|a| a.as_str() > last));
    free.get(after.unwrap_or(0)).map(|a| (*a).clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn round_robin_among_the_free() {
        let online = names(&["carol", "alice", "bob"]);
        let none = HashMap::new();
        assert_eq!(
            next_admin(&online, &none, 2, None).as_deref(),
            Some("alice")
        );
        assert_eq!(
            next_admin(&online, &none, 2, Some("alice")).as_deref(),
            Some("bob")
        );
        assert_eq!(
            next_admin(&online, &none, 2, Some("bob")).as_deref(),
            Some("carol")
        );
        assert_eq!(
            next_admin(&online, &none, 2, Some("carol")).as_deref(),
            Some("alice")
        );
        // The one chosen last may have gone offline: the next one after it still comes.
        assert_eq!(
            next_admin(&online, &none, 2, Some("bert")).as_deref(),
            Some("bob")
        );
        let busy = HashMap::from([("bob".to_owned(), 2), ("alice".to_owned(), 1)]);
        assert_eq!(
            next_admin(&online, &busy, 2, Some("alice")).as_deref(),
            Some("carol")
        );
        let full = HashMap::from([
            ("alice".to_owned(), 2),
            ("bob".to_owned(), 2),
            ("carol".to_owned(), 5),
        ]);
        assert_eq!(next_admin(&online, &full, 2, None), None);
        assert_eq!(next_admin(&[], &none, 2, None), None);
    }
}
