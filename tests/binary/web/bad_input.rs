//! Malformed, unreadable and flooding input: a clear refusal each, and the server keeps serving everyone else.

use super::*;

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
