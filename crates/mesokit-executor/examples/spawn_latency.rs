//! How long `process::spawn` takes: from the call until the task's
//! program has been exec'd (what a launch waits for before TASK_RUNNING), for a shell task
//! writing to files in a sandbox, as the executor starts tasks (huge pages opted out, on a
//! current-thread runtime).
//!
//!   cargo run --release -p mesokit-executor --example spawn_latency [rounds] [idle ms]
//!
//! With `idle ms`, the process sleeps that long before each spawn, as an executor waits for
//! its next launch (an idle machine lets its CPUs sleep meanwhile).

use std::time::{Duration, Instant};

use mesokit_executor::process::{self, CommandSpec, Output};

fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(500);
    let idle = Duration::from_millis(
        std::env::args()
            .nth(2)
            .and_then(|n| n.parse().ok())
            .unwrap_or(0),
    );
    process::disable_huge_pages().expect("prctl");
    let dir = std::env::temp_dir().join(format!("mesokit-spawn-latency-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (mut spawn, mut whole) = (Vec::new(), Vec::new());
    rt.block_on(async {
        for _ in 0..rounds {
            let mut spec = CommandSpec::shell("exit 0");
            spec.cwd = Some(dir.clone());
            spec.stdout = Output::File(dir.join("stdout"));
            spec.stderr = Output::File(dir.join("stderr"));
            if !idle.is_zero() {
                tokio::time::sleep(idle).await;
            }
            let start = Instant::now();
            let mut child = process::spawn(&spec).await.expect("spawn");
            spawn.push(start.elapsed());
            assert!(child.wait().await.unwrap().success());
            whole.push(start.elapsed());
        }
    });
    let _ = std::fs::remove_dir_all(&dir);
    let show = |v: &mut Vec<Duration>| {
        v.sort();
        let at = |q: f64| v[((v.len() - 1) as f64 * q) as usize].as_secs_f64() * 1e6;
        format!("median {:.0} µs, p90 {:.0} µs", at(0.5), at(0.9))
    };
    println!(
        "{rounds} spawns of `sh -c 'exit 0'`: spawn {}; spawn + wait {}",
        show(&mut spawn),
        show(&mut whole)
    );
}
