//! The operator console in real browsers, as the README's "First five minutes" has a new team
//! meet it: `socketgram serve` on port 0 configured as a fresh install, the first admins
//! created with the `socketgram admin` commands the first-run page shows, two staff members in
//! two Chromiums and a visitor (the widget on the console's "Test as a visitor" page), driven
//! by `tests/js/console_e2e.mjs`. The script
//! checks the pages (including axe-core's accessibility audit); this test runs the commands
//! and checks what the database holds afterwards.

use std::time::Duration;

use socketgram_core::store::Backend;
use socketgram_proto::v1 as pb;
use socketgram_tests::{
    db::TestDb,
    node::{self, Dialogue},
    server::TestServer,
};

/// One step of the script: Chromium's start and a page load included.
const STEP: Duration = Duration::from_secs(90);
/// The visitor the demo page is opened as.
const CID: u64 = 5151;
/// As a fresh install has it (no token secret, no demo page), with a company to sign replies.
const CONFIG: &str = "[core]\ncompany = \"Acme\"\n";

/// `socketgram <args>` on the test's database, reading `stdin`, as a person types it.
async fn socketgram(db: &TestDb, args: &[&str], stdin: &str) {
    let (ok, out) = socketgram_tests::server::run_command(
        env!("CARGO_BIN_EXE_socketgram"),
        &db.url,
        args,
        stdin,
    )
    .await;
    assert!(ok, "socketgram {args:?}: {out}");
}

#[tokio::test]
async fn two_staff_members_answer_a_visitor_from_the_console_in_chromium() {
    let Some(node) = node::browser().await else {
        return;
    };
    let db = TestDb::create(Backend::Sqlite)
        .await
        .expect("SQLite needs no server");
    let server = TestServer::start(&db.url, CONFIG).await;
    let shots = std::env::var("CONSOLE_SCREENSHOTS").ok();
    let mut command = node.script("console_e2e.mjs");
    command
        .env("WEB_URL", server.web_url())
        .env("CID", CID.to_string());
    if let Some(dir) = &shots {
        command.env("SHOTS", dir);
    }
    let mut script = Dialogue::start("console_e2e.mjs", command, STEP);

    // What the first-run page says to type, typed.
    script.expect("first-run").await;
    socketgram(&db, &["admin", "add", "alice", "Alice"], "").await;
    socketgram(&db, &["admin", "passwd", "alice"], "alice password 1\n").await;
    socketgram(&db, &["admin", "add", "bob", "Bob"], "").await;
    socketgram(&db, &["admin", "passwd", "bob"], "bob password 12\n").await;
    socketgram(&db, &["admin", "add", "guest", "Guest", "--role", "0"], "").await;
    socketgram(&db, &["admin", "passwd", "guest"], "guest password 1\n").await;
    // A canned reply the team saved (over gRPC, as a backend would).
    server
        .chat()
        .await
        .put_canned_reply(pb::PutCannedReplyRequest {
            shortcut: "thanks".into(),
            text: "Thank you for writing to Acme!".into(),
            updated_by: "alice".into(),
        })
        .await
        .expect("a canned reply");
    script.tell("admins").await;

    script.expect("done").await;
    assert!(script.finished().await, "console_e2e.mjs failed");

    // What the browsers did is what is stored: the reply signed by Alice, hers to keep.
    let mut chat = server.chat().await;
    let history = chat
        .history(pb::HistoryRequest {
            conversation_id: CID,
            before_id: 0,
            limit: 50,
            after_id: 0,
        })
        .await
        .expect("history")
        .into_inner();
    let texts: Vec<(String, String)> = history
        .messages
        .iter()
        .rev()
        .map(|m| (m.text.clone(), m.admin_display_name.clone()))
        .collect();
    assert_eq!(
        texts,
        [
            ("Hello, my order did not arrive".to_owned(), String::new()),
            (
                "Hi, Alice here. Let me look.".to_owned(),
                "Alice Acme".to_owned()
            ),
            (
                "Thank you for writing to Acme!".to_owned(),
                "Alice Acme".to_owned()
            ),
            ("It came today, thank you!".to_owned(), String::new()),
        ],
        "each message stored once"
    );
    let conversation = chat
        .open_conversation(pb::OpenConversationRequest {
            conversation_id: CID,
        })
        .await
        .expect("the conversation")
        .into_inner();
    assert_eq!(conversation.assignee, "alice");
    assert_eq!(
        conversation.status,
        pb::ConversationStatus::Resolved as i32,
        "resolved from the keyboard, last"
    );
    let notes = chat
        .list_notes(pb::ListNotesRequest {
            conversation_id: CID,
        })
        .await
        .expect("notes")
        .into_inner()
        .notes;
    assert_eq!(
        notes
            .iter()
            .map(|n| (n.admin_id.as_str(), n.text.as_str()))
            .collect::<Vec<_>>(),
        [(
            "alice",
            "Courier lost the parcel; refund if it is not there by Friday"
        )]
    );
    if let Some(dir) = shots {
        eprintln!("console screenshots in {dir}");
    }
    assert!(server.terminate().await, "socketgram exits cleanly");
    db.drop_db().await;
}
