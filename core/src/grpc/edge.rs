//! `EdgeSession`: one long-lived stream per edge that carries the subscriptions, visitor
//! presence and sends of all its sockets (DESIGN.md: edges multiplex instead of opening a stream per
//! socket). When the stream ends, for whatever reason, the edge's visitors go offline.

use std::{collections::HashMap, sync::Arc};

use socketgram_proto::v1::{
    self as pb, edge_command::Command, edge_event::Kind, edge_joined::Outcome as Joined,
    edge_send_result::Outcome,
};
use tokio::{sync::mpsc, task::JoinHandle};
use tonic::{Status, Streaming};
use tracing::{debug, info};

use super::{code, convert};
use crate::{Core, chat::Resume, error::CoreError, presence::SessionId, store::MAX_PAGE};

/// Events buffered towards the edge before subscriptions wait for it.
const OUT_BUFFER: usize = 1024;

type Out = mpsc::Sender<Result<pb::EdgeEvent, Status>>;

/// Starts serving a session; returns the stream of events towards the edge.
pub(crate) fn start(
    core: Arc<Core>,
    commands: Streaming<pb::EdgeCommand>,
) -> mpsc::Receiver<Result<pb::EdgeEvent, Status>> {
    let (out, events) = mpsc::channel(OUT_BUFFER);
    tokio::spawn(async move {
        let session = core.open_session();
        info!(session, "edge session opened");
        let mut subscriptions = HashMap::new();
        serve(&core, session, commands, &out, &mut subscriptions).await;
        for (_, task) in subscriptions {
            task.abort();
        }
        core.close_session(session);
        info!(session, "edge session closed");
    });
    events
}

async fn serve(
    core: &Arc<Core>,
    session: SessionId,
    mut commands: Streaming<pb::EdgeCommand>,
    out: &Out,
    subscriptions: &mut HashMap<u64, JoinHandle<()>>,
) {
    loop {
        let command = tokio::select! {
            _ = core.shutdown_token().cancelled() => return,
            _ = out.closed() => return,
            command = commands.message() => command,
        };
        let command = match command {
            Ok(Some(pb::EdgeCommand {
                command: Some(command),
            })) => command,
            Ok(Some(pb::EdgeCommand { command: None })) => {
                refuse(
                    out,
                    0,
                    CoreError::InvalidArgument("empty edge command".into()),
                )
                .await;
                continue;
            }
            Ok(None) => return,
            Err(e) => {
                debug!(session, error = %e, "edge stream broke");
                return;
            }
        };
        match command {
            Command::Subscribe(pb::EdgeSubscribe {
                subscription_id,
                request,
            }) => {
                if let Some(old) = subscriptions.remove(&subscription_id) {
                    old.abort();
                }
                let task =
                    tokio::spawn(forward(core.clone(), subscription_id, request, out.clone()));
                subscriptions.insert(subscription_id, task);
            }
            Command::Unsubscribe(pb::EdgeUnsubscribe { subscription_id }) => {
                if let Some(task) = subscriptions.remove(&subscription_id) {
                    task.abort();
                }
            }
            Command::Send(pb::EdgeSend {
                request_id,
                request,
            }) => {
                // Submitted here, in the session's order; answered when stored, while the
                // session goes on taking commands.
                let submitted = match request.map(convert::send) {
                    Some(Ok(send)) => core.submit(send).await,
                    Some(Err(e)) => Err(e),
                    None => Err(CoreError::InvalidArgument("send needs a request".into())),
                };
                match submitted {
                    Ok(stored) => {
                        let (core, out) = (core.clone(), out.clone());
                        tokio::spawn(async move {
                            let outcome = stored.await.map(|a| convert::sent(&core, &a));
                            answer(&out, request_id, outcome).await;
                        });
                    }
                    Err(e) => answer(out, request_id, Err(e)).await,
                }
            }
            Command::Presence(pb::EdgePresence {
                conversation_id,
                online,
            }) => {
                if let Err(e) = core.presence(session, conversation_id, online) {
                    refuse(out, 0, e).await;
                }
            }
            Command::Typing(request) => {
                // Nothing answers a typing event: one that is refused (an unknown admin) is
                // only logged, as the edge vouched for who types.
                let typed = match convert::typing(request) {
                    Ok(typing) => core.typing(typing).await,
                    Err(e) => Err(e),
                };
                if let Err(e) = typed {
                    tracing::debug!(error = %e, "a typing event refused");
                }
            }
            Command::AdminPresence(pb::EdgeAdminPresence { admin_id, online }) => {
                if let Err(e) = core.admin_presence(session, admin_id, online).await {
                    tracing::warn!(error = %e, "an admin's presence refused");
                }
            }
            Command::VisitorContext(request) => {
                // Answered by nothing: the edge vouches for the claims it read from a signed
                // token, and a refusal (a context out of bounds) is the host site's to fix.
                // Stored on the side, as a join is read: the next commands need not wait.
                let core = core.clone();
                tokio::spawn(async move {
                    let conversation = request.conversation_id;
                    let (verified, page) = convert::context_parts(&request);
                    if let Err(e) = core.set_visitor_context(conversation, verified, page).await {
                        tracing::warn!(conversation, error = %e, "a visitor context refused");
                    }
                });
            }
            Command::Join(join) => {
                // Read on the side: a session serves every socket of its edge, and one
                // socket's history must not hold up the next one's commands.
                let (core, out) = (core.clone(), out.clone());
                tokio::spawn(async move { joined(&core, &out, join).await });
            }
        }
        // Forget subscriptions that ended on their own (refused, or their stream failed).
        subscriptions.retain(|_, task| !task.is_finished());
    }
}

/// Runs one subscription and tags its events with the edge's id for it.
async fn forward(core: Arc<Core>, id: u64, request: Option<pb::SubscribeRequest>, out: Out) {
    let Some(request) = request else {
        refuse(
            &out,
            id,
            CoreError::InvalidArgument("subscribe needs a request".into()),
        )
        .await;
        return;
    };
    let subscription = match convert::scope(request.scope) {
        Ok(scope) => core.subscribe(scope, request.since_message_id).await,
        Err(e) => Err(e),
    };
    let mut subscription = match subscription {
        Ok(s) => s,
        Err(e) => return refuse(&out, id, e).await,
    };
    while let Some(item) = subscription.recv().await {
        let kind = match item {
            Ok(event) => Kind::Event(convert::event(&core, &event)),
            Err(e) => return refuse(&out, id, e).await,
        };
        if out
            .send(Ok(pb::EdgeEvent {
                subscription_id: id,
                kind: Some(kind),
            }))
            .await
            .is_err()
        {
            return;
        }
    }
}

/// Answers an `EdgeJoin` with the history the socket is shown first.
async fn joined(core: &Core, out: &Out, join: pb::EdgeJoin) {
    let resume = join.since_message_id.map(|since| Resume {
        since,
        catch_up: convert::limit(join.catch_up, MAX_PAGE),
    });
    let history = core
        .join_history(
            join.conversation_id,
            join.up_to_message_id,
            convert::limit(join.recent, 20),
            resume,
        )
        .await;
    let outcome = match history {
        Ok((messages, has_more)) => Joined::History(pb::EdgeHistory {
            messages: messages.iter().map(|m| convert::message(core, m)).collect(),
            has_more,
            typing_preview: core.typing_preview(),
        }),
        Err(e) => {
            debug!(request_id = join.request_id, error = %e, "edge join refused");
            Joined::Error(error(&e))
        }
    };
    let _ = out
        .send(Ok(pb::EdgeEvent {
            subscription_id: 0,
            kind: Some(Kind::Joined(pb::EdgeJoined {
                request_id: join.request_id,
                outcome: Some(outcome),
            })),
        }))
        .await;
}

/// Answers an `EdgeSend`.
async fn answer(out: &Out, request_id: u64, outcome: Result<pb::SendMessageResponse, CoreError>) {
    let outcome = match outcome {
        Ok(sent) => {
            let message = sent.message.as_ref().map(|m| m.id);
            tracing::debug!(request_id, ?message, "edge send answered");
            Outcome::Sent(sent)
        }
        Err(e) => {
            tracing::debug!(request_id, error = %e, "edge send refused");
            Outcome::Error(error(&e))
        }
    };
    let _ = out
        .send(Ok(pb::EdgeEvent {
            subscription_id: 0,
            kind: Some(Kind::SendResult(pb::EdgeSendResult {
                request_id,
                outcome: Some(outcome),
            })),
        }))
        .await;
}

fn error(e: &CoreError) -> pb::EdgeSubscriptionError {
    pb::EdgeSubscriptionError {
        code: code(e) as i32,
        message: e.to_string(),
        reason: e.reason().to_owned(),
    }
}

async fn refuse(out: &Out, subscription_id: u64, e: CoreError) {
    let error = error(&e);
    let _ = out
        .send(Ok(pb::EdgeEvent {
            subscription_id,
            kind: Some(Kind::Error(error)),
        }))
        .await;
}
