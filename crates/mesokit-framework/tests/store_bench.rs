//! Store figures for docs/benchmarks.md (ignored by default; a measurement, not a test):
//!
//!     cargo test --release -p mesokit-framework --test store_bench -- --ignored --nocapture
//!
//! Writes N task records of 200 bytes (in batches of 1000), then times single-record
//! updates and a full load by a new store instance (what a restarted scheduler does), for
//! the file store and for ZooKeeper (a real server on 127.0.0.1).

#[path = "support/zk.rs"]
mod support;

use std::time::{Duration, Instant};

use mesokit_framework::store::{FileStore, Store, Write, ZkStore};

fn put(i: usize, byte: u8) -> Write {
    Write::Put {
        key: format!("tasks/web.{i}"),
        value: vec![byte; 200],
    }
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

/// Writes, updates, drops the store, opens a new one and loads everything.
async fn run<S: Store>(name: &str, n: usize, store: S, reopen: impl AsyncFnOnce() -> S) {
    let writes: Vec<Write> = (0..n).map(|i| put(i, b'x')).collect();
    let t = Instant::now();
    for c in writes.chunks(1000) {
        store.apply(c.to_vec()).await.unwrap();
    }
    let write = t.elapsed();
    let updates = 200;
    let t = Instant::now();
    for i in 0..updates {
        store.apply(vec![put(i, b'y')]).await.unwrap();
    }
    let update = t.elapsed() / updates as u32;
    drop(store);
    let fresh = reopen().await;
    let t = Instant::now();
    let all = fresh.load().await.unwrap();
    let load = t.elapsed();
    assert_eq!(all.len(), n, "every record is read back");
    assert!(all.iter().filter(|(_, v)| v[0] == b'y').count() == updates);
    println!(
        "| {name} | {n} | {} | {} | {} |",
        ms(write),
        ms(update),
        ms(load)
    );
}

#[tokio::test]
#[ignore = "measurement; run with --ignored --nocapture"]
async fn store_figures() {
    println!(
        "| store | records | write all (batches of 1000) | one update | load all (new instance) |"
    );
    println!("|---|---|---|---|---|");
    for n in [10_000, 100_000] {
        let dir = std::env::temp_dir().join(format!("mesokit-bench-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("s.redb");
        let p = path.clone();
        run(
            "file (redb)",
            n,
            FileStore::open(&path).unwrap(),
            async move || FileStore::open(&p).unwrap(),
        )
        .await;
        std::fs::remove_dir_all(&dir).unwrap();

        let url = support::shared().url(&format!("/bench{n}"));
        let s = ZkStore::open(&url, "x").await.unwrap();
        run("ZooKeeper 3.8, 127.0.0.1", n, s, async move || {
            ZkStore::open(&url, "x").await.unwrap()
        })
        .await;
    }
}
