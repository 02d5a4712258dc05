//! The agent's task status-update manager, as a state machine with no IO: one ordered stream of
//! reliable updates per task, only the head in flight, retried with doubling backoff until the
//! scheduler acknowledges it. Callers pass the time in and forward what comes out.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;
use mesokit_proto::helpers::is_terminal_value;
use mesokit_proto::v1::{FrameworkId, TaskId, TaskState, TaskStatus};

/// An update to send to the master now (first send or a retry).
#[derive(Debug, Clone, PartialEq)]
pub struct Forward {
    /// Its framework.
    pub framework_id: FrameworkId,
    /// The update, with its uuid.
    pub status: TaskStatus,
    /// The latest state the agent knows for the task (may be ahead of `status.state`).
    pub latest_state: TaskState,
}

/// What [`StatusUpdateManager::update`] did with an update.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// Recorded: it goes out when the updates before it are acknowledged.
    New,
    /// Its uuid was seen before: ignored (but the executor is still acknowledged).
    Duplicate,
    /// The task already had a terminal update: dropped (but acknowledged).
    AfterTerminal,
}

/// Why an acknowledgement was not applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AckError {
    /// No stream for the task.
    #[error("no status update stream for task '{0}'")]
    UnknownTask(String),
    /// The uuid is not that of the update in flight (stale or duplicate ack).
    #[error("unexpected acknowledgement for task '{0}': not the update in flight")]
    Unexpected(String),
}

#[derive(Debug)]
struct Stream {
    framework_id: FrameworkId,
    pending: VecDeque<TaskStatus>,
    /// Every uuid received (pending or acknowledged).
    seen: HashSet<Bytes>,
    /// A terminal update was received.
    terminal: bool,
    latest_state: TaskState,
    /// When the head is resent, and the current backoff.
    deadline: Option<Instant>,
    backoff: Duration,
}

/// The status-update manager of one agent.
#[derive(Debug)]
pub struct StatusUpdateManager {
    initial: Duration,
    max: Duration,
    /// Keyed by (framework id, task id).
    streams: HashMap<(String, String), Stream>,
}

fn state_of(s: &TaskStatus) -> TaskState {
    TaskState::try_from(s.state).unwrap_or(TaskState::TaskStaging)
}

impl StatusUpdateManager {
    /// A manager retrying after `initial`, doubling up to `max` (Mesos: 10 s, 10 min).
    pub fn new(initial: Duration, max: Duration) -> Self {
        StatusUpdateManager {
            initial,
            max: max.max(initial),
            streams: HashMap::new(),
        }
    }

    /// Records an update (which must carry a uuid). If it becomes the head of its stream it is
    /// returned for sending.
    pub fn update(
        &mut self,
        framework_id: &FrameworkId,
        status: TaskStatus,
        now: Instant,
    ) -> (Recorded, Option<Forward>) {
        let key = (framework_id.value.clone(), status.task_id.value.clone());
        let uuid = status.uuid.clone().unwrap_or_default();
        let stream = self.streams.entry(key).or_insert_with(|| Stream {
            framework_id: framework_id.clone(),
            pending: VecDeque::new(),
            seen: HashSet::new(),
            terminal: false,
            latest_state: state_of(&status),
            deadline: None,
            backoff: self.initial,
        });
        if stream.seen.contains(&uuid) {
            return (Recorded::Duplicate, None);
        }
        if stream.terminal {
            return (Recorded::AfterTerminal, None);
        }
        stream.seen.insert(uuid);
        stream.terminal = is_terminal_value(status.state);
        stream.latest_state = state_of(&status);
        stream.pending.push_back(status);
        if stream.pending.len() > 1 {
            return (Recorded::New, None);
        }
        stream.backoff = self.initial;
        stream.deadline = Some(now + self.initial);
        let fwd = Forward {
            framework_id: stream.framework_id.clone(),
            status: stream.pending[0].clone(),
            latest_state: stream.latest_state,
        };
        (Recorded::New, Some(fwd))
    }

    /// The scheduler acknowledged `uuid`: the next update of the stream (if any) is returned for
    /// sending.
    pub fn acknowledge(
        &mut self,
        framework_id: &FrameworkId,
        task_id: &TaskId,
        uuid: &[u8],
        now: Instant,
    ) -> Result<Option<Forward>, AckError> {
        let key = (framework_id.value.clone(), task_id.value.clone());
        let Some(stream) = self.streams.get_mut(&key) else {
            return Err(AckError::UnknownTask(task_id.value.clone()));
        };
        match stream.pending.front() {
            Some(head) if head.uuid.as_deref() == Some(uuid) => {}
            _ => return Err(AckError::Unexpected(task_id.value.clone())),
        }
        stream.pending.pop_front();
        stream.backoff = self.initial;
        let Some(next) = stream.pending.front() else {
            if stream.terminal {
                // The terminal update is acknowledged: the stream is done (as in Mesos).
                self.streams.remove(&key);
            } else {
                stream.deadline = None;
            }
            return Ok(None);
        };
        stream.deadline = Some(now + self.initial);
        Ok(Some(Forward {
            framework_id: stream.framework_id.clone(),
            status: next.clone(),
            latest_state: stream.latest_state,
        }))
    }

    /// The earliest time [`StatusUpdateManager::handle_timeout`] has work to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.streams.values().filter_map(|s| s.deadline).min()
    }

    /// Resends every head whose retry time has come, doubling its backoff.
    pub fn handle_timeout(&mut self, now: Instant) -> Vec<Forward> {
        let mut out = Vec::new();
        for s in self.streams.values_mut() {
            let (Some(deadline), Some(head)) = (s.deadline, s.pending.front()) else {
                continue;
            };
            if deadline > now {
                continue;
            }
            s.backoff = (s.backoff * 2).min(self.max);
            s.deadline = Some(now + s.backoff);
            out.push(Forward {
                framework_id: s.framework_id.clone(),
                status: head.clone(),
                latest_state: s.latest_state,
            });
        }
        out
    }

    /// The framework re-subscribed: resend the head of each of its streams at once.
    pub fn resend_framework(&mut self, framework_id: &FrameworkId, now: Instant) -> Vec<Forward> {
        let mut out = Vec::new();
        for s in self.streams.values_mut() {
            if s.framework_id != *framework_id {
                continue;
            }
            if let Some(head) = s.pending.front() {
                s.deadline = Some(now + s.backoff);
                out.push(Forward {
                    framework_id: s.framework_id.clone(),
                    status: head.clone(),
                    latest_state: s.latest_state,
                });
            }
        }
        out
    }

    /// Forgets a framework's streams (it was removed: its updates are never sent).
    pub fn remove_framework(&mut self, framework_id: &FrameworkId) {
        self.streams.retain(|_, s| s.framework_id != *framework_id);
    }

    /// The latest state recorded for a task.
    pub fn latest_state(&self, framework_id: &FrameworkId, task_id: &TaskId) -> Option<TaskState> {
        self.streams
            .get(&(framework_id.value.clone(), task_id.value.clone()))
            .map(|s| s.latest_state)
    }

    /// The task's updates not yet acknowledged, oldest first (what an agent checkpoints so
    /// that a restart resends them).
    pub fn unacknowledged(&self, framework_id: &FrameworkId, task_id: &TaskId) -> Vec<TaskStatus> {
        self.streams
            .get(&(framework_id.value.clone(), task_id.value.clone()))
            .map(|s| s.pending.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Whether a task received a terminal update (that is not yet acknowledged).
    pub fn is_terminated(&self, framework_id: &FrameworkId, task_id: &TaskId) -> bool {
        self.streams
            .get(&(framework_id.value.clone(), task_id.value.clone()))
            .is_some_and(|s| s.terminal)
    }

    /// Number of task streams kept.
    pub fn streams(&self) -> usize {
        self.streams.len()
    }

    /// Whether any update of the framework is not yet acknowledged.
    pub fn has_pending(&self, framework_id: &FrameworkId) -> bool {
        self.streams
            .values()
            .any(|s| s.framework_id == *framework_id && !s.pending.is_empty())
    }

    /// Number of updates not yet acknowledged, over all streams.
    pub fn pending(&self) -> usize {
        self.streams.values().map(|s| s.pending.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mesokit_proto::helpers::new_uuid;

    fn fid() -> FrameworkId {
        FrameworkId { value: "f".into() }
    }

    fn status(task: &str, state: TaskState) -> TaskStatus {
        TaskStatus {
            task_id: TaskId { value: task.into() },
            state: state as i32,
            uuid: Some(new_uuid()),
            ..Default::default()
        }
    }

    fn mgr() -> StatusUpdateManager {
        StatusUpdateManager::new(Duration::from_secs(10), Duration::from_secs(600))
    }

    #[test]
    fn one_in_flight_per_task_next_after_ack() {
        let mut m = mgr();
        let t0 = Instant::now();
        let running = status("t", TaskState::TaskRunning);
        let finished = status("t", TaskState::TaskFinished);
        let (r, f) = m.update(&fid(), running.clone(), t0);
        assert_eq!(r, Recorded::New);
        let f = f.expect("head goes out");
        assert_eq!(f.status, running);
        assert_eq!(f.latest_state, TaskState::TaskRunning);
        let (r, f) = m.update(&fid(), finished.clone(), t0);
        assert_eq!((r, f), (Recorded::New, None));
        // Another task's stream is independent.
        assert!(
            m.update(&fid(), status("u", TaskState::TaskRunning), t0)
                .1
                .is_some()
        );

        // A stale ack does nothing.
        let tid = TaskId { value: "t".into() };
        assert!(matches!(
            m.acknowledge(&fid(), &tid, finished.uuid.as_ref().unwrap(), t0),
            Err(AckError::Unexpected(_))
        ));
        let next = m
            .acknowledge(&fid(), &tid, running.uuid.as_ref().unwrap(), t0)
            .unwrap()
            .expect("next update");
        assert_eq!(next.status, finished);
        assert_eq!(next.latest_state, TaskState::TaskFinished);
        assert_eq!(
            m.acknowledge(&fid(), &tid, finished.uuid.as_ref().unwrap(), t0),
            Ok(None)
        );
        assert_eq!(m.pending(), 1);
        // The finished stream is dropped; task "u" remains.
        assert_eq!(m.streams(), 1);
    }

    #[test]
    fn duplicates_and_after_terminal_are_not_recorded() {
        let mut m = mgr();
        let t0 = Instant::now();
        let running = status("t", TaskState::TaskRunning);
        m.update(&fid(), running.clone(), t0);
        assert_eq!(m.update(&fid(), running, t0).0, Recorded::Duplicate);
        m.update(&fid(), status("t", TaskState::TaskFailed), t0);
        assert_eq!(
            m.update(&fid(), status("t", TaskState::TaskFinished), t0).0,
            Recorded::AfterTerminal
        );
        assert_eq!(m.pending(), 2);
        assert!(m.is_terminated(&fid(), &TaskId { value: "t".into() }));
    }

    #[test]
    fn retries_double_up_to_the_cap() {
        let mut m = StatusUpdateManager::new(Duration::from_secs(10), Duration::from_secs(30));
        let t0 = Instant::now();
        let s = status("t", TaskState::TaskRunning);
        m.update(&fid(), s.clone(), t0);
        assert_eq!(m.poll_timeout(), Some(t0 + Duration::from_secs(10)));
        assert!(m.handle_timeout(t0 + Duration::from_secs(9)).is_empty());
        let t1 = t0 + Duration::from_secs(10);
        assert_eq!(m.handle_timeout(t1)[0].status, s);
        assert_eq!(m.poll_timeout(), Some(t1 + Duration::from_secs(20)));
        let t2 = t1 + Duration::from_secs(20);
        assert_eq!(m.handle_timeout(t2).len(), 1);
        assert_eq!(m.poll_timeout(), Some(t2 + Duration::from_secs(30)));
        let t3 = t2 + Duration::from_secs(30);
        assert_eq!(m.handle_timeout(t3).len(), 1);
        assert_eq!(m.poll_timeout(), Some(t3 + Duration::from_secs(30)));
        m.acknowledge(&fid(), &s.task_id, s.uuid.as_ref().unwrap(), t3)
            .unwrap();
        assert_eq!(m.poll_timeout(), None);
    }

    #[test]
    fn resend_on_framework_update_and_removal() {
        let mut m = mgr();
        let t0 = Instant::now();
        m.update(&fid(), status("t", TaskState::TaskRunning), t0);
        let other = FrameworkId { value: "g".into() };
        m.update(&other, status("t", TaskState::TaskRunning), t0);
        assert_eq!(m.resend_framework(&fid(), t0).len(), 1);
        m.remove_framework(&fid());
        assert_eq!(m.pending(), 1);
        assert!(m.resend_framework(&fid(), t0).is_empty());
    }
}
