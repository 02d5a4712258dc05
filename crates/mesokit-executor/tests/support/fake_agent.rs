//! A fake Mesos agent for executor tests: just `POST /api/v1/executor` on 127.0.0.1, in Mesos
//! JSON, over plain TCP.
//!
//! * SUBSCRIBE → `200` and a RecordIO event stream: SUBSCRIBED, then the events queued with
//!   [`FakeAgent::queue`] (typically a LAUNCH), then whatever the test [`FakeAgent::send`]s.
//! * UPDATE → validated as the agent does (uuid, source, state; `400` otherwise), `202`, and
//!   (unless [`FakeAgent::set_auto_ack`] turned it off) ACKNOWLEDGED on the stream.
//! * MESSAGE, HEARTBEAT → `202`.
//!
//! Every call is recorded for the test ([`FakeAgent::next_call`], [`FakeAgent::next_update`]).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mesokit_proto::recordio;
use mesokit_proto::v1::executor::{Call, Event, call, event};
use mesokit_proto::v1::framework_info::{Capability, capability};
use mesokit_proto::v1::task_status::Source;
use mesokit_proto::v1::{
    AgentId, AgentInfo, DurationInfo, ExecutorId, ExecutorInfo, FrameworkId, FrameworkInfo,
    KillPolicy, TaskId, TaskInfo, TaskState, TaskStatus,
};
use mesokit_proto::{helpers, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// How long a test waits for something that must happen before declaring failure.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// Awaits `fut`, failing the test with `what` if it takes longer than [`PATIENCE`].
pub async fn within<T>(what: &str, fut: impl std::future::Future<Output = T>) -> T {
    match tokio::time::timeout(PATIENCE, fut).await {
        Ok(v) => v,
        Err(_) => panic!("timed out waiting for {what}"),
    }
}

/// The fake agent. Dropping it closes the listener and every connection.
pub struct FakeAgent {
    addr: SocketAddr,
    shared: Arc<Shared>,
    calls: mpsc::UnboundedReceiver<Call>,
    task: JoinHandle<()>,
}

struct Shared {
    subscribed: Event,
    queued: Mutex<Vec<Event>>,
    auto_ack: Mutex<bool>,
    /// The open subscription stream, if any.
    stream: Mutex<Option<mpsc::UnboundedSender<Option<Event>>>>,
    calls: mpsc::UnboundedSender<Call>,
}

impl Drop for FakeAgent {
    fn drop(&mut self) {
        self.task.abort();
        if let Some(tx) = self.shared.stream.lock().unwrap().take() {
            let _ = tx.send(None);
        }
    }
}

impl FakeAgent {
    /// An agent that answers SUBSCRIBE with `subscribed` (see [`subscribed`]).
    pub async fn start(subscribed: Event) -> FakeAgent {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, calls) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            subscribed,
            queued: Mutex::new(Vec::new()),
            auto_ack: Mutex::new(true),
            stream: Mutex::new(None),
            calls: tx,
        });
        let s = shared.clone();
        let task = tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            while let Ok((sock, _)) = listener.accept().await {
                let _ = sock.set_nodelay(true);
                conns.spawn(serve(sock, s.clone()));
            }
        });
        FakeAgent {
            addr,
            shared,
            calls,
            task,
        }
    }

    /// `127.0.0.1:<port>`, the value of `MESOS_AGENT_ENDPOINT`.
    pub fn endpoint(&self) -> String {
        self.addr.to_string()
    }

    /// The environment an agent gives an executor (§4.13), checkpointing off.
    pub fn executor_env(
        &self,
        framework_id: &str,
        executor_id: &str,
        sandbox: &Path,
    ) -> Vec<(String, String)> {
        let sandbox = sandbox.to_string_lossy().into_owned();
        [
            ("MESOS_FRAMEWORK_ID", framework_id.to_owned()),
            ("MESOS_EXECUTOR_ID", executor_id.to_owned()),
            ("MESOS_AGENT_ENDPOINT", self.endpoint()),
            ("MESOS_SLAVE_ID", "fake-agent-S0".to_owned()),
            ("MESOS_SLAVE_PID", format!("slave(1)@{}", self.endpoint())),
            ("MESOS_DIRECTORY", sandbox.clone()),
            ("MESOS_SANDBOX", sandbox),
            ("MESOS_CHECKPOINT", "0".to_owned()),
            ("MESOS_HTTP_COMMAND_EXECUTOR", "1".to_owned()),
            ("MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD", "5secs".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }

    /// Events to send right after SUBSCRIBED on the next subscription, as an agent delivers
    /// the tasks queued for an executor.
    pub fn queue(&self, event: Event) {
        self.shared.queued.lock().unwrap().push(event);
    }

    /// Sends an event on the current subscription stream. Panics if there is none.
    pub fn send(&self, event: Event) {
        let stream = self.shared.stream.lock().unwrap();
        let tx = stream.as_ref().expect("no executor is subscribed");
        tx.send(Some(event)).expect("subscription stream gone");
    }

    /// Ends the subscription stream (the connection closes), as a dying agent would.
    pub fn close_stream(&self) {
        if let Some(tx) = self.shared.stream.lock().unwrap().take() {
            let _ = tx.send(None);
        }
    }

    /// Whether UPDATEs are ACKNOWLEDGED at once (the default).
    pub fn set_auto_ack(&self, on: bool) {
        *self.shared.auto_ack.lock().unwrap() = on;
    }

    /// The next call received.
    pub async fn next_call(&mut self) -> Call {
        within("a call from the executor", self.calls.recv())
            .await
            .expect("fake agent stopped")
    }

    /// The status of the next UPDATE call (other calls are skipped).
    pub async fn next_update(&mut self) -> TaskStatus {
        loop {
            let call = self.next_call().await;
            if call.r#type == Some(call::Type::Update as i32) {
                return call.update.expect("UPDATE without update").status;
            }
        }
    }

    /// The states of the next UPDATEs until (and including) a terminal one.
    pub async fn updates_until_terminal(&mut self) -> Vec<TaskStatus> {
        let mut out = Vec::new();
        loop {
            let status = self.next_update().await;
            let terminal = helpers::is_terminal_value(status.state);
            out.push(status);
            if terminal {
                return out;
            }
        }
    }
}

/// The name of a status's state, e.g. `TASK_RUNNING`.
pub fn state(status: &TaskStatus) -> &'static str {
    TaskState::try_from(status.state).map_or("UNKNOWN", |s| s.as_str_name())
}

/// A SUBSCRIBED event for a command executor of `executor_id`, its framework having these
/// capabilities.
pub fn subscribed(
    framework_id: &str,
    executor_id: &str,
    capabilities: &[capability::Type],
) -> Event {
    Event {
        r#type: Some(event::Type::Subscribed as i32),
        subscribed: Some(Box::new(event::Subscribed {
            executor_info: ExecutorInfo {
                executor_id: ExecutorId {
                    value: executor_id.to_owned(),
                },
                framework_id: Some(FrameworkId {
                    value: framework_id.to_owned(),
                }),
                ..Default::default()
            },
            framework_info: FrameworkInfo {
                user: "nobody".into(),
                name: "test".into(),
                id: Some(FrameworkId {
                    value: framework_id.to_owned(),
                }),
                capabilities: capabilities
                    .iter()
                    .map(|c| Capability {
                        r#type: Some(*c as i32),
                    })
                    .collect(),
                ..Default::default()
            },
            agent_info: AgentInfo {
                hostname: "localhost".into(),
                id: Some(AgentId {
                    value: "fake-agent-S0".into(),
                }),
                ..Default::default()
            },
            container_id: None,
        })),
        ..Default::default()
    }
}

/// LAUNCH of `task`.
pub fn launch(task: TaskInfo) -> Event {
    Event {
        r#type: Some(event::Type::Launch as i32),
        launch: Some(Box::new(event::Launch { task })),
        ..Default::default()
    }
}

/// LAUNCH_GROUP of `tasks`.
pub fn launch_group(tasks: Vec<TaskInfo>) -> Event {
    Event {
        r#type: Some(event::Type::LaunchGroup as i32),
        launch_group: Some(event::LaunchGroup {
            task_group: mesokit_proto::v1::TaskGroupInfo { tasks },
        }),
        ..Default::default()
    }
}

/// KILL of `task_id`, with a grace period override if given.
pub fn kill(task_id: &str, grace: Option<Duration>) -> Event {
    Event {
        r#type: Some(event::Type::Kill as i32),
        kill: Some(event::Kill {
            task_id: TaskId {
                value: task_id.to_owned(),
            },
            kill_policy: grace.map(|g| KillPolicy {
                grace_period: Some(DurationInfo {
                    nanoseconds: g.as_nanos() as i64,
                }),
            }),
        }),
        ..Default::default()
    }
}

/// SHUTDOWN.
pub fn shutdown() -> Event {
    Event {
        r#type: Some(event::Type::Shutdown as i32),
        ..Default::default()
    }
}

async fn serve(sock: TcpStream, shared: Arc<Shared>) {
    let (read, mut write) = sock.into_split();
    let mut read = BufReader::new(read);
    loop {
        let Some((method, path, body)) = read_request(&mut read).await else {
            return;
        };
        if method != "POST" || path != "/api/v1/executor" {
            let _ = write.write_all(&response(404, "")).await;
            continue;
        }
        let call: Call = match json::decode(&body) {
            Ok(c) => c,
            Err(e) => {
                let _ = write
                    .write_all(&response(400, &format!("Failed to parse body: {e}")))
                    .await;
                continue;
            }
        };
        let _ = shared.calls.send(call.clone());
        match call.r#type.and_then(|t| call::Type::try_from(t).ok()) {
            Some(call::Type::Subscribe) => {
                stream(read, write, &shared).await;
                return;
            }
            Some(call::Type::Update) => {
                let status = call.update.map(|u| u.status).unwrap_or_default();
                if let Err(e) = validate(&status) {
                    let _ = write.write_all(&response(400, e)).await;
                    continue;
                }
                if write.write_all(&response(202, "")).await.is_err() {
                    return;
                }
                if *shared.auto_ack.lock().unwrap()
                    && let Some(tx) = shared.stream.lock().unwrap().as_ref()
                {
                    let _ = tx.send(Some(Event {
                        r#type: Some(event::Type::Acknowledged as i32),
                        acknowledged: Some(event::Acknowledged {
                            task_id: status.task_id.clone(),
                            uuid: status.uuid.clone().unwrap_or_default(),
                        }),
                        ..Default::default()
                    }));
                }
            }
            _ => {
                if write.write_all(&response(202, "")).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// The agent's checks of an UPDATE (`src/common/validation.cpp`).
fn validate(status: &TaskStatus) -> Result<(), &'static str> {
    if !status.uuid.as_deref().is_some_and(helpers::is_valid_uuid) {
        return Err("Invalid UUID");
    }
    if status.source != Some(Source::Executor as i32) {
        return Err("Received Call from executor with invalid source");
    }
    if status.state == TaskState::TaskStaging as i32 {
        return Err("Received TASK_STAGING from executor");
    }
    Ok(())
}

/// Serves the subscription: SUBSCRIBED, the queued events, then whatever comes.
async fn stream(
    mut read: BufReader<tokio::net::tcp::OwnedReadHalf>,
    mut write: tokio::net::tcp::OwnedWriteHalf,
    shared: &Shared,
) {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let _ = tx.send(Some(shared.subscribed.clone()));
    for ev in shared.queued.lock().unwrap().drain(..) {
        let _ = tx.send(Some(ev));
    }
    // A new subscription replaces the previous one, as on a real agent.
    if let Some(old) = shared.stream.lock().unwrap().replace(tx) {
        let _ = old.send(None);
    }
    let head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
                Transfer-Encoding: chunked\r\n\r\n";
    if write.write_all(head.as_bytes()).await.is_err() {
        return;
    }
    let mut buf = [0u8; 256];
    loop {
        tokio::select! {
            ev = rx.recv() => match ev {
                Some(Some(ev)) => {
                    let record = recordio::frame(&json::encode(&ev));
                    let mut chunk = format!("{:x}\r\n", record.len()).into_bytes();
                    chunk.extend_from_slice(&record);
                    chunk.extend_from_slice(b"\r\n");
                    if write.write_all(&chunk).await.is_err() {
                        return;
                    }
                }
                Some(None) | None => {
                    let _ = write.write_all(b"0\r\n\r\n").await;
                    let _ = write.shutdown().await;
                    return;
                }
            },
            n = read.read(&mut buf) => match n {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            },
        }
    }
}

fn response(status: u16, body: &str) -> Vec<u8> {
    let reason = match status {
        200 => "OK",
        202 => "Accepted",
        400 => "Bad Request",
        _ => "Not Found",
    };
    format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

async fn read_request(
    read: &mut BufReader<tokio::net::tcp::OwnedReadHalf>,
) -> Option<(String, String, Vec<u8>)> {
    let mut line = String::new();
    if read.read_line(&mut line).await.ok()? == 0 {
        return None;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_owned();
    let path = parts.next()?.to_owned();
    let mut len = 0;
    loop {
        let mut h = String::new();
        if read.read_line(&mut h).await.ok()? == 0 {
            return None;
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':')
            && k.trim().eq_ignore_ascii_case("content-length")
        {
            len = v.trim().parse().ok()?;
        }
    }
    let mut body = vec![0u8; len];
    read.read_exact(&mut body).await.ok()?;
    Some((method, path, body))
}
