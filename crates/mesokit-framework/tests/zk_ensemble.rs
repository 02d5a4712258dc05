//! A three-server ZooKeeper ensemble: when the server a client talks to dies, the session
//! moves to another member with its ephemeral nodes, watches and the store's writes intact.

#[path = "support/zk.rs"]
mod support;

use std::time::Duration;

use mesokit_framework::store::{Store, StoreError, Write, ZkStore};
use mesokit_framework::zk::{CreateMode, WatchEventKind, ZkClient, ZkError};
use support::{ZkServer, within};

fn put(key: &str, value: &[u8]) -> Write {
    Write::Put {
        key: key.into(),
        value: value.to_vec(),
    }
}

#[tokio::test]
async fn a_session_moves_to_another_member_when_its_server_dies() {
    let mut servers = ZkServer::start_ensemble(3);
    let hosts: Vec<String> = servers.iter().map(|s| s.addr()).collect();
    let url = format!("zk://{}", hosts.join(","));
    // Both sessions start on the first host of the list.
    let zk = ZkClient::connect(&url).await.unwrap();
    let sid = zk.session_id();
    zk.create("/e", b"", CreateMode::Ephemeral).await.unwrap();
    let (_, watch) = zk.exists_w("/later").await.unwrap();
    let store = ZkStore::open(&format!("{url}/ens"), "x").await.unwrap();
    store.apply(vec![put("before", b"1")]).await.unwrap();

    servers[0].stop();
    within(90, "store write after the failover", async {
        loop {
            match store.apply(vec![put("after", b"2")]).await {
                Ok(()) => break,
                Err(StoreError::Unavailable(_)) => {
                    tokio::time::sleep(Duration::from_millis(100)).await
                }
                Err(e) => panic!("unexpected store error: {e}"),
            }
        }
    })
    .await;
    let e = within(90, "session moved", async {
        loop {
            match zk.exists("/e").await {
                Err(ZkError::ConnectionLoss(_)) => {
                    tokio::time::sleep(Duration::from_millis(100)).await
                }
                r => return r,
            }
        }
    })
    .await;
    assert!(
        e.unwrap().is_some(),
        "the ephemeral node lives on with the session"
    );
    assert_eq!(zk.session_id(), sid);

    let other = ZkClient::connect(&format!("zk://{}", hosts[2]))
        .await
        .unwrap();
    other
        .create("/later", b"", CreateMode::Persistent)
        .await
        .unwrap();
    assert_eq!(
        within(60, "watch after the move", watch)
            .await
            .unwrap()
            .kind,
        WatchEventKind::NodeCreated
    );
    assert_eq!(
        store.load().await.unwrap(),
        vec![
            ("after".to_string(), b"2".to_vec()),
            ("before".to_string(), b"1".to_vec()),
        ]
    );
}
