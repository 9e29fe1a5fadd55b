//! The message writer: one task per core that stores messages in batches and publishes them.
//!
//! Why one task: ids must become visible in increasing order, or a subscriber's resume cursor
//! could pass over a message whose transaction committed late. The store serialises writers
//! across processes (a lock row; SQLite's write lock); this task serialises them inside the
//! process and hands each batch to the sequencer right after it commits, which publishes it
//! in id order, and to the bus for the other replicas. Batching keeps that fast: everything
//! queued while a transaction runs goes into the next one.
//!
//! A commit can fail after the database received it (the connection drops between COMMIT and
//! its answer). Then no caller may be told "nothing was stored": the writer reads back what
//! the database holds once it answers again, answers the batch with what was stored, stores it
//! again if nothing was, and only when the database stays away says the outcome is unknown.

use std::{sync::Arc, time::Duration};

use tokio::sync::{mpsc, oneshot};
use tracing::{debug, warn};

use crate::{
    bus::Bus,
    domain::{Appended, Committed, NewMessage, Scope, StoredMessage},
    error::{CoreError, CoreResult},
    sequencer::Sequencer,
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
    /// `resolve_for`: how long a batch whose commit failed may wait for the database to say
    /// whether it was stored.
    pub(crate) fn spawn(store: Arc<dyn Store>, out: Published, resolve_for: Duration) -> Self {
        let (queue, rx) = mpsc::channel(QUEUE);
        tokio::spawn(run(store, out, rx, resolve_for));
        Self { queue }
    }

    /// Queues one message behind everything queued before it (messages are stored in queue
    /// order); the returned [`Pending`] resolves once it is committed and published.
    pub(crate) async fn enqueue(&self, message: NewMessage) -> CoreResult<Pending> {
        let (reply, done) = oneshot::channel();
        self.queue
            .send(Job { message, reply })
            .await
            .map_err(|_| CoreError::ShuttingDown)?;
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

/// Where committed batches go: this replica's sequencer, and the bus for the others.
#[derive(Clone)]
pub(crate) struct Published {
    pub(crate) sequencer: Arc<Sequencer>,
    pub(crate) bus: Option<Bus>,
}

async fn run(
    store: Arc<dyn Store>,
    out: Published,
    mut rx: mpsc::Receiver<Job>,
    resolve_for: Duration,
) {
    let hub = &*out.sequencer;
    // After a commit whose outcome stayed unknown, messages may be in the database that were
    // never published: the next successful batch publishes from the database instead.
    let mut uncertain = false;
    let mut jobs = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut jobs, MAX_BATCH).await > 0 {
        let (messages, replies): (Vec<_>, Vec<_>) =
            jobs.drain(..).map(|j| (j.message, j.reply)).unzip();
        debug!(batch = messages.len(), "storing");
        if uncertain && hub.catch_up().await.is_ok() {
            uncertain = false;
        }
        match append(&*store, hub, &messages, resolve_for, uncertain).await {
            Ok(stored) => {
                uncertain = publish(&out, &stored, uncertain).await;
                let stored = stored.appended;
                for (reply, outcome) in replies.into_iter().zip(stored) {
                    let _ = reply.send(Ok(outcome));
                }
            }
            Err(Failed::Store(StoreError::Constraint(reason))) if messages.len() > 1 => {
                // One bad message must not sink the others: store them one by one.
                warn!(%reason, batch = messages.len(), "batch refused; storing one by one");
                for (message, reply) in messages.into_iter().zip(replies) {
                    let one = std::slice::from_ref(&message);
                    let outcome = match append(&*store, hub, one, resolve_for, uncertain).await {
                        Ok(stored) => {
                            uncertain = publish(&out, &stored, uncertain).await;
                            Ok(stored
                                .appended
                                .into_iter()
                                .next()
                                .expect("one outcome per message"))
                        }
                        Err(e) => {
                            uncertain |= matches!(e, Failed::Unknown(_));
                            Err(CoreError::from(e))
                        }
                    };
                    let _ = reply.send(outcome);
                }
            }
            Err(e) => {
                uncertain |= matches!(e, Failed::Unknown(_));
                let e = CoreError::from(e);
                warn!(error = %e, batch = messages.len(), "storing failed");
                for reply in replies {
                    let _ = reply.send(Err(e.clone()));
                }
            }
        }
    }
}

/// Why a batch was not stored, or may not have been.
enum Failed {
    /// Nothing of the batch is stored.
    Store(StoreError),
    /// The database went away while the batch was being committed and did not answer again
    /// in time: it may or may not be stored.
    Unknown(String),
}

impl From<StoreError> for Failed {
    fn from(e: StoreError) -> Self {
        Failed::Store(e)
    }
}

impl From<Failed> for CoreError {
    fn from(f: Failed) -> Self {
        match f {
            Failed::Store(e) => CoreError::from(e),
            Failed::Unknown(reason) => CoreError::OutcomeUnknown(format!(
                "the database went away while this message was being stored ({reason}) and has \
                 not answered since: it may have been stored; it shows in the conversation if so \
                 (a retry with the same client_msg_id never stores it twice)"
            )),
        }
    }
}

/// Stores a batch. When the database goes away during the attempt, waits (up to
/// `resolve_for`) until it answers again, then reads back whether the batch was committed:
/// if so its outcome is what is stored, if not it is stored again. `OutcomeUnknown` only
/// when the database stays away, `Unavailable` only when nothing was stored.
async fn append(
    store: &dyn Store,
    hub: &Sequencer,
    batch: &[NewMessage],
    resolve_for: Duration,
    uncertain: bool,
) -> Result<Outcome, Failed> {
    let deadline = tokio::time::Instant::now() + resolve_for;
    // Everything committed up to here is published (or, when `uncertain`, may not be: then a
    // read-back could mistake an older message for this batch, so none is attempted).
    let mark = hub.published();
    let mut pause = Duration::from_millis(50);
    loop {
        let started = std::time::Instant::now();
        let committed = store.commit_batch(batch).await;
        record_commit(started.elapsed(), batch.len(), committed.is_ok());
        let failure = match committed {
            Err(StoreError::CommitOutcomeUnknown(e)) => StoreError::Unavailable(e),
            other => {
                let Committed { prev, appended } = other?;
                return Ok(Outcome {
                    prev: Some(prev),
                    appended,
                });
            }
        };
        if uncertain {
            return Err(Failed::Unknown(failure.to_string()));
        }
        warn!(reason = %failure, batch = batch.len(), "the database went away during a COMMIT; reading back what it holds");
        loop {
            match read_back(store, batch, mark).await {
                // What was committed before it is not known: the sequencer reads it.
                Ok(Some(appended)) => {
                    return Ok(Outcome {
                        prev: None,
                        appended,
                    });
                }
                // Not committed: store it again, while there is time.
                Ok(None) if tokio::time::Instant::now() < deadline => break,
                Ok(None) => return Err(Failed::Store(failure)),
                Err(_) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(1));
                }
                Err(_) => return Err(Failed::Unknown(failure.to_string())),
            }
        }
    }
}

/// The message store's latency, as the writer sees it: one batch's transaction, from taking
/// the write lock to the commit's answer (what a message's sender waits for, minus queueing).
fn record_commit(took: Duration, messages: usize, ok: bool) {
    let outcome = if ok { "ok" } else { "error" };
    metrics::histogram!("socketgram_store_commit_seconds", "outcome" => outcome)
        .record(took.as_secs_f64());
    if ok {
        metrics::counter!("socketgram_store_messages_committed_total").increment(messages as u64);
    }
}

/// Whether `batch` was committed after message `mark`, read from the database: its messages
/// with what they were stored as, or `None` when none of them is there. A transaction is all
/// or nothing, so one message found means the batch was stored; a message of it that is not
/// found had a client message id already stored, and is looked up by it.
async fn read_back(
    store: &dyn Store,
    batch: &[NewMessage],
    mark: u64,
) -> Result<Option<Vec<Appended>>, Failed> {
    // A commit still in flight on the lost connection would otherwise be missed here, and
    // the batch stored twice.
    store.await_writers().await?;
    let mut after_mark: Vec<StoredMessage> = Vec::new();
    loop {
        let from = after_mark.last().map_or(mark, |m| m.id);
        let page = store.messages_after(Scope::All, from, MAX_PAGE).await?;
        let full = page.len() == MAX_PAGE as usize;
        after_mark.extend(page);
        if !full {
            break;
        }
    }
    let same = |new: &NewMessage, m: &StoredMessage| {
        m.conversation_id == new.conversation_id
            && m.origin == new.origin
            && m.admin_id == new.admin_id
            && m.text == new.text
            && m.local_date == new.local_date
    };
    let mut claimed = vec![false; after_mark.len()];
    let mut found: Vec<Option<Appended>> = batch
        .iter()
        .map(|new| {
            let i = (0..after_mark.len()).find(|&i| !claimed[i] && same(new, &after_mark[i]))?;
            claimed[i] = true;
            Some(Appended {
                message: after_mark[i].clone(),
                duplicate: false,
            })
        })
        .collect();
    if found.iter().all(Option::is_none) {
        return Ok(None);
    }
    for (new, outcome) in batch.iter().zip(&mut found) {
        if outcome.is_none() {
            if new.client_msg_id.is_none() {
                return Err(Failed::Unknown(
                    "a message of the committed batch is not in the database".into(),
                ));
            }
            // A repeat of a stored client message id: storing it again returns that message.
            *outcome = store.append(std::slice::from_ref(new)).await?.pop();
        }
    }
    Ok(Some(found.into_iter().flatten().collect()))
}

/// A stored batch: its outcomes, and the greatest id committed before it when known.
struct Outcome {
    prev: Option<u64>,
    appended: Vec<Appended>,
}

/// Publishes a committed batch; returns whether the hub is still uncertain.
async fn publish(out: &Published, stored: &Outcome, uncertain: bool) -> bool {
    if uncertain {
        match out.sequencer.catch_up().await {
            Ok(()) => return false,
            Err(e) => warn!(error = %e, "could not re-read messages after a failed commit"),
        }
    }
    for a in &stored.appended {
        // One line per message (at DEBUG): a message can be followed by its id.
        debug!(
            message = a.message.id,
            conversation = a.message.conversation_id,
            duplicate = a.duplicate,
            "stored"
        );
    }
    // Outcomes come in input order; the new messages among them ascend.
    let fresh: Vec<StoredMessage> = stored
        .appended
        .iter()
        .filter(|a| !a.duplicate)
        .map(|a| a.message.clone())
        .collect();
    if fresh.is_empty() {
        return uncertain;
    }
    if let (Some(bus), Some(prev)) = (&out.bus, stored.prev) {
        bus.batch(prev, &fresh);
    }
    out.sequencer.offer(stored.prev, fresh);
    uncertain
}
