//! What the progress regex costs the executor ([`mesokit_executor::progress`]): lines per
//! second through the tracker (tailing alone, lines that do not match, lines that do), the
//! longest a single poll keeps the executor's loop busy, and an idle poll.
//!
//! `cargo bench -p mesokit-executor --bench progress_regex` (figures in docs/benchmarks.md).
//! Plain `std::time`, no criterion: each figure is the best of a few runs over a file of a
//! million lines, which is what the executor reads.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use mesokit_executor::progress::{DEFAULT_REGEX, Pattern, READ_BUDGET, Tail, Tracker, Tracking};

const LINES: usize = 1_000_000;
const RUNS: usize = 5;

fn write_lines(path: &Path, line: impl Fn(usize) -> String) -> u64 {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    for i in 0..LINES {
        writeln!(f, "{}", line(i)).unwrap();
    }
    f.flush().unwrap();
    std::fs::metadata(path).unwrap().len()
}

fn tracker(file: &Path) -> Tracker {
    Tracker::new(Tracking {
        pattern: Pattern::new(DEFAULT_REGEX).unwrap(),
        files: vec![file.to_owned()],
        progress_file: file.to_owned(),
        max_message: 512,
    })
}

/// The best of `RUNS` timings of `f`.
fn best(mut f: impl FnMut()) -> Duration {
    (0..RUNS)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .min()
        .unwrap()
}

fn report(what: &str, bytes: u64, took: Duration) {
    let s = took.as_secs_f64();
    println!(
        "{what:<34} {:>8.1} ms  {:>6.2} M lines/s  {:>7.1} MB/s",
        s * 1e3,
        LINES as f64 / s / 1e6,
        bytes as f64 / s / 1e6
    );
}

fn main() {
    let dir: PathBuf =
        std::env::temp_dir().join(format!("mesokit-progress-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (noise, progress) = (dir.join("noise"), dir.join("progress"));
    let noise_bytes = write_lines(&noise, |i| {
        format!("2026-11-22 08:00:00 INFO worker: processed record {i} of the input, all well")
    });
    let progress_bytes = write_lines(&progress, |i| {
        format!("progress: {} processed record {i} of the input", i % 101)
    });
    println!("{LINES} lines per file, best of {RUNS} runs, regex {DEFAULT_REGEX}");

    let tail_only = best(|| {
        let mut tail = Tail::new(&noise);
        let mut n = 0usize;
        tail.read(usize::MAX, &mut |_| n += 1).unwrap();
        assert_eq!(n, LINES);
    });
    report("tailing alone (no regex)", noise_bytes, tail_only);
    for (what, path, bytes) in [
        ("lines that do not match", &noise, noise_bytes),
        ("progress lines (all match)", &progress, progress_bytes),
    ] {
        let took = best(|| {
            let mut t = tracker(path);
            while t.poll() > 0 {}
            assert!(t.take_change().is_some() == (path == &progress));
        });
        report(what, bytes, took);
    }

    // One poll reads at most READ_BUDGET bytes of a file: the longest it holds the loop.
    let stall = best(|| {
        let mut t = tracker(&progress);
        t.poll();
    });
    println!(
        "one full poll ({} KiB of progress lines)   {:>8.2} ms",
        READ_BUDGET / 1024,
        stall.as_secs_f64() * 1e3
    );
    // A poll with nothing new (three files, as for a task), many times.
    let files = vec![dir.join("stdout"), dir.join("stderr"), dir.join("p")];
    for f in &files {
        std::fs::write(f, "x\n").unwrap();
    }
    let mut idle = Tracker::new(Tracking {
        pattern: Pattern::new(DEFAULT_REGEX).unwrap(),
        files: files.clone(),
        progress_file: files[2].clone(),
        max_message: 512,
    });
    idle.poll();
    let n = 10_000u32;
    let t = Instant::now();
    for _ in 0..n {
        idle.poll();
    }
    println!(
        "idle poll of 3 files                {:>8.2} us",
        t.elapsed().as_secs_f64() * 1e6 / f64::from(n)
    );
    let _ = std::fs::remove_dir_all(dir);
}
