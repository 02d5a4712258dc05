//! The JSON that command modules exchange with their scripts: the inputs of every method (as
//! Criteo builds them, keys sorted), the three `mesos.slave` messages our proto crate does not
//! generate, and the output rules of stout's `jsonToProtobuf` with Criteo's error texts.

use std::fmt;

use mesokit_proto::json::{self, JsonError, MesosJson, Parser, Writer};
use mesokit_proto::v1::{
    self, AgentInfo, CommandInfo, ContainerId, ExecutorInfo, FrameworkInfo, Resource, TaskInfo,
    task_status,
};

/// `mesos.slave.ContainerConfig`, with the fields a local agent knows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ContainerConfig {
    /// The executor of the container.
    pub executor_info: Option<ExecutorInfo>,
    /// The task, for a command task (whose executor the agent made up).
    pub task_info: Option<TaskInfo>,
    /// What the container runs (required).
    pub command_info: CommandInfo,
    /// Resources of the container.
    pub resources: Vec<Resource>,
    /// The sandbox (required).
    pub directory: String,
    /// The user the container runs as.
    pub user: Option<String>,
}

impl MesosJson for ContainerConfig {
    fn merge_json(&mut self, p: &mut Parser<'_>) -> Result<(), JsonError> {
        p.begin_object()?;
        let mut first = true;
        let mut seen = 0u64;
        while let Some(key) = p.next_key(&mut first)? {
            if p.take_null() {
                continue;
            }
            match &*key {
                "executor_info" => self
                    .executor_info
                    .get_or_insert_with(Default::default)
                    .merge_json(p)
                    .map_err(|e| e.in_field("executor_info"))?,
                "task_info" => self
                    .task_info
                    .get_or_insert_with(Default::default)
                    .merge_json(p)
                    .map_err(|e| e.in_field("task_info"))?,
                "command_info" => {
                    self.command_info
                        .merge_json(p)
                        .map_err(|e| e.in_field("command_info"))?;
                    seen |= 1;
                }
                "resources" => p
                    .repeated(|p| {
                        let mut r = Resource::default();
                        r.merge_json(p)?;
                        self.resources.push(r);
                        Ok(())
                    })
                    .map_err(|e| e.in_field("resources"))?,
                "directory" => {
                    self.directory = p.string().map_err(|e| e.in_field("directory"))?;
                    seen |= 2;
                }
                "user" => self.user = Some(p.string().map_err(|e| e.in_field("user"))?),
                _ => p.skip_value()?,
            }
        }
        if seen != 3 {
            return Err(p.missing_required(&["command_info", "directory"], seen));
        }
        Ok(())
    }

    fn write_json(&self, w: &mut Writer<'_>) {
        // Keys sorted, as stout's `JSON::Object` (a std::map) writes them.
        w.begin_object();
        w.key("command_info");
        self.command_info.write_json(w);
        w.key("directory");
        w.string(&self.directory);
        if let Some(e) = &self.executor_info {
            w.key("executor_info");
            e.write_json(w);
        }
        if !self.resources.is_empty() {
            w.key("resources");
            w.begin_array();
            for r in &self.resources {
                r.write_json(w);
            }
            w.end_array();
        }
        if let Some(t) = &self.task_info {
            w.key("task_info");
            t.write_json(w);
        }
        if let Some(u) = &self.user {
            w.key("user");
            w.string(u);
        }
        w.end_object();
    }
}

/// `mesos.slave.ContainerLaunchInfo`: what a prepare script may ask for. The local agent
/// applies `environment`, `pre_exec_commands` and `working_directory`; the names of the other
/// fields it found (namespaces, rootfs, mounts, …) are kept in `unsupported` to be logged.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ContainerLaunchInfo {
    /// Commands run in the sandbox before the executor; one failing fails the launch.
    pub pre_exec_commands: Vec<CommandInfo>,
    /// Variables added to the executor's environment.
    pub environment: Option<v1::Environment>,
    /// Working directory of the executor instead of the sandbox.
    pub working_directory: Option<String>,
    /// Fields Mesos knows but a local agent cannot apply.
    pub unsupported: Vec<String>,
}

/// Fields of `ContainerLaunchInfo` that a local agent (no namespaces, no images) ignores.
const UNSUPPORTED_LAUNCH_FIELDS: &[&str] = &[
    "rootfs",
    "enter_namespaces",
    "clone_namespaces",
    "user",
    "supplementary_groups",
    "command",
    "mounts",
    "masked_paths",
    "file_operations",
    "seccomp_profile",
    "effective_capabilities",
    "bounding_capabilities",
    "rlimits",
    "tty_slave_path",
    "task_environment",
    "task_supplementary_groups",
    "no_new_privileges",
];

impl MesosJson for ContainerLaunchInfo {
    fn merge_json(&mut self, p: &mut Parser<'_>) -> Result<(), JsonError> {
        p.begin_object()?;
        let mut first = true;
        while let Some(key) = p.next_key(&mut first)? {
            if p.take_null() {
                continue;
            }
            match &*key {
                "pre_exec_commands" => p
                    .repeated(|p| {
                        let mut c = CommandInfo::default();
                        c.merge_json(p)?;
                        self.pre_exec_commands.push(c);
                        Ok(())
                    })
                    .map_err(|e| e.in_field("pre_exec_commands"))?,
                "environment" => self
                    .environment
                    .get_or_insert_with(Default::default)
                    .merge_json(p)
                    .map_err(|e| e.in_field("environment"))?,
                "working_directory" => {
                    self.working_directory =
                        Some(p.string().map_err(|e| e.in_field("working_directory"))?)
                }
                other => {
                    if let Some(name) = UNSUPPORTED_LAUNCH_FIELDS.iter().find(|f| **f == other) {
                        self.unsupported.push((*name).to_owned());
                    }
                    p.skip_value()?
                }
            }
        }
        Ok(())
    }

    fn write_json(&self, w: &mut Writer<'_>) {
        w.begin_object();
        if let Some(e) = &self.environment {
            w.key("environment");
            e.write_json(w);
        }
        if !self.pre_exec_commands.is_empty() {
            w.key("pre_exec_commands");
            w.begin_array();
            for c in &self.pre_exec_commands {
                c.write_json(w);
            }
            w.end_array();
        }
        if let Some(d) = &self.working_directory {
            w.key("working_directory");
            w.string(d);
        }
        w.end_object();
    }
}

/// `mesos.slave.ContainerLimitation`: a watch script's verdict. Every field is optional, so
/// any JSON object (even `{}`) is a limitation.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ContainerLimitation {
    /// The resources that were exceeded.
    pub resources: Vec<Resource>,
    /// Shown as the task status message.
    pub message: Option<String>,
    /// A `TaskStatus.Reason` (unknown names are dropped, as stout does for optional enums).
    pub reason: Option<task_status::Reason>,
}

impl ContainerLimitation {
    /// The reason of the TASK_FAILED: the answer's, or `REASON_CONTAINER_LIMITATION`.
    pub fn reason_or_default(&self) -> task_status::Reason {
        self.reason
            .unwrap_or(task_status::Reason::ContainerLimitation)
    }

    /// The message of the TASK_FAILED: the answer's, or a generic one.
    pub fn message_or_default(&self) -> String {
        match self.message.as_deref() {
            Some(m) if !m.is_empty() => m.to_owned(),
            _ => "Container limitation reported by an isolator".to_owned(),
        }
    }
}

impl MesosJson for ContainerLimitation {
    fn merge_json(&mut self, p: &mut Parser<'_>) -> Result<(), JsonError> {
        p.begin_object()?;
        let mut first = true;
        while let Some(key) = p.next_key(&mut first)? {
            if p.take_null() {
                continue;
            }
            match &*key {
                "resources" => p
                    .repeated(|p| {
                        let mut r = Resource::default();
                        r.merge_json(p)?;
                        self.resources.push(r);
                        Ok(())
                    })
                    .map_err(|e| e.in_field("resources"))?,
                "message" => self.message = Some(p.string().map_err(|e| e.in_field("message"))?),
                "reason" => {
                    let name = p.enum_name().map_err(|e| e.in_field("reason"))?;
                    if let Some(r) = task_status::Reason::from_str_name(&name) {
                        self.reason = Some(r);
                    }
                }
                _ => p.skip_value()?,
            }
        }
        Ok(())
    }

    fn write_json(&self, w: &mut Writer<'_>) {
        w.begin_object();
        if let Some(m) = &self.message {
            w.key("message");
            w.string(m);
        }
        if let Some(r) = self.reason {
            w.key("reason");
            w.enum_name(r.as_str_name());
        }
        if !self.resources.is_empty() {
            w.key("resources");
            w.begin_array();
            for r in &self.resources {
                r.write_json(w);
            }
            w.end_array();
        }
        w.end_object();
    }
}

/// Why a script's output is not the message it should be. The texts are Criteo's
/// (`jsonToProtobuf`), so an operator's log searches keep working.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutputError {
    /// The output file is empty.
    Empty,
    /// Not JSON.
    Malformed(String),
    /// JSON, but not an object.
    NotObject,
    /// An object that does not convert (type mismatch, missing required field, …).
    Convert(String),
}

impl fmt::Display for OutputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("No content to parse"),
            Self::Malformed(d) => write!(f, "Malformed JSON. {d}"),
            Self::NotObject => f.write_str("Malformed Protobuf. JSON object is expected."),
            Self::Convert(d) => write!(f, "Error while converting JSON to protobuf. {d}"),
        }
    }
}

impl std::error::Error for OutputError {}

/// Parses a script's output as `T`, as stout does: only the empty string is "no content"
/// (a lone newline is malformed), the value must be an object, unknown keys are ignored and
/// required fields are enforced.
pub fn parse_output<T: MesosJson>(output: &[u8]) -> Result<T, OutputError> {
    if output.is_empty() {
        return Err(OutputError::Empty);
    }
    let text = std::str::from_utf8(output).map_err(|e| {
        OutputError::Malformed(format!("invalid UTF-8 at byte {}", e.valid_up_to()))
    })?;
    let start = text.trim_start();
    if start.is_empty() {
        return Err(OutputError::Malformed("no JSON value, only blanks".into()));
    }
    // Syntax first, so that a syntax error is "malformed" even in an object.
    let mut syntax = Parser::new(output).map_err(|e| OutputError::Malformed(e.to_string()))?;
    syntax
        .skip_value()
        .and_then(|()| syntax.finish())
        .map_err(|e| OutputError::Malformed(e.to_string()))?;
    if !start.starts_with('{') {
        return Err(OutputError::NotObject);
    }
    json::decode::<T>(output).map_err(|e| OutputError::Convert(e.to_string()))
}

/// Encodes `msg` under `key` of the object being written.
fn field<T: MesosJson>(w: &mut Writer<'_>, key: &str, msg: &T) {
    w.key(key);
    msg.write_json(w);
}

/// Input of `slaveRunTaskLabelDecorator`.
pub fn label_decorator_input(
    task: &TaskInfo,
    executor: &ExecutorInfo,
    framework: &FrameworkInfo,
    agent: &AgentInfo,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(1024);
    let mut w = Writer::new(&mut out);
    w.begin_object();
    field(&mut w, "executor_info", executor);
    field(&mut w, "framework_info", framework);
    field(&mut w, "slave_info", agent);
    field(&mut w, "task_info", task);
    w.end_object();
    out
}

/// Input of `slaveExecutorEnvironmentDecorator`.
pub fn environment_decorator_input(executor: &ExecutorInfo) -> Vec<u8> {
    let mut out = Vec::with_capacity(512);
    let mut w = Writer::new(&mut out);
    w.begin_object();
    field(&mut w, "executor_info", executor);
    w.end_object();
    out
}

/// Input of `slaveRemoveExecutorHook`.
pub fn remove_executor_input(framework: &FrameworkInfo, executor: &ExecutorInfo) -> Vec<u8> {
    let mut out = Vec::with_capacity(512);
    let mut w = Writer::new(&mut out);
    w.begin_object();
    field(&mut w, "executor_info", executor);
    field(&mut w, "framework_info", framework);
    w.end_object();
    out
}

/// Input of the isolator methods: `container_config` (when known), `container_id` and, for
/// `isolate`, `pid`.
pub fn container_input(
    config: Option<&ContainerConfig>,
    container_id: &ContainerId,
    pid: Option<u32>,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(1024);
    let mut w = Writer::new(&mut out);
    w.begin_object();
    if let Some(c) = config {
        field(&mut w, "container_config", c);
    }
    field(&mut w, "container_id", container_id);
    if let Some(pid) = pid {
        w.key("pid");
        w.u32(pid);
    }
    w.end_object();
    out
}

/// A container id's string form (Mesos's `stringify`): parents first, joined by `.`.
pub fn container_id_string(id: &ContainerId) -> String {
    match &id.parent {
        Some(p) => format!("{}.{}", container_id_string(p), id.value),
        None => id.value.clone(),
    }
}

/// `{"resources": [...]}`: the answer of the resource decorators (Mesos's `Resources` is a
/// list, not a message, so mesokit's extension hooks wrap it).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ResourceList {
    /// The resources.
    pub resources: Vec<Resource>,
}

impl MesosJson for ResourceList {
    fn merge_json(&mut self, p: &mut Parser<'_>) -> Result<(), JsonError> {
        p.begin_object()?;
        let mut first = true;
        while let Some(key) = p.next_key(&mut first)? {
            if p.take_null() {
                continue;
            }
            match &*key {
                "resources" => p
                    .repeated(|p| {
                        let mut r = Resource::default();
                        r.merge_json(p)?;
                        self.resources.push(r);
                        Ok(())
                    })
                    .map_err(|e| e.in_field("resources"))?,
                _ => p.skip_value()?,
            }
        }
        Ok(())
    }

    fn write_json(&self, w: &mut Writer<'_>) {
        w.begin_object();
        w.key("resources");
        w.begin_array();
        for r in &self.resources {
            r.write_json(w);
        }
        w.end_array();
        w.end_object();
    }
}

/// `{"attributes": [...]}`: the answer of the attributes decorator (mesokit extension).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AttributeList {
    /// The attributes.
    pub attributes: Vec<v1::Attribute>,
}

impl MesosJson for AttributeList {
    fn merge_json(&mut self, p: &mut Parser<'_>) -> Result<(), JsonError> {
        p.begin_object()?;
        let mut first = true;
        while let Some(key) = p.next_key(&mut first)? {
            if p.take_null() {
                continue;
            }
            match &*key {
                "attributes" => p
                    .repeated(|p| {
                        let mut a = v1::Attribute::default();
                        a.merge_json(p)?;
                        self.attributes.push(a);
                        Ok(())
                    })
                    .map_err(|e| e.in_field("attributes"))?,
                _ => p.skip_value()?,
            }
        }
        Ok(())
    }

    fn write_json(&self, w: &mut Writer<'_>) {
        w.begin_object();
        w.key("attributes");
        w.begin_array();
        for a in &self.attributes {
            a.write_json(w);
        }
        w.end_array();
        w.end_object();
    }
}

/// Input of `masterLaunchTaskLabelDecorator`.
pub fn master_label_decorator_input(
    task: &TaskInfo,
    framework: &FrameworkInfo,
    agent: &AgentInfo,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(1024);
    let mut w = Writer::new(&mut out);
    w.begin_object();
    field(&mut w, "framework_info", framework);
    field(&mut w, "slave_info", agent);
    field(&mut w, "task_info", task);
    w.end_object();
    out
}

/// Input of `masterLaunchTaskResourceDecorator`: the task and the agent's resources.
pub fn master_resource_decorator_input(task: &TaskInfo, agent_resources: &[Resource]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1024);
    let mut w = Writer::new(&mut out);
    w.begin_object();
    w.key("slave_resources");
    w.begin_array();
    for r in agent_resources {
        r.write_json(&mut w);
    }
    w.end_array();
    field(&mut w, "task_info", task);
    w.end_object();
    out
}

/// Input of `slaveTaskStatusDecorator`.
pub fn task_status_decorator_input(
    framework_id: &v1::FrameworkId,
    status: &v1::TaskStatus,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(512);
    let mut w = Writer::new(&mut out);
    w.begin_object();
    field(&mut w, "framework_id", framework_id);
    field(&mut w, "task_status", status);
    w.end_object();
    out
}

/// Input of `slaveResourcesDecorator`, `slaveAttributesDecorator` and `masterSlaveLostHook`.
pub fn agent_info_input(agent: &AgentInfo) -> Vec<u8> {
    let mut out = Vec::with_capacity(512);
    let mut w = Writer::new(&mut out);
    w.begin_object();
    field(&mut w, "slave_info", agent);
    w.end_object();
    out
}

/// Input of `slavePostFetchHook`: the container and its sandbox.
pub fn post_fetch_input(container_id: &ContainerId, directory: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    let mut w = Writer::new(&mut out);
    w.begin_object();
    field(&mut w, "container_id", container_id);
    w.key("directory");
    w.string(directory);
    w.end_object();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Answers a script may write, valid ones first; every corruption of them must give an
    /// error or a value, never a panic.
    const SEEDS: &[&str] = &[
        r#"{"labels":[{"key":"a","value":"b"}]}"#,
        r#"{"variables":[{"name":"A","value":"1","type":"VALUE"}]}"#,
        r#"{"environment":{"variables":[{"name":"A","value":"1"}]},"pre_exec_commands":[{"value":"true"}],"working_directory":"wd","rootfs":"/x"}"#,
        r#"{"message":"m","reason":"REASON_CONTAINER_LIMITATION_DISK","resources":[{"name":"disk","type":"SCALAR","scalar":{"value":1}}]}"#,
        r#"{"timestamp":1.5,"mem_rss_bytes":"12","net_snmp_statistics":{"tcp_stats":{"CurrEstab":5}}}"#,
        r#"{"command_info":{"value":"x"},"directory":"/d","resources":[],"user":"u"}"#,
    ];

    fn parse_all(bytes: &[u8]) {
        let _ = parse_output::<v1::Labels>(bytes);
        let _ = parse_output::<v1::Environment>(bytes);
        let _ = parse_output::<ContainerLaunchInfo>(bytes);
        let _ = parse_output::<ContainerLimitation>(bytes);
        let _ = parse_output::<v1::ResourceStatistics>(bytes);
        let _ = parse_output::<ContainerConfig>(bytes);
        let _ = parse_output::<ResourceList>(bytes);
        let _ = parse_output::<AttributeList>(bytes);
        let _ = parse_output::<v1::TaskStatus>(bytes);
    }

    #[test]
    fn corrupted_answers_never_panic() {
        // A small xorshift: deterministic, no dependency.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for seed in SEEDS {
            parse_all(seed.as_bytes());
            for _ in 0..2000 {
                let mut b = seed.as_bytes().to_vec();
                for _ in 0..=(next() % 4) {
                    let i = (next() as usize) % b.len();
                    match next() % 3 {
                        0 => b[i] = next() as u8,
                        1 => {
                            b.remove(i);
                        }
                        _ => b.truncate(i),
                    }
                    if b.is_empty() {
                        break;
                    }
                }
                parse_all(&b);
            }
        }
    }

    #[test]
    fn the_stout_error_texts() {
        assert_eq!(
            parse_output::<v1::Labels>(b"").unwrap_err().to_string(),
            "No content to parse"
        );
        assert!(
            parse_output::<v1::Labels>(b"\n")
                .unwrap_err()
                .to_string()
                .starts_with("Malformed JSON. ")
        );
        assert_eq!(
            parse_output::<v1::Labels>(b"[1]").unwrap_err().to_string(),
            "Malformed Protobuf. JSON object is expected."
        );
        assert!(
            parse_output::<v1::Labels>(br#"{"labels":[{"value":"v"}]}"#)
                .unwrap_err()
                .to_string()
                .starts_with("Error while converting JSON to protobuf. ")
        );
        // Unknown keys are ignored; numeric strings are numbers.
        let s = parse_output::<v1::ResourceStatistics>(br#"{"timestamp":"2","x":{}}"#).unwrap();
        assert_eq!(s.timestamp, 2.0);
    }

    #[test]
    fn container_config_round_trips_and_nested_ids_stringify() {
        let c = ContainerConfig {
            executor_info: None,
            task_info: None,
            // Declared defaults are written (stout), so set them to compare.
            command_info: CommandInfo {
                value: Some("sleep 1".into()),
                shell: Some(true),
                ..Default::default()
            },
            resources: Vec::new(),
            directory: "/d".into(),
            user: Some("u".into()),
        };
        let back: ContainerConfig = json::decode(&json::encode(&c)).unwrap();
        assert_eq!(back, c);
        let id = ContainerId {
            value: "c".into(),
            parent: Some(Box::new(ContainerId {
                value: "p".into(),
                parent: None,
            })),
        };
        assert_eq!(container_id_string(&id), "p.c");
    }
}
