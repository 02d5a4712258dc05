//! ZooKeeper goes away and comes back (killed, restarted on the same port and data dir):
//! the store reports `Unavailable` meanwhile, the client resumes its session, and a caller
//! that retries loses no write.

#[path = "support/zk.rs"]
mod support;

use std::time::Duration;

use mesokit_framework::store::{Store, StoreError, Write, ZkStore};
use mesokit_framework::zk::{CreateMode, SessionState, ZkClient, ZkOptions, ZkUrl};
use support::{ZkServer, within};

fn put(key: &str, value: &[u8]) -> Write {
    Write::Put {
        key: key.into(),
        value: value.to_vec(),
    }
}

#[tokio::test]
async fn a_restarted_zookeeper_loses_no_write() {
    let mut server = ZkServer::start();
    let url = ZkUrl::parse(&server.url("")).unwrap();
    let opts = ZkOptions {
        // Long enough to outlive the server's restart (Java start-up takes seconds).
        session_timeout: Duration::from_secs(30),
        ..ZkOptions::default()
    };
    let zk = ZkClient::connect_with(&url, opts).await.unwrap();
    let sid = zk.session_id();
    zk.create("/alive", b"", CreateMode::Ephemeral)
        .await
        .unwrap();
    let store = ZkStore::with_client(zk.clone(), "/restart").await.unwrap();
    store
        .apply(
            (0..10)
                .map(|i| put(&format!("tasks/t{i}"), b"staging"))
                .collect(),
        )
        .await
        .unwrap();

    server.stop();
    let e = store
        .apply(vec![put("tasks/t0", b"running")])
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::Unavailable(_)), "{e:?}");
    assert!(e.to_string().contains("retry"), "{e}");

    // The server comes back while the caller keeps retrying the same batch.
    let restart = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(500));
        server.restart();
        server
    });
    let batch: Vec<Write> = (0..10)
        .map(|i| put(&format!("tasks/t{i}"), b"running"))
        .chain([put("framework_id", b"fw-9")])
        .collect();
    let mut unavailable = 0;
    within(120, "write after the restart", async {
        loop {
            match store.apply(batch.clone()).await {
                Ok(()) => break,
                Err(StoreError::Unavailable(_)) => {
                    unavailable += 1;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("unexpected store error while ZooKeeper restarts: {e}"),
            }
        }
    })
    .await;
    let _server = restart.join().unwrap();
    assert!(unavailable > 0, "the retries hit the outage");

    // Same session: its ephemeral node is still there.
    assert_eq!(zk.state(), SessionState::Connected);
    assert_eq!(zk.session_id(), sid);
    assert!(zk.exists("/alive").await.unwrap().is_some());

    // Everything written before and after the outage is there, read by a new session.
    let fresh = ZkStore::open(&_server.url("/restart"), "x").await.unwrap();
    let got = fresh.load().await.unwrap();
    assert_eq!(got.len(), 11);
    assert_eq!(got[0], ("framework_id".to_string(), b"fw-9".to_vec()));
    assert!(got[1..].iter().all(|(_, v)| v == b"running"), "{got:?}");
}

#[tokio::test]
async fn an_outage_longer_than_the_session_is_ridden_out_on_a_new_session() {
    let mut server = ZkServer::start();
    let opts = ZkOptions {
        session_timeout: Duration::from_secs(4),
        ..ZkOptions::default()
    };
    let store = ZkStore::open_with(&server.url("/long"), "x", opts)
        .await
        .unwrap();
    let first = store.client();
    store.apply(vec![put("framework_id", b"fw")]).await.unwrap();

    server.stop();
    // Down for longer than the session timeout: the client gives the session up.
    assert_eq!(
        within(60, "session given up", first.ended()).await,
        SessionState::Expired
    );
    let e = store.apply(vec![put("tasks/a", b"1")]).await.unwrap_err();
    assert!(matches!(e, StoreError::Unavailable(_)), "{e:?}");
    assert!(e.to_string().contains("expired"), "{e}");

    server.restart();
    within(60, "write on a new session", async {
        loop {
            match store.apply(vec![put("tasks/a", b"1")]).await {
                Ok(()) => break,
                Err(StoreError::Unavailable(_)) => {
                    tokio::time::sleep(Duration::from_millis(100)).await
                }
                Err(e) => panic!("unexpected store error: {e}"),
            }
        }
    })
    .await;
    assert_ne!(store.client().session_id(), first.session_id());
    assert_eq!(
        store.load().await.unwrap(),
        vec![
            ("framework_id".to_string(), b"fw".to_vec()),
            ("tasks/a".to_string(), b"1".to_vec()),
        ]
    );
}
