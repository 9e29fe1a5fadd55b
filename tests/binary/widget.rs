//! The visitor widget in a real browser: `socketgram serve` on port 0, Debian's Chromium
//! driven through playwright-core (`tests/js/widget_e2e.mjs`) on the `/demo` page, and an
//! admin answering over gRPC. The script and this test take turns through lines on the
//! script's stdout and stdin (never sleeps); the browser-side checks are in the script.

use std::{path::Path, process::Stdio, time::Duration};

use socketgram_core::store::Backend;
use socketgram_proto::v1::{self as pb, event::Kind, subscribe_request::Scope};
use socketgram_tests::{db::TestDb, node, server::TestServer, service_missing};
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines},
    process::{Child, ChildStdin, ChildStdout},
};
use tonic::Streaming;

/// Debian's Chromium (`apt-get install chromium`; `.ci/run` installs it).
const CHROMIUM: &str = "/usr/bin/chromium";
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
const CONFIG: &str = "[web]\ntoken_secret = \"widget-test-secret\"\ndemo = true\n[core]\ncompany = \"Acme\"\nmax_message_chars = 200\n";

fn author(kind: pb::AuthorKind, admin_id: &str) -> Option<pb::Author> {
    Some(pb::Author {
        kind: kind as i32,
        admin_id: admin_id.into(),
    })
}

async fn reply(chat: &mut socketgram_proto::client::ChatClient, text: &str) {
    chat.send_message(pb::SendMessageRequest {
        conversation_id: CID,
        author: author(pb::AuthorKind::Admin, "alice"),
        text: text.into(),
        client_msg_id: String::new(),
    })
    .await
    .expect("admin reply");
}

async fn tell(stdin: &mut ChildStdin, line: &str) {
    stdin
        .write_all(format!("{line}\n").as_bytes())
        .await
        .expect("write to the script");
    stdin.flush().await.expect("flush the script's stdin");
}

/// The next line of the script, which must be `word`.
async fn expect_line(lines: &mut Lines<BufReader<ChildStdout>>, script: &mut Child, word: &str) {
    let line = tokio::time::timeout(STEP, lines.next_line())
        .await
        .unwrap_or_else(|_| panic!("widget_e2e.mjs did not say {word:?} in time"))
        .expect("read the script's stdout");
    match line {
        Some(line) if line.trim() == word => {}
        Some(other) => panic!("widget_e2e.mjs said {other:?}, expected {word:?}"),
        None => {
            let status = script.wait().await.expect("wait for the script");
            panic!(
                "widget_e2e.mjs ended ({status}) before saying {word:?}; its stderr above says why"
            );
        }
    }
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
    if !Path::new(CHROMIUM).exists() {
        service_missing("Chromium", "no /usr/bin/chromium: apt-get install chromium");
        return;
    }
    let Some(node) = tokio::task::spawn_blocking(node::node)
        .await
        .expect("find Node.js")
    else {
        return;
    };
    if !node
        .js
        .join("node_modules/playwright-core/package.json")
        .exists()
    {
        service_missing(
            "playwright-core",
            "tests/js/node_modules lacks it: run `npm ci` in tests/js",
        );
        return;
    }

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
    let mut script = node
        .script("widget_e2e.mjs")
        .env("WEB_URL", server.web_url())
        .env("CID", CID.to_string())
        .env("SEEDED", SEEDED.to_string())
        .env("SCREENSHOT", &screenshot)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("start widget_e2e.mjs under Node.js");
    let mut stdin = script.stdin.take().expect("script stdin");
    let mut lines = BufReader::new(script.stdout.take().expect("script stdout")).lines();

    // The widget is online with the history shown. Support learns who the visitor is (the
    // demo's token vouches for a name) and what the page reported (unverified).
    expect_line(&mut lines, &mut script, "ready").await;
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
    expect_line(&mut lines, &mut script, "sent").await;
    let hello = stored(&mut events, HELLO).await;
    assert_eq!(hello.direction, pb::Direction::ToSupport as i32);

    // Support answers over gRPC once the visitor's message is stored.
    reply(&mut chat, REPLY).await;
    tell(&mut stdin, "replied").await;

    // "Seen" both ways: the open widget marks the reply seen; support reads the visitor's
    // message, and the widget shows "Seen" under it.
    expect_line(&mut lines, &mut script, "shown").await;
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
    tell(&mut stdin, "support-read").await;

    // Typing both ways: the visitor's reaches support as a length (no preview configured);
    // support's shows in the widget until support stops.
    expect_line(&mut lines, &mut script, "typing").await;
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
    tell(&mut stdin, "support-typing").await;
    expect_line(&mut lines, &mut script, "typing-shown").await;
    chat.set_typing(typing(false)).await.expect("support stops");
    tell(&mut stdin, "support-stopped").await;

    // Another answer while the browser is offline: the widget must catch up when it is back.
    expect_line(&mut lines, &mut script, "offline").await;
    reply(&mut chat, AWAY).await;
    tell(&mut stdin, "replied-away").await;

    // The script checks markup shown as text, queued sends across reloads, the history, paging.
    expect_line(&mut lines, &mut script, "done").await;
    let status = tokio::time::timeout(STEP, script.wait())
        .await
        .expect("widget_e2e.mjs did not exit")
        .expect("wait for the script");
    assert!(status.success(), "widget_e2e.mjs failed: {status}");
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

    assert!(
        server.terminate().await,
        "socketgram exits cleanly on SIGTERM"
    );
    db.drop_db().await;
}
