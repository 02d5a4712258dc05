//! Starting a process the way `posix_spawn` does, cheaper, and with the set-up `posix_spawn`
//! cannot do. The executor starts its tasks with it and the [`runner`](crate::runner) its
//! commands.
//!
//! Between fork and exec, a task needs a session of its own (`setsid`), no blocked or
//! ignored signals, on Linux the executor's transparent-huge-page opt-out undone and
//! `PR_SET_PDEATHSIG`; a hook command a process group of its own. With
//! `std::process::Command` that takes a `pre_exec` hook, which makes the standard library
//! `fork` the whole process (copying its page tables) instead of taking `posix_spawn`'s
//! `vfork`-style path. So the child is made as `posix_spawn` makes it,
//! `clone(CLONE_VM | CLONE_VFORK)`: it runs in the parent's memory while the calling thread
//! waits, until it has exec'd or failed; elsewhere than Linux it is a plain `fork`.
//!
//! Cheaper than glibc's `posix_spawn` (docs/benchmarks.md, "Agent command modules"):
//! - the child's stack is a mapping kept by the spawning thread from one spawn to the next,
//!   not one made and unmapped for every spawn (an unmap in a process with several threads
//!   costs TLB shoot-downs, and a fresh stack page faults);
//! - on Linux x86-64, `clone3` with `CLONE_CLEAR_SIGHAND` (Linux 5.5) has the kernel reset
//!   the signal handlers, where glibc's child asks for and resets all 64 dispositions one
//!   system call at a time; elsewhere, or where `clone3` is refused, `clone` and the loop.
//!
//! Everything the child needs is prepared by the parent first (C strings, argument and
//! environment arrays, the file descriptors to install), so that the child only makes
//! system calls: it allocates nothing, takes no lock and touches no memory but its stack and
//! the [`Failure`] slot through which it reports what failed.
//!
//! A [`Child`] is waited for through a pidfd registered with Tokio's reactor (Linux 5.3 and
//! later), or by polling `waitpid` where there is none.
//!
//! Every `unsafe` block here carries its SAFETY argument.

#![allow(unsafe_code)]

use std::ffi::{CStr, CString, OsStr};
use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::ExitStatus;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::Duration;

use tokio::io::unix::AsyncFd;
use tokio::net::unix::pipe;

/// One process to start. [`Spawn::start`] starts it.
#[derive(Debug, Clone, Copy)]
pub struct Spawn<'a> {
    /// A path, or a name looked up in the `PATH` of [`Spawn::env`] (else of this process,
    /// else `/usr/local/bin:/usr/bin:/bin`), as `execvp` does.
    pub program: &'a str,
    /// `argv[0]`, if not the program itself.
    pub argv0: Option<&'a str>,
    /// `argv[1..]`.
    pub args: &'a [&'a OsStr],
    /// The whole environment; `None`: this process's.
    pub env: Option<&'a [(String, String)]>,
    /// The working directory; `None`: this process's.
    pub cwd: Option<&'a Path>,
    /// Descriptors to install as stdin, stdout and stderr; -1 leaves one as inherited. Each
    /// must be above 2 (or its own slot): they are installed in order, so a descriptor 0-2
    /// could be overwritten before it is installed.
    pub stdio: [RawFd; 3],
    /// A session of its own (`setsid`), else only a process group of its own.
    pub session: bool,
    /// Every signal back to its default action, also the ignored ones; else only SIGPIPE
    /// (ignored by Rust programs) and the handlers, as `std::process::Command` leaves them.
    pub reset_ignored_signals: bool,
    /// Linux: undo `PR_SET_THP_DISABLE` in the child (which, in shared memory, also undoes
    /// it for this process: it is taken back as soon as the child has exec'd).
    pub restore_huge_pages: bool,
    /// Linux: SIGKILL the process when the *thread* that started it ends
    /// (`PR_SET_PDEATHSIG`), so start it from a thread that lives as long as the process.
    pub die_with_parent: bool,
}

impl<'a> Spawn<'a> {
    /// `program` with `args`, this process's environment and directory, stdio inherited, in
    /// a process group of its own; nothing else.
    pub fn new(program: &'a str, args: &'a [&'a OsStr]) -> Self {
        Spawn {
            program,
            argv0: None,
            args,
            env: None,
            cwd: None,
            stdio: [-1; 3],
            session: false,
            reset_ignored_signals: false,
            restore_huge_pages: false,
            die_with_parent: false,
        }
    }

    /// Starts the process; returns its pid once it has exec'd, or the error of the step
    /// that failed (`cannot start a session or process group: …`, `cannot change to
    /// <dir>: …`, or the `exec`'s own error, with its OS error code). Blocks the calling
    /// thread until then.
    /// The caller owns the child: it must reap it (e.g. through [`Child::adopt`]).
    pub fn start(&self) -> io::Result<libc::pid_t> {
        let argv0 = self.argv0.unwrap_or(self.program);
        let argv: Vec<CString> = std::iter::once(OsStr::new(argv0))
            .chain(self.args.iter().copied())
            .map(|a| cstring("an argument", a.as_bytes()))
            .collect::<io::Result<_>>()?;
        let env: Option<Vec<CString>> = self
            .env
            .map(|env| {
                env.iter()
                    .map(|(k, v)| {
                        let mut kv = Vec::with_capacity(k.len() + v.len() + 1);
                        kv.extend_from_slice(k.as_bytes());
                        kv.push(b'=');
                        kv.extend_from_slice(v.as_bytes());
                        cstring("the environment", &kv)
                    })
                    .collect::<io::Result<_>>()
            })
            .transpose()?;
        let candidates: Vec<CString> = candidates(self.program, self.env)
            .into_iter()
            .map(|p| cstring("the program", &p))
            .collect::<io::Result<_>>()?;
        let cwd = match self.cwd {
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
        let sh = c"/bin/sh";
        let mut sh_argv = vec![sh.as_ptr(), std::ptr::null()];
        sh_argv.extend(argv[1..].iter().map(|s| s.as_ptr()));
        sh_argv.push(std::ptr::null());
        let given_env = env.as_deref().map(ptrs);
        let envp = match &given_env {
            Some(envp) => envp.as_ptr(),
            // SAFETY: reading the C library's `environ` pointer. The strings it points to
            // are only read, by the child, while this thread waits; no code of ours changes
            // the environment once threads run (`std::env::set_var` is `unsafe` for this
            // reason), as `std::process::Command` also assumes when it passes it on.
            None => unsafe { environ },
        };
        let mut args = ChildArgs {
            candidates: ptrs(&candidates),
            argv: ptrs(&argv),
            sh_argv,
            envp,
            cwd: cwd.as_deref(),
            stdio: self.stdio,
            session: self.session,
            reset_ignored_signals: self.reset_ignored_signals,
            handlers_cleared: false,
            restore_huge_pages: self.restore_huge_pages,
            die_with_parent: self.die_with_parent,
            parent: std::process::id() as libc::pid_t,
            failure: Failure::default(),
        };
        let pid = start(&mut args)?;
        let step = args.failure.step.load(Ordering::Relaxed);
        if step == 0 {
            return Ok(pid);
        }
        let mut raw_status = 0;
        // SAFETY: reaping our own child, which has exited (it reported a failure).
        unsafe { libc::waitpid(pid, &mut raw_status, 0) };
        let errno = args.failure.errno.load(Ordering::Relaxed);
        let os = io::Error::from_raw_os_error(errno);
        let what = match step {
            STEP_SESSION => format!("cannot start a session or process group: {os}"),
            STEP_PRCTL => format!("prctl: {os}"),
            STEP_PARENT_GONE => "its parent exited while starting it".to_owned(),
            STEP_STDIO => format!("cannot set up its standard streams: {os}"),
            STEP_CWD => format!(
                "cannot change to {}: {os}",
                self.cwd.unwrap_or(Path::new("")).display()
            ),
            // The exec's own error, code kept (a caller may retry ETXTBSY).
            _ => return Err(os),
        };
        Err(io::Error::new(os.kind(), what))
    }
}

unsafe extern "C" {
    /// The C library's environment of this process.
    static environ: *const *const libc::c_char;
}

/// A process started by [`Spawn::start`] and adopted for waiting. Unlike
/// `tokio::process::Child`, dropping it neither kills nor detaches the process: an unreaped
/// process is reaped in the background once it ends.
#[derive(Debug)]
pub struct Child {
    pid: libc::pid_t,
    /// Until reaped.
    waiter: Option<Waiter>,
    status: Option<ExitStatus>,
    /// The read end of a pipe the process writes its stdout to, if the caller made one.
    pub stdout: Option<pipe::Receiver>,
    /// The same for its stderr.
    pub stderr: Option<pipe::Receiver>,
    /// Already the background reaper's: dropped unreaped (its runtime shutting down), it is
    /// left to the process's end rather than handed to yet another task, which a runtime
    /// shutting down would drop at once, and so on without end.
    orphan: bool,
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
    /// Takes `pid`, a child of this process that nothing else waits for (as
    /// [`Spawn::start`] returns it), to wait for it within the current Tokio runtime (which
    /// must exist). With `stdout`/`stderr`: the read ends of pipes it writes to.
    pub fn adopt(
        pid: libc::pid_t,
        stdout: Option<pipe::Receiver>,
        stderr: Option<pipe::Receiver>,
    ) -> Self {
        Child {
            pid,
            waiter: Some(waiter(pid)),
            status: None,
            stdout,
            stderr,
            orphan: false,
        }
    }

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
        if self.orphan || matches!(self.try_wait(), Ok(Some(_)) | Err(_)) {
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
                orphan: true,
            };
            handle.spawn(async move {
                let mut orphan = orphan;
                let _ = orphan.wait().await;
            });
        }
    }
}

/// Waits for `pid`, a child of this process that nothing else waits for, to end and reaps
/// it, blocking the calling thread (a thread of its own, not a runtime's).
pub fn wait_blocking(pid: libc::pid_t) -> io::Result<ExitStatus> {
    loop {
        let mut raw = 0;
        // SAFETY: waitpid on our own unreaped child, writing its status into a local.
        if unsafe { libc::waitpid(pid, &mut raw, 0) } == pid {
            return Ok(ExitStatus::from_raw(raw));
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
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

/// Everything the child reads, prepared by the parent. The pointers point into strings
/// [`Spawn::start`] owns, which outlive the child's use of them (the parent waits until the
/// child has exec'd or exited).
struct ChildArgs<'a> {
    /// Null-terminated list of paths to try, in order (the `PATH` search done ahead).
    candidates: Vec<*const libc::c_char>,
    argv: Vec<*const libc::c_char>,
    /// `/bin/sh <path> argv[1..]`, for a file without a `#!` line (`ENOEXEC`), as `execvp`
    /// does; slot 1 is filled in by the child.
    sh_argv: Vec<*const libc::c_char>,
    /// Null-terminated `NAME=value` strings.
    envp: *const *const libc::c_char,
    cwd: Option<&'a CStr>,
    stdio: [RawFd; 3],
    session: bool,
    reset_ignored_signals: bool,
    /// The kernel has reset the handlers (`CLONE_CLEAR_SIGHAND`).
    handlers_cleared: bool,
    restore_huge_pages: bool,
    die_with_parent: bool,
    parent: libc::pid_t,
    failure: Failure,
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
/// `PATH` in `env` (or this process's, or a default) joined with it, as `execvp` searches.
fn candidates(program: &str, env: Option<&[(String, String)]>) -> Vec<Vec<u8>> {
    if program.contains('/') {
        return vec![program.as_bytes().to_vec()];
    }
    let given = env.map(|env| env.iter().rev().find(|(k, _)| k == "PATH"));
    let own;
    let path: &[u8] = match given {
        Some(Some((_, v))) => v.as_bytes(),
        // This process's PATH is read only when the environment given has none.
        _ => {
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

/// Makes the child and runs [`child_main`] in it; returns its pid once it has exec'd or
/// exited. Signals are blocked in the calling thread meanwhile, so that none of this
/// process's handlers can run in the child (which shares its memory on Linux) before they
/// are reset.
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

/// The child's stack: its calls are system-call wrappers on what the parent prepared
/// (glibc gives its `posix_spawn` child 32 KiB).
#[cfg(target_os = "linux")]
const STACK: usize = 64 * 1024;

/// A stack for children, one per spawning thread, made on its first spawn and kept until
/// the thread ends (glibc maps and unmaps one per spawn: an unmap in a process with several
/// threads costs TLB shoot-downs, and a fresh stack page faults). A mapping of its own with
/// a guard page below it, so that an overflow faults instead of writing over memory.
#[cfg(target_os = "linux")]
struct Stack {
    base: *mut libc::c_void,
}

#[cfg(target_os = "linux")]
impl Stack {
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
            Ok(Stack { base })
        }
    }

    /// The lowest usable address (above the guard page), for `clone3`.
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    fn low(&self) -> *mut libc::c_void {
        // SAFETY: within the mapping made in `new`.
        unsafe { self.base.cast::<u8>().add(Self::GUARD).cast() }
    }

    /// The top end (stacks grow down), page-aligned and so 16-aligned.
    fn top(&self) -> *mut libc::c_void {
        // SAFETY: one past the end of the mapping made in `new`.
        unsafe { self.base.cast::<u8>().add(Self::GUARD + STACK).cast() }
    }
}

#[cfg(target_os = "linux")]
impl Drop for Stack {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`; no child uses it any more (each exec'd or
        // exited before its clone returned, on this very thread).
        unsafe { libc::munmap(self.base, STACK + Self::GUARD) };
    }
}

#[cfg(target_os = "linux")]
thread_local! {
    static CHILD_STACK: std::cell::RefCell<Option<Stack>> = const { std::cell::RefCell::new(None) };
}

/// Whether `clone3` with `CLONE_CLEAR_SIGHAND` was refused once (older kernel, seccomp), or
/// is not to be tried: [`NO_CLONE3_VAR`] set to `1` when the first process starts.
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
static NO_CLONE3: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// `MESOKIT_SPAWN_NO_CLONE3=1`: start processes with `clone` only, never `clone3` (for a
/// sandbox whose seccomp filter kills a process on `clone3` instead of refusing it).
pub const NO_CLONE3_VAR: &str = "MESOKIT_SPAWN_NO_CLONE3";

#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
fn clone3_allowed() -> bool {
    static CHECKED: std::sync::Once = std::sync::Once::new();
    CHECKED.call_once(|| {
        if std::env::var_os(NO_CLONE3_VAR).is_some_and(|v| v == "1") {
            NO_CLONE3.store(true, Ordering::Relaxed);
        }
    });
    !NO_CLONE3.load(Ordering::Relaxed)
}

#[cfg(target_os = "linux")]
fn clone_child(args: &mut ChildArgs) -> io::Result<libc::pid_t> {
    CHILD_STACK.with(|kept| {
        let mut kept = kept.borrow_mut();
        let stack = match &*kept {
            Some(stack) => stack,
            None => kept.insert(Stack::new()?),
        };
        clone_on(stack, args)
    })
}

/// The clone itself, the child on `stack`, which this thread holds until the child has
/// exec'd or exited.
#[cfg(target_os = "linux")]
fn clone_on(stack: &Stack, args: &mut ChildArgs) -> io::Result<libc::pid_t> {
    #[cfg(target_arch = "x86_64")]
    if clone3_allowed() {
        match clone3::spawn(stack, args) {
            Ok(pid) => return Ok(pid),
            Err(e)
                if e.raw_os_error().is_some_and(|e| {
                    e == libc::ENOSYS || e == libc::EINVAL || e == libc::EPERM
                }) =>
            {
                NO_CLONE3.store(true, Ordering::Relaxed);
            }
            Err(e) => return Err(e),
        }
    }
    args.handlers_cleared = false;
    // SAFETY: CLONE_VM | CLONE_VFORK: the child runs in our memory on `stack`, which no other
    // child uses meanwhile (it is this thread's), and this thread is suspended until the
    // child has exec'd or exited, so `args` and the stack outlive its use of them. SIGCHLD:
    // the child is reaped like any other.
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

/// `clone3(CLONE_VM | CLONE_VFORK | CLONE_CLEAR_SIGHAND)`: the C library has no wrapper for
/// it, so a few instructions of our own make the call and, in the child, run
/// [`child_main`] on the new stack and exit with what it returns (it never returns).
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
mod clone3 {
    use super::{ChildArgs, STACK, Stack, child_main};
    use std::io;

    /// `struct clone_args` of `<linux/sched.h>` (the fields up to `cgroup`, Linux 5.7).
    #[repr(C)]
    struct CloneArgs {
        flags: u64,
        pidfd: u64,
        child_tid: u64,
        parent_tid: u64,
        exit_signal: u64,
        stack: u64,
        stack_size: u64,
        tls: u64,
        set_tid: u64,
        set_tid_size: u64,
        cgroup: u64,
    }

    const CLONE_CLEAR_SIGHAND: u64 = 0x1_0000_0000;
    const SYS_CLONE3: i64 = 435;

    pub(super) fn spawn(stack: &Stack, args: &mut ChildArgs) -> io::Result<libc::pid_t> {
        args.handlers_cleared = true;
        let clone_args = CloneArgs {
            flags: (libc::CLONE_VM | libc::CLONE_VFORK) as u64 | CLONE_CLEAR_SIGHAND,
            pidfd: 0,
            child_tid: 0,
            parent_tid: 0,
            exit_signal: libc::SIGCHLD as u64,
            stack: stack.low() as u64,
            stack_size: STACK as u64,
            tls: 0,
            set_tid: 0,
            set_tid_size: 0,
            cgroup: 0,
        };
        let f: extern "C" fn(*mut libc::c_void) -> libc::c_int = child_main;
        let ret: i64;
        // SAFETY: the system call either fails (a negative errno in rax, nothing made) or
        // returns twice: in this thread with the child's pid, once the child has exec'd or
        // exited (CLONE_VFORK), and in the child with 0, on `stack` (the kernel sets the
        // stack pointer to its top, 16-aligned). The child calls `child_main(args)`, which
        // never returns, and would exit with its value if it did; it shares our memory
        // (CLONE_VM), and `args` and `stack` outlive it since this thread waits. The child
        // starts with the handlers reset (CLONE_CLEAR_SIGHAND) and our mask: all blocked.
        // rcx and r11 are clobbered by `syscall`; r12 and r13 survive it.
        unsafe {
            std::arch::asm!(
                "syscall",
                "test rax, rax",
                "jnz 2f",
                "mov rdi, r12",
                "call r13",
                "mov edi, eax",
                "mov eax, 60",
                "syscall",
                "ud2",
                "2:",
                inlateout("rax") SYS_CLONE3 => ret,
                in("rdi") &clone_args as *const CloneArgs,
                in("rsi") std::mem::size_of::<CloneArgs>(),
                in("r12") (args as *mut ChildArgs).cast::<libc::c_void>(),
                in("r13") f,
                lateout("rcx") _,
                lateout("r11") _,
                options(nostack)
            );
        }
        if ret < 0 {
            args.handlers_cleared = false;
            return Err(io::Error::from_raw_os_error(-ret as i32));
        }
        Ok(ret as libc::pid_t)
    }
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
        // Handlers back to the default before anything is unblocked: they are the parent's
        // code, and this process still runs in the parent's memory. Ignored signals stay
        // ignored across exec: back to the default all of them, or SIGPIPE only (which the
        // Rust runtime ignores), as asked. SIGKILL, SIGSTOP and the C library's reserved
        // signals fail with EINVAL.
        let mut dfl: libc::sigaction = std::mem::zeroed();
        dfl.sa_sigaction = libc::SIG_DFL;
        if args.reset_ignored_signals {
            for sig in 1..65 {
                libc::sigaction(sig, &dfl, std::ptr::null_mut());
            }
        } else {
            if !args.handlers_cleared {
                for sig in 1..65 {
                    let mut old: libc::sigaction = std::mem::zeroed();
                    if libc::sigaction(sig, std::ptr::null(), &mut old) == 0
                        && old.sa_sigaction != libc::SIG_DFL
                        && old.sa_sigaction != libc::SIG_IGN
                    {
                        libc::sigaction(sig, &dfl, std::ptr::null_mut());
                    }
                }
            }
            libc::sigaction(libc::SIGPIPE, &dfl, std::ptr::null_mut());
        }
        let mut none: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut none);
        libc::sigprocmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());

        let grouped = if args.session {
            libc::setsid()
        } else {
            libc::setpgid(0, 0)
        };
        if grouped == -1 {
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
                // The parent died before the prctl: nobody would ever reap us.
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
        if let Some(dir) = args.cwd
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
            libc::execve(path, args.argv.as_ptr(), args.envp);
            last = errno();
            match last {
                libc::ENOEXEC => {
                    args.sh_argv[1] = path;
                    libc::execve(args.sh_argv[0], args.sh_argv.as_ptr(), args.envp);
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
