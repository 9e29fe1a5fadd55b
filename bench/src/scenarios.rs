//! The scenarios of a benchmark run (issue 5): connect, throughput, latency both ways,
//! fan-out to many admins, and sends through the gRPC API.
//!
//! Every scenario ends by itself: each wait has a deadline, a receiver stops once the senders
//! are done and nothing has arrived for [`QUIET`], and a socket the server closes (or a
//! server that crashes) ends that socket's part of the run with what arrived so far.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use futures::{StreamExt, stream};
use serde_json::{Value, json};
use tokio::{
    sync::{mpsc::UnboundedReceiver, watch},
    task::JoinSet,
    time::sleep_until,
};

use crate::{
    Acks, Collector, Report, Target, message_text,
    sio::{ACK, Client, Incoming},
    stats::{Latency, ProcSample},
};

/// A subscribed visitor.
pub struct Visitor {
    pub cid: u64,
    pub client: Client,
    pub events: UnboundedReceiver<Incoming>,
}

/// A connected admin.
pub struct Admin {
    pub client: Client,
    pub events: UnboundedReceiver<Incoming>,
}

const CONNECT_TIMEOUT: Duration = Duration::from_secs(60);

/// A receiver whose senders are done stops after this long without an event: what has not
/// arrived by then is lost (or was never sent: a server that echoes another message than the
/// one stored, LEGACY.md §9.6), and the run need not wait for its deadline to say so.
pub const QUIET: Duration = Duration::from_secs(2);

/// Longest wait for one gRPC call.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// `mid` of the `take history` that marks a subscribe done when the server sends no acks.
/// Message ids start at 1, so nothing is older: the answer is `drop history button` alone,
/// and nothing is stored.
pub const MARKER_MID: u64 = 1;

/// Connects visitors `offset..offset + n` of the run, `concurrency` at a time, and subscribes
/// each unless `handshake_only`.
///
/// With [`Acks::Subscribe`] a subscribe is done when the server acknowledges it (after the
/// history). With [`Acks::None`] the generator does what the legacy page can: it sends
/// `subscribe`, then `take history` older than [`MARKER_MID`], and the subscribe is done when
/// `drop history button` comes back. Both servers handle a socket's events in order (the legacy
/// one synchronously: room joined and visitor online before the next event is read), so that
/// answer means the subscribe was handled. A visitor with history may still be receiving it
/// then (the legacy server reads it from the database while it goes on): it is not counted, as
/// only messages of this run are (see [`crate::parse_text`]).
pub async fn connect_visitors(
    t: &Target,
    offset: usize,
    n: usize,
    concurrency: usize,
    handshake_only: bool,
) -> (Vec<Visitor>, Vec<String>) {
    let results: Vec<_> = stream::iter(offset..offset + n)
        .map(|i| {
            let t = t.clone();
            async move {
                let cid = t.cid_base + i as u64;
                let connect = async {
                    let (client, mut events) =
                        crate::sio::Client::connect(t.server, t.source(i), &t.visitor_query(cid))
                            .await
                            .map_err(|e| format!("visitor {cid}: {e}"))?;
                    if handshake_only {
                        return Ok(Visitor {
                            cid,
                            client,
                            events,
                        });
                    }
                    let (username, room) = (cid.to_string(), t.room(cid));
                    let subscribe = json!({ "room": room, "username": username });
                    match t.acks {
                        Acks::Subscribe => {
                            client.emit_ack("subscribe", &subscribe, 1);
                        }
                        Acks::None => {
                            let marker =
                                json!({ "username": username, "room": room, "mid": MARKER_MID });
                            client.emit("subscribe", &subscribe);
                            client.emit("take history", &marker);
                        }
                    }
                    while let Some(event) = events.recv().await {
                        let done = match (t.acks, event.name.as_str()) {
                            (Acks::Subscribe, ACK) => {
                                if let Some(error) = event.args.get(1).and_then(|a| a.get("error"))
                                {
                                    return Err(format!(
                                        "visitor {cid}: subscribe refused: {error}"
                                    ));
                                }
                                true
                            }
                            (Acks::None, "drop history button") => true,
                            (Acks::None, "chat error") => {
                                return Err(format!(
                                    "visitor {cid}: subscribe refused: {}",
                                    Value::Array(event.args)
                                ));
                            }
                            // History (`new message`) and the rest: not this run's messages.
                            _ => false,
                        };
                        if done {
                            return Ok(Visitor {
                                cid,
                                client,
                                events,
                            });
                        }
                    }
                    Err(format!("visitor {cid}: closed before subscribing"))
                };
                tokio::time::timeout(CONNECT_TIMEOUT, connect)
                    .await
                    .unwrap_or_else(|_| Err(format!("visitor {cid}: timed out")))
            }
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    let mut visitors = Vec::new();
    let mut errors = Vec::new();
    for r in results {
        match r {
            Ok(v) => visitors.push(v),
            Err(e) => errors.push(e),
        }
    }
    visitors.sort_by_key(|v| v.cid);
    (visitors, errors)
}

/// Connects `n` admins and makes sure each receives live messages (a probe goes through).
pub async fn connect_admins(
    t: &Target,
    n: usize,
    probe_from: &Visitor,
    run: u32,
) -> Result<Vec<Admin>, String> {
    let mut admins = Vec::new();
    for i in 0..n {
        let query = t.admin_query();
        let connect = Client::connect(t.admin_server, t.source(i), &query);
        let (client, events) = tokio::time::timeout(CONNECT_TIMEOUT, connect)
            .await
            .map_err(|_| format!("admin {i}: timed out"))?
            .map_err(|e| format!("admin {i}: {e}"))?;
        admins.push(Admin { client, events });
    }
    // The server admits an admin asynchronously: probe until every admin sees one.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut ready = vec![false; n];
    let mut probe = 0u64;
    while ready.iter().any(|r| !r) {
        if Instant::now() > deadline {
            return Err("admins never received the probe message".into());
        }
        probe += 1;
        let text = format!("probe {run} {probe}");
        probe_from.client.emit("new message", &json!({ "username": probe_from.cid.to_string(), "message": text, "room": t.room(probe_from.cid) }));
        for (admin, ready) in admins.iter_mut().zip(ready.iter_mut()) {
            let wait = tokio::time::sleep(Duration::from_millis(300));
            tokio::pin!(wait);
            while !*ready {
                tokio::select! {
                    () = &mut wait => break,
                    event = admin.events.recv() => match event {
                        Some(e) if e.name == "new message" && e.args.first().and_then(|p| p.get("message")).and_then(Value::as_str) == Some(&text) => *ready = true,
                        Some(_) => {}
                        None => return Err("admin disconnected".into()),
                    },
                }
            }
        }
    }
    Ok(admins)
}

/// Connects `visitors` visitors and `admins` admins that receive live messages; on failure
/// the reasons go to the report and `None` comes back.
async fn participants(
    t: &Target,
    run: u32,
    visitors: usize,
    admins: usize,
    report: &mut Report,
) -> Option<(Vec<Visitor>, Vec<Admin>)> {
    let (vs, errors) = connect_visitors(t, 0, visitors, t.connect_concurrency, false).await;
    if !errors.is_empty() || vs.is_empty() {
        report.errors.extend(errors);
        return None;
    }
    match connect_admins(t, admins, &vs[0], run).await {
        Ok(admins) => Some((vs, admins)),
        Err(e) => {
            report.errors.push(e);
            None
        }
    }
}

/// A scenario's report, with how it talked to the server among its parameters.
fn new_report(t: &Target, scenario: &str, params: Value) -> Report {
    let mut report = Report::new(scenario, params);
    report
        .params
        .insert("acks".into(), t.acks.to_string().into());
    // The connect scenario has a concurrency of its own.
    if scenario != "connect" {
        report
            .params
            .insert("connect_concurrency".into(), t.connect_concurrency.into());
    }
    report
}

fn sample(pid: Option<u32>) -> Option<ProcSample> {
    pid.and_then(ProcSample::read)
}

fn db_sample(t: &Target) -> Option<ProcSample> {
    t.db_process.as_deref().and_then(ProcSample::read_all)
}

fn cpu_figures(
    report: &mut Report,
    t: &Target,
    before: (Option<ProcSample>, Option<ProcSample>),
    seconds: f64,
) {
    if let (Some(b), Some(a)) = (before.0, sample(t.server_pid)) {
        report.figure("server_cpu_cores", round2(a.cores_since(&b, seconds)));
        report.figure("server_rss_mb", round2(a.rss_kb as f64 / 1024.0));
    }
    if let (Some(b), Some(a)) = (before.1, db_sample(t)) {
        report.figure("db_cpu_cores", round2(a.cores_since(&b, seconds)));
    }
}

pub(crate) fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// Scenario 1: connect and subscribe `n` visitors (only connect them with `handshake_only`,
/// to tell the connection's cost from the subscription's); connect rate and server memory
/// per connection; hold them for `hold`.
pub async fn connect(
    t: &Target,
    n: usize,
    concurrency: usize,
    hold: Duration,
    handshake_only: bool,
) -> Report {
    let mut report = new_report(
        t,
        "connect",
        json!({ "visitors": n, "concurrency": concurrency, "handshake_only": handshake_only }),
    );
    let before = sample(t.server_pid);
    // The generator's own share: on one machine it competes with the server for the cores.
    let generator_before = ProcSample::read(std::process::id());
    let start = Instant::now();
    let (visitors, errors) = connect_visitors(t, 0, n, concurrency, handshake_only).await;
    let seconds = start.elapsed().as_secs_f64();
    // Read at once: the CPU while connecting, not averaged over the settling below.
    let connected = sample(t.server_pid);
    if let (Some(b), Some(a)) = (generator_before, ProcSample::read(std::process::id())) {
        report.figure(
            "generator_cpu_cores_while_connecting",
            round2(a.cores_since(&b, seconds)),
        );
    }
    report.figure("connected", visitors.len());
    report.figure("seconds", round2(seconds));
    report.figure(
        "connects_per_second",
        round2(visitors.len() as f64 / seconds),
    );
    report.errors.extend(errors);
    // Let allocations settle before reading the server's memory.
    tokio::time::sleep(Duration::from_secs(2)).await;
    if let (Some(b), Some(c), Some(a)) = (before, connected, sample(t.server_pid)) {
        report.figure("server_rss_before_mb", round2(b.rss_kb as f64 / 1024.0));
        report.figure("server_rss_after_mb", round2(a.rss_kb as f64 / 1024.0));
        report.figure(
            "server_kb_per_connection",
            round2(a.rss_kb.saturating_sub(b.rss_kb) as f64 / visitors.len().max(1) as f64),
        );
        report.figure(
            "server_cpu_cores_while_connecting",
            round2(c.cores_since(&b, seconds)),
        );
    }
    tokio::time::sleep(hold).await;
    for v in &visitors {
        v.client.close();
    }
    report
}

/// Scenario 2: `messages` visitor messages with `in_flight` unconfirmed at a time, spread
/// over `visitors`; messages per second delivered to the admin.
///
/// A message is confirmed when the server's `new message` echo of one of the visitor's
/// messages comes back (as the legacy page shows it); delivered when that echo and the admin's
/// copy have arrived. Both are counted exactly once per message: a server that echoes another
/// message than the one stored (LEGACY.md §9.6) shows as duplicated and lost, not as a hang,
/// since every echo confirms one send whatever it carries.
pub async fn throughput(
    t: &Target,
    run: u32,
    visitors: usize,
    in_flight: usize,
    messages: u64,
) -> Report {
    let mut report = new_report(
        t,
        "throughput",
        json!({ "visitors": visitors, "in_flight": in_flight, "messages": messages }),
    );
    let Some((vs, mut admins)) = participants(t, run, visitors, 1, &mut report).await else {
        return report;
    };
    let admin = admins.remove(0);
    let window = (in_flight / vs.len()).max(1);
    let per_visitor = messages / vs.len() as u64;
    let extra = messages % vs.len() as u64;
    let expected = messages;
    let deadline = Duration::from_secs(120 + messages / 1000);
    let cpu_before = (sample(t.server_pid), db_sample(t));
    let start = Instant::now();
    let (done, sending) = watch::channel(false);
    let collector = tokio::spawn(collect(admin, run, start, expected, deadline, sending));
    let mut senders = JoinSet::new();
    for (i, v) in vs.into_iter().enumerate() {
        let quota = per_visitor + u64::from((i as u64) < extra);
        let room = t.room(v.cid);
        senders.spawn(async move {
            let Visitor {
                cid,
                client,
                mut events,
            } = v;
            let mut sent = Vec::with_capacity(quota as usize);
            let mut refused = Vec::new();
            let mut echoes = Collector::default();
            let mut confirmed = 0u64;
            let send = |seq: u64, sent: &mut Vec<(u64, u64)>| {
                let text = message_text(run, cid, seq, start.elapsed().as_micros() as u64);
                client.emit(
                    "new message",
                    &json!({ "username": cid.to_string(), "message": text, "room": room }),
                );
                sent.push((cid, seq));
            };
            for seq in 0..quota.min(window as u64) {
                send(seq, &mut sent);
            }
            let give_up = tokio::time::Instant::now() + deadline;
            while confirmed < quota {
                let event = tokio::select! {
                    () = sleep_until(give_up) => break,
                    e = events.recv() => e,
                };
                let Some(event) = event else {
                    echoes.closed = true;
                    break;
                };
                let refusal = event.name == "chat error";
                if refusal {
                    // Refused (a limit, a database outage): the run fails, saying why.
                    refused.push(format!(
                        "visitor {cid}: {}",
                        Value::Array(event.args.clone())
                    ));
                }
                // The visitor's own message coming back means it was stored and fanned out.
                let echo = event.name == "new message"
                    && event.args.first().is_some_and(|p| {
                        p.get("message")
                            .and_then(Value::as_str)
                            .and_then(|m| crate::parse_text(run, m))
                            .is_some_and(|(c, _, _)| c == cid)
                    });
                if echo && let Some(payload) = event.args.first() {
                    echoes.observe(run, payload, event.at, start);
                }
                if refusal || echo {
                    confirmed += 1;
                    let next = sent.len() as u64;
                    if next < quota {
                        send(next, &mut sent);
                    }
                }
            }
            client.close();
            (sent, refused, echoes)
        });
    }
    let mut sent = Vec::new();
    let mut echoed = Vec::new();
    while let Some(s) = senders.join_next().await {
        if let Ok((s, refused, echoes)) = s {
            echoes.settle(&mut report, &s);
            echoed.push(echoes.copies);
            sent.extend(s);
            report.errors.extend(refused.into_iter().take(3));
        }
    }
    let _ = done.send(true);
    let collector = collector.await.unwrap_or_default();
    report.sent = sent.len() as u64;
    collector.settle(&mut report, &sent);
    // Until the last delivery; a run where nothing arrived (a server that crashed at once)
    // lasted until its senders gave up, which keeps the CPU figures finite.
    let seconds = collector.last.map_or(start.elapsed().as_secs_f64(), |l| {
        l.duration_since(start).as_secs_f64()
    });
    report.figure("seconds", round2(seconds));
    report.figure(
        "delivered_per_second",
        round2(collector.unique() as f64 / seconds.max(1e-9)),
    );
    // What the server sent, duplicates included: differs from the unique count only when it
    // repeats messages.
    report.figure("admin_copies", collector.copies);
    report.figure("echo_copies", echoed.iter().sum::<u64>());
    report.figure("latency", collector.latency.summary());
    cpu_figures(&mut report, t, cpu_before, seconds);
    report
}

/// Receives at one admin until `expected` distinct messages arrived, `deadline` passed, or the
/// senders are done (`sending` turns true) and nothing came for [`QUIET`].
pub(crate) async fn collect(
    mut admin: Admin,
    run: u32,
    start: Instant,
    expected: u64,
    deadline: Duration,
    mut sending: watch::Receiver<bool>,
) -> Collector {
    let mut collector = Collector::default();
    let give_up = tokio::time::Instant::now() + deadline;
    let mut senders_done = *sending.borrow();
    while collector.unique() < expected {
        let quiet = tokio::time::Instant::now() + QUIET;
        let event = tokio::select! {
            () = sleep_until(give_up) => break,
            () = sleep_until(quiet), if senders_done => break,
            changed = sending.changed(), if !senders_done => {
                // A dropped sender also means nothing more will be sent.
                senders_done = changed.is_err() || *sending.borrow();
                continue;
            }
            e = admin.events.recv() => e,
        };
        let Some(event) = event else {
            collector.closed = true;
            break;
        };
        if event.name == "new message"
            && let Some(payload) = event.args.first()
        {
            collector.observe(run, payload, event.at, start);
        }
    }
    // Anything more arriving right after would be a duplicate: look for a moment.
    let linger = tokio::time::Instant::now() + Duration::from_millis(300);
    while let Ok(Some(event)) = tokio::time::timeout_at(linger, admin.events.recv()).await {
        if event.name == "new message"
            && let Some(payload) = event.args.first()
        {
            collector.observe(run, payload, event.at, start);
        }
    }
    admin.client.close();
    collector
}

/// Scenarios 3 and 5: visitors send at `rate` for `seconds`; `admins` admins each must
/// receive every message; latency visitor emit -> admin receive.
pub async fn visitor_to_admin(
    t: &Target,
    run: u32,
    visitors: usize,
    admins: usize,
    rate: u64,
    seconds: u64,
) -> Report {
    let name = if admins > 1 {
        "fanout"
    } else {
        "latency_visitor_to_admin"
    };
    let mut report = new_report(
        t,
        name,
        json!({ "visitors": visitors, "admins": admins, "rate": rate, "seconds": seconds }),
    );
    let Some((vs, admin_clients)) = participants(t, run, visitors, admins, &mut report).await
    else {
        return report;
    };
    let total = rate * seconds;
    let deadline = Duration::from_secs(seconds + 30);
    let cpu_before = (sample(t.server_pid), db_sample(t));
    let start = Instant::now();
    let (done, sending) = watch::channel(false);
    let collectors: Vec<_> = admin_clients
        .into_iter()
        .map(|a| tokio::spawn(collect(a, run, start, total, deadline, sending.clone())))
        .collect();
    let rooms: Vec<String> = vs.iter().map(|v| t.room(v.cid)).collect();
    let clock = tokio::time::Instant::now();
    let mut sent = Vec::with_capacity(total as usize);
    for n in 0..total {
        sleep_until(clock + Duration::from_nanos(n * 1_000_000_000 / rate)).await;
        let i = (n as usize) % vs.len();
        let v = &vs[i];
        let seq = n / vs.len() as u64;
        let text = message_text(run, v.cid, seq, start.elapsed().as_micros() as u64);
        v.client.emit(
            "new message",
            &json!({ "username": v.cid.to_string(), "message": text, "room": rooms[i] }),
        );
        sent.push((v.cid, seq));
    }
    let send_seconds = start.elapsed().as_secs_f64();
    let _ = done.send(true);
    let mut latency = Latency::default();
    let mut last = None;
    for c in collectors {
        let c = c.await.unwrap_or_default();
        c.settle(&mut report, &sent);
        latency.merge(&c.latency);
        last = last.max(c.last);
    }
    report.sent = sent.len() as u64;
    report.figure("achieved_rate", round2(sent.len() as f64 / send_seconds));
    report.figure(
        "deliveries_per_second",
        round2(
            report.delivered as f64
                / last.map_or(send_seconds, |l| l.duration_since(start).as_secs_f64()),
        ),
    );
    report.figure("latency", latency.summary());
    cpu_figures(&mut report, t, cpu_before, send_seconds);
    for v in &vs {
        v.client.close();
    }
    report
}

/// Scenario 4: the admin replies at `rate` for `seconds` to `visitors` round robin; latency
/// admin emit -> visitor receive.
pub async fn admin_to_visitor(
    t: &Target,
    run: u32,
    visitors: usize,
    rate: u64,
    seconds: u64,
) -> Report {
    let mut report = new_report(
        t,
        "latency_admin_to_visitor",
        json!({ "visitors": visitors, "rate": rate, "seconds": seconds, "admin_login": t.admin_login }),
    );
    let Some((vs, mut admins)) = participants(t, run, visitors, 1, &mut report).await else {
        return report;
    };
    let admin = admins.remove(0);
    let total = rate * seconds;
    let per_visitor = total.div_ceil(vs.len() as u64);
    let deadline = Duration::from_secs(seconds + 30);
    let cpu_before = (sample(t.server_pid), db_sample(t));
    let start = Instant::now();
    let targets: Vec<(u64, String)> = vs.iter().map(|v| (v.cid, t.room(v.cid))).collect();
    let (done, sending) = watch::channel(false);
    let receivers: Vec<_> = vs
        .into_iter()
        .map(|v| {
            let sending = sending.clone();
            tokio::spawn(async move {
                let Visitor { client, events, .. } = v;
                let receiver = Admin { client, events };
                collect(receiver, run, start, per_visitor, deadline, sending).await
            })
        })
        .collect();
    let errors = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let mut admin_events = admin.events;
    let errors_seen = errors.clone();
    let watcher = tokio::spawn(async move {
        while let Some(e) = admin_events.recv().await {
            if e.name == "chat error" {
                errors_seen
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(format!("admin refused: {}", Value::Array(e.args)));
            }
        }
    });
    let clock = tokio::time::Instant::now();
    let mut sent = Vec::new();
    for n in 0..total {
        sleep_until(clock + Duration::from_nanos(n * 1_000_000_000 / rate)).await;
        let (cid, room) = &targets[(n as usize) % targets.len()];
        let seq = n / targets.len() as u64;
        // The visitor's id leads the text: the reply lands in that visitor's room.
        let text = message_text(run, *cid, seq, start.elapsed().as_micros() as u64);
        admin.client.emit(
            "new message:servadm",
            &json!({ "username": cid, "message": text, "room": room, "adm": t.admin_login }),
        );
        sent.push((*cid, seq));
    }
    let send_seconds = start.elapsed().as_secs_f64();
    let _ = done.send(true);
    let mut latency = Latency::default();
    for (r, (cid, _)) in receivers.into_iter().zip(&targets) {
        let c = r.await.unwrap_or_default();
        let mine: Vec<_> = sent.iter().copied().filter(|(c2, _)| c2 == cid).collect();
        c.settle(&mut report, &mine);
        latency.merge(&c.latency);
    }
    watcher.abort();
    report.errors.extend(
        errors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
            .take(10),
    );
    admin.client.close();
    report.sent = sent.len() as u64;
    report.figure("achieved_rate", round2(sent.len() as f64 / send_seconds));
    report.figure("latency", latency.summary());
    cpu_figures(&mut report, t, cpu_before, send_seconds);
    report
}

/// Scenario 6: `messages` sends through the gRPC API on `streams` concurrent callers; an
/// admin on Socket.IO must receive each once.
pub async fn grpc(t: &Target, run: u32, streams: usize, messages: u64) -> Report {
    use socketgram_proto::{client::CoreClient, v1 as pb};
    let mut report = new_report(
        t,
        "grpc_send",
        json!({ "streams": streams, "messages": messages }),
    );
    let Some((url, token)) = t.grpc.clone() else {
        report
            .errors
            .push("scenario grpc needs --grpc-url and --grpc-token".into());
        return report;
    };
    let client = match CoreClient::connect(&url, &token).await {
        Ok(c) => c,
        Err(e) => {
            report.errors.push(e.to_string());
            return report;
        }
    };
    // One visitor socket to probe the admin with; the gRPC callers write as other visitors.
    let (vs, errors) = connect_visitors(t, 0, 1, 1, false).await;
    if !errors.is_empty() || vs.is_empty() {
        report.errors.extend(errors);
        return report;
    }
    let mut admins = match connect_admins(t, 1, &vs[0], run).await {
        Ok(a) => a,
        Err(e) => {
            report.errors.push(e);
            return report;
        }
    };
    let deadline = Duration::from_secs(120 + messages / 1000);
    let cpu_before = (sample(t.server_pid), db_sample(t));
    let start = Instant::now();
    let (done, sending) = watch::channel(false);
    let admin = admins.remove(0);
    let collector = tokio::spawn(collect(admin, run, start, messages, deadline, sending));
    let mut callers = JoinSet::new();
    for s in 0..streams {
        let mut chat = client.chat.clone();
        let cid = t.cid_base + 1 + s as u64;
        let quota = messages / streams as u64 + u64::from((s as u64) < messages % streams as u64);
        callers.spawn(async move {
            let mut sent = Vec::new();
            let mut errors = Vec::new();
            for seq in 0..quota {
                let text = message_text(run, cid, seq, start.elapsed().as_micros() as u64);
                let request = pb::SendMessageRequest {
                    attachment_ids: Vec::new(),
                    conversation_id: cid,
                    author: Some(pb::Author {
                        kind: pb::AuthorKind::Visitor as i32,
                        admin_id: String::new(),
                    }),
                    text,
                    client_msg_id: format!("{run}-{cid}-{seq}"),
                };
                match tokio::time::timeout(CALL_TIMEOUT, chat.send_message(request)).await {
                    Ok(Ok(_)) => sent.push((cid, seq)),
                    Ok(Err(status)) => errors.push(format!("SendMessage: {status}")),
                    Err(_) => errors.push(format!("SendMessage: no answer in {CALL_TIMEOUT:?}")),
                }
            }
            (sent, errors)
        });
    }
    let mut sent = Vec::new();
    while let Some(r) = callers.join_next().await {
        if let Ok((s, e)) = r {
            sent.extend(s);
            report.errors.extend(e.into_iter().take(5));
        }
    }
    let acked_seconds = start.elapsed().as_secs_f64();
    let _ = done.send(true);
    let c = collector.await.unwrap_or_default();
    report.sent = sent.len() as u64;
    c.settle(&mut report, &sent);
    let seconds = c
        .last
        .map_or(acked_seconds, |l| l.duration_since(start).as_secs_f64());
    report.figure(
        "acked_per_second",
        round2(sent.len() as f64 / acked_seconds),
    );
    report.figure(
        "delivered_per_second",
        round2(c.unique() as f64 / seconds.max(1e-9)),
    );
    report.figure("latency", c.latency.summary());
    cpu_figures(&mut report, t, cpu_before, seconds);
    vs[0].client.close();
    report
}
