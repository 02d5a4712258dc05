//! A declarative Mesos scheduler: describe task groups (instances, resources, restart policy,
//! constraints) and let the engine keep them running.
//!
//! * [`admin`]: the opt-in admin HTTP API and Prometheus metrics.
//! * [`spec`]: job specs in YAML/JSON or built in Rust, with errors that point at the line.
//! * [`offers`]: exact resource maths for carving tasks out of offers.
//! * [`constraints`]: placement constraints (UNIQUE, CLUSTER, GROUP_BY, LIKE, UNLIKE, MAX_PER).
//! * [`core`]: the scheduler as a state machine with no IO (events and time in, calls, store
//!   writes and task events out).
//! * [`driver`]: runs the core against a Mesos master through `mesokit-client`.
//! * [`health`]: framework-side HTTP health checks (grace count, status codes, body, properties).
//! * [`store`]: where the framework id and task records survive restarts.
//! * [`zk`]: a ZooKeeper client, leader election and Mesos master detection.
//! * [`ha`]: `--store` parsing, and several instances sharing a ZooKeeper store with one
//!   leader.

pub mod admin;
pub mod constraints;
pub mod core;
pub mod driver;
pub mod ha;
pub mod health;
pub mod offers;
pub mod spec;
pub mod store;
pub mod zk;
