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
//! - they are not `mkstemp` files in the temp directory: each runner makes one private
//!   directory there (mode 0700) on its first run and removes it when dropped; a run creates
//!   its three files in it (mode 0600, output and error empty, as Criteo's are), named by a
//!   counter and opened and removed relative to the directory's descriptor;
//! - processes the command leaves behind in its process group are killed when it exits
//!   (on a timeout, the whole tree is killed, as Criteo does, also what left the group);
//! - a command that deletes its own temp files is not an error (a missing output file reads
//!   as empty output, a missing error file as no cause);
//! - the error file's text is trimmed and bounded to [`ERROR_FILE_LIMIT`] bytes.

use std::collections::VecDeque;
use std::ffi::{CStr, CString, OsStr};
use std::fmt;
use std::fs::{DirBuilder, File, OpenOptions};
use std::hash::{BuildHasher, RandomState};
use std::io::{self, Read};
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use crate::proctree::{self, Proc};
use crate::spawn::{self, Child, Spawn};

/// Timeout of an [`Invocation`] built with [`Invocation::new`]: Criteo's
/// `DEFAULT_COMMAND_TIMEOUT`.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a timed-out command's process group has between SIGTERM and SIGKILL.
pub const KILL_GRACE: Duration = Duration::from_secs(1);

/// At most this many bytes of the error file are quoted in [`RunError::Exit`].
pub const ERROR_FILE_LIMIT: usize = 4096;

/// Makes temp file names unique within this process (and so within a private directory).
static NEXT_RUN: AtomicU64 = AtomicU64::new(0);

/// Runs external commands. Cheap to clone; one runner can serve many concurrent runs. The
/// clones share one private directory for their temp files, removed with the last clone.
#[derive(Debug, Clone)]
pub struct Runner {
    dir: PathBuf,
    debug: bool,
    private: Arc<PrivateDir>,
}

/// A runner's own directory (mode 0700) in its temp directory, made on the first run, so
/// that its temp files need no random names: nobody else can create or replace a file
/// there. Removed on drop.
#[derive(Debug, Default)]
struct PrivateDir(Mutex<Option<Arc<Dir>>>);

/// An open directory: the run files are opened and removed relative to it (`openat`,
/// `unlinkat`), one path component to walk instead of the whole temp path each time.
#[derive(Debug)]
struct Dir {
    path: PathBuf,
    fd: File,
}

impl PrivateDir {
    /// The directory, made in `parent` if there is none yet.
    fn get(&self, parent: &Path) -> Result<Arc<Dir>, (PathBuf, io::Error)> {
        let mut dir = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(dir) = &*dir {
            return Ok(Arc::clone(dir));
        }
        let path = make_private_dir(parent)?;
        let fd = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY)
            .open(&path);
        let made = match fd {
            Ok(fd) => Arc::new(Dir { path, fd }),
            Err(e) => {
                let _ = std::fs::remove_dir(&path);
                return Err((path, e));
            }
        };
        *dir = Some(Arc::clone(&made));
        Ok(made)
    }

    /// Forgets `gone` (removed by someone else), so that the next run makes a new one.
    fn forget(&self, gone: &Arc<Dir>) {
        let mut dir = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if dir.as_ref().is_some_and(|dir| Arc::ptr_eq(dir, gone)) {
            *dir = None;
        }
    }
}

impl Drop for PrivateDir {
    fn drop(&mut self) {
        let dir = self.0.get_mut().unwrap_or_else(PoisonError::into_inner);
        if let Some(dir) = dir.take() {
            // Normally empty; remove_dir_all also takes what a command's detached child may
            // have written after its run (it does not follow symlinks).
            let _ = std::fs::remove_dir_all(&dir.path);
        }
    }
}

/// Makes a new directory, mode 0700, in `parent`: `mesokit-runs-<pid>-<random>`.
fn make_private_dir(parent: &Path) -> Result<PathBuf, (PathBuf, io::Error)> {
    let mut tries = 0;
    loop {
        let random = RandomState::new().hash_one(NEXT_RUN.fetch_add(1, Ordering::Relaxed));
        let dir = parent.join(format!("mesokit-runs-{}-{random:016x}", std::process::id()));
        match DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && tries < 16 => tries += 1,
            Err(e) => return Err((dir, e)),
        }
    }
}

impl Dir {
    /// `openat(2)` of `name` in this directory, close-on-exec.
    #[allow(unsafe_code)]
    fn open(&self, name: &CStr, flags: libc::c_int) -> io::Result<File> {
        // SAFETY: `name` is NUL-terminated and outlives the call, and `self.fd` is open for
        // its whole length; openat only reads the string.
        let fd = unsafe {
            libc::openat(
                self.fd.as_raw_fd(),
                name.as_ptr(),
                flags | libc::O_CLOEXEC,
                0o600 as libc::c_uint,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: openat returned a new descriptor, owned by nothing else.
        Ok(unsafe { File::from_raw_fd(fd) })
    }

    /// Creates the empty regular file `name` in this directory, mode 0600 (less the umask, as
    /// `openat` with `O_CREAT` would); fails if `name` exists, as `O_EXCL` does. On Linux with
    /// `mknodat(2)`: unlike `openat`, it sets up no open file to close again (4 µs less CPU
    /// per run for the two files; docs/benchmarks.md, "Agent command modules"). Elsewhere
    /// `mknod` of a regular file may need privileges, so it is `openat` and `close`.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    #[allow(unsafe_code)]
    fn create_empty(&self, name: &CStr) -> io::Result<()> {
        // SAFETY: as in `open`: a NUL-terminated string and a descriptor open for the call;
        // mknodat only reads the string.
        let made =
            unsafe { libc::mknodat(self.fd.as_raw_fd(), name.as_ptr(), libc::S_IFREG | 0o600, 0) };
        if made < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// See the Linux version above.
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    fn create_empty(&self, name: &CStr) -> io::Result<()> {
        self.open(name, libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL)
            .map(drop)
    }

    /// `unlinkat(2)` of `name` in this directory.
    #[allow(unsafe_code)]
    fn unlink(&self, name: &CStr) -> io::Result<()> {
        // SAFETY: as in `open`: a NUL-terminated string and a descriptor open for the call.
        if unsafe { libc::unlinkat(self.fd.as_raw_fd(), name.as_ptr(), 0) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

impl Default for Runner {
    /// A runner that keeps its temp files in [`std::env::temp_dir`] (in a private directory
    /// of its own), debug off.
    fn default() -> Self {
        Self::new(std::env::temp_dir())
    }
}

impl Runner {
    /// A runner that keeps its temp files in `dir`, which must exist: on its first run it
    /// makes a private directory there (mode 0700), removed when the runner and all its
    /// clones are dropped.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            debug: false,
            private: Arc::default(),
        }
    }

    /// With `debug` on, each run logs its input and output at INFO level (Criteo's `debug`
    /// parameter, as its README describes it). Off, only the call itself is logged, at DEBUG.
    pub fn debug(mut self, debug: bool) -> Self {
        self.debug = debug;
        self
    }

    /// The directory holding the runner's private directory, in which the temp files are.
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
    ///
    /// A run alone in the process spawns on its task and tokio reaps the child; with other
    /// runs in flight, a run thread of its own starts the command and waits for it (up to 32
    /// such threads, started on demand; beyond, runs spawn on their task).
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
            self.create_files(&inv.input)
                .map_err(|(path, source)| RunError::TempFile {
                    label: inv.label.clone(),
                    path,
                    source,
                })?;

        let status = execute(inv, &mut files, stdin).await?;

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

    /// A run's files in the private directory; a new one if ours was removed meanwhile.
    fn create_files(&self, input: &[u8]) -> Result<(RunFiles, File), (PathBuf, io::Error)> {
        let dir = self.private.get(&self.dir)?;
        match RunFiles::create(Arc::clone(&dir), input) {
            Err((_, e)) if e.kind() == io::ErrorKind::NotFound => {
                self.private.forget(&dir);
                RunFiles::create(self.private.get(&self.dir)?, input)
            }
            other => other,
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

/// A run's command as the run and its run thread (if it has one) share it: the pid once
/// started, and whether the run gave it up meanwhile (cancelled or timed out).
#[derive(Debug, Default)]
struct Started {
    pid: AtomicU32,
    given_up: AtomicBool,
}

impl Started {
    /// The command's pid (its group's id), once it has started.
    fn pid(&self) -> Option<u32> {
        Some(self.pid.load(Ordering::SeqCst)).filter(|pid| *pid != 0)
    }

    /// Kills the command's process group, now if it has started, else as soon as its run
    /// thread has started it. Both sides store, then load the other's flag (`SeqCst`), so at
    /// least one of them sees the other's and sends the SIGKILL.
    fn give_up(&self) {
        self.given_up.store(true, Ordering::SeqCst);
        if let Some(pid) = self.pid() {
            signal_group(pid, libc::SIGKILL);
        }
    }
}

/// What a run thread reports for one start of the command.
#[derive(Debug)]
enum Ended {
    /// The command could not be started.
    NotStarted(io::Error),
    /// The command ran: its exit status, or why waiting failed.
    Exited(io::Result<ExitStatus>),
}

/// One start of a command, handed to a run thread.
struct Job {
    /// Boxed: a job travels through a queue, and back when no thread takes it.
    command: Box<RunCommand>,
    started: Arc<Started>,
    ended: oneshot::Sender<Ended>,
}

impl Job {
    /// Starts the command, waits for it (blocking: this is a run thread), kills what it
    /// left in its group, and reports. Nobody may be waiting for the report any more: a
    /// cancelled run gave the command up, which is then killed right after it starts.
    fn run(self) {
        // Also closes our copy of the command's stdin (the input file) before the wait.
        let pid = match self.command.start() {
            Ok(pid) => pid as u32,
            Err(e) => {
                let _ = self.ended.send(Ended::NotStarted(e));
                return;
            }
        };
        self.started.pid.store(pid, Ordering::SeqCst);
        if self.started.given_up.load(Ordering::SeqCst) {
            signal_group(pid, libc::SIGKILL);
        }
        let status = spawn::wait_blocking(pid as libc::pid_t);
        // Stragglers: children the command left in its group.
        signal_group(pid, libc::SIGKILL);
        let _ = self.ended.send(Ended::Exited(status));
    }
}

/// The run threads: each starts one command at a time (`posix_spawn`, which holds the
/// thread until the child has exec'd) and blocks in `waitpid` until it exits, as a plain
/// spawn/wait loop does. A run in flight has a thread of its own, so no run waits for
/// another's spawn, and the async side pays two thread hand-offs per run and no reactor
/// registration (docs/benchmarks.md, "Agent command modules"). Threads are started on
/// demand, at most [`MAX_RUN_THREADS`], and end after [`RUN_THREAD_IDLE`] without work. They
/// belong to no runtime, so a runtime shutting down never drops a child unwaited.
struct RunThreads {
    jobs: VecDeque<Job>,
    /// Threads waiting for a job.
    idle: usize,
    /// Threads alive.
    alive: usize,
}

static RUN_THREADS: Mutex<RunThreads> = Mutex::new(RunThreads {
    jobs: VecDeque::new(),
    idle: 0,
    alive: 0,
});
static RUN_THREAD_WORK: Condvar = Condvar::new();

/// How long a run thread waits for a job before it ends.
const RUN_THREAD_IDLE: Duration = Duration::from_secs(10);

/// Stack of a run thread: it only builds the spawn's arguments.
const RUN_THREAD_STACK: usize = 256 * 1024;

/// Run threads at most; beyond, runs spawn on their task (as a run alone does), so that a
/// burst of runs (a `/monitor/statistics` request runs one usage command per container)
/// does not hold hundreds of threads.
const MAX_RUN_THREADS: usize = 32;

fn run_threads() -> std::sync::MutexGuard<'static, RunThreads> {
    // The lock is never held across anything that can panic; a poisoned queue is intact.
    RUN_THREADS.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Where [`submit`] put a job.
enum Submitted {
    /// With a run thread.
    Taken,
    /// Nowhere: [`MAX_RUN_THREADS`] are busy, or no thread could be started (the job, and
    /// its command's stdin with it, was then dropped).
    Refused(Option<Job>),
}

/// Hands `job` to an idle run thread, or to a new one.
fn submit(job: Job) -> Submitted {
    {
        let mut threads = run_threads();
        // Every queued job has an idle thread of its own.
        if threads.idle > threads.jobs.len() {
            threads.jobs.push_back(job);
            drop(threads);
            RUN_THREAD_WORK.notify_one();
            return Submitted::Taken;
        }
        if threads.alive >= MAX_RUN_THREADS {
            return Submitted::Refused(Some(job));
        }
        threads.alive += 1;
    }
    let started = std::thread::Builder::new()
        .name("mesokit-run".into())
        .stack_size(RUN_THREAD_STACK)
        .spawn(move || {
            job.run();
            serve();
        });
    match started {
        Ok(_) => Submitted::Taken,
        Err(e) => {
            run_threads().alive -= 1;
            tracing::warn!(error = %e, "cannot start a thread to run a command; it runs on its task");
            Submitted::Refused(None)
        }
    }
}

/// A run thread's loop, after its first job.
fn serve() {
    let mut threads = run_threads();
    loop {
        if let Some(job) = threads.jobs.pop_front() {
            drop(threads);
            job.run();
            threads = run_threads();
            continue;
        }
        threads.idle += 1;
        let (guard, waited) = RUN_THREAD_WORK
            .wait_timeout(threads, RUN_THREAD_IDLE)
            .unwrap_or_else(PoisonError::into_inner);
        threads = guard;
        threads.idle -= 1;
        if waited.timed_out() && threads.jobs.is_empty() {
            threads.alive -= 1;
            return;
        }
    }
}

/// Runs in flight in this process, over all runners; see [`execute`].
static IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);

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

/// A started command, waited for on the run's task or by a run thread.
enum Running {
    /// Spawned on the run's task, waited for through the reactor.
    Task(Child),
    /// Spawned by a run thread, which reaps it and reports here; `None` once it has.
    Thread(Option<oneshot::Receiver<Ended>>),
}

impl Running {
    /// Waits for the command's exit (cancel-safe; again after it returned, at once). The
    /// error is a run thread's failure to start the command.
    async fn wait(&mut self, started: &Started) -> Result<io::Result<ExitStatus>, io::Error> {
        match self {
            Self::Task(child) => {
                let status = child.wait().await;
                // Stragglers: children the command left in its group.
                started.give_up();
                Ok(status)
            }
            Self::Thread(None) => Ok(Err(io::Error::other("already reaped"))),
            Self::Thread(Some(ended)) => {
                let ended = ended.await;
                *self = Self::Thread(None);
                match ended {
                    Ok(Ended::Exited(status)) => Ok(status),
                    Ok(Ended::NotStarted(e)) => Err(e),
                    Err(_) => Ok(Err(io::Error::other(
                        "its run thread ended without reporting",
                    ))),
                }
            }
        }
    }
}

/// Runs the command with `stdin` (the input file) as its stdin and waits for its exit
/// status within the invocation's timeout. A script that was just written may still be open
/// for writing in a child forked concurrently by another thread (ETXTBSY until that child
/// execs): retry a few times, each with the input file opened anew, before giving up.
///
/// Spawning (`posix_spawn`, a vfork) holds the calling thread until the child has exec'd;
/// on a busy machine the child can wait for a CPU meanwhile, and so would everything else
/// queued on that runtime worker. A run that is alone spawns right on its task and tokio
/// reaps the child (no thread hand-off to pay); with other runs in flight, the command goes
/// to a run thread of its own (see [`RunThreads`]; with [`MAX_RUN_THREADS`] busy, it spawns
/// on its task again), so that the workers keep serving the other runs (docs/benchmarks.md,
/// "Agent command modules").
async fn execute(
    inv: &Invocation,
    files: &mut RunFiles,
    stdin: File,
) -> Result<ExitStatus, RunError> {
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
        let command = RunCommand::new(inv, files, input);
        let started = Arc::new(Started::default());
        let handed = if IN_FLIGHT.load(Ordering::Relaxed) > 1 {
            to_run_thread(command, &started)
        } else {
            Err(Some(Box::new(command)))
        };
        let mut running = match handed {
            Ok(running) => running,
            Err(command) => {
                let command = match command {
                    Some(command) => *command,
                    None => RunCommand::new(inv, files, files.open_input().map_err(spawn_error)?),
                };
                match command.start() {
                    Ok(pid) => {
                        started.pid.store(pid as u32, Ordering::SeqCst);
                        Running::Task(Child::adopt(pid, None, None))
                    }
                    Err(e) if text_busy_again(&e, &mut attempt).await => continue,
                    Err(e) => return Err(spawn_error(e)),
                }
            }
        };
        // From here, dropping `files` (this run cancelled) kills the group.
        files.started = Some(Arc::clone(&started));
        let ended = match tokio::time::timeout(inv.timeout, running.wait(&started)).await {
            Ok(ended) => ended,
            Err(_) => {
                timed_out(&started, &mut running).await;
                files.started = None;
                tracing::warn!(label = %inv.label, command = %inv.command, timeout = ?inv.timeout, "command timed out, killed");
                return Err(RunError::Timeout {
                    label: inv.label.clone(),
                    command: inv.command.clone(),
                    after: inv.timeout,
                });
            }
        };
        // Reaped, and what it left in its group killed.
        files.started = None;
        match ended {
            Ok(status) => {
                return status.map_err(|source| RunError::Wait {
                    label: inv.label.clone(),
                    command: inv.command.clone(),
                    source,
                });
            }
            Err(e) if text_busy_again(&e, &mut attempt).await => {}
            Err(e) => return Err(spawn_error(e)),
        }
    }
}

/// Whether a failed start is worth another attempt: ETXTBSY (see [`execute`]), at most three
/// times, after a pause that grows with each attempt.
async fn text_busy_again(e: &io::Error, attempt: &mut u64) -> bool {
    if e.raw_os_error() != Some(libc::ETXTBSY) || *attempt >= 3 {
        return false;
    }
    *attempt += 1;
    tokio::time::sleep(Duration::from_millis(10 * *attempt)).await;
    true
}

/// Hands `command` to a run thread. If none takes it, gives it back, or `None` if it was
/// dropped with a thread that could not be started.
fn to_run_thread(
    command: RunCommand,
    started: &Arc<Started>,
) -> Result<Running, Option<Box<RunCommand>>> {
    let (tx, rx) = oneshot::channel();
    let job = Job {
        command: Box::new(command),
        started: Arc::clone(started),
        ended: tx,
    };
    match submit(job) {
        Submitted::Taken => Ok(Running::Thread(Some(rx))),
        Submitted::Refused(job) => Err(job.map(|job| job.command)),
    }
}

/// The command of a run: `<cmd> <input> <output> <error>`, stdin = the input file, in a
/// process group of its own, this process's environment and directory.
struct RunCommand {
    program: String,
    args: [PathBuf; 3],
    stdin: File,
}

impl RunCommand {
    fn new(inv: &Invocation, files: &RunFiles, stdin: File) -> Self {
        RunCommand {
            program: inv.command.clone(),
            args: [
                files.input.clone(),
                files.output.clone(),
                files.error.clone(),
            ],
            stdin,
        }
    }

    /// Starts the command with [`crate::spawn`] (cheaper than `posix_spawn`: no stack
    /// mapped per spawn, handlers cleared by the kernel); returns once it has exec'd. The
    /// caller reaps it. Our copy of its stdin is closed on return.
    fn start(self) -> io::Result<libc::pid_t> {
        let [input, output, error] = &self.args;
        let args = [input.as_os_str(), output.as_os_str(), error.as_os_str()];
        Spawn {
            stdio: [self.stdin.as_raw_fd(), -1, -1],
            ..Spawn::new(&self.program, &args)
        }
        .start()
    }
}

/// A timed-out command: the whole tree, as Mesos's `os::killtree`: the group, and what left
/// it (`setsid`) but descends from it, found while the leader still lives (reads all of
/// /proc: only on timeouts), gets SIGTERM, then SIGKILL [`KILL_GRACE`] later or once the
/// leader is gone. Returns once the leader is reaped.
async fn timed_out(started: &Started, running: &mut Running) {
    let pid = started.pid();
    let tree = pid.map(proctree::tree).unwrap_or_default();
    match pid {
        Some(pid) => signal_group(pid, libc::SIGTERM),
        // Not started yet: killed as soon as it is.
        None => started.give_up(),
    }
    signal_each(&tree, libc::SIGTERM);
    // Whether or not the leader went, the rest of the tree gets SIGKILL.
    let _ = tokio::time::timeout(KILL_GRACE, running.wait(started)).await;
    let mut tree = tree;
    if let Some(pid) = started.pid() {
        tree.extend(proctree::tree(pid));
    }
    started.give_up();
    signal_each(&tree, libc::SIGKILL);
    let _ = running.wait(started).await;
}

/// The three temp files of one run, and the process group while it may be alive. Dropping
/// it kills the group and removes the files, so no path (error, timeout, cancellation)
/// leaves anything behind.
#[derive(Debug)]
struct RunFiles {
    dir: Arc<Dir>,
    /// Full paths, for the command's arguments and for errors.
    input: PathBuf,
    output: PathBuf,
    error: PathBuf,
    /// The same, relative to `dir`.
    names: [CString; 3],
    /// Files known not to exist (input, output, error): not created, or found missing
    /// after the command's exit.
    absent: [bool; 3],
    /// The command while it may be alive.
    started: Option<Arc<Started>>,
}

impl RunFiles {
    /// Creates the three files (mode 0600) in the private directory `dir`, empty, as
    /// Criteo's `mkstemp` files are (a script may open its output or error file without
    /// creating it), and writes `input` to the input file; returns that one, at offset 0, to
    /// serve as the command's stdin.
    fn create(dir: Arc<Dir>, input: &[u8]) -> Result<(Self, File), (PathBuf, io::Error)> {
        let n = NEXT_RUN.fetch_add(1, Ordering::Relaxed);
        let name = |ext: &str| CString::new(format!("{n}.{ext}")).expect("no NUL in a number");
        let names = [name("in"), name("out"), name("err")];
        let path = |name: &CString| dir.path.join(OsStr::from_bytes(name.as_bytes()));
        let mut files = Self {
            input: path(&names[0]),
            output: path(&names[1]),
            error: path(&names[2]),
            names,
            dir,
            absent: [true; 3],
            started: None,
        };
        let stdin = files
            .dir
            .open(&files.names[0], libc::O_RDWR | libc::O_CREAT | libc::O_EXCL)
            .map_err(|e| (files.input.clone(), e))?;
        files.absent[0] = false;
        // Written at offset 0 (no seek back), so the command reads its stdin from the start.
        stdin
            .write_all_at(input, 0)
            .map_err(|e| (files.input.clone(), e))?;
        for at in 1..3 {
            files.dir.create_empty(&files.names[at]).map_err(|e| {
                let path = if at == 1 { &files.output } else { &files.error };
                (path.clone(), e)
            })?;
            files.absent[at] = false;
        }
        Ok((files, stdin))
    }

    /// The input file opened again for reading, for a retried spawn.
    fn open_input(&self) -> io::Result<File> {
        self.dir.open(&self.names[0], libc::O_RDONLY)
    }

    fn read_output(mut self) -> Result<Vec<u8>, (PathBuf, io::Error)> {
        // Through `take`, which gives no size hint: no `statx` and `lseek` for the file's
        // size; a small output takes two reads.
        let mut output = Vec::new();
        let read = self
            .dir
            .open(&self.names[1], libc::O_RDONLY)
            .and_then(|f| f.take(u64::MAX).read_to_end(&mut output));
        match read {
            Ok(_) => Ok(output),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                self.absent[1] = true;
                Ok(Vec::new())
            }
            Err(e) => Err((self.output.clone(), e)),
        }
    }

    /// The trimmed error file, bounded to [`ERROR_FILE_LIMIT`] bytes; empty if unreadable.
    fn read_error(mut self) -> String {
        let mut bytes = Vec::new();
        let read = self
            .dir
            .open(&self.names[2], libc::O_RDONLY)
            .and_then(|f| f.take(ERROR_FILE_LIMIT as u64 + 1).read_to_end(&mut bytes));
        if let Err(e) = read {
            self.absent[2] = e.kind() == io::ErrorKind::NotFound;
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
}

impl Drop for RunFiles {
    fn drop(&mut self) {
        if let Some(started) = &self.started {
            started.give_up();
        }
        for (name, absent) in self.names.iter().zip(self.absent) {
            if !absent {
                // NotFound is fine: the command may not write its output or error file, or
                // delete its own files.
                let _ = self.dir.unlink(name);
            }
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
