//! `mesokit_hooks::spawn` on real processes: what a started command inherits (group,
//! environment, signals), with `clone3` and with the `clone` fallback, and its errors.

use std::ffi::OsStr;
use std::path::PathBuf;
use std::time::Duration;

use mesokit_hooks::spawn::{Child, NO_CLONE3_VAR, Spawn};

fn scratch(name: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("mesokit-hooks-spawn-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Field `n` (0 = state) after the command name of /proc/<pid>/stat.
fn stat_field(pid: i32, n: usize) -> i32 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let rest = stat.rsplit_once(')').unwrap().1;
    rest.split_whitespace().nth(n).unwrap().parse().unwrap()
}

/// A hex mask line of /proc/<pid>/status text.
fn mask(status: &str, name: &str) -> u64 {
    let line = status.lines().find(|l| l.starts_with(name)).unwrap();
    u64::from_str_radix(line[name.len()..].trim(), 16).unwrap()
}

#[tokio::test]
async fn a_command_leads_a_group_in_our_session_with_our_environment() {
    let dir = scratch("group");
    let out = dir.join("path");
    let script = format!("echo \"$PATH\" > {}; exec sleep 30", out.display());
    let args = [OsStr::new("-c"), OsStr::new(&script)];
    let pid = Spawn::new("sh", &args).start().unwrap();
    let mut child = Child::adopt(pid, None, None);
    let start = std::time::Instant::now();
    while !std::fs::read_to_string(&out).is_ok_and(|s| s.ends_with('\n')) {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "never wrote {}",
            out.display()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(stat_field(pid, 2), pid, "its own process group");
    assert_eq!(
        stat_field(pid, 3),
        stat_field(std::process::id() as i32, 3),
        "our session"
    );
    assert_eq!(
        std::fs::read_to_string(&out).unwrap().trim_end(),
        std::env::var("PATH").unwrap()
    );
    child.start_kill().unwrap();
    assert!(child.wait().await.unwrap().code().is_none(), "killed");
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn exec_errors_keep_their_os_code() {
    let e = Spawn::new("/nonexistent/command", &[]).start().unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::ENOENT), "{e}");
    let e = Spawn::new("no-such-command-anywhere", &[])
        .start()
        .unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::ENOENT), "{e}");
    let dir = scratch("eacces");
    let file = dir.join("not-executable");
    std::fs::write(&file, "#!/bin/sh\n").unwrap();
    let e = Spawn::new(file.to_str().unwrap(), &[]).start().unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EACCES), "{e}");
    let _ = std::fs::remove_dir_all(dir);
}

extern "C" fn on_usr1(_: libc::c_int) {}

/// In a test process of its own (dispositions are process-wide): SIGHUP ignored, SIGPIPE
/// ignored (as in every Rust program), a handler on SIGUSR1 and SIGUSR2 blocked; a command
/// started in the given mode writes its /proc status.
fn signals_in_child(no_clone3: bool) -> String {
    let test = if no_clone3 {
        "signals_as_std_leaves_them_with_the_clone_fallback"
    } else {
        "signals_as_std_leaves_them"
    };
    if std::env::var_os("MESOKIT_TEST_SPAWN_CHILD").is_none() {
        let mut command = std::process::Command::new(std::env::current_exe().unwrap());
        command
            .args(["--exact", test, "--nocapture"])
            .env("MESOKIT_TEST_SPAWN_CHILD", "1");
        if no_clone3 {
            command.env(NO_CLONE3_VAR, "1");
        }
        let out = command.output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success() && text.contains("1 passed"),
            "{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        return String::new();
    }
    let dir = scratch(test);
    let out = dir.join("status");
    #[allow(unsafe_code)]
    // SAFETY: signal(2) and pthread_sigmask(3) with valid arguments, in a process that runs
    // only this test; the handler does nothing.
    unsafe {
        libc::signal(libc::SIGHUP, libc::SIG_IGN);
        libc::signal(
            libc::SIGUSR1,
            on_usr1 as extern "C" fn(libc::c_int) as libc::sighandler_t,
        );
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGUSR2);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
    let script = format!("exec cat /proc/self/status > {}", out.display());
    let args = [OsStr::new("-c"), OsStr::new(&script)];
    let pid = Spawn::new("/bin/sh", &args).start().unwrap();
    let mut raw = 0;
    #[allow(unsafe_code)]
    // SAFETY: reaping our own child into a local.
    unsafe {
        libc::waitpid(pid, &mut raw, 0)
    };
    let status = std::fs::read_to_string(&out).unwrap();
    let _ = std::fs::remove_dir_all(dir);
    status
}

fn check_signals(status: &str) {
    if status.is_empty() {
        return; // the parent side: the child test process checked
    }
    let bit = |sig: i32| 1u64 << (sig - 1);
    let ignored = mask(status, "SigIgn:");
    assert_ne!(ignored & bit(libc::SIGHUP), 0, "SIGHUP stays ignored");
    assert_eq!(
        ignored & bit(libc::SIGPIPE),
        0,
        "SIGPIPE back to the default"
    );
    assert_eq!(mask(status, "SigBlk:"), 0, "nothing blocked");
    assert_eq!(mask(status, "SigCgt:"), 0, "no handler");
}

#[test]
fn signals_as_std_leaves_them() {
    check_signals(&signals_in_child(false));
}

#[test]
fn signals_as_std_leaves_them_with_the_clone_fallback() {
    check_signals(&signals_in_child(true));
}
