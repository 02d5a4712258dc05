//! The executor as a binary of its own, with nothing but the runtime: no CLI parser, no log
//! output, the system allocator. For comparing footprints with `mesokit executor`
//! (`docs/benchmarks.md`); arguments are ignored.

use std::process::ExitCode;

use mesokit_client::executor::ExecutorConfig;
use mesokit_executor::{Settings, launch, process, run};

fn main() -> ExitCode {
    let _ = process::disable_huge_pages();
    let env = launch::process_env();
    let config = match ExecutorConfig::from_vars(env.clone()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("standalone executor: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut settings = Settings::from_config(&config);
    settings.executor_env = env;
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("standalone executor: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(config, settings)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("standalone executor: {e}");
            ExitCode::FAILURE
        }
    }
}
