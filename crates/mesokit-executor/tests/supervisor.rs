//! The supervisor's rules, played without processes or sockets: events, exits and the clock
//! go in, and the test reads the actions that come out.

use std::time::{Duration, Instant};

use mesokit_executor::process::{Signal, Termination};
use mesokit_executor::supervisor::{Action, Settings, Supervisor};
use mesokit_proto::helpers::{TaskBuilder, duration_info};
use mesokit_proto::v1::executor::{Event, event};
use mesokit_proto::v1::framework_info::{Capability, capability};
use mesokit_proto::v1::task_status::{Reason, Source};
use mesokit_proto::v1::{KillPolicy, TaskGroupInfo, TaskId, TaskInfo, TaskState};

const SIGTERM: i32 = 15;
const SIGKILL: i32 = 9;

/// What came out, in a form that reads like the spec.
#[derive(Debug, Clone, PartialEq)]
enum Out {
    Launch(String),
    Term(String),
    Kill(String),
    Update(String, TaskState, Option<String>),
}

struct Harness {
    sup: Supervisor,
    t0: Instant,
}

impl Harness {
    fn new() -> Self {
        Self::with(Settings::default())
    }

    fn with(settings: Settings) -> Self {
        Harness {
            sup: Supervisor::new(settings),
            t0: Instant::now(),
        }
    }

    fn at(&self, ms: u64) -> Instant {
        self.t0 + Duration::from_millis(ms)
    }

    fn subscribed(&mut self, killing_state: bool) {
        let mut s = event::Subscribed::default();
        if killing_state {
            s.framework_info.capabilities.push(Capability {
                r#type: Some(capability::Type::TaskKillingState as i32),
            });
        }
        self.sup.handle_subscribed(&s);
    }

    fn event(&mut self, ms: u64, ev: Event) -> Vec<Out> {
        self.sup.handle_event(&ev, self.at(ms));
        self.drain()
    }

    fn spawned(&mut self, ms: u64, task: &str) -> Vec<Out> {
        self.sup.handle_spawned(&id(task), Ok(()), self.at(ms));
        self.drain()
    }

    fn exited(&mut self, ms: u64, task: &str, how: Termination) -> Vec<Out> {
        self.sup.handle_exit(&id(task), how, self.at(ms));
        self.drain()
    }

    fn time(&mut self, ms: u64) -> Vec<Out> {
        self.sup.handle_timeout(self.at(ms));
        self.drain()
    }

    fn next_timeout_ms(&self) -> Option<u64> {
        self.sup
            .poll_timeout()
            .map(|t| t.duration_since(self.t0).as_millis() as u64)
    }

    /// Launches `task` and starts its process: STARTING, RUNNING.
    fn running(&mut self, ms: u64, task: TaskInfo) {
        let name = task.task_id.value.clone();
        let out = self.event(ms, launch(task));
        assert_eq!(
            out,
            [
                Out::Update(name.clone(), TaskState::TaskStarting, None),
                Out::Launch(name.clone())
            ]
        );
        assert_eq!(
            self.spawned(ms, &name),
            [Out::Update(name, TaskState::TaskRunning, None)]
        );
    }

    fn drain(&mut self) -> Vec<Out> {
        let mut out = Vec::new();
        while let Some(a) = self.sup.poll_action() {
            out.push(match a {
                Action::Launch { task_id, .. } => Out::Launch(task_id.value),
                Action::Signal { task_id, signal } => match signal {
                    Signal::Term => Out::Term(task_id.value),
                    Signal::Kill => Out::Kill(task_id.value),
                },
                Action::Update(s) => {
                    assert_eq!(s.source, Some(Source::Executor as i32));
                    assert_eq!(s.uuid.as_ref().map(|u| u.len()), Some(16));
                    Out::Update(
                        s.task_id.value.clone(),
                        TaskState::try_from(s.state).unwrap(),
                        s.message.clone(),
                    )
                }
                other => panic!("unexpected {other:?}"),
            });
        }
        out
    }

    /// ACKNOWLEDGED for every update in `uuids`.
    fn ack_all(&mut self, ms: u64, task: &str, uuids: Vec<bytes::Bytes>) {
        for uuid in uuids {
            self.event(
                ms,
                Event {
                    r#type: Some(event::Type::Acknowledged as i32),
                    acknowledged: Some(event::Acknowledged {
                        task_id: id(task),
                        uuid,
                    }),
                    ..Default::default()
                },
            );
        }
    }
}

fn id(s: &str) -> TaskId {
    TaskId { value: s.into() }
}

fn task(name: &str) -> TaskInfo {
    TaskBuilder::new(name, name, "S0").shell("sleep 30").build()
}

fn launch(task: TaskInfo) -> Event {
    Event {
        r#type: Some(event::Type::Launch as i32),
        launch: Some(Box::new(event::Launch { task })),
        ..Default::default()
    }
}

fn kill(task: &str, grace_ms: Option<u64>) -> Event {
    Event {
        r#type: Some(event::Type::Kill as i32),
        kill: Some(event::Kill {
            task_id: id(task),
            kill_policy: grace_ms.map(|ms| KillPolicy {
                grace_period: Some(duration_info(Duration::from_millis(ms))),
            }),
        }),
        ..Default::default()
    }
}

fn shutdown() -> Event {
    Event {
        r#type: Some(event::Type::Shutdown as i32),
        ..Default::default()
    }
}

fn update(task: &str, state: TaskState, message: &str) -> Out {
    Out::Update(task.into(), state, Some(message.into()))
}

#[test]
fn a_task_runs_and_finishes() {
    let mut h = Harness::new();
    h.subscribed(false);
    assert!(!h.sup.is_finished(), "not done before any task came");
    h.running(0, task("t"));
    assert_eq!(h.next_timeout_ms(), None, "nothing to time");
    assert_eq!(
        h.exited(10, "t", Termination::Exited(0)),
        [update(
            "t",
            TaskState::TaskFinished,
            "Command exited with status 0"
        )]
    );
    assert!(
        !h.sup.is_finished(),
        "waits for the acknowledgement of the terminal update"
    );
    assert_eq!(h.next_timeout_ms(), Some(10 + 5000), "but not forever");
    assert!(h.time(5010).is_empty());
    assert!(h.sup.is_finished());
}

#[test]
fn the_acknowledgement_of_the_terminal_update_ends_the_wait() {
    let mut h = Harness::new();
    h.sup.handle_event(&launch(task("t")), h.at(0));
    h.sup.handle_spawned(&id("t"), Ok(()), h.at(0));
    h.sup.handle_exit(&id("t"), Termination::Exited(0), h.at(1));
    let mut uuids = Vec::new();
    while let Some(a) = h.sup.poll_action() {
        if let Action::Update(s) = a {
            uuids.push(s.uuid.unwrap());
        }
    }
    assert_eq!(uuids.len(), 3);
    h.ack_all(2, "t", uuids[..2].to_vec());
    assert!(
        !h.sup.is_finished(),
        "STARTING and RUNNING acks are not enough"
    );
    h.ack_all(3, "t", uuids[2..].to_vec());
    assert!(h.sup.is_finished());
}

#[test]
fn exit_statuses_and_signals_become_failed() {
    let mut h = Harness::new();
    h.running(0, task("a"));
    h.running(0, task("b"));
    assert_eq!(
        h.exited(1, "a", Termination::Exited(3)),
        [update(
            "a",
            TaskState::TaskFailed,
            "Command exited with status 3"
        )]
    );
    assert_eq!(
        h.exited(1, "b", Termination::Signaled(SIGKILL)),
        [update(
            "b",
            TaskState::TaskFailed,
            "Command terminated with signal Killed"
        )]
    );
}

#[test]
fn kill_is_sigterm_then_sigkill_after_the_default_grace() {
    let mut h = Harness::new();
    h.subscribed(false);
    h.running(0, task("t"));
    assert_eq!(h.event(100, kill("t", None)), [Out::Term("t".into())]);
    assert_eq!(h.next_timeout_ms(), Some(3100), "default grace is 3 s");
    assert!(h.time(3099).is_empty());
    assert_eq!(h.time(3100), [Out::Kill("t".into())]);
    assert_eq!(h.next_timeout_ms(), None, "SIGKILL is sent once");
    assert_eq!(
        h.exited(3101, "t", Termination::Signaled(SIGKILL)),
        [update(
            "t",
            TaskState::TaskKilled,
            "Command terminated with signal Killed"
        )]
    );
}

#[test]
fn task_killing_only_for_frameworks_that_understand_it() {
    let mut h = Harness::new();
    h.subscribed(true);
    h.running(0, task("t"));
    assert_eq!(
        h.event(0, kill("t", None)),
        [
            Out::Update("t".into(), TaskState::TaskKilling, None),
            Out::Term("t".into())
        ]
    );
    assert_eq!(
        h.exited(5, "t", Termination::Signaled(SIGTERM)),
        [update(
            "t",
            TaskState::TaskKilled,
            "Command terminated with signal Terminated"
        )]
    );
}

#[test]
fn grace_precedence_kill_policy_then_task_then_default() {
    let mut h = Harness::new();
    h.running(
        0,
        TaskBuilder::new("t", "t", "S0")
            .shell("x")
            .kill_grace(Duration::from_secs(10))
            .build(),
    );
    h.event(0, kill("t", None));
    assert_eq!(h.next_timeout_ms(), Some(10_000), "the task's policy");

    let mut h = Harness::new();
    h.running(
        0,
        TaskBuilder::new("t", "t", "S0")
            .shell("x")
            .kill_grace(Duration::from_secs(10))
            .build(),
    );
    h.event(0, kill("t", Some(500)));
    assert_eq!(h.next_timeout_ms(), Some(500), "the KILL's policy wins");
}

#[test]
fn a_repeated_kill_only_shortens_the_grace() {
    // The examples of Mesos's executor.cpp: 20 then 30 stays 20; 20 then 5 after 2 s → 3 s
    // more; 20 then 5 after 10 s → SIGKILL now.
    let mut h = Harness::new();
    h.running(0, task("t"));
    assert_eq!(h.event(0, kill("t", Some(20_000))), [Out::Term("t".into())]);
    assert!(h.event(1000, kill("t", Some(30_000))).is_empty());
    assert_eq!(h.next_timeout_ms(), Some(20_000));
    assert!(
        h.event(2000, kill("t", Some(5000))).is_empty(),
        "no second SIGTERM"
    );
    assert_eq!(h.next_timeout_ms(), Some(5000));

    let mut h = Harness::new();
    h.running(0, task("t"));
    h.event(0, kill("t", Some(20_000)));
    assert_eq!(
        h.event(10_000, kill("t", Some(5000))),
        [Out::Kill("t".into())]
    );
}

#[test]
fn a_clean_exit_during_a_kill_is_still_finished() {
    // Mesos's order in reaped(): exit 0 is TASK_FINISHED even when a kill was under way.
    let mut h = Harness::new();
    h.running(0, task("t"));
    h.event(0, kill("t", None));
    assert_eq!(
        h.exited(5, "t", Termination::Exited(0)),
        [update(
            "t",
            TaskState::TaskFinished,
            "Command exited with status 0"
        )]
    );
    let mut h = Harness::new();
    h.running(0, task("t"));
    h.event(0, kill("t", None));
    assert_eq!(
        h.exited(5, "t", Termination::Exited(143)),
        [update(
            "t",
            TaskState::TaskKilled,
            "Command exited with status 143"
        )]
    );
}

#[test]
fn shutdown_grace_is_the_smaller_of_the_task_grace_and_the_shutdown_period() {
    let mut settings = Settings::default();
    settings.shutdown_grace = Duration::from_secs(5);
    let mut h = Harness::with(settings);
    h.running(
        0,
        TaskBuilder::new("long", "long", "S0")
            .shell("x")
            .kill_grace(Duration::from_secs(60))
            .build(),
    );
    h.running(
        0,
        TaskBuilder::new("short", "short", "S0")
            .shell("x")
            .kill_grace(Duration::from_secs(1))
            .build(),
    );
    let out = h.event(0, shutdown());
    assert_eq!(out, [Out::Term("long".into()), Out::Term("short".into())]);
    assert!(h.sup.is_shutting_down());
    assert_eq!(h.next_timeout_ms(), Some(1000), "short: its own 1 s");
    assert_eq!(h.time(1000), [Out::Kill("short".into())]);
    assert_eq!(
        h.next_timeout_ms(),
        Some(4000),
        "long: 5 s less the 1 s margin"
    );
    assert_eq!(h.time(4000), [Out::Kill("long".into())]);
}

#[test]
fn shutdown_before_any_task_finishes_at_once() {
    let mut h = Harness::new();
    assert!(h.event(0, shutdown()).is_empty());
    assert!(h.sup.is_finished());
}

#[test]
fn losing_the_agent_kills_and_does_not_wait_for_acks() {
    let mut h = Harness::new();
    h.running(0, task("t"));
    h.sup.agent_lost(h.at(0));
    assert_eq!(h.drain(), [Out::Term("t".into())]);
    h.exited(1, "t", Termination::Signaled(SIGTERM));
    assert!(h.sup.is_finished());
}

#[test]
fn max_completion_time_kills_without_grace_and_fails_the_task() {
    let mut h = Harness::new();
    h.subscribed(true);
    let mut t = task("t");
    t.max_completion_time = Some(duration_info(Duration::from_millis(300)));
    h.running(0, t);
    assert_eq!(h.next_timeout_ms(), Some(300));
    assert_eq!(
        h.time(300),
        [Out::Term("t".into()), Out::Kill("t".into())],
        "no TASK_KILLING, zero grace"
    );
    h.sup
        .handle_exit(&id("t"), Termination::Signaled(SIGKILL), h.at(301));
    let Some(Action::Update(s)) = h.sup.poll_action() else {
        panic!("no update")
    };
    assert_eq!(s.state, TaskState::TaskFailed as i32);
    assert_eq!(s.reason, Some(Reason::MaxCompletionTimeReached as i32));
}

#[test]
fn invalid_and_unknown_tasks() {
    let mut h = Harness::new();
    let bare = TaskBuilder::new("t", "t", "S0").build();
    let out = h.event(0, launch(bare));
    assert_eq!(out.len(), 2);
    assert_eq!(
        out[0],
        Out::Update("t".into(), TaskState::TaskStarting, None)
    );
    assert!(
        matches!(&out[1], Out::Update(t, TaskState::TaskFailed, Some(m)) if t == "t" && m.contains("no command"))
    );

    // A KILL for a task not seen yet: it never starts.
    assert!(h.event(1, kill("later", None)).is_empty());
    assert_eq!(
        h.event(2, launch(task("later"))),
        [update(
            "later",
            TaskState::TaskKilled,
            "the task was killed before it was launched"
        )]
    );
    // The same task twice: ignored.
    assert!(h.event(3, launch(task("later"))).is_empty());
}

#[test]
fn a_failed_start_is_failed_with_the_error() {
    let mut h = Harness::new();
    h.event(0, launch(task("t")));
    h.sup
        .handle_spawned(&id("t"), Err("No such file or directory".into()), h.at(0));
    assert_eq!(
        h.drain(),
        [update(
            "t",
            TaskState::TaskFailed,
            "Failed to launch the task's command: No such file or directory"
        )]
    );
}

#[test]
fn a_kill_while_starting_signals_once_the_process_exists() {
    let mut h = Harness::new();
    h.event(0, launch(task("t")));
    assert!(h.event(0, kill("t", Some(100))).is_empty());
    assert_eq!(
        h.spawned(50, "t"),
        [
            Out::Update("t".into(), TaskState::TaskRunning, None),
            Out::Term("t".into())
        ]
    );
    assert_eq!(h.next_timeout_ms(), Some(100));
}

#[test]
fn in_a_group_one_failure_kills_the_others() {
    let mut h = Harness::new();
    let group = Event {
        r#type: Some(event::Type::LaunchGroup as i32),
        launch_group: Some(event::LaunchGroup {
            task_group: TaskGroupInfo {
                tasks: vec![task("a"), task("b"), task("c")],
            },
        }),
        ..Default::default()
    };
    let out = h.event(0, group);
    assert_eq!(out.len(), 6, "STARTING and a launch for each: {out:?}");
    for t in ["a", "b", "c"] {
        h.spawned(0, t);
    }
    assert_eq!(
        h.exited(10, "b", Termination::Exited(1)),
        [
            update("b", TaskState::TaskFailed, "Command exited with status 1"),
            Out::Term("a".into()),
            Out::Term("c".into()),
        ]
    );
    h.exited(11, "a", Termination::Signaled(SIGTERM));
    assert_eq!(
        h.exited(12, "c", Termination::Exited(0)),
        [update(
            "c",
            TaskState::TaskFinished,
            "Command exited with status 0"
        )]
    );
}

#[test]
fn a_task_that_finishes_does_not_take_its_group_down() {
    let mut h = Harness::new();
    let group = Event {
        r#type: Some(event::Type::LaunchGroup as i32),
        launch_group: Some(event::LaunchGroup {
            task_group: TaskGroupInfo {
                tasks: vec![task("a"), task("b")],
            },
        }),
        ..Default::default()
    };
    h.event(0, group);
    h.spawned(0, "a");
    h.spawned(0, "b");
    assert_eq!(
        h.exited(10, "a", Termination::Exited(0)),
        [update(
            "a",
            TaskState::TaskFinished,
            "Command exited with status 0"
        )]
    );
    assert_eq!(h.sup.active_tasks(), 1);
}

#[test]
fn an_exit_that_cannot_be_known_is_failed() {
    let mut h = Harness::new();
    h.running(0, task("t"));
    h.sup.handle_wait_error(&id("t"), "ECHILD", h.at(1));
    assert_eq!(
        h.drain(),
        [update(
            "t",
            TaskState::TaskFailed,
            "Failed to get exit status for Command: ECHILD"
        )]
    );
    assert!(
        h.exited(2, "t", Termination::Exited(0)).is_empty(),
        "one terminal update only"
    );
}

#[test]
fn killing_one_task_of_a_group_kills_the_group() {
    let mut h = Harness::new();
    let group = Event {
        r#type: Some(event::Type::LaunchGroup as i32),
        launch_group: Some(event::LaunchGroup {
            task_group: TaskGroupInfo {
                tasks: vec![task("a"), task("b")],
            },
        }),
        ..Default::default()
    };
    h.event(0, group);
    h.spawned(0, "a");
    h.spawned(0, "b");
    assert_eq!(h.event(1, kill("a", Some(100))), [Out::Term("a".into())]);
    assert_eq!(
        h.exited(2, "a", Termination::Signaled(SIGTERM)),
        [
            update(
                "a",
                TaskState::TaskKilled,
                "Command terminated with signal Terminated"
            ),
            Out::Term("b".into()),
        ]
    );
    assert_eq!(
        h.next_timeout_ms(),
        Some(2 + 3000),
        "b: its own (default) grace"
    );
}

#[test]
fn messages_errors_and_heartbeats_change_nothing() {
    let mut h = Harness::new();
    h.running(0, task("t"));
    for ty in [
        event::Type::Message,
        event::Type::Error,
        event::Type::Heartbeat,
    ] {
        let ev = Event {
            r#type: Some(ty as i32),
            message: Some(event::Message {
                data: bytes::Bytes::from_static(b"hello"),
            }),
            error: Some(event::Error {
                message: "oops".into(),
            }),
            ..Default::default()
        };
        assert!(h.event(1, ev).is_empty());
    }
    assert_eq!(h.sup.active_tasks(), 1);
}
