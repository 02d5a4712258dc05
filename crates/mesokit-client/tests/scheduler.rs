//! The scheduler client against a fake master playing the conversations of the Mesos v1
//! scheduler API reference (§1.4-1.9, §2.3).

mod common;

use std::time::Duration;

use common::{FakeServer, Request, StreamWriter, within};
use mesokit_client::scheduler::{SchedulerClient, SchedulerConfig, SchedulerEvent};
use mesokit_client::{ApiError, Backoff, ContentType, Credentials, Error};
use mesokit_proto::v1::scheduler::{Call, Event, call, event};
use mesokit_proto::v1::{
    AgentId, Filters, FrameworkId, FrameworkInfo, OfferId, TaskId, TaskState, TaskStatus,
};

const STREAM_1: &str = "4b4e6e0e-2a62-4bd4-9b9a-2d0f6d8d1c11";
const STREAM_2: &str = "9d0c1a2b-0000-4000-8000-000000000002";
const FW: &str = "7f3e0000-0000-0000-0000-000000000001-0000";

/// The OFFERS event of the reference (§2.3 B), byte for byte as Mesos writes it.
const OFFERS_JSON: &str = r#"{"type":"OFFERS","offers":{"offers":[{"id":{"value":"7f3e-O3"},"framework_id":{"value":"7f3e0000-0000-0000-0000-000000000001-0000"},"agent_id":{"value":"7f3e-S0"},"hostname":"localhost","url":{"scheme":"http","address":{"hostname":"localhost","ip":"127.0.0.1","port":5051},"path":"/slave(1)"},"resources":[{"name":"cpus","type":"SCALAR","scalar":{"value":4.0},"role":"*","allocation_info":{"role":"dev"}},{"name":"mem","type":"SCALAR","scalar":{"value":7808.0},"role":"*","allocation_info":{"role":"dev"}},{"name":"ports","type":"RANGES","ranges":{"range":[{"begin":31000,"end":32000}]},"role":"*","allocation_info":{"role":"dev"}}],"attributes":[{"name":"rack","type":"TEXT","text":{"value":"r1"}}],"executor_ids":[{"value":"my-exec"}],"allocation_info":{"role":"dev"}}]}}"#;

fn framework_info() -> FrameworkInfo {
    FrameworkInfo {
        user: "alice".into(),
        name: "demo".into(),
        roles: vec!["dev".into()],
        failover_timeout: Some(604800.0),
        checkpoint: Some(true),
        ..Default::default()
    }
}

fn config(masters: &[String], ct: ContentType) -> SchedulerConfig {
    let mut c = SchedulerConfig::new(masters.iter().cloned(), framework_info());
    c.content_type = ct;
    c.backoff = Backoff {
        min: Duration::from_millis(5),
        max: Duration::from_millis(20),
    };
    c.request_timeout = Duration::from_secs(5);
    c
}

fn subscribed(fw: &str, heartbeat: f64) -> Event {
    Event {
        r#type: Some(event::Type::Subscribed as i32),
        subscribed: Some(event::Subscribed {
            framework_id: FrameworkId { value: fw.into() },
            heartbeat_interval_seconds: Some(heartbeat),
            master_info: None,
        }),
        ..Default::default()
    }
}

fn heartbeat() -> Event {
    Event {
        r#type: Some(event::Type::Heartbeat as i32),
        ..Default::default()
    }
}

fn error_event(message: &str) -> Event {
    Event {
        r#type: Some(event::Type::Error as i32),
        error: Some(event::Error {
            message: message.into(),
        }),
        ..Default::default()
    }
}

fn stream_headers(ct: ContentType, stream_id: &str) -> Vec<(&'static str, String)> {
    vec![
        ("Content-Type", ct.media_type().to_owned()),
        ("Mesos-Stream-Id", stream_id.to_owned()),
    ]
}

/// Checks a SUBSCRIBE request the way the master validates it, and returns the call.
fn assert_subscribe(req: &Request, ct: ContentType) -> Call {
    assert_eq!(req.method, "POST");
    assert_eq!(req.path, "/api/v1/scheduler");
    assert_eq!(req.header("content-type"), Some(ct.media_type()));
    assert_eq!(req.header("accept"), Some(ct.media_type()));
    assert!(
        req.header("mesos-stream-id").is_none(),
        "SUBSCRIBE must not carry Mesos-Stream-Id"
    );
    assert!(req.header("host").is_some());
    let call: Call = req.decode();
    assert_eq!(call.r#type, Some(call::Type::Subscribe as i32));
    let sub = call.subscribe.as_ref().expect("subscribe field");
    assert_eq!(sub.framework_info.name, "demo");
    assert_eq!(sub.framework_info.roles, vec!["dev".to_string()]);
    call
}

fn open(req: Request, ct: ContentType, stream_id: &str) -> StreamWriter {
    let headers = stream_headers(ct, stream_id);
    let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    req.stream(200, &h)
}

async fn next(events: &mut mesokit_client::scheduler::EventStream) -> SchedulerEvent {
    within("a scheduler event", events.next_event())
        .await
        .expect("session ended")
}

async fn expect_connected(events: &mut mesokit_client::scheduler::EventStream) -> String {
    match next(events).await {
        SchedulerEvent::Connected {
            framework_id,
            master,
            subscribed,
        } => {
            assert_eq!(framework_id.value, FW);
            assert_eq!(subscribed.framework_id.value, FW);
            master
        }
        other => panic!("expected Connected, got {other:?}"),
    }
}

async fn expect_event(events: &mut mesokit_client::scheduler::EventStream) -> Event {
    match next(events).await {
        SchedulerEvent::Event(e) => *e,
        other => panic!("expected an event, got {other:?}"),
    }
}

async fn expect_disconnected(events: &mut mesokit_client::scheduler::EventStream) -> Error {
    match next(events).await {
        SchedulerEvent::Disconnected { reason } => reason,
        other => panic!("expected Disconnected, got {other:?}"),
    }
}

/// Subscribes through `master` with SUBSCRIBED + HEARTBEAT and returns the open stream.
async fn subscribe(
    master: &mut FakeServer,
    events: &mut mesokit_client::scheduler::EventStream,
    ct: ContentType,
    stream_id: &str,
) -> (StreamWriter, u64) {
    let req = master.next().await;
    assert_subscribe(&req, ct);
    let conn = req.conn;
    let stream = open(req, ct, stream_id);
    stream.event(ct, &subscribed(FW, 15.0));
    stream.event(ct, &heartbeat());
    expect_connected(events).await;
    let hb = expect_event(events).await;
    assert_eq!(hb.r#type, Some(event::Type::Heartbeat as i32));
    (stream, conn)
}

#[tokio::test]
async fn subscribe_then_offers_then_decline_over_json() {
    let mut master = FakeServer::start().await;
    let ct = ContentType::Json;
    let (client, mut events) = SchedulerClient::start(config(&[master.url()], ct)).unwrap();

    let req = master.next().await;
    let call = assert_subscribe(&req, ct);
    assert_eq!(call.framework_id, None, "a new framework has no id yet");
    assert_eq!(call.subscribe.unwrap().framework_info.id, None);
    let sub_conn = req.conn;
    let stream = open(req, ct, STREAM_1);
    // Exactly the bytes of the reference example, SUBSCRIBED then HEARTBEAT in one chunk.
    let sub = format!(
        r#"{{"type":"SUBSCRIBED","subscribed":{{"framework_id":{{"value":"{FW}"}},"heartbeat_interval_seconds":15.0,"master_info":{{"id":"7f3e","ip":16777343,"port":5050,"pid":"master@127.0.0.1:5050","hostname":"localhost","version":"1.12.0","address":{{"hostname":"localhost","ip":"127.0.0.1","port":5050}}}}}}}}"#
    );
    let mut bytes = mesokit_proto::recordio::frame(sub.as_bytes());
    bytes.extend(mesokit_proto::recordio::frame(br#"{"type":"HEARTBEAT"}"#));
    stream.chunk(&bytes);
    stream.record(OFFERS_JSON.as_bytes());

    let master_url = expect_connected(&mut events).await;
    assert_eq!(master_url, format!("{}/api/v1/scheduler", master.url()));
    assert_eq!(client.framework_id().unwrap().value, FW);
    assert!(client.is_connected());
    assert_eq!(
        expect_event(&mut events).await.r#type,
        Some(event::Type::Heartbeat as i32)
    );
    let offers = expect_event(&mut events).await;
    let offer = &offers.offers.as_ref().unwrap().offers[0];
    assert_eq!(offer.id.value, "7f3e-O3");
    assert_eq!(offer.resources.len(), 3);

    let decline = client.decline(
        vec![offer.id.clone()],
        Some(Filters {
            refuse_seconds: Some(10.0),
        }),
    );
    let fake = async {
        let req = master.next().await;
        assert_ne!(
            req.conn, sub_conn,
            "calls must not use the subscription connection"
        );
        assert_eq!(req.path, "/api/v1/scheduler");
        assert_eq!(req.header("mesos-stream-id"), Some(STREAM_1));
        assert_eq!(req.header("content-type"), Some("application/json"));
        let call: Call = req.decode();
        assert_eq!(call.r#type, Some(call::Type::Decline as i32));
        assert_eq!(call.framework_id.as_ref().unwrap().value, FW);
        let d = call.decline.as_ref().unwrap();
        assert_eq!(
            d.offer_ids,
            vec![OfferId {
                value: "7f3e-O3".into()
            }]
        );
        assert_eq!(d.filters.as_ref().unwrap().refuse_seconds, Some(10.0));
        req.respond(202, &[], b"");
    };
    let (result, ()) = tokio::join!(decline, fake);
    result.unwrap();
    drop(stream);
}

#[tokio::test]
async fn protobuf_stream_in_one_byte_chunks() {
    let mut master = FakeServer::start().await;
    let ct = ContentType::Protobuf;
    let (client, mut events) = SchedulerClient::start(config(&[master.url()], ct)).unwrap();
    let req = master.next().await;
    assert_subscribe(&req, ct);
    let stream = open(req, ct, STREAM_1);
    let offers: Event = ContentType::Json.decode(OFFERS_JSON.as_bytes()).unwrap();
    for ev in [subscribed(FW, 15.0), heartbeat(), offers.clone()] {
        stream.bytewise(&mesokit_proto::recordio::frame(&ct.encode(&ev)));
    }
    expect_connected(&mut events).await;
    assert_eq!(expect_event(&mut events).await, heartbeat());
    assert_eq!(expect_event(&mut events).await, offers);

    let status = TaskStatus {
        task_id: TaskId {
            value: "hello-1".into(),
        },
        state: TaskState::TaskRunning as i32,
        agent_id: Some(AgentId {
            value: "7f3e-S0".into(),
        }),
        uuid: Some(mesokit_proto::helpers::new_uuid()),
        ..Default::default()
    };
    let ack = client.acknowledge(&status);
    let fake = async {
        let req = master.next().await;
        assert_eq!(req.header("content-type"), Some("application/x-protobuf"));
        assert_eq!(req.header("mesos-stream-id"), Some(STREAM_1));
        let call: Call = req.decode();
        assert_eq!(call.r#type, Some(call::Type::Acknowledge as i32));
        let a = call.acknowledge.unwrap();
        assert_eq!(a.uuid.len(), 16);
        assert_eq!(Some(a.uuid), status.uuid);
        assert_eq!(a.task_id.value, "hello-1");
        assert_eq!(a.agent_id.value, "7f3e-S0");
        req.respond(202, &[], b"");
    };
    let (sent, ()) = tokio::join!(ack, fake);
    assert!(sent.unwrap());

    // A master-generated update has no uuid: nothing is sent.
    let reconciled = TaskStatus {
        uuid: None,
        ..status.clone()
    };
    assert!(!client.acknowledge(&reconciled).await.unwrap());
    let revive = client.revive(vec![]);
    let fake = async {
        let req = master.next().await;
        let call: Call = req.decode();
        assert_eq!(
            call.r#type,
            Some(call::Type::Revive as i32),
            "no ACKNOWLEDGE went out"
        );
        req.respond(202, &[], b"");
    };
    let (r, ()) = tokio::join!(revive, fake);
    r.unwrap();
    drop(stream);
}

#[tokio::test]
async fn stream_cut_mid_record_resubscribes_with_the_framework_id() {
    let mut master = FakeServer::start().await;
    let ct = ContentType::Json;
    let (client, mut events) = SchedulerClient::start(config(&[master.url()], ct)).unwrap();
    let (stream, _) = subscribe(&mut master, &mut events, ct, STREAM_1).await;
    // Half of an OFFERS record, then the connection dies.
    let offers = mesokit_proto::recordio::frame(OFFERS_JSON.as_bytes());
    stream.chunk(&offers[..40]);
    drop(stream);

    let reason = expect_disconnected(&mut events).await;
    assert!(
        matches!(reason, Error::Http { .. } | Error::RecordIo { .. }),
        "{reason:?}"
    );
    assert!(!client.is_connected());
    assert!(matches!(
        client.revive(vec![]).await,
        Err(Error::NotSubscribed)
    ));

    let req = master.next().await;
    let call = assert_subscribe(&req, ct);
    assert_eq!(
        call.framework_id.as_ref().unwrap().value,
        FW,
        "failover needs Call.framework_id"
    );
    assert_eq!(
        call.subscribe
            .as_ref()
            .unwrap()
            .framework_info
            .id
            .as_ref()
            .unwrap()
            .value,
        FW,
        "failover needs framework_info.id too"
    );
    let stream = open(req, ct, STREAM_2);
    stream.event(ct, &subscribed(FW, 15.0));
    expect_connected(&mut events).await;

    let kill = client.kill(TaskId { value: "t1".into() }, None);
    let fake = async {
        let req = master.next().await;
        assert_eq!(
            req.header("mesos-stream-id"),
            Some(STREAM_2),
            "calls use the new stream id"
        );
        let call: Call = req.decode();
        assert_eq!(call.kill.unwrap().task_id.value, "t1");
        req.respond(202, &[], b"");
    };
    let (r, ()) = tokio::join!(kill, fake);
    r.unwrap();
    drop(stream);
}

#[tokio::test]
async fn follows_a_protocol_relative_redirect_to_the_leader() {
    let mut standby = FakeServer::start().await;
    let mut leader = FakeServer::start().await;
    let ct = ContentType::Json;
    let (client, mut events) = SchedulerClient::start(config(&[standby.url()], ct)).unwrap();

    let req = standby.next().await;
    assert_subscribe(&req, ct);
    let location = format!("//{}/api/v1/scheduler", leader.authority());
    req.respond(307, &[("Location", &location)], b"");

    let req = leader.next().await;
    assert_subscribe(&req, ct);
    let stream = open(req, ct, STREAM_1);
    stream.event(ct, &subscribed(FW, 15.0));
    let master = expect_connected(&mut events).await;
    assert_eq!(
        master,
        format!("http://{}/api/v1/scheduler", leader.authority()),
        "scheme kept"
    );

    let suppress = client.suppress(vec!["dev".into()]);
    let fake = async {
        let req = leader.next().await;
        assert_eq!(req.header("mesos-stream-id"), Some(STREAM_1));
        let call: Call = req.decode();
        assert_eq!(call.suppress.unwrap().roles, vec!["dev".to_string()]);
        req.respond(202, &[], b"");
    };
    let (r, ()) = tokio::join!(suppress, fake);
    r.unwrap();
    assert!(standby.try_next().is_none(), "calls go to the leader only");
    drop(stream);
}

#[tokio::test]
async fn a_redirect_loop_is_bounded_and_named() {
    let mut a = FakeServer::start().await;
    let mut b = FakeServer::start().await;
    let ct = ContentType::Json;
    let mut cfg = config(&[a.url()], ct);
    cfg.max_reconnect_attempts = Some(0);
    let (_client, mut events) = SchedulerClient::start(cfg).unwrap();

    let to_b = format!("//{}/api/v1/scheduler", b.authority());
    let to_a = format!("//{}/api/v1/scheduler", a.authority());
    a.next().await.respond(307, &[("Location", &to_b)], b"");
    b.next().await.respond(307, &[("Location", &to_a)], b"");

    let err = within("the session to end", events.next_event())
        .await
        .unwrap_err();
    let Error::GaveUp { attempts: 1, last } = &err else {
        panic!("{err:?}")
    };
    let Error::RedirectLoop { chain } = &**last else {
        panic!("{last:?}")
    };
    let url_a = format!("{}/api/v1/scheduler", a.url());
    let url_b = format!("{}/api/v1/scheduler", b.url());
    assert_eq!(chain, &vec![url_a.clone(), url_b.clone(), url_a.clone()]);
    let text = err.to_string();
    assert!(
        text.contains("redirect loop") && text.contains(&url_a) && text.contains(&url_b),
        "{text}"
    );
    assert!(matches!(events.next_event().await, Err(Error::Closed)));
}

#[tokio::test]
async fn too_many_redirects_are_reported_as_disconnects_and_retried() {
    let mut hops: Vec<FakeServer> = Vec::new();
    for _ in 0..3 {
        hops.push(FakeServer::start().await);
    }
    let ct = ContentType::Json;
    let mut cfg = config(&[hops[0].url()], ct);
    cfg.max_redirects = 1;
    let (_client, mut events) = SchedulerClient::start(cfg).unwrap();
    let to1 = format!("//{}", hops[1].authority());
    let to2 = format!("//{}", hops[2].authority());
    hops[0]
        .next()
        .await
        .respond(307, &[("Location", &to1)], b"");
    hops[1]
        .next()
        .await
        .respond(307, &[("Location", &to2)], b"");
    let reason = expect_disconnected(&mut events).await;
    assert!(
        matches!(reason, Error::TooManyRedirects { limit: 1, .. }),
        "{reason:?}"
    );
    // The client keeps trying (with backoff) from the configured master.
    assert_subscribe(&hops[0].next().await, ct);
}

#[tokio::test]
async fn unavailable_and_unreachable_masters_are_skipped() {
    let dead = {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let mut standby = FakeServer::start().await;
    let mut good = FakeServer::start().await;
    let ct = ContentType::Json;
    let (_client, mut events) =
        SchedulerClient::start(config(&[dead, standby.url(), good.url()], ct)).unwrap();
    standby.next().await.respond_text(503, "No leader elected");
    let req = good.next().await;
    assert_subscribe(&req, ct);
    let stream = open(req, ct, STREAM_1);
    stream.event(ct, &subscribed(FW, 15.0));
    assert_eq!(
        expect_connected(&mut events).await,
        format!("{}/api/v1/scheduler", good.url())
    );
    drop(stream);
}

#[tokio::test]
async fn call_errors_carry_status_and_mesos_text() {
    let mut master = FakeServer::start().await;
    let ct = ContentType::Json;
    let (client, mut events) = SchedulerClient::start(config(&[master.url()], ct)).unwrap();
    let (stream, _) = subscribe(&mut master, &mut events, ct, STREAM_1).await;

    let cases: Vec<(u16, &str)> = vec![
        (
            400,
            "Failed to validate scheduler::Call: Expecting 'framework_id' to be present",
        ),
        (403, "Framework is not subscribed"),
        (503, "Master is not recovered yet"),
        (409, "Framework has been removed"),
        (401, ""),
    ];
    let mut conns = Vec::new();
    for (status, text) in &cases {
        let call = client.revive(vec![]);
        let fake = async {
            let req = master.next().await;
            conns.push(req.conn);
            req.respond_text(*status, text);
        };
        let (result, ()) = tokio::join!(call, fake);
        let err = result.unwrap_err();
        let api = err
            .api()
            .unwrap_or_else(|| panic!("not an API error: {err:?}"));
        assert_eq!(api.status(), *status);
        match (status, api) {
            (400, ApiError::BadRequest(m)) | (403, ApiError::Forbidden(m)) => assert_eq!(m, text),
            (503, ApiError::Unavailable(m)) | (409, ApiError::Conflict(m)) => assert_eq!(m, text),
            (401, ApiError::Unauthorized { message, .. }) => assert_eq!(message, "Unauthorized"),
            other => panic!("wrong mapping: {other:?}"),
        }
        assert!(err.to_string().contains(&status.to_string()));
    }
    conns.dedup();
    assert_eq!(conns.len(), 1, "calls reuse one keep-alive connection");
    assert!(
        client.is_connected(),
        "these errors do not drop the subscription"
    );
    drop(stream);
}

#[tokio::test]
async fn not_leader_on_a_call_triggers_resubscription() {
    let mut master = FakeServer::start().await;
    let ct = ContentType::Json;
    let (client, mut events) = SchedulerClient::start(config(&[master.url()], ct)).unwrap();
    let (mut stream, _) = subscribe(&mut master, &mut events, ct, STREAM_1).await;

    let call = client.reconcile(vec![]);
    let fake = async { master.next().await.respond_text(404, "") };
    let (result, ()) = tokio::join!(call, fake);
    assert!(matches!(
        result.unwrap_err().api(),
        Some(ApiError::NotLeader { status: 404, .. })
    ));

    let reason = expect_disconnected(&mut events).await;
    assert!(
        matches!(reason.api(), Some(ApiError::NotLeader { .. })),
        "{reason:?}"
    );
    stream.client_closed().await;
    let req = master.next().await;
    let call = assert_subscribe(&req, ct);
    assert_eq!(call.framework_id.unwrap().value, FW);
}

#[tokio::test]
async fn heartbeat_silence_makes_the_client_reconnect() {
    let mut master = FakeServer::start().await;
    let ct = ContentType::Json;
    let (_client, mut events) = SchedulerClient::start(config(&[master.url()], ct)).unwrap();
    let req = master.next().await;
    assert_subscribe(&req, ct);
    let mut stream = open(req, ct, STREAM_1);
    // 50 ms heartbeats: the watchdog fires after 5 silent intervals (250 ms).
    stream.event(ct, &subscribed(FW, 0.05));
    expect_connected(&mut events).await;

    let reason = expect_disconnected(&mut events).await;
    let Error::HeartbeatTimeout { silence, .. } = reason else {
        panic!("{reason:?}")
    };
    assert_eq!(silence, Duration::from_millis(250));
    stream.client_closed().await;
    let req = master.next().await;
    assert_eq!(assert_subscribe(&req, ct).framework_id.unwrap().value, FW);
}

#[tokio::test]
async fn heartbeats_keep_the_stream_alive() {
    let mut master = FakeServer::start().await;
    let ct = ContentType::Json;
    let (_client, mut events) = SchedulerClient::start(config(&[master.url()], ct)).unwrap();
    let req = master.next().await;
    let stream = open(req, ct, STREAM_1);
    stream.event(ct, &subscribed(FW, 0.05));
    expect_connected(&mut events).await;
    // Ten heartbeats 40 ms apart span 400 ms, longer than the 250 ms watchdog.
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(40)).await;
        stream.event(ct, &heartbeat());
        assert_eq!(expect_event(&mut events).await, heartbeat());
    }
    assert!(
        master.try_next().is_none(),
        "no reconnection while heartbeats flow"
    );
    drop(stream);
}

#[tokio::test]
async fn an_error_event_ends_the_session_without_reconnecting() {
    let mut master = FakeServer::start().await;
    let ct = ContentType::Json;
    let (client, mut events) = SchedulerClient::start(config(&[master.url()], ct)).unwrap();
    let (stream, _) = subscribe(&mut master, &mut events, ct, STREAM_1).await;
    stream.event(ct, &error_event("Framework failed over"));
    stream.end();
    let err = within("the session to end", events.next_event())
        .await
        .unwrap_err();
    assert!(matches!(&err, Error::Rejected { message } if message == "Framework failed over"));
    assert!(matches!(events.next_event().await, Err(Error::Closed)));
    assert!(!client.is_connected());
    assert!(master.try_next().is_none());
}

#[tokio::test]
async fn an_error_as_first_event_is_fatal() {
    let mut master = FakeServer::start().await;
    let ct = ContentType::Json;
    let mut info = framework_info();
    info.id = Some(FrameworkId { value: FW.into() });
    let mut cfg = config(&[master.url()], ct);
    cfg.framework_info = info;
    let (_client, mut events) = SchedulerClient::start(cfg).unwrap();
    let req = master.next().await;
    let call = assert_subscribe(&req, ct);
    assert_eq!(
        call.framework_id.unwrap().value,
        FW,
        "a configured id is used from the start"
    );
    let stream = open(req, ct, STREAM_1);
    stream.event(ct, &error_event("Framework has been removed"));
    stream.end();
    let err = within("the session to end", events.next_event())
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("Framework has been removed"),
        "{err}"
    );
}

#[tokio::test]
async fn subscribe_refusals_are_fatal_with_the_message() {
    let mut master = FakeServer::start().await;
    let ct = ContentType::Json;
    let (_client, mut events) = SchedulerClient::start(config(&[master.url()], ct)).unwrap();
    master.next().await.respond_text(
        400,
        "Failed to validate scheduler::Call: 'framework_info.user' is empty",
    );
    let err = within("the session to end", events.next_event())
        .await
        .unwrap_err();
    assert!(
        matches!(err.api(), Some(ApiError::BadRequest(m)) if m.contains("framework_info.user")),
        "{err:?}"
    );
}

#[tokio::test]
async fn basic_auth_is_sent_on_subscribe_and_calls() {
    let mut master = FakeServer::start().await;
    let ct = ContentType::Json;
    let mut cfg = config(&[master.url()], ct);
    cfg.credentials = Some(Credentials::new("alice", "s3cret"));
    let (client, mut events) = SchedulerClient::start(cfg).unwrap();
    let req = master.next().await;
    assert_eq!(req.header("authorization"), Some("Basic YWxpY2U6czNjcmV0"));
    let stream = open(req, ct, STREAM_1);
    stream.event(ct, &subscribed(FW, 15.0));
    expect_connected(&mut events).await;
    let call = client.message(
        AgentId { value: "S0".into() },
        mesokit_proto::v1::ExecutorId { value: "e".into() },
        &b"hi"[..],
    );
    let fake = async {
        let req = master.next().await;
        assert_eq!(req.header("authorization"), Some("Basic YWxpY2U6czNjcmV0"));
        assert_eq!(req.decode::<Call>().message.unwrap().data, &b"hi"[..]);
        req.respond(202, &[], b"");
    };
    let (r, ()) = tokio::join!(call, fake);
    r.unwrap();
    drop(stream);
}

#[tokio::test]
async fn teardown_closes_the_session() {
    let mut master = FakeServer::start().await;
    let ct = ContentType::Json;
    let (client, mut events) = SchedulerClient::start(config(&[master.url()], ct)).unwrap();
    let (stream, _) = subscribe(&mut master, &mut events, ct, STREAM_1).await;
    let teardown = client.teardown();
    let fake = async {
        let req = master.next().await;
        assert_eq!(
            req.decode::<Call>().r#type,
            Some(call::Type::Teardown as i32)
        );
        req.respond(202, &[], b"");
    };
    let (r, ()) = tokio::join!(teardown, fake);
    r.unwrap();
    stream.end();
    assert!(matches!(
        within("the end", events.next_event()).await,
        Err(Error::Closed)
    ));
    assert!(master.try_next().is_none());
}

#[tokio::test]
async fn update_framework_is_used_for_later_resubscriptions() {
    let mut master = FakeServer::start().await;
    let ct = ContentType::Protobuf;
    let (client, mut events) = SchedulerClient::start(config(&[master.url()], ct)).unwrap();
    let (stream, _) = subscribe(&mut master, &mut events, ct, STREAM_1).await;
    let mut info = framework_info();
    info.roles.push("prod".into());
    let update = client.update_framework(info, vec!["prod".into()]);
    let fake = async {
        let req = master.next().await;
        let call: Call = req.decode();
        let u = call.update_framework.unwrap();
        assert_eq!(u.framework_info.id.unwrap().value, FW);
        assert_eq!(u.suppressed_roles, vec!["prod".to_string()]);
        req.respond(200, &[], b"");
    };
    let (r, ()) = tokio::join!(update, fake);
    r.unwrap();
    stream.end();
    assert!(matches!(
        expect_disconnected(&mut events).await,
        Error::StreamEnded { .. }
    ));
    let call: Call = master.next().await.decode();
    let sub = call.subscribe.unwrap();
    assert_eq!(
        sub.framework_info.roles,
        vec!["dev".to_string(), "prod".to_string()]
    );
    assert_eq!(sub.suppressed_roles, vec!["prod".to_string()]);
}

#[tokio::test]
async fn bad_configuration_is_refused_up_front() {
    let err = SchedulerClient::start(SchedulerConfig::new(Vec::<String>::new(), framework_info()))
        .unwrap_err();
    assert!(matches!(err, Error::Config(_)));
    let err = SchedulerClient::start(SchedulerConfig::new(["ftp://m:5050"], framework_info()))
        .unwrap_err();
    assert!(err.to_string().contains("ftp://m:5050"), "{err}");
    let mut cfg = SchedulerConfig::new(["https://m:5050"], framework_info());
    cfg.tls.extra_ca_pem = Some(b"not a pem".to_vec());
    assert!(SchedulerClient::start(cfg).is_err());
}

#[test]
fn start_outside_a_runtime_is_an_error_not_a_panic() {
    let err = SchedulerClient::start(SchedulerConfig::new(
        ["http://127.0.0.1:1"],
        framework_info(),
    ))
    .unwrap_err();
    assert!(err.to_string().contains("Tokio runtime"));
}
