//! The external-command runner: runs `<cmd> <input> <output> <error>` as Criteo's
//! `mesos-command-modules` does (input JSON in a file and on stdin, result read from the
//! output file, the error file quoted as the cause of a failure). Bytes in, bytes out:
//! callers encode and decode the JSON.
//!
//! Where we differ from Criteo on purpose:
//! - a timeout keeps its own error ([`RunError::Timeout`]); Criteo's blocking callers turn it
//!   into a bare "Command execution error";
//! - every run has a timeout and runs the path directly, with no `/bin/sh -c` (Criteo's watch
//!   loop uses `system()` with no timeout);
//! - the temp files are removed on every path, also on error, timeout or cancellation;
//! - processes the command leaves behind in its process group are killed when it exits
//!   (on a timeout, the whole tree is killed, as Criteo does, also what left the group);
//! - a command that deletes its own temp files is not an error (a missing output file reads
//!   as empty output, a missing error file as no cause);
//! - the error file's text is trimmed and bounded to [`ERROR_FILE_LIMIT`] bytes.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::process::Command;

use crate::proctree::{self, Proc};

/// Timeout of an [`Invocation`] built with [`Invocation::new`]: Criteo's
/// `DEFAULT_COMMAND_TIMEOUT`.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a timed-out command's process group has between SIGTERM and SIGKILL.
pub const KILL_GRACE: Duration = Duration::from_secs(1);

/// At most this many bytes of the error file are quoted in [`RunError::Exit`].
pub const ERROR_FILE_LIMIT: usize = 4096;

/// Makes temp file names unique within this process; `create_new` catches the rest
/// (stale files of an earlier process with the same pid).
static NEXT_RUN: AtomicU64 = AtomicU64::new(0);

/// Runs external commands. Cheap to clone; one runner can serve many concurrent runs.
#[derive(Debug, Clone)]
pub struct Runner {
    dir: PathBuf,
    debug: bool,
}

impl Default for Runner {
    /// A runner that keeps its temp files in [`std::env::temp_dir`], debug off.
    fn default() -> Self {
        Self::new(std::env::temp_dir())
    }
}

impl Runner {
    /// A runner that creates its temp files (mode 0600) in `dir`, which must exist.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            debug: false,
        }
    }

    /// With `debug` on, each run logs its input and output at INFO level (Criteo's `debug`
    /// parameter, as its README describes it). Off, only the call itself is logged, at DEBUG.
    pub fn debug(mut self, debug: bool) -> Self {
        self.debug = debug;
        self
    }

    /// The directory holding the temp files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Runs `inv.command <input> <output> <error>` in a new process group, stdin = the input
    /// file, stdout and stderr inherited. Exit 0 gives the content of the output file.
    ///
    /// On timeout the whole process tree (the group, its descendants, and the groups and
    /// sessions they lead) gets SIGTERM, then SIGKILL [`KILL_GRACE`] later. When the
    /// command exits, whatever is left in its group is killed (a daemon meant to outlive the
    /// command must leave the group, e.g. with `setsid`). The temp files are removed in every
    /// case, also when this future is dropped before it completes (the group is then killed).
    pub async fn run(&self, inv: &Invocation) -> Result<Outcome, RunError> {
        let start = Instant::now();
        let _in_flight = InFlight::enter();
        if self.debug {
            tracing::info!(
                label = %inv.label,
                command = %inv.command,
                timeout = ?inv.timeout,
                input = %String::from_utf8_lossy(&inv.input),
                "calling command"
            );
        } else {
            tracing::debug!(label = %inv.label, command = %inv.command, timeout = ?inv.timeout, "calling command");
        }

        // The temp files are created, read and removed right on this task: a few local
        // syscalls, cheaper than handing each step to the blocking pool (two thread
        // hand-offs per run; docs/benchmarks.md, "Agent command modules").
        let (mut files, stdin) =
            RunFiles::create(&self.dir, &inv.input).map_err(|(path, source)| {
                RunError::TempFile {
                    label: inv.label.clone(),
                    path,
                    source,
                }
            })?;

        let mut child = spawn(inv, &files, stdin).await?;
        files.pgid = child.id();

        let status = match tokio::time::timeout(inv.timeout, child.wait()).await {
            Ok(status) => status,
            Err(_) => {
                // The whole tree, as Mesos's `os::killtree`: the group, and what left it
                // (`setsid`) but descends from it, found while the leader still lives (reads
                // all of /proc: only on timeouts).
                let tree = files.pgid.map(proctree::tree).unwrap_or_default();
                files.signal(libc::SIGTERM);
                signal_each(&tree, libc::SIGTERM);
                // Whether or not the leader went, the rest of the tree gets SIGKILL.
                let _ = tokio::time::timeout(KILL_GRACE, child.wait()).await;
                let mut tree = tree;
                if let Some(pgid) = files.pgid {
                    tree.extend(proctree::tree(pgid));
                }
                files.signal(libc::SIGKILL);
                signal_each(&tree, libc::SIGKILL);
                let _ = child.wait().await;
                files.pgid = None;
                drop(files);
                tracing::warn!(label = %inv.label, command = %inv.command, timeout = ?inv.timeout, "command timed out, killed");
                return Err(RunError::Timeout {
                    label: inv.label.clone(),
                    command: inv.command.clone(),
                    after: inv.timeout,
                });
            }
        };
        // Stragglers: children the command left in its group.
        files.signal(libc::SIGKILL);
        files.pgid = None;
        let status = status.map_err(|source| RunError::Wait {
            label: inv.label.clone(),
            command: inv.command.clone(),
            source,
        })?;

        if status.success() {
            let output = files
                .read_output()
                .map_err(|(path, source)| RunError::ReadOutput {
                    label: inv.label.clone(),
                    path,
                    source,
                })?;
            let elapsed = start.elapsed();
            if self.debug {
                tracing::info!(
                    label = %inv.label,
                    command = %inv.command,
                    ?elapsed,
                    output = %String::from_utf8_lossy(&output),
                    "command succeeded"
                );
            } else {
                tracing::debug!(label = %inv.label, command = %inv.command, ?elapsed, "command succeeded");
            }
            Ok(Outcome { output, elapsed })
        } else {
            let cause = files.read_error();
            Err(RunError::Exit {
                label: inv.label.clone(),
                command: inv.command.clone(),
                status: ExitKind::from_status(status),
                cause,
            })
        }
    }
}

/// One run of an external command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    /// Path of the executable, run as is: no shell, no argument splitting. A bare name is
    /// looked up in `PATH`.
    pub command: String,
    /// Content of the input file, also fed on stdin (usually JSON).
    pub input: Vec<u8>,
    /// How long the command may run before its process group is killed.
    pub timeout: Duration,
    /// What the run is for, e.g. `"isolator prepare"`; starts every error message.
    pub label: String,
}

impl Invocation {
    /// A run of `command` with `input`, with the [`DEFAULT_TIMEOUT`].
    pub fn new(
        label: impl Into<String>,
        command: impl Into<String>,
        input: impl Into<Vec<u8>>,
    ) -> Self {
        Self {
            command: command.into(),
            input: input.into(),
            timeout: DEFAULT_TIMEOUT,
            label: label.into(),
        }
    }

    /// Sets the timeout.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

/// A command that exited with status 0.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The whole content of the output file, untrimmed; empty if the command wrote nothing
    /// (or deleted the file).
    pub output: Vec<u8>,
    /// From the start of the run to the output being read.
    pub elapsed: Duration,
}

/// How a failed command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitKind {
    /// Exited with this non-zero code.
    Code(i32),
    /// Killed by this signal.
    Signal(i32),
}

impl ExitKind {
    fn from_status(status: ExitStatus) -> Self {
        match (status.code(), status.signal()) {
            (Some(code), _) => Self::Code(code),
            (None, Some(signal)) => Self::Signal(signal),
            // A reaped child on Unix always has a code or a signal.
            (None, None) => Self::Code(-1),
        }
    }
}

impl fmt::Display for ExitKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Code(code) => write!(f, "exited with return code {code}"),
            Self::Signal(signal) => write!(f, "exited via signal {signal}"),
        }
    }
}

/// Why a run failed. Every message starts with the invocation's label and names the command.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunError {
    /// A temp file could not be created or written.
    #[error(
        "{label}: cannot create the temporary file {}: {source}; check that the directory exists and is writable",
        path.display()
    )]
    TempFile {
        label: String,
        path: PathBuf,
        source: io::Error,
    },
    /// The command could not be started.
    #[error(
        "{label}: cannot run command \"{command}\": {source}; check that the path exists and is executable"
    )]
    Spawn {
        label: String,
        command: String,
        source: io::Error,
    },
    /// The command ran longer than its timeout; its process group was killed.
    #[error(
        "{label}: command \"{command}\" took too long to execute and was killed after {after:?}; raise its timeout or make it faster"
    )]
    Timeout {
        label: String,
        command: String,
        after: Duration,
    },
    /// The command exited with a non-zero code or was killed by a signal. `cause` is the
    /// trimmed error file, at most [`ERROR_FILE_LIMIT`] bytes, empty if there was none.
    #[error("{label}: command \"{command}\" {status}.{}", cause_suffix(cause))]
    Exit {
        label: String,
        command: String,
        status: ExitKind,
        cause: String,
    },
    /// Waiting for the command failed (should not happen).
    #[error("{label}: cannot wait for command \"{command}\": {source}")]
    Wait {
        label: String,
        command: String,
        source: io::Error,
    },
    /// The command exited 0 but its output file could not be read.
    #[error("{label}: cannot read the output file {}: {source}", path.display())]
    ReadOutput {
        label: String,
        path: PathBuf,
        source: io::Error,
    },
}

fn cause_suffix(cause: &str) -> String {
    if cause.is_empty() {
        " The error file is empty.".to_owned()
    } else {
        format!(" Cause: {cause}")
    }
}

/// Runs in flight in this process, over all runners; see [`spawn`].
static IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);

/// Spawns handed to the spawner at one time, at most; see [`spawn`].
const SPAWN_THREADS: usize = 4;
static SPAWNING: AtomicUsize = AtomicUsize::new(0);

/// The spawner: a small runtime of its own, on a thread of its own, that lives as long as
/// the process. Handed-off spawns run on its blocking pool, and the children they start are
/// registered with its reactor, which is never shut down: a spawn on the caller's blocking
/// pool can finish while the caller's runtime shuts down, and tokio then cannot register the
/// child and drops it without killing it. `None` if the thread could not be started.
fn spawner() -> Option<&'static tokio::runtime::Handle> {
    static SPAWNER: OnceLock<Option<tokio::runtime::Handle>> = OnceLock::new();
    SPAWNER
        .get_or_init(|| {
            // The runtime is built on its own thread: dropping one (should building fail
            // half-way) is not allowed on the caller's, which is inside a runtime.
            let (tx, rx) = std::sync::mpsc::sync_channel(1);
            std::thread::Builder::new()
                .name("mesokit-spawner".into())
                .spawn(move || {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_io()
                        .max_blocking_threads(SPAWN_THREADS)
                        .thread_name("mesokit-spawner")
                        .build();
                    let runtime = match runtime {
                        Ok(runtime) => runtime,
                        Err(e) => {
                            tracing::warn!(error = %e, "cannot start the command spawner; commands are spawned by their callers");
                            let _ = tx.send(None);
                            return;
                        }
                    };
                    let _ = tx.send(Some(runtime.handle().clone()));
                    runtime.block_on(std::future::pending::<()>());
                })
                .ok()?;
            rx.recv().ok().flatten()
        })
        .as_ref()
}

/// Counts a run in [`IN_FLIGHT`] while it lives.
struct InFlight;

impl InFlight {
    fn enter() -> Self {
        IN_FLIGHT.fetch_add(1, Ordering::Relaxed);
        Self
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        IN_FLIGHT.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A slot of [`SPAWNING`], released on drop.
struct SpawnSlot;

impl SpawnSlot {
    fn take() -> Option<Self> {
        SPAWNING
            .fetch_update(Ordering::Acquire, Ordering::Relaxed, |n| {
                (n < SPAWN_THREADS).then_some(n + 1)
            })
            .ok()
            .map(|_| Self)
    }
}

impl Drop for SpawnSlot {
    fn drop(&mut self) {
        SPAWNING.fetch_sub(1, Ordering::Release);
    }
}

/// A child spawned by the spawner for a run that may have been cancelled meanwhile: if
/// nobody takes it, its process group is killed (`kill_on_drop` alone reaches the leader).
struct Spawned(Option<tokio::process::Child>);

impl Spawned {
    fn take(mut self) -> tokio::process::Child {
        self.0.take().expect("taken once")
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        if let Some(pid) = self.0.as_ref().and_then(|child| child.id()) {
            signal_group(pid, libc::SIGKILL);
        }
    }
}

/// Starts the command with `stdin` (the input file) as its stdin. A script that was just
/// written may still be open for writing in a child forked concurrently by another thread
/// (ETXTBSY until that child execs): retry a few times, each with the input file opened anew,
/// before giving up.
///
/// Spawning (`posix_spawn`, a vfork) holds the calling thread until the child has exec'd;
/// on a busy machine the child can wait for a CPU meanwhile, and so does everything else
/// queued on that runtime worker. A run that is alone spawns right on its task (no hand-off
/// to pay); with other runs in flight, the spawn goes to the [`spawner`], at most
/// [`SPAWN_THREADS`] at a time (beyond that, on the task again), so that the workers keep
/// serving the other runs (docs/benchmarks.md, "Agent command modules").
async fn spawn(
    inv: &Invocation,
    files: &RunFiles,
    stdin: File,
) -> Result<tokio::process::Child, RunError> {
    let spawn_error = |source| RunError::Spawn {
        label: inv.label.clone(),
        command: inv.command.clone(),
        source,
    };
    let mut stdin = Some(stdin);
    let mut attempt = 0;
    loop {
        let input = match stdin.take() {
            Some(file) => file,
            None => files.open_input().map_err(spawn_error)?,
        };
        let mut command = Command::new(&inv.command);
        command
            .arg(&files.input)
            .arg(&files.output)
            .arg(&files.error)
            .stdin(input)
            .process_group(0)
            .kill_on_drop(true);
        let handoff = if IN_FLIGHT.load(Ordering::Relaxed) > 1 {
            spawner().zip(SpawnSlot::take())
        } else {
            None
        };
        let spawned = match handoff {
            None => command.spawn(),
            Some((spawner, slot)) => {
                let handed = spawner.spawn_blocking(move || {
                    let spawned = command.spawn().map(|child| Spawned(Some(child)));
                    drop(slot);
                    spawned
                });
                match handed.await {
                    Ok(spawned) => spawned.map(Spawned::take),
                    Err(e) => Err(io::Error::other(format!("the spawning thread failed: {e}"))),
                }
            }
        };
        match spawned {
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) && attempt < 3 => {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(10 * attempt)).await;
            }
            other => return other.map_err(spawn_error),
        }
    }
}

/// The three temp files of one run, and the process group while it may be alive. Dropping
/// it kills the group and removes the files, so no path (error, timeout, cancellation)
/// leaves anything behind.
#[derive(Debug)]
struct RunFiles {
    input: PathBuf,
    output: PathBuf,
    error: PathBuf,
    created: usize,
    pgid: Option<u32>,
}

impl RunFiles {
    /// Creates the files (mode 0600) and writes `input`; returns the input file, at offset 0,
    /// to serve as the command's stdin.
    fn create(dir: &Path, input: &[u8]) -> Result<(Self, File), (PathBuf, io::Error)> {
        let mut tries = 0;
        loop {
            let n = NEXT_RUN.fetch_add(1, Ordering::Relaxed);
            let stem = format!("mesokit-hook-{}-{n}", std::process::id());
            let mut files = Self {
                input: dir.join(format!("{stem}.in")),
                output: dir.join(format!("{stem}.out")),
                error: dir.join(format!("{stem}.err")),
                created: 0,
                pgid: None,
            };
            match files.create_all(input) {
                Ok(stdin) => return Ok((files, stdin)),
                Err((_, e)) if e.kind() == io::ErrorKind::AlreadyExists && tries < 16 => tries += 1,
                Err(e) => return Err(e),
            }
        }
    }

    fn create_all(&mut self, input: &[u8]) -> Result<File, (PathBuf, io::Error)> {
        let open = |path: &Path, read: bool| {
            OpenOptions::new()
                .read(read)
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .map_err(|e| (path.to_owned(), e))
        };
        let stdin = open(&self.input, true)?;
        self.created = 1;
        // Written at offset 0 (no seek back), so the command reads its stdin from the start.
        stdin
            .write_all_at(input, 0)
            .map_err(|e| (self.input.clone(), e))?;
        open(&self.output, false)?;
        self.created = 2;
        open(&self.error, false)?;
        self.created = 3;
        Ok(stdin)
    }

    /// The input file opened again for reading, for a retried spawn.
    fn open_input(&self) -> io::Result<File> {
        File::open(&self.input)
    }

    fn read_output(self) -> Result<Vec<u8>, (PathBuf, io::Error)> {
        match std::fs::read(&self.output) {
            Ok(output) => Ok(output),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err((self.output.clone(), e)),
        }
    }

    /// The trimmed error file, bounded to [`ERROR_FILE_LIMIT`] bytes; empty if unreadable.
    fn read_error(self) -> String {
        let mut bytes = Vec::new();
        let read = File::open(&self.error)
            .and_then(|f| f.take(ERROR_FILE_LIMIT as u64 + 1).read_to_end(&mut bytes));
        if read.is_err() {
            return String::new();
        }
        let truncated = bytes.len() > ERROR_FILE_LIMIT;
        bytes.truncate(ERROR_FILE_LIMIT);
        let text = String::from_utf8_lossy(&bytes);
        let mut cause = text.trim().to_owned();
        if truncated {
            cause.push_str(" [truncated]");
        }
        cause
    }

    fn signal(&self, signal: libc::c_int) {
        if let Some(pgid) = self.pgid {
            signal_group(pgid, signal);
        }
    }
}

impl Drop for RunFiles {
    fn drop(&mut self) {
        self.signal(libc::SIGKILL);
        for path in [&self.input, &self.output, &self.error]
            .into_iter()
            .take(self.created)
        {
            // NotFound is fine: the command may delete its own files.
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Sends `signal` to each process of `procs` that is still the same process (same start
/// time), so that a reused pid is never signalled.
fn signal_each(procs: &[Proc], signal: libc::c_int) {
    for p in procs.iter().filter(|p| proctree::same(p)) {
        signal_pid(p.pid, signal);
    }
}

/// Sends `signal` to the process `pid`; errors (it is gone) are ignored.
#[allow(unsafe_code)]
fn signal_pid(pid: u32, signal: libc::c_int) {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return;
    };
    if pid <= 1 {
        return;
    }
    // SAFETY: kill(2) takes plain integers and touches no memory of ours.
    unsafe {
        libc::kill(pid, signal);
    }
}

/// Sends `signal` to the process group `pgid` (the pid of its leader, our child). Errors are
/// ignored: ESRCH means the group is already gone.
#[allow(unsafe_code)]
fn signal_group(pgid: u32, signal: libc::c_int) {
    let Ok(pgid) = libc::pid_t::try_from(pgid) else {
        return;
    };
    // Never kill(0, …) or kill(-1, …).
    if pgid <= 1 {
        return;
    }
    // SAFETY: kill(2) takes plain integers and touches no memory of ours.
    unsafe {
        libc::kill(-pgid, signal);
    }
}
