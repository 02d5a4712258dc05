//! Size-based rotation of a task's output, with a real task writing through the executor.

mod support;

use mesokit_client::executor::ExecutorConfig;
use mesokit_executor::rotate::LogRotation;
use mesokit_executor::{Settings, launch, run};
use mesokit_proto::helpers::TaskBuilder;
use support::fake_agent::{self, FakeAgent, state, within};

#[tokio::test]
async fn a_chatty_task_rotates_its_stdout_and_keeps_max_files() {
    let dir = std::env::temp_dir().join(format!("mesokit-executor-rotate-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    // 40 lines of 100 bytes, one write each; and a line on stderr.
    let script =
        "i=0; while [ $i -lt 40 ]; do printf '%099d\\n' $i; i=$((i+1)); done; echo oops >&2";
    let agent = FakeAgent::start(fake_agent::subscribed("fw", "r1", &[])).await;
    agent.queue(fake_agent::launch(
        TaskBuilder::new("r", "r1", "S0").shell(script).build(),
    ));
    let mut agent = agent;
    let config = ExecutorConfig::new(
        "fw",
        "r1",
        format!("http://{}/api/v1/executor", agent.endpoint()),
    );
    let mut settings = Settings::default();
    settings.executor_env = launch::process_env();
    settings.sandbox = Some(dir.clone());
    settings.log_rotation = LogRotation {
        max_size: 1000,
        max_files: 2,
    };
    let executor = tokio::spawn(run(config, settings));
    let last = agent.updates_until_terminal().await.pop().unwrap();
    assert_eq!(state(&last), "TASK_FINISHED");
    within("run to return", executor).await.unwrap().unwrap();
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).unwrap_or_default();
    // Lines 0-9, 10-19, 20-29, 30-39: the first file went away.
    assert_eq!(read("stdout").lines().count(), 10);
    assert!(read("stdout").starts_with(&format!("{:099}\n", 30)));
    assert!(read("stdout.1").starts_with(&format!("{:099}\n", 20)));
    assert!(read("stdout.2").starts_with(&format!("{:099}\n", 10)));
    assert!(!dir.join("stdout.3").exists());
    assert_eq!(read("stderr"), "oops\n");
    let _ = std::fs::remove_dir_all(dir);
}
