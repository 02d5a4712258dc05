//! The operator's settings of `mesokit executor`: a JSON file and `MESOKIT_EXECUTOR_*`
//! variables (which the tasks never see, see [`crate::launch::EXECUTOR_ONLY_PREFIX`]).
//!
//! | variable | file key | meaning |
//! |---|---|---|
//! | `MESOKIT_EXECUTOR_CONFIG` | | path of the JSON file (an object with the keys below) |
//! | `MESOKIT_EXECUTOR_HOOKS` | `hooks` | hook names, comma-separated (file: a string or an array) |
//! | `MESOKIT_EXECUTOR_HOOK_TIMEOUT` | `hook_timeout` | bound of one hook run (`30secs`) |
//! | `MESOKIT_EXECUTOR_BEFORE_COMMANDS` | `before_commands` | JSON array ([`crate::commands`]) |
//! | `MESOKIT_EXECUTOR_AFTER_COMMANDS` | `after_commands` | JSON array |
//! | `MESOKIT_EXECUTOR_MAX_MESSAGE_LENGTH` | `max_message_length` | task API messages (512) |
//! | `MESOKIT_EXECUTOR_TASK_API` | `task_api` | `false`/`0` turns the task API off |
//! | `MESOKIT_EXECUTOR_LOG_MAX_SIZE` | `log_max_size` | rotate a task's `stdout`/`stderr` at this size (`10MB`; off by default) |
//! | `MESOKIT_EXECUTOR_LOG_MAX_FILES` | `log_max_files` | rotated files kept (`.1` … `.N`, default 5) |
//! | `MESOKIT_EXECUTOR_PROGRESS_REGEX` | `progress_regex` | progress regex of tasks without a `progress_regex` label ([`crate::progress`]; off by default) |
//! | `MESOKIT_EXECUTOR_PROGRESS_FILE` | `progress_file` | progress file of tasks without a `progress_file` label (turns tracking on) |
//! | `MESOKIT_EXECUTOR_LOG_FILE` | | the executor's own log ([`crate::log`]; default `executor.log` in the sandbox, `-` = stderr; read before anything else, so not a file key) |
//!
//! A variable wins over the file. Every error names the variable or key and what was wrong.

use mesokit_proto::helpers::parse_duration;
use mesokit_proto::json::Parser;

use crate::Settings;
use crate::commands::{self, parse_list};

/// The variable naming the configuration file.
pub const CONFIG_VAR: &str = "MESOKIT_EXECUTOR_CONFIG";

/// Applies the file named by [`CONFIG_VAR`] (if any), then the variables, from `env`.
pub fn apply(settings: &mut Settings, env: &[(String, String)]) -> Result<(), String> {
    let var = |name: &str| {
        env.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.trim().is_empty())
    };
    if let Some(path) = var(CONFIG_VAR) {
        let text =
            std::fs::read(path).map_err(|e| format!("{CONFIG_VAR}: cannot read {path}: {e}"))?;
        apply_file(settings, &text).map_err(|e| format!("{path}: {e}"))?;
    }
    for (name, key) in [
        ("MESOKIT_EXECUTOR_HOOKS", "hooks"),
        ("MESOKIT_EXECUTOR_HOOK_TIMEOUT", "hook_timeout"),
        ("MESOKIT_EXECUTOR_BEFORE_COMMANDS", "before_commands"),
        ("MESOKIT_EXECUTOR_AFTER_COMMANDS", "after_commands"),
        ("MESOKIT_EXECUTOR_MAX_MESSAGE_LENGTH", "max_message_length"),
        ("MESOKIT_EXECUTOR_TASK_API", "task_api"),
        ("MESOKIT_EXECUTOR_LOG_MAX_SIZE", "log_max_size"),
        ("MESOKIT_EXECUTOR_LOG_MAX_FILES", "log_max_files"),
        ("MESOKIT_EXECUTOR_PROGRESS_REGEX", "progress_regex"),
        ("MESOKIT_EXECUTOR_PROGRESS_FILE", "progress_file"),
    ] {
        if let Some(value) = var(name) {
            set(settings, key, value).map_err(|e| format!("{name}: {e}"))?;
        }
    }
    Ok(())
}

/// One setting from its text (as a variable gives it).
fn set(settings: &mut Settings, key: &str, value: &str) -> Result<(), String> {
    match key {
        "hooks" => settings.hooks = mesokit_hooks::builtin::parse_names(value)?,
        "hook_timeout" => {
            settings.hook_timeout = parse_duration(value).map_err(|e| e.to_string())?;
        }
        "before_commands" => settings.before_commands = parse_list(value.as_bytes())?,
        "after_commands" => settings.after_commands = parse_list(value.as_bytes())?,
        "max_message_length" => {
            settings.max_message_length = value
                .trim()
                .parse::<usize>()
                .ok()
                .filter(|n| *n >= 4)
                .ok_or_else(|| format!("`{value}` is not a whole number of at least 4"))?;
        }
        "task_api" => {
            settings.task_api = match value.trim() {
                "1" | "true" | "on" => true,
                "0" | "false" | "off" => false,
                other => return Err(format!("`{other}` is not true/false/1/0")),
            }
        }
        "log_max_size" => {
            settings.log_rotation.max_size = parse_size(value)?;
        }
        "log_max_files" => {
            settings.log_rotation.max_files = value
                .trim()
                .parse::<u32>()
                .ok()
                .filter(|n| *n >= 1)
                .ok_or_else(|| format!("`{value}` is not a whole number of at least 1"))?;
        }
        "progress_regex" => {
            settings.progress_regex = Some(crate::progress::Pattern::new(value)?);
        }
        "progress_file" => settings.progress_file = Some(value.trim().to_owned()),
        _ => return Err(format!("unknown setting `{key}`")),
    }
    Ok(())
}

/// A size: bytes, or with a `B`, `KB`, `MB`, `GB` suffix (powers of 1024, as Mesos reads
/// `Bytes`).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("`{text}` is not a size like 10MB"))?;
    let factor: u64 = match unit.trim() {
        "" | "B" => 1,
        "KB" => 1 << 10,
        "MB" => 1 << 20,
        "GB" => 1 << 30,
        other => return Err(format!("`{other}` is not a size unit (B, KB, MB, GB)")),
    };
    n.checked_mul(factor)
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("`{text}` is not a size above zero"))
}

fn apply_file(settings: &mut Settings, text: &[u8]) -> Result<(), String> {
    let bad = |e: mesokit_proto::json::JsonError| format!("not valid JSON: {e}");
    let mut p = Parser::new(text).map_err(bad)?;
    p.begin_object()
        .map_err(|_| "the configuration must be a JSON object".to_owned())?;
    let mut first = true;
    while let Some(key) = p.next_key(&mut first).map_err(bad)? {
        let key = key.into_owned();
        // Values are turned into the text a variable would hold, and go through the same rules.
        let value = match key.as_str() {
            "before_commands" => {
                settings.before_commands =
                    commands::list(&mut p).map_err(|e| format!("`{key}`: {e}"))?;
                continue;
            }
            "after_commands" => {
                settings.after_commands =
                    commands::list(&mut p).map_err(|e| format!("`{key}`: {e}"))?;
                continue;
            }
            "hooks" => {
                let mut names = Vec::new();
                p.repeated(|p| {
                    names.push(p.string()?);
                    Ok(())
                })
                .map_err(|e| format!("`hooks` must be a string or an array of strings: {e}"))?;
                names.join(",")
            }
            "max_message_length" | "log_max_files" => p
                .u64()
                .map_err(|e| format!("`{key}` must be a whole number: {e}"))?
                .to_string(),
            "task_api" => p
                .bool()
                .map_err(|e| format!("`task_api` must be a boolean: {e}"))?
                .to_string(),
            "hook_timeout" | "log_max_size" | "progress_regex" | "progress_file" => p
                .string()
                .map_err(|e| format!("`{key}` must be a string: {e}"))?,
            other => {
                return Err(format!(
                    "unknown key `{other}` (expected hooks, hook_timeout, before_commands, \
                     after_commands, max_message_length, task_api, log_max_size, log_max_files, \
                     progress_regex, progress_file)"
                ));
            }
        };
        set(settings, &key, &value).map_err(|e| format!("`{key}`: {e}"))?;
    }
    p.finish().map_err(bad)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn file_then_variables() {
        let path =
            std::env::temp_dir().join(format!("mesokit-exec-cfg-{}.json", std::process::id()));
        std::fs::write(
            &path,
            r#"{"hooks": ["consul", "webhook:http://h/x"], "hook_timeout": "2secs",
                "before_commands": [{"value": "echo hi", "guard": true}],
                "max_message_length": 100, "task_api": false, "log_max_size": "1MB",
                "progress_regex": "done ([0-9]+)", "progress_file": "p.txt"}"#,
        )
        .unwrap();
        let mut s = Settings::default();
        apply(
            &mut s,
            &env(&[
                (CONFIG_VAR, path.to_str().unwrap()),
                ("MESOKIT_EXECUTOR_MAX_MESSAGE_LENGTH", "64"),
                (
                    "MESOKIT_EXECUTOR_AFTER_COMMANDS",
                    r#"[{"value": "echo bye"}]"#,
                ),
            ]),
        )
        .unwrap();
        assert_eq!(s.hooks, ["consul", "webhook:http://h/x"]);
        assert_eq!(s.hook_timeout, Duration::from_secs(2));
        assert!(s.before_commands[0].guard);
        assert_eq!(s.after_commands[0].value, "echo bye");
        assert_eq!(s.max_message_length, 64, "the variable wins");
        assert!(!s.task_api);
        assert_eq!(s.log_rotation.max_size, 1 << 20);
        assert_eq!(s.progress_regex.unwrap().as_str(), "done ([0-9]+)");
        assert_eq!(s.progress_file.as_deref(), Some("p.txt"));
        let _ = std::fs::remove_file(path);
    }

    #[test]
    fn errors_name_the_setting() {
        let err =
            |pairs: &[(&str, &str)]| apply(&mut Settings::default(), &env(pairs)).unwrap_err();
        assert_eq!(
            err(&[("MESOKIT_EXECUTOR_HOOKS", "consul,nope")]),
            format!(
                "MESOKIT_EXECUTOR_HOOKS: unknown hook `nope` (known: {})",
                mesokit_hooks::builtin::KNOWN
            )
        );
        assert!(
            err(&[("MESOKIT_EXECUTOR_BEFORE_COMMANDS", "[{}]")])
                .starts_with("MESOKIT_EXECUTOR_BEFORE_COMMANDS: command 1: `value` is missing")
        );
        assert_eq!(
            err(&[("MESOKIT_EXECUTOR_LOG_MAX_SIZE", "10 parsecs")]),
            "MESOKIT_EXECUTOR_LOG_MAX_SIZE: `parsecs` is not a size unit (B, KB, MB, GB)"
        );
        assert!(
            err(&[(CONFIG_VAR, "/nonexistent/x.json")])
                .starts_with("MESOKIT_EXECUTOR_CONFIG: cannot read /nonexistent/x.json")
        );
        let path =
            std::env::temp_dir().join(format!("mesokit-exec-cfg-bad-{}.json", std::process::id()));
        std::fs::write(&path, r#"{"colour": 1}"#).unwrap();
        let e = err(&[(CONFIG_VAR, path.to_str().unwrap())]);
        assert!(e.contains(": unknown key `colour`"), "{e}");
        assert_eq!(
            err(&[("MESOKIT_EXECUTOR_PROGRESS_REGEX", "progress: [0-9]+")]),
            "MESOKIT_EXECUTOR_PROGRESS_REGEX: `progress: [0-9]+` has no capture group: the first \
             group must capture the percentage"
        );
        assert!(
            err(&[("MESOKIT_EXECUTOR_PROGRESS_REGEX", "(")]).starts_with(
                "MESOKIT_EXECUTOR_PROGRESS_REGEX: `(` is not a valid regular expression: "
            )
        );
        std::fs::write(&path, r#"{"progress_regex": "(x"}"#).unwrap();
        let e = err(&[(CONFIG_VAR, path.to_str().unwrap())]);
        assert!(
            e.contains(": `progress_regex`: `(x` is not a valid regular expression"),
            "{e}"
        );
        let _ = std::fs::remove_file(path);
    }
}
