//! The master's operator API and v0 endpoints answer from its bookkeeping: GET_STATE and
//! GET_AGENTS, `/master/slaves`, and `/master/teardown` removing a framework.

use std::time::Duration;

use mesokit_local::cluster::{ClusterConfig, LocalCluster};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn send(addr: std::net::SocketAddr, req: String) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf))
        .await
        .expect("response within 10 s")
        .unwrap();
    String::from_utf8_lossy(&buf).into_owned()
}

fn post(path: &str, content_type: &str, body: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

#[tokio::test]
async fn operator_reads_and_teardown_use_the_masters_bookkeeping() {
    let cluster = LocalCluster::start(ClusterConfig::for_tests(vec!["/bin/false".into()]))
        .await
        .unwrap();
    let m = cluster.master_addr();
    let agent_id = cluster.agents()[0].id().value.clone();

    let agents = send(
        m,
        post("/api/v1", "application/json", r#"{"type":"GET_AGENTS"}"#),
    )
    .await;
    assert!(agents.starts_with("HTTP/1.1 200"), "{agents}");
    assert!(
        agents.contains(r#""type":"GET_AGENTS""#) && agents.contains(&agent_id),
        "{agents}"
    );
    let slaves = send(
        m,
        "GET /master/slaves HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".into(),
    )
    .await;
    assert!(slaves.contains(&agent_id), "{slaves}");

    // A framework subscribes; GET_STATE shows it; the teardown form removes it.
    let mut sub = TcpStream::connect(m).await.unwrap();
    let body = r#"{"type":"SUBSCRIBE","subscribe":{"framework_info":{"user":"u","name":"endpoints","failover_timeout":60}}}"#;
    sub.write_all(post("/api/v1/scheduler", "application/json", body).as_bytes())
        .await
        .unwrap();
    let mut head = Vec::new();
    let mut chunk = [0u8; 4096];
    while !String::from_utf8_lossy(&head).contains("HEARTBEAT") {
        let n = tokio::time::timeout(Duration::from_secs(10), sub.read(&mut chunk))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0);
        head.extend_from_slice(&chunk[..n]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let at = head.find(r#""framework_id":{"value":""#).unwrap() + 25;
    let fid = head[at..].split('"').next().unwrap().to_owned();

    let state = send(
        m,
        post("/api/v1", "application/json", r#"{"type":"GET_STATE"}"#),
    )
    .await;
    assert!(
        state.contains(r#""type":"GET_STATE""#) && state.contains(&fid),
        "{state}"
    );

    let gone = send(
        m,
        post(
            "/master/teardown",
            "application/x-www-form-urlencoded",
            "frameworkId=nope",
        ),
    )
    .await;
    assert!(gone.starts_with("HTTP/1.1 400"), "{gone}");
    let done = send(
        m,
        post(
            "/master/teardown",
            "application/x-www-form-urlencoded",
            &format!("frameworkId={fid}"),
        ),
    )
    .await;
    assert!(done.starts_with("HTTP/1.1 200"), "{done}");
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), sub.read_to_end(&mut rest))
        .await
        .expect("the framework's stream ends after the teardown")
        .unwrap();
    let frameworks = send(
        m,
        "GET /master/frameworks HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".into(),
    )
    .await;
    let completed = frameworks
        .split(r#""completed_frameworks""#)
        .nth(1)
        .unwrap_or("");
    assert!(completed.contains(&fid), "{frameworks}");
}
