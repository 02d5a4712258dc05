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
//! The child's stack (a mapping with a guard page) and `/dev/null` are kept from one spawn
//! to the next. Before the clone, which holds the calling thread until the exec, the
//! thread's other tasks get their turn (see [`spawn`]).
//!
//! The process is waited for through a pidfd registered with Tokio's reactor (Linux 5.3 and
//! later), or by polling `waitpid` where there is none.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::ExitStatus;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use tokio::io::unix::AsyncFd;
use tokio::net::unix::pipe;

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
    let (out, out_read) = stdio_fd(&spec.stdout).map_err(cannot_run)?;
    let (err, err_read) = stdio_fd(&spec.stderr).map_err(cannot_run)?;
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
    start_with(spec, restore_huge_pages, streams).map_err(cannot_run)
}

/// Checks the working directory, or creates it. Its errors name it.
fn set_up_cwd(spec: &CommandSpec) -> io::Result<()> {
    let Some(cwd) = &spec.cwd else {
        return Ok(());
    };
    if spec.create_cwd {
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

/// The C strings and arrays for the child, the clone, and what the child reported.
fn start_with(spec: &CommandSpec, restore_huge_pages: bool, streams: Streams) -> io::Result<Child> {
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
    let raw = |fd: &Option<OwnedFd>| fd.as_ref().map_or(-1, AsRawFd::as_raw_fd);
    let mut args = ChildArgs {
        candidates: ptrs(&candidates),
        argv: ptrs(&argv),
        sh_argv,
        envp: ptrs(&env),
        cwd,
        stdio: [streams.stdin, raw(&streams.out), raw(&streams.err)],
        restore_huge_pages,
        die_with_parent: spec.die_with_parent,
        parent: std::process::id() as libc::pid_t,
        failure: Failure::default(),
    };
    let _strings = Strings {
        _candidates: candidates,
        _argv: argv,
        _env: env,
        _sh: sh,
    };

    let pid = start(&mut args)?;
    // The child is gone from our memory: it exec'd or exited.
    drop((streams.out, streams.err));
    let step = args.failure.step.load(Ordering::Relaxed);
    if step != 0 {
        let mut raw_status = 0;
        // SAFETY: reaping our own child, which has exited (it reported a failure).
        unsafe { libc::waitpid(pid, &mut raw_status, 0) };
        let os = io::Error::from_raw_os_error(args.failure.errno.load(Ordering::Relaxed));
        let what = match step {
            STEP_SESSION => format!("cannot start a session: {os}"),
            STEP_PRCTL => format!("prctl: {os}"),
            STEP_PARENT_GONE => "the executor exited while starting it".to_owned(),
            STEP_STDIO => format!("cannot set up its standard streams: {os}"),
            STEP_CWD => format!(
                "cannot change to {}: {os}",
                spec.cwd.as_deref().unwrap_or(Path::new("")).display()
            ),
            _ => os.to_string(),
        };
        return Err(io::Error::new(os.kind(), what));
    }
    let reader = |fd: Option<OwnedFd>| fd.map(pipe::Receiver::from_owned_fd).transpose();
    Ok(Child {
        pid,
        waiter: Some(waiter(pid)),
        status: None,
        stdout: reader(streams.out_read)?,
        stderr: reader(streams.err_read)?,
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
/// exited. Signals are blocked in the calling thread meanwhile, so that none of the
/// executor's handlers can run in the child (which shares the executor's memory on Linux)
/// before it has set them all back to the default.
fn start(args: &mut ChildArgs) -> io::Result<libc::pid_t> {
    // SAFETY: sigset_t is plain data; sigfillset and pthread_sigmask only write to it and
    // to this thread's mask, which is restored below on every path.
    let old = unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
        old
    };
    let pid = clone_child(args);
    // SAFETY: restores the mask saved above.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut()) };
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

/// A stack for children: a mapping of its own with a guard page below it, so that an
/// overflow faults instead of writing over the executor's heap.
#[cfg(target_os = "linux")]
struct ChildStack {
    base: *mut libc::c_void,
}

// SAFETY: the mapping belongs to no thread; whoever holds the ChildStack is its only user.
#[cfg(target_os = "linux")]
unsafe impl Send for ChildStack {}

#[cfg(target_os = "linux")]
impl ChildStack {
    const GUARD: usize = 4096;

    fn new() -> io::Result<Self> {
        // SAFETY: a fresh private anonymous mapping, checked for failure; its lowest page
        // becomes the guard.
        unsafe {
            let base = libc::mmap(
                std::ptr::null_mut(),
                STACK + Self::GUARD,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK,
                -1,
                0,
            );
            if base == libc::MAP_FAILED {
                return Err(io::Error::last_os_error());
            }
            libc::mprotect(base, Self::GUARD, libc::PROT_NONE);
            Ok(ChildStack { base })
        }
    }

    /// The top end (stacks grow down), page-aligned and so 16-aligned.
    fn top(&self) -> *mut libc::c_void {
        // SAFETY: one past the end of the mapping made in `new`.
        unsafe { self.base.cast::<u8>().add(STACK + Self::GUARD).cast() }
    }
}

#[cfg(target_os = "linux")]
impl Drop for ChildStack {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, no longer used by any child (each exec'd or
        // exited before its clone returned).
        unsafe { libc::munmap(self.base, STACK + Self::GUARD) };
    }
}

/// The stack kept from one spawn to the next (its mapping and its pages stay), for one
/// spawn at a time; a spawn that finds it in use makes one of its own.
#[cfg(target_os = "linux")]
static KEPT_STACK: Mutex<Option<ChildStack>> = Mutex::new(None);

#[cfg(target_os = "linux")]
fn clone_child(args: &mut ChildArgs) -> io::Result<libc::pid_t> {
    let mut kept = KEPT_STACK.try_lock().ok();
    let own;
    let stack = match kept.as_deref_mut() {
        Some(Some(stack)) => &*stack,
        Some(slot) => &*slot.insert(ChildStack::new()?),
        None => {
            own = ChildStack::new()?;
            &own
        }
    };
    // SAFETY: CLONE_VM | CLONE_VFORK: the child runs in our memory on `stack`, which no
    // other child uses meanwhile (held through the lock, or our own), and this thread is
    // suspended until the child has exec'd or exited, so `args` and the stack outlive its
    // use of them. SIGCHLD: the child is reaped like any other child.
    let pid = unsafe {
        libc::clone(
            child_main,
            stack.top(),
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
fn clone_child(args: &mut ChildArgs) -> io::Result<libc::pid_t> {
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
