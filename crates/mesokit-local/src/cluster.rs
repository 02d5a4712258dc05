//! Starting a master and agents on sockets and tasks: [`LocalCluster`].

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use mesokit_hooks::agent::CommandModules;
use mesokit_hooks::modules::ModulesConfig;
use mesokit_hooks::runner::Runner;
use mesokit_proto::resources::{Resources, parse_attributes};
use mesokit_proto::v1;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use crate::agent::{self, AgentConfig, AgentHandle};
use crate::master::actor::MasterHandle;
use crate::master::{Master, MasterConfig, actor, http as master_http};
use crate::messages::ToMaster;

/// What to start.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// Number of agents.
    pub agents: usize,
    /// Each agent's resources, in Mesos's `--resources` syntax.
    pub resources: String,
    /// Each agent's attributes, in Mesos's `--attributes` syntax.
    pub attributes: String,
    /// Work directory (sandboxes, agent state). `None`: a fresh directory under the system
    /// temporary directory, removed on shutdown.
    pub work_dir: Option<PathBuf>,
    /// Address to bind; 127.0.0.1 unless asked otherwise.
    pub ip: Ipv4Addr,
    /// Master port (5050 by default; 0 picks a free one).
    pub port: u16,
    /// First agent port (agents take consecutive ports); 0 picks free ones.
    pub agent_port: u16,
    /// argv of the command executor that agents start for command tasks
    /// (`mesokit executor` when run from the CLI).
    pub command_executor: Vec<String>,
    /// Scheduler heartbeat interval (Mesos: 15 s).
    pub heartbeat_interval: Duration,
    /// Offer cycle (Mesos: 1 s).
    pub allocation_interval: Duration,
    /// First status-update retry (Mesos: 10 s, doubling up to 10 min).
    pub status_retry_initial: Duration,
    /// Executor registration timeout (Mesos: 1 min).
    pub executor_registration_timeout: Duration,
    /// After an agent restart ([`LocalCluster::restart_agent`]), the time its executors have
    /// to re-subscribe (Mesos's `--executor_reregistration_timeout`: 2 s); also their
    /// `MESOS_SUBSCRIPTION_BACKOFF_MAX`.
    pub executor_reregistration_timeout: Duration,
    /// How long the master waits for a stopped agent to come back before it marks it
    /// unreachable and runs the agent-lost hooks (75 s, Mesos's 5 missed pings of 15 s).
    pub agent_lost_timeout: Duration,
    /// Criteo command modules, already selected by `--hooks` / `--isolation`
    /// ([`mesokit_hooks::modules::select`]); empty by default. Each agent's isolator state
    /// goes to `<work_dir>/runtime/agent-<n>/isolators/command/<module_name>/<container id>`.
    pub modules: ModulesConfig,
    /// Where the modules' commands get their temp files; `None`: `<work_dir>/tmp`. A tmpfs
    /// (e.g. `/dev/shm`) makes each call cheaper than a disk file system under churn
    /// (docs/benchmarks.md, "Agent command modules").
    pub modules_tmp_dir: Option<PathBuf>,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            agents: 1,
            resources: "cpus:4;mem:8192;disk:20000;ports:[31000-32000]".into(),
            attributes: String::new(),
            work_dir: None,
            ip: Ipv4Addr::LOCALHOST,
            port: 5050,
            agent_port: 5051,
            command_executor: Vec::new(),
            heartbeat_interval: Duration::from_secs(15),
            allocation_interval: Duration::from_secs(1),
            status_retry_initial: Duration::from_secs(10),
            executor_registration_timeout: Duration::from_secs(60),
            executor_reregistration_timeout: Duration::from_secs(2),
            agent_lost_timeout: Duration::from_secs(75),
            modules: ModulesConfig::default(),
            modules_tmp_dir: None,
        }
    }
}

impl ClusterConfig {
    /// A configuration for tests: ephemeral ports, a private work dir, fast offer cycles.
    pub fn for_tests(command_executor: Vec<String>) -> Self {
        ClusterConfig {
            port: 0,
            agent_port: 0,
            command_executor,
            allocation_interval: Duration::from_millis(100),
            ..ClusterConfig::default()
        }
    }
}

/// Why a cluster could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// `--resources` or `--attributes` did not parse.
    #[error("{0}")]
    Config(String),
    /// A port could not be bound or a directory created.
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

/// A running master and its agents.
#[derive(Debug)]
pub struct LocalCluster {
    master_addr: SocketAddr,
    agents: Vec<AgentHandle>,
    /// What each agent was started with (to start it again).
    agent_configs: Vec<AgentConfig>,
    /// Whether each agent is stopped ([`LocalCluster::stop_agent`]).
    stopped: Vec<bool>,
    master: MasterHandle,
    to_master: mpsc::UnboundedSender<ToMaster>,
    modules: ModulesConfig,
    modules_tmp: PathBuf,
    work_dir: PathBuf,
    remove_work_dir: bool,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// Why an agent could not be stopped or started again.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// There is no agent with this index.
    #[error("no agent {index}: the cluster has {count} agents")]
    NoSuchAgent { index: usize, count: usize },
    /// `start_agent` of an agent that runs, or `stop_agent` of one that is stopped.
    #[error("agent {index} is already {state}")]
    WrongState { index: usize, state: &'static str },
    /// Its port could not be bound again.
    #[error("cannot bind agent {index} to {addr} again: {source}")]
    Bind {
        index: usize,
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

impl LocalCluster {
    /// Binds the sockets and starts everything. Must be called inside a Tokio runtime.
    pub async fn start(config: ClusterConfig) -> Result<LocalCluster, StartError> {
        let io = |what: String| move |source| StartError::Io { what, source };
        let resources = Resources::parse(&config.resources)
            .map_err(|e| StartError::Config(format!("--resources: {e}")))?;
        let attributes = if config.attributes.trim().is_empty() {
            Vec::new()
        } else {
            parse_attributes(&config.attributes)
                .map_err(|e| StartError::Config(format!("--attributes: {e}")))?
        };
        let (work_dir, remove_work_dir) = match &config.work_dir {
            Some(d) => (d.clone(), false),
            None => {
                let d = std::env::temp_dir().join(format!(
                    "mesokit-local-{}-{:08x}",
                    std::process::id(),
                    fastrand::u32(..)
                ));
                (d, true)
            }
        };
        std::fs::create_dir_all(&work_dir)
            .map_err(io(format!("cannot create work dir {}", work_dir.display())))?;
        let has_modules = !config.modules.hooks.is_empty() || !config.modules.isolators.is_empty();
        let modules_tmp = config
            .modules_tmp_dir
            .clone()
            .unwrap_or_else(|| work_dir.join("tmp"));
        if has_modules {
            std::fs::create_dir_all(&modules_tmp).map_err(io(format!(
                "cannot create the command modules' temp dir {}",
                modules_tmp.display()
            )))?;
        }

        let master_listener = TcpListener::bind((config.ip, config.port))
            .await
            .map_err(io(format!(
                "cannot bind the master to {}:{}",
                config.ip, config.port
            )))?;
        let master_addr = master_listener
            .local_addr()
            .map_err(io("master address".into()))?;

        let now = std::time::Instant::now();
        let mut master = Master::new(
            MasterConfig {
                hostname: "localhost".into(),
                ip: config.ip,
                port: master_addr.port(),
                heartbeat_interval: config.heartbeat_interval,
                allocation_interval: config.allocation_interval,
                agent_lost_timeout: config.agent_lost_timeout,
                ..MasterConfig::default()
            },
            now,
        );

        let (to_master, from_agents) = mpsc::unbounded_channel();
        let mut agents = Vec::new();
        let mut agent_configs = Vec::new();
        for i in 0..config.agents {
            let port = if config.agent_port == 0 {
                0
            } else {
                config.agent_port + i as u16
            };
            let listener = TcpListener::bind((config.ip, port))
                .await
                .map_err(io(format!("cannot bind agent {i} to {}:{port}", config.ip)))?;
            let port = listener
                .local_addr()
                .map_err(io("agent address".into()))?
                .port();
            let mut info = v1::AgentInfo {
                hostname: "localhost".into(),
                port: Some(i32::from(port)),
                resources: resources.as_slice().to_vec(),
                attributes: attributes.clone(),
                ..Default::default()
            };
            let modules =
                has_modules.then(|| agent_modules(&config.modules, &modules_tmp, &work_dir, i));
            if let Some(m) = &modules {
                // As Mesos at agent start: the resources and attributes decorator hooks.
                m.decorate_agent(&mut info).await;
            }
            let (agent_resources, agent_attributes) =
                (info.resources.clone(), info.attributes.clone());
            let id = master.add_agent(now, info, format!("slave(1)@{}:{port}", config.ip));
            let mut ac = AgentConfig::new(
                id,
                "localhost",
                config.ip,
                port,
                work_dir.clone(),
                config.command_executor.clone(),
            );
            ac.resources = agent_resources;
            ac.attributes = agent_attributes;
            ac.status_retry_initial = config.status_retry_initial;
            ac.executor_registration_timeout = config.executor_registration_timeout;
            ac.executor_reregistration_timeout = config.executor_reregistration_timeout;
            ac.modules = modules;
            agent_configs.push(ac.clone());
            agents.push(agent::start(ac, listener, to_master.clone()));
        }

        let master_modules = (!config.modules.hooks.is_empty()).then(|| {
            // The master's hook points need no isolator state: a hooks-only instance.
            let hooks_only = ModulesConfig {
                hooks: config.modules.hooks.clone(),
                isolators: Vec::new(),
            };
            std::sync::Arc::new(CommandModules::new(
                &hooks_only,
                Runner::new(&modules_tmp),
                &work_dir.join("runtime/master"),
            ))
        });
        let (handle, master_task) =
            actor::spawn(master, agents.clone(), from_agents, master_modules);
        let master_handle = handle.clone();
        let server = crate::http::serve(master_listener, move |req| {
            master_http::handle(handle.clone(), req)
        });
        tracing::info!(master = %master_addr, agents = agents.len(), work_dir = %work_dir.display(), "local cluster started");
        Ok(LocalCluster {
            master_addr,
            stopped: vec![false; agents.len()],
            agents,
            agent_configs,
            master: master_handle,
            to_master,
            modules: config.modules.clone(),
            modules_tmp,
            work_dir,
            remove_work_dir,
            tasks: vec![master_task, server],
        })
    }

    /// The master's address.
    pub fn master_addr(&self) -> SocketAddr {
        self.master_addr
    }

    /// The master's base URL, e.g. `http://127.0.0.1:5050`.
    pub fn master_url(&self) -> String {
        format!("http://{}", self.master_addr)
    }

    /// The agents.
    pub fn agents(&self) -> &[AgentHandle] {
        &self.agents
    }

    /// The work directory (sandboxes live below it).
    pub fn work_dir(&self) -> &std::path::Path {
        &self.work_dir
    }

    /// Stops agent `index` as if its process ended ([`AgentHandle::stop`]): the executors of
    /// checkpointing frameworks keep running, the others are killed; the master marks the
    /// agent disconnected and, unless it is started again within
    /// [`ClusterConfig::agent_lost_timeout`], unreachable (running the agent-lost hooks).
    pub async fn stop_agent(&mut self, index: usize) -> Result<(), AgentError> {
        self.check(index, false)?;
        self.agents[index].stop().await;
        self.stopped[index] = true;
        Ok(())
    }

    /// Starts a stopped agent again on the same port, with the same id and work dir: it
    /// recovers its checkpointed executors (their isolators' watch loops resume, the executors
    /// re-subscribe or are killed), cleans up the rest, and re-registers with the master.
    pub async fn start_agent(&mut self, index: usize) -> Result<(), AgentError> {
        self.check(index, true)?;
        let mut config = self.agent_configs[index].clone();
        let addr = SocketAddr::from((config.ip, config.port));
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| AgentError::Bind {
                index,
                addr,
                source,
            })?;
        let has_modules = !self.modules.hooks.is_empty() || !self.modules.isolators.is_empty();
        config.modules = has_modules
            .then(|| agent_modules(&self.modules, &self.modules_tmp, &self.work_dir, index));
        config.recover = true;
        let handle = agent::start(config, listener, self.to_master.clone());
        self.master.set_agent(handle.clone());
        self.agents[index] = handle;
        self.stopped[index] = false;
        tracing::info!(agent = index, "agent started again");
        Ok(())
    }

    /// [`LocalCluster::stop_agent`] then [`LocalCluster::start_agent`].
    pub async fn restart_agent(&mut self, index: usize) -> Result<(), AgentError> {
        self.stop_agent(index).await?;
        self.start_agent(index).await
    }

    fn check(&self, index: usize, stopped: bool) -> Result<(), AgentError> {
        match self.stopped.get(index) {
            None => Err(AgentError::NoSuchAgent {
                index,
                count: self.agents.len(),
            }),
            Some(s) if *s != stopped => Err(AgentError::WrongState {
                index,
                state: if *s { "stopped" } else { "running" },
            }),
            Some(_) => Ok(()),
        }
    }

    /// Stops serving, kills every executor and removes a temporary work dir.
    pub async fn shutdown(self) {
        for a in &self.agents {
            a.shutdown().await;
        }
        // The rest (tasks, work dir) is what dropping does.
    }
}

/// An agent's command modules; isolator state goes to
/// `<work_dir>/runtime/agent-<index>/isolators/command/<module_name>/`.
fn agent_modules(
    modules: &ModulesConfig,
    tmp: &std::path::Path,
    work_dir: &std::path::Path,
    index: usize,
) -> std::sync::Arc<CommandModules> {
    let state_root = work_dir
        .join("runtime")
        .join(format!("agent-{index}"))
        .join("isolators/command");
    std::sync::Arc::new(CommandModules::new(modules, Runner::new(tmp), &state_root))
}

/// Dropping the cluster (also when a test panics) leaves no executor or task running.
impl Drop for LocalCluster {
    fn drop(&mut self) {
        for a in &self.agents {
            a.kill_executors_now();
        }
        for t in &self.tasks {
            t.abort();
        }
        if self.remove_work_dir {
            let _ = std::fs::remove_dir_all(&self.work_dir);
        }
    }
}
