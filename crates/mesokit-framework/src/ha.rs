//! Wiring for `mesokit run --store …`: [`AnyStore`] picks the store from one argument (a
//! file path, `zk://…` or `none`), and [`ZkHa`] lets several instances share a ZooKeeper
//! store with one leader at a time, whose writes are fenced once it is deposed.

use crate::store::{FileStore, MemoryStore, Store, StoreError, Write, ZkStore};
use crate::zk::election::{LeaderElection, Leadership};
use crate::zk::{ZkClient, ZkError, ZkOptions};

/// The store named by a `--store` argument.
#[derive(Debug)]
pub enum AnyStore {
    /// `none` or `memory`: nothing survives the process.
    Memory(MemoryStore),
    /// A file path: the embedded database (the default).
    File(FileStore),
    /// `zk://host:port,…[/path]`.
    Zk(Box<ZkStore>),
}

impl AnyStore {
    /// Opens the store `spec` names for `framework_name`: `none`/`memory`, a `zk://` URL (root
    /// = the URL's path, or `/mesokit/<framework_name>`), or else a file path.
    pub async fn open(spec: &str, framework_name: &str) -> Result<Self, StoreError> {
        match spec {
            "" => Err(StoreError::Other(
                "empty --store: give a file path, zk://host:port/path or none".into(),
            )),
            "none" | "memory" => Ok(AnyStore::Memory(MemoryStore::new())),
            s if s.starts_with("zk://") => Ok(AnyStore::Zk(Box::new(
                ZkStore::open(s, framework_name).await?,
            ))),
            s if s.contains("://") => Err(StoreError::Other(format!(
                "unsupported store URL {s:?}: use a file path, zk://host:port/path or none"
            ))),
            path => Ok(AnyStore::File(FileStore::open(path)?)),
        }
    }
}

impl Store for AnyStore {
    async fn load(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        match self {
            AnyStore::Memory(s) => s.load().await,
            AnyStore::File(s) => s.load().await,
            AnyStore::Zk(s) => s.load().await,
        }
    }

    async fn apply(&self, writes: Vec<Write>) -> Result<(), StoreError> {
        match self {
            AnyStore::Memory(s) => s.apply(writes).await,
            AnyStore::File(s) => s.apply(writes).await,
            AnyStore::Zk(s) => s.apply(writes).await,
        }
    }
}

/// One of several scheduler instances sharing a ZooKeeper store. The layout under the
/// framework's root: the store's keys, and `leader/candidate-<seq>` for the election (a
/// reserved name: candidate nodes hold no value, so they never show up as keys).
#[derive(Debug)]
pub struct ZkHa {
    zk: ZkClient,
    root: String,
    election: LeaderElection,
}

impl ZkHa {
    /// Connects with a 10 s session: a leader that dies without closing its session (killed,
    /// partitioned) is replaced about that long after ZooKeeper last heard from it.
    pub async fn connect(
        url: &str,
        framework_name: &str,
        instance_id: &str,
    ) -> Result<Self, StoreError> {
        Self::connect_with(url, framework_name, instance_id, ZkOptions::default()).await
    }

    /// Like [`ZkHa::connect`], with session options (e.g. a shorter timeout for faster
    /// failover; ZooKeeper allows 2 to 20 ticks, 4-40 s by default).
    pub async fn connect_with(
        url: &str,
        framework_name: &str,
        instance_id: &str,
        opts: ZkOptions,
    ) -> Result<Self, StoreError> {
        let (hosts, root) = crate::store::zk::split_url(url, framework_name)?;
        let zk = ZkClient::connect_with(&hosts, opts)
            .await
            .map_err(|e| StoreError::Unavailable(format!("{url}: {e}")))?;
        let election =
            LeaderElection::new(zk.clone(), &crate::zk::join(&root, "leader"), instance_id)
                .map_err(|e| StoreError::Other(e.to_string()))?;
        Ok(Self { zk, root, election })
    }

    /// Waits until this instance leads; returns the proof and the store to use, whose
    /// writes fail with [`StoreError::Fenced`] once leadership is lost. Run the scheduler
    /// only while [`Leadership::lost`] has not resolved.
    pub async fn wait_for_leadership(&mut self) -> Result<(Leadership, ZkStore), StoreError> {
        let lead = self
            .election
            .wait_for_leadership()
            .await
            .map_err(election_err)?;
        let store = ZkStore::with_client(self.zk.clone(), &self.root)
            .await?
            .with_fence(&lead.fence())?;
        Ok((lead, store))
    }

    /// Waits for leadership, then runs `scheduler` with the fenced store until it returns
    /// or leadership is lost, whichever comes first: on loss the scheduler's future is
    /// dropped at once (it must not outlive its leadership) and the result is
    /// [`StoreError::Fenced`].
    pub async fn run_as_leader<F, Fut, T>(&mut self, scheduler: F) -> Result<T, StoreError>
    where
        F: FnOnce(ZkStore) -> Fut,
        Fut: std::future::Future<Output = T>,
    {
        let (lead, store) = self.wait_for_leadership().await?;
        tokio::select! {
            r = scheduler(store) => Ok(r),
            why = lead.lost() => {
                tracing::warn!(reason = ?why, root = %self.root, "leadership lost; stopping the scheduler");
                Err(StoreError::Fenced(format!("leadership lost ({why:?}); another instance may lead now")))
            }
        }
    }

    /// The instance id of the current leader, if any.
    pub async fn leader_id(&self) -> Result<Option<String>, StoreError> {
        self.election.leader_id().await.map_err(election_err)
    }

    /// The framework's root path in ZooKeeper.
    pub fn root(&self) -> &str {
        &self.root
    }

    /// The ZooKeeper session (close it to step down at once).
    pub fn client(&self) -> &ZkClient {
        &self.zk
    }
}

/// An instance id for the election: `<hostname>:<pid>`, what an operator needs to find the
/// leading process.
pub fn default_instance_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".into());
    format!("{host}:{}", std::process::id())
}

fn election_err(e: ZkError) -> StoreError {
    match e {
        ZkError::SessionExpired | ZkError::Closed => {
            StoreError::Fenced(format!("left the leader election: {e}"))
        }
        ZkError::ConnectionLoss(m) => StoreError::Unavailable(m),
        e => StoreError::Other(e.to_string()),
    }
}
