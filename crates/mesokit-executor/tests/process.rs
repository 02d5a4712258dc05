//! The process helpers on real processes: a session of their own, a kill that reaches the
//! whole tree, escalation to SIGKILL, and no waiting once the process is gone.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use mesokit_executor::process::{self, CommandSpec, Signal, Termination};

/// Far longer than anything here should take; only hit when something is wrong.
const PATIENCE: Duration = Duration::from_secs(20);

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "mesokit-executor-process-{}-{name}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Reads the pid a script wrote to `file`, waiting for the script to get there.
async fn pid_in(file: &std::path::Path) -> i32 {
    let start = Instant::now();
    loop {
        if let Ok(s) = std::fs::read_to_string(file)
            && s.ends_with('\n')
        {
            return s.trim().parse().unwrap();
        }
        assert!(
            start.elapsed() < PATIENCE,
            "{} never written",
            file.display()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn exists(pid: i32) -> bool {
    // A zombie still has /proc/<pid>; only count processes that are not yet dead.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, rest)| !rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

/// Session id and process group of `pid`, from /proc.
fn session_and_group(pid: i32) -> (i32, i32) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let rest = stat.rsplit_once(')').unwrap().1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    (f[3].parse().unwrap(), f[2].parse().unwrap())
}

#[tokio::test]
async fn a_task_runs_in_a_session_and_group_of_its_own() {
    let mut child = process::spawn(&CommandSpec::shell("exec sleep 30"))
        .await
        .unwrap();
    let pid = child.id().unwrap() as i32;
    assert_eq!(session_and_group(pid), (pid, pid));
    let (my_sid, my_pgid) = session_and_group(std::process::id() as i32);
    assert_ne!(my_sid, pid);
    assert_ne!(my_pgid, pid);
    process::kill_gracefully(&mut child, PATIENCE)
        .await
        .unwrap();
}

#[tokio::test]
async fn sigterm_kills_the_whole_group() {
    let dir = scratch("group");
    // The shell waits for a background sleep: SIGTERM must reach both.
    let mut spec = CommandSpec::shell("sleep 30 & echo $! > bg; wait");
    spec.cwd = Some(dir.clone());
    let mut child = process::spawn(&spec).await.unwrap();
    let bg = pid_in(&dir.join("bg")).await;
    assert!(exists(bg));

    let started = Instant::now();
    let status = process::kill_gracefully(&mut child, PATIENCE)
        .await
        .unwrap();
    assert_eq!(
        Termination::from(status),
        Termination::Signaled(libc::SIGTERM)
    );
    assert!(
        started.elapsed() < PATIENCE,
        "returned when reaped, not after the grace"
    );
    // The background sleep got the SIGTERM too (it may linger a moment as a zombie of init).
    let start = Instant::now();
    while exists(bg) {
        assert!(
            start.elapsed() < PATIENCE,
            "background process {bg} survived"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn a_process_that_ignores_sigterm_gets_sigkill_after_the_grace() {
    let dir = scratch("stubborn");
    let mut spec = CommandSpec::shell("trap '' TERM; echo $$ > ready; sleep 30; true");
    spec.cwd = Some(dir.clone());
    let mut child = process::spawn(&spec).await.unwrap();
    pid_in(&dir.join("ready")).await; // the trap is set
    let grace = Duration::from_millis(200);

    let started = Instant::now();
    let status = process::kill_gracefully(&mut child, grace).await.unwrap();
    let took = started.elapsed();
    assert_eq!(
        Termination::from(status),
        Termination::Signaled(libc::SIGKILL)
    );
    assert!(
        took >= grace,
        "SIGKILL came before the grace ended: {took:?}"
    );
    assert!(took < PATIENCE, "not returned when reaped: {took:?}");
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn a_child_that_left_the_group_is_still_reached_through_the_session() {
    let dir = scratch("session");
    // `setsid`-less escape: a child that moves to a process group of its own.
    let mut spec = CommandSpec::shell(
        "perl -e 'setpgrp(0,0); open(F, \">escaped\"); print F \"$$\\n\"; close F; sleep 30' & wait",
    );
    if std::process::Command::new("perl")
        .arg("-v")
        .output()
        .is_err()
    {
        eprintln!("perl not available: skipped");
        return;
    }
    spec.cwd = Some(dir.clone());
    let mut child = process::spawn(&spec).await.unwrap();
    let escaped = pid_in(&dir.join("escaped")).await;
    let leader = child.id().unwrap() as i32;
    let (sid, pgid) = session_and_group(escaped);
    assert_eq!(sid, leader);
    assert_ne!(pgid, leader, "the child has a group of its own");

    let n = process::signal_tree(leader as u32, Signal::Kill).unwrap();
    assert!(n >= 2, "group and the escaped process: {n}");
    child.wait().await.unwrap();
    let start = Instant::now();
    while exists(escaped) {
        assert!(start.elapsed() < PATIENCE, "escaped process survived");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn a_child_in_a_session_of_its_own_is_reached_through_its_parent() {
    if std::process::Command::new("perl")
        .arg("-v")
        .output()
        .is_err()
    {
        eprintln!("perl not available: skipped");
        return;
    }
    let dir = scratch("setsid");
    // A child that starts its own session (as daemons do) and ignores SIGTERM; its parent,
    // the task's shell, waits for it.
    let mut spec = CommandSpec::shell(
        "perl -MPOSIX -e 'POSIX::setsid(); $SIG{TERM} = \"IGNORE\"; \
         open(F, \">daemon\"); print F \"$$\\n\"; close F; sleep 30' & wait",
    );
    spec.cwd = Some(dir.clone());
    let mut child = process::spawn(&spec).await.unwrap();
    let daemon = pid_in(&dir.join("daemon")).await;
    let leader = child.id().unwrap() as i32;
    assert_eq!(
        session_and_group(daemon),
        (daemon, daemon),
        "left the task's session"
    );

    let status = process::kill_gracefully(&mut child, Duration::from_millis(200))
        .await
        .unwrap();
    // The shell went on SIGTERM; the daemon, ignoring it, got the SIGKILL: it was found
    // through its parent while the group was stopped, and is gone with it.
    assert_eq!(
        Termination::from(status),
        Termination::Signaled(libc::SIGTERM)
    );
    let _ = leader;
    let start = Instant::now();
    while exists(daemon) {
        assert!(start.elapsed() < PATIENCE, "daemon {daemon} survived");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn killing_a_reaped_process_only_waits() {
    let mut child = process::spawn(&CommandSpec::shell("exit 4")).await.unwrap();
    let status = child.wait().await.unwrap();
    assert_eq!(Termination::from(status), Termination::Exited(4));
    let again = process::kill_gracefully(&mut child, PATIENCE)
        .await
        .unwrap();
    assert_eq!(again, status);
}

/// As a parent that ran under `nohup` and blocked a signal would.
#[allow(unsafe_code)]
fn ignore_sighup_and_block_sigusr2() {
    // SAFETY: signal(2) and pthread_sigmask(3) with valid arguments; SIGHUP and SIGUSR2 are
    // used by nothing else in this test binary. The mask is this (the runtime's) thread's,
    // which is the one that forks.
    unsafe {
        libc::signal(libc::SIGHUP, libc::SIG_IGN);
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGUSR2);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}

#[tokio::test]
async fn a_task_starts_with_default_signal_dispositions() {
    // The executor ignores SIGPIPE (Rust does) and handles SIGTERM/SIGINT (tokio); none of
    // that may leak into the task.
    let dir = scratch("signals");
    let mut spec = CommandSpec::shell("grep -E '^Sig(Ign|Blk)' /proc/self/status > sig");
    spec.cwd = Some(dir.clone());
    let _term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate());
    ignore_sighup_and_block_sigusr2();
    let mut child = process::spawn(&spec).await.unwrap();
    assert!(child.wait().await.unwrap().success());
    let sig = std::fs::read_to_string(dir.join("sig")).unwrap();
    let mask = |name: &str| {
        let line = sig.lines().find(|l| l.starts_with(name)).unwrap();
        u64::from_str_radix(line[name.len()..].trim(), 16).unwrap()
    };
    assert_eq!(mask("SigBlk:"), 0, "{sig}");
    // The standard signals only: glibc keeps its internal real-time ones (32, 33) to itself.
    assert_eq!(mask("SigIgn:") & 0x7fff_ffff, 0, "{sig}");
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn spawn_errors_say_what_failed() {
    let mut spec = CommandSpec::shell("true");
    spec.program = "/nonexistent/program".into();
    let e = process::spawn(&spec).await.unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::NotFound);
    assert!(
        e.to_string()
            .starts_with("cannot run /nonexistent/program: "),
        "{e}"
    );

    let mut spec = CommandSpec::shell("true");
    spec.cwd = Some("/nonexistent/dir".into());
    let e = process::spawn(&spec).await.unwrap_err();
    assert!(
        e.to_string()
            .starts_with("working directory /nonexistent/dir: "),
        "{e}"
    );

    let dir = scratch("mkdir");
    let mut spec = CommandSpec::shell("pwd > here");
    spec.cwd = Some(dir.join("a/b"));
    spec.create_cwd = true;
    let mut child = process::spawn(&spec).await.unwrap();
    assert!(child.wait().await.unwrap().success());
    assert!(dir.join("a/b/here").exists());
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn a_program_is_found_in_the_tasks_path_and_a_script_without_interpreter_runs_in_sh() {
    let dir = scratch("path");
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    // No `#!` line: exec fails with ENOEXEC and, as execvp does, /bin/sh runs it.
    let script = bin.join("hello-task");
    std::fs::write(&script, "echo \"from the script: $1\" > \"$2\"\n").unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let mut spec = CommandSpec::shell("unused");
    spec.program = "hello-task".into();
    spec.argv0 = None;
    spec.args = vec!["arg".into(), dir.join("out").display().to_string()];
    spec.env = vec![("PATH".into(), format!("/nonexistent:{}", bin.display()))];
    let mut child = process::spawn(&spec).await.unwrap();
    assert!(child.wait().await.unwrap().success());
    assert_eq!(
        std::fs::read_to_string(dir.join("out")).unwrap(),
        "from the script: arg\n"
    );

    // Not in the task's PATH (the executor's own PATH is not searched then).
    spec.env = vec![("PATH".into(), "/nonexistent".into())];
    let e = process::spawn(&spec).await.unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::NotFound, "{e}");
    assert!(e.to_string().starts_with("cannot run hello-task: "), "{e}");

    // Found but not executable: permission denied, not "not found".
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    spec.env = vec![("PATH".into(), bin.display().to_string())];
    let e = process::spawn(&spec).await.unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::PermissionDenied, "{e}");
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn piped_output_reaches_the_reader_and_the_status_is_kept() {
    use tokio::io::AsyncReadExt;
    let mut spec = CommandSpec::shell("echo out; echo err >&2; kill -USR1 $$");
    spec.stdout = process::Output::Pipe;
    spec.stderr = process::Output::Pipe;
    let mut child = process::spawn(&spec).await.unwrap();
    let pid = child.id().expect("running");
    let (mut out, mut err) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let (mut o, mut e) = (String::new(), String::new());
    out.read_to_string(&mut o).await.unwrap();
    err.read_to_string(&mut e).await.unwrap();
    assert_eq!((o.as_str(), e.as_str()), ("out\n", "err\n"));
    let status = child.wait().await.unwrap();
    assert_eq!(
        Termination::from(status),
        Termination::Signaled(libc::SIGUSR1)
    );
    assert_eq!(child.id(), None, "reaped");
    assert_eq!(child.wait().await.unwrap(), status);
    assert!(!exists(pid as i32));
}

#[cfg(target_os = "linux")]
#[test]
fn a_task_gets_huge_pages_back_and_the_executor_keeps_its_opt_out() {
    fn thp(status: &str) -> &str {
        status
            .lines()
            .find_map(|l| l.strip_prefix("THP_enabled:"))
            .expect("Linux >= 5.0 shows THP_enabled")
            .trim()
    }
    // In a process of its own: the opt-out is process-wide and must not reach other tests.
    if std::env::var_os("MESOKIT_TEST_THP_CHILD").is_none() {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "a_task_gets_huge_pages_back_and_the_executor_keeps_its_opt_out",
                "--nocapture",
            ])
            .env("MESOKIT_TEST_THP_CHILD", "1")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && text.contains("1 passed"),
            "{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        return;
    }
    let dir = scratch("thp");
    process::disable_huge_pages().unwrap();
    let own = || std::fs::read_to_string("/proc/self/status").unwrap();
    assert_eq!(thp(&own()), "0");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut spec = CommandSpec::shell("cat /proc/self/status > status");
        spec.cwd = Some(dir.clone());
        let mut child = process::spawn(&spec).await.unwrap();
        assert!(child.wait().await.unwrap().success());
    });
    assert_eq!(
        thp(&std::fs::read_to_string(dir.join("status")).unwrap()),
        "1"
    );
    assert_eq!(thp(&own()), "0", "the executor itself stays opted out");
    let _ = std::fs::remove_dir_all(dir);
}

#[cfg(target_os = "linux")]
#[test]
#[allow(unsafe_code)]
fn a_task_dies_with_the_executor() {
    // A test process of its own stands in for the executor: it starts a task, prints its
    // pid and is SIGKILLed.
    if std::env::var_os("MESOKIT_TEST_PDEATHSIG_CHILD").is_some() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            // Not on this process's stdout: the test reads it to its end.
            let task = CommandSpec::shell("exec sleep 30 >/dev/null 2>&1");
            let child = process::spawn(&task).await.unwrap();
            println!("task pid {}", child.id().unwrap());
            use std::io::Write;
            std::io::stdout().flush().unwrap();
            // SAFETY: kill(2) on this very process.
            unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
        });
        unreachable!("killed");
    }
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "a_task_dies_with_the_executor", "--nocapture"])
        .env("MESOKIT_TEST_PDEATHSIG_CHILD", "1")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let pid: i32 = text
        .lines()
        .find_map(|l| l.strip_prefix("task pid "))
        .unwrap_or_else(|| {
            panic!(
                "no task pid in {text}{}",
                String::from_utf8_lossy(&out.stderr)
            )
        })
        .trim()
        .parse()
        .unwrap();
    let start = Instant::now();
    while exists(pid) {
        assert!(start.elapsed() < PATIENCE, "{pid} outlived its executor");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[cfg(target_os = "linux")]
#[test]
fn a_task_dies_with_the_thread_that_started_it() {
    // PR_SET_PDEATHSIG fires when the thread that made the child ends: here a thread with a
    // runtime of its own, standing in for a killed executor.
    let (mut child, pid) = std::thread::spawn(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let child = rt
            .block_on(process::spawn(&CommandSpec::shell("sleep 30")))
            .unwrap();
        let pid = child.id().unwrap();
        (child, pid)
    })
    .join()
    .unwrap();
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(start.elapsed() < PATIENCE, "{pid} still running");
        std::thread::sleep(Duration::from_millis(5));
    };
    assert_eq!(
        Termination::from(status),
        Termination::Signaled(libc::SIGKILL)
    );
}

#[tokio::test]
async fn a_task_directory_made_ahead_is_taken_by_the_next_task() {
    let dir = scratch("spare");
    let tasks = dir.join("tasks");
    process::prepare_task_dir(&tasks).unwrap();
    let spare = tasks.join(".mesokit-next-task");
    assert!(spare.join("stdout").is_file() && spare.join("stderr").is_file());
    // Ready already: nothing more is made.
    process::prepare_task_dir(&tasks).unwrap();

    let task = tasks.join("t1");
    let mut spec = CommandSpec::shell("pwd; echo oops >&2");
    spec.cwd = Some(task.clone());
    spec.create_cwd = true;
    spec.stdout = process::Output::File(task.join("stdout"));
    spec.stderr = process::Output::File(task.join("stderr"));
    let mut child = process::spawn(&spec).await.unwrap();
    assert!(child.wait().await.unwrap().success());
    assert!(!spare.exists(), "renamed to the task's directory");
    assert_eq!(
        std::fs::read_to_string(task.join("stdout"))
            .unwrap()
            .trim_end(),
        task.display().to_string()
    );
    assert_eq!(
        std::fs::read_to_string(task.join("stderr")).unwrap(),
        "oops\n"
    );

    // The next one is made anew; a task whose directory exists and is not empty keeps it,
    // and the spare stays for the next.
    process::prepare_task_dir(&tasks).unwrap();
    let mut again = CommandSpec::shell("echo again");
    again.cwd = Some(task.clone());
    again.create_cwd = true;
    again.stdout = process::Output::File(task.join("stdout"));
    let mut child = process::spawn(&again).await.unwrap();
    assert!(child.wait().await.unwrap().success());
    assert!(spare.join("stdout").is_file(), "still ready");
    assert_eq!(
        std::fs::read_to_string(task.join("stdout"))
            .unwrap()
            .lines()
            .count(),
        2,
        "appended to the task's own file"
    );
    process::remove_spare_task_dir();
    assert!(!spare.exists());
    let _ = std::fs::remove_dir_all(dir);
}
