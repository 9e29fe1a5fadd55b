//! Typing indicators: ephemeral, never stored, never replayed. Who is typing in which
//! conversation goes live to the other side (and to support's other clients) through the hub
//! and to the other replicas through the bus; a client shows it for [`SHOWN_FOR`] unless it
//! is told again or told it stopped. Keystrokes come much faster than anyone needs them shown:
//! the gate passes one event per typist per [`MIN_INTERVAL`] (and every start or stop), so a
//! flood costs the core a map lookup per keystroke and nobody else anything.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use crate::domain::ConversationId;

/// How long a client shows "typing" after the last event that said so.
pub const SHOWN_FOR: Duration = Duration::from_secs(6);
/// The least time between two "still typing" events of one typist.
pub const MIN_INTERVAL: Duration = Duration::from_millis(1000);
/// Typists remembered before the gate forgets those that fell silent.
const REMEMBERED: usize = 10_000;

/// Who types.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Typist {
    /// The conversation's visitor (web or Telegram).
    Visitor,
    /// A support admin, by login.
    Admin(String),
}

/// One typing event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Typing {
    pub conversation: ConversationId,
    pub typist: Typist,
    /// Typing now (false: stopped, the draft was sent or cleared).
    pub active: bool,
    /// The draft's length in characters.
    pub draft_chars: u32,
    /// The draft itself, only for a visitor and only with `[core] typing_preview`.
    pub preview: Option<String>,
}

/// Lets through what is worth showing.
#[derive(Default)]
pub(crate) struct Gate {
    last: Mutex<HashMap<(ConversationId, Typist), (Instant, bool)>>,
}

impl Gate {
    /// Whether to publish this event now.
    pub(crate) fn pass(&self, typing: &Typing, now: Instant) -> bool {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        if last.len() >= REMEMBERED {
            last.retain(|_, (at, _)| now.duration_since(*at) < SHOWN_FOR);
        }
        let key = (typing.conversation, typing.typist.clone());
        let pass = match last.get(&key) {
            None => typing.active,
            Some(&(at, active)) => {
                active != typing.active || now.duration_since(at) >= MIN_INTERVAL
            }
        };
        if pass {
            last.insert(key, (now, typing.active));
        }
        pass
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn typing(active: bool) -> Typing {
        Typing {
            conversation: 1,
            typist: Typist::Visitor,
            active,
            draft_chars: 3,
            preview: None,
        }
    }

    #[test]
    fn keystrokes_pass_once_per_interval_and_every_start_and_stop() {
        let gate = Gate::default();
        let t0 = Instant::now();
        assert!(!gate.pass(&typing(false), t0), "a stop with no start");
        assert!(gate.pass(&typing(true), t0));
        assert!(!gate.pass(&typing(true), t0 + Duration::from_millis(10)));
        assert!(gate.pass(&typing(false), t0 + Duration::from_millis(20)));
        assert!(gate.pass(&typing(true), t0 + Duration::from_millis(30)));
        assert!(!gate.pass(&typing(true), t0 + Duration::from_millis(900)));
        assert!(gate.pass(&typing(true), t0 + MIN_INTERVAL + Duration::from_millis(30)));
        let other = Typing {
            typist: Typist::Admin("alice".into()),
            ..typing(true)
        };
        assert!(gate.pass(&other, t0 + Duration::from_millis(40)), "its own");
    }
}
