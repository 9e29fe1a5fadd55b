//! Calling the core: an HTTP/2 channel with the bearer token on every call. Used by the edges
//! (in one process or apart) and by tests; other backends can use it too.

use tonic::{
    Request, Status,
    metadata::{Ascii, MetadataValue},
    service::{Interceptor, interceptor::InterceptedService},
    transport::{Channel, Endpoint},
};

use crate::v1::{chat_client, staff_client, telegram_client};

/// Adds `authorization: Bearer <token>` to every call.
#[derive(Clone)]
pub struct BearerToken(MetadataValue<Ascii>);

impl BearerToken {
    /// `None` when the token holds characters a header cannot carry.
    pub fn new(token: &str) -> Option<Self> {
        format!("Bearer {token}").parse().ok().map(Self)
    }
}

impl std::fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BearerToken(***)")
    }
}

impl Interceptor for BearerToken {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        request
            .metadata_mut()
            .insert("authorization", self.0.clone());
        Ok(request)
    }
}

/// An authenticated `socketgram.v1.Chat` client.
pub type ChatClient = chat_client::ChatClient<InterceptedService<Channel, BearerToken>>;
/// An authenticated `socketgram.v1.Telegram` client.
pub type TelegramClient = telegram_client::TelegramClient<InterceptedService<Channel, BearerToken>>;

/// An authenticated `socketgram.v1.Staff` client.
pub type StaffClient = staff_client::StaffClient<InterceptedService<Channel, BearerToken>>;

/// Why a client could not be made.
#[derive(Debug)]
pub enum ClientError {
    /// The URL is not a valid endpoint.
    Url(String),
    /// The token cannot travel in a header.
    Token,
    /// The first connection failed.
    Connect(tonic::transport::Error),
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientError::Url(url) => write!(f, "invalid core URL {url:?}"),
            ClientError::Token => {
                f.write_str("the core token holds characters a header cannot carry")
            }
            ClientError::Connect(e) => write!(f, "cannot connect to the core: {e}"),
        }
    }
}

impl std::error::Error for ClientError {}

/// The services of one core, sharing one channel.
#[derive(Clone, Debug)]
pub struct CoreClient {
    pub chat: ChatClient,
    pub telegram: TelegramClient,
    pub staff: StaffClient,
}

impl CoreClient {
    fn endpoint(url: &str) -> Result<Endpoint, ClientError> {
        // A core whose machine is gone (no RST ever comes) is given up on within seconds, so
        // an edge moves on to the next core instead of waiting for the kernel's timeouts.
        const KEEPALIVE: std::time::Duration = std::time::Duration::from_secs(5);
        Ok(Endpoint::from_shared(url.to_owned())
            .map_err(|_| ClientError::Url(url.to_owned()))?
            .connect_timeout(std::time::Duration::from_secs(3))
            .http2_keep_alive_interval(KEEPALIVE)
            .keep_alive_timeout(KEEPALIVE)
            .keep_alive_while_idle(true))
    }

    fn over(channel: Channel, token: &str) -> Result<Self, ClientError> {
        let token = BearerToken::new(token).ok_or(ClientError::Token)?;
        Ok(Self {
            chat: chat_client::ChatClient::with_interceptor(channel.clone(), token.clone()),
            telegram: telegram_client::TelegramClient::with_interceptor(
                channel.clone(),
                token.clone(),
            ),
            staff: staff_client::StaffClient::with_interceptor(channel, token),
        })
    }

    /// Connects now; fails when the core is not there.
    pub async fn connect(url: &str, token: &str) -> Result<Self, ClientError> {
        let channel = Self::endpoint(url)?
            .connect()
            .await
            .map_err(ClientError::Connect)?;
        Self::over(channel, token)
    }

    /// Connects on first use and reconnects after failures by itself.
    pub fn lazy(url: &str, token: &str) -> Result<Self, ClientError> {
        Self::over(Self::endpoint(url)?.connect_lazy(), token)
    }
}

/// The server's side of [`in_process`]: each connection the client opens, for the core's
/// gRPC server to serve (`tonic::transport::Server::serve_with_incoming`).
pub type InProcessIncoming = tokio_stream::wrappers::UnboundedReceiverStream<
    Result<tokio::io::DuplexStream, std::io::Error>,
>;

/// A client of a core in this process, and the connections it opens for that core to serve.
///
/// Still gRPC over HTTP/2 (DESIGN.md: the edges speak only the contract), but over in-memory
/// pipes instead of a loopback socket: every frame between an edge and the core of one
/// process would otherwise cost a send and a receive system call on each side and a wake-up
/// through the kernel, which at a hundred messages in flight was most of the server's CPU.
pub fn in_process(token: &str) -> Result<(CoreClient, InProcessIncoming), ClientError> {
    /// Bytes either direction may buffer before the writer waits for the reader: as much as
    /// HTTP/2's default window, so a stream's flow control is what limits it, not the pipe.
    const PIPE: usize = 64 * 1024;
    let (accept, incoming) = tokio::sync::mpsc::unbounded_channel();
    let connector = tower::service_fn(move |_: tonic::transport::Uri| {
        let (client, server) = tokio::io::duplex(PIPE);
        let accepted = accept.send(Ok(server));
        async move {
            accepted.map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::NotConnected, "the core has stopped")
            })?;
            Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(client))
        }
    });
    // The URL is never dialled; it names the channel in logs.
    let channel =
        Endpoint::from_static("http://in-process.core").connect_with_connector_lazy(connector);
    Ok((
        CoreClient::over(channel, token)?,
        tokio_stream::wrappers::UnboundedReceiverStream::new(incoming),
    ))
}

/// Every core an edge may call, and the one it calls now: an edge whose core goes away moves
/// on to the next in the list (`failed`), round and round, so any live replica serves it.
#[derive(Clone, Debug)]
pub struct Cores {
    clients: std::sync::Arc<[(String, CoreClient)]>,
    current: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl Cores {
    /// Clients for `urls` (at least one), each connecting on first use.
    pub fn lazy<S: AsRef<str>>(urls: &[S], token: &str) -> Result<Self, ClientError> {
        if urls.is_empty() {
            return Err(ClientError::Url("no core URL".into()));
        }
        let clients = urls
            .iter()
            .map(|url| {
                Ok((
                    url.as_ref().to_owned(),
                    CoreClient::lazy(url.as_ref(), token)?,
                ))
            })
            .collect::<Result<Vec<_>, ClientError>>()?;
        Ok(Self {
            clients: clients.into(),
            current: Default::default(),
        })
    }

    /// One core only.
    pub fn one(client: CoreClient) -> Self {
        Self {
            clients: vec![(String::new(), client)].into(),
            current: Default::default(),
        }
    }

    /// The core called now, and its place in the list (for [`Cores::failed`]).
    pub fn current(&self) -> (usize, CoreClient) {
        let at = self.current.load(std::sync::atomic::Ordering::Relaxed) % self.clients.len();
        (at, self.clients[at].1.clone())
    }

    /// The URL of the core at `at`.
    pub fn url(&self, at: usize) -> &str {
        &self.clients[at % self.clients.len()].0
    }

    /// How many cores there are.
    pub fn len(&self) -> usize {
        self.clients.len()
    }

    /// Always false: there is at least one core.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The core at `at` failed: the next one is called from now on (unless someone moved on
    /// already). Returns the place of the core called now.
    pub fn failed(&self, at: usize) -> usize {
        use std::sync::atomic::Ordering;
        let next = (at + 1) % self.clients.len();
        match self
            .current
            .compare_exchange(at, next, Ordering::Relaxed, Ordering::Relaxed)
        {
            Ok(_) => next,
            Err(now) => now % self.clients.len(),
        }
    }
}
