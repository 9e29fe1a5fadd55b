//! Puts stored messages into the hub in id order with nothing missing between, whoever stored
//! them: this replica's writer, another replica (its batches arrive over the bus), or nobody
//! this replica heard of (the bus lost the news, or a core without a bus shares the database).
//!
//! Writers of every replica commit in id order (the store's write lock) and each batch says the
//! greatest id committed before it (`prev`). A batch whose `prev` has been published is
//! published at once; one that comes before its predecessor waits a moment for it, then the
//! gap is read from the database, where everything up to a committed id is visible. A poll of
//! the newest id catches what no batch announced. So a subscriber's cursor never passes a
//! message, and the bus losing news never loses a chat message.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::{sync::Notify, time::Instant};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::{
    domain::{MessageId, Scope, StoredMessage},
    hub::Hub,
    store::{MAX_PAGE, Store, StoreError},
};

/// How long a batch waits for its predecessor's news before the gap is read from the
/// database. News from another replica usually comes within a millisecond.
const GAP_WAIT: Duration = Duration::from_millis(50);

/// The sequencer of one core.
pub(crate) struct Sequencer {
    hub: Arc<Hub>,
    store: Arc<dyn Store>,
    state: Mutex<Waiting>,
    wake: Notify,
}

/// Batches that came before their predecessor, by `prev`.
#[derive(Default)]
struct Waiting {
    batches: BTreeMap<MessageId, Vec<StoredMessage>>,
    /// Since when the oldest of them waits.
    since: Option<Instant>,
    /// A batch whose predecessor is unknown came (or a catch-up was asked for): read the
    /// database without waiting.
    now: bool,
}

impl Sequencer {
    pub(crate) fn new(hub: Arc<Hub>, store: Arc<dyn Store>) -> Arc<Self> {
        Arc::new(Self {
            hub,
            store,
            state: Mutex::default(),
            wake: Notify::new(),
        })
    }

    /// The greatest id published: every message up to it is in the hub.
    pub(crate) fn published(&self) -> MessageId {
        self.hub.last_published()
    }

    /// Takes a committed batch (ascending ids), published now when nothing can be missing
    /// before it. `prev: None`: what was committed before it is not known.
    pub(crate) fn offer(&self, prev: Option<MessageId>, messages: Vec<StoredMessage>) {
        let Some(last) = messages.last().map(|m| m.id) else {
            return;
        };
        let mut waiting = self.lock();
        let published = self.hub.last_published();
        if last <= published {
            return;
        }
        match prev {
            Some(prev) if prev <= published => {
                self.publish(messages);
                self.release(&mut waiting);
            }
            Some(prev) => {
                waiting.batches.insert(prev, messages);
                waiting.since.get_or_insert_with(Instant::now);
                self.wake.notify_one();
            }
            None => {
                waiting.now = true;
                self.wake.notify_one();
            }
        }
    }

    /// Asks for the database to be read now (the bus reconnected: news may have been lost).
    pub(crate) fn catch_up_soon(&self) {
        self.lock().now = true;
        self.wake.notify_one();
    }

    /// Publishes every message stored after the greatest published id, from the database.
    pub(crate) async fn catch_up(&self) -> Result<(), StoreError> {
        loop {
            let from = self.hub.last_published();
            let page = self
                .store
                .messages_after(Scope::All, from, MAX_PAGE)
                .await?;
            let full = page.len() == MAX_PAGE as usize;
            let mut waiting = self.lock();
            let published = self.hub.last_published();
            self.publish(page.into_iter().filter(|m| m.id > published).collect());
            self.release(&mut waiting);
            if !full {
                // Whatever waits now came after this read began, and is read next time.
                waiting.now = false;
                waiting.since = (!waiting.batches.is_empty()).then(Instant::now);
                return Ok(());
            }
        }
    }

    /// Reads gaps from the database when they stay open, and polls the newest id every
    /// `poll` to find what no news announced; until `stop`. Returns how far the database is
    /// ahead of the hub at each poll through `lag`.
    pub(crate) async fn run(
        self: Arc<Self>,
        poll: Duration,
        stop: CancellationToken,
        lag: impl Fn(u64) + Send,
    ) {
        let mut next_poll = Instant::now() + poll;
        // The newest id the last poll saw while it was not yet published.
        let mut behind: Option<MessageId> = None;
        let mut failing = false;
        loop {
            let due = {
                let waiting = self.lock();
                if waiting.now {
                    Some(Instant::now())
                } else {
                    waiting.since.map(|since| since + GAP_WAIT)
                }
            };
            let wake_at = due.map_or(next_poll, |due| due.min(next_poll));
            tokio::select! {
                () = stop.cancelled() => return,
                () = self.wake.notified() => continue,
                () = tokio::time::sleep_until(wake_at) => {}
            }
            let mut read = due.is_some_and(|due| due <= Instant::now());
            if Instant::now() >= next_poll {
                next_poll = Instant::now() + poll;
                match self.store.last_message_id().await {
                    Ok(newest) => {
                        let published = self.published();
                        lag(newest.saturating_sub(published));
                        // Seen a whole poll ago and still not published: no news is coming.
                        read |= behind.is_some_and(|seen| seen > published);
                        behind = (newest > published).then_some(newest);
                    }
                    Err(e) => {
                        if !failing {
                            warn!(error = %e, "cannot read the newest message id");
                        }
                        failing = true;
                        continue;
                    }
                }
            }
            if read {
                let from = self.published();
                match self.catch_up().await {
                    Ok(()) => {
                        if failing {
                            info!("reading messages from the database again");
                        }
                        failing = false;
                        debug!(from, to = self.published(), "caught up from the database");
                    }
                    Err(e) => {
                        if !failing {
                            warn!(error = %e, "cannot read missed messages from the database; retrying");
                        }
                        failing = true;
                        tokio::time::sleep(poll.min(Duration::from_secs(1))).await;
                    }
                }
            }
        }
    }

    fn publish(&self, messages: Vec<StoredMessage>) {
        self.hub.publish_messages(messages);
    }

    /// Publishes the waiting batches whose predecessor is now published.
    fn release(&self, waiting: &mut Waiting) {
        while let Some(entry) = waiting.batches.first_entry() {
            let published = self.hub.last_published();
            if *entry.key() > published {
                break;
            }
            let batch = entry.remove();
            self.publish(batch.into_iter().filter(|m| m.id > published).collect());
        }
        if waiting.batches.is_empty() {
            waiting.since = None;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Waiting> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}
