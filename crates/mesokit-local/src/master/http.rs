//! The master's HTTP front: the scheduler API (`/api/v1/scheduler`, `/master/api/v1/scheduler`)
//! and the read endpoints, under both the bare and the `/master/` paths as libprocess
//! delegation serves them.

// Checks return the ready error `Response` (see crate::http).
#![allow(clippy::result_large_err)]

use bytes::Bytes;
use http::{HeaderValue, StatusCode, header};
use mesokit_proto::v1::{master, scheduler};
use mesokit_proto::{Message, json};

use super::actor::{MasterHandle, Read, ReadResult};
use super::{CallOk, MESOS_VERSION};
use crate::http::{self as h, Media, Request, Response};

/// Routes one request.
pub(crate) async fn handle(m: MasterHandle, req: Request) -> Response {
    let path = req.uri().path().to_owned();
    let path = path
        .strip_prefix("/master")
        .filter(|p| p.starts_with('/'))
        .unwrap_or(&path);
    match path {
        "/api/v1/scheduler" => scheduler_api(m, req).await,
        "/api/v1" => operator_api(m, req).await,
        "/state" | "/state.json" => read_json(&m, Read::State).await,
        "/frameworks" | "/frameworks.json" => {
            let framework_id = param(&req, "framework_id");
            read_json(&m, Read::Frameworks { framework_id }).await
        }
        "/tasks" | "/tasks.json" => {
            let limit = param(&req, "limit")
                .and_then(|v| v.parse().ok())
                .unwrap_or(100);
            let offset = param(&req, "offset")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let descending = param(&req, "order").as_deref() != Some("asc");
            let framework_id = param(&req, "framework_id");
            let task_id = param(&req, "task_id");
            read_json(
                &m,
                Read::Tasks {
                    limit,
                    offset,
                    descending,
                    framework_id,
                    task_id,
                },
            )
            .await
        }
        "/metrics/snapshot" => match m.read(Read::Metrics).await {
            Some(ReadResult::Metrics(list)) => h::json(metrics_json(&list)),
            _ => unavailable(),
        },
        "/health" => h::empty(StatusCode::OK),
        "/version" => h::json(version_json()),
        "/redirect" => match m.read(Read::MasterInfo).await {
            Some(ReadResult::MasterInfo(mi)) => {
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
            _ => unavailable(),
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

async fn read_json(m: &MasterHandle, what: Read) -> Response {
    match m.read(what).await {
        Some(ReadResult::Json(s)) => h::json(s),
        _ => unavailable(),
    }
}

fn version_json() -> String {
    format!(
        r#"{{"version":"{MESOS_VERSION}","build_date":"mesokit","build_time":0.0,"build_user":"mesokit","git_tag":"mesokit-{}"}}"#,
        env!("CARGO_PKG_VERSION")
    )
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

/// The operator API: the calls a tool needs to find its way (`GET_HEALTH`, `GET_VERSION`,
/// `GET_MASTER`, `GET_METRICS`); the others are answered 501 until they are implemented.
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
    let mut out = master::Response::default();
    match C::try_from(call.r#type.unwrap_or(0)).unwrap_or(C::Unknown) {
        C::GetHealth => {
            out.r#type = Some(R::GetHealth as i32);
            out.get_health = Some(r::GetHealth { healthy: true });
        }
        C::GetVersion => {
            out.r#type = Some(R::GetVersion as i32);
            out.get_version = Some(r::GetVersion {
                version_info: mesokit_proto::v1::VersionInfo {
                    version: MESOS_VERSION.into(),
                    build_user: Some("mesokit".into()),
                    git_tag: Some(format!("mesokit-{}", env!("CARGO_PKG_VERSION"))),
                    ..Default::default()
                },
            });
        }
        C::GetMaster => match m.read(Read::MasterInfo).await {
            Some(ReadResult::MasterInfo(mi)) => {
                out.r#type = Some(R::GetMaster as i32);
                out.get_master = Some(r::GetMaster {
                    master_info: Some(mi),
                    ..Default::default()
                });
            }
            _ => return unavailable(),
        },
        C::GetMetrics => match m.read(Read::Metrics).await {
            Some(ReadResult::Metrics(list)) => {
                out.r#type = Some(R::GetMetrics as i32);
                out.get_metrics = Some(r::GetMetrics {
                    metrics: list
                        .into_iter()
                        .map(|(name, value)| mesokit_proto::v1::Metric {
                            name,
                            value: Some(value),
                        })
                        .collect(),
                });
            }
            _ => return unavailable(),
        },
        C::Unknown => return h::text(StatusCode::NOT_IMPLEMENTED, "Unknown call type"),
        other => {
            return h::text(
                StatusCode::NOT_IMPLEMENTED,
                format!(
                    "{} is not implemented by mesokit local",
                    other.as_str_name()
                ),
            );
        }
    }
    let bytes = match accept {
        Media::Json => json::encode(&out),
        Media::Protobuf => out.encode_to_vec(),
    };
    h::bytes(StatusCode::OK, accept.as_str(), bytes)
}
