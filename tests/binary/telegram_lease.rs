//! One Telegram deliverer at a time: several Telegram edges of one bot (the library's
//! `socketgram_edge_telegram::run`, each on a runtime and thread of its own, as separate
//! processes would be) against one core; only the holder of the delivery lease sends support
//! replies, and when it dies another takes over. "Dying" drops the edge's runtime on the spot:
//! nothing of it runs again, nothing is released, its connections just close, as after
//! kill -9. Each edge has a Bot API server of its own (`socketgram_tests::botapi`), so the test
//! knows which edge sent what; the chat's messages are what all of them got, in time order.

use std::{sync::Arc, time::Duration};

use socketgram_core::{config::Secret, store::Backend};
use socketgram_edge_telegram::config::{Limits, TelegramConfig};
use socketgram_proto::{
    client::{CoreClient, Cores},
    v1 as pb,
};
use socketgram_tests::{
    botapi::{BotApi, WAIT},
    db::TestDb,
    server::{TOKEN, TestServer},
};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

const BOT_TOKEN: &str = "123456:TEST-token_for-the-fake-api";
/// The bot's delivery consumer (and the name of its lease).
const CONSUMER: &str = "telegram:123456";
/// A chat id beyond 32 bits, linked to visitor 123.
const ANN: i64 = 5_000_000_001;
const VISITOR: u64 = 123;
/// What every support reply of these tests says, followed by its number.
const MARK: &str = "lease-check-";

/// A Telegram edge on a runtime and thread of its own, with its own Bot API server.
struct Edge {
    name: &'static str,
    api: Arc<BotApi>,
    /// Its graceful stop (SIGTERM).
    shutdown: CancellationToken,
    /// Its kill -9: the runtime is dropped where it is.
    kill: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Edge {
    async fn start(name: &'static str, core: &TestServer, lease_secs: u64) -> Edge {
        let api = Arc::new(BotApi::start(BOT_TOKEN).await);
        let config = TelegramConfig {
            token: Secret::new(BOT_TOKEN),
            api_url: api.url(),
            delivery_lease_secs: lease_secs,
            limits: Limits {
                per_chat_per_second: 1000,
                per_chat_per_minute: 100_000,
                overall_per_second: 1000,
            },
            ..TelegramConfig::default()
        };
        config.validate().expect("valid Telegram configuration");
        let url = format!("http://{}", core.grpc);
        let shutdown = CancellationToken::new();
        let (kill, killed) = oneshot::channel::<()>();
        let stop = shutdown.clone();
        let thread = std::thread::spawn(move || {
            // One thread: once the kill is seen, no task of this edge is ever polled again.
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime for the edge");
            runtime.block_on(async move {
                let client = CoreClient::connect(&url, TOKEN).await.expect("core");
                tokio::select! {
                    result = socketgram_edge_telegram::run(config, Cores::one(client), stop) => {
                        result.expect("the edge ran and stopped cleanly");
                    }
                    _ = killed => {}
                }
            });
            // Tasks still running (the delivery, the dispatcher) are dropped unfinished.
            runtime.shutdown_background();
        });
        Edge {
            name,
            api,
            shutdown,
            kill: Some(kill),
            thread: Some(thread),
        }
    }

    /// The reply numbers this edge's Bot API got for Ann, with when.
    fn replies(&self) -> Vec<(u32, std::time::Instant, &'static str)> {
        self.api
            .sent_to(ANN)
            .into_iter()
            .filter_map(|s| Some((reply_number(&s.text)?, s.at, self.name)))
            .collect()
    }

    /// kill -9.
    async fn kill(&mut self) {
        if let Some(kill) = self.kill.take() {
            let _ = kill.send(());
        }
        self.join().await;
    }

    /// SIGTERM, and the wait for the end.
    async fn stop(&mut self) {
        self.shutdown.cancel();
        self.join().await;
    }

    /// Waits for the edge's thread off the test's runtime, which serves the Bot APIs the
    /// edge still calls while it stops.
    async fn join(&mut self) {
        if let Some(thread) = self.thread.take() {
            tokio::task::spawn_blocking(move || thread.join())
                .await
                .expect("join task")
                .expect("the edge's thread ended");
        }
    }
}

impl Drop for Edge {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// The number of a support reply as the bot sent it ("... lease-check-7").
fn reply_number(text: &str) -> Option<u32> {
    let (_, rest) = text.split_once(MARK)?;
    rest.split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

/// The core (no Telegram edge of its own), admin alice, Ann's chat linked to visitor 123.
async fn core() -> (TestDb, TestServer, CoreClient) {
    let db = TestDb::create(Backend::Sqlite).await.expect("sqlite");
    let server = TestServer::start(&db.url, "").await;
    db.execute("INSERT INTO adm_account (aid, name, lid) VALUES ('alice', 'Alice', 2)")
        .await
        .expect("insert admin");
    let client = server.client().await;
    client
        .telegram
        .clone()
        .link(pb::LinkTelegramRequest {
            chat_id: ANN,
            conversation_id: VISITOR,
        })
        .await
        .expect("link Ann's chat");
    // The bot's delivery cursor exists before any reply (a new one starts at the newest
    // message): replies written while the edges start are delivered, not skipped.
    client
        .chat
        .clone()
        .get_delivery_cursor(pb::GetDeliveryCursorRequest {
            consumer: CONSUMER.into(),
        })
        .await
        .expect("delivery cursor");
    (db, server, client)
}

/// Alice's reply number `n` to visitor 123.
async fn reply(client: &CoreClient, n: u32) {
    client
        .chat
        .clone()
        .send_message(pb::SendMessageRequest {
            attachment_ids: Vec::new(),
            conversation_id: VISITOR,
            author: Some(pb::Author {
                kind: pb::AuthorKind::Admin as i32,
                admin_id: "alice".into(),
            }),
            text: format!("{MARK}{n}"),
            client_msg_id: String::new(),
        })
        .await
        .expect("reply stored");
}

/// What Ann's chat shows: the replies every edge sent, in the order they were sent.
fn chat(edges: &[&Edge]) -> Vec<(u32, std::time::Instant, &'static str)> {
    let mut all: Vec<_> = edges.iter().flat_map(|e| e.replies()).collect();
    all.sort_by_key(|&(_, at, _)| at);
    all
}

/// Waits until the chat shows every reply up to `n`.
async fn wait_for_replies(edges: &[&Edge], n: u32) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let seen: std::collections::BTreeSet<u32> = chat(edges).iter().map(|r| r.0).collect();
        if (1..=n).all(|i| seen.contains(&i)) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for replies 1..={n}; the chat shows {:?}",
            chat(edges)
                .iter()
                .map(|(n, _, e)| (n, e))
                .collect::<Vec<_>>()
        );
        // The Bot APIs record on their own tasks; polling their records is the wait.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until `check` holds (it reads what the Bot APIs recorded).
async fn wait_for(check: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !check() {
        assert!(tokio::time::Instant::now() < deadline, "timed out");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The edge among `edges` that sent the latest reply.
fn last_sender(edges: &[&Edge]) -> &'static str {
    chat(edges).last().expect("a reply was sent").2
}

/// While both edges run, one alone sends: every reply once, in order, all through one edge.
#[tokio::test]
async fn while_two_edges_run_one_alone_delivers() {
    let (db, server, client) = core().await;
    let mut a = Edge::start("a", &server, 2).await;
    let mut b = Edge::start("b", &server, 2).await;
    const N: u32 = 30;
    for n in 1..=N {
        reply(&client, n).await;
        if n % 10 == 0 {
            // Across several renewals (every 2/3 s): the holder keeps it.
            tokio::time::sleep(Duration::from_millis(700)).await;
        }
    }
    wait_for_replies(&[&a, &b], N).await;
    // A while more, for a second deliverer's copies to show if there were one.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let shown = chat(&[&a, &b]);
    let numbers: Vec<u32> = shown.iter().map(|r| r.0).collect();
    assert_eq!(numbers, (1..=N).collect::<Vec<_>>(), "{shown:?}");
    let senders: std::collections::BTreeSet<&str> = shown.iter().map(|r| r.2).collect();
    assert_eq!(senders.len(), 1, "one edge delivers: {shown:?}");
    a.stop().await;
    b.stop().await;
    assert!(server.terminate().await);
    db.drop_db().await;
}

/// The deliverer is killed (kill -9) in the middle of a stream of replies, three times over,
/// a fresh edge standing by each time: every reply reaches the chat, in order; none twice but,
/// at most, the one in flight at a kill (sent by the dead edge, then by its successor first).
/// The first kill is timed to land while a reply is in flight, so that case is exercised.
#[tokio::test]
async fn a_killed_deliverer_is_replaced_and_every_reply_arrives_once() {
    const KILLS: usize = 3;
    const PER_ROUND: u32 = 15;
    let (db, server, client) = core().await;
    let names = ["a", "b", "c", "d"];
    let mut edges = vec![
        Edge::start(names[0], &server, 1).await,
        Edge::start(names[1], &server, 1).await,
    ];
    let mut total = 0;
    let mut killed = Vec::new();
    for round in 0..KILLS {
        // Replies keep coming while the holder is killed part-way through them.
        let producer = {
            let client = client.clone();
            let first = total + 1;
            tokio::spawn(async move {
                for n in first..first + PER_ROUND {
                    reply(&client, n).await;
                    tokio::time::sleep(Duration::from_millis(15)).await;
                }
            })
        };
        let refs: Vec<&Edge> = edges.iter().collect();
        wait_for_replies(&refs, total + PER_ROUND / 3).await;
        let holder = last_sender(&refs);
        let idx = edges.iter().position(|e| e.name == holder).expect("holder");
        if round == 0 {
            // The worst moment, on purpose: Telegram has the reply, the edge does not know
            // yet (its answer is late), so the cursor has not moved.
            edges[idx].api.delay_send_answers(Duration::from_secs(2));
            let sent = edges[idx].replies().len();
            wait_for(|| edges[idx].replies().len() > sent).await;
        }
        // Otherwise wherever the edge is, just after a send of its was seen.
        edges[idx].kill().await;
        killed.push(holder);
        producer.await.expect("producer");
        total += PER_ROUND;
        // A fresh standby for the next round.
        if round + 1 < KILLS {
            edges.push(Edge::start(names[round + 2], &server, 1).await);
        }
        let refs: Vec<&Edge> = edges.iter().collect();
        wait_for_replies(&refs, total).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let refs: Vec<&Edge> = edges.iter().collect();
    let shown = chat(&refs);
    let numbers: Vec<u32> = shown.iter().map(|r| r.0).collect();
    let mut distinct = numbers.clone();
    distinct.dedup();
    assert_eq!(
        distinct,
        (1..=total).collect::<Vec<_>>(),
        "every reply, in order: {numbers:?}"
    );
    // Every repeat is a reply the killed edge sent last and its successor sent first.
    let mut repeats = 0;
    for pair in shown.windows(2) {
        let ((n1, _, from1), (n2, _, from2)) = (pair[0], pair[1]);
        if n1 == n2 {
            repeats += 1;
            assert!(
                killed.contains(&from1),
                "repeated by a live edge: {shown:?}"
            );
            assert_ne!(from1, from2, "one edge sent a reply twice: {shown:?}");
            let last_of_dead = shown.iter().rev().find(|r| r.2 == from1).expect("sent");
            assert_eq!(last_of_dead.0, n1, "only the reply in flight: {shown:?}");
        }
    }
    assert!(repeats <= KILLS, "{repeats} repeats in {KILLS} kills");
    assert!(
        repeats >= 1,
        "the kill while a reply was in flight repeats it: {shown:?}"
    );
    eprintln!(
        "kill -9 of the deliverer: {repeats} of {KILLS} kills repeated the reply in flight \
         ({} replies delivered)",
        total
    );
    for edge in &mut edges {
        edge.stop().await;
    }
    assert!(server.terminate().await);
    db.drop_db().await;
}

/// A graceful stop (SIGTERM) releases the lease: the standby takes over without waiting for
/// the expiry, and nothing is sent twice.
#[tokio::test]
async fn a_stopped_deliverer_hands_over_at_once() {
    // Long enough that waiting for the expiry would show: the standby asks every 2 s.
    const LEASE_SECS: u64 = 6;
    let (db, server, client) = core().await;
    let mut a = Edge::start("a", &server, LEASE_SECS).await;
    let mut b = Edge::start("b", &server, LEASE_SECS).await;
    reply(&client, 1).await;
    wait_for_replies(&[&a, &b], 1).await;
    let (holder, standby) = if last_sender(&[&a, &b]) == "a" {
        (&mut a, &b)
    } else {
        (&mut b, &a)
    };
    let stopped = std::time::Instant::now();
    holder.stop().await;
    reply(&client, 2).await;
    wait_for_replies(&[&*holder, standby], 2).await;
    let took = stopped.elapsed();
    assert!(
        took < Duration::from_secs(LEASE_SECS - 1),
        "the standby waited {took:?}, as for an expiry"
    );
    let shown = chat(&[&*holder, standby]);
    assert_eq!(
        shown.iter().map(|r| (r.0, r.2)).collect::<Vec<_>>(),
        [(1, holder.name), (2, standby.name)]
    );
    a.stop().await;
    b.stop().await;
    assert!(server.terminate().await);
    db.drop_db().await;
}

/// The same with real processes: two `socketgram edge-telegram` processes of one bot (each
/// with a Bot API of its own); the one delivering is killed with SIGKILL while replies keep
/// coming; the other takes over, and every reply reaches the chat in order, the one in flight
/// at the kill at most twice.
#[tokio::test]
async fn the_deliverer_process_killed_with_sigkill_is_replaced() {
    const N: u32 = 40;
    let (db, server, client) = core().await;
    let mut edges = Vec::new();
    for name in ["a", "b"] {
        let api = Arc::new(BotApi::start(BOT_TOKEN).await);
        let toml = format!(
            "[telegram]\ntoken = \"{BOT_TOKEN}\"\napi_url = \"{}\"\ndelivery_lease_secs = 1\n\n\
             [telegram.limits]\nper_chat_per_second = 1000\nper_chat_per_minute = 100000\n\
             overall_per_second = 1000\n",
            api.url()
        );
        let process = socketgram_tests::cluster::Process::edge_telegram(
            &format!("edge-telegram {name}"),
            &[format!("http://{}", server.grpc)],
            &toml,
        )
        .await;
        edges.push((name, api, process));
    }
    let shown = |edges: &[(&'static str, Arc<BotApi>, _)]| {
        let mut all: Vec<(u32, std::time::Instant, &'static str)> = edges
            .iter()
            .flat_map(|(name, api, _)| {
                api.sent_to(ANN)
                    .into_iter()
                    .filter_map(|s| Some((reply_number(&s.text)?, s.at, *name)))
            })
            .collect();
        all.sort_by_key(|&(_, at, _)| at);
        all
    };
    let mut killed = None;
    for n in 1..=N {
        reply(&client, n).await;
        tokio::time::sleep(Duration::from_millis(15)).await;
        if n == N / 3 {
            wait_for(|| shown(&edges).iter().any(|r| r.0 == n)).await;
            let holder = shown(&edges).last().expect("delivered").2;
            let edge = edges.iter_mut().find(|e| e.0 == holder).expect("holder");
            edge.2.kill().await;
            killed = Some(holder);
        }
    }
    wait_for(|| {
        let seen: std::collections::BTreeSet<u32> = shown(&edges).iter().map(|r| r.0).collect();
        (1..=N).all(|n| seen.contains(&n))
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let chat = shown(&edges);
    let mut numbers: Vec<u32> = chat.iter().map(|r| r.0).collect();
    let sent = numbers.len();
    numbers.dedup();
    assert_eq!(
        numbers,
        (1..=N).collect::<Vec<_>>(),
        "every reply, in order: {chat:?}"
    );
    assert!(
        sent <= N as usize + 1,
        "at most the reply in flight twice: {chat:?}"
    );
    let killed = killed.expect("a deliverer was killed");
    assert!(
        chat.iter().any(|r| r.2 != killed),
        "the other process took over: {chat:?}"
    );
    eprintln!(
        "deliverer process killed: {} of {N} replies repeated",
        sent - N as usize
    );
    for (_, _, process) in &mut edges {
        assert!(process.terminate().await);
    }
    assert!(server.terminate().await);
    db.drop_db().await;
}
