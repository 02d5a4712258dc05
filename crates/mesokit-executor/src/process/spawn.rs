//! Starting a task's process the way `posix_spawn` does, with what `posix_spawn` cannot do.
//!
//! A task needs, between fork and exec: a session of its own (`setsid`), no blocked or
//! ignored signals, on Linux the executor's transparent-huge-page opt-out undone and
//! `PR_SET_PDEATHSIG`. With `std::process::Command` that takes a `pre_exec` hook, and a
//! `pre_exec` hook makes the standard library `fork` the executor (copying its page tables)
//! instead of taking `posix_spawn`'s `vfork`-style path; measured here, the spawn took
//! 280–310 µs that way against 110 µs (docs/benchmarks.md, executor latency). So on Linux
//! the child is made with `clone(CLONE_VM | CLONE_VFORK)` as glibc's `posix_spawn` makes
//! it: it runs on a stack of its own in the executor's memory, while the calling thread
//! waits, until it has exec'd or failed. Elsewhere it is a plain `fork`.
//!
//! Everything the child needs is prepared by the parent first (C strings, argument and
//! environment arrays, the file descriptors to install), so that the child only makes
//! system calls: it allocates nothing, takes no lock and touches no memory but its stack and
//! the [`Failure`] slot through which it reports what failed.
//!
//! The file-system work (the working directory, the output files) and the clone itself are
//! done by one thread of the executor's own, the launcher, not by the runtime's thread: they
//! take hundreds of microseconds (on ext4 here: a directory 90 µs, two files 75 µs, the
//! clone until the exec 150–350 µs), and meanwhile the runtime sends TASK_STARTING, reads its
//! answer and has the sender free for TASK_RUNNING the moment the launcher reports
//! (docs/benchmarks.md, executor latency). The launcher lives as long as the process, so
//! `PR_SET_PDEATHSIG`, which fires when the thread that made the child ends, fires when the
//! executor dies; it keeps every signal blocked, so that none of the executor's handlers can
//! run in a child (which shares the executor's memory) before the child has reset them; it
//! keeps the child stack and `/dev/null` open from one spawn to the next; and it allocates
//! nothing on the way of a successful spawn (a job comes with everything it needs and goes
//! back whole to be freed by the caller), so the C library gives it no heap of its own.
//!
//! The process is waited for through a pidfd registered with Tokio's reactor (Linux 5.3 and
//! later), or by polling `waitpid` where there is none.

use std::collections::VecDeque;
use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Condvar, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use tokio::io::unix::AsyncFd;
use tokio::net::unix::pipe;
use tokio::sync::oneshot;

use super::{CommandSpec, Output};

/// A process started by [`spawn`]. Unlike `tokio::process::Child`, dropping it neither kills
/// nor detaches the process: an unreaped process is reaped in the background once it ends.
#[derive(Debug)]
pub struct Child {
    pid: libc::pid_t,
    /// Until reaped.
    waiter: Option<Waiter>,
    status: Option<ExitStatus>,
    /// The read end of the process's stdout, for [`Output::Pipe`].
    pub stdout: Option<pipe::Receiver>,
    /// The read end of its stderr, for [`Output::Pipe`].
    pub stderr: Option<pipe::Receiver>,
}

#[derive(Debug)]
enum Waiter {
    /// Readable once the process has ended.
    Pidfd(AsyncFd<OwnedFd>),
    /// No pidfd (old kernel, or not Linux): `waitpid(WNOHANG)` now and then.
    Poll,
}

/// How often [`Waiter::Poll`] looks.
const POLL: Duration = Duration::from_millis(10);

impl Child {
    /// The process id, until the process has been reaped (its number may be reused after).
    pub fn id(&self) -> Option<u32> {
        self.status.is_none().then_some(self.pid as u32)
    }

    /// Waits for the process to end and reaps it; afterwards returns the same status again.
    pub async fn wait(&mut self) -> io::Result<ExitStatus> {
        loop {
            if let Some(status) = self.try_wait()? {
                return Ok(status);
            }
            match &self.waiter {
                Some(Waiter::Pidfd(fd)) => {
                    let mut ready = fd.readable().await?;
                    // Reaped below; a spurious wake-up just loops.
                    ready.clear_ready();
                }
                _ => tokio::time::sleep(POLL).await,
            }
        }
    }

    /// The status if the process has ended (reaping it), `None` if it still runs.
    pub fn try_wait(&mut self) -> io::Result<Option<ExitStatus>> {
        if let Some(status) = self.status {
            return Ok(Some(status));
        }
        let mut raw = 0;
        // SAFETY: waitpid on our own unreaped child (the number cannot have been reused),
        // writing its status into a local.
        match unsafe { libc::waitpid(self.pid, &mut raw, libc::WNOHANG) } {
            0 => Ok(None),
            -1 => Err(io::Error::last_os_error()),
            _ => {
                let status = ExitStatus::from_raw(raw);
                self.status = Some(status);
                self.waiter = None;
                Ok(Some(status))
            }
        }
    }

    /// Sends SIGKILL to the process (not its group), unless it was reaped already.
    pub fn start_kill(&mut self) -> io::Result<()> {
        if self.try_wait()?.is_some() {
            return Ok(());
        }
        // SAFETY: kill(2) on our unreaped child's pid, which cannot belong to anyone else.
        if unsafe { libc::kill(self.pid, libc::SIGKILL) } == -1 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if matches!(self.try_wait(), Ok(Some(_)) | Err(_)) {
            return;
        }
        // Still running: reap it when it ends, so it does not stay a zombie.
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            let orphan = Child {
                pid: self.pid,
                waiter: self.waiter.take(),
                status: None,
                stdout: None,
                stderr: None,
            };
            handle.spawn(async move {
                let mut orphan = orphan;
                let _ = orphan.wait().await;
            });
        }
    }
}

/// What the child reports when it could not exec: the step and the `errno`. Written by the
/// child before it exits, read by the parent after the clone returns (the parent is
/// suspended in between, so relaxed ordering suffices; the kernel orders the two).
#[derive(Default)]
struct Failure {
    step: AtomicI32,
    errno: AtomicI32,
}

/// The steps of the child, as reported in [`Failure::step`].
const STEP_SESSION: i32 = 1;
const STEP_PRCTL: i32 = 2;
const STEP_PARENT_GONE: i32 = 3;
const STEP_STDIO: i32 = 4;
const STEP_CWD: i32 = 5;
const STEP_EXEC: i32 = 6;

/// Everything the child reads, prepared by the parent. The pointers point into the
/// `Prepared` that owns them, which outlives the child's use of them (the parent waits
/// until the child has exec'd or exited).
struct ChildArgs {
    /// Null-terminated list of paths to try, in order (the `PATH` search done ahead).
    candidates: Vec<*const libc::c_char>,
    argv: Vec<*const libc::c_char>,
    /// `/bin/sh <path> argv[1..]`, for a file without a `#!` line (`ENOEXEC`), as `execvp`
    /// does; slot 1 is filled in by the child.
    sh_argv: Vec<*const libc::c_char>,
    envp: Vec<*const libc::c_char>,
    cwd: Option<CString>,
    /// Descriptors to install as 0, 1, 2 (-1: leave as inherited).
    stdio: [RawFd; 3],
    restore_huge_pages: bool,
    die_with_parent: bool,
    parent: libc::pid_t,
    failure: Failure,
}

/// The C strings the pointers of [`ChildArgs`] point into.
struct Strings {
    _candidates: Vec<CString>,
    _argv: Vec<CString>,
    _env: Vec<CString>,
    _sh: CString,
}

fn cstring(what: &str, bytes: &[u8]) -> io::Result<CString> {
    CString::new(bytes).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{what} contains a NUL byte"),
        )
    })
}

/// The paths to try for `program`: itself if it names a path, else each directory of the
/// task's `PATH` (or the executor's, or a default) joined with it, as `execvp` searches.
fn candidates(program: &str, env: &[(String, String)]) -> Vec<Vec<u8>> {
    if program.contains('/') {
        return vec![program.as_bytes().to_vec()];
    }
    // The executor's own PATH is read only when the task has none.
    let own;
    let path: &[u8] = match env.iter().rev().find(|(k, _)| k == "PATH") {
        Some((_, v)) => v.as_bytes(),
        None => {
            own = std::env::var_os("PATH");
            own.as_deref()
                .map_or(b"/usr/local/bin:/usr/bin:/bin", |p| p.as_bytes())
        }
    };
    path.split(|&b| b == b':')
        .map(|dir| {
            let dir = if dir.is_empty() { &b"."[..] } else { dir };
            let mut full = dir.to_vec();
            full.push(b'/');
            full.extend_from_slice(program.as_bytes());
            full
        })
        .collect()
}

/// Opens what the process's stdio is to be: `(fd to install, the read end of its pipe)`.
/// Descriptors are close-on-exec and above 2, so installing one never overwrites another.
fn stdio_fd(output: &Output) -> io::Result<(Option<OwnedFd>, Option<OwnedFd>)> {
    match output {
        Output::Inherit => Ok((None, None)),
        Output::File(path) => {
            if let Some(dir) = path.parent() {
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
    // starts children only from the launcher thread).
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

fn null_input() -> io::Result<OwnedFd> {
    let file = std::fs::File::open("/dev/null")?;
    above_stdio(file.into())
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

/// Starts `spec` in a session of its own; see the module documentation. Returns once the
/// program has been exec'd, or the error of the step that failed. Must be called within a
/// Tokio runtime. Dropping the future before it is done kills and reaps the process if it
/// was started meanwhile.
pub(super) async fn spawn(spec: &CommandSpec, restore_huge_pages: bool) -> io::Result<Child> {
    let cannot_run =
        |e: io::Error| io::Error::new(e.kind(), format!("cannot run {}: {e}", spec.program));
    let (job, answer) = prepare(spec, restore_huge_pages).map_err(cannot_run)?;
    submit(job).map_err(cannot_run)?;
    let mut job = answer
        .await
        .map_err(|_| cannot_run(io::Error::other("the launcher thread is gone")))?;
    let launched = job
        .outcome
        .take()
        .expect("the launcher fills in the outcome")?;
    // Dropped here, on the caller's thread, which allocated it.
    drop(job);
    let reader = |fd: Option<OwnedFd>| fd.map(pipe::Receiver::from_owned_fd).transpose();
    Ok(Child {
        pid: launched.pid,
        waiter: Some(waiter(launched.pid)),
        status: None,
        stdout: reader(launched.stdout).map_err(cannot_run)?,
        stderr: reader(launched.stderr).map_err(cannot_run)?,
    })
}

/// The job for [`spawn`], and where its answer comes.
fn prepare(
    spec: &CommandSpec,
    restore_huge_pages: bool,
) -> io::Result<(Box<Job>, oneshot::Receiver<Box<Job>>)> {
    let argv0 = spec.argv0.as_deref().unwrap_or(&spec.program);
    let argv: Vec<CString> = std::iter::once(argv0)
        .chain(spec.args.iter().map(String::as_str))
        .map(|a| cstring("an argument", a.as_bytes()))
        .collect::<io::Result<_>>()?;
    let env: Vec<CString> = spec
        .env
        .iter()
        .map(|(k, v)| {
            let mut kv = Vec::with_capacity(k.len() + v.len() + 1);
            kv.extend_from_slice(k.as_bytes());
            kv.push(b'=');
            kv.extend_from_slice(v.as_bytes());
            cstring("the environment", &kv)
        })
        .collect::<io::Result<_>>()?;
    let candidates: Vec<CString> = candidates(&spec.program, &spec.env)
        .into_iter()
        .map(|p| cstring("the program", &p))
        .collect::<io::Result<_>>()?;
    let cwd = match &spec.cwd {
        Some(dir) => Some(cstring(
            "the working directory",
            dir.as_os_str().as_bytes(),
        )?),
        None => None,
    };

    let ptrs = |v: &[CString]| -> Vec<*const libc::c_char> {
        v.iter()
            .map(|s| s.as_ptr())
            .chain(std::iter::once(std::ptr::null()))
            .collect()
    };
    let sh = CString::new("/bin/sh").expect("no NUL");
    let mut sh_argv = vec![sh.as_ptr(), std::ptr::null()];
    sh_argv.extend(argv[1..].iter().map(|s| s.as_ptr()));
    sh_argv.push(std::ptr::null());
    let args = ChildArgs {
        candidates: ptrs(&candidates),
        argv: ptrs(&argv),
        sh_argv,
        envp: ptrs(&env),
        cwd,
        stdio: [-1; 3],
        restore_huge_pages,
        die_with_parent: spec.die_with_parent,
        parent: std::process::id() as libc::pid_t,
        failure: Failure::default(),
    };
    let (reply, answer) = oneshot::channel();
    let job = Box::new(Job {
        args,
        _strings: Strings {
            _candidates: candidates,
            _argv: argv,
            _env: env,
            _sh: sh,
        },
        setup: Setup {
            program: spec.program.clone(),
            cwd: spec.cwd.clone(),
            create_cwd: spec.create_cwd,
            stdout: spec.stdout.clone(),
            stderr: spec.stderr.clone(),
        },
        outcome: None,
        reply: Some(reply),
    });
    Ok((job, answer))
}

/// One spawn for the launcher: the child's arguments, the strings they point into, the
/// file-system set-up, and, once done, the outcome. It travels to the launcher and back
/// whole, so that it is allocated and freed by the caller.
struct Job {
    args: ChildArgs,
    _strings: Strings,
    setup: Setup,
    outcome: Option<io::Result<Launched>>,
    /// Where the job goes back; taken by the launcher.
    reply: Option<oneshot::Sender<Box<Job>>>,
}

// SAFETY: the raw pointers in `args` point into the heap buffers of `_strings`, owned by the
// same job; a job is used by one thread at a time (it moves whole, through the queue and the
// reply), and those buffers do not move when the job does.
unsafe impl Send for Job {}

/// What the launcher opens or creates before the clone.
struct Setup {
    /// For error messages.
    program: String,
    cwd: Option<PathBuf>,
    create_cwd: bool,
    stdout: Output,
    stderr: Output,
}

/// A started process, as the launcher reports it.
struct Launched {
    pid: libc::pid_t,
    /// Read ends of [`Output::Pipe`] outputs.
    stdout: Option<OwnedFd>,
    stderr: Option<OwnedFd>,
}

/// Jobs waiting for the launcher.
static JOBS: Mutex<VecDeque<Box<Job>>> = Mutex::new(VecDeque::new());
static JOB_READY: Condvar = Condvar::new();
/// Whether the launcher thread was started (or why not).
static LAUNCHER: OnceLock<Result<(), String>> = OnceLock::new();

/// The launcher's stack: it runs the file-system calls and formats error messages; the
/// child has a stack of its own.
const LAUNCHER_STACK: usize = 128 * 1024;

/// Starts the launcher thread if it is not running yet. Spawning starts it too; an executor
/// starts it ahead, so that its first launch does not pay for a new thread.
pub(super) fn start_launcher() -> io::Result<()> {
    LAUNCHER
        .get_or_init(|| {
            std::thread::Builder::new()
                .name("mesokit-launch".into())
                .stack_size(LAUNCHER_STACK)
                .spawn(launcher)
                .map(drop)
                .map_err(|e| format!("cannot start the launcher thread: {e}"))
        })
        .clone()
        .map_err(io::Error::other)
}

fn submit(job: Box<Job>) -> io::Result<()> {
    start_launcher()?;
    // The lock is never held across anything that can panic; a poisoned queue is intact.
    JOBS.lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push_back(job);
    JOB_READY.notify_one();
    Ok(())
}

/// The launcher thread: takes jobs one at a time, for the life of the process.
fn launcher() {
    // Every signal blocked for good: process-directed signals go to the other threads, and a
    // child starts with this mask, so no handler can run in it before it resets them all.
    // SAFETY: sigset_t is plain data; sigfillset and pthread_sigmask only write to it and to
    // this thread's mask.
    unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, std::ptr::null_mut());
    }
    let mut kept = Kept::default();
    loop {
        let mut job = {
            let mut jobs = JOBS.lock().unwrap_or_else(PoisonError::into_inner);
            loop {
                if let Some(job) = jobs.pop_front() {
                    break job;
                }
                jobs = JOB_READY.wait(jobs).unwrap_or_else(PoisonError::into_inner);
            }
        };
        job.outcome = Some(launch(&mut job, &mut kept));
        let reply = job.reply.take().expect("one reply per job");
        if let Err(job) = reply.send(job) {
            // The caller stopped waiting: nobody else will ever kill or reap the process.
            if let Some(Ok(launched)) = &job.outcome {
                // SAFETY: kill and waitpid on our own unreaped child, which leads its group.
                unsafe {
                    libc::kill(-launched.pid, libc::SIGKILL);
                    libc::waitpid(launched.pid, std::ptr::null_mut(), 0);
                }
            }
        }
    }
}

/// What the launcher keeps from one spawn to the next.
#[derive(Default)]
struct Kept {
    /// `/dev/null`, every process's stdin.
    null: Option<OwnedFd>,
    #[cfg(target_os = "linux")]
    stack: Option<ChildStack>,
}

/// The file-system set-up, the clone, and what the child reported. Errors read as before
/// the launcher existed: the working directory's as they are, the others after
/// `cannot run <program>:`.
fn launch(job: &mut Job, kept: &mut Kept) -> io::Result<Launched> {
    let setup = &job.setup;
    if let Some(cwd) = &setup.cwd {
        if setup.create_cwd {
            std::fs::create_dir_all(cwd).map_err(|e| {
                io::Error::new(e.kind(), format!("cannot create {}: {e}", cwd.display()))
            })?;
        } else if let Err(e) = std::fs::metadata(cwd) {
            // Checked here, where the error can say which directory.
            return Err(io::Error::new(
                e.kind(),
                format!("working directory {}: {e}", cwd.display()),
            ));
        }
    }
    let cannot_run =
        |e: io::Error| io::Error::new(e.kind(), format!("cannot run {}: {e}", setup.program));
    let stdin = match &kept.null {
        Some(fd) => fd.as_raw_fd(),
        None => kept
            .null
            .insert(null_input().map_err(cannot_run)?)
            .as_raw_fd(),
    };
    let (out, stdout) = stdio_fd(&setup.stdout).map_err(cannot_run)?;
    let (err, stderr) = stdio_fd(&setup.stderr).map_err(cannot_run)?;
    let raw = |fd: &Option<OwnedFd>| fd.as_ref().map_or(-1, AsRawFd::as_raw_fd);
    job.args.stdio = [stdin, raw(&out), raw(&err)];

    let pid = start(&mut job.args, kept).map_err(cannot_run)?;
    // The child is gone from our memory: it exec'd or exited.
    drop((out, err));
    let step = job.args.failure.step.load(Ordering::Relaxed);
    if step != 0 {
        let mut raw_status = 0;
        // SAFETY: reaping our own child, which has exited (it reported a failure).
        unsafe { libc::waitpid(pid, &mut raw_status, 0) };
        let os = io::Error::from_raw_os_error(job.args.failure.errno.load(Ordering::Relaxed));
        let what = match step {
            STEP_SESSION => format!("cannot start a session: {os}"),
            STEP_PRCTL => format!("prctl: {os}"),
            STEP_PARENT_GONE => "the executor exited while starting it".to_owned(),
            STEP_STDIO => format!("cannot set up its standard streams: {os}"),
            STEP_CWD => format!(
                "cannot change to {}: {os}",
                setup
                    .cwd
                    .as_deref()
                    .unwrap_or(std::path::Path::new(""))
                    .display()
            ),
            _ => os.to_string(),
        };
        return Err(cannot_run(io::Error::new(os.kind(), what)));
    }
    Ok(Launched {
        pid,
        stdout,
        stderr,
    })
}

fn waiter(pid: libc::pid_t) -> Waiter {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: pidfd_open takes a pid and flags; it returns a new descriptor or -1.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        if fd >= 0 {
            // SAFETY: the descriptor was just created and is owned by nobody else.
            let fd = unsafe { OwnedFd::from_raw_fd(fd as RawFd) };
            // SAFETY: an OwnedFd's descriptor stays open, and the same, until the AsyncFd
            // that owns it drops it.
            let registered =
                unsafe { AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) };
            if let Ok(fd) = registered {
                return Waiter::Pidfd(fd);
            }
        }
    }
    let _ = pid;
    Waiter::Poll
}

/// Makes the child and runs [`child_main`] in it; returns its pid once it has exec'd or
/// exited. Called on the launcher, whose signals are all blocked (see [`launcher`]).
fn start(args: &mut ChildArgs, kept: &mut Kept) -> io::Result<libc::pid_t> {
    let pid = clone_child(args, kept);
    #[cfg(target_os = "linux")]
    if args.restore_huge_pages {
        // The child undid the opt-out in the memory it shared with us: take it back.
        // SAFETY: prctl with integer arguments only.
        unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
    }
    pid
}

/// The child's stack: glibc's `posix_spawn` uses 32 KiB plus room for its own copies of the
/// arguments; ours are prepared by the parent, and the child's calls are system-call
/// wrappers.
#[cfg(target_os = "linux")]
const STACK: usize = 64 * 1024;

/// The children's stack, a mapping of its own with a guard page below it, so that an
/// overflow faults instead of writing over the executor's heap. Made on the first spawn and
/// kept: one child at a time uses it, while the launcher waits for its exec.
#[cfg(target_os = "linux")]
struct ChildStack {
    /// The top end (stacks grow down), page-aligned and so 16-aligned.
    top: *mut libc::c_void,
}

#[cfg(target_os = "linux")]
impl ChildStack {
    fn new() -> io::Result<Self> {
        let page = 4096;
        // SAFETY: a fresh private anonymous mapping; checked for failure before use, never
        // unmapped (the launcher keeps it for the life of the process).
        unsafe {
            let base = libc::mmap(
                std::ptr::null_mut(),
                STACK + page,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK,
                -1,
                0,
            );
            if base == libc::MAP_FAILED {
                return Err(io::Error::last_os_error());
            }
            // The guard page is the lowest page of the mapping.
            libc::mprotect(base, page, libc::PROT_NONE);
            Ok(ChildStack {
                top: (base as *mut u8).add(STACK + page).cast(),
            })
        }
    }
}

#[cfg(target_os = "linux")]
fn clone_child(args: &mut ChildArgs, kept: &mut Kept) -> io::Result<libc::pid_t> {
    let top = match &kept.stack {
        Some(stack) => stack.top,
        None => kept.stack.insert(ChildStack::new()?).top,
    };
    // SAFETY: CLONE_VM | CLONE_VFORK: the child runs in our memory on the kept stack, and
    // this thread is suspended until it has exec'd or exited, so `args` and the stack
    // outlive its use of them, and no other child uses the stack meanwhile. SIGCHLD: the
    // child is reaped like any other child.
    let pid = unsafe {
        libc::clone(
            child_main,
            top,
            libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
            (args as *mut ChildArgs).cast(),
        )
    };
    if pid == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(pid)
}

#[cfg(not(target_os = "linux"))]
fn clone_child(args: &mut ChildArgs, _kept: &mut Kept) -> io::Result<libc::pid_t> {
    // SAFETY: after fork the child only runs child_main, which makes system calls and never
    // returns.
    match unsafe { libc::fork() } {
        -1 => Err(io::Error::last_os_error()),
        0 => {
            child_main((args as *mut ChildArgs).cast());
            // SAFETY: not reached; _exit ends the child without running the parent's code.
            unsafe { libc::_exit(127) }
        }
        pid => {
            // A forked child has its own memory: its failure report does not reach us, and
            // an exec error shows as exit status 127.
            Ok(pid)
        }
    }
}

/// The child: system calls only, on [`ChildArgs`] prepared by the parent; never returns.
extern "C" fn child_main(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` is the `ChildArgs` the parent passed to clone, alive and not modified by
    // the parent until this process has exec'd or exited. Only async-signal-safe calls
    // follow, on descriptors and C strings the parent prepared.
    unsafe {
        let args = &mut *arg.cast::<ChildArgs>();
        let failure = &args.failure;
        // Reading errno allocates nothing.
        let errno = || io::Error::last_os_error().raw_os_error().unwrap_or(0);
        let fail = |step: i32, errno: i32| -> ! {
            failure.errno.store(errno, Ordering::Relaxed);
            failure.step.store(step, Ordering::Relaxed);
            libc::_exit(127)
        };
        // Every signal back to its default action (handlers would be the parent's, and
        // ignored signals would stay ignored across exec), then nothing blocked.
        let mut dfl: libc::sigaction = std::mem::zeroed();
        dfl.sa_sigaction = libc::SIG_DFL;
        for sig in 1..65 {
            // SIGKILL, SIGSTOP and the C library's reserved signals fail with EINVAL.
            libc::sigaction(sig, &dfl, std::ptr::null_mut());
        }
        let mut none: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut none);
        libc::sigprocmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());

        if libc::setsid() == -1 {
            fail(STEP_SESSION, errno());
        }
        #[cfg(target_os = "linux")]
        {
            // The THP opt-out survives exec: undo ours (the parent takes it back).
            if args.restore_huge_pages && libc::prctl(libc::PR_SET_THP_DISABLE, 0, 0, 0, 0) == -1 {
                fail(STEP_PRCTL, errno());
            }
            if args.die_with_parent {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == -1 {
                    fail(STEP_PRCTL, errno());
                }
                // The executor died before the prctl: nobody would ever reap us.
                if libc::getppid() != args.parent {
                    fail(STEP_PARENT_GONE, libc::ESRCH);
                }
            }
        }
        for (target, &fd) in args.stdio.iter().enumerate() {
            if fd >= 0 && libc::dup2(fd, target as libc::c_int) == -1 {
                fail(STEP_STDIO, errno());
            }
        }
        if let Some(dir) = &args.cwd
            && libc::chdir(dir.as_ptr()) == -1
        {
            fail(STEP_CWD, errno());
        }
        // As execvp: the first candidate that is not missing; a permission error is kept
        // as the answer if nothing else is found.
        let mut last = libc::ENOENT;
        let mut denied = false;
        for i in 0..args.candidates.len() - 1 {
            let path = args.candidates[i];
            libc::execve(path, args.argv.as_ptr(), args.envp.as_ptr());
            last = errno();
            match last {
                libc::ENOEXEC => {
                    args.sh_argv[1] = path;
                    libc::execve(args.sh_argv[0], args.sh_argv.as_ptr(), args.envp.as_ptr());
                    fail(STEP_EXEC, errno());
                }
                libc::EACCES => denied = true,
                libc::ENOENT | libc::ENOTDIR | libc::ENAMETOOLONG | libc::ELOOP => {}
                _ => fail(STEP_EXEC, last),
            }
        }
        fail(STEP_EXEC, if denied { libc::EACCES } else { last })
    }
}
