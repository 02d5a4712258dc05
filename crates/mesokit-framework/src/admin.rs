//! The admin HTTP API of a running scheduler (opt-in, 127.0.0.1 only):
//!
//! | request | answer |
//! |---|---|
//! | `GET /groups` | each group: instances and counts by state |
//! | `GET /tasks` | each instance: group, index, task id, state, agent, host, ports, health |
//! | `POST /groups/<name>/scale?instances=N` (or body `{"instances": N}`) | 202 |
//! | `POST /groups/<name>/restart` | rolling restart, 202 |
//! | `POST /tasks/<task id>/kill` | 202 |
//! | `POST /stop` | kill everything, then TEARDOWN; 202 |
//! | `GET /metrics` | Prometheus text format |
//! | `GET /health` | 200 when subscribed, 503 otherwise |
//!
//! Errors are plain text with a 4xx status that says what was wrong.

use std::convert::Infallible;
use std::fmt::Write as _;
use std::net::SocketAddr;

use bytes::Bytes;
use http::{Method, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use mesokit_proto::json::Writer;
use tokio::net::TcpListener;

use crate::core::Scheduler;
use crate::driver::Handle;

type Response = http::Response<Full<Bytes>>;

fn reply(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Response {
    let mut r = http::Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static(content_type),
    );
    r
}

fn text(status: StatusCode, msg: impl Into<String>) -> Response {
    reply(status, "text/plain; charset=utf-8", msg.into())
}

/// Binds 127.0.0.1:`port` (0 picks one) and serves the admin API until the runtime ends.
pub async fn serve(handle: Handle, port: u16) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(("127.0.0.1", port)).await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let handle = handle.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req| {
                    let handle = handle.clone();
                    async move { Ok::<_, Infallible>(route(&handle, req).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Ok(addr)
}

async fn route(handle: &Handle, req: http::Request<Incoming>) -> Response {
    let path = req.uri().path().trim_end_matches('/').to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let method = req.method().clone();
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    match (&method, parts.as_slice()) {
        (&Method::GET, ["groups"]) => json(handle.read(groups_json)),
        (&Method::GET, ["tasks"]) => json(handle.read(tasks_json)),
        (&Method::GET, ["metrics"]) => reply(
            StatusCode::OK,
            "text/plain; version=0.0.4",
            handle.read(metrics_text),
        ),
        (&Method::GET, ["health"]) => {
            if handle.read(|s| s.is_connected()) {
                text(StatusCode::OK, "subscribed")
            } else {
                text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "not subscribed to a master",
                )
            }
        }
        (&Method::POST, ["groups", group, "scale"]) => {
            let group = group.to_string();
            let body = match Limited::new(req.into_body(), 4096).collect().await {
                Ok(b) => b.to_bytes(),
                Err(e) => return text(StatusCode::PAYLOAD_TOO_LARGE, format!("body: {e}")),
            };
            let n = match instances_param(&query, &body) {
                Ok(n) => n,
                Err(e) => return text(StatusCode::BAD_REQUEST, e),
            };
            done(handle.scale(&group, n))
        }
        (&Method::POST, ["groups", group, "restart"]) => done(handle.restart(group)),
        (&Method::POST, ["tasks", task, "kill"]) => done(handle.kill(task)),
        (&Method::POST, ["stop"]) => {
            handle.stop();
            text(StatusCode::ACCEPTED, "stopping")
        }
        (_, ["groups"] | ["tasks"] | ["metrics"] | ["health"] | ["stop"])
        | (_, ["groups", _, "scale" | "restart"])
        | (_, ["tasks", _, "kill"]) => text(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("{method} is not allowed on {path}"),
        ),
        _ => text(StatusCode::NOT_FOUND, format!("no such endpoint: {path}")),
    }
}

fn done(r: Result<(), String>) -> Response {
    match r {
        Ok(()) => text(StatusCode::ACCEPTED, "accepted"),
        Err(e) => text(StatusCode::NOT_FOUND, e),
    }
}

/// `?instances=N` or a JSON body `{"instances": N}`.
fn instances_param(query: &str, body: &[u8]) -> Result<u32, String> {
    let raw = query
        .split('&')
        .find_map(|kv| kv.strip_prefix("instances="))
        .map(str::to_string)
        .or_else(|| {
            let text = std::str::from_utf8(body).ok()?;
            let after = text.split_once("\"instances\"")?.1;
            let value = after.trim_start().strip_prefix(':')?.trim_start();
            let end = value
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(value.len());
            Some(value[..end].to_string())
        })
        .ok_or("give the new count as ?instances=N or a JSON body {\"instances\": N}")?;
    raw.parse::<u32>()
        .map_err(|_| format!("instances must be a whole number >= 0, not {raw:?}"))
}

fn json(body: Vec<u8>) -> Response {
    reply(StatusCode::OK, "application/json", body)
}

fn groups_json(s: &Scheduler) -> Vec<u8> {
    let mut out = Vec::new();
    let mut w = Writer::new(&mut out);
    w.begin_array();
    for ((name, c), g) in s.counts().iter().zip(&s.job().groups) {
        w.begin_object();
        w.key("name");
        w.string(name);
        for (k, v) in [
            ("instances", g.instances),
            ("pending", c.pending),
            ("staging", c.staging),
            ("running", c.running),
            ("healthy", c.healthy),
            ("finished", c.finished),
            ("failed", c.failed),
            ("killed", c.killed),
            ("restarts", c.restarts),
        ] {
            w.key(k);
            w.u32(v);
        }
        w.end_object();
    }
    w.end_array();
    out
}

fn tasks_json(s: &Scheduler) -> Vec<u8> {
    let mut out = Vec::new();
    let mut w = Writer::new(&mut out);
    w.begin_array();
    for (r, healthy) in s.records() {
        w.begin_object();
        w.key("group");
        w.string(&r.group);
        w.key("index");
        w.u32(r.index);
        w.key("task_id");
        w.string(&r.task_id);
        w.key("phase");
        w.string(match r.phase {
            crate::core::Phase::Pending => "pending",
            crate::core::Phase::Launched => "launched",
            crate::core::Phase::Done => "done",
        });
        w.key("state");
        w.string(r.state.as_str_name());
        w.key("agent_id");
        w.string(&r.agent_id);
        w.key("hostname");
        w.string(&r.hostname);
        w.key("ports");
        w.begin_array();
        for p in &r.ports {
            w.u64(*p);
        }
        w.end_array();
        w.key("restarts");
        w.u32(r.restarts);
        if let Some(h) = healthy {
            w.key("healthy");
            w.bool(h);
        }
        w.end_object();
    }
    w.end_array();
    out
}

fn metrics_text(s: &Scheduler) -> String {
    let m = s.metrics();
    let mut t = String::new();
    let mut counter = |name: &str, help: &str, v: f64| {
        let _ = writeln!(t, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}");
    };
    counter(
        "mesokit_offers_received_total",
        "Offers received.",
        m.offers_received as f64,
    );
    counter(
        "mesokit_offers_declined_total",
        "Offers declined whole.",
        m.offers_declined as f64,
    );
    counter(
        "mesokit_tasks_launched_total",
        "Tasks launched.",
        m.tasks_launched as f64,
    );
    counter(
        "mesokit_status_updates_total",
        "Status updates received.",
        m.updates as f64,
    );
    counter(
        "mesokit_reconnects_total",
        "Subscriptions after the first.",
        m.resubscriptions as f64,
    );
    let _ = writeln!(
        t,
        "# HELP mesokit_tasks Tasks by state.\n# TYPE mesokit_tasks gauge"
    );
    for (group, c) in s.counts() {
        for (state, v) in [
            ("pending", c.pending),
            ("staging", c.staging),
            ("running", c.running),
            ("healthy", c.healthy),
            ("finished", c.finished),
            ("failed", c.failed),
            ("killed", c.killed),
        ] {
            let _ = writeln!(
                t,
                "mesokit_tasks{{group=\"{group}\",state=\"{state}\"}} {v}"
            );
        }
    }
    let _ = writeln!(
        t,
        "# HELP mesokit_launch_latency_seconds Launch to TASK_RUNNING.\n# TYPE mesokit_launch_latency_seconds histogram"
    );
    for (bound, n) in &m.launch_latency_buckets {
        let _ = writeln!(
            t,
            "mesokit_launch_latency_seconds_bucket{{le=\"{bound}\"}} {n}"
        );
    }
    let _ = writeln!(
        t,
        "mesokit_launch_latency_seconds_bucket{{le=\"+Inf\"}} {}\nmesokit_launch_latency_seconds_sum {}\nmesokit_launch_latency_seconds_count {}",
        m.launch_latency_count, m.launch_latency_sum, m.launch_latency_count
    );
    t
}

#[cfg(test)]
mod tests {
    use super::instances_param;

    #[test]
    fn scale_parameter() {
        assert_eq!(instances_param("instances=4", b""), Ok(4));
        assert_eq!(instances_param("", br#"{"instances": 7}"#), Ok(7));
        assert!(
            instances_param("instances=-1", b"")
                .unwrap_err()
                .contains("whole number")
        );
        assert!(
            instances_param("", b"{}")
                .unwrap_err()
                .contains("?instances=N")
        );
    }
}
