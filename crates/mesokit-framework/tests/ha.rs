//! `--store` parsing and several scheduler instances over one ZooKeeper: a leader process
//! killed with SIGKILL is replaced by the standby, which finds everything it wrote.

#[path = "support/zk.rs"]
mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use mesokit_framework::ha::{AnyStore, ZkHa};
use mesokit_framework::store::{Store, StoreError, Write};
use mesokit_framework::zk::ZkOptions;
use mesokit_framework::zk::election::LeadershipLost;
use support::{shared, within};

fn put(key: &str, value: &[u8]) -> Write {
    Write::Put {
        key: key.into(),
        value: value.to_vec(),
    }
}

fn short_session() -> ZkOptions {
    ZkOptions {
        session_timeout: Duration::from_secs(4),
        ..ZkOptions::default()
    }
}

#[tokio::test]
async fn store_argument_picks_the_backend() {
    let id = mesokit_framework::ha::default_instance_id();
    assert!(id.ends_with(&format!(":{}", std::process::id())), "{id}");
    assert!(matches!(
        AnyStore::open("none", "fw").await.unwrap(),
        AnyStore::Memory(_)
    ));
    let dir = std::env::temp_dir().join(format!("mesokit-ha-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("state.redb");
    let s = AnyStore::open(path.to_str().unwrap(), "fw").await.unwrap();
    assert!(matches!(s, AnyStore::File(_)));
    s.apply(vec![put("framework_id", b"f")]).await.unwrap();
    assert_eq!(s.load().await.unwrap().len(), 1);
    drop(s);
    std::fs::remove_dir_all(&dir).unwrap();

    let s = AnyStore::open(&shared().url(""), "fw-arg").await.unwrap();
    let AnyStore::Zk(z) = &s else {
        panic!("expected a ZooKeeper store")
    };
    assert_eq!(z.root(), "/mesokit/fw-arg");

    for bad in ["", "http://x/y", "zk://h:port/x"] {
        let e = AnyStore::open(bad, "fw").await.unwrap_err();
        assert!(!e.to_string().is_empty());
        if !bad.is_empty() {
            assert!(e.to_string().contains(bad), "{e}");
        }
    }
}

#[tokio::test]
async fn a_stepped_down_leader_is_fenced_and_the_standby_continues() {
    let url = shared().url("");
    let mut one = ZkHa::connect(&url, "fw-step", "one").await.unwrap();
    let mut two = ZkHa::connect(&url, "fw-step", "two").await.unwrap();
    let (lead_one, store_one) = one.wait_for_leadership().await.unwrap();
    store_one
        .apply(vec![
            put("framework_id", b"fw-1"),
            put("tasks/a", b"running"),
        ])
        .await
        .unwrap();
    assert_eq!(two.leader_id().await.unwrap().as_deref(), Some("one"));
    let standby = tokio::spawn(async move {
        let r = two.wait_for_leadership().await;
        (two, r)
    });

    one.client().close().await;
    assert_eq!(lead_one.lost().await, LeadershipLost::Closed);
    let e = store_one
        .apply(vec![put("tasks/a", b"killed")])
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::Fenced(_)), "{e:?}");

    let (two, r) = within(30, "standby leads", standby).await.unwrap();
    let (_lead_two, store_two) = r.unwrap();
    assert_eq!(two.leader_id().await.unwrap().as_deref(), Some("two"));
    assert_eq!(
        store_two.load().await.unwrap(),
        vec![
            ("framework_id".to_string(), b"fw-1".to_vec()),
            ("tasks/a".to_string(), b"running".to_vec()),
        ],
        "the candidate nodes under leader/ are not keys"
    );
}

/// The leader process of the test below: leads, writes, says so, then waits to be killed.
#[tokio::test]
async fn child_leader_process() {
    let Ok(url) = std::env::var("MESOKIT_HA_CHILD_URL") else {
        return; // only meaningful as the child of the test below
    };
    let mut ha = ZkHa::connect_with(&url, "fw-kill", "child", short_session())
        .await
        .unwrap();
    let (_lead, store) = ha.wait_for_leadership().await.unwrap();
    store
        .apply(vec![
            put("framework_id", b"fw-child"),
            put("tasks/t", b"running"),
        ])
        .await
        .unwrap();
    println!("LEADING");
    tokio::time::sleep(Duration::from_secs(600)).await;
}

/// Kills the child process even when the test fails half-way.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn a_killed_leader_process_is_replaced_by_the_standby() {
    let url = shared().url("");
    let mut child = KillOnDrop(
        Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "child_leader_process",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("MESOKIT_HA_CHILD_URL", &url)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let stdout = child.0.stdout.take().unwrap();
    let leading = std::thread::spawn(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .any(|l| l.contains("LEADING"))
    });
    let leading = within(60, "child leads", async {
        loop {
            if leading.is_finished() {
                return leading.join().unwrap();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(leading, "the child process became leader");

    let mut standby = ZkHa::connect_with(&url, "fw-kill", "standby", short_session())
        .await
        .unwrap();
    assert_eq!(standby.leader_id().await.unwrap().as_deref(), Some("child"));
    child.0.kill().unwrap();
    child.0.wait().unwrap();

    // ZooKeeper ends the dead leader's session after its timeout; the standby takes over.
    let (_lead, store) = within(60, "standby takes over", standby.wait_for_leadership())
        .await
        .unwrap();
    assert_eq!(
        standby.leader_id().await.unwrap().as_deref(),
        Some("standby")
    );
    assert_eq!(
        store.load().await.unwrap(),
        vec![
            ("framework_id".to_string(), b"fw-child".to_vec()),
            ("tasks/t".to_string(), b"running".to_vec()),
        ]
    );
    store
        .apply(vec![put("tasks/t", b"reconciled")])
        .await
        .unwrap();
}

#[tokio::test]
async fn the_scheduler_is_stopped_when_leadership_is_lost() {
    let mut ha = ZkHa::connect(&shared().url(""), "fw-run", "one")
        .await
        .unwrap();
    let session = ha.client().clone();
    let (started_tx, started_rx) = tokio::sync::oneshot::channel();
    let closer = tokio::spawn(async move {
        started_rx.await.unwrap();
        session.close().await;
    });
    let r = within(
        30,
        "scheduler stopped",
        ha.run_as_leader(async move |store| {
            store.apply(vec![put("framework_id", b"f")]).await.unwrap();
            started_tx.send(()).unwrap();
            // A scheduler that would run forever.
            std::future::pending::<()>().await
        }),
    )
    .await;
    let e = r.unwrap_err();
    assert!(matches!(e, StoreError::Fenced(_)), "{e:?}");
    closer.await.unwrap();
}
