//! The supervisor's side of the task API and of before/after commands, played with an
//! injected clock: progress throttling, invalid command lists, sequence failures.

use std::time::{Duration, Instant};

use mesokit_executor::commands::CommandDef;
use mesokit_executor::process::Termination;
use mesokit_executor::supervisor::{Action, Settings, Supervisor};
use mesokit_proto::helpers::TaskBuilder;
use mesokit_proto::v1::executor::{Event, event};
use mesokit_proto::v1::task_status::Reason;
use mesokit_proto::v1::{Label, Labels, TaskId, TaskInfo, TaskState, TaskStatus};

struct H {
    sup: Supervisor,
    t0: Instant,
}

impl H {
    fn new(settings: Settings) -> H {
        H {
            sup: Supervisor::new(settings),
            t0: Instant::now(),
        }
    }

    fn at(&self, ms: u64) -> Instant {
        self.t0 + Duration::from_millis(ms)
    }

    fn drain(&mut self) -> Vec<Action> {
        std::iter::from_fn(|| self.sup.poll_action()).collect()
    }

    fn updates(&mut self) -> Vec<TaskStatus> {
        self.drain()
            .into_iter()
            .filter_map(|a| match a {
                Action::Update(s) => Some(*s),
                _ => None,
            })
            .collect()
    }

    fn launch(&mut self, task: TaskInfo) -> Vec<Action> {
        let ev = Event {
            r#type: Some(event::Type::Launch as i32),
            launch: Some(Box::new(event::Launch { task })),
            ..Default::default()
        };
        self.sup.handle_event(&ev, self.at(0));
        self.drain()
    }

    fn running(&mut self, task: TaskInfo) {
        let id = task.task_id.clone();
        self.launch(task);
        self.sup.handle_spawned(&id, Ok(()), self.at(0));
        let up = self.updates();
        assert_eq!(up.len(), 1);
        assert_eq!(up[0].state, TaskState::TaskRunning as i32);
    }

    fn progress(&mut self, ms: u64, p: u8, message: &str) -> Vec<TaskStatus> {
        self.sup
            .handle_progress(&id("t"), Some(p), Some(message.into()), self.at(ms));
        self.updates()
    }
}

fn id(s: &str) -> TaskId {
    TaskId { value: s.into() }
}

fn task() -> TaskInfo {
    TaskBuilder::new("t", "t", "a").shell("true").build()
}

fn labelled(key: &str, value: &str) -> TaskInfo {
    let mut t = task();
    t.labels = Some(Labels {
        labels: vec![Label {
            key: key.into(),
            value: Some(value.into()),
        }],
    });
    t
}

/// (state, message, data) of an update.
fn read(s: &TaskStatus) -> (TaskState, Option<&str>, Option<&str>) {
    (
        TaskState::try_from(s.state).unwrap(),
        s.message.as_deref(),
        s.data.as_deref().map(|d| std::str::from_utf8(d).unwrap()),
    )
}

#[test]
fn progress_goes_out_at_most_once_a_second_and_the_last_change_always_does() {
    let mut h = H::new(Settings::default());
    h.running(task());
    let first = h.progress(0, 10, "starting");
    assert_eq!(
        first.iter().map(read).collect::<Vec<_>>(),
        [(
            TaskState::TaskRunning,
            Some("starting"),
            Some(r#"{"progress":10,"message":"starting"}"#)
        )]
    );
    assert!(h.progress(100, 20, "a").is_empty(), "throttled");
    assert!(h.progress(300, 30, "b").is_empty(), "throttled");
    let due = h.sup.poll_timeout().unwrap();
    assert_eq!(
        due,
        h.at(1000),
        "the pending change is due a second after the last"
    );
    h.sup.handle_timeout(h.at(1000));
    let flushed = h.updates();
    assert_eq!(
        flushed.iter().map(read).collect::<Vec<_>>(),
        [(
            TaskState::TaskRunning,
            Some("b"),
            Some(r#"{"progress":30,"message":"b"}"#)
        )],
        "only the latest of the throttled changes"
    );
    assert_eq!(h.sup.poll_timeout(), None, "nothing pending");

    assert!(h.progress(1500, 90, "almost").is_empty());
    h.sup
        .handle_exit(&id("t"), Termination::Exited(0), h.at(1600));
    let end = h.updates();
    let states: Vec<_> = end.iter().map(|s| read(s).0).collect();
    assert_eq!(
        states,
        [TaskState::TaskRunning, TaskState::TaskFinished],
        "the last change goes out before the terminal update"
    );
    assert_eq!(read(&end[0]).1, Some("almost"));
}

#[test]
fn progress_of_a_task_not_running_is_ignored() {
    let mut h = H::new(Settings::default());
    assert!(h.progress(0, 10, "x").is_empty());
    h.running(task());
    h.sup
        .handle_exit(&id("t"), Termination::Exited(0), h.at(10));
    h.updates();
    assert!(h.progress(20, 10, "late").is_empty());
}

#[test]
fn the_launch_carries_the_operator_and_task_commands_in_order() {
    let mut settings = Settings::default();
    settings.before_commands = vec![CommandDef::new("op-before")];
    settings.after_commands = vec![CommandDef::new("op-after")];
    let mut h = H::new(settings);
    let actions = h.launch(labelled(
        "after_commands",
        r#"[{"value": "task-after", "guard": true}]"#,
    ));
    let plan = actions
        .iter()
        .find_map(|a| match a {
            Action::Launch { plan, .. } => Some(plan.clone()),
            _ => None,
        })
        .expect("a launch");
    let values = |l: &[CommandDef]| l.iter().map(|c| c.value.clone()).collect::<Vec<_>>();
    assert_eq!(values(&plan.before), ["op-before"]);
    assert_eq!(values(&plan.after), ["task-after", "op-after"]);
    assert!(plan.after[0].guard);
}

#[test]
fn an_invalid_command_list_fails_the_task_before_anything_runs() {
    let mut h = H::new(Settings::default());
    let actions = h.launch(labelled(
        "before_commands",
        r#"[{"value": "x", "gaurd": 1}]"#,
    ));
    assert!(
        !actions.iter().any(|a| matches!(a, Action::Launch { .. })),
        "nothing starts"
    );
    let updates: Vec<_> = actions
        .into_iter()
        .filter_map(|a| match a {
            Action::Update(s) => Some(*s),
            _ => None,
        })
        .collect();
    let last = updates.last().unwrap();
    assert_eq!(last.state, TaskState::TaskFailed as i32);
    assert_eq!(last.reason, Some(Reason::TaskInvalid as i32));
    assert_eq!(
        last.message.as_deref(),
        Some(
            "label `before_commands`: command 1: unknown key `gaurd` (expected value, guard, \
             async, name)"
        )
    );
}

#[test]
fn a_failed_sequence_is_failed_or_killed_during_a_kill() {
    let mut h = H::new(Settings::default());
    h.running(task());
    h.sup.handle_sequence_failed(
        &id("t"),
        "before command 1 (`false`) exited with status 1; later commands did not run".into(),
        h.at(5),
    );
    let up = h.updates();
    assert_eq!(read(&up[0]).0, TaskState::TaskFailed);
    assert!(read(&up[0]).1.unwrap().starts_with("before command 1"));

    let mut h = H::new(Settings::default());
    h.running(task());
    let kill = Event {
        r#type: Some(event::Type::Kill as i32),
        kill: Some(event::Kill {
            task_id: id("t"),
            kill_policy: None,
        }),
        ..Default::default()
    };
    h.sup.handle_event(&kill, h.at(1));
    h.drain();
    h.sup.handle_sequence_failed(
        &id("t"),
        "killed before the task's command ran".into(),
        h.at(2),
    );
    assert_eq!(read(&h.updates()[0]).0, TaskState::TaskKilled);
}
