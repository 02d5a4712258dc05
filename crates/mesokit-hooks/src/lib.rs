//! Hook events, the external-command runner and built-in hooks.
//!
//! Today this crate holds the [`runner`]: it runs an external command with the
//! Criteo `mesos-command-modules` contract (`<cmd> <input> <output> <error>`, the
//! input also on stdin, a timeout that kills the whole process group). The executor
//! and the local agent's command modules share it. [`modules`] reads Criteo's
//! `modules.json` (the agent's `--modules` value) into typed hook and isolator modules.
//! [`mesos`] is the JSON exchanged with the scripts, and [`agent`] runs the hooks and
//! isolators at an agent's hook and isolator points.
//! [`events`] names the executor's hook events (before_task_start, after_task_start,
//! task_healthy, before_terminate) and [`builtin`] the executor's built-in hooks (an
//! external command through the runner, Consul, an HTTP webhook, VaaS) and their chain.
//! [`proctree`] lists a process tree as Mesos's `killtree` reaches it: the runner's
//! timeout, the executor's kill and the local agent's clean-up all kill through it.
//! [`spawn`] starts a process (`clone(CLONE_VM | CLONE_VFORK)`, cheaper than
//! `posix_spawn`, with a session or group of its own): the runner's commands and the
//! executor's tasks are started through it.

pub mod agent;
pub mod builtin;
pub mod events;
pub mod mesos;
pub mod modules;
pub mod proctree;
pub mod runner;
pub mod spawn;

pub use runner::{DEFAULT_TIMEOUT, ExitKind, Invocation, Outcome, RunError, Runner};
