//! The executor's own log: where it goes ([`LogTarget`]: `executor.log` in the sandbox, apart
//! from the task's `stdout`/`stderr`), and a small `tracing` subscriber writing one plain-text
//! line per event (`<time> <LEVEL> <target>: <message> key=value …`) up to a maximum level.
//! The subscriber exists so that the dedicated `mesokit-executor` binary needs neither
//! `tracing-subscriber` nor its regex-based filters: every page of code counts against each
//! task.

use std::fmt::{self, Write as _};
use std::fs::File;
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Names the executor's log file: a path, or `-` for stderr. Like every `MESOKIT_EXECUTOR_`
/// variable it never reaches the task.
pub const LOG_FILE_VAR: &str = "MESOKIT_EXECUTOR_LOG_FILE";

/// The log file's name in the sandbox when [`LOG_FILE_VAR`] is not set.
pub const SANDBOX_LOG_NAME: &str = "executor.log";

/// Where the executor's own log goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogTarget {
    /// The executor's stderr.
    Stderr,
    /// A file, appended to.
    File(PathBuf),
}

impl LogTarget {
    /// [`LOG_FILE_VAR`] when set (`-` or empty: stderr); else `executor.log` in the sandbox
    /// (`MESOS_SANDBOX`, set by every agent), so that the executor's lines stay out of the
    /// task's `stderr`, which the agent gives the executor and a single task inherits; else
    /// (not started by an agent) stderr.
    pub fn from_env(var: impl Fn(&str) -> Option<String>) -> LogTarget {
        match var(LOG_FILE_VAR) {
            Some(v) if v.trim().is_empty() || v.trim() == "-" => LogTarget::Stderr,
            Some(v) => LogTarget::File(PathBuf::from(v)),
            None => match var("MESOS_SANDBOX") {
                Some(dir) if !dir.is_empty() => {
                    LogTarget::File(PathBuf::from(dir).join(SANDBOX_LOG_NAME))
                }
                _ => LogTarget::Stderr,
            },
        }
    }

    /// Opens the file (created, appended to); `None` for stderr.
    pub fn open(&self) -> Result<Option<File>, String> {
        match self {
            LogTarget::Stderr => Ok(None),
            LogTarget::File(path) => std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map(Some)
                .map_err(|e| format!("{LOG_FILE_VAR}: cannot open {}: {e}", path.display())),
        }
    }
}

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};

/// Writes events at `max` and above to a file, or to stderr.
#[derive(Debug)]
pub struct PlainLog {
    max: Level,
    file: Option<Mutex<File>>,
    next_span: AtomicU64,
}

impl PlainLog {
    /// A log of events at `max` level and more severe, to `file` (stderr when `None`).
    pub fn new(max: Level, file: Option<File>) -> Self {
        PlainLog {
            max,
            file: file.map(Mutex::new),
            next_span: AtomicU64::new(1),
        }
    }

    /// The level `RUST_LOG` names when it is just a level (`debug`, `warn`, …), else INFO.
    /// (Per-target directives are not understood here; `mesokit executor` understands them.)
    pub fn level_from_env() -> Level {
        match std::env::var("RUST_LOG")
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase()
            .as_str()
        {
            "trace" => Level::TRACE,
            "debug" => Level::DEBUG,
            "warn" => Level::WARN,
            "error" => Level::ERROR,
            _ => Level::INFO,
        }
    }
}

struct Line(String);

impl Visit for Line {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.0.push_str(value);
        } else {
            let _ = write!(self.0, " {}={value:?}", field.name());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.0, "{value:?}");
        } else {
            let _ = write!(self.0, " {}={value:?}", field.name());
        }
    }
}

impl Subscriber for PlainLog {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        *metadata.level() <= self.max
    }

    fn max_level_hint(&self) -> Option<tracing::level_filters::LevelFilter> {
        Some(self.max.into())
    }

    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(self.next_span.fetch_add(1, Ordering::Relaxed))
    }

    fn record(&self, _: &Id, _: &Record<'_>) {}

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let meta = event.metadata();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let mut line = Line(format!(
            "{}.{:06} {:>5} {}: ",
            now.as_secs(),
            now.subsec_micros(),
            meta.level(),
            meta.target()
        ));
        event.record(&mut line);
        line.0.push('\n');
        match &self.file {
            Some(f) => {
                if let Ok(mut f) = f.lock() {
                    let _ = f.write_all(line.0.as_bytes());
                }
            }
            None => {
                let _ = std::io::stderr().write_all(line.0.as_bytes());
            }
        }
    }

    fn enter(&self, _: &Id) {}

    fn exit(&self, _: &Id) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels() {
        let log = PlainLog::new(Level::INFO, None);
        assert_eq!(log.max_level_hint(), Some(Level::INFO.into()));
    }

    #[test]
    fn target_is_the_sandbox_file_unless_told_otherwise() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        assert_eq!(
            LogTarget::from_env(env(&[("MESOS_SANDBOX", "/sb")])),
            LogTarget::File(PathBuf::from("/sb/executor.log"))
        );
        assert_eq!(LogTarget::from_env(env(&[])), LogTarget::Stderr);
        assert_eq!(
            LogTarget::from_env(env(&[("MESOS_SANDBOX", "/sb"), (LOG_FILE_VAR, "-")])),
            LogTarget::Stderr
        );
        assert_eq!(
            LogTarget::from_env(env(&[
                ("MESOS_SANDBOX", "/sb"),
                (LOG_FILE_VAR, "/var/x.log")
            ])),
            LogTarget::File(PathBuf::from("/var/x.log"))
        );
        let bad = LogTarget::File(PathBuf::from("/nonexistent/dir/x.log"));
        assert!(bad.open().unwrap_err().contains("/nonexistent/dir/x.log"));
    }

    #[test]
    fn lines_go_to_the_file() {
        let dir = std::env::temp_dir().join(format!("mesokit-log-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let target = LogTarget::File(dir.join("executor.log"));
        let log = PlainLog::new(Level::INFO, target.open().unwrap());
        tracing::subscriber::with_default(log, || {
            tracing::info!(task_id = "t1", "launched");
            tracing::debug!("not at this level");
        });
        let text = std::fs::read_to_string(dir.join("executor.log")).unwrap();
        assert!(text.contains("INFO"), "{text}");
        assert!(text.contains("launched task_id=\"t1\""), "{text}");
        assert!(!text.contains("not at this level"), "{text}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
