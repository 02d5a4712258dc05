//! What an agent checkpoints for the executors of checkpointing frameworks, so that a restart
//! with the same work dir and agent id resumes them instead of losing them (Mesos's
//! `--recover=reconnect`).
//!
//! One file per executor run, `<work_dir>/meta/slaves/<agent id>/frameworks/<framework
//! id>/executors/<executor id>/runs/<container id>/executor.state` (the directories of Mesos's
//! `meta` tree), rewritten (temp file + rename) whenever its content changes and removed once
//! nothing in it is needed any more. The file is line-based: a keyword, a space, then the
//! value (protobuf messages in Mesos's JSON, which never spans lines):
//!
//! ```text
//! mesokit-checkpoint 1
//! framework {FrameworkInfo}
//! executor {ExecutorInfo}
//! container <container id>
//! directory <sandbox path>
//! command true|false
//! pid <executor pid>            (once it started)
//! live true|false               (false: it exited; only unacknowledged updates are kept)
//! ever_launched true|false
//! queued_task {TaskInfo}        (not yet handed to the executor)
//! queued_group {TaskGroupInfo}
//! task <TASK_STATE> {TaskInfo}  (handed to the executor, with its latest state)
//! update {TaskStatus}           (not yet acknowledged by the scheduler, oldest first)
//! ```

use std::path::{Path, PathBuf};

use mesokit_proto::json;
use mesokit_proto::v1::{ExecutorInfo, FrameworkInfo, TaskInfo, TaskState, TaskStatus};

use super::core::Pending;

const MAGIC: &str = "mesokit-checkpoint 1";

/// The checkpointed state of one executor run.
#[derive(Debug, Clone)]
pub(super) struct Record {
    pub(super) framework: FrameworkInfo,
    pub(super) executor: ExecutorInfo,
    pub(super) container_id: String,
    pub(super) directory: PathBuf,
    pub(super) command: bool,
    pub(super) pid: Option<u32>,
    pub(super) live: bool,
    pub(super) ever_launched: bool,
    pub(super) queued: Vec<Pending>,
    pub(super) launched: Vec<(TaskInfo, TaskState)>,
    pub(super) updates: Vec<TaskStatus>,
}

/// `<work_dir>/meta/slaves/<agent id>`.
pub(super) fn agent_dir(work_dir: &Path, agent_id: &str) -> PathBuf {
    work_dir.join("meta/slaves").join(agent_id)
}

/// The run directory of one executor run under [`agent_dir`].
pub(super) fn run_dir(agent_dir: &Path, fid: &str, eid: &str, cid: &str) -> PathBuf {
    agent_dir
        .join("frameworks")
        .join(fid)
        .join("executors")
        .join(eid)
        .join("runs")
        .join(cid)
}

impl Record {
    /// The file's text.
    pub(super) fn encode(&self) -> String {
        let mut out = String::with_capacity(1024);
        let mut line = |k: &str, v: &str| {
            out.push_str(k);
            out.push(' ');
            out.push_str(v);
            out.push('\n');
        };
        line("mesokit-checkpoint", "1");
        line("framework", &json::encode_string(&self.framework));
        line("executor", &json::encode_string(&self.executor));
        line("container", &self.container_id);
        line("directory", &self.directory.to_string_lossy());
        line("command", if self.command { "true" } else { "false" });
        if let Some(pid) = self.pid {
            line("pid", &pid.to_string());
        }
        line("live", if self.live { "true" } else { "false" });
        line(
            "ever_launched",
            if self.ever_launched { "true" } else { "false" },
        );
        for q in &self.queued {
            match q {
                Pending::Task(t) => line("queued_task", &json::encode_string(t)),
                Pending::Group(g) => line("queued_group", &json::encode_string(g)),
            }
        }
        for (t, state) in &self.launched {
            line(
                "task",
                &format!("{} {}", state.as_str_name(), json::encode_string(t)),
            );
        }
        for u in &self.updates {
            line("update", &json::encode_string(u));
        }
        out
    }

    /// Parses a file's text; the error names the line that is wrong.
    pub(super) fn decode(text: &str) -> Result<Record, String> {
        let mut lines = text.lines();
        if lines.next() != Some(MAGIC) {
            return Err(format!("the first line is not '{MAGIC}'"));
        }
        let mut framework = None;
        let mut executor = None;
        let mut container_id = None;
        let mut directory = None;
        let mut record = Record {
            framework: FrameworkInfo::default(),
            executor: ExecutorInfo::default(),
            container_id: String::new(),
            directory: PathBuf::new(),
            command: false,
            pid: None,
            live: true,
            ever_launched: false,
            queued: Vec::new(),
            launched: Vec::new(),
            updates: Vec::new(),
        };
        for (n, l) in lines.enumerate() {
            let n = n + 2;
            let (key, value) = l
                .split_once(' ')
                .ok_or_else(|| format!("line {n}: expected '<key> <value>'"))?;
            let bad =
                |what: &str, e: &dyn std::fmt::Display| format!("line {n} ({key}): {what}: {e}");
            let boolean = |v: &str| match v {
                "true" => Ok(true),
                "false" => Ok(false),
                other => Err(bad("expected true or false", &other)),
            };
            match key {
                "framework" => {
                    framework = Some(json::decode_str(value).map_err(|e| bad("FrameworkInfo", &e))?)
                }
                "executor" => {
                    executor = Some(json::decode_str(value).map_err(|e| bad("ExecutorInfo", &e))?)
                }
                "container" => container_id = Some(value.to_owned()),
                "directory" => directory = Some(PathBuf::from(value)),
                "command" => record.command = boolean(value)?,
                "pid" => record.pid = Some(value.parse().map_err(|e| bad("pid", &e))?),
                "live" => record.live = boolean(value)?,
                "ever_launched" => record.ever_launched = boolean(value)?,
                "queued_task" => record.queued.push(Pending::Task(
                    json::decode_str(value).map_err(|e| bad("TaskInfo", &e))?,
                )),
                "queued_group" => record.queued.push(Pending::Group(
                    json::decode_str(value).map_err(|e| bad("TaskGroupInfo", &e))?,
                )),
                "task" => {
                    let (state, info) = value
                        .split_once(' ')
                        .ok_or_else(|| bad("expected '<TASK_STATE> <TaskInfo>'", &value))?;
                    let state = TaskState::from_str_name(state)
                        .ok_or_else(|| bad("unknown task state", &state))?;
                    let info = json::decode_str(info).map_err(|e| bad("TaskInfo", &e))?;
                    record.launched.push((info, state));
                }
                "update" => record
                    .updates
                    .push(json::decode_str(value).map_err(|e| bad("TaskStatus", &e))?),
                other => return Err(format!("line {n}: unknown key '{other}'")),
            }
        }
        record.framework = framework.ok_or("no 'framework' line")?;
        record.executor = executor.ok_or("no 'executor' line")?;
        record.container_id = container_id.ok_or("no 'container' line")?;
        record.directory = directory.ok_or("no 'directory' line")?;
        Ok(record)
    }
}

/// Writes `text` to `<run dir>/executor.state` atomically.
pub(super) fn write(run_dir: &Path, text: &str) -> std::io::Result<()> {
    std::fs::create_dir_all(run_dir)?;
    let tmp = run_dir.join(".executor.state.tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, run_dir.join("executor.state"))
}

/// Removes a run's checkpoint, and the executor's and framework's directories once empty.
pub(super) fn remove(run_dir: &Path) {
    let _ = std::fs::remove_dir_all(run_dir);
    // runs/<cid> -> runs -> <eid> -> executors -> <fid>: remove what became empty.
    let mut dir = run_dir.parent();
    for _ in 0..4 {
        let Some(d) = dir else { break };
        if std::fs::remove_dir(d).is_err() {
            break;
        }
        dir = d.parent();
    }
}

/// Every run checkpoint under `agent_dir`, with the path of each; files that do not parse are
/// reported as errors (with their path) and left alone.
pub(super) fn read_all(agent_dir: &Path) -> Vec<Result<Record, String>> {
    let mut out = Vec::new();
    let entries = |d: &Path| -> Vec<PathBuf> {
        std::fs::read_dir(d)
            .map(|r| r.flatten().map(|e| e.path()).collect())
            .unwrap_or_default()
    };
    for fw in entries(&agent_dir.join("frameworks")) {
        for ex in entries(&fw.join("executors")) {
            for run in entries(&ex.join("runs")) {
                let file = run.join("executor.state");
                let read = std::fs::read_to_string(&file)
                    .map_err(|e| e.to_string())
                    .and_then(|t| Record::decode(&t));
                out.push(read.map_err(|e| format!("{}: {e}", file.display())));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use mesokit_proto::helpers;

    #[test]
    fn a_record_survives_encode_and_decode() {
        let task = helpers::TaskBuilder::new("t1", "t1", "a").cpus(0.1).build();
        let r = Record {
            framework: FrameworkInfo {
                user: "u".into(),
                name: "n".into(),
                checkpoint: Some(true),
                ..Default::default()
            },
            executor: helpers::custom_executor("e1", helpers::shell("sleep 1")),
            container_id: "c1".into(),
            directory: PathBuf::from("/tmp/some dir/sandbox"),
            command: true,
            pid: Some(42),
            live: true,
            ever_launched: true,
            queued: vec![Pending::Task(task.clone())],
            launched: vec![(task.clone(), TaskState::TaskRunning)],
            updates: vec![TaskStatus {
                task_id: task.task_id.clone(),
                state: TaskState::TaskRunning as i32,
                message: Some("two\nlines".into()),
                ..Default::default()
            }],
        };
        let back = Record::decode(&r.encode()).expect("decodes");
        assert_eq!(back.encode(), r.encode());
        assert_eq!(back.pid, Some(42));
        assert_eq!(back.directory, r.directory);
        assert_eq!(back.updates[0].message.as_deref(), Some("two\nlines"));
    }

    #[test]
    fn a_broken_file_is_an_error_naming_the_line() {
        let e = Record::decode("mesokit-checkpoint 1\npid x\n").unwrap_err();
        assert!(e.contains("line 2 (pid)"), "{e}");
        let e = Record::decode("something else").unwrap_err();
        assert!(e.contains("first line"), "{e}");
        let e = Record::decode("mesokit-checkpoint 1\nframework {}\n").unwrap_err();
        assert!(e.contains("line 2 (framework)"), "{e}");
        let e = Record::decode("mesokit-checkpoint 1\nframework {\"user\":\"u\",\"name\":\"n\"}\n")
            .unwrap_err();
        assert!(e.contains("no 'executor' line"), "{e}");
    }
}
