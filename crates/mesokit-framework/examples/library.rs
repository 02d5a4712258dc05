//! Writing a framework with the library instead of a YAML file: a job built in Rust, driven
//! against a Mesos master, with its task events and a runtime scale-up.
//!
//! ```text
//! mesokit local &                                  # or any Mesos master
//! cargo run -p mesokit-framework --example library -- http://127.0.0.1:5050
//! ```

use std::time::Duration;

use mesokit_framework::core::{Config, Scheduler, TaskEventKind};
use mesokit_framework::driver::{Driver, DriverConfig, DriverEvent, Outcome};
use mesokit_framework::spec::{ConstraintOp, GroupSpec, JobKind, JobSpec, RestartPolicy};
use mesokit_framework::store::MemoryStore;
use tokio::sync::mpsc;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let master = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "http://127.0.0.1:5050".into());
    let job = JobSpec::new("library-demo", JobKind::Batch).group(
        GroupSpec::new("square", 4, "echo $((MESOKIT_INSTANCE * MESOKIT_INSTANCE))")
            .resources(0.1, 32.0)
            .restart(RestartPolicy {
                max_restarts: Some(1),
                ..RestartPolicy::batch_default()
            })
            .constraint("hostname", ConstraintOp::MaxPer(4)),
    );
    job.validate()?;

    let (tx, mut events) = mpsc::unbounded_channel();
    let driver = Driver::new(
        Scheduler::new(job, Config::default()),
        MemoryStore::new(),
        DriverConfig::new(vec![master]),
        tx,
    )
    .await?;
    let handle = driver.handle();
    let run = tokio::spawn(driver.run());

    // Two more instances once the first task runs: the same engine `mesokit run` uses.
    let mut scaled = false;
    while let Some(ev) = events.recv().await {
        match ev {
            DriverEvent::Task(t) => {
                println!("{}: {:?}", t.task_id, t.kind);
                if t.kind == TaskEventKind::Running && !scaled {
                    handle.scale("square", 6)?;
                    scaled = true;
                }
            }
            DriverEvent::Connected { framework_id, .. } => println!("subscribed as {framework_id}"),
            other => println!("{other:?}"),
        }
    }
    let outcome = tokio::time::timeout(Duration::from_secs(5), run).await???;
    println!("outcome: {outcome:?}");
    std::process::exit(if outcome == Outcome::Succeeded { 0 } else { 1 });
}
