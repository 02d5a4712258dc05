//! Before/after commands and the task HTTP API, end to end: [`mesokit_executor::run`] against
//! the fake agent, real shell commands, and `curl` talking to the executor's API.

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use mesokit_client::executor::ExecutorConfig;
use mesokit_executor::{Error, Settings, launch, run};
use mesokit_proto::helpers::TaskBuilder;
use mesokit_proto::v1::TaskInfo;
use support::fake_agent::{self, FakeAgent, state, within};
use tokio::process::Command;

fn sandbox(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "mesokit-executor-api-{}-{name}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn start(
    task: TaskInfo,
    dir: &Path,
) -> (FakeAgent, tokio::task::JoinHandle<Result<(), Error>>) {
    let id = task.task_id.value.clone();
    let agent = FakeAgent::start(fake_agent::subscribed("fw", &id, &[])).await;
    agent.queue(fake_agent::launch(task));
    let config = ExecutorConfig::new(
        "fw",
        &id,
        format!("http://{}/api/v1/executor", agent.endpoint()),
    );
    let mut settings = Settings::default();
    settings.executor_env = launch::process_env();
    settings.sandbox = Some(dir.to_owned());
    settings.max_message_length = 10;
    (agent, tokio::spawn(run(config, settings)))
}

async fn wait_for_file(path: &Path) -> String {
    within("a file written by the task", async {
        loop {
            if let Ok(s) = std::fs::read_to_string(path)
                && s.ends_with('\n')
            {
                return s;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
}

const PATCH: &str = r#"curl -fsS -X PATCH -H "Authorization: Bearer $EXECUTOR_TOKEN""#;

#[tokio::test]
async fn before_and_after_commands_share_env_progress_and_exit_codes() {
    let dir = sandbox("sequence");
    let before = format!(
        r#"[{{"value": "{p} -d '{{\"env\": {{\"FROM_BEFORE\": \"yes\", \"GONE\": null}}, \"progress\": 50, \"message\": \"half way there\"}}' \"$EXECUTOR_ENDPOINT\""}},
            {{"value": "echo $$ > async.pid; exec sleep 30", "async": true}}]"#,
        p = PATCH.replace('"', "\\\"")
    );
    let after = r#"[{"value": "curl -fsS -H \"Authorization: Bearer $EXECUTOR_TOKEN\" \"$EXECUTOR_ENDPOINT\" > record.json; echo >> record.json"}]"#;
    let task = TaskBuilder::new("seq", "seq/1", "S0")
        .shell(r#"echo "${FROM_BEFORE-unset} ${GONE-unset}" > main.out; exit 3"#)
        .env("GONE", "here")
        .label("before_commands", &before)
        .label("after_commands", after)
        .build();
    let (mut agent, executor) = start(task, &dir).await;
    let updates = agent.updates_until_terminal().await;
    let seen: Vec<_> = updates
        .iter()
        .map(|u| {
            (
                state(u),
                u.message.clone(),
                u.data
                    .as_ref()
                    .map(|d| String::from_utf8_lossy(d).into_owned()),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("TASK_STARTING", None, None),
            ("TASK_RUNNING", None, None),
            (
                "TASK_RUNNING",
                Some("half wa...".into()),
                Some(r#"{"progress":50,"message":"half wa..."}"#.into())
            ),
            (
                "TASK_FAILED",
                Some("Command exited with status 3".into()),
                None
            ),
        ]
    );
    within("run to return", executor).await.unwrap().unwrap();
    assert_eq!(
        std::fs::read_to_string(dir.join("main.out")).unwrap(),
        "yes unset\n",
        "the PATCHed env reached the later command, and null unset a task variable"
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("record.json")).unwrap(),
        concat!(
            r#"{"task_id":"seq/1","exit_code":3,"before_codes":[0,null],"after_codes":[null],"#,
            r#""progress":50,"message":"half wa..."}"#,
            "\n"
        ),
        "the after command read the statuses so far (the async one still ran)"
    );
    let pid = std::fs::read_to_string(dir.join("async.pid")).unwrap();
    let alive = Path::new(&format!("/proc/{}/cmdline", pid.trim())).exists()
        && std::fs::read(format!("/proc/{}/cmdline", pid.trim()))
            .is_ok_and(|c| c.starts_with(b"sleep\0"));
    assert!(!alive, "the async command was killed at the end");
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn a_failing_guard_stops_the_sequence_and_fails_the_task() {
    let dir = sandbox("guard");
    let task = TaskBuilder::new("g", "g1", "S0")
        .shell("touch main-ran")
        .label(
            "before_commands",
            r#"[{"value": "exit 4", "guard": true}, {"value": "touch second-ran"}]"#,
        )
        .build();
    let (mut agent, executor) = start(task, &dir).await;
    let updates = agent.updates_until_terminal().await;
    let last = updates.last().unwrap();
    assert_eq!(state(last), "TASK_FAILED");
    assert_eq!(
        last.message.as_deref(),
        Some("before command 1 (`exit 4`) exited with status 4; later commands did not run")
    );
    within("run to return", executor).await.unwrap().unwrap();
    assert!(!dir.join("main-ran").exists());
    assert!(!dir.join("second-ran").exists());
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn task_data_that_is_not_json_fails_the_task_clearly() {
    let dir = sandbox("baddata");
    let task = TaskBuilder::new("d", "d1", "S0")
        .shell("touch main-ran")
        .data(&b"{\"before_commands\": [{\"value\": \"x\"}"[..])
        .build();
    let (mut agent, executor) = start(task, &dir).await;
    let updates = agent.updates_until_terminal().await;
    let last = updates.last().unwrap();
    assert_eq!(state(last), "TASK_FAILED");
    let message = last.message.as_deref().unwrap();
    assert!(
        message.starts_with("TaskInfo.data: `before_commands`: not valid JSON"),
        "{message}"
    );
    within("run to return", executor).await.unwrap().unwrap();
    assert!(!dir.join("main-ran").exists());
    let _ = std::fs::remove_dir_all(dir);
}

/// `curl` with `args`; the HTTP status and the body.
async fn curl(args: &[&str]) -> (u16, String) {
    // Not std's Command: the executor serves on this test's (single) thread.
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "20", "-w", "\n%{http_code}"])
        .args(args)
        .output()
        .await
        .expect("curl runs");
    let text = String::from_utf8(out.stdout).unwrap();
    let (body, code) = text.rsplit_once('\n').unwrap();
    (code.parse().unwrap(), body.to_owned())
}

#[tokio::test]
async fn the_api_refuses_bad_requests_with_the_reason() {
    let dir = sandbox("errors");
    let task = TaskBuilder::new("e", "e1", "S0")
        .shell(r#"echo "$EXECUTOR_ENDPOINT $EXECUTOR_TOKEN" > api; exec sleep 30"#)
        .build();
    let (mut agent, executor) = start(task, &dir).await;
    let line = wait_for_file(&dir.join("api")).await;
    let (endpoint, token) = line.trim().split_once(' ').unwrap();
    assert!(endpoint.starts_with("http://127.0.0.1:") && endpoint.ends_with("/task/e1"));
    let auth = format!("Authorization: Bearer {token}");
    let patch = async |body: &str| curl(&["-X", "PATCH", "-H", &auth, "-d", body, endpoint]).await;

    let (code, body) = curl(&["-X", "PATCH", "-d", r#"{"progress": 1}"#, endpoint]).await;
    assert_eq!(code, 401, "{body}");
    let (code, _) = curl(&["-H", "Authorization: Bearer wrong", endpoint]).await;
    assert_eq!(code, 401);
    let other = endpoint.replace("/task/e1", "/task/nope");
    let (code, body) = curl(&["-H", &auth, &other]).await;
    assert_eq!((code, body.as_str()), (404, "unknown task `nope`\n"));

    let (code, body) = patch(r#"{"progress": "lots"}"#).await;
    assert_eq!(code, 400);
    assert!(
        body.contains("`progress` must be a number from 0 to 100"),
        "{body}"
    );
    let (code, body) = patch(r#"{"env": {"A": 1}}"#).await;
    assert_eq!(code, 400);
    assert!(body.contains("`env.A` must be a string"), "{body}");
    let (code, body) = patch(r#"{"colour": "red"}"#).await;
    assert_eq!(code, 400);
    assert!(body.contains("unknown key `colour`"), "{body}");
    let (code, body) = patch("not json").await;
    assert_eq!(code, 400, "{body}");
    let big = format!(r#"{{"message": "{}"}}"#, "x".repeat(100_000));
    let (code, _) = patch(&big).await;
    assert_eq!(code, 413);

    let (code, body) = patch(r#"{"progress": 7}"#).await;
    assert_eq!((code, body.as_str()), (204, ""));
    let (code, body) = curl(&["-H", &auth, endpoint]).await;
    assert_eq!(code, 200);
    assert_eq!(
        body,
        r#"{"task_id":"e1","exit_code":null,"before_codes":[],"after_codes":[],"progress":7,"message":null}"#
    );

    let mut states = Vec::new();
    while states.last() != Some(&"TASK_RUNNING") || states.len() < 3 {
        states.push(state(&agent.next_update().await));
    }
    assert_eq!(states, ["TASK_STARTING", "TASK_RUNNING", "TASK_RUNNING"]);
    agent.send(fake_agent::kill("e1", Some(Duration::from_millis(100))));
    let last = agent.updates_until_terminal().await;
    assert_eq!(state(last.last().unwrap()), "TASK_KILLED");
    within("run to return", executor).await.unwrap().unwrap();
    let _ = std::fs::remove_dir_all(dir);
}
