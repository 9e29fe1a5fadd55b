//! The domain service every entry point (gRPC, the edges through gRPC) goes through:
//! validation, identity of authors, storing through the writer, history, subscriptions with
//! resume, presence and the admin directory.

use std::{
    collections::HashSet,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use chrono::{SubsecRound, Utc};
use tokio::sync::{broadcast::error::RecvError, mpsc};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::{
    admins::AdminDirectory,
    assignment::{self, AutoAssign},
    bus::{Bus, BusState, News, PresenceNews},
    config::CoreConfig,
    credentials::{Credentials, Verdict},
    domain::{
        Admin, Appended, Assigned, Attachment, AttachmentId, CannedReply, ContextChanged,
        ContextError, ConversationFilter, ConversationId, ConversationSummary, Direction, Erasure,
        Lease, MessageId, NewMessage, Note, Origin, Page, Reader, Scope, Status, StatusChange,
        StoredMessage, TelegramLink, TelegramMode, VISITOR_ADMIN_ID, VisitorContext, Vouched,
    },
    error::{CoreError, CoreResult},
    files::{DirStorage, Files},
    hub::{Event, Hub},
    presence::{Presence, SessionId},
    sequencer::Sequencer,
    status::Reopenable,
    store::{MAX_PAGE, Store, text},
    transcript,
    typing::{self, Typing, Typist},
    writer::{Published, Writer},
};

/// Longest client message id accepted.
pub const MAX_CLIENT_MSG_ID: usize = 64;
/// Longest admin login (`adm_account.aid` is `VARCHAR(20)`).
pub const MAX_ADMIN_ID: usize = 20;
/// Events buffered per subscription before the subscription task waits for its reader.
const SUBSCRIPTION_BUFFER: usize = 256;
/// Longest delivery consumer name.
pub const MAX_CONSUMER: usize = 64;
/// Longest lease name and lease holder id (`sg_leases` columns hold 64 characters).
pub const MAX_LEASE_ID: usize = 64;
/// Longest lease time to live: a holder that dies keeps the others waiting at most this long.
pub const MAX_LEASE_TTL: Duration = Duration::from_secs(3600);

/// Longest canned reply shortcut (`sg_canned_replies.shortcut` is `VARCHAR(32)`).
pub const MAX_SHORTCUT: usize = 32;
/// Most canned replies a team keeps: support picks from them as it types, and every client
/// reads them whole.
pub const MAX_CANNED_REPLIES: usize = 1000;
/// How far ahead a snooze may end.
pub const MAX_SNOOZE: Duration = Duration::from_secs(366 * 24 * 3600);

/// Who writes a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Author {
    /// The conversation's visitor, from the web.
    Visitor,
    /// The conversation's visitor, from its linked Telegram chat.
    Telegram,
    /// A support admin, by login.
    Admin(String),
    /// A backend answering as support on behalf of an admin login.
    Backend(String),
}

/// A resuming subscriber's catch-up (see [`Core::join_history`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Resume {
    /// The last message id the subscriber has.
    pub since: MessageId,
    /// Most messages it catches up with one by one; more, and it starts afresh.
    pub catch_up: u32,
}

/// Where a history page starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cursor {
    /// Messages older than this id (all when `None`), newest first.
    Before(Option<MessageId>),
    /// Messages newer than this id, oldest first.
    After(MessageId),
}

/// A message to send.
#[derive(Clone, Debug)]
pub struct SendMessage {
    pub conversation_id: ConversationId,
    pub author: Author,
    pub text: String,
    pub client_msg_id: Option<String>,
    /// Files uploaded for the conversation that the message takes, in order.
    pub attachments: Vec<AttachmentId>,
}

/// A file to upload (see [`Core::upload_attachment`]).
#[derive(Clone, Debug)]
pub struct Upload {
    pub conversation_id: ConversationId,
    /// As the uploader named it (only shown).
    pub name: String,
    /// Bytes announced; 0 = not known.
    pub size: u64,
    pub author: Author,
}

/// A live subscription: events in order, then `None` when it ends. An `Err` item ends it too
/// (the database could not be read); the subscriber resumes from its last message id.
pub type Subscription = mpsc::Receiver<CoreResult<Event>>;

/// An admin counted online while this lives (see [`Core::admin_online`]).
pub struct AdminOnline {
    core: Arc<Core>,
    session: SessionId,
}

impl Drop for AdminOnline {
    fn drop(&mut self) {
        self.core.close_session(self.session);
    }
}

/// The core.
pub struct Core {
    store: Arc<dyn Store>,
    hub: Arc<Hub>,
    sequencer: Arc<Sequencer>,
    /// NATS between core replicas, when there are replicas.
    bus: Option<Bus>,
    writer: Writer,
    admins: AdminDirectory,
    /// Counts and orders presence changes: events are published under this lock, and
    /// snapshots taken under it, so a snapshot and the events after it agree.
    presence: Mutex<Presence>,
    /// Admins online, counted as visitors are (auto-assignment chooses among them).
    admins_online: Mutex<Presence<String>>,
    /// `[core] auto_assign`, when on.
    auto_assign: Option<AutoAssign>,
    next_session: AtomicU64,
    /// Conversations known to exist, to spare a query per reply (only an erasure deletes one;
    /// another replica's erasure leaves it here, which then reads as an empty conversation).
    known: Mutex<HashSet<ConversationId>>,
    /// Resolved and snoozed conversations: to tell support when a visitor's message reopened
    /// one, and to end snoozes on time.
    reopenable: Reopenable,
    /// Passes one "still typing" per typist per interval.
    typing_gate: typing::Gate,
    typing_preview: bool,
    offset: chrono::FixedOffset,
    max_chars: usize,
    company: String,
    credentials: Credentials,
    /// Support staff's sign-ins and sessions.
    staff: crate::staff::Staff,
    /// One-time tokens that link a Telegram chat to a visitor ("Continue in Telegram").
    link_tokens: crate::link_tokens::LinkTokens,
    /// Attachments' bytes and limits.
    files: Files,
    shutdown: CancellationToken,
}

impl Core {
    /// Starts the core on a migrated store: reads the admins and the last message id and
    /// starts the writer, and with `[core.cluster]` the bus to the other replicas. Streams end
    /// when `shutdown` is cancelled.
    pub async fn start(
        store: Arc<dyn Store>,
        config: &CoreConfig,
        shutdown: CancellationToken,
    ) -> CoreResult<Arc<Self>> {
        let last = store.last_message_id().await?;
        let hub = Hub::new(last);
        let sequencer = Sequencer::new(hub.clone(), store.clone());
        let admins = AdminDirectory::new(config.company.clone());
        admins.replace(store.admins().await?);
        let credentials = Credentials::new(&config.credentials)?;
        let reopenable = Reopenable::new(store.reopenable().await?);
        // The bus stops after this core said goodbye on it.
        let bus_stop = CancellationToken::new();
        let (bus, news) = if config.cluster.enabled() {
            let replica = config.cluster.replica_name();
            let (bus, news) = Bus::start(&config.cluster, replica, bus_stop.clone())
                .await
                .map_err(|e| CoreError::Internal(e.to_string()))?;
            (Some(bus), Some(news))
        } else {
            (None, None)
        };
        let writer = Writer::spawn(
            store.clone(),
            Published {
                sequencer: sequencer.clone(),
                bus: bus.clone(),
            },
            config.database.resolve_for(),
        );
        info!(
            backend = ?store.backend(),
            last_message_id = last,
            replica = bus.as_ref().map(Bus::replica),
            "core started"
        );
        let staff = crate::staff::Staff::new(
            store.clone(),
            config.staff_session_ttl_secs,
            config.staff_ldap.clone(),
        );
        let files = Files::new(
            Arc::new(DirStorage::new(
                &config.attachments.dir_for(config.database.url.expose()),
            )),
            config.attachments.clone(),
        );
        let link_tokens =
            crate::link_tokens::LinkTokens::new(store.clone(), config.telegram_link_ttl_secs);
        let core = Arc::new(Self {
            staff,
            link_tokens,
            files,
            store,
            hub,
            sequencer,
            bus,
            writer,
            admins,
            presence: Mutex::default(),
            admins_online: Mutex::default(),
            auto_assign: config
                .auto_assign
                .then(|| AutoAssign::new(config.auto_assign_max_open)),
            next_session: AtomicU64::new(1),
            known: Mutex::default(),
            reopenable,
            typing_gate: typing::Gate::default(),
            typing_preview: config.typing_preview,
            offset: config.offset(),
            max_chars: config.max_message_chars,
            company: config.company.clone(),
            credentials,
            shutdown,
        });
        core.spawn_background(&config.cluster, news, bus_stop);
        Ok(core)
    }

    /// The tasks beside the calls: the sequencer's database poll, and with a bus, the news
    /// from the other replicas, heartbeats and the expiry of silent replicas.
    fn spawn_background(
        self: &Arc<Self>,
        cluster: &crate::config::ClusterConfig,
        news: Option<tokio::sync::mpsc::Receiver<News>>,
        bus_stop: CancellationToken,
    ) {
        let poll = Duration::from_millis(cluster.poll_interval_ms);
        tokio::spawn(
            self.sequencer
                .clone()
                .run(poll, self.shutdown.clone(), |lag| {
                    metrics::gauge!("socketgram_replica_lag_messages").set(lag as f64)
                }),
        );
        tokio::spawn(self.clone().end_snoozes());
        tokio::spawn(self.clone().sweep_files());
        let (Some(bus), Some(news)) = (self.bus.clone(), news) else {
            return;
        };
        let timeout = Duration::from_secs(cluster.presence_timeout_secs);
        tokio::spawn(self.clone().apply_news(news));
        let core = self.clone();
        let nats_connected = |bus: &Bus| {
            metrics::gauge!("socketgram_nats_connected")
                .set(f64::from(u8::from(bus.state() == BusState::Connected)));
        };
        // Now, not only at the first beat: the gauge is in the first scrape after start.
        nats_connected(&bus);
        tokio::spawn(async move {
            let mut beat = tokio::time::interval(timeout / 4);
            beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    () = core.shutdown.cancelled() => break,
                    _ = beat.tick() => {}
                }
                nats_connected(&bus);
                let mut presence = core.lock_presence();
                let mut admins = core.lock_admins_online();
                bus.presence_snapshot(presence.online_here(), admins.online_here());
                if let Some(heard_since) = Instant::now().checked_sub(timeout) {
                    for conversation in presence.expire(heard_since) {
                        core.hub.publish_presence(conversation, false);
                    }
                    admins.expire(heard_since);
                }
            }
            // Visitors online through this replica are offline through it from now.
            bus.goodbye();
            bus_stop.cancel();
        });
    }

    /// Applies what the other replicas say, until the bus stops.
    async fn apply_news(self: Arc<Self>, mut news: tokio::sync::mpsc::Receiver<News>) {
        while let Some(news) = news.recv().await {
            match news {
                News::Batch { prev, messages } => self.sequencer.offer(Some(prev), messages),
                News::Presence { replica, kind } => self.apply_presence(&replica, kind),
                News::ReadMark {
                    conversation,
                    reader,
                    up_to,
                } => self.hub.publish_read_mark(conversation, reader, up_to),
                News::Note(note) => self.hub.publish_note(Arc::new(note)),
                News::Assigned {
                    conversation,
                    assignee,
                    by,
                } => {
                    if let Some(auto) = &self.auto_assign {
                        auto.learn(conversation, assignee.clone());
                    }
                    self.hub.publish_assigned(conversation, assignee, by);
                }
                News::Status {
                    conversation,
                    status,
                    change,
                } => {
                    self.reopenable.set(conversation, status);
                    self.hub.publish_status(conversation, status, change);
                }
                News::Typing(typing) => self.hub.publish_typing(Arc::new(typing)),
                News::Erased(erasure) => self.forget_erased(Arc::new(erasure)),
                News::Context(changed) => self.hub.publish_context(Arc::new(changed)),
                News::AdminsChanged => {
                    if let Err(e) = self.reload_admins_here().await {
                        warn!(error = %e, "cannot re-read the admins another replica changed");
                    }
                }
                News::Reconnected => {
                    self.sequencer.catch_up_soon();
                    if let Some(bus) = &self.bus {
                        bus.presence_snapshot(
                            self.lock_presence().online_here(),
                            self.lock_admins_online().online_here(),
                        );
                    }
                }
            }
        }
    }

    fn apply_presence(&self, replica: &str, news: PresenceNews) {
        let now = Instant::now();
        let mut presence = self.lock_presence();
        let mut admins = self.lock_admins_online();
        // Any news of a replica says it is alive, for both counts.
        admins.heard(replica, now);
        let changes = match news {
            PresenceNews::Change {
                conversation,
                online,
            } => {
                if presence.remote_change(replica, conversation, online, now) {
                    vec![(conversation, online)]
                } else {
                    Vec::new()
                }
            }
            PresenceNews::AdminChange { admin, online } => {
                admins.remote_change(replica, admin, online, now);
                Vec::new()
            }
            PresenceNews::Snapshot {
                visitors,
                admins: online_admins,
            } => {
                admins.remote_snapshot(replica, online_admins, now);
                presence.remote_snapshot(replica, visitors, now)
            }
            PresenceNews::Goodbye => {
                admins.remote_gone(replica);
                presence
                    .remote_gone(replica)
                    .into_iter()
                    .map(|c| (c, false))
                    .collect()
            }
        };
        for (conversation, online) in changes {
            self.hub.publish_presence(conversation, online);
        }
    }

    /// Whether the bus to the other replicas is connected (`None`: this core is alone).
    pub fn bus_connected(&self) -> Option<bool> {
        self.bus.as_ref().map(|b| b.state() == BusState::Connected)
    }

    /// The store underneath.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Cancelled when the core shuts down: every stream watches it.
    pub fn shutdown_token(&self) -> &CancellationToken {
        &self.shutdown
    }

    /// The configured GMT offset of `messages.date`.
    pub fn offset(&self) -> chrono::FixedOffset {
        self.offset
    }

    /// Validates, stores and publishes a message. A repeated client message id returns the
    /// first copy with `duplicate` set.
    pub async fn send(self: &Arc<Self>, send: SendMessage) -> CoreResult<Appended> {
        self.submit(send).await?.await
    }

    /// Validates a message and queues it for storing, behind every message submitted before
    /// (one caller's messages are stored in the order it submits them); the returned future
    /// resolves once it is stored and published. This lets an edge have many messages of one
    /// socket in flight without waiting for each commit, and still keep their order.
    #[tracing::instrument(skip_all, fields(conversation = send.conversation_id))]
    pub async fn submit(
        self: &Arc<Self>,
        send: SendMessage,
    ) -> CoreResult<impl Future<Output = CoreResult<Appended>> + Send + 'static> {
        check_conversation_id(send.conversation_id)?;
        let client_msg_id = match send.client_msg_id {
            Some(id) if id.is_empty() => None,
            Some(id) if id.chars().count() > MAX_CLIENT_MSG_ID => {
                return Err(CoreError::InvalidArgument(format!(
                    "client_msg_id is longer than {MAX_CLIENT_MSG_ID} characters"
                )));
            }
            other => other,
        };
        let attachments = self
            .attachments_to_send(
                send.conversation_id,
                &send.attachments,
                client_msg_id.as_deref(),
            )
            .await?;
        self.check_text(&send.text, &attachments)?;
        let (origin, admin_id) = match send.author {
            Author::Visitor => (Origin::Visitor, VISITOR_ADMIN_ID.to_owned()),
            Author::Telegram => (Origin::Telegram, VISITOR_ADMIN_ID.to_owned()),
            Author::Admin(id) => (Origin::Admin, self.check_admin(id).await?),
            Author::Backend(id) => (Origin::Backend, self.check_admin(id).await?),
        };
        if matches!(origin, Origin::Admin | Origin::Backend) {
            // Support may write first (an admin sees a visitor online and says hello): the
            // reply opens the conversation, as the legacy server stored it. Only a visitor the
            // schema cannot hold is refused, before anything is stored.
            self.require_visitor(send.conversation_id).await?;
        }
        let pending = self
            .writer
            .enqueue(NewMessage {
                conversation_id: send.conversation_id,
                origin,
                admin_id,
                text: send.text,
                client_msg_id,
                attachments,
                local_date: Utc::now()
                    .with_timezone(&self.offset)
                    .naive_local()
                    .trunc_subsecs(0),
            })
            .await?;
        let core = self.clone();
        Ok(async move {
            let appended = pending.stored().await?;
            let conversation = appended.message.conversation_id;
            core.known_insert(conversation);
            if appended.message.direction == Direction::ToSupport
                && !appended.duplicate
                && core.reopenable.visitor_wrote(conversation)
            {
                core.tell_status(conversation, Status::Open, StatusChange::VisitorWrote);
            }
            if appended.message.direction == Direction::ToSupport
                && let Some(auto) = &core.auto_assign
                && auto.known(conversation).is_none_or(|a| a.is_none())
            {
                // Beside the send: its answer need not wait for the choice.
                tokio::spawn(core.clone().auto_assign(conversation));
            }
            Ok(appended)
        })
    }

    /// The files a message names, as stored: each uploaded for this conversation and not
    /// taken by another message, none twice, within the count. A retry of a message stored
    /// with its files (the same client message id) names files that message took: the store
    /// answers it with the first copy.
    async fn attachments_to_send(
        &self,
        conversation: ConversationId,
        ids: &[AttachmentId],
        client_msg_id: Option<&str>,
    ) -> CoreResult<Vec<Attachment>> {
        let limit = self.files.config().max_per_message as usize;
        if ids.len() > limit {
            return Err(CoreError::TooManyAttachments {
                count: ids.len(),
                limit,
            });
        }
        let mut files = Vec::with_capacity(ids.len());
        for &id in ids {
            if files.iter().any(|f: &Attachment| f.id == id) {
                return Err(CoreError::AttachmentUnavailable(format!(
                    "file {id} is named twice"
                )));
            }
            let file = match self.store.attachment(id).await? {
                Some(file) if file.conversation_id == conversation => file,
                _ => {
                    return Err(CoreError::AttachmentUnavailable(format!(
                        "no file {id} was uploaded for this conversation"
                    )));
                }
            };
            if let Some(taken_by) = file.message_id {
                let retried = match client_msg_id {
                    Some(key) => self.store.client_message(conversation, key).await?,
                    None => None,
                };
                if retried != Some(taken_by) {
                    return Err(CoreError::AttachmentUnavailable(format!(
                        "file {id} is attached to a message already"
                    )));
                }
            }
            files.push(file);
        }
        Ok(files)
    }

    fn check_text(&self, text: &str, attachments: &[Attachment]) -> CoreResult<()> {
        if text.trim().is_empty() && attachments.is_empty() {
            return Err(CoreError::EmptyText);
        }
        if text.contains('\0') {
            return Err(CoreError::NulInText);
        }
        let chars = text.chars().count();
        if chars > self.max_chars {
            return Err(CoreError::TextTooLong {
                chars,
                limit: self.max_chars,
            });
        }
        let stored = text::column_chars(&text::with_files(text, attachments));
        if stored > text::COLUMN_CHARS {
            return Err(CoreError::StoredTextTooLong {
                stored,
                limit: text::COLUMN_CHARS,
            });
        }
        Ok(())
    }

    async fn check_admin(&self, admin_id: String) -> CoreResult<String> {
        if admin_id.is_empty() || admin_id == VISITOR_ADMIN_ID {
            return Err(CoreError::InvalidArgument(
                "an admin author needs an admin id".into(),
            ));
        }
        if admin_id.chars().count() > MAX_ADMIN_ID {
            return Err(CoreError::InvalidArgument(format!(
                "admin id is longer than {MAX_ADMIN_ID} characters"
            )));
        }
        if !self.admins.contains(&admin_id) {
            // The PHP admin may have created it without telling us yet.
            self.reload_admins().await?;
            if !self.admins.contains(&admin_id) {
                return Err(CoreError::UnknownAdmin(admin_id));
            }
        }
        Ok(admin_id)
    }

    fn known_insert(&self, conversation: ConversationId) {
        self.known
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(conversation);
    }

    /// Whether the conversation exists for readers: stored, or its visitor online (a
    /// conversation is stored with its first message, and an online visitor who has not
    /// written yet can still be watched and read, as an empty conversation).
    async fn require_conversation(&self, conversation: ConversationId) -> CoreResult<()> {
        if self.is_online(conversation) || self.is_stored(conversation).await? {
            return Ok(());
        }
        Err(unknown_conversation(conversation))
    }

    /// The conversation has its row, read from the database: for what writes beside it or
    /// must not act on one erased through another replica (whose `known` may still hold it).
    async fn require_stored(&self, conversation: ConversationId) -> CoreResult<()> {
        match self.store.conversation(conversation).await? {
            Some(_) => Ok(()),
            None => Err(unknown_conversation(conversation)),
        }
    }

    /// Whether the conversation has its row.
    async fn is_stored(&self, conversation: ConversationId) -> CoreResult<bool> {
        if self
            .known
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&conversation)
        {
            return Ok(true);
        }
        let stored = self.store.conversation(conversation).await?.is_some();
        if stored {
            self.known_insert(conversation);
        }
        Ok(stored)
    }

    /// A reply that would store the conversation's first row needs a visitor the schema can
    /// hold (being online says nothing about that: any id passes a legacy handshake).
    async fn require_visitor(&self, conversation: ConversationId) -> CoreResult<()> {
        if self.is_stored(conversation).await? || self.store.visitor_exists(conversation).await? {
            return Ok(());
        }
        Err(CoreError::NoSuchVisitor(conversation))
    }

    /// A page of history (newest first before a cursor, oldest first after one) and whether
    /// more messages exist beyond it.
    pub async fn history(
        &self,
        conversation: ConversationId,
        before: Cursor,
        limit: u32,
    ) -> CoreResult<(Vec<StoredMessage>, bool)> {
        check_conversation_id(conversation)?;
        check_page(limit)?;
        self.require_conversation(conversation).await?;
        let mut page = match before {
            Cursor::Before(before) => self.store.history(conversation, before, limit + 1).await?,
            Cursor::After(after) => {
                self.store
                    .messages_after(Scope::Conversation(conversation), after, limit + 1)
                    .await?
            }
        };
        let has_more = page.len() > limit as usize;
        page.truncate(limit as usize);
        Ok((page, has_more))
    }

    /// What a visitor socket that subscribes is shown first: the `recent` newest messages up
    /// to `up_to`, oldest first, and whether older ones exist; or, resuming after `since`,
    /// every message after it up to `up_to` when at most `catch_up` follow it. One read (two
    /// when a resume finds too much), nothing written, and no existence check: the edge
    /// vouches for its visitor, whose conversation may not be stored yet.
    pub async fn join_history(
        &self,
        conversation: ConversationId,
        up_to: Option<MessageId>,
        recent: u32,
        resume: Option<Resume>,
    ) -> CoreResult<(Vec<StoredMessage>, bool)> {
        check_conversation_id(conversation)?;
        check_page(recent)?;
        let up_to = up_to.unwrap_or(MessageId::MAX);
        if let Some(Resume { since, catch_up }) = resume {
            check_page(catch_up)?;
            if since >= up_to {
                return Ok((Vec::new(), false));
            }
            let mut page = self
                .store
                .messages_after(Scope::Conversation(conversation), since, catch_up + 1)
                .await?;
            if page.len() <= catch_up as usize {
                page.retain(|m| m.id <= up_to);
                return Ok((page, false));
            }
        }
        let mut page = self
            .store
            .history(conversation, up_to.checked_add(1), recent + 1)
            .await?;
        let has_more = page.len() > recent as usize;
        page.truncate(recent as usize);
        page.reverse();
        Ok((page, has_more))
    }

    /// Subscribes to live events of `scope`. The subscription starts with a presence snapshot;
    /// with `since`, every message after that id is replayed first; then a `CaughtUp` event,
    /// then live events. Message ids only ever increase along it.
    pub async fn subscribe(
        self: &Arc<Self>,
        scope: Scope,
        since: Option<MessageId>,
    ) -> CoreResult<Subscription> {
        if let Scope::Conversation(c) = scope {
            check_conversation_id(c)?;
            self.require_conversation(c).await?;
        }
        if let Some(since) = since {
            self.check_not_future(since, "resume from").await?;
        }
        let (tx, rx) = mpsc::channel(SUBSCRIPTION_BUFFER);
        // Register before reading anything, so nothing published from now on is missed.
        let receiver = self.hub.receiver(scope);
        let snapshot = {
            let presence = self.lock_presence();
            match scope {
                Scope::All => presence.online(),
                Scope::Conversation(c) => {
                    if presence.is_online(c) {
                        vec![c]
                    } else {
                        Vec::new()
                    }
                }
            }
        };
        let cursor = since.unwrap_or_else(|| self.hub.last_published());
        let core = self.clone();
        tokio::spawn(async move {
            let mut subscription = Subscriber {
                core,
                scope,
                cursor,
                tx,
                receiver,
            };
            subscription.run(snapshot, since.is_some()).await;
        });
        Ok(rx)
    }

    /// Opens an edge session: presence changes are counted per session.
    pub fn open_session(&self) -> SessionId {
        self.next_session.fetch_add(1, Ordering::Relaxed)
    }

    /// One visitor socket more (`online`) or less on an edge session.
    /// Counted in memory only: a visitor who opens the page and writes nothing costs no
    /// database write (its conversation is stored with its first message).
    pub fn presence(
        &self,
        session: SessionId,
        conversation: ConversationId,
        online: bool,
    ) -> CoreResult<()> {
        check_conversation_id(conversation)?;
        let mut presence = self.lock_presence();
        let changed = if online {
            presence.connect(session, conversation)
        } else {
            presence.disconnect(session, conversation)
        };
        if changed.anywhere {
            self.hub.publish_presence(conversation, online);
        }
        if let (true, Some(bus)) = (changed.here, &self.bus) {
            bus.presence_change(conversation, online);
        }
        Ok(())
    }

    /// One connection more (`online`) or less of a support client for a known admin on a
    /// session (an edge's token admin sockets, or a gRPC subscription naming the admin).
    pub async fn admin_presence(
        &self,
        session: SessionId,
        admin: String,
        online: bool,
    ) -> CoreResult<()> {
        let admin = if online {
            self.check_admin(admin).await?
        } else {
            admin
        };
        let changed = {
            let mut admins = self.lock_admins_online();
            if online {
                admins.connect(session, admin.clone())
            } else {
                admins.disconnect(session, admin.clone())
            }
        };
        if let (true, Some(bus)) = (changed.here, &self.bus) {
            bus.admin_presence_change(&admin, online);
        }
        Ok(())
    }

    /// Counts the admin online until the guard is dropped (a gRPC subscription with
    /// `as_admin` holds it for its life).
    pub async fn admin_online(self: &Arc<Self>, admin: String) -> CoreResult<AdminOnline> {
        let session = self.open_session();
        self.admin_presence(session, admin, true).await?;
        Ok(AdminOnline {
            core: self.clone(),
            session,
        })
    }

    /// Admins online now (on any replica), by login.
    pub fn online_admins(&self) -> Vec<String> {
        self.lock_admins_online().online()
    }

    fn lock_admins_online(&self) -> std::sync::MutexGuard<'_, Presence<String>> {
        self.admins_online.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Ends an edge session: its visitors and admins go offline unless another session holds
    /// them.
    pub fn close_session(&self, session: SessionId) {
        let admins = self.lock_admins_online().drop_session(session);
        if let Some(bus) = &self.bus {
            for (admin, _) in admins {
                bus.admin_presence_change(&admin, false);
            }
        }
        let mut presence = self.lock_presence();
        for (conversation, anywhere) in presence.drop_session(session) {
            if anywhere {
                self.hub.publish_presence(conversation, false);
            }
            if let Some(bus) = &self.bus {
                bus.presence_change(conversation, false);
            }
        }
    }

    fn lock_presence(&self) -> std::sync::MutexGuard<'_, Presence> {
        self.presence.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Visitors online now.
    pub fn online(&self) -> Vec<ConversationId> {
        self.lock_presence().online()
    }

    pub fn is_online(&self, conversation: ConversationId) -> bool {
        self.lock_presence().is_online(conversation)
    }

    /// Creates the conversation when needed and returns its summary.
    pub async fn open_conversation(
        &self,
        conversation: ConversationId,
    ) -> CoreResult<ConversationSummary> {
        check_conversation_id(conversation)?;
        self.store.open_conversation(conversation).await?;
        self.known_insert(conversation);
        self.store
            .conversation(conversation)
            .await?
            .ok_or_else(|| CoreError::Internal(format!("conversation {conversation} vanished")))
    }

    /// Conversations, most recently active first, and whether more exist.
    pub async fn conversations(
        &self,
        before_last: Option<MessageId>,
        limit: u32,
        filter: &ConversationFilter,
    ) -> CoreResult<(Vec<ConversationSummary>, bool)> {
        check_page(limit)?;
        let mut page = self
            .store
            .conversations(before_last, limit + 1, filter)
            .await?;
        let has_more = page.len() > limit as usize;
        page.truncate(limit as usize);
        Ok((page, has_more))
    }

    /// Moves a read mark forward and returns the conversation.
    pub async fn mark_read(
        &self,
        conversation: ConversationId,
        reader: Reader,
        up_to: MessageId,
    ) -> CoreResult<ConversationSummary> {
        check_conversation_id(conversation)?;
        if !self.store.mark_read(conversation, reader, up_to).await? {
            return Err(unknown_conversation(conversation));
        }
        let summary = self
            .store
            .conversation(conversation)
            .await?
            .ok_or_else(|| unknown_conversation(conversation))?;
        // The mark as stored (never back): what the other side shows as "seen".
        let mark = match reader {
            Reader::Support => summary.support_read_id,
            Reader::Visitor => summary.visitor_read_id,
        };
        self.hub.publish_read_mark(conversation, reader, mark);
        if let Some(bus) = &self.bus {
            bus.read_mark(conversation, reader, mark);
        }
        Ok(summary)
    }

    /// Support staff's sign-ins and sessions.
    /// Attachments' limits and bytes.
    pub fn files(&self) -> &Files {
        &self.files
    }

    /// Stores an uploaded file for a conversation, to be taken by one of its messages
    /// ([`SendMessage::attachments`]). Nothing is kept of an upload that fails.
    #[tracing::instrument(skip_all, fields(conversation = upload.conversation_id))]
    pub async fn upload_attachment<S, E>(&self, upload: Upload, chunks: S) -> CoreResult<Attachment>
    where
        S: futures::Stream<Item = Result<bytes::Bytes, E>> + Send,
        E: std::fmt::Display,
    {
        check_conversation_id(upload.conversation_id)?;
        let uploaded_by = match upload.author {
            Author::Visitor | Author::Telegram => VISITOR_ADMIN_ID.to_owned(),
            Author::Admin(id) | Author::Backend(id) => self.check_admin(id).await?,
        };
        let start = crate::files::UploadStart {
            conversation_id: upload.conversation_id,
            name: upload.name,
            size: upload.size,
            uploaded_by,
        };
        let stored = self.files.upload(&*self.store, start, chunks).await?;
        info!(
            conversation = stored.conversation_id,
            file = stored.id,
            size = stored.size,
            content_type = %stored.content_type,
            "file uploaded"
        );
        Ok(stored)
    }

    /// A file attached to a message, with its bytes (or its thumbnail's), when it belongs to
    /// `conversation` (any, when `None`).
    pub async fn attachment(
        &self,
        id: AttachmentId,
        conversation: Option<ConversationId>,
        thumbnail: bool,
    ) -> CoreResult<(Attachment, crate::files::Reader)> {
        let file = self
            .store
            .attachment(id)
            .await?
            .filter(|f| f.message_id.is_some())
            .filter(|f| conversation.is_none_or(|c| c == f.conversation_id))
            .ok_or(CoreError::UnknownAttachment(id))?;
        let bytes = self.files.open(&file, thumbnail).await?;
        Ok((file, bytes))
    }

    /// Sweeps the attachments at start, then hourly (see [`Files::sweep`]).
    async fn sweep_files(self: Arc<Self>) {
        let mut every = tokio::time::interval(Duration::from_secs(3600));
        loop {
            tokio::select! {
                () = self.shutdown.cancelled() => return,
                _ = every.tick() => {}
            }
            if let Err(e) = self.files.sweep(&*self.store).await {
                warn!(error = %e, "the attachments sweep failed; it runs again in an hour");
            }
        }
    }

    pub fn staff(&self) -> &crate::staff::Staff {
        &self.staff
    }

    /// The admin directory.
    pub fn admins(&self) -> &AdminDirectory {
        &self.admins
    }

    /// Re-reads `adm_account`, swaps the directory and tells all-conversation subscribers,
    /// and the other replicas, which do the same.
    pub async fn reload_admins(&self) -> CoreResult<Vec<Admin>> {
        let admins = self.reload_admins_here().await?;
        if let Some(bus) = &self.bus {
            bus.admins_changed();
        }
        Ok(admins)
    }

    async fn reload_admins_here(&self) -> CoreResult<Vec<Admin>> {
        let admins = self.store.admins().await?;
        self.admins.replace(admins.clone());
        self.hub.publish_admins(Arc::new(admins.clone()));
        Ok(admins)
    }

    /// The link of a Telegram chat.
    pub async fn telegram_link(&self, chat_id: i64) -> CoreResult<TelegramLink> {
        self.store
            .telegram_link(chat_id)
            .await?
            .ok_or(CoreError::NotLinked(chat_id))
    }

    /// The admin a Telegram user of the staff group is.
    pub async fn staff_member(&self, telegram_user: i64) -> CoreResult<Admin> {
        let admin_id = self
            .store
            .telegram_staff(telegram_user)
            .await?
            .ok_or(CoreError::StaffMemberNotPaired(telegram_user))?;
        // Known to the directory (read again for an admin added since it was read).
        let admin_id = self.check_admin(admin_id).await?;
        self.admins()
            .list()
            .into_iter()
            .find(|a| a.admin_id == admin_id)
            .ok_or(CoreError::StaffMemberNotPaired(telegram_user))
    }

    /// A conversation's forum topic in a staff chat.
    pub async fn staff_topic(&self, chat_id: i64, conversation: ConversationId) -> CoreResult<i64> {
        self.store
            .staff_topic(chat_id, conversation)
            .await?
            .ok_or_else(|| {
                CoreError::NoStaffTopic(format!(
                    "conversation {conversation} has no topic in chat {chat_id}"
                ))
            })
    }

    /// The conversation of a forum topic in a staff chat.
    pub async fn staff_topic_conversation(
        &self,
        chat_id: i64,
        thread_id: i64,
    ) -> CoreResult<ConversationId> {
        self.store
            .staff_topic_conversation(chat_id, thread_id)
            .await?
            .ok_or_else(|| {
                CoreError::NoStaffTopic(format!(
                    "topic {thread_id} of chat {chat_id} is no conversation's"
                ))
            })
    }

    /// Keeps a conversation's forum topic in a staff chat.
    pub async fn put_staff_topic(
        &self,
        chat_id: i64,
        conversation: ConversationId,
        thread_id: i64,
    ) -> CoreResult<()> {
        check_conversation_id(conversation)?;
        Ok(self
            .store
            .put_staff_topic(chat_id, conversation, thread_id)
            .await?)
    }

    /// Links a Telegram chat to a visitor (creating the conversation when needed).
    pub async fn link_telegram(
        &self,
        chat_id: i64,
        conversation: ConversationId,
    ) -> CoreResult<TelegramLink> {
        self.open_conversation(conversation).await?;
        Ok(self.store.link_telegram(chat_id, conversation).await?)
    }

    /// A one-time token that links a Telegram chat to this conversation's visitor when the bot
    /// gets `/start <token>` ("Continue in Telegram", no password typed into Telegram).
    pub async fn create_link_token(
        &self,
        conversation: ConversationId,
    ) -> CoreResult<crate::link_tokens::LinkToken> {
        check_conversation_id(conversation)?;
        // Refused now rather than when the bot redeems the token (the legacy "with users"
        // schema holds links of known visitors only).
        self.require_visitor(conversation).await?;
        self.link_tokens.create(conversation).await
    }

    /// Redeems a link token (used up by this call, whatever follows) and links the chat to
    /// its conversation as [`Core::link_telegram`] does.
    pub async fn redeem_link_token(&self, token: &str, chat_id: i64) -> CoreResult<TelegramLink> {
        if chat_id == 0 {
            return Err(CoreError::InvalidArgument("chat_id is missing".into()));
        }
        let conversation = self.link_tokens.take(token).await?;
        let link = self.link_telegram(chat_id, conversation).await?;
        info!(
            conversation,
            chat_id, "Telegram chat linked by a link token"
        );
        Ok(link)
    }

    /// Changes a link's mode and/or active flag.
    pub async fn set_telegram_state(
        &self,
        chat_id: i64,
        mode: Option<TelegramMode>,
        active: Option<bool>,
    ) -> CoreResult<TelegramLink> {
        self.store
            .set_telegram_state(chat_id, mode, active)
            .await?
            .ok_or(CoreError::NotLinked(chat_id))
    }

    /// Every link, or those of one conversation.
    pub async fn telegram_links(
        &self,
        conversation: Option<ConversationId>,
    ) -> CoreResult<Vec<TelegramLink>> {
        Ok(self.store.telegram_links(conversation).await?)
    }

    /// Puts every link back in menu mode and returns them all.
    pub async fn reset_telegram_modes(&self) -> CoreResult<Vec<TelegramLink>> {
        self.store.reset_telegram_modes().await?;
        Ok(self.store.telegram_links(None).await?)
    }

    /// Checks a visitor's Telegram login and password (LEGACY.md §5).
    #[tracing::instrument(skip_all)]
    pub async fn check_credentials(&self, login: &str, password: &str) -> CoreResult<Verdict> {
        let verdict = self
            .credentials
            .check(self.store.as_ref(), login, password)
            .await?;
        if let Verdict::Refused(why) = verdict {
            info!(refusal = ?why, "Telegram login refused");
        }
        Ok(verdict)
    }

    /// The company name.
    pub fn company(&self) -> &str {
        &self.company
    }

    /// Longest message text accepted, in characters.
    /// Whether support is shown the visitor's draft while it is typed.
    pub fn typing_preview(&self) -> bool {
        self.typing_preview
    }

    pub fn max_message_chars(&self) -> usize {
        self.max_chars
    }

    /// A consumer's delivery cursor; a new consumer starts at the newest message published.
    pub async fn delivery_cursor(&self, consumer: &str) -> CoreResult<MessageId> {
        check_consumer(consumer)?;
        let newest = self.hub.last_published();
        Ok(self.store.delivery_cursor(consumer, newest).await?)
    }

    /// Moves a consumer's delivery cursor forward (never back).
    pub async fn advance_delivery_cursor(
        &self,
        consumer: &str,
        to: MessageId,
    ) -> CoreResult<MessageId> {
        check_consumer(consumer)?;
        self.check_not_future(to, "move a cursor to").await?;
        Ok(self.store.advance_delivery_cursor(consumer, to).await?)
    }

    /// Adds support's private note to a stored conversation, by a known admin, its text
    /// checked as a message's is. All-conversation subscribers are told (on every replica);
    /// the visitor never is.
    pub async fn add_note(
        &self,
        conversation: ConversationId,
        admin_id: String,
        text: &str,
    ) -> CoreResult<Note> {
        check_conversation_id(conversation)?;
        self.check_text(text, &[])?;
        let admin_id = self.check_admin(admin_id).await?;
        self.require_stored(conversation).await?;
        let key = format!(
            "{}-{:016x}",
            Utc::now().timestamp_micros(),
            rand::random::<u64>()
        );
        let note = self
            .store
            .add_note(conversation, &admin_id, text, &key)
            .await?;
        info!(conversation, note = note.id, by = %note.admin_id, "note added");
        if let Some(bus) = &self.bus {
            bus.note(&note);
        }
        self.hub.publish_note(Arc::new(note.clone()));
        Ok(note)
    }

    /// A piece of a conversation's transcript: its messages after `after` (0: from the
    /// start) that fit in [`transcript::MAX_BODY`], with support's private notes in the last
    /// piece when `include_notes`.
    pub async fn export_transcript(
        &self,
        conversation: ConversationId,
        format: transcript::Format,
        include_notes: bool,
        after: MessageId,
    ) -> CoreResult<transcript::Transcript> {
        check_conversation_id(conversation)?;
        self.require_stored(conversation).await?;
        let mut messages: Vec<StoredMessage> = Vec::new();
        let mut size = 0;
        let mut more = false;
        loop {
            let from = messages.last().map_or(after, |m| m.id);
            let page = self
                .store
                .messages_after(Scope::Conversation(conversation), from, MAX_PAGE)
                .await?;
            let full = page.len() == MAX_PAGE as usize;
            size += page.iter().map(transcript::estimated_bytes).sum::<usize>();
            messages.extend(page);
            if !full {
                break;
            }
            if size > transcript::MAX_BODY {
                more = true;
                break;
            }
        }
        let lines: Vec<transcript::Line<'_>> = messages
            .iter()
            .map(|m| transcript::Line {
                message: m,
                author: match m.direction {
                    Direction::ToSupport => "Visitor".to_owned(),
                    Direction::ToVisitor => self.admins.display_name(&m.admin_id),
                },
            })
            .collect();
        let notes = if include_notes {
            self.store.notes(conversation).await?
        } else {
            Vec::new()
        };
        Ok(transcript::render(
            conversation,
            format,
            &lines,
            more,
            &notes,
        ))
    }

    /// Gives a conversation to the admin `assignee` (`None`: to nobody), as the admin `by`
    /// asks; with `take`, only when it belongs to nobody (`AlreadyAssigned` otherwise). Both
    /// must be known admins. Support is told (`Assigned`) on every replica.
    pub async fn assign(
        &self,
        conversation: ConversationId,
        assignee: Option<String>,
        by: String,
        take: bool,
    ) -> CoreResult<ConversationSummary> {
        check_conversation_id(conversation)?;
        let by = self.check_admin(by).await?;
        let assignee = match assignee {
            Some(a) => Some(self.check_admin(a).await?),
            None => None,
        };
        match self
            .store
            .assign(conversation, assignee.as_deref(), take)
            .await?
        {
            Assigned::Done => {}
            Assigned::Taken(holder) => return Err(CoreError::AlreadyAssigned(holder)),
            Assigned::Unknown => return Err(unknown_conversation(conversation)),
        }
        info!(conversation, assignee = ?assignee, %by, "assigned");
        self.tell_assigned(conversation, assignee, by);
        self.store
            .conversation(conversation)
            .await?
            .ok_or_else(|| unknown_conversation(conversation))
    }

    /// Tells every replica's support of an assignment (`by` empty: auto-assignment).
    fn tell_assigned(&self, conversation: ConversationId, assignee: Option<String>, by: String) {
        if let Some(auto) = &self.auto_assign {
            auto.learn(conversation, assignee.clone());
        }
        if let Some(bus) = &self.bus {
            bus.assigned(conversation, assignee.as_deref(), &by);
        }
        self.hub.publish_assigned(conversation, assignee, by);
    }

    /// Gives a conversation nobody has to the next admin online with room for it (see
    /// [`crate::assignment`]). Failures are logged: the conversation stays unassigned, and the
    /// visitor's next message tries again.
    async fn auto_assign(self: Arc<Self>, conversation: ConversationId) {
        let Some(auto) = &self.auto_assign else {
            return;
        };
        let online = self.online_admins();
        if online.is_empty() {
            return;
        }
        let mut last = auto.turn().await;
        match self
            .choose_admin(auto, conversation, &online, last.as_deref())
            .await
        {
            Ok(Some(admin)) => {
                info!(conversation, assignee = %admin, "auto-assigned");
                *last = Some(admin.clone());
                self.tell_assigned(conversation, Some(admin), String::new());
            }
            Ok(None) => {}
            Err(e) => warn!(conversation, error = %e, "auto-assignment failed"),
        }
    }

    /// Takes the conversation for the next free admin after `last`, if nobody has it; who
    /// got it.
    async fn choose_admin(
        &self,
        auto: &AutoAssign,
        conversation: ConversationId,
        online: &[String],
        last: Option<&str>,
    ) -> CoreResult<Option<String>> {
        if auto.known(conversation).is_none() {
            let summary = self.store.conversation(conversation).await?;
            auto.learn(conversation, summary.and_then(|s| s.assignee));
        }
        if auto.known(conversation).flatten().is_some() {
            return Ok(None);
        }
        let open = self.store.open_assigned_counts().await?;
        let Some(admin) = assignment::next_admin(online, &open, auto.max_open, last) else {
            info!(
                conversation,
                "auto-assignment: every admin online is at the limit"
            );
            return Ok(None);
        };
        Ok(
            match self.store.assign(conversation, Some(&admin), true).await? {
                Assigned::Done => Some(admin),
                Assigned::Taken(holder) => {
                    auto.learn(conversation, Some(holder));
                    None
                }
                Assigned::Unknown => None,
            },
        )
    }

    /// Tells the other side that someone is typing in a conversation (or stopped), live
    /// only: nothing is stored. An admin must be known; the draft's text is kept only for a
    /// visitor and only with `[core] typing_preview`, cut to the message size limit. Events
    /// that come faster than anyone needs them shown are dropped (`typing::Gate`).
    pub async fn typing(&self, mut typing: Typing) -> CoreResult<()> {
        check_conversation_id(typing.conversation)?;
        if let Typist::Admin(admin) = typing.typist {
            typing.typist = Typist::Admin(self.check_admin(admin).await?);
        }
        typing.preview = match (&typing.typist, typing.preview.take()) {
            (Typist::Visitor, Some(draft)) if self.typing_preview && typing.active => {
                Some(draft.chars().take(self.max_chars).collect())
            }
            _ => None,
        };
        typing.draft_chars = typing.draft_chars.min(self.max_chars as u32);
        if !typing.active {
            typing.draft_chars = 0;
        }
        if !self.typing_gate.pass(&typing, Instant::now()) {
            return Ok(());
        }
        metrics::counter!("socketgram_typing_events_total").increment(1);
        if let Some(bus) = &self.bus {
            bus.typing(&typing);
        }
        self.hub.publish_typing(Arc::new(typing));
        Ok(())
    }

    /// Sets a conversation's status, as the admin `by` (or a backend on their behalf) asks;
    /// a snooze must end in the future, within [`MAX_SNOOZE`]. Support is told
    /// (`Status`) on every replica.
    pub async fn set_status(
        &self,
        conversation: ConversationId,
        status: Status,
        by: String,
    ) -> CoreResult<ConversationSummary> {
        check_conversation_id(conversation)?;
        if let Status::Snoozed { until_ms } = status {
            let now = Utc::now().timestamp_millis();
            let latest = now.saturating_add(MAX_SNOOZE.as_millis() as i64);
            if until_ms <= now || until_ms > latest {
                return Err(CoreError::InvalidArgument(format!(
                    "a snooze must end in the future and within {} days",
                    MAX_SNOOZE.as_secs() / 86_400
                )));
            }
        }
        let by = self.check_admin(by).await?;
        if !self.store.set_status(conversation, status).await? {
            return Err(unknown_conversation(conversation));
        }
        info!(conversation, ?status, %by, "status set");
        self.tell_status(conversation, status, StatusChange::By(by));
        self.store
            .conversation(conversation)
            .await?
            .ok_or_else(|| unknown_conversation(conversation))
    }

    /// Tells support here and on the other replicas that a status changed here.
    fn tell_status(&self, conversation: ConversationId, status: Status, change: StatusChange) {
        self.reopenable.set(conversation, status);
        if let Some(bus) = &self.bus {
            bus.status(conversation, status, &change);
        }
        self.hub.publish_status(conversation, status, change);
    }

    /// Ends snoozes as they run out, until shutdown. Every replica runs this; the database
    /// ends each snooze once (only while it is still that snooze), and only the replica that
    /// ended it tells support.
    async fn end_snoozes(self: Arc<Self>) {
        // A database that does not answer is asked again after this.
        const RETRY: Duration = Duration::from_secs(1);
        loop {
            let (due, next) = self.reopenable.due(Utc::now().timestamp_millis());
            let mut failed = false;
            for (conversation, until_ms) in due {
                match self.store.end_snooze(conversation, until_ms).await {
                    Ok(ended) => {
                        self.reopenable.snooze_done(conversation, until_ms);
                        if ended {
                            info!(conversation, "snooze ended");
                            self.tell_status(conversation, Status::Open, StatusChange::SnoozeEnded);
                        }
                    }
                    Err(e) => {
                        warn!(conversation, error = %e, "cannot end a snooze; trying again");
                        failed = true;
                    }
                }
            }
            let wait = if failed {
                RETRY
            } else {
                next.map_or(MAX_SNOOZE, |at| {
                    let ms = at.saturating_sub(Utc::now().timestamp_millis()).max(0);
                    Duration::from_millis(ms as u64)
                })
            };
            tokio::select! {
                () = self.shutdown.cancelled() => return,
                () = self.reopenable.snooze_set() => {}
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Erases a conversation for good at a visitor's request (right to erasure), by a known
    /// admin: its messages, notes, Telegram link and summary go in one transaction; what
    /// stays is the record (who, when, how much), never the content.
    pub async fn erase_conversation(
        &self,
        conversation: ConversationId,
        erased_by: String,
    ) -> CoreResult<Erasure> {
        check_conversation_id(conversation)?;
        let erased_by = self.check_admin(erased_by).await?;
        // A visitor who never wrote may have left a context: that is theirs to erase too.
        if self.store.conversation(conversation).await?.is_none()
            && self.store.visitor_context(conversation).await?.is_none()
        {
            return Err(unknown_conversation(conversation));
        }
        let files = self.store.conversation_attachments(conversation).await?;
        let erasure = self
            .store
            .erase_conversation(conversation, &erased_by)
            .await?;
        self.files.forget(&files).await;
        warn!(
            conversation,
            by = %erasure.erased_by,
            messages = erasure.messages,
            notes = erasure.notes,
            "conversation erased"
        );
        if let Some(bus) = &self.bus {
            bus.erased(&erasure);
        }
        self.forget_erased(Arc::new(erasure.clone()));
        Ok(erasure)
    }

    /// Stores what is known of a visitor besides messages: the parts given replace the
    /// stored ones, the others stay (see [`VisitorContext`]). Nothing is written, nor told,
    /// when that changes nothing (a page load that reports the same page again). Support's
    /// subscribers are told a change, on every replica. Returns the context as stored.
    pub async fn set_visitor_context(
        &self,
        conversation: ConversationId,
        verified: Option<Vouched>,
        page: Option<Page>,
    ) -> CoreResult<VisitorContext> {
        check_conversation_id(conversation)?;
        if verified.is_none() && page.is_none() {
            return Err(CoreError::InvalidArgument(
                "nothing to set: give `verified`, `page` or both".into(),
            ));
        }
        let bounds = |e: ContextError| CoreError::InvalidArgument(e.0);
        verified
            .as_ref()
            .map(Vouched::check)
            .transpose()
            .map_err(bounds)?;
        page.as_ref().map(Page::check).transpose().map_err(bounds)?;
        let stored = self.store.visitor_context(conversation).await?;
        if let Some(stored) = stored
            && verified
                .as_ref()
                .is_none_or(|v| stored.verified.as_ref() == Some(v))
            && page
                .as_ref()
                .is_none_or(|p| stored.page.as_ref() == Some(p))
        {
            return Ok(stored);
        }
        let context = self
            .store
            .put_visitor_context(conversation, verified.as_ref(), page.as_ref())
            .await?;
        info!(
            conversation,
            verified = context.verified.is_some(),
            page = context.page.is_some(),
            "visitor context stored"
        );
        let changed = ContextChanged {
            conversation_id: conversation,
            context: context.clone(),
        };
        if let Some(bus) = &self.bus {
            bus.context(&changed);
        }
        self.hub.publish_context(Arc::new(changed));
        Ok(context)
    }

    /// A conversation was erased (here or on another replica): nothing of it stays known
    /// here, and support is told.
    fn forget_erased(&self, erasure: Arc<Erasure>) {
        let conversation = erasure.conversation_id;
        self.known
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&conversation);
        self.reopenable.set(conversation, Status::Open);
        if let Some(auto) = &self.auto_assign {
            auto.forget(conversation);
        }
        self.hub.publish_erased(erasure);
    }

    /// A conversation's notes, oldest first.
    pub async fn notes(&self, conversation: ConversationId) -> CoreResult<Vec<Note>> {
        check_conversation_id(conversation)?;
        self.require_stored(conversation).await?;
        Ok(self.store.notes(conversation).await?)
    }

    /// The canned replies whose shortcut starts with `prefix` (a shortcut's own form, see
    /// [`shortcut`]; empty = all), sorted by shortcut.
    pub async fn canned_replies(&self, prefix: &str) -> CoreResult<Vec<CannedReply>> {
        let prefix = if prefix.is_empty() {
            String::new()
        } else {
            shortcut(prefix)?
        };
        Ok(self.store.canned_replies(&prefix).await?)
    }

    /// Creates or replaces the canned reply `shortcut` with `text`, written by the admin
    /// `updated_by`. The text is checked as a message's is; a new shortcut past
    /// [`MAX_CANNED_REPLIES`] is refused.
    pub async fn put_canned_reply(
        &self,
        shortcut_typed: &str,
        text: &str,
        updated_by: String,
    ) -> CoreResult<CannedReply> {
        let shortcut = shortcut(shortcut_typed)?;
        self.check_text(text, &[])?;
        let updated_by = self.check_admin(updated_by).await?;
        let (count, exists) = self.store.canned_reply_count(&shortcut).await?;
        if count >= MAX_CANNED_REPLIES as u64 && !exists {
            return Err(CoreError::LimitReached(format!(
                "the team has {MAX_CANNED_REPLIES} canned replies, the most it keeps: delete one \
                 or replace one's text"
            )));
        }
        let stored = self
            .store
            .put_canned_reply(&shortcut, text, &updated_by)
            .await?;
        info!(shortcut = %stored.shortcut, by = %stored.updated_by, "canned reply saved");
        Ok(stored)
    }

    /// Deletes the canned reply `shortcut`; whether there was one.
    pub async fn delete_canned_reply(&self, shortcut_typed: &str) -> CoreResult<bool> {
        let shortcut = shortcut(shortcut_typed)?;
        let deleted = self.store.delete_canned_reply(&shortcut).await?;
        if deleted {
            info!(%shortcut, "canned reply deleted");
        }
        Ok(deleted)
    }

    /// Acquires or renews the lease `name` for `holder` for `ttl` (see
    /// [`Store::acquire_lease`]: the database's clock decides expiry).
    pub async fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
    ) -> CoreResult<Lease> {
        check_lease_id("name", name)?;
        check_lease_id("holder", holder)?;
        if ttl.is_zero() || ttl > MAX_LEASE_TTL {
            return Err(CoreError::InvalidArgument(format!(
                "ttl_ms must be 1..={}",
                MAX_LEASE_TTL.as_millis()
            )));
        }
        let lease = self.store.acquire_lease(name, holder, ttl).await?;
        if !lease.granted {
            tracing::debug!(name, holder, current = ?lease.holder, "lease held by another");
        }
        Ok(lease)
    }

    /// Frees the lease `name` if `holder` holds it; whether it did.
    pub async fn release_lease(&self, name: &str, holder: &str) -> CoreResult<bool> {
        check_lease_id("name", name)?;
        check_lease_id("holder", holder)?;
        let released = self.store.release_lease(name, holder).await?;
        info!(name, holder, released, "lease released");
        Ok(released)
    }
}

impl Core {
    /// Refuses a message id beyond the newest stored. A replay reads the database, so a
    /// client may hold an id that is committed but not yet published: that one is fine.
    async fn check_not_future(&self, id: MessageId, what: &str) -> CoreResult<()> {
        if id <= self.hub.last_published() {
            return Ok(());
        }
        let newest = self.store.last_message_id().await?;
        if id > newest {
            return Err(CoreError::OutOfRange(format!(
                "cannot {what} message {id}: the newest message is {newest}"
            )));
        }
        Ok(())
    }
}

/// Conversation ids are legacy visitor ids: `messages.cid` is `INT UNSIGNED` (LEGACY.md §5),
/// so every backend takes the same range.
pub const MAX_CONVERSATION_ID: ConversationId = u32::MAX as ConversationId;

fn check_conversation_id(conversation: ConversationId) -> CoreResult<()> {
    if conversation == 0 || conversation > MAX_CONVERSATION_ID {
        return Err(CoreError::InvalidArgument(format!(
            "conversation_id must be between 1 and {MAX_CONVERSATION_ID}"
        )));
    }
    Ok(())
}

fn check_page(limit: u32) -> CoreResult<()> {
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(CoreError::InvalidArgument(format!(
            "limit must be 1..={MAX_PAGE}"
        )));
    }
    Ok(())
}

/// A canned reply's shortcut as typed, in its stored form: one leading `/` dropped, upper
/// case folded to lower, then 1..=[`MAX_SHORTCUT`] of `a-z0-9_-`.
pub fn shortcut(typed: &str) -> CoreResult<String> {
    let shortcut = typed
        .strip_prefix('/')
        .unwrap_or(typed)
        .to_ascii_lowercase();
    let allowed = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-';
    if shortcut.is_empty() || shortcut.len() > MAX_SHORTCUT || !shortcut.chars().all(allowed) {
        return Err(CoreError::InvalidArgument(format!(
            "a shortcut is 1..={MAX_SHORTCUT} of a-z, 0-9, '_' and '-' (after an optional \
             leading '/'), not {typed:?}"
        )));
    }
    Ok(shortcut)
}

fn check_consumer(consumer: &str) -> CoreResult<()> {
    let chars = consumer.chars().count();
    if chars == 0 || chars > MAX_CONSUMER || consumer.contains('\0') {
        return Err(CoreError::InvalidArgument(format!(
            "consumer must be 1..={MAX_CONSUMER} characters without NUL"
        )));
    }
    Ok(())
}

fn check_lease_id(field: &str, value: &str) -> CoreResult<()> {
    let chars = value.chars().count();
    if chars == 0 || chars > MAX_LEASE_ID || value.contains('\0') {
        return Err(CoreError::InvalidArgument(format!(
            "{field} must be 1..={MAX_LEASE_ID} characters without NUL"
        )));
    }
    Ok(())
}

fn unknown_conversation(conversation: ConversationId) -> CoreError {
    CoreError::UnknownConversation(conversation)
}

/// The task behind one subscription.
struct Subscriber {
    core: Arc<Core>,
    scope: Scope,
    /// The greatest message id delivered (or the starting point).
    cursor: MessageId,
    tx: mpsc::Sender<CoreResult<Event>>,
    receiver: crate::hub::Receiver,
}

/// The subscriber's reader went away or the core is shutting down.
struct Stop;

impl Subscriber {
    async fn run(&mut self, snapshot: Vec<ConversationId>, replay: bool) {
        let _ = self.serve(snapshot, replay).await;
    }

    async fn serve(&mut self, snapshot: Vec<ConversationId>, replay: bool) -> Result<(), Stop> {
        self.deliver(Event::PresenceSnapshot(snapshot)).await?;
        if replay {
            self.replay().await?;
        }
        self.deliver(Event::CaughtUp(self.cursor)).await?;
        loop {
            let event = tokio::select! {
                _ = self.core.shutdown.cancelled() => return Err(Stop),
                _ = self.tx.closed() => return Err(Stop),
                event = self.receiver.recv() => event,
            };
            match event {
                Ok(Event::Message(m)) if m.id <= self.cursor => {}
                Ok(Event::Message(m)) => {
                    self.cursor = m.id;
                    self.deliver(Event::Message(m)).await?;
                }
                Ok(other) => self.deliver(other).await?,
                Err(RecvError::Lagged(missed)) => {
                    warn!(missed, scope = ?self.scope, "subscriber lagged; catching up from the database");
                    self.replay().await?;
                }
                Err(RecvError::Closed) => return Err(Stop),
            }
        }
    }

    /// Sends every stored message after the cursor.
    async fn replay(&mut self) -> Result<(), Stop> {
        loop {
            let page = match self
                .core
                .store
                .messages_after(self.scope, self.cursor, MAX_PAGE)
                .await
            {
                Ok(page) => page,
                Err(e) => {
                    let _ = self.tx.send(Err(e.into())).await;
                    return Err(Stop);
                }
            };
            let full = page.len() == MAX_PAGE as usize;
            for message in page {
                self.cursor = message.id;
                self.deliver(Event::Message(Arc::new(message))).await?;
            }
            if !full {
                return Ok(());
            }
        }
    }

    async fn deliver(&self, event: Event) -> Result<(), Stop> {
        tokio::select! {
            _ = self.core.shutdown.cancelled() => Err(Stop),
            sent = self.tx.send(Ok(event)) => sent.map_err(|_| Stop),
        }
    }
}
