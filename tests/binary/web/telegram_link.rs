//! "Continue in Telegram" without a password: the widget is told the bot on `subscribe`, asks
//! `telegram link` for a one-time start link of its own visitor, and the bot's side redeems
//! the token over gRPC (`Telegram.RedeemLinkToken`) once.

use sha2::{Digest as _, Sha256};
use socketgram_proto::reason as r;
use socketgram_tests::botapi::BotApi;
use tonic::Code;

use super::*;

const BOT: &str = "SocketgramTestBot";

/// The test configuration with `[web] telegram_bot`.
fn with_bot() -> String {
    config(ROOMY).replace("[web]\n", &format!("[web]\ntelegram_bot = \"{BOT}\"\n"))
}

/// The widget of `cid`, subscribed: the `subscribe` answer's data.
async fn subscribed_widget(server: &TestServer, cid: u64) -> (SioClient, Value) {
    let mut widget = SioClient::connect_token(
        &format!("widget {cid}"),
        &server.web_url(),
        json!({ "token": visitor_token(cid) }),
    )
    .await;
    let ack = widget.emit_ack("subscribe", &[json!({})]).await;
    (widget, ack["data"].clone())
}

/// The token of a `telegram link` answer, checked: a start link of the bot, a token a start
/// parameter can carry, valid for about the default ten minutes.
#[track_caller]
fn token_of(ack: &Value) -> String {
    let data = &ack["data"];
    let url = data["url"]
        .as_str()
        .unwrap_or_else(|| panic!("a link: {ack}"));
    let prefix = format!("https://t.me/{BOT}?start=");
    let token = url
        .strip_prefix(&prefix)
        .unwrap_or_else(|| panic!("{url} starts with {prefix}"));
    assert_eq!(token.len(), 22, "16 random bytes, base64url: {token}");
    assert!(
        token
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'),
        "{token}"
    );
    let expires = data["expires_at_ms"]
        .as_i64()
        .unwrap_or_else(|| panic!("expires_at_ms: {ack}"));
    let in_ms = expires - Utc::now().timestamp_millis();
    assert!(
        (540_000..=660_000).contains(&in_ms),
        "about 10 minutes: {in_ms} ms"
    );
    token.to_owned()
}

fn redeem(token: &str, chat_id: i64) -> pb::RedeemLinkTokenRequest {
    pb::RedeemLinkTokenRequest {
        token: token.into(),
        chat_id,
    }
}

/// The widget of a server with a bot is told the bot; `telegram link` gives its visitor a
/// start link whose token links a Telegram chat to that visitor's conversation once (the
/// database holds only the token's digest); a second redeem is refused with
/// LINK_TOKEN_INVALID, and a malformed token as invalid. A newer link moves the visitor's link
/// to the chat that redeems it, as a log-in does. A payload naming another visitor, and the
/// PHP admin's socket, are refused.
#[tokio::test]
async fn a_widget_continues_in_telegram_with_a_one_time_link() {
    if !sio::available().await {
        return;
    }
    let Some(db) = TestDb::create(Backend::Sqlite).await else {
        return;
    };
    let server = TestServer::start(&db.url, &with_bot()).await;
    let cid = 2101;
    let (mut widget, subscribed) = subscribed_widget(&server, cid).await;
    assert_eq!(
        subscribed,
        json!({ "conversation": cid, "typing_preview": false, "telegram_bot": BOT }),
        "the widget is told the bot"
    );

    let ack = widget.emit_ack("telegram link", &[]).await;
    let token = token_of(&ack);
    let digest = db
        .fetch_text("SELECT id FROM sg_telegram_link_tokens")
        .await
        .expect("read the tokens");
    assert_eq!(
        digest.as_deref(),
        Some(hex::encode(Sha256::digest(token.as_bytes())).as_str()),
        "the database holds the token's digest, not the token"
    );

    let mut telegram = server.telegram().await;
    let chat = 7_000_000_101;
    let link = telegram
        .redeem_link_token(redeem(&token, chat))
        .await
        .expect("the token redeems")
        .into_inner();
    assert_eq!(
        (link.chat_id, link.conversation_id, link.active),
        (chat, cid, true),
        "{link:?}"
    );
    assert_eq!(link.mode, pb::TelegramMode::Menu as i32);
    let stored = telegram
        .get_link(pb::GetTelegramLinkRequest { chat_id: chat })
        .await
        .expect("the chat is linked")
        .into_inner();
    assert_eq!(stored.conversation_id, cid);

    let again = telegram
        .redeem_link_token(redeem(&token, 7_000_000_102))
        .await
        .expect_err("a token works once");
    assert_eq!(
        (again.code(), r::of(&again).as_deref()),
        (Code::NotFound, Some(r::LINK_TOKEN_INVALID)),
        "{again:?}"
    );
    assert!(again.message().contains("used or expired"), "{again:?}");
    for malformed in ["", "not a token!", &"a".repeat(65)] {
        let refused = telegram
            .redeem_link_token(redeem(malformed, chat))
            .await
            .expect_err(malformed);
        assert_eq!(
            refused.code(),
            Code::InvalidArgument,
            "{malformed:?}: {refused:?}"
        );
    }
    let unlinked = telegram
        .get_link(pb::GetTelegramLinkRequest {
            chat_id: 7_000_000_102,
        })
        .await
        .expect_err("the refused redeem linked nothing");
    assert_eq!(unlinked.code(), Code::NotFound);

    // Another link (a new token every time); the chat that redeems it takes the visitor over.
    let newer = token_of(&widget.emit_ack("telegram link", &[json!({})]).await);
    assert_ne!(newer, token);
    let other_chat = 7_000_000_103;
    telegram
        .redeem_link_token(redeem(&newer, other_chat))
        .await
        .expect("the newer token redeems");
    let links = telegram
        .list_links(pb::ListTelegramLinksRequest {
            conversation_id: cid,
        })
        .await
        .expect("links")
        .into_inner()
        .links;
    let chats: Vec<i64> = links.iter().map(|l| l.chat_id).collect();
    assert_eq!(
        chats,
        [other_chat],
        "one chat per visitor, as a log-in links it"
    );

    // Only for the connection's own visitor.
    let forged = widget
        .emit_ack("telegram link", &[json!({ "username": cid + 1 })])
        .await;
    assert_refusal(&forged["error"], "telegram link", "forbidden");
    let mut php = admin(&server).await;
    let ack = php.emit_ack("telegram link", &[]).await;
    assert_refusal(&ack["error"], "telegram link", "forbidden");
    stop(server, db).await;
}

/// Without `[web] telegram_bot` (and no bot token), the widget is told there is no bot and
/// `telegram link` is refused, saying what is missing; no token is made.
#[tokio::test]
async fn without_a_bot_there_is_no_telegram_link() {
    let Some((server, db)) = start(Backend::Sqlite, ROOMY).await else {
        return;
    };
    let cid = 2102;
    let (mut widget, subscribed) = subscribed_widget(&server, cid).await;
    assert_eq!(
        subscribed,
        json!({ "conversation": cid, "typing_preview": false, "telegram_bot": null })
    );
    let ack = widget.emit_ack("telegram link", &[]).await;
    assert_refusal(&ack["error"], "telegram link", "refused");
    let message = ack["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("telegram_bot"), "{ack}");
    let rows = db
        .fetch_text("SELECT CAST(COUNT(*) AS CHAR) FROM sg_telegram_link_tokens")
        .await
        .expect("count tokens");
    assert_eq!(rows.as_deref(), Some("0"));
    stop(server, db).await;
}

/// With the bot's token and no `[web] telegram_bot`, `socketgram serve` asks Telegram who the
/// bot is and the widget offers that bot.
#[tokio::test]
async fn serve_offers_the_bot_telegram_names_for_the_token() {
    if !sio::available().await {
        return;
    }
    let Some(db) = TestDb::create(Backend::Sqlite).await else {
        return;
    };
    let api = BotApi::start("123456:TEST-token_for-the-fake-api").await;
    let toml = format!(
        "{}\n[telegram]\ntoken = \"123456:TEST-token_for-the-fake-api\"\napi_url = \"{}\"\n",
        config(ROOMY),
        api.url()
    );
    let server = TestServer::start(&db.url, &toml).await;
    // The username comes from `getMe` after the start: each new widget is told what is known
    // when it subscribes, so widgets connect until one is told the bot (or too many were not).
    let mut attempts = 0;
    let told = loop {
        let (mut widget, subscribed) = subscribed_widget(&server, 2103).await;
        widget.disconnect().await;
        if !subscribed["telegram_bot"].is_null() {
            break subscribed["telegram_bot"].clone();
        }
        attempts += 1;
        assert!(attempts < 100, "the bot's username never came");
    };
    assert_eq!(told, json!("socketgram_test_bot"), "the name getMe gives");
    stop(server, db).await;
}
