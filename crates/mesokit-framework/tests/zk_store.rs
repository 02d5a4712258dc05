//! The ZooKeeper store against a real server (one shared by these tests, a root each).

#[path = "support/zk.rs"]
mod support;

use mesokit_framework::store::{Store, StoreError, Write, ZkStore};
use mesokit_framework::zk::ZkClient;
use support::shared;

fn put(key: &str, value: &[u8]) -> Write {
    Write::Put {
        key: key.into(),
        value: value.to_vec(),
    }
}

fn del(key: &str) -> Write {
    Write::Delete { key: key.into() }
}

fn kv(k: &str, v: &[u8]) -> (String, Vec<u8>) {
    (k.to_string(), v.to_vec())
}

#[tokio::test]
async fn round_trip_survives_a_new_session() {
    let url = shared().url("/store/rt");
    {
        let s = ZkStore::open(&url, "ignored").await.unwrap();
        assert_eq!(s.root(), "/store/rt");
        assert_eq!(s.load().await.unwrap(), vec![]);
        s.apply(vec![
            put("framework_id", b"fw-1"),
            put("tasks/web.1", b"one"),
            put("tasks/web.0", b""),
            put("tasks/deep/x", b"x"),
        ])
        .await
        .unwrap();
        s.apply(vec![put("tasks/web.1", b"one-b"), del("nothing/here")])
            .await
            .unwrap();
        s.client().close().await;
    }
    // A restarted scheduler: a new session reads what the old one wrote.
    let s = ZkStore::open(&url, "ignored").await.unwrap();
    assert_eq!(
        s.load().await.unwrap(),
        vec![
            kv("framework_id", b"fw-1"),
            kv("tasks/deep/x", b"x"),
            kv("tasks/web.0", b""),
            kv("tasks/web.1", b"one-b"),
        ],
        "sorted by key; parents that hold no value are not keys; empty values are"
    );
    // The layout is plain znodes under the root, one per key.
    let zk = ZkClient::connect(&shared().url("")).await.unwrap();
    let mut kids = zk.get_children("/store/rt/tasks").await.unwrap();
    kids.sort();
    assert_eq!(kids, vec!["deep", "web.0", "web.1"]);
}

#[tokio::test]
async fn default_root_is_named_after_the_framework() {
    let s = ZkStore::open(&shared().url(""), "my-fw").await.unwrap();
    assert_eq!(s.root(), "/mesokit/my-fw");
    s.apply(vec![put("framework_id", b"x")]).await.unwrap();
    let zk = ZkClient::connect(&shared().url("")).await.unwrap();
    assert!(
        zk.exists("/mesokit/my-fw/framework_id")
            .await
            .unwrap()
            .is_some()
    );
}

#[tokio::test]
async fn batches_apply_in_order() {
    let s = ZkStore::open(&shared().url("/store/order"), "x")
        .await
        .unwrap();
    s.apply(vec![
        put("a", b"1"),
        del("a"),
        put("b", b"1"),
        put("b", b"2"),
    ])
    .await
    .unwrap();
    s.apply(vec![del("b"), put("b", b"3"), put("c/d", b"4"), del("c/d")])
        .await
        .unwrap();
    assert_eq!(s.load().await.unwrap(), vec![kv("b", b"3")]);

    // Deleting a key with deeper keys below keeps them.
    s.apply(vec![put("p", b"parent"), put("p/q", b"child")])
        .await
        .unwrap();
    s.apply(vec![del("p")]).await.unwrap();
    assert_eq!(
        s.load().await.unwrap(),
        vec![kv("b", b"3"), kv("p/q", b"child")]
    );
}

#[tokio::test]
async fn another_writer_behind_our_back_is_handled() {
    let url = shared().url("/store/two");
    let a = ZkStore::open(&url, "x").await.unwrap();
    let b = ZkStore::open(&url, "x").await.unwrap();
    a.load().await.unwrap();
    b.apply(vec![put("k", b"from-b"), put("gone", b"1")])
        .await
        .unwrap();
    // `a` believes neither key exists; its write must still land (create -> set).
    a.apply(vec![put("k", b"from-a")]).await.unwrap();
    b.apply(vec![del("gone")]).await.unwrap();
    a.apply(vec![del("gone"), put("z", b"z")]).await.unwrap();
    assert_eq!(
        b.load().await.unwrap(),
        vec![kv("k", b"from-a"), kv("z", b"z")]
    );
}

#[tokio::test]
async fn bad_keys_and_oversized_values_are_refused_by_name() {
    let s = ZkStore::open(&shared().url("/store/bad"), "x")
        .await
        .unwrap();
    let big = vec![0u8; ZkStore::MAX_VALUE_BYTES + 1];
    let e = s.apply(vec![put("tasks/huge", &big)]).await.unwrap_err();
    assert!(matches!(e, StoreError::Other(_)), "{e:?}");
    assert!(e.to_string().contains("tasks/huge"), "{e}");
    let e = s.apply(vec![put("a/../b", b"")]).await.unwrap_err();
    assert!(e.to_string().contains("a/../b"), "{e}");
    // Nothing of a refused batch was written.
    assert_eq!(s.load().await.unwrap(), vec![]);

    // Values right at the limit fit.
    let max = vec![9u8; ZkStore::MAX_VALUE_BYTES];
    s.apply(vec![put("max", &max)]).await.unwrap();
    assert_eq!(s.load().await.unwrap(), vec![("max".to_string(), max)]);

    // A batch bigger than one ZooKeeper request is split, and all of it lands.
    let many: Vec<Write> = (0..5)
        .map(|i| put(&format!("chunk/{i}"), &vec![i as u8; 400_000]))
        .collect();
    s.apply(many).await.unwrap();
    assert_eq!(s.load().await.unwrap().len(), 6);

    let e = ZkStore::open("zk://127.0.0.1:notaport/x", "x")
        .await
        .unwrap_err();
    assert!(e.to_string().contains("notaport"), "{e}");
}
