//! `POST /api/v1/executor` (and `/slave(1)/api/v1/executor`): decoding and syntactic
//! validation of executor calls, in the order and with the texts of Mesos's `Http::executor`.
//! Lookups and effects happen in the agent actor.

use ::http::StatusCode;
use bytes::Bytes;
use mesokit_proto::helpers::is_valid_uuid;
use mesokit_proto::v1::executor::{Call, call};
use mesokit_proto::v1::{ExecutorId, FrameworkId, TaskState, TaskStatus, task_status};
use tokio::sync::oneshot;

use super::Input;
use super::endpoints::Ctx;
use crate::http::{self, Media, Request, Response, empty, text};

/// A syntactically valid executor call, for the actor.
#[derive(Debug)]
pub(crate) struct ExecutorCall {
    pub(crate) framework_id: FrameworkId,
    pub(crate) executor_id: ExecutorId,
    pub(crate) kind: Kind,
}

#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
pub(crate) enum Kind {
    Subscribe {
        subscribe: Box<call::Subscribe>,
        media: Media,
    },
    Update(TaskStatus),
    Message(Bytes),
}

fn bad(msg: impl Into<String>) -> Response {
    text(StatusCode::BAD_REQUEST, msg)
}

/// Mesos's `validateExecutorCall`, as far as prost can tell fields apart.
pub(crate) fn validate(c: &Call) -> Result<(), String> {
    let Some(ty) = c.r#type else {
        return Err("Expecting 'type' to be present".into());
    };
    if c.executor_id.value.is_empty() {
        return Err("Expecting 'executor_id' to be present".into());
    }
    if c.framework_id.value.is_empty() {
        return Err("Expecting 'framework_id' to be present".into());
    }
    match call::Type::try_from(ty) {
        Ok(call::Type::Subscribe) if c.subscribe.is_none() => {
            Err("Expecting 'subscribe' to be present".into())
        }
        Ok(call::Type::Message) if c.message.is_none() => {
            Err("Expecting 'message' to be present".into())
        }
        Ok(call::Type::Update) => {
            let Some(u) = &c.update else {
                return Err("Expecting 'update' to be present".into());
            };
            let s = &u.status;
            let Some(uuid) = &s.uuid else {
                return Err("Expecting 'uuid' to be present".into());
            };
            if !is_valid_uuid(uuid) {
                return Err("Not a valid UUID".into());
            }
            if let Some(e) = &s.executor_id
                && e.value != c.executor_id.value
            {
                return Err(format!(
                    "ExecutorID in Call: {} does not match ExecutorID in TaskStatus: {}",
                    c.executor_id.value, e.value
                ));
            }
            if s.source != Some(task_status::Source::Executor as i32) {
                return Err(format!(
                    "Received Call from executor {} of framework {} with invalid source, expecting 'SOURCE_EXECUTOR'",
                    c.executor_id.value, c.framework_id.value
                ));
            }
            if s.state == TaskState::TaskStaging as i32 {
                return Err(format!(
                    "Received TASK_STAGING from executor {} of framework {} which is not allowed",
                    c.executor_id.value, c.framework_id.value
                ));
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// Handles one request on the executor endpoint.
pub(crate) async fn handle(ctx: &Ctx, req: Request) -> Response {
    if let Err(r) = http::require_post(&req) {
        return r;
    }
    let media = match http::content_type(&req) {
        Ok(m) => m,
        Err(r) => return r,
    };
    let accept = http::accept(&req);
    let body = match http::read_body(req, http::MAX_BODY).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let c: Call = match media {
        Media::Json => match mesokit_proto::json::decode(&body) {
            Ok(c) => c,
            Err(e) => {
                use mesokit_proto::json::JsonErrorKind as K;
                // Mesos parses JSON first, then converts it: two different messages.
                let syntax = matches!(
                    e.kind(),
                    K::InvalidUtf8
                        | K::UnexpectedEnd
                        | K::Unexpected { .. }
                        | K::TrailingData
                        | K::BadEscape
                        | K::TooDeep
                );
                return bad(if syntax {
                    format!("Failed to parse body into JSON: {e}")
                } else {
                    format!("Failed to convert JSON into Call protobuf: {e}")
                });
            }
        },
        Media::Protobuf => match <Call as mesokit_proto::Message>::decode(body) {
            Ok(c) => c,
            Err(_) => return bad("Failed to parse body into Call protobuf"),
        },
    };
    if let Err(e) = validate(&c) {
        return bad(format!("Failed to validate Executor::Call: {e}"));
    }
    let kind = match call::Type::try_from(c.r#type.unwrap_or(0)) {
        Ok(call::Type::Subscribe) => {
            let media = match accept {
                Ok(m) => m,
                Err(r) => return r,
            };
            let mut subscribe = Box::new(c.subscribe.unwrap_or_default());
            // Replayed updates are received again, so they are decorated again (as Mesos
            // runs every update it receives through the hooks; a duplicate is then ignored).
            if let Some(m) = ctx.config.modules.as_ref()
                && m.has(mesokit_hooks::modules::Method::TaskStatusDecorator)
            {
                for u in &mut subscribe.unacknowledged_updates {
                    m.decorate_status(&c.framework_id, &mut u.status).await;
                }
            }
            Kind::Subscribe { subscribe, media }
        }
        // The ids may be dummies ("unused"): not looked up.
        Ok(call::Type::Heartbeat) => return empty(StatusCode::ACCEPTED),
        Ok(call::Type::Update) => {
            let mut status = c.update.expect("validated").status;
            // Mesos runs the task status decorator hooks on every update it receives.
            if let Some(m) = ctx.config.modules.as_ref()
                && m.has(mesokit_hooks::modules::Method::TaskStatusDecorator)
            {
                m.decorate_status(&c.framework_id, &mut status).await;
            }
            Kind::Update(status)
        }
        Ok(call::Type::Message) => Kind::Message(c.message.expect("validated").data),
        _ => return text(StatusCode::NOT_IMPLEMENTED, "Unknown call type"),
    };
    let call = ExecutorCall {
        framework_id: c.framework_id,
        executor_id: c.executor_id,
        kind,
    };
    let (tx, rx) = oneshot::channel();
    if ctx.tx.send(Input::Call(call, tx)).is_err() {
        return text(StatusCode::SERVICE_UNAVAILABLE, "Agent is shutting down");
    }
    rx.await
        .unwrap_or_else(|_| text(StatusCode::SERVICE_UNAVAILABLE, "Agent is shutting down"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use mesokit_proto::helpers::new_uuid;
    use mesokit_proto::v1::TaskId;

    fn update(status: TaskStatus) -> Call {
        Call {
            executor_id: ExecutorId { value: "e".into() },
            framework_id: FrameworkId { value: "f".into() },
            r#type: Some(call::Type::Update as i32),
            update: Some(Box::new(call::Update { status })),
            ..Default::default()
        }
    }

    fn good() -> TaskStatus {
        TaskStatus {
            task_id: TaskId { value: "t".into() },
            state: TaskState::TaskRunning as i32,
            source: Some(task_status::Source::Executor as i32),
            uuid: Some(new_uuid()),
            ..Default::default()
        }
    }

    #[test]
    fn update_validation() {
        assert_eq!(validate(&update(good())), Ok(()));
        let mut s = good();
        s.uuid = Some(Bytes::from_static(b"0123456789abcdef0123456789abcdef0123"));
        assert_eq!(validate(&update(s)), Err("Not a valid UUID".into()));
        let mut s = good();
        s.uuid = None;
        assert!(validate(&update(s)).unwrap_err().contains("'uuid'"));
        let mut s = good();
        s.source = None;
        assert!(
            validate(&update(s))
                .unwrap_err()
                .contains("SOURCE_EXECUTOR")
        );
        let mut s = good();
        s.state = TaskState::TaskStaging as i32;
        assert!(validate(&update(s)).unwrap_err().contains("TASK_STAGING"));
        let mut s = good();
        s.executor_id = Some(ExecutorId { value: "x".into() });
        assert!(validate(&update(s)).unwrap_err().contains("does not match"));
        let mut c = update(good());
        c.r#type = None;
        assert_eq!(validate(&c), Err("Expecting 'type' to be present".into()));
        let mut c = update(good());
        c.executor_id.value.clear();
        assert_eq!(
            validate(&c),
            Err("Expecting 'executor_id' to be present".into())
        );
    }
}
