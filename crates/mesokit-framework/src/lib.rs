//! A declarative Mesos scheduler: describe task groups (instances, resources, restart policy,
//! constraints) and let the engine keep them running.
//!
//! * [`store`]: where the framework id and task records survive restarts.

pub mod store;
