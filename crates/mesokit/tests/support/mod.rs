//! Helpers shared by the CLI's integration tests.

#![allow(dead_code, unreachable_pub)]

/// The fake agent lives with the executor runtime's tests; one copy serves both crates.
#[path = "../../../mesokit-executor/tests/support/fake_agent.rs"]
pub mod fake_agent;
