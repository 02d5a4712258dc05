//! The executor's bookkeeping as a state machine: agent events, process starts and exits and
//! the passing of time go in; processes to start, signals to send and status updates come
//! out. It does no IO and reads no clock, so a test can play a task's whole life in
//! microseconds; [`crate::run`] drives it against the agent and real processes.
//!
//! The rules are those of the Mesos command executor (`src/launcher/executor.cpp`), and for
//! task groups those of the default executor: TASK_STARTING, TASK_RUNNING once the process
//! exists, one terminal update; a kill is SIGTERM, then SIGKILL after a grace period that a
//! repeated kill may shorten but never extend.
//!
//! Health checks and general checks ([`crate::health`]) start with TASK_RUNNING: the
//! supervisor says when to probe ([`Action::Probe`]), the driver runs the probe and hands the
//! result back ([`Supervisor::handle_probe_result`]); changes go out as TASK_RUNNING updates,
//! and too many failed health checks kill the task (TASK_KILLED with `healthy: false`).

use std::collections::VecDeque;
use std::fmt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use bytes::Bytes;
use mesokit_proto::helpers::new_uuid;
use mesokit_proto::v1::executor::{Event, event};
use mesokit_proto::v1::framework_info::capability::Type as Capability;
use mesokit_proto::v1::task_status::{Reason, Source};
use mesokit_proto::v1::{
    CheckStatusInfo, DurationInfo, KillPolicy, TaskId, TaskInfo, TaskState, TaskStatus,
};

use crate::commands::{self, CommandDef, Plan};
use mesokit_hooks::events::{ChainResult, Event as HookEvent};

use crate::health::{self, CheckRunner, HealthChecker, HealthVerdict, Probe, ProbeError};
use crate::launch::{self, Placement};
use crate::process::{CommandSpec, Signal, Termination};
use crate::progress::{self, Tracking};

/// Grace period between SIGTERM and SIGKILL when neither the KILL event nor the task has a
/// kill policy: Mesos keeps 3 s "for backwards compatibility", and so do we.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(3);

/// Taken off `MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD` for the kill on SHUTDOWN, so that
/// TASK_KILLED is out before the agent destroys the container. Mesos takes 2 s, one of which
/// covers its 1 s polling for exits; we learn of an exit at once.
pub const SHUTDOWN_MARGIN: Duration = Duration::from_secs(1);

/// How long to wait for the agent to acknowledge the terminal updates before exiting anyway.
pub const DEFAULT_ACK_TIMEOUT: Duration = Duration::from_secs(5);

/// At most one progress update (from the task API) per task in this time.
pub const DEFAULT_PROGRESS_INTERVAL: Duration = Duration::from_secs(1);

/// What the supervisor needs to know about its surroundings.
#[derive(Clone)]
#[non_exhaustive]
pub struct Settings {
    /// The executor's own environment; tasks get it minus the executor's secrets (see
    /// [`launch::command_spec`]).
    pub executor_env: Vec<(String, String)>,
    /// The sandbox (`MESOS_SANDBOX`, else `MESOS_DIRECTORY`): the working directory of tasks.
    pub sandbox: Option<PathBuf>,
    /// Grace period when no kill policy says otherwise ([`DEFAULT_GRACE`]).
    pub default_grace: Duration,
    /// `MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD` (5 s): the time between SHUTDOWN and the agent
    /// destroying the container.
    pub shutdown_grace: Duration,
    /// How long to wait for the acknowledgements of terminal updates ([`DEFAULT_ACK_TIMEOUT`]).
    pub ack_timeout: Duration,
    /// Whether [`crate::run`] owns the whole process, as an executor started by an agent
    /// does: it then becomes the child subreaper of its tasks and, before returning, kills
    /// every child process it did not start itself (daemons re-parented to it). Off by
    /// default; on in [`Settings::from_config`]. Leave it off when the process has other
    /// children (tests running executors side by side, say).
    pub own_process: bool,
    /// The operator's before commands, run before the task's (see [`crate::commands`]).
    pub before_commands: Vec<CommandDef>,
    /// The operator's after commands, run after the task's.
    pub after_commands: Vec<CommandDef>,
    /// Serve the task API ([`crate::api`]); on by default.
    pub task_api: bool,
    /// Longest message accepted through the task API, in characters
    /// ([`crate::api::DEFAULT_MAX_MESSAGE`]).
    pub max_message_length: usize,
    /// At most one progress update per task in this time ([`DEFAULT_PROGRESS_INTERVAL`]).
    pub progress_interval: Duration,
    /// The executor's hooks, by name ([`mesokit_hooks::builtin`]), run for every task before
    /// those of its `hooks` label.
    pub hooks: Vec<String>,
    /// Bound of one hook run ([`mesokit_hooks::builtin::DEFAULT_TIMEOUT`]).
    pub hook_timeout: Duration,
    /// Size-based rotation of the tasks' `stdout`/`stderr` ([`crate::rotate`]); off by default.
    pub log_rotation: crate::rotate::LogRotation,
    /// The progress regex of tasks without a `progress_regex` label ([`crate::progress`]);
    /// none by default.
    pub progress_regex: Option<crate::progress::Pattern>,
    /// The progress file of tasks without a `progress_file` label, relative to the task's
    /// sandbox unless absolute ([`crate::progress`]).
    pub progress_file: Option<String>,
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field(
                "executor_env",
                &format_args!("<{} variables>", self.executor_env.len()),
            )
            .field("sandbox", &self.sandbox)
            .field("default_grace", &self.default_grace)
            .field("shutdown_grace", &self.shutdown_grace)
            .field("ack_timeout", &self.ack_timeout)
            .field("own_process", &self.own_process)
            .field("before_commands", &self.before_commands)
            .field("after_commands", &self.after_commands)
            .field("task_api", &self.task_api)
            .field("max_message_length", &self.max_message_length)
            .field("progress_interval", &self.progress_interval)
            .field("hooks", &self.hooks)
            .field("hook_timeout", &self.hook_timeout)
            .field("log_rotation", &self.log_rotation)
            .field(
                "progress_regex",
                &self.progress_regex.as_ref().map(|p| p.as_str()),
            )
            .field("progress_file", &self.progress_file)
            .finish()
    }
}

impl Default for Settings {
    /// No environment, no sandbox, Mesos's timings, not owning the process.
    fn default() -> Self {
        Settings {
            executor_env: Vec::new(),
            sandbox: None,
            default_grace: DEFAULT_GRACE,
            shutdown_grace: Duration::from_secs(5),
            ack_timeout: DEFAULT_ACK_TIMEOUT,
            own_process: false,
            before_commands: Vec::new(),
            after_commands: Vec::new(),
            task_api: true,
            max_message_length: crate::api::DEFAULT_MAX_MESSAGE,
            progress_interval: DEFAULT_PROGRESS_INTERVAL,
            hooks: Vec::new(),
            hook_timeout: mesokit_hooks::builtin::DEFAULT_TIMEOUT,
            log_rotation: crate::rotate::LogRotation::default(),
            progress_regex: None,
            progress_file: None,
        }
    }
}

/// Something for the driver to do.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Action {
    /// Start the task's process, then report with [`Supervisor::handle_spawned`].
    Launch {
        /// The task.
        task_id: TaskId,
        /// Its process.
        command: Box<CommandSpec>,
        /// Its before and after commands, to run around `command` with the same
        /// environment, directory and output.
        plan: Box<Plan>,
        /// Its progress regex and the files to read it from ([`crate::progress`]), if any.
        progress: Option<Box<Tracking>>,
    },
    /// Signal the task's process tree (see [`crate::process::signal_tree`]).
    Signal {
        /// The task.
        task_id: TaskId,
        /// The signal.
        signal: Signal,
    },
    /// Send this status update to the agent. `uuid` and `source` are set; the executor id and
    /// timestamp are left to the client.
    Update(Box<TaskStatus>),
    /// Run the hooks `names` for `event` ([`mesokit_hooks::builtin::Chain::run`]), then
    /// report with [`Supervisor::handle_hooks_done`].
    Hooks {
        /// The task.
        task_id: TaskId,
        /// The event.
        event: HookEvent,
        /// The hooks, in order.
        names: Vec<String>,
        /// The task, as the hooks see it.
        task: Box<TaskInfo>,
    },
    /// Run this probe of the task (at most `timeout`, `None`: unbounded), then report with
    /// [`Supervisor::handle_probe_result`]: [`Probe::health`] for
    /// [`ProbeKind::Health`], [`Probe::check`] for [`ProbeKind::Check`].
    Probe {
        /// The task.
        task_id: TaskId,
        /// Health check or general check.
        kind: ProbeKind,
        /// What to probe.
        probe: Box<Probe>,
        /// The bound of the probe.
        timeout: Option<Duration>,
    },
}

/// Which of a task's checks a probe belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeKind {
    /// `TaskInfo.health_check`.
    Health,
    /// `TaskInfo.check`.
    Check,
}

/// The result of an [`Action::Probe`].
#[derive(Debug)]
pub enum ProbeResult {
    /// Of [`Probe::health`].
    Health(Result<(), String>),
    /// Of [`Probe::check`].
    Check(Result<CheckStatusInfo, ProbeError>),
}

/// The state of the executor's tasks. See the [module documentation](self).
#[derive(Debug)]
pub struct Supervisor {
    settings: Settings,
    /// The framework understands TASK_KILLING.
    killing_state: bool,
    tasks: Vec<Task>,
    next_group: u64,
    /// Groups in which a task failed or was killed: their other tasks are killed, and any
    /// not yet started never start.
    doomed_groups: Vec<u64>,
    /// KILLs for tasks not (yet) seen.
    pre_killed: Vec<TaskId>,
    actions: VecDeque<Action>,
    shutting_down: bool,
    agent_lost: bool,
    /// Uuids of terminal updates not yet ACKNOWLEDGED.
    unacked: Vec<Bytes>,
    /// When to stop waiting for them (set once every task is done).
    ack_deadline: Option<Instant>,
    /// [`Action::Hooks`] not answered yet.
    hooks_in_flight: usize,
}

#[derive(Debug)]
struct Task {
    id: TaskId,
    /// `TaskInfo.kill_policy`'s grace period.
    grace: Option<Duration>,
    group: Option<u64>,
    phase: Phase,
    kill: Option<Kill>,
    /// When `max_completion_time` runs out.
    deadline: Option<Instant>,
    /// The health check, started with TASK_RUNNING.
    health: Option<(HealthChecker, Probe)>,
    /// The general check, started with TASK_RUNNING.
    check: Option<(CheckRunner, Probe)>,
    /// The latest health reported, copied into the task's later updates as Mesos does.
    healthy: Option<bool>,
    /// Progress and message from the task API.
    progress: Option<u8>,
    progress_message: Option<String>,
    /// When the last progress update went out.
    progress_sent: Option<Instant>,
    /// A change not sent yet (throttled).
    progress_pending: bool,
    /// Its hooks (the executor's, then its label's) and the task as they see it.
    hooks: Vec<String>,
    info: Option<Box<TaskInfo>>,
    /// The launch waiting for the before_task_start hooks.
    pending_launch: Option<PendingLaunch>,
    /// The task_healthy hooks ran (they run for the first passing health check only).
    healthy_hooked: bool,
    /// The before_terminate hooks were asked for.
    terminate_hooked: bool,
    /// A hook failed at task_healthy: the task is killed, and fails with this message.
    hook_failure: Option<String>,
}

/// A launch's command, plan and progress tracking.
type PendingLaunch = (Box<CommandSpec>, Box<Plan>, Option<Box<Tracking>>);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// [`Action::Launch`] is out; waiting for [`Supervisor::handle_spawned`].
    Starting,
    /// The process exists.
    Running,
    /// The terminal update is out.
    Done,
}

#[derive(Debug, Clone, Copy)]
struct Kill {
    cause: KillCause,
    started: Instant,
    /// When to escalate to SIGKILL.
    escalate_at: Instant,
    escalated: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KillCause {
    /// A KILL event.
    Requested,
    /// Another task of the group failed or was killed.
    Group,
    /// SHUTDOWN, a signal to the executor, or the loss of the agent.
    Shutdown,
    /// `max_completion_time` ran out.
    MaxCompletion,
    /// Too many consecutive health-check failures.
    Unhealthy,
    /// A hook failed at task_healthy.
    HookFailed,
}

impl Supervisor {
    /// A supervisor with no tasks yet.
    pub fn new(settings: Settings) -> Self {
        Supervisor {
            settings,
            killing_state: false,
            tasks: Vec::new(),
            next_group: 0,
            doomed_groups: Vec::new(),
            pre_killed: Vec::new(),
            actions: VecDeque::new(),
            shutting_down: false,
            agent_lost: false,
            unacked: Vec::new(),
            ack_deadline: None,
            hooks_in_flight: 0,
        }
    }

    /// The settings in use.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The next thing to do, if any. Call until `None` after every `handle_*`.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// When [`Supervisor::handle_timeout`] must be called next: a SIGKILL escalation, a
    /// `max_completion_time`, a probe, or the end of the wait for acknowledgements.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let tasks = self.tasks.iter().filter_map(|t| match (t.phase, t.kill) {
            (Phase::Done, _) => None,
            (Phase::Running, Some(k)) if !k.escalated => Some(k.escalate_at),
            (_, Some(_)) => None,
            (_, None) => t.deadline,
        });
        // Checkers are stopped on kills and ends, so they say `None` then.
        let probes = self.tasks.iter().flat_map(|t| {
            let health = t.health.as_ref().and_then(|(c, _)| c.next_probe_at());
            let check = t.check.as_ref().and_then(|(c, _)| c.next_probe_at());
            health.into_iter().chain(check)
        });
        let progress = self.tasks.iter().filter_map(|t| {
            let due = t.progress_sent? + self.settings.progress_interval;
            (t.progress_pending && t.phase == Phase::Running).then_some(due)
        });
        let acks = self.ack_deadline.filter(|_| !self.unacked.is_empty());
        tasks.chain(probes).chain(progress).chain(acks).min()
    }

    /// Whether the executor is done: every task has ended, and its terminal update has been
    /// acknowledged (or the wait for that ran out, or the agent is gone). False until a task
    /// arrived or a shutdown began.
    pub fn is_finished(&self) -> bool {
        (!self.tasks.is_empty() || self.shutting_down)
            && self.tasks.iter().all(|t| t.phase == Phase::Done)
            && (self.unacked.is_empty() || self.agent_lost)
            && self.hooks_in_flight == 0
    }

    /// Whether a shutdown (SHUTDOWN, [`Supervisor::shutdown`], the loss of the agent) began.
    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down
    }

    /// Tasks whose terminal update is not out yet.
    pub fn active_tasks(&self) -> usize {
        self.tasks.iter().filter(|t| t.phase != Phase::Done).count()
    }

    /// SUBSCRIBED: remembers whether the framework understands TASK_KILLING.
    pub fn handle_subscribed(&mut self, subscribed: &event::Subscribed) {
        self.killing_state = subscribed
            .framework_info
            .capabilities
            .iter()
            .any(|c| c.r#type == Some(Capability::TaskKillingState as i32));
    }

    /// An event from the agent.
    pub fn handle_event(&mut self, event: &Event, now: Instant) {
        let kind = event.r#type.and_then(|t| event::Type::try_from(t).ok());
        match kind {
            Some(event::Type::Subscribed) => {
                if let Some(s) = &event.subscribed {
                    self.handle_subscribed(s);
                }
            }
            Some(event::Type::Launch) => {
                if let Some(launch) = &event.launch {
                    self.launch(&launch.task, None, now);
                }
            }
            Some(event::Type::LaunchGroup) => {
                if let Some(group) = &event.launch_group {
                    let id = self.next_group;
                    self.next_group += 1;
                    for task in &group.task_group.tasks {
                        self.launch(task, Some(id), now);
                    }
                }
            }
            Some(event::Type::Kill) => {
                if let Some(kill) = &event.kill {
                    self.kill(&kill.task_id, kill.kill_policy.as_ref(), now);
                }
            }
            Some(event::Type::Acknowledged) => {
                if let Some(ack) = &event.acknowledged {
                    self.unacked.retain(|u| *u != ack.uuid);
                }
            }
            Some(event::Type::Shutdown) => {
                tracing::info!("SHUTDOWN from the agent");
                self.shutdown(now);
            }
            Some(event::Type::Message) => {
                let data = event.message.as_ref().map_or(&[][..], |m| &m.data[..]);
                // The start of it, if it is text: enough to recognise it in the log.
                let text: String = std::str::from_utf8(data)
                    .map(|t| t.chars().take(200).collect())
                    .unwrap_or_default();
                tracing::info!(bytes = data.len(), %text, "MESSAGE from the framework");
            }
            Some(event::Type::Error) => {
                let text = event.error.as_ref().map_or("", |e| e.message.as_str());
                tracing::warn!(%text, "ERROR from the agent");
            }
            Some(event::Type::Heartbeat) => {}
            Some(event::Type::Unknown) | None => {
                tracing::warn!(r#type = ?event.r#type, "unknown event ignored");
            }
        }
        self.escalate(now);
    }

    /// The outcome of an [`Action::Launch`]: the process started, or the error saying why not.
    pub fn handle_spawned(&mut self, task_id: &TaskId, result: Result<(), String>, now: Instant) {
        let Some(i) = self.find(task_id, Phase::Starting) else {
            tracing::warn!(task_id = %task_id.value, "start reported for a task not being started");
            return;
        };
        match result {
            Ok(()) => {
                self.tasks[i].phase = Phase::Running;
                let task = &mut self.tasks[i];
                let killed = task.kill.is_some();
                let mut running = status(task_id, TaskState::TaskRunning, None, None);
                if let Some((checker, _)) = &mut task.health
                    && !killed
                {
                    checker.start(now);
                }
                if let Some((runner, _)) = &mut task.check {
                    // Mesos puts the empty status in the first TASK_RUNNING.
                    running.check_status = Some(runner.initial_status());
                    if !killed {
                        runner.start(now);
                    }
                }
                self.send(running);
                if !self.tasks[i].hooks.is_empty() {
                    self.run_hooks(i, HookEvent::AfterTaskStart);
                }
                if killed {
                    // Killed while starting: the SIGTERM could not be sent until now.
                    self.signal(task_id, Signal::Term);
                }
            }
            Err(error) => {
                tracing::warn!(task_id = %task_id.value, %error, "cannot start the task");
                self.terminal(
                    i,
                    TaskState::TaskFailed,
                    Some(Reason::ContainerLaunchFailed),
                    format!("Failed to launch the task's command: {error}"),
                    now,
                );
            }
        }
        self.escalate(now);
    }

    /// The task's process was reaped.
    pub fn handle_exit(&mut self, task_id: &TaskId, how: Termination, now: Instant) {
        let Some(i) = self.find(task_id, Phase::Running) else {
            tracing::warn!(task_id = %task_id.value, "exit reported for a task not running");
            return;
        };
        let kill = self.tasks[i].kill.map(|k| k.cause);
        // The order of Mesos's `reaped()`: a clean exit is a success even during a kill.
        let (state, reason) = if how.success() {
            (TaskState::TaskFinished, None)
        } else if kill == Some(KillCause::MaxCompletion) {
            (
                TaskState::TaskFailed,
                Some(Reason::MaxCompletionTimeReached),
            )
        } else if kill.is_some() {
            (TaskState::TaskKilled, None)
        } else {
            (TaskState::TaskFailed, None)
        };
        tracing::info!(task_id = %task_id.value, "command {how}");
        let (state, message) = match self.tasks[i].hook_failure.take() {
            Some(failure) if !how.success() => (
                TaskState::TaskFailed,
                format!("{failure}; the task was killed (command {how})"),
            ),
            _ => (state, format!("Command {how}")),
        };
        self.ended(i);
        self.terminal(i, state, reason, message, now);
        self.escalate(now);
    }

    /// The task's process could not be waited for (`wait` failed), so its end is unknown:
    /// TASK_FAILED, as Mesos reports it.
    pub fn handle_wait_error(&mut self, task_id: &TaskId, error: &str, now: Instant) {
        let Some(i) = self.find(task_id, Phase::Running) else {
            return;
        };
        self.ended(i);
        self.terminal(
            i,
            TaskState::TaskFailed,
            None,
            format!("Failed to get exit status for Command: {error}"),
            now,
        );
        self.escalate(now);
    }

    /// Time passed: escalates kills to SIGKILL, enforces `max_completion_time`, stops waiting
    /// for acknowledgements.
    pub fn handle_timeout(&mut self, now: Instant) {
        for i in 0..self.tasks.len() {
            let t = &self.tasks[i];
            if t.phase != Phase::Done && t.kill.is_none() && t.deadline.is_some_and(|d| d <= now) {
                tracing::info!(task_id = %t.id.value, "max_completion_time reached: killing");
                self.kill_task(i, Duration::ZERO, KillCause::MaxCompletion, now);
            }
        }
        for t in &mut self.tasks {
            if let Some((checker, probe)) = &mut t.health
                && checker.poll_probe(now)
            {
                self.actions.push_back(Action::Probe {
                    task_id: t.id.clone(),
                    kind: ProbeKind::Health,
                    probe: Box::new(probe.clone()),
                    timeout: checker.timing().timeout,
                });
            }
            if let Some((runner, probe)) = &mut t.check
                && runner.poll_probe(now)
            {
                self.actions.push_back(Action::Probe {
                    task_id: t.id.clone(),
                    kind: ProbeKind::Check,
                    probe: Box::new(probe.clone()),
                    timeout: runner.timing().timeout,
                });
            }
        }
        let interval = self.settings.progress_interval;
        for i in 0..self.tasks.len() {
            let t = &self.tasks[i];
            if t.progress_pending
                && t.phase == Phase::Running
                && t.progress_sent.is_none_or(|at| at + interval <= now)
            {
                self.send_progress(i, now);
            }
        }
        if self.ack_deadline.is_some_and(|d| d <= now) && !self.unacked.is_empty() {
            tracing::warn!(
                unacknowledged = self.unacked.len(),
                timeout = ?self.settings.ack_timeout,
                "terminal updates not acknowledged in time; exiting anyway"
            );
            self.unacked.clear();
        }
        self.escalate(now);
    }

    /// The result of an [`Action::Probe`] that ended at `now`: a change of health or of the
    /// check's status becomes a TASK_RUNNING update; too many consecutive health-check
    /// failures report `healthy: false` and kill the task (its grace, as for a KILL).
    pub fn handle_probe_result(&mut self, task_id: &TaskId, result: ProbeResult, now: Instant) {
        let Some(i) = self.find(task_id, Phase::Running) else {
            // The task ended while the probe ran.
            return;
        };
        match result {
            ProbeResult::Health(result) => {
                let Some((checker, _)) = &mut self.tasks[i].health else {
                    return;
                };
                match checker.probe_result(now, result) {
                    HealthVerdict::Nothing => {}
                    HealthVerdict::Report { healthy, message } => {
                        tracing::info!(task_id = %task_id.value, healthy, "health changed");
                        self.report_health(i, healthy, message);
                    }
                    HealthVerdict::Kill { message } => {
                        tracing::warn!(task_id = %task_id.value, %message, "unhealthy: killing");
                        self.report_health(i, false, Some(message));
                        let grace = self.grace(i, None);
                        self.kill_task(i, grace, KillCause::Unhealthy, now);
                    }
                }
            }
            ProbeResult::Check(result) => {
                let task = &mut self.tasks[i];
                let Some((runner, _)) = &mut task.check else {
                    return;
                };
                if let Some(check) = runner.probe_result(now, result) {
                    tracing::info!(task_id = %task_id.value, ?check, "check status changed");
                    let mut update = health::check_status(task_id, check);
                    update.healthy = task.healthy;
                    self.send(update);
                }
            }
        }
        self.escalate(now);
    }

    /// The task's processes are gone: if no kill ran the before_terminate hooks, they run
    /// now, so that what the hooks registered goes too.
    fn ended(&mut self, i: usize) {
        if !self.tasks[i].terminate_hooked && !self.tasks[i].hooks.is_empty() {
            self.tasks[i].terminate_hooked = true;
            self.run_hooks(i, HookEvent::BeforeTerminate);
        }
    }

    fn run_hooks(&mut self, i: usize, event: HookEvent) {
        let t = &self.tasks[i];
        let Some(task) = t.info.clone() else {
            return;
        };
        self.hooks_in_flight += 1;
        self.actions.push_back(Action::Hooks {
            task_id: t.id.clone(),
            event,
            names: t.hooks.clone(),
            task,
        });
    }

    /// The result of an [`Action::Hooks`]. `before_task_start`: the environment is added to
    /// the task and it launches, or the first error fails it (TASK_FAILED with the error).
    /// `task_healthy`: an error kills the task, which then fails with that error.
    /// `before_terminate`: the SIGTERM of the kill goes out (errors were logged).
    /// `after_task_start`: errors were logged.
    pub fn handle_hooks_done(
        &mut self,
        task_id: &TaskId,
        event: HookEvent,
        result: ChainResult,
        now: Instant,
    ) {
        self.hooks_in_flight = self.hooks_in_flight.saturating_sub(1);
        let Some(i) = self.tasks.iter().position(|t| t.id == *task_id) else {
            return;
        };
        let fatal = result.fatal(event).map(ToString::to_string);
        match event {
            HookEvent::BeforeTaskStart => {
                let Some((mut spec, plan, progress)) = self.tasks[i].pending_launch.take() else {
                    return;
                };
                if self.tasks[i].phase != Phase::Starting {
                    return;
                }
                if self.tasks[i].kill.is_some() {
                    self.terminal(
                        i,
                        TaskState::TaskKilled,
                        Some(Reason::TaskKilledDuringLaunch),
                        "the task was killed before it was launched".into(),
                        now,
                    );
                } else if let Some(error) = fatal {
                    tracing::warn!(task_id = %task_id.value, %error, "launch aborted by a hook");
                    self.terminal(i, TaskState::TaskFailed, None, error, now);
                } else {
                    for (k, v) in &result.env {
                        launch::set(&mut spec.env, k, v);
                    }
                    self.actions.push_back(Action::Launch {
                        task_id: task_id.clone(),
                        command: spec,
                        plan,
                        progress,
                    });
                }
            }
            HookEvent::TaskHealthy => {
                if let Some(error) = fatal
                    && self.tasks[i].phase == Phase::Running
                {
                    tracing::warn!(task_id = %task_id.value, %error, "task_healthy hook failed: killing");
                    self.tasks[i].hook_failure = Some(error);
                    let grace = self.grace(i, None);
                    self.kill_task(i, grace, KillCause::HookFailed, now);
                }
            }
            HookEvent::BeforeTerminate => {
                let t = &self.tasks[i];
                if t.phase == Phase::Running && t.kill.is_some_and(|k| !k.escalated) {
                    let id = t.id.clone();
                    self.signal(&id, Signal::Term);
                }
            }
            HookEvent::AfterTaskStart => {}
        }
        self.escalate(now);
    }

    /// A task reported progress or a message through the task API ([`crate::api`]) or its
    /// output ([`crate::progress`], which reports through the API when it runs): it goes
    /// out as a TASK_RUNNING update (text in `message`, `{"progress", "message"}` in `data`)
    /// at once if none went out in the last [`Settings::progress_interval`], else when that
    /// is over; the last change before the task ends always goes out before its terminal update.
    pub fn handle_progress(
        &mut self,
        task_id: &TaskId,
        progress: Option<u8>,
        message: Option<String>,
        now: Instant,
    ) {
        let Some(i) = self.find(task_id, Phase::Running) else {
            return;
        };
        let task = &mut self.tasks[i];
        task.progress = progress;
        task.progress_message = message;
        task.progress_pending = true;
        if task
            .progress_sent
            .is_none_or(|at| at + self.settings.progress_interval <= now)
        {
            self.send_progress(i, now);
        }
        self.escalate(now);
    }

    fn send_progress(&mut self, i: usize, now: Instant) {
        let task = &mut self.tasks[i];
        task.progress_pending = false;
        task.progress_sent = Some(now);
        let data = crate::api::progress_json(task.progress, task.progress_message.as_deref());
        let mut update = status(
            &task.id,
            TaskState::TaskRunning,
            None,
            task.progress_message.clone(),
        );
        update.data = Some(data.into());
        update.healthy = task.healthy;
        self.send(update);
    }

    /// The task's commands ended without an exit status of its own command to report: a
    /// guarded before or after command failed, a command could not start, or a kill stopped
    /// the sequence before the task's command ran. TASK_FAILED with `message`, or TASK_KILLED
    /// if a kill was under way.
    pub fn handle_sequence_failed(&mut self, task_id: &TaskId, message: String, now: Instant) {
        let Some(i) = self.find(task_id, Phase::Running) else {
            return;
        };
        let state = if self.tasks[i].kill.is_some() {
            TaskState::TaskKilled
        } else {
            TaskState::TaskFailed
        };
        tracing::info!(task_id = %task_id.value, %message, "task's commands failed");
        self.ended(i);
        self.terminal(i, state, None, message, now);
        self.escalate(now);
    }

    fn report_health(&mut self, i: usize, healthy: bool, message: Option<String>) {
        if healthy && !self.tasks[i].healthy_hooked && !self.tasks[i].hooks.is_empty() {
            self.tasks[i].healthy_hooked = true;
            self.run_hooks(i, HookEvent::TaskHealthy);
        }
        let task = &mut self.tasks[i];
        task.healthy = Some(healthy);
        let mut update = health::health_status(&task.id, healthy, message);
        update.check_status = task.check.as_ref().map(|(r, _)| *r.last_status());
        self.send(update);
    }

    /// Kills every task (grace: the task's, at most the shutdown grace period less
    /// [`SHUTDOWN_MARGIN`]) and finishes: for SHUTDOWN, or a SIGTERM to the executor.
    pub fn shutdown(&mut self, now: Instant) {
        if !self.shutting_down {
            self.shutting_down = true;
            let cap = self.settings.shutdown_grace.saturating_sub(SHUTDOWN_MARGIN);
            for i in 0..self.tasks.len() {
                let grace = self.grace(i, None).min(cap);
                self.kill_task(i, grace, KillCause::Shutdown, now);
            }
        }
        self.escalate(now);
    }

    /// The agent is gone for good: shut down, and do not wait for acknowledgements that
    /// cannot come.
    pub fn agent_lost(&mut self, now: Instant) {
        self.agent_lost = true;
        self.shutdown(now);
    }

    fn find(&self, task_id: &TaskId, phase: Phase) -> Option<usize> {
        self.tasks
            .iter()
            .position(|t| t.id == *task_id && t.phase == phase)
    }

    fn launch(&mut self, task: &TaskInfo, group: Option<u64>, now: Instant) {
        let id = &task.task_id;
        if self.tasks.iter().any(|t| t.id == *id) {
            tracing::warn!(task_id = %id.value, "task launched twice: ignored");
            return;
        }
        tracing::info!(task_id = %id.value, group, "launching task");
        self.tasks.push(Task {
            id: id.clone(),
            grace: task
                .kill_policy
                .as_ref()
                .and_then(|p| p.grace_period.as_ref())
                .map(duration),
            group,
            phase: Phase::Starting,
            kill: None,
            deadline: task.max_completion_time.as_ref().map(|d| now + duration(d)),
            health: None,
            check: None,
            healthy: None,
            progress: None,
            progress_message: None,
            progress_sent: None,
            progress_pending: false,
            hooks: Vec::new(),
            info: None,
            pending_launch: None,
            healthy_hooked: false,
            terminate_hooked: false,
            hook_failure: None,
        });
        let i = self.tasks.len() - 1;

        let refusal = if self.shutting_down {
            Some("the executor is shutting down")
        } else if self.pre_killed.contains(id) {
            Some("the task was killed before it was launched")
        } else if group.is_some_and(|g| self.doomed_groups.contains(&g)) {
            Some("another task of its group failed or was killed")
        } else {
            None
        };
        if let Some(message) = refusal {
            self.terminal(
                i,
                TaskState::TaskKilled,
                Some(Reason::TaskKilledDuringLaunch),
                message.to_owned(),
                now,
            );
            return;
        }

        self.update(id, TaskState::TaskStarting, None, None);
        let sandbox = self.settings.sandbox.as_deref();
        let placement = match group {
            None => Placement::Shared(sandbox),
            Some(_) => Placement::OwnDir(sandbox),
        };
        let plan = commands::plan(
            task,
            &self.settings.before_commands,
            &self.settings.after_commands,
        );
        let hooks = mesokit_hooks::builtin::task_hooks(&self.settings.hooks, task);
        let s = &self.settings;
        let spec = launch::command_spec(task, &s.executor_env, placement)
            .map_err(|e| e.to_string())
            .and_then(|mut spec| {
                let operator = (s.progress_regex.as_ref(), s.progress_file.as_deref());
                let progress =
                    progress::tracking(task, operator, sandbox, s.max_message_length, &mut spec)?;
                Ok((spec, plan?, hooks?, progress.map(Box::new)))
            });
        match spec {
            Ok((spec, plan, hooks, progress)) => {
                self.prepare_checks(i, task, spec.cwd.as_deref());
                if hooks.is_empty() {
                    self.actions.push_back(Action::Launch {
                        task_id: id.clone(),
                        command: Box::new(spec),
                        plan: Box::new(plan),
                        progress,
                    });
                } else {
                    let t = &mut self.tasks[i];
                    t.hooks = hooks;
                    t.info = Some(Box::new(task.clone()));
                    t.pending_launch = Some((Box::new(spec), Box::new(plan), progress));
                    self.run_hooks(i, HookEvent::BeforeTaskStart);
                }
            }
            Err(e) => {
                tracing::warn!(task_id = %id.value, error = %e, "invalid task");
                self.terminal(i, TaskState::TaskFailed, Some(Reason::TaskInvalid), e, now);
            }
        }
    }

    /// Builds the task's health check and check (started with TASK_RUNNING). One that cannot
    /// run is left out, as Mesos's validation would have refused it.
    fn prepare_checks(&mut self, i: usize, task: &TaskInfo, cwd: Option<&std::path::Path>) {
        let env = &self.settings.executor_env;
        let id = &task.task_id.value;
        if let Some(hc) = &task.health_check {
            match Probe::from_health_check(hc, env, cwd) {
                Ok(probe) => self.tasks[i].health = Some((HealthChecker::new(hc), probe)),
                Err(error) => {
                    tracing::warn!(task_id = %id, %error, "invalid health check: not run");
                }
            }
        }
        if let Some(check) = &task.check {
            match Probe::from_check_info(check, env, cwd) {
                Ok(probe) => self.tasks[i].check = Some((CheckRunner::new(check), probe)),
                Err(error) => tracing::warn!(task_id = %id, %error, "invalid check: not run"),
            }
        }
    }

    fn stop_checks(&mut self, i: usize) {
        let task = &mut self.tasks[i];
        if let Some((checker, _)) = &mut task.health {
            checker.stop();
        }
        if let Some((runner, _)) = &mut task.check {
            runner.stop();
        }
    }

    fn kill(&mut self, task_id: &TaskId, policy: Option<&KillPolicy>, now: Instant) {
        let Some(i) = self.tasks.iter().position(|t| t.id == *task_id) else {
            tracing::warn!(task_id = %task_id.value, "KILL for an unknown task: it will not start");
            if !self.pre_killed.contains(task_id) {
                self.pre_killed.push(task_id.clone());
            }
            return;
        };
        let grace = self.grace(i, policy);
        tracing::info!(task_id = %task_id.value, ?grace, "KILL");
        self.kill_task(i, grace, KillCause::Requested, now);
    }

    /// The grace period, by precedence: the KILL's policy, the task's, the default.
    fn grace(&self, i: usize, policy: Option<&KillPolicy>) -> Duration {
        policy
            .and_then(|p| p.grace_period.as_ref())
            .map(duration)
            .or(self.tasks[i].grace)
            .unwrap_or(self.settings.default_grace)
    }

    fn kill_task(&mut self, i: usize, grace: Duration, cause: KillCause, now: Instant) {
        let task = &mut self.tasks[i];
        if task.phase == Phase::Done {
            return;
        }
        if let Some(kill) = &mut task.kill {
            // Only ever shorten: the total grace counts from the first kill.
            let at = kill.started + grace;
            if at < kill.escalate_at {
                tracing::info!(task_id = %task.id.value, ?grace, "kill grace period shortened");
                kill.escalate_at = at;
            }
            return;
        }
        task.kill = Some(Kill {
            cause,
            started: now,
            escalate_at: now + grace,
            escalated: false,
        });
        let id = task.id.clone();
        let running = task.phase == Phase::Running;
        // As Mesos does: no more health or check updates once the kill began.
        self.stop_checks(i);
        if self.killing_state && cause != KillCause::MaxCompletion {
            self.update(&id, TaskState::TaskKilling, None, None);
        }
        if running {
            let t = &mut self.tasks[i];
            if !t.hooks.is_empty() && !t.terminate_hooked {
                // SIGTERM once they are done; the SIGKILL deadline stands whatever they do.
                t.terminate_hooked = true;
                self.run_hooks(i, HookEvent::BeforeTerminate);
            } else {
                self.signal(&id, Signal::Term);
            }
        }
    }

    /// SIGKILL for every running task whose grace period is over.
    fn escalate(&mut self, now: Instant) {
        for i in 0..self.tasks.len() {
            let t = &mut self.tasks[i];
            if t.phase != Phase::Running {
                continue;
            }
            if let Some(kill) = &mut t.kill
                && !kill.escalated
                && kill.escalate_at <= now
            {
                kill.escalated = true;
                let id = t.id.clone();
                tracing::info!(task_id = %id.value, "grace period over: SIGKILL");
                self.signal(&id, Signal::Kill);
            }
        }
    }

    fn terminal(
        &mut self,
        i: usize,
        state: TaskState,
        reason: Option<Reason>,
        message: String,
        now: Instant,
    ) {
        if self.tasks[i].progress_pending && self.tasks[i].phase == Phase::Running {
            self.send_progress(i, now);
        }
        self.tasks[i].phase = Phase::Done;
        self.stop_checks(i);
        let id = self.tasks[i].id.clone();
        let mut last = status(&id, state, reason, Some(message));
        // Mesos marks the end of a task its health checker killed as unhealthy.
        if self.tasks[i]
            .kill
            .is_some_and(|k| k.cause == KillCause::Unhealthy)
        {
            last.healthy = Some(false);
        }
        let uuid = self.send(last);
        self.unacked.push(uuid);

        // Default-executor group policy: one task failing or killed takes the others down.
        if let Some(g) = self.tasks[i].group
            && matches!(state, TaskState::TaskFailed | TaskState::TaskKilled)
            && !self.shutting_down
            && !self.doomed_groups.contains(&g)
        {
            self.doomed_groups.push(g);
            for j in 0..self.tasks.len() {
                if self.tasks[j].group == Some(g) && self.tasks[j].phase != Phase::Done {
                    let grace = self.grace(j, None);
                    self.kill_task(j, grace, KillCause::Group, now);
                }
            }
        }
        if self.tasks.iter().all(|t| t.phase == Phase::Done) {
            self.ack_deadline = Some(now + self.settings.ack_timeout);
        }
    }

    fn signal(&mut self, task_id: &TaskId, signal: Signal) {
        self.actions.push_back(Action::Signal {
            task_id: task_id.clone(),
            signal,
        });
    }

    fn update(
        &mut self,
        task_id: &TaskId,
        state: TaskState,
        reason: Option<Reason>,
        message: Option<String>,
    ) -> Bytes {
        self.send(status(task_id, state, reason, message))
    }

    /// Queues `status` with a fresh uuid, which it returns.
    fn send(&mut self, mut status: TaskStatus) -> Bytes {
        let uuid = new_uuid();
        status.uuid = Some(uuid.clone());
        self.actions.push_back(Action::Update(Box::new(status)));
        uuid
    }
}

fn status(
    task_id: &TaskId,
    state: TaskState,
    reason: Option<Reason>,
    message: Option<String>,
) -> TaskStatus {
    TaskStatus {
        task_id: task_id.clone(),
        state: state as i32,
        message,
        reason: reason.map(|r| r as i32),
        source: Some(Source::Executor as i32),
        ..Default::default()
    }
}

/// A `DurationInfo` as a `Duration`; negative means zero.
fn duration(d: &DurationInfo) -> Duration {
    Duration::from_nanos(u64::try_from(d.nanoseconds).unwrap_or(0))
}
