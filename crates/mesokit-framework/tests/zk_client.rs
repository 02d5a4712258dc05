//! Our ZooKeeper client against a real server (Debian's `zookeeper`), one server shared by
//! every test here, each test in its own chroot.

#[path = "support/zk.rs"]
mod support;

use std::time::Duration;

use mesokit_framework::zk::{
    CreateMode, ErrorCode, Op, OpResult, SessionState, WatchEventKind, ZkClient, ZkError,
    ZkOptions, ZkUrl,
};
use support::{shared, within};

async fn client(root: &str) -> ZkClient {
    let url = shared().url("");
    let admin = ZkClient::connect(&url).await.unwrap();
    admin.create_all(root).await.unwrap();
    admin.close().await;
    ZkClient::connect(&shared().url(root)).await.unwrap()
}

fn code(e: &ZkError) -> ErrorCode {
    e.code()
}

#[tokio::test]
async fn crud_with_typed_errors_and_chroot() {
    let zk = client("/crud").await;
    assert_eq!(zk.chroot(), "/crud");
    assert_eq!(zk.state(), SessionState::Connected);

    assert_eq!(
        zk.create("/a", b"one", CreateMode::Persistent)
            .await
            .unwrap(),
        "/a"
    );
    let (data, stat) = zk.get_data("/a").await.unwrap();
    assert_eq!(data, b"one");
    assert_eq!(stat.version, 0);
    assert_eq!(stat.ephemeral_owner, 0);

    let e = zk
        .create("/a", b"", CreateMode::Persistent)
        .await
        .unwrap_err();
    assert_eq!(code(&e), ErrorCode::NodeExists);
    assert_eq!(e.to_string(), "ZooKeeper NodeExists on /a");

    let stat = zk.set_data("/a", b"two", 0).await.unwrap();
    assert_eq!(stat.version, 1);
    let e = zk.set_data("/a", b"three", 0).await.unwrap_err();
    assert_eq!(code(&e), ErrorCode::BadVersion);

    let seq1 = zk
        .create("/a/s-", b"", CreateMode::PersistentSequential)
        .await
        .unwrap();
    let seq2 = zk
        .create("/a/s-", b"", CreateMode::PersistentSequential)
        .await
        .unwrap();
    assert!(
        seq1.starts_with("/a/s-") && seq1.len() == "/a/s-".len() + 10,
        "{seq1}"
    );
    assert!(seq2 > seq1);
    let mut kids = zk.get_children("/a").await.unwrap();
    kids.sort();
    assert_eq!(kids.len(), 2);

    let e = zk.delete("/a", -1).await.unwrap_err();
    assert_eq!(code(&e), ErrorCode::NotEmpty);
    let e = zk.get_data("/missing").await.unwrap_err();
    assert_eq!(code(&e), ErrorCode::NoNode);
    assert_eq!(zk.exists("/missing").await.unwrap(), None);
    let e = zk
        .create("/missing/child", b"", CreateMode::Persistent)
        .await
        .unwrap_err();
    assert_eq!(code(&e), ErrorCode::NoNode);

    // The chroot is invisible from inside and real from outside.
    let root = ZkClient::connect(&shared().url("")).await.unwrap();
    assert_eq!(root.get_data("/crud/a").await.unwrap().0, b"two");
    zk.create_all("/x/y/z").await.unwrap();
    assert!(root.exists("/crud/x/y/z").await.unwrap().is_some());

    // Bad paths are refused before anything is sent.
    for bad in ["relative", "/a//b", "/a/../b"] {
        let e = zk.exists(bad).await.unwrap_err();
        assert!(matches!(e, ZkError::Invalid(_)), "{bad}: {e}");
    }
    // Large data round-trips (ZooKeeper's default limit is 1 MiB per request).
    let big = vec![7u8; 900_000];
    zk.create("/big", &big, CreateMode::Persistent)
        .await
        .unwrap();
    assert_eq!(zk.get_data("/big").await.unwrap().0, big);
}

#[tokio::test]
async fn multi_is_all_or_nothing() {
    let zk = client("/multi").await;
    zk.create("/keep", b"v0", CreateMode::Persistent)
        .await
        .unwrap();
    let ops = vec![
        Op::Create {
            path: "/m1".into(),
            data: b"1".to_vec(),
            mode: CreateMode::Persistent,
        },
        Op::SetData {
            path: "/keep".into(),
            data: b"v1".to_vec(),
            version: -1,
        },
        Op::Check {
            path: "/absent".into(),
            version: -1,
        },
    ];
    let e = zk.multi(&ops).await.unwrap_err();
    assert_eq!(
        e,
        ZkError::Server {
            code: ErrorCode::NoNode,
            path: "/absent".into()
        }
    );
    assert_eq!(
        zk.exists("/m1").await.unwrap(),
        None,
        "nothing of a failed multi is applied"
    );
    assert_eq!(zk.get_data("/keep").await.unwrap().0, b"v0");

    let ops = vec![
        Op::Check {
            path: "/keep".into(),
            version: 0,
        },
        Op::Create {
            path: "/m1".into(),
            data: b"1".to_vec(),
            mode: CreateMode::Persistent,
        },
        Op::Create {
            path: "/m1/child".into(),
            data: vec![],
            mode: CreateMode::Persistent,
        },
        Op::Delete {
            path: "/m1/child".into(),
            version: -1,
        },
        Op::SetData {
            path: "/keep".into(),
            data: b"v1".to_vec(),
            version: 0,
        },
    ];
    let r = zk.multi(&ops).await.unwrap();
    assert_eq!(r[0], OpResult::Check);
    assert_eq!(r[1], OpResult::Create("/m1".into()));
    assert_eq!(r[3], OpResult::Delete);
    assert!(matches!(r[4], OpResult::SetData(s) if s.version == 1));
    assert_eq!(zk.get_data("/keep").await.unwrap().0, b"v1");
    assert_eq!(zk.exists("/m1/child").await.unwrap(), None);

    // A version check that fails names the path and BadVersion.
    let e = zk
        .multi(&[Op::Check {
            path: "/keep".into(),
            version: 0,
        }])
        .await
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::BadVersion);
}

#[tokio::test]
async fn watches_fire_once_per_change() {
    let zk = client("/watch").await;
    let other = client("/watch").await;

    let (stat, w) = zk.exists_w("/n").await.unwrap();
    assert_eq!(stat, None);
    other
        .create("/n", b"a", CreateMode::Persistent)
        .await
        .unwrap();
    let ev = within(30, "NodeCreated", w).await.unwrap();
    assert_eq!(ev.kind, WatchEventKind::NodeCreated);
    assert_eq!(ev.path, "/n", "the event path is relative to the chroot");

    let (_, _, w) = zk.get_data_w("/n").await.unwrap();
    let (kids, cw) = zk.get_children_w("/n").await.unwrap();
    assert!(kids.is_empty());
    other.set_data("/n", b"b", -1).await.unwrap();
    assert_eq!(
        within(30, "NodeDataChanged", w).await.unwrap().kind,
        WatchEventKind::NodeDataChanged
    );

    other
        .create("/n/c", b"", CreateMode::Persistent)
        .await
        .unwrap();
    assert_eq!(
        within(30, "NodeChildrenChanged", cw).await.unwrap().kind,
        WatchEventKind::NodeChildrenChanged
    );

    let (_, _, w) = zk.get_data_w("/n/c").await.unwrap();
    other.delete("/n/c", -1).await.unwrap();
    assert_eq!(
        within(30, "NodeDeleted", w).await.unwrap().kind,
        WatchEventKind::NodeDeleted
    );
}

#[tokio::test]
async fn ephemeral_nodes_vanish_with_their_session() {
    let owner = client("/eph").await;
    let observer = client("/eph").await;
    let node = owner
        .create("/lock-", b"me", CreateMode::EphemeralSequential)
        .await
        .unwrap();
    let (stat, w) = observer.exists_w(&node).await.unwrap();
    assert_eq!(stat.unwrap().ephemeral_owner, owner.session_id());
    let e = owner
        .create(&format!("{node}/child"), b"", CreateMode::Persistent)
        .await
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::NoChildrenForEphemerals);

    owner.close().await;
    assert_eq!(owner.state(), SessionState::Closed);
    assert_eq!(
        within(30, "ephemeral deleted", w).await.unwrap().kind,
        WatchEventKind::NodeDeleted
    );
    assert_eq!(observer.exists(&node).await.unwrap(), None);
    assert_eq!(owner.exists("/").await.unwrap_err(), ZkError::Closed);
}

#[tokio::test]
async fn an_ended_session_cannot_be_resumed() {
    let url = ZkUrl::parse(&shared().url("")).unwrap();
    let zk = ZkClient::connect_with(&url, ZkOptions::default())
        .await
        .unwrap();
    let creds = zk.session_credentials();
    zk.close().await;
    let opts = ZkOptions {
        session: Some(creds),
        ..ZkOptions::default()
    };
    let e = ZkClient::connect_with(&url, opts).await.unwrap_err();
    assert_eq!(e, ZkError::SessionExpired);
}

#[tokio::test]
async fn a_partitioned_client_reconnects_within_its_session_then_expires() {
    let proxy = support::Proxy::start(shared().addr()).await;
    let root = client("/part").await;
    let url = ZkUrl::parse(&proxy.url("/part")).unwrap();
    let opts = ZkOptions {
        session_timeout: Duration::from_secs(6),
        ..ZkOptions::default()
    };
    let zk = ZkClient::connect_with(&url, opts).await.unwrap();
    let sid = zk.session_id();
    zk.create("/e", b"", CreateMode::Ephemeral).await.unwrap();
    let (_, data_watch) = zk.exists_w("/w").await.unwrap();

    // A short cut: requests fail with ConnectionLoss meanwhile, the session survives.
    let mut states = zk.state_changes();
    proxy.cut();
    within(
        30,
        "Disconnected",
        states.wait_for(|s| *s == SessionState::Disconnected),
    )
    .await
    .unwrap();
    let e = zk.exists("/e").await.unwrap_err();
    assert_eq!(e.code(), ErrorCode::ConnectionLoss, "{e}");
    // A change made while the client is away still fires its watch once it is back.
    root.create("/w", b"", CreateMode::Persistent)
        .await
        .unwrap();
    proxy.heal();
    within(
        30,
        "Connected",
        states.wait_for(|s| *s == SessionState::Connected),
    )
    .await
    .unwrap();
    assert_eq!(zk.session_id(), sid);
    assert!(
        zk.exists("/e").await.unwrap().is_some(),
        "ephemeral kept across the reconnection"
    );
    assert_eq!(
        within(30, "watch re-armed", data_watch).await.unwrap().kind,
        WatchEventKind::NodeCreated
    );

    // A cut longer than the session timeout: the client declares the session over, and the
    // server drops its ephemeral node.
    let (_, w) = root.exists_w("/e").await.unwrap();
    proxy.cut();
    assert_eq!(
        within(60, "Expired", zk.ended()).await,
        SessionState::Expired
    );
    assert_eq!(zk.exists("/e").await.unwrap_err(), ZkError::SessionExpired);
    assert_eq!(
        within(60, "server expiry", w).await.unwrap().kind,
        WatchEventKind::NodeDeleted
    );
}

#[tokio::test]
async fn many_nodes_read_in_one_request() {
    let zk = client("/many").await;
    let mut paths = Vec::new();
    for i in 0..40 {
        let p = format!("/n{i}");
        zk.create(&p, format!("v{i}").as_bytes(), CreateMode::Persistent)
            .await
            .unwrap();
        paths.push(p);
    }
    paths.insert(3, "/absent".into());
    let got = zk.get_data_many(&paths).await.unwrap();
    assert_eq!(got.len(), 41);
    assert_eq!(got[0].as_ref().unwrap().0, b"v0");
    assert_eq!(
        got[3].as_ref().unwrap_err(),
        &ZkError::Server {
            code: ErrorCode::NoNode,
            path: "/absent".into()
        }
    );
    assert_eq!(got[40].as_ref().unwrap().0, b"v39");
    assert_eq!(got[40].as_ref().unwrap().1.version, 0);
    assert_eq!(zk.get_data_many(&[]).await.unwrap(), vec![]);
    // The session is still usable afterwards (the read behind the batch was answered too).
    assert!(zk.exists("/n1").await.unwrap().is_some());
}

#[tokio::test]
async fn each_host_of_the_list_is_tried() {
    // A port nobody listens on: bind, note it, release.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    let url = format!("zk://{dead},{}/", shared().addr());
    let zk = ZkClient::connect(&url).await.unwrap();
    assert!(zk.exists("/").await.unwrap().is_some());

    let opts = ZkOptions {
        session_timeout: Duration::from_secs(1),
        connect_timeout: Duration::from_millis(500),
        session: None,
    };
    let only_dead = ZkUrl::parse(&format!("zk://{dead}")).unwrap();
    let e = ZkClient::connect_with(&only_dead, opts).await.unwrap_err();
    assert_eq!(e.code(), ErrorCode::ConnectionLoss);
    assert!(e.to_string().contains(&dead), "{e}");
}
