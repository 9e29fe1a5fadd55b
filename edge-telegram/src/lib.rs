//! The Telegram edge (LEGACY.md §7): Bot API updates in (long polling or webhook), gRPC to
//! the core, support replies out. It holds no chat state: links, modes, the active flag,
//! credentials and the delivery cursor are the core's, reached only through the gRPC contract
//! (`socketgram_proto::client::CoreClient`), even when both run in one process.
//!
//! - [`config`]: the `[telegram]` section.
//! - [`texts`]: every text the bot shows, English and Russian.
//! - `dialogue`: the handler tree (`/start`, menus, log-in, writing mode with texts, photos
//!   and files; groups told once that the bot talks in private only).
//! - `staff`: the staff chat (`[telegram] staff_chat_id`): a forum topic per conversation,
//!   visitor messages mirrored there, staff replies and commands from there.
//! - `delivery`: support replies (texts and files) to the linked chats, from a durable cursor.
//! - `lease`: the delivery lease, so that of several edges of one bot one delivers.
//! - `sender`: the throttled bot and what to do with each kind of Telegram failure.
//! - `webhook`: the webhook route and its update listener.
//! - `core_api`: typed calls to the core.
//!
//! [`run`] runs the bot (polling, or webhook on its own listener); a caller that serves the
//! webhook on its own axum listener uses [`webhook_router`] and [`run_with_webhook`].
//! [`register_ops`] adds the edge's readiness check (`bot_api`) to the operations endpoints.

pub mod config;
mod core_api;
mod delivery;
mod dialogue;
mod error;
mod lease;
mod sender;
mod staff;
pub mod texts;
mod webhook;

use std::{fmt::Display, sync::Arc, time::Duration};

use futures::future::BoxFuture;
use socketgram_proto::client::Cores;
use teloxide::{
    dispatching::{Dispatcher, dialogue::InMemStorage},
    dptree,
    error_handlers::ErrorHandler,
    payloads::SetWebhookSetters as _,
    prelude::Requester as _,
    requests::Request as _,
    types::{AllowedUpdate, Me},
    update_listeners::{Polling, UpdateListener},
};
use tokio::{net::TcpListener, task::JoinHandle};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::{
    config::{TelegramConfig, UpdateMode},
    core_api::{CoreApi, Link},
    delivery::{Delivery, Poster, Replies},
    dialogue::{Context, Step},
    lease::DeliveryLease,
    sender::{Backoff, FailureKind, Retry, SendError, TgBot, classify, send_html},
    staff::{Mirror, Staff},
    texts::Texts,
};
pub use crate::{error::TelegramError, webhook::WebhookInbox};

/// Adds the Telegram edge's readiness check to `ops`: `bot_api`, a `getMe` call (the
/// cheapest Bot API method, and one a wrong token fails), made on each `/readyz`. It goes
/// around the throttle the edge sends through: a probe must not wait behind deliveries.
pub fn register_ops(
    ops: socketgram_common::ops::Ops,
    config: &TelegramConfig,
) -> socketgram_common::ops::Ops {
    use socketgram_common::ops::NotReady;
    let bot = url::Url::parse(&config.api_url)
        .map(|url| teloxide::Bot::new(config.token.expose()).set_api_url(url))
        .map_err(|e| format!("telegram.api_url: {e}"));
    ops.ready("bot_api", move || {
        let bot = bot.clone();
        async move {
            let bot = bot.map_err(NotReady::because)?;
            bot.get_me()
                .send()
                .await
                .map(drop)
                .map_err(NotReady::because)
        }
    })
}

/// How long one `getUpdates` call waits for updates (below the HTTP client's 17 s timeout).
const POLL_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs the bot until `shutdown`: long polling, or (webhook mode) the webhook served on a
/// listener of its own at `telegram.webhook_listen`.
pub async fn run(
    config: TelegramConfig,
    core: Cores,
    shutdown: CancellationToken,
) -> Result<(), TelegramError> {
    match config.mode {
        UpdateMode::Polling => {
            let bot = match Bot::start(&config, core, &shutdown).await {
                Err(TelegramError::Shutdown) => return Ok(()),
                other => other?,
            };
            let listener = Polling::builder(bot.bot.clone())
                .timeout(POLL_TIMEOUT)
                .delete_webhook()
                .await
                .build();
            bot.dispatch(listener, shutdown).await
        }
        UpdateMode::Webhook => {
            let Some(listen) = config.webhook_listen.clone() else {
                return Err(TelegramError::Config(
                    "webhook mode needs telegram.webhook_listen, unless the caller serves \
                     webhook_router() and calls run_with_webhook()"
                        .into(),
                ));
            };
            let (router, inbox) = webhook_router(&config);
            let listener =
                TcpListener::bind(&listen)
                    .await
                    .map_err(|source| TelegramError::Listen {
                        addr: listen.clone(),
                        source,
                    })?;
            let path = redact_token(&config, &config.webhook_path());
            info!(addr = ?listener.local_addr().ok(), %path, "Telegram webhook listening");
            let stop = shutdown.child_token();
            let server = tokio::spawn(
                axum::serve(listener, router)
                    .with_graceful_shutdown(stop.clone().cancelled_owned())
                    .into_future(),
            );
            let result = run_with_webhook(config, core, inbox, shutdown).await;
            stop.cancel();
            match server.await {
                Ok(Ok(())) => {}
                Ok(Err(source)) => {
                    return Err(TelegramError::Listen {
                        addr: listen,
                        source,
                    });
                }
                Err(e) => warn!(error = %e, "webhook server task failed"),
            }
            result
        }
    }
}

/// The webhook route (`POST /bot<token>` by default, the secret token header checked), for a
/// caller that serves it on its own axum listener, and the inbox to hand to
/// [`run_with_webhook`].
pub fn webhook_router(config: &TelegramConfig) -> (axum::Router, WebhookInbox) {
    webhook::router(config)
}

/// Runs the bot in webhook mode with updates from `inbox` (its route served by the caller):
/// registers the webhook with Telegram, then dispatches until `shutdown`. The webhook stays
/// registered on shutdown, so Telegram keeps the updates of the downtime for the next start.
pub async fn run_with_webhook(
    config: TelegramConfig,
    core: Cores,
    inbox: WebhookInbox,
    shutdown: CancellationToken,
) -> Result<(), TelegramError> {
    let target = config.webhook_target().ok_or_else(|| {
        TelegramError::Config("webhook mode needs telegram.webhook_url".to_owned())
    })?;
    let bot = match Bot::start(&config, core, &shutdown).await {
        Err(TelegramError::Shutdown) => return Ok(()),
        other => other?,
    };
    let mut backoff = Backoff::default();
    loop {
        let result = bot
            .bot
            .set_webhook(target.clone())
            .secret_token(inbox.secret.clone())
            .allowed_updates(vec![AllowedUpdate::Message])
            .send()
            .await;
        match result {
            Ok(_) => break,
            Err(e) if classify(&e) == FailureKind::Transient => {
                warn!(error = %e, "cannot register the webhook yet");
                if !backoff.wait(&shutdown).await {
                    return Ok(());
                }
            }
            Err(e) => return Err(TelegramError::Telegram(e)),
        }
    }
    info!(url = %redact_token(&config, target.as_str()), "Telegram webhook registered");
    bot.dispatch(webhook::InboxListener::new(inbox.rx), shutdown)
        .await
}

/// A path or URL for logs: the default webhook path holds the bot token.
fn redact_token(config: &TelegramConfig, text: &str) -> String {
    match config.token.expose() {
        "" => text.to_owned(),
        token => text.replace(token, "***"),
    }
}

/// A started bot: core reached, chats reset, delivery running; updates not yet taken.
struct Bot {
    bot: TgBot,
    context: Arc<Context>,
    delivery: JoinHandle<()>,
    /// The staff chat's check and mirror, when one is configured.
    staff: Option<JoinHandle<()>>,
    menus: JoinHandle<()>,
    /// Stops the delivery and the menus: on shutdown, or when dispatching ends otherwise.
    stop: CancellationToken,
}

impl Bot {
    /// Reaches the core and Telegram (waiting for them, with back-off, until `shutdown`),
    /// resets every linked chat to the menu, and starts the delivery of support replies.
    async fn start(
        config: &TelegramConfig,
        core: Cores,
        shutdown: &CancellationToken,
    ) -> Result<Self, TelegramError> {
        let bot = sender::bot(config).map_err(TelegramError::Config)?;
        let core = CoreApi::new(core);
        let texts = Texts::new(config.language);
        let info = until_ok(shutdown, "reach the core", || core.info()).await?;
        let me = until_ok(shutdown, "reach Telegram", || get_me(&bot)).await?;
        info!(bot = %me.username(), "Telegram bot connected");
        // Before any update is taken: a chat that writes right away is not reset after it.
        let links = until_ok(shutdown, "reset the Telegram chats", || core.reset_modes()).await?;
        let stop = shutdown.child_token();
        let menus = tokio::spawn(show_menus(
            bot.clone(),
            core.clone(),
            texts,
            links,
            stop.clone(),
        ));
        let consumer = format!("telegram:{}", config.bot_id().unwrap_or("bot"));
        let lease = DeliveryLease::new(core.clone(), consumer.clone(), config.delivery_lease());
        let delivery = tokio::spawn(
            Delivery {
                core: core.clone(),
                route: Replies {
                    core: core.clone(),
                    poster: Poster {
                        core: core.clone(),
                        bot: bot.clone(),
                        texts,
                        shutdown: stop.clone(),
                        metric: "socketgram_telegram_deliveries_total",
                    },
                },
                consumer,
                lease,
                shutdown: stop.clone(),
            }
            .run(),
        );
        let staff = config
            .staff_chat_id
            .map(|chat_id| Arc::new(Staff::new(chat_id)));
        let staff_task = staff.clone().map(|staff| {
            let consumer = format!(
                "telegram-staff:{}:{}",
                config.bot_id().unwrap_or("bot"),
                staff.chat_id
            );
            tokio::spawn(staff::run(Mirror {
                staff,
                core: core.clone(),
                bot: bot.clone(),
                texts,
                bot_id: me.id,
                lease: DeliveryLease::new(core.clone(), consumer.clone(), config.delivery_lease()),
                consumer,
                shutdown: stop.clone(),
            }))
        });
        let context = Arc::new(Context {
            core,
            texts,
            info,
            contacts_html: config.contacts_html.clone(),
            failed_logins: Default::default(),
            bot_id: me.id,
            groups_told: Default::default(),
            staff,
        });
        Ok(Self {
            bot,
            context,
            delivery,
            staff: staff_task,
            menus,
            stop,
        })
    }

    /// Takes updates from `listener` until `shutdown`, then waits for the delivery to stop.
    async fn dispatch<L>(
        self,
        listener: L,
        shutdown: CancellationToken,
    ) -> Result<(), TelegramError>
    where
        L: UpdateListener + Send,
        L::Err: Display + std::fmt::Debug + Send + 'static,
    {
        let mut dispatcher = Dispatcher::builder(self.bot.clone(), dialogue::schema())
            .dependencies(dptree::deps![
                self.context.clone(),
                InMemStorage::<Step>::new()
            ])
            // Updates the tree does not take (channel posts, edits...) are ignored quietly.
            .default_handler(|_| async {})
            .error_handler(Arc::new(TracingErrors("update handler")))
            .build();
        let stopper = tokio::spawn(stop_dispatcher(
            shutdown.clone(),
            dispatcher.shutdown_token(),
        ));
        info!("Telegram bot taking updates");
        let result = dispatcher
            .try_dispatch_with_listener(listener, Arc::new(TracingErrors("update listener")))
            .await;
        stopper.abort();
        if let Err(e) = &result {
            error!(error = %e, "the Telegram dispatcher could not start");
        }
        self.stop.cancel();
        let _ = self.delivery.await;
        if let Some(staff) = self.staff {
            let _ = staff.await;
        }
        self.menus.abort();
        info!("Telegram bot stopped");
        result.map_err(TelegramError::Telegram)
    }
}

/// The bot's username, as Telegram's `getMe` gives it for the token, asked until Telegram
/// answers (with back-off) or `shutdown`: for a web edge that offers the bot ("Continue in
/// Telegram") whether or not this process runs it. A refused token is final.
pub async fn bot_username(
    config: &TelegramConfig,
    shutdown: &CancellationToken,
) -> Result<String, TelegramError> {
    let bot = sender::bot(config).map_err(TelegramError::Config)?;
    let me = until_ok(shutdown, "ask Telegram the bot's username", || get_me(&bot)).await?;
    Ok(me.user.username.unwrap_or_default())
}

async fn get_me(bot: &TgBot) -> Result<Me, TelegramError> {
    bot.get_me().send().await.map_err(|e| match &e {
        teloxide::RequestError::Api(teloxide::ApiError::InvalidToken) => {
            TelegramError::InvalidToken(e)
        }
        _ => TelegramError::Telegram(e),
    })
}

/// Calls `f` until it succeeds, waiting with back-off between failures; `Shutdown` when
/// `shutdown` comes first. A refused bot token is final.
async fn until_ok<T, F, Fut>(
    shutdown: &CancellationToken,
    what: &'static str,
    mut f: F,
) -> Result<T, TelegramError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, TelegramError>>,
{
    let mut backoff = Backoff::default();
    loop {
        let result = tokio::select! {
            () = shutdown.cancelled() => return Err(TelegramError::Shutdown),
            result = f() => result,
        };
        match result {
            Ok(value) => return Ok(value),
            Err(e @ TelegramError::InvalidToken(_)) => return Err(e),
            Err(e) => warn!(error = %e, "cannot {what} yet; trying again"),
        }
        if !backoff.wait(shutdown).await {
            return Err(TelegramError::Shutdown);
        }
    }
}

/// On start every linked chat is back in menu mode and is shown the menu (LEGACY.md §7).
async fn show_menus(
    bot: TgBot,
    core: CoreApi,
    texts: Texts,
    links: Vec<Link>,
    shutdown: CancellationToken,
) {
    let (text, markup) = dialogue::restart_menu(&texts);
    for link in links.into_iter().filter(|l| l.active) {
        if shutdown.is_cancelled() {
            return;
        }
        match send_html(
            &bot,
            link.chat_id,
            &text,
            Some(markup.clone()),
            &Retry::Reply,
        )
        .await
        {
            Ok(()) => {}
            Err(SendError::ChatGone(e)) => {
                warn!(chat_id = link.chat_id, error = %e, "chat refuses messages; link inactive");
                if let Err(e) = core.set_state(link.chat_id, None, Some(false)).await {
                    warn!(chat_id = link.chat_id, error = %e, "cannot mark the link inactive");
                }
            }
            Err(e) => warn!(chat_id = link.chat_id, error = %e, "cannot show the menu"),
        }
    }
}

/// Stops the dispatcher when `shutdown` fires. The dispatcher refuses a stop before it has
/// started taking updates, so this asks again until it is accepted.
async fn stop_dispatcher(shutdown: CancellationToken, token: teloxide::dispatching::ShutdownToken) {
    shutdown.cancelled().await;
    loop {
        match token.shutdown() {
            Ok(stopped) => {
                stopped.await;
                return;
            }
            Err(_idle) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// Logs errors of handlers and listeners through `tracing`.
struct TracingErrors(&'static str);

impl<E: Display + Send + 'static> ErrorHandler<E> for TracingErrors {
    fn handle_error(self: Arc<Self>, error: E) -> BoxFuture<'static, ()> {
        warn!(source = self.0, error = %error, "Telegram update failed");
        Box::pin(async {})
    }
}
