//! Scaled out (issue: scale-out): core replicas on one MariaDB database with a NATS server of
//! the test's own, `socketgram edge-web` processes in front of them, the legacy pages on
//! different edges; then crashes: a core, an edge, NATS itself.

use std::{collections::BTreeMap, time::Instant};

use socketgram_tests::{
    cluster::{Nats, Process},
    proxy::FaultProxy,
    server::TOKEN,
};

use super::*;

/// What a test deployment is made of.
struct Cluster {
    db: TestDb,
    /// Between the cores and the database, when asked for.
    proxy: Option<FaultProxy>,
    nats: Nats,
    cores: Vec<Process>,
    edges: Vec<Process>,
}

/// `cores` replicas and `edges` web edges; edge `i` uses core `i` first, then the others in
/// order. `None` when Node.js, MariaDB or nats-server is missing (a failure under CI).
async fn cluster(cores: usize, edges: usize) -> Option<Cluster> {
    cluster_on(cores, edges, false).await
}

/// The same, the cores reaching the database through a [`FaultProxy`] when `proxied`.
async fn cluster_on(cores: usize, edges: usize, proxied: bool) -> Option<Cluster> {
    if !sio::available().await {
        return None;
    }
    let nats = Nats::start().await?;
    let db = TestDb::create(Backend::MySql).await?;
    let (proxy, url) = match proxied {
        false => (None, db.url.clone()),
        true => {
            let (proxy, url) = FaultProxy::in_front_of(&db.url).await;
            (Some(proxy), url)
        }
    };
    let mut started = Vec::new();
    for i in 0..cores {
        let name = format!("core-{}", (b'a' + i as u8) as char);
        started.push(Process::core(&name, &url, &nats.url(), &config(ROOMY)).await);
    }
    let mut web = Vec::new();
    for i in 0..edges {
        let order: Vec<&Process> = (0..cores).map(|k| &started[(i + k) % cores]).collect();
        web.push(Process::edge_web(&format!("edge-{i}"), &order, &config(ROOMY)).await);
    }
    Some(Cluster {
        db,
        proxy,
        nats,
        cores: started,
        edges: web,
    })
}

impl Cluster {
    /// The legacy visitor page for `cid` on edge `edge`, connected and subscribed.
    async fn page(&self, edge: usize, cid: u64) -> SioClient {
        let url = self.edges[edge].web_url();
        let handshake = Handshake::legacy_visitor(&url, cid, &room(cid))
            .emitting_on_connect("subscribe", vec![subscription(cid)]);
        SioClient::open(&format!("page {cid} on edge {edge}"), &handshake)
            .await
            .unwrap_or_else(|e| panic!("page {cid}: handshake refused: {e}"))
    }

    /// The PHP admin on edge `edge`.
    async fn admin(&self, edge: usize) -> SioClient {
        SioClient::connect_legacy_admin(&self.edges[edge].web_url(), "adminpass", "admin").await
    }

    async fn stop(mut self) {
        for p in self.edges.iter_mut().chain(self.cores.iter_mut()) {
            assert!(p.terminate().await, "{} exits cleanly on SIGTERM", p.name);
        }
        self.nats.kill().await;
        self.db.drop_db().await;
    }
}

/// Fault 1: a visitor on edge A (core a), the PHP admin on edge B (core b): messages both
/// ways, each once, the same payloads; presence crosses the replicas.
#[tokio::test]
async fn two_cores_and_two_edges_carry_messages_and_presence_both_ways() {
    let Some(c) = cluster(2, 2).await else {
        return;
    };
    let cid = 4101;
    add_admin(&c.db, "alice", "Alice").await;
    let mut admin = c.admin(1).await;
    // Every replica re-reads the directory when one is told to.
    admin.emit("update admlist", &[]).await;
    let mut visitor = c.page(0, cid).await;
    assert_eq!(
        admin.next_payload("online").await,
        json!({ "cid": cid.to_string() })
    );

    for text in ["Hello from edge A", "still there?"] {
        say(&mut visitor, cid, text).await;
        let mine = visitor.next_payload("new message").await;
        legacy_message(&mine, cid, text, "0");
        assert_eq!(
            admin.next_payload("new message").await,
            mine,
            "once, as itself"
        );
    }
    admin
        .emit(
            "subscribe:servadm",
            &[json!({ "room": room(cid), "adm": "alice" })],
        )
        .await;
    // The admin's subscription replays the conversation; its reply goes through core b.
    reply(&mut admin, cid, "alice", "Hi from edge B").await;
    let answer = visitor.next_payload("new message").await;
    legacy_message(&answer, cid, "Hi from edge B", "Alice Acme");
    visitor.expect_none("new message", QUIET).await;

    // A second tab on the other edge: still one visitor online; closing the first leaves it
    // online; closing the last takes it offline for the admin on the other replica.
    let mut second = c.page(1, cid).await;
    // Its history (the three messages) says its subscription, and so its presence, is in.
    for _ in 0..3 {
        second.next_payload("new message").await;
    }
    visitor.disconnect().await;
    admin
        .expect_none("offline", Duration::from_millis(800))
        .await;
    second.disconnect().await;
    assert_eq!(
        admin.next_payload("offline").await,
        json!({ "cid": cid.to_string() })
    );
    c.stop().await;
}

/// Fault 4: an edge killed with SIGKILL says nothing; its core sees the session break and its
/// visitors go offline for an admin on the other replica, within the bound.
#[tokio::test]
async fn a_killed_edge_takes_its_visitors_offline_everywhere() {
    let Some(mut c) = cluster(2, 2).await else {
        return;
    };
    let mut admin = c.admin(1).await;
    let cids = [4201, 4202, 4203];
    let mut pages = Vec::new();
    for cid in cids {
        pages.push(c.page(0, cid).await);
        assert_eq!(
            admin.next_payload("online").await,
            json!({ "cid": cid.to_string() })
        );
    }
    let killed = Instant::now();
    c.edges[0].kill().await;
    let mut offline = Vec::new();
    for _ in cids {
        offline.push(
            admin.next_payload("offline").await["cid"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    offline.sort();
    assert_eq!(offline, cids.map(|c| c.to_string()));
    let took = killed.elapsed();
    eprintln!("visitors of a killed edge offline everywhere after {took:?}");
    assert!(took < Duration::from_secs(10), "within the bound: {took:?}");
    c.stop().await;
}

/// Fault 4, the replica kind: a core killed with SIGKILL says no goodbye; the visitors
/// online only through it go offline on the other replica once it has been silent for the
/// presence timeout (3 s here), and no ghost stays online.
#[tokio::test]
async fn a_killed_core_takes_its_visitors_offline_after_the_presence_timeout() {
    let Some(mut c) = cluster(2, 2).await else {
        return;
    };
    let mut admin = c.admin(1).await;
    let cid = 4301;
    let _page = c.page(0, cid).await;
    assert_eq!(
        admin.next_payload("online").await,
        json!({ "cid": cid.to_string() })
    );
    // Edge 0 loses core a and moves to core b, declaring its visitor there: online through b.
    c.cores[0].kill().await;
    admin.expect_none("offline", Duration::from_secs(5)).await;
    // Now the edge dies too: nobody holds the visitor any more.
    let killed = Instant::now();
    c.edges[0].kill().await;
    assert_eq!(
        admin.next_payload("offline").await,
        json!({ "cid": cid.to_string() })
    );
    eprintln!("offline after {:?}", killed.elapsed());
    c.stop().await;
}

/// Fault 2: a core killed with SIGKILL under steady load (unique bodies, client ids). Every
/// message a visitor saw acknowledged is stored once and reaches the admin on the other
/// replica once, in id order; the visitor's edge moves to the other core and its socket stays
/// connected; how long sends waited is measured.
#[tokio::test]
async fn killing_a_core_under_load_loses_nothing_acknowledged() {
    let Some(mut c) = cluster(2, 2).await else {
        return;
    };
    const CID: u64 = 4401;
    const ROUNDS: usize = 30;
    const EACH: usize = 20;
    let mut admin = c.admin(1).await;
    let mut visitor = c.page(0, CID).await;
    assert_eq!(
        admin.next_payload("online").await,
        json!({ "cid": CID.to_string() })
    );
    let mut acked: BTreeMap<u64, String> = BTreeMap::new();
    let mut failed = Vec::new();
    let mut longest = Duration::ZERO;
    for round in 0..ROUNDS {
        if round == ROUNDS / 3 {
            c.cores[0].kill().await;
        }
        let each: Vec<Vec<Value>> = (0..EACH)
            .map(|i| {
                let n = round * EACH + i;
                vec![json!({
                    "username": CID.to_string(),
                    "message": format!("m{n}"),
                    "room": room(CID),
                    "client_msg_id": format!("c{n}"),
                })]
            })
            .collect();
        let sent = Instant::now();
        let ids = visitor.emit_acks("new message", &each).await;
        for (i, id) in ids.into_iter().enumerate() {
            let n = round * EACH + i;
            let answer = visitor.ack_of(id).await.expect("every send is answered");
            match answer["data"]["label"].as_u64() {
                Some(label) => {
                    assert!(
                        acked.insert(label, format!("m{n}")).is_none(),
                        "one id each"
                    );
                }
                None => failed.push((n, answer)),
            }
        }
        longest = longest.max(sent.elapsed());
    }
    eprintln!(
        "{} acknowledged, {} refused; the slowest round of {EACH} sends took {longest:?}",
        acked.len(),
        failed.len()
    );
    assert!(
        failed.is_empty(),
        "sends retried on the other core: {failed:?}"
    );
    // Stored once each: nothing acknowledged lost, nothing retried stored twice.
    assert_eq!(
        count(&c.db, &format!("cid = {CID}")).await,
        (ROUNDS * EACH) as u64
    );
    for (&label, text) in &acked {
        assert_eq!(&stored(&c.db, label).await.message, text);
    }
    // The admin on the other replica saw each once, in id order.
    let mut seen = Vec::new();
    while seen.len() < acked.len() {
        let p = admin.next_payload("new message").await;
        seen.push(p["label"].as_u64().expect("a label"));
    }
    assert_eq!(seen, acked.keys().copied().collect::<Vec<_>>());
    admin.expect_none("new message", QUIET).await;
    assert!(
        !visitor
            .drain_events()
            .iter()
            .any(|(e, _)| e == "disconnect"),
        "the visitor's socket stayed connected"
    );
    c.stop().await;
}

/// Fault 3: NATS restarted under load: nothing is lost (the replicas read what they missed
/// from the database) and news flows again by itself.
#[tokio::test]
async fn restarting_nats_under_load_loses_nothing() {
    let Some(mut c) = cluster(2, 2).await else {
        return;
    };
    const CID: u64 = 4501;
    const N: usize = 300;
    let mut admin = c.admin(1).await;
    let mut visitor = c.page(0, CID).await;
    assert_eq!(
        admin.next_payload("online").await,
        json!({ "cid": CID.to_string() })
    );
    let mut labels = Vec::new();
    for n in 0..N {
        if n == N / 3 {
            c.nats.kill().await;
        }
        if n == 2 * N / 3 {
            c.nats.restart().await;
        }
        let answer = visitor
            .emit_ack(
                "new message",
                &[json!({ "username": CID.to_string(), "message": format!("n{n}"), "room": room(CID) })],
            )
            .await;
        labels.push(answer["data"]["label"].as_u64().expect("stored"));
    }
    let mut seen = Vec::new();
    while seen.len() < N {
        seen.push(
            admin.next_payload("new message").await["label"]
                .as_u64()
                .unwrap(),
        );
    }
    assert_eq!(
        seen, labels,
        "every message reached the other replica's admin once, in order"
    );
    // Live news again: a message now arrives without a database poll's delay mattering.
    say(&mut visitor, CID, "after the restart").await;
    let p = admin.next_payload("new message").await;
    assert_eq!(p["message"], "after the restart");
    c.stop().await;
}

/// Fault 6: the database away for a few seconds under both cores: sends are refused at once
/// with a clear "unavailable" (or, for one whose commit was cut, "outcome unknown"), gRPC
/// calls fail with UNAVAILABLE, nothing is half stored, and everything works again by itself.
#[tokio::test]
async fn a_database_outage_is_told_truthfully_and_recovers_by_itself() {
    let Some(c) = cluster_on(2, 2, true).await else {
        return;
    };
    const CID: u64 = 4601;
    let mut admin = c.admin(1).await;
    let mut visitor = c.page(0, CID).await;
    assert_eq!(
        admin.next_payload("online").await,
        json!({ "cid": CID.to_string() })
    );
    let send = |n: usize| {
        vec![json!({
            "username": CID.to_string(),
            "message": format!("o{n}"),
            "room": room(CID),
            "client_msg_id": format!("o{n}"),
        })]
    };
    let mut stored_ids = Vec::new();
    let first = visitor.emit_ack("new message", &send(0)).await;
    stored_ids.push(
        first["data"]["label"]
            .as_u64()
            .expect("stored before the outage"),
    );

    c.proxy.as_ref().expect("proxied").cut();
    let cut = Instant::now();
    let (mut refused, mut unknown) = (Vec::new(), Vec::new());
    let mut n = 1;
    while cut.elapsed() < Duration::from_secs(3) {
        let answer = visitor.emit_ack("new message", &send(n)).await;
        match answer["data"]["label"].as_u64() {
            Some(label) => stored_ids.push(label),
            None => {
                let error = &answer["error"];
                match error["code"].as_str() {
                    Some("unavailable") => refused.push(n),
                    Some("outcome_unknown") => unknown.push(n),
                    _ => panic!("send {n}: a clear refusal: {answer}"),
                }
                assert!(!error["message"].as_str().unwrap_or_default().is_empty());
            }
        }
        n += 1;
    }
    let mut core = socketgram_proto::client::CoreClient::connect(&c.cores[1].grpc_url(), TOKEN)
        .await
        .expect("core b answers while its database is away");
    let status = core
        .chat
        .history(socketgram_proto::v1::HistoryRequest {
            conversation_id: CID,
            limit: 10,
            ..Default::default()
        })
        .await
        .expect_err("no history without the database");
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    eprintln!(
        "during the outage: {} refused as unavailable, {} outcome unknown; history: {}",
        refused.len(),
        unknown.len(),
        status.message()
    );
    assert!(!refused.is_empty(), "sends during the outage were refused");

    c.proxy.as_ref().expect("proxied").restore();
    let restored = Instant::now();
    let label = loop {
        let answer = visitor.emit_ack("new message", &send(n)).await;
        if let Some(label) = answer["data"]["label"].as_u64() {
            break label;
        }
        assert!(
            restored.elapsed() < Duration::from_secs(15),
            "did not recover: {answer}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    stored_ids.push(label);
    eprintln!(
        "stored again {:?} after the database came back",
        restored.elapsed()
    );
    // Nothing half stored: exactly the acknowledged messages, plus those whose outcome was
    // unknown and that the database did take (each at most once).
    let total = count(&c.db, &format!("cid = {CID}")).await;
    let refused_stored = {
        let mut k = 0;
        for r in &refused {
            k += count(&c.db, &format!("cid = {CID} AND message = 'o{r}'")).await;
        }
        k
    };
    assert_eq!(refused_stored, 0, "a refused send is not stored");
    assert!(
        total >= stored_ids.len() as u64 && total <= (stored_ids.len() + unknown.len()) as u64,
        "{total} stored for {} acknowledged and {} unknown",
        stored_ids.len(),
        unknown.len()
    );
    // The admin on the other replica sees the stored ones, in order, once each.
    let mut seen = Vec::new();
    while seen.len() < total as usize {
        seen.push(
            admin.next_payload("new message").await["label"]
                .as_u64()
                .unwrap(),
        );
    }
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "in order: {seen:?}");
    assert!(stored_ids.iter().all(|id| seen.contains(id)));
    c.stop().await;
}

/// The README's deployment: two edges behind nginx with its `upstream` (`ip_hash`, for long
/// polling) and `location`; pages that only poll (every request of a session must reach the
/// edge holding it) and the PHP admin talk through it.
#[tokio::test]
async fn the_readme_deployment_behind_nginx_carries_polling_pages() {
    let Some(exe) = socketgram_tests::nginx::executable() else {
        return;
    };
    let Some(c) = cluster(2, 2).await else {
        return;
    };
    let edges: Vec<_> = c.edges.iter().map(|e| e.web.expect("web")).collect();
    let snippet = socketgram_tests::nginx::readme_cluster_snippet(&edges);
    let nginx = socketgram_tests::nginx::Nginx::start(&exe, &snippet.map, &snippet.location).await;
    let url = nginx.url();
    let mut admin = SioClient::connect_legacy_admin(&url, "adminpass", "admin").await;
    let cid = 4701;
    let handshake = Handshake::legacy_visitor(&url, cid, &room(cid))
        .with_transports(&["polling"])
        .emitting_on_connect("subscribe", vec![subscription(cid)]);
    let mut page = SioClient::open("polling page", &handshake)
        .await
        .expect("a polling page connects through nginx");
    assert_eq!(
        admin.next_payload("online").await,
        json!({ "cid": cid.to_string() })
    );
    for text in ["one", "two", "three"] {
        say(&mut page, cid, text).await;
        let mine = page.next_payload("new message").await;
        assert_eq!(admin.next_payload("new message").await, mine);
    }
    page.disconnect().await;
    assert_eq!(
        admin.next_payload("offline").await,
        json!({ "cid": cid.to_string() })
    );
    drop(nginx);
    c.stop().await;
}

/// Operations of a scaled-out deployment: every core and every edge serves `/metrics` and
/// `/readyz`; a core is not ready while NATS is away (and names it), an edge is not ready
/// while no core answers it (and names its link), and both are ready again by themselves.
#[tokio::test]
async fn every_process_says_whether_its_dependencies_answer() {
    use super::ops::{get, ready_within};
    let Some(mut c) = cluster(2, 1).await else {
        return;
    };
    let core = c.cores[0].grpc_url();
    let edge = c.edges[0].web_url();
    for base in [&core, &edge] {
        assert_eq!(ready_within(base, 200).await.0, 200, "{base} ready");
        let (status, scrape) = get(&format!("{base}/metrics")).await;
        assert_eq!(status, 200);
        assert!(scrape.contains("socketgram_"), "{base}: {scrape}");
    }
    let (_, scrape) = get(&format!("{core}/metrics")).await;
    assert!(scrape.contains("socketgram_nats_connected"), "{scrape}");

    c.nats.kill().await;
    let (status, body) = ready_within(&core, 503).await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("nats"), "names NATS: {body}");
    c.nats.restart().await;
    assert_eq!(ready_within(&core, 200).await.0, 200, "ready again");

    for core in &mut c.cores {
        core.kill().await;
    }
    let (status, body) = ready_within(&edge, 503).await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains("core_link"),
        "names its link to the cores: {body}"
    );
    c.cores.clear();
    c.stop().await;
}

/// A read mark moved through one core replica reaches the subscribers of the other (over
/// NATS), with the mark as stored; so do a private note, an assignment, a status change
/// (and the other then reopens on a visitor's message) and typing.
#[tokio::test]
async fn the_workflow_events_of_one_core_reach_the_other() {
    let Some(c) = cluster(2, 0).await else {
        return;
    };
    let connect = async |core: &Process| {
        socketgram_proto::client::CoreClient::connect(&core.grpc_url(), TOKEN)
            .await
            .expect("the core answers")
            .chat
    };
    let (mut a, mut b) = (connect(&c.cores[0]).await, connect(&c.cores[1]).await);
    let sent = a
        .send_message(pb::SendMessageRequest {
            attachment_ids: Vec::new(),
            conversation_id: 808,
            author: Some(pb::Author {
                kind: pb::AuthorKind::Visitor as i32,
                admin_id: String::new(),
            }),
            text: "hello from a".into(),
            client_msg_id: "m1".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .message
        .unwrap();
    let mut watching = support_events(&mut b, "").await;
    // Live from here: the subscription has caught up.
    loop {
        let event = watching.message().await.unwrap().expect("an event");
        if matches!(event.kind, Some(pb::event::Kind::CaughtUp(_))) {
            break;
        }
    }
    // The replicas join NATS in the background after their ready line, and a mark is live
    // news, not replayed: mark again until core b is on the bus.
    let mark = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            a.mark_read(pb::MarkReadRequest {
                conversation_id: 808,
                reader: pb::Reader::Support as i32,
                up_to_message_id: sent.id,
            })
            .await
            .unwrap();
            let seen = first_event(
                &mut watching,
                Duration::from_millis(300),
                |kind| match kind {
                    pb::event::Kind::ReadMark(mark) => Some(mark),
                    _ => None,
                },
            )
            .await;
            if let Some(mark) = seen {
                break mark;
            }
        }
    })
    .await
    .expect("core b tells its subscribers of the mark core a stored");
    assert_eq!(
        (mark.conversation_id, mark.reader, mark.up_to_message_id),
        (808, pb::Reader::Support as i32, sent.id)
    );
    // Core b is on the bus now: a private note added through core a reaches its
    // all-conversation subscribers too.
    c.db.execute("INSERT INTO adm_account (aid, name, lid) VALUES ('alice', 'Alice', 2)")
        .await
        .unwrap();
    let note = a
        .add_note(pb::AddNoteRequest {
            conversation_id: 808,
            admin_id: "alice".into(),
            text: "noted on a".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let seen = first_event(&mut watching, Duration::from_secs(10), |kind| match kind {
        pb::event::Kind::Note(n) => Some(n),
        _ => None,
    })
    .await
    .expect("core b tells its subscribers of the note core a stored");
    assert_eq!(seen, note);
    a.assign_conversation(pb::AssignConversationRequest {
        conversation_id: 808,
        assignee: "alice".into(),
        by: "alice".into(),
        take: true,
    })
    .await
    .unwrap();
    let assigned = first_event(&mut watching, Duration::from_secs(10), |kind| match kind {
        pb::event::Kind::Assigned(a) => Some(a),
        _ => None,
    })
    .await
    .expect("core b tells its subscribers of the assignment core a stored");
    assert_eq!(
        (assigned.conversation_id, assigned.assignee.as_str()),
        (808, "alice")
    );
    // A status set through core a reaches core b, which then knows that a visitor's message
    // stored through it reopens the conversation, and says so.
    a.set_conversation_status(pb::SetConversationStatusRequest {
        conversation_id: 808,
        status: pb::ConversationStatus::Resolved.into(),
        snoozed_until_ms: 0,
        by: "alice".into(),
    })
    .await
    .unwrap();
    let status_change = |kind| match kind {
        pb::event::Kind::StatusChanged(s) => Some((s.status(), s.cause())),
        _ => None,
    };
    let resolved = first_event(&mut watching, Duration::from_secs(10), status_change).await;
    assert_eq!(
        resolved,
        Some((pb::ConversationStatus::Resolved, pb::StatusCause::Support))
    );
    b.send_message(pb::SendMessageRequest {
        attachment_ids: Vec::new(),
        conversation_id: 808,
        author: Some(pb::Author {
            kind: pb::AuthorKind::Visitor as i32,
            admin_id: String::new(),
        }),
        text: "back again, through b".into(),
        client_msg_id: "m2".into(),
    })
    .await
    .unwrap();
    let reopened = first_event(&mut watching, Duration::from_secs(10), status_change).await;
    assert_eq!(
        reopened,
        Some((
            pb::ConversationStatus::Open,
            pb::StatusCause::VisitorMessage
        ))
    );
    // Typing through core a reaches core b's subscribers, and is never stored.
    a.set_typing(pb::SetTypingRequest {
        conversation_id: 808,
        author: Some(pb::Author {
            kind: pb::AuthorKind::Admin as i32,
            admin_id: "alice".into(),
        }),
        active: true,
        draft_chars: 4,
        draft: String::new(),
    })
    .await
    .unwrap();
    let typing = first_event(&mut watching, Duration::from_secs(10), |kind| match kind {
        pb::event::Kind::Typing(t) => Some(t),
        _ => None,
    })
    .await
    .expect("core b tells its subscribers who types on core a");
    assert_eq!(
        (
            typing.conversation_id,
            typing.admin_id.as_str(),
            typing.draft_chars
        ),
        (808, "alice", 4)
    );
    // A visitor's context stored through core a is told by core b.
    a.set_visitor_context(pb::SetVisitorContextRequest {
        conversation_id: 808,
        verified: Some(pb::VerifiedVisitor {
            name: "Ann".into(),
            ..Default::default()
        }),
        page: None,
    })
    .await
    .unwrap();
    let context = first_event(&mut watching, Duration::from_secs(10), |kind| match kind {
        pb::event::Kind::VisitorContext(c) => Some(c),
        _ => None,
    })
    .await
    .expect("core b tells its subscribers of the visitor's context");
    assert_eq!(
        (
            context.conversation_id,
            context.context.and_then(|c| c.verified).map(|v| v.name)
        ),
        (808, Some("Ann".to_owned()))
    );
    // An erasure through core a reaches core b, which then knows nothing of the conversation
    // (no stale "it exists" read as an empty history).
    b.history(pb::HistoryRequest {
        conversation_id: 808,
        ..Default::default()
    })
    .await
    .expect("core b reads 808 (and holds it as known)");
    a.erase_conversation(pb::EraseConversationRequest {
        conversation_id: 808,
        admin_id: "alice".into(),
    })
    .await
    .unwrap();
    let erased = first_event(&mut watching, Duration::from_secs(10), |kind| match kind {
        pb::event::Kind::Erased(e) => Some(e),
        _ => None,
    })
    .await
    .expect("core b tells its subscribers of the erasure");
    assert_eq!((erased.conversation_id, erased.messages), (808, 2));
    let err = b
        .history(pb::HistoryRequest {
            conversation_id: 808,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound, "{err:?}");

    // An admin online through core a is online for core b (auto-assignment there counts
    // them), until the subscription that holds them ends.
    let online_on_b = async |b: &mut socketgram_proto::client::ChatClient| {
        b.list_online(pb::ListOnlineRequest {})
            .await
            .unwrap()
            .into_inner()
            .admins
    };
    let until = async |b: &mut socketgram_proto::client::ChatClient, want: &[&str]| {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while online_on_b(b).await != want {
            assert!(
                tokio::time::Instant::now() < deadline,
                "core b never saw {want:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let alice = support_events(&mut a, "alice").await;
    until(&mut b, &["alice"]).await;
    drop(alice);
    until(&mut b, &[]).await;
    c.stop().await;
}

/// The first event of `events` that `pick` takes, within `within`; `None` when none came.
async fn first_event<T>(
    events: &mut tonic::Streaming<pb::Event>,
    within: Duration,
    pick: impl Fn(pb::event::Kind) -> Option<T>,
) -> Option<T> {
    tokio::time::timeout(within, async {
        loop {
            let event = events.message().await.unwrap().expect("an event");
            if let Some(found) = event.kind.and_then(&pick) {
                break found;
            }
        }
    })
    .await
    .ok()
}
