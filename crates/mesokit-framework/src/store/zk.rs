//! A [`Store`] in ZooKeeper: each key is a znode under a root path (`tasks/web.0` is the
//! child `web.0` of `tasks`), each `apply` one atomic `multi` (split only when a batch is
//! over ZooKeeper's request size), optionally fenced by a leader's candidate node.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::Mutex;
use tokio::task::JoinSet;

use super::{Store, StoreError, Write};
use crate::zk::{CreateMode, ErrorCode, Op, ZkClient, ZkError, ZkOptions, ZkUrl, election::Fence};

/// Largest value one key may hold (see [`ZkStore::MAX_VALUE_BYTES`]).
const MAX_VALUE_BYTES: usize = 1_000_000;

/// Ops of one `multi` are kept under this many bytes (the same server limit, for the whole
/// request); bigger batches are split and are then no longer atomic as a whole.
const MAX_MULTI_BYTES: usize = 900_000;

/// Nodes read per multiRead while loading: values can reach 1 MB each, and a reply must
/// stay well under the client's frame limit.
const READ_CHUNK: usize = 32;

/// First byte of a node that holds a value. Nodes created only as parents of deeper keys
/// are empty, so "key with an empty value" and "no key here" stay distinct.
const VALUE_MARK: u8 = 1;

/// A [`Store`] in ZooKeeper.
#[derive(Debug)]
pub struct ZkStore {
    /// The session; replaced by a new one when it expires and the store may renew it.
    zk: std::sync::Mutex<ZkClient>,
    /// Where to open a new session when the current one expires (unfenced stores opened
    /// from a URL only: a fenced store must stop with its leadership).
    renew: Option<(ZkUrl, ZkOptions)>,
    root: String,
    fence: Option<String>,
    /// Every node under the root, as far as this store knows (filled by a walk, kept up to
    /// date by our own writes, dropped when a write shows it was wrong).
    known: Mutex<View>,
    /// Whether the server answers multiRead (ZooKeeper 3.6+); cleared on the first refusal.
    multi_read: Arc<AtomicBool>,
}

impl ZkStore {
    /// Largest value one key may hold. ZooKeeper refuses requests over `jute.maxbuffer`
    /// (1 MiB less one byte by default), and the request also carries the path and the ACL.
    pub const MAX_VALUE_BYTES: usize = MAX_VALUE_BYTES;

    /// Opens the store for `framework_name` from a `zk://hosts[/path]` URL. The root is the
    /// URL's path, or `/mesokit/<framework_name>` when the URL has none; it is created when
    /// missing.
    ///
    /// When the session expires (ZooKeeper unreachable for longer than its timeout), the
    /// store opens a new one on the next operation; meanwhile operations fail with
    /// [`StoreError::Unavailable`].
    pub async fn open(url: &str, framework_name: &str) -> Result<Self, StoreError> {
        Self::open_with(url, framework_name, ZkOptions::default()).await
    }

    /// Like [`ZkStore::open`], with session options.
    pub async fn open_with(
        url: &str,
        framework_name: &str,
        opts: ZkOptions,
    ) -> Result<Self, StoreError> {
        let (hosts, root) = split_url(url, framework_name)?;
        let zk = ZkClient::connect_with(&hosts, opts.clone())
            .await
            .map_err(|e| StoreError::Unavailable(format!("{url}: {e}")))?;
        let mut store = Self::with_client(zk, &root).await?;
        store.renew = Some((
            hosts,
            ZkOptions {
                session: None,
                ..opts
            },
        ));
        Ok(store)
    }

    /// A store under `root` (relative to the client's chroot) on an existing session; creates
    /// the root when missing.
    pub async fn with_client(zk: ZkClient, root: &str) -> Result<Self, StoreError> {
        let root = crate::zk::normalize_path(root).map_err(StoreError::Other)?;
        zk.create_all(&root).await.map_err(|e| map_err(e, None))?;
        Ok(Self {
            zk: std::sync::Mutex::new(zk),
            renew: None,
            root,
            fence: None,
            known: Mutex::new(View::default()),
            multi_read: Arc::new(AtomicBool::new(true)),
        })
    }

    /// Makes every write conditional on the fence's node still existing: once the leader
    /// that owns it is deposed (its session ended), writes fail with [`StoreError::Fenced`].
    pub fn with_fence(mut self, fence: &Fence) -> Result<Self, StoreError> {
        self.renew = None;
        let zk = self.client();
        let chroot = zk.chroot();
        let path = if chroot == "/" {
            Some(fence.path().to_owned())
        } else {
            fence
                .path()
                .strip_prefix(chroot)
                .filter(|r| r.starts_with('/'))
                .map(str::to_owned)
        };
        self.fence = Some(path.ok_or_else(|| {
            StoreError::Other(format!(
                "fence {} is outside the store client's chroot {chroot}",
                fence.path()
            ))
        })?);
        Ok(self)
    }

    /// The root path of the keys.
    pub fn root(&self) -> &str {
        &self.root
    }

    /// The ZooKeeper session this store writes through now.
    pub fn client(&self) -> ZkClient {
        self.zk.lock().unwrap().clone()
    }

    /// After `SessionExpired`: opens a new session if this store may (`Ok`: retry), else
    /// the error to return.
    async fn renew_session(&self) -> Result<(), StoreError> {
        let Some((hosts, opts)) = &self.renew else {
            return Err(map_err(ZkError::SessionExpired, None));
        };
        match ZkClient::connect_with(hosts, opts.clone()).await {
            Ok(zk) => {
                tracing::warn!(root = %self.root, session_id = zk.session_id(), "ZooKeeper session expired; the store continues on a new one");
                *self.zk.lock().unwrap() = zk;
                Ok(())
            }
            Err(e) => Err(StoreError::Unavailable(format!(
                "the ZooKeeper session expired and a new one cannot be opened yet ({e}); retry"
            ))),
        }
    }

    /// Reads every node under the root: (node path, value if it holds one).
    async fn walk(&self) -> Result<Vec<(String, Option<Vec<u8>>)>, ZkError> {
        let zk = self.client();
        let mut out = Vec::new();
        let mut dirs = vec![self.root.clone()];
        while let Some(dir) = dirs.pop() {
            let children = match zk.get_children(&dir).await {
                Ok(c) => c,
                Err(ZkError::Server {
                    code: ErrorCode::NoNode,
                    ..
                }) => continue,
                Err(e) => return Err(e),
            };
            // Pipelined reads: the client sends them all before the first answer comes, a
            // chunk per multiRead where the server has it.
            let mut set = JoinSet::new();
            let paths: Vec<String> = children.iter().map(|c| crate::zk::join(&dir, c)).collect();
            for chunk in paths.chunks(READ_CHUNK) {
                let zk = zk.clone();
                let chunk = chunk.to_vec();
                let multi_read = self.multi_read.clone();
                set.spawn(async move { read_nodes(&zk, chunk, &multi_read).await });
            }
            let mut results = Vec::new();
            while let Some(r) = set.join_next().await {
                results.extend(r.map_err(|e| ZkError::Protocol(format!("reader task: {e}")))??);
            }
            for (path, r) in results {
                match r {
                    Ok((data, stat)) => {
                        if stat.num_children > 0 {
                            dirs.push(path.clone());
                        }
                        let value = match data.split_first() {
                            Some((&VALUE_MARK, v)) => Some(v.to_vec()),
                            _ => None,
                        };
                        out.push((path, value));
                    }
                    // Deleted between the listing and the read.
                    Err(ZkError::Server {
                        code: ErrorCode::NoNode,
                        ..
                    }) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(out)
    }

    fn key_of(&self, path: &str) -> String {
        let prefix_len = if self.root == "/" {
            1
        } else {
            self.root.len() + 1
        };
        path[prefix_len..].to_owned()
    }
}

/// Turns a batch into ZooKeeper ops against what exists now; returns the ops and the
/// change they make to the tree (applied to `known` once they succeed).
fn plan(root: &str, known: &BTreeSet<String>, writes: &[Write]) -> (Vec<Op>, Overlay) {
    let mut exists = Overlay::default();
    let mut ops = Vec::new();
    for w in writes {
        match w {
            Write::Put { key, value } => {
                let path = crate::zk::join(root, key);
                // Parents between the root and the key.
                let mut cur = root.to_owned();
                let segs: Vec<&str> = key.split('/').collect();
                for seg in &segs[..segs.len() - 1] {
                    cur = crate::zk::join(&cur, seg);
                    if !exists.contains(known, &cur) {
                        ops.push(Op::Create {
                            path: cur.clone(),
                            data: Vec::new(),
                            mode: CreateMode::Persistent,
                        });
                        exists.insert(known, cur.clone());
                    }
                }
                let mut data = Vec::with_capacity(value.len() + 1);
                data.push(VALUE_MARK);
                data.extend_from_slice(value);
                if exists.contains(known, &path) {
                    ops.push(Op::SetData {
                        path,
                        data,
                        version: -1,
                    });
                } else {
                    exists.insert(known, path.clone());
                    ops.push(Op::Create {
                        path,
                        data,
                        mode: CreateMode::Persistent,
                    });
                }
            }
            Write::Delete { key } => {
                let path = crate::zk::join(root, key);
                if !exists.contains(known, &path) {
                    continue;
                }
                if exists.has_children(known, &path) {
                    // Deeper keys live below: keep the node, drop its value.
                    ops.push(Op::SetData {
                        path,
                        data: Vec::new(),
                        version: -1,
                    });
                } else {
                    exists.remove(known, &path);
                    ops.push(Op::Delete { path, version: -1 });
                }
            }
        }
    }
    (ops, exists)
}

/// What the store believes exists under its root.
#[derive(Debug, Default)]
struct View {
    /// Every node, or `None` when the tree must be read again.
    nodes: Option<BTreeSet<String>>,
    /// Paths a write may or may not have changed (its answer was lost).
    uncertain: BTreeSet<String>,
}

/// The nodes a batch adds to and removes from the known tree, so that planning a batch
/// costs what the batch touches, not a copy of every node.
#[derive(Debug, Default)]
struct Overlay {
    added: BTreeSet<String>,
    removed: BTreeSet<String>,
}

impl Overlay {
    fn contains(&self, base: &BTreeSet<String>, p: &str) -> bool {
        !self.removed.contains(p) && (self.added.contains(p) || base.contains(p))
    }

    fn insert(&mut self, base: &BTreeSet<String>, p: String) {
        self.removed.remove(&p);
        if !base.contains(&p) {
            self.added.insert(p);
        }
    }

    fn remove(&mut self, base: &BTreeSet<String>, p: &str) {
        self.added.remove(p);
        if base.contains(p) {
            self.removed.insert(p.to_owned());
        }
    }

    fn has_children(&self, base: &BTreeSet<String>, p: &str) -> bool {
        let prefix = format!("{p}/");
        let below = |set: &BTreeSet<String>| {
            set.range(prefix.clone()..)
                .take_while(|q| q.starts_with(&prefix))
                .any(|q| !self.removed.contains(q))
        };
        below(&self.added) || below(base)
    }

    fn apply_to(self, base: &mut BTreeSet<String>) {
        for p in self.removed {
            base.remove(&p);
        }
        base.extend(self.added);
    }
}

type NodeRead = (String, Result<crate::zk::NodeData, ZkError>);

/// Reads a chunk of nodes: one multiRead, or one request each on servers without it.
async fn read_nodes(
    zk: &ZkClient,
    paths: Vec<String>,
    multi_read: &AtomicBool,
) -> Result<Vec<NodeRead>, ZkError> {
    if multi_read.load(Ordering::Relaxed) {
        match zk.get_data_many(&paths).await {
            Ok(r) => return Ok(paths.into_iter().zip(r).collect()),
            Err(ZkError::Server {
                code: ErrorCode::Unimplemented,
                ..
            }) => {
                tracing::info!("ZooKeeper has no multiRead (before 3.6); reading nodes one by one");
                multi_read.store(false, Ordering::Relaxed);
            }
            Err(e) => return Err(e),
        }
    }
    let mut out = Vec::with_capacity(paths.len());
    for p in paths {
        let r = zk.get_data(&p).await;
        out.push((p, r));
    }
    Ok(out)
}

/// The servers of a `zk://` URL (with no chroot) and the framework's root path: the URL's
/// path, or `/mesokit/<framework_name>` when it has none.
pub(crate) fn split_url(url: &str, framework_name: &str) -> Result<(ZkUrl, String), StoreError> {
    let parsed = ZkUrl::parse(url).map_err(|e| StoreError::Other(e.to_string()))?;
    let root = if parsed.path == "/" {
        if framework_name.is_empty()
            || framework_name.contains('/')
            || framework_name == "."
            || framework_name == ".."
        {
            return Err(StoreError::Other(format!(
                "framework name {framework_name:?} cannot be a ZooKeeper path segment; give the path in the URL ({url})"
            )));
        }
        format!("/mesokit/{framework_name}")
    } else {
        parsed.path.clone()
    };
    let hosts = ZkUrl {
        hosts: parsed.hosts,
        path: "/".into(),
    };
    Ok((hosts, root))
}

fn check_key(key: &str) -> Result<(), StoreError> {
    let ok = !key.is_empty()
        && key.split('/').all(|seg| {
            !seg.is_empty()
                && seg != "."
                && seg != ".."
                && seg
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        });
    if ok {
        Ok(())
    } else {
        Err(StoreError::Other(format!(
            "invalid store key {key:?}: use /-separated segments of [A-Za-z0-9._-]"
        )))
    }
}

fn map_err(e: ZkError, fence: Option<&str>) -> StoreError {
    match e {
        ZkError::ConnectionLoss(m) => StoreError::Unavailable(format!(
            "ZooKeeper is unreachable ({m}); nothing is lost, retry the write"
        )),
        ZkError::SessionExpired => StoreError::Fenced(
            "the ZooKeeper session expired; this scheduler must stop (another may lead now)".into(),
        ),
        // Retrying cannot help: the session, and any leadership it held, is over.
        ZkError::Closed => StoreError::Fenced("the ZooKeeper session was closed".into()),
        ZkError::Server { code, path } if Some(path.as_str()) == fence => StoreError::Fenced(
            format!("leadership lost: the candidate node {path} is gone ({code})"),
        ),
        e => StoreError::Other(e.to_string()),
    }
}

fn is_stale_view(e: &ZkError) -> bool {
    matches!(
        e,
        ZkError::Server {
            code: ErrorCode::NodeExists
                | ErrorCode::NoNode
                | ErrorCode::NotEmpty
                | ErrorCode::BadVersion,
            ..
        }
    )
}

impl Store for ZkStore {
    async fn load(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let mut renewed = false;
        let nodes = loop {
            match self.walk().await {
                Ok(n) => break n,
                Err(ZkError::SessionExpired) if !renewed => {
                    self.renew_session().await?;
                    renewed = true;
                }
                Err(e) => return Err(map_err(e, None)),
            }
        };
        let mut known = BTreeSet::new();
        let mut out = Vec::new();
        for (path, value) in nodes {
            if let Some(v) = value {
                out.push((self.key_of(&path), v));
            }
            known.insert(path);
        }
        *self.known.lock().await = View {
            nodes: Some(known),
            uncertain: BTreeSet::new(),
        };
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    async fn apply(&self, writes: Vec<Write>) -> Result<(), StoreError> {
        for w in &writes {
            match w {
                Write::Put { key, value } => {
                    check_key(key)?;
                    if value.len() > MAX_VALUE_BYTES {
                        return Err(StoreError::Other(format!(
                            "value of key {key:?} is {} bytes; ZooKeeper holds at most {MAX_VALUE_BYTES} bytes per key",
                            value.len()
                        )));
                    }
                }
                Write::Delete { key } => check_key(key)?,
            }
        }
        if writes.is_empty() {
            return Ok(());
        }
        let mut view = self.known.lock().await;
        let mut attempts = 0;
        loop {
            attempts += 1;
            let ready = match &view.nodes {
                None => match self.walk().await {
                    Ok(nodes) => {
                        view.nodes = Some(nodes.into_iter().map(|(p, _)| p).collect());
                        view.uncertain.clear();
                        Ok(())
                    }
                    Err(e) => Err(e),
                },
                Some(_) if !view.uncertain.is_empty() => self.resolve(&mut view).await,
                Some(_) => Ok(()),
            };
            match ready {
                Ok(()) => {}
                Err(ZkError::SessionExpired) if attempts < 3 => {
                    self.renew_session().await?;
                    *view = View::default();
                    continue;
                }
                Err(e) => return Err(map_err(e, None)),
            }
            let Some(nodes) = view.nodes.as_ref() else {
                continue;
            };
            let (ops, change) = plan(&self.root, nodes, &writes);
            let touched: Vec<String> = ops.iter().map(|o| o.path().to_owned()).collect();
            match self.run(ops).await {
                Ok(()) => {
                    if let Some(k) = view.nodes.as_mut() {
                        change.apply_to(k);
                    }
                    return Ok(());
                }
                Err(e) => {
                    if matches!(e, ZkError::ConnectionLoss(_)) {
                        // Some of these ops may have been applied: check just those paths
                        // before the next plan rather than re-reading the whole tree.
                        view.uncertain.extend(touched);
                    } else {
                        // Our picture of the tree was wrong or is moot: read it again.
                        *view = View::default();
                    }
                    let fenced = matches!(&e, ZkError::Server { path, .. } if Some(path) == self.fence.as_ref());
                    if !fenced && is_stale_view(&e) && attempts < 3 {
                        tracing::debug!(error = %e, "ZooKeeper store view was stale; re-reading");
                        continue;
                    }
                    if e == ZkError::SessionExpired && attempts < 3 {
                        self.renew_session().await?;
                        continue;
                    }
                    return Err(map_err(e, self.fence.as_deref()));
                }
            }
        }
    }
}

impl ZkStore {
    /// Settles the uncertain paths of the view with one (pipelined) `exists` each.
    async fn resolve(&self, view: &mut View) -> Result<(), ZkError> {
        let zk = self.client();
        let mut set = JoinSet::new();
        for p in view.uncertain.iter().cloned() {
            let zk = zk.clone();
            set.spawn(async move {
                let r = zk.exists(&p).await;
                (p, r)
            });
        }
        let mut results = Vec::new();
        while let Some(r) = set.join_next().await {
            let (p, r) = r.map_err(|e| ZkError::Protocol(format!("reader task: {e}")))?;
            results.push((p, r?));
        }
        if let Some(nodes) = view.nodes.as_mut() {
            for (p, stat) in results {
                if stat.is_some() {
                    nodes.insert(p);
                } else {
                    let below = format!("{p}/");
                    nodes.retain(|q| *q != p && !q.starts_with(&below));
                }
            }
        }
        view.uncertain.clear();
        Ok(())
    }

    /// Sends the ops as few `multi`s as the request size allows, each with the fence check.
    async fn run(&self, ops: Vec<Op>) -> Result<(), ZkError> {
        let check = self.fence.as_ref().map(|p| Op::Check {
            path: p.clone(),
            version: -1,
        });
        let zk = self.client();
        let mut batch: Vec<Op> = check.iter().cloned().collect();
        let mut size = 0;
        let base = batch.len();
        for op in ops {
            let cost = op_size(&op);
            if batch.len() > base && size + cost > MAX_MULTI_BYTES {
                zk.multi(&batch).await?;
                batch.truncate(0);
                batch.extend(check.iter().cloned());
                size = 0;
            }
            size += cost;
            batch.push(op);
        }
        if batch.len() > base {
            zk.multi(&batch).await?;
        }
        Ok(())
    }
}

fn op_size(op: &Op) -> usize {
    let data = match op {
        Op::Create { data, .. } | Op::SetData { data, .. } => data.len(),
        _ => 0,
    };
    // Header, path, data, ACL and version fields.
    64 + op.path().len() + data
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(ops: &[Op]) -> Vec<String> {
        ops.iter()
            .map(|o| match o {
                Op::Create { path, data, .. } => format!("create {path} {}", data.len()),
                Op::SetData { path, data, .. } => format!("set {path} {}", data.len()),
                Op::Delete { path, .. } => format!("delete {path}"),
                Op::Check { path, .. } => format!("check {path}"),
            })
            .collect()
    }

    #[test]
    fn batches_are_planned_against_the_known_tree() {
        let put = |k: &str| Write::Put {
            key: k.into(),
            value: b"v".to_vec(),
        };
        let del = |k: &str| Write::Delete { key: k.into() };
        let mut known: BTreeSet<String> = ["/r/tasks", "/r/tasks/a", "/r/fw"]
            .into_iter()
            .map(String::from)
            .collect();
        let (ops, change) = plan(
            "/r",
            &known,
            &[
                put("tasks/b"),
                put("x/y/z"),
                del("tasks/a"),
                put("tasks/a"),
                del("tasks"),
                del("nope"),
            ],
        );
        assert_eq!(
            names(&ops),
            vec![
                "create /r/tasks/b 2",
                "create /r/x 0",
                "create /r/x/y 0",
                "create /r/x/y/z 2",
                "delete /r/tasks/a",
                "create /r/tasks/a 2",
                // `tasks` has children: its value is cleared, the node stays.
                "set /r/tasks 0",
            ]
        );
        change.apply_to(&mut known);
        let (ops, _) = plan("/r", &known, &[put("fw"), del("x/y/z"), del("x/y")]);
        assert_eq!(
            names(&ops),
            vec!["set /r/fw 2", "delete /r/x/y/z", "delete /r/x/y"]
        );
    }

    #[test]
    fn keys_are_checked() {
        for good in ["framework_id", "tasks/web.0", "a-b/c_d/E.9"] {
            check_key(good).unwrap();
        }
        for bad in ["", "/a", "a/", "a//b", "a/../b", "a b", "é"] {
            let e = check_key(bad).unwrap_err().to_string();
            assert!(e.contains("invalid store key"), "{e}");
        }
    }
}
