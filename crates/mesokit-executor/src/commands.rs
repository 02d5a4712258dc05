//! Before and after commands, as Cook's executor design has them: shell commands that run
//! around a task's own command, from the operator's defaults and from the task itself. This
//! module reads and orders them; the driver runs them (see [`crate::run`]).
//!
//! # Format
//!
//! A list of commands is a JSON array of objects:
//!
//! ```json
//! [{"value": "./acquire-lock.sh", "guard": true},
//!  {"value": "./tail-logs.sh", "async": true}]
//! ```
//!
//! * `value` (string, required): a script for `/bin/sh -c`, run in the task's directory with
//!   the task's environment (and the task API variables, see [`crate::api`]);
//! * `guard` (boolean): when the command ends with a non-zero status, no later command runs
//!   and the task is TASK_FAILED with a message naming the command;
//! * `async` (boolean): the command runs alongside the later ones and is killed (its tree:
//!   SIGTERM, SIGKILL one second later) once the last synchronous command is done;
//! * `name` (string): accepted and ignored (Cook allowed it).
//!
//! Any other key, or a key of the wrong type, is an error naming it: the task then fails with
//! `TASK_FAILED` and reason `REASON_TASK_INVALID` before anything runs.
//!
//! A task gives its lists in labels `before_commands` / `after_commands` (each a JSON array),
//! or else in `TaskInfo.data` when the data is a JSON object (first non-blank byte `{`): its
//! keys `before_commands` and `after_commands`, other keys ignored. Data that starts with `{`
//! but is not valid JSON is an error; data that does not start with `{` is not looked at.
//!
//! The operator's lists ([`crate::Settings::before_commands`] and
//! [`crate::Settings::after_commands`]; `mesokit executor` reads them from
//! `MESOKIT_EXECUTOR_BEFORE_COMMANDS` / `MESOKIT_EXECUTOR_AFTER_COMMANDS` or the JSON file
//! named by `MESOKIT_EXECUTOR_CONFIG`) surround the task's: operator before, task before, the
//! task's command, task after, operator after. Every exit status is recorded in the task API
//! (`before_codes`, `exit_code`, `after_codes`). A kill stops the sequence: later commands do
//! not run.

use mesokit_proto::json::Parser;
use mesokit_proto::v1::TaskInfo;

/// Label holding a task's before commands.
pub const BEFORE_LABEL: &str = "before_commands";
/// Label holding a task's after commands.
pub const AFTER_LABEL: &str = "after_commands";

/// One before or after command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandDef {
    /// The shell script.
    pub value: String,
    /// A non-zero end stops the sequence and fails the task.
    pub guard: bool,
    /// Runs alongside later commands; killed once the synchronous ones are done.
    pub r#async: bool,
}

impl CommandDef {
    /// A synchronous command without guard.
    pub fn new(value: impl Into<String>) -> Self {
        CommandDef {
            value: value.into(),
            guard: false,
            r#async: false,
        }
    }
}

/// Every command of a task besides its own, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Before the task's command (operator's first).
    pub before: Vec<CommandDef>,
    /// After it (operator's last).
    pub after: Vec<CommandDef>,
}

impl Plan {
    /// Whether there is nothing but the task's own command.
    pub fn is_empty(&self) -> bool {
        self.before.is_empty() && self.after.is_empty()
    }
}

/// Parses a JSON array of commands (see the [module documentation](self)); the error says
/// which item and key were wrong.
pub fn parse_list(input: &[u8]) -> Result<Vec<CommandDef>, String> {
    let mut p = Parser::new(input).map_err(|e| format!("not valid JSON: {e}"))?;
    let list = list(&mut p)?;
    p.finish().map_err(|e| format!("not valid JSON: {e}"))?;
    Ok(list)
}

/// A list of commands at the parser's cursor.
pub(crate) fn list(p: &mut Parser<'_>) -> Result<Vec<CommandDef>, String> {
    let mut out = Vec::new();
    let mut problem = None;
    let result = p.repeated(|p| {
        let index = out.len();
        match command(p) {
            Ok(def) => {
                out.push(def);
                Ok(())
            }
            Err(Bad::Json(e)) => Err(e),
            Err(Bad::Meaning(m)) => {
                problem = Some(format!("command {}: {m}", index + 1));
                Err(stop())
            }
        }
    });
    match (result, problem) {
        (_, Some(m)) => Err(m),
        (Err(e), None) => Err(format!("not valid JSON: {e}")),
        (Ok(()), None) => Ok(out),
    }
}

/// An error to abort [`Parser::repeated`] with; the caller replaces its text.
fn stop() -> mesokit_proto::json::JsonError {
    match Parser::new(b"\xff") {
        Err(e) => e,
        Ok(_) => unreachable!("the parser refuses input that is not UTF-8"),
    }
}

enum Bad {
    Json(mesokit_proto::json::JsonError),
    Meaning(String),
}

fn command(p: &mut Parser<'_>) -> Result<CommandDef, Bad> {
    p.begin_object()
        .map_err(|_| Bad::Meaning("must be an object like {\"value\": \"…\"}".into()))?;
    let mut first = true;
    let mut value = None;
    let mut guard = false;
    let mut run_async = false;
    while let Some(key) = p.next_key(&mut first).map_err(Bad::Json)? {
        match &*key {
            "value" => {
                value = Some(p.string().map_err(|_| {
                    Bad::Meaning("`value` must be a string (a shell script)".into())
                })?)
            }
            "guard" => {
                guard = p
                    .bool()
                    .map_err(|_| Bad::Meaning("`guard` must be a boolean".into()))?
            }
            "async" => {
                run_async = p
                    .bool()
                    .map_err(|_| Bad::Meaning("`async` must be a boolean".into()))?
            }
            "name" => {
                p.string()
                    .map_err(|_| Bad::Meaning("`name` must be a string".into()))?;
            }
            other => {
                return Err(Bad::Meaning(format!(
                    "unknown key `{other}` (expected value, guard, async, name)"
                )));
            }
        }
    }
    match value {
        Some(value) if !value.trim().is_empty() => Ok(CommandDef {
            value,
            guard,
            r#async: run_async,
        }),
        _ => Err(Bad::Meaning("`value` is missing or empty".into())),
    }
}

/// The plan of `task`: the operator's lists around the task's own (labels first, else a JSON
/// object in `TaskInfo.data`). The error names the label or the data and what was wrong.
pub fn plan(
    task: &TaskInfo,
    operator_before: &[CommandDef],
    operator_after: &[CommandDef],
) -> Result<Plan, String> {
    let label = |key: &str| {
        task.labels
            .iter()
            .flat_map(|l| &l.labels)
            .find(|l| l.key == key)
            .map(|l| l.value.clone().unwrap_or_default())
    };
    let (mut task_before, mut task_after) = (Vec::new(), Vec::new());
    let (before_label, after_label) = (label(BEFORE_LABEL), label(AFTER_LABEL));
    if before_label.is_some() || after_label.is_some() {
        if let Some(text) = before_label {
            task_before =
                parse_list(text.as_bytes()).map_err(|e| format!("label `{BEFORE_LABEL}`: {e}"))?;
        }
        if let Some(text) = after_label {
            task_after =
                parse_list(text.as_bytes()).map_err(|e| format!("label `{AFTER_LABEL}`: {e}"))?;
        }
    } else if let Some(data) = task.data.as_deref()
        && data.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{')
    {
        (task_before, task_after) = from_data(data).map_err(|e| format!("TaskInfo.data: {e}"))?;
    }
    let before = operator_before.iter().cloned().chain(task_before).collect();
    let after = task_after
        .into_iter()
        .chain(operator_after.iter().cloned())
        .collect();
    Ok(Plan { before, after })
}

type Lists = (Vec<CommandDef>, Vec<CommandDef>);

fn from_data(data: &[u8]) -> Result<Lists, String> {
    let bad = |e: mesokit_proto::json::JsonError| format!("not valid JSON: {e}");
    let mut p = Parser::new(data).map_err(bad)?;
    p.begin_object().map_err(bad)?;
    let mut first = true;
    let (mut before, mut after) = (Vec::new(), Vec::new());
    while let Some(key) = p.next_key(&mut first).map_err(bad)? {
        match &*key {
            BEFORE_LABEL => before = list(&mut p).map_err(|e| format!("`{BEFORE_LABEL}`: {e}"))?,
            AFTER_LABEL => after = list(&mut p).map_err(|e| format!("`{AFTER_LABEL}`: {e}"))?,
            _ => p.skip_value().map_err(bad)?,
        }
    }
    p.finish().map_err(bad)?;
    Ok((before, after))
}

#[cfg(test)]
mod tests {
    use super::*;
    use mesokit_proto::helpers::TaskBuilder;
    use mesokit_proto::v1::{Label, Labels};

    fn with_label(key: &str, value: &str) -> TaskInfo {
        let mut task = TaskBuilder::new("t", "t1", "a").shell("true").build();
        task.labels = Some(Labels {
            labels: vec![Label {
                key: key.into(),
                value: Some(value.into()),
            }],
        });
        task
    }

    #[test]
    fn parses_a_list_with_flags() {
        let list = parse_list(
            br#"[{"value":"a","guard":true},{"value":"b","async":true,"name":"x"},{"value":"c"}]"#,
        )
        .unwrap();
        assert_eq!(
            list,
            [
                CommandDef {
                    value: "a".into(),
                    guard: true,
                    r#async: false
                },
                CommandDef {
                    value: "b".into(),
                    guard: false,
                    r#async: true
                },
                CommandDef::new("c"),
            ]
        );
    }

    #[test]
    fn bad_lists_name_what_is_wrong() {
        let err = |s: &str| parse_list(s.as_bytes()).unwrap_err();
        assert!(
            err(r#"[{"value":"a","guard":3}]"#).contains("command 1: `guard` must be a boolean")
        );
        assert!(err(r#"[{"value":"a"},{"valu":"b"}]"#).contains("command 2: unknown key `valu`"));
        assert!(err(r#"[{"guard":true}]"#).contains("`value` is missing"));
        assert!(err(r#"[{"value":1}]"#).contains("`value` must be a string"));
        assert!(err(r#"["echo"]"#).contains("command 1: must be an object"));
        assert!(err(r#"[{"value":"a""#).contains("not valid JSON"));
    }

    #[test]
    fn operator_commands_surround_the_tasks() {
        let task = with_label(BEFORE_LABEL, r#"[{"value":"task-before"}]"#);
        let plan = plan(
            &task,
            &[CommandDef::new("op-before")],
            &[CommandDef::new("op-after")],
        )
        .unwrap();
        let names = |l: &[CommandDef]| l.iter().map(|c| c.value.clone()).collect::<Vec<_>>();
        assert_eq!(names(&plan.before), ["op-before", "task-before"]);
        assert_eq!(names(&plan.after), ["op-after"]);
    }

    #[test]
    fn data_object_or_nothing() {
        let mut task = TaskBuilder::new("t", "t1", "a").shell("true").build();
        task.data = Some(
            br#" {"command":"x","after_commands":[{"value":"bye","guard":true}]}"#
                .to_vec()
                .into(),
        );
        let p = plan(&task, &[], &[]).unwrap();
        assert_eq!(p.after[0].value, "bye");
        assert!(p.before.is_empty());

        task.data = Some(b"{not json".to_vec().into());
        let e = plan(&task, &[], &[]).unwrap_err();
        assert!(e.starts_with("TaskInfo.data: not valid JSON"), "{e}");

        task.data = Some(b"\x00\x01binary".to_vec().into());
        assert!(plan(&task, &[], &[]).unwrap().is_empty());

        let e = plan(&with_label(AFTER_LABEL, "[1]"), &[], &[]).unwrap_err();
        assert!(e.starts_with("label `after_commands`: command 1"), "{e}");
    }
}
