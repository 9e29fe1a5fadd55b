//! The Telegram edge end to end: the real `socketgram serve` binary, its bot pointed at our own
//! Bot API server on loopback (`socketgram_tests::botapi`), users in a temporary SQLite
//! database, and a gRPC `Subscribe(all)` client standing in for the support admin. Every wait
//! is on something the fake Bot API or the core records, under a timeout. No outside service
//! is needed.

use std::{sync::Arc, time::Duration};

use serde_json::json;
use socketgram_core::store::Backend;
use socketgram_proto::{
    client::CoreClient,
    v1::{self as pb, event::Kind, subscribe_request::Scope},
};
use socketgram_tests::{
    botapi::{self, BotApi, Fault, Group, Sent, TgUser, WAIT},
    db::TestDb,
    files,
    server::TestServer,
};
use tonic::{Code, Streaming};

mod deep_link;
mod staff;

/// The bot's token: `<bot id>:<secret>`.
const BOT_TOKEN: &str = "123456:TEST-token_for-the-fake-api";
/// The delivery cursor's consumer name for that bot.
const CONSUMER: &str = "telegram:123456";
/// md5("secret"), as `users.password` holds it.
const MD5_SECRET: &str = "5ebe2294ecd0e0f08eab7690d2a6ee69";
/// The core's message limit in these tests.
const MAX_CHARS: usize = 300;
const CONTACTS: &str = "<b>Acme</b> support: +1 555 0100";
/// Chat ids beyond 32 bits, as Telegram's are today (LEGACY.md §9.11).
const ANN: i64 = 5_000_000_001;
const BOB: i64 = 5_000_000_002;

/// How the bot gets its updates in a test.
#[derive(Clone, Copy)]
enum Mode {
    Polling,
    /// Served on its own listener at this port.
    Webhook(u16),
    /// Served by the web edge's listener (the default), at this port.
    WebhookOnWeb(u16),
}

/// What a test's server is configured with besides its mode and language.
#[derive(Clone)]
struct Setup {
    /// `[core] max_message_chars`.
    max_chars: usize,
    /// Keys of `[core.attachments]` besides its `dir` (one per line).
    attachments: String,
    /// Keys of `[web]` (one per line).
    web: String,
    /// More keys of `[telegram]` (one per line).
    telegram: String,
    /// The staff chat (`[telegram] staff_chat_id`), in the Bot API before the bot starts.
    forum: Option<botapi::Forum>,
}

impl Default for Setup {
    fn default() -> Self {
        Self {
            max_chars: MAX_CHARS,
            attachments: String::new(),
            web: String::new(),
            telegram: String::new(),
            forum: None,
        }
    }
}

fn config(
    api: &BotApi,
    mode: Mode,
    language: &str,
    setup: &Setup,
    files: &std::path::Path,
) -> String {
    let mode = match mode {
        Mode::Polling => "mode = \"polling\"\n".to_owned(),
        Mode::Webhook(port) => format!(
            "mode = \"webhook\"\nwebhook_url = \"http://127.0.0.1:{port}\"\n\
             webhook_listen = \"127.0.0.1:{port}\"\n"
        ),
        Mode::WebhookOnWeb(port) => {
            format!("mode = \"webhook\"\nwebhook_url = \"http://127.0.0.1:{port}\"\n")
        }
    };
    format!(
        "[core]\ncompany = \"Acme\"\nmax_message_chars = {max_chars}\n\n\
         [core.attachments]\ndir = \"{files}\"\n{attachments}\n\
         [telegram]\ntoken = \"{BOT_TOKEN}\"\napi_url = \"{api}\"\nlanguage = \"{language}\"\n\
         contacts_html = \"{CONTACTS}\"\n{mode}{telegram}\n\
         [telegram.limits]\nper_chat_per_second = 1000\nper_chat_per_minute = 100000\n\
         overall_per_second = 1000\n\n[web]\n{web}",
        api = api.url(),
        max_chars = setup.max_chars,
        files = files.display(),
        attachments = setup.attachments,
        web = setup.web,
        telegram = setup.telegram.clone()
            + &setup
                .forum
                .as_ref()
                .map(|f| format!("staff_chat_id = {}\n", f.id))
                .unwrap_or_default(),
    )
}

/// A test's world: the fake Bot API, a database with visitors 123 and 124 (password
/// "secret") and admin alice, and the running binary.
struct World {
    api: Arc<BotApi>,
    db: TestDb,
    server: Option<TestServer>,
    mode: Mode,
    language: &'static str,
    setup: Setup,
    /// Where the core keeps attachments (`[core.attachments] dir`).
    files: tempfile::TempDir,
}

impl World {
    async fn start(mode: Mode, language: &'static str) -> World {
        Self::start_with(mode, language, Setup::default()).await
    }

    async fn start_with(mode: Mode, language: &'static str, setup: Setup) -> World {
        let api = Arc::new(BotApi::start(BOT_TOKEN).await);
        let db = TestDb::create(Backend::Sqlite).await.expect("sqlite");
        let mut world = World {
            api,
            db,
            server: None,
            mode,
            language,
            setup,
            files: tempfile::tempdir().expect("a directory for the files"),
        };
        if let Some(forum) = &world.setup.forum {
            world.api.add_forum(forum);
        }
        world.restart().await;
        for id in [123, 124] {
            world
                .db
                .execute(&format!(
                    "INSERT INTO users (id, password) VALUES ({id}, '{MD5_SECRET}')"
                ))
                .await
                .expect("insert user");
        }
        world
            .db
            .execute("INSERT INTO adm_account (aid, name, lid) VALUES ('alice', 'Alice', 2)")
            .await
            .expect("insert admin");
        world
    }

    /// Starts the binary (again, on the same database and Bot API).
    async fn restart(&mut self) {
        let toml = config(
            &self.api,
            self.mode,
            self.language,
            &self.setup,
            self.files.path(),
        );
        let web = match self.mode {
            Mode::WebhookOnWeb(port) => format!("127.0.0.1:{port}"),
            _ => "127.0.0.1:0".to_owned(),
        };
        self.server = Some(TestServer::start_with_web(&self.db.url, &toml, &web).await);
    }

    fn server(&self) -> &TestServer {
        self.server.as_ref().expect("running")
    }

    async fn core(&self) -> CoreClient {
        self.server().client().await
    }

    /// SIGTERM; the process must exit cleanly.
    async fn stop(&mut self) {
        let server = self.server.take().expect("running");
        assert!(server.terminate().await, "socketgram exits cleanly");
    }

    async fn finish(mut self) {
        self.stop().await;
        self.db.drop_db().await;
    }

    async fn link(&self, chat_id: i64) -> Option<pb::TelegramLink> {
        match self
            .core()
            .await
            .telegram
            .get_link(pb::GetTelegramLinkRequest { chat_id })
            .await
        {
            Ok(link) => Some(link.into_inner()),
            Err(status) if status.code() == Code::NotFound => None,
            Err(status) => panic!("GetLink: {status}"),
        }
    }

    /// An admin (or backend) reply through gRPC; returns its message id.
    async fn reply(&self, cid: u64, kind: pb::AuthorKind, text: &str) -> u64 {
        self.core()
            .await
            .chat
            .send_message(pb::SendMessageRequest {
                attachment_ids: Vec::new(),
                conversation_id: cid,
                author: Some(pb::Author {
                    kind: kind as i32,
                    admin_id: "alice".into(),
                }),
                text: text.into(),
                client_msg_id: String::new(),
            })
            .await
            .expect("admin reply")
            .into_inner()
            .message
            .expect("message")
            .id
    }

    async fn history(&self, cid: u64) -> Vec<pb::Message> {
        self.core()
            .await
            .chat
            .history(pb::HistoryRequest {
                conversation_id: cid,
                before_id: 0,
                after_id: 0,
                limit: 100,
            })
            .await
            .expect("history")
            .into_inner()
            .messages
    }

    /// The admin: every conversation, live.
    async fn admin(&self) -> Streaming<pb::Event> {
        let mut stream = self
            .core()
            .await
            .chat
            .subscribe(pb::SubscribeRequest {
                scope: Some(Scope::AllConversations(true)),
                since_message_id: None,
                as_admin: String::new(),
            })
            .await
            .expect("subscribe")
            .into_inner();
        // Live once caught up: nothing stored from now on is missed.
        loop {
            if let Kind::CaughtUp(_) = next_event(&mut stream).await {
                return stream;
            }
        }
    }

    /// Waits until `check` holds for the core's state, asking again as it changes.
    async fn eventually<F, Fut>(&self, what: &str, check: F)
    where
        F: Fn() -> Fut,
        Fut: Future<Output = bool>,
    {
        tokio::time::timeout(WAIT, async {
            while !check().await {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"));
    }

    async fn delivery_cursor(&self) -> u64 {
        self.core()
            .await
            .chat
            .get_delivery_cursor(pb::GetDeliveryCursorRequest {
                consumer: CONSUMER.into(),
            })
            .await
            .expect("cursor")
            .into_inner()
            .message_id
    }
}

async fn next_event(stream: &mut Streaming<pb::Event>) -> Kind {
    tokio::time::timeout(WAIT, stream.message())
        .await
        .expect("timed out waiting for an event")
        .expect("stream error")
        .expect("stream ended")
        .kind
        .expect("event kind")
}

async fn next_message(stream: &mut Streaming<pb::Event>) -> pb::Message {
    loop {
        if let Kind::Message(m) = next_event(stream).await {
            return m;
        }
    }
}

fn keyboard(rows: &[&[&str]]) -> Vec<Vec<String>> {
    rows.iter()
        .map(|r| r.iter().map(|s| (*s).to_owned()).collect())
        .collect()
}

fn assert_html(sent: &Sent) {
    assert_eq!(sent.parse_mode.as_deref(), Some("HTML"), "{sent:?}");
}

/// The log-in dialogue, in English: both prompts force a reply; returns the bot's verdict.
async fn log_in(user: &mut TgUser<'_>, login: &str, password: &str) -> Sent {
    let ask = user.ask("Log in").await;
    assert!(ask.forces_reply(), "{ask:?}");
    assert!(ask.text.contains("Enter your login"), "{ask:?}");
    let ask = user.ask(login).await;
    assert!(ask.forces_reply(), "{ask:?}");
    assert!(ask.text.contains("Enter your password"), "{ask:?}");
    user.ask(password).await
}

const UNLINKED: &[&[&str]] = &[&["Log in", "Contacts"]];
const LINKED: &[&[&str]] = &[&["Write to support", "Contacts"]];

#[tokio::test]
async fn polling_dialogue_from_start_to_answer() {
    let world = World::start(Mode::Polling, "en").await;
    let api = &world.api;
    let mut admin = world.admin().await;
    let mut ann = TgUser::new(api, ANN, "Ann <3");

    // /start: greeting by first name (escaped) and company, the unlinked menu.
    let hello = ann.ask("/start").await;
    assert_html(&hello);
    assert!(
        hello.text.contains("Hello, Ann &lt;3!") && hello.text.contains("<b>Acme</b>"),
        "{hello:?}"
    );
    assert_eq!(hello.keyboard(), keyboard(UNLINKED));

    // Contacts: the configured HTML as it is.
    let contacts = ann.ask("Contacts").await;
    assert_eq!(contacts.text, CONTACTS);
    assert_html(&contacts);

    // Not linked: a clear answer, nothing stored.
    let answer = ann.ask("hello, anyone?").await;
    assert!(answer.text.contains("not logged in"), "{answer:?}");
    assert_eq!(answer.keyboard(), keyboard(UNLINKED));

    // Log-in failures: malformed login, unknown login, wrong password.
    let verdict = log_in(&mut ann, "hello", "secret").await;
    assert!(verdict.text.contains("A login is"), "{verdict:?}");
    assert_eq!(verdict.keyboard(), keyboard(UNLINKED));
    let verdict = log_in(&mut ann, "id999", "secret").await;
    assert!(
        verdict.text.contains("There is no user <b>id999</b>"),
        "{verdict:?}"
    );
    let verdict = log_in(&mut ann, "id123", "not-the-password").await;
    assert!(verdict.text.contains("Wrong password"), "{verdict:?}");
    assert_eq!(verdict.keyboard(), keyboard(UNLINKED));
    assert!(world.link(ANN).await.is_none());

    // A photo instead of the login keeps asking for it, as text.
    ann.ask("Log in").await;
    api.send_photo(ANN, "Ann", &botapi::jpeg(32, 24), None);
    let again = ann.next().await;
    assert!(
        again.forces_reply() && again.text.contains("as text"),
        "{again:?}"
    );
    // Success (any case of "id"): linked, the linked menu, the password deleted from the chat.
    ann.ask("ID123").await;
    let password_message = ann.says("secret");
    let welcome = ann.next().await;
    assert!(
        welcome.text.contains("logged in as <b>id123</b>"),
        "{welcome:?}"
    );
    assert_eq!(welcome.keyboard(), keyboard(LINKED));
    // Every password typed is deleted from the chat, the right one too.
    let deleted = api
        .wait_for("the password message deleted", |calls| {
            calls
                .iter()
                .find(|c| {
                    c.method == "deleteMessage" && c.body["message_id"] == json!(password_message)
                })
                .map(|c| c.body.clone())
        })
        .await;
    assert_eq!(deleted["chat_id"], json!(ANN));
    assert_eq!(api.calls_of("deleteMessage").len(), 4);
    let link = world.link(ANN).await.expect("linked");
    assert_eq!(link.conversation_id, 123);
    assert_eq!(link.mode, pb::TelegramMode::Menu as i32);
    assert!(link.active);

    // Linked, but in the menu: a text is not sent, and the user is told how.
    let answer = ann.ask("is this sent?").await;
    assert!(
        answer.text.contains("press “Write to support”"),
        "{answer:?}"
    );

    // Writing mode: [back] keyboard; texts become visitor messages of 123 (author TELEGRAM).
    let writing = ann.ask("Write to support").await;
    assert_eq!(writing.keyboard(), keyboard(&[&["Back"]]));
    assert_eq!(
        world.link(ANN).await.expect("linked").mode,
        pb::TelegramMode::Writing as i32
    );
    ann.says("My order <#42> & co");
    let stored = next_message(&mut admin).await;
    assert_eq!(stored.conversation_id, 123);
    assert_eq!(stored.text, "My order <#42> & co");
    assert_eq!(stored.origin, pb::AuthorKind::Telegram as i32);
    assert_eq!(stored.direction, pb::Direction::ToSupport as i32);
    assert_eq!(stored.admin_id, "0");

    // A voice message, a sticker, an over-long text: clear answers, nothing stored.
    api.send_voice(ANN, "Ann");
    let answer = ann.next().await;
    assert!(answer.text.contains("Only text"), "{answer:?}");
    assert_eq!(answer.keyboard(), keyboard(&[&["Back"]]));
    api.send_sticker(ANN, "Ann");
    assert!(ann.next().await.text.contains("Only text"));
    let long = "x".repeat(MAX_CHARS + 1);
    let answer = ann.ask(&long).await;
    assert!(
        answer.text.contains(&format!(
            "({} characters; at most {MAX_CHARS})",
            MAX_CHARS + 1
        )),
        "{answer:?}"
    );
    let history = world.history(123).await;
    assert_eq!(history.len(), 1, "only the text was stored: {history:?}");

    // An admin reply reaches the chat: bold header with the display name, text escaped.
    world
        .reply(123, pb::AuthorKind::Admin, "Use <b>this</b> & \"that\"")
        .await;
    let answer = ann.next().await;
    assert_eq!(
        answer.text,
        "<b>answer from Alice Acme:</b>\nUse &lt;b&gt;this&lt;/b&gt; &amp; \"that\""
    );
    assert_html(&answer);
    assert!(answer.reply_markup.is_none());
    // A backend answering as support too; a reply to a conversation without a linked chat
    // goes nowhere (delivery is in id order: once the next reply is there, it was skipped).
    world
        .core()
        .await
        .chat
        .open_conversation(pb::OpenConversationRequest {
            conversation_id: 777,
        })
        .await
        .expect("open 777");
    world
        .reply(777, pb::AuthorKind::Admin, "for the web visitor only")
        .await;
    world
        .reply(123, pb::AuthorKind::Backend, "from the CRM")
        .await;
    let answer = ann.next().await;
    assert_eq!(answer.text, "<b>answer from Alice Acme:</b>\nfrom the CRM");
    assert!(
        !api.sent()
            .iter()
            .any(|s| s.text.contains("for the web visitor only"))
    );
    // Support typing shows "typing" in the linked chat (the chat action); the visitor's own
    // typing is not sent back to it.
    world
        .core()
        .await
        .chat
        .set_typing(pb::SetTypingRequest {
            conversation_id: 123,
            author: Some(pb::Author {
                kind: pb::AuthorKind::Admin as i32,
                admin_id: "alice".into(),
            }),
            active: true,
            draft_chars: 3,
            draft: String::new(),
        })
        .await
        .expect("support types");
    let action = api
        .wait_for("sendChatAction", |calls| {
            calls
                .iter()
                .find(|c| c.method == "sendChatAction")
                .map(|c| c.body.clone())
        })
        .await;
    assert_eq!(
        (action["chat_id"].as_i64(), action["action"].as_str()),
        (Some(ANN), Some("typing"))
    );

    // Back: the menu, menu mode; /start again shows the linked menu.
    let menu = ann.ask("Back").await;
    assert_eq!(menu.keyboard(), keyboard(LINKED));
    assert_eq!(
        world.link(ANN).await.expect("linked").mode,
        pb::TelegramMode::Menu as i32
    );
    let hello = ann.ask("/start").await;
    assert_eq!(hello.keyboard(), keyboard(LINKED));

    assert!(
        api.calls_of("getUpdates").iter().all(|c| c.status == 200),
        "the bot polls without errors"
    );
    world.finish().await;
}

#[tokio::test]
async fn linking_moves_older_links() {
    let world = World::start(Mode::Polling, "en").await;
    let api = &world.api;
    let mut ann = TgUser::new(api, ANN, "Ann");
    let mut bob = TgUser::new(api, BOB, "Bob");

    assert!(
        log_in(&mut ann, "id123", "secret")
            .await
            .text
            .contains("logged in as <b>id123</b>")
    );
    // Bob logs in as the same visitor: the link moves to Bob's chat.
    assert!(
        log_in(&mut bob, "id123", "secret")
            .await
            .text
            .contains("logged in as <b>id123</b>")
    );
    assert!(world.link(ANN).await.is_none());
    assert_eq!(world.link(BOB).await.expect("bob").conversation_id, 123);
    // Ann logs in as another visitor, then as 123 again: each time her old link moves.
    log_in(&mut ann, "id124", "secret").await;
    assert_eq!(world.link(ANN).await.expect("ann").conversation_id, 124);
    log_in(&mut ann, "id123", "secret").await;
    assert_eq!(world.link(ANN).await.expect("ann").conversation_id, 123);
    assert!(world.link(BOB).await.is_none());
    let of_124 = world
        .core()
        .await
        .telegram
        .list_links(pb::ListTelegramLinksRequest {
            conversation_id: 124,
        })
        .await
        .expect("links")
        .into_inner()
        .links;
    assert!(of_124.is_empty(), "{of_124:?}");
    // Bob, unlinked now, sees the unlinked menu and cannot write.
    let answer = bob.ask("Write to support").await;
    assert!(answer.text.contains("not logged in"), "{answer:?}");
    assert_eq!(answer.keyboard(), keyboard(UNLINKED));

    // Guessing passwords: after five failures in a row, even the right one is not checked.
    for _ in 0..5 {
        let verdict = log_in(&mut bob, "id124", "guess").await;
        assert!(verdict.text.contains("Wrong password"), "{verdict:?}");
    }
    let verdict = log_in(&mut bob, "id124", "secret").await;
    assert!(
        verdict.text.contains("Too many failed attempts"),
        "{verdict:?}"
    );
    assert!(world.link(BOB).await.is_none());

    // A reply to 123 reaches Ann only.
    world
        .reply(123, pb::AuthorKind::Admin, "who gets this?")
        .await;
    assert!(ann.next().await.text.contains("who gets this?"));
    assert!(
        !api.sent_to(BOB)
            .iter()
            .any(|s| s.text.contains("who gets this?"))
    );
    world.finish().await;
}

/// Reserves a free loopback port for a listener the binary binds itself.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

#[tokio::test]
async fn webhook_mode_in_russian() {
    let port = free_port();
    let world = World::start(Mode::Webhook(port), "ru").await;
    let api = &world.api;
    let (url, secret) = api
        .wait_for("setWebhook", |calls| {
            calls
                .iter()
                .find(|c| c.method == "setWebhook" && c.status == 200)
                .map(|c| c.body.clone())
        })
        .await
        .as_object()
        .map(|b| {
            (
                b["url"].as_str().unwrap_or_default().to_owned(),
                b["secret_token"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .expect("setWebhook body");
    assert_eq!(url, format!("http://127.0.0.1:{port}/bot{BOT_TOKEN}"));
    assert!(secret.len() >= 32, "a random secret: {secret:?}");

    let mut admin = world.admin().await;
    let mut oleg = TgUser::new(api, ANN, "Олег");
    let hello = oleg.ask("/start").await;
    assert!(hello.text.contains("Здравствуйте, Олег!"), "{hello:?}");
    assert_eq!(hello.keyboard(), keyboard(&[&["Войти", "Контакты"]]));
    assert!(oleg.ask("Войти").await.forces_reply());
    assert!(oleg.ask("id123").await.forces_reply());
    let welcome = oleg.ask("secret").await;
    assert!(
        welcome.text.contains("Вы вошли как <b>id123</b>"),
        "{welcome:?}"
    );
    assert_eq!(
        welcome.keyboard(),
        keyboard(&[&["Написать в поддержку", "Контакты"]])
    );
    let writing = oleg.ask("Написать в поддержку").await;
    assert_eq!(writing.keyboard(), keyboard(&[&["Назад"]]));
    oleg.says("Здравствуйте, где мой заказ?");
    let stored = next_message(&mut admin).await;
    assert_eq!(
        (stored.conversation_id, stored.text.as_str()),
        (123, "Здравствуйте, где мой заказ?")
    );
    world.reply(123, pb::AuthorKind::Admin, "Уже в пути").await;
    let answer = oleg.next().await;
    assert_eq!(answer.text, "<b>ответ от Alice Acme:</b>\nУже в пути");

    // The webhook takes only Telegram's calls: a wrong or missing secret is refused.
    let forged = json!({"update_id": 999_999, "message": {"message_id": 1, "date": 0,
        "chat": {"id": ANN, "type": "private", "first_name": "x"}, "text": "forged"}});
    assert_eq!(api.post_webhook(Some("wrong"), &forged).await, 401);
    assert_eq!(api.post_webhook(None, &forged).await, 401);
    // Every update went through the webhook, none through polling.
    assert!(api.calls_of("getUpdates").is_empty());
    assert!(api.webhook_posts().iter().all(|(_, status)| *status == 200));
    world.finish().await;
}

/// By default the webhook is served by the web edge's own listener (`POST /bot<token>`).
#[tokio::test]
async fn webhook_on_the_web_listener() {
    let port = free_port();
    let world = World::start(Mode::WebhookOnWeb(port), "en").await;
    let api = &world.api;
    let url = api
        .wait_for("setWebhook", |calls| {
            calls
                .iter()
                .find(|c| c.method == "setWebhook" && c.status == 200)
                .map(|c| c.body["url"].as_str().unwrap_or_default().to_owned())
        })
        .await;
    assert_eq!(url, format!("http://127.0.0.1:{port}/bot{BOT_TOKEN}"));
    assert_eq!(
        world.server().web.map(|a| a.port()),
        Some(port),
        "the web edge's port"
    );
    let mut ann = TgUser::new(api, ANN, "Ann");
    let hello = ann.ask("/start").await;
    assert!(hello.text.contains("Ann"), "{hello:?}");
    let forged = json!({"update_id": 999_998, "message": {"message_id": 1, "date": 0,
        "chat": {"id": ANN, "type": "private", "first_name": "x"}, "text": "forged"}});
    assert_eq!(api.post_webhook(Some("wrong"), &forged).await, 401);
    assert!(api.calls_of("getUpdates").is_empty());
    world.finish().await;
}

#[tokio::test]
async fn restart_resets_to_the_menu_and_delivers_what_was_missed_once() {
    let mut world = World::start(Mode::Polling, "en").await;
    let api = world.api.clone();
    let mut ann = TgUser::new(&api, ANN, "Ann");
    log_in(&mut ann, "id123", "secret").await;
    ann.ask("Write to support").await;

    // Telegram fails while support answers: the core accepts the reply, the bot cannot
    // deliver it, and the process is stopped before it could.
    world
        .api
        .fail_next("sendMessage", 1_000, Fault::ServerError(500));
    world
        .reply(123, pb::AuthorKind::Admin, "sent while Telegram was down")
        .await;
    world
        .api
        .wait_for("a delivery attempt", |calls| {
            calls
                .iter()
                .find(|c| {
                    c.method == "sendMessage"
                        && c.body["text"]
                            .as_str()
                            .is_some_and(|t| t.contains("sent while Telegram was down"))
                })
                .map(|_| ())
        })
        .await;
    world.stop().await;
    world.api.clear_faults();

    // The next start: the chat is back in the menu mode and shown the menu, and the reply
    // the core accepted is delivered.
    ann.skip_sent();
    world.restart().await;
    let menu = world
        .api
        .sent_containing(ANN, "The support bot has restarted")
        .await;
    assert_eq!(menu.keyboard(), keyboard(LINKED));
    assert_eq!(
        world.link(ANN).await.expect("linked").mode,
        pb::TelegramMode::Menu as i32
    );
    world
        .api
        .sent_containing(ANN, "sent while Telegram was down")
        .await;
    // Exactly once: a later reply arrives after it (in id order), and it is there once.
    world
        .reply(123, pb::AuthorKind::Admin, "and a later one")
        .await;
    world.api.sent_containing(ANN, "and a later one").await;
    let copies = world
        .api
        .sent_to(ANN)
        .iter()
        .filter(|s| s.text.contains("sent while Telegram was down"))
        .count();
    assert_eq!(copies, 1);

    // Restarting again delivers nothing twice.
    world.stop().await;
    world.restart().await;
    world.reply(123, pb::AuthorKind::Admin, "third start").await;
    world.api.sent_containing(ANN, "third start").await;
    for text in ["sent while Telegram was down", "and a later one"] {
        let copies = world
            .api
            .sent_to(ANN)
            .iter()
            .filter(|s| s.text.contains(text))
            .count();
        assert_eq!(copies, 1, "{text}");
    }
    world.finish().await;
}

/// Successful deliveries of a reply containing `needle`.
fn delivered(api: &BotApi, needle: &str) -> usize {
    api.sent_to(ANN)
        .iter()
        .filter(|s| s.text.contains(needle))
        .count()
}

#[tokio::test]
async fn telegram_faults_are_retried_or_end_the_link() {
    let world = World::start(Mode::Polling, "en").await;
    let api = &world.api;
    let mut ann = TgUser::new(api, ANN, "Ann");
    log_in(&mut ann, "id123", "secret").await;

    // 429 with retry_after: waited, then delivered once.
    api.fail_next("sendMessage", 1, Fault::TooManyRequests { retry_after: 1 });
    world.reply(123, pb::AuthorKind::Admin, "after a 429").await;
    let sent = api.sent_containing(ANN, "after a 429").await;
    let refused = api
        .calls_of("sendMessage")
        .into_iter()
        .find(|c| c.status == 429)
        .expect("the 429 was answered");
    assert!(
        sent.at.duration_since(refused.at) >= Duration::from_millis(900),
        "retry_after honoured"
    );
    assert_eq!(delivered(api, "after a 429"), 1);

    // A 5xx and an unreadable answer: retried with back-off, delivered once.
    api.fail_next("sendMessage", 1, Fault::ServerError(502));
    world.reply(123, pb::AuthorKind::Admin, "after a 502").await;
    api.sent_containing(ANN, "after a 502").await;
    api.fail_next("sendMessage", 1, Fault::Garbage);
    world
        .reply(123, pb::AuthorKind::Admin, "after garbage")
        .await;
    api.sent_containing(ANN, "after garbage").await;
    assert_eq!(delivered(api, "after a 502"), 1);
    assert_eq!(delivered(api, "after garbage"), 1);
    let statuses: Vec<u16> = api
        .calls_of("sendMessage")
        .iter()
        .map(|c| c.status)
        .collect();
    assert!(statuses.contains(&502), "{statuses:?}");

    // 403 (blocked): not retried, the link becomes inactive, replies are not sent meanwhile.
    api.fail_next(
        "sendMessage",
        1,
        Fault::Forbidden("Forbidden: bot was blocked by the user".into()),
    );
    world
        .reply(123, pb::AuthorKind::Admin, "to a blocked bot")
        .await;
    world
        .eventually("the link marked inactive", || async {
            world.link(ANN).await.is_some_and(|l| !l.active)
        })
        .await;
    let skipped = world
        .reply(123, pb::AuthorKind::Admin, "while blocked")
        .await;
    world
        .eventually("the delivery past the skipped reply", || async {
            world.delivery_cursor().await >= skipped
        })
        .await;
    // The user writes again: the link is active again and replies flow.
    ann.skip_sent();
    let hello = ann.ask("/start").await;
    assert_eq!(hello.keyboard(), keyboard(LINKED));
    assert!(world.link(ANN).await.expect("linked").active);
    world
        .reply(123, pb::AuthorKind::Admin, "after unblocking")
        .await;
    api.sent_containing(ANN, "after unblocking").await;
    assert_eq!(delivered(api, "to a blocked bot"), 0);
    assert_eq!(delivered(api, "while blocked"), 0);
    let attempts = api
        .calls_of("sendMessage")
        .iter()
        .filter(|c| {
            c.body["text"]
                .as_str()
                .is_some_and(|t| t.contains("to a blocked bot"))
        })
        .count();
    assert_eq!(
        attempts,
        1,
        "a 403 is not retried: {:#?}",
        api.calls_of("sendMessage")
            .iter()
            .map(|c| (c.status, &c.body["text"]))
            .collect::<Vec<_>>()
    );
    world.finish().await;
}

#[tokio::test]
async fn credentials_from_an_external_database() {
    // The site's own database, with its own table and password column (sha256 here).
    let site = TestDb::create(Backend::Sqlite).await.expect("sqlite");
    // An empty file is an empty SQLite database (a bare connection does not create one).
    std::fs::File::create(site.url.trim_start_matches("sqlite://")).expect("site database");
    site.execute("CREATE TABLE ur (id INTEGER PRIMARY KEY, pswd TEXT NOT NULL)")
        .await
        .expect("create ur");
    site.execute(
        "INSERT INTO ur (id, pswd) VALUES \
         (7, '30c952fab122c3f9759f02a6d95c3758b246b4fee239957b2d4fee46e26170c4')",
    )
    .await
    .expect("insert");
    let db = TestDb::create(Backend::Sqlite).await.expect("sqlite");
    let toml = format!(
        "[core.credentials]\npassword_hash = \"sha256\"\n\n[core.credentials.external]\n\
         url = \"{}\"\nquery = \"SELECT count(*) AS col, id FROM ur WHERE 'id' || id = ? AND pswd = ?\"\n",
        site.url
    );
    let server = TestServer::start(&db.url, &toml).await;
    let mut telegram = server.telegram().await;
    let mut check = async |login: &str, password: &str| {
        telegram
            .check_credentials(pb::CheckCredentialsRequest {
                login: login.into(),
                password: password.into(),
            })
            .await
            .expect("check")
            .into_inner()
    };
    let ok = check("id7", "pw").await;
    assert_eq!(ok.conversation_id, 7);
    let wrong = check("id7", "nope").await;
    assert_eq!(
        (wrong.conversation_id, wrong.refusal),
        (0, pb::CredentialsRefusal::WrongCredentials as i32)
    );
    let unknown = check("id8", "pw").await;
    assert_eq!(
        unknown.refusal,
        pb::CredentialsRefusal::WrongCredentials as i32
    );
    let malformed = check("seven", "pw").await;
    assert_eq!(
        malformed.refusal,
        pb::CredentialsRefusal::MalformedLogin as i32
    );
    assert!(server.terminate().await);
    db.drop_db().await;
}

impl World {
    /// Support uploads a file for conversation `cid` (as alice, through gRPC).
    async fn upload(&self, cid: u64, name: &str, bytes: &[u8]) -> pb::Attachment {
        use pb::upload_attachment_request::Part;
        let mut parts = vec![pb::UploadAttachmentRequest {
            part: Some(Part::Start(pb::UploadStart {
                conversation_id: cid,
                name: name.into(),
                size: bytes.len() as u64,
                author: Some(pb::Author {
                    kind: pb::AuthorKind::Admin as i32,
                    admin_id: "alice".into(),
                }),
            })),
        }];
        parts.extend(
            bytes
                .chunks(64 * 1024)
                .map(|c| pb::UploadAttachmentRequest {
                    part: Some(Part::Chunk(c.to_vec())),
                }),
        );
        self.core()
            .await
            .chat
            .upload_attachment(futures::stream::iter(parts))
            .await
            .expect("upload")
            .into_inner()
    }

    /// An admin reply with files; returns its message id.
    async fn reply_with_files(&self, cid: u64, text: &str, files: &[&pb::Attachment]) -> u64 {
        self.core()
            .await
            .chat
            .send_message(pb::SendMessageRequest {
                attachment_ids: files.iter().map(|f| f.id).collect(),
                conversation_id: cid,
                author: Some(pb::Author {
                    kind: pb::AuthorKind::Admin as i32,
                    admin_id: "alice".into(),
                }),
                text: text.into(),
                client_msg_id: String::new(),
            })
            .await
            .expect("admin reply with files")
            .into_inner()
            .message
            .expect("message")
            .id
    }

    /// A stored file's description and bytes, through GetAttachment.
    async fn download(&self, file: &pb::Attachment) -> (pb::Attachment, Vec<u8>) {
        let mut chunks = self
            .core()
            .await
            .chat
            .get_attachment(pb::GetAttachmentRequest {
                id: file.id,
                conversation_id: file.conversation_id,
                thumbnail: false,
            })
            .await
            .expect("GetAttachment")
            .into_inner();
        let (mut head, mut bytes) = (None, Vec::new());
        while let Some(chunk) = chunks.message().await.expect("a chunk") {
            head = head.or(chunk.attachment);
            bytes.extend(chunk.data);
        }
        (head.expect("the file's description"), bytes)
    }

    /// The files the core keeps.
    fn stored_files(&self) -> Vec<std::path::PathBuf> {
        files::files_under(self.files.path())
    }

    /// The legacy `messages.message` column of a message.
    async fn legacy_text(&self, id: u64) -> String {
        self.db
            .fetch_text(&format!("SELECT message FROM messages WHERE id = {id}"))
            .await
            .expect("read messages")
            .expect("the message's row")
    }
}

/// Ann logs in as visitor 123 and starts writing to support.
async fn writing(ann: &mut TgUser<'_>) {
    assert!(
        log_in(ann, "id123", "secret")
            .await
            .text
            .contains("logged in")
    );
    let writing = ann.ask("Write to support").await;
    assert_eq!(writing.keyboard(), keyboard(&[&["Back"]]));
}

#[tokio::test]
async fn photos_and_files_from_telegram_reach_support() {
    let world = World::start(Mode::Polling, "en").await;
    let api = &world.api;
    let mut ann = TgUser::new(api, ANN, "Ann");
    writing(&mut ann).await;
    let mut admin = world.admin().await;

    // A photo with a caption: the largest size is downloaded and stored with the caption.
    let photo = botapi::jpeg(640, 480);
    let sent = api.send_photo(ANN, "Ann", &photo, Some("My screen <after> the update"));
    let stored = next_message(&mut admin).await;
    assert_eq!(
        (stored.conversation_id, stored.text.as_str()),
        (123, "My screen <after> the update")
    );
    assert_eq!(stored.origin, pb::AuthorKind::Telegram as i32);
    assert_eq!(stored.direction, pb::Direction::ToSupport as i32);
    let [file] = stored.attachments.as_slice() else {
        panic!("one file: {stored:?}");
    };
    assert_eq!(
        (
            file.name.as_str(),
            file.content_type.as_str(),
            file.size,
            file.width,
            file.height
        ),
        ("photo.jpg", "image/jpeg", photo.len() as u64, 640, 480)
    );
    let (head, bytes) = world.download(file).await;
    assert_eq!(head.id, file.id);
    assert!(bytes == photo, "the photo's bytes as sent");
    // The PHP admin reads the file's name in the legacy column.
    let legacy = world.legacy_text(stored.id).await;
    assert!(legacy.contains("📎 photo.jpg ("), "{legacy:?}");

    // A PDF without a caption: the document's own name, an empty text.
    let pdf = files::pdf();
    api.send_document(ANN, "Ann", "invoice 42.pdf", "application/pdf", &pdf, None);
    let stored = next_message(&mut admin).await;
    assert_eq!(stored.text, "");
    let [file] = stored.attachments.as_slice() else {
        panic!("one file: {stored:?}");
    };
    assert_eq!(
        (file.name.as_str(), file.content_type.as_str()),
        ("invoice 42.pdf", "application/pdf")
    );
    assert!(
        world.download(file).await.1 == pdf,
        "the PDF's bytes as sent"
    );
    // Each file was fetched the Bot API's way: getFile, then its download path.
    let downloads = api.calls_of("download");
    assert_eq!(downloads.len(), 2, "{downloads:?}");
    assert!(downloads.iter().all(|c| {
        c.status == 200
            && c.body["file_path"]
                .as_str()
                .is_some_and(|p| p.contains('/'))
    }));

    // The same update delivered again (a crash before it was confirmed) stores nothing new.
    api.deliver_again(sent);
    api.wait_for("the repeated photo downloaded", |calls| {
        (calls.iter().filter(|c| c.method == "download").count() == 3).then_some(())
    })
    .await;
    // Nothing went wrong for the user: the next answer is the menu asked for.
    let menu = ann.ask("Back").await;
    assert_eq!(menu.keyboard(), keyboard(LINKED));
    let history = world.history(123).await;
    assert_eq!(history.len(), 2, "{history:?}");
    assert_eq!(
        history
            .iter()
            .map(|m| m.attachments.len())
            .collect::<Vec<_>>(),
        [1, 1]
    );
    world.finish().await;
}

#[tokio::test]
async fn support_files_reach_the_chat() {
    // Texts long enough not to fit in a caption.
    let setup = Setup {
        max_chars: 2000,
        ..Setup::default()
    };
    let world = World::start_with(Mode::Polling, "en", setup).await;
    let api = &world.api;
    let mut ann = TgUser::new(api, ANN, "Ann");
    log_in(&mut ann, "id123", "secret").await;

    // An image and a PDF: a photo and a document with their names and bytes; the header
    // and the text are the first one's caption, escaped as texts are.
    let png = files::png(120, 80);
    let pdf = files::pdf();
    let image = world.upload(123, "screen.png", &png).await;
    let terms = world.upload(123, "terms.pdf", &pdf).await;
    world
        .reply_with_files(123, "Here you go <3 & more", &[&image, &terms])
        .await;
    let photo = api.nth_file_to(ANN, 0).await;
    let document = api.nth_file_to(ANN, 1).await;
    assert_eq!(
        (photo.method.as_str(), photo.name.as_str()),
        ("sendPhoto", "screen.png")
    );
    assert!(photo.bytes == png, "the image's bytes");
    assert_eq!(
        photo.caption.as_deref(),
        Some("<b>answer from Alice Acme:</b>\nHere you go &lt;3 &amp; more")
    );
    assert_eq!(photo.parse_mode.as_deref(), Some("HTML"));
    assert_eq!(
        (document.method.as_str(), document.name.as_str()),
        ("sendDocument", "terms.pdf")
    );
    assert!(document.bytes == pdf, "the PDF's bytes");
    assert_eq!(document.caption, None);
    assert!(photo.at <= document.at);
    assert!(
        !api.sent_to(ANN)
            .iter()
            .any(|s| s.text.contains("Here you go")),
        "the text went as the caption only"
    );

    // A text too long for a caption goes first as a message; the file follows bare. A GIF
    // goes as a document (a photo would lose its animation).
    let long = format!("{}end", "word ".repeat(250));
    let gif = world.upload(123, "spinner.gif", &gif_bytes()).await;
    world.reply_with_files(123, &long, &[&gif]).await;
    let text = api.sent_containing(ANN, "word word").await;
    assert!(
        text.text
            .starts_with("<b>answer from Alice Acme:</b>\nword")
            && text.text.ends_with("end"),
        "{text:?}"
    );
    let file = api.nth_file_to(ANN, 2).await;
    assert_eq!(
        (
            file.method.as_str(),
            file.name.as_str(),
            file.caption.as_deref()
        ),
        ("sendDocument", "spinner.gif", None)
    );
    assert!(text.at <= file.at);

    // A file Telegram refuses for good (over its upload limit): a text names it in its
    // place, with the caption it would have had, and replies after it are not held up.
    api.limit_uploads(pdf.len() - 1);
    let big = world.upload(123, "big terms.pdf", &pdf).await;
    world.reply_with_files(123, "the full terms", &[&big]).await;
    let notice = api
        .sent_containing(ANN, "could not be delivered in Telegram")
        .await;
    assert_eq!(
        notice.text,
        format!(
            "<b>answer from Alice Acme:</b>\nthe full terms\n📎 big terms.pdf ({}): this file \
             could not be delivered in Telegram.",
            socketgram_common::files::human_size(pdf.len() as u64)
        )
    );
    let refused = api.calls_of("sendDocument");
    assert_eq!(
        refused.iter().filter(|c| c.status == 413).count(),
        1,
        "a 413 is not retried"
    );
    let after = world.reply(123, pb::AuthorKind::Admin, "still here").await;
    api.sent_containing(ANN, "still here").await;
    world
        .eventually("the cursor past the replies", || async {
            world.delivery_cursor().await >= after
        })
        .await;
    assert_eq!(api.files_sent_to(ANN).len(), 3);
    world.finish().await;
}

/// A one-pixel GIF.
fn gif_bytes() -> Vec<u8> {
    b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00\x00,\
      \x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"
        .to_vec()
}

#[tokio::test]
async fn files_over_the_limit_or_of_refused_types_are_not_stored() {
    let setup = Setup {
        attachments: "max_bytes = 2048\n".into(),
        ..Setup::default()
    };
    let world = World::start_with(Mode::Polling, "en", setup).await;
    let api = &world.api;
    let mut ann = TgUser::new(api, ANN, "Ann");
    writing(&mut ann).await;

    // Over the core's limit by Telegram's word: refused before it is downloaded.
    let mut big = files::pdf();
    big.resize(3000, b' ');
    api.send_document(
        ANN,
        "Ann",
        "big.pdf",
        "application/pdf",
        &big,
        Some("see this"),
    );
    let answer = ann.next().await;
    assert_eq!(
        answer.text,
        "This file is too large (max 2.0 KB); nothing was sent."
    );
    assert_eq!(answer.keyboard(), keyboard(&[&["Back"]]));
    assert!(api.calls_of("getFile").is_empty());
    assert!(api.calls_of("download").is_empty());
    // Over the Bot API's download limit too.
    api.send_large_document(ANN, "Ann", "disk.iso", botapi::DOWNLOAD_LIMIT + 1);
    assert!(ann.next().await.text.contains("too large"));

    // HTML, whatever the name and the type the app claims: refused by its content.
    api.send_document(
        ANN,
        "Ann",
        "notes.txt",
        "text/plain",
        b"<!DOCTYPE html><html><body><script>alert(1)</script></body></html>",
        None,
    );
    let answer = ann.next().await;
    assert_eq!(
        answer.text,
        "Files of this type (text/html) cannot be sent; nothing was sent."
    );
    // A download that fails: the user is told, the core keeps nothing of it.
    api.fail_next("download", 1, Fault::ServerError(502));
    api.send_document(ANN, "Ann", "ok.pdf", "application/pdf", &files::pdf(), None);
    let answer = ann.next().await;
    assert_eq!(
        answer.text,
        "The file could not be sent; nothing was sent. Please try again in a minute."
    );
    let downloads = api.calls_of("download");
    assert_eq!(
        downloads.iter().map(|c| c.status).collect::<Vec<_>>(),
        [200, 502],
        "the HTML was read to be sniffed, the PDF's download failed"
    );
    // A caption over the message limit: refused before the download.
    let long = "x".repeat(MAX_CHARS + 1);
    api.send_photo(ANN, "Ann", &botapi::jpeg(16, 16), Some(&long));
    let answer = ann.next().await;
    assert!(answer.text.contains("too long"), "{answer:?}");
    // Other media are still not for support.
    api.send_sticker(ANN, "Ann");
    assert!(
        ann.next()
            .await
            .text
            .contains("Only text, photos and files")
    );

    assert!(world.history(123).await.is_empty());
    assert_eq!(world.stored_files(), Vec::<std::path::PathBuf>::new());

    // A file within the limits still goes.
    let mut admin = world.admin().await;
    api.send_document(ANN, "Ann", "ok.pdf", "application/pdf", &files::pdf(), None);
    let stored = next_message(&mut admin).await;
    assert_eq!(stored.attachments.len(), 1);
    world.finish().await;
}

#[tokio::test]
async fn a_429_on_a_photo_is_waited_out_and_sent_once() {
    let world = World::start(Mode::Polling, "en").await;
    let api = &world.api;
    let mut ann = TgUser::new(api, ANN, "Ann");
    log_in(&mut ann, "id123", "secret").await;

    api.fail_next("sendPhoto", 1, Fault::TooManyRequests { retry_after: 1 });
    let png = files::png(40, 30);
    let image = world.upload(123, "chart.png", &png).await;
    world.reply_with_files(123, "the chart", &[&image]).await;
    let photo = api.nth_file_to(ANN, 0).await;
    assert!(photo.bytes == png);
    let refused = api
        .calls_of("sendPhoto")
        .into_iter()
        .find(|c| c.status == 429)
        .expect("the 429 was answered");
    assert_eq!(refused.files.len(), 1, "the refused call carried the file");
    assert!(
        photo.at.duration_since(refused.at) >= Duration::from_millis(900),
        "retry_after honoured"
    );
    // Once: a later reply comes after it, and the photo is there once.
    world.reply(123, pb::AuthorKind::Admin, "and text").await;
    api.sent_containing(ANN, "and text").await;
    assert_eq!(api.files_sent_to(ANN).len(), 1);
    assert_eq!(api.calls_of("sendPhoto").len(), 2);
    world.finish().await;
}

#[tokio::test]
async fn groups_are_told_once_and_ignored() {
    let world = World::start(Mode::Polling, "en").await;
    let api = &world.api;
    let mut ann = TgUser::new(api, ANN, "Ann");
    // Ann is linked and writing: what she writes in a group is still not support's.
    writing(&mut ann).await;
    let group = Group {
        id: -4_001,
        supergroup: false,
        title: "Friends".into(),
    };
    let supergroup = Group {
        id: -1_001_234_567_890,
        supergroup: true,
        title: "Acme fans".into(),
    };

    api.add_to_group(&group, ANN, "Ann");
    let told = api.nth_sent_to(group.id, 0).await;
    assert!(
        told.text.starts_with("I only talk in private chats."),
        "{told:?}"
    );
    assert!(told.reply_markup.is_none(), "no menu in a group: {told:?}");
    for text in [
        "/start",
        "Log in",
        "Write to support",
        "this is not for support",
    ] {
        api.group_text(&group, ANN, "Ann", text);
    }
    // A supergroup is told too, once.
    api.group_text(&supergroup, BOB, "Bob", "hello bot");
    api.group_text(&supergroup, BOB, "Bob", "/start");
    assert!(
        api.nth_sent_to(supergroup.id, 0)
            .await
            .text
            .starts_with("I only talk in private chats.")
    );
    // Added again later: still told only once.
    api.add_to_group(&group, BOB, "Bob");
    // Every update taken, and a round trip in Ann's chat after them.
    world
        .eventually("the groups' updates taken", || async {
            api.pending_updates() == 0
        })
        .await;
    let menu = ann.ask("Back").await;
    assert_eq!(menu.keyboard(), keyboard(LINKED));

    for chat in [group.id, supergroup.id] {
        let calls: Vec<_> = api
            .calls()
            .into_iter()
            .filter(|c| {
                c.body["chat_id"] == json!(chat) || c.body["chat_id"] == json!(chat.to_string())
            })
            .collect();
        assert_eq!(calls.len(), 1, "one message to {chat}: {calls:#?}");
        assert!(world.link(chat).await.is_none());
    }
    assert!(world.history(123).await.is_empty(), "nothing stored");
    world.finish().await;
}
