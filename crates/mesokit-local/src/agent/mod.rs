//! An agent: executor processes, sandboxes, the executor HTTP API and status updates.
//!
//! One actor task owns the agent's state ([`Agent`]); the master, the HTTP front, the process
//! reapers and the timers all talk to it through one channel. The status-update manager
//! ([`updates::StatusUpdateManager`]) is a state machine with no IO; the actor feeds it time.

mod endpoints;
mod executor_api;
mod launcher;
pub mod sandbox;
pub mod updates;

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use mesokit_proto::helpers::{cpus, format_duration, is_terminal, mem, new_uuid};
use mesokit_proto::v1::executor::{Event, event};
use mesokit_proto::v1::{
    self, AgentId, AgentInfo, CommandInfo, ContainerId, ContainerStatus, DurationInfo, ExecutorId,
    ExecutorInfo, FrameworkId, FrameworkInfo, KillPolicy, TaskGroupInfo, TaskId, TaskInfo,
    TaskState, TaskStatus, framework_info, task_status,
};
use tokio::sync::{mpsc, oneshot};

use crate::http::Media;
use crate::messages::{ToAgent, ToMaster};
use updates::{Forward, Recorded, StatusUpdateManager};

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
        let q: Query = Box::new(move |a: &Agent| {
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
            launcher::kill_group(*pgid, launcher::SIGKILL);
        }
    }

    /// Kills every executor's process group, closes their streams and stops serving.
    pub async fn shutdown(&self) {
        let (tx, rx) = oneshot::channel();
        if self.inner.tx.send(Input::Shutdown(tx)).is_ok() {
            let _ = rx.await;
        }
        if let Some(server) = self.inner.server.lock().expect("poisoned").take() {
            server.abort();
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
    let agent = Agent::new(config.clone(), to_master, tx.clone(), groups.clone());
    tokio::spawn(agent.run(rx));
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

/// A read of the agent's state, run inside the actor.
type Query = Box<dyn FnOnce(&Agent) + Send>;

/// Everything the actor reacts to (moved once, so the variants' sizes do not matter).
#[allow(clippy::large_enum_variant)]
enum Input {
    Master(ToAgent),
    Call(
        executor_api::ExecutorCall,
        oneshot::Sender<crate::http::Response>,
    ),
    Exited {
        framework_id: String,
        executor_id: String,
        container_id: String,
        status: i32,
    },
    /// The executor process started (its pid) or could not be started (why).
    Launched {
        framework_id: String,
        executor_id: String,
        container_id: String,
        result: Result<Option<u32>, String>,
    },
    RegistrationTimeout {
        framework_id: String,
        executor_id: String,
        container_id: String,
    },
    ShutdownTimeout {
        framework_id: String,
        executor_id: String,
        container_id: String,
    },
    Query(Query),
    Shutdown(oneshot::Sender<()>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ExecState {
    Registering,
    Running,
    Terminating,
    Terminated,
}

/// Work handed to an executor once it subscribes.
#[derive(Debug, Clone)]
#[allow(clippy::large_enum_variant)]
enum Pending {
    Task(TaskInfo),
    Group(TaskGroupInfo),
}

impl Pending {
    fn tasks(&self) -> Vec<&TaskInfo> {
        match self {
            Pending::Task(t) => vec![t],
            Pending::Group(g) => g.tasks.iter().collect(),
        }
    }
}

#[derive(Debug, Clone)]
struct Task {
    info: TaskInfo,
    state: TaskState,
    /// (state, timestamp) of every status recorded.
    statuses: Vec<(TaskState, f64)>,
}

#[derive(Debug)]
struct EventStream {
    tx: mpsc::Sender<Bytes>,
    media: Media,
}

#[derive(Debug)]
struct Executor {
    info: ExecutorInfo,
    container_id: String,
    directory: PathBuf,
    command: bool,
    state: ExecState,
    pid: Option<u32>,
    stream: Option<EventStream>,
    queued: Vec<Pending>,
    launched: BTreeMap<String, Task>,
    completed: Vec<Task>,
    /// A task was ever handed to the executor.
    ever_launched: bool,
    registration_timed_out: bool,
}

impl Executor {
    fn send(&mut self, event: &Event) {
        if let Some(s) = &self.stream {
            let bytes = encode_event(event, s.media);
            if s.tx.try_send(bytes).is_err() {
                tracing::warn!(executor_id = %self.info.executor_id.value, "executor stream full or closed; event dropped");
            }
        }
    }

    fn queued_has(&self, task_id: &str) -> bool {
        self.queued
            .iter()
            .any(|p| p.tasks().iter().any(|t| t.task_id.value == task_id))
    }
}

#[derive(Debug)]
struct Framework {
    info: FrameworkInfo,
    executors: BTreeMap<String, Executor>,
    completed_executors: Vec<Executor>,
    terminating: bool,
}

/// The agent's state, owned by its actor task.
struct Agent {
    config: Arc<AgentConfig>,
    to_master: mpsc::UnboundedSender<ToMaster>,
    tx: mpsc::UnboundedSender<Input>,
    frameworks: BTreeMap<String, Framework>,
    completed_frameworks: Vec<Framework>,
    updates: StatusUpdateManager,
    groups: ProcessGroups,
    start_time: f64,
    started: Instant,
    /// Executors that ever terminated.
    executors_terminated: u64,
    /// Tasks per terminal state, cumulative.
    terminal_counts: BTreeMap<&'static str, u64>,
}

fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
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

fn event_of(t: event::Type) -> Event {
    Event {
        r#type: Some(t as i32),
        ..Default::default()
    }
}

fn state_of(v: i32) -> TaskState {
    TaskState::try_from(v).unwrap_or(TaskState::TaskStaging)
}

fn partition_aware(info: &FrameworkInfo) -> bool {
    info.capabilities
        .iter()
        .any(|c| c.r#type == Some(framework_info::capability::Type::PartitionAware as i32))
}

fn duration_of(d: &DurationInfo) -> Duration {
    Duration::from_nanos(u64::try_from(d.nanoseconds).unwrap_or(0))
}

/// The `ExecutorInfo` the agent makes up for a command task (Mesos `getExecutorInfo`).
pub fn command_executor_info(
    framework_id: &FrameworkId,
    task: &TaskInfo,
    argv: &[String],
) -> ExecutorInfo {
    let tc = task.command.clone().unwrap_or_default();
    let detail = if tc.shell.unwrap_or(true) {
        match &tc.value {
            None => "(Command: NO COMMAND)".to_owned(),
            Some(v) => format!("(Command: sh -c '{}')", abbreviate(v)),
        }
    } else {
        match &tc.value {
            None => "(Command: NO EXECUTABLE)".to_owned(),
            Some(v) => {
                let args = format!("{v}, {}", tc.arguments.join(", "));
                format!("(Command: [{}])", abbreviate(&args))
            }
        }
    };
    let role = task
        .resources
        .iter()
        .find_map(|r| r.allocation_info.clone());
    let mut resources = vec![cpus(0.1), mem(32.0)];
    for r in &mut resources {
        r.allocation_info = role.clone();
    }
    let grace = task
        .kill_policy
        .as_ref()
        .and_then(|k| k.grace_period.as_ref())
        .map(|g| DurationInfo {
            nanoseconds: g.nanoseconds + 2_000_000_000,
        });
    #[allow(deprecated)]
    ExecutorInfo {
        r#type: None,
        executor_id: ExecutorId {
            value: task.task_id.value.clone(),
        },
        framework_id: Some(framework_id.clone()),
        command: Some(CommandInfo {
            uris: tc.uris.clone(),
            environment: tc.environment.clone(),
            shell: Some(false),
            value: argv.first().cloned(),
            arguments: argv.to_vec(),
            user: tc.user.clone(),
        }),
        container: task.container.clone(),
        resources,
        name: Some(format!(
            "Command Executor (Task: {}) {detail}",
            task.task_id.value
        )),
        source: Some(task.task_id.value.clone()),
        data: None,
        discovery: task.discovery.clone(),
        shutdown_grace_period: grace,
        labels: task.labels.clone(),
    }
}

/// Mesos shows at most 12 characters of a command longer than 15.
fn abbreviate(s: &str) -> String {
    if s.chars().count() > 15 {
        format!("{}...", s.chars().take(12).collect::<String>())
    } else {
        s.to_owned()
    }
}

/// The environment of an executor (§4.13): exactly these variables, then the command's own
/// VALUE variables, then `PATH` if still missing.
pub fn executor_environment(
    config: &AgentConfig,
    framework: &FrameworkInfo,
    executor: &ExecutorInfo,
    directory: &std::path::Path,
) -> Vec<(String, String)> {
    let checkpoint = framework.checkpoint.unwrap_or(false);
    let grace = executor
        .shutdown_grace_period
        .as_ref()
        .map(duration_of)
        .unwrap_or(config.executor_shutdown_grace);
    let dir = directory.display().to_string();
    let mut env: Vec<(String, String)> = vec![
        ("LIBPROCESS_PORT".into(), "0".into()),
        (
            "MESOS_FRAMEWORK_ID".into(),
            framework.id.clone().unwrap_or_default().value,
        ),
        (
            "MESOS_EXECUTOR_ID".into(),
            executor.executor_id.value.clone(),
        ),
        ("MESOS_DIRECTORY".into(), dir.clone()),
        ("MESOS_SANDBOX".into(), dir),
        ("MESOS_SLAVE_ID".into(), config.id.value.clone()),
        ("MESOS_SLAVE_PID".into(), config.pid()),
        (
            "MESOS_AGENT_ENDPOINT".into(),
            format!("{}:{}", config.ip, config.port),
        ),
        (
            "MESOS_CHECKPOINT".into(),
            if checkpoint { "1" } else { "0" }.into(),
        ),
        // Our agent only speaks the HTTP executor API.
        ("MESOS_HTTP_COMMAND_EXECUTOR".into(), "1".into()),
        (
            "MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD".into(),
            format_duration(grace),
        ),
    ];
    if checkpoint {
        env.push((
            "MESOS_RECOVERY_TIMEOUT".into(),
            format_duration(config.recovery_timeout),
        ));
        env.push((
            "MESOS_SUBSCRIPTION_BACKOFF_MAX".into(),
            format_duration(config.executor_reregistration_timeout),
        ));
    }
    if let Some(c) = &executor.command {
        launcher::finish_env(&mut env, c);
    } else {
        launcher::finish_env(&mut env, &CommandInfo::default());
    }
    env
}

impl Agent {
    fn new(
        config: Arc<AgentConfig>,
        to_master: mpsc::UnboundedSender<ToMaster>,
        tx: mpsc::UnboundedSender<Input>,
        groups: ProcessGroups,
    ) -> Self {
        Agent {
            groups,
            updates: StatusUpdateManager::new(config.status_retry_initial, config.status_retry_max),
            config,
            to_master,
            tx,
            frameworks: BTreeMap::new(),
            completed_frameworks: Vec::new(),
            start_time: now_secs(),
            started: Instant::now(),
            executors_terminated: 0,
            terminal_counts: BTreeMap::new(),
        }
    }

    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Input>) {
        loop {
            let deadline = self.updates.poll_timeout();
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
                        self.kill_all();
                        let _ = done.send(());
                        break;
                    }
                    Some(input) => self.handle(input),
                },
                () = timer => {
                    for f in self.updates.handle_timeout(Instant::now()) {
                        self.forward(f);
                    }
                }
            }
        }
    }

    fn handle(&mut self, input: Input) {
        match input {
            Input::Master(msg) => self.handle_master(msg),
            Input::Call(call, reply) => {
                let resp = self.handle_call(call);
                let _ = reply.send(resp);
            }
            Input::Exited {
                framework_id,
                executor_id,
                container_id,
                status,
            } => self.executor_exited(&framework_id, &executor_id, &container_id, status),
            Input::Launched {
                framework_id,
                executor_id,
                container_id,
                result,
            } => self.launched(&framework_id, &executor_id, &container_id, result),
            Input::RegistrationTimeout {
                framework_id,
                executor_id,
                container_id,
            } => {
                if let Some(e) = self.executor_mut(&framework_id, &executor_id, &container_id)
                    && e.state == ExecState::Registering
                {
                    tracing::warn!(
                        framework_id,
                        executor_id,
                        "executor did not subscribe in time; killing it"
                    );
                    e.registration_timed_out = true;
                    e.state = ExecState::Terminating;
                    if let Some(pid) = e.pid {
                        launcher::kill_group(pid, launcher::SIGKILL);
                    }
                }
            }
            Input::ShutdownTimeout {
                framework_id,
                executor_id,
                container_id,
            } => {
                if let Some(e) = self.executor_mut(&framework_id, &executor_id, &container_id)
                    && e.state != ExecState::Terminated
                    && let Some(pid) = e.pid
                {
                    tracing::info!(
                        framework_id,
                        executor_id,
                        "shutdown grace period over; killing the executor"
                    );
                    launcher::kill_group(pid, launcher::SIGKILL);
                }
            }
            Input::Query(q) => q(self),
            Input::Shutdown(_) => unreachable!("handled in run"),
        }
    }

    fn executor_mut(&mut self, fid: &str, eid: &str, cid: &str) -> Option<&mut Executor> {
        self.frameworks
            .get_mut(fid)?
            .executors
            .get_mut(eid)
            .filter(|e| e.container_id == cid)
    }

    fn kill_all(&mut self) {
        for f in self.frameworks.values_mut() {
            for e in f.executors.values_mut() {
                if let Some(pid) = e.pid {
                    launcher::kill_group(pid, launcher::SIGKILL);
                }
                e.stream = None;
            }
        }
    }

    // ----- master -> agent -----

    fn handle_master(&mut self, msg: ToAgent) {
        match msg {
            ToAgent::RunTask {
                framework,
                executor,
                task,
            } => self.run_task(framework, executor, Pending::Task(task)),
            ToAgent::RunTaskGroup {
                framework,
                executor,
                group,
            } => self.run_task(framework, Some(executor), Pending::Group(group)),
            ToAgent::KillTask {
                framework_id,
                task_id,
                kill_policy,
            } => self.kill_task(&framework_id, &task_id, kill_policy),
            ToAgent::ShutdownExecutor {
                framework_id,
                executor_id,
            } => self.shutdown_executor(&framework_id.value, &executor_id.value),
            ToAgent::ShutdownFramework { framework_id } => self.shutdown_framework(&framework_id),
            ToAgent::Acknowledge {
                framework_id,
                task_id,
                uuid,
            } => match self
                .updates
                .acknowledge(&framework_id, &task_id, &uuid, Instant::now())
            {
                Ok(next) => {
                    if let Some(f) = next {
                        self.forward(f);
                    }
                }
                Err(e) => tracing::debug!(error = %e, "acknowledgement ignored"),
            },
            ToAgent::FrameworkMessage {
                framework_id,
                executor_id,
                data,
            } => {
                let Some(e) = self
                    .frameworks
                    .get_mut(&framework_id.value)
                    .and_then(|f| f.executors.get_mut(&executor_id.value))
                    .filter(|e| e.state == ExecState::Running)
                else {
                    tracing::debug!(framework_id = %framework_id.value, executor_id = %executor_id.value, "framework message for an executor not subscribed; dropped");
                    return;
                };
                let mut ev = event_of(event::Type::Message);
                ev.message = Some(event::Message { data });
                e.send(&ev);
            }
            ToAgent::UpdateFramework { framework } => {
                let Some(id) = framework.id.clone() else {
                    return;
                };
                if let Some(f) = self.frameworks.get_mut(&id.value) {
                    f.info = framework;
                }
                for f in self.updates.resend_framework(&id, Instant::now()) {
                    self.forward(f);
                }
            }
        }
    }

    fn run_task(
        &mut self,
        framework: FrameworkInfo,
        executor: Option<ExecutorInfo>,
        work: Pending,
    ) {
        let fid = framework.id.clone().unwrap_or_default();
        let first = work.tasks()[0].clone();
        let (info, command) = match executor {
            Some(mut e) => {
                e.framework_id.get_or_insert_with(|| fid.clone());
                (e, false)
            }
            None => (
                command_executor_info(&fid, &first, &self.config.command_executor),
                true,
            ),
        };
        let eid = info.executor_id.value.clone();
        let fw = self
            .frameworks
            .entry(fid.value.clone())
            .or_insert_with(|| Framework {
                info: framework.clone(),
                executors: BTreeMap::new(),
                completed_executors: Vec::new(),
                terminating: false,
            });
        fw.info = framework;
        fw.terminating = false;

        if let Some(e) = fw.executors.get_mut(&eid) {
            match e.state {
                ExecState::Registering => {
                    e.queued.push(work);
                    return;
                }
                ExecState::Running => {
                    launch_on(e, work);
                    return;
                }
                ExecState::Terminating | ExecState::Terminated => {
                    let state = if partition_aware(&fw.info) {
                        TaskState::TaskDropped
                    } else {
                        TaskState::TaskLost
                    };
                    for t in work.tasks() {
                        let tid = t.task_id.clone();
                        self.agent_update(
                            &fid,
                            &tid,
                            Some(&info.executor_id),
                            state,
                            task_status::Reason::ExecutorTerminated,
                            "Executor terminating",
                        );
                    }
                    return;
                }
            }
        }
        self.launch_executor(fid, info, command, work);
    }

    /// Creates the executor (REGISTERING) and starts its launch off the actor: sandbox, fetch
    /// and spawn run in a task that reports [`Input::Launched`] and then [`Input::Exited`].
    fn launch_executor(
        &mut self,
        fid: FrameworkId,
        info: ExecutorInfo,
        command: bool,
        work: Pending,
    ) {
        let eid = info.executor_id.value.clone();
        let container_id = uuid::Uuid::new_v4().to_string();
        let fw_info = self.frameworks[&fid.value].info.clone();
        let dir = sandbox::runs_dir(
            &self.config.work_dir,
            &self.config.id.value,
            &fid.value,
            &eid,
        )
        .join(&container_id);
        let env = executor_environment(&self.config, &fw_info, &info, &dir);
        let cmd = info.command.clone();

        let config = self.config.clone();
        let tx = self.tx.clone();
        let (f, e, c) = (fid.value.clone(), eid.clone(), container_id.clone());
        tokio::spawn(async move {
            let prepared = {
                let (f, e, c) = (f.clone(), e.clone(), c.clone());
                let cmd = cmd.clone();
                tokio::task::spawn_blocking(move || prepare(&config, &f, &e, &c, cmd.as_ref()))
                    .await
                    .unwrap_or_else(|e| Err(format!("Failed to prepare the sandbox: {e}")))
            };
            let spawned = prepared.and_then(|dir| {
                let cmd = cmd.expect("checked by prepare");
                launcher::spawn(&cmd, &env, &dir)
                    .map_err(|e| format!("Failed to launch the executor: {e}"))
            });
            let mut child = match spawned {
                Ok(child) => child,
                Err(message) => {
                    let _ = tx.send(Input::Launched {
                        framework_id: f,
                        executor_id: e,
                        container_id: c,
                        result: Err(message),
                    });
                    return;
                }
            };
            let pid = child.id();
            let launched = Input::Launched {
                framework_id: f.clone(),
                executor_id: e.clone(),
                container_id: c.clone(),
                result: Ok(pid),
            };
            if tx.send(launched).is_err() {
                // The agent stopped meanwhile.
                if let Some(pid) = pid {
                    launcher::kill_group(pid, launcher::SIGKILL);
                }
            }
            use std::os::unix::process::ExitStatusExt;
            let status = match child.wait().await {
                Ok(s) => s.into_raw(),
                Err(_) => -1,
            };
            let _ = tx.send(Input::Exited {
                framework_id: f,
                executor_id: e,
                container_id: c,
                status,
            });
        });

        let fw = self.frameworks.get_mut(&fid.value).expect("framework");
        fw.executors.insert(
            eid,
            Executor {
                info,
                container_id,
                directory: dir,
                command,
                state: ExecState::Registering,
                pid: None,
                stream: None,
                queued: vec![work],
                launched: BTreeMap::new(),
                completed: Vec::new(),
                ever_launched: false,
                registration_timed_out: false,
            },
        );
    }

    fn launched(&mut self, fid: &str, eid: &str, cid: &str, result: Result<Option<u32>, String>) {
        let timeout = self.config.executor_registration_timeout;
        let Some(e) = self.executor_mut(fid, eid, cid) else {
            if let Ok(Some(pid)) = result {
                launcher::kill_group(pid, launcher::SIGKILL);
            }
            return;
        };
        match result {
            Ok(pid) => {
                e.pid = pid;
                let Some(pid) = pid else { return };
                tracing::info!(
                    framework_id = fid,
                    executor_id = eid,
                    pid,
                    "executor started"
                );
                if e.state != ExecState::Registering {
                    // Shut down (or all its tasks killed) while launching.
                    launcher::kill_group(pid, launcher::SIGKILL);
                    return;
                }
                self.groups.lock().expect("poisoned").insert(pid);
                let tx = self.tx.clone();
                let (f, x, c) = (fid.to_owned(), eid.to_owned(), cid.to_owned());
                tokio::spawn(async move {
                    tokio::time::sleep(timeout).await;
                    let _ = tx.send(Input::RegistrationTimeout {
                        framework_id: f,
                        executor_id: x,
                        container_id: c,
                    });
                });
            }
            Err(message) => {
                tracing::warn!(framework_id = fid, executor_id = eid, %message, "executor launch failed");
                let executor_id = e.info.executor_id.clone();
                let command = e.command;
                e.state = ExecState::Terminated;
                let open: Vec<TaskId> = e
                    .queued
                    .iter()
                    .flat_map(|p| p.tasks())
                    .map(|t| t.task_id.clone())
                    .collect();
                let fid_v = FrameworkId {
                    value: fid.to_owned(),
                };
                for tid in &open {
                    self.agent_update(
                        &fid_v,
                        tid,
                        Some(&executor_id),
                        TaskState::TaskFailed,
                        task_status::Reason::ContainerLaunchFailed,
                        &message,
                    );
                }
                self.executors_terminated += 1;
                let fw = self.frameworks.get_mut(fid).expect("framework");
                if let Some(e) = fw.executors.remove(eid) {
                    fw.completed_executors.push(e);
                }
                let _ = self.to_master.send(ToMaster::ExecutorExited {
                    agent_id: self.config.id.clone(),
                    framework_id: fid_v,
                    executor_id,
                    status: -1,
                    command_executor: command,
                });
                self.maybe_remove_framework(fid);
            }
        }
    }

    fn kill_task(&mut self, fid: &FrameworkId, tid: &TaskId, policy: Option<KillPolicy>) {
        let lost = |fw: Option<&Framework>| {
            if fw.is_some_and(|f| partition_aware(&f.info)) {
                TaskState::TaskDropped
            } else {
                TaskState::TaskLost
            }
        };
        let Some(fw) = self.frameworks.get_mut(&fid.value) else {
            self.agent_update(
                fid,
                tid,
                None,
                lost(None),
                task_status::Reason::ExecutorTerminated,
                "Cannot find executor",
            );
            return;
        };
        let found = fw
            .executors
            .iter_mut()
            .find(|(_, e)| e.queued_has(&tid.value) || e.launched.contains_key(&tid.value));
        let Some((_, e)) = found else {
            let already_done = fw
                .executors
                .values()
                .chain(fw.completed_executors.iter())
                .any(|e| e.completed.iter().any(|t| t.info.task_id == *tid));
            if already_done {
                return;
            }
            let state = lost(Some(fw));
            self.agent_update(
                fid,
                tid,
                None,
                state,
                task_status::Reason::ExecutorTerminated,
                "Cannot find executor",
            );
            return;
        };
        if e.queued_has(&tid.value) {
            // Killed before the executor got it: the whole group goes.
            let ids: Vec<TaskId> = e
                .queued
                .iter()
                .find(|p| p.tasks().iter().any(|t| t.task_id == *tid))
                .map(|p| p.tasks().iter().map(|t| t.task_id.clone()).collect())
                .unwrap_or_default();
            let eid = e.info.executor_id.clone();
            for t in &ids {
                self.agent_update(
                    fid,
                    t,
                    Some(&eid),
                    TaskState::TaskKilled,
                    task_status::Reason::TaskKilledDuringLaunch,
                    "Killed before delivery to the executor",
                );
            }
            if let Some(e) = self
                .frameworks
                .get_mut(&fid.value)
                .and_then(|f| f.executors.get_mut(&eid.value))
                && !e.ever_launched
                && e.queued.is_empty()
                && e.state == ExecState::Registering
            {
                // Never given a task: nothing to shut down gracefully.
                e.state = ExecState::Terminating;
                if let Some(pid) = e.pid {
                    launcher::kill_group(pid, launcher::SIGKILL);
                }
            }
            return;
        }
        let task = &e.launched[&tid.value];
        let mut ev = event_of(event::Type::Kill);
        ev.kill = Some(event::Kill {
            task_id: tid.clone(),
            kill_policy: policy.or(task.info.kill_policy),
        });
        e.send(&ev);
    }

    fn shutdown_executor(&mut self, fid: &str, eid: &str) {
        let default_grace = self.config.executor_shutdown_grace;
        let Some(e) = self
            .frameworks
            .get_mut(fid)
            .and_then(|f| f.executors.get_mut(eid))
        else {
            return;
        };
        if e.state == ExecState::Terminated {
            return;
        }
        let was = e.state;
        e.state = ExecState::Terminating;
        if was == ExecState::Running {
            e.send(&event_of(event::Type::Shutdown));
            let grace = e
                .info
                .shutdown_grace_period
                .as_ref()
                .map(duration_of)
                .unwrap_or(default_grace);
            let tx = self.tx.clone();
            let (f, x, c) = (fid.to_owned(), eid.to_owned(), e.container_id.clone());
            tokio::spawn(async move {
                tokio::time::sleep(grace).await;
                let _ = tx.send(Input::ShutdownTimeout {
                    framework_id: f,
                    executor_id: x,
                    container_id: c,
                });
            });
        } else if let Some(pid) = e.pid {
            launcher::kill_group(pid, launcher::SIGKILL);
        }
    }

    fn shutdown_framework(&mut self, fid: &FrameworkId) {
        self.updates.remove_framework(fid);
        let Some(fw) = self.frameworks.get_mut(&fid.value) else {
            return;
        };
        fw.terminating = true;
        let eids: Vec<String> = fw.executors.keys().cloned().collect();
        for eid in eids {
            self.shutdown_executor(&fid.value, &eid);
        }
        self.maybe_remove_framework(&fid.value);
    }

    fn maybe_remove_framework(&mut self, fid: &str) {
        if self
            .frameworks
            .get(fid)
            .is_some_and(|f| f.terminating && f.executors.is_empty())
            && let Some(f) = self.frameworks.remove(fid)
        {
            self.completed_frameworks.push(f);
            if self.completed_frameworks.len() > 50 {
                self.completed_frameworks.remove(0);
            }
        }
    }

    fn executor_exited(&mut self, fid: &str, eid: &str, cid: &str, status: i32) {
        let Some(fw) = self.frameworks.get_mut(fid) else {
            return;
        };
        let terminating = fw.terminating;
        let Some(e) = fw.executors.get_mut(eid).filter(|e| e.container_id == cid) else {
            return;
        };
        e.state = ExecState::Terminated;
        e.stream = None;
        if let Some(pid) = e.pid {
            self.groups.lock().expect("poisoned").remove(&pid);
        }
        tracing::info!(
            framework_id = fid,
            executor_id = eid,
            status,
            "executor exited"
        );
        let mut open: Vec<TaskId> = e
            .queued
            .iter()
            .flat_map(|p| p.tasks())
            .map(|t| t.task_id.clone())
            .collect();
        open.extend(
            e.launched
                .values()
                .filter(|t| !is_terminal(t.state))
                .map(|t| t.info.task_id.clone()),
        );
        let executor_id = e.info.executor_id.clone();
        let command = e.command;
        let (reason, message) = if e.registration_timed_out {
            (
                task_status::Reason::ExecutorRegistrationTimeout,
                format!(
                    "Executor did not register within {}",
                    format_duration(self.config.executor_registration_timeout)
                ),
            )
        } else {
            (
                task_status::Reason::ExecutorTerminated,
                "Executor terminated".to_owned(),
            )
        };
        self.executors_terminated += 1;
        let fid_v = FrameworkId {
            value: fid.to_owned(),
        };
        if !terminating {
            for tid in &open {
                self.agent_update(
                    &fid_v,
                    tid,
                    Some(&executor_id),
                    TaskState::TaskFailed,
                    reason,
                    &message,
                );
            }
        }
        let fw = self.frameworks.get_mut(fid).expect("framework");
        let e = fw.executors.remove(eid).expect("executor");
        fw.completed_executors.push(e);
        if fw.completed_executors.len() > 150 {
            fw.completed_executors.remove(0);
        }
        let _ = self.to_master.send(ToMaster::ExecutorExited {
            agent_id: self.config.id.clone(),
            framework_id: fid_v,
            executor_id,
            status,
            command_executor: command,
        });
        self.maybe_remove_framework(fid);
    }

    // ----- status updates -----

    /// An update made up by the agent (SOURCE_AGENT, with a uuid, reliable).
    fn agent_update(
        &mut self,
        fid: &FrameworkId,
        tid: &TaskId,
        eid: Option<&ExecutorId>,
        state: TaskState,
        reason: task_status::Reason,
        message: &str,
    ) {
        let status = TaskStatus {
            task_id: tid.clone(),
            state: state as i32,
            message: Some(message.to_owned()),
            source: Some(task_status::Source::Agent as i32),
            reason: Some(reason as i32),
            agent_id: Some(self.config.id.clone()),
            executor_id: eid.cloned(),
            timestamp: Some(now_secs()),
            uuid: Some(new_uuid()),
            ..Default::default()
        };
        self.record(fid, eid.map(|e| e.value.as_str()), status);
    }

    /// Notes the update in the task bookkeeping and the status-update manager, and forwards
    /// it if it is the head of its stream. Returns what the manager made of it.
    fn record(&mut self, fid: &FrameworkId, eid: Option<&str>, status: TaskStatus) -> Recorded {
        if self
            .frameworks
            .get(&fid.value)
            .is_some_and(|f| f.terminating)
        {
            return Recorded::AfterTerminal;
        }
        let (recorded, fwd) = self.updates.update(fid, status.clone(), Instant::now());
        if recorded == Recorded::New {
            self.note_task_state(fid, eid, &status);
        }
        if let Some(f) = fwd {
            self.forward(f);
        }
        recorded
    }

    fn note_task_state(&mut self, fid: &FrameworkId, eid: Option<&str>, status: &TaskStatus) {
        let state = state_of(status.state);
        let Some(fw) = self.frameworks.get_mut(&fid.value) else {
            return;
        };
        let Some(e) = eid.and_then(|eid| fw.executors.get_mut(eid)) else {
            return;
        };
        let tid = &status.task_id.value;
        let ts = status.timestamp.unwrap_or_else(now_secs);
        if is_terminal(state) {
            *self.terminal_counts.entry(state.as_str_name()).or_default() += 1;
        }
        if let Some(t) = e.launched.get_mut(tid) {
            t.state = state;
            t.statuses.push((state, ts));
            if is_terminal(state) {
                let t = e.launched.remove(tid).expect("task");
                e.completed.push(t);
            }
            return;
        }
        // A queued task that ends before delivery (killed, executor gone).
        if !is_terminal(state) {
            return;
        }
        for i in 0..e.queued.len() {
            let info = match &mut e.queued[i] {
                Pending::Task(t) if t.task_id.value == *tid => t.clone(),
                Pending::Task(_) => continue,
                Pending::Group(g) => match g.tasks.iter().position(|t| t.task_id.value == *tid) {
                    Some(p) => g.tasks.remove(p),
                    None => continue,
                },
            };
            if matches!(&e.queued[i], Pending::Task(_))
                || matches!(&e.queued[i], Pending::Group(g) if g.tasks.is_empty())
            {
                e.queued.remove(i);
            }
            e.completed.push(Task {
                info,
                state,
                statuses: vec![(state, ts)],
            });
            return;
        }
    }

    fn forward(&mut self, f: Forward) {
        if self
            .frameworks
            .get(&f.framework_id.value)
            .is_some_and(|fw| fw.terminating)
        {
            return;
        }
        let _ = self.to_master.send(ToMaster::StatusUpdate {
            agent_id: self.config.id.clone(),
            framework_id: f.framework_id,
            status: f.status,
            latest_state: f.latest_state,
        });
    }

    // ----- executor calls (validated by executor_api) -----

    fn handle_call(&mut self, call: executor_api::ExecutorCall) -> crate::http::Response {
        use crate::http::{empty, text};
        use http::StatusCode;
        let fid = call.framework_id.clone();
        let eid = call.executor_id.value.clone();
        let Some(fw) = self.frameworks.get_mut(&fid.value) else {
            return text(StatusCode::BAD_REQUEST, "Framework cannot be found");
        };
        let fw_terminating = fw.terminating;
        let fw_info = fw.info.clone();
        let Some(e) = fw.executors.get_mut(&eid) else {
            return text(StatusCode::BAD_REQUEST, "Executor cannot be found");
        };
        match call.kind {
            executor_api::Kind::Subscribe { subscribe, media } => {
                let (tx, rx) = mpsc::channel(1024);
                // A new subscription replaces (and so closes) the previous stream.
                e.stream = Some(EventStream { tx, media });
                if fw_terminating || e.state == ExecState::Terminating {
                    e.send(&event_of(event::Type::Shutdown));
                    e.stream = None;
                    return crate::http::stream(media, rx);
                }
                let mut ev = event_of(event::Type::Subscribed);
                ev.subscribed = Some(Box::new(event::Subscribed {
                    executor_info: e.info.clone(),
                    framework_info: fw_info,
                    agent_info: self.config.agent_info(),
                    container_id: Some(ContainerId {
                        value: e.container_id.clone(),
                        parent: None,
                    }),
                }));
                e.send(&ev);
                if let Some(stream) = &e.stream {
                    spawn_heartbeats(stream, self.config.executor_heartbeat_interval);
                }
                let was = e.state;
                e.state = ExecState::Running;
                if was == ExecState::Registering {
                    for work in std::mem::take(&mut e.queued) {
                        launch_on(e, work);
                    }
                }
                // Re-subscription: updates the executor never saw acknowledged are processed
                // as new ones (duplicates are re-acknowledged).
                for u in subscribe.unacknowledged_updates {
                    self.executor_update(&fid, &eid, u.status);
                }
                crate::http::stream(media, rx)
            }
            _ if e.state == ExecState::Registering => {
                text(StatusCode::FORBIDDEN, "Executor is not subscribed")
            }
            executor_api::Kind::Update(status) => {
                self.executor_update(&fid, &eid, status);
                empty(StatusCode::ACCEPTED)
            }
            executor_api::Kind::Message(data) => {
                let _ = self.to_master.send(ToMaster::ExecutorMessage {
                    agent_id: self.config.id.clone(),
                    framework_id: fid,
                    executor_id: call.executor_id,
                    data,
                });
                empty(StatusCode::ACCEPTED)
            }
        }
    }

    /// An UPDATE from an executor: fill in the ids, record, acknowledge to the executor.
    fn executor_update(&mut self, fid: &FrameworkId, eid: &str, mut status: TaskStatus) {
        let Some(e) = self
            .frameworks
            .get_mut(&fid.value)
            .and_then(|f| f.executors.get_mut(eid))
        else {
            return;
        };
        status.agent_id = Some(self.config.id.clone());
        status.executor_id = Some(e.info.executor_id.clone());
        if status.timestamp.is_none() {
            status.timestamp = Some(now_secs());
        }
        let cs = status
            .container_status
            .get_or_insert_with(ContainerStatus::default);
        if cs.container_id.is_none() {
            cs.container_id = Some(ContainerId {
                value: e.container_id.clone(),
                parent: None,
            });
        }
        if cs.executor_pid.is_none() {
            cs.executor_pid = e.pid;
        }
        if status.state == TaskState::TaskRunning as i32 && cs.network_infos.is_empty() {
            cs.network_infos.push(v1::NetworkInfo {
                ip_addresses: vec![v1::network_info::IpAddress {
                    protocol: None,
                    ip_address: Some(self.config.ip.to_string()),
                }],
                ..Default::default()
            });
        }
        let task_id = status.task_id.clone();
        let uuid = status.uuid.clone().unwrap_or_default();
        let recorded = self.record(fid, Some(eid), status);
        if recorded == Recorded::AfterTerminal {
            tracing::debug!(framework_id = %fid.value, task_id = %task_id.value, "update after a terminal one dropped");
        }
        if let Some(e) = self
            .frameworks
            .get_mut(&fid.value)
            .and_then(|f| f.executors.get_mut(eid))
        {
            let mut ev = event_of(event::Type::Acknowledged);
            ev.acknowledged = Some(event::Acknowledged { task_id, uuid });
            e.send(&ev);
        }
    }
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
    let beat = encode_event(&event_of(event::Type::Heartbeat), stream.media);
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

/// Hands work to a subscribed executor: LAUNCH / LAUNCH_GROUP; the tasks are STAGING.
fn launch_on(e: &mut Executor, work: Pending) {
    let ev = match &work {
        Pending::Task(t) => {
            let mut ev = event_of(event::Type::Launch);
            ev.launch = Some(Box::new(event::Launch { task: t.clone() }));
            ev
        }
        Pending::Group(g) => {
            let mut ev = event_of(event::Type::LaunchGroup);
            ev.launch_group = Some(event::LaunchGroup {
                task_group: g.clone(),
            });
            ev
        }
    };
    for t in work.tasks() {
        e.launched.insert(
            t.task_id.value.clone(),
            Task {
                info: t.clone(),
                state: TaskState::TaskStaging,
                statuses: Vec::new(),
            },
        );
    }
    e.ever_launched = true;
    e.send(&ev);
}
