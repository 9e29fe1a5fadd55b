//! The delivery lease: of all the Telegram edges of one bot (several processes against core
//! replicas sharing a database), exactly one delivers support replies at a time. Updates are
//! not concerned: any edge takes them.
//!
//! The lease lives in the core (`Telegram.AcquireLease` / `ReleaseLease`, table `sg_leases`),
//! named after the delivery consumer, held by an id unique to this run of this process. Its
//! expiry is decided by the database's clock; this process only trusts its own monotonic clock
//! for the time the core said was left, counted from when the request was *sent*, less a
//! margin, so its own view of the lease always ends before the database's does. It renews at
//! a third of the time to live. When a renewal fails, is refused, or does not answer before
//! that view ends, [`DeliveryLease::keep`] returns and the caller stops delivering at once;
//! another edge can take the lease only once it has expired in the database, after this one
//! stopped. A graceful stop releases it, so the next edge need not wait for the expiry.

use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::{core_api::CoreApi, error::TelegramError};

/// Why a held lease ended.
#[derive(Debug, thiserror::Error)]
pub enum Lost {
    /// Another holder has it: this one was not renewed in time (a pause longer than the ttl).
    #[error("the lease is held by {0} now")]
    Taken(String),
    /// The core did not renew it: this edge cannot tell whether it still holds it.
    #[error("the lease could not be renewed: {0}")]
    RenewFailed(TelegramError),
    /// No answer to the renewal before this edge's view of the lease ended.
    #[error("the renewal did not answer before the lease ran out")]
    Expired,
}

/// One edge's claim on the delivery lease.
pub struct DeliveryLease {
    core: CoreApi,
    /// The lease's name: the delivery consumer's (`telegram:<bot id>`), one lease per bot.
    pub name: String,
    /// Unique to this run of this process, so a restarted edge is a new holder and two edges in
    /// one process (tests) are two.
    pub holder: String,
    /// How long a grant runs (`telegram.delivery_lease_secs`): the longest a dead deliverer
    /// keeps the others waiting.
    ttl: Duration,
}

impl DeliveryLease {
    pub fn new(core: CoreApi, name: String, ttl: Duration) -> Self {
        let holder = format!("{}-{:016x}", std::process::id(), rand::random::<u64>());
        Self {
            core,
            name,
            holder,
            ttl,
        }
    }

    /// How often the holder renews, and an edge without the lease asks again.
    fn period(&self) -> Duration {
        self.ttl / 3
    }

    /// Asks until the lease is granted; returns the instant it runs out in this process's view,
    /// `None` when `shutdown` comes first.
    pub async fn acquire(&self, shutdown: &CancellationToken) -> Option<Instant> {
        let mut reported = None;
        loop {
            match self.ask().await {
                Ok(Ok(until)) => return Some(until),
                Ok(Err(holder)) => {
                    // Once per holder: a standby edge asks every few seconds for as long as the
                    // other one lives.
                    if reported.as_ref() != Some(&holder) {
                        info!(lease = %self.name, %holder, "another edge holds the lease and delivers; standing by");
                        reported = Some(holder);
                    }
                }
                Err(e) => {
                    warn!(lease = %self.name, error = %e, "cannot ask for the delivery lease")
                }
            }
            tokio::select! {
                () = shutdown.cancelled() => return None,
                () = tokio::time::sleep(self.period()) => {}
            }
        }
    }

    /// Renews the lease every [`Self::period`] while it is held, from the view `until` that
    /// [`Self::acquire`] gave; returns (only) when it is lost, saying why.
    pub async fn keep(&self, mut until: Instant) -> Lost {
        let mut last = Instant::now();
        loop {
            tokio::time::sleep_until((last + self.period()).min(until)).await;
            if Instant::now() >= until {
                return Lost::Expired;
            }
            last = Instant::now();
            // The renewal may not outlast the lease: a hung call must not keep the caller
            // delivering past it.
            match tokio::time::timeout_at(until, self.ask()).await {
                Err(_) => return Lost::Expired,
                Ok(Ok(Ok(renewed))) => {
                    debug!(lease = %self.name, left = ?(renewed - Instant::now()), "delivery lease renewed");
                    until = renewed;
                }
                Ok(Ok(Err(holder))) => return Lost::Taken(holder),
                Ok(Err(e)) => return Lost::RenewFailed(e),
            }
        }
    }

    /// Frees the lease (graceful stop): another edge may deliver at once.
    pub async fn release(&self) {
        match self.core.release_lease(&self.name, &self.holder).await {
            Ok(true) => info!(lease = %self.name, "delivery lease released"),
            Ok(false) => info!(lease = %self.name, "delivery lease was no longer held"),
            Err(e) => {
                warn!(lease = %self.name, error = %e, "cannot release the delivery lease; it expires")
            }
        }
    }

    /// One acquire or renewal: `Ok(until)` when granted, else who holds it.
    async fn ask(&self) -> Result<Result<Instant, String>, TelegramError> {
        // Counted from before the request: whatever the call took, the database's expiry is
        // later than this process's view of it.
        let sent = Instant::now();
        let lease = self
            .core
            .acquire_lease(&self.name, &self.holder, self.ttl)
            .await?;
        if !lease.granted {
            return Ok(Err(lease.holder));
        }
        Ok(Ok(sent + view(lease.remaining, self.ttl)))
    }
}

/// How much of the time the core said is left this process counts on: a tenth of the ttl less
/// (at most a second), for a timer that fires late or a runtime that is busy.
fn view(remaining: Duration, ttl: Duration) -> Duration {
    remaining.saturating_sub((ttl / 10).min(Duration::from_secs(1)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_stops_counting_before_the_database_does() {
        let ttl = Duration::from_secs(10);
        assert_eq!(view(ttl, ttl), Duration::from_secs(9));
        assert_eq!(
            view(Duration::from_millis(900), Duration::from_secs(1)),
            Duration::from_millis(800)
        );
        assert_eq!(view(Duration::ZERO, ttl), Duration::ZERO);
        assert_eq!(
            view(Duration::from_secs(60), Duration::from_secs(60)),
            Duration::from_secs(59)
        );
    }
}
