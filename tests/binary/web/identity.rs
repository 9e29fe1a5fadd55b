//! Who a socket is: forged payload identities, role events from the wrong role, bad handshakes, per-admin tokens (LEGACY.md §9.1-§9.3).

use super::*;

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

/// A `v2` visitor token as a host site signs it by the README's recipe, with its own HMAC code
/// (not Socketgram's signer): `v2.<cid>.<expiry>.<base64url claims>.<hex hmac-sha256>`.
fn host_site_token(cid: u64, claims: &str) -> String {
    use base64::Engine as _;
    use hmac::{KeyInit, Mac};
    let expiry = Utc::now().timestamp() + 600;
    let claims = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(claims);
    let body = format!("v2.{cid}.{expiry}.{claims}");
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(TOKEN_SECRET.as_bytes()).unwrap();
    mac.update(body.as_bytes());
    format!("{body}.{}", hex::encode(mac.finalize().into_bytes()))
}

/// The next visitor context support is told of, if one comes within `within`.
async fn next_context(
    events: &mut tonic::Streaming<pb::Event>,
    within: Duration,
) -> Option<pb::VisitorContextChanged> {
    tokio::time::timeout(within, async {
        loop {
            let event = events.message().await.expect("events").expect("open");
            if let Some(pb::event::Kind::VisitorContext(c)) = event.kind {
                return c;
            }
        }
    })
    .await
    .ok()
}

/// Visitor context on the wire: a signed `v2` token's claims reach support as verified, the
/// page the widget reports on `subscribe` as unverified, each stored once (the same page again
/// is no news); a page out of bounds is refused naming its field, a forged, unknown or
/// oversized token at the handshake; the legacy page brings no context at all.
#[tokio::test]
async fn a_signed_token_vouches_and_the_page_reports() {
    let Some((server, db)) = start(Backend::Sqlite, ROOMY).await else {
        return;
    };
    let url = server.web_url();
    let mut chat = server.chat().await;
    let mut events = support_events(&mut chat, "").await;
    let claims =
        r#"{"name":"Ann O'Brien","email":"ann@example.com","fields":{"plan":"pro","seats":3}}"#;
    let token = host_site_token(905, claims);
    let cart = json!({
        "url": "https://shop.example/cart?x=1",
        "title": "Cart — Shop",
        "language": "en-GB",
        "time_zone": "Europe/London"
    });

    add_admin(&db, "alice", "Alice").await;
    let admin_token =
        TokenSigner::new(TOKEN_SECRET.as_bytes()).sign(TokenKind::Admin, "alice", 600);
    let mut alice =
        SioClient::connect_token("alice", &url, json!({ "admin_token": admin_token })).await;

    // Refused pages change nothing; the socket still subscribes after.
    let mut widget = SioClient::connect_token("widget", &url, json!({ "token": token })).await;
    for (bad, says) in [
        (json!({ "url": "javascript:alert(1)" }), "page.url"),
        (
            json!({ "url": format!("https://x.example/{}", "a".repeat(3000)) }),
            "at most 2048",
        ),
        (json!({ "title": "a\u{0}b" }), "page.title"),
        (json!({ "zone": "Europe/London" }), "zone"),
    ] {
        let ack = widget
            .emit_ack("subscribe", &[json!({ "page": bad })])
            .await;
        assert_eq!(ack["error"]["code"], "invalid", "{bad}: {ack}");
        let message = ack["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(says),
            "{bad}: {message:?} mentions {says:?}"
        );
    }
    assert!(
        next_context(&mut events, QUIET).await.is_none(),
        "nothing stored"
    );
    let ack = widget
        .emit_ack("subscribe", &[json!({ "page": cart })])
        .await;
    assert!(ack.get("error").is_none(), "subscribe accepted: {ack}");
    let told = next_context(&mut events, Duration::from_secs(10))
        .await
        .expect("told");
    assert_eq!(told.conversation_id, 905);
    let context = told.context.expect("a context");
    let verified = context.verified.as_ref().expect("verified");
    assert_eq!(
        (verified.name.as_str(), verified.email.as_str()),
        ("Ann O'Brien", "ann@example.com")
    );
    assert_eq!(verified.fields.get("seats").map(String::as_str), Some("3"));
    let reported = context.page.as_ref().expect("page");
    assert_eq!(
        (
            reported.url.as_str(),
            reported.title.as_str(),
            reported.language.as_str(),
            reported.time_zone.as_str()
        ),
        (
            "https://shop.example/cart?x=1",
            "Cart — Shop",
            "en-GB",
            "Europe/London"
        )
    );
    // Token admins are told on the socket too.
    let on_socket = alice.next_payload("context").await;
    assert_eq!(
        (
            &on_socket["cid"],
            &on_socket["verified"]["name"],
            &on_socket["page"]["time_zone"]
        ),
        (&json!(905), &json!("Ann O'Brien"), &json!("Europe/London")),
        "{on_socket}"
    );
    // Nothing is shown before the first message, then it is the conversation's.
    let ack = widget
        .emit_ack("new message", &[json!({ "message": "hello" })])
        .await;
    assert!(ack.get("error").is_none(), "{ack}");
    let conversation = chat
        .open_conversation(pb::OpenConversationRequest {
            conversation_id: 905,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(conversation.context.as_ref(), Some(&context));

    // A second tab on the same page is no news; another page is.
    let mut tab = SioClient::connect_token("tab", &url, json!({ "token": token })).await;
    let ack = tab.emit_ack("subscribe", &[json!({ "page": cart })]).await;
    assert!(ack.get("error").is_none(), "{ack}");
    assert!(
        next_context(&mut events, QUIET).await.is_none(),
        "the same context again"
    );
    let mut moved = SioClient::connect_token("moved", &url, json!({ "token": token })).await;
    let checkout = json!({ "url": "https://shop.example/checkout" });
    let ack = moved
        .emit_ack("subscribe", &[json!({ "page": checkout })])
        .await;
    assert!(ack.get("error").is_none(), "{ack}");
    let now = next_context(&mut events, Duration::from_secs(10))
        .await
        .expect("told")
        .context
        .unwrap();
    assert_eq!(now.page.unwrap().url, "https://shop.example/checkout");
    assert_eq!(now.verified.as_ref(), Some(verified), "the claims stay");

    // Handshakes: forged, unknown, oversized or out-of-bounds tokens are refused.
    let parts: Vec<&str> = token.split('.').collect();
    let as_v1 = format!("v1.{}.{}.{}", parts[1], parts[2], parts[4]);
    let long_fields: serde_json::Map<String, Value> = (0..32)
        .map(|i| (format!("f{i}"), json!("v".repeat(120))))
        .collect();
    let oversized = host_site_token(906, &json!({ "fields": long_fields }).to_string());
    let cases = [
        ("v2 presented as v1", as_v1, "token"),
        (
            "an unknown version",
            token.replacen("v2.", "v9.", 1),
            "version",
        ),
        (
            "claims swapped",
            token.replace(parts[3], "eyJuYW1lIjoiRXZlIn0"),
            "signature",
        ),
        (
            "another visitor",
            token.replacen(".905.", ".906.", 1),
            "signature",
        ),
        ("longer than 4096 bytes", oversized, "4096"),
        (
            "a name out of bounds",
            host_site_token(906, &json!({ "name": "x".repeat(201) }).to_string()),
            "name is 201",
        ),
        (
            "an unknown claim",
            host_site_token(906, r#"{"role":"admin"}"#),
            "role",
        ),
    ];
    for (case, token, says) in &cases {
        match SioClient::open(case, &Handshake::token(&url, json!({ "token": token }))).await {
            Ok(_) => panic!("{case}: the handshake was accepted"),
            Err(message) => assert!(
                message.contains(says),
                "{case}: {message:?} mentions {says:?}"
            ),
        }
    }

    // The legacy page and a plain v1 token bring no context.
    let _legacy = page(&server, 907).await;
    let mut plain =
        SioClient::connect_token("plain", &url, json!({ "token": visitor_token(908) })).await;
    let ack = plain.emit_ack("subscribe", &[json!({})]).await;
    assert!(ack.get("error").is_none(), "{ack}");
    assert!(
        next_context(&mut events, QUIET).await.is_none(),
        "no context"
    );
    assert_eq!(count(&db, "cid IN (906, 907, 908)").await, 0);

    // Over gRPC: out of bounds or nothing to set is refused, and nothing changes.
    for (request, says) in [
        (
            pb::SetVisitorContextRequest {
                conversation_id: 905,
                verified: Some(pb::VerifiedVisitor {
                    email: "no-at-sign".into(),
                    ..Default::default()
                }),
                page: None,
            },
            "email",
        ),
        (
            pb::SetVisitorContextRequest {
                conversation_id: 905,
                verified: None,
                page: None,
            },
            "nothing to set",
        ),
    ] {
        let refused = chat.set_visitor_context(request).await.unwrap_err();
        assert_eq!(refused.code(), tonic::Code::InvalidArgument);
        assert!(refused.message().contains(says), "{refused:?}");
    }
    let kept = chat
        .open_conversation(pb::OpenConversationRequest {
            conversation_id: 905,
        })
        .await
        .unwrap()
        .into_inner()
        .context
        .unwrap();
    assert_eq!(kept.verified.as_ref(), Some(verified));
    stop(server, db).await;
}

/// Without `[web] token_secret` (the default) no one can make a token: one signed with the
/// empty key, as anyone could sign it, is refused, for an admin and for a visitor alike.
#[tokio::test]
async fn without_a_token_secret_no_token_is_accepted() {
    if !sio::available().await {
        return;
    }
    let Some(db) = TestDb::create(Backend::Sqlite).await else {
        return;
    };
    let toml = config(ROOMY).replace(&format!("token_secret = \"{TOKEN_SECRET}\"\n"), "");
    assert!(!toml.contains("token_secret"), "{toml}");
    let server = TestServer::start(&db.url, &toml).await;
    let empty_key = TokenSigner::new(b"");
    for (what, auth) in [
        (
            "an admin token",
            json!({ "admin_token": empty_key.sign(TokenKind::Admin, "alice", 600) }),
        ),
        (
            "a visitor token",
            json!({ "token": empty_key.sign(TokenKind::Visitor, "931", 600) }),
        ),
    ] {
        let handshake = Handshake::token(&server.web_url(), auth);
        let refused = SioClient::open(what, &handshake).await.err();
        assert!(
            refused.as_deref().is_some_and(|e| e.contains("token")),
            "{what} signed with the empty key: {refused:?}"
        );
    }
    stop(server, db).await;
}
