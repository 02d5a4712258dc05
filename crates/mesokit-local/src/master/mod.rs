//! The master: its bookkeeping as a state machine ([`Master`], no IO) and its HTTP front.
//!
//! * `core`: [`Master`] — frameworks and their subscriptions, agents, tasks, status updates,
//!   reconciliation, time.
//! * `allocator`: offers — the allocation cycle, refusal filters, declines and rescinds.
//! * `accept`: ACCEPT — offer validation, LAUNCH / LAUNCH_GROUP, task and executor bookkeeping.
//! * `validation`: Mesos's checks of scheduler calls, `FrameworkInfo` and tasks.
//! * `actor`: the task that owns the [`Master`], ticks it and carries out its outputs.
//! * `http`: the scheduler API and read endpoints on the master's listener.
//! * `operator`: the v1 operator API's `GET_*` payloads.
//! * `state_json`: the v0 JSON of `/master/state`, `/master/frameworks`, `/master/tasks` and
//!   the `master/*` metrics.

mod accept;
pub(crate) mod actor;
mod allocator;
mod core;
pub mod http;
mod operator;
mod state_json;
mod validation;

#[cfg(test)]
mod tests;

pub use self::core::{
    CallError, CallOk, MESOS_VERSION, Master, MasterConfig, Output, StreamId, Subscribed,
};
