//! History as the legacy pages see it: the last 20 on subscribe, `take history` pages, the buttons, the page's "More msg" on a fresh connection, and the widget's resume.

use super::*;

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
