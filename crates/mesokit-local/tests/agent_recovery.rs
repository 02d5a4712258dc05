//! Agent restart in a running `LocalCluster`: checkpointed executors survive the agent's stop
//! and re-subscribe, the command isolator's watch loop and usage resume for the same container,
//! executors that do not come back are destroyed (isolator cleanup, tasks lost or failed as
//! Mesos does), executors of frameworks without checkpointing die with the agent (TASK_LOST at
//! once, their containers cleaned up as orphans at restart), a stopped agent is marked
//! unreachable after the agent lost timeout (agent-lost hook, once), and the task status
//! decorator sees the updates the agent makes up.
//!
//! The executor processes are real (a shell script that records its environment and its pid,
//! then waits); the test speaks the executor API for them with the executor client, from the
//! environment the agent gave the process, and the scheduler API with the scheduler client.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use mesokit_client::executor::{ExecutorClient, ExecutorConfig, ExecutorEvent, ExecutorEvents};
use mesokit_client::scheduler::{SchedulerClient, SchedulerConfig, SchedulerEvent};
use mesokit_local::cluster::{ClusterConfig, LocalCluster};
use mesokit_proto::helpers::TaskBuilder;
use mesokit_proto::v1::executor::event;
use mesokit_proto::v1::{
    FrameworkInfo, TaskId, TaskState, TaskStatus, framework_info, offer, task_status,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const WAIT: Duration = Duration::from_secs(20);

/// Scripts, what they saw, and the cluster's work dir; removed (and any process started from
/// it killed) on drop, also when the test fails.
struct Scratch {
    root: PathBuf,
}

impl Scratch {
    fn new(name: &str) -> Self {
        let root = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("agent-recovery-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("seen")).unwrap();
        Scratch { root }
    }

    fn path(&self, p: &str) -> PathBuf {
        self.root.join(p)
    }

    /// An executable `/bin/sh` script; `@` in `body` stands for the scratch directory.
    fn script(&self, name: &str, body: &str) -> String {
        let path = self.root.join(name);
        let body = body.replace('@', self.root.to_str().unwrap());
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path.to_str().unwrap().to_owned()
    }

    /// Lines a recording script appended to `seen/<name>.log`.
    fn lines(&self, name: &str) -> Vec<String> {
        std::fs::read_to_string(self.root.join("seen").join(format!("{name}.log")))
            .unwrap_or_default()
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect()
    }

    /// Waits until `seen/<name>.log` has a line containing `needle`; returns the lines.
    async fn wait_line(&self, name: &str, needle: &str) -> Vec<String> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let lines = self.lines(name);
            if lines.iter().any(|l| l.contains(needle)) {
                return lines;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no line with {needle:?} in seen/{name}.log: {lines:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let needle = self.root.to_str().unwrap().to_owned();
        for e in std::fs::read_dir("/proc").unwrap().flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
                continue;
            };
            let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
                continue;
            };
            if String::from_utf8_lossy(&cmd).contains(&needle) {
                let _ = std::process::Command::new("kill")
                    .args(["-9", &pid.to_string()])
                    .status();
            }
        }
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// The executor process: records its environment and pid under `seen/`, then waits (the
/// test speaks the executor API for it).
fn executor_script(s: &Scratch) -> String {
    s.script(
        "executor.sh",
        "env > @/seen/env-$MESOS_EXECUTOR_ID.part && mv @/seen/env-$MESOS_EXECUTOR_ID.part @/seen/env-$MESOS_EXECUTOR_ID\n\
         echo $$ > @/seen/pid-$MESOS_EXECUTOR_ID\n\
         while :; do sleep 0.1; done",
    )
}

/// Appends the input (one line of JSON) to `seen/<name>.log`; `answer` (if any) is the
/// output.
fn recorder(s: &Scratch, name: &str, answer: &str) -> String {
    let out = if answer.is_empty() {
        String::new()
    } else {
        format!("\necho '{answer}' > \"$2\"")
    };
    s.script(
        &format!("{name}.sh"),
        &format!("{{ cat \"$1\"; echo; }} >> @/seen/{name}.log{out}"),
    )
}

fn modules_json(hook: &[(&str, String)], isolator: &[(&str, String)]) -> String {
    let params = |ps: &[(&str, String)]| {
        ps.iter()
            .map(|(k, v)| format!(r#"{{"key":"{k}","value":"{v}"}}"#))
            .collect::<Vec<_>>()
            .join(",")
    };
    format!(
        r#"{{"libraries":[{{"file":"/usr/lib/libmesos_command_modules.so","modules":[
            {{"name":"com_criteo_mesos_CommandHook","parameters":[{}]}},
            {{"name":"com_criteo_mesos_CommandIsolator","parameters":[{}]}}]}}]}}"#,
        params(hook),
        params(isolator)
    )
}

fn config(s: &Scratch, modules: &str, command_executor: Vec<String>) -> ClusterConfig {
    let mut config = ClusterConfig::for_tests(command_executor);
    config.work_dir = Some(s.path("work"));
    let defined = mesokit_hooks::modules::parse(modules).expect("modules.json parses");
    config.modules = mesokit_hooks::modules::select(
        &defined,
        &["com_criteo_mesos_CommandHook"],
        &["com_criteo_mesos_CommandIsolator"],
    )
    .expect("selection");
    config
}

/// A scheduler session and the updates it has seen (acknowledged).
struct Scheduler {
    client: SchedulerClient,
    events: mesokit_client::scheduler::EventStream,
    updates: Vec<TaskStatus>,
}

impl Scheduler {
    /// Subscribes and launches `tasks` (command tasks) on the first offer.
    async fn launch(cluster: &LocalCluster, info: FrameworkInfo, tasks: &[&str]) -> Scheduler {
        let (client, mut events) =
            SchedulerClient::start(SchedulerConfig::new([cluster.master_url()], info))
                .expect("client");
        tokio::time::timeout(WAIT, async {
            loop {
                let SchedulerEvent::Event(ev) = events.next_event().await.expect("session") else {
                    continue;
                };
                let Some(offers) = &ev.offers else { continue };
                let o = &offers.offers[0];
                let task_infos = tasks
                    .iter()
                    .map(|id| {
                        TaskBuilder::new(id, id, &o.agent_id.value)
                            .cpus(0.1)
                            .mem(16.0)
                            .shell("true")
                            .build()
                    })
                    .collect();
                let op = offer::Operation {
                    r#type: Some(offer::operation::Type::Launch as i32),
                    launch: Some(offer::operation::Launch { task_infos }),
                    ..Default::default()
                };
                client
                    .accept(vec![o.id.clone()], vec![op], None)
                    .await
                    .expect("accept");
                return;
            }
        })
        .await
        .expect("an offer within the wait");
        Scheduler {
            client,
            events,
            updates: Vec::new(),
        }
    }

    /// Waits for an update of `task` in `state`, acknowledging every update on the way.
    async fn wait_update(&mut self, task: &str, state: TaskState) -> TaskStatus {
        if let Some(u) = self
            .updates
            .iter()
            .find(|u| u.task_id.value == task && u.state == state as i32)
        {
            return u.clone();
        }
        tokio::time::timeout(WAIT, async {
            loop {
                let SchedulerEvent::Event(ev) = self.events.next_event().await.expect("session")
                else {
                    continue;
                };
                let Some(u) = &ev.update else { continue };
                let _ = self.client.acknowledge(&u.status).await;
                self.updates.push(u.status.clone());
                if u.status.task_id.value == task && u.status.state == state as i32 {
                    return u.status.clone();
                }
            }
        })
        .await
        .unwrap_or_else(|_| {
            panic!(
                "no {state:?} for {task}; updates so far: {:?}",
                self.updates
                    .iter()
                    .map(|u| (u.task_id.value.clone(), u.state))
                    .collect::<Vec<_>>()
            )
        })
    }
}

fn checkpointing(partition_aware: bool) -> FrameworkInfo {
    let mut info = FrameworkInfo {
        user: "root".into(),
        name: "recovery".into(),
        checkpoint: Some(true),
        ..Default::default()
    };
    if partition_aware {
        info.capabilities.push(framework_info::Capability {
            r#type: Some(framework_info::capability::Type::PartitionAware as i32),
        });
    }
    info
}

/// Plays the executor of `eid` (from the environment its process recorded) up to TASK_RUNNING.
async fn run_executor(s: &Scratch, eid: &str) -> (ExecutorClient, ExecutorEvents, String) {
    let env_file = s.path(&format!("seen/env-{eid}"));
    let deadline = tokio::time::Instant::now() + WAIT;
    while !env_file.exists() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "executor {eid} never started"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let env: BTreeMap<String, String> = std::fs::read_to_string(&env_file)
        .unwrap()
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let config = ExecutorConfig::from_vars(env).expect("executor env");
    let (client, mut events) = ExecutorClient::start(config).expect("executor client");
    let container = match next(&mut events).await {
        ExecutorEvent::Connected { subscribed } => subscribed.container_id.unwrap().value,
        other => panic!("expected SUBSCRIBED, got {other:?}"),
    };
    let task = loop {
        if let ExecutorEvent::Event(e) = next(&mut events).await
            && let Some(l) = &e.launch
        {
            break l.task.task_id.clone();
        }
    };
    client
        .update(status(&task, TaskState::TaskRunning))
        .await
        .expect("update");
    (client, events, container)
}

async fn next(events: &mut ExecutorEvents) -> ExecutorEvent {
    tokio::time::timeout(WAIT, events.next_event())
        .await
        .expect("an executor event within the wait")
        .expect("executor session")
}

fn status(task: &TaskId, state: TaskState) -> TaskStatus {
    TaskStatus {
        task_id: task.clone(),
        state: state as i32,
        ..Default::default()
    }
}

fn pid_of(s: &Scratch, eid: &str) -> i32 {
    std::fs::read_to_string(s.path(&format!("seen/pid-{eid}")))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

fn running(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(") ").map(|(_, r)| !r.starts_with('Z')))
        .unwrap_or(false)
}

/// GET over HTTP/1.0: the body.
async fn get(addr: std::net::SocketAddr, path: &str) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.unwrap();
    let text = String::from_utf8_lossy(&buf).into_owned();
    text.split_once("\r\n\r\n").unwrap().1.to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_agent_resumes_the_executor_and_its_isolator_for_the_same_container() {
    let s = Scratch::new("resume");
    let isolator = vec![
        ("module_name", "rec".to_owned()),
        ("isolator_watch_command", recorder(&s, "watch", "")),
        ("isolator_watch_frequence", "1".into()),
        (
            "isolator_usage_command",
            recorder(&s, "usage", r#"{"timestamp":12345,"mem_cache_bytes":4242}"#),
        ),
        ("isolator_cleanup_command", recorder(&s, "cleanup", "")),
    ];
    let modules = modules_json(&[("module_name", "h".to_owned())], &isolator);
    let mut cluster = LocalCluster::start(config(&s, &modules, vec![executor_script(&s)]))
        .await
        .expect("cluster starts");
    let mut sched = Scheduler::launch(&cluster, checkpointing(false), &["t1"]).await;
    let (client, mut events, container) = run_executor(&s, "t1").await;
    assert!(client.config().checkpoint, "MESOS_CHECKPOINT=1");
    sched.wait_update("t1", TaskState::TaskRunning).await;
    s.wait_line("watch", &container).await;
    let pid = pid_of(&s, "t1");
    let meta = s
        .path("work/meta/slaves")
        .join(&cluster.agents()[0].id().value);
    let fid = sched.client.framework_id().expect("subscribed").value;
    let checkpoint = meta.join(format!(
        "frameworks/{fid}/executors/t1/runs/{container}/executor.state"
    ));
    let text = std::fs::read_to_string(&checkpoint).expect("the executor is checkpointed");
    assert!(text.contains(&format!("pid {pid}")), "{text}");

    cluster.stop_agent(0).await.expect("stop");
    assert!(running(pid), "the executor survived the agent's stop");
    // The stopped agent's watch loop is gone (a run already under way may still finish).
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stopped = s.lines("watch").len();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(s.lines("watch").len(), stopped, "no watch while stopped");
    cluster.start_agent(0).await.expect("start");
    let before = stopped;

    // The executor re-subscribes with the same container.
    let again = loop {
        match next(&mut events).await {
            ExecutorEvent::Connected { subscribed } => {
                break subscribed.container_id.unwrap().value;
            }
            _ => continue,
        }
    };
    assert_eq!(again, container);
    // The watch loop runs again for the recovered container, with its recovered config.
    let deadline = tokio::time::Instant::now() + WAIT;
    while s.lines("watch").len() < before + 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "watch did not resume"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let watch = s.lines("watch");
    assert!(watch[before..].iter().all(|l| l.contains(&container)));
    assert_eq!(
        watch[before], watch[0],
        "the same ContainerConfig as before"
    );
    assert!(
        s.lines("cleanup").is_empty(),
        "a recovered container is not cleaned up"
    );
    // Usage too.
    let stats = get(cluster.agents()[0].endpoint(), "/monitor/statistics").await;
    assert!(
        stats.contains("\"executor_id\":\"t1\"") && stats.contains("4242"),
        "{stats}"
    );
    s.wait_line("usage", &container).await;
    // The agent's state has the task running on the recovered executor.
    let state = String::from_utf8_lossy(&cluster.agents()[0].state_json().await).into_owned();
    assert!(state.contains("\"TASK_RUNNING\""), "{state}");

    // The task can be killed as usual afterwards.
    sched
        .client
        .kill(TaskId { value: "t1".into() }, None)
        .await
        .expect("kill");
    loop {
        if let ExecutorEvent::Event(e) = next(&mut events).await
            && e.r#type == Some(event::Type::Kill as i32)
        {
            break;
        }
    }
    client
        .update(status(
            &TaskId { value: "t1".into() },
            TaskState::TaskKilled,
        ))
        .await
        .expect("update");
    sched.wait_update("t1", TaskState::TaskKilled).await;
    // The executor exits: its recovered container is destroyed (isolator cleanup).
    let _ = std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status();
    s.wait_line("cleanup", &container).await;
    // Nothing is left to recover: the checkpoint goes once the executor is gone and its
    // updates are acknowledged.
    let deadline = tokio::time::Instant::now() + WAIT;
    while checkpoint.exists() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "checkpoint left behind"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(client);
    let _ = sched.client.teardown().await;
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn executors_that_do_not_come_back_are_destroyed_and_their_tasks_end() {
    let s = Scratch::new("gone");
    let isolator = vec![
        ("module_name", "rec".to_owned()),
        ("isolator_cleanup_command", recorder(&s, "cleanup", "")),
    ];
    let modules = modules_json(&[("module_name", "h".to_owned())], &isolator);
    let mut c = config(&s, &modules, vec![executor_script(&s)]);
    c.executor_reregistration_timeout = Duration::from_secs(1);
    let mut cluster = LocalCluster::start(c).await.expect("cluster starts");
    let mut sched = Scheduler::launch(&cluster, checkpointing(false), &["t1", "t2"]).await;
    let (c1, e1, container1) = run_executor(&s, "t1").await;
    let (c2, e2, container2) = run_executor(&s, "t2").await;
    sched.wait_update("t1", TaskState::TaskRunning).await;
    sched.wait_update("t2", TaskState::TaskRunning).await;

    cluster.stop_agent(0).await.expect("stop");
    // t1's executor process lives on but never re-subscribes; t2's process dies meanwhile.
    drop((c1, e1, c2, e2));
    let pid1 = pid_of(&s, "t1");
    let pid2 = pid_of(&s, "t2");
    assert!(running(pid1) && running(pid2), "both survived the stop");
    let _ = std::process::Command::new("kill")
        .args(["-9", &pid2.to_string()])
        .status();
    cluster.start_agent(0).await.expect("start");

    let lost = sched.wait_update("t1", TaskState::TaskLost).await;
    assert_eq!(
        lost.reason,
        Some(task_status::Reason::ExecutorReregistrationTimeout as i32)
    );
    assert_eq!(lost.source, Some(task_status::Source::Agent as i32));
    let failed = sched.wait_update("t2", TaskState::TaskFailed).await;
    assert_eq!(
        failed.reason,
        Some(task_status::Reason::ExecutorTerminated as i32)
    );
    s.wait_line("cleanup", &container1).await;
    s.wait_line("cleanup", &container2).await;
    assert!(
        !running(pid1),
        "the executor that did not re-subscribe is killed"
    );
    let _ = sched.client.teardown().await;
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_agent_becomes_unreachable_and_the_agent_lost_hook_runs_once() {
    let s = Scratch::new("lost");
    let hook = vec![
        ("module_name", "h".to_owned()),
        (
            "hook_master_slave_lost_hook_command",
            recorder(&s, "lost", ""),
        ),
    ];
    let modules = modules_json(&hook, &[("module_name", "rec".to_owned())]);
    let mut c = config(&s, &modules, vec![executor_script(&s)]);
    c.agent_lost_timeout = Duration::from_millis(500);
    let mut cluster = LocalCluster::start(c).await.expect("cluster starts");
    let agent_id = cluster.agents()[0].id().value.clone();
    let mut sched = Scheduler::launch(&cluster, checkpointing(true), &["t1"]).await;
    let (client, _events, _) = run_executor(&s, "t1").await;
    sched.wait_update("t1", TaskState::TaskRunning).await;

    cluster.stop_agent(0).await.expect("stop");
    let unreachable = sched.wait_update("t1", TaskState::TaskUnreachable).await;
    assert_eq!(unreachable.source, Some(task_status::Source::Master as i32));
    assert!(unreachable.unreachable_time.is_some());
    let lines = s.wait_line("lost", &agent_id).await;
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].contains("\"hostname\":\"localhost\""),
        "{}",
        lines[0]
    );
    // Time for a second (wrong) call to show up.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(s.lines("lost").len(), 1, "the hook runs once");
    let state = get(cluster.master_addr(), "/master/state").await;
    assert!(
        !state.contains(&format!("\"id\":\"{agent_id}\",\"pid\"")),
        "{state}"
    );
    drop(client);
    let _ = sched.client.teardown().await;
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn executors_of_frameworks_without_checkpointing_do_not_survive_a_restart() {
    let s = Scratch::new("nockpt");
    let isolator = vec![
        ("module_name", "rec".to_owned()),
        ("isolator_cleanup_command", recorder(&s, "cleanup", "")),
    ];
    let modules = modules_json(&[("module_name", "h".to_owned())], &isolator);
    let mut cluster = LocalCluster::start(config(&s, &modules, vec![executor_script(&s)]))
        .await
        .expect("cluster starts");
    let mut info = checkpointing(false);
    info.checkpoint = Some(false);
    let mut sched = Scheduler::launch(&cluster, info, &["t1"]).await;
    let (client, _events, container) = run_executor(&s, "t1").await;
    assert!(!client.config().checkpoint);
    sched.wait_update("t1", TaskState::TaskRunning).await;
    let pid = pid_of(&s, "t1");

    cluster.stop_agent(0).await.expect("stop");
    let lost = sched.wait_update("t1", TaskState::TaskLost).await;
    assert_eq!(
        lost.reason,
        Some(task_status::Reason::AgentDisconnected as i32)
    );
    assert_eq!(lost.source, Some(task_status::Source::Master as i32));
    let deadline = tokio::time::Instant::now() + WAIT;
    while running(pid) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "executor still running"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Its container is an orphan for the restarted agent: cleaned up, nothing recovered.
    cluster.start_agent(0).await.expect("start");
    s.wait_line("cleanup", &container).await;
    let state = String::from_utf8_lossy(&cluster.agents()[0].state_json().await).into_owned();
    assert!(!state.contains("\"t1\""), "{state}");
    let _ = sched.client.teardown().await;
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_decorator_sees_the_updates_the_agent_makes_up() {
    let s = Scratch::new("decorate");
    let hook = vec![
        ("module_name", "h".to_owned()),
        (
            "hook_slave_task_status_decorator_command",
            recorder(
                &s,
                "status",
                r#"{"task_id":{"value":"t1"},"state":"TASK_FAILED","labels":{"labels":[{"key":"decorated","value":"yes"}]}}"#,
            ),
        ),
    ];
    let modules = modules_json(&hook, &[("module_name", "rec".to_owned())]);
    // An executor that cannot be started: the agent fails the task itself.
    let cluster = LocalCluster::start(config(
        &s,
        &modules,
        vec![s.path("no-such-executor").to_str().unwrap().to_owned()],
    ))
    .await
    .expect("cluster starts");
    let mut sched = Scheduler::launch(&cluster, checkpointing(false), &["t1"]).await;
    let failed = sched.wait_update("t1", TaskState::TaskFailed).await;
    assert_eq!(failed.source, Some(task_status::Source::Agent as i32));
    assert_eq!(
        failed.reason,
        Some(task_status::Reason::ContainerLaunchFailed as i32)
    );
    let labels = failed.labels.expect("decorated labels").labels;
    assert_eq!(labels.len(), 1);
    assert_eq!(labels[0].key, "decorated");
    let seen = s.wait_line("status", "TASK_FAILED").await;
    assert_eq!(seen.len(), 1, "decorated once: {seen:?}");
    assert!(seen[0].contains("SOURCE_AGENT"), "{}", seen[0]);
    let _ = sched.client.teardown().await;
    cluster.shutdown().await;
}
