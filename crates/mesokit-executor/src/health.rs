//! Health checks (`TaskInfo.health_check`) and general checks (`TaskInfo.check`), the way the
//! Mesos executors run them: when to probe and what a result means are sans-IO state machines
//! ([`HealthChecker`], [`CheckRunner`]); the probes themselves are small async functions.
//!
//! The driver asks a machine when the next probe is due, runs the [`Probe`] with the machine's
//! timeout, and hands the result back; the machine says what to report (and, for a health
//! check, when to kill the task). Status helpers build the `TASK_RUNNING` updates Mesos sends.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};

use mesokit_proto::v1::environment::variable::Type as VarType;
use mesokit_proto::v1::task_status::{Reason, Source};
use mesokit_proto::v1::{
    CheckInfo, CheckStatusInfo, CommandInfo, HealthCheck, TaskId, TaskState, TaskStatus,
    check_info, check_status_info, health_check, network_info,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::launch;
use crate::process::{self, CommandSpec, Output, Signal, Termination};

/// Mesos defaults for unset `HealthCheck` / `CheckInfo` fields.
pub const DEFAULT_DELAY: Duration = Duration::from_secs(15);
/// Default time between the end of one probe and the start of the next.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);
/// Default bound of one probe.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(20);
/// Default number of consecutive failures that kills the task.
pub const DEFAULT_CONSECUTIVE_FAILURES: u32 = 3;
/// Default grace period, counted from the start (the delay included).
pub const DEFAULT_GRACE_PERIOD: Duration = Duration::from_secs(10);

/// Seconds from the wire as a `Duration`: unset gives the default; negative, NaN or absurd
/// values give zero rather than a panic.
fn seconds(value: Option<f64>, default: Duration) -> Duration {
    match value {
        None => default,
        Some(s) => Duration::try_from_secs_f64(s).unwrap_or(Duration::ZERO),
    }
}

/// When probes run: the first after `delay`, each next one `interval` after the end of the
/// previous one (Mesos measures the interval from the end, so probes never overlap).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// From the start to the first probe.
    pub delay: Duration,
    /// From the end of a probe to the start of the next.
    pub interval: Duration,
    /// The bound of one probe; `None` (a timeout of 0 on the wire) means unbounded.
    pub timeout: Option<Duration>,
}

impl Timing {
    fn new(delay: Option<f64>, interval: Option<f64>, timeout: Option<f64>) -> Timing {
        let timeout = seconds(timeout, DEFAULT_TIMEOUT);
        Timing {
            delay: seconds(delay, DEFAULT_DELAY),
            interval: seconds(interval, DEFAULT_INTERVAL),
            timeout: (!timeout.is_zero()).then_some(timeout),
        }
    }
}

/// Where a machine is between probes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Idle,
    Waiting(Instant),
    Probing,
    Stopped,
}

/// What the driver must do after a health probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HealthVerdict {
    /// Nothing to report.
    Nothing,
    /// Send `TASK_RUNNING` with this `healthy` (see [`health_status`]).
    Report {
        /// The task's health.
        healthy: bool,
        /// Why it is unhealthy (the probe's error), for `TaskStatus.message`.
        message: Option<String>,
    },
    /// Too many consecutive failures: send `TASK_RUNNING` with `healthy: false` (see
    /// [`health_status`]), then kill the task; its terminal update should carry
    /// `healthy: false` too. The checker has stopped.
    Kill {
        /// Why, for the status updates.
        message: String,
    },
}

/// The health-check rules of Mesos (`src/checks/health_checker.cpp`) with no IO: time and
/// probe results in, verdicts out.
///
/// * Failures during the grace period (counted from [`HealthChecker::start`], the delay
///   included) are ignored until the first success.
/// * A success reports `healthy: true` when it is the first one or follows failures.
/// * Every other failure counts and reports `healthy: false`; the `consecutive_failures`-th
///   in a row gives [`HealthVerdict::Kill`]. A success resets the count.
#[derive(Debug, Clone)]
pub struct HealthChecker {
    timing: Timing,
    grace: Duration,
    max_failures: u32,
    phase: Phase,
    started: Option<Instant>,
    failures: u32,
    succeeded: bool,
}

impl HealthChecker {
    /// A checker with the timing and thresholds of `check` (Mesos defaults where unset).
    pub fn new(check: &HealthCheck) -> HealthChecker {
        HealthChecker {
            timing: Timing::new(
                check.delay_seconds,
                check.interval_seconds,
                check.timeout_seconds,
            ),
            grace: seconds(check.grace_period_seconds, DEFAULT_GRACE_PERIOD),
            // 0 would mean "the first failure kills", just like 1.
            max_failures: check
                .consecutive_failures
                .unwrap_or(DEFAULT_CONSECUTIVE_FAILURES)
                .max(1),
            phase: Phase::Idle,
            started: None,
            failures: 0,
            succeeded: false,
        }
    }

    /// The timing in use; [`Timing::timeout`] bounds each probe.
    pub fn timing(&self) -> Timing {
        self.timing
    }

    /// The task is running: the grace period starts now, the first probe is due after the
    /// delay.
    pub fn start(&mut self, now: Instant) {
        self.started = Some(now);
        self.phase = Phase::Waiting(now + self.timing.delay);
    }

    /// No more probes (the task is being killed or has ended): Mesos sends no health updates
    /// then.
    pub fn stop(&mut self) {
        self.phase = Phase::Stopped;
    }

    /// When the next probe is due; `None` before the start, while a probe runs, and once
    /// stopped.
    pub fn next_probe_at(&self) -> Option<Instant> {
        match self.phase {
            Phase::Waiting(at) => Some(at),
            _ => None,
        }
    }

    /// Whether a probe is due at `now`; if so, the checker counts it as running until
    /// [`HealthChecker::probe_result`].
    pub fn poll_probe(&mut self, now: Instant) -> bool {
        match self.phase {
            Phase::Waiting(at) if at <= now => {
                self.phase = Phase::Probing;
                true
            }
            _ => false,
        }
    }

    /// Consecutive failures counted so far.
    pub fn consecutive_failures(&self) -> u32 {
        self.failures
    }

    /// The result of a probe that ended at `now`: `Err` holds why it failed.
    pub fn probe_result(&mut self, now: Instant, result: Result<(), String>) -> HealthVerdict {
        if self.phase == Phase::Stopped {
            return HealthVerdict::Nothing;
        }
        self.phase = Phase::Waiting(now + self.timing.interval);
        match result {
            Ok(()) => {
                let report = !self.succeeded || self.failures > 0;
                self.succeeded = true;
                self.failures = 0;
                if report {
                    HealthVerdict::Report {
                        healthy: true,
                        message: None,
                    }
                } else {
                    HealthVerdict::Nothing
                }
            }
            Err(reason) => {
                let started = self.started.unwrap_or(now);
                if !self.succeeded && now.saturating_duration_since(started) <= self.grace {
                    tracing::info!(%reason, "health check failed within the grace period: ignored");
                    return HealthVerdict::Nothing;
                }
                self.failures += 1;
                if self.failures >= self.max_failures {
                    self.phase = Phase::Stopped;
                    HealthVerdict::Kill {
                        message: format!(
                            "Task is unhealthy: {} consecutive health check failures, the last: \
                             {reason}",
                            self.failures
                        ),
                    }
                } else {
                    HealthVerdict::Report {
                        healthy: false,
                        message: Some(reason),
                    }
                }
            }
        }
    }
}

/// The general-check rules (`src/checks/checker_process.cpp`): probe on the schedule and
/// report only changes of the [`CheckStatusInfo`]; never kill.
#[derive(Debug, Clone)]
pub struct CheckRunner {
    timing: Timing,
    phase: Phase,
    kind: check_info::Type,
    last: CheckStatusInfo,
}

impl CheckRunner {
    /// A runner with the timing of `check` (Mesos defaults where unset).
    pub fn new(check: &CheckInfo) -> CheckRunner {
        let kind = check_kind(check);
        CheckRunner {
            timing: Timing::new(
                check.delay_seconds,
                check.interval_seconds,
                check.timeout_seconds,
            ),
            phase: Phase::Idle,
            kind,
            last: empty_check_status(kind),
        }
    }

    /// The timing in use; [`Timing::timeout`] bounds each probe.
    pub fn timing(&self) -> Timing {
        self.timing
    }

    /// The status before any result: the type with an empty result, which Mesos puts in the
    /// first `TASK_RUNNING` of a task that has a check.
    pub fn initial_status(&self) -> CheckStatusInfo {
        empty_check_status(self.kind)
    }

    /// The last status reported (or [`CheckRunner::initial_status`]).
    pub fn last_status(&self) -> &CheckStatusInfo {
        &self.last
    }

    /// The first probe is due after the delay.
    pub fn start(&mut self, now: Instant) {
        self.phase = Phase::Waiting(now + self.timing.delay);
    }

    /// No more probes (the task is being killed or has ended).
    pub fn stop(&mut self) {
        self.phase = Phase::Stopped;
    }

    /// When the next probe is due; `None` before the start, while a probe runs, and once
    /// stopped.
    pub fn next_probe_at(&self) -> Option<Instant> {
        match self.phase {
            Phase::Waiting(at) => Some(at),
            _ => None,
        }
    }

    /// Whether a probe is due at `now`; if so, it counts as running until
    /// [`CheckRunner::probe_result`].
    pub fn poll_probe(&mut self, now: Instant) -> bool {
        match self.phase {
            Phase::Waiting(at) if at <= now => {
                self.phase = Phase::Probing;
                true
            }
            _ => false,
        }
    }

    /// The result of a probe that ended at `now`. A probe that could not run (timeout,
    /// spawn error) gives the empty status of its type, as in Mesos. Returns the new status
    /// when it differs from the last one: send it with [`check_status`].
    pub fn probe_result(
        &mut self,
        now: Instant,
        result: Result<CheckStatusInfo, ProbeError>,
    ) -> Option<CheckStatusInfo> {
        if self.phase == Phase::Stopped {
            return None;
        }
        self.phase = Phase::Waiting(now + self.timing.interval);
        let status = result.unwrap_or_else(|e| {
            tracing::warn!(error = %e, "check could not be performed");
            empty_check_status(self.kind)
        });
        if status == self.last {
            return None;
        }
        self.last = status;
        Some(status)
    }
}

fn check_kind(check: &CheckInfo) -> check_info::Type {
    match check
        .r#type
        .and_then(|t| check_info::Type::try_from(t).ok())
    {
        Some(t) if t != check_info::Type::Unknown => t,
        _ if check.command.is_some() => check_info::Type::Command,
        _ if check.http.is_some() => check_info::Type::Http,
        _ if check.tcp.is_some() => check_info::Type::Tcp,
        _ => check_info::Type::Unknown,
    }
}

fn empty_check_status(kind: check_info::Type) -> CheckStatusInfo {
    let mut status = CheckStatusInfo {
        r#type: Some(kind as i32),
        ..Default::default()
    };
    match kind {
        check_info::Type::Command => status.command = Some(Default::default()),
        check_info::Type::Http => status.http = Some(Default::default()),
        check_info::Type::Tcp => status.tcp = Some(Default::default()),
        check_info::Type::Unknown => {}
    }
    status
}

/// A `TASK_RUNNING` health update: `healthy` and reason `TASK_HEALTH_CHECK_STATUS_UPDATED`.
/// The sender adds `uuid`, `timestamp`, `executor_id` and, as Mesos does, the task's latest
/// `check_status`.
pub fn health_status(task_id: &TaskId, healthy: bool, message: Option<String>) -> TaskStatus {
    TaskStatus {
        task_id: task_id.clone(),
        state: TaskState::TaskRunning as i32,
        message,
        source: Some(Source::Executor as i32),
        reason: Some(Reason::TaskHealthCheckStatusUpdated as i32),
        healthy: Some(healthy),
        ..Default::default()
    }
}

/// A `TASK_RUNNING` check update: `check_status` and reason `TASK_CHECK_STATUS_UPDATED`. The
/// sender adds `uuid`, `timestamp`, `executor_id` and the task's latest `healthy`, if any.
pub fn check_status(task_id: &TaskId, status: CheckStatusInfo) -> TaskStatus {
    TaskStatus {
        task_id: task_id.clone(),
        state: TaskState::TaskRunning as i32,
        source: Some(Source::Executor as i32),
        reason: Some(Reason::TaskCheckStatusUpdated as i32),
        check_status: Some(status),
        ..Default::default()
    }
}

/// A check or health check the executor cannot run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidCheck {
    /// Neither the type nor any of `command`, `http`, `tcp` says what to probe.
    #[error("the check has no type and none of command, http or tcp is set")]
    NoProbe,
    /// The type names a field that is not set.
    #[error("the check's type is {0} but its {1} field is not set")]
    MissingField(&'static str, &'static str),
    /// The command has no value.
    #[error("the check's command has no value (a script, or the program when shell=false)")]
    NoCommandValue,
    /// A port outside 1..=65535.
    #[error("the check's port {0} is not a TCP port (1-65535)")]
    BadPort(u32),
    /// Only plain http is probed.
    #[error(
        "HTTP check scheme {0:?} is not supported by this executor (it has no TLS): use http, \
         or a TCP or COMMAND check"
    )]
    UnsupportedScheme(String),
}

/// Why a probe could not give a result.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProbeError {
    /// The probe ran past its timeout (a command's process group has been killed).
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// No connection.
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        /// Where to.
        addr: SocketAddr,
        /// Why not.
        source: io::Error,
    },
    /// The connection broke during the HTTP exchange.
    #[error("HTTP exchange with {addr} failed: {source}")]
    Exchange {
        /// With whom.
        addr: SocketAddr,
        /// What broke.
        source: io::Error,
    },
    /// The answer is not HTTP.
    #[error("{addr} did not answer with an HTTP status line: {line:?}")]
    NotHttp {
        /// Who answered.
        addr: SocketAddr,
        /// The start of the answer.
        line: String,
    },
    /// The check command could not be started or waited for.
    #[error("{0}")]
    Command(io::Error),
}

/// What to probe, built from a `HealthCheck` or a `CheckInfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// Run a command; exit status 0 is healthy.
    Command(CommandSpec),
    /// `GET http://<ip>:<port><path>`.
    Http {
        /// 127.0.0.1 or ::1.
        ip: IpAddr,
        /// The port.
        port: u16,
        /// The path, starting with `/`.
        path: String,
        /// Healthy status codes; empty means 200-399.
        statuses: Vec<u32>,
    },
    /// Connect to `<ip>:<port>`.
    Tcp {
        /// 127.0.0.1 or ::1.
        ip: IpAddr,
        /// The port.
        port: u16,
    },
}

impl Probe {
    /// The probe of a health check. The type comes from `type`, else from the first field set
    /// of command, http, tcp (Mesos 1.0 health checks had no type). `executor_env` and
    /// `cwd` are the environment and directory of a COMMAND check (the task's sandbox).
    pub fn from_health_check(
        check: &HealthCheck,
        executor_env: &[(String, String)],
        cwd: Option<&Path>,
    ) -> Result<Probe, InvalidCheck> {
        use health_check::Type;
        let kind = match check.r#type.and_then(|t| Type::try_from(t).ok()) {
            Some(t) if t != Type::Unknown => t,
            _ if check.command.is_some() => Type::Command,
            _ if check.http.is_some() => Type::Http,
            _ if check.tcp.is_some() => Type::Tcp,
            _ => return Err(InvalidCheck::NoProbe),
        };
        match kind {
            Type::Command => {
                let command = check
                    .command
                    .as_ref()
                    .ok_or(InvalidCheck::MissingField("COMMAND", "command"))?;
                Ok(Probe::Command(command_spec(command, executor_env, cwd)?))
            }
            Type::Http => {
                let http = check
                    .http
                    .as_ref()
                    .ok_or(InvalidCheck::MissingField("HTTP", "http"))?;
                match http.scheme.as_deref() {
                    None | Some("") | Some("http") => {}
                    Some(other) => return Err(InvalidCheck::UnsupportedScheme(other.to_owned())),
                }
                Ok(Probe::Http {
                    ip: loopback(http.protocol),
                    port: port(http.port)?,
                    path: normalize_path(http.path.as_deref()),
                    statuses: http.statuses.clone(),
                })
            }
            Type::Tcp => {
                let tcp = check
                    .tcp
                    .as_ref()
                    .ok_or(InvalidCheck::MissingField("TCP", "tcp"))?;
                Ok(Probe::Tcp {
                    ip: loopback(tcp.protocol),
                    port: port(tcp.port)?,
                })
            }
            Type::Unknown => Err(InvalidCheck::NoProbe),
        }
    }

    /// The probe of a general check; see [`Probe::from_health_check`].
    pub fn from_check_info(
        check: &CheckInfo,
        executor_env: &[(String, String)],
        cwd: Option<&Path>,
    ) -> Result<Probe, InvalidCheck> {
        match check_kind(check) {
            check_info::Type::Command => {
                let command = check
                    .command
                    .as_ref()
                    .ok_or(InvalidCheck::MissingField("COMMAND", "command"))?;
                Ok(Probe::Command(command_spec(
                    &command.command,
                    executor_env,
                    cwd,
                )?))
            }
            check_info::Type::Http => {
                let http = check
                    .http
                    .as_ref()
                    .ok_or(InvalidCheck::MissingField("HTTP", "http"))?;
                Ok(Probe::Http {
                    ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
                    port: port(http.port)?,
                    path: normalize_path(http.path.as_deref()),
                    statuses: Vec::new(),
                })
            }
            check_info::Type::Tcp => {
                let tcp = check
                    .tcp
                    .as_ref()
                    .ok_or(InvalidCheck::MissingField("TCP", "tcp"))?;
                Ok(Probe::Tcp {
                    ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
                    port: port(tcp.port)?,
                })
            }
            check_info::Type::Unknown => Err(InvalidCheck::NoProbe),
        }
    }

    /// Runs the probe as a health check: `Err` says why the task is unhealthy.
    pub async fn health(&self, timeout: Option<Duration>) -> Result<(), String> {
        match self {
            Probe::Command(spec) => match run_command(spec, timeout).await {
                Ok(Termination::Exited(0)) => Ok(()),
                Ok(how) => Err(format!("health check command {}", describe(how))),
                Err(e) => Err(format!("health check command: {e}")),
            },
            Probe::Http {
                ip,
                port,
                path,
                statuses,
            } => {
                let url = format!("http://{}{path}", SocketAddr::new(*ip, *port));
                let code = http_status(*ip, *port, path, timeout)
                    .await
                    .map_err(|e| format!("GET {url}: {e}"))?;
                if http_healthy(code, statuses) {
                    Ok(())
                } else {
                    Err(format!("GET {url} returned status {code}"))
                }
            }
            Probe::Tcp { ip, port } => tcp_connect(*ip, *port, timeout)
                .await
                .map_err(|e| format!("TCP health check: {e}")),
        }
    }

    /// Runs the probe as a general check: the command's exit code, the HTTP status code, or
    /// whether the TCP connection succeeded.
    pub async fn check(&self, timeout: Option<Duration>) -> Result<CheckStatusInfo, ProbeError> {
        match self {
            Probe::Command(spec) => {
                let exit_code = match run_command(spec, timeout).await? {
                    Termination::Exited(code) => code,
                    // As a shell reports it.
                    Termination::Signaled(sig) => 128 + sig,
                };
                Ok(CheckStatusInfo {
                    r#type: Some(check_info::Type::Command as i32),
                    command: Some(check_status_info::Command {
                        exit_code: Some(exit_code),
                    }),
                    ..Default::default()
                })
            }
            Probe::Http { ip, port, path, .. } => {
                let code = http_status(*ip, *port, path, timeout).await?;
                Ok(CheckStatusInfo {
                    r#type: Some(check_info::Type::Http as i32),
                    http: Some(check_status_info::Http {
                        status_code: Some(u32::from(code)),
                    }),
                    ..Default::default()
                })
            }
            Probe::Tcp { ip, port } => {
                let succeeded = match tcp_connect(*ip, *port, timeout).await {
                    Ok(()) => true,
                    Err(ProbeError::Connect { .. }) => false,
                    Err(e) => return Err(e),
                };
                Ok(CheckStatusInfo {
                    r#type: Some(check_info::Type::Tcp as i32),
                    tcp: Some(check_status_info::Tcp {
                        succeeded: Some(succeeded),
                    }),
                    ..Default::default()
                })
            }
        }
    }
}

fn describe(how: Termination) -> String {
    match how {
        Termination::Exited(code) => format!("exited with status {code}"),
        Termination::Signaled(sig) => format!("was killed by {}", process::signal_text(sig)),
    }
}

fn port(port: u32) -> Result<u16, InvalidCheck> {
    u16::try_from(port)
        .ok()
        .filter(|p| *p != 0)
        .ok_or(InvalidCheck::BadPort(port))
}

fn loopback(protocol: Option<i32>) -> IpAddr {
    if protocol == Some(network_info::Protocol::IPv6 as i32) {
        IpAddr::V6(Ipv6Addr::LOCALHOST)
    } else {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    }
}

fn normalize_path(path: Option<&str>) -> String {
    match path {
        None | Some("") => "/".to_owned(),
        Some(p) if p.starts_with('/') => p.to_owned(),
        Some(p) => format!("/{p}"),
    }
}

/// Whether `code` is healthy: one of `statuses`, or 200-399 when there are none (as curl
/// with `-L` sees a redirect, and as Mesos counts it).
pub fn http_healthy(code: u16, statuses: &[u32]) -> bool {
    if statuses.is_empty() {
        (200..400).contains(&code)
    } else {
        statuses.contains(&u32::from(code))
    }
}

/// The process of a COMMAND check, built like a task's: the executor's environment without
/// its own secrets, `PATH` if missing, then the VALUE variables of the check's command.
fn command_spec(
    command: &CommandInfo,
    executor_env: &[(String, String)],
    cwd: Option<&Path>,
) -> Result<CommandSpec, InvalidCheck> {
    let value = command
        .value
        .as_deref()
        .filter(|v| !v.is_empty())
        .ok_or(InvalidCheck::NoCommandValue)?;
    let mut env = launch::base_env(executor_env);
    for var in command.environment.iter().flat_map(|e| &e.variables) {
        if matches!(
            var.r#type.map(VarType::try_from),
            None | Some(Ok(VarType::Value))
        ) {
            launch::set(&mut env, &var.name, var.value.as_deref().unwrap_or(""));
        }
    }
    let (program, argv0, args) = launch::program_and_args(command, value);
    Ok(CommandSpec {
        program,
        argv0,
        args,
        env,
        cwd: cwd.map(Path::to_path_buf),
        create_cwd: false,
        stdout: Output::Inherit,
        stderr: Output::Inherit,
        die_with_parent: true,
    })
}

/// Runs `spec` (in a session of its own) to its end; past `timeout` its whole process tree
/// is SIGKILLed and reaped, and the result is [`ProbeError::Timeout`].
pub async fn run_command(
    spec: &CommandSpec,
    timeout: Option<Duration>,
) -> Result<Termination, ProbeError> {
    let mut child = process::spawn(spec).await.map_err(ProbeError::Command)?;
    let status = match timeout {
        None => child.wait().await,
        Some(limit) => match tokio::time::timeout(limit, child.wait()).await {
            Ok(status) => status,
            Err(_) => {
                if let Some(pid) = child.id() {
                    let _ = process::signal_tree(pid, Signal::Kill);
                }
                let _ = child.start_kill();
                let _ = child.wait().await;
                return Err(ProbeError::Timeout(limit));
            }
        },
    }
    .map_err(ProbeError::Command)?;
    Ok(termination(status))
}

fn termination(status: std::process::ExitStatus) -> Termination {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => Termination::Exited(code),
        (None, Some(sig)) => Termination::Signaled(sig),
        (None, None) => Termination::Exited(-1),
    }
}

async fn bounded<T>(
    timeout: Option<Duration>,
    work: impl Future<Output = Result<T, ProbeError>>,
) -> Result<T, ProbeError> {
    match timeout {
        None => work.await,
        Some(limit) => tokio::time::timeout(limit, work)
            .await
            .unwrap_or(Err(ProbeError::Timeout(limit))),
    }
}

/// Connects to `ip:port` within `timeout`.
pub async fn tcp_connect(
    ip: IpAddr,
    port: u16,
    timeout: Option<Duration>,
) -> Result<(), ProbeError> {
    let addr = SocketAddr::new(ip, port);
    bounded(timeout, async move {
        TcpStream::connect(addr)
            .await
            .map(drop)
            .map_err(|source| ProbeError::Connect { addr, source })
    })
    .await
}

/// `GET <path>` on `ip:port` over HTTP/1.0 within `timeout`; the status code of the answer.
/// Redirects are not followed: a 3xx is an answer like any other.
pub async fn http_status(
    ip: IpAddr,
    port: u16,
    path: &str,
    timeout: Option<Duration>,
) -> Result<u16, ProbeError> {
    let addr = SocketAddr::new(ip, port);
    bounded(timeout, async move {
        let mut stream = TcpStream::connect(addr)
            .await
            .map_err(|source| ProbeError::Connect { addr, source })?;
        let exchange = |source| ProbeError::Exchange { addr, source };
        let request = format!(
            "GET {path} HTTP/1.0\r\nHost: {addr}\r\nUser-Agent: mesokit-health-check\r\n\
             Accept: */*\r\nConnection: close\r\n\r\n"
        );
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(exchange)?;
        // Only the status line matters; it fits well within 1 KiB.
        let mut buf = Vec::with_capacity(256);
        let mut chunk = [0u8; 256];
        while !buf.contains(&b'\n') && buf.len() < 1024 {
            let n = stream.read(&mut chunk).await.map_err(exchange)?;
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        let line = buf.split(|b| *b == b'\n').next().unwrap_or_default();
        let line = String::from_utf8_lossy(line).trim_end().to_owned();
        parse_status_line(&line).ok_or(ProbeError::NotHttp { addr, line })
    })
    .await
}

/// `HTTP/1.x NNN reason` → `NNN`.
fn parse_status_line(line: &str) -> Option<u16> {
    let mut parts = line.split_whitespace();
    let version = parts.next()?;
    if !version.starts_with("HTTP/") {
        return None;
    }
    let code = parts.next()?;
    if code.len() != 3 {
        return None;
    }
    code.parse().ok().filter(|c| (100..600).contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    fn hc(consecutive: u32, grace: f64) -> HealthCheck {
        HealthCheck {
            delay_seconds: Some(1.0),
            interval_seconds: Some(2.0),
            timeout_seconds: Some(1.0),
            consecutive_failures: Some(consecutive),
            grace_period_seconds: Some(grace),
            ..Default::default()
        }
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    fn report(healthy: bool, message: Option<&str>) -> HealthVerdict {
        HealthVerdict::Report {
            healthy,
            message: message.map(str::to_owned),
        }
    }

    #[test]
    fn defaults_are_the_mesos_ones() {
        let c = HealthChecker::new(&HealthCheck::default());
        assert_eq!(
            c.timing(),
            Timing {
                delay: secs(15),
                interval: secs(10),
                timeout: Some(secs(20)),
            }
        );
        assert_eq!(c.grace, secs(10));
        assert_eq!(c.max_failures, 3);
        let r = CheckRunner::new(&CheckInfo::default());
        assert_eq!(r.timing(), c.timing());
        let zero = HealthChecker::new(&HealthCheck {
            timeout_seconds: Some(0.0),
            delay_seconds: Some(-3.0),
            ..Default::default()
        });
        assert_eq!(zero.timing().timeout, None);
        assert_eq!(zero.timing().delay, Duration::ZERO);
    }

    #[test]
    fn schedule_delay_then_interval_from_the_end_of_each_probe() {
        let t0 = Instant::now();
        let mut c = HealthChecker::new(&hc(3, 0.0));
        assert_eq!(c.next_probe_at(), None);
        assert!(!c.poll_probe(t0));
        c.start(t0);
        assert_eq!(c.next_probe_at(), Some(t0 + secs(1)));
        assert!(!c.poll_probe(t0));
        assert!(c.poll_probe(t0 + secs(1)));
        // In flight: nothing due, no second probe.
        assert_eq!(c.next_probe_at(), None);
        assert!(!c.poll_probe(t0 + secs(5)));
        c.probe_result(t0 + secs(3), Ok(()));
        assert_eq!(c.next_probe_at(), Some(t0 + secs(5)));
        c.stop();
        assert_eq!(c.next_probe_at(), None);
        assert_eq!(
            c.probe_result(t0 + secs(6), Err("late".into())),
            HealthVerdict::Nothing
        );
    }

    #[test]
    fn failures_in_grace_are_ignored_until_the_first_success() {
        let t0 = Instant::now();
        let mut c = HealthChecker::new(&hc(1, 10.0));
        c.start(t0);
        for s in [1, 3, 5, 10] {
            assert_eq!(
                c.probe_result(t0 + secs(s), Err("refused".into())),
                HealthVerdict::Nothing
            );
        }
        assert_eq!(c.consecutive_failures(), 0);
        // Past the grace period, a failure counts (and with a threshold of 1, kills).
        assert_eq!(
            c.probe_result(t0 + secs(11), Err("refused".into())),
            HealthVerdict::Kill {
                message: "Task is unhealthy: 1 consecutive health check failures, the last: \
                          refused"
                    .into()
            }
        );
        assert_eq!(c.next_probe_at(), None);
    }

    #[test]
    fn a_success_ends_the_grace_period() {
        let t0 = Instant::now();
        let mut c = HealthChecker::new(&hc(2, 60.0));
        c.start(t0);
        assert_eq!(c.probe_result(t0 + secs(1), Ok(())), report(true, None));
        assert_eq!(
            c.probe_result(t0 + secs(3), Err("500".into())),
            report(false, Some("500"))
        );
        assert!(matches!(
            c.probe_result(t0 + secs(5), Err("500".into())),
            HealthVerdict::Kill { .. }
        ));
    }

    #[test]
    fn first_success_reports_then_only_changes() {
        let t0 = Instant::now();
        let mut c = HealthChecker::new(&hc(3, 0.0));
        c.start(t0);
        assert_eq!(c.probe_result(t0 + secs(1), Ok(())), report(true, None));
        assert_eq!(c.probe_result(t0 + secs(3), Ok(())), HealthVerdict::Nothing);
        assert_eq!(
            c.probe_result(t0 + secs(5), Err("down".into())),
            report(false, Some("down"))
        );
        assert_eq!(c.consecutive_failures(), 1);
        // The first success after failures reports, and resets the count.
        assert_eq!(c.probe_result(t0 + secs(7), Ok(())), report(true, None));
        assert_eq!(c.consecutive_failures(), 0);
        assert_eq!(c.probe_result(t0 + secs(9), Ok(())), HealthVerdict::Nothing);
    }

    #[test]
    fn consecutive_failures_kill_and_stop() {
        let t0 = Instant::now();
        let mut c = HealthChecker::new(&hc(3, 0.0));
        c.start(t0);
        assert_eq!(
            c.probe_result(t0 + secs(1), Err("a".into())),
            report(false, Some("a"))
        );
        assert_eq!(
            c.probe_result(t0 + secs(3), Err("b".into())),
            report(false, Some("b"))
        );
        // A success in between resets the count: two more failures do not kill.
        assert_eq!(c.probe_result(t0 + secs(5), Ok(())), report(true, None));
        c.probe_result(t0 + secs(7), Err("c".into()));
        c.probe_result(t0 + secs(9), Err("d".into()));
        assert_eq!(c.consecutive_failures(), 2);
        assert!(c.next_probe_at().is_some());
        match c.probe_result(t0 + secs(11), Err("e".into())) {
            HealthVerdict::Kill { message } => {
                assert!(message.contains("3 consecutive"), "{message}");
                assert!(message.ends_with(": e"), "{message}");
            }
            other => panic!("expected a kill, got {other:?}"),
        }
        assert_eq!(c.next_probe_at(), None);
        assert_eq!(
            c.probe_result(t0 + secs(13), Ok(())),
            HealthVerdict::Nothing
        );
    }

    fn tcp_status(succeeded: bool) -> CheckStatusInfo {
        CheckStatusInfo {
            r#type: Some(check_info::Type::Tcp as i32),
            tcp: Some(check_status_info::Tcp {
                succeeded: Some(succeeded),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn checks_report_changes_only() {
        let t0 = Instant::now();
        let info = CheckInfo {
            tcp: Some(check_info::Tcp { port: 80 }),
            delay_seconds: Some(0.0),
            interval_seconds: Some(1.0),
            ..Default::default()
        };
        let mut r = CheckRunner::new(&info);
        let initial = r.initial_status();
        assert_eq!(initial.r#type, Some(check_info::Type::Tcp as i32));
        assert_eq!(
            initial.tcp,
            Some(check_status_info::Tcp { succeeded: None })
        );
        r.start(t0);
        assert!(r.poll_probe(t0));
        // A probe that could not run gives the empty status: no change from the initial one.
        assert_eq!(r.probe_result(t0, Err(ProbeError::Timeout(secs(1)))), None);
        assert_eq!(r.next_probe_at(), Some(t0 + secs(1)));
        assert_eq!(
            r.probe_result(t0 + secs(1), Ok(tcp_status(true))),
            Some(tcp_status(true))
        );
        assert_eq!(r.probe_result(t0 + secs(2), Ok(tcp_status(true))), None);
        assert_eq!(
            r.probe_result(t0 + secs(3), Ok(tcp_status(false))),
            Some(tcp_status(false))
        );
        assert_eq!(r.last_status(), &tcp_status(false));
        assert_eq!(
            r.probe_result(t0 + secs(4), Err(ProbeError::Timeout(secs(1)))),
            Some(initial)
        );
        r.stop();
        assert_eq!(r.probe_result(t0 + secs(5), Ok(tcp_status(true))), None);
    }

    #[test]
    fn status_helpers_set_state_reason_and_field() {
        let id = TaskId { value: "t1".into() };
        let h = health_status(&id, false, Some("down".into()));
        assert_eq!(h.state, TaskState::TaskRunning as i32);
        assert_eq!(h.reason, Some(Reason::TaskHealthCheckStatusUpdated as i32));
        assert_eq!(h.healthy, Some(false));
        assert_eq!(h.message.as_deref(), Some("down"));
        assert_eq!(h.source, Some(Source::Executor as i32));
        let c = check_status(&id, tcp_status(true));
        assert_eq!(c.state, TaskState::TaskRunning as i32);
        assert_eq!(c.reason, Some(Reason::TaskCheckStatusUpdated as i32));
        assert_eq!(c.check_status, Some(tcp_status(true)));
        assert_eq!(c.healthy, None);
    }

    #[test]
    fn probes_from_health_checks() {
        let http = HealthCheck {
            r#type: Some(health_check::Type::Http as i32),
            http: Some(health_check::HttpCheckInfo {
                port: 8080,
                path: Some("health".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(
            Probe::from_health_check(&http, &[], None),
            Ok(Probe::Http {
                ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
                port: 8080,
                path: "/health".into(),
                statuses: vec![],
            })
        );
        let mut https = http.clone();
        https.http.as_mut().unwrap().scheme = Some("https".into());
        let err = Probe::from_health_check(&https, &[], None).unwrap_err();
        assert_eq!(err, InvalidCheck::UnsupportedScheme("https".into()));
        assert!(err.to_string().contains("not supported"), "{err}");
        let mut big = http.clone();
        big.http.as_mut().unwrap().port = 70000;
        assert_eq!(
            Probe::from_health_check(&big, &[], None),
            Err(InvalidCheck::BadPort(70000))
        );
        // No type: the first field set decides (Mesos 1.0 style).
        let tcp = HealthCheck {
            tcp: Some(health_check::TcpCheckInfo {
                port: 9,
                protocol: Some(network_info::Protocol::IPv6 as i32),
            }),
            ..Default::default()
        };
        assert_eq!(
            Probe::from_health_check(&tcp, &[], None),
            Ok(Probe::Tcp {
                ip: IpAddr::V6(Ipv6Addr::LOCALHOST),
                port: 9,
            })
        );
        assert_eq!(
            Probe::from_health_check(&HealthCheck::default(), &[], None),
            Err(InvalidCheck::NoProbe)
        );
        let cmd = HealthCheck {
            command: Some(CommandInfo {
                value: Some("true".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let env = vec![
            (
                "MESOS_EXECUTOR_AUTHENTICATION_TOKEN".to_owned(),
                "x".to_owned(),
            ),
            ("HOME".to_owned(), "/h".to_owned()),
        ];
        match Probe::from_health_check(&cmd, &env, None) {
            Ok(Probe::Command(spec)) => {
                assert_eq!(spec.program, "/bin/sh");
                assert_eq!(spec.args, ["-c", "true"]);
                assert!(spec.env.iter().any(|(k, _)| k == "HOME"));
                assert!(spec.env.iter().any(|(k, _)| k == "PATH"));
                assert!(
                    !spec
                        .env
                        .iter()
                        .any(|(k, _)| k.starts_with("MESOS_EXECUTOR"))
                );
            }
            other => panic!("expected a command probe, got {other:?}"),
        }
    }

    #[test]
    fn status_lines() {
        assert_eq!(parse_status_line("HTTP/1.1 200 OK"), Some(200));
        assert_eq!(parse_status_line("HTTP/1.0 503"), Some(503));
        assert_eq!(parse_status_line("SSH-2.0-OpenSSH"), None);
        assert_eq!(parse_status_line("HTTP/1.1 2000 OK"), None);
        assert!(http_healthy(302, &[]));
        assert!(!http_healthy(404, &[]));
        assert!(http_healthy(404, &[404]));
        assert!(!http_healthy(200, &[204]));
    }

    /// A one-connection-at-a-time HTTP server on an ephemeral port: answers every request
    /// with `status`, or never answers when `status` is `None`.
    async fn server(status: Option<u16>) -> u16 {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            loop {
                let Ok((mut conn, _)) = listener.accept().await else {
                    return;
                };
                tokio::spawn(async move {
                    let mut buf = [0u8; 1024];
                    let _ = conn.read(&mut buf).await;
                    match status {
                        Some(code) => {
                            let answer = format!("HTTP/1.0 {code} X\r\nContent-Length: 0\r\n\r\n");
                            let _ = conn.write_all(answer.as_bytes()).await;
                        }
                        // Holds the connection open until the client gives up.
                        None => {
                            let _ = conn.read(&mut buf).await;
                        }
                    }
                });
            }
        });
        port
    }

    fn http_probe(port: u16) -> Probe {
        Probe::Http {
            ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port,
            path: "/health".into(),
            statuses: vec![],
        }
    }

    /// A port nothing listens on (bound, then released).
    async fn closed_port() -> u16 {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        listener.local_addr().unwrap().port()
    }

    const LIMIT: Option<Duration> = Some(Duration::from_secs(5));

    #[tokio::test]
    async fn http_probe_200_is_healthy() {
        let port = server(Some(200)).await;
        assert_eq!(http_probe(port).health(LIMIT).await, Ok(()));
        let status = http_probe(port).check(LIMIT).await.unwrap();
        assert_eq!(
            status.http,
            Some(check_status_info::Http {
                status_code: Some(200)
            })
        );
    }

    #[tokio::test]
    async fn http_probe_500_is_unhealthy() {
        let port = server(Some(500)).await;
        let err = http_probe(port).health(LIMIT).await.unwrap_err();
        assert!(err.contains("returned status 500"), "{err}");
    }

    #[tokio::test]
    async fn http_probe_connection_refused() {
        let port = closed_port().await;
        let err = http_probe(port).health(LIMIT).await.unwrap_err();
        assert!(err.contains("cannot connect to 127.0.0.1:"), "{err}");
        assert!(
            err.contains(&format!("GET http://127.0.0.1:{port}/health")),
            "{err}"
        );
    }

    #[tokio::test]
    async fn http_probe_slow_server_times_out() {
        let port = server(None).await;
        let limit = Some(Duration::from_millis(200));
        let err = http_probe(port).health(limit).await.unwrap_err();
        assert!(err.contains("timed out after 200ms"), "{err}");
        assert!(matches!(
            http_probe(port).check(limit).await,
            Err(ProbeError::Timeout(_))
        ));
    }

    #[tokio::test]
    async fn tcp_probe_open_and_closed() {
        let open = server(Some(200)).await;
        let probe = Probe::Tcp {
            ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port: open,
        };
        assert_eq!(probe.health(LIMIT).await, Ok(()));
        assert_eq!(probe.check(LIMIT).await.unwrap(), tcp_status(true));
        let closed = Probe::Tcp {
            ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port: closed_port().await,
        };
        let err = closed.health(LIMIT).await.unwrap_err();
        assert!(err.contains("cannot connect"), "{err}");
        assert_eq!(closed.check(LIMIT).await.unwrap(), tcp_status(false));
    }

    fn shell(script: &str) -> Probe {
        let check = HealthCheck {
            command: Some(CommandInfo {
                value: Some(script.into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        Probe::from_health_check(&check, &crate::launch::process_env(), None).unwrap()
    }

    #[tokio::test]
    async fn command_probe_exit_codes() {
        assert_eq!(shell("true").health(LIMIT).await, Ok(()));
        let err = shell("false").health(LIMIT).await.unwrap_err();
        assert!(err.contains("exited with status 1"), "{err}");
        let status = shell("exit 3").check(LIMIT).await.unwrap();
        assert_eq!(
            status.command,
            Some(check_status_info::Command { exit_code: Some(3) })
        );
        // Not through a shell: argv as given.
        let argv = HealthCheck {
            command: Some(CommandInfo {
                shell: Some(false),
                value: Some("/bin/sh".into()),
                arguments: vec!["sh".into(), "-c".into(), "exit 0".into()],
                ..Default::default()
            }),
            ..Default::default()
        };
        let probe = Probe::from_health_check(&argv, &crate::launch::process_env(), None).unwrap();
        assert_eq!(probe.health(LIMIT).await, Ok(()));
    }

    #[tokio::test]
    async fn command_probe_timeout_kills_the_group() {
        let limit = Some(Duration::from_millis(200));
        let pid_file =
            std::env::temp_dir().join(format!("mesokit-health-{}-timeout.pid", std::process::id()));
        let script = format!("sleep 5 & echo $! > {}; wait", pid_file.display());
        let err = shell(&script).health(limit).await.unwrap_err();
        assert!(err.contains("timed out after 200ms"), "{err}");
        // The shell's child went down with it: the kill reached the whole group.
        let pid = std::fs::read_to_string(&pid_file).unwrap();
        let _ = std::fs::remove_file(&pid_file);
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", pid.trim()));
        if let Ok(stat) = stat {
            let state = stat.rsplit(')').next().unwrap_or_default().trim_start();
            assert!(state.starts_with('Z'), "sleep still alive: {stat}");
        }
    }

    #[tokio::test]
    async fn command_probe_spawn_error_is_clear() {
        let argv = HealthCheck {
            command: Some(CommandInfo {
                shell: Some(false),
                value: Some("/nonexistent/probe".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let probe = Probe::from_health_check(&argv, &[], None).unwrap();
        let err = probe.health(LIMIT).await.unwrap_err();
        assert!(err.contains("/nonexistent/probe"), "{err}");
    }
}
