//! High availability against a real ZooKeeper: leader election with fencing, and Mesos
//! master detection from `json.info_` nodes.

#[path = "support/zk.rs"]
mod support;

use std::time::Duration;

use mesokit_framework::store::{Store, StoreError, Write, ZkStore};
use mesokit_framework::zk::election::{LeaderElection, LeadershipLost};
use mesokit_framework::zk::master::{MasterDetector, leading_master};
use mesokit_framework::zk::{CreateMode, ZkClient, ZkOptions, ZkUrl};
use mesokit_proto::json;
use mesokit_proto::v1::{Address, MasterInfo};
use support::{Proxy, shared, within};

fn put(key: &str, value: &[u8]) -> Write {
    Write::Put {
        key: key.into(),
        value: value.to_vec(),
    }
}

async fn direct() -> ZkClient {
    ZkClient::connect(&shared().url("")).await.unwrap()
}

#[tokio::test]
async fn closing_the_leaders_session_hands_over_and_fences_its_writes() {
    let zk_a = direct().await;
    let zk_b = direct().await;
    let mut a = LeaderElection::new(zk_a.clone(), "/ha-close/leader", "a").unwrap();
    let mut b = LeaderElection::new(zk_b.clone(), "/ha-close/leader", "b").unwrap();
    let lead_a = within(30, "a leads", a.wait_for_leadership())
        .await
        .unwrap();
    let standby = tokio::spawn(async move {
        let l = b.wait_for_leadership().await;
        (b, l)
    });
    // `a`'s store writes through its own session, fenced by `a`'s candidate node.
    let store_a = ZkStore::with_client(direct().await, "/ha-close/state")
        .await
        .unwrap()
        .with_fence(&lead_a.fence())
        .unwrap();
    store_a
        .apply(vec![put("framework_id", b"fw")])
        .await
        .unwrap();
    let observer = LeaderElection::new(direct().await, "/ha-close/leader", "o").unwrap();
    assert_eq!(observer.leader_id().await.unwrap().as_deref(), Some("a"));
    assert!(!standby.is_finished(), "b must wait while a leads");

    zk_a.close().await;
    assert_eq!(lead_a.lost().await, LeadershipLost::Closed);
    let (_b, lead_b) = within(30, "b takes over", standby).await.unwrap();
    let lead_b = lead_b.unwrap();
    assert_eq!(observer.leader_id().await.unwrap().as_deref(), Some("b"));

    let e = store_a
        .apply(vec![put("tasks/t1", b"from-a")])
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::Fenced(_)), "{e:?}");
    let store_b = ZkStore::with_client(zk_b.clone(), "/ha-close/state")
        .await
        .unwrap()
        .with_fence(&lead_b.fence())
        .unwrap();
    store_b
        .apply(vec![put("tasks/t1", b"from-b")])
        .await
        .unwrap();
    assert_eq!(
        store_b.load().await.unwrap(),
        vec![
            ("framework_id".to_string(), b"fw".to_vec()),
            ("tasks/t1".to_string(), b"from-b".to_vec())
        ],
        "the deposed leader wrote nothing after losing"
    );
}

#[tokio::test]
async fn a_partitioned_leader_loses_and_the_standby_takes_over() {
    let proxy = Proxy::start(shared().addr()).await;
    let url = ZkUrl::parse(&proxy.url("")).unwrap();
    let opts = ZkOptions {
        session_timeout: Duration::from_secs(6),
        ..ZkOptions::default()
    };
    let zk_a = ZkClient::connect_with(&url, opts).await.unwrap();
    let mut a = LeaderElection::new(zk_a.clone(), "/ha-part/leader", "a").unwrap();
    let lead_a = a.wait_for_leadership().await.unwrap();
    // Two stores for `a`: one on the election's session, one on a session that is not cut.
    let same_session = ZkStore::with_client(zk_a.clone(), "/ha-part/state")
        .await
        .unwrap()
        .with_fence(&lead_a.fence())
        .unwrap();
    let other_session = ZkStore::with_client(direct().await, "/ha-part/state")
        .await
        .unwrap()
        .with_fence(&lead_a.fence())
        .unwrap();
    same_session.apply(vec![put("k", b"a1")]).await.unwrap();

    let mut b = LeaderElection::new(direct().await, "/ha-part/leader", "b").unwrap();
    let standby = tokio::spawn(async move { b.wait_for_leadership().await });

    proxy.cut();
    // While cut off, the session is not over yet: writes are only unavailable.
    let e = same_session.apply(vec![put("k", b"a2")]).await.unwrap_err();
    assert!(matches!(e, StoreError::Unavailable(_)), "{e:?}");
    assert_eq!(
        within(60, "a notices", lead_a.lost()).await,
        LeadershipLost::SessionExpired
    );
    let lead_b = within(60, "b takes over", standby).await.unwrap().unwrap();
    assert!(
        lead_b.node().ends_with("candidate-0000000001"),
        "{}",
        lead_b.node()
    );

    let e = same_session.apply(vec![put("k", b"a3")]).await.unwrap_err();
    assert!(matches!(e, StoreError::Fenced(_)), "{e:?}");
    let e = other_session
        .apply(vec![put("k", b"a4")])
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::Fenced(_)), "{e:?}");
    assert!(e.to_string().contains("candidate-0000000000"), "{e}");
    assert_eq!(
        other_session.load().await.unwrap(),
        vec![("k".to_string(), b"a1".to_vec())]
    );
}

fn master(id: &str, ip: [u8; 4], port: u32, address: Option<Address>) -> Vec<u8> {
    json::encode(&MasterInfo {
        id: id.into(),
        ip: u32::from_le_bytes(ip),
        port,
        hostname: Some(format!("{id}.invalid")),
        address,
        ..Default::default()
    })
}

#[tokio::test]
async fn the_lowest_json_info_node_is_the_leading_master() {
    let admin = direct().await;
    admin.create_all("/mesos-a").await.unwrap();
    // Mesos also keeps other nodes there (e.g. log replicas); they are not masters.
    admin
        .create("/mesos-a/log_replicas", b"", CreateMode::Persistent)
        .await
        .unwrap();
    let m1 = direct().await;
    let m2 = direct().await;
    let addr = |host: &str, port| {
        Some(Address {
            hostname: Some(host.into()),
            ip: Some("127.0.0.1".into()),
            port,
        })
    };
    m1.create(
        "/mesos-a/json.info_",
        &master("m1", [127, 0, 0, 1], 5050, addr("localhost", 5050)),
        CreateMode::EphemeralSequential,
    )
    .await
    .unwrap();
    m2.create(
        "/mesos-a/json.info_",
        &master("m2", [127, 0, 0, 2], 5051, None),
        CreateMode::EphemeralSequential,
    )
    .await
    .unwrap();

    let mut d = MasterDetector::start(&shared().url("/mesos-a"))
        .await
        .unwrap();
    let cur = d.current().unwrap();
    assert_eq!(cur.base_url, "http://localhost:5050");
    assert_eq!(cur.info.id, "m1");
    assert!(cur.node.starts_with("/mesos-a/json.info_"), "{}", cur.node);

    m1.close().await;
    let next = within(30, "leader change", d.changed())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(next.info.id, "m2");
    assert_eq!(next.base_url, "http://m2.invalid:5051");

    m2.close().await;
    assert_eq!(within(30, "no master", d.changed()).await.unwrap(), None);
}

#[tokio::test]
async fn detection_waits_for_a_master_and_reports_bad_info() {
    let admin = direct().await;
    let mut d = MasterDetector::with_client(direct().await, "/mesos-b")
        .await
        .unwrap();
    assert_eq!(d.current(), None, "no path yet, no master");
    admin.create_all("/mesos-b").await.unwrap();
    admin
        .create(
            "/mesos-b/json.info_",
            &master("m9", [10, 1, 2, 3], 5050, None),
            CreateMode::EphemeralSequential,
        )
        .await
        .unwrap();
    let m = within(30, "a master appears", async {
        loop {
            if let Some(m) = d.changed().await.unwrap() {
                return m;
            }
        }
    })
    .await;
    assert_eq!(m.info.id, "m9");

    // Legacy-only fields: the IP number in network byte order.
    let legacy = json::encode(&MasterInfo {
        id: "old".into(),
        ip: u32::from_le_bytes([10, 1, 2, 3]),
        port: 5050,
        ..Default::default()
    });
    admin.create_all("/mesos-c").await.unwrap();
    admin
        .create(
            "/mesos-c/json.info_",
            &legacy,
            CreateMode::PersistentSequential,
        )
        .await
        .unwrap();
    let m = leading_master(&admin, "/mesos-c").await.unwrap().unwrap();
    assert_eq!(m.base_url, "http://10.1.2.3:5050");

    admin.create_all("/mesos-d").await.unwrap();
    admin
        .create(
            "/mesos-d/json.info_",
            b"{not json",
            CreateMode::PersistentSequential,
        )
        .await
        .unwrap();
    let e = leading_master(&admin, "/mesos-d").await.unwrap_err();
    assert!(
        e.to_string().contains("/mesos-d/json.info_0000000000"),
        "{e}"
    );
    assert_eq!(leading_master(&admin, "/nothing-here").await.unwrap(), None);
}
