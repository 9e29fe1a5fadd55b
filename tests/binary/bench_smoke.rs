//! A short run of every `socketgram-bench` scenario against the real `socketgram serve`, and
//! of every Socket.IO scenario against a stand-in for the legacy server that acknowledges
//! nothing (`tests/js/noack_server.mjs`), so the load generator keeps working against both
//! (the figures themselves live in BENCHMARKS.md).

use std::time::Duration;

use socketgram_admin_php_compat::room::HashKind;
use socketgram_bench::{Acks, Report, Target, scenarios};
use socketgram_core::store::Backend;
use socketgram_tests::{
    db::TestDb,
    noack::{NoAckOptions, NoAckServer},
    server::{TOKEN, TestServer},
};

/// Limits high enough that the generator measures the server, not the rate limiter.
const CONFIG: &str = "[legacy]\nsecret = \"qwerty\"\n[legacy.admin_param]\nname = \"adminpass\"\nvalue = \"admin\"\n\
[web.limits]\nevents_per_second = 100000\nevents_burst = 100000\nip_events_per_second = 1000000\nip_events_burst = 1000000\nconnections_per_ip = 100000\nhttp_connections_per_ip = 100000\nunauthenticated_per_ip = 100000\n";

fn check(report: Report) {
    eprint!("{}", report.table());
    assert!(report.ok(), "{}", report.json());
    assert!(
        report.expected == 0 || report.delivered == report.expected,
        "{}",
        report.json()
    );
}

#[tokio::test]
async fn every_scenario_runs_and_checks_delivery() {
    let Some(db) = TestDb::create(Backend::Sqlite).await else {
        return;
    };
    let server = TestServer::start(&db.url, CONFIG).await;
    db.execute("INSERT INTO adm_account (aid, name, lid) VALUES ('bench', 'Bench', 2)")
        .await
        .unwrap();
    let t = Target {
        server: server.web.unwrap(),
        admin_server: server.web.unwrap(),
        secret: "qwerty".into(),
        room_hash: HashKind::Md5,
        admin_param: ("adminpass".into(), "admin".into()),
        admin_login: "bench".into(),
        server_pid: None,
        db_process: None,
        grpc: Some((format!("http://{}", server.grpc), TOKEN.into())),
        cid_base: 10_000,
        source_addresses: 2,
        acks: Acks::Subscribe,
        connect_concurrency: 16,
    };
    let connect = scenarios::connect(&t, 60, 16, Duration::ZERO, false).await;
    assert_eq!(connect.figures["connected"], 60);
    check(connect);
    let handshakes = scenarios::connect(
        &Target {
            cid_base: 15_000,
            ..t.clone()
        },
        20,
        8,
        Duration::ZERO,
        true,
    )
    .await;
    assert_eq!(handshakes.figures["connected"], 20);
    check(handshakes);
    check(
        scenarios::throughput(
            &Target {
                cid_base: 20_000,
                ..t.clone()
            },
            1,
            10,
            50,
            500,
        )
        .await,
    );
    latency_scenarios(&t).await;
    check(
        scenarios::grpc(
            &Target {
                cid_base: 60_000,
                ..t.clone()
            },
            5,
            4,
            200,
        )
        .await,
    );
    // Without asking for acks too, as against the legacy server: the side-by-side figures of
    // BENCHMARKS.md drive both servers this way.
    let no_acks = Target {
        cid_base: 80_000,
        acks: Acks::None,
        ..t.clone()
    };
    let connect = scenarios::connect(&no_acks, 30, 8, Duration::ZERO, false).await;
    assert_eq!(connect.figures["connected"], 30);
    check(connect);
    check(
        scenarios::throughput(
            &Target {
                cid_base: 85_000,
                ..no_acks.clone()
            },
            7,
            10,
            50,
            500,
        )
        .await,
    );
    assert!(server.terminate().await);
    db.drop_db().await;
}

fn stand_in_target(server: &NoAckServer) -> Target {
    Target {
        server: server.addr,
        admin_server: server.addr,
        secret: "qwerty".into(),
        room_hash: HashKind::Md5,
        admin_param: ("adminpass".into(), "admin".into()),
        admin_login: "bench".into(),
        server_pid: server.pid,
        db_process: None,
        grpc: None,
        cid_base: 10_000,
        source_addresses: 2,
        acks: Acks::None,
        connect_concurrency: 16,
    }
}

/// The legacy server never acknowledges `subscribe` (nor anything else): every Socket.IO
/// scenario must still connect, deliver and check each message exactly once. A generator that
/// waits for an ack fails here (its visitors time out).
#[tokio::test]
async fn every_socketio_scenario_runs_against_a_server_without_acks() {
    let Some(server) = NoAckServer::start(&NoAckOptions::default()).await else {
        return;
    };
    let t = stand_in_target(&server);
    let connect = scenarios::connect(&t, 60, 16, Duration::ZERO, false).await;
    assert_eq!(connect.figures["connected"], 60);
    // The stand-in's memory was read before and after: the figure the side-by-side run uses.
    assert!(
        connect.figures.contains_key("server_kb_per_connection"),
        "{}",
        connect.json()
    );
    check(connect);
    let throughput = scenarios::throughput(
        &Target {
            cid_base: 20_000,
            ..t.clone()
        },
        1,
        10,
        50,
        500,
    )
    .await;
    // Each message counted twice: the admin's copy and the echo to its sender.
    assert_eq!(throughput.expected, 1000, "{}", throughput.json());
    check(throughput);
    latency_scenarios(&t).await;
}

/// A server that echoes a visitor's newest message instead of the one it stored (the legacy
/// server, LEGACY.md §9.6) makes the run report duplicates and losses, and the run still ends
/// by itself, soon after the last echo.
#[tokio::test]
async fn a_server_echoing_the_newest_message_is_reported_not_waited_for() {
    let options = NoAckOptions {
        newest_of_cid: true,
        ..NoAckOptions::default()
    };
    let Some(server) = NoAckServer::start(&options).await else {
        return;
    };
    let t = stand_in_target(&server);
    // 10 messages in flight per visitor: several are stored before the first is echoed.
    let report = tokio::time::timeout(
        Duration::from_secs(60),
        scenarios::throughput(&t, 8, 5, 50, 500),
    )
    .await
    .expect("the run ends by itself");
    eprint!("{}", report.table());
    assert!(!report.ok());
    assert_eq!(report.sent, 500);
    assert!(report.duplicated > 0, "{}", report.json());
    assert!(report.lost > 0, "{}", report.json());
    assert_eq!(
        report.delivered + report.lost,
        report.expected,
        "{}",
        report.json()
    );
    // Nothing failed but the deliveries: every send was echoed (with some message).
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!(report.figures["echo_copies"], 500, "{}", report.json());
}

/// The generator itself fails a run where a message does not arrive: here the admin login
/// does not exist, so every reply is refused.
#[tokio::test]
async fn a_run_with_refused_messages_fails() {
    let Some(db) = TestDb::create(Backend::Sqlite).await else {
        return;
    };
    let server = TestServer::start(&db.url, CONFIG).await;
    let t = Target {
        server: server.web.unwrap(),
        admin_server: server.web.unwrap(),
        secret: "qwerty".into(),
        room_hash: HashKind::Md5,
        admin_param: ("adminpass".into(), "admin".into()),
        admin_login: "nobody".into(),
        server_pid: None,
        db_process: None,
        grpc: None,
        cid_base: 70_000,
        source_addresses: 1,
        acks: Acks::Subscribe,
        connect_concurrency: 16,
    };
    let report = scenarios::admin_to_visitor(&t, 6, 2, 20, 1).await;
    assert!(!report.ok());
    assert_eq!(report.delivered, 0);
    assert_eq!(report.lost, report.sent);
    assert!(
        report.errors.iter().any(|e| e.contains("unknown admin")),
        "{:?}",
        report.errors
    );
    assert!(server.terminate().await);
    db.drop_db().await;
}

/// The latency scenarios (3, 4 and 5) on `t`, small, each checked exactly once and intact.
async fn latency_scenarios(t: &Target) {
    check(
        scenarios::visitor_to_admin(
            &Target {
                cid_base: 30_000,
                ..t.clone()
            },
            2,
            5,
            1,
            200,
            1,
        )
        .await,
    );
    check(
        scenarios::admin_to_visitor(
            &Target {
                cid_base: 40_000,
                ..t.clone()
            },
            3,
            5,
            100,
            1,
        )
        .await,
    );
    check(
        scenarios::visitor_to_admin(
            &Target {
                cid_base: 50_000,
                ..t.clone()
            },
            4,
            5,
            3,
            100,
            1,
        )
        .await,
    );
}
