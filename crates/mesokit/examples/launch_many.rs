//! A minimal scheduler that launches many short command tasks and reports how fast they went
//! through a cluster: the driver of `bench/local_tasks.sh`.
//!
//! `launch_many MASTER_URL [TASKS] [COMMAND]` (defaults: 1000 tasks of `true`). Each task asks
//! for 0.1 cpu and 16 MB; offers are packed; every update is acknowledged. Prints one line:
//! `launch_many tasks=N finished=F failed=X secs=S tasks_per_s=R`.

use std::time::{Duration, Instant};

use mesokit_client::scheduler::{SchedulerClient, SchedulerConfig, SchedulerEvent};
use mesokit_proto::helpers::{TaskBuilder, is_terminal_value};
use mesokit_proto::v1::{self, Filters, FrameworkInfo};

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let master = args
        .get(1)
        .cloned()
        .unwrap_or_else(|| "http://127.0.0.1:5050".into());
    let total: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(1000);
    let command = args.get(3).cloned().unwrap_or_else(|| "true".into());

    let info = FrameworkInfo {
        user: "root".into(),
        name: "launch_many".into(),
        failover_timeout: Some(0.0),
        ..Default::default()
    };
    let (client, mut events) =
        SchedulerClient::start(SchedulerConfig::new([master.clone()], info)).expect("client");
    let (mut launched, mut finished, mut failed) = (0usize, 0usize, 0usize);
    let mut start: Option<Instant> = None;
    let deadline = Instant::now() + Duration::from_secs(600);
    while finished + failed < total && Instant::now() < deadline {
        let ev = match tokio::time::timeout(Duration::from_secs(30), events.next_event()).await {
            Ok(Ok(SchedulerEvent::Event(ev))) => ev,
            Ok(Ok(SchedulerEvent::Connected { .. } | SchedulerEvent::Disconnected { .. })) => {
                continue;
            }
            Ok(Ok(_)) => continue,
            Ok(Err(e)) => panic!("scheduler session ended: {e}"),
            Err(_) => panic!("no event for 30 s ({finished} finished, {failed} failed)"),
        };
        if let Some(offers) = &ev.offers {
            for offer in &offers.offers {
                let scalar = |name: &str| -> f64 {
                    offer
                        .resources
                        .iter()
                        .filter(|r| r.name == name)
                        .filter_map(|r| r.scalar.as_ref().map(|s| s.value))
                        .sum()
                };
                let (mut cpus, mut mem) = (scalar("cpus"), scalar("mem"));
                let mut tasks = Vec::new();
                while launched < total && cpus >= 0.1 - 1e-9 && mem >= 16.0 {
                    let id = format!("t{launched}");
                    tasks.push(
                        TaskBuilder::new(&id, &id, &offer.agent_id.value)
                            .cpus(0.1)
                            .mem(16.0)
                            .shell(&command)
                            .build(),
                    );
                    launched += 1;
                    cpus -= 0.1;
                    mem -= 16.0;
                }
                let filters = Some(Filters {
                    refuse_seconds: Some(0.0),
                });
                if tasks.is_empty() {
                    let _ = client.decline(vec![offer.id.clone()], filters).await;
                } else {
                    start.get_or_insert_with(Instant::now);
                    client
                        .launch(vec![offer.id.clone()], tasks, filters)
                        .await
                        .expect("launch");
                }
            }
        }
        if let Some(update) = &ev.update {
            let s = &update.status;
            if is_terminal_value(s.state) {
                if s.state == v1::TaskState::TaskFinished as i32 {
                    finished += 1;
                } else {
                    failed += 1;
                    eprintln!(
                        "{}: {:?} {}",
                        s.task_id.value,
                        s.state,
                        s.message.clone().unwrap_or_default()
                    );
                }
            }
            let _ = client.acknowledge(s).await;
        }
    }
    let secs = start.map_or(0.0, |s| s.elapsed().as_secs_f64());
    println!(
        "launch_many tasks={total} finished={finished} failed={failed} secs={secs:.3} tasks_per_s={:.1}",
        (finished + failed) as f64 / secs.max(1e-9)
    );
    let _ = client.teardown().await;
}
