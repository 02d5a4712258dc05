//! The scheduler side of the Mesos v1 API: one long-lived SUBSCRIBE stream per framework,
//! kept alive across master failovers, and the calls (ACCEPT, DECLINE, ACKNOWLEDGE, …) sent
//! beside it on keep-alive connections.
//!
//! ```no_run
//! # async fn demo() -> Result<(), mesokit_client::Error> {
//! use mesokit_client::scheduler::{SchedulerClient, SchedulerConfig, SchedulerEvent};
//! use mesokit_proto::v1::FrameworkInfo;
//!
//! let info = FrameworkInfo { user: "alice".into(), name: "demo".into(), ..Default::default() };
//! let config = SchedulerConfig::new(["http://127.0.0.1:5050"], info);
//! let (client, mut events) = SchedulerClient::start(config)?;
//! loop {
//!     match events.next_event().await? {
//!         SchedulerEvent::Connected { framework_id, .. } => println!("subscribed as {}", framework_id.value),
//!         SchedulerEvent::Event(event) => {
//!             for offer in event.offers.iter().flat_map(|o| &o.offers) {
//!                 client.decline(vec![offer.id.clone()], None).await?;
//!             }
//!         }
//!         SchedulerEvent::Disconnected { reason } => eprintln!("disconnected: {reason}"),
//!         _ => {}
//!     }
//! }
//! # }
//! ```

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use http::header::LOCATION;
use http::{Method, StatusCode};
use mesokit_proto::v1::scheduler::{Call, Event, call, event};
use mesokit_proto::v1::{
    AgentId, ExecutorId, Filters, FrameworkId, FrameworkInfo, OfferId, TaskId, TaskInfo,
    TaskStatus, offer,
};
use tokio::sync::mpsc;
use tracing::Instrument;

use crate::backoff::Backoff;
use crate::codec::ContentType;
use crate::error::{ApiError, Error};
use crate::transport::{
    ConnGuard, Credentials, Endpoint, RecordStream, TlsConfig, Transport, error_response,
    header_string,
};

/// The scheduler API path on a master.
pub const SCHEDULER_PATH: &str = "/api/v1/scheduler";

const STREAM_ID: &str = "mesos-stream-id";

/// How the scheduler client reaches and talks to the masters.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SchedulerConfig {
    /// Base URLs of the masters, e.g. `http://10.0.0.1:5050` (a path prefix is kept). They are
    /// tried in order; a 307 from a non-leader is followed.
    pub masters: Vec<String>,
    /// The framework to subscribe. Set `id` to fail over an existing framework.
    pub framework_info: FrameworkInfo,
    /// Roles to subscribe suppressed (`Subscribe.suppressed_roles`).
    pub suppressed_roles: Vec<String>,
    /// Encoding of calls and events.
    pub content_type: ContentType,
    /// HTTP basic-auth credentials, when the masters authenticate frameworks.
    pub credentials: Option<Credentials>,
    /// TLS settings for `https://` masters.
    pub tls: TlsConfig,
    /// The stream is declared dead after this many heartbeat intervals without a byte (5).
    pub heartbeat_timeout_factor: f64,
    /// Delays between subscription attempts.
    pub backoff: Backoff,
    /// Timeout of each call, and of connecting and getting the first event of a SUBSCRIBE (75 s).
    pub request_timeout: Duration,
    /// Redirects followed per subscription attempt before giving up on a master (5).
    pub max_redirects: usize,
    /// Consecutive failed subscription rounds (each tries every master once) before the
    /// session ends with [`Error::GaveUp`]; `None` retries forever (the default).
    pub max_reconnect_attempts: Option<u32>,
    /// Events buffered for a slow consumer before the stream stops being read (256).
    pub event_buffer: usize,
}

impl SchedulerConfig {
    /// A configuration with the defaults described on each field.
    pub fn new<I, S>(masters: I, framework_info: FrameworkInfo) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        SchedulerConfig {
            masters: masters.into_iter().map(Into::into).collect(),
            framework_info,
            suppressed_roles: Vec::new(),
            content_type: ContentType::Json,
            credentials: None,
            tls: TlsConfig::default(),
            heartbeat_timeout_factor: 5.0,
            backoff: Backoff::default(),
            request_timeout: Duration::from_secs(75),
            max_redirects: 5,
            max_reconnect_attempts: None,
            event_buffer: 256,
        }
    }
}

/// What the event stream yields.
#[derive(Debug)]
#[non_exhaustive]
pub enum SchedulerEvent {
    /// A SUBSCRIBED event: the framework is (re)subscribed, calls may be sent.
    Connected {
        /// The framework id (kept for later re-subscriptions).
        framework_id: FrameworkId,
        /// The scheduler API URL of the leading master.
        master: String,
        /// The SUBSCRIBED event itself (heartbeat interval, master info).
        subscribed: event::Subscribed,
    },
    /// Any other event from the master, HEARTBEAT included.
    Event(Box<Event>),
    /// The stream broke or a subscription round failed; the client retries after a backoff.
    /// Outstanding offers are void; reconcile once connected again.
    Disconnected {
        /// Why.
        reason: Error,
    },
}

/// Receives the events of a scheduler session. Dropping it ends the session.
#[derive(Debug)]
pub struct EventStream {
    rx: mpsc::Receiver<Result<SchedulerEvent, Error>>,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl EventStream {
    /// The next event. An `Err` ends the session: the master sent an ERROR event
    /// ([`Error::Rejected`]), the subscription was refused ([`Error::Api`]), the client gave up
    /// ([`Error::GaveUp`]) or the session was closed ([`Error::Closed`], returned from then on).
    pub async fn next_event(&mut self) -> Result<SchedulerEvent, Error> {
        match self.rx.recv().await {
            Some(item) => item,
            None => Err(Error::Closed),
        }
    }
}

impl Drop for EventStream {
    fn drop(&mut self) {
        self.task.abort();
        self.shared.lock().session = None;
    }
}

/// Sends calls for a subscribed framework. Cheap to clone.
#[derive(Debug, Clone)]
pub struct SchedulerClient {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    masters: Vec<Endpoint>,
    transport: Transport,
    content_type: ContentType,
    heartbeat_timeout_factor: f64,
    backoff: Backoff,
    max_redirects: usize,
    max_reconnect_attempts: Option<u32>,
    state: Mutex<State>,
    reconnect: mpsc::UnboundedSender<Reconnect>,
}

#[derive(Debug)]
struct State {
    framework_info: FrameworkInfo,
    suppressed_roles: Vec<String>,
    framework_id: Option<FrameworkId>,
    session: Option<Session>,
    generation: u64,
    /// TEARDOWN was accepted: the end of the stream ends the session.
    closing: bool,
}

#[derive(Debug, Clone)]
struct Session {
    stream_id: String,
    /// The scheduler API URL of the master holding the stream; calls go there too.
    endpoint: Endpoint,
    generation: u64,
}

/// A call was refused by a non-leader: drop the stream and subscribe again.
#[derive(Debug)]
struct Reconnect {
    generation: u64,
    leader: Option<Endpoint>,
    reason: Error,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl SchedulerClient {
    /// Validates the configuration and starts subscribing in the background (on the current
    /// Tokio runtime). Events, starting with [`SchedulerEvent::Connected`], arrive on the
    /// returned [`EventStream`].
    pub fn start(config: SchedulerConfig) -> Result<(SchedulerClient, EventStream), Error> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            Error::Config("SchedulerClient::start must be called within a Tokio runtime".into())
        })?;
        if config.masters.is_empty() {
            return Err(Error::Config("no master URL given".into()));
        }
        if !(config.heartbeat_timeout_factor.is_finite() && config.heartbeat_timeout_factor > 0.0) {
            return Err(Error::Config(
                "heartbeat_timeout_factor must be a positive number".into(),
            ));
        }
        let masters = config
            .masters
            .iter()
            .map(|m| Endpoint::parse_base(m))
            .collect::<Result<Vec<_>, _>>()?;
        let auth = config
            .credentials
            .as_ref()
            .map(Credentials::header)
            .transpose()?;
        let transport = Transport::new(&masters, &config.tls, auth, config.request_timeout)?;
        let (reconnect, reconnect_rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            masters,
            transport,
            content_type: config.content_type,
            heartbeat_timeout_factor: config.heartbeat_timeout_factor,
            backoff: config.backoff,
            max_redirects: config.max_redirects,
            max_reconnect_attempts: config.max_reconnect_attempts,
            state: Mutex::new(State {
                framework_id: config.framework_info.id.clone(),
                framework_info: config.framework_info,
                suppressed_roles: config.suppressed_roles,
                session: None,
                generation: 0,
                closing: false,
            }),
            reconnect,
        });
        let (tx, rx) = mpsc::channel(config.event_buffer.max(1));
        let task = runtime.spawn(run(shared.clone(), tx, reconnect_rx));
        Ok((
            SchedulerClient {
                shared: shared.clone(),
            },
            EventStream { rx, shared, task },
        ))
    }

    /// The framework id, once a SUBSCRIBED has been received (or if configured).
    pub fn framework_id(&self) -> Option<FrameworkId> {
        self.shared.lock().framework_id.clone()
    }

    /// Whether a subscription is established.
    pub fn is_connected(&self) -> bool {
        self.shared.lock().session.is_some()
    }

    /// The scheduler API URL of the master currently subscribed to.
    pub fn master(&self) -> Option<String> {
        self.shared
            .lock()
            .session
            .as_ref()
            .map(|s| s.endpoint.url())
    }

    /// Sends any call but SUBSCRIBE. `framework_id` and the `Mesos-Stream-Id` header are filled
    /// in. Succeeds on `202 Accepted` (or `200 OK` for UPDATE_FRAMEWORK); an error status
    /// becomes [`Error::Api`]. A 307/404 (not the leader) also makes the client re-subscribe.
    pub async fn call(&self, mut call: Call) -> Result<(), Error> {
        if call.r#type == Some(call::Type::Subscribe as i32) {
            return Err(Error::InvalidCall(
                "SUBSCRIBE is sent by the client itself; use SchedulerClient::start".into(),
            ));
        }
        let (session, framework_id) = {
            let state = self.shared.lock();
            let session = state.session.clone().ok_or(Error::NotSubscribed)?;
            (session, state.framework_id.clone())
        };
        call.framework_id = framework_id;
        let ct = self.shared.content_type;
        let body = Bytes::from(ct.encode(&call));
        let transport = &self.shared.transport;
        let ep = &session.endpoint;
        let resp = transport
            .request(ep, &|| {
                transport.build(
                    Method::POST,
                    ep,
                    Some(ct),
                    Some(ct.media_type()),
                    &[(STREAM_ID, &session.stream_id)],
                    body.clone(),
                )
            })
            .await?;
        let kind = call_type_name(call.r#type);
        if resp.status == StatusCode::ACCEPTED || resp.status == StatusCode::OK {
            tracing::debug!(call = kind, master = %ep, "call accepted");
            return Ok(());
        }
        let error = resp.api_error(true);
        tracing::warn!(call = kind, master = %ep, status = error.status(), message = error.message(), "call refused");
        if let ApiError::NotLeader { location, .. } = &error {
            let leader = location.as_deref().and_then(|l| ep.resolve(l).ok());
            let _ = self.shared.reconnect.send(Reconnect {
                generation: session.generation,
                leader,
                reason: Error::Api {
                    url: ep.url(),
                    error: error.clone(),
                },
            });
        }
        Err(Error::Api {
            url: ep.url(),
            error,
        })
    }

    fn typed(ty: call::Type) -> Call {
        Call {
            r#type: Some(ty as i32),
            ..Default::default()
        }
    }

    /// ACCEPT: applies `operations` to the offers; what remains is declined with `filters`.
    pub async fn accept(
        &self,
        offer_ids: Vec<OfferId>,
        operations: Vec<offer::Operation>,
        filters: Option<Filters>,
    ) -> Result<(), Error> {
        let mut c = Self::typed(call::Type::Accept);
        c.accept = Some(call::Accept {
            offer_ids,
            operations,
            filters,
        });
        self.call(c).await
    }

    /// ACCEPT with one LAUNCH operation of `tasks`.
    pub async fn launch(
        &self,
        offer_ids: Vec<OfferId>,
        tasks: Vec<TaskInfo>,
        filters: Option<Filters>,
    ) -> Result<(), Error> {
        let op = offer::Operation {
            r#type: Some(offer::operation::Type::Launch as i32),
            launch: Some(offer::operation::Launch { task_infos: tasks }),
            ..Default::default()
        };
        self.accept(offer_ids, vec![op], filters).await
    }

    /// DECLINE the offers; `filters` (e.g. `refuse_seconds`) keep them away for a while.
    pub async fn decline(
        &self,
        offer_ids: Vec<OfferId>,
        filters: Option<Filters>,
    ) -> Result<(), Error> {
        let mut c = Self::typed(call::Type::Decline);
        c.decline = Some(call::Decline { offer_ids, filters });
        self.call(c).await
    }

    /// REVIVE offers for `roles` (all roles when empty) and clear the filters.
    pub async fn revive(&self, roles: Vec<String>) -> Result<(), Error> {
        let mut c = Self::typed(call::Type::Revive);
        c.revive = Some(call::Revive { roles });
        self.call(c).await
    }

    /// SUPPRESS offers for `roles` (all roles when empty).
    pub async fn suppress(&self, roles: Vec<String>) -> Result<(), Error> {
        let mut c = Self::typed(call::Type::Suppress);
        c.suppress = Some(call::Suppress { roles });
        self.call(c).await
    }

    /// KILL a task.
    pub async fn kill(&self, task_id: TaskId, agent_id: Option<AgentId>) -> Result<(), Error> {
        let mut c = Self::typed(call::Type::Kill);
        c.kill = Some(call::Kill {
            task_id,
            agent_id,
            kill_policy: None,
        });
        self.call(c).await
    }

    /// SHUTDOWN a custom executor.
    pub async fn shutdown(&self, executor_id: ExecutorId, agent_id: AgentId) -> Result<(), Error> {
        let mut c = Self::typed(call::Type::Shutdown);
        c.shutdown = Some(call::Shutdown {
            executor_id,
            agent_id,
        });
        self.call(c).await
    }

    /// ACKNOWLEDGE a status update. Updates without a uuid (generated by the master, e.g. for
    /// reconciliation) must not be acknowledged: for those nothing is sent and `Ok(false)` is
    /// returned.
    pub async fn acknowledge(&self, status: &TaskStatus) -> Result<bool, Error> {
        let Some(uuid) = status.uuid.clone() else {
            return Ok(false);
        };
        let agent_id = status.agent_id.clone().ok_or_else(|| {
            Error::InvalidCall(format!(
                "status update for task {} has a uuid but no agent_id",
                status.task_id.value
            ))
        })?;
        let mut c = Self::typed(call::Type::Acknowledge);
        c.acknowledge = Some(call::Acknowledge {
            agent_id,
            task_id: status.task_id.clone(),
            uuid,
        });
        self.call(c).await.map(|()| true)
    }

    /// RECONCILE tasks: explicit for the given `(task, agent)` pairs, implicit (all tasks) when
    /// empty.
    pub async fn reconcile(&self, tasks: Vec<(TaskId, Option<AgentId>)>) -> Result<(), Error> {
        let mut c = Self::typed(call::Type::Reconcile);
        c.reconcile = Some(call::Reconcile {
            tasks: tasks
                .into_iter()
                .map(|(task_id, agent_id)| call::reconcile::Task { task_id, agent_id })
                .collect(),
        });
        self.call(c).await
    }

    /// MESSAGE: best-effort data to an executor.
    pub async fn message(
        &self,
        agent_id: AgentId,
        executor_id: ExecutorId,
        data: impl Into<Bytes>,
    ) -> Result<(), Error> {
        let mut c = Self::typed(call::Type::Message);
        c.message = Some(call::Message {
            agent_id,
            executor_id,
            data: data.into(),
        });
        self.call(c).await
    }

    /// TEARDOWN: removes the framework, killing its tasks. The event stream then ends with
    /// [`Error::Closed`].
    pub async fn teardown(&self) -> Result<(), Error> {
        self.shared.lock().closing = true;
        let result = self.call(Self::typed(call::Type::Teardown)).await;
        if result.is_err() {
            self.shared.lock().closing = false;
        }
        result
    }

    /// UPDATE_FRAMEWORK (synchronous). On success the new info is also used for later
    /// re-subscriptions.
    pub async fn update_framework(
        &self,
        mut framework_info: FrameworkInfo,
        suppressed_roles: Vec<String>,
    ) -> Result<(), Error> {
        if framework_info.id.is_none() {
            framework_info.id = self.framework_id();
        }
        let mut c = Self::typed(call::Type::UpdateFramework);
        c.update_framework = Some(
            call::UpdateFramework {
                framework_info: framework_info.clone(),
                suppressed_roles: suppressed_roles.clone(),
                offer_constraints: None,
            }
            .into(),
        );
        self.call(c).await?;
        let mut state = self.shared.lock();
        state.framework_info = framework_info;
        state.suppressed_roles = suppressed_roles;
        Ok(())
    }
}

fn call_type_name(ty: Option<i32>) -> &'static str {
    ty.and_then(|t| call::Type::try_from(t).ok())
        .map_or("UNKNOWN", |t| t.as_str_name())
}

fn event_type_name(ty: Option<i32>) -> &'static str {
    ty.and_then(|t| event::Type::try_from(t).ok())
        .map_or("UNKNOWN", |t| t.as_str_name())
}

/// An established subscription: the stream after its SUBSCRIBED event.
struct Subscription {
    stream: RecordStream,
    stream_id: String,
    endpoint: Endpoint,
    subscribed: event::Subscribed,
}

/// How a stream ended.
enum Ended {
    /// Reconnect after a backoff.
    Lost {
        reason: Error,
        leader: Option<Endpoint>,
    },
    /// The session is over.
    Fatal(Error),
    /// The consumer went away.
    Gone,
}

type Tx = mpsc::Sender<Result<SchedulerEvent, Error>>;

/// The session: subscribe, read, reconnect, until something fatal happens or nobody listens.
async fn run(shared: Arc<Shared>, tx: Tx, mut reconnect_rx: mpsc::UnboundedReceiver<Reconnect>) {
    let mut failures: u32 = 0;
    let mut next_master = 0usize;
    let mut leader_hint: Option<Endpoint> = None;
    let mut first = true;
    loop {
        if !first {
            let delay = shared.backoff.delay(failures.saturating_sub(1));
            tracing::debug!(?delay, "waiting before subscribing again");
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = tx.closed() => return,
            }
        }
        first = false;
        let sub = subscribe_round(&shared, &mut next_master, leader_hint.take()).await;
        let sub = match sub {
            Ok(sub) => sub,
            Err(e) if e.is_retryable() => {
                failures += 1;
                if let Some(max) = shared.max_reconnect_attempts
                    && failures > max
                {
                    let _ = tx
                        .send(Err(Error::GaveUp {
                            attempts: failures,
                            last: Box::new(e),
                        }))
                        .await;
                    return;
                }
                tracing::warn!(error = %e, attempt = failures, "subscription failed");
                if tx
                    .send(Ok(SchedulerEvent::Disconnected { reason: e }))
                    .await
                    .is_err()
                {
                    return;
                }
                continue;
            }
            Err(e) => {
                tracing::error!(error = %e, "subscription refused");
                let _ = tx.send(Err(e)).await;
                return;
            }
        };
        // Drop any reconnect request aimed at an older stream.
        while reconnect_rx.try_recv().is_ok() {}
        match read_stream(&shared, sub, &tx, &mut reconnect_rx).await {
            Ended::Gone => return,
            Ended::Fatal(e) => {
                let _ = tx.send(Err(e)).await;
                return;
            }
            Ended::Lost { reason, leader } => {
                leader_hint = leader;
                tracing::warn!(error = %reason, "subscription lost");
                failures = 1;
                if tx
                    .send(Ok(SchedulerEvent::Disconnected { reason }))
                    .await
                    .is_err()
                {
                    return;
                }
            }
        }
    }
}

/// Tries every master once (a leader hint first), starting where the last success was.
async fn subscribe_round(
    shared: &Shared,
    next_master: &mut usize,
    leader_hint: Option<Endpoint>,
) -> Result<Subscription, Error> {
    let mut last = None;
    if let Some(leader) = leader_hint {
        match subscribe_following_redirects(shared, leader).await {
            Ok(sub) => return Ok(sub),
            Err(e) if e.is_retryable() => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    let n = shared.masters.len();
    for i in 0..n {
        let idx = (*next_master + i) % n;
        let ep = shared.masters[idx].join(SCHEDULER_PATH);
        match subscribe_following_redirects(shared, ep).await {
            Ok(sub) => {
                *next_master = idx;
                return Ok(sub);
            }
            Err(e) if e.is_retryable() => {
                tracing::info!(master = %shared.masters[idx], error = %e, "master unusable, trying the next one");
                last = Some(e);
            }
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or(Error::Config("no master URL given".into())))
}

async fn subscribe_following_redirects(
    shared: &Shared,
    mut ep: Endpoint,
) -> Result<Subscription, Error> {
    let mut chain = vec![ep.url()];
    loop {
        match subscribe_once(shared, &ep).await? {
            Attempt::Subscribed(sub) => return Ok(*sub),
            Attempt::Redirect(location) => {
                let next = ep.resolve(&location)?;
                chain.push(next.url());
                if chain[..chain.len() - 1].contains(&next.url()) {
                    return Err(Error::RedirectLoop { chain });
                }
                if chain.len() - 1 > shared.max_redirects {
                    return Err(Error::TooManyRedirects {
                        limit: shared.max_redirects,
                        chain,
                    });
                }
                tracing::info!(from = %ep, to = %next, "following redirect to the leading master");
                ep = next;
            }
        }
    }
}

enum Attempt {
    Subscribed(Box<Subscription>),
    Redirect(String),
}

async fn subscribe_once(shared: &Shared, ep: &Endpoint) -> Result<Attempt, Error> {
    let call = {
        let state = shared.lock();
        let mut info = state.framework_info.clone();
        if state.framework_id.is_some() {
            info.id = state.framework_id.clone();
        }
        Call {
            framework_id: info.id.clone(),
            r#type: Some(call::Type::Subscribe as i32),
            subscribe: Some(
                call::Subscribe {
                    framework_info: info,
                    suppressed_roles: state.suppressed_roles.clone(),
                    offer_constraints: None,
                }
                .into(),
            ),
            ..Default::default()
        }
    };
    let ct = shared.content_type;
    let transport = &shared.transport;
    tracing::debug!(master = %ep, framework_id = ?call.framework_id.as_ref().map(|f| &f.value), "subscribing");
    let req = transport.build(
        Method::POST,
        ep,
        Some(ct),
        Some(ct.media_type()),
        &[],
        Bytes::from(ct.encode(&call)),
    )?;
    let (resp, guard): (_, ConnGuard) = transport.open_stream(ep, req).await?;
    match resp.status() {
        StatusCode::OK => {}
        StatusCode::TEMPORARY_REDIRECT => {
            return match header_string(resp.headers(), LOCATION) {
                Some(location) => Ok(Attempt::Redirect(location)),
                None => Err(Error::Protocol {
                    url: ep.url(),
                    reason: "307 without a Location header".into(),
                }),
            };
        }
        _ => return Err(error_response(ep, resp, transport.request_timeout(), true).await),
    }
    let stream_id = header_string(resp.headers(), http::HeaderName::from_static(STREAM_ID))
        .filter(|s| !s.is_empty())
        .ok_or_else(|| Error::Protocol {
            url: ep.url(),
            reason: "SUBSCRIBE response has no Mesos-Stream-Id header".into(),
        })?;
    let codec = header_string(resp.headers(), http::header::CONTENT_TYPE)
        .and_then(|v| ContentType::from_media_type(&v))
        .unwrap_or(ct);
    let mut stream = RecordStream::new(resp.into_body(), codec, ep.url(), guard);
    let first: Option<Event> = stream.next(transport.request_timeout()).await?;
    let Some(mut first) = first else {
        return Err(Error::StreamEnded { url: ep.url() });
    };
    match first.r#type.and_then(|t| event::Type::try_from(t).ok()) {
        Some(event::Type::Subscribed) => match first.subscribed.take() {
            Some(subscribed) => Ok(Attempt::Subscribed(Box::new(Subscription {
                stream,
                stream_id,
                endpoint: ep.clone(),
                subscribed,
            }))),
            None => Err(Error::Protocol {
                url: ep.url(),
                reason: "SUBSCRIBED event without its 'subscribed' field".into(),
            }),
        },
        Some(event::Type::Error) => Err(Error::Rejected {
            message: first.error.map(|e| e.message).unwrap_or_default(),
        }),
        _ => Err(Error::Protocol {
            url: ep.url(),
            reason: format!(
                "expected SUBSCRIBED as the first event, got {}",
                event_type_name(first.r#type)
            ),
        }),
    }
}

fn heartbeat_timeout(shared: &Shared, subscribed: &event::Subscribed) -> Duration {
    let interval = subscribed
        .heartbeat_interval_seconds
        .filter(|s| s.is_finite() && *s > 0.0)
        .unwrap_or(15.0);
    Duration::try_from_secs_f64(interval * shared.heartbeat_timeout_factor)
        .unwrap_or(Duration::from_secs(75))
}

async fn read_stream(
    shared: &Shared,
    sub: Subscription,
    tx: &Tx,
    reconnect_rx: &mut mpsc::UnboundedReceiver<Reconnect>,
) -> Ended {
    let Subscription {
        mut stream,
        stream_id,
        endpoint,
        subscribed,
    } = sub;
    let framework_id = subscribed.framework_id.clone();
    let idle = heartbeat_timeout(shared, &subscribed);
    let generation = {
        let mut state = shared.lock();
        state.generation += 1;
        state.framework_id = Some(framework_id.clone());
        state.session = Some(Session {
            stream_id: stream_id.clone(),
            endpoint: endpoint.clone(),
            generation: state.generation,
        });
        state.generation
    };
    let span =
        tracing::info_span!("subscription", framework_id = %framework_id.value, master = %endpoint);
    span.in_scope(
        || tracing::info!(stream_id = %stream_id, heartbeat_timeout = ?idle, "subscribed"),
    );
    let connected = SchedulerEvent::Connected {
        framework_id,
        master: endpoint.url(),
        subscribed,
    };
    let read = async {
        if tx.send(Ok(connected)).await.is_err() {
            return Ended::Gone;
        }
        loop {
            let next = tokio::select! {
                next = stream.next::<Event>(idle) => next,
                () = tx.closed() => break Ended::Gone,
                Some(r) = reconnect_rx.recv() => {
                    if r.generation == generation {
                        break Ended::Lost { reason: r.reason, leader: r.leader };
                    }
                    continue;
                }
            };
            match next {
                Ok(Some(ev)) => {
                    if ev.r#type == Some(event::Type::Error as i32) {
                        let message = ev.error.map(|e| e.message).unwrap_or_default();
                        tracing::error!(%message, "master sent ERROR");
                        break Ended::Fatal(Error::Rejected { message });
                    }
                    tracing::trace!(event = event_type_name(ev.r#type), "event");
                    if tx
                        .send(Ok(SchedulerEvent::Event(Box::new(ev))))
                        .await
                        .is_err()
                    {
                        break Ended::Gone;
                    }
                }
                Ok(None) => {
                    if shared.lock().closing {
                        break Ended::Fatal(Error::Closed);
                    }
                    break Ended::Lost {
                        reason: Error::StreamEnded {
                            url: endpoint.url(),
                        },
                        leader: None,
                    };
                }
                Err(reason) => {
                    if shared.lock().closing {
                        break Ended::Fatal(Error::Closed);
                    }
                    break Ended::Lost {
                        reason,
                        leader: None,
                    };
                }
            }
        }
    };
    let ended = read.instrument(span).await;
    shared.lock().session = None;
    ended
}
