//! `consul`: registers a task in the local Consul agent once it is healthy and deregisters it
//! before it is killed (or once it ended), as allegro's executor does.
//!
//! Only tasks with a `consul` label take part. Service name: the label's value (the task's
//! name when the value is empty or `true`); tags: the keys of the task's labels whose value is
//! `tag`; port: the task's first port; id: `<task id>_<service name>_<port>`; address:
//! `CLOUD_PUBLIC_IP` when set. The agent is `CONSUL_HTTP_ADDR` (default `127.0.0.1:8500`);
//! the ACL token, sent as `X-Consul-Token`, is `MESOKIT_EXECUTOR_CONSUL_TOKEN` or
//! `CONSUL_TOKEN`. Calls: `PUT /v1/agent/service/register` and
//! `PUT /v1/agent/service/deregister/<id>`.

use mesokit_proto::v1::TaskInfo;

use super::{Settings, encode, first_port, http, json_string, label, tag_labels};
use crate::events::Event;

/// Consul's default agent address.
pub const DEFAULT_ADDR: &str = "127.0.0.1:8500";

/// The Consul hook.
#[derive(Debug, Clone)]
pub struct ConsulHook {
    addr: String,
    token: Option<String>,
    public_ip: Option<String>,
}

/// What a task registers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    /// Service id.
    pub id: String,
    /// Service name.
    pub name: String,
    /// Tags.
    pub tags: Vec<String>,
    /// Port.
    pub port: u32,
}

impl ConsulHook {
    /// Configured from `settings`' environment.
    pub fn new(settings: &Settings) -> Self {
        ConsulHook {
            addr: settings
                .var(&["CONSUL_HTTP_ADDR"])
                .unwrap_or_else(|| DEFAULT_ADDR.to_owned()),
            token: settings.var(&["MESOKIT_EXECUTOR_CONSUL_TOKEN", "CONSUL_TOKEN"]),
            public_ip: settings.var(&["CLOUD_PUBLIC_IP"]),
        }
    }

    /// Registers on [`Event::TaskHealthy`], deregisters on [`Event::BeforeTerminate`].
    pub async fn handle(&self, event: Event, task: &TaskInfo) -> Result<(), String> {
        let wanted = matches!(event, Event::TaskHealthy | Event::BeforeTerminate);
        if !wanted || label(task, "consul").is_none() {
            return Ok(());
        }
        let reg = registration(task)?;
        let (path, body) = if event == Event::TaskHealthy {
            (
                "/v1/agent/service/register".to_owned(),
                Some(self.body(&reg)),
            )
        } else {
            (
                format!("/v1/agent/service/deregister/{}", encode(&reg.id)),
                None,
            )
        };
        let url = format!("{}{path}", self.addr.trim_end_matches('/'));
        let mut headers = Vec::new();
        if let Some(t) = &self.token {
            headers.push(("X-Consul-Token", t.as_str()));
        }
        let resp = http("PUT", &url, &headers, body).await?;
        if !resp.ok() {
            return Err(format!(
                "Consul answered {} to PUT {path}: {}",
                resp.status,
                resp.text()
            ));
        }
        tracing::info!(task_id = %task.task_id.value, service_id = %reg.id, %event, "consul: done");
        Ok(())
    }

    fn body(&self, reg: &Registration) -> Vec<u8> {
        let tags: Vec<String> = reg.tags.iter().map(|t| json_string(t)).collect();
        let address = self
            .public_ip
            .as_deref()
            .map(|ip| format!(r#","Address":{}"#, json_string(ip)))
            .unwrap_or_default();
        format!(
            r#"{{"ID":{},"Name":{},"Tags":[{}],"Port":{}{address},"EnableTagOverride":false}}"#,
            json_string(&reg.id),
            json_string(&reg.name),
            tags.join(","),
            reg.port,
        )
        .into_bytes()
    }
}

/// What `task` registers; an error when it has no port.
pub fn registration(task: &TaskInfo) -> Result<Registration, String> {
    let name = match label(task, "consul") {
        Some(v) if !v.is_empty() && v != "true" => v.to_owned(),
        _ => task.name.clone(),
    };
    let port = first_port(task).ok_or_else(|| {
        format!(
            "task `{}` has no port to register in Consul",
            task.task_id.value
        )
    })?;
    Ok(Registration {
        id: format!("{}_{name}_{port}", task.task_id.value),
        name,
        tags: tag_labels(task),
        port,
    })
}
