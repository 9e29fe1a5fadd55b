//! The edge's one stream to the core (`Chat.EdgeSession`, DESIGN.md): every subscription,
//! every visitor socket's presence and every message sent by this edge's sockets travel over
//! it, however many sockets there are. When the stream breaks, the link reconnects with
//! back-off, subscribes again from each subscription's cursor (so nothing is lost or
//! repeated) and re-declares presence; sends still unanswered fail as unavailable.

use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use socketgram_proto::{
    client::CoreClient,
    v1::{self as pb, edge_command::Command as Wire, edge_event::Kind, edge_send_result::Outcome},
};
use tokio::sync::{mpsc, oneshot};
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
    Send {
        request: pb::SendMessageRequest,
        reply: oneshot::Sender<SendResult>,
    },
}

/// What a send through the link ends with.
pub type SendResult = Result<pb::SendMessageResponse, Status>;

/// The shared handle.
pub struct CoreLink {
    commands: mpsc::UnboundedSender<Command>,
    next_id: AtomicU64,
    client: CoreClient,
    stopping: CancellationToken,
    task: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// Whether a session with the core is open now (for readiness).
    connected: Arc<AtomicBool>,
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
    pub fn start(client: CoreClient) -> Arc<Self> {
        // Unbounded: `send` takes its place in the store order when called, so it cannot wait
        // for room; what comes in is bounded by the sockets' rate limits.
        let (commands, rx) = mpsc::unbounded_channel();
        let stopping = CancellationToken::new();
        let connected = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn(run(client.clone(), rx, stopping.clone(), connected.clone()));
        Arc::new(Self {
            commands,
            next_id: AtomicU64::new(1),
            client,
            stopping,
            task: std::sync::Mutex::new(Some(task)),
            connected,
        })
    }

    /// Whether the session with the core is open at this moment.
    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
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

    /// A client for unary calls (history, sends), sharing the link's connection.
    pub fn client(&self) -> CoreClient {
        self.client.clone()
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
    presence: HashMap<u64, u32>,
    /// Sends written to the current session and not yet answered, by request id.
    sends: HashMap<u64, oneshot::Sender<SendResult>>,
    next_send: u64,
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
            Command::Send { request, reply } => {
                self.next_send += 1;
                self.sends.insert(self.next_send, reply);
                Some(Wire::Send(pb::EdgeSend {
                    request_id: self.next_send,
                    request: Some(request),
                }))
            }
            Command::Presence {
                conversation,
                online,
            } => {
                let count = self.presence.entry(conversation).or_default();
                if online {
                    *count += 1;
                } else if *count > 0 {
                    *count -= 1;
                } else {
                    return None;
                }
                if *count == 0 {
                    self.presence.remove(&conversation);
                }
                Some(Wire::Presence(pb::EdgePresence {
                    conversation_id: conversation,
                    online,
                }))
            }
        }
    }

    /// Fails every unanswered send: its session is gone (`why`), and whether the core stored
    /// it cannot be known (a client with a `client_msg_id` can retry safely).
    fn fail_sends(&mut self, why: &str) {
        for (_, reply) in self.sends.drain() {
            let _ = reply.send(Err(Status::unavailable(format!(
                "{why}; the message may or may not have been stored"
            ))));
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
        subs.chain(presence).collect()
    }

    fn route(&mut self, event: pb::EdgeEvent) {
        if let Some(Kind::SendResult(result)) = event.kind {
            if let Some(reply) = self.sends.remove(&result.request_id) {
                let _ = reply.send(match result.outcome {
                    Some(Outcome::Sent(sent)) => Ok(sent),
                    Some(Outcome::Error(e)) => Err(Status::new(Code::from(e.code), e.message)),
                    None => Err(Status::internal("the core answered a send with nothing")),
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
                    | pb::event::Kind::AdminsChanged(_) => {}
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
            Some(Kind::SendResult(_)) => Ok(()),
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

fn subscribe(id: u64, scope: pb::subscribe_request::Scope, since: Option<u64>) -> Wire {
    Wire::Subscribe(pb::EdgeSubscribe {
        subscription_id: id,
        request: Some(pb::SubscribeRequest {
            scope: Some(scope),
            since_message_id: since,
        }),
    })
}

const BROKE: &str = "the link to the core broke";

/// Runs the link until `shutdown`; sends still unanswered then fail, saying so.
async fn run(
    client: CoreClient,
    commands: mpsc::UnboundedReceiver<Command>,
    shutdown: CancellationToken,
    connected: Arc<AtomicBool>,
) {
    let mut state = State::default();
    sessions(client, commands, shutdown, &mut state, &connected).await;
    connected.store(false, Ordering::Relaxed);
    state.fail_sends("the edge stopped before the core answered");
}

/// One session after another, until `shutdown` or until every handle is gone.
async fn sessions(
    mut client: CoreClient,
    mut commands: mpsc::UnboundedReceiver<Command>,
    shutdown: CancellationToken,
    state: &mut State,
    connected: &AtomicBool,
) {
    let mut backoff = Duration::from_millis(100);
    while !shutdown.is_cancelled() {
        state.fail_sends(BROKE);
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
                info!("edge session with the core open");
                connected.store(true, Ordering::Relaxed);
                backoff = Duration::from_millis(100);
                response.into_inner()
            }
            Err(status) => {
                warn!(error = %status, retry_in = ?backoff, "cannot open the edge session");
                // Keep applying commands while waiting, so the next replay is current.
                let sleep = tokio::time::sleep(backoff);
                tokio::pin!(sleep);
                loop {
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        () = &mut sleep => break,
                        command = commands.recv() => match command {
                            Some(c) => { state.apply(c); state.fail_sends(BROKE); }
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
                    Ok(None) => { warn!("the core closed the edge session; reconnecting"); break; }
                    Err(status) => { warn!(error = %status, "edge session broke; reconnecting"); break; }
                },
            }
        }
        connected.store(false, Ordering::Relaxed);
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

    #[test]
    fn sends_get_their_own_answers_and_fail_when_the_session_breaks() {
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
        // The session breaks: whatever is unanswered fails as unavailable, once.
        state.fail_sends(BROKE);
        assert_eq!(
            third.try_recv().unwrap().unwrap_err().code(),
            Code::Unavailable
        );
        assert!(state.sends.is_empty());
        // A late answer for a failed send is ignored.
        state.route(result(3, Outcome::Sent(pb::SendMessageResponse::default())));
    }
}
