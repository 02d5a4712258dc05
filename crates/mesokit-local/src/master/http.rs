//! The master's HTTP front: the scheduler API (`/api/v1/scheduler`, `/master/api/v1/scheduler`)
//! and the read endpoints, under both the bare and the `/master/` paths as libprocess
//! delegation serves them.

// Checks return the ready error `Response` (see crate::http).
#![allow(clippy::result_large_err)]

use bytes::Bytes;
use http::{HeaderValue, StatusCode, header};
use mesokit_proto::v1::{master, scheduler};
use mesokit_proto::{Message, json};

use super::actor::MasterHandle;
use super::{CallOk, Master};
use crate::http::{self as h, Media, Request, Response};

/// Routes one request.
pub(crate) async fn handle(m: MasterHandle, req: Request) -> Response {
    let path = req.uri().path().to_owned();
    let path = path
        .strip_prefix("/master")
        .filter(|p| p.starts_with('/'))
        .unwrap_or(&path);
    let path = path.strip_suffix(".json").unwrap_or(path);
    let q = |name: &str| param(&req, name);
    match path {
        "/api/v1/scheduler" => scheduler_api(m, req).await,
        "/api/v1" => operator_api(m, req).await,
        "/state" => read_json(&m, |m, now| m.state_json(now)).await,
        "/state-summary" => read_json(&m, |m, _| m.state_summary_json()).await,
        "/slaves" => read_json(&m, |m, _| m.slaves_json()).await,
        "/roles" => read_json(&m, |m, _| m.roles_json()).await,
        "/flags" => read_json(&m, |m, _| m.flags_json()).await,
        "/frameworks" => {
            let framework_id = q("framework_id");
            read_json(&m, move |m, _| m.frameworks_json(framework_id.as_deref())).await
        }
        "/tasks" => {
            let limit = q("limit").and_then(|v| v.parse().ok()).unwrap_or(100);
            let offset = q("offset").and_then(|v| v.parse().ok()).unwrap_or(0);
            let descending = q("order").as_deref() != Some("asc");
            let (framework_id, task_id) = (q("framework_id"), q("task_id"));
            read_json(&m, move |m, _| {
                m.tasks_json(
                    limit,
                    offset,
                    descending,
                    framework_id.as_deref(),
                    task_id.as_deref(),
                )
            })
            .await
        }
        "/metrics/snapshot" => match m.with(|m, _| m.metrics()).await {
            Some(list) => h::json(metrics_json(&list)),
            None => unavailable(),
        },
        "/health" => h::empty(StatusCode::OK),
        "/version" => h::json(crate::version::version_json()),
        "/teardown" => teardown_form(m, req).await,
        "/redirect" => match m.with(|m, _| m.master_info()).await {
            Some(mi) => {
                let host = mi
                    .address
                    .as_ref()
                    .and_then(|a| a.ip.clone())
                    .unwrap_or_default();
                let mut r = h::empty(StatusCode::TEMPORARY_REDIRECT);
                let loc = format!("//{host}:{}", mi.port);
                r.headers_mut().insert(
                    header::LOCATION,
                    HeaderValue::from_str(&loc).unwrap_or(HeaderValue::from_static("/")),
                );
                r
            }
            None => unavailable(),
        },
        _ => h::text(StatusCode::NOT_FOUND, ""),
    }
}

fn param(req: &Request, name: &str) -> Option<String> {
    h::query(req)
        .into_iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
}

fn unavailable() -> Response {
    h::text(StatusCode::SERVICE_UNAVAILABLE, "Master is shutting down")
}

async fn read_json(
    m: &MasterHandle,
    f: impl FnOnce(&mut Master, std::time::Instant) -> String + Send + 'static,
) -> Response {
    match m.with(f).await {
        Some(s) => h::json(s),
        None => unavailable(),
    }
}

/// `POST /master/teardown` with the form body `frameworkId=<id>`.
async fn teardown_form(m: MasterHandle, req: Request) -> Response {
    if let Err(r) = h::require_post(&req) {
        return r;
    }
    let body = match h::read_body(req, h::MAX_BODY).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let form = h::parse_form(&String::from_utf8_lossy(&body));
    let Some(id) = form
        .into_iter()
        .find(|(k, _)| k == "frameworkId")
        .map(|(_, v)| v)
    else {
        return h::text(
            StatusCode::BAD_REQUEST,
            "Missing 'frameworkId' query parameter",
        );
    };
    teardown(&m, id).await
}

async fn teardown(m: &MasterHandle, framework_id: String) -> Response {
    match m.with(move |m, now| m.teardown(now, &framework_id)).await {
        Some(Ok(())) => h::empty(StatusCode::OK),
        Some(Err(e)) => h::text(status(e.status), e.message),
        None => unavailable(),
    }
}

fn metrics_json(list: &[(String, f64)]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut w = json::Writer::new(&mut out);
    w.begin_object();
    for (k, v) in list {
        w.map_key(k);
        w.f64(*v);
    }
    w.end_object();
    out
}

fn status(code: u16) -> StatusCode {
    StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

/// Decodes a call body in the request's encoding, with Mesos's error texts.
fn decode_call<T: json::MesosJson + Message + Default>(
    media: Media,
    body: &Bytes,
    what: &str,
) -> Result<T, Response> {
    match media {
        Media::Json => json::decode(body).map_err(|e| {
            h::text(
                StatusCode::BAD_REQUEST,
                format!("Failed to convert JSON into {what} protobuf: {e}"),
            )
        }),
        Media::Protobuf => T::decode(body.clone()).map_err(|e| {
            h::text(
                StatusCode::BAD_REQUEST,
                format!("Failed to parse body into {what} protobuf: {e}"),
            )
        }),
    }
}

async fn scheduler_api(m: MasterHandle, req: Request) -> Response {
    if let Err(r) = h::require_post(&req) {
        return r;
    }
    let media = match h::content_type(&req) {
        Ok(m) => m,
        Err(r) => return r,
    };
    let accept = h::accept(&req);
    let stream_id = req
        .headers()
        .get("Mesos-Stream-Id")
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let body = match h::read_body(req, h::MAX_BODY).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let call: scheduler::Call = match decode_call(media, &body, "Call") {
        Ok(c) => c,
        Err(r) => return r,
    };
    if call.r#type == Some(scheduler::call::Type::Subscribe as i32) {
        let accept = match accept {
            Ok(a) => a,
            Err(r) => return r,
        };
        if stream_id.is_some() {
            return h::text(
                StatusCode::BAD_REQUEST,
                "Subscribe calls should not include the 'Mesos-Stream-Id' header",
            );
        }
        return match m.subscribe(call, accept).await {
            Ok((sub, rx, guard)) => {
                let mut r = h::stream_unbounded(accept, rx, Box::new(guard));
                if let Ok(v) = HeaderValue::from_str(&sub.stream_id) {
                    r.headers_mut().insert("Mesos-Stream-Id", v);
                }
                r
            }
            Err(e) => h::text(status(e.status), e.message),
        };
    }
    let call = match m.modules.clone() {
        Some(hooks) if call.r#type == Some(scheduler::call::Type::Accept as i32) => {
            decorate_launches(&m, &hooks, call).await
        }
        _ => call,
    };
    match m.call(stream_id, call).await {
        Ok(CallOk::Accepted) => h::empty(StatusCode::ACCEPTED),
        Ok(CallOk::Ok(body)) => {
            let mut r = h::empty(StatusCode::OK);
            *r.body_mut() = h::full(body);
            r
        }
        Err(e) => h::text(status(e.status), e.message),
    }
}

/// The operator API (`POST /api/v1`): the read calls a tool needs and TEARDOWN, answered from
/// the master's bookkeeping; other calls get 501.
async fn operator_api(m: MasterHandle, req: Request) -> Response {
    use master::{call::Type as C, response as r, response::Type as R};
    if let Err(resp) = h::require_post(&req) {
        return resp;
    }
    let media = match h::content_type(&req) {
        Ok(m) => m,
        Err(resp) => return resp,
    };
    let accept = match h::accept(&req) {
        Ok(a) => a,
        Err(resp) => return resp,
    };
    let body = match h::read_body(req, h::MAX_BODY).await {
        Ok(b) => b,
        Err(resp) => return resp,
    };
    let call: master::Call = match decode_call(media, &body, "master::Call") {
        Ok(c) => c,
        Err(resp) => return resp,
    };
    let ty = C::try_from(call.r#type.unwrap_or(0)).unwrap_or(C::Unknown);
    let mut out = master::Response::default();
    let filled = match ty {
        C::GetHealth => {
            out.get_health = Some(r::GetHealth { healthy: true });
            Some(R::GetHealth)
        }
        C::GetVersion => {
            out.get_version = Some(r::GetVersion {
                version_info: crate::version::version_info(),
            });
            Some(R::GetVersion)
        }
        C::Teardown => {
            return match call.teardown {
                Some(t) => teardown(&m, t.framework_id.value).await,
                None => h::text(
                    StatusCode::BAD_REQUEST,
                    "Expecting 'teardown' to be present",
                ),
            };
        }
        C::Unknown => return h::text(StatusCode::NOT_IMPLEMENTED, "Unknown call type"),
        C::GetMaster
        | C::GetMetrics
        | C::GetState
        | C::GetAgents
        | C::GetFrameworks
        | C::GetExecutors
        | C::GetTasks => {
            let Some(o) = m
                .with(move |m, _| {
                    let mut o = master::Response::default();
                    let t = match ty {
                        C::GetMaster => {
                            o.get_master = Some(m.get_master());
                            R::GetMaster
                        }
                        C::GetMetrics => {
                            o.get_metrics = Some(r::GetMetrics {
                                metrics: m
                                    .metrics()
                                    .into_iter()
                                    .map(|(name, value)| mesokit_proto::v1::Metric {
                                        name,
                                        value: Some(value),
                                    })
                                    .collect(),
                            });
                            R::GetMetrics
                        }
                        C::GetState => {
                            o.get_state = Some(Box::new(m.get_state()));
                            R::GetState
                        }
                        C::GetAgents => {
                            o.get_agents = Some(m.get_agents());
                            R::GetAgents
                        }
                        C::GetFrameworks => {
                            o.get_frameworks = Some(m.get_frameworks());
                            R::GetFrameworks
                        }
                        C::GetExecutors => {
                            o.get_executors = Some(m.get_executors());
                            R::GetExecutors
                        }
                        _ => {
                            o.get_tasks = Some(m.get_tasks());
                            R::GetTasks
                        }
                    };
                    o.r#type = Some(t as i32);
                    o
                })
                .await
            else {
                return unavailable();
            };
            out = o;
            None
        }
        other => {
            return h::text(
                StatusCode::NOT_IMPLEMENTED,
                format!(
                    "{} is not implemented by mesokit local",
                    other.as_str_name()
                ),
            );
        }
    };
    if let Some(t) = filled {
        out.r#type = Some(t as i32);
    }
    let bytes = match accept {
        Media::Json => json::encode(&out),
        Media::Protobuf => out.encode_to_vec(),
    };
    h::bytes(StatusCode::OK, accept.as_str(), bytes)
}

/// The master's launch-task hooks (mesokit extensions of the Criteo hook): the label and
/// resource decorators run on every task of an ACCEPT's LAUNCH and LAUNCH_GROUP operations
/// before the master sees it; an answer replaces the task's labels or resources. Errors are
/// logged and change nothing.
async fn decorate_launches(
    m: &MasterHandle,
    hooks: &mesokit_hooks::agent::CommandModules,
    mut call: scheduler::Call,
) -> scheduler::Call {
    use mesokit_hooks::modules::Method;
    let labels = hooks.has(Method::MasterLaunchTaskLabelDecorator);
    let resources = hooks.has(Method::MasterLaunchTaskResourceDecorator);
    let Some(accept) = call.accept.as_mut() else {
        return call;
    };
    if !labels && !resources {
        return call;
    }
    let Some(offer_id) = accept.offer_ids.first().map(|o| o.value.clone()) else {
        return call;
    };
    let fid = call
        .framework_id
        .clone()
        .map(|f| f.value)
        .unwrap_or_default();
    let found = m
        .with(move |master, _| {
            let framework = master.frameworks.get(&fid)?.info.clone();
            let agent_id = &master.offers.get(&offer_id)?.offer.agent_id.value;
            let agent = master.agents.get(agent_id)?;
            Some((framework, agent.info.clone()))
        })
        .await
        .flatten();
    // Unknown framework or offer: the master refuses the call; nothing to decorate.
    let Some((framework, agent)) = found else {
        return call;
    };
    for op in &mut accept.operations {
        let tasks: Vec<&mut mesokit_proto::v1::TaskInfo> =
            match (&mut op.launch, &mut op.launch_group) {
                (Some(l), _) => l.task_infos.iter_mut().collect(),
                (None, Some(g)) => g.task_group.tasks.iter_mut().collect(),
                (None, None) => continue,
            };
        for task in tasks {
            if labels && let Some(l) = hooks.decorate_master_labels(task, &framework, &agent).await
            {
                task.labels = Some(l);
            }
            if resources
                && let Some(r) = hooks
                    .decorate_master_resources(task, &agent.resources)
                    .await
            {
                task.resources = r;
            }
        }
    }
    call
}
