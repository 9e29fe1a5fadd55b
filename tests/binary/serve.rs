//! `socketgram serve` end to end: the real binary on port 0, driven by a real gRPC client, on
//! each database backend.

use std::{collections::BTreeSet, path::Path, sync::Arc, time::Duration};

use futures::StreamExt;
use socketgram_core::store::Backend;
use socketgram_proto::{
    client::ChatClient as Chat,
    v1::{self as pb, edge_command::Command, event::Kind, subscribe_request::Scope},
};
use socketgram_tests::{db::TestDb, proxy::FaultProxy, server::TestServer};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Streaming};

const BIN: &str = env!("CARGO_BIN_EXE_socketgram");
const WAIT: Duration = Duration::from_secs(10);

fn visitor() -> Option<pb::Author> {
    Some(pb::Author {
        kind: pb::AuthorKind::Visitor as i32,
        admin_id: String::new(),
    })
}

fn admin(id: &str) -> Option<pb::Author> {
    Some(pb::Author {
        kind: pb::AuthorKind::Admin as i32,
        admin_id: id.into(),
    })
}

async fn send(
    chat: &mut Chat,
    cid: u64,
    author: Option<pb::Author>,
    text: &str,
    key: &str,
) -> Result<pb::SendMessageResponse, tonic::Status> {
    chat.send_message(pb::SendMessageRequest {
        attachment_ids: Vec::new(),
        conversation_id: cid,
        author,
        text: text.into(),
        client_msg_id: key.into(),
    })
    .await
    .map(|r| r.into_inner())
}

/// The newest `limit` messages of a conversation (newest first).
async fn newest(
    chat: &mut Chat,
    cid: u64,
    limit: u32,
) -> Result<pb::HistoryResponse, tonic::Status> {
    chat.history(pb::HistoryRequest {
        conversation_id: cid,
        before_id: 0,
        after_id: 0,
        limit,
    })
    .await
    .map(|r| r.into_inner())
}

async fn subscribe(chat: &mut Chat, scope: Scope, since: Option<u64>) -> Streaming<pb::Event> {
    chat.subscribe(pb::SubscribeRequest {
        scope: Some(scope),
        since_message_id: since,
        as_admin: String::new(),
    })
    .await
    .expect("subscribe")
    .into_inner()
}

async fn next(stream: &mut Streaming<pb::Event>) -> Kind {
    tokio::time::timeout(WAIT, stream.message())
        .await
        .expect("timed out waiting for an event")
        .expect("stream error")
        .expect("stream ended")
        .kind
        .expect("event kind")
}

/// Reads until `CaughtUp`, returning the replayed message ids.
async fn until_caught_up(stream: &mut Streaming<pb::Event>) -> (Vec<u64>, u64) {
    let mut ids = Vec::new();
    loop {
        match next(stream).await {
            Kind::Message(m) => ids.push(m.id),
            Kind::CaughtUp(c) => return (ids, c.last_message_id),
            Kind::PresenceSnapshot(_)
            | Kind::Presence(_)
            | Kind::AdminsChanged(_)
            | Kind::ReadMark(_)
            | Kind::Note(_)
            | Kind::Assigned(_)
            | Kind::StatusChanged(_)
            | Kind::Typing(_)
            | Kind::Erased(_)
            | Kind::VisitorContext(_) => {}
        }
    }
}

async fn next_message(stream: &mut Streaming<pb::Event>) -> pb::Message {
    loop {
        if let Kind::Message(m) = next(stream).await {
            return m;
        }
    }
}

/// One `#[tokio::test]` per backend named, each running `scenario` with [`with_backend`].
macro_rules! on_backends {
    ($scenario:ident: $($backend:ident => $name:ident),+ $(,)?) => {
        $(
            #[tokio::test]
            async fn $name() {
                with_backend(Backend::$backend, $scenario).await;
            }
        )+
    };
}

async fn with_backend(backend: Backend, scenario: impl AsyncFnOnce(&TestServer, &TestDb)) {
    with_config(
        backend,
        "[core]\ncompany = \"Acme\"\ngmt_offset_hours = 3\n",
        scenario,
    )
    .await;
}

/// A scenario on a server of `toml` on a database of its own.
async fn with_config(
    backend: Backend,
    toml: &str,
    scenario: impl AsyncFnOnce(&TestServer, &TestDb),
) {
    let Some(db) = TestDb::create(backend).await else {
        return;
    };
    let server = TestServer::binary(Path::new(BIN), "serve", &db.url, toml).await;
    scenario(&server, &db).await;
    assert!(
        server.terminate().await,
        "socketgram exits cleanly on SIGTERM"
    );
    db.drop_db().await;
}

on_backends!(end_to_end:
    Sqlite => sqlite_end_to_end,
    MySql => mysql_end_to_end,
    Postgres => postgres_end_to_end,
);

async fn end_to_end(server: &TestServer, db: &TestDb) {
    // Health and reflection answer without a token.
    let channel = server.channel().await;
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    let serving = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "socketgram.v1.Chat".into(),
        })
        .await
        .expect("health")
        .into_inner();
    assert_eq!(
        serving.status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );
    assert_eq!(
        reflected_services(channel.clone()).await,
        [
            "grpc.health.v1.Health",
            "grpc.reflection.v1.ServerReflection",
            "socketgram.v1.Chat",
            "socketgram.v1.Staff",
            "socketgram.v1.Telegram"
        ]
    );

    // Without (or with a wrong) token, nothing.
    let mut anonymous = pb::chat_client::ChatClient::new(channel);
    let err = anonymous
        .list_online(pb::ListOnlineRequest {})
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);

    let mut chat = server.chat().await;

    // The PHP admin creates an admin directly in the database, then asks for a reload.
    add_alice(db).await;
    let admins = chat
        .reload_admins(pb::ReloadAdminsRequest {})
        .await
        .unwrap()
        .into_inner()
        .admins;
    assert_eq!(
        admins
            .iter()
            .map(|a| a.display_name.as_str())
            .collect::<Vec<_>>(),
        ["Alice Acme"]
    );

    // An admin watching everything, from the start.
    let mut watcher = subscribe(&mut chat, Scope::AllConversations(true), None).await;
    assert!(matches!(next(&mut watcher).await, Kind::PresenceSnapshot(s) if s.online.is_empty()));
    assert!(matches!(next(&mut watcher).await, Kind::CaughtUp(_)));

    // The visitor comes online through an edge session.
    let (edge, commands) = mpsc::channel(16);
    let mut edge_events = chat
        .edge_session(ReceiverStream::new(commands))
        .await
        .unwrap()
        .into_inner();
    edge.send(pb::EdgeCommand {
        command: Some(Command::Presence(pb::EdgePresence {
            conversation_id: 123,
            online: true,
        })),
    })
    .await
    .unwrap();
    assert!(
        matches!(next(&mut watcher).await, Kind::Presence(p) if p.conversation_id == 123 && p.online)
    );
    // A second admin connecting later learns who is online right away.
    let mut late = subscribe(&mut chat, Scope::AllConversations(true), None).await;
    assert!(matches!(next(&mut late).await, Kind::PresenceSnapshot(s) if s.online == [123]));
    drop(late);

    // Visitor message, then a reply; both reach the watcher in order, with legacy details.
    let sent = send(&mut chat, 123, visitor(), "Hello <b>there</b>", "v-1")
        .await
        .unwrap();
    assert!(!sent.duplicate);
    let m = next_message(&mut watcher).await;
    assert_eq!(
        (m.id, m.text.as_str(), m.admin_id.as_str()),
        (sent.message.as_ref().unwrap().id, "Hello <b>there</b>", "0")
    );
    assert_eq!(m.local_date.len(), "YYYY-MM-DD HH:MM:SS".len());
    let reply = send(&mut chat, 123, admin("alice"), "Hi!", "")
        .await
        .unwrap()
        .message
        .unwrap();
    let m = next_message(&mut watcher).await;
    assert_eq!(
        (m.id, m.admin_display_name.as_str(), m.direction),
        (reply.id, "Alice Acme", pb::Direction::ToVisitor as i32)
    );
    // The stored date is wall-clock at GMT+3, and created_at is the same instant in UTC.
    let created = m.created_at.unwrap().seconds;
    let local = chrono::NaiveDateTime::parse_from_str(&m.local_date, "%Y-%m-%d %H:%M:%S").unwrap();
    assert_eq!(local.and_utc().timestamp() - created, 3 * 3600);
    assert!((chrono::Utc::now().timestamp() - created).abs() < 60);

    // A retried send stores nothing new.
    let again = send(&mut chat, 123, visitor(), "Hello <b>there</b>", "v-1")
        .await
        .unwrap();
    assert!(again.duplicate);
    assert_eq!(again.message.unwrap().id, sent.message.unwrap().id);

    // History pages: 25 more messages, pages of 10, newest first.
    let mut ids = vec![];
    for i in 0..25 {
        ids.push(
            send(
                &mut chat,
                123,
                visitor(),
                &format!("n{i}"),
                &format!("n{i}"),
            )
            .await
            .unwrap()
            .message
            .unwrap()
            .id,
        );
    }
    let page = newest(&mut chat, 123, 10).await.unwrap();
    assert!(page.has_more);
    assert_eq!(
        page.messages.iter().map(|m| m.id).collect::<Vec<_>>(),
        ids[15..].iter().rev().copied().collect::<Vec<_>>()
    );
    let older = chat
        .history(pb::HistoryRequest {
            conversation_id: 123,
            before_id: ids[0],
            after_id: 0,
            limit: 10,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!older.has_more);
    assert_eq!(older.messages.len(), 2);

    // Resume across a disconnect: follow the conversation, drop, miss messages, resume.
    let mut follower = subscribe(&mut chat, Scope::ConversationId(123), Some(0)).await;
    let (replayed, last) = until_caught_up(&mut follower).await;
    assert_eq!(replayed.len(), 27);
    assert_eq!(last, *ids.last().unwrap());
    drop(follower);
    let mut missed = vec![];
    for i in 0..5 {
        missed.push(
            send(&mut chat, 123, visitor(), &format!("missed {i}"), "")
                .await
                .unwrap()
                .message
                .unwrap()
                .id,
        );
    }
    let mut follower = subscribe(&mut chat, Scope::ConversationId(123), Some(last)).await;
    let (replayed, caught_up) = until_caught_up(&mut follower).await;
    assert_eq!(replayed, missed, "exactly what was missed, in order");
    assert_eq!(caught_up, *missed.last().unwrap());
    let live = send(&mut chat, 123, admin("alice"), "live again", "")
        .await
        .unwrap()
        .message
        .unwrap();
    assert_eq!(next_message(&mut follower).await.id, live.id);

    // Conversations list with unread counts and presence.
    let list = chat
        .list_conversations(pb::ListConversationsRequest {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let c = &list.conversations[0];
    assert_eq!((c.conversation_id, c.online), (123, true));
    assert_eq!(c.last_message.as_ref().unwrap().id, live.id);
    assert_eq!(c.unread_by_support, 31);

    // Bad input: clear errors, nothing stored.
    let before = newest(&mut chat, 123, 1).await.unwrap().messages[0].id;
    // Each refusal carries its reason (google.rpc.ErrorInfo) for programs to branch on.
    use socketgram_proto::reason as r;
    for (author, text, cid, code, reason) in [
        (visitor(), "   ", 123, Code::InvalidArgument, r::EMPTY_TEXT),
        (
            visitor(),
            &"x".repeat(10_001) as &str,
            123,
            Code::InvalidArgument,
            r::TEXT_TOO_LONG,
        ),
        (
            visitor(),
            &"<".repeat(3_000) as &str,
            123,
            Code::InvalidArgument,
            r::TEXT_TOO_LONG,
        ),
        (
            None,
            "no author",
            123,
            Code::InvalidArgument,
            r::INVALID_ARGUMENT,
        ),
        (
            visitor(),
            "no conversation",
            0,
            Code::InvalidArgument,
            r::INVALID_ARGUMENT,
        ),
        // Support may write first, but only to an id a visitor can have.
        (
            admin("alice"),
            "out of range",
            u64::from(u32::MAX) + 1,
            Code::InvalidArgument,
            r::INVALID_ARGUMENT,
        ),
        (
            admin("mallory"),
            "forged",
            123,
            Code::NotFound,
            r::UNKNOWN_ADMIN,
        ),
    ] {
        let err = send(&mut chat, cid, author, text, "").await.unwrap_err();
        assert_eq!(err.code(), code, "{text:.20}: {}", err.message());
        assert!(!err.message().is_empty());
        assert_eq!(
            r::of(&err).as_deref(),
            Some(reason),
            "{text:.20}: {}",
            err.message()
        );
    }
    let err = chat
        .subscribe(pb::SubscribeRequest {
            scope: Some(Scope::ConversationId(123)),
            since_message_id: Some(live.id + 1000),
            as_admin: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::OutOfRange);
    let err = newest(&mut chat, 424_242, 10).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let after = newest(&mut chat, 123, 1).await.unwrap().messages[0].id;
    assert_eq!(before, after, "nothing was stored by refused sends");

    // Telegram link state.
    let mut telegram = server.telegram().await;
    let link = telegram
        .link(pb::LinkTelegramRequest {
            chat_id: 5_000_000_000,
            conversation_id: 123,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (link.mode, link.active),
        (pb::TelegramMode::Menu as i32, true)
    );
    let err = telegram
        .get_link(pb::GetTelegramLinkRequest { chat_id: 1 })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);

    // The edge goes away: its visitor goes offline.
    drop(edge);
    drop(edge_events.next());
    loop {
        if let Kind::Presence(p) = next(&mut watcher).await {
            assert_eq!((p.conversation_id, p.online), (123, false));
            break;
        }
    }
    drop(edge_events);
    // Streams still open (watcher, follower) must not hold up SIGTERM: the caller checks the exit.
}

async fn reflected_services(channel: tonic::transport::Channel) -> Vec<String> {
    use tonic_reflection::pb::v1::{
        ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
    };
    let mut client = ServerReflectionClient::new(channel);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = client
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let response = responses.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("no service list")
    };
    let mut names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    names.sort();
    names
}

/// Many senders at once while a subscriber keeps disconnecting and resuming from its last id:
/// the ids it collects are every stored id, once, in order. With ids that could commit out of
/// order, a resume would skip the late one.
async fn concurrent_resume(server: &TestServer, _db: &TestDb) {
    const SENDERS: usize = 8;
    const EACH: usize = 40;
    let mut chat = server.chat().await;
    chat.open_conversation(pb::OpenConversationRequest { conversation_id: 1 })
        .await
        .unwrap();
    let mut senders = Vec::new();
    for s in 0..SENDERS {
        let mut chat = server.chat().await;
        senders.push(tokio::spawn(async move {
            for i in 0..EACH {
                send(
                    &mut chat,
                    1 + (i % 3) as u64,
                    visitor(),
                    &format!("{s}/{i}"),
                    &format!("{s}/{i}"),
                )
                .await
                .unwrap();
            }
        }));
    }
    let mut seen: Vec<u64> = Vec::new();
    let mut cursor = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while seen.len() < SENDERS * EACH {
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {} of {} messages arrived",
            seen.len(),
            SENDERS * EACH
        );
        let mut stream = subscribe(&mut chat, Scope::AllConversations(true), Some(cursor)).await;
        // Take a few events, then drop the stream mid-flight and resume.
        for _ in 0..7 {
            match tokio::time::timeout(Duration::from_millis(500), stream.message()).await {
                Ok(Ok(Some(pb::Event {
                    kind: Some(Kind::Message(m)),
                }))) => {
                    assert!(m.id > cursor, "ids only increase along a subscription");
                    cursor = m.id;
                    seen.push(m.id);
                }
                Ok(Ok(Some(_))) => {}
                _ => break,
            }
        }
    }
    for s in senders {
        s.await.unwrap();
    }
    let unique: BTreeSet<u64> = seen.iter().copied().collect();
    assert_eq!(unique.len(), seen.len(), "no duplicates");
    let mut stored = BTreeSet::new();
    for cid in 1..=3 {
        let page = newest(&mut chat, cid, 500).await.unwrap();
        stored.extend(page.messages.iter().map(|m| m.id));
    }
    assert_eq!(unique, stored, "every stored message was delivered");
}

on_backends!(concurrent_resume:
    Sqlite => sqlite_concurrent_sends_resume_without_gaps,
    MySql => mysql_concurrent_sends_resume_without_gaps,
    Postgres => postgres_concurrent_sends_resume_without_gaps,
);

/// The database goes away under a running server: sends fail with UNAVAILABLE and a clear
/// message, nothing is half stored, live subscribers see no phantom, and the server recovers.
/// A server whose database is reached through a [`FaultProxy`], with one message ("before")
/// in conversation 9 and a subscriber of it caught up. `None` when the database is missing.
async fn behind_fault_proxy(
    backend: Backend,
) -> Option<(TestDb, FaultProxy, TestServer, Streaming<pb::Event>)> {
    let db = TestDb::create(backend).await?;
    let (proxy, proxied) = FaultProxy::in_front_of(&db.url).await;
    let mut url = url::Url::parse(&proxied).unwrap();
    if backend == Backend::Postgres {
        // The proxy must see statements go by (a COMMIT to drop): no TLS to the database.
        url.query_pairs_mut().append_pair("sslmode", "disable");
    }
    let server = TestServer::binary(Path::new(BIN), "serve", url.as_str(), "").await;
    let mut chat = server.chat().await;
    let first = send(&mut chat, 9, visitor(), "before", "")
        .await
        .unwrap()
        .message
        .unwrap();
    let mut watcher = subscribe(&mut chat, Scope::ConversationId(9), Some(first.id)).await;
    until_caught_up(&mut watcher).await;
    Some((db, proxy, server, watcher))
}

/// Sends until the database is back (UNAVAILABLE meanwhile); the stored message.
async fn send_when_back(chat: &mut Chat, text: &str, key: &str) -> pb::Message {
    for _ in 0..50 {
        match send(chat, 9, visitor(), text, key).await {
            Ok(r) => return r.message.expect("the stored message"),
            Err(e) if e.code() == Code::Unavailable => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            Err(e) => panic!("{e:?}"),
        }
    }
    panic!("the server did not recover");
}

async fn database_outage(backend: Backend) {
    let Some((db, proxy, server, mut watcher)) = behind_fault_proxy(backend).await else {
        return;
    };
    let mut chat = server.chat().await;

    proxy.cut();
    let err = send(&mut chat, 9, visitor(), "during", "k-during")
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{}", err.message());
    assert!(
        err.message().contains("database unavailable"),
        "{}",
        err.message()
    );
    let err = newest(&mut chat, 9, 10).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);

    proxy.restore();
    let after = send_when_back(&mut chat, "during", "k-during").await;
    assert_eq!(
        next_message(&mut watcher).await.id,
        after.id,
        "the watcher sees the retried message once"
    );
    let page = newest(&mut chat, 9, 10).await.unwrap();
    let texts: Vec<_> = page.messages.iter().map(|m| m.text.as_str()).collect();
    assert_eq!(
        texts,
        ["during", "before"],
        "the failed send stored nothing; its retry stored it once"
    );
    assert!(server.terminate().await);
    db.drop_db().await;
}

/// The connection to the database drops right after a COMMIT reached it: the message is
/// stored though its answer is lost. The sender is told the truth (stored, once; no retry
/// needed), and when the database then stays away the answer is that the outcome is unknown,
/// never "nothing was stored". Subscribers see every stored message once.
async fn commit_answer_lost(backend: Backend) {
    let Some((db, proxy, server, mut watcher)) = behind_fault_proxy(backend).await else {
        return;
    };
    let mut chat = server.chat().await;

    // The legacy pages send no client message id: a wrong "nothing was stored" would make
    // their retry a duplicate.
    proxy.drop_after_next_commit(false);
    let stored = send(&mut chat, 9, visitor(), "answer lost", "")
        .await
        .expect("the message was stored, and the sender is told so")
        .message
        .unwrap();
    assert!(
        proxy.commit_dropped(Duration::from_secs(5)).await,
        "the COMMIT's answer was dropped"
    );
    assert_eq!(next_message(&mut watcher).await.id, stored.id);
    let texts = |page: pb::HistoryResponse| -> Vec<String> {
        page.messages.into_iter().map(|m| m.text).collect()
    };
    assert_eq!(
        texts(newest(&mut chat, 9, 10).await.unwrap()),
        ["answer lost", "before"],
        "stored once"
    );

    // Now the database stays away after the COMMIT: nobody can know yet.
    proxy.drop_after_next_commit(true);
    let err = send(&mut chat, 9, visitor(), "outcome unknown", "")
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::DeadlineExceeded, "{}", err.message());
    assert!(
        err.message().contains("may have been stored")
            && !err.message().contains("nothing was stored"),
        "{}",
        err.message()
    );
    proxy.restore();
    let after = send_when_back(&mut chat, "after", "k-after").await;
    // It was stored: it is published, once, before what came after it.
    let unknown = next_message(&mut watcher).await;
    assert_eq!(unknown.text, "outcome unknown");
    assert_eq!(next_message(&mut watcher).await.id, after.id);
    assert_eq!(
        texts(newest(&mut chat, 9, 10).await.unwrap()),
        ["after", "outcome unknown", "answer lost", "before"]
    );
    assert!(server.terminate().await);
    db.drop_db().await;
}

#[tokio::test]
async fn mysql_commit_answer_lost_is_told_truthfully() {
    commit_answer_lost(Backend::MySql).await;
}

#[tokio::test]
async fn postgres_commit_answer_lost_is_told_truthfully() {
    commit_answer_lost(Backend::Postgres).await;
}

#[tokio::test]
async fn mysql_outage_gives_unavailable_and_recovers() {
    database_outage(Backend::MySql).await;
}

#[tokio::test]
async fn postgres_outage_gives_unavailable_and_recovers() {
    database_outage(Backend::Postgres).await;
}

/// Browsers speak gRPC-web over HTTP/1.1: the health check answers that way too.
#[tokio::test]
async fn grpc_web_answers_over_http1() {
    let Some(db) = TestDb::create(Backend::Sqlite).await else {
        return;
    };
    let server = TestServer::binary(Path::new(BIN), "serve", &db.url, "").await;
    // On the gRPC listener and on the web listener (`[web] grpc_web`, on by default).
    for addr in [server.grpc, server.web.expect("web listener")] {
        grpc_web_health_check(addr).await;
    }
    assert!(server.terminate().await);
}

async fn grpc_web_health_check(addr: std::net::SocketAddr) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = "POST /grpc.health.v1.Health/Check HTTP/1.1\r\nHost: localhost\r\n\
                   Content-Type: application/grpc-web+proto\r\nX-Grpc-Web: 1\r\n\
                   Content-Length: 5\r\n\r\n\0\0\0\0\0";
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    let mut buf = [0u8; 4096];
    let text = tokio::time::timeout(WAIT, async {
        loop {
            let n = tcp.read(&mut buf).await.unwrap();
            assert!(
                n > 0,
                "connection closed early: {}",
                String::from_utf8_lossy(&response)
            );
            response.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&response).to_string();
            if text.contains("grpc-status:") {
                return text;
            }
        }
    })
    .await
    .expect("gRPC-web response");
    assert!(text.starts_with("HTTP/1.1 200"), "{addr}: {text}");
    assert!(text.contains("application/grpc-web"), "{addr}: {text}");
    assert!(text.contains("grpc-status:0"), "{addr}: {text}");
    // The data frame: flag 0, length 2, HealthCheckResponse { status: SERVING (1) }.
    assert!(
        response
            .windows(7)
            .any(|w| w == [0, 0, 0, 0, 2, 0x08, 0x01]),
        "{addr}: {text}"
    );
}

#[tokio::test]
async fn migrate_creates_the_schema_and_exits() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("chat.db");
    let status = tokio::process::Command::new(BIN)
        .arg("migrate")
        .current_dir(dir.path())
        .env(
            "SOCKETGRAM_CORE__DATABASE__URL",
            format!("sqlite://{}", file.display()),
        )
        .status()
        .await
        .unwrap();
    assert!(status.success());
    let db = open_store(&format!("sqlite://{}", file.display())).await;
    assert_eq!(
        db.last_message_id().await.unwrap(),
        0,
        "the schema is there"
    );
    db.close().await;
}

/// `socketgram admin add|list|remove` manage `adm_account` without SQL: what a new
/// deployment needs (with `migrate`) before anyone can reply.
#[tokio::test]
async fn admin_command_manages_the_directory() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("chat.db").display());
    let admin = |args: &[&str]| {
        let args: Vec<String> = ["admin"]
            .iter()
            .chain(args)
            .map(|a| a.to_string())
            .collect();
        let (dir, url) = (dir.path().to_owned(), url.clone());
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let dir = dir.as_path();
            let out = socketgram(dir, &args, &[("SOCKETGRAM_CORE__DATABASE__URL", &url)]).await;
            (
                out.status.success(),
                String::from_utf8_lossy(&out.stdout).into_owned(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )
        }
    };
    let (ok, out, _) = admin(&["list"]).await;
    assert!(ok && out.contains("no admins yet"), "{out}");
    let (ok, out, err) = admin(&["add", "alice", "Alice"]).await;
    assert!(ok, "{err}");
    assert!(out.contains("added admin \"alice\""), "{out}");
    let (ok, _, err) = admin(&["add", "bob", "Bob", "--role", "1"]).await;
    assert!(ok, "{err}");
    let (ok, _, err) = admin(&["add", "alice", "Alice Again"]).await;
    assert!(!ok && err.contains("exists already"), "{err}");
    for bad in [
        vec!["add", "0", "Visitor"],
        vec!["add", "a-login-longer-than-twenty", "Long"],
        vec!["add", "carol", "Carol", "--role", "7"],
    ] {
        let (ok, _, err) = admin(&bad).await;
        assert!(!ok && !err.is_empty(), "{bad:?} must be refused");
    }
    let (ok, out, _) = admin(&["list"]).await;
    assert!(ok);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(
        lines[1].starts_with("alice") && lines[1].contains("2 (chat only)"),
        "{out}"
    );
    assert!(
        lines[2].starts_with("bob") && lines[2].contains("1 (all tools)"),
        "{out}"
    );

    // Replies are signed with the new admin at once, by a server started afterwards.
    let db = open_store(&url).await;
    assert_eq!(
        db.admins()
            .await
            .unwrap()
            .iter()
            .map(|a| (a.admin_id.as_str(), a.name.as_str()))
            .collect::<Vec<_>>(),
        [("alice", "Alice"), ("bob", "Bob")]
    );
    db.close().await;

    // The staff group: an admin is paired with a Telegram user, listed, and unpaired.
    let (ok, out, err) = admin(&["link-telegram", "bob", "7000000001"]).await;
    assert!(ok && out.contains("Telegram user 7000000001"), "{err}");
    let (ok, out, _) = admin(&["list"]).await;
    assert!(
        ok && out.lines().nth(2).unwrap().contains("7000000001"),
        "{out}"
    );
    for bad in [
        vec!["link-telegram", "nobody", "5"],
        vec!["link-telegram", "bob", "-5"],
        vec!["link-telegram", "bob", "many"],
        vec!["link-telegram", "bob"],
    ] {
        let (ok, _, err) = admin(&bad).await;
        assert!(!ok && !err.is_empty(), "{bad:?} must be refused");
    }
    let (ok, out, err) = admin(&["link-telegram", "bob", "--remove"]).await;
    assert!(ok && out.contains("no Telegram user"), "{err}");
    let (_, out, _) = admin(&["list"]).await;
    assert!(!out.contains("7000000001"), "{out}");

    let (ok, out, err) = admin(&["remove", "bob"]).await;
    assert!(ok && out.contains("removed"), "{err}");
    let (ok, _, err) = admin(&["remove", "bob"]).await;
    assert!(!ok && err.contains("no admin"), "{err}");
}

/// `config check` prints the effective configuration as TOML, secrets hidden and nothing else;
/// the printed text is itself a configuration.
#[tokio::test]
async fn config_check_prints_the_effective_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let out = socketgram(
        dir.path(),
        &["config", "check"],
        &[
            ("SOCKETGRAM_WEB__TOKEN_SECRET", "a-secret-of-ours"),
            ("SOCKETGRAM_CORE__COMPANY", "Acme"),
        ],
    )
    .await;
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.starts_with("# configuration OK"), "{text}");
    assert!(text.contains("url = \"sqlite://socketgram.db\""), "{text}");
    assert!(text.contains("company = \"Acme\""), "{text}");
    assert!(text.contains("token_secret = \"***\""), "{text}");
    assert!(!text.contains("a-secret-of-ours"), "{text}");
    let file = dir.path().join("printed.toml");
    std::fs::write(&file, &text).unwrap();
    let again = socketgram(
        dir.path(),
        &["config", "check", "--config", file.to_str().unwrap()],
        &[],
    )
    .await;
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );

    // The documented example runs as it is; its placeholders are refused once switched on.
    let example = socketgram(dir.path(), &["config", "example"], &[]).await;
    std::fs::write(dir.path().join("socketgram.toml"), &example.stdout).unwrap();
    let check = socketgram(dir.path(), &["config", "check"], &[]).await;
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    let refused = socketgram(
        dir.path(),
        &["config", "check"],
        &[("SOCKETGRAM_WEB__TOKEN_SECRET", "change-me-token-secret")],
    )
    .await;
    assert_eq!(refused.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("web.token_secret") && stderr.contains("example value"),
        "{stderr}"
    );
}

/// Runs the binary to completion in `dir` with these arguments and extra environment.
async fn socketgram(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    tokio::process::Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .envs(env.iter().copied())
        .output()
        .await
        .unwrap()
}

/// The store of a database a `socketgram` process uses, opened beside it (as another process
/// would open it).
async fn open_store(url: &str) -> Arc<dyn socketgram_core::store::Store> {
    socketgram_core::store::connect(&socketgram_core::store::DatabaseConfig {
        url: socketgram_core::config::Secret::new(url),
        ..Default::default()
    })
    .await
    .expect("open the database")
}

/// Runs `command` (which starts `socketgram serve`) in `dir` on a SQLite file there and
/// ports 0, and waits for its ready line: the child and that line.
async fn serve_raw(
    mut command: tokio::process::Command,
    dir: &Path,
) -> (tokio::process::Child, String) {
    use tokio::io::AsyncBufReadExt;
    let url = format!("sqlite://{}", dir.join("chat.db").display());
    let mut child = command
        .current_dir(dir)
        .env("SOCKETGRAM_CORE__DATABASE__URL", &url)
        .env("SOCKETGRAM_GRPC__LISTEN", "127.0.0.1:0")
        .env("SOCKETGRAM_WEB__LISTEN", "127.0.0.1:0")
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let ready = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
        .await
        .expect("ready in time")
        .unwrap()
        .unwrap_or_default();
    assert!(ready.starts_with("socketgram: listening"), "{ready}");
    (child, ready)
}

/// Started with the usual soft limit of open files, the server raises it to the hard limit:
/// every connection is a file descriptor.
#[tokio::test]
async fn the_open_files_limit_is_raised_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let mut command = tokio::process::Command::new("sh");
    command
        .arg("-c")
        .arg(format!("ulimit -Sn 256 && exec {BIN} serve"));
    let (mut child, _) = serve_raw(command, dir.path()).await;
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", child.id().unwrap())).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    let numbers: Vec<&str> = line.split_whitespace().skip(3).take(2).collect();
    assert_eq!(numbers[0], numbers[1], "soft = hard: {line}");
    assert_ne!(numbers[0], "256", "{line}");
    child.kill().await.unwrap();
}

/// Visitors who open the page at once are queued by the kernel until the server accepts them:
/// with the server stopped (SIGSTOP: it accepts nothing), hundreds of connections still
/// complete their TCP handshake into the listen queue. With the default queue of 128 all but
/// ~129 of them had their SYN dropped and waited a second or more to be sent again.
#[tokio::test]
async fn a_burst_of_connections_waits_in_the_listen_queue() {
    const BURST: usize = 600;
    let dir = tempfile::tempdir().unwrap();
    let mut command = tokio::process::Command::new(BIN);
    command.arg("serve");
    let (mut child, ready) = serve_raw(command, dir.path()).await;
    let web = ready
        .split_whitespace()
        .find_map(|w| w.strip_prefix("web="))
        .unwrap()
        .to_owned();
    let pid = child.id().unwrap().to_string();
    let signal = |name: &'static str| {
        let pid = pid.clone();
        async move {
            let status = tokio::process::Command::new("kill")
                .args([name, &pid])
                .status()
                .await
                .unwrap();
            assert!(status.success(), "kill {name}");
        }
    };
    signal("-STOP").await;
    let connects = (0..BURST).map(|_| tokio::net::TcpStream::connect(web.clone()));
    let connected =
        tokio::time::timeout(Duration::from_secs(5), futures::future::join_all(connects)).await;
    signal("-CONT").await;
    let connected = connected.expect("every connection of the burst was queued, none dropped");
    assert!(
        connected.iter().all(Result::is_ok),
        "every connect succeeded"
    );
    drop(connected);
    child.kill().await.unwrap();
}

/// A stderr nobody reads (a pipe whose reader is stuck) fills up; the server keeps serving
/// and still stops on SIGTERM, dropping log lines rather than blocking on them.
#[tokio::test]
async fn a_stalled_log_never_blocks_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let mut command = tokio::process::Command::new(BIN);
    command
        .arg("serve")
        .env("RUST_LOG", "trace")
        // Kept open, never read.
        .stderr(std::process::Stdio::piped());
    let (mut child, ready) = serve_raw(command, dir.path()).await;
    let grpc = ready
        .split_whitespace()
        .find_map(|w| w.strip_prefix("grpc="))
        .expect("grpc address")
        .to_owned();
    // Enough traced requests to fill a pipe many times over.
    let channel = tonic::transport::Channel::from_shared(format!("http://{grpc}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    for _ in 0..300 {
        tokio::time::timeout(
            Duration::from_secs(5),
            health.check(tonic_health::pb::HealthCheckRequest {
                service: String::new(),
            }),
        )
        .await
        .expect("the server keeps answering while its log is stalled")
        .expect("health");
    }
    let pid = child.id().unwrap().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .expect("stopped on SIGTERM with its log stalled")
        .unwrap();
    assert!(status.success(), "{status}");
}

#[tokio::test]
async fn a_bad_configuration_is_refused_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.toml");
    std::fs::write(&file, "[grpc]\nlisten = \"nowhere\"\n").unwrap();
    for (args, env, key) in [
        (
            vec!["serve", "--config", file.to_str().unwrap()],
            None,
            "grpc.listen",
        ),
        (
            vec!["config", "check"],
            Some(("SOCKETGRAM_CORE__MAX_MESSAGE_CHARS", "0")),
            "core.max_message_chars",
        ),
        (
            vec!["core"],
            Some(("SOCKETGRAM_CORE__DATABASE__URL", "ftp://x")),
            "core.database.url",
        ),
    ] {
        let mut command = tokio::process::Command::new(BIN);
        command.args(&args).current_dir(dir.path());
        if let Some((k, v)) = env {
            command.env(k, v);
        }
        let out = command.output().await.unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(key), "{args:?}: {stderr}");
    }
}

/// With `[grpc.tls]` and `[web.tls]`, both listeners speak TLS (and only TLS).
#[tokio::test]
async fn tls_on_both_listeners() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Some(db) = TestDb::create(Backend::Sqlite).await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let key = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let (cert_pem, key_pem) = (key.cert.pem(), key.signing_key.serialize_pem());
    let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_path, &cert_pem).unwrap();
    std::fs::write(&key_path, &key_pem).unwrap();
    let tls = format!("cert = {:?}\nkey = {:?}\n", cert_path, key_path);
    let server = TestServer::binary(
        Path::new(BIN),
        "serve",
        &db.url,
        &format!("[grpc.tls]\n{tls}\n[web.tls]\n{tls}"),
    )
    .await;

    // gRPC over TLS, trusting our certificate.
    let channel =
        tonic::transport::Channel::from_shared(format!("https://localhost:{}", server.grpc.port()))
            .unwrap()
            .tls_config(
                tonic::transport::ClientTlsConfig::new()
                    .ca_certificate(tonic::transport::Certificate::from_pem(&cert_pem))
                    .domain_name("localhost"),
            )
            .unwrap()
            .connect()
            .await
            .expect("TLS gRPC connection");
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    health
        .check(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("health over TLS");

    // The web listener over TLS.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(key.cert.der().clone()).unwrap();
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(server.web.unwrap())
        .await
        .unwrap();
    let mut tls_stream = connector
        .connect(
            rustls::pki_types::ServerName::try_from("localhost").unwrap(),
            tcp,
        )
        .await
        .expect("TLS web connection");
    tls_stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    tokio::time::timeout(WAIT, tls_stream.read_to_string(&mut response))
        .await
        .unwrap()
        .ok();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.ends_with("ok"), "{response}");

    // Plain HTTP on the web port is not served.
    let mut plain = tokio::net::TcpStream::connect(server.web.unwrap())
        .await
        .unwrap();
    plain
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(WAIT, plain.read_to_end(&mut buf)).await;
    assert!(!String::from_utf8_lossy(&buf).contains("200 OK"));
    assert!(server.terminate().await);
    db.drop_db().await;
}

/// An edge session of the test's own: where its commands go, and the core's events.
async fn edge_session(
    chat: &mut Chat,
) -> (
    mpsc::UnboundedSender<pb::EdgeCommand>,
    Streaming<pb::EdgeEvent>,
) {
    let (edge, commands) = mpsc::unbounded_channel();
    let events = chat
        .edge_session(tokio_stream::wrappers::UnboundedReceiverStream::new(
            commands,
        ))
        .await
        .unwrap()
        .into_inner();
    (edge, events)
}

/// The next event of an edge session, which must come within `WAIT`.
async fn next_edge_event(events: &mut Streaming<pb::EdgeEvent>) -> pb::edge_event::Kind {
    let event = tokio::time::timeout(WAIT, events.message())
        .await
        .expect("the core answers within the wait")
        .unwrap()
        .expect("the session stays open");
    event.kind.expect("an event has a kind")
}

/// The answers to `n` commands of an edge session by request id, each answered once: `answer`
/// picks a request id and its outcome out of an event, and any other event fails the test.
async fn edge_answers<T>(
    events: &mut Streaming<pb::EdgeEvent>,
    n: usize,
    answer: impl Fn(pb::edge_event::Kind) -> Option<(u64, T)>,
) -> std::collections::HashMap<u64, T> {
    let mut answers = std::collections::HashMap::new();
    while answers.len() < n {
        let kind = next_edge_event(events).await;
        let what = format!("{kind:?}");
        let (request_id, outcome) =
            answer(kind).unwrap_or_else(|| panic!("unexpected edge event {what}"));
        assert!(
            answers.insert(request_id, outcome).is_none(),
            "one answer per request ({request_id})"
        );
    }
    answers
}

/// Sends through an edge session are taken in the session's order without waiting for each
/// other's commit: hundreds in flight at once are stored in exactly the order sent, each gets
/// its own answer, and refused ones are answered with their reason without holding up the rest.
async fn edge_session_sends(server: &TestServer, _db: &TestDb) {
    const SENDS: u64 = 300;
    let mut chat = server.chat().await;
    let (edge, mut events) = edge_session(&mut chat).await;
    let request = |text: String, author| pb::SendMessageRequest {
        attachment_ids: Vec::new(),
        conversation_id: 77,
        author,
        text,
        client_msg_id: String::new(),
    };
    for i in 1..=SENDS {
        let request = match i {
            100 => Some(request("   ".into(), visitor())),
            101 => Some(request("from nobody".into(), admin("nobody"))),
            102 => None,
            _ => Some(request(format!("m{i}"), visitor())),
        };
        edge.send(pb::EdgeCommand {
            command: Some(Command::Send(pb::EdgeSend {
                request_id: i,
                request,
            })),
        })
        .unwrap();
    }
    let answers = edge_answers(&mut events, SENDS as usize, |kind| match kind {
        pb::edge_event::Kind::SendResult(result) => Some((result.request_id, result.outcome)),
        _ => None,
    })
    .await;
    use pb::edge_send_result::Outcome;
    let refused = |i: u64| match &answers[&i] {
        Some(Outcome::Error(e)) => Code::from(e.code),
        other => panic!("send {i} should be refused, got {other:?}"),
    };
    assert_eq!(refused(100), Code::InvalidArgument);
    assert_eq!(refused(101), Code::NotFound);
    assert_eq!(refused(102), Code::InvalidArgument);
    let mut last = 0;
    for i in (1..=SENDS).filter(|i| !(100..=102).contains(i)) {
        let Some(Outcome::Sent(sent)) = &answers[&i] else {
            panic!("send {i} failed: {:?}", answers[&i]);
        };
        let id = sent.message.as_ref().unwrap().id;
        assert!(id > last, "send {i} stored after the sends before it");
        last = id;
    }
    let page = newest(&mut chat, 77, 500).await.unwrap();
    let texts: Vec<String> = page.messages.iter().rev().map(|m| m.text.clone()).collect();
    let expected: Vec<String> = (1..=SENDS)
        .filter(|i| !(100..=102).contains(i))
        .map(|i| format!("m{i}"))
        .collect();
    assert_eq!(texts, expected, "stored once each, in the order sent");
}

on_backends!(edge_session_sends:
    Sqlite => sqlite_edge_session_sends_keep_their_order,
    MySql => mysql_edge_session_sends_keep_their_order,
    Postgres => postgres_edge_session_sends_keep_their_order,
);

/// A socket's join over an edge session: the recent history oldest first with whether older
/// exists, a resume's catch-up, an empty answer for a conversation nothing was written to yet
/// (and the join writes nothing), and bad joins refused with their reason, each answered
/// under its own request id while the session carries on.
async fn edge_session_joins(server: &TestServer, _db: &TestDb) {
    let mut chat = server.chat().await;
    let mut ids = Vec::new();
    for i in 1..=30 {
        let sent = send(&mut chat, 78, visitor(), &format!("j{i}"), "").await;
        ids.push(sent.unwrap().message.unwrap().id);
    }
    let (edge, mut events) = edge_session(&mut chat).await;
    let join = |request_id, conversation_id, recent, resume: Option<(u64, u32)>| pb::EdgeJoin {
        request_id,
        conversation_id,
        up_to_message_id: None,
        recent,
        since_message_id: resume.map(|(since, _)| since),
        catch_up: resume.map_or(0, |(_, catch_up)| catch_up),
    };
    let joins = [
        join(1, 78, 0, None),
        join(2, 78, 5, Some((ids[26], 0))),
        join(3, 78, 5, Some((ids[2], 10))),
        join(4, 79, 0, None),
        join(5, 78, 501, None),
        join(6, 78, 0, Some((ids[0], 501))),
        join(7, 0, 0, None),
    ];
    for join in joins {
        edge.send(pb::EdgeCommand {
            command: Some(Command::Join(join)),
        })
        .unwrap();
    }
    let answers = edge_answers(&mut events, 7, |kind| match kind {
        pb::edge_event::Kind::Joined(joined) => Some((joined.request_id, joined.outcome)),
        _ => None,
    })
    .await;
    use pb::edge_joined::Outcome;
    let history = |i: u64| match &answers[&i] {
        Some(Outcome::History(h)) => {
            let texts: Vec<&str> = h.messages.iter().map(|m| m.text.as_str()).collect();
            (texts, h.has_more)
        }
        other => panic!("join {i} should be answered with history, got {other:?}"),
    };
    let texts = |range: std::ops::RangeInclusive<u32>| -> Vec<String> {
        range.map(|i| format!("j{i}")).collect()
    };
    let (recent, more) = history(1);
    assert_eq!(
        recent,
        texts(11..=30),
        "the 20 newest by default, oldest first"
    );
    assert!(more, "older messages exist");
    let (resumed, more) = history(2);
    assert_eq!(
        resumed,
        texts(28..=30),
        "a resume gets what follows its cursor"
    );
    assert!(!more);
    let (too_far, more) = history(3);
    assert_eq!(
        too_far,
        texts(26..=30),
        "more than catch_up behind: the recent ones instead"
    );
    assert!(more);
    assert_eq!(history(4), (Vec::new(), false), "nothing written yet");
    let refused = |i: u64| match &answers[&i] {
        Some(Outcome::Error(e)) => (Code::from(e.code), e.message.clone()),
        other => panic!("join {i} should be refused, got {other:?}"),
    };
    for i in [5, 6] {
        let (code, message) = refused(i);
        assert_eq!(code, Code::InvalidArgument, "join {i}: {message}");
        assert!(
            message.contains("1..=500"),
            "join {i} says the bound: {message}"
        );
    }
    assert_eq!(refused(7).0, Code::InvalidArgument);
    // The session still works after the refusals, and the join of 79 created nothing.
    edge.send(pb::EdgeCommand {
        command: Some(Command::Join(join(8, 78, 1, None))),
    })
    .unwrap();
    let pb::edge_event::Kind::Joined(joined) = next_edge_event(&mut events).await else {
        panic!("the session still answers joins");
    };
    assert_eq!(joined.request_id, 8);
    let listed = chat
        .list_conversations(pb::ListConversationsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(
        listed.conversations.iter().all(|c| c.conversation_id != 79),
        "a join writes nothing: {listed:?}"
    );
}

on_backends!(edge_session_joins:
    Sqlite => sqlite_edge_session_joins_answer_and_refuse,
    Postgres => postgres_edge_session_joins_answer_and_refuse,
);

/// SQLite is single-node: a second core on the same file would store messages the first one's
/// subscribers never hear of. It is refused at start, saying why; once the first has stopped,
/// the file is free again.
#[tokio::test]
async fn a_second_core_on_one_sqlite_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut first = tokio::process::Command::new(BIN);
    first.arg("serve");
    let (first, _) = serve_raw(first, dir.path()).await;
    let url = format!("sqlite://{}", dir.path().join("chat.db").display());
    let env = [
        ("SOCKETGRAM_CORE__DATABASE__URL", url.as_str()),
        ("SOCKETGRAM_GRPC__LISTEN", "127.0.0.1:0"),
        ("SOCKETGRAM_WEB__LISTEN", "127.0.0.1:0"),
    ];
    for command in ["serve", "core"] {
        let second = tokio::time::timeout(
            Duration::from_secs(20),
            socketgram(dir.path(), &[command], &env),
        )
        .await
        .expect("the second process exits by itself");
        let stderr = String::from_utf8_lossy(&second.stderr);
        assert!(!second.status.success(), "{command}: refused, not started");
        assert!(
            stderr.contains("single-node") && stderr.contains("chat.db"),
            "{command}: says why: {stderr}"
        );
    }
    // Commands that do not run a core still work beside it.
    let listed = socketgram(dir.path(), &["admin", "list"], &env).await;
    assert!(
        listed.status.success(),
        "{}",
        String::from_utf8_lossy(&listed.stderr)
    );

    let pid = first.id().expect("running").to_string();
    let mut first = first;
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(first.wait().await.unwrap().success());
    let mut again = tokio::process::Command::new(BIN);
    again.arg("serve");
    let (mut again, _) = serve_raw(again, dir.path()).await;
    again.kill().await.unwrap();
}

/// `socketgram core` has no web listener: its operations endpoints are on the gRPC listener,
/// over plain HTTP/1.1 (what probes and Prometheus speak), beside gRPC, which still answers.
#[tokio::test]
async fn the_core_alone_serves_ops_on_its_grpc_listener() {
    let Some(db) = TestDb::create(Backend::Sqlite).await else {
        return;
    };
    let server = TestServer::binary(Path::new(BIN), "core", &db.url, "").await;
    let base = format!("http://{}", server.grpc);
    let get = |path: &'static str| {
        let url = format!("{base}{path}");
        async move {
            let response = tokio::time::timeout(WAIT, reqwest::get(&url))
                .await
                .expect("an answer in time")
                .expect("HTTP/1.1 answered");
            let status = response.status().as_u16();
            (status, response.text().await.unwrap())
        }
    };
    assert_eq!(get("/healthz").await, (200, "ok".into()));
    assert_eq!(get("/readyz").await, (200, "database ok\n".into()));
    let (status, scrape) = get("/metrics").await;
    assert_eq!(status, 200);
    assert!(
        scrape.contains("socketgram_db_pool_connections "),
        "{scrape}"
    );
    // gRPC on the same port.
    let names = reflected_services(server.channel().await).await;
    assert!(names.iter().any(|n| n == "socketgram.v1.Chat"), "{names:?}");
    assert!(server.terminate().await);
    db.drop_db().await;
}

/// `config check --role` checks what that process needs beyond a well-formed file: an edge
/// alone needs a token the cores accept, the Telegram edge a bot token, and core replicas a
/// database they can share (SQLite is single-node).
#[tokio::test]
async fn config_check_checks_what_each_role_needs() {
    let dir = tempfile::tempdir().unwrap();
    let check = |role: &'static str, env: &'static [(&'static str, &'static str)]| {
        let dir = dir.path().to_owned();
        async move { socketgram(&dir, &["config", "check", "--role", role], env).await }
    };
    let refused = check("edge-web", &[]).await;
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("edge.token"));
    let token = &[("SOCKETGRAM_EDGE__TOKEN", "an-edge-token")];
    assert!(check("edge-web", token).await.status.success());
    let no_bot = check("edge-telegram", token).await;
    assert_eq!(no_bot.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&no_bot.stderr).contains("telegram.token"));
    let bad_core = check(
        "edge-web",
        &[
            ("SOCKETGRAM_EDGE__TOKEN", "an-edge-token"),
            ("SOCKETGRAM_EDGE__CORE", "[\"ftp://core\"]"),
        ],
    )
    .await;
    assert_eq!(bad_core.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad_core.stderr).contains("edge.core"));
    let sqlite_cluster = check(
        "core",
        &[(
            "SOCKETGRAM_CORE__CLUSTER__NATS_URL",
            "nats://127.0.0.1:4222",
        )],
    )
    .await;
    assert_eq!(sqlite_cluster.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&sqlite_cluster.stderr).contains("single-node"));
    let shared = check(
        "core",
        &[
            (
                "SOCKETGRAM_CORE__CLUSTER__NATS_URL",
                "nats://127.0.0.1:4222",
            ),
            (
                "SOCKETGRAM_CORE__DATABASE__URL",
                "mysql://chat@127.0.0.1/chat",
            ),
        ],
    )
    .await;
    assert!(
        shared.status.success(),
        "{}",
        String::from_utf8_lossy(&shared.stderr)
    );
}

on_backends!(canned_replies:
    Sqlite => sqlite_canned_replies_over_grpc,
    MySql => mysql_canned_replies_over_grpc,
    Postgres => postgres_canned_replies_over_grpc,
);

/// The admin `alice` ("Alice"), created in the database as the PHP admin does.
async fn add_alice(db: &TestDb) {
    db.execute("INSERT INTO adm_account (aid, name, lid) VALUES ('alice', 'Alice', 2)")
        .await
        .unwrap();
}

fn put_reply(shortcut: &str, text: &str, by: &str) -> pb::PutCannedReplyRequest {
    pb::PutCannedReplyRequest {
        shortcut: shortcut.into(),
        text: text.into(),
        updated_by: by.into(),
    }
}

async fn list_replies(chat: &mut Chat, prefix: &str) -> Vec<(String, String)> {
    chat.list_canned_replies(pb::ListCannedRepliesRequest {
        prefix: prefix.into(),
    })
    .await
    .unwrap()
    .into_inner()
    .replies
    .into_iter()
    .map(|r| (r.shortcut, r.text))
    .collect()
}

/// Canned replies are managed over gRPC by known admins; a shortcut is normalised as support
/// types it; bad input is refused with its reason and changes nothing; a send never expands
/// one by itself.
async fn canned_replies(server: &TestServer, db: &TestDb) {
    add_alice(db).await;
    let mut chat = server.chat().await;
    let stored = chat
        .put_canned_reply(put_reply(
            "/Greet",
            "Hello, <b>how can we help</b>?",
            "alice",
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stored.shortcut, "greet");
    assert_eq!(stored.updated_by, "alice");
    assert!(stored.updated_at_ms > 0);
    chat.put_canned_reply(put_reply(
        "refund-policy",
        "30 days, no questions.",
        "alice",
    ))
    .await
    .unwrap();

    let refusals = [
        (
            put_reply("", "x", "alice"),
            Code::InvalidArgument,
            "INVALID_ARGUMENT",
        ),
        (
            put_reply("no spaces", "x", "alice"),
            Code::InvalidArgument,
            "INVALID_ARGUMENT",
        ),
        (
            put_reply(&"a".repeat(33), "x", "alice"),
            Code::InvalidArgument,
            "INVALID_ARGUMENT",
        ),
        (
            put_reply("ok", "   ", "alice"),
            Code::InvalidArgument,
            "EMPTY_TEXT",
        ),
        (
            put_reply("ok", "a\0b", "alice"),
            Code::InvalidArgument,
            "NUL_IN_TEXT",
        ),
        (
            put_reply("ok", &"a".repeat(100_000), "alice"),
            Code::InvalidArgument,
            "TEXT_TOO_LONG",
        ),
        (
            put_reply("ok", "x", "mallory"),
            Code::NotFound,
            "UNKNOWN_ADMIN",
        ),
        (
            put_reply("greet", "overwritten?", ""),
            Code::InvalidArgument,
            "INVALID_ARGUMENT",
        ),
    ];
    for (request, code, reason) in refusals {
        let shortcut = request.shortcut.clone();
        let err = chat.put_canned_reply(request).await.unwrap_err();
        assert_eq!(err.code(), code, "{shortcut:?}: {err:?}");
        assert_eq!(
            socketgram_proto::reason::of(&err).as_deref(),
            Some(reason),
            "{shortcut:?}"
        );
    }
    assert_eq!(
        list_replies(&mut chat, "").await,
        [
            ("greet".into(), "Hello, <b>how can we help</b>?".into()),
            ("refund-policy".into(), "30 days, no questions.".into()),
        ],
        "nothing refused was stored"
    );
    assert_eq!(
        list_replies(&mut chat, "/RE").await.len(),
        1,
        "a prefix as typed"
    );
    let err = chat
        .list_canned_replies(pb::ListCannedRepliesRequest {
            prefix: "a b".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);

    // A message that looks like a shortcut is sent as written: support's clients expand.
    let sent = send(&mut chat, 77, admin("alice"), "/greet", "")
        .await
        .unwrap();
    assert_eq!(sent.message.unwrap().text, "/greet");

    let deleted = |shortcut: &str| pb::DeleteCannedReplyRequest {
        shortcut: shortcut.into(),
    };
    assert!(
        chat.delete_canned_reply(deleted("/greet"))
            .await
            .unwrap()
            .into_inner()
            .deleted
    );
    assert!(
        !chat
            .delete_canned_reply(deleted("greet"))
            .await
            .unwrap()
            .into_inner()
            .deleted
    );
    assert_eq!(list_replies(&mut chat, "").await.len(), 1);
}

/// A team keeps at most 1,000 canned replies: the next new one is refused (RESOURCE_EXHAUSTED,
/// LIMIT_REACHED) while replacing one's text still works.
#[tokio::test]
async fn canned_replies_stop_at_the_limit() {
    with_backend(Backend::Sqlite, async |server: &TestServer, db: &TestDb| {
        add_alice(db).await;
        let chat = server.chat().await;
        let puts = (0..1000).map(|i| {
            let mut chat = chat.clone();
            async move {
                chat.put_canned_reply(put_reply(&format!("r{i}"), "text", "alice"))
                    .await
                    .map(|_| ())
            }
        });
        let stored = futures::stream::iter(puts)
            .buffer_unordered(16)
            .collect::<Vec<_>>()
            .await;
        assert!(stored.iter().all(Result::is_ok), "the first 1,000 are kept");
        let mut chat = chat.clone();
        let err = chat
            .put_canned_reply(put_reply("one-more", "text", "alice"))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
        assert_eq!(
            socketgram_proto::reason::of(&err).as_deref(),
            Some("LIMIT_REACHED")
        );
        chat.put_canned_reply(put_reply("r7", "new text", "alice"))
            .await
            .expect("replacing one is not adding one");
        assert_eq!(list_replies(&mut chat, "").await.len(), 1000);
    })
    .await;
}

on_backends!(read_marks:
    Sqlite => sqlite_read_marks_are_evented,
    Postgres => postgres_read_marks_are_evented,
);

/// MarkRead moves a mark forward only, the conversation carries both marks, and the
/// conversation's and all-conversation subscribers get a `ReadMark` with the mark as stored
/// (a lower one announces the higher stored mark, never a step back).
async fn read_marks(server: &TestServer, db: &TestDb) {
    add_alice(db).await;
    let mut chat = server.chat().await;
    let question = send(&mut chat, 55, visitor(), "are you there?", "q")
        .await
        .unwrap()
        .message
        .unwrap();
    let answer = send(&mut chat, 55, admin("alice"), "yes", "a")
        .await
        .unwrap()
        .message
        .unwrap();
    let mut everything = subscribe(&mut chat, Scope::AllConversations(true), None).await;
    let mut this_one = subscribe(&mut chat, Scope::ConversationId(55), None).await;
    for stream in [&mut everything, &mut this_one] {
        until_caught_up(stream).await;
    }
    let read = |reader: pb::Reader, up_to: u64| pb::MarkReadRequest {
        conversation_id: 55,
        reader: reader as i32,
        up_to_message_id: up_to,
    };
    let next_mark = async |stream: &mut Streaming<pb::Event>| loop {
        if let Kind::ReadMark(mark) = next(stream).await {
            break (
                mark.conversation_id,
                pb::Reader::try_from(mark.reader).unwrap(),
                mark.up_to_message_id,
            );
        }
    };

    let summary = chat
        .mark_read(read(pb::Reader::Visitor, answer.id))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (summary.visitor_read_up_to, summary.support_read_up_to),
        (answer.id, 0)
    );
    for stream in [&mut everything, &mut this_one] {
        assert_eq!(
            next_mark(stream).await,
            (55, pb::Reader::Visitor, answer.id),
            "the visitor has seen support's reply"
        );
    }
    chat.mark_read(read(pb::Reader::Support, question.id))
        .await
        .unwrap();
    assert_eq!(
        next_mark(&mut this_one).await,
        (55, pb::Reader::Support, question.id)
    );
    // An older mark (another tab behind): the stored mark does not move back, and says so.
    let summary = chat
        .mark_read(read(pb::Reader::Visitor, question.id))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(summary.visitor_read_up_to, answer.id);
    assert_eq!(
        next_mark(&mut this_one).await,
        (55, pb::Reader::Visitor, answer.id)
    );
    let listed = chat
        .list_conversations(pb::ListConversationsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .conversations;
    assert_eq!(
        listed
            .iter()
            .map(|c| (
                c.conversation_id,
                c.support_read_up_to,
                c.visitor_read_up_to
            ))
            .collect::<Vec<_>>(),
        [(55, question.id, answer.id)]
    );
    let err = chat
        .mark_read(pb::MarkReadRequest {
            conversation_id: 999,
            ..read(pb::Reader::Support, 1)
        })
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        Code::NotFound,
        "no event for an unknown conversation"
    );
}

on_backends!(notes:
    Sqlite => sqlite_notes_reach_support_only,
    MySql => mysql_notes_reach_support_only,
);

/// A private note reaches all-conversation subscribers (support), never the conversation's
/// own subscription (what feeds its visitor) nor its history; bad input is refused.
async fn notes(server: &TestServer, db: &TestDb) {
    add_alice(db).await;
    let mut chat = server.chat().await;
    send(&mut chat, 66, visitor(), "my order is late", "q")
        .await
        .unwrap();
    let mut support = subscribe(&mut chat, Scope::AllConversations(true), None).await;
    let mut visitor_side = subscribe(&mut chat, Scope::ConversationId(66), None).await;
    for stream in [&mut support, &mut visitor_side] {
        until_caught_up(stream).await;
    }
    let add = |cid: u64, admin: &str, text: &str| pb::AddNoteRequest {
        conversation_id: cid,
        admin_id: admin.into(),
        text: text.into(),
    };
    let note = chat
        .add_note(add(66, "alice", "Angry: offer a voucher"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (
            note.conversation_id,
            note.admin_id.as_str(),
            note.text.as_str()
        ),
        (66, "alice", "Angry: offer a voucher")
    );
    // Support sees the note live; the conversation's own subscription sees the next message
    // and nothing before it.
    let seen = loop {
        if let Kind::Note(n) = next(&mut support).await {
            break n;
        }
    };
    assert_eq!(seen, note);
    send(
        &mut chat,
        66,
        admin("alice"),
        "Sorry! Here is a voucher.",
        "a",
    )
    .await
    .unwrap();
    loop {
        match next(&mut visitor_side).await {
            Kind::Message(m) => {
                assert_eq!(m.text, "Sorry! Here is a voucher.");
                break;
            }
            Kind::Note(n) => panic!("the visitor's side got a note: {n:?}"),
            _ => {}
        }
    }
    let history: Vec<String> = newest(&mut chat, 66, 10)
        .await
        .unwrap()
        .messages
        .into_iter()
        .map(|m| m.text)
        .collect();
    assert_eq!(
        history,
        ["Sorry! Here is a voucher.", "my order is late"],
        "no note in the history"
    );
    let listed = chat
        .list_notes(pb::ListNotesRequest {
            conversation_id: 66,
        })
        .await
        .unwrap()
        .into_inner()
        .notes;
    assert_eq!(listed, [note]);

    let refusals = [
        (add(66, "mallory", "x"), Code::NotFound, "UNKNOWN_ADMIN"),
        (add(66, "alice", "  "), Code::InvalidArgument, "EMPTY_TEXT"),
        (
            add(66, "alice", &"n".repeat(100_000)),
            Code::InvalidArgument,
            "TEXT_TOO_LONG",
        ),
        (
            add(4242, "alice", "x"),
            Code::NotFound,
            "UNKNOWN_CONVERSATION",
        ),
        (
            add(0, "alice", "x"),
            Code::InvalidArgument,
            "INVALID_ARGUMENT",
        ),
    ];
    for (request, code, reason) in refusals {
        let err = chat.add_note(request).await.unwrap_err();
        assert_eq!(err.code(), code, "{err:?}");
        assert_eq!(socketgram_proto::reason::of(&err).as_deref(), Some(reason));
    }
    let listed = chat
        .list_notes(pb::ListNotesRequest {
            conversation_id: 66,
        })
        .await
        .unwrap()
        .into_inner()
        .notes;
    assert_eq!(listed.len(), 1, "nothing refused was stored");
}

on_backends!(transcripts:
    Sqlite => sqlite_transcripts_export,
    MySql => mysql_transcripts_export,
);

/// A transcript over gRPC: JSON with who wrote what (names as support sees them), plain
/// text, notes only when asked; an unknown conversation and an unknown format are refused.
async fn transcripts(server: &TestServer, db: &TestDb) {
    add_alice(db).await;
    let mut chat = server.chat().await;
    send(&mut chat, 88, visitor(), "my <b>order</b>", "q")
        .await
        .unwrap();
    send(&mut chat, 88, admin("alice"), "on its way", "a")
        .await
        .unwrap();
    chat.add_note(pb::AddNoteRequest {
        conversation_id: 88,
        admin_id: "alice".into(),
        text: "courier delayed".into(),
    })
    .await
    .unwrap();
    let export = |format: pb::TranscriptFormat, include_notes: bool| pb::ExportTranscriptRequest {
        conversation_id: 88,
        format: format as i32,
        include_notes,
        after_message_id: 0,
    };
    let json = chat
        .export_transcript(export(pb::TranscriptFormat::Json, true))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(json.content_type, "application/json");
    assert_eq!(
        (json.messages, json.notes, json.next_after_message_id),
        (2, 1, 0)
    );
    let doc: serde_json::Value = serde_json::from_slice(&json.body).unwrap();
    assert_eq!(doc["conversation_id"], 88);
    assert_eq!(doc["messages"][0]["text"], "my <b>order</b>");
    assert_eq!(doc["messages"][0]["from"], "visitor");
    assert_eq!(doc["messages"][1]["author"], "Alice Acme");
    assert_eq!(doc["notes"][0]["text"], "courier delayed");

    let text = chat
        .export_transcript(export(pb::TranscriptFormat::Text, false))
        .await
        .unwrap()
        .into_inner();
    let body = String::from_utf8(text.body).unwrap();
    assert!(body.contains("] Visitor: my <b>order</b>\n"), "{body}");
    assert!(body.contains("] Alice Acme: on its way\n"), "{body}");
    assert!(!body.contains("courier"), "no notes unless asked: {body}");
    assert!(text.file_name.ends_with(".txt"));

    let err = chat
        .export_transcript(pb::ExportTranscriptRequest {
            conversation_id: 4343,
            ..export(pb::TranscriptFormat::Json, false)
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let err = chat
        .export_transcript(pb::ExportTranscriptRequest {
            format: 99,
            ..export(pb::TranscriptFormat::Json, false)
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
}

on_backends!(erasure:
    Sqlite => sqlite_conversations_are_erased_on_request,
    MySql => mysql_conversations_are_erased_on_request,
);

on_backends!(staff_group:
    Sqlite => sqlite_staff_members_and_topics_are_kept,
);

/// The staff group's state over gRPC: a Telegram user paired with an admin (by the CLI's
/// table) is that admin, an unpaired one is NOT_LINKED; a conversation's topic is kept, found
/// both ways, replaced when made anew, and a missing one is NO_STAFF_TOPIC.
async fn staff_group(server: &TestServer, db: &TestDb) {
    use socketgram_proto::reason as r;
    add_alice(db).await;
    db.execute(
        "INSERT INTO sg_admin_telegram (aid, telegram_user_id) VALUES ('alice', 7000000001)",
    )
    .await
    .unwrap();
    let mut telegram = server.telegram().await;
    let alice = telegram
        .get_staff_member(pb::GetStaffMemberRequest {
            telegram_user_id: 7_000_000_001,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (alice.admin_id.as_str(), alice.display_name.as_str()),
        ("alice", "Alice Acme")
    );
    let err = telegram
        .get_staff_member(pb::GetStaffMemberRequest {
            telegram_user_id: 5,
        })
        .await
        .unwrap_err();
    assert_eq!(
        (err.code(), r::of(&err).as_deref()),
        (Code::NotFound, Some(r::NOT_LINKED))
    );
    assert!(err.message().contains("link-telegram"), "{}", err.message());

    use pb::get_staff_topic_request::By;
    let chat = -1_001_234_567_890_i64;
    let topic = |cid, thread| pb::StaffTopic {
        chat_id: chat,
        conversation_id: cid,
        thread_id: thread,
    };
    let get = |by| pb::GetStaffTopicRequest {
        chat_id: chat,
        by: Some(by),
    };
    telegram.put_staff_topic(topic(61, 11)).await.unwrap();
    let found = telegram
        .get_staff_topic(get(By::ConversationId(61)))
        .await
        .unwrap();
    assert_eq!(found.into_inner(), topic(61, 11));
    let found = telegram
        .get_staff_topic(get(By::ThreadId(11)))
        .await
        .unwrap();
    assert_eq!(found.into_inner().conversation_id, 61);
    telegram.put_staff_topic(topic(61, 12)).await.unwrap();
    let err = telegram
        .get_staff_topic(get(By::ThreadId(11)))
        .await
        .unwrap_err();
    assert_eq!(
        (err.code(), r::of(&err).as_deref()),
        (Code::NotFound, Some(r::NO_STAFF_TOPIC))
    );
    let err = telegram
        .get_staff_topic(pb::GetStaffTopicRequest {
            chat_id: chat,
            by: None,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
}

/// `EraseConversation` over gRPC: by a known admin only (a refusal erases nothing); after it,
/// the conversation's history, transcript and notes are gone, others stay; support is told
/// (the record, not the content).
async fn erasure(server: &TestServer, db: &TestDb) {
    add_alice(db).await;
    let mut chat = server.chat().await;
    send(&mut chat, 91, visitor(), "delete me", "q")
        .await
        .unwrap();
    send(&mut chat, 92, visitor(), "keep me", "k")
        .await
        .unwrap();
    let mut support = subscribe(&mut chat, Scope::AllConversations(true), None).await;
    until_caught_up(&mut support).await;
    let erase = |cid: u64, admin: &str| pb::EraseConversationRequest {
        conversation_id: cid,
        admin_id: admin.into(),
    };
    let err = chat
        .erase_conversation(erase(91, "mallory"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    assert_eq!(newest(&mut chat, 91, 10).await.unwrap().messages.len(), 1);
    let err = chat
        .erase_conversation(erase(4444, "alice"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");

    let erased = chat
        .erase_conversation(erase(91, "alice"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (
            erased.conversation_id,
            erased.erased_by.as_str(),
            erased.messages
        ),
        (91, "alice", 1)
    );
    let told = loop {
        if let Kind::Erased(e) = next(&mut support).await {
            break e;
        }
    };
    assert_eq!(told, erased, "support is told, with the record");
    let err = newest(&mut chat, 91, 10).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "no history left: {err:?}");
    let err = chat
        .export_transcript(pb::ExportTranscriptRequest {
            conversation_id: 91,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert_eq!(newest(&mut chat, 92, 10).await.unwrap().messages.len(), 1);
    let err = chat
        .erase_conversation(erase(91, "alice"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "erased once");

    // A visitor who only opened the page left a context: it is theirs to erase too, and
    // nothing of it is shown afterwards.
    let page = |url: &str| pb::SetVisitorContextRequest {
        conversation_id: 93,
        verified: None,
        page: Some(pb::PageContext {
            url: url.into(),
            ..Default::default()
        }),
    };
    chat.set_visitor_context(page("https://shop.example/"))
        .await
        .unwrap();
    let erased = chat
        .erase_conversation(erase(93, "alice"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((erased.conversation_id, erased.messages), (93, 0));
    let opened = chat
        .open_conversation(pb::OpenConversationRequest {
            conversation_id: 93,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(opened.context, None, "the context went with the erasure");
}

on_backends!(assignment:
    Sqlite => sqlite_conversations_are_assigned,
    Postgres => postgres_conversations_are_assigned,
);

/// Assignment over gRPC: a take, a take refused while someone has it (naming the holder),
/// reassigning and unassigning; support's subscribers are told each; unknown admins and
/// conversations are refused and change nothing.
async fn assignment(server: &TestServer, db: &TestDb) {
    add_alice(db).await;
    db.execute("INSERT INTO adm_account (aid, name, lid) VALUES ('bob', 'Bob', 2)")
        .await
        .unwrap();
    let mut chat = server.chat().await;
    send(&mut chat, 99, visitor(), "anyone?", "q")
        .await
        .unwrap();
    let mut support = subscribe(&mut chat, Scope::AllConversations(true), None).await;
    until_caught_up(&mut support).await;
    let assign = |assignee: &str, by: &str, take: bool| pb::AssignConversationRequest {
        conversation_id: 99,
        assignee: assignee.into(),
        by: by.into(),
        take,
    };
    let mut next_assignment = async || loop {
        if let Kind::Assigned(a) = next(&mut support).await {
            break (a.conversation_id, a.assignee, a.by);
        }
    };

    let taken = chat
        .assign_conversation(assign("alice", "alice", true))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(taken.assignee, "alice");
    assert_eq!(
        next_assignment().await,
        (99, "alice".into(), "alice".into())
    );
    let err = chat
        .assign_conversation(assign("bob", "bob", true))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert_eq!(
        socketgram_proto::reason::of(&err).as_deref(),
        Some("ALREADY_ASSIGNED")
    );
    assert!(err.message().contains("alice"), "{}", err.message());
    chat.assign_conversation(assign("bob", "alice", false))
        .await
        .unwrap();
    assert_eq!(next_assignment().await, (99, "bob".into(), "alice".into()));
    for (request, code) in [
        (assign("mallory", "alice", false), Code::NotFound),
        (assign("alice", "mallory", false), Code::NotFound),
        (
            pb::AssignConversationRequest {
                conversation_id: 4545,
                ..assign("alice", "alice", false)
            },
            Code::NotFound,
        ),
    ] {
        let err = chat.assign_conversation(request).await.unwrap_err();
        assert_eq!(err.code(), code, "{err:?}");
    }
    let freed = chat
        .assign_conversation(assign("", "bob", false))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(freed.assignee, "", "unassigned");
    assert_eq!(next_assignment().await, (99, String::new(), "bob".into()));
    let listed = chat
        .list_conversations(pb::ListConversationsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .conversations;
    assert_eq!(listed[0].assignee, "", "nothing refused changed it");
    // The inbox's filters: mine, nobody's, all.
    send(&mut chat, 98, visitor(), "me too", "q2")
        .await
        .unwrap();
    chat.assign_conversation(pb::AssignConversationRequest {
        conversation_id: 98,
        ..assign("alice", "alice", true)
    })
    .await
    .unwrap();
    let mut filtered = async |assignee: Option<&str>| -> Vec<u64> {
        chat.list_conversations(pb::ListConversationsRequest {
            assignee: assignee.map(str::to_owned),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .conversations
        .iter()
        .map(|c| c.conversation_id)
        .collect()
    };
    assert_eq!(filtered(Some("alice")).await, [98]);
    assert_eq!(filtered(Some("")).await, [99]);
    assert_eq!(filtered(None).await, [98, 99]);
    assert!(filtered(Some("bob")).await.is_empty());
}

on_backends!(statuses:
    Sqlite => sqlite_a_conversation_status_is_set_reopened_and_snoozed,
    MySql => mysql_a_conversation_status_is_set_reopened_and_snoozed,
);

/// Status over gRPC: support resolves and snoozes; the visitor writing reopens, a snooze
/// that runs out opens; support's subscribers are told each change with its cause; listings
/// filter by status; bad requests are refused and change nothing.
async fn statuses(server: &TestServer, db: &TestDb) {
    use pb::{ConversationStatus as St, StatusCause as Cause};
    add_alice(db).await;
    let mut chat = server.chat().await;
    for cid in [70, 71] {
        send(&mut chat, cid, visitor(), "hello", &format!("h{cid}"))
            .await
            .unwrap();
    }
    let mut support = subscribe(&mut chat, Scope::AllConversations(true), None).await;
    until_caught_up(&mut support).await;
    let mut next_change = async || loop {
        if let Kind::StatusChanged(c) = next(&mut support).await {
            break (c.conversation_id, c.status(), c.cause(), c.by);
        }
    };
    let set = |cid: u64, status: St, until: i64, by: &str| pb::SetConversationStatusRequest {
        conversation_id: cid,
        status: status.into(),
        snoozed_until_ms: until,
        by: by.into(),
    };

    let resolved = chat
        .set_conversation_status(set(70, St::Resolved, 0, "alice"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resolved.status(), St::Resolved);
    assert_eq!(
        next_change().await,
        (70, St::Resolved, Cause::Support, "alice".into())
    );
    let mut lister = server.chat().await;
    let mut listed = async |statuses: &[St]| -> Vec<u64> {
        lister
            .list_conversations(pb::ListConversationsRequest {
                statuses: statuses.iter().map(|&s| s.into()).collect(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .conversations
            .iter()
            .map(|c| c.conversation_id)
            .collect()
    };
    assert_eq!(listed(&[St::Resolved]).await, [70]);
    assert_eq!(listed(&[St::Open]).await, [71]);

    // Bad requests: each refused, nothing changed, nobody told.
    let now = chrono::Utc::now().timestamp_millis();
    for (request, code) in [
        (set(4545, St::Pending, 0, "alice"), Code::NotFound),
        (set(70, St::Pending, 0, "mallory"), Code::NotFound),
        (set(70, St::Unspecified, 0, "alice"), Code::InvalidArgument),
        (
            set(70, St::Snoozed, now - 1000, "alice"),
            Code::InvalidArgument,
        ),
        (set(70, St::Snoozed, 0, "alice"), Code::InvalidArgument),
        (
            set(70, St::Snoozed, now + 400 * 86_400_000, "alice"),
            Code::InvalidArgument,
        ),
        (
            set(70, St::Pending, now + 60_000, "alice"),
            Code::InvalidArgument,
        ),
    ] {
        let err = chat.set_conversation_status(request).await.unwrap_err();
        assert_eq!(err.code(), code, "{err:?}");
    }
    let err = chat
        .list_conversations(pb::ListConversationsRequest {
            statuses: vec![St::Unspecified.into()],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert_eq!(
        listed(&[St::Resolved]).await,
        [70],
        "nothing refused changed it"
    );

    // The visitor writes again: open, and support is told why.
    send(&mut chat, 70, visitor(), "one more thing", "again")
        .await
        .unwrap();
    assert_eq!(
        next_change().await,
        (70, St::Open, Cause::VisitorMessage, String::new())
    );
    assert_eq!(listed(&[St::Open]).await, [70, 71]);

    // A snooze shows as snoozed until it runs out, then opens by itself.
    let until = chrono::Utc::now().timestamp_millis() + 1500;
    let snoozed = chat
        .set_conversation_status(set(71, St::Snoozed, until, "alice"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (snoozed.status(), snoozed.snoozed_until_ms),
        (St::Snoozed, until)
    );
    assert_eq!(
        next_change().await,
        (71, St::Snoozed, Cause::Support, "alice".into())
    );
    assert_eq!(listed(&[St::Snoozed]).await, [71]);
    assert_eq!(
        next_change().await,
        (71, St::Open, Cause::SnoozeEnded, String::new())
    );
    assert!(
        chrono::Utc::now().timestamp_millis() >= until,
        "not before its time"
    );
    assert_eq!(listed(&[St::Open]).await, [70, 71]);
    assert!(listed(&[St::Snoozed]).await.is_empty());
}

on_backends!(typing:
    Sqlite => sqlite_typing_reaches_the_other_side_live_and_a_flood_is_thinned,
    Postgres => postgres_typing_reaches_the_other_side_live_and_a_flood_is_thinned,
);

fn typing_request(author: Option<pb::Author>, active: bool, draft: &str) -> pb::SetTypingRequest {
    pb::SetTypingRequest {
        conversation_id: 60,
        author,
        active,
        draft_chars: draft.chars().count() as u32,
        draft: draft.into(),
    }
}

/// The next typing event of a stream.
async fn next_typing(stream: &mut Streaming<pb::Event>) -> pb::Typing {
    loop {
        if let Kind::Typing(t) = next(stream).await {
            return t;
        }
    }
}

/// Typing over gRPC: the visitor's reaches support (its length, not its text: no
/// `typing_preview`), support's reaches the visitor and support with the admin's name; a
/// flood of keystrokes reaches nobody as a flood; bad requests are refused.
async fn typing(server: &TestServer, db: &TestDb) {
    add_alice(db).await;
    let mut chat = server.chat().await;
    send(&mut chat, 60, visitor(), "hi", "t").await.unwrap();
    let mut support = subscribe(&mut chat, Scope::AllConversations(true), None).await;
    until_caught_up(&mut support).await;
    let mut widget = subscribe(&mut chat, Scope::ConversationId(60), None).await;
    until_caught_up(&mut widget).await;

    chat.set_typing(typing_request(visitor(), true, "hello"))
        .await
        .unwrap();
    let seen = next_typing(&mut support).await;
    assert_eq!(
        (seen.conversation_id, seen.admin_id.as_str(), seen.active),
        (60, "", true)
    );
    assert_eq!(
        (seen.draft_chars, seen.preview.as_deref()),
        (5, None),
        "no text"
    );
    assert!(seen.shown_for_ms >= 1000, "{seen:?}");

    chat.set_typing(typing_request(admin("alice"), true, "Let me check"))
        .await
        .unwrap();
    let to_visitor = next_typing(&mut widget).await;
    assert_eq!(
        (
            to_visitor.admin_id.as_str(),
            to_visitor.admin_display_name.as_str()
        ),
        ("alice", "Alice Acme"),
        "the visitor is told support types, not its own typing echoed"
    );
    assert_eq!(to_visitor.preview, None, "support's draft is never shown");
    assert_eq!(next_typing(&mut support).await.admin_id, "alice");

    // A flood of keystrokes, then the stop: support sees the stop, and at most one "still
    // typing" between (one passes per second).
    for i in 0..200 {
        chat.set_typing(typing_request(visitor(), true, &"x".repeat(i % 50)))
            .await
            .unwrap();
    }
    chat.set_typing(typing_request(visitor(), false, ""))
        .await
        .unwrap();
    let mut still_typing = 0;
    loop {
        let t = next_typing(&mut support).await;
        if !t.active {
            assert_eq!((t.admin_id.as_str(), t.draft_chars), ("", 0));
            break;
        }
        still_typing += 1;
    }
    assert!(still_typing <= 1, "{still_typing} events of 201 keystrokes");

    for (request, code) in [
        (typing_request(admin("mallory"), true, "x"), Code::NotFound),
        (typing_request(None, true, "x"), Code::InvalidArgument),
        (
            pb::SetTypingRequest {
                conversation_id: 0,
                ..typing_request(visitor(), true, "x")
            },
            Code::InvalidArgument,
        ),
    ] {
        let err = chat.set_typing(request).await.unwrap_err();
        assert_eq!(err.code(), code, "{err:?}");
    }
    // Nothing typed is stored.
    assert_eq!(newest(&mut chat, 60, 10).await.unwrap().messages.len(), 1);
}

/// With `[core] typing_preview`, support sees the visitor's draft (never support's own).
#[tokio::test]
async fn typing_preview_shows_the_visitors_draft_when_configured() {
    let Some(db) = TestDb::create(Backend::Sqlite).await else {
        return;
    };
    let server = TestServer::binary(
        Path::new(BIN),
        "serve",
        &db.url,
        "[core]\ncompany = \"Acme\"\ntyping_preview = true\n",
    )
    .await;
    add_alice(&db).await;
    let mut chat = server.chat().await;
    send(&mut chat, 60, visitor(), "hi", "t").await.unwrap();
    let mut support = subscribe(&mut chat, Scope::AllConversations(true), None).await;
    until_caught_up(&mut support).await;
    chat.set_typing(typing_request(visitor(), true, "my order is"))
        .await
        .unwrap();
    let seen = next_typing(&mut support).await;
    assert_eq!(seen.preview.as_deref(), Some("my order is"));
    chat.set_typing(typing_request(admin("alice"), true, "secret"))
        .await
        .unwrap();
    assert_eq!(next_typing(&mut support).await.preview, None);
    assert!(server.terminate().await);
}

/// `socketgram token visitor` mints what a host site would: `v1` without claims, `v2` with
/// `--name`, `--email`, `--field` (checked by the edge's own verifier); claims out of bounds
/// are refused, naming the bound, and nothing is printed.
#[tokio::test]
async fn token_visitor_mints_claims_when_asked() {
    use socketgram_admin_php_compat::handshake::TokenSigner;
    let dir = tempfile::tempdir().unwrap();
    let env = [("SOCKETGRAM_WEB__TOKEN_SECRET", "cli-token-secret")];
    let signer = TokenSigner::new(b"cli-token-secret");
    let mint = async |args: &[&str]| socketgram(dir.path(), args, &env).await;

    let plain = mint(&["token", "visitor", "42"]).await;
    assert!(plain.status.success(), "{plain:?}");
    let plain = String::from_utf8(plain.stdout).unwrap();
    assert_eq!(
        signer.verify_visitor(plain.trim()).unwrap(),
        ("42".to_owned(), None)
    );

    let vouched = mint(&[
        "token",
        "visitor",
        "42",
        "--name",
        "Ann Lee",
        "--email",
        "ann@example.com",
        "--field",
        "plan=pro",
        "--field",
        "seats=3",
    ])
    .await;
    assert!(vouched.status.success(), "{vouched:?}");
    let token = String::from_utf8(vouched.stdout).unwrap();
    assert!(token.starts_with("v2.42."), "{token}");
    let (cid, claims) = signer.verify_visitor(token.trim()).unwrap();
    let claims = claims.expect("claims");
    assert_eq!(
        (cid.as_str(), claims.name.as_str(), claims.email.as_str()),
        ("42", "Ann Lee", "ann@example.com")
    );
    assert_eq!(claims.fields.get("seats").map(String::as_str), Some("3"));

    let long = "x".repeat(201);
    for (args, says) in [
        (
            vec!["token", "visitor", "42", "--name", long.as_str()],
            "name is 201",
        ),
        (vec!["token", "visitor", "42", "--email", "nobody"], "email"),
        (
            vec!["token", "visitor", "42", "--field", "plan"],
            "name=value",
        ),
    ] {
        let refused = mint(&args).await;
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert!(!refused.status.success(), "{args:?}: refused");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
        assert!(refused.stdout.is_empty(), "{args:?}: no token printed");
    }
}

/// Auto-assignment on: a visitor's message to a conversation nobody has goes to the next admin
/// online (here, online through a subscription with `as_admin`), round robin, while they hold
/// fewer open conversations than the limit (1 here); with nobody free or online it stays
/// unassigned; support is told each one with an empty `by`.
async fn auto_assignment(server: &TestServer, db: &TestDb) {
    add_alice(db).await;
    db.execute("INSERT INTO adm_account (aid, name, lid) VALUES ('bob', 'Bob', 2)")
        .await
        .unwrap();
    let mut chat = server.chat().await;
    let mut support = subscribe(&mut chat, Scope::AllConversations(true), None).await;
    until_caught_up(&mut support).await;
    let as_admin = |admin: &str| pb::SubscribeRequest {
        scope: Some(Scope::AllConversations(true)),
        since_message_id: None,
        as_admin: admin.into(),
    };
    let online_admins = async |chat: &mut Chat| {
        chat.list_online(pb::ListOnlineRequest {})
            .await
            .unwrap()
            .into_inner()
            .admins
    };
    let assigned = async |support: &mut Streaming<pb::Event>| loop {
        if let Kind::Assigned(a) = next(support).await {
            break (a.conversation_id, a.assignee, a.by);
        }
    };
    let nothing_assigned = async |support: &mut Streaming<pb::Event>| {
        let quiet = tokio::time::timeout(Duration::from_millis(500), async {
            loop {
                if let Kind::Assigned(a) = next(support).await {
                    break a;
                }
            }
        });
        assert!(quiet.await.is_err(), "nothing is assigned");
    };

    // Nobody online: the conversation waits unassigned.
    send(&mut chat, 201, visitor(), "anyone?", "a1")
        .await
        .unwrap();
    nothing_assigned(&mut support).await;

    let err = chat.subscribe(as_admin("mallory")).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    let alice = chat
        .subscribe(as_admin("alice"))
        .await
        .unwrap()
        .into_inner();
    let bob = chat.subscribe(as_admin("bob")).await.unwrap().into_inner();
    assert_eq!(online_admins(&mut chat).await, ["alice", "bob"]);

    send(&mut chat, 202, visitor(), "hello", "b1")
        .await
        .unwrap();
    assert_eq!(
        assigned(&mut support).await,
        (202, "alice".to_owned(), String::new())
    );
    send(&mut chat, 203, visitor(), "hello", "c1")
        .await
        .unwrap();
    assert_eq!(assigned(&mut support).await.0, 203);
    // Both hold their limit: the next one waits; a message to an assigned one changes nothing.
    send(&mut chat, 204, visitor(), "hello", "d1")
        .await
        .unwrap();
    send(&mut chat, 202, visitor(), "still there?", "b2")
        .await
        .unwrap();
    nothing_assigned(&mut support).await;
    let of = async |chat: &mut Chat, cid: u64| {
        chat.open_conversation(pb::OpenConversationRequest {
            conversation_id: cid,
        })
        .await
        .unwrap()
        .into_inner()
        .assignee
    };
    assert_eq!(of(&mut chat, 202).await, "alice");
    assert_eq!(of(&mut chat, 203).await, "bob");
    assert_eq!(of(&mut chat, 204).await, "");

    // Alice resolves hers: room again, and the visitor's next message finds her.
    chat.set_conversation_status(pb::SetConversationStatusRequest {
        conversation_id: 202,
        status: pb::ConversationStatus::Resolved as i32,
        snoozed_until_ms: 0,
        by: "alice".into(),
    })
    .await
    .unwrap();
    send(&mut chat, 204, visitor(), "hello again", "d2")
        .await
        .unwrap();
    assert_eq!(
        assigned(&mut support).await,
        (204, "alice".to_owned(), String::new())
    );

    // Bob goes offline (his subscription ends): he is given nothing more, free or not.
    drop(bob);
    let deadline = tokio::time::Instant::now() + WAIT;
    while online_admins(&mut chat).await != ["alice"] {
        assert!(
            tokio::time::Instant::now() < deadline,
            "bob is still online"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    chat.set_conversation_status(pb::SetConversationStatusRequest {
        conversation_id: 203,
        status: pb::ConversationStatus::Resolved as i32,
        snoozed_until_ms: 0,
        by: "alice".into(),
    })
    .await
    .unwrap();
    send(&mut chat, 205, visitor(), "hi", "e1").await.unwrap();
    nothing_assigned(&mut support).await;
    assert_eq!(
        of(&mut chat, 205).await,
        "",
        "alice is at her limit, bob offline"
    );
    drop(alice);
}

const AUTO_ASSIGN: &str =
    "[core]\ncompany = \"Acme\"\nauto_assign = true\nauto_assign_max_open = 1\n";

#[tokio::test]
async fn sqlite_conversations_are_auto_assigned() {
    with_config(Backend::Sqlite, AUTO_ASSIGN, auto_assignment).await;
}

#[tokio::test]
async fn postgres_conversations_are_auto_assigned() {
    with_config(Backend::Postgres, AUTO_ASSIGN, auto_assignment).await;
}

/// `socketgram admin passwd <login>` sets an admin's own sign-in password: read from standard
/// input, bounded, stored as an argon2id hash apart from the legacy columns, shown as set by
/// `admin list`, gone with the admin. An unknown login or a short password is refused and
/// changes nothing.
#[tokio::test]
async fn admin_passwd_stores_an_argon2id_hash() {
    use tokio::io::AsyncWriteExt as _;
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("chat.db").display());
    let env = [("SOCKETGRAM_CORE__DATABASE__URL", url.as_str())];
    let passwd = async |login: &str, input: &str| {
        let mut child = tokio::process::Command::new(BIN)
            .args(["admin", "passwd", login])
            .current_dir(dir.path())
            .envs(env.iter().copied())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(input.as_bytes()).await.unwrap();
        drop(stdin);
        let out = child.wait_with_output().await.unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let added = socketgram(dir.path(), &["admin", "add", "alice", "Alice"], &env).await;
    assert!(added.status.success(), "{added:?}");

    let (ok, out, err) = passwd("alice", "correct horse battery\n").await;
    assert!(
        ok && out.contains("password set for admin \"alice\""),
        "{out} {err}"
    );
    let (ok, _, err) = passwd("alice", "short\n").await;
    assert!(!ok && err.contains("at least 8"), "{err}");
    let (ok, _, err) = passwd("mallory", "correct horse battery\n").await;
    assert!(!ok && err.contains("no admin \"mallory\""), "{err}");
    let listed = socketgram(dir.path(), &["admin", "list"], &env).await;
    let listed = String::from_utf8_lossy(&listed.stdout).into_owned();
    let alice = listed.lines().find(|l| l.starts_with("alice")).unwrap();
    assert!(alice.contains(" set "), "{listed}");

    let store = open_store(&url).await;
    let hash = store
        .admin_password("alice")
        .await
        .unwrap()
        .expect("stored");
    assert!(hash.starts_with("$argon2id$"), "{hash}");
    assert!(socketgram_core::passwords::verify(
        "correct horse battery",
        &hash
    ));
    assert!(
        !socketgram_core::passwords::verify("short", &hash),
        "the refused one changed nothing"
    );
    assert_eq!(store.admin_password("mallory").await.unwrap(), None);
    store.close().await;

    let removed = socketgram(dir.path(), &["admin", "remove", "alice"], &env).await;
    assert!(removed.status.success(), "{removed:?}");
    let store = open_store(&url).await;
    assert_eq!(
        store.admin_password("alice").await.unwrap(),
        None,
        "gone with the admin"
    );
    store.close().await;
}

/// Out of file descriptors (a hard limit of 128, so raising the soft one cannot help, and more
/// clients than that): the listener backs off instead of spinning on accept (a handful of
/// warnings, not thousands), and serves again as soon as descriptors are free.
#[tokio::test]
async fn out_of_file_descriptors_the_listener_backs_off_and_recovers() {
    use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _};
    let dir = tempfile::tempdir().unwrap();
    let mut command = tokio::process::Command::new("sh");
    command
        .arg("-c")
        .arg(format!("ulimit -n 128 && exec {BIN} serve"))
        // Each source address may hold them all: the point is the process's limit.
        .env("SOCKETGRAM_WEB__LIMITS__UNAUTHENTICATED_PER_IP", "1000")
        .env("SOCKETGRAM_WEB__LIMITS__CONNECTIONS_PER_IP", "1000")
        .env("SOCKETGRAM_WEB__LIMITS__HANDSHAKE_TIMEOUT_SECS", "60")
        .stderr(std::process::Stdio::piped());
    let (mut child, ready) = serve_raw(command, dir.path()).await;
    let web: std::net::SocketAddr = ready
        .split_whitespace()
        .find_map(|w| w.strip_prefix("web="))
        .unwrap()
        .trim_start_matches("http://")
        .parse()
        .unwrap();
    let warnings = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut stderr = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let counting = warnings.clone();
    tokio::spawn(async move {
        while let Ok(Some(line)) = stderr.next_line().await {
            if line.contains("cannot accept a connection") {
                counting.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
    });

    let mut held = Vec::new();
    for i in 0..200u8 {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket
            .bind(std::net::SocketAddr::from(([127, 0, 0, 2 + i % 4], 0)))
            .unwrap();
        held.push(
            socket
                .connect(web)
                .await
                .expect("queued by the kernel at least"),
        );
    }
    // Long enough for a spinning accept loop to log thousands of lines.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let logged = warnings.load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        logged >= 1,
        "the descriptors ran out (else the test proves nothing)"
    );
    assert!(
        logged <= 40,
        "{logged} warnings in 2 s: the accept loop spins"
    );

    drop(held);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let answer = async {
            let mut tcp = tokio::net::TcpStream::connect(web).await.ok()?;
            tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .await
                .ok()?;
            let mut head = vec![0; 12];
            tcp.read_exact(&mut head).await.ok()?;
            Some(String::from_utf8_lossy(&head).into_owned())
        };
        if let Ok(Some(head)) = tokio::time::timeout(Duration::from_secs(2), answer).await
            && head.starts_with("HTTP/1.1 200")
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the server did not recover"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    child.kill().await.unwrap();
}

/// A first run (issue "operator console"): `serve` prints the address to open in a browser
/// after its ready line, and says in its log that nobody can sign in yet and how to fix it;
/// once an admin has a password it no longer says so.
#[tokio::test]
async fn serve_prints_the_console_address_and_a_first_run_hint() {
    use tokio::io::AsyncBufReadExt as _;
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("chat.db").display());
    let run = async |expect_hint: bool| {
        let mut child = tokio::process::Command::new(BIN)
            .arg("serve")
            .current_dir(dir.path())
            .env("SOCKETGRAM_CORE__DATABASE__URL", &url)
            .env("SOCKETGRAM_WEB__LISTEN", "0.0.0.0:0")
            .env("SOCKETGRAM_GRPC__LISTEN", "127.0.0.1:0")
            .env("RUST_LOG", "info")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut out = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let mut log = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
        let (ready, open) = tokio::time::timeout(WAIT * 3, async {
            let ready = out.next_line().await.unwrap().expect("the ready line");
            let open = out.next_line().await.unwrap().expect("the address line");
            (ready, open)
        })
        .await
        .expect("serve got ready");
        let port = ready
            .split_whitespace()
            .find_map(|w| w.strip_prefix("web="))
            .and_then(|a| a.rsplit(':').next())
            .expect("the web address")
            .to_owned();
        assert_eq!(
            open,
            format!("socketgram: open http://127.0.0.1:{port}/ in a browser: the operator console"),
            "a listener on every address is opened at the loopback one"
        );
        let hinted = tokio::time::timeout(Duration::from_secs(3), async {
            while let Ok(Some(line)) = log.next_line().await {
                if line.contains("no admin can sign in to the console yet") {
                    return line;
                }
            }
            String::new()
        })
        .await;
        match (expect_hint, hinted) {
            (true, Ok(line)) => assert!(line.contains("socketgram admin passwd"), "{line}"),
            (true, Err(_)) => panic!("no first-run hint in the log"),
            (false, Ok(line)) => assert!(line.is_empty(), "a hint with an admin: {line}"),
            (false, Err(_)) => {}
        }
        child.start_kill().unwrap();
        let _ = child.wait().await;
    };
    run(true).await;
    let env = [("SOCKETGRAM_CORE__DATABASE__URL", url.as_str())];
    let added = socketgram(dir.path(), &["admin", "add", "alice", "Alice"], &env).await;
    assert!(added.status.success(), "{added:?}");
    let (ok, out) = socketgram_tests::server::run_command(
        BIN,
        &url,
        &["admin", "passwd", "alice"],
        "alice password\n",
    )
    .await;
    assert!(ok, "{out}");
    run(false).await;
}
