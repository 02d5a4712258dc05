//! Operator client (in progress).
