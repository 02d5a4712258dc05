//! `/monitor/statistics` latency with 100 containers, each with a command isolator's usage
//! script, next to the same agent setup without modules, in the same run. A measurement, not
//! a test (no assertion on time):
//!
//! ```text
//! cargo test --release -p mesokit-local --test modules_bench -- --ignored --nocapture
//! ```
//!
//! `STATS_BENCH_TMP` puts the runner's temp files elsewhere (e.g. `/dev/shm`).

use std::net::Ipv4Addr;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mesokit_hooks::agent::CommandModules;
use mesokit_hooks::modules;
use mesokit_hooks::runner::Runner;
use mesokit_local::agent::{self, AgentConfig, AgentHandle};
use mesokit_local::messages::ToAgent;
use mesokit_proto::helpers;
use mesokit_proto::v1::{AgentId, FrameworkId, FrameworkInfo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const CONTAINERS: usize = 100;
const REQUESTS: usize = 30;

struct Agent {
    handle: AgentHandle,
    work_dir: PathBuf,
    _rx: tokio::sync::mpsc::UnboundedReceiver<mesokit_local::messages::ToMaster>,
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.handle.kill_executors_now();
        let _ = std::fs::remove_dir_all(&self.work_dir);
    }
}

async fn start(name: &str, with_usage: bool) -> Agent {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let work_dir =
        std::env::temp_dir().join(format!("mesokit-stats-bench-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work_dir);
    std::fs::create_dir_all(work_dir.join("tmp")).unwrap();
    let mut config = AgentConfig::new(
        AgentId { value: "S0".into() },
        "localhost",
        Ipv4Addr::LOCALHOST,
        port,
        &work_dir,
        vec!["/bin/false".into()],
    );
    config.executor_registration_timeout = Duration::from_secs(3600);
    if with_usage {
        let usage = work_dir.join("usage.sh");
        std::fs::write(
            &usage,
            "#!/bin/sh\necho '{\"timestamp\":1,\"net_rx_bytes\":1000,\"disk_used_bytes\":4096}' > \"$2\"\n",
        )
        .unwrap();
        std::fs::set_permissions(&usage, std::fs::Permissions::from_mode(0o755)).unwrap();
        let json = format!(
            r#"{{"libraries":[{{"file":"x.so","modules":[{{"name":"com_criteo_mesos_CommandIsolator","parameters":[
            {{"key":"module_name","value":"bench"}},{{"key":"isolator_usage_command","value":"{}"}}]}}]}}]}}"#,
            usage.display()
        );
        let cfg = modules::parse_json(&json, "bench").unwrap();
        let tmp = std::env::var_os("STATS_BENCH_TMP")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| work_dir.join("tmp"));
        config.modules = Some(Arc::new(CommandModules::new(
            &cfg,
            Runner::new(tmp),
            &work_dir.join("state"),
        )));
    }
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let handle = agent::start(config, listener, tx);
    let framework = FrameworkInfo {
        user: "root".into(),
        name: "bench".into(),
        id: Some(FrameworkId { value: "fw".into() }),
        ..Default::default()
    };
    for i in 0..CONTAINERS {
        let mut e = helpers::custom_executor(&format!("e{i}"), helpers::shell("exec sleep 1000"));
        e.framework_id = framework.id.clone();
        let task = helpers::TaskBuilder::new(&format!("t{i}"), "t", "S0")
            .cpus(0.01)
            .mem(1.0)
            .build();
        handle.send(ToAgent::RunTask {
            framework: framework.clone(),
            executor: Some(e),
            task,
        });
    }
    let agent = Agent {
        handle,
        work_dir,
        _rx: rx,
    };
    // Wait until every container is in the statistics and, with usage, until every one has
    // its usage answer: an executor is listed as soon as its launch is decided, but its
    // isolators know the container only once `prepare` ran, after its sandbox is made; until
    // then its entry has no usage answer (issue 6: measuring from the first listing made
    // some requests miss 14 to 100 answers under load).
    let ready = if with_usage {
        "\"net_rx_bytes\":1000"
    } else {
        "\"executor_id\""
    };
    let mut listed_without_usage = None;
    loop {
        let body = get(agent.handle.endpoint(), "/monitor/statistics").await;
        let listed = body.matches("\"executor_id\"").count();
        let answered = body.matches(ready).count();
        if listed == CONTAINERS && listed_without_usage.is_none() {
            listed_without_usage = Some(CONTAINERS - answered);
        }
        if answered == CONTAINERS {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if with_usage {
        println!(
            "when all {CONTAINERS} executors were first listed, {} had no usage answer yet",
            listed_without_usage.unwrap_or(0)
        );
    }
    agent
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

async fn measure(agent: &Agent, expect: &str) -> (Duration, Duration, Duration) {
    let mut lat = Vec::new();
    for _ in 0..REQUESTS {
        let t = Instant::now();
        let body = get(agent.handle.endpoint(), "/monitor/statistics").await;
        lat.push(t.elapsed());
        assert_eq!(body.matches(expect).count(), CONTAINERS, "{body}");
    }
    lat.sort();
    (lat[0], lat[lat.len() / 2], lat[lat.len() * 99 / 100])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run with --ignored --nocapture"]
async fn monitor_statistics_with_100_usage_commands() {
    let plain = start("plain", false).await;
    let (min, p50, p99) = measure(&plain, "\"executor_id\"").await;
    drop(plain);
    let with = start("usage", true).await;
    let (umin, up50, up99) = measure(&with, "\"net_rx_bytes\":1000").await;
    // Files in `tmp` and in the runner's private directory there (which lives as long as
    // the agent).
    let left = std::fs::read_dir(with.work_dir.join("tmp"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|p| std::fs::read_dir(&p).map_or(1, Iterator::count))
        .sum::<usize>();
    drop(with);
    println!("{CONTAINERS} containers, {REQUESTS} sequential GET /monitor/statistics each\n");
    println!("| agent | min | p50 | p99 |");
    println!("|---|---|---|---|");
    println!("| no modules | {min:.1?} | {p50:.1?} | {p99:.1?} |");
    println!("| one usage command per container | {umin:.1?} | {up50:.1?} | {up99:.1?} |");
    assert_eq!(left, 0, "temp files left");
}
