//! "Continue in Telegram": the widget's one-time start link, used from Telegram with
//! `/start <token>`, links the chat to the widget's visitor with no password typed; a link
//! used twice, expired, or of someone else's making links nothing.

use serde_json::{Value, json};
use socketgram_admin_php_compat::handshake::{TokenKind, TokenSigner};
use socketgram_tests::sio::{self, SioClient};

use super::*;

/// `[web] token_secret` of these tests: what the host site signs visitor tokens with.
const TOKEN_SECRET: &str = "web-token-secret-for-the-telegram-tests";
/// The username the loopback Bot API's `getMe` gives the bot.
const BOT_USERNAME: &str = "socketgram_test_bot";

/// The widget of visitor `cid`, subscribed; and the bot its `subscribe` answer names.
async fn widget(world: &World, cid: u64) -> (SioClient, Value) {
    let token =
        TokenSigner::new(TOKEN_SECRET.as_bytes()).sign(TokenKind::Visitor, &cid.to_string(), 600);
    let mut widget = SioClient::connect_token(
        &format!("widget {cid}"),
        &world.server().web_url(),
        json!({ "token": token }),
    )
    .await;
    let ack = widget.emit_ack("subscribe", &[json!({})]).await;
    (widget, ack["data"]["telegram_bot"].clone())
}

/// The token of the start link a widget's `telegram link` gives.
async fn start_token(widget: &mut SioClient) -> String {
    let ack = widget.emit_ack("telegram link", &[]).await;
    let url = ack["data"]["url"]
        .as_str()
        .unwrap_or_else(|| panic!("a start link: {ack}"));
    url.strip_prefix(&format!("https://t.me/{BOT_USERNAME}?start="))
        .unwrap_or_else(|| panic!("a link to the bot: {url}"))
        .to_owned()
}

/// With only the bot's token configured, the widget learns the bot from Telegram and offers
/// it. Its start link, opened in Telegram, links Ann's chat to visitor 123 and puts it in
/// writing mode: what she writes reaches the conversation (and the widget), support's answer
/// reaches her. The same link used again by Bob, one that expired and a parameter that is no
/// token of ours link nothing and say so; a second link moves the visitor to the chat that
/// used it, as a log-in does.
#[tokio::test]
async fn a_start_link_from_the_widget_links_the_chat_once() {
    if !sio::available().await {
        return;
    }
    let setup = Setup {
        web: format!("token_secret = \"{TOKEN_SECRET}\"\n"),
        ..Setup::default()
    };
    let world = World::start_with(Mode::Polling, "en", setup).await;
    let api = &world.api;
    let (mut web, bot) = widget(&world, 123).await;
    // getMe is asked as the server starts; the widget may have subscribed before the answer.
    let bot = if bot.is_null() {
        world
            .eventually("the bot's username from getMe", || async {
                !widget(&world, 123).await.1.is_null()
            })
            .await;
        widget(&world, 123).await.1
    } else {
        bot
    };
    assert_eq!(bot, json!(BOT_USERNAME), "the widget is told the bot");

    let token = start_token(&mut web).await;
    let mut ann = TgUser::new(api, ANN, "Ann");
    let answer = ann.ask(&format!("/start {token}")).await;
    assert_html(&answer);
    assert_eq!(
        answer.text,
        "Hello, Ann! This chat is now connected to your conversation with support (<b>id123</b>), no \
         password needed. Write here; the answers come to this chat."
    );
    assert_eq!(answer.keyboard(), keyboard(&[&["Back"]]), "in writing mode");
    let link = world.link(ANN).await.expect("Ann's chat is linked");
    assert_eq!(
        (link.conversation_id, link.mode),
        (123, pb::TelegramMode::Writing as i32)
    );
    assert!(!answer.forces_reply());
    assert_eq!(
        api.sent_to(ANN).len(),
        1,
        "one answer, no log-in dialogue: no password asked for"
    );

    let mut admin = world.admin().await;
    ann.says("hello from Telegram");
    let stored = next_message(&mut admin).await;
    assert_eq!(
        (stored.conversation_id, stored.text.as_str()),
        (123, "hello from Telegram")
    );
    assert_eq!(stored.origin, pb::AuthorKind::Telegram as i32);
    let seen = web.next_payload("new message").await;
    assert_eq!(seen["message"], "hello from Telegram", "{seen}");
    world
        .reply(123, pb::AuthorKind::Admin, "welcome here")
        .await;
    let reply = ann.next().await;
    assert!(reply.text.ends_with("welcome here"), "{reply:?}");

    // The link again, from another chat: refused, nothing linked.
    let mut bob = TgUser::new(api, BOB, "Bob");
    let refused = bob.ask(&format!("/start {token}")).await;
    assert_eq!(
        refused.text,
        "This link has expired or was used already. Open the chat on the website and press \
         “Continue in Telegram” again, or press “Log in”."
    );
    assert_eq!(refused.keyboard(), keyboard(UNLINKED));
    assert!(world.link(BOB).await.is_none());
    assert_eq!(world.link(ANN).await.map(|l| l.conversation_id), Some(123));

    // An expired link (its time moved back in the database), and another deep link's
    // parameter: the same answer.
    let expired = start_token(&mut web).await;
    world
        .db
        .execute("UPDATE sg_telegram_link_tokens SET expires_at_ms = 1")
        .await
        .expect("expire the link");
    assert!(
        bob.ask(&format!("/start {expired}"))
            .await
            .text
            .contains("expired or was used")
    );
    assert!(
        bob.ask("/start promo-2026")
            .await
            .text
            .contains("expired or was used")
    );
    assert!(world.link(BOB).await.is_none());
    // A plain /start is the greeting, as ever.
    assert!(bob.ask("/start").await.text.starts_with("Hello, Bob!"));

    // A new link used by Bob moves visitor 123 to his chat.
    let moved = start_token(&mut web).await;
    assert!(
        bob.ask(&format!("/start {moved}"))
            .await
            .text
            .contains("(<b>id123</b>)")
    );
    assert_eq!(world.link(BOB).await.map(|l| l.conversation_id), Some(123));
    assert!(world.link(ANN).await.is_none(), "Ann's older link moved");
    world.finish().await;
}
