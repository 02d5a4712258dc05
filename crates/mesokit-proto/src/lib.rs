//! Mesos v1 wire types, the Mesos JSON codec and RecordIO framing.
//!
//! * [`mesos`]: prost types generated from our own `.proto` files under `proto/` (packages
//!   `mesos.v1`, `mesos.v1.scheduler`, `mesos.v1.executor`, `mesos.v1.master`, `mesos.v1.agent`).
//! * [`json`]: the Mesos (stout) JSON mapping for every one of those types.
//! * [`borrowed`]: zero-copy views of the same messages, for hot decode paths.
//! * [`recordio`]: the framing of Mesos's streaming responses.
//! * [`helpers`]: builders and predicates a framework or executor author needs every day.
//!
//! This crate does no IO.

pub mod borrowed;
pub mod helpers;
pub mod json;
pub mod recordio;
pub mod resources;

/// Generated Mesos v1 types (prost). Module paths follow the proto packages.
#[allow(
    missing_docs,
    clippy::all,
    unreachable_pub,
    missing_debug_implementations
)]
pub mod mesos {
    pub mod v1 {
        include!(concat!(env!("OUT_DIR"), "/mesos.v1.rs"));
        pub mod scheduler {
            include!(concat!(env!("OUT_DIR"), "/mesos.v1.scheduler.rs"));
        }
        pub mod executor {
            include!(concat!(env!("OUT_DIR"), "/mesos.v1.executor.rs"));
        }
        pub mod master {
            include!(concat!(env!("OUT_DIR"), "/mesos.v1.master.rs"));
        }
        pub mod agent {
            include!(concat!(env!("OUT_DIR"), "/mesos.v1.agent.rs"));
        }
    }
}

#[allow(clippy::all, unreachable_pub, unused_parens, deprecated, dead_code)]
mod generated_json {
    include!(concat!(env!("OUT_DIR"), "/mesos_json.rs"));
}

pub use mesos::v1;
pub use prost::Message;
