//! The operations endpoints on the web listener, over real HTTP: `/metrics` moves with
//! traffic (events in and out, refusals, the store's commit histogram), `/healthz` answers,
//! `/readyz` is 200 while every dependency answers and 503 naming the database while it is
//! away (cut by a `FaultProxy`), then 200 again.
//!
//! Every server of this test binary shares the process's one recorder, and tests run side by
//! side: the counters are compared before and after this test's own traffic, never to exact
//! totals.

use std::time::Instant;

use socketgram_tests::proxy::FaultProxy;

use super::*;

/// `GET url`: the status and the body.
pub(super) async fn get(url: &str) -> (u16, String) {
    let response = tokio::time::timeout(Duration::from_secs(10), reqwest::get(url))
        .await
        .unwrap_or_else(|_| panic!("GET {url}: no answer in time"))
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = response.status().as_u16();
    (status, response.text().await.expect("body"))
}

/// The value of one series (`name{label="value"}` exactly as exposed) in a scrape.
fn sample(scrape: &str, series: &str) -> Option<f64> {
    scrape.lines().find_map(|line| {
        let value = line.strip_prefix(series)?.strip_prefix(' ')?;
        value.trim().parse().ok()
    })
}

/// [`sample`], 0 when the series is not there yet (a counter nothing has moved).
fn count(scrape: &str, series: &str) -> f64 {
    sample(scrape, series).unwrap_or(0.0)
}

const RECEIVED: &str = "socketgram_web_events_received_total{event=\"new message\"}";
const SENT: &str = "socketgram_web_events_sent_total{event=\"new message\"}";
const UNKNOWN: &str = "socketgram_web_events_received_total{event=\"other\"}";
const REFUSED: &str = "socketgram_web_refusals_total{code=\"unknown_event\"}";
const COMMITS: &str = "socketgram_store_commit_seconds_count{outcome=\"ok\"}";
const COMMITTED: &str = "socketgram_store_messages_committed_total";

/// A message and a refused event move their series; the gauges are there with plausible
/// values; the store histogram has buckets.
#[tokio::test]
async fn metrics_follow_the_traffic() {
    let Some((server, db)) = start(Backend::Sqlite, ROOMY).await else {
        return;
    };
    let metrics = format!("{}/metrics", server.web_url());
    let (status, before) = get(&metrics).await;
    assert_eq!(status, 200);

    let mut visitor = page(&server, 7001).await;
    say(&mut visitor, 7001, "hello, metrics").await;
    visitor.next_payload("new message").await;
    visitor.emit("no such event", &[json!({})]).await;
    assert_refusal(
        &visitor.next_payload("chat error").await,
        "no such event",
        "unknown_event",
    );

    let (status, after) = get(&metrics).await;
    assert_eq!(status, 200);
    for series in [RECEIVED, SENT, UNKNOWN, REFUSED, COMMITS, COMMITTED] {
        assert!(
            count(&after, series) >= count(&before, series) + 1.0,
            "{series} moved: before {:?}, after {:?}\n{after}",
            sample(&before, series),
            sample(&after, series)
        );
    }
    assert!(
        after.contains("socketgram_store_commit_seconds_bucket{outcome=\"ok\",le=\"0.005\"}"),
        "a histogram with buckets, not a summary:\n{after}"
    );
    // This test's socket is open (others' may be too).
    assert!(sample(&after, "socketgram_web_connections").is_some_and(|n| n >= 1.0));
    let pool = sample(&after, "socketgram_db_pool_connections").expect("pool size");
    let idle = sample(&after, "socketgram_db_pool_idle_connections").expect("idle");
    assert!(pool >= 1.0 && idle <= pool, "pool {pool}, idle {idle}");

    visitor.disconnect().await;
    stop(server, db).await;
}

/// `/healthz` and `/readyz` answer 200 on a server whose dependencies answer; `/readyz` says
/// which it checked.
#[tokio::test]
async fn healthy_and_ready() {
    let Some(db) = TestDb::create(Backend::Sqlite).await else {
        return;
    };
    let server = TestServer::start(&db.url, &config(ROOMY)).await;
    let base = server.web_url();
    assert_eq!(get(&format!("{base}/healthz")).await, (200, "ok".into()));
    let (status, body) = ready_within(&base, 200).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, "database ok\ncore_link ok\n");
    stop(server, db).await;
}

/// `/readyz` until it answers `status` (the core link opens just after the start; a database
/// is back a moment after the proxy is), for at most 10 s; the last answer.
pub(super) async fn ready_within(base: &str, status: u16) -> (u16, String) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let answer = get(&format!("{base}/readyz")).await;
        if answer.0 == status || Instant::now() > deadline {
            return answer;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// With the database cut off, `/readyz` is 503 and names it (and only it: the core link is
/// fine); `/healthz` stays 200; once the database is back, ready again.
#[tokio::test]
async fn not_ready_while_the_database_is_away() {
    let Some(db) = TestDb::create(Backend::MySql).await else {
        return;
    };
    let (proxy, proxied) = FaultProxy::in_front_of(&db.url).await;
    let server = TestServer::start(&proxied, &config(ROOMY)).await;
    let base = server.web_url();
    let (status, body) = ready_within(&base, 200).await;
    assert_eq!(status, 200, "{body}");

    proxy.cut();
    let (status, body) = ready_within(&base, 503).await;
    assert_eq!(status, 503, "{body}");
    let lines: Vec<&str> = body.lines().collect();
    assert_eq!(lines.len(), 2, "{body}");
    assert!(lines[0].starts_with("database not ready: "), "{body}");
    assert_eq!(lines[1], "core_link ok", "{body}");
    assert_eq!(get(&format!("{base}/healthz")).await.0, 200);

    proxy.restore();
    let (status, body) = ready_within(&base, 200).await;
    assert_eq!(status, 200, "ready again once the database is back: {body}");
    stop(server, db).await;
}
