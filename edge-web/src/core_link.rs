//! The edge's one stream to the core (`Chat.EdgeSession`, DESIGN.md): every subscription,
//! every visitor socket's presence and first history (`EdgeJoin`) and every message sent by
//! this edge's sockets travel over it, however many sockets there are. When the stream
//! breaks, the link opens a session with the next core of its list (any replica will do: they
//! share the database), subscribes again from each subscription's cursor (so nothing is lost
//! or repeated), re-declares presence, asks again for the histories not yet answered and sends
//! again what was not answered, in the order it was sent. Every send carries a client message
//! id (one is made up when the client gave none), so a send the old core stored is not stored
//! twice; a send unanswered for `SEND_RETRY_FOR` fails, saying its outcome is unknown. Visitor
//! sockets stay connected throughout.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use socketgram_proto::{
    client::{CoreClient, Cores},
    v1::{
        self as pb, edge_command::Command as Wire, edge_event::Kind,
        edge_joined::Outcome as JoinOutcome, edge_send_result::Outcome,
    },
};
use tokio::{
    sync::{mpsc, oneshot},
    time::Instant,
};
use tokio_stream::wrappers::UnboundedReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Code, Status};
use tracing::{debug, info, warn};

/// What a subscription receives.
#[derive(Debug)]
pub enum LinkEvent {
    Event(pb::event::Kind),
    /// The core refused or ended the subscription (it is gone; subscribe again to retry).
    Ended {
        code: i32,
        message: String,
    },
}

/// What the link is asked to do.
enum Command {
    Subscribe {
        id: u64,
        scope: pb::subscribe_request::Scope,
        since: Option<u64>,
        events: mpsc::UnboundedSender<LinkEvent>,
    },
    Unsubscribe(u64),
    Presence {
        conversation: u64,
        online: bool,
    },
    AdminPresence {
        admin: String,
        online: bool,
    },
    Send {
        request: pb::SendMessageRequest,
        reply: oneshot::Sender<SendResult>,
    },
    Join {
        request: pb::EdgeJoin,
        reply: oneshot::Sender<JoinResult>,
    },
    Typing(pb::SetTypingRequest),
    VisitorContext(pb::SetVisitorContextRequest),
}

/// What a send through the link ends with.
pub type SendResult = Result<pb::SendMessageResponse, Status>;

/// What a joining visitor socket is shown first (see [`CoreLink::join`]).
pub type JoinResult = Result<pb::EdgeHistory, Status>;

/// How long a send may wait for a core to answer it, across failovers, before it fails as
/// "may or may not have been stored".
pub const SEND_RETRY_FOR: Duration = Duration::from_secs(15);

/// The shared handle.
pub struct CoreLink {
    commands: mpsc::UnboundedSender<Command>,
    next_id: AtomicU64,
    cores: Cores,
    /// Whether a session with a core is open now (readiness).
    open: Arc<AtomicBool>,
    stopping: CancellationToken,
    task: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// A live subscription; dropping it unsubscribes.
pub struct Subscription {
    id: u64,
    events: mpsc::UnboundedReceiver<LinkEvent>,
    link: Arc<CoreLink>,
}

impl Subscription {
    /// The next event; `None` when the link is gone (shutdown).
    pub async fn recv(&mut self) -> Option<LinkEvent> {
        self.events.recv().await
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let _ = self.link.commands.send(Command::Unsubscribe(self.id));
    }
}

impl CoreLink {
    /// Starts the link task; it runs until [`CoreLink::stop`].
    pub fn start(cores: Cores) -> Arc<Self> {
        // Unbounded: `send` takes its place in the store order when called, so it cannot wait
        // for room; what comes in is bounded by the sockets' rate limits.
        let (commands, rx) = mpsc::unbounded_channel();
        let stopping = CancellationToken::new();
        let open = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn(run(cores.clone(), rx, stopping.clone(), open.clone()));
        Arc::new(Self {
            commands,
            next_id: AtomicU64::new(1),
            cores,
            open,
            stopping,
            task: std::sync::Mutex::new(Some(task)),
        })
    }

    /// Ends the session with the core and waits until it is over (sends still unanswered are
    /// told so).
    pub async fn stop(&self) {
        self.stopping.cancel();
        let task = self.task.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(task) = task {
            let _ = task.await;
        }
    }

    /// A client for unary calls (history), of the core the link uses now.
    pub fn client(&self) -> CoreClient {
        self.cores.current().1
    }

    /// Whether a session with a core is open now.
    pub fn is_connected(&self) -> bool {
        self.open.load(Ordering::Relaxed)
    }

    /// Subscribes to a scope, replaying after `since` when given.
    pub fn subscribe(
        self: &Arc<Self>,
        scope: pb::subscribe_request::Scope,
        since: Option<u64>,
    ) -> Subscription {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        // Unbounded: the link's one task must never wait on one subscriber (every other one
        // would wait too); subscribers are the edge's own tasks, which never wait on a client.
        let (events, rx) = mpsc::unbounded_channel();
        let _ = self.commands.send(Command::Subscribe {
            id,
            scope,
            since,
            events,
        });
        Subscription {
            id,
            events: rx,
            link: self.clone(),
        }
    }

    /// Sends a message through the session. The message takes its place in the store order
    /// when this is called, not when the returned future is polled: messages sent one after
    /// another (from one socket) are stored in that order, while none waits for the commit of
    /// the one before.
    pub fn send(
        &self,
        request: pb::SendMessageRequest,
    ) -> impl Future<Output = SendResult> + Send + 'static {
        let (reply, answer) = oneshot::channel();
        let _ = self.commands.send(Command::Send { request, reply });
        async move {
            answer
                .await
                // Never handed to a session: the link had stopped.
                .unwrap_or_else(|_| {
                    Err(Status::unavailable(
                        "the edge is shutting down; the message was not stored",
                    ))
                })
        }
    }

    /// The history a visitor socket that subscribes is shown first (`EdgeJoin`: one request
    /// on the session, answered by one read in the core). `request_id` is the link's own. An
    /// unanswered join is asked again of the next session after a failover (it only reads);
    /// one unanswered for [`SEND_RETRY_FOR`] fails as unavailable.
    pub fn join(&self, request: pb::EdgeJoin) -> impl Future<Output = JoinResult> + Send + 'static {
        let (reply, answer) = oneshot::channel();
        let _ = self.commands.send(Command::Join { request, reply });
        async move {
            answer
                .await
                .unwrap_or_else(|_| Err(Status::unavailable("the edge is shutting down")))
        }
    }

    /// Someone typing on a socket: told to the core, answered by nothing, never replayed to
    /// a new session (it is stale by then).
    pub fn typing(&self, request: pb::SetTypingRequest) {
        let _ = self.commands.send(Command::Typing(request));
    }

    /// What a subscribing visitor's token vouches for and its page reports: told to the
    /// core, answered by nothing. Not replayed to a new session: the visitor's next
    /// subscribe tells it again.
    pub fn visitor_context(&self, request: pb::SetVisitorContextRequest) {
        let _ = self.commands.send(Command::VisitorContext(request));
    }

    /// One token admin socket more (`online`) or less.
    pub fn admin_presence(&self, admin: &str, online: bool) {
        let _ = self.commands.send(Command::AdminPresence {
            admin: admin.to_owned(),
            online,
        });
    }

    /// One visitor socket more (`online`) or less.
    pub fn presence(&self, conversation: u64, online: bool) {
        let _ = self.commands.send(Command::Presence {
            conversation,
            online,
        });
    }
}

struct Sub {
    scope: pb::subscribe_request::Scope,
    /// The greatest message id delivered (or the catch-up point): where a resubscription
    /// resumes. `None` until the first `CaughtUp`.
    cursor: Option<u64>,
    events: mpsc::UnboundedSender<LinkEvent>,
}

#[derive(Default)]
struct State {
    subs: HashMap<u64, Sub>,
    /// Sockets per visitor and per token admin, declared again to each new session.
    presence: HashMap<u64, u32>,
    admins: HashMap<String, u32>,
    /// Sends not yet answered, by request id (the order they were sent in): written again to
    /// each new session until answered.
    sends: BTreeMap<u64, PendingSend>,
    next_send: u64,
    /// Joins not yet answered, by request id: asked again of each new session until answered.
    joins: BTreeMap<u64, PendingJoin>,
    next_join: u64,
}

struct PendingJoin {
    request: pb::EdgeJoin,
    reply: oneshot::Sender<JoinResult>,
    since: Instant,
}

struct PendingSend {
    request: pb::SendMessageRequest,
    reply: oneshot::Sender<SendResult>,
    since: Instant,
}

impl State {
    /// Applies a command; returns what to send to the core.
    fn apply(&mut self, command: Command) -> Option<Wire> {
        match command {
            Command::Subscribe {
                id,
                scope,
                since,
                events,
            } => {
                self.subs.insert(
                    id,
                    Sub {
                        scope,
                        cursor: since,
                        events,
                    },
                );
                Some(subscribe(id, scope, since))
            }
            Command::Unsubscribe(id) => self.subs.remove(&id).map(|_| {
                Wire::Unsubscribe(pb::EdgeUnsubscribe {
                    subscription_id: id,
                })
            }),
            Command::Send { mut request, reply } => {
                if request.client_msg_id.is_empty() {
                    // What makes a send safe to repeat on another core.
                    request.client_msg_id =
                        format!("edge-{}", hex::encode(rand::random::<[u8; 12]>()));
                }
                self.next_send += 1;
                let wire = send(self.next_send, request.clone());
                self.sends.insert(
                    self.next_send,
                    PendingSend {
                        request,
                        reply,
                        since: Instant::now(),
                    },
                );
                Some(wire)
            }
            Command::Typing(request) => Some(Wire::Typing(request)),
            Command::VisitorContext(request) => Some(Wire::VisitorContext(request)),
            Command::Join { mut request, reply } => {
                self.next_join += 1;
                request.request_id = self.next_join;
                let wire = Wire::Join(request);
                self.joins.insert(
                    self.next_join,
                    PendingJoin {
                        request,
                        reply,
                        since: Instant::now(),
                    },
                );
                Some(wire)
            }
            Command::Presence {
                conversation,
                online,
            } => count(&mut self.presence, conversation, online).then_some(Wire::Presence(
                pb::EdgePresence {
                    conversation_id: conversation,
                    online,
                },
            )),
            Command::AdminPresence { admin, online } => {
                count(&mut self.admins, admin.clone(), online).then_some(Wire::AdminPresence(
                    pb::EdgeAdminPresence {
                        admin_id: admin,
                        online,
                    },
                ))
            }
        }
    }

    /// Fails every unanswered send and join (the edge stops): whether a core stored a send
    /// cannot be known (a client with a `client_msg_id` can retry safely).
    fn fail_all(&mut self, why: &str) {
        for (_, pending) in std::mem::take(&mut self.sends) {
            fail(pending, why);
        }
        for (_, pending) in std::mem::take(&mut self.joins) {
            fail_join(pending, why);
        }
    }

    /// Fails the sends and joins unanswered since before `before`.
    fn expire(&mut self, before: Instant) {
        const LATE: &str = "no core answered in time";
        for (_, pending) in self.sends.extract_if(.., |_, p| p.since < before) {
            fail(pending, LATE);
        }
        for (_, pending) in self.joins.extract_if(.., |_, p| p.since < before) {
            fail_join(pending, LATE);
        }
    }

    /// Everything a fresh session must be told.
    fn replay(&self) -> Vec<Wire> {
        let subs = self
            .subs
            .iter()
            .map(|(&id, s)| subscribe(id, s.scope, s.cursor));
        let presence = self.presence.iter().flat_map(|(&c, &n)| {
            (0..n).map(move |_| {
                Wire::Presence(pb::EdgePresence {
                    conversation_id: c,
                    online: true,
                })
            })
        });
        let admins = self.admins.iter().flat_map(|(admin, &n)| {
            (0..n).map(move |_| {
                Wire::AdminPresence(pb::EdgeAdminPresence {
                    admin_id: admin.clone(),
                    online: true,
                })
            })
        });
        let joins = self.joins.values().map(|p| Wire::Join(p.request));
        // Sends last: a message that a resubscribed socket then sees comes after its history.
        let sends = self
            .sends
            .iter()
            .map(|(&id, p)| send(id, p.request.clone()));
        subs.chain(presence)
            .chain(admins)
            .chain(joins)
            .chain(sends)
            .collect()
    }

    fn route(&mut self, event: pb::EdgeEvent) {
        if let Some(Kind::SendResult(result)) = event.kind {
            if let Some(PendingSend { reply, .. }) = self.sends.remove(&result.request_id) {
                let _ = reply.send(match result.outcome {
                    Some(Outcome::Sent(sent)) => Ok(sent),
                    Some(Outcome::Error(e)) => Err(Status::new(Code::from(e.code), e.message)),
                    None => Err(Status::internal("the core answered a send with nothing")),
                });
            }
            return;
        }
        if let Some(Kind::Joined(joined)) = event.kind {
            if let Some(PendingJoin { reply, .. }) = self.joins.remove(&joined.request_id) {
                let _ = reply.send(match joined.outcome {
                    Some(JoinOutcome::History(history)) => Ok(history),
                    Some(JoinOutcome::Error(e)) => Err(Status::new(Code::from(e.code), e.message)),
                    None => Err(Status::internal("the core answered a join with nothing")),
                });
            }
            return;
        }
        let Some(sub) = self.subs.get_mut(&event.subscription_id) else {
            return;
        };
        let delivered = match event.kind {
            Some(Kind::Event(pb::Event { kind: Some(kind) })) => {
                match &kind {
                    pb::event::Kind::Message(m) => {
                        sub.cursor = Some(sub.cursor.unwrap_or(0).max(m.id))
                    }
                    pb::event::Kind::CaughtUp(c) => {
                        sub.cursor = Some(sub.cursor.unwrap_or(0).max(c.last_message_id))
                    }
                    // Not part of the cursor: a resubscription gets a fresh snapshot.
                    pb::event::Kind::Presence(_)
                    | pb::event::Kind::PresenceSnapshot(_)
                    | pb::event::Kind::AdminsChanged(_)
                    | pb::event::Kind::ReadMark(_)
                    | pb::event::Kind::Note(_)
                    | pb::event::Kind::Assigned(_)
                    | pb::event::Kind::StatusChanged(_)
                    | pb::event::Kind::Typing(_)
                    | pb::event::Kind::Erased(_)
                    | pb::event::Kind::VisitorContext(_) => {}
                }
                sub.events.send(LinkEvent::Event(kind))
            }
            Some(Kind::Error(e)) => {
                let sent = sub.events.send(LinkEvent::Ended {
                    code: e.code,
                    message: e.message,
                });
                self.subs.remove(&event.subscription_id);
                sent
            }
            // An empty event (a newer core's kind this edge does not know) carries nothing.
            Some(Kind::Event(pb::Event { kind: None })) | None => Ok(()),
            // Answered above, before the subscription was looked up.
            Some(Kind::SendResult(_) | Kind::Joined(_)) => Ok(()),
        };
        if delivered.is_err() {
            // The subscriber is gone; its Unsubscribe is on the way.
            debug!(
                subscription = event.subscription_id,
                "event for a dropped subscription"
            );
        }
    }
}

/// Counts one socket more (`online`) or less of `who`; whether the core must be told (a
/// socket going that was never counted is not).
fn count<K: Eq + std::hash::Hash>(counts: &mut HashMap<K, u32>, who: K, online: bool) -> bool {
    if online {
        *counts.entry(who).or_default() += 1;
        return true;
    }
    let Some(n) = counts.get_mut(&who) else {
        return false;
    };
    *n -= 1;
    if *n == 0 {
        counts.remove(&who);
    }
    true
}

fn send(request_id: u64, request: pb::SendMessageRequest) -> Wire {
    Wire::Send(pb::EdgeSend {
        request_id,
        request: Some(request),
    })
}

fn fail(pending: PendingSend, why: &str) {
    let _ = pending.reply.send(Err(Status::unavailable(format!(
        "{why}; the message may or may not have been stored (sending it again with the \
         same client_msg_id never stores it twice)"
    ))));
}

fn fail_join(pending: PendingJoin, why: &str) {
    let _ = pending.reply.send(Err(Status::unavailable(why.to_owned())));
}

fn subscribe(id: u64, scope: pb::subscribe_request::Scope, since: Option<u64>) -> Wire {
    Wire::Subscribe(pb::EdgeSubscribe {
        subscription_id: id,
        request: Some(pb::SubscribeRequest {
            scope: Some(scope),
            since_message_id: since,
            as_admin: String::new(),
        }),
    })
}

/// Runs the link until `shutdown`; sends still unanswered then fail, saying so.
async fn run(
    cores: Cores,
    commands: mpsc::UnboundedReceiver<Command>,
    shutdown: CancellationToken,
    open: Arc<AtomicBool>,
) {
    let mut state = State::default();
    sessions(cores, commands, shutdown, &mut state, &open).await;
    open.store(false, Ordering::Relaxed);
    state.fail_all("the edge stopped before the core answered");
}

/// One session after another, each with the core the list gives, until `shutdown` or until
/// every handle is gone.
async fn sessions(
    cores: Cores,
    mut commands: mpsc::UnboundedReceiver<Command>,
    shutdown: CancellationToken,
    state: &mut State,
    open: &AtomicBool,
) {
    let mut backoff = Duration::from_millis(100);
    // Sessions that failed in a row: a pause only once every core has failed.
    let mut failures = 0usize;
    let mut expiry = tokio::time::interval(Duration::from_secs(1));
    while !shutdown.is_cancelled() {
        state.expire(Instant::now() - SEND_RETRY_FOR);
        let (at, mut client) = cores.current();
        // Unbounded, as `commands`: it only passes them on to the session's request stream.
        let (out, out_rx) = mpsc::unbounded_channel();
        for wire in state.replay() {
            let _ = out.send(pb::EdgeCommand {
                command: Some(wire),
            });
        }
        let session = tokio::select! {
            () = shutdown.cancelled() => return,
            session = client.chat.edge_session(UnboundedReceiverStream::new(out_rx)) => session,
        };
        let mut inbound = match session {
            Ok(response) => {
                info!(core = cores.url(at), "edge session with the core open");
                open.store(true, Ordering::Relaxed);
                backoff = Duration::from_millis(100);
                failures = 0;
                response.into_inner()
            }
            Err(status) => {
                failures += 1;
                let next = cores.failed(at);
                if !failures.is_multiple_of(cores.len()) {
                    warn!(error = %status, core = cores.url(at), next = cores.url(next), "cannot open the edge session; trying the next core");
                    continue;
                }
                warn!(error = %status, retry_in = ?backoff, "cannot open an edge session with any core");
                // Keep applying commands while waiting, so the next replay is current.
                let sleep = tokio::time::sleep(backoff);
                tokio::pin!(sleep);
                loop {
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        () = &mut sleep => break,
                        command = commands.recv() => match command {
                            Some(c) => { state.apply(c); }
                            None => return,
                        },
                    }
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                command = commands.recv() => match command {
                    Some(c) => {
                        if let Some(wire) = state.apply(c) {
                            let _ = out.send(pb::EdgeCommand { command: Some(wire) });
                        }
                    }
                    None => return,
                },
                event = inbound.message() => match event {
                    Ok(Some(event)) => state.route(event),
                    Ok(None) => { warn!(core = cores.url(at), "the core closed the edge session; moving to the next core"); break; }
                    Err(status) => { warn!(error = %status, core = cores.url(at), "edge session broke; moving to the next core"); break; }
                },
                _ = expiry.tick() => state.expire(Instant::now() - SEND_RETRY_FOR),
            }
        }
        open.store(false, Ordering::Relaxed);
        cores.failed(at);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn send(state: &mut State) -> oneshot::Receiver<SendResult> {
        let (reply, answer) = oneshot::channel();
        let wire = state.apply(Command::Send {
            request: pb::SendMessageRequest::default(),
            reply,
        });
        assert!(matches!(wire, Some(Wire::Send(_))));
        answer
    }

    fn result(request_id: u64, outcome: Outcome) -> pb::EdgeEvent {
        pb::EdgeEvent {
            subscription_id: 0,
            kind: Some(Kind::SendResult(pb::EdgeSendResult {
                request_id,
                outcome: Some(outcome),
            })),
        }
    }

    fn join(state: &mut State, conversation: u64) -> oneshot::Receiver<JoinResult> {
        let (reply, answer) = oneshot::channel();
        let request = pb::EdgeJoin {
            conversation_id: conversation,
            ..Default::default()
        };
        let wire = state.apply(Command::Join { request, reply });
        assert!(matches!(wire, Some(Wire::Join(j)) if j.conversation_id == conversation));
        answer
    }

    fn joined(request_id: u64, outcome: JoinOutcome) -> pb::EdgeEvent {
        pb::EdgeEvent {
            subscription_id: 0,
            kind: Some(Kind::Joined(pb::EdgeJoined {
                request_id,
                outcome: Some(outcome),
            })),
        }
    }

    #[test]
    fn joins_get_their_own_answers_and_are_asked_again_until_answered() {
        let mut state = State::default();
        let (mut first, mut second) = (join(&mut state, 7), join(&mut state, 8));
        let page = pb::EdgeHistory {
            messages: vec![pb::Message {
                id: 41,
                ..Default::default()
            }],
            has_more: true,
            typing_preview: false,
        };
        state.route(joined(2, JoinOutcome::History(page.clone())));
        assert_eq!(second.try_recv().unwrap().unwrap(), page);
        assert!(first.try_recv().is_err(), "still waiting");
        // A new session is asked again for the unanswered one only, under its id.
        let again: Vec<_> = state
            .replay()
            .into_iter()
            .filter_map(|w| match w {
                Wire::Join(j) => Some((j.request_id, j.conversation_id)),
                _ => None,
            })
            .collect();
        assert_eq!(again, [(1, 7)]);
        // Unanswered past the retry window: fails as unavailable, once.
        state.expire(Instant::now() + Duration::from_secs(1));
        assert_eq!(
            first.try_recv().unwrap().unwrap_err().code(),
            Code::Unavailable
        );
        assert!(state.joins.is_empty());
    }

    #[test]
    fn sends_get_their_own_answers_and_are_sent_again_until_answered() {
        let mut state = State::default();
        let (mut first, mut second, mut third) =
            (send(&mut state), send(&mut state), send(&mut state));
        // Answers may come in any order; each reaches its own sender.
        state.route(result(
            2,
            Outcome::Error(pb::EdgeSubscriptionError {
                code: Code::InvalidArgument as i32,
                message: "the message is empty".into(),
                reason: "EMPTY_TEXT".into(),
            }),
        ));
        state.route(result(1, Outcome::Sent(pb::SendMessageResponse::default())));
        assert!(first.try_recv().unwrap().is_ok());
        let refused = second.try_recv().unwrap().unwrap_err();
        assert_eq!(refused.code(), Code::InvalidArgument);
        assert!(third.try_recv().is_err(), "still waiting");
        // The session breaks: the next one is told the unanswered send again, under the
        // client message id it first went with (made up, as the client gave none).
        let again: Vec<_> = state
            .replay()
            .into_iter()
            .filter_map(|w| match w {
                Wire::Send(s) => Some(s),
                _ => None,
            })
            .collect();
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].request_id, 3);
        let key = &again[0].request.as_ref().unwrap().client_msg_id;
        assert!(key.starts_with("edge-") && key.len() <= 64, "{key}");
        assert_eq!(
            &state
                .replay()
                .iter()
                .find_map(|w| match w {
                    Wire::Send(s) => Some(s.request.as_ref().unwrap().client_msg_id.clone()),
                    _ => None,
                })
                .unwrap(),
            key,
            "the same id each time"
        );
        assert!(
            third.try_recv().is_err(),
            "still waiting across the failover"
        );
        // Unanswered past the retry window: fails as unavailable, once.
        state.expire(Instant::now() + Duration::from_secs(1));
        assert_eq!(
            third.try_recv().unwrap().unwrap_err().code(),
            Code::Unavailable
        );
        assert!(state.sends.is_empty());
        // A late answer for a failed send is ignored.
        state.route(result(3, Outcome::Sent(pb::SendMessageResponse::default())));
    }
}
