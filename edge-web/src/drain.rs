//! What SIGTERM lets finish. When the edge starts stopping, events that arrive from then on
//! are refused (nothing of theirs reaches the core, so the refusal can say nothing was stored);
//! events accepted before it run to their answer, and only then are the sockets closed and the
//! link to the core ended. The core stops after its edges, so it answers them to the last.

use tokio_util::{
    sync::CancellationToken,
    task::{TaskTracker, task_tracker::TaskTrackerToken},
};

/// The events in flight, and whether the edge is stopping.
pub struct Drain {
    stopping: CancellationToken,
    in_flight: TaskTracker,
}

/// One event being handled; the drain waits for it.
pub struct InFlight(#[expect(dead_code, reason = "held for its drop")] TaskTrackerToken);

impl Drain {
    /// A drain that starts when `stopping` is cancelled.
    pub fn new(stopping: CancellationToken) -> Self {
        Self {
            stopping,
            in_flight: TaskTracker::new(),
        }
    }

    /// A place for one event, or `None` once the edge is stopping. The place is taken before
    /// the check: an event either sees the stop and is refused, or is counted before the
    /// drain can find nothing in flight.
    pub fn enter(&self) -> Option<InFlight> {
        let token = self.in_flight.token();
        (!self.stopping.is_cancelled()).then_some(InFlight(token))
    }

    /// Waits for the stop, then for every event accepted before it.
    pub async fn finished(&self) {
        self.stopping.cancelled().await;
        self.in_flight.close();
        self.in_flight.wait().await;
    }
}
