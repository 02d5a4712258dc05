//! A Mesos-compatible master and agents in one process, for one machine.
//!
//! `mesokit local` (and [`cluster::LocalCluster`] for tests) starts a master and N agents on
//! 127.0.0.1, each with its own HTTP listener, speaking the real v1 APIs: schedulers subscribe on
//! the master's `/api/v1/scheduler`, executors on their agent's `/api/v1/executor`, tools read
//! `/state`. Any Mesos framework or executor runs against it unchanged; production is real Mesos.
//!
//! Layout:
//! * [`master`]: the master's bookkeeping as a state machine with no IO ([`master::Master`]:
//!   frameworks, offers, tasks, filters, allocation), and its HTTP front.
//! * [`agent`]: an agent: executor processes, sandboxes, the executor API, and the status-update
//!   manager (again a state machine with no IO at its core).
//! * [`messages`]: what the master and agents say to each other (in-process, in place of
//!   libprocess messages).
//! * [`cluster`]: wiring everything to sockets and tasks.

pub mod agent;
pub mod cluster;
pub mod http;
pub mod master;
pub mod messages;
pub mod version;
