//! An agent: executor processes, sandboxes, the executor HTTP API and status updates.
//!
//! The agent's decisions live in a state machine with no IO (`core::AgentCore`, with the
//! status-update manager [`updates::StatusUpdateManager`] inside). This module is its driver:
//! one task owns the core and feeds it the master's messages, executor calls, process events
//! and timers, and carries out the actions it returns (processes, streams, messages).
//!
//! What it does, as the Mesos agent does:
//! * launches executors in sandboxes laid out as Mesos's (`runs/<container>`, `runs/latest`),
//!   after fetching `CommandInfo.uris` (local, `file://`, `http(s)://`/`ftp://` via `curl`;
//!   archives extracted with `tar`/`unzip`), with exactly the documented environment, output
//!   in `stdout`/`stderr`, each in its own process group. Command tasks get a synthesized
//!   executor running [`AgentConfig::command_executor`]; DEFAULT executors (task groups) run
//!   the same program;
//! * serves the executor API (`/api/v1/executor`, `/slave(1)/api/v1/executor`): SUBSCRIBE
//!   streams (JSON or protobuf) with LAUNCH/LAUNCH_GROUP of queued tasks, UPDATE with
//!   ACKNOWLEDGED, MESSAGE, HEARTBEAT; re-SUBSCRIBE replays unacknowledged updates;
//! * relays status updates reliably (one in flight per task, retries doubling, resend on
//!   framework update) and generates its own (killed during launch, executor terminated,
//!   registration timeout, launch failure);
//! * serves `/state`, `/health`, `/version`, `/flags`, `/files/*`, `/monitor/statistics`,
//!   `/containers`, `/metrics/snapshot` and the read calls of the v1 operator API.
//!
//! * checkpoints the executors of checkpointing frameworks (`FrameworkInfo.checkpoint`) under
//!   `<work_dir>/meta` (module `checkpoint`), and with [`AgentConfig::recover`] resumes them after
//!   a restart: their processes keep running while the agent is down ([`AgentHandle::stop`]),
//!   they re-subscribe within `executor_reregistration_timeout` or are killed (their tasks
//!   TASK_LOST, TASK_GONE for partition-aware frameworks), the isolators' watch loops resume,
//!   unacknowledged updates are resent and the agent re-registers with the master.
//!
//! Not (yet): running executors as another user (`--switch_user`), container images and
//! isolation, the fetcher cache, container attach/exec calls, executor authentication.

mod checkpoint;
mod core;
mod endpoints;
mod executor_api;
mod launcher;
mod modules;
mod operator;
pub mod sandbox;
pub mod updates;

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use mesokit_hooks::agent::CommandModules;
use mesokit_proto::v1::executor::{Event, event};
use mesokit_proto::v1::{self, AgentId, AgentInfo, CommandInfo, task_status};
use tokio::sync::{mpsc, oneshot};

use self::core::{Action, AgentCore, CallReply, Launch, Timer};
pub use self::core::{command_executor_info, executor_environment};
use crate::http::Media;
use crate::messages::{ToAgent, ToMaster};

/// How an agent is set up. [`AgentConfig::new`] gives Mesos's defaults.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// The agent's id (given by the master in one process).
    pub id: AgentId,
    /// Hostname reported in `AgentInfo` and `/state`.
    pub hostname: String,
    /// The address executors reach the agent on.
    pub ip: Ipv4Addr,
    /// The port of the (already bound) listener.
    pub port: u16,
    /// Total resources.
    pub resources: Vec<v1::Resource>,
    /// Attributes.
    pub attributes: Vec<v1::Attribute>,
    /// Sandboxes go under `<work_dir>/slaves/<agent_id>/frameworks/<fid>/executors/<eid>/runs/<container_id>`.
    pub work_dir: PathBuf,
    /// argv of the command executor, e.g. `["/path/to/mesokit", "executor"]`.
    pub command_executor: Vec<String>,
    /// Time an executor has to SUBSCRIBE (1 min).
    pub executor_registration_timeout: Duration,
    /// Time between SHUTDOWN and killing the executor's process group (5 s), unless
    /// `ExecutorInfo.shutdown_grace_period` says otherwise.
    pub executor_shutdown_grace: Duration,
    /// First status-update retry (10 s).
    pub status_retry_initial: Duration,
    /// Longest status-update retry interval (10 min).
    pub status_retry_max: Duration,
    /// `MESOS_SUBSCRIPTION_BACKOFF_MAX` for checkpointing frameworks (2 s).
    pub executor_reregistration_timeout: Duration,
    /// `MESOS_RECOVERY_TIMEOUT` for checkpointing frameworks (15 min).
    pub recovery_timeout: Duration,
    /// HEARTBEAT events on executor streams (30 min).
    pub executor_heartbeat_interval: Duration,
    /// Criteo command modules (`--modules`, `--hooks`, `--isolation`); `None`: no hooks, no
    /// isolators beyond the built-in behaviour.
    pub modules: Option<Arc<CommandModules>>,
    /// Start by recovering what an earlier run of this agent (same `id` and `work_dir`)
    /// checkpointed, and re-register with the master ([`ToMaster::AgentReregistered`]).
    /// Off: a fresh agent (the isolators' leftover containers are cleaned up).
    pub recover: bool,
}

impl AgentConfig {
    /// A configuration with Mesos's defaults and no resources or attributes.
    pub fn new(
        id: AgentId,
        hostname: impl Into<String>,
        ip: Ipv4Addr,
        port: u16,
        work_dir: impl Into<PathBuf>,
        command_executor: Vec<String>,
    ) -> Self {
        AgentConfig {
            id,
            hostname: hostname.into(),
            ip,
            port,
            resources: Vec::new(),
            attributes: Vec::new(),
            work_dir: work_dir.into(),
            command_executor,
            executor_registration_timeout: Duration::from_secs(60),
            executor_shutdown_grace: Duration::from_secs(5),
            status_retry_initial: Duration::from_secs(10),
            status_retry_max: Duration::from_secs(600),
            executor_reregistration_timeout: Duration::from_secs(2),
            recovery_timeout: Duration::from_secs(15 * 60),
            executor_heartbeat_interval: Duration::from_secs(30 * 60),
            modules: None,
            recover: false,
        }
    }

    /// `AgentInfo` as executors and the master see it.
    pub fn agent_info(&self) -> AgentInfo {
        AgentInfo {
            hostname: self.hostname.clone(),
            port: Some(i32::from(self.port)),
            resources: self.resources.clone(),
            attributes: self.attributes.clone(),
            id: Some(self.id.clone()),
            domain: None,
        }
    }

    /// `slave(1)@ip:port`.
    pub fn pid(&self) -> String {
        format!("slave(1)@{}:{}", self.ip, self.port)
    }
}

/// A running agent. Cheap to clone.
#[derive(Debug, Clone)]
pub struct AgentHandle {
    inner: Arc<HandleInner>,
}

#[derive(Debug)]
struct HandleInner {
    id: AgentId,
    endpoint: SocketAddr,
    tx: mpsc::UnboundedSender<Input>,
    server: Mutex<Option<tokio::task::JoinHandle<()>>>,
    groups: ProcessGroups,
}

/// Process groups of the live executors, shared with the handle so that they can be killed
/// without the actor (e.g. from a test's or the cluster's drop guard).
type ProcessGroups = Arc<Mutex<BTreeSet<u32>>>;

impl AgentHandle {
    /// The agent's id.
    pub fn id(&self) -> &AgentId {
        &self.inner.id
    }

    /// `ip:port` of the agent's HTTP listener.
    pub fn endpoint(&self) -> SocketAddr {
        self.inner.endpoint
    }

    /// Delivers a message from the master (never blocks; dropped if the agent has stopped).
    pub fn send(&self, msg: ToAgent) {
        let _ = self.inner.tx.send(Input::Master(msg));
    }

    /// The agent's `/slave(1)/state` JSON (empty if the agent has stopped).
    pub async fn state_json(&self) -> Bytes {
        let (tx, rx) = oneshot::channel();
        let q: Query = Box::new(move |a: &AgentCore| {
            let _ = tx.send(Bytes::from(endpoints::state_json(a)));
        });
        if self.inner.tx.send(Input::Query(q)).is_err() {
            return Bytes::new();
        }
        rx.await.unwrap_or_default()
    }

    /// Kills every live executor's process group at once, without waiting for the agent (for
    /// drop guards; [`AgentHandle::shutdown`] is the orderly way).
    pub fn kill_executors_now(&self) {
        for pgid in self.inner.groups.lock().expect("poisoned").iter() {
            launcher::kill_tree(*pgid);
        }
    }

    /// Kills every executor's process group, closes their streams and stops serving.
    pub async fn shutdown(&self) {
        let (tx, rx) = oneshot::channel();
        if self.inner.tx.send(Input::Shutdown(tx)).is_ok() {
            let _ = rx.await;
        }
        self.stop_serving().await;
    }

    /// Stops the agent as if its process ended, for a restart with [`AgentConfig::recover`]:
    /// the executors of checkpointing frameworks keep running (their streams end, so they
    /// start re-subscribing), those of other frameworks are killed; the isolators' watch loops
    /// stop; the master is told the agent is gone ([`ToMaster::AgentDisconnected`]); the
    /// listener and every connection close, so the port can be bound again.
    pub async fn stop(&self) {
        let (tx, rx) = oneshot::channel();
        if self.inner.tx.send(Input::Stop(tx)).is_ok() {
            let _ = rx.await;
        }
        self.stop_serving().await;
    }

    async fn stop_serving(&self) {
        let server = self.inner.server.lock().expect("poisoned").take();
        if let Some(server) = server {
            server.abort();
            // Once it has ended, the listener and the connections are closed.
            let _ = server.await;
        }
    }
}

/// Starts the agent actor and its HTTP server on `listener`. Agent -> master messages go to
/// `to_master`.
pub fn start(
    config: AgentConfig,
    listener: tokio::net::TcpListener,
    to_master: mpsc::UnboundedSender<ToMaster>,
) -> AgentHandle {
    let (tx, rx) = mpsc::unbounded_channel();
    let endpoint = listener
        .local_addr()
        .unwrap_or_else(|_| SocketAddr::from((config.ip, config.port)));
    let id = config.id.clone();
    let config = Arc::new(config);
    let groups = ProcessGroups::default();
    let mut core = AgentCore::new(config.clone(), Instant::now(), now_secs());
    let decorator = config
        .modules
        .clone()
        .filter(|m| m.has(mesokit_hooks::modules::Method::TaskStatusDecorator))
        .map(|m| {
            core.decorate_agent_updates();
            spawn_status_decorator(m, tx.clone())
        });
    let agent_dir = checkpoint::agent_dir(&config.work_dir, &config.id.value);
    let mut driver = Driver {
        core,
        to_master,
        tx: tx.clone(),
        groups: groups.clone(),
        streams: HashMap::new(),
        opened: None,
        decorating: false,
        backlog: VecDeque::new(),
        detached: Arc::new(AtomicBool::new(false)),
        agent_dir,
        written: HashMap::new(),
        decorator,
    };
    driver.recover();
    tokio::spawn(driver.run(rx));
    let ctx = Arc::new(endpoints::Ctx {
        tx: tx.clone(),
        config,
    });
    let server = crate::http::serve(listener, move |req| {
        let ctx = ctx.clone();
        async move { endpoints::route(ctx, req).await }
    });
    AgentHandle {
        inner: Arc::new(HandleInner {
            id,
            endpoint,
            tx,
            server: Mutex::new(Some(server)),
            groups,
        }),
    }
}

/// A read of the agent's state, run inside the driver.
type Query = Box<dyn FnOnce(&AgentCore) + Send>;

/// Everything the driver reacts to.
#[allow(clippy::large_enum_variant)]
enum Input {
    Master(ToAgent),
    Call(
        executor_api::ExecutorCall,
        oneshot::Sender<crate::http::Response>,
    ),
    Launched {
        framework_id: String,
        executor_id: String,
        container_id: String,
        result: Result<Option<u32>, String>,
    },
    Exited {
        framework_id: String,
        executor_id: String,
        container_id: String,
        status: i32,
    },
    Timer(Timer),
    Query(Query),
    Shutdown(oneshot::Sender<()>),
    /// [`AgentHandle::stop`].
    Stop(oneshot::Sender<()>),
    /// An agent-made update back from the task status decorator hooks.
    AgentStatus {
        framework_id: v1::FrameworkId,
        status: v1::TaskStatus,
    },
    /// A master message after the label decorator hooks ran on its tasks.
    Decorated(ToAgent),
    /// The container must be destroyed: an isolator's watch reported a limitation, or its
    /// `isolate` failed. Its open tasks fail with `reason` and `message`.
    Limited {
        framework_id: String,
        executor_id: String,
        container_id: String,
        reason: task_status::Reason,
        message: String,
    },
}

#[derive(Debug)]
struct EventStream {
    tx: mpsc::Sender<Bytes>,
    media: Media,
}

/// Owns the core and does its IO.
struct Driver {
    core: AgentCore,
    to_master: mpsc::UnboundedSender<ToMaster>,
    tx: mpsc::UnboundedSender<Input>,
    groups: ProcessGroups,
    /// Open executor streams by (framework id, executor id).
    streams: HashMap<(String, String), EventStream>,
    /// The body of the SUBSCRIBE being answered.
    opened: Option<mpsc::Receiver<Bytes>>,
    /// A master message is with the label decorator hooks; later ones wait in `backlog`
    /// so that the core sees them in order (Mesos runs the hooks synchronously).
    decorating: bool,
    backlog: VecDeque<ToAgent>,
    /// Set when the agent stops for a restart: the tasks that wait for executor processes
    /// leave them (and their isolators) to the next run.
    detached: Arc<AtomicBool>,
    /// `<work_dir>/meta/slaves/<agent id>`.
    agent_dir: PathBuf,
    /// The checkpoint files written, by framework id then (executor id, container id), with
    /// their content.
    written: HashMap<String, HashMap<(String, String), String>>,
    /// The task status decorator queue for agent-made updates (in order, one at a time).
    decorator: Option<mpsc::UnboundedSender<(v1::FrameworkId, v1::TaskStatus)>>,
}

impl Driver {
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Input>) {
        loop {
            let deadline = self.core.poll_timeout();
            let timer = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(tokio::time::Instant::from_std(d)).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                input = rx.recv() => match input {
                    None => break,
                    Some(Input::Shutdown(done)) => {
                        for pgid in self.core.live_process_groups() {
                            launcher::kill_tree(pgid);
                        }
                        self.streams.clear();
                        let _ = done.send(());
                        break;
                    }
                    Some(Input::Stop(done)) => {
                        self.stop();
                        let _ = done.send(());
                        break;
                    }
                    Some(input) => self.handle(input),
                },
                () = timer => self.core.handle_timeout(Instant::now()),
            }
            self.perform();
            self.checkpoint();
        }
    }

    /// [`AgentHandle::stop`]: what a Mesos agent leaves behind when its process ends, with
    /// checkpointing.
    fn stop(&mut self) {
        self.detached.store(true, Ordering::SeqCst);
        for pgid in self.core.uncheckpointed_process_groups() {
            launcher::kill_tree(pgid);
        }
        self.checkpoint();
        if let Some(m) = &self.core.config.modules {
            m.stop_watches();
        }
        self.streams.clear();
        let _ = self.to_master.send(ToMaster::AgentDisconnected {
            agent_id: self.core.config.id.clone(),
        });
        tracing::info!(agent_id = %self.core.config.id.value, "agent stopped; checkpointed executors keep running");
    }

    /// Writes the checkpoint files that may have changed (only when their content did) and
    /// removes those no longer needed. A write error is logged (the next change retries it).
    fn checkpoint(&mut self) {
        for (fid, eid) in self.core.take_dirty() {
            self.checkpoint_executor(&fid, eid.as_deref());
        }
    }

    fn checkpoint_executor(&mut self, fid: &str, eid: Option<&str>) {
        let records = self.core.checkpoint_records(fid, eid);
        if records.is_empty() && !self.written.contains_key(fid) {
            return;
        }
        let written = self.written.entry(fid.to_owned()).or_default();
        let mut keep = std::collections::HashSet::new();
        for ((e, c), record) in records {
            let text = record.encode();
            let key = (e, c);
            if written.get(&key) != Some(&text) {
                let dir = checkpoint::run_dir(&self.agent_dir, fid, &key.0, &key.1);
                match checkpoint::write(&dir, &text) {
                    Ok(()) => {
                        written.insert(key.clone(), text);
                    }
                    Err(err) => {
                        tracing::warn!(framework_id = fid, executor_id = %key.0, error = %err, "cannot write the executor's checkpoint")
                    }
                }
            }
            keep.insert(key);
        }
        let gone: Vec<(String, String)> = written
            .keys()
            .filter(|k| eid.is_none_or(|id| k.0 == id) && !keep.contains(*k))
            .cloned()
            .collect();
        for key in gone {
            checkpoint::remove(&checkpoint::run_dir(&self.agent_dir, fid, &key.0, &key.1));
            written.remove(&key);
        }
        if written.is_empty() {
            self.written.remove(fid);
        }
    }

    /// At start with [`AgentConfig::recover`]: reads the checkpoints back into the core,
    /// re-registers with the master, watches the recovered executors' processes and resumes
    /// their isolators; the isolators' other containers are orphans and are cleaned up.
    fn recover(&mut self) {
        let config = self.core.config.clone();
        let mut records = Vec::new();
        if config.recover {
            for r in checkpoint::read_all(&self.agent_dir) {
                match r {
                    Ok(r) => records.push(r),
                    Err(e) => tracing::warn!("cannot recover an executor: {e}"),
                }
            }
        }
        let live: std::collections::BTreeSet<String> = records
            .iter()
            .filter(|r| r.live)
            .map(|r| r.container_id.clone())
            .collect();
        if let Some(m) = config.modules.clone() {
            modules::recover(m, &live);
        }
        if !config.recover {
            return;
        }
        self.core.recover(Instant::now(), records);
        let _ = self.to_master.send(ToMaster::AgentReregistered {
            agent_id: config.id.clone(),
            tasks: self.core.known_tasks(),
        });
        for (f, e, c, pid) in self.core.recovered_executors() {
            if let Some(pid) = pid {
                self.groups.lock().expect("poisoned").insert(pid);
            }
            if let (Some(m), Some(_)) = (&config.modules, pid) {
                // Mesos calls `watch` again for every recovered container.
                let (tx, f, e, c2) = (self.tx.clone(), f.clone(), e.clone(), c.clone());
                m.watch(
                    &v1::ContainerId {
                        value: c.clone(),
                        parent: None,
                    },
                    move |limited| {
                        let _ = tx.send(Input::Limited {
                            framework_id: f,
                            executor_id: e,
                            container_id: c2,
                            reason: limited.limitation.reason_or_default(),
                            message: limited.limitation.message_or_default(),
                        });
                    },
                );
            }
            self.monitor(f, e, c, pid);
        }
        self.perform();
        self.checkpoint();
    }

    /// Waits for a recovered executor's process to end (it is not our child any more: its
    /// pid is polled), then destroys the container as `launch` does and reports `Exited`.
    fn monitor(&self, f: String, e: String, c: String, pid: Option<u32>) {
        let (tx, groups, detached) = (self.tx.clone(), self.groups.clone(), self.detached.clone());
        let modules = self.core.config.modules.clone();
        tokio::spawn(async move {
            if let Some(pid) = pid {
                while launcher::alive(pid) {
                    if detached.load(Ordering::SeqCst) {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                groups.lock().expect("poisoned").remove(&pid);
                launcher::kill_group(pid, launcher::SIGKILL);
            }
            if detached.load(Ordering::SeqCst) {
                return;
            }
            if let Some(m) = &modules {
                let id = v1::ContainerId {
                    value: c.clone(),
                    parent: None,
                };
                modules::cleanup(m, &id).await;
            }
            // Not our child: its wait status is unknown.
            let _ = tx.send(Input::Exited {
                framework_id: f,
                executor_id: e,
                container_id: c,
                status: -1,
            });
        });
    }

    fn handle(&mut self, input: Input) {
        let now = Instant::now();
        match input {
            Input::Master(msg) => {
                if self.decorating {
                    self.backlog.push_back(msg);
                } else {
                    self.master(now, msg);
                }
            }
            Input::Decorated(msg) => {
                self.decorating = false;
                self.core.handle_master(now, msg);
                while !self.decorating {
                    let Some(msg) = self.backlog.pop_front() else {
                        break;
                    };
                    self.master(now, msg);
                }
            }
            Input::Limited {
                framework_id,
                executor_id,
                container_id,
                reason,
                message,
            } => self.core.limited(
                now,
                &framework_id,
                &executor_id,
                &container_id,
                reason,
                message,
            ),
            Input::Call(call, reply) => {
                let r = self.core.executor_call(now, call);
                self.perform();
                let resp = match r {
                    CallReply::Accepted => crate::http::empty(http::StatusCode::ACCEPTED),
                    CallReply::BadRequest(m) => crate::http::text(http::StatusCode::BAD_REQUEST, m),
                    CallReply::Forbidden(m) => crate::http::text(http::StatusCode::FORBIDDEN, m),
                    CallReply::Stream(media) => match self.opened.take() {
                        Some(rx) => crate::http::stream(media, rx),
                        None => crate::http::text(
                            http::StatusCode::INTERNAL_SERVER_ERROR,
                            "no stream was opened",
                        ),
                    },
                };
                let _ = reply.send(resp);
            }
            Input::Launched {
                framework_id,
                executor_id,
                container_id,
                result,
            } => {
                if let Ok(Some(pid)) = result {
                    self.groups.lock().expect("poisoned").insert(pid);
                } else if result.is_err() {
                    self.remove_executor_hook(&framework_id, &executor_id);
                }
                self.core
                    .launched(now, &framework_id, &executor_id, &container_id, result);
            }
            Input::Exited {
                framework_id,
                executor_id,
                container_id,
                status,
            } => {
                self.remove_executor_hook(&framework_id, &executor_id);
                self.core
                    .exited(now, &framework_id, &executor_id, &container_id, status)
            }
            Input::Timer(t) => self.core.timer(now, t),
            Input::Query(q) => q(&self.core),
            Input::AgentStatus {
                framework_id,
                status,
            } => self.core.decorated_update(now, &framework_id, status),
            Input::Shutdown(_) | Input::Stop(_) => unreachable!("handled in run"),
        }
    }

    /// A master message: straight to the core, or first through the label decorator hooks.
    fn master(&mut self, now: Instant, msg: ToAgent) {
        let modules = self.core.config.modules.clone();
        match modules {
            Some(m) if modules::decorates(&m, &msg) => {
                self.decorating = true;
                let config = self.core.config.clone();
                let tx = self.tx.clone();
                tokio::spawn(async move {
                    let msg = modules::decorate_labels(&m, &config, msg).await;
                    let _ = tx.send(Input::Decorated(msg));
                });
            }
            _ => self.core.handle_master(now, msg),
        }
    }

    /// Runs the remove-executor hooks (in the background; errors are logged).
    fn remove_executor_hook(&self, fid: &str, eid: &str) {
        let Some(m) = self.core.config.modules.clone() else {
            return;
        };
        if !m.has(mesokit_hooks::modules::Method::RemoveExecutorHook) {
            return;
        }
        if let Some((framework, executor)) = self.core.executor_infos(fid, eid) {
            tokio::spawn(async move { m.remove_executor(&framework, &executor).await });
        }
    }

    /// Carries out the core's actions.
    fn perform(&mut self) {
        while let Some(action) = self.core.poll_action() {
            match action {
                Action::ToMaster(m) => {
                    let _ = self.to_master.send(m);
                }
                Action::Launch(l) => self.launch(*l),
                Action::Kill { pgid } => launcher::kill_tree(pgid),
                Action::KillGroup { pgid } => {
                    launcher::kill_group(pgid, launcher::SIGKILL);
                }
                Action::OpenStream {
                    framework_id,
                    executor_id,
                    media,
                } => {
                    let (tx, rx) = mpsc::channel(1024);
                    let stream = EventStream { tx, media };
                    spawn_heartbeats(&stream, self.core.config.executor_heartbeat_interval);
                    self.streams.insert((framework_id, executor_id), stream);
                    self.opened = Some(rx);
                }
                Action::Event {
                    framework_id,
                    executor_id,
                    event,
                } => {
                    if let Some(s) = self.streams.get(&(framework_id, executor_id)) {
                        match s.tx.try_send(encode_event(&event, s.media)) {
                            Ok(()) => {}
                            // The executor is gone (e.g. it exited after its last update):
                            // nothing is waiting for the event.
                            Err(mpsc::error::TrySendError::Closed(_)) => {
                                tracing::debug!("executor stream closed; event dropped")
                            }
                            Err(mpsc::error::TrySendError::Full(_)) => {
                                tracing::warn!("executor stream full; event dropped")
                            }
                        }
                    }
                }
                Action::CloseStream {
                    framework_id,
                    executor_id,
                } => {
                    self.streams.remove(&(framework_id, executor_id));
                }
                Action::DecorateStatus {
                    framework_id,
                    status,
                } => match &self.decorator {
                    Some(d) => {
                        let _ = d.send((framework_id, *status));
                    }
                    None => self
                        .core
                        .decorated_update(Instant::now(), &framework_id, *status),
                },
                Action::Timer { after, timer } => {
                    let tx = self.tx.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(after).await;
                        let _ = tx.send(Input::Timer(timer));
                    });
                }
            }
        }
    }

    /// Sandbox, fetch (blocking, off the driver), command modules (environment decorators,
    /// isolator prepare and pre-exec commands), spawn, isolate and watch; reports `Launched`,
    /// then, after the isolators' cleanup, `Exited`.
    fn launch(&mut self, l: Launch) {
        let config = self.core.config.clone();
        let tx = self.tx.clone();
        let groups = self.groups.clone();
        let detached = self.detached.clone();
        tokio::spawn(async move {
            let Launch {
                framework_id: f,
                executor_id: e,
                container_id: c,
                command,
                mut env,
                directory,
                executor,
                task,
                resources,
                user,
            } = l;
            let modules = config.modules.clone();
            let container_id = v1::ContainerId {
                value: c.clone(),
                parent: None,
            };
            let prepared = {
                let (f, e, c, cmd) = (f.clone(), e.clone(), c.clone(), command.clone());
                let config = config.clone();
                tokio::task::spawn_blocking(move || prepare(&config, &f, &e, &c, cmd.as_ref()))
                    .await
                    .unwrap_or_else(|e| Err(format!("Failed to prepare the sandbox: {e}")))
            };
            let prepared = match (prepared, &modules) {
                (Ok(dir), Some(m)) => {
                    let container = modules::Container {
                        id: &container_id,
                        executor: &executor,
                        task,
                        resources,
                        user,
                        directory: &dir,
                    };
                    modules::before_spawn(m, container, &mut env)
                        .await
                        .map(|cwd| (dir, cwd))
                }
                (Ok(dir), None) => Ok((dir.clone(), dir)),
                (Err(e), _) => Err(e),
            };
            let spawned = prepared.and_then(|(dir, cwd)| {
                debug_assert_eq!(dir, directory);
                let cmd = command.expect("checked by prepare");
                launcher::spawn(&cmd, &env, &dir, &cwd)
                    .map_err(|e| format!("Failed to launch the executor: {e}"))
            });
            let fail = |message: String| Input::Launched {
                framework_id: f.clone(),
                executor_id: e.clone(),
                container_id: c.clone(),
                result: Err(message),
            };
            let mut child = match spawned {
                Ok(child) => child,
                Err(message) => {
                    if let Some(m) = &modules {
                        modules::cleanup(m, &container_id).await;
                    }
                    let _ = tx.send(fail(message));
                    return;
                }
            };
            let pid = child.id();
            if let (Some(m), Some(pid)) = (&modules, pid) {
                match m.isolate(&container_id, pid).await {
                    Err(message) => {
                        // The executor already runs (and may have been given its tasks):
                        // destroy the container the usual way, so that every open task fails
                        // with this reason once it has exited.
                        let _ = tx.send(Input::Limited {
                            framework_id: f.clone(),
                            executor_id: e.clone(),
                            container_id: c.clone(),
                            reason: task_status::Reason::ContainerLaunchFailed,
                            message,
                        });
                        launcher::kill_tree(pid);
                    }
                    Ok(()) => {
                        let (tx, f, e, c) = (tx.clone(), f.clone(), e.clone(), c.clone());
                        m.watch(&container_id, move |limited| {
                            let _ = tx.send(Input::Limited {
                                framework_id: f,
                                executor_id: e,
                                container_id: c,
                                reason: limited.limitation.reason_or_default(),
                                message: limited.limitation.message_or_default(),
                            });
                        });
                    }
                }
            }
            let launched = Input::Launched {
                framework_id: f.clone(),
                executor_id: e.clone(),
                container_id: c.clone(),
                result: Ok(pid),
            };
            if tx.send(launched).is_err()
                && let Some(pid) = pid
            {
                // The agent stopped meanwhile.
                launcher::kill_tree(pid);
            }
            use std::os::unix::process::ExitStatusExt;
            let status = match child.wait().await {
                Ok(s) => s.into_raw(),
                Err(_) => -1,
            };
            if let Some(pid) = pid {
                groups.lock().expect("poisoned").remove(&pid);
            }
            if detached.load(Ordering::SeqCst) {
                // The agent stopped for a restart: the next run destroys the container.
                return;
            }
            if let Some(m) = &modules {
                // As Mesos destroys a container: what is left of the group goes first.
                if let Some(pid) = pid {
                    launcher::kill_group(pid, launcher::SIGKILL);
                }
                modules::cleanup(m, &container_id).await;
            }
            let _ = tx.send(Input::Exited {
                framework_id: f,
                executor_id: e,
                container_id: c,
                status,
            });
        });
    }
}

/// Runs the task status decorator hooks on agent-made updates, one at a time and in order,
/// and hands each back to the driver.
fn spawn_status_decorator(
    m: Arc<CommandModules>,
    tx: mpsc::UnboundedSender<Input>,
) -> mpsc::UnboundedSender<(v1::FrameworkId, v1::TaskStatus)> {
    let (dtx, mut drx) = mpsc::unbounded_channel::<(v1::FrameworkId, v1::TaskStatus)>();
    tokio::spawn(async move {
        while let Some((framework_id, mut status)) = drx.recv().await {
            m.decorate_status(&framework_id, &mut status).await;
            if tx
                .send(Input::AgentStatus {
                    framework_id,
                    status,
                })
                .is_err()
            {
                return;
            }
        }
    });
    dtx
}

/// Seconds since the epoch.
pub(crate) fn now_secs() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

fn encode_event(event: &Event, media: Media) -> Bytes {
    let body = match media {
        Media::Json => mesokit_proto::json::encode(event),
        Media::Protobuf => mesokit_proto::Message::encode_to_vec(event),
    };
    Bytes::from(mesokit_proto::recordio::frame(&body))
}

/// Creates the sandbox and fetches the URIs (blocking). Returns the sandbox.
fn prepare(
    config: &AgentConfig,
    fid: &str,
    eid: &str,
    cid: &str,
    command: Option<&CommandInfo>,
) -> Result<PathBuf, String> {
    let dir = sandbox::create(&config.work_dir, &config.id.value, fid, eid, cid)
        .map_err(|e| format!("Failed to create the sandbox: {e}"))?;
    let cmd =
        command.ok_or("ExecutorInfo has no command (the default executor is not supported)")?;
    for uri in &cmd.uris {
        sandbox::fetch(uri, &dir).map_err(|e| format!("Failed to fetch URIs: {e}"))?;
    }
    Ok(dir)
}

/// Sends HEARTBEAT events on `stream` every `every` until the stream is replaced or closed
/// (the task holds only a weak sender, so it never keeps a stream open).
fn spawn_heartbeats(stream: &EventStream, every: Duration) {
    let weak = stream.tx.downgrade();
    let beat = encode_event(
        &Event {
            r#type: Some(event::Type::Heartbeat as i32),
            ..Default::default()
        },
        stream.media,
    );
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(every).await;
            let Some(tx) = weak.upgrade() else { return };
            if tx.try_send(beat.clone()).is_err() && tx.is_closed() {
                return;
            }
        }
    });
}
