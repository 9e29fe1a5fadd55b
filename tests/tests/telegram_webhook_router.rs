//! The Telegram edge's webhook served by a caller's own axum listener (how the web edge mounts
//! it): `webhook_router` merged into another router, `run_with_webhook` fed by it, the core in
//! this process but reached over gRPC, as in `socketgram serve`.

use std::sync::Arc;

use axum::routing::get;
use socketgram_core::{
    Core,
    config::{CoreConfig, Secret},
    grpc::BearerAuth,
    server::{self, GrpcConfig},
    store::{self, Backend},
};
use socketgram_edge_telegram::{
    config::{Limits, TelegramConfig, UpdateMode},
    run_with_webhook, webhook_router,
};
use socketgram_proto::client::{CoreClient, Cores};
use socketgram_tests::{
    botapi::{BotApi, TgUser, WAIT},
    db::TestDb,
};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

const TOKEN: &str = "123456:router-test";

#[tokio::test]
async fn the_webhook_router_serves_on_a_callers_listener() {
    let api = BotApi::start(TOKEN).await;
    let db = TestDb::create(Backend::Sqlite).await.expect("sqlite");
    let shutdown = CancellationToken::new();

    // The core, served on loopback, called through gRPC.
    let store = store::connect(&db.config()).await.expect("connect");
    store.migrate().await.expect("migrate");
    let core_config = CoreConfig {
        company: "Acme".into(),
        ..CoreConfig::default()
    };
    let core = Core::start(store.clone(), &core_config, shutdown.clone())
        .await
        .expect("core");
    let grpc = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let core_url = format!("http://{}", grpc.local_addr().expect("addr"));
    let auth = BearerAuth::new([Secret::new("internal")]);
    let grpc_server = tokio::spawn({
        let (core, shutdown) = (Arc::clone(&core), shutdown.clone());
        async move {
            let config = GrpcConfig::default();
            server::serve(grpc, core, &config, auth, None, shutdown.cancelled_owned()).await
        }
    });
    let client = CoreClient::lazy(&core_url, "internal").expect("client");

    // The caller's listener: its own routes plus the webhook.
    let web = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = web.local_addr().expect("addr").port();
    let config = TelegramConfig {
        token: Secret::new(TOKEN),
        mode: UpdateMode::Webhook,
        webhook_url: Some(format!("http://127.0.0.1:{port}")),
        webhook_secret: Some(Secret::new("router-secret")),
        api_url: api.url(),
        limits: Limits {
            per_chat_per_second: 1000,
            per_chat_per_minute: 100_000,
            overall_per_second: 1000,
        },
        ..TelegramConfig::default()
    };
    config.validate().expect("valid");
    let (webhook, inbox) = webhook_router(&config);
    let app = axum::Router::new()
        .route("/health", get(|| async { "ok" }))
        .merge(webhook);
    let web_server = tokio::spawn(
        axum::serve(web, app)
            .with_graceful_shutdown(shutdown.clone().cancelled_owned())
            .into_future(),
    );
    let bot = tokio::spawn(run_with_webhook(
        config,
        Cores::one(client),
        inbox,
        shutdown.clone(),
    ));

    let (url, secret) = api
        .wait_for("setWebhook", |calls| {
            calls
                .iter()
                .find(|c| c.method == "setWebhook" && c.ok)
                .map(|c| (c.body["url"].clone(), c.body["secret_token"].clone()))
        })
        .await;
    assert_eq!(url, format!("http://127.0.0.1:{port}/bot{TOKEN}"));
    assert_eq!(secret, "router-secret");

    let mut ann = TgUser::new(&api, 77, "Ann");
    let hello = ann.ask("/start").await;
    assert!(hello.text.contains("Hello, Ann!"), "{hello:?}");
    assert!(hello.text.contains("<b>Acme</b>"), "{hello:?}");
    let contacts = ann.ask("Contacts").await;
    assert!(contacts.text.contains("No contacts"), "{contacts:?}");

    // Shutdown: the bot, the caller's server and the core stop in time.
    shutdown.cancel();
    let stopped = tokio::time::timeout(WAIT, async {
        bot.await.expect("bot task").expect("bot stops cleanly");
        web_server.await.expect("web task").expect("web server");
        grpc_server.await.expect("grpc task").expect("grpc server");
    })
    .await;
    assert!(stopped.is_ok(), "everything stopped");
    store.close().await;
    db.drop_db().await;
}
