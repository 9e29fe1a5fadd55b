//! A short run of every `socketgram-bench` scenario against the real `socketgram serve`, so
//! the load generator keeps working (the figures themselves live in BENCHMARKS.md).

use std::{path::Path, time::Duration};

use socketgram_admin_php_compat::room::HashKind;
use socketgram_bench::{Acks, Report, Target, scenarios};
use socketgram_core::store::Backend;
use socketgram_tests::{
    db::TestDb,
    server::{TOKEN, TestServer},
};

const BIN: &str = env!("CARGO_BIN_EXE_socketgram");

/// Limits high enough that the generator measures the server, not the rate limiter.
const CONFIG: &str = "[legacy]\nsecret = \"qwerty\"\n[legacy.admin_param]\nname = \"adminpass\"\nvalue = \"admin\"\n\
[web.limits]\nevents_per_second = 100000\nevents_burst = 100000\nip_events_per_second = 1000000\nip_events_burst = 1000000\nconnections_per_ip = 100000\n";

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
    let server = TestServer::start(Path::new(BIN), "serve", &db.url, CONFIG).await;
    db.execute("INSERT INTO adm_account (aid, name, lid) VALUES ('bench', 'Bench', 2)")
        .await
        .unwrap();
    let t = Target {
        server: server.web.unwrap(),
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
    assert!(server.terminate().await);
    db.drop_db().await;
}

/// The generator itself fails a run where a message does not arrive: here the admin login
/// does not exist, so every reply is refused.
#[tokio::test]
async fn a_run_with_refused_messages_fails() {
    let Some(db) = TestDb::create(Backend::Sqlite).await else {
        return;
    };
    let server = TestServer::start(Path::new(BIN), "serve", &db.url, CONFIG).await;
    let t = Target {
        server: server.web.unwrap(),
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
