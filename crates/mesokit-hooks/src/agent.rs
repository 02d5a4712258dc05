//! Criteo command modules at run time: the hooks and isolators of a selected `modules.json`,
//! called by an agent at Mesos's hook and isolator points. [`interpret`] says what Mesos does
//! with one command's result; [`CommandModules`] applies it for a whole agent.
//!
//! Where a method ends in an error, the rules are Mesos's: hook errors are logged and change
//! nothing, a failing `prepare` or `isolate` fails the launch, `usage` never fails, `watch`
//! retries until a script answers with a JSON object (a limitation). Unlike Criteo, the watch
//! script runs like every other command (no shell, with its timeout).

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mesokit_proto::Message as _;
use mesokit_proto::json::{self, MesosJson};
use mesokit_proto::v1::{
    AgentInfo, Attribute, ContainerId, Environment, ExecutorInfo, FrameworkId, FrameworkInfo,
    Labels, Resource, ResourceStatistics, TaskInfo, TaskStatus, environment,
};

use crate::mesos::{
    AttributeList, ContainerConfig, ContainerLaunchInfo, ContainerLimitation, OutputError,
    ResourceList, agent_info_input, container_id_string, container_input,
    environment_decorator_input, label_decorator_input, master_label_decorator_input,
    master_resource_decorator_input, parse_output, post_fetch_input, remove_executor_input,
    task_status_decorator_input,
};
use crate::modules::{CommandModule, Method, ModulesConfig};
use crate::runner::{Invocation, Outcome, RunError, Runner};

/// What Mesos does with one method's result.
#[derive(Debug, Clone, PartialEq)]
#[allow(clippy::large_enum_variant)] // one per command run: the copy does not matter
pub enum Verdict {
    /// Label decorator: the task's labels become these.
    ReplaceLabels(Labels),
    /// Environment decorator: these variables are set in the executor's environment.
    SetEnvironment(Environment),
    /// A hook failed: Mesos logs this and changes nothing; the task goes on.
    HookError(String),
    /// The method succeeded and its output is ignored (remove-executor hook, isolate,
    /// cleanup).
    Done,
    /// Prepare succeeded; the launch info (if the script wrote one) is applied.
    Launch(Option<ContainerLaunchInfo>),
    /// Prepare or isolate failed: the container launch fails (TASK_FAILED,
    /// REASON_CONTAINER_LAUNCH_FAILED) with this message.
    LaunchFails(String),
    /// Watch answered a limitation: the container is destroyed and its tasks fail.
    Limitation(ContainerLimitation),
    /// Watch gave no limitation (an error, empty or invalid output): the loop waits and runs
    /// the command again. The text is what gets logged, if anything.
    KeepWatching(Option<String>),
    /// Usage: these statistics are merged into `/monitor/statistics`; with a warning, they are
    /// only the timestamp of the call.
    Usage {
        /// The statistics.
        statistics: ResourceStatistics,
        /// Why the script's answer was not used.
        warning: Option<String>,
    },
    /// Cleanup failed: the container's destruction is reported as failed.
    CleanupFails(String),
    /// Resource decorator: the task's (or the agent's) resources become these.
    ReplaceResources(Vec<Resource>),
    /// Attributes decorator: the agent's attributes become these.
    ReplaceAttributes(Vec<Attribute>),
    /// Task status decorator: the update's labels and container status become the answer's.
    DecorateStatus(Box<TaskStatus>),
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::ReplaceLabels(l) => write!(
                f,
                "the task's labels are replaced by {}",
                json::encode_string(l)
            ),
            Verdict::SetEnvironment(e) => write!(
                f,
                "these variables are set in the executor's environment: {}",
                json::encode_string(e)
            ),
            Verdict::HookError(e) => write!(
                f,
                "the hook failed; Mesos logs the error and the task goes on unchanged: {e}"
            ),
            Verdict::Done => f.write_str("success; the output is ignored"),
            Verdict::Launch(None) => {
                f.write_str("the container launches with no change (no launch info)")
            }
            Verdict::Launch(Some(info)) => {
                write!(
                    f,
                    "the container launches with this launch info: {}",
                    json::encode_string(info)
                )?;
                if !info.unsupported.is_empty() {
                    write!(
                        f,
                        " (ignored by mesokit local: {})",
                        info.unsupported.join(", ")
                    )?;
                }
                Ok(())
            }
            Verdict::LaunchFails(m) => write!(
                f,
                "the container launch fails: TASK_FAILED, REASON_CONTAINER_LAUNCH_FAILED, message: {m}"
            ),
            Verdict::Limitation(l) => write!(
                f,
                "limitation: the container is destroyed and its tasks fail: TASK_FAILED, {}, message: {} (answer: {})",
                l.reason_or_default().as_str_name(),
                l.message_or_default(),
                json::encode_string(l)
            ),
            Verdict::KeepWatching(None) => {
                f.write_str("no limitation; the watch loop waits and runs the command again")
            }
            Verdict::KeepWatching(Some(w)) => write!(
                f,
                "no limitation; the watch loop logs this, waits and runs the command again: {w}"
            ),
            Verdict::Usage {
                statistics,
                warning: None,
            } => write!(
                f,
                "merged into /monitor/statistics: {}",
                json::encode_string(statistics)
            ),
            Verdict::Usage {
                statistics,
                warning: Some(w),
            } => write!(
                f,
                "logged: {w}; /monitor/statistics gets only a timestamp: {}",
                json::encode_string(statistics)
            ),
            Verdict::CleanupFails(m) => write!(
                f,
                "cleanup failed; the container's destruction is reported as failed: {m}"
            ),
            Verdict::ReplaceResources(r) => write!(
                f,
                "the resources are replaced by {}",
                json::encode_string(&ResourceList {
                    resources: r.clone()
                })
            ),
            Verdict::ReplaceAttributes(a) => write!(
                f,
                "the agent's attributes are replaced by {}",
                json::encode_string(&AttributeList {
                    attributes: a.clone()
                })
            ),
            Verdict::DecorateStatus(st) => {
                let labels = st
                    .labels
                    .as_ref()
                    .map_or_else(|| "none".to_owned(), json::encode_string);
                let container = st
                    .container_status
                    .as_ref()
                    .map_or_else(|| "none".to_owned(), json::encode_string);
                write!(
                    f,
                    "the status update's labels become {labels} and its container_status {container}"
                )
            }
        }
    }
}

/// What Mesos does with the result of `method`'s command. `now` (seconds since the epoch)
/// is the timestamp of a usage answer that cannot be used.
pub fn interpret(method: Method, result: Result<Outcome, RunError>, now: f64) -> Verdict {
    fn parsed<T: MesosJson>(r: &Result<Outcome, RunError>) -> Result<T, String> {
        match r {
            Ok(o) => parse_output::<T>(&o.output).map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        }
    }
    match method {
        Method::RunTaskLabelDecorator => match parsed::<Labels>(&result) {
            Ok(l) => Verdict::ReplaceLabels(l),
            Err(e) => Verdict::HookError(e),
        },
        Method::ExecutorEnvironmentDecorator => match parsed::<Environment>(&result) {
            Ok(e) => Verdict::SetEnvironment(e),
            Err(e) => Verdict::HookError(e),
        },
        Method::RemoveExecutorHook => match result {
            Ok(_) => Verdict::Done,
            Err(e) => Verdict::HookError(e.to_string()),
        },
        Method::Prepare => match result {
            Err(e) => Verdict::LaunchFails(e.to_string()),
            Ok(o) => match parse_output::<ContainerLaunchInfo>(&o.output) {
                Ok(info) => Verdict::Launch(Some(info)),
                Err(OutputError::Empty) => Verdict::Launch(None),
                Err(e) => {
                    Verdict::LaunchFails(format!("Unable to deserialize ContainerLaunchInfo: {e}"))
                }
            },
        },
        Method::Isolate => match result {
            Ok(_) => Verdict::Done,
            Err(e) => Verdict::LaunchFails(e.to_string()),
        },
        Method::Watch => match result {
            Err(e) => Verdict::KeepWatching(Some(format!("Unable to parse output: {e}"))),
            Ok(o) => match parse_output::<ContainerLimitation>(&o.output) {
                Ok(l) => Verdict::Limitation(l),
                Err(OutputError::Empty) => Verdict::KeepWatching(None),
                Err(e) => Verdict::KeepWatching(Some(format!(
                    "Unable to deserialize ContainerLimitation: {e}"
                ))),
            },
        },
        Method::Usage => {
            let only_timestamp = || ResourceStatistics {
                timestamp: now,
                ..Default::default()
            };
            match result {
                Err(e) => Verdict::Usage {
                    statistics: only_timestamp(),
                    warning: Some(e.to_string()),
                },
                Ok(o) if o.output.is_empty() => Verdict::Usage {
                    statistics: only_timestamp(),
                    warning: Some("Output is empty".into()),
                },
                Ok(o) => match parse_output::<ResourceStatistics>(&o.output) {
                    Ok(s) => Verdict::Usage {
                        statistics: s,
                        warning: None,
                    },
                    Err(e) => Verdict::Usage {
                        statistics: only_timestamp(),
                        warning: Some(format!("Unable to deserialize ResourceStatistics: {e}")),
                    },
                },
            }
        }
        Method::Cleanup => match result {
            Ok(_) => Verdict::Done,
            Err(e) => Verdict::CleanupFails(e.to_string()),
        },
        Method::MasterLaunchTaskLabelDecorator => match parsed::<Labels>(&result) {
            Ok(l) => Verdict::ReplaceLabels(l),
            Err(e) => Verdict::HookError(e),
        },
        Method::MasterLaunchTaskResourceDecorator | Method::ResourcesDecorator => {
            match parsed::<ResourceList>(&result) {
                Ok(l) => Verdict::ReplaceResources(l.resources),
                Err(e) => Verdict::HookError(e),
            }
        }
        Method::AttributesDecorator => match parsed::<AttributeList>(&result) {
            Ok(l) => Verdict::ReplaceAttributes(l.attributes),
            Err(e) => Verdict::HookError(e),
        },
        Method::TaskStatusDecorator => match parsed::<TaskStatus>(&result) {
            Ok(st) => Verdict::DecorateStatus(Box::new(st)),
            Err(e) => Verdict::HookError(e),
        },
        Method::AgentLostHook | Method::PostFetchHook => match result {
            Ok(_) => Verdict::Done,
            Err(e) => Verdict::HookError(e.to_string()),
        },
    }
}

/// Runs `method` of `module` once with `input`, as an agent would, and says what Mesos does
/// with the result (for `mesokit hook test`). A method the module does not configure keeps
/// Mesos's default: `None`.
pub async fn call_once(
    runner: &Runner,
    module: &CommandModule,
    method: Method,
    input: Vec<u8>,
) -> Option<Verdict> {
    let cfg = module.commands.get(&method)?;
    let inv = Invocation::new(label(module, method), &cfg.command, input).with_timeout(cfg.timeout);
    let result = runner.clone().debug(module.debug).run(&inv).await;
    Some(interpret(method, result, now_secs()))
}

/// `[<module>] <method>`: the label that starts every error of the module's commands.
fn label(module: &CommandModule, method: Method) -> String {
    format!("{} ({}) {}", module.mesos_name, module.module_name, method)
}

/// Seconds since the epoch.
pub fn now_secs() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// The hooks and isolators of one agent, with the isolators' per-container state.
#[derive(Debug)]
pub struct CommandModules {
    runner: Runner,
    hooks: Vec<CommandModule>,
    isolators: Vec<Isolator>,
    /// Watch loops by container id string, aborted at cleanup.
    watches: Mutex<HashMap<String, Vec<tokio::task::AbortHandle>>>,
}

#[derive(Debug)]
struct Isolator {
    module: CommandModule,
    /// `<state root>/<module_name>`: one file per container, its ContainerConfig as JSON.
    state_dir: PathBuf,
    containers: Mutex<HashMap<String, ContainerConfig>>,
}

impl Isolator {
    fn known(&self, cid: &str) -> Option<ContainerConfig> {
        self.containers.lock().expect("poisoned").get(cid).cloned()
    }
}

/// A limitation found by a watch loop.
#[derive(Debug, Clone, PartialEq)]
pub struct Limited {
    /// The isolator whose watch command answered.
    pub module: String,
    /// Its answer.
    pub limitation: ContainerLimitation,
}

impl CommandModules {
    /// The modules of `config` (already selected by `--hooks` / `--isolation`). Commands'
    /// temp files go to `runner`'s directory; isolator state goes under `state_root`.
    pub fn new(config: &ModulesConfig, runner: Runner, state_root: &Path) -> Self {
        CommandModules {
            runner,
            hooks: config.hooks.clone(),
            isolators: config
                .isolators
                .iter()
                .map(|m| Isolator {
                    state_dir: state_root.join(&m.module_name),
                    module: m.clone(),
                    containers: Mutex::new(HashMap::new()),
                })
                .collect(),
            watches: Mutex::new(HashMap::new()),
        }
    }

    /// Whether any hook or isolator configures `method`.
    pub fn has(&self, method: Method) -> bool {
        self.hooks
            .iter()
            .chain(self.isolators.iter().map(|i| &i.module))
            .any(|m| m.commands.contains_key(&method))
    }

    /// The runner (and so the temp directory) of the commands.
    pub fn runner(&self) -> &Runner {
        &self.runner
    }

    async fn run(&self, module: &CommandModule, method: Method, input: Vec<u8>) -> Option<Verdict> {
        call_once(&self.runner, module, method, input).await
    }

    // ----- hooks -----

    /// `slaveRunTaskLabelDecorator` of every hook, in `--hooks` order, each seeing the labels
    /// the previous one left. `None`: no hook changed anything.
    pub async fn decorate_labels(
        &self,
        task: &TaskInfo,
        executor: &ExecutorInfo,
        framework: &FrameworkInfo,
        agent: &AgentInfo,
    ) -> Option<Labels> {
        let mut task = task.clone();
        let mut changed = None;
        for hook in &self.hooks {
            let input = label_decorator_input(&task, executor, framework, agent);
            match self.run(hook, Method::RunTaskLabelDecorator, input).await {
                None => {}
                Some(Verdict::ReplaceLabels(labels)) => {
                    task.labels = Some(labels.clone());
                    changed = Some(labels);
                }
                Some(other) => tracing::warn!(
                    module = %hook.mesos_name,
                    task_id = %task.task_id.value,
                    "Agent label decorator hook failed: {other}"
                ),
            }
        }
        changed
    }

    /// `slaveExecutorEnvironmentDecorator` of every hook, in order; each sees the variables
    /// set so far in the executor's command. Returns the variables to set (later ones win).
    pub async fn decorate_environment(&self, executor: &ExecutorInfo) -> Vec<(String, String)> {
        let mut executor = executor.clone();
        let mut set = Vec::new();
        for hook in &self.hooks {
            let input = environment_decorator_input(&executor);
            match self
                .run(hook, Method::ExecutorEnvironmentDecorator, input)
                .await
            {
                None => {}
                Some(Verdict::SetEnvironment(env)) => {
                    let command = executor.command.get_or_insert_with(Default::default);
                    let target = command.environment.get_or_insert_with(Default::default);
                    for v in env.variables {
                        let is_value = v
                            .r#type
                            .is_none_or(|t| t == environment::variable::Type::Value as i32);
                        if !is_value {
                            tracing::warn!(module = %hook.mesos_name, name = %v.name, "environment decorator: only VALUE variables are supported; variable skipped");
                            continue;
                        }
                        let value = v.value.clone().unwrap_or_default();
                        target.variables.retain(|old| old.name != v.name);
                        set.retain(|(n, _): &(String, String)| *n != v.name);
                        set.push((v.name.clone(), value));
                        target.variables.push(v);
                    }
                }
                Some(other) => tracing::warn!(
                    module = %hook.mesos_name,
                    executor_id = %executor.executor_id.value,
                    "Agent environment decorator hook failed: {other}"
                ),
            }
        }
        set
    }

    /// `slaveRemoveExecutorHook` of every hook; errors are logged.
    pub async fn remove_executor(&self, framework: &FrameworkInfo, executor: &ExecutorInfo) {
        for hook in &self.hooks {
            let input = remove_executor_input(framework, executor);
            match self.run(hook, Method::RemoveExecutorHook, input).await {
                None | Some(Verdict::Done) => {}
                Some(other) => tracing::warn!(
                    module = %hook.mesos_name,
                    executor_id = %executor.executor_id.value,
                    "Agent remove executor hook failed: {other}"
                ),
            }
        }
    }

    /// `slaveTaskStatusDecorator` of every hook, in order (mesokit extension): an answer's
    /// labels and container status replace the update's (Mesos copies only those two).
    pub async fn decorate_status(&self, framework_id: &FrameworkId, status: &mut TaskStatus) {
        for hook in &self.hooks {
            let input = task_status_decorator_input(framework_id, status);
            match self.run(hook, Method::TaskStatusDecorator, input).await {
                None => {}
                Some(Verdict::DecorateStatus(answer)) => {
                    status.labels = answer.labels;
                    status.container_status = answer.container_status;
                }
                Some(other) => tracing::warn!(
                    module = %hook.mesos_name,
                    task_id = %status.task_id.value,
                    "Agent task status decorator hook failed: {other}"
                ),
            }
        }
    }

    /// `slaveResourcesDecorator` then `slaveAttributesDecorator` of every hook, at agent
    /// start (mesokit extension): answers replace the agent's resources and attributes.
    pub async fn decorate_agent(&self, agent: &mut AgentInfo) {
        for hook in &self.hooks {
            let input = agent_info_input(agent);
            match self.run(hook, Method::ResourcesDecorator, input).await {
                None => {}
                Some(Verdict::ReplaceResources(r)) => agent.resources = r,
                Some(other) => {
                    tracing::warn!(module = %hook.mesos_name, "Agent resources decorator hook failed: {other}")
                }
            }
        }
        for hook in &self.hooks {
            let input = agent_info_input(agent);
            match self.run(hook, Method::AttributesDecorator, input).await {
                None => {}
                Some(Verdict::ReplaceAttributes(a)) => agent.attributes = a,
                Some(other) => {
                    tracing::warn!(module = %hook.mesos_name, "Agent attributes decorator hook failed: {other}")
                }
            }
        }
    }

    /// `masterLaunchTaskLabelDecorator` of every hook (mesokit extension). `None`: no change.
    pub async fn decorate_master_labels(
        &self,
        task: &TaskInfo,
        framework: &FrameworkInfo,
        agent: &AgentInfo,
    ) -> Option<Labels> {
        let mut task = task.clone();
        let mut changed = None;
        for hook in &self.hooks {
            let input = master_label_decorator_input(&task, framework, agent);
            match self
                .run(hook, Method::MasterLaunchTaskLabelDecorator, input)
                .await
            {
                None => {}
                Some(Verdict::ReplaceLabels(l)) => {
                    task.labels = Some(l.clone());
                    changed = Some(l);
                }
                Some(other) => {
                    tracing::warn!(module = %hook.mesos_name, task_id = %task.task_id.value, "Master label decorator hook failed: {other}")
                }
            }
        }
        changed
    }

    /// `masterLaunchTaskResourceDecorator` of every hook (mesokit extension). `None`: no
    /// change.
    pub async fn decorate_master_resources(
        &self,
        task: &TaskInfo,
        agent_resources: &[Resource],
    ) -> Option<Vec<Resource>> {
        let mut task = task.clone();
        let mut changed = None;
        for hook in &self.hooks {
            let input = master_resource_decorator_input(&task, agent_resources);
            match self
                .run(hook, Method::MasterLaunchTaskResourceDecorator, input)
                .await
            {
                None => {}
                Some(Verdict::ReplaceResources(r)) => {
                    task.resources = r.clone();
                    changed = Some(r);
                }
                Some(other) => {
                    tracing::warn!(module = %hook.mesos_name, task_id = %task.task_id.value, "Master resource decorator hook failed: {other}")
                }
            }
        }
        changed
    }

    /// `masterSlaveLostHook` of every hook (mesokit extension); errors are logged.
    pub async fn agent_lost(&self, agent: &AgentInfo) {
        for hook in &self.hooks {
            if let Some(Verdict::HookError(e)) = self
                .run(hook, Method::AgentLostHook, agent_info_input(agent))
                .await
            {
                tracing::warn!(module = %hook.mesos_name, "Master agent lost hook failed: {e}");
            }
        }
    }

    /// `slavePostFetchHook` of every hook, after the URIs are fetched (mesokit extension);
    /// errors are logged.
    pub async fn post_fetch(&self, container_id: &ContainerId, directory: &Path) {
        let directory = directory.display().to_string();
        for hook in &self.hooks {
            let input = post_fetch_input(container_id, &directory);
            if let Some(Verdict::HookError(e)) = self.run(hook, Method::PostFetchHook, input).await
            {
                tracing::warn!(module = %hook.mesos_name, container_id = %container_id.value, "Agent post fetch hook failed: {e}");
            }
        }
    }

    // ----- isolators -----

    /// `prepare` of every isolator in `--isolation` order. The container is recorded (and
    /// its state file written) before the command runs, so cleanup runs even if prepare
    /// fails. The first failure stops and fails the launch.
    pub async fn prepare(
        &self,
        container_id: &ContainerId,
        config: &ContainerConfig,
    ) -> Result<Vec<ContainerLaunchInfo>, String> {
        let cid = container_id_string(container_id);
        let mut infos = Vec::new();
        for iso in &self.isolators {
            {
                let mut known = iso.containers.lock().expect("poisoned");
                if known.contains_key(&cid) {
                    return Err(format!(
                        "{}: mesos-command-module already initialized for container {cid}",
                        iso.module.mesos_name
                    ));
                }
                known.insert(cid.clone(), config.clone());
            }
            if let Err(e) = write_state(&iso.state_dir, &cid, config) {
                tracing::warn!(module = %iso.module.mesos_name, container_id = %cid, "cannot write the isolator state file: {e}");
            }
            let input = container_input(Some(config), container_id, None);
            match self.run(&iso.module, Method::Prepare, input).await {
                None | Some(Verdict::Launch(None)) => {}
                Some(Verdict::Launch(Some(info))) => {
                    if !info.unsupported.is_empty() {
                        tracing::warn!(module = %iso.module.mesos_name, container_id = %cid, fields = ?info.unsupported, "launch info fields ignored by a local agent");
                    }
                    infos.push(info);
                }
                Some(other) => {
                    let message = match other {
                        Verdict::LaunchFails(m) => m,
                        o => o.to_string(),
                    };
                    return Err(format!("Failed to prepare isolator: {message}"));
                }
            }
        }
        Ok(infos)
    }

    /// `isolate` of every isolator with the executor's pid. The first failure fails the
    /// launch. A container prepare never saw is isolated without `container_config`, as
    /// Criteo does.
    pub async fn isolate(&self, container_id: &ContainerId, pid: u32) -> Result<(), String> {
        let cid = container_id_string(container_id);
        for iso in &self.isolators {
            if !iso.module.commands.contains_key(&Method::Isolate) {
                continue;
            }
            let config = iso.known(&cid);
            if config.is_none() {
                tracing::warn!(module = %iso.module.mesos_name, container_id = %cid, "Missing container info during isolation");
            }
            let input = container_input(config.as_ref(), container_id, Some(pid));
            match self.run(&iso.module, Method::Isolate, input).await {
                None | Some(Verdict::Done) => {}
                Some(Verdict::LaunchFails(m)) => return Err(format!("Failed to isolate: {m}")),
                Some(other) => return Err(format!("Failed to isolate: {other}")),
            }
        }
        Ok(())
    }

    /// Starts the watch loop of every isolator with a watch command: the command runs at
    /// once, then `isolator_watch_frequence` after each run ends, until it answers with a
    /// limitation (passed to `on_limit`, once, for the first isolator that finds one) or
    /// the container is cleaned up.
    pub fn watch(
        self: &Arc<Self>,
        container_id: &ContainerId,
        on_limit: impl FnOnce(Limited) + Send + 'static,
    ) {
        let cid = container_id_string(container_id);
        let on_limit = Arc::new(Mutex::new(Some(on_limit)));
        let mut handles = Vec::new();
        for index in 0..self.isolators.len() {
            let iso = &self.isolators[index];
            if !iso.module.commands.contains_key(&Method::Watch) {
                continue;
            }
            let Some(config) = iso.known(&cid) else {
                tracing::warn!(module = %iso.module.mesos_name, container_id = %cid, "mesos-command-module is not initialized for current container; no watch");
                continue;
            };
            let this = Arc::clone(self);
            let on_limit = Arc::clone(&on_limit);
            let container_id = container_id.clone();
            let cid = cid.clone();
            let task = tokio::spawn(async move {
                let iso = &this.isolators[index];
                let every = iso
                    .module
                    .watch_frequency
                    .unwrap_or(Duration::from_secs(30));
                let input = container_input(Some(&config), &container_id, None);
                loop {
                    let verdict = this.run(&iso.module, Method::Watch, input.clone()).await;
                    if iso.known(&cid).is_none() {
                        tracing::debug!(container_id = %cid, "Terminating watch loop: container cleaned up");
                        return;
                    }
                    match verdict {
                        Some(Verdict::Limitation(limitation)) => {
                            tracing::warn!(module = %iso.module.mesos_name, container_id = %cid, limitation = %json::encode_string(&limitation), "watch reported a limitation");
                            let f = on_limit.lock().expect("poisoned").take();
                            if let Some(f) = f {
                                f(Limited {
                                    module: iso.module.mesos_name.clone(),
                                    limitation,
                                });
                            }
                            return;
                        }
                        Some(Verdict::KeepWatching(Some(w))) => {
                            tracing::warn!(module = %iso.module.mesos_name, container_id = %cid, "{w}")
                        }
                        _ => {}
                    }
                    tokio::time::sleep(every).await;
                }
            });
            handles.push(task.abort_handle());
        }
        if !handles.is_empty() {
            self.watches
                .lock()
                .expect("poisoned")
                .entry(cid)
                .or_default()
                .extend(handles);
        }
    }

    /// `usage` of every isolator with a usage command, merged in order (protobuf merge:
    /// scalars are last-writer-wins, so a script's timestamp is kept). `None` when no
    /// isolator has a usage command. Never fails: a broken answer gives a timestamp-only
    /// entry and a log line; a container an isolator does not know (its `prepare` has not
    /// run yet, or it was cleaned up) is skipped by that isolator with a warning naming it.
    pub async fn usage(&self, container_id: &ContainerId) -> Option<ResourceStatistics> {
        let cid = container_id_string(container_id);
        let mut merged: Option<ResourceStatistics> = None;
        for iso in &self.isolators {
            if !iso.module.commands.contains_key(&Method::Usage) {
                continue;
            }
            let Some(config) = iso.known(&cid) else {
                tracing::warn!(module = %iso.module.mesos_name, container_id = %cid, "mesos-command-module is not initialized for current container (not prepared yet, or unknown); usage skipped");
                continue;
            };
            let input = container_input(Some(&config), container_id, None);
            let Some(Verdict::Usage {
                statistics,
                warning,
            }) = self.run(&iso.module, Method::Usage, input).await
            else {
                continue;
            };
            if let Some(w) = warning {
                tracing::warn!(module = %iso.module.mesos_name, container_id = %cid, "usage: {w}");
            }
            match &mut merged {
                None => merged = Some(statistics),
                Some(m) => {
                    // Merging a message that decoded cannot fail.
                    let _ = m.merge(statistics.encode_to_vec().as_slice());
                }
            }
        }
        merged
    }

    /// `cleanup` of every isolator, in reverse order: the watch loops stop, the container is
    /// forgotten and its state file removed, then the cleanup command (if any) runs. A
    /// container an isolator does not know is skipped (Criteo: prepare never ran). Every
    /// isolator is cleaned up; the failures are joined.
    pub async fn cleanup(&self, container_id: &ContainerId) -> Result<(), String> {
        let cid = container_id_string(container_id);
        if let Some(handles) = self.watches.lock().expect("poisoned").remove(&cid) {
            for h in handles {
                h.abort();
            }
        }
        let mut errors = Vec::new();
        for iso in self.isolators.iter().rev() {
            let Some(config) = iso.containers.lock().expect("poisoned").remove(&cid) else {
                tracing::debug!(module = %iso.module.mesos_name, container_id = %cid, "Missing container info during cleanup, won't call command");
                continue;
            };
            let _ = std::fs::remove_file(iso.state_dir.join(&cid));
            let input = container_input(Some(&config), container_id, None);
            match self.run(&iso.module, Method::Cleanup, input).await {
                None | Some(Verdict::Done) => {}
                Some(Verdict::CleanupFails(m)) => errors.push(m),
                Some(other) => errors.push(other.to_string()),
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "Failed to clean up an isolator when destroying container: {}",
                errors.join("; ")
            ))
        }
    }

    /// Stops every watch loop, keeping the containers and their state files: the agent stops
    /// with its containers still running, and its next run resumes the loops after
    /// [`CommandModules::recover`].
    pub fn stop_watches(&self) {
        for (_, handles) in self.watches.lock().expect("poisoned").drain() {
            for h in handles {
                h.abort();
            }
        }
    }

    /// Reads back the containers of every isolator's state directory (an agent restart).
    /// Returns their ids; a file that does not parse is logged and left alone.
    pub fn recover(&self) -> Vec<ContainerId> {
        let mut found: Vec<ContainerId> = Vec::new();
        for iso in &self.isolators {
            let Ok(dir) = std::fs::read_dir(&iso.state_dir) else {
                continue;
            };
            for entry in dir.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                let read = std::fs::read(entry.path())
                    .map_err(|e| e.to_string())
                    .and_then(|b| json::decode::<ContainerConfig>(&b).map_err(|e| e.to_string()));
                match read {
                    Ok(config) => {
                        iso.containers
                            .lock()
                            .expect("poisoned")
                            .insert(name.clone(), config);
                        if !found.iter().any(|c| container_id_string(c) == name) {
                            found.push(container_id_from_string(&name));
                        }
                    }
                    Err(e) => {
                        tracing::warn!(module = %iso.module.mesos_name, container_id = %name, "Can't restore context for {name}: {e}")
                    }
                }
            }
        }
        found
    }
}

/// The inverse of [`container_id_string`]: `a.b` is `b` with parent `a`.
pub fn container_id_from_string(s: &str) -> ContainerId {
    match s.rsplit_once('.') {
        Some((parent, value)) => ContainerId {
            value: value.to_owned(),
            parent: Some(Box::new(container_id_from_string(parent))),
        },
        None => ContainerId {
            value: s.to_owned(),
            parent: None,
        },
    }
}

/// Writes the state file atomically (temp file + rename), mode 0600.
fn write_state(dir: &Path, cid: &str, config: &ContainerConfig) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(".{cid}.tmp"));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(&json::encode(config))?;
    drop(f);
    std::fs::rename(&tmp, dir.join(cid))
}
