//! The external-command runner against real shell scripts, written to a fresh directory
//! per test. Every test also checks that no temp file is left in the runner's temp directory
//! afterwards.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use mesokit_hooks::{ExitKind, Invocation, RunError, Runner};

/// A scratch directory with a `tmp/` for the runner and room for scripts; removed on drop.
struct Scratch {
    root: PathBuf,
    runner: Runner,
}

impl Scratch {
    fn new(name: &str) -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
            "hooks-runner-{name}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("tmp")).unwrap();
        let runner = Runner::new(root.join("tmp")).debug(true);
        Self { root, runner }
    }

    /// Writes an executable `/bin/sh` script and returns its path.
    fn script(&self, name: &str, body: &str) -> String {
        let path = self.root.join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path.to_str().unwrap().to_owned()
    }

    fn path(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    fn assert_no_temp_files(&self) {
        let left = files_under(self.runner.dir());
        assert!(left.is_empty(), "temp files left behind: {left:?}");
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// Every file under `dir`, at any depth (the runner's private directory may remain while
/// the runner lives, empty).
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_dir() {
            files.extend(files_under(&entry.path()));
        } else {
            files.push(entry.path());
        }
    }
    files
}

fn inv(command: &str, input: &str) -> Invocation {
    Invocation::new("isolator prepare", command, input).with_timeout(Duration::from_secs(10))
}

/// True when `pid` no longer runs (gone, or a zombie waiting for init to reap it).
fn is_dead(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z') || rest.starts_with('X')),
    }
}

/// Waits a little for `pid` to die: a SIGKILLed process may take a moment to go.
async fn assert_dies(pid: u32) {
    for _ in 0..100 {
        if is_dead(pid) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("process {pid} still alive");
}

fn read_pid(path: &Path) -> u32 {
    std::fs::read_to_string(path)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn success_returns_the_output_file_untrimmed() {
    let s = Scratch::new("ok");
    let cmd = s.script(
        "ok.sh",
        r#"printf '%s > output\n' "$(cat "$1")" > "$2"; echo "not the output""#,
    );
    let outcome = s.runner.run(&inv(&cmd, "HELLO")).await.unwrap();
    assert_eq!(outcome.output, b"HELLO > output\n");
    s.assert_no_temp_files();
}

#[tokio::test]
async fn empty_output_is_an_empty_result() {
    let s = Scratch::new("empty");
    let cmd = s.script("empty.sh", "exit 0");
    let outcome = s.runner.run(&inv(&cmd, "{}")).await.unwrap();
    assert!(outcome.output.is_empty());
    s.assert_no_temp_files();
}

#[tokio::test]
async fn stdin_is_the_input_file() {
    let s = Scratch::new("stdin");
    let cmd = s.script("stdin.sh", r#"{ cat; echo "|"; cat "$1"; } > "$2""#);
    let input = r#"{"container_id":{"value":"abc"}}"#;
    let outcome = s.runner.run(&inv(&cmd, input)).await.unwrap();
    assert_eq!(
        String::from_utf8(outcome.output).unwrap(),
        format!("{input}|\n{input}")
    );
    s.assert_no_temp_files();
}

/// The input file is 0600 in a directory of the runner's own (0700), where the command
/// creates its output and error files.
#[tokio::test]
async fn temp_files_are_private() {
    let s = Scratch::new("mode");
    let cmd = s.script(
        "mode.sh",
        r#"d=$(dirname "$1")
[ "$(dirname "$2")" = "$d" ] && [ "$(dirname "$3")" = "$d" ] || exit 9
# Criteo's contract: the output and error files exist, empty, before the command runs.
[ -f "$2" ] && [ ! -s "$2" ] && [ -f "$3" ] && [ ! -s "$3" ] || exit 8
stat -c %a "$1" "$2" "$3" "$d" | tr '\n' ' ' > "$2""#,
    );
    let outcome = s.runner.run(&inv(&cmd, "x")).await.unwrap();
    assert_eq!(outcome.output, b"600 600 600 700 ");
    s.assert_no_temp_files();
}

/// The private directory goes with the last clone of the runner; runs in an earlier one do
/// not stop a new runner from working in the same temp directory.
#[tokio::test]
async fn the_private_directory_goes_with_the_runner() {
    let s = Scratch::new("private-dir");
    let cmd = s.script("ok.sh", r#"dirname "$1" > "$2""#);
    let tmp = s.path("tmp");
    let runner = Runner::new(&tmp);
    let clone = runner.clone();
    let first = runner.run(&inv(&cmd, "{}")).await.unwrap().output;
    let second = clone.run(&inv(&cmd, "{}")).await.unwrap().output;
    assert_eq!(first, second, "clones share one directory");
    let private = PathBuf::from(String::from_utf8(first).unwrap().trim());
    assert_eq!(private.parent(), Some(tmp.as_path()));
    drop(runner);
    assert!(private.is_dir());
    drop(clone);
    assert!(!private.exists(), "{} left behind", private.display());

    // Removed by someone else while the runner lives: the next run makes a new one.
    let runner = Runner::new(&tmp);
    let private = runner.run(&inv(&cmd, "{}")).await.unwrap().output;
    std::fs::remove_dir(String::from_utf8(private).unwrap().trim()).unwrap();
    runner.run(&inv(&cmd, "{}")).await.unwrap();
    drop(runner);
    assert_eq!(std::fs::read_dir(&tmp).unwrap().count(), 0);
}

#[tokio::test]
async fn exit_code_with_error_file_names_command_code_and_cause() {
    let s = Scratch::new("exit3");
    let cmd = s.script(
        "fail.sh",
        r#"printf '  This is the cause.\n\n' > "$3"; exit 3"#,
    );
    let err = s.runner.run(&inv(&cmd, "{}")).await.unwrap_err();
    match &err {
        RunError::Exit { status, cause, .. } => {
            assert_eq!(*status, ExitKind::Code(3));
            assert_eq!(cause, "This is the cause.");
        }
        other => panic!("unexpected error {other:?}"),
    }
    assert_eq!(
        err.to_string(),
        format!(
            "isolator prepare: command \"{cmd}\" exited with return code 3. Cause: This is the cause."
        )
    );
    s.assert_no_temp_files();
}

#[tokio::test]
async fn exit_code_without_error_file_says_so() {
    let s = Scratch::new("exit3-bare");
    let cmd = s.script("fail.sh", "exit 3");
    let err = s.runner.run(&inv(&cmd, "{}")).await.unwrap_err();
    assert!(
        matches!(&err, RunError::Exit { status: ExitKind::Code(3), cause, .. } if cause.is_empty())
    );
    assert_eq!(
        err.to_string(),
        format!(
            "isolator prepare: command \"{cmd}\" exited with return code 3. The error file is empty."
        )
    );
    s.assert_no_temp_files();
}

#[tokio::test]
async fn long_error_file_is_bounded() {
    let s = Scratch::new("long-cause");
    let cmd = s.script(
        "fail.sh",
        r#"head -c 100000 /dev/zero | tr '\0' 'e' > "$3"; exit 1"#,
    );
    let err = s.runner.run(&inv(&cmd, "{}")).await.unwrap_err();
    let RunError::Exit { cause, .. } = &err else {
        panic!("unexpected error {err:?}");
    };
    assert!(cause.starts_with("eeee"));
    assert!(cause.ends_with(" [truncated]"));
    assert!(cause.len() <= mesokit_hooks::runner::ERROR_FILE_LIMIT + 20);
    s.assert_no_temp_files();
}

#[tokio::test]
async fn killed_by_signal() {
    let s = Scratch::new("signal");
    let cmd = s.script("autokill.sh", "echo dying > \"$3\"; kill -TERM $$; sleep 5");
    let err = s.runner.run(&inv(&cmd, "{}")).await.unwrap_err();
    assert!(
        matches!(
            &err,
            RunError::Exit {
                status: ExitKind::Signal(15),
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        format!("isolator prepare: command \"{cmd}\" exited via signal 15. Cause: dying")
    );
    s.assert_no_temp_files();
}

#[tokio::test]
async fn missing_command_is_a_spawn_error() {
    let s = Scratch::new("missing");
    let cmd = s.path("blablabla").to_str().unwrap().to_owned();
    let err = s.runner.run(&inv(&cmd, "{}")).await.unwrap_err();
    assert!(matches!(&err, RunError::Spawn { .. }), "{err:?}");
    assert!(err.to_string().contains(&cmd), "{err}");
    s.assert_no_temp_files();
}

#[tokio::test]
async fn unexecutable_file_is_a_spawn_error() {
    let s = Scratch::new("unexecutable");
    let cmd = s.script("unexecutable.sh", "exit 0");
    std::fs::set_permissions(&cmd, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = s.runner.run(&inv(&cmd, "{}")).await.unwrap_err();
    assert!(matches!(&err, RunError::Spawn { .. }), "{err:?}");
    s.assert_no_temp_files();
}

#[tokio::test]
async fn timeout_kills_the_whole_group() {
    let s = Scratch::new("hang");
    let pids = s.path("pids");
    let cmd = s.script(
        "hang.sh",
        &format!(
            "sleep 60 & echo $! > {p}.child; echo $$ > {p}.tmp; mv {p}.tmp {p}; while :; do sleep 0.05; done",
            p = pids.display()
        ),
    );
    let timeout = Duration::from_millis(300);
    let start = Instant::now();
    let err = s
        .runner
        .run(&inv(&cmd, "{}").with_timeout(timeout))
        .await
        .unwrap_err();
    let took = start.elapsed();
    assert!(
        matches!(&err, RunError::Timeout { after, .. } if *after == timeout),
        "{err:?}"
    );
    assert!(err.to_string().contains("took too long"), "{err}");
    // Generous bound: it must not wait for `sleep 60`.
    assert!(took < timeout + Duration::from_secs(5), "took {took:?}");
    assert_dies(read_pid(&pids)).await;
    assert_dies(read_pid(&s.path("pids.child"))).await;
    s.assert_no_temp_files();
}

#[tokio::test]
async fn timeout_kills_a_child_that_left_the_group_with_setsid() {
    let s = Scratch::new("setsid");
    let pid = s.path("daemon");
    let cmd = s.script(
        "daemon.sh",
        &format!(
            "setsid sh -c 'echo $$ > {p}.tmp; mv {p}.tmp {p}; exec sleep 60' & while :; do sleep 0.05; done",
            p = pid.display()
        ),
    );
    let err = s
        .runner
        .run(&inv(&cmd, "{}").with_timeout(Duration::from_millis(500)))
        .await
        .unwrap_err();
    assert!(matches!(err, RunError::Timeout { .. }), "{err:?}");
    // A new session, outside the group: reached through the process tree, as Mesos's
    // killtree reaches it.
    assert_dies(read_pid(&pid)).await;
    s.assert_no_temp_files();
}

#[tokio::test]
async fn timeout_sigkills_a_group_that_ignores_sigterm() {
    let s = Scratch::new("stubborn");
    let pids = s.path("pids");
    let cmd = s.script(
        "stubborn.sh",
        &format!(
            "trap '' TERM; sleep 60 & echo $! > {p}.child; echo $$ > {p}.tmp; mv {p}.tmp {p}; while :; do sleep 0.05; done",
            p = pids.display()
        ),
    );
    let timeout = Duration::from_millis(200);
    let err = s
        .runner
        .run(&inv(&cmd, "{}").with_timeout(timeout))
        .await
        .unwrap_err();
    assert!(matches!(&err, RunError::Timeout { .. }), "{err:?}");
    assert_dies(read_pid(&pids)).await;
    assert_dies(read_pid(&s.path("pids.child"))).await;
    s.assert_no_temp_files();
}

#[tokio::test]
async fn children_left_behind_are_killed_on_exit() {
    let s = Scratch::new("straggler");
    let child = s.path("child");
    let cmd = s.script(
        "straggler.sh",
        &format!(
            "sleep 60 & echo $! > {}; echo done > \"$2\"",
            child.display()
        ),
    );
    let outcome = s.runner.run(&inv(&cmd, "{}")).await.unwrap();
    assert_eq!(outcome.output, b"done\n");
    assert_dies(read_pid(&child)).await;
    s.assert_no_temp_files();
}

#[tokio::test]
async fn script_deleting_its_own_files_still_works() {
    let s = Scratch::new("self-delete");
    let cmd = s.script("rm.sh", r#"rm -f "$1" "$2" "$3""#);
    let outcome = s.runner.run(&inv(&cmd, "{}")).await.unwrap();
    assert!(outcome.output.is_empty());
    s.assert_no_temp_files();

    let cmd = s.script("rm-fail.sh", r#"rm -f "$1" "$2" "$3"; exit 4"#);
    let err = s.runner.run(&inv(&cmd, "{}")).await.unwrap_err();
    assert!(
        matches!(&err, RunError::Exit { status: ExitKind::Code(4), cause, .. } if cause.is_empty())
    );
    s.assert_no_temp_files();
}

#[tokio::test]
async fn missing_temp_dir_is_a_temp_file_error() {
    let s = Scratch::new("no-dir");
    let runner = Runner::new(s.path("does-not-exist"));
    let cmd = s.script("ok.sh", "exit 0");
    let err = runner.run(&inv(&cmd, "{}")).await.unwrap_err();
    assert!(matches!(&err, RunError::TempFile { .. }), "{err:?}");
    assert!(
        err.to_string()
            .starts_with("isolator prepare: cannot create the temporary file"),
        "{err}"
    );
}

#[tokio::test]
async fn cancelled_run_kills_the_group_and_removes_the_files() {
    let s = Scratch::new("cancel");
    let pids = s.path("pids");
    let cmd = s.script(
        "hang.sh",
        &format!(
            "echo $$ > {p}.tmp; mv {p}.tmp {p}; while :; do sleep 0.05; done",
            p = pids.display()
        ),
    );
    let invocation = inv(&cmd, "{}");
    let mut run = Box::pin(s.runner.run(&invocation));
    // Drive the run until the script has started, then drop it.
    while !pids.exists() {
        tokio::select! {
            r = &mut run => panic!("finished early: {r:?}"),
            () = tokio::time::sleep(Duration::from_millis(10)) => {}
        }
    }
    drop(run); // the future itself, not a pinned reference to it
    assert_dies(read_pid(&pids)).await;
    s.assert_no_temp_files();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ten_runs_in_parallel() {
    runs_in_parallel("parallel", "sleep 0.1; ", 10).await;
}

/// Runs in flight time out together: each command (on a run thread of its own) and the
/// child it left in its group are killed, and each run reports its timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_in_flight_time_out_each() {
    let s = Scratch::new("parallel-hang");
    let pids = s.path("pids");
    std::fs::create_dir(&pids).unwrap();
    let cmd = s.script(
        "hang.sh",
        &format!(
            "sleep 60 & echo $! > {p}/$!; echo $$ > {p}/$$; while :; do sleep 0.05; done",
            p = pids.display()
        ),
    );
    let runner = Arc::new(s.runner.clone());
    let mut runs = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let runner = Arc::clone(&runner);
        let inv = inv(&cmd, "{}").with_timeout(Duration::from_millis(300));
        runs.spawn(async move { runner.run(&inv).await });
    }
    while let Some(joined) = runs.join_next().await {
        let err = joined.unwrap().unwrap_err();
        assert!(matches!(err, RunError::Timeout { .. }), "{err:?}");
    }
    let started: Vec<u32> = std::fs::read_dir(&pids)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_str().unwrap().parse().unwrap())
        .collect();
    assert_eq!(started.len(), 8, "{started:?}");
    for pid in started {
        assert_dies(pid).await;
    }
    s.assert_no_temp_files();
}

/// Many runs at once on one thread: with others in flight, a run hands its command to a run
/// thread of its own; every run must still get its own stdin and output.
#[tokio::test]
async fn parallel_runs_on_a_current_thread_runtime() {
    runs_in_parallel("parallel-1", "", 16).await;
}

/// More runs in flight than there are run threads (32): the rest spawn on their task, and
/// every run still gets its own output.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_runs_in_flight_than_run_threads() {
    runs_in_parallel("parallel-40", "sleep 0.3; ", 40).await;
}

/// Runs cancelled at every stage, also while their command is being started by a run
/// thread: once the runtime is gone, every command that started, and the child it left in
/// its group, is dead and no temp file is left.
#[test]
fn parallel_runs_cancelled_while_spawning_leave_nothing_behind() {
    let s = Scratch::new("cancel-spawning");
    let pids = s.path("pids");
    std::fs::create_dir(&pids).unwrap();
    let cmd = s.script(
        "hang.sh",
        &format!(
            "sleep 1000 & echo $! > {p}/$!; echo $$ > {p}/$$; wait",
            p = pids.display()
        ),
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let runner = Arc::new(s.runner.clone());
    rt.block_on(async {
        let mut runs = tokio::task::JoinSet::new();
        for _ in 0..12 {
            let runner = Arc::clone(&runner);
            let inv = inv(&cmd, "{}");
            runs.spawn(async move { runner.run(&inv).await });
        }
        // Let each run get as far as its spawn, then cancel them all.
        tokio::task::yield_now().await;
        runs.abort_all();
        while let Some(joined) = runs.join_next().await {
            assert!(joined.is_err_and(|e| e.is_cancelled()));
        }
    });
    drop(rt);
    s.assert_no_temp_files();
    let check = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    for entry in std::fs::read_dir(&pids).unwrap() {
        let pid = entry
            .unwrap()
            .file_name()
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        check.block_on(assert_dies(pid));
    }
}

/// `n` runs of one script at once (`pause` runs before it echoes its stdin to its output),
/// on whatever runtime the caller runs: every run gets its own stdin and output back, and no
/// temp file is left.
async fn runs_in_parallel(name: &str, pause: &str, n: usize) {
    let s = Scratch::new(name);
    let cmd = s.script("echo.sh", &format!(r#"{pause}cat > "$2""#));
    let runner = Arc::new(s.runner.clone());
    let mut runs = tokio::task::JoinSet::new();
    for i in 0..n {
        let runner = Arc::clone(&runner);
        let inv = inv(&cmd, &format!("{{\"run\":{i}}}"));
        runs.spawn(async move { (i, runner.run(&inv).await) });
    }
    let mut seen = 0;
    while let Some(joined) = runs.join_next().await {
        let (i, result) = joined.unwrap();
        assert_eq!(
            result.unwrap().output,
            format!("{{\"run\":{i}}}").into_bytes()
        );
        seen += 1;
    }
    assert_eq!(seen, n);
    s.assert_no_temp_files();
}
