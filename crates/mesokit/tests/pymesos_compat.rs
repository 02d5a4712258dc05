//! Compatibility with a real third-party client: pymesos (from PyPI) runs a scheduler that
//! launches command tasks and tasks under a pymesos custom executor against `mesokit local`,
//! unchanged, and every task must reach TASK_FINISHED.
//!
//! Needs the venv that `scripts/test.sh` builds (`MESOKIT_PYTHON`, or `.venv/bin/python`).

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use mesokit_local::cluster::{ClusterConfig, LocalCluster};
use tokio::io::AsyncReadExt;

fn python() -> PathBuf {
    let p = std::env::var_os("MESOKIT_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/python")
        });
    assert!(
        p.exists(),
        "pymesos venv not found at {} — run scripts/test.sh (it installs it) or set MESOKIT_PYTHON",
        p.display()
    );
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pymesos_scheduler_and_executor_run_unchanged() {
    let python = python();
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/pymesos");
    let mut config = ClusterConfig::for_tests(vec![
        env!("CARGO_BIN_EXE_mesokit").into(),
        "executor".into(),
    ]);
    config.agents = 2;
    let cluster = LocalCluster::start(config).await.expect("cluster starts");
    let master = cluster.master_addr().to_string();
    let executor_cmd = format!(
        "{} {}",
        python.display(),
        here.join("executor.py").display()
    );

    let mut child = tokio::process::Command::new(&python)
        .arg(here.join("scheduler.py"))
        .args([&master, "5", "3", &executor_cmd])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("python starts");
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let (mut out, mut err) = (String::new(), String::new());
    let status = tokio::time::timeout(Duration::from_secs(120), async {
        let (a, b) = tokio::join!(
            stdout.read_to_string(&mut out),
            stderr.read_to_string(&mut err)
        );
        a.and(b).expect("read the scheduler's output");
        child.wait().await.expect("scheduler exits")
    })
    .await
    .unwrap_or_else(|_| {
        panic!("pymesos scheduler did not finish in 120 s\nstdout:\n{out}\nstderr:\n{err}")
    });
    cluster.shutdown().await;
    assert!(
        status.success(),
        "pymesos scheduler failed ({status})\nstdout:\n{out}\nstderr:\n{err}"
    );

    // Every task went through RUNNING to FINISHED, and command tasks also through STARTING.
    let updates: Vec<(String, String)> = out
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| {
            let task = l
                .split(r#""task_id": {"value": ""#)
                .nth(1)
                .and_then(|s| s.split('"').next());
            let state = l
                .split(r#""state": ""#)
                .nth(1)
                .and_then(|s| s.split('"').next());
            (
                task.unwrap_or_default().to_owned(),
                state.unwrap_or_default().to_owned(),
            )
        })
        .collect();
    for task in (0..5)
        .map(|i| format!("cmd-{i}"))
        .chain((0..3).map(|i| format!("exec-{i}")))
    {
        let states: Vec<&str> = updates
            .iter()
            .filter(|(t, _)| *t == task)
            .map(|(_, s)| s.as_str())
            .collect();
        assert_eq!(
            states.last(),
            Some(&"TASK_FINISHED"),
            "{task}: {states:?}\n{out}"
        );
        assert!(states.contains(&"TASK_RUNNING"), "{task}: {states:?}");
        if task.starts_with("cmd") {
            assert_eq!(states.first(), Some(&"TASK_STARTING"), "{task}: {states:?}");
        }
    }
}
