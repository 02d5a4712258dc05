//! `mesokit executor` under `mesokit local`, driven by a framework: before/after commands and
//! the task HTTP API reach the scheduler (progress as TASK_RUNNING with JSON data, env set by
//! a before command, a failing guarded after command).

use std::collections::BTreeMap;
use std::time::Duration;

use mesokit_client::scheduler::{SchedulerClient, SchedulerConfig, SchedulerEvent};
use mesokit_local::cluster::{ClusterConfig, LocalCluster};
use mesokit_proto::helpers::{TaskBuilder, is_terminal_value};
use mesokit_proto::v1::{FrameworkInfo, TaskState, offer};

type Seen = Vec<(&'static str, Option<String>, Option<String>)>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn before_after_commands_and_progress_through_a_local_cluster() {
    let cluster = LocalCluster::start(ClusterConfig::for_tests(vec![
        env!("CARGO_BIN_EXE_mesokit").into(),
        "executor".into(),
    ]))
    .await
    .expect("cluster starts");
    let info = FrameworkInfo {
        user: "root".into(),
        name: "executor-api-local".into(),
        ..Default::default()
    };
    let (client, mut events) =
        SchedulerClient::start(SchedulerConfig::new([cluster.master_url()], info)).expect("client");

    let patch = r#"[{"value": "curl -fsS -X PATCH -H \"Authorization: Bearer $EXECUTOR_TOKEN\" -d '{\"progress\": 50, \"message\": \"set up\", \"env\": {\"FROM_BEFORE\": \"yes\"}}' \"$EXECUTOR_ENDPOINT\""}]"#;
    let mut launched = false;
    let mut seen: BTreeMap<String, Seen> = BTreeMap::new();
    let outcome = tokio::time::timeout(Duration::from_secs(60), async {
        while seen
            .values()
            .filter(|s| {
                s.last().is_some_and(|(st, _, _)| {
                    TaskState::from_str_name(st).is_some_and(|s| is_terminal_value(s as i32))
                })
            })
            .count()
            < 2
        {
            let SchedulerEvent::Event(ev) = events.next_event().await.expect("session") else {
                continue;
            };
            if let (Some(offers), false) = (&ev.offers, launched) {
                let o = &offers.offers[0];
                let agent = o.agent_id.value.as_str();
                let ok = TaskBuilder::new("ok", "ok", agent)
                    .cpus(0.1)
                    .mem(16.0)
                    .shell(r#"test "$FROM_BEFORE" = yes || exit 7"#)
                    .label("before_commands", patch)
                    .build();
                let guarded = TaskBuilder::new("guarded", "guarded", agent)
                    .cpus(0.1)
                    .mem(16.0)
                    .shell("true")
                    .label(
                        "after_commands",
                        r#"[{"value": "exit 5", "guard": true}, {"value": "true"}]"#,
                    )
                    .build();
                let op = offer::Operation {
                    r#type: Some(offer::operation::Type::Launch as i32),
                    launch: Some(offer::operation::Launch {
                        task_infos: vec![ok, guarded],
                    }),
                    ..Default::default()
                };
                client
                    .accept(vec![o.id.clone()], vec![op], None)
                    .await
                    .expect("accept");
                launched = true;
            }
            if let Some(u) = &ev.update {
                let s = &u.status;
                client.acknowledge(s).await.expect("ack");
                let state = TaskState::try_from(s.state).map_or("UNKNOWN", |s| s.as_str_name());
                let data = s
                    .data
                    .as_ref()
                    .map(|d| String::from_utf8_lossy(d).into_owned());
                seen.entry(s.task_id.value.clone()).or_default().push((
                    state,
                    s.message.clone(),
                    data,
                ));
            }
        }
    })
    .await;
    let _ = client.teardown().await;
    cluster.shutdown().await;
    outcome.unwrap_or_else(|_| panic!("tasks did not end within 60 s: {seen:#?}"));

    assert_eq!(
        seen["ok"],
        [
            ("TASK_STARTING", None, None),
            ("TASK_RUNNING", None, None),
            (
                "TASK_RUNNING",
                Some("set up".to_owned()),
                Some(r#"{"progress":50,"message":"set up"}"#.to_owned())
            ),
            (
                "TASK_FINISHED",
                Some("Command exited with status 0".to_owned()),
                None
            ),
        ],
        "{seen:#?}"
    );
    assert_eq!(
        seen["guarded"].last().unwrap(),
        &(
            "TASK_FAILED",
            Some(
                "after command 1 (`exit 5`) exited with status 5; later commands did not run"
                    .to_owned()
            ),
            None
        ),
        "{seen:#?}"
    );
}
