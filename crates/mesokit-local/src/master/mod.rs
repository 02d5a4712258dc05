//! The master: its bookkeeping as a state machine ([`Master`], no IO) and its HTTP front.
