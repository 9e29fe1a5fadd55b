//! The bus between core replicas: core NATS (the `async-nats` client), carrying news of what
//! each replica committed, the presence each replica holds, and admin directory reloads
//! (`socketgram.bus.v1`, one subject each under `[core.cluster] subject_prefix`).
//!
//! Core NATS, not JetStream: the database already is the durable, ordered log, and each batch
//! names its predecessor, so a replica that misses news (a disconnect, a restart, a slow
//! consumer dropped by the server) reads the gap from the database (`sequencer`). A second
//! log would cost a disk write per message and a stream to run, for nothing the database does
//! not give. Publishing never waits on NATS: news that finds the outgoing queue full is
//! dropped, and the receivers catch up.

use std::{collections::HashSet, sync::Arc, time::Duration};

use bytes::Bytes;
use chrono::DateTime;
use futures::StreamExt as _;
use prost::Message as _;
use socketgram_proto::bus as pb;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::{
    config::ClusterConfig,
    domain::{
        Attachment, ContextChanged, ConversationId, Direction, Erasure, MessageId, Note, Origin,
        Reader, Status, StatusChange, StoredMessage, Thumbnail, VisitorContext, part_from_json,
        part_json,
    },
    typing::{Typing, Typist},
};

/// News waiting to go out before more is dropped (the receivers then catch up).
const OUTGOING: usize = 8192;
/// News received and not yet applied before the bus stops reading (NATS then drops it for
/// this replica, which catches up).
const INCOMING: usize = 8192;

/// Why the bus could not start.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("core.cluster.nats_url: {0}")]
    Url(String),
    #[error("cannot subscribe on NATS: {0}")]
    Subscribe(String),
}

/// What another replica said.
#[derive(Debug)]
pub(crate) enum News {
    Batch {
        prev: MessageId,
        messages: Vec<StoredMessage>,
    },
    Presence {
        replica: String,
        kind: PresenceNews,
    },
    AdminsChanged,
    ReadMark {
        conversation: ConversationId,
        reader: Reader,
        up_to: MessageId,
    },
    Note(Note),
    Assigned {
        conversation: ConversationId,
        assignee: Option<String>,
        by: String,
    },
    Status {
        conversation: ConversationId,
        status: Status,
        change: StatusChange,
    },
    Typing(Typing),
    Erased(Erasure),
    Context(ContextChanged),
    /// The connection to NATS came back: news may have been lost meanwhile.
    Reconnected,
}

#[derive(Debug)]
pub(crate) enum PresenceNews {
    Change {
        conversation: ConversationId,
        online: bool,
    },
    AdminChange {
        admin: String,
        online: bool,
    },
    Snapshot {
        visitors: HashSet<ConversationId>,
        admins: HashSet<String>,
    },
    Goodbye,
}

/// Whether this replica is connected to NATS now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BusState {
    Connected,
    Disconnected,
}

/// The handle the core publishes through.
#[derive(Clone)]
pub(crate) struct Bus {
    replica: Arc<str>,
    outgoing: mpsc::Sender<(&'static str, Bytes)>,
    state: watch::Receiver<BusState>,
}

struct Subjects {
    messages: String,
    presence: String,
    admins: String,
    reads: String,
    notes: String,
    assignments: String,
    statuses: String,
    typing: String,
    erasures: String,
    contexts: String,
}

impl Subjects {
    fn new(prefix: &str) -> Self {
        Self {
            messages: format!("{prefix}.messages"),
            presence: format!("{prefix}.presence"),
            admins: format!("{prefix}.admins"),
            reads: format!("{prefix}.reads"),
            notes: format!("{prefix}.notes"),
            assignments: format!("{prefix}.assignments"),
            statuses: format!("{prefix}.statuses"),
            typing: format!("{prefix}.typing"),
            erasures: format!("{prefix}.erasures"),
            contexts: format!("{prefix}.contexts"),
        }
    }
}

const MESSAGES: &str = "messages";
const PRESENCE: &str = "presence";
const ADMINS: &str = "admins";
const READS: &str = "reads";
const NOTES: &str = "notes";
const ASSIGNMENTS: &str = "assignments";
const STATUSES: &str = "statuses";
const TYPING: &str = "typing";
const ERASURES: &str = "erasures";
const CONTEXTS: &str = "contexts";

impl Bus {
    /// Connects to NATS (in the background: a core starts while NATS is down, and reconnects
    /// by itself) and starts publishing and receiving until `stop`. Returns the handle and
    /// the news from the other replicas.
    pub(crate) async fn start(
        config: &ClusterConfig,
        replica: String,
        stop: CancellationToken,
    ) -> Result<(Self, mpsc::Receiver<News>), BusError> {
        let urls: Vec<async_nats::ServerAddr> = config
            .nats_urls()
            .map(|url| {
                url.parse()
                    .map_err(|e| BusError::Url(format!("{url:?}: {e}")))
            })
            .collect::<Result<_, _>>()?;
        let (news_tx, news) = mpsc::channel(INCOMING);
        let (state_tx, state) = watch::channel(BusState::Disconnected);
        let state_tx = Arc::new(state_tx);
        let events = news_tx.clone();
        let client = async_nats::ConnectOptions::new()
            .name(format!("socketgram-core {replica}"))
            .retry_on_initial_connect()
            .max_reconnects(None)
            // Back within a second of NATS returning, whatever the attempt count.
            .reconnect_delay_callback(|attempts| {
                Duration::from_millis((attempts as u64 * 100).min(1_000))
            })
            .event_callback(move |event| {
                let (events, state_tx) = (events.clone(), state_tx.clone());
                async move {
                    match event {
                        async_nats::Event::Connected => {
                            info!("connected to NATS");
                            state_tx.send_replace(BusState::Connected);
                            let _ = events.try_send(News::Reconnected);
                        }
                        async_nats::Event::Disconnected => {
                            warn!("disconnected from NATS; reconnecting (messages are caught up from the database)");
                            state_tx.send_replace(BusState::Disconnected);
                        }
                        async_nats::Event::SlowConsumer(_) => {
                            warn!("NATS dropped news for this replica (slow consumer); catching up from the database");
                            let _ = events.try_send(News::Reconnected);
                        }
                        other => debug!(event = %other, "NATS"),
                    }
                }
            })
            .connect(urls)
            .await
            .map_err(|e| BusError::Url(e.to_string()))?;
        let subjects = Subjects::new(&config.subject_prefix);
        let inbox = client
            .subscribe(format!("{}.*", config.subject_prefix))
            .await
            .map_err(|e| BusError::Subscribe(e.to_string()))?;
        let (outgoing, queue) = mpsc::channel(OUTGOING);
        let replica: Arc<str> = replica.into();
        tokio::spawn(send(client.clone(), subjects, queue, stop.clone()));
        tokio::spawn(receive(inbox, replica.clone(), news_tx, stop));
        Ok((
            Self {
                replica,
                outgoing,
                state,
            },
            news,
        ))
    }

    /// This replica's name on the bus.
    pub(crate) fn replica(&self) -> &str {
        &self.replica
    }

    /// Whether NATS is connected now.
    pub(crate) fn state(&self) -> BusState {
        *self.state.borrow()
    }

    /// A committed batch's new messages (ascending) and the greatest id committed before them.
    pub(crate) fn batch(&self, prev: MessageId, messages: &[StoredMessage]) {
        let batch = pb::Batch {
            replica: self.replica.to_string(),
            prev,
            messages: messages.iter().map(to_wire).collect(),
        };
        self.queue(MESSAGES, batch.encode_to_vec());
    }

    /// A visitor came online or went offline through this replica.
    pub(crate) fn presence_change(&self, conversation: ConversationId, online: bool) {
        self.presence(pb::presence::Kind::Change(pb::Change {
            conversation_id: conversation,
            online,
            admin_id: String::new(),
        }));
    }

    /// An admin came online or went offline through this replica.
    pub(crate) fn admin_presence_change(&self, admin: &str, online: bool) {
        self.presence(pb::presence::Kind::Change(pb::Change {
            conversation_id: 0,
            online,
            admin_id: admin.to_owned(),
        }));
    }

    /// Every visitor and admin online through this replica.
    pub(crate) fn presence_snapshot(&self, online: Vec<ConversationId>, admins: Vec<String>) {
        self.presence(pb::presence::Kind::Snapshot(pb::Snapshot {
            online,
            admins,
        }));
    }

    /// This replica stops.
    pub(crate) fn goodbye(&self) {
        self.presence(pb::presence::Kind::Goodbye(pb::Goodbye {}));
    }

    /// A read mark moved here.
    pub(crate) fn read_mark(&self, conversation: ConversationId, reader: Reader, up_to: MessageId) {
        let news = pb::ReadMark {
            replica: self.replica.to_string(),
            conversation_id: conversation,
            reader: match reader {
                Reader::Support => 1,
                Reader::Visitor => 2,
            },
            up_to_message_id: up_to,
        };
        self.queue(READS, news.encode_to_vec());
    }

    /// A note was added here.
    pub(crate) fn note(&self, note: &Note) {
        let news = pb::Note {
            replica: self.replica.to_string(),
            id: note.id,
            conversation_id: note.conversation_id,
            admin_id: note.admin_id.clone(),
            text: note.text.clone(),
            created_at_ms: note.created_at_ms,
        };
        self.queue(NOTES, news.encode_to_vec());
    }

    /// A conversation was assigned here.
    pub(crate) fn assigned(&self, conversation: ConversationId, assignee: Option<&str>, by: &str) {
        let news = pb::Assigned {
            replica: self.replica.to_string(),
            conversation_id: conversation,
            assignee: assignee.unwrap_or_default().to_owned(),
            by: by.to_owned(),
        };
        self.queue(ASSIGNMENTS, news.encode_to_vec());
    }

    /// A conversation's status changed here.
    pub(crate) fn status(
        &self,
        conversation: ConversationId,
        status: Status,
        change: &StatusChange,
    ) {
        let (cause, by) = match change {
            StatusChange::By(admin) => (1, admin.clone()),
            StatusChange::VisitorWrote => (2, String::new()),
            StatusChange::SnoozeEnded => (3, String::new()),
        };
        let news = pb::StatusChanged {
            replica: self.replica.to_string(),
            conversation_id: conversation,
            status: status.code(),
            snoozed_until_ms: match status {
                Status::Snoozed { until_ms } => until_ms,
                _ => 0,
            },
            cause,
            by,
        };
        self.queue(STATUSES, news.encode_to_vec());
    }

    /// Someone typed here.
    pub(crate) fn typing(&self, typing: &Typing) {
        let news = pb::Typing {
            replica: self.replica.to_string(),
            conversation_id: typing.conversation,
            admin_id: match &typing.typist {
                Typist::Visitor => String::new(),
                Typist::Admin(admin) => admin.clone(),
            },
            active: typing.active,
            draft_chars: typing.draft_chars,
            preview: typing.preview.clone(),
        };
        self.queue(TYPING, news.encode_to_vec());
    }

    /// A conversation was erased here.
    pub(crate) fn erased(&self, erasure: &Erasure) {
        let news = pb::Erased {
            replica: self.replica.to_string(),
            conversation_id: erasure.conversation_id,
            erased_by: erasure.erased_by.clone(),
            erased_at_ms: erasure.erased_at_ms,
            messages: erasure.messages,
            notes: erasure.notes,
        };
        self.queue(ERASURES, news.encode_to_vec());
    }

    /// A visitor's context changed here.
    pub(crate) fn context(&self, changed: &ContextChanged) {
        let json = |part: Option<String>| part.unwrap_or_default();
        let context = &changed.context;
        let news = pb::VisitorContext {
            replica: self.replica.to_string(),
            conversation_id: changed.conversation_id,
            verified_json: json(context.verified.as_ref().map(part_json)),
            page_json: json(context.page.as_ref().map(part_json)),
            updated_at_ms: context.updated_at_ms,
        };
        self.queue(CONTEXTS, news.encode_to_vec());
    }

    /// This replica re-read the admin directory.
    pub(crate) fn admins_changed(&self) {
        let news = pb::AdminsChanged {
            replica: self.replica.to_string(),
        };
        self.queue(ADMINS, news.encode_to_vec());
    }

    fn presence(&self, kind: pb::presence::Kind) {
        let news = pb::Presence {
            replica: self.replica.to_string(),
            kind: Some(kind),
        };
        self.queue(PRESENCE, news.encode_to_vec());
    }

    fn queue(&self, subject: &'static str, payload: Vec<u8>) {
        if self.outgoing.try_send((subject, payload.into())).is_err() {
            debug!(
                subject,
                "bus queue full; news dropped (the others catch up)"
            );
        }
    }
}

/// Publishes queued news in order (one connection: NATS keeps one publisher's order).
async fn send(
    client: async_nats::Client,
    subjects: Subjects,
    mut queue: mpsc::Receiver<(&'static str, Bytes)>,
    stop: CancellationToken,
) {
    loop {
        let (subject, payload) = tokio::select! {
            // Whatever is queued when stopping (the goodbye) still goes out.
            biased;
            next = queue.recv() => match next {
                Some(next) => next,
                None => break,
            },
            () = stop.cancelled() => break,
        };
        let subject = match subject {
            MESSAGES => &subjects.messages,
            PRESENCE => &subjects.presence,
            READS => &subjects.reads,
            NOTES => &subjects.notes,
            ASSIGNMENTS => &subjects.assignments,
            STATUSES => &subjects.statuses,
            TYPING => &subjects.typing,
            ERASURES => &subjects.erasures,
            CONTEXTS => &subjects.contexts,
            _ => &subjects.admins,
        };
        if let Err(e) = client.publish(subject.clone(), payload).await {
            debug!(error = %e, "cannot publish on NATS");
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), client.flush()).await;
}

/// Decodes news from the other replicas, until `stop`.
async fn receive(
    mut inbox: async_nats::Subscriber,
    replica: Arc<str>,
    news: mpsc::Sender<News>,
    stop: CancellationToken,
) {
    loop {
        let message = tokio::select! {
            () = stop.cancelled() => return,
            message = inbox.next() => match message {
                Some(message) => message,
                None => return,
            },
        };
        let kind = message.subject.rsplit('.').next().unwrap_or_default();
        let decoded = match decode(kind, &message.payload, &replica) {
            Ok(Some(decoded)) => decoded,
            Ok(None) => continue,
            Err(e) => {
                warn!(subject = %message.subject, error = %e, "undecodable news on the bus; ignored");
                continue;
            }
        };
        if news.send(decoded).await.is_err() {
            return;
        }
    }
}

/// News from another replica; `None` for our own (NATS echoes them) or an unknown subject.
fn decode(kind: &str, payload: &[u8], own: &str) -> Result<Option<News>, String> {
    let decoded = match kind {
        MESSAGES => {
            let batch = pb::Batch::decode(payload).map_err(|e| e.to_string())?;
            if batch.replica == own {
                return Ok(None);
            }
            let messages = batch
                .messages
                .into_iter()
                .map(from_wire)
                .collect::<Result<Vec<_>, _>>()?;
            News::Batch {
                prev: batch.prev,
                messages,
            }
        }
        PRESENCE => {
            let presence = pb::Presence::decode(payload).map_err(|e| e.to_string())?;
            if presence.replica == own {
                return Ok(None);
            }
            let kind = match presence.kind.ok_or("a presence message without a kind")? {
                pb::presence::Kind::Change(change) if !change.admin_id.is_empty() => {
                    PresenceNews::AdminChange {
                        admin: change.admin_id,
                        online: change.online,
                    }
                }
                pb::presence::Kind::Change(change) => PresenceNews::Change {
                    conversation: change.conversation_id,
                    online: change.online,
                },
                pb::presence::Kind::Snapshot(snapshot) => PresenceNews::Snapshot {
                    visitors: snapshot.online.into_iter().collect(),
                    admins: snapshot.admins.into_iter().collect(),
                },
                pb::presence::Kind::Goodbye(_) => PresenceNews::Goodbye,
            };
            News::Presence {
                replica: presence.replica,
                kind,
            }
        }
        ADMINS => {
            let news = pb::AdminsChanged::decode(payload).map_err(|e| e.to_string())?;
            if news.replica == own {
                return Ok(None);
            }
            News::AdminsChanged
        }
        READS => {
            let news = pb::ReadMark::decode(payload).map_err(|e| e.to_string())?;
            if news.replica == own {
                return Ok(None);
            }
            News::ReadMark {
                conversation: news.conversation_id,
                reader: match news.reader {
                    1 => Reader::Support,
                    2 => Reader::Visitor,
                    other => return Err(format!("a read mark of reader {other}")),
                },
                up_to: news.up_to_message_id,
            }
        }
        NOTES => {
            let news = pb::Note::decode(payload).map_err(|e| e.to_string())?;
            if news.replica == own {
                return Ok(None);
            }
            News::Note(Note {
                id: news.id,
                conversation_id: news.conversation_id,
                admin_id: news.admin_id,
                text: news.text,
                created_at_ms: news.created_at_ms,
            })
        }
        ASSIGNMENTS => {
            let news = pb::Assigned::decode(payload).map_err(|e| e.to_string())?;
            if news.replica == own {
                return Ok(None);
            }
            News::Assigned {
                conversation: news.conversation_id,
                assignee: Some(news.assignee).filter(|a| !a.is_empty()),
                by: news.by,
            }
        }
        STATUSES => {
            let news = pb::StatusChanged::decode(payload).map_err(|e| e.to_string())?;
            if news.replica == own {
                return Ok(None);
            }
            let change = match news.cause {
                1 => StatusChange::By(news.by),
                2 => StatusChange::VisitorWrote,
                3 => StatusChange::SnoozeEnded,
                other => return Err(format!("a status change of cause {other}")),
            };
            // The snooze as the sender stored it, even if it ended by the time it arrives:
            // the receiver's own snooze timer then ends it here.
            let status = match (news.status, news.snoozed_until_ms) {
                (3, until_ms) => Status::Snoozed { until_ms },
                (code, _) => Status::from_row(code.into(), None, 0),
            };
            News::Status {
                conversation: news.conversation_id,
                status,
                change,
            }
        }
        TYPING => {
            let news = pb::Typing::decode(payload).map_err(|e| e.to_string())?;
            if news.replica == own {
                return Ok(None);
            }
            News::Typing(Typing {
                conversation: news.conversation_id,
                typist: if news.admin_id.is_empty() {
                    Typist::Visitor
                } else {
                    Typist::Admin(news.admin_id)
                },
                active: news.active,
                draft_chars: news.draft_chars,
                preview: news.preview,
            })
        }
        ERASURES => {
            let news = pb::Erased::decode(payload).map_err(|e| e.to_string())?;
            if news.replica == own {
                return Ok(None);
            }
            News::Erased(Erasure {
                conversation_id: news.conversation_id,
                erased_by: news.erased_by,
                erased_at_ms: news.erased_at_ms,
                messages: news.messages,
                notes: news.notes,
            })
        }
        CONTEXTS => {
            let news = pb::VisitorContext::decode(payload).map_err(|e| e.to_string())?;
            if news.replica == own {
                return Ok(None);
            }
            News::Context(ContextChanged {
                conversation_id: news.conversation_id,
                context: VisitorContext {
                    verified: from_json(&news.verified_json)?,
                    page: from_json(&news.page_json)?,
                    updated_at_ms: news.updated_at_ms,
                },
            })
        }
        _ => return Ok(None),
    };
    Ok(Some(decoded))
}

/// A context part the other replica sent as JSON (empty: absent).
fn from_json<T: serde::de::DeserializeOwned>(json: &str) -> Result<Option<T>, String> {
    if json.is_empty() {
        return Ok(None);
    }
    part_from_json(json).map(Some).map_err(|e| e.to_string())
}

fn to_wire(m: &StoredMessage) -> pb::StoredMessage {
    pb::StoredMessage {
        id: m.id,
        conversation_id: m.conversation_id,
        direction: m.direction.code(),
        origin: m.origin.code(),
        admin_id: m.admin_id.clone(),
        text: m.text.clone(),
        local_date: m.local_date.and_utc().timestamp(),
        attachments: m.attachments.iter().map(attachment_to_wire).collect(),
        client_msg_id: m.client_msg_id.clone().unwrap_or_default(),
    }
}

fn attachment_to_wire(a: &Attachment) -> pb::StoredAttachment {
    let thumbnail = a.thumbnail.clone().unwrap_or(Thumbnail {
        key: String::new(),
        content_type: String::new(),
        size: 0,
    });
    pb::StoredAttachment {
        id: a.id,
        name: a.name.clone(),
        content_type: a.content_type.clone(),
        size: a.size,
        sha256: a.sha256.clone(),
        width: a.width,
        height: a.height,
        key: a.key.clone(),
        thumbnail_key: thumbnail.key,
        thumbnail_type: thumbnail.content_type,
        thumbnail_size: thumbnail.size,
        uploaded_by: a.uploaded_by.clone(),
        created_at_ms: a.created_at_ms,
    }
}

fn attachment_from_wire(a: pb::StoredAttachment, message: &StoredMessage) -> Attachment {
    Attachment {
        id: a.id,
        conversation_id: message.conversation_id,
        message_id: Some(message.id),
        name: a.name,
        content_type: a.content_type,
        size: a.size,
        sha256: a.sha256,
        width: a.width,
        height: a.height,
        key: a.key,
        thumbnail: (!a.thumbnail_key.is_empty()).then_some(Thumbnail {
            key: a.thumbnail_key,
            content_type: a.thumbnail_type,
            size: a.thumbnail_size,
        }),
        uploaded_by: a.uploaded_by,
        created_at_ms: a.created_at_ms,
    }
}

fn from_wire(m: pb::StoredMessage) -> Result<StoredMessage, String> {
    let direction = Direction::from_code(m.direction.into());
    let mut message = StoredMessage {
        id: m.id,
        conversation_id: m.conversation_id,
        direction,
        origin: Origin::from_code(Some(m.origin.into()), direction),
        admin_id: m.admin_id,
        text: m.text,
        local_date: DateTime::from_timestamp(m.local_date, 0)
            .ok_or_else(|| format!("message {} has an impossible date", m.id))?
            .naive_utc(),
        attachments: Vec::new(),
        client_msg_id: (!m.client_msg_id.is_empty()).then_some(m.client_msg_id),
    };
    message.attachments = m
        .attachments
        .into_iter()
        .map(|a| attachment_from_wire(a, &message))
        .collect();
    Ok(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_crosses_the_bus_unchanged() {
        let message = StoredMessage {
            id: 42,
            conversation_id: 7,
            direction: Direction::ToVisitor,
            origin: Origin::Backend,
            admin_id: "alice".into(),
            client_msg_id: Some("backend-7".into()),
            text: "<b>hi</b> & ✓".into(),
            local_date: DateTime::from_timestamp(1_700_000_000, 0)
                .unwrap()
                .naive_utc(),
            attachments: vec![Attachment {
                id: 3,
                conversation_id: 7,
                message_id: Some(42),
                name: "photo.png".into(),
                content_type: "image/png".into(),
                size: 1234,
                sha256: "ab".repeat(32),
                width: 64,
                height: 48,
                key: "k".into(),
                thumbnail: Some(Thumbnail {
                    key: "k.thumb".into(),
                    content_type: "image/png".into(),
                    size: 99,
                }),
                uploaded_by: "alice".into(),
                created_at_ms: 1_700_000_000_000,
            }],
        };
        let batch = pb::Batch {
            replica: "a".into(),
            prev: 40,
            messages: vec![to_wire(&message)],
        };
        let Ok(Some(News::Batch { prev, messages })) =
            decode(MESSAGES, &batch.encode_to_vec(), "b")
        else {
            panic!("not decoded as a batch");
        };
        assert_eq!((prev, messages), (40, vec![message]));
        assert!(
            decode(MESSAGES, &batch.encode_to_vec(), "a")
                .unwrap()
                .is_none(),
            "our own news is not news"
        );
        assert!(decode(MESSAGES, b"\xff\xff", "b").is_err());
    }
}
