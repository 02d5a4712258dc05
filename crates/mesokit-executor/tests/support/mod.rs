//! Helpers shared by the executor's integration tests (this crate's and the CLI's: the CLI's
//! `tests/support` includes `fake_agent.rs` from here by path).

#![allow(dead_code, unreachable_pub)]

pub mod fake_agent;
