//! `mesokit run job.yaml`: run a job on Mesos, on the embedded local cluster unless a master
//! is given, with progress per task group and a summary at the end.

use std::io::{IsTerminal, Write as _};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use mesokit_framework::core::{Config, GroupCounts, Scheduler, TaskEventKind};
use mesokit_framework::driver::{Driver, DriverConfig, DriverEvent, Handle, Outcome};
use mesokit_framework::ha::{AnyStore, ZkHa};
use mesokit_framework::spec::{JobKind, JobSpec};
use mesokit_framework::store::{Store, StoreError};
use mesokit_local::cluster::{ClusterConfig, LocalCluster};
use tokio::sync::{mpsc, watch};

use super::json::JsonLine;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The job spec (YAML or JSON).
    job: PathBuf,
    /// Mesos master: `http://host:5050` (repeat or comma-separate for several) or
    /// `zk://host:2181/mesos`. Without it the job runs on an embedded local cluster.
    #[arg(long, value_delimiter = ',')]
    master: Vec<String>,
    /// Where the framework id and task states survive restarts: a file path, `zk://host:2181/path`,
    /// or `none`. Default: `none` on the embedded cluster, `.mesokit/<job>.redb` otherwise.
    #[arg(long)]
    store: Option<String>,
    /// Print task events as JSON lines on stdout instead of progress bars.
    #[arg(long)]
    json: bool,
    /// Agents of the embedded cluster.
    #[arg(long, default_value_t = 2)]
    agents: usize,
    /// Resources of each embedded agent, in Mesos's syntax.
    #[arg(long, default_value = "cpus:4;mem:8192;disk:20000;ports:[31000-32000]")]
    agent_resources: String,
    /// Work directory of the embedded cluster (default: a temporary directory).
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// Serve the admin API and Prometheus metrics on 127.0.0.1:PORT.
    #[arg(long)]
    admin_port: Option<u16>,
    /// Period of implicit reconciliation (explicit reconciliation follows every subscription).
    #[arg(long, default_value = "10min", value_parser = parse_duration)]
    reconcile_interval: Duration,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    mesokit_framework::spec::parse_duration(s)
}

pub(crate) fn run(args: Args) -> Result<ExitCode, String> {
    let job = JobSpec::from_file(&args.job).map_err(|e| e.to_string())?;
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                // The client's connection warnings are reported as lines of our own.
                .unwrap_or_else(|_| {
                    tracing_subscriber::EnvFilter::new("warn,mesokit_client=error")
                }),
        )
        .with_writer(std::io::stderr)
        .init();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    rt.block_on(run_async(args, job))
}

async fn run_async(args: Args, job: JobSpec) -> Result<ExitCode, String> {
    let exe =
        std::env::current_exe().map_err(|e| format!("cannot find the mesokit binary: {e}"))?;
    let exe = exe.to_string_lossy().into_owned();
    let mut config = Config {
        reconcile_interval: args.reconcile_interval,
        ..Config::default()
    };
    let mut cluster = None;
    let mut master_updates = None;
    let masters = if args.master.is_empty() {
        let c = LocalCluster::start(ClusterConfig {
            agents: args.agents,
            resources: args.agent_resources.clone(),
            work_dir: args.work_dir.clone(),
            port: 0,
            agent_port: 0,
            command_executor: vec![exe.clone(), "executor".into()],
            allocation_interval: Duration::from_millis(100),
            ..ClusterConfig::default()
        })
        .await
        .map_err(|e| format!("cannot start the embedded cluster: {e}"))?;
        if !args.json {
            eprintln!(
                "embedded Mesos cluster: {} with {} agent(s), sandboxes under {}",
                c.master_url(),
                args.agents,
                c.work_dir().display()
            );
        }
        config.executor_command = format!("'{}' executor", exe.replace('\'', "'\\''"));
        let url = c.master_url();
        cluster = Some(c);
        vec![url]
    } else {
        let (urls, updates) = resolve_masters(&args.master).await?;
        master_updates = updates;
        urls
    };
    let store = args.store.clone().unwrap_or_else(|| {
        if cluster.is_some() {
            "none".into()
        } else {
            format!(".mesokit/{}.redb", job.name)
        }
    });
    if !store.contains("://") && store != "none" && store != "memory" {
        if let Some(dir) = std::path::Path::new(&store)
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
        {
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("--store {store}: cannot create {}: {e}", dir.display()))?;
        }
    }
    let mut driver_config = DriverConfig::new(masters);
    driver_config.master_updates = master_updates;
    let core = Scheduler::new(job.clone(), config);
    let result = if store.starts_with("zk://") {
        // Several `mesokit run` with the same ZooKeeper store: one leads, the others wait.
        let id = mesokit_framework::ha::default_instance_id();
        let mut ha = ZkHa::connect(&store, &job.name, &id)
            .await
            .map_err(|e| format!("--store {store}: {e}"))?;
        if let Ok(Some(leader)) = ha.leader_id().await {
            eprintln!("standby: {leader} leads {}; waiting to take over", job.name);
        }
        let led = ha
            .run_as_leader(|zk_store| async {
                eprintln!("leading {} as {id}", job.name);
                drive(core, zk_store, driver_config, &args).await
            })
            .await;
        match led {
            Ok(r) => r,
            Err(StoreError::Fenced(why)) => {
                return Err(format!("{why}; exiting so that a standby can lead"));
            }
            Err(e) => return Err(format!("--store {store}: {e}")),
        }
    } else {
        let any = AnyStore::open(&store, &job.name)
            .await
            .map_err(|e| format!("--store {store}: {e}"))?;
        drive(core, any, driver_config, &args).await
    };
    if let Some(c) = cluster {
        c.shutdown().await;
    }
    let (outcome, counts, final_job) = result?;
    if !args.json {
        print_summary(&final_job, &counts, outcome);
    }
    Ok(match (outcome, job.kind) {
        (Outcome::Succeeded, _) => ExitCode::SUCCESS,
        (Outcome::Stopped, JobKind::Service) => ExitCode::SUCCESS,
        (Outcome::Stopped, JobKind::Batch) => ExitCode::from(130),
        (Outcome::Failed, _) => ExitCode::FAILURE,
    })
}

/// HTTP URLs are kept as they are; a `zk://` URL (alone) is followed: the leading master now,
/// and a watch that tells the driver when another master leads.
async fn resolve_masters(
    masters: &[String],
) -> Result<(Vec<String>, Option<watch::Receiver<Vec<String>>>), String> {
    let Some(zk) = masters.iter().find(|m| m.starts_with("zk://")) else {
        let urls = masters.iter().map(|m| m.trim_end_matches('/').to_string());
        return Ok((urls.collect(), None));
    };
    if masters.len() > 1 {
        return Err(format!(
            "--master {zk}: a zk:// URL finds the masters itself; give it alone"
        ));
    }
    let mut detector = mesokit_framework::zk::master::MasterDetector::start(zk)
        .await
        .map_err(|e| format!("--master {zk}: {e}"))?;
    let leader = match detector.current() {
        Some(l) => l,
        None => {
            eprintln!("waiting for a Mesos master to register under {zk}");
            loop {
                match detector.changed().await {
                    Ok(Some(l)) => break l,
                    Ok(None) => continue,
                    Err(e) => return Err(format!("--master {zk}: {e}")),
                }
            }
        }
    };
    let (tx, rx) = watch::channel(vec![leader.base_url.clone()]);
    tokio::spawn(async move {
        // Owns the detector for the rest of the run.
        loop {
            match detector.changed().await {
                Ok(Some(m)) => {
                    if tx.send(vec![m.base_url]).is_err() {
                        return;
                    }
                }
                Ok(None) => {} // no master right now: keep trying the last one
                Err(e) => {
                    tracing::warn!(error = %e, "master detection stopped; keeping the last master");
                    return;
                }
            }
        }
    });
    Ok((vec![leader.base_url], Some(rx)))
}

async fn drive<S: Store>(
    core: Scheduler,
    store: S,
    config: DriverConfig,
    args: &Args,
) -> Result<(Outcome, Vec<(String, GroupCounts)>, JobSpec), String> {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let driver = Driver::new(core, store, config, tx)
        .await
        .map_err(|e| e.to_string())?;
    let handle = driver.handle();
    if let Some(port) = args.admin_port {
        let addr = mesokit_framework::admin::serve(handle.clone(), port)
            .await
            .map_err(|e| format!("--admin-port {port}: {e}"))?;
        eprintln!("admin API on http://{addr}");
    }
    let (htx, mut hrx) = mpsc::unbounded_channel();
    for g in handle.read(|s| s.job().groups.clone()) {
        if let Some(check) = g.scheduler_check {
            let helper = mesokit_framework::health::HealthHelper::new(check);
            tokio::spawn(helper.run(handle.clone(), htx.clone()));
        }
    }
    drop(htx);
    let json = args.json;
    tokio::spawn(async move {
        while let Some(e) = hrx.recv().await {
            report_check(&e, json);
        }
    });
    let run = tokio::spawn(driver.run());
    let ui = tokio::spawn(display(handle.clone(), args.json));
    let stopper = handle.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("\nstopping: killing tasks (Ctrl-C again to quit at once)");
            stopper.stop();
            if tokio::signal::ctrl_c().await.is_ok() {
                std::process::exit(130);
            }
        }
    });
    let events = tokio::spawn(async move {
        while let Some(ev) = rx.recv().await {
            report(&ev, json);
        }
    });
    let outcome = run
        .await
        .map_err(|e| format!("scheduler task failed: {e}"))?;
    ui.abort();
    let _ = ui.await;
    let _ = events.await;
    let outcome = outcome.map_err(|e| e.to_string())?;
    // The job as it ended (scaled groups included) for the summary.
    let (counts, job) = handle.read(|s| (s.counts(), s.job().clone()));
    Ok((outcome, counts, job))
}

fn report(ev: &DriverEvent, json: bool) {
    if json {
        let mut line = JsonLine::new();
        match ev {
            DriverEvent::Connected {
                framework_id,
                master,
            } => {
                line.str("event", "connected");
                line.str("framework_id", framework_id);
                line.str("master", master);
            }
            DriverEvent::Disconnected { reason } => {
                line.str("event", "disconnected");
                line.str("reason", reason);
            }
            DriverEvent::Warning(w) => {
                line.str("event", "warning");
                line.str("message", w);
            }
            DriverEvent::Task(t) => {
                line.str("event", kind_name(&t.kind));
                line.str("group", &t.group);
                line.int("index", t.index.into());
                line.str("task_id", &t.task_id);
                match &t.kind {
                    TaskEventKind::Launched { hostname } => line.str("hostname", hostname),
                    TaskEventKind::Failed { state, message }
                    | TaskEventKind::Lost { state, message } => {
                        line.str("state", state);
                        line.str("message", message);
                    }
                    TaskEventKind::Restarting { delay, restart } => {
                        line.num("delay_seconds", delay.as_secs_f64());
                        line.int("restart", (*restart).into());
                    }
                    _ => {}
                }
            }
        }
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{}", line.finish());
        let _ = out.flush();
        return;
    }
    match ev {
        DriverEvent::Warning(w) => eprintln!("\rwarning: {w}\x1b[K"),
        DriverEvent::Disconnected { reason } => {
            eprintln!("\rdisconnected from Mesos ({reason}); reconnecting\x1b[K")
        }
        DriverEvent::Task(t) => match &t.kind {
            TaskEventKind::Failed { state, message } | TaskEventKind::Lost { state, message } => {
                eprintln!("\r{} {}: {message}\x1b[K", t.task_id, escape_state(state))
            }
            TaskEventKind::GaveUp => {
                eprintln!(
                    "\r{}.{}: restart policy exhausted; giving up\x1b[K",
                    t.group, t.index
                )
            }
            _ => {}
        },
        DriverEvent::Connected { .. } => {}
    }
}

fn report_check(e: &mesokit_framework::health::HealthEvent, json: bool) {
    if json {
        let mut line = JsonLine::new();
        line.str("event", "scheduler_check");
        line.str("task_id", &e.task_id);
        line.bool("healthy", e.healthy);
        if let Some(p) = &e.property {
            line.str("property", p);
        }
        if let Some(r) = &e.reason {
            line.str("reason", r);
        }
        println!("{}", line.finish());
    } else if e.healthy {
        eprintln!("\r{}: scheduler check passes\x1b[K", e.task_id);
    } else {
        eprintln!(
            "\r{}: scheduler check fails: {}\x1b[K",
            e.task_id,
            e.reason.as_deref().unwrap_or("")
        );
    }
}

fn escape_state(s: &str) -> String {
    s.trim_start_matches("TASK_").to_ascii_lowercase()
}

fn kind_name(k: &TaskEventKind) -> &'static str {
    match k {
        TaskEventKind::Launched { .. } => "launched",
        TaskEventKind::Running => "running",
        TaskEventKind::Healthy => "healthy",
        TaskEventKind::Unhealthy => "unhealthy",
        TaskEventKind::Finished => "finished",
        TaskEventKind::Failed { .. } => "failed",
        TaskEventKind::Killed => "killed",
        TaskEventKind::Lost { .. } => "lost",
        TaskEventKind::Restarting { .. } => "restarting",
        TaskEventKind::GaveUp => "gave_up",
    }
}

/// Progress bars on a terminal (redrawn in place), a line per change elsewhere.
async fn display(handle: Handle, json: bool) {
    if json {
        return;
    }
    let tty = std::io::stderr().is_terminal();
    let mut last = String::new();
    let mut drawn_lines = 0;
    let mut tick = tokio::time::interval(Duration::from_millis(if tty { 200 } else { 1000 }));
    loop {
        tick.tick().await;
        let (counts, instances, connected) = handle.read(|s| {
            let inst: Vec<u32> = s.job().groups.iter().map(|g| g.instances).collect();
            (s.counts(), inst, s.is_connected())
        });
        let width = counts.iter().map(|(n, _)| n.len()).max().unwrap_or(0);
        let mut text = String::new();
        for ((name, c), total) in counts.iter().zip(&instances) {
            text.push_str(&progress_line(name, c, *total, width));
            text.push('\n');
        }
        if !connected {
            text.push_str("(connecting to Mesos...)\n");
        }
        if text == last {
            continue;
        }
        let mut err = std::io::stderr().lock();
        if tty {
            if drawn_lines > 0 {
                let _ = write!(err, "\x1b[{drawn_lines}A");
            }
            for line in text.lines() {
                let _ = writeln!(err, "{line}\x1b[K");
            }
            drawn_lines = text.lines().count();
        } else {
            let _ = write!(err, "{text}");
        }
        last = text;
    }
}

fn progress_line(name: &str, c: &GroupCounts, total: u32, width: usize) -> String {
    const BAR: usize = 30;
    let total = total.max(1) as usize;
    let cells = |n: u32| (n as usize * BAR).div_ceil(total).min(BAR);
    let done = cells(c.finished);
    let run = cells(c.running).min(BAR - done);
    let stage = cells(c.staging).min(BAR - done - run);
    let bar = format!(
        "{}{}{}{}",
        "#".repeat(done),
        "=".repeat(run),
        "-".repeat(stage),
        " ".repeat(BAR - done - run - stage)
    );
    let mut line = format!(
        "{name:<width$} [{bar}] {} staging, {} running",
        c.pending + c.staging,
        c.running
    );
    if c.healthy > 0 {
        line.push_str(&format!(" ({} healthy)", c.healthy));
    }
    line.push_str(&format!(
        ", {}/{total} finished, {} failed",
        c.finished, c.failed
    ));
    if c.killed > 0 {
        line.push_str(&format!(", {} killed", c.killed));
    }
    if c.restarts > 0 {
        line.push_str(&format!(", {} restarts", c.restarts));
    }
    line
}

fn print_summary(job: &JobSpec, counts: &[(String, GroupCounts)], outcome: Outcome) {
    let width = counts
        .iter()
        .map(|(n, _)| n.len())
        .max()
        .unwrap_or(5)
        .max(5);
    eprintln!();
    eprintln!(
        "{:<width$}  {:>9}  {:>8}  {:>8}  {:>6}  {:>8}",
        "group", "instances", "finished", "failed", "killed", "restarts"
    );
    for ((name, c), g) in counts.iter().zip(&job.groups) {
        eprintln!(
            "{name:<width$}  {:>9}  {:>8}  {:>8}  {:>6}  {:>8}",
            g.instances, c.finished, c.failed, c.killed, c.restarts
        );
    }
    let verdict = match outcome {
        Outcome::Succeeded => "job finished: every task succeeded",
        Outcome::Failed => "job failed: some tasks failed for good",
        Outcome::Stopped => "job stopped",
    };
    eprintln!("{verdict} ({})", job.name);
}
