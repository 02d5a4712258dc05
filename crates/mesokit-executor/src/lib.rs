//! The executor runtime: runs the tasks an agent hands to a Mesos executor, reports their
//! states, and kills them gracefully.
//!
//! * [`process`]: start a task in a session of its own; signal its whole tree; graceful kill
//!   (SIGTERM, SIGKILL after a grace period, done as soon as it is reaped).
//! * [`launch`]: from a `TaskInfo` to the process to start (command line, environment,
//!   sandbox), as the Mesos command executor builds it.
//! * [`supervisor`]: the executor's rules as a state machine with no IO (events, exits and
//!   time in; processes, signals and status updates out).
//! * [`health`]: health checks and general checks: when to probe and what a result means
//!   (no IO), the HTTP, TCP and COMMAND probes, and the status updates they give.
//! * [`commands`]: before and after commands around a task's own (Cook's design).
//! * [`api`]: the task HTTP API (progress, message, environment, exit statuses).
//! * [`progress`]: optional progress regex over the task's `stdout`, `stderr` and progress
//!   file (Cook's design), reported as the task API reports progress.
//! * [`rotate`]: optional size-based rotation of the tasks' `stdout`/`stderr`.
//! * [`config`]: the operator's settings (`MESOKIT_EXECUTOR_*`, a JSON file).
//! * [`run`]: the async driver that connects them to the agent through
//!   [`mesokit_client::executor`].
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use mesokit_client::executor::ExecutorConfig;
//! use mesokit_executor::{Settings, run};
//!
//! let config = ExecutorConfig::from_env()?;
//! let settings = Settings::from_config(&config);
//! run(config, settings).await?;
//! # Ok(()) }
//! ```

pub mod api;
pub mod commands;
pub mod config;
pub mod health;
pub mod launch;
pub mod log;
pub mod process;
pub mod progress;
pub mod rotate;
mod runtime;
mod sequence;
pub mod supervisor;

pub use runtime::{Error, run};
pub use supervisor::{Action, ProbeKind, ProbeResult, Settings, Supervisor};
