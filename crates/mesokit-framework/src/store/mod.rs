//! Where a framework keeps what must survive a restart: its framework id and its task
//! records. The scheduler core decides *what* to write (keys and opaque bytes); a [`Store`]
//! only makes it durable. Implementations: [`MemoryStore`] (tests, `--store none`),
//! [`FileStore`] (one redb file, the default) and [`ZkStore`] (ZooKeeper; with a fence for
//! several instances, see [`crate::ha`]).

mod file;
pub(crate) mod zk;

pub use file::FileStore;
pub use zk::ZkStore;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

/// One change to the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Write {
    /// Create or replace `key`.
    Put {
        /// Key: `/`-separated segments of `[A-Za-z0-9._-]`, e.g. `framework_id`, `tasks/web.0`.
        key: String,
        /// Opaque value.
        value: Vec<u8>,
    },
    /// Remove `key`; removing a missing key is not an error.
    Delete {
        /// Key.
        key: String,
    },
}

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The backend could not be reached or refused the operation; retrying may help.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The stored data cannot be read (corrupt file, wrong format).
    #[error("store data is corrupt: {0}")]
    Corrupt(String),
    /// This process lost the right to write (e.g. ZooKeeper leadership or session expired).
    #[error("no longer allowed to write: {0}")]
    Fenced(String),
    /// Anything else, with the backend's message.
    #[error("{0}")]
    Other(String),
}

/// A durable key-value store for one framework.
///
/// `apply` is durable when it returns, and a batch is applied in order (atomically where the
/// backend can). The scheduler driver awaits `apply` before it sends the calls that depend on
/// it (an acknowledgement is sent only after the update it acknowledges is stored).
pub trait Store: Send + Sync + 'static {
    /// Every key and value, sorted by key.
    fn load(&self) -> impl Future<Output = Result<Vec<(String, Vec<u8>)>, StoreError>> + Send;
    /// Applies the writes in order; durable on return.
    fn apply(&self, writes: Vec<Write>) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// A store in memory; clones share the same data (a "restart" in tests keeps it).
#[derive(Debug, Clone, Default)]
pub struct MemoryStore {
    data: Arc<Mutex<BTreeMap<String, Vec<u8>>>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Store for MemoryStore {
    async fn load(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let data = self.data.lock().unwrap();
        Ok(data.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
    }

    async fn apply(&self, writes: Vec<Write>) -> Result<(), StoreError> {
        let mut data = self.data.lock().unwrap();
        for w in writes {
            match w {
                Write::Put { key, value } => {
                    data.insert(key, value);
                }
                Write::Delete { key } => {
                    data.remove(&key);
                }
            }
        }
        Ok(())
    }
}
