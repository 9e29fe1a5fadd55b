//! `socketgram-bench`: a load generator that speaks the legacy Socket.IO v4 protocol
//! (LEGACY.md §2-§4) exactly as the legacy visitor page and the PHP admin do, so it can be
//! pointed at any server of that protocol — Socketgram or the legacy one — by URL, secret and
//! admin parameter. Scenario 6 uses Socketgram's gRPC API instead.
//!
//! Every run checks that each message arrived exactly once with the right payload; a lost,
//! duplicated or mangled message fails the run. Results: one JSON line and a table.
//!
//! Socketgram acknowledges `subscribe` once the history is out; the legacy server sends no
//! acknowledgement for anything (LEGACY.md §3). [`Acks`] says which kind of server this is, and
//! with [`Acks::None`] the generator tells what happened the way the legacy pages do: from the
//! events that come back (see [`scenarios::connect_visitors`]).

pub mod abuse;
pub mod faults;
pub mod proxy;
pub mod scenarios;
pub mod sio;
pub mod stats;

use std::{
    collections::HashMap,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    time::Instant,
};

use serde_json::{Map, Value, json};
use socketgram_admin_php_compat::room::{HashKind, room_of};

/// Whether the server acknowledges the events that ask for it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Acks {
    /// `subscribe` is acknowledged once the visitor's history is out and live messages flow
    /// (Socketgram).
    #[default]
    Subscribe,
    /// Nothing is ever acknowledged (the legacy Node.js server): a subscribe is done when the
    /// answer to a `take history` sent after it arrives.
    None,
}

/// An `--acks` value other than `subscribe` or `none`.
#[derive(Debug, thiserror::Error)]
#[error("unknown acks mode {0:?}: use `subscribe` (the server acknowledges subscribe) or `none`")]
pub struct UnknownAcks(String);

impl std::str::FromStr for Acks {
    type Err = UnknownAcks;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "subscribe" => Ok(Self::Subscribe),
            "none" => Ok(Self::None),
            other => Err(UnknownAcks(other.into())),
        }
    }
}

impl std::fmt::Display for Acks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Subscribe => "subscribe",
            Self::None => "none",
        })
    }
}

/// The server under test and how to log in to it.
#[derive(Clone, Debug)]
pub struct Target {
    /// The Socket.IO server (`host:port`).
    pub server: SocketAddr,
    /// Where the admins of the scenarios connect: the same server, or another edge of a
    /// scaled-out deployment (messages then cross core replicas).
    pub admin_server: SocketAddr,
    /// The legacy secret and room hash.
    pub secret: String,
    pub room_hash: HashKind,
    /// The admin handshake parameter (name, value).
    pub admin_param: (String, String),
    /// The admin login replies are signed with (must exist in `adm_account`).
    pub admin_login: String,
    /// Measure this process's memory and CPU (the server).
    pub server_pid: Option<u32>,
    /// And the CPU of every process of this name (the database server).
    pub db_process: Option<String>,
    /// Socketgram's gRPC API (URL, bearer token), for scenario 6.
    pub grpc: Option<(String, String)>,
    /// First visitor id of this run; ids `cid_base..cid_base + N` are used.
    pub cid_base: u64,
    /// Loopback source addresses to spread client ports over (127.0.0.1 ..).
    pub source_addresses: u8,
    /// Whether the server acknowledges `subscribe`.
    pub acks: Acks,
    /// Visitors connecting and subscribing at once before a scenario's messages start (the
    /// legacy server exits when too many subscribes hit its database at once, LEGACY.md §9.5).
    pub connect_concurrency: usize,
}

impl Target {
    pub fn room(&self, cid: u64) -> String {
        room_of(self.room_hash, &cid.to_string(), &self.secret)
    }

    /// The source address of the `i`-th client.
    pub fn source(&self, i: usize) -> IpAddr {
        if !self.server.ip().is_loopback() {
            return if self.server.is_ipv4() {
                IpAddr::V4(Ipv4Addr::UNSPECIFIED)
            } else {
                IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED)
            };
        }
        // Round robin: the fewer connections share a source address, the sooner connect(2)
        // finds a free port for it.
        let n = i % usize::from(self.source_addresses.max(1));
        IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1 + n as u8))
    }

    pub fn visitor_query(&self, cid: u64) -> String {
        format!("id={cid}&room={}", self.room(cid))
    }

    pub fn admin_query(&self) -> String {
        format!("{}={}", self.admin_param.0, self.admin_param.1)
    }
}

/// What one run found.
#[derive(Debug, Default)]
pub struct Report {
    pub scenario: String,
    pub params: Map<String, Value>,
    pub figures: Map<String, Value>,
    /// Messages sent / deliveries expected / arrived once / never / more than once / wrong.
    pub sent: u64,
    pub expected: u64,
    pub delivered: u64,
    pub lost: u64,
    pub duplicated: u64,
    pub wrong: u64,
    pub errors: Vec<String>,
}

impl Report {
    pub fn new(scenario: &str, params: Value) -> Self {
        Self {
            scenario: scenario.into(),
            params: params.as_object().cloned().unwrap_or_default(),
            ..Self::default()
        }
    }

    /// Whether every message arrived exactly once, intact, and nothing failed.
    pub fn ok(&self) -> bool {
        self.lost == 0 && self.duplicated == 0 && self.wrong == 0 && self.errors.is_empty()
    }

    pub fn figure(&mut self, name: &str, value: impl Into<Value>) {
        self.figures.insert(name.into(), value.into());
    }

    pub fn json(&self) -> Value {
        json!({
            "scenario": self.scenario,
            "ok": self.ok(),
            "params": self.params,
            "sent": self.sent,
            "expected": self.expected,
            "delivered": self.delivered,
            "lost": self.lost,
            "duplicated": self.duplicated,
            "wrong": self.wrong,
            "figures": self.figures,
            "errors": self.errors.iter().take(20).collect::<Vec<_>>(),
        })
    }

    /// A readable table.
    pub fn table(&self) -> String {
        let mut out = format!(
            "scenario {:<24} {}\n",
            self.scenario,
            if self.ok() { "OK" } else { "FAILED" }
        );
        for (k, v) in &self.params {
            out += &format!("  param  {k:<28} {v}\n");
        }
        for (k, v) in [
            ("sent", self.sent),
            ("expected deliveries", self.expected),
            ("delivered once", self.delivered),
            ("lost", self.lost),
            ("duplicated", self.duplicated),
            ("wrong payload", self.wrong),
        ] {
            out += &format!("  count  {k:<28} {v}\n");
        }
        for (k, v) in &self.figures {
            out += &format!("  figure {k:<28} {v}\n");
        }
        for e in self.errors.iter().take(10) {
            out += &format!("  error  {e}\n");
        }
        out
    }
}

/// A message's text: who sent it, its number, and when (for latency), so the receiving side
/// can check it arrived once, intact, and measure it.
pub fn message_text(run: u32, cid: u64, seq: u64, sent_micros: u64) -> String {
    format!("bench {run} {cid} {seq} {sent_micros}")
}

/// Reads [`message_text`] back: (cid, seq, sent micros).
pub fn parse_text(run: u32, text: &str) -> Option<(u64, u64, u64)> {
    let mut parts = text.split(' ');
    if parts.next()? != "bench" || parts.next()?.parse::<u32>().ok()? != run {
        return None;
    }
    Some((
        parts.next()?.parse().ok()?,
        parts.next()?.parse().ok()?,
        parts.next()?.parse().ok()?,
    ))
}

/// Counts deliveries at one receiver and checks them.
#[derive(Default)]
pub struct Collector {
    seen: HashMap<(u64, u64), u32>,
    pub wrong: u64,
    pub latency: stats::Latency,
    pub last: Option<Instant>,
    /// Copies of this run's messages received, duplicates included (what the server sent).
    pub copies: u64,
    /// The server closed the receiving socket before the receiver was done (it went away or
    /// crashed): what did not arrive is lost, and the report says why.
    pub closed: bool,
}

impl Collector {
    /// Observes one `new message` payload received at `at`; `start` is the run's clock zero.
    /// Returns true for a first delivery of one of this run's messages.
    pub fn observe(&mut self, run: u32, payload: &Value, at: Instant, start: Instant) -> bool {
        let Some(text) = payload.get("message").and_then(Value::as_str) else {
            self.wrong += 1;
            return false;
        };
        let Some((cid, seq, sent)) = parse_text(run, text) else {
            return false;
        };
        // The payload must be the legacy one: username = the sender's id, as a number.
        if payload.get("username").and_then(Value::as_u64) != Some(cid)
            || payload.get("label").and_then(Value::as_u64).is_none()
        {
            self.wrong += 1;
        }
        self.copies += 1;
        let count = self.seen.entry((cid, seq)).or_default();
        *count += 1;
        if *count > 1 {
            return false;
        }
        let now = at.duration_since(start).as_micros() as u64;
        self.latency.record(now.saturating_sub(sent));
        self.last = Some(at);
        true
    }

    pub fn unique(&self) -> u64 {
        self.seen.len() as u64
    }

    pub fn duplicates(&self) -> u64 {
        self.seen
            .values()
            .map(|&n| u64::from(n.saturating_sub(1)))
            .sum()
    }

    /// Adds this receiver's counts to the report, against the messages sent.
    pub fn settle(&self, report: &mut Report, sent: &[(u64, u64)]) {
        report.expected += sent.len() as u64;
        for key in sent {
            match self.seen.get(key) {
                Some(_) => report.delivered += 1,
                None => report.lost += 1,
            }
        }
        report.duplicated += self.duplicates();
        report.wrong += self.wrong;
        let closed = "the server closed a receiving socket during the run".to_owned();
        if self.closed && !report.errors.contains(&closed) {
            report.errors.push(closed);
        }
    }
}
