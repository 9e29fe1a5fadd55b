//! The fault matrix: the server killed (-9), stopped (SIGTERM) or cut off from its database
//! (through [`crate::proxy`]) while visitors send with acks and client message ids; then what
//! the database holds against what the clients were told.
//!
//! The generator starts the server itself (`--server-bin`, `--config`) so it can kill and
//! restart it on the same database; it reads the database back through the server's gRPC
//! `History` (every message of the run's visitors, oldest first).

use std::{
    collections::{BTreeMap, HashMap},
    net::SocketAddr,
    path::PathBuf,
    process::Stdio,
    time::{Duration, Instant},
};

use serde_json::{Value, json};
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, Command},
    sync::watch,
    task::JoinSet,
};

use crate::{
    Report, Target, message_text, parse_text,
    proxy::{Mode, Proxy},
    scenarios::{connect_visitors, round2},
    sio::ACK,
};

/// How to run the server.
#[derive(Clone, Debug)]
pub struct ServerSpec {
    pub bin: PathBuf,
    pub config: PathBuf,
    /// Extra environment (the database URL through the proxy).
    pub env: Vec<(String, String)>,
    /// Its stderr is appended here.
    pub log: Option<PathBuf>,
    pub grpc_token: String,
}

/// A running server.
pub struct Server {
    child: Child,
    pub pid: u32,
    pub web: SocketAddr,
    pub grpc: String,
    /// From spawn to its `listening` line.
    pub listening_after: Duration,
}

impl ServerSpec {
    pub async fn start(&self) -> Result<Server, String> {
        let began = Instant::now();
        let stderr = match &self.log {
            Some(p) => std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .map(Stdio::from)
                .map_err(|e| format!("{}: {e}", p.display()))?,
            None => Stdio::null(),
        };
        let mut child = Command::new(&self.bin)
            .arg("serve")
            .arg("-c")
            .arg(&self.config)
            .envs(self.env.iter().cloned())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("{}: {e}", self.bin.display()))?;
        let pid = child.id().unwrap_or(0);
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let line = tokio::time::timeout(Duration::from_secs(60), async {
            while let Ok(Some(line)) = lines.next_line().await {
                if line.contains("listening") {
                    return Some(line);
                }
            }
            None
        })
        .await
        .ok()
        .flatten()
        .ok_or("the server exited or never said it was listening")?;
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let field = |name: &str| {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(name))
                .map(str::to_owned)
                .ok_or(format!("no {name} in {line:?}"))
        };
        let web = field("web=")?
            .parse()
            .map_err(|e| format!("web address: {e}"))?;
        let grpc = format!("http://{}", field("grpc=")?);
        Ok(Server {
            child,
            pid,
            web,
            grpc,
            listening_after: began.elapsed(),
        })
    }
}

impl Server {
    pub fn kill9(&mut self) {
        let _ = self.child.start_kill();
    }

    pub fn sigterm(&self) {
        let _ = std::process::Command::new("kill")
            .arg("-TERM")
            .arg(self.pid.to_string())
            .status();
    }

    /// Waits up to `limit` for the process to exit; how long it took.
    pub async fn wait(&mut self, limit: Duration) -> Option<Duration> {
        let began = Instant::now();
        tokio::time::timeout(limit, self.child.wait())
            .await
            .ok()
            .map(|_| began.elapsed())
    }

    /// SIGTERM, then kill -9 after 20 s.
    pub async fn stop(mut self) {
        self.sigterm();
        if self.wait(Duration::from_secs(20)).await.is_none() {
            self.kill9();
            let _ = self.wait(Duration::from_secs(5)).await;
        }
    }
}

/// What a send was answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    Ok(u64),
    Refused(String),
    /// The socket closed first (or the run stopped waiting).
    None,
}

/// One `new message` sent with an ack and a client message id.
#[derive(Clone, Debug)]
pub struct Sent {
    pub cid: u64,
    pub seq: u64,
    pub text: String,
    pub issued: Instant,
    pub answered: Option<Instant>,
    pub answer: Answer,
}

/// The client message id of a message.
fn client_msg_id(run: u32, cid: u64, seq: u64) -> String {
    format!("{run}-{cid}-{seq}")
}

/// Load: `visitors` visitors sending `rate` messages a second each (0: one as soon as another
/// is answered) with at most `window` unanswered, until `stop` turns true; then each waits up to `drain` for its answers.
pub struct Load {
    stop: watch::Sender<bool>,
    tasks: JoinSet<(Vec<Sent>, bool)>,
    pub connect_errors: Vec<String>,
}

impl Load {
    pub async fn start(
        t: &Target,
        run: u32,
        visitors: usize,
        rate: u64,
        window: usize,
        drain: Duration,
    ) -> Self {
        let (vs, connect_errors) = connect_visitors(t, 0, visitors, 32, false).await;
        let (stop, stopped) = watch::channel(false);
        let mut tasks = JoinSet::new();
        for v in vs {
            let room = t.room(v.cid);
            let mut stopped = stopped.clone();
            tasks.spawn(async move {
                let crate::scenarios::Visitor {
                    cid,
                    client,
                    mut events,
                } = v;
                let mut sent: Vec<Sent> = Vec::new();
                let mut pending: HashMap<u64, usize> = HashMap::new();
                // Rate 0: as fast as the window allows (a send as soon as one is answered).
                let period = match rate {
                    0 => Duration::from_micros(10),
                    r => Duration::from_nanos(1_000_000_000 / r),
                };
                let mut tick = tokio::time::interval(period);
                let mut stopping: Option<tokio::time::Instant> = None;
                let mut closed = false;
                loop {
                    if stopping.is_some() && pending.is_empty() {
                        break;
                    }
                    let give_up = stopping.unwrap_or_else(|| tokio::time::Instant::now() + drain);
                    tokio::select! {
                        changed = stopped.changed(), if stopping.is_none() => {
                            if changed.is_err() || *stopped.borrow() {
                                stopping = Some(tokio::time::Instant::now() + drain);
                            }
                        }
                        () = tokio::time::sleep_until(give_up), if stopping.is_some() => break,
                        _ = tick.tick(), if stopping.is_none() && pending.len() < window => {
                            let seq = sent.len() as u64;
                            let text = message_text(run, cid, seq, 0);
                            let payload = json!({ "username": cid.to_string(), "message": text, "room": room, "client_msg_id": client_msg_id(run, cid, seq) });
                            let id = seq + 100;
                            if !client.emit_ack("new message", &payload, id) {
                                closed = true;
                                break;
                            }
                            pending.insert(id, sent.len());
                            sent.push(Sent { cid, seq, text, issued: Instant::now(), answered: None, answer: Answer::None });
                        }
                        event = events.recv() => {
                            let Some(event) = event else {
                                closed = true;
                                break;
                            };
                            if event.name != ACK {
                                continue;
                            }
                            let Some(i) = event.args.first().and_then(Value::as_u64).and_then(|id| pending.remove(&id)) else {
                                continue;
                            };
                            sent[i].answered = Some(event.at);
                            sent[i].answer = answer_of(event.args.get(1));
                        }
                    }
                }
                client.close();
                (sent, closed)
            });
        }
        Self {
            stop,
            tasks,
            connect_errors,
        }
    }

    /// Stops sending and collects every send (and how many sockets the server closed).
    pub async fn finish(mut self) -> (Vec<Sent>, usize) {
        let _ = self.stop.send(true);
        let mut all = Vec::new();
        let mut closed = 0;
        while let Some(r) = self.tasks.join_next().await {
            if let Ok((s, c)) = r {
                all.extend(s);
                closed += usize::from(c);
            }
        }
        (all, closed)
    }
}

fn answer_of(payload: Option<&Value>) -> Answer {
    let Some(p) = payload else {
        return Answer::Refused("empty ack".into());
    };
    if let Some(e) = p.get("error") {
        let code = e.get("code").and_then(Value::as_str).unwrap_or("?");
        let message = e.get("message").and_then(Value::as_str).unwrap_or("?");
        return Answer::Refused(format!("{code}: {message}"));
    }
    match p
        .get("data")
        .and_then(|d| d.get("label"))
        .and_then(Value::as_u64)
    {
        Some(id) => Answer::Ok(id),
        None => Answer::Refused(format!("ack without label: {p}")),
    }
}

/// Every stored message of the run, by (visitor, seq): their ids, ascending.
pub async fn stored(
    grpc: &str,
    token: &str,
    run: u32,
    cids: &[u64],
) -> Result<HashMap<(u64, u64), Vec<u64>>, String> {
    use socketgram_proto::{client::CoreClient, v1 as pb};
    let mut client = CoreClient::connect(grpc, token)
        .await
        .map_err(|e| format!("gRPC: {e}"))?;
    let mut out: HashMap<(u64, u64), Vec<u64>> = HashMap::new();
    for &cid in cids {
        // Newest first, page by page back (`after_id` 0 would mean "from the newest" too).
        let mut before = 0;
        loop {
            let page = client
                .chat
                .history(pb::HistoryRequest {
                    conversation_id: cid,
                    before_id: before,
                    limit: 500,
                    after_id: 0,
                })
                .await
                .map_err(|e| format!("History: {e}"))?
                .into_inner();
            for m in &page.messages {
                before = if before == 0 { m.id } else { before.min(m.id) };
                if let Some((c, seq, _)) = parse_text(run, &m.text) {
                    out.entry((c, seq)).or_default().push(m.id);
                }
            }
            // Until an empty page: `has_more` is not relied on.
            if page.messages.is_empty() {
                break;
            }
        }
    }
    for ids in out.values_mut() {
        ids.sort_unstable();
    }
    Ok(out)
}

/// The first `History` that answers, within `limit`.
async fn stored_when_up(
    grpc: &str,
    token: &str,
    run: u32,
    cids: &[u64],
    limit: Duration,
) -> Result<HashMap<(u64, u64), Vec<u64>>, String> {
    let deadline = Instant::now() + limit;
    loop {
        match stored(grpc, token, run, cids).await {
            Ok(s) => return Ok(s),
            Err(e) if Instant::now() > deadline => return Err(e),
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// Sends against what is stored.
/// Whether a refusal says its outcome is unknown (then being stored is no lie): its code
/// (`outcome_unknown`), or, from servers before that code, its text.
fn uncertain(why: &str) -> bool {
    why.starts_with("outcome_unknown:")
        || why.contains("may or may not")
        || why.contains("may have been stored")
}

#[derive(Default, Debug)]
struct Tally {
    sent: u64,
    acked: u64,
    acked_missing: u64,
    acked_wrong_id: u64,
    refused: u64,
    /// Refused without saying the outcome is unknown, yet stored: a lie.
    refused_but_stored: u64,
    /// Refused saying the message may or may not have been stored (true either way).
    refused_uncertain: u64,
    unanswered: u64,
    unanswered_stored: u64,
    stored_duplicates: u64,
    out_of_order: u64,
    refusals: BTreeMap<String, u64>,
}

impl Tally {
    fn of(sends: &[Sent], stored: &HashMap<(u64, u64), Vec<u64>>) -> Self {
        let mut t = Tally {
            sent: sends.len() as u64,
            ..Tally::default()
        };
        for s in sends {
            let ids = stored.get(&(s.cid, s.seq));
            match &s.answer {
                Answer::Ok(id) => {
                    t.acked += 1;
                    match ids {
                        None => t.acked_missing += 1,
                        Some(ids) if !ids.contains(id) => t.acked_wrong_id += 1,
                        Some(_) => {}
                    }
                }
                Answer::Refused(why) => {
                    t.refused += 1;
                    if uncertain(why) {
                        t.refused_uncertain += 1;
                    } else {
                        t.refused_but_stored += u64::from(ids.is_some());
                    }
                    *t.refusals.entry(why.clone()).or_default() += 1;
                }
                Answer::None => {
                    t.unanswered += 1;
                    t.unanswered_stored += u64::from(ids.is_some());
                }
            }
        }
        t.stored_duplicates = stored
            .values()
            .map(|ids| ids.len().saturating_sub(1) as u64)
            .sum();
        // Per visitor, in send order: each stored message should have a larger id than the
        // one sent before it.
        let mut by_cid: BTreeMap<u64, Vec<(u64, u64)>> = BTreeMap::new();
        for ((cid, seq), ids) in stored {
            if let Some(&first) = ids.iter().min() {
                by_cid.entry(*cid).or_default().push((*seq, first));
            }
        }
        for list in by_cid.values_mut() {
            list.sort_unstable();
            t.out_of_order += list.windows(2).filter(|w| w[1].1 < w[0].1).count() as u64;
        }
        t
    }

    fn json(&self) -> Value {
        json!({
            "sent": self.sent,
            "acked": self.acked,
            "acked_missing": self.acked_missing,
            "acked_wrong_id": self.acked_wrong_id,
            "refused": self.refused,
            "refused_but_stored": self.refused_but_stored,
            "refused_uncertain": self.refused_uncertain,
            "unanswered": self.unanswered,
            "unanswered_stored": self.unanswered_stored,
            "stored_duplicates": self.stored_duplicates,
            "out_of_order": self.out_of_order,
            "refusals": self.refusals.iter().take(5).map(|(k, v)| json!({ "error": k, "count": v })).collect::<Vec<_>>(),
        })
    }
}

/// Sends every message of `sends` again with its client message id (what a client does with
/// an unanswered or refused send) until acknowledged, within `limit`; how many stayed unsent.
async fn resend(t: &Target, run: u32, sends: &[Sent], limit: Duration) -> (u64, Vec<String>) {
    let mut by_cid: BTreeMap<u64, Vec<&Sent>> = BTreeMap::new();
    for s in sends {
        by_cid.entry(s.cid).or_default().push(s);
    }
    let deadline = Instant::now() + limit;
    let mut failed = 0;
    let mut errors = Vec::new();
    for (cid, list) in by_cid {
        let i = (cid - t.cid_base) as usize;
        let mut left: Vec<&Sent> = list;
        while !left.is_empty() && Instant::now() < deadline {
            let Ok(mut v) = crate::abuse::visitor_at(t, cid, t.source(i)).await else {
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            };
            let mut still = Vec::new();
            for s in left {
                let payload = json!({ "username": cid.to_string(), "message": s.text, "room": t.room(cid), "client_msg_id": client_msg_id(run, cid, s.seq) });
                let id = s.seq + 100;
                v.client.emit_ack("new message", &payload, id);
                let answer = tokio::time::timeout(Duration::from_secs(10), async {
                    while let Some(e) = v.events.recv().await {
                        if e.name == ACK && e.args.first().and_then(Value::as_u64) == Some(id) {
                            return answer_of(e.args.get(1));
                        }
                    }
                    Answer::None
                })
                .await
                .unwrap_or(Answer::None);
                match answer {
                    Answer::Ok(_) => {}
                    Answer::Refused(e) => {
                        if errors.len() < 3 {
                            errors.push(format!("resend: {e}"));
                        }
                        still.push(s);
                    }
                    Answer::None => still.push(s),
                }
            }
            v.client.close();
            left = still;
            if !left.is_empty() {
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
        failed += left.len() as u64;
    }
    (failed, errors)
}

/// After a resend: what is stored of every send, once each.
fn after_resend(sends: &[Sent], stored: &HashMap<(u64, u64), Vec<u64>>) -> Value {
    let missing = sends
        .iter()
        .filter(|s| !stored.contains_key(&(s.cid, s.seq)))
        .count();
    let duplicates: usize = stored.values().map(|ids| ids.len().saturating_sub(1)).sum();
    json!({ "missing": missing, "stored_duplicates": duplicates })
}

/// Time from `from` until a visitor can connect, subscribe and have a message acknowledged.
async fn ready_after(t: &Target, run: u32, cid: u64, from: Instant) -> Option<Duration> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if let Ok(mut v) = crate::abuse::visitor_at(t, cid, t.source(0)).await {
            let payload = json!({ "username": cid.to_string(), "message": format!("ready {run}"), "room": t.room(cid) });
            v.client.emit_ack("new message", &payload, 7);
            let ok = tokio::time::timeout(Duration::from_secs(5), async {
                while let Some(e) = v.events.recv().await {
                    if e.name == ACK && e.args.first().and_then(Value::as_u64) == Some(7) {
                        return matches!(answer_of(e.args.get(1)), Answer::Ok(_));
                    }
                }
                false
            })
            .await
            .unwrap_or(false);
            v.client.close();
            if ok {
                return Some(from.elapsed());
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

fn ms(d: Duration) -> f64 {
    round2(d.as_secs_f64() * 1000.0)
}

/// The parameters of every fault case.
#[derive(Clone, Debug)]
pub struct FaultLoad {
    pub visitors: usize,
    pub rate: u64,
    pub window: usize,
    /// Load before the fault.
    pub before: Duration,
}

fn cids(t: &Target, n: usize) -> Vec<u64> {
    (0..n as u64).map(|i| t.cid_base + i).collect()
}

fn pointed(t: &Target, s: &Server) -> Target {
    let mut t = t.clone();
    t.server = s.web;
    t.admin_server = s.web;
    t.server_pid = Some(s.pid);
    t
}

/// A fresh server under `load` for `load.before`, ready for its fault: the report, the
/// server and the running load (`drain`: how long it waits for
/// answers once stopped).
async fn under_load(
    name: &str,
    t: &Target,
    run: u32,
    spec: &ServerSpec,
    load: &FaultLoad,
    drain: Duration,
) -> Result<(Report, Server, Load), Report> {
    let mut report = Report::new(
        name,
        json!({ "visitors": load.visitors, "rate_per_visitor": load.rate, "window": load.window, "before_ms": ms(load.before) }),
    );
    let server = match spec.start().await {
        Ok(s) => s,
        Err(e) => {
            report.errors.push(e);
            return Err(report);
        }
    };
    let t1 = pointed(t, &server);
    let running = Load::start(&t1, run, load.visitors, load.rate, load.window, drain).await;
    report
        .errors
        .extend(running.connect_errors.iter().take(3).cloned());
    tokio::time::sleep(load.before).await;
    Ok((report, server, running))
}

/// kill -9 mid-load, restart on the same database.
pub async fn kill9(t: &Target, run: u32, spec: &ServerSpec, load: &FaultLoad) -> Report {
    let (mut report, mut server, running) =
        match under_load("fault_kill9", t, run, spec, load, Duration::from_secs(2)).await {
            Ok(started) => started,
            Err(report) => return report,
        };
    let killed = Instant::now();
    server.kill9();
    let _ = server.wait(Duration::from_secs(10)).await;
    let (sends, closed) = running.finish().await;
    report.figure("sockets_closed_by_kill", closed);
    let restarted = Instant::now();
    let server = match spec.start().await {
        Ok(s) => s,
        Err(e) => {
            report.errors.push(format!("restart: {e}"));
            return report;
        }
    };
    report.figure("restart_to_listening_ms", ms(server.listening_after));
    let t2 = pointed(t, &server);
    let ready = ready_after(&t2, run, t.cid_base + 900_000, restarted).await;
    report.figure(
        "restart_to_first_ack_ms",
        ready.map_or(Value::Null, |d| json!(ms(d))),
    );
    report.figure(
        "kill_to_first_ack_ms",
        ready
            .map(|_| json!(ms(killed.elapsed())))
            .unwrap_or(Value::Null),
    );
    let cids = cids(t, load.visitors);
    check_stored(
        &mut report,
        (&server, spec, run),
        &cids,
        &sends,
        "at_restart",
        Some(&t2),
    )
    .await;
    server.stop().await;
    report
}

/// Reads back what `server` stored for `cids` and checks it against the answers of `sends`
/// (figure `label`); with `resend_via`, then sends the unacknowledged ones again with their
/// client message ids and checks that nothing was stored twice.
async fn check_stored(
    report: &mut Report,
    (server, spec, run): (&Server, &ServerSpec, u32),
    cids: &[u64],
    sends: &[Sent],
    label: &str,
    resend_via: Option<&Target>,
) {
    let before = match stored_when_up(
        &server.grpc,
        &spec.grpc_token,
        run,
        cids,
        Duration::from_secs(30),
    )
    .await
    {
        Ok(before) => before,
        Err(e) => return report.errors.push(e),
    };
    let tally = Tally::of(sends, &before);
    report.lost = tally.acked_missing;
    report.duplicated = tally.stored_duplicates;
    report.sent = tally.sent;
    if tally.refused_but_stored > 0 {
        report.errors.push(format!(
            "{} sends answered with an error were stored",
            tally.refused_but_stored
        ));
    }
    report.figure(label, tally.json());
    let Some(target) = resend_via else { return };
    let retry: Vec<Sent> = sends
        .iter()
        .filter(|s| !matches!(s.answer, Answer::Ok(_)))
        .cloned()
        .collect();
    let (unsent, errors) = resend(target, run, &retry, Duration::from_secs(20)).await;
    report.errors.extend(errors);
    report.figure("resent", retry.len());
    report.figure("resend_unacknowledged", unsent);
    match stored(&server.grpc, &spec.grpc_token, run, cids).await {
        Ok(after) => {
            let a = after_resend(sends, &after);
            report.duplicated = report
                .duplicated
                .max(a["stored_duplicates"].as_u64().unwrap_or(0));
            report.figure("after_resend", a);
        }
        Err(e) => report.errors.push(e),
    }
}

/// SIGTERM mid-load: what the in-flight sends were answered, and whether the answers held.
pub async fn sigterm(t: &Target, run: u32, spec: &ServerSpec, load: &FaultLoad) -> Report {
    let (mut report, mut server, running) =
        match under_load("fault_sigterm", t, run, spec, load, Duration::from_secs(5)).await {
            Ok(started) => started,
            Err(report) => return report,
        };
    let termed = Instant::now();
    server.sigterm();
    let exit = server.wait(Duration::from_secs(40)).await;
    report.figure(
        "sigterm_to_exit_ms",
        exit.map_or(Value::Null, |d| json!(ms(d))),
    );
    if exit.is_none() {
        report
            .errors
            .push("the server did not exit within 40 s of SIGTERM".into());
        server.kill9();
    }
    let (sends, closed) = running.finish().await;
    report.figure("sockets_closed_by_server", closed);
    // In flight at SIGTERM: issued before it, not answered by then.
    let in_flight: Vec<&Sent> = sends
        .iter()
        .filter(|s| s.issued < termed && s.answered.is_none_or(|a| a >= termed))
        .collect();
    let after: Vec<&Sent> = sends.iter().filter(|s| s.issued >= termed).collect();
    let count =
        |list: &[&Sent], f: fn(&Answer) -> bool| list.iter().filter(|s| f(&s.answer)).count();
    report.figure(
        "in_flight_at_sigterm",
        json!({
            "total": in_flight.len(),
            "answered_ok": count(&in_flight, |a| matches!(a, Answer::Ok(_))),
            "refused": count(&in_flight, |a| matches!(a, Answer::Refused(_))),
            "unanswered": count(&in_flight, |a| *a == Answer::None),
        }),
    );
    report.figure(
        "sent_after_sigterm",
        json!({
            "total": after.len(),
            "answered_ok": count(&after, |a| matches!(a, Answer::Ok(_))),
            "refused": count(&after, |a| matches!(a, Answer::Refused(_))),
            "unanswered": count(&after, |a| *a == Answer::None),
        }),
    );
    let server = match spec.start().await {
        Ok(s) => s,
        Err(e) => {
            report.errors.push(format!("restart: {e}"));
            return report;
        }
    };
    let cids = cids(t, load.visitors);
    check_stored(
        &mut report,
        (&server, spec, run),
        &cids,
        &sends,
        "stored_vs_answers",
        None,
    )
    .await;
    server.stop().await;
    report
}

/// What the proxy does to the database.
#[derive(Clone, Copy, Debug)]
pub enum DbFault {
    /// Every connection cut at once.
    Cut,
    /// Connections cut and the port closed for the fault's length.
    Refuse,
    /// Nothing forwarded for the fault's length.
    Stall,
}

/// A database fault through the proxy: `db_url` is the real database; the server is started
/// with it pointed at the proxy.
pub async fn db_fault(
    t: &Target,
    run: u32,
    spec: &ServerSpec,
    db_url: &str,
    fault: DbFault,
    length: Duration,
    load: &FaultLoad,
) -> Report {
    let name = match fault {
        DbFault::Cut => "fault_db_cut",
        DbFault::Refuse => "fault_db_refuse",
        DbFault::Stall => "fault_db_stall",
    };
    let mut report = Report::new(
        name,
        json!({ "visitors": load.visitors, "rate_per_visitor": load.rate, "window": load.window, "before_ms": ms(load.before), "fault_ms": ms(length) }),
    );
    let Ok(mut url) = url::Url::parse(db_url) else {
        report.errors.push(format!("--db-url {db_url:?}"));
        return report;
    };
    let upstream: Option<SocketAddr> = url
        .socket_addrs(|| match url.scheme() {
            "postgres" | "postgresql" => Some(5432),
            _ => Some(3306),
        })
        .ok()
        .and_then(|a| a.into_iter().next());
    let Some(upstream) = upstream else {
        report
            .errors
            .push("the database URL does not resolve".into());
        return report;
    };
    let proxy = match Proxy::start(upstream) {
        Ok(p) => p,
        Err(e) => {
            report.errors.push(format!("proxy: {e}"));
            return report;
        }
    };
    let _ = url.set_ip_host(proxy.addr.ip());
    let _ = url.set_port(Some(proxy.addr.port()));
    if url.scheme().starts_with("postgres") {
        url.query_pairs_mut().append_pair("sslmode", "disable");
    }
    let mut spec = spec.clone();
    spec.env
        .push(("SOCKETGRAM_CORE__DATABASE__URL".into(), url.to_string()));
    let server = match spec.start().await {
        Ok(s) => s,
        Err(e) => {
            report.errors.push(e);
            return report;
        }
    };
    let t1 = pointed(t, &server);
    let running = Load::start(
        &t1,
        run,
        load.visitors,
        load.rate,
        load.window,
        Duration::from_secs(15),
    )
    .await;
    report
        .errors
        .extend(running.connect_errors.iter().take(3).cloned());
    tokio::time::sleep(load.before).await;
    let fault_start = Instant::now();
    match fault {
        DbFault::Cut => proxy.cut(),
        DbFault::Refuse => proxy.set(Mode::Refuse),
        DbFault::Stall => proxy.set(Mode::Stall),
    }
    tokio::time::sleep(length).await;
    let fault_end = Instant::now();
    proxy.set(Mode::Forward);
    // A cut is over at once: time the recovery from it.
    let recovered_from = match fault {
        DbFault::Cut => fault_start,
        _ => fault_end,
    };
    tokio::time::sleep(Duration::from_secs(8)).await;
    let (sends, closed) = running.finish().await;
    report.figure("sockets_closed_by_server", closed);
    // Recovery: the first send issued after the fault that was acknowledged.
    let first_ok = sends
        .iter()
        .filter(|s| s.issued >= recovered_from && matches!(s.answer, Answer::Ok(_)))
        .filter_map(|s| s.answered)
        .min();
    report.figure(
        "recovery_ms",
        first_ok.map_or(Value::Null, |a| json!(ms(a.duration_since(recovered_from)))),
    );
    let last_refusal = sends
        .iter()
        .filter(|s| matches!(s.answer, Answer::Refused(_)))
        .filter_map(|s| s.answered)
        .max();
    report.figure(
        "last_refusal_after_fault_end_ms",
        last_refusal.map_or(Value::Null, |a| {
            json!(round2(
                a.duration_since(fault_start).as_secs_f64() * 1000.0
                    - ms(fault_end.duration_since(fault_start))
            ))
        }),
    );
    let during = sends
        .iter()
        .filter(|s| s.issued >= fault_start && s.issued < fault_end)
        .count();
    report.figure("sent_during_fault", during);
    let cids = cids(t, load.visitors);
    check_stored(
        &mut report,
        (&server, &spec, run),
        &cids,
        &sends,
        "stored_vs_answers",
        Some(&t1),
    )
    .await;
    server.stop().await;
    report
}
