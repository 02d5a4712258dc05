//! From a `TaskInfo` to the process to start: command line, environment, working directory and
//! output, the way the Mesos command executor builds them.

use std::path::{Path, PathBuf};

use mesokit_proto::v1::environment::variable::Type as VarType;
use mesokit_proto::v1::{CommandInfo, TaskInfo};

use crate::process::{CommandSpec, Output};

/// Variables of the executor that its tasks must not see: the executor's credential towards
/// the agent (Mesos erases it from the environment after reading it).
pub const EXECUTOR_ONLY_VARS: &[&str] = &["MESOS_EXECUTOR_AUTHENTICATION_TOKEN"];

/// Prefix of mesokit's own executor settings, which are not the task's business either.
pub const EXECUTOR_ONLY_PREFIX: &str = "MESOKIT_EXECUTOR_";

/// `PATH` when the executor has none, as the Mesos containerizer sets it.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// This process's environment as strings. Variables whose name or value is not Unicode are
/// left out (with a warning) rather than panicking as `std::env::vars` would.
pub fn process_env() -> Vec<(String, String)> {
    std::env::vars_os()
        .filter_map(|(k, v)| match (k.into_string(), v.into_string()) {
            (Ok(k), Ok(v)) => Some((k, v)),
            (k, _) => {
                tracing::warn!(variable = ?k, "environment variable is not Unicode: left out");
                None
            }
        })
        .collect()
}

/// A task the executor cannot run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidTask {
    /// No `TaskInfo.command`, and no command in `TaskInfo.data`.
    #[error(
        "the task has no command (neither TaskInfo.command nor a \"command\" in TaskInfo.data); \
         this executor runs command tasks"
    )]
    NoCommand,
    /// `TaskInfo.data` names a command that cannot be read.
    #[error("TaskInfo.data: {0}")]
    BadDataCommand(String),
    /// `CommandInfo.value` is missing or empty.
    #[error(
        "the task's command has no value: a shell command needs its script, and shell=false \
         needs the program to run"
    )]
    NoValue,
}

/// The key of `TaskInfo.data` (a JSON object) that carries the task's `CommandInfo`, in Mesos
/// JSON, when the task comes with an `ExecutorInfo` naming this executor: Mesos takes a command
/// or an executor, never both, so a framework using `mesokit executor` as a custom executor
/// (as `mesokit run` does for `executor: mesokit`) puts the command here. Other keys of the
/// object (e.g. `before_commands`) are left to their readers.
pub const DATA_COMMAND_KEY: &str = "command";

/// The command in `TaskInfo.data`, if the data is a JSON object with a [`DATA_COMMAND_KEY`].
fn command_from_data(task: &TaskInfo) -> Result<Option<CommandInfo>, InvalidTask> {
    let Some(data) = task.data.as_deref() else {
        return Ok(None);
    };
    if data.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Ok(None);
    }
    let bad = |e: mesokit_proto::json::JsonError| {
        InvalidTask::BadDataCommand(format!("not valid JSON: {e}"))
    };
    let mut p = mesokit_proto::json::Parser::new(data).map_err(bad)?;
    p.begin_object().map_err(bad)?;
    let mut first = true;
    let mut command = None;
    while let Some(key) = p.next_key(&mut first).map_err(bad)? {
        if key == DATA_COMMAND_KEY {
            let mut c = CommandInfo::default();
            mesokit_proto::json::MesosJson::merge_json(&mut c, &mut p).map_err(|e| {
                InvalidTask::BadDataCommand(format!(
                    "`{DATA_COMMAND_KEY}` is not a CommandInfo: {e}"
                ))
            })?;
            command = Some(c);
        } else {
            p.skip_value().map_err(bad)?;
        }
    }
    p.finish().map_err(bad)?;
    Ok(command)
}

/// Where a task lives.
#[derive(Debug, Clone, Copy)]
pub enum Placement<'a> {
    /// Alone, in the executor's sandbox, writing to the executor's stdout/stderr (which the
    /// agent has pointed at the sandbox files): a command task.
    Shared(Option<&'a Path>),
    /// In `<sandbox>/tasks/<task id>/` with its own `stdout` and `stderr` files there, as the
    /// tasks of a group each get a sandbox of their own under the default executor.
    OwnDir(Option<&'a Path>),
}

/// The process for `task`. `executor_env` is the executor's own environment.
///
/// Environment, lowest precedence first: the executor's environment without
/// [`EXECUTOR_ONLY_VARS`] and `MESOKIT_EXECUTOR_*`; `PATH` ([`DEFAULT_PATH`]) if unset;
/// `MESOS_SANDBOX` (the task's own directory for [`Placement::OwnDir`]);
/// `MESOS_ALLOCATION_ROLE` from the task's resources; then the VALUE variables of
/// `CommandInfo.environment`. SECRET variables cannot be resolved by an executor and are left
/// out, with a warning.
pub fn command_spec(
    task: &TaskInfo,
    executor_env: &[(String, String)],
    placement: Placement<'_>,
) -> Result<CommandSpec, InvalidTask> {
    let from_data;
    let command = match &task.command {
        Some(c) => c,
        None => {
            from_data = command_from_data(task)?.ok_or(InvalidTask::NoCommand)?;
            &from_data
        }
    };
    if let Some(user) = &command.user {
        tracing::warn!(
            task_id = %task.task_id.value,
            %user,
            "CommandInfo.user is not supported: the task runs as the executor's user"
        );
    }
    if task.container.is_some() {
        tracing::warn!(
            task_id = %task.task_id.value,
            "TaskInfo.container is not supported: the task runs on the host, in the sandbox"
        );
    }
    let value = command
        .value
        .as_deref()
        .filter(|v| !v.is_empty())
        .ok_or(InvalidTask::NoValue)?;

    let mut env = base_env(executor_env);

    let (cwd, create_cwd, stdout, stderr) = match placement {
        Placement::Shared(sandbox) => (
            sandbox.map(Path::to_path_buf),
            false,
            Output::Inherit,
            Output::Inherit,
        ),
        Placement::OwnDir(Some(sandbox)) => {
            let dir = task_dir(sandbox, &task.task_id.value);
            set(&mut env, "MESOS_SANDBOX", &dir.to_string_lossy());
            (
                Some(dir.clone()),
                true,
                Output::File(dir.join("stdout")),
                Output::File(dir.join("stderr")),
            )
        }
        Placement::OwnDir(None) => (None, false, Output::Inherit, Output::Inherit),
    };

    if let Some(role) = task
        .resources
        .iter()
        .find_map(|r| r.allocation_info.as_ref().and_then(|a| a.role.as_deref()))
    {
        set(&mut env, "MESOS_ALLOCATION_ROLE", role);
    }

    for var in command.environment.iter().flat_map(|e| &e.variables) {
        match var.r#type.map(VarType::try_from) {
            None | Some(Ok(VarType::Value)) => {
                set(&mut env, &var.name, var.value.as_deref().unwrap_or(""));
            }
            _ => tracing::warn!(
                task_id = %task.task_id.value,
                variable = %var.name,
                "environment variable is not of type VALUE (secrets are not supported): left out"
            ),
        }
    }

    let (program, argv0, args) = program_and_args(command, value);

    Ok(CommandSpec {
        program,
        argv0,
        args,
        env,
        cwd,
        create_cwd,
        stdout,
        stderr,
        die_with_parent: true,
    })
}

/// `<sandbox>/tasks/<task id>`, with a task id that cannot climb out of the sandbox.
/// The executor's environment as every process it starts gets it: without
/// [`EXECUTOR_ONLY_VARS`] and `MESOKIT_EXECUTOR_*`, with `PATH` ([`DEFAULT_PATH`]) if unset.
pub(crate) fn base_env(executor_env: &[(String, String)]) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = executor_env
        .iter()
        .filter(|(k, _)| {
            !EXECUTOR_ONLY_VARS.contains(&k.as_str()) && !k.starts_with(EXECUTOR_ONLY_PREFIX)
        })
        .cloned()
        .collect();
    if !env.iter().any(|(k, _)| k == "PATH") {
        env.push(("PATH".into(), DEFAULT_PATH.into()));
    }
    env
}

/// Program, `argv[0]` and arguments of a `CommandInfo` whose value is `value`: `/bin/sh -c
/// value` for a shell command, else `execvp(value, arguments)` with `arguments[0]` as
/// `argv[0]`.
pub(crate) fn program_and_args(
    command: &CommandInfo,
    value: &str,
) -> (String, Option<String>, Vec<String>) {
    if command.shell.unwrap_or(true) {
        (
            "/bin/sh".to_owned(),
            Some("sh".to_owned()),
            vec!["-c".to_owned(), value.to_owned()],
        )
    } else {
        let mut arguments = command.arguments.iter().cloned();
        (value.to_owned(), arguments.next(), arguments.collect())
    }
}

pub fn task_dir(sandbox: &Path, task_id: &str) -> PathBuf {
    let name = match task_id.replace('/', "_") {
        n if n.is_empty() || n == "." || n == ".." => format!("_{n}"),
        n => n,
    };
    tasks_dir(sandbox).join(name)
}

/// The directory holding the tasks' own directories: `<sandbox>/tasks`.
pub fn tasks_dir(sandbox: &Path) -> PathBuf {
    sandbox.join("tasks")
}

pub(crate) fn set(env: &mut Vec<(String, String)>, key: &str, value: &str) {
    match env.iter_mut().find(|(k, _)| k == key) {
        Some(slot) => value.clone_into(&mut slot.1),
        None => env.push((key.to_owned(), value.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mesokit_proto::helpers::{self, TaskBuilder};
    use mesokit_proto::v1::{Environment, Resource, environment, resource};

    fn base() -> Vec<(String, String)> {
        [
            ("PATH", "/bin"),
            ("MESOS_SANDBOX", "/sb"),
            ("MESOS_EXECUTOR_AUTHENTICATION_TOKEN", "secret-jwt"),
            ("MESOKIT_EXECUTOR_HOOKS", "x"),
            ("GREETING", "executor"),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
    }

    fn get<'a>(spec: &'a CommandSpec, key: &str) -> Option<&'a str> {
        spec.env
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn shell_command_in_the_sandbox() {
        let task = TaskBuilder::new("t", "t1", "a")
            .shell("echo $GREETING")
            .env("GREETING", "task")
            .build();
        let spec = command_spec(&task, &base(), Placement::Shared(Some(Path::new("/sb")))).unwrap();
        assert_eq!(spec.program, "/bin/sh");
        assert_eq!(spec.argv0.as_deref(), Some("sh"));
        assert_eq!(spec.args, ["-c", "echo $GREETING"]);
        assert_eq!(spec.cwd.as_deref(), Some(Path::new("/sb")));
        assert_eq!(spec.stdout, Output::Inherit);
        assert_eq!(get(&spec, "GREETING"), Some("task"), "task env wins");
        assert_eq!(get(&spec, "PATH"), Some("/bin"));
        assert_eq!(get(&spec, "MESOS_SANDBOX"), Some("/sb"));
        assert_eq!(get(&spec, "MESOS_EXECUTOR_AUTHENTICATION_TOKEN"), None);
        assert_eq!(get(&spec, "MESOKIT_EXECUTOR_HOOKS"), None);
        assert!(!format!("{spec:?}").contains("secret"));
    }

    #[test]
    fn a_custom_executor_task_carries_its_command_in_data() {
        let mut task = TaskBuilder::new("t", "t1", "a").build();
        task.command = None;
        task.data = Some(
            br#" {"before_commands": [], "command": {"shell": true, "value": "echo $X",
                "environment": {"variables": [{"name": "X", "value": "from-data"}]}}}"#
                .to_vec()
                .into(),
        );
        let spec = command_spec(&task, &base(), Placement::Shared(None)).unwrap();
        assert_eq!(spec.args, ["-c", "echo $X"]);
        assert_eq!(get(&spec, "X"), Some("from-data"));

        task.data = Some(br#"{"command": {"shell": "yes"}}"#.to_vec().into());
        let err = command_spec(&task, &base(), Placement::Shared(None)).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("TaskInfo.data: `command` is not a CommandInfo"),
            "{err}"
        );
        task.data = Some(br#"{"other": 1}"#.to_vec().into());
        assert_eq!(
            command_spec(&task, &base(), Placement::Shared(None)).unwrap_err(),
            InvalidTask::NoCommand
        );
        task.data = Some(b"plain bytes".to_vec().into());
        assert_eq!(
            command_spec(&task, &base(), Placement::Shared(None)).unwrap_err(),
            InvalidTask::NoCommand
        );
    }

    #[test]
    fn exec_command_uses_arguments_0_as_argv0() {
        let mut task = TaskBuilder::new("t", "t1", "a")
            .argv(&["busybox", "echo", "hi"])
            .build();
        task.command.as_mut().unwrap().value = Some("/bin/busybox".into());
        let spec = command_spec(&task, &[], Placement::Shared(None)).unwrap();
        assert_eq!(spec.program, "/bin/busybox");
        assert_eq!(spec.argv0.as_deref(), Some("busybox"));
        assert_eq!(spec.args, ["echo", "hi"]);
        assert_eq!(spec.cwd, None);
        assert_eq!(get(&spec, "PATH"), Some(DEFAULT_PATH));

        let mut bare = TaskBuilder::new("t", "t1", "a").argv(&["true"]).build();
        bare.command.as_mut().unwrap().arguments.clear();
        let spec = command_spec(&bare, &[], Placement::Shared(None)).unwrap();
        assert_eq!(
            (spec.program.as_str(), spec.argv0, spec.args.len()),
            ("true", None, 0)
        );
    }

    #[test]
    fn group_tasks_get_a_directory_of_their_own() {
        let task = TaskBuilder::new("t", "web/1", "a").shell("true").build();
        let spec = command_spec(&task, &base(), Placement::OwnDir(Some(Path::new("/sb")))).unwrap();
        let dir = Path::new("/sb/tasks/web_1");
        assert_eq!(spec.cwd.as_deref(), Some(dir));
        assert!(spec.create_cwd);
        assert_eq!(spec.stdout, Output::File(dir.join("stdout")));
        assert_eq!(spec.stderr, Output::File(dir.join("stderr")));
        assert_eq!(get(&spec, "MESOS_SANDBOX"), Some("/sb/tasks/web_1"));
        assert_eq!(task_dir(Path::new("/sb"), ".."), Path::new("/sb/tasks/_.."));
    }

    #[test]
    fn role_and_secrets() {
        let mut task = TaskBuilder::new("t", "t1", "a").shell("true").build();
        task.resources.push(Resource {
            allocation_info: Some(resource::AllocationInfo {
                role: Some("analytics".into()),
            }),
            ..helpers::cpus(1.0)
        });
        task.command.as_mut().unwrap().environment = Some(Environment {
            variables: vec![
                environment::Variable {
                    name: "PASSWORD".into(),
                    r#type: Some(environment::variable::Type::Secret as i32),
                    ..Default::default()
                },
                environment::Variable {
                    name: "PLAIN".into(),
                    value: Some("1".into()),
                    ..Default::default()
                },
            ],
        });
        let spec = command_spec(&task, &[], Placement::Shared(None)).unwrap();
        assert_eq!(get(&spec, "MESOS_ALLOCATION_ROLE"), Some("analytics"));
        assert_eq!(get(&spec, "PASSWORD"), None);
        assert_eq!(get(&spec, "PLAIN"), Some("1"));
    }

    #[test]
    fn invalid_tasks() {
        let mut task = TaskBuilder::new("t", "t1", "a").build();
        assert_eq!(
            command_spec(&task, &[], Placement::Shared(None)),
            Err(InvalidTask::NoCommand)
        );
        task.command = Some(helpers::shell(""));
        assert_eq!(
            command_spec(&task, &[], Placement::Shared(None)),
            Err(InvalidTask::NoValue)
        );
    }
}
