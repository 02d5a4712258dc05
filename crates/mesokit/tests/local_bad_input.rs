//! Bad input against `mesokit local`: garbage at every endpoint gets Mesos's status code and a
//! message, and afterwards a normal framework still runs its tasks to completion.

use std::time::Duration;

use mesokit_client::ContentType;
use mesokit_client::scheduler::{SchedulerClient, SchedulerConfig, SchedulerEvent};
use mesokit_local::cluster::{ClusterConfig, LocalCluster};
use mesokit_proto::helpers::{TaskBuilder, is_terminal_value};
use mesokit_proto::v1::{self, FrameworkInfo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Sends raw bytes, returns (status code, headers+body text). Status 0 if the server closed
/// the connection without answering.
async fn raw(addr: std::net::SocketAddr, request: &[u8]) -> (u16, String) {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(request).await.expect("write");
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let code = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (code, text)
}

fn post(path: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut r = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        r.push_str(&format!("{k}: {v}\r\n"));
    }
    r.push_str("\r\n");
    let mut r = r.into_bytes();
    r.extend_from_slice(body);
    r
}

const JSON: (&str, &str) = ("Content-Type", "application/json");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_everywhere_then_a_normal_framework_runs() {
    let cluster = LocalCluster::start(ClusterConfig::for_tests(vec![
        env!("CARGO_BIN_EXE_mesokit").into(),
        "executor".into(),
    ]))
    .await
    .expect("cluster starts");
    let m = cluster.master_addr();
    let a = cluster.agents()[0].endpoint();

    // --- master, scheduler API
    let cases: Vec<(Vec<u8>, u16, &str)> = vec![
        (b"GET /api/v1/scheduler HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".to_vec(), 405, "POST"),
        (post("/api/v1/scheduler", &[], b"{}"), 400, "Content-Type"),
        (post("/api/v1/scheduler", &[("Content-Type", "text/plain")], b"{}"), 415, "application/json"),
        (post("/api/v1/scheduler", &[("Content-Type", "application/json; charset=utf-8")], b"{}"), 415, ""),
        (post("/api/v1/scheduler", &[JSON], b"{not json"), 400, "JSON"),
        (post("/api/v1/scheduler", &[("Content-Type", "application/x-protobuf")], b"\xff\xff\xff"), 400, "protobuf"),
        (post("/api/v1/scheduler", &[JSON], br#"{"type":"UNKNOWN"}"#), 400, "framework_id"),
        (
            post("/api/v1/scheduler", &[JSON, ("Accept", "text/html")],
                br#"{"type":"SUBSCRIBE","subscribe":{"framework_info":{"user":"u","name":"n"}}}"#),
            406, "Accept",
        ),
        (
            post("/api/v1/scheduler", &[JSON, ("Mesos-Stream-Id", "x")],
                br#"{"type":"SUBSCRIBE","subscribe":{"framework_info":{"user":"u","name":"n"}}}"#),
            400, "Mesos-Stream-Id",
        ),
        (
            post("/api/v1/scheduler", &[JSON, ("Mesos-Stream-Id", "x")],
                br#"{"type":"DECLINE","framework_id":{"value":"nope"},"decline":{"offer_ids":[]}}"#),
            400, "Framework",
        ),
        (
            post("/api/v1/scheduler", &[JSON],
                br#"{"type":"ACKNOWLEDGE","framework_id":{"value":"nope"},"acknowledge":{"agent_id":{"value":"a"},"task_id":{"value":"t"},"uuid":"AAAA"}}"#),
            400, "",
        ),
        (post("/api/v1", &[JSON], b"[]"), 400, ""),
        (post("/master/api/v1", &[JSON], br#"{"type":"GET_HEALTH"}"#), 200, "healthy"),
        (b"GET /no/such/thing HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".to_vec(), 404, ""),
    ];
    for (req, want, text) in &cases {
        let (code, resp) = raw(m, req).await;
        assert_eq!(code, *want, "{}\n{resp}", String::from_utf8_lossy(req));
        assert!(resp.contains(text), "expected {text:?} in\n{resp}");
    }
    // Not HTTP at all, and a request cut in the middle: the connection is dropped, no crash.
    let _ = raw(m, b"\x00\x01\x02garbage\r\n\r\n").await;
    let _ = raw(
        m,
        b"POST /api/v1/scheduler HTTP/1.1\r\nContent-Length: 100\r\n\r\n{\"ty",
    )
    .await;

    // --- agent, executor API and files
    let agent_cases: Vec<(Vec<u8>, u16)> = vec![
        (b"GET /api/v1/executor HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".to_vec(), 405),
        (post("/api/v1/executor", &[], b"{}"), 400),
        (post("/slave(1)/api/v1/executor", &[("Content-Type", "text/xml")], b"{}"), 415),
        (post("/api/v1/executor", &[JSON], b"]]"), 400),
        (
            post("/api/v1/executor", &[JSON],
                br#"{"type":"UPDATE","executor_id":{"value":"e"},"framework_id":{"value":"f"},"update":{"status":{"task_id":{"value":"t"},"state":"TASK_RUNNING","source":"SOURCE_EXECUTOR","uuid":"AAAA"}}}"#),
            400,
        ),
        (
            post("/api/v1/executor", &[JSON],
                br#"{"type":"MESSAGE","executor_id":{"value":"e"},"framework_id":{"value":"f"},"message":{"data":"aGk="}}"#),
            400,
        ),
        (b"GET /files/read?path=/etc/passwd&offset=0 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".to_vec(), 0),
    ];
    for (req, want) in &agent_cases {
        let (code, resp) = raw(a, req).await;
        if *want == 0 {
            assert!((400..500).contains(&code), "{code}\n{resp}");
            assert!(
                !resp.contains("root:"),
                "a path outside the sandboxes was served:\n{resp}"
            );
        } else {
            assert_eq!(code, *want, "{}\n{resp}", String::from_utf8_lossy(req));
        }
    }
    let _ = raw(a, b"\xde\xad\xbe\xef").await;

    // --- and now a normal framework, speaking protobuf: three command tasks, all finish.
    let info = FrameworkInfo {
        user: "root".into(),
        name: "after-garbage".into(),
        ..Default::default()
    };
    let mut config = SchedulerConfig::new([cluster.master_url()], info);
    config.content_type = ContentType::Protobuf;
    let (client, mut events) = SchedulerClient::start(config).expect("client");
    let mut launched = false;
    let mut finished = 0;
    let outcome = tokio::time::timeout(Duration::from_secs(60), async {
        while finished < 3 {
            if let SchedulerEvent::Event(ev) = events.next_event().await.expect("session") {
                {
                    if let (Some(offers), false) = (&ev.offers, launched) {
                        let o = &offers.offers[0];
                        let tasks = (0..3)
                            .map(|i| {
                                let id = format!("ok-{i}");
                                TaskBuilder::new(&id, &id, &o.agent_id.value)
                                    .cpus(0.1)
                                    .mem(16.0)
                                    .shell("echo fine")
                                    .build()
                            })
                            .collect();
                        client
                            .launch(vec![o.id.clone()], tasks, None)
                            .await
                            .expect("launch");
                        launched = true;
                    }
                    if let Some(u) = &ev.update {
                        client.acknowledge(&u.status).await.expect("ack");
                        if is_terminal_value(u.status.state) {
                            assert_eq!(
                                u.status.state,
                                v1::TaskState::TaskFinished as i32,
                                "{:?}",
                                u.status
                            );
                            finished += 1;
                        }
                    }
                }
            }
        }
    })
    .await;
    let _ = client.teardown().await;
    cluster.shutdown().await;
    outcome.expect("the framework's tasks finished within 60 s");
}
