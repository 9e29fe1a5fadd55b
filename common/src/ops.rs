//! What every process serves for operations: `GET /metrics` (Prometheus text exposition of
//! everything recorded through the `metrics` facade), `GET /healthz` (the process runs) and
//! `GET /readyz` (every dependency the role registered answers). Each role (the core, the web
//! edge, the Telegram edge) adds its own readiness checks to an [`Ops`] and mounts
//! [`Ops::router`] on a listener it already has.

use std::{
    fmt,
    future::Future,
    pin::Pin,
    sync::{Arc, OnceLock},
    time::Duration,
};

use axum::{
    Router,
    extract::State,
    http::{StatusCode, header},
    response::IntoResponse,
    routing::get,
};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing::{debug, warn};

/// How long one readiness check may take before it counts as failed: a probe (Kubernetes,
/// a load balancer) waits a few seconds at most, and a dependency that answers slower than
/// this is not one to send traffic through.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// Buckets (seconds) of every `*_seconds` histogram: a commit or call takes from under a
/// millisecond (SQLite, loopback) to seconds (a database failing over).
const LATENCY_BUCKETS: &[f64] = &[
    0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// How often histograms are folded into their buckets when nobody scrapes: their samples
/// are kept until then, so without this an unscraped process would grow.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// Why a dependency is not ready; the text `/readyz` shows for it.
#[derive(Debug, thiserror::Error)]
pub enum NotReady {
    /// The check ran and the dependency said no (or could not be reached).
    #[error("{0}")]
    Failed(String),
    /// The check did not finish within [`CHECK_TIMEOUT`].
    #[error("no answer within {} ms", .0.as_millis())]
    TimedOut(Duration),
}

impl NotReady {
    /// A failed check, from anything that says why.
    pub fn because(why: impl fmt::Display) -> Self {
        Self::Failed(why.to_string())
    }
}

type CheckFuture = Pin<Box<dyn Future<Output = Result<(), NotReady>> + Send>>;
type Check = Arc<dyn Fn() -> CheckFuture + Send + Sync>;
type Sampler = Arc<dyn Fn() + Send + Sync>;

/// The operations endpoints of one process: its metrics and the readiness checks its roles
/// registered. Built with [`Ops::new`], then [`Ops::ready`] / [`Ops::sample`] per role, then
/// served with [`Ops::router`].
#[derive(Clone)]
pub struct Ops {
    metrics: PrometheusHandle,
    /// In registration order, which is the order `/readyz` lists them in.
    checks: Vec<(&'static str, Check)>,
    /// Gauges read from their source at each scrape (a pool's size) rather than kept up to
    /// date on every change.
    samplers: Vec<Sampler>,
}

impl fmt::Debug for Ops {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let checks: Vec<_> = self.checks.iter().map(|(name, _)| name).collect();
        f.debug_struct("Ops").field("checks", &checks).finish()
    }
}

impl Default for Ops {
    fn default() -> Self {
        Self::new()
    }
}

/// The outcome of every readiness check, in registration order.
#[derive(Debug)]
pub struct Readiness(pub Vec<(&'static str, Result<(), NotReady>)>);

impl Readiness {
    /// Whether every check passed (true when there are none: nothing to wait for).
    pub fn is_ready(&self) -> bool {
        self.0.iter().all(|(_, outcome)| outcome.is_ok())
    }
}

impl fmt::Display for Readiness {
    /// One line per check: `database ok`, or `database not ready: <why>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (name, outcome) in &self.0 {
            match outcome {
                Ok(()) => writeln!(f, "{name} ok")?,
                Err(e) => writeln!(f, "{name} not ready: {e}")?,
            }
        }
        Ok(())
    }
}

impl Ops {
    /// Empty checks, on this process's Prometheus recorder (installed on first use).
    pub fn new() -> Self {
        Self {
            metrics: recorder(),
            checks: Vec::new(),
            samplers: Vec::new(),
        }
    }

    /// Adds a readiness check named `name` (what `/readyz` calls the dependency). It runs on
    /// every `/readyz`, beside the others, within [`CHECK_TIMEOUT`].
    pub fn ready<F, Fut>(mut self, name: &'static str, check: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), NotReady>> + Send + 'static,
    {
        self.checks
            .push((name, Arc::new(move || Box::pin(check()) as CheckFuture)));
        self
    }

    /// Adds a sampler, run before each `/metrics` render (it sets gauges from their source).
    pub fn sample(mut self, sampler: impl Fn() + Send + Sync + 'static) -> Self {
        self.samplers.push(Arc::new(sampler));
        self
    }

    /// Runs every check at once, each within [`CHECK_TIMEOUT`].
    pub async fn readiness(&self) -> Readiness {
        let runs = self.checks.iter().map(|(name, check)| async move {
            let outcome = match tokio::time::timeout(CHECK_TIMEOUT, check()).await {
                Ok(outcome) => outcome,
                Err(_) => Err(NotReady::TimedOut(CHECK_TIMEOUT)),
            };
            (*name, outcome)
        });
        Readiness(futures::future::join_all(runs).await)
    }

    /// The Prometheus text exposition, after the samplers ran.
    pub fn render(&self) -> String {
        for sampler in &self.samplers {
            sampler();
        }
        self.metrics.render()
    }

    /// `GET /metrics`, `GET /healthz` and `GET /readyz`, to merge into a listener's router.
    pub fn router(self) -> Router {
        Router::new()
            .route("/metrics", get(metrics))
            .route("/healthz", get(|| async { "ok" }))
            .route("/readyz", get(readyz))
            .with_state(Arc::new(self))
    }
}

async fn metrics(State(ops): State<Arc<Ops>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        ops.render(),
    )
}

async fn readyz(State(ops): State<Arc<Ops>>) -> impl IntoResponse {
    let readiness = ops.readiness().await;
    let status = if readiness.is_ready() {
        StatusCode::OK
    } else {
        // Probes call this every few seconds: one line per failed probe at DEBUG is enough,
        // the failing dependency logs its own errors.
        debug!(%readiness, "not ready");
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        readiness.to_string(),
    )
}

/// This process's Prometheus recorder, installed as the `metrics` global recorder on first
/// use. The facade has one recorder per process by design (the call sites are macros with no
/// handle to pass), so this is the one process-wide value here; tests start several servers
/// in one process, and all of them share it.
fn recorder() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new();
            let builder = builder
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
                .unwrap_or_else(|e| {
                    // Only an empty bucket list is refused: summaries instead of histograms.
                    warn!(error = %e, "metrics: latency buckets refused");
                    PrometheusBuilder::new()
                });
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            if let Err(e) = metrics::set_global_recorder(recorder) {
                // Someone else's recorder (an embedding program's): it gets the values and
                // /metrics shows none of them.
                warn!(error = %e, "metrics: another recorder is installed; /metrics stays empty");
            }
            let upkeep = handle.clone();
            let spawned = std::thread::Builder::new()
                .name("metrics-upkeep".into())
                .spawn(move || {
                    loop {
                        std::thread::sleep(UPKEEP_EVERY);
                        upkeep.run_upkeep();
                    }
                });
            if let Err(e) = spawned {
                warn!(error = %e, "metrics: no upkeep thread; histograms fold in at each scrape only");
            }
            handle
        })
        .clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn readiness_names_what_failed_and_times_out_slow_checks() {
        let ops = Ops::new()
            .ready("fine", || async { Ok(()) })
            .ready("broken", || async { Err(NotReady::because("refused")) })
            .ready("slow", || async {
                tokio::time::sleep(CHECK_TIMEOUT * 10).await;
                Ok(())
            });
        let readiness = ops.readiness().await;
        assert!(!readiness.is_ready());
        assert_eq!(
            readiness.to_string(),
            "fine ok\nbroken not ready: refused\nslow not ready: no answer within 2000 ms\n"
        );
        assert!(Ops::new().readiness().await.is_ready());
    }

    #[test]
    fn one_recorder_however_many_ops() {
        let (a, b) = (Ops::new(), Ops::new());
        metrics::counter!("socketgram_ops_selftest_total").increment(1);
        let sampled = b.sample(|| metrics::gauge!("socketgram_ops_sampled").set(7.0));
        assert!(a.render().contains("socketgram_ops_selftest_total 1"));
        assert!(sampled.render().contains("socketgram_ops_sampled 7"));
    }
}
