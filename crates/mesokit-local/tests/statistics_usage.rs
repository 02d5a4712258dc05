//! `/monitor/statistics` with a command isolator's `usage` while a container is still being
//! launched. The agent lists an executor as soon as it decides to launch it; its isolators
//! learn the container only in `prepare`, after the sandbox, the post-fetch hooks and the
//! environment decorators. A statistics request in between has that container without its
//! usage answer (as Mesos does when an isolator's usage fails), and the agent says so in its
//! log, naming the container. This is what the 100-container statistics benchmark ran into
//! when it measured right after the executors were listed (issue 6). Here a post-fetch hook
//! that waits for a file holds the launch at that point, so the window is open for as long
//! as the test needs.

use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use mesokit_hooks::agent::CommandModules;
use mesokit_hooks::modules;
use mesokit_hooks::runner::Runner;
use mesokit_local::agent::{self, AgentConfig, AgentHandle};
use mesokit_local::messages::ToAgent;
use mesokit_proto::helpers;
use mesokit_proto::v1::{AgentId, FrameworkId, FrameworkInfo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The WARN and ERROR events of this test binary, one line each: level, then every field.
fn log() -> &'static Mutex<Vec<String>> {
    static LOG: OnceLock<Mutex<Vec<String>>> = OnceLock::new();
    LOG.get_or_init(|| Mutex::new(Vec::new()))
}

/// A tracing subscriber that keeps WARN and ERROR events in [`log`].
struct Capture;

struct Fields(String);

impl tracing::field::Visit for Fields {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        let _ = write!(self.0, " {}={value:?}", field.name());
    }
}

impl tracing::Subscriber for Capture {
    fn enabled(&self, metadata: &tracing::Metadata<'_>) -> bool {
        *metadata.level() <= tracing::Level::WARN
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        let mut fields = Fields(event.metadata().level().to_string());
        event.record(&mut fields);
        log().lock().unwrap().push(fields.0);
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

struct Agent {
    handle: AgentHandle,
    work_dir: PathBuf,
    _rx: tokio::sync::mpsc::UnboundedReceiver<mesokit_local::messages::ToMaster>,
}

impl Drop for Agent {
    fn drop(&mut self) {
        // Let a launch still held by the hook go on, then stop every executor.
        let _ = std::fs::write(self.work_dir.join("gate"), "");
        self.handle.kill_executors_now();
        let _ = std::fs::remove_dir_all(&self.work_dir);
    }
}

fn script(path: &Path, body: &str) -> String {
    std::fs::write(path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path.display().to_string()
}

async fn get(addr: std::net::SocketAddr, path: &str) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.0\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.unwrap();
    String::from_utf8_lossy(&buf).into_owned()
}

/// Polls until `done` holds (checked every 50 ms); panics after a minute with `what`.
async fn wait_for(what: &str, mut done: impl AsyncFnMut() -> bool) {
    for _ in 0..1200 {
        if done().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("gave up waiting: {what}");
}

/// The value of `"key":"…"` in `body`, the first one.
fn string_field<'a>(body: &'a str, key: &str) -> Option<&'a str> {
    let start = body.find(&format!("\"{key}\":\""))? + key.len() + 4;
    let len = body[start..].find('"')?;
    Some(&body[start..start + len])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_listed_before_its_isolators_prepared_it_has_no_usage_and_is_logged() {
    tracing::subscriber::set_global_default(Capture).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let work_dir = std::env::temp_dir().join(format!("mesokit-stats-usage-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work_dir);
    std::fs::create_dir_all(work_dir.join("tmp")).unwrap();
    let held = work_dir.join("held");
    let gate = work_dir.join("gate");
    let hook = script(
        &work_dir.join("post_fetch.sh"),
        &format!(
            "touch '{}'\nwhile [ ! -e '{}' ]; do sleep 0.05; done",
            held.display(),
            gate.display()
        ),
    );
    let usage = script(
        &work_dir.join("usage.sh"),
        r#"echo '{"timestamp":1,"net_rx_bytes":1000}' > "$2""#,
    );
    let json = format!(
        r#"{{"libraries":[{{"file":"x.so","modules":[
        {{"name":"com_criteo_mesos_CommandHook","parameters":[
            {{"key":"module_name","value":"hold"}},
            {{"key":"hook_slave_post_fetch_hook_command","value":"{hook}"}},
            {{"key":"hook_slave_post_fetch_hook_timeout","value":"120"}}]}},
        {{"name":"com_criteo_mesos_CommandIsolator","parameters":[
            {{"key":"module_name","value":"stats"}},
            {{"key":"isolator_usage_command","value":"{usage}"}}]}}]}}]}}"#
    );
    let cfg = modules::parse_json(&json, "test").unwrap();
    let mut config = AgentConfig::new(
        AgentId { value: "S0".into() },
        "localhost",
        Ipv4Addr::LOCALHOST,
        port,
        &work_dir,
        vec!["/bin/false".into()],
    );
    config.executor_registration_timeout = Duration::from_secs(3600);
    config.modules = Some(Arc::new(CommandModules::new(
        &cfg,
        Runner::new(work_dir.join("tmp")),
        &work_dir.join("state"),
    )));
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let agent = Agent {
        handle: agent::start(config, listener, tx),
        work_dir: work_dir.clone(),
        _rx: rx,
    };
    let addr = agent.handle.endpoint();
    let framework = FrameworkInfo {
        user: "root".into(),
        name: "test".into(),
        id: Some(FrameworkId { value: "fw".into() }),
        ..Default::default()
    };
    let mut e = helpers::custom_executor("e0", helpers::shell("exec sleep 1000"));
    e.framework_id = framework.id.clone();
    let task = helpers::TaskBuilder::new("t0", "t", "S0")
        .cpus(0.01)
        .mem(1.0)
        .build();
    agent.handle.send(ToAgent::RunTask {
        framework,
        executor: Some(e),
        task,
    });

    // The launch waits in the post-fetch hook: the isolators have not prepared the container.
    wait_for("the post-fetch hook to start", async || held.exists()).await;
    let containers = get(addr, "/containers").await;
    let cid = string_field(&containers, "container_id")
        .unwrap_or_else(|| panic!("no container listed: {containers}"))
        .to_owned();
    let body = get(addr, "/monitor/statistics").await;
    assert!(body.contains("\"executor_id\":\"e0\""), "{body}");
    assert!(
        !body.contains("net_rx_bytes"),
        "usage ran before prepare: {body}"
    );
    let warned = |log: &[String]| {
        log.iter().any(|l| {
            l.starts_with("WARN")
                && l.contains(&format!("container_id={cid}"))
                && l.contains("usage skipped")
        })
    };
    assert!(
        warned(&log().lock().unwrap()),
        "no warning naming container {cid}: {:?}",
        log().lock().unwrap()
    );

    // Once the launch goes on, prepare records the container and usage answers for it.
    std::fs::write(&gate, "").unwrap();
    wait_for("the usage answer in /monitor/statistics", async || {
        get(addr, "/monitor/statistics")
            .await
            .contains("\"net_rx_bytes\":1000")
    })
    .await;
    let body = get(addr, "/monitor/statistics").await;
    assert_eq!(body.matches("\"net_rx_bytes\":1000").count(), 1, "{body}");
    drop(agent);
}
