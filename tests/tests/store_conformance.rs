//! One conformance suite for every storage backend: each case runs on SQLite, MariaDB and
//! PostgreSQL, each time on a database of its own.

use std::{collections::BTreeSet, sync::Arc, time::Duration};

use chrono::{NaiveDate, NaiveDateTime};
use socketgram_core::domain::{
    AdminSession, AssigneeFilter, Attachment, ConversationFilter, Page, Status, StatusKind,
    Thumbnail, Vouched,
};
use socketgram_core::{
    domain::{NewMessage, Origin, Reader, Scope, TelegramMode, VISITOR_ADMIN_ID},
    store::{self, Backend, Store, StoreError},
};
use socketgram_tests::db::TestDb;

#[derive(Clone)]
struct Fixture {
    store: Arc<dyn Store>,
    db: Arc<TestDb>,
}

async fn run<F, Fut>(backend: Backend, case: F)
where
    F: FnOnce(Fixture) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let Some(db) = TestDb::create(backend).await else {
        return;
    };
    let store = store::connect(&db.config()).await.expect("connect");
    store.migrate().await.expect("migrate");
    let db = Arc::new(db);
    case(Fixture {
        store: store.clone(),
        db: db.clone(),
    })
    .await;
    store.close().await;
    if let Ok(db) = Arc::try_unwrap(db) {
        db.drop_db().await;
    }
}

macro_rules! conformance {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test] async fn $case() { super::run(super::Backend::Sqlite, super::$case).await })*
        }
        mod mysql {
            $(#[tokio::test] async fn $case() { super::run(super::Backend::MySql, super::$case).await })*
        }
        mod postgres {
            $(#[tokio::test] async fn $case() { super::run(super::Backend::Postgres, super::$case).await })*
        }
    };
}

conformance!(
    migrate_is_idempotent,
    append_reads_back_exactly,
    client_ids_store_once,
    history_pages_newest_first,
    messages_after_respects_scope,
    text_is_escaped_in_the_column,
    conversations_and_read_marks,
    admins_leave_out_the_placeholder,
    admins_are_added_and_removed,
    any_visitor_id_can_be_written_to,
    unknown_admin_is_refused_and_nothing_is_stored,
    telegram_links_move_and_reset,
    concurrent_appends_commit_in_id_order,
    concurrent_batches_chain_by_their_predecessor,
    large_batches_keep_order_and_ids,
    delivery_cursors_start_once_and_only_move_forward,
    user_passwords_read_back,
    a_full_page_still_says_more_follow,
    a_lease_goes_to_exactly_one_of_concurrent_acquirers,
    a_lease_is_renewed_by_its_holder_only,
    a_lease_is_taken_over_once_expired_by_the_database_clock,
    a_released_lease_is_free_at_once,
    a_batch_that_fails_under_the_lock_leaves_it_free,
    canned_replies_are_kept_by_shortcut,
    notes_are_kept_apart_from_messages,
    an_erasure_leaves_only_its_record,
    a_conversation_belongs_to_one_admin_or_none,
    a_status_is_kept_and_a_visitor_message_reopens,
    a_visitor_context_is_kept_by_parts_and_erased,
    open_assignments_are_counted_per_admin,
    admin_passwords_are_kept_apart_and_go_with_the_admin,
    admin_sessions_are_kept_by_digest_and_end_by_admin,
    conversations_are_found_by_id_vouched_name_or_text,
    files_wait_for_a_message_then_go_with_it,
    staff_pair_with_telegram_users_and_conversations_with_topics,
    link_tokens_are_taken_once_while_they_last,
    a_link_token_goes_to_exactly_one_of_concurrent_redeems,
);

fn at(h: u32, m: u32, s: u32) -> NaiveDateTime {
    NaiveDate::from_ymd_opt(2026, 3, 14)
        .unwrap()
        .and_hms_opt(h, m, s)
        .unwrap()
}

fn visitor(cid: u64, text: &str, key: Option<&str>) -> NewMessage {
    NewMessage {
        attachments: Vec::new(),
        conversation_id: cid,
        origin: Origin::Visitor,
        admin_id: VISITOR_ADMIN_ID.into(),
        text: text.into(),
        client_msg_id: key.map(Into::into),
        local_date: at(10, 0, 0),
    }
}

fn admin(cid: u64, aid: &str, text: &str) -> NewMessage {
    NewMessage {
        attachments: Vec::new(),
        conversation_id: cid,
        origin: Origin::Admin,
        admin_id: aid.into(),
        text: text.into(),
        client_msg_id: None,
        local_date: at(10, 0, 1),
    }
}

async fn add_admin(db: &TestDb, aid: &str, name: &str, lid: i32) {
    db.execute(&format!(
        "INSERT INTO adm_account (aid, name, lid) VALUES ('{aid}', '{name}', {lid})"
    ))
    .await
    .expect("insert admin");
}

async fn migrate_is_idempotent(f: Fixture) {
    f.store.migrate().await.expect("second migrate");
    assert_eq!(f.store.last_message_id().await.unwrap(), 0);
    assert!(f.store.admins().await.unwrap().is_empty());
    assert!(
        f.store
            .conversations(None, 10, &ConversationFilter::default())
            .await
            .unwrap()
            .is_empty()
    );
}

async fn append_reads_back_exactly(f: Fixture) {
    add_admin(&f.db, "alice", "Alice", 2).await;
    let mut first = visitor(123, "Hello — привет 😀", None);
    first.local_date = at(23, 59, 58);
    let out = f
        .store
        .append(&[
            first.clone(),
            admin(123, "alice", "Hi!"),
            visitor(7, "other", None),
        ])
        .await
        .unwrap();
    assert_eq!(out.len(), 3);
    assert!(out.iter().all(|a| !a.duplicate));
    assert!(out[0].message.id < out[1].message.id && out[1].message.id < out[2].message.id);
    let m = &out[0].message;
    assert_eq!(
        (m.conversation_id, m.text.as_str()),
        (123, "Hello — привет 😀")
    );
    assert_eq!(m.admin_id, "0");
    assert_eq!(m.local_date, at(23, 59, 58));

    let read = f
        .store
        .messages_after(Scope::Conversation(123), 0, 10)
        .await
        .unwrap();
    let written: Vec<_> = out[..2].iter().map(|a| a.message.clone()).collect();
    assert_eq!(read, written, "what is read back is what was stored");
    assert_eq!(read[1].origin, Origin::Admin);
    assert_eq!(read[1].admin_id, "alice");
    assert_eq!(f.store.last_message_id().await.unwrap(), out[2].message.id);
}

async fn client_ids_store_once(f: Fixture) {
    let first = f
        .store
        .append(&[visitor(5, "one", Some("k1"))])
        .await
        .unwrap();
    let again = f
        .store
        .append(&[
            visitor(5, "one (retry)", Some("k1")),
            visitor(5, "two", Some("k2")),
            visitor(5, "two (same batch)", Some("k2")),
            visitor(6, "same key, other conversation", Some("k1")),
        ])
        .await
        .unwrap();
    assert!(again[0].duplicate);
    assert_eq!(again[0].message, first[0].message);
    assert!(!again[1].duplicate);
    assert!(again[2].duplicate);
    assert_eq!(again[2].message, again[1].message);
    assert!(!again[3].duplicate);
    let stored = f.store.messages_after(Scope::All, 0, 100).await.unwrap();
    let texts: Vec<_> = stored.iter().map(|m| m.text.as_str()).collect();
    assert_eq!(texts, ["one", "two", "same key, other conversation"]);
    let keys: Vec<_> = stored.iter().map(|m| m.client_msg_id.as_deref()).collect();
    assert_eq!(
        keys,
        [Some("k1"), Some("k2"), Some("k1")],
        "each read with its key"
    );
    // A batch is first tried without looking its keys up; a repeat among new messages rolls
    // that attempt back. Nothing of it stays, and the batch's predecessor is still the last
    // message stored, not an id the rolled-back attempt used.
    let last = stored.last().unwrap().id;
    let mixed = f
        .store
        .commit_batch(&[
            visitor(6, "new", Some("k9")),
            visitor(5, "two (later retry)", Some("k2")),
        ])
        .await
        .unwrap();
    assert_eq!(mixed.prev, last);
    assert!(!mixed.appended[0].duplicate);
    assert!(mixed.appended[0].message.id > last);
    assert!(mixed.appended[1].duplicate);
    assert_eq!(mixed.appended[1].message, again[1].message);
    let stored = f.store.messages_after(Scope::All, last, 100).await.unwrap();
    assert_eq!(stored, [mixed.appended[0].message.clone()]);
}

async fn history_pages_newest_first(f: Fixture) {
    let batch: Vec<_> = (0..25)
        .map(|i| visitor(9, &format!("m{i}"), None))
        .collect();
    let ids: Vec<u64> = f
        .store
        .append(&batch)
        .await
        .unwrap()
        .iter()
        .map(|a| a.message.id)
        .collect();
    f.store
        .append(&[visitor(10, "elsewhere", None)])
        .await
        .unwrap();
    let page = f.store.history(9, None, 20).await.unwrap();
    assert_eq!(page.len(), 20);
    assert_eq!(page[0].id, ids[24]);
    assert_eq!(page[19].id, ids[5]);
    let older = f.store.history(9, Some(ids[5]), 10).await.unwrap();
    let older_ids: Vec<u64> = older.iter().map(|m| m.id).collect();
    assert_eq!(
        older_ids,
        ids[..5].iter().rev().copied().collect::<Vec<_>>()
    );
    assert!(
        f.store
            .history(9, Some(ids[0]), 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(f.store.history(404, None, 10).await.unwrap().is_empty());
}

async fn messages_after_respects_scope(f: Fixture) {
    let out = f
        .store
        .append(&[
            visitor(1, "a", None),
            visitor(2, "b", None),
            visitor(1, "c", None),
        ])
        .await
        .unwrap();
    let ids: Vec<u64> = out.iter().map(|a| a.message.id).collect();
    let all = f
        .store
        .messages_after(Scope::All, ids[0], 10)
        .await
        .unwrap();
    assert_eq!(all.iter().map(|m| m.id).collect::<Vec<_>>(), ids[1..]);
    let one = f
        .store
        .messages_after(Scope::Conversation(1), 0, 10)
        .await
        .unwrap();
    assert_eq!(
        one.iter().map(|m| m.id).collect::<Vec<_>>(),
        [ids[0], ids[2]]
    );
    let limited = f.store.messages_after(Scope::All, 0, 2).await.unwrap();
    assert_eq!(limited.len(), 2);
}

async fn text_is_escaped_in_the_column(f: Fixture) {
    let text = r#"<img src=x onerror="alert('x')"> & more"#;
    let out = f.store.append(&[visitor(3, text, None)]).await.unwrap();
    let raw =
        f.db.fetch_text(&format!(
            "SELECT message FROM messages WHERE id = {}",
            out[0].message.id
        ))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        raw, "&lt;img src=x onerror=&quot;alert(&#x27;x&#x27;)&quot;&gt; &amp; more",
        "the PHP admin echoes this column raw: it must hold escaped text"
    );
    let read = f.store.history(3, None, 1).await.unwrap();
    assert_eq!(read[0].text, text);
}

async fn conversations_and_read_marks(f: Fixture) {
    add_admin(&f.db, "bob", "Bob", 1).await;
    assert!(f.store.open_conversation(50).await.unwrap());
    assert!(!f.store.open_conversation(50).await.unwrap());
    let a = f
        .store
        .append(&[visitor(40, "v1", None), visitor(40, "v2", None)])
        .await
        .unwrap();
    let b = f
        .store
        .append(&[visitor(41, "w1", None), admin(41, "bob", "r1")])
        .await
        .unwrap();
    let list = f
        .store
        .conversations(None, 10, &ConversationFilter::default())
        .await
        .unwrap();
    let order: Vec<u64> = list.iter().map(|c| c.conversation_id).collect();
    assert_eq!(
        order,
        [41, 40, 50],
        "most recent first, empty conversations last"
    );
    assert_eq!(list[0].last_message.as_ref().unwrap().text, "r1");
    assert_eq!(
        (list[0].unread_by_support, list[0].unread_by_visitor),
        (1, 1)
    );
    assert_eq!(
        (list[1].unread_by_support, list[1].unread_by_visitor),
        (2, 0)
    );
    assert!(list[2].last_message.is_none());

    assert!(
        f.store
            .mark_read(40, Reader::Support, a[0].message.id)
            .await
            .unwrap()
    );
    assert_eq!(
        f.store
            .conversation(40)
            .await
            .unwrap()
            .unwrap()
            .unread_by_support,
        1
    );
    let marked = f.store.conversation(40).await.unwrap().unwrap();
    assert_eq!(
        (marked.support_read_id, marked.visitor_read_id),
        (a[0].message.id, 0),
        "the marks as stored"
    );
    assert!(
        f.store.mark_read(40, Reader::Support, 1).await.unwrap(),
        "never moves back"
    );
    assert_eq!(
        f.store
            .conversation(40)
            .await
            .unwrap()
            .unwrap()
            .support_read_id,
        a[0].message.id,
        "the mark stays where it was"
    );
    assert_eq!(
        f.store
            .conversation(40)
            .await
            .unwrap()
            .unwrap()
            .unread_by_support,
        1
    );
    assert!(
        f.store
            .mark_read(41, Reader::Visitor, b[1].message.id)
            .await
            .unwrap()
    );
    assert_eq!(
        f.store
            .conversation(41)
            .await
            .unwrap()
            .unwrap()
            .unread_by_visitor,
        0
    );
    assert!(!f.store.mark_read(999, Reader::Support, 1).await.unwrap());
    assert!(f.store.conversation(999).await.unwrap().is_none());

    let next = f
        .store
        .conversations(Some(b[1].message.id), 1, &ConversationFilter::default())
        .await
        .unwrap();
    assert_eq!(next.len(), 1);
    assert_eq!(next[0].conversation_id, 40);
}

async fn admins_leave_out_the_placeholder(f: Fixture) {
    add_admin(&f.db, "zed", "Zed", 2).await;
    add_admin(&f.db, "amy", "Amy", -1).await;
    let admins = f.store.admins().await.unwrap();
    let ids: Vec<_> = admins
        .iter()
        .map(|a| (a.admin_id.as_str(), a.name.as_str(), a.rights))
        .collect();
    assert_eq!(ids, [("amy", "Amy", -1), ("zed", "Zed", 2)]);
}

async fn admins_are_added_and_removed(f: Fixture) {
    use socketgram_core::domain::Admin;
    let bob = Admin {
        admin_id: "bob".into(),
        name: "Bob".into(),
        rights: 2,
    };
    assert!(f.store.add_admin(&bob).await.unwrap());
    let renamed = Admin {
        name: "Robert".into(),
        ..bob.clone()
    };
    assert!(
        !f.store.add_admin(&renamed).await.unwrap(),
        "an existing login is left as it is"
    );
    assert_eq!(f.store.admins().await.unwrap(), std::slice::from_ref(&bob));
    // An admin who signed a message keeps its row: the message shows its name.
    f.store.append(&[admin(3, "bob", "signed")]).await.unwrap();
    let err = f.store.remove_admin("bob").await.unwrap_err();
    assert!(matches!(err, StoreError::Constraint(_)), "{err:?}");
    let carol = Admin {
        admin_id: "carol".into(),
        name: "Carol".into(),
        rights: 1,
    };
    assert!(f.store.add_admin(&carol).await.unwrap());
    assert!(f.store.remove_admin("carol").await.unwrap());
    assert!(!f.store.remove_admin("carol").await.unwrap());
    assert!(
        !f.store.remove_admin(VISITOR_ADMIN_ID).await.unwrap(),
        "the placeholder row stays"
    );
    assert_eq!(f.store.admins().await.unwrap(), [bob]);
}

/// Socketgram's own schema has no visitor table to check: support may write to any id.
async fn any_visitor_id_can_be_written_to(f: Fixture) {
    assert!(f.store.visitor_exists(1).await.unwrap());
    assert!(f.store.visitor_exists(4_000_000_000).await.unwrap());
}

async fn unknown_admin_is_refused_and_nothing_is_stored(f: Fixture) {
    let err = f
        .store
        .append(&[visitor(8, "fine", None), admin(8, "ghost", "forged")])
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Constraint(_)), "{err:?}");
    assert_eq!(
        f.store.last_message_id().await.unwrap(),
        0,
        "the whole batch rolled back"
    );
    assert!(f.store.conversation(8).await.unwrap().is_none());
}

async fn telegram_links_move_and_reset(f: Fixture) {
    let big = 7_000_000_000_i64; // beyond INT(10), as today's Telegram ids are
    let link = f.store.link_telegram(big, 77).await.unwrap();
    assert_eq!(
        (link.chat_id, link.conversation_id, link.mode, link.active),
        (big, 77, TelegramMode::Menu, true)
    );
    assert_eq!(
        f.store.telegram_link(big).await.unwrap(),
        Some(link.clone())
    );
    // The same chat logs in as another visitor: the link moves.
    f.store.link_telegram(big, 78).await.unwrap();
    assert!(f.store.telegram_links(Some(77)).await.unwrap().is_empty());
    // Another chat logs in as visitor 78: the old chat loses it.
    f.store.link_telegram(-100_123, 78).await.unwrap();
    assert!(f.store.telegram_link(big).await.unwrap().is_none());
    let set = f
        .store
        .set_telegram_state(-100_123, Some(TelegramMode::Writing), None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((set.mode, set.active), (TelegramMode::Writing, true));
    let set = f
        .store
        .set_telegram_state(-100_123, None, Some(false))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((set.mode, set.active), (TelegramMode::Writing, false));
    assert!(
        f.store
            .set_telegram_state(1, Some(TelegramMode::Menu), None)
            .await
            .unwrap()
            .is_none()
    );
    f.store.link_telegram(5, 79).await.unwrap();
    f.store.reset_telegram_modes().await.unwrap();
    let all = f.store.telegram_links(None).await.unwrap();
    assert_eq!(
        all.iter().map(|l| l.chat_id).collect::<Vec<_>>(),
        [-100_123, 5]
    );
    assert!(all.iter().all(|l| l.mode == TelegramMode::Menu));
}

/// Writers on several connections at once: a reader that follows `messages_after` with a
/// cursor must see every message, i.e. no id may become visible after a greater one.
async fn delivery_cursors_start_once_and_only_move_forward(f: Fixture) {
    // A new consumer starts where it is told; later calls return what is stored.
    assert_eq!(f.store.delivery_cursor("telegram:1", 5).await.unwrap(), 5);
    assert_eq!(f.store.delivery_cursor("telegram:1", 9).await.unwrap(), 5);
    // Forward only.
    assert_eq!(
        f.store
            .advance_delivery_cursor("telegram:1", 7)
            .await
            .unwrap(),
        7
    );
    assert_eq!(
        f.store
            .advance_delivery_cursor("telegram:1", 6)
            .await
            .unwrap(),
        7
    );
    assert_eq!(f.store.delivery_cursor("telegram:1", 0).await.unwrap(), 7);
    // Consumers are independent, and their names compare byte for byte.
    assert_eq!(f.store.delivery_cursor("Telegram:1", 0).await.unwrap(), 0);
    assert_eq!(
        f.store
            .advance_delivery_cursor("telegram:2", 3)
            .await
            .unwrap(),
        3
    );
    assert_eq!(f.store.delivery_cursor("telegram:1", 0).await.unwrap(), 7);
    // Ids beyond 32 bits and names of 64 characters of UTF-8.
    let long = "ё".repeat(64);
    let big = 5_000_000_000;
    assert_eq!(
        f.store.advance_delivery_cursor(&long, big).await.unwrap(),
        big
    );
    assert_eq!(f.store.delivery_cursor(&long, 0).await.unwrap(), big);
}

async fn user_passwords_read_back(f: Fixture) {
    f.db.execute(
        "INSERT INTO users (id, password) VALUES (123, '5ebe2294ecd0e0f08eab7690d2a6ee69')",
    )
    .await
    .expect("insert user");
    assert_eq!(
        f.store.user_password(123).await.unwrap().as_deref(),
        Some("5ebe2294ecd0e0f08eab7690d2a6ee69")
    );
    assert_eq!(f.store.user_password(124).await.unwrap(), None);
}

async fn concurrent_appends_commit_in_id_order(f: Fixture) {
    const WRITERS: usize = 6;
    const EACH: usize = 25;
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let store = f.store.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..EACH {
                store
                    .append(&[visitor(w as u64 + 1, &format!("{w}-{i}"), None)])
                    .await
                    .unwrap();
            }
        }));
    }
    let reader = {
        let store = f.store.clone();
        tokio::spawn(async move {
            let mut cursor = 0;
            let mut seen = Vec::new();
            while seen.len() < WRITERS * EACH {
                for m in store.messages_after(Scope::All, cursor, 500).await.unwrap() {
                    cursor = m.id;
                    seen.push(m.id);
                }
                tokio::task::yield_now().await;
            }
            seen
        })
    };
    for t in tasks {
        t.await.unwrap();
    }
    let seen = tokio::time::timeout(Duration::from_secs(20), reader)
        .await
        .expect("the cursor skipped a message that committed late")
        .unwrap();
    let all: BTreeSet<u64> = f
        .store
        .messages_after(Scope::All, 0, 500)
        .await
        .unwrap()
        .iter()
        .map(|m| m.id)
        .collect();
    assert_eq!(seen.iter().copied().collect::<BTreeSet<_>>(), all);
    assert!(seen.windows(2).all(|w| w[0] < w[1]));
}

/// Every committed batch names the greatest id committed before it: sorted by it, the
/// batches of concurrent writers (as of several core replicas) link up with no gap and no
/// overlap, which is what lets a replica tell it has missed nothing.
async fn concurrent_batches_chain_by_their_predecessor(f: Fixture) {
    let first = f
        .store
        .commit_batch(&[visitor(9, "before", None)])
        .await
        .unwrap();
    assert_eq!(
        first.prev, 0,
        "nothing was committed before the first message"
    );
    let mut tasks = Vec::new();
    for w in 0..4u64 {
        let store = f.store.clone();
        tasks.push(tokio::spawn(async move {
            let mut chain = Vec::new();
            for i in 0..15 {
                let batch: Vec<_> = (0..=(i % 3))
                    .map(|k| visitor(w + 1, &format!("{w}-{i}-{k}"), None))
                    .collect();
                let committed = store.commit_batch(&batch).await.unwrap();
                let ids: Vec<u64> = committed.appended.iter().map(|a| a.message.id).collect();
                chain.push((committed.prev, ids));
            }
            chain
        }));
    }
    let mut links = vec![(first.prev, vec![first.appended[0].message.id])];
    for t in tasks {
        links.extend(t.await.unwrap());
    }
    links.sort();
    for pair in links.windows(2) {
        let (before, after) = (&pair[0], &pair[1]);
        assert_eq!(
            after.0,
            *before.1.last().unwrap(),
            "a batch's predecessor is the last id of the batch committed before it"
        );
        assert!(after.1.iter().all(|&id| id > after.0));
    }
    // A batch of repeats only stores nothing and has no predecessor to name.
    let keyed = f
        .store
        .commit_batch(&[visitor(1, "k", Some("key"))])
        .await
        .unwrap();
    let repeat = f
        .store
        .commit_batch(&[visitor(1, "k", Some("key"))])
        .await
        .unwrap();
    assert!(repeat.appended[0].duplicate);
    assert_eq!(repeat.appended[0].message, keyed.appended[0].message);
}

/// The database goes away under a running store: calls fail as UNAVAILABLE, nothing is half
/// stored, and the store works again once the database is back.
async fn outage(backend: Backend) {
    let Some(db) = TestDb::create(backend).await else {
        return;
    };
    let (proxy, proxied) = socketgram_tests::proxy::FaultProxy::in_front_of(&db.url).await;
    let mut config = db.config();
    config.url = socketgram_core::config::Secret::new(proxied);
    config.acquire_timeout_ms = 1_000;
    let store = store::connect(&config).await.unwrap();
    store.migrate().await.unwrap();
    store.append(&[visitor(1, "before", None)]).await.unwrap();

    proxy.cut();
    let batch: Vec<_> = (0..10)
        .map(|i| visitor(1, &format!("during {i}"), None))
        .collect();
    let err = store.append(&batch).await.unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    let err = store.history(1, None, 10).await.unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");

    proxy.restore();
    let mut recovered = None;
    for _ in 0..50 {
        match store.append(&[visitor(1, "after", None)]).await {
            Ok(out) => {
                recovered = Some(out);
                break;
            }
            Err(StoreError::Unavailable(_)) => tokio::time::sleep(Duration::from_millis(100)).await,
            Err(e) => panic!("{e:?}"),
        }
    }
    assert!(recovered.is_some(), "the store did not recover");
    let texts: Vec<String> = store
        .history(1, None, 50)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.text)
        .collect();
    assert_eq!(
        texts,
        ["after", "before"],
        "nothing of the failed batch was stored"
    );
    store.close().await;
    db.drop_db().await;
}

#[tokio::test]
async fn mysql_outage_fails_cleanly_and_recovers() {
    outage(Backend::MySql).await;
}

#[tokio::test]
async fn postgres_outage_fails_cleanly_and_recovers() {
    outage(Backend::Postgres).await;
}

/// A batch larger than one multi-row INSERT, over several conversations, with repeats: ids
/// ascend in batch order, every message reads back as sent, the conversations' last ids move.
async fn large_batches_keep_order_and_ids(f: Fixture) {
    let mut batch: Vec<_> = (0..700u64)
        .map(|i| visitor(1 + i % 7, &format!("m{i}"), Some(&format!("k{i}"))))
        .collect();
    batch.push(visitor(4, "repeat of k3", Some("k3")));
    let out = f.store.append(&batch).await.unwrap();
    assert_eq!(out.len(), 701);
    let ids: Vec<u64> = out[..700].iter().map(|a| a.message.id).collect();
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "ids ascend in batch order"
    );
    assert!(out[..700].iter().all(|a| !a.duplicate));
    assert!(out[700].duplicate && out[700].message == out[3].message);
    let mut read = Vec::new();
    let mut after = 0;
    loop {
        let page = f
            .store
            .messages_after(Scope::All, after, 500)
            .await
            .unwrap();
        let Some(last) = page.last() else { break };
        after = last.id;
        read.extend(page);
    }
    let sent: Vec<_> = out[..700].iter().map(|a| a.message.clone()).collect();
    assert_eq!(read, sent);
    for c in 1..=7u64 {
        let last = sent
            .iter()
            .filter(|m| m.conversation_id == c)
            .map(|m| m.id)
            .max();
        let summary = f.store.conversation(c).await.unwrap().unwrap();
        assert_eq!(summary.last_message.map(|m| m.id), last);
    }
}

/// A page of the largest size still tells whether more follow: the core reads one row past
/// the page to know, and the store must return it (it capped that read at the page size, so
/// `has_more` was false at `limit = MAX_PAGE` however many messages followed).
async fn a_full_page_still_says_more_follow(f: Fixture) {
    use socketgram_core::{Core, chat::Cursor, config::CoreConfig, store::MAX_PAGE};
    let n = MAX_PAGE as usize + 2;
    let batch: Vec<_> = (0..n)
        .map(|i| visitor(31, &format!("m{i}"), None))
        .collect();
    f.store.append(&batch).await.unwrap();
    let look_ahead = MAX_PAGE + 1;
    assert_eq!(
        f.store.history(31, None, look_ahead).await.unwrap().len(),
        look_ahead as usize
    );
    let after = f
        .store
        .messages_after(Scope::Conversation(31), 0, look_ahead);
    assert_eq!(after.await.unwrap().len(), look_ahead as usize);

    let stop = tokio_util::sync::CancellationToken::new();
    let core = Core::start(f.store.clone(), &CoreConfig::default(), stop.clone())
        .await
        .unwrap();
    let (page, has_more) = core
        .history(31, Cursor::Before(None), MAX_PAGE)
        .await
        .unwrap();
    assert_eq!(
        (page.len(), has_more),
        (MAX_PAGE as usize, true),
        "newest first"
    );
    let (page, has_more) = core.history(31, Cursor::After(0), MAX_PAGE).await.unwrap();
    assert_eq!(
        (page.len(), has_more),
        (MAX_PAGE as usize, true),
        "oldest first"
    );
    stop.cancel();
}

/// The lease every lease case uses.
const LEASE: &str = "telegram:123456";
const MINUTE: Duration = Duration::from_secs(60);

/// Milliseconds since 1970 by this machine's clock (the test's databases run on it too).
fn local_now_ms() -> i64 {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970");
    i64::try_from(since.as_millis()).expect("in range")
}

/// Several acquirers at once, on a lease with no row, a released one and an expired one:
/// each time exactly one is granted, and every other is told who holds it.
async fn a_lease_goes_to_exactly_one_of_concurrent_acquirers(f: Fixture) {
    const ACQUIRERS: usize = 8;
    for round in 0..6 {
        match round % 3 {
            // First use (round 0), or released by the round before (round 3): no row.
            0 => {}
            // Released by the round before: no row again.
            1 => {}
            // Expired: the row is there, naming a holder whose time ran out.
            _ => {
                f.db.execute("UPDATE sg_leases SET expires_at_ms = 0")
                    .await
                    .expect("expire the lease");
            }
        }
        let start = Arc::new(tokio::sync::Barrier::new(ACQUIRERS));
        let tasks: Vec<_> = (0..ACQUIRERS)
            .map(|i| {
                let (store, start) = (f.store.clone(), start.clone());
                tokio::spawn(async move {
                    let holder = format!("holder-{round}-{i}");
                    start.wait().await;
                    let lease = store.acquire_lease(LEASE, &holder, MINUTE).await;
                    (holder, lease.expect("acquire"))
                })
            })
            .collect();
        let mut outcomes = Vec::new();
        for t in tasks {
            outcomes.push(t.await.expect("task"));
        }
        let winners: Vec<&String> = outcomes
            .iter()
            .filter(|(_, l)| l.granted)
            .map(|(h, _)| h)
            .collect();
        assert_eq!(winners.len(), 1, "round {round}: {outcomes:#?}");
        for (holder, lease) in &outcomes {
            assert_eq!(
                lease.holder.as_ref(),
                Some(winners[0]),
                "{holder} sees the winner"
            );
            assert!(lease.remaining > Duration::ZERO && lease.remaining <= MINUTE);
        }
        // The next round wants no row (rounds 0 and 1 of three) or an expired one (round 2).
        if round % 3 != 1 {
            assert!(f.store.release_lease(LEASE, winners[0]).await.unwrap());
        }
    }
}

/// The holder renews (and may shorten) its lease; another holder is refused meanwhile and
/// told who holds it until when.
async fn a_lease_is_renewed_by_its_holder_only(f: Fixture) {
    let before = local_now_ms();
    let a = f.store.acquire_lease(LEASE, "a", MINUTE).await.unwrap();
    assert!(a.granted);
    assert_eq!(a.name, LEASE);
    assert_eq!(a.holder.as_deref(), Some("a"));
    assert!(
        a.remaining > Duration::from_secs(50) && a.remaining <= MINUTE,
        "{a:?}"
    );
    // In milliseconds since 1970, by a clock near this one (same machine).
    let expires = a.expires_at_ms.expect("expiry");
    assert!(
        (expires - (before + 60_000)).abs() < 30_000,
        "{expires} vs {before}"
    );

    let b = f.store.acquire_lease(LEASE, "b", MINUTE).await.unwrap();
    assert!(!b.granted);
    assert_eq!(b.holder.as_deref(), Some("a"));
    assert_eq!(b.expires_at_ms, Some(expires));

    let renewed = f.store.acquire_lease(LEASE, "a", 2 * MINUTE).await.unwrap();
    assert!(renewed.granted);
    assert!(renewed.remaining > MINUTE, "{renewed:?}");
    assert!(renewed.expires_at_ms.unwrap() > expires);
    // Twice at once: a renewal in the same millisecond is still a renewal.
    let (x, y) = tokio::join!(
        f.store.acquire_lease(LEASE, "a", MINUTE),
        f.store.acquire_lease(LEASE, "a", MINUTE)
    );
    assert!(x.unwrap().granted && y.unwrap().granted);
    assert!(!granted(&f, LEASE, "b", MINUTE).await);
    // Another lease is another row.
    let other = f.store.acquire_lease("other", "b", MINUTE).await.unwrap();
    assert!(other.granted);
    // Holders compare byte for byte: "A" is not "a".
    assert!(!granted(&f, LEASE, "A", MINUTE).await);
}

/// Whether `holder` gets (or keeps) the lease `name` for `ttl`.
async fn granted(f: &Fixture, name: &str, holder: &str, ttl: Duration) -> bool {
    f.store
        .acquire_lease(name, holder, ttl)
        .await
        .unwrap()
        .granted
}

/// A lease that is not renewed expires by the database's clock, and then the next acquirer
/// gets it; the old holder's renewal is refused from then on.
async fn a_lease_is_taken_over_once_expired_by_the_database_clock(f: Fixture) {
    let short = Duration::from_millis(300);
    assert!(granted(&f, LEASE, "a", short).await);
    let taken_at = std::time::Instant::now();
    let deadline = taken_at + Duration::from_secs(20);
    let b = loop {
        let b = f.store.acquire_lease(LEASE, "b", MINUTE).await.unwrap();
        if b.granted {
            break b;
        }
        // Nobody, when it expired between the refused take and the read of who holds it.
        assert!(matches!(b.holder.as_deref(), Some("a") | None), "{b:?}");
        assert!(b.remaining <= short);
        assert!(std::time::Instant::now() < deadline, "never expired: {b:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    // Not before its time (by a clock near the database's: same machine, some slack).
    assert!(taken_at.elapsed() >= Duration::from_millis(200));
    assert_eq!(b.holder.as_deref(), Some("b"));
    let late = f.store.acquire_lease(LEASE, "a", MINUTE).await.unwrap();
    assert!(!late.granted);
    assert_eq!(late.holder.as_deref(), Some("b"));
    // The old holder cannot free what is no longer its own.
    assert!(!f.store.release_lease(LEASE, "a").await.unwrap());
    assert!(!granted(&f, LEASE, "c", MINUTE).await);
}

/// A graceful stop frees the lease at once; only the holder can.
async fn a_released_lease_is_free_at_once(f: Fixture) {
    assert!(granted(&f, LEASE, "a", MINUTE).await);
    assert!(!f.store.release_lease(LEASE, "b").await.unwrap());
    assert!(!granted(&f, LEASE, "b", MINUTE).await);
    assert!(f.store.release_lease(LEASE, "a").await.unwrap());
    assert!(!f.store.release_lease(LEASE, "a").await.unwrap());
    assert!(!f.store.release_lease("never-held", "a").await.unwrap());
    let b = f.store.acquire_lease(LEASE, "b", MINUTE).await.unwrap();
    assert!(b.granted);
    assert_eq!(b.holder.as_deref(), Some("b"));
}

/// A batch whose first query fails after its transaction began (here: the newest-id read, on
/// a table renamed away) stores nothing and leaves no pooled connection inside a transaction:
/// the write lock is free again, and every connection of the pool writes.
async fn a_batch_that_fails_under_the_lock_leaves_it_free(f: Fixture) {
    f.store.append(&[visitor(1, "before", None)]).await.unwrap();
    let rename = |from: &str, to: &str| format!("ALTER TABLE {from} RENAME TO {to}");
    f.db.execute(&rename("messages", "messages_away"))
        .await
        .unwrap();
    let err = f
        .store
        .append(&[visitor(1, "lost", None)])
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Database(_)), "{err:?}");
    f.db.execute(&rename("messages_away", "messages"))
        .await
        .unwrap();
    // More writers than the pool has connections, each taking the lock.
    let writers = (0..f.db.config().max_connections * 2).map(|i| {
        let store = f.store.clone();
        async move {
            store
                .append(&[visitor(2, &format!("after {i}"), None)])
                .await
        }
    });
    let done = tokio::time::timeout(Duration::from_secs(10), futures::future::join_all(writers))
        .await
        .expect("a connection kept the write lock");
    assert!(done.iter().all(Result::is_ok), "{done:?}");
    let stored: Vec<String> = f
        .store
        .messages_after(Scope::All, 0, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.text)
        .collect();
    assert_eq!(stored.len(), 1 + 2 * f.db.config().max_connections as usize);
    assert!(!stored.iter().any(|t| t == "lost"), "{stored:?}");
}

/// Canned replies: put creates or replaces by shortcut (text kept as written, stamped by the
/// database's clock), the list is in byte order and filtered by prefix exactly ('_' is no
/// wildcard), delete says whether there was one.
async fn canned_replies_are_kept_by_shortcut(f: Fixture) {
    let s = &f.store;
    assert!(s.canned_replies("").await.unwrap().is_empty());
    let text = "Hello! <b>We</b> answer within 5 min — привет 👋";
    for shortcut in ["greet", "greeting", "a_b", "axb", "-x", "0day", "agr"] {
        let put = s.put_canned_reply(shortcut, text, "alice").await.unwrap();
        assert_eq!((put.shortcut.as_str(), put.text.as_str()), (shortcut, text));
        assert_eq!(put.updated_by, "alice");
        assert!(
            (put.updated_at_ms - local_now_ms()).abs() < 60_000,
            "{put:?}"
        );
    }
    let all: Vec<String> = s
        .canned_replies("")
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.shortcut)
        .collect();
    assert_eq!(
        all,
        ["-x", "0day", "a_b", "agr", "axb", "greet", "greeting"]
    );
    assert_eq!(s.canned_reply_count("greet").await.unwrap(), (7, true));
    assert_eq!(s.canned_reply_count("gree").await.unwrap(), (7, false));
    let shortcuts = |replies: Vec<socketgram_core::domain::CannedReply>| -> Vec<String> {
        replies.into_iter().map(|r| r.shortcut).collect()
    };
    assert_eq!(
        shortcuts(s.canned_replies("gr").await.unwrap()),
        ["greet", "greeting"]
    );
    assert_eq!(shortcuts(s.canned_replies("a_").await.unwrap()), ["a_b"]);
    assert!(s.canned_replies("zz").await.unwrap().is_empty());

    let before = s.canned_replies("greet").await.unwrap()[0].clone();
    let replaced = s
        .put_canned_reply("greet", "Good morning", "bob")
        .await
        .unwrap();
    assert_eq!(replaced.text, "Good morning");
    assert_eq!(replaced.updated_by, "bob");
    assert!(replaced.updated_at_ms >= before.updated_at_ms);
    assert_eq!(
        s.canned_replies("").await.unwrap().len(),
        7,
        "replaced, not added"
    );

    assert!(s.delete_canned_reply("greet").await.unwrap());
    assert!(!s.delete_canned_reply("greet").await.unwrap());
    assert_eq!(
        shortcuts(s.canned_replies("gr").await.unwrap()),
        ["greeting"]
    );
}

/// Notes: kept per conversation in the order added, text as written, stamped by the
/// database's clock, and never among the conversation's messages.
async fn notes_are_kept_apart_from_messages(f: Fixture) {
    let s = &f.store;
    s.append(&[visitor(60, "hi", None)]).await.unwrap();
    let first = s
        .add_note(60, "alice", "VIP <b>customer</b> — привет", "k1")
        .await
        .unwrap();
    let second = s.add_note(60, "bob", "refund done", "k2").await.unwrap();
    s.add_note(61, "bob", "another conversation", "k3")
        .await
        .unwrap();
    assert!(second.id > first.id);
    assert_eq!(
        (
            first.conversation_id,
            first.admin_id.as_str(),
            first.text.as_str()
        ),
        (60, "alice", "VIP <b>customer</b> — привет")
    );
    assert!(
        (first.created_at_ms - local_now_ms()).abs() < 60_000,
        "{first:?}"
    );
    assert_eq!(s.notes(60).await.unwrap(), [first, second]);
    assert!(s.notes(62).await.unwrap().is_empty());
    let texts: Vec<String> = s
        .messages_after(Scope::All, 0, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.text)
        .collect();
    assert_eq!(texts, ["hi"], "notes are not messages");
    let err = s.add_note(60, "alice", "again", "k1").await.unwrap_err();
    assert!(
        matches!(err, StoreError::Constraint(_)),
        "a key is one note: {err:?}"
    );
}

/// An erasure takes a conversation's messages, their meta rows, notes, Telegram link and
/// summary, and nothing of any other conversation; its record says who, when and how much.
async fn an_erasure_leaves_only_its_record(f: Fixture) {
    let s = &f.store;
    s.append(&[
        visitor(70, "secret 1", Some("k1")),
        visitor(70, "secret 2", None),
    ])
    .await
    .unwrap();
    s.append(&[visitor(71, "keep me", None)]).await.unwrap();
    s.add_note(70, "alice", "private", "n1").await.unwrap();
    s.link_telegram(7_000_000_001, 70).await.unwrap();

    let erasure = s.erase_conversation(70, "alice").await.unwrap();
    assert_eq!(
        (
            erasure.conversation_id,
            erasure.erased_by.as_str(),
            erasure.messages,
            erasure.notes
        ),
        (70, "alice", 2, 1)
    );
    assert!((erasure.erased_at_ms - local_now_ms()).abs() < 60_000);
    assert!(s.conversation(70).await.unwrap().is_none());
    assert!(s.history(70, None, 10).await.unwrap().is_empty());
    assert!(s.notes(70).await.unwrap().is_empty());
    assert!(s.telegram_link(7_000_000_001).await.unwrap().is_none());
    let left: Vec<String> = s
        .messages_after(Scope::All, 0, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.text)
        .collect();
    assert_eq!(left, ["keep me"]);
    // As the PHP admin reads the tables: nothing of it left, in the legacy table or ours.
    for table in ["messages", "sg_message_meta"] {
        let n =
            f.db.fetch_text(&format!(
                "SELECT CAST(COUNT(*) AS CHAR(20)) FROM {table} WHERE cid = 70"
            ))
            .await
            .unwrap();
        assert_eq!(n.as_deref().map(str::trim), Some("0"), "{table}");
    }
    // A repeat of its client message id is a new message now, not a duplicate.
    let again = s.append(&[visitor(70, "back", Some("k1"))]).await.unwrap();
    assert!(!again[0].duplicate);
    assert_eq!(s.erasures(70).await.unwrap(), [erasure]);
}

/// Assignment: to an admin or nobody; a take only when nobody has it, naming the holder
/// otherwise; an unknown conversation is said so; the summary carries the assignee.
async fn a_conversation_belongs_to_one_admin_or_none(f: Fixture) {
    use socketgram_core::domain::Assigned;
    let s = &f.store;
    s.append(&[visitor(80, "help", None)]).await.unwrap();
    let assignee = async || s.conversation(80).await.unwrap().unwrap().assignee;
    assert_eq!(assignee().await, None);
    assert_eq!(
        s.assign(80, Some("alice"), true).await.unwrap(),
        Assigned::Done
    );
    assert_eq!(assignee().await.as_deref(), Some("alice"));
    assert_eq!(
        s.assign(80, Some("bob"), true).await.unwrap(),
        Assigned::Taken("alice".into()),
        "a take does not take it from alice"
    );
    assert_eq!(
        s.assign(80, Some("alice"), false).await.unwrap(),
        Assigned::Done,
        "again"
    );
    assert_eq!(
        s.assign(80, Some("bob"), false).await.unwrap(),
        Assigned::Done,
        "reassigned"
    );
    assert_eq!(assignee().await.as_deref(), Some("bob"));
    assert_eq!(s.assign(80, None, false).await.unwrap(), Assigned::Done);
    assert_eq!(assignee().await, None);
    assert_eq!(
        s.assign(81, Some("bob"), false).await.unwrap(),
        Assigned::Unknown
    );
    let listed = s
        .conversations(None, 10, &ConversationFilter::default())
        .await
        .unwrap();
    assert!(listed.iter().all(|c| c.assignee.is_none()), "{listed:?}");
    // Listings by assignee, paged as the others.
    s.append(&[visitor(82, "second", None)]).await.unwrap();
    s.assign(82, Some("carol"), false).await.unwrap();
    let ids = async |assignee: AssigneeFilter| -> Vec<u64> {
        let filter = ConversationFilter {
            assignee,
            statuses: Vec::new(),
            text: None,
        };
        s.conversations(None, 10, &filter)
            .await
            .unwrap()
            .iter()
            .map(|c| c.conversation_id)
            .collect()
    };
    assert_eq!(ids(AssigneeFilter::Admin("carol".into())).await, [82]);
    assert_eq!(ids(AssigneeFilter::Nobody).await, [80]);
    assert_eq!(ids(AssigneeFilter::Any).await, [82, 80]);
    assert!(ids(AssigneeFilter::Admin("dave".into())).await.is_empty());
    // Takes at once: exactly one gets it, every other is told who.
    let takes = ["a1", "a2", "a3", "a4", "a5", "a6"].map(|admin| {
        let store = f.store.clone();
        async move { (admin, store.assign(80, Some(admin), true).await.unwrap()) }
    });
    let outcomes = futures::future::join_all(takes).await;
    let winners: Vec<&str> = outcomes
        .iter()
        .filter(|(_, o)| *o == Assigned::Done)
        .map(|(a, _)| *a)
        .collect();
    assert_eq!(winners.len(), 1, "{outcomes:?}");
    for (_, outcome) in &outcomes {
        assert!(
            *outcome == Assigned::Done || *outcome == Assigned::Taken(winners[0].to_owned()),
            "{outcomes:?}"
        );
    }
}

async fn a_status_is_kept_and_a_visitor_message_reopens(f: Fixture) {
    let s = &f.store;
    for cid in [90, 91, 92, 93] {
        s.append(&[visitor(cid, "hello", None)]).await.unwrap();
    }
    let status = async |cid| s.conversation(cid).await.unwrap().unwrap().status;
    assert_eq!(status(90).await, Status::Open);
    let later = chrono::Utc::now().timestamp_millis() + 3_600_000;
    assert!(s.set_status(90, Status::Resolved).await.unwrap());
    assert!(s.set_status(91, Status::Pending).await.unwrap());
    assert!(
        s.set_status(92, Status::Snoozed { until_ms: later })
            .await
            .unwrap()
    );
    assert!(
        !s.set_status(99, Status::Resolved).await.unwrap(),
        "no such conversation"
    );
    assert_eq!(status(90).await, Status::Resolved);
    assert_eq!(status(91).await, Status::Pending);
    assert_eq!(status(92).await, Status::Snoozed { until_ms: later });
    let mut reopenable = s.reopenable().await.unwrap();
    reopenable.sort_by_key(|(cid, _)| *cid);
    assert_eq!(
        reopenable,
        [
            (90, Status::Resolved),
            (92, Status::Snoozed { until_ms: later })
        ]
    );
    let ids = async |statuses: &[StatusKind]| -> Vec<u64> {
        let filter = ConversationFilter {
            assignee: AssigneeFilter::Any,
            statuses: statuses.to_vec(),
            text: None,
        };
        let mut ids: Vec<u64> = s
            .conversations(None, 10, &filter)
            .await
            .unwrap()
            .iter()
            .map(|c| c.conversation_id)
            .collect();
        ids.sort_unstable();
        ids
    };
    assert_eq!(ids(&[StatusKind::Open]).await, [93]);
    assert_eq!(
        ids(&[StatusKind::Resolved, StatusKind::Snoozed]).await,
        [90, 92]
    );
    assert_eq!(ids(&[]).await, [90, 91, 92, 93]);
    // Support's reply changes nothing; the visitor writing reopens resolved and snoozed
    // conversations (in the statement that stores the message), never a pending one.
    add_admin(&f.db, "alice", "Alice", 2).await;
    s.append(&[admin(90, "alice", "done?")]).await.unwrap();
    assert_eq!(status(90).await, Status::Resolved);
    s.append(&[
        visitor(90, "not yet", None),
        visitor(91, "here", None),
        visitor(92, "me again", None),
    ])
    .await
    .unwrap();
    assert_eq!(status(90).await, Status::Open);
    assert_eq!(status(91).await, Status::Pending);
    assert_eq!(status(92).await, Status::Open);
    assert!(s.reopenable().await.unwrap().is_empty());
    // A snooze that ran out reads and lists as open before anything ends it; ending it only
    // works while it is that snooze.
    let past = chrono::Utc::now().timestamp_millis() - 1;
    s.set_status(93, Status::Snoozed { until_ms: past })
        .await
        .unwrap();
    assert_eq!(status(93).await, Status::Open);
    assert_eq!(ids(&[StatusKind::Open]).await, [90, 92, 93]);
    assert!(ids(&[StatusKind::Snoozed]).await.is_empty());
    assert_eq!(
        s.reopenable().await.unwrap(),
        [(93, Status::Snoozed { until_ms: past })],
        "a snooze still to be ended keeps its time"
    );
    assert!(!s.end_snooze(93, past + 5).await.unwrap(), "another snooze");
    assert!(s.end_snooze(93, past).await.unwrap());
    assert!(!s.end_snooze(93, past).await.unwrap(), "once");
    assert!(s.reopenable().await.unwrap().is_empty());
}

/// A visitor's context: kept before the conversation exists, each part replaced only when
/// given, read with the conversation (and its list), exactly as written (quotes, accents,
/// emoji), erased with it.
async fn a_visitor_context_is_kept_by_parts_and_erased(f: Fixture) {
    let s = &f.store;
    let page = Page {
        url: "https://shop.example/cart?item=7&q=\"x\"".into(),
        title: "Cart — Zoë's shop 🛒".into(),
        language: "de-AT".into(),
        time_zone: "Europe/Vienna".into(),
    };
    let first = s.put_visitor_context(80, None, Some(&page)).await.unwrap();
    assert_eq!(
        (first.verified.as_ref(), first.page.as_ref()),
        (None, Some(&page))
    );
    assert!((first.updated_at_ms - local_now_ms()).abs() < 60_000);
    assert_eq!(s.visitor_context(80).await.unwrap(), Some(first));
    assert!(
        s.conversation(80).await.unwrap().is_none(),
        "no conversation yet"
    );
    assert!(s.visitor_context(81).await.unwrap().is_none());

    let ann = Vouched {
        name: "Ann \"Q\" O'Brien".into(),
        email: "ann@example.com".into(),
        fields: [
            ("plan".to_owned(), "pro ✓".to_owned()),
            ("seats".to_owned(), "3".to_owned()),
        ]
        .into(),
    };
    let both = s.put_visitor_context(80, Some(&ann), None).await.unwrap();
    assert_eq!(
        (both.verified.as_ref(), both.page.as_ref()),
        (Some(&ann), Some(&page))
    );
    let moved = Page {
        url: "https://shop.example/checkout".into(),
        ..page.clone()
    };
    let now = s.put_visitor_context(80, None, Some(&moved)).await.unwrap();
    assert_eq!(
        (now.verified.as_ref(), now.page.as_ref()),
        (Some(&ann), Some(&moved))
    );

    s.append(&[visitor(80, "hello", None)]).await.unwrap();
    s.append(&[visitor(81, "no context", None)]).await.unwrap();
    let summary = s.conversation(80).await.unwrap().unwrap();
    assert_eq!(summary.context.as_ref(), Some(&now));
    let listed = s
        .conversations(None, 10, &ConversationFilter::default())
        .await
        .unwrap();
    let of = |cid| listed.iter().find(|c| c.conversation_id == cid).unwrap();
    assert_eq!(of(80).context.as_ref(), Some(&now));
    assert_eq!(of(81).context, None);

    s.erase_conversation(80, "alice").await.unwrap();
    assert!(s.visitor_context(80).await.unwrap().is_none());
    // A visitor who never wrote: the erasure takes the context alone.
    s.put_visitor_context(82, Some(&ann), None).await.unwrap();
    s.erase_conversation(82, "alice").await.unwrap();
    assert!(s.visitor_context(82).await.unwrap().is_none());
    assert!(s.visitor_context(81).await.unwrap().is_none());
}

/// What auto-assignment reads: each admin's open or pending conversations, not resolved or
/// snoozed ones, nor nobody's.
async fn open_assignments_are_counted_per_admin(f: Fixture) {
    let s = &f.store;
    for cid in 90..96 {
        s.append(&[visitor(cid, "hi", None)]).await.unwrap();
    }
    assert!(s.open_assigned_counts().await.unwrap().is_empty());
    for (cid, admin) in [
        (90, "alice"),
        (91, "alice"),
        (92, "alice"),
        (93, "bob"),
        (94, "bob"),
    ] {
        s.assign(cid, Some(admin), false).await.unwrap();
    }
    s.set_status(91, Status::Pending).await.unwrap();
    s.set_status(92, Status::Resolved).await.unwrap();
    s.set_status(
        94,
        Status::Snoozed {
            until_ms: local_now_ms() + 3_600_000,
        },
    )
    .await
    .unwrap();
    let counts = s.open_assigned_counts().await.unwrap();
    assert_eq!(
        counts,
        [("alice".to_owned(), 2), ("bob".to_owned(), 1)].into(),
        "95 is nobody's"
    );
}

/// Support staff's own password hashes: set, replaced, listed, never in the legacy columns,
/// removed with the admin (and kept when the admin cannot be removed).
async fn admin_passwords_are_kept_apart_and_go_with_the_admin(f: Fixture) {
    let s = &f.store;
    add_admin(&f.db, "alice", "Alice", 2).await;
    add_admin(&f.db, "bob", "Bob", 2).await;
    assert_eq!(s.admin_password("alice").await.unwrap(), None);
    assert!(s.admins_with_password().await.unwrap().is_empty());
    s.put_admin_password("alice", "$argon2id$v=19$first")
        .await
        .unwrap();
    s.put_admin_password("alice", "$argon2id$v=19$second")
        .await
        .unwrap();
    s.put_admin_password("bob", "$argon2id$v=19$bob")
        .await
        .unwrap();
    assert_eq!(
        s.admin_password("alice").await.unwrap().as_deref(),
        Some("$argon2id$v=19$second"),
        "replaced"
    );
    assert_eq!(s.admins_with_password().await.unwrap(), ["alice", "bob"]);
    // Bob signed a message: he stays, and so does his password.
    s.append(&[admin(7, "bob", "hello")]).await.unwrap();
    assert!(s.remove_admin("bob").await.is_err());
    assert!(s.admin_password("bob").await.unwrap().is_some());
    assert!(s.remove_admin("alice").await.unwrap());
    assert_eq!(s.admin_password("alice").await.unwrap(), None);
    assert_eq!(s.admins_with_password().await.unwrap(), ["bob"]);
}

async fn admin_sessions_are_kept_by_digest_and_end_by_admin(f: Fixture) {
    let s = &f.store;
    add_admin(&f.db, "alice", "Alice", 2).await;
    add_admin(&f.db, "bob", "Bob", 2).await;
    let now = local_now_ms();
    let session = |id: &str, admin: &str, created: i64, expires: i64| AdminSession {
        id: id.into(),
        admin_id: admin.into(),
        created_at_ms: created,
        expires_at_ms: expires,
    };
    let a1 = session(&"a".repeat(64), "alice", now, now + 60_000);
    let a2 = session(&"b".repeat(64), "alice", now, now + 60_000);
    let stale = session(&"c".repeat(64), "alice", now - 120_000, now - 60_000);
    let b1 = session(&"d".repeat(64), "bob", now, now + 60_000);
    for one in [&stale, &a1, &b1] {
        s.create_admin_session(one).await.unwrap();
    }
    assert_eq!(s.admin_session(&a1.id).await.unwrap(), Some(a1.clone()));
    assert_eq!(
        s.admin_session(&stale.id).await.unwrap(),
        None,
        "an expired session of the admin was forgotten when a new one began"
    );
    s.create_admin_session(&a2).await.unwrap();
    assert!(
        s.create_admin_session(&a2).await.is_err(),
        "an id is one session"
    );
    assert!(s.end_admin_session(&a1.id).await.unwrap());
    assert!(!s.end_admin_session(&a1.id).await.unwrap(), "ended once");
    assert_eq!(s.admin_session(&a1.id).await.unwrap(), None);
    s.create_admin_session(&a1).await.unwrap();
    assert_eq!(
        s.end_admin_sessions("alice").await.unwrap(),
        2,
        "everywhere"
    );
    assert_eq!(s.admin_session(&a2.id).await.unwrap(), None);
    assert_eq!(
        s.admin_session(&b1.id).await.unwrap(),
        Some(b1.clone()),
        "another admin's session stays"
    );
    // Removing an admin ends their sessions.
    assert!(s.remove_admin("bob").await.unwrap());
    assert_eq!(s.admin_session(&b1.id).await.unwrap(), None);
}

async fn conversations_are_found_by_id_vouched_name_or_text(f: Fixture) {
    let s = &f.store;
    s.append(&[visitor(310, "Where is my ORDER 100% shipped?", None)])
        .await
        .unwrap();
    s.append(&[visitor(311, "hello there", None)])
        .await
        .unwrap();
    s.append(&[visitor(3105, "a_b", None)]).await.unwrap();
    let ann = Vouched {
        name: "Ann O'Brien".into(),
        email: "ann@shop.example".into(),
        fields: Default::default(),
    };
    s.put_visitor_context(311, Some(&ann), None).await.unwrap();
    s.link_telegram(4_000_000_001, 311).await.unwrap();
    let found = async |text: &str| -> Vec<u64> {
        let filter = ConversationFilter {
            text: Some(text.to_owned()),
            ..Default::default()
        };
        let mut ids: Vec<u64> = s
            .conversations(None, 10, &filter)
            .await
            .unwrap()
            .iter()
            .map(|c| c.conversation_id)
            .collect();
        ids.sort_unstable();
        ids
    };
    assert_eq!(found("310").await, [310], "by id, exactly (not 3105)");
    assert_eq!(found("order").await, [310], "in a message, any case");
    assert_eq!(found("o'brien").await, [311], "by the vouched name");
    assert_eq!(found("shop.example").await, [311], "by the vouched email");
    assert_eq!(
        found("100%").await,
        [310],
        "% is a character, not a wildcard"
    );
    assert!(found("0% s").await == [310]);
    assert_eq!(
        found("a_b").await,
        [3105],
        "_ is a character, not a wildcard"
    );
    assert!(found("nothing like it").await.is_empty());
    assert_eq!(found("  ").await, [310, 311, 3105], "blank: no search");
    let linked = |cid| async move { s.conversation(cid).await.unwrap().unwrap().telegram_linked };
    assert!(linked(311).await, "a Telegram chat is linked");
    assert!(!linked(310).await);
}

fn file(cid: u64, name: &str, key: &str, created_at_ms: i64) -> Attachment {
    Attachment {
        id: 0,
        conversation_id: cid,
        message_id: None,
        name: name.into(),
        content_type: "image/png".into(),
        size: 2048,
        sha256: "ab".repeat(32),
        width: 64,
        height: 48,
        key: key.into(),
        thumbnail: Some(Thumbnail {
            key: format!("{key}.thumb"),
            content_type: "image/jpeg".into(),
            size: 99,
        }),
        uploaded_by: VISITOR_ADMIN_ID.into(),
        created_at_ms,
    }
}

/// An upload waits unattached; a message takes it (the column names it for the PHP admin,
/// the text reads back without that line, and every read brings the file); a repeat of the
/// message answers with it too; the sweep's queries see only what waits too long; an
/// erasure takes the rows with the conversation.
async fn files_wait_for_a_message_then_go_with_it(f: Fixture) {
    let a = f
        .store
        .add_attachment(&file(31, "a <b>.png", "aaaa01", 1_000))
        .await
        .unwrap();
    let b = f
        .store
        .add_attachment(&file(31, "b.png", "bbbb02", 2_000))
        .await
        .unwrap();
    let c = f
        .store
        .add_attachment(&file(32, "c.png", "cccc03", 3_000))
        .await
        .unwrap();
    assert!(a.id > 0 && a.id < b.id && b.id < c.id);
    assert_eq!(f.store.attachment(a.id).await.unwrap(), Some(a.clone()));
    assert_eq!(a.message_id, None);
    assert_eq!(f.store.attachment(c.id + 100).await.unwrap(), None);

    let mut with_files = visitor(31, "look", Some("k1"));
    with_files.attachments = vec![b.clone(), a.clone()];
    let mut file_only = visitor(32, "", None);
    file_only.attachments = vec![c.clone()];
    let out = f
        .store
        .append(&[with_files.clone(), file_only, visitor(31, "plain", None)])
        .await
        .unwrap();
    let m = &out[0].message;
    assert_eq!(m.text, "look");
    let names: Vec<_> = m.attachments.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(names, ["b.png", "a <b>.png"], "in the order given");
    assert_eq!(m.attachments[0].message_id, Some(m.id));
    let column =
        f.db.fetch_text(&format!("SELECT message FROM messages WHERE id = {}", m.id))
            .await
            .unwrap()
            .unwrap();
    assert_eq!(
        column, "look\n📎 b.png (2.0 KB)\n📎 a &lt;b&gt;.png (2.0 KB)",
        "the PHP admin reads the files' names"
    );
    let read = f.store.history(31, None, 10).await.unwrap();
    assert_eq!(
        read[1], *m,
        "read back as written: text without the lines, files in order"
    );
    assert!(read[0].attachments.is_empty());
    let after = f
        .store
        .messages_after(Scope::Conversation(32), 0, 10)
        .await
        .unwrap();
    assert_eq!(
        (after[0].text.as_str(), after[0].attachments.len()),
        ("", 1)
    );
    let summary = f.store.conversation(32).await.unwrap().unwrap();
    assert_eq!(summary.last_message.unwrap().attachments[0].name, "c.png");
    let repeat = f.store.append(&[with_files]).await.unwrap();
    assert!(repeat[0].duplicate);
    assert_eq!(repeat[0].message, *m, "a repeat answers with the files");
    assert_eq!(
        f.store.attachment(a.id).await.unwrap().unwrap().message_id,
        Some(m.id)
    );

    let d = f
        .store
        .add_attachment(&file(31, "d.png", "dddd04", 4_000))
        .await
        .unwrap();
    let old = f.store.unattached(5_000).await.unwrap();
    assert_eq!(
        old.iter().map(|a| a.id).collect::<Vec<_>>(),
        [d.id],
        "only what waits"
    );
    assert!(
        f.store.unattached(4_000).await.unwrap().is_empty(),
        "not before its time"
    );
    assert_eq!(
        f.store.delete_unattached(&[d.id, a.id]).await.unwrap(),
        [d.id]
    );
    let keys = f.store.attachment_keys().await.unwrap();
    let expected: std::collections::HashSet<String> = [
        "aaaa01",
        "aaaa01.thumb",
        "bbbb02",
        "bbbb02.thumb",
        "cccc03",
        "cccc03.thumb",
    ]
    .map(String::from)
    .into();
    assert_eq!(keys, expected);
    assert_eq!(f.store.conversation_attachments(31).await.unwrap().len(), 2);

    add_admin(&f.db, "alice", "Alice", 2).await;
    f.store.erase_conversation(31, "alice").await.unwrap();
    assert!(
        f.store
            .conversation_attachments(31)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(f.store.attachment(a.id).await.unwrap(), None);
    assert_eq!(f.store.conversation_attachments(32).await.unwrap().len(), 1);
}

/// A Telegram user is one admin and an admin one Telegram user (pairing again moves either);
/// a conversation has one topic per staff chat and a topic one conversation (a topic made anew
/// replaces the old); removing the admin or erasing the conversation takes theirs.
async fn staff_pair_with_telegram_users_and_conversations_with_topics(f: Fixture) {
    add_admin(&f.db, "alice", "Alice", 2).await;
    add_admin(&f.db, "bob", "Bob", 2).await;
    let big = 7_000_000_001_i64; // beyond 32 bits, as Telegram's ids are
    f.store
        .link_admin_telegram("alice", Some(big))
        .await
        .unwrap();
    assert_eq!(
        f.store.telegram_staff(big).await.unwrap().as_deref(),
        Some("alice")
    );
    f.store.link_admin_telegram("bob", Some(big)).await.unwrap();
    assert_eq!(
        f.store.telegram_staff(big).await.unwrap().as_deref(),
        Some("bob"),
        "the user moved to bob"
    );
    f.store
        .link_admin_telegram("alice", Some(42))
        .await
        .unwrap();
    f.store
        .link_admin_telegram("alice", Some(43))
        .await
        .unwrap();
    assert_eq!(
        f.store.telegram_staff(42).await.unwrap(),
        None,
        "alice moved to 43"
    );
    let users = f.store.admin_telegram_users().await.unwrap();
    assert_eq!(users.len(), 2);
    assert_eq!((users["alice"], users["bob"]), (43, big));
    f.store.link_admin_telegram("alice", None).await.unwrap();
    assert_eq!(f.store.telegram_staff(43).await.unwrap(), None);
    assert!(f.store.remove_admin("bob").await.unwrap());
    assert_eq!(
        f.store.telegram_staff(big).await.unwrap(),
        None,
        "gone with bob"
    );

    let chat = -1_000_000_000_123_i64;
    f.store.put_staff_topic(chat, 51, 7).await.unwrap();
    f.store.put_staff_topic(chat, 52, 8).await.unwrap();
    f.store.put_staff_topic(chat + 1, 51, 7).await.unwrap();
    assert_eq!(f.store.staff_topic(chat, 51).await.unwrap(), Some(7));
    assert_eq!(
        f.store.staff_topic_conversation(chat, 8).await.unwrap(),
        Some(52)
    );
    assert_eq!(f.store.staff_topic(chat, 53).await.unwrap(), None);
    f.store.put_staff_topic(chat, 51, 9).await.unwrap();
    assert_eq!(
        f.store.staff_topic(chat, 51).await.unwrap(),
        Some(9),
        "a topic made anew"
    );
    assert_eq!(
        f.store.staff_topic_conversation(chat, 7).await.unwrap(),
        None
    );
    assert_eq!(
        f.store.staff_topic(chat + 1, 51).await.unwrap(),
        Some(7),
        "another chat's"
    );
    f.store.append(&[visitor(51, "hi", None)]).await.unwrap();
    f.store.erase_conversation(51, "alice").await.unwrap();
    assert_eq!(
        f.store.staff_topic(chat, 51).await.unwrap(),
        None,
        "erased with it"
    );
    assert_eq!(f.store.staff_topic(chat, 52).await.unwrap(), Some(8));
}

/// Rows of `sg_telegram_link_tokens`, expired or not.
async fn link_token_rows(f: &Fixture) -> u64 {
    f.db.fetch_text("SELECT CAST(COUNT(*) AS CHAR(20)) FROM sg_telegram_link_tokens")
        .await
        .expect("count link tokens")
        .and_then(|n| n.trim().parse().ok())
        .expect("a count")
}

/// "Continue in Telegram" tokens, kept by digest: one is taken once, while it lasts by the
/// database's clock; a second take, an unknown token and an expired one find nothing. Expired
/// rows go when a token is made; an erasure takes its conversation's.
async fn link_tokens_are_taken_once_while_they_last(f: Fixture) {
    let s = &f.store;
    let id = |c: char| c.to_string().repeat(64);
    let before = local_now_ms();
    let expires = s
        .create_link_token(&id('a'), 90, Duration::from_secs(600))
        .await
        .unwrap();
    // In milliseconds since 1970, by a clock near this one (same machine).
    assert!(
        (expires - (before + 600_000)).abs() < 30_000,
        "{expires} vs {before}"
    );
    assert!(
        s.create_link_token(&id('a'), 91, MINUTE).await.is_err(),
        "an id is one token"
    );
    assert_eq!(s.take_link_token(&id('a')).await.unwrap(), Some(90));
    assert_eq!(
        s.take_link_token(&id('a')).await.unwrap(),
        None,
        "taken once"
    );
    assert_eq!(s.take_link_token(&id('z')).await.unwrap(), None, "unknown");

    // No time to live: expired at once, by the database's clock.
    s.create_link_token(&id('b'), 92, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(s.take_link_token(&id('b')).await.unwrap(), None, "expired");
    assert_eq!(
        link_token_rows(&f).await,
        1,
        "an expired token waits for the sweep"
    );
    s.create_link_token(&id('c'), 93, MINUTE).await.unwrap();
    assert_eq!(
        link_token_rows(&f).await,
        1,
        "making a token swept the expired one"
    );
    f.db.execute("UPDATE sg_telegram_link_tokens SET expires_at_ms = 1 WHERE cid = 93")
        .await
        .expect("expire the token");
    assert_eq!(s.take_link_token(&id('c')).await.unwrap(), None, "expired");
    s.create_link_token(&id('d'), 94, MINUTE).await.unwrap();
    assert_eq!(link_token_rows(&f).await, 1, "and again");

    s.append(&[visitor(94, "hello", None)]).await.unwrap();
    s.create_link_token(&id('e'), 95, MINUTE).await.unwrap();
    s.erase_conversation(94, "alice").await.unwrap();
    assert_eq!(s.take_link_token(&id('d')).await.unwrap(), None, "erased");
    assert_eq!(
        s.take_link_token(&id('e')).await.unwrap(),
        Some(95),
        "another's stays"
    );
}

/// Several redeems of one token at once: exactly one gets its conversation, every round.
async fn a_link_token_goes_to_exactly_one_of_concurrent_redeems(f: Fixture) {
    const TAKERS: usize = 8;
    for round in 0..5u64 {
        let id = format!("{round:064}");
        let conversation = 100 + round;
        f.store
            .create_link_token(&id, conversation, MINUTE)
            .await
            .unwrap();
        let start = Arc::new(tokio::sync::Barrier::new(TAKERS));
        let tasks: Vec<_> = (0..TAKERS)
            .map(|_| {
                let (store, start, id) = (f.store.clone(), start.clone(), id.clone());
                tokio::spawn(async move {
                    start.wait().await;
                    store.take_link_token(&id).await.expect("take")
                })
            })
            .collect();
        let mut taken = Vec::new();
        for t in tasks {
            taken.push(t.await.expect("task"));
        }
        let winners: Vec<u64> = taken.iter().flatten().copied().collect();
        assert_eq!(winners, [conversation], "round {round}: {taken:?}");
    }
    assert_eq!(link_token_rows(&f).await, 0);
}
