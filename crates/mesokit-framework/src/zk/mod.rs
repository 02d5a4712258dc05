//! A small ZooKeeper client of our own (the jute wire protocol over TCP), enough for the
//! framework's store, leader election and Mesos master detection: sessions with pings and
//! reconnection, CRUD, `multi`, one-shot watches and a chroot taken from a `zk://` URL.

mod client;
pub mod election;
pub mod master;
mod proto;

pub use client::{SessionState, Watch, WatchEvent, WatchEventKind, ZkClient, ZkOptions};
pub use proto::{CreateMode, NodeData, Op, OpResult, Stat};

/// ZooKeeper's error codes (`KeeperException.Code`), by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(missing_docs)]
pub enum ErrorCode {
    SystemError,
    RuntimeInconsistency,
    DataInconsistency,
    ConnectionLoss,
    MarshallingError,
    Unimplemented,
    OperationTimeout,
    BadArguments,
    UnknownSession,
    NewConfigNoQuorum,
    ReconfigInProgress,
    ApiError,
    NoNode,
    NoAuth,
    BadVersion,
    NoChildrenForEphemerals,
    NodeExists,
    NotEmpty,
    SessionExpired,
    InvalidCallback,
    InvalidAcl,
    AuthFailed,
    SessionMoved,
    NotReadOnly,
    EphemeralOnLocalSession,
    NoWatcher,
    RequestTimeout,
    ReconfigDisabled,
    SessionClosedRequireSaslAuth,
    QuotaExceeded,
    Throttled,
    /// A code this client does not know.
    Unknown(i32),
}

const CODES: &[(ErrorCode, i32)] = &[
    (ErrorCode::SystemError, -1),
    (ErrorCode::RuntimeInconsistency, -2),
    (ErrorCode::DataInconsistency, -3),
    (ErrorCode::ConnectionLoss, -4),
    (ErrorCode::MarshallingError, -5),
    (ErrorCode::Unimplemented, -6),
    (ErrorCode::OperationTimeout, -7),
    (ErrorCode::BadArguments, -8),
    (ErrorCode::UnknownSession, -12),
    (ErrorCode::NewConfigNoQuorum, -13),
    (ErrorCode::ReconfigInProgress, -14),
    (ErrorCode::ApiError, -100),
    (ErrorCode::NoNode, -101),
    (ErrorCode::NoAuth, -102),
    (ErrorCode::BadVersion, -103),
    (ErrorCode::NoChildrenForEphemerals, -108),
    (ErrorCode::NodeExists, -110),
    (ErrorCode::NotEmpty, -111),
    (ErrorCode::SessionExpired, -112),
    (ErrorCode::InvalidCallback, -113),
    (ErrorCode::InvalidAcl, -114),
    (ErrorCode::AuthFailed, -115),
    (ErrorCode::SessionMoved, -118),
    (ErrorCode::NotReadOnly, -119),
    (ErrorCode::EphemeralOnLocalSession, -120),
    (ErrorCode::NoWatcher, -121),
    (ErrorCode::RequestTimeout, -122),
    (ErrorCode::ReconfigDisabled, -123),
    (ErrorCode::SessionClosedRequireSaslAuth, -124),
    (ErrorCode::QuotaExceeded, -125),
    (ErrorCode::Throttled, -127),
];

impl ErrorCode {
    /// The code for a wire value.
    pub fn from_i32(v: i32) -> Self {
        CODES
            .iter()
            .find(|(_, n)| *n == v)
            .map(|(c, _)| *c)
            .unwrap_or(ErrorCode::Unknown(v))
    }

    /// The wire value.
    pub fn as_i32(self) -> i32 {
        match self {
            ErrorCode::Unknown(v) => v,
            c => CODES
                .iter()
                .find(|(k, _)| *k == c)
                .map(|(_, n)| *n)
                .unwrap_or(0),
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ErrorCode::Unknown(v) => write!(f, "error code {v}"),
            c => write!(f, "{c:?}"),
        }
    }
}

/// What went wrong talking to ZooKeeper.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ZkError {
    /// The server refused the operation on `path` (e.g. `NoNode`, `NodeExists`, `BadVersion`).
    #[error("ZooKeeper {code} on {path}")]
    Server {
        /// The error code.
        code: ErrorCode,
        /// The path the operation was about (without the chroot).
        path: String,
    },
    /// Not connected to any server right now, or the connection dropped before the answer
    /// came: the operation may or may not have been applied. The client keeps reconnecting
    /// within the session; retry.
    #[error("ZooKeeper ConnectionLoss: {0}")]
    ConnectionLoss(String),
    /// The session is gone (the server expired it, or we were cut off longer than its
    /// timeout); its ephemeral nodes and watches are gone too. Make a new client.
    #[error("ZooKeeper SessionExpired: the session ended; its ephemeral nodes are gone")]
    SessionExpired,
    /// The client was closed.
    #[error("ZooKeeper client closed")]
    Closed,
    /// The server sent something this client cannot parse.
    #[error("ZooKeeper protocol error: {0}")]
    Protocol(String),
    /// Bad input: a malformed URL or path.
    #[error("{0}")]
    Invalid(String),
}

impl ZkError {
    /// The ZooKeeper error code this error stands for.
    pub fn code(&self) -> ErrorCode {
        match self {
            ZkError::Server { code, .. } => *code,
            ZkError::ConnectionLoss(_) => ErrorCode::ConnectionLoss,
            ZkError::SessionExpired => ErrorCode::SessionExpired,
            ZkError::Closed => ErrorCode::ConnectionLoss,
            ZkError::Protocol(_) => ErrorCode::MarshallingError,
            ZkError::Invalid(_) => ErrorCode::BadArguments,
        }
    }

    pub(crate) fn server(code: i32, path: &str) -> Self {
        match ErrorCode::from_i32(code) {
            ErrorCode::SessionExpired => ZkError::SessionExpired,
            ErrorCode::ConnectionLoss => ZkError::ConnectionLoss(format!("on {path}")),
            code => ZkError::Server {
                code,
                path: path.to_owned(),
            },
        }
    }
}

/// A parsed `zk://host:port[,host:port…][/path]` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZkUrl {
    /// `host:port` pairs, in the order given (port 2181 when omitted).
    pub hosts: Vec<String>,
    /// The path, `/` when none was given; never ends with `/` otherwise.
    pub path: String,
}

impl ZkUrl {
    /// Parses a `zk://` URL. Credentials (`user:pass@`) are not supported and are refused.
    pub fn parse(url: &str) -> Result<Self, ZkError> {
        let bad = |why: &str| ZkError::Invalid(format!("invalid ZooKeeper URL {url:?}: {why}"));
        let rest = url
            .strip_prefix("zk://")
            .ok_or_else(|| bad("must start with zk://"))?;
        let (hosts, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        if hosts.contains('@') {
            return Err(bad("credentials (user:pass@) are not supported"));
        }
        let mut list = Vec::new();
        for h in hosts.split(',') {
            let h = h.trim();
            if h.is_empty() {
                return Err(bad("empty host in the host list"));
            }
            let (host, port) = match h.rsplit_once(':') {
                // An IPv6 literal without a port ends with ']'.
                Some((host, port)) if !port.contains(']') => (host, port),
                _ => (h, "2181"),
            };
            if host.is_empty() {
                return Err(bad(&format!("no host name in {h:?}")));
            }
            let port: u16 = port.parse().ok().filter(|p| *p != 0).ok_or_else(|| {
                bad(&format!(
                    "port {port:?} of {h:?} is not a number in 1-65535"
                ))
            })?;
            list.push(format!("{host}:{port}"));
        }
        let path = normalize_path(path).map_err(|e| bad(&e))?;
        Ok(Self { hosts: list, path })
    }
}

impl std::fmt::Display for ZkUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "zk://{}{}",
            self.hosts.join(","),
            if self.path == "/" { "" } else { &self.path }
        )
    }
}

/// Checks a znode path: absolute, no empty, `.` or `..` segments; drops a trailing `/`.
pub(crate) fn normalize_path(path: &str) -> Result<String, String> {
    if !path.starts_with('/') {
        return Err(format!("path {path:?} must start with /"));
    }
    let trimmed = if path.len() > 1 {
        path.trim_end_matches('/')
    } else {
        path
    };
    if trimmed.is_empty() {
        return Ok("/".into());
    }
    if trimmed != "/" {
        for seg in trimmed[1..].split('/') {
            if seg.is_empty() || seg == "." || seg == ".." {
                return Err(format!("path {path:?} has an empty, '.' or '..' segment"));
            }
            if seg.chars().any(|c| c.is_control()) {
                return Err(format!("path {path:?} has a control character"));
            }
        }
    }
    Ok(trimmed.to_owned())
}

/// `parent/child`, without doubling the `/` under the root.
pub(crate) fn join(parent: &str, child: &str) -> String {
    if parent == "/" {
        format!("/{child}")
    } else {
        format!("{parent}/{child}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let u = ZkUrl::parse("zk://a:1,b:2/mesos").unwrap();
        assert_eq!(u.hosts, vec!["a:1", "b:2"]);
        assert_eq!(u.path, "/mesos");
        let u = ZkUrl::parse("zk://localhost").unwrap();
        assert_eq!(u.hosts, vec!["localhost:2181"]);
        assert_eq!(u.path, "/");
        assert_eq!(ZkUrl::parse("zk://h:5/a/b/").unwrap().path, "/a/b");
        assert_eq!(u.to_string(), "zk://localhost:2181");
        for bad in [
            "http://a/b",
            "zk://",
            "zk://a:x/p",
            "zk://a:0",
            "zk://a,,b/p",
            "zk://u:p@a/p",
            "zk://a//b",
            "zk://a/b/../c",
        ] {
            let e = ZkUrl::parse(bad).unwrap_err();
            assert!(e.to_string().contains(bad), "{e}");
        }
    }

    #[test]
    fn error_codes_round_trip_by_name() {
        assert_eq!(ErrorCode::from_i32(-101), ErrorCode::NoNode);
        assert_eq!(ErrorCode::NodeExists.as_i32(), -110);
        assert_eq!(ErrorCode::from_i32(-999), ErrorCode::Unknown(-999));
        let e = ZkError::server(-101, "/a");
        assert_eq!(e.to_string(), "ZooKeeper NoNode on /a");
        assert_eq!(ZkError::server(-112, "/a"), ZkError::SessionExpired);
    }
}
