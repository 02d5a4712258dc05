//! The agent's side of Criteo command modules: where the hooks and isolators of
//! [`mesokit_hooks::agent::CommandModules`] are called, and how their answers change a launch
//! (labels, environment, pre-exec commands, working directory).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use mesokit_hooks::agent::CommandModules;
use mesokit_hooks::mesos::ContainerConfig;
use mesokit_hooks::modules::Method;
use mesokit_proto::v1::{self, ContainerId, ExecutorInfo, TaskInfo, environment};

use super::core::command_executor_info;
use super::{AgentConfig, launcher};
use crate::messages::ToAgent;

/// Whether `msg` carries tasks for the label decorator hooks.
pub(super) fn decorates(m: &CommandModules, msg: &ToAgent) -> bool {
    matches!(msg, ToAgent::RunTask { .. } | ToAgent::RunTaskGroup { .. })
        && m.has(Method::RunTaskLabelDecorator)
}

/// Runs the label decorator hooks on every task of `msg` (a RunTask or RunTaskGroup); an
/// answer replaces the task's labels. Errors are logged by the hooks and change nothing.
pub(super) async fn decorate_labels(
    m: &CommandModules,
    config: &AgentConfig,
    msg: ToAgent,
) -> ToAgent {
    let agent = config.agent_info();
    match msg {
        ToAgent::RunTask {
            framework,
            executor,
            mut task,
        } => {
            let fid = framework.id.clone().unwrap_or_default();
            let exec = executor
                .clone()
                .unwrap_or_else(|| command_executor_info(&fid, &task, &config.command_executor));
            if let Some(labels) = m.decorate_labels(&task, &exec, &framework, &agent).await {
                task.labels = Some(labels);
            }
            ToAgent::RunTask {
                framework,
                executor,
                task,
            }
        }
        ToAgent::RunTaskGroup {
            framework,
            executor,
            mut group,
        } => {
            for task in &mut group.tasks {
                if let Some(labels) = m.decorate_labels(task, &executor, &framework, &agent).await {
                    task.labels = Some(labels);
                }
            }
            ToAgent::RunTaskGroup {
                framework,
                executor,
                group,
            }
        }
        other => other,
    }
}

/// A container about to be launched.
pub(super) struct Container<'a> {
    pub(super) id: &'a ContainerId,
    pub(super) executor: &'a ExecutorInfo,
    pub(super) task: Option<TaskInfo>,
    pub(super) resources: Vec<v1::Resource>,
    pub(super) user: String,
    pub(super) directory: &'a Path,
}

/// Before the executor starts (the sandbox exists, the URIs are fetched): the post-fetch
/// hooks, the environment decorator hooks, then the isolators' `prepare` (whose launch infos
/// add variables, run pre-exec commands and may move the working directory). Returns the
/// working directory; an error fails the launch.
pub(super) async fn before_spawn(
    m: &CommandModules,
    c: Container<'_>,
    env: &mut Vec<(String, String)>,
) -> Result<PathBuf, String> {
    if m.has(Method::PostFetchHook) {
        m.post_fetch(c.id, c.directory).await;
    }
    if m.has(Method::ExecutorEnvironmentDecorator) {
        for (name, value) in m.decorate_environment(c.executor).await {
            launcher::set(env, &name, value);
        }
    }
    let config = ContainerConfig {
        executor_info: Some(c.executor.clone()),
        task_info: c.task,
        command_info: c.executor.command.clone().unwrap_or_default(),
        resources: c.resources,
        directory: c.directory.display().to_string(),
        user: (!c.user.is_empty()).then_some(c.user),
    };
    let infos = m.prepare(c.id, &config).await?;
    let mut cwd = c.directory.to_owned();
    for info in &infos {
        if let Some(e) = &info.environment {
            for v in &e.variables {
                let is_value = v
                    .r#type
                    .is_none_or(|t| t == environment::variable::Type::Value as i32);
                if is_value {
                    launcher::set(env, &v.name, v.value.clone().unwrap_or_default());
                }
            }
        }
        if let Some(dir) = &info.working_directory {
            // Relative to the sandbox, as the container's working directory would be.
            cwd = c.directory.join(dir);
        }
    }
    for info in &infos {
        for pre in &info.pre_exec_commands {
            run_pre_exec(pre, env, c.directory).await?;
        }
    }
    Ok(cwd)
}

/// Runs one pre-exec command in the sandbox with the executor's environment, output into the
/// sandbox's `stdout`/`stderr`; a failure fails the launch, as in Mesos's launcher.
async fn run_pre_exec(
    command: &v1::CommandInfo,
    env: &[(String, String)],
    sandbox: &Path,
) -> Result<(), String> {
    let shown = command.value.clone().unwrap_or_default();
    let mut child = launcher::spawn(command, env, sandbox, sandbox)
        .map_err(|e| format!("Failed to execute pre-exec command '{shown}': {e}"))?;
    let pid = child.id();
    let status = child.wait().await;
    if let Some(pid) = pid {
        // Nothing a pre-exec command starts outlives it.
        launcher::kill_group(pid, launcher::SIGKILL);
    }
    match status {
        Ok(s) if s.success() => Ok(()),
        Ok(s) => Err(format!("Failed to execute pre-exec command '{shown}': {s}")),
        Err(e) => Err(format!("Failed to execute pre-exec command '{shown}': {e}")),
    }
}

/// The isolators' cleanup; a failure is logged (Mesos counts it as a failed destroy, the
/// tasks' updates go out regardless).
pub(super) async fn cleanup(m: &CommandModules, id: &ContainerId) {
    if let Err(e) = m.cleanup(id).await {
        tracing::warn!(container_id = %id.value, "{e}");
    }
}

/// At agent start: reads back the isolators' per-container state. The containers in `known`
/// were recovered with their executors (the caller resumes their watch loops); every other
/// one is an orphan of an earlier run (its executor is gone or not checkpointed): its
/// isolators are cleaned up (cleanup command, state file removed), in the background, as
/// Mesos's containerizer destroys orphans.
pub(super) fn recover(m: Arc<CommandModules>, known: &std::collections::BTreeSet<String>) {
    let orphans: Vec<ContainerId> = m
        .recover()
        .into_iter()
        .filter(|c| !known.contains(&mesokit_hooks::mesos::container_id_string(c)))
        .collect();
    if orphans.is_empty() {
        return;
    }
    tracing::info!(
        containers = orphans.len(),
        "command isolators: cleaning up containers of an earlier run"
    );
    tokio::spawn(async move {
        for id in orphans {
            cleanup(&m, &id).await;
        }
    });
}
