//! Measurement, not a test (ignored; run by `bench/executor_footprint.sh`): the memory of
//! `mesokit executor` supervising one `sleep` task next to the pymesos executor doing the
//! same, and their LAUNCH → TASK_RUNNING latency, on one `mesokit local` cluster in one run.
//!
//! * Memory: `Rss` and `Pss` from `/proc/<pid>/smaps_rollup` of each executor process once
//!   its first task is RUNNING.
//! * Latency: tasks are launched one at a time into the already running executors
//!   (alternating), and the time from the scheduler's ACCEPT to the TASK_RUNNING update it
//!   receives is taken: master, agent and executor together, the same path for both.
//!
//! Settings: `MESOKIT_BENCH_EXECUTOR` (the executor command, default this build's
//! `mesokit executor`), `MESOKIT_PYTHON` (the venv's python, with pymesos),
//! `MESOKIT_BENCH_ROUNDS` (tasks per executor, default 30).

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use mesokit_client::scheduler::{SchedulerClient, SchedulerConfig, SchedulerEvent};
use mesokit_local::cluster::{ClusterConfig, LocalCluster};
use mesokit_proto::helpers::{self, TaskBuilder};
use mesokit_proto::v1::{
    CommandInfo, ExecutorId, ExecutorInfo, Filters, FrameworkInfo, TaskGroupInfo, TaskState,
    executor_info, offer,
};

/// The argv of the cluster's executor.
fn executor_command() -> Vec<String> {
    match std::env::var("MESOKIT_BENCH_EXECUTOR") {
        Ok(v) => v.split_whitespace().map(str::to_owned).collect(),
        Err(_) => vec![env!("CARGO_BIN_EXE_mesokit").into(), "executor".into()],
    }
}

fn python() -> PathBuf {
    std::env::var_os("MESOKIT_PYTHON").map_or_else(
        || {
            PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../.venv/bin/python"
            ))
        },
        PathBuf::from,
    )
}

/// The pid of the process whose environment has `MESOS_EXECUTOR_ID=<id>` and
/// `MESOS_FRAMEWORK_ID=<fw>` and whose parent's has not (its tasks have these variables too).
fn executor_pid(fw: &str, id: &str) -> Option<u32> {
    let want = [
        format!("MESOS_EXECUTOR_ID={id}"),
        format!("MESOS_FRAMEWORK_ID={fw}"),
    ];
    let matches = |pid: u32| {
        let Ok(env) = std::fs::read(format!("/proc/{pid}/environ")) else {
            return false;
        };
        let vars: Vec<&[u8]> = env.split(|b| *b == 0).collect();
        want.iter().all(|w| vars.contains(&w.as_bytes()))
    };
    let parent = |pid: u32| {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("PPid:"))?
            .trim()
            .parse::<u32>()
            .ok()
    };
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        (matches(pid) && !parent(pid).is_some_and(matches)).then_some(pid)
    })
}

/// `Rss` and `Pss` in KiB.
fn memory(pid: u32) -> (u64, u64) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    (field("Rss:"), field("Pss:"))
}

/// Rss and Pss per mapped file (and anonymous memory), largest first.
fn print_mappings(kind: &str, pid: u32) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps")).unwrap_or_default();
    let mut per: HashMap<String, (u64, u64)> = HashMap::new();
    let mut current = String::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        let first = words.next().unwrap_or("");
        if first.contains('-') && !first.ends_with(':') {
            current = line
                .split_whitespace()
                .nth(5)
                .unwrap_or("[anon]")
                .to_owned();
        } else if first == "Rss:" || first == "Pss:" {
            let kb: u64 = words.next().and_then(|w| w.parse().ok()).unwrap_or(0);
            let e = per.entry(current.clone()).or_default();
            if first == "Rss:" {
                e.0 += kb
            } else {
                e.1 += kb
            }
        }
    }
    let mut v: Vec<_> = per.into_iter().collect();
    v.sort_by_key(|(_, (rss, _))| std::cmp::Reverse(*rss));
    for (name, (rss, pss)) in v.iter().take(12) {
        println!("{kind}: {rss:>6} kB Rss {pss:>6} kB Pss  {name}");
    }
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn p90(v: &mut [Duration]) -> Duration {
    v.sort();
    v[(v.len() * 9 / 10).min(v.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement, not a test"]
async fn executor_footprint_and_latency_vs_pymesos() {
    let rounds: usize = std::env::var("MESOKIT_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30);
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../bench/executor_pymesos.py"
    );
    let kinds = [
        ("mesokit", String::new()),
        ("pymesos", format!("exec {} {script}", python().display())),
    ];
    let cluster = LocalCluster::start(ClusterConfig::for_tests(executor_command()))
        .await
        .expect("cluster starts");
    let info = FrameworkInfo {
        user: "root".into(),
        name: "executor-footprint".into(),
        ..Default::default()
    };
    let (client, mut events) =
        SchedulerClient::start(SchedulerConfig::new([cluster.master_url()], info)).expect("client");
    // mesokit: the DEFAULT executor (`mesokit executor` under `mesokit local`), tasks in
    // LAUNCH_GROUPs; pymesos: a custom executor, the task's command in its data.
    let executor = |k: usize| {
        let mut e = ExecutorInfo {
            r#type: Some(executor_info::Type::Default as i32),
            executor_id: ExecutorId {
                value: kinds[k].0.to_owned(),
            },
            framework_id: client.framework_id(),
            resources: vec![helpers::cpus(0.01), helpers::mem(32.0), helpers::disk(10.0)],
            ..Default::default()
        };
        if k == 1 {
            e.r#type = Some(executor_info::Type::Custom as i32);
            e.command = Some(CommandInfo {
                value: Some(kinds[k].1.clone()),
                shell: Some(true),
                ..Default::default()
            });
        }
        e
    };
    let operation = |k: usize, id: &str, agent: &str| {
        let builder = TaskBuilder::new(id, id, agent).cpus(0.01).mem(4.0);
        if k == 0 {
            let task = builder.shell("sleep 600").build();
            offer::Operation {
                r#type: Some(offer::operation::Type::LaunchGroup as i32),
                launch_group: Some(Box::new(offer::operation::LaunchGroup {
                    executor: executor(k),
                    task_group: TaskGroupInfo { tasks: vec![task] },
                })),
                ..Default::default()
            }
        } else {
            let task = builder
                .data(&b"sleep 600"[..])
                .executor(executor(k))
                .build();
            offer::Operation {
                r#type: Some(offer::operation::Type::Launch as i32),
                launch: Some(offer::operation::Launch {
                    task_infos: vec![task],
                }),
                ..Default::default()
            }
        }
    };

    // The launches to make, in order: both executors' first task together, then one at a
    // time, alternating.
    let mut plan: Vec<Vec<(usize, String)>> =
        vec![vec![(0, "mesokit-0".into()), (1, "pymesos-0".into())]];
    for i in 1..rounds {
        for (k, kind) in kinds.iter().enumerate() {
            plan.push(vec![(k, format!("{}-{i}", kind.0))]);
        }
    }
    let mut plan = plan.into_iter();
    let mut waiting: HashMap<String, (usize, Instant)> = HashMap::new();
    let mut latencies: [Vec<Duration>; 2] = [Vec::new(), Vec::new()];
    let mut first: [Option<Duration>; 2] = [None, None];
    // ACCEPT → TASK_STARTING (only executors that send it).
    let mut starting: [Vec<Duration>; 2] = [Vec::new(), Vec::new()];
    let mut mem: [(u64, u64); 2] = [(0, 0); 2];
    let mut offers = Vec::new();
    let outcome = tokio::time::timeout(Duration::from_secs(300), async {
        loop {
            if waiting.is_empty() {
                if mem[0].0 == 0 && first[0].is_some() {
                    // Both first tasks are RUNNING: each executor supervises one task.
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    let fw = client.framework_id().map(|f| f.value).unwrap_or_default();
                    for (k, (kind, _)) in kinds.iter().enumerate() {
                        let pid = executor_pid(&fw, kind).expect("executor process found");
                        mem[k] = memory(pid);
                        if std::env::var_os("MESOKIT_BENCH_SMAPS").is_some() {
                            print_mappings(kind, pid);
                        }
                    }
                }
                if let Some(o) = offers.pop() {
                    let Some(batch) = plan.next() else { break };
                    let o: mesokit_proto::v1::Offer = o;
                    let ops = batch
                        .iter()
                        .map(|(k, id)| operation(*k, id, &o.agent_id.value))
                        .collect();
                    let now = Instant::now();
                    for (k, id) in &batch {
                        waiting.insert(id.clone(), (*k, now));
                    }
                    // What the task leaves of the offer comes back at once.
                    let again = Filters {
                        refuse_seconds: Some(0.0),
                    };
                    client
                        .accept(vec![o.id.clone()], ops, Some(again))
                        .await
                        .expect("accept");
                    for o in offers.drain(..) {
                        let again = Filters {
                            refuse_seconds: Some(0.0),
                        };
                        let _ = client.decline(vec![o.id], Some(again)).await;
                    }
                    continue;
                }
            }
            let SchedulerEvent::Event(ev) = events.next_event().await.expect("session") else {
                continue;
            };
            let at = Instant::now();
            if let Some(o) = ev.offers {
                offers.extend(o.offers);
            }
            if let Some(u) = &ev.update {
                let s = &u.status;
                client.acknowledge(s).await.expect("ack");
                if s.state == TaskState::TaskStarting as i32
                    && let Some((k, sent)) = waiting.get(&s.task_id.value)
                    && !s.task_id.value.ends_with("-0")
                {
                    starting[*k].push(at - *sent);
                } else if s.state == TaskState::TaskRunning as i32
                    && let Some((k, sent)) = waiting.remove(&s.task_id.value)
                {
                    let took = at - sent;
                    if s.task_id.value.ends_with("-0") {
                        first[k] = Some(took);
                    } else {
                        latencies[k].push(took);
                    }
                } else if helpers::is_terminal_value(s.state) {
                    panic!("task ended: {s:?}");
                }
            }
        }
    })
    .await;
    // The memory again, right after the last launch and once the executors were idle for
    // a while (an executor may give pages back when idle).
    let fw = client.framework_id().map(|f| f.value).unwrap_or_default();
    let mut later = [[(0, 0); 2]; 2];
    for (i, wait) in [0, 1500].into_iter().enumerate() {
        tokio::time::sleep(Duration::from_millis(wait)).await;
        for (k, (kind, _)) in kinds.iter().enumerate() {
            later[i][k] = executor_pid(&fw, kind).map_or((0, 0), memory);
        }
    }
    let _ = client.teardown().await;
    cluster.shutdown().await;
    outcome.expect("the measurement finished in time");

    println!("executor command: {}", executor_command().join(" "));
    println!(
        "| executor | Rss | Pss | first task (executor start) | ACCEPT→RUNNING median (min–max), {} tasks |",
        rounds - 1
    );
    println!("|---|---|---|---|---|");
    for k in 0..2 {
        let l = &mut latencies[k];
        let med = median(l);
        println!(
            "| {} | {:.2} MiB | {:.2} MiB | {:.1} ms | {:.2} ms ({:.2}–{:.2}) |",
            kinds[k].0,
            mem[k].0 as f64 / 1024.0,
            mem[k].1 as f64 / 1024.0,
            first[k].unwrap_or_default().as_secs_f64() * 1e3,
            med.as_secs_f64() * 1e3,
            l[0].as_secs_f64() * 1e3,
            l[l.len() - 1].as_secs_f64() * 1e3,
        );
    }
    for k in 0..2 {
        let mib = |kb: u64| kb as f64 / 1024.0;
        println!(
            "{}: right after the last launch Rss {:.2} MiB Pss {:.2} MiB; 1.5 s later Rss {:.2} MiB Pss {:.2} MiB",
            kinds[k].0,
            mib(later[0][k].0),
            mib(later[0][k].1),
            mib(later[1][k].0),
            mib(later[1][k].1),
        );
        let l = &mut latencies[k];
        let s = &mut starting[k];
        if s.is_empty() {
            println!(
                "{}: no TASK_STARTING; RUNNING p90 {:.2} ms",
                kinds[k].0,
                ms(p90(l))
            );
        } else {
            println!(
                "{}: ACCEPT→STARTING median {:.2} ms; RUNNING p90 {:.2} ms",
                kinds[k].0,
                ms(median(s)),
                ms(p90(l))
            );
        }
    }
}
