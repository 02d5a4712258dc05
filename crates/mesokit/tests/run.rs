//! `mesokit run` end to end on the embedded local cluster: the README's batch example, spec
//! errors, restart policy with JSON events, and a service driven through the admin API.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod support;
use support::{Proc, free_port};

fn mesokit() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_mesokit"));
    c.env("RUST_LOG", "error");
    c
}

fn example(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/jobs")
        .join(name)
}

fn temp_spec(name: &str, text: &str) -> (tempdir::Dir, PathBuf) {
    let dir = tempdir::Dir::new();
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    (dir, path)
}

/// A private temporary directory removed on drop.
mod tempdir {
    use std::path::{Path, PathBuf};

    pub(crate) struct Dir(PathBuf);

    impl Dir {
        pub(crate) fn new() -> Dir {
            let p = std::env::temp_dir().join(format!(
                "mesokit-run-test-{}-{}",
                std::process::id(),
                fastrand::u64(..)
            ));
            std::fs::create_dir_all(&p).unwrap();
            Dir(p)
        }

        pub(crate) fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// The row of `group` in the summary table printed at the end.
fn summary_row<'a>(log: &'a str, group: &str) -> &'a str {
    let table = &log[log.rfind("\ngroup ").expect("summary table")..];
    table
        .lines()
        .find(|l| l.split_whitespace().next() == Some(group))
        .expect("summary row")
}

#[test]
fn batch_example_runs_to_success() {
    let out = mesokit()
        .args(["run"])
        .arg(example("batch.yaml"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("job finished: every task succeeded"),
        "{stderr}"
    );
    let row = summary_row(&stderr, "compute");
    let cols: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cols[1..4], ["16", "16", "0"], "{row}");
}

#[test]
fn spec_errors_name_file_line_and_field() {
    let (_dir, path) = temp_spec(
        "job.yaml",
        "name: bad\ngroups:\n  - name: a\n    resources: {cpus: many, mem: 32}\n    command: true\n",
    );
    let out = mesokit().arg("run").arg(&path).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let expected = format!(
        "{}:4:23: groups[0].resources.cpus: expected a number, found \"many\"",
        path.display()
    );
    assert!(stderr.contains(&expected), "{stderr}");
}

#[test]
fn failing_tasks_restart_then_the_job_fails_with_json_events() {
    let (_dir, path) = temp_spec(
        "fail.yaml",
        "name: failing\ngroups:\n  - name: f\n    resources: {cpus: 0.1, mem: 16}\n    command: exit 3\n    restart: {backoff: {initial: 100ms}, max_restarts: 1}\n",
    );
    let out = mesokit()
        .arg("run")
        .arg(&path)
        .arg("--json")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let events: Vec<&str> = stdout
        .lines()
        .filter(|l| l.contains("\"task_id\""))
        .map(|l| {
            let start = l.find("\"event\":\"").unwrap() + 9;
            &l[start..start + l[start..].find('"').unwrap()]
        })
        .collect();
    assert_eq!(
        events,
        [
            "launched",
            "running",
            "failed",
            "restarting",
            "launched",
            "running",
            "failed",
            "gave_up"
        ],
        "{stdout}"
    );
    assert!(stdout.contains("Command exited with status 3"), "{stdout}");
    assert!(stdout.contains("\"task_id\":\"failing.f.0.2\""), "{stdout}");
}

fn http(port: u16, method: &str, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n")?.1.to_string();
    Some((status, body))
}

fn wait_for(port: u16, path: &str, what: &str, pred: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some((200, body)) = http(port, "GET", path)
            && pred(&body)
        {
            return body;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn service_scales_restarts_and_stops_through_the_admin_api() {
    let (_dir, path) = temp_spec(
        "svc.yaml",
        "name: svc\nkind: service\ngroups:\n  - name: web\n    instances: 2\n    resources: {cpus: 0.1, mem: 16, ports: 1}\n    command: sleep 600\n    restart: {backoff: {initial: 100ms}}\n",
    );
    let port = free_port();
    let mut child = Proc(
        mesokit()
            .arg("run")
            .arg(&path)
            .args(["--admin-port", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let stderr = child.0.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let log = std::thread::spawn(move || {
        let mut all = Vec::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line.clone());
            all.push(line);
        }
        all.join("\n")
    });
    let first = rx.recv_timeout(Duration::from_secs(30)).unwrap();
    let master = first
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("no master URL in {first:?}"))
        .to_string();
    wait_for(port, "/groups", "2 running", |b| {
        b.contains("\"running\":2")
    });
    assert_eq!(http(port, "GET", "/health").unwrap().0, 200);

    let (status, _) = http(port, "POST", "/groups/web/scale?instances=3").unwrap();
    assert_eq!(status, 202);
    wait_for(port, "/groups", "3 running", |b| {
        b.contains("\"running\":3")
    });
    let (status, body) = http(port, "POST", "/groups/nope/scale?instances=3").unwrap();
    assert_eq!((status, body.as_str()), (404, "no group named \"nope\""));
    let (status, body) = http(port, "POST", "/groups/web/scale?instances=lots").unwrap();
    assert_eq!(status, 400, "{body}");

    // An operator kill in a service: the instance comes back as a new attempt.
    let (status, _) = http(port, "POST", "/tasks/svc.web.1.1/kill").unwrap();
    assert_eq!(status, 202);
    wait_for(port, "/tasks", "web.1 relaunched", |b| {
        b.contains("\"task_id\":\"svc.web.1.2\",\"phase\":\"launched\",\"state\":\"TASK_RUNNING\"")
    });
    let metrics = wait_for(port, "/metrics", "metrics", |_| true);
    assert!(
        metrics.contains("mesokit_tasks_launched_total 4"),
        "{metrics}"
    );
    assert!(
        metrics.contains("mesokit_tasks{group=\"web\",state=\"running\"} 3"),
        "{metrics}"
    );

    // `mesokit status` sees the framework and its three tasks.
    let out = mesokit()
        .args(["status", "--master", &master])
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(table.starts_with("2 agent(s), 1 framework(s)"), "{table}");
    let svc = table
        .lines()
        .find(|l| l.starts_with("svc "))
        .expect("framework row");
    assert!(svc.ends_with("yes     3"), "{svc}");
    assert_eq!(
        table.lines().filter(|l| l.contains(" RUNNING ")).count(),
        3,
        "{table}"
    );
    let out = mesokit()
        .args(["status", "--master", "http://127.0.0.1:1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("cannot read the state of http://127.0.0.1:1")
    );

    let (status, _) = http(port, "POST", "/stop").unwrap();
    assert_eq!(status, 202);
    let deadline = Instant::now() + Duration::from_secs(30);
    let code = loop {
        if let Some(s) = child.0.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "mesokit run did not stop");
        std::thread::sleep(Duration::from_millis(50));
    };
    let log = log.join().unwrap();
    assert!(code.success(), "{log}");
    let row = summary_row(&log, "web");
    let cols: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(
        cols[1..5],
        ["3", "0", "0", "3"],
        "instances, finished, failed, killed: {row}"
    );
}

#[test]
fn before_after_example_runs_its_steps_around_each_task() {
    let dir = tempdir::Dir::new();
    let out = mesokit()
        .args(["run"])
        .arg(example("before-after.yaml"))
        .arg("--work-dir")
        .arg(dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    // Each task ran under `mesokit executor` as a custom executor: its sandbox stdout holds
    // the before step's file, the task's own line, then the after step's line.
    let mut stdouts = Vec::new();
    let mut stack = vec![dir.path().to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().map_while(Result::ok) {
            let p = e.path();
            // `runs/latest` is a symlink to the run directory: walk real directories only.
            if e.file_type().unwrap().is_dir() {
                stack.push(p);
            } else if p.file_name().is_some_and(|n| n == "stdout")
                && p.to_string_lossy().contains("/executors/steps.job.")
            {
                stdouts.push(std::fs::read_to_string(&p).unwrap());
            }
        }
    }
    assert_eq!(stdouts.len(), 2, "one sandbox per task");
    for s in stdouts {
        let lines: Vec<&str> = s.lines().collect();
        let task = lines
            .iter()
            .position(|l| l.starts_with("work of instance"))
            .expect(&s);
        assert_eq!(lines[task - 1], "fetching inputs", "{s}");
        assert_eq!(lines[task + 1], "cleaning up", "{s}");
    }
}
