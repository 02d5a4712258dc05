//! Starting a task's process: its working directory and output files, then
//! [`mesokit_hooks::spawn`] (a `clone(CLONE_VM | CLONE_VFORK)` as `posix_spawn` makes it,
//! with the set-up a task needs between fork and exec: a session of its own, every signal at
//! its default action, the executor's transparent-huge-page opt-out undone,
//! `PR_SET_PDEATHSIG`).
//!
//! `/dev/null` is kept open from one spawn to the next. Before the clone, which holds the
//! calling thread until the exec, the thread's other tasks get their turn (see [`spawn`]).

use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock, PoisonError};

use mesokit_hooks::spawn::{Child, Spawn};
use tokio::net::unix::pipe;

use super::{CommandSpec, Output};

/// Opens what the process's stdio is to be: `(fd to install, the read end of its pipe)`.
/// Descriptors are close-on-exec and above 2, so installing one never overwrites another.
/// A file's directory is created if missing, unless it is `made` (just checked or created).
fn stdio_fd(
    output: &Output,
    made: Option<&Path>,
) -> io::Result<(Option<OwnedFd>, Option<OwnedFd>)> {
    match output {
        Output::Inherit => Ok((None, None)),
        Output::File(path) => {
            if let Some(dir) = path.parent().filter(|dir| Some(*dir) != made) {
                std::fs::create_dir_all(dir).map_err(|e| {
                    io::Error::new(e.kind(), format!("cannot create {}: {e}", dir.display()))
                })?;
            }
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| {
                    io::Error::new(e.kind(), format!("cannot open {}: {e}", path.display()))
                })?;
            Ok((Some(above_stdio(file.into())?), None))
        }
        Output::Pipe => {
            let (read, write) = cloexec_pipe()?;
            Ok((Some(above_stdio(write)?), Some(read)))
        }
    }
}

/// A pipe, both ends close-on-exec: `(read, write)`.
fn cloexec_pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two descriptors into the array on success.
    #[cfg(target_os = "linux")]
    let made = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    // SAFETY: as above; the descriptors are made close-on-exec right after (this process
    // starts children only from this module, on one thread).
    #[cfg(not(target_os = "linux"))]
    let made = unsafe {
        let r = libc::pipe(fds.as_mut_ptr());
        if r == 0 {
            libc::fcntl(fds[0], libc::F_SETFD, libc::FD_CLOEXEC);
            libc::fcntl(fds[1], libc::F_SETFD, libc::FD_CLOEXEC);
        }
        r
    };
    if made == -1 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both descriptors were just created and are owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// `/dev/null`, every process's stdin: opened on the first spawn and kept.
fn null_input() -> io::Result<RawFd> {
    static NULL: OnceLock<OwnedFd> = OnceLock::new();
    if let Some(fd) = NULL.get() {
        return Ok(fd.as_raw_fd());
    }
    let file = above_stdio(std::fs::File::open("/dev/null")?.into())?;
    // Another thread may have been first: its descriptor is kept, ours closed.
    Ok(NULL.get_or_init(|| file).as_raw_fd())
}

/// `fd`, moved above 2 if it is one of the standard descriptors (when the executor runs with
/// one of them closed), still close-on-exec.
fn above_stdio(fd: OwnedFd) -> io::Result<OwnedFd> {
    if fd.as_raw_fd() > 2 {
        return Ok(fd);
    }
    // SAFETY: F_DUPFD_CLOEXEC duplicates a descriptor we own into a new one.
    let new = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 3) };
    if new == -1 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `new` was just created and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(new) })
}

/// What the process's standard streams are to be, opened before the clone.
struct Streams {
    stdin: RawFd,
    /// Descriptors to install as stdout and stderr (`None`: inherited).
    out: Option<OwnedFd>,
    err: Option<OwnedFd>,
    /// The read ends of [`Output::Pipe`] outputs.
    out_read: Option<OwnedFd>,
    err_read: Option<OwnedFd>,
}

/// Starts `spec` in a session of its own; see the module documentation. Returns once the
/// program has been exec'd, or the error of the step that failed. Must be called within a
/// Tokio runtime.
///
/// Errors read `cannot run <program>: <what failed>`, except the working directory's.
pub(super) async fn spawn(spec: &CommandSpec, restore_huge_pages: bool) -> io::Result<Child> {
    let cannot_run =
        |e: io::Error| io::Error::new(e.kind(), format!("cannot run {}: {e}", spec.program));
    set_up_cwd(spec)?;
    // A task's output files are usually in its directory, which exists now.
    let made = spec.cwd.as_deref();
    let (out, out_read) = stdio_fd(&spec.stdout, made).map_err(cannot_run)?;
    let (err, err_read) = stdio_fd(&spec.stderr, made).map_err(cannot_run)?;
    let streams = Streams {
        stdin: null_input().map_err(cannot_run)?,
        out,
        err,
        out_read,
        err_read,
    };
    // The clone holds this thread until the exec (150–350 µs here): let the thread's other
    // tasks run first. What they were waiting for and is ready gets done: in the executor,
    // the connection reads the answer to TASK_STARTING and the sender takes it (two turns),
    // so that the sender is free for TASK_RUNNING the moment the process has started
    // (docs/benchmarks.md, executor latency).
    tokio::task::yield_now().await;
    tokio::task::yield_now().await;
    let args: Vec<&OsStr> = spec.args.iter().map(OsStr::new).collect();
    let raw = |fd: &Option<OwnedFd>| fd.as_ref().map_or(-1, AsRawFd::as_raw_fd);
    let pid = Spawn {
        program: &spec.program,
        argv0: spec.argv0.as_deref(),
        args: &args,
        env: Some(&spec.env),
        cwd: spec.cwd.as_deref(),
        stdio: [streams.stdin, raw(&streams.out), raw(&streams.err)],
        session: true,
        reset_ignored_signals: true,
        restore_huge_pages,
        die_with_parent: spec.die_with_parent,
    }
    .start()
    .map_err(cannot_run)?;
    // The child is gone from our memory: it exec'd or exited.
    drop((streams.out, streams.err));
    let reader = |fd: Option<OwnedFd>| fd.map(pipe::Receiver::from_owned_fd).transpose();
    Ok(Child::adopt(
        pid,
        reader(streams.out_read).map_err(cannot_run)?,
        reader(streams.err_read).map_err(cannot_run)?,
    ))
}

/// Checks the working directory, or creates it. Its errors name it.
fn set_up_cwd(spec: &CommandSpec) -> io::Result<()> {
    let Some(cwd) = &spec.cwd else {
        return Ok(());
    };
    if spec.create_cwd {
        if take_spare(cwd) {
            return Ok(());
        }
        std::fs::create_dir_all(cwd)
            .map_err(|e| io::Error::new(e.kind(), format!("cannot create {}: {e}", cwd.display())))
    } else {
        std::fs::metadata(cwd).map(drop).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("working directory {}: {e}", cwd.display()),
            )
        })
    }
}

/// A task directory made ahead (see [`prepare_task_dir`]).
static SPARE: Mutex<Option<PathBuf>> = Mutex::new(None);

/// The name of the directory made ahead, in the sandbox's `tasks` directory.
const SPARE_NAME: &str = ".mesokit-next-task";

/// Makes a task directory ahead, `tasks/.mesokit-next-task` with an empty `stdout` and
/// `stderr`, unless one is ready: the next task with a directory of its own gets it by a
/// rename. On ext4 here a directory and two files cost ~0.2-0.5 ms (inode allocation) that
/// would otherwise lie between TASK_STARTING and TASK_RUNNING; a rename and two opens of
/// existing files cost ~60 µs (docs/benchmarks.md, executor latency).
pub(super) fn prepare_task_dir(tasks: &Path) -> io::Result<()> {
    let mut spare = SPARE.lock().unwrap_or_else(PoisonError::into_inner);
    if spare.is_some() {
        return Ok(());
    }
    let dir = tasks.join(SPARE_NAME);
    std::fs::create_dir_all(tasks)?;
    // Not `create_dir_all`: an existing directory of that name (a task's own, were its id
    // the same) is never taken for an empty one.
    std::fs::create_dir(&dir)?;
    for name in ["stdout", "stderr"] {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join(name))?;
    }
    *spare = Some(dir);
    Ok(())
}

/// Removes the directory made ahead, if any (when the executor is done).
pub(super) fn remove_spare_task_dir() {
    if let Some(dir) = SPARE.lock().unwrap_or_else(PoisonError::into_inner).take() {
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// Renames the directory made ahead to `cwd` if it is in the same directory; whether it did.
fn take_spare(cwd: &Path) -> bool {
    let mut spare = SPARE.lock().unwrap_or_else(PoisonError::into_inner);
    let Some(dir) = spare.take_if(|dir| dir.parent() == cwd.parent()) else {
        return false;
    };
    match std::fs::rename(&dir, cwd) {
        Ok(()) => true,
        // `cwd` exists and is not empty (the same task id again): the spare stays.
        Err(e)
            if e.raw_os_error() == Some(libc::ENOTEMPTY)
                || e.kind() == io::ErrorKind::AlreadyExists =>
        {
            *spare = Some(dir);
            false
        }
        // Gone (removed by someone else) or unusable: made anew next time.
        Err(_) => false,
    }
}
