//! The web edge end to end, as the legacy pages and the unchanged PHP admin use it: the real
//! server on port 0 (in process), driven by the official `socket.io-client` under Node.js
//! ([`SioClient`]), with the database checked the way the PHP admin reads it (LEGACY.md §2-§6,
//! and the defects of §9 that must be gone). One file per behaviour: `conversation`,
//! `history`, `identity`, `bad_input`, `connections`, `shutdown`, `ops` (the operations
//! endpoints), `telegram_link` ("Continue in Telegram"); shared helpers here.
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

/// Every conversation's live events over gRPC, as a support backend subscribes (`as_admin`
/// names the admin it is for, empty: none).
async fn support_events(
    chat: &mut socketgram_proto::client::ChatClient,
    as_admin: &str,
) -> tonic::Streaming<pb::Event> {
    chat.subscribe(pb::SubscribeRequest {
        scope: Some(pb::subscribe_request::Scope::AllConversations(true)),
        since_message_id: None,
        as_admin: as_admin.into(),
    })
    .await
    .expect("subscribe to every conversation")
    .into_inner()
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
                attachment_ids: Vec::new(),
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

// One file per behaviour; the helpers above are shared.
mod bad_input;
mod cluster;
mod connections;
mod console;
mod conversation;
mod files;
mod history;
mod identity;
mod ops;
mod shutdown;
mod telegram_link;
