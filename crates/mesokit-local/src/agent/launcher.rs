//! Starting executor processes as the Mesos agent does: the exact environment of §4.13 (nothing
//! inherited), output into the sandbox's `stdout`/`stderr`, the sandbox as working directory,
//! and a process group of their own so that the whole tree can be signalled.

use std::io;
use std::path::Path;
use std::process::Stdio;

use mesokit_proto::v1::{CommandInfo, environment};

/// The host default `PATH`, given when the environment has none (as Mesos does).
pub(crate) const HOST_DEFAULT_PATH: &str =
    "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Adds `CommandInfo.environment`'s VALUE variables to `env` (they win), then `PATH` if missing.
pub(crate) fn finish_env(env: &mut Vec<(String, String)>, command: &CommandInfo) {
    if let Some(e) = &command.environment {
        for v in &e.variables {
            let is_value = v
                .r#type
                .is_none_or(|t| t == environment::variable::Type::Value as i32);
            if !is_value {
                continue;
            }
            let value = v.value.clone().unwrap_or_default();
            set(env, &v.name, value);
        }
    }
    if !env.iter().any(|(k, _)| k == "PATH") {
        env.push(("PATH".into(), HOST_DEFAULT_PATH.into()));
    }
}

/// Sets `name` in `env`, replacing an earlier value.
pub(crate) fn set(env: &mut Vec<(String, String)>, name: &str, value: String) {
    match env.iter_mut().find(|(k, _)| k == name) {
        Some(slot) => slot.1 = value,
        None => env.push((name.to_owned(), value)),
    }
}

/// Starts `command` (shell: `/bin/sh -c value`; else `value` with `arguments` as the whole
/// argv) in `cwd` (the sandbox unless an isolator said otherwise) with exactly `env`, output
/// to `sandbox/stdout` and `sandbox/stderr`.
pub(crate) fn spawn(
    command: &CommandInfo,
    env: &[(String, String)],
    sandbox: &Path,
    cwd: &Path,
) -> io::Result<tokio::process::Child> {
    let value = command.value.clone().unwrap_or_default();
    let mut cmd = if command.shell.unwrap_or(true) {
        let mut c = tokio::process::Command::new("/bin/sh");
        c.arg("-c").arg(&value);
        c
    } else {
        if value.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "CommandInfo.value (the executable) is missing",
            ));
        }
        let mut c = tokio::process::Command::new(&value);
        if let Some((first, rest)) = command.arguments.split_first() {
            c.arg0(first);
            c.args(rest);
        }
        c
    };
    let stdout = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(sandbox.join("stdout"))?;
    let stderr = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(sandbox.join("stderr"))?;
    cmd.env_clear()
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::from(stdout))
        .stderr(Stdio::from(stderr))
        .process_group(0)
        .kill_on_drop(false);
    cmd.spawn()
}

/// Sends `signal` to the process group `pgid` (the executor's pid: it leads its own group).
/// Errors (e.g. the group is gone) are ignored.
#[allow(unsafe_code)]
pub(crate) fn kill_group(pgid: u32, signal: i32) -> bool {
    let Ok(pgid) = libc::pid_t::try_from(pgid) else {
        return false;
    };
    if pgid <= 1 {
        return false;
    }
    // SAFETY: killpg only sends a signal; it takes plain integers and touches no memory of ours.
    unsafe { libc::killpg(pgid, signal) == 0 }
}

pub(crate) use libc::SIGKILL;

/// Kills an executor's whole process tree, as Mesos's POSIX launcher does (`killtree` with
/// groups and sessions): the group is stopped so it cannot fork, then every member, every
/// descendant, and every group or session led by one of them gets SIGKILL. This also reaches
/// task processes that left the group with `setsid`.
pub(crate) fn kill_tree(pgid: u32) {
    // With no live member left in the group (the usual case once an executor has exited and
    // taken its task with it) skip reading all of /proc, which costs O(processes) on every
    // executor exit.
    if !kill_group(pgid, libc::SIGSTOP) {
        return;
    }
    for p in mesokit_hooks::proctree::tree(pgid) {
        kill_pid(p.pid, SIGKILL);
    }
    kill_group(pgid, SIGKILL);
}

/// Whether the process `pid` is running (a zombie is not): how an agent watches an executor
/// that is not its child (recovered after a restart), as Mesos's `process::reap` polls.
pub(crate) fn alive(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // After "pid (comm) " comes the state letter.
    let state = stat
        .rfind(')')
        .and_then(|i| stat.get(i + 2..))
        .and_then(|r| r.chars().next());
    !matches!(state, None | Some('Z') | Some('X'))
}

#[allow(unsafe_code)]
fn kill_pid(pid: u32, signal: i32) {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return;
    };
    if pid <= 1 {
        return;
    }
    // SAFETY: kill only sends a signal; plain integers, no memory of ours.
    unsafe {
        libc::kill(pid, signal);
    }
}
