//! In-process fan-out of live events: one broadcast channel for all-conversation subscribers
//! and one per watched conversation. Subscribers that fall behind catch up from the database
//! with their cursor (see `chat::subscription`), so a full channel never loses a message.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

use tokio::sync::broadcast;

use crate::typing::{Typing, Typist};

use crate::domain::{
    Admin, ContextChanged, ConversationId, Erasure, MessageId, Note, Reader, Scope, Status,
    StatusChange, StoredMessage,
};

/// Buffered events per all-conversations channel before a slow subscriber lags.
const ALL_CAPACITY: usize = 4096;
/// The same per conversation: small, as there may be tens of thousands of them.
const CONVERSATION_CAPACITY: usize = 16;

/// A live event.
#[derive(Clone, Debug)]
pub enum Event {
    Message(Arc<StoredMessage>),
    Presence {
        conversation: ConversationId,
        online: bool,
    },
    /// Visitors online when a subscription started.
    PresenceSnapshot(Vec<ConversationId>),
    AdminsChanged(Arc<Vec<Admin>>),
    /// A read mark moved: `reader` has read the conversation up to `up_to`.
    ReadMark {
        conversation: ConversationId,
        reader: Reader,
        up_to: MessageId,
    },
    /// Support added a private note. Only on the all-conversation channel: a conversation's
    /// channel also feeds its visitor, who never receives notes.
    Note(Arc<Note>),
    /// A conversation was given to an admin (`assignee`) or to nobody, by `by`.
    Assigned {
        conversation: ConversationId,
        assignee: Option<String>,
        by: String,
    },
    /// A conversation's status changed. Only on the all-conversation channel (support).
    Status {
        conversation: ConversationId,
        status: Status,
        change: StatusChange,
    },
    /// Someone is typing (or stopped). A visitor's typing is only on the all-conversation
    /// channel (support); support's on the conversation's channel too (the visitor).
    Typing(Arc<Typing>),
    /// A conversation was erased (only on the all-conversation channel: support).
    Erased(Arc<Erasure>),
    /// What is known of a visitor changed (only on the all-conversation channel: support).
    Context(Arc<ContextChanged>),
    /// Every message up to this id has been delivered; live from here.
    CaughtUp(MessageId),
}

/// The channels.
pub struct Hub {
    all: broadcast::Sender<Event>,
    conversations: Mutex<HashMap<ConversationId, broadcast::Sender<Event>>>,
    /// The greatest message id handed to the channels. Raised *before* sending, so a
    /// subscriber that reads it after registering receives every greater id live.
    published: AtomicU64,
}

impl Hub {
    /// A hub whose messages so far end at `last_id`.
    pub fn new(last_id: MessageId) -> Arc<Self> {
        Arc::new(Self {
            all: broadcast::channel(ALL_CAPACITY).0,
            conversations: Mutex::default(),
            published: AtomicU64::new(last_id),
        })
    }

    /// The greatest message id published.
    pub fn last_published(&self) -> MessageId {
        self.published.load(Ordering::SeqCst)
    }

    /// Registers a receiver for `scope`. Events published from now on reach it.
    pub fn receiver(self: &Arc<Self>, scope: Scope) -> Receiver {
        let rx = match scope {
            Scope::All => self.all.subscribe(),
            Scope::Conversation(c) => self
                .lock()
                .entry(c)
                .or_insert_with(|| broadcast::channel(CONVERSATION_CAPACITY).0)
                .subscribe(),
        };
        Receiver {
            rx,
            scope,
            hub: self.clone(),
        }
    }

    /// Publishes stored messages, which must come in ascending id order.
    pub fn publish_messages(&self, messages: impl IntoIterator<Item = StoredMessage>) {
        for message in messages {
            let message = Arc::new(message);
            self.published.fetch_max(message.id, Ordering::SeqCst);
            self.send(message.conversation_id, Event::Message(message));
        }
    }

    /// Publishes a presence change to all-conversation subscribers and the conversation's.
    pub fn publish_presence(&self, conversation: ConversationId, online: bool) {
        self.send(
            conversation,
            Event::Presence {
                conversation,
                online,
            },
        );
    }

    /// Publishes a moved read mark to all-conversation subscribers and the conversation's.
    pub fn publish_read_mark(
        &self,
        conversation: ConversationId,
        reader: Reader,
        up_to: MessageId,
    ) {
        self.send(
            conversation,
            Event::ReadMark {
                conversation,
                reader,
                up_to,
            },
        );
    }

    /// Publishes a note to all-conversation subscribers only (see [`Event::Note`]).
    pub fn publish_note(&self, note: Arc<Note>) {
        let _ = self.all.send(Event::Note(note));
    }

    /// Publishes an assignment to all-conversation subscribers (support).
    pub fn publish_assigned(
        &self,
        conversation: ConversationId,
        assignee: Option<String>,
        by: String,
    ) {
        let _ = self.all.send(Event::Assigned {
            conversation,
            assignee,
            by,
        });
    }

    /// Publishes a status change to all-conversation subscribers (support).
    pub fn publish_status(
        &self,
        conversation: ConversationId,
        status: Status,
        change: StatusChange,
    ) {
        let _ = self.all.send(Event::Status {
            conversation,
            status,
            change,
        });
    }

    /// Publishes a typing event to those who see it (see [`Event::Typing`]).
    pub fn publish_typing(&self, typing: Arc<Typing>) {
        let conversation = typing.conversation;
        let to_visitor = matches!(typing.typist, Typist::Admin(_));
        let event = Event::Typing(typing);
        if to_visitor {
            self.send(conversation, event);
        } else {
            let _ = self.all.send(event);
        }
    }

    /// Publishes an erasure to all-conversation subscribers (support).
    pub fn publish_erased(&self, erasure: Arc<Erasure>) {
        let _ = self.all.send(Event::Erased(erasure));
    }

    /// Publishes a visitor's new context to all-conversation subscribers (support).
    pub fn publish_context(&self, changed: Arc<ContextChanged>) {
        let _ = self.all.send(Event::Context(changed));
    }

    /// Publishes a new admin list to all-conversation subscribers.
    pub fn publish_admins(&self, admins: Arc<Vec<Admin>>) {
        let _ = self.all.send(Event::AdminsChanged(admins));
    }

    fn send(&self, conversation: ConversationId, event: Event) {
        if let Some(tx) = self.lock().get(&conversation) {
            let _ = tx.send(event.clone());
        }
        // No receiver is not an error: nobody is listening.
        let _ = self.all.send(event);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ConversationId, broadcast::Sender<Event>>> {
        self.conversations.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A registered receiver; the conversation's channel goes when its last receiver does.
pub struct Receiver {
    rx: broadcast::Receiver<Event>,
    scope: Scope,
    hub: Arc<Hub>,
}

impl Receiver {
    /// The next event; `Err(Lagged)` when events were dropped for this receiver.
    pub async fn recv(&mut self) -> Result<Event, broadcast::error::RecvError> {
        self.rx.recv().await
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        if let Scope::Conversation(c) = self.scope {
            let mut map = self.hub.lock();
            // Our own receiver still counts until this drop returns.
            if map.get(&c).is_some_and(|tx| tx.receiver_count() <= 1) {
                map.remove(&c);
            }
        }
    }
}
