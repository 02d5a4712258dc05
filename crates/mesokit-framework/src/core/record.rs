//! What the scheduler stores per instance, and its byte format.
//!
//! One line per field, `name value`, values without newlines (ids, states and hostnames never
//! have any). Readable with `cat`, stable across versions: unknown lines are ignored, missing
//! ones take defaults.

use std::sync::Arc;

use mesokit_proto::v1::TaskState;

/// Where an instance is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Waiting for an offer (after its backoff).
    Pending,
    /// A task was sent to Mesos and is not terminal yet.
    Launched,
    /// Ended for good.
    Done,
}

/// The durable part of an instance.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// Group name (one copy shared by the group's instances and events).
    pub group: Arc<str>,
    /// Instance number in the group.
    pub index: u32,
    /// Launch attempt (part of the task id).
    pub attempt: u32,
    /// Restarts so far (counted against the policy).
    pub restarts: u32,
    /// Phase.
    pub phase: Phase,
    /// Current (or last) task id (shared with the task's events).
    pub task_id: Arc<str>,
    /// Agent of the current task (shared by the tasks of one offer).
    pub agent_id: Arc<str>,
    /// Hostname of the agent (shared by the tasks of one offer).
    pub hostname: Arc<str>,
    /// Ports given to the task.
    pub ports: Vec<u64>,
    /// Last state Mesos reported (or TASK_STAGING right after launch).
    pub state: TaskState,
    /// Constraint field values of the agent (for placement accounting after a restart).
    pub placed: Vec<(String, String)>,
}

impl Record {
    /// The store key of an instance.
    pub fn key(group: &str, index: u32) -> String {
        let mut k = String::with_capacity(8 + group.len() + 10);
        k.push_str("tasks/");
        k.push_str(group);
        k.push('.');
        push_u64(&mut k, index.into());
        k
    }

    /// Encodes the record.
    pub fn encode(&self) -> Vec<u8> {
        let phase = match self.phase {
            Phase::Pending => "pending",
            Phase::Launched => "launched",
            Phase::Done => "done",
        };
        let mut s: Vec<u8> = Vec::with_capacity(
            160 + self.group.len() + self.task_id.len() + self.agent_id.len() + self.hostname.len(),
        );
        // `name` carries its trailing space.
        let field = |s: &mut Vec<u8>, name: &str, value: &str| {
            s.extend_from_slice(name.as_bytes());
            s.extend_from_slice(value.as_bytes());
            s.push(b'\n');
        };
        let mut num = itoa::Buffer::new();
        field(&mut s, "group ", &self.group);
        field(&mut s, "index ", num.format(self.index));
        field(&mut s, "attempt ", num.format(self.attempt));
        field(&mut s, "restarts ", num.format(self.restarts));
        field(&mut s, "phase ", phase);
        field(&mut s, "task_id ", &self.task_id);
        field(&mut s, "agent_id ", &self.agent_id);
        field(&mut s, "hostname ", &self.hostname);
        s.extend_from_slice(b"ports ");
        for (i, p) in self.ports.iter().enumerate() {
            if i > 0 {
                s.push(b',');
            }
            s.extend_from_slice(num.format(*p).as_bytes());
        }
        s.push(b'\n');
        field(&mut s, "state ", self.state.as_str_name());
        for (k, v) in &self.placed {
            s.extend_from_slice(b"placed ");
            s.extend_from_slice(k.as_bytes());
            s.push(b'=');
            s.extend_from_slice(v.as_bytes());
            s.push(b'\n');
        }
        s
    }

    /// Decodes a record; `None` when it is not one (the caller reports the key).
    pub fn decode(bytes: &[u8]) -> Option<Record> {
        let text = std::str::from_utf8(bytes).ok()?;
        let mut r = Record {
            group: "".into(),
            index: 0,
            attempt: 0,
            restarts: 0,
            phase: Phase::Pending,
            task_id: "".into(),
            agent_id: "".into(),
            hostname: "".into(),
            ports: Vec::new(),
            state: TaskState::TaskStaging,
            placed: Vec::new(),
        };
        let mut have_group = false;
        for line in text.lines() {
            let (k, v) = line.split_once(' ').unwrap_or((line, ""));
            match k {
                "group" => {
                    r.group = v.into();
                    have_group = true;
                }
                "index" => r.index = v.parse().ok()?,
                "attempt" => r.attempt = v.parse().ok()?,
                "restarts" => r.restarts = v.parse().ok()?,
                "phase" => {
                    r.phase = match v {
                        "pending" => Phase::Pending,
                        "launched" => Phase::Launched,
                        "done" => Phase::Done,
                        _ => return None,
                    }
                }
                "task_id" => r.task_id = v.into(),
                "agent_id" => r.agent_id = v.into(),
                "hostname" => r.hostname = v.into(),
                "ports" => {
                    r.ports = v
                        .split(',')
                        .filter(|p| !p.is_empty())
                        .map(str::parse)
                        .collect::<Result<_, _>>()
                        .ok()?
                }
                "state" => r.state = TaskState::from_str_name(v)?,
                "placed" => {
                    let (f, val) = v.split_once('=')?;
                    r.placed.push((f.into(), val.into()));
                }
                _ => {}
            }
        }
        have_group.then_some(r)
    }
}

/// `<job>.<group>.<index>.<attempt>`: unique per framework, readable in Mesos's UI.
#[cfg(test)]
pub(crate) fn task_id(job: &str, group: &str, index: u32, attempt: u32) -> String {
    let mut id = String::with_capacity(job.len() + group.len() + 16);
    push_task_id(&mut id, job, group, index, attempt);
    id
}

/// Appends `<job>.<group>.<index>.<attempt>`.
pub(crate) fn push_task_id(id: &mut String, job: &str, group: &str, index: u32, attempt: u32) {
    id.push_str(job);
    id.push('.');
    id.push_str(group);
    id.push('.');
    push_u64(id, index.into());
    id.push('.');
    push_u64(id, attempt.into());
}

/// Appends a number in decimal without going through `fmt`.
pub(crate) fn push_u64(s: &mut String, v: u64) {
    s.push_str(itoa::Buffer::new().format(v));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_garbage() {
        let r = Record {
            group: "web".into(),
            index: 7,
            attempt: 2,
            restarts: 1,
            phase: Phase::Launched,
            task_id: "job.web.7.2".into(),
            agent_id: "a-S0".into(),
            hostname: "host".into(),
            ports: vec![31000, 31001],
            state: TaskState::TaskRunning,
            placed: vec![("rack".into(), "r1".into())],
        };
        assert_eq!(Record::decode(&r.encode()), Some(r.clone()));
        assert_eq!(Record::key("web", 7), "tasks/web.7");
        assert_eq!(task_id("j", "web", 0, 12), "j.web.0.12");
        assert_eq!(Record::decode(b"\xff\xfe"), None);
        assert_eq!(Record::decode(b"index x\ngroup a\n"), None);
        assert_eq!(Record::decode(b"index 1\n"), None, "no group");
    }
}
