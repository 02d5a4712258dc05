//! The progress regex (Cook's design), end to end: the `mesokit-executor` binary started as an
//! agent starts it (its stdout and stderr are the sandbox's `stdout` and `stderr` files)
//! against the fake agent, running real shell tasks whose output carries progress lines.

mod support;

use std::path::{Path, PathBuf};
use std::process::Stdio;

use mesokit_executor::progress::{DEFAULT_REGEX, FILE_VAR};
use mesokit_executor::supervisor::{Action, Settings, Supervisor};
use mesokit_proto::helpers::TaskBuilder;
use mesokit_proto::v1::task_status::Reason;
use mesokit_proto::v1::{TaskInfo, TaskStatus};
use support::fake_agent::{self, FakeAgent, state, within};
use tokio::process::{Child, Command};

fn sandbox(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "mesokit-executor-progress-{}-{name}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The binary, started for `task` as an agent starts an executor, with `env` added.
async fn start(task: TaskInfo, dir: &Path, env: &[(&str, &str)]) -> (FakeAgent, Child) {
    let id = task.task_id.value.clone();
    let agent = FakeAgent::start(fake_agent::subscribed("fw", &id, &[])).await;
    agent.queue(fake_agent::launch(task));
    let child = executor(&agent, &id, dir, env);
    (agent, child)
}

fn executor(agent: &FakeAgent, id: &str, dir: &Path, env: &[(&str, &str)]) -> Child {
    let file = |name: &str| Stdio::from(std::fs::File::create(dir.join(name)).unwrap());
    Command::new(env!("CARGO_BIN_EXE_mesokit-executor"))
        .envs(agent.executor_env("fw", id, dir))
        .envs(env.iter().copied())
        .env_remove("RUST_LOG")
        .current_dir(dir)
        .stdout(file("stdout"))
        .stderr(file("stderr"))
        .kill_on_drop(true)
        .spawn()
        .expect("the executor binary starts")
}

async fn finish(mut child: Child, dir: PathBuf) {
    let status = within("the executor to exit", child.wait()).await.unwrap();
    assert!(status.success(), "executor: {status}");
    let _ = std::fs::remove_dir_all(dir);
}

/// `(progress, message)` of the progress updates (TASK_RUNNING with `data`).
fn progress_updates(updates: &[TaskStatus]) -> Vec<(String, Option<String>)> {
    updates
        .iter()
        .filter(|u| state(u) == "TASK_RUNNING")
        .filter_map(|u| {
            let data = String::from_utf8(u.data.as_ref()?.to_vec()).unwrap();
            Some((data, u.message.clone()))
        })
        .collect()
}

fn last_progress(updates: &[TaskStatus]) -> (String, Option<String>) {
    progress_updates(updates)
        .pop()
        .expect("a progress update before the end")
}

fn task(id: &str, script: &str) -> TaskBuilder {
    TaskBuilder::new(id, id, "S0").shell(script)
}

#[tokio::test]
async fn progress_and_message_from_stdout() {
    let dir = sandbox("stdout");
    let task = task(
        "out",
        r#"echo "progress: 25 a quarter"; echo noise; echo "progress: 75.4   most of it  ""#,
    )
    .label("progress_regex", r"progress: ([0-9.]+) (.*)")
    .build();
    let (mut agent, child) = start(task, &dir, &[]).await;
    let updates = agent.updates_until_terminal().await;
    assert_eq!(state(updates.last().unwrap()), "TASK_FINISHED");
    assert_eq!(
        last_progress(&updates),
        (
            r#"{"progress":75,"message":"most of it"}"#.to_owned(),
            Some("most of it".to_owned())
        ),
        "rounded percentage, trimmed message, sent before the terminal update"
    );
    for (data, _) in progress_updates(&updates) {
        assert!(data.contains(r#""progress":25"#) || data.contains(r#""progress":75"#));
    }
    finish(child, dir).await;
}

#[tokio::test]
async fn one_capture_group_from_stderr() {
    let dir = sandbox("stderr");
    let task = task(
        "err",
        r#"echo "40% done" >&2; echo "50% done, or not" >&2; echo "60% done" >/dev/null"#,
    )
    .label("progress_regex", r"^([0-9]+)% done$")
    .build();
    let (mut agent, child) = start(task, &dir, &[]).await;
    let updates = agent.updates_until_terminal().await;
    assert_eq!(state(updates.last().unwrap()), "TASK_FINISHED");
    assert_eq!(
        progress_updates(&updates),
        [(r#"{"progress":40}"#.to_owned(), None)]
    );
    finish(child, dir).await;
}

#[tokio::test]
async fn the_default_progress_file_with_the_operators_regex() {
    let dir = sandbox("file");
    let task = task(
        "file/1",
        r#"echo "$EXECUTOR_PROGRESS_OUTPUT_FILE" > where
           echo "progress: 60 from the file" >> "$EXECUTOR_PROGRESS_OUTPUT_FILE""#,
    )
    .build();
    let (mut agent, child) = start(
        task,
        &dir,
        &[("MESOKIT_EXECUTOR_PROGRESS_REGEX", DEFAULT_REGEX)],
    )
    .await;
    let updates = agent.updates_until_terminal().await;
    assert_eq!(state(updates.last().unwrap()), "TASK_FINISHED");
    assert_eq!(
        last_progress(&updates).0,
        r#"{"progress":60,"message":"from the file"}"#
    );
    let expected = dir.join("file_1.progress");
    assert_eq!(
        std::fs::read_to_string(dir.join("where")).unwrap().trim(),
        expected.to_str().unwrap(),
        "<executor id>.progress in the sandbox, a / in the id made _"
    );
    finish(child, dir).await;
}

#[tokio::test]
async fn a_progress_file_label_alone_uses_cooks_default_regex() {
    let dir = sandbox("filelabel");
    let task = task(
        "fl",
        r#"echo "$EXECUTOR_PROGRESS_OUTPUT_FILE" > where; mkdir sub
           printf 'progress: 33\n' > sub/p.txt"#,
    )
    .label("progress_file", "sub/p.txt")
    .build();
    let (mut agent, child) = start(task, &dir, &[]).await;
    let updates = agent.updates_until_terminal().await;
    assert_eq!(last_progress(&updates).0, r#"{"progress":33}"#);
    assert_eq!(
        std::fs::read_to_string(dir.join("where")).unwrap().trim(),
        dir.join("sub/p.txt").to_str().unwrap()
    );
    finish(child, dir).await;
}

#[tokio::test]
async fn lines_that_do_not_fit_are_ignored() {
    let dir = sandbox("ignored");
    let task = task(
        "ign",
        r#"printf 'progress: 150 too much\nprogress: x\nnothing\nprogress: 50 fine\n'
           head -c 3000 /dev/urandom; echo
           printf 'progress: -5 negative\nprogress: 101\nProgress: 70 wrong case\n'"#,
    )
    .label("progress_regex", DEFAULT_REGEX)
    .build();
    let (mut agent, child) = start(task, &dir, &[]).await;
    let updates = agent.updates_until_terminal().await;
    assert_eq!(state(updates.last().unwrap()), "TASK_FINISHED");
    assert_eq!(
        progress_updates(&updates),
        [(
            r#"{"progress":50,"message":"fine"}"#.to_owned(),
            Some("fine".to_owned())
        )]
    );
    finish(child, dir).await;
}

#[tokio::test]
async fn a_very_long_line_does_not_hide_what_follows() {
    let dir = sandbox("long");
    // 20 MB without a newline, more than the last read looks at (16 MiB), then progress.
    let task = task(
        "long",
        r#"echo "progress: 10 before"
           head -c 20000000 /dev/zero | tr '\0' a
           printf '\nprogress: 90 after a long line\n'"#,
    )
    .label("progress_regex", DEFAULT_REGEX)
    .build();
    let (mut agent, child) = start(task, &dir, &[]).await;
    let updates = agent.updates_until_terminal().await;
    assert_eq!(state(updates.last().unwrap()), "TASK_FINISHED");
    assert_eq!(
        last_progress(&updates).0,
        r#"{"progress":90,"message":"after a long line"}"#
    );
    finish(child, dir).await;
}

#[tokio::test]
async fn a_bad_regex_fails_the_task_before_it_runs() {
    let dir = sandbox("badregex");
    let task = task("bad", "touch ran")
        .label("progress_regex", "progress: ([0-9]+")
        .build();
    let (mut agent, child) = start(task, &dir, &[]).await;
    let updates = agent.updates_until_terminal().await;
    let last = updates.last().unwrap();
    assert_eq!(state(last), "TASK_FAILED");
    assert_eq!(last.reason, Some(Reason::TaskInvalid as i32));
    let message = last.message.as_deref().unwrap();
    assert!(
        message.starts_with(
            "label `progress_regex`: `progress: ([0-9]+` is not a valid regular expression: "
        ),
        "{message}"
    );
    assert!(!dir.join("ran").exists());
    finish(child, dir).await;
}

#[tokio::test]
async fn a_bad_operator_regex_stops_the_executor_at_start() {
    let dir = sandbox("badoperator");
    let agent = FakeAgent::start(fake_agent::subscribed("fw", "x", &[])).await;
    let mut child = executor(
        &agent,
        "x",
        &dir,
        &[("MESOKIT_EXECUTOR_PROGRESS_REGEX", "no group")],
    );
    let status = within("the executor to exit", child.wait()).await.unwrap();
    assert!(!status.success());
    let stderr = std::fs::read_to_string(dir.join("stderr")).unwrap();
    assert!(
        stderr.contains(
            "MESOKIT_EXECUTOR_PROGRESS_REGEX: `no group` has no capture group: the first group \
             must capture the percentage"
        ),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn the_api_and_the_regex_share_one_progress() {
    let dir = sandbox("shared");
    let auth = r#"-H "Authorization: Bearer $EXECUTOR_TOKEN""#;
    let script = format!(
        r#"curl -fsS -X PATCH {auth} -d '{{"progress": 10, "message": "from the api"}}' "$EXECUTOR_ENDPOINT"
           echo "progress: 20"
           echo "progress: 30 from the output"
           until curl -fsS {auth} "$EXECUTOR_ENDPOINT" | grep -q '"progress":30'; do sleep 0.02; done
           curl -fsS {auth} "$EXECUTOR_ENDPOINT" > record.json"#
    );
    let task = task("api", &script)
        .label("progress_regex", DEFAULT_REGEX)
        .build();
    let (mut agent, child) = start(task, &dir, &[]).await;
    let updates = agent.updates_until_terminal().await;
    assert_eq!(state(updates.last().unwrap()), "TASK_FINISHED");
    let progress = progress_updates(&updates);
    assert_eq!(
        progress.first().unwrap().0,
        r#"{"progress":10,"message":"from the api"}"#,
        "the first change goes out at once"
    );
    assert_eq!(
        progress.last().unwrap().0,
        r#"{"progress":30,"message":"from the output"}"#,
        "the last change is always sent, before the end"
    );
    let record = std::fs::read_to_string(dir.join("record.json")).unwrap();
    assert!(
        record.contains(r#""progress":30,"message":"from the output""#),
        "GET shows what the regex found: {record}"
    );
    finish(child, dir).await;
}

#[tokio::test]
async fn rotated_output_is_followed() {
    let dir = sandbox("rotated");
    let task = task(
        "rot",
        r#"i=0; while [ $i -lt 300 ]; do echo "line $i of some output to rotate"; i=$((i+1)); done
           echo "progress: 80 after rotating""#,
    )
    .label("progress_regex", DEFAULT_REGEX)
    .build();
    let (mut agent, child) = start(
        task,
        &dir,
        &[
            ("MESOKIT_EXECUTOR_LOG_MAX_SIZE", "1KB"),
            ("MESOKIT_EXECUTOR_LOG_MAX_FILES", "2"),
        ],
    )
    .await;
    let updates = agent.updates_until_terminal().await;
    assert_eq!(
        last_progress(&updates).0,
        r#"{"progress":80,"message":"after rotating"}"#
    );
    assert!(dir.join("stdout.1").exists(), "the output rotated");
    finish(child, dir).await;
}

#[tokio::test]
async fn each_task_of_a_group_has_its_own_output_and_progress_file() {
    let dir = sandbox("group");
    let one = task("g1", r#"echo "progress: 11 one""#)
        .label("progress_regex", DEFAULT_REGEX)
        .build();
    let two = task(
        "g2",
        r#"echo "progress: 22 two" > "$EXECUTOR_PROGRESS_OUTPUT_FILE""#,
    )
    .label("progress_regex", DEFAULT_REGEX)
    .build();
    let mut agent = FakeAgent::start(fake_agent::subscribed("fw", "grp", &[])).await;
    agent.queue(fake_agent::launch_group(vec![one, two]));
    let child = executor(&agent, "grp", &dir, &[]);
    let mut updates = Vec::new();
    while updates
        .iter()
        .filter(|u: &&TaskStatus| mesokit_proto::helpers::is_terminal_value(u.state))
        .count()
        < 2
    {
        updates.push(agent.next_update().await);
    }
    for (id, data) in [
        ("g1", r#"{"progress":11,"message":"one"}"#),
        ("g2", r#"{"progress":22,"message":"two"}"#),
    ] {
        let of_task: Vec<TaskStatus> = updates
            .iter()
            .filter(|u| u.task_id.value == id)
            .cloned()
            .collect();
        assert_eq!(state(of_task.last().unwrap()), "TASK_FINISHED");
        assert_eq!(last_progress(&of_task).0, data, "{id}");
    }
    assert!(dir.join("tasks/g2/grp.progress").exists());
    finish(child, dir).await;
}

/// The supervisor's part, with no process: what a launch carries, and who is tracked.
#[test]
fn launches_carry_the_tracking_and_the_file_variable() {
    let launch = |task: TaskInfo, settings: Settings| {
        let mut sup = Supervisor::new(settings);
        let ev = fake_agent::launch(task);
        sup.handle_event(&ev, std::time::Instant::now());
        std::iter::from_fn(|| sup.poll_action())
            .find_map(|a| match a {
                Action::Launch {
                    command, progress, ..
                } => Some((command, progress)),
                _ => None,
            })
            .expect("a launch")
    };
    let mut settings = Settings::default();
    settings.sandbox = Some("/sb".into());
    settings.executor_env = vec![("MESOS_EXECUTOR_ID".into(), "ex".into())];

    let (_, none) = launch(task("t", "true").build(), settings.clone());
    assert!(none.is_none(), "off unless asked for");

    let labelled = task("t", "true").label("progress_regex", "(\\d+)").build();
    let (command, tracking) = launch(labelled, settings.clone());
    let tracking = tracking.expect("tracked");
    assert_eq!(tracking.pattern.as_str(), "(\\d+)");
    let files: Vec<_> = tracking.files.iter().map(|p| p.to_str().unwrap()).collect();
    assert_eq!(files, ["/sb/stdout", "/sb/stderr", "/sb/ex.progress"]);
    assert!(
        command
            .env
            .contains(&(FILE_VAR.to_owned(), "/sb/ex.progress".to_owned()))
    );

    settings.progress_regex = Some(mesokit_executor::progress::Pattern::new("x(\\d)").unwrap());
    settings.progress_file = Some("/abs/p".into());
    let (_, by_operator) = launch(task("t", "true").build(), settings.clone());
    let by_operator = by_operator.expect("the operator's default");
    assert_eq!(by_operator.pattern.as_str(), "x(\\d)");
    assert_eq!(by_operator.progress_file, Path::new("/abs/p"));
    let off = task("t", "true").label("progress_regex", "").build();
    assert!(
        launch(off, settings).1.is_none(),
        "an empty label turns it off"
    );
}
