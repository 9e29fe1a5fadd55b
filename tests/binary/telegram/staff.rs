//! Staff mode end to end: the staff chat a forum supergroup of the fake Bot API
//! (`[telegram] staff_chat_id`), visitors writing through gRPC as the web widget does (author
//! VISITOR), staff members writing in the topics as Telegram users, paired with admins by the
//! real CLI (`socketgram admin link-telegram`). What the bot made and sent is read from the fake
//! Bot API, what reached the visitor from the core's history.

use std::path::Path;

use socketgram_tests::botapi::{BotRights, Forum, Topic};

use super::*;

/// The staff supergroup.
const STAFF_CHAT: i64 = -1_001_999_000_111;
/// A staff member paired with alice.
const ALICE_TG: i64 = 7_000_000_001;
/// The staff mirror's cursor and lease.
const STAFF_CONSUMER: &str = "telegram-staff:123456:-1001999000111";
/// A Telegram user of the staff chat paired with nobody.
const STRANGER_TG: i64 = 7_000_000_002;

fn forum(bot: BotRights) -> Forum {
    Forum {
        id: STAFF_CHAT,
        title: "Acme support".into(),
        is_forum: true,
        bot,
    }
}

const MANAGES_TOPICS: BotRights = BotRights::Admin {
    can_manage_topics: true,
};

async fn staff_world() -> (World, Forum) {
    let forum = forum(MANAGES_TOPICS);
    let setup = Setup {
        forum: Some(forum.clone()),
        ..Setup::default()
    };
    let world = World::start_with(Mode::Polling, "en", setup).await;
    // A new mirror starts at the newest message: made here, its cursor is older than every
    // message a test writes, whenever the bot gets to read it.
    world
        .core()
        .await
        .chat
        .get_delivery_cursor(pb::GetDeliveryCursorRequest {
            consumer: STAFF_CONSUMER.into(),
        })
        .await
        .expect("the mirror's cursor");
    (world, forum)
}

impl World {
    /// The visitor of `cid` writes from the web page; returns the message id.
    async fn visitor_says(&self, cid: u64, text: &str) -> u64 {
        self.visitor_sends(cid, text, Vec::new()).await
    }

    async fn visitor_sends(&self, cid: u64, text: &str, attachment_ids: Vec<u64>) -> u64 {
        self.core()
            .await
            .chat
            .send_message(pb::SendMessageRequest {
                attachment_ids,
                conversation_id: cid,
                author: Some(visitor()),
                text: text.into(),
                client_msg_id: String::new(),
            })
            .await
            .expect("visitor message")
            .into_inner()
            .message
            .expect("message")
            .id
    }

    /// The visitor of `cid` uploads a file from the web page.
    async fn visitor_uploads(&self, cid: u64, name: &str, bytes: &[u8]) -> pb::Attachment {
        use pb::upload_attachment_request::Part;
        let mut parts = vec![pb::UploadAttachmentRequest {
            part: Some(Part::Start(pb::UploadStart {
                conversation_id: cid,
                name: name.into(),
                size: bytes.len() as u64,
                author: Some(visitor()),
            })),
        }];
        parts.push(pb::UploadAttachmentRequest {
            part: Some(Part::Chunk(bytes.to_vec())),
        });
        self.core()
            .await
            .chat
            .upload_attachment(futures::stream::iter(parts))
            .await
            .expect("upload")
            .into_inner()
    }

    /// The host site vouches for the name of `cid`'s visitor.
    async fn name_visitor(&self, cid: u64, name: &str) {
        self.core()
            .await
            .chat
            .set_visitor_context(pb::SetVisitorContextRequest {
                conversation_id: cid,
                verified: Some(pb::VerifiedVisitor {
                    name: name.into(),
                    ..Default::default()
                }),
                page: None,
            })
            .await
            .expect("visitor context");
    }

    /// `socketgram admin link-telegram <login> <telegram user id>`, as an operator types it.
    async fn pair(&self, login: &str, telegram_user: i64) {
        let id = telegram_user.to_string();
        let (ok, out) = socketgram_tests::server::run_command(
            env!("CARGO_BIN_EXE_socketgram"),
            &self.db.url,
            &["admin", "link-telegram", login, &id],
            "",
        )
        .await;
        assert!(ok, "link-telegram: {out}");
    }

    async fn conversation(&self, cid: u64) -> pb::Conversation {
        self.core()
            .await
            .chat
            .open_conversation(pb::OpenConversationRequest {
                conversation_id: cid,
            })
            .await
            .expect("conversation")
            .into_inner()
    }

    /// The topic the core keeps for `cid`.
    async fn stored_topic(&self, cid: u64) -> Option<i64> {
        match self
            .core()
            .await
            .telegram
            .get_staff_topic(pb::GetStaffTopicRequest {
                chat_id: STAFF_CHAT,
                by: Some(pb::get_staff_topic_request::By::ConversationId(cid)),
            })
            .await
        {
            Ok(topic) => Some(topic.into_inner().thread_id),
            Err(status) if status.code() == Code::NotFound => None,
            Err(status) => panic!("GetStaffTopic: {status}"),
        }
    }
}

fn visitor() -> pb::Author {
    pb::Author {
        kind: pb::AuthorKind::Visitor as i32,
        admin_id: String::new(),
    }
}

/// Waits for a message in topic `thread` containing `needle`.
async fn in_topic(api: &BotApi, thread: i64, needle: &str) -> Sent {
    api.wait_for(&format!("{needle:?} in topic {thread}"), |calls| {
        botapi::sent_in(calls).into_iter().find(|s| {
            s.chat_id == STAFF_CHAT && s.thread == Some(thread) && s.text.contains(needle)
        })
    })
    .await
}

/// How many messages to the staff chat contain `needle`.
fn mirrored(api: &BotApi, needle: &str) -> usize {
    api.sent_to(STAFF_CHAT)
        .iter()
        .filter(|s| s.text.contains(needle))
        .count()
}

fn topic_of(topics: &[Topic], name: &str) -> i64 {
    topics
        .iter()
        .find(|t| t.name == name && !t.deleted)
        .unwrap_or_else(|| panic!("a topic {name:?} in {topics:?}"))
        .thread
}

#[tokio::test]
async fn visitor_messages_open_one_topic_per_conversation_and_are_mirrored() {
    let (world, _forum) = staff_world().await;
    let api = &world.api;
    world.name_visitor(123, "Ann Lee").await;
    world.visitor_says(123, "Hello from the <web> page").await;
    let topics = api.wait_topics(1).await;
    assert_eq!(topics[0].chat_id, STAFF_CHAT);
    assert_eq!(topics[0].name, "Ann Lee");
    let ann = topics[0].thread;
    let first = in_topic(api, ann, "Hello from the &lt;web&gt; page").await;
    assert_html(&first);
    assert_eq!(world.stored_topic(123).await, Some(ann));

    // A second message: the same topic. A visitor without a name: a topic named by the id.
    world.visitor_says(123, "Anyone there?").await;
    in_topic(api, ann, "Anyone there?").await;
    world.visitor_says(124, "I am 124").await;
    let topics = api.wait_topics(2).await;
    let other = topic_of(&topics, "id124");
    in_topic(api, other, "I am 124").await;

    // A reply written elsewhere (the console, a backend) is mirrored too, signed: the topic
    // reads as the whole conversation.
    world
        .reply(123, pb::AuthorKind::Admin, "a reply from the console")
        .await;
    let reply = in_topic(api, ann, "a reply from the console").await;
    assert_eq!(
        reply.text,
        "<b>answer from Alice Acme:</b>\na reply from the console"
    );
    world.visitor_says(123, "thanks").await;
    in_topic(api, ann, "thanks").await;
    assert_eq!(mirrored(api, "a reply from the console"), 1);
    assert_eq!(api.topics().len(), 2, "{:?}", api.topics());
    assert_eq!(mirrored(api, "Anyone there?"), 1);
    world.finish().await;
}

#[tokio::test]
async fn staff_answer_from_the_topic_once_paired() {
    let (world, forum) = staff_world().await;
    let api = &world.api;
    world.visitor_says(123, "my order is late").await;
    let thread = api.wait_topics(1).await[0].thread;
    in_topic(api, thread, "my order is late").await;
    let mut widget = world
        .core()
        .await
        .chat
        .subscribe(pb::SubscribeRequest {
            scope: Some(Scope::ConversationId(123)),
            since_message_id: None,
            as_admin: String::new(),
        })
        .await
        .expect("the visitor's stream")
        .into_inner();

    // Paired with nobody: told how to be paired, nothing sent.
    api.topic_text(&forum, Some(thread), STRANGER_TG, "Eve", "I can help");
    let told = in_topic(api, thread, "not paired").await;
    assert!(
        told.text.contains(&format!(
            "socketgram admin link-telegram &lt;login&gt; {STRANGER_TG}"
        )),
        "{told:?}"
    );
    assert_eq!(world.history(123).await.len(), 1, "nothing stored");

    // Paired with the real CLI: the reply reaches the visitor, signed by alice.
    world.pair("alice", ALICE_TG).await;
    let update = api.topic_text(&forum, Some(thread), ALICE_TG, "Alice", "It ships <today>");
    let reply = loop {
        let m = next_message(&mut widget).await;
        if m.direction == pb::Direction::ToVisitor as i32 {
            break m;
        }
    };
    assert_eq!(reply.text, "It ships <today>");
    assert_eq!(reply.origin, pb::AuthorKind::Admin as i32);
    assert_eq!(reply.admin_id, "alice");
    assert_eq!(
        reply.client_msg_id,
        format!("tg:{STAFF_CHAT}:{update}"),
        "the update's key, which keeps the mirror from echoing it"
    );
    // Telegram delivering the update again stores nothing more.
    api.deliver_again(update);
    api.topic_text(
        &forum,
        Some(thread),
        ALICE_TG,
        "Alice",
        "/note VIP customer",
    );
    in_topic(api, thread, "Note added.").await;
    let replies: Vec<_> = world
        .history(123)
        .await
        .into_iter()
        .filter(|m| m.direction == pb::Direction::ToVisitor as i32)
        .collect();
    assert_eq!(replies.len(), 1, "{replies:?}");
    // ...and the reply is not mirrored back into the topic, though later ones are.
    world
        .reply(123, pb::AuthorKind::Admin, "a follow-up from the console")
        .await;
    in_topic(api, thread, "a follow-up from the console").await;
    assert_eq!(mirrored(api, "It ships"), 0);

    // Commands act on the conversation, answered in the topic.
    let notes = world
        .core()
        .await
        .chat
        .list_notes(pb::ListNotesRequest {
            conversation_id: 123,
        })
        .await
        .expect("notes")
        .into_inner()
        .notes;
    assert_eq!(notes.len(), 1);
    assert_eq!(
        (notes[0].text.as_str(), notes[0].admin_id.as_str()),
        ("VIP customer", "alice")
    );
    api.topic_text(&forum, Some(thread), ALICE_TG, "Alice", "/assign");
    in_topic(api, thread, "Assigned to <b>alice</b>.").await;
    assert_eq!(world.conversation(123).await.assignee, "alice");
    api.topic_text(&forum, Some(thread), ALICE_TG, "Alice", "/assign nobody");
    let refused = in_topic(api, thread, "Not done:").await;
    assert!(refused.text.contains("nobody"), "{refused:?}");
    assert_eq!(world.conversation(123).await.assignee, "alice");
    api.topic_text(
        &forum,
        Some(thread),
        ALICE_TG,
        "Alice",
        "/resolve@socketgram_test_bot",
    );
    in_topic(api, thread, "Resolved.").await;
    assert_eq!(
        world.conversation(123).await.status,
        pb::ConversationStatus::Resolved as i32
    );

    // The general topic and topics of no conversation are staff's own: nothing is answered
    // nor stored. A round trip in the topic after them shows they were taken.
    let before = api.sent_to(STAFF_CHAT).len();
    api.topic_text(&forum, None, ALICE_TG, "Alice", "lunch?");
    api.topic_text(&forum, Some(99_999), ALICE_TG, "Alice", "our own topic");
    api.topic_text(
        &forum,
        Some(thread),
        ALICE_TG,
        "Alice",
        "/note after the chatter",
    );
    api.wait_for("the second note confirmed", |calls| {
        let n = botapi::sent_in(calls)
            .iter()
            .filter(|s| s.text == "Note added.")
            .count();
        (n == 2).then_some(())
    })
    .await;
    assert_eq!(api.sent_to(STAFF_CHAT).len(), before + 1);
    let texts: Vec<String> = world
        .history(123)
        .await
        .into_iter()
        .map(|m| m.text)
        .collect();
    assert!(
        !texts
            .iter()
            .any(|t| t.contains("lunch") || t.contains("own topic")),
        "{texts:?}"
    );
    world.finish().await;
}

#[tokio::test]
async fn files_go_both_ways_between_topic_and_visitor() {
    let (world, forum) = staff_world().await;
    let api = &world.api;
    world.pair("alice", ALICE_TG).await;
    // The visitor's photo goes as a photo, a PDF as a document, in the topic.
    let png = files::png(64, 48);
    let photo = world.visitor_uploads(123, "screen.png", &png).await;
    world
        .visitor_sends(123, "see the <screenshot>", vec![photo.id])
        .await;
    let thread = api.wait_topics(1).await[0].thread;
    let sent = api.nth_file_to(STAFF_CHAT, 0).await;
    assert_eq!(
        (sent.method.as_str(), sent.name.as_str()),
        ("sendPhoto", "screen.png")
    );
    assert_eq!(sent.bytes, png);
    assert_eq!(sent.thread, Some(thread));
    assert_eq!(sent.caption.as_deref(), Some("see the &lt;screenshot&gt;"));
    let pdf = files::pdf();
    let doc = world.visitor_uploads(123, "invoice.pdf", &pdf).await;
    world.visitor_sends(123, "", vec![doc.id]).await;
    let sent = api.nth_file_to(STAFF_CHAT, 1).await;
    assert_eq!(
        (sent.method.as_str(), sent.name.as_str()),
        ("sendDocument", "invoice.pdf")
    );
    assert_eq!(sent.thread, Some(thread));
    assert_eq!(sent.caption, None);
    assert_eq!(sent.bytes, pdf);

    // A staff member's photo reaches the visitor as an attachment of alice's reply.
    let jpeg = botapi::jpeg(40, 30);
    api.topic_photo(&forum, thread, ALICE_TG, "Alice", &jpeg, Some("like this?"));
    world
        .eventually("the staff photo stored", || async {
            world
                .history(123)
                .await
                .iter()
                .any(|m| m.direction == pb::Direction::ToVisitor as i32)
        })
        .await;
    let reply = world
        .history(123)
        .await
        .into_iter()
        .find(|m| m.direction == pb::Direction::ToVisitor as i32)
        .expect("the reply");
    assert_eq!(
        (reply.text.as_str(), reply.admin_id.as_str()),
        ("like this?", "alice")
    );
    assert_eq!(reply.attachments.len(), 1);
    assert_eq!(reply.attachments[0].content_type, "image/jpeg");
    assert_eq!(reply.attachments[0].size, jpeg.len() as u64);
    world.finish().await;
}

#[tokio::test]
async fn a_burst_of_new_topics_under_flood_control_makes_one_each() {
    let (world, _forum) = staff_world().await;
    let api = &world.api;
    api.fail_next(
        "createForumTopic",
        2,
        Fault::TooManyRequests { retry_after: 1 },
    );
    let cids = [123u64, 124, 125, 126];
    for cid in cids {
        world.visitor_says(cid, &format!("first from {cid}")).await;
        world.visitor_says(cid, &format!("second from {cid}")).await;
    }
    let topics = api.wait_topics(cids.len()).await;
    for cid in cids {
        let thread = topic_of(&topics, &format!("id{cid}"));
        in_topic(api, thread, &format!("second from {cid}")).await;
        assert_eq!(world.stored_topic(cid).await, Some(thread));
    }
    let refused = api
        .calls_of("createForumTopic")
        .iter()
        .filter(|c| c.status == 429)
        .count();
    assert_eq!(refused, 2, "the 429s were waited out");
    assert_eq!(api.topics().len(), cids.len(), "{:?}", api.topics());
    for cid in cids {
        assert_eq!(mirrored(api, &format!("first from {cid}")), 1);
        assert_eq!(mirrored(api, &format!("second from {cid}")), 1);
    }
    world.finish().await;
}

#[tokio::test]
async fn a_restart_makes_no_topic_twice_and_mirrors_nothing_twice() {
    let (mut world, _forum) = staff_world().await;
    world.visitor_says(123, "before the restart").await;
    let thread = world.api.wait_topics(1).await[0].thread;
    in_topic(&world.api, thread, "before the restart").await;
    world.stop().await;
    // Written while the bot is down: mirrored once it is back.
    world.server = Some(TestServer::start(&world.db.url, "").await);
    world.visitor_says(123, "while the bot was down").await;
    world.stop().await;
    world.restart().await;
    in_topic(&world.api, thread, "while the bot was down").await;
    world.visitor_says(123, "after the restart").await;
    in_topic(&world.api, thread, "after the restart").await;
    assert_eq!(world.api.topics().len(), 1, "{:?}", world.api.topics());
    for text in [
        "before the restart",
        "while the bot was down",
        "after the restart",
    ] {
        assert_eq!(mirrored(&world.api, text), 1, "{text}");
    }
    world.finish().await;
}

#[tokio::test]
async fn a_deleted_topic_is_made_anew() {
    let (world, forum) = staff_world().await;
    let api = &world.api;
    world.pair("alice", ALICE_TG).await;
    world.visitor_says(123, "one").await;
    let old = api.wait_topics(1).await[0].thread;
    in_topic(api, old, "one").await;
    api.delete_topic(STAFF_CHAT, old);
    world.visitor_says(123, "two").await;
    let topics = api.wait_topics(2).await;
    let new = topics[1].thread;
    assert_ne!(new, old);
    assert_eq!(topics[1].name, "id123");
    in_topic(api, new, "two").await;
    assert_eq!(world.stored_topic(123).await, Some(new));
    // The new topic is the conversation's: staff answer there.
    api.topic_text(
        &forum,
        Some(new),
        ALICE_TG,
        "Alice",
        "/note in the new topic",
    );
    in_topic(api, new, "Note added.").await;
    world.finish().await;
}

#[tokio::test]
async fn without_the_right_to_manage_topics_the_bot_says_so_and_posts_nothing() {
    let api = Arc::new(BotApi::start(BOT_TOKEN).await);
    let db = TestDb::create(Backend::Sqlite).await.expect("sqlite");
    let forum = forum(BotRights::Admin {
        can_manage_topics: false,
    });
    api.add_forum(&forum);
    let setup = Setup {
        forum: Some(forum.clone()),
        ..Setup::default()
    };
    let files = tempfile::tempdir().expect("a directory for the files");
    let toml = config(&api, Mode::Polling, "en", &setup, files.path());
    let (server, log) = TestServer::binary_with_log(
        Path::new(env!("CARGO_BIN_EXE_socketgram")),
        "serve",
        &db.url,
        &toml,
    )
    .await;
    let line = log
        .wait_for(&["ERROR", "staff mode is off", "Manage topics"])
        .await;
    assert!(line.contains(&STAFF_CHAT.to_string()), "{line}");
    api.wait_for("the bot's rights asked", |calls| {
        calls.iter().find(|c| c.method == "getChatMember").map(drop)
    })
    .await;
    // The rest of the bot works; the staff chat is left alone.
    let core = server.client().await;
    core.chat
        .clone()
        .send_message(pb::SendMessageRequest {
            attachment_ids: Vec::new(),
            conversation_id: 123,
            author: Some(visitor()),
            text: "is anyone there?".into(),
            client_msg_id: String::new(),
        })
        .await
        .expect("visitor message");
    api.topic_text(&forum, Some(5), ALICE_TG, "Alice", "/resolve");
    let mut ann = TgUser::new(&api, ANN, "Ann");
    let hello = ann.ask("/start").await;
    assert!(hello.text.contains("Hello, Ann!"), "{hello:?}");
    assert!(api.calls_of("createForumTopic").is_empty());
    assert!(api.sent_to(STAFF_CHAT).is_empty());
    assert!(api.files_sent_to(STAFF_CHAT).is_empty());
    assert!(server.terminate().await);
    db.drop_db().await;
}

#[tokio::test]
async fn a_chat_without_topics_is_refused_at_start() {
    let mut forum = forum(MANAGES_TOPICS);
    forum.is_forum = false;
    let setup = Setup {
        forum: Some(forum),
        ..Setup::default()
    };
    let world = World::start_with(Mode::Polling, "en", setup).await;
    let api = &world.api;
    api.wait_for("the chat's kind asked", |calls| {
        calls.iter().find(|c| c.method == "getChat").map(drop)
    })
    .await;
    world.visitor_says(123, "hello").await;
    let mut ann = TgUser::new(api, ANN, "Ann");
    ann.ask("/start").await;
    assert!(api.calls_of("createForumTopic").is_empty());
    assert!(api.sent_to(STAFF_CHAT).is_empty());
    world.finish().await;
}

#[tokio::test]
async fn a_telegram_visitor_is_mirrored_and_gets_the_staff_reply_in_telegram() {
    let (world, forum) = staff_world().await;
    let api = &world.api;
    world.pair("alice", ALICE_TG).await;
    let mut ann = TgUser::new(api, ANN, "Ann");
    writing(&mut ann).await;
    ann.says("written in Telegram");
    let thread = api.wait_topics(1).await[0].thread;
    in_topic(api, thread, "written in Telegram").await;
    api.topic_text(
        &forum,
        Some(thread),
        ALICE_TG,
        "Alice",
        "answered from the group",
    );
    let answer = ann.next().await;
    assert_eq!(
        answer.text,
        "<b>answer from Alice Acme:</b>\nanswered from the group"
    );
    // A reply too long for the core is refused in the topic, with the core's reason.
    let long = "x".repeat(MAX_CHARS + 1);
    api.topic_text(&forum, Some(thread), ALICE_TG, "Alice", &long);
    let refused = in_topic(api, thread, "Not done:").await;
    assert!(refused.text.contains(&MAX_CHARS.to_string()), "{refused:?}");
    assert_eq!(world.history(123).await.len(), 2);
    world.finish().await;
}

#[tokio::test]
async fn a_widget_visitor_and_the_staff_group_talk() {
    use socketgram_admin_php_compat::room::{HashKind, room_of};
    use socketgram_tests::sio::{self, SioClient};
    if !sio::available().await {
        return;
    }
    let (world, forum) = staff_world().await;
    let api = &world.api;
    world.pair("alice", ALICE_TG).await;
    // The legacy page of visitor 123 (no `[legacy] secret` here: the room is md5 of the id).
    let room = room_of(HashKind::Md5, "123", "");
    let mut page = SioClient::connect_legacy_visitor(&world.server().web_url(), 123, &room).await;
    page.emit("subscribe", &[json!({ "room": room, "username": "123" })])
        .await;
    page.emit(
        "new message",
        &[json!({ "username": "123", "message": "typed in the widget", "room": room })],
    )
    .await;
    let thread = api.wait_topics(1).await[0].thread;
    in_topic(api, thread, "typed in the widget").await;
    api.topic_text(
        &forum,
        Some(thread),
        ALICE_TG,
        "Alice",
        "seen it, from the group",
    );
    loop {
        let payload = page.next_payload("new message").await;
        if payload.to_string().contains("seen it, from the group") {
            break;
        }
    }
    world.finish().await;
}
