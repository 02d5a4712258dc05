//! The scheduler core driven by hand: offers, updates and time in, checked outputs out.

use super::*;
use crate::spec::{ConstraintOp, GroupSpec, RestartPolicy};
use mesokit_proto::helpers;
use mesokit_proto::v1::scheduler::event;
use std::collections::HashMap;

fn offer(id: &str, agent: &str, host: &str, cpus: f64, mem: f64) -> Offer {
    Offer {
        id: OfferId { value: id.into() },
        agent_id: AgentId {
            value: agent.into(),
        },
        hostname: host.into(),
        resources: vec![
            helpers::cpus(cpus),
            helpers::mem(mem),
            helpers::ranges("ports", &[(31000, 31099)]),
        ],
        ..Offer::default()
    }
}

fn drain(s: &mut Scheduler) -> Vec<Output> {
    std::iter::from_fn(|| s.poll_output()).collect()
}

fn calls(out: &[Output]) -> Vec<&Call> {
    out.iter()
        .filter_map(|o| match o {
            Output::Call(c) => Some(&**c),
            _ => None,
        })
        .collect()
}

fn call_type(c: &Call) -> call::Type {
    call::Type::try_from(c.r#type.unwrap()).unwrap()
}

fn launched(out: &[Output]) -> Vec<mesokit_proto::v1::TaskInfo> {
    calls(out)
        .into_iter()
        .filter_map(|c| c.accept.as_ref())
        .flat_map(|a| a.operations.iter())
        .flat_map(|op| op.launch.as_ref().unwrap().task_infos.clone())
        .collect()
}

fn update(task: &str, state: TaskState) -> TaskStatus {
    TaskStatus {
        task_id: TaskId { value: task.into() },
        state: state as i32,
        agent_id: Some(AgentId { value: "a1".into() }),
        uuid: Some(helpers::new_uuid()),
        message: Some(format!("{} now", state.as_str_name())),
        ..TaskStatus::default()
    }
}

fn subscribed(s: &mut Scheduler, now: Instant) -> Vec<Output> {
    s.on_subscribed(
        &FrameworkId {
            value: "fw-1".into(),
        },
        now,
    );
    drain(s)
}

fn batch(groups: Vec<GroupSpec>) -> Scheduler {
    let mut job = JobSpec::new("job", JobKind::Batch);
    job.groups = groups;
    job.validate().unwrap();
    Scheduler::new(job, Config::default())
}

#[test]
fn batch_runs_to_completion_with_durable_order() {
    let t0 = Instant::now();
    let mut s = batch(vec![GroupSpec::new("work", 3, "true").ports(1)]);
    let out = subscribed(&mut s, t0);
    assert!(
        matches!(&out[0], Output::Persist(w) if w[0] == Write::Put { key: "framework_id".into(), value: b"fw-1".to_vec() })
    );
    let kinds: Vec<call::Type> = calls(&out).into_iter().map(call_type).collect();
    assert_eq!(
        kinds,
        vec![call::Type::Reconcile],
        "implicit reconcile; no revive needed on a fresh subscription"
    );

    s.on_offers(vec![offer("o1", "a1", "h1", 1.0, 1024.0)], t0);
    let out = drain(&mut s);
    // Persist the three launches, then ACCEPT, then (nothing pending) SUPPRESS.
    let persist_at = out
        .iter()
        .position(|o| matches!(o, Output::Persist(_)))
        .unwrap();
    let accept_at = out
        .iter()
        .position(|o| matches!(o, Output::Call(c) if call_type(c) == call::Type::Accept))
        .unwrap();
    assert!(
        persist_at < accept_at,
        "launches are stored before they are sent"
    );
    let tasks = launched(&out);
    assert_eq!(tasks.len(), 3);
    assert_eq!(tasks[0].task_id.value, "job.work.0.1");
    let env = &tasks[1]
        .command
        .as_ref()
        .unwrap()
        .environment
        .as_ref()
        .unwrap()
        .variables;
    let port0 = env.iter().find(|v| v.name == "PORT0").unwrap();
    assert_eq!(
        port0.value.as_deref(),
        Some("31001"),
        "second task gets the second port"
    );
    assert!(
        calls(&out)
            .iter()
            .any(|c| call_type(c) == call::Type::Suppress)
    );

    for t in &tasks {
        s.on_update(update(&t.task_id.value, TaskState::TaskRunning), t0);
        s.on_update(update(&t.task_id.value, TaskState::TaskFinished), t0);
    }
    let out = drain(&mut s);
    // Every ACKNOWLEDGE comes right after the Persist of its update.
    for (i, o) in out.iter().enumerate() {
        if let Output::Call(c) = o {
            assert_eq!(call_type(c), call::Type::Acknowledge);
            assert!(
                matches!(out[i - 1], Output::Persist(_)),
                "ack at {i} not after a persist"
            );
        }
    }
    let finished = out
        .iter()
        .filter(|o| matches!(o, Output::Event(e) if e.kind == TaskEventKind::Finished))
        .count();
    assert_eq!(finished, 3);
    assert!(s.is_finished() && s.succeeded());
    assert_eq!(s.counts()[0].1.finished, 3);
}

#[test]
fn failures_restart_with_backoff_until_the_policy_gives_up() {
    let t0 = Instant::now();
    let policy = RestartPolicy {
        max_restarts: Some(2),
        ..RestartPolicy::batch_default()
    };
    let mut s = batch(vec![GroupSpec::new("w", 1, "false").restart(policy)]);
    subscribed(&mut s, t0);
    let mut now = t0;
    for attempt in 1..=3u32 {
        s.on_offers(
            vec![offer(&format!("o{attempt}"), "a1", "h1", 1.0, 100.0)],
            now,
        );
        let tasks = launched(&drain(&mut s));
        assert_eq!(tasks.len(), 1, "attempt {attempt}");
        assert_eq!(tasks[0].task_id.value, format!("job.w.0.{attempt}"));
        s.on_update(update(&tasks[0].task_id.value, TaskState::TaskFailed), now);
        let out = drain(&mut s);
        if attempt == 3 {
            assert!(
                out.iter()
                    .any(|o| matches!(o, Output::Event(e) if e.kind == TaskEventKind::GaveUp))
            );
            break;
        }
        let delay = out
            .iter()
            .find_map(|o| match o {
                Output::Event(TaskEvent {
                    kind: TaskEventKind::Restarting { delay, .. },
                    ..
                }) => Some(*delay),
                _ => None,
            })
            .unwrap();
        assert_eq!(
            delay,
            Duration::from_secs(1 << (attempt - 1)),
            "1 s, then 2 s"
        );
        assert_eq!(s.next_timeout(), Some(now + delay));
        // Before the backoff ends an offer is declined.
        s.on_offers(vec![offer("early", "a1", "h1", 1.0, 100.0)], now);
        let out = drain(&mut s);
        assert!(launched(&out).is_empty());
        assert!(
            calls(&out)
                .iter()
                .any(|c| call_type(c) == call::Type::Decline)
        );
        now += delay;
        s.tick(now);
        let out = drain(&mut s);
        assert!(
            calls(&out)
                .iter()
                .any(|c| call_type(c) == call::Type::Revive),
            "revive when the backoff ends"
        );
    }
    assert!(s.is_finished());
    assert!(!s.succeeded());
    assert_eq!(s.counts()[0].1.failed, 1);
    assert_eq!(s.counts()[0].1.restarts, 2);
}

#[test]
fn restored_tasks_are_reconciled_not_relaunched() {
    let t0 = Instant::now();
    let mut first = batch(vec![GroupSpec::new("w", 2, "sleep 9")]);
    subscribed(&mut first, t0);
    first.on_offers(vec![offer("o1", "a1", "h1", 1.0, 100.0)], t0);
    let out = drain(&mut first);
    let mut store: std::collections::BTreeMap<String, Vec<u8>> = Default::default();
    store.insert("framework_id".into(), b"fw-1".to_vec());
    for o in &out {
        if let Output::Persist(ws) = o {
            for w in ws {
                if let Write::Put { key, value } = w {
                    store.insert(key.clone(), value.clone());
                }
            }
        }
    }
    // A stale record of a group the spec no longer has.
    let mut gone = Record::decode(&store["tasks/w.0"]).unwrap();
    gone.group = "old".into();
    gone.task_id = "job.old.0.1".into();
    store.insert("tasks/old.0".into(), gone.encode());

    let mut second = batch(vec![GroupSpec::new("w", 2, "sleep 9")]);
    let warnings = second.restore(store.into_iter().collect());
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(second.framework_info().id.unwrap().value, "fw-1");
    let out = drain(&mut second);
    assert!(
        matches!(&out[0], Output::Persist(w) if w == &vec![Write::Delete { key: "tasks/old.0".into() }])
    );
    let out = subscribed(&mut second, t0);
    assert!(
        !out.iter().any(|o| matches!(o, Output::Persist(_))),
        "same framework id: nothing to store"
    );
    let cs = calls(&out);
    let explicit = cs
        .iter()
        .find(|c| c.reconcile.as_ref().is_some_and(|r| !r.tasks.is_empty()))
        .unwrap();
    let ids: Vec<&str> = explicit
        .reconcile
        .as_ref()
        .unwrap()
        .tasks
        .iter()
        .map(|t| t.task_id.value.as_str())
        .collect();
    assert_eq!(ids, vec!["job.w.0.1", "job.w.1.1"]);
    assert!(cs.iter().any(|c| {
        c.kill
            .as_ref()
            .is_some_and(|k| k.task_id.value == "job.old.0.1")
    }));
    second.on_offers(vec![offer("o2", "a1", "h1", 1.0, 100.0)], t0);
    assert!(
        launched(&drain(&mut second)).is_empty(),
        "nothing relaunched"
    );
    // The master does not know one of them: TASK_LOST from reconciliation relaunches it.
    let mut lost = update("job.w.1.1", TaskState::TaskLost);
    lost.uuid = None;
    second.on_update(lost, t0);
    let out = drain(&mut second);
    assert!(
        !calls(&out)
            .iter()
            .any(|c| call_type(c) == call::Type::Acknowledge),
        "no uuid, no ack"
    );
    second.tick(t0 + Duration::from_secs(1));
    drain(&mut second);
    second.on_offers(
        vec![offer("o3", "a1", "h1", 1.0, 100.0)],
        t0 + Duration::from_secs(1),
    );
    let tasks = launched(&drain(&mut second));
    assert_eq!(tasks.len(), 1);
    assert_eq!(tasks[0].task_id.value, "job.w.1.2");
}

#[test]
fn unknown_and_stale_tasks_are_killed_and_acknowledged() {
    let t0 = Instant::now();
    let mut s = batch(vec![GroupSpec::new("w", 1, "x")]);
    subscribed(&mut s, t0);
    s.on_update(update("someone.else", TaskState::TaskRunning), t0);
    let out = drain(&mut s);
    let kinds: Vec<call::Type> = calls(&out).into_iter().map(call_type).collect();
    assert_eq!(kinds, vec![call::Type::Kill, call::Type::Acknowledge]);
    s.on_update(update("someone.else", TaskState::TaskKilled), t0);
    let kinds: Vec<call::Type> = calls(&drain(&mut s)).into_iter().map(call_type).collect();
    assert_eq!(kinds, vec![call::Type::Acknowledge]);
}

#[test]
fn priorities_and_constraints_decide_placement() {
    let t0 = Instant::now();
    let low = GroupSpec::new("low", 2, "x").resources(1.0, 10.0);
    let high = GroupSpec::new("high", 2, "x")
        .resources(1.0, 10.0)
        .priority(10)
        .constraint("hostname", ConstraintOp::Unique);
    let mut s = batch(vec![low, high]);
    subscribed(&mut s, t0);
    s.on_offers(vec![offer("o1", "a1", "h1", 2.0, 100.0)], t0);
    let tasks = launched(&drain(&mut s));
    let names: Vec<&str> = tasks.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(
        names,
        vec!["job.high.0", "job.low.0"],
        "high first; UNIQUE keeps the second high off h1"
    );
    s.on_offers(vec![offer("o2", "a2", "h2", 2.0, 100.0)], t0);
    let tasks = launched(&drain(&mut s));
    let names: Vec<&str> = tasks.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, vec!["job.high.1", "job.low.1"]);
}

#[test]
fn scale_and_rolling_restart() {
    let t0 = Instant::now();
    let mut job = JobSpec::new("svc", JobKind::Service);
    job.groups.push(GroupSpec {
        restart: RestartPolicy::service_default(),
        ..GroupSpec::new("web", 2, "serve")
    });
    let mut s = Scheduler::new(job, Config::default());
    subscribed(&mut s, t0);
    s.on_offers(vec![offer("o1", "a1", "h1", 4.0, 1000.0)], t0);
    let tasks = launched(&drain(&mut s));
    for t in &tasks {
        s.on_update(update(&t.task_id.value, TaskState::TaskRunning), t0);
    }
    drain(&mut s);
    assert_eq!(s.counts()[0].1.running, 2);

    s.scale("web", 3, t0).unwrap();
    let out = drain(&mut s);
    assert!(
        calls(&out)
            .iter()
            .any(|c| call_type(c) == call::Type::Revive)
    );
    s.on_offers(vec![offer("o2", "a1", "h1", 4.0, 1000.0)], t0);
    let t3 = launched(&drain(&mut s));
    assert_eq!(t3[0].task_id.value, "svc.web.2.1");

    s.scale("web", 1, t0).unwrap();
    let out = drain(&mut s);
    let killed: Vec<&str> = calls(&out)
        .iter()
        .filter_map(|c| c.kill.as_ref())
        .map(|k| k.task_id.value.as_str())
        .collect();
    assert_eq!(killed, vec!["svc.web.1.1", "svc.web.2.1"]);
    s.on_update(update("svc.web.1.1", TaskState::TaskKilled), t0);
    let out = drain(&mut s);
    assert!(
        matches!(&out[0], Output::Persist(w) if w == &vec![Write::Delete { key: "tasks/web.1".into() }])
    );
    assert!(!out.iter().any(|o| matches!(
        o,
        Output::Event(TaskEvent {
            kind: TaskEventKind::Restarting { .. },
            ..
        })
    )));
    assert!(s.scale("nope", 1, t0).is_err());

    // Rolling restart of the one left: killed, relaunched at once without counting a restart.
    s.rolling_restart("web", t0).unwrap();
    let out = drain(&mut s);
    assert!(calls(&out).iter().any(|c| {
        c.kill
            .as_ref()
            .is_some_and(|k| k.task_id.value == "svc.web.0.1")
    }));
    s.on_update(update("svc.web.0.1", TaskState::TaskKilled), t0);
    drain(&mut s);
    s.on_offers(vec![offer("o3", "a1", "h1", 4.0, 1000.0)], t0);
    let t = launched(&drain(&mut s));
    assert_eq!(t[0].task_id.value, "svc.web.0.2");
    assert_eq!(s.counts()[0].1.restarts, 0);

    // Stop: every live task killed; nothing restarts; the job is then finished.
    s.stop();
    let out = drain(&mut s);
    assert!(calls(&out).iter().any(|c| {
        c.kill
            .as_ref()
            .is_some_and(|k| k.task_id.value == "svc.web.0.2")
    }));
    assert!(!s.is_finished());
    s.on_update(update("svc.web.0.2", TaskState::TaskKilled), t0);
    s.on_update(update("svc.web.2.1", TaskState::TaskKilled), t0);
    drain(&mut s);
    assert!(
        s.is_finished(),
        "{:?}",
        s.records()
            .map(|(r, _)| (r.task_id.clone(), r.phase))
            .collect::<Vec<_>>()
    );
}

#[test]
fn simulation_many_agents_many_tasks() {
    // 10,000 agents' offers and 100,000 tasks (the benchmark times the same cycle): every
    // task placed once, no agent over-committed, every task finished.
    let t0 = Instant::now();
    let mut s = batch(vec![
        GroupSpec::new("a", 60_000, "x")
            .resources(0.5, 64.0)
            .ports(1),
        GroupSpec::new("b", 40_000, "x")
            .resources(1.0, 128.0)
            .priority(1),
    ]);
    subscribed(&mut s, t0);
    let offers: Vec<Offer> = (0..10_000)
        .map(|i| {
            offer(
                &format!("o{i}"),
                &format!("a{i}"),
                &format!("h{i}"),
                8.0,
                4096.0,
            )
        })
        .collect();
    s.on_offers(offers, t0);
    let out = drain(&mut s);
    let tasks = launched(&out);
    assert_eq!(tasks.len(), 100_000);
    let mut per_agent: HashMap<String, f64> = HashMap::new();
    let mut ids = std::collections::HashSet::new();
    for t in &tasks {
        assert!(ids.insert(t.task_id.value.clone()));
        let cpus: f64 = t
            .resources
            .iter()
            .filter(|r| r.name == "cpus")
            .map(|r| r.scalar.as_ref().unwrap().value)
            .sum();
        *per_agent.entry(t.agent_id.value.clone()).or_default() += cpus;
    }
    assert!(per_agent.values().all(|c| *c <= 8.0 + 1e-9));
    for t in &tasks {
        s.on_update(update(&t.task_id.value, TaskState::TaskFinished), t0);
    }
    drain(&mut s);
    assert!(s.is_finished() && s.succeeded());
}

#[test]
fn subscribed_event_through_on_event() {
    let t0 = Instant::now();
    let mut s = batch(vec![GroupSpec::new("w", 1, "x")]);
    s.on_event(
        Event {
            r#type: Some(event::Type::Subscribed as i32),
            subscribed: Some(event::Subscribed {
                framework_id: FrameworkId { value: "f".into() },
                ..event::Subscribed::default()
            }),
            ..Event::default()
        },
        t0,
    );
    assert!(s.is_connected());
    assert_eq!(s.framework_id(), Some("f"));
}

#[test]
fn implicit_reconciliation_and_idle_declines() {
    let t0 = Instant::now();
    let config = Config {
        reconcile_interval: Duration::from_secs(60),
        ..Config::default()
    };
    let mut job = JobSpec::new("job", JobKind::Batch);
    job.groups.push(GroupSpec::new("w", 1, "x"));
    let mut s = Scheduler::new(job, config);
    subscribed(&mut s, t0);
    assert_eq!(s.next_timeout(), Some(t0 + Duration::from_secs(60)));
    s.tick(t0 + Duration::from_secs(59));
    assert!(drain(&mut s).is_empty());
    s.tick(t0 + Duration::from_secs(60));
    let out = drain(&mut s);
    let r = calls(&out)[0].reconcile.as_ref().unwrap();
    assert!(r.tasks.is_empty(), "implicit: no task list");
    assert_eq!(s.next_timeout(), Some(t0 + Duration::from_secs(120)));

    // Launch the only instance; further offers are declined for long, and offers are suppressed.
    s.on_offers(vec![offer("o1", "a1", "h1", 1.0, 100.0)], t0);
    let out = drain(&mut s);
    assert!(
        calls(&out)
            .iter()
            .any(|c| call_type(c) == call::Type::Suppress)
    );
    s.on_offers(vec![offer("o2", "a1", "h1", 1.0, 100.0)], t0);
    let out = drain(&mut s);
    let d = calls(&out)[0].decline.as_ref().unwrap();
    assert_eq!(d.filters.as_ref().unwrap().refuse_seconds, Some(120.0));
    assert!(
        !calls(&out)
            .iter()
            .any(|c| call_type(c) == call::Type::Suppress),
        "suppressed once"
    );
}

#[test]
fn odd_offers_are_declined_not_misused() {
    use mesokit_proto::v1::resource::RevocableInfo;
    let t0 = Instant::now();
    let mut s = batch(vec![GroupSpec::new("w", 1, "x").resources(1.0, 10.0)]);
    subscribed(&mut s, t0);
    let mut revocable = helpers::cpus(16.0);
    revocable.revocable = Some(RevocableInfo {});
    let mut odd = offer("o1", "a1", "h1", 0.5, 100.0);
    odd.resources.push(revocable);
    odd.resources.push(helpers::scalar("bananas", 3.0));
    s.on_offers(vec![odd], t0);
    let out = drain(&mut s);
    assert!(launched(&out).is_empty(), "0.5 usable cpus do not fit 1.0");
    assert!(
        calls(&out)
            .iter()
            .any(|c| call_type(c) == call::Type::Decline)
    );
    assert_eq!(s.counts()[0].1.pending, 1);
}

#[test]
fn repeated_states_are_not_written_again() {
    let t0 = Instant::now();
    let mut s = batch(vec![GroupSpec::new("w", 1, "sleep 9")]);
    subscribed(&mut s, t0);
    s.on_offers(vec![offer("o1", "a1", "h1", 1.0, 100.0)], t0);
    drain(&mut s);
    s.on_update(update("job.w.0.1", TaskState::TaskRunning), t0);
    let out = drain(&mut s);
    assert!(
        matches!(out[0], Output::Persist(_)),
        "STAGING -> RUNNING is stored"
    );
    // A reconciliation answer (no uuid) repeating RUNNING: nothing to store, nothing to ack.
    let mut again = update("job.w.0.1", TaskState::TaskRunning);
    again.uuid = None;
    s.on_update(again, t0);
    assert!(drain(&mut s).is_empty());
    // A health change alone is not stored either (health is not part of the record), but
    // an update with a uuid is still acknowledged.
    let mut healthy = update("job.w.0.1", TaskState::TaskRunning);
    healthy.healthy = Some(true);
    s.on_update(healthy, t0);
    let out = drain(&mut s);
    assert!(!out.iter().any(|o| matches!(o, Output::Persist(_))));
    assert_eq!(calls(&out).len(), 1);
    assert!(
        out.iter()
            .any(|o| matches!(o, Output::Event(e) if e.kind == TaskEventKind::Healthy))
    );
}
