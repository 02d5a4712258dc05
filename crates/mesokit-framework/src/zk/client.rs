//! The ZooKeeper session: one background task owns the TCP connection, pipelines requests
//! (replies come back in order), pings, reconnects to the next host within the session and
//! re-arms watches there; [`ZkClient`] handles send commands to it.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

use super::proto::{
    ConnectRequest, ConnectResponse, CreateMode, Decoder, Encoder, MAX_FRAME, NodeData, Op,
    OpResult, RawEvent, ReplyHeader, Stat, decode_multi, decode_multi_read, op, xid,
};
use super::{ErrorCode, ZkError, ZkUrl, normalize_path};

/// How to connect.
#[derive(Debug, Clone)]
pub struct ZkOptions {
    /// Session timeout to ask for; the server clamps it to 2..20 ticks (4-40 s by default).
    pub session_timeout: Duration,
    /// Time allowed for one TCP connect plus handshake with one server.
    pub connect_timeout: Duration,
    /// Resume this session (id, password) instead of starting a new one.
    pub session: Option<(i64, Vec<u8>)>,
}

impl Default for ZkOptions {
    fn default() -> Self {
        Self {
            session_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(2),
            session: None,
        }
    }
}

/// Where the session stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionState {
    /// Connected to a server; requests are answered.
    Connected,
    /// Lost the connection; reconnecting within the session. Requests fail with
    /// `ConnectionLoss` meanwhile; ephemeral nodes and watches survive if we get back in time.
    Disconnected,
    /// The session ended: the server said so, or we were cut off longer than its timeout.
    Expired,
    /// Closed by this client.
    Closed,
}

/// What a watch reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatchEventKind {
    /// The node was created.
    NodeCreated,
    /// The node was deleted.
    NodeDeleted,
    /// The node's data changed.
    NodeDataChanged,
    /// A child was added or removed.
    NodeChildrenChanged,
}

/// A fired watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchEvent {
    /// What happened.
    pub kind: WatchEventKind,
    /// The watched path (without the chroot).
    pub path: String,
}

/// A one-shot watch: resolves when the node changes, or with `SessionExpired`/`Closed` when
/// the session ends first (watches survive reconnections within the session).
#[derive(Debug)]
pub struct Watch {
    rx: oneshot::Receiver<Result<WatchEvent, ZkError>>,
}

impl Future for Watch {
    type Output = Result<WatchEvent, ZkError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.rx)
            .poll(cx)
            .map(|r| r.unwrap_or(Err(ZkError::Closed)))
    }
}

/// A ZooKeeper session. Clones share it; it closes when the last clone is dropped or on
/// [`ZkClient::close`].
#[derive(Debug, Clone)]
pub struct ZkClient {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    tx: mpsc::UnboundedSender<Cmd>,
    state: watch::Receiver<SessionState>,
    chroot: String,
    session: Arc<Mutex<(i64, Vec<u8>)>>,
    timeout: Duration,
}

type WatchTx = oneshot::Sender<Result<WatchEvent, ZkError>>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WatchKind {
    Exists,
    Data,
    Child,
}

#[derive(Debug)]
enum Cmd {
    Request {
        opcode: i32,
        body: Vec<u8>,
        watch: Option<(WatchKind, String, WatchTx)>,
        reply: oneshot::Sender<Result<(i32, Vec<u8>), ZkError>>,
    },
    Close(oneshot::Sender<()>),
}

impl ZkClient {
    /// Connects to the servers of a `zk://host:port,…/path` URL with default options; the
    /// URL's path becomes the chroot (every path this client uses is relative to it).
    pub async fn connect(url: &str) -> Result<Self, ZkError> {
        Self::connect_with(&ZkUrl::parse(url)?, ZkOptions::default()).await
    }

    /// Connects with options. Tries each host in turn until one answers, for up to the
    /// session timeout; fails with `ConnectionLoss` naming the hosts otherwise.
    pub async fn connect_with(url: &ZkUrl, opts: ZkOptions) -> Result<Self, ZkError> {
        if url.hosts.is_empty() {
            return Err(ZkError::Invalid(format!(
                "no ZooKeeper server given in {url}"
            )));
        }
        let timeout_ms = i32::try_from(opts.session_timeout.as_millis()).unwrap_or(i32::MAX);
        let (sid, passwd) = opts.session.clone().unwrap_or((0, vec![0; 16]));
        let mut creds = Creds {
            session_id: sid,
            passwd,
            last_zxid: 0,
            timeout: opts.session_timeout,
        };
        let deadline = Instant::now() + opts.session_timeout;
        let mut next_host = 0;
        let stream = loop {
            match connect_any(&url.hosts, &mut next_host, &opts, timeout_ms, &mut creds).await {
                Ok(s) => break s,
                Err(ZkError::SessionExpired) => return Err(ZkError::SessionExpired),
                Err(e) if Instant::now() >= deadline => return Err(e),
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        };
        let (tx, rx) = mpsc::unbounded_channel();
        let (state_tx, state_rx) = watch::channel(SessionState::Connected);
        let session = Arc::new(Mutex::new((creds.session_id, creds.passwd.clone())));
        let chroot = url.path.clone();
        let task = Task {
            rx,
            state: state_tx,
            hosts: url.hosts.clone(),
            next_host,
            opts,
            timeout_ms,
            creds,
            session: session.clone(),
            chroot: chroot.clone(),
            data_watches: HashMap::new(),
            exist_watches: HashMap::new(),
            child_watches: HashMap::new(),
            xid: 0,
        };
        let timeout = task.creds.timeout;
        tokio::spawn(task.run(stream));
        Ok(Self {
            inner: Arc::new(Inner {
                tx,
                state: state_rx,
                chroot,
                session,
                timeout,
            }),
        })
    }

    /// The chroot every path is relative to (`/` for none).
    pub fn chroot(&self) -> &str {
        &self.inner.chroot
    }

    /// The session id.
    pub fn session_id(&self) -> i64 {
        self.inner.session.lock().unwrap().0
    }

    /// Session id and password, to resume this session from another connection
    /// ([`ZkOptions::session`]).
    pub fn session_credentials(&self) -> (i64, Vec<u8>) {
        self.inner.session.lock().unwrap().clone()
    }

    /// The timeout the server granted.
    pub fn session_timeout(&self) -> Duration {
        self.inner.timeout
    }

    /// The session's state now.
    pub fn state(&self) -> SessionState {
        *self.inner.state.borrow()
    }

    /// A receiver that sees every session state change.
    pub fn state_changes(&self) -> watch::Receiver<SessionState> {
        self.inner.state.clone()
    }

    /// Resolves when the session has ended (expired or closed).
    pub async fn ended(&self) -> SessionState {
        let mut rx = self.inner.state.clone();
        let r = rx
            .wait_for(|s| matches!(s, SessionState::Expired | SessionState::Closed))
            .await
            .map(|s| *s);
        r.unwrap_or(SessionState::Closed)
    }

    /// Closes the session: its ephemeral nodes are removed at once. While no server is
    /// reachable the close cannot be sent; the server then ends the session after its
    /// timeout.
    pub async fn close(&self) {
        let (tx, rx) = oneshot::channel();
        if self.inner.tx.send(Cmd::Close(tx)).is_ok() {
            let _ = rx.await;
        }
    }

    fn full(&self, path: &str) -> Result<String, ZkError> {
        let p = normalize_path(path).map_err(ZkError::Invalid)?;
        let root = &self.inner.chroot;
        Ok(if root == "/" {
            p
        } else if p == "/" {
            root.clone()
        } else {
            format!("{root}{p}")
        })
    }

    fn strip(&self, full: &str) -> String {
        strip_chroot(&self.inner.chroot, full)
    }

    async fn call(
        &self,
        opcode: i32,
        path: &str,
        body: Vec<u8>,
        watch: Option<(WatchKind, String, WatchTx)>,
    ) -> Result<Vec<u8>, ZkError> {
        let (reply, rx) = oneshot::channel();
        self.inner
            .tx
            .send(Cmd::Request {
                opcode,
                body,
                watch,
                reply,
            })
            .map_err(|_| ZkError::Closed)?;
        let (err, body) = rx.await.map_err(|_| ZkError::Closed)??;
        if err != 0 {
            return Err(ZkError::server(err, path));
        }
        Ok(body)
    }

    /// Creates a node with the open ACL; returns its path (with the sequence suffix for
    /// sequential nodes), without the chroot.
    pub async fn create(
        &self,
        path: &str,
        data: &[u8],
        mode: CreateMode,
    ) -> Result<String, ZkError> {
        let full = self.full(path)?;
        let op = Op::Create {
            path: full.clone(),
            data: data.to_vec(),
            mode,
        };
        let mut e = Encoder::default();
        op.encode_body(&mut e, &full);
        let body = self.call(op::CREATE, path, e.buf, None).await?;
        let created = Decoder::new(&body).string()?;
        Ok(self.strip(&created))
    }

    /// Creates `path` and any missing ancestors as empty persistent nodes; an existing node
    /// is fine.
    pub async fn create_all(&self, path: &str) -> Result<(), ZkError> {
        let p = normalize_path(path).map_err(ZkError::Invalid)?;
        if p == "/" {
            return Ok(());
        }
        let mut cur = String::new();
        for seg in p[1..].split('/') {
            cur.push('/');
            cur.push_str(seg);
            match self.create(&cur, &[], CreateMode::Persistent).await {
                Ok(_) => {}
                Err(ZkError::Server {
                    code: ErrorCode::NodeExists,
                    ..
                }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Deletes a node; `version` -1 matches any version.
    pub async fn delete(&self, path: &str, version: i32) -> Result<(), ZkError> {
        let full = self.full(path)?;
        let mut e = Encoder::default();
        e.str(&full).i32(version);
        self.call(op::DELETE, path, e.buf, None).await.map(|_| ())
    }

    async fn exists_inner(
        &self,
        path: &str,
        watch: Option<WatchTx>,
    ) -> Result<Option<Stat>, ZkError> {
        let full = self.full(path)?;
        let mut e = Encoder::default();
        e.str(&full).bool(watch.is_some());
        let watch = watch.map(|w| (WatchKind::Exists, full, w));
        match self.call(op::EXISTS, path, e.buf, watch).await {
            Ok(body) => Ok(Some(Decoder::new(&body).stat()?)),
            Err(ZkError::Server {
                code: ErrorCode::NoNode,
                ..
            }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The node's metadata, or `None` when it does not exist.
    pub async fn exists(&self, path: &str) -> Result<Option<Stat>, ZkError> {
        self.exists_inner(path, None).await
    }

    /// Like [`ZkClient::exists`], and watches the node for creation, deletion or a data change.
    pub async fn exists_w(&self, path: &str) -> Result<(Option<Stat>, Watch), ZkError> {
        let (tx, rx) = oneshot::channel();
        let s = self.exists_inner(path, Some(tx)).await?;
        Ok((s, Watch { rx }))
    }

    async fn get_data_inner(
        &self,
        path: &str,
        watch: Option<WatchTx>,
    ) -> Result<(Vec<u8>, Stat), ZkError> {
        let full = self.full(path)?;
        let mut e = Encoder::default();
        e.str(&full).bool(watch.is_some());
        let watch = watch.map(|w| (WatchKind::Data, full, w));
        let body = self.call(op::GET_DATA, path, e.buf, watch).await?;
        let mut d = Decoder::new(&body);
        Ok((d.bytes()?, d.stat()?))
    }

    /// The node's data and metadata.
    pub async fn get_data(&self, path: &str) -> Result<(Vec<u8>, Stat), ZkError> {
        self.get_data_inner(path, None).await
    }

    /// Like [`ZkClient::get_data`], and watches the node for a data change or deletion.
    pub async fn get_data_w(&self, path: &str) -> Result<(Vec<u8>, Stat, Watch), ZkError> {
        let (tx, rx) = oneshot::channel();
        let (d, s) = self.get_data_inner(path, Some(tx)).await?;
        Ok((d, s, Watch { rx }))
    }

    /// Replaces the node's data; `version` -1 matches any version.
    pub async fn set_data(&self, path: &str, data: &[u8], version: i32) -> Result<Stat, ZkError> {
        let full = self.full(path)?;
        let mut e = Encoder::default();
        e.str(&full).bytes(data).i32(version);
        let body = self.call(op::SET_DATA, path, e.buf, None).await?;
        Decoder::new(&body).stat()
    }

    async fn get_children_inner(
        &self,
        path: &str,
        watch: Option<WatchTx>,
    ) -> Result<Vec<String>, ZkError> {
        let full = self.full(path)?;
        let mut e = Encoder::default();
        e.str(&full).bool(watch.is_some());
        let watch = watch.map(|w| (WatchKind::Child, full, w));
        let body = self.call(op::GET_CHILDREN, path, e.buf, watch).await?;
        Decoder::new(&body).strings()
    }

    /// The names of the node's children (unsorted, as the server sends them).
    pub async fn get_children(&self, path: &str) -> Result<Vec<String>, ZkError> {
        self.get_children_inner(path, None).await
    }

    /// Like [`ZkClient::get_children`], and watches for a child being added or removed (or
    /// the node being deleted).
    pub async fn get_children_w(&self, path: &str) -> Result<(Vec<String>, Watch), ZkError> {
        let (tx, rx) = oneshot::channel();
        let c = self.get_children_inner(path, Some(tx)).await?;
        Ok((c, Watch { rx }))
    }

    /// Reads many nodes in one request (`multiRead`, ZooKeeper 3.6 and later): per path, its
    /// data and stat or the error for that path. Older servers do not know the request: the
    /// error is then `Server { code: Unimplemented, .. }` or a lost connection.
    pub async fn get_data_many(
        &self,
        paths: &[String],
    ) -> Result<Vec<Result<NodeData, ZkError>>, ZkError> {
        if paths.is_empty() {
            return Ok(Vec::new());
        }
        let mut e = Encoder::default();
        for p in paths {
            let full = self.full(p)?;
            e.i32(op::GET_DATA).bool(false).i32(-1);
            e.str(&full).bool(false);
        }
        e.i32(-1).bool(true).i32(-1);
        // Servers before 3.6 do not know multiRead: recent ones answer Unimplemented, old ones
        // drop the request without a word. The cheap read queued right behind it makes a
        // dropped request show (its reply skips our xid) instead of waiting forever.
        let (reply, rx) = oneshot::channel();
        let (sreply, srx) = oneshot::channel();
        let mut sentinel = Encoder::default();
        sentinel.str(&self.full("/")?).bool(false);
        for (opcode, body, reply) in [
            (op::MULTI_READ, e.buf, reply),
            (op::EXISTS, sentinel.buf, sreply),
        ] {
            self.inner
                .tx
                .send(Cmd::Request {
                    opcode,
                    body,
                    watch: None,
                    reply,
                })
                .map_err(|_| ZkError::Closed)?;
        }
        let (err, body) = rx.await.map_err(|_| ZkError::Closed)??;
        let _ = srx.await;
        if err != 0 {
            return Err(ZkError::server(err, &paths[0]));
        }
        // A server that does not know the opcode may also answer with an empty body.
        if body.is_empty() {
            return Err(ZkError::Server {
                code: ErrorCode::Unimplemented,
                path: paths[0].clone(),
            });
        }
        let results = decode_multi_read(&mut Decoder::new(&body))?;
        if results.len() != paths.len() {
            return Err(ZkError::Protocol(format!(
                "multiRead of {} paths answered {} results",
                paths.len(),
                results.len()
            )));
        }
        Ok(results
            .into_iter()
            .zip(paths)
            .map(|(r, p)| r.map_err(|code| ZkError::server(code, p)))
            .collect())
    }

    /// Applies all operations atomically, or none. On failure the error names the code and
    /// the path of the first operation that failed.
    pub async fn multi(&self, ops: &[Op]) -> Result<Vec<OpResult>, ZkError> {
        if ops.is_empty() {
            return Ok(Vec::new());
        }
        let mut e = Encoder::default();
        for o in ops {
            let full = self.full(o.path())?;
            e.i32(o.opcode()).bool(false).i32(-1);
            o.encode_body(&mut e, &full);
        }
        e.i32(-1).bool(true).i32(-1);
        let (reply, rx) = oneshot::channel();
        self.inner
            .tx
            .send(Cmd::Request {
                opcode: op::MULTI,
                body: e.buf,
                watch: None,
                reply,
            })
            .map_err(|_| ZkError::Closed)?;
        let (err, body) = rx.await.map_err(|_| ZkError::Closed)??;
        // A failed multi carries per-op results; a reply with only a header (e.g. a session
        // error) carries none.
        if body.is_empty() {
            let path = ops.first().map(|o| o.path()).unwrap_or("/");
            return Err(ZkError::server(if err == 0 { -5 } else { err }, path));
        }
        match decode_multi(&mut Decoder::new(&body))? {
            Ok(results) if err == 0 => Ok(results
                .into_iter()
                .map(|r| match r {
                    OpResult::Create(p) => OpResult::Create(self.strip(&p)),
                    r => r,
                })
                .collect()),
            Ok(_) => Err(ZkError::server(err, ops[0].path())),
            Err((i, code)) => Err(ZkError::server(
                code,
                ops.get(i).map(|o| o.path()).unwrap_or("/"),
            )),
        }
    }
}

fn strip_chroot(chroot: &str, full: &str) -> String {
    if chroot == "/" {
        return full.to_owned();
    }
    match full.strip_prefix(chroot) {
        Some("") => "/".to_owned(),
        Some(rest) if rest.starts_with('/') => rest.to_owned(),
        _ => full.to_owned(),
    }
}

#[derive(Debug)]
struct Creds {
    session_id: i64,
    passwd: Vec<u8>,
    last_zxid: i64,
    timeout: Duration,
}

/// Tries each host once, starting at `next`; returns the first connection whose handshake
/// succeeded.
async fn connect_any(
    hosts: &[String],
    next: &mut usize,
    opts: &ZkOptions,
    timeout_ms: i32,
    creds: &mut Creds,
) -> Result<TcpStream, ZkError> {
    let mut errors = Vec::new();
    for _ in 0..hosts.len() {
        let host = &hosts[*next % hosts.len()];
        *next = (*next + 1) % hosts.len();
        match tokio::time::timeout(opts.connect_timeout, handshake(host, timeout_ms, creds)).await {
            Ok(Ok(s)) => return Ok(s),
            Ok(Err(ZkError::SessionExpired)) => return Err(ZkError::SessionExpired),
            Ok(Err(e)) => errors.push(format!("{host}: {e}")),
            Err(_) => errors.push(format!(
                "{host}: no answer within {:?}",
                opts.connect_timeout
            )),
        }
    }
    Err(ZkError::ConnectionLoss(format!(
        "cannot reach any ZooKeeper server ({})",
        errors.join("; ")
    )))
}

async fn handshake(host: &str, timeout_ms: i32, creds: &mut Creds) -> Result<TcpStream, ZkError> {
    let mut s = TcpStream::connect(host)
        .await
        .map_err(|e| ZkError::ConnectionLoss(format!("connect: {e}")))?;
    let _ = s.set_nodelay(true);
    let req = ConnectRequest {
        last_zxid_seen: creds.last_zxid,
        timeout_ms,
        session_id: creds.session_id,
        passwd: creds.passwd.clone(),
    };
    s.write_all(&req.encode())
        .await
        .map_err(|e| ZkError::ConnectionLoss(format!("send handshake: {e}")))?;
    let mut len = [0u8; 4];
    s.read_exact(&mut len)
        .await
        .map_err(|e| ZkError::ConnectionLoss(format!("read handshake: {e}")))?;
    let len = u32::from_be_bytes(len) as usize;
    if len > 4096 {
        return Err(ZkError::Protocol(format!("handshake reply of {len} bytes")));
    }
    let mut frame = vec![0; len];
    s.read_exact(&mut frame)
        .await
        .map_err(|e| ZkError::ConnectionLoss(format!("read handshake: {e}")))?;
    let resp = ConnectResponse::decode(&frame)?;
    if resp.timeout_ms <= 0 {
        return Err(ZkError::SessionExpired);
    }
    creds.session_id = resp.session_id;
    creds.passwd = resp.passwd;
    creds.timeout = Duration::from_millis(resp.timeout_ms as u64);
    Ok(s)
}

struct Pending {
    xid: i32,
    watch: Option<(WatchKind, String, WatchTx)>,
    reply: oneshot::Sender<Result<(i32, Vec<u8>), ZkError>>,
}

struct Task {
    rx: mpsc::UnboundedReceiver<Cmd>,
    state: watch::Sender<SessionState>,
    hosts: Vec<String>,
    next_host: usize,
    opts: ZkOptions,
    timeout_ms: i32,
    creds: Creds,
    session: Arc<Mutex<(i64, Vec<u8>)>>,
    chroot: String,
    data_watches: HashMap<String, Vec<WatchTx>>,
    exist_watches: HashMap<String, Vec<WatchTx>>,
    child_watches: HashMap<String, Vec<WatchTx>>,
    xid: i32,
}

/// Why a connection ended.
enum End {
    /// Lost the connection (why, when we last heard from the server); reconnect.
    Lost(String, Instant),
    /// Every client handle is gone or close() was called.
    Closed(Option<oneshot::Sender<()>>),
}

impl Task {
    async fn run(mut self, first: TcpStream) {
        let mut stream = first;
        loop {
            let end = self.serve(stream).await;
            let last_heard;
            match end {
                End::Closed(ack) => {
                    self.finish(SessionState::Closed, ZkError::Closed);
                    if let Some(a) = ack {
                        let _ = a.send(());
                    }
                    return;
                }
                End::Lost(why, heard) => {
                    last_heard = heard;
                    tracing::warn!(session_id = self.creds.session_id, reason = %why, "ZooKeeper connection lost; reconnecting");
                    let _ = self.state.send(SessionState::Disconnected);
                }
            }
            // Reconnect within the session; answer requests with ConnectionLoss meanwhile.
            let timeout_ms = self.timeout_ms;
            let res = loop {
                if last_heard.elapsed() >= self.creds.timeout {
                    break Err(ZkError::SessionExpired);
                }
                let r = {
                    let attempt = connect_any(
                        &self.hosts,
                        &mut self.next_host,
                        &self.opts,
                        timeout_ms,
                        &mut self.creds,
                    );
                    tokio::pin!(attempt);
                    // Ok(connection attempt result) or Err(close requested, with its ack).
                    let r: Result<Result<TcpStream, ZkError>, Option<oneshot::Sender<()>>> = loop {
                        tokio::select! {
                            r = &mut attempt => break Ok(r),
                            cmd = self.rx.recv() => match cmd {
                                Some(Cmd::Request { reply, .. }) => {
                                    let _ = reply.send(Err(ZkError::ConnectionLoss(
                                        "not connected; reconnecting within the session".into(),
                                    )));
                                }
                                Some(Cmd::Close(ack)) => break Err(Some(ack)),
                                None => break Err(None),
                            },
                        }
                    };
                    r
                };
                match r {
                    Err(ack) => {
                        self.finish(SessionState::Closed, ZkError::Closed);
                        if let Some(a) = ack {
                            let _ = a.send(());
                        }
                        return;
                    }
                    Ok(Ok(s)) => break Ok(s),
                    Ok(Err(ZkError::SessionExpired)) => break Err(ZkError::SessionExpired),
                    Ok(Err(_)) => {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
            };
            match res {
                Ok(s) => {
                    tracing::info!(
                        session_id = self.creds.session_id,
                        "ZooKeeper session resumed"
                    );
                    stream = s;
                }
                Err(_) => {
                    tracing::warn!(
                        session_id = self.creds.session_id,
                        "ZooKeeper session expired"
                    );
                    self.finish(SessionState::Expired, ZkError::SessionExpired);
                    // Answer every later request with SessionExpired until the handles go.
                    while let Some(cmd) = self.rx.recv().await {
                        match cmd {
                            Cmd::Request { reply, .. } => {
                                let _ = reply.send(Err(ZkError::SessionExpired));
                            }
                            Cmd::Close(ack) => {
                                let _ = ack.send(());
                            }
                        }
                    }
                    return;
                }
            }
        }
    }

    /// Ends the session for good: every watch learns why.
    fn finish(&mut self, state: SessionState, why: ZkError) {
        for (_, ws) in self
            .data_watches
            .drain()
            .chain(self.exist_watches.drain())
            .chain(self.child_watches.drain())
        {
            for w in ws {
                let _ = w.send(Err(why.clone()));
            }
        }
        let _ = self.state.send(state);
    }

    /// Appends one request frame to `out` and records what its reply is for.
    fn frame_request(
        &mut self,
        out: &mut Vec<u8>,
        pending: &mut VecDeque<Pending>,
        opcode: i32,
        body: &[u8],
        watch: Option<(WatchKind, String, WatchTx)>,
        reply: oneshot::Sender<Result<(i32, Vec<u8>), ZkError>>,
    ) {
        let xid = self.next_xid();
        let mut e = Encoder {
            buf: std::mem::take(out),
        };
        let start = e.buf.len();
        e.buf.extend_from_slice(&[0; 4]);
        e.header(xid, opcode);
        e.buf.extend_from_slice(body);
        let len = (e.buf.len() - start - 4) as u32;
        e.buf[start..start + 4].copy_from_slice(&len.to_be_bytes());
        *out = e.buf;
        pending.push_back(Pending { xid, watch, reply });
    }

    fn next_xid(&mut self) -> i32 {
        self.xid = if self.xid >= i32::MAX - 1 {
            1
        } else {
            self.xid + 1
        };
        self.xid
    }

    async fn serve(&mut self, stream: TcpStream) -> End {
        *self.session.lock().unwrap() = (self.creds.session_id, self.creds.passwd.clone());
        let _ = self.state.send(SessionState::Connected);
        let (mut rd, mut wr) = stream.into_split();
        let mut buf = BytesMut::with_capacity(64 * 1024);
        let mut pending: VecDeque<Pending> = VecDeque::new();
        let read_timeout = self.creds.timeout * 2 / 3;
        let mut ping = tokio::time::interval(self.creds.timeout / 3);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ping.tick().await;
        let mut last_recv = Instant::now();

        // Re-arm the watches this session had before the reconnection, in requests of at
        // most ~128 KiB of paths (a server refuses a request over its 1 MiB limit).
        let frames = set_watches_frames(
            self.creds.last_zxid,
            [&self.data_watches, &self.exist_watches, &self.child_watches]
                .map(|m| m.keys().cloned().collect::<Vec<_>>()),
        );
        for f in frames {
            if let Err(err) = wr.write_all(&f).await {
                return fail(&mut pending, last_recv, format!("write: {err}"));
            }
        }

        loop {
            tokio::select! {
                r = rd.read_buf(&mut buf) => {
                    match r {
                        Ok(0) => return fail(&mut pending, last_recv, "server closed the connection".into()),
                        Err(e) => return fail(&mut pending, last_recv, format!("read: {e}")),
                        Ok(_) => {}
                    }
                    last_recv = Instant::now();
                    while buf.len() >= 4 {
                        let len = u32::from_be_bytes(buf[..4].try_into().unwrap()) as usize;
                        if len > MAX_FRAME {
                            return fail(&mut pending, last_recv, format!("frame of {len} bytes is too large"));
                        }
                        if buf.len() < 4 + len {
                            break;
                        }
                        buf.advance(4);
                        let frame = buf.split_to(len);
                        if let Err(why) = self.on_frame(&frame, &mut pending) {
                            return fail(&mut pending, last_recv, why.to_string());
                        }
                    }
                }
                cmd = self.rx.recv() => {
                    let Some(cmd) = cmd else {
                        self.close_session(&mut wr, &mut rd).await;
                        return End::Closed(None);
                    };
                    match cmd {
                        Cmd::Close(ack) => {
                            // Answer what is in flight first? Close discards it: callers of
                            // close() are done with the session.
                            self.close_session(&mut wr, &mut rd).await;
                            for p in pending.drain(..) {
                                let _ = p.reply.send(Err(ZkError::Closed));
                            }
                            return End::Closed(Some(ack));
                        }
                        Cmd::Request { opcode, body, watch, reply } => {
                            // Requests queued behind this one go out in the same write: a
                            // store load pipelines thousands of reads.
                            let mut out = Vec::new();
                            self.frame_request(&mut out, &mut pending, opcode, &body, watch, reply);
                            let mut close = None;
                            while out.len() < 256 * 1024 {
                                match self.rx.try_recv() {
                                    Ok(Cmd::Request { opcode, body, watch, reply }) => {
                                        self.frame_request(&mut out, &mut pending, opcode, &body, watch, reply);
                                    }
                                    Ok(Cmd::Close(ack)) => {
                                        close = Some(ack);
                                        break;
                                    }
                                    Err(_) => break,
                                }
                            }
                            if let Err(err) = wr.write_all(&out).await {
                                let end = fail(&mut pending, last_recv, format!("write: {err}"));
                                return match close {
                                    Some(ack) => End::Closed(Some(ack)),
                                    None => end,
                                };
                            }
                            if let Some(ack) = close {
                                self.close_session(&mut wr, &mut rd).await;
                                for p in pending.drain(..) {
                                    let _ = p.reply.send(Err(ZkError::Closed));
                                }
                                return End::Closed(Some(ack));
                            }
                        }
                    }
                }
                _ = ping.tick() => {
                    if last_recv.elapsed() > read_timeout {
                        return fail(&mut pending, last_recv, format!("no answer from the server for {:?}", last_recv.elapsed()));
                    }
                    let mut e = Encoder::frame();
                    e.header(xid::PING, op::PING);
                    if let Err(err) = wr.write_all(&e.finish()).await {
                        return fail(&mut pending, last_recv, format!("write: {err}"));
                    }
                }
            }
        }
    }

    async fn close_session(
        &mut self,
        wr: &mut tokio::net::tcp::OwnedWriteHalf,
        rd: &mut tokio::net::tcp::OwnedReadHalf,
    ) {
        let xid = self.next_xid();
        let mut e = Encoder::frame();
        e.header(xid, op::CLOSE_SESSION);
        if wr.write_all(&e.finish()).await.is_ok() {
            // Wait (briefly) for the server to confirm, so ephemeral nodes are gone when
            // close() returns; the reply or EOF both do.
            let mut sink = [0u8; 4096];
            let _ = tokio::time::timeout(Duration::from_secs(2), async {
                loop {
                    match rd.read(&mut sink).await {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {}
                    }
                }
            })
            .await;
        }
    }

    fn on_frame(&mut self, frame: &[u8], pending: &mut VecDeque<Pending>) -> Result<(), ZkError> {
        let mut d = Decoder::new(frame);
        let h = ReplyHeader::decode(&mut d)?;
        if h.zxid > self.creds.last_zxid {
            self.creds.last_zxid = h.zxid;
        }
        match h.xid {
            xid::PING => return Ok(()),
            xid::SET_WATCHES => {
                if h.err != 0 {
                    tracing::warn!(code = %ErrorCode::from_i32(h.err), "ZooKeeper refused to re-arm watches");
                }
                return Ok(());
            }
            xid::NOTIFICATION => {
                let ev = RawEvent::decode(&mut d)?;
                self.dispatch(ev);
                return Ok(());
            }
            _ => {}
        }
        // Replies come in request order: a reply to a later request means the server dropped
        // the earlier ones (old servers do that with requests they do not know).
        let Some(pos) = pending.iter().position(|p| p.xid == h.xid) else {
            return Err(ZkError::Protocol(format!(
                "reply with xid {} to no request in flight",
                h.xid
            )));
        };
        for dropped in pending.drain(..pos) {
            tracing::debug!(
                xid = dropped.xid,
                "ZooKeeper dropped a request it does not know"
            );
            let _ = dropped
                .reply
                .send(Ok((ErrorCode::Unimplemented.as_i32(), Vec::new())));
        }
        let Some(p) = pending.pop_front() else {
            return Err(ZkError::Protocol(
                "reply bookkeeping lost its request".into(),
            ));
        };
        if let Some((kind, path, tx)) = p.watch {
            let map = match (kind, h.err) {
                (WatchKind::Exists, 0) | (WatchKind::Data, 0) => Some(&mut self.data_watches),
                (WatchKind::Exists, e) if e == ErrorCode::NoNode.as_i32() => {
                    Some(&mut self.exist_watches)
                }
                (WatchKind::Child, 0) => Some(&mut self.child_watches),
                _ => None,
            };
            if let Some(m) = map {
                m.entry(path).or_default().push(tx);
            }
        }
        let _ = p
            .reply
            .send(Ok((h.err, frame[d_pos(frame, &d)..].to_vec())));
        Ok(())
    }

    fn dispatch(&mut self, ev: RawEvent) {
        let kind = match ev.typ {
            1 => WatchEventKind::NodeCreated,
            2 => WatchEventKind::NodeDeleted,
            3 => WatchEventKind::NodeDataChanged,
            4 => WatchEventKind::NodeChildrenChanged,
            // Session-level events (type None) are reported through the state channel.
            _ => return,
        };
        let mut fired = Vec::new();
        let path = ev.path;
        if kind != WatchEventKind::NodeChildrenChanged {
            fired.extend(self.data_watches.remove(&path).unwrap_or_default());
            fired.extend(self.exist_watches.remove(&path).unwrap_or_default());
        }
        if matches!(
            kind,
            WatchEventKind::NodeChildrenChanged | WatchEventKind::NodeDeleted
        ) {
            fired.extend(self.child_watches.remove(&path).unwrap_or_default());
        }
        let event = WatchEvent {
            kind,
            path: strip_chroot(&self.chroot, &path),
        };
        for tx in fired {
            let _ = tx.send(Ok(event.clone()));
        }
    }
}

/// SetWatches requests for (data, exist, child) watch paths, split so that no request
/// carries more than ~128 KiB of paths. None when there is nothing to re-arm.
fn set_watches_frames(last_zxid: i64, lists: [Vec<String>; 3]) -> Vec<Vec<u8>> {
    const LIMIT: usize = 128 * 1024;
    let mut frames = Vec::new();
    let mut cur: [Vec<String>; 3] = Default::default();
    let mut size = 0;
    let flush = |cur: &mut [Vec<String>; 3], frames: &mut Vec<Vec<u8>>| {
        if cur.iter().all(Vec::is_empty) {
            return;
        }
        let mut e = Encoder::frame();
        e.header(xid::SET_WATCHES, op::SET_WATCHES)
            .i64(last_zxid)
            .strs(&cur[0])
            .strs(&cur[1])
            .strs(&cur[2]);
        frames.push(e.finish());
        *cur = Default::default();
    };
    for (kind, list) in lists.into_iter().enumerate() {
        for path in list {
            if size + path.len() > LIMIT {
                flush(&mut cur, &mut frames);
                size = 0;
            }
            size += path.len() + 4;
            cur[kind].push(path);
        }
    }
    flush(&mut cur, &mut frames);
    frames
}

/// Fails everything in flight with `ConnectionLoss`.
fn fail(pending: &mut VecDeque<Pending>, last_recv: Instant, why: String) -> End {
    for p in pending.drain(..) {
        let _ = p.reply.send(Err(ZkError::ConnectionLoss(format!(
            "connection dropped before the answer ({why}); the operation may or may not have been applied"
        ))));
    }
    End::Lost(why, last_recv)
}

/// Offset of the decoder in `frame` (what is left is the reply body).
fn d_pos(frame: &[u8], d: &Decoder<'_>) -> usize {
    frame.len() - d.remaining()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_watches_are_split_under_the_request_limit() {
        assert!(set_watches_frames(1, Default::default()).is_empty());
        let long: Vec<String> = (0..5000)
            .map(|i| format!("/some/long/path/{i:060}"))
            .collect();
        let frames = set_watches_frames(7, [long.clone(), vec!["/x".into()], long]);
        assert!(frames.len() > 1);
        let mut paths = 0;
        for f in &frames {
            assert!(f.len() < 140 * 1024, "{}", f.len());
            let mut d = Decoder::new(&f[4..]);
            assert_eq!(
                (d.i32().unwrap(), d.i32().unwrap()),
                (xid::SET_WATCHES, op::SET_WATCHES)
            );
            assert_eq!(d.i64().unwrap(), 7);
            for _ in 0..3 {
                paths += d.strings().unwrap().len();
            }
            assert_eq!(d.remaining(), 0);
        }
        assert_eq!(paths, 10_001);
    }

    #[test]
    fn chroot_strip() {
        assert_eq!(strip_chroot("/", "/a"), "/a");
        assert_eq!(strip_chroot("/r", "/r"), "/");
        assert_eq!(strip_chroot("/r", "/r/a"), "/a");
        assert_eq!(strip_chroot("/r", "/rx"), "/rx");
    }
}
