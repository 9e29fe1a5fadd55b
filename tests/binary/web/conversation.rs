//! The legacy dialogue itself: a visitor page and the PHP admin exchanging messages, tabs, order, presence, what is stored where the PHP admin reads it (LEGACY.md §2-§6).

use super::*;

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
            attachment_ids: Vec::new(),
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

/// A visitor who only opens the page costs no database write (issue 13): subscribed, shown
/// online to the admin, its "More msg" answered with an empty page, a backend able to read
/// its (empty) history, and still no row of it anywhere. Its first message stores the
/// conversation, where the PHP admin and `ListConversations` find it.
async fn opening_the_page_writes_nothing(backend: Backend) {
    let Some((server, db)) = start(backend, ROOMY).await else {
        return;
    };
    let cid = 1901;
    let mut admin = admin(&server).await;
    let mut v = page(&server, cid).await;
    assert_eq!(admin.next_payload("online").await, json!({ "cid": "1901" }));
    v.expect_none("add history button", QUIET).await;
    // The legacy page asks for more on a fresh connection and shows it on the first.
    let mut more = visitor(&server, cid).await;
    more.emit(
        "take history",
        &[json!({ "username": cid.to_string(), "room": room(cid), "mid": 50_000_000 })],
    )
    .await;
    expect_page(&mut v, cid, &[], false).await;
    let mut chat = server.chat().await;
    let history = chat
        .history(pb::HistoryRequest {
            conversation_id: cid,
            ..Default::default()
        })
        .await
        .expect("an online visitor's conversation can be read before it is stored")
        .into_inner();
    assert!(history.messages.is_empty() && !history.has_more);
    let listed = async |chat: &mut socketgram_proto::client::ChatClient| {
        chat.list_conversations(pb::ListConversationsRequest::default())
            .await
            .expect("list conversations")
            .into_inner()
            .conversations
            .iter()
            .any(|c| c.conversation_id == cid)
    };
    assert!(!listed(&mut chat).await);
    let rows = async |table: &str| {
        db.fetch_text(&format!(
            "SELECT CAST(COUNT(*) AS CHAR) FROM {table} WHERE cid = {cid}"
        ))
        .await
        .expect("count rows")
        .and_then(|n| n.parse::<u64>().ok())
        .expect("a count")
    };
    assert_eq!(
        rows("sg_conversations").await,
        0,
        "nothing stored at subscribe"
    );
    assert_eq!(rows("messages").await, 0);

    say(&mut v, cid, "first words").await;
    let mine = v.next_payload("new message").await;
    assert_eq!(admin.next_payload("new message").await, mine);
    assert_eq!(
        rows("sg_conversations").await,
        1,
        "the first message stores it"
    );
    assert_eq!(rows("messages").await, 1);
    assert!(listed(&mut chat).await);
    stop(server, db).await;
}

#[tokio::test]
async fn opening_the_page_writes_nothing_sqlite() {
    opening_the_page_writes_nothing(Backend::Sqlite).await;
}

#[tokio::test]
async fn opening_the_page_writes_nothing_mariadb() {
    opening_the_page_writes_nothing(Backend::MySql).await;
}

#[tokio::test]
async fn opening_the_page_writes_nothing_postgres() {
    opening_the_page_writes_nothing(Backend::Postgres).await;
}

/// Support's private note (issue 14) never reaches the legacy pages: neither the visitor's
/// page nor the PHP admin's gets an event for it, while the message after it arrives as
/// before.
#[tokio::test]
async fn a_private_note_reaches_no_legacy_page() {
    let Some((server, db)) = start(Backend::Sqlite, ROOMY).await else {
        return;
    };
    db.execute("INSERT INTO adm_account (aid, name, lid) VALUES ('alice', 'Alice', 2)")
        .await
        .unwrap();
    let cid = 1951;
    let mut admin = admin(&server).await;
    let mut v = page(&server, cid).await;
    assert_eq!(admin.next_payload("online").await, json!({ "cid": "1951" }));
    say(&mut v, cid, "where is my order?").await;
    let asked = v.next_payload("new message").await;
    assert_eq!(admin.next_payload("new message").await, asked);
    let mut chat = server.chat().await;
    chat.add_note(pb::AddNoteRequest {
        conversation_id: cid,
        admin_id: "alice".into(),
        text: "Private: the courier lost it".into(),
    })
    .await
    .expect("a note");
    chat.send_message(pb::SendMessageRequest {
        attachment_ids: Vec::new(),
        conversation_id: cid,
        author: Some(pb::Author {
            kind: pb::AuthorKind::Admin as i32,
            admin_id: "alice".into(),
        }),
        text: "It is on its way".into(),
        client_msg_id: "r1".into(),
    })
    .await
    .expect("a reply");
    for (who, client) in [("visitor", &mut v), ("admin", &mut admin)] {
        let (event, payload) = client.next_any().await;
        assert_eq!(event, "new message", "{who}: {payload:?}");
        let shown = payload[0].to_string();
        assert!(shown.contains("It is on its way"), "{who}: {shown}");
        assert!(!shown.contains("courier"), "{who}: {shown}");
    }
    stop(server, db).await;
}

/// "Seen" (issue 14): the widget is told how far support has read its conversation
/// (`read {cid, reader: "support", mid}`), says how far the visitor has seen
/// (`mark read {mid}`, answered with both marks as stored), and a token admin is told both;
/// the legacy visitor page and the PHP admin get no new event. An admin socket cannot mark
/// a visitor's reading, and a `mark read` without its id is refused.
#[tokio::test]
async fn the_widget_and_support_see_what_the_other_has_read() {
    let Some((server, db)) = start(Backend::Sqlite, ROOMY).await else {
        return;
    };
    let cid = 1971;
    let Parties {
        mut alice,
        mut php,
        mut widget,
        mut legacy_tab,
    } = parties(&server, &db, cid).await;
    let ack = widget
        .emit_ack("new message", &[json!({ "message": "is it shipped?" })])
        .await;
    let question = ack["data"]["label"].as_u64().expect("the question's id");

    let mut chat = server.chat().await;
    chat.mark_read(pb::MarkReadRequest {
        conversation_id: cid,
        reader: pb::Reader::Support as i32,
        up_to_message_id: question,
    })
    .await
    .expect("support read it");
    assert_eq!(
        widget.next_payload("read").await,
        json!({ "cid": cid, "reader": "support", "mid": question }),
        "the widget can show \"Seen\" under the question"
    );
    let reply = chat
        .send_message(pb::SendMessageRequest {
            attachment_ids: Vec::new(),
            conversation_id: cid,
            author: Some(pb::Author {
                kind: pb::AuthorKind::Admin as i32,
                admin_id: "alice".into(),
            }),
            text: "yes, today".into(),
            client_msg_id: "r1".into(),
        })
        .await
        .expect("a reply")
        .into_inner()
        .message
        .expect("the reply")
        .id;
    let ack = widget
        .emit_ack("mark read", &[json!({ "mid": reply })])
        .await;
    assert_eq!(
        ack["data"],
        json!({ "visitor_read_up_to": reply, "support_read_up_to": question }),
        "{ack}"
    );
    // Support's own clients see both marks: the one support moved first, then the visitor's.
    let reads = [
        alice.next_payload("read").await,
        alice.next_payload("read").await,
    ];
    assert_eq!(
        reads,
        [
            json!({ "cid": cid, "reader": "support", "mid": question }),
            json!({ "cid": cid, "reader": "visitor", "mid": reply }),
        ]
    );
    legacy_tab.expect_none("read", QUIET).await;
    php.expect_none("read", QUIET).await;

    let ack = widget.emit_ack("mark read", &[json!({})]).await;
    assert_refusal(&ack["error"], "mark read", "invalid");
    let ack = php.emit_ack("mark read", &[json!({ "mid": reply })]).await;
    assert_refusal(&ack["error"], "mark read", "forbidden");
    stop(server, db).await;
}

/// Everyone around one conversation: a token admin (alice), the PHP admin, the widget
/// (subscribed) and a tab of the legacy visitor page.
struct Parties {
    alice: SioClient,
    php: SioClient,
    widget: SioClient,
    legacy_tab: SioClient,
}

async fn parties(server: &TestServer, db: &TestDb, cid: u64) -> Parties {
    add_admin(db, "alice", "Alice").await;
    let url = server.web_url();
    let token = TokenSigner::new(TOKEN_SECRET.as_bytes()).sign(TokenKind::Admin, "alice", 600);
    let alice = SioClient::connect_token("alice", &url, json!({ "admin_token": token })).await;
    let php = admin(server).await;
    let mut widget =
        SioClient::connect_token("widget", &url, json!({ "token": visitor_token(cid) })).await;
    let ack = widget.emit_ack("subscribe", &[json!({})]).await;
    assert_eq!(
        ack["data"],
        json!({ "conversation": cid, "typing_preview": false, "telegram_bot": null }),
        "subscribe accepted; drafts are not shown to support by default, no Telegram bot"
    );
    let legacy_tab = page(server, cid).await;
    Parties {
        alice,
        php,
        widget,
        legacy_tab,
    }
}

/// Typing both ways on the wire: the widget's `typing {chars}` reaches token admins (its
/// length, not its text), an admin's `typing:servadm` reaches the widget with the admin's
/// name; the legacy pages get nothing new. Keystrokes spend a budget of their own: a typing
/// flood is refused (rate_limited) and the visitor can still send a message.
#[tokio::test]
async fn typing_reaches_the_other_side_on_a_budget_of_its_own() {
    const LIMITS: &str = "events_per_second = 1\nevents_burst = 3\n\
                          ip_events_per_second = 1000\nip_events_burst = 1000\n\
                          connections_per_ip = 100\ntyping_per_second = 1\ntyping_burst = 5\n";
    let Some((server, db)) = start(Backend::Sqlite, LIMITS).await else {
        return;
    };
    let (cid, url) = (1972, server.web_url());
    let Parties {
        mut alice,
        mut php,
        mut widget,
        mut legacy_tab,
    } = parties(&server, &db, cid).await;

    let ack = widget
        .emit_ack("typing", &[json!({ "chars": 5, "draft": "hello" })])
        .await;
    assert_eq!(ack["data"], json!({ "typing": true }), "{ack}");
    assert_eq!(
        alice.next_payload("typing").await,
        json!({ "cid": cid, "typist": "visitor", "active": true, "chars": 5, "shown_for_ms": 6000 }),
        "support sees the draft's length, not its text"
    );
    let ack = alice
        .emit_ack("typing:servadm", &[json!({ "username": cid, "chars": 9 })])
        .await;
    assert!(ack.get("error").is_none(), "{ack}");
    assert_eq!(
        widget.next_payload("typing").await,
        json!({ "cid": cid, "typist": "support", "name": "Alice Acme", "active": true,
                "chars": 9, "shown_for_ms": 6000 }),
        "the widget can show \"Alice is typing\""
    );
    assert_eq!(
        alice.next_payload("typing").await["typist"],
        "support",
        "support's clients see support typing too"
    );
    legacy_tab.expect_none("typing", QUIET).await;
    php.expect_none("typing", QUIET).await;

    // A flood of keystrokes: refused once its own budget is spent, and the message budget is
    // still there.
    let mut refused = 0;
    for chars in 1..=12 {
        let ack = widget
            .emit_ack("typing", &[json!({ "chars": chars })])
            .await;
        if ack.get("error").is_some() {
            assert_refusal(&ack["error"], "typing", "rate_limited");
            refused += 1;
        }
    }
    assert!(refused >= 6, "{refused} of 12 refused");
    let ack = widget
        .emit_ack(
            "new message",
            &[json!({ "message": "sent after the flood" })],
        )
        .await;
    assert!(ack["data"]["label"].as_u64().is_some(), "{ack}");

    // Bad payloads and the wrong role: refused, nothing told (from another tab of the
    // visitor: its budget is its own).
    let mut tab =
        SioClient::connect_token("tab", &url, json!({ "token": visitor_token(cid) })).await;
    let ack = tab.emit_ack("typing", &[json!({ "chars": "x" })]).await;
    assert_refusal(&ack["error"], "typing", "invalid");
    let ack = php.emit_ack("typing", &[json!({ "chars": 1 })]).await;
    assert_refusal(&ack["error"], "typing", "forbidden");
    let ack = tab
        .emit_ack("typing:servadm", &[json!({ "username": cid, "chars": 1 })])
        .await;
    assert_refusal(&ack["error"], "typing:servadm", "forbidden");
    stop(server, db).await;
}

/// A token admin's socket makes that admin online for the core (`ListOnline.admins`, which
/// auto-assignment chooses among) until its last socket goes; the PHP admin's shared
/// parameter names nobody and counts for no one.
#[tokio::test]
async fn a_token_admin_is_online_while_connected() {
    let Some((server, db)) = start(Backend::Sqlite, ROOMY).await else {
        return;
    };
    add_admin(&db, "alice", "Alice").await;
    let url = server.web_url();
    let mut chat = server.chat().await;
    let mut until = async |want: &[&str]| {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let admins = chat
                .list_online(pb::ListOnlineRequest {})
                .await
                .unwrap()
                .into_inner()
                .admins;
            if admins == want {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "admins online: {admins:?}, want {want:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let token = TokenSigner::new(TOKEN_SECRET.as_bytes()).sign(TokenKind::Admin, "alice", 600);
    let mut php = admin(&server).await;
    let mut first = SioClient::connect_token("alice", &url, json!({ "admin_token": token })).await;
    let mut second =
        SioClient::connect_token("alice 2", &url, json!({ "admin_token": token })).await;
    until(&["alice"]).await;
    first.disconnect().await;
    second.disconnect().await;
    until(&[]).await;
    php.disconnect().await;
    stop(server, db).await;
}

/// With `[core] typing_preview`, the widget is told so when it subscribes (only then does it
/// send its draft), and token admins see the draft with the typing event.
#[tokio::test]
async fn with_typing_preview_support_sees_the_draft() {
    if !sio::available().await {
        return;
    }
    let Some(db) = TestDb::create(Backend::Sqlite).await else {
        return;
    };
    let toml = config(ROOMY).replace("[core]\n", "[core]\ntyping_preview = true\n");
    let server = TestServer::start(&db.url, &toml).await;
    add_admin(&db, "alice", "Alice").await;
    let (cid, url) = (1973, server.web_url());
    let token = TokenSigner::new(TOKEN_SECRET.as_bytes()).sign(TokenKind::Admin, "alice", 600);
    let mut alice = SioClient::connect_token("alice", &url, json!({ "admin_token": token })).await;
    let mut widget =
        SioClient::connect_token("widget", &url, json!({ "token": visitor_token(cid) })).await;
    let ack = widget.emit_ack("subscribe", &[json!({})]).await;
    assert_eq!(ack["data"]["typing_preview"], true, "{ack}");
    let ack = widget
        .emit_ack("typing", &[json!({ "chars": 11, "draft": "where is my" })])
        .await;
    assert!(ack.get("error").is_none(), "{ack}");
    let typing = alice.next_payload("typing").await;
    assert_eq!(
        (&typing["chars"], &typing["preview"]),
        (&json!(11), &json!("where is my")),
        "{typing}"
    );
    stop(server, db).await;
}

/// Support's workflow on the socket, for token admins: the conversation's state, take,
/// resolve (reopened by the visitor), a private note and canned replies; each change is told
/// to token admins live. The visitor never hears of notes or assignments, the legacy pages and
/// the PHP admin get nothing new, and bad requests are refused saying why.
#[tokio::test]
async fn support_works_a_conversation_from_the_socket() {
    let Some((server, db)) = start(Backend::Sqlite, ROOMY).await else {
        return;
    };
    let cid = 1974;
    let Parties {
        mut alice,
        mut php,
        mut widget,
        mut legacy_tab,
    } = parties(&server, &db, cid).await;
    let mut chat = server.chat().await;
    chat.put_canned_reply(pb::PutCannedReplyRequest {
        shortcut: "greet".into(),
        text: "Hello! How can we help?".into(),
        updated_by: "alice".into(),
    })
    .await
    .unwrap();
    let ack = widget
        .emit_ack("new message", &[json!({ "message": "my parcel?" })])
        .await;
    assert!(ack.get("error").is_none(), "{ack}");

    let ack = alice
        .emit_ack("canned replies:servadm", &[json!({ "prefix": "gr" })])
        .await;
    assert_eq!(
        ack["data"],
        json!({ "replies": { "greet": "Hello! How can we help?" } })
    );
    let ack = alice
        .emit_ack("conversation:servadm", &[json!({ "username": cid })])
        .await;
    assert_eq!(ack["data"]["status"], "open", "{ack}");
    assert!(ack["data"].get("assignee").is_none(), "{ack}");

    let ack = alice
        .emit_ack(
            "assign:servadm",
            &[json!({ "username": cid, "take": true })],
        )
        .await;
    assert_eq!(ack["data"]["assignee"], "alice", "{ack}");
    assert_eq!(
        alice.next_payload("assigned").await,
        json!({ "cid": cid, "assignee": "alice", "by": "alice" })
    );
    let ack = alice
        .emit_ack(
            "status:servadm",
            &[json!({ "username": cid, "status": "resolved" })],
        )
        .await;
    assert_eq!(ack["data"]["status"], "resolved", "{ack}");
    assert_eq!(
        alice.next_payload("status").await,
        json!({ "cid": cid, "status": "resolved", "cause": "support", "by": "alice" })
    );
    let ack = widget
        .emit_ack("new message", &[json!({ "message": "one more thing" })])
        .await;
    assert!(ack.get("error").is_none(), "{ack}");
    assert_eq!(
        alice.next_payload("status").await,
        json!({ "cid": cid, "status": "open", "cause": "visitor_message" })
    );
    let ack = alice
        .emit_ack(
            "note:servadm",
            &[json!({ "username": cid, "text": "VIP customer" })],
        )
        .await;
    assert_eq!(
        (&ack["data"]["admin"], &ack["data"]["text"]),
        (&json!("alice"), &json!("VIP customer")),
        "{ack}"
    );
    let told = alice.next_payload("note").await;
    assert_eq!(
        told, ack["data"],
        "token admins are told the note as stored"
    );

    // Bad requests change nothing and say why.
    for (event, payload, code) in [
        (
            "status:servadm",
            json!({ "username": cid, "status": "closed" }),
            "invalid",
        ),
        (
            "assign:servadm",
            json!({ "username": cid, "assignee": "mallory" }),
            "not_found",
        ),
        (
            "note:servadm",
            json!({ "username": cid, "text": " " }),
            "invalid",
        ),
        ("conversation:servadm", json!({}), "invalid"),
        (
            "canned replies:servadm",
            json!({ "prefix": "no spaces" }),
            "invalid",
        ),
    ] {
        let ack = alice.emit_ack(event, &[payload]).await;
        assert_refusal(&ack["error"], event, code);
    }
    let ack = widget
        .emit_ack(
            "note:servadm",
            &[json!({ "username": cid, "text": "mine" })],
        )
        .await;
    assert_refusal(&ack["error"], "note:servadm", "forbidden");
    let ack = php
        .emit_ack(
            "assign:servadm",
            &[json!({ "username": cid, "take": true })],
        )
        .await;
    assert_refusal(&ack["error"], "assign:servadm", "invalid");
    let ack = alice
        .emit_ack("conversation:servadm", &[json!({ "username": cid })])
        .await;
    assert_eq!(
        (&ack["data"]["assignee"], &ack["data"]["status"]),
        (&json!("alice"), &json!("open"))
    );

    for event in ["assigned", "status", "note"] {
        widget.expect_none(event, QUIET).await;
        legacy_tab.expect_none(event, QUIET).await;
        php.expect_none(event, QUIET).await;
    }
    stop(server, db).await;
}
