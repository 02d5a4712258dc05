//! Runs one task's commands in order (before commands, the task's own, after commands; see
//! [`crate::commands`]) and owns their processes: signals reach the running ones, exits are
//! recorded in the task API, and the outcome goes back to the driver.

use std::io;
use std::time::Duration;

use mesokit_proto::v1::TaskId;

use tokio::sync::mpsc;

use crate::api::{TaskApi, Which};
use crate::commands::{CommandDef, Plan};
use crate::process::{self, Child, CommandSpec, Output, Signal, Termination};
use crate::rotate::{self, LogRotation, RotatingFile, Sink};

/// How long an async command has between SIGTERM and SIGKILL once the synchronous ones are
/// done.
const ASYNC_GRACE: Duration = Duration::from_secs(1);

/// How a task's commands ended.
#[derive(Debug)]
pub(crate) enum End {
    /// The task's own command ended (or could not be waited for); the after commands ran.
    Main(io::Result<Termination>),
    /// The sequence stopped without a status of the task's command to report.
    Failed(String),
}

/// One command to run.
#[derive(Debug)]
pub(crate) struct Step {
    which: Which,
    spec: CommandSpec,
    guard: bool,
    run_async: bool,
    /// For messages: `before command 2 (`./lock.sh`)`.
    name: String,
}

/// The steps of a task: `main` with the plan's commands around it, each a `/bin/sh -c` with
/// `main`'s environment, directory and output.
pub(crate) fn steps(main: CommandSpec, plan: &Plan) -> Vec<Step> {
    let around = |which: Which, def: &CommandDef, kind: &str, n: usize| {
        let mut spec = main.clone();
        spec.program = "/bin/sh".into();
        spec.argv0 = Some("sh".into());
        spec.args = vec!["-c".into(), def.value.clone()];
        Step {
            which,
            spec,
            guard: def.guard,
            run_async: def.r#async,
            name: format!("{kind} command {} (`{}`)", n + 1, def.value),
        }
    };
    let mut steps: Vec<Step> = plan
        .before
        .iter()
        .enumerate()
        .map(|(n, d)| around(Which::Before(n), d, "before", n))
        .collect();
    let after: Vec<Step> = plan
        .after
        .iter()
        .enumerate()
        .map(|(n, d)| around(Which::After(n), d, "after", n))
        .collect();
    steps.push(Step {
        which: Which::Main,
        spec: main,
        guard: false,
        run_async: false,
        name: "the task's command".into(),
    });
    steps.extend(after);
    steps
}

/// Where the task's piped output goes (see [`crate::rotate`]), and the copies under way.
#[derive(Debug, Default)]
pub(crate) struct Sinks {
    out: Option<Sink>,
    err: Option<Sink>,
    copies: std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

/// How long the end of a task waits for the last of its output to reach the files: the copy
/// ends when every writer of the pipe is gone, and what the command left running in its
/// session has been killed by then; a process that escaped the session and holds the pipe
/// must not hold the task's end.
const DRAIN: Duration = Duration::from_secs(1);

impl Sinks {
    /// Waits (at most [`DRAIN`]) until the output copied so far is in the files, so that
    /// whatever reads them at the end (the progress tracker) sees the last lines.
    async fn drained(&self) {
        let copies = std::mem::take(
            &mut *self
                .copies
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        if copies.is_empty() {
            return;
        }
        let all = async {
            for copy in copies {
                let _ = copy.await;
            }
        };
        if tokio::time::timeout(DRAIN, all).await.is_err() {
            tracing::debug!("output still open after the task's end; not waiting for it");
        }
    }
}

/// With rotation on, turns the outputs of `spec` into pipes copied into rotating files: its
/// own files, or the sandbox's `stdout`/`stderr` for inherited ones. An output whose file
/// cannot be opened is left as it was.
pub(crate) fn pipe_outputs(
    spec: &mut CommandSpec,
    sandbox: Option<&std::path::Path>,
    rotation: LogRotation,
) -> Sinks {
    let sink = |output: &mut Output, name: &str| {
        let path = match output {
            Output::File(p) => p.clone(),
            Output::Inherit => sandbox?.join(name),
            Output::Pipe => return None,
        };
        match RotatingFile::open(&path, rotation) {
            Ok(f) => {
                *output = Output::Pipe;
                Some(std::sync::Arc::new(std::sync::Mutex::new(f)))
            }
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot rotate this output");
                None
            }
        }
    };
    Sinks {
        out: sink(&mut spec.stdout, "stdout"),
        err: sink(&mut spec.stderr, "stderr"),
        copies: Default::default(),
    }
}

/// Starts copying `child`'s piped output.
fn attach(child: &mut Child, sinks: &Sinks) {
    let mut copies = sinks
        .copies
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    copies.retain(|c| !c.is_finished());
    if let (Some(out), Some(sink)) = (child.stdout.take(), &sinks.out) {
        copies.push(tokio::spawn(rotate::copy(out, sink.clone())));
    }
    if let (Some(err), Some(sink)) = (child.stderr.take(), &sinks.err) {
        copies.push(tokio::spawn(rotate::copy(err, sink.clone())));
    }
}

/// The exit status as a shell reports it: the code, or 128 + the signal.
fn code(t: Termination) -> i32 {
    match t {
        Termination::Exited(c) => c,
        Termination::Signaled(s) => 128 + s,
    }
}

/// Starts the first step. Its error is the task's launch error.
pub(crate) async fn start_first(
    task_id: &TaskId,
    steps: &mut [Step],
    api: Option<&TaskApi>,
    sinks: &Sinks,
) -> Result<Child, String> {
    let step = &mut steps[0];
    if let Some(api) = api {
        api.apply_env(task_id, &mut step.spec.env);
    }
    process::spawn(&step.spec)
        .await
        .map(|mut child| {
            attach(&mut child, sinks);
            child
        })
        .map_err(|e| {
            if step.which == Which::Main {
                e.to_string()
            } else {
                format!("{}: {e}", step.name)
            }
        })
}

/// Runs the steps, the first already started as `first`, until the last one ends, a guard
/// fails or a signal stops it; sends the outcome on `ends`.
pub(crate) async fn drive(
    task_id: TaskId,
    steps: Vec<Step>,
    first: Child,
    api: Option<TaskApi>,
    sinks: Sinks,
    mut signals: mpsc::UnboundedReceiver<Signal>,
    ends: mpsc::UnboundedSender<(TaskId, End)>,
) {
    let mut first = Some(first);
    let mut asyncs: Vec<(Which, Child, process::Tree)> = Vec::new();
    let mut stopped = false;
    let mut signals_open = true;
    let mut main = None;
    let mut failure = None;
    let record = |which, c| {
        if let Some(api) = &api {
            api.record_exit(&task_id, which, c);
        }
    };

    for mut step in steps {
        if stopped {
            break;
        }
        let child = match first.take() {
            Some(child) => Ok(child),
            None => {
                if let Some(api) = &api {
                    api.apply_env(&task_id, &mut step.spec.env);
                }
                process::spawn(&step.spec).await.map(|mut child| {
                    attach(&mut child, &sinks);
                    child
                })
            }
        };
        let mut child = match child {
            Ok(child) => child,
            Err(e) => {
                tracing::warn!(task_id = %task_id.value, command = %step.name, error = %e, "cannot start");
                record(step.which, None);
                if step.which == Which::Main {
                    failure = Some(format!("Failed to launch the task's command: {e}"));
                    break;
                }
                if step.guard {
                    failure = Some(format!(
                        "{} could not start: {e}; later commands did not run",
                        step.name
                    ));
                    break;
                }
                continue;
            }
        };
        let Some(pid) = child.id() else {
            // Only a reaped child has no pid, and nothing waited for this one yet.
            failure = Some(format!("{} vanished before it could be watched", step.name));
            break;
        };
        tracing::info!(task_id = %task_id.value, pid, command = %step.name, "forked");
        let mut tree = process::Tree::new(pid);
        if step.run_async {
            asyncs.push((step.which, child, tree));
            continue;
        }
        let status = loop {
            tokio::select! {
                biased;
                status = child.wait() => break status,
                signal = signals.recv(), if signals_open => match signal {
                    Some(signal) => {
                        stopped = true;
                        if let Err(e) = tree.signal(signal) {
                            tracing::debug!(task_id = %task_id.value, error = %e, "signal not delivered");
                        }
                        for (_, _, t) in &mut asyncs {
                            let _ = t.signal(signal);
                        }
                    }
                    None => signals_open = false,
                },
            }
        };
        // Whatever the command left running in its session goes with it, as the agent's
        // container destroy would do.
        if process::maybe_leftovers(pid)
            && let Ok(n) = tree.signal(Signal::Kill)
        {
            tracing::info!(task_id = %task_id.value, processes = n, "killed what the command left behind");
        }
        let status = status.map(Termination::from);
        record(step.which, status.as_ref().ok().map(|t| code(*t)));
        if step.which == Which::Main {
            main = Some(status);
            continue;
        }
        match status {
            Ok(t) if !t.success() && step.guard => {
                failure = Some(format!("{} {t}; later commands did not run", step.name));
                break;
            }
            Ok(t) => {
                tracing::info!(task_id = %task_id.value, command = %step.name, "{t}");
            }
            Err(e) => {
                tracing::warn!(task_id = %task_id.value, command = %step.name, error = %e, "cannot wait");
            }
        }
    }

    // The synchronous commands are done: the async ones go.
    for (which, mut child, mut tree) in asyncs {
        let status = match child.try_wait() {
            Ok(Some(status)) => Ok(status),
            _ => {
                let _ = tree.signal(Signal::Term);
                match tokio::time::timeout(ASYNC_GRACE, child.wait()).await {
                    Ok(status) => status,
                    Err(_) => {
                        let _ = tree.signal(Signal::Kill);
                        child.wait().await
                    }
                }
            }
        };
        let _ = tree.signal(Signal::Kill);
        record(which, status.ok().map(|s| code(s.into())));
    }

    sinks.drained().await;
    let end = match (failure, main) {
        (Some(message), _) => End::Failed(message),
        (None, Some(status)) => End::Main(status),
        (None, None) => End::Failed("killed before the task's command ran".into()),
    };
    let _ = ends.send((task_id, end));
}
