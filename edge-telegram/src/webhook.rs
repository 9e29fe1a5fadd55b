//! Webhook mode: the route Telegram POSTs updates to (`/bot<token>` by default, LEGACY.md §7),
//! checked against the secret token header, and the update listener that feeds what it
//! receives to the dispatcher. The route is an [`axum::Router`], so it can be served by the web
//! edge's listener or by a listener of its own.

use std::{convert::Infallible, sync::Arc};

use axum::{
    Router,
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode},
    routing::post,
};
use futures::stream::BoxStream;
use subtle::ConstantTimeEq as _;
use teloxide::{
    stop::{StopFlag, StopToken, mk_stop_token},
    types::Update,
    update_listeners::{AsUpdateStream, UpdateListener},
};
use tokio::sync::mpsc;
use tracing::{debug, warn};

use crate::config::TelegramConfig;

/// Updates received but not yet taken by the dispatcher; when full, Telegram is told to come
/// back later (it retries a webhook call that did not get a 2xx).
const INBOX_CAPACITY: usize = 1024;
/// Telegram's header carrying the webhook secret.
const SECRET_HEADER: &str = "x-telegram-bot-api-secret-token";

/// The receiving end of the webhook route: give it to [`crate::run_with_webhook`].
pub struct WebhookInbox {
    pub(crate) rx: mpsc::Receiver<Update>,
    /// The secret the route checks, to be registered with `setWebhook`.
    pub(crate) secret: String,
}

#[derive(Clone)]
struct RouteState {
    tx: mpsc::Sender<Update>,
    secret: Arc<String>,
}

/// The webhook route (`POST <webhook path>`) and the inbox it feeds. The secret is the
/// configured one, or a random one made now.
pub fn router(config: &TelegramConfig) -> (Router, WebhookInbox) {
    let secret = match &config.webhook_secret {
        Some(s) => s.expose().to_owned(),
        None => random_secret(),
    };
    let (tx, rx) = mpsc::channel(INBOX_CAPACITY);
    let state = RouteState {
        tx,
        secret: Arc::new(secret.clone()),
    };
    let router = Router::new()
        .route(&config.webhook_path(), post(receive))
        .with_state(state);
    (router, WebhookInbox { rx, secret })
}

fn random_secret() -> String {
    use rand::{Rng as _, distr::Alphanumeric};
    rand::rng()
        .sample_iter(&Alphanumeric)
        .take(48)
        .map(char::from)
        .collect()
}

async fn receive(State(state): State<RouteState>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let given = headers
        .get(SECRET_HEADER)
        .map(|v| v.as_bytes())
        .unwrap_or_default();
    if !bool::from(given.ct_eq(state.secret.as_bytes())) {
        warn!("webhook call without the right secret token refused");
        return StatusCode::UNAUTHORIZED;
    }
    let update: Update = match serde_json::from_slice(&body) {
        Ok(update) => update,
        Err(e) => {
            // Telegram would send it again and again: take it and drop it.
            warn!(error = %e, "unreadable webhook update dropped");
            return StatusCode::OK;
        }
    };
    debug!(update = update.id.0, "webhook update");
    match state.tx.try_send(update) {
        Ok(()) => StatusCode::OK,
        // Busy or stopping: Telegram delivers it again later.
        Err(_) => StatusCode::SERVICE_UNAVAILABLE,
    }
}

/// The dispatcher's update listener over the inbox.
pub(crate) struct InboxListener {
    rx: mpsc::Receiver<Update>,
    stop: StopToken,
    flag: StopFlag,
}

impl InboxListener {
    pub(crate) fn new(rx: mpsc::Receiver<Update>) -> Self {
        let (stop, flag) = mk_stop_token();
        Self { rx, stop, flag }
    }
}

impl<'a> AsUpdateStream<'a> for InboxListener {
    type StreamErr = Infallible;
    type Stream = BoxStream<'a, Result<Update, Infallible>>;

    fn as_stream(&'a mut self) -> Self::Stream {
        let flag = self.flag.clone();
        Box::pin(futures::stream::unfold(
            (&mut self.rx, flag, false),
            |(rx, mut flag, mut stopping)| async move {
                if !stopping {
                    tokio::select! {
                        () = &mut flag => {
                            // Stop taking updates (the route answers 503, so Telegram keeps
                            // them), but hand over those already acknowledged with a 200.
                            rx.close();
                            stopping = true;
                        }
                        update = rx.recv() => {
                            return update.map(|u| (Ok(u), (rx, flag, stopping)));
                        }
                    }
                }
                rx.recv().await.map(|u| (Ok(u), (rx, flag, stopping)))
            },
        ))
    }
}

impl UpdateListener for InboxListener {
    type Err = Infallible;

    fn stop_token(&mut self) -> StopToken {
        self.stop.clone()
    }
}
