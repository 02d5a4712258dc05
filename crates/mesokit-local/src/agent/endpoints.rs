//! The agent's HTTP routes: the executor API and the read endpoints (`/state`, `/health`,
//! `/version`, `/flags`, `/files/{read,download,browse}`, `/monitor/statistics`, `/containers`,
//! `/metrics/snapshot`), each also under the libprocess name `/slave(1)/…` and with the old
//! `.json` suffix. JSON uses Mesos's v0 "slave" naming.

// Handlers return finished error responses, as `crate::http` does.
#![allow(clippy::result_large_err)]

use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, StatusCode, header};
use mesokit_proto::json::{MesosJson, Writer};
use mesokit_proto::resources::{Resources, attributes_v0_json};
use mesokit_proto::v1::{Attribute, Resource, ResourceStatistics, TaskState};
use tokio::sync::{mpsc, oneshot};

use super::core::{AgentCore, ExecState, Executor, Framework, Task};
use super::{AgentConfig, Input, sandbox};
use crate::http::{Request, Response, empty, json, query, text};

/// What the HTTP handlers share.
pub(crate) struct Ctx {
    pub(crate) tx: mpsc::UnboundedSender<Input>,
    pub(crate) config: Arc<AgentConfig>,
}

/// A JSON builder: [`Writer`] for values, with room for ready-made JSON (v0 resources).
#[derive(Default)]
struct J {
    out: Vec<u8>,
}

impl J {
    fn sep(&mut self) {
        match self.out.last() {
            None | Some(b'{' | b'[' | b':') => {}
            _ => self.out.push(b','),
        }
    }
    /// A fresh writer for one value (its own separator logic sees nothing before it).
    fn w(&mut self) -> Writer<'_> {
        self.sep();
        Writer::new(&mut self.out)
    }
    fn begin_object(&mut self) {
        self.sep();
        self.out.push(b'{');
    }
    fn end_object(&mut self) {
        self.out.push(b'}');
    }
    fn begin_array(&mut self) {
        self.sep();
        self.out.push(b'[');
    }
    fn end_array(&mut self) {
        self.out.push(b']');
    }
    fn key(&mut self, k: &str) {
        self.w().key(k);
    }
    fn map_key(&mut self, k: &str) {
        self.w().map_key(k);
    }
    fn string(&mut self, v: &str) {
        self.w().string(v);
    }
    fn f64(&mut self, v: f64) {
        self.w().f64(v);
    }
    fn i64(&mut self, v: i64) {
        self.w().i64(v);
    }
    fn u64(&mut self, v: u64) {
        self.w().u64(v);
    }
    fn bool(&mut self, v: bool) {
        self.w().bool(v);
    }
    fn raw(&mut self, json: &str) {
        self.sep();
        self.out.extend_from_slice(json.as_bytes());
    }
    fn message<T: MesosJson>(&mut self, m: &T) {
        m.write_json(&mut self.w());
    }
}

pub(crate) use crate::version::MESOS_VERSION as VERSION;

pub(crate) async fn route(ctx: Arc<Ctx>, req: Request) -> Response {
    let path = req.uri().path().to_owned();
    let path = path.strip_prefix("/slave(1)").unwrap_or(&path);
    let path = path.strip_suffix(".json").unwrap_or(path);
    match path {
        "/api/v1/executor" => super::executor_api::handle(&ctx, req).await,
        "/api/v1" => super::operator::handle(&ctx, req).await,
        "/health" => empty(StatusCode::OK),
        "/version" => jsonp(&req, crate::version::version_json()),
        "/state" => match ask(&ctx, state_json).await {
            Some(b) => jsonp(&req, b),
            None => gone(),
        },
        "/monitor/statistics" | "/containers" => {
            let containers = path == "/containers";
            let usage = ctx
                .config
                .modules
                .clone()
                .filter(|m| m.has(mesokit_hooks::modules::Method::Usage));
            let body = match (usage, containers) {
                (Some(m), _) => statistics_with_usage(&ctx, m, containers).await,
                (None, false) => ask(&ctx, statistics_json).await,
                (None, true) => ask(&ctx, containers_json).await,
            };
            match body {
                Some(b) => jsonp(&req, b),
                None => gone(),
            }
        }
        "/metrics/snapshot" => match ask(&ctx, metrics_json).await {
            Some(b) => jsonp(&req, b),
            None => gone(),
        },
        "/flags" => jsonp(&req, flags_json(&ctx.config)),
        "/files/read" => files_read(&ctx.config, &req),
        "/files/download" => files_download(&ctx.config, &req),
        "/files/browse" => files_browse(&ctx.config, &req),
        _ => text(StatusCode::NOT_FOUND, ""),
    }
}

fn gone() -> Response {
    text(StatusCode::SERVICE_UNAVAILABLE, "Agent is shutting down")
}

/// Runs `f` on the agent's state inside the actor.
async fn ask(ctx: &Ctx, f: fn(&AgentCore) -> Vec<u8>) -> Option<Vec<u8>> {
    let (tx, rx) = oneshot::channel();
    let q: super::Query = Box::new(move |a: &AgentCore| {
        let _ = tx.send(f(a));
    });
    ctx.tx.send(Input::Query(q)).ok()?;
    rx.await.ok()
}

/// A JSON answer, wrapped as `cb(…);` when `?jsonp=cb` is given.
fn jsonp(req: &Request, body: Vec<u8>) -> Response {
    match query(req).into_iter().find(|(k, _)| k == "jsonp") {
        Some((_, cb)) => {
            let mut out = Vec::with_capacity(body.len() + cb.len() + 3);
            out.extend_from_slice(cb.as_bytes());
            out.push(b'(');
            out.extend_from_slice(&body);
            out.extend_from_slice(b");");
            crate::http::bytes(StatusCode::OK, "text/javascript", out)
        }
        None => json(body),
    }
}

fn build_fields(w: &mut J) {
    w.key("version");
    w.string(VERSION);
    w.key("build_date");
    w.string("");
    w.key("build_time");
    w.f64(0.0);
    w.key("build_user");
    w.string("mesokit");
}

fn flags_json(c: &AgentConfig) -> Vec<u8> {
    let mut w = J::default();
    w.begin_object();
    w.key("flags");
    write_flags(&mut w, c);
    w.end_object();
    w.out
}

/// The agent's flags, as Mesos names them.
pub(super) fn flags(c: &AgentConfig) -> Vec<(&'static str, String)> {
    use mesokit_proto::helpers::format_duration;
    vec![
        ("work_dir", c.work_dir.display().to_string()),
        ("port", c.port.to_string()),
        ("hostname", c.hostname.clone()),
        ("ip", c.ip.to_string()),
        ("http_command_executor", "true".into()),
        (
            "executor_registration_timeout",
            format_duration(c.executor_registration_timeout),
        ),
        (
            "executor_shutdown_grace_period",
            format_duration(c.executor_shutdown_grace),
        ),
        (
            "executor_reregistration_timeout",
            format_duration(c.executor_reregistration_timeout),
        ),
        ("recovery_timeout", format_duration(c.recovery_timeout)),
    ]
}

fn write_flags(w: &mut J, c: &AgentConfig) {
    w.begin_object();
    for (k, v) in flags(c) {
        w.key(k);
        w.string(&v);
    }
    w.end_object();
}

// ----- v0 resources and attributes -----

/// Resources as the v0 endpoints print them (a flat object).
fn write_resources(w: &mut J, rs: &[Resource]) {
    w.raw(&Resources::from_vec(rs.to_vec()).to_v0_json());
}

fn write_attributes(w: &mut J, attrs: &[Attribute]) {
    w.raw(&attributes_v0_json(attrs));
}

fn scalar_sum(rs: &[Resource], name: &str) -> f64 {
    Resources::from_vec(rs.to_vec()).scalar(name)
}

fn role_of(rs: &[Resource]) -> Option<String> {
    rs.iter()
        .find_map(|r| r.allocation_info.as_ref().and_then(|a| a.role.clone()))
}

// ----- /state -----

/// The agent's `/slave(1)/state` (§5.3 essential shape).
pub(crate) fn state_json(a: &AgentCore) -> Vec<u8> {
    let c = &a.config;
    let mut w = J::default();
    w.begin_object();
    build_fields(&mut w);
    w.key("start_time");
    w.f64(a.start_time);
    w.key("id");
    w.string(&c.id.value);
    w.key("pid");
    w.string(&c.pid());
    w.key("hostname");
    w.string(&c.hostname);
    w.key("capabilities");
    w.begin_array();
    for cap in ["MULTI_ROLE", "HIERARCHICAL_ROLE", "RESERVATION_REFINEMENT"] {
        w.string(cap);
    }
    w.end_array();
    w.key("resources");
    write_resources(&mut w, &c.resources);
    w.key("reserved_resources");
    w.begin_object();
    w.end_object();
    w.key("unreserved_resources");
    write_resources(&mut w, &c.resources);
    w.key("reserved_resources_full");
    w.begin_object();
    w.end_object();
    w.key("unreserved_resources_full");
    w.begin_array();
    for r in &c.resources {
        w.message(r);
    }
    w.end_array();
    let used = used_resources(a);
    w.key("reserved_resources_allocated");
    w.begin_object();
    w.end_object();
    w.key("unreserved_resources_allocated");
    write_resources(&mut w, &used);
    w.key("resource_providers");
    w.begin_array();
    w.end_array();
    w.key("attributes");
    write_attributes(&mut w, &c.attributes);
    w.key("flags");
    write_flags(&mut w, c);
    w.key("frameworks");
    w.begin_array();
    for f in a.frameworks.values() {
        write_framework(&mut w, a, f);
    }
    w.end_array();
    w.key("completed_frameworks");
    w.begin_array();
    for f in &a.completed_frameworks {
        write_framework(&mut w, a, f);
    }
    w.end_array();
    w.end_object();
    w.out
}

fn write_framework(w: &mut J, a: &AgentCore, f: &Framework) {
    let i = &f.info;
    w.begin_object();
    w.key("id");
    w.string(&i.id.clone().unwrap_or_default().value);
    w.key("name");
    w.string(&i.name);
    w.key("user");
    w.string(&i.user);
    w.key("failover_timeout");
    w.f64(i.failover_timeout.unwrap_or(0.0));
    w.key("checkpoint");
    w.bool(i.checkpoint.unwrap_or(false));
    w.key("hostname");
    w.string(i.hostname.as_deref().unwrap_or(""));
    if let Some(p) = &i.principal {
        w.key("principal");
        w.string(p);
    }
    w.key("capabilities");
    w.begin_array();
    for cap in &i.capabilities {
        let name = cap
            .r#type
            .and_then(|t| mesokit_proto::v1::framework_info::capability::Type::try_from(t).ok())
            .map(|t| t.as_str_name())
            .unwrap_or("UNKNOWN");
        w.string(name);
    }
    w.end_array();
    let multi_role = i.capabilities.iter().any(|c| {
        c.r#type == Some(mesokit_proto::v1::framework_info::capability::Type::MultiRole as i32)
    });
    if multi_role {
        w.key("roles");
        w.begin_array();
        for r in &i.roles {
            w.string(r);
        }
        w.end_array();
    } else {
        #[allow(deprecated)]
        let role = i.role.clone().unwrap_or_else(|| "*".into());
        w.key("role");
        w.string(&role);
    }
    w.key("executors");
    w.begin_array();
    for e in f.executors.values() {
        write_executor(w, a, e);
    }
    w.end_array();
    w.key("completed_executors");
    w.begin_array();
    for e in &f.completed_executors {
        write_executor(w, a, e);
    }
    w.end_array();
    w.end_object();
}

fn write_executor(w: &mut J, a: &AgentCore, e: &Executor) {
    let fid = e.info.framework_id.clone().unwrap_or_default().value;
    w.begin_object();
    w.key("id");
    w.string(&e.info.executor_id.value);
    w.key("name");
    w.string(e.info.name.as_deref().unwrap_or(""));
    w.key("source");
    #[allow(deprecated)]
    w.string(e.info.source.as_deref().unwrap_or(""));
    w.key("container");
    w.string(&e.container_id);
    w.key("directory");
    w.string(&e.directory.display().to_string());
    w.key("resources");
    write_resources(w, &executor_resources(e));
    if let Some(role) = role_of(&e.info.resources) {
        w.key("role");
        w.string(&role);
    }
    if let Some(l) = &e.info.labels {
        w.key("labels");
        w.begin_array();
        for l in &l.labels {
            w.message(l);
        }
        w.end_array();
    }
    if let Some(t) = e.info.r#type {
        w.key("type");
        let name = mesokit_proto::v1::executor_info::Type::try_from(t)
            .map(|t| t.as_str_name())
            .unwrap_or("UNKNOWN");
        w.string(name);
    }
    w.key("tasks");
    w.begin_array();
    for t in e.launched.values() {
        write_task(w, a, &fid, e, t, false);
    }
    w.end_array();
    w.key("queued_tasks");
    w.begin_array();
    for p in &e.queued {
        for info in p.tasks() {
            let t = Task {
                info: info.clone(),
                state: TaskState::TaskStaging,
                statuses: Vec::new(),
            };
            write_task(w, a, &fid, e, &t, true);
        }
    }
    w.end_array();
    w.key("completed_tasks");
    w.begin_array();
    for t in &e.completed {
        write_task(w, a, &fid, e, t, false);
    }
    w.end_array();
    w.end_object();
}

fn write_task(w: &mut J, a: &AgentCore, fid: &str, e: &Executor, t: &Task, queued: bool) {
    w.begin_object();
    w.key("id");
    w.string(&t.info.task_id.value);
    w.key("name");
    w.string(&t.info.name);
    w.key("framework_id");
    w.string(fid);
    w.key("executor_id");
    w.string(if e.command {
        ""
    } else {
        &e.info.executor_id.value
    });
    w.key("slave_id");
    w.string(&a.config.id.value);
    if !queued {
        w.key("state");
        w.string(t.state.as_str_name());
    }
    w.key("resources");
    write_resources(w, &t.info.resources);
    if let Some(role) = role_of(&t.info.resources) {
        w.key("role");
        w.string(&role);
    }
    if !queued {
        w.key("statuses");
        w.begin_array();
        for s in &t.statuses {
            w.begin_object();
            w.key("state");
            w.string(
                TaskState::try_from(s.state)
                    .map(|s| s.as_str_name())
                    .unwrap_or("TASK_STAGING"),
            );
            w.key("timestamp");
            w.f64(s.timestamp.unwrap_or(0.0));
            if let Some(l) = &s.labels {
                w.key("labels");
                w.begin_array();
                for l in &l.labels {
                    w.message(l);
                }
                w.end_array();
            }
            if let Some(cs) = &s.container_status {
                w.key("container_status");
                w.message(cs);
            }
            if let Some(h) = s.healthy {
                w.key("healthy");
                w.bool(h);
            }
            w.end_object();
        }
        w.end_array();
    }
    if let Some(l) = &t.info.labels {
        w.key("labels");
        w.begin_array();
        for l in &l.labels {
            w.message(l);
        }
        w.end_array();
    }
    if let Some(d) = &t.info.discovery {
        w.key("discovery");
        w.message(&**d);
    }
    if let Some(c) = &t.info.container {
        w.key("container");
        w.message(c.as_ref());
    }
    w.end_object();
}

/// Executor resources plus those of its live and queued tasks.
pub(super) fn executor_resources(e: &Executor) -> Vec<Resource> {
    let mut rs = e.info.resources.clone();
    for t in e.launched.values() {
        rs.extend(t.info.resources.iter().cloned());
    }
    for p in &e.queued {
        for t in p.tasks() {
            rs.extend(t.resources.iter().cloned());
        }
    }
    rs
}

fn used_resources(a: &AgentCore) -> Vec<Resource> {
    a.frameworks
        .values()
        .flat_map(|f| f.executors.values())
        .flat_map(executor_resources)
        .collect()
}

// ----- /monitor/statistics -----

fn proc_stats(pid: u32) -> (Option<u64>, Option<f64>, Option<f64>) {
    let rss = std::fs::read_to_string(format!("/proc/{pid}/statm"))
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map(|pages| pages * 4096);
    let times = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            // Fields after the command name (which may contain spaces) end with ')'.
            let rest = &s[s.rfind(')')? + 2..];
            let f: Vec<&str> = rest.split_whitespace().collect();
            let utime = f.get(11)?.parse::<f64>().ok()? / 100.0;
            let stime = f.get(12)?.parse::<f64>().ok()? / 100.0;
            Some((utime, stime))
        });
    (rss, times.map(|t| t.0), times.map(|t| t.1))
}

/// Number of processes in each process group, from one walk of `/proc` (a request for N
/// containers used to walk it N times: 236 ms for 100 containers).
pub(super) fn group_counts() -> std::collections::HashMap<u32, u32> {
    let mut counts = std::collections::HashMap::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return counts;
    };
    for entry in dir.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let pgrp = stat
            .rfind(')')
            .and_then(|i| stat.get(i + 2..))
            .and_then(|rest| rest.split_whitespace().nth(2))
            .and_then(|p| p.parse::<u32>().ok());
        if let Some(pgrp) = pgrp {
            *counts.entry(pgrp).or_insert(0) += 1;
        }
    }
    counts
}

pub(crate) fn statistics_json(a: &AgentCore) -> Vec<u8> {
    executors_json(a, false)
}

/// `/containers`: the statistics entries plus `container_id` and `status`.
pub(crate) fn containers_json(a: &AgentCore) -> Vec<u8> {
    executors_json(a, true)
}

/// Usage of a live executor (limits from its resources, the rest from `/proc`); `groups` is
/// [`group_counts`].
pub(super) fn statistics(
    e: &Executor,
    groups: &std::collections::HashMap<u32, u32>,
) -> ResourceStatistics {
    let rs = executor_resources(e);
    let (rss, user, system) = e.pid.map(proc_stats).unwrap_or_default();
    ResourceStatistics {
        timestamp: super::now_secs(),
        cpus_limit: Some(scalar_sum(&rs, "cpus")),
        mem_limit_bytes: Some((scalar_sum(&rs, "mem") * 1024.0 * 1024.0) as u64),
        mem_rss_bytes: rss,
        processes: e.pid.map(|pid| groups.get(&pid).copied().unwrap_or(0)),
        cpus_user_time_secs: user,
        cpus_system_time_secs: system,
        ..Default::default()
    }
}

/// One `/monitor/statistics` entry before the isolators' usage is merged in.
struct Entry {
    executor_id: String,
    executor_name: String,
    framework_id: String,
    source: String,
    container_id: String,
    pid: Option<u32>,
    statistics: ResourceStatistics,
}

/// `/monitor/statistics` (or, with `containers`, `/containers`) with the command isolators'
/// `usage` merged into each container's statistics (protobuf merge, as Mesos does; the limits
/// stay the agent's). The usage commands of all containers run at once; the agent's actor is
/// not held meanwhile. An executor is listed from the moment its launch is decided, before
/// its sandbox exists and its isolators' `prepare` ran: until then the isolators do not know
/// its container, so its entry has the agent's statistics only (and `usage` logs a warning
/// naming the container), as Mesos lists it without the failed isolator's answer.
async fn statistics_with_usage(
    ctx: &Ctx,
    m: Arc<mesokit_hooks::agent::CommandModules>,
    containers: bool,
) -> Option<Vec<u8>> {
    let (tx, rx) = oneshot::channel();
    let q: super::Query = Box::new(move |a: &AgentCore| {
        let groups = group_counts();
        let entries: Vec<Entry> = a
            .frameworks
            .values()
            .flat_map(|f| f.executors.values())
            .filter(|e| e.state != ExecState::Terminated)
            .map(|e| Entry {
                executor_id: e.info.executor_id.value.clone(),
                executor_name: e.info.name.clone().unwrap_or_default(),
                framework_id: e.info.framework_id.clone().unwrap_or_default().value,
                #[allow(deprecated)]
                source: e.info.source.clone().unwrap_or_default(),
                container_id: e.container_id.clone(),
                pid: e.pid,
                statistics: statistics(e, &groups),
            })
            .collect();
        let _ = tx.send(entries);
    });
    ctx.tx.send(Input::Query(q)).ok()?;
    let mut entries = rx.await.ok()?;
    // Dropping the set (a client that goes away) cancels the runs: the runner kills their
    // commands and removes their files.
    let mut runs = tokio::task::JoinSet::new();
    let mut index = std::collections::HashMap::new();
    for (i, e) in entries.iter().enumerate() {
        let m = m.clone();
        let id = mesokit_proto::v1::ContainerId {
            value: e.container_id.clone(),
            parent: None,
        };
        let run = runs.spawn(async move { m.usage(&id).await });
        index.insert(run.id(), i);
    }
    merge_usage(&mut entries, runs, &index).await;
    let mut w = J::default();
    w.begin_array();
    for e in &entries {
        w.begin_object();
        if containers {
            w.key("container_id");
            w.string(&e.container_id);
        }
        w.key("executor_id");
        w.string(&e.executor_id);
        w.key("executor_name");
        w.string(&e.executor_name);
        w.key("framework_id");
        w.string(&e.framework_id);
        w.key("source");
        w.string(&e.source);
        w.key("statistics");
        w.message(&e.statistics);
        if containers {
            w.key("status");
            w.message(&container_status(&e.container_id, e.pid));
        }
        w.end_object();
    }
    w.end_array();
    Some(w.out)
}

/// Waits for every usage run of `runs` (`index`: task id -> entry) and merges each answer
/// into its entry's statistics (protobuf merge; the limits stay the agent's). A container
/// the isolators skipped (`None`: they log why) keeps the agent's statistics. A run that
/// panicked or was cancelled does too, and is logged here with its container id; their
/// container ids are returned.
async fn merge_usage(
    entries: &mut [Entry],
    mut runs: tokio::task::JoinSet<Option<ResourceStatistics>>,
    index: &std::collections::HashMap<tokio::task::Id, usize>,
) -> Vec<String> {
    use mesokit_proto::Message as _;
    let mut failed = Vec::new();
    while let Some(done) = runs.join_next_with_id().await {
        let (i, usage) = match done {
            Ok((id, usage)) => (index.get(&id).copied(), usage),
            Err(e) => {
                let i = index.get(&e.id()).copied();
                let cid = i.map_or("?", |i| entries[i].container_id.as_str());
                let executor_id = i.map_or("?", |i| entries[i].executor_id.as_str());
                tracing::warn!(container_id = %cid, executor_id = %executor_id, "usage: the isolators' usage run failed ({e}); the container's statistics are the agent's only");
                failed.push(cid.to_owned());
                continue;
            }
        };
        let (Some(i), Some(usage)) = (i, usage) else {
            continue;
        };
        let base = &mut entries[i].statistics;
        let (cpus_limit, mem_limit) = (base.cpus_limit, base.mem_limit_bytes);
        // Merging a message that was just encoded cannot fail.
        let _ = base.merge(usage.encode_to_vec().as_slice());
        base.cpus_limit = cpus_limit;
        base.mem_limit_bytes = mem_limit;
    }
    failed
}

/// `/containers`' `status` of a container.
fn container_status(container_id: &str, pid: Option<u32>) -> mesokit_proto::v1::ContainerStatus {
    mesokit_proto::v1::ContainerStatus {
        container_id: Some(mesokit_proto::v1::ContainerId {
            value: container_id.to_owned(),
            parent: None,
        }),
        executor_pid: pid,
        ..Default::default()
    }
}

fn executors_json(a: &AgentCore, containers: bool) -> Vec<u8> {
    let groups = group_counts();
    let mut w = J::default();
    w.begin_array();
    for e in a.frameworks.values().flat_map(|f| f.executors.values()) {
        if e.state == ExecState::Terminated {
            continue;
        }
        let stats = statistics(e, &groups);
        w.begin_object();
        if containers {
            w.key("container_id");
            w.string(&e.container_id);
        }
        w.key("executor_id");
        w.string(&e.info.executor_id.value);
        w.key("executor_name");
        w.string(e.info.name.as_deref().unwrap_or(""));
        w.key("framework_id");
        w.string(&e.info.framework_id.clone().unwrap_or_default().value);
        w.key("source");
        #[allow(deprecated)]
        w.string(e.info.source.as_deref().unwrap_or(""));
        w.key("statistics");
        w.message(&stats);
        if containers {
            w.key("status");
            w.message(&container_status(&e.container_id, e.pid));
        }
        w.end_object();
    }
    w.end_array();
    w.out
}

// ----- /metrics/snapshot -----

pub(crate) fn metrics_json(a: &AgentCore) -> Vec<u8> {
    let mut w = J::default();
    w.begin_object();
    for (k, v) in metrics(a) {
        w.map_key(&k);
        w.f64(v);
    }
    w.end_object();
    w.out
}

/// The `slave/*` metrics.
pub(super) fn metrics(a: &AgentCore) -> Vec<(String, f64)> {
    let mut m: Vec<(String, f64)> = Vec::new();
    m.push(("slave/registered".into(), 1.0));
    m.push((
        "slave/uptime_secs".into(),
        a.started.elapsed().as_secs_f64(),
    ));
    let live: Vec<&Executor> = a
        .frameworks
        .values()
        .flat_map(|f| f.executors.values())
        .collect();
    let count = |s: ExecState| live.iter().filter(|e| e.state == s).count() as f64;
    m.push((
        "slave/executors_registering".into(),
        count(ExecState::Registering),
    ));
    m.push(("slave/executors_running".into(), count(ExecState::Running)));
    m.push((
        "slave/executors_terminating".into(),
        count(ExecState::Terminating),
    ));
    m.push((
        "slave/executors_terminated".into(),
        a.executors_terminated as f64,
    ));
    let mut active = [0.0f64; 4];
    for e in &live {
        active[0] += e.queued.iter().map(|p| p.tasks().len() as f64).sum::<f64>();
        for t in e.launched.values() {
            match t.state {
                TaskState::TaskStaging => active[0] += 1.0,
                TaskState::TaskStarting => active[1] += 1.0,
                TaskState::TaskRunning => active[2] += 1.0,
                TaskState::TaskKilling => active[3] += 1.0,
                _ => {}
            }
        }
    }
    for (i, name) in ["staging", "starting", "running", "killing"]
        .iter()
        .enumerate()
    {
        m.push((format!("slave/tasks_{name}"), active[i]));
    }
    for (name, state) in [
        ("finished", "TASK_FINISHED"),
        ("failed", "TASK_FAILED"),
        ("killed", "TASK_KILLED"),
        ("lost", "TASK_LOST"),
        ("gone", "TASK_GONE"),
    ] {
        let n = a.terminal_counts.get(state).copied().unwrap_or(0);
        m.push((format!("slave/tasks_{name}"), n as f64));
    }
    let used = used_resources(a);
    for r in ["cpus", "mem", "disk", "gpus"] {
        let total = scalar_sum(&a.config.resources, r);
        let u = scalar_sum(&used, r);
        m.push((format!("slave/{r}_total"), total));
        m.push((format!("slave/{r}_used"), u));
        m.push((
            format!("slave/{r}_percent"),
            if total > 0.0 { u / total } else { 0.0 },
        ));
    }
    m.push(("slave/frameworks_active".into(), a.frameworks.len() as f64));
    m.push(("slave/recovery_errors".into(), 0.0));
    m
}

// ----- /files -----

/// Maps a `/files` path (virtual `/frameworks/<fid>/executors/<eid>/runs/latest/...` or an
/// absolute path) to a real path inside the work directory.
pub(super) fn resolve(config: &AgentConfig, path: &str) -> Result<PathBuf, Response> {
    let not_found = || text(StatusCode::NOT_FOUND, "");
    let candidate = if let Some(rest) = path.strip_prefix("/frameworks/") {
        let parts: Vec<&str> = rest.splitn(6, '/').collect();
        if parts.len() < 5 || parts[1] != "executors" || parts[3] != "runs" {
            return Err(not_found());
        }
        let mut p = sandbox::runs_dir(&config.work_dir, &config.id.value, parts[0], parts[2])
            .join(parts[4]);
        if let Some(tail) = parts.get(5) {
            p = p.join(tail);
        }
        p
    } else {
        PathBuf::from(path)
    };
    let real = candidate.canonicalize().map_err(|_| not_found())?;
    let root = config.work_dir.canonicalize().map_err(|_| not_found())?;
    if !real.starts_with(&root) {
        return Err(not_found());
    }
    Ok(real)
}

fn path_param(req: &Request) -> Result<String, Response> {
    query(req)
        .into_iter()
        .find(|(k, _)| k == "path")
        .map(|(_, v)| v)
        .ok_or_else(|| {
            text(
                StatusCode::BAD_REQUEST,
                "Expecting 'path=value' in query.\n",
            )
        })
}

fn int_param(req: &Request, name: &str) -> Result<Option<i64>, Response> {
    match query(req).into_iter().find(|(k, _)| k == name) {
        None => Ok(None),
        Some((_, v)) => v.parse::<i64>().map(Some).map_err(|e| {
            text(
                StatusCode::BAD_REQUEST,
                format!("Failed to parse {name}: {e}.\n"),
            )
        }),
    }
}

fn files_read(config: &AgentConfig, req: &Request) -> Response {
    use std::io::{Read, Seek, SeekFrom};
    let inner = || -> Result<Response, Response> {
        let path = path_param(req)?;
        let offset = int_param(req, "offset")?.unwrap_or(-1);
        if offset < -1 {
            return Err(text(
                StatusCode::BAD_REQUEST,
                format!("Negative offset provided: {offset}.\n"),
            ));
        }
        let length = int_param(req, "length")?;
        if let Some(l) = length.filter(|l| *l < -1) {
            return Err(text(
                StatusCode::BAD_REQUEST,
                format!("Negative length provided: {l}.\n"),
            ));
        }
        let real = resolve(config, &path)?;
        if real.is_dir() {
            return Err(text(StatusCode::BAD_REQUEST, "Cannot read a directory.\n"));
        }
        let mut file = std::fs::File::open(&real).map_err(|_| text(StatusCode::NOT_FOUND, ""))?;
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        // As Mesos: offset -1 asks for the size; reads are capped at 16 pages.
        let (offset, length) = if offset == -1 {
            (None, 0)
        } else {
            let o = offset as u64;
            let want = length.filter(|l| *l >= 0).map_or(u64::MAX, |l| l as u64);
            (Some(o), want.min(size.saturating_sub(o)).min(16 * 4096))
        };
        let mut data = Vec::new();
        if let Some(o) = offset
            && length > 0
        {
            file.seek(SeekFrom::Start(o))
                .and_then(|_| file.take(length).read_to_end(&mut data))
                .map_err(|e| {
                    text(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        format!("Failed to read '{}': {e}.\n", real.display()),
                    )
                })?;
        }
        let mut w = J::default();
        w.begin_object();
        w.key("data");
        w.string(&String::from_utf8_lossy(&data));
        w.key("offset");
        w.u64(offset.unwrap_or(size));
        w.end_object();
        Ok(jsonp(req, w.out))
    };
    inner().unwrap_or_else(|r| r)
}

fn files_download(config: &AgentConfig, req: &Request) -> Response {
    let inner = || -> Result<Response, Response> {
        let path = path_param(req)?;
        let real = resolve(config, &path)?;
        if real.is_dir() {
            return Err(text(
                StatusCode::BAD_REQUEST,
                "Cannot download a directory.\n",
            ));
        }
        let data = std::fs::read(&real).map_err(|_| text(StatusCode::NOT_FOUND, ""))?;
        let mut r = crate::http::bytes(
            StatusCode::OK,
            "application/octet-stream",
            Bytes::from(data),
        );
        let name = real
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
            r.headers_mut().insert(header::CONTENT_DISPOSITION, v);
        }
        Ok(r)
    };
    inner().unwrap_or_else(|r| r)
}

pub(super) fn mode_string(mode: u32, dir: bool) -> String {
    let mut s = String::with_capacity(10);
    s.push(if dir { 'd' } else { '-' });
    for shift in [6, 3, 0] {
        let bits = (mode >> shift) & 7;
        s.push(if bits & 4 != 0 { 'r' } else { '-' });
        s.push(if bits & 2 != 0 { 'w' } else { '-' });
        s.push(if bits & 1 != 0 { 'x' } else { '-' });
    }
    s
}

fn files_browse(config: &AgentConfig, req: &Request) -> Response {
    use std::os::unix::fs::MetadataExt;
    let inner = || -> Result<Response, Response> {
        let path = path_param(req)?;
        let real = resolve(config, &path)?;
        let entries: Vec<(PathBuf, std::fs::Metadata)> = if real.is_dir() {
            let rd = std::fs::read_dir(&real).map_err(|_| text(StatusCode::NOT_FOUND, ""))?;
            let mut v: Vec<_> = rd
                .filter_map(|e| e.ok())
                .filter_map(|e| Some((e.path(), e.metadata().ok()?)))
                .collect();
            v.sort_by(|a, b| a.0.cmp(&b.0));
            v
        } else {
            let md = std::fs::metadata(&real).map_err(|_| text(StatusCode::NOT_FOUND, ""))?;
            vec![(real.clone(), md)]
        };
        let mut w = J::default();
        w.begin_array();
        for (p, md) in entries {
            w.begin_object();
            w.key("path");
            w.string(&p.display().to_string());
            w.key("nlink");
            w.u64(md.nlink());
            w.key("size");
            w.u64(md.size());
            w.key("mtime");
            w.i64(md.mtime());
            w.key("mode");
            w.string(&mode_string(md.mode(), md.is_dir()));
            w.key("uid");
            w.string(&md.uid().to_string());
            w.key("gid");
            w.string(&md.gid().to_string());
            w.end_object();
        }
        w.end_array();
        Ok(jsonp(req, w.out))
    };
    inner().unwrap_or_else(|r| r)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(container_id: &str) -> Entry {
        Entry {
            executor_id: format!("e-{container_id}"),
            executor_name: String::new(),
            framework_id: "fw".into(),
            source: String::new(),
            container_id: container_id.into(),
            pid: None,
            statistics: ResourceStatistics {
                timestamp: 5.0,
                cpus_limit: Some(0.5),
                mem_limit_bytes: Some(1024),
                ..Default::default()
            },
        }
    }

    fn explode() -> Option<ResourceStatistics> {
        panic!("a usage run panics")
    }

    #[tokio::test]
    async fn usage_runs_that_panic_or_are_cancelled_are_reported_and_the_rest_merged() {
        let mut entries: Vec<Entry> = ["answers", "panics", "skipped", "cancelled"]
            .into_iter()
            .map(entry)
            .collect();
        let mut runs = tokio::task::JoinSet::new();
        let mut index = std::collections::HashMap::new();
        let answer = ResourceStatistics {
            timestamp: 1.0,
            net_rx_bytes: Some(1000),
            cpus_limit: Some(8.0),
            ..Default::default()
        };
        index.insert(runs.spawn(async move { Some(answer) }).id(), 0);
        index.insert(runs.spawn(async { explode() }).id(), 1);
        index.insert(runs.spawn(async { None }).id(), 2);
        let cancelled = runs.spawn(std::future::pending());
        index.insert(cancelled.id(), 3);
        cancelled.abort();

        let mut failed = merge_usage(&mut entries, runs, &index).await;
        failed.sort();
        assert_eq!(failed, ["cancelled", "panics"]);
        let merged = &entries[0].statistics;
        assert_eq!(merged.net_rx_bytes, Some(1000));
        assert_eq!(merged.timestamp, 1.0, "the script's timestamp is kept");
        assert_eq!(merged.cpus_limit, Some(0.5), "the limits stay the agent's");
        for e in &entries[1..] {
            assert_eq!(e.statistics, entry(&e.container_id).statistics);
        }
    }
}
