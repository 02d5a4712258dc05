//! When the supervisor asks for hooks and what their results do, played with an injected
//! clock and hand-made hook results.

use std::time::{Duration, Instant};

use mesokit_executor::process::{Signal, Termination};
use mesokit_executor::supervisor::{Action, Settings, Supervisor};
use mesokit_hooks::events::{ChainResult, Event as HookEvent, HookError};
use mesokit_proto::helpers::TaskBuilder;
use mesokit_proto::v1::executor::{Event, event};
use mesokit_proto::v1::task_status::Reason;
use mesokit_proto::v1::{TaskId, TaskInfo, TaskState};

#[derive(Debug, PartialEq)]
enum Out {
    Launch(Vec<(String, String)>),
    Hooks(HookEvent, Vec<String>),
    Term,
    Kill,
    Update(TaskState, Option<String>),
}

struct H {
    sup: Supervisor,
    t0: Instant,
}

impl H {
    fn new(hooks: &[&str]) -> H {
        let mut settings = Settings::default();
        settings.hooks = hooks.iter().map(|s| (*s).to_owned()).collect();
        H {
            sup: Supervisor::new(settings),
            t0: Instant::now(),
        }
    }

    fn at(&self, ms: u64) -> Instant {
        self.t0 + Duration::from_millis(ms)
    }

    fn drain(&mut self) -> Vec<Out> {
        std::iter::from_fn(|| self.sup.poll_action())
            .map(|a| match a {
                Action::Launch { command, .. } => Out::Launch(
                    command
                        .env
                        .iter()
                        .filter(|(k, _)| k.starts_with("HOOK_"))
                        .cloned()
                        .collect(),
                ),
                Action::Hooks { event, names, .. } => Out::Hooks(event, names),
                Action::Signal { signal, .. } => match signal {
                    Signal::Term => Out::Term,
                    Signal::Kill => Out::Kill,
                },
                Action::Update(s) => Out::Update(TaskState::try_from(s.state).unwrap(), s.message),
                other => panic!("unexpected {other:?}"),
            })
            .collect()
    }

    fn event(&mut self, ms: u64, ev: Event) -> Vec<Out> {
        self.sup.handle_event(&ev, self.at(ms));
        self.drain()
    }

    fn launch(&mut self, task: TaskInfo) -> Vec<Out> {
        self.event(
            0,
            Event {
                r#type: Some(event::Type::Launch as i32),
                launch: Some(Box::new(event::Launch { task })),
                ..Default::default()
            },
        )
    }

    fn done(&mut self, ms: u64, ev: HookEvent, result: ChainResult) -> Vec<Out> {
        self.sup.handle_hooks_done(&id(), ev, result, self.at(ms));
        self.drain()
    }

    fn kill(&mut self, ms: u64, grace_ms: u64) -> Vec<Out> {
        self.event(
            ms,
            Event {
                r#type: Some(event::Type::Kill as i32),
                kill: Some(event::Kill {
                    task_id: id(),
                    kill_policy: Some(mesokit_proto::v1::KillPolicy {
                        grace_period: Some(mesokit_proto::helpers::duration_info(
                            Duration::from_millis(grace_ms),
                        )),
                    }),
                }),
                ..Default::default()
            },
        )
    }
}

fn id() -> TaskId {
    TaskId { value: "t".into() }
}

fn task() -> TaskInfo {
    TaskBuilder::new("t", "t", "a").shell("sleep 1").build()
}

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

fn failed(event: HookEvent, reason: &str) -> ChainResult {
    ChainResult {
        env: vec![],
        errors: vec![HookError {
            hook: "consul".into(),
            event,
            reason: reason.into(),
        }],
    }
}

/// Launch with hooks `consul` then the label's `webhook`, the before hooks succeeding with env.
fn started(h: &mut H) {
    let mut t = task();
    t.labels = Some(mesokit_proto::helpers::labels(&[("hooks", "webhook")]));
    let out = h.launch(t);
    assert_eq!(
        out,
        [
            Out::Update(TaskState::TaskStarting, None),
            Out::Hooks(HookEvent::BeforeTaskStart, names(&["consul", "webhook"]))
        ],
        "the executor's hooks, then the task's; no launch before they answer"
    );
    let env = ChainResult {
        env: vec![("HOOK_A".into(), "1".into())],
        errors: vec![],
    };
    assert_eq!(
        h.done(5, HookEvent::BeforeTaskStart, env),
        [Out::Launch(vec![("HOOK_A".into(), "1".into())])]
    );
    h.sup.handle_spawned(&id(), Ok(()), h.at(6));
    assert_eq!(
        h.drain(),
        [
            Out::Update(TaskState::TaskRunning, None),
            Out::Hooks(HookEvent::AfterTaskStart, names(&["consul", "webhook"]))
        ]
    );
    assert_eq!(
        h.done(
            7,
            HookEvent::AfterTaskStart,
            failed(HookEvent::AfterTaskStart, "x")
        ),
        []
    );
}

#[test]
fn before_task_start_hooks_add_env_and_after_task_start_errors_are_only_logged() {
    let mut h = H::new(&["consul"]);
    started(&mut h);
    assert!(!h.sup.is_finished());
}

#[test]
fn a_failing_before_task_start_hook_fails_the_task_without_launching_it() {
    let mut h = H::new(&["consul"]);
    h.launch(task());
    let out = h.done(
        3,
        HookEvent::BeforeTaskStart,
        failed(HookEvent::BeforeTaskStart, "503"),
    );
    assert_eq!(
        out,
        [Out::Update(
            TaskState::TaskFailed,
            Some("hook `consul` failed at before_task_start: 503".into())
        )]
    );
}

#[test]
fn an_unknown_hook_in_the_task_label_fails_the_task_as_invalid() {
    let mut h = H::new(&[]);
    let mut t = task();
    t.labels = Some(mesokit_proto::helpers::labels(&[("hooks", "consul,nope")]));
    let ev = Event {
        r#type: Some(event::Type::Launch as i32),
        launch: Some(Box::new(event::Launch { task: t })),
        ..Default::default()
    };
    h.sup.handle_event(&ev, h.at(0));
    let updates: Vec<_> = std::iter::from_fn(|| h.sup.poll_action())
        .filter_map(|a| match a {
            Action::Update(s) => Some(*s),
            Action::Launch { .. } | Action::Hooks { .. } => panic!("nothing may start"),
            _ => None,
        })
        .collect();
    let last = updates.last().unwrap();
    assert_eq!(last.state, TaskState::TaskFailed as i32);
    assert_eq!(last.reason, Some(Reason::TaskInvalid as i32));
    assert!(
        last.message
            .as_deref()
            .unwrap()
            .starts_with("label `hooks`: unknown hook `nope` (known: "),
        "{last:?}"
    );
}

#[test]
fn a_kill_runs_before_terminate_hooks_first_and_their_hang_never_holds_the_sigkill() {
    let mut h = H::new(&["consul"]);
    started(&mut h);
    assert_eq!(
        h.kill(100, 500),
        [Out::Hooks(
            HookEvent::BeforeTerminate,
            names(&["consul", "webhook"])
        )],
        "no SIGTERM before the hooks answer"
    );
    assert_eq!(h.sup.poll_timeout(), Some(h.at(600)));
    h.sup.handle_timeout(h.at(600));
    assert_eq!(
        h.drain(),
        [Out::Kill],
        "the grace ran out while the hooks hung"
    );
    assert_eq!(
        h.done(
            700,
            HookEvent::BeforeTerminate,
            failed(HookEvent::BeforeTerminate, "slow")
        ),
        [],
        "too late for a SIGTERM"
    );
    h.sup
        .handle_exit(&id(), Termination::Signaled(9), h.at(701));
    assert_eq!(
        h.drain(),
        [Out::Update(
            TaskState::TaskKilled,
            Some("Command terminated with signal Killed".into())
        )]
    );
}

#[test]
fn before_terminate_hooks_that_answer_let_the_sigterm_go() {
    let mut h = H::new(&["consul"]);
    started(&mut h);
    h.kill(100, 500);
    assert_eq!(
        h.done(150, HookEvent::BeforeTerminate, ChainResult::default()),
        [Out::Term]
    );
    h.sup
        .handle_exit(&id(), Termination::Signaled(15), h.at(160));
    let out = h.drain();
    assert_eq!(out.len(), 1, "the hooks ran once: {out:?}");
}

#[test]
fn a_task_that_ends_by_itself_still_runs_before_terminate_and_waits_for_it() {
    let mut h = H::new(&["consul"]);
    started(&mut h);
    h.sup.handle_exit(&id(), Termination::Exited(0), h.at(50));
    assert_eq!(
        h.drain(),
        [
            Out::Hooks(HookEvent::BeforeTerminate, names(&["consul", "webhook"])),
            Out::Update(
                TaskState::TaskFinished,
                Some("Command exited with status 0".into())
            )
        ]
    );
    // Acknowledge everything: only the hooks keep the executor.
    h.sup.handle_timeout(h.at(60_000));
    assert!(!h.sup.is_finished(), "waits for the hooks");
    h.done(60_001, HookEvent::BeforeTerminate, ChainResult::default());
    assert!(h.sup.is_finished());
}

#[test]
fn a_failing_task_healthy_hook_kills_the_task_and_fails_it_with_the_error() {
    let mut h = H::new(&["consul"]);
    started(&mut h);
    h.sup.handle_hooks_done(
        &id(),
        HookEvent::TaskHealthy,
        failed(HookEvent::TaskHealthy, "Consul answered 500"),
        h.at(200),
    );
    assert_eq!(
        h.drain(),
        [Out::Hooks(
            HookEvent::BeforeTerminate,
            names(&["consul", "webhook"])
        )]
    );
    h.done(210, HookEvent::BeforeTerminate, ChainResult::default());
    h.sup
        .handle_exit(&id(), Termination::Signaled(15), h.at(220));
    assert_eq!(
        h.drain(),
        [Out::Update(
            TaskState::TaskFailed,
            Some(
                "hook `consul` failed at task_healthy: Consul answered 500; the task was \
                 killed (command terminated with signal Terminated)"
                    .into()
            )
        )]
    );
}
