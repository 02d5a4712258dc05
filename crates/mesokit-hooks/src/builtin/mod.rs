//! The executor's built-in hooks and the chain that runs them, by name, in order.
//!
//! Names (for `MESOKIT_EXECUTOR_HOOKS` and a task's `hooks` label, comma-separated):
//!
//! * `command:<path>`: an external command with the Criteo contract ([`command`]);
//! * `consul`: registers the task in the local Consul agent once healthy ([`consul`]);
//! * `webhook` or `webhook:<http url>`: POSTs every event as JSON ([`webhook`]);
//! * `vaas`: registers the task as a Varnish-as-a-Service backend once healthy ([`vaas`]).
//!
//! Every hook run is bounded ([`Settings::timeout`]): one that hangs fails with an error saying
//! so, and its work (process tree, connection) is dropped.

pub mod command;
pub mod consul;
pub mod vaas;
pub mod webhook;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use mesokit_proto::resources::Resources;
use mesokit_proto::v1::TaskInfo;

use crate::events::{ChainResult, Event, HookEnv, HookError};
use crate::runner::Runner;

/// Default bound of one hook run.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Added to [`Settings::timeout`] for the bound of a whole hook run.
const OUTER_MARGIN: Duration = Duration::from_secs(1);

/// Label of a task naming its own hooks (after the executor's).
pub const TASK_LABEL: &str = "hooks";

/// The known names, for error messages.
pub const KNOWN: &str = "command:<path>, consul, webhook, webhook:<url>, vaas";

/// What the built-in hooks read: the executor's environment (Consul and VaaS addresses and
/// tokens, `CLOUD_PUBLIC_IP`, the webhook URL) and how to run commands.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The executor's environment.
    pub env: Vec<(String, String)>,
    /// Runs `command:` hooks.
    pub runner: Runner,
    /// Bound of one hook run.
    pub timeout: Duration,
}

impl Settings {
    /// Settings reading `env`, running commands with a default [`Runner`], with the default
    /// timeout.
    pub fn new(env: Vec<(String, String)>) -> Self {
        Settings {
            env,
            runner: Runner::default(),
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// The first of `names` that is set and not empty.
    pub(crate) fn var(&self, names: &[&str]) -> Option<String> {
        names.iter().find_map(|n| {
            self.env
                .iter()
                .find(|(k, v)| k == n && !v.is_empty())
                .map(|(_, v)| v.clone())
        })
    }
}

/// Splits a comma-separated list of hook names, checking each.
pub fn parse_names(list: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        check_name(name)?;
        out.push(name.to_owned());
    }
    Ok(out)
}

/// Whether `name` names a built-in hook; the error lists the known ones.
pub fn check_name(name: &str) -> Result<(), String> {
    match name.split_once(':') {
        None if matches!(name, "consul" | "webhook" | "vaas") => Ok(()),
        Some(("command", path)) if !path.is_empty() => Ok(()),
        Some(("webhook", url)) if !url.is_empty() => Ok(()),
        _ => Err(format!("unknown hook `{name}` (known: {KNOWN})")),
    }
}

/// The hook names of `task`: `executor`'s, then those of its `hooks` label not already there.
pub fn task_hooks(executor: &[String], task: &TaskInfo) -> Result<Vec<String>, String> {
    let mut names = executor.to_vec();
    if let Some(list) = label(task, TASK_LABEL) {
        for name in parse_names(list).map_err(|e| format!("label `{TASK_LABEL}`: {e}"))? {
            if !names.contains(&name) {
                names.push(name);
            }
        }
    }
    Ok(names)
}

/// One built-in hook.
#[derive(Debug)]
#[non_exhaustive]
pub enum Hook {
    /// `command:<path>`.
    Command(command::CommandHook),
    /// `consul`.
    Consul(consul::ConsulHook),
    /// `webhook`, `webhook:<url>`.
    Webhook(webhook::WebhookHook),
    /// `vaas`.
    Vaas(vaas::VaasHook),
}

impl Hook {
    /// The hook `name` ([`check_name`]) configured from `settings`.
    pub fn from_name(name: &str, settings: &Settings) -> Result<Hook, String> {
        check_name(name)?;
        Ok(match name.split_once(':') {
            Some(("command", path)) => Hook::Command(command::CommandHook::new(path, settings)),
            Some(("webhook", url)) => Hook::Webhook(webhook::WebhookHook::new(url, settings)?),
            _ => match name {
                "consul" => Hook::Consul(consul::ConsulHook::new(settings)),
                "vaas" => Hook::Vaas(vaas::VaasHook::new(settings)?),
                _ => Hook::Webhook(webhook::WebhookHook::from_env(settings)?),
            },
        })
    }

    /// Handles `event` for `task`: the environment to add, or what went wrong.
    pub async fn handle(&self, event: Event, task: &TaskInfo) -> Result<HookEnv, String> {
        match self {
            Hook::Command(h) => h.handle(event, task).await,
            Hook::Consul(h) => h.handle(event, task).await.map(|()| Vec::new()),
            Hook::Webhook(h) => h.handle(event, task).await.map(|()| Vec::new()),
            Hook::Vaas(h) => h.handle(event, task).await.map(|()| Vec::new()),
        }
    }
}

/// The hooks of an executor, built on first use by name and kept (the Consul and VaaS hooks
/// remember what they registered). Cheap to clone.
#[derive(Debug, Clone)]
pub struct Chain {
    settings: Arc<Settings>,
    built: Arc<Mutex<HashMap<String, Arc<Hook>>>>,
}

impl Chain {
    /// A chain building its hooks from `settings`.
    pub fn new(settings: Settings) -> Self {
        Chain {
            settings: Arc::new(settings),
            built: Arc::default(),
        }
    }

    fn hook(&self, name: &str) -> Result<Arc<Hook>, String> {
        let mut built = self.built.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(h) = built.get(name) {
            return Ok(h.clone());
        }
        let hook = Arc::new(Hook::from_name(name, &self.settings)?);
        built.insert(name.to_owned(), hook.clone());
        Ok(hook)
    }

    /// Runs the hooks `names` for `event`, in order, each within the timeout. When the
    /// event's errors matter the first error stops the chain; otherwise each is logged and the
    /// chain goes on.
    pub async fn run(&self, names: &[String], event: Event, task: &TaskInfo) -> ChainResult {
        let mut result = ChainResult::default();
        for name in names {
            let outcome = match self.hook(name) {
                Ok(hook) => {
                    // A command's own timeout (with its kill) comes first; this bounds the rest.
                    let bound = self.settings.timeout + crate::runner::KILL_GRACE + OUTER_MARGIN;
                    match tokio::time::timeout(bound, hook.handle(event, task)).await {
                        Ok(r) => r,
                        Err(_) => Err(format!(
                            "no answer within {bound:?}: given up (the hook was stopped)"
                        )),
                    }
                }
                Err(e) => Err(e),
            };
            match outcome {
                Ok(env) => result.env.extend(env),
                Err(reason) => {
                    let error = HookError {
                        hook: name.clone(),
                        event,
                        reason,
                    };
                    tracing::warn!(task_id = %task.task_id.value, %error, "hook failed");
                    result.errors.push(error);
                    if event.errors_matter() {
                        break;
                    }
                }
            }
        }
        result
    }
}

/// The value of `task`'s label `key`, if any (empty for a label without value).
pub(crate) fn label<'a>(task: &'a TaskInfo, key: &str) -> Option<&'a str> {
    task.labels
        .iter()
        .flat_map(|l| &l.labels)
        .find(|l| l.key == key)
        .map(|l| l.value.as_deref().unwrap_or(""))
}

/// The keys of `task`'s labels whose value is `tag`, in order.
pub(crate) fn tag_labels(task: &TaskInfo) -> Vec<String> {
    task.labels
        .iter()
        .flat_map(|l| &l.labels)
        .filter(|l| l.value.as_deref() == Some("tag"))
        .map(|l| l.key.clone())
        .collect()
}

/// The task's first port: of `discovery.ports`, else of its `ports` resources.
pub(crate) fn first_port(task: &TaskInfo) -> Option<u32> {
    let discovered = task
        .discovery
        .as_ref()
        .and_then(|d| d.ports.as_ref())
        .and_then(|p| p.ports.first())
        .map(|p| p.number);
    discovered.or_else(|| {
        let ranges = Resources::from_vec(task.resources.clone()).ranges("ports");
        ranges.first().and_then(|(b, _)| u32::try_from(*b).ok())
    })
}

/// `s` percent-encoded for a URL path segment or query value.
pub(crate) fn encode(s: &str) -> String {
    use std::fmt::Write as _;
    s.bytes().fold(String::new(), |mut out, b| {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
        out
    })
}

/// A JSON string literal.
pub(crate) fn json_string(s: &str) -> String {
    let mut out = Vec::with_capacity(s.len() + 2);
    mesokit_proto::json::Writer::new(&mut out).string(s);
    String::from_utf8(out).unwrap_or_default()
}

/// An HTTP response: status and body.
#[derive(Debug)]
pub(crate) struct Response {
    pub(crate) status: u16,
    pub(crate) body: Bytes,
}

impl Response {
    pub(crate) fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The start of the body, for error messages.
    pub(crate) fn text(&self) -> String {
        let t = String::from_utf8_lossy(&self.body);
        t.trim().chars().take(300).collect()
    }
}

/// Largest response body read.
const MAX_RESPONSE: usize = 1 << 20;

/// One HTTP/1.1 request over a new plain-TCP connection. `url` is `http://host:port/path` or
/// `host:port/path` (Consul's `CONSUL_HTTP_ADDR` style). The callers' hook timeout bounds it.
pub(crate) async fn http(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<Vec<u8>>,
) -> Result<Response, String> {
    let rest = if let Some(r) = url.strip_prefix("http://") {
        r
    } else if url.starts_with("https://") {
        return Err(format!(
            "{url}: https is not supported by the built-in hooks (use http to a local agent or proxy)"
        ));
    } else {
        url
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let addr = if authority.contains(':') {
        authority.to_owned()
    } else {
        format!("{authority}:80")
    };
    let stream = tokio::net::TcpStream::connect(&addr)
        .await
        .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| format!("{addr}: {e}"))?;
    let conn = tokio::spawn(conn);
    let mut req = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header(hyper::header::HOST, authority);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let has_body = body.is_some();
    let req = req
        .header(
            hyper::header::CONTENT_TYPE,
            if has_body {
                "application/json"
            } else {
                "text/plain"
            },
        )
        .body(Full::new(Bytes::from(body.unwrap_or_default())))
        .map_err(|e| format!("{method} {url}: bad request: {e}"))?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| format!("{method} {url}: {e}"))?;
    let status = resp.status().as_u16();
    let body = Limited::new(resp.into_body(), MAX_RESPONSE)
        .collect()
        .await
        .map_err(|e| format!("{method} {url}: reading the response: {e}"))?
        .to_bytes();
    conn.abort();
    Ok(Response { status, body })
}

#[cfg(test)]
mod tests {
    use super::*;
    use mesokit_proto::helpers::TaskBuilder;

    #[test]
    fn names() {
        assert_eq!(
            parse_names(" consul, command:/bin/hook ,webhook:http://x/y,,vaas").unwrap(),
            ["consul", "command:/bin/hook", "webhook:http://x/y", "vaas"]
        );
        assert_eq!(
            parse_names("consul,consol").unwrap_err(),
            format!("unknown hook `consol` (known: {KNOWN})")
        );
        assert!(check_name("command:").is_err());
    }

    #[test]
    fn task_hooks_follow_the_executors_without_repeats() {
        let task = TaskBuilder::new("web", "w1", "a")
            .label(TASK_LABEL, "webhook,consul")
            .build();
        assert_eq!(
            task_hooks(&["consul".into()], &task).unwrap(),
            ["consul", "webhook"]
        );
        let bad = TaskBuilder::new("web", "w1", "a")
            .label(TASK_LABEL, "nope")
            .build();
        assert!(
            task_hooks(&[], &bad)
                .unwrap_err()
                .starts_with("label `hooks`: unknown hook `nope`")
        );
    }

    #[test]
    fn ports_and_tags() {
        let task = TaskBuilder::new("web", "w1", "a")
            .ports(&[31002, 31001])
            .label("frontend", "tag")
            .label("consul", "web")
            .build();
        assert_eq!(first_port(&task), Some(31001));
        assert_eq!(tag_labels(&task), ["frontend"]);
        assert_eq!(label(&task, "consul"), Some("web"));
    }
}
