//! `vaas`: registers a task as a backend of a Varnish-as-a-Service director once it is healthy
//! and deletes the backend before the task is killed (or once it ended), as allegro's
//! executor does.
//!
//! Only tasks with a non-empty `director` label take part. The VaaS server is
//! `MESOKIT_EXECUTOR_VAAS_HOST` or `VAAS_HOST` (`http://host:port`); authentication is the
//! `username` and `api_key` query parameters from `…_VAAS_USERNAME` and `…_VAAS_TOKEN`. The
//! data centre is `CLOUD_DC`, the backend address `CLOUD_PUBLIC_IP` (else 127.0.0.1). The
//! port is the task's first port; the weight comes from a label `weight:N` whose value is
//! `tag` (default 1), or the task's `VAAS_INITIAL_WEIGHT` environment variable; a non-empty
//! `canary` label adds the tag `canary`. Calls, under `/api/v0.1/`: `GET dc/?name=`,
//! `GET director/?name=`, `POST backend/`, and `DELETE backend/<id>/` (a 404 counts as done).

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use mesokit_proto::json::Parser;
use mesokit_proto::v1::TaskInfo;

use super::{Settings, encode, first_port, http, json_string, label};
use crate::events::Event;

/// The VaaS hook. It remembers the backend id of each task it registered.
#[derive(Debug)]
pub struct VaasHook {
    host: String,
    username: String,
    token: String,
    dc: Option<String>,
    address: String,
    backends: Mutex<HashMap<String, u64>>,
}

impl VaasHook {
    /// Configured from `settings`' environment; the host is required.
    pub fn new(settings: &Settings) -> Result<Self, String> {
        let host = settings
            .var(&["MESOKIT_EXECUTOR_VAAS_HOST", "VAAS_HOST"])
            .ok_or("the `vaas` hook needs MESOKIT_EXECUTOR_VAAS_HOST (or VAAS_HOST)")?;
        Ok(VaasHook {
            host: host.trim_end_matches('/').to_owned(),
            username: settings
                .var(&["MESOKIT_EXECUTOR_VAAS_USERNAME", "VAAS_USERNAME"])
                .unwrap_or_default(),
            token: settings
                .var(&["MESOKIT_EXECUTOR_VAAS_TOKEN", "VAAS_TOKEN"])
                .unwrap_or_default(),
            dc: settings.var(&["CLOUD_DC"]),
            address: settings
                .var(&["CLOUD_PUBLIC_IP"])
                .unwrap_or_else(|| "127.0.0.1".into()),
            backends: Mutex::new(HashMap::new()),
        })
    }

    fn url(&self, path: &str, query: &str) -> String {
        format!(
            "{}/api/v0.1/{path}?{query}{}username={}&api_key={}",
            self.host,
            if query.is_empty() { "" } else { "&" },
            encode(&self.username),
            encode(&self.token)
        )
    }

    /// Registers on [`Event::TaskHealthy`], deregisters on [`Event::BeforeTerminate`].
    pub async fn handle(&self, event: Event, task: &TaskInfo) -> Result<(), String> {
        let Some(director) = label(task, "director").filter(|d| !d.is_empty()) else {
            return Ok(());
        };
        match event {
            Event::TaskHealthy => self.register(director, task).await,
            Event::BeforeTerminate => self.deregister(task).await,
            _ => Ok(()),
        }
    }

    async fn lookup(&self, kind: &str, name: &str) -> Result<u64, String> {
        let url = self.url(&format!("{kind}/"), &format!("name={}", encode(name)));
        let resp = http("GET", &url, &[], None).await?;
        if !resp.ok() {
            return Err(format!(
                "VaaS answered {} to GET {kind}/?name={name}: {}",
                resp.status,
                resp.text()
            ));
        }
        first_object_id(&resp.body)
            .map_err(|e| format!("VaaS {kind} list is not what was expected: {e}"))?
            .ok_or_else(|| format!("VaaS has no {kind} named `{name}`"))
    }

    async fn register(&self, director: &str, task: &TaskInfo) -> Result<(), String> {
        let port = first_port(task).ok_or_else(|| {
            format!(
                "task `{}` has no port to register in VaaS",
                task.task_id.value
            )
        })?;
        let director_id = self.lookup("director", director).await?;
        let dc = match &self.dc {
            Some(dc) => format!(r#","dc":"/api/v0.1/dc/{}/""#, self.lookup("dc", dc).await?),
            None => String::new(),
        };
        let mut tags = Vec::new();
        if label(task, "canary").is_some_and(|c| !c.is_empty()) {
            tags.push(json_string("canary"));
        }
        let body = format!(
            r#"{{"address":{},"port":{port},"director":"/api/v0.1/director/{director_id}/"{dc},"weight":{},"tags":[{}],"inherit_time_profile":true}}"#,
            json_string(&self.address),
            weight(task)?,
            tags.join(","),
        );
        let resp = http(
            "POST",
            &self.url("backend/", ""),
            &[],
            Some(body.into_bytes()),
        )
        .await?;
        if !resp.ok() {
            return Err(format!(
                "VaaS answered {} to POST backend/: {}",
                resp.status,
                resp.text()
            ));
        }
        let id = object_id(&resp.body)
            .map_err(|e| format!("VaaS's answer to POST backend/ has no id: {e}"))?;
        self.backends
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(task.task_id.value.clone(), id);
        tracing::info!(task_id = %task.task_id.value, backend = id, director, "vaas: registered");
        Ok(())
    }

    async fn deregister(&self, task: &TaskInfo) -> Result<(), String> {
        let id = self
            .backends
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&task.task_id.value)
            .copied();
        let Some(id) = id else {
            return Ok(());
        };
        let resp = http(
            "DELETE",
            &self.url(&format!("backend/{id}/"), ""),
            &[],
            None,
        )
        .await?;
        if !resp.ok() && resp.status != 404 {
            return Err(format!(
                "VaaS answered {} to DELETE backend/{id}/: {}",
                resp.status,
                resp.text()
            ));
        }
        self.backends
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&task.task_id.value);
        tracing::info!(task_id = %task.task_id.value, backend = id, "vaas: deregistered");
        Ok(())
    }
}

/// The backend weight: the task's `VAAS_INITIAL_WEIGHT`, else a `weight:N` tag label, else 1.
fn weight(task: &TaskInfo) -> Result<u32, String> {
    let env = task
        .command
        .iter()
        .flat_map(|c| &c.environment)
        .flat_map(|e| &e.variables)
        .find(|v| v.name == "VAAS_INITIAL_WEIGHT")
        .and_then(|v| v.value.clone());
    let tag = task
        .labels
        .iter()
        .flat_map(|l| &l.labels)
        .filter(|l| l.value.as_deref() == Some("tag"))
        .find_map(|l| l.key.strip_prefix("weight:").map(str::to_owned));
    match env.or(tag) {
        None => Ok(1),
        Some(w) => w
            .trim()
            .parse()
            .map_err(|_| format!("VaaS weight `{w}` is not a whole number")),
    }
}

/// The `id` of a JSON object.
fn object_id(body: &[u8]) -> Result<u64, String> {
    let mut p = Parser::new(body).map_err(|e| e.to_string())?;
    id_of(&mut p)?.ok_or_else(|| "no `id` key".to_owned())
}

fn id_of(p: &mut Parser<'_>) -> Result<Option<u64>, String> {
    p.begin_object().map_err(|e| e.to_string())?;
    let mut first = true;
    let mut id = None;
    while let Some(key) = p.next_key(&mut first).map_err(|e| e.to_string())? {
        if key == "id" {
            id = Some(p.u64().map_err(|e| e.to_string())?);
        } else {
            p.skip_value().map_err(|e| e.to_string())?;
        }
    }
    Ok(id)
}

/// The `id` of the first element of a tastypie list's `objects`.
fn first_object_id(body: &[u8]) -> Result<Option<u64>, String> {
    let mut p = Parser::new(body).map_err(|e| e.to_string())?;
    p.begin_object().map_err(|e| e.to_string())?;
    let mut first = true;
    let mut found = None;
    while let Some(key) = p.next_key(&mut first).map_err(|e| e.to_string())? {
        if key == "objects" {
            let mut problem = None;
            let _ = p.repeated(|p| {
                if found.is_none() && problem.is_none() {
                    match id_of(p) {
                        Ok(id) => found = id,
                        Err(e) => problem = Some(e),
                    }
                    Ok(())
                } else {
                    p.skip_value()
                }
            });
            if let Some(e) = problem {
                return Err(e);
            }
        } else {
            p.skip_value().map_err(|e| e.to_string())?;
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use mesokit_proto::helpers::TaskBuilder;

    #[test]
    fn tastypie_lists_and_weights() {
        let list = br#"{"meta":{"total_count":1},"objects":[{"id":7,"name":"d"},{"id":8}]}"#;
        assert_eq!(first_object_id(list), Ok(Some(7)));
        assert_eq!(first_object_id(br#"{"objects":[]}"#), Ok(None));
        assert!(first_object_id(b"<html>").is_err());
        let t = TaskBuilder::new("w", "w1", "a")
            .label("weight:5", "tag")
            .build();
        assert_eq!(weight(&t), Ok(5));
        let t = TaskBuilder::new("w", "w1", "a")
            .label("weight:x", "tag")
            .build();
        assert!(weight(&t).unwrap_err().contains("`x`"));
        let t = TaskBuilder::new("w", "w1", "a")
            .label("weight:5", "tag")
            .env("VAAS_INITIAL_WEIGHT", "2")
            .build();
        assert_eq!(weight(&t), Ok(2));
    }
}
