//! Leader election over ZooKeeper: each candidate holds an ephemeral sequential node under
//! one directory, the lowest sequence leads, the others each watch their predecessor (no
//! herd on a change). Leadership ends with the session; a [`Fence`] lets a store refuse writes.

use super::{CreateMode, ErrorCode, SessionState, ZkClient, ZkError, join, normalize_path};

const PREFIX: &str = "candidate-";

/// One candidate for leadership.
#[derive(Debug)]
pub struct LeaderElection {
    zk: ZkClient,
    dir: String,
    id: String,
    node: Option<String>,
    /// A create was sent but its answer lost: the node may exist.
    create_unsure: bool,
}

/// Proof of leadership: the candidate node, alive while the session is.
#[derive(Debug, Clone)]
pub struct Leadership {
    zk: ZkClient,
    node: String,
    full: String,
}

/// What a store checks before each write: the absolute path of the leader's candidate node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    path: String,
}

impl Fence {
    /// The absolute znode path (including any chroot of the client that created it).
    pub fn path(&self) -> &str {
        &self.path
    }
}

/// Why leadership ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeadershipLost {
    /// The session expired (or was cut off longer than its timeout).
    SessionExpired,
    /// The session was closed by this process.
    Closed,
    /// The candidate node was deleted by someone else.
    NodeDeleted,
}

impl LeaderElection {
    /// A candidate `id` (stored as the node's data, e.g. `host:pid`) in directory `path`.
    pub fn new(zk: ZkClient, path: &str, id: &str) -> Result<Self, ZkError> {
        let dir = normalize_path(path).map_err(ZkError::Invalid)?;
        Ok(Self {
            zk,
            dir,
            id: id.to_owned(),
            node: None,
            create_unsure: false,
        })
    }

    /// Our candidate node, once created.
    pub fn node(&self) -> Option<&str> {
        self.node.as_deref()
    }

    /// Joins the election (once) and waits until this candidate leads. Rides out lost
    /// connections (the session keeps the candidacy); fails with `SessionExpired` or `Closed`
    /// when the session ends first.
    pub async fn wait_for_leadership(&mut self) -> Result<Leadership, ZkError> {
        loop {
            match self.try_lead().await {
                Err(ZkError::ConnectionLoss(why)) => {
                    tracing::debug!(reason = %why, "leader election waits for ZooKeeper");
                    self.await_reconnect().await?;
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
                r => return r,
            }
        }
    }

    async fn await_reconnect(&self) -> Result<(), ZkError> {
        let mut states = self.zk.state_changes();
        let s = *states
            .wait_for(|s| *s != SessionState::Disconnected)
            .await
            .map_err(|_| ZkError::Closed)?;
        match s {
            SessionState::Expired => Err(ZkError::SessionExpired),
            SessionState::Closed => Err(ZkError::Closed),
            _ => Ok(()),
        }
    }

    /// A candidate node of this session, left by a create whose answer was lost.
    async fn find_own(&self) -> Result<Option<String>, ZkError> {
        let sid = self.zk.session_id();
        for c in self.candidates().await? {
            let path = join(&self.dir, &c);
            if let Some(stat) = self.zk.exists(&path).await? {
                if stat.ephemeral_owner == sid {
                    return Ok(Some(path));
                }
            }
        }
        Ok(None)
    }

    async fn try_lead(&mut self) -> Result<Leadership, ZkError> {
        if self.node.is_none() {
            self.zk.create_all(&self.dir).await?;
            let own = if self.create_unsure {
                self.find_own().await?
            } else {
                None
            };
            let n = match own {
                Some(n) => n,
                None => {
                    let prefix = join(&self.dir, PREFIX);
                    match self
                        .zk
                        .create(&prefix, self.id.as_bytes(), CreateMode::EphemeralSequential)
                        .await
                    {
                        Ok(n) => n,
                        Err(e) => {
                            self.create_unsure = matches!(e, ZkError::ConnectionLoss(_));
                            return Err(e);
                        }
                    }
                }
            };
            self.create_unsure = false;
            tracing::info!(node = %n, id = %self.id, "joined leader election");
            self.node = Some(n);
        }
        let node = self.node.clone().unwrap_or_default();
        let name = node.rsplit('/').next().unwrap_or_default().to_owned();
        loop {
            let candidates = self.candidates().await?;
            let Some(pos) = candidates.iter().position(|c| *c == name) else {
                self.node = None;
                return Err(ZkError::Server {
                    code: ErrorCode::NoNode,
                    path: node,
                });
            };
            if pos == 0 {
                let full = if self.zk.chroot() == "/" {
                    node.clone()
                } else {
                    format!("{}{}", self.zk.chroot(), node)
                };
                tracing::info!(node = %node, id = %self.id, "elected leader");
                return Ok(Leadership {
                    zk: self.zk.clone(),
                    node,
                    full,
                });
            }
            let pred = join(&self.dir, &candidates[pos - 1]);
            let (stat, watch) = self.zk.exists_w(&pred).await?;
            if stat.is_none() {
                continue;
            }
            tokio::select! {
                r = watch => { r?; }
                s = self.zk.ended() => {
                    return Err(if s == SessionState::Closed { ZkError::Closed } else { ZkError::SessionExpired });
                }
            }
        }
    }

    /// The id of the current leader, if any candidate is there.
    pub async fn leader_id(&self) -> Result<Option<String>, ZkError> {
        for c in self.candidates().await? {
            match self.zk.get_data(&join(&self.dir, &c)).await {
                Ok((data, _)) => return Ok(Some(String::from_utf8_lossy(&data).into_owned())),
                Err(ZkError::Server {
                    code: ErrorCode::NoNode,
                    ..
                }) => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(None)
    }

    /// Leaves the election (deletes the candidate node) without ending the session.
    pub async fn resign(&mut self) -> Result<(), ZkError> {
        if let Some(n) = self.node.take() {
            match self.zk.delete(&n, -1).await {
                Ok(())
                | Err(ZkError::Server {
                    code: ErrorCode::NoNode,
                    ..
                }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Candidate names in the directory, lowest sequence first.
    async fn candidates(&self) -> Result<Vec<String>, ZkError> {
        let mut c: Vec<String> = self
            .zk
            .get_children(&self.dir)
            .await?
            .into_iter()
            .filter(|c| c.starts_with(PREFIX))
            .collect();
        c.sort_by_key(|n| seq(n));
        Ok(c)
    }
}

/// The sequence number ZooKeeper appended (its last 10 digits).
fn seq(name: &str) -> i64 {
    // `get`: a node someone else put in the directory may end in a multi-byte character.
    name.get(name.len().saturating_sub(10)..)
        .and_then(|d| d.parse().ok())
        .unwrap_or(i64::MAX)
}

impl Leadership {
    /// The candidate node (relative to the client's chroot).
    pub fn node(&self) -> &str {
        &self.node
    }

    /// The fence a [`crate::store::ZkStore`] checks before each write.
    pub fn fence(&self) -> Fence {
        Fence {
            path: self.full.clone(),
        }
    }

    /// Resolves when leadership ends: the session expired or was closed, or the candidate
    /// node was deleted. While ZooKeeper is unreachable it keeps waiting: the session (and
    /// so leadership) lives until the client sees it expire, at most the session timeout
    /// after the last answer from a server.
    pub async fn lost(&self) -> LeadershipLost {
        let mut states = self.zk.state_changes();
        loop {
            match self.zk.exists_w(&self.node).await {
                Ok((None, _)) => return LeadershipLost::NodeDeleted,
                Ok((Some(_), watch)) => {
                    tokio::select! {
                        r = watch => match r {
                            Ok(_) => continue,
                            Err(ZkError::Closed) => return LeadershipLost::Closed,
                            Err(_) => return LeadershipLost::SessionExpired,
                        },
                        s = self.zk.ended() => return lost_reason(s),
                    }
                }
                Err(ZkError::SessionExpired) => return LeadershipLost::SessionExpired,
                Err(ZkError::Closed) => return LeadershipLost::Closed,
                Err(_) => {
                    // Disconnected: wait for the session to come back or end.
                    if states.changed().await.is_err() {
                        return LeadershipLost::Closed;
                    }
                    match *states.borrow() {
                        SessionState::Expired => return LeadershipLost::SessionExpired,
                        SessionState::Closed => return LeadershipLost::Closed,
                        _ => {}
                    }
                }
            }
        }
    }
}

fn lost_reason(s: SessionState) -> LeadershipLost {
    if s == SessionState::Closed {
        LeadershipLost::Closed
    } else {
        LeadershipLost::SessionExpired
    }
}

#[cfg(test)]
mod tests {
    use super::seq;

    #[test]
    fn sequence_suffix() {
        assert_eq!(seq("candidate-0000000012"), 12);
        assert!(seq("candidate-0000000009") < seq("candidate-0000000010"));
        assert_eq!(seq("x"), i64::MAX);
        assert_eq!(seq("candidate-ééééé"), i64::MAX);
    }
}
