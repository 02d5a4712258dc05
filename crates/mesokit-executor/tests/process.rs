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
    let mut child = process::spawn(&CommandSpec::shell("exec sleep 30")).unwrap();
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
    let mut child = process::spawn(&spec).unwrap();
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
    let mut child = process::spawn(&spec).unwrap();
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
    let mut child = process::spawn(&spec).unwrap();
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
async fn killing_a_reaped_process_only_waits() {
    let mut child = process::spawn(&CommandSpec::shell("exit 4")).unwrap();
    let status = child.wait().await.unwrap();
    assert_eq!(Termination::from(status), Termination::Exited(4));
    let again = process::kill_gracefully(&mut child, PATIENCE)
        .await
        .unwrap();
    assert_eq!(again, status);
}

#[tokio::test]
async fn spawn_errors_say_what_failed() {
    let mut spec = CommandSpec::shell("true");
    spec.program = "/nonexistent/program".into();
    let e = process::spawn(&spec).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::NotFound);

    let mut spec = CommandSpec::shell("true");
    spec.cwd = Some("/nonexistent/dir".into());
    assert!(process::spawn(&spec).is_err());

    let dir = scratch("mkdir");
    let mut spec = CommandSpec::shell("pwd > here");
    spec.cwd = Some(dir.join("a/b"));
    spec.create_cwd = true;
    let mut child = process::spawn(&spec).unwrap();
    assert!(child.wait().await.unwrap().success());
    assert!(dir.join("a/b/here").exists());
    let _ = std::fs::remove_dir_all(dir);
}
