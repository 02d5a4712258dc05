//! Hook events, the external-command runner and built-in hooks.
//!
//! Today this crate holds the [`runner`]: it runs an external command with the
//! Criteo `mesos-command-modules` contract (`<cmd> <input> <output> <error>`, the
//! input also on stdin, a timeout that kills the whole process group). The executor
//! and the local agent's command modules share it. [`modules`] reads Criteo's
//! `modules.json` (the agent's `--modules` value) into typed hook and isolator modules.

pub mod modules;
pub mod runner;

pub use runner::{DEFAULT_TIMEOUT, ExitKind, Invocation, Outcome, RunError, Runner};
