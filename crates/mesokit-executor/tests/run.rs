//! [`mesokit_executor::run`] in-process against the fake agent: the driver, the supervisor,
//! the client and real task processes together, without the CLI around them.

mod support;

use std::path::PathBuf;
use std::time::Duration;

use mesokit_client::executor::ExecutorConfig;
use mesokit_executor::{Error, Settings, launch, run};
use mesokit_proto::helpers::TaskBuilder;
use support::fake_agent::{self, FakeAgent, state, within};

fn sandbox(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "mesokit-executor-run-{}-{name}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// An agent with `script` queued as task `id`, and the executor running against it.
async fn start(
    id: &str,
    script: &str,
    dir: &std::path::Path,
) -> (FakeAgent, tokio::task::JoinHandle<Result<(), Error>>) {
    let agent = FakeAgent::start(fake_agent::subscribed("fw", id, &[])).await;
    agent.queue(fake_agent::launch(
        TaskBuilder::new(id, id, "S0").shell(script).build(),
    ));
    let config = ExecutorConfig::new(
        "fw",
        id,
        format!("http://{}/api/v1/executor", agent.endpoint()),
    );
    let mut settings = Settings::default();
    settings.executor_env = launch::process_env();
    settings.sandbox = Some(dir.to_owned());
    (agent, tokio::spawn(run(config, settings)))
}

#[tokio::test]
async fn runs_a_task_to_the_end_and_returns() {
    let dir = sandbox("finish");
    let (mut agent, executor) = start("t1", "echo hello > out", &dir).await;
    let updates = agent.updates_until_terminal().await;
    let states: Vec<_> = updates.iter().map(state).collect();
    assert_eq!(states, ["TASK_STARTING", "TASK_RUNNING", "TASK_FINISHED"]);
    within("run to return", executor).await.unwrap().unwrap();
    assert_eq!(
        std::fs::read_to_string(dir.join("out")).unwrap(),
        "hello\n",
        "ran in the sandbox"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn a_kill_with_a_short_policy_escalates_and_returns() {
    let dir = sandbox("kill");
    let (mut agent, executor) =
        start("t2", "trap '' TERM; echo $$ > pid; sleep 30; true", &dir).await;
    assert_eq!(state(&agent.next_update().await), "TASK_STARTING");
    assert_eq!(state(&agent.next_update().await), "TASK_RUNNING");
    within("the task's setup", async {
        while !std::fs::read_to_string(dir.join("pid")).is_ok_and(|s| s.ends_with('\n')) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    agent.send(fake_agent::kill("t2", Some(Duration::from_millis(100))));
    let updates = agent.updates_until_terminal().await;
    assert_eq!(updates.len(), 1);
    assert_eq!(state(&updates[0]), "TASK_KILLED");
    assert_eq!(
        updates[0].message.as_deref(),
        Some("Command terminated with signal Killed")
    );
    within("run to return", executor).await.unwrap().unwrap();
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn losing_the_agent_is_an_error_after_the_task_is_killed() {
    let dir = sandbox("lost");
    let (mut agent, executor) = start("t3", "exec sleep 30", &dir).await;
    assert_eq!(state(&agent.next_update().await), "TASK_STARTING");
    assert_eq!(state(&agent.next_update().await), "TASK_RUNNING");
    agent.close_stream();
    let result = within("run to return", executor).await.unwrap();
    assert!(matches!(result, Err(Error::AgentLost(_))), "{result:?}");
    let _ = std::fs::remove_dir_all(dir);
}
