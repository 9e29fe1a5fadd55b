//! A minimal Socket.IO v4 client over WebSocket (Engine.IO 4, default namespace), just what
//! the legacy pages do: connect with a query, emit events, receive events, answer pings.
//! Lean on purpose: tens of thousands of them run in one process.

use std::{net::SocketAddr, time::Instant};

use futures::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::{net::TcpSocket, sync::mpsc};
use tokio_tungstenite::tungstenite::{Message, client::IntoClientRequest};

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
        let socket = if server.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        socket.bind(SocketAddr::new(local, 0))?;
        let stream = socket.connect(server).await?;
        stream.set_nodelay(true)?;
        let url = format!("ws://{server}/socket.io/?EIO=4&transport=websocket&{query}");
        let request = url.into_client_request()?;
        let (ws, _) = tokio_tungstenite::client_async(request, stream).await?;
        let (mut sink, mut stream) = ws.split();

        // Engine.IO open packet, then the Socket.IO connect of the default namespace.
        match stream.next().await {
            Some(Ok(Message::Text(t))) if t.starts_with('0') => {}
            other => {
                return Err(SioError::Protocol(format!(
                    "expected the open packet, got {other:?}"
                )));
            }
        }
        sink.send(Message::text("40")).await?;
        loop {
            match stream.next().await {
                Some(Ok(Message::Text(t))) if t.starts_with("40") => break,
                Some(Ok(Message::Text(t))) if t.starts_with("44") => {
                    let message = serde_json::from_str::<Value>(&t[2..])
                        .ok()
                        .and_then(|v| v.get("message").and_then(Value::as_str).map(str::to_owned))
                        .unwrap_or_else(|| t.to_string());
                    return Err(SioError::Refused(message));
                }
                Some(Ok(Message::Text(t))) if t.as_str() == "2" => {
                    sink.send(Message::text("3")).await?
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e.into()),
                None => return Err(SioError::Protocol("closed during connect".into())),
            }
        }

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
        Ok((Client { out }, events_rx))
    }

    /// Emits `name` with one JSON argument.
    pub fn emit(&self, name: &str, payload: &Value) -> bool {
        let frame = format!(
            "42{}",
            Value::Array(vec![Value::String(name.into()), payload.clone()])
        );
        self.out.send(Message::text(frame)).is_ok()
    }

    /// Emits `name` asking for an ack; the ack arrives as an [`ACK`] event whose first
    /// argument is `id`.
    pub fn emit_ack(&self, name: &str, payload: &Value, id: u64) -> bool {
        let frame = format!(
            "42{id}{}",
            Value::Array(vec![Value::String(name.into()), payload.clone()])
        );
        self.out.send(Message::text(frame)).is_ok()
    }

    /// Closes the connection.
    pub fn close(&self) {
        let _ = self.out.send(Message::Close(None));
    }
}
