//! The agent's state machine: frameworks, executors, queued and launched tasks, and the
//! status-update manager. No IO: the driver in [`super`] feeds it messages, executor calls,
//! process events and timers (with the time) and carries out the [`Action`]s it returns.

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mesokit_proto::helpers::{cpus, format_duration, is_terminal, mem, new_uuid};
use mesokit_proto::v1::executor::{Event, event};
use mesokit_proto::v1::{
    self, CommandInfo, ContainerId, ContainerStatus, DurationInfo, ExecutorId, ExecutorInfo,
    FrameworkId, FrameworkInfo, KillPolicy, TaskGroupInfo, TaskId, TaskInfo, TaskState, TaskStatus,
    framework_info, task_status,
};

use super::AgentConfig;
use super::checkpoint::Record;
use super::executor_api::{ExecutorCall, Kind};
use super::updates::{Forward, Recorded, StatusUpdateManager};
use super::{launcher, sandbox};
use crate::http::Media;
use crate::messages::{ToAgent, ToMaster};

/// What the core asks the driver to do, in order.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
pub(crate) enum Action {
    /// Send to the master.
    ToMaster(ToMaster),
    /// Create the sandbox, fetch, start the process; then report
    /// [`AgentCore::launched`] and, when it ends, [`AgentCore::exited`].
    Launch(Box<Launch>),
    /// SIGKILL an executor's whole process tree (see `launcher::kill_tree`).
    Kill {
        /// The executor's process group (its pid).
        pgid: u32,
    },
    /// SIGKILL what is left of a process group whose leader has exited (cheap: no scan).
    KillGroup {
        /// The group.
        pgid: u32,
    },
    /// Open the executor's event stream (replacing, and so closing, an older one); it becomes
    /// the body of the SUBSCRIBE response.
    OpenStream {
        /// Framework.
        framework_id: String,
        /// Executor.
        executor_id: String,
        /// Encoding of the events.
        media: Media,
    },
    /// An event for the executor's stream (dropped if none is open).
    Event {
        /// Framework.
        framework_id: String,
        /// Executor.
        executor_id: String,
        /// The event.
        event: Box<Event>,
    },
    /// End the executor's stream.
    CloseStream {
        /// Framework.
        framework_id: String,
        /// Executor.
        executor_id: String,
    },
    /// Run the task status decorator hooks on an update the agent made up, then hand it back
    /// with [`AgentCore::decorated_update`].
    DecorateStatus {
        /// Framework.
        framework_id: FrameworkId,
        /// The update (with its uuid).
        status: Box<TaskStatus>,
    },
    /// Call [`AgentCore::timer`] with `timer` after `after`.
    Timer {
        /// Delay.
        after: Duration,
        /// What fires.
        timer: Timer,
    },
}

/// An executor to start.
#[derive(Debug)]
pub(crate) struct Launch {
    pub(crate) framework_id: String,
    pub(crate) executor_id: String,
    pub(crate) container_id: String,
    /// `None`: nothing to run (the launch fails).
    pub(crate) command: Option<CommandInfo>,
    pub(crate) env: Vec<(String, String)>,
    pub(crate) directory: PathBuf,
    /// The executor (for command modules: hooks and the isolators' ContainerConfig).
    pub(crate) executor: ExecutorInfo,
    /// The task of a command executor (ContainerConfig.task_info).
    pub(crate) task: Option<TaskInfo>,
    /// Executor and task resources.
    pub(crate) resources: Vec<v1::Resource>,
    /// The framework's user.
    pub(crate) user: String,
}

/// Timers of the core.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Timer {
    /// The executor must have subscribed by now.
    Registration {
        framework_id: String,
        executor_id: String,
        container_id: String,
    },
    /// The executor's shutdown grace period is over.
    ShutdownGrace {
        framework_id: String,
        executor_id: String,
        container_id: String,
    },
    /// After a restart: recovered executors must have re-subscribed by now.
    Reregistration,
}

/// How the HTTP front answers an executor call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CallReply {
    /// 202.
    Accepted,
    /// 200 with the stream opened by the preceding [`Action::OpenStream`].
    Stream(Media),
    /// 400 with this text.
    BadRequest(&'static str),
    /// 403 with this text.
    Forbidden(&'static str),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ExecState {
    Registering,
    Running,
    Terminating,
    Terminated,
}

/// Work handed to an executor once it subscribes.
#[derive(Debug, Clone)]
#[allow(clippy::large_enum_variant)]
pub(super) enum Pending {
    Task(TaskInfo),
    Group(TaskGroupInfo),
}

impl Pending {
    pub(super) fn tasks(&self) -> Vec<&TaskInfo> {
        match self {
            Pending::Task(t) => vec![t],
            Pending::Group(g) => g.tasks.iter().collect(),
        }
    }
}

#[derive(Debug, Clone)]
pub(super) struct Task {
    pub(super) info: TaskInfo,
    pub(super) state: TaskState,
    /// Every status recorded (without `data`), with its timestamp set.
    pub(super) statuses: Vec<TaskStatus>,
}

#[derive(Debug)]
pub(super) struct Executor {
    pub(super) info: ExecutorInfo,
    pub(super) container_id: String,
    pub(super) directory: PathBuf,
    pub(super) command: bool,
    pub(super) state: ExecState,
    pub(super) pid: Option<u32>,
    pub(super) framework_id: String,
    pub(super) queued: Vec<Pending>,
    pub(super) launched: BTreeMap<String, Task>,
    pub(super) completed: Vec<Task>,
    /// A task was ever handed to the executor.
    pub(super) ever_launched: bool,
    pub(super) registration_timed_out: bool,
    /// An isolator's watch reported a limitation: the reason and message of the failure.
    pub(super) limitation: Option<(task_status::Reason, String)>,
    /// Recovered after an agent restart and not yet re-subscribed.
    pub(super) recovered: bool,
    pub(super) reregistration_timed_out: bool,
}

impl Executor {
    /// Queues an event for the executor's stream (dropped by the driver if none is open).
    fn send(&self, out: &mut VecDeque<Action>, event: Event) {
        out.push_back(Action::Event {
            framework_id: self.framework_id.clone(),
            executor_id: self.info.executor_id.value.clone(),
            event: Box::new(event),
        });
    }

    fn queued_has(&self, task_id: &str) -> bool {
        self.queued
            .iter()
            .any(|p| p.tasks().iter().any(|t| t.task_id.value == task_id))
    }
}

#[derive(Debug)]
pub(super) struct Framework {
    pub(super) info: FrameworkInfo,
    pub(super) executors: BTreeMap<String, Executor>,
    pub(super) completed_executors: Vec<Executor>,
    pub(super) terminating: bool,
}

/// The agent's state and decisions, with no IO: inputs are method calls (with the time),
/// outputs are [`Action`]s for the driver to carry out.
pub(crate) struct AgentCore {
    pub(super) config: Arc<AgentConfig>,
    pub(super) frameworks: BTreeMap<String, Framework>,
    pub(super) completed_frameworks: Vec<Framework>,
    updates: StatusUpdateManager,
    pub(super) start_time: f64,
    pub(super) started: Instant,
    /// Executors that ever terminated.
    pub(super) executors_terminated: u64,
    /// Tasks per terminal state, cumulative.
    pub(super) terminal_counts: BTreeMap<&'static str, u64>,
    actions: VecDeque<Action>,
    now: Instant,
    /// Agent-made updates go through the task status decorator hooks first.
    decorate_agent_updates: bool,
    /// Agent-made updates with the decorator hooks, by framework id: the framework stays
    /// until they are in their streams.
    decorating: BTreeMap<String, usize>,
    /// Executors whose checkpoint may have changed: (framework id, executor id), or
    /// (framework id, None) for all of the framework's.
    dirty: std::collections::BTreeSet<(String, Option<String>)>,
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
            // Kill grace + reap interval (1 s) + 1 s, as Mesos.
            nanoseconds: g.nanoseconds.saturating_add(2_000_000_000),
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
        discovery: task.discovery.as_deref().cloned(),
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

impl AgentCore {
    /// A core for `config`, starting at `now`, which is `wall` seconds since the epoch (status
    /// timestamps are derived from the two, so that the core reads no clock).
    pub(crate) fn new(config: Arc<AgentConfig>, now: Instant, wall: f64) -> Self {
        AgentCore {
            updates: StatusUpdateManager::new(config.status_retry_initial, config.status_retry_max),
            config,
            frameworks: BTreeMap::new(),
            completed_frameworks: Vec::new(),
            start_time: wall,
            started: now,
            executors_terminated: 0,
            terminal_counts: BTreeMap::new(),
            actions: VecDeque::new(),
            now,
            decorate_agent_updates: false,
            decorating: BTreeMap::new(),
            dirty: std::collections::BTreeSet::new(),
        }
    }

    /// Notes that the checkpoint of the executor (or, with `None`, of every executor of the
    /// framework) may have changed.
    fn touch(&mut self, fid: &str, eid: Option<&str>) {
        // Frameworks that do not checkpoint have nothing on disk: no bookkeeping for them.
        if self
            .frameworks
            .get(fid)
            .is_some_and(|f| f.info.checkpoint == Some(true))
        {
            self.dirty.insert((fid.to_owned(), eid.map(str::to_owned)));
        }
    }

    /// The checkpoints to write again since the last call (see [`AgentCore::touch`]).
    pub(crate) fn take_dirty(&mut self) -> std::collections::BTreeSet<(String, Option<String>)> {
        std::mem::take(&mut self.dirty)
    }

    /// The executor holding the task (live or exited), if any.
    fn executor_of_task(&self, fid: &str, tid: &str) -> Option<String> {
        let fw = self.frameworks.get(fid)?;
        let holds = |e: &Executor| {
            e.launched.contains_key(tid)
                || e.queued_has(tid)
                || e.completed.iter().any(|t| t.info.task_id.value == tid)
        };
        fw.executors
            .values()
            .chain(fw.completed_executors.iter().rev())
            .find(|e| holds(e))
            .map(|e| e.info.executor_id.value.clone())
    }

    /// Sends the updates the agent makes up through [`Action::DecorateStatus`] first (the
    /// driver runs the task status decorator hooks), as Mesos decorates every update once.
    pub(crate) fn decorate_agent_updates(&mut self) {
        self.decorate_agent_updates = true;
    }

    /// Seconds since the epoch at `self.now`.
    fn wall(&self) -> f64 {
        self.start_time
            + self
                .now
                .saturating_duration_since(self.started)
                .as_secs_f64()
    }

    /// The next thing to do.
    pub(crate) fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// When [`AgentCore::handle_timeout`] is due (status-update retries).
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        self.updates.poll_timeout()
    }

    /// Resends the status updates whose retry time has come.
    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        self.now = now;
        for f in self.updates.handle_timeout(now) {
            self.forward(f);
        }
    }

    /// Whether the task still has unacknowledged updates.
    pub(super) fn has_update_stream(&self, fid: &FrameworkId, tid: &TaskId) -> bool {
        self.updates.latest_state(fid, tid).is_some()
    }

    /// Process groups of every live executor (to kill them all at shutdown).
    pub(crate) fn live_process_groups(&self) -> Vec<u32> {
        self.frameworks
            .values()
            .flat_map(|f| f.executors.values())
            .filter_map(|e| e.pid)
            .collect()
    }

    /// A timer set by [`Action::Timer`] fired.
    pub(crate) fn timer(&mut self, now: Instant, timer: Timer) {
        self.now = now;
        match timer {
            Timer::Registration {
                framework_id,
                executor_id,
                container_id,
            } => {
                let Some(e) = executor_mut(&mut self.frameworks, &framework_id, &executor_id)
                    .filter(|e| e.container_id == container_id)
                else {
                    return;
                };
                if e.state != ExecState::Registering {
                    return;
                }
                tracing::warn!(
                    framework_id,
                    executor_id,
                    "executor did not subscribe in time; killing it"
                );
                e.registration_timed_out = true;
                e.state = ExecState::Terminating;
                if let Some(pgid) = e.pid {
                    self.actions.push_back(Action::Kill { pgid });
                }
            }
            Timer::ShutdownGrace {
                framework_id,
                executor_id,
                container_id,
            } => {
                let Some(e) = executor_mut(&mut self.frameworks, &framework_id, &executor_id)
                    .filter(|e| e.container_id == container_id)
                else {
                    return;
                };
                if e.state != ExecState::Terminated
                    && let Some(pgid) = e.pid
                {
                    tracing::info!(
                        framework_id,
                        executor_id,
                        "shutdown grace period over; killing the executor"
                    );
                    self.actions.push_back(Action::Kill { pgid });
                }
            }
            Timer::Reregistration => {
                for (fid, fw) in &mut self.frameworks {
                    for (eid, e) in &mut fw.executors {
                        if !e.recovered || e.state != ExecState::Registering {
                            continue;
                        }
                        tracing::warn!(
                            framework_id = %fid,
                            executor_id = %eid,
                            "executor did not re-subscribe after the agent restart; killing it"
                        );
                        e.reregistration_timed_out = true;
                        e.state = ExecState::Terminating;
                        if let Some(pgid) = e.pid {
                            self.actions.push_back(Action::Kill { pgid });
                        }
                    }
                }
            }
        }
    }

    // ----- master -> agent -----

    /// A message from the master.
    pub(crate) fn handle_master(&mut self, now: Instant, msg: ToAgent) {
        self.now = now;
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
            } => {
                if let Some(eid) = self.executor_of_task(&framework_id.value, &task_id.value) {
                    self.touch(&framework_id.value, Some(&eid));
                }
                self.acknowledge(framework_id, task_id, uuid);
            }
            ToAgent::FrameworkMessage {
                framework_id,
                executor_id,
                data,
            } => {
                let Some(e) = executor_mut(
                    &mut self.frameworks,
                    &framework_id.value,
                    &executor_id.value,
                )
                .filter(|e| e.state == ExecState::Running) else {
                    tracing::debug!(framework_id = %framework_id.value, executor_id = %executor_id.value, "framework message for an executor not subscribed; dropped");
                    return;
                };
                let mut ev = event_of(event::Type::Message);
                ev.message = Some(event::Message { data });
                e.send(&mut self.actions, ev);
            }
            ToAgent::UpdateFramework { framework } => {
                let Some(id) = framework.id.clone() else {
                    return;
                };
                if let Some(f) = self.frameworks.get_mut(&id.value) {
                    f.info = framework;
                }
                self.touch(&id.value, None);
                for f in self.updates.resend_framework(&id, self.now) {
                    self.forward(f);
                }
            }
        }
    }

    fn acknowledge(&mut self, framework_id: FrameworkId, task_id: TaskId, uuid: bytes::Bytes) {
        match self
            .updates
            .acknowledge(&framework_id, &task_id, &uuid, self.now)
        {
            Ok(next) => {
                if let Some(f) = next {
                    self.forward(f);
                }
                // An idle framework leaves once its last update is acknowledged.
                self.maybe_remove_framework(&framework_id.value);
            }
            Err(e) => tracing::debug!(error = %e, "acknowledgement ignored"),
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
                // As Mesos does for the default executor: the agent supplies the program (ours
                // runs task groups too) and the SUBSCRIBED event shows it.
                let default = e.r#type == Some(v1::executor_info::Type::Default as i32);
                if default && e.command.is_none() {
                    let argv = &self.config.command_executor;
                    e.command = Some(CommandInfo {
                        shell: Some(false),
                        value: argv.first().cloned(),
                        arguments: argv.clone(),
                        ..Default::default()
                    });
                }
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

        if fw.info.checkpoint == Some(true) {
            self.dirty.insert((fid.value.clone(), Some(eid.clone())));
        }
        if let Some(e) = fw.executors.get_mut(&eid) {
            match e.state {
                ExecState::Registering => {
                    e.queued.push(work);
                    return;
                }
                ExecState::Running => {
                    launch_on(&mut self.actions, e, work);
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

    /// Creates the executor (REGISTERING) and asks the driver to launch it ([`Action::Launch`]:
    /// sandbox, fetch, spawn; it reports [`AgentCore::launched`] and [`AgentCore::exited`]).
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
        let mut resources = info.resources.clone();
        for t in work.tasks() {
            resources.extend(t.resources.iter().cloned());
        }
        let task = match &work {
            Pending::Task(t) if command => Some(t.clone()),
            _ => None,
        };

        self.actions.push_back(Action::Launch(Box::new(Launch {
            framework_id: fid.value.clone(),
            executor_id: eid.clone(),
            container_id: container_id.clone(),
            command: info.command.clone(),
            env,
            directory: dir.clone(),
            executor: info.clone(),
            task,
            resources,
            user: fw_info.user.clone(),
        })));

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
                framework_id: fid.value.clone(),
                queued: vec![work],
                launched: BTreeMap::new(),
                completed: Vec::new(),
                ever_launched: false,
                registration_timed_out: false,
                limitation: None,
                recovered: false,
                reregistration_timed_out: false,
            },
        );
    }

    /// The executor's process started (`Ok(pid)`) or could not be started (`Err(why)`).
    pub(crate) fn launched(
        &mut self,
        now: Instant,
        fid: &str,
        eid: &str,
        cid: &str,
        result: Result<Option<u32>, String>,
    ) {
        self.now = now;
        self.touch(fid, Some(eid));
        let timeout = self.config.executor_registration_timeout;
        let Some(e) =
            executor_mut(&mut self.frameworks, fid, eid).filter(|e| e.container_id == cid)
        else {
            if let Ok(Some(pgid)) = result {
                self.actions.push_back(Action::Kill { pgid });
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
                match e.state {
                    ExecState::Registering => {}
                    // Subscribed before this report arrived: nothing to time.
                    ExecState::Running => return,
                    // Shut down (or all its tasks killed) while launching.
                    ExecState::Terminating | ExecState::Terminated => {
                        self.actions.push_back(Action::Kill { pgid: pid });
                        return;
                    }
                }
                self.actions.push_back(Action::Timer {
                    after: timeout,
                    timer: Timer::Registration {
                        framework_id: fid.to_owned(),
                        executor_id: eid.to_owned(),
                        container_id: cid.to_owned(),
                    },
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
                self.actions
                    .push_back(Action::ToMaster(ToMaster::ExecutorExited {
                        agent_id: self.config.id.clone(),
                        framework_id: fid_v,
                        executor_id,
                        status: -1,
                        command_executor: command,
                    }));
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
            if let Some(e) = executor_mut(&mut self.frameworks, &fid.value, &eid.value)
                && !e.ever_launched
                && e.queued.is_empty()
                && e.state == ExecState::Registering
            {
                // Never given a task: nothing to shut down gracefully.
                e.state = ExecState::Terminating;
                if let Some(pgid) = e.pid {
                    self.actions.push_back(Action::Kill { pgid });
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
        e.send(&mut self.actions, ev);
    }

    fn shutdown_executor(&mut self, fid: &str, eid: &str) {
        let default_grace = self.config.executor_shutdown_grace;
        let Some(e) = executor_mut(&mut self.frameworks, fid, eid) else {
            return;
        };
        if e.state == ExecState::Terminated {
            return;
        }
        let was = e.state;
        e.state = ExecState::Terminating;
        if was == ExecState::Running {
            e.send(&mut self.actions, event_of(event::Type::Shutdown));
            let grace = e
                .info
                .shutdown_grace_period
                .as_ref()
                .map(duration_of)
                .unwrap_or(default_grace);
            self.actions.push_back(Action::Timer {
                after: grace,
                timer: Timer::ShutdownGrace {
                    framework_id: fid.to_owned(),
                    executor_id: eid.to_owned(),
                    container_id: e.container_id.clone(),
                },
            });
        } else if let Some(pgid) = e.pid {
            self.actions.push_back(Action::Kill { pgid });
        }
    }

    fn shutdown_framework(&mut self, fid: &FrameworkId) {
        self.touch(&fid.value, None);
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
        if self.frameworks.get(fid).is_some_and(|f| {
            f.executors.is_empty()
                && !self.decorating.contains_key(fid)
                && (f.terminating
                    || !self.updates.has_pending(&FrameworkId {
                        value: fid.to_owned(),
                    }))
        }) && let Some(f) = self.frameworks.remove(fid)
        {
            self.dirty.insert((fid.to_owned(), None));
            self.completed_frameworks.push(f);
            if self.completed_frameworks.len() > 50 {
                self.completed_frameworks.remove(0);
            }
        }
    }

    /// The container must be destroyed (an isolator's watch reported a limitation, or its
    /// `isolate` failed): its executor's tree is killed, and its open tasks fail with
    /// `reason` and `message` once it has exited (as Mesos destroys a limited container).
    pub(crate) fn limited(
        &mut self,
        now: Instant,
        fid: &str,
        eid: &str,
        cid: &str,
        reason: task_status::Reason,
        message: String,
    ) {
        self.now = now;
        let Some(e) =
            executor_mut(&mut self.frameworks, fid, eid).filter(|e| e.container_id == cid)
        else {
            return;
        };
        if e.state == ExecState::Terminated || e.limitation.is_some() {
            return;
        }
        tracing::warn!(framework_id = fid, executor_id = eid, %message, "destroying the container");
        e.limitation = Some((reason, message));
        e.state = ExecState::Terminating;
        if let Some(pgid) = e.pid {
            self.actions.push_back(Action::Kill { pgid });
        }
    }

    /// The framework and executor infos of a live executor (for the remove-executor hook).
    pub(crate) fn executor_infos(
        &self,
        fid: &str,
        eid: &str,
    ) -> Option<(FrameworkInfo, ExecutorInfo)> {
        let f = self.frameworks.get(fid)?;
        let e = f.executors.get(eid)?;
        Some((f.info.clone(), e.info.clone()))
    }

    /// The executor's process ended with the raw wait `status`.
    pub(crate) fn exited(&mut self, now: Instant, fid: &str, eid: &str, cid: &str, status: i32) {
        self.now = now;
        self.touch(fid, Some(eid));
        let Some(fw) = self.frameworks.get_mut(fid) else {
            return;
        };
        let terminating = fw.terminating;
        let Some(e) = fw.executors.get_mut(eid).filter(|e| e.container_id == cid) else {
            return;
        };
        e.state = ExecState::Terminated;
        if let Some(pgid) = e.pid {
            // As Mesos destroys the container: what is left of the group goes too.
            self.actions.push_back(Action::KillGroup { pgid });
        }
        self.actions.push_back(Action::CloseStream {
            framework_id: fid.to_owned(),
            executor_id: eid.to_owned(),
        });
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
        let mut state = TaskState::TaskFailed;
        let (reason, message) = if let Some((reason, message)) = e.limitation.clone() {
            (reason, message)
        } else if e.reregistration_timed_out {
            // Mesos's `reregisterExecutorTimeout`: the container is destroyed with TASK_GONE
            // (partition-aware) or TASK_LOST.
            state = if partition_aware(&fw.info) {
                TaskState::TaskGone
            } else {
                TaskState::TaskLost
            };
            (
                task_status::Reason::ExecutorReregistrationTimeout,
                format!(
                    "Executor did not re-subscribe within {}",
                    format_duration(self.config.executor_reregistration_timeout)
                ),
            )
        } else if e.registration_timed_out {
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
                self.agent_update(&fid_v, tid, Some(&executor_id), state, reason, &message);
            }
        }
        let fw = self.frameworks.get_mut(fid).expect("framework");
        let e = fw.executors.remove(eid).expect("executor");
        fw.completed_executors.push(e);
        if fw.completed_executors.len() > 150 {
            fw.completed_executors.remove(0);
        }
        self.actions
            .push_back(Action::ToMaster(ToMaster::ExecutorExited {
                agent_id: self.config.id.clone(),
                framework_id: fid_v,
                executor_id,
                status,
                command_executor: command,
            }));
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
            timestamp: Some(self.wall()),
            uuid: Some(new_uuid()),
            ..Default::default()
        };
        if !self.decorate_agent_updates {
            self.record(fid, eid.map(|e| e.value.as_str()), status);
            return;
        }
        if self
            .frameworks
            .get(&fid.value)
            .is_some_and(|f| f.terminating)
            || self.updates.is_terminated(fid, tid)
        {
            return;
        }
        // The task's bookkeeping changes now (the executor may be gone by the time the hooks
        // answer); the update enters its stream when they have.
        self.note_task_state(fid, eid.map(|e| e.value.as_str()), &status);
        *self.decorating.entry(fid.value.clone()).or_default() += 1;
        self.actions.push_back(Action::DecorateStatus {
            framework_id: fid.clone(),
            status: Box::new(status),
        });
    }

    /// An agent-made update back from the task status decorator hooks: into its stream.
    pub(crate) fn decorated_update(&mut self, now: Instant, fid: &FrameworkId, status: TaskStatus) {
        self.now = now;
        if let Some(n) = self.decorating.get_mut(&fid.value) {
            *n -= 1;
            if *n == 0 {
                self.decorating.remove(&fid.value);
            }
        }
        if self
            .frameworks
            .get(&fid.value)
            .is_some_and(|f| f.terminating)
        {
            // Shut down meanwhile: the update is dropped, and the framework may go now.
            self.maybe_remove_framework(&fid.value);
            return;
        }
        if let Some(eid) = &status.executor_id {
            self.touch(&fid.value, Some(&eid.value));
        }
        let (_, fwd) = self.updates.update(fid, status, self.now);
        if let Some(f) = fwd {
            self.forward(f);
        }
    }

    /// Notes the update in the task bookkeeping and the status-update manager, and forwards
    /// it if it is the head of its stream. Returns what the manager made of it.
    fn record(&mut self, fid: &FrameworkId, eid: Option<&str>, status: TaskStatus) -> Recorded {
        if let Some(eid) = eid {
            self.touch(&fid.value, Some(eid));
        }
        if self
            .frameworks
            .get(&fid.value)
            .is_some_and(|f| f.terminating)
        {
            return Recorded::AfterTerminal;
        }
        let (recorded, fwd) = self.updates.update(fid, status.clone(), self.now);
        if recorded == Recorded::New {
            self.note_task_state(fid, eid, &status);
        }
        if let Some(f) = fwd {
            self.forward(f);
        }
        recorded
    }

    fn note_task_state(&mut self, fid: &FrameworkId, eid: Option<&str>, status: &TaskStatus) {
        if let Some(eid) = eid {
            self.touch(&fid.value, Some(eid));
        }
        let state = state_of(status.state);
        let wall = self.wall();
        let Some(fw) = self.frameworks.get_mut(&fid.value) else {
            return;
        };
        let Some(e) = eid.and_then(|eid| fw.executors.get_mut(eid)) else {
            return;
        };
        let tid = &status.task_id.value;
        let mut kept = status.clone();
        kept.data = None;
        kept.timestamp.get_or_insert(wall);
        if is_terminal(state) {
            *self.terminal_counts.entry(state.as_str_name()).or_default() += 1;
        }
        if let Some(t) = e.launched.get_mut(tid) {
            t.state = state;
            t.statuses.push(kept);
            if is_terminal(state) {
                let t = e.launched.remove(tid).expect("task");
                push_completed(&mut e.completed, t);
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
            push_completed(
                &mut e.completed,
                Task {
                    info,
                    state,
                    statuses: vec![kept],
                },
            );
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
        self.actions
            .push_back(Action::ToMaster(ToMaster::StatusUpdate {
                agent_id: self.config.id.clone(),
                framework_id: f.framework_id,
                status: f.status,
                latest_state: f.latest_state,
            }));
    }

    // ----- executor calls (validated by executor_api) -----

    /// A syntactically valid executor call; the reply tells the HTTP front what to answer.
    pub(crate) fn executor_call(&mut self, now: Instant, call: ExecutorCall) -> CallReply {
        self.now = now;
        let fid = call.framework_id.clone();
        let eid = call.executor_id.value.clone();
        let Some(fw) = self.frameworks.get_mut(&fid.value) else {
            return CallReply::BadRequest("Framework cannot be found");
        };
        let fw_terminating = fw.terminating;
        let fw_info = fw.info.clone();
        let pa = partition_aware(&fw_info);
        let checkpointing = fw_info.checkpoint == Some(true);
        let Some(e) = fw.executors.get_mut(&eid) else {
            return CallReply::BadRequest("Executor cannot be found");
        };
        match call.kind {
            Kind::Subscribe { subscribe, media } => {
                // A new subscription replaces (and so closes) the previous stream.
                self.actions.push_back(Action::OpenStream {
                    framework_id: fid.value.clone(),
                    executor_id: eid.clone(),
                    media,
                });
                if fw_terminating || e.state == ExecState::Terminating {
                    e.send(&mut self.actions, event_of(event::Type::Shutdown));
                    self.actions.push_back(Action::CloseStream {
                        framework_id: fid.value.clone(),
                        executor_id: eid.clone(),
                    });
                    return CallReply::Stream(media);
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
                e.send(&mut self.actions, ev);
                let was = e.state;
                e.state = ExecState::Running;
                if checkpointing {
                    self.dirty.insert((fid.value.clone(), Some(eid.clone())));
                }
                let mut dropped = Vec::new();
                if std::mem::take(&mut e.recovered) {
                    // Mesos: a task still STAGING that the executor does not list as
                    // unacknowledged never reached it (launched during the agent restart).
                    dropped = e
                        .launched
                        .values()
                        .filter(|t| t.state == TaskState::TaskStaging)
                        .filter(|t| {
                            !subscribe
                                .unacknowledged_tasks
                                .iter()
                                .any(|u| u.task_id == t.info.task_id)
                        })
                        .map(|t| t.info.task_id.clone())
                        .collect();
                }
                if was == ExecState::Registering {
                    for work in std::mem::take(&mut e.queued) {
                        launch_on(&mut self.actions, e, work);
                    }
                }
                let executor_id = e.info.executor_id.clone();
                let state = if pa {
                    TaskState::TaskDropped
                } else {
                    TaskState::TaskLost
                };
                for tid in dropped {
                    self.agent_update(
                        &fid,
                        &tid,
                        Some(&executor_id),
                        state,
                        task_status::Reason::AgentRestarted,
                        "Task launched during agent restart",
                    );
                }
                // Re-subscription: updates the executor never saw acknowledged are processed
                // as new ones (duplicates are re-acknowledged).
                for u in subscribe.unacknowledged_updates {
                    self.executor_update(&fid, &eid, u.status);
                }
                CallReply::Stream(media)
            }
            _ if e.state == ExecState::Registering => {
                CallReply::Forbidden("Executor is not subscribed")
            }
            Kind::Update(status) => {
                self.executor_update(&fid, &eid, status);
                CallReply::Accepted
            }
            Kind::Message(data) => {
                self.actions
                    .push_back(Action::ToMaster(ToMaster::ExecutorMessage {
                        agent_id: self.config.id.clone(),
                        framework_id: fid,
                        executor_id: call.executor_id,
                        data,
                    }));
                CallReply::Accepted
            }
        }
    }

    /// An UPDATE from an executor: fill in the ids, record, acknowledge to the executor.
    fn executor_update(&mut self, fid: &FrameworkId, eid: &str, mut status: TaskStatus) {
        let wall = self.wall();
        let Some(e) = executor_mut(&mut self.frameworks, &fid.value, eid) else {
            return;
        };
        status.agent_id = Some(self.config.id.clone());
        status.executor_id = Some(e.info.executor_id.clone());
        if status.timestamp.is_none() {
            status.timestamp = Some(wall);
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
        // A task whose terminal update was acknowledged has no stream any more.
        let done = e.completed.iter().any(|t| t.info.task_id == task_id)
            && self.updates.latest_state(fid, &task_id).is_none();
        let recorded = if done {
            Recorded::AfterTerminal
        } else {
            self.record(fid, Some(eid), status)
        };
        if recorded == Recorded::AfterTerminal {
            tracing::debug!(framework_id = %fid.value, task_id = %task_id.value, "update after a terminal one dropped");
        }
        if let Some(e) = executor_mut(&mut self.frameworks, &fid.value, eid) {
            let mut ev = event_of(event::Type::Acknowledged);
            ev.acknowledged = Some(event::Acknowledged { task_id, uuid });
            e.send(&mut self.actions, ev);
        }
    }
}

// ----- checkpoints and recovery -----

impl AgentCore {
    /// The checkpoint records of a checkpointing framework's executor runs: every live
    /// executor, and every exited one that still has unacknowledged updates. Keyed by
    /// (executor id, container id). Empty for a framework that does not checkpoint (or is gone).
    pub(crate) fn checkpoint_records(
        &self,
        fid: &str,
        eid: Option<&str>,
    ) -> Vec<((String, String), Record)> {
        let wanted = |e: &Executor| eid.is_none_or(|id| e.info.executor_id.value == id);
        let Some(fw) = self
            .frameworks
            .get(fid)
            .filter(|f| f.info.checkpoint == Some(true) && !f.terminating)
        else {
            return Vec::new();
        };
        let fid_v = FrameworkId {
            value: fid.to_owned(),
        };
        let unacked = |ids: &mut dyn Iterator<Item = &TaskId>| -> Vec<TaskStatus> {
            ids.flat_map(|t| self.updates.unacknowledged(&fid_v, t))
                .collect()
        };
        let mut out = Vec::new();
        for e in fw.executors.values().filter(|e| wanted(e)) {
            let mut ids = e
                .queued
                .iter()
                .flat_map(|p| p.tasks())
                .map(|t| &t.task_id)
                .chain(e.launched.values().map(|t| &t.info.task_id))
                .chain(e.completed.iter().map(|t| &t.info.task_id));
            let updates = unacked(&mut ids);
            out.push((
                (e.info.executor_id.value.clone(), e.container_id.clone()),
                record_of(&fw.info, e, true, updates),
            ));
        }
        for e in fw.completed_executors.iter().filter(|e| wanted(e)) {
            if fw.executors.contains_key(&e.info.executor_id.value) {
                continue;
            }
            let mut ids = e.completed.iter().map(|t| &t.info.task_id);
            let updates = unacked(&mut ids);
            if !updates.is_empty() {
                out.push((
                    (e.info.executor_id.value.clone(), e.container_id.clone()),
                    record_of(&fw.info, e, false, updates),
                ));
            }
        }
        out
    }

    /// Puts back what the agent checkpointed before its restart. Live executors wait for
    /// their executor to re-subscribe (until [`Timer::Reregistration`]); the driver watches
    /// their processes and reports [`AgentCore::exited`]. Unacknowledged updates are resent.
    pub(crate) fn recover(&mut self, now: Instant, records: Vec<Record>) {
        self.now = now;
        let mut waiting = false;
        for r in records {
            let fid = r.framework.id.clone().unwrap_or_default();
            self.dirty.insert((fid.value.clone(), None));
            let fw = self
                .frameworks
                .entry(fid.value.clone())
                .or_insert_with(|| Framework {
                    info: r.framework.clone(),
                    executors: BTreeMap::new(),
                    completed_executors: Vec::new(),
                    terminating: false,
                });
            let mut e = Executor {
                info: r.executor,
                container_id: r.container_id,
                directory: r.directory,
                command: r.command,
                state: if r.live {
                    ExecState::Registering
                } else {
                    ExecState::Terminated
                },
                pid: r.pid,
                framework_id: fid.value.clone(),
                queued: r.queued,
                launched: BTreeMap::new(),
                completed: Vec::new(),
                ever_launched: r.ever_launched,
                registration_timed_out: false,
                limitation: None,
                recovered: r.live,
                reregistration_timed_out: false,
            };
            for (info, state) in r.launched {
                let t = Task {
                    info,
                    state,
                    statuses: Vec::new(),
                };
                if is_terminal(state) {
                    e.completed.push(t);
                } else {
                    e.launched.insert(t.info.task_id.value.clone(), t);
                }
            }
            tracing::info!(
                framework_id = %fid.value,
                executor_id = %e.info.executor_id.value,
                container_id = %e.container_id,
                live = r.live,
                pid = ?e.pid,
                "recovered executor"
            );
            if r.live {
                waiting = true;
                fw.executors.insert(e.info.executor_id.value.clone(), e);
            } else {
                fw.completed_executors.push(e);
            }
            for u in r.updates {
                let (_, fwd) = self.updates.update(&fid, u, now);
                if let Some(f) = fwd {
                    self.forward(f);
                }
            }
        }
        if waiting {
            self.actions.push_back(Action::Timer {
                after: self.config.executor_reregistration_timeout,
                timer: Timer::Reregistration,
            });
        }
    }

    /// Every (framework, task) the agent knows, for its re-registration with the master.
    pub(crate) fn known_tasks(&self) -> Vec<(FrameworkId, TaskId)> {
        let mut out = Vec::new();
        for (fid, fw) in &self.frameworks {
            let f = FrameworkId { value: fid.clone() };
            for e in fw.executors.values() {
                for t in e.queued.iter().flat_map(|p| p.tasks()) {
                    out.push((f.clone(), t.task_id.clone()));
                }
                for t in e.launched.values() {
                    out.push((f.clone(), t.info.task_id.clone()));
                }
            }
        }
        out
    }

    /// (framework id, executor id, container id, pid) of the executors recovered and not
    /// yet re-subscribed or exited, whose processes the driver must watch.
    pub(crate) fn recovered_executors(&self) -> Vec<(String, String, String, Option<u32>)> {
        self.frameworks
            .values()
            .flat_map(|f| f.executors.values())
            .filter(|e| e.recovered)
            .map(|e| {
                (
                    e.framework_id.clone(),
                    e.info.executor_id.value.clone(),
                    e.container_id.clone(),
                    e.pid,
                )
            })
            .collect()
    }

    /// Process groups of the live executors of frameworks that do not checkpoint (they do not
    /// survive an agent restart).
    pub(crate) fn uncheckpointed_process_groups(&self) -> Vec<u32> {
        self.frameworks
            .values()
            .filter(|f| f.info.checkpoint != Some(true))
            .flat_map(|f| f.executors.values())
            .filter_map(|e| e.pid)
            .collect()
    }
}

fn record_of(fw: &FrameworkInfo, e: &Executor, live: bool, updates: Vec<TaskStatus>) -> Record {
    Record {
        framework: fw.clone(),
        executor: e.info.clone(),
        container_id: e.container_id.clone(),
        directory: e.directory.clone(),
        command: e.command,
        pid: e.pid,
        live,
        ever_launched: e.ever_launched,
        queued: if live { e.queued.clone() } else { Vec::new() },
        launched: if live {
            e.launched
                .values()
                .map(|t| (t.info.clone(), t.state))
                .collect()
        } else {
            Vec::new()
        },
        updates,
    }
}

/// Keeps at most 200 completed tasks per executor, as Mesos does.
fn push_completed(completed: &mut Vec<Task>, t: Task) {
    if completed.len() >= 200 {
        completed.remove(0);
    }
    completed.push(t);
}

/// Hands work to a subscribed executor: LAUNCH / LAUNCH_GROUP; the tasks are STAGING.
fn launch_on(out: &mut VecDeque<Action>, e: &mut Executor, work: Pending) {
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
    e.send(out, ev);
}

/// The executor `eid` of framework `fid`. Takes the map rather than `&mut self`, so callers
/// can still push actions while they hold the executor.
fn executor_mut<'a>(
    frameworks: &'a mut BTreeMap<String, Framework>,
    fid: &str,
    eid: &str,
) -> Option<&'a mut Executor> {
    frameworks.get_mut(fid)?.executors.get_mut(eid)
}

#[cfg(test)]
mod tests {
    use super::*;
    use mesokit_proto::helpers::{self, new_uuid};
    use mesokit_proto::v1::AgentId;

    const FID: &str = "fw-1";

    fn core() -> (AgentCore, Instant) {
        let mut c = AgentConfig::new(
            AgentId { value: "S0".into() },
            "localhost",
            std::net::Ipv4Addr::LOCALHOST,
            5051,
            "/work",
            vec!["/bin/mesokit".into(), "executor".into()],
        );
        c.resources = vec![helpers::cpus(2.0)];
        let t0 = Instant::now();
        (AgentCore::new(Arc::new(c), t0, 1_000.0), t0)
    }

    fn drain(c: &mut AgentCore) -> Vec<Action> {
        std::iter::from_fn(|| c.poll_action()).collect()
    }

    fn framework() -> FrameworkInfo {
        FrameworkInfo {
            user: "u".into(),
            name: "f".into(),
            id: Some(FrameworkId { value: FID.into() }),
            ..Default::default()
        }
    }

    fn fid() -> FrameworkId {
        FrameworkId { value: FID.into() }
    }

    fn run_command_task(c: &mut AgentCore, now: Instant, id: &str) {
        let task = helpers::TaskBuilder::new(id, id, "S0")
            .cpus(1.0)
            .shell("sleep 1")
            .build();
        c.handle_master(
            now,
            ToAgent::RunTask {
                framework: framework(),
                executor: None,
                task,
            },
        );
    }

    fn call(eid: &str, kind: Kind) -> ExecutorCall {
        ExecutorCall {
            framework_id: fid(),
            executor_id: ExecutorId { value: eid.into() },
            kind,
        }
    }

    fn subscribe(eid: &str) -> ExecutorCall {
        call(
            eid,
            Kind::Subscribe {
                subscribe: Box::default(),
                media: Media::Json,
            },
        )
    }

    fn update(task: &str, state: TaskState) -> TaskStatus {
        TaskStatus {
            task_id: TaskId { value: task.into() },
            state: state as i32,
            source: Some(task_status::Source::Executor as i32),
            uuid: Some(new_uuid()),
            ..Default::default()
        }
    }

    fn events(actions: &[Action]) -> Vec<event::Type> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Event { event, .. } => {
                    event.r#type.and_then(|t| event::Type::try_from(t).ok())
                }
                _ => None,
            })
            .collect()
    }

    fn updates(actions: &[Action]) -> Vec<(TaskStatus, TaskState)> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::ToMaster(ToMaster::StatusUpdate {
                    status,
                    latest_state,
                    ..
                }) => Some((status.clone(), *latest_state)),
                _ => None,
            })
            .collect()
    }

    fn exited(actions: &[Action]) -> Option<(i32, bool)> {
        actions.iter().find_map(|a| match a {
            Action::ToMaster(ToMaster::ExecutorExited {
                status,
                command_executor,
                ..
            }) => Some((*status, *command_executor)),
            _ => None,
        })
    }

    /// A checkpointing framework's command task t1, RUNNING on a subscribed executor with
    /// pid 77, plus t2 delivered but still STAGING; returns the agent's checkpoint records.
    fn checkpointed() -> (Vec<Record>, String) {
        let (mut c, t0) = core();
        let mut fw = framework();
        fw.checkpoint = Some(true);
        let task = helpers::TaskBuilder::new("t1", "t1", "S0")
            .cpus(1.0)
            .shell("sleep 1")
            .build();
        c.handle_master(
            t0,
            ToAgent::RunTask {
                framework: fw,
                executor: None,
                task,
            },
        );
        let a = drain(&mut c);
        let [Action::Launch(l)] = &a[..] else {
            panic!("{a:?}")
        };
        let cid = l.container_id.clone();
        c.launched(t0, FID, "t1", &cid, Ok(Some(77)));
        c.executor_call(t0, subscribe("t1"));
        c.executor_call(
            t0,
            call("t1", Kind::Update(update("t1", TaskState::TaskRunning))),
        );
        drain(&mut c);
        assert!(
            c.take_dirty()
                .contains(&(FID.to_owned(), Some("t1".to_owned())))
        );
        let records: Vec<Record> = c
            .checkpoint_records(FID, None)
            .into_iter()
            .map(|(_, r)| Record::decode(&r.encode()).expect("round trip"))
            .collect();
        (records, cid)
    }

    #[test]
    fn a_recovered_executor_resubscribes_and_its_unacknowledged_update_is_resent() {
        let (records, cid) = checkpointed();
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].pid, Some(77));
        assert_eq!(
            records[0].updates.len(),
            1,
            "RUNNING is not acknowledged yet"
        );

        let (mut c, t0) = core();
        c.recover(t0, records);
        let a = drain(&mut c);
        let ups = updates(&a);
        assert_eq!(ups.len(), 1);
        assert_eq!(state_of(ups[0].0.state), TaskState::TaskRunning);
        assert!(a.iter().any(|a| matches!(
            a,
            Action::Timer {
                timer: Timer::Reregistration,
                ..
            }
        )));
        assert_eq!(
            c.recovered_executors(),
            [(FID.to_owned(), "t1".to_owned(), cid.clone(), Some(77))]
        );
        assert_eq!(c.known_tasks(), [(fid(), TaskId { value: "t1".into() })]);
        // Re-subscription: SUBSCRIBED with the same container, no new LAUNCH.
        assert_eq!(
            c.executor_call(t0, subscribe("t1")),
            CallReply::Stream(Media::Json)
        );
        assert_eq!(events(&drain(&mut c)), [event::Type::Subscribed]);
        c.timer(t0, Timer::Reregistration);
        assert!(
            drain(&mut c).is_empty(),
            "re-subscribed in time: nothing killed"
        );
    }

    #[test]
    fn a_recovered_executor_that_does_not_resubscribe_is_killed_and_its_task_lost() {
        let (records, cid) = checkpointed();
        let (mut c, t0) = core();
        c.recover(t0, records);
        drain(&mut c);
        c.timer(t0, Timer::Reregistration);
        let a = drain(&mut c);
        assert!(
            a.iter().any(|a| matches!(a, Action::Kill { pgid: 77 })),
            "{a:?}"
        );
        c.exited(t0, FID, "t1", &cid, -1);
        let a = drain(&mut c);
        let ups = updates(&a);
        // RUNNING is still in flight: the terminal update waits behind it.
        assert!(ups.is_empty(), "{ups:?}");
        let lost = c
            .updates
            .unacknowledged(&fid(), &TaskId { value: "t1".into() });
        assert_eq!(state_of(lost[1].state), TaskState::TaskLost);
        assert_eq!(
            lost[1].reason,
            Some(task_status::Reason::ExecutorReregistrationTimeout as i32)
        );
        assert_eq!(exited(&a), Some((-1, true)));
    }

    #[test]
    fn an_agent_made_update_waits_for_the_decorator_and_keeps_its_framework() {
        let (mut c, t0) = core();
        c.decorate_agent_updates();
        run_command_task(&mut c, t0, "t1");
        let a = drain(&mut c);
        let [Action::Launch(l)] = &a[..] else {
            panic!("{a:?}")
        };
        let cid = l.container_id.clone();
        c.launched(t0, FID, "t1", &cid, Err("no such file".into()));
        let a = drain(&mut c);
        assert!(updates(&a).is_empty(), "not sent before the hooks answered");
        let status = a
            .iter()
            .find_map(|a| match a {
                Action::DecorateStatus { status, .. } => Some(status.as_ref().clone()),
                _ => None,
            })
            .expect("sent to the decorator");
        assert_eq!(state_of(status.state), TaskState::TaskFailed);
        assert!(c.frameworks.contains_key(FID), "kept while decorating");
        let mut decorated = status.clone();
        decorated.labels = Some(v1::Labels::default());
        c.decorated_update(t0, &fid(), decorated);
        let ups = updates(&drain(&mut c));
        assert_eq!(ups.len(), 1);
        assert!(ups[0].0.labels.is_some());
    }

    #[test]
    fn a_command_task_runs_through_launch_subscribe_update_and_ack() {
        let (mut c, t0) = core();
        run_command_task(&mut c, t0, "t1");
        let a = drain(&mut c);
        let [Action::Launch(l)] = &a[..] else {
            panic!("{a:?}")
        };
        assert_eq!(
            (l.framework_id.as_str(), l.executor_id.as_str()),
            (FID, "t1")
        );
        assert_eq!(
            l.directory,
            PathBuf::from("/work/slaves/S0/frameworks/fw-1/executors/t1/runs")
                .join(&l.container_id)
        );
        let cmd = l.command.as_ref().unwrap();
        assert_eq!(cmd.arguments, ["/bin/mesokit", "executor"]);
        assert!(l.env.contains(&("MESOS_EXECUTOR_ID".into(), "t1".into())));
        let cid = l.container_id.clone();

        // A call before SUBSCRIBE is refused.
        assert_eq!(
            c.executor_call(
                t0,
                call("t1", Kind::Update(update("t1", TaskState::TaskRunning)))
            ),
            CallReply::Forbidden("Executor is not subscribed")
        );

        c.launched(t0, FID, "t1", &cid, Ok(Some(4242)));
        let a = drain(&mut c);
        assert!(matches!(
            &a[..],
            [Action::Timer { after, timer: Timer::Registration { .. } }] if *after == Duration::from_secs(60)
        ));

        assert_eq!(
            c.executor_call(t0, subscribe("t1")),
            CallReply::Stream(Media::Json)
        );
        let a = drain(&mut c);
        assert!(matches!(a[0], Action::OpenStream { .. }));
        assert_eq!(events(&a), [event::Type::Subscribed, event::Type::Launch]);

        let running = update("t1", TaskState::TaskRunning);
        assert_eq!(
            c.executor_call(t0, call("t1", Kind::Update(running.clone()))),
            CallReply::Accepted
        );
        let a = drain(&mut c);
        assert_eq!(events(&a), [event::Type::Acknowledged]);
        let [(s, latest)] = &updates(&a)[..] else {
            panic!("{a:?}")
        };
        assert_eq!(s.uuid, running.uuid);
        assert_eq!(*latest, TaskState::TaskRunning);
        assert_eq!(s.timestamp, Some(1_000.0));
        assert_eq!(
            s.container_status.as_ref().unwrap().executor_pid,
            Some(4242)
        );

        // Retried after 10 s, then 20 s; the ack stops it.
        assert_eq!(c.poll_timeout(), Some(t0 + Duration::from_secs(10)));
        c.handle_timeout(t0 + Duration::from_secs(10));
        assert_eq!(updates(&drain(&mut c)).len(), 1);
        assert_eq!(c.poll_timeout(), Some(t0 + Duration::from_secs(30)));
        c.handle_master(
            t0,
            ToAgent::Acknowledge {
                framework_id: fid(),
                task_id: TaskId { value: "t1".into() },
                uuid: running.uuid.clone().unwrap(),
            },
        );
        assert!(drain(&mut c).is_empty());
        assert_eq!(c.poll_timeout(), None);

        // The process ends: the running task fails, the master hears of it, the stream closes.
        c.exited(t0, FID, "t1", &cid, 0);
        let a = drain(&mut c);
        let [(s, _)] = &updates(&a)[..] else {
            panic!("{a:?}")
        };
        assert_eq!(s.state, TaskState::TaskFailed as i32);
        assert_eq!(
            s.reason,
            Some(task_status::Reason::ExecutorTerminated as i32)
        );
        assert!(a.iter().any(|x| matches!(x, Action::CloseStream { .. })));
        assert_eq!(exited(&a), Some((0, true)));

        // Once its last update is acknowledged, the idle framework is completed.
        assert_eq!(c.frameworks.len(), 1);
        c.handle_master(
            t0,
            ToAgent::Acknowledge {
                framework_id: fid(),
                task_id: TaskId { value: "t1".into() },
                uuid: s.uuid.clone().unwrap(),
            },
        );
        assert!(c.frameworks.is_empty());
        assert_eq!(c.completed_frameworks.len(), 1);
        let t = &c.completed_frameworks[0].completed_executors[0].completed[0];
        let states: Vec<i32> = t.statuses.iter().map(|s| s.state).collect();
        assert_eq!(
            states,
            [TaskState::TaskRunning as i32, TaskState::TaskFailed as i32]
        );
    }

    #[test]
    fn a_task_group_runs_under_the_default_executor_and_is_killed_as_a_whole() {
        let (mut c, t0) = core();
        let executor = ExecutorInfo {
            r#type: Some(v1::executor_info::Type::Default as i32),
            executor_id: ExecutorId { value: "d1".into() },
            resources: vec![helpers::cpus(0.1)],
            ..Default::default()
        };
        let group = TaskGroupInfo {
            tasks: vec![
                helpers::TaskBuilder::new("a", "a", "S0")
                    .shell("true")
                    .build(),
                helpers::TaskBuilder::new("b", "b", "S0")
                    .shell("true")
                    .build(),
            ],
        };
        let run = |c: &mut AgentCore, group: TaskGroupInfo| {
            c.handle_master(
                t0,
                ToAgent::RunTaskGroup {
                    framework: framework(),
                    executor: executor.clone(),
                    group,
                },
            )
        };
        let mut g2 = group.clone();
        g2.tasks.truncate(1);
        g2.tasks[0].task_id.value = "c".into();
        run(&mut c, group);
        let a = drain(&mut c);
        let [Action::Launch(l)] = &a[..] else {
            panic!("{a:?}")
        };
        let cmd = l
            .command
            .as_ref()
            .expect("the agent supplies the default executor");
        assert_eq!(cmd.arguments, ["/bin/mesokit", "executor"]);
        run(&mut c, g2);
        assert!(drain(&mut c).is_empty(), "queued behind the first group");

        // Killing one queued task of a group kills the whole group.
        c.handle_master(
            t0,
            ToAgent::KillTask {
                framework_id: fid(),
                task_id: TaskId { value: "b".into() },
                kill_policy: None,
            },
        );
        let a = drain(&mut c);
        let killed: Vec<(String, i32)> = updates(&a)
            .into_iter()
            .map(|(s, _)| (s.task_id.value, s.state))
            .collect();
        let k = TaskState::TaskKilled as i32;
        assert_eq!(killed, [("a".to_owned(), k), ("b".to_owned(), k)]);

        // SUBSCRIBE: the remaining group goes out as LAUNCH_GROUP.
        c.launched(t0, FID, "d1", &l.container_id, Ok(Some(3)));
        drain(&mut c);
        c.executor_call(t0, subscribe("d1"));
        let a = drain(&mut c);
        assert_eq!(
            events(&a),
            [event::Type::Subscribed, event::Type::LaunchGroup]
        );
        let Some(Action::Event { event, .. }) = a.last() else {
            panic!()
        };
        let tasks = &event.launch_group.as_ref().unwrap().task_group.tasks;
        assert_eq!(tasks.len(), 1);
        assert_eq!(tasks[0].task_id.value, "c");
    }

    #[test]
    fn an_acknowledged_terminal_update_is_not_forwarded_again() {
        let (mut c, t0) = core();
        run_command_task(&mut c, t0, "t1");
        let Action::Launch(l) = drain(&mut c).remove(0) else {
            panic!()
        };
        c.launched(t0, FID, "t1", &l.container_id, Ok(Some(5)));
        c.executor_call(t0, subscribe("t1"));
        let finished = update("t1", TaskState::TaskFinished);
        c.executor_call(t0, call("t1", Kind::Update(finished.clone())));
        assert_eq!(updates(&drain(&mut c)).len(), 1);
        c.handle_master(
            t0,
            ToAgent::Acknowledge {
                framework_id: fid(),
                task_id: TaskId { value: "t1".into() },
                uuid: finished.uuid.clone().unwrap(),
            },
        );
        for again in [finished, update("t1", TaskState::TaskFailed)] {
            c.executor_call(t0, call("t1", Kind::Update(again)));
            let a = drain(&mut c);
            assert_eq!(events(&a), [event::Type::Acknowledged]);
            assert!(updates(&a).is_empty());
        }
    }

    #[test]
    fn a_subscription_overtaking_the_launch_report_is_kept() {
        let (mut c, t0) = core();
        run_command_task(&mut c, t0, "t1");
        let Action::Launch(l) = drain(&mut c).remove(0) else {
            panic!()
        };
        assert_eq!(
            c.executor_call(t0, subscribe("t1")),
            CallReply::Stream(Media::Json)
        );
        drain(&mut c);
        c.launched(t0, FID, "t1", &l.container_id, Ok(Some(11)));
        assert!(drain(&mut c).is_empty(), "no kill, no registration timer");
        assert_eq!(c.live_process_groups(), [11]);
    }

    #[test]
    fn registration_timeout_kills_and_fails_with_its_reason() {
        let (mut c, t0) = core();
        run_command_task(&mut c, t0, "t1");
        let Action::Launch(l) = drain(&mut c).remove(0) else {
            panic!()
        };
        c.launched(t0, FID, "t1", &l.container_id, Ok(Some(7)));
        let Action::Timer { timer, .. } = drain(&mut c).remove(0) else {
            panic!()
        };
        c.timer(t0 + Duration::from_secs(60), timer);
        assert!(matches!(drain(&mut c)[..], [Action::Kill { pgid: 7 }]));
        c.exited(t0, FID, "t1", &l.container_id, 9);
        let a = drain(&mut c);
        let [(s, latest)] = &updates(&a)[..] else {
            panic!("{a:?}")
        };
        assert_eq!(*latest, TaskState::TaskFailed);
        assert_eq!(
            s.reason,
            Some(task_status::Reason::ExecutorRegistrationTimeout as i32)
        );
        assert_eq!(s.source, Some(task_status::Source::Agent as i32));
        assert_eq!(exited(&a), Some((9, true)));
    }

    #[test]
    fn a_kill_while_launching_kills_the_process_once_it_exists() {
        let (mut c, t0) = core();
        run_command_task(&mut c, t0, "t1");
        let Action::Launch(l) = drain(&mut c).remove(0) else {
            panic!()
        };
        c.handle_master(
            t0,
            ToAgent::KillTask {
                framework_id: fid(),
                task_id: TaskId { value: "t1".into() },
                kill_policy: None,
            },
        );
        let a = drain(&mut c);
        let [(s, _)] = &updates(&a)[..] else {
            panic!("{a:?}")
        };
        assert_eq!(s.state, TaskState::TaskKilled as i32);
        assert_eq!(
            s.reason,
            Some(task_status::Reason::TaskKilledDuringLaunch as i32)
        );
        c.launched(t0, FID, "t1", &l.container_id, Ok(Some(9)));
        assert!(matches!(drain(&mut c)[..], [Action::Kill { pgid: 9 }]));
        c.exited(t0, FID, "t1", &l.container_id, 9);
        let a = drain(&mut c);
        assert!(updates(&a).is_empty(), "no task is left to fail");
        assert!(exited(&a).is_some());
    }

    #[test]
    fn a_removed_framework_gets_no_more_updates() {
        let (mut c, t0) = core();
        run_command_task(&mut c, t0, "t1");
        let Action::Launch(l) = drain(&mut c).remove(0) else {
            panic!()
        };
        c.launched(t0, FID, "t1", &l.container_id, Ok(Some(5)));
        c.executor_call(t0, subscribe("t1"));
        c.executor_call(
            t0,
            call("t1", Kind::Update(update("t1", TaskState::TaskRunning))),
        );
        drain(&mut c);
        c.handle_master(
            t0,
            ToAgent::ShutdownFramework {
                framework_id: fid(),
            },
        );
        let a = drain(&mut c);
        assert_eq!(events(&a), [event::Type::Shutdown]);
        let Some(Action::Timer { after, timer }) = a.into_iter().last() else {
            panic!()
        };
        assert_eq!(after, Duration::from_secs(5));
        // Updates during the grace period are acknowledged, not forwarded.
        c.executor_call(
            t0,
            call("t1", Kind::Update(update("t1", TaskState::TaskKilled))),
        );
        let a = drain(&mut c);
        assert_eq!(events(&a), [event::Type::Acknowledged]);
        assert!(updates(&a).is_empty());
        c.timer(t0 + after, timer);
        assert!(matches!(drain(&mut c)[..], [Action::Kill { pgid: 5 }]));
        c.exited(t0, FID, "t1", &l.container_id, 9);
        let a = drain(&mut c);
        assert!(updates(&a).is_empty());
        assert!(exited(&a).is_some());
        assert_eq!(c.poll_timeout(), None, "no retries for a removed framework");
        assert!(c.frameworks.is_empty());
        assert_eq!(c.completed_frameworks.len(), 1);
    }

    #[test]
    fn unknown_ids_and_re_subscription_of_a_terminating_executor() {
        let (mut c, t0) = core();
        assert_eq!(
            c.executor_call(t0, subscribe("x")),
            CallReply::BadRequest("Framework cannot be found")
        );
        run_command_task(&mut c, t0, "t1");
        drain(&mut c);
        assert_eq!(
            c.executor_call(t0, subscribe("x")),
            CallReply::BadRequest("Executor cannot be found")
        );
        c.handle_master(
            t0,
            ToAgent::ShutdownExecutor {
                framework_id: fid(),
                executor_id: ExecutorId { value: "t1".into() },
            },
        );
        drain(&mut c);
        // SUBSCRIBE while terminating: SHUTDOWN, then the stream closes.
        assert_eq!(
            c.executor_call(t0, subscribe("t1")),
            CallReply::Stream(Media::Json)
        );
        let a = drain(&mut c);
        assert_eq!(events(&a), [event::Type::Shutdown]);
        assert!(matches!(a.last(), Some(Action::CloseStream { .. })));
    }
}
