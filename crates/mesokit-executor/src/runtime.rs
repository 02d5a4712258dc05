//! The async driver: subscribes to the agent, feeds the [`Supervisor`] with events, process
//! exits, timers and the executor's own SIGTERM/SIGINT, and carries out its actions.

use std::collections::HashMap;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use mesokit_client::executor::{ExecutorClient, ExecutorConfig, ExecutorEvent};
use mesokit_proto::v1::executor::event::Type as EventType;
use mesokit_proto::v1::{TaskId, TaskStatus};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;

use crate::api::TaskApi;
use crate::process::{self, Signal};
use crate::sequence::{self, End};
use crate::supervisor::{Action, ProbeKind, ProbeResult, Settings, Supervisor};

/// How long the last updates may take to leave once the executor is done.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(1);

/// How long the loop must have had nothing to do before the code pages it ran are dropped
/// again (see [`process::trim_code_pages`]): long enough that a burst of events pays for
/// the page faults once, not per event.
const IDLE_TRIM: Duration = Duration::from_secs(1);

/// How long after a launch the next task directory is made ahead: TASK_RUNNING and its
/// forwarding have the CPUs first.
const SPARE_DELAY: Duration = Duration::from_millis(20);

/// Why the executor stopped before its work was done.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The client could not start (bad agent URL, no runtime).
    #[error("cannot start the executor client: {0}")]
    Client(#[source] mesokit_client::Error),
    /// The executor could not watch its own signals.
    #[error("cannot install the SIGTERM/SIGINT handlers: {0}")]
    Signals(#[source] io::Error),
    /// The connection to the agent ended for good (without checkpointing, any disconnection;
    /// with it, the recovery timeout). The tasks were killed.
    #[error("lost the agent, tasks killed: {0}")]
    AgentLost(#[source] mesokit_client::Error),
}

impl Settings {
    /// Settings for an executor started by an agent, owning its process: the process
    /// environment ([`crate::launch::process_env`]), the sandbox
    /// and shutdown grace period of `config`, Mesos's default kill grace and a 5 s wait for
    /// acknowledgements.
    pub fn from_config(config: &ExecutorConfig) -> Self {
        Settings {
            executor_env: crate::launch::process_env(),
            sandbox: config.sandbox.clone().or_else(|| config.directory.clone()),
            shutdown_grace: config.shutdown_grace_period,
            own_process: true,
            ..Settings::default()
        }
    }
}

/// Runs the executor until it is done: subscribe, run the tasks the agent sends, report
/// their states, kill them on KILL or SHUTDOWN, and return once every task has ended and its
/// terminal update is acknowledged (or `settings.ack_timeout` passed).
///
/// Must run within a Tokio runtime with IO and time enabled; a current-thread runtime is
/// enough. A SIGTERM or SIGINT to the process kills the tasks as a SHUTDOWN does. With
/// [`Settings::own_process`], the process also becomes the subreaper of the tasks' processes
/// ([`process::become_subreaper`]), whose leftovers are killed before returning.
pub async fn run(config: ExecutorConfig, settings: Settings) -> Result<(), Error> {
    let mut sigterm = signal(SignalKind::terminate()).map_err(Error::Signals)?;
    let mut sigint = signal(SignalKind::interrupt()).map_err(Error::Signals)?;
    let own_process = settings.own_process;
    if own_process && let Err(e) = process::become_subreaper() {
        tracing::warn!(error = %e, "cannot become a subreaper: daemons of tasks may escape kills");
    }
    let (client, mut events) = ExecutorClient::start(config).map_err(Error::Client)?;
    let (api, mut progress_rx) = if settings.task_api {
        match TaskApi::start(settings.max_message_length).await {
            Ok((api, rx)) => {
                tracing::info!(addr = %api.addr(), "task API listening");
                (Some(api), Some(rx))
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot start the task API: tasks run without it");
                (None, None)
            }
        }
    } else {
        (None, None)
    };
    // Progress found by the progress regex of a task takes the API's way when there is one;
    // without, this channel takes it to the supervisor.
    let direct_progress = if progress_rx.is_none() {
        let (tx, rx) = mpsc::unbounded_channel();
        progress_rx = Some(rx);
        Some(tx)
    } else {
        None
    };
    // Built on first use of each hook: costs nothing for an executor without hooks.
    let chain = {
        let dir = settings.sandbox.clone().unwrap_or_else(std::env::temp_dir);
        let mut hook_settings =
            mesokit_hooks::builtin::Settings::new(settings.executor_env.clone());
        hook_settings.runner = mesokit_hooks::Runner::new(dir);
        hook_settings.timeout = settings.hook_timeout;
        mesokit_hooks::builtin::Chain::new(hook_settings)
    };
    let (hooks_tx, mut hooks_rx) = mpsc::unbounded_channel();
    let (rotation, sandbox) = (settings.log_rotation, settings.sandbox.clone());
    let mut sup = Supervisor::new(settings);

    let (exit_tx, mut exit_rx) = mpsc::unbounded_channel::<(TaskId, End)>();
    let (update_tx, update_rx) = mpsc::unbounded_channel::<TaskStatus>();
    let (probe_tx, mut probe_rx) = mpsc::unbounded_channel::<(TaskId, ProbeResult)>();
    // Updates handed to the sender that the client has not recorded yet.
    let queued = Arc::new(AtomicUsize::new(0));
    let sender = tokio::spawn(send_updates(client.clone(), update_rx, queued.clone()));
    let mut procs: HashMap<String, mpsc::UnboundedSender<Signal>> = HashMap::new();
    let mut stream_open = true;
    // Code pages are dropped once the first task runs and its updates are acknowledged, then
    // whenever the loop has been idle for IDLE_TRIM.
    let mut trimmed = false;
    let mut trim_at: Option<Instant> = None;
    let mut lost = None;
    // When to make the next task directory ahead (see process::prepare_task_dir): a little
    // after a launch that used one, once TASK_RUNNING is on its way.
    let mut spare_at: Option<Instant> = None;
    // An update was handed to the sender since the loop last yielded.
    let mut unsent = false;

    loop {
        while let Some(action) = sup.poll_action() {
            match action {
                Action::Update(status) => {
                    tracing::info!(
                        task_id = %status.task_id.value,
                        state = state_name(status.state),
                        text = status.message.as_deref().unwrap_or(""),
                        "status update"
                    );
                    queued.fetch_add(1, Ordering::Relaxed);
                    let _ = update_tx.send(*status);
                    unsent = true;
                }
                Action::Launch {
                    task_id,
                    mut command,
                    plan,
                    progress,
                } => {
                    if std::mem::take(&mut unsent) {
                        // Starting a process blocks this thread until its exec: let the
                        // sender write TASK_STARTING first, so that the agent forwards it
                        // (and the scheduler acknowledges it) while the process starts.
                        tokio::task::yield_now().await;
                    }
                    if let Some(api) = &api {
                        let vars = api.register(&task_id, plan.before.len(), plan.after.len());
                        for (k, v) in vars {
                            crate::launch::set(&mut command.env, &k, &v);
                        }
                    }
                    let sinks = if rotation.enabled() {
                        sequence::pipe_outputs(&mut command, sandbox.as_deref(), rotation)
                    } else {
                        sequence::Sinks::default()
                    };
                    if command.create_cwd && sandbox.is_some() {
                        spare_at = Some(Instant::now() + SPARE_DELAY);
                    }
                    let mut steps = sequence::steps(*command, &plan);
                    // Events wait until the task has started, as the thread is held by
                    // the clone until the exec anyway.
                    let result = sequence::start_first(&task_id, &mut steps, api.as_ref(), &sinks)
                        .await
                        .map(|child| {
                            let (tx, rx) = mpsc::unbounded_channel();
                            procs.insert(task_id.value.clone(), tx);
                            let exit_tx = match progress {
                                // The end goes through the tracker, which reports the last
                                // progress first.
                                Some(tracking) => track(
                                    &task_id,
                                    *tracking,
                                    api.clone(),
                                    direct_progress.clone(),
                                    exit_tx.clone(),
                                ),
                                None => exit_tx.clone(),
                            };
                            let run = sequence::drive(
                                task_id.clone(),
                                steps,
                                child,
                                api.clone(),
                                sinks,
                                rx,
                                exit_tx,
                            );
                            tokio::spawn(run);
                        });
                    sup.handle_spawned(&task_id, result, Instant::now());
                }
                Action::Hooks {
                    task_id,
                    event,
                    names,
                    task,
                } => {
                    // Off the loop: each hook may take its whole timeout.
                    let chain = chain.clone();
                    let tx = hooks_tx.clone();
                    tokio::spawn(async move {
                        let result = chain.run(&names, event, &task).await;
                        let _ = tx.send((task_id, event, result));
                    });
                }
                Action::Probe {
                    task_id,
                    kind,
                    probe,
                    timeout,
                } => {
                    // Off the loop: a probe may take its whole timeout.
                    let tx = probe_tx.clone();
                    tokio::spawn(async move {
                        let result = match kind {
                            ProbeKind::Health => ProbeResult::Health(probe.health(timeout).await),
                            ProbeKind::Check => ProbeResult::Check(probe.check(timeout).await),
                        };
                        let _ = tx.send((task_id, result));
                    });
                }
                Action::Signal { task_id, signal } => {
                    if let Some(tx) = procs.get(&task_id.value) {
                        tracing::info!(task_id = %task_id.value, %signal, "signalling the process tree");
                        let _ = tx.send(signal);
                    }
                }
            }
        }
        if sup.is_finished() {
            break;
        }
        let timeout = sup.poll_timeout();
        unsent = false;
        let mut idle = false;
        tokio::select! {
            event = events.next_event(), if stream_open => match event {
                Ok(ExecutorEvent::Connected { subscribed }) => {
                    sup.handle_subscribed(&subscribed);
                    // A default executor runs task groups, each task in a directory of its
                    // own: have the first one ready.
                    if subscribed.executor_info.r#type
                        == Some(mesokit_proto::v1::executor_info::Type::Default as i32)
                    {
                        spare_at = Some(Instant::now());
                    }
                }
                Ok(ExecutorEvent::Event(event)) => {
                    sup.handle_event(&event, Instant::now());
                    if !trimmed
                        && own_process
                        && !procs.is_empty()
                        && event.r#type == Some(EventType::Acknowledged as i32)
                        && queued.load(Ordering::Relaxed) == 0
                        && client.unacknowledged_updates().is_empty()
                    {
                        // Start-up and the first launch are over: their code need not stay
                        // resident while the tasks run.
                        trimmed = true;
                        process::trim_memory();
                    }
                }
                Ok(ExecutorEvent::Disconnected { reason }) => {
                    tracing::warn!(error = %reason, "disconnected from the agent; re-subscribing");
                }
                Ok(other) => tracing::debug!(event = ?other, "ignored"),
                Err(mesokit_client::Error::Closed) if sup.is_shutting_down() => {
                    stream_open = false;
                    tracing::info!("the agent closed the connection after SHUTDOWN");
                }
                Err(e) => {
                    stream_open = false;
                    tracing::error!(error = %e, "lost the agent: killing the tasks");
                    sup.agent_lost(Instant::now());
                    lost = Some(e);
                }
            },
            Some((task_id, end)) = exit_rx.recv() => {
                procs.remove(&task_id.value);
                // Progress reported before the end (by a PATCH or the task's last lines) goes
                // out before the terminal update.
                while let Some(Ok(change)) =
                    progress_rx.as_mut().map(mpsc::UnboundedReceiver::try_recv)
                {
                    let crate::api::Progress { task_id, progress, message } = change;
                    sup.handle_progress(&task_id, progress, message, Instant::now());
                }
                match end {
                    End::Main(Ok(how)) => sup.handle_exit(&task_id, how, Instant::now()),
                    End::Main(Err(e)) => {
                        tracing::error!(task_id = %task_id.value, error = %e, "cannot wait for the task");
                        sup.handle_wait_error(&task_id, &e.to_string(), Instant::now());
                    }
                    End::Failed(message) => {
                        sup.handle_sequence_failed(&task_id, message, Instant::now());
                    }
                }
            }
            Some(change) = recv(&mut progress_rx) => {
                let crate::api::Progress { task_id, progress, message } = change;
                sup.handle_progress(&task_id, progress, message, Instant::now());
            }
            Some((task_id, event, result)) = hooks_rx.recv() => {
                sup.handle_hooks_done(&task_id, event, result, Instant::now());
            }
            Some((task_id, result)) = probe_rx.recv() => {
                sup.handle_probe_result(&task_id, result, Instant::now());
            }
            () = sleep_until(timeout), if timeout.is_some() => sup.handle_timeout(Instant::now()),
            () = sleep_until(spare_at), if spare_at.is_some() => {
                spare_at = None;
                if let Some(sandbox) = &sandbox
                    && let Err(e) = process::prepare_task_dir(&crate::launch::tasks_dir(sandbox))
                {
                    tracing::debug!(error = %e, "cannot make a task directory ahead");
                }
            }
            () = sleep_until(trim_at), if trim_at.is_some() => {
                idle = true;
                process::trim_memory();
            }
            _ = sigterm.recv() => {
                tracing::info!("SIGTERM: shutting down");
                sup.shutdown(Instant::now());
            }
            _ = sigint.recv() => {
                tracing::info!("SIGINT: shutting down");
                sup.shutdown(Instant::now());
            }
        }
        trim_at = (trimmed && !idle).then(|| Instant::now() + IDLE_TRIM);
    }

    process::remove_spare_task_dir();
    // Daemons that double-forked out of their task were re-parented to us: they go too.
    let orphans = if own_process {
        process::kill_orphans(&[])
    } else {
        0
    };
    if orphans > 0 {
        tracing::info!(
            processes = orphans,
            "killed processes the tasks left behind"
        );
    }
    tracing::info!("all tasks done; exiting");
    // Let the last updates out: they are acknowledged already, unless the agent is gone or
    // not answering, and then there is no point in waiting long.
    drop(update_tx);
    let _ = tokio::time::timeout(FLUSH_TIMEOUT, sender).await;
    drop(events);
    match lost {
        Some(e) => Err(Error::AgentLost(e)),
        None => Ok(()),
    }
}

/// Starts tracking the progress of `task_id` ([`crate::progress`]); returns the sender its
/// end must go to, which the tracker passes on to `exit_tx` after a last read.
fn track(
    task_id: &TaskId,
    tracking: crate::progress::Tracking,
    api: Option<TaskApi>,
    direct: Option<mpsc::UnboundedSender<crate::api::Progress>>,
    exit_tx: mpsc::UnboundedSender<(TaskId, End)>,
) -> mpsc::UnboundedSender<(TaskId, End)> {
    tracing::info!(
        task_id = %task_id.value,
        regex = tracking.pattern.as_str(),
        file = %tracking.progress_file.display(),
        "tracking progress"
    );
    let id = task_id.clone();
    let report = move |progress, message| match (&api, &direct) {
        (Some(api), _) => api.report(&id, progress, message),
        (None, Some(tx)) => {
            let _ = tx.send(crate::api::Progress {
                task_id: id.clone(),
                progress,
                message,
            });
        }
        (None, None) => {}
    };
    let (tx, rx) = mpsc::unbounded_channel();
    let tracker = crate::progress::Tracker::new(tracking);
    tokio::spawn(crate::progress::watch(tracker, report, rx, exit_tx));
    tx
}

async fn sleep_until(at: Option<Instant>) {
    if let Some(at) = at {
        tokio::time::sleep_until(at.into()).await;
    }
}

/// Sends updates one at a time, in order, so that a slow agent never delays a kill.
async fn send_updates(
    client: ExecutorClient,
    mut rx: mpsc::UnboundedReceiver<TaskStatus>,
    queued: Arc<AtomicUsize>,
) {
    while let Some(status) = rx.recv().await {
        // `update` records the update in the client before its first await: to the other
        // tasks of this thread, the update is always either queued or in the client.
        queued.fetch_sub(1, Ordering::Relaxed);
        let task_id = status.task_id.value.clone();
        // Failures stay queued in the client and go out with the next SUBSCRIBE.
        if let Err(e) = client.update(status).await {
            tracing::warn!(task_id = %task_id, error = %e, "status update not delivered");
        }
    }
}

async fn recv<T>(rx: &mut Option<mpsc::UnboundedReceiver<T>>) -> Option<T> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

fn state_name(state: i32) -> &'static str {
    mesokit_proto::v1::TaskState::try_from(state).map_or("UNKNOWN", |s| s.as_str_name())
}
