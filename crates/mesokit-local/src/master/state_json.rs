//! The read side: v0 JSON of `/master/state`, `/master/frameworks`, `/master/tasks`, and the
//! `master/*` metrics, in Mesos's shapes ("slave" naming; `src/master/readonly_handler.cpp`,
//! `src/common/http.cpp`). Field order follows Mesos's writers.

use std::collections::BTreeSet;
use std::time::Instant;

use mesokit_proto::json::{MesosJson, Writer};
use mesokit_proto::resources::{Resources, attributes_v0_json};
use mesokit_proto::v1::{self, TaskState, framework_info::capability::Type as Capability};

use super::core::{Agent, Framework, MESOS_VERSION, Master};

/// A small JSON builder: keys and separators here, values through the Mesos JSON writer (so
/// numbers and strings print as Mesos prints them).
struct Json {
    out: Vec<u8>,
    /// Whether the innermost open object/array already has an element.
    first: Vec<bool>,
}

impl Json {
    fn new() -> Self {
        Json {
            out: Vec::with_capacity(4096),
            first: Vec::new(),
        }
    }

    fn finish(self) -> String {
        String::from_utf8(self.out).expect("JSON writer produced invalid UTF-8")
    }

    /// Separator before a new element of the innermost container.
    fn sep(&mut self) {
        if let Some(first) = self.first.last_mut() {
            if !*first {
                self.out.push(b',');
            }
            *first = false;
        }
    }

    fn begin_object(&mut self) {
        self.out.push(b'{');
        self.first.push(true);
    }

    fn end_object(&mut self) {
        self.out.push(b'}');
        self.first.pop();
    }

    fn begin_array(&mut self) {
        self.out.push(b'[');
        self.first.push(true);
    }

    fn end_array(&mut self) {
        self.out.push(b']');
        self.first.pop();
    }

    /// Starts an array element (call before writing the element's value).
    fn element(&mut self) {
        self.sep();
    }

    fn key(&mut self, key: &str) {
        self.sep();
        Writer::new(&mut self.out).map_key(key);
    }

    fn str(&mut self, key: &str, v: &str) {
        self.key(key);
        Writer::new(&mut self.out).string(v);
    }

    fn f64(&mut self, key: &str, v: f64) {
        self.key(key);
        Writer::new(&mut self.out).f64(v);
    }

    fn u64(&mut self, key: &str, v: u64) {
        self.key(key);
        Writer::new(&mut self.out).u64(v);
    }

    fn i64(&mut self, key: &str, v: i64) {
        self.key(key);
        Writer::new(&mut self.out).i64(v);
    }

    fn bool(&mut self, key: &str, v: bool) {
        self.key(key);
        Writer::new(&mut self.out).bool(v);
    }

    /// Already-rendered JSON.
    fn raw(&mut self, key: &str, json: &str) {
        self.key(key);
        self.out.extend_from_slice(json.as_bytes());
    }

    /// A message in Mesos's protobuf JSON form.
    fn proto<T: MesosJson>(&mut self, key: &str, msg: &T) {
        self.key(key);
        msg.write_json(&mut Writer::new(&mut self.out));
    }

    fn resources(&mut self, key: &str, r: &Resources) {
        self.raw(key, &r.to_v0_json());
    }

    fn resource_list(&mut self, key: &str, r: &[v1::Resource]) {
        self.resources(key, &Resources::from_vec(r.to_vec()));
    }

    fn strings<'a>(&mut self, key: &str, items: impl IntoIterator<Item = &'a str>) {
        self.key(key);
        self.begin_array();
        for s in items {
            self.element();
            Writer::new(&mut self.out).string(s);
        }
        self.end_array();
    }

    fn labels(&mut self, key: &str, labels: &v1::Labels) {
        self.key(key);
        self.begin_array();
        for l in &labels.labels {
            self.element();
            l.write_json(&mut Writer::new(&mut self.out));
        }
        self.end_array();
    }
}

fn state_name(state: i32) -> &'static str {
    TaskState::try_from(state).map_or("TASK_UNKNOWN", |s| s.as_str_name())
}

/// A task in v0 JSON (`json(JSON::ObjectWriter*, const Task&)`).
fn write_task(j: &mut Json, task: &v1::Task) {
    j.begin_object();
    j.str("id", &task.task_id.value);
    j.str("name", &task.name);
    j.str("framework_id", &task.framework_id.value);
    j.str(
        "executor_id",
        task.executor_id.as_ref().map_or("", |e| e.value.as_str()),
    );
    j.str("slave_id", &task.agent_id.value);
    j.str("state", state_name(task.state));
    j.resource_list("resources", &task.resources);
    if !task.limits.is_empty() {
        j.key("limits");
        j.begin_object();
        for (name, v) in &task.limits {
            j.f64(name, v.value);
        }
        j.end_object();
    }
    let role = task
        .resources
        .first()
        .and_then(|r| r.allocation_info.as_ref())
        .and_then(|a| a.role.as_deref())
        .unwrap_or("");
    j.str("role", role);
    j.key("statuses");
    j.begin_array();
    for s in &task.statuses {
        j.element();
        j.begin_object();
        j.str("state", state_name(s.state));
        j.f64("timestamp", s.timestamp.unwrap_or(0.0));
        if let Some(labels) = &s.labels {
            j.labels("labels", labels);
        }
        if let Some(cs) = &s.container_status {
            j.proto("container_status", cs);
        }
        if let Some(healthy) = s.healthy {
            j.bool("healthy", healthy);
        }
        j.end_object();
    }
    j.end_array();
    if let Some(user) = &task.user {
        j.str("user", user);
    }
    if let Some(labels) = &task.labels {
        j.labels("labels", labels);
    }
    if let Some(d) = &task.discovery {
        j.proto("discovery", &**d);
    }
    if let Some(c) = &task.container {
        j.proto("container", c.as_ref());
    }
    if let Some(h) = &task.health_check {
        j.proto("health_check", h.as_ref());
    }
    j.end_object();
}

fn write_executor(j: &mut Json, agent_id: &str, e: &v1::ExecutorInfo) {
    j.begin_object();
    j.str("executor_id", &e.executor_id.value);
    j.str("name", e.name.as_deref().unwrap_or(""));
    j.str(
        "framework_id",
        e.framework_id.as_ref().map_or("", |f| f.value.as_str()),
    );
    let command = e.command.clone().unwrap_or_default();
    j.key("command");
    j.begin_object();
    if let Some(shell) = command.shell {
        j.bool("shell", shell);
    }
    if let Some(value) = &command.value {
        j.str("value", value);
    }
    j.strings("argv", command.arguments.iter().map(String::as_str));
    if let Some(env) = &command.environment {
        j.proto("environment", env);
    }
    j.key("uris");
    j.begin_array();
    for uri in &command.uris {
        j.element();
        j.begin_object();
        j.str("value", &uri.value);
        j.bool("executable", uri.executable.unwrap_or(false));
        j.end_object();
    }
    j.end_array();
    j.end_object();
    j.resource_list("resources", &e.resources);
    if let Some(role) = e
        .resources
        .first()
        .and_then(|r| r.allocation_info.as_ref())
        .and_then(|a| a.role.as_deref())
    {
        j.str("role", role);
    }
    if let Some(labels) = &e.labels {
        j.labels("labels", labels);
    }
    if let Some(ty) = e
        .r#type
        .and_then(|t| v1::executor_info::Type::try_from(t).ok())
    {
        j.str("type", ty.as_str_name());
    }
    j.str("slave_id", agent_id);
    j.end_object();
}

impl Master {
    fn write_framework(&self, j: &mut Json, f: &Framework) {
        j.begin_object();
        Self::write_framework_summary(j, f);
        self.write_framework_full(j, f);
        j.end_object();
    }

    /// `json(Summary<Framework>)`.
    fn write_framework_summary(j: &mut Json, f: &Framework) {
        j.str("id", &f.id.value);
        j.str("name", &f.info.name);
        j.resources("used_resources", &f.used);
        j.resources("offered_resources", &f.offered);
        j.strings(
            "capabilities",
            f.info.capabilities.iter().filter_map(|c| {
                c.r#type
                    .and_then(|t| Capability::try_from(t).ok())
                    .map(|t| t.as_str_name())
            }),
        );
        j.str("hostname", f.info.hostname.as_deref().unwrap_or(""));
        j.str("webui_url", f.info.webui_url.as_deref().unwrap_or(""));
        j.bool("active", f.active);
        j.bool("connected", f.conn.is_some());
        j.bool("recovered", false);
    }

    /// The rest of `FullFrameworkWriter`.
    fn write_framework_full(&self, j: &mut Json, f: &Framework) {
        j.str("user", &f.info.user);
        j.f64("failover_timeout", f.info.failover_timeout());
        j.bool("checkpoint", f.info.checkpoint());
        j.f64("registered_time", f.registered_time);
        j.f64("unregistered_time", f.unregistered_time);
        if let Some(p) = &f.info.principal {
            j.str("principal", p);
        }
        let mut total = f.used.clone();
        total.add(&f.offered);
        j.resources("resources", &total);
        if let Some(t) = f.reregistered_time {
            j.f64("reregistered_time", t);
        }
        if f.capable(Capability::MultiRole) {
            j.strings("roles", f.info.roles.iter().map(String::as_str));
        } else {
            #[allow(deprecated)]
            j.str("role", f.info.role());
        }
        j.key("tasks");
        j.begin_array();
        for t in f.tasks.values() {
            j.element();
            write_task(j, t);
        }
        j.end_array();
        j.key("unreachable_tasks");
        j.begin_array();
        j.end_array();
        j.key("completed_tasks");
        j.begin_array();
        for t in &f.completed_tasks {
            j.element();
            write_task(j, t);
        }
        j.end_array();
        j.key("offers");
        j.begin_array();
        for o in self
            .offers
            .values()
            .filter(|o| o.offer.framework_id == f.id)
        {
            let o = &o.offer;
            j.element();
            j.begin_object();
            j.str("id", &o.id.value);
            j.str("framework_id", &o.framework_id.value);
            j.proto(
                "allocation_info",
                &o.allocation_info.clone().unwrap_or_default(),
            );
            j.str("slave_id", &o.agent_id.value);
            j.resource_list("resources", &o.resources);
            j.end_object();
        }
        j.end_array();
        j.key("executors");
        j.begin_array();
        for ((agent, _), e) in &f.executors {
            j.element();
            write_executor(j, agent, e);
        }
        j.end_array();
        if let Some(labels) = &f.info.labels {
            j.labels("labels", labels);
        }
        j.proto(
            "offer_constraints",
            &f.offer_constraints.clone().unwrap_or_default(),
        );
    }

    fn write_agent(&self, j: &mut Json, a: &Agent) {
        j.begin_object();
        self.write_agent_fields(j, a);
        j.end_object();
    }

    /// `SlaveWriter`.
    fn write_agent_fields(&self, j: &mut Json, a: &Agent) {
        j.str("id", &a.id.value);
        j.str("hostname", &a.info.hostname);
        j.i64("port", i64::from(a.info.port()));
        j.raw("attributes", &attributes_v0_json(&a.info.attributes));
        if let Some(d) = &a.info.domain {
            j.proto("domain", d);
        }
        j.str("pid", &a.pid);
        j.f64("registered_time", a.registered_time);
        j.resources("resources", &a.total);
        j.resources("used_resources", &a.used);
        j.resources("offered_resources", &a.offered);
        // Reservations, grouped by role.
        let reserved = a.total.filter(|r| {
            #[allow(deprecated)]
            let role = r.role.as_deref();
            !r.reservations.is_empty() || role.is_some_and(|x| x != "*")
        });
        let mut roles: Vec<String> = reserved
            .as_slice()
            .iter()
            .filter_map(|r| {
                #[allow(deprecated)]
                let role = r.role.clone();
                r.reservations.last().and_then(|x| x.role.clone()).or(role)
            })
            .collect();
        roles.sort();
        roles.dedup();
        j.key("reserved_resources");
        j.begin_object();
        for role in &roles {
            let of_role = reserved.filter(|r| {
                #[allow(deprecated)]
                let pre = r.role.as_deref();
                r.reservations
                    .last()
                    .and_then(|x| x.role.as_deref())
                    .or(pre)
                    == Some(role)
            });
            j.resources(role, &of_role);
        }
        j.end_object();
        let mut unreserved = a.total.clone();
        unreserved.subtract(&reserved);
        j.resources("unreserved_resources", &unreserved);
        // A disconnected agent is deactivated until it re-registers.
        j.bool("active", a.disconnected_at.is_none());
        j.bool("deactivated", false);
        j.str("version", MESOS_VERSION);
        j.strings(
            "capabilities",
            ["MULTI_ROLE", "HIERARCHICAL_ROLE", "RESERVATION_REFINEMENT"],
        );
    }

    fn write_frameworks_fields(&self, j: &mut Json, framework_id: Option<&str>) {
        let selected = |id: &v1::FrameworkId| framework_id.is_none_or(|f| f == id.value);
        j.key("frameworks");
        j.begin_array();
        for f in self.frameworks.values().filter(|f| selected(&f.id)) {
            j.element();
            self.write_framework(j, f);
        }
        j.end_array();
        j.key("completed_frameworks");
        j.begin_array();
        for f in self.completed_frameworks.iter().filter(|f| selected(&f.id)) {
            j.element();
            self.write_framework(j, f);
        }
        j.end_array();
    }

    /// `/master/state`.
    pub fn state_json(&self, now: Instant) -> String {
        let _ = now;
        let c = &self.config;
        let pid = format!("master@{}:{}", c.ip, c.port);
        let mut j = Json::new();
        j.begin_object();
        j.str("version", MESOS_VERSION);
        j.str("build_date", "");
        j.f64("build_time", 0.0);
        j.str("build_user", "mesokit");
        j.f64("start_time", self.wall_base);
        j.f64("elected_time", self.wall_base);
        j.str("id", &c.master_id);
        j.str("pid", &pid);
        j.str("hostname", &c.hostname);
        j.strings(
            "capabilities",
            ["AGENT_UPDATE", "AGENT_DRAINING", "QUOTA_V2"],
        );
        let disconnected = self
            .agents
            .values()
            .filter(|a| a.disconnected_at.is_some())
            .count() as u64;
        j.u64("activated_slaves", self.agents.len() as u64 - disconnected);
        j.u64("deactivated_slaves", disconnected);
        j.u64("unreachable_slaves", self.counters.slaves_unreachable);
        j.str("leader", &pid);
        j.proto("leader_info", &self.master_info());
        self.write_flags(&mut j);
        j.key("slaves");
        j.begin_array();
        for a in self.agents.values() {
            j.element();
            self.write_agent(&mut j, a);
        }
        j.end_array();
        j.key("recovered_slaves");
        j.begin_array();
        j.end_array();
        self.write_frameworks_fields(&mut j, None);
        j.key("orphan_tasks");
        j.begin_array();
        j.end_array();
        j.key("unregistered_frameworks");
        j.begin_array();
        j.end_array();
        j.end_object();
        j.finish()
    }

    /// `/master/state-summary`: agents and frameworks with task counts by state and which
    /// frameworks run on which agents.
    pub fn state_summary_json(&self) -> String {
        const STATES: [TaskState; 10] = [
            TaskState::TaskStaging,
            TaskState::TaskStarting,
            TaskState::TaskRunning,
            TaskState::TaskKilling,
            TaskState::TaskFinished,
            TaskState::TaskKilled,
            TaskState::TaskFailed,
            TaskState::TaskLost,
            TaskState::TaskError,
            TaskState::TaskUnreachable,
        ];
        let all_tasks = |f: &'_ Framework| {
            f.tasks
                .values()
                .chain(f.completed_tasks.iter())
                .cloned()
                .collect::<Vec<_>>()
        };
        let counts = |j: &mut Json, tasks: &[v1::Task]| {
            for state in STATES {
                let n = tasks.iter().filter(|t| t.state == state as i32).count();
                j.u64(state.as_str_name(), n as u64);
            }
        };
        let mut j = Json::new();
        j.begin_object();
        j.str("hostname", &self.config.hostname);
        j.key("slaves");
        j.begin_array();
        for a in self.agents.values() {
            j.element();
            j.begin_object();
            self.write_agent_fields(&mut j, a);
            let mut tasks = Vec::new();
            let mut frameworks = Vec::new();
            for f in self.frameworks.values() {
                let on: Vec<v1::Task> = all_tasks(f)
                    .into_iter()
                    .filter(|t| t.agent_id == a.id)
                    .collect();
                if !on.is_empty() {
                    frameworks.push(f.id.value.as_str());
                }
                tasks.extend(on);
            }
            counts(&mut j, &tasks);
            j.strings("framework_ids", frameworks);
            j.end_object();
        }
        j.end_array();
        j.key("frameworks");
        j.begin_array();
        for f in self.frameworks.values() {
            j.element();
            j.begin_object();
            Self::write_framework_summary(&mut j, f);
            let tasks = all_tasks(f);
            counts(&mut j, &tasks);
            let agents: BTreeSet<&str> = tasks.iter().map(|t| t.agent_id.value.as_str()).collect();
            let agents: Vec<String> = agents.into_iter().map(str::to_owned).collect();
            j.strings("slave_ids", agents.iter().map(String::as_str));
            j.end_object();
        }
        j.end_array();
        j.end_object();
        j.finish()
    }

    /// `/master/roles`: each role with frameworks, and what is allocated and offered to it
    /// (as resource quantities: scalars summed, ranges and sets counted).
    pub fn roles_json(&self) -> String {
        fn quantities(j: &mut Json, key: &str, r: &Resources) {
            let names: BTreeSet<&str> = r.as_slice().iter().map(|x| x.name.as_str()).collect();
            j.key(key);
            j.begin_object();
            for name in names {
                let ranges = r.ranges(name);
                let amount = if !ranges.is_empty() {
                    ranges.iter().map(|(b, e)| (e - b + 1) as f64).sum()
                } else if !r.set(name).is_empty() {
                    r.set(name).len() as f64
                } else {
                    r.scalar(name)
                };
                j.f64(name, amount);
            }
            j.end_object();
        }
        let of_role = |r: &Resources, role: &str| {
            r.filter(|x| x.allocation_info.as_ref().and_then(|a| a.role.as_deref()) == Some(role))
        };
        let mut roles: BTreeSet<String> = BTreeSet::new();
        for f in self.frameworks.values() {
            roles.extend(f.roles());
        }
        let mut j = Json::new();
        j.begin_object();
        j.key("roles");
        j.begin_array();
        for role in &roles {
            let mut allocated = Resources::new();
            let mut offered = Resources::new();
            let mut frameworks = Vec::new();
            for f in self.frameworks.values() {
                allocated.add(&of_role(&f.used, role));
                offered.add(&of_role(&f.offered, role));
                if f.roles().contains(role) {
                    frameworks.push(f.id.value.as_str());
                }
            }
            let mut both = allocated.clone();
            both.add(&offered);
            j.element();
            j.begin_object();
            j.str("name", role);
            j.f64("weight", 1.0);
            j.key("quota");
            j.begin_object();
            j.str("role", role);
            j.raw("guarantee", "{}");
            j.raw("limit", "{}");
            quantities(&mut j, "consumed", &allocated);
            j.end_object();
            quantities(&mut j, "resources", &both);
            quantities(&mut j, "allocated", &allocated);
            quantities(&mut j, "offered", &offered);
            j.raw("reserved", "{}");
            j.strings("frameworks", frameworks);
            j.end_object();
        }
        j.end_array();
        j.end_object();
        j.finish()
    }

    /// `/master/flags`: the flags this master has, as Mesos prints them.
    pub fn flags_json(&self) -> String {
        let mut j = Json::new();
        j.begin_object();
        self.write_flags(&mut j);
        j.end_object();
        j.finish()
    }

    fn write_flags(&self, j: &mut Json) {
        let c = &self.config;
        j.key("flags");
        j.begin_object();
        j.str(
            "allocation_interval",
            &mesokit_proto::helpers::format_duration(c.allocation_interval),
        );
        j.str("authenticate_agents", "false");
        j.str("authenticate_frameworks", "false");
        j.str("authenticate_http_frameworks", "false");
        j.str("hostname", &c.hostname);
        j.str(
            "min_allocatable_resources",
            &format!(
                "cpus:{}|mem:{}",
                c.min_allocatable_cpus, c.min_allocatable_mem
            ),
        );
        if let Some(t) = c.offer_timeout {
            j.str("offer_timeout", &mesokit_proto::helpers::format_duration(t));
        }
        j.str("port", &c.port.to_string());
        j.str("root_submissions", "true");
        j.end_object();
    }

    /// `/master/frameworks` (`?framework_id=`).
    pub fn frameworks_json(&self, framework_id: Option<&str>) -> String {
        let mut j = Json::new();
        j.begin_object();
        self.write_frameworks_fields(&mut j, framework_id);
        j.key("unregistered_frameworks");
        j.begin_array();
        j.end_array();
        j.end_object();
        j.finish()
    }

    /// `/master/slaves`.
    pub fn slaves_json(&self) -> String {
        let mut j = Json::new();
        j.begin_object();
        j.key("slaves");
        j.begin_array();
        for a in self.agents.values() {
            j.element();
            self.write_agent(&mut j, a);
        }
        j.end_array();
        j.key("recovered_slaves");
        j.begin_array();
        j.end_array();
        j.end_object();
        j.finish()
    }

    /// `/master/tasks`: tasks of live and completed frameworks (live and completed tasks),
    /// filtered, sorted by the time of their first status (newest first if `descending`), then
    /// paged with `offset` and `limit`.
    pub fn tasks_json(
        &self,
        limit: usize,
        offset: usize,
        descending: bool,
        framework_id: Option<&str>,
        task_id: Option<&str>,
    ) -> String {
        let mut tasks: Vec<&v1::Task> = Vec::new();
        for f in self
            .frameworks
            .values()
            .chain(self.completed_frameworks.iter())
        {
            if framework_id.is_some_and(|id| id != f.id.value) {
                continue;
            }
            tasks.extend(f.tasks.values());
            tasks.extend(f.completed_tasks.iter());
        }
        tasks.retain(|t| task_id.is_none_or(|id| id == t.task_id.value));
        // Mesos's TaskComparator: by the first status's timestamp, tasks with no status first
        // (ascending); descending is the reverse.
        let ts = |t: &v1::Task| {
            t.statuses
                .first()
                .map_or(f64::NEG_INFINITY, |s| s.timestamp.unwrap_or(0.0))
        };
        tasks.sort_by(|a, b| ts(a).total_cmp(&ts(b)));
        if descending {
            tasks.reverse();
        }
        let mut j = Json::new();
        j.begin_object();
        j.key("tasks");
        j.begin_array();
        for t in tasks.into_iter().skip(offset).take(limit) {
            j.element();
            write_task(&mut j, t);
        }
        j.end_array();
        j.end_object();
        j.finish()
    }

    /// The `master/*` keys of `/metrics/snapshot`, as of the last time the master was given.
    pub fn metrics(&self) -> Vec<(String, f64)> {
        let mut m: Vec<(String, f64)> = Vec::new();
        let mut put = |k: &str, v: f64| m.push((format!("master/{k}"), v));
        put("elected", 1.0);
        put(
            "uptime_secs",
            self.last_now
                .saturating_duration_since(self.start)
                .as_secs_f64(),
        );

        let frameworks = self.frameworks.values();
        let connected = frameworks.clone().filter(|f| f.conn.is_some()).count();
        let active = frameworks.clone().filter(|f| f.active).count();
        let total = self.frameworks.len();
        put("frameworks_active", active as f64);
        put("frameworks_inactive", (total - active) as f64);
        put("frameworks_connected", connected as f64);
        put("frameworks_disconnected", (total - connected) as f64);
        put(
            "frameworks_removed",
            self.counters.frameworks_removed as f64,
        );
        let agents = self.agents.len() as f64;
        let disconnected = self
            .agents
            .values()
            .filter(|a| a.disconnected_at.is_some())
            .count() as f64;
        put("slaves_active", agents - disconnected);
        put("slaves_inactive", disconnected);
        put("slaves_connected", agents - disconnected);
        put("slaves_disconnected", disconnected);
        put(
            "slaves_unreachable",
            self.counters.slaves_unreachable as f64,
        );
        put(
            "slave_registrations",
            self.counters.slave_registrations as f64,
        );
        put("slave_removals", self.counters.slave_removals as f64);
        put("outstanding_offers", self.offers.len() as f64);

        let mut gauges = [0u64; 5]; // staging, starting, running, killing, unreachable
        for f in self.frameworks.values() {
            for t in f.tasks.values() {
                match TaskState::try_from(t.state) {
                    Ok(TaskState::TaskStaging) => gauges[0] += 1,
                    Ok(TaskState::TaskStarting) => gauges[1] += 1,
                    Ok(TaskState::TaskRunning) => gauges[2] += 1,
                    Ok(TaskState::TaskKilling) => gauges[3] += 1,
                    Ok(TaskState::TaskUnreachable) => gauges[4] += 1,
                    _ => {}
                }
            }
        }
        let c = &self.counters;
        for (k, v) in [
            ("tasks_staging", gauges[0]),
            ("tasks_starting", gauges[1]),
            ("tasks_running", gauges[2]),
            ("tasks_killing", gauges[3]),
            ("tasks_unreachable", gauges[4]),
            ("tasks_finished", c.tasks_finished),
            ("tasks_failed", c.tasks_failed),
            ("tasks_killed", c.tasks_killed),
            ("tasks_lost", c.tasks_lost),
            ("tasks_error", c.tasks_error),
            ("tasks_dropped", c.tasks_dropped),
            ("tasks_gone", c.tasks_gone),
            ("tasks_gone_by_operator", c.tasks_gone_by_operator),
            ("valid_status_updates", c.valid_status_updates),
            ("invalid_status_updates", c.invalid_status_updates),
            (
                "valid_status_update_acknowledgements",
                c.valid_status_update_acknowledgements,
            ),
            (
                "invalid_status_update_acknowledgements",
                c.invalid_status_update_acknowledgements,
            ),
            (
                "valid_framework_to_executor_messages",
                c.valid_framework_to_executor_messages,
            ),
            (
                "invalid_framework_to_executor_messages",
                c.invalid_framework_to_executor_messages,
            ),
            (
                "valid_executor_to_framework_messages",
                c.valid_executor_to_framework_messages,
            ),
            (
                "invalid_executor_to_framework_messages",
                c.invalid_executor_to_framework_messages,
            ),
            ("dropped_messages", c.dropped_messages),
        ] {
            put(k, v as f64);
        }

        let mut total = Resources::new();
        let mut used = Resources::new();
        for a in self.agents.values() {
            total.add(&a.total);
            used.add(&a.used);
        }
        for name in ["cpus", "mem", "disk", "gpus"] {
            let t = total.scalar(name);
            let u = used.scalar(name);
            put(&format!("{name}_total"), t);
            put(&format!("{name}_used"), u);
            put(
                &format!("{name}_percent"),
                if t > 0.0 { u / t } else { 0.0 },
            );
        }
        m
    }
}
