//! Real Socket.IO clients for the end-to-end tests: [`SioClient`] drives one Node.js process
//! running the official `socket.io-client` (`tests/js/sio_driver.mjs`), exactly as the legacy
//! visitor page, the PHP admin or Socketgram's widget would connect.
//!
//! The driver only relays: commands go to it as JSON lines, and everything that happens
//! (connect, `connect_error`, disconnect, every event received, acknowledgements) comes back
//! as JSON lines. Every receive here is under a timeout; events of other names than the one
//! awaited are kept, in order, for later assertions. Tests first call [`available`], which
//! skips them (or fails them under `CI=true`) when Node.js is missing.

use std::{collections::VecDeque, fmt, process::Stdio, time::Duration};

pub use serde_json::{Value, json};
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
    process::{Child, ChildStdin},
    sync::mpsc,
    time::Instant,
};

use crate::node;

/// How long any one receive may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(10);

/// The transports the legacy pages ask for, websocket first (LEGACY.md §2).
pub const LEGACY_TRANSPORTS: [&str; 2] = ["websocket", "polling"];

/// Whether Node.js and the test packages are here; when they are not, prints `SKIPPED`
/// (panics under `CI=true`) and the test should return.
pub async fn available() -> bool {
    // Finding Node.js may run `npm ci`: not on the test's runtime thread.
    match tokio::task::spawn_blocking(|| node::node().is_some()).await {
        Ok(available) => available,
        // Under CI a missing Node.js panics: the test fails with that message.
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

/// How a client connects: the URL, the handshake query, the `auth` payload, the transports.
#[derive(Clone, Debug)]
pub struct Handshake {
    pub url: String,
    pub query: Vec<(String, String)>,
    pub auth: Option<Value>,
    /// HTTP headers of the handshake requests (a browser's `Cookie`, its `Origin`).
    pub headers: Vec<(String, String)>,
    pub transports: Vec<String>,
    /// Events emitted from the client's `connect` handler, at once, as the legacy page sends
    /// `subscribe`.
    pub on_connect: Vec<(String, Vec<Value>)>,
}

impl Handshake {
    /// A handshake with this query and no `auth`, over the legacy transports.
    pub fn query(web_url: &str, query: &[(&str, &str)]) -> Self {
        Self {
            url: web_url.to_owned(),
            query: query
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            auth: None,
            headers: Vec::new(),
            transports: LEGACY_TRANSPORTS.iter().map(|t| (*t).to_owned()).collect(),
            on_connect: Vec::new(),
        }
    }

    /// The legacy visitor page: `?id=<cid>&room=<roomhash>`.
    pub fn legacy_visitor(web_url: &str, cid: impl fmt::Display, room: &str) -> Self {
        Self::query(web_url, &[("id", &cid.to_string()), ("room", room)])
    }

    /// The PHP admin: `?<param>=<value>`.
    pub fn legacy_admin(web_url: &str, param: &str, value: &str) -> Self {
        Self::query(web_url, &[(param, value)])
    }

    /// Socketgram's widget or a token admin: the Socket.IO `auth` payload
    /// (`{"token": ..}` or `{"admin_token": ..}`).
    pub fn token(web_url: &str, auth: Value) -> Self {
        Self {
            auth: Some(auth),
            ..Self::query(web_url, &[])
        }
    }

    /// The same handshake over other transports (e.g. `["polling"]` behind a proxy that
    /// does not pass websockets).
    pub fn with_transports(mut self, transports: &[&str]) -> Self {
        self.transports = transports.iter().map(|t| (*t).to_owned()).collect();
        self
    }

    /// Also sends this HTTP header with the handshake.
    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Also emits `event` from the `connect` handler, with no round trip to the test (the
    /// legacy page subscribes that way, racing the server's own connect handling).
    pub fn emitting_on_connect(mut self, event: &str, args: Vec<Value>) -> Self {
        self.on_connect.push((event.to_owned(), args));
        self
    }
}

/// One thing the driver reported.
#[derive(Clone, Debug, PartialEq)]
pub enum Happening {
    Connected {
        sid: String,
    },
    ConnectError {
        message: String,
    },
    Disconnected {
        reason: String,
    },
    Event {
        name: String,
        args: Vec<Value>,
    },
    Ack {
        id: u64,
        error: Option<String>,
        args: Vec<Value>,
    },
    Fetched {
        id: u64,
        status: u16,
        content_type: Option<String>,
        body: String,
    },
}

impl Happening {
    fn parse(line: &str) -> Result<Self, String> {
        let v: Value = serde_json::from_str(line).map_err(|e| format!("{e}: {line}"))?;
        let text = |k: &str| {
            v.get(k)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        let args = || {
            v.get("args")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()
        };
        let id = || v.get("id").and_then(Value::as_u64).unwrap_or_default();
        Ok(match v.get("type").and_then(Value::as_str) {
            Some("connect") => Happening::Connected { sid: text("id") },
            Some("connect_error") => Happening::ConnectError {
                message: text("message"),
            },
            Some("disconnect") => Happening::Disconnected {
                reason: text("reason"),
            },
            Some("event") => Happening::Event {
                name: text("name"),
                args: args(),
            },
            Some("ack") => Happening::Ack {
                id: id(),
                error: v.get("error").and_then(Value::as_str).map(str::to_owned),
                args: args(),
            },
            Some("fetch") => Happening::Fetched {
                id: id(),
                status: v.get("status").and_then(Value::as_u64).unwrap_or_default() as u16,
                content_type: v
                    .get("content_type")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
                body: text("body"),
            },
            Some("driver_error") => {
                return Err(format!("the driver refused a command: {}", text("message")));
            }
            _ => return Err(format!("unknown line from the driver: {line}")),
        })
    }

    /// A short description for failure messages (long strings cut).
    fn brief(&self) -> String {
        let mut s = format!("{self:?}");
        if s.len() > 300 {
            let cut = (0..=300)
                .rev()
                .find(|&i| s.is_char_boundary(i))
                .unwrap_or(0);
            s.truncate(cut);
            s.push_str("...");
        }
        s
    }
}

/// A Socket.IO client in its own Node.js process; the process is killed when this is dropped.
pub struct SioClient {
    /// For failure messages: which client of the test this is.
    name: String,
    child: Child,
    stdin: ChildStdin,
    /// Everything the driver reports, in order; closed when the process ends.
    lines: mpsc::UnboundedReceiver<Result<Happening, String>>,
    /// Received but not consumed yet, in arrival order.
    pending: VecDeque<Happening>,
    next_id: u64,
    /// The limit of each receive.
    wait: Duration,
}

impl SioClient {
    /// Starts a driver process (not connected yet). Call [`available`] first.
    pub fn spawn(name: &str) -> Self {
        let node = node::node().expect("Node.js is available (check sio::available() first)");
        let mut child = node
            .script("sio_driver.mjs")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("start the Socket.IO driver under Node.js");
        let stdin = child.stdin.take().expect("driver stdin");
        let stdout = child.stdout.take().expect("driver stdout");
        let (tx, lines) = mpsc::unbounded_channel();
        let trace = std::env::var_os("SOCKETGRAM_TEST_SIO_TRACE").is_some();
        let label = name.to_owned();
        tokio::spawn(async move {
            let mut reader = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                if trace {
                    let cut = (0..=400.min(line.len()))
                        .rev()
                        .find(|&i| line.is_char_boundary(i));
                    eprintln!("[{label}] {}", &line[..cut.unwrap_or(0)]);
                }
                if tx.send(Happening::parse(&line)).is_err() {
                    break;
                }
            }
        });
        Self {
            name: name.to_owned(),
            child,
            stdin,
            lines,
            pending: VecDeque::new(),
            next_id: 1,
            wait: WAIT,
        }
    }

    /// Starts a driver and connects it: `Ok` once connected, `Err(message)` of the
    /// `connect_error` (or of a disconnect before connecting) when the server refused.
    pub async fn open(name: &str, handshake: &Handshake) -> Result<Self, String> {
        let mut client = Self::spawn(name);
        client.connect(handshake).await.map(|_| client)
    }

    /// The legacy visitor page connecting as `cid`; panics when refused.
    pub async fn connect_legacy_visitor(web_url: &str, cid: impl fmt::Display, room: &str) -> Self {
        let name = format!("visitor {cid}");
        let handshake = Handshake::legacy_visitor(web_url, &cid, room);
        Self::open(&name, &handshake)
            .await
            .unwrap_or_else(|e| panic!("{name}: handshake refused: {e}"))
    }

    /// The PHP admin connecting with `?<param>=<value>`; panics when refused.
    pub async fn connect_legacy_admin(web_url: &str, param: &str, value: &str) -> Self {
        Self::open("admin", &Handshake::legacy_admin(web_url, param, value))
            .await
            .unwrap_or_else(|e| panic!("admin: handshake refused: {e}"))
    }

    /// A token client (`auth` = `{"token": ..}` or `{"admin_token": ..}`); panics when refused.
    pub async fn connect_token(name: &str, web_url: &str, auth: Value) -> Self {
        Self::open(name, &Handshake::token(web_url, auth))
            .await
            .unwrap_or_else(|e| panic!("{name}: handshake refused: {e}"))
    }

    /// Connects (again) this driver's socket; `Ok(sid)` or `Err(connect_error message)`.
    pub async fn connect(&mut self, handshake: &Handshake) -> Result<String, String> {
        let query: serde_json::Map<String, Value> = handshake
            .query
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        self.send(json!({
            "cmd": "connect",
            "url": handshake.url,
            "query": query,
            "auth": handshake.auth,
            "headers": handshake
                .headers
                .iter()
                .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                .collect::<serde_json::Map<String, Value>>(),
            "transports": handshake.transports,
            "on_connect": handshake
                .on_connect
                .iter()
                .map(|(event, args)| json!({ "event": event, "args": args }))
                .collect::<Vec<_>>(),
            "timeout_ms": self.wait.as_millis() as u64,
        }))
        .await;
        let what = "connect or connect_error";
        match self
            .take(what, |h| {
                matches!(
                    h,
                    Happening::Connected { .. }
                        | Happening::ConnectError { .. }
                        | Happening::Disconnected { .. }
                )
            })
            .await
        {
            Happening::Connected { sid } => Ok(sid),
            Happening::ConnectError { message } => Err(message),
            Happening::Disconnected { reason } => Err(format!("disconnected: {reason}")),
            _ => unreachable!(),
        }
    }

    /// Emits `event` with these arguments (none, `null`, a string, an object, several...),
    /// without asking for an acknowledgement, as the legacy pages do.
    pub async fn emit(&mut self, event: &str, args: &[Value]) {
        self.emit_many(event, args, 1).await;
    }

    /// Emits `event` with the arguments of `json_array`, JSON text the driver parses itself:
    /// it can hold what no Rust string can, e.g. a lone surrogate `"\ud800"`, which a browser
    /// page can send.
    pub async fn emit_raw(&mut self, event: &str, json_array: &str) {
        self.send(json!({ "cmd": "emit", "event": event, "raw_args": json_array }))
            .await;
    }

    /// Emits the same event `count` times back to back (a flood, in one command).
    pub async fn emit_many(&mut self, event: &str, args: &[Value], count: u32) {
        self.send(json!({ "cmd": "emit", "event": event, "args": args, "count": count }))
            .await;
    }

    /// Emits `event` asking for an acknowledgement and returns its first argument
    /// (`Value::Null` when the server acknowledged with nothing).
    pub async fn emit_ack(&mut self, event: &str, args: &[Value]) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let timeout_ms = self.wait.as_millis() as u64;
        self.send(json!({ "cmd": "emit", "event": event, "args": args, "ack": id, "timeout_ms": timeout_ms }))
            .await;
        let what = format!("the acknowledgement of {event:?}");
        match self
            .take(
                &what,
                |h| matches!(h, Happening::Ack { id: got, .. } if *got == id),
            )
            .await
        {
            Happening::Ack { error: Some(e), .. } => {
                panic!("{}: {what} did not come: {e}", self.name)
            }
            Happening::Ack { args, .. } => args.into_iter().next().unwrap_or(Value::Null),
            _ => unreachable!(),
        }
    }

    /// Emits `event` once per argument list, each asking for an acknowledgement, without
    /// waiting for any: returns their ids, for [`SioClient::ack_of`].
    pub async fn emit_acks(&mut self, event: &str, each: &[Vec<Value>]) -> Vec<u64> {
        let timeout_ms = self.wait.as_millis() as u64;
        let mut ids = Vec::with_capacity(each.len());
        for args in each {
            let id = self.next_id;
            self.next_id += 1;
            self.send(json!({ "cmd": "emit", "event": event, "args": args, "ack": id, "timeout_ms": timeout_ms }))
                .await;
            ids.push(id);
        }
        ids
    }

    /// The answer to acknowledgement `id` of [`SioClient::emit_acks`]: `Ok(first argument)`,
    /// or `Err` when none came (the client's timeout, or the socket closed first).
    pub async fn ack_of(&mut self, id: u64) -> Result<Value, String> {
        let what = format!("acknowledgement {id}");
        match self
            .take(
                &what,
                |h| matches!(h, Happening::Ack { id: got, .. } if *got == id),
            )
            .await
        {
            Happening::Ack { error: Some(e), .. } => Err(e),
            Happening::Ack { args, .. } => Ok(args.into_iter().next().unwrap_or(Value::Null)),
            _ => unreachable!(),
        }
    }

    /// The arguments of the next `event` received (earlier ones kept, later ones left).
    pub async fn next(&mut self, event: &str) -> Vec<Value> {
        let what = format!("event {event:?}");
        match self
            .take(
                &what,
                |h| matches!(h, Happening::Event { name, .. } if name == event),
            )
            .await
        {
            Happening::Event { args, .. } => args,
            _ => unreachable!(),
        }
    }

    /// The first argument of the next `event` (panics when it came without one).
    pub async fn next_payload(&mut self, event: &str) -> Value {
        let args = self.next(event).await;
        args.into_iter()
            .next()
            .unwrap_or_else(|| panic!("{}: {event:?} came without a payload", self.name))
    }

    /// The next event of any name, in arrival order: `(name, args)`.
    pub async fn next_any(&mut self) -> (String, Vec<Value>) {
        match self
            .take("any event", |h| matches!(h, Happening::Event { .. }))
            .await
        {
            Happening::Event { name, args } => (name, args),
            _ => unreachable!(),
        }
    }

    /// Waits `within` and asserts that no `event` arrived (nor is waiting unconsumed).
    pub async fn expect_none(&mut self, event: &str, within: Duration) {
        let matches = |h: &Happening| matches!(h, Happening::Event { name, .. } if name == event);
        if let Some(h) = self.pending.iter().find(|h| matches(h)) {
            panic!(
                "{}: expected no {event:?}, but got {}",
                self.name,
                h.brief()
            );
        }
        let deadline = Instant::now() + within;
        while let Some(h) = self.recv_until(deadline).await {
            if matches(&h) {
                panic!(
                    "{}: expected no {event:?}, but got {}",
                    self.name,
                    h.brief()
                );
            }
            self.pending.push_back(h);
        }
    }

    /// Every event received and not consumed yet, in order (consumes them).
    pub fn drain_events(&mut self) -> Vec<(String, Vec<Value>)> {
        let mut events = Vec::new();
        self.pending.retain(|h| match h {
            Happening::Event { name, args } => {
                events.push((name.clone(), args.clone()));
                false
            }
            _ => true,
        });
        events
    }

    /// Closes the socket from the client side and waits for the `disconnect`.
    pub async fn disconnect(&mut self) {
        self.send(json!({ "cmd": "disconnect" })).await;
        self.disconnected().await;
    }

    /// Waits until the socket is disconnected (by either side); returns the reason.
    pub async fn disconnected(&mut self) -> String {
        match self
            .take("disconnect", |h| {
                matches!(h, Happening::Disconnected { .. })
            })
            .await
        {
            Happening::Disconnected { reason } => reason,
            _ => unreachable!(),
        }
    }

    /// A plain HTTP GET from Node.js (as a page loading a script): `(status, content type, body)`.
    pub async fn fetch(&mut self, url: &str) -> (u16, Option<String>, String) {
        let id = self.next_id;
        self.next_id += 1;
        self.send(json!({ "cmd": "fetch", "url": url, "id": id }))
            .await;
        match self
            .take(
                &format!("GET {url}"),
                |h| matches!(h, Happening::Fetched { id: got, .. } if *got == id),
            )
            .await
        {
            Happening::Fetched {
                status,
                content_type,
                body,
                ..
            } => (status, content_type, body),
            _ => unreachable!(),
        }
    }

    async fn send(&mut self, command: Value) {
        let mut line = command.to_string();
        line.push('\n');
        let written = async {
            self.stdin.write_all(line.as_bytes()).await?;
            self.stdin.flush().await
        };
        if let Err(e) = tokio::time::timeout(self.wait, written)
            .await
            .unwrap_or_else(|_| Err(std::io::Error::other("timed out writing to the driver")))
        {
            panic!("{}: cannot command the driver: {e}", self.name);
        }
    }

    /// The first pending or arriving happening that `wanted` accepts; the others stay
    /// pending, in order. Panics after [`WAIT`].
    async fn take(&mut self, what: &str, wanted: impl Fn(&Happening) -> bool) -> Happening {
        if let Some(i) = self.pending.iter().position(&wanted) {
            return self.pending.remove(i).expect("index found");
        }
        let deadline = Instant::now() + self.wait;
        while let Some(h) = self.recv_until(deadline).await {
            if wanted(&h) {
                return h;
            }
            self.pending.push_back(h);
        }
        let seen: Vec<String> = self.pending.iter().map(Happening::brief).collect();
        panic!(
            "{}: timed out after {:?} waiting for {what}; received meanwhile (unconsumed): {seen:#?}",
            self.name, self.wait
        );
    }

    /// The next report before `deadline`, or `None` at the deadline.
    async fn recv_until(&mut self, deadline: Instant) -> Option<Happening> {
        match tokio::time::timeout_at(deadline, self.lines.recv()).await {
            Err(_) => None,
            Ok(Some(Ok(h))) => Some(h),
            Ok(Some(Err(e))) => panic!("{}: {e}", self.name),
            Ok(None) => {
                let status = self.child.try_wait().ok().flatten();
                panic!("{}: the Node.js driver exited ({status:?})", self.name)
            }
        }
    }
}
