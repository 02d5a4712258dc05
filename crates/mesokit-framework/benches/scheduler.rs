//! The scheduler core with no IO, at cluster scale:
//!
//! * `offer_cycle/<tasks>`: one OFFERS event from 10,000 agents placing 1k / 10k / 100k pending
//!   tasks (matching, TaskInfo building, store records, ACCEPT calls), outputs drained;
//! * `failover/…_100000`: a new scheduler restores 100,000 running tasks (from memory, or
//!   first loaded from the file store), subscribes (explicit + implicit reconciliation calls)
//!   and processes the 100,000 reconciliation answers, outputs drained.
//!
//! Memory per tracked task is printed by `cargo bench -p mesokit-framework --bench scheduler`
//! before the timings (a counting allocator around mimalloc, the allocator of the `mesokit`
//! binary; it counts only while those figures are taken, so the timed runs pay no atomic
//! operations that the binary would not).

// A global allocator cannot be written without `unsafe`; this one only forwards and counts.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Instant;

use criterion::{BatchSize, Criterion, criterion_group};
use mesokit_framework::core::{Config, Output, Scheduler};
use mesokit_framework::spec::{ConstraintOp, GroupSpec, JobKind, JobSpec};
use mesokit_framework::store::{FileStore, Store, Write};
use mesokit_proto::helpers;
use mesokit_proto::v1::{AgentId, FrameworkId, Offer, OfferId, TaskId, TaskState, TaskStatus};
use mimalloc::MiMalloc;

struct Counting;

/// Counting on (only in `footprint`).
static COUNT: AtomicBool = AtomicBool::new(false);
/// Bytes allocated minus bytes freed while counting (wrapping: a block allocated before
/// counting started may be freed while it runs; only differences are read).
static LIVE: AtomicUsize = AtomicUsize::new(0);
static CALLS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded unchanged to mimalloc.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNT.load(Ordering::Relaxed) {
            LIVE.fetch_add(layout.size(), Ordering::Relaxed);
            CALLS.fetch_add(1, Ordering::Relaxed);
        }
        unsafe { MiMalloc.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if COUNT.load(Ordering::Relaxed) {
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        }
        unsafe { MiMalloc.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new: usize) -> *mut u8 {
        if COUNT.load(Ordering::Relaxed) {
            LIVE.fetch_add(new, Ordering::Relaxed);
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
            CALLS.fetch_add(1, Ordering::Relaxed);
        }
        unsafe { MiMalloc.realloc(ptr, layout, new) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const AGENTS: usize = 10_000;

fn offers(agents: usize) -> Vec<Offer> {
    (0..agents)
        .map(|i| Offer {
            id: OfferId {
                value: format!("offer-{i}"),
            },
            agent_id: AgentId {
                value: format!("agent-{i}"),
            },
            hostname: format!("host-{i}"),
            resources: vec![
                helpers::cpus(16.0),
                helpers::mem(65536.0),
                helpers::ranges("ports", &[(31000, 32000)]),
            ],
            ..Offer::default()
        })
        .collect()
}

fn job(tasks: u32) -> JobSpec {
    let mut job = JobSpec::new("bench", JobKind::Service);
    // Three groups with different priorities and sizes, one with a port and a constraint.
    job.groups = vec![
        GroupSpec::new("web", tasks / 4, "serve")
            .resources(0.5, 512.0)
            .ports(1)
            .priority(10)
            .constraint("hostname", ConstraintOp::MaxPer(8)),
        GroupSpec::new("worker", tasks / 2, "work").resources(0.25, 256.0),
        GroupSpec::new("batch", tasks - tasks / 4 - tasks / 2, "crunch").resources(0.1, 128.0),
    ];
    job
}

fn subscribed(tasks: u32) -> Scheduler {
    let mut s = Scheduler::new(job(tasks), Config::default());
    s.on_subscribed(&FrameworkId { value: "fw".into() }, Instant::now());
    while s.poll_output().is_some() {}
    s
}

/// Takes every output (as a driver would) and counts the launched tasks; keeps the store
/// writes only when asked (collecting them is the benchmark's cost, not the core's).
fn drain_with(s: &mut Scheduler, keep: bool) -> (usize, Vec<Write>) {
    let mut launched = 0;
    let mut writes = Vec::new();
    while let Some(o) = s.poll_output() {
        match o {
            Output::Call(c) => {
                if let Some(a) = &c.accept {
                    launched += a.operations[0].launch.as_ref().unwrap().task_infos.len();
                }
            }
            Output::Persist(w) if keep => writes.extend(w),
            Output::Persist(_) | Output::Event(_) => {}
        }
    }
    (launched, writes)
}

fn drain(s: &mut Scheduler) -> (usize, Vec<Write>) {
    drain_with(s, false)
}

/// What a store holds: keys and values.
type Stored = Vec<(String, Vec<u8>)>;

/// A scheduler with every task launched, the store it wrote, and the task ids.
fn launched(tasks: u32) -> (Scheduler, Stored, Vec<String>) {
    let mut s = subscribed(tasks);
    s.on_offers(offers(AGENTS), Instant::now());
    let (n, writes) = drain_with(&mut s, true);
    assert_eq!(n, tasks as usize);
    let mut store = std::collections::BTreeMap::new();
    store.insert("framework_id".to_string(), b"fw".to_vec());
    for w in writes {
        if let Write::Put { key, value } = w {
            store.insert(key, value);
        }
    }
    let ids = s.records().map(|(r, _)| r.task_id.to_string()).collect();
    (s, store.into_iter().collect(), ids)
}

fn status(task: &str, state: TaskState) -> TaskStatus {
    TaskStatus {
        task_id: TaskId { value: task.into() },
        state: state as i32,
        agent_id: Some(AgentId {
            value: "agent".into(),
        }),
        uuid: Some(helpers::new_uuid()),
        ..TaskStatus::default()
    }
}

fn footprint() {
    COUNT.store(true, Ordering::Relaxed);
    {
        let mut s = subscribed(100_000);
        let o = offers(AGENTS);
        let (calls, bytes) = (CALLS.load(Ordering::Relaxed), LIVE.load(Ordering::Relaxed));
        s.on_offers(o, Instant::now());
        let (calls2, bytes2) = (CALLS.load(Ordering::Relaxed), LIVE.load(Ordering::Relaxed));
        println!(
            "offer cycle of 100000 tasks: {} allocations and {} bytes per task",
            (calls2 - calls) / 100_000,
            bytes2.wrapping_sub(bytes) / 100_000
        );
    }
    for tasks in [10_000u32, 100_000] {
        let before = LIVE.load(Ordering::Relaxed);
        let (mut s, store, ids) = launched(tasks);
        for id in &ids {
            s.on_update(status(id, TaskState::TaskRunning), Instant::now());
        }
        while s.poll_output().is_some() {}
        let store_bytes: usize = store
            .iter()
            .map(|(k, v)| k.capacity() + v.capacity() + 48)
            .sum::<usize>()
            + store.capacity() * 48;
        let ids_bytes: usize =
            ids.iter().map(|i| i.capacity()).sum::<usize>() + ids.capacity() * 24;
        let after = LIVE.load(Ordering::Relaxed);
        let core = after
            .wrapping_sub(before)
            .saturating_sub(store_bytes + ids_bytes);
        println!(
            "footprint: {tasks} running tasks tracked by the core: {:.1} MiB, {} bytes per task (its store record: {} bytes)",
            core as f64 / (1 << 20) as f64,
            core / tasks as usize,
            store.iter().map(|(_, v)| v.len()).sum::<usize>() / tasks as usize
        );
    }
    COUNT.store(false, Ordering::Relaxed);
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("offer_cycle");
    g.sample_size(10);
    let all_offers = offers(AGENTS);
    for tasks in [1_000u32, 10_000, 100_000] {
        g.bench_function(format!("{tasks}_tasks_10000_agents"), |b| {
            b.iter_batched(
                || (subscribed(tasks), all_offers.clone()),
                |(mut s, o)| {
                    s.on_offers(o, Instant::now());
                    let (n, _) = drain(&mut s);
                    assert_eq!(n, tasks as usize);
                    s
                },
                BatchSize::PerIteration,
            )
        });
    }
    g.finish();

    let mut g = c.benchmark_group("failover");
    g.sample_size(10);
    // The state a scheduler stored before it died: 100,000 tasks, all RUNNING.
    let (mut s, _, ids) = launched(100_000);
    for id in &ids {
        s.on_update(status(id, TaskState::TaskRunning), Instant::now());
    }
    let mut records = std::collections::BTreeMap::new();
    records.insert("framework_id".to_string(), b"fw".to_vec());
    while let Some(o) = s.poll_output() {
        if let Output::Persist(ws) = o {
            for w in ws {
                if let Write::Put { key, value } = w {
                    records.insert(key, value);
                }
            }
        }
    }
    drop(s);
    let store: Stored = records.into_iter().collect();
    // Reconciliation answers: every task still RUNNING (no uuid: answers are not acked).
    let updates: Vec<TaskStatus> = ids
        .iter()
        .map(|id| TaskStatus {
            uuid: None,
            ..status(id, TaskState::TaskRunning)
        })
        .collect();
    let failover = |store: Stored, updates: Vec<TaskStatus>| {
        let mut s = Scheduler::new(job(100_000), Config::default());
        s.restore(store);
        let now = Instant::now();
        s.on_subscribed(&FrameworkId { value: "fw".into() }, now);
        for u in updates {
            s.on_update(u, now);
        }
        let (n, writes) = drain_with(&mut s, true);
        assert_eq!(n, 0, "nothing relaunched");
        assert!(writes.is_empty(), "nothing changed");
        s
    };
    g.bench_function("core_restore_subscribe_reconcile_100000", |b| {
        b.iter_batched(
            || (store.clone(), updates.clone()),
            |(store, updates)| failover(store, updates),
            BatchSize::PerIteration,
        )
    });
    // The same, reading the state from the file store first (a restarted scheduler).
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = std::env::temp_dir().join(format!("mesokit-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("state.redb");
    rt.block_on(async {
        let file = FileStore::open(&path).unwrap();
        let writes: Vec<Write> = store
            .iter()
            .map(|(k, v)| Write::Put {
                key: k.clone(),
                value: v.clone(),
            })
            .collect();
        file.apply(writes).await.unwrap();
    });
    g.bench_function("file_store_load_then_reconcile_100000", |b| {
        b.iter_batched(
            || updates.clone(),
            |updates| {
                let stored = rt.block_on(async {
                    let file = FileStore::open(&path).unwrap();
                    file.load().await.unwrap()
                });
                failover(stored, updates)
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, bench);

fn main() {
    footprint();
    benches();
    Criterion::default().configure_from_args().final_summary();
}
