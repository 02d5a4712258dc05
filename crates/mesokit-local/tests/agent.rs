//! The agent against real processes on 127.0.0.1: the test plays the master (channels) and the
//! executor (over HTTP, with the environment the agent gave the executor process).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use mesokit_client::executor::{ExecutorClient, ExecutorConfig, ExecutorEvent, ExecutorEvents};
use mesokit_local::agent::{self, AgentConfig, AgentHandle};
use mesokit_local::messages::{ToAgent, ToMaster};
use mesokit_proto::helpers::{self, is_valid_uuid};
use mesokit_proto::v1::executor::event;
use mesokit_proto::v1::{
    AgentId, ExecutorInfo, FrameworkId, FrameworkInfo, TaskId, TaskInfo, TaskState, TaskStatus,
    task_status,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

const WAIT: Duration = Duration::from_secs(10);

/// An agent on an ephemeral port with its own work directory; kills its executors and removes
/// the directory when dropped, also when the test fails.
struct TestAgent {
    handle: AgentHandle,
    rx: mpsc::UnboundedReceiver<ToMaster>,
    work_dir: PathBuf,
}

impl Drop for TestAgent {
    fn drop(&mut self) {
        self.handle.kill_executors_now();
        let _ = std::fs::remove_dir_all(&self.work_dir);
    }
}

async fn start_agent(name: &str, tweak: impl FnOnce(&mut AgentConfig)) -> TestAgent {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let work_dir = std::env::temp_dir().join(format!(
        "mesokit-agent-test-{name}-{}-{port}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&work_dir);
    std::fs::create_dir_all(&work_dir).unwrap();
    let mut config = AgentConfig::new(
        AgentId {
            value: "agent-S0".into(),
        },
        "localhost",
        Ipv4Addr::LOCALHOST,
        port,
        &work_dir,
        vec!["/bin/false".into()],
    );
    config.resources = vec![helpers::cpus(4.0), helpers::mem(1024.0)];
    tweak(&mut config);
    let (tx, rx) = mpsc::unbounded_channel();
    let handle = agent::start(config, listener, tx);
    TestAgent {
        handle,
        rx,
        work_dir,
    }
}

impl TestAgent {
    async fn next(&mut self) -> ToMaster {
        tokio::time::timeout(WAIT, self.rx.recv())
            .await
            .expect("timed out waiting for a message to the master")
            .expect("agent gone")
    }

    async fn next_update(&mut self) -> (TaskStatus, TaskState) {
        match self.next().await {
            ToMaster::StatusUpdate {
                status,
                latest_state,
                agent_id,
                ..
            } => {
                assert_eq!(agent_id.value, "agent-S0");
                (status, latest_state)
            }
            other => panic!("expected a status update, got {other:?}"),
        }
    }

    fn sandbox(&self, eid: &str) -> PathBuf {
        self.work_dir
            .join("slaves/agent-S0/frameworks/fw-1/executors")
            .join(eid)
            .join("runs/latest")
    }

    async fn get(&self, path: &str) -> (u16, String) {
        let (status, _, body) = request(self.handle.endpoint(), "GET", path, &[], b"").await;
        (status, String::from_utf8_lossy(&body).into_owned())
    }
}

fn framework(checkpoint: bool) -> FrameworkInfo {
    FrameworkInfo {
        user: "nobody".into(),
        name: "test".into(),
        id: Some(fid()),
        checkpoint: Some(checkpoint),
        ..Default::default()
    }
}

fn fid() -> FrameworkId {
    FrameworkId {
        value: "fw-1".into(),
    }
}

fn custom(eid: &str, shell: &str) -> ExecutorInfo {
    let mut e = helpers::custom_executor(eid, helpers::shell(shell));
    e.framework_id = Some(fid());
    e.resources = vec![helpers::cpus(0.1), helpers::mem(32.0)];
    e
}

fn task(id: &str) -> TaskInfo {
    helpers::TaskBuilder::new(id, id, "agent-S0")
        .cpus(0.5)
        .mem(64.0)
        .build()
}

fn run(executor: Option<ExecutorInfo>, task: TaskInfo) -> ToAgent {
    ToAgent::RunTask {
        framework: framework(false),
        executor,
        task,
    }
}

/// Waits until `path` exists (the executor process writes it).
async fn wait_for_file(path: &Path) -> String {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Ok(s) = std::fs::read_to_string(path)
            && !s.is_empty()
        {
            return s;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} never appeared",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn parse_env(s: &str) -> BTreeMap<String, String> {
    s.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// Records the environment, then waits for a `stop` file in the sandbox (then exits 3).
const RECORD_AND_WAIT: &str = "env > env.txt; echo started; i=0; while [ ! -f stop ] && [ $i -lt 600 ]; do sleep 0.05; i=$((i+1)); done; exit 3";

async fn subscribe(agent: &TestAgent, eid: &str) -> (ExecutorClient, ExecutorEvents) {
    let env = wait_for_file(&agent.sandbox(eid).join("env.txt")).await;
    let config = ExecutorConfig::from_vars(parse_env(&env)).expect("executor env");
    ExecutorClient::start(config).expect("client")
}

async fn next_event(events: &mut ExecutorEvents) -> ExecutorEvent {
    tokio::time::timeout(WAIT, events.next_event())
        .await
        .expect("timed out waiting for an executor event")
        .expect("executor stream ended")
}

async fn expect_event(
    events: &mut ExecutorEvents,
    ty: event::Type,
) -> Box<mesokit_proto::v1::executor::Event> {
    match next_event(events).await {
        ExecutorEvent::Event(e) if e.r#type == Some(ty as i32) => e,
        other => panic!("expected {ty:?}, got {other:?}"),
    }
}

fn status(task: &str, state: TaskState) -> TaskStatus {
    TaskStatus {
        task_id: TaskId { value: task.into() },
        state: state as i32,
        ..Default::default()
    }
}

/// A minimal HTTP/1.1 exchange (`Connection: close`).
async fn request(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String, Vec<u8>) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    s.write_all(body).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut out))
        .await
        .expect("response timed out")
        .unwrap();
    let split = out.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&out[..split]).into_owned();
    let status = head[9..12].parse().unwrap();
    let mut body = out[split + 4..].to_vec();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = dechunk(&body);
    }
    (status, head, body)
}

/// De-chunks a (possibly incomplete) chunked body: complete chunks only.
fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(i) = b.windows(2).position(|w| w == b"\r\n") {
        let n = usize::from_str_radix(std::str::from_utf8(&b[..i]).unwrap().trim(), 16).unwrap();
        if n == 0 || b.len() < i + 4 + n {
            break;
        }
        out.extend_from_slice(&b[i + 2..i + 2 + n]);
        b = &b[i + 4 + n..];
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_executor_subscribes_gets_launch_and_updates_flow_to_the_master() {
    let mut agent = start_agent("flow", |_| {}).await;
    let mut exec = custom("exec-1", RECORD_AND_WAIT);
    exec.command.as_mut().unwrap().environment = Some(helpers::environment(&[
        ("FOO", "bar"),
        ("PATH", "/custom/bin:/usr/bin:/bin"),
    ]));
    agent.handle.send(run(Some(exec), task("t1")));

    // Sandbox layout and runs/latest.
    let latest = agent.sandbox("exec-1");
    let env = parse_env(&wait_for_file(&latest.join("env.txt")).await);
    let real = std::fs::read_link(&latest).unwrap();
    assert_eq!(real.parent().unwrap(), latest.parent().unwrap());
    assert_eq!(env["MESOS_DIRECTORY"], real.display().to_string());
    assert_eq!(wait_for_file(&latest.join("stdout")).await, "started\n");

    let (client, mut events) = subscribe(&agent, "exec-1").await;
    let subscribed = match next_event(&mut events).await {
        ExecutorEvent::Connected { subscribed } => subscribed,
        other => panic!("expected SUBSCRIBED, got {other:?}"),
    };
    assert_eq!(subscribed.executor_info.executor_id.value, "exec-1");
    assert_eq!(subscribed.framework_info.name, "test");
    assert_eq!(subscribed.agent_info.id.as_ref().unwrap().value, "agent-S0");
    assert_eq!(
        subscribed.container_id.as_ref().unwrap().value,
        real.file_name().unwrap().to_string_lossy()
    );
    let launch = expect_event(&mut events, event::Type::Launch).await;
    assert_eq!(launch.launch.as_ref().unwrap().task.task_id.value, "t1");

    // RUNNING: acknowledged to the executor, forwarded to the master.
    let d = client
        .update(status("t1", TaskState::TaskRunning))
        .await
        .unwrap();
    let ack = expect_event(&mut events, event::Type::Acknowledged).await;
    assert_eq!(&ack.acknowledged.as_ref().unwrap().uuid, d.uuid());
    let (s, latest_state) = agent.next_update().await;
    assert_eq!(s.state, TaskState::TaskRunning as i32);
    assert_eq!(latest_state, TaskState::TaskRunning);
    assert_eq!(s.uuid.as_ref(), Some(d.uuid()));
    assert_eq!(s.agent_id.as_ref().unwrap().value, "agent-S0");
    assert_eq!(s.executor_id.as_ref().unwrap().value, "exec-1");
    assert_eq!(s.source, Some(task_status::Source::Executor as i32));
    let cs = s.container_status.as_ref().unwrap();
    let pid = cs.executor_pid.expect("executor pid");

    // The environment is exactly the documented list (read from the process itself).
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    let environ: BTreeMap<String, String> = environ
        .split(|b| *b == 0)
        .filter_map(|kv| std::str::from_utf8(kv).ok()?.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let port = agent.handle.endpoint().port();
    let dir = real.display().to_string();
    let expected: BTreeMap<String, String> = [
        ("LIBPROCESS_PORT", "0".to_owned()),
        ("MESOS_FRAMEWORK_ID", "fw-1".into()),
        ("MESOS_EXECUTOR_ID", "exec-1".into()),
        ("MESOS_DIRECTORY", dir.clone()),
        ("MESOS_SANDBOX", dir),
        ("MESOS_SLAVE_ID", "agent-S0".into()),
        ("MESOS_SLAVE_PID", format!("slave(1)@127.0.0.1:{port}")),
        ("MESOS_AGENT_ENDPOINT", format!("127.0.0.1:{port}")),
        ("MESOS_CHECKPOINT", "0".into()),
        ("MESOS_HTTP_COMMAND_EXECUTOR", "1".into()),
        ("MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD", "5secs".into()),
        ("FOO", "bar".into()),
        ("PATH", "/custom/bin:/usr/bin:/bin".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    assert_eq!(environ, expected);

    // FINISHED waits for the scheduler's ack of RUNNING.
    let d2 = client
        .update(status("t1", TaskState::TaskFinished))
        .await
        .unwrap();
    expect_event(&mut events, event::Type::Acknowledged).await;
    assert!(
        tokio::time::timeout(Duration::from_millis(200), agent.rx.recv())
            .await
            .is_err(),
        "the next update must wait for the acknowledgement"
    );
    agent.handle.send(ToAgent::Acknowledge {
        framework_id: fid(),
        task_id: TaskId { value: "t1".into() },
        uuid: d.uuid().clone(),
    });
    let (s, latest_state) = agent.next_update().await;
    assert_eq!(s.state, TaskState::TaskFinished as i32);
    assert_eq!(latest_state, TaskState::TaskFinished);
    assert_eq!(s.uuid.as_ref(), Some(d2.uuid()));

    // A second terminal update is dropped but still acknowledged.
    client
        .update(status("t1", TaskState::TaskFailed))
        .await
        .unwrap();
    expect_event(&mut events, event::Type::Acknowledged).await;

    // Another task for the running executor: LAUNCH at once.
    agent
        .handle
        .send(run(Some(custom("exec-1", RECORD_AND_WAIT)), task("t2")));
    let launch = expect_event(&mut events, event::Type::Launch).await;
    assert_eq!(launch.launch.as_ref().unwrap().task.task_id.value, "t2");

    // Read endpoints see it.
    let (code, state) = agent.get("/slave(1)/state").await;
    assert_eq!(code, 200);
    assert!(state.contains("\"id\":\"agent-S0\""), "{state}");
    assert!(state.contains("\"pid\":\"slave(1)@127.0.0.1:"), "{state}");
    assert!(
        state.contains(&format!("\"directory\":\"{}\"", real.display())),
        "{state}"
    );
    assert!(
        state.contains("\"completed_tasks\":[{\"id\":\"t1\""),
        "{state}"
    );
    let (code, read) = agent
        .get("/files/read?path=/frameworks/fw-1/executors/exec-1/runs/latest/stdout&offset=0")
        .await;
    assert_eq!(
        (code, read.as_str()),
        (200, "{\"data\":\"started\\n\",\"offset\":0}")
    );
    let (code, read) = agent
        .get(&format!(
            "/files/read?path={}/stdout&offset=-1",
            real.display()
        ))
        .await;
    assert_eq!((code, read.as_str()), (200, "{\"data\":\"\",\"offset\":8}"));
    assert_eq!(agent.get("/files/read?path=/etc/passwd").await.0, 404);
    assert_eq!(agent.get("/files/read").await.0, 400);
    assert_eq!(agent.get("/health").await.0, 200);
    let (code, metrics) = agent.get("/metrics/snapshot").await;
    assert_eq!(code, 200);
    assert!(
        metrics.contains("\"slave/executors_running\":1.0"),
        "{metrics}"
    );
    let (code, stats) = agent.get("/monitor/statistics").await;
    assert_eq!(code, 200);
    assert!(stats.contains("\"executor_id\":\"exec-1\""), "{stats}");
    assert!(stats.contains("\"processes\":"), "{stats}");
    let (code, containers) = agent.get("/slave(1)/containers").await;
    assert_eq!(code, 200);
    assert!(
        containers.contains(&format!(
            "\"container_id\":\"{}\"",
            real.file_name().unwrap().to_string_lossy()
        )),
        "{containers}"
    );
    assert!(containers.contains("\"executor_pid\":"), "{containers}");

    agent.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_timeout_fails_the_queued_task() {
    let mut agent = start_agent("regtimeout", |c| {
        c.executor_registration_timeout = Duration::from_millis(300);
    })
    .await;
    agent
        .handle
        .send(run(Some(custom("exec-1", "sleep 30")), task("t1")));
    let (s, latest) = agent.next_update().await;
    assert_eq!(s.state, TaskState::TaskFailed as i32);
    assert_eq!(latest, TaskState::TaskFailed);
    assert_eq!(
        s.reason,
        Some(task_status::Reason::ExecutorRegistrationTimeout as i32)
    );
    assert_eq!(s.source, Some(task_status::Source::Agent as i32));
    assert!(is_valid_uuid(s.uuid.as_ref().unwrap()));
    match agent.next().await {
        ToMaster::ExecutorExited {
            executor_id,
            status,
            command_executor,
            ..
        } => {
            assert_eq!(executor_id.value, "exec-1");
            assert_eq!(status & 0x7f, 9, "killed by SIGKILL");
            assert!(!command_executor);
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_of_a_queued_task_reports_killed_during_launch() {
    let mut agent = start_agent("killqueued", |_| {}).await;
    agent
        .handle
        .send(run(Some(custom("exec-1", "sleep 30")), task("t1")));
    agent.handle.send(ToAgent::KillTask {
        framework_id: fid(),
        task_id: TaskId { value: "t1".into() },
        kill_policy: None,
    });
    let (s, _) = agent.next_update().await;
    assert_eq!(s.state, TaskState::TaskKilled as i32);
    assert_eq!(
        s.reason,
        Some(task_status::Reason::TaskKilledDuringLaunch as i32)
    );
    // The executor never got a task: it is killed.
    assert!(matches!(
        agent.next().await,
        ToMaster::ExecutorExited { .. }
    ));

    // A kill for a task nobody has.
    agent.handle.send(ToAgent::KillTask {
        framework_id: fid(),
        task_id: TaskId {
            value: "nope".into(),
        },
        kill_policy: None,
    });
    let (s, _) = agent.next_update().await;
    assert_eq!(s.state, TaskState::TaskLost as i32);
    assert_eq!(s.message.as_deref(), Some("Cannot find executor"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn executor_exit_fails_its_tasks_and_retries_until_acknowledged() {
    let mut agent = start_agent("exit", |c| {
        c.status_retry_initial = Duration::from_millis(50);
        c.status_retry_max = Duration::from_millis(100);
    })
    .await;
    agent
        .handle
        .send(run(Some(custom("exec-1", RECORD_AND_WAIT)), task("t1")));
    let (client, mut events) = subscribe(&agent, "exec-1").await;
    assert!(matches!(
        next_event(&mut events).await,
        ExecutorEvent::Connected { .. }
    ));
    expect_event(&mut events, event::Type::Launch).await;

    // KILL goes to a subscribed executor with the call's policy.
    let policy = mesokit_proto::v1::KillPolicy {
        grace_period: Some(helpers::duration_info(Duration::from_secs(1))),
    };
    agent.handle.send(ToAgent::KillTask {
        framework_id: fid(),
        task_id: TaskId { value: "t1".into() },
        kill_policy: Some(policy),
    });
    let kill = expect_event(&mut events, event::Type::Kill).await;
    assert_eq!(kill.kill.as_ref().unwrap().kill_policy, Some(policy));

    // Framework message relay.
    agent.handle.send(ToAgent::FrameworkMessage {
        framework_id: fid(),
        executor_id: mesokit_proto::v1::ExecutorId {
            value: "exec-1".into(),
        },
        data: Bytes::from_static(b"hi"),
    });
    let msg = expect_event(&mut events, event::Type::Message).await;
    assert_eq!(&msg.message.as_ref().unwrap().data[..], b"hi");
    client.message(Bytes::from_static(b"yo")).await.unwrap();
    match agent.next().await {
        ToMaster::ExecutorMessage { data, .. } => assert_eq!(&data[..], b"yo"),
        other => panic!("{other:?}"),
    }

    let d = client
        .update(status("t1", TaskState::TaskRunning))
        .await
        .unwrap();
    // Retried until acknowledged.
    for _ in 0..3 {
        let (s, _) = agent.next_update().await;
        assert_eq!(s.uuid.as_ref(), Some(d.uuid()));
    }
    agent.handle.send(ToAgent::Acknowledge {
        framework_id: fid(),
        task_id: TaskId { value: "t1".into() },
        uuid: d.uuid().clone(),
    });
    // Drain a copy that may have crossed the ack, then silence.
    tokio::time::sleep(Duration::from_millis(30)).await;
    while agent.rx.try_recv().is_ok() {}
    assert!(
        tokio::time::timeout(Duration::from_millis(300), agent.rx.recv())
            .await
            .is_err()
    );

    // The process exits: the running task fails, the master hears of the exit.
    std::fs::write(agent.sandbox("exec-1").join("stop"), b"").unwrap();
    let (s, latest) = agent.next_update().await;
    assert_eq!(s.state, TaskState::TaskFailed as i32);
    assert_eq!(latest, TaskState::TaskFailed);
    assert_eq!(
        s.reason,
        Some(task_status::Reason::ExecutorTerminated as i32)
    );
    assert_eq!(s.message.as_deref(), Some("Executor terminated"));
    assert_eq!(s.source, Some(task_status::Source::Agent as i32));
    loop {
        match agent.next().await {
            ToMaster::ExecutorExited {
                status,
                command_executor,
                ..
            } => {
                assert_eq!((status >> 8) & 0xff, 3, "exit code 3");
                assert!(!command_executor);
                break;
            }
            // Retries of the TASK_FAILED update.
            ToMaster::StatusUpdate { .. } => {}
            other => panic!("{other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn command_task_runs_the_command_executor_with_a_synthesized_executor_info() {
    let mut agent = start_agent("command", |c| {
        c.executor_shutdown_grace = Duration::from_millis(200);
        c.command_executor = vec![
            "/bin/sh".into(),
            "-c".into(),
            "echo \"$0 $1\" > argv.txt; env > env.txt; sleep 30".into(),
            "arg1".into(),
        ];
    })
    .await;
    let t = helpers::TaskBuilder::new("hello", "task-7", "agent-S0")
        .cpus(0.5)
        .shell("echo hello world && sleep 5")
        .env("GREETING", "hi")
        .build();
    agent.handle.send(ToAgent::RunTask {
        framework: framework(true),
        executor: None,
        task: t,
    });
    let sandbox = agent.sandbox("task-7");
    let env = parse_env(&wait_for_file(&sandbox.join("env.txt")).await);
    assert_eq!(env["MESOS_EXECUTOR_ID"], "task-7");
    assert_eq!(env["GREETING"], "hi");
    assert_eq!(env["MESOS_CHECKPOINT"], "1");
    assert_eq!(env["MESOS_RECOVERY_TIMEOUT"], "15mins");
    assert_eq!(env["MESOS_SUBSCRIPTION_BACKOFF_MAX"], "2secs");
    assert_eq!(
        wait_for_file(&sandbox.join("argv.txt")).await,
        "arg1 \n",
        "the argv is passed as is: sh -c <script> <$0>"
    );

    let (_client, mut events) = subscribe(&agent, "task-7").await;
    let sub = match next_event(&mut events).await {
        ExecutorEvent::Connected { subscribed } => subscribed,
        other => panic!("{other:?}"),
    };
    let info = &sub.executor_info;
    assert_eq!(
        info.name.as_deref(),
        Some("Command Executor (Task: task-7) (Command: sh -c 'echo hello w...')")
    );
    #[allow(deprecated)]
    let source = info.source.as_deref();
    assert_eq!(source, Some("task-7"));
    let cmd = info.command.as_ref().unwrap();
    assert_eq!(cmd.shell, Some(false));
    assert_eq!(cmd.value.as_deref(), Some("/bin/sh"));
    assert_eq!(cmd.arguments[0], "/bin/sh");
    assert_eq!(info.resources.len(), 2);
    let launch = expect_event(&mut events, event::Type::Launch).await;
    assert_eq!(launch.launch.as_ref().unwrap().task.task_id.value, "task-7");

    // SHUTDOWN of the framework: SHUTDOWN event, then the process group is killed after
    // the grace period; no updates for the removed framework.
    agent.handle.send(ToAgent::ShutdownFramework {
        framework_id: fid(),
    });
    expect_event(&mut events, event::Type::Shutdown).await;
    match agent.next().await {
        ToMaster::ExecutorExited {
            command_executor, ..
        } => assert!(command_executor),
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_executor_calls_are_refused_as_mesos_does() {
    let agent = start_agent("badcalls", |_| {}).await;
    agent
        .handle
        .send(run(Some(custom("exec-1", "sleep 30")), task("t1")));
    let addr = agent.handle.endpoint();
    let post = |path: &'static str,
                headers: &'static [(&'static str, &'static str)],
                body: String| async move {
        let (code, _, body) = request(addr, "POST", path, headers, body.as_bytes()).await;
        (code, String::from_utf8_lossy(&body).into_owned())
    };

    let (code, head, _) = request(addr, "GET", "/api/v1/executor", &[], b"").await;
    assert_eq!(code, 405);
    assert!(
        head.contains("allow: POST") || head.contains("Allow: POST"),
        "{head}"
    );
    let (code, body) = post("/api/v1/executor", &[], "{}".into()).await;
    assert_eq!(
        (code, body.as_str()),
        (400, "Expecting 'Content-Type' to be present")
    );
    let (code, _) = post(
        "/api/v1/executor",
        &[("Content-Type", "application/json; charset=utf-8")],
        "{}".into(),
    )
    .await;
    assert_eq!(code, 415);
    let ct: &'static [(&'static str, &'static str)] = &[("Content-Type", "application/json")];
    let (code, body) = post("/api/v1/executor", ct, "{not json".into()).await;
    assert_eq!(code, 400, "{body}");
    assert!(
        body.starts_with("Failed to parse body into JSON: "),
        "{body}"
    );
    let (code, body) = post(
        "/api/v1/executor",
        ct,
        r#"{"type":"SUBSCRIBE","framework_id":{"value":"fw-1"},"subscribe":{}}"#.into(),
    )
    .await;
    assert_eq!(code, 400);
    assert!(body.contains("executor_id"), "{body}");
    let bad_uuid = r#"{"type":"UPDATE","framework_id":{"value":"fw-1"},"executor_id":{"value":"exec-1"},
        "update":{"status":{"task_id":{"value":"t1"},"state":"TASK_RUNNING","source":"SOURCE_EXECUTOR",
        "uuid":"MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWYwMTIz"}}}"#;
    let (code, body) = post("/api/v1/executor", ct, bad_uuid.into()).await;
    assert_eq!(
        (code, body.as_str()),
        (400, "Failed to validate Executor::Call: Not a valid UUID")
    );
    let uuid = base64_of(&helpers::new_uuid());
    let update = format!(
        r#"{{"type":"UPDATE","framework_id":{{"value":"fw-1"}},"executor_id":{{"value":"exec-1"}},
        "update":{{"status":{{"task_id":{{"value":"t1"}},"state":"TASK_RUNNING","source":"SOURCE_EXECUTOR","uuid":"{uuid}"}}}}}}"#
    );
    // The RunTask was queued before: the executor exists but has not subscribed.
    let (code, body) = post("/slave(1)/api/v1/executor", ct, update.clone()).await;
    assert_eq!((code, body.as_str()), (403, "Executor is not subscribed"));
    let (code, body) = post("/api/v1/executor", ct, update.replace("exec-1", "exec-404")).await;
    assert_eq!((code, body.as_str()), (400, "Executor cannot be found"));
    let (code, body) = post("/api/v1/executor", ct, update.replace("fw-1", "fw-404")).await;
    assert_eq!((code, body.as_str()), (400, "Framework cannot be found"));
    let (code, _) = post(
        "/api/v1/executor",
        ct,
        r#"{"type":"HEARTBEAT","framework_id":{"value":"unused"},"executor_id":{"value":"unused"}}"#
            .into(),
    )
    .await;
    assert_eq!(code, 202);
    let (code, _) = post(
        "/api/v1/executor",
        &[("Content-Type", "application/json"), ("Accept", "text/html")],
        r#"{"type":"SUBSCRIBE","framework_id":{"value":"fw-1"},"executor_id":{"value":"exec-1"},"subscribe":{}}"#
            .into(),
    )
    .await;
    assert_eq!(code, 406);
}

fn base64_of(b: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uris_are_fetched_and_a_failed_fetch_fails_the_launch() {
    let mut agent = start_agent("fetch", |_| {}).await;
    let payload = agent.work_dir.join("payload.sh");
    std::fs::write(&payload, "echo fetched\n").unwrap();
    // Served by the agent's own /files/download, fetched with curl.
    let url = format!(
        "http://{}/files/download?path={}",
        agent.handle.endpoint(),
        payload.display()
    );
    let mut exec = custom("exec-1", "./run.sh > fetched.txt; sleep 30");
    exec.command.as_mut().unwrap().uris = vec![mesokit_proto::v1::command_info::Uri {
        value: url,
        executable: Some(true),
        output_file: Some("run.sh".into()),
        ..Default::default()
    }];
    agent.handle.send(run(Some(exec), task("t1")));
    assert_eq!(
        wait_for_file(&agent.sandbox("exec-1").join("fetched.txt")).await,
        "fetched\n"
    );

    let mut exec = custom("exec-2", "sleep 30");
    exec.command.as_mut().unwrap().uris = vec![mesokit_proto::v1::command_info::Uri {
        value: "file:///nonexistent/mesokit-file".into(),
        ..Default::default()
    }];
    agent.handle.send(run(Some(exec), task("t2")));
    let (s, _) = agent.next_update().await;
    assert_eq!(s.task_id.value, "t2");
    assert_eq!(s.state, TaskState::TaskFailed as i32);
    assert_eq!(
        s.reason,
        Some(task_status::Reason::ContainerLaunchFailed as i32)
    );
    assert!(
        s.message.as_deref().unwrap().contains("Failed to fetch"),
        "{s:?}"
    );
    match agent.next().await {
        ToMaster::ExecutorExited {
            executor_id,
            status,
            ..
        } => assert_eq!((executor_id.value.as_str(), status), ("exec-2", -1)),
        other => panic!("{other:?}"),
    }
}

/// Reads from `s` until `buf` holds a complete first RecordIO record after the headers.
async fn first_record(s: &mut tokio::net::TcpStream) -> (String, Vec<u8>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = tokio::time::timeout(WAIT, s.read(&mut chunk))
            .await
            .expect("stream timed out")
            .unwrap();
        assert!(n > 0, "stream closed early");
        buf.extend_from_slice(&chunk[..n]);
        let Some(split) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let body = dechunk(&buf[split + 4..]);
        if let Ok(records) = mesokit_proto::recordio::decode_all(&body, 1 << 20)
            && let Some(r) = records.first()
        {
            let head = String::from_utf8_lossy(&buf[..split]).into_owned();
            return (head, r.to_vec());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribe_negotiates_protobuf_and_a_new_subscription_closes_the_old_stream() {
    let agent = start_agent("proto", |_| {}).await;
    agent
        .handle
        .send(run(Some(custom("exec-1", RECORD_AND_WAIT)), task("t1")));
    wait_for_file(&agent.sandbox("exec-1").join("env.txt")).await;

    let body = r#"{"type":"SUBSCRIBE","framework_id":{"value":"fw-1"},"executor_id":{"value":"exec-1"},"subscribe":{}}"#;
    let mut s = tokio::net::TcpStream::connect(agent.handle.endpoint())
        .await
        .unwrap();
    let req = format!(
        "POST /slave(1)/api/v1/executor HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nAccept: application/x-protobuf\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let (head, record) = first_record(&mut s).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/x-protobuf"),
        "{head}"
    );
    let ev = <mesokit_proto::v1::executor::Event as mesokit_proto::Message>::decode(&record[..])
        .unwrap();
    assert_eq!(ev.r#type, Some(event::Type::Subscribed as i32));

    // A second SUBSCRIBE (JSON, via the client) ends the first stream.
    let (_client, mut events) = subscribe(&agent, "exec-1").await;
    assert!(matches!(
        next_event(&mut events).await,
        ExecutorEvent::Connected { .. }
    ));
    // The old response ends (last chunk); the connection itself may stay open.
    let mut rest = Vec::new();
    let mut chunk = [0u8; 4096];
    while !rest.ends_with(b"0\r\n\r\n") {
        let n = tokio::time::timeout(WAIT, s.read(&mut chunk))
            .await
            .expect("the old stream must end")
            .unwrap();
        if n == 0 {
            break;
        }
        rest.extend_from_slice(&chunk[..n]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribed_executors_get_heartbeats_and_files_read_pages() {
    let agent = start_agent("heartbeat", |c| {
        c.executor_heartbeat_interval = Duration::from_millis(50);
    })
    .await;
    agent
        .handle
        .send(run(Some(custom("exec-1", RECORD_AND_WAIT)), task("t1")));
    let (_client, mut events) = subscribe(&agent, "exec-1").await;
    assert!(matches!(
        next_event(&mut events).await,
        ExecutorEvent::Connected { .. }
    ));
    expect_event(&mut events, event::Type::Launch).await;
    expect_event(&mut events, event::Type::Heartbeat).await;
    expect_event(&mut events, event::Type::Heartbeat).await;

    let stdout = "/frameworks/fw-1/executors/exec-1/runs/latest/stdout";
    let (code, body) = agent
        .get(&format!("/files/read?path={stdout}&offset=1&length=3"))
        .await;
    assert_eq!((code, body.as_str()), (200, r#"{"data":"tar","offset":1}"#));
    let (code, body) = agent
        .get(&format!("/files/read?path={stdout}&offset=100"))
        .await;
    assert_eq!((code, body.as_str()), (200, r#"{"data":"","offset":100}"#));
    let (code, body) = agent
        .get(&format!("/files/read?path={stdout}&offset=-2"))
        .await;
    assert_eq!(
        (code, body.as_str()),
        (400, "Negative offset provided: -2.\n")
    );
    let (code, _) = agent
        .get("/files/read?path=/frameworks/fw-1/executors/exec-1/runs/latest")
        .await;
    assert_eq!(code, 400, "a directory");
    let (code, body) = agent
        .get("/files/browse?path=/frameworks/fw-1/executors/exec-1/runs/latest")
        .await;
    assert_eq!(code, 200);
    assert!(body.contains("/stdout\""), "{body}");
    let (code, _, bytes) = request(
        agent.handle.endpoint(),
        "GET",
        &format!("/slave(1)/files/download?path={stdout}"),
        &[],
        b"",
    )
    .await;
    assert_eq!((code, &bytes[..]), (200, &b"started\n"[..]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_executor_sends_shutdown_then_kills_after_the_grace_period() {
    let mut agent = start_agent("shutdown", |c| {
        c.executor_shutdown_grace = Duration::from_millis(200);
    })
    .await;
    agent.handle.send(run(
        Some(custom("exec-1", "env > env.txt; sleep 30")),
        task("t1"),
    ));
    let (client, mut events) = subscribe(&agent, "exec-1").await;
    assert!(matches!(
        next_event(&mut events).await,
        ExecutorEvent::Connected { .. }
    ));
    expect_event(&mut events, event::Type::Launch).await;
    client
        .update(status("t1", TaskState::TaskRunning))
        .await
        .unwrap();
    let (running, _) = agent.next_update().await;

    agent.handle.send(ToAgent::ShutdownExecutor {
        framework_id: fid(),
        executor_id: mesokit_proto::v1::ExecutorId {
            value: "exec-1".into(),
        },
    });
    // The ACKNOWLEDGED of RUNNING may come first.
    loop {
        match next_event(&mut events).await {
            ExecutorEvent::Event(e) if e.r#type == Some(event::Type::Shutdown as i32) => break,
            ExecutorEvent::Event(e) if e.r#type == Some(event::Type::Acknowledged as i32) => {}
            other => panic!("{other:?}"),
        }
    }
    // The executor ignores it; after the grace period its group is killed.
    agent.handle.send(ToAgent::Acknowledge {
        framework_id: fid(),
        task_id: TaskId { value: "t1".into() },
        uuid: running.uuid.clone().unwrap(),
    });
    let (s, latest) = agent.next_update().await;
    assert_eq!(s.state, TaskState::TaskFailed as i32);
    assert_eq!(latest, TaskState::TaskFailed);
    assert_eq!(
        s.reason,
        Some(task_status::Reason::ExecutorTerminated as i32)
    );
    match agent.next().await {
        ToMaster::ExecutorExited { status, .. } => assert_eq!(status & 0x7f, 9),
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn framework_update_resends_at_once_and_resubscription_replays_unacknowledged_updates() {
    let mut agent = start_agent("resend", |_| {}).await;
    agent
        .handle
        .send(run(Some(custom("exec-1", RECORD_AND_WAIT)), task("t1")));
    let (client, mut events) = subscribe(&agent, "exec-1").await;
    assert!(matches!(
        next_event(&mut events).await,
        ExecutorEvent::Connected { .. }
    ));
    expect_event(&mut events, event::Type::Launch).await;
    let d = client
        .update(status("t1", TaskState::TaskRunning))
        .await
        .unwrap();
    let (first, _) = agent.next_update().await;
    // The retry timer is 10 s; a framework update resends now.
    agent.handle.send(ToAgent::UpdateFramework {
        framework: framework(false),
    });
    let (again, _) = agent.next_update().await;
    assert_eq!(first, again);
    assert_eq!(again.uuid.as_ref(), Some(d.uuid()));
    drop(events);

    // A re-SUBSCRIBE carrying an update already received (duplicate: re-acked, not re-sent)
    // and a new one (recorded and queued behind the first).
    let dup = first.clone();
    let mut fresh = status("t1", TaskState::TaskFinished);
    fresh.source = Some(task_status::Source::Executor as i32);
    fresh.uuid = Some(helpers::new_uuid());
    let call = mesokit_proto::v1::executor::Call {
        executor_id: mesokit_proto::v1::ExecutorId {
            value: "exec-1".into(),
        },
        framework_id: fid(),
        r#type: Some(mesokit_proto::v1::executor::call::Type::Subscribe as i32),
        subscribe: Some(mesokit_proto::v1::executor::call::Subscribe {
            unacknowledged_tasks: vec![],
            unacknowledged_updates: vec![
                mesokit_proto::v1::executor::call::Update { status: dup },
                mesokit_proto::v1::executor::call::Update {
                    status: fresh.clone(),
                },
            ],
        }),
        ..Default::default()
    };
    let body = mesokit_proto::json::encode(&call);
    let mut s = tokio::net::TcpStream::connect(agent.handle.endpoint())
        .await
        .unwrap();
    let req = format!(
        "POST /api/v1/executor HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    s.write_all(&body).await.unwrap();
    // SUBSCRIBED, then two ACKNOWLEDGED.
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let acks = loop {
        let n = tokio::time::timeout(WAIT, s.read(&mut chunk))
            .await
            .expect("stream timed out")
            .unwrap();
        assert!(n > 0);
        buf.extend_from_slice(&chunk[..n]);
        let Some(split) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let records =
            mesokit_proto::recordio::decode_all(&dechunk(&buf[split + 4..]), 1 << 20).unwrap();
        if records.len() >= 3 {
            break records;
        }
    };
    let ev: mesokit_proto::v1::executor::Event = mesokit_proto::json::decode(&acks[0]).unwrap();
    assert_eq!(ev.r#type, Some(event::Type::Subscribed as i32));
    for r in &acks[1..3] {
        let ev: mesokit_proto::v1::executor::Event = mesokit_proto::json::decode(r).unwrap();
        assert_eq!(ev.r#type, Some(event::Type::Acknowledged as i32));
    }
    // No duplicate is forwarded; the FINISHED waits for the ack of RUNNING, then goes out.
    assert!(
        tokio::time::timeout(Duration::from_millis(200), agent.rx.recv())
            .await
            .is_err()
    );
    agent.handle.send(ToAgent::Acknowledge {
        framework_id: fid(),
        task_id: TaskId { value: "t1".into() },
        uuid: d.uuid().clone(),
    });
    let (s2, _) = agent.next_update().await;
    assert_eq!(s2.uuid, fresh.uuid);
    assert_eq!(s2.state, TaskState::TaskFinished as i32);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_kills_the_executors_process_groups() {
    let agent = start_agent("stop", |_| {}).await;
    // The shell forks a child that leaves the group (its own session): the whole tree dies.
    agent.handle.send(run(
        Some(custom(
            "exec-1",
            "setsid sleep 30 & echo $! > child.txt; echo $$ > pid.txt; wait",
        )),
        task("t1"),
    ));
    let sandbox = agent.sandbox("exec-1");
    let pid: i32 = wait_for_file(&sandbox.join("pid.txt"))
        .await
        .trim()
        .parse()
        .unwrap();
    let child: i32 = wait_for_file(&sandbox.join("child.txt"))
        .await
        .trim()
        .parse()
        .unwrap();
    let alive = |pid: i32| {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
            !s.rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
    };
    assert!(alive(pid) && alive(child));
    agent.handle.shutdown().await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while alive(pid) || alive(child) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "executor survived shutdown"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The agent no longer serves.
    assert!(
        tokio::net::TcpStream::connect(agent.handle.endpoint())
            .await
            .is_err()
            || agent.handle.state_json().await.is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_v1_operator_api_answers_the_read_calls() {
    let mut agent = start_agent("operator", |_| {}).await;
    agent
        .handle
        .send(run(Some(custom("exec-1", RECORD_AND_WAIT)), task("t1")));
    let (client, mut events) = subscribe(&agent, "exec-1").await;
    assert!(matches!(
        next_event(&mut events).await,
        ExecutorEvent::Connected { .. }
    ));
    expect_event(&mut events, event::Type::Launch).await;
    client
        .update(status("t1", TaskState::TaskRunning))
        .await
        .unwrap();
    agent.next_update().await;

    let addr = agent.handle.endpoint();
    let call = |body: &'static str, accept: &'static str| async move {
        let (code, head, body) = request(
            addr,
            "POST",
            "/slave(1)/api/v1",
            &[("Content-Type", "application/json"), ("Accept", accept)],
            body.as_bytes(),
        )
        .await;
        (code, head, body)
    };
    let (code, _, body) = call(r#"{"type":"GET_HEALTH"}"#, "application/json").await;
    assert_eq!(
        (code, String::from_utf8_lossy(&body).as_ref()),
        (
            200,
            r#"{"type":"GET_HEALTH","get_health":{"healthy":true}}"#
        )
    );
    let (code, _, body) = call(r#"{"type":"GET_TASKS"}"#, "application/json").await;
    assert_eq!(code, 200);
    let r: mesokit_proto::v1::agent::Response = mesokit_proto::json::decode(&body).unwrap();
    let tasks = r.get_tasks.unwrap();
    assert_eq!(tasks.launched_tasks.len(), 1);
    assert_eq!(tasks.launched_tasks[0].state, TaskState::TaskRunning as i32);
    assert_eq!(
        tasks.launched_tasks[0].executor_id.as_ref().unwrap().value,
        "exec-1"
    );
    let (code, head, body) = call(r#"{"type":"GET_STATE"}"#, "application/x-protobuf").await;
    assert_eq!(code, 200);
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/x-protobuf"),
        "{head}"
    );
    let r =
        <mesokit_proto::v1::agent::Response as mesokit_proto::Message>::decode(&body[..]).unwrap();
    let state = r.get_state.unwrap();
    assert_eq!(state.get_frameworks.unwrap().frameworks.len(), 1);
    assert_eq!(state.get_executors.unwrap().executors.len(), 1);
    let (code, _, body) = call(
        r#"{"type":"READ_FILE","read_file":{"path":"/frameworks/fw-1/executors/exec-1/runs/latest/stdout","offset":0}}"#,
        "application/json",
    )
    .await;
    assert_eq!(code, 200);
    let r: mesokit_proto::v1::agent::Response = mesokit_proto::json::decode(&body).unwrap();
    let rf = r.read_file.unwrap();
    assert_eq!((rf.size, &rf.data[..]), (8, &b"started\n"[..]));
    let (code, _, body) = call(
        r#"{"type":"LIST_FILES","list_files":{"path":"/frameworks/fw-1/executors/exec-1/runs/latest"}}"#,
        "application/json",
    )
    .await;
    assert_eq!(code, 200);
    assert!(String::from_utf8_lossy(&body).contains("/stdout\""));
    let (code, _, _) = call(
        r#"{"type":"READ_FILE","read_file":{"path":"/etc/passwd","offset":0}}"#,
        "application/json",
    )
    .await;
    assert_eq!(code, 404);
    let (code, _, _) = call(r#"{"type":"GET_CONTAINERS"}"#, "application/json").await;
    assert_eq!(code, 200);
    let (code, _, _) = call(r#"{"type":"KILL_CONTAINER"}"#, "application/json").await;
    assert_eq!(code, 501);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_an_exited_executor_leaves_in_its_group_is_killed() {
    let mut agent = start_agent("leftovers", |_| {}).await;
    agent.handle.send(run(
        Some(custom(
            "exec-1",
            "sleep 30 & echo $! > child.txt; sleep 0.2; exit 0",
        )),
        task("t1"),
    ));
    let child: i32 = wait_for_file(&agent.sandbox("exec-1").join("child.txt"))
        .await
        .trim()
        .parse()
        .unwrap();
    // The queued task fails, then the exit is reported.
    let (s, _) = agent.next_update().await;
    assert_eq!(
        s.reason,
        Some(task_status::Reason::ExecutorTerminated as i32)
    );
    assert!(matches!(
        agent.next().await,
        ToMaster::ExecutorExited { .. }
    ));
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let alive = std::fs::read_to_string(format!("/proc/{child}/stat")).is_ok_and(|s| {
            !s.rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        });
        if !alive {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "leftover survived");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
