//! `webhook` / `webhook:<url>`: POSTs every event to an HTTP URL as JSON:
//! `{"event": "task_healthy", "task_id": "…", "task_info": <the TaskInfo in Mesos JSON>}`.
//! A plain `webhook` takes its URL from `MESOKIT_EXECUTOR_WEBHOOK_URL`. An answer outside
//! 2xx is an error quoting the status and the start of the body.

use mesokit_proto::v1::TaskInfo;

use super::{Settings, http, json_string};
use crate::events::Event;

/// The variable holding the URL of a plain `webhook`.
pub const URL_VAR: &str = "MESOKIT_EXECUTOR_WEBHOOK_URL";

/// The webhook hook.
#[derive(Debug, Clone)]
pub struct WebhookHook {
    url: String,
}

impl WebhookHook {
    /// POSTs to `url` (plain http).
    pub fn new(url: &str, _settings: &Settings) -> Result<Self, String> {
        if !url.starts_with("http://") {
            return Err(format!(
                "webhook URL `{url}` must start with http:// (https is not supported)"
            ));
        }
        Ok(WebhookHook {
            url: url.to_owned(),
        })
    }

    /// POSTs to the URL in [`URL_VAR`].
    pub fn from_env(settings: &Settings) -> Result<Self, String> {
        let url = settings
            .var(&[URL_VAR])
            .ok_or_else(|| format!("the `webhook` hook needs {URL_VAR} (or use webhook:<url>)"))?;
        Self::new(&url, settings)
    }

    /// POSTs `event`.
    pub async fn handle(&self, event: Event, task: &TaskInfo) -> Result<(), String> {
        let mut body = format!(
            r#"{{"event":"{}","task_id":{},"task_info":"#,
            event.name(),
            json_string(&task.task_id.value)
        )
        .into_bytes();
        mesokit_proto::json::encode_into(task, &mut body);
        body.push(b'}');
        let resp = http("POST", &self.url, &[], Some(body)).await?;
        if resp.ok() {
            Ok(())
        } else {
            Err(format!(
                "{} answered {}: {}",
                self.url,
                resp.status,
                resp.text()
            ))
        }
    }
}
