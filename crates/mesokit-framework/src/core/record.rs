//! What the scheduler stores per instance, and its byte format.
//!
//! One line per field, `name value`, values without newlines (ids, states and hostnames never
//! have any). Readable with `cat`, stable across versions: unknown lines are ignored, missing
//! ones take defaults.

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
    /// Group name.
    pub group: String,
    /// Instance number in the group.
    pub index: u32,
    /// Launch attempt (part of the task id).
    pub attempt: u32,
    /// Restarts so far (counted against the policy).
    pub restarts: u32,
    /// Phase.
    pub phase: Phase,
    /// Current (or last) task id.
    pub task_id: String,
    /// Agent of the current task.
    pub agent_id: String,
    /// Hostname of the agent.
    pub hostname: String,
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
        format!("tasks/{group}.{index}")
    }

    /// Encodes the record.
    pub fn encode(&self) -> Vec<u8> {
        let phase = match self.phase {
            Phase::Pending => "pending",
            Phase::Launched => "launched",
            Phase::Done => "done",
        };
        let ports: Vec<String> = self.ports.iter().map(u64::to_string).collect();
        let mut s = format!(
            "group {}\nindex {}\nattempt {}\nrestarts {}\nphase {phase}\ntask_id {}\nagent_id {}\nhostname {}\nports {}\nstate {}\n",
            self.group,
            self.index,
            self.attempt,
            self.restarts,
            self.task_id,
            self.agent_id,
            self.hostname,
            ports.join(","),
            self.state.as_str_name(),
        );
        for (k, v) in &self.placed {
            s.push_str(&format!("placed {k}={v}\n"));
        }
        s.into_bytes()
    }

    /// Decodes a record; `None` when it is not one (the caller reports the key).
    pub fn decode(bytes: &[u8]) -> Option<Record> {
        let text = std::str::from_utf8(bytes).ok()?;
        let mut r = Record {
            group: String::new(),
            index: 0,
            attempt: 0,
            restarts: 0,
            phase: Phase::Pending,
            task_id: String::new(),
            agent_id: String::new(),
            hostname: String::new(),
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
        assert_eq!(Record::decode(&r.encode()), Some(r));
        assert_eq!(Record::decode(b"\xff\xfe"), None);
        assert_eq!(Record::decode(b"index x\ngroup a\n"), None);
        assert_eq!(Record::decode(b"index 1\n"), None, "no group");
    }
}
