//! The operator console's sign-in, sessions and live socket, over real HTTP and the official
//! Socket.IO client: the first run, wrong passwords, an admin without rights, the rate limit,
//! CSRF, an expired session, signing out everywhere. (The page itself runs in headless
//! Chromium in `tests/binary/widget.rs`.)

use super::*;

/// The server's configuration with `[core] staff_session_ttl_secs` (the rest as `config`).
fn console_config(ttl_secs: u64) -> String {
    config(ROOMY).replace(
        "[core]\n",
        &format!("[core]\nstaff_session_ttl_secs = {ttl_secs}\n"),
    )
}

async fn start_console(ttl_secs: u64) -> Option<(TestServer, TestDb)> {
    if !sio::available().await {
        return None;
    }
    let db = TestDb::create(Backend::Sqlite).await?;
    let server = TestServer::start(&db.url, &console_config(ttl_secs)).await;
    Some((server, db))
}

/// Runs `socketgram <args>` on the test's database, with `stdin` as its input.
async fn cli(db: &TestDb, args: &[&str], stdin: &str) -> (bool, String) {
    socketgram_tests::server::run_command(env!("CARGO_BIN_EXE_socketgram"), &db.url, args, stdin)
        .await
}

/// `socketgram admin add <login> <name> --role <role>` and `admin passwd <login>`.
async fn staff_member(db: &TestDb, login: &str, name: &str, role: i32, password: &str) {
    let role = role.to_string();
    let (ok, out) = cli(db, &["admin", "add", login, name, "--role", &role], "").await;
    assert!(ok, "{out}");
    let (ok, out) = cli(db, &["admin", "passwd", login], &format!("{password}\n")).await;
    assert!(ok, "{out}");
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

struct Answer {
    status: u16,
    cookie: Option<String>,
    body: Value,
}

async fn answer(response: reqwest::Response) -> Answer {
    let status = response.status().as_u16();
    let cookie = response
        .headers()
        .get("set-cookie")
        .map(|c| c.to_str().unwrap().to_owned());
    let text = response.text().await.unwrap();
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("JSON: {text}"))
    };
    Answer {
        status,
        cookie,
        body,
    }
}

async fn sign_in(server: &TestServer, login: &str, password: &str) -> Answer {
    let response = http()
        .post(format!("{}/console/api/sign-in", server.web_url()))
        .json(&json!({ "login": login, "password": password }))
        .send()
        .await
        .unwrap();
    answer(response).await
}

async fn session(server: &TestServer, cookie: Option<&str>) -> Answer {
    let mut request = http().get(format!("{}/console/api/session", server.web_url()));
    if let Some(cookie) = cookie {
        request = request.header("cookie", cookie);
    }
    answer(request.send().await.unwrap()).await
}

async fn sign_out(server: &TestServer, path: &str, cookie: &str, csrf: Option<&str>) -> Answer {
    let mut request = http()
        .post(format!("{}/console/api/{path}", server.web_url()))
        .header("cookie", cookie);
    if let Some(csrf) = csrf {
        request = request.header("x-csrf-token", csrf);
    }
    answer(request.send().await.unwrap()).await
}

/// The `name=value` of a `Set-Cookie`.
fn cookie_pair(set_cookie: &str) -> String {
    set_cookie.split(';').next().unwrap().trim().to_owned()
}

fn assert_error(a: &Answer, status: u16, code: &str, says: &str) {
    assert_eq!(a.status, status, "{}", a.body);
    assert_eq!(a.body["error"]["code"], code, "{}", a.body);
    let message = a.body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains(says), "{message:?} should say {says:?}");
}

/// The console's live socket, authenticated by the session cookie.
async fn console_socket(server: &TestServer, cookie: &str) -> Result<SioClient, String> {
    let handshake = Handshake::token(&server.web_url(), json!({ "console": true }))
        .with_header("cookie", cookie);
    SioClient::open("console", &handshake).await
}

/// From the first run to signing out everywhere, as a new team meets it.
#[tokio::test]
async fn staff_sign_in_with_their_password_and_sign_out_everywhere() {
    let Some((server, db)) = start_console(3600).await else {
        return;
    };
    let web = server.web_url();
    // `/` leads to the console, which is its own page with a strict policy.
    let root = http().get(format!("{web}/")).send().await.unwrap();
    assert!(root.status().is_redirection());
    assert_eq!(root.headers()["location"], "/console/");
    let console_page = http().get(format!("{web}/console/")).send().await.unwrap();
    assert_eq!(console_page.status(), 200);
    let csp = console_page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        csp.contains("script-src 'self'") && csp.contains("default-src 'self'"),
        "{csp}"
    );
    assert!(console_page.text().await.unwrap().contains("console.js"));

    // First run: nobody can sign in yet, and the page is told how to make the first admin.
    let first = session(&server, None).await;
    assert_error(&first, 401, "unauthenticated", "not signed in");
    assert_eq!(first.body["first_run"], true, "{}", first.body);
    let commands = first.body["first_run_commands"].to_string();
    assert!(commands.contains("socketgram admin passwd"), "{commands}");

    staff_member(&db, "alice", "Alice", 2, "correct horse battery").await;
    staff_member(&db, "norights", "Nobody", 0, "correct horse battery").await;
    assert_eq!(session(&server, None).await.body["first_run"], false);

    // Refusals, each saying what is wrong and nothing more.
    for (login, password) in [("alice", "wrong horse battery"), ("mallory", "whatever123")] {
        let refused = sign_in(&server, login, password).await;
        assert_error(&refused, 401, "unauthenticated", "wrong login or password");
        assert!(refused.cookie.is_none());
    }
    let no_rights = sign_in(&server, "norights", "correct horse battery").await;
    assert_error(&no_rights, 403, "forbidden", "no rights");
    let form = http()
        .post(format!("{web}/console/api/sign-in"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("login=alice&password=correct+horse+battery")
        .send()
        .await
        .unwrap();
    assert_error(&answer(form).await, 400, "invalid", "JSON");
    for (body, says) in [
        (r#"{"login": "alice"}"#, "password"),
        (r#"{"login": 7, "password": "x"}"#, "login"),
        (
            r#"{"login": "alice", "password": "x", "admin": true}"#,
            "admin",
        ),
        ("not json", "{login, password}"),
    ] {
        let bad = http()
            .post(format!("{web}/console/api/sign-in"))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_error(&answer(bad).await, 400, "invalid", says);
    }
    let cross_site = http()
        .post(format!("{web}/console/api/sign-in"))
        .header("origin", "https://evil.example")
        .json(&json!({ "login": "alice", "password": "correct horse battery" }))
        .send()
        .await
        .unwrap();
    assert_error(&answer(cross_site).await, 403, "csrf", "another site");

    // Signed in: an HttpOnly, SameSite=Strict cookie, and the session says who.
    let signed = sign_in(&server, "alice", "correct horse battery").await;
    assert_eq!(signed.status, 200, "{}", signed.body);
    let set_cookie = signed.cookie.clone().expect("a session cookie");
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(set_cookie.contains(attribute), "{set_cookie}");
    }
    let cookie = cookie_pair(&set_cookie);
    assert_eq!(signed.body["admin"]["login"], "alice");
    assert_eq!(signed.body["admin"]["display_name"], "Alice Acme");
    let csrf = signed.body["csrf"].as_str().unwrap().to_owned();
    let now = session(&server, Some(&cookie)).await;
    assert_eq!(now.status, 200, "{}", now.body);
    assert_eq!(now.body["admin"]["login"], "alice");
    assert_eq!(now.body["csrf"], csrf.as_str());

    // The test visitor's page and its tokens are for signed-in staff only.
    let try_page = http()
        .get(format!("{web}/console/try"))
        .send()
        .await
        .unwrap();
    assert!(try_page.status().is_redirection(), "to the sign-in");
    let no_token = answer(
        http()
            .get(format!("{web}/console/try/token?cid=4109"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_error(&no_token, 401, "unauthenticated", "not signed in");
    let page_for_alice = http()
        .get(format!("{web}/console/try"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(page_for_alice.status(), 200);
    let token = answer(
        http()
            .get(format!("{web}/console/try/token?cid=4109"))
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(token.status, 200, "{}", token.body);
    let token = token.body["token"].as_str().unwrap().to_owned();
    let mut test_visitor =
        SioClient::connect_token("test visitor", &web, json!({ "token": token })).await;
    test_visitor.disconnect().await;
    assert_eq!(signed.body["links"]["try"], "/console/try");

    // The live socket is alice's: she works the inbox with support's events.
    let mut v = page(&server, 4101).await;
    say(&mut v, 4101, "hello from the shop").await;
    legacy_message(
        &v.next_payload("new message").await,
        4101,
        "hello from the shop",
        "0",
    );
    let mut console = console_socket(&server, &cookie)
        .await
        .expect("the console socket");
    let inbox = console
        .emit_ack("inbox:servadm", &[json!({ "filter": "all" })])
        .await;
    let row = &inbox["data"]["conversations"][0];
    assert_eq!(row["cid"], 4101, "{inbox}");
    assert_eq!(row["channel"], "web");
    assert_eq!(row["last_message"]["message"], "hello from the shop");
    let reply = console
        .emit_ack(
            "new message:servadm",
            &[json!({ "username": 4101, "message": "Hi, Alice here", "client_msg_id": "c-1" })],
        )
        .await;
    assert!(reply["data"]["label"].as_u64().is_some(), "{reply}");
    let echoed = console.next_payload("new message").await;
    assert_eq!(
        echoed["author"], "alice",
        "support's clients learn who wrote: {echoed}"
    );
    legacy_message(
        &v.next_payload("new message").await,
        4101,
        "Hi, Alice here",
        "Alice Acme",
    );
    let mine = console
        .emit_ack("inbox:servadm", &[json!({ "filter": "mine" })])
        .await;
    assert_eq!(mine["data"]["conversations"], json!([]), "{mine}");
    let took = console
        .emit_ack(
            "assign:servadm",
            &[json!({ "username": 4101, "take": true })],
        )
        .await;
    assert_eq!(took["data"]["assignee"], "alice", "{took}");
    let mine = console
        .emit_ack("inbox:servadm", &[json!({ "filter": "mine" })])
        .await;
    assert_eq!(mine["data"]["conversations"][0]["cid"], 4101, "{mine}");
    let found = console
        .emit_ack("search:servadm", &[json!({ "query": "SHOP" })])
        .await;
    assert_eq!(found["data"]["conversations"][0]["cid"], 4101, "{found}");
    let history = console
        .emit_ack("history:servadm", &[json!({ "username": 4101 })])
        .await;
    let texts: Vec<&str> = history["data"]["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["message"].as_str().unwrap())
        .collect();
    assert_eq!(
        texts,
        ["Hi, Alice here", "hello from the shop"],
        "newest first"
    );
    assert_eq!(history["data"]["messages"][0]["author"], "alice");
    assert!(
        history["data"]["messages"][1].get("author").is_none(),
        "{history}"
    );
    let newest = history["data"]["messages"][0]["label"].as_u64().unwrap();
    let read = console
        .emit_ack(
            "read:servadm",
            &[json!({ "username": 4101, "mid": newest })],
        )
        .await;
    assert_eq!(read["data"]["support_read_up_to"], newest, "{read}");
    // Bad payloads are refused, naming what is wrong; nothing changes.
    for (event, payload, says) in [
        ("inbox:servadm", json!({ "filter": "everything" }), "filter"),
        ("inbox:servadm", json!({ "before": "soon" }), "before"),
        ("search:servadm", json!({}), "query"),
        ("search:servadm", json!({ "query": "x".repeat(201) }), "200"),
        (
            "history:servadm",
            json!({ "username": "someone" }),
            "username",
        ),
        ("read:servadm", json!({ "username": 4101 }), "mid"),
        ("notes:servadm", json!([1, 2]), "object"),
    ] {
        let refused = console.emit_ack(event, &[payload]).await;
        assert_refusal(&refused["error"], event, "invalid");
        let message = refused["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(says),
            "{event}: {message:?} should name {says:?}"
        );
    }
    let online = console.emit_ack("online:servadm", &[]).await;
    assert!(
        online["data"]["visitors"]
            .as_array()
            .unwrap()
            .contains(&json!(4101)),
        "{online}"
    );
    assert_eq!(online["data"]["admins"], json!(["alice"]), "{online}");

    // A socket without the cookie, or from another site, is refused, saying why.
    let refused = console_socket(&server, "sg_session=s1.forged").await.err();
    assert!(
        refused.as_deref().is_some_and(|e| e.contains("session")),
        "{refused:?}"
    );
    let handshake = Handshake::token(&web, json!({ "console": true }))
        .with_header("cookie", &cookie)
        .with_header("origin", "https://evil.example");
    let refused = SioClient::open("other site", &handshake).await.err();
    assert!(
        refused
            .as_deref()
            .is_some_and(|e| e.contains("another site")),
        "{refused:?}"
    );

    // A second device, then sign out everywhere: both sessions end, the socket is cut.
    let second = cookie_pair(
        &sign_in(&server, "alice", "correct horse battery")
            .await
            .cookie
            .unwrap(),
    );
    let no_csrf = sign_out(&server, "sign-out-everywhere", &cookie, None).await;
    assert_error(&no_csrf, 403, "csrf", "CSRF");
    let wrong_csrf = sign_out(
        &server,
        "sign-out-everywhere",
        &cookie,
        Some(&"0".repeat(64)),
    )
    .await;
    assert_error(&wrong_csrf, 403, "csrf", "CSRF");
    assert_eq!(
        session(&server, Some(&cookie)).await.status,
        200,
        "nothing ended"
    );
    let out = sign_out(&server, "sign-out-everywhere", &cookie, Some(&csrf)).await;
    assert_eq!(out.status, 204, "{}", out.body);
    assert!(
        out.cookie
            .as_deref()
            .is_some_and(|c| c.contains("Max-Age=0")),
        "the cookie is cleared: {:?}",
        out.cookie
    );
    console.disconnected().await;
    for ended in [&cookie, &second] {
        let gone = session(&server, Some(ended)).await;
        assert_error(&gone, 401, "unauthenticated", "not signed in");
    }
    assert!(console_socket(&server, &cookie).await.is_err());

    // Signing out here ends this session only.
    let a = cookie_pair(
        &sign_in(&server, "alice", "correct horse battery")
            .await
            .cookie
            .unwrap(),
    );
    let b = sign_in(&server, "alice", "correct horse battery").await;
    let (b_cookie, b_csrf) = (
        cookie_pair(b.cookie.as_deref().unwrap()),
        b.body["csrf"].as_str().unwrap().to_owned(),
    );
    assert_eq!(
        sign_out(&server, "sign-out", &b_cookie, Some(&b_csrf))
            .await
            .status,
        204
    );
    assert_eq!(session(&server, Some(&b_cookie)).await.status, 401);
    assert_eq!(session(&server, Some(&a)).await.status, 200);
    // A new password ends every session.
    let (ok, out) = cli(&db, &["admin", "passwd", "alice"], "a brand new password\n").await;
    assert!(ok && out.contains("session(s) ended"), "{out}");
    assert_eq!(session(&server, Some(&a)).await.status, 401);
    stop(server, db).await;
}

/// Guessing is slowed: a login's attempts run out after a few failures, whoever tries, and
/// the answer says when to try again; another login is not affected.
#[tokio::test]
async fn sign_in_attempts_are_limited_per_login() {
    let Some((server, db)) = start_console(3600).await else {
        return;
    };
    staff_member(&db, "carol", "Carol", 2, "carols password").await;
    staff_member(&db, "dave", "Dave", 2, "daves password").await;
    for _ in 0..5 {
        let wrong = sign_in(&server, "carol", "not it at all").await;
        assert_error(&wrong, 401, "unauthenticated", "wrong login or password");
    }
    let limited = sign_in(&server, "carol", "carols password").await;
    assert_error(&limited, 429, "rate_limited", "too many");
    let wait = limited.body["retry_after_secs"].as_u64().unwrap();
    assert!((1..=13).contains(&wait), "{}", limited.body);
    assert_eq!(sign_in(&server, "dave", "daves password").await.status, 200);
    stop(server, db).await;
}

/// Guessing many logins from one address is slowed too: after 10 attempts in a row the
/// address is told to wait, whatever the login (the limit per login would never be reached).
#[tokio::test]
async fn sign_in_attempts_are_limited_per_address() {
    let Some((server, db)) = start_console(3600).await else {
        return;
    };
    // At once: the attempts are slow on purpose (argon2), and the budget refills meanwhile.
    let logins: Vec<String> = (0..14).map(|i| format!("guess{i}")).collect();
    let answers =
        futures::future::join_all(logins.iter().map(|l| sign_in(&server, l, "some password")))
            .await;
    let limited: Vec<&Answer> = answers.iter().filter(|a| a.status == 429).collect();
    assert!(
        (1..=4).contains(&limited.len()),
        "10 attempts pass, the rest wait: {:?}",
        answers.iter().map(|a| a.status).collect::<Vec<_>>()
    );
    for other in answers.iter().filter(|a| a.status != 429) {
        assert_error(other, 401, "unauthenticated", "wrong login or password");
    }
    let limited = limited[0];
    assert_error(limited, 429, "rate_limited", "your address");
    assert!(
        limited.body["retry_after_secs"]
            .as_u64()
            .is_some_and(|s| s >= 1)
    );
    stop(server, db).await;
}

/// A session lasts `[core] staff_session_ttl_secs`: a console socket open then is cut off,
/// and after that the session, and a socket opened with it, are refused as expired.
#[tokio::test]
async fn an_expired_session_is_refused_as_expired() {
    let Some((server, db)) = start_console(2).await else {
        return;
    };
    staff_member(&db, "erin", "Erin", 2, "erins password").await;
    let signed = sign_in(&server, "erin", "erins password").await;
    assert_eq!(signed.status, 200, "{}", signed.body);
    let cookie = cookie_pair(signed.cookie.as_deref().unwrap());
    assert!(signed.cookie.unwrap().contains("Max-Age="));
    // A console open when the session runs out is cut off then.
    let mut open = console_socket(&server, &cookie)
        .await
        .expect("a console socket");
    tokio::time::timeout(Duration::from_secs(5), open.disconnected())
        .await
        .expect("the socket is cut when its session expires");
    let expired = session(&server, Some(&cookie)).await;
    assert_error(&expired, 401, "session_expired", "expired");
    assert_eq!(expired.body["first_run"], false);
    let refused = console_socket(&server, &cookie).await.err();
    assert!(
        refused.as_deref().is_some_and(|e| e.contains("expired")),
        "{refused:?}"
    );
    stop(server, db).await;
}

/// `[core.staff_ldap]` (as the PHP admin's LDAP mode): staff sign in with their directory
/// password, found by login, checked by binding as them, and only when they are in the
/// support group; a wildcard or filter syntax in a login finds no one; a local password still
/// works beside it; a directory that is down is said to be down, not a wrong password.
#[tokio::test]
async fn staff_sign_in_with_their_directory_password() {
    use socketgram_tests::ldap::{self, Person, TestLdap};
    let Some(directory) = TestLdap::start(&[
        Person {
            uid: "lena",
            password: "lenas directory pw",
            support: true,
        },
        Person {
            uid: "ivan",
            password: "ivans directory pw",
            support: false,
        },
    ])
    .await
    else {
        return;
    };
    if !sio::available().await {
        return;
    }
    let Some(db) = TestDb::create(Backend::Sqlite).await else {
        return;
    };
    let ldap_section = format!(
        "[core.staff_ldap]\nurl = \"{}\"\nbind_dn = \"{}\"\nbind_password = \"{}\"\n\
         base_dn = \"{}\"\ngroup_dn = \"{}\"\n",
        directory.url,
        ldap::SEARCH_DN,
        ldap::SEARCH_PASSWORD,
        ldap::PEOPLE,
        ldap::GROUPS
    );
    let server = TestServer::start(
        &db.url,
        &format!("{}\n{ldap_section}", console_config(3600)),
    )
    .await;
    for (login, name) in [("lena", "Lena"), ("ivan", "Ivan"), ("lena*", "Star")] {
        let (ok, out) = cli(&db, &["admin", "add", login, name], "").await;
        assert!(ok, "{out}");
    }
    assert_eq!(
        session(&server, None).await.body["first_run"],
        false,
        "with a directory, the admins can sign in"
    );
    let signed = sign_in(&server, "lena", "lenas directory pw").await;
    assert_eq!(signed.status, 200, "{}", signed.body);
    assert_eq!(signed.body["admin"]["display_name"], "Lena Acme");
    assert_error(
        &sign_in(&server, "lena", "not lenas pw").await,
        401,
        "unauthenticated",
        "wrong login or password",
    );
    assert_error(
        &sign_in(&server, "lena", "").await,
        401,
        "unauthenticated",
        "wrong",
    );
    assert_error(
        &sign_in(&server, "ivan", "ivans directory pw").await,
        403,
        "forbidden",
        "support group",
    );
    // "lena*" is an admin too, but no person of the directory: the star is not a wildcard.
    assert_error(
        &sign_in(&server, "lena*", "lenas directory pw").await,
        401,
        "unauthenticated",
        "wrong login or password",
    );
    // A local password works beside the directory.
    let (ok, out) = cli(&db, &["admin", "passwd", "ivan"], "ivans own password\n").await;
    assert!(ok, "{out}");
    assert_eq!(
        sign_in(&server, "ivan", "ivans own password").await.status,
        200
    );
    // The directory goes away: a clear "unavailable", and no session.
    drop(directory);
    let down = sign_in(&server, "lena", "lenas directory pw").await;
    assert_error(&down, 503, "unavailable", "LDAP");
    assert!(down.cookie.is_none());
    stop(server, db).await;
}
