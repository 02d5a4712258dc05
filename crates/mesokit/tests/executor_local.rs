//! `mesokit executor` under `mesokit local`'s agents, driven by a framework: a command task
//! killed through the master, and a task group (DEFAULT executor) in which one failing task
//! takes the other down.

use std::collections::BTreeMap;
use std::time::Duration;

use mesokit_client::scheduler::{SchedulerClient, SchedulerConfig, SchedulerEvent};
use mesokit_local::cluster::{ClusterConfig, LocalCluster};
use mesokit_proto::helpers::{self, TaskBuilder, is_terminal_value};
use mesokit_proto::v1::framework_info::{Capability, capability};
use mesokit_proto::v1::task_status::Source;
use mesokit_proto::v1::{
    ExecutorId, ExecutorInfo, FrameworkInfo, TaskGroupInfo, TaskId, TaskState, executor_info, offer,
};

fn name(state: i32) -> &'static str {
    TaskState::try_from(state).map_or("UNKNOWN", |s| s.as_str_name())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_and_group_failure_through_a_local_cluster() {
    let cluster = LocalCluster::start(ClusterConfig::for_tests(vec![
        env!("CARGO_BIN_EXE_mesokit").into(),
        "executor".into(),
    ]))
    .await
    .expect("cluster starts");
    let info = FrameworkInfo {
        user: "root".into(),
        name: "executor-local".into(),
        capabilities: vec![Capability {
            r#type: Some(capability::Type::TaskKillingState as i32),
        }],
        ..Default::default()
    };
    let (client, mut events) =
        SchedulerClient::start(SchedulerConfig::new([cluster.master_url()], info)).expect("client");

    let mut launched = false;
    let mut killed = false;
    // task id -> the states it went through.
    let mut seen: BTreeMap<String, Vec<(&'static str, Option<String>)>> = BTreeMap::new();
    let outcome = tokio::time::timeout(Duration::from_secs(60), async {
        while seen
            .values()
            .filter(|s| {
                s.last()
                    .is_some_and(|(st, _)| st.starts_with("TASK_") && is_terminal(st))
            })
            .count()
            < 3
        {
            let SchedulerEvent::Event(ev) = events.next_event().await.expect("session") else {
                continue;
            };
            if let (Some(offers), false) = (&ev.offers, launched) {
                let o = &offers.offers[0];
                let agent = o.agent_id.value.as_str();
                let single = TaskBuilder::new("kill-me", "kill-me", agent)
                    .cpus(0.1)
                    .mem(16.0)
                    .shell("exec sleep 30")
                    .build();
                let group = TaskGroupInfo {
                    tasks: vec![
                        TaskBuilder::new("g-sleeper", "g-sleeper", agent)
                            .cpus(0.1)
                            .mem(16.0)
                            .shell("exec sleep 30")
                            .build(),
                        TaskBuilder::new("g-failer", "g-failer", agent)
                            .cpus(0.1)
                            .mem(16.0)
                            .shell("sleep 0.5; exit 2")
                            .build(),
                    ],
                };
                let executor = ExecutorInfo {
                    r#type: Some(executor_info::Type::Default as i32),
                    executor_id: ExecutorId {
                        value: "pod-1".into(),
                    },
                    framework_id: client.framework_id(),
                    resources: vec![helpers::cpus(0.1), helpers::mem(32.0), helpers::disk(10.0)],
                    ..Default::default()
                };
                let ops = vec![
                    offer::Operation {
                        r#type: Some(offer::operation::Type::Launch as i32),
                        launch: Some(offer::operation::Launch {
                            task_infos: vec![single],
                        }),
                        ..Default::default()
                    },
                    offer::Operation {
                        r#type: Some(offer::operation::Type::LaunchGroup as i32),
                        launch_group: Some(Box::new(offer::operation::LaunchGroup {
                            executor,
                            task_group: group,
                        })),
                        ..Default::default()
                    },
                ];
                client
                    .accept(vec![o.id.clone()], ops, None)
                    .await
                    .expect("accept");
                launched = true;
            }
            if let Some(u) = &ev.update {
                let s = &u.status;
                client.acknowledge(s).await.expect("ack");
                seen.entry(s.task_id.value.clone())
                    .or_default()
                    .push((name(s.state), s.message.clone()));
                if s.task_id.value == "kill-me"
                    && s.state == TaskState::TaskRunning as i32
                    && !killed
                {
                    assert_eq!(s.source, Some(Source::Executor as i32));
                    client
                        .kill(
                            TaskId {
                                value: "kill-me".into(),
                            },
                            None,
                        )
                        .await
                        .expect("kill");
                    killed = true;
                }
            }
        }
    })
    .await;
    let _ = client.teardown().await;
    // The executor's own log is `executor.log` in its sandbox, apart from the task's output.
    let logs = files_named(cluster.work_dir(), "executor.log");
    let own_log: String = logs
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap_or_default())
        .collect();
    let task_stderr: String = files_named(cluster.work_dir(), "stderr")
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap_or_default())
        .collect();
    cluster.shutdown().await;
    outcome.unwrap_or_else(|_| panic!("tasks did not all end within 60 s: {seen:#?}"));
    assert!(
        own_log.contains("mesokit executor starting"),
        "executor.log files {logs:?}: {own_log}"
    );
    assert!(
        !task_stderr.contains("mesokit executor starting"),
        "the executor's log is not in the tasks' stderr: {task_stderr}"
    );

    let states = |id: &str| -> Vec<&str> { seen[id].iter().map(|(s, _)| *s).collect() };
    assert_eq!(
        states("kill-me"),
        [
            "TASK_STARTING",
            "TASK_RUNNING",
            "TASK_KILLING",
            "TASK_KILLED"
        ],
        "{seen:#?}"
    );
    assert_eq!(
        seen["g-failer"].last().unwrap(),
        &(
            "TASK_FAILED",
            Some("Command exited with status 2".to_owned())
        )
    );
    assert_eq!(
        states("g-sleeper").last(),
        Some(&"TASK_KILLED"),
        "{seen:#?}"
    );
}

/// Every file called `name` under `dir`.
fn files_named(dir: &std::path::Path, name: &str) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.file_name().is_some_and(|f| f == name) {
                out.push(p);
            }
        }
    }
    out
}

fn is_terminal(state: &str) -> bool {
    TaskState::from_str_name(state).is_some_and(|s| is_terminal_value(s as i32))
}
