//! `command:<path>`: an external command per event, with the Criteo contract of
//! [`crate::runner`] (`<path> <input> <output> <error>`, the input also on stdin, a timeout
//! that kills the command's process group).
//!
//! Input: `{"event": "task_healthy", "task_info": <the TaskInfo in Mesos JSON>}`. Output:
//! nothing, or a Mesos `Environment` in JSON (`{"variables": [{"name": "A", "value": "1"}]}`,
//! as Criteo's environment decorator answers); its variables are added to the task at
//! `before_task_start`. A command that exits non-zero fails with its status and the text of
//! its error file; output that is not such JSON fails naming what was wrong.

use mesokit_proto::v1::{Environment, TaskInfo};

use super::Settings;
use crate::events::{Event, HookEnv};
use crate::runner::{Invocation, Runner};

/// An external-command hook.
#[derive(Debug, Clone)]
pub struct CommandHook {
    path: String,
    runner: Runner,
    timeout: std::time::Duration,
}

impl CommandHook {
    /// Runs `path` with the runner and timeout of `settings`.
    pub fn new(path: &str, settings: &Settings) -> Self {
        CommandHook {
            path: path.to_owned(),
            runner: settings.runner.clone(),
            timeout: settings.timeout,
        }
    }

    /// Runs the command for `event`.
    pub async fn handle(&self, event: Event, task: &TaskInfo) -> Result<HookEnv, String> {
        let input = input(event, task);
        let inv =
            Invocation::new(format!("hook {event}"), &self.path, input).with_timeout(self.timeout);
        let outcome = self.runner.run(&inv).await.map_err(|e| e.to_string())?;
        parse_output(&outcome.output)
    }
}

/// The JSON given to the command.
pub fn input(event: Event, task: &TaskInfo) -> Vec<u8> {
    let mut out = format!(r#"{{"event":"{}","task_info":"#, event.name()).into_bytes();
    mesokit_proto::json::encode_into(task, &mut out);
    out.push(b'}');
    out
}

/// The variables of the command's output: none for an empty output, else a Mesos
/// `Environment` in JSON.
pub fn parse_output(output: &[u8]) -> Result<HookEnv, String> {
    if output.iter().all(u8::is_ascii_whitespace) {
        return Ok(Vec::new());
    }
    let env: Environment = mesokit_proto::json::decode(output).map_err(|e| {
        let start: String = String::from_utf8_lossy(output).chars().take(80).collect();
        format!("the output is not a Mesos Environment in JSON ({e}); it starts with {start:?}")
    })?;
    Ok(env
        .variables
        .into_iter()
        .map(|v| (v.name, v.value.unwrap_or_default()))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outputs() {
        assert_eq!(parse_output(b" \n"), Ok(vec![]));
        assert_eq!(
            parse_output(br#"{"variables":[{"name":"A","value":"1"}]}"#),
            Ok(vec![("A".into(), "1".into())])
        );
        let e = parse_output(b"hello world").unwrap_err();
        assert!(
            e.starts_with("the output is not a Mesos Environment in JSON"),
            "{e}"
        );
        assert!(e.ends_with("it starts with \"hello world\""), "{e}");
    }
}
