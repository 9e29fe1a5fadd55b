//! Abuse scenarios: one attacker does something a deployment must survive while an innocent
//! client chats. Each run reports the server's memory and CPU (sampled from `/proc` every
//! [`SAMPLE_EVERY`]), the innocent client's visitor -> admin latency and losses, and what the
//! server did to the attacker.
//!
//! The innocent client is [`INNOCENT_VISITORS`] visitors on 127.0.0.2 sending
//! [`INNOCENT_RATE`] messages a second between them (one socket may send 10 a second under
//! the default limits) to an admin on 127.0.0.3; attackers come from addresses of their own,
//! so per-address limits do not mix the two up.

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use futures::{SinkExt, StreamExt, stream};
use serde_json::{Value, json};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpSocket, TcpStream},
    sync::watch,
    task::JoinSet,
    time::sleep_until,
};
use tokio_tungstenite::tungstenite::Message;

use crate::{
    Collector, Report, Target, message_text,
    scenarios::{Admin, QUIET, Visitor, collect, round2},
    sio::{ACK, Client, event_frame, handshake},
    stats::ProcSample,
};

/// How often the server's memory and CPU are read.
pub const SAMPLE_EVERY: Duration = Duration::from_millis(100);
/// Visitors of the innocent client, and the messages a second they send between them.
pub const INNOCENT_VISITORS: u64 = 4;
pub const INNOCENT_RATE: u64 = 20;
const INNOCENT_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
const ADMIN_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 3);
const WAIT: Duration = Duration::from_secs(15);

fn ip(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(a, b, c, d))
}

fn ms(d: Duration) -> f64 {
    round2(d.as_secs_f64() * 1000.0)
}

/// The server's memory and CPU, read every [`SAMPLE_EVERY`] until stopped.
pub struct Sampler {
    start: Instant,
    samples: Arc<Mutex<Vec<(Duration, ProcSample)>>>,
    stop: watch::Sender<bool>,
}

impl Sampler {
    pub fn start(pid: Option<u32>) -> Self {
        let start = Instant::now();
        let samples = Arc::new(Mutex::new(Vec::new()));
        let (stop, mut stopped) = watch::channel(false);
        if let Some(pid) = pid {
            let samples = samples.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(SAMPLE_EVERY);
                loop {
                    tokio::select! {
                        _ = tick.tick() => {}
                        _ = stopped.changed() => return,
                    }
                    let Some(s) = ProcSample::read(pid) else {
                        return;
                    };
                    samples
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push((start.elapsed(), s));
                }
            });
        }
        Self {
            start,
            samples,
            stop,
        }
    }

    fn all(&self) -> Vec<(Duration, ProcSample)> {
        self.samples
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// CPU seconds the server used between two instants (the samples nearest them).
    pub fn cpu_seconds_between(&self, from: Instant, to: Instant) -> Option<f64> {
        let (a, b) = (
            from.duration_since(self.start),
            to.duration_since(self.start),
        );
        let samples = self.all();
        let first = samples.iter().find(|(at, _)| *at >= a)?;
        let last = samples.iter().rev().find(|(at, _)| *at <= b)?;
        Some(last.1.cpu_ticks.saturating_sub(first.1.cpu_ticks) as f64 / 100.0)
    }

    /// RSS before/peak/after, CPU seconds over the run, into the report.
    pub fn finish(self, report: &mut Report) {
        let _ = self.stop.send(true);
        let samples = self.all();
        let (Some(first), Some(last)) = (samples.first(), samples.last()) else {
            return;
        };
        let mb = |kb: u64| round2(kb as f64 / 1024.0);
        let peak = samples.iter().map(|(_, s)| s.rss_kb).max().unwrap_or(0);
        report.figure("server_rss_before_mb", mb(first.1.rss_kb));
        report.figure("server_rss_peak_mb", mb(peak));
        report.figure("server_rss_after_mb", mb(last.1.rss_kb));
        report.figure(
            "server_cpu_seconds",
            round2(last.1.cpu_ticks.saturating_sub(first.1.cpu_ticks) as f64 / 100.0),
        );
        report.figure("samples", samples.len());
    }
}

/// Connects visitor `cid` from `from` and subscribes it.
pub async fn visitor_at(t: &Target, cid: u64, from: IpAddr) -> Result<Visitor, String> {
    let connect = async {
        let (client, mut events) = Client::connect(t.server, from, &t.visitor_query(cid))
            .await
            .map_err(|e| format!("visitor {cid}: {e}"))?;
        let subscribe = json!({ "room": t.room(cid), "username": cid.to_string() });
        client.emit_ack("subscribe", &subscribe, 1);
        while let Some(event) = events.recv().await {
            if event.name == ACK {
                if let Some(error) = event.args.get(1).and_then(|a| a.get("error")) {
                    return Err(format!("visitor {cid}: subscribe refused: {error}"));
                }
                return Ok(Visitor {
                    cid,
                    client,
                    events,
                });
            }
        }
        Err(format!("visitor {cid}: closed before subscribing"))
    };
    tokio::time::timeout(WAIT, connect)
        .await
        .unwrap_or_else(|_| Err(format!("visitor {cid}: timed out")))
}

/// Connects an admin from `from` and waits until it receives live messages (probes from
/// `probe`).
pub async fn admin_at(
    t: &Target,
    from: IpAddr,
    probe: &Visitor,
    run: u32,
) -> Result<Admin, String> {
    let (client, mut events) = Client::connect(t.server, from, &t.admin_query())
        .await
        .map_err(|e| format!("admin: {e}"))?;
    let deadline = Instant::now() + WAIT;
    for n in 0.. {
        if Instant::now() > deadline {
            return Err("the admin never received the probe message".into());
        }
        let text = format!("probe {run} {n}");
        probe.client.emit(
            "new message",
            &json!({ "username": probe.cid.to_string(), "message": text, "room": t.room(probe.cid) }),
        );
        let wait = tokio::time::sleep(Duration::from_millis(500));
        tokio::pin!(wait);
        loop {
            tokio::select! {
                () = &mut wait => break,
                e = events.recv() => match e {
                    Some(e) if e.name == "new message"
                        && e.args.first().and_then(|p| p.get("message")).and_then(Value::as_str) == Some(&text) =>
                        return Ok(Admin { client, events }),
                    Some(_) => {}
                    None => return Err("admin disconnected".into()),
                },
            }
        }
    }
    unreachable!("the probe loop returns")
}

/// What the innocent visitors sent (visitor, seq), how many were refused, how many emits
/// found the socket closed.
type InnocentSent = (Vec<(u64, u64)>, u64, u64);

/// The innocent client's traffic, running.
pub struct Innocent {
    stop: watch::Sender<bool>,
    sender: tokio::task::JoinHandle<InnocentSent>,
    collector: tokio::task::JoinHandle<Collector>,
    /// Messages sent by other parts of the run that the admin must receive too.
    pub extra_sent: Vec<(u64, u64)>,
}

impl Innocent {
    /// Connects the innocent visitors and admin and starts sending.
    pub async fn start(t: &Target, run: u32, start: Instant) -> Result<Self, String> {
        let mut visitors = Vec::new();
        for i in 0..INNOCENT_VISITORS {
            visitors.push(visitor_at(t, t.cid_base + i, IpAddr::V4(INNOCENT_IP)).await?);
        }
        let admin = admin_at(t, IpAddr::V4(ADMIN_IP), &visitors[0], run).await?;
        let (stop, mut stopped) = watch::channel(false);
        let (done, sending) = watch::channel(false);
        let collector = tokio::spawn(collect(
            admin,
            run,
            start,
            u64::MAX,
            Duration::from_secs(600),
            sending,
        ));
        let rooms: Vec<String> = visitors.iter().map(|v| t.room(v.cid)).collect();
        let sender = tokio::spawn(async move {
            let mut sent = Vec::new();
            let mut refused = 0;
            let mut closed = 0;
            let clock = tokio::time::Instant::now();
            let n_visitors = visitors.len();
            for n in 0.. {
                let at = clock + Duration::from_nanos(n * 1_000_000_000 / INNOCENT_RATE);
                tokio::select! {
                    () = sleep_until(at) => {}
                    _ = stopped.changed() => break,
                }
                let i = (n as usize) % n_visitors;
                let v = &mut visitors[i];
                while let Ok(e) = v.events.try_recv() {
                    if e.name == "chat error" {
                        refused += 1;
                    }
                }
                let seq = n / n_visitors as u64;
                let text = message_text(run, v.cid, seq, start.elapsed().as_micros() as u64);
                if v.client.emit(
                    "new message",
                    &json!({ "username": v.cid.to_string(), "message": text, "room": rooms[i] }),
                ) {
                    sent.push((v.cid, seq));
                } else {
                    closed += 1;
                }
            }
            let _ = done.send(true);
            // Refusals of the last messages, then let the visitors go.
            tokio::time::sleep(QUIET).await;
            for v in &mut visitors {
                while let Ok(e) = v.events.try_recv() {
                    if e.name == "chat error" {
                        refused += 1;
                    }
                }
                v.client.close();
            }
            (sent, refused, closed)
        });
        Ok(Self {
            stop,
            sender,
            collector,
            extra_sent: Vec::new(),
        })
    }

    /// Stops sending, waits for what is still on its way, and reports.
    pub async fn finish(self, report: &mut Report) {
        let _ = self.stop.send(true);
        let (mut sent, refused, closed) = self.sender.await.unwrap_or_default();
        let innocent = sent.len() as u64;
        let collector = self.collector.await.unwrap_or_default();
        let mut innocent_report = Report::default();
        collector.settle(&mut innocent_report, &sent);
        // What the admin lost of the innocent client's messages alone.
        let innocent_lost = innocent_report.lost;
        sent.extend(self.extra_sent);
        collector.settle(report, &sent);
        report.sent += sent.len() as u64;
        report.figure("innocent_sent", innocent);
        report.figure("innocent_lost", innocent_lost);
        report.figure("innocent_refused", refused);
        report.figure("innocent_socket_closed", closed);
        report.figure("innocent_latency", collector.latency.summary());
    }
}

/// A run's common frame: a report, the sampler, the innocent client, a second of baseline.
async fn begin(
    t: &Target,
    run: u32,
    scenario: &str,
    params: Value,
) -> Result<(Report, Sampler, Innocent, Instant), Report> {
    let mut report = Report::new(scenario, params);
    let start = Instant::now();
    let sampler = Sampler::start(t.server_pid);
    match Innocent::start(t, run, start).await {
        Ok(innocent) => {
            tokio::time::sleep(Duration::from_secs(1)).await;
            Ok((report, sampler, innocent, start))
        }
        Err(e) => {
            report.errors.push(format!("innocent client: {e}"));
            Err(report)
        }
    }
}

/// Ends a run: innocent traffic a little longer, then its figures, then the server's.
async fn end(mut report: Report, sampler: Sampler, innocent: Innocent) -> Report {
    tokio::time::sleep(Duration::from_secs(1)).await;
    innocent.finish(&mut report).await;
    sampler.finish(&mut report);
    report
}

/// A TCP connection from `from`.
async fn tcp_from(server: SocketAddr, from: IpAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(from, 0))?;
    let s = socket.connect(server).await?;
    s.set_nodelay(true)?;
    Ok(s)
}

/// Reads until the server closes; the time it did, or `None` at `until`.
async fn closed_at(
    mut read: impl AsyncReadExt + Unpin,
    until: tokio::time::Instant,
) -> Option<Instant> {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let r = tokio::select! {
            () = sleep_until(until) => return None,
            r = read.read(&mut buf) => r,
        };
        match r {
            Ok(0) | Err(_) => return Some(Instant::now()),
            Ok(_) => {}
        }
    }
}

/// Percentile of milliseconds (sorted in place).
fn pct(values: &mut [f64], q: f64) -> Value {
    if values.is_empty() {
        return Value::Null;
    }
    values.sort_by(f64::total_cmp);
    let i = ((values.len() as f64 - 1.0) * q).round() as usize;
    json!(values[i])
}

/// a. WebSocket connections (upgraded, no Socket.IO connect) that announce a frame of
/// `announced` bytes and send `payload` bytes of it, then hold for `hold`.
pub async fn partial_frames(
    t: &Target,
    run: u32,
    connections: usize,
    announced: u64,
    payload: usize,
    hold: Duration,
) -> Report {
    let params = json!({ "connections": connections, "announced_bytes": announced, "payload_bytes": payload, "hold_secs": hold.as_secs() });
    let (mut report, sampler, innocent, _) =
        match begin(t, run, "abuse_partial_frames", params).await {
            Ok(b) => b,
            Err(r) => return r,
        };
    let server = t.server;
    let until = tokio::time::Instant::now() + hold;
    let mut tasks = JoinSet::new();
    for i in 0..connections {
        tasks.spawn(async move {
            let mut s = tcp_from(server, ip(127, 0, 0, 4))
                .await
                .map_err(|e| e.to_string())?;
            let key = format!("{:024}", i);
            let head = format!(
                "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: {server}\r\n\
                 Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\
                 Sec-WebSocket-Key: {}\r\n\r\n",
                base64ish(&key)
            );
            s.write_all(head.as_bytes())
                .await
                .map_err(|e| e.to_string())?;
            // The 101 response head and the Engine.IO open packet.
            let mut got = Vec::new();
            let mut buf = [0u8; 4096];
            while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                match tokio::time::timeout(WAIT, s.read(&mut buf)).await {
                    Ok(Ok(n)) if n > 0 => got.extend_from_slice(&buf[..n]),
                    _ => return Err("no upgrade response".to_string()),
                }
            }
            if !got.starts_with(b"HTTP/1.1 101") {
                return Err(format!(
                    "upgrade refused: {}",
                    String::from_utf8_lossy(&got[..got.len().min(40)])
                ));
            }
            let (read, mut write) = s.into_split();
            let closed = tokio::spawn(closed_at(read, until));
            let sent_at = Instant::now();
            let mut frame = vec![0x81u8, 0x80 | 127];
            frame.extend_from_slice(&announced.to_be_bytes());
            frame.extend_from_slice(&[1, 2, 3, 4]);
            let mut written = 0usize;
            let chunk = vec![b'a' ^ 1; 64 * 1024];
            let mut ok = write.write_all(&frame).await.is_ok();
            while ok && written < payload {
                let n = chunk.len().min(payload - written);
                ok = tokio::time::timeout_at(until, write.write_all(&chunk[..n]))
                    .await
                    .is_ok_and(|r| r.is_ok());
                if ok {
                    written += n;
                }
            }
            let closed = closed.await.ok().flatten();
            drop(write);
            Ok::<_, String>((written, closed.map(|c| c.duration_since(sent_at))))
        });
    }
    let mut close_ms = Vec::new();
    let (mut open, mut failed, mut written) = (0, 0, 0);
    while let Some(r) = tasks.join_next().await {
        match r {
            Ok(Ok((w, Some(after)))) => {
                written += w;
                close_ms.push(ms(after));
            }
            Ok(Ok((w, None))) => {
                written += w;
                open += 1;
            }
            Ok(Err(e)) => {
                failed += 1;
                if report.errors.len() < 3 {
                    report.errors.push(format!("attacker: {e}"));
                }
            }
            Err(_) => failed += 1,
        }
    }
    report.figure("attacker_closed_by_server", close_ms.len());
    report.figure("attacker_still_open_at_end", open);
    report.figure("attacker_failed_to_upgrade", failed);
    report.figure("attacker_payload_bytes_written", written);
    report.figure("attacker_closed_after_ms_p50", pct(&mut close_ms, 0.5));
    report.figure("attacker_closed_after_ms_max", pct(&mut close_ms, 1.0));
    end(report, sampler, innocent).await
}

/// A valid-looking `Sec-WebSocket-Key` (any 16 bytes, base64): 24 characters.
fn base64ish(seed: &str) -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out: String = seed
        .bytes()
        .take(21)
        .map(|b| A[(b as usize) % 64] as char)
        .collect();
    while out.len() < 21 {
        out.push('A');
    }
    out.push_str("Q==");
    out
}

/// What an attacker socket saw from the server.
#[derive(Default, Debug)]
pub(crate) struct Seen {
    refused: u64,
    stored: u64,
    bytes: u64,
    closed: Option<Instant>,
}

/// Reads an attacker's WebSocket until it closes, `until`, or `stop` turns true: refusals,
/// own messages echoed, bytes, when it closed.
async fn watch_ws(
    mut stream: futures::stream::SplitStream<crate::sio::Ws>,
    until: tokio::time::Instant,
    mut stop: watch::Receiver<bool>,
) -> Seen {
    let mut seen = Seen::default();
    loop {
        let m = tokio::select! {
            () = sleep_until(until) => return seen,
            _ = stop.wait_for(|s| *s) => return seen,
            m = stream.next() => m,
        };
        match m {
            Some(Ok(Message::Text(text))) => {
                seen.bytes += text.len() as u64;
                if text.starts_with("42[\"chat error\"") || text.contains("\"error\":") {
                    seen.refused += 1;
                } else if text.starts_with("42[\"new message\"") {
                    seen.stored += 1;
                }
            }
            Some(Ok(Message::Binary(b))) => seen.bytes += b.len() as u64,
            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => {
                seen.closed = Some(Instant::now());
                return seen;
            }
            Some(Ok(_)) => {}
        }
    }
}

/// Subscribes over a raw WebSocket (ack 1).
/// A visitor connected from `addr` and subscribed.
async fn subscribed_visitor(t: &Target, addr: IpAddr, cid: u64) -> Result<crate::sio::Ws, String> {
    let mut ws = handshake(t.server, addr, &t.visitor_query(cid), None)
        .await
        .map_err(|e| e.to_string())?;
    raw_subscribe(&mut ws, t, cid).await?;
    Ok(ws)
}

async fn raw_subscribe(ws: &mut crate::sio::Ws, t: &Target, cid: u64) -> Result<(), String> {
    let subscribe = json!({ "room": t.room(cid), "username": cid.to_string() });
    ws.send(Message::text(event_frame("subscribe", &subscribe, Some(1))))
        .await
        .map_err(|e| e.to_string())?;
    let wait = async {
        while let Some(m) = ws.next().await {
            match m {
                Ok(Message::Text(t)) if t.starts_with("431") => return Ok(()),
                Ok(Message::Text(t)) if t.as_str() == "2" => {
                    let _ = ws.send(Message::text("3")).await;
                }
                Ok(_) => {}
                Err(e) => return Err(e.to_string()),
            }
        }
        Err("closed before subscribing".to_string())
    };
    tokio::time::timeout(WAIT, wait)
        .await
        .unwrap_or_else(|_| Err("subscribe timed out".into()))
}

/// One HTTP/1.1 request on a connection of its own; the status and the whole response.
async fn http(
    server: SocketAddr,
    from: IpAddr,
    method: &str,
    path: &str,
    body: &[u8],
) -> Result<(u16, Vec<u8>), String> {
    let go = async {
        let mut s = tcp_from(server, from).await.map_err(|e| e.to_string())?;
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {server}\r\nConnection: close\r\n\
             Content-Type: text/plain;charset=UTF-8\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        s.write_all(head.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        s.write_all(body).await.map_err(|e| e.to_string())?;
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out).await;
        let status = std::str::from_utf8(out.get(9..12).unwrap_or_default())
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("no HTTP status ({} bytes back)", out.len()))?;
        Ok((status, out))
    };
    tokio::time::timeout(WAIT, go)
        .await
        .unwrap_or_else(|_| Err("no answer".into()))
}

/// b. One authenticated visitor writes `events` `new message` packets in one go (and, with
/// `polling_posts`, another visitor on the polling transport POSTs that many bodies of
/// `events_per_post` packets); then `after` of watching.
pub async fn flood(
    t: &Target,
    run: u32,
    events: u64,
    polling_posts: u64,
    events_per_post: u64,
    after: Duration,
) -> Report {
    let params = json!({ "events": events, "polling_posts": polling_posts, "events_per_post": events_per_post, "after_secs": after.as_secs() });
    let (mut report, sampler, innocent, _) = match begin(t, run, "abuse_flood", params).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let cid = t.cid_base + 100;
    let ws = match subscribed_visitor(t, ip(127, 0, 0, 5), cid).await {
        Ok(ws) => ws,
        Err(e) => {
            report.errors.push(format!("attacker: {e}"));
            return end(report, sampler, innocent).await;
        }
    };
    let (mut sink, stream) = ws.split();
    let until = tokio::time::Instant::now() + after + Duration::from_secs(60);
    let (stop_watch, stop_rx) = watch::channel(false);
    let watcher = tokio::spawn(watch_ws(stream, until, stop_rx));
    let room = t.room(cid);
    let started = Instant::now();
    let mut written = 0u64;
    for n in 0..events {
        let payload = json!({ "username": cid.to_string(), "message": format!("flood {run} {n}"), "room": room });
        if sink
            .feed(Message::text(event_frame("new message", &payload, None)))
            .await
            .is_err()
        {
            break;
        }
        written += 1;
    }
    let flushed = sink.flush().await.is_ok();
    let ws_seconds = started.elapsed().as_secs_f64();

    // The polling transport: a session, its connect, then the POSTs.
    let mut statuses = std::collections::BTreeMap::<String, u64>::new();
    if polling_posts > 0 {
        let pcid = t.cid_base + 101;
        let from = ip(127, 0, 0, 6);
        let base = format!(
            "/socket.io/?EIO=4&transport=polling&{}",
            t.visitor_query(pcid)
        );
        let sid = match http(t.server, from, "GET", &base, b"").await {
            Ok((200, body)) => {
                let body = String::from_utf8_lossy(&body).to_string();
                body.split("\"sid\":\"")
                    .nth(1)
                    .and_then(|r| r.split('"').next())
                    .map(str::to_owned)
            }
            Ok((status, _)) => {
                report
                    .errors
                    .push(format!("polling handshake: HTTP {status}"));
                None
            }
            Err(e) => {
                report.errors.push(format!("polling handshake: {e}"));
                None
            }
        };
        if let Some(sid) = sid {
            let path = format!("{base}&sid={sid}");
            let subscribe = event_frame(
                "subscribe",
                &json!({ "room": t.room(pcid), "username": pcid.to_string() }),
                None,
            );
            let _ = http(t.server, from, "POST", &path, b"40").await;
            let _ = http(t.server, from, "POST", &path, subscribe.as_bytes()).await;
            // One after another, as one client does (the transport refuses overlapping POSTs).
            for p in 0..polling_posts {
                let body: Vec<String> = (0..events_per_post)
                    .map(|n| {
                        event_frame(
                            "new message",
                            &json!({ "username": pcid.to_string(), "message": format!("flood {run} p{p} {n}"), "room": t.room(pcid) }),
                            None,
                        )
                    })
                    .collect();
                let key = match http(
                    t.server,
                    from,
                    "POST",
                    &path,
                    body.join("\u{1e}").as_bytes(),
                )
                .await
                {
                    Ok((status, _)) => format!("HTTP {status}"),
                    Err(e) => e,
                };
                *statuses.entry(key).or_default() += 1;
            }
            // What the session holds for the client now.
            match http(t.server, from, "GET", &path, b"").await {
                Ok((status, body)) => {
                    report.figure("polling_get_after_status", status);
                    report.figure("polling_get_after_bytes", body.len());
                }
                Err(e) => report.figure("polling_get_after_status", e),
            }
        }
    }
    let stopped = Instant::now();
    let send_seconds = stopped.duration_since(started).as_secs_f64();
    tokio::time::sleep(after).await;
    let cpu_after = sampler.cpu_seconds_between(stopped, Instant::now());
    let rss_now = t.server_pid.and_then(ProcSample::read);
    drop(sink);
    // The watcher ends once the socket closes; if it is still open, stop looking.
    let _ = stop_watch.send(true);
    let seen = watcher.await.unwrap_or_default();
    report.figure("attacker_events_written", written);
    report.figure("attacker_flushed", flushed);
    report.figure("attacker_ws_write_seconds", round2(ws_seconds));
    report.figure("attacker_send_seconds", round2(send_seconds));
    report.figure("attacker_refusals_received", seen.refused);
    report.figure("attacker_messages_stored_echoed", seen.stored);
    report.figure(
        "attacker_disconnected_after_ms",
        seen.closed
            .map_or(Value::Null, |c| json!(ms(c.duration_since(started)))),
    );
    report.figure(
        "server_cpu_seconds_after_sender_stopped",
        cpu_after.map_or(Value::Null, |c| json!(round2(c))),
    );
    report.figure("after_secs", after.as_secs());
    if let Some(s) = rss_now {
        report.figure(
            "server_rss_at_end_of_watch_mb",
            round2(s.rss_kb as f64 / 1024.0),
        );
    }
    if polling_posts > 0 {
        report.figure("polling_posts", json!(statuses));
    }
    end(report, sampler, innocent).await
}

/// The state of the server's side of a TCP connection (`/proc/net/tcp`): the hex state
/// (`01` established), or `None` when the server holds no such socket any more.
fn server_side_state(server: SocketAddr, client: SocketAddr) -> Option<String> {
    let hex = |a: SocketAddr| match a {
        SocketAddr::V4(v4) => format!(
            "{:08X}:{:04X}",
            u32::from_le_bytes(v4.ip().octets()),
            v4.port()
        ),
        SocketAddr::V6(_) => String::new(),
    };
    let (local, remote) = (hex(server), hex(client));
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    table.lines().skip(1).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.get(1) == Some(&local.as_str()) && f.get(2) == Some(&remote.as_str()))
            .then(|| f.get(3).map(|s| (*s).to_owned()))
            .flatten()
    })
}

/// c. An admin whose socket stops reading (a 4 KiB receive buffer, never read) while
/// `visitors` visitors send `rate` messages a second of `message_bytes` for `seconds`.
pub async fn slow_admin(
    t: &Target,
    run: u32,
    visitors: usize,
    rate: u64,
    seconds: u64,
    message_bytes: usize,
) -> Report {
    let params = json!({ "visitors": visitors, "rate": rate, "seconds": seconds, "message_bytes": message_bytes });
    let (mut report, sampler, mut innocent, start) =
        match begin(t, run, "abuse_slow_admin", params).await {
            Ok(b) => b,
            Err(r) => return r,
        };
    // Ten visitors per address keeps them under the per-address event limit.
    let connected: Vec<_> = stream::iter(0..visitors)
        .map(|i| {
            let from = ip(127, 0, 1, 1 + (i / 10) as u8);
            visitor_at(t, t.cid_base + 1000 + i as u64, from)
        })
        .buffer_unordered(32)
        .collect()
        .await;
    let mut vs = Vec::new();
    for c in connected {
        match c {
            Ok(v) => vs.push(v),
            Err(e) if report.errors.len() < 3 => report.errors.push(e),
            Err(_) => {}
        }
    }
    if vs.is_empty() {
        return end(report, sampler, innocent).await;
    }
    let slow = match handshake(t.server, ip(127, 0, 0, 7), &t.admin_query(), Some(4096)).await {
        Ok(ws) => ws,
        Err(e) => {
            report.errors.push(format!("slow admin: {e}"));
            return end(report, sampler, innocent).await;
        }
    };
    let slow_addr = slow.get_ref().local_addr().ok();
    // Let the server admit it before the load.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let load_start = Instant::now();
    let (stop_watch, mut stop_rx) = watch::channel(false);
    let server = t.server;
    let watcher = tokio::spawn(async move {
        let addr = slow_addr?;
        let mut tick = tokio::time::interval(SAMPLE_EVERY);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop_rx.changed() => return None,
            }
            match server_side_state(server, addr) {
                Some(s) if s == "01" => {}
                other => return Some((Instant::now(), other.unwrap_or_else(|| "gone".into()))),
            }
        }
    });
    let pad = "x".repeat(message_bytes.saturating_sub(40));
    let rooms: Vec<String> = vs.iter().map(|v| t.room(v.cid)).collect();
    let total = rate * seconds;
    let clock = tokio::time::Instant::now();
    let mut sent = Vec::new();
    for n in 0..total {
        sleep_until(clock + Duration::from_nanos(n * 1_000_000_000 / rate)).await;
        let count = vs.len();
        let i = (n as usize) % count;
        let v = &mut vs[i];
        while v.events.try_recv().is_ok() {}
        let seq = n / count as u64;
        let text = format!(
            "{} {pad}",
            message_text(run, v.cid, seq, start.elapsed().as_micros() as u64)
        );
        v.client.emit(
            "new message",
            &json!({ "username": v.cid.to_string(), "message": text, "room": rooms[i] }),
        );
        sent.push((v.cid, seq));
    }
    let load_seconds = load_start.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let _ = stop_watch.send(true);
    let closed = watcher.await.ok().flatten();
    // Now read what the slow admin was sent, for a moment.
    let (_sink, stream) = slow.split();
    let seen = watch_ws(
        stream,
        tokio::time::Instant::now() + Duration::from_secs(3),
        watch::channel(false).1,
    )
    .await;
    report.figure("load_messages", sent.len());
    report.figure("load_seconds", round2(load_seconds));
    report.figure("slow_admin_disconnected_by_server", closed.is_some());
    if let Some((at, state)) = &closed {
        report.figure(
            "slow_admin_disconnected_after_ms",
            ms(at.duration_since(load_start)),
        );
        report.figure("slow_admin_server_socket_state", state.as_str());
    }
    report.figure("slow_admin_bytes_read_afterwards", seen.bytes);
    report.figure("slow_admin_stream_ended", seen.closed.is_some());
    for v in &vs {
        v.client.close();
    }
    innocent.extra_sent = sent;
    end(report, sampler, innocent).await
}

/// What a fresh client got: connected, subscribed and a message acknowledged, in how long.
async fn fresh_client(t: &Target, cid: u64, from: IpAddr) -> Value {
    let began = Instant::now();
    let go = async {
        let mut v = visitor_at(t, cid, from).await?;
        let payload =
            json!({ "username": cid.to_string(), "message": "fresh", "room": t.room(cid) });
        v.client.emit_ack("new message", &payload, 2);
        while let Some(e) = v.events.recv().await {
            if e.name == ACK && e.args.first().and_then(Value::as_u64) == Some(2) {
                v.client.close();
                return match e.args.get(1).and_then(|a| a.get("error")) {
                    Some(error) => Err(format!("send refused: {error}")),
                    None => Ok(()),
                };
            }
        }
        Err("closed before the ack".to_string())
    };
    let r = tokio::time::timeout(WAIT, go)
        .await
        .unwrap_or_else(|_| Err("timed out".into()));
    json!({ "ok": r.is_ok(), "ms": ms(began.elapsed()), "error": r.err() })
}

/// d. `connections` connections from one address that trickle an HTTP request head, one
/// byte every `interval`, for `seconds`; fresh clients try to chat meanwhile.
pub async fn slowloris(
    t: &Target,
    run: u32,
    connections: usize,
    interval: Duration,
    seconds: u64,
) -> Report {
    let params = json!({ "connections": connections, "interval_secs": interval.as_secs_f64(), "seconds": seconds });
    let (mut report, sampler, innocent, _) = match begin(t, run, "abuse_slowloris", params).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let server = t.server;
    let attack_start = Instant::now();
    let until = tokio::time::Instant::now() + Duration::from_secs(seconds);
    let mut tasks = JoinSet::new();
    for _ in 0..connections {
        tasks.spawn(async move {
            let s = tcp_from(server, ip(127, 0, 0, 8))
                .await
                .map_err(|e| e.to_string())?;
            let opened = Instant::now();
            let (read, mut write) = s.into_split();
            let closed = tokio::spawn(closed_at(read, until));
            let head = format!(
                "GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: {server}\r\nX-Padding: "
            );
            let mut bytes = head.into_bytes().into_iter().chain(std::iter::repeat(b'a'));
            loop {
                if closed.is_finished() {
                    break;
                }
                let b = bytes.next().unwrap_or(b'a');
                if write.write_all(&[b]).await.is_err() {
                    break;
                }
                tokio::select! {
                    () = tokio::time::sleep(interval) => {}
                    () = sleep_until(until) => break,
                }
            }
            let closed = closed.await.ok().flatten();
            Ok::<_, String>((opened, closed.map(|c| c.duration_since(opened))))
        });
    }
    // Fresh clients while it goes on, from another address and from the attacker's.
    let mut fresh = Vec::new();
    for (k, at) in [3u64, seconds / 2, seconds.saturating_sub(3)]
        .into_iter()
        .enumerate()
    {
        sleep_until(tokio::time::Instant::from_std(
            attack_start + Duration::from_secs(at),
        ))
        .await;
        let other = fresh_client(t, t.cid_base + 200 + k as u64, ip(127, 0, 0, 9)).await;
        let same = fresh_client(t, t.cid_base + 300 + k as u64, ip(127, 0, 0, 8)).await;
        fresh.push(json!({ "at_secs": at, "other_address": other, "attacker_address": same }));
    }
    let rss_during = t.server_pid.and_then(ProcSample::read);
    let mut lifetimes = Vec::new();
    let (mut open, mut failed) = (0, 0);
    let mut connect_errors = std::collections::BTreeMap::<String, u64>::new();
    while let Some(r) = tasks.join_next().await {
        match r {
            Ok(Ok((_, Some(after)))) => lifetimes.push(ms(after)),
            Ok(Ok((_, None))) => open += 1,
            Ok(Err(e)) => {
                failed += 1;
                *connect_errors.entry(e).or_default() += 1;
            }
            Err(_) => failed += 1,
        }
    }
    report.figure("attacker_connected", lifetimes.len() + open);
    report.figure("attacker_connect_failed", failed);
    report.figure("attacker_connect_errors", json!(connect_errors));
    report.figure("attacker_closed_by_server", lifetimes.len());
    report.figure("attacker_open_at_end", open);
    report.figure("attacker_closed_after_ms_p50", pct(&mut lifetimes, 0.5));
    report.figure("attacker_closed_after_ms_max", pct(&mut lifetimes, 1.0));
    report.figure("fresh_clients", json!(fresh));
    if let Some(s) = rss_during {
        report.figure(
            "server_rss_with_attack_open_mb",
            round2(s.rss_kb as f64 / 1024.0),
        );
    }
    end(report, sampler, innocent).await
}

/// e. `events` events whose names are `name_bytes` long; what the server sent back, and how
/// much its log grew (`server_log`).
pub async fn amplification(
    t: &Target,
    run: u32,
    events: u64,
    name_bytes: usize,
    server_log: Option<&std::path::Path>,
) -> Report {
    let params = json!({ "events": events, "name_bytes": name_bytes });
    let (mut report, sampler, innocent, _) =
        match begin(t, run, "abuse_amplification", params).await {
            Ok(b) => b,
            Err(r) => return r,
        };
    let log_size = || {
        server_log
            .and_then(|p| std::fs::metadata(p).ok())
            .map(|m| m.len())
    };
    let log_before = log_size();
    let cid = t.cid_base + 400;
    let ws = match subscribed_visitor(t, ip(127, 0, 0, 10), cid).await {
        Ok(ws) => ws,
        Err(e) => {
            report.errors.push(format!("attacker: {e}"));
            return end(report, sampler, innocent).await;
        }
    };
    let (mut sink, stream) = ws.split();
    let started = Instant::now();
    let (stop_watch, stop_rx) = watch::channel(false);
    let watcher = tokio::spawn(watch_ws(
        stream,
        tokio::time::Instant::now() + Duration::from_secs(60),
        stop_rx,
    ));
    let name = "a".repeat(name_bytes);
    let mut sent_bytes = 0u64;
    let mut written = 0u64;
    for n in 0..events {
        let frame = event_frame(&name, &json!({ "n": n }), Some(n + 10));
        sent_bytes += frame.len() as u64;
        if sink.send(Message::text(frame)).await.is_err() {
            break;
        }
        written += 1;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    drop(sink);
    let _ = stop_watch.send(true);
    let seen = watcher.await.unwrap_or_default();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let log_after = log_size();
    report.figure("attacker_events_written", written);
    report.figure("attacker_bytes_sent", sent_bytes);
    report.figure("server_bytes_sent_back", seen.bytes);
    report.figure(
        "amplification_ratio",
        round2(seen.bytes as f64 / sent_bytes.max(1) as f64),
    );
    report.figure("attacker_refusals_received", seen.refused);
    report.figure(
        "attacker_disconnected_after_ms",
        seen.closed
            .map_or(Value::Null, |c| json!(ms(c.duration_since(started)))),
    );
    if let (Some(b), Some(a)) = (log_before, log_after) {
        report.figure("server_log_grew_bytes", a.saturating_sub(b));
    }
    end(report, sampler, innocent).await
}
