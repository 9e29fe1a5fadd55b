//! The message writer: one task per core that stores messages in batches and publishes them.
//!
//! Why one task: ids must become visible in increasing order, or a subscriber's resume cursor
//! could pass over a message whose transaction committed late. The store serialises writers
//! across processes (a lock row; SQLite's write lock); this task serialises them inside the
//! process and publishes each batch in id order right after it commits. Batching keeps that
//! fast: everything queued while a transaction runs goes into the next one.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
use tracing::{debug, warn};

use crate::{
    domain::{Appended, NewMessage, Scope},
    error::{CoreError, CoreResult},
    hub::Hub,
    store::{MAX_PAGE, Store, StoreError},
};

/// Most messages in one transaction.
const MAX_BATCH: usize = 256;
/// Queued messages before senders wait.
const QUEUE: usize = 4096;

struct Job {
    message: NewMessage,
    reply: oneshot::Sender<CoreResult<Appended>>,
}

/// Handle to the writer task; the task ends when every handle is gone and the queue is empty.
#[derive(Clone)]
pub(crate) struct Writer {
    queue: mpsc::Sender<Job>,
}

impl Writer {
    pub(crate) fn spawn(store: Arc<dyn Store>, hub: Arc<Hub>) -> Self {
        let (queue, rx) = mpsc::channel(QUEUE);
        tokio::spawn(run(store, hub, rx));
        Self { queue }
    }

    /// Queues one message behind everything queued before it (messages are stored in queue
    /// order); the returned [`Pending`] resolves once it is committed and published.
    pub(crate) async fn enqueue(&self, message: NewMessage) -> CoreResult<Pending> {
        let (reply, done) = oneshot::channel();
        self.queue
            .send(Job { message, reply })
            .await
            .map_err(|_| CoreError::Unavailable("the core is shutting down".into()))?;
        Ok(Pending(done))
    }
}

/// A queued message, until it is stored.
pub(crate) struct Pending(oneshot::Receiver<CoreResult<Appended>>);

impl Pending {
    /// The stored message (with whatever else was queued), once committed and published.
    pub(crate) async fn stored(self) -> CoreResult<Appended> {
        self.0
            .await
            .map_err(|_| CoreError::Internal("the message writer stopped".into()))?
    }
}

async fn run(store: Arc<dyn Store>, hub: Arc<Hub>, mut rx: mpsc::Receiver<Job>) {
    // After a failed commit we cannot know whether it reached the database: the next
    // successful batch publishes from the database instead of from memory.
    let mut uncertain = false;
    let mut jobs = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut jobs, MAX_BATCH).await > 0 {
        let (messages, replies): (Vec<_>, Vec<_>) =
            jobs.drain(..).map(|j| (j.message, j.reply)).unzip();
        debug!(batch = messages.len(), "storing");
        match store.append(&messages).await {
            Ok(stored) => {
                uncertain = publish(&*store, &hub, &stored, uncertain).await;
                for (reply, outcome) in replies.into_iter().zip(stored) {
                    let _ = reply.send(Ok(outcome));
                }
            }
            Err(StoreError::Constraint(reason)) if messages.len() > 1 => {
                // One bad message must not sink the others: store them one by one.
                warn!(%reason, batch = messages.len(), "batch refused; storing one by one");
                for (message, reply) in messages.into_iter().zip(replies) {
                    let outcome = match store.append(std::slice::from_ref(&message)).await {
                        Ok(stored) => {
                            uncertain = publish(&*store, &hub, &stored, uncertain).await;
                            Ok(stored.into_iter().next().expect("one outcome per message"))
                        }
                        Err(e) => {
                            uncertain |= matches!(e, StoreError::Unavailable(_));
                            Err(CoreError::from(e))
                        }
                    };
                    let _ = reply.send(outcome);
                }
            }
            Err(e) => {
                warn!(error = %e, batch = messages.len(), "storing failed");
                uncertain |= matches!(e, StoreError::Unavailable(_));
                let e = CoreError::from(e);
                for reply in replies {
                    let _ = reply.send(Err(e.clone()));
                }
            }
        }
    }
}

/// Publishes a committed batch; returns whether the hub is still uncertain.
async fn publish(store: &dyn Store, hub: &Hub, stored: &[Appended], uncertain: bool) -> bool {
    if uncertain {
        match catch_up(store, hub).await {
            Ok(()) => return false,
            Err(e) => warn!(error = %e, "could not re-read messages after a failed commit"),
        }
    }
    let last = hub.last_published();
    hub.publish_messages(
        stored
            .iter()
            .filter(|a| !a.duplicate && a.message.id > last)
            .map(|a| a.message.clone()),
    );
    uncertain
}

/// Publishes everything stored after the last published id, from the database.
async fn catch_up(store: &dyn Store, hub: &Hub) -> Result<(), StoreError> {
    loop {
        let page = store
            .messages_after(Scope::All, hub.last_published(), MAX_PAGE)
            .await?;
        let full = page.len() == MAX_PAGE as usize;
        hub.publish_messages(page);
        if !full {
            return Ok(());
        }
    }
}
