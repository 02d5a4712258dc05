//! The executor's hook events and what their results mean: the points of a task's life at
//! which hooks run, the environment a hook may add, and the error naming the hook that failed.
//!
//! * [`Event::BeforeTaskStart`]: before the task's first process; a hook may add environment
//!   variables; an error aborts the launch (TASK_FAILED with the error).
//! * [`Event::AfterTaskStart`]: once the process exists; errors are logged.
//! * [`Event::TaskHealthy`]: the first passing health check; an error kills the task.
//! * [`Event::BeforeTerminate`]: before the kill signals, or once the task ended by itself;
//!   errors are logged and never hold up the kill.
//!
//! Hooks run one after the other in their configured order. For the events whose errors
//! matter, the first error stops the chain (later hooks do not run), as allegro's executor
//! does; for the others every hook runs.

use std::fmt;

/// A point in a task's life at which hooks run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Event {
    /// Before the task's first process starts.
    BeforeTaskStart,
    /// The task's process started.
    AfterTaskStart,
    /// The task's first passing health check.
    TaskHealthy,
    /// The task is about to be killed, or ended.
    BeforeTerminate,
}

impl Event {
    /// Every event, in the order of a task's life.
    pub const ALL: [Event; 4] = [
        Event::BeforeTaskStart,
        Event::AfterTaskStart,
        Event::TaskHealthy,
        Event::BeforeTerminate,
    ];

    /// The name in hook inputs: `before_task_start`, `after_task_start`, `task_healthy`,
    /// `before_terminate`.
    pub fn name(self) -> &'static str {
        match self {
            Event::BeforeTaskStart => "before_task_start",
            Event::AfterTaskStart => "after_task_start",
            Event::TaskHealthy => "task_healthy",
            Event::BeforeTerminate => "before_terminate",
        }
    }

    /// Whether a hook's error changes what happens to the task (the chain then stops at the
    /// first error); if not, errors are logged and every hook runs.
    pub fn errors_matter(self) -> bool {
        matches!(self, Event::BeforeTaskStart | Event::TaskHealthy)
    }
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Environment variables a hook adds to the task (only [`Event::BeforeTaskStart`]'s count).
pub type HookEnv = Vec<(String, String)>;

/// A hook that failed: which one, at which event, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("hook `{hook}` failed at {event}: {reason}")]
pub struct HookError {
    /// The hook's name as configured (`consul`, `command:/path`, …).
    pub hook: String,
    /// The event.
    pub event: Event,
    /// What went wrong.
    pub reason: String,
}

/// The result of a chain of hooks for one event.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ChainResult {
    /// The environment added by the hooks that succeeded, in order.
    pub env: HookEnv,
    /// The errors: at most one when [`Event::errors_matter`] (it stopped the chain).
    pub errors: Vec<HookError>,
}

impl ChainResult {
    /// The error that decides the task's fate, if the event's errors matter.
    pub fn fatal(&self, event: Event) -> Option<&HookError> {
        if event.errors_matter() {
            self.errors.first()
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_error_text() {
        let names: Vec<_> = Event::ALL.iter().map(|e| e.name()).collect();
        assert_eq!(
            names,
            [
                "before_task_start",
                "after_task_start",
                "task_healthy",
                "before_terminate"
            ]
        );
        let e = HookError {
            hook: "consul".into(),
            event: Event::TaskHealthy,
            reason: "503 from the agent".into(),
        };
        assert_eq!(
            e.to_string(),
            "hook `consul` failed at task_healthy: 503 from the agent"
        );
        let r = ChainResult {
            env: vec![],
            errors: vec![e.clone()],
        };
        assert_eq!(r.fatal(Event::TaskHealthy), Some(&e));
        assert_eq!(r.fatal(Event::BeforeTerminate), None);
    }
}
