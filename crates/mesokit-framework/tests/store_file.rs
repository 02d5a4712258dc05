//! The redb file store: durable batches, reopening, bad files and a second process.

use std::path::PathBuf;
use std::process::Command;

use mesokit_framework::store::{FileStore, Store, StoreError, Write};

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("mesokit-store-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn put(key: &str, value: &[u8]) -> Write {
    Write::Put {
        key: key.into(),
        value: value.to_vec(),
    }
}

fn del(key: &str) -> Write {
    Write::Delete { key: key.into() }
}

#[tokio::test]
async fn round_trip_sorted_and_reopened() {
    let dir = temp_dir("roundtrip");
    let path = dir.join("state.redb");
    {
        let s = FileStore::open(&path).unwrap();
        assert_eq!(s.load().await.unwrap(), vec![], "a new store is empty");
        s.apply(vec![
            put("tasks/web.1", b"b"),
            put("framework_id", b"fw-1"),
            put("tasks/web.0", b""),
        ])
        .await
        .unwrap();
        s.apply(vec![put("tasks/web.1", b"b2"), del("missing")])
            .await
            .unwrap();
    }
    // The first store is dropped: a restarted scheduler opens the same file.
    let s = FileStore::open(&path).unwrap();
    assert_eq!(
        s.load().await.unwrap(),
        vec![
            ("framework_id".to_string(), b"fw-1".to_vec()),
            ("tasks/web.0".to_string(), b"".to_vec()),
            ("tasks/web.1".to_string(), b"b2".to_vec()),
        ]
    );
    drop(s);
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn a_batch_applies_in_order() {
    let dir = temp_dir("order");
    let s = FileStore::open(dir.join("s.redb")).unwrap();
    s.apply(vec![
        put("a", b"1"),
        del("a"),
        put("b", b"1"),
        put("b", b"2"),
    ])
    .await
    .unwrap();
    s.apply(vec![del("b"), put("b", b"3")]).await.unwrap();
    assert_eq!(
        s.load().await.unwrap(),
        vec![("b".to_string(), b"3".to_vec())]
    );
    drop(s);
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn a_file_that_is_not_a_store_is_corrupt_and_named() {
    let dir = temp_dir("corrupt");
    let path = dir.join("notes.txt");
    std::fs::write(&path, "this is not a database\n".repeat(200)).unwrap();
    let e = FileStore::open(&path).unwrap_err();
    assert!(matches!(e, StoreError::Corrupt(_)), "{e:?}");
    assert!(e.to_string().contains("notes.txt"), "{e}");
    // The file is left as it was.
    assert!(
        std::fs::read_to_string(&path)
            .unwrap()
            .starts_with("this is not")
    );
    // A file cut short is refused the same way.
    let short = dir.join("short.redb");
    std::fs::write(&short, b"red").unwrap();
    let e = FileStore::open(&short).unwrap_err();
    assert!(matches!(e, StoreError::Corrupt(_)), "{e:?}");

    let e = FileStore::open(dir.join("no-such-dir/s.redb")).unwrap_err();
    assert!(e.to_string().contains("no-such-dir"), "{e}");
    std::fs::remove_dir_all(dir).unwrap();
}

/// Run by the test below in a second process: tries to open the file it is given.
#[test]
fn child_process_opens_the_store() {
    let Ok(path) = std::env::var("MESOKIT_STORE_CHILD_PATH") else {
        return; // only meaningful as the child of the test below
    };
    match FileStore::open(&path) {
        Ok(_) => println!("CHILD-OPENED"),
        Err(e) => println!("CHILD-ERROR {e}"),
    }
}

#[tokio::test]
async fn a_second_process_gets_a_clear_error() {
    let dir = temp_dir("lock");
    let path = dir.join("s.redb");
    let s = FileStore::open(&path).unwrap();
    s.apply(vec![put("k", b"v")]).await.unwrap();

    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_process_opens_the_store",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("MESOKIT_STORE_CHILD_PATH", &path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("CHILD-ERROR") && stdout.contains("already open"),
        "child output: {stdout}"
    );
    assert!(
        stdout.contains("s.redb"),
        "the error names the file: {stdout}"
    );

    // Within this process too, a second open of the same file is refused.
    let e = FileStore::open(&path).unwrap_err();
    assert!(matches!(e, StoreError::Unavailable(_)), "{e:?}");

    // Once the owner is gone, the child can open it.
    drop(s);
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_process_opens_the_store",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("MESOKIT_STORE_CHILD_PATH", &path)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("CHILD-OPENED"));
    std::fs::remove_dir_all(dir).unwrap();
}
