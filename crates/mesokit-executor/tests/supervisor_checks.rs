//! Health checks and general checks as the supervisor runs them, on a fake clock: probes are
//! asked for when due, their results come back as events, and what changes goes out.

use std::time::{Duration, Instant};

use mesokit_executor::process::{Signal, Termination};
use mesokit_executor::supervisor::{Action, ProbeKind, ProbeResult, Settings, Supervisor};
use mesokit_proto::helpers::TaskBuilder;
use mesokit_proto::v1::executor::{Event, event};
use mesokit_proto::v1::framework_info::{Capability, capability};
use mesokit_proto::v1::task_status::Reason;
use mesokit_proto::v1::{
    CheckInfo, CheckStatusInfo, HealthCheck, TaskId, TaskInfo, TaskState, TaskStatus, check_info,
    check_status_info, health_check,
};

struct Harness {
    sup: Supervisor,
    t0: Instant,
}

impl Harness {
    fn new() -> Self {
        Harness {
            sup: Supervisor::new(Settings::default()),
            t0: Instant::now(),
        }
    }

    fn at(&self, ms: u64) -> Instant {
        self.t0 + Duration::from_millis(ms)
    }

    fn next_timeout_ms(&self) -> Option<u64> {
        self.sup
            .poll_timeout()
            .map(|t| t.duration_since(self.t0).as_millis() as u64)
    }

    fn drain(&mut self) -> Vec<Action> {
        std::iter::from_fn(|| self.sup.poll_action()).collect()
    }

    /// LAUNCH and the process start; returns the updates (STARTING, RUNNING).
    fn running(&mut self, ms: u64, task: TaskInfo) -> Vec<TaskStatus> {
        let name = task.task_id.clone();
        let launch = Event {
            r#type: Some(event::Type::Launch as i32),
            launch: Some(Box::new(event::Launch { task })),
            ..Default::default()
        };
        self.sup.handle_event(&launch, self.at(ms));
        let mut out = self.drain();
        self.sup.handle_spawned(&name, Ok(()), self.at(ms));
        out.extend(self.drain());
        updates(out)
    }

    fn time(&mut self, ms: u64) -> Vec<Action> {
        self.sup.handle_timeout(self.at(ms));
        self.drain()
    }

    fn result(&mut self, ms: u64, task: &str, result: ProbeResult) -> Vec<Action> {
        self.sup.handle_probe_result(&id(task), result, self.at(ms));
        self.drain()
    }
}

fn id(s: &str) -> TaskId {
    TaskId { value: s.into() }
}

fn updates(actions: Vec<Action>) -> Vec<TaskStatus> {
    actions
        .into_iter()
        .filter_map(|a| match a {
            Action::Update(s) => Some(*s),
            _ => None,
        })
        .collect()
}

fn state(s: &TaskStatus) -> TaskState {
    TaskState::try_from(s.state).unwrap()
}

/// The one action expected: a probe of `kind` for `task`.
fn assert_probe(actions: &[Action], task: &str, want: ProbeKind) {
    match actions {
        [Action::Probe { task_id, kind, .. }] => {
            assert_eq!(task_id.value, task);
            assert_eq!(*kind, want);
        }
        other => panic!("expected one {want:?} probe, got {other:?}"),
    }
}

/// A TCP health check: delay 100 ms, interval 1 s, timeout 500 ms, grace 0.
fn with_health(name: &str, consecutive_failures: u32) -> TaskInfo {
    let mut task = TaskBuilder::new(name, name, "S0").shell("sleep 30").build();
    task.health_check = Some(Box::new(HealthCheck {
        r#type: Some(health_check::Type::Tcp as i32),
        tcp: Some(health_check::TcpCheckInfo {
            port: 9,
            protocol: None,
        }),
        delay_seconds: Some(0.1),
        interval_seconds: Some(1.0),
        timeout_seconds: Some(0.5),
        consecutive_failures: Some(consecutive_failures),
        grace_period_seconds: Some(0.0),
        ..Default::default()
    }));
    task
}

fn with_check(name: &str) -> TaskInfo {
    let mut task = TaskBuilder::new(name, name, "S0").shell("sleep 30").build();
    task.check = Some(Box::new(CheckInfo {
        r#type: Some(check_info::Type::Tcp as i32),
        tcp: Some(check_info::Tcp { port: 9 }),
        delay_seconds: Some(0.1),
        interval_seconds: Some(1.0),
        timeout_seconds: Some(0.5),
        ..Default::default()
    }));
    task
}

fn tcp_status(succeeded: bool) -> CheckStatusInfo {
    CheckStatusInfo {
        r#type: Some(check_info::Type::Tcp as i32),
        tcp: Some(check_status_info::Tcp {
            succeeded: Some(succeeded),
        }),
        ..Default::default()
    }
}

#[test]
fn the_first_success_reports_healthy_and_later_ones_stay_quiet() {
    let mut h = Harness::new();
    let out = h.running(0, with_health("t", 3));
    assert_eq!(
        out.iter().map(state).collect::<Vec<_>>(),
        [TaskState::TaskStarting, TaskState::TaskRunning]
    );
    assert_eq!(out[1].healthy, None, "health is unknown at first");
    assert_eq!(
        h.next_timeout_ms(),
        Some(100),
        "the first probe after the delay"
    );
    assert!(h.time(50).is_empty());

    let out = h.time(100);
    assert_probe(&out, "t", ProbeKind::Health);
    if let [Action::Probe { timeout, .. }] = &out[..] {
        assert_eq!(*timeout, Some(Duration::from_millis(500)));
    }
    assert_eq!(h.next_timeout_ms(), None, "no second probe while one runs");

    let out = updates(h.result(150, "t", ProbeResult::Health(Ok(()))));
    assert_eq!(out.len(), 1);
    assert_eq!(state(&out[0]), TaskState::TaskRunning);
    assert_eq!(out[0].healthy, Some(true));
    assert_eq!(
        out[0].reason,
        Some(Reason::TaskHealthCheckStatusUpdated as i32)
    );
    assert_eq!(out[0].uuid.as_ref().map(|u| u.len()), Some(16));

    assert_eq!(
        h.next_timeout_ms(),
        Some(1150),
        "the interval counts from the end"
    );
    assert_probe(&h.time(1150), "t", ProbeKind::Health);
    assert!(h.result(1200, "t", ProbeResult::Health(Ok(()))).is_empty());
}

#[test]
fn consecutive_failures_report_unhealthy_then_kill_the_task() {
    let mut h = Harness::new();
    h.sup.handle_subscribed(&event::Subscribed {
        framework_info: mesokit_proto::v1::FrameworkInfo {
            capabilities: vec![Capability {
                r#type: Some(capability::Type::TaskKillingState as i32),
            }],
            ..Default::default()
        },
        ..Default::default()
    });
    let mut task = with_health("t", 2);
    task.kill_policy = Some(mesokit_proto::v1::KillPolicy {
        grace_period: Some(mesokit_proto::helpers::duration_info(Duration::from_secs(
            2,
        ))),
    });
    h.running(0, task);

    assert_probe(&h.time(100), "t", ProbeKind::Health);
    let out = updates(h.result(
        200,
        "t",
        ProbeResult::Health(Err("connection refused".into())),
    ));
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].healthy, Some(false));
    assert_eq!(out[0].message.as_deref(), Some("connection refused"));

    assert_probe(&h.time(1200), "t", ProbeKind::Health);
    let out = h.result(
        1300,
        "t",
        ProbeResult::Health(Err("connection refused".into())),
    );
    match &out[..] {
        [
            Action::Update(unhealthy),
            Action::Update(killing),
            Action::Signal {
                task_id,
                signal: Signal::Term,
            },
        ] => {
            assert_eq!(state(unhealthy), TaskState::TaskRunning);
            assert_eq!(unhealthy.healthy, Some(false));
            assert!(
                unhealthy
                    .message
                    .as_deref()
                    .unwrap()
                    .contains("2 consecutive health check failures"),
                "{unhealthy:?}"
            );
            assert_eq!(state(killing), TaskState::TaskKilling);
            assert_eq!(task_id.value, "t");
        }
        other => panic!("expected unhealthy, TASK_KILLING, SIGTERM; got {other:?}"),
    }
    assert_eq!(
        h.next_timeout_ms(),
        Some(3300),
        "the task's grace, and no more probes"
    );
    assert!(
        h.result(1400, "t", ProbeResult::Health(Ok(()))).is_empty(),
        "a late result changes nothing"
    );

    let out = updates({
        h.sup
            .handle_exit(&id("t"), Termination::Signaled(15), h.at(1500));
        h.drain()
    });
    assert_eq!(out.len(), 1);
    assert_eq!(state(&out[0]), TaskState::TaskKilled);
    assert_eq!(out[0].healthy, Some(false), "the end of an unhealthy task");
}

#[test]
fn failures_within_the_grace_period_are_ignored() {
    let mut h = Harness::new();
    let mut task = with_health("t", 1);
    task.health_check.as_mut().unwrap().grace_period_seconds = Some(5.0);
    h.running(0, task);
    assert_probe(&h.time(100), "t", ProbeKind::Health);
    assert!(
        h.result(200, "t", ProbeResult::Health(Err("refused".into())))
            .is_empty()
    );
    assert_eq!(h.next_timeout_ms(), Some(1200), "and probing goes on");
}

#[test]
fn a_kill_stops_the_probes() {
    let mut h = Harness::new();
    h.running(0, with_health("t", 3));
    let kill = Event {
        r#type: Some(event::Type::Kill as i32),
        kill: Some(event::Kill {
            task_id: id("t"),
            kill_policy: None,
        }),
        ..Default::default()
    };
    h.sup.handle_event(&kill, h.at(50));
    h.drain();
    assert_eq!(
        h.next_timeout_ms(),
        Some(3050),
        "only the SIGKILL escalation"
    );
    assert!(
        !h.time(100)
            .iter()
            .any(|a| matches!(a, Action::Probe { .. }))
    );
}

#[test]
fn checks_start_empty_and_report_only_changes() {
    let mut h = Harness::new();
    let out = h.running(0, with_check("t"));
    let running = &out[1];
    assert_eq!(state(running), TaskState::TaskRunning);
    assert_eq!(
        running.check_status,
        Some(CheckStatusInfo {
            r#type: Some(check_info::Type::Tcp as i32),
            tcp: Some(check_status_info::Tcp { succeeded: None }),
            ..Default::default()
        }),
        "the first TASK_RUNNING carries the empty status"
    );

    assert_probe(&h.time(100), "t", ProbeKind::Check);
    let out = updates(h.result(150, "t", ProbeResult::Check(Ok(tcp_status(true)))));
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].reason, Some(Reason::TaskCheckStatusUpdated as i32));
    assert_eq!(out[0].check_status, Some(tcp_status(true)));
    assert_eq!(out[0].healthy, None);

    assert_probe(&h.time(1150), "t", ProbeKind::Check);
    assert!(
        h.result(1200, "t", ProbeResult::Check(Ok(tcp_status(true))))
            .is_empty(),
        "same status: nothing"
    );
    assert_probe(&h.time(2200), "t", ProbeKind::Check);
    let out = updates(h.result(2250, "t", ProbeResult::Check(Ok(tcp_status(false)))));
    assert_eq!(out[0].check_status, Some(tcp_status(false)));

    h.sup
        .handle_exit(&id("t"), Termination::Exited(0), h.at(2300));
    h.drain();
    assert_eq!(h.next_timeout_ms(), Some(2300 + 5000), "only the ack wait");
}

#[test]
fn health_updates_carry_the_latest_check_status() {
    let mut h = Harness::new();
    let mut task = with_health("t", 3);
    task.check = with_check("t").check;
    h.running(0, task);
    let out = h.time(100);
    assert_eq!(out.len(), 2, "both probes are due: {out:?}");
    updates(h.result(150, "t", ProbeResult::Check(Ok(tcp_status(true)))));
    let out = updates(h.result(160, "t", ProbeResult::Health(Ok(()))));
    assert_eq!(out[0].healthy, Some(true));
    assert_eq!(out[0].check_status, Some(tcp_status(true)));
}

#[test]
fn an_invalid_health_check_is_not_run() {
    let mut h = Harness::new();
    let mut task = with_health("t", 3);
    task.health_check.as_mut().unwrap().tcp = None;
    h.running(0, task);
    assert_eq!(h.next_timeout_ms(), None);
}
