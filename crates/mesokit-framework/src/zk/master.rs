//! Mesos master detection from ZooKeeper: masters register ephemeral sequential nodes
//! `json.info_<seq>` holding their `MasterInfo` as JSON under one path (e.g. `/mesos`); the
//! lowest sequence is the leading master. A detector follows changes with a child watch.

use mesokit_proto::json;
use mesokit_proto::v1::MasterInfo;
use tokio::sync::watch;

use super::{ErrorCode, ZkClient, ZkError, ZkOptions, ZkUrl, join, normalize_path};

const PREFIX: &str = "json.info_";

/// The leading master.
#[derive(Debug, Clone, PartialEq)]
pub struct Master {
    /// `http://host:port`, the base of `/api/v1/scheduler`.
    pub base_url: String,
    /// The node it registered (relative to the client's chroot).
    pub node: String,
    /// What it registered.
    pub info: MasterInfo,
}

/// The leading master under `path` now, or `None` when no master is registered.
pub async fn leading_master(zk: &ZkClient, path: &str) -> Result<Option<Master>, ZkError> {
    leader(zk, path, false).await.map(|(m, _)| m)
}

async fn leader(
    zk: &ZkClient,
    path: &str,
    with_watch: bool,
) -> Result<(Option<Master>, Option<super::Watch>), ZkError> {
    let dir = normalize_path(path).map_err(ZkError::Invalid)?;
    loop {
        let (children, watch) = if with_watch {
            match zk.get_children_w(&dir).await {
                Ok((c, w)) => (c, Some(w)),
                Err(ZkError::Server {
                    code: ErrorCode::NoNode,
                    ..
                }) => {
                    // No master ever registered here: watch for the directory to appear.
                    let (stat, w) = zk.exists_w(&dir).await?;
                    if stat.is_some() {
                        continue;
                    }
                    return Ok((None, Some(w)));
                }
                Err(e) => return Err(e),
            }
        } else {
            match zk.get_children(&dir).await {
                Ok(c) => (c, None),
                Err(ZkError::Server {
                    code: ErrorCode::NoNode,
                    ..
                }) => return Ok((None, None)),
                Err(e) => return Err(e),
            }
        };
        let Some(lowest) = children
            .iter()
            .filter(|c| c.starts_with(PREFIX))
            .filter_map(|c| c[PREFIX.len()..].parse::<i64>().ok().map(|s| (s, c)))
            .min()
            .map(|(_, c)| c.clone())
        else {
            return Ok((None, watch));
        };
        let node = join(&dir, &lowest);
        let data = match zk.get_data(&node).await {
            Ok((d, _)) => d,
            // The leader went away between the listing and the read: look again.
            Err(ZkError::Server {
                code: ErrorCode::NoNode,
                ..
            }) => continue,
            Err(e) => return Err(e),
        };
        let info: MasterInfo = json::decode(&data).map_err(|e| {
            ZkError::Invalid(format!("master info in {node} is not MasterInfo JSON: {e}"))
        })?;
        let base_url = base_url(&info).ok_or_else(|| {
            ZkError::Invalid(format!(
                "master info in {node} has no usable address or port"
            ))
        })?;
        return Ok((
            Some(Master {
                base_url,
                node,
                info,
            }),
            watch,
        ));
    }
}

/// `http://host:port` for a `MasterInfo`: the address's hostname, then its IP, then the
/// legacy `hostname` and `ip` fields (the IPv4 address as a number in network byte order).
pub fn base_url(info: &MasterInfo) -> Option<String> {
    let addr = info.address.as_ref();
    let host = addr
        .and_then(|a| a.hostname.clone().filter(|h| !h.is_empty()))
        .or_else(|| addr.and_then(|a| a.ip.clone().filter(|h| !h.is_empty())))
        .or_else(|| info.hostname.clone().filter(|h| !h.is_empty()))
        .or_else(|| {
            (info.ip != 0).then(|| std::net::Ipv4Addr::from(info.ip.to_le_bytes()).to_string())
        })?;
    let port = addr
        .map(|a| a.port)
        .filter(|p| (1..=65535).contains(p))
        .map(|p| p as u32)
        .unwrap_or(info.port);
    if port == 0 || port > 65535 {
        return None;
    }
    let host = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host
    };
    Some(format!("http://{host}:{port}"))
}

/// Follows the leading master under a ZooKeeper path.
#[derive(Debug)]
pub struct MasterDetector {
    rx: watch::Receiver<Option<Master>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for MasterDetector {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl MasterDetector {
    /// Connects to `zk://hosts/path` (e.g. `zk://zk1:2181,zk2:2181/mesos`) and starts
    /// following the leading master there. When the ZooKeeper session expires, the detector
    /// opens a new one and carries on.
    pub async fn start(url: &str) -> Result<Self, ZkError> {
        let parsed = ZkUrl::parse(url)?;
        let hosts = ZkUrl {
            hosts: parsed.hosts.clone(),
            path: "/".into(),
        };
        let zk = ZkClient::connect_with(&hosts, ZkOptions::default()).await?;
        Self::spawn(zk, &parsed.path, Some(hosts)).await
    }

    /// Follows the masters under `path` on an existing session, until that session ends.
    pub async fn with_client(zk: ZkClient, path: &str) -> Result<Self, ZkError> {
        Self::spawn(zk, path, None).await
    }

    async fn spawn(zk: ZkClient, path: &str, reconnect: Option<ZkUrl>) -> Result<Self, ZkError> {
        let (first, watch) = leader(&zk, path, true).await?;
        let (tx, rx) = watch::channel(first);
        let task = tokio::spawn(follow(zk, path.to_owned(), watch, tx, reconnect));
        Ok(Self { rx, task })
    }

    /// The leading master as last seen (`None`: no master registered).
    pub fn current(&self) -> Option<Master> {
        self.rx.borrow().clone()
    }

    /// A receiver that sees every change of leading master.
    pub fn subscribe(&self) -> watch::Receiver<Option<Master>> {
        self.rx.clone()
    }

    /// Waits for the leading master to change and returns the new one (`None`: none
    /// registered now). Returns `Err` once the detector has stopped (made with
    /// [`MasterDetector::with_client`] and its session ended).
    pub async fn changed(&mut self) -> Result<Option<Master>, ZkError> {
        self.rx
            .changed()
            .await
            .map_err(|_| ZkError::SessionExpired)?;
        Ok(self.rx.borrow_and_update().clone())
    }
}

async fn follow(
    mut zk: ZkClient,
    path: String,
    mut watch: Option<super::Watch>,
    tx: watch::Sender<Option<Master>>,
    reconnect: Option<ZkUrl>,
) {
    loop {
        let mut expired = false;
        if let Some(w) = watch.take() {
            match w.await {
                Ok(_) => {}
                Err(ZkError::Closed) => return,
                Err(ZkError::SessionExpired) => expired = true,
                Err(e) => tracing::warn!(error = %e, "master detector watch failed; re-reading"),
            }
        }
        if !expired {
            match leader(&zk, &path, true).await {
                Ok((m, w)) => {
                    watch = w;
                    tx.send_if_modified(|cur| {
                        if *cur != m {
                            tracing::info!(master = ?m.as_ref().map(|m| &m.base_url), "leading Mesos master changed");
                            *cur = m;
                            true
                        } else {
                            false
                        }
                    });
                    continue;
                }
                Err(ZkError::Closed) => return,
                Err(ZkError::SessionExpired) => expired = true,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read Mesos masters from ZooKeeper; retrying");
                    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                    continue;
                }
            }
        }
        if expired {
            let Some(url) = &reconnect else { return };
            zk = new_session(url).await;
        }
    }
}

/// A new session after the old one expired; keeps trying until one is had.
async fn new_session(url: &ZkUrl) -> ZkClient {
    loop {
        match ZkClient::connect_with(url, ZkOptions::default()).await {
            Ok(zk) => {
                tracing::info!("master detector: new ZooKeeper session");
                return zk;
            }
            Err(e) => {
                tracing::warn!(error = %e, "master detector: cannot reach ZooKeeper; retrying");
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mesokit_proto::v1::Address;

    #[test]
    fn urls_from_master_info() {
        let mut info = MasterInfo {
            id: "m1".into(),
            ip: u32::from_le_bytes([10, 0, 0, 7]),
            port: 5050,
            ..Default::default()
        };
        assert_eq!(base_url(&info).unwrap(), "http://10.0.0.7:5050");
        info.hostname = Some("m1.example".into());
        assert_eq!(base_url(&info).unwrap(), "http://m1.example:5050");
        info.address = Some(Address {
            hostname: None,
            ip: Some("::1".into()),
            port: 5051,
        });
        assert_eq!(base_url(&info).unwrap(), "http://[::1]:5051");
        let none = MasterInfo::default();
        assert_eq!(base_url(&none), None);
    }
}
