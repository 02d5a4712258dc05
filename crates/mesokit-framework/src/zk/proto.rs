//! The ZooKeeper wire format (jute): big-endian integers, length-prefixed strings and buffers,
//! and the few records a client needs. Frames on the socket are a 4-byte length then the
//! record. Pure encoding and decoding, no IO.

use super::{ErrorCode, ZkError};

/// Operation codes (`ZooDefs.OpCode`).
pub(crate) mod op {
    pub(crate) const CREATE: i32 = 1;
    pub(crate) const DELETE: i32 = 2;
    pub(crate) const EXISTS: i32 = 3;
    pub(crate) const GET_DATA: i32 = 4;
    pub(crate) const SET_DATA: i32 = 5;
    pub(crate) const GET_CHILDREN: i32 = 8;
    pub(crate) const PING: i32 = 11;
    pub(crate) const CHECK: i32 = 13;
    pub(crate) const MULTI: i32 = 14;
    pub(crate) const MULTI_READ: i32 = 22;
    pub(crate) const SET_WATCHES: i32 = 101;
    pub(crate) const CLOSE_SESSION: i32 = -11;
    pub(crate) const ERROR: i32 = -1;
}

/// Reserved xids for replies that do not answer a numbered request.
pub(crate) mod xid {
    pub(crate) const NOTIFICATION: i32 = -1;
    pub(crate) const PING: i32 = -2;
    pub(crate) const SET_WATCHES: i32 = -8;
}

/// Largest frame we accept from a server (ZooKeeper's default `jute.maxbuffer` is 1 MiB; a
/// getChildren answer for a huge directory can be larger, so leave room).
pub(crate) const MAX_FRAME: usize = 64 << 20;

/// `Perms.ALL`.
const PERMS_ALL: i32 = 31;

/// A znode's metadata (`org.apache.zookeeper.data.Stat`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stat {
    /// zxid of the change that created the node.
    pub czxid: i64,
    /// zxid of the last change to the data.
    pub mzxid: i64,
    /// Creation time, ms since the epoch.
    pub ctime: i64,
    /// Last modification time, ms since the epoch.
    pub mtime: i64,
    /// Number of changes to the data.
    pub version: i32,
    /// Number of changes to the children.
    pub cversion: i32,
    /// Number of changes to the ACL.
    pub aversion: i32,
    /// Session id of the owner if the node is ephemeral, else 0.
    pub ephemeral_owner: i64,
    /// Length of the data.
    pub data_length: i32,
    /// Number of children.
    pub num_children: i32,
    /// zxid of the last change to the children.
    pub pzxid: i64,
}

/// Appends jute-encoded values to a buffer.
#[derive(Debug, Default)]
pub(crate) struct Encoder {
    pub(crate) buf: Vec<u8>,
}

impl Encoder {
    /// Starts a frame: reserves the 4-byte length, filled in by [`Encoder::finish`].
    pub(crate) fn frame() -> Self {
        Self { buf: vec![0; 4] }
    }

    pub(crate) fn finish(mut self) -> Vec<u8> {
        let len = (self.buf.len() - 4) as u32;
        self.buf[..4].copy_from_slice(&len.to_be_bytes());
        self.buf
    }

    pub(crate) fn i32(&mut self, v: i32) -> &mut Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }

    pub(crate) fn i64(&mut self, v: i64) -> &mut Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }

    pub(crate) fn bool(&mut self, v: bool) -> &mut Self {
        self.buf.push(u8::from(v));
        self
    }

    pub(crate) fn bytes(&mut self, v: &[u8]) -> &mut Self {
        self.i32(v.len() as i32);
        self.buf.extend_from_slice(v);
        self
    }

    pub(crate) fn str(&mut self, v: &str) -> &mut Self {
        self.bytes(v.as_bytes())
    }

    pub(crate) fn strs(&mut self, v: &[String]) -> &mut Self {
        self.i32(v.len() as i32);
        for s in v {
            self.str(s);
        }
        self
    }

    /// The open ACL (`world:anyone`, all permissions), the only one we write.
    pub(crate) fn open_acl(&mut self) -> &mut Self {
        self.i32(1).i32(PERMS_ALL).str("world").str("anyone")
    }

    pub(crate) fn header(&mut self, xid: i32, opcode: i32) -> &mut Self {
        self.i32(xid).i32(opcode)
    }
}

/// Reads jute-encoded values from a received frame.
#[derive(Debug)]
pub(crate) struct Decoder<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Decoder<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], ZkError> {
        if self.remaining() < n {
            return Err(ZkError::Protocol(format!(
                "reply too short: needed {n} bytes for {what} at offset {}, {} left",
                self.pos,
                self.remaining()
            )));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    pub(crate) fn i32(&mut self) -> Result<i32, ZkError> {
        Ok(i32::from_be_bytes(self.take(4, "int")?.try_into().unwrap()))
    }

    pub(crate) fn i64(&mut self) -> Result<i64, ZkError> {
        Ok(i64::from_be_bytes(
            self.take(8, "long")?.try_into().unwrap(),
        ))
    }

    pub(crate) fn bool(&mut self) -> Result<bool, ZkError> {
        Ok(self.take(1, "boolean")?[0] != 0)
    }

    /// A buffer; jute's null (-1) reads as empty.
    pub(crate) fn bytes(&mut self) -> Result<Vec<u8>, ZkError> {
        let len = self.i32()?;
        if len < 0 {
            return Ok(Vec::new());
        }
        Ok(self.take(len as usize, "buffer")?.to_vec())
    }

    pub(crate) fn string(&mut self) -> Result<String, ZkError> {
        let b = self.bytes()?;
        String::from_utf8(b).map_err(|_| ZkError::Protocol("string is not UTF-8".into()))
    }

    pub(crate) fn strings(&mut self) -> Result<Vec<String>, ZkError> {
        let n = self.i32()?;
        if n < 0 {
            return Ok(Vec::new());
        }
        // Every string takes at least 4 bytes: a count beyond that is a broken frame.
        if n as usize > self.remaining() / 4 {
            return Err(ZkError::Protocol(format!(
                "vector of {n} strings in a short reply"
            )));
        }
        (0..n).map(|_| self.string()).collect()
    }

    pub(crate) fn stat(&mut self) -> Result<Stat, ZkError> {
        Ok(Stat {
            czxid: self.i64()?,
            mzxid: self.i64()?,
            ctime: self.i64()?,
            mtime: self.i64()?,
            version: self.i32()?,
            cversion: self.i32()?,
            aversion: self.i32()?,
            ephemeral_owner: self.i64()?,
            data_length: self.i32()?,
            num_children: self.i32()?,
            pzxid: self.i64()?,
        })
    }
}

/// The session handshake, sent first on every connection.
#[derive(Debug, Clone)]
pub(crate) struct ConnectRequest {
    pub(crate) last_zxid_seen: i64,
    pub(crate) timeout_ms: i32,
    pub(crate) session_id: i64,
    pub(crate) passwd: Vec<u8>,
}

impl ConnectRequest {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut e = Encoder::frame();
        e.i32(0) // protocol version
            .i64(self.last_zxid_seen)
            .i32(self.timeout_ms)
            .i64(self.session_id)
            .bytes(&self.passwd)
            .bool(false); // not read-only
        e.finish()
    }
}

/// The server's answer to [`ConnectRequest`]. A timeout of 0 or less means the session
/// we asked to resume has expired.
#[derive(Debug, Clone)]
pub(crate) struct ConnectResponse {
    pub(crate) timeout_ms: i32,
    pub(crate) session_id: i64,
    pub(crate) passwd: Vec<u8>,
}

impl ConnectResponse {
    pub(crate) fn decode(frame: &[u8]) -> Result<Self, ZkError> {
        let mut d = Decoder::new(frame);
        let _protocol_version = d.i32()?;
        let timeout_ms = d.i32()?;
        let session_id = d.i64()?;
        let passwd = d.bytes()?;
        // A trailing read-only flag follows on servers since 3.4; we do not need it.
        Ok(Self {
            timeout_ms,
            session_id,
            passwd,
        })
    }
}

/// `ReplyHeader`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ReplyHeader {
    pub(crate) xid: i32,
    pub(crate) zxid: i64,
    pub(crate) err: i32,
}

impl ReplyHeader {
    pub(crate) fn decode(d: &mut Decoder<'_>) -> Result<Self, ZkError> {
        Ok(Self {
            xid: d.i32()?,
            zxid: d.i64()?,
            err: d.i32()?,
        })
    }
}

/// One operation of a `multi` transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Create a node (open ACL).
    Create {
        /// Path.
        path: String,
        /// Data.
        data: Vec<u8>,
        /// Node kind.
        mode: CreateMode,
    },
    /// Delete a node; `version` -1 matches any version.
    Delete {
        /// Path.
        path: String,
        /// Expected version, -1 for any.
        version: i32,
    },
    /// Replace a node's data; `version` -1 matches any version.
    SetData {
        /// Path.
        path: String,
        /// Data.
        data: Vec<u8>,
        /// Expected version, -1 for any.
        version: i32,
    },
    /// Fail the transaction unless the node exists (and has `version`, unless -1).
    Check {
        /// Path.
        path: String,
        /// Expected version, -1 for any.
        version: i32,
    },
}

impl Op {
    pub(crate) fn path(&self) -> &str {
        match self {
            Op::Create { path, .. }
            | Op::Delete { path, .. }
            | Op::SetData { path, .. }
            | Op::Check { path, .. } => path,
        }
    }

    pub(crate) fn opcode(&self) -> i32 {
        match self {
            Op::Create { .. } => op::CREATE,
            Op::Delete { .. } => op::DELETE,
            Op::SetData { .. } => op::SET_DATA,
            Op::Check { .. } => op::CHECK,
        }
    }

    /// The request body (without any header), with `path` in place of the op's own path
    /// (the client passes the chroot-prefixed one).
    pub(crate) fn encode_body(&self, e: &mut Encoder, path: &str) {
        match self {
            Op::Create { data, mode, .. } => {
                e.str(path).bytes(data).open_acl().i32(mode.flags());
            }
            Op::Delete { version, .. } | Op::Check { version, .. } => {
                e.str(path).i32(*version);
            }
            Op::SetData { data, version, .. } => {
                e.str(path).bytes(data).i32(*version);
            }
        }
    }
}

/// The result of one operation of a successful `multi`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpResult {
    /// The created node's path (with the sequence suffix for sequential nodes).
    Create(String),
    /// Deleted.
    Delete,
    /// The node's new metadata.
    SetData(Stat),
    /// Check passed.
    Check,
}

/// Decodes a `multi` reply body: `Ok(results)`, or the index and code of the op that failed.
pub(crate) fn decode_multi(
    d: &mut Decoder<'_>,
) -> Result<Result<Vec<OpResult>, (usize, i32)>, ZkError> {
    let mut results = Vec::new();
    let mut failed: Option<(usize, i32)> = None;
    loop {
        let typ = d.i32()?;
        let done = d.bool()?;
        let err = d.i32()?;
        if done {
            break;
        }
        let i = results.len();
        let r = match typ {
            op::CREATE => OpResult::Create(d.string()?),
            op::DELETE => OpResult::Delete,
            op::SET_DATA => OpResult::SetData(d.stat()?),
            op::CHECK => OpResult::Check,
            op::ERROR => {
                let code = d.i32()?;
                let _ = err;
                // Ops before the failing one report OK and ops after it report
                // RuntimeInconsistency: the first "real" error is the cause.
                if failed.is_none() && code != 0 && code != ErrorCode::RuntimeInconsistency.as_i32()
                {
                    failed = Some((i, code));
                }
                OpResult::Check
            }
            other => {
                return Err(ZkError::Protocol(format!(
                    "unexpected op type {other} in a multi reply"
                )));
            }
        };
        results.push(r);
    }
    Ok(match failed {
        Some(f) => Err(f),
        None => Ok(results),
    })
}

/// A node's data and metadata.
pub type NodeData = (Vec<u8>, Stat);

/// Decodes a `multiRead` reply of getData ops: per op, the data and stat or an error code.
pub(crate) fn decode_multi_read(
    d: &mut Decoder<'_>,
) -> Result<Vec<Result<NodeData, i32>>, ZkError> {
    let mut out = Vec::new();
    loop {
        let typ = d.i32()?;
        let done = d.bool()?;
        let _err = d.i32()?;
        if done {
            return Ok(out);
        }
        match typ {
            op::GET_DATA => {
                let data = d.bytes()?;
                out.push(Ok((data, d.stat()?)));
            }
            op::ERROR => out.push(Err(d.i32()?)),
            other => {
                return Err(ZkError::Protocol(format!(
                    "unexpected op type {other} in a multiRead reply"
                )));
            }
        }
    }
}

/// Node kinds for create.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CreateMode {
    /// Stays until deleted.
    Persistent,
    /// Removed when the creating session ends.
    Ephemeral,
    /// Persistent, with a 10-digit increasing suffix appended to the name.
    PersistentSequential,
    /// Ephemeral, with a 10-digit increasing suffix appended to the name.
    EphemeralSequential,
}

impl CreateMode {
    fn flags(self) -> i32 {
        match self {
            CreateMode::Persistent => 0,
            CreateMode::Ephemeral => 1,
            CreateMode::PersistentSequential => 2,
            CreateMode::EphemeralSequential => 3,
        }
    }
}

/// A watch notification (`WatcherEvent`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RawEvent {
    pub(crate) typ: i32,
    pub(crate) state: i32,
    pub(crate) path: String,
}

impl RawEvent {
    pub(crate) fn decode(d: &mut Decoder<'_>) -> Result<Self, ZkError> {
        Ok(Self {
            typ: d.i32()?,
            state: d.i32()?,
            path: d.string()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_request_layout() {
        let f = ConnectRequest {
            last_zxid_seen: 7,
            timeout_ms: 10_000,
            session_id: 0,
            passwd: vec![0; 16],
        }
        .encode();
        // length + version + zxid + timeout + session + (len + 16) + readonly
        assert_eq!(f.len(), 4 + 4 + 8 + 4 + 8 + 4 + 16 + 1);
        assert_eq!(&f[..4], &((f.len() - 4) as u32).to_be_bytes());
        assert_eq!(&f[8..16], &7i64.to_be_bytes());
    }

    #[test]
    fn short_frames_are_errors_not_panics() {
        let mut d = Decoder::new(&[0, 0, 0, 5, b'a']);
        assert!(matches!(d.string(), Err(ZkError::Protocol(_))));
        let mut d = Decoder::new(&[0x7f, 0xff, 0xff, 0xff]);
        assert!(matches!(d.strings(), Err(ZkError::Protocol(_))));
        assert!(ConnectResponse::decode(&[0, 0]).is_err());
    }

    #[test]
    fn multi_reply_reports_first_real_error() {
        let mut e = Encoder::default();
        // op 0: OK (reported as error type with code 0), op 1: NoNode, op 2: inconsistency
        for code in [0, -101, -2] {
            e.i32(op::ERROR).bool(false).i32(code).i32(code);
        }
        e.i32(-1).bool(true).i32(-1);
        let mut d = Decoder::new(&e.buf);
        assert_eq!(decode_multi(&mut d).unwrap(), Err((1, -101)));
    }

    /// Every decoder a server's bytes reach, on one input: must return, never panic.
    fn decode_all(b: &[u8]) {
        let _ = ConnectResponse::decode(b);
        let mut d = Decoder::new(b);
        if ReplyHeader::decode(&mut d).is_ok() {
            let rest = &b[b.len() - d.remaining()..];
            let _ = RawEvent::decode(&mut Decoder::new(rest));
            let _ = decode_multi(&mut Decoder::new(rest));
            let _ = decode_multi_read(&mut Decoder::new(rest));
            let _ = Decoder::new(rest).stat();
            let _ = Decoder::new(rest).strings();
            let mut g = Decoder::new(rest);
            let _ = g.bytes().and_then(|_| g.stat());
        }
    }

    #[test]
    fn truncated_and_random_replies_never_panic() {
        // Every prefix of well-formed replies.
        let mut e = Encoder::default();
        e.i32(5).i64(9).i32(0);
        e.i32(op::CREATE).bool(false).i32(0).str("/a/b");
        e.i32(op::SET_DATA).bool(false).i32(0);
        e.buf.extend_from_slice(&[0u8; 68]);
        e.i32(op::ERROR).bool(false).i32(-101).i32(-101);
        e.i32(-1).bool(true).i32(-1);
        let good = e.buf.clone();
        for n in 0..=good.len() {
            decode_all(&good[..n]);
        }
        // Random bytes, and random single-byte damage to the good reply (xorshift: no
        // dependency, and the same inputs on every run).
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..20_000 {
            let len = (next() % 96) as usize;
            let b: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            decode_all(&b);
            let mut g = good.clone();
            let i = (next() as usize) % g.len();
            g[i] = next() as u8;
            decode_all(&g);
        }
    }
}
