//! Everyday helpers: building tasks, commands and resources without pages of boilerplate,
//! task-state predicates, status-update UUIDs and Mesos duration strings.

use std::time::Duration;

use bytes::Bytes;

use crate::v1::{
    AgentId, CommandInfo, DurationInfo, Environment, ExecutorId, ExecutorInfo, KillPolicy, Label,
    Labels, Resource, TaskId, TaskInfo, TaskState, Value, environment, value,
};

/// A scalar resource (`cpus`, `mem`, `disk`, `gpus`, …), unreserved.
pub fn scalar(name: &str, amount: f64) -> Resource {
    Resource {
        name: name.to_owned(),
        r#type: value::Type::Scalar as i32,
        scalar: Some(value::Scalar { value: amount }),
        ..Default::default()
    }
}

/// A ranges resource such as `ports`, from inclusive `(begin, end)` pairs.
pub fn ranges(name: &str, ranges: &[(u64, u64)]) -> Resource {
    Resource {
        name: name.to_owned(),
        r#type: value::Type::Ranges as i32,
        ranges: Some(value::Ranges {
            range: ranges
                .iter()
                .map(|&(begin, end)| value::Range { begin, end })
                .collect(),
        }),
        ..Default::default()
    }
}

/// A set resource.
pub fn set(name: &str, items: &[&str]) -> Resource {
    Resource {
        name: name.to_owned(),
        r#type: value::Type::Set as i32,
        set: Some(value::Set {
            item: items.iter().map(|s| (*s).to_owned()).collect(),
        }),
        ..Default::default()
    }
}

/// `cpus` resource.
pub fn cpus(n: f64) -> Resource {
    scalar("cpus", n)
}

/// `mem` resource, in MB.
pub fn mem(mb: f64) -> Resource {
    scalar("mem", mb)
}

/// `disk` resource, in MB.
pub fn disk(mb: f64) -> Resource {
    scalar("disk", mb)
}

/// `ports` resource holding exactly the given ports (adjacent ports are merged into ranges).
pub fn ports(list: &[u64]) -> Resource {
    let mut sorted = list.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut rs: Vec<(u64, u64)> = Vec::new();
    for p in sorted {
        match rs.last_mut() {
            Some((_, end)) if *end + 1 == p => *end = p,
            _ => rs.push((p, p)),
        }
    }
    ranges("ports", &rs)
}

/// A `Value` of type SCALAR (for attributes and limits).
pub fn scalar_value(v: f64) -> Value {
    Value {
        r#type: value::Type::Scalar as i32,
        scalar: Some(value::Scalar { value: v }),
        ..Default::default()
    }
}

/// A shell command: `/bin/sh -c "<cmd>"`.
pub fn shell(cmd: &str) -> CommandInfo {
    CommandInfo {
        shell: Some(true),
        value: Some(cmd.to_owned()),
        ..Default::default()
    }
}

/// A command executed directly: `argv[0]` is the program (looked up in `PATH`) and also the
/// process's `argv[0]`, as Mesos does with `shell: false`.
pub fn argv<S: AsRef<str>>(args: &[S]) -> CommandInfo {
    CommandInfo {
        shell: Some(false),
        value: args.first().map(|a| a.as_ref().to_owned()),
        arguments: args.iter().map(|a| a.as_ref().to_owned()).collect(),
        ..Default::default()
    }
}

/// An `Environment` from name/value pairs.
pub fn environment<K: AsRef<str>, V: AsRef<str>>(vars: &[(K, V)]) -> Environment {
    Environment {
        variables: vars
            .iter()
            .map(|(k, v)| environment::Variable {
                name: k.as_ref().to_owned(),
                value: Some(v.as_ref().to_owned()),
                r#type: Some(environment::variable::Type::Value as i32),
                ..Default::default()
            })
            .collect(),
    }
}

/// `Labels` from key/value pairs.
pub fn labels<K: AsRef<str>, V: AsRef<str>>(pairs: &[(K, V)]) -> Labels {
    Labels {
        labels: pairs
            .iter()
            .map(|(k, v)| Label {
                key: k.as_ref().to_owned(),
                value: Some(v.as_ref().to_owned()),
            })
            .collect(),
    }
}

/// A `DurationInfo` from a `Duration`.
pub fn duration_info(d: Duration) -> DurationInfo {
    DurationInfo {
        nanoseconds: i64::try_from(d.as_nanos()).unwrap_or(i64::MAX),
    }
}

/// Builds a [`TaskInfo`] step by step.
///
/// ```
/// use mesokit_proto::helpers::TaskBuilder;
/// let task = TaskBuilder::new("hello", "hello-1", "agent-S0")
///     .cpus(0.5)
///     .mem(64.0)
///     .shell("echo hi")
///     .env("GREETING", "hi")
///     .build();
/// assert_eq!(task.resources.len(), 2);
/// assert_eq!(task.command.unwrap().value.as_deref(), Some("echo hi"));
/// ```
#[derive(Debug, Clone)]
pub struct TaskBuilder {
    task: TaskInfo,
}

impl TaskBuilder {
    /// A task named `name` with id `task_id`, to run on agent `agent_id`.
    pub fn new(name: &str, task_id: &str, agent_id: &str) -> Self {
        TaskBuilder {
            task: TaskInfo {
                name: name.to_owned(),
                task_id: TaskId {
                    value: task_id.to_owned(),
                },
                agent_id: AgentId {
                    value: agent_id.to_owned(),
                },
                ..Default::default()
            },
        }
    }

    /// Adds a resource.
    pub fn resource(mut self, r: Resource) -> Self {
        self.task.resources.push(r);
        self
    }

    /// Adds `cpus`.
    pub fn cpus(self, n: f64) -> Self {
        self.resource(cpus(n))
    }

    /// Adds `mem` (MB).
    pub fn mem(self, mb: f64) -> Self {
        self.resource(mem(mb))
    }

    /// Adds `disk` (MB).
    pub fn disk(self, mb: f64) -> Self {
        self.resource(disk(mb))
    }

    /// Adds the given `ports`.
    pub fn ports(self, list: &[u64]) -> Self {
        self.resource(ports(list))
    }

    /// Sets the command (run by the command executor unless an executor is set).
    pub fn command(mut self, c: CommandInfo) -> Self {
        self.task.command = Some(c);
        self
    }

    /// Sets a shell command.
    pub fn shell(self, cmd: &str) -> Self {
        self.command(shell(cmd))
    }

    /// Sets an argv command.
    pub fn argv<S: AsRef<str>>(self, args: &[S]) -> Self {
        self.command(argv(args))
    }

    /// Adds an environment variable to the command.
    pub fn env(mut self, name: &str, value: &str) -> Self {
        let cmd = self.task.command.get_or_insert_with(Default::default);
        let env = cmd.environment.get_or_insert_with(Default::default);
        env.variables
            .extend(environment(&[(name, value)]).variables);
        self
    }

    /// Adds a label.
    pub fn label(mut self, key: &str, value: &str) -> Self {
        let l = self.task.labels.get_or_insert_with(Default::default);
        l.labels.push(Label {
            key: key.to_owned(),
            value: Some(value.to_owned()),
        });
        self
    }

    /// Sets the kill grace period.
    pub fn kill_grace(mut self, grace: Duration) -> Self {
        self.task.kill_policy = Some(KillPolicy {
            grace_period: Some(duration_info(grace)),
        });
        self
    }

    /// Sets the opaque data delivered to the executor.
    pub fn data(mut self, data: impl Into<Bytes>) -> Self {
        self.task.data = Some(data.into());
        self
    }

    /// Runs the task under a custom executor instead of the command executor.
    pub fn executor(mut self, executor: ExecutorInfo) -> Self {
        self.task.executor = Some(Box::new(executor));
        self
    }

    /// The finished `TaskInfo`.
    pub fn build(self) -> TaskInfo {
        self.task
    }
}

/// A custom executor running `command`.
pub fn custom_executor(id: &str, command: CommandInfo) -> ExecutorInfo {
    ExecutorInfo {
        executor_id: ExecutorId {
            value: id.to_owned(),
        },
        r#type: Some(crate::v1::executor_info::Type::Custom as i32),
        command: Some(command),
        ..Default::default()
    }
}

/// Whether a task state is terminal, as Mesos's `protobuf::isTerminalState` says.
pub fn is_terminal(state: TaskState) -> bool {
    matches!(
        state,
        TaskState::TaskFinished
            | TaskState::TaskFailed
            | TaskState::TaskKilled
            | TaskState::TaskError
            | TaskState::TaskLost
            | TaskState::TaskDropped
            | TaskState::TaskGone
            | TaskState::TaskGoneByOperator
    )
}

/// [`is_terminal`] for the raw enum value found in messages; unknown values are not terminal.
pub fn is_terminal_value(state: i32) -> bool {
    TaskState::try_from(state).is_ok_and(is_terminal)
}

/// Whether a task in this state still holds its resources and may change state
/// (STAGING, STARTING, RUNNING, KILLING).
pub fn is_active(state: TaskState) -> bool {
    matches!(
        state,
        TaskState::TaskStaging
            | TaskState::TaskStarting
            | TaskState::TaskRunning
            | TaskState::TaskKilling
    )
}

/// A fresh random (version 4) UUID as the 16 raw bytes Mesos expects in status updates.
pub fn new_uuid() -> Bytes {
    Bytes::copy_from_slice(uuid::Uuid::new_v4().as_bytes())
}

/// Whether `bytes` is a UUID Mesos accepts: exactly 16 bytes with a non-zero version.
pub fn is_valid_uuid(bytes: &[u8]) -> bool {
    uuid::Uuid::from_slice(bytes).is_ok_and(|u| u.get_version_num() != 0)
}

/// The canonical text form of a 16-byte UUID (or a hex dump if it is not 16 bytes).
pub fn uuid_string(bytes: &[u8]) -> String {
    match uuid::Uuid::from_slice(bytes) {
        Ok(u) => u.to_string(),
        Err(_) => bytes.iter().map(|b| format!("{b:02x}")).collect(),
    }
}

/// A malformed duration string.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid duration '{0}': expected a number followed by ns, us, ms, secs, mins, hrs, days or weeks"
)]
pub struct DurationError(pub String);

const UNITS: &[(&str, u128)] = &[
    ("weeks", 7 * 24 * 3600 * 1_000_000_000),
    ("days", 24 * 3600 * 1_000_000_000),
    ("hrs", 3600 * 1_000_000_000),
    ("mins", 60 * 1_000_000_000),
    ("secs", 1_000_000_000),
    ("ms", 1_000_000),
    ("us", 1_000),
    ("ns", 1),
];

/// Parses a stout duration such as `5secs`, `15mins`, `250ms` or `1.5hrs`.
pub fn parse_duration(s: &str) -> Result<Duration, DurationError> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(|| DurationError(s.to_owned()))?;
    let (num, unit) = t.split_at(split);
    let n: f64 = num.parse().map_err(|_| DurationError(s.to_owned()))?;
    let &(_, nanos) = UNITS
        .iter()
        .find(|(u, _)| *u == unit)
        .ok_or_else(|| DurationError(s.to_owned()))?;
    let total = n * nanos as f64;
    if !total.is_finite() || total < 0.0 || total > u64::MAX as f64 {
        return Err(DurationError(s.to_owned()));
    }
    Ok(Duration::from_nanos(total as u64))
}

/// Prints a duration the way stout does: the largest unit giving a whole number
/// (`5secs`, `15mins`, `250ms`).
pub fn format_duration(d: Duration) -> String {
    let ns = d.as_nanos();
    if ns == 0 {
        return "0ns".into();
    }
    for (unit, size) in UNITS {
        if ns % size == 0 {
            return format!("{}{unit}", ns / size);
        }
    }
    format!("{ns}ns")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_and_print_like_stout() {
        assert_eq!(parse_duration("5secs").unwrap(), Duration::from_secs(5));
        assert_eq!(parse_duration("15mins").unwrap(), Duration::from_secs(900));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("1.5hrs").unwrap(), Duration::from_secs(5400));
        assert_eq!(
            parse_duration("2weeks").unwrap(),
            Duration::from_secs(14 * 86400)
        );
        assert!(parse_duration("5").is_err());
        assert!(parse_duration("secs").is_err());
        assert!(parse_duration("5 fortnights").is_err());
        assert_eq!(format_duration(Duration::from_secs(5)), "5secs");
        assert_eq!(format_duration(Duration::from_secs(900)), "15mins");
        assert_eq!(format_duration(Duration::from_millis(250)), "250ms");
        assert_eq!(format_duration(Duration::from_secs(7 * 86400)), "1weeks");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1500ms");
    }

    #[test]
    fn uuids_are_16_byte_v4() {
        let u = new_uuid();
        assert_eq!(u.len(), 16);
        assert!(is_valid_uuid(&u));
        assert!(!is_valid_uuid(&[0u8; 16]));
        assert!(!is_valid_uuid(b"not-a-uuid"));
        assert_ne!(new_uuid(), u);
        assert_eq!(uuid_string(&u).len(), 36);
    }

    #[test]
    fn terminal_states_match_mesos() {
        assert!(is_terminal(TaskState::TaskFinished));
        assert!(is_terminal(TaskState::TaskLost));
        assert!(is_terminal(TaskState::TaskGoneByOperator));
        assert!(!is_terminal(TaskState::TaskUnreachable));
        assert!(!is_terminal(TaskState::TaskUnknown));
        assert!(!is_terminal(TaskState::TaskKilling));
        assert!(is_active(TaskState::TaskStaging));
        assert!(!is_active(TaskState::TaskUnreachable));
        assert!(is_terminal_value(TaskState::TaskKilled as i32));
        assert!(!is_terminal_value(999));
    }

    #[test]
    fn ports_are_merged_into_ranges() {
        let r = ports(&[31002, 31000, 31001, 31005]);
        let got: Vec<(u64, u64)> = r
            .ranges
            .unwrap()
            .range
            .iter()
            .map(|r| (r.begin, r.end))
            .collect();
        assert_eq!(got, vec![(31000, 31002), (31005, 31005)]);
    }

    #[test]
    fn argv_keeps_argv0() {
        let c = argv(&["ls", "-l"]);
        assert_eq!(c.shell, Some(false));
        assert_eq!(c.value.as_deref(), Some("ls"));
        assert_eq!(c.arguments, vec!["ls", "-l"]);
    }
}
