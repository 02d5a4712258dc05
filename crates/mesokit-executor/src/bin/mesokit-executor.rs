//! `mesokit-executor`: the executor of `mesokit executor` as a small binary of its own, for
//! agents that care about the memory every executor adds to its task (see
//! `docs/benchmarks.md`, executor footprint). Same behaviour and settings (`MESOS_*` and
//! `MESOKIT_EXECUTOR_*`, see `mesokit_executor::config`), no command-line options, the
//! system allocator, a plain log (`executor.log` in the sandbox, see `mesokit_executor::log`)
//! whose level is `RUST_LOG` (a bare level only).

use std::process::ExitCode;

use mesokit_client::executor::ExecutorConfig;
use mesokit_executor::{Settings, config, launch, log, process, run};

fn main() -> ExitCode {
    match main_inner() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("mesokit-executor: {e}");
            ExitCode::FAILURE
        }
    }
}

fn main_inner() -> Result<(), String> {
    let thp = process::disable_huge_pages();
    process::trim_code_pages();
    // The executor's own log: `executor.log` in the sandbox (or MESOKIT_EXECUTOR_LOG_FILE).
    let file = log::LogTarget::from_env(|k| std::env::var(k).ok()).open()?;
    let _ = tracing::subscriber::set_global_default(log::PlainLog::new(
        log::PlainLog::level_from_env(),
        file,
    ));
    if let Err(e) = thp {
        tracing::debug!(error = %e, "cannot opt out of transparent huge pages");
    }
    let env = launch::process_env();
    let exec_config = ExecutorConfig::from_vars(env.clone()).map_err(|e| e.to_string())?;
    let mut settings = Settings::from_config(&exec_config);
    config::apply(&mut settings, &env)?;
    settings.executor_env = env;
    tracing::info!(
        framework_id = %exec_config.framework_id.value,
        executor_id = %exec_config.executor_id.value,
        agent = %exec_config.agent_url,
        "mesokit-executor starting"
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    runtime
        .block_on(run(exec_config, settings))
        .map_err(|e| e.to_string())
}
