//! The master's subscription streams end when the master closes them: TEARDOWN ends the
//! framework's stream, and a failover sends the old stream ERROR "Framework failed over" and
//! ends it.

use std::time::Duration;

use mesokit_local::cluster::{ClusterConfig, LocalCluster};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn request(addr: std::net::SocketAddr, headers: &str, body: &str) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "POST /api/v1/scheduler HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\n{headers}Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    s
}

/// Reads until `needle` shows up; returns everything read.
async fn read_until(s: &mut TcpStream, needle: &str) -> String {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while !String::from_utf8_lossy(&buf).contains(needle) {
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut chunk))
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "no {needle:?} within 10 s in {}",
                    String::from_utf8_lossy(&buf)
                )
            })
            .unwrap();
        assert!(
            n > 0,
            "stream ended before {needle:?}: {}",
            String::from_utf8_lossy(&buf)
        );
        buf.extend_from_slice(&chunk[..n]);
    }
    String::from_utf8_lossy(&buf).into_owned()
}

/// Reads to the end of the connection (the chunked stream must end).
async fn read_to_end(s: &mut TcpStream) -> String {
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf))
        .await
        .expect("the stream ends within 10 s")
        .unwrap();
    String::from_utf8_lossy(&buf).into_owned()
}

fn header<'a>(head: &'a str, name: &str) -> &'a str {
    head.lines()
        .find_map(|l| {
            l.strip_prefix(&format!("{name}: "))
                .or_else(|| l.strip_prefix(&format!("{}: ", name.to_lowercase())))
        })
        .map(str::trim)
        .unwrap_or_else(|| panic!("no {name} header in {head}"))
}

fn framework_id(text: &str) -> String {
    let at = text
        .find(r#""framework_id":{"value":""#)
        .expect("framework id")
        + 25;
    text[at..].split('"').next().unwrap().to_owned()
}

const SUBSCRIBE: &str = r#"{"type":"SUBSCRIBE","subscribe":{"framework_info":{"user":"u","name":"streams","failover_timeout":60}}}"#;

#[tokio::test]
async fn teardown_ends_the_stream() {
    let cluster = LocalCluster::start(ClusterConfig::for_tests(vec!["/bin/false".into()]))
        .await
        .unwrap();
    let m = cluster.master_addr();
    let mut sub = request(m, "", SUBSCRIBE).await;
    let head = read_until(&mut sub, "HEARTBEAT").await;
    let stream_id = header(&head, "Mesos-Stream-Id").to_owned();
    let fid = framework_id(&head);
    let body = format!(r#"{{"type":"TEARDOWN","framework_id":{{"value":"{fid}"}}}}"#);
    let mut call = request(m, &format!("Mesos-Stream-Id: {stream_id}\r\n"), &body).await;
    assert!(read_to_end(&mut call).await.starts_with("HTTP/1.1 202"));
    let rest = read_to_end(&mut sub).await;
    assert!(
        rest.ends_with("0\r\n\r\n"),
        "chunked stream not terminated: {rest:?}"
    );
}

#[tokio::test]
async fn failover_closes_the_old_stream_with_an_error() {
    let cluster = LocalCluster::start(ClusterConfig::for_tests(vec!["/bin/false".into()]))
        .await
        .unwrap();
    let m = cluster.master_addr();
    let mut first = request(m, "", SUBSCRIBE).await;
    let head = read_until(&mut first, "HEARTBEAT").await;
    let fid = framework_id(&head);
    let again = format!(
        r#"{{"type":"SUBSCRIBE","framework_id":{{"value":"{fid}"}},"subscribe":{{"framework_info":{{"user":"u","name":"streams","id":{{"value":"{fid}"}},"failover_timeout":60}}}}}}"#
    );
    let mut second = request(m, "", &again).await;
    let head2 = read_until(&mut second, "SUBSCRIBED").await;
    assert_ne!(
        header(&head2, "Mesos-Stream-Id"),
        header(&head, "Mesos-Stream-Id")
    );
    let rest = read_to_end(&mut first).await;
    assert!(
        rest.contains(r#"{"type":"ERROR","error":{"message":"Framework failed over"}}"#),
        "{rest}"
    );
    assert!(
        rest.ends_with("0\r\n\r\n"),
        "old stream not terminated: {rest:?}"
    );
}
