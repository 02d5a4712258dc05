//! `mesokit executor` end to end: the real binary, started the way an agent starts a command
//! executor, against a fake agent on 127.0.0.1.

mod support;

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use mesokit_proto::helpers::TaskBuilder;
use mesokit_proto::v1::framework_info::capability::Type as Capability;
use mesokit_proto::v1::task_status::Reason;
use support::fake_agent::{self, FakeAgent, state, within};
use tokio::process::{Child, Command};

const FRAMEWORK: &str = "fw-0001";

/// A sandbox directory, removed at the end of the test; on failure (or with
/// `MESOKIT_TEST_SHOW_LOG=1`) the executor's stderr is printed first.
struct Sandbox {
    path: PathBuf,
}

impl Sandbox {
    fn new(name: &str) -> Sandbox {
        static N: AtomicU32 = AtomicU32::new(0);
        let path = std::env::temp_dir().join(format!(
            "mesokit-executor-test-{}-{}-{name}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        Sandbox { path }
    }

    fn read(&self, file: &str) -> String {
        std::fs::read_to_string(self.path.join(file)).unwrap_or_default()
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if std::thread::panicking() || std::env::var_os("MESOKIT_TEST_SHOW_LOG").is_some() {
            eprintln!(
                "--- executor stderr ---\n{}\n--- end ---",
                self.read("stderr")
            );
        }
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// Starts `mesokit executor` for `executor_id` with only the agent's environment (plus
/// `PATH`), stdout/stderr in the sandbox as an agent sets them up.
fn start_executor(
    agent: &FakeAgent,
    executor_id: &str,
    sandbox: &Sandbox,
    extra_env: &[(&str, &str)],
) -> Child {
    let out = |name: &str| Stdio::from(std::fs::File::create(sandbox.path.join(name)).unwrap());
    Command::new(executor_bin())
        .arg("executor")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("RUST_LOG", "debug")
        .envs(agent.executor_env(FRAMEWORK, executor_id, &sandbox.path))
        .envs(extra_env.iter().copied())
        // Allocator settings pass through, for footprint experiments.
        .envs(std::env::vars().filter(|(k, _)| k.starts_with("MIMALLOC_")))
        .current_dir(&sandbox.path)
        .stdin(Stdio::null())
        .stdout(out("stdout"))
        .stderr(out("stderr"))
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

/// The binary under test: this build's, or `MESOKIT_TEST_EXECUTOR_BIN` (e.g. a release build
/// for [`footprint`]).
fn executor_bin() -> PathBuf {
    std::env::var_os("MESOKIT_TEST_EXECUTOR_BIN").map_or_else(
        || PathBuf::from(env!("CARGO_BIN_EXE_mesokit")),
        PathBuf::from,
    )
}

async fn exits(child: &mut Child) -> ExitStatus {
    within("the executor to exit", child.wait()).await.unwrap()
}

/// An agent with `task` queued for its executor, and the executor running.
async fn launched(
    task_id: &str,
    task: TaskBuilder,
    capabilities: &[Capability],
    sandbox: &Sandbox,
) -> (FakeAgent, Child) {
    let agent = FakeAgent::start(fake_agent::subscribed(FRAMEWORK, task_id, capabilities)).await;
    agent.queue(fake_agent::launch(task.build()));
    let child = start_executor(&agent, task_id, sandbox, &[]);
    (agent, child)
}

fn task(id: &str, script: &str) -> TaskBuilder {
    TaskBuilder::new(id, id, "fake-agent-S0").shell(script)
}

fn states(updates: &[mesokit_proto::v1::TaskStatus]) -> Vec<&'static str> {
    updates.iter().map(state).collect()
}

#[tokio::test]
async fn a_command_that_succeeds_is_finished() {
    let sandbox = Sandbox::new("finished");
    let (mut agent, mut child) = launched("t-true", task("t-true", "true"), &[], &sandbox).await;

    let subscribe = agent.next_call().await;
    assert_eq!(subscribe.executor_id.value, "t-true");
    assert_eq!(subscribe.framework_id.value, FRAMEWORK);
    let updates = agent.updates_until_terminal().await;
    assert_eq!(
        states(&updates),
        ["TASK_STARTING", "TASK_RUNNING", "TASK_FINISHED"]
    );
    let last = updates.last().unwrap();
    assert_eq!(
        last.message.as_deref(),
        Some("Command exited with status 0")
    );
    for u in &updates {
        assert_eq!(u.task_id.value, "t-true");
        assert_eq!(u.executor_id.as_ref().unwrap().value, "t-true");
    }
    assert!(exits(&mut child).await.success());
}

#[tokio::test]
async fn a_command_that_fails_is_failed_with_its_status() {
    let sandbox = Sandbox::new("failed");
    let (mut agent, mut child) =
        launched("t-exit3", task("t-exit3", "exit 3"), &[], &sandbox).await;

    let updates = agent.updates_until_terminal().await;
    assert_eq!(
        states(&updates),
        ["TASK_STARTING", "TASK_RUNNING", "TASK_FAILED"]
    );
    assert_eq!(
        updates[2].message.as_deref(),
        Some("Command exited with status 3")
    );
    assert!(exits(&mut child).await.success());
}

#[tokio::test]
async fn kill_sends_killing_then_killed_and_the_executor_exits() {
    let sandbox = Sandbox::new("killed");
    let (mut agent, mut child) = launched(
        "t-sleep",
        task("t-sleep", "echo $$ > pid; exec sleep 30"),
        &[Capability::TaskKillingState],
        &sandbox,
    )
    .await;

    assert_eq!(state(&agent.next_update().await), "TASK_STARTING");
    assert_eq!(state(&agent.next_update().await), "TASK_RUNNING");
    wait_for_pid(&sandbox.path.join("pid")).await;
    agent.send(fake_agent::kill("t-sleep", None));
    let updates = agent.updates_until_terminal().await;
    assert_eq!(states(&updates), ["TASK_KILLING", "TASK_KILLED"]);
    assert_eq!(
        updates[1].message.as_deref(),
        Some("Command terminated with signal Terminated")
    );
    assert!(exits(&mut child).await.success());
    assert_gone(&sandbox.path.join("pid")).await;
}

#[tokio::test]
async fn kill_without_the_capability_sends_no_killing_and_escalates() {
    let sandbox = Sandbox::new("escalate");
    // The task ignores SIGTERM: only the SIGKILL after the 200 ms grace ends it.
    let (mut agent, mut child) = launched(
        "t-stubborn",
        task("t-stubborn", "trap '' TERM; echo $$ > pid; sleep 30; true")
            .kill_grace(Duration::from_secs(60)),
        &[],
        &sandbox,
    )
    .await;

    assert_eq!(state(&agent.next_update().await), "TASK_STARTING");
    assert_eq!(state(&agent.next_update().await), "TASK_RUNNING");
    wait_for_pid(&sandbox.path.join("pid")).await;
    // The KILL's own policy wins over the task's 60 s.
    agent.send(fake_agent::kill(
        "t-stubborn",
        Some(Duration::from_millis(200)),
    ));
    let updates = agent.updates_until_terminal().await;
    assert_eq!(states(&updates), ["TASK_KILLED"]);
    assert_eq!(
        updates[0].message.as_deref(),
        Some("Command terminated with signal Killed")
    );
    assert!(exits(&mut child).await.success());
    assert_gone(&sandbox.path.join("pid")).await;
}

#[tokio::test]
async fn shutdown_kills_the_task_and_exits() {
    let sandbox = Sandbox::new("shutdown");
    let (mut agent, mut child) =
        launched("t-shut", task("t-shut", "exec sleep 30"), &[], &sandbox).await;

    assert_eq!(state(&agent.next_update().await), "TASK_STARTING");
    assert_eq!(state(&agent.next_update().await), "TASK_RUNNING");
    agent.send(fake_agent::shutdown());
    let updates = agent.updates_until_terminal().await;
    assert_eq!(states(&updates), ["TASK_KILLED"]);
    assert!(exits(&mut child).await.success());
}

#[tokio::test]
async fn max_completion_time_fails_the_task() {
    let sandbox = Sandbox::new("deadline");
    let mut t = task("t-slow", "exec sleep 30").build();
    t.max_completion_time = Some(mesokit_proto::helpers::duration_info(
        Duration::from_millis(300),
    ));
    let agent = FakeAgent::start(fake_agent::subscribed(
        FRAMEWORK,
        "t-slow",
        &[Capability::TaskKillingState],
    ))
    .await;
    agent.queue(fake_agent::launch(t));
    let mut agent = agent;
    let mut child = start_executor(&agent, "t-slow", &sandbox, &[]);

    let updates = agent.updates_until_terminal().await;
    // No TASK_KILLING for a deadline kill, as in Mesos.
    assert_eq!(
        states(&updates),
        ["TASK_STARTING", "TASK_RUNNING", "TASK_FAILED"]
    );
    assert_eq!(
        updates[2].reason,
        Some(Reason::MaxCompletionTimeReached as i32)
    );
    assert!(exits(&mut child).await.success());
}

#[tokio::test]
async fn losing_the_agent_kills_the_task_and_exits() {
    let sandbox = Sandbox::new("lost");
    let (mut agent, mut child) = launched(
        "t-orphan",
        task("t-orphan", "echo $$ > pid; exec sleep 30"),
        &[],
        &sandbox,
    )
    .await;

    assert_eq!(state(&agent.next_update().await), "TASK_STARTING");
    assert_eq!(state(&agent.next_update().await), "TASK_RUNNING");
    wait_for_pid(&sandbox.path.join("pid")).await;
    agent.close_stream();
    let status = exits(&mut child).await;
    assert_eq!(status.code(), Some(1), "lost agent is an error exit");
    assert_gone(&sandbox.path.join("pid")).await;
}

#[tokio::test]
async fn the_task_gets_the_environment_without_the_executor_token() {
    let sandbox = Sandbox::new("env");
    let agent = FakeAgent::start(fake_agent::subscribed(FRAMEWORK, "t-env", &[])).await;
    agent.queue(fake_agent::launch(
        task(
            "t-env",
            "echo \"token=$MESOS_EXECUTOR_AUTHENTICATION_TOKEN greeting=$GREETING \
             sandbox=$MESOS_SANDBOX pwd=$(pwd)\"",
        )
        .env("GREETING", "hello")
        .build(),
    ));
    let mut agent = agent;
    let mut child = start_executor(
        &agent,
        "t-env",
        &sandbox,
        &[("MESOS_EXECUTOR_AUTHENTICATION_TOKEN", "jwt-secret")],
    );

    let updates = agent.updates_until_terminal().await;
    assert_eq!(state(updates.last().unwrap()), "TASK_FINISHED");
    assert!(exits(&mut child).await.success());
    let dir = sandbox.path.canonicalize().unwrap();
    let line = sandbox
        .read("stdout")
        .lines()
        .find(|l| l.starts_with("token="))
        .unwrap_or_default()
        .to_owned();
    assert_eq!(
        line,
        format!(
            "token= greeting=hello sandbox={} pwd={}",
            sandbox.path.display(),
            dir.display()
        )
    );
}

#[tokio::test]
async fn a_task_that_cannot_start_fails_with_the_reason() {
    let sandbox = Sandbox::new("nostart");
    let agent = FakeAgent::start(fake_agent::subscribed(FRAMEWORK, "t-none", &[])).await;
    agent.queue(fake_agent::launch(
        TaskBuilder::new("t-none", "t-none", "fake-agent-S0")
            .argv(&["/nonexistent/program"])
            .build(),
    ));
    let mut agent = agent;
    let mut child = start_executor(&agent, "t-none", &sandbox, &[]);

    let updates = agent.updates_until_terminal().await;
    assert_eq!(states(&updates), ["TASK_STARTING", "TASK_FAILED"]);
    let message = updates[1].message.clone().unwrap_or_default();
    assert!(
        message.contains("No such file or directory"),
        "message: {message}"
    );
    assert!(exits(&mut child).await.success());
}

#[tokio::test]
async fn a_failing_task_of_a_group_kills_the_others() {
    let sandbox = Sandbox::new("group");
    let agent = FakeAgent::start(fake_agent::subscribed(FRAMEWORK, "group-exec", &[])).await;
    agent.queue(fake_agent::launch_group(vec![
        task("g-sleeper", "echo $$ > pid; exec sleep 30").build(),
        // Fails once the other task is up.
        task(
            "g-failer",
            "while [ ! -s ../g-sleeper/pid ]; do sleep 0.01; done; exit 7",
        )
        .build(),
    ]));
    let mut agent = agent;
    let mut child = start_executor(&agent, "group-exec", &sandbox, &[]);

    let mut terminal = Vec::new();
    while terminal.len() < 2 {
        let u = agent.next_update().await;
        if mesokit_proto::helpers::is_terminal_value(u.state) {
            terminal.push((u.task_id.value.clone(), state(&u), u.message.clone()));
        }
    }
    terminal.sort();
    assert_eq!(
        terminal,
        [
            (
                "g-failer".to_owned(),
                "TASK_FAILED",
                Some("Command exited with status 7".to_owned())
            ),
            (
                "g-sleeper".to_owned(),
                "TASK_KILLED",
                Some("Command terminated with signal Terminated".to_owned())
            ),
        ]
    );
    assert!(exits(&mut child).await.success());
    // Each task of a group has its own directory, output and MESOS_SANDBOX.
    assert_gone(&sandbox.path.join("tasks/g-sleeper/pid")).await;
    assert!(sandbox.path.join("tasks/g-failer/stdout").exists());
}

#[tokio::test]
async fn with_checkpointing_a_reconnect_resends_what_was_not_acknowledged() {
    let sandbox = Sandbox::new("reconnect");
    let mut agent = FakeAgent::start(fake_agent::subscribed(FRAMEWORK, "t-cp", &[])).await;
    agent.queue(fake_agent::launch(task("t-cp", "exec sleep 30").build()));
    agent.set_auto_ack(false);
    let mut child = start_executor(
        &agent,
        "t-cp",
        &sandbox,
        &[
            ("MESOS_CHECKPOINT", "1"),
            ("MESOS_RECOVERY_TIMEOUT", "15mins"),
            ("MESOS_SUBSCRIPTION_BACKOFF_MAX", "50ms"),
        ],
    );
    assert_eq!(state(&agent.next_update().await), "TASK_STARTING");
    assert_eq!(state(&agent.next_update().await), "TASK_RUNNING");

    // The agent restarts: the executor re-subscribes with both updates and the task, and
    // the task keeps running.
    agent.close_stream();
    let resubscribe = loop {
        let call = agent.next_call().await;
        if let Some(subscribe) = call.subscribe {
            break subscribe;
        }
    };
    let resent: Vec<&str> = resubscribe
        .unacknowledged_updates
        .iter()
        .map(|u| state(&u.status))
        .collect();
    assert_eq!(resent, ["TASK_STARTING", "TASK_RUNNING"]);
    assert_eq!(resubscribe.unacknowledged_tasks.len(), 1);
    assert_eq!(resubscribe.unacknowledged_tasks[0].task_id.value, "t-cp");

    agent.set_auto_ack(true);
    agent.send(fake_agent::kill("t-cp", None));
    let updates = agent.updates_until_terminal().await;
    assert_eq!(states(&updates), ["TASK_KILLED"]);
    assert!(exits(&mut child).await.success());
}

#[tokio::test]
async fn with_checkpointing_the_recovery_timeout_kills_the_task() {
    let sandbox = Sandbox::new("recovery");
    let mut agent = FakeAgent::start(fake_agent::subscribed(FRAMEWORK, "t-rt", &[])).await;
    agent.queue(fake_agent::launch(
        task("t-rt", "echo $$ > pid; exec sleep 30").build(),
    ));
    let mut child = start_executor(
        &agent,
        "t-rt",
        &sandbox,
        &[
            ("MESOS_CHECKPOINT", "1"),
            ("MESOS_RECOVERY_TIMEOUT", "300ms"),
            ("MESOS_SUBSCRIPTION_BACKOFF_MAX", "50ms"),
        ],
    );
    assert_eq!(state(&agent.next_update().await), "TASK_STARTING");
    assert_eq!(state(&agent.next_update().await), "TASK_RUNNING");
    wait_for_pid(&sandbox.path.join("pid")).await;
    // The agent goes away for good.
    drop(agent);
    let status = exits(&mut child).await;
    assert_eq!(status.code(), Some(1));
    assert_gone(&sandbox.path.join("pid")).await;
    assert!(
        sandbox.read("stderr").contains("recovery"),
        "the log says why"
    );
}

#[tokio::test]
async fn sigterm_to_the_executor_kills_the_task_first() {
    let sandbox = Sandbox::new("sigterm");
    let (mut agent, mut child) = launched(
        "t-term",
        task("t-term", "echo $$ > pid; exec sleep 30"),
        &[],
        &sandbox,
    )
    .await;
    assert_eq!(state(&agent.next_update().await), "TASK_STARTING");
    assert_eq!(state(&agent.next_update().await), "TASK_RUNNING");
    wait_for_pid(&sandbox.path.join("pid")).await;
    send_sigterm(child.id().unwrap());
    let updates = agent.updates_until_terminal().await;
    assert_eq!(states(&updates), ["TASK_KILLED"]);
    assert!(exits(&mut child).await.success());
    assert_gone(&sandbox.path.join("pid")).await;
}

#[tokio::test]
async fn a_daemon_that_double_forked_out_of_its_task_is_killed_at_the_end() {
    if std::process::Command::new("perl")
        .arg("-v")
        .output()
        .is_err()
    {
        eprintln!("perl not available: skipped");
        return;
    }
    let sandbox = Sandbox::new("daemon");
    // fork, the parent exits at once, the child starts its own session: the classic daemon,
    // out of the task's group, session and process tree before anyone looks.
    let script = "perl -MPOSIX -e 'exit if fork; POSIX::setsid(); \
                  open(F, \">pid\"); print F \"$$\\n\"; close F; sleep 30'; \
                  while [ ! -s pid ]; do sleep 0.01; done";
    let (mut agent, mut child) =
        launched("t-daemon", task("t-daemon", script), &[], &sandbox).await;
    let updates = agent.updates_until_terminal().await;
    assert_eq!(state(updates.last().unwrap()), "TASK_FINISHED");
    assert!(exits(&mut child).await.success());
    assert_gone(&sandbox.path.join("pid")).await;
}

fn send_sigterm(pid: u32) {
    let status = std::process::Command::new("/bin/sh")
        .args(["-c", &format!("kill -TERM {pid}")])
        .status()
        .unwrap();
    assert!(status.success());
}

/// Waits until the task has written its pid to `file` (so it is past its setup, e.g. its
/// `trap`).
async fn wait_for_pid(file: &Path) {
    within("the task to write its pid", async {
        while !std::fs::read_to_string(file).is_ok_and(|s| s.ends_with('\n')) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
}

/// The process whose pid is in `file` is dead (gone, or a zombie waiting for init), or dies
/// within [`PATIENCE`].
async fn assert_gone(file: &Path) {
    let pid = std::fs::read_to_string(file).expect("the task wrote its pid");
    let pid = pid.trim().to_owned();
    assert!(!pid.is_empty());
    let alive = || {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| {
                s.rsplit_once(')')
                    .map(|(_, r)| !r.trim_start().starts_with('Z'))
            })
            .unwrap_or(false)
    };
    let start = std::time::Instant::now();
    while alive() {
        assert!(
            start.elapsed() < fake_agent::PATIENCE,
            "task process {pid} still exists"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Not a test: prints the executor's memory while it supervises a task. Measure a release
/// build:
///
/// ```text
/// cargo build --release -p mesokit
/// MESOKIT_TEST_EXECUTOR_BIN=target/release/mesokit \
///   cargo test -p mesokit --test executor footprint -- --ignored --nocapture
/// ```
#[tokio::test]
#[ignore = "measurement, not a test"]
async fn footprint() {
    let sandbox = Sandbox::new("footprint");
    // As an agent starts it: no RUST_LOG (empty counts as unset).
    let mut agent = FakeAgent::start(fake_agent::subscribed(FRAMEWORK, "t-rss", &[])).await;
    agent.queue(fake_agent::launch(task("t-rss", "exec sleep 30").build()));
    let mut child = start_executor(&agent, "t-rss", &sandbox, &[("RUST_LOG", "")]);
    assert_eq!(state(&agent.next_update().await), "TASK_STARTING");
    assert_eq!(state(&agent.next_update().await), "TASK_RUNNING");
    let pid = child.id().unwrap();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .map_or("?".to_owned(), |l| l[name.len()..].trim().to_owned())
    };
    println!(
        "executor {}: VmRSS {}, VmHWM {}, RssAnon {}, RssFile {}, Threads {}",
        executor_bin().display(),
        field("VmRSS:"),
        field("VmHWM:"),
        field("RssAnon:"),
        field("RssFile:"),
        field("Threads:"),
    );
    // Where it goes: the largest mappings by RSS, and any transparent huge pages.
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).unwrap_or_default();
    let mut maps: Vec<(u64, String)> = Vec::new();
    let mut mapping = "";
    for line in smaps.lines() {
        let first = line.split_whitespace().next().unwrap_or("");
        if first.contains('-') && !first.ends_with(':') {
            mapping = line;
        } else if let Some(kb) = line.strip_prefix("Rss:") {
            let kb = kb.trim().trim_end_matches(" kB").parse().unwrap_or(0);
            maps.push((kb, mapping.to_owned()));
        } else if line.starts_with("AnonHugePages:") && !line.ends_with(" 0 kB") {
            println!("huge pages: {mapping}: {line}");
        }
    }
    maps.sort_by_key(|m| std::cmp::Reverse(m.0));
    for (kb, mapping) in maps.iter().take(5) {
        println!("{kb:>8} kB  {mapping}");
    }
    agent.send(fake_agent::kill("t-rss", None));
    agent.updates_until_terminal().await;
    assert!(exits(&mut child).await.success());
}

/// A health check for `port` on 127.0.0.1: HTTP GET `/health`, probing at once and every
/// 100 ms, no grace period.
fn http_health_check(port: u16, consecutive_failures: u32) -> mesokit_proto::v1::HealthCheck {
    use mesokit_proto::v1::{HealthCheck, health_check};
    HealthCheck {
        r#type: Some(health_check::Type::Http as i32),
        http: Some(health_check::HttpCheckInfo {
            port: u32::from(port),
            path: Some("/health".into()),
            ..Default::default()
        }),
        delay_seconds: Some(0.0),
        interval_seconds: Some(0.1),
        timeout_seconds: Some(2.0),
        consecutive_failures: Some(consecutive_failures),
        grace_period_seconds: Some(0.0),
        ..Default::default()
    }
}

/// A tiny HTTP server on 127.0.0.1 answering every request with 200; it lives as long as the
/// test's runtime.
async fn healthy_server() -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buf = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match sock.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = sock
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                    .await;
            });
        }
    });
    port
}

#[tokio::test]
async fn a_passing_health_check_reports_healthy() {
    let sandbox = Sandbox::new("healthy");
    let port = healthy_server().await;
    let mut info = task("t-healthy", "exec sleep 30").build();
    info.health_check = Some(Box::new(http_health_check(port, 3)));
    let mut agent = FakeAgent::start(fake_agent::subscribed(FRAMEWORK, "t-healthy", &[])).await;
    agent.queue(fake_agent::launch(info));
    let mut child = start_executor(&agent, "t-healthy", &sandbox, &[]);

    assert_eq!(state(&agent.next_update().await), "TASK_STARTING");
    let running = agent.next_update().await;
    assert_eq!(state(&running), "TASK_RUNNING");
    assert_eq!(running.healthy, None);
    let healthy = agent.next_update().await;
    assert_eq!(state(&healthy), "TASK_RUNNING");
    assert_eq!(healthy.healthy, Some(true));
    assert_eq!(
        healthy.reason,
        Some(Reason::TaskHealthCheckStatusUpdated as i32)
    );

    agent.send(fake_agent::kill("t-healthy", None));
    let updates = agent.updates_until_terminal().await;
    assert_eq!(
        states(&updates),
        ["TASK_KILLED"],
        "later successes stay quiet"
    );
    assert_eq!(
        updates[0].healthy, None,
        "a KILL is not a health-check kill"
    );
    assert!(exits(&mut child).await.success());
}

#[tokio::test]
async fn a_failing_health_check_kills_the_task_as_unhealthy() {
    let sandbox = Sandbox::new("unhealthy");
    // A port nobody listens on: bound, then released.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let mut info = task("t-unhealthy", "exec sleep 30").build();
    info.health_check = Some(Box::new(http_health_check(port, 1)));
    let mut agent = FakeAgent::start(fake_agent::subscribed(FRAMEWORK, "t-unhealthy", &[])).await;
    agent.queue(fake_agent::launch(info));
    let mut child = start_executor(&agent, "t-unhealthy", &sandbox, &[]);

    let updates = agent.updates_until_terminal().await;
    assert_eq!(
        states(&updates),
        [
            "TASK_STARTING",
            "TASK_RUNNING",
            "TASK_RUNNING",
            "TASK_KILLED"
        ]
    );
    let unhealthy = &updates[2];
    assert_eq!(unhealthy.healthy, Some(false));
    assert_eq!(
        unhealthy.reason,
        Some(Reason::TaskHealthCheckStatusUpdated as i32)
    );
    assert!(
        unhealthy
            .message
            .as_deref()
            .is_some_and(|m| m.contains("consecutive health check failures")),
        "{unhealthy:?}"
    );
    // As the Mesos command executor ends a task its health checker killed.
    assert_eq!(updates[3].healthy, Some(false));
    assert!(exits(&mut child).await.success());
}
