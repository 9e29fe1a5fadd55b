//! The MySQL backend adopts an existing legacy database of either variant (LEGACY.md §5) as it
//! is, and what it stores reads exactly as the unchanged PHP admin expects (§6).
//!
//! Each test builds its own database on the MariaDB server named by `SOCKETGRAM_TEST_MYSQL_URL`
//! (default: the local server) with the legacy system's own DDL, and drops it afterwards, also
//! when the test fails. Without a server the tests skip, except under `CI=true`.

use std::collections::BTreeSet;

use chrono::{Days, NaiveDateTime, TimeDelta, Timelike, Utc};
use socketgram_core::domain::ConversationFilter;
use socketgram_core::{
    config::Secret,
    domain::{NewMessage, Origin, Scope, TelegramMode, VISITOR_ADMIN_ID},
    store::{self, DatabaseConfig, Store, StoreError, text},
};
use sqlx::{Connection, MySqlConnection, Row};

const DEFAULT_URL: &str = "mysql://root@127.0.0.1:3306/test";

/// A uniquely named database on the test server, dropped when the value goes away.
struct LegacyDb {
    /// The server's URL without a database.
    server: String,
    name: String,
}

impl LegacyDb {
    /// A name for a database that does not exist yet; `None` (after reporting it) when the
    /// server cannot be reached.
    async fn reserve() -> Option<Self> {
        let configured =
            std::env::var("SOCKETGRAM_TEST_MYSQL_URL").unwrap_or_else(|_| DEFAULT_URL.into());
        let mut server = url::Url::parse(&configured).expect("SOCKETGRAM_TEST_MYSQL_URL is a URL");
        server.set_path("");
        let server = server.to_string();
        let reachable = tokio::time::timeout(std::time::Duration::from_secs(10), async {
            MySqlConnection::connect(&server).await?.close().await
        })
        .await;
        let why = match reachable {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e.to_string()),
            Err(_) => Some("connection timed out".to_owned()),
        };
        if let Some(why) = why {
            socketgram_tests::service_missing(
                &format!("MariaDB at {}", store::redact_url(&server)),
                &why,
            );
            return None;
        }
        let name = format!(
            "sg_legacy_{}_{:08x}",
            std::process::id(),
            rand::random::<u32>()
        );
        Some(Self { server, name })
    }

    /// A new, empty database.
    async fn create() -> Option<Self> {
        let db = Self::reserve().await?;
        let mut conn = MySqlConnection::connect(&db.server)
            .await
            .expect("connect to server");
        run(
            &mut conn,
            &format!("CREATE DATABASE {} CHARACTER SET utf8mb4", db.name),
        )
        .await;
        Some(db)
    }

    fn url(&self) -> String {
        let mut url = url::Url::parse(&self.server).expect("server URL");
        url.set_path(&format!("/{}", self.name));
        url.to_string()
    }

    fn config(&self) -> DatabaseConfig {
        DatabaseConfig {
            url: Secret::new(self.url()),
            max_connections: 4,
            acquire_timeout_ms: 5_000,
        }
    }

    /// A connection of its own, as the PHP admin has.
    async fn conn(&self) -> MySqlConnection {
        MySqlConnection::connect(&self.url())
            .await
            .expect("connect to the test database")
    }
}

impl Drop for LegacyDb {
    /// Runs after a failed assertion too: the server is shared between runs.
    fn drop(&mut self) {
        let server = self.server.clone();
        let sql = format!("DROP DATABASE IF EXISTS {}", self.name);
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(async {
                let mut conn = MySqlConnection::connect(&server).await?;
                sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                    .execute(&mut conn)
                    .await?;
                conn.close().await
            })
            .map_err(std::io::Error::other)
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("could not drop test database {}: {dropped:?}", self.name);
        }
    }
}

/// Runs SQL text (one or more statements) as a client outside the core would.
async fn run(conn: &mut MySqlConnection, sql: &str) {
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
        .execute(&mut *conn)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{sql}"));
}

/// The two legacy variants of LEGACY.md §5.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Variant {
    /// Visitors in `users`, with foreign keys from messages.cid and telegram.cid.
    WithUsers,
    /// Visitor credentials in an external database: no `users` table.
    AnotherDb,
}

/// The legacy system's DDL, as its dump has it.
fn legacy_schema(variant: Variant) -> &'static str {
    match variant {
        // InnoDB refuses a foreign key from a signed INT to users.id (INT UNSIGNED), so in this
        // variant telegram.cid is unsigned too.
        Variant::WithUsers => {
            "CREATE TABLE `users` (
               `id` int(10) unsigned NOT NULL AUTO_INCREMENT,
               `login_another_db` varchar(256) DEFAULT NULL,
               `password` varchar(256) NOT NULL,
               PRIMARY KEY (`id`)
             ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
             CREATE TABLE `adm_account` (
               `aid` varchar(20) NOT NULL,
               `name` varchar(20) NOT NULL,
               `lid` int(11) NOT NULL,
               PRIMARY KEY (`aid`)
             ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
             CREATE TABLE `messages` (
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
               KEY `cid` (`cid`),
               CONSTRAINT `messages_ibfk_1` FOREIGN KEY (`aid`) REFERENCES `adm_account` (`aid`),
               CONSTRAINT `messages_ibfk_2` FOREIGN KEY (`cid`) REFERENCES `users` (`id`)
             ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
             CREATE TABLE `telegram` (
               `id` int(10) unsigned NOT NULL AUTO_INCREMENT,
               `cid` int(10) unsigned DEFAULT NULL,
               `chat_id` int(10) NOT NULL,
               `status` int(11) NOT NULL,
               PRIMARY KEY (`id`),
               KEY `cid` (`cid`),
               CONSTRAINT `telegram_ibfk_1` FOREIGN KEY (`cid`) REFERENCES `users` (`id`)
             ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;"
        }
        Variant::AnotherDb => {
            "CREATE TABLE `adm_account` (
               `aid` varchar(20) NOT NULL,
               `name` varchar(20) NOT NULL,
               `lid` int(11) NOT NULL,
               PRIMARY KEY (`aid`)
             ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
             CREATE TABLE `messages` (
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
             ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
             CREATE TABLE `telegram` (
               `id` int(10) unsigned NOT NULL AUTO_INCREMENT,
               `cid` int(11) DEFAULT NULL,
               `chat_id` int(10) NOT NULL,
               `status` int(11) NOT NULL,
               PRIMARY KEY (`id`)
             ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;"
        }
    }
}

/// Now as the wall clock of UTC+3 shows it, whole seconds: what the core writes to `date`.
fn local_now() -> NaiveDateTime {
    (Utc::now().naive_utc() + TimeDelta::hours(3))
        .with_nanosecond(0)
        .expect("whole second")
}

fn sql_date(date: NaiveDateTime) -> String {
    date.format("%Y-%m-%d %H:%M:%S").to_string()
}

/// The rows the legacy server and the PHP admin left behind.
struct LegacyRows {
    /// Dates of messages 1..=3 (1, 2: cid 123 within the last 30 days; 3: cid 124, older).
    dates: [NaiveDateTime; 3],
}

async fn insert_legacy_rows(conn: &mut MySqlConnection, variant: Variant) -> LegacyRows {
    let now = local_now();
    let dates = [
        now.checked_sub_days(Days::new(3)).unwrap(),
        now.checked_sub_days(Days::new(3)).unwrap() + TimeDelta::seconds(75),
        now.checked_sub_days(Days::new(40)).unwrap(),
    ];
    if variant == Variant::WithUsers {
        run(
            conn,
            "INSERT INTO users (id, login_another_db, password) VALUES
               (123, NULL, '202cb962ac59075b964b07152d234b70'),
               (124, NULL, '698d51a19d8a121ce581499d7b701668');",
        )
        .await;
    }
    run(
        conn,
        &format!(
            "INSERT INTO adm_account (aid, name, lid) VALUES
               ('0', 'visitor', 0), ('alice', 'Alice', 2), ('root', 'Root', -1);
             INSERT INTO messages (cid, aid, direction, date, message, check_msg, check_msg_admin)
             VALUES (123, '0', 1, '{}', 'Hello, I need help', 1, 0),
                    (123, 'alice', 2, '{}', 'Tom & Jerry are here', 0, 1),
                    (124, '0', 1, '{}', 'An old question', 1, 0);
             INSERT INTO telegram (cid, chat_id, status) VALUES (123, 123456789, 1);",
            sql_date(dates[0]),
            sql_date(dates[1]),
            sql_date(dates[2]),
        ),
    )
    .await;
    LegacyRows { dates }
}

/// Every (table, column) of the database, and every named constraint.
async fn schema_of(conn: &mut MySqlConnection) -> (BTreeSet<(String, String)>, BTreeSet<String>) {
    let columns = sqlx::query(
        "SELECT TABLE_NAME AS t, COLUMN_NAME AS c FROM information_schema.COLUMNS \
         WHERE TABLE_SCHEMA = DATABASE()",
    )
    .fetch_all(&mut *conn)
    .await
    .unwrap()
    .iter()
    .map(|r| (r.get::<String, _>("t"), r.get::<String, _>("c")))
    .collect();
    let constraints = sqlx::query(
        "SELECT CONSTRAINT_NAME AS n FROM information_schema.TABLE_CONSTRAINTS \
         WHERE TABLE_SCHEMA = DATABASE()",
    )
    .fetch_all(&mut *conn)
    .await
    .unwrap()
    .iter()
    .map(|r| r.get::<String, _>("n"))
    .collect();
    (columns, constraints)
}

/// The data of the legacy tables, to compare before and after the migration.
async fn legacy_data(conn: &mut MySqlConnection) -> Vec<String> {
    let mut out = Vec::new();
    for row in sqlx::query("SELECT id, cid, aid, direction, date, message, check_msg, check_msg_admin FROM messages ORDER BY id")
        .fetch_all(&mut *conn)
        .await
        .unwrap()
    {
        out.push(format!(
            "m {} {} {} {} {} {:?} {} {}",
            row.get::<u32, _>("id"),
            row.get::<u32, _>("cid"),
            row.get::<String, _>("aid"),
            row.get::<i32, _>("direction"),
            row.get::<NaiveDateTime, _>("date"),
            row.get::<Option<String>, _>("message"),
            row.get::<i32, _>("check_msg"),
            row.get::<i32, _>("check_msg_admin"),
        ));
    }
    for row in sqlx::query("SELECT aid, name, lid FROM adm_account ORDER BY aid")
        .fetch_all(&mut *conn)
        .await
        .unwrap()
    {
        out.push(format!(
            "a {} {} {}",
            row.get::<String, _>("aid"),
            row.get::<String, _>("name"),
            row.get::<i32, _>("lid")
        ));
    }
    for row in sqlx::query(
        "SELECT id, CAST(cid AS SIGNED) AS cid, chat_id, status FROM telegram ORDER BY id",
    )
    .fetch_all(&mut *conn)
    .await
    .unwrap()
    {
        out.push(format!(
            "t {} {:?} {} {}",
            row.get::<u32, _>("id"),
            row.get::<Option<i64>, _>("cid"),
            row.get::<i64, _>("chat_id"),
            row.get::<i32, _>("status"),
        ));
    }
    out
}

/// A message as the PHP admin reads it from `messages`.
#[derive(Debug, PartialEq)]
struct RawMessage {
    cid: u32,
    aid: String,
    direction: i32,
    date: NaiveDateTime,
    message: Option<String>,
    check_msg: i32,
    check_msg_admin: i32,
}

async fn raw_message(conn: &mut MySqlConnection, id: u64) -> RawMessage {
    let row = sqlx::query(
        "SELECT cid, aid, direction, date, message, check_msg, check_msg_admin \
         FROM messages WHERE id = ?",
    )
    .bind(id)
    .fetch_one(&mut *conn)
    .await
    .unwrap();
    RawMessage {
        cid: row.get("cid"),
        aid: row.get("aid"),
        direction: row.get("direction"),
        date: row.get("date"),
        message: row.get("message"),
        check_msg: row.get("check_msg"),
        check_msg_admin: row.get("check_msg_admin"),
    }
}

async fn count_messages(conn: &mut MySqlConnection) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM messages")
        .fetch_one(conn)
        .await
        .unwrap()
}

async fn migrated_store(db: &LegacyDb) -> std::sync::Arc<dyn Store> {
    let store = store::connect(&db.config()).await.expect("connect");
    store.migrate().await.expect("migrate");
    store.migrate().await.expect("migrate again (idempotent)");
    store
}

async fn adopts(variant: Variant) {
    let Some(db) = LegacyDb::create().await else {
        return;
    };
    let mut php = db.conn().await;
    run(&mut php, legacy_schema(variant)).await;
    let legacy = insert_legacy_rows(&mut php, variant).await;
    let (columns_before, constraints_before) = schema_of(&mut php).await;
    let data_before = legacy_data(&mut php).await;

    let store = migrated_store(&db).await;
    // A second process (another core replica) migrates the same database again.
    let other = store::connect(&db.config()).await.expect("connect");
    other.migrate().await.expect("migrate from a second store");
    other.close().await;

    // Nothing dropped, renamed or rewritten.
    let (columns_after, constraints_after) = schema_of(&mut php).await;
    assert!(
        columns_after.is_superset(&columns_before),
        "a legacy column went away"
    );
    assert!(
        constraints_after.is_superset(&constraints_before),
        "a legacy constraint went away"
    );
    assert_eq!(
        legacy_data(&mut php).await,
        data_before,
        "legacy rows changed"
    );
    let tables: BTreeSet<String> = columns_after.iter().map(|(t, _)| t.clone()).collect();
    assert_eq!(
        tables.contains("users"),
        variant == Variant::WithUsers,
        "users table: {tables:?}"
    );
    let chat_id_type: String = sqlx::query_scalar(
        "SELECT DATA_TYPE FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() \
         AND TABLE_NAME = 'telegram' AND COLUMN_NAME = 'chat_id'",
    )
    .fetch_one(&mut php)
    .await
    .unwrap();
    assert_eq!(chat_id_type, "bigint");

    // The legacy messages read back through the store, dates unchanged.
    assert_eq!(store.last_message_id().await.unwrap(), 3);
    let history = store.history(123, None, 10).await.unwrap();
    let summary: Vec<_> = history
        .iter()
        .map(|m| {
            (
                m.id,
                m.origin,
                m.admin_id.as_str(),
                m.text.as_str(),
                m.local_date,
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (
                2,
                Origin::Admin,
                "alice",
                "Tom & Jerry are here",
                legacy.dates[1]
            ),
            (
                1,
                Origin::Visitor,
                VISITOR_ADMIN_ID,
                "Hello, I need help",
                legacy.dates[0]
            ),
        ]
    );
    let old = store
        .messages_after(Scope::Conversation(124), 0, 10)
        .await
        .unwrap();
    assert_eq!(old.len(), 1);
    assert_eq!(old[0].local_date, legacy.dates[2]);
    // Conversations were backfilled from the messages.
    let conversations = store
        .conversations(None, 10, &ConversationFilter::default())
        .await
        .unwrap();
    let order: Vec<_> = conversations
        .iter()
        .map(|c| (c.conversation_id, c.last_message.as_ref().map(|m| m.id)))
        .collect();
    assert_eq!(order, [(124, Some(3)), (123, Some(2))]);
    assert_eq!(
        store
            .admins()
            .await
            .unwrap()
            .iter()
            .map(|a| a.admin_id.as_str())
            .collect::<Vec<_>>(),
        ["alice", "root"]
    );
    // The legacy link, with the new column's default.
    let link = store
        .telegram_link(123456789)
        .await
        .unwrap()
        .expect("legacy link");
    assert_eq!(
        (link.conversation_id, link.mode, link.active),
        (123, TelegramMode::Writing, true)
    );

    // New messages land in `messages` exactly as the PHP admin expects.
    let when = local_now();
    let typed = "<b>hi</b> & 'bye'";
    let out = store
        .append(&[
            NewMessage {
                attachments: Vec::new(),
                conversation_id: 123,
                origin: Origin::Visitor,
                admin_id: VISITOR_ADMIN_ID.into(),
                text: typed.into(),
                client_msg_id: Some("web-1".into()),
                local_date: when,
            },
            NewMessage {
                attachments: Vec::new(),
                conversation_id: 123,
                origin: Origin::Admin,
                admin_id: "alice".into(),
                text: "Answer".into(),
                client_msg_id: None,
                local_date: when + TimeDelta::seconds(1),
            },
            NewMessage {
                attachments: Vec::new(),
                conversation_id: 124,
                origin: Origin::Telegram,
                admin_id: VISITOR_ADMIN_ID.into(),
                text: "from the bot".into(),
                client_msg_id: None,
                local_date: when + TimeDelta::seconds(2),
            },
        ])
        .await
        .unwrap();
    let ids: Vec<u64> = out.iter().map(|a| a.message.id).collect();
    assert_eq!(ids, [4, 5, 6], "ids continue the legacy sequence");
    assert_eq!(
        raw_message(&mut php, ids[0]).await,
        RawMessage {
            cid: 123,
            aid: "0".into(),
            direction: 1,
            date: when,
            message: Some("&lt;b&gt;hi&lt;/b&gt; &amp; &#x27;bye&#x27;".into()),
            check_msg: 1,
            check_msg_admin: 0,
        }
    );
    assert_eq!(
        raw_message(&mut php, ids[0]).await.message,
        Some(text::to_column(typed))
    );
    assert_eq!(
        raw_message(&mut php, ids[1]).await,
        RawMessage {
            cid: 123,
            aid: "alice".into(),
            direction: 2,
            date: when + TimeDelta::seconds(1),
            message: Some("Answer".into()),
            check_msg: 0,
            check_msg_admin: 1,
        }
    );
    assert_eq!(
        raw_message(&mut php, ids[2]).await,
        RawMessage {
            cid: 124,
            aid: "0".into(),
            direction: 1,
            date: when + TimeDelta::seconds(2),
            message: Some("from the bot".into()),
            check_msg: 1,
            check_msg_admin: 0,
        }
    );
    assert_eq!(
        store.history(123, None, 1).await.unwrap()[0],
        out[1].message
    );

    // The PHP admin's own queries (LEGACY.md §6).
    let recent: Vec<u32> = sqlx::query_scalar(
        "SELECT DISTINCT cid FROM messages WHERE date >= CURRENT_DATE - INTERVAL 30 DAY ORDER BY cid",
    )
    .fetch_all(&mut php)
    .await
    .unwrap();
    assert_eq!(recent, [123, 124]);
    let listing: Vec<(u32, u32, i32, NaiveDateTime, String, String)> = sqlx::query(
        "SELECT m.id, m.cid, m.direction, m.date, m.message, a.name FROM messages m \
         JOIN adm_account a ON a.aid = m.aid \
         WHERE m.date >= CURRENT_DATE - INTERVAL 30 DAY ORDER BY m.cid, m.id",
    )
    .fetch_all(&mut php)
    .await
    .unwrap()
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
    let expected: Vec<(u32, u32, i32, NaiveDateTime, String, String)> = vec![
        (
            1,
            123,
            1,
            legacy.dates[0],
            "Hello, I need help".into(),
            "visitor".into(),
        ),
        (
            2,
            123,
            2,
            legacy.dates[1],
            "Tom & Jerry are here".into(),
            "Alice".into(),
        ),
        (4, 123, 1, when, text::to_column(typed), "visitor".into()),
        (
            5,
            123,
            2,
            when + TimeDelta::seconds(1),
            "Answer".into(),
            "Alice".into(),
        ),
        (
            6,
            124,
            1,
            when + TimeDelta::seconds(2),
            "from the bot".into(),
            "visitor".into(),
        ),
    ];
    assert_eq!(listing, expected);

    // Today's Telegram ids do not fit the legacy INT(10).
    let big = 7_000_000_000_i64;
    store.link_telegram(big, 124).await.unwrap();
    let link = store.telegram_link(big).await.unwrap().expect("linked");
    assert_eq!(
        (link.chat_id, link.conversation_id, link.active),
        (big, 124, true)
    );
    let raw_chat: i64 = sqlx::query_scalar("SELECT chat_id FROM telegram WHERE cid = 124")
        .fetch_one(&mut php)
        .await
        .unwrap();
    assert_eq!(raw_chat, big);
    assert!(
        store.telegram_link(123456789).await.unwrap().is_some(),
        "the other link stays"
    );

    // A visitor the legacy `users` table does not know.
    let stranger = NewMessage {
        attachments: Vec::new(),
        conversation_id: 999,
        origin: Origin::Visitor,
        admin_id: VISITOR_ADMIN_ID.into(),
        text: "who am I".into(),
        client_msg_id: Some("x".into()),
        local_date: when,
    };
    match variant {
        Variant::WithUsers => {
            let err = store.append(&[stranger]).await.unwrap_err();
            assert!(matches!(err, StoreError::Constraint(_)), "{err:?}");
            assert_eq!(count_messages(&mut php).await, 6, "nothing stored");
            assert!(store.conversation(999).await.unwrap().is_none());
            let meta: i64 =
                sqlx::query_scalar("SELECT COUNT(*) FROM sg_message_meta WHERE cid = 999")
                    .fetch_one(&mut php)
                    .await
                    .unwrap();
            assert_eq!(meta, 0);
        }
        // Visitors live in another database: any id is a visitor.
        Variant::AnotherDb => {
            store.append(&[stranger]).await.unwrap();
            assert_eq!(count_messages(&mut php).await, 7);
        }
    }

    // Migrating once more after the server has written leaves everything as it is.
    store.migrate().await.unwrap();
    assert_eq!(
        store
            .conversation(123)
            .await
            .unwrap()
            .unwrap()
            .last_message
            .unwrap()
            .id,
        5
    );

    store.close().await;
    php.close().await.unwrap();
}

#[tokio::test]
async fn adopts_the_with_users_variant() {
    adopts(Variant::WithUsers).await;
}

#[tokio::test]
async fn adopts_the_another_db_variant() {
    adopts(Variant::AnotherDb).await;
}

/// An empty database gets the legacy schema, `users` included, without a foreign key on
/// messages.cid.
#[tokio::test]
async fn creates_the_legacy_schema_in_an_empty_database() {
    let Some(db) = LegacyDb::create().await else {
        return;
    };
    let store = migrated_store(&db).await;
    let mut php = db.conn().await;
    let (columns, _) = schema_of(&mut php).await;
    for (table, column) in [
        ("users", "password"),
        ("messages", "check_msg_admin"),
        ("adm_account", "lid"),
        ("telegram", "active"),
        ("sg_conversations", "visitor_read_id"),
        ("sg_message_meta", "client_msg_id"),
        ("sg_write_lock", "id"),
    ] {
        assert!(
            columns.contains(&(table.into(), column.into())),
            "{table}.{column} missing"
        );
    }
    let foreign_keys: Vec<(String, String)> = sqlx::query(
        "SELECT TABLE_NAME AS t, COLUMN_NAME AS c FROM information_schema.KEY_COLUMN_USAGE \
         WHERE TABLE_SCHEMA = DATABASE() AND REFERENCED_TABLE_NAME IS NOT NULL ORDER BY t, c",
    )
    .fetch_all(&mut php)
    .await
    .unwrap()
    .iter()
    .map(|r| (r.get("t"), r.get("c")))
    .collect();
    assert_eq!(foreign_keys, [("messages".to_owned(), "aid".to_owned())]);
    let placeholder: String = sqlx::query_scalar("SELECT name FROM adm_account WHERE aid = '0'")
        .fetch_one(&mut php)
        .await
        .unwrap();
    assert_eq!(placeholder, "");
    let out = store
        .append(&[NewMessage {
            attachments: Vec::new(),
            conversation_id: 4_000_000_000,
            origin: Origin::Visitor,
            admin_id: VISITOR_ADMIN_ID.into(),
            text: "hi".into(),
            client_msg_id: None,
            local_date: local_now(),
        }])
        .await
        .unwrap();
    assert_eq!(out[0].message.id, 1);
    assert_eq!(raw_message(&mut php, 1).await.cid, 4_000_000_000);
    store.close().await;
    php.close().await.unwrap();
}

/// A URL naming a database that does not exist yet (with the `mariadb:` scheme): the store
/// creates it, utf8mb4.
#[tokio::test]
async fn creates_a_missing_database() {
    let Some(db) = LegacyDb::reserve().await else {
        return;
    };
    let mut config = db.config();
    let url = config.url.expose().replacen("mysql:", "mariadb:", 1);
    config.url = Secret::new(url);
    let store = store::connect(&config)
        .await
        .expect("connect creates the database");
    store.migrate().await.unwrap();
    let mut php = db.conn().await;
    let charset: String = sqlx::query_scalar(
        "SELECT DEFAULT_CHARACTER_SET_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = DATABASE()",
    )
    .fetch_one(&mut php)
    .await
    .unwrap();
    assert_eq!(charset, "utf8mb4");
    assert_eq!(store.last_message_id().await.unwrap(), 0);
    store.close().await;
    php.close().await.unwrap();
}

/// Support writes first (an admin greets a visitor who never wrote): on the "with users"
/// variant the reply needs the visitor's `users` row (messages.cid references it), and a
/// reply to an id with none is refused clearly with nothing stored; without that foreign key
/// any id in range opens the conversation.
async fn support_writes_first(variant: Variant) {
    use socketgram_core::{
        Core, CoreError,
        chat::{Author, SendMessage},
        config::CoreConfig,
    };
    let Some(db) = LegacyDb::create().await else {
        return;
    };
    let mut php = db.conn().await;
    run(&mut php, legacy_schema(variant)).await;
    insert_legacy_rows(&mut php, variant).await;
    if variant == Variant::WithUsers {
        run(
            &mut php,
            "INSERT INTO users (id, login_another_db, password) VALUES (125, NULL, 'x');",
        )
        .await;
    }
    let store = migrated_store(&db).await;
    let shutdown = tokio_util::sync::CancellationToken::new();
    let core = Core::start(store.clone(), &CoreConfig::default(), shutdown.clone())
        .await
        .expect("core starts");
    let hello = |cid| SendMessage {
        attachments: Vec::new(),
        conversation_id: cid,
        author: Author::Admin("alice".into()),
        text: "Hello! Can we help?".into(),
        client_msg_id: None,
    };
    let before = count_messages(&mut php).await;

    // 125 never wrote; on the "with users" variant it is a known user.
    let cid = if variant == Variant::WithUsers {
        125
    } else {
        777
    };
    let stored = core.send(hello(cid)).await.expect("support writes first");
    let row = raw_message(&mut php, stored.message.id).await;
    assert_eq!(
        (u64::from(row.cid), row.aid.as_str(), row.direction),
        (cid, "alice", 2)
    );
    assert_eq!(
        store
            .conversation(cid)
            .await
            .unwrap()
            .map(|c| c.conversation_id),
        Some(cid)
    );

    let unknown = core.send(hello(999_999)).await;
    if variant == Variant::WithUsers {
        match unknown {
            Err(e @ CoreError::NoSuchVisitor(999_999)) => {
                assert!(e.to_string().contains("users"), "{e}")
            }
            other => panic!("a visitor without a users row: {other:?}"),
        }
        assert_eq!(
            count_messages(&mut php).await,
            before + 1,
            "nothing half stored"
        );
        assert!(store.conversation(999_999).await.unwrap().is_none());
    } else {
        unknown.expect("no foreign key: any id in range");
        assert_eq!(count_messages(&mut php).await, before + 2);
    }
    shutdown.cancel();
    store.close().await;
    php.close().await.unwrap();
}

#[tokio::test]
async fn support_writes_first_with_users() {
    support_writes_first(Variant::WithUsers).await;
}

#[tokio::test]
async fn support_writes_first_another_db() {
    support_writes_first(Variant::AnotherDb).await;
}
