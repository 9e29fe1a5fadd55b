//! The web edge end to end, as the legacy pages and the unchanged PHP admin use it: the real
//! `socketgram serve` on port 0, driven by the official `socket.io-client` under Node.js
//! ([`SioClient`]), with the database checked the way the PHP admin reads it (LEGACY.md §2-§6,
//! and the defects of §9 that must be gone).
//!
//! Without Node.js (or, for the MariaDB case, without MariaDB) these tests print `SKIPPED`,
//! except under `CI=true`, where they fail. They synchronise on received events; the only
//! waits are the bounded windows in which something must *not* arrive.

use std::time::Duration;

use chrono::{NaiveDateTime, TimeDelta, Utc};
use socketgram_admin_php_compat::{
    handshake::{TokenKind, TokenSigner},
    room::{HashKind, room_of},
};
use socketgram_core::store::Backend;
use socketgram_proto::v1 as pb;
use socketgram_tests::{
    db::TestDb,
    server::TestServer,
    sio::{self, Handshake, SioClient, Value, json},
};
use sqlx::{Connection, Row};

/// The legacy secret and hash of room names, shared with the host site and the PHP admin.
const SECRET: &str = "qwerty";
/// `[web] token_secret`: what the host site signs visitor tokens with.
const TOKEN_SECRET: &str = "web-token-secret-for-the-tests";
/// How long something that must not happen is given to happen anyway.
const QUIET: Duration = Duration::from_millis(400);

/// The configuration of the legacy deployment (LEGACY.md §8) plus `[web]` with these limits.
fn config(limits: &str) -> String {
    format!(
        "[legacy]\nsecret = \"{SECRET}\"\nroom_hash = \"md5\"\n\n\
         [legacy.admin_param]\nname = \"adminpass\"\nvalue = \"admin\"\n\n\
         [core]\ncompany = \"Acme\"\ngmt_offset_hours = 3\n\n\
         [web]\ntoken_secret = \"{TOKEN_SECRET}\"\n\n[web.limits]\n{limits}"
    )
}

/// Limits no test reaches except the flood test, which sets its own.
const ROOMY: &str = "events_per_second = 1000\nevents_burst = 1000\n\
                     ip_events_per_second = 10000\nip_events_burst = 10000\n\
                     connections_per_ip = 100\n";

/// A running server with its database; `None` when Node.js or the database is missing
/// (after printing `SKIPPED`, or failing under CI).
async fn start(backend: Backend, limits: &str) -> Option<(TestServer, TestDb)> {
    if !sio::available().await {
        return None;
    }
    let db = TestDb::create(backend).await?;
    let server = TestServer::start(&db.url, &config(limits)).await;
    Some((server, db))
}

async fn stop(server: TestServer, db: TestDb) {
    assert!(
        server.terminate().await,
        "socketgram exits cleanly on SIGTERM"
    );
    db.drop_db().await;
}

/// The room the host site and the PHP admin compute for `cid` (LEGACY.md §1).
fn room(cid: u64) -> String {
    room_of(HashKind::Md5, &cid.to_string(), SECRET)
}

/// The legacy visitor page for `cid`, connected but not subscribed.
async fn visitor(server: &TestServer, cid: u64) -> SioClient {
    SioClient::connect_legacy_visitor(&server.web_url(), cid, &room(cid)).await
}

/// The PHP admin, connected with its configured query parameter.
async fn admin(server: &TestServer) -> SioClient {
    SioClient::connect_legacy_admin(&server.web_url(), "adminpass", "admin").await
}

/// What the legacy page sends right after connecting: `subscribe {room, username}`, the id
/// as the page has it (from its URL: a string).
fn subscription(cid: u64) -> Value {
    json!({ "room": room(cid), "username": cid.to_string() })
}

async fn subscribe(v: &mut SioClient, cid: u64) {
    v.emit("subscribe", &[subscription(cid)]).await;
}

/// The legacy page's handshake: it subscribes from its `connect` handler, at once.
fn page_handshake(server: &TestServer, cid: u64) -> Handshake {
    Handshake::legacy_visitor(&server.web_url(), cid, &room(cid))
        .emitting_on_connect("subscribe", vec![subscription(cid)])
}

/// The legacy visitor page for `cid`, connected and subscribed as the page does it.
async fn page(server: &TestServer, cid: u64) -> SioClient {
    SioClient::open(&format!("page {cid}"), &page_handshake(server, cid))
        .await
        .unwrap_or_else(|e| panic!("page {cid}: handshake refused: {e}"))
}

/// The legacy page sending a message.
async fn say(v: &mut SioClient, cid: u64, text: &str) {
    v.emit(
        "new message",
        &[json!({ "username": cid.to_string(), "message": text, "room": room(cid) })],
    )
    .await;
}

/// The PHP admin replying as `adm`, with `username` as it came in the message payloads (a
/// number).
async fn reply(a: &mut SioClient, cid: u64, adm: &str, text: &str) {
    a.emit(
        "new message:servadm",
        &[json!({ "username": cid, "message": text, "room": room(cid), "adm": adm })],
    )
    .await;
}

/// A visitor token as the host site mints it.
fn visitor_token(cid: u64) -> String {
    TokenSigner::new(TOKEN_SECRET.as_bytes()).sign(TokenKind::Visitor, &cid.to_string(), 600)
}

/// Checks a `new message` / `new message history` payload, its fields and their JSON types
/// (LEGACY.md §4), and returns its `label` (the message id).
#[track_caller]
fn legacy_message(p: &Value, cid: u64, message: &str, adm: &str) -> u64 {
    let fields: Vec<&str> = p
        .as_object()
        .unwrap_or_else(|| panic!("a message payload is an object: {p}"))
        .keys()
        .map(String::as_str)
        .collect();
    let mut sorted = fields.clone();
    sorted.sort_unstable();
    assert_eq!(
        sorted,
        ["adm", "date", "label", "message", "username"],
        "fields of {p}"
    );
    assert!(p["username"].is_u64(), "`username` is a number: {p}");
    assert_eq!(p["username"].as_u64(), Some(cid), "{p}");
    assert_eq!(p["message"].as_str(), Some(message), "{p}");
    assert!(
        p["adm"].is_string(),
        "`adm` is a string (\"0\" for a visitor): {p}"
    );
    assert_eq!(p["adm"].as_str(), Some(adm), "{p}");
    let date = p["date"]
        .as_str()
        .unwrap_or_else(|| panic!("`date` is a string: {p}"));
    assert_eq!(date.len(), 19, "`date` is YYYY-MM-DD HH:MM:SS: {p}");
    NaiveDateTime::parse_from_str(date, "%Y-%m-%d %H:%M:%S")
        .unwrap_or_else(|e| panic!("`date` {date:?}: {e}"));
    p["label"]
        .as_u64()
        .unwrap_or_else(|| panic!("`label` is a number: {p}"))
}

/// `date` is the wall clock of GMT+3 now, not shifted once more (LEGACY.md §9.9).
#[track_caller]
fn assert_gmt3_now(date: &str) {
    let date = NaiveDateTime::parse_from_str(date, "%Y-%m-%d %H:%M:%S").expect("date");
    let now = Utc::now().naive_utc() + TimeDelta::hours(3);
    let skew = (now - date).num_seconds().abs();
    assert!(
        skew < 120,
        "date {date} is not now at GMT+3 ({now}): off by {skew} s"
    );
}

/// The `add history button` / `drop history button` events carry nothing the pages read.
#[track_caller]
fn assert_no_data(name: &str, args: &[Value]) {
    assert!(
        args.is_empty() || args == [Value::Null],
        "{name:?} carries no payload, got {args:?}"
    );
}

/// A `chat error` for `event` with `code` and a message for people.
#[track_caller]
fn assert_refusal(p: &Value, event: &str, code: &str) {
    assert_eq!(p["event"].as_str(), Some(event), "refused event in {p}");
    assert_eq!(p["code"].as_str(), Some(code), "code in {p}");
    let message = p["message"].as_str().unwrap_or_default();
    assert!(!message.trim().is_empty(), "a refusal says why: {p}");
}

/// HTML entities back to text (what a browser shows for an escaped string).
fn unescape(html: &str) -> String {
    html.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#x27;", "'")
        .replace("&#39;", "'")
        .replace("&#x2F;", "/")
        .replace("&amp;", "&")
}

/// Text as a page that inserts it as HTML must get it: nothing a browser would parse as
/// markup, and showing exactly `text`.
#[track_caller]
fn assert_escaped(html: &str, text: &str) {
    assert!(
        !html.contains(['<', '>', '"', '\'']),
        "{html:?} would be parsed as markup"
    );
    assert_eq!(unescape(html), text, "{html:?} shows as the text typed");
}

/// A row of `messages` as the PHP admin reads it (every column as text).
#[derive(Debug, PartialEq)]
struct Stored {
    cid: String,
    aid: String,
    direction: String,
    date: String,
    message: String,
    check_msg: String,
    check_msg_admin: String,
}

async fn stored(db: &TestDb, id: u64) -> Stored {
    let column = async |c: &str| {
        db.fetch_text(&format!(
            "SELECT CAST({c} AS CHAR) FROM messages WHERE id = {id}"
        ))
        .await
        .expect("read messages")
        .unwrap_or_else(|| panic!("message {id} is in `messages`"))
    };
    Stored {
        cid: column("cid").await,
        aid: column("aid").await,
        direction: column("direction").await,
        date: column("date").await,
        message: column("message").await,
        check_msg: column("check_msg").await,
        check_msg_admin: column("check_msg_admin").await,
    }
}

/// `SELECT COUNT(*) ...` as a number.
async fn count(db: &TestDb, condition: &str) -> u64 {
    db.fetch_text(&format!(
        "SELECT CAST(COUNT(*) AS CHAR) FROM messages WHERE {condition}"
    ))
    .await
    .expect("count messages")
    .and_then(|n| n.parse().ok())
    .expect("a count")
}

/// The PHP admin creates an admin: a row in `adm_account`, straight into the database.
async fn add_admin(db: &TestDb, aid: &str, name: &str) {
    db.execute(&format!(
        "INSERT INTO adm_account (aid, name, lid) VALUES ('{aid}', '{name}', 2)"
    ))
    .await
    .expect("insert into adm_account");
}

/// A message put in through gRPC (to build a history quickly).
#[derive(Clone, Debug)]
struct Seeded {
    id: u64,
    text: String,
    /// What the legacy pages show in `adm`.
    adm: String,
}

/// `n` messages of `cid`: the visitor opens the conversation, then every third is a reply of
/// `alice` (who must exist in `adm_account`).
async fn seed(server: &TestServer, cid: u64, n: usize) -> Vec<Seeded> {
    let mut chat = server.chat().await;
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let from_admin = i % 3 == 2;
        let text = format!("seed {cid} #{i}");
        let author = if from_admin {
            pb::Author {
                kind: pb::AuthorKind::Admin as i32,
                admin_id: "alice".into(),
            }
        } else {
            pb::Author {
                kind: pb::AuthorKind::Visitor as i32,
                admin_id: String::new(),
            }
        };
        let sent = chat
            .send_message(pb::SendMessageRequest {
                conversation_id: cid,
                author: Some(author),
                text: text.clone(),
                client_msg_id: String::new(),
            })
            .await
            .expect("seed a message")
            .into_inner();
        let id = sent.message.expect("the stored message").id;
        let adm = if from_admin { "Alice Acme" } else { "0" };
        out.push(Seeded {
            id,
            text,
            adm: adm.into(),
        });
    }
    out
}

/// Consumes what `subscribe` sends: exactly `expected` as `new message`, oldest first, then
/// `add history button` when `button` (and none when not).
async fn expect_subscribe_history(v: &mut SioClient, cid: u64, expected: &[Seeded], button: bool) {
    for s in expected {
        let (name, args) = v.next_any().await;
        assert_eq!(name, "new message", "history on subscribe: {args:?}");
        assert_eq!(
            legacy_message(&args[0], cid, &s.text, &s.adm),
            s.id,
            "oldest first"
        );
    }
    if button {
        let (name, args) = v.next_any().await;
        assert_eq!(name, "add history button", "after the last 20: {args:?}");
        assert_no_data(&name, &args);
    } else {
        v.expect_none("add history button", QUIET).await;
    }
}

/// `take history` before `mid`: `drop history button`, then exactly `expected` (newest first)
/// as `new message history`, then `add history button` when `button`.
async fn expect_history_page(
    v: &mut SioClient,
    cid: u64,
    mid: u64,
    expected: &[&Seeded],
    button: bool,
) {
    v.emit(
        "take history",
        &[json!({ "username": cid.to_string(), "room": room(cid), "mid": mid })],
    )
    .await;
    expect_page(v, cid, expected, button).await;
}

/// Consumes one answer to `take history` on `v` (which may not be the socket that asked):
/// `drop history button`, exactly `expected` (newest first) as `new message history`, then
/// `add history button` when `button`.
async fn expect_page(v: &mut SioClient, cid: u64, expected: &[&Seeded], button: bool) {
    let (name, args) = v.next_any().await;
    assert_eq!(
        name, "drop history button",
        "first of a history page: {args:?}"
    );
    assert_no_data(&name, &args);
    for s in expected {
        let (name, args) = v.next_any().await;
        assert_eq!(name, "new message history", "{args:?}");
        assert_eq!(
            legacy_message(&args[0], cid, &s.text, &s.adm),
            s.id,
            "newest first"
        );
    }
    if button {
        let (name, args) = v.next_any().await;
        assert_eq!(name, "add history button", "more than 10 older: {args:?}");
        assert_no_data(&name, &args);
    } else {
        v.expect_none("add history button", QUIET).await;
    }
}

/// A visitor and an admin talk exactly as the legacy page and the PHP admin scripts do.
#[tokio::test]
async fn legacy_visitor_and_admin_exchange() {
    // The default limits: what a deployment gets without configuring any.
    let Some((server, db)) = start(Backend::Sqlite, "").await else {
        return;
    };
    let url = server.web_url();
    // LEGACY.md §1's example, as PHP's `hash('md5', 'id123qwerty')` gives it.
    assert_eq!(room(123), "d40ed66970d4189e525cf1b0f0ab3f9a");

    let mut admin = admin(&server).await;
    // The PHP admin loads the Socket.IO browser client from the chat server (LEGACY.md §2).
    let (status, content_type, body) = admin.fetch(&format!("{url}/socket.io/socket.io.js")).await;
    assert_eq!(status, 200);
    assert!(content_type.unwrap_or_default().contains("javascript"));
    assert!(
        body.starts_with("/*!\n * Socket.IO v4."),
        "the official v4 client: {:?}",
        &body[..60.min(body.len())]
    );

    // The PHP admin creates an admin, then tells the server.
    add_admin(&db, "alice", "Alice").await;
    admin.emit("update admlist", &[]).await;

    let mut visitor = page(&server, 123).await;
    assert_eq!(admin.next_payload("online").await, json!({ "cid": "123" }));
    visitor.expect_none("add history button", QUIET).await;

    // Each message arrives once, as itself (LEGACY.md §9.6), at the sender and at the admin,
    // with the same payload. (Messages sent back to back: `messages_of_one_socket_keep_their_order`.)
    let texts = ["Hello", "I need help", "with my order #42"];
    let mut labels = Vec::new();
    for text in texts {
        say(&mut visitor, 123, text).await;
        let mine = visitor.next_payload("new message").await;
        let label = legacy_message(&mine, 123, text, "0");
        assert_gmt3_now(mine["date"].as_str().unwrap());
        assert_eq!(
            admin.next_payload("new message").await,
            mine,
            "the admin sees what the visitor sees"
        );
        labels.push((label, mine));
    }
    assert!(
        labels.windows(2).all(|w| w[0].0 < w[1].0),
        "labels increase: {labels:?}"
    );

    // The admin opens the conversation and answers.
    admin
        .emit(
            "subscribe:servadm",
            &[json!({ "room": room(123), "adm": "alice" })],
        )
        .await;
    reply(&mut admin, 123, "alice", "Hi, how can I help?").await;
    let answer = visitor.next_payload("new message").await;
    let answer_label = legacy_message(&answer, 123, "Hi, how can I help?", "Alice Acme");
    assert!(answer_label > labels[2].0);
    assert_gmt3_now(answer["date"].as_str().unwrap());
    assert_eq!(admin.next_payload("new message").await, answer);
    labels.push((answer_label, answer));

    // Stored exactly as the PHP admin reads it (LEGACY.md §5, §6), at once.
    for (i, (label, payload)) in labels.iter().enumerate() {
        let row = stored(&db, *label).await;
        let from_admin = i == 3;
        let expected = Stored {
            cid: "123".into(),
            aid: if from_admin { "alice" } else { "0" }.into(),
            direction: if from_admin { "2" } else { "1" }.into(),
            date: payload["date"].as_str().unwrap().into(),
            message: payload["message"].as_str().unwrap().into(),
            check_msg: if from_admin { "0" } else { "1" }.into(),
            check_msg_admin: if from_admin { "1" } else { "0" }.into(),
        };
        assert_eq!(row, expected, "message {label}");
    }
    assert_eq!(count(&db, "1 = 1").await, 4);
    visitor.expect_none("chat error", QUIET).await;
    admin.expect_none("chat error", Duration::ZERO).await;

    visitor.disconnect().await;
    assert_eq!(admin.next_payload("offline").await, json!({ "cid": "123" }));
    stop(server, db).await;
}

/// `subscribe` sends the last 20 messages oldest first, and `add history button` only when
/// more than 20 exist (LEGACY.md §3): 20 and 21.
#[tokio::test]
async fn subscribe_sends_the_last_20_and_the_button_only_beyond() {
    let Some((server, db)) = start(Backend::Sqlite, ROOMY).await else {
        return;
    };
    add_admin(&db, "alice", "Alice").await;
    let twenty = seed(&server, 201, 20).await;
    let twenty_one = seed(&server, 202, 21).await;

    let mut v = visitor(&server, 201).await;
    subscribe(&mut v, 201).await;
    expect_subscribe_history(&mut v, 201, &twenty, false).await;

    let mut v = visitor(&server, 202).await;
    subscribe(&mut v, 202).await;
    expect_subscribe_history(&mut v, 202, &twenty_one[1..], true).await;
    v.expect_none("new message", QUIET).await;
    stop(server, db).await;
}

/// `take history`: `drop history button`, 10 older messages newest first as
/// `new message history`, and `add history button` only when more than 10 older exist.
#[tokio::test]
async fn take_history_pages_of_10_newest_first() {
    let Some((server, db)) = start(Backend::Sqlite, ROOMY).await else {
        return;
    };
    add_admin(&db, "alice", "Alice").await;
    let thirty = seed(&server, 301, 30).await;
    let thirty_one = seed(&server, 302, 31).await;

    // 30: the first page shows 11..30; exactly 10 are older.
    let mut v = visitor(&server, 301).await;
    subscribe(&mut v, 301).await;
    expect_subscribe_history(&mut v, 301, &thirty[10..], true).await;
    let older: Vec<&Seeded> = thirty[..10].iter().rev().collect();
    expect_history_page(&mut v, 301, thirty[10].id, &older, false).await;

    // 31: 11 are older than the first page, so a second page of one.
    let mut v = visitor(&server, 302).await;
    subscribe(&mut v, 302).await;
    expect_subscribe_history(&mut v, 302, &thirty_one[11..], true).await;
    let older: Vec<&Seeded> = thirty_one[1..11].iter().rev().collect();
    expect_history_page(&mut v, 302, thirty_one[11].id, &older, true).await;
    expect_history_page(&mut v, 302, thirty_one[1].id, &[&thirty_one[0]], false).await;
    v.expect_none("chat error", Duration::ZERO).await;
    stop(server, db).await;
}

/// `add history button` and `drop history button` have no payload (LEGACY.md §4): the
/// legacy server emits them with no argument at all.
#[tokio::test]
async fn history_buttons_have_no_payload() {
    let Some((server, db)) = start(Backend::Sqlite, ROOMY).await else {
        return;
    };
    add_admin(&db, "alice", "Alice").await;
    let seeded = seed(&server, 401, 21).await;
    let mut v = visitor(&server, 401).await;
    subscribe(&mut v, 401).await;
    assert_eq!(
        v.next("add history button").await,
        Vec::<Value>::new(),
        "no arguments"
    );
    v.emit(
        "take history",
        &[json!({ "username": "401", "room": room(401), "mid": seeded[1].id })],
    )
    .await;
    assert_eq!(
        v.next("drop history button").await,
        Vec::<Value>::new(),
        "no arguments"
    );
    stop(server, db).await;
}

/// Two tabs of one visitor: both see the visitor's own messages and the replies; the admin
/// is told `offline` only when the last tab closes; an admin who connects later is told who
/// is online; history goes to every tab of the visitor who asked, never to anyone else
/// (LEGACY.md §9.7, §9.8).
#[tokio::test]
async fn two_tabs_of_one_visitor() {
    let Some((server, db)) = start(Backend::Sqlite, ROOMY).await else {
        return;
    };
    add_admin(&db, "alice", "Alice").await;
    let seeded = seed(&server, 501, 25).await;

    let mut admin = admin(&server).await;
    let mut tab1 = page(&server, 501).await;
    assert_eq!(admin.next_payload("online").await, json!({ "cid": "501" }));
    expect_subscribe_history(&mut tab1, 501, &seeded[5..], true).await;
    let mut tab2 = page(&server, 501).await;
    expect_subscribe_history(&mut tab2, 501, &seeded[5..], true).await;
    admin.expect_none("online", QUIET).await;

    // Each tab's message reaches both tabs and the admin; so does the reply.
    say(&mut tab1, 501, "from tab 1").await;
    let m1 = tab1.next_payload("new message").await;
    legacy_message(&m1, 501, "from tab 1", "0");
    assert_eq!(tab2.next_payload("new message").await, m1);
    assert_eq!(admin.next_payload("new message").await, m1);
    say(&mut tab2, 501, "from tab 2").await;
    let m2 = tab2.next_payload("new message").await;
    legacy_message(&m2, 501, "from tab 2", "0");
    assert_eq!(tab1.next_payload("new message").await, m2);
    assert_eq!(admin.next_payload("new message").await, m2);
    reply(&mut admin, 501, "alice", "to both tabs").await;
    let answer = admin.next_payload("new message").await;
    legacy_message(&answer, 501, "to both tabs", "Alice Acme");
    assert_eq!(tab1.next_payload("new message").await, answer);
    assert_eq!(tab2.next_payload("new message").await, answer);

    // History asked by tab 2 reaches both tabs, and neither the admin nor another visitor.
    let mut other = page(&server, 502).await;
    assert_eq!(admin.next_payload("online").await, json!({ "cid": "502" }));
    let older: Vec<&Seeded> = seeded[..5].iter().rev().collect();
    expect_history_page(&mut tab2, 501, seeded[5].id, &older, false).await;
    expect_page(&mut tab1, 501, &older, false).await;
    for name in ["drop history button", "new message history"] {
        other.expect_none(name, QUIET).await;
        admin.expect_none(name, Duration::ZERO).await;
    }

    // An admin connecting now is told every visitor online now (502 stays online).
    let mut late = self::admin(&server).await;
    let mut online = vec![
        late.next_payload("online").await,
        late.next_payload("online").await,
    ];
    online.sort_by_key(|p| p["cid"].as_str().map(str::to_owned));
    assert_eq!(online, [json!({ "cid": "501" }), json!({ "cid": "502" })]);

    // Closing one tab is not leaving.
    tab1.disconnect().await;
    admin.expect_none("offline", QUIET).await;
    say(&mut tab2, 501, "still here").await;
    let m3 = admin.next_payload("new message").await;
    legacy_message(&m3, 501, "still here", "0");
    assert_eq!(tab2.next_payload("new message").await, m3);
    assert_eq!(
        late.next_payload("new message").await,
        m3,
        "every admin gets every message"
    );
    tab2.disconnect().await;
    assert_eq!(admin.next_payload("offline").await, json!({ "cid": "501" }));
    assert_eq!(late.next_payload("offline").await, json!({ "cid": "501" }));
    assert_eq!(count(&db, "cid = 501").await, 25 + 4);
    stop(server, db).await;
}

/// A widget (token client) that comes back subscribes with `since` and gets exactly what it
/// missed, then live messages; a resent message (same `client_msg_id`) is stored once.
#[tokio::test]
async fn token_visitor_resumes_with_since() {
    let Some((server, db)) = start(Backend::Sqlite, ROOMY).await else {
        return;
    };
    add_admin(&db, "alice", "Alice").await;
    let url = server.web_url();
    let mut admin = admin(&server).await;

    let mut widget =
        SioClient::connect_token("widget", &url, json!({ "token": visitor_token(601) })).await;
    let ack = widget.emit_ack("subscribe", &[json!({})]).await;
    assert!(ack.get("error").is_none(), "subscribe accepted: {ack}");
    assert_eq!(admin.next_payload("online").await, json!({ "cid": "601" }));
    let ack = widget
        .emit_ack(
            "new message",
            &[json!({ "message": "first <b>", "client_msg_id": "c-1" })],
        )
        .await;
    let first = ack["data"]["label"]
        .as_u64()
        .unwrap_or_else(|| panic!("ack with the label: {ack}"));
    // The widget renders text: it gets it as typed; the PHP admin gets it escaped.
    assert_eq!(
        legacy_message(
            &widget.next_payload("new message").await,
            601,
            "first <b>",
            "0"
        ),
        first
    );
    let seen_by_admin = admin.next_payload("new message").await;
    assert_eq!(
        legacy_message(&seen_by_admin, 601, "first &lt;b&gt;", "0"),
        first
    );
    reply(&mut admin, 601, "alice", "reply 1").await;
    let last_seen = legacy_message(
        &widget.next_payload("new message").await,
        601,
        "reply 1",
        "Alice Acme",
    );
    admin.next_payload("new message").await;

    widget.disconnect().await;
    assert_eq!(admin.next_payload("offline").await, json!({ "cid": "601" }));
    let mut missed = Vec::new();
    for text in ["missed 1", "missed 2"] {
        reply(&mut admin, 601, "alice", text).await;
        let p = admin.next_payload("new message").await;
        missed.push((legacy_message(&p, 601, text, "Alice Acme"), text));
    }

    let mut widget =
        SioClient::connect_token("widget again", &url, json!({ "token": visitor_token(601) }))
            .await;
    let ack = widget
        .emit_ack("subscribe", &[json!({ "since": last_seen })])
        .await;
    assert!(ack.get("error").is_none(), "subscribe accepted: {ack}");
    for (label, text) in &missed {
        let p = widget.next_payload("new message").await;
        assert_eq!(
            legacy_message(&p, 601, text, "Alice Acme"),
            *label,
            "missed messages in order"
        );
    }
    widget.expect_none("new message", QUIET).await;
    widget
        .expect_none("add history button", Duration::ZERO)
        .await;

    // A resend after the reconnect (the widget never saw its ack) is not stored twice.
    let again = widget
        .emit_ack(
            "new message",
            &[json!({ "message": "first <b>", "client_msg_id": "c-1" })],
        )
        .await;
    assert_eq!(
        again["data"]["label"].as_u64(),
        Some(first),
        "the first copy: {again}"
    );
    // Live again: the next reply arrives once.
    reply(&mut admin, 601, "alice", "live").await;
    let live = widget.next_payload("new message").await;
    let live_label = legacy_message(&live, 601, "live", "Alice Acme");
    assert!(live_label > missed[1].0);
    widget.expect_none("new message", QUIET).await;
    assert_eq!(count(&db, "cid = 601").await, 5);
    stop(server, db).await;
}

/// A payload naming another visitor or room (LEGACY.md §9.1) is refused with `chat error`,
/// logged, and nothing is stored or shown; the socket keeps working for its own identity.
#[tokio::test]
async fn forged_identities_are_refused() {
    let Some((server, db)) = start(Backend::Sqlite, ROOMY).await else {
        return;
    };
    add_admin(&db, "alice", "Alice").await;
    let victims = seed(&server, 702, 3).await;
    let mut admin = admin(&server).await;
    let mut victim = visitor(&server, 702).await;
    subscribe(&mut victim, 702).await;
    assert_eq!(admin.next_payload("online").await, json!({ "cid": "702" }));
    expect_subscribe_history(&mut victim, 702, &victims, false).await;

    let mut attacker = visitor(&server, 701).await;
    let forged = [
        ("subscribe", json!({ "room": room(702), "username": "702" })),
        ("subscribe", json!({ "room": room(701), "username": "702" })),
        ("subscribe", json!({ "room": room(702), "username": "701" })),
        (
            "new message",
            json!({ "username": 702, "message": "forged 1", "room": room(702) }),
        ),
        (
            "new message",
            json!({ "username": "702", "message": "forged 2", "room": room(701) }),
        ),
        (
            "new message",
            json!({ "username": 701, "message": "forged 3", "room": room(702) }),
        ),
        (
            "take history",
            json!({ "username": 702, "room": room(702), "mid": victims[2].id + 1 }),
        ),
        (
            "take history",
            json!({ "username": 701, "room": room(702), "mid": victims[2].id + 1 }),
        ),
    ];
    for (event, payload) in &forged {
        attacker.emit(event, std::slice::from_ref(payload)).await;
        assert_refusal(
            &attacker.next_payload("chat error").await,
            event,
            "forbidden",
        );
    }
    attacker.expect_none("new message", QUIET).await;
    for never in [
        "new message history",
        "drop history button",
        "add history button",
    ] {
        attacker.expect_none(never, Duration::ZERO).await;
    }
    victim.expect_none("new message", Duration::ZERO).await;
    admin.expect_none("new message", Duration::ZERO).await;
    admin.expect_none("online", Duration::ZERO).await;
    assert_eq!(
        count(&db, "message LIKE '%forged%'").await,
        0,
        "nothing forged is stored"
    );
    assert_eq!(count(&db, "cid = 702").await, 3);
    assert_eq!(count(&db, "cid = 701").await, 0);

    // As itself, the same socket works.
    subscribe(&mut attacker, 701).await;
    assert_eq!(admin.next_payload("online").await, json!({ "cid": "701" }));
    say(&mut attacker, 701, "my own").await;
    let own = attacker.next_payload("new message").await;
    legacy_message(&own, 701, "my own", "0");
    assert_eq!(admin.next_payload("new message").await, own);
    victim.expect_none("new message", QUIET).await;
    stop(server, db).await;
}

/// Admin-only events from a visitor socket are refused (LEGACY.md §9.2), and visitor events
/// from an admin socket too; nothing is stored.
#[tokio::test]
async fn role_events_from_the_wrong_role_are_refused() {
    let Some((server, db)) = start(Backend::Sqlite, ROOMY).await else {
        return;
    };
    add_admin(&db, "alice", "Alice").await;
    let mut admin = admin(&server).await;
    let mut v = visitor(&server, 801).await;
    subscribe(&mut v, 801).await;
    assert_eq!(admin.next_payload("online").await, json!({ "cid": "801" }));

    let admin_only = [
        (
            "new message:servadm",
            vec![
                json!({ "username": 801, "message": "I am support", "room": room(801), "adm": "alice" }),
            ],
        ),
        (
            "new message:servadm",
            vec![
                json!({ "username": 802, "message": "I am support", "room": room(802), "adm": "alice" }),
            ],
        ),
        (
            "subscribe:servadm",
            vec![json!({ "room": room(802), "adm": "alice" })],
        ),
        ("update admlist", vec![]),
    ];
    for (event, args) in &admin_only {
        v.emit(event, args).await;
        assert_refusal(&v.next_payload("chat error").await, event, "forbidden");
    }
    let visitor_only = [
        (
            "new message",
            json!({ "username": 801, "message": "admin as visitor", "room": room(801) }),
        ),
        ("subscribe", json!({ "username": 801, "room": room(801) })),
        (
            "take history",
            json!({ "username": 801, "room": room(801), "mid": 10 }),
        ),
    ];
    for (event, payload) in &visitor_only {
        admin.emit(event, std::slice::from_ref(payload)).await;
        assert_refusal(&admin.next_payload("chat error").await, event, "forbidden");
    }
    v.expect_none("new message", QUIET).await;
    admin.expect_none("new message", Duration::ZERO).await;
    admin
        .expect_none("drop history button", Duration::ZERO)
        .await;
    assert_eq!(count(&db, "1 = 1").await, 0, "nothing stored");
    stop(server, db).await;
}

/// A wrong room hash, a missing id or room, a wrong admin secret or a bad token is refused at
/// the handshake with `connect_error`, before any event is handled (LEGACY.md §2, §9.3).
#[tokio::test]
async fn bad_handshakes_are_refused() {
    let Some((server, db)) = start(Backend::Sqlite, ROOMY).await else {
        return;
    };
    let url = server.web_url();
    let mut admin = admin(&server).await;
    let forged_token = TokenSigner::new(b"not the secret").sign(TokenKind::Visitor, "901", 600);
    let forged_admin = TokenSigner::new(b"not the secret").sign(TokenKind::Admin, "alice", 600);
    let other_secret = room_of(HashKind::Md5, "901", "not the secret");
    let cases = [
        (
            "room of another visitor",
            Handshake::legacy_visitor(&url, 901, &room(902)),
            "room",
        ),
        (
            "room of another secret",
            Handshake::legacy_visitor(&url, 901, &other_secret),
            "room",
        ),
        (
            "upper-case room",
            Handshake::legacy_visitor(&url, 901, &room(901).to_uppercase()),
            "room",
        ),
        (
            "missing id",
            Handshake::query(&url, &[("room", &room(901))]),
            "",
        ),
        ("missing room", Handshake::query(&url, &[("id", "901")]), ""),
        ("no query", Handshake::query(&url, &[]), ""),
        (
            "non-numeric id",
            Handshake::legacy_visitor(&url, "abc", &room_of(HashKind::Md5, "abc", SECRET)),
            "id",
        ),
        (
            "zero id",
            Handshake::legacy_visitor(&url, 0, &room_of(HashKind::Md5, "0", SECRET)),
            "id",
        ),
        (
            "wrong admin secret",
            Handshake::legacy_admin(&url, "adminpass", "wrong"),
            "admin",
        ),
        (
            "empty admin secret",
            Handshake::legacy_admin(&url, "adminpass", ""),
            "admin",
        ),
        (
            "admin secret, other case",
            Handshake::legacy_admin(&url, "adminpass", "ADMIN"),
            "admin",
        ),
        (
            "secret under another name",
            Handshake::legacy_admin(&url, "admin", "admin"),
            "",
        ),
        (
            "visitor token of another key",
            Handshake::token(&url, json!({ "token": forged_token })),
            "token",
        ),
        (
            "admin token of another key",
            Handshake::token(&url, json!({ "admin_token": forged_admin })),
            "token",
        ),
        (
            "garbage token",
            Handshake::token(&url, json!({ "token": "v1.901" })),
            "token",
        ),
    ];
    for (case, handshake, says) in &cases {
        match SioClient::open(case, handshake).await {
            Ok(_) => panic!("{case}: the handshake was accepted"),
            Err(message) => {
                assert!(!message.trim().is_empty(), "{case}: a reason is given");
                assert!(
                    message.contains(says),
                    "{case}: {message:?} mentions {says:?}"
                );
            }
        }
    }
    admin.expect_none("online", QUIET).await;
    assert_eq!(count(&db, "1 = 1").await, 0);

    // The right credentials still work.
    let mut v = visitor(&server, 901).await;
    subscribe(&mut v, 901).await;
    assert_eq!(admin.next_payload("online").await, json!({ "cid": "901" }));
    stop(server, db).await;
}

/// Every shape of event the legacy server died on (LEGACY.md §9.5) gets a clear `chat error`,
/// nothing is half stored, and the server keeps serving everyone.
#[tokio::test]
async fn malformed_events_are_refused_and_the_server_keeps_serving() {
    let Some((server, db)) = start(Backend::Sqlite, ROOMY).await else {
        return;
    };
    add_admin(&db, "alice", "Alice").await;
    let mut admin = admin(&server).await;
    let mut v = visitor(&server, 1001).await;
    subscribe(&mut v, 1001).await;
    assert_eq!(admin.next_payload("online").await, json!({ "cid": "1001" }));
    let r = room(1001);
    let visitor_cases: Vec<(&str, Vec<Value>, &str)> = vec![
        ("new message", vec![], "invalid"),
        ("new message", vec![Value::Null], "invalid"),
        ("new message", vec![json!("just a string")], "invalid"),
        ("new message", vec![json!(42)], "invalid"),
        ("new message", vec![json!(true)], "invalid"),
        ("new message", vec![json!([1, 2, 3])], "invalid"),
        (
            "new message",
            vec![json!({ "username": "abc", "message": "x", "room": r })],
            "invalid",
        ),
        (
            "new message",
            vec![json!({ "username": -5, "message": "x", "room": r })],
            "invalid",
        ),
        (
            "new message",
            vec![json!({ "username": 1.5, "message": "x", "room": r })],
            "invalid",
        ),
        (
            "new message",
            vec![json!({ "username": [1001], "message": "x", "room": r })],
            "invalid",
        ),
        (
            "new message",
            vec![json!({ "username": 99999, "message": "x", "room": r })],
            "forbidden",
        ),
        (
            "new message",
            vec![json!({ "username": 1001, "message": "x", "room": 12345 })],
            "forbidden",
        ),
        (
            "new message",
            vec![json!({ "username": 1001, "message": { "html": "<b>x</b>" }, "room": r })],
            "invalid",
        ),
        (
            "new message",
            vec![json!({ "username": 1001, "message": ["a", "b"], "room": r })],
            "invalid",
        ),
        (
            "new message",
            vec![json!({ "username": 1001, "room": r })],
            "invalid",
        ),
        (
            "new message",
            vec![json!({ "username": 1001, "message": null, "room": r })],
            "invalid",
        ),
        (
            "new message",
            vec![json!({ "username": 1001, "message": "", "room": r })],
            "invalid",
        ),
        (
            "new message",
            vec![json!({ "username": 1001, "message": " \n\t ", "room": r })],
            "invalid",
        ),
        (
            "new message",
            vec![json!({ "username": 1001, "message": "a".repeat(10_001), "room": r })],
            "invalid",
        ),
        // Under 10,000 characters typed, over the column once escaped.
        (
            "new message",
            vec![json!({ "username": 1001, "message": "<".repeat(2_600), "room": r })],
            "invalid",
        ),
        (
            "new message",
            vec![json!({ "username": 1001, "message": "nul\u{0}byte", "room": r })],
            "invalid",
        ),
        (
            "new message",
            vec![
                json!({ "username": { "a": { "b": [null, { "c": 1 }] } }, "message": { "deep": [[[]]] }, "room": { "x": 1 } }),
            ],
            "invalid",
        ),
        ("subscribe", vec![json!("a string")], "invalid"),
        ("subscribe", vec![json!([1001])], "invalid"),
        (
            "subscribe",
            vec![json!({ "username": "abc", "room": r })],
            "invalid",
        ),
        (
            "subscribe",
            vec![json!({ "username": 1001, "room": r })],
            "invalid",
        ), // already subscribed
        ("take history", vec![], "invalid"),
        ("take history", vec![Value::Null], "invalid"),
        ("take history", vec![json!("x")], "invalid"),
        (
            "take history",
            vec![json!({ "username": 1001, "room": r })],
            "invalid",
        ),
        (
            "take history",
            vec![json!({ "username": 1001, "room": r, "mid": "abc" })],
            "invalid",
        ),
        (
            "take history",
            vec![json!({ "username": 1001, "room": r, "mid": -1 })],
            "invalid",
        ),
        (
            "take history",
            vec![json!({ "username": 1001, "room": r, "mid": {} })],
            "invalid",
        ),
        (
            "take history",
            vec![json!({ "username": 1001, "room": r, "mid": 0 })],
            "invalid",
        ),
        ("no such event", vec![json!({ "a": 1 })], "unknown_event"),
    ];
    // One at a time: handlers of one socket run concurrently, so refusals may overtake.
    for (event, args, code) in &visitor_cases {
        v.emit(event, args).await;
        let refusal = v.next_payload("chat error").await;
        assert_refusal(&refusal, event, code);
    }
    // With an acknowledgement asked, the refusal is the ack, and only the ack: a refusal is
    // signalled once.
    let ack = v
        .emit_ack(
            "new message",
            &[json!({ "username": 1001, "message": "", "room": r })],
        )
        .await;
    assert_refusal(&ack["error"], "new message", "invalid");
    v.expect_none("chat error", QUIET).await;

    let admin_cases: Vec<(&str, Vec<Value>, &str)> = vec![
        ("new message:servadm", vec![], "invalid"),
        ("new message:servadm", vec![Value::Null], "invalid"),
        ("new message:servadm", vec![json!("x")], "invalid"),
        (
            "new message:servadm",
            vec![json!({ "message": "x", "room": r, "adm": "alice" })],
            "invalid",
        ),
        (
            "new message:servadm",
            vec![json!({ "username": "abc", "message": "x", "room": r, "adm": "alice" })],
            "invalid",
        ),
        (
            "new message:servadm",
            vec![json!({ "username": 1001, "message": "x", "room": room(1002), "adm": "alice" })],
            "invalid",
        ),
        (
            "new message:servadm",
            vec![json!({ "username": 1001, "message": { "x": 1 }, "room": r, "adm": "alice" })],
            "invalid",
        ),
        (
            "new message:servadm",
            vec![json!({ "username": 1001, "message": "x", "room": r })],
            "invalid",
        ),
        (
            "new message:servadm",
            vec![json!({ "username": 1001, "message": "x", "room": r, "adm": {} })],
            "invalid",
        ),
        (
            "new message:servadm",
            vec![
                json!({ "username": 1001, "message": "a".repeat(10_001), "room": r, "adm": "alice" }),
            ],
            "invalid",
        ),
        // Support may write first, but only to an id a visitor can have.
        (
            "new message:servadm",
            vec![
                json!({ "username": 4294967296u64, "message": "x", "room": room(4294967296), "adm": "alice" }),
            ],
            "invalid",
        ),
        ("subscribe:servadm", vec![Value::Null], "invalid"),
        (
            "subscribe:servadm",
            vec![json!({ "adm": "alice" })],
            "invalid",
        ),
        ("subscribe:servadm", vec![json!({ "room": r })], "invalid"),
    ];
    for (event, args, code) in &admin_cases {
        admin.emit(event, args).await;
        let refusal = admin.next_payload("chat error").await;
        assert_refusal(&refusal, event, code);
    }
    for never in ["drop history button", "new message history", "new message"] {
        v.expect_none(never, Duration::ZERO).await;
    }
    admin.expect_none("new message", Duration::ZERO).await;
    assert_eq!(count(&db, "1 = 1").await, 0, "nothing half stored");

    // The largest message that fits is taken whole.
    let longest = "a".repeat(10_000);
    say(&mut v, 1001, &longest).await;
    let p = v.next_payload("new message").await;
    let label = legacy_message(&p, 1001, &longest, "0");
    assert_eq!(stored(&db, label).await.message.chars().count(), 10_000);
    admin.next_payload("new message").await;

    // A packet over the size limit closes that connection only.
    let mut huge = visitor(&server, 1002).await;
    subscribe(&mut huge, 1002).await;
    assert_eq!(admin.next_payload("online").await, json!({ "cid": "1002" }));
    say(&mut huge, 1002, &"x".repeat(2 << 20)).await;
    huge.disconnected().await;
    assert_eq!(
        admin.next_payload("offline").await,
        json!({ "cid": "1002" })
    );
    assert_eq!(count(&db, "cid = 1002").await, 0);

    // An id beyond `messages.cid` (INT UNSIGNED) with its right room: refused, not stored.
    let too_big = u64::from(u32::MAX) + 1;
    let mut big = visitor(&server, too_big).await;
    subscribe(&mut big, too_big).await;
    assert_refusal(
        &big.next_payload("chat error").await,
        "subscribe",
        "invalid",
    );
    say(&mut big, too_big, "overflow").await;
    assert_refusal(
        &big.next_payload("chat error").await,
        "new message",
        "invalid",
    );
    admin.expect_none("online", Duration::ZERO).await;

    // Everyone else is still served.
    say(&mut v, 1001, "still alive").await;
    let p = admin.next_payload("new message").await;
    legacy_message(&p, 1001, "still alive", "0");
    reply(&mut admin, 1001, "alice", "good").await;
    assert_eq!(v.next_payload("new message").await, p);
    let answer = v.next_payload("new message").await;
    legacy_message(&answer, 1001, "good", "Alice Acme");
    assert_eq!(admin.next_payload("new message").await, answer);
    let mut newcomer = visitor(&server, 1003).await;
    subscribe(&mut newcomer, 1003).await;
    assert_eq!(admin.next_payload("online").await, json!({ "cid": "1003" }));
    say(&mut newcomer, 1003, "hello").await;
    legacy_message(&admin.next_payload("new message").await, 1003, "hello", "0");
    assert_eq!(count(&db, "1 = 1").await, 4);
    stop(server, db).await;
}

/// A message with HTML reaches the legacy clients escaped and is stored escaped, so the PHP
/// admin, which echoes `messages.message` raw, shows text (LEGACY.md §9.4); the widget gets
/// the text as typed.
#[tokio::test]
async fn html_is_shown_as_text() {
    let Some((server, db)) = start(Backend::Sqlite, ROOMY).await else {
        return;
    };
    add_admin(&db, "alice", "Alice").await;
    let mut admin = admin(&server).await;
    let mut page = visitor(&server, 1101).await;
    subscribe(&mut page, 1101).await;
    assert_eq!(admin.next_payload("online").await, json!({ "cid": "1101" }));
    let mut widget = SioClient::connect_token(
        "widget",
        &server.web_url(),
        json!({ "token": visitor_token(1101) }),
    )
    .await;
    widget.emit_ack("subscribe", &[json!({})]).await;

    let attack = r#"<script>alert("xss")</script><img src=x onerror='alert(1)'> & done"#;
    say(&mut page, 1101, attack).await;
    let on_page = page.next_payload("new message").await;
    let html = on_page["message"].as_str().expect("message").to_owned();
    assert_escaped(&html, attack);
    let label = legacy_message(&on_page, 1101, &html, "0");
    assert_eq!(admin.next_payload("new message").await, on_page);
    assert_eq!(widget.next_payload("new message").await["message"], attack);
    let column = stored(&db, label).await.message;
    assert_escaped(&column, attack);

    let answer = "<b>bold</b> & <i>\"quoted\"</i>";
    reply(&mut admin, 1101, "alice", answer).await;
    let on_page = page.next_payload("new message").await;
    assert_escaped(on_page["message"].as_str().expect("message"), answer);
    assert_eq!(widget.next_payload("new message").await["message"], answer);
    let label = legacy_message(
        &on_page,
        1101,
        on_page["message"].as_str().unwrap(),
        "Alice Acme",
    );
    assert_escaped(&stored(&db, label).await.message, answer);
    stop(server, db).await;
}

/// An admin the PHP admin inserted without `update admlist` is shown by its display name,
/// looked up on demand, never `undefined` (LEGACY.md §9.10); an unknown admin is refused.
#[tokio::test]
async fn admins_missing_from_the_name_cache() {
    let Some((server, db)) = start(Backend::Sqlite, ROOMY).await else {
        return;
    };
    let mut admin = admin(&server).await;
    let mut v = visitor(&server, 1201).await;
    subscribe(&mut v, 1201).await;
    assert_eq!(admin.next_payload("online").await, json!({ "cid": "1201" }));
    say(&mut v, 1201, "anyone there?").await;
    admin.next_payload("new message").await;
    v.next_payload("new message").await;

    // Inserted after the server read `adm_account`, and nobody said `update admlist`.
    add_admin(&db, "bob", "Bob").await;
    add_admin(&db, "nameless", "").await;
    reply(&mut admin, 1201, "bob", "Bob here").await;
    let p = v.next_payload("new message").await;
    legacy_message(&p, 1201, "Bob here", "Bob Acme");
    assert_eq!(admin.next_payload("new message").await, p);
    reply(&mut admin, 1201, "nameless", "no name on record").await;
    legacy_message(
        &v.next_payload("new message").await,
        1201,
        "no name on record",
        "nameless",
    );
    admin.next_payload("new message").await;

    // Replies while the list is being reloaded still carry the name (the legacy server
    // emptied its cache first, LEGACY.md §9.10).
    for i in 0..10 {
        admin.emit("update admlist", &[]).await;
        reply(&mut admin, 1201, "bob", &format!("during reload {i}")).await;
    }
    // (Their order is another test's business: here only the names count.)
    let mut texts = Vec::new();
    for _ in 0..10 {
        let p = v.next_payload("new message").await;
        let text = p["message"].as_str().unwrap_or_default().to_owned();
        legacy_message(&p, 1201, &text, "Bob Acme");
        admin.next_payload("new message").await;
        texts.push(text);
    }
    texts.sort();
    assert_eq!(
        texts,
        (0..10)
            .map(|i| format!("during reload {i}"))
            .collect::<Vec<_>>()
    );

    reply(&mut admin, 1201, "ghost", "who am I").await;
    let refusal = admin.next_payload("chat error").await;
    assert_refusal(&refusal, "new message:servadm", "not_found");
    assert!(
        refusal["message"]
            .as_str()
            .unwrap_or_default()
            .contains("ghost"),
        "{refusal}"
    );
    v.expect_none("new message", QUIET).await;
    assert_eq!(count(&db, "aid = 'ghost'").await, 0);
    assert_eq!(count(&db, "cid = 1201").await, 13);
    stop(server, db).await;
}

/// One socket flooding gets `chat error` `rate_limited` for what it sends beyond its limit,
/// never a silent drop, while other sockets are served; connections per address over the
/// limit are refused at the handshake.
#[tokio::test]
async fn floods_are_refused_clearly() {
    const FLOOD: u32 = 60;
    let limits = "events_per_second = 2\nevents_burst = 5\n\
                  ip_events_per_second = 10000\nip_events_burst = 10000\n\
                  connections_per_ip = 4\n";
    let Some((server, db)) = start(Backend::Sqlite, limits).await else {
        return;
    };
    let mut admin = admin(&server).await;
    let mut flooder = visitor(&server, 1301).await;
    subscribe(&mut flooder, 1301).await;
    assert_eq!(admin.next_payload("online").await, json!({ "cid": "1301" }));
    let mut calm = visitor(&server, 1302).await;
    subscribe(&mut calm, 1302).await;
    assert_eq!(admin.next_payload("online").await, json!({ "cid": "1302" }));

    let payload = json!({ "username": "1301", "message": "flood", "room": room(1301) });
    flooder.emit_many("new message", &[payload], FLOOD).await;
    let (mut delivered, mut limited) = (0, 0);
    while delivered + limited < FLOOD {
        match flooder.next_any().await {
            (name, args) if name == "new message" => {
                legacy_message(&args[0], 1301, "flood", "0");
                delivered += 1;
            }
            (name, args) if name == "chat error" => {
                assert_refusal(&args[0], "new message", "rate_limited");
                limited += 1;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(limited >= FLOOD - 10, "{limited} of {FLOOD} refused");
    assert!(delivered >= 1, "the burst is served");
    assert_eq!(
        count(&db, "cid = 1301").await,
        u64::from(delivered),
        "every event answered"
    );

    // Another socket is not affected.
    say(&mut calm, 1302, "I am calm").await;
    legacy_message(
        &calm.next_payload("new message").await,
        1302,
        "I am calm",
        "0",
    );
    calm.expect_none("chat error", QUIET).await;
    let mut from_calm = None;
    while from_calm.is_none() {
        let p = admin.next_payload("new message").await;
        if p["username"] == 1302 {
            from_calm = Some(p);
        }
    }

    // Four sockets from this address are open with the next one; a fifth is refused.
    let mut fourth = visitor(&server, 1303).await;
    subscribe(&mut fourth, 1303).await;
    assert_eq!(admin.next_payload("online").await, json!({ "cid": "1303" }));
    let refused = SioClient::open(
        "fifth",
        &Handshake::legacy_visitor(&server.web_url(), 1304, &room(1304)),
    )
    .await;
    match refused {
        Ok(_) => panic!("a fifth connection from one address was accepted"),
        Err(message) => assert!(message.contains("too many connections"), "{message:?}"),
    }
    // A socket that leaves frees its place (its `offline` comes after the release).
    fourth.disconnect().await;
    assert_eq!(
        admin.next_payload("offline").await,
        json!({ "cid": "1303" })
    );
    let mut fifth = visitor(&server, 1304).await;
    subscribe(&mut fifth, 1304).await;
    assert_eq!(admin.next_payload("online").await, json!({ "cid": "1304" }));
    stop(server, db).await;
}

/// The legacy tables as the legacy system created them ("another db" variant, LEGACY.md §5),
/// with the admin row `'0'` the foreign key of visitor messages needs.
const LEGACY_TABLES: [&str; 5] = [
    "CREATE TABLE `adm_account` (
       `aid` varchar(20) NOT NULL,
       `name` varchar(20) NOT NULL,
       `lid` int(11) NOT NULL,
       PRIMARY KEY (`aid`)
     ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
    "CREATE TABLE `messages` (
       `id` int(10) unsigned NOT NULL AUTO_INCREMENT,
       `cid` int(10) unsigned NOT NULL,
       `aid` varchar(20) NOT NULL,
       `direction` int(11) NOT NULL,
       `date` datetime NOT NULL,
       `message` varchar(10000) DEFAULT NULL,
       `check_msg` int(11) NOT NULL,
       `check_msg_admin` int(11) NOT NULL,
       PRIMARY KEY (`id`),
       KEY `aid` (`aid`),
       CONSTRAINT `messages_ibfk_1` FOREIGN KEY (`aid`) REFERENCES `adm_account` (`aid`)
     ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
    "CREATE TABLE `telegram` (
       `id` int(10) unsigned NOT NULL AUTO_INCREMENT,
       `cid` int(11) DEFAULT NULL,
       `chat_id` int(10) NOT NULL,
       `status` int(11) NOT NULL,
       PRIMARY KEY (`id`)
     ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
    "INSERT INTO `adm_account` (`aid`, `name`, `lid`) VALUES ('0', 'visitor', 0)",
    "INSERT INTO `adm_account` (`aid`, `name`, `lid`) VALUES ('alice', 'Alice', 2)",
];

/// Against MariaDB with the legacy schema: after an exchange, the PHP admin's own queries
/// (LEGACY.md §6) return the messages as it expects, and `adm_account` rows it writes plus
/// `update admlist` change the names on later replies.
#[tokio::test]
async fn mariadb_legacy_schema_reads_as_the_php_admin_expects() {
    if !sio::available().await {
        return;
    }
    let Some(db) = TestDb::create(Backend::MySql).await else {
        return;
    };
    for sql in LEGACY_TABLES {
        db.execute(sql).await.expect("legacy DDL");
    }
    // What the legacy server left behind: raw text, dates at GMT+3 (LEGACY.md §5).
    let local = |ago: TimeDelta| {
        (Utc::now().naive_utc() + TimeDelta::hours(3) - ago)
            .format("%Y-%m-%d %H:%M:%S")
            .to_string()
    };
    let old = [
        (
            1401,
            "0",
            1,
            local(TimeDelta::days(2)),
            "Old <b>legacy</b> question",
        ),
        (
            1401,
            "alice",
            2,
            local(TimeDelta::days(2) - TimeDelta::minutes(5)),
            "Old answer",
        ),
        (
            1403,
            "0",
            1,
            local(TimeDelta::days(1)),
            "Only in the legacy database",
        ),
    ];
    for (cid, aid, direction, date, text) in &old {
        let (check, check_admin) = if *direction == 1 { (1, 0) } else { (0, 1) };
        db.execute(&format!(
            "INSERT INTO messages (cid, aid, direction, date, message, check_msg, check_msg_admin) \
             VALUES ({cid}, '{aid}', {direction}, '{date}', '{text}', {check}, {check_admin})"
        ))
        .await
        .expect("legacy rows");
    }
    let server = TestServer::start(&db.url, &config(ROOMY)).await;

    let mut admin = admin(&server).await;
    let mut first = visitor(&server, 1401).await;
    subscribe(&mut first, 1401).await;
    assert_eq!(admin.next_payload("online").await, json!({ "cid": "1401" }));
    // The legacy rows come back with their dates as stored (not shifted, LEGACY.md §9.9)
    // and their text shown as text.
    let legacy_history = [
        Seeded {
            id: 1,
            text: "Old &lt;b&gt;legacy&lt;/b&gt; question".into(),
            adm: "0".into(),
        },
        Seeded {
            id: 2,
            text: "Old answer".into(),
            adm: "Alice Acme".into(),
        },
    ];
    for (s, (_, _, _, date, _)) in legacy_history.iter().zip(&old) {
        let p = first.next_payload("new message").await;
        assert_eq!(legacy_message(&p, 1401, &s.text, &s.adm), s.id);
        assert_eq!(p["date"].as_str(), Some(date.as_str()), "the stored date");
    }
    first.expect_none("add history button", QUIET).await;
    let mut second = visitor(&server, 1402).await;
    subscribe(&mut second, 1402).await;
    assert_eq!(admin.next_payload("online").await, json!({ "cid": "1402" }));

    let mut shown = Vec::new();
    say(&mut first, 1401, "Hello from 1401").await;
    shown.push(admin.next_payload("new message").await);
    say(&mut second, 1402, "Hi <there>").await;
    shown.push(admin.next_payload("new message").await);
    // A full column of two-byte characters.
    let cyrillic = "ж".repeat(10_000);
    say(&mut second, 1402, &cyrillic).await;
    shown.push(admin.next_payload("new message").await);
    reply(&mut admin, 1401, "alice", "Answer & more").await;
    shown.push(admin.next_payload("new message").await);
    // A conversation known only from the legacy rows can be answered (its visitor is away).
    reply(&mut admin, 1403, "alice", "We saw your message").await;
    shown.push(admin.next_payload("new message").await);
    assert_eq!(first.next_payload("new message").await, shown[0]);
    assert_eq!(first.next_payload("new message").await, shown[3]);
    legacy_message(&shown[0], 1401, "Hello from 1401", "0");
    legacy_message(&shown[1], 1402, "Hi &lt;there&gt;", "0");
    legacy_message(&shown[2], 1402, &cyrillic, "0");
    legacy_message(&shown[3], 1401, "Answer &amp; more", "Alice Acme");
    legacy_message(&shown[4], 1403, "We saw your message", "Alice Acme");
    for p in &shown {
        assert_gmt3_now(p["date"].as_str().unwrap());
    }

    // The PHP admin's queries, on a connection of its own.
    let mut php = sqlx::MySqlConnection::connect(&db.url)
        .await
        .expect("connect as the PHP admin");
    let cids: Vec<u32> = sqlx::query_scalar(
        "SELECT DISTINCT cid FROM messages WHERE date >= CURRENT_DATE - INTERVAL 30 DAY ORDER BY cid",
    )
    .fetch_all(&mut php)
    .await
    .expect("distinct cids");
    assert_eq!(cids, [1401, 1402, 1403]);
    let listing: Vec<(u32, u32, i32, String, String, String)> = sqlx::query(
        "SELECT m.id, m.cid, m.direction, DATE_FORMAT(m.date, '%Y-%m-%d %H:%i:%s') AS date, \
                m.message, a.name FROM messages m JOIN adm_account a ON a.aid = m.aid \
         WHERE m.date >= CURRENT_DATE - INTERVAL 30 DAY ORDER BY m.cid, m.id",
    )
    .fetch_all(&mut php)
    .await
    .expect("the conversation listing")
    .iter()
    .map(|r| {
        (
            r.get("id"),
            r.get("cid"),
            r.get("direction"),
            r.get("date"),
            r.get("message"),
            r.get("name"),
        )
    })
    .collect();
    let row = |p: &Value, direction: i32, name: &str| {
        (
            p["label"].as_u64().unwrap() as u32,
            p["username"].as_u64().unwrap() as u32,
            direction,
            p["date"].as_str().unwrap().to_owned(),
            p["message"].as_str().unwrap().to_owned(),
            name.to_owned(),
        )
    };
    let legacy_row =
        |id: u32, (cid, _, direction, date, text): &(u32, &str, i32, String, &str), name: &str| {
            (
                id,
                *cid,
                *direction,
                date.clone(),
                (*text).to_owned(),
                name.to_owned(),
            )
        };
    let expected = vec![
        legacy_row(1, &old[0], "visitor"),
        legacy_row(2, &old[1], "Alice"),
        row(&shown[0], 1, "visitor"),
        row(&shown[3], 2, "Alice"),
        row(&shown[1], 1, "visitor"),
        row(&shown[2], 1, "visitor"),
        legacy_row(3, &old[2], "visitor"),
        row(&shown[4], 2, "Alice"),
    ];
    assert_eq!(listing, expected);

    // The PHP admin creates an admin and renames another, then says `update admlist`.
    db.execute("INSERT INTO adm_account (aid, name, lid) VALUES ('carol', 'Carol', 2)")
        .await
        .expect("insert admin");
    db.execute("UPDATE adm_account SET name = 'Alicia' WHERE aid = 'alice'")
        .await
        .expect("rename admin");
    // Acknowledged, so the replies below are sure to come after the reload.
    let ack = admin.emit_ack("update admlist", &[]).await;
    assert!(ack.get("error").is_none(), "{ack}");
    reply(&mut admin, 1401, "alice", "renamed").await;
    let renamed = first.next_payload("new message").await;
    legacy_message(&renamed, 1401, "renamed", "Alicia Acme");
    reply(&mut admin, 1401, "carol", "new here").await;
    let p = first.next_payload("new message").await;
    let label = legacy_message(&p, 1401, "new here", "Carol Acme");
    let name: String = sqlx::query_scalar(
        "SELECT a.name FROM messages m JOIN adm_account a ON a.aid = m.aid WHERE m.id = ?",
    )
    .bind(label as u32)
    .fetch_one(&mut php)
    .await
    .expect("the new admin's message");
    assert_eq!(name, "Carol");
    php.close().await.ok();

    // Read back from MariaDB, every date is what was shown live (never shifted twice).
    let mut again = visitor(&server, 1401).await;
    subscribe(&mut again, 1401).await;
    let live = [&shown[0], &shown[3], &renamed, &p];
    for (i, expected) in legacy_history
        .iter()
        .map(|s| s.id)
        .chain(live.iter().map(|p| p["label"].as_u64().unwrap()))
        .enumerate()
    {
        let h = again.next_payload("new message").await;
        assert_eq!(h["label"].as_u64(), Some(expected), "history in order");
        let date = match i {
            0 | 1 => old[i].3.clone(),
            _ => live[i - 2]["date"].as_str().unwrap().to_owned(),
        };
        assert_eq!(
            h["date"].as_str(),
            Some(date.as_str()),
            "message {expected}"
        );
    }
    admin.expect_none("chat error", Duration::ZERO).await;
    stop(server, db).await;
}

/// A tab closed right after it subscribed (a reload, a click away) must not leave its
/// visitor online: each `online` is followed by an `offline`, and an admin who connects
/// afterwards is told nobody is online (LEGACY.md §9.7).
#[tokio::test]
async fn tabs_closed_while_subscribing_go_offline() {
    const TABS: u64 = 20;
    let Some((server, db)) = start(Backend::Sqlite, ROOMY).await else {
        return;
    };
    let mut admin = admin(&server).await;
    // One browser, one page after the other (the driver reconnects its socket).
    let mut tab = SioClient::spawn("tab");
    for cid in 2000..2000 + TABS {
        tab.connect(&page_handshake(&server, cid))
            .await
            .unwrap_or_else(|e| panic!("visitor {cid} refused: {e}"));
        // No waiting in between: the page is gone as soon as it asked.
        tab.disconnect().await;
    }
    // Every visitor the admin was told is online is reported offline again (the window
    // only bounds the wait: a visitor left online stays online).
    admin
        .expect_none("chat error", Duration::from_millis(1500))
        .await;
    let mut online = std::collections::BTreeSet::new();
    for (name, args) in admin.drain_events() {
        let cid = args[0]["cid"].as_str().unwrap_or_default().to_owned();
        match name.as_str() {
            "online" => assert!(online.insert(cid.clone()), "{cid} online twice"),
            "offline" => assert!(online.remove(&cid), "{cid} offline before online"),
            other => panic!("unexpected {other:?}"),
        }
    }
    let mut late = self::admin(&server).await;
    late.expect_none("chat error", QUIET).await;
    let told: Vec<Value> = late
        .drain_events()
        .into_iter()
        .map(|(_, args)| args[0].clone())
        .collect();
    assert!(
        online.is_empty() && told.is_empty(),
        "visitors left online after closing their only tab: {online:?}; a new admin is told {told:?}"
    );
    stop(server, db).await;
}

/// Behind a proxy that does not pass websockets the clients fall back to long polling
/// (`transports: ['websocket', 'polling']`, LEGACY.md §2): everything works over polling too.
#[tokio::test]
async fn long_polling_clients_work() {
    let Some((server, db)) = start(Backend::Sqlite, ROOMY).await else {
        return;
    };
    add_admin(&db, "alice", "Alice").await;
    let url = server.web_url();
    let polling = ["polling"];
    let mut admin = SioClient::open(
        "polling admin",
        &Handshake::legacy_admin(&url, "adminpass", "admin").with_transports(&polling),
    )
    .await
    .expect("admin over polling");
    let mut v = SioClient::open(
        "polling visitor",
        &Handshake::legacy_visitor(&url, 1501, &room(1501)).with_transports(&polling),
    )
    .await
    .expect("visitor over polling");
    subscribe(&mut v, 1501).await;
    assert_eq!(admin.next_payload("online").await, json!({ "cid": "1501" }));
    let longest = "ё".repeat(10_000);
    say(&mut v, 1501, &longest).await;
    let p = v.next_payload("new message").await;
    legacy_message(&p, 1501, &longest, "0");
    assert_eq!(admin.next_payload("new message").await, p);
    reply(&mut admin, 1501, "alice", "over polling").await;
    let answer = v.next_payload("new message").await;
    legacy_message(&answer, 1501, "over polling", "Alice Acme");
    assert_eq!(admin.next_payload("new message").await, answer);
    v.disconnect().await;
    assert_eq!(
        admin.next_payload("offline").await,
        json!({ "cid": "1501" })
    );
    stop(server, db).await;
}

/// An admin client with a per-admin token is that admin: its replies are signed with its
/// name without `adm`, and a payload naming another admin is refused.
#[tokio::test]
async fn token_admin_replies_as_itself() {
    let Some((server, db)) = start(Backend::Sqlite, ROOMY).await else {
        return;
    };
    add_admin(&db, "alice", "Alice").await;
    add_admin(&db, "bob", "Bob").await;
    let token = TokenSigner::new(TOKEN_SECRET.as_bytes()).sign(TokenKind::Admin, "alice", 600);
    let mut alice =
        SioClient::connect_token("alice", &server.web_url(), json!({ "admin_token": token })).await;
    let mut php = admin(&server).await;
    let mut v = visitor(&server, 1601).await;
    subscribe(&mut v, 1601).await;
    assert_eq!(alice.next_payload("online").await, json!({ "cid": "1601" }));
    assert_eq!(php.next_payload("online").await, json!({ "cid": "1601" }));
    say(&mut v, 1601, "a <question>").await;
    // The token admin renders text: it gets it as typed; the PHP admin gets it escaped.
    let plain = alice.next_payload("new message").await;
    legacy_message(&plain, 1601, "a <question>", "0");
    legacy_message(
        &php.next_payload("new message").await,
        1601,
        "a &lt;question&gt;",
        "0",
    );
    v.next_payload("new message").await;

    let ack = alice
        .emit_ack(
            "new message:servadm",
            &[json!({ "username": 1601, "message": "signed by my token", "room": room(1601) })],
        )
        .await;
    let label = ack["data"]["label"]
        .as_u64()
        .unwrap_or_else(|| panic!("{ack}"));
    let p = v.next_payload("new message").await;
    assert_eq!(
        legacy_message(&p, 1601, "signed by my token", "Alice Acme"),
        label
    );
    assert_eq!(stored(&db, label).await.aid, "alice");

    let forged = json!({ "username": 1601, "message": "as bob", "room": room(1601), "adm": "bob" });
    alice.emit("new message:servadm", &[forged]).await;
    assert_refusal(
        &alice.next_payload("chat error").await,
        "new message:servadm",
        "forbidden",
    );
    v.expect_none("new message", QUIET).await;
    assert_eq!(count(&db, "aid = 'bob'").await, 0);
    stop(server, db).await;
}

/// Messages one page sends back to back are stored and shown in the order they were sent
/// (Socket.IO delivers a socket's events in order; a visitor typing fast, or the PHP admin
/// answering twice, must not see them swapped).
#[tokio::test]
async fn messages_of_one_socket_keep_their_order() {
    const N: usize = 30;
    let Some((server, db)) = start(Backend::Sqlite, ROOMY).await else {
        return;
    };
    add_admin(&db, "alice", "Alice").await;
    let mut admin = admin(&server).await;
    let mut v = visitor(&server, 1701).await;
    subscribe(&mut v, 1701).await;
    assert_eq!(admin.next_payload("online").await, json!({ "cid": "1701" }));

    for i in 0..N {
        say(&mut v, 1701, &format!("visitor {i}")).await;
    }
    for i in 0..N {
        reply(&mut admin, 1701, "alice", &format!("admin {i}")).await;
    }
    let mut order = Vec::new();
    for _ in 0..2 * N {
        let p = v.next_payload("new message").await;
        order.push(p["message"].as_str().unwrap_or_default().to_owned());
    }
    let (mut from_visitor, mut from_admin): (Vec<_>, Vec<_>) =
        order.into_iter().partition(|t| t.starts_with("visitor"));
    let sent = |who: &str| (0..N).map(|i| format!("{who} {i}")).collect::<Vec<_>>();
    let in_order = (from_visitor.clone(), from_admin.clone());
    from_visitor.sort_by_key(|t| t[8..].parse::<usize>().unwrap_or(0));
    from_admin.sort_by_key(|t| t[6..].parse::<usize>().unwrap_or(0));
    assert_eq!(from_visitor, sent("visitor"), "every visitor message, once");
    assert_eq!(from_admin, sent("admin"), "every reply, once");
    assert_eq!(
        in_order.0,
        sent("visitor"),
        "the visitor's messages in the order typed"
    );
    assert_eq!(in_order.1, sent("admin"), "the replies in the order sent");
    stop(server, db).await;
}

/// "More msg" as the legacy visitor page really does it (LEGACY.md §3): `takehistory()` opens
/// a second, fresh connection with no handlers, asks with `mid = 50000000` (the page never
/// learns what it shows), and renders what arrives on its first socket. Each click shows the
/// next 10 older messages, none twice; no one but that visitor gets any of it (§9.8).
#[tokio::test]
async fn legacy_page_more_msg_asks_on_a_fresh_connection() {
    let Some((server, db)) = start(Backend::Sqlite, ROOMY).await else {
        return;
    };
    add_admin(&db, "alice", "Alice").await;
    let seeded = seed(&server, 1701, 45).await;
    let mut admin = admin(&server).await;
    let mut stranger = page(&server, 1702).await;
    let mut first = page(&server, 1701).await;
    expect_subscribe_history(&mut first, 1701, &seeded[25..], true).await;

    // Three clicks: 24..15, 14..5, then 4..0 with no button left.
    let pages: [(&[Seeded], bool); 3] = [
        (&seeded[15..25], true),
        (&seeded[5..15], true),
        (&seeded[..5], false),
    ];
    let mut clicks = Vec::new();
    for (older, button) in pages {
        let mut click = visitor(&server, 1701).await;
        click
            .emit(
                "take history",
                &[json!({ "username": "1701", "room": room(1701), "mid": 50000000 })],
            )
            .await;
        let newest_first: Vec<&Seeded> = older.iter().rev().collect();
        expect_page(&mut first, 1701, &newest_first, button).await;
        // The page keeps the extra connection open; so does this test.
        clicks.push(click);
    }
    for name in [
        "drop history button",
        "new message history",
        "add history button",
    ] {
        stranger.expect_none(name, QUIET).await;
        admin.expect_none(name, Duration::ZERO).await;
    }
    first.expect_none("chat error", Duration::ZERO).await;

    // A client that knows the oldest message it shows still gets exactly what it asks for.
    let mut widget_like = visitor(&server, 1701).await;
    subscribe(&mut widget_like, 1701).await;
    expect_subscribe_history(&mut widget_like, 1701, &seeded[25..], true).await;
    first.drain_events();
    let older: Vec<&Seeded> = seeded[..5].iter().rev().collect();
    expect_history_page(&mut widget_like, 1701, seeded[5].id, &older, false).await;
    stop(server, db).await;
}

/// Support writes first (proactive chat): the PHP admin answers a visitor who never wrote.
/// The reply is stored as the legacy server stored it, reaches the visitor live when the
/// page is open, and is in the history of its next visit.
#[tokio::test]
async fn support_writes_first() {
    let Some((server, db)) = start(Backend::Sqlite, ROOMY).await else {
        return;
    };
    add_admin(&db, "alice", "Alice").await;
    let mut admin = admin(&server).await;

    // The visitor has the page open but has not written.
    let mut open = page(&server, 1801).await;
    assert_eq!(admin.next_payload("online").await, json!({ "cid": "1801" }));
    open.expect_none("new message", QUIET).await;
    reply(&mut admin, 1801, "alice", "Hello! Can we help?").await;
    let hello = admin.next_payload("new message").await;
    let label = legacy_message(&hello, 1801, "Hello! Can we help?", "Alice Acme");
    assert_eq!(open.next_payload("new message").await, hello);
    assert_eq!(stored(&db, label).await.direction, "2");

    // The visitor is not there at all: the reply waits for the next visit.
    reply(&mut admin, 1802, "alice", "We saw you had trouble paying").await;
    let waiting = admin.next_payload("new message").await;
    legacy_message(
        &waiting,
        1802,
        "We saw you had trouble paying",
        "Alice Acme",
    );
    let mut later = page(&server, 1802).await;
    assert_eq!(later.next_payload("new message").await, waiting);
    later.expect_none("add history button", QUIET).await;

    // A backend over gRPC may write first too.
    let sent = server
        .chat()
        .await
        .send_message(pb::SendMessageRequest {
            conversation_id: 1803,
            author: Some(pb::Author {
                kind: pb::AuthorKind::Admin as i32,
                admin_id: "alice".into(),
            }),
            text: "From the CRM".into(),
            client_msg_id: String::new(),
        })
        .await
        .expect("a reply to a new visitor is stored")
        .into_inner();
    let id = sent.message.expect("stored message").id;
    legacy_message(
        &admin.next_payload("new message").await,
        1803,
        "From the CRM",
        "Alice Acme",
    );
    assert_eq!(stored(&db, id).await.cid, "1803");
    admin.expect_none("chat error", Duration::ZERO).await;
    stop(server, db).await;
}

/// `online` / `offline` carry the visitor id as its handshake gave it (LEGACY.md §4).
#[tokio::test]
async fn presence_carries_the_id_as_the_handshake_gave_it() {
    let Some((server, db)) = start(Backend::Sqlite, ROOMY).await else {
        return;
    };
    let mut admin = admin(&server).await;
    let room = room_of(HashKind::Md5, "0123", SECRET);
    let mut v = SioClient::open(
        "page 0123",
        &Handshake::legacy_visitor(&server.web_url(), "0123", &room).emitting_on_connect(
            "subscribe",
            vec![json!({ "room": room, "username": "0123" })],
        ),
    )
    .await
    .expect("handshake with a leading zero");
    assert_eq!(admin.next_payload("online").await, json!({ "cid": "0123" }));
    let mut late = self::admin(&server).await;
    assert_eq!(late.next_payload("online").await, json!({ "cid": "0123" }));
    v.disconnect().await;
    assert_eq!(
        admin.next_payload("offline").await,
        json!({ "cid": "0123" })
    );
    assert_eq!(late.next_payload("offline").await, json!({ "cid": "0123" }));
    stop(server, db).await;
}

/// What a page can send that is no readable JSON (a lone surrogate, nesting past the parser's
/// limit) is refused saying what is wrong; an event name of half a megabyte (within the
/// packet limit) comes back, in the refusal, as a few dozen characters (no amplification).
#[tokio::test]
async fn unreadable_payloads_and_huge_names_are_answered_briefly() {
    let Some((server, db)) = start(Backend::Sqlite, ROOMY).await else {
        return;
    };
    let mut v = page(&server, 1901).await;
    v.emit_raw(
        "new message",
        &format!(
            r#"[{{"username": "1901", "message": "\ud800", "room": "{}"}}]"#,
            room(1901)
        ),
    )
    .await;
    let refusal = v.next_payload("chat error").await;
    assert_refusal(&refusal, "new message", "invalid");
    let why = refusal["message"].as_str().unwrap();
    assert!(why.starts_with("the payload cannot be read"), "{why}");
    assert!(why.contains("escape"), "{why}");

    let deep = format!("[{}{}]", "[".repeat(1000), "]".repeat(1000));
    v.emit_raw("new message", &deep).await;
    let refusal = v.next_payload("chat error").await;
    let why = refusal["message"].as_str().unwrap();
    assert!(why.contains("recursion"), "{why}");

    let name = "x".repeat(1 << 19);
    v.emit(&name, &[json!({})]).await;
    let refusal = v.next_payload("chat error").await;
    assert_eq!(refusal["code"], "unknown_event");
    let size = refusal.to_string().len();
    assert!(size < 512, "a {size}-byte answer to a 512 KiB event name");
    assert!(refusal["event"].as_str().unwrap().starts_with("xxxx"));
    assert_eq!(count(&db, "cid = 1901").await, 0, "nothing stored");
    stop(server, db).await;
}

/// An admin whose reader stops falls behind the messages: it is cut off for real, never left
/// connected with a gap. What it received is an unbroken run of messages, then its connection
/// closes (the client reconnects, as after any network drop); an admin that reads gets all.
#[tokio::test]
async fn a_slow_admin_is_cut_off_not_left_with_a_gap() {
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::{Message, client::IntoClientRequest};

    let Some((server, db)) = start(Backend::Sqlite, ROOMY).await else {
        return;
    };
    const SENT: u64 = 4000;
    const LATER: u64 = 100;
    let mut reader = admin(&server).await;
    // A raw WebSocket admin with a tiny receive window, that stops reading once connected.
    let addr: std::net::SocketAddr = server
        .web_url()
        .trim_start_matches("http://")
        .parse()
        .unwrap();
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let tcp = socket.connect(addr).await.unwrap();
    let request = format!("ws://{addr}/socket.io/?EIO=4&transport=websocket&adminpass=admin")
        .into_client_request()
        .unwrap();
    let (mut slow, _) = tokio_tungstenite::client_async(request, tcp).await.unwrap();
    match slow.next().await {
        Some(Ok(Message::Text(t))) if t.starts_with('0') => {}
        other => panic!("expected the open packet, got {other:?}"),
    }
    slow.send(Message::text("40")).await.unwrap();
    loop {
        match slow.next().await {
            Some(Ok(Message::Text(t))) if t.starts_with("40") => break,
            Some(Ok(_)) => {}
            other => panic!("expected the namespace connect, got {other:?}"),
        }
    }

    // Far more than the socket's queue holds, from several senders at once.
    let text = "m".repeat(9000);
    let flood = |conversation: u64, n: u64| {
        let server_chat = server.chat();
        let text = text.clone();
        async move {
            let mut chat = server_chat.await;
            for _ in 0..n {
                chat.send_message(pb::SendMessageRequest {
                    conversation_id: conversation,
                    author: Some(pb::Author {
                        kind: pb::AuthorKind::Visitor as i32,
                        admin_id: String::new(),
                    }),
                    text: text.clone(),
                    client_msg_id: String::new(),
                })
                .await
                .expect("stored");
            }
        }
    };
    futures::future::join_all((0..8).map(|part| flood(2001 + part, SENT / 8))).await;

    // The slow admin reads again while more messages come: it must not get them after a gap.
    let reading = tokio::spawn(async move {
        let mut labels: Vec<u64> = Vec::new();
        loop {
            match tokio::time::timeout(Duration::from_secs(10), slow.next()).await {
                Err(_) => return (labels, false),
                Ok(None | Some(Err(_)) | Some(Ok(Message::Close(_)))) => return (labels, true),
                Ok(Some(Ok(Message::Text(t)))) => {
                    if let Some(body) = t.strip_prefix("42")
                        && let Ok(Value::Array(event)) = serde_json::from_str::<Value>(body)
                        && event[0] == "new message"
                    {
                        labels.push(event[1]["label"].as_u64().unwrap());
                    }
                }
                Ok(Some(Ok(_))) => {}
            }
        }
    });
    flood(2100, LATER).await;
    let mut got = 0u64;
    while got < SENT + LATER {
        if reader.next("new message").await.len() == 1 {
            got += 1;
        }
    }
    let (labels, ended) = reading.await.unwrap();
    assert!(ended, "the slow admin is disconnected, not left waiting");
    assert!(
        (labels.len() as u64) < SENT,
        "the slow admin fell behind (the test needs it to): got all {SENT}"
    );
    assert!(
        labels.windows(2).all(|w| w[1] == w[0] + 1),
        "no gap in what the slow admin got: {} messages, first {:?}, last {:?}",
        labels.len(),
        labels.first(),
        labels.last()
    );
    assert_eq!(count(&db, "1 = 1").await, SENT + LATER);
    stop(server, db).await;
}

/// A socket that goes on flooding after being told to slow down is refused before its events
/// queue up, then cut off; everyone else keeps being served.
#[tokio::test]
async fn a_socket_that_keeps_flooding_is_cut_off() {
    let limits = "events_per_second = 2\nevents_burst = 5\n\
                  ip_events_per_second = 100000\nip_events_burst = 100000\n\
                  connections_per_ip = 10\n";
    let Some((server, db)) = start(Backend::Sqlite, limits).await else {
        return;
    };
    let mut flooder = page(&server, 2201).await;
    let mut calm = page(&server, 2202).await;
    let payload = json!({ "username": "2201", "message": "flood", "room": room(2201) });
    flooder.emit_many("new message", &[payload], 20_000).await;
    let reason = flooder.disconnected().await;
    assert_eq!(reason, "transport close", "cut off from underneath");
    let stored = count(&db, "cid = 2201").await;
    assert!(stored <= 10, "only the burst was served: {stored}");

    say(&mut calm, 2202, "still served").await;
    legacy_message(
        &calm.next_payload("new message").await,
        2202,
        "still served",
        "0",
    );
    stop(server, db).await;
}

/// A WebSocket frame announcing more than `[web.limits] max_packet_bytes` is refused when its
/// header arrives, before the client has authenticated and before any of it is buffered: the
/// connection closes at once instead of holding megabytes while the client trickles.
#[tokio::test]
async fn an_oversized_frame_closes_the_connection_before_authentication() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;

    let Some((server, db)) = start(Backend::Sqlite, ROOMY).await else {
        return;
    };
    let addr = server.web_url().trim_start_matches("http://").to_owned();
    let tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let request = format!("ws://{addr}/socket.io/?EIO=4&transport=websocket")
        .into_client_request()
        .unwrap();
    let (ws, _) = tokio_tungstenite::client_async(request, tcp).await.unwrap();
    let mut tcp = ws.into_inner();
    // A masked text frame announcing 8 MiB (the default limit is 1 MiB), then a trickle.
    let mut header = vec![0x81u8, 0xFF];
    header.extend_from_slice(&(8u64 << 20).to_be_bytes());
    header.extend_from_slice(&[1, 2, 3, 4]);
    tcp.write_all(&header).await.unwrap();
    tcp.write_all(&[b'x'; 1024]).await.unwrap();
    let mut sink = vec![0u8; 64 * 1024];
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match tcp.read(&mut sink).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the server still holds the connection");
    stop(server, db).await;
}

/// SIGTERM under load (issue: "SIGTERM drops sends in flight"): every send the edge accepted
/// is stored and acknowledged before the socket closes; every later one it read is refused,
/// saying it was not stored, and is not. What the client had sent but the edge had not read
/// yet when the sockets closed gets no answer (the client sees the disconnect) and is not
/// stored either. No one is told a lie.
#[tokio::test]
async fn sigterm_under_load_answers_every_send_truthfully() {
    // Fewer than a socket's queue holds (2,048 packets): the acknowledgements never fill it,
    // so the socket is not cut off as a slow reader (whose unread answers would be lost).
    const N: usize = 1500;
    const CID: u64 = 1801;
    let limits = "events_per_second = 1000000\nevents_burst = 1000000\n\
                  ip_events_per_second = 1000000\nip_events_burst = 1000000\n";
    let Some((server, db)) = start(Backend::Sqlite, limits).await else {
        return;
    };
    let mut v = page(&server, CID).await;
    let each: Vec<Vec<Value>> = (0..N)
        .map(|i| {
            vec![json!({ "username": CID.to_string(), "message": format!("m{i}"), "room": room(CID) })]
        })
        .collect();
    let ids = v.emit_acks("new message", &each).await;
    // The signal comes once the first messages are stored and many are still to come.
    let first = v.ack_of(ids[0]).await.expect("the first send is answered");
    server.begin_shutdown();
    let mut answers = vec![Ok(first)];
    for &id in &ids[1..] {
        answers.push(v.ack_of(id).await);
    }
    assert!(server.exited().await, "socketgram exits cleanly on SIGTERM");

    let mut stored_ids = Vec::new();
    let (mut refused, mut unanswered) = (0, 0);
    for (i, answer) in answers.iter().enumerate() {
        let Ok(answer) = answer else {
            unanswered += 1;
            continue;
        };
        if let Some(label) = answer["data"]["label"].as_u64() {
            stored_ids.push((i, label));
            continue;
        }
        assert_refusal(&answer["error"], "new message", "unavailable");
        let message = answer["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains("not stored"),
            "send {i}: a refusal must say the message was not stored: {answer}"
        );
        refused += 1;
    }
    assert!(
        !stored_ids.is_empty() && refused + unanswered > 0,
        "the signal came mid-load: {} stored, {refused} refused, {unanswered} unanswered",
        stored_ids.len()
    );
    assert_eq!(
        count(&db, &format!("cid = {CID}")).await,
        stored_ids.len() as u64,
        "exactly the acknowledged messages are stored ({refused} refused, {unanswered} unanswered)"
    );
    for &(i, id) in [stored_ids[0], *stored_ids.last().expect("one")].iter() {
        assert_eq!(stored(&db, id).await.message, format!("m{i}"));
    }
    db.drop_db().await;
}

/// Reads until the server closes `tcp` (EOF or reset); whether it did within `within`.
async fn closed_within(tcp: &mut tokio::net::TcpStream, within: Duration) -> bool {
    use tokio::io::AsyncReadExt;
    let mut sink = vec![0u8; 64 * 1024];
    tokio::time::timeout(within, async {
        loop {
            match tcp.read(&mut sink).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .is_ok()
}

/// A TCP connection to the web listener that has sent nothing yet.
async fn raw_connection(server: &TestServer) -> tokio::net::TcpStream {
    let addr = server.web_url().trim_start_matches("http://").to_owned();
    tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect")
}

/// Slowloris (issue: "nothing times out slow HTTP request heads"): a request head trickled a
/// byte at a time is cut at `handshake_timeout_secs`, and so is a connection that never
/// starts one; a client that sends its head in time is served.
#[tokio::test]
async fn slow_request_heads_are_cut_at_the_handshake_timeout() {
    use tokio::io::AsyncWriteExt;
    let limits = format!("{ROOMY}handshake_timeout_secs = 1\n");
    let Some((server, db)) = start(Backend::Sqlite, &limits).await else {
        return;
    };
    let mut silent = raw_connection(&server).await;
    let mut trickler = raw_connection(&server).await;
    trickler
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let trickle = async {
        for _ in 0..30 {
            if trickler.write_all(b"X").await.is_err() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        false
    };
    assert!(
        tokio::time::timeout(Duration::from_secs(5), trickle)
            .await
            .unwrap_or(false),
        "a trickled request head is cut"
    );
    assert!(
        closed_within(&mut silent, Duration::from_secs(3)).await,
        "a connection that sends nothing is cut"
    );
    let mut v = page(&server, 2401).await;
    say(&mut v, 2401, "in time").await;
    legacy_message(&v.next_payload("new message").await, 2401, "in time", "0");
    stop(server, db).await;
}

/// Before anyone has authenticated (issue: "unauthenticated memory exhaustion"): one client
/// address may hold only `unauthenticated_per_ip` connections that have neither completed a
/// request head nor authenticated a socket; one more is closed at once. A WebSocket that never
/// sends its Socket.IO CONNECT, or stalls in the middle of a frame before it, is closed at
/// `handshake_timeout_secs`, not held until the ping timeout.
#[tokio::test]
async fn unauthenticated_connections_are_bounded_per_client() {
    use tokio::io::AsyncWriteExt;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let limits = format!("{ROOMY}unauthenticated_per_ip = 3\nhandshake_timeout_secs = 2\n");
    let Some((server, db)) = start(Backend::Sqlite, &limits).await else {
        return;
    };
    let addr = server.web_url().trim_start_matches("http://").to_owned();
    let mut held = Vec::new();
    for _ in 0..2 {
        let request = format!("ws://{addr}/socket.io/?EIO=4&transport=websocket")
            .into_client_request()
            .unwrap();
        let (ws, _) = tokio_tungstenite::client_async(request, raw_connection(&server).await)
            .await
            .expect("the WebSocket upgrade");
        held.push(ws.into_inner());
    }
    // One of them starts a 512 KiB frame (under max_packet_bytes) and stalls in it.
    let mut header = vec![0x81u8, 0xFF];
    header.extend_from_slice(&(512u64 << 10).to_be_bytes());
    header.extend_from_slice(&[1, 2, 3, 4]);
    held[0].write_all(&header).await.unwrap();
    held[0].write_all(&[b'x'; 4096]).await.unwrap();
    held.push(raw_connection(&server).await);
    // The third unproven connection is the limit: a fourth is closed at once.
    let mut extra = raw_connection(&server).await;
    assert!(
        closed_within(&mut extra, Duration::from_millis(1500)).await,
        "a connection over the unauthenticated limit is closed at once"
    );
    let started = std::time::Instant::now();
    for (i, tcp) in held.iter_mut().enumerate() {
        assert!(
            closed_within(tcp, Duration::from_secs(6)).await,
            "unauthenticated connection {i} is closed at the handshake timeout"
        );
    }
    assert!(started.elapsed() < Duration::from_secs(6));
    // Room again: a real client connects and is served.
    let mut v = page(&server, 2402).await;
    say(&mut v, 2402, "after").await;
    legacy_message(&v.next_payload("new message").await, 2402, "after", "0");
    stop(server, db).await;
}

/// Connections per client address before any upgrade (issue: "nothing caps HTTP connections
/// per client"): past `http_connections_per_ip` open ones, a new connection is closed at once;
/// when one goes, there is room again.
#[tokio::test]
async fn http_connections_are_capped_per_client() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let limits = format!("{ROOMY}http_connections_per_ip = 4\n");
    let Some((server, db)) = start(Backend::Sqlite, &limits).await else {
        return;
    };
    // Keep-alive connections that were served once (so they are not "unauthenticated").
    let mut open = Vec::new();
    for _ in 0..4 {
        let mut tcp = raw_connection(&server).await;
        tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut answer = [0u8; 256];
        let n = tcp.read(&mut answer).await.unwrap();
        assert!(answer[..n].starts_with(b"HTTP/1.1 200"), "served");
        open.push(tcp);
    }
    let mut fifth = raw_connection(&server).await;
    assert!(
        closed_within(&mut fifth, Duration::from_millis(1500)).await,
        "a connection over the limit is closed at once"
    );
    drop(open.pop());
    // The server notices the close on its own time: try until there is room.
    let served = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let mut tcp = raw_connection(&server).await;
            let _ = tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await;
            let mut answer = [0u8; 256];
            if matches!(tcp.read(&mut answer).await, Ok(n) if answer[..n].starts_with(b"HTTP/1.1 200"))
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(served.is_ok(), "room again once a connection closed");
    drop(open);
    stop(server, db).await;
}

/// What browsers do by default: start with long polling, then upgrade to WebSocket on a new
/// connection that never authenticates itself (the session it upgrades did). That connection
/// is proven by its session and outlives the handshake timeout.
#[tokio::test]
async fn a_websocket_upgraded_from_polling_outlives_the_handshake_timeout() {
    let limits = format!("{ROOMY}handshake_timeout_secs = 1\n");
    let Some((server, db)) = start(Backend::Sqlite, &limits).await else {
        return;
    };
    let handshake = page_handshake(&server, 2403).with_transports(&["polling", "websocket"]);
    let mut v = SioClient::open("upgrading page", &handshake)
        .await
        .expect("connects over polling");
    // Past the timeout, with the upgrade long done.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    say(&mut v, 2403, "still here").await;
    legacy_message(
        &v.next_payload("new message").await,
        2403,
        "still here",
        "0",
    );
    stop(server, db).await;
}
