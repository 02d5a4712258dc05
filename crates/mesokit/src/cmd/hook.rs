//! `mesokit hook test`: runs one method of a configured Criteo command module against a
//! sample input (built in for every method, or read from a file) and prints what Mesos would
//! do with the answer. For trying scripts before an agent calls them.

use std::path::PathBuf;
use std::process::ExitCode;

use mesokit_hooks::agent::{Verdict, call_once};
use mesokit_hooks::mesos::{
    ContainerConfig, agent_info_input, container_input, environment_decorator_input,
    label_decorator_input, master_label_decorator_input, master_resource_decorator_input,
    post_fetch_input, remove_executor_input, task_status_decorator_input,
};
use mesokit_hooks::modules::{self, Method};
use mesokit_hooks::runner::Runner;
use mesokit_proto::helpers::{self, TaskBuilder};
use mesokit_proto::v1::{
    AgentId, AgentInfo, ContainerId, FrameworkId, FrameworkInfo, Label, Labels, TaskState,
    TaskStatus, task_status,
};

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(subcommand)]
    command: HookCommand,
}

#[derive(Debug, clap::Subcommand)]
enum HookCommand {
    /// Run one method of a module against a sample input and print what Mesos would do with
    /// the answer.
    Test(TestArgs),
}

#[derive(Debug, clap::Args)]
struct TestArgs {
    /// The modules configuration: a modules.json path or inline JSON (as `mesokit local
    /// --modules`).
    #[arg(long)]
    modules: String,
    /// The module: its Mesos name (com_criteo_mesos_CommandHook2) or its module_name. May be
    /// left out when only one module configures the method.
    #[arg(long)]
    module: Option<String>,
    /// The method: its Mesos name (slaveRunTaskLabelDecorator, slaveExecutorEnvironmentDecorator,
    /// slaveRemoveExecutorHook, prepare, isolate, watch, usage, cleanup, and mesokit's extra
    /// hooks masterLaunchTaskLabelDecorator, masterLaunchTaskResourceDecorator,
    /// slaveTaskStatusDecorator, slaveResourcesDecorator, slaveAttributesDecorator,
    /// masterSlaveLostHook, slavePostFetchHook) or its key prefix
    /// (hook_slave_run_task_label_decorator, isolator_prepare, …).
    #[arg(long)]
    method: String,
    /// Input JSON file instead of the built-in sample.
    #[arg(long)]
    input: Option<PathBuf>,
    /// Directory for the command's temp files (default: the system temp directory).
    #[arg(long)]
    tmp_dir: Option<PathBuf>,
    /// Print the input before running.
    #[arg(long)]
    show_input: bool,
}

pub(crate) fn run(args: Args) -> Result<ExitCode, String> {
    match args.command {
        HookCommand::Test(t) => test(t),
    }
}

fn parse_method(s: &str) -> Result<Method, String> {
    Method::ALL
        .into_iter()
        .find(|m| m.mesos_name() == s || m.key_prefix() == s)
        .ok_or_else(|| {
            let names: Vec<&str> = Method::ALL.iter().map(|m| m.mesos_name()).collect();
            format!(
                "--method: unknown method \"{s}\"; use one of {}",
                names.join(", ")
            )
        })
}

fn test(args: TestArgs) -> Result<ExitCode, String> {
    let method = parse_method(&args.method)?;
    let cfg = modules::parse(&args.modules).map_err(|e| format!("--modules: {e}"))?;
    let candidates: Vec<&modules::CommandModule> = cfg
        .hooks
        .iter()
        .chain(&cfg.isolators)
        .filter(|m| match &args.module {
            Some(n) => m.mesos_name == *n || m.module_name == *n,
            None => true,
        })
        .collect();
    if candidates.is_empty() {
        return Err(format!(
            "--module: no module named \"{}\" in --modules",
            args.module.as_deref().unwrap_or("")
        ));
    }
    let with_method: Vec<_> = candidates
        .iter()
        .filter(|m| m.commands.contains_key(&method))
        .collect();
    let module = match with_method.as_slice() {
        [one] => **one,
        [] => {
            return Err(format!(
                "no {} command configured{}: add \"{}_command\" to the module's parameters (without it Mesos keeps its default behaviour)",
                method,
                args.module
                    .as_deref()
                    .map(|m| format!(" in module \"{m}\""))
                    .unwrap_or_default(),
                method.key_prefix()
            ));
        }
        many => {
            let names: Vec<&str> = many.iter().map(|m| m.mesos_name.as_str()).collect();
            return Err(format!(
                "several modules configure {method} ({}); pick one with --module",
                names.join(", ")
            ));
        }
    };
    let input = match &args.input {
        Some(path) => std::fs::read(path)
            .map_err(|e| format!("--input: cannot read {}: {e}", path.display()))?,
        None => sample_input(method),
    };
    let cmd = &module.commands[&method];
    println!(
        "module: {} (module_name {})",
        module.mesos_name, module.module_name
    );
    println!("method: {method}");
    println!(
        "command: {} (timeout {}s)",
        cmd.command,
        cmd.timeout.as_secs()
    );
    if args.show_input {
        println!("input: {}", String::from_utf8_lossy(&input));
    }
    let runner = Runner::new(args.tmp_dir.unwrap_or_else(std::env::temp_dir));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    let verdict = rt
        .block_on(call_once(&runner, module, method, input))
        .expect("the method is configured");
    println!("result: {verdict}");
    let failed = matches!(
        verdict,
        Verdict::HookError(_)
            | Verdict::LaunchFails(_)
            | Verdict::CleanupFails(_)
            | Verdict::KeepWatching(Some(_))
            | Verdict::Usage {
                warning: Some(_),
                ..
            }
    );
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// A sample input for `method`, shaped as an agent would send it for a small command task.
pub(crate) fn sample_input(method: Method) -> Vec<u8> {
    let framework_id = FrameworkId {
        value: "3f0a9c2e-sample-0000".into(),
    };
    let framework = FrameworkInfo {
        user: "root".into(),
        name: "sample-framework".into(),
        id: Some(framework_id.clone()),
        ..Default::default()
    };
    let agent = AgentInfo {
        hostname: "localhost".into(),
        port: Some(5051),
        resources: vec![helpers::cpus(4.0), helpers::mem(8192.0)],
        id: Some(AgentId {
            value: "3f0a9c2e-sample-S0".into(),
        }),
        ..Default::default()
    };
    let mut task = TaskBuilder::new("sample-task", "sample-task", "3f0a9c2e-sample-S0")
        .cpus(0.5)
        .mem(128.0)
        .shell("sleep 100")
        .build();
    task.labels = Some(Labels {
        labels: vec![Label {
            key: "team".into(),
            value: Some("sample".into()),
        }],
    });
    let executor = mesokit_local::agent::command_executor_info(
        &framework_id,
        &task,
        &["/usr/bin/mesokit".into(), "executor".into()],
    );
    let container_id = ContainerId {
        value: "6d4b664d-615a-4a5c-b4a7-37b41d435c82".into(),
        parent: None,
    };
    let mut resources = executor.resources.clone();
    resources.extend(task.resources.iter().cloned());
    let config = ContainerConfig {
        executor_info: Some(executor.clone()),
        task_info: Some(task.clone()),
        command_info: executor.command.clone().unwrap_or_default(),
        resources,
        directory: format!(
            "/var/lib/mesos/slaves/3f0a9c2e-sample-S0/frameworks/{}/executors/sample-task/runs/{}",
            framework_id.value, container_id.value
        ),
        user: Some("root".into()),
    };
    match method {
        Method::RunTaskLabelDecorator => {
            label_decorator_input(&task, &executor, &framework, &agent)
        }
        Method::ExecutorEnvironmentDecorator => environment_decorator_input(&executor),
        Method::RemoveExecutorHook => remove_executor_input(&framework, &executor),
        Method::Isolate => container_input(Some(&config), &container_id, Some(4242)),
        Method::Prepare | Method::Watch | Method::Usage | Method::Cleanup => {
            container_input(Some(&config), &container_id, None)
        }
        Method::MasterLaunchTaskLabelDecorator => {
            master_label_decorator_input(&task, &framework, &agent)
        }
        Method::MasterLaunchTaskResourceDecorator => {
            master_resource_decorator_input(&task, &agent.resources)
        }
        Method::TaskStatusDecorator => {
            let status = TaskStatus {
                task_id: task.task_id.clone(),
                state: TaskState::TaskRunning as i32,
                source: Some(task_status::Source::Executor as i32),
                executor_id: Some(executor.executor_id.clone()),
                ..Default::default()
            };
            task_status_decorator_input(&framework_id, &status)
        }
        Method::ResourcesDecorator | Method::AttributesDecorator | Method::AgentLostHook => {
            agent_info_input(&agent)
        }
        Method::PostFetchHook => post_fetch_input(&container_id, &config.directory),
    }
}
