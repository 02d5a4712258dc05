//! Progress read from a task's output, as Cook's executor does it: lines of the task's `stdout`,
//! `stderr` and of a progress file that match a regular expression give a percentage and a
//! message, which take the same way as a `PATCH` of the task API ([`crate::api`]).
//!
//! # Turning it on
//!
//! Per task, with labels:
//!
//! * `progress_regex`: the regular expression ([`regex_lite`] syntax). Its first capture group
//!   is the percentage, a number from 0 to 100 (fractions allowed, rounded to a whole number as
//!   the API rounds `progress`); the second, if any, is the message (trimmed; cut to
//!   [`crate::Settings::max_message_length`] characters as the API cuts it). An empty (or
//!   blank) value turns the tracking off for the task, whatever the operator's default.
//! * `progress_file`: the progress file, relative to the task's sandbox unless absolute.
//!
//! The operator's defaults are `MESOKIT_EXECUTOR_PROGRESS_REGEX` / `progress_regex` and
//! `MESOKIT_EXECUTOR_PROGRESS_FILE` / `progress_file` ([`crate::config`]). A task is tracked
//! when it has a regex (its label, else the operator's) or a progress file (its label, else the
//! operator's); with a file but no regex the regex is Cook's default, [`DEFAULT_REGEX`]. The
//! progress file defaults to `<executor id>.progress` in the task's sandbox (Cook's name; a `/`
//! in the id becomes `_`), and its absolute path is given to every command of the task as
//! [`FILE_VAR`].
//!
//! A regex that does not compile, or has no capture group, fails the task before anything runs
//! (TASK_FAILED, reason `REASON_TASK_INVALID`, the message naming the label and the regex); a
//! bad operator default stops the executor at start-up with a message naming the variable.
//!
//! # Reading
//!
//! The three files are tailed: polled every 50 ms while they grow, less often (up to
//! [`MAX_POLL`]) while they do not, reading only the new bytes, at most [`READ_BUDGET`] bytes
//! per file and poll. A line ends at `\n` or `\r` (progress bars redraw with `\r`); a line
//! longer than [`MAX_LINE`] bytes is matched on its first [`MAX_LINE`] bytes and the rest is
//! skipped, so a task writing without newlines costs no memory. Invalid UTF-8 is replaced. A
//! path that is not a regular file (`/dev/null`, a FIFO) is not read. A file replaced by
//! another (log rotation) is read to its end, then the new one from its start; a truncated
//! file is read again from its start.
//!
//! A line without the plain text the regex starts with (`progress:` for [`DEFAULT_REGEX`]) is
//! skipped without running the regex. Lines that do not match, or whose percentage is not a
//! number from 0 to 100, are ignored. Of
//! the matches of one poll only the last counts. When the task's commands have all ended, the
//! files are read one last time (at most the last [`FINAL_READ`] bytes of each) before the
//! task's terminal update, so the last progress of the task is always reported.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use mesokit_proto::v1::TaskInfo;
use regex_lite::{CaptureLocations, Regex};

use crate::process::{CommandSpec, Output};

/// Label with a task's progress regex.
pub const REGEX_LABEL: &str = "progress_regex";
/// Label with a task's progress file.
pub const FILE_LABEL: &str = "progress_file";
/// Variable holding the progress file's path in the task's environment (Cook's name).
pub const FILE_VAR: &str = "EXECUTOR_PROGRESS_OUTPUT_FILE";
/// The regex used when only a progress file is given: the one Cook's scheduler sends.
pub const DEFAULT_REGEX: &str = r"progress:\s+([0-9]*\.?[0-9]+)($|\s+.*)";
/// Bytes of a line looked at (Cook's `EXECUTOR_MAX_BYTES_READ_PER_LINE` default).
pub const MAX_LINE: usize = 4096;
/// Bytes read from one file in one poll: bounds the time of a poll when a task writes fast.
pub const READ_BUDGET: usize = 256 * 1024;
/// Bytes read from the end of each file when the task is over: a task that wrote more than
/// this since the last poll has its earlier lines skipped.
pub const FINAL_READ: u64 = 16 * 1024 * 1024;
/// Shortest time between two polls.
pub const MIN_POLL: Duration = Duration::from_millis(50);
/// Longest time between two polls (of files that did not grow).
pub const MAX_POLL: Duration = Duration::from_millis(800);

/// A compiled progress regex.
#[derive(Debug, Clone)]
pub struct Pattern {
    regex: Regex,
    /// Text every match contains ([`required_literal`]): a line without it is not run through
    /// the regex, which is much slower than a substring search.
    literal: Option<String>,
}

/// Two patterns are equal when their texts are.
impl PartialEq for Pattern {
    fn eq(&self, other: &Pattern) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Pattern {
    /// Compiles `text`; the error says why it cannot be used.
    pub fn new(text: &str) -> Result<Pattern, String> {
        let regex = Regex::new(text)
            .map_err(|e| format!("`{text}` is not a valid regular expression: {e}"))?;
        if regex.captures_len() < 2 {
            return Err(format!(
                "`{text}` has no capture group: the first group must capture the percentage"
            ));
        }
        Ok(Pattern {
            literal: required_literal(text),
            regex,
        })
    }

    /// The regex's text.
    pub fn as_str(&self) -> &str {
        self.regex.as_str()
    }

    /// The percentage and message of `line`, if it matches with a percentage from 0 to 100.
    /// The message is the second group, trimmed, cut to `max_message` characters; `None` when
    /// there is no second group or it is blank.
    pub fn match_line(&self, line: &str, max_message: usize) -> Option<(u8, Option<String>)> {
        self.match_with(&mut self.regex.capture_locations(), line, max_message)
    }

    fn match_with(
        &self,
        locs: &mut CaptureLocations,
        line: &str,
        max_message: usize,
    ) -> Option<(u8, Option<String>)> {
        if let Some(literal) = &self.literal
            && !line.contains(literal.as_str())
        {
            return None;
        }
        self.regex.captures_read(locs, line)?;
        let group = |i| locs.get(i).map(|(s, e)| line[s..e].trim());
        let percent: f64 = group(1)?.parse().ok()?;
        if !(0.0..=100.0).contains(&percent) {
            return None;
        }
        let message = group(2)
            .filter(|m| !m.is_empty())
            .map(|m| crate::api::cut(m.to_owned(), max_message));
        Some((percent.round() as u8, message))
    }
}

/// The plain characters a regex starts with (after a `^`), which every match contains; `None`
/// when there are none or the regex has an alternation (whose other branch could match
/// without them). A character under `*`, `?` or `{…}` is not required, so it is left out.
fn required_literal(pattern: &str) -> Option<String> {
    if may_alternate(pattern) {
        return None;
    }
    let mut literal = String::new();
    for c in pattern.strip_prefix('^').unwrap_or(pattern).chars() {
        if "\\.+*?()[]{}^$|".contains(c) {
            if matches!(c, '*' | '?' | '{') {
                literal.pop();
            }
            break;
        }
        literal.push(c);
    }
    (!literal.is_empty()).then_some(literal)
}

/// Whether `pattern` has a `|` outside any group (or a class this reading is not sure of).
fn may_alternate(pattern: &str) -> bool {
    let mut depth = 0usize;
    let mut chars = pattern.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                chars.next();
            }
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            '|' if depth == 0 => return true,
            '[' => {
                chars.next_if_eq(&'^');
                // A `]` first in a class is a plain `]`.
                chars.next_if_eq(&']');
                loop {
                    match chars.next() {
                        None => return true,
                        Some('\\') => {
                            chars.next();
                        }
                        Some('[') if chars.next_if_eq(&':').is_some() => {
                            // `[:alpha:]`: to its `:]`.
                            while chars.next().is_some_and(|c| c != ']') {}
                        }
                        // Nested classes and set operations: not worth reading here.
                        Some('[') => return true,
                        Some(']') => break,
                        Some(_) => {}
                    }
                }
            }
            _ => {}
        }
    }
    false
}

/// What to track for one task: made by [`tracking`], run by the driver.
#[derive(Debug, Clone, PartialEq)]
pub struct Tracking {
    /// The regex.
    pub pattern: Pattern,
    /// The files to tail: the task's stdout and stderr (when they are files) and the progress
    /// file.
    pub files: Vec<PathBuf>,
    /// The progress file.
    pub progress_file: PathBuf,
    /// Longest message, in characters.
    pub max_message: usize,
}

/// The progress tracking of `task`, if it has any (see the [module documentation](self)),
/// with [`FILE_VAR`] set in `spec`'s environment. `operator` is the operator's regex and
/// progress file; `sandbox` the executor's sandbox, where inherited outputs go. The error
/// names the label and what was wrong.
pub fn tracking(
    task: &TaskInfo,
    operator: (Option<&Pattern>, Option<&str>),
    sandbox: Option<&Path>,
    max_message: usize,
    spec: &mut CommandSpec,
) -> Result<Option<Tracking>, String> {
    let label = |key: &str| {
        task.labels
            .iter()
            .flat_map(|l| &l.labels)
            .find(|l| l.key == key)
            .map(|l| l.value.as_deref().unwrap_or(""))
    };
    let file_label = label(FILE_LABEL).map(str::trim).filter(|f| !f.is_empty());
    let pattern = match label(REGEX_LABEL) {
        Some(text) if text.trim().is_empty() => return Ok(None),
        Some(text) => Pattern::new(text).map_err(|e| format!("label `{REGEX_LABEL}`: {e}"))?,
        None => match (operator.0, file_label.or(operator.1)) {
            (Some(p), _) => p.clone(),
            (None, Some(_)) => Pattern::new(DEFAULT_REGEX)?,
            (None, None) => return Ok(None),
        },
    };
    let name = match file_label.or(operator.1) {
        Some(name) => name.to_owned(),
        None => {
            let id = spec
                .env
                .iter()
                .find(|(k, _)| k == "MESOS_EXECUTOR_ID")
                .map_or(task.task_id.value.as_str(), |(_, v)| v.as_str());
            format!("{}.progress", id.replace(['/', '\0'], "_"))
        }
    };
    let progress_file = match &spec.cwd {
        Some(dir) => dir.join(name),
        None => PathBuf::from(name),
    };
    crate::launch::set(&mut spec.env, FILE_VAR, &progress_file.to_string_lossy());
    let output = |o: &Output, name: &str| match o {
        Output::File(p) => Some(p.clone()),
        Output::Inherit => sandbox.map(|s| s.join(name)),
        Output::Pipe => None,
    };
    let mut files: Vec<PathBuf> = [
        output(&spec.stdout, "stdout"),
        output(&spec.stderr, "stderr"),
    ]
    .into_iter()
    .flatten()
    .collect();
    if !files.contains(&progress_file) {
        files.push(progress_file.clone());
    }
    Ok(Some(Tracking {
        pattern,
        files,
        progress_file,
        max_message,
    }))
}

/// The reading end of one file: new bytes only, split into lines of at most [`MAX_LINE`].
#[derive(Debug)]
pub struct Tail {
    path: PathBuf,
    file: Option<File>,
    /// Device and inode of `file`, to notice a replacement.
    id: (u64, u64),
    /// Bytes of `file` read so far, to notice a truncation.
    pos: u64,
    /// The line being read (at most [`MAX_LINE`] bytes).
    line: Vec<u8>,
    /// The current line was longer than [`MAX_LINE`]: its rest is skipped.
    skipping: bool,
}

impl Tail {
    /// A tail of `path`, which need not exist yet.
    pub fn new(path: impl Into<PathBuf>) -> Tail {
        Tail {
            path: path.into(),
            file: None,
            id: (0, 0),
            pos: 0,
            line: Vec::new(),
            skipping: false,
        }
    }

    /// Reads what was added since the last call, at most `budget` bytes, handing each
    /// complete line to `on_line`. Returns the bytes read. A file that does not exist or is
    /// not a regular file reads as empty.
    pub fn read(&mut self, budget: usize, on_line: &mut dyn FnMut(&[u8])) -> io::Result<usize> {
        let mut buf = [0u8; 8192];
        let mut total = 0;
        let mut reopened = false;
        loop {
            if self.file.is_none() && !self.open(None)? {
                return Ok(total);
            }
            let Some(file) = self.file.as_mut() else {
                return Ok(total);
            };
            let want = buf.len().min(budget - total);
            if want == 0 {
                return Ok(total);
            }
            let n = file.read(&mut buf[..want])?;
            if n > 0 {
                self.pos += n as u64;
                total += n;
                self.push(&buf[..n], on_line);
                continue;
            }
            // At the end: has the file been replaced or truncated meanwhile?
            if reopened || !self.changed()? {
                return Ok(total);
            }
            reopened = true;
        }
    }

    /// Reads the rest, as [`Tail::read`], skipping to the last [`FINAL_READ`] bytes when more
    /// are left; a last line without its newline counts too.
    pub fn finish(&mut self, on_line: &mut dyn FnMut(&[u8])) -> io::Result<()> {
        if self.file.is_none() {
            self.open(None)?;
        }
        if let Some(file) = &mut self.file {
            let len = file.metadata()?.len();
            if len > self.pos.saturating_add(FINAL_READ) {
                // Where we land is likely mid-line: that line is not looked at.
                self.pos = file.seek(SeekFrom::Start(len - FINAL_READ))?;
                self.line.clear();
                self.skipping = true;
            }
        }
        // Once: a process still writing cannot keep us here.
        self.read(FINAL_READ as usize, on_line)?;
        if !self.skipping && !self.line.is_empty() {
            on_line(&self.line);
        }
        self.line.clear();
        self.file = None;
        Ok(())
    }

    /// Opens the path if it is a regular file (`expect`: only if it is not the file of that
    /// device and inode). Returns whether a file is open.
    fn open(&mut self, expect_not: Option<(u64, u64)>) -> io::Result<bool> {
        let meta = match std::fs::metadata(&self.path) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e),
        };
        let id = (meta.dev(), meta.ino());
        if !meta.is_file() || expect_not == Some(id) {
            return Ok(false);
        }
        let file = match File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e),
        };
        // What was opened may not be what was looked at; look again, at what was opened.
        let meta = file.metadata()?;
        if !meta.is_file() {
            return Ok(false);
        }
        self.id = (meta.dev(), meta.ino());
        self.file = Some(file);
        self.pos = 0;
        self.line.clear();
        self.skipping = false;
        Ok(true)
    }

    /// At the end of the open file: switches to the file now at the path if it is another
    /// one, or rewinds if the file shrank. Returns whether there may be more to read.
    fn changed(&mut self) -> io::Result<bool> {
        if self.open(Some(self.id))? {
            return Ok(true);
        }
        if let Some(file) = &mut self.file
            && file.metadata()?.len() < self.pos
        {
            self.pos = file.seek(SeekFrom::Start(0))?;
            self.line.clear();
            self.skipping = false;
            return Ok(true);
        }
        Ok(false)
    }

    fn push(&mut self, mut bytes: &[u8], on_line: &mut dyn FnMut(&[u8])) {
        while !bytes.is_empty() {
            let end = bytes.iter().position(|b| matches!(b, b'\n' | b'\r'));
            let part = &bytes[..end.unwrap_or(bytes.len())];
            if !self.skipping {
                if self.line.capacity() == 0 {
                    // Once, and never more: a line is cut at MAX_LINE.
                    self.line.reserve_exact(MAX_LINE);
                }
                let room = MAX_LINE - self.line.len();
                self.line.extend_from_slice(&part[..part.len().min(room)]);
                if part.len() > room {
                    on_line(&self.line);
                    self.line.clear();
                    self.skipping = true;
                }
            }
            match end {
                Some(i) => {
                    if !self.skipping && !self.line.is_empty() {
                        on_line(&self.line);
                    }
                    self.line.clear();
                    self.skipping = false;
                    bytes = &bytes[i + 1..];
                }
                None => break,
            }
        }
    }
}

/// The tracking of one task: its tails and the latest progress and message found.
#[derive(Debug)]
pub struct Tracker {
    tails: Vec<Tail>,
    found: Found,
}

#[derive(Debug)]
struct Found {
    pattern: Pattern,
    locs: CaptureLocations,
    max_message: usize,
    progress: Option<u8>,
    message: Option<String>,
    /// A change not yet taken with [`Tracker::take_change`].
    changed: bool,
}

impl Tracker {
    /// A tracker of `tracking`'s files, from their start.
    pub fn new(tracking: Tracking) -> Tracker {
        Tracker {
            tails: tracking.files.into_iter().map(Tail::new).collect(),
            found: Found {
                locs: tracking.pattern.regex.capture_locations(),
                pattern: tracking.pattern,
                max_message: tracking.max_message,
                progress: None,
                message: None,
                changed: false,
            },
        }
    }

    /// Reads what the files gained (at most [`READ_BUDGET`] bytes of each). Returns the bytes
    /// read.
    pub fn poll(&mut self) -> usize {
        let mut total = 0;
        for tail in &mut self.tails {
            match tail.read(READ_BUDGET, &mut |line| self.found.line(line)) {
                Ok(n) => total += n,
                Err(e) => {
                    tracing::debug!(path = %tail.path.display(), error = %e, "cannot read");
                }
            }
        }
        total
    }

    /// Reads the files one last time ([`Tail::finish`]).
    pub fn finish(&mut self) {
        for tail in &mut self.tails {
            if let Err(e) = tail.finish(&mut |line| self.found.line(line)) {
                tracing::debug!(path = %tail.path.display(), error = %e, "cannot read");
            }
        }
    }

    /// The progress and message, if they changed since the last call. A message stays until
    /// a match gives another.
    pub fn take_change(&mut self) -> Option<(Option<u8>, Option<String>)> {
        let f = &mut self.found;
        std::mem::take(&mut f.changed).then(|| (f.progress, f.message.clone()))
    }
}

impl Found {
    fn line(&mut self, line: &[u8]) {
        let text = String::from_utf8_lossy(line);
        let Some((percent, message)) =
            self.pattern
                .match_with(&mut self.locs, &text, self.max_message)
        else {
            return;
        };
        if self.progress != Some(percent) {
            self.progress = Some(percent);
            self.changed = true;
        }
        if message.is_some() && message != self.message {
            self.message = message;
            self.changed = true;
        }
    }
}

/// Polls `tracker` and hands each change to `report` until a value arrives on `done`; then
/// reads the files one last time, reports, and only then passes the value on to `forward`,
/// so that the last progress is in before the task's end.
pub(crate) async fn watch<T>(
    mut tracker: Tracker,
    mut report: impl FnMut(Option<u8>, Option<String>),
    mut done: tokio::sync::mpsc::UnboundedReceiver<T>,
    forward: tokio::sync::mpsc::UnboundedSender<T>,
) {
    let mut interval = MIN_POLL;
    loop {
        tokio::select! {
            end = done.recv() => {
                tracker.finish();
                if let Some((progress, message)) = tracker.take_change() {
                    report(progress, message);
                }
                if let Some(end) = end {
                    let _ = forward.send(end);
                }
                return;
            }
            () = tokio::time::sleep(interval) => {
                let read = tracker.poll();
                if let Some((progress, message)) = tracker.take_change() {
                    report(progress, message);
                }
                interval = if read > 0 { MIN_POLL } else { (interval * 2).min(MAX_POLL) };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn lines_give_a_percentage_and_a_message() {
        let p = Pattern::new(DEFAULT_REGEX).unwrap();
        let m = |line: &str| p.match_line(line, 12);
        assert_eq!(m("progress: 50"), Some((50, None)));
        assert_eq!(
            m("progress: 12.5 loading  "),
            Some((13, Some("loading".into())))
        );
        assert_eq!(m("x progress: .4 a"), Some((0, Some("a".into()))));
        assert_eq!(m("progress: 100 done"), Some((100, Some("done".into()))));
        assert_eq!(
            m("progress: 7 a message that is too long"),
            Some((7, Some("a message...".into())))
        );
        assert_eq!(m("progress: 100.5 too much"), None);
        assert_eq!(m("progress: 1000"), None);
        assert_eq!(m("progress:50"), None);
        assert_eq!(m("progress: x"), None);
        assert_eq!(m("nothing to see"), None);

        let one = Pattern::new(r"^(\d+)% done").unwrap();
        assert_eq!(
            one.match_line("40% done, message ignored", 512),
            Some((40, None))
        );
        let free = Pattern::new(r"at (.*) percent: (.*)").unwrap();
        assert_eq!(free.match_line("at -1 percent: no", 512), None);
        assert_eq!(free.match_line("at NaN percent: no", 512), None);
        assert_eq!(free.match_line("at inf percent: no", 512), None);
        assert_eq!(
            free.match_line("at  99.5 percent:   ", 512),
            Some((100, None))
        );
        assert_eq!(
            free.match_line("at 3 percent: déjà vu", 512),
            Some((3, Some("déjà vu".into())))
        );
    }

    #[test]
    fn the_required_literal_is_only_what_every_match_has() {
        assert_eq!(
            required_literal(DEFAULT_REGEX).as_deref(),
            Some("progress:")
        );
        assert_eq!(required_literal("^done ([0-9]+)").as_deref(), Some("done "));
        assert_eq!(required_literal("abc*([0-9])").as_deref(), Some("ab"));
        assert_eq!(required_literal("ab{0,1}([0-9])").as_deref(), Some("a"));
        assert_eq!(required_literal("a+([0-9])").as_deref(), Some("a"));
        assert_eq!(required_literal("x*([0-9])"), None);
        assert_eq!(required_literal("(?i)progress: ([0-9]+)"), None);
        assert_eq!(required_literal("progress: ([0-9]+)|([0-9]+)%"), None);
        assert_eq!(required_literal(r"\d([0-9])"), None);
        assert_eq!(required_literal("p: ([|])|(x)"), None);
        assert_eq!(required_literal(r"p: (\|)([]|])").as_deref(), Some("p: "));
        assert_eq!(
            required_literal("p: ([[:digit:]]+)").as_deref(),
            Some("p: ")
        );
        assert_eq!(required_literal("p: ([a[b]])"), None);
        let p = Pattern::new("abc*([0-9]+)").unwrap();
        assert_eq!(p.match_line("ab7", 10), Some((7, None)), "c is optional");
    }

    #[test]
    fn unusable_regexes_say_why() {
        let e = Pattern::new("progress: ([0-9]+").unwrap_err();
        assert!(
            e.starts_with("`progress: ([0-9]+` is not a valid regular expression: "),
            "{e}"
        );
        assert_eq!(
            Pattern::new("progress").unwrap_err(),
            "`progress` has no capture group: the first group must capture the percentage"
        );
        assert!(Pattern::new("").is_err());
    }

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "mesokit-progress-unit-{}-{name}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn lines(tail: &mut Tail) -> Vec<String> {
        let mut out = Vec::new();
        tail.read(usize::MAX, &mut |l| {
            out.push(String::from_utf8_lossy(l).into_owned())
        })
        .unwrap();
        out
    }

    #[test]
    fn a_tail_reads_new_complete_lines_only() {
        let dir = scratch("tail");
        let path = dir.join("out");
        let mut tail = Tail::new(&path);
        assert!(lines(&mut tail).is_empty(), "no file yet");
        let mut f = File::create(&path).unwrap();
        f.write_all(b"one\ntw").unwrap();
        assert_eq!(lines(&mut tail), ["one"]);
        f.write_all(b"o\r\n\nthree\rfour").unwrap();
        assert_eq!(lines(&mut tail), ["two", "three"]);
        assert!(lines(&mut tail).is_empty());
        let mut rest = Vec::new();
        tail.finish(&mut |l| rest.push(l.to_vec())).unwrap();
        assert_eq!(rest, [b"four".to_vec()], "the last line counts at the end");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_long_line_is_cut_and_costs_no_memory() {
        let dir = scratch("long");
        let path = dir.join("out");
        let mut f = File::create(&path).unwrap();
        let mut tail = Tail::new(&path);
        for _ in 0..64 {
            f.write_all(&[b'a'; 16 * 1024]).unwrap();
            let got = lines(&mut tail);
            assert!(tail.line.capacity() <= MAX_LINE, "{}", tail.line.capacity());
            assert!(got.iter().all(|l| l.len() == MAX_LINE));
        }
        f.write_all(b"aaa\nprogress: 5\n").unwrap();
        assert_eq!(lines(&mut tail), ["progress: 5"]);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_tail_follows_replacement_and_truncation() {
        let dir = scratch("rotate");
        let path = dir.join("out");
        std::fs::write(&path, "a\n").unwrap();
        let mut tail = Tail::new(&path);
        assert_eq!(lines(&mut tail), ["a"]);
        // Rotation: what the old file got before the rename is still read, then the new one.
        let mut old = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        old.write_all(b"b\n").unwrap();
        std::fs::rename(&path, dir.join("out.1")).unwrap();
        std::fs::write(&path, "c\n").unwrap();
        assert_eq!(lines(&mut tail), ["b", "c"]);
        // Truncation (copytruncate): from the start again.
        std::fs::write(&path, "").unwrap();
        assert!(lines(&mut tail).is_empty());
        std::fs::write(&path, "d\n").unwrap();
        assert_eq!(lines(&mut tail), ["d"]);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn only_regular_files_are_read() {
        let mut tail = Tail::new("/dev/zero");
        assert!(lines(&mut tail).is_empty());
        tail.finish(&mut |_| panic!("nothing")).unwrap();
        let dir = scratch("dir");
        assert!(lines(&mut Tail::new(&dir)).is_empty());
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn the_budget_bounds_one_read_and_finish_skips_to_the_end() {
        let dir = scratch("budget");
        let path = dir.join("out");
        let mut f = File::create(&path).unwrap();
        let mut tail = Tail::new(&path);
        f.write_all(&b"progress: 1\n".repeat(1000)).unwrap();
        let mut n = 0;
        assert_eq!(tail.read(1200, &mut |_| n += 1).unwrap(), 1200);
        assert_eq!(n, 100);
        // More than FINAL_READ behind: the start is skipped, the end is read.
        let chunk = vec![b'x'; 1 << 20];
        for _ in 0..(FINAL_READ >> 20) + 1 {
            f.write_all(&chunk).unwrap();
        }
        f.write_all(b"\nlast\n").unwrap();
        let mut seen = Vec::new();
        tail.finish(&mut |l| seen.push(l.len())).unwrap();
        assert_eq!(
            seen,
            [4],
            "only what follows the first newline after the skip"
        );
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_tracker_keeps_the_last_match_and_the_last_message() {
        let dir = scratch("tracker");
        let (out, file) = (dir.join("stdout"), dir.join("p"));
        let mut tracker = Tracker::new(Tracking {
            pattern: Pattern::new(DEFAULT_REGEX).unwrap(),
            files: vec![out.clone(), file.clone()],
            progress_file: file.clone(),
            max_message: 512,
        });
        tracker.poll();
        assert_eq!(tracker.take_change(), None);
        std::fs::write(&out, "progress: 10 start\nprogress: 20 more\nnoise\n").unwrap();
        tracker.poll();
        assert_eq!(tracker.take_change(), Some((Some(20), Some("more".into()))));
        std::fs::write(&file, "progress: 30\n").unwrap();
        tracker.poll();
        assert_eq!(tracker.take_change(), Some((Some(30), Some("more".into()))));
        tracker.poll();
        assert_eq!(tracker.take_change(), None, "nothing new");
        let _ = std::fs::remove_dir_all(dir);
    }
}
