//! Framework-side health checks, for what Mesos health checks cannot express: poll each
//! task's HTTP endpoint from the scheduler, judge the answer (status codes, a body check), and
//! report changes. A named property (e.g. `leader`) marks the tasks whose check passes, so a
//! service can find which of its instances leads.
//!
//! The decision is a small state machine ([`Tracker`]: consecutive failures against a grace
//! count); [`HealthHelper::run`] does the polling.

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use crate::core::Phase;
use crate::driver::Handle;

/// What to check.
#[derive(Debug, Clone, PartialEq)]
pub struct HealthHelperConfig {
    /// Task group to watch.
    pub group: String,
    /// Which of the task's ports to call.
    pub port_index: usize,
    /// Request path.
    pub path: String,
    /// Between two rounds.
    pub interval: Duration,
    /// Per request.
    pub timeout: Duration,
    /// Failures in a row before a task is unhealthy (a healthy answer resets the count).
    pub grace_failures: u32,
    /// Status codes that pass (default 200-299).
    pub statuses: Vec<u16>,
    /// When set, the body must contain this text.
    pub body_contains: Option<String>,
    /// When set, events carry this property name (e.g. `leader`): true while the check passes.
    pub property: Option<String>,
}

impl HealthHelperConfig {
    /// Checks `GET path` on port `port_index` of the group's tasks every 10 s, 2 s timeout,
    /// unhealthy after 3 failures, 2xx passes.
    pub fn new(group: &str, port_index: usize, path: &str) -> Self {
        HealthHelperConfig {
            group: group.into(),
            port_index,
            path: path.into(),
            interval: Duration::from_secs(10),
            timeout: Duration::from_secs(2),
            grace_failures: 3,
            statuses: (200..300).collect(),
            body_contains: None,
            property: None,
        }
    }
}

/// A task's health changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthEvent {
    /// Task id.
    pub task_id: String,
    /// Healthy now.
    pub healthy: bool,
    /// The configured property name, when one is set.
    pub property: Option<String>,
    /// Why it failed (status, body, connection error), when unhealthy.
    pub reason: Option<String>,
}

/// One endpoint to check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Task id.
    pub task_id: String,
    /// Host to call.
    pub host: String,
    /// Port to call.
    pub port: u16,
}

/// Health per task: failures in a row against the grace count. No IO.
#[derive(Debug, Default)]
pub struct Tracker {
    state: HashMap<String, (u32, Option<bool>)>,
}

impl Tracker {
    /// Records one result; returns the new health when it changed.
    pub fn record(&mut self, task_id: &str, passed: bool, grace: u32) -> Option<bool> {
        let (fails, healthy) = self.state.entry(task_id.to_string()).or_insert((0, None));
        let now = if passed {
            *fails = 0;
            true
        } else {
            *fails += 1;
            if *fails < grace.max(1) {
                return None;
            }
            false
        };
        if *healthy == Some(now) {
            return None;
        }
        *healthy = Some(now);
        Some(now)
    }

    /// Forgets tasks that are no longer targets.
    pub fn retain(&mut self, live: &[Target]) {
        self.state
            .retain(|id, _| live.iter().any(|t| &t.task_id == id));
    }
}

/// Polls a group's tasks.
#[derive(Debug)]
pub struct HealthHelper {
    config: HealthHelperConfig,
    tracker: Tracker,
}

impl HealthHelper {
    /// A helper for `config`.
    pub fn new(config: HealthHelperConfig) -> Self {
        HealthHelper {
            config,
            tracker: Tracker::default(),
        }
    }

    /// The running tasks of the configured group, from a scheduler handle.
    pub fn targets(&self, handle: &Handle) -> Vec<Target> {
        handle.read(|s| {
            s.records()
                .filter(|(r, _)| *r.group == *self.config.group && r.phase == Phase::Launched)
                .filter(|(r, _)| r.state == mesokit_proto::v1::TaskState::TaskRunning)
                .filter_map(|(r, _)| {
                    let port = *r.ports.get(self.config.port_index)?;
                    Some(Target {
                        task_id: r.task_id.to_string(),
                        host: r.hostname.to_string(),
                        port: u16::try_from(port).ok()?,
                    })
                })
                .collect()
        })
    }

    /// One round over `targets` (probed concurrently): the changes it found.
    pub async fn round(&mut self, targets: &[Target]) -> Vec<HealthEvent> {
        self.tracker.retain(targets);
        let config = std::sync::Arc::new(self.config.clone());
        let mut probes = tokio::task::JoinSet::new();
        for t in targets {
            let (config, t) = (config.clone(), t.clone());
            probes.spawn(async move {
                let verdict = tokio::time::timeout(config.timeout, probe(&config, &t))
                    .await
                    .unwrap_or_else(|_| Err(format!("no answer within {:?}", config.timeout)));
                (t.task_id, verdict)
            });
        }
        let mut results = Vec::with_capacity(targets.len());
        while let Some(r) = probes.join_next().await {
            if let Ok(r) = r {
                results.push(r);
            }
        }
        let mut events = Vec::new();
        for (task_id, verdict) in results {
            let passed = verdict.is_ok();
            if let Some(healthy) = self
                .tracker
                .record(&task_id, passed, self.config.grace_failures)
            {
                events.push(HealthEvent {
                    task_id,
                    healthy,
                    property: self.config.property.clone(),
                    reason: verdict.err(),
                });
            }
        }
        events
    }

    /// Polls every `interval` until `events` is closed.
    pub async fn run(mut self, handle: Handle, events: mpsc::UnboundedSender<HealthEvent>) {
        let mut tick = tokio::time::interval(self.config.interval);
        loop {
            tick.tick().await;
            let targets = self.targets(&handle);
            for e in self.round(&targets).await {
                if events.send(e).is_err() {
                    return;
                }
            }
        }
    }
}

/// One HTTP GET and its verdict.
async fn probe(config: &HealthHelperConfig, t: &Target) -> Result<(), String> {
    let stream = TcpStream::connect((t.host.as_str(), t.port))
        .await
        .map_err(|e| format!("cannot connect to {}:{}: {e}", t.host, t.port))?;
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("HTTP handshake with {}:{}: {e}", t.host, t.port))?;
    tokio::spawn(conn);
    let req = http::Request::get(&config.path)
        .header(http::header::HOST, format!("{}:{}", t.host, t.port))
        .body(Empty::<Bytes>::new())
        .map_err(|e| format!("bad path {:?}: {e}", config.path))?;
    let resp = send
        .send_request(req)
        .await
        .map_err(|e| format!("GET {}: {e}", config.path))?;
    let status = resp.status().as_u16();
    if !config.statuses.contains(&status) {
        return Err(format!("GET {} answered {status}", config.path));
    }
    if let Some(want) = &config.body_contains {
        let body = Limited::new(resp.into_body(), 1 << 20)
            .collect()
            .await
            .map_err(|e| format!("reading the body: {e}"))?
            .to_bytes();
        if !String::from_utf8_lossy(&body).contains(want.as_str()) {
            return Err(format!("the body does not contain {want:?}"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn grace_count_and_changes_only() {
        let mut t = Tracker::default();
        assert_eq!(t.record("a", true, 3), Some(true));
        assert_eq!(t.record("a", true, 3), None);
        assert_eq!(t.record("a", false, 3), None);
        assert_eq!(t.record("a", false, 3), None);
        assert_eq!(
            t.record("a", false, 3),
            Some(false),
            "third failure in a row"
        );
        assert_eq!(t.record("a", false, 3), None);
        assert_eq!(t.record("a", true, 3), Some(true));
        t.retain(&[]);
        assert_eq!(t.record("a", false, 1), Some(false), "forgotten, then new");
    }

    /// A server answering every request with `status` and `body`.
    async fn server(status: u16, body: &'static str) -> u16 {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 1024];
                    let _ = s.read(&mut buf).await;
                    let resp = format!(
                        "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = s.write_all(resp.as_bytes()).await;
                });
            }
        });
        port
    }

    #[tokio::test]
    async fn statuses_bodies_and_dead_endpoints() {
        let leader = server(200, "{\"leader\": true}").await;
        let follower = server(200, "{\"leader\": false}").await;
        let broken = server(503, "").await;
        let dead = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let target = |id: &str, port| Target {
            task_id: id.into(),
            host: "127.0.0.1".into(),
            port,
        };
        let targets = vec![
            target("leader", leader),
            target("follower", follower),
            target("broken", broken),
            target("dead", dead),
        ];
        let mut cfg = HealthHelperConfig::new("g", 0, "/status");
        cfg.grace_failures = 1;
        cfg.body_contains = Some("\"leader\": true".into());
        cfg.property = Some("leader".into());
        let mut h = HealthHelper::new(cfg);
        let mut events = h.round(&targets).await;
        events.sort_by(|a, b| a.task_id.cmp(&b.task_id));
        let summary: Vec<(&str, bool)> = events
            .iter()
            .map(|e| (e.task_id.as_str(), e.healthy))
            .collect();
        assert_eq!(
            summary,
            vec![
                ("broken", false),
                ("dead", false),
                ("follower", false),
                ("leader", true)
            ]
        );
        assert!(
            events[0]
                .reason
                .as_deref()
                .unwrap()
                .contains("answered 503")
        );
        assert!(
            events[1]
                .reason
                .as_deref()
                .unwrap()
                .contains("cannot connect")
        );
        assert!(
            events[2]
                .reason
                .as_deref()
                .unwrap()
                .contains("does not contain")
        );
        assert_eq!(events[3].property.as_deref(), Some("leader"));
        assert!(h.round(&targets).await.is_empty(), "no change, no event");
    }
}
