//! `mesokit local`: a Mesos-compatible master and agents on this machine.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use mesokit_local::cluster::{ClusterConfig, LocalCluster};

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Number of agents.
    #[arg(long, default_value_t = 1)]
    agents: usize,
    /// Resources of each agent, in Mesos's syntax.
    #[arg(long, default_value = "cpus:4;mem:8192;disk:20000;ports:[31000-32000]")]
    resources: String,
    /// Attributes of each agent, in Mesos's syntax (e.g. 'rack:r1;zone:a').
    #[arg(long, default_value = "")]
    attributes: String,
    /// Work directory for sandboxes (default: a fresh temporary directory, removed at exit).
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// Address to bind.
    #[arg(long, default_value_t = Ipv4Addr::LOCALHOST)]
    ip: Ipv4Addr,
    /// Master port (0 picks a free one).
    #[arg(long, default_value_t = 5050)]
    port: u16,
    /// First agent port; agents take consecutive ports (0 picks free ones).
    #[arg(long, default_value_t = 5051)]
    agent_port: u16,
    /// Offer cycle in milliseconds (Mesos: 1000).
    #[arg(long, default_value_t = 1000)]
    allocation_interval_ms: u64,
    /// Scheduler heartbeat interval in seconds (Mesos: 15).
    #[arg(long, default_value_t = 15)]
    heartbeat_interval_secs: u64,
    /// Criteo command modules: a modules.json path or inline JSON, as Mesos's --modules.
    #[arg(long)]
    modules: Option<String>,
    /// Hook modules to run, comma-separated, in order (e.g. com_criteo_mesos_CommandHook).
    #[arg(long, default_value = "")]
    hooks: String,
    /// Isolators, comma-separated, in order; names with a '/' (Mesos built-ins such as
    /// posix/cpu) are accepted and ignored.
    #[arg(long, default_value = "")]
    isolation: String,
    /// Directory for the command modules' temp files (default: <work-dir>/tmp). A tmpfs such
    /// as /dev/shm makes each call cheaper.
    #[arg(long)]
    modules_tmp_dir: Option<PathBuf>,
}

/// Reads `--modules` and keeps the modules `--hooks` / `--isolation` name. Any error (a
/// missing module_name, a bad timeout, an unknown key or module) stops start-up.
pub(crate) fn modules_config(
    modules: Option<&str>,
    hooks: &str,
    isolation: &str,
) -> Result<mesokit_hooks::modules::ModulesConfig, String> {
    use mesokit_hooks::modules;
    let defined = match modules {
        Some(m) => modules::parse(m).map_err(|e| format!("--modules: {e}"))?,
        None => modules::ModulesConfig::default(),
    };
    let split = |s: &str| -> Vec<String> {
        s.split(',')
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .map(str::to_owned)
            .collect()
    };
    let hooks = split(hooks);
    let isolation = split(isolation);
    let hooks: Vec<&str> = hooks.iter().map(String::as_str).collect();
    let isolation: Vec<&str> = isolation.iter().map(String::as_str).collect();
    modules::select(&defined, &hooks, &isolation).map_err(|e| e.to_string())
}

pub(crate) fn run(args: Args) -> Result<ExitCode, String> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let modules = modules_config(args.modules.as_deref(), &args.hooks, &args.isolation)?;
    let exe =
        std::env::current_exe().map_err(|e| format!("cannot find the mesokit binary: {e}"))?;
    let config = ClusterConfig {
        agents: args.agents,
        resources: args.resources,
        attributes: args.attributes,
        work_dir: args.work_dir,
        ip: args.ip,
        port: args.port,
        agent_port: args.agent_port,
        command_executor: vec![exe.to_string_lossy().into_owned(), "executor".into()],
        allocation_interval: Duration::from_millis(args.allocation_interval_ms.max(1)),
        heartbeat_interval: Duration::from_secs(args.heartbeat_interval_secs.max(1)),
        modules,
        modules_tmp_dir: args.modules_tmp_dir,
        ..ClusterConfig::default()
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    rt.block_on(async move {
        let cluster = LocalCluster::start(config)
            .await
            .map_err(|e| e.to_string())?;
        println!("master: {}", cluster.master_url());
        for a in cluster.agents() {
            println!("agent {}: http://{}", a.id().value, a.endpoint());
        }
        println!("work dir: {}", cluster.work_dir().display());
        tokio::signal::ctrl_c()
            .await
            .map_err(|e| format!("cannot wait for Ctrl-C: {e}"))?;
        eprintln!("shutting down");
        cluster.shutdown().await;
        Ok(ExitCode::SUCCESS)
    })
}
