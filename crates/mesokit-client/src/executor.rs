//! The executor side of the Mesos v1 API: the connection of an executor to the agent that
//! launched it, configured from the `MESOS_*` environment.
//!
//! The client keeps what Mesos requires an executor to keep: status updates not yet
//! ACKNOWLEDGED and tasks received but with no acknowledged update. Both go into every
//! SUBSCRIBE, so that after an agent restart nothing is lost. With checkpointing the client
//! re-subscribes until `MESOS_RECOVERY_TIMEOUT`; without, losing the agent is final.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use mesokit_client::executor::{ExecutorClient, ExecutorConfig, ExecutorEvent};
//!
//! let config = ExecutorConfig::from_env()?;
//! let (client, mut events) = ExecutorClient::start(config)?;
//! loop {
//!     match events.next_event().await? {
//!         ExecutorEvent::Event(event) => { /* LAUNCH, KILL, SHUTDOWN, … */ }
//!         other => eprintln!("{other:?}"),
//!     }
//! }
//! # }
//! ```

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{Method, StatusCode};
use mesokit_proto::helpers::{is_valid_uuid, new_uuid, parse_duration};
use mesokit_proto::v1::executor::{Call, Event, call, event};
use mesokit_proto::v1::{
    AgentId, ExecutorId, FrameworkId, TaskInfo, TaskState, TaskStatus, task_status,
};
use tokio::sync::mpsc;
use tracing::Instrument;

use crate::codec::ContentType;
use crate::error::{ApiError, Error};
use crate::transport::{
    Endpoint, RecordStream, TlsConfig, Transport, bearer, error_response, uniform_delay,
};

/// The executor API path on an agent.
pub const EXECUTOR_PATH: &str = "/api/v1/executor";

/// A missing or malformed `MESOS_*` variable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EnvError {
    /// A required variable is not set (or empty).
    #[error(
        "environment variable {var} is not set{hint}; is this process running as a Mesos executor?"
    )]
    Missing {
        /// The variable.
        var: &'static str,
        /// Alternatives, e.g. " (nor MESOS_SLAVE_PID)".
        hint: &'static str,
    },
    /// A variable has a value that cannot be used.
    #[error("environment variable {var}='{value}' is invalid: {reason}")]
    Malformed {
        /// The variable.
        var: &'static str,
        /// Its value.
        value: String,
        /// What is wrong, and what was expected.
        reason: String,
    },
}

/// How the executor reaches its agent, and the settings the agent gave it.
#[derive(Clone)]
#[non_exhaustive]
pub struct ExecutorConfig {
    /// `MESOS_FRAMEWORK_ID`.
    pub framework_id: FrameworkId,
    /// `MESOS_EXECUTOR_ID`.
    pub executor_id: ExecutorId,
    /// Full URL of the agent's executor API, e.g. `http://127.0.0.1:5051/api/v1/executor`.
    pub agent_url: String,
    /// `MESOS_SLAVE_ID`, if given.
    pub agent_id: Option<AgentId>,
    /// `MESOS_DIRECTORY`: the sandbox path on the host.
    pub directory: Option<PathBuf>,
    /// `MESOS_SANDBOX`: the sandbox path as the executor sees it.
    pub sandbox: Option<PathBuf>,
    /// `MESOS_CHECKPOINT`: whether the agent checkpoints, so that re-subscribing makes sense.
    pub checkpoint: bool,
    /// `MESOS_RECOVERY_TIMEOUT` (15 min): how long to keep re-subscribing after a disconnection.
    pub recovery_timeout: Duration,
    /// `MESOS_SUBSCRIPTION_BACKOFF_MAX` (2 s): each retry waits a random time up to this.
    pub subscription_backoff_max: Duration,
    /// `MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD` (5 s): time the executor has to shut down.
    pub shutdown_grace_period: Duration,
    /// `MESOS_EXECUTOR_AUTHENTICATION_TOKEN`, sent as `Authorization: Bearer`.
    pub auth_token: Option<String>,
    /// Encoding of calls and events (JSON).
    pub content_type: ContentType,
    /// Timeout of each call and of connecting a SUBSCRIBE (60 s).
    pub request_timeout: Duration,
    /// Interval of the HEARTBEAT calls that keep intermediaries from closing the idle
    /// connection (30 min, as the Mesos library does).
    pub heartbeat_interval: Duration,
    /// Drop the stream when nothing arrives for this long (`None`: rely on the connection
    /// closing, as Mesos executors do).
    pub idle_timeout: Option<Duration>,
    /// TLS settings for an `https://` agent.
    pub tls: TlsConfig,
    /// Events buffered for a slow consumer (64).
    pub event_buffer: usize,
}

impl fmt::Debug for ExecutorConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExecutorConfig")
            .field("framework_id", &self.framework_id.value)
            .field("executor_id", &self.executor_id.value)
            .field("agent_url", &self.agent_url)
            .field("agent_id", &self.agent_id.as_ref().map(|a| &a.value))
            .field("directory", &self.directory)
            .field("sandbox", &self.sandbox)
            .field("checkpoint", &self.checkpoint)
            .field("recovery_timeout", &self.recovery_timeout)
            .field("subscription_backoff_max", &self.subscription_backoff_max)
            .field("shutdown_grace_period", &self.shutdown_grace_period)
            .field(
                "auth_token",
                &self.auth_token.as_ref().map(|_| "<redacted>"),
            )
            .field("content_type", &self.content_type)
            .field("request_timeout", &self.request_timeout)
            .field("heartbeat_interval", &self.heartbeat_interval)
            .field("idle_timeout", &self.idle_timeout)
            .field("tls", &self.tls)
            .field("event_buffer", &self.event_buffer)
            .finish()
    }
}

impl ExecutorConfig {
    /// A configuration for the given ids and agent executor API URL (for tests and custom
    /// launchers), with Mesos's defaults and checkpointing off.
    pub fn new(
        framework_id: impl Into<String>,
        executor_id: impl Into<String>,
        agent_url: impl Into<String>,
    ) -> Self {
        ExecutorConfig {
            framework_id: FrameworkId {
                value: framework_id.into(),
            },
            executor_id: ExecutorId {
                value: executor_id.into(),
            },
            agent_url: agent_url.into(),
            agent_id: None,
            directory: None,
            sandbox: None,
            checkpoint: false,
            recovery_timeout: Duration::from_secs(15 * 60),
            subscription_backoff_max: Duration::from_secs(2),
            shutdown_grace_period: Duration::from_secs(5),
            auth_token: None,
            content_type: ContentType::Json,
            request_timeout: Duration::from_secs(60),
            heartbeat_interval: Duration::from_secs(30 * 60),
            idle_timeout: None,
            tls: TlsConfig::default(),
            event_buffer: 64,
        }
    }

    /// Reads the environment the agent gives an executor (see [`ExecutorConfig::from_vars`]).
    pub fn from_env() -> Result<Self, EnvError> {
        Self::from_vars(std::env::vars())
    }

    /// Reads the `MESOS_*` variables from `vars`.
    ///
    /// Required: `MESOS_FRAMEWORK_ID`, `MESOS_EXECUTOR_ID`, and `MESOS_AGENT_ENDPOINT`
    /// (`ip:port`, giving `http://ip:port/api/v1/executor`) or else `MESOS_SLAVE_PID`
    /// (`slave(1)@ip:port`, giving `http://ip:port/slave(1)/api/v1/executor`). Optional:
    /// `MESOS_CHECKPOINT` (`1`/`0`), `MESOS_RECOVERY_TIMEOUT`, `MESOS_SUBSCRIPTION_BACKOFF_MAX`,
    /// `MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD` (durations like `15mins`),
    /// `MESOS_EXECUTOR_AUTHENTICATION_TOKEN`, `MESOS_DIRECTORY`, `MESOS_SANDBOX`,
    /// `MESOS_SLAVE_ID`, and `LIBPROCESS_SSL_ENABLED` (`1`: use https).
    pub fn from_vars<I, K, V>(vars: I) -> Result<Self, EnvError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        let vars: HashMap<String, String> = vars
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        let get = |k: &str| vars.get(k).map(|v| v.trim()).filter(|v| !v.is_empty());
        let required = |var: &'static str| get(var).ok_or(EnvError::Missing { var, hint: "" });

        let framework_id = required("MESOS_FRAMEWORK_ID")?;
        let executor_id = required("MESOS_EXECUTOR_ID")?;
        let ssl = match get("LIBPROCESS_SSL_ENABLED") {
            None => false,
            Some(v) => parse_bool("LIBPROCESS_SSL_ENABLED", v)?,
        };
        let scheme = if ssl { "https" } else { "http" };
        let agent_url = if let Some(ep) = get("MESOS_AGENT_ENDPOINT") {
            check_host_port("MESOS_AGENT_ENDPOINT", ep, ep)?;
            format!("{scheme}://{ep}{EXECUTOR_PATH}")
        } else if let Some(pid) = get("MESOS_SLAVE_PID") {
            let malformed = |reason: &str| EnvError::Malformed {
                var: "MESOS_SLAVE_PID",
                value: pid.to_owned(),
                reason: reason.to_owned(),
            };
            let (id, addr) = pid.split_once('@').ok_or_else(|| {
                malformed("expected <id>@<ip>:<port>, e.g. slave(1)@10.0.0.1:5051")
            })?;
            if id.is_empty() || id.contains('/') {
                return Err(malformed("the process id before '@' is empty or has a '/'"));
            }
            check_host_port("MESOS_SLAVE_PID", addr, pid)?;
            format!("{scheme}://{addr}/{id}{EXECUTOR_PATH}")
        } else {
            return Err(EnvError::Missing {
                var: "MESOS_AGENT_ENDPOINT",
                hint: " (nor MESOS_SLAVE_PID)",
            });
        };

        let mut config = ExecutorConfig::new(framework_id, executor_id, agent_url);
        config.agent_id = get("MESOS_SLAVE_ID").map(|v| AgentId {
            value: v.to_owned(),
        });
        config.directory = get("MESOS_DIRECTORY").map(PathBuf::from);
        config.sandbox = get("MESOS_SANDBOX").map(PathBuf::from);
        config.checkpoint = match get("MESOS_CHECKPOINT") {
            None => false,
            Some(v) => parse_bool("MESOS_CHECKPOINT", v)?,
        };
        let duration = |var: &'static str, default: Duration| match get(var) {
            None => Ok(default),
            Some(v) => parse_duration(v).map_err(|e| EnvError::Malformed {
                var,
                value: v.to_owned(),
                reason: e.to_string(),
            }),
        };
        config.recovery_timeout = duration("MESOS_RECOVERY_TIMEOUT", config.recovery_timeout)?;
        config.subscription_backoff_max = duration(
            "MESOS_SUBSCRIPTION_BACKOFF_MAX",
            config.subscription_backoff_max,
        )?;
        config.shutdown_grace_period = duration(
            "MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD",
            config.shutdown_grace_period,
        )?;
        config.auth_token = get("MESOS_EXECUTOR_AUTHENTICATION_TOKEN").map(str::to_owned);
        Ok(config)
    }
}

fn parse_bool(var: &'static str, v: &str) -> Result<bool, EnvError> {
    match v {
        "1" | "true" => Ok(true),
        "0" | "false" => Ok(false),
        _ => Err(EnvError::Malformed {
            var,
            value: v.to_owned(),
            reason: "expected 1 or 0".into(),
        }),
    }
}

fn check_host_port(var: &'static str, addr: &str, value: &str) -> Result<(), EnvError> {
    let malformed = |reason: &str| EnvError::Malformed {
        var,
        value: value.to_owned(),
        reason: reason.to_owned(),
    };
    let (host, port) = addr
        .rsplit_once(':')
        .ok_or_else(|| malformed("expected <ip>:<port>, e.g. 10.0.0.1:5051"))?;
    if host.is_empty() || host.contains('/') || host.contains('@') {
        return Err(malformed("expected <ip>:<port>, e.g. 10.0.0.1:5051"));
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(()),
        _ => Err(malformed(&format!("'{port}' is not a port number"))),
    }
}

/// What the event stream yields.
#[derive(Debug)]
#[non_exhaustive]
pub enum ExecutorEvent {
    /// SUBSCRIBED: the executor is registered with the agent.
    Connected {
        /// The SUBSCRIBED event (executor, framework and agent info, container id).
        subscribed: Box<event::Subscribed>,
    },
    /// Any other event: LAUNCH, LAUNCH_GROUP, KILL, ACKNOWLEDGED, MESSAGE, SHUTDOWN, ERROR,
    /// HEARTBEAT. LAUNCH/ACKNOWLEDGED have already been recorded by the client.
    Event(Box<Event>),
    /// The connection to the agent broke; with checkpointing the client is re-subscribing
    /// (updates sent meanwhile are queued). Emitted once per disconnection.
    Disconnected {
        /// Why.
        reason: Error,
    },
}

/// What happened to a status update.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Delivery {
    /// The agent accepted it (202); it stays unacknowledged until ACKNOWLEDGED.
    Sent {
        /// The update's uuid.
        uuid: Bytes,
    },
    /// Not connected: it goes out with the next SUBSCRIBE.
    Queued {
        /// The update's uuid.
        uuid: Bytes,
    },
}

impl Delivery {
    /// The uuid of the update.
    pub fn uuid(&self) -> &Bytes {
        match self {
            Delivery::Sent { uuid } | Delivery::Queued { uuid } => uuid,
        }
    }
}

/// Receives the events of the executor's subscription. Dropping it ends the session.
#[derive(Debug)]
pub struct ExecutorEvents {
    rx: mpsc::Receiver<Result<ExecutorEvent, Error>>,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl ExecutorEvents {
    /// The next event. An `Err` ends the session: [`Error::AgentLost`] (no checkpointing),
    /// [`Error::RecoveryTimeout`], [`Error::Rejected`] (ERROR as the first event), a refused
    /// SUBSCRIBE ([`Error::Api`]), or [`Error::Closed`] after SHUTDOWN (and from then on).
    pub async fn next_event(&mut self) -> Result<ExecutorEvent, Error> {
        match self.rx.recv().await {
            Some(item) => item,
            None => Err(Error::Closed),
        }
    }
}

impl Drop for ExecutorEvents {
    fn drop(&mut self) {
        self.task.abort();
        self.shared.lock().connected = false;
    }
}

/// Sends the executor's calls. Cheap to clone.
#[derive(Debug, Clone)]
pub struct ExecutorClient {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    config: ExecutorConfig,
    endpoint: Endpoint,
    transport: Transport,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// SUBSCRIBED received on the current stream.
    connected: bool,
    /// Updates not yet ACKNOWLEDGED, in the order they were made.
    updates: Vec<call::Update>,
    /// Uuids of updates that were made while not connected and are in no SUBSCRIBE yet.
    unsent: Vec<Bytes>,
    /// Tasks received with no acknowledged update yet, in arrival order.
    tasks: Vec<TaskInfo>,
    /// SHUTDOWN received: the end of the stream ends the session.
    shutting_down: bool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn call(&self, ty: call::Type) -> Call {
        Call {
            executor_id: self.config.executor_id.clone(),
            framework_id: self.config.framework_id.clone(),
            r#type: Some(ty as i32),
            ..Default::default()
        }
    }

    async fn send(&self, call: &Call) -> Result<(), Error> {
        let ct = self.config.content_type;
        let body = Bytes::from(ct.encode(call));
        let ep = &self.endpoint;
        let t = &self.transport;
        let resp = t
            .request(ep, &|| {
                t.build(
                    Method::POST,
                    ep,
                    Some(ct),
                    Some(ct.media_type()),
                    &[],
                    body.clone(),
                )
            })
            .await?;
        if resp.status == StatusCode::ACCEPTED || resp.status == StatusCode::OK {
            Ok(())
        } else {
            Err(Error::Api {
                url: ep.url(),
                error: resp.api_error(false),
            })
        }
    }
}

impl ExecutorClient {
    /// Validates the configuration and subscribes in the background (on the current Tokio
    /// runtime). Events, starting with [`ExecutorEvent::Connected`], arrive on the returned
    /// [`ExecutorEvents`].
    pub fn start(config: ExecutorConfig) -> Result<(ExecutorClient, ExecutorEvents), Error> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            Error::Config("ExecutorClient::start must be called within a Tokio runtime".into())
        })?;
        let endpoint = Endpoint::parse_base(&config.agent_url)?;
        let auth = config.auth_token.as_deref().map(bearer).transpose()?;
        let transport = Transport::new(
            std::slice::from_ref(&endpoint),
            &config.tls,
            auth,
            config.request_timeout,
        )?;
        let (tx, rx) = mpsc::channel(config.event_buffer.max(1));
        let shared = Arc::new(Shared {
            config,
            endpoint,
            transport,
            state: Mutex::new(State::default()),
        });
        let span = tracing::info_span!(
            "executor",
            framework_id = %shared.config.framework_id.value,
            executor_id = %shared.config.executor_id.value,
        );
        let task = runtime.spawn(run(shared.clone(), tx).instrument(span));
        Ok((
            ExecutorClient {
                shared: shared.clone(),
            },
            ExecutorEvents { rx, shared, task },
        ))
    }

    /// The configuration in use.
    pub fn config(&self) -> &ExecutorConfig {
        &self.shared.config
    }

    /// Whether the executor is subscribed right now.
    pub fn is_connected(&self) -> bool {
        self.shared.lock().connected
    }

    /// Updates sent (or queued) and not yet ACKNOWLEDGED by the agent.
    pub fn unacknowledged_updates(&self) -> Vec<call::Update> {
        self.shared.lock().updates.clone()
    }

    /// Tasks received for which no update has been acknowledged yet.
    pub fn unacknowledged_tasks(&self) -> Vec<TaskInfo> {
        self.shared.lock().tasks.clone()
    }

    /// Sends a task status update. The client fills in what Mesos requires: a fresh 16-byte
    /// v4 `uuid` (unless one is given), `source = SOURCE_EXECUTOR`, `executor_id` and
    /// `timestamp` (now, unless given).
    ///
    /// The update is kept until the agent ACKNOWLEDGES it and re-sent in every SUBSCRIBE until
    /// then. While disconnected it is only queued ([`Delivery::Queued`]). If sending fails it
    /// stays queued for the next SUBSCRIBE, except when the agent rejected it as invalid (400).
    pub async fn update(&self, mut status: TaskStatus) -> Result<Delivery, Error> {
        if status.state == TaskState::TaskStaging as i32 {
            return Err(Error::InvalidCall(
                "an executor cannot send TASK_STAGING".into(),
            ));
        }
        let uuid = match &status.uuid {
            Some(u) if is_valid_uuid(u) => u.clone(),
            Some(_) => {
                return Err(Error::InvalidCall(
                    "status.uuid must be a 16-byte RFC 4122 UUID; leave it unset to get one".into(),
                ));
            }
            None => new_uuid(),
        };
        let executor_id = &self.shared.config.executor_id;
        match &status.executor_id {
            Some(id) if id != executor_id => {
                return Err(Error::InvalidCall(format!(
                    "status.executor_id '{}' is not this executor ('{}')",
                    id.value, executor_id.value
                )));
            }
            _ => status.executor_id = Some(executor_id.clone()),
        }
        status.uuid = Some(uuid.clone());
        status.source = Some(task_status::Source::Executor as i32);
        if status.timestamp.is_none() {
            status.timestamp = Some(now_seconds());
        }
        let task_id = status.task_id.value.clone();
        let update = call::Update { status };
        let connected = {
            let mut state = self.shared.lock();
            state.updates.push(update.clone());
            if !state.connected {
                state.unsent.push(uuid.clone());
            }
            state.connected
        };
        if !connected {
            tracing::info!(task_id = %task_id, "not subscribed: update queued for the next SUBSCRIBE");
            return Ok(Delivery::Queued { uuid });
        }
        let mut call = self.shared.call(call::Type::Update);
        call.update = Some(update.into());
        match self.shared.send(&call).await {
            Ok(()) => {
                tracing::debug!(task_id = %task_id, "update sent");
                Ok(Delivery::Sent { uuid })
            }
            Err(e) => {
                if let Some(ApiError::BadRequest(_)) = e.api() {
                    // An invalid update would make every later SUBSCRIBE invalid too.
                    self.shared
                        .lock()
                        .updates
                        .retain(|u| u.status.uuid.as_ref() != Some(&uuid));
                }
                tracing::warn!(task_id = %task_id, error = %e, "update not delivered");
                Err(e)
            }
        }
    }

    /// Sends data to the scheduler (best effort, not retried).
    pub async fn message(&self, data: impl Into<Bytes>) -> Result<(), Error> {
        if !self.is_connected() {
            return Err(Error::NotSubscribed);
        }
        let mut call = self.shared.call(call::Type::Message);
        call.message = Some(call::Message { data: data.into() });
        self.shared.send(&call).await
    }
}

fn now_seconds() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

fn event_type(ev: &Event) -> Option<event::Type> {
    ev.r#type.and_then(|t| event::Type::try_from(t).ok())
}

type Tx = mpsc::Sender<Result<ExecutorEvent, Error>>;

enum Ended {
    Lost(Error),
    Fatal(Error),
    Gone,
}

/// The session: subscribe, read, re-subscribe while recovery allows.
async fn run(shared: Arc<Shared>, tx: Tx) {
    // When the current spell without a subscription started (now: the first SUBSCRIBE also
    // counts against the recovery timeout).
    let mut lost_since = Instant::now();
    let mut reported = false;
    loop {
        let reason = match subscribe(&shared).await {
            Ok(stream) => match read_stream(&shared, stream, &tx).await {
                Ended::Gone => return,
                Ended::Fatal(e) => {
                    let _ = tx.send(Err(e)).await;
                    return;
                }
                Ended::Lost(reason) => {
                    lost_since = Instant::now();
                    reported = false;
                    reason
                }
            },
            Err(e) if e.is_retryable() => e,
            Err(e) => {
                tracing::error!(error = %e, "SUBSCRIBE refused");
                let _ = tx.send(Err(e)).await;
                return;
            }
        };
        if !shared.config.checkpoint {
            tracing::error!(error = %reason, "lost the agent and checkpointing is off");
            let _ = tx
                .send(Err(Error::AgentLost {
                    reason: Box::new(reason),
                }))
                .await;
            return;
        }
        let timeout = shared.config.recovery_timeout;
        let elapsed = lost_since.elapsed();
        if elapsed >= timeout {
            tracing::error!(error = %reason, "recovery timeout elapsed");
            let _ = tx
                .send(Err(Error::RecoveryTimeout {
                    timeout,
                    last: Box::new(reason),
                }))
                .await;
            return;
        }
        tracing::warn!(error = %reason, "not subscribed; retrying");
        if !reported {
            reported = true;
            if tx
                .send(Ok(ExecutorEvent::Disconnected { reason }))
                .await
                .is_err()
            {
                return;
            }
        }
        let delay = uniform_delay(shared.config.subscription_backoff_max).min(timeout - elapsed);
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = tx.closed() => return,
        }
    }
}

async fn subscribe(shared: &Shared) -> Result<RecordStream, Error> {
    let mut call = shared.call(call::Type::Subscribe);
    {
        let mut state = shared.lock();
        call.subscribe = Some(call::Subscribe {
            unacknowledged_tasks: state.tasks.clone(),
            unacknowledged_updates: state.updates.clone(),
        });
        state.unsent.clear();
    }
    let sub = call.subscribe.as_ref().map_or((0, 0), |s| {
        (s.unacknowledged_tasks.len(), s.unacknowledged_updates.len())
    });
    tracing::debug!(
        agent = %shared.endpoint,
        unacknowledged_tasks = sub.0,
        unacknowledged_updates = sub.1,
        "subscribing"
    );
    let ct = shared.config.content_type;
    let ep = &shared.endpoint;
    let t = &shared.transport;
    let req = t.build(
        Method::POST,
        ep,
        Some(ct),
        Some(ct.media_type()),
        &[],
        Bytes::from(ct.encode(&call)),
    )?;
    let (resp, guard) = t.open_stream(ep, req).await?;
    if resp.status() != StatusCode::OK {
        return Err(error_response(ep, resp, t.request_timeout(), false).await);
    }
    let codec = crate::transport::header_string(resp.headers(), http::header::CONTENT_TYPE)
        .and_then(|v| ContentType::from_media_type(&v))
        .unwrap_or(ct);
    Ok(RecordStream::new(resp.into_body(), codec, ep.url(), guard))
}

/// Updates the bookkeeping for an event: tasks launched, updates acknowledged, SHUTDOWN.
fn record(shared: &Shared, ev: &Event) {
    let mut state = shared.lock();
    match event_type(ev) {
        Some(event::Type::Launch) => {
            if let Some(launch) = &ev.launch {
                add_task(&mut state.tasks, &launch.task);
            }
        }
        Some(event::Type::LaunchGroup) => {
            if let Some(group) = &ev.launch_group {
                for task in &group.task_group.tasks {
                    add_task(&mut state.tasks, task);
                }
            }
        }
        Some(event::Type::Acknowledged) => {
            if let Some(ack) = &ev.acknowledged {
                state
                    .updates
                    .retain(|u| u.status.uuid.as_ref() != Some(&ack.uuid));
                state.unsent.retain(|u| *u != ack.uuid);
                state.tasks.retain(|t| t.task_id != ack.task_id);
                tracing::debug!(task_id = %ack.task_id.value, "update acknowledged");
            }
        }
        Some(event::Type::Shutdown) => state.shutting_down = true,
        _ => {}
    }
}

fn add_task(tasks: &mut Vec<TaskInfo>, task: &TaskInfo) {
    if !tasks.iter().any(|t| t.task_id == task.task_id) {
        tasks.push(task.clone());
    }
}

async fn read_stream(shared: &Shared, mut stream: RecordStream, tx: &Tx) -> Ended {
    let idle = shared.config.idle_timeout.unwrap_or(Duration::MAX);
    let url = shared.endpoint.url();
    let mut heartbeat = tokio::time::interval_at(
        tokio::time::Instant::now() + shared.config.heartbeat_interval,
        shared
            .config
            .heartbeat_interval
            .max(Duration::from_millis(1)),
    );
    let ended = loop {
        let next = tokio::select! {
            next = stream.next::<Event>(idle) => next,
            () = tx.closed() => break Ended::Gone,
            _ = heartbeat.tick() => {
                if shared.lock().connected
                    && let Err(e) = shared.send(&shared.call(call::Type::Heartbeat)).await
                {
                    tracing::warn!(error = %e, "HEARTBEAT call failed");
                }
                continue;
            }
        };
        let ev = match next {
            Ok(Some(ev)) => ev,
            Ok(None) | Err(_) if shared.lock().shutting_down => break Ended::Fatal(Error::Closed),
            Ok(None) => break Ended::Lost(Error::StreamEnded { url: url.clone() }),
            Err(e) => break Ended::Lost(e),
        };
        let connected = shared.lock().connected;
        let kind = event_type(&ev);
        if !connected {
            match kind {
                Some(event::Type::Subscribed) => {
                    let Some(subscribed) = ev.subscribed else {
                        break Ended::Lost(Error::Protocol {
                            url: url.clone(),
                            reason: "SUBSCRIBED event without its 'subscribed' field".into(),
                        });
                    };
                    let unsent = {
                        let mut state = shared.lock();
                        state.connected = true;
                        let unsent = std::mem::take(&mut state.unsent);
                        state
                            .updates
                            .iter()
                            .filter(|u| {
                                u.status.uuid.as_ref().is_some_and(|id| unsent.contains(id))
                            })
                            .cloned()
                            .collect::<Vec<_>>()
                    };
                    tracing::info!(agent = %url, "subscribed");
                    if tx
                        .send(Ok(ExecutorEvent::Connected { subscribed }))
                        .await
                        .is_err()
                    {
                        break Ended::Gone;
                    }
                    // Updates made while this SUBSCRIBE was on its way.
                    for update in unsent {
                        let mut call = shared.call(call::Type::Update);
                        call.update = Some(update.into());
                        if let Err(e) = shared.send(&call).await {
                            tracing::warn!(error = %e, "queued update not delivered; kept for the next SUBSCRIBE");
                        }
                    }
                    continue;
                }
                Some(event::Type::Error) => {
                    let message = ev.error.map(|e| e.message).unwrap_or_default();
                    break Ended::Fatal(Error::Rejected { message });
                }
                Some(event::Type::Shutdown) => {}
                _ => {
                    break Ended::Lost(Error::Protocol {
                        url: url.clone(),
                        reason: format!(
                            "expected SUBSCRIBED as the first event, got {}",
                            kind.map_or("UNKNOWN", |k| k.as_str_name())
                        ),
                    });
                }
            }
        }
        record(shared, &ev);
        tracing::trace!(event = kind.map_or("UNKNOWN", |k| k.as_str_name()), "event");
        if tx
            .send(Ok(ExecutorEvent::Event(Box::new(ev))))
            .await
            .is_err()
        {
            break Ended::Gone;
        }
    };
    shared.lock().connected = false;
    ended
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(extra: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = [
            ("MESOS_FRAMEWORK_ID", "7f3e-0000"),
            ("MESOS_EXECUTOR_ID", "my-exec"),
            ("MESOS_AGENT_ENDPOINT", "127.0.0.1:5051"),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
        for (k, val) in extra {
            v.retain(|(key, _)| key != k);
            v.push(((*k).to_owned(), (*val).to_owned()));
        }
        v
    }

    #[test]
    fn env_of_a_checkpointing_executor() {
        let c = ExecutorConfig::from_vars(vars(&[
            ("MESOS_CHECKPOINT", "1"),
            ("MESOS_RECOVERY_TIMEOUT", "15mins"),
            ("MESOS_SUBSCRIPTION_BACKOFF_MAX", "2secs"),
            ("MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD", "5secs"),
            ("MESOS_EXECUTOR_AUTHENTICATION_TOKEN", "jwt.token.here"),
            (
                "MESOS_DIRECTORY",
                "/var/lib/mesos/slaves/S0/frameworks/F/executors/E/runs/C",
            ),
            ("MESOS_SANDBOX", "/mnt/mesos/sandbox"),
            ("MESOS_SLAVE_ID", "7f3e-S0"),
            ("MESOS_SLAVE_PID", "slave(1)@10.0.0.9:5051"),
        ]))
        .unwrap();
        assert_eq!(c.framework_id.value, "7f3e-0000");
        assert_eq!(c.executor_id.value, "my-exec");
        assert_eq!(
            c.agent_url, "http://127.0.0.1:5051/api/v1/executor",
            "endpoint wins over pid"
        );
        assert!(c.checkpoint);
        assert_eq!(c.recovery_timeout, Duration::from_secs(900));
        assert_eq!(c.subscription_backoff_max, Duration::from_secs(2));
        assert_eq!(c.shutdown_grace_period, Duration::from_secs(5));
        assert_eq!(c.auth_token.as_deref(), Some("jwt.token.here"));
        assert_eq!(c.sandbox, Some(PathBuf::from("/mnt/mesos/sandbox")));
        assert_eq!(c.agent_id.unwrap().value, "7f3e-S0");
        assert!(
            !format!(
                "{:?}",
                ExecutorConfig::from_vars(vars(&[(
                    "MESOS_EXECUTOR_AUTHENTICATION_TOKEN",
                    "jwt.token.here"
                )]))
                .unwrap()
            )
            .contains("jwt.token")
        );
    }

    #[test]
    fn env_falls_back_to_the_slave_pid() {
        let mut v = vars(&[
            ("MESOS_SLAVE_PID", "slave(1)@10.0.0.9:5051"),
            ("MESOS_CHECKPOINT", "0"),
        ]);
        v.retain(|(k, _)| k != "MESOS_AGENT_ENDPOINT");
        let c = ExecutorConfig::from_vars(v).unwrap();
        assert_eq!(c.agent_url, "http://10.0.0.9:5051/slave(1)/api/v1/executor");
        assert!(!c.checkpoint);
        assert_eq!(
            c.recovery_timeout,
            Duration::from_secs(900),
            "default when not checkpointing"
        );
        let c = ExecutorConfig::from_vars(vars(&[("LIBPROCESS_SSL_ENABLED", "1")])).unwrap();
        assert_eq!(c.agent_url, "https://127.0.0.1:5051/api/v1/executor");
    }

    #[test]
    fn env_errors_name_the_variable() {
        let mut v = vars(&[]);
        v.retain(|(k, _)| k != "MESOS_FRAMEWORK_ID");
        let e = ExecutorConfig::from_vars(v).unwrap_err();
        assert_eq!(
            e,
            EnvError::Missing {
                var: "MESOS_FRAMEWORK_ID",
                hint: ""
            }
        );
        assert!(e.to_string().contains("MESOS_FRAMEWORK_ID is not set"));

        let mut v = vars(&[]);
        v.retain(|(k, _)| k != "MESOS_AGENT_ENDPOINT");
        let e = ExecutorConfig::from_vars(v).unwrap_err();
        assert!(
            e.to_string()
                .contains("MESOS_AGENT_ENDPOINT is not set (nor MESOS_SLAVE_PID)")
        );

        let e = ExecutorConfig::from_vars(vars(&[("MESOS_RECOVERY_TIMEOUT", "15 minutes")]))
            .unwrap_err();
        assert!(
            matches!(
                &e,
                EnvError::Malformed {
                    var: "MESOS_RECOVERY_TIMEOUT",
                    ..
                }
            ),
            "{e}"
        );
        assert!(e.to_string().contains("'15 minutes'"));

        for (var, value) in [
            ("MESOS_CHECKPOINT", "yes"),
            ("MESOS_AGENT_ENDPOINT", "127.0.0.1"),
            ("MESOS_AGENT_ENDPOINT", "127.0.0.1:http"),
            ("MESOS_SUBSCRIPTION_BACKOFF_MAX", "2"),
            ("MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD", "-5secs"),
        ] {
            let e = ExecutorConfig::from_vars(vars(&[(var, value)])).unwrap_err();
            assert!(
                matches!(&e, EnvError::Malformed { var: v, value: val, .. } if *v == var && val == value),
                "{var}={value}: {e}"
            );
        }
        let mut v = vars(&[("MESOS_SLAVE_PID", "10.0.0.9:5051")]);
        v.retain(|(k, _)| k != "MESOS_AGENT_ENDPOINT");
        assert!(matches!(
            ExecutorConfig::from_vars(v),
            Err(EnvError::Malformed {
                var: "MESOS_SLAVE_PID",
                ..
            })
        ));
    }
}
