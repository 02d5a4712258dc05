//! HTTP clients for the Mesos v1 APIs, on Tokio and hyper.
//!
//! * [`scheduler`]: subscribe a framework to a master, receive its events, send calls;
//!   follows leader redirects, watches heartbeats and re-subscribes after failures.
//! * [`executor`]: an executor's connection to its agent, configured from the `MESOS_*`
//!   environment; keeps unacknowledged updates and tasks and re-sends them on re-subscription.
//! * [`operator`]: the read calls of the master's operator API (`/api/v1`) and of its v0 JSON
//!   endpoints, for tools.
//!
//! Bodies are Mesos JSON or protobuf ([`ContentType`]); streams are RecordIO. Nothing here
//! panics on what the network sends: every failure is an [`Error`] saying what went wrong.
//! `https://` URLs need the `tls` feature (on by default; rustls with the Mozilla roots).

mod backoff;
mod codec;
mod error;
pub mod executor;
pub mod operator;
pub mod scheduler;
mod transport;

pub use backoff::Backoff;
pub use codec::{ContentType, DecodeError, WireMessage};
pub use error::{ApiError, Error};
pub use transport::{Credentials, TlsConfig};
