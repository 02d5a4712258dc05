//! The agent's v1 operator API (`POST /api/v1`, `/slave(1)/api/v1`): the read calls
//! (`GET_HEALTH`, `GET_FLAGS`, `GET_VERSION`, `GET_METRICS`, `GET_STATE`, `GET_CONTAINERS`,
//! `GET_FRAMEWORKS`, `GET_EXECUTORS`, `GET_TASKS`, `GET_AGENT`, `LIST_FILES`, `READ_FILE`).
//! Container calls (launch, attach, wait, kill) and resource providers answer 501.

// Handlers return finished error responses, as `crate::http` does.
#![allow(clippy::result_large_err)]

use std::io::{Read, Seek, SeekFrom};

use ::http::StatusCode;
use mesokit_proto::v1::agent::{Call, Response, call, response};
use mesokit_proto::v1::{
    self, ContainerId, ContainerStatus, ExecutorId, FileInfo, Flag, Metric, TaskState, TimeInfo,
};
use tokio::sync::oneshot;

use super::Input;
use super::core::{AgentCore, Executor, Task};
use super::endpoints::{self, Ctx};
use crate::http::{self, Media, Request, text};

async fn ask<T: Send + 'static>(
    ctx: &Ctx,
    f: impl FnOnce(&AgentCore) -> T + Send + 'static,
) -> Option<T> {
    let (tx, rx) = oneshot::channel();
    let q: super::Query = Box::new(move |a: &AgentCore| {
        let _ = tx.send(f(a));
    });
    ctx.tx.send(Input::Query(q)).ok()?;
    rx.await.ok()
}

fn reply(ty: response::Type) -> Response {
    Response {
        r#type: Some(ty as i32),
        ..Default::default()
    }
}

/// Handles one operator call.
pub(crate) async fn handle(ctx: &Ctx, req: Request) -> http::Response {
    if let Err(r) = http::require_post(&req) {
        return r;
    }
    let media = match http::content_type(&req) {
        Ok(m) => m,
        Err(r) => return r,
    };
    let accept = match http::accept(&req) {
        Ok(m) => m,
        Err(r) => return r,
    };
    let body = match http::read_body(req, http::MAX_BODY).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let c: Call = match media {
        Media::Json => match mesokit_proto::json::decode(&body) {
            Ok(c) => c,
            Err(e) => {
                return text(
                    StatusCode::BAD_REQUEST,
                    format!("Failed to convert JSON into Call protobuf: {e}"),
                );
            }
        },
        Media::Protobuf => match <Call as mesokit_proto::Message>::decode(body) {
            Ok(c) => c,
            Err(_) => {
                return text(
                    StatusCode::BAD_REQUEST,
                    "Failed to parse body into Call protobuf",
                );
            }
        },
    };
    let Some(ty) = c.r#type else {
        return text(
            StatusCode::BAD_REQUEST,
            "Failed to validate agent::Call: Expecting 'type' to be present",
        );
    };
    let result = match call::Type::try_from(ty) {
        Ok(call::Type::GetHealth) => {
            let mut r = reply(response::Type::GetHealth);
            r.get_health = Some(response::GetHealth { healthy: true });
            Ok(r)
        }
        Ok(call::Type::GetFlags) => {
            let mut r = reply(response::Type::GetFlags);
            r.get_flags = Some(response::GetFlags {
                flags: endpoints::flags(&ctx.config)
                    .into_iter()
                    .map(|(name, value)| Flag {
                        name: name.to_owned(),
                        value: Some(value),
                    })
                    .collect(),
            });
            Ok(r)
        }
        Ok(call::Type::GetVersion) => {
            let mut r = reply(response::Type::GetVersion);
            r.get_version = Some(response::GetVersion {
                version_info: crate::version::version_info(),
            });
            Ok(r)
        }
        Ok(call::Type::GetMetrics) => ask(ctx, |a| {
            let mut r = reply(response::Type::GetMetrics);
            r.get_metrics = Some(response::GetMetrics {
                metrics: endpoints::metrics(a)
                    .into_iter()
                    .map(|(name, value)| Metric {
                        name,
                        value: Some(value),
                    })
                    .collect(),
            });
            r
        })
        .await
        .ok_or(()),
        Ok(call::Type::GetState) => ask(ctx, |a| {
            let mut r = reply(response::Type::GetState);
            r.get_state = Some(response::GetState {
                get_tasks: Some(tasks(a)),
                get_executors: Some(executors(a)),
                get_frameworks: Some(frameworks(a)),
            });
            r
        })
        .await
        .ok_or(()),
        Ok(call::Type::GetFrameworks) => ask(ctx, |a| {
            let mut r = reply(response::Type::GetFrameworks);
            r.get_frameworks = Some(frameworks(a));
            r
        })
        .await
        .ok_or(()),
        Ok(call::Type::GetExecutors) => ask(ctx, |a| {
            let mut r = reply(response::Type::GetExecutors);
            r.get_executors = Some(executors(a));
            r
        })
        .await
        .ok_or(()),
        Ok(call::Type::GetTasks) => ask(ctx, |a| {
            let mut r = reply(response::Type::GetTasks);
            r.get_tasks = Some(tasks(a));
            r
        })
        .await
        .ok_or(()),
        Ok(call::Type::GetContainers) => ask(ctx, |a| {
            let mut r = reply(response::Type::GetContainers);
            r.get_containers = Some(containers(a));
            r
        })
        .await
        .ok_or(()),
        Ok(call::Type::GetAgent) => {
            let mut r = reply(response::Type::GetAgent);
            r.get_agent = Some(response::GetAgent {
                agent_info: Some(ctx.config.agent_info()),
                ..Default::default()
            });
            Ok(r)
        }
        Ok(call::Type::ListFiles) => {
            let Some(l) = c.list_files else {
                return text(
                    StatusCode::BAD_REQUEST,
                    "Failed to validate agent::Call: Expecting 'list_files' to be present",
                );
            };
            match list_files(ctx, &l.path) {
                Ok(r) => Ok(r),
                Err(resp) => return resp,
            }
        }
        Ok(call::Type::ReadFile) => {
            let Some(rf) = c.read_file else {
                return text(
                    StatusCode::BAD_REQUEST,
                    "Failed to validate agent::Call: Expecting 'read_file' to be present",
                );
            };
            match read_file(ctx, &rf) {
                Ok(r) => Ok(r),
                Err(resp) => return resp,
            }
        }
        Ok(call::Type::Unknown) | Err(_) => {
            return text(StatusCode::NOT_IMPLEMENTED, "Unknown call type");
        }
        Ok(other) => {
            return text(
                StatusCode::NOT_IMPLEMENTED,
                format!("{} is not supported by this agent", other.as_str_name()),
            );
        }
    };
    let Ok(r) = result else {
        return text(StatusCode::SERVICE_UNAVAILABLE, "Agent is shutting down");
    };
    let body = match accept {
        Media::Json => mesokit_proto::json::encode(&r),
        Media::Protobuf => mesokit_proto::Message::encode_to_vec(&r),
    };
    http::bytes(StatusCode::OK, accept.as_str(), body)
}

fn v1_task(a: &AgentCore, e: &Executor, t: &Task) -> v1::Task {
    v1::Task {
        name: t.info.name.clone(),
        task_id: t.info.task_id.clone(),
        framework_id: e.info.framework_id.clone().unwrap_or_default(),
        executor_id: (!e.command).then(|| e.info.executor_id.clone()),
        agent_id: a.config.id.clone(),
        state: t.state as i32,
        resources: t.info.resources.clone(),
        statuses: t.statuses.clone(),
        labels: t.info.labels.clone(),
        discovery: t.info.discovery.clone(),
        container: t.info.container.clone(),
        health_check: t.info.health_check.clone(),
        kill_policy: t.info.kill_policy,
        limits: t.info.limits.clone(),
        ..Default::default()
    }
}

fn all_executors(a: &AgentCore) -> impl Iterator<Item = (&Executor, bool)> {
    a.frameworks
        .values()
        .chain(a.completed_frameworks.iter())
        .flat_map(|f| {
            f.executors
                .values()
                .map(|e| (e, true))
                .chain(f.completed_executors.iter().map(|e| (e, false)))
        })
}

fn tasks(a: &AgentCore) -> response::GetTasks {
    let mut r = response::GetTasks::default();
    for (e, _) in all_executors(a) {
        for p in &e.queued {
            for info in p.tasks() {
                let t = Task {
                    info: info.clone(),
                    state: TaskState::TaskStaging,
                    statuses: Vec::new(),
                };
                r.queued_tasks.push(v1_task(a, e, &t));
            }
        }
        r.launched_tasks
            .extend(e.launched.values().map(|t| v1_task(a, e, t)));
        for t in &e.completed {
            let fid = e.info.framework_id.clone().unwrap_or_default();
            // Terminal, but the update is not acknowledged yet: "terminated".
            if a.has_update_stream(&fid, &t.info.task_id) {
                r.terminated_tasks.push(v1_task(a, e, t));
            } else {
                r.completed_tasks.push(v1_task(a, e, t));
            }
        }
    }
    r
}

fn executors(a: &AgentCore) -> response::GetExecutors {
    let mut r = response::GetExecutors::default();
    for (e, live) in all_executors(a) {
        let x = response::get_executors::Executor {
            executor_info: e.info.clone(),
        };
        if live {
            r.executors.push(x);
        } else {
            r.completed_executors.push(x);
        }
    }
    r
}

fn frameworks(a: &AgentCore) -> response::GetFrameworks {
    let f = |f: &super::core::Framework| response::get_frameworks::Framework {
        framework_info: f.info.clone(),
    };
    response::GetFrameworks {
        frameworks: a.frameworks.values().map(f).collect(),
        completed_frameworks: a.completed_frameworks.iter().map(f).collect(),
    }
}

fn containers(a: &AgentCore) -> response::GetContainers {
    let groups = endpoints::group_counts();
    let containers = a
        .frameworks
        .values()
        .flat_map(|f| f.executors.values())
        .map(|e| response::get_containers::Container {
            framework_id: e.info.framework_id.clone(),
            executor_id: Some(ExecutorId {
                value: e.info.executor_id.value.clone(),
            }),
            executor_name: e.info.name.clone(),
            container_id: ContainerId {
                value: e.container_id.clone(),
                parent: None,
            },
            container_status: Some(ContainerStatus {
                container_id: Some(ContainerId {
                    value: e.container_id.clone(),
                    parent: None,
                }),
                executor_pid: e.pid,
                ..Default::default()
            }),
            resource_statistics: Some(Box::new(endpoints::statistics(e, &groups))),
        })
        .collect();
    response::GetContainers { containers }
}

fn not_found(path: &str) -> http::Response {
    text(
        StatusCode::NOT_FOUND,
        format!("Failed to find '{path}'. No such file or directory."),
    )
}

fn list_files(ctx: &Ctx, path: &str) -> Result<Response, http::Response> {
    use std::os::unix::fs::MetadataExt;
    let real = endpoints::resolve(&ctx.config, path).map_err(|_| not_found(path))?;
    let mut entries: Vec<(std::path::PathBuf, std::fs::Metadata)> = if real.is_dir() {
        std::fs::read_dir(&real)
            .map_err(|_| not_found(path))?
            .filter_map(|e| e.ok())
            .filter_map(|e| Some((e.path(), e.metadata().ok()?)))
            .collect()
    } else {
        let md = std::fs::metadata(&real).map_err(|_| not_found(path))?;
        vec![(real.clone(), md)]
    };
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    let file_infos = entries
        .into_iter()
        .map(|(p, md)| FileInfo {
            path: p.display().to_string(),
            nlink: i32::try_from(md.nlink()).ok(),
            size: Some(md.size()),
            mtime: Some(TimeInfo {
                nanoseconds: md.mtime().saturating_mul(1_000_000_000),
            }),
            mode: Some(md.mode()),
            uid: Some(md.uid().to_string()),
            gid: Some(md.gid().to_string()),
        })
        .collect();
    let mut r = reply(response::Type::ListFiles);
    r.list_files = Some(response::ListFiles { file_infos });
    Ok(r)
}

fn read_file(ctx: &Ctx, rf: &call::ReadFile) -> Result<Response, http::Response> {
    let real = endpoints::resolve(&ctx.config, &rf.path).map_err(|_| not_found(&rf.path))?;
    if real.is_dir() {
        return Err(text(StatusCode::BAD_REQUEST, "Cannot read a directory.\n"));
    }
    let mut file = std::fs::File::open(&real).map_err(|_| not_found(&rf.path))?;
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    let want = rf.length.unwrap_or(u64::MAX);
    let len = want.min(size.saturating_sub(rf.offset)).min(16 * 4096);
    let mut data = Vec::new();
    if len > 0 {
        file.seek(SeekFrom::Start(rf.offset))
            .and_then(|_| file.take(len).read_to_end(&mut data))
            .map_err(|e| {
                text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("Failed to read '{}': {e}", real.display()),
                )
            })?;
    }
    let mut r = reply(response::Type::ReadFile);
    r.read_file = Some(response::ReadFile {
        size,
        data: data.into(),
    });
    Ok(r)
}
