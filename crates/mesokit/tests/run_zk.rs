//! `mesokit run --master zk://…/mesos` against real ZooKeeper: masters are found the way Mesos
//! publishes them (`json.info_<seq>` nodes holding MasterInfo JSON; the lowest sequence
//! leads), and when another master takes over, the scheduler follows it, re-subscribes with its
//! framework id and gets its service running there.

// The ZooKeeper server helper of the framework tests (it allows its own unused items).
mod support;
#[path = "../../mesokit-framework/tests/support/zk.rs"]
mod zk;
use support::{Proc, free_port, json_field as field};

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use mesokit_framework::zk::{CreateMode, ZkClient};

fn local_cluster(port: u16) -> Proc {
    support::local_cluster(port, &[])
}

/// MasterInfo JSON as a Mesos master writes it into ZooKeeper.
fn master_info(id: &str, port: u16) -> Vec<u8> {
    // `ip` is the IPv4 address in network order read as a little-endian integer.
    format!(
        r#"{{"id":"{id}","ip":16777343,"port":{port},"hostname":"127.0.0.1","address":{{"hostname":"127.0.0.1","ip":"127.0.0.1","port":{port}}},"version":"1.12.0"}}"#
    )
    .into_bytes()
}

/// Reads events until `n` distinct tasks of attempt `attempt` run; returns the lines read.
fn wait_running(rx: &mpsc::Receiver<String>, attempt: &str, n: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut lines = Vec::new();
    let mut running = std::collections::BTreeSet::new();
    while running.len() < n {
        let line = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .unwrap_or_else(|_| panic!("tasks of attempt {attempt} did not run: {lines:#?}"));
        if field(&line, "event") == Some("running")
            && let Some(t) = field(&line, "task_id")
            && t.ends_with(attempt)
        {
            running.insert(t.to_string());
        }
        lines.push(line);
    }
    lines
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follows_the_leading_master_found_in_zookeeper() {
    let server = zk::ZkServer::start();
    let zk = ZkClient::connect(&server.url("/")).await.unwrap();
    zk.create_all("/mesos").await.unwrap();
    let (port_a, port_b) = (free_port(), free_port());
    let _a = local_cluster(port_a);
    let _b = local_cluster(port_b);
    let node_a = zk
        .create(
            "/mesos/json.info_",
            &master_info("a", port_a),
            CreateMode::EphemeralSequential,
        )
        .await
        .unwrap();

    let dir = std::env::temp_dir().join(format!("mesokit-run-zk-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let spec = dir.join("svc.yaml");
    std::fs::write(
        &spec,
        "name: follower\nkind: service\ngroups:\n  - name: s\n    instances: 2\n    resources: {cpus: 0.1, mem: 16}\n    command: sleep 600\n    restart: {backoff: {initial: 100ms}}\n",
    )
    .unwrap();
    let mut run = Proc(
        Command::new(env!("CARGO_BIN_EXE_mesokit"))
            .arg("run")
            .arg(&spec)
            .args([
                "--master",
                &server.url("/mesos"),
                "--store",
                "none",
                "--json",
            ])
            .env("RUST_LOG", "error")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let (tx, rx) = mpsc::channel();
    let stdout = run.0.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let first = wait_running(&rx, ".1", 2);
    let connected: Vec<&String> = first
        .iter()
        .filter(|l| l.contains("\"connected\""))
        .collect();
    assert!(
        connected[0].contains(&format!(":{port_a}/")),
        "{connected:?}"
    );
    let framework_id = field(connected[0], "framework_id").unwrap().to_string();

    // Master B takes over (A's node goes away, B's is the lowest now).
    zk.create(
        "/mesos/json.info_",
        &master_info("b", port_b),
        CreateMode::EphemeralSequential,
    )
    .await
    .unwrap();
    zk.delete(&node_a, -1).await.unwrap();
    let second = wait_running(&rx, ".2", 2);
    let reconnected = second
        .iter()
        .find(|l| l.contains("\"connected\""))
        .expect("subscribed again");
    assert!(
        reconnected.contains(&format!(":{port_b}/")),
        "{reconnected}"
    );
    assert_eq!(
        field(reconnected, "framework_id"),
        Some(framework_id.as_str()),
        "failover keeps the framework id"
    );

    // Ctrl-C: the service stops cleanly and exits 0.
    let pid = run.0.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .unwrap()
            .success()
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = run.0.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "no clean stop");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status:?}");
    let _ = std::fs::remove_dir_all(&dir);
}
