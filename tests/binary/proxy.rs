//! Socketgram behind a real nginx configured with the README's snippet (issue 9): under the
//! default limits hundreds of visitors behind one proxy are not counted as one client, the
//! official `socket.io-client` works through it over WebSocket and long polling, and the
//! per-address limits count the address a trusted proxy forwarded, never one an untrusted
//! peer (or a visitor) wrote into the headers.
//!
//! Visitors are told apart by their loopback source address (127.0.0.0/8 is all local), which
//! nginx forwards in `X-Forwarded-For`; nginx itself reaches socketgram from 127.0.0.1.
//! Without nginx (or Node.js, for the official client) these tests print `SKIPPED`, except
//! under `CI=true`, where they fail. Every receive is under a timeout.

use std::{
    collections::HashSet,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    time::{Duration, Instant},
};

use futures::{SinkExt, StreamExt, stream};
use socketgram_admin_php_compat::room::{HashKind, room_of};
use socketgram_bench::{
    Collector, message_text,
    sio::{ACK, Client, Incoming},
};
use socketgram_core::store::Backend;
use socketgram_tests::{
    db::TestDb,
    nginx::{self, Nginx},
    server::TestServer,
    sio::{self, Handshake, SioClient, json},
};
use tokio::{
    net::{TcpSocket, TcpStream},
    sync::mpsc::UnboundedReceiver,
};
use tokio_tungstenite::{
    WebSocketStream,
    tungstenite::{
        Message,
        client::IntoClientRequest,
        http::{HeaderName, HeaderValue},
    },
};

const SECRET: &str = "qwerty";
/// How long one receive (or one connect) may take.
const WAIT: Duration = Duration::from_secs(20);
/// The refusal of a connection over `connections_per_ip`.
const TOO_MANY: &str = "too many connections from your address";
/// nginx's own address: trusted in most tests, so never a visitor's.
const NGINX_SOURCE: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// The legacy deployment with `trusted_proxies` and `[web.limits]` (empty: the defaults).
fn config(trusted_proxies: &[&str], limits: &str) -> String {
    format!(
        "[legacy]\nsecret = \"{SECRET}\"\nroom_hash = \"md5\"\n\n\
         [legacy.admin_param]\nname = \"adminpass\"\nvalue = \"admin\"\n\n\
         [web]\ntrusted_proxies = {trusted_proxies:?}\n\n[web.limits]\n{limits}"
    )
}

/// socketgram with nginx in front of it.
struct Site {
    server: TestServer,
    db: TestDb,
    nginx: Nginx,
}

impl Site {
    /// `None` when nginx is missing (after printing `SKIPPED`; fails under CI).
    async fn start(trusted_proxies: &[&str], limits: &str) -> Option<Self> {
        let exe = nginx::executable()?;
        let db = TestDb::create(Backend::Sqlite).await?;
        let server = TestServer::start(&db.url, &config(trusted_proxies, limits)).await;
        let snippet = nginx::readme_snippet(server.web.expect("serve runs the web edge"));
        let nginx = Nginx::start(&exe, &snippet.map, &snippet.location).await;
        Some(Self { server, db, nginx })
    }

    async fn stop(self) {
        drop(self.nginx);
        assert!(self.server.terminate().await, "socketgram exits cleanly");
        self.db.drop_db().await;
    }
}

fn room(cid: u64) -> String {
    room_of(HashKind::Md5, &cid.to_string(), SECRET)
}

fn visitor_query(cid: u64) -> String {
    format!("id={cid}&room={}", room(cid))
}

const ADMIN_QUERY: &str = "adminpass=admin";

/// The `i`-th visitor's own address: distinct for every `i` (up to 60,000), never nginx's.
fn visitor_address(i: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(
        127,
        1 + (i / 250 / 250) as u8,
        (i / 250 % 250) as u8,
        1 + (i % 250) as u8,
    ))
}

/// The next event a bench client received, within [`WAIT`].
async fn next(events: &mut UnboundedReceiver<Incoming>, who: &str) -> Incoming {
    match tokio::time::timeout(WAIT, events.recv()).await {
        Ok(Some(event)) => event,
        Ok(None) => panic!("{who}: disconnected"),
        Err(_) => panic!("{who}: nothing received within {WAIT:?}"),
    }
}

/// A subscribed legacy visitor (the benchmark's raw WebSocket client).
struct Visitor {
    cid: u64,
    client: Client,
    events: UnboundedReceiver<Incoming>,
}

/// Connects visitor `cid` from `local` to `server` and subscribes it (the ack says done).
async fn visitor(server: SocketAddr, local: IpAddr, cid: u64) -> Result<Visitor, String> {
    let who = format!("visitor {cid} from {local}");
    let connect = async {
        let (client, mut events) = Client::connect(server, local, &visitor_query(cid))
            .await
            .map_err(|e| format!("{who}: {e}"))?;
        client.emit_ack(
            "subscribe",
            &json!({ "room": room(cid), "username": cid.to_string() }),
            1,
        );
        loop {
            let event = events
                .recv()
                .await
                .ok_or_else(|| format!("{who}: closed before the subscribe ack"))?;
            match event.name.as_str() {
                ACK => {
                    if let Some(error) = event.args.get(1).and_then(|a| a.get("error")) {
                        return Err(format!("{who}: subscribe refused: {error}"));
                    }
                    return Ok(Visitor {
                        cid,
                        client,
                        events,
                    });
                }
                "chat error" => return Err(format!("{who}: {:?}", event.args)),
                _ => {}
            }
        }
    };
    tokio::time::timeout(WAIT, connect)
        .await
        .unwrap_or_else(|_| Err(format!("{who}: not subscribed within {WAIT:?}")))
}

/// Visitors, messages each: ~2,500 messages through one proxy, from 300+ addresses.
const VISITORS: usize = 320;
const PER_VISITOR: u64 = 8;
/// Tells this test's messages from any other text.
const RUN: u32 = 9;

/// The measured failure of issue 9 (300 visitors behind one proxy: 101 refused, 971 of 2,500
/// messages lost) under the default limits, with nginx trusted: nothing refused, lost or
/// duplicated, at the visitors or at the admin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundreds_of_visitors_behind_nginx_under_default_limits() {
    let Some(site) = Site::start(&["127.0.0.1"], "").await else {
        return;
    };
    let proxy = site.nginx.addr;
    let (admin, mut admin_events) =
        tokio::time::timeout(WAIT, Client::connect(proxy, NGINX_SOURCE, ADMIN_QUERY))
            .await
            .expect("admin connects in time")
            .expect("admin connects");

    let results: Vec<Result<Visitor, String>> = stream::iter(0..VISITORS)
        .map(|i| visitor(proxy, visitor_address(i), 1000 + i as u64))
        .buffer_unordered(64)
        .collect()
        .await;
    let (visitors, refused): (Vec<_>, Vec<_>) = results.into_iter().partition(Result::is_ok);
    let refused: Vec<String> = refused.into_iter().filter_map(Result::err).collect();
    assert!(
        refused.is_empty(),
        "{} of {VISITORS} visitors refused, e.g. {:?}",
        refused.len(),
        &refused[..refused.len().min(5)]
    );
    let visitors: Vec<Visitor> = visitors.into_iter().filter_map(Result::ok).collect();

    // Every visitor is online at the admin (live, or in the snapshot a joining admin gets):
    // from here on the admin receives every live message.
    let mut online = HashSet::new();
    let deadline = Instant::now() + 3 * WAIT;
    while online.len() < VISITORS {
        assert!(
            Instant::now() < deadline,
            "the admin saw {} of {VISITORS} visitors online",
            online.len()
        );
        let event = next(&mut admin_events, "admin").await;
        if event.name == "online"
            && let Some(cid) = event.args.first().and_then(|p| p["cid"].as_str())
        {
            online.insert(cid.to_owned());
        }
    }

    let start = Instant::now();
    for v in &visitors {
        for seq in 0..PER_VISITOR {
            let text = message_text(RUN, v.cid, seq, 0);
            v.client.emit(
                "new message",
                &json!({ "username": v.cid.to_string(), "message": text, "room": room(v.cid) }),
            );
        }
    }
    // Each visitor gets its messages back once, then sends `end`: once that is back too,
    // a repetition of an earlier message would have come already.
    let mut readers = tokio::task::JoinSet::new();
    for mut v in visitors {
        readers.spawn(async move {
            let who = format!("visitor {}", v.cid);
            let end = format!("end {}", v.cid);
            let mut own = Collector::default();
            loop {
                let event = next(&mut v.events, &who).await;
                match event.name.as_str() {
                    "chat error" => panic!("{who}: refused: {:?}", event.args),
                    "new message" => {
                        let payload = &event.args[0];
                        if payload["message"] == end.as_str() {
                            break;
                        }
                        if own.observe(RUN, payload, event.at, start) && own.unique() == PER_VISITOR
                        {
                            v.client.emit(
                                "new message",
                                &json!({ "username": v.cid.to_string(), "message": end, "room": room(v.cid) }),
                            );
                        }
                    }
                    _ => {}
                }
            }
            assert_eq!(own.unique(), PER_VISITOR, "{who}: its messages");
            assert_eq!(own.duplicates(), 0, "{who}: duplicates");
            assert_eq!(own.wrong, 0, "{who}: wrong payloads");
            v.client.close();
        });
    }

    let total = VISITORS as u64 * PER_VISITOR;
    let mut at_admin = Collector::default();
    let mut ends = 0;
    let deadline = Instant::now() + 6 * WAIT;
    while ends < VISITORS {
        assert!(
            Instant::now() < deadline,
            "the admin got {} of {total} messages and {ends} of {VISITORS} ends",
            at_admin.unique()
        );
        let event = next(&mut admin_events, "admin").await;
        if event.name == "new message"
            && let Some(payload) = event.args.first()
        {
            if payload["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("end "))
            {
                ends += 1;
            } else {
                at_admin.observe(RUN, payload, event.at, start);
            }
        }
    }
    while let Some(reader) = readers.join_next().await {
        if let Err(e) = reader {
            std::panic::resume_unwind(e.into_panic());
        }
    }
    assert_eq!(at_admin.unique(), total, "every message reached the admin");
    assert_eq!(
        at_admin.duplicates(),
        0,
        "no message reached the admin twice"
    );
    assert_eq!(at_admin.wrong, 0, "payloads at the admin");
    let stored = site
        .db
        .fetch_text("SELECT CAST(COUNT(*) AS TEXT) FROM messages")
        .await
        .expect("count messages");
    assert_eq!(
        stored.as_deref(),
        Some((total + VISITORS as u64).to_string().as_str()),
        "each message stored once"
    );
    admin.close();
    site.stop().await;
}

/// The official client through nginx: WebSocket, and long polling only (nginx must pass each
/// held response on at once, `proxy_buffering off`).
#[tokio::test]
async fn the_official_client_through_nginx_over_websocket_and_long_polling() {
    if !sio::available().await {
        return;
    }
    let Some(site) = Site::start(&["127.0.0.1"], "").await else {
        return;
    };
    let url = site.nginx.url();
    site.db
        .execute("INSERT INTO adm_account (aid, name, lid) VALUES ('alice', 'Alice', 2)")
        .await
        .expect("an admin");
    let mut admin = SioClient::open(
        "admin",
        &Handshake::legacy_admin(&url, "adminpass", "admin").with_transports(&["polling"]),
    )
    .await
    .expect("admin connects through nginx");

    for (cid, transport) in [(501u64, "websocket"), (502, "polling")] {
        let name = format!("visitor {cid} over {transport}");
        let mut visitor = SioClient::open(
            &name,
            &Handshake::legacy_visitor(&url, cid, &room(cid)).with_transports(&[transport]),
        )
        .await
        .unwrap_or_else(|e| panic!("{name}: refused: {e}"));
        let ack = visitor
            .emit_ack(
                "subscribe",
                &[json!({ "room": room(cid), "username": cid.to_string() })],
            )
            .await;
        assert!(ack.get("error").is_none(), "{name}: subscribed: {ack}");
        assert_eq!(
            admin.next_payload("online").await,
            json!({ "cid": cid.to_string() })
        );

        let text = format!("hello over {transport}");
        visitor
            .emit(
                "new message",
                &[json!({ "username": cid.to_string(), "message": text, "room": room(cid) })],
            )
            .await;
        let mine = visitor.next_payload("new message").await;
        assert_eq!(mine["message"], text.as_str(), "{name}: {mine}");
        assert_eq!(mine["username"], cid, "{name}: {mine}");
        assert_eq!(admin.next_payload("new message").await, mine);

        let answer = format!("answer over {transport}");
        admin
            .emit(
                "new message:servadm",
                &[json!({ "username": cid, "message": answer, "room": room(cid), "adm": "alice" })],
            )
            .await;
        let reply = visitor.next_payload("new message").await;
        assert_eq!(reply["message"], answer.as_str(), "{name}: {reply}");
        assert!(
            reply["adm"]
                .as_str()
                .is_some_and(|a| a.starts_with("Alice")),
            "{name}: {reply}"
        );
        // The admin sees its own reply too (every message of every conversation).
        assert_eq!(admin.next_payload("new message").await, reply);
        visitor.disconnect().await;
        assert_eq!(
            admin.next_payload("offline").await,
            json!({ "cid": cid.to_string() })
        );
    }
    site.stop().await;
}

/// A legacy visitor's Socket.IO connect over a raw WebSocket from `local` with extra request
/// `headers`: the open connection, or the `connect_error` message.
async fn raw_visitor(
    server: SocketAddr,
    local: IpAddr,
    cid: u64,
    headers: &[(&str, &str)],
) -> Result<WebSocketStream<TcpStream>, String> {
    let connect = async {
        let socket = TcpSocket::new_v4().map_err(|e| e.to_string())?;
        socket
            .bind(SocketAddr::new(local, 0))
            .map_err(|e| e.to_string())?;
        let tcp = socket.connect(server).await.map_err(|e| e.to_string())?;
        let mut request = format!(
            "ws://{server}/socket.io/?EIO=4&transport=websocket&{}",
            visitor_query(cid)
        )
        .into_client_request()
        .map_err(|e| e.to_string())?;
        for (name, value) in headers {
            request.headers_mut().append(
                HeaderName::from_bytes(name.as_bytes()).expect("header name"),
                HeaderValue::from_str(value).expect("header value"),
            );
        }
        let (mut ws, _) = tokio_tungstenite::client_async(request, tcp)
            .await
            .map_err(|e| e.to_string())?;
        // Engine.IO's open packet, then the Socket.IO connect of the default namespace.
        match ws.next().await {
            Some(Ok(Message::Text(t))) if t.starts_with('0') => {}
            other => return Err(format!("expected the open packet, got {other:?}")),
        }
        ws.send(Message::text("40"))
            .await
            .map_err(|e| e.to_string())?;
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(t))) if t.starts_with("40") => return Ok(ws),
                Some(Ok(Message::Text(t))) if t.starts_with("44") => {
                    let error: serde_json::Value =
                        serde_json::from_str(&t[2..]).map_err(|e| e.to_string())?;
                    return Err(error["message"].as_str().unwrap_or(&t).to_owned());
                }
                Some(Ok(_)) => {}
                other => return Err(format!("closed while connecting: {other:?}")),
            }
        }
    };
    tokio::time::timeout(WAIT, connect)
        .await
        .unwrap_or_else(|_| Err(format!("visitor {cid}: no answer within {WAIT:?}")))
}

/// Connects `n` visitors (ids from `cid`) from `local` to `server` with `headers`: how many
/// were refused as too many from one address (any other failure fails the test).
async fn refused_of(
    server: SocketAddr,
    local: IpAddr,
    cid: u64,
    n: u64,
    headers: &[(&str, &str)],
    open: &mut Vec<WebSocketStream<TcpStream>>,
) -> u64 {
    let mut refused = 0;
    for i in 0..n {
        match raw_visitor(server, local, cid + i, headers).await {
            Ok(ws) => open.push(ws),
            Err(e) if e == TOO_MANY => refused += 1,
            Err(e) => panic!("visitor {} from {local} {headers:?}: {e}", cid + i),
        }
    }
    refused
}

/// With nginx trusted, the limit counts each visitor's own address: the one nginx forwarded,
/// not a visitor's own `X-Forwarded-For` (nginx appends to it) and not nginx's. A trusted
/// peer's `X-Forwarded-For` and `Forwarded` name the client directly too.
#[tokio::test]
async fn limits_count_the_address_a_trusted_proxy_forwarded() {
    let Some(site) = Site::start(&["127.0.0.1"], "connections_per_ip = 2\n").await else {
        return;
    };
    let proxy = site.nginx.addr;
    let direct = site.server.web.expect("web edge");
    let mut open = Vec::new();
    let a = IpAddr::from([127, 0, 0, 2]);
    let b = IpAddr::from([127, 0, 0, 3]);
    assert_eq!(refused_of(proxy, a, 100, 3, &[], &mut open).await, 1);
    assert_eq!(refused_of(proxy, b, 200, 2, &[], &mut open).await, 0);
    // A visitor writing addresses of its own: nginx appends the real one, which counts.
    let c = IpAddr::from([127, 0, 0, 4]);
    for (i, spoof) in ["203.0.113.1", "203.0.113.2", "203.0.113.3"]
        .iter()
        .enumerate()
    {
        let refused = refused_of(
            proxy,
            c,
            300 + i as u64,
            1,
            &[("x-forwarded-for", spoof)],
            &mut open,
        )
        .await;
        assert_eq!(refused, u64::from(i == 2), "spoofed {spoof}");
    }
    // Straight from a trusted peer (127.0.0.1): the header names the client.
    let xff = [("x-forwarded-for", "198.51.100.7")];
    assert_eq!(
        refused_of(direct, NGINX_SOURCE, 400, 3, &xff, &mut open).await,
        1
    );
    let forwarded = [("forwarded", "for=\"[2001:db8::7]:4711\";proto=https")];
    assert_eq!(
        refused_of(direct, NGINX_SOURCE, 500, 3, &forwarded, &mut open).await,
        1
    );
    let other = [("x-forwarded-for", "198.51.100.8")];
    assert_eq!(
        refused_of(direct, NGINX_SOURCE, 600, 2, &other, &mut open).await,
        0
    );
    drop(open);
    site.stop().await;
}

/// When the peer is not a trusted proxy (here trusted_proxies names another address), the
/// forwarding headers are ignored: every visitor behind nginx counts as nginx, and a client
/// writing `X-Forwarded-For` straight to socketgram counts as itself.
#[tokio::test]
async fn forwarding_headers_from_an_untrusted_peer_are_ignored() {
    let Some(site) = Site::start(&["10.9.9.9"], "connections_per_ip = 2\n").await else {
        return;
    };
    let proxy = site.nginx.addr;
    let direct = site.server.web.expect("web edge");
    let mut open = Vec::new();
    let mut refused = Vec::new();
    for (i, last) in [2u8, 3, 4].into_iter().enumerate() {
        let local = IpAddr::from([127, 0, 0, last]);
        refused.push(refused_of(proxy, local, 100 + i as u64, 1, &[], &mut open).await);
    }
    assert_eq!(
        refused,
        [0, 0, 1],
        "three visitors behind an untrusted nginx are one client (of two connections at most)"
    );
    drop(open);

    let mut open = Vec::new();
    let spoofed = |n: u8| format!("203.0.113.{n}");
    let mut refusals = 0;
    for n in 1..=3u8 {
        let header = spoofed(n);
        refusals += refused_of(
            direct,
            IpAddr::from([127, 0, 0, 9]),
            200 + u64::from(n),
            1,
            &[("x-forwarded-for", &header)],
            &mut open,
        )
        .await;
    }
    assert_eq!(
        refusals, 1,
        "spoofed addresses from an untrusted peer are ignored"
    );
    drop(open);
    site.stop().await;
}

#[test]
fn visitor_addresses_are_distinct_and_never_nginx() {
    let all: HashSet<IpAddr> = (0..VISITORS * 4).map(visitor_address).collect();
    assert_eq!(all.len(), VISITORS * 4);
    assert!(!all.contains(&NGINX_SOURCE));
    assert!(all.iter().all(IpAddr::is_loopback));
}

/// The operator console behind the README's nginx (which passes `Host $host`, without the
/// port): a browser's sign-in, whose Origin names the proxy's address with its port, is
/// same-origin; the session and the console socket work through the proxy too.
#[tokio::test]
async fn the_console_signs_in_through_nginx() {
    use socketgram_tests::server::run_command;
    if !sio::available().await {
        return;
    }
    let Some(site) = Site::start(&["127.0.0.1"], "").await else {
        return;
    };
    let bin = env!("CARGO_BIN_EXE_socketgram");
    for (args, stdin) in [
        (&["admin", "add", "alice", "Alice"][..], ""),
        (&["admin", "passwd", "alice"][..], "alice password 1\n"),
    ] {
        let (ok, out) = run_command(bin, &site.db.url, args, stdin).await;
        assert!(ok, "{out}");
    }
    let url = site.nginx.url();
    let http = reqwest::Client::new();
    let signed = http
        .post(format!("{url}/console/api/sign-in"))
        .header("origin", &url)
        .json(&json!({ "login": "alice", "password": "alice password 1" }))
        .send()
        .await
        .unwrap();
    assert_eq!(signed.status(), 200);
    let cookie = signed.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let session = http
        .get(format!("{url}/console/api/session"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(session.status(), 200);
    let handshake = Handshake::token(&url, json!({ "console": true }))
        .with_header("cookie", &cookie)
        .with_header("origin", &url);
    let mut console = SioClient::open("console via nginx", &handshake)
        .await
        .expect("the console socket through nginx");
    let online = console.emit_ack("online:servadm", &[]).await;
    assert_eq!(online["data"]["admins"], json!(["alice"]), "{online}");
    console.disconnect().await;
    site.stop().await;
}

/// A file through the README's nginx: a ticket from a visitor's socket and a 3 MB upload (over
/// nginx's own 1 MB default, which the README raises), then the file by the link the legacy
/// page got in its text, whole, through nginx too.
#[tokio::test]
async fn a_file_goes_up_and_comes_back_through_nginx() {
    if !sio::available().await {
        return;
    }
    let Some(site) = Site::start(&["127.0.0.1"], "").await else {
        return;
    };
    let url = site.nginx.url();
    let cid = 7301;
    let mut visitor = SioClient::connect_legacy_visitor(&url, cid, &room(cid)).await;
    let subscribed = visitor
        .emit_ack(
            "subscribe",
            &[json!({ "room": room(cid), "username": cid.to_string() })],
        )
        .await;
    assert!(subscribed.get("data").is_some(), "{subscribed}");
    let ack = visitor
        .emit_ack("upload", &[json!({ "name": "scan.png", "size": 3 << 20 })])
        .await;
    let ticket = ack["data"]["url"].as_str().expect("a ticket").to_owned();
    // A PNG's signature, then 3 MB: a picture as far as the type goes (not decodable, so it
    // is kept without a thumbnail).
    let mut bytes = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec();
    bytes.resize(3 << 20, 7);
    let (status, body) = socketgram_tests::files::upload(&url, &ticket, bytes.clone()).await;
    assert_eq!(status, 201, "{body}");
    let ack = visitor
        .emit_ack(
            "new message",
            &[json!({ "username": cid, "room": room(cid), "message": "scan", "attachments": [body["data"]["id"]] })],
        )
        .await;
    assert!(ack.get("data").is_some(), "{ack}");
    let shown = visitor.next_payload("new message").await;
    let text = shown["message"].as_str().unwrap().to_owned();
    let link = text.split("): ").nth(1).expect("a link in the legacy text");
    // Without `[web] public_url` the link names the listener itself; behind nginx the same
    // path is fetched through the proxy.
    let path = &link[link.find("/files/").expect("a file's path")..];
    let fetched = reqwest::get(format!("{url}{path}")).await.unwrap();
    assert_eq!(fetched.status().as_u16(), 200);
    assert_eq!(fetched.bytes().await.unwrap().len(), bytes.len());
    visitor.disconnect().await;
    site.stop().await;
}
