//! Runner throughput and latency next to a raw spawn/wait loop of the same program, in the
//! same run: `cargo bench -p mesokit-hooks --bench runner` (`RUNNER_BENCH_CALLS` sets the
//! calls per row, default 2000). Rows: `/bin/true`, and a `/bin/sh` script that writes a
//! small JSON answer; each sequential, then with 4 calls in flight (raw: 4 threads; runner: 4
//! tasks). Each call of the runner creates, writes, reads and removes its three temp files;
//! the raw loop passes the same three arguments and creates nothing. Raw and runner calls
//! alternate in rounds of 100 so that both see the same machine load.

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
}

impl Acc {
    fn row(mut self) -> (f64, Duration, Duration) {
        self.lat.sort();
        let n = self.lat.len();
        (
            n as f64 / self.busy.as_secs_f64(),
            self.lat[n / 2],
            self.lat[(n * 99 / 100).min(n - 1)],
        )
    }
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
    let start = Instant::now();
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
    for h in handles {
        acc.lat.extend(h.join().unwrap());
    }
    acc.busy += start.elapsed();
}

fn runner_round(
    rt: &tokio::runtime::Runtime,
    runner: &Runner,
    inv: &Arc<Invocation>,
    calls: usize,
    parallel: usize,
    acc: &mut Acc,
) {
    let start = Instant::now();
    let lat = rt.block_on(async {
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..parallel {
            let (runner, inv) = (runner.clone(), inv.clone());
            set.spawn(async move {
                let mut lat = Vec::new();
                for _ in 0..calls / parallel {
                    let t = Instant::now();
                    runner.run(&inv).await.expect("run");
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
    });
    acc.lat.extend(lat);
    acc.busy += start.elapsed();
}

fn main() {
    let calls: usize = std::env::var("RUNNER_BENCH_CALLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
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
    let runner = Runner::new(&tmp);
    println!(
        "{calls} calls per row, raw and runner alternating in rounds of {ROUND}; tokio multi-thread runtime, 2 workers\n"
    );
    println!(
        "| program | in flight | raw calls/s | raw p50 | raw p99 | runner calls/s | runner p50 | runner p99 | runner/raw |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for program in ["/bin/true", script.to_str().unwrap()] {
        let inv = Arc::new(Invocation::new(
            "bench",
            program,
            br#"{"container_id":{"value":"c"}}"#.to_vec(),
        ));
        for parallel in [1, 4] {
            // Warm-up.
            raw_round(program, &dir, ROUND, parallel, &mut Acc::default());
            runner_round(&rt, &runner, &inv, ROUND, parallel, &mut Acc::default());
            let (mut raw, mut run) = (Acc::default(), Acc::default());
            for _ in 0..calls.div_ceil(ROUND) {
                raw_round(program, &dir, ROUND, parallel, &mut raw);
                runner_round(&rt, &runner, &inv, ROUND, parallel, &mut run);
            }
            let (rc, rp50, rp99) = raw.row();
            let (hc, hp50, hp99) = run.row();
            let name = if program == "/bin/true" {
                "/bin/true"
            } else {
                "sh script"
            };
            println!(
                "| {name} | {parallel} | {rc:.0} | {rp50:.0?} | {rp99:.0?} | {hc:.0} | {hp50:.0?} | {hp99:.0?} | {:.2}x |",
                hc / rc
            );
        }
    }
    let left = std::fs::read_dir(&tmp).unwrap().count();
    assert_eq!(left, 0, "the runner left temp files behind");
    let _ = std::fs::remove_dir_all(&dir);
}
