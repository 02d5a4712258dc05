//! The executor client against a fake agent playing the executor API conversations of the
//! reference (§1.6, §1.10, §2.3 E/F, §4.6).

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{FakeServer, Request, StreamWriter, within};
use mesokit_client::executor::{
    Delivery, ExecutorClient, ExecutorConfig, ExecutorEvent, ExecutorEvents,
};
use mesokit_client::{ApiError, ContentType, Error};
use mesokit_proto::helpers::{TaskBuilder, is_valid_uuid};
use mesokit_proto::v1::executor::{Call, Event, call, event};
use mesokit_proto::v1::{
    AgentInfo, ExecutorId, ExecutorInfo, FrameworkInfo, TaskGroupInfo, TaskId, TaskInfo, TaskState,
    TaskStatus, task_status,
};

const FW: &str = "7f3e-0000";
const EXEC: &str = "my-exec";

fn config(agent: &FakeServer, ct: ContentType, checkpoint: bool) -> ExecutorConfig {
    let mut c = ExecutorConfig::new(FW, EXEC, format!("{}/api/v1/executor", agent.url()));
    c.content_type = ct;
    c.checkpoint = checkpoint;
    c.subscription_backoff_max = Duration::from_millis(10);
    c.request_timeout = Duration::from_secs(5);
    c
}

fn task(id: &str) -> TaskInfo {
    TaskBuilder::new(id, id, "7f3e-S0")
        .cpus(0.1)
        .shell("sleep 1")
        .build()
}

fn subscribed() -> Event {
    Event {
        r#type: Some(event::Type::Subscribed as i32),
        subscribed: Some(Box::new(event::Subscribed {
            executor_info: ExecutorInfo {
                executor_id: ExecutorId { value: EXEC.into() },
                ..Default::default()
            },
            framework_info: FrameworkInfo {
                user: "alice".into(),
                name: "demo".into(),
                ..Default::default()
            },
            agent_info: AgentInfo {
                hostname: "localhost".into(),
                ..Default::default()
            },
            container_id: None,
        })),
        ..Default::default()
    }
}

fn launch(t: TaskInfo) -> Event {
    Event {
        r#type: Some(event::Type::Launch as i32),
        launch: Some(Box::new(event::Launch { task: t })),
        ..Default::default()
    }
}

fn acknowledged(task_id: &str, uuid: &Bytes) -> Event {
    Event {
        r#type: Some(event::Type::Acknowledged as i32),
        acknowledged: Some(event::Acknowledged {
            task_id: TaskId {
                value: task_id.into(),
            },
            uuid: uuid.clone(),
        }),
        ..Default::default()
    }
}

fn status(task_id: &str, state: TaskState) -> TaskStatus {
    TaskStatus {
        task_id: TaskId {
            value: task_id.into(),
        },
        state: state as i32,
        ..Default::default()
    }
}

fn assert_subscribe(req: &Request, ct: ContentType) -> call::Subscribe {
    assert_subscribe_at(req, ct, "/api/v1/executor")
}

fn assert_subscribe_at(req: &Request, ct: ContentType, path: &str) -> call::Subscribe {
    assert_eq!(req.method, "POST");
    assert_eq!(req.path, path);
    assert_eq!(req.header("content-type"), Some(ct.media_type()));
    assert_eq!(req.header("accept"), Some(ct.media_type()));
    assert!(req.header("mesos-stream-id").is_none());
    let call: Call = req.decode();
    assert_eq!(call.r#type, Some(call::Type::Subscribe as i32));
    assert_eq!(call.executor_id.value, EXEC);
    assert_eq!(call.framework_id.value, FW);
    call.subscribe.expect("subscribe field")
}

async fn next(events: &mut ExecutorEvents) -> ExecutorEvent {
    within("an executor event", events.next_event())
        .await
        .expect("session ended")
}

async fn expect_event(events: &mut ExecutorEvents, ty: event::Type) -> Event {
    match next(events).await {
        ExecutorEvent::Event(e) if e.r#type == Some(ty as i32) => *e,
        other => panic!("expected {ty:?}, got {other:?}"),
    }
}

async fn expect_connected(events: &mut ExecutorEvents) {
    match next(events).await {
        ExecutorEvent::Connected { subscribed } => {
            assert_eq!(subscribed.executor_info.executor_id.value, EXEC)
        }
        other => panic!("expected Connected, got {other:?}"),
    }
}

/// Sends `update` and plays the agent's 202, returning what the agent received.
async fn update_accepted(
    client: &ExecutorClient,
    agent: &mut FakeServer,
    s: TaskStatus,
) -> (Delivery, call::Update) {
    let send = client.update(s);
    let fake = async {
        let req = agent.next().await;
        assert_eq!(req.path, "/api/v1/executor");
        let call: Call = req.decode();
        assert_eq!(call.r#type, Some(call::Type::Update as i32));
        assert_eq!(call.executor_id.value, EXEC);
        assert_eq!(call.framework_id.value, FW);
        req.respond(202, &[], b"");
        *call.update.expect("update field")
    };
    let (delivery, update) = tokio::join!(send, fake);
    (delivery.unwrap(), update)
}

fn open(req: Request, ct: ContentType) -> StreamWriter {
    req.stream(200, &[("Content-Type", ct.media_type())])
}

#[tokio::test]
async fn updates_are_kept_until_acknowledged_and_resent_on_resubscribe() {
    let mut agent = FakeServer::start().await;
    let ct = ContentType::Json;
    let (client, mut events) = ExecutorClient::start(config(&agent, ct, true)).unwrap();

    let req = agent.next().await;
    let sub = assert_subscribe(&req, ct);
    assert!(sub.unacknowledged_tasks.is_empty() && sub.unacknowledged_updates.is_empty());
    let stream = open(req, ct);
    stream.event(ct, &subscribed());
    stream.event(ct, &launch(task("t1")));
    stream.event(ct, &launch(task("t2")));
    expect_connected(&mut events).await;
    expect_event(&mut events, event::Type::Launch).await;
    expect_event(&mut events, event::Type::Launch).await;
    assert_eq!(client.unacknowledged_tasks(), vec![task("t1"), task("t2")]);

    let (d1, u1) = update_accepted(&client, &mut agent, status("t1", TaskState::TaskRunning)).await;
    let Delivery::Sent { uuid: uuid1 } = d1 else {
        panic!("{d1:?}")
    };
    // What the agent validates (§1.6).
    assert_eq!(u1.status.uuid.as_ref(), Some(&uuid1));
    assert_eq!(uuid1.len(), 16);
    assert!(is_valid_uuid(&uuid1));
    assert_eq!(u1.status.source, Some(task_status::Source::Executor as i32));
    assert_eq!(u1.status.executor_id.as_ref().unwrap().value, EXEC);
    assert!(u1.status.timestamp.unwrap() > 1.0e9);
    let (d2, _) = update_accepted(&client, &mut agent, status("t2", TaskState::TaskRunning)).await;
    let uuid2 = d2.uuid().clone();
    assert_ne!(uuid1, uuid2);
    assert_eq!(client.unacknowledged_updates().len(), 2);

    stream.event(ct, &acknowledged("t1", &uuid1));
    let ack = expect_event(&mut events, event::Type::Acknowledged).await;
    assert_eq!(ack.acknowledged.unwrap().uuid, uuid1);
    let pending = client.unacknowledged_updates();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].status.uuid.as_ref(), Some(&uuid2));
    assert_eq!(client.unacknowledged_tasks(), vec![task("t2")]);

    // The agent restarts: the stream is cut.
    drop(stream);
    assert!(matches!(
        next(&mut events).await,
        ExecutorEvent::Disconnected { .. }
    ));
    assert!(!client.is_connected());
    let queued = client
        .update(status("t2", TaskState::TaskFinished))
        .await
        .unwrap();
    let Delivery::Queued { uuid: uuid3 } = queued else {
        panic!("{queued:?}")
    };

    // The recovering agent refuses re-subscriptions that predate the queued update; the client
    // keeps retrying, and every SUBSCRIBE after the update carries it.
    let (req, sub) = loop {
        let req = agent.next().await;
        let sub = assert_subscribe(&req, ct);
        if sub
            .unacknowledged_updates
            .iter()
            .any(|u| u.status.uuid.as_ref() == Some(&uuid3))
        {
            break (req, sub);
        }
        req.respond_text(503, "Agent has not finished recovery");
    };
    let uuids: Vec<_> = sub
        .unacknowledged_updates
        .iter()
        .map(|u| u.status.uuid.clone().unwrap())
        .collect();
    assert_eq!(
        uuids,
        vec![uuid2.clone(), uuid3.clone()],
        "original uuids, in order"
    );
    assert_eq!(
        sub.unacknowledged_updates[1].status.state,
        TaskState::TaskFinished as i32
    );
    assert_eq!(sub.unacknowledged_tasks, vec![task("t2")]);

    let stream = open(req, ct);
    stream.event(ct, &subscribed());
    stream.event(ct, &acknowledged("t2", &uuid2));
    stream.event(ct, &acknowledged("t2", &uuid3));
    expect_connected(&mut events).await;
    expect_event(&mut events, event::Type::Acknowledged).await;
    expect_event(&mut events, event::Type::Acknowledged).await;
    assert!(client.unacknowledged_updates().is_empty());
    assert!(client.unacknowledged_tasks().is_empty());
    assert!(agent.try_next().is_none(), "nothing was sent twice");
    drop(stream);
}

#[tokio::test]
async fn an_update_made_while_subscribing_follows_the_subscribed_event() {
    let mut agent = FakeServer::start().await;
    let ct = ContentType::Json;
    let (client, mut events) = ExecutorClient::start(config(&agent, ct, true)).unwrap();
    let req = agent.next().await;
    assert_subscribe(&req, ct);
    // The SUBSCRIBE is already on its way, without this update.
    let queued = client
        .update(status("t1", TaskState::TaskRunning))
        .await
        .unwrap();
    assert!(matches!(queued, Delivery::Queued { .. }));
    let stream = open(req, ct);
    stream.event(ct, &subscribed());
    expect_connected(&mut events).await;
    let req = agent.next().await;
    let call: Call = req.decode();
    assert_eq!(call.r#type, Some(call::Type::Update as i32));
    assert_eq!(
        call.update.unwrap().status.uuid.as_ref(),
        Some(queued.uuid())
    );
    req.respond(202, &[], b"");
    drop(stream);
}

#[tokio::test]
async fn without_checkpointing_a_disconnect_is_final() {
    let mut agent = FakeServer::start().await;
    let ct = ContentType::Json;
    let (client, mut events) = ExecutorClient::start(config(&agent, ct, false)).unwrap();
    let stream = open(agent.next().await, ct);
    stream.event(ct, &subscribed());
    expect_connected(&mut events).await;
    stream.end();
    let err = within("the session to end", events.next_event())
        .await
        .unwrap_err();
    assert!(matches!(&err, Error::AgentLost { .. }), "{err:?}");
    assert!(err.to_string().contains("should shut down"));
    assert!(matches!(events.next_event().await, Err(Error::Closed)));
    assert!(!client.is_connected());
}

#[tokio::test]
async fn a_checkpointing_executor_gives_up_after_the_recovery_timeout() {
    let mut agent = FakeServer::start().await;
    let ct = ContentType::Json;
    let mut cfg = config(&agent, ct, true);
    cfg.recovery_timeout = Duration::from_millis(300);
    let (_client, mut events) = ExecutorClient::start(cfg).unwrap();
    let stream = open(agent.next().await, ct);
    stream.event(ct, &subscribed());
    expect_connected(&mut events).await;
    // The agent goes away for good: stream cut, connections refused.
    drop(stream);
    drop(agent);
    assert!(matches!(
        next(&mut events).await,
        ExecutorEvent::Disconnected { .. }
    ));
    let err = within("the recovery timeout", events.next_event())
        .await
        .unwrap_err();
    let Error::RecoveryTimeout { timeout, .. } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(*timeout, Duration::from_millis(300));
}

#[tokio::test]
async fn protobuf_bearer_token_task_groups_and_messages() {
    let mut agent = FakeServer::start().await;
    let ct = ContentType::Protobuf;
    let mut cfg = config(&agent, ct, false);
    cfg.auth_token = Some("eyJhbGciOi.jwt".into());
    let (client, mut events) = ExecutorClient::start(cfg).unwrap();
    let req = agent.next().await;
    assert_subscribe(&req, ct);
    assert_eq!(req.header("authorization"), Some("Bearer eyJhbGciOi.jwt"));
    let stream = open(req, ct);
    let group = Event {
        r#type: Some(event::Type::LaunchGroup as i32),
        launch_group: Some(event::LaunchGroup {
            task_group: TaskGroupInfo {
                tasks: vec![task("g1"), task("g2")],
            },
        }),
        ..Default::default()
    };
    for ev in [subscribed(), group.clone()] {
        stream.bytewise(&mesokit_proto::recordio::frame(&ct.encode(&ev)));
    }
    expect_connected(&mut events).await;
    assert_eq!(
        expect_event(&mut events, event::Type::LaunchGroup).await,
        group
    );
    assert_eq!(client.unacknowledged_tasks(), vec![task("g1"), task("g2")]);

    let msg = client.message(&b"hello scheduler"[..]);
    let fake = async {
        let req = agent.next().await;
        assert_eq!(req.header("authorization"), Some("Bearer eyJhbGciOi.jwt"));
        assert_eq!(req.header("content-type"), Some("application/x-protobuf"));
        let call: Call = req.decode();
        assert_eq!(call.r#type, Some(call::Type::Message as i32));
        assert_eq!(call.message.unwrap().data, &b"hello scheduler"[..]);
        req.respond(202, &[], b"");
    };
    let (r, ()) = tokio::join!(msg, fake);
    r.unwrap();
    drop(stream);
}

#[tokio::test]
async fn shutdown_ends_the_session_without_resubscribing() {
    let mut agent = FakeServer::start().await;
    let ct = ContentType::Json;
    let (_client, mut events) = ExecutorClient::start(config(&agent, ct, true)).unwrap();
    let stream = open(agent.next().await, ct);
    stream.event(ct, &subscribed());
    stream.event(
        ct,
        &Event {
            r#type: Some(event::Type::Shutdown as i32),
            ..Default::default()
        },
    );
    stream.end();
    expect_connected(&mut events).await;
    expect_event(&mut events, event::Type::Shutdown).await;
    assert!(matches!(
        within("the end", events.next_event()).await,
        Err(Error::Closed)
    ));
    assert!(agent.try_next().is_none());
}

#[tokio::test]
async fn invalid_updates_are_refused_and_not_kept() {
    let mut agent = FakeServer::start().await;
    let ct = ContentType::Json;
    let (client, mut events) = ExecutorClient::start(config(&agent, ct, true)).unwrap();
    let stream = open(agent.next().await, ct);
    stream.event(ct, &subscribed());
    expect_connected(&mut events).await;

    let staging = client
        .update(status("t1", TaskState::TaskStaging))
        .await
        .unwrap_err();
    assert!(matches!(staging, Error::InvalidCall(_)));
    let mut foreign = status("t1", TaskState::TaskRunning);
    foreign.executor_id = Some(ExecutorId {
        value: "other".into(),
    });
    assert!(matches!(
        client.update(foreign).await,
        Err(Error::InvalidCall(_))
    ));
    let mut bad_uuid = status("t1", TaskState::TaskRunning);
    bad_uuid.uuid = Some(Bytes::from_static(b"not-a-uuid"));
    assert!(matches!(
        client.update(bad_uuid).await,
        Err(Error::InvalidCall(_))
    ));

    let send = client.update(status("t1", TaskState::TaskRunning));
    let fake = async {
        agent
            .next()
            .await
            .respond_text(400, "Received invalid status update: bad check_status");
    };
    let (r, ()) = tokio::join!(send, fake);
    let err = r.unwrap_err();
    assert!(
        matches!(err.api(), Some(ApiError::BadRequest(m)) if m.contains("bad check_status")),
        "{err:?}"
    );
    assert!(
        client.unacknowledged_updates().is_empty(),
        "a rejected update is not re-sent"
    );
    drop(stream);
}

#[tokio::test]
async fn an_executor_configured_from_the_environment_reaches_its_agent() {
    let mut agent = FakeServer::start().await;
    let ct = ContentType::Json;
    let cfg = ExecutorConfig::from_vars([
        ("MESOS_FRAMEWORK_ID", FW.to_owned()),
        ("MESOS_EXECUTOR_ID", EXEC.to_owned()),
        ("MESOS_SLAVE_PID", format!("slave(1)@{}", agent.authority())),
        ("MESOS_CHECKPOINT", "0".to_owned()),
    ])
    .unwrap();
    let (_client, _events) = ExecutorClient::start(cfg).unwrap();
    let req = agent.next().await;
    assert_subscribe_at(&req, ct, "/slave(1)/api/v1/executor");
}

#[tokio::test]
async fn heartbeat_calls_keep_the_connection_warm() {
    let mut agent = FakeServer::start().await;
    let ct = ContentType::Json;
    let mut cfg = config(&agent, ct, false);
    cfg.heartbeat_interval = Duration::from_millis(50);
    let (_client, mut events) = ExecutorClient::start(cfg).unwrap();
    let stream = open(agent.next().await, ct);
    stream.event(ct, &subscribed());
    expect_connected(&mut events).await;
    for _ in 0..2 {
        let req = agent.next().await;
        let call: Call = req.decode();
        assert_eq!(call.r#type, Some(call::Type::Heartbeat as i32));
        assert_eq!(call.executor_id.value, EXEC);
        assert_eq!(call.framework_id.value, FW);
        req.respond(202, &[], b"");
    }
    drop(stream);
}
