//! The visitor widget in a real browser: `socketgram serve` on port 0, Debian's Chromium
//! driven through playwright-core (`tests/js/widget_e2e.mjs`) on the `/demo` page, and an
//! admin answering over gRPC. The script and this test take turns through lines on the
//! script's stdout and stdin (never sleeps); the browser-side checks are in the script.

use std::time::Duration;

use socketgram_core::store::Backend;
use socketgram_proto::v1::{self as pb, event::Kind, subscribe_request::Scope};
use socketgram_tests::{
    db::TestDb,
    node::{self, Dialogue},
    server::TestServer,
};
use tonic::Streaming;

/// One step of the script, Chromium's start and a page load included.
const STEP: Duration = Duration::from_secs(60);
/// The visitor the demo page is opened as.
const CID: u64 = 4242;
/// Messages stored before the page opens: more than the 20 shown on open, so the widget
/// must page through history.
const SEEDED: usize = 25;
/// What the script types and what the admin answers (the script uses the same texts).
const HELLO: &str = "Hello from the widget";
const REPLY: &str = "Hi, Alice here. How can I help?";
const AWAY: &str = "While you were away: we are here.";
const XSS: &str = r#"<img src=x onerror="window.__sgXss=1"> & "quotes""#;
const QUEUED: &str = "Typed before the page reloaded";
/// Demo mode for `/demo`, and a message limit under the widget's own, so that the server
/// refuses a message the widget lets through (the widget must show why).
const CONFIG: &str = "[web]\ntoken_secret = \"widget-test-secret\"\ndemo = true\ntelegram_bot = \"SocketgramTestBot\"\n[core]\ncompany = \"Acme\"\nmax_message_chars = 200\n";

fn author(kind: pb::AuthorKind, admin_id: &str) -> Option<pb::Author> {
    Some(pb::Author {
        kind: kind as i32,
        admin_id: admin_id.into(),
    })
}

async fn reply(chat: &mut socketgram_proto::client::ChatClient, text: &str) {
    chat.send_message(pb::SendMessageRequest {
        attachment_ids: Vec::new(),
        conversation_id: CID,
        author: author(pb::AuthorKind::Admin, "alice"),
        text: text.into(),
        client_msg_id: String::new(),
    })
    .await
    .expect("admin reply");
}

/// Waits until `text` is stored in the visitor's conversation.
async fn stored(events: &mut Streaming<pb::Event>, text: &str) -> pb::Message {
    loop {
        let event = tokio::time::timeout(STEP, events.message())
            .await
            .unwrap_or_else(|_| panic!("{text:?} was not stored in time"))
            .expect("subscription")
            .expect("subscription open");
        if let Some(Kind::Message(m)) = event.kind
            && m.conversation_id == CID
            && m.text == text
        {
            return m;
        }
    }
}

#[tokio::test]
async fn widget_sends_receives_and_keeps_history_in_chromium() {
    let Some(node) = node::browser().await else {
        return;
    };

    let db = TestDb::create(Backend::Sqlite)
        .await
        .expect("SQLite needs no server");
    let server = TestServer::start(&db.url, CONFIG).await;
    db.execute("INSERT INTO adm_account (aid, name, lid) VALUES ('alice', 'Alice', 2)")
        .await
        .expect("add an admin");
    let mut chat = server.chat().await;
    let mut events = chat
        .subscribe(pb::SubscribeRequest {
            scope: Some(Scope::AllConversations(true)),
            since_message_id: None,
            as_admin: String::new(),
        })
        .await
        .expect("subscribe")
        .into_inner();
    for n in 1..=SEEDED {
        chat.send_message(pb::SendMessageRequest {
            attachment_ids: Vec::new(),
            conversation_id: CID,
            author: author(pb::AuthorKind::Visitor, ""),
            text: format!("seed {n}"),
            client_msg_id: format!("seed-{n}"),
        })
        .await
        .expect("seed a message");
    }

    let shots = tempfile::tempdir().expect("temporary directory");
    let screenshot = std::env::var("WIDGET_SCREENSHOT")
        .unwrap_or_else(|_| shots.path().join("widget.png").display().to_string());
    let results = shots.path().join("files.json");
    let telegram_link = shots.path().join("telegram-link.txt");
    let mut command = node.script("widget_e2e.mjs");
    command
        .env("RESULTS", &results)
        .env("TELEGRAM_BOT", "SocketgramTestBot")
        .env("TELEGRAM_LINK", &telegram_link)
        .env("WEB_URL", server.web_url())
        .env("CID", CID.to_string())
        .env("SEEDED", SEEDED.to_string())
        .env("SCREENSHOT", &screenshot);
    let mut script = Dialogue::start("widget_e2e.mjs", command, STEP);

    // The widget is online with the history shown. Support learns who the visitor is (the
    // demo's token vouches for a name) and what the page reported (unverified).
    script.expect("ready").await;
    let told = tokio::time::timeout(STEP, async {
        loop {
            let event = events.message().await.expect("events").expect("an event");
            if let Some(Kind::VisitorContext(c)) = event.kind
                && c.conversation_id == CID
            {
                break c.context.expect("a context");
            }
        }
    })
    .await
    .expect("the widget's context delivered to support");
    let verified = told.verified.as_ref().expect("vouched for by the token");
    assert_eq!(
        (
            verified.name.as_str(),
            verified.fields.get("source").map(String::as_str)
        ),
        (format!("Demo visitor {CID}").as_str(), Some("demo"))
    );
    let page = told.page.as_ref().expect("the page reported");
    assert_eq!(page.url, format!("{}/demo?cid={CID}", server.web_url()));
    assert_eq!(
        (
            page.title.as_str(),
            page.language.as_str(),
            page.time_zone.as_str()
        ),
        ("Socketgram demo", "de-AT", "Europe/Vienna")
    );
    let conversation = chat
        .open_conversation(pb::OpenConversationRequest {
            conversation_id: CID,
        })
        .await
        .expect("open the conversation")
        .into_inner();
    assert_eq!(
        conversation.context,
        Some(told),
        "shown with the conversation"
    );

    // The widget sends a message through its UI.
    script.expect("sent").await;
    let hello = stored(&mut events, HELLO).await;
    assert_eq!(hello.direction, pb::Direction::ToSupport as i32);

    // Support answers over gRPC once the visitor's message is stored.
    reply(&mut chat, REPLY).await;
    script.tell("replied").await;

    // "Seen" both ways: the open widget marks the reply seen; support reads the visitor's
    // message, and the widget shows "Seen" under it.
    script.expect("shown").await;
    tokio::time::timeout(STEP, async {
        loop {
            let event = events.message().await.expect("events").expect("an event");
            if let Some(Kind::ReadMark(m)) = event.kind
                && m.reader == pb::Reader::Visitor as i32
                && m.up_to_message_id > hello.id
            {
                break;
            }
        }
    })
    .await
    .expect("the open widget tells support the reply is seen");
    chat.mark_read(pb::MarkReadRequest {
        conversation_id: CID,
        reader: pb::Reader::Support as i32,
        up_to_message_id: hello.id,
    })
    .await
    .expect("support reads the visitor's message");
    script.tell("support-read").await;

    // Typing both ways: the visitor's reaches support as a length (no preview configured);
    // support's shows in the widget until support stops.
    script.expect("typing").await;
    let typed = tokio::time::timeout(STEP, async {
        loop {
            let event = events.message().await.expect("events").expect("an event");
            if let Some(Kind::Typing(t)) = event.kind
                && t.admin_id.is_empty()
                && t.active
            {
                break t;
            }
        }
    })
    .await
    .expect("the widget tells support the visitor types");
    assert!(
        typed.draft_chars > 0 && typed.preview.is_none(),
        "{typed:?}"
    );
    let typing = |active: bool| pb::SetTypingRequest {
        conversation_id: CID,
        author: author(pb::AuthorKind::Admin, "alice"),
        active,
        draft_chars: u32::from(active) * 7,
        draft: String::new(),
    };
    chat.set_typing(typing(true)).await.expect("support types");
    script.tell("support-typing").await;
    script.expect("typing-shown").await;
    chat.set_typing(typing(false)).await.expect("support stops");
    script.tell("support-stopped").await;

    // Another answer while the browser is offline: the widget must catch up when it is back.
    script.expect("offline").await;
    reply(&mut chat, AWAY).await;
    script.tell("replied-away").await;

    // The script checks markup shown as text, queued sends across reloads, the history, paging.
    script.expect("done").await;
    assert!(script.finished().await, "widget_e2e.mjs failed");
    eprintln!("widget screenshots: {screenshot} and its -mobile copy");

    // Stored once each: the widget's sends and retries never duplicate.
    let history = chat
        .history(pb::HistoryRequest {
            conversation_id: CID,
            before_id: 0,
            limit: 500,
            after_id: 0,
        })
        .await
        .expect("history")
        .into_inner();
    let texts: Vec<&str> = history
        .messages
        .iter()
        .rev()
        .map(|m| m.text.as_str())
        .collect();
    assert_eq!(
        &texts[SEEDED..],
        [HELLO, REPLY, AWAY, XSS, QUEUED],
        "every message stored once"
    );

    files_stored_as_sent(&mut chat, &results).await;
    link_opened_for_the_visitor(&server, &telegram_link).await;

    assert!(
        server.terminate().await,
        "socketgram exits cleanly on SIGTERM"
    );
    db.drop_db().await;
}

/// The messages with files the script sent (it writes them to `results`) are stored once
/// each, with the files as the browser chose them: names, sniffed types, sizes, image sizes and
/// thumbnails; the file the browser saw refused left no message.
async fn files_stored_as_sent(
    chat: &mut socketgram_proto::client::ChatClient,
    results: &std::path::Path,
) {
    let sent: serde_json::Value =
        serde_json::from_slice(&std::fs::read(results).expect("the script's results"))
            .expect("results are JSON");
    let cid = sent["cid"].as_u64().expect("the conversation with files");
    let history = chat
        .history(pb::HistoryRequest {
            conversation_id: cid,
            before_id: 0,
            limit: 50,
            after_id: 0,
        })
        .await
        .expect("history of the conversation with files")
        .into_inner();
    let stored: Vec<serde_json::Value> = history
        .messages
        .iter()
        .rev()
        .map(|m| {
            serde_json::json!({
                "text": m.text,
                "attachments": m.attachments.iter().map(|a| serde_json::json!({
                    "name": a.name,
                    "type": a.content_type,
                    "size": a.size,
                    "width": a.width,
                    "height": a.height,
                    "thumbnail": a.has_thumbnail,
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    let expected: Vec<serde_json::Value> = sent["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| {
            let files: Vec<serde_json::Value> = m["attachments"]
                .as_array()
                .expect("attachments")
                .iter()
                .map(|a| {
                    serde_json::json!({
                        "name": a["name"], "type": a["type"], "size": a["size"],
                        "width": a["width"], "height": a["height"], "thumbnail": a["thumbnail"],
                    })
                })
                .collect();
            serde_json::json!({ "text": m["text"], "attachments": files })
        })
        .collect();
    assert_eq!(stored, expected, "each message with its files, once");
}

/// The start link the widget's "Continue in Telegram" opened is the bot's, and its token links
/// a Telegram chat to the widget's visitor, once.
async fn link_opened_for_the_visitor(server: &TestServer, path: &std::path::Path) {
    let link = std::fs::read_to_string(path).expect("the script wrote the start link");
    let token = link
        .strip_prefix("https://t.me/SocketgramTestBot?start=")
        .unwrap_or_else(|| panic!("a start link of the bot: {link}"));
    let mut telegram = server.telegram().await;
    let redeem = || pb::RedeemLinkTokenRequest {
        token: token.to_owned(),
        chat_id: 5_000_000_001,
    };
    let linked = telegram
        .redeem_link_token(redeem())
        .await
        .expect("the widget's link redeems")
        .into_inner();
    assert_eq!(linked.conversation_id, CID, "{linked:?}");
    let again = telegram
        .redeem_link_token(redeem())
        .await
        .expect_err("a start link works once");
    assert_eq!(again.code(), tonic::Code::NotFound, "{again:?}");
}
