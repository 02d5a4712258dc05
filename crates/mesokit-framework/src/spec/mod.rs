//! Job specs: what a job runs, written in YAML (JSON accepted) or built in Rust.
//!
//! A [`JobSpec`] has task groups; each [`GroupSpec`] says how many instances to run, with which
//! resources, command, container, executor, health check, restart policy and placement
//! constraints. [`JobSpec::from_yaml`] reports errors with file, line and field path;
//! [`JobSpec::validate`] checks a spec built in code with the same rules. The format is
//! documented in `docs/job-spec.md`.

mod decode;
mod tree;

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

pub use tree::Pos;

/// Batch jobs end when every instance finished; services run until stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum JobKind {
    /// Run every instance to TASK_FINISHED, then end.
    #[default]
    Batch,
    /// Keep every instance running until the job is stopped.
    Service,
}

/// A whole job: one Mesos framework.
#[derive(Debug, Clone, PartialEq)]
pub struct JobSpec {
    /// Job (and framework) name.
    pub name: String,
    /// Batch or service.
    pub kind: JobKind,
    /// Roles the framework subscribes with (MULTI_ROLE). Default `["*"]`.
    pub roles: Vec<String>,
    /// Unix user tasks run as (Mesos `FrameworkInfo.user`); default: the current user.
    pub user: Option<String>,
    /// How long Mesos keeps the tasks after the scheduler disconnects.
    pub failover_timeout: Duration,
    /// Task groups, in the order written.
    pub groups: Vec<GroupSpec>,
}

/// A set of identical instances.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupSpec {
    /// Group name: `[a-z0-9-]`, unique in the job.
    pub name: String,
    /// Number of instances.
    pub instances: u32,
    /// Higher goes first when offers are short.
    pub priority: i32,
    /// What each instance needs.
    pub resources: ResourceSpec,
    /// What it runs.
    pub command: CommandSpec,
    /// Container (Mesos or Docker image).
    pub container: Option<ContainerSpec>,
    /// Which executor runs it.
    pub executor: ExecutorSpec,
    /// Mesos health check.
    pub health_check: Option<HealthCheckSpec>,
    /// A check run by the scheduler itself (HTTP GET on a task port; see [`crate::health`]).
    pub scheduler_check: Option<crate::health::HealthHelperConfig>,
    /// Task labels.
    pub labels: BTreeMap<String, String>,
    /// Grace period between SIGTERM and SIGKILL.
    pub kill_grace: Option<Duration>,
    /// Roles whose resources this group may use (default: all of the job's roles).
    pub roles: Vec<String>,
    /// When and how to restart.
    pub restart: RestartPolicy,
    /// Placement constraints.
    pub constraints: Vec<Constraint>,
}

/// Resources of one instance. Scalars as Mesos writes them (cpus in cores, mem/disk in MB).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ResourceSpec {
    /// CPU shares.
    pub cpus: f64,
    /// Memory in MB.
    pub mem: f64,
    /// Disk in MB.
    pub disk: f64,
    /// GPUs (whole numbers).
    pub gpus: f64,
    /// Number of ports chosen from the offer (in addition to `fixed_ports`).
    pub ports: u32,
    /// Ports that must be exactly these.
    pub fixed_ports: Vec<u64>,
}

/// The command of a task.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CommandSpec {
    /// A shell command (`sh -c`), or
    pub shell: Option<String>,
    /// an argv (no shell).
    pub argv: Vec<String>,
    /// Environment variables.
    pub env: BTreeMap<String, String>,
    /// Files the agent fetches into the sandbox.
    pub uris: Vec<UriSpec>,
    /// Run as this user instead of the framework's.
    pub user: Option<String>,
}

/// One URI for the Mesos fetcher.
#[derive(Debug, Clone, PartialEq)]
pub struct UriSpec {
    /// URL or path.
    pub value: String,
    /// Extract archives (default true, as in Mesos).
    pub extract: bool,
    /// Make the file executable.
    pub executable: bool,
    /// Use the fetcher cache.
    pub cache: bool,
    /// Rename the fetched file.
    pub output_file: Option<String>,
}

/// Container image.
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerSpec {
    /// Which containerizer.
    pub kind: ContainerKind,
    /// Image name.
    pub image: String,
    /// Pull even when cached.
    pub force_pull: bool,
}

/// Containerizer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContainerKind {
    /// The Mesos containerizer with a Docker/OCI image.
    Mesos,
    /// The Docker containerizer.
    Docker,
}

/// Executor choice.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum ExecutorSpec {
    /// The agent's command executor (`TaskInfo.command`, no `ExecutorInfo`).
    #[default]
    Command,
    /// `mesokit executor` as a custom executor, with before/after commands and hooks.
    Mesokit(MesokitExecutorSpec),
}

/// Settings of the mesokit executor.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MesokitExecutorSpec {
    /// Command that starts the executor on the agent (default: `mesokit executor`, found on the
    /// agent's PATH; the embedded cluster uses this very binary).
    pub command: Option<String>,
    /// Commands run before the task.
    pub before: Vec<StepSpec>,
    /// Commands run after the task.
    pub after: Vec<StepSpec>,
    /// Hook names, in order.
    pub hooks: Vec<String>,
}

/// A before/after command (Cook semantics).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct StepSpec {
    /// Shell command.
    pub command: String,
    /// A non-zero exit stops the commands after it.
    pub guard: bool,
    /// Runs in parallel; killed when the synchronous commands are done.
    pub r#async: bool,
}

/// A Mesos health check.
#[derive(Debug, Clone, PartialEq)]
pub struct HealthCheckSpec {
    /// What to probe.
    pub kind: HealthCheckKind,
    /// Seconds before the first check.
    pub delay: Duration,
    /// Between checks.
    pub interval: Duration,
    /// Per check.
    pub timeout: Duration,
    /// Failures in a row that kill the task.
    pub consecutive_failures: u32,
    /// Failures during this time after start do not count.
    pub grace_period: Duration,
}

/// The probe of a health check.
#[derive(Debug, Clone, PartialEq)]
pub enum HealthCheckKind {
    /// HTTP GET on the task's port number `port_index` (a 2xx/3xx answer is healthy).
    Http {
        /// Index into the task's ports.
        port_index: usize,
        /// Request path.
        path: String,
    },
    /// TCP connect on the task's port number `port_index`.
    Tcp {
        /// Index into the task's ports.
        port_index: usize,
    },
    /// A shell command; exit 0 is healthy.
    Command {
        /// Shell command.
        command: String,
    },
}

/// Which terminal states restart an instance, and how fast.
#[derive(Debug, Clone, PartialEq)]
pub struct RestartPolicy {
    /// States (Mesos names, e.g. `TASK_FAILED`) that restart the instance.
    pub on: Vec<mesokit_proto::v1::TaskState>,
    /// Delay before the first restart.
    pub backoff_initial: Duration,
    /// Each further restart waits this much longer.
    pub backoff_factor: f64,
    /// Longest delay.
    pub backoff_max: Duration,
    /// Restarts per instance before it is given up (`None`: no limit).
    pub max_restarts: Option<u32>,
}

/// A placement constraint, as Marathon writes them: `[field, operator, value]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Constraint {
    /// `hostname` or an agent attribute name.
    pub field: String,
    /// The rule.
    pub op: ConstraintOp,
}

/// Constraint operators.
#[derive(Debug, Clone, PartialEq)]
pub enum ConstraintOp {
    /// At most one instance per value of the field.
    Unique,
    /// Every instance on the same value (the given one, or the first one used).
    Cluster(Option<String>),
    /// Spread evenly over (at least) this many values of the field.
    GroupBy(u32),
    /// The field's value matches the regex (whole value).
    Like(String),
    /// The field's value does not match the regex.
    Unlike(String),
    /// At most this many instances per value.
    MaxPer(u32),
}

/// A spec error: where and what.
#[derive(Debug, Clone, PartialEq)]
pub struct SpecError {
    /// File name, when the spec came from a file.
    pub file: Option<String>,
    /// Position in the file, when known.
    pub pos: Option<Pos>,
    /// Field path, e.g. `groups[1].resources.cpus`.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.file, self.pos) {
            (Some(file), Some(p)) => write!(f, "{file}:{}:{}: ", p.line, p.col)?,
            (Some(file), None) => write!(f, "{file}: ")?,
            (None, Some(p)) => write!(f, "line {}, column {}: ", p.line, p.col)?,
            (None, None) => {}
        }
        if self.field.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.field, self.message)
        }
    }
}

impl std::error::Error for SpecError {}

impl RestartPolicy {
    /// Batch default: restart failed, lost, errored and dropped tasks up to 3 times, backoff
    /// 1 s doubling to 1 min.
    pub fn batch_default() -> Self {
        use mesokit_proto::v1::TaskState as S;
        RestartPolicy {
            on: vec![
                S::TaskFailed,
                S::TaskLost,
                S::TaskError,
                S::TaskDropped,
                S::TaskGone,
                S::TaskUnreachable,
            ],
            backoff_initial: Duration::from_secs(1),
            backoff_factor: 2.0,
            backoff_max: Duration::from_secs(60),
            max_restarts: Some(3),
        }
    }

    /// Service default: restart on every terminal state but a kill we asked for, no limit.
    pub fn service_default() -> Self {
        use mesokit_proto::v1::TaskState as S;
        RestartPolicy {
            on: vec![
                S::TaskFinished,
                S::TaskFailed,
                S::TaskLost,
                S::TaskError,
                S::TaskDropped,
                S::TaskGone,
                S::TaskUnreachable,
                S::TaskKilled,
            ],
            max_restarts: None,
            ..Self::batch_default()
        }
    }

    /// The delay before restart number `n` (1-based).
    pub fn delay(&self, n: u32) -> Duration {
        if n == 0 {
            return Duration::ZERO;
        }
        let factor = self
            .backoff_factor
            .max(1.0)
            .powi(n.saturating_sub(1).min(64) as i32);
        let secs = self.backoff_initial.as_secs_f64() * factor;
        Duration::from_secs_f64(secs.min(self.backoff_max.as_secs_f64()))
    }
}

impl JobSpec {
    /// A job with no groups yet.
    pub fn new(name: &str, kind: JobKind) -> Self {
        JobSpec {
            name: name.into(),
            kind,
            roles: vec!["*".into()],
            user: None,
            failover_timeout: match kind {
                JobKind::Batch => Duration::from_secs(3600),
                JobKind::Service => Duration::from_secs(7 * 24 * 3600),
            },
            groups: Vec::new(),
        }
    }

    /// Adds a group (builder style).
    pub fn group(mut self, group: GroupSpec) -> Self {
        self.groups.push(group);
        self
    }

    /// Parses a YAML (or JSON) spec. `file` names the source in errors.
    pub fn from_yaml(text: &str, file: Option<&str>) -> Result<JobSpec, SpecError> {
        let with_file = |mut e: SpecError| {
            e.file = file.map(str::to_string);
            e
        };
        let node = tree::parse(text).map_err(|e| {
            with_file(SpecError {
                file: None,
                pos: Some(e.pos),
                field: String::new(),
                message: format!("invalid YAML: {}", e.message),
            })
        })?;
        decode::job(&node).map_err(with_file)
    }

    /// Reads and parses a spec file.
    pub fn from_file(path: &std::path::Path) -> Result<JobSpec, SpecError> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| SpecError {
            file: Some(name.clone()),
            pos: None,
            field: String::new(),
            message: format!("cannot read the job spec: {e}"),
        })?;
        Self::from_yaml(&text, Some(&name))
    }

    /// Checks the rules a spec must follow (the same for YAML and Rust-built specs).
    pub fn validate(&self) -> Result<(), SpecError> {
        let err = |field: String, message: String| SpecError {
            file: None,
            pos: None,
            field,
            message,
        };
        if self.name.is_empty() || !valid_name(&self.name) {
            return Err(err(
                "name".into(),
                format!(
                    "{:?} is not a valid job name (letters, digits, '-', '_' and '.')",
                    self.name
                ),
            ));
        }
        if self.roles.is_empty() {
            return Err(err("roles".into(), "at least one role is needed".into()));
        }
        if self.groups.is_empty() {
            return Err(err(
                "groups".into(),
                "a job needs at least one group".into(),
            ));
        }
        let mut names = std::collections::BTreeSet::new();
        for (i, g) in self.groups.iter().enumerate() {
            let at = |f: &str| format!("groups[{i}].{f}");
            if g.name.is_empty() || !valid_name(&g.name) || g.name.contains('.') {
                return Err(err(
                    at("name"),
                    format!(
                        "{:?} is not a valid group name (letters, digits, '-' and '_')",
                        g.name
                    ),
                ));
            }
            if !names.insert(g.name.as_str()) {
                return Err(err(at("name"), format!("group {:?} appears twice", g.name)));
            }
            let r = &g.resources;
            for (field, v) in [
                ("cpus", r.cpus),
                ("mem", r.mem),
                ("disk", r.disk),
                ("gpus", r.gpus),
            ] {
                if !v.is_finite() || v < 0.0 {
                    return Err(err(
                        at(&format!("resources.{field}")),
                        format!("must be a non-negative number, not {v}"),
                    ));
                }
            }
            if r.cpus <= 0.0 && r.mem <= 0.0 {
                return Err(err(
                    at("resources"),
                    "a task needs some cpus or mem (Mesos rejects tasks without either)".into(),
                ));
            }
            if r.gpus.fract() != 0.0 {
                return Err(err(at("resources.gpus"), "GPUs are whole numbers".into()));
            }
            for p in &r.fixed_ports {
                if *p == 0 || *p > 65535 {
                    return Err(err(at("resources.ports"), format!("{p} is not a port")));
                }
            }
            let c = &g.command;
            if c.shell.is_none() && c.argv.is_empty() && g.container.is_none() {
                return Err(err(
                    at("command"),
                    "a group needs a command (shell string or argv list) or a container image"
                        .into(),
                ));
            }
            if c.shell.is_some() && !c.argv.is_empty() {
                return Err(err(
                    at("command"),
                    "give either `shell` or `argv`, not both".into(),
                ));
            }
            let rp = &g.restart;
            if !(rp.backoff_factor >= 1.0 && rp.backoff_factor.is_finite()) {
                return Err(err(
                    at("restart.backoff.factor"),
                    "must be a number >= 1".into(),
                ));
            }
            if let Some(h) = &g.health_check {
                let port_index = match h.kind {
                    HealthCheckKind::Http { port_index, .. }
                    | HealthCheckKind::Tcp { port_index } => Some(port_index),
                    HealthCheckKind::Command { .. } => None,
                };
                let nports = r.ports as usize + r.fixed_ports.len();
                if let Some(pi) = port_index
                    && pi >= nports
                {
                    return Err(err(
                        at("health_check.port_index"),
                        format!("the group has {nports} port(s); index {pi} does not exist"),
                    ));
                }
            }
            if let Some(c) = &g.scheduler_check {
                let nports = r.ports as usize + r.fixed_ports.len();
                if c.port_index >= nports {
                    return Err(err(
                        at("scheduler_check.port_index"),
                        format!(
                            "the group has {nports} port(s); index {} does not exist",
                            c.port_index
                        ),
                    ));
                }
            }
            for (j, c) in g.constraints.iter().enumerate() {
                let at = |m: String| err(format!("groups[{i}].constraints[{j}]"), m);
                match &c.op {
                    ConstraintOp::Like(re) | ConstraintOp::Unlike(re) => {
                        regex_lite::Regex::new(re)
                            .map_err(|e| at(format!("invalid regex {re:?}: {e}")))?;
                    }
                    ConstraintOp::GroupBy(0) | ConstraintOp::MaxPer(0) => {
                        return Err(at("the number must be at least 1".into()));
                    }
                    _ => {}
                }
            }
            for role in &g.roles {
                if !self.roles.contains(role) {
                    return Err(err(
                        at("roles"),
                        format!(
                            "role {role:?} is not one of the job's roles {:?}",
                            self.roles
                        ),
                    ));
                }
            }
        }
        Ok(())
    }
}

fn valid_name(s: &str) -> bool {
    s.chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

impl GroupSpec {
    /// A group running `shell` with `instances` instances of 0.1 cpus and 32 MB (builder style).
    pub fn new(name: &str, instances: u32, shell: &str) -> Self {
        GroupSpec {
            name: name.into(),
            instances,
            priority: 0,
            resources: ResourceSpec {
                cpus: 0.1,
                mem: 32.0,
                ..ResourceSpec::default()
            },
            command: CommandSpec {
                shell: Some(shell.into()),
                ..CommandSpec::default()
            },
            container: None,
            executor: ExecutorSpec::Command,
            health_check: None,
            scheduler_check: None,
            labels: BTreeMap::new(),
            kill_grace: None,
            roles: Vec::new(),
            restart: RestartPolicy::batch_default(),
            constraints: Vec::new(),
        }
    }

    /// Sets cpus and mem.
    pub fn resources(mut self, cpus: f64, mem: f64) -> Self {
        self.resources.cpus = cpus;
        self.resources.mem = mem;
        self
    }

    /// Asks for `n` dynamic ports.
    pub fn ports(mut self, n: u32) -> Self {
        self.resources.ports = n;
        self
    }

    /// Sets the priority.
    pub fn priority(mut self, p: i32) -> Self {
        self.priority = p;
        self
    }

    /// Sets the restart policy.
    pub fn restart(mut self, policy: RestartPolicy) -> Self {
        self.restart = policy;
        self
    }

    /// Adds a constraint.
    pub fn constraint(mut self, field: &str, op: ConstraintOp) -> Self {
        self.constraints.push(Constraint {
            field: field.into(),
            op,
        });
        self
    }
}

/// Parses a duration: a number with a unit (`500ms`, `15s`, `15secs`, `2min`, `1h`, `7days`,
/// `1week`), or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{text:?} is not a duration (e.g. 500ms, 15s, 2min, 1h)"))?;
    let secs = match unit.trim() {
        "" | "s" | "sec" | "secs" | "second" | "seconds" => n,
        "ns" | "nsecs" => n / 1e9,
        "us" | "usecs" => n / 1e6,
        "ms" | "msecs" => n / 1e3,
        "m" | "min" | "mins" | "minute" | "minutes" => n * 60.0,
        "h" | "hr" | "hrs" | "hour" | "hours" => n * 3600.0,
        "d" | "day" | "days" => n * 86400.0,
        "w" | "week" | "weeks" => n * 604800.0,
        other => {
            return Err(format!(
                "unknown duration unit {other:?} in {text:?} (ms, s, min, h, days, weeks)"
            ));
        }
    };
    if !secs.is_finite() || secs > 1e12 {
        return Err(format!("{text:?} is too long"));
    }
    Ok(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests;
