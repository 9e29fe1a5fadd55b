//! A minimal Socket.IO v4 client over WebSocket (Engine.IO 4, default namespace), just what
//! the legacy pages do: connect with a query, emit events, receive events, answer pings.
//! Lean on purpose: tens of thousands of them run in one process.

use std::{net::SocketAddr, time::Instant};

use futures::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::{net::TcpSocket, sync::mpsc};
use tokio_tungstenite::tungstenite::{
    Message, client::IntoClientRequest, protocol::WebSocketConfig,
};

/// The pseudo-event name under which acks arrive.
pub const ACK: &str = "ack";

/// An event the server sent.
#[derive(Debug)]
pub struct Incoming {
    pub name: String,
    pub args: Vec<Value>,
    pub at: Instant,
}

/// Why a client could not connect.
#[derive(Debug, thiserror::Error)]
pub enum SioError {
    #[error("websocket: {0}")]
    WebSocket(#[from] tokio_tungstenite::tungstenite::Error),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    #[error("refused by the server: {0}")]
    Refused(String),
    #[error("protocol: {0}")]
    Protocol(String),
}

/// A WebSocket to the server, past the Socket.IO connect of the default namespace.
pub type Ws = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

/// Opens a WebSocket to `server` from `local` with the handshake `query` and does the
/// Engine.IO open and the Socket.IO connect; `recv_buffer` sets the socket's receive buffer
/// (bytes) before it connects (a client that reads slowly).
pub async fn handshake(
    server: SocketAddr,
    local: std::net::IpAddr,
    query: &str,
    recv_buffer: Option<u32>,
) -> Result<Ws, SioError> {
    let socket = if server.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if let Some(bytes) = recv_buffer {
        socket.set_recv_buffer_size(bytes)?;
    }
    // IP_BIND_ADDRESS_NO_PORT: the port is picked at connect(2), for the 4-tuple, instead of
    // at bind(2), which searches the whole ephemeral range for a port no socket holds (TIME_WAIT
    // ones included): with thousands of clients that kept the generator's thread in the kernel
    // (94 % system time) and connect rates fell to a few hundred a second at 10,000.
    if server.is_ipv4() {
        nix::sys::socket::setsockopt(
            &socket,
            nix::sys::socket::sockopt::IpBindAddressNoPort,
            &true,
        )
        .map_err(std::io::Error::from)?;
    }
    socket.bind(SocketAddr::new(local, 0))?;
    let stream = socket.connect(server).await?;
    stream.set_nodelay(true)?;
    let url = format!("ws://{server}/socket.io/?EIO=4&transport=websocket&{query}");
    let request = url.into_client_request()?;
    // tungstenite's default 128 KiB read buffer per client is faulted in page by page: at
    // 19,000 clients that was 2 GB and most of the generator's time in the kernel.
    let config = WebSocketConfig::default().read_buffer_size(4096);
    let (mut ws, _) =
        tokio_tungstenite::client_async_with_config(request, stream, Some(config)).await?;

    // Engine.IO open packet, then the Socket.IO connect of the default namespace.
    match ws.next().await {
        Some(Ok(Message::Text(t))) if t.starts_with('0') => {}
        other => {
            return Err(SioError::Protocol(format!(
                "expected the open packet, got {other:?}"
            )));
        }
    }
    ws.send(Message::text("40")).await?;
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) if t.starts_with("40") => return Ok(ws),
            Some(Ok(Message::Text(t))) if t.starts_with("44") => {
                let message = serde_json::from_str::<Value>(&t[2..])
                    .ok()
                    .and_then(|v| v.get("message").and_then(Value::as_str).map(str::to_owned))
                    .unwrap_or_else(|| t.to_string());
                return Err(SioError::Refused(message));
            }
            Some(Ok(Message::Text(t))) if t.as_str() == "2" => ws.send(Message::text("3")).await?,
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(e.into()),
            None => return Err(SioError::Protocol("closed during connect".into())),
        }
    }
}

/// A Socket.IO event packet: `42[<name>, <payload>]`, with the ack id `ack` when given.
pub fn event_frame(name: &str, payload: &Value, ack: Option<u64>) -> String {
    let args = Value::Array(vec![Value::String(name.into()), payload.clone()]);
    match ack {
        Some(id) => format!("42{id}{args}"),
        None => format!("42{args}"),
    }
}

/// A connected client: emit through it; events arrive on the receiver returned with it.
#[derive(Clone)]
pub struct Client {
    out: mpsc::UnboundedSender<Message>,
}

impl Client {
    /// Connects to `server` (`host:port`) from `local` (a loopback address of its own, to
    /// spread ports), with the handshake `query`.
    pub async fn connect(
        server: SocketAddr,
        local: std::net::IpAddr,
        query: &str,
    ) -> Result<(Client, mpsc::UnboundedReceiver<Incoming>), SioError> {
        let ws = handshake(server, local, query, None).await?;
        Ok(Self::over(ws))
    }

    /// A client over a WebSocket [`handshake`] opened.
    pub fn over(ws: Ws) -> (Client, mpsc::UnboundedReceiver<Incoming>) {
        let (mut sink, mut stream) = ws.split();
        let (out, mut out_rx) = mpsc::unbounded_channel::<Message>();
        let (events, events_rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Some(message) = out_rx.recv().await {
                if sink.send(message).await.is_err() {
                    return;
                }
            }
            let _ = sink.close().await;
        });
        let pong = out.clone();
        tokio::spawn(async move {
            while let Some(Ok(message)) = stream.next().await {
                let Message::Text(text) = message else {
                    continue;
                };
                let at = Instant::now();
                match text.as_bytes().first() {
                    Some(b'2') => {
                        let _ = pong.send(Message::text("3"));
                    }
                    Some(b'4') if text.starts_with("42") => {
                        let body = text[2..].trim_start_matches(|c: char| c.is_ascii_digit());
                        if let Ok(Value::Array(mut parts)) = serde_json::from_str::<Value>(body)
                            && !parts.is_empty()
                            && let Value::String(name) = parts.remove(0)
                            && events
                                .send(Incoming {
                                    name,
                                    args: parts,
                                    at,
                                })
                                .is_err()
                        {
                            return;
                        }
                    }
                    Some(b'4') if text.starts_with("43") => {
                        // An ack: reported as the pseudo-event "ack" with the ack id first.
                        let digits: String =
                            text[2..].chars().take_while(char::is_ascii_digit).collect();
                        let body = &text[2 + digits.len()..];
                        if let (Ok(id), Ok(Value::Array(mut args))) =
                            (digits.parse::<u64>(), serde_json::from_str::<Value>(body))
                        {
                            args.insert(0, Value::from(id));
                            if events
                                .send(Incoming {
                                    name: ACK.into(),
                                    args,
                                    at,
                                })
                                .is_err()
                            {
                                return;
                            }
                        }
                    }
                    Some(b'1') => return,
                    _ => {}
                }
            }
        });
        (Client { out }, events_rx)
    }

    /// Emits `name` with one JSON argument.
    pub fn emit(&self, name: &str, payload: &Value) -> bool {
        self.out
            .send(Message::text(event_frame(name, payload, None)))
            .is_ok()
    }

    /// Emits `name` asking for an ack; the ack arrives as an [`ACK`] event whose first
    /// argument is `id`.
    pub fn emit_ack(&self, name: &str, payload: &Value, id: u64) -> bool {
        self.out
            .send(Message::text(event_frame(name, payload, Some(id))))
            .is_ok()
    }

    /// Closes the connection.
    pub fn close(&self) {
        let _ = self.out.send(Message::Close(None));
    }
}
