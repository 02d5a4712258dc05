//! `mesokit executor`: the Mesos command executor. An agent starts it with the `MESOS_*`
//! environment; it subscribes, runs the task it is given, reports its states and exits.
//! Operator settings (hooks, before/after commands, task API, log rotation) come from
//! `MESOKIT_EXECUTOR_*` variables and `MESOKIT_EXECUTOR_CONFIG` (`mesokit_executor::config`).

use std::process::ExitCode;
use std::time::Duration;

use mesokit_client::executor::ExecutorConfig;
use mesokit_executor::Settings;
use mesokit_proto::helpers::parse_duration;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Grace period between SIGTERM and SIGKILL when neither the KILL nor the task has a
    /// kill policy (a Mesos duration: 3secs, 500ms, …).
    #[arg(long, default_value = "3secs", value_parser = duration)]
    default_grace: Duration,
    /// How long to wait for the agent to acknowledge the terminal status updates before
    /// exiting anyway.
    #[arg(long, default_value = "5secs", value_parser = duration)]
    ack_timeout: Duration,
}

fn duration(s: &str) -> Result<Duration, String> {
    parse_duration(s).map_err(|e| e.to_string())
}

pub(crate) fn run(args: Args) -> Result<ExitCode, String> {
    // Every 2 MiB huge page touched would count in full against the task's memory, for a heap
    // of a few hundred KiB. mimalloc is built without its MADV_HUGEPAGE (`no_thp`); this keeps
    // anything else from bringing them back (docs/benchmarks.md, executor footprint).
    let thp = mesokit_executor::process::disable_huge_pages();
    // Only the code really run stays resident (see trim_code_pages): the CLI binary is large.
    mesokit_executor::process::trim_code_pages();
    init_logging()?;
    if let Err(e) = thp {
        tracing::debug!(error = %e, "cannot opt out of transparent huge pages");
    }
    // Read once, without panicking on a variable that is not Unicode.
    let env = mesokit_executor::launch::process_env();
    let config = ExecutorConfig::from_vars(env.clone()).map_err(|e| e.to_string())?;
    let mut settings = Settings::from_config(&config);
    settings.executor_env = env;
    settings.default_grace = args.default_grace;
    settings.ack_timeout = args.ack_timeout;
    // Hooks, before/after commands, the task API and log rotation: MESOKIT_EXECUTOR_* and
    // the file in MESOKIT_EXECUTOR_CONFIG (see mesokit_executor::config).
    let env = settings.executor_env.clone();
    mesokit_executor::config::apply(&mut settings, &env)?;
    tracing::info!(
        framework_id = %config.framework_id.value,
        executor_id = %config.executor_id.value,
        agent = %config.agent_url,
        "mesokit executor starting"
    );
    // One thread: an executor waits on one agent and a few processes, and its footprint is
    // charged to every task.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    runtime
        .block_on(mesokit_executor::run(config, settings))
        .map_err(|e| e.to_string())?;
    Ok(ExitCode::SUCCESS)
}

/// Logs plain text to `executor.log` in the sandbox, apart from the task's output (or where
/// MESOKIT_EXECUTOR_LOG_FILE says, `-` = stderr; see `mesokit_executor::log`): INFO and up,
/// or what `RUST_LOG` says when it is set and not empty.
fn init_logging() -> Result<(), String> {
    use mesokit_executor::log::LogTarget;
    use tracing_subscriber::EnvFilter;
    use tracing_subscriber::filter::LevelFilter;
    let file = LogTarget::from_env(|k| std::env::var(k).ok()).open()?;
    let filter = match std::env::var("RUST_LOG") {
        Ok(v) if !v.trim().is_empty() => EnvFilter::new(v),
        _ => EnvFilter::default().add_directive(LevelFilter::INFO.into()),
    };
    let builder = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_env_filter(filter);
    let _ = match file {
        Some(f) => builder.with_writer(std::sync::Mutex::new(f)).try_init(),
        None => builder.with_writer(std::io::stderr).try_init(),
    };
    Ok(())
}
