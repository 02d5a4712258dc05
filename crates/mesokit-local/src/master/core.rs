//! [`Master`]: frameworks, agents, offers, tasks and refusal filters as a state machine with no
//! IO. Calls, agent messages and time go in; [`Output`]s (events for scheduler streams,
//! messages for agents) come out of [`Master::poll_output`]. Behaviour follows Mesos's
//! `src/master/master.cpp` and its hierarchical allocator, simplified for one machine.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::Ipv4Addr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use mesokit_proto::helpers::{is_terminal_value, is_valid_uuid};
use mesokit_proto::resources::Resources;
use mesokit_proto::v1::{
    self, TaskState,
    framework_info::capability::Type as Capability,
    master_info, resource,
    scheduler::{self, call, event},
    task_status::{Reason, Source},
};
use tracing::{debug, info, warn};

use super::validation;
use crate::messages::{ToAgent, ToMaster};

/// Identifies one SUBSCRIBE connection; chosen by the IO layer.
pub type StreamId = u64;

pub use crate::version::MESOS_VERSION;

/// How many completed frameworks and tasks per framework the master remembers (Mesos's
/// `--max_completed_frameworks` / `--max_completed_tasks_per_framework`).
const MAX_COMPLETED_FRAMEWORKS: usize = 50;
const MAX_COMPLETED_TASKS: usize = 1000;

/// Refusal filters never last longer than this (Mesos caps `refuse_seconds` at 365 days).
pub(super) const MAX_REFUSE: Duration = Duration::from_secs(365 * 24 * 3600);

/// The master's settings; [`Default`] gives Mesos's defaults.
#[derive(Debug, Clone)]
pub struct MasterConfig {
    /// The master id; framework, agent and offer ids start with it.
    pub master_id: String,
    /// The master's hostname (in `MasterInfo`, `/state`).
    pub hostname: String,
    /// The master's address.
    pub ip: Ipv4Addr,
    /// The master's port.
    pub port: u16,
    /// Scheduler heartbeats (15 s).
    pub heartbeat_interval: Duration,
    /// Periodic allocation (`--allocation_interval`, 1 s).
    pub allocation_interval: Duration,
    /// `--offer_timeout` (none).
    pub offer_timeout: Option<Duration>,
    /// `--min_allocatable_resources` is `cpus:<this>|mem:<min_allocatable_mem>`: an agent's free
    /// resources are offered if either is reached.
    pub min_allocatable_cpus: f64,
    /// See [`MasterConfig::min_allocatable_cpus`] (MB).
    pub min_allocatable_mem: f64,
    /// How long an agent may stay disconnected before the master marks it unreachable: its
    /// tasks become TASK_UNREACHABLE (partition-aware frameworks) or TASK_LOST, and the
    /// agent-lost hooks run. Mesos detects this with pings: `--agent_ping_timeout` (15 s) times
    /// `--max_agent_ping_timeouts` (5), hence 75 s.
    pub agent_lost_timeout: Duration,
}

impl Default for MasterConfig {
    fn default() -> Self {
        MasterConfig {
            master_id: uuid::Uuid::new_v4().to_string(),
            hostname: "localhost".into(),
            ip: Ipv4Addr::LOCALHOST,
            port: 5050,
            heartbeat_interval: Duration::from_secs(15),
            allocation_interval: Duration::from_secs(1),
            offer_timeout: None,
            min_allocatable_cpus: 0.01,
            min_allocatable_mem: 32.0,
            agent_lost_timeout: Duration::from_secs(75),
        }
    }
}

/// Something the IO layer must do.
// Events are large, but outputs are drained one by one right after they are made; boxing them
// would only add an allocation per event.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// Send `event` on the SUBSCRIBE stream `stream` (encoded as negotiated, RecordIO-framed).
    Event {
        /// The stream.
        stream: StreamId,
        /// The event.
        event: scheduler::Event,
    },
    /// Close the stream (after an ERROR, a teardown or a failover).
    CloseStream {
        /// The stream.
        stream: StreamId,
    },
    /// Deliver a message to an agent.
    Agent {
        /// The agent.
        agent_id: v1::AgentId,
        /// The message.
        msg: ToAgent,
    },
    /// An agent was marked unreachable: run the agent-lost hooks (`masterSlaveLostHook`) with
    /// its info.
    AgentLost {
        /// The agent's info, with its id.
        info: v1::AgentInfo,
    },
}

/// A call refused with an HTTP status and Mesos's plain-text body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status}: {message}")]
pub struct CallError {
    /// The HTTP status (400, 403, 501, …).
    pub status: u16,
    /// The response body.
    pub message: String,
}

impl CallError {
    pub(super) fn bad_request(message: impl Into<String>) -> Self {
        CallError {
            status: 400,
            message: message.into(),
        }
    }

    pub(super) fn forbidden(message: impl Into<String>) -> Self {
        CallError {
            status: 403,
            message: message.into(),
        }
    }
}

/// A call the master took.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallOk {
    /// `202 Accepted`, empty body; results come on the stream.
    Accepted,
    /// `200 OK` with this body (empty for UPDATE_FRAMEWORK).
    Ok(Vec<u8>),
}

/// The answer to a SUBSCRIBE that started a stream (`200 OK`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscribed {
    /// The `Mesos-Stream-Id` header value.
    pub stream_id: String,
    /// The framework's id (empty when the subscription was refused with an ERROR event).
    pub framework_id: v1::FrameworkId,
}

/// The current SUBSCRIBE stream of a framework.
#[derive(Debug, Clone)]
pub(super) struct Connection {
    pub(super) stream: StreamId,
    pub(super) stream_id: String,
    pub(super) next_heartbeat: Instant,
}

/// A refusal filter: offers of at most `resources` from `agent` to (framework, `role`) are
/// held back until `expires`.
#[derive(Debug, Clone)]
pub(super) struct Filter {
    pub(super) role: String,
    pub(super) agent: String,
    pub(super) resources: Resources,
    pub(super) expires: Instant,
}

#[derive(Debug, Clone)]
pub(super) struct Framework {
    pub(super) id: v1::FrameworkId,
    pub(super) info: v1::FrameworkInfo,
    pub(super) conn: Option<Connection>,
    pub(super) active: bool,
    pub(super) registered_time: f64,
    pub(super) reregistered_time: Option<f64>,
    pub(super) unregistered_time: f64,
    pub(super) failover_at: Option<Instant>,
    pub(super) suppressed: BTreeSet<String>,
    pub(super) offer_constraints: Option<scheduler::OfferConstraints>,
    pub(super) filters: Vec<Filter>,
    /// Live tasks (and terminal ones whose terminal update is not acknowledged yet).
    pub(super) tasks: BTreeMap<String, v1::Task>,
    pub(super) completed_tasks: VecDeque<v1::Task>,
    /// Custom/default executors by (agent id, executor id).
    pub(super) executors: BTreeMap<(String, String), v1::ExecutorInfo>,
    /// Resources of its tasks and executors (allocated to roles).
    pub(super) used: Resources,
    /// Resources in its outstanding offers.
    pub(super) offered: Resources,
}

impl Framework {
    pub(super) fn new(id: v1::FrameworkId, info: v1::FrameworkInfo, time: f64) -> Self {
        Framework {
            id,
            info,
            conn: None,
            active: false,
            registered_time: time,
            reregistered_time: None,
            unregistered_time: 0.0,
            failover_at: None,
            suppressed: BTreeSet::new(),
            offer_constraints: None,
            filters: Vec::new(),
            tasks: BTreeMap::new(),
            completed_tasks: VecDeque::new(),
            executors: BTreeMap::new(),
            used: Resources::new(),
            offered: Resources::new(),
        }
    }

    pub(super) fn capable(&self, cap: Capability) -> bool {
        validation::has_capability(&self.info, cap)
    }

    pub(super) fn roles(&self) -> BTreeSet<String> {
        validation::framework_roles(&self.info)
    }

    pub(super) fn add_completed_task(&mut self, task: v1::Task) {
        if self.completed_tasks.len() >= MAX_COMPLETED_TASKS {
            self.completed_tasks.pop_front();
        }
        self.completed_tasks.push_back(task);
    }
}

#[derive(Debug, Clone)]
pub(super) struct Agent {
    pub(super) id: v1::AgentId,
    /// With `id` set.
    pub(super) info: v1::AgentInfo,
    pub(super) pid: String,
    pub(super) ip: String,
    pub(super) port: i32,
    pub(super) registered_time: f64,
    /// Unallocated.
    pub(super) total: Resources,
    /// Tasks and executors (allocated to roles).
    pub(super) used: Resources,
    /// Outstanding offers (allocated to roles).
    pub(super) offered: Resources,
    /// Since when the agent is disconnected (`None`: connected). A disconnected agent gets
    /// no offers; after `agent_lost_timeout` it is marked unreachable.
    pub(super) disconnected_at: Option<Instant>,
}

impl Agent {
    /// What is neither used nor offered, unallocated.
    pub(super) fn available(&self) -> Resources {
        let mut taken = self.used.clone();
        taken.add(&self.offered);
        taken.unallocate();
        let mut free = self.total.clone();
        free.subtract(&taken);
        free
    }
}

#[derive(Debug, Clone)]
pub(super) struct OfferEntry {
    /// As the master keeps it: resources allocated to the role, post-refinement format.
    pub(super) offer: v1::Offer,
    pub(super) expires: Option<Instant>,
}

/// Cumulative counters for `/metrics/snapshot`.
#[derive(Debug, Clone, Default)]
pub(super) struct Counters {
    pub(super) tasks_finished: u64,
    pub(super) tasks_failed: u64,
    pub(super) tasks_killed: u64,
    pub(super) tasks_lost: u64,
    pub(super) tasks_error: u64,
    pub(super) tasks_dropped: u64,
    pub(super) tasks_gone: u64,
    pub(super) tasks_gone_by_operator: u64,
    pub(super) valid_status_updates: u64,
    pub(super) invalid_status_updates: u64,
    pub(super) valid_status_update_acknowledgements: u64,
    pub(super) invalid_status_update_acknowledgements: u64,
    pub(super) valid_framework_to_executor_messages: u64,
    pub(super) invalid_framework_to_executor_messages: u64,
    pub(super) valid_executor_to_framework_messages: u64,
    pub(super) invalid_executor_to_framework_messages: u64,
    pub(super) dropped_messages: u64,
    pub(super) slave_registrations: u64,
    pub(super) slave_removals: u64,
    /// Agents marked unreachable (they never come back to a local master).
    pub(super) slaves_unreachable: u64,
    pub(super) frameworks_removed: u64,
    pub(super) offers_sent: u64,
    pub(super) offers_declined: u64,
    pub(super) offers_rescinded: u64,
}

impl Counters {
    pub(super) fn count_terminal(&mut self, state: i32) {
        match TaskState::try_from(state) {
            Ok(TaskState::TaskFinished) => self.tasks_finished += 1,
            Ok(TaskState::TaskFailed) => self.tasks_failed += 1,
            Ok(TaskState::TaskKilled) => self.tasks_killed += 1,
            Ok(TaskState::TaskLost) => self.tasks_lost += 1,
            Ok(TaskState::TaskError) => self.tasks_error += 1,
            Ok(TaskState::TaskDropped) => self.tasks_dropped += 1,
            Ok(TaskState::TaskGone) => self.tasks_gone += 1,
            Ok(TaskState::TaskGoneByOperator) => self.tasks_gone_by_operator += 1,
            _ => {}
        }
    }
}

/// The master's bookkeeping. See the module docs; every method takes the current time, none
/// reads a clock (the wall-clock base for epoch timestamps is taken once, in [`Master::new`]).
///
/// After every call into the master the IO layer drains [`Master::poll_output`] and arranges
/// to call [`Master::tick`] at [`Master::next_timeout`] (which may be "now", e.g. right after a
/// SUBSCRIBE, when an allocation is due).
#[derive(Debug)]
pub struct Master {
    pub(super) config: MasterConfig,
    pub(super) start: Instant,
    /// Epoch seconds at `start`.
    pub(super) wall_base: f64,
    pub(super) last_now: Instant,
    pub(super) next_framework: u64,
    pub(super) next_agent: u64,
    pub(super) next_offer: u64,
    pub(super) frameworks: BTreeMap<String, Framework>,
    pub(super) completed_frameworks: VecDeque<Framework>,
    pub(super) agents: BTreeMap<String, Agent>,
    pub(super) removed_agents: BTreeSet<String>,
    pub(super) offers: BTreeMap<String, OfferEntry>,
    pub(super) outputs: VecDeque<Output>,
    pub(super) periodic_allocation: Instant,
    pub(super) allocation_requested: bool,
    pub(super) counters: Counters,
}

fn epoch_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

pub(super) fn event(ty: event::Type) -> scheduler::Event {
    scheduler::Event {
        r#type: Some(ty as i32),
        ..Default::default()
    }
}

pub(super) fn error_event(message: &str) -> scheduler::Event {
    scheduler::Event {
        error: Some(event::Error {
            message: message.into(),
        }),
        ..event(event::Type::Error)
    }
}

pub(super) fn update_event(status: v1::TaskStatus) -> scheduler::Event {
    scheduler::Event {
        update: Some(Box::new(event::Update { status })),
        ..event(event::Type::Update)
    }
}

/// Whether a task in this state no longer holds resources (terminal or unreachable).
pub(super) fn releases_resources(state: i32) -> bool {
    is_terminal_value(state) || state == TaskState::TaskUnreachable as i32
}

/// Task (and executor) resources as the master keeps them: `allocation_info` set to the offer's
/// role, in the post-refinement format (see [`upgrade`]).
/// Pre- to post-reservation-refinement format, as the master keeps resources (Mesos's
/// `upgradeResource`): a reservation is a `reservations` entry (STATIC for a bare `role`, DYNAMIC
/// when `reservation` was set), and the deprecated `role`/`reservation` fields are cleared.
pub(super) fn upgrade(r: &mut v1::Resource) {
    #[allow(deprecated)]
    let role = r.role.take();
    let single = r.reservation.take();
    if let Some(role) = role.filter(|role| role != "*")
        && r.reservations.is_empty()
    {
        let ty = if single.is_some() {
            resource::reservation_info::Type::Dynamic
        } else {
            resource::reservation_info::Type::Static
        };
        let single = single.unwrap_or_default();
        r.reservations.push(resource::ReservationInfo {
            r#type: Some(ty as i32),
            role: Some(role),
            principal: single.principal,
            labels: single.labels,
        });
    }
}

pub(super) fn inject_allocation(resources: &mut [v1::Resource], role: &str) {
    for r in resources {
        upgrade(r);
        r.allocation_info = Some(resource::AllocationInfo {
            role: Some(role.to_owned()),
        });
    }
}

impl Master {
    /// A master with no frameworks or agents, started at `now`.
    pub fn new(config: MasterConfig, now: Instant) -> Master {
        Self::with_wall_clock(config, now, epoch_now())
    }

    /// Like [`Master::new`], with the epoch time (seconds) that `now` corresponds to, so that
    /// timestamps are deterministic in tests.
    pub fn with_wall_clock(mut config: MasterConfig, now: Instant, epoch_secs: f64) -> Master {
        // Zero intervals would make `next_timeout` always "now": keep the master from spinning.
        let floor = Duration::from_millis(1);
        config.allocation_interval = config.allocation_interval.max(floor);
        config.heartbeat_interval = config.heartbeat_interval.max(floor);
        Master {
            periodic_allocation: now + config.allocation_interval,
            config,
            start: now,
            wall_base: epoch_secs,
            last_now: now,
            next_framework: 0,
            next_agent: 0,
            next_offer: 0,
            frameworks: BTreeMap::new(),
            completed_frameworks: VecDeque::new(),
            agents: BTreeMap::new(),
            removed_agents: BTreeSet::new(),
            offers: BTreeMap::new(),
            outputs: VecDeque::new(),
            allocation_requested: false,
            counters: Counters::default(),
        }
    }

    /// The master's settings.
    pub fn config(&self) -> &MasterConfig {
        &self.config
    }

    /// Epoch seconds at `now`.
    pub(super) fn epoch(&self, now: Instant) -> f64 {
        self.wall_base + now.saturating_duration_since(self.start).as_secs_f64()
    }

    pub(super) fn observe(&mut self, now: Instant) {
        if now > self.last_now {
            self.last_now = now;
        }
    }

    /// `MasterInfo` as sent in SUBSCRIBED.
    pub fn master_info(&self) -> v1::MasterInfo {
        let c = &self.config;
        v1::MasterInfo {
            id: c.master_id.clone(),
            // Network byte order read as a (little-endian) host integer, as Mesos does.
            ip: u32::from_le_bytes(c.ip.octets()),
            port: u32::from(c.port),
            pid: Some(format!("master@{}:{}", c.ip, c.port)),
            hostname: Some(c.hostname.clone()),
            version: Some(MESOS_VERSION.into()),
            address: Some(v1::Address {
                hostname: Some(c.hostname.clone()),
                ip: Some(c.ip.to_string()),
                port: i32::from(c.port),
            }),
            domain: None,
            capabilities: [
                master_info::capability::Type::AgentUpdate,
                master_info::capability::Type::AgentDraining,
                master_info::capability::Type::QuotaV2,
            ]
            .into_iter()
            .map(|t| master_info::Capability {
                r#type: Some(t as i32),
            })
            .collect(),
        }
    }

    /// The next output, if any.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    pub(super) fn send_agent(&mut self, agent_id: &v1::AgentId, msg: ToAgent) {
        self.outputs.push_back(Output::Agent {
            agent_id: agent_id.clone(),
            msg,
        });
    }

    /// Sends `event` to the framework's current stream; dropped if it is not connected.
    pub(super) fn send(&mut self, framework_id: &str, event: scheduler::Event) {
        let stream = self
            .frameworks
            .get(framework_id)
            .and_then(|f| f.conn.as_ref())
            .map(|c| c.stream);
        match stream {
            Some(stream) => self.outputs.push_back(Output::Event { stream, event }),
            None => {
                self.counters.dropped_messages += 1;
                debug!(framework_id, "dropping event for a disconnected framework");
            }
        }
    }

    /// Asks for an allocation at the next `tick` (which is due at once).
    pub(super) fn request_allocation(&mut self) {
        self.allocation_requested = true;
    }

    // ----------------------------------------------------------------------------------------
    // Agents
    // ----------------------------------------------------------------------------------------

    /// Registers an agent; returns its new id `<master-id>-S<n>`.
    pub fn add_agent(&mut self, now: Instant, mut info: v1::AgentInfo, pid: String) -> v1::AgentId {
        self.observe(now);
        let id = v1::AgentId {
            value: format!("{}-S{}", self.config.master_id, self.next_agent),
        };
        self.next_agent += 1;
        info.id = Some(id.clone());
        let (ip, port) = match pid.split_once('@').and_then(|(_, a)| a.rsplit_once(':')) {
            Some((ip, port)) => (ip.to_owned(), port.parse().unwrap_or(5051)),
            None => ("127.0.0.1".to_owned(), info.port()),
        };
        let mut resources = info.resources.clone();
        resources.iter_mut().for_each(upgrade);
        let mut total = Resources::from_vec(resources);
        total.unallocate();
        info!(agent_id = %id.value, hostname = %info.hostname, %total, "agent registered");
        let agent = Agent {
            id: id.clone(),
            info,
            pid,
            ip,
            port,
            registered_time: self.epoch(now),
            total,
            used: Resources::new(),
            offered: Resources::new(),
            disconnected_at: None,
        };
        self.agents.insert(id.value.clone(), agent);
        self.counters.slave_registrations += 1;
        self.request_allocation();
        id
    }

    /// Removes an agent (it shut down): its offers are rescinded, its tasks become TASK_LOST
    /// (`REASON_AGENT_REMOVED`, sent to connected frameworks) and completed.
    pub fn remove_agent(&mut self, now: Instant, agent_id: &v1::AgentId) {
        self.remove_agent_as(now, agent_id, false);
    }

    /// An agent's connection is gone (it stopped, or is restarting). As Mesos's
    /// `Master::disconnect`: its offers are rescinded and it gets no more; the tasks of
    /// frameworks without checkpointing are lost at once (TASK_LOST, `REASON_AGENT_DISCONNECTED`:
    /// their executors do not survive an agent restart); the others wait for the agent to
    /// re-register, or for [`MasterConfig::agent_lost_timeout`].
    pub fn agent_disconnected(&mut self, now: Instant, agent_id: &v1::AgentId) {
        self.observe(now);
        let Some(agent) = self.agents.get_mut(&agent_id.value) else {
            return;
        };
        if agent.disconnected_at.is_some() {
            return;
        }
        agent.disconnected_at = Some(now);
        let hostname = agent.info.hostname.clone();
        info!(agent_id = %agent_id.value, "agent disconnected");
        self.rescind_agent_offers(now, agent_id);
        let framework_ids: Vec<String> = self
            .frameworks
            .values()
            .filter(|f| !f.info.checkpoint.unwrap_or(false))
            .map(|f| f.id.value.clone())
            .collect();
        for fid in framework_ids {
            self.lose_agent_tasks(
                now,
                &fid,
                agent_id,
                TaskState::TaskLost,
                Reason::AgentDisconnected,
                &format!("Agent {hostname} disconnected"),
            );
        }
    }

    /// A disconnected agent is back (restarted with its checkpointed state). `tasks` are the
    /// (framework id, task id) of every task it knows. Tasks the master placed on it that it
    /// does not know (their launch was lost while it was down) become TASK_LOST (TASK_GONE for
    /// partition-aware frameworks), `REASON_AGENT_RESTARTED`.
    pub fn agent_reregistered(
        &mut self,
        now: Instant,
        agent_id: &v1::AgentId,
        tasks: &[(v1::FrameworkId, v1::TaskId)],
    ) {
        self.observe(now);
        let Some(agent) = self.agents.get_mut(&agent_id.value) else {
            // As a Mesos master without partition awareness for agents: one that was removed
            // (e.g. marked unreachable) may not come back with its tasks; it is told to shut
            // down their frameworks, whose tasks the master already reported ended.
            warn!(agent_id = %agent_id.value, "re-registration of a removed agent: shutting down its frameworks there");
            let frameworks: BTreeSet<&str> = tasks.iter().map(|(f, _)| f.value.as_str()).collect();
            for fid in frameworks {
                let framework_id = v1::FrameworkId {
                    value: fid.to_owned(),
                };
                self.send_agent(agent_id, ToAgent::ShutdownFramework { framework_id });
            }
            return;
        };
        agent.disconnected_at = None;
        let hostname = agent.info.hostname.clone();
        info!(agent_id = %agent_id.value, tasks = tasks.len(), "agent re-registered");
        let known: BTreeSet<(&str, &str)> = tasks
            .iter()
            .map(|(f, t)| (f.value.as_str(), t.value.as_str()))
            .collect();
        let missing: Vec<(String, String)> = self
            .frameworks
            .values()
            .flat_map(|f| {
                f.tasks
                    .values()
                    .filter(|t| t.agent_id == *agent_id && !is_terminal_value(t.state))
                    .map(|t| (f.id.value.clone(), t.task_id.value.clone()))
            })
            .filter(|(f, t)| !known.contains(&(f.as_str(), t.as_str())))
            .collect();
        for (fid, tid) in missing {
            let pa = self.frameworks[&fid].capable(Capability::PartitionAware);
            let state = if pa {
                TaskState::TaskGone
            } else {
                TaskState::TaskLost
            };
            self.lose_task(
                now,
                &fid,
                &tid,
                agent_id,
                state,
                Reason::AgentRestarted,
                &format!("Task unknown to agent {hostname} after its restart"),
            );
        }
        self.request_allocation();
    }

    /// Rescinds every outstanding offer of the agent.
    fn rescind_agent_offers(&mut self, now: Instant, agent_id: &v1::AgentId) {
        let offer_ids: Vec<String> = self
            .offers
            .values()
            .filter(|o| o.offer.agent_id == *agent_id)
            .map(|o| o.offer.id.value.clone())
            .collect();
        for id in offer_ids {
            self.remove_offer(now, &id, true, None);
        }
    }

    /// The framework's tasks on the agent end with a master-generated update (sent if the
    /// framework is connected) and its executors there are forgotten.
    fn lose_agent_tasks(
        &mut self,
        now: Instant,
        fid: &str,
        agent_id: &v1::AgentId,
        state: TaskState,
        reason: Reason,
        message: &str,
    ) {
        let task_ids: Vec<String> = self.frameworks[fid]
            .tasks
            .values()
            .filter(|t| t.agent_id == *agent_id)
            .map(|t| t.task_id.value.clone())
            .collect();
        for tid in task_ids {
            self.lose_task(now, fid, &tid, agent_id, state, reason, message);
        }
        let executors: Vec<(String, String)> = self.frameworks[fid]
            .executors
            .keys()
            .filter(|(a, _)| *a == agent_id.value)
            .cloned()
            .collect();
        for key in executors {
            self.remove_executor(fid, &key);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn lose_task(
        &mut self,
        now: Instant,
        fid: &str,
        tid: &str,
        agent_id: &v1::AgentId,
        state: TaskState,
        reason: Reason,
        message: &str,
    ) {
        let executor_id = self.frameworks[fid].tasks[tid].executor_id.clone();
        let mut status = self.master_status(
            now,
            tid,
            state,
            reason,
            message.to_owned(),
            Some(agent_id.clone()),
            executor_id,
        );
        if state == TaskState::TaskUnreachable {
            status.unreachable_time = Some(v1::TimeInfo {
                nanoseconds: (self.epoch(now) * 1e9) as i64,
            });
        }
        self.update_task(fid, tid, &status, None);
        self.remove_task(fid, tid);
        self.send(fid, update_event(status));
    }

    /// The agent stayed disconnected for `agent_lost_timeout`: as Mesos's `markUnreachable`,
    /// its tasks become TASK_UNREACHABLE (partition-aware frameworks) or TASK_LOST, it is
    /// removed, and the agent-lost hooks run ([`Output::AgentLost`]).
    fn mark_unreachable(&mut self, now: Instant, agent_id: &v1::AgentId) {
        let Some(info) = self.agents.get(&agent_id.value).map(|a| a.info.clone()) else {
            return;
        };
        warn!(agent_id = %agent_id.value, "agent disconnected for longer than the agent lost timeout; marking it unreachable");
        self.remove_agent_as(now, agent_id, true);
        self.counters.slaves_unreachable += 1;
        self.outputs.push_back(Output::AgentLost { info });
    }

    fn remove_agent_as(&mut self, now: Instant, agent_id: &v1::AgentId, unreachable: bool) {
        self.observe(now);
        if !self.agents.contains_key(&agent_id.value) {
            return;
        }
        info!(agent_id = %agent_id.value, unreachable, "removing agent");
        self.rescind_agent_offers(now, agent_id);
        let hostname = self.agents[&agent_id.value].info.hostname.clone();
        let framework_ids: Vec<String> = self.frameworks.keys().cloned().collect();
        for fid in framework_ids {
            let pa = self.frameworks[&fid].capable(Capability::PartitionAware);
            let (state, message) = match (unreachable, pa) {
                (false, _) => (
                    TaskState::TaskLost,
                    format!("Agent {hostname} removed: agent unregistered"),
                ),
                (true, true) => (
                    TaskState::TaskUnreachable,
                    format!("Agent {hostname} is unreachable"),
                ),
                (true, false) => (
                    TaskState::TaskLost,
                    format!("Agent {hostname} is unreachable"),
                ),
            };
            self.lose_agent_tasks(now, &fid, agent_id, state, Reason::AgentRemoved, &message);
        }
        self.agents.remove(&agent_id.value);
        self.removed_agents.insert(agent_id.value.clone());
        self.counters.slave_removals += 1;
    }

    // ----------------------------------------------------------------------------------------
    // Subscription
    // ----------------------------------------------------------------------------------------

    /// A SUBSCRIBE call on a new connection `stream`. `Err` is a 4xx answer (no stream); `Ok`
    /// means `200` with the returned `Mesos-Stream-Id`, and the outputs carry the stream's first
    /// events: SUBSCRIBED and HEARTBEAT, or an ERROR and CloseStream when the subscription is
    /// refused after validation (as Mesos does, e.g. "Framework has been removed").
    pub fn subscribe(
        &mut self,
        now: Instant,
        stream: StreamId,
        call: scheduler::Call,
    ) -> Result<Subscribed, CallError> {
        self.observe(now);
        validation::validate_call(&call).map_err(|e| {
            CallError::bad_request(format!("Failed to validate scheduler::Call: {e}"))
        })?;
        if call.r#type != Some(call::Type::Subscribe as i32) {
            return Err(CallError::bad_request(
                "Expecting 'type' to be SUBSCRIBE on this path",
            ));
        }
        let subscribe = *call.subscribe.expect("validated");
        let mut info = subscribe.framework_info;
        if info.id.as_ref().is_some_and(|id| id.value.is_empty()) {
            info.id = None;
        }
        let stream_id = uuid::Uuid::new_v4().to_string();
        let mut answer = Subscribed {
            stream_id: stream_id.clone(),
            framework_id: info.id.clone().unwrap_or_default(),
        };

        let refuse = |this: &mut Master, message: String| {
            info!(name = %info.name, %message, "refusing subscription");
            this.outputs.push_back(Output::Event {
                stream,
                event: error_event(&message),
            });
            this.outputs.push_back(Output::CloseStream { stream });
        };

        let roles = validation::framework_roles(&info);
        let constraints = subscribe.offer_constraints;
        let checked = self
            .validate_framework(&info)
            .and_then(|()| {
                validation::validate_suppressed_roles(&roles, &subscribe.suppressed_roles)
            })
            .and_then(|()| match &constraints {
                Some(c) => validation::validate_offer_constraints(&roles, c),
                None => Ok(()),
            });
        if let Err(message) = checked {
            refuse(self, message);
            return Ok(answer);
        }
        let suppressed: BTreeSet<String> = subscribe.suppressed_roles.into_iter().collect();
        let conn = Connection {
            stream,
            stream_id,
            next_heartbeat: now + self.config.heartbeat_interval,
        };

        let Some(id) = info.id.clone() else {
            // A new framework.
            let id = v1::FrameworkId {
                value: format!("{}-{:04}", self.config.master_id, self.next_framework),
            };
            self.next_framework += 1;
            info.id = Some(id.clone());
            info!(framework_id = %id.value, name = %info.name, "framework subscribed");
            let mut framework = Framework::new(id.clone(), info, self.epoch(now));
            framework.conn = Some(conn);
            framework.active = true;
            framework.suppressed = suppressed;
            framework.offer_constraints = constraints;
            self.frameworks.insert(id.value.clone(), framework);
            self.send_subscribed(&id);
            self.request_allocation();
            answer.framework_id = id;
            return Ok(answer);
        };

        if !self.frameworks.contains_key(&id.value) {
            // Unknown to this master (e.g. it restarted): take the framework as it says it is.
            info!(framework_id = %id.value, "recovering framework from its SUBSCRIBE");
            let framework = Framework::new(id.clone(), info.clone(), self.epoch(now));
            self.frameworks.insert(id.value.clone(), framework);
        }
        let old = &self.frameworks[&id.value].info;
        // `user` and `checkpoint` cannot change; Mesos silently keeps the old values.
        info.user = old.user.clone();
        info.checkpoint = old.checkpoint;
        if old.principal != info.principal {
            refuse(
                self,
                "Changing framework's principal is not allowed.".into(),
            );
            return Ok(answer);
        }
        self.update_framework_info(now, &id.value, info, suppressed, constraints);

        let epoch = self.epoch(now);
        let framework = self.frameworks.get_mut(&id.value).expect("present");
        framework.reregistered_time = Some(epoch);
        framework.failover_at = None;
        // Mesos always treats a re-SUBSCRIBE as a failover (MESOS-4712).
        if let Some(old) = framework.conn.take() {
            self.outputs.push_back(Output::Event {
                stream: old.stream,
                event: error_event("Framework failed over"),
            });
            self.outputs
                .push_back(Output::CloseStream { stream: old.stream });
        }
        // Outstanding offers are discarded without RESCIND.
        let offer_ids: Vec<String> = self
            .offers
            .values()
            .filter(|o| o.offer.framework_id == id)
            .map(|o| o.offer.id.value.clone())
            .collect();
        for offer_id in offer_ids {
            self.remove_offer(now, &offer_id, false, None);
        }
        let framework = self.frameworks.get_mut(&id.value).expect("present");
        framework.conn = Some(conn);
        framework.active = true;
        info!(framework_id = %id.value, "framework re-subscribed (failover)");
        self.send_subscribed(&id);
        self.send_framework_updates(&id.value);
        self.request_allocation();
        Ok(answer)
    }

    /// `Master::validateFramework`: what makes a SUBSCRIBE get an ERROR event.
    pub(super) fn validate_framework(&self, info: &v1::FrameworkInfo) -> Result<(), String> {
        validation::validate_framework_info(info)?;
        if let Some(id) = &info.id
            && self.completed_frameworks.iter().any(|f| f.id == *id)
        {
            return Err("Framework has been removed".into());
        }
        Ok(())
    }

    pub(super) fn send_subscribed(&mut self, id: &v1::FrameworkId) {
        let subscribed = scheduler::Event {
            subscribed: Some(event::Subscribed {
                framework_id: id.clone(),
                heartbeat_interval_seconds: Some(self.config.heartbeat_interval.as_secs_f64()),
                master_info: Some(Box::new(self.master_info())),
            }),
            ..event(event::Type::Subscribed)
        };
        self.send(&id.value, subscribed);
        self.send(&id.value, event(event::Type::Heartbeat));
    }

    /// Tells the agents that know the framework (tasks or executors there) its new info; they
    /// re-send pending status updates at once.
    pub(super) fn send_framework_updates(&mut self, framework_id: &str) {
        let framework = &self.frameworks[framework_id];
        let mut agents: BTreeSet<String> = framework
            .tasks
            .values()
            .map(|t| t.agent_id.value.clone())
            .collect();
        agents.extend(framework.executors.keys().map(|(a, _)| a.clone()));
        let info = framework.info.clone();
        for agent in agents {
            if let Some(agent) = self.agents.get(&agent) {
                let id = agent.id.clone();
                self.send_agent(
                    &id,
                    ToAgent::UpdateFramework {
                        framework: info.clone(),
                    },
                );
            }
        }
    }

    /// Replaces a framework's info, suppressed roles and offer constraints; offers to roles it
    /// no longer has are rescinded.
    pub(super) fn update_framework_info(
        &mut self,
        now: Instant,
        framework_id: &str,
        info: v1::FrameworkInfo,
        suppressed: BTreeSet<String>,
        constraints: Option<scheduler::OfferConstraints>,
    ) {
        let new_roles = validation::framework_roles(&info);
        let stale: Vec<String> = self
            .offers
            .values()
            .filter(|o| o.offer.framework_id.value == framework_id)
            .filter(|o| {
                let role = o
                    .offer
                    .allocation_info
                    .as_ref()
                    .and_then(|a| a.role.as_deref());
                !role.is_some_and(|r| new_roles.contains(r))
            })
            .map(|o| o.offer.id.value.clone())
            .collect();
        for id in stale {
            self.remove_offer(now, &id, true, None);
        }
        let framework = self.frameworks.get_mut(framework_id).expect("present");
        framework.info = info;
        framework.suppressed = suppressed;
        framework.offer_constraints = constraints;
        framework.filters.retain(|f| new_roles.contains(&f.role));
    }

    /// The SUBSCRIBE connection `stream` closed. If it is a framework's current stream, the
    /// framework is disconnected: its offers are rescinded and its failover timer starts
    /// (`failover_timeout` 0, the default, removes it at once).
    pub fn stream_closed(&mut self, now: Instant, stream: StreamId) {
        self.observe(now);
        let Some(fid) = self
            .frameworks
            .values()
            .find(|f| f.conn.as_ref().is_some_and(|c| c.stream == stream))
            .map(|f| f.id.value.clone())
        else {
            return;
        };
        info!(framework_id = %fid, "framework disconnected");
        // The stream is gone: rescinds would go nowhere.
        self.frameworks.get_mut(&fid).expect("present").conn = None;
        self.deactivate(now, &fid);
        let framework = self.frameworks.get_mut(&fid).expect("present");
        let timeout = framework.info.failover_timeout();
        if timeout > 0.0 && timeout.is_finite() {
            // A timeout too large to represent never expires.
            framework.failover_at = Duration::try_from_secs_f64(timeout)
                .ok()
                .and_then(|t| now.checked_add(t));
        } else {
            self.remove_framework(now, &fid);
        }
    }

    /// The operator's TEARDOWN (`POST /master/teardown`, v1 `TEARDOWN`): removes the framework
    /// as its own TEARDOWN call does. `Err` is the 400 answer for an unknown framework.
    pub fn teardown(&mut self, now: Instant, framework_id: &str) -> Result<(), CallError> {
        self.observe(now);
        if !self.frameworks.contains_key(framework_id) {
            return Err(CallError::bad_request(
                "No framework found with specified ID",
            ));
        }
        info!(framework_id, "operator TEARDOWN");
        self.remove_framework(now, framework_id);
        Ok(())
    }

    /// Stops offering to the framework and takes back its offers.
    pub(super) fn deactivate(&mut self, now: Instant, framework_id: &str) {
        let Some(framework) = self.frameworks.get_mut(framework_id) else {
            return;
        };
        framework.active = false;
        let offer_ids: Vec<String> = self
            .offers
            .values()
            .filter(|o| o.offer.framework_id.value == framework_id)
            .map(|o| o.offer.id.value.clone())
            .collect();
        for id in offer_ids {
            self.remove_offer(now, &id, true, None);
        }
    }

    /// TEARDOWN semantics: the framework's executors are shut down, its tasks marked
    /// TASK_KILLED (`REASON_FRAMEWORK_REMOVED`) and completed, its stream closed, and it moves
    /// to the completed frameworks.
    pub(super) fn remove_framework(&mut self, now: Instant, framework_id: &str) {
        if !self.frameworks.contains_key(framework_id) {
            return;
        }
        info!(framework_id, "removing framework");
        // Offers go without RESCIND: the framework is going away.
        let offer_ids: Vec<String> = self
            .offers
            .values()
            .filter(|o| o.offer.framework_id.value == framework_id)
            .map(|o| o.offer.id.value.clone())
            .collect();
        for id in offer_ids {
            self.remove_offer(now, &id, false, None);
        }
        let fid = self.frameworks[framework_id].id.clone();
        let agent_ids: Vec<v1::AgentId> = self.agents.values().map(|a| a.id.clone()).collect();
        for agent_id in agent_ids {
            self.send_agent(
                &agent_id,
                ToAgent::ShutdownFramework {
                    framework_id: fid.clone(),
                },
            );
        }
        let task_ids: Vec<String> = self.frameworks[framework_id]
            .tasks
            .keys()
            .cloned()
            .collect();
        for tid in task_ids {
            let task = &self.frameworks[framework_id].tasks[&tid];
            let (agent_id, executor_id) = (task.agent_id.clone(), task.executor_id.clone());
            let status = self.master_status(
                now,
                &tid,
                TaskState::TaskKilled,
                Reason::FrameworkRemoved,
                format!("Framework {framework_id} removed"),
                Some(agent_id),
                executor_id,
            );
            self.update_task(framework_id, &tid, &status, None);
            self.remove_task(framework_id, &tid);
        }
        let executors: Vec<(String, String)> = self.frameworks[framework_id]
            .executors
            .keys()
            .cloned()
            .collect();
        for key in executors {
            self.remove_executor(framework_id, &key);
        }
        let epoch = self.epoch(now);
        let mut framework = self.frameworks.remove(framework_id).expect("present");
        if let Some(conn) = framework.conn.take() {
            self.outputs.push_back(Output::CloseStream {
                stream: conn.stream,
            });
        }
        framework.active = false;
        framework.failover_at = None;
        framework.filters.clear();
        framework.unregistered_time = epoch;
        if self.completed_frameworks.len() >= MAX_COMPLETED_FRAMEWORKS {
            self.completed_frameworks.pop_front();
        }
        self.completed_frameworks.push_back(framework);
        self.counters.frameworks_removed += 1;
    }

    // ----------------------------------------------------------------------------------------
    // Calls
    // ----------------------------------------------------------------------------------------

    /// Every call but SUBSCRIBE. `stream_id` is the `Mesos-Stream-Id` header, if present.
    /// Checks run in Mesos's order: validation (400), framework lookup (400), connected (403),
    /// stream id (400), then the call (202, or 200 for UPDATE_FRAMEWORK; 501 for UNKNOWN).
    pub fn call(
        &mut self,
        now: Instant,
        stream_id: Option<&str>,
        call: scheduler::Call,
    ) -> Result<CallOk, CallError> {
        self.observe(now);
        validation::validate_call(&call).map_err(|e| {
            CallError::bad_request(format!("Failed to validate scheduler::Call: {e}"))
        })?;
        let ty = call
            .r#type
            .and_then(|t| call::Type::try_from(t).ok())
            .unwrap_or(call::Type::Unknown);
        if ty == call::Type::Subscribe {
            return Err(CallError::bad_request(
                "SUBSCRIBE must be sent on its own connection",
            ));
        }
        let fid = call.framework_id.clone().expect("validated").value;
        let Some(framework) = self.frameworks.get(&fid) else {
            return Err(CallError::bad_request("Framework cannot be found"));
        };
        let Some(conn) = &framework.conn else {
            return Err(CallError::forbidden("Framework is not subscribed"));
        };
        let Some(stream_id) = stream_id else {
            return Err(CallError::bad_request(
                "All non-subscribe calls should include the 'Mesos-Stream-Id' header",
            ));
        };
        if stream_id != conn.stream_id {
            return Err(CallError::bad_request(format!(
                "The stream ID '{stream_id}' included in this request didn't match the stream \
                 ID currently associated with framework ID {fid}"
            )));
        }

        match ty {
            call::Type::Subscribe => unreachable!("handled above"),
            call::Type::Teardown => {
                info!(framework_id = %fid, "TEARDOWN");
                self.remove_framework(now, &fid);
            }
            call::Type::Accept => self.accept(now, &fid, call.accept.expect("validated")),
            call::Type::Decline => self.decline(now, &fid, call.decline.expect("validated")),
            call::Type::AcceptInverseOffers | call::Type::DeclineInverseOffers => {
                // No maintenance schedules here, hence no inverse offers.
            }
            call::Type::Revive => self.revive(&fid, call.revive.unwrap_or_default()),
            call::Type::Suppress => self.suppress(&fid, call.suppress.unwrap_or_default()),
            call::Type::Kill => self.kill(now, &fid, call.kill.expect("validated")),
            call::Type::Shutdown => self.shutdown(&fid, call.shutdown.expect("validated")),
            call::Type::Acknowledge => {
                self.acknowledge(&fid, call.acknowledge.expect("validated"));
            }
            call::Type::AcknowledgeOperationStatus | call::Type::ReconcileOperations => {
                // No operations with feedback are supported, so there is nothing to ack or
                // reconcile.
            }
            call::Type::Reconcile => {
                self.reconcile(now, &fid, call.reconcile.expect("validated"));
            }
            call::Type::Message => self.message(&fid, call.message.expect("validated")),
            call::Type::Request => {
                debug!(framework_id = %fid, "ignoring REQUEST");
            }
            call::Type::UpdateFramework => {
                return self.update_framework(
                    now,
                    &fid,
                    *call.update_framework.expect("validated"),
                );
            }
            call::Type::Unknown => {
                return Err(CallError {
                    status: 501,
                    message: String::new(),
                });
            }
        }
        Ok(CallOk::Accepted)
    }

    pub(super) fn update_framework(
        &mut self,
        now: Instant,
        fid: &str,
        update: call::UpdateFramework,
    ) -> Result<CallOk, CallError> {
        let info = update.framework_info;
        self.validate_framework(&info).map_err(|e| {
            CallError::bad_request(format!("Supplied FrameworkInfo is not valid: {e}"))
        })?;
        let old = &self.frameworks[fid].info;
        let invalid =
            |e: String| CallError::bad_request(format!("FrameworkInfo update is not valid: {e}"));
        if old.principal != info.principal {
            return Err(invalid(
                "Changing framework's principal is not allowed.".into(),
            ));
        }
        if old.user != info.user {
            return Err(invalid(format!(
                "Updating 'FrameworkInfo.user' is unsupported; attempted to update from '{}' to \
                 '{}'",
                old.user, info.user
            )));
        }
        if old.checkpoint() != info.checkpoint() {
            return Err(invalid(format!(
                "Updating 'FrameworkInfo.checkpoint' is unsupported; attempted to update from \
                 '{}' to '{}'",
                old.checkpoint(),
                info.checkpoint()
            )));
        }
        let roles = validation::framework_roles(&info);
        validation::validate_suppressed_roles(&roles, &update.suppressed_roles)
            .and_then(|()| match &update.offer_constraints {
                Some(c) => validation::validate_offer_constraints(&roles, c),
                None => Ok(()),
            })
            .map_err(|e| {
                CallError::bad_request(format!("'UpdateFramework' call is not valid: {e}"))
            })?;
        let changed = *old != info;
        self.update_framework_info(
            now,
            fid,
            info,
            update.suppressed_roles.into_iter().collect(),
            update.offer_constraints,
        );
        if changed {
            self.send_framework_updates(fid);
        }
        self.request_allocation();
        Ok(CallOk::Ok(Vec::new()))
    }

    /// The roles of a REVIVE/SUPPRESS call, or `None` (call dropped) if one is not the
    /// framework's. Empty means all of its roles.
    pub(super) fn call_roles(
        &self,
        fid: &str,
        roles: Vec<String>,
        what: &str,
    ) -> Option<BTreeSet<String>> {
        let framework_roles = self.frameworks[fid].roles();
        if roles.is_empty() {
            return Some(framework_roles);
        }
        for role in &roles {
            if let Err(e) = validation::validate_role(role) {
                warn!(
                    framework_id = fid,
                    "dropping {what}: role '{role}' is invalid: {e}"
                );
                return None;
            }
            if !framework_roles.contains(role) {
                warn!(
                    framework_id = fid,
                    "dropping {what}: role '{role}' is not one of the frameworks's subscribed roles"
                );
                return None;
            }
        }
        Some(roles.into_iter().collect())
    }

    pub(super) fn revive(&mut self, fid: &str, revive: call::Revive) {
        let Some(roles) = self.call_roles(fid, revive.roles, "REVIVE") else {
            return;
        };
        let framework = self.frameworks.get_mut(fid).expect("present");
        framework.filters.retain(|f| !roles.contains(&f.role));
        framework.suppressed.retain(|r| !roles.contains(r));
        self.request_allocation();
    }

    pub(super) fn suppress(&mut self, fid: &str, suppress: call::Suppress) {
        let Some(roles) = self.call_roles(fid, suppress.roles, "SUPPRESS") else {
            return;
        };
        self.frameworks
            .get_mut(fid)
            .expect("present")
            .suppressed
            .extend(roles);
    }

    // ----------------------------------------------------------------------------------------
    // Tasks and status updates
    // ----------------------------------------------------------------------------------------

    /// A status update created by the master: SOURCE_MASTER, no uuid.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn master_status(
        &self,
        now: Instant,
        task_id: &str,
        state: TaskState,
        reason: Reason,
        message: String,
        agent_id: Option<v1::AgentId>,
        executor_id: Option<v1::ExecutorId>,
    ) -> v1::TaskStatus {
        v1::TaskStatus {
            task_id: v1::TaskId {
                value: task_id.to_owned(),
            },
            state: state as i32,
            message: Some(message),
            source: Some(Source::Master as i32),
            reason: Some(reason as i32),
            agent_id,
            executor_id,
            timestamp: Some(self.epoch(now)),
            ..Default::default()
        }
    }

    /// `Master::updateTask`: the task's state becomes `latest_state` (or the status's state)
    /// unless it is already terminal; the status is appended (replacing a last one of the same
    /// state, without `data`); resources are released on the transition to terminal or
    /// unreachable.
    pub(super) fn update_task(
        &mut self,
        fid: &str,
        tid: &str,
        status: &v1::TaskStatus,
        latest: Option<i32>,
    ) {
        let Some(framework) = self.frameworks.get_mut(fid) else {
            return;
        };
        let Some(task) = framework.tasks.get_mut(tid) else {
            return;
        };
        let new_state = latest.unwrap_or(status.state);
        let released_before = releases_resources(task.state);
        if !is_terminal_value(task.state) {
            task.state = new_state;
        }
        if task
            .statuses
            .last()
            .is_some_and(|s| s.state == status.state)
        {
            task.statuses.pop();
        }
        let mut stored = status.clone();
        stored.data = None;
        task.statuses.push(stored);
        if !released_before && releases_resources(new_state) {
            let resources = Resources::from_vec(task.resources.clone());
            let agent_id = task.agent_id.value.clone();
            framework.used.subtract(&resources);
            if let Some(agent) = self.agents.get_mut(&agent_id) {
                agent.used.subtract(&resources);
            }
            self.counters.count_terminal(new_state);
        }
    }

    /// Moves a task to the completed tasks, releasing its resources if it still held them.
    pub(super) fn remove_task(&mut self, fid: &str, tid: &str) {
        let Some(framework) = self.frameworks.get_mut(fid) else {
            return;
        };
        let Some(task) = framework.tasks.remove(tid) else {
            return;
        };
        if !releases_resources(task.state) {
            let resources = Resources::from_vec(task.resources.clone());
            framework.used.subtract(&resources);
            if let Some(agent) = self.agents.get_mut(&task.agent_id.value) {
                agent.used.subtract(&resources);
            }
        }
        framework.add_completed_task(task);
    }

    /// A message from an agent.
    pub fn handle_agent(&mut self, now: Instant, msg: ToMaster) {
        self.observe(now);
        match msg {
            ToMaster::StatusUpdate {
                agent_id,
                framework_id,
                status,
                latest_state,
            } => self.status_update(agent_id, framework_id, status, latest_state),
            ToMaster::ExecutorMessage {
                agent_id,
                framework_id,
                executor_id,
                data,
            } => self.executor_message(agent_id, framework_id, executor_id, data),
            ToMaster::ExecutorExited {
                agent_id,
                framework_id,
                executor_id,
                status,
                command_executor,
            } => self.executor_exited(
                agent_id,
                framework_id,
                executor_id,
                status,
                command_executor,
            ),
            ToMaster::AgentDisconnected { agent_id } => self.agent_disconnected(now, &agent_id),
            ToMaster::AgentReregistered { agent_id, tasks } => {
                self.agent_reregistered(now, &agent_id, &tasks)
            }
        }
    }

    pub(super) fn status_update(
        &mut self,
        agent_id: v1::AgentId,
        framework_id: v1::FrameworkId,
        mut status: v1::TaskStatus,
        latest_state: TaskState,
    ) {
        let fid = framework_id.value.as_str();
        let tid = status.task_id.value.clone();
        if !self.agents.contains_key(&agent_id.value) {
            warn!(
                agent_id = %agent_id.value,
                task_id = %tid,
                "ignoring status update from an unknown or removed agent",
            );
            self.counters.invalid_status_updates += 1;
            return;
        }
        // Agent updates are reliable: they carry the uuid the scheduler acknowledges.
        if !status.uuid.as_deref().is_some_and(is_valid_uuid) {
            warn!(
                agent_id = %agent_id.value,
                task_id = %tid,
                "ignoring status update without a valid uuid",
            );
            self.counters.invalid_status_updates += 1;
            return;
        }
        if status.agent_id.is_none() {
            status.agent_id = Some(agent_id.clone());
        }
        let connected = self.frameworks.get(fid).is_some_and(|f| f.conn.is_some());
        if connected {
            if let Some(uuid) = &status.uuid
                && let Some(task) = self
                    .frameworks
                    .get_mut(fid)
                    .and_then(|f| f.tasks.get_mut(&tid))
            {
                task.status_update_state = Some(status.state);
                task.status_update_uuid = Some(uuid.clone());
            }
            debug!(
                framework_id = fid,
                task_id = %tid,
                state = status.state,
                "forwarding status update",
            );
            self.send(fid, update_event(status.clone()));
        } else {
            // The agent re-sends it when the framework re-subscribes.
            warn!(
                framework_id = fid,
                task_id = %tid,
                "status update for an unknown or disconnected framework",
            );
        }
        let known = self
            .frameworks
            .get(fid)
            .and_then(|f| f.tasks.get(&tid))
            .is_some_and(|t| t.agent_id == agent_id);
        if !known {
            self.counters.invalid_status_updates += 1;
            return;
        }
        self.update_task(fid, &tid, &status, Some(latest_state as i32));
        if connected {
            self.counters.valid_status_updates += 1;
        } else {
            self.counters.invalid_status_updates += 1;
        }
    }

    pub(super) fn acknowledge(&mut self, fid: &str, ack: call::Acknowledge) {
        let Some(agent) = self.agents.get(&ack.agent_id.value) else {
            warn!(
                framework_id = fid,
                agent_id = %ack.agent_id.value,
                "dropping ACKNOWLEDGE for an unknown agent",
            );
            self.counters.invalid_status_update_acknowledgements += 1;
            return;
        };
        let agent_id = agent.id.clone();
        let tid = ack.task_id.value.clone();
        let task = self
            .frameworks
            .get(fid)
            .and_then(|f| f.tasks.get(&tid))
            .filter(|t| t.agent_id == agent_id);
        if let Some(task) = task {
            let Some(state) = task.status_update_state else {
                warn!(
                    framework_id = fid,
                    task_id = %tid,
                    "ignoring ACKNOWLEDGE of an update this master did not send",
                );
                self.counters.invalid_status_update_acknowledgements += 1;
                return;
            };
            if is_terminal_value(state) && task.status_update_uuid.as_ref() == Some(&ack.uuid) {
                self.remove_task(fid, &tid);
            }
        }
        let framework_id = self.frameworks[fid].id.clone();
        self.send_agent(
            &agent_id,
            ToAgent::Acknowledge {
                framework_id,
                task_id: ack.task_id,
                uuid: ack.uuid,
            },
        );
        self.counters.valid_status_update_acknowledgements += 1;
    }

    pub(super) fn kill(&mut self, now: Instant, fid: &str, kill: call::Kill) {
        let tid = kill.task_id.value.clone();
        let Some(task) = self.frameworks[fid].tasks.get(&tid) else {
            info!(framework_id = fid, task_id = %tid, "KILL of an unknown task; reconciling");
            let reconcile = call::Reconcile {
                tasks: vec![call::reconcile::Task {
                    task_id: kill.task_id,
                    agent_id: kill.agent_id,
                }],
            };
            self.reconcile(now, fid, reconcile);
            return;
        };
        if kill.agent_id.as_ref().is_some_and(|a| *a != task.agent_id) {
            warn!(
                framework_id = fid,
                task_id = %tid,
                "ignoring KILL: the task is on another agent",
            );
            return;
        }
        let agent_id = task.agent_id.clone();
        let framework_id = self.frameworks[fid].id.clone();
        self.send_agent(
            &agent_id,
            ToAgent::KillTask {
                framework_id,
                task_id: kill.task_id,
                kill_policy: kill.kill_policy,
            },
        );
    }

    pub(super) fn shutdown(&mut self, fid: &str, shutdown: call::Shutdown) {
        if !self.agents.contains_key(&shutdown.agent_id.value) {
            warn!(
                framework_id = fid,
                agent_id = %shutdown.agent_id.value,
                "dropping SHUTDOWN for an unknown agent",
            );
            return;
        }
        let framework_id = self.frameworks[fid].id.clone();
        self.send_agent(
            &shutdown.agent_id,
            ToAgent::ShutdownExecutor {
                framework_id,
                executor_id: shutdown.executor_id,
            },
        );
    }

    pub(super) fn message(&mut self, fid: &str, message: call::Message) {
        if !self.agents.contains_key(&message.agent_id.value) {
            warn!(
                framework_id = fid,
                agent_id = %message.agent_id.value,
                "dropping MESSAGE for an unknown agent",
            );
            self.counters.invalid_framework_to_executor_messages += 1;
            return;
        }
        let framework_id = self.frameworks[fid].id.clone();
        self.send_agent(
            &message.agent_id,
            ToAgent::FrameworkMessage {
                framework_id,
                executor_id: message.executor_id,
                data: message.data,
            },
        );
        self.counters.valid_framework_to_executor_messages += 1;
    }

    pub(super) fn executor_message(
        &mut self,
        agent_id: v1::AgentId,
        framework_id: v1::FrameworkId,
        executor_id: v1::ExecutorId,
        data: Bytes,
    ) {
        let connected = self
            .frameworks
            .get(&framework_id.value)
            .is_some_and(|f| f.conn.is_some());
        if !self.agents.contains_key(&agent_id.value) || !connected {
            debug!(framework_id = %framework_id.value, "dropping executor message");
            self.counters.invalid_executor_to_framework_messages += 1;
            return;
        }
        let message = scheduler::Event {
            message: Some(event::Message {
                agent_id,
                executor_id,
                data,
            }),
            ..event(event::Type::Message)
        };
        self.send(&framework_id.value, message);
        self.counters.valid_executor_to_framework_messages += 1;
    }

    pub(super) fn executor_exited(
        &mut self,
        agent_id: v1::AgentId,
        framework_id: v1::FrameworkId,
        executor_id: v1::ExecutorId,
        status: i32,
        command_executor: bool,
    ) {
        let key = (agent_id.value.clone(), executor_id.value.clone());
        let known = self
            .frameworks
            .get(&framework_id.value)
            .is_some_and(|f| f.executors.contains_key(&key));
        // Command executors are the agent's business: the master never knew them.
        if command_executor || !known || !self.agents.contains_key(&agent_id.value) {
            return;
        }
        info!(
            framework_id = %framework_id.value,
            executor_id = %executor_id.value,
            status,
            "executor exited",
        );
        self.remove_executor(&framework_id.value, &key);
        let failure = scheduler::Event {
            failure: Some(event::Failure {
                agent_id: Some(agent_id),
                executor_id: Some(executor_id),
                status: Some(status),
            }),
            ..event(event::Type::Failure)
        };
        self.send(&framework_id.value, failure);
    }

    /// The reconciliation answer for a task the master knows: its latest state (the update being
    /// delivered, if any), with health, check and container status of its last status.
    pub(super) fn reconcile_known(&self, now: Instant, task: &v1::Task) -> v1::TaskStatus {
        let state = task.status_update_state.unwrap_or(task.state);
        let state = TaskState::try_from(state).unwrap_or(TaskState::TaskStaging);
        let mut status = self.master_status(
            now,
            &task.task_id.value,
            state,
            Reason::Reconciliation,
            "Reconciliation: Latest task state".into(),
            Some(task.agent_id.clone()),
            task.executor_id.clone(),
        );
        if let Some(last) = task.statuses.last() {
            status.healthy = last.healthy;
            status.check_status = last.check_status;
            status.container_status = last.container_status.clone();
        }
        status
    }

    pub(super) fn reconcile(&mut self, now: Instant, fid: &str, reconcile: call::Reconcile) {
        let framework = &self.frameworks[fid];
        let partition_aware = framework.capable(Capability::PartitionAware);
        let mut updates = Vec::new();
        if reconcile.tasks.is_empty() {
            for task in framework.tasks.values() {
                updates.push(self.reconcile_known(now, task));
            }
        } else {
            for t in &reconcile.tasks {
                let tid = &t.task_id.value;
                let status = if let Some(task) = framework.tasks.get(tid) {
                    self.reconcile_known(now, task)
                } else if let Some(agent_id) = t
                    .agent_id
                    .as_ref()
                    .filter(|a| self.agents.contains_key(&a.value))
                {
                    let state = if partition_aware {
                        TaskState::TaskGone
                    } else {
                        TaskState::TaskLost
                    };
                    self.master_status(
                        now,
                        tid,
                        state,
                        Reason::Reconciliation,
                        "Reconciliation: Task is unknown to the agent".into(),
                        Some(agent_id.clone()),
                        None,
                    )
                } else {
                    let state = if partition_aware {
                        TaskState::TaskUnknown
                    } else {
                        TaskState::TaskLost
                    };
                    self.master_status(
                        now,
                        tid,
                        state,
                        Reason::Reconciliation,
                        "Reconciliation: Task is unknown".into(),
                        t.agent_id.clone(),
                        None,
                    )
                };
                updates.push(status);
            }
        }
        for status in updates {
            self.send(fid, update_event(status));
        }
    }

    // ----------------------------------------------------------------------------------------
    // Time
    // ----------------------------------------------------------------------------------------

    /// Does what is due at `now`: failover timeouts, offer timeouts, heartbeats, allocation.
    pub fn tick(&mut self, now: Instant) {
        self.observe(now);

        let expired: Vec<String> = self
            .frameworks
            .values()
            .filter(|f| f.failover_at.is_some_and(|t| t <= now))
            .map(|f| f.id.value.clone())
            .collect();
        for fid in expired {
            info!(framework_id = %fid, "framework failover timeout");
            self.remove_framework(now, &fid);
        }

        let timed_out: Vec<String> = self
            .offers
            .values()
            .filter(|o| o.expires.is_some_and(|t| t <= now))
            .map(|o| o.offer.id.value.clone())
            .collect();
        for id in timed_out {
            self.remove_offer(now, &id, true, None);
        }

        let lost: Vec<v1::AgentId> = self
            .agents
            .values()
            .filter(|a| {
                a.disconnected_at
                    .is_some_and(|t| t + self.config.agent_lost_timeout <= now)
            })
            .map(|a| a.id.clone())
            .collect();
        for id in lost {
            self.mark_unreachable(now, &id);
        }

        let interval = self.config.heartbeat_interval;
        let mut beats = Vec::new();
        for framework in self.frameworks.values_mut() {
            if let Some(conn) = framework.conn.as_mut()
                && conn.next_heartbeat <= now
            {
                conn.next_heartbeat = now + interval;
                beats.push(conn.stream);
            }
        }
        for stream in beats {
            self.outputs.push_back(Output::Event {
                stream,
                event: event(event::Type::Heartbeat),
            });
        }

        let periodic = self.periodic_allocation <= now;
        if periodic {
            self.periodic_allocation = now + self.config.allocation_interval;
        }
        if periodic || self.allocation_requested {
            self.allocation_requested = false;
            self.allocate(now);
        }
    }

    /// When [`Master::tick`] next has something to do.
    pub fn next_timeout(&self) -> Option<Instant> {
        if self.allocation_requested {
            return Some(self.last_now);
        }
        let mut next = self.periodic_allocation;
        for framework in self.frameworks.values() {
            if let Some(t) = framework.failover_at {
                next = next.min(t);
            }
            if let Some(conn) = &framework.conn {
                next = next.min(conn.next_heartbeat);
            }
        }
        for offer in self.offers.values() {
            if let Some(t) = offer.expires {
                next = next.min(t);
            }
        }
        for agent in self.agents.values() {
            if let Some(t) = agent.disconnected_at {
                next = next.min(t + self.config.agent_lost_timeout);
            }
        }
        Some(next)
    }
}
