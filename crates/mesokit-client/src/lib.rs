//! HTTP clients for the Mesos v1 APIs.
