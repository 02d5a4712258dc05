//! The master's behaviour, replayed call by call with no sockets and a hand-driven clock.

use std::time::{Duration, Instant};

use bytes::Bytes;
use mesokit_proto::helpers::{self, new_uuid};
use mesokit_proto::resources::Resources;
use mesokit_proto::v1::{
    self, TaskState,
    framework_info::Capability,
    framework_info::capability::Type as Cap,
    offer::operation,
    scheduler::{self, call, event},
    task_status::{Reason, Source},
};

use super::{CallError, CallOk, Master, MasterConfig, Output, StreamId};
use crate::messages::{ToAgent, ToMaster};

const EPOCH: f64 = 1_700_000_000.0;

/// A master with one agent (`cpus:4;mem:1024;disk:2048;ports:[31000-32000]`), driven by hand.
struct World {
    m: Master,
    now: Instant,
    agent: v1::AgentId,
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn agent_info(resources: &str) -> v1::AgentInfo {
    v1::AgentInfo {
        hostname: "localhost".into(),
        port: Some(5051),
        resources: Resources::parse(resources).unwrap().into_vec(),
        attributes: mesokit_proto::resources::parse_attributes("rack:r1").unwrap(),
        ..Default::default()
    }
}

fn framework_info(caps: &[Cap]) -> v1::FrameworkInfo {
    v1::FrameworkInfo {
        user: "alice".into(),
        name: "demo".into(),
        capabilities: caps
            .iter()
            .map(|c| Capability {
                r#type: Some(*c as i32),
            })
            .collect(),
        ..Default::default()
    }
}

fn subscribe_call(info: v1::FrameworkInfo) -> scheduler::Call {
    scheduler::Call {
        framework_id: info.id.clone(),
        r#type: Some(call::Type::Subscribe as i32),
        subscribe: Some(Box::new(call::Subscribe {
            framework_info: info,
            ..Default::default()
        })),
        ..Default::default()
    }
}

/// The message of the ERROR event `o` sends on `stream`, if it is one.
fn error_on(o: &Output, stream: StreamId) -> Option<&str> {
    match o {
        Output::Event { stream: s, event } if *s == stream => {
            event.error.as_ref().map(|e| e.message.as_str())
        }
        _ => None,
    }
}

fn event_type(e: &scheduler::Event) -> event::Type {
    event::Type::try_from(e.r#type.unwrap()).unwrap()
}

/// A subscribed framework: its id, stream and `Mesos-Stream-Id`.
#[derive(Clone)]
struct Sub {
    id: v1::FrameworkId,
    stream: StreamId,
    stream_id: String,
}

impl World {
    fn new() -> World {
        World::with(MasterConfig::default())
    }

    fn with(config: MasterConfig) -> World {
        let now = Instant::now();
        let config = MasterConfig {
            master_id: "M".into(),
            ..config
        };
        let mut m = Master::with_wall_clock(config, now, EPOCH);
        let agent = m.add_agent(
            now,
            agent_info("cpus:4;mem:1024;disk:2048;ports:[31000-32000]"),
            "slave(1)@127.0.0.1:5051".into(),
        );
        World { m, now, agent }
    }

    fn advance(&mut self, d: Duration) {
        self.now += d;
    }

    fn tick(&mut self) {
        self.m.tick(self.now);
    }

    fn drain(&mut self) -> Vec<Output> {
        std::iter::from_fn(|| self.m.poll_output()).collect()
    }

    /// Events on `stream`, dropping everything else.
    fn events(&mut self, stream: StreamId) -> Vec<scheduler::Event> {
        self.drain()
            .into_iter()
            .filter_map(|o| match o {
                Output::Event { stream: s, event } if s == stream => Some(event),
                _ => None,
            })
            .collect()
    }

    fn agent_msgs(&mut self) -> Vec<ToAgent> {
        self.drain()
            .into_iter()
            .filter_map(|o| match o {
                Output::Agent { msg, .. } => Some(msg),
                _ => None,
            })
            .collect()
    }

    fn subscribe(&mut self, stream: StreamId, info: v1::FrameworkInfo) -> Sub {
        let s = self
            .m
            .subscribe(self.now, stream, subscribe_call(info))
            .unwrap();
        Sub {
            id: s.framework_id,
            stream,
            stream_id: s.stream_id,
        }
    }

    fn call(&mut self, sub: &Sub, mut call: scheduler::Call) -> Result<CallOk, CallError> {
        call.framework_id = Some(sub.id.clone());
        self.m.call(self.now, Some(&sub.stream_id), call)
    }

    /// Ticks and returns the offers `sub` got.
    fn offers(&mut self, sub: &Sub) -> Vec<v1::Offer> {
        self.tick();
        self.events(sub.stream)
            .into_iter()
            .filter(|e| event_type(e) == event::Type::Offers)
            .flat_map(|e| e.offers.unwrap().offers)
            .collect()
    }

    fn accept(&mut self, sub: &Sub, offers: &[&v1::Offer], ops: Vec<v1::offer::Operation>) {
        let ok = self.call(
            sub,
            scheduler::Call {
                r#type: Some(call::Type::Accept as i32),
                accept: Some(call::Accept {
                    offer_ids: offers.iter().map(|o| o.id.clone()).collect(),
                    operations: ops,
                    filters: None,
                }),
                ..Default::default()
            },
        );
        assert_eq!(ok, Ok(CallOk::Accepted));
    }

    fn status(&mut self, sub: &Sub, task: &str, state: TaskState) -> Bytes {
        let uuid = new_uuid();
        self.m.handle_agent(
            self.now,
            ToMaster::StatusUpdate {
                agent_id: self.agent.clone(),
                framework_id: sub.id.clone(),
                status: v1::TaskStatus {
                    task_id: v1::TaskId { value: task.into() },
                    state: state as i32,
                    source: Some(Source::Executor as i32),
                    executor_id: Some(v1::ExecutorId { value: task.into() }),
                    timestamp: Some(EPOCH + 1.0),
                    uuid: Some(uuid.clone()),
                    data: Some(Bytes::from_static(b"opaque")),
                    ..Default::default()
                },
                latest_state: state,
            },
        );
        uuid
    }

    fn ack(&mut self, sub: &Sub, task: &str, uuid: Bytes) -> Result<CallOk, CallError> {
        let agent_id = self.agent.clone();
        self.call(
            sub,
            scheduler::Call {
                r#type: Some(call::Type::Acknowledge as i32),
                acknowledge: Some(call::Acknowledge {
                    agent_id,
                    task_id: v1::TaskId { value: task.into() },
                    uuid,
                }),
                ..Default::default()
            },
        )
    }

    fn simple(&mut self, sub: &Sub, ty: call::Type) -> Result<CallOk, CallError> {
        self.call(
            sub,
            scheduler::Call {
                r#type: Some(ty as i32),
                ..Default::default()
            },
        )
    }
}

fn launch(tasks: Vec<v1::TaskInfo>) -> v1::offer::Operation {
    v1::offer::Operation {
        r#type: Some(operation::Type::Launch as i32),
        launch: Some(operation::Launch { task_infos: tasks }),
        ..Default::default()
    }
}

fn command_task(id: &str, agent: &v1::AgentId, cpus: f64, mem: f64) -> v1::TaskInfo {
    helpers::TaskBuilder::new(id, id, &agent.value)
        .cpus(cpus)
        .mem(mem)
        .shell("sleep 10")
        .build()
}

fn updates(events: Vec<scheduler::Event>) -> Vec<v1::TaskStatus> {
    events
        .into_iter()
        .filter(|e| event_type(e) == event::Type::Update)
        .map(|e| e.update.unwrap().status)
        .collect()
}

fn state(s: &v1::TaskStatus) -> TaskState {
    TaskState::try_from(s.state).unwrap()
}

fn reason(s: &v1::TaskStatus) -> Reason {
    Reason::try_from(s.reason.unwrap()).unwrap()
}

fn decline_call(offers: &[v1::Offer], refuse: Option<f64>) -> scheduler::Call {
    scheduler::Call {
        r#type: Some(call::Type::Decline as i32),
        decline: Some(call::Decline {
            offer_ids: offers.iter().map(|o| o.id.clone()).collect(),
            filters: refuse.map(|r| v1::Filters {
                refuse_seconds: Some(r),
            }),
        }),
        ..Default::default()
    }
}

// ---------------------------------------------------------------------------------------------
// Subscription
// ---------------------------------------------------------------------------------------------

#[test]
fn subscribe_sends_subscribed_then_heartbeat() {
    let mut w = World::new();
    let sub = w.subscribe(1, framework_info(&[]));
    assert_eq!(sub.id.value, "M-0000");
    assert_eq!(sub.stream_id.len(), 36);

    let events = w.events(1);
    assert_eq!(events.len(), 2);
    assert_eq!(event_type(&events[0]), event::Type::Subscribed);
    let subscribed = events[0].subscribed.as_ref().unwrap();
    assert_eq!(subscribed.framework_id, sub.id);
    assert_eq!(subscribed.heartbeat_interval_seconds, Some(15.0));
    let info = subscribed.master_info.as_ref().unwrap();
    assert_eq!(info.id, "M");
    assert_eq!(info.ip, 16_777_343);
    assert_eq!(info.pid.as_deref(), Some("master@127.0.0.1:5050"));
    assert_eq!(event_type(&events[1]), event::Type::Heartbeat);

    // Framework ids count up.
    let second = w.subscribe(2, framework_info(&[]));
    assert_eq!(second.id.value, "M-0001");
}

#[test]
fn heartbeats_follow_every_interval() {
    let mut w = World::new();
    let sub = w.subscribe(1, framework_info(&[]));
    w.drain();
    w.advance(secs(14));
    w.tick();
    assert!(
        w.events(1)
            .iter()
            .all(|e| event_type(e) != event::Type::Heartbeat)
    );
    w.advance(secs(1));
    w.tick();
    let beats = w
        .events(sub.stream)
        .iter()
        .filter(|e| event_type(e) == event::Type::Heartbeat)
        .count();
    assert_eq!(beats, 1);
}

#[test]
fn resubscribe_fails_over_the_old_stream() {
    let mut w = World::new();
    let mut info = framework_info(&[]);
    let first = w.subscribe(1, info.clone());
    let offers = w.offers(&first);
    assert_eq!(offers.len(), 1);

    info.id = Some(first.id.clone());
    info.name = "renamed".into();
    info.user = "mallory".into();
    let second = w.subscribe(2, info);
    assert_eq!(second.id, first.id);
    assert_ne!(second.stream_id, first.stream_id);

    let out = w.drain();
    // The old stream gets ERROR and is closed; the offer is discarded without RESCIND.
    assert_eq!(error_on(&out[0], 1), Some("Framework failed over"));
    assert_eq!(out[1], Output::CloseStream { stream: 1 });
    let new_events: Vec<_> = out
        .iter()
        .filter_map(|o| match o {
            Output::Event { stream: 2, event } => Some(event_type(event)),
            _ => None,
        })
        .collect();
    assert_eq!(
        new_events,
        [event::Type::Subscribed, event::Type::Heartbeat]
    );
    assert!(
        !out.iter()
            .any(|o| matches!(o, Output::Event { event, .. } if event.rescind.is_some()))
    );

    // Calls with the old stream id are refused; the new one works.
    let err =
        w.m.call(
            w.now,
            Some(&first.stream_id),
            scheduler::Call {
                framework_id: Some(first.id.clone()),
                r#type: Some(call::Type::Revive as i32),
                ..Default::default()
            },
        )
        .unwrap_err();
    assert_eq!(err.status, 400);
    assert_eq!(w.simple(&second, call::Type::Revive), Ok(CallOk::Accepted));

    // Name changed; user change ignored. The whole agent is offered again.
    let state: serde_like::Value = serde_like::parse(&w.m.frameworks_json(None));
    assert_eq!(state.get("frameworks").idx(0).get("name").str(), "renamed");
    assert_eq!(state.get("frameworks").idx(0).get("user").str(), "alice");
    let offers = w.offers(&second);
    assert_eq!(offers.len(), 1);
    // The old stream closing later changes nothing.
    w.m.stream_closed(w.now, 1);
    assert_eq!(w.simple(&second, call::Type::Revive), Ok(CallOk::Accepted));
}

#[test]
fn disconnect_with_zero_failover_timeout_removes_the_framework() {
    let mut w = World::new();
    let sub = w.subscribe(1, framework_info(&[]));
    let offers = w.offers(&sub);
    w.accept(
        &sub,
        &[&offers[0]],
        vec![launch(vec![command_task("t1", &w.agent, 1.0, 128.0)])],
    );
    w.drain();

    w.m.stream_closed(w.now, 1);
    let out = w.drain();
    assert!(out.contains(&Output::Agent {
        agent_id: w.agent.clone(),
        msg: ToAgent::ShutdownFramework {
            framework_id: sub.id.clone()
        },
    }));

    // The task is completed as TASK_KILLED / REASON_FRAMEWORK_REMOVED.
    let fw = serde_like::parse(&w.m.frameworks_json(None));
    assert_eq!(fw.get("frameworks").len(), 0);
    let done = fw.get("completed_frameworks").idx(0);
    assert_eq!(done.get("id").str(), sub.id.value);
    let task = done.get("completed_tasks").idx(0);
    assert_eq!(task.get("state").str(), "TASK_KILLED");

    // Calls now find no framework; a re-SUBSCRIBE gets ERROR "Framework has been removed".
    let err = w.simple(&sub, call::Type::Revive).unwrap_err();
    assert_eq!(
        err,
        CallError {
            status: 400,
            message: "Framework cannot be found".into()
        }
    );
    let mut info = framework_info(&[]);
    info.id = Some(sub.id.clone());
    let again = w.m.subscribe(w.now, 2, subscribe_call(info)).unwrap();
    assert_eq!(again.framework_id, sub.id);
    let out = w.drain();
    assert_eq!(error_on(&out[0], 2), Some("Framework has been removed"));
    assert_eq!(out[1], Output::CloseStream { stream: 2 });

    // All resources are back.
    let state = serde_like::parse(&w.m.state_json(w.now));
    assert_eq!(
        state
            .get("slaves")
            .idx(0)
            .get("used_resources")
            .get("cpus")
            .num(),
        0.0
    );
}

#[test]
fn failover_timeout_keeps_the_framework_until_it_expires() {
    let mut w = World::new();
    let mut info = framework_info(&[]);
    info.failover_timeout = Some(10.0);
    let sub = w.subscribe(1, info.clone());
    let offers = w.offers(&sub);
    assert_eq!(offers.len(), 1);
    w.m.stream_closed(w.now, 1);
    // Nothing goes to the closed stream; the offer is taken back.
    assert!(w.drain().is_empty());
    assert!(
        serde_like::parse(&w.m.state_json(w.now))
            .get("frameworks")
            .idx(0)
            .get("offers")
            .len()
            == 0
    );

    // Disconnected: 403, no offers; the framework can come back.
    assert_eq!(w.simple(&sub, call::Type::Revive).unwrap_err().status, 403);
    assert_eq!(
        w.simple(&sub, call::Type::Revive).unwrap_err().message,
        "Framework is not subscribed"
    );
    assert_eq!(w.m.next_timeout(), Some(w.now + secs(1)));
    w.advance(secs(9));
    w.tick();
    assert!(w.drain().is_empty());
    w.advance(secs(1));
    w.tick();
    let out = w.drain();
    assert!(out.iter().any(|o| matches!(
        o,
        Output::Agent {
            msg: ToAgent::ShutdownFramework { .. },
            ..
        }
    )));
    assert_eq!(w.simple(&sub, call::Type::Revive).unwrap_err().status, 400);
}

#[test]
fn teardown_closes_the_stream() {
    let mut w = World::new();
    let sub = w.subscribe(1, framework_info(&[]));
    w.drain();
    assert_eq!(w.simple(&sub, call::Type::Teardown), Ok(CallOk::Accepted));
    let out = w.drain();
    assert!(out.contains(&Output::CloseStream { stream: 1 }));
    assert!(out.contains(&Output::Agent {
        agent_id: w.agent.clone(),
        msg: ToAgent::ShutdownFramework {
            framework_id: sub.id.clone()
        }
    }));
}

#[test]
fn operator_teardown() {
    let mut w = World::new();
    let sub = w.subscribe(1, framework_info(&[]));
    w.drain();
    let err = w.m.teardown(w.now, "nope").unwrap_err();
    assert_eq!(
        (err.status, err.message.as_str()),
        (400, "No framework found with specified ID")
    );
    assert_eq!(w.m.teardown(w.now, &sub.id.value), Ok(()));
    assert!(w.drain().contains(&Output::CloseStream { stream: 1 }));
    assert_eq!(w.simple(&sub, call::Type::Revive).unwrap_err().status, 400);
}

#[test]
fn invalid_subscriptions() {
    let mut w = World::new();
    // framework_id must equal framework_info.id: 400 before any stream.
    let mut call = subscribe_call(framework_info(&[]));
    call.framework_id = Some(v1::FrameworkId { value: "x".into() });
    let err = w.m.subscribe(w.now, 1, call).unwrap_err();
    assert_eq!(err.status, 400);
    assert_eq!(
        err.message,
        "Failed to validate scheduler::Call: 'framework_id' differs from \
         'subscribe.framework_info.id'"
    );

    // Roles without MULTI_ROLE: 200 + ERROR + close.
    let mut info = framework_info(&[]);
    info.roles = vec!["dev".into()];
    w.m.subscribe(w.now, 2, subscribe_call(info)).unwrap();
    let out = w.drain();
    assert_eq!(
        error_on(&out[0], 2),
        Some("'FrameworkInfo.roles' must not be set when the framework is not MULTI_ROLE capable")
    );
    assert_eq!(out[1], Output::CloseStream { stream: 2 });

    // Suppressed roles must be the framework's.
    let mut info = framework_info(&[Cap::MultiRole]);
    info.roles = vec!["dev".into()];
    let mut call = subscribe_call(info);
    call.subscribe.as_mut().unwrap().suppressed_roles = vec!["ops".into()];
    w.m.subscribe(w.now, 3, call).unwrap();
    let out = w.drain();
    assert_eq!(
        error_on(&out[0], 3),
        Some("Suppressed roles { ops } are not contained in the set of roles")
    );
}

// ---------------------------------------------------------------------------------------------
// Offers
// ---------------------------------------------------------------------------------------------

#[test]
fn offers_come_after_a_tick_with_the_agents_free_resources() {
    let mut w = World::new();
    let sub = w.subscribe(1, framework_info(&[]));
    w.drain();
    // An allocation is due at once.
    assert_eq!(w.m.next_timeout(), Some(w.now));
    let offers = w.offers(&sub);
    assert_eq!(offers.len(), 1);
    let o = &offers[0];
    assert_eq!(o.id.value, "M-O0");
    assert_eq!(o.framework_id, sub.id);
    assert_eq!(o.agent_id.value, "M-S0");
    assert_eq!(o.hostname, "localhost");
    let url = o.url.as_ref().unwrap();
    assert_eq!(url.scheme, "http");
    assert_eq!(url.address.ip.as_deref(), Some("127.0.0.1"));
    assert_eq!(url.address.port, 5051);
    assert_eq!(url.path.as_deref(), Some("/slave(1)"));
    assert_eq!(o.attributes[0].name, "rack");
    // Not MULTI_ROLE: no allocation_info; no RESERVATION_REFINEMENT: role "*" set explicitly.
    assert!(o.allocation_info.is_none());
    #[allow(deprecated)]
    for r in &o.resources {
        assert!(r.allocation_info.is_none());
        assert_eq!(r.role.as_deref(), Some("*"));
    }
    let res = Resources::from_vec(o.resources.clone());
    assert_eq!(res.scalar("cpus"), 4.0);
    assert_eq!(res.scalar("mem"), 1024.0);
    assert_eq!(res.scalar("disk"), 2048.0);
    assert_eq!(res.ranges("ports"), [(31000, 32000)]);

    // Offered resources are not offered again.
    assert!(w.offers(&sub).is_empty());
    w.advance(secs(1));
    assert!(w.offers(&sub).is_empty());
}

#[test]
fn multi_role_offers_carry_allocation_info() {
    let mut w = World::new();
    let mut info = framework_info(&[Cap::MultiRole]);
    info.roles = vec!["dev".into()];
    let sub = w.subscribe(1, info);
    let offers = w.offers(&sub);
    let o = &offers[0];
    assert_eq!(
        o.allocation_info.as_ref().unwrap().role.as_deref(),
        Some("dev")
    );
    for r in &o.resources {
        assert_eq!(
            r.allocation_info.as_ref().unwrap().role.as_deref(),
            Some("dev")
        );
    }
}

#[test]
fn decline_filters_the_agent_until_the_filter_expires() {
    let mut w = World::new();
    let sub = w.subscribe(1, framework_info(&[]));
    let offers = w.offers(&sub);
    assert_eq!(
        w.call(&sub, decline_call(&offers, Some(10.0))),
        Ok(CallOk::Accepted)
    );
    w.advance(secs(9));
    assert!(w.offers(&sub).is_empty());
    w.advance(secs(1));
    assert_eq!(w.offers(&sub).len(), 1);
}

#[test]
fn decline_defaults_to_five_seconds_and_zero_means_no_filter() {
    let mut w = World::new();
    let sub = w.subscribe(1, framework_info(&[]));
    let offers = w.offers(&sub);
    w.call(&sub, decline_call(&offers, None)).unwrap();
    w.advance(secs(4));
    assert!(w.offers(&sub).is_empty());
    w.advance(secs(1));
    let offers = w.offers(&sub);
    assert_eq!(offers.len(), 1);

    w.call(&sub, decline_call(&offers, Some(0.0))).unwrap();
    // Declined resources wait for the next periodic cycle.
    w.advance(secs(1));
    assert_eq!(w.offers(&sub).len(), 1);
}

#[test]
fn revive_clears_filters_and_suppress_stops_offers() {
    let mut w = World::new();
    let sub = w.subscribe(1, framework_info(&[]));
    let offers = w.offers(&sub);
    w.call(&sub, decline_call(&offers, Some(3600.0))).unwrap();
    w.advance(secs(1));
    assert!(w.offers(&sub).is_empty());

    assert_eq!(w.simple(&sub, call::Type::Revive), Ok(CallOk::Accepted));
    let offers = w.offers(&sub);
    assert_eq!(offers.len(), 1);

    // SUPPRESS keeps the outstanding offer but stops new ones.
    assert_eq!(w.simple(&sub, call::Type::Suppress), Ok(CallOk::Accepted));
    w.call(&sub, decline_call(&offers, Some(0.0))).unwrap();
    w.advance(secs(5));
    assert!(w.offers(&sub).is_empty());
    w.simple(&sub, call::Type::Revive).unwrap();
    assert_eq!(w.offers(&sub).len(), 1);
}

#[test]
fn offer_timeout_rescinds() {
    let mut w = World::with(MasterConfig {
        offer_timeout: Some(secs(30)),
        ..MasterConfig::default()
    });
    let sub = w.subscribe(1, framework_info(&[]));
    let offers = w.offers(&sub);
    assert_eq!(w.m.next_timeout(), Some(w.now + secs(1)));
    w.advance(secs(30));
    w.m.tick(w.now);
    let events = w.events(1);
    let rescind = events
        .iter()
        .find(|e| event_type(e) == event::Type::Rescind)
        .unwrap();
    assert_eq!(rescind.rescind.as_ref().unwrap().offer_id, offers[0].id);
}

#[test]
fn two_frameworks_share_agents_one_offer_per_agent() {
    /// The streams that got an OFFERS event.
    fn offered_streams(out: Vec<Output>) -> Vec<StreamId> {
        out.into_iter()
            .filter_map(|o| match o {
                Output::Event { stream, event } if event.offers.is_some() => Some(stream),
                _ => None,
            })
            .collect()
    }
    let mut w = World::new();
    w.subscribe(1, framework_info(&[]));
    w.subscribe(2, framework_info(&[]));
    w.tick();
    // The one agent goes to one framework (the first by id when shares tie).
    assert_eq!(offered_streams(w.drain()), [1]);

    // A second agent goes to the framework that has nothing yet.
    w.m.add_agent(
        w.now,
        agent_info("cpus:2;mem:512"),
        "slave(1)@127.0.0.1:5052".into(),
    );
    w.tick();
    assert_eq!(offered_streams(w.drain()), [2]);
}

// ---------------------------------------------------------------------------------------------
// ACCEPT
// ---------------------------------------------------------------------------------------------

#[test]
fn accept_launches_a_command_task_in_staging() {
    let mut w = World::new();
    let sub = w.subscribe(1, framework_info(&[]));
    let offers = w.offers(&sub);
    let task = command_task("t1", &w.agent, 0.5, 64.0);
    w.accept(&sub, &[&offers[0]], vec![launch(vec![task])]);

    let msgs = w.agent_msgs();
    assert_eq!(msgs.len(), 1);
    let ToAgent::RunTask {
        framework,
        executor,
        task,
    } = &msgs[0]
    else {
        panic!("expected RunTask, got {msgs:?}");
    };
    assert_eq!(framework.id.as_ref(), Some(&sub.id));
    assert!(executor.is_none());
    assert_eq!(task.task_id.value, "t1");
    // Task resources carry allocation_info (the offer's role).
    assert!(
        task.resources
            .iter()
            .all(|r| r.allocation_info.as_ref().unwrap().role.as_deref() == Some("*"))
    );

    // The task is STAGING and holds its resources; no event is sent for STAGING.
    let state = serde_like::parse(&w.m.state_json(w.now));
    let fw = state.get("frameworks").idx(0);
    let t = fw.get("tasks").idx(0);
    assert_eq!(t.get("state").str(), "TASK_STAGING");
    assert_eq!(t.get("executor_id").str(), "");
    assert_eq!(t.get("role").str(), "*");
    assert_eq!(fw.get("used_resources").get("cpus").num(), 0.5);
    assert_eq!(fw.get("offers").len(), 0);
    let slave = state.get("slaves").idx(0);
    assert_eq!(slave.get("used_resources").get("mem").num(), 64.0);
    assert_eq!(slave.get("offered_resources").get("cpus").num(), 0.0);

    // The rest was declined with the default 5 s filter.
    w.advance(secs(4));
    assert!(w.offers(&sub).is_empty());
    w.advance(secs(1));
    let offers = w.offers(&sub);
    let res = Resources::from_vec(offers[0].resources.clone());
    assert_eq!(res.scalar("cpus"), 3.5);
    assert_eq!(res.scalar("mem"), 960.0);
}

#[test]
fn ports_are_accounted_across_two_launches() {
    let mut w = World::new();
    let sub = w.subscribe(1, framework_info(&[]));
    let offers = w.offers(&sub);
    let t1 = helpers::TaskBuilder::new("a", "a", &w.agent.value)
        .cpus(1.0)
        .mem(32.0)
        .ports(&[31000, 31001])
        .shell("true")
        .build();
    let t2 = helpers::TaskBuilder::new("b", "b", &w.agent.value)
        .cpus(1.0)
        .mem(32.0)
        .ports(&[31001])
        .shell("true")
        .build();
    // The second task wants a port the first took: TASK_ERROR.
    w.accept(&sub, &[&offers[0]], vec![launch(vec![t1, t2])]);
    let out = w.drain();
    let ups: Vec<_> = out
        .iter()
        .filter_map(|o| match o {
            Output::Event { event, .. } => event.update.as_ref().map(|u| u.status.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(ups.len(), 1);
    assert_eq!(ups[0].task_id.value, "b");
    assert_eq!(state(&ups[0]), TaskState::TaskError);
    assert!(
        ups[0]
            .message
            .as_deref()
            .unwrap()
            .starts_with("Total resources"),
        "{:?}",
        ups[0].message
    );

    w.advance(secs(5));
    let offers = w.offers(&sub);
    let res = Resources::from_vec(offers[0].resources.clone());
    assert_eq!(res.ranges("ports"), [(31002, 32000)]);
    let t3 = helpers::TaskBuilder::new("c", "c", &w.agent.value)
        .cpus(1.0)
        .mem(32.0)
        .ports(&[31005])
        .shell("true")
        .build();
    w.accept(&sub, &[&offers[0]], vec![launch(vec![t3])]);
    assert_eq!(w.agent_msgs().len(), 1);
    let state = serde_like::parse(&w.m.state_json(w.now));
    assert_eq!(
        state
            .get("slaves")
            .idx(0)
            .get("used_resources")
            .get("ports")
            .str(),
        "[31000-31001, 31005-31005]"
    );
}

#[test]
fn invalid_tasks_get_task_error() {
    let mut w = World::new();
    let sub = w.subscribe(1, framework_info(&[]));
    let offers = w.offers(&sub);
    let mut both = command_task("both", &w.agent, 0.1, 32.0);
    both.executor = Some(Box::new(helpers::custom_executor(
        "e",
        helpers::shell("run"),
    )));
    let neither = {
        let mut t = command_task("neither", &w.agent, 0.1, 32.0);
        t.command = None;
        t
    };
    let bad_agent = command_task(
        "elsewhere",
        &v1::AgentId {
            value: "nope".into(),
        },
        0.1,
        32.0,
    );
    let too_big = command_task("big", &w.agent, 64.0, 32.0);
    let no_resources = {
        let mut t = command_task("none", &w.agent, 0.1, 32.0);
        t.resources.clear();
        t
    };
    let bad_id = command_task("a/b", &w.agent, 0.1, 32.0);
    let ok = command_task("ok", &w.agent, 0.1, 32.0);
    let dup = command_task("ok", &w.agent, 0.1, 32.0);
    w.accept(
        &sub,
        &[&offers[0]],
        vec![launch(vec![
            both,
            neither,
            bad_agent,
            too_big,
            no_resources,
            bad_id,
            ok,
            dup,
        ])],
    );
    let out = w.drain();
    let runs = out
        .iter()
        .filter(|o| {
            matches!(
                o,
                Output::Agent {
                    msg: ToAgent::RunTask { .. },
                    ..
                }
            )
        })
        .count();
    assert_eq!(runs, 1);
    let ups = updates(
        out.into_iter()
            .filter_map(|o| match o {
                Output::Event { event, .. } => Some(event),
                _ => None,
            })
            .collect(),
    );
    let msgs: Vec<(&str, &str)> = ups
        .iter()
        .map(|s| {
            assert_eq!(state(s), TaskState::TaskError);
            assert_eq!(reason(s), Reason::TaskInvalid);
            assert_eq!(s.source, Some(Source::Master as i32));
            assert!(s.uuid.is_none());
            (s.task_id.value.as_str(), s.message.as_deref().unwrap())
        })
        .collect();
    let expected_both = "Task should have at least one (but not both) of CommandInfo or \
                         ExecutorInfo present";
    assert_eq!(msgs[0], ("both", expected_both));
    assert_eq!(msgs[1], ("neither", expected_both));
    assert_eq!(
        msgs[2],
        (
            "elsewhere",
            "Task uses invalid agent nope while agent M-S0 is expected"
        )
    );
    assert_eq!(msgs[3].0, "big");
    assert!(msgs[3].1.contains("is more than available"));
    assert_eq!(msgs[4], ("none", "Task uses no resources"));
    assert_eq!(msgs[5], ("a/b", "'a/b' contains invalid characters"));
    assert_eq!(msgs[6], ("ok", "Task has duplicate ID: ok"));
}

#[test]
fn invalid_offers_lose_the_tasks() {
    let mut w = World::new();
    let sub = w.subscribe(1, framework_info(&[]));
    w.drain();
    let bogus = v1::Offer {
        id: v1::OfferId {
            value: "M-O99".into(),
        },
        ..Default::default()
    };
    w.accept(
        &sub,
        &[&bogus],
        vec![launch(vec![command_task("t", &w.agent, 0.1, 32.0)])],
    );
    let ups = updates(w.events(1));
    assert_eq!(ups.len(), 1);
    assert_eq!(state(&ups[0]), TaskState::TaskLost);
    assert_eq!(reason(&ups[0]), Reason::InvalidOffers);
    assert_eq!(ups[0].source, Some(Source::Master as i32));
    assert!(ups[0].uuid.is_none());
    assert_eq!(
        ups[0].message.as_deref(),
        Some("Task launched with invalid offers: Offer M-O99 is no longer valid")
    );

    // A partition-aware framework gets TASK_DROPPED; valid offers in the call are discarded
    // without a filter.
    let pa = w.subscribe(2, framework_info(&[Cap::PartitionAware]));
    w.simple(&sub, call::Type::Suppress).unwrap();
    let offers = w.offers(&pa);
    assert_eq!(offers.len(), 1);
    w.accept(
        &pa,
        &[&offers[0], &offers[0]],
        vec![launch(vec![command_task("t", &w.agent, 0.1, 32.0)])],
    );
    let ups = updates(w.events(2));
    assert_eq!(state(&ups[0]), TaskState::TaskDropped);
    assert_eq!(
        ups[0].message.as_deref(),
        Some("Task launched with invalid offers: Duplicate offer M-O0 in offer list")
    );
    w.advance(secs(1));
    assert_eq!(w.offers(&pa).len(), 1);
}

#[test]
fn launch_group_runs_under_one_executor() {
    let mut w = World::new();
    let sub = w.subscribe(1, framework_info(&[]));
    let offers = w.offers(&sub);
    let executor = v1::ExecutorInfo {
        r#type: Some(v1::executor_info::Type::Default as i32),
        executor_id: v1::ExecutorId {
            value: "default".into(),
        },
        framework_id: Some(sub.id.clone()),
        resources: Resources::parse("cpus:0.1;mem:32;disk:10")
            .unwrap()
            .into_vec(),
        ..Default::default()
    };
    let mut t1 = command_task("g1", &w.agent, 0.5, 64.0);
    let mut t2 = command_task("g2", &w.agent, 0.5, 64.0);
    t1.command = None;
    t2.command = None;
    let op = v1::offer::Operation {
        r#type: Some(operation::Type::LaunchGroup as i32),
        launch_group: Some(Box::new(operation::LaunchGroup {
            executor,
            task_group: v1::TaskGroupInfo {
                tasks: vec![t1, t2],
            },
        })),
        ..Default::default()
    };
    w.accept(&sub, &[&offers[0]], vec![op]);
    let msgs = w.agent_msgs();
    let ToAgent::RunTaskGroup {
        executor, group, ..
    } = &msgs[0]
    else {
        panic!("expected RunTaskGroup, got {msgs:?}");
    };
    assert_eq!(executor.executor_id.value, "default");
    assert_eq!(group.tasks.len(), 2);
    assert!(group.tasks.iter().all(|t| t.executor.is_some()));
    let state = serde_like::parse(&w.m.state_json(w.now));
    let fw = state.get("frameworks").idx(0);
    assert_eq!(fw.get("used_resources").get("cpus").num(), 1.1);
    assert_eq!(fw.get("executors").len(), 1);
    assert_eq!(fw.get("tasks").idx(0).get("executor_id").str(), "default");
}

// ---------------------------------------------------------------------------------------------
// Status updates
// ---------------------------------------------------------------------------------------------

/// A world with framework `sub` running command task `t1` (0.5 cpus, 64 MB).
fn running() -> (World, Sub) {
    let mut w = World::new();
    let sub = w.subscribe(1, framework_info(&[]));
    let offers = w.offers(&sub);
    let task = command_task("t1", &w.agent, 0.5, 64.0);
    w.accept(&sub, &[&offers[0]], vec![launch(vec![task])]);
    w.drain();
    (w, sub)
}

#[test]
fn status_updates_are_forwarded_and_acknowledged() {
    let (mut w, sub) = running();
    let uuid = w.status(&sub, "t1", TaskState::TaskRunning);
    let ups = updates(w.events(1));
    assert_eq!(ups.len(), 1);
    let s = &ups[0];
    assert_eq!(state(s), TaskState::TaskRunning);
    assert_eq!(s.uuid.as_ref(), Some(&uuid));
    assert_eq!(s.agent_id.as_ref(), Some(&w.agent));
    assert_eq!(s.executor_id.as_ref().unwrap().value, "t1");
    assert_eq!(s.data.as_deref(), Some(&b"opaque"[..]));

    assert_eq!(w.ack(&sub, "t1", uuid.clone()), Ok(CallOk::Accepted));
    assert_eq!(
        w.agent_msgs(),
        [ToAgent::Acknowledge {
            framework_id: sub.id.clone(),
            task_id: v1::TaskId { value: "t1".into() },
            uuid,
        }]
    );

    // Terminal: resources are released at once, the task completes when the ack comes.
    let uuid = w.status(&sub, "t1", TaskState::TaskFinished);
    w.drain();
    let state_now = serde_like::parse(&w.m.state_json(w.now));
    let fw = state_now.get("frameworks").idx(0);
    assert_eq!(fw.get("tasks").idx(0).get("state").str(), "TASK_FINISHED");
    assert_eq!(fw.get("used_resources").get("cpus").num(), 0.0);
    // The stored statuses have no data.
    assert!(
        !w.m.state_json(w.now).contains("opaque"),
        "data must be stripped from stored statuses"
    );

    w.ack(&sub, "t1", uuid).unwrap();
    assert_eq!(w.agent_msgs().len(), 1);
    let state_now = serde_like::parse(&w.m.state_json(w.now));
    let fw = state_now.get("frameworks").idx(0);
    assert_eq!(fw.get("tasks").len(), 0);
    let done = fw.get("completed_tasks").idx(0);
    assert_eq!(done.get("state").str(), "TASK_FINISHED");
    assert_eq!(done.get("statuses").len(), 2);
}

#[test]
fn acknowledge_needs_a_valid_uuid() {
    let (mut w, sub) = running();
    let err = w
        .ack(&sub, "t1", Bytes::from_static(b"not-a-uuid"))
        .unwrap_err();
    assert_eq!(
        err,
        CallError {
            status: 400,
            message: "Failed to validate scheduler::Call: Not a valid UUID".into()
        }
    );
}

#[test]
fn agent_updates_without_a_uuid_are_ignored() {
    let (mut w, sub) = running();
    w.m.handle_agent(
        w.now,
        ToMaster::StatusUpdate {
            agent_id: w.agent.clone(),
            framework_id: sub.id.clone(),
            status: v1::TaskStatus {
                task_id: v1::TaskId { value: "t1".into() },
                state: TaskState::TaskRunning as i32,
                ..Default::default()
            },
            latest_state: TaskState::TaskRunning,
        },
    );
    assert!(w.drain().is_empty());
    let state = serde_like::parse(&w.m.state_json(w.now));
    let task = state.get("frameworks").idx(0).get("tasks").idx(0);
    assert_eq!(task.get("state").str(), "TASK_STAGING");
}

#[test]
fn updates_for_a_disconnected_framework_wait_for_the_agent_to_resend() {
    let mut w = World::new();
    let mut info = framework_info(&[]);
    info.failover_timeout = Some(60.0);
    let sub = w.subscribe(1, info.clone());
    let offers = w.offers(&sub);
    w.accept(
        &sub,
        &[&offers[0]],
        vec![launch(vec![command_task("t1", &w.agent, 0.5, 64.0)])],
    );
    w.drain();
    w.m.stream_closed(w.now, 1);
    w.status(&sub, "t1", TaskState::TaskRunning);
    assert!(w.drain().is_empty());

    // The task's state still moves; on re-subscribe the agent hears of the framework.
    info.id = Some(sub.id.clone());
    let again = w.subscribe(2, info);
    let msgs = w.agent_msgs();
    assert!(
        matches!(&msgs[..], [ToAgent::UpdateFramework { framework }] if framework.id.as_ref() == Some(&again.id))
    );
    let state_now = serde_like::parse(&w.m.state_json(w.now));
    let t = state_now.get("frameworks").idx(0).get("tasks").idx(0);
    assert_eq!(t.get("state").str(), "TASK_RUNNING");
}

#[test]
fn kill_forwards_or_reconciles() {
    let (mut w, sub) = running();
    let kill = |task: &str, agent: Option<v1::AgentId>| scheduler::Call {
        r#type: Some(call::Type::Kill as i32),
        kill: Some(call::Kill {
            task_id: v1::TaskId { value: task.into() },
            agent_id: agent,
            kill_policy: Some(v1::KillPolicy {
                grace_period: Some(v1::DurationInfo {
                    nanoseconds: 1_000_000_000,
                }),
            }),
        }),
        ..Default::default()
    };
    w.call(&sub, kill("t1", None)).unwrap();
    let msgs = w.agent_msgs();
    assert!(
        matches!(&msgs[..], [ToAgent::KillTask { task_id, kill_policy: Some(_), .. }] if task_id.value == "t1")
    );

    // On another agent: ignored.
    w.call(
        &sub,
        kill(
            "t1",
            Some(v1::AgentId {
                value: "other".into(),
            }),
        ),
    )
    .unwrap();
    assert!(w.drain().is_empty());

    // Unknown task: explicit reconciliation answers TASK_LOST.
    w.call(&sub, kill("ghost", None)).unwrap();
    let ups = updates(w.events(1));
    assert_eq!(state(&ups[0]), TaskState::TaskLost);
    assert_eq!(reason(&ups[0]), Reason::Reconciliation);
    assert_eq!(
        ups[0].message.as_deref(),
        Some("Reconciliation: Task is unknown")
    );
}

#[test]
fn reconciliation() {
    let (mut w, sub) = running();
    let reconcile = |tasks: Vec<(&str, Option<&str>)>| scheduler::Call {
        r#type: Some(call::Type::Reconcile as i32),
        reconcile: Some(call::Reconcile {
            tasks: tasks
                .into_iter()
                .map(|(t, a)| call::reconcile::Task {
                    task_id: v1::TaskId { value: t.into() },
                    agent_id: a.map(|a| v1::AgentId { value: a.into() }),
                })
                .collect(),
        }),
        ..Default::default()
    };

    // Implicit: every known task, here just launched, so STAGING.
    w.call(&sub, reconcile(vec![])).unwrap();
    let ups = updates(w.events(1));
    assert_eq!(ups.len(), 1);
    assert_eq!(state(&ups[0]), TaskState::TaskStaging);
    assert_eq!(reason(&ups[0]), Reason::Reconciliation);
    assert_eq!(
        ups[0].message.as_deref(),
        Some("Reconciliation: Latest task state")
    );
    assert_eq!(ups[0].source, Some(Source::Master as i32));
    assert!(ups[0].uuid.is_none());
    assert_eq!(ups[0].timestamp, Some(EPOCH));

    // The update being delivered is the state reported.
    w.status(&sub, "t1", TaskState::TaskRunning);
    w.drain();
    w.call(
        &sub,
        reconcile(vec![
            ("t1", None),
            ("ghost", Some("M-S0")),
            ("ghost", Some("M-S9")),
            ("ghost", None),
        ]),
    )
    .unwrap();
    let ups = updates(w.events(1));
    let got: Vec<(TaskState, &str)> = ups
        .iter()
        .map(|s| (state(s), s.message.as_deref().unwrap()))
        .collect();
    assert_eq!(
        got,
        [
            (TaskState::TaskRunning, "Reconciliation: Latest task state"),
            (
                TaskState::TaskLost,
                "Reconciliation: Task is unknown to the agent"
            ),
            (TaskState::TaskLost, "Reconciliation: Task is unknown"),
            (TaskState::TaskLost, "Reconciliation: Task is unknown"),
        ]
    );
    assert_eq!(ups[1].agent_id.as_ref().unwrap().value, "M-S0");
}

#[test]
fn partition_aware_reconciliation() {
    let mut w = World::new();
    let sub = w.subscribe(1, framework_info(&[Cap::PartitionAware]));
    w.drain();
    w.call(
        &sub,
        scheduler::Call {
            r#type: Some(call::Type::Reconcile as i32),
            reconcile: Some(call::Reconcile {
                tasks: vec![
                    call::reconcile::Task {
                        task_id: v1::TaskId { value: "a".into() },
                        agent_id: Some(w.agent.clone()),
                    },
                    call::reconcile::Task {
                        task_id: v1::TaskId { value: "b".into() },
                        agent_id: None,
                    },
                ],
            }),
            ..Default::default()
        },
    )
    .unwrap();
    let ups = updates(w.events(1));
    assert_eq!(state(&ups[0]), TaskState::TaskGone);
    assert_eq!(state(&ups[1]), TaskState::TaskUnknown);
}

#[test]
fn messages_both_ways_and_executor_failure() {
    let mut w = World::new();
    let sub = w.subscribe(1, framework_info(&[]));
    let offers = w.offers(&sub);
    let mut executor = helpers::custom_executor("exec", helpers::shell("./exec"));
    executor.resources = Resources::parse("cpus:0.5;mem:64").unwrap().into_vec();
    let task = helpers::TaskBuilder::new("t", "t", &w.agent.value)
        .cpus(1.0)
        .mem(32.0)
        .executor(executor)
        .build();
    w.accept(&sub, &[&offers[0]], vec![launch(vec![task])]);
    let msgs = w.agent_msgs();
    let ToAgent::RunTask { executor, .. } = &msgs[0] else {
        panic!("{msgs:?}")
    };
    // The master fills in the executor's framework id.
    assert_eq!(
        executor.as_ref().unwrap().framework_id.as_ref(),
        Some(&sub.id)
    );

    // scheduler → executor
    let agent_id = w.agent.clone();
    w.call(
        &sub,
        scheduler::Call {
            r#type: Some(call::Type::Message as i32),
            message: Some(call::Message {
                agent_id: agent_id.clone(),
                executor_id: v1::ExecutorId {
                    value: "exec".into(),
                },
                data: Bytes::from_static(b"hi"),
            }),
            ..Default::default()
        },
    )
    .unwrap();
    assert!(
        matches!(&w.agent_msgs()[..], [ToAgent::FrameworkMessage { data, .. }] if data == &b"hi"[..])
    );

    // executor → scheduler
    w.m.handle_agent(
        w.now,
        ToMaster::ExecutorMessage {
            agent_id: agent_id.clone(),
            framework_id: sub.id.clone(),
            executor_id: v1::ExecutorId {
                value: "exec".into(),
            },
            data: Bytes::from_static(b"yo"),
        },
    );
    let events = w.events(1);
    let msg = events[0].message.as_ref().unwrap();
    assert_eq!(msg.data, &b"yo"[..]);
    assert_eq!(msg.agent_id, agent_id);

    // SHUTDOWN goes to the agent.
    w.call(
        &sub,
        scheduler::Call {
            r#type: Some(call::Type::Shutdown as i32),
            shutdown: Some(call::Shutdown {
                executor_id: v1::ExecutorId {
                    value: "exec".into(),
                },
                agent_id: agent_id.clone(),
            }),
            ..Default::default()
        },
    )
    .unwrap();
    assert!(
        matches!(&w.agent_msgs()[..], [ToAgent::ShutdownExecutor { executor_id, .. }] if executor_id.value == "exec")
    );

    // The executor's exit: FAILURE event, its resources are released.
    let fw_cpus = |w: &World| {
        serde_like::parse(&w.m.state_json(w.now))
            .get("frameworks")
            .idx(0)
            .get("used_resources")
            .get("cpus")
            .num()
    };
    assert_eq!(fw_cpus(&w), 1.5);
    w.m.handle_agent(
        w.now,
        ToMaster::ExecutorExited {
            agent_id: agent_id.clone(),
            framework_id: sub.id.clone(),
            executor_id: v1::ExecutorId {
                value: "exec".into(),
            },
            status: 256,
            command_executor: false,
        },
    );
    let events = w.events(1);
    assert_eq!(event_type(&events[0]), event::Type::Failure);
    assert_eq!(events[0].failure.as_ref().unwrap().status, Some(256));
    assert_eq!(fw_cpus(&w), 1.0);
}

#[test]
fn removing_an_agent_loses_its_tasks_and_rescinds_its_offers() {
    let (mut w, sub) = running();
    w.advance(secs(5));
    let offers = w.offers(&sub);
    assert_eq!(offers.len(), 1);
    let agent = w.agent.clone();
    w.m.remove_agent(w.now, &agent);
    let events = w.events(1);
    assert!(events.iter().any(|e| {
        e.rescind
            .as_ref()
            .is_some_and(|r| r.offer_id == offers[0].id)
    }));
    let ups = updates(events);
    assert_eq!(state(&ups[0]), TaskState::TaskLost);
    assert_eq!(reason(&ups[0]), Reason::AgentRemoved);
    // Updates from the removed agent are ignored.
    w.status(&sub, "t1", TaskState::TaskRunning);
    assert!(w.drain().is_empty());
}

/// A framework with one task on the agent, with these capabilities and checkpointing.
fn running_with(caps: &[Cap], checkpoint: bool) -> (World, Sub) {
    let mut w = World::new();
    let mut info = framework_info(caps);
    info.checkpoint = Some(checkpoint);
    let sub = w.subscribe(1, info);
    let offers = w.offers(&sub);
    let task = command_task("t1", &w.agent, 0.5, 64.0);
    w.accept(&sub, &[&offers[0]], vec![launch(vec![task])]);
    w.drain();
    (w, sub)
}

fn disconnect(w: &mut World) {
    let agent_id = w.agent.clone();
    w.m.handle_agent(w.now, ToMaster::AgentDisconnected { agent_id });
}

/// The agent comes back, knowing these tasks of `sub`.
fn reregister(w: &mut World, sub: &Sub, tasks: &[&str]) {
    let agent_id = w.agent.clone();
    let tasks = tasks
        .iter()
        .map(|t| (sub.id.clone(), v1::TaskId { value: (*t).into() }))
        .collect();
    w.m.handle_agent(w.now, ToMaster::AgentReregistered { agent_id, tasks });
}

#[test]
fn a_disconnected_agent_gets_no_offers_and_loses_only_uncheckpointed_tasks() {
    let (mut w, sub) = running_with(&[], false);
    disconnect(&mut w);
    let ups = updates(w.events(1));
    assert_eq!(ups.len(), 1);
    assert_eq!(state(&ups[0]), TaskState::TaskLost);
    assert_eq!(reason(&ups[0]), Reason::AgentDisconnected);
    assert_eq!(ups[0].source, Some(Source::Master as i32));
    w.advance(secs(5));
    assert!(
        w.offers(&sub).is_empty(),
        "no offers from a disconnected agent"
    );

    let (mut w, sub) = running_with(&[], true);
    disconnect(&mut w);
    assert!(updates(w.events(1)).is_empty(), "checkpointed tasks wait");
    // Back: offers again, its task kept.
    reregister(&mut w, &sub, &["t1"]);
    w.advance(secs(5));
    assert_eq!(w.offers(&sub).len(), 1);
    assert!(w.m.frameworks[&sub.id.value].tasks.contains_key("t1"));
}

#[test]
fn a_reregistered_agent_that_does_not_know_a_task_loses_it() {
    let (mut w, sub) = running_with(&[Cap::PartitionAware], true);
    disconnect(&mut w);
    reregister(&mut w, &sub, &[]);
    let ups = updates(w.events(1));
    assert_eq!(ups.len(), 1);
    assert_eq!(state(&ups[0]), TaskState::TaskGone);
    assert_eq!(reason(&ups[0]), Reason::AgentRestarted);
}

#[test]
fn an_agent_disconnected_for_the_lost_timeout_is_unreachable_once() {
    for (caps, expected) in [
        (vec![Cap::PartitionAware], TaskState::TaskUnreachable),
        (vec![], TaskState::TaskLost),
    ] {
        let (mut w, sub) = running_with(&caps, true);
        disconnect(&mut w);
        w.drain();
        w.advance(secs(74));
        w.tick();
        assert!(
            !w.drain()
                .iter()
                .any(|o| matches!(o, Output::AgentLost { .. }))
        );
        assert!(w.m.next_timeout().unwrap() <= w.now + secs(1));
        w.advance(secs(1));
        w.tick();
        let out = w.drain();
        let lost: Vec<&v1::AgentInfo> = out
            .iter()
            .filter_map(|o| match o {
                Output::AgentLost { info } => Some(info),
                _ => None,
            })
            .collect();
        assert_eq!(lost.len(), 1);
        assert_eq!(lost[0].id.as_ref(), Some(&w.agent));
        let ups: Vec<v1::TaskStatus> = out
            .into_iter()
            .filter_map(|o| match o {
                Output::Event { event, .. } => event.update.map(|u| u.status),
                _ => None,
            })
            .collect();
        assert_eq!(ups.len(), 1);
        assert_eq!(state(&ups[0]), expected);
        assert_eq!(reason(&ups[0]), Reason::AgentRemoved);
        assert_eq!(
            ups[0].unreachable_time.is_some(),
            expected == TaskState::TaskUnreachable
        );
        w.advance(secs(100));
        w.tick();
        assert!(
            !w.drain()
                .iter()
                .any(|o| matches!(o, Output::AgentLost { .. })),
            "the hook runs once"
        );
        // Coming back too late: its frameworks there are shut down.
        reregister(&mut w, &sub, &["t1"]);
        assert_eq!(
            w.agent_msgs(),
            [ToAgent::ShutdownFramework {
                framework_id: sub.id.clone()
            }]
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Call errors
// ---------------------------------------------------------------------------------------------

#[test]
fn call_errors_follow_mesos_order_and_texts() {
    let mut w = World::new();
    let sub = w.subscribe(1, framework_info(&[]));
    w.drain();
    let revive = |fid: Option<&str>| scheduler::Call {
        framework_id: fid.map(|v| v1::FrameworkId { value: v.into() }),
        r#type: Some(call::Type::Revive as i32),
        ..Default::default()
    };
    let err = |r: Result<CallOk, CallError>| r.unwrap_err();

    let e = err(w.m.call(w.now, Some(&sub.stream_id), revive(None)));
    assert_eq!(
        e,
        CallError {
            status: 400,
            message: "Failed to validate scheduler::Call: Expecting 'framework_id' to be present"
                .into()
        }
    );
    let e = err(w.m.call(w.now, Some(&sub.stream_id), revive(Some("nope"))));
    assert_eq!(
        (e.status, e.message.as_str()),
        (400, "Framework cannot be found")
    );
    let e = err(w.m.call(w.now, None, revive(Some(&sub.id.value))));
    assert_eq!(
        (e.status, e.message.as_str()),
        (
            400,
            "All non-subscribe calls should include the 'Mesos-Stream-Id' header"
        )
    );
    let e = err(w.m.call(w.now, Some("abc"), revive(Some(&sub.id.value))));
    assert_eq!(e.status, 400);
    assert_eq!(
        e.message,
        format!(
            "The stream ID 'abc' included in this request didn't match the stream ID currently \
             associated with framework ID {}",
            sub.id.value
        )
    );
    let e = err(w.simple(&sub, call::Type::Accept));
    assert_eq!(
        e.message,
        "Failed to validate scheduler::Call: Expecting 'accept' to be present"
    );
    let e = err(w.simple(&sub, call::Type::Unknown));
    assert_eq!(e.status, 501);
    let e = err(w.m.call(
        w.now,
        Some(&sub.stream_id),
        scheduler::Call {
            framework_id: Some(sub.id.clone()),
            ..Default::default()
        },
    ));
    assert_eq!(
        e.message,
        "Failed to validate scheduler::Call: Expecting 'type' to be present"
    );
    // REQUEST is accepted and ignored.
    let ok = w.call(
        &sub,
        scheduler::Call {
            r#type: Some(call::Type::Request as i32),
            request: Some(call::Request::default()),
            ..Default::default()
        },
    );
    assert_eq!(ok, Ok(CallOk::Accepted));
}

#[test]
fn update_framework_is_synchronous() {
    let mut w = World::new();
    let mut info = framework_info(&[Cap::MultiRole]);
    info.roles = vec!["a".into()];
    let sub = w.subscribe(1, info.clone());
    let offers = w.offers(&sub);
    assert_eq!(offers.len(), 1);

    info.id = Some(sub.id.clone());
    info.roles = vec!["b".into()];
    let update = |info: v1::FrameworkInfo| scheduler::Call {
        r#type: Some(call::Type::UpdateFramework as i32),
        update_framework: Some(Box::new(call::UpdateFramework {
            framework_info: info,
            ..Default::default()
        })),
        ..Default::default()
    };
    assert_eq!(w.call(&sub, update(info.clone())), Ok(CallOk::Ok(vec![])));
    // The offer to the removed role is rescinded; the next one is for the new role.
    let events = w.events(1);
    assert!(events.iter().any(|e| e.rescind.is_some()));
    let offers = w.offers(&sub);
    assert_eq!(
        offers[0].allocation_info.as_ref().unwrap().role.as_deref(),
        Some("b")
    );

    let mut bad = info.clone();
    bad.user = "bob".into();
    let e = w.call(&sub, update(bad)).unwrap_err();
    assert_eq!(e.status, 400);
    assert!(e.message.starts_with(
        "FrameworkInfo update is not valid: Updating 'FrameworkInfo.user' is unsupported"
    ));
}

// ---------------------------------------------------------------------------------------------
// More allocation and launch rules
// ---------------------------------------------------------------------------------------------

#[test]
fn one_offers_event_carries_the_offers_of_all_agents() {
    let mut w = World::new();
    w.m.add_agent(
        w.now,
        agent_info("cpus:2;mem:512"),
        "slave(1)@127.0.0.1:5052".into(),
    );
    let sub = w.subscribe(1, framework_info(&[]));
    w.drain();
    w.tick();
    let events = w.events(sub.stream);
    assert_eq!(events.len(), 1);
    let offers = &events[0].offers.as_ref().unwrap().offers;
    assert_eq!(offers.len(), 2);
    assert_eq!(offers[1].url.as_ref().unwrap().address.port, 5052);
}

#[test]
fn too_little_or_gpu_resources_are_not_offered() {
    let mut w = World::new();
    let sub = w.subscribe(1, framework_info(&[]));
    let offers = w.offers(&sub);
    // Take nearly everything: 0.005 cpus and 16 MB are left, below `cpus:0.01|mem:32`.
    let task = command_task("big", &w.agent, 3.995, 1008.0);
    w.accept(&sub, &[&offers[0]], vec![launch(vec![task])]);
    w.drain();
    w.advance(secs(10));
    assert!(w.offers(&sub).is_empty());

    // A GPU agent is offered only to GPU_RESOURCES frameworks.
    w.m.add_agent(
        w.now,
        agent_info("cpus:1;mem:256;gpus:1"),
        "slave(1)@127.0.0.1:5052".into(),
    );
    assert!(w.offers(&sub).is_empty());
    let gpu = w.subscribe(2, framework_info(&[Cap::GpuResources]));
    let offers = w.offers(&gpu);
    assert_eq!(offers.len(), 1);
    assert_eq!(
        Resources::from_vec(offers[0].resources.clone()).scalar("gpus"),
        1.0
    );
}

#[test]
fn no_heartbeats_or_offers_for_a_disconnected_framework() {
    let mut w = World::new();
    let mut info = framework_info(&[]);
    info.failover_timeout = Some(3600.0);
    let sub = w.subscribe(1, info);
    w.drain();
    w.m.stream_closed(w.now, sub.stream);
    w.advance(secs(60));
    w.tick();
    assert!(w.drain().is_empty());
}

#[test]
fn executor_resources_are_taken_once_and_executor_info_must_not_change() {
    let mut w = World::new();
    let sub = w.subscribe(1, framework_info(&[]));
    let offers = w.offers(&sub);
    let mut executor = helpers::custom_executor("exec", helpers::shell("./exec"));
    executor.resources = Resources::parse("cpus:1;mem:64").unwrap().into_vec();
    let task = |id: &str, e: &v1::ExecutorInfo, agent: &v1::AgentId| {
        helpers::TaskBuilder::new(id, id, &agent.value)
            .cpus(1.0)
            .mem(32.0)
            .executor(e.clone())
            .build()
    };
    let mut changed = executor.clone();
    changed.name = Some("other".into());
    let agent = w.agent.clone();
    w.accept(
        &sub,
        &[&offers[0]],
        vec![launch(vec![
            task("a", &executor, &agent),
            task("b", &executor, &agent),
            task("c", &changed, &agent),
        ])],
    );
    let out = w.drain();
    let runs = out
        .iter()
        .filter(|o| {
            matches!(
                o,
                Output::Agent {
                    msg: ToAgent::RunTask { .. },
                    ..
                }
            )
        })
        .count();
    assert_eq!(runs, 2);
    let errors = updates(
        out.into_iter()
            .filter_map(|o| match o {
                Output::Event { event, .. } => Some(event),
                _ => None,
            })
            .collect(),
    );
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].task_id.value, "c");
    assert!(
        errors[0]
            .message
            .as_deref()
            .unwrap()
            .starts_with("ExecutorInfo is not compatible with existing ExecutorInfo")
    );
    // 1 cpu for the executor, once, and 1 per task.
    let state = serde_like::parse(&w.m.state_json(w.now));
    assert_eq!(
        state
            .get("frameworks")
            .idx(0)
            .get("used_resources")
            .get("cpus")
            .num(),
        3.0
    );
    // The next offer for that agent names the running executor.
    w.advance(secs(5));
    let offers = w.offers(&sub);
    assert_eq!(offers[0].executor_ids[0].value, "exec");
}

#[test]
fn launch_operations_must_not_have_an_id() {
    let mut w = World::new();
    let sub = w.subscribe(1, framework_info(&[]));
    let offers = w.offers(&sub);
    let mut op = launch(vec![command_task("t", &w.agent, 0.1, 32.0)]);
    op.id = Some(v1::OperationId { value: "op".into() });
    w.accept(&sub, &[&offers[0]], vec![op]);
    let ups = updates(w.events(1));
    assert_eq!(state(&ups[0]), TaskState::TaskError);
    assert_eq!(
        ups[0].message.as_deref(),
        Some("The `id` field cannot be set on LAUNCH operations")
    );
}

#[test]
fn resources_all_come_back_after_many_tasks() {
    let mut w = World::new();
    let sub = w.subscribe(1, framework_info(&[]));
    w.drain();
    for i in 0..100 {
        w.advance(secs(1));
        let offers = w.offers(&sub);
        assert_eq!(offers.len(), 1, "round {i}");
        let id = format!("t{i}");
        let task = helpers::TaskBuilder::new(&id, &id, &w.agent.value)
            .cpus(0.1)
            .mem(32.0)
            .ports(&[31000 + i])
            .shell("true")
            .build();
        w.call(
            &sub,
            scheduler::Call {
                r#type: Some(call::Type::Accept as i32),
                accept: Some(call::Accept {
                    offer_ids: vec![offers[0].id.clone()],
                    operations: vec![launch(vec![task])],
                    filters: Some(v1::Filters {
                        refuse_seconds: Some(0.0),
                    }),
                }),
                ..Default::default()
            },
        )
        .unwrap();
        let uuid = w.status(&sub, &id, TaskState::TaskFinished);
        w.ack(&sub, &id, uuid).unwrap();
        w.drain();
    }
    w.advance(secs(1));
    let offers = w.offers(&sub);
    let res = Resources::from_vec(offers[0].resources.clone());
    assert_eq!(res.scalar("cpus"), 4.0);
    assert_eq!(res.scalar("mem"), 1024.0);
    assert_eq!(res.ranges("ports"), [(31000, 32000)]);
    let metrics: std::collections::HashMap<String, f64> = w.m.metrics().into_iter().collect();
    assert_eq!(metrics["master/tasks_finished"], 100.0);
    assert_eq!(metrics["master/cpus_used"], 0.0);
    let fw = serde_like::parse(&w.m.frameworks_json(Some(&sub.id.value)));
    assert_eq!(
        fw.get("frameworks").idx(0).get("completed_tasks").len(),
        100
    );
}

#[test]
fn tasks_are_listed_newest_first_by_their_first_status() {
    let mut w = World::new();
    let sub = w.subscribe(1, framework_info(&[]));
    let offers = w.offers(&sub);
    let tasks = ["a", "b", "c"]
        .iter()
        .map(|id| command_task(id, &w.agent, 0.1, 32.0))
        .collect();
    w.accept(&sub, &[&offers[0]], vec![launch(tasks)]);
    // b runs first, then a; c has no status yet.
    for (id, t) in [("b", 10.0), ("a", 20.0)] {
        w.m.handle_agent(
            w.now,
            ToMaster::StatusUpdate {
                agent_id: w.agent.clone(),
                framework_id: sub.id.clone(),
                status: v1::TaskStatus {
                    task_id: v1::TaskId { value: id.into() },
                    state: TaskState::TaskRunning as i32,
                    timestamp: Some(EPOCH + t),
                    uuid: Some(new_uuid()),
                    ..Default::default()
                },
                latest_state: TaskState::TaskRunning,
            },
        );
    }
    let ids = |json: String| -> Vec<String> {
        let v = serde_like::parse(&json);
        (0..v.get("tasks").len())
            .map(|i| v.get("tasks").idx(i).get("id").str().to_owned())
            .collect()
    };
    assert_eq!(
        ids(w.m.tasks_json(100, 0, true, None, None)),
        ["a", "b", "c"]
    );
    assert_eq!(
        ids(w.m.tasks_json(100, 0, false, None, None)),
        ["c", "b", "a"]
    );
    assert_eq!(ids(w.m.tasks_json(1, 1, true, None, None)), ["b"]);
    assert_eq!(
        ids(w.m.tasks_json(100, 0, true, Some("other"), None)),
        Vec::<String>::new()
    );
}

#[test]
fn offer_constraints_select_agents() {
    use scheduler::attribute_constraint::{
        Predicate, Selector, predicate, selector::PseudoattributeType,
    };
    let constraint = |selector: Selector, predicate: Predicate| scheduler::OfferConstraints {
        role_constraints: [(
            "*".to_owned(),
            scheduler::offer_constraints::RoleConstraints {
                groups: vec![scheduler::offer_constraints::role_constraints::Group {
                    attribute_constraints: vec![scheduler::AttributeConstraint {
                        selector,
                        predicate,
                    }],
                }],
            },
        )]
        .into(),
    };
    let hostname = Selector {
        pseudoattribute_type: Some(PseudoattributeType::Hostname as i32),
        attribute_name: None,
    };
    let rack = Selector {
        pseudoattribute_type: None,
        attribute_name: Some("rack".into()),
    };
    let equals = |v: &str| Predicate {
        text_equals: Some(predicate::TextEquals { value: v.into() }),
        ..Default::default()
    };
    let subscribe_with = |w: &mut World, stream, c| {
        let mut call = subscribe_call(framework_info(&[]));
        call.subscribe.as_mut().unwrap().offer_constraints = Some(c);
        let sub = w.m.subscribe(w.now, stream, call).unwrap();
        Sub {
            id: sub.framework_id,
            stream,
            stream_id: sub.stream_id,
        }
    };

    let mut w = World::new();
    let elsewhere = subscribe_with(&mut w, 1, constraint(hostname.clone(), equals("other")));
    assert!(w.offers(&elsewhere).is_empty());
    let here = subscribe_with(&mut w, 2, constraint(rack.clone(), equals("r1")));
    assert_eq!(w.offers(&here).len(), 1);

    // Regular expressions other than plain text are refused, with a reason.
    let regex = Predicate {
        text_matches: Some(predicate::TextMatches {
            regex: "r[0-9]+".into(),
        }),
        ..Default::default()
    };
    subscribe_with(&mut w, 3, constraint(rack, regex));
    let out = w.drain();
    let error = error_on(&out[0], 3).unwrap();
    assert!(
        error.starts_with("Offer constraints are not valid"),
        "{error}"
    );
}

#[test]
fn framework_offer_filters_raise_the_minimum() {
    let mut w = World::new();
    let mut info = framework_info(&[]);
    info.offer_filters.insert(
        "*".into(),
        v1::OfferFilters {
            min_allocatable_resources: Some(v1::offer_filters::MinAllocatableResources {
                quantities: vec![v1::offer_filters::ResourceQuantities {
                    quantities: [("cpus".to_owned(), v1::value::Scalar { value: 2.0 })].into(),
                }],
            }),
        },
    );
    let sub = w.subscribe(1, info);
    let offers = w.offers(&sub);
    w.accept(
        &sub,
        &[&offers[0]],
        vec![launch(vec![command_task("t", &w.agent, 3.0, 32.0)])],
    );
    w.drain();
    w.advance(secs(10));
    assert!(
        w.offers(&sub).is_empty(),
        "1 cpu left is below the framework's 2"
    );
    let other = w.subscribe(2, framework_info(&[]));
    assert_eq!(w.offers(&other).len(), 1);
}

#[test]
fn operations_asking_for_feedback_get_operation_error() {
    let mut w = World::new();
    let sub = w.subscribe(1, framework_info(&[]));
    let offers = w.offers(&sub);
    let reserve = v1::offer::Operation {
        r#type: Some(operation::Type::Reserve as i32),
        id: Some(v1::OperationId { value: "r1".into() }),
        reserve: Some(operation::Reserve::default()),
        ..Default::default()
    };
    let silent = v1::offer::Operation {
        id: None,
        ..reserve.clone()
    };
    w.accept(&sub, &[&offers[0]], vec![reserve, silent]);
    let events = w.events(1);
    assert_eq!(events.len(), 1);
    let status = &events[0].update_operation_status.as_ref().unwrap().status;
    assert_eq!(status.operation_id.as_ref().unwrap().value, "r1");
    assert_eq!(status.state, v1::OperationState::OperationError as i32);
    assert_eq!(
        status.message.as_deref(),
        Some(
            "Operation requested feedback, but agent M-S0 does not have the required \
             RESOURCE_PROVIDER capability"
        )
    );
}

// ---------------------------------------------------------------------------------------------
// Accounting invariants under a random walk
// ---------------------------------------------------------------------------------------------

/// Every agent's and framework's `used`/`offered` equal the sums over tasks still holding
/// resources, executors and outstanding offers; no agent gives out more than it has; offers
/// only go to connected, active frameworks.
fn check_invariants(m: &Master) {
    use super::core::{Agent, Framework};
    let holds = |t: &v1::Task| {
        !helpers::is_terminal_value(t.state) && t.state != TaskState::TaskUnreachable as i32
    };
    let sum = |lists: Vec<&Vec<v1::Resource>>| {
        let mut r = Resources::new();
        for l in lists {
            r.add(&Resources::from_vec(l.clone()));
        }
        r
    };
    let framework_used = |f: &Framework, agent: Option<&str>| {
        let on = |a: &str| agent.is_none_or(|x| x == a);
        let mut lists: Vec<&Vec<v1::Resource>> = f
            .tasks
            .values()
            .filter(|t| holds(t) && on(&t.agent_id.value))
            .map(|t| &t.resources)
            .collect();
        lists.extend(
            f.executors
                .iter()
                .filter(|((a, _), _)| on(a))
                .map(|(_, e)| &e.resources),
        );
        sum(lists)
    };
    for f in m.frameworks.values() {
        assert_eq!(f.used, framework_used(f, None), "used of {}", f.id.value);
        let offered = sum(m
            .offers
            .values()
            .filter(|o| o.offer.framework_id == f.id)
            .map(|o| &o.offer.resources)
            .collect());
        assert_eq!(f.offered, offered, "offered of {}", f.id.value);
        if m.offers.values().any(|o| o.offer.framework_id == f.id) {
            assert!(
                f.active && f.conn.is_some(),
                "offers to inactive {}",
                f.id.value
            );
        }
    }
    for a in m.agents.values() {
        let a: &Agent = a;
        let mut used = Resources::new();
        for f in m.frameworks.values() {
            used.add(&framework_used(f, Some(&a.id.value)));
        }
        assert_eq!(a.used, used, "used of {}", a.id.value);
        let offered = sum(m
            .offers
            .values()
            .filter(|o| o.offer.agent_id == a.id)
            .map(|o| &o.offer.resources)
            .collect());
        assert_eq!(a.offered, offered, "offered of {}", a.id.value);
        let mut taken = a.used.clone();
        taken.add(&a.offered);
        taken.unallocate();
        assert!(a.total.contains(&taken), "{} gives out {taken}", a.id.value);
    }
}

#[test]
fn accounting_holds_under_a_random_walk() {
    for seed in 0..20 {
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut w = World::new();
        let mut subs: Vec<Sub> = Vec::new();
        let mut next_stream = 1;
        let mut next_task = 0;
        let mut offers: Vec<(Sub, v1::Offer)> = Vec::new();
        let mut launched: Vec<(Sub, String)> = Vec::new();
        let mut pending_acks: Vec<(Sub, String, Bytes)> = Vec::new();
        // Arms by weight: closing streams and teardowns are rare, ticks, launches and
        // status updates common.
        const ARMS: [usize; 24] = [
            0, 0, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 7, 7, 8, 8, 9, 9, 9, 10, 11, 2, 4, 7,
        ];
        for _ in 0..400 {
            match ARMS[rng.usize(0..ARMS.len())] {
                0 if subs.len() < 3 => {
                    let mut info = framework_info(if rng.bool() {
                        &[Cap::PartitionAware]
                    } else {
                        &[]
                    });
                    info.failover_timeout = Some(if rng.bool() { 0.0 } else { 5.0 });
                    subs.push(w.subscribe(next_stream, info));
                    next_stream += 1;
                }
                1 if !subs.is_empty() && rng.usize(0..3) == 0 => {
                    let sub = subs.remove(rng.usize(0..subs.len()));
                    w.m.stream_closed(w.now, sub.stream);
                }
                2 | 3 => {
                    w.advance(Duration::from_millis(rng.u64(0..3000)));
                    w.tick();
                    for o in w.drain() {
                        if let Output::Event { stream, event } = o
                            && let Some(sub) = subs.iter().find(|s| s.stream == stream)
                            && let Some(os) = event.offers
                        {
                            offers.extend(os.offers.into_iter().map(|o| (sub.clone(), o)));
                        }
                    }
                }
                4 | 5 if !offers.is_empty() => {
                    let (sub, offer) = offers.remove(rng.usize(0..offers.len()));
                    let mut tasks = Vec::new();
                    for _ in 0..rng.usize(0..3) {
                        let id = format!("t{next_task}");
                        next_task += 1;
                        let mut b = helpers::TaskBuilder::new(&id, &id, &offer.agent_id.value)
                            .cpus(rng.usize(1..20) as f64 / 10.0)
                            .mem(rng.usize(1..300) as f64)
                            .shell("true");
                        if rng.bool() {
                            b = b.ports(&[31000 + rng.u64(0..20)]);
                        }
                        if rng.usize(0..4) == 0 {
                            let mut e = helpers::custom_executor(
                                &format!("e{}", rng.usize(0..2)),
                                helpers::shell("./e"),
                            );
                            e.resources = Resources::parse("cpus:0.1;mem:32").unwrap().into_vec();
                            let mut t = b.build();
                            t.command = None;
                            t.executor = Some(Box::new(e));
                            tasks.push(t);
                        } else {
                            tasks.push(b.build());
                        }
                        launched.push((sub.clone(), id));
                    }
                    let _ = w.call(
                        &sub,
                        scheduler::Call {
                            r#type: Some(call::Type::Accept as i32),
                            accept: Some(call::Accept {
                                offer_ids: vec![offer.id.clone()],
                                operations: vec![launch(tasks)],
                                filters: Some(v1::Filters {
                                    refuse_seconds: Some(rng.usize(0..3) as f64),
                                }),
                            }),
                            ..Default::default()
                        },
                    );
                }
                6 if !offers.is_empty() => {
                    let (sub, offer) = offers.remove(rng.usize(0..offers.len()));
                    let _ = w.call(&sub, decline_call(&[offer], Some(rng.f64() * 3.0)));
                }
                7 | 8 if !launched.is_empty() => {
                    let (sub, id) = launched[rng.usize(0..launched.len())].clone();
                    let state = [
                        TaskState::TaskStarting,
                        TaskState::TaskRunning,
                        TaskState::TaskFinished,
                        TaskState::TaskFailed,
                        TaskState::TaskKilled,
                    ][rng.usize(0..5)];
                    let uuid = w.status(&sub, &id, state);
                    pending_acks.push((sub, id, uuid));
                }
                9 if !pending_acks.is_empty() => {
                    let (sub, id, uuid) = pending_acks.remove(rng.usize(0..pending_acks.len()));
                    let _ = w.ack(&sub, &id, uuid);
                }
                10 if !subs.is_empty() => {
                    let sub = subs[rng.usize(0..subs.len())].clone();
                    let ty = [
                        call::Type::Revive,
                        call::Type::Revive,
                        call::Type::Suppress,
                        call::Type::Teardown,
                    ][rng.usize(0..4)];
                    let _ = w.simple(&sub, ty);
                    if ty == call::Type::Teardown {
                        subs.retain(|s| s.id != sub.id);
                    }
                }
                11 if !subs.is_empty() => {
                    let sub = subs[rng.usize(0..subs.len())].clone();
                    w.m.handle_agent(
                        w.now,
                        ToMaster::ExecutorExited {
                            agent_id: w.agent.clone(),
                            framework_id: sub.id.clone(),
                            executor_id: v1::ExecutorId {
                                value: format!("e{}", rng.usize(0..2)),
                            },
                            status: 0,
                            command_executor: false,
                        },
                    );
                }
                _ => {}
            }
            w.drain();
            check_invariants(&w.m);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Read side
// ---------------------------------------------------------------------------------------------

#[test]
fn state_json_has_the_mesos_shape() {
    let (mut w, sub) = running();
    w.advance(secs(5));
    w.offers(&sub);
    let s = serde_like::parse(&w.m.state_json(w.now));
    assert_eq!(s.get("version").str(), "1.12.0");
    assert_eq!(s.get("id").str(), "M");
    assert_eq!(s.get("pid").str(), "master@127.0.0.1:5050");
    assert_eq!(s.get("leader").str(), "master@127.0.0.1:5050");
    assert_eq!(s.get("start_time").num(), EPOCH);
    assert_eq!(s.get("activated_slaves").num(), 1.0);
    let slave = s.get("slaves").idx(0);
    assert_eq!(slave.get("id").str(), "M-S0");
    assert_eq!(slave.get("pid").str(), "slave(1)@127.0.0.1:5051");
    assert_eq!(slave.get("resources").get("cpus").num(), 4.0);
    assert_eq!(slave.get("resources").get("ports").str(), "[31000-32000]");
    assert_eq!(slave.get("attributes").get("rack").str(), "r1");
    assert_eq!(slave.get("offered_resources").get("cpus").num(), 3.5);
    let fw = s.get("frameworks").idx(0);
    assert_eq!(fw.get("id").str(), sub.id.value);
    assert_eq!(fw.get("role").str(), "*");
    assert!(fw.get("active").bool());
    assert!(fw.get("connected").bool());
    assert_eq!(fw.get("offers").len(), 1);
    assert_eq!(fw.get("offers").idx(0).get("slave_id").str(), "M-S0");
    assert_eq!(fw.get("resources").get("cpus").num(), 4.0);
    assert_eq!(s.get("completed_frameworks").len(), 0);

    let tasks = serde_like::parse(&w.m.tasks_json(100, 0, true, None, None));
    assert_eq!(tasks.get("tasks").idx(0).get("id").str(), "t1");
    assert_eq!(tasks.get("tasks").idx(0).get("slave_id").str(), "M-S0");
    let paged = serde_like::parse(&w.m.tasks_json(100, 1, true, None, None));
    assert_eq!(paged.get("tasks").len(), 0);
    let none = serde_like::parse(&w.m.tasks_json(100, 0, true, None, Some("zzz")));
    assert_eq!(none.get("tasks").len(), 0);

    let metrics: std::collections::HashMap<String, f64> = w.m.metrics().into_iter().collect();
    assert_eq!(metrics["master/elected"], 1.0);
    assert_eq!(metrics["master/tasks_staging"], 1.0);
    assert_eq!(metrics["master/frameworks_active"], 1.0);
    assert_eq!(metrics["master/outstanding_offers"], 1.0);
    assert_eq!(metrics["master/cpus_total"], 4.0);
    assert_eq!(metrics["master/cpus_used"], 0.5);
}

/// Just enough of a JSON reader to look into the v0 JSON in tests (no serde in this crate).
mod serde_like {
    #[derive(Debug, Clone, PartialEq)]
    pub(super) enum Value {
        Null,
        Bool(bool),
        Num(f64),
        Str(String),
        Arr(Vec<Value>),
        Obj(Vec<(String, Value)>),
    }

    impl Value {
        pub(super) fn get(&self, key: &str) -> &Value {
            match self {
                Value::Obj(fields) => fields
                    .iter()
                    .find(|(k, _)| k == key)
                    .map(|(_, v)| v)
                    .unwrap_or_else(|| panic!("no key {key} in {self:?}")),
                _ => panic!("not an object: {self:?}"),
            }
        }
        pub(super) fn idx(&self, i: usize) -> &Value {
            match self {
                Value::Arr(items) => &items[i],
                _ => panic!("not an array: {self:?}"),
            }
        }
        pub(super) fn len_obj(&self) -> usize {
            match self {
                Value::Obj(fields) => fields.len(),
                _ => panic!("not an object: {self:?}"),
            }
        }
        pub(super) fn len(&self) -> usize {
            match self {
                Value::Arr(items) => items.len(),
                _ => panic!("not an array: {self:?}"),
            }
        }
        pub(super) fn str(&self) -> &str {
            match self {
                Value::Str(s) => s,
                _ => panic!("not a string: {self:?}"),
            }
        }
        pub(super) fn num(&self) -> f64 {
            match self {
                Value::Num(n) => *n,
                _ => panic!("not a number: {self:?}"),
            }
        }
        pub(super) fn bool(&self) -> bool {
            match self {
                Value::Bool(b) => *b,
                _ => panic!("not a bool: {self:?}"),
            }
        }
    }

    pub(super) fn parse(s: &str) -> Value {
        let mut p = P {
            s: s.as_bytes(),
            i: 0,
        };
        let v = p.value();
        p.ws();
        assert_eq!(p.i, s.len(), "trailing input in {s}");
        v
    }

    struct P<'a> {
        s: &'a [u8],
        i: usize,
    }

    impl P<'_> {
        fn ws(&mut self) {
            while self.i < self.s.len() && self.s[self.i].is_ascii_whitespace() {
                self.i += 1;
            }
        }
        fn eat(&mut self, c: u8) {
            self.ws();
            assert_eq!(self.s[self.i] as char, c as char, "at {}", self.i);
            self.i += 1;
        }
        fn value(&mut self) -> Value {
            self.ws();
            match self.s[self.i] {
                b'{' => {
                    self.i += 1;
                    let mut fields = Vec::new();
                    self.ws();
                    if self.s[self.i] == b'}' {
                        self.i += 1;
                        return Value::Obj(fields);
                    }
                    loop {
                        self.ws();
                        let Value::Str(k) = self.value() else {
                            panic!("key")
                        };
                        self.eat(b':');
                        fields.push((k, self.value()));
                        self.ws();
                        let c = self.s[self.i];
                        self.i += 1;
                        if c == b'}' {
                            return Value::Obj(fields);
                        }
                        assert_eq!(c, b',');
                    }
                }
                b'[' => {
                    self.i += 1;
                    let mut items = Vec::new();
                    self.ws();
                    if self.s[self.i] == b']' {
                        self.i += 1;
                        return Value::Arr(items);
                    }
                    loop {
                        items.push(self.value());
                        self.ws();
                        let c = self.s[self.i];
                        self.i += 1;
                        if c == b']' {
                            return Value::Arr(items);
                        }
                        assert_eq!(c, b',');
                    }
                }
                b'"' => {
                    self.i += 1;
                    let mut out = String::new();
                    loop {
                        let c = self.s[self.i];
                        self.i += 1;
                        match c {
                            b'"' => return Value::Str(out),
                            b'\\' => {
                                let e = self.s[self.i];
                                self.i += 1;
                                match e {
                                    b'n' => out.push('\n'),
                                    b't' => out.push('\t'),
                                    b'u' => {
                                        let hex = std::str::from_utf8(&self.s[self.i..self.i + 4])
                                            .unwrap();
                                        self.i += 4;
                                        out.push(
                                            char::from_u32(u32::from_str_radix(hex, 16).unwrap())
                                                .unwrap_or('?'),
                                        );
                                    }
                                    other => out.push(other as char),
                                }
                            }
                            _ => {
                                // Copy UTF-8 bytes through.
                                let start = self.i - 1;
                                let mut end = self.i;
                                while end < self.s.len() && (self.s[end] & 0xC0) == 0x80 {
                                    end += 1;
                                }
                                out.push_str(std::str::from_utf8(&self.s[start..end]).unwrap());
                                self.i = end;
                            }
                        }
                    }
                }
                b't' => {
                    self.i += 4;
                    Value::Bool(true)
                }
                b'f' => {
                    self.i += 5;
                    Value::Bool(false)
                }
                b'n' => {
                    self.i += 4;
                    Value::Null
                }
                _ => {
                    let start = self.i;
                    while self.i < self.s.len()
                        && (self.s[self.i].is_ascii_alphanumeric()
                            || matches!(self.s[self.i], b'-' | b'+' | b'.'))
                    {
                        self.i += 1;
                    }
                    let text = std::str::from_utf8(&self.s[start..self.i]).unwrap();
                    Value::Num(match text {
                        "Infinity" => f64::INFINITY,
                        "-Infinity" => f64::NEG_INFINITY,
                        "NaN" => f64::NAN,
                        t => t.parse().unwrap_or_else(|_| panic!("number {t}")),
                    })
                }
            }
        }
    }
}

#[test]
fn operator_api_views() {
    let (mut w, sub) = running();
    w.advance(secs(5));
    w.offers(&sub);
    let state = w.m.get_state();
    let tasks = state.get_tasks.unwrap();
    assert_eq!(tasks.tasks.len(), 1);
    assert_eq!(tasks.tasks[0].state, TaskState::TaskStaging as i32);
    let frameworks = state.get_frameworks.unwrap();
    assert_eq!(
        frameworks.frameworks[0].framework_info.id.as_ref(),
        Some(&sub.id)
    );
    assert!(frameworks.frameworks[0].connected);
    assert_eq!(frameworks.frameworks[0].offers.len(), 1);
    let agents = state.get_agents.unwrap();
    assert_eq!(agents.agents[0].agent_info.id.as_ref(), Some(&w.agent));
    assert_eq!(
        Resources::from_vec(agents.agents[0].allocated_resources.clone()).scalar("cpus"),
        0.5
    );
    assert_eq!(w.m.get_master().master_info.unwrap().id, "M");
}

#[test]
fn state_summary_counts_tasks_by_state() {
    let (mut w, sub) = running();
    w.status(&sub, "t1", TaskState::TaskRunning);
    let s = serde_like::parse(&w.m.state_summary_json());
    let slave = s.get("slaves").idx(0);
    assert_eq!(slave.get("TASK_RUNNING").num(), 1.0);
    assert_eq!(slave.get("framework_ids").idx(0).str(), sub.id.value);
    let fw = s.get("frameworks").idx(0);
    assert_eq!(fw.get("TASK_STAGING").num(), 0.0);
    assert_eq!(fw.get("slave_ids").idx(0).str(), "M-S0");
    let agents = serde_like::parse(&w.m.slaves_json());
    assert_eq!(agents.get("slaves").idx(0).get("id").str(), "M-S0");
}

#[test]
fn roles_and_flags() {
    let (mut w, _sub) = running();
    let roles = serde_like::parse(&w.m.roles_json());
    let star = roles.get("roles").idx(0);
    assert_eq!(star.get("name").str(), "*");
    assert_eq!(star.get("allocated").get("cpus").num(), 0.5);
    assert_eq!(star.get("frameworks").len(), 1);
    w.advance(secs(5));
    let flags = serde_like::parse(&w.m.flags_json());
    assert_eq!(flags.get("flags").get("allocation_interval").str(), "1secs");
}

#[test]
fn statically_reserved_resources_go_to_their_role_only() {
    let now = Instant::now();
    let mut m = Master::with_wall_clock(
        MasterConfig {
            master_id: "M".into(),
            ..MasterConfig::default()
        },
        now,
        EPOCH,
    );
    let agent = m.add_agent(
        now,
        agent_info("cpus(dev):1;cpus:2;mem:512"),
        "slave(1)@127.0.0.1:5051".into(),
    );
    let mut w = World {
        m,
        now,
        agent: agent.clone(),
    };
    // A "*" framework is offered only the unreserved part.
    let star = w.subscribe(1, framework_info(&[]));
    let offers = w.offers(&star);
    assert_eq!(
        Resources::from_vec(offers[0].resources.clone()).scalar("cpus"),
        2.0
    );
    w.simple(&star, call::Type::Teardown).unwrap();
    w.drain();

    // A "dev" framework without RESERVATION_REFINEMENT sees `role: "dev"` on the reserved cpus.
    let mut info = framework_info(&[]);
    #[allow(deprecated)]
    {
        info.role = Some("dev".into());
    }
    let dev = w.subscribe(2, info);
    let offers = w.offers(&dev);
    #[allow(deprecated)]
    let roles: Vec<(&str, f64)> = offers[0]
        .resources
        .iter()
        .filter(|r| r.name == "cpus")
        .map(|r| (r.role.as_deref().unwrap(), r.scalar.unwrap().value))
        .collect();
    assert_eq!(roles.len(), 2);
    assert!(roles.contains(&("dev", 1.0)) && roles.contains(&("*", 2.0)));
    assert!(
        offers[0]
            .resources
            .iter()
            .all(|r| r.reservations.is_empty() && r.reservation.is_none())
    );

    // It launches on the reserved cpus, named the pre-refinement way.
    let mut task = command_task("t", &agent, 0.5, 32.0);
    #[allow(deprecated)]
    {
        task.resources[0].role = Some("dev".into());
    }
    w.accept(&dev, &[&offers[0]], vec![launch(vec![task])]);
    assert_eq!(w.agent_msgs().len(), 1);
    let state = serde_like::parse(&w.m.state_json(w.now));
    let slave = state.get("slaves").idx(0);
    assert_eq!(
        slave.get("reserved_resources").get("dev").get("cpus").num(),
        1.0
    );
    assert_eq!(slave.get("unreserved_resources").get("cpus").num(), 2.0);
    w.simple(&dev, call::Type::Teardown).unwrap();
    w.drain();

    // A RESERVATION_REFINEMENT framework sees `reservations` and no `role`.
    let mut info = framework_info(&[Cap::ReservationRefinement]);
    #[allow(deprecated)]
    {
        info.role = Some("dev".into());
    }
    let refined = w.subscribe(3, info);
    let offers = w.offers(&refined);
    let reserved: Vec<&v1::Resource> = offers[0]
        .resources
        .iter()
        .filter(|r| !r.reservations.is_empty())
        .collect();
    assert_eq!(reserved.len(), 1);
    assert_eq!(reserved[0].reservations[0].role.as_deref(), Some("dev"));
    #[allow(deprecated)]
    let no_roles = offers[0].resources.iter().all(|r| r.role.is_none());
    assert!(no_roles);
}

#[test]
fn dynamic_reservations_and_unreservations() {
    let mut w = World::new();
    let mut info = framework_info(&[Cap::MultiRole]);
    info.roles = vec!["dev".into()];
    info.principal = Some("p".into());
    let sub = w.subscribe(1, info);
    let offers = w.offers(&sub);

    // Reserve 1 cpu and 128 MB for "dev", the pre-refinement way.
    let reserved = |name: &str, amount: f64| {
        let mut r = helpers::scalar(name, amount);
        #[allow(deprecated)]
        {
            r.role = Some("dev".into());
        }
        r.reservation = Some(Box::new(v1::resource::ReservationInfo {
            principal: Some("p".into()),
            ..Default::default()
        }));
        r
    };
    let reserve = v1::offer::Operation {
        r#type: Some(operation::Type::Reserve as i32),
        reserve: Some(operation::Reserve {
            source: vec![],
            resources: vec![reserved("cpus", 1.0), reserved("mem", 128.0)],
        }),
        ..Default::default()
    };
    w.accept(&sub, &[&offers[0]], vec![reserve]);
    assert!(w.drain().is_empty());
    let state = serde_like::parse(&w.m.state_json(w.now));
    let slave = state.get("slaves").idx(0);
    assert_eq!(slave.get("resources").get("cpus").num(), 4.0);
    assert_eq!(
        slave.get("reserved_resources").get("dev").get("cpus").num(),
        1.0
    );
    assert_eq!(slave.get("unreserved_resources").get("mem").num(), 896.0);

    // The next offer has the reservation (pre-refinement: role and principal).
    w.advance(secs(5));
    let offers = w.offers(&sub);
    #[allow(deprecated)]
    let dev_cpus: Vec<&v1::Resource> = offers[0]
        .resources
        .iter()
        .filter(|r| r.name == "cpus" && r.role.as_deref() == Some("dev"))
        .collect();
    assert_eq!(dev_cpus.len(), 1);
    assert_eq!(dev_cpus[0].scalar.unwrap().value, 1.0);
    assert_eq!(
        dev_cpus[0]
            .reservation
            .as_ref()
            .unwrap()
            .principal
            .as_deref(),
        Some("p")
    );

    // A reservation for another principal is dropped; the unreservation goes through.
    let mut foreign = reserved("cpus", 1.0);
    foreign.reservation.as_mut().unwrap().principal = Some("q".into());
    let unreserve = v1::offer::Operation {
        r#type: Some(operation::Type::Unreserve as i32),
        unreserve: Some(operation::Unreserve {
            resources: vec![reserved("cpus", 1.0), reserved("mem", 128.0)],
        }),
        ..Default::default()
    };
    let reserve_foreign = v1::offer::Operation {
        r#type: Some(operation::Type::Reserve as i32),
        reserve: Some(operation::Reserve {
            source: vec![],
            resources: vec![foreign],
        }),
        ..Default::default()
    };
    w.accept(&sub, &[&offers[0]], vec![reserve_foreign, unreserve]);
    let state = serde_like::parse(&w.m.state_json(w.now));
    let slave = state.get("slaves").idx(0);
    assert_eq!(slave.get("reserved_resources").len_obj(), 0);
    assert_eq!(slave.get("unreserved_resources").get("cpus").num(), 4.0);
    assert_eq!(slave.get("unreserved_resources").get("mem").num(), 1024.0);

    // Unreserving what is not offered fails.
    w.advance(secs(5));
    let offers = w.offers(&sub);
    let unreserve_again = v1::offer::Operation {
        r#type: Some(operation::Type::Unreserve as i32),
        unreserve: Some(operation::Unreserve {
            resources: vec![reserved("cpus", 1.0)],
        }),
        ..Default::default()
    };
    w.accept(&sub, &[&offers[0]], vec![unreserve_again]);
    let state = serde_like::parse(&w.m.state_json(w.now));
    assert_eq!(
        state
            .get("slaves")
            .idx(0)
            .get("unreserved_resources")
            .get("cpus")
            .num(),
        4.0
    );
}
