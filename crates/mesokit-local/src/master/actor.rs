//! Drives the [`Master`] state machine: one task owns it, feeds it requests from the HTTP front
//! and messages from the agents, ticks it on time, and carries out its outputs (events onto
//! subscription streams, messages to agents).

use std::collections::HashMap;

use bytes::Bytes;
use mesokit_proto::v1::scheduler;
use mesokit_proto::{Message, json, recordio};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::{CallError, CallOk, Master, Output, StreamId, Subscribed};
use crate::agent::AgentHandle;
use crate::http::Media;
use crate::messages::ToMaster;

/// Work the HTTP front runs on the master in its task (reads of its state, operator calls).
type Job = Box<dyn FnOnce(&mut Master, std::time::Instant) + Send>;

/// A SUBSCRIBE accepted by the master: the stream's id, its event records, and a guard to keep
/// with the response body (dropping it tells the master the stream is gone).
pub(crate) type Subscription = (Subscribed, mpsc::UnboundedReceiver<Bytes>, StreamGuard);

/// Reports a subscription stream as closed when dropped (the response body ended or the
/// client disconnected). The master's own copy of the sender is the only one, so closing the
/// stream from the master's side (`CloseStream`) really ends the response.
#[derive(Debug)]
pub(crate) struct StreamGuard {
    id: StreamId,
    tx: mpsc::UnboundedSender<Command>,
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        let _ = self.tx.send(Command::StreamClosed(self.id));
    }
}

pub(crate) enum Command {
    Subscribe {
        call: Box<scheduler::Call>,
        media: Media,
        reply: oneshot::Sender<Result<Subscription, CallError>>,
    },
    Call {
        stream_id: Option<String>,
        call: Box<scheduler::Call>,
        reply: oneshot::Sender<Result<CallOk, CallError>>,
    },
    StreamClosed(StreamId),
    With(Job),
    /// A restarted agent's new handle (same id): the master's messages go to it from now on.
    SetAgent(AgentHandle),
}

/// The handle the HTTP front uses to talk to the master task.
#[derive(Debug, Clone)]
pub(crate) struct MasterHandle {
    tx: mpsc::UnboundedSender<Command>,
    /// The hooks of `--modules`, for the master's hook points (launch-task decorators).
    pub(crate) modules: Option<std::sync::Arc<mesokit_hooks::agent::CommandModules>>,
}

impl MasterHandle {
    async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Command) -> Option<T> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(make(reply)).ok()?;
        rx.await.ok()
    }

    pub(crate) async fn subscribe(
        &self,
        call: scheduler::Call,
        media: Media,
    ) -> Result<Subscription, CallError> {
        self.ask(|reply| Command::Subscribe {
            call: Box::new(call),
            media,
            reply,
        })
        .await
        .unwrap_or_else(|| Err(gone()))
    }

    pub(crate) async fn call(
        &self,
        stream_id: Option<String>,
        call: scheduler::Call,
    ) -> Result<CallOk, CallError> {
        self.ask(|reply| Command::Call {
            stream_id,
            call: Box::new(call),
            reply,
        })
        .await
        .unwrap_or_else(|| Err(gone()))
    }

    /// Runs `f` on the master in its task and returns what it returns (`None` if the master
    /// is gone). Outputs `f` causes (a TEARDOWN's events, say) are carried out as usual.
    /// Routes the master's messages for `agent`'s id to this (restarted) agent.
    pub(crate) fn set_agent(&self, agent: AgentHandle) {
        let _ = self.tx.send(Command::SetAgent(agent));
    }

    pub(crate) async fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Master, std::time::Instant) -> T + Send + 'static,
    ) -> Option<T> {
        self.ask(|reply| {
            Command::With(Box::new(move |m, now| {
                let _ = reply.send(f(m, now));
            }))
        })
        .await
    }
}

fn gone() -> CallError {
    CallError {
        status: 503,
        message: "Master is shutting down".into(),
    }
}

struct Stream {
    tx: mpsc::UnboundedSender<Bytes>,
    media: Media,
}

/// Starts the master task. `agents` receive the master's messages; `from_agents` carries theirs.
/// `modules` are the hooks of `--modules` (the master's hook points).
pub(crate) fn spawn(
    mut master: Master,
    agents: Vec<AgentHandle>,
    mut from_agents: mpsc::UnboundedReceiver<ToMaster>,
    modules: Option<std::sync::Arc<mesokit_hooks::agent::CommandModules>>,
) -> (MasterHandle, tokio::task::JoinHandle<()>) {
    let (tx, mut rx) = mpsc::unbounded_channel::<Command>();
    let handle = MasterHandle {
        tx: tx.clone(),
        modules: modules.clone(),
    };
    let mut agents: HashMap<String, AgentHandle> = agents
        .into_iter()
        .map(|a| (a.id().value.clone(), a))
        .collect();
    let task = tokio::spawn(async move {
        let mut streams: HashMap<StreamId, Stream> = HashMap::new();
        let mut next_stream: StreamId = 1;
        loop {
            let deadline = master.next_timeout().map(Instant::from_std);
            tokio::select! {
                cmd = rx.recv() => {
                    let Some(cmd) = cmd else { break };
                    let now = Instant::now().into_std();
                    match cmd {
                        Command::Subscribe { call, media, reply } => {
                            let id = next_stream;
                            next_stream += 1;
                            let (stx, srx) = mpsc::unbounded_channel();
                            // Register first: the subscribe outputs (SUBSCRIBED, HEARTBEAT) go
                            // to this stream.
                            streams.insert(id, Stream { tx: stx.clone(), media });
                            match master.subscribe(now, id, *call) {
                                Ok(sub) => {
                                    drop(stx);
                                    let guard = StreamGuard { id, tx: tx.clone() };
                                    let _ = reply.send(Ok((sub, srx, guard)));
                                }
                                Err(e) => {
                                    streams.remove(&id);
                                    let _ = reply.send(Err(e));
                                }
                            }
                        }
                        Command::Call { stream_id, call, reply } => {
                            let _ = reply.send(master.call(now, stream_id.as_deref(), *call));
                        }
                        Command::StreamClosed(id) => {
                            if streams.remove(&id).is_some() {
                                master.stream_closed(now, id);
                            }
                        }
                        Command::With(job) => job(&mut master, now),
                        Command::SetAgent(a) => {
                            agents.insert(a.id().value.clone(), a);
                        }
                    }
                }
                msg = from_agents.recv() => {
                    let Some(msg) = msg else { break };
                    master.handle_agent(Instant::now().into_std(), msg);
                }
                _ = sleep_until(deadline) => {
                    master.tick(Instant::now().into_std());
                }
            }
            while let Some(out) = master.poll_output() {
                match out {
                    Output::Event { stream, event } => {
                        if let Some(s) = streams.get(&stream) {
                            let body = match s.media {
                                Media::Json => json::encode(&event),
                                Media::Protobuf => event.encode_to_vec(),
                            };
                            if s.tx.send(Bytes::from(recordio::frame(&body))).is_err() {
                                streams.remove(&stream);
                                master.stream_closed(Instant::now().into_std(), stream);
                            }
                        }
                    }
                    Output::CloseStream { stream } => {
                        // Dropping the sender ends the chunked response.
                        streams.remove(&stream);
                    }
                    Output::Agent { agent_id, msg } => match agents.get(&agent_id.value) {
                        Some(a) => a.send(msg),
                        None => {
                            tracing::warn!(agent_id = %agent_id.value, "message for an unknown agent dropped")
                        }
                    },
                    Output::AgentLost { info } => {
                        if let Some(m) = modules.clone()
                            && m.has(mesokit_hooks::modules::Method::AgentLostHook)
                        {
                            // As Mesos: the hook's errors are logged and change nothing.
                            tokio::spawn(async move { m.agent_lost(&info).await });
                        }
                    }
                }
            }
        }
    });
    (handle, task)
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}
