//! `mesokit run` against a separate `mesokit local` that dies in the middle of a 1000-task batch
//! job: the scheduler keeps its state in a file store, re-subscribes to the restarted cluster
//! with its framework id, reconciles, relaunches what was lost, and the job completes with
//! every instance finished exactly once.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

mod support;
use support::{Proc, free_port, json_field as field};

fn local_cluster(port: u16, work: &std::path::Path) -> Proc {
    support::local_cluster(
        port,
        &["--agents", "4", "--work-dir", &work.to_string_lossy()],
    )
}

#[test]
fn the_job_survives_its_cluster_dying_midway() {
    let dir = std::env::temp_dir().join(format!("mesokit-faults-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let spec = dir.join("job.yaml");
    std::fs::write(
        &spec,
        "name: thousand\ngroups:\n  - name: t\n    instances: 1000\n    resources: {cpus: 0.05, mem: 8}\n    command: sleep 0.2\n    restart: {on: [lost, failed, killed], backoff: {initial: 100ms}, max_restarts: 5}\n",
    )
    .unwrap();
    let port = free_port();
    let mut cluster = local_cluster(port, &dir.join("work1"));
    let mut run = Proc(
        Command::new(env!("CARGO_BIN_EXE_mesokit"))
            .arg("run")
            .arg(&spec)
            .args(["--master", &format!("http://127.0.0.1:{port}")])
            .arg("--store")
            .arg(dir.join("state.redb"))
            .arg("--json")
            .env("RUST_LOG", "error")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let (tx, rx) = mpsc::channel::<String>();
    let stdout = run.0.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });

    let mut lines = Vec::new();
    let mut finished = 0;
    let deadline = Instant::now() + Duration::from_secs(240);
    // Let a good part of the job finish, then kill the whole cluster (master, agents and, with
    // them, the running tasks) and start a new one on the same port.
    while finished < 300 {
        let line = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("job makes progress");
        if field(&line, "event") == Some("finished") {
            finished += 1;
        }
        lines.push(line);
    }
    cluster.0.kill().unwrap();
    cluster.0.wait().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    cluster = local_cluster(port, &dir.join("work2"));

    let status = loop {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(line) => lines.push(line),
            Err(mpsc::RecvTimeoutError::Disconnected) => break run.0.wait().unwrap(),
            Err(mpsc::RecvTimeoutError::Timeout) => {
                assert!(Instant::now() < deadline, "the job did not complete");
            }
        }
    };
    drop(cluster);
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        status.success(),
        "exit {status:?}; last events: {:#?}",
        &lines[lines.len().saturating_sub(20)..]
    );

    // Per instance: the events of each attempt, in order.
    let mut per_instance: BTreeMap<u32, Vec<(String, String)>> = BTreeMap::new();
    let mut connected = 0;
    for line in &lines {
        let event = field(line, "event").unwrap_or("").to_string();
        if event == "connected" {
            connected += 1;
        }
        if let (Some(i), Some(task)) = (field(line, "index"), field(line, "task_id")) {
            per_instance
                .entry(i.parse().unwrap())
                .or_default()
                .push((event, task.to_string()));
        }
    }
    assert!(connected >= 2, "re-subscribed after the cluster came back");
    assert_eq!(per_instance.len(), 1000);
    let mut relaunched = 0;
    for (index, events) in &per_instance {
        let finished: Vec<&(String, String)> =
            events.iter().filter(|(e, _)| e == "finished").collect();
        assert_eq!(
            finished.len(),
            1,
            "instance {index} finished once: {events:?}"
        );
        // Nothing of this instance runs after it finished.
        assert_eq!(
            events.last().map(|(e, _)| e.as_str()),
            Some("finished"),
            "instance {index}: {events:?}"
        );
        let launches = events.iter().filter(|(e, _)| e == "launched").count();
        let ends = events
            .iter()
            .filter(|(e, _)| matches!(e.as_str(), "finished" | "failed" | "lost" | "killed"))
            .count();
        assert_eq!(
            launches, ends,
            "every attempt of instance {index} ended: {events:?}"
        );
        if launches > 1 {
            relaunched += 1;
        }
    }
    assert!(
        relaunched > 0,
        "the crash cost some tasks, which were relaunched"
    );
}

#[test]
fn a_restarted_scheduler_recovers_and_relaunches_nothing() {
    let dir = std::env::temp_dir().join(format!("mesokit-restart-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let spec = dir.join("svc.yaml");
    std::fs::write(
        &spec,
        "name: keeper\nkind: service\ngroups:\n  - name: k\n    instances: 3\n    resources: {cpus: 0.1, mem: 8}\n    command: sleep 600\n",
    )
    .unwrap();
    let port = free_port();
    let _cluster = local_cluster(port, &dir.join("work"));
    let start = || {
        let mut p = Proc(
            Command::new(env!("CARGO_BIN_EXE_mesokit"))
                .arg("run")
                .arg(&spec)
                .args(["--master", &format!("http://127.0.0.1:{port}")])
                .arg("--store")
                .arg(dir.join("state.redb"))
                .arg("--json")
                .env("RUST_LOG", "error")
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        let (tx, rx) = mpsc::channel::<String>();
        let stdout = p.0.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        (p, rx)
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let (mut first, rx) = start();
    let mut running = 0;
    let mut framework_id = String::new();
    while running < 3 {
        let line = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("tasks run");
        match field(&line, "event") {
            Some("running") => running += 1,
            Some("connected") => framework_id = field(&line, "framework_id").unwrap().into(),
            _ => {}
        }
    }
    // Killed without a chance to clean up; the tasks keep running on the cluster.
    first.0.kill().unwrap();
    first.0.wait().unwrap();

    let (_second, rx) = start();
    let mut lines = Vec::new();
    let connected = loop {
        let line = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("subscribes again");
        lines.push(line.clone());
        if field(&line, "event") == Some("connected") {
            break line;
        }
    };
    assert_eq!(
        field(&connected, "framework_id"),
        Some(framework_id.as_str())
    );
    // Reconciliation answers within a moment; nothing may be launched or lost meanwhile.
    let settle = Instant::now() + Duration::from_secs(3);
    while let Ok(line) = rx.recv_timeout(settle.saturating_duration_since(Instant::now())) {
        lines.push(line);
    }
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        !lines
            .iter()
            .any(|l| matches!(field(l, "event"), Some("launched" | "lost" | "failed"))),
        "{lines:#?}"
    );
}
