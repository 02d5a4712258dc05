//! Hooks end to end: [`mesokit_executor::run`] against the fake agent with real task
//! processes, real hook scripts, and a small HTTP server speaking Consul's agent API.

mod support;

use std::convert::Infallible;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use mesokit_client::executor::ExecutorConfig;
use mesokit_executor::{Error, Settings, launch, run};
use mesokit_proto::helpers::{TaskBuilder, shell};
use mesokit_proto::v1::{HealthCheck, TaskInfo, health_check};
use support::fake_agent::{self, FakeAgent, state, within};
use tokio::net::TcpListener;

fn sandbox(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "mesokit-executor-hooks-{}-{name}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn script(dir: &Path, name: &str, body: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path.display().to_string()
}

async fn start(
    task: TaskInfo,
    dir: &Path,
    tune: impl FnOnce(&mut Settings),
) -> (FakeAgent, tokio::task::JoinHandle<Result<(), Error>>) {
    let id = task.task_id.value.clone();
    let agent = FakeAgent::start(fake_agent::subscribed("fw", &id, &[])).await;
    agent.queue(fake_agent::launch(task));
    let config = ExecutorConfig::new(
        "fw",
        &id,
        format!("http://{}/api/v1/executor", agent.endpoint()),
    );
    let mut settings = Settings::default();
    settings.executor_env = launch::process_env();
    settings.sandbox = Some(dir.to_owned());
    tune(&mut settings);
    (agent, tokio::spawn(run(config, settings)))
}

#[tokio::test]
async fn a_before_task_start_command_hook_adds_env_to_the_task() {
    let dir = sandbox("env");
    let hook = script(
        &dir,
        "env-hook",
        r#"echo '{"variables":[{"name":"FROM_HOOK","value":"hello"}]}' > "$2""#,
    );
    let task = TaskBuilder::new("h", "h1", "S0")
        .shell("echo $FROM_HOOK > out")
        .label("hooks", &format!("command:{hook}"))
        .build();
    let (mut agent, executor) = start(task, &dir, |_| {}).await;
    let states: Vec<_> = agent
        .updates_until_terminal()
        .await
        .iter()
        .map(state)
        .collect();
    assert_eq!(states, ["TASK_STARTING", "TASK_RUNNING", "TASK_FINISHED"]);
    within("run to return", executor).await.unwrap().unwrap();
    assert_eq!(std::fs::read_to_string(dir.join("out")).unwrap(), "hello\n");
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn hooks_that_hang_or_print_garbage_fail_the_launch_and_leave_nothing_running() {
    let dir = sandbox("bad");
    let hang = script(&dir, "hang", "echo $$ > \"$0.pid\"; exec sleep 30");
    let task = TaskBuilder::new("h", "h2", "S0")
        .shell("touch main-ran")
        .label("hooks", &format!("command:{hang}"))
        .build();
    let (mut agent, executor) = start(task, &dir, |s| {
        s.hook_timeout = Duration::from_millis(300);
    })
    .await;
    let updates = agent.updates_until_terminal().await;
    let last = updates.last().unwrap();
    assert_eq!(updates.len(), 2, "STARTING, then one terminal update");
    assert_eq!(state(last), "TASK_FAILED");
    let message = last.message.as_deref().unwrap();
    assert!(
        message.starts_with(&format!(
            "hook `command:{hang}` failed at before_task_start:"
        )) && message.contains("took too long"),
        "{message}"
    );
    within("run to return", executor).await.unwrap().unwrap();
    assert!(!dir.join("main-ran").exists());
    let pid = std::fs::read_to_string(format!("{hang}.pid")).unwrap();
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", pid.trim())).unwrap_or_default();
    assert!(!cmdline.starts_with(b"sleep"), "the hung hook is gone");

    let garbage = script(&dir, "garbage", r#"echo 'not json' > "$2""#);
    let task = TaskBuilder::new("h", "h3", "S0")
        .shell("touch main-ran")
        .label("hooks", &format!("command:{garbage}"))
        .build();
    let (mut agent, executor) = start(task, &dir, |_| {}).await;
    let last = agent.updates_until_terminal().await.pop().unwrap();
    assert_eq!(state(&last), "TASK_FAILED");
    assert!(
        last.message
            .as_deref()
            .unwrap()
            .contains("the output is not a Mesos Environment in JSON"),
        "{last:?}"
    );
    within("run to return", executor).await.unwrap().unwrap();
    assert!(!dir.join("main-ran").exists());
    let _ = std::fs::remove_dir_all(dir);
}

/// A Consul agent API: records `(method, path, the task's SIGTERM had arrived)`.
async fn consul(dir: PathBuf) -> (String, Arc<Mutex<Vec<(String, String, bool)>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (log, dir) = (log.clone(), dir.clone());
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let (log, dir) = (log.clone(), dir.clone());
                        async move {
                            log.lock().unwrap().push((
                                req.method().to_string(),
                                req.uri().path().to_owned(),
                                dir.join("got-term").exists(),
                            ));
                            Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::new())))
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, seen)
}

#[tokio::test]
async fn consul_registration_when_healthy_and_deregistration_before_the_sigterm() {
    let dir = sandbox("consul");
    let (addr, seen) = consul(dir.clone()).await;
    let mut task = TaskBuilder::new("web", "web.7", "S0")
        .shell("trap 'touch got-term; exit 0' TERM; while true; do sleep 0.05; done")
        .ports(&[31999])
        .label("consul", "web")
        .label("hooks", "consul")
        .build();
    task.health_check = Some(Box::new(HealthCheck {
        r#type: Some(health_check::Type::Command as i32),
        command: Some(shell("true")),
        delay_seconds: Some(0.0),
        interval_seconds: Some(0.1),
        ..Default::default()
    }));
    let (mut agent, executor) = start(task, &dir, |s| {
        s.executor_env
            .push(("CONSUL_HTTP_ADDR".into(), addr.clone()));
    })
    .await;
    let mut states = Vec::new();
    while states.len() < 3 {
        let u = agent.next_update().await;
        states.push((state(&u), u.healthy));
    }
    assert_eq!(
        states,
        [
            ("TASK_STARTING", None),
            ("TASK_RUNNING", None),
            ("TASK_RUNNING", Some(true))
        ]
    );
    within("the registration", async {
        while seen.lock().unwrap().is_empty() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    agent.send(fake_agent::kill("web.7", Some(Duration::from_secs(5))));
    let last = agent.updates_until_terminal().await.pop().unwrap();
    assert_eq!(state(&last), "TASK_FINISHED", "the trap exited 0: {last:?}");
    within("run to return", executor).await.unwrap().unwrap();
    assert!(dir.join("got-term").exists(), "the SIGTERM came after all");
    assert_eq!(
        *seen.lock().unwrap(),
        [
            (
                "PUT".to_owned(),
                "/v1/agent/service/register".to_owned(),
                false
            ),
            (
                "PUT".to_owned(),
                "/v1/agent/service/deregister/web.7_web_31999".to_owned(),
                false
            ),
        ],
        "deregistered before the task saw its SIGTERM"
    );
    let _ = std::fs::remove_dir_all(dir);
}
