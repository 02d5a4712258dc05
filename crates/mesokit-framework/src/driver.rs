//! Runs the scheduler core against a Mesos master: the scheduler client brings events, a
//! timer brings time, a [`Handle`] brings operator commands; the core's outputs are carried
//! out one after another (store writes awaited before the calls that follow them).

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use mesokit_client::scheduler::{SchedulerClient, SchedulerConfig, SchedulerEvent};
use mesokit_client::{ContentType, Error as ClientError};
use mesokit_proto::v1::scheduler::call;
use tokio::sync::{Notify, mpsc, watch};

use crate::core::{Output, Scheduler, TaskEvent};
use crate::store::{Store, StoreError};

/// How to reach Mesos.
#[derive(Debug, Clone)]
pub struct DriverConfig {
    /// Master URLs (`http://host:5050`), tried in order.
    pub masters: Vec<String>,
    /// JSON or protobuf on the wire.
    pub content_type: ContentType,
    /// How long a stop waits for killed tasks to report before TEARDOWN.
    pub stop_timeout: Duration,
    /// Retry interval for a store that is unavailable.
    pub store_retry: Duration,
    /// When set, the master list can change while running (ZooKeeper master detection): on a
    /// change the driver drops its connection and subscribes to the new list.
    pub master_updates: Option<watch::Receiver<Vec<String>>>,
}

impl DriverConfig {
    /// Defaults for the given masters.
    pub fn new(masters: Vec<String>) -> Self {
        DriverConfig {
            masters,
            content_type: ContentType::Protobuf,
            stop_timeout: Duration::from_secs(30),
            store_retry: Duration::from_millis(500),
            master_updates: None,
        }
    }
}

/// What the driver tells its user, besides the core's task events.
#[derive(Debug, Clone, PartialEq)]
pub enum DriverEvent {
    /// Subscribed (again).
    Connected {
        /// Framework id.
        framework_id: String,
        /// Master URL.
        master: String,
    },
    /// Lost the master; the client reconnects.
    Disconnected {
        /// Why.
        reason: String,
    },
    /// A task changed.
    Task(TaskEvent),
    /// Something worth a log line (restore problems, call errors, store retries).
    Warning(String),
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Batch job: every instance finished.
    Succeeded,
    /// Batch job: some instance failed for good.
    Failed,
    /// Stopped on request (service or batch).
    Stopped,
}

/// Why the driver stopped without an outcome.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    /// The master refused or ended the subscription for good.
    #[error("Mesos ended the subscription: {0}")]
    Client(#[from] ClientError),
    /// The store failed in a way retrying does not fix.
    #[error("state store: {0}")]
    Store(#[from] StoreError),
}

/// Shared access to a running scheduler: read its state, send commands.
#[derive(Debug, Clone)]
pub struct Handle {
    core: Arc<Mutex<Scheduler>>,
    wake: Arc<Notify>,
}

impl Handle {
    /// Reads the core's state (counts, records, metrics).
    pub fn read<T>(&self, f: impl FnOnce(&Scheduler) -> T) -> T {
        f(&self.lock())
    }

    fn lock(&self) -> MutexGuard<'_, Scheduler> {
        self.core.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn command(&self, f: impl FnOnce(&mut Scheduler) -> Result<(), String>) -> Result<(), String> {
        let r = f(&mut self.lock());
        self.wake.notify_one();
        r
    }

    /// Sets a group's instance count.
    pub fn scale(&self, group: &str, instances: u32) -> Result<(), String> {
        self.command(|s| s.scale(group, instances, Instant::now()))
    }

    /// Rolling restart of a group.
    pub fn restart(&self, group: &str) -> Result<(), String> {
        self.command(|s| s.rolling_restart(group, Instant::now()))
    }

    /// Kills one task (the restart policy decides what follows).
    pub fn kill(&self, task_id: &str) -> Result<(), String> {
        self.command(|s| s.kill_task(task_id))
    }

    /// Stops the job: kill everything, then TEARDOWN.
    pub fn stop(&self) {
        let _ = self.command(|s| {
            s.stop();
            Ok(())
        });
    }
}

/// A scheduler ready to run.
#[derive(Debug)]
pub struct Driver<S: Store> {
    handle: Handle,
    store: S,
    config: DriverConfig,
    events: mpsc::UnboundedSender<DriverEvent>,
}

impl<S: Store> Driver<S> {
    /// Loads the store into `core` and prepares the run. Task and driver events go to `events`.
    pub async fn new(
        mut core: Scheduler,
        store: S,
        config: DriverConfig,
        events: mpsc::UnboundedSender<DriverEvent>,
    ) -> Result<Self, DriverError> {
        let stored = store.load().await?;
        for w in core.restore(stored) {
            let _ = events.send(DriverEvent::Warning(w));
        }
        Ok(Driver {
            handle: Handle {
                core: Arc::new(Mutex::new(core)),
                wake: Arc::new(Notify::new()),
            },
            store,
            config,
            events,
        })
    }

    /// A handle for commands and reads; usable while [`Driver::run`] runs.
    pub fn handle(&self) -> Handle {
        self.handle.clone()
    }

    /// Runs until a batch job ends, a stop completes, or Mesos ends the subscription.
    pub async fn run(mut self) -> Result<Outcome, DriverError> {
        let mut master_updates = self.config.master_updates.take();
        let (mut client, mut stream) = self.connect(self.config.masters.clone())?;
        let mut stop_deadline: Option<tokio::time::Instant> = None;
        loop {
            self.flush(&client).await?;
            let (finished, stopping_since, next) = self
                .handle
                .read(|s| (s.is_finished(), s.is_stopping(), s.next_timeout()));
            if finished {
                let outcome = self.handle.read(|s| {
                    if s.is_stopping() {
                        Outcome::Stopped
                    } else if s.succeeded() {
                        Outcome::Succeeded
                    } else {
                        Outcome::Failed
                    }
                });
                self.handle.lock().teardown();
                self.flush(&client).await?;
                return Ok(outcome);
            }
            if stopping_since && stop_deadline.is_none() {
                stop_deadline = Some(tokio::time::Instant::now() + self.config.stop_timeout);
            }
            if let Some(d) = stop_deadline
                && tokio::time::Instant::now() >= d
            {
                let _ = self.events.send(DriverEvent::Warning(
                    "stop timed out waiting for tasks to end; tearing down".into(),
                ));
                self.handle.lock().teardown();
                self.flush(&client).await?;
                return Ok(Outcome::Stopped);
            }
            let sleep_until = next
                .map(tokio::time::Instant::from_std)
                .into_iter()
                .chain(stop_deadline)
                .min();
            tokio::select! {
                ev = stream.next_event() => {
                    let now = Instant::now();
                    match ev? {
                        SchedulerEvent::Connected { framework_id, master, .. } => {
                            let _ = self.events.send(DriverEvent::Connected {
                                framework_id: framework_id.value.clone(),
                                master,
                            });
                            self.handle.lock().on_subscribed(&framework_id, now);
                        }
                        SchedulerEvent::Event(e) => self.handle.lock().on_event(*e, now),
                        SchedulerEvent::Disconnected { reason } => {
                            let _ = self.events.send(DriverEvent::Disconnected {
                                reason: reason.to_string(),
                            });
                            self.handle.lock().on_disconnected();
                        }
                        _ => {}
                    }
                }
                _ = self.handle.wake.notified() => {}
                changed = async {
                    match master_updates.as_mut() {
                        Some(rx) => rx.changed().await.map(|()| rx.borrow_and_update().clone()),
                        None => std::future::pending().await,
                    }
                } => {
                    match changed {
                        Ok(masters) if !masters.is_empty() && masters != self.config.masters => {
                            let _ = self.events.send(DriverEvent::Disconnected {
                                reason: format!("leading master changed to {}", masters.join(", ")),
                            });
                            self.handle.lock().on_disconnected();
                            drop(stream);
                            self.config.masters = masters;
                            (client, stream) = self.connect(self.config.masters.clone())?;
                        }
                        Ok(_) => {}
                        // The detector is gone: keep the current master list.
                        Err(_) => master_updates = None,
                    }
                }
                _ = async {
                    match sleep_until {
                        Some(t) => tokio::time::sleep_until(t).await,
                        None => std::future::pending().await,
                    }
                } => {
                    self.handle.lock().tick(Instant::now());
                }
            }
        }
    }

    /// A scheduler client subscribing to `masters` with the core's current FrameworkInfo
    /// (which carries the framework id once known, so a new connection is a failover).
    fn connect(
        &self,
        masters: Vec<String>,
    ) -> Result<(SchedulerClient, mesokit_client::scheduler::EventStream), DriverError> {
        let framework_info = self.handle.read(|s| s.framework_info());
        let mut cfg = SchedulerConfig::new(masters, framework_info);
        cfg.content_type = self.config.content_type;
        Ok(SchedulerClient::start(cfg)?)
    }

    /// Carries out the core's outputs. Everything queued is taken at once: its store writes
    /// are applied as one batch (in order) before any of its calls is sent, which keeps the
    /// core's rule (a write before the calls that follow it) and turns a burst of updates
    /// (100k reconciliation answers after a failover) into one durable commit instead of one
    /// per update.
    async fn flush(&self, client: &SchedulerClient) -> Result<(), DriverError> {
        loop {
            let (batch, warnings) = {
                let mut core = self.handle.lock();
                let batch: Vec<Output> = std::iter::from_fn(|| core.poll_output()).collect();
                (batch, core.take_warnings())
            };
            for w in warnings {
                let _ = self.events.send(DriverEvent::Warning(w));
            }
            if batch.is_empty() {
                return Ok(());
            }
            let mut writes = Vec::new();
            let mut calls = Vec::new();
            let mut events = Vec::new();
            for out in batch {
                match out {
                    Output::Persist(w) => writes.extend(w),
                    Output::Call(c) => calls.push(c),
                    Output::Event(e) => events.push(e),
                }
            }
            if !writes.is_empty() {
                self.persist(writes).await?;
            }
            for call in calls {
                let teardown = call.r#type == Some(call::Type::Teardown as i32);
                // TEARDOWN through the client's own method, which expects the stream to end.
                let sent = if teardown {
                    client.teardown().await
                } else {
                    client.call(*call).await
                };
                if let Err(e) = sent {
                    // Lost calls are recovered by design: offers expire, kills and acks
                    // are repeated through reconciliation after the next SUBSCRIBED.
                    let _ = self
                        .events
                        .send(DriverEvent::Warning(format!("call failed: {e}")));
                }
            }
            for e in events {
                let _ = self.events.send(DriverEvent::Task(e));
            }
        }
    }

    async fn persist(&self, writes: Vec<crate::store::Write>) -> Result<(), DriverError> {
        let mut warned = false;
        loop {
            match self.store.apply(writes.clone()).await {
                Ok(()) => return Ok(()),
                Err(StoreError::Unavailable(e)) => {
                    if !warned {
                        let _ = self.events.send(DriverEvent::Warning(format!(
                            "store unavailable ({e}); retrying, nothing is acknowledged meanwhile"
                        )));
                        warned = true;
                    }
                    tokio::time::sleep(self.config.store_retry).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
}
