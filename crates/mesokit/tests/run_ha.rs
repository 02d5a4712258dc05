//! High availability: two `mesokit run` with the same ZooKeeper store against one cluster.
//! One leads and launches the service; the other waits. When the leader is killed (no clean
//! exit), the standby takes over within the ZooKeeper session timeout, re-subscribes with the
//! stored framework id, reconciles, and launches nothing: no task is lost or doubled.

// The ZooKeeper server helper of the framework tests (it allows its own unused items).
mod support;
#[path = "../../mesokit-framework/tests/support/zk.rs"]
mod zk;
use support::{Proc, free_port, json_field as field};

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A `mesokit run` whose JSON events (stdout) and log (stderr) arrive on one channel, tagged.
fn scheduler(
    spec: &std::path::Path,
    master: &str,
    store: &str,
    tag: &'static str,
    tx: mpsc::Sender<(&'static str, String)>,
) -> Proc {
    let mut child = Command::new(env!("CARGO_BIN_EXE_mesokit"))
        .arg("run")
        .arg(spec)
        .args(["--master", master, "--store", store, "--json"])
        .env("RUST_LOG", "error")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    let err = child.stderr.take().unwrap();
    let tx2 = tx.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            let _ = tx.send((tag, line));
        }
    });
    std::thread::spawn(move || {
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            let _ = tx2.send((tag, format!("log: {line}")));
        }
    });
    Proc(child)
}

#[test]
fn a_standby_takes_over_without_losing_or_doubling_tasks() {
    let server = zk::ZkServer::start();
    let port = free_port();
    let _cluster = support::local_cluster(port, &[]);
    let master = format!("http://127.0.0.1:{port}");
    let dir = std::env::temp_dir().join(format!("mesokit-run-ha-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let spec = dir.join("svc.yaml");
    std::fs::write(
        &spec,
        "name: ha-svc\nkind: service\ngroups:\n  - name: s\n    instances: 3\n    resources: {cpus: 0.1, mem: 16}\n    command: sleep 600\n",
    )
    .unwrap();
    let store = server.url("/mesokit/ha-svc");
    let (tx, rx) = mpsc::channel();
    let mut first = scheduler(&spec, &master, &store, "first", tx.clone());

    let mut events: Vec<(&str, String)> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    let next = |events: &mut Vec<(&'static str, String)>| {
        let e = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .unwrap_or_else(|_| panic!("timed out; events so far: {events:#?}"));
        events.push(e.clone());
        e
    };
    // The first one leads and runs three tasks.
    let mut running = 0;
    while running < 3 {
        let (tag, line) = next(&mut events);
        if tag == "first" && field(&line, "event") == Some("running") {
            running += 1;
        }
    }
    // The second one waits as a standby.
    let _second = scheduler(&spec, &master, &store, "second", tx.clone());
    loop {
        let (tag, line) = next(&mut events);
        if tag == "second" && line.contains("standby") {
            break;
        }
        assert!(
            !(tag == "second" && line.contains("\"connected\"")),
            "a standby must not subscribe"
        );
    }
    let framework_id = events
        .iter()
        .find(|(t, l)| *t == "first" && l.contains("\"connected\""))
        .and_then(|(_, l)| field(l, "framework_id"))
        .unwrap()
        .to_string();

    // Kill the leader outright: its ZooKeeper session expires, the standby leads.
    let killed_at = Instant::now();
    first.0.kill().unwrap();
    first.0.wait().unwrap();
    let connected = loop {
        let (tag, line) = next(&mut events);
        if tag == "second" && field(&line, "event") == Some("connected") {
            break line;
        }
    };
    let takeover = killed_at.elapsed();
    assert_eq!(
        field(&connected, "framework_id"),
        Some(framework_id.as_str())
    );
    assert!(takeover < Duration::from_secs(30), "took {takeover:?}");

    // Give reconciliation time to answer, then check nothing was launched again.
    let settle = Instant::now() + Duration::from_secs(3);
    while let Ok(e) = rx.recv_timeout(settle.saturating_duration_since(Instant::now())) {
        events.push(e);
    }
    let launched_by_second: Vec<&String> = events
        .iter()
        .filter(|(t, l)| *t == "second" && field(l, "event") == Some("launched"))
        .map(|(_, l)| l)
        .collect();
    assert!(
        launched_by_second.is_empty(),
        "relaunched running tasks: {launched_by_second:?}"
    );
    let lost: Vec<&String> = events
        .iter()
        .filter(|(t, l)| {
            *t == "second" && matches!(field(l, "event"), Some("lost" | "failed" | "killed"))
        })
        .map(|(_, l)| l)
        .collect();
    assert!(lost.is_empty(), "tasks lost across the takeover: {lost:?}");
    let _ = std::fs::remove_dir_all(&dir);
}
