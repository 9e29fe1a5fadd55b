//! What the core keeps of conversations' statuses beside the database: the conversations a
//! visitor's message reopens, and when their snoozes end. The database is the truth (the
//! writer reopens a conversation in the same statement that stores the visitor's message);
//! this is how support gets told, without a read under the write lock, and how snoozes end
//! on time.

use std::{
    collections::HashMap,
    sync::{Mutex, MutexGuard},
};

use tokio::sync::Notify;

use crate::domain::{ConversationId, Status};

/// Resolved and snoozed conversations, as this core last heard of them.
#[derive(Default)]
pub(crate) struct Reopenable {
    closed: Mutex<HashMap<ConversationId, Status>>,
    /// Wakes the snooze timer: a snooze was set, so the next end may be sooner.
    snoozed: Notify,
}

impl Reopenable {
    /// Starting from what the database holds.
    pub(crate) fn new(closed: Vec<(ConversationId, Status)>) -> Self {
        Self {
            closed: Mutex::new(closed.into_iter().collect()),
            snoozed: Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<ConversationId, Status>> {
        self.closed.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A conversation's status changed (here or on another replica).
    pub(crate) fn set(&self, conversation: ConversationId, status: Status) {
        if status.reopens_on_visitor_message() {
            self.lock().insert(conversation, status);
        } else {
            self.lock().remove(&conversation);
        }
        if matches!(status, Status::Snoozed { .. }) {
            self.snoozed.notify_one();
        }
    }

    /// A visitor's message was stored: whether it reopened the conversation (the writer did
    /// in the database), so support is told once.
    pub(crate) fn visitor_wrote(&self, conversation: ConversationId) -> bool {
        self.lock().remove(&conversation).is_some()
    }

    /// A snooze that ran out was ended, or found changed: forget it unless it changed again.
    pub(crate) fn snooze_done(&self, conversation: ConversationId, until_ms: i64) {
        let mut closed = self.lock();
        if closed.get(&conversation) == Some(&Status::Snoozed { until_ms }) {
            closed.remove(&conversation);
        }
    }

    /// The snoozes that end by `now_ms`, and when the next one after them ends.
    pub(crate) fn due(&self, now_ms: i64) -> (Vec<(ConversationId, i64)>, Option<i64>) {
        let closed = self.lock();
        let mut due = Vec::new();
        let mut next = None::<i64>;
        for (&conversation, status) in closed.iter() {
            if let Status::Snoozed { until_ms } = *status {
                if until_ms <= now_ms {
                    due.push((conversation, until_ms));
                } else {
                    next = Some(next.map_or(until_ms, |n| n.min(until_ms)));
                }
            }
        }
        (due, next)
    }

    /// Resolves when a snooze was set since the last call.
    pub(crate) async fn snooze_set(&self) {
        self.snoozed.notified().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_visitor_message_reopens_once_and_only_what_was_closed() {
        let reopenable = Reopenable::new(vec![(1, Status::Resolved)]);
        reopenable.set(2, Status::Pending);
        assert!(reopenable.visitor_wrote(1));
        assert!(!reopenable.visitor_wrote(1));
        assert!(!reopenable.visitor_wrote(2));
    }

    #[test]
    fn snoozes_fall_due_in_time_and_a_changed_one_is_kept() {
        let reopenable = Reopenable::new(vec![]);
        reopenable.set(1, Status::Snoozed { until_ms: 100 });
        reopenable.set(2, Status::Snoozed { until_ms: 300 });
        reopenable.set(3, Status::Resolved);
        assert_eq!(reopenable.due(200), (vec![(1, 100)], Some(300)));
        reopenable.set(1, Status::Snoozed { until_ms: 500 });
        reopenable.snooze_done(1, 100);
        assert_eq!(reopenable.due(200), (vec![], Some(300)));
        reopenable.snooze_done(2, 300);
        assert_eq!(reopenable.due(1000), (vec![(1, 500)], None));
    }
}
