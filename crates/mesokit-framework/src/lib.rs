//! A declarative Mesos scheduler: describe task groups (instances, resources, restart policy,
//! constraints) and let the engine keep them running.
//!
//! * [`store`]: where the framework id and task records survive restarts.
//! * [`zk`]: a ZooKeeper client, leader election and Mesos master detection.

pub mod store;
pub mod zk;
