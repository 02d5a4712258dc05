//! Runner throughput and latency next to a raw spawn/wait loop of the same program, in the
//! same run: `cargo bench -p mesokit-hooks --bench runner` (`RUNNER_BENCH_CALLS` sets the
//! calls per row, default 2000). Rows: `/bin/true`, and a `/bin/sh` script that writes a
//! small JSON answer; each sequential, then with 4 calls in flight (raw: 4 threads; runner: 4
//! tasks). Each call of the runner creates and writes its input file, reads the output file
//! and removes its three temp files (in its private directory);
//! the raw loop passes the same three arguments and creates nothing. Raw and runner calls
//! alternate in rounds of 100 so that both see the same machine load. Cargo's
//! `LD_LIBRARY_PATH` is removed first, so `cargo bench` and a direct run of the binary agree.
//!
//! "cpu/call" is the CPU time (user + system, this process and its reaped children) spent
//! per call in the timed rounds: it tells a runner that costs more work from one that waits
//! more. After each row, a line on stderr gives each side's own CPU per call (this process
//! alone, not its children): the work of the runner itself, steadier than the whole figure
//! (the children's exec dominates that one and moves with the machine's state). `RUNNER_BENCH_SIDES=raw,tokio,runner` adds a third side, a plain
//! `tokio::process::Command` spawn + wait with the same arguments and no files, which splits
//! the runner's cost into the async spawn/wait and the file work; `runner1` adds the runner
//! on a current-thread runtime (one worker, as in the executor). To profile one side or one
//! row: `RUNNER_BENCH_SIDES=runner`, `RUNNER_BENCH_PROGRAMS=true|sh`,
//! `RUNNER_BENCH_IN_FLIGHT=1,4`.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mesokit_hooks::{Invocation, Runner};

const ROUND: usize = 100;

#[derive(Default)]
struct Acc {
    lat: Vec<Duration>,
    busy: Duration,
    cpu: Duration,
    own: Duration,
}

impl Acc {
    /// calls/s, p50, p99, CPU per call; zeros for a side that did not run.
    fn row(mut self) -> (f64, Duration, Duration, Duration) {
        self.lat.sort();
        let n = self.lat.len();
        if n == 0 {
            return (0.0, Duration::ZERO, Duration::ZERO, Duration::ZERO);
        }
        (
            n as f64 / self.busy.as_secs_f64(),
            self.lat[n / 2],
            self.lat[(n * 99 / 100).min(n - 1)],
            self.cpu / n as u32,
        )
    }

    /// CPU per call of this process alone (not its children), in µs; 0 for a side that did
    /// not run.
    fn own_per_call(&self) -> f64 {
        let n = self.lat.len().max(1);
        self.own.as_secs_f64() * 1e6 / n as f64
    }

    /// Times `f` (wall and CPU) into this accumulator.
    fn timed<T>(&mut self, f: impl FnOnce() -> T) -> T {
        let (start, cpu, own) = (Instant::now(), cpu_time(), own_cpu_time());
        let out = f();
        self.busy += start.elapsed();
        self.cpu += cpu_time().saturating_sub(cpu);
        self.own += own_cpu_time().saturating_sub(own);
        out
    }
}

/// User + system time of this process alone.
fn own_cpu_time() -> Duration {
    rusage(&[libc::RUSAGE_SELF])
}

/// User + system time of this process and of its children that were waited for.
fn cpu_time() -> Duration {
    rusage(&[libc::RUSAGE_SELF, libc::RUSAGE_CHILDREN])
}

#[allow(unsafe_code)]
fn rusage(whos: &[libc::c_int]) -> Duration {
    let tv = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    let mut total = Duration::ZERO;
    for &who in whos {
        // SAFETY: getrusage writes one plain struct that we own and zeroed.
        let usage = unsafe {
            let mut usage: libc::rusage = std::mem::zeroed();
            libc::getrusage(who, &mut usage);
            usage
        };
        total += tv(usage.ru_utime) + tv(usage.ru_stime);
    }
    total
}

fn raw_one(program: &str, args: &[PathBuf; 3]) -> Duration {
    let t = Instant::now();
    let status = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .status()
        .expect("spawn");
    assert!(status.success());
    t.elapsed()
}

/// `calls` raw runs on `parallel` threads; adds latencies and wall time to `acc`.
fn raw_round(program: &str, dir: &Path, calls: usize, parallel: usize, acc: &mut Acc) {
    let args = Arc::new([dir.join("in"), dir.join("out"), dir.join("err")]);
    let lat = acc.timed(|| {
        let handles: Vec<_> = (0..parallel)
            .map(|_| {
                let (program, args) = (program.to_owned(), args.clone());
                std::thread::spawn(move || {
                    (0..calls / parallel)
                        .map(|_| raw_one(&program, &args))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect::<Vec<_>>()
    });
    acc.lat.extend(lat);
}

/// `calls` runs of `one` on `rt`, from `parallel` tasks; adds latencies and wall time to `acc`.
fn async_round<F, Fut>(
    rt: &tokio::runtime::Runtime,
    calls: usize,
    parallel: usize,
    acc: &mut Acc,
    one: F,
) where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let lat = acc.timed(|| {
        rt.block_on(async {
            let mut set = tokio::task::JoinSet::new();
            for _ in 0..parallel {
                let one = one.clone();
                set.spawn(async move {
                    let mut lat = Vec::new();
                    for _ in 0..calls / parallel {
                        let t = Instant::now();
                        one().await;
                        lat.push(t.elapsed());
                    }
                    lat
                });
            }
            let mut all = Vec::new();
            while let Some(l) = set.join_next().await {
                all.extend(l.unwrap());
            }
            all
        })
    });
    acc.lat.extend(lat);
}

/// `calls` runner runs, `parallel` tasks on the runtime.
fn runner_round(
    rt: &tokio::runtime::Runtime,
    runner: &Runner,
    inv: &Arc<Invocation>,
    calls: usize,
    parallel: usize,
    acc: &mut Acc,
) {
    let (runner, inv) = (Arc::new(runner.clone()), inv.clone());
    async_round(rt, calls, parallel, acc, move || {
        let (runner, inv) = (runner.clone(), inv.clone());
        async move {
            runner.run(&inv).await.expect("run");
        }
    });
}

/// `calls` plain tokio spawn + wait runs, `parallel` tasks on the runtime.
fn tokio_round(
    rt: &tokio::runtime::Runtime,
    program: &str,
    dir: &Path,
    calls: usize,
    parallel: usize,
    acc: &mut Acc,
) {
    let args = Arc::new([dir.join("in"), dir.join("out"), dir.join("err")]);
    let program = program.to_owned();
    async_round(rt, calls, parallel, acc, move || {
        let (program, args) = (program.clone(), args.clone());
        async move {
            let status = tokio::process::Command::new(&program)
                .args(args.iter())
                .stdin(Stdio::null())
                .process_group(0)
                .kill_on_drop(true)
                .status()
                .await
                .expect("spawn");
            assert!(status.success());
        }
    });
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

#[allow(unsafe_code)]
fn main() {
    // The programs run as an agent runs them, without the library path `cargo bench` adds:
    // every exec'd program's loader would search it, ~130 µs of CPU more per call here.
    // SAFETY: the first thing main does; no other thread exists yet to read the environment.
    unsafe { std::env::remove_var("LD_LIBRARY_PATH") };
    let calls: usize = env_or("RUNNER_BENCH_CALLS", "2000")
        .parse()
        .expect("RUNNER_BENCH_CALLS: a number of calls");
    let sides = env_or("RUNNER_BENCH_SIDES", "raw,runner");
    let side = |name: &str| sides.split(',').any(|s| s == name);
    let (do_raw, do_tokio, do_runner) = (side("raw"), side("tokio"), side("runner"));
    let do_runner1 = side("runner1");
    let programs = env_or("RUNNER_BENCH_PROGRAMS", "true,sh");
    let in_flight: Vec<usize> = env_or("RUNNER_BENCH_IN_FLIGHT", "1,4")
        .split(',')
        .map(|n| {
            n.parse()
                .expect("RUNNER_BENCH_IN_FLIGHT: numbers, e.g. 1,4")
        })
        .collect();
    let dir = std::env::temp_dir().join(format!("mesokit-runner-bench-{}", std::process::id()));
    let tmp = dir.join("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    let script = dir.join("answer.sh");
    std::fs::write(
        &script,
        "#!/bin/sh\necho '{\"timestamp\":1,\"processes\":1}' > \"$2\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let rt1 = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let runner = Runner::new(&tmp);
    println!(
        "{calls} calls per row, raw and runner alternating in rounds of {ROUND}; tokio multi-thread runtime, 2 workers\n"
    );
    println!(
        "| program | in flight | raw calls/s | raw p50 | raw p99 | raw cpu/call | runner calls/s | runner p50 | runner p99 | runner cpu/call | runner/raw |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    let script = script.to_str().unwrap().to_owned();
    for (name, program) in [("/bin/true", "/bin/true"), ("sh script", script.as_str())] {
        let key = if name == "/bin/true" { "true" } else { "sh" };
        if !programs.split(',').any(|p| p == key) {
            continue;
        }
        let inv = Arc::new(Invocation::new(
            "bench",
            program,
            br#"{"container_id":{"value":"c"}}"#.to_vec(),
        ));
        for &parallel in &in_flight {
            let mut accs: [Acc; 4] = Default::default();
            // Warm-up, then the timed rounds.
            for round in 0..=calls.div_ceil(ROUND) {
                let mut warm: [Acc; 4] = Default::default();
                let [raw, tok, run, run1] = if round == 0 { &mut warm } else { &mut accs };
                if do_raw {
                    raw_round(program, &dir, ROUND, parallel, raw);
                }
                if do_tokio {
                    tokio_round(&rt, program, &dir, ROUND, parallel, tok);
                }
                if do_runner {
                    runner_round(&rt, &runner, &inv, ROUND, parallel, run);
                }
                if do_runner1 {
                    runner_round(&rt1, &runner, &inv, ROUND, parallel, run1);
                }
            }
            let [raw, tok, run, run1] = accs;
            eprintln!(
                "{name}, {parallel} in flight: own CPU/call (this process, not its children): raw {:.1} µs, tokio {:.1} µs, runner {:.1} µs, runner1 {:.1} µs",
                raw.own_per_call(),
                tok.own_per_call(),
                run.own_per_call(),
                run1.own_per_call()
            );
            let (rc, rp50, rp99, rcpu) = raw.row();
            let (hc, hp50, hp99, hcpu) = run.row();
            println!(
                "| {name} | {parallel} | {rc:.0} | {rp50:.0?} | {rp99:.0?} | {rcpu:.0?} | {hc:.0} | {hp50:.0?} | {hp99:.0?} | {hcpu:.0?} | {:.2}x |",
                hc / rc
            );
            if do_tokio {
                let (tc, tp50, tp99, tcpu) = tok.row();
                println!(
                    "| {name}, plain tokio spawn + wait | {parallel} | | | | | {tc:.0} | {tp50:.0?} | {tp99:.0?} | {tcpu:.0?} | {:.2}x |",
                    tc / rc
                );
            }
            if do_runner1 {
                let (tc, tp50, tp99, tcpu) = run1.row();
                println!(
                    "| {name}, runner on a current-thread runtime | {parallel} | | | | | {tc:.0} | {tp50:.0?} | {tp99:.0?} | {tcpu:.0?} | {:.2}x |",
                    tc / rc
                );
            }
        }
    }
    // The runner's private directory goes with it.
    drop(runner);
    let left = std::fs::read_dir(&tmp).unwrap().count();
    assert_eq!(left, 0, "the runner left temp files behind");
    let _ = std::fs::remove_dir_all(&dir);
}
