//! Task processes: each starts in a session (and so a process group) of its own, so that a
//! kill reaches everything it started; a graceful kill is SIGTERM to the whole tree, SIGKILL
//! after a grace period, and is over as soon as the process is reaped.
//!
//! The only `unsafe` of the crate lives here: starting a process ([`spawn`](self::spawn), the
//! module: the child's set-up between `clone` and `exec`) and the `kill(2)`, `waitpid(2)`,
//! `madvise(2)` and `prctl(2)` calls, each a plain syscall.

#![allow(unsafe_code)]

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

mod spawn;

pub use mesokit_hooks::spawn::Child;

/// The two signals of a kill.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Signal {
    /// SIGTERM: please stop.
    Term,
    /// SIGKILL: stop now.
    Kill,
}

impl Signal {
    fn raw(self) -> libc::c_int {
        match self {
            Signal::Term => libc::SIGTERM,
            Signal::Kill => libc::SIGKILL,
        }
    }
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Signal::Term => "SIGTERM",
            Signal::Kill => "SIGKILL",
        })
    }
}

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Termination {
    /// It exited with this status.
    Exited(i32),
    /// A signal (this number) ended it.
    Signaled(i32),
}

impl Termination {
    /// Whether it exited with status 0.
    pub fn success(self) -> bool {
        self == Termination::Exited(0)
    }
}

impl From<ExitStatus> for Termination {
    fn from(status: ExitStatus) -> Self {
        use std::os::unix::process::ExitStatusExt;
        match (status.code(), status.signal()) {
            (Some(code), _) => Termination::Exited(code),
            (None, Some(sig)) => Termination::Signaled(sig),
            // Stopped/continued statuses are never returned by wait() without WUNTRACED.
            (None, None) => Termination::Exited(status.into_raw()),
        }
    }
}

/// Says what ended a process the way Mesos's `WSTRINGIFY` does, so that status messages read
/// the same as the Mesos command executor's: `exited with status 3`,
/// `terminated with signal Killed`.
impl fmt::Display for Termination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Termination::Exited(code) => write!(f, "exited with status {code}"),
            Termination::Signaled(sig) => write!(f, "terminated with signal {}", signal_text(sig)),
        }
    }
}

/// glibc's `strsignal(3)` text (what Mesos prints), without calling the non-reentrant C
/// function.
pub fn signal_text(sig: i32) -> String {
    let text = match sig {
        libc::SIGHUP => "Hangup",
        libc::SIGINT => "Interrupt",
        libc::SIGQUIT => "Quit",
        libc::SIGILL => "Illegal instruction",
        libc::SIGTRAP => "Trace/breakpoint trap",
        libc::SIGABRT => "Aborted",
        libc::SIGBUS => "Bus error",
        libc::SIGFPE => "Floating point exception",
        libc::SIGKILL => "Killed",
        libc::SIGUSR1 => "User defined signal 1",
        libc::SIGSEGV => "Segmentation fault",
        libc::SIGUSR2 => "User defined signal 2",
        libc::SIGPIPE => "Broken pipe",
        libc::SIGALRM => "Alarm clock",
        libc::SIGTERM => "Terminated",
        libc::SIGCHLD => "Child exited",
        libc::SIGCONT => "Continued",
        libc::SIGSTOP => "Stopped (signal)",
        libc::SIGTSTP => "Stopped",
        libc::SIGTTIN => "Stopped (tty input)",
        libc::SIGTTOU => "Stopped (tty output)",
        libc::SIGURG => "Urgent I/O condition",
        libc::SIGXCPU => "CPU time limit exceeded",
        libc::SIGXFSZ => "File size limit exceeded",
        libc::SIGVTALRM => "Virtual timer expired",
        libc::SIGPROF => "Profiling timer expired",
        libc::SIGWINCH => "Window changed",
        libc::SIGIO => "I/O possible",
        libc::SIGSYS => "Bad system call",
        _ => return format!("Unknown signal {sig}"),
    };
    text.to_owned()
}

/// Where a standard stream of the process goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// The executor's own stream (the agent points it at the sandbox's `stdout`/`stderr`).
    Inherit,
    /// This file, created if missing and appended to.
    File(PathBuf),
    /// A pipe to the executor, which copies it on (see [`crate::rotate`]).
    Pipe,
}

/// Everything needed to start a task's process. Plain data: the supervisor builds it, the
/// runtime starts it.
#[derive(Clone, PartialEq, Eq)]
pub struct CommandSpec {
    /// The program: a path, or a name looked up in the `PATH` of [`CommandSpec::env`].
    pub program: String,
    /// `argv[0]`, if not the program itself.
    pub argv0: Option<String>,
    /// `argv[1..]`.
    pub args: Vec<String>,
    /// The complete environment (nothing is inherited).
    pub env: Vec<(String, String)>,
    /// The working directory.
    pub cwd: Option<PathBuf>,
    /// Create [`CommandSpec::cwd`] (and parents) if missing.
    pub create_cwd: bool,
    /// Standard output.
    pub stdout: Output,
    /// Standard error.
    pub stderr: Output,
    /// Linux: SIGKILL the process if the executor dies first (`PR_SET_PDEATHSIG`), so that a
    /// killed executor does not leave its task behind. The kernel sends it when the *thread*
    /// that called [`spawn`] ends, so spawn from a thread that lives as long as the executor
    /// (a runtime's main or worker thread), never from `spawn_blocking`.
    pub die_with_parent: bool,
}

impl fmt::Debug for CommandSpec {
    // The environment may hold credentials the task needs; keep it out of logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CommandSpec")
            .field("program", &self.program)
            .field("argv0", &self.argv0)
            .field("args", &self.args)
            .field("env", &format_args!("<{} variables>", self.env.len()))
            .field("cwd", &self.cwd)
            .field("create_cwd", &self.create_cwd)
            .field("stdout", &self.stdout)
            .field("stderr", &self.stderr)
            .field("die_with_parent", &self.die_with_parent)
            .finish()
    }
}

impl CommandSpec {
    /// `/bin/sh -c <script>` with `argv[0] = "sh"`, as Mesos runs a shell command, with the
    /// executor's environment, in the current directory, output inherited.
    pub fn shell(script: impl Into<String>) -> Self {
        CommandSpec {
            program: "/bin/sh".into(),
            argv0: Some("sh".into()),
            args: vec!["-c".into(), script.into()],
            env: crate::launch::process_env(),
            cwd: None,
            create_cwd: false,
            stdout: Output::Inherit,
            stderr: Output::Inherit,
            die_with_parent: true,
        }
    }
}

/// Linux: makes this process the "child subreaper" of everything it starts
/// (`PR_SET_CHILD_SUBREAPER`): a task's process whose parent exits is re-parented to the
/// executor instead of init, so it stays findable. A daemon that double-forks out of its
/// task's session would otherwise escape every kill; [`kill_orphans`] ends such processes.
/// Elsewhere a no-op.
pub fn become_subreaper() -> io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: prctl with integer arguments only.
        if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } == -1 {
            return Err(io::Error::last_os_error());
        }
        SUBREAPER.store(true, Ordering::Relaxed);
    }
    Ok(())
}

/// Set once [`become_subreaper`] succeeded.
static SUBREAPER: AtomicBool = AtomicBool::new(false);

/// Whether anything of a finished task's tree can still be alive, without reading `/proc`.
///
/// Once this process is the subreaper of its tasks, a leftover is either still in the task's
/// process group or, if its ancestors in the group have all died, re-parented to this process:
/// with the group empty and no child left, nothing remains. Walking `/proc` costs O(all
/// processes) per task, which dominated a busy agent running hundreds of short tasks. Without
/// the subreaper role (executors run in-process by tests) the answer is always "maybe".
pub fn maybe_leftovers(leader: u32) -> bool {
    #[cfg(target_os = "linux")]
    {
        if SUBREAPER.load(Ordering::Relaxed) {
            let Ok(pgid) = libc::pid_t::try_from(leader) else {
                return true;
            };
            return pgid > 1 && (kill(-pgid, 0).is_ok() || has_children());
        }
    }
    let _ = leader;
    true
}

/// Whether this process has any child left (running or not yet reaped), without reaping it.
#[cfg(target_os = "linux")]
fn has_children() -> bool {
    // SAFETY: waitid fills a zeroed siginfo_t on our stack; WNOWAIT leaves any status in place
    // for its owner to reap, WNOHANG never blocks.
    unsafe {
        let mut info: libc::siginfo_t = std::mem::zeroed();
        let r = libc::waitid(
            libc::P_ALL,
            0,
            &mut info,
            libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
        );
        !(r == -1 && io::Error::last_os_error().raw_os_error() == Some(libc::ECHILD))
    }
}

/// SIGKILLs the processes that were re-parented to this process (see [`become_subreaper`]),
/// with their trees, except the children in `keep` (the pids of processes it started and
/// still waits for), and reaps them (waiting at most 200 ms: SIGKILL is quick, but not
/// instant). Returns how many were signalled. Linux only; elsewhere 0.
///
/// Blocks the calling thread while reaping: meant for the executor's way out.
pub fn kill_orphans(keep: &[u32]) -> usize {
    #[cfg(target_os = "linux")]
    {
        if keep.is_empty() && SUBREAPER.load(Ordering::Relaxed) && !has_children() {
            return 0; // nothing was re-parented to us: no need to read /proc
        }
        let me = std::process::id() as libc::pid_t;
        let keep: Vec<libc::pid_t> = keep.iter().filter_map(|p| (*p).try_into().ok()).collect();
        let victims = linux::orphans(me, &keep);
        for &(pid, _) in &victims {
            let _ = kill(pid, libc::SIGSTOP);
        }
        let killed = victims
            .iter()
            .filter(|(pid, _)| kill(*pid, libc::SIGKILL).is_ok())
            .count();
        // Reap them, or they stay zombies of whatever init inherits them. A killed process's
        // own children become ours only once it is gone, hence the retries.
        let mut left: Vec<libc::pid_t> = victims.iter().map(|(pid, _)| *pid).collect();
        let deadline = std::time::Instant::now() + Duration::from_millis(200);
        while !left.is_empty() && std::time::Instant::now() < deadline {
            left.retain(|&pid| {
                // SAFETY: waitpid on one pid, WNOHANG, status not wanted (null).
                let r = unsafe { libc::waitpid(pid, std::ptr::null_mut(), libc::WNOHANG) };
                r == 0 || (r == -1 && std::path::Path::new(&format!("/proc/{pid}")).exists())
            });
            if !left.is_empty() {
                std::thread::sleep(Duration::from_millis(2));
            }
        }
        killed
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = keep;
        0
    }
}

/// Set when [`disable_huge_pages`] changed this process's setting, so that [`spawn`] gives
/// tasks the setting the executor itself was started with.
static THP_DISABLED_HERE: AtomicBool = AtomicBool::new(false);

/// Linux: opts this process out of transparent huge pages (`PR_SET_THP_DISABLE`); elsewhere a
/// no-op. An executor's heap is a few hundred KiB, but an allocator that asks for huge pages
/// (mimalloc does for its arenas) turns each touched region into 2 MiB of RSS, which every
/// task pays for. Tasks started by [`spawn`] afterwards get huge pages back.
pub fn disable_huge_pages() -> io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: prctl with integer arguments only; PR_SET_THP_DISABLE reads no memory.
        if unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) } == -1 {
            return Err(io::Error::last_os_error());
        }
        THP_DISABLED_HERE.store(true, Ordering::Relaxed);
    }
    Ok(())
}

/// Linux: keeps resident only the code and read-only data this process really uses (the
/// read-only file mappings of its binary and shared libraries: code, constants, relocation
/// and unwind tables). The kernel maps file pages around each page fault in batches
/// ("fault-around"), so pages touched once at start-up, and their neighbours, stay in the
/// RSS. `MADV_RANDOM` asks for no read-ahead on these mappings and `MADV_DONTNEED` drops what
/// is mapped now; pages come back from the page cache when used (a minor fault each).
///
/// Only private file mappings that are read-only (`r-xp`, `r--p`) and hold no private copy
/// of a page (`Anonymous: 0 kB` in `/proc/self/smaps`) are touched: their pages all equal the
/// file, so nothing is lost. A read-only mapping that was written before it was protected
/// (a library's relocated `RELRO` data) has private copies and is left alone, since dropping
/// them would bring back the unrelocated file contents. Returns the bytes of mappings
/// advised; elsewhere 0.
///
/// Measured on Linux 6.18 (docs/benchmarks.md, executor footprint): libc's part of the
/// executor's RSS went from 1.2 MiB to 0.7 MiB with code alone.
///
/// Call it at start and whenever the process is about to sit idle, so that code run only
/// now and then (start-up, a launch) does not stay counted.
pub fn trim_code_pages() -> usize {
    #[cfg(target_os = "linux")]
    {
        let Ok(smaps) = std::fs::read_to_string("/proc/self/smaps") else {
            return 0;
        };
        // (start, end) of the current mapping while its fields are read, if it qualifies.
        let mut candidate: Option<(usize, usize)> = None;
        let mut advised = 0;
        for line in smaps.lines() {
            if let Some(kb) = line.strip_prefix("Anonymous:") {
                let clean = kb.trim().strip_suffix("kB").map(str::trim) == Some("0");
                if let (Some((start, end)), true) = (candidate.take(), clean) {
                    advised += drop_pages(start, end);
                }
                continue;
            }
            // A mapping's first line: `start-end perms offset dev inode path`; field lines
            // start with a name and a colon.
            let mut fields = line.split_whitespace();
            let (Some(range), Some(perms)) = (fields.next(), fields.next()) else {
                continue;
            };
            if range.ends_with(':') {
                continue;
            }
            candidate = None;
            let path = fields.nth(3).unwrap_or("");
            if !matches!(perms, "r-xp" | "r--p") || !path.starts_with('/') {
                continue;
            }
            if let Some((start, end)) = range.split_once('-')
                && let (Ok(start), Ok(end)) = (
                    usize::from_str_radix(start, 16),
                    usize::from_str_radix(end, 16),
                )
            {
                candidate = Some((start, end));
            }
        }
        advised
    }
    #[cfg(not(target_os = "linux"))]
    0
}

/// `MADV_RANDOM` then `MADV_DONTNEED` on `[start, end)`; the bytes advised.
#[cfg(target_os = "linux")]
fn drop_pages(start: usize, end: usize) -> usize {
    let len = end.saturating_sub(start);
    // SAFETY: madvise on a mapping the kernel just listed as ours, private, read-only and
    // with no private page: MADV_RANDOM only changes read-ahead, and MADV_DONTNEED on such a
    // mapping only unmaps pages that fault back in unchanged from the file. No memory is read
    // or written through these calls.
    unsafe {
        let addr = start as *mut libc::c_void;
        if libc::madvise(addr, len, libc::MADV_RANDOM) == 0
            && libc::madvise(addr, len, libc::MADV_DONTNEED) == 0
        {
            return len;
        }
    }
    0
}

/// What an idle executor can give back without losing anything: the code pages it ran
/// ([`trim_code_pages`]) and, with glibc, the free pages of its heap (`malloc_trim(3)`).
/// Call it when the process is about to sit idle: the pages fault back in when needed.
pub fn trim_memory() {
    trim_code_pages();
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only hands free heap memory back to the kernel; it takes the
    // allocator's own locks like any malloc call.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Makes a task directory ahead in `tasks` (a sandbox's `tasks` directory), with empty
/// `stdout` and `stderr`, unless one is ready: the next [`spawn`] whose [`CommandSpec::cwd`]
/// is to be created there renames it instead of making a directory and two files on the way
/// to TASK_RUNNING. Named `.mesokit-next-task`; [`remove_spare_task_dir`] removes it.
pub fn prepare_task_dir(tasks: &Path) -> io::Result<()> {
    spawn::prepare_task_dir(tasks)
}

/// Removes the directory [`prepare_task_dir`] made, if it is still there.
pub fn remove_spare_task_dir() {
    spawn::remove_spare_task_dir();
}

/// Starts the process in a new session (`setsid`), so that it leads a process group and a
/// session of its own, with every signal at its default action and none blocked; stdin is
/// `/dev/null`. Must be called within a Tokio runtime. See [`spawn`](self::spawn) (the module)
/// for how: as fast as `posix_spawn`, with the set-up `posix_spawn` cannot do; the calling
/// thread is held from the clone until the exec.
///
/// Errors name what failed: the working directory, an output file, or the `exec` itself (for
/// example `No such file or directory` for an unknown program).
pub async fn spawn(spec: &CommandSpec) -> io::Result<Child> {
    let restore_huge_pages = THP_DISABLED_HERE.load(Ordering::Relaxed);
    spawn::spawn(spec, restore_huge_pages).await
}

/// Sends `signal` to the process tree of a task started by [`spawn`]; see [`Tree::signal`].
/// A [`Tree`] kept across calls also reaches processes that lost their link to the task.
pub fn signal_tree(leader: u32, signal: Signal) -> io::Result<usize> {
    Tree::new(leader).signal(signal)
}

/// The process tree of a task started by [`spawn`], for signalling. It remembers the
/// processes it found outside the task's group, so that a later signal (the SIGKILL after the
/// grace period, the clean-up once the task's process is gone) still reaches them after their
/// parent has exited and they have been re-parented away from the task.
#[derive(Debug, Clone)]
pub struct Tree {
    leader: libc::pid_t,
    /// Found outside the group: pid and start time (to tell a reused pid apart).
    seen: Vec<(libc::pid_t, u64)>,
}

impl Tree {
    /// The tree of the process `leader` (its pid, which is also its group and session id).
    pub fn new(leader: u32) -> Tree {
        Tree {
            leader: libc::pid_t::try_from(leader).unwrap_or(0),
            seen: Vec::new(),
        }
    }

    /// Sends `signal` to the tree as Mesos's `os::killtree(pid, signal, groups=true,
    /// sessions=true)` does: the task's process group, and on Linux also, from `/proc`, every
    /// process of its session, every descendant of any of those, every group or session such a
    /// process leads, and whatever this `Tree` saw before and still exists. So a child that
    /// moved to a group of its own, or that started a session of its own with `setsid`, is
    /// reached. The group is stopped (SIGSTOP) while the tree is listed, so that nothing forks
    /// or exits meanwhile, and continued (SIGCONT) after a SIGTERM so it can be handled.
    ///
    /// Returns how many processes or groups were signalled; `ESRCH` if none was left.
    ///
    /// The leader must not have been reaped, or its group may still hold processes: while any
    /// process uses the number as its group or session id, the kernel does not hand it out
    /// again, so the signal cannot hit a stranger.
    pub fn signal(&mut self, signal: Signal) -> io::Result<usize> {
        let pgid = self.leader;
        // 0 and 1 would mean "my own group" and "every process": never.
        if pgid <= 1 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("refusing to signal process group {pgid}"),
            ));
        }
        #[cfg(target_os = "linux")]
        let others = {
            let _ = kill(-pgid, libc::SIGSTOP);
            let found = linux::tree(pgid, &self.seen);
            for &(pid, _) in &found {
                let _ = kill(pid, libc::SIGSTOP);
            }
            for entry in &found {
                if !self.seen.contains(entry) {
                    self.seen.push(*entry);
                }
            }
            found
        };
        #[cfg(not(target_os = "linux"))]
        let others: Vec<(libc::pid_t, u64)> = Vec::new();

        let mut hit = 0;
        let group = kill(-pgid, signal.raw());
        if group.is_ok() {
            hit += 1;
        }
        for &(pid, _) in &others {
            if kill(pid, signal.raw()).is_ok() {
                hit += 1;
            }
        }
        if signal != Signal::Kill {
            let _ = kill(-pgid, libc::SIGCONT);
            for &(pid, _) in &others {
                let _ = kill(pid, libc::SIGCONT);
            }
        }
        match group {
            Err(e) if hit == 0 => Err(e),
            _ => Ok(hit),
        }
    }
}

fn kill(pid: libc::pid_t, signal: libc::c_int) -> io::Result<()> {
    // SAFETY: kill(2) takes two integers and touches no memory. Callers never pass 0, -1 or
    // 1 (checked in Tree::signal; /proc listings leave out pid 1 and this process).
    if unsafe { libc::kill(pid, signal) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The process listings of [`Tree::signal`] and [`kill_orphans`], on
/// [`mesokit_hooks::proctree`], with this module's pid type.
#[cfg(target_os = "linux")]
mod linux {
    use std::collections::BTreeSet;

    use mesokit_hooks::proctree::{self, Proc};

    fn pid(p: &Proc) -> (libc::pid_t, u64) {
        (libc::pid_t::try_from(p.pid).unwrap_or(0), p.start)
    }

    /// The processes tied to group `id` (or to a process in `seen` that still exists) that
    /// are not in the group, with their start times: see `Tree::signal`.
    pub(super) fn tree(id: libc::pid_t, seen: &[(libc::pid_t, u64)]) -> Vec<(libc::pid_t, u64)> {
        let Ok(group) = u32::try_from(id) else {
            return Vec::new();
        };
        let procs = proctree::processes();
        let members = procs
            .iter()
            .filter(|p| seen.contains(&pid(p)))
            .map(|p| p.pid)
            .collect();
        proctree::closure(&procs, BTreeSet::from([group]), members)
            .iter()
            .filter(|p| p.pgrp != group)
            .map(pid)
            .collect()
    }

    /// The children of `me` other than `keep`, with their trees.
    pub(super) fn orphans(me: libc::pid_t, keep: &[libc::pid_t]) -> Vec<(libc::pid_t, u64)> {
        let me = u32::try_from(me).unwrap_or(0);
        let procs = proctree::processes();
        let members = procs
            .iter()
            .filter(|p| p.ppid == me && !keep.contains(&pid(p).0))
            .map(|p| p.pid)
            .collect();
        proctree::closure(&procs, BTreeSet::new(), members)
            .iter()
            .map(pid)
            .collect()
    }
}

/// Kills a process started by [`spawn`] gracefully: SIGTERM to its tree, and SIGKILL to the
/// tree if the process is still there after `grace`. Returns as soon as the process is reaped,
/// after a SIGKILL to whatever is left of its tree (as the destruction of a container would).
pub async fn kill_gracefully(child: &mut Child, grace: Duration) -> io::Result<ExitStatus> {
    // No id: already reaped, and its number may belong to someone else by now.
    let Some(pid) = child.id() else {
        return child.wait().await;
    };
    let mut tree = Tree::new(pid);
    if let Err(e) = tree.signal(Signal::Term) {
        tracing::debug!(pid, error = %e, "SIGTERM not delivered");
    }
    let status = match tokio::time::timeout(grace, child.wait()).await {
        Ok(status) => status,
        Err(_) => {
            tracing::debug!(pid, ?grace, "still running after the grace period: SIGKILL");
            if let Err(e) = tree.signal(Signal::Kill) {
                tracing::debug!(pid, error = %e, "SIGKILL not delivered");
            }
            child.wait().await
        }
    };
    let _ = tree.signal(Signal::Kill);
    status
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_os = "linux")]
    #[test]
    fn trimmed_pages_come_back_unchanged() {
        let texts = || {
            // Code, constants, and vtables reached through pointers that the loader relocated
            // (read-only data with private pages, which must not be dropped).
            let shown: [&dyn fmt::Display; 3] = [
                &Signal::Term,
                &Termination::Exited(3),
                &Termination::Signaled(libc::SIGKILL),
            ];
            std::hint::black_box(shown)
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
        };
        let before = texts();
        assert!(
            trim_code_pages() > 0,
            "this binary's code is a read-only file mapping"
        );
        trim_memory();
        assert_eq!(texts(), before);
        assert_eq!(before[0], "SIGTERM");
    }

    #[test]
    fn termination_reads_like_mesos() {
        assert_eq!(Termination::Exited(3).to_string(), "exited with status 3");
        assert_eq!(
            Termination::Signaled(libc::SIGKILL).to_string(),
            "terminated with signal Killed"
        );
        assert_eq!(
            Termination::Signaled(libc::SIGTERM).to_string(),
            "terminated with signal Terminated"
        );
        assert_eq!(signal_text(77), "Unknown signal 77");
        assert!(Termination::Exited(0).success());
        assert!(!Termination::Signaled(9).success());
    }

    #[test]
    fn refuses_to_signal_everyone() {
        for pid in [0, 1, u32::MAX] {
            let e = signal_tree(pid, Signal::Term).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        }
    }
}
