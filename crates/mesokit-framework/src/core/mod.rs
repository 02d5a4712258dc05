//! The scheduler as a state machine with no IO: events from Mesos, the time and operator
//! commands go in; calls to Mesos, store writes and task events come out, in the order they
//! must be carried out.
//!
//! The order is the durability contract: a launch is written to the store before the ACCEPT
//! that launches it, and a status update before the ACKNOWLEDGE of it. A driver that performs
//! [`Output`]s one after another (awaiting each store write) never loses a task.

mod build;
mod record;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mesokit_proto::v1::scheduler::{Call, Event, call, event};
use mesokit_proto::v1::{
    AgentId, Filters, FrameworkId, FrameworkInfo, Offer, OfferId, TaskId, TaskState, TaskStatus,
    framework_info, offer,
};

use crate::constraints::{self, Compiled, Placement};
use crate::offers::{Needs, OfferPool, offer_role};
use crate::spec::{ExecutorSpec, JobKind, JobSpec};
use crate::store::Write;

pub use build::TaskContext;
pub use record::{Phase, Record};

/// Knobs of the core that are not part of the job spec.
#[derive(Debug, Clone)]
pub struct Config {
    /// Refuse filter for offers we have no use for while nothing is pending.
    pub decline_idle: Duration,
    /// Refuse filter for offers declined (or partly used) while tasks are pending.
    pub decline_busy: Duration,
    /// Minimum time between two REVIVE calls.
    pub revive_interval: Duration,
    /// Implicit reconciliation period.
    pub reconcile_interval: Duration,
    /// Command starting `mesokit executor` on the agents, for groups with `executor: mesokit`.
    pub executor_command: String,
    /// Unix user tasks run as when the spec has none.
    pub default_user: String,
    /// Hostname to report in FrameworkInfo.
    pub hostname: Option<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            decline_idle: Duration::from_secs(120),
            decline_busy: Duration::from_secs(5),
            revive_interval: Duration::from_secs(1),
            reconcile_interval: Duration::from_secs(600),
            executor_command: "mesokit executor".into(),
            default_user: std::env::var("USER").unwrap_or_else(|_| "root".into()),
            hostname: None,
        }
    }
}

/// Something the driver must do, in this order.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// Make these writes durable before carrying on.
    Persist(Vec<Write>),
    /// Send this call to the master (boxed: a `Call` is large, and bursts queue many).
    Call(Box<Call>),
    /// Tell the library user.
    Event(TaskEvent),
}

/// A change in a task's life, for library users and progress displays.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskEvent {
    /// Group name.
    pub group: Arc<str>,
    /// Instance number.
    pub index: u32,
    /// Mesos task id.
    pub task_id: Arc<str>,
    /// What happened.
    pub kind: TaskEventKind,
}

/// What happened to a task.
#[derive(Debug, Clone, PartialEq)]
pub enum TaskEventKind {
    /// Sent to an agent.
    Launched {
        /// Agent hostname.
        hostname: Arc<str>,
    },
    /// TASK_RUNNING.
    Running,
    /// Health check passed (first time or after failing).
    Healthy,
    /// Health check failed.
    Unhealthy,
    /// TASK_FINISHED.
    Finished,
    /// TASK_FAILED / TASK_ERROR, with Mesos's message.
    Failed {
        /// Mesos's state name.
        state: String,
        /// Message of the update.
        message: String,
    },
    /// TASK_KILLED.
    Killed,
    /// Lost, gone, dropped or unreachable.
    Lost {
        /// Mesos's state name.
        state: String,
        /// Message of the update.
        message: String,
    },
    /// Will be launched again after `delay`.
    Restarting {
        /// Backoff.
        delay: Duration,
        /// Restart number.
        restart: u32,
    },
    /// Ended for good without success (policy exhausted).
    GaveUp,
}

/// Counts per group, for displays.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupCounts {
    /// Waiting for an offer.
    pub pending: u32,
    /// Launched, not running yet.
    pub staging: u32,
    /// TASK_RUNNING.
    pub running: u32,
    /// Running and healthy (groups with a health check).
    pub healthy: u32,
    /// Finished (batch).
    pub finished: u32,
    /// Ended for good without success.
    pub failed: u32,
    /// Killed on request (stop, kill) and not restarted.
    pub killed: u32,
    /// Restarts so far.
    pub restarts: u32,
}

/// Counters for `/metrics`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Metrics {
    /// Offers received.
    pub offers_received: u64,
    /// Offers declined whole.
    pub offers_declined: u64,
    /// Tasks launched.
    pub tasks_launched: u64,
    /// Status updates received.
    pub updates: u64,
    /// SUBSCRIBED events after the first.
    pub resubscriptions: u64,
    /// Sum of launch -> TASK_RUNNING latencies, seconds.
    pub launch_latency_sum: f64,
    /// Number of latencies in the sum.
    pub launch_latency_count: u64,
    /// Latency histogram buckets (upper bounds in seconds) and cumulative counts.
    pub launch_latency_buckets: Vec<(f64, u64)>,
}

const LATENCY_BUCKETS: [f64; 8] = [0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0];

/// Why we asked to kill a task (decides what happens when it ends).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KillReason {
    /// Operator kill: restart as the policy says for TASK_KILLED in a service; end in a batch.
    Operator,
    /// Scale down: the instance goes away.
    ScaleDown,
    /// Rolling restart: launch again at once.
    Restart,
    /// The job is stopping.
    Stop,
}

#[derive(Debug)]
struct Instance {
    rec: Record,
    group: usize,
    healthy: Option<bool>,
    launched_at: Option<Instant>,
    kill: Option<KillReason>,
    /// Set when the record is removed (scale down): the slot is dead.
    removed: bool,
    /// Counted as finished successfully (batch).
    succeeded: bool,
}

#[derive(Debug)]
struct Group {
    /// The group's name, one copy shared by its records and events.
    name: Arc<str>,
    needs: Needs,
    constraints: Vec<Compiled>,
    placement: Placement,
    /// Pending instances whose backoff is over, lowest index first.
    ready: VecDeque<usize>,
    /// All instance slots of the group (by index).
    slots: Vec<usize>,
    target: u32,
    rolling: VecDeque<usize>,
    rolling_current: Option<usize>,
}

/// The scheduler core. See the module docs.
#[derive(Debug)]
pub struct Scheduler {
    job: JobSpec,
    config: Config,
    groups: Vec<Group>,
    /// Group indices by priority, highest first (stable for equal priorities).
    order: Vec<usize>,
    instances: Vec<Instance>,
    delayed: BinaryHeap<Reverse<(Instant, usize)>>,
    framework_id: Option<String>,
    /// The empty string, shared by every record that has no task or agent yet.
    empty: Arc<str>,
    /// Tasks placed on the last offer that took any (sizes the next offer's list).
    last_offer_tasks: usize,
    /// One offer's task events before they are queued (empty between offers).
    event_scratch: Vec<TaskEvent>,
    subscribed_once: bool,
    connected: bool,
    suppressed: bool,
    last_revive: Option<Instant>,
    revive_wanted: bool,
    next_reconcile: Option<Instant>,
    stopping: bool,
    /// Tasks the store knew but the spec no longer has: killed after SUBSCRIBED.
    orphans: Vec<(String, String)>,
    out: VecDeque<Output>,
    metrics: Metrics,
    warnings: Vec<String>,
}

fn task_call(kind: call::Type) -> Call {
    Call {
        r#type: Some(kind as i32),
        ..Call::default()
    }
}

fn state_name(s: TaskState) -> String {
    s.as_str_name().to_string()
}

impl Scheduler {
    /// A scheduler for `job`, nothing launched yet. Validate the spec first.
    pub fn new(job: JobSpec, config: Config) -> Scheduler {
        let mut s = Scheduler {
            groups: Vec::new(),
            order: Vec::new(),
            instances: Vec::new(),
            delayed: BinaryHeap::new(),
            framework_id: None,
            empty: "".into(),
            last_offer_tasks: 1,
            event_scratch: Vec::new(),
            subscribed_once: false,
            connected: false,
            suppressed: false,
            last_revive: None,
            revive_wanted: false,
            next_reconcile: None,
            stopping: false,
            orphans: Vec::new(),
            out: VecDeque::new(),
            metrics: Metrics {
                launch_latency_buckets: LATENCY_BUCKETS.iter().map(|b| (*b, 0)).collect(),
                ..Metrics::default()
            },
            warnings: Vec::new(),
            job,
            config,
        };
        for (gi, g) in s.job.groups.iter().enumerate() {
            let r = &g.resources;
            let mut needs = Needs::new(r.cpus, r.mem, r.disk, r.gpus, r.ports, &r.fixed_ports);
            if let ExecutorSpec::Mesokit(_) = g.executor {
                for (k, v) in build::EXECUTOR_RESOURCES.iter().enumerate() {
                    needs.scalars[k] += mesokit_proto::resources::to_fixed(*v);
                }
            }
            s.groups.push(Group {
                name: g.name.as_str().into(),
                needs,
                constraints: g.constraints.iter().map(Compiled::new).collect(),
                placement: Placement::default(),
                ready: VecDeque::new(),
                slots: Vec::new(),
                target: g.instances,
                rolling: VecDeque::new(),
                rolling_current: None,
            });
            let _ = gi;
        }
        s.order = (0..s.job.groups.len()).collect();
        s.order.sort_by_key(|g| Reverse(s.job.groups[*g].priority));
        let total: usize = s.groups.iter().map(|g| g.target as usize).sum();
        s.instances.reserve(total);
        for gi in 0..s.groups.len() {
            let target = s.groups[gi].target;
            s.groups[gi].slots.reserve(target as usize);
            for index in 0..s.groups[gi].target {
                s.add_instance(gi, index);
            }
        }
        s
    }

    fn add_instance(&mut self, gi: usize, index: u32) -> usize {
        let id = self.instances.len();
        self.instances.push(Instance {
            rec: Record {
                group: Arc::clone(&self.groups[gi].name),
                index,
                attempt: 0,
                restarts: 0,
                phase: Phase::Pending,
                task_id: Arc::clone(&self.empty),
                agent_id: Arc::clone(&self.empty),
                hostname: Arc::clone(&self.empty),
                ports: Vec::new(),
                state: TaskState::TaskStaging,
                placed: Vec::new(),
            },
            group: gi,
            healthy: None,
            launched_at: None,
            kill: None,
            removed: false,
            succeeded: false,
        });
        self.groups[gi].slots.push(id);
        self.groups[gi].ready.push_back(id);
        id
    }

    /// The job.
    pub fn job(&self) -> &JobSpec {
        &self.job
    }

    /// The framework id, once known.
    pub fn framework_id(&self) -> Option<&str> {
        self.framework_id.as_deref()
    }

    /// FrameworkInfo to SUBSCRIBE with (includes the framework id once known).
    pub fn framework_info(&self) -> FrameworkInfo {
        use framework_info::capability::Type as Cap;
        let caps = [Cap::MultiRole, Cap::TaskKillingState, Cap::RegionAware];
        FrameworkInfo {
            user: self
                .job
                .user
                .clone()
                .unwrap_or_else(|| self.config.default_user.clone()),
            name: self.job.name.clone(),
            id: self
                .framework_id
                .as_ref()
                .map(|v| FrameworkId { value: v.clone() }),
            failover_timeout: Some(self.job.failover_timeout.as_secs_f64()),
            checkpoint: Some(true),
            roles: self.job.roles.clone(),
            hostname: self.config.hostname.clone(),
            capabilities: caps
                .iter()
                .map(|c| framework_info::Capability {
                    r#type: Some(*c as i32),
                })
                .collect(),
            ..FrameworkInfo::default()
        }
    }

    /// Loads what a previous run stored. Call before the first SUBSCRIBE. Returns a warning
    /// per record that could not be used (the record is dropped from the store).
    pub fn restore(&mut self, stored: Vec<(String, Vec<u8>)>) -> Vec<String> {
        let mut warnings = Vec::new();
        let mut drop_keys = Vec::new();
        for (key, value) in stored {
            if key == "framework_id" {
                match String::from_utf8(value) {
                    Ok(id) if !id.is_empty() => self.framework_id = Some(id),
                    _ => warnings.push("stored framework_id is not text; ignored".into()),
                }
                continue;
            }
            if !key.starts_with("tasks/") {
                continue;
            }
            let Some(rec) = Record::decode(&value) else {
                warnings.push(format!("stored record {key} is unreadable; dropped"));
                drop_keys.push(key);
                continue;
            };
            // Slots are in index order: the record's index finds its slot directly.
            let slot = self
                .job
                .groups
                .iter()
                .position(|g| *g.name == *rec.group)
                .and_then(|gi| self.groups[gi].slots.get(rec.index as usize).copied())
                .filter(|id| self.instances[*id].rec.index == rec.index);
            match slot {
                Some(id) => {
                    let gi = self.instances[id].group;
                    let inst = &mut self.instances[id];
                    if rec.phase == Phase::Launched {
                        let g = &mut self.groups[gi];
                        g.placement.record(&g.constraints, &rec.placed, 1);
                    }
                    inst.succeeded =
                        rec.phase == Phase::Done && rec.state == TaskState::TaskFinished;
                    let group = Arc::clone(&inst.rec.group);
                    inst.rec = rec;
                    // One copy of the name for the whole group.
                    inst.rec.group = group;
                }
                None => {
                    // The spec shrank or changed: kill what still runs, forget the record.
                    if rec.phase == Phase::Launched {
                        self.orphans
                            .push((rec.task_id.to_string(), rec.agent_id.to_string()));
                    }
                    drop_keys.push(key);
                }
            }
        }
        // Pending again: whatever the store did not record as launched or done.
        for g in &mut self.groups {
            g.ready = g
                .slots
                .iter()
                .copied()
                .filter(|id| self.instances[*id].rec.phase == Phase::Pending)
                .collect();
        }
        if !drop_keys.is_empty() {
            self.out.push_back(Output::Persist(
                drop_keys
                    .into_iter()
                    .map(|key| Write::Delete { key })
                    .collect(),
            ));
        }
        self.warnings.extend(warnings.iter().cloned());
        warnings
    }

    /// The next thing to do, if any.
    pub fn poll_output(&mut self) -> Option<Output> {
        let out = self.out.pop_front();
        if out.is_none() && self.out.capacity() > 1024 {
            // A burst (100k launches) must not pin its queue's memory for the rest of the run.
            self.out.shrink_to(64);
        }
        out
    }

    /// When [`Scheduler::tick`] should be called next.
    pub fn next_timeout(&self) -> Option<Instant> {
        let delayed = self.delayed.peek().map(|Reverse((t, _))| *t);
        let revive = if self.revive_wanted && self.connected {
            self.last_revive.map(|t| t + self.config.revive_interval)
        } else {
            None
        };
        [delayed, revive, self.next_reconcile]
            .into_iter()
            .flatten()
            .min()
    }

    /// A SUBSCRIBED event arrived (the client reports it separately from other events).
    pub fn on_subscribed(&mut self, framework_id: &FrameworkId, now: Instant) {
        if self.subscribed_once {
            self.metrics.resubscriptions += 1;
        }
        self.subscribed_once = true;
        self.connected = true;
        self.suppressed = false;
        if self.framework_id.as_deref() != Some(framework_id.value.as_str()) {
            if let Some(old) = &self.framework_id {
                self.warnings.push(format!(
                    "Mesos gave a new framework id {} (the stored one, {old}, expired); tasks of the old one are lost",
                    framework_id.value
                ));
            }
            self.framework_id = Some(framework_id.value.clone());
            self.out.push_back(Output::Persist(vec![Write::Put {
                key: "framework_id".into(),
                value: framework_id.value.as_bytes().to_vec(),
            }]));
        }
        // Explicit reconciliation of every task we believe is live, then implicit.
        let known: Vec<call::reconcile::Task> = self
            .instances
            .iter()
            .filter(|i| i.rec.phase == Phase::Launched)
            .map(|i| call::reconcile::Task {
                task_id: TaskId {
                    value: i.rec.task_id.to_string(),
                },
                agent_id: (!i.rec.agent_id.is_empty()).then(|| AgentId {
                    value: i.rec.agent_id.to_string(),
                }),
            })
            .collect();
        if !known.is_empty() {
            let mut c = task_call(call::Type::Reconcile);
            c.reconcile = Some(call::Reconcile { tasks: known });
            self.out.push_back(Output::Call(Box::new(c)));
        }
        self.reconcile_implicit(now);
        for (task, agent) in std::mem::take(&mut self.orphans) {
            self.push_kill(&task, &agent);
        }
        // A new subscription starts unsuppressed (we never subscribe with suppressed roles),
        // so no REVIVE is needed; SUPPRESS follows at once if nothing is pending.
        self.revive_wanted = false;
        self.update_offer_interest(now);
    }

    fn reconcile_implicit(&mut self, now: Instant) {
        let mut c = task_call(call::Type::Reconcile);
        c.reconcile = Some(call::Reconcile { tasks: Vec::new() });
        self.out.push_back(Output::Call(Box::new(c)));
        self.next_reconcile = Some(now + self.config.reconcile_interval);
    }

    /// The connection to the master broke; outstanding offers are void.
    pub fn on_disconnected(&mut self) {
        self.connected = false;
    }

    /// Whether the scheduler is subscribed.
    pub fn is_connected(&self) -> bool {
        self.connected
    }

    /// Any event but SUBSCRIBED.
    pub fn on_event(&mut self, event: Event, now: Instant) {
        let Some(kind) = event.r#type.and_then(|t| event::Type::try_from(t).ok()) else {
            return;
        };
        match kind {
            event::Type::Offers => {
                if let Some(o) = event.offers {
                    self.on_offers(o.offers, now);
                }
            }
            event::Type::Update => {
                if let Some(u) = event.update {
                    self.on_update(u.status, now);
                }
            }
            event::Type::Subscribed => {
                if let Some(s) = event.subscribed {
                    self.on_subscribed(&s.framework_id, now);
                }
            }
            // Rescinded offers were never kept; agent/executor failures come with task
            // updates; ERROR ends the session in the client.
            _ => {}
        }
    }

    fn has_pending(&self) -> bool {
        !self.stopping
            && (self.groups.iter().any(|g| !g.ready.is_empty()) || !self.delayed.is_empty())
    }

    fn has_ready(&self) -> bool {
        !self.stopping && self.groups.iter().any(|g| !g.ready.is_empty())
    }

    /// Offers: launch what fits, decline the rest.
    pub fn on_offers(&mut self, offers: Vec<Offer>, now: Instant) {
        self.metrics.offers_received += offers.len() as u64;
        let mut declined: Vec<OfferId> = Vec::new();
        // Per offer that takes tasks: its store writes, its ACCEPT, its task events, in that
        // order (a driver batches the writes of everything queued into one commit anyway).
        // Events wait in a small list reused from offer to offer, not in one the size of the
        // whole launch.
        let mut events = std::mem::take(&mut self.event_scratch);
        for offer in &offers {
            if !self.has_ready() {
                declined.push(offer.id.clone());
                continue;
            }
            let mut writes: Vec<Write> = Vec::with_capacity(self.last_offer_tasks);
            let tasks = self.fill_offer(offer, now, &mut writes, &mut events);
            if tasks.is_empty() {
                declined.push(offer.id.clone());
                continue;
            }
            self.metrics.tasks_launched += tasks.len() as u64;
            // What is left of this offer comes back soon while work still waits.
            let refuse = if self.has_pending() {
                self.config.decline_busy
            } else {
                self.config.decline_idle
            };
            let mut c = task_call(call::Type::Accept);
            c.accept = Some(call::Accept {
                offer_ids: vec![offer.id.clone()],
                operations: vec![offer::Operation {
                    r#type: Some(offer::operation::Type::Launch as i32),
                    launch: Some(offer::operation::Launch { task_infos: tasks }),
                    ..offer::Operation::default()
                }],
                filters: Some(Filters {
                    refuse_seconds: Some(refuse.as_secs_f64()),
                }),
            });
            self.out.reserve(2 + events.len());
            self.out.push_back(Output::Persist(writes));
            self.out.push_back(Output::Call(Box::new(c)));
            self.out.extend(events.drain(..).map(Output::Event));
        }
        self.event_scratch = events;
        let refuse = if self.has_pending() {
            self.config.decline_busy
        } else {
            self.config.decline_idle
        };
        if !declined.is_empty() {
            self.metrics.offers_declined += declined.len() as u64;
            let mut c = task_call(call::Type::Decline);
            c.decline = Some(call::Decline {
                offer_ids: declined,
                filters: Some(Filters {
                    refuse_seconds: Some(refuse.as_secs_f64()),
                }),
            });
            self.out.push_back(Output::Call(Box::new(c)));
        }
        self.update_offer_interest(now);
    }

    fn fill_offer(
        &mut self,
        offer: &Offer,
        now: Instant,
        writes: &mut Vec<Write>,
        events: &mut Vec<TaskEvent>,
    ) -> Vec<mesokit_proto::v1::TaskInfo> {
        let mut pool = OfferPool::new(offer);
        // One copy of the agent's id and hostname for every task placed on this offer.
        let agent: Arc<str> = offer.agent_id.value.as_str().into();
        let host: Arc<str> = offer.hostname.as_str().into();
        // Room for as many tasks as the last offer took (offers of one batch tend to look
        // alike), or fewer if that many are not waiting: a `TaskInfo` is 376 bytes, so a
        // list that grows moves a lot, and room left over lives on in the ACCEPT.
        let ready: usize = self.groups.iter().map(|g| g.ready.len()).sum();
        let mut tasks = Vec::with_capacity(self.last_offer_tasks.clamp(1, ready.max(1)));
        let mut scratch = String::new();
        let role = offer_role(offer);
        for oi in 0..self.order.len() {
            let gi = self.order[oi];
            if self.groups[gi].ready.is_empty() {
                continue;
            }
            let spec = &self.job.groups[gi];
            if !spec.roles.is_empty() && !spec.roles.iter().any(|r| r == role) {
                continue;
            }
            loop {
                let g = &self.groups[gi];
                let Some(&id) = g.ready.front() else { break };
                if !g.constraints.is_empty() && !g.placement.allows(&g.constraints, offer, g.target)
                {
                    break;
                }
                let Some(taken) = pool.take(&g.needs) else {
                    break;
                };
                self.groups[gi].ready.pop_front();
                let placed = if self.groups[gi].constraints.is_empty() {
                    Vec::new()
                } else {
                    constraints::values_for(&self.groups[gi].constraints, offer)
                };
                let g = &mut self.groups[gi];
                g.placement.record(&g.constraints, &placed, 1);
                let inst = &mut self.instances[id];
                inst.rec.attempt += 1;
                scratch.clear();
                record::push_task_id(
                    &mut scratch,
                    &self.job.name,
                    &inst.rec.group,
                    inst.rec.index,
                    inst.rec.attempt,
                );
                inst.rec.task_id = scratch.as_str().into();
                inst.rec.phase = Phase::Launched;
                inst.rec.agent_id = agent.clone();
                inst.rec.hostname = host.clone();
                inst.rec.state = TaskState::TaskStaging;
                inst.rec.placed = placed;
                inst.healthy = None;
                inst.kill = None;
                inst.launched_at = Some(now);
                let ctx = TaskContext {
                    job: &self.job,
                    group: &self.job.groups[gi],
                    index: inst.rec.index,
                    task_id: &inst.rec.task_id,
                    offer,
                    ports: &taken.ports,
                    executor_command: &self.config.executor_command,
                };
                tasks.push(build::task_info(&ctx, taken.resources));
                inst.rec.ports = taken.ports;
                writes.push(Write::Put {
                    key: Record::key(&inst.rec.group, inst.rec.index),
                    value: inst.rec.encode(),
                });
                events.push(TaskEvent {
                    group: inst.rec.group.clone(),
                    index: inst.rec.index,
                    task_id: inst.rec.task_id.clone(),
                    kind: TaskEventKind::Launched {
                        hostname: host.clone(),
                    },
                });
            }
        }
        if !tasks.is_empty() {
            self.last_offer_tasks = tasks.len();
        }
        tasks
    }

    /// A status update: record it, decide what follows, then acknowledge it.
    pub fn on_update(&mut self, status: TaskStatus, now: Instant) {
        self.metrics.updates += 1;
        let state = TaskState::try_from(status.state).unwrap_or(TaskState::TaskUnknown);
        let ack = status.uuid.as_ref().map(|uuid| {
            let mut c = task_call(call::Type::Acknowledge);
            c.acknowledge = Some(call::Acknowledge {
                agent_id: status.agent_id.clone().unwrap_or_default(),
                task_id: status.task_id.clone(),
                uuid: uuid.clone(),
            });
            c
        });
        let Some(id) = self.live_instance(&status.task_id.value) else {
            // Not one of ours (or an old attempt): make sure it does not run, then ack.
            if mesokit_proto::helpers::is_active(state) {
                let agent = status
                    .agent_id
                    .as_ref()
                    .map(|a| a.value.clone())
                    .unwrap_or_default();
                self.push_kill(&status.task_id.value, &agent);
            }
            if let Some(c) = ack {
                self.out.push_back(Output::Call(Box::new(c)));
            }
            return;
        };
        let mut events = Vec::new();
        let gi = self.instances[id].group;
        // What the store holds for this instance now: an update that changes none of it
        // (a reconciliation answer repeating the known state) needs no write.
        let stored = {
            let r = &self.instances[id].rec;
            (
                r.phase,
                r.state,
                Arc::clone(&r.agent_id),
                r.attempt,
                r.restarts,
            )
        };
        let terminal =
            mesokit_proto::helpers::is_terminal(state) || matches!(state, TaskState::TaskUnknown);
        {
            let inst = &mut self.instances[id];
            let ev = |kind| TaskEvent {
                group: inst.rec.group.clone(),
                index: inst.rec.index,
                task_id: inst.rec.task_id.clone(),
                kind,
            };
            if state == TaskState::TaskRunning && inst.rec.state != TaskState::TaskRunning {
                events.push(ev(TaskEventKind::Running));
                if let Some(t) = inst.launched_at.take() {
                    let secs = now.saturating_duration_since(t).as_secs_f64();
                    self.metrics.launch_latency_sum += secs;
                    self.metrics.launch_latency_count += 1;
                    for (bound, n) in &mut self.metrics.launch_latency_buckets {
                        if secs <= *bound {
                            *n += 1;
                        }
                    }
                }
            }
            if let Some(h) = status.healthy
                && !terminal
                && inst.healthy != Some(h)
            {
                inst.healthy = Some(h);
                events.push(ev(if h {
                    TaskEventKind::Healthy
                } else {
                    TaskEventKind::Unhealthy
                }));
            }
            if let Some(a) = status.agent_id.as_ref()
                && !a.value.is_empty()
                && *inst.rec.agent_id != *a.value
            {
                inst.rec.agent_id = a.value.as_str().into();
            }
            inst.rec.state = state;
        }
        if terminal && self.instances[id].rec.phase == Phase::Launched {
            self.on_terminal(id, state, &status, now, &mut events);
        }
        let inst = &self.instances[id];
        let r = &inst.rec;
        let changed = inst.removed
            || (r.phase, r.state, &*r.agent_id, r.attempt, r.restarts)
                != (stored.0, stored.1, &*stored.2, stored.3, stored.4);
        if changed {
            let key = Record::key(&r.group, r.index);
            let write = if inst.removed {
                Write::Delete { key }
            } else {
                Write::Put {
                    key,
                    value: r.encode(),
                }
            };
            self.out.push_back(Output::Persist(vec![write]));
        }
        if let Some(c) = ack {
            self.out.push_back(Output::Call(Box::new(c)));
        }
        self.out.extend(events.into_iter().map(Output::Event));
        self.advance_rolling(gi);
        self.update_offer_interest(now);
    }

    fn on_terminal(
        &mut self,
        id: usize,
        state: TaskState,
        status: &TaskStatus,
        now: Instant,
        events: &mut Vec<TaskEvent>,
    ) {
        let gi = self.instances[id].group;
        let policy = &self.job.groups[gi].restart;
        let kind = self.job.kind;
        let g = &mut self.groups[gi];
        let inst = &mut self.instances[id];
        g.placement.record(&g.constraints, &inst.rec.placed, -1);
        let message = status.message.clone().unwrap_or_default();
        let ev = |inst: &Instance, kind| TaskEvent {
            group: inst.rec.group.clone(),
            index: inst.rec.index,
            task_id: inst.rec.task_id.clone(),
            kind,
        };
        events.push(ev(
            inst,
            match state {
                TaskState::TaskFinished => TaskEventKind::Finished,
                TaskState::TaskKilled => TaskEventKind::Killed,
                TaskState::TaskFailed | TaskState::TaskError => TaskEventKind::Failed {
                    state: state_name(state),
                    message: message.clone(),
                },
                _ => TaskEventKind::Lost {
                    state: state_name(state),
                    message: message.clone(),
                },
            },
        ));
        inst.healthy = None;
        let kill = inst.kill.take();
        // Lost-like states count as TASK_LOST for the policy too.
        let as_policy = match state {
            TaskState::TaskUnknown | TaskState::TaskGone | TaskState::TaskGoneByOperator => {
                TaskState::TaskLost
            }
            s => s,
        };
        let matches_policy = policy.on.contains(&state) || policy.on.contains(&as_policy);
        let restart = match kill {
            Some(KillReason::ScaleDown) | Some(KillReason::Stop) => None,
            Some(KillReason::Restart) => Some(Duration::ZERO),
            _ if self.stopping => None,
            _ if kind == JobKind::Batch && state == TaskState::TaskFinished && !matches_policy => {
                None
            }
            _ if !matches_policy => None,
            _ if policy.max_restarts.is_some_and(|m| inst.rec.restarts >= m) => None,
            _ => Some(policy.delay(inst.rec.restarts + 1)),
        };
        match (restart, kill) {
            (_, Some(KillReason::ScaleDown)) => {
                inst.rec.phase = Phase::Done;
                inst.removed = true;
            }
            (Some(delay), k) => {
                if k != Some(KillReason::Restart) {
                    inst.rec.restarts += 1;
                }
                inst.rec.phase = Phase::Pending;
                events.push(ev(
                    inst,
                    TaskEventKind::Restarting {
                        delay,
                        restart: inst.rec.restarts,
                    },
                ));
                if delay.is_zero() {
                    g.ready.push_back(id);
                } else {
                    self.delayed.push(Reverse((now + delay, id)));
                }
            }
            (None, _) => {
                inst.rec.phase = Phase::Done;
                inst.succeeded = state == TaskState::TaskFinished;
                if !inst.succeeded && !self.stopping && kill.is_none() {
                    events.push(ev(inst, TaskEventKind::GaveUp));
                }
            }
        }
    }

    fn push_kill(&mut self, task_id: &str, agent_id: &str) {
        let mut c = task_call(call::Type::Kill);
        c.kill = Some(call::Kill {
            task_id: TaskId {
                value: task_id.into(),
            },
            agent_id: (!agent_id.is_empty()).then(|| AgentId {
                value: agent_id.into(),
            }),
            kill_policy: None,
        });
        self.out.push_back(Output::Call(Box::new(c)));
    }

    /// Time passes: backoffs end, revives and reconciliations fall due.
    pub fn tick(&mut self, now: Instant) {
        while let Some(Reverse((t, id))) = self.delayed.peek().copied() {
            if t > now {
                break;
            }
            self.delayed.pop();
            let inst = &self.instances[id];
            if inst.rec.phase == Phase::Pending && !inst.removed && !self.stopping {
                let gi = inst.group;
                let pos = self.groups[gi]
                    .ready
                    .partition_point(|x| self.instances[*x].rec.index < inst.rec.index);
                self.groups[gi].ready.insert(pos, id);
                self.revive_wanted = true;
            }
        }
        if self.connected && self.next_reconcile.is_some_and(|t| t <= now) {
            self.reconcile_implicit(now);
        }
        self.update_offer_interest(now);
    }

    /// SUPPRESS when nothing is pending; REVIVE (at most once per `revive_interval`) when
    /// something became pending.
    fn update_offer_interest(&mut self, now: Instant) {
        if !self.connected {
            return;
        }
        if self.has_ready() {
            if self.suppressed || self.revive_wanted {
                let due = self
                    .last_revive
                    .is_none_or(|t| now >= t + self.config.revive_interval);
                if due {
                    let mut c = task_call(call::Type::Revive);
                    c.revive = Some(call::Revive { roles: Vec::new() });
                    self.out.push_back(Output::Call(Box::new(c)));
                    self.last_revive = Some(now);
                    self.suppressed = false;
                    self.revive_wanted = false;
                }
            }
        } else {
            self.revive_wanted = false;
            if !self.suppressed && self.delayed.is_empty() {
                let mut c = task_call(call::Type::Suppress);
                c.suppress = Some(call::Suppress { roles: Vec::new() });
                self.out.push_back(Output::Call(Box::new(c)));
                self.suppressed = true;
            }
        }
    }

    /// Changes a group's instance count: new instances are pending at once; the highest
    /// indices are killed on scale-down.
    pub fn scale(&mut self, group: &str, instances: u32, now: Instant) -> Result<(), String> {
        let gi = self.group_index(group)?;
        let old = self.groups[gi].target;
        self.groups[gi].target = instances;
        if instances > old {
            for index in old..instances {
                // Reuse a slot left by an earlier scale-down, if any.
                let existing = self.groups[gi].slots.get(index as usize).copied();
                match existing {
                    Some(id) if self.instances[id].removed => {
                        let inst = &mut self.instances[id];
                        inst.removed = false;
                        inst.rec.phase = Phase::Pending;
                        inst.rec.restarts = 0;
                        self.groups[gi].ready.push_back(id);
                    }
                    Some(_) => {}
                    None => {
                        self.add_instance(gi, index);
                    }
                }
            }
            self.revive_wanted = true;
        } else {
            let slots = self.groups[gi].slots.clone();
            let mut writes = Vec::new();
            for id in slots {
                let inst = &mut self.instances[id];
                if inst.rec.index < instances || inst.removed {
                    continue;
                }
                match inst.rec.phase {
                    Phase::Launched => {
                        inst.kill = Some(KillReason::ScaleDown);
                        let (t, a) = (inst.rec.task_id.clone(), inst.rec.agent_id.clone());
                        self.push_kill(&t, &a);
                    }
                    _ => {
                        inst.removed = true;
                        inst.rec.phase = Phase::Done;
                        writes.push(Write::Delete {
                            key: Record::key(&inst.rec.group, inst.rec.index),
                        });
                    }
                }
            }
            self.groups[gi]
                .ready
                .retain(|id| !self.instances[*id].removed);
            if !writes.is_empty() {
                self.out.push_back(Output::Persist(writes));
            }
        }
        self.job.groups[gi].instances = instances;
        self.update_offer_interest(now);
        Ok(())
    }

    /// Restarts a group one instance at a time: the next one is killed when the previous
    /// replacement runs (and is healthy, if the group has a health check).
    pub fn rolling_restart(&mut self, group: &str, now: Instant) -> Result<(), String> {
        let gi = self.group_index(group)?;
        let live: Vec<usize> = self.groups[gi]
            .slots
            .iter()
            .copied()
            .filter(|id| self.instances[*id].rec.phase == Phase::Launched)
            .collect();
        self.groups[gi].rolling = live.into();
        self.groups[gi].rolling_current = None;
        self.advance_rolling(gi);
        self.update_offer_interest(now);
        Ok(())
    }

    fn advance_rolling(&mut self, gi: usize) {
        if let Some(cur) = self.groups[gi].rolling_current {
            let inst = &self.instances[cur];
            let needs_health = self.job.groups[gi].health_check.is_some();
            let back = inst.rec.phase == Phase::Launched
                && inst.kill.is_none()
                && inst.rec.state == TaskState::TaskRunning
                && (!needs_health || inst.healthy == Some(true));
            let gone = inst.rec.phase == Phase::Done;
            if !(back || gone) {
                return;
            }
            self.groups[gi].rolling_current = None;
        }
        while let Some(next) = self.groups[gi].rolling.pop_front() {
            let inst = &mut self.instances[next];
            // Gone meanwhile, or already being killed (scale-down, stop): skip.
            if inst.rec.phase != Phase::Launched || inst.kill.is_some() || self.stopping {
                continue;
            }
            inst.kill = Some(KillReason::Restart);
            let (t, a) = (inst.rec.task_id.clone(), inst.rec.agent_id.clone());
            self.groups[gi].rolling_current = Some(next);
            self.push_kill(&t, &a);
            return;
        }
    }

    /// Kills one task; what follows is the group's restart policy for TASK_KILLED.
    pub fn kill_task(&mut self, task_id: &str) -> Result<(), String> {
        let id = self
            .live_instance(task_id)
            .ok_or_else(|| format!("no live task {task_id:?}"))?;
        let inst = &mut self.instances[id];
        inst.kill = Some(KillReason::Operator);
        let (t, a) = (inst.rec.task_id.clone(), inst.rec.agent_id.clone());
        self.push_kill(&t, &a);
        Ok(())
    }

    /// Stops the job: nothing more is launched, every live task is killed.
    pub fn stop(&mut self) {
        self.stopping = true;
        self.delayed.clear();
        for g in &mut self.groups {
            g.ready.clear();
            g.rolling.clear();
        }
        let live: Vec<usize> = (0..self.instances.len())
            .filter(|id| self.instances[*id].rec.phase == Phase::Launched)
            .collect();
        for id in live {
            let inst = &mut self.instances[id];
            inst.kill = Some(KillReason::Stop);
            let (t, a) = (inst.rec.task_id.clone(), inst.rec.agent_id.clone());
            self.push_kill(&t, &a);
        }
        if self.connected && !self.suppressed {
            let mut c = task_call(call::Type::Suppress);
            c.suppress = Some(call::Suppress { roles: Vec::new() });
            self.out.push_back(Output::Call(Box::new(c)));
            self.suppressed = true;
        }
    }

    /// Ends the framework for good: TEARDOWN, and the store is emptied.
    pub fn teardown(&mut self) {
        let mut writes = vec![Write::Delete {
            key: "framework_id".into(),
        }];
        for inst in &self.instances {
            writes.push(Write::Delete {
                key: Record::key(&inst.rec.group, inst.rec.index),
            });
        }
        self.out.push_back(Output::Persist(writes));
        self.out
            .push_back(Output::Call(Box::new(task_call(call::Type::Teardown))));
    }

    /// Whether [`Scheduler::stop`] was called.
    pub fn is_stopping(&self) -> bool {
        self.stopping
    }

    /// Whether nothing runs or waits any more (a stopped job, or a batch job that ended).
    pub fn is_finished(&self) -> bool {
        let idle = self
            .instances
            .iter()
            .all(|i| i.removed || i.rec.phase == Phase::Done);
        idle && (self.stopping || self.job.kind == JobKind::Batch)
    }

    /// Whether every live instance of a batch job finished successfully.
    pub fn succeeded(&self) -> bool {
        self.instances
            .iter()
            .all(|i| i.removed || (i.rec.phase == Phase::Done && i.succeeded))
    }

    /// Counts per group, in spec order.
    pub fn counts(&self) -> Vec<(String, GroupCounts)> {
        let mut out: Vec<(String, GroupCounts)> = self
            .job
            .groups
            .iter()
            .map(|g| (g.name.clone(), GroupCounts::default()))
            .collect();
        for inst in &self.instances {
            if inst.removed {
                continue;
            }
            let c = &mut out[inst.group].1;
            c.restarts += inst.rec.restarts;
            match inst.rec.phase {
                Phase::Pending => c.pending += 1,
                Phase::Launched => {
                    if inst.rec.state == TaskState::TaskRunning {
                        c.running += 1;
                        if inst.healthy == Some(true) {
                            c.healthy += 1;
                        }
                    } else {
                        c.staging += 1;
                    }
                }
                Phase::Done if inst.succeeded => c.finished += 1,
                Phase::Done if inst.rec.state == TaskState::TaskKilled => c.killed += 1,
                Phase::Done => c.failed += 1,
            }
        }
        out
    }

    /// The records of every instance (for admin APIs and status displays).
    pub fn records(&self) -> impl Iterator<Item = (&Record, Option<bool>)> {
        self.instances
            .iter()
            .filter(|i| !i.removed)
            .map(|i| (&i.rec, i.healthy))
    }

    /// Counters.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Warnings since the last call (restore problems, framework id changes).
    pub fn take_warnings(&mut self) -> Vec<String> {
        std::mem::take(&mut self.warnings)
    }

    /// The instance whose current, launched task is `task_id`. Task ids are
    /// `<job>.<group>.<index>.<attempt>` (group names have no dots), so the id itself says
    /// where to look: no index of task ids to keep.
    fn live_instance(&self, task_id: &str) -> Option<usize> {
        let rest = task_id
            .strip_prefix(self.job.name.as_str())?
            .strip_prefix('.')?;
        let (rest, _attempt) = rest.rsplit_once('.')?;
        let (group, index) = rest.rsplit_once('.')?;
        let gi = self.job.groups.iter().position(|g| g.name == group)?;
        let id = *self.groups[gi].slots.get(index.parse::<usize>().ok()?)?;
        let rec = &self.instances[id].rec;
        (rec.phase == Phase::Launched && *rec.task_id == *task_id).then_some(id)
    }

    fn group_index(&self, group: &str) -> Result<usize, String> {
        self.job
            .groups
            .iter()
            .position(|g| g.name == group)
            .ok_or_else(|| format!("no group named {group:?}"))
    }
}

#[cfg(test)]
mod tests;
