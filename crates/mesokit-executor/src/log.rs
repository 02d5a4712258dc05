//! A small `tracing` subscriber for the executor's own log: one plain-text line per event on
//! stderr (`<time> <LEVEL> <target>: <message> key=value …`), up to a maximum level. It
//! exists so that the dedicated `mesokit-executor` binary needs neither `tracing-subscriber`
//! nor its regex-based filters: every page of code counts against each task.

use std::fmt::{self, Write as _};
use std::io::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};

/// Writes events at `max` and above to stderr.
#[derive(Debug)]
pub struct StderrLog {
    max: Level,
    next_span: AtomicU64,
}

impl StderrLog {
    /// A log of events at `max` level and more severe.
    pub fn new(max: Level) -> Self {
        StderrLog {
            max,
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

impl Subscriber for StderrLog {
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
        let _ = std::io::stderr().write_all(line.0.as_bytes());
    }

    fn enter(&self, _: &Id) {}

    fn exit(&self, _: &Id) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels() {
        let log = StderrLog::new(Level::INFO);
        assert_eq!(log.max_level_hint(), Some(Level::INFO.into()));
    }
}
