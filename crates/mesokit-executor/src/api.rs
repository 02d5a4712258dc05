//! The task HTTP API (Cook's executor design): a small HTTP/1.1 server on 127.0.0.1 through
//! which a task's commands report progress and a message, set environment variables for the
//! commands that follow, and read the exit statuses recorded so far.
//!
//! Every command of a task gets two variables:
//!
//! * `EXECUTOR_ENDPOINT`: `http://127.0.0.1:<port>/task/<task id, percent-encoded>`;
//! * `EXECUTOR_TOKEN`: a random token of this task, to send as `Authorization: Bearer <token>`.
//!
//! Requests:
//!
//! * `PATCH <endpoint>` with a JSON object of any of `progress` (number 0-100, rounded),
//!   `message` (string, cut to [`crate::Settings::max_message_length`] characters, the last
//!   three being `...`) and `env` (object of strings; `null` unsets; applies to the commands
//!   started afterwards) → `204 No Content`; `400` naming the bad key or type; `401` without
//!   the task's token; `404` for an unknown task; `413` for a body over [`MAX_BODY`] bytes.
//!   A change of progress or message reaches the scheduler as a TASK_RUNNING update (message
//!   and JSON `data`), at most one a second (the last one is always sent).
//! * `GET <endpoint>` → `200` and `{"task_id", "exit_code", "before_codes", "after_codes",
//!   "progress", "message"}` (a status not known yet is `null`; a command ended by signal N
//!   is recorded as 128+N, as shells do).
//!
//! ```sh
//! curl -X PATCH -H "Authorization: Bearer $EXECUTOR_TOKEN" \
//!      -d '{"progress": 40, "message": "halfway", "env": {"A": "1", "B": null}}' \
//!      "$EXECUTOR_ENDPOINT"
//! ```

use std::collections::HashMap;
use std::convert::Infallible;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{ALLOW, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use mesokit_proto::json::{Parser, Writer};
use mesokit_proto::v1::TaskId;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// The variable holding the task's API URL.
pub const ENDPOINT_VAR: &str = "EXECUTOR_ENDPOINT";
/// The variable holding the task's API token.
pub const TOKEN_VAR: &str = "EXECUTOR_TOKEN";
/// The largest PATCH body accepted.
pub const MAX_BODY: usize = 64 * 1024;
/// Default of [`crate::Settings::max_message_length`], as in Cook.
pub const DEFAULT_MAX_MESSAGE: usize = 512;

/// A change of a task's progress or message, for the supervisor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    /// The task.
    pub task_id: TaskId,
    /// Percent done.
    pub progress: Option<u8>,
    /// The latest message.
    pub message: Option<String>,
}

/// Which command of a task a status belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    /// Before command number `.0` (from 0).
    Before(usize),
    /// The task's own command.
    Main,
    /// After command number `.0`.
    After(usize),
}

#[derive(Debug, Default)]
struct Record {
    token: String,
    progress: Option<u8>,
    message: Option<String>,
    /// Changes made through PATCH, in order; `None` unsets.
    env: Vec<(String, Option<String>)>,
    exit_code: Option<i32>,
    before_codes: Vec<Option<i32>>,
    after_codes: Vec<Option<i32>>,
}

#[derive(Debug)]
struct Shared {
    tasks: Mutex<HashMap<String, Record>>,
    changes: mpsc::UnboundedSender<Progress>,
    max_message: usize,
}

/// A running task API server. Cheap to clone.
#[derive(Debug, Clone)]
pub struct TaskApi {
    shared: Arc<Shared>,
    addr: SocketAddr,
}

impl TaskApi {
    /// Binds 127.0.0.1 on an ephemeral port and serves in the background (on the current
    /// Tokio runtime) until the runtime ends. Progress changes come out of the receiver.
    pub async fn start(
        max_message: usize,
    ) -> std::io::Result<(TaskApi, mpsc::UnboundedReceiver<Progress>)> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let (tx, rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            tasks: Mutex::new(HashMap::new()),
            changes: tx,
            max_message,
        });
        tokio::spawn(serve(listener, shared.clone()));
        Ok((TaskApi { shared, addr }, rx))
    }

    /// The address served.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Makes `task_id` known, with room for the statuses of its before and after commands,
    /// and returns the two variables its commands get ([`ENDPOINT_VAR`], [`TOKEN_VAR`]).
    pub fn register(&self, task_id: &TaskId, before: usize, after: usize) -> [(String, String); 2] {
        let token = hex(&mesokit_proto::helpers::new_uuid());
        let record = Record {
            token: token.clone(),
            before_codes: vec![None; before],
            after_codes: vec![None; after],
            ..Record::default()
        };
        self.lock().insert(task_id.value.clone(), record);
        let endpoint = format!(
            "http://{}/task/{}",
            self.addr,
            percent_encode(&task_id.value)
        );
        [
            (ENDPOINT_VAR.to_owned(), endpoint),
            (TOKEN_VAR.to_owned(), token),
        ]
    }

    /// Records how a command of the task ended (`None`: it could not start).
    pub fn record_exit(&self, task_id: &TaskId, which: Which, code: Option<i32>) {
        if let Some(r) = self.lock().get_mut(&task_id.value) {
            let slot = match which {
                Which::Main => Some(&mut r.exit_code),
                Which::Before(i) => r.before_codes.get_mut(i),
                Which::After(i) => r.after_codes.get_mut(i),
            };
            if let Some(slot) = slot {
                *slot = code;
            }
        }
    }

    /// Applies the task's environment changes made so far to `env`.
    pub fn apply_env(&self, task_id: &TaskId, env: &mut Vec<(String, String)>) {
        if let Some(r) = self.lock().get(&task_id.value) {
            for (key, value) in &r.env {
                env.retain(|(k, _)| k != key);
                if let Some(v) = value {
                    env.push((key.clone(), v.clone()));
                }
            }
        }
    }

    /// Progress and a message found elsewhere than in a PATCH (the progress regex, see
    /// [`crate::progress`]): recorded and passed on as a PATCH's are (`None`: unchanged).
    pub fn report(&self, task_id: &TaskId, progress: Option<u8>, message: Option<String>) {
        self.shared.merge(&task_id.value, progress, message);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Record>> {
        self.shared
            .tasks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::with_capacity(32), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let h = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(h, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::warn!(error = %e, "task API: accept failed");
                // Out of descriptors, say: do not spin.
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let shared = shared.clone();
                async move { Ok::<_, Infallible>(handle(&shared, req).await) }
            });
            let io = hyper_util::rt::TokioIo::new(stream);
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .serve_connection(io, service)
                .await
            {
                tracing::debug!(error = %e, "task API connection ended with an error");
            }
        });
    }
}

type Reply = Response<Full<Bytes>>;

fn reply(status: StatusCode, text: impl Into<String>) -> Reply {
    let mut text = text.into();
    if !text.is_empty() {
        text.push('\n');
    }
    let mut r = Response::new(Full::new(Bytes::from(text)));
    *r.status_mut() = status;
    r
}

async fn handle(shared: &Shared, req: Request<Incoming>) -> Reply {
    let Some(id) = req
        .uri()
        .path()
        .strip_prefix("/task/")
        .and_then(percent_decode)
    else {
        return reply(
            StatusCode::NOT_FOUND,
            "no such resource: use /task/<task id>",
        );
    };
    let given = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .map(str::to_owned);
    {
        let tasks = shared.tasks.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(record) = tasks.get(&id) else {
            return reply(StatusCode::NOT_FOUND, format!("unknown task `{id}`"));
        };
        if given.as_deref() != Some(record.token.as_str()) {
            let mut r = reply(
                StatusCode::UNAUTHORIZED,
                format!("send the task's token: `Authorization: Bearer ${TOKEN_VAR}`"),
            );
            r.headers_mut().insert(
                "www-authenticate",
                hyper::header::HeaderValue::from_static("Bearer"),
            );
            return r;
        }
        if req.method() == Method::GET {
            let mut r = reply(StatusCode::OK, "");
            *r.body_mut() = Full::new(Bytes::from(record_json(&id, record)));
            r.headers_mut().insert(
                CONTENT_TYPE,
                hyper::header::HeaderValue::from_static("application/json"),
            );
            return r;
        }
    }
    if req.method() != Method::PATCH {
        let mut r = reply(StatusCode::METHOD_NOT_ALLOWED, "use GET or PATCH");
        r.headers_mut()
            .insert(ALLOW, hyper::header::HeaderValue::from_static("GET, PATCH"));
        return r;
    }
    let too_large = || {
        reply(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the body is larger than {MAX_BODY} bytes"),
        )
    };
    if req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
        .is_some_and(|n| n > MAX_BODY as u64)
    {
        return too_large();
    }
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => return too_large(),
        Err(e) => {
            return reply(
                StatusCode::BAD_REQUEST,
                format!("cannot read the body: {e}"),
            );
        }
    };
    let patch = match parse_patch(&body, shared.max_message) {
        Ok(p) => p,
        Err(e) => return reply(StatusCode::BAD_REQUEST, e),
    };
    {
        let mut tasks = shared.tasks.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(record) = tasks.get_mut(&id) else {
            return reply(StatusCode::NOT_FOUND, format!("unknown task `{id}`"));
        };
        record.env.extend(patch.env);
    }
    shared.merge(&id, patch.progress, patch.message);
    reply(StatusCode::NO_CONTENT, "")
}

impl Shared {
    /// Records a task's progress and message (`None`: unchanged) and passes a change on.
    fn merge(&self, id: &str, progress: Option<u8>, message: Option<String>) {
        let change = {
            let mut tasks = self.tasks.lock().unwrap_or_else(PoisonError::into_inner);
            let Some(record) = tasks.get_mut(id) else {
                return;
            };
            let mut changed = false;
            if let Some(p) = progress
                && record.progress != Some(p)
            {
                record.progress = Some(p);
                changed = true;
            }
            if let Some(m) = message
                && record.message.as_ref() != Some(&m)
            {
                record.message = Some(m);
                changed = true;
            }
            changed.then(|| Progress {
                task_id: TaskId {
                    value: id.to_owned(),
                },
                progress: record.progress,
                message: record.message.clone(),
            })
        };
        if let Some(change) = change {
            let _ = self.changes.send(change);
        }
    }
}

#[derive(Debug, Default, PartialEq)]
struct Patch {
    progress: Option<u8>,
    message: Option<String>,
    env: Vec<(String, Option<String>)>,
}

/// Reads a PATCH body; the error names the key and what it should be.
fn parse_patch(body: &[u8], max_message: usize) -> Result<Patch, String> {
    let bad = |e: mesokit_proto::json::JsonError| format!("the body is not valid JSON: {e}");
    let mut p = Parser::new(body).map_err(bad)?;
    p.begin_object()
        .map_err(|_| "the body must be a JSON object with progress, message or env".to_owned())?;
    let mut patch = Patch::default();
    let mut first = true;
    while let Some(key) = p.next_key(&mut first).map_err(bad)? {
        match &*key {
            "progress" => {
                let v = p
                    .f64()
                    .ok()
                    .filter(|v| (0.0..=100.0).contains(v))
                    .ok_or("`progress` must be a number from 0 to 100")?;
                patch.progress = Some(v.round() as u8);
            }
            "message" => {
                let m = p.string().map_err(|_| "`message` must be a string")?;
                patch.message = Some(cut(m, max_message));
            }
            "env" => {
                p.begin_object().map_err(
                    |_| "`env` must be an object of variable names to strings (or null to unset)",
                )?;
                let mut first = true;
                while let Some(name) = p.next_key(&mut first).map_err(bad)? {
                    if name.is_empty() || name.contains('=') || name.contains('\0') {
                        return Err(format!("`env`: `{name}` is not a valid variable name"));
                    }
                    let value = if p.take_null() {
                        None
                    } else {
                        let v = p.string().map_err(|_| {
                            format!("`env.{name}` must be a string, or null to unset it")
                        })?;
                        if v.contains('\0') {
                            return Err(format!("`env.{name}` contains a NUL byte"));
                        }
                        Some(v)
                    };
                    patch.env.push((name.into_owned(), value));
                }
            }
            other => {
                return Err(format!(
                    "unknown key `{other}`: expected progress, message or env"
                ));
            }
        }
    }
    p.finish().map_err(bad)?;
    Ok(patch)
}

/// `message` cut to `max` characters, ending in `...` when cut (Cook's rule).
pub(crate) fn cut(message: String, max: usize) -> String {
    if message.chars().count() <= max {
        return message;
    }
    let keep = max.saturating_sub(3);
    let mut out: String = message.chars().take(keep).collect();
    out.push_str(&"..."[..max.min(3)]);
    out
}

fn record_json(id: &str, r: &Record) -> Vec<u8> {
    fn opt<T: std::fmt::Display>(v: Option<T>) -> String {
        v.map_or_else(|| "null".to_owned(), |v| v.to_string())
    }
    let codes = |list: &[Option<i32>]| {
        let items: Vec<String> = list.iter().map(|c| opt(*c)).collect();
        format!("[{}]", items.join(","))
    };
    format!(
        r#"{{"task_id":{},"exit_code":{},"before_codes":{},"after_codes":{},"progress":{},"message":{}}}"#,
        json_string(id),
        opt(r.exit_code),
        codes(&r.before_codes),
        codes(&r.after_codes),
        opt(r.progress),
        opt(r.message.as_deref().map(json_string)),
    )
    .into_bytes()
}

fn json_string(s: &str) -> String {
    let mut out = Vec::with_capacity(s.len() + 2);
    Writer::new(&mut out).string(s);
    String::from_utf8(out).unwrap_or_default()
}

/// The JSON of a progress update's `TaskStatus.data`: `{"progress": N, "message": "…"}`.
pub fn progress_json(progress: Option<u8>, message: Option<&str>) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    let mut w = Writer::new(&mut out);
    w.begin_object();
    if let Some(p) = progress {
        w.key("progress");
        w.u32(p.into());
    }
    if let Some(m) = message {
        w.key("message");
        w.string(m);
    }
    w.end_object();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patch_bodies() {
        let ok = parse_patch(
            br#"{"progress": 39.6, "message": "hi", "env": {"A": "1", "B": null}}"#,
            512,
        )
        .unwrap();
        assert_eq!(
            ok,
            Patch {
                progress: Some(40),
                message: Some("hi".into()),
                env: vec![("A".into(), Some("1".into())), ("B".into(), None)],
            }
        );
        let err = |b: &str| parse_patch(b.as_bytes(), 512).unwrap_err();
        assert!(err(r#"{"progress": 101}"#).contains("`progress` must be a number"));
        assert!(err(r#"{"progress": "x"}"#).contains("`progress`"));
        assert!(err(r#"{"message": 3}"#).contains("`message` must be a string"));
        assert!(err(r#"{"env": {"A": 1}}"#).contains("`env.A` must be a string"));
        assert!(err(r#"{"env": []}"#).contains("`env` must be an object"));
        assert!(err(r#"{"colour": 1}"#).contains("unknown key `colour`"));
        assert!(err(r#"[1]"#).contains("must be a JSON object"));
        assert!(err(r#"{"progress": 1"#).contains("not valid JSON"));
    }

    #[test]
    fn messages_are_cut_as_cook_does() {
        assert_eq!(cut("abcdef".into(), 6), "abcdef");
        assert_eq!(cut("abcdefg".into(), 6), "abc...");
        assert_eq!(cut("ééééé".into(), 4), "é...");
    }

    #[test]
    fn ids_survive_the_url() {
        let id = "web/1 ä?";
        assert_eq!(percent_decode(&percent_encode(id)).as_deref(), Some(id));
        assert_eq!(percent_decode("%zz"), None);
    }
}
