//! An agent: executor processes, sandboxes, the executor HTTP API and status updates.
