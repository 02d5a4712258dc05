//! Helpers shared by the CLI's integration tests.

#![allow(dead_code, unreachable_pub)]

pub mod fake_agent;
