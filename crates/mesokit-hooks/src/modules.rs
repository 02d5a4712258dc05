//! Criteo `mesos-command-modules` configuration: reads the agent's `--modules` value (a
//! `modules.json` path or inline JSON, as Mesos accepts both) into typed hook and isolator
//! modules, and picks the ones named by `--hooks` / `--isolation`.
//!
//! Stricter than Criteo on purpose, so that a typo fails at startup instead of silently
//! disabling a command: unknown keys, unknown fields, non-Criteo module names, repeated keys,
//! repeated module names and timeouts that are not plain integers (`"10s"`, which `stoul`
//! reads as 10) are errors. Accepted beyond Criteo master: the legacy keys of v0.0.1
//! (`slave_run_task_label_decorator`, …) and v0.2.0 (`hook_slave_…`, `isolator_prepare`, …),
//! mapped to the same methods with the default timeout. Two isolators with the same
//! `module_name` are refused too: Criteo would have them share one state directory.
//!
//! ```
//! use mesokit_hooks::modules::{self, Method};
//!
//! let cfg = modules::parse(r#"{"libraries": [{"file": "/usr/lib/libmesos_command_modules.so",
//!     "modules": [{"name": "com_criteo_mesos_CommandIsolator2", "parameters": [
//!         {"key": "isolator_prepare_command", "value": "/opt/prepare.sh"},
//!         {"key": "isolator_prepare_timeout", "value": "10"},
//!         {"key": "module_name", "value": "consul"}]}]}]}"#)?;
//! let cfg = modules::select(&cfg, &[], &["filesystem/linux", "com_criteo_mesos_CommandIsolator2"])?;
//! let prepare = &cfg.isolators[0].commands[&Method::Prepare];
//! assert_eq!(prepare.command, "/opt/prepare.sh");
//! assert_eq!(prepare.timeout.as_secs(), 10);
//! # Ok::<(), modules::ConfigError>(())
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// Timeout of a command with no `<prefix>_timeout` key: Criteo's `DEFAULT_COMMAND_TIMEOUT`.
pub use crate::runner::DEFAULT_TIMEOUT;

/// Pause between watch runs with no `isolator_watch_frequence` key: Criteo's
/// `DEFAULT_COMMAND_FREQUENCE`.
pub const DEFAULT_WATCH_FREQUENCY: Duration = Duration::from_secs(30);

/// The prefix of every Criteo module name.
pub const NAME_PREFIX: &str = "com_criteo_mesos_";

/// Highest numbered instance Criteo exports (`…CommandHook11`, `…CommandIsolator11`).
pub const MAX_INSTANCE: u32 = 11;

/// Hook and isolator modules of a `--modules` value, in file order (or in flag order after
/// [`select`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModulesConfig {
    /// `com_criteo_mesos_CommandHook[2..11]` modules.
    pub hooks: Vec<CommandModule>,
    /// `com_criteo_mesos_CommandIsolator[2..11]` modules.
    pub isolators: Vec<CommandModule>,
}

/// One configured module instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandModule {
    /// The Mesos module name, e.g. `com_criteo_mesos_CommandHook2`.
    pub mesos_name: String,
    /// The library's `file` (or, without one, its `name`).
    pub library: Option<String>,
    /// The mandatory `module_name` parameter; isolators keep their state under it.
    pub module_name: String,
    /// `debug` is on only when its value is exactly `"true"`.
    pub debug: bool,
    /// The methods with a non-empty command. A method absent here keeps Mesos's default.
    pub commands: BTreeMap<Method, MethodConfig>,
    /// Pause between watch runs: `Some` for isolators (default
    /// [`DEFAULT_WATCH_FREQUENCY`]), `None` for hooks.
    pub watch_frequency: Option<Duration>,
}

/// A method Criteo delegates to an external command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Method {
    /// Hook `slaveRunTaskLabelDecorator`.
    RunTaskLabelDecorator,
    /// Hook `slaveExecutorEnvironmentDecorator`.
    ExecutorEnvironmentDecorator,
    /// Hook `slaveRemoveExecutorHook`.
    RemoveExecutorHook,
    /// Isolator `prepare`.
    Prepare,
    /// Isolator `isolate`.
    Isolate,
    /// Isolator `watch` (a polling loop).
    Watch,
    /// Isolator `cleanup`.
    Cleanup,
    /// Isolator `usage`.
    Usage,
    /// Hook `masterLaunchTaskLabelDecorator` (a mesokit extension: Criteo keeps Mesos's no-op).
    MasterLaunchTaskLabelDecorator,
    /// Hook `masterLaunchTaskResourceDecorator` (mesokit extension).
    MasterLaunchTaskResourceDecorator,
    /// Hook `slaveTaskStatusDecorator` (mesokit extension).
    TaskStatusDecorator,
    /// Hook `slaveResourcesDecorator` (mesokit extension).
    ResourcesDecorator,
    /// Hook `slaveAttributesDecorator` (mesokit extension).
    AttributesDecorator,
    /// Hook `masterSlaveLostHook` (mesokit extension).
    AgentLostHook,
    /// Hook `slavePostFetchHook` (mesokit extension).
    PostFetchHook,
}

impl Method {
    /// Every method: Criteo's (hooks, then isolator methods), then mesokit's extra hooks.
    pub const ALL: [Method; 15] = [
        Method::RunTaskLabelDecorator,
        Method::ExecutorEnvironmentDecorator,
        Method::RemoveExecutorHook,
        Method::Prepare,
        Method::Isolate,
        Method::Watch,
        Method::Cleanup,
        Method::Usage,
        Method::MasterLaunchTaskLabelDecorator,
        Method::MasterLaunchTaskResourceDecorator,
        Method::TaskStatusDecorator,
        Method::ResourcesDecorator,
        Method::AttributesDecorator,
        Method::AgentLostHook,
        Method::PostFetchHook,
    ];

    /// Whether Criteo's modules delegate this method. The others are mesokit extensions,
    /// configured the same way (`<prefix>_command`, `<prefix>_timeout`); a Criteo build
    /// ignores their keys, so on a real Mesos agent they do nothing.
    pub fn is_criteo(self) -> bool {
        matches!(
            self,
            Method::RunTaskLabelDecorator
                | Method::ExecutorEnvironmentDecorator
                | Method::RemoveExecutorHook
                | Method::Prepare
                | Method::Isolate
                | Method::Watch
                | Method::Cleanup
                | Method::Usage
        )
    }

    /// The base of its keys: `<prefix>_command`, `<prefix>_timeout`.
    pub fn key_prefix(self) -> &'static str {
        match self {
            Method::RunTaskLabelDecorator => "hook_slave_run_task_label_decorator",
            Method::ExecutorEnvironmentDecorator => "hook_slave_executor_environment_decorator",
            Method::RemoveExecutorHook => "hook_slave_remove_executor_hook",
            Method::Prepare => "isolator_prepare",
            Method::Isolate => "isolator_isolate",
            Method::Watch => "isolator_watch",
            Method::Cleanup => "isolator_cleanup",
            Method::Usage => "isolator_usage",
            Method::MasterLaunchTaskLabelDecorator => "hook_master_launch_task_label_decorator",
            Method::MasterLaunchTaskResourceDecorator => {
                "hook_master_launch_task_resource_decorator"
            }
            Method::TaskStatusDecorator => "hook_slave_task_status_decorator",
            Method::ResourcesDecorator => "hook_slave_resources_decorator",
            Method::AttributesDecorator => "hook_slave_attributes_decorator",
            Method::AgentLostHook => "hook_master_slave_lost_hook",
            Method::PostFetchHook => "hook_slave_post_fetch_hook",
        }
    }

    /// The Mesos method name, as in Criteo's `[METHOD=…]` log prefix.
    pub fn mesos_name(self) -> &'static str {
        match self {
            Method::RunTaskLabelDecorator => "slaveRunTaskLabelDecorator",
            Method::ExecutorEnvironmentDecorator => "slaveExecutorEnvironmentDecorator",
            Method::RemoveExecutorHook => "slaveRemoveExecutorHook",
            Method::Prepare => "prepare",
            Method::Isolate => "isolate",
            Method::Watch => "watch",
            Method::Cleanup => "cleanup",
            Method::Usage => "usage",
            Method::MasterLaunchTaskLabelDecorator => "masterLaunchTaskLabelDecorator",
            Method::MasterLaunchTaskResourceDecorator => "masterLaunchTaskResourceDecorator",
            Method::TaskStatusDecorator => "slaveTaskStatusDecorator",
            Method::ResourcesDecorator => "slaveResourcesDecorator",
            Method::AttributesDecorator => "slaveAttributesDecorator",
            Method::AgentLostHook => "masterSlaveLostHook",
            Method::PostFetchHook => "slavePostFetchHook",
        }
    }

    /// Which kind of module runs it.
    pub fn kind(self) -> ModuleKind {
        match self {
            Method::Prepare | Method::Isolate | Method::Watch | Method::Cleanup | Method::Usage => {
                ModuleKind::Isolator
            }
            _ => ModuleKind::Hook,
        }
    }

    /// The v0.0.1 key (hooks only): the prefix without `hook_`.
    fn v001_key(self) -> Option<&'static str> {
        match self.kind() {
            ModuleKind::Hook if self.is_criteo() => self.key_prefix().strip_prefix("hook_"),
            _ => None,
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.mesos_name())
    }
}

/// Hook or isolator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModuleKind {
    /// `com_criteo_mesos_CommandHook…`, selected by `--hooks`.
    Hook,
    /// `com_criteo_mesos_CommandIsolator…`, selected by `--isolation`.
    Isolator,
}

impl fmt::Display for ModuleKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ModuleKind::Hook => "hook",
            ModuleKind::Isolator => "isolator",
        })
    }
}

/// The command of one method.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MethodConfig {
    /// Executable path, run verbatim (no shell, no argument splitting).
    pub command: String,
    /// `<prefix>_timeout` in whole seconds, default [`DEFAULT_TIMEOUT`]. (A timeout whose
    /// command is absent or empty is checked, then has no effect, as in Criteo.)
    pub timeout: Duration,
}

/// What is wrong with a `--modules` value or a selection. `origin` is `modules file <path>`
/// or `inline --modules JSON`.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read modules file {}: {source}; pass a readable file or inline JSON", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Not valid JSON.
    #[error("{origin}: invalid JSON at byte {offset}: {message}; fix the syntax")]
    Json {
        origin: String,
        offset: usize,
        message: String,
    },
    /// Valid JSON, but not the shape of Mesos's `Modules` message.
    #[error("{origin}: {at}: {message}")]
    Shape {
        origin: String,
        at: String,
        message: String,
    },
    /// A module name that is not one of Criteo's command modules.
    #[error(
        "{origin}: unknown module \"{name}\"; mesokit implements only {NAME_PREFIX}CommandHook and {NAME_PREFIX}CommandIsolator (and their numbered variants 2 to {MAX_INSTANCE}), remove it or fix its name"
    )]
    UnknownModule { origin: String, name: String },
    /// The same module name twice.
    #[error(
        "{origin}: module \"{name}\" is defined twice; use a numbered variant ({name}2 … {name}{MAX_INSTANCE}) for a second instance"
    )]
    DuplicateModule { origin: String, name: String },
    /// Two isolators with the same `module_name` (their state directory).
    #[error(
        "{origin}: isolators \"{first}\" and \"{second}\" both have module_name \"{module_name}\"; give each isolator its own module_name (it names its state directory)"
    )]
    SharedModuleName {
        origin: String,
        first: String,
        second: String,
        module_name: String,
    },
    /// `module_name` missing or empty.
    #[error(
        "{origin}: module \"{module}\" has no module_name parameter; add {{\"key\": \"module_name\", \"value\": \"<unique name>\"}} (it is mandatory for all defined modules)"
    )]
    MissingModuleName { origin: String, module: String },
    /// A timeout or frequency that is not a whole number of seconds.
    #[error(
        "{origin}: module \"{module}\": {key} = \"{value}\" is not a whole number of seconds; write e.g. \"10\""
    )]
    BadNumber {
        origin: String,
        module: String,
        key: String,
        value: String,
    },
    /// A key no command module reads, or one for the other kind of module.
    #[error("{origin}: module \"{module}\": unknown key \"{key}\"; {hint}")]
    UnknownKey {
        origin: String,
        module: String,
        key: String,
        hint: String,
    },
    /// The same key twice in one module.
    #[error("{origin}: module \"{module}\": key \"{key}\" is given twice; keep one")]
    DuplicateKey {
        origin: String,
        module: String,
        key: String,
    },
    /// A legacy key and its current form configure the same method.
    #[error(
        "{origin}: module \"{module}\": \"{legacy}\" and \"{current}\" both set the {method} command; keep \"{current}\""
    )]
    ConflictingKeys {
        origin: String,
        module: String,
        legacy: String,
        current: String,
        method: Method,
    },
    /// A `--hooks` / `--isolation` name that the configuration does not define.
    #[error(
        "{flag} names \"{name}\" but the --modules configuration defines no such {kind} module; add it to --modules or remove it from {flag}"
    )]
    NotConfigured {
        flag: &'static str,
        name: String,
        kind: ModuleKind,
    },
    /// The same name twice in `--hooks` / `--isolation`.
    #[error("{flag} names \"{name}\" twice; keep one")]
    DuplicateSelection { flag: &'static str, name: String },
}

/// Parses a `--modules` value. Like Mesos, a value starting with `/` or `file://` is a path;
/// a value starting with `{` or `[` (after blanks), or a blank one, is inline JSON; anything
/// else is read as a relative path (where Mesos would fail to parse it as JSON).
pub fn parse(text_or_path: &str) -> Result<ModulesConfig, ConfigError> {
    let trimmed = text_or_path.trim_start();
    if trimmed.is_empty() || trimmed.starts_with(['{', '[']) {
        return parse_json(text_or_path, "inline --modules JSON");
    }
    let path = PathBuf::from(text_or_path.strip_prefix("file://").unwrap_or(text_or_path));
    let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
        path: path.clone(),
        source,
    })?;
    parse_json(&text, &format!("modules file {}", path.display()))
}

/// Parses `modules.json` text; `origin` names it in errors.
pub fn parse_json(text: &str, origin: &str) -> Result<ModulesConfig, ConfigError> {
    let root = json::parse(text).map_err(|(offset, message)| ConfigError::Json {
        origin: origin.to_owned(),
        offset,
        message,
    })?;
    let shape = |at: &str, message: String| ConfigError::Shape {
        origin: origin.to_owned(),
        at: at.to_owned(),
        message,
    };
    let mut cfg = ModulesConfig::default();
    let root = fields(&root, "the top level", &["libraries"], &shape)?;
    let libraries = match root.get("libraries") {
        Some(v) => array(v, "libraries", &shape)?,
        None => &[],
    };
    for (li, lib) in libraries.iter().enumerate() {
        let at = format!("libraries[{li}]");
        let lib = fields(lib, &at, &["file", "name", "modules"], &shape)?;
        let file = opt_string(lib.get("file"), &format!("{at}.file"), &shape)?;
        let name = opt_string(lib.get("name"), &format!("{at}.name"), &shape)?;
        if file.is_none() && name.is_none() {
            return Err(shape(
                &at,
                "a library needs a \"file\" or a \"name\"".into(),
            ));
        }
        let library = file.or(name).map(str::to_owned);
        let modules = match lib.get("modules") {
            Some(v) => array(v, &format!("{at}.modules"), &shape)?,
            None => &[],
        };
        for (mi, module) in modules.iter().enumerate() {
            let at = format!("{at}.modules[{mi}]");
            let module = fields(module, &at, &["name", "parameters"], &shape)?;
            let Some(name) = opt_string(module.get("name"), &format!("{at}.name"), &shape)? else {
                return Err(shape(&at, "a module needs a \"name\"".into()));
            };
            let kind = module_kind(name).ok_or_else(|| ConfigError::UnknownModule {
                origin: origin.to_owned(),
                name: name.to_owned(),
            })?;
            if cfg
                .hooks
                .iter()
                .chain(&cfg.isolators)
                .any(|m| m.mesos_name == name)
            {
                return Err(ConfigError::DuplicateModule {
                    origin: origin.to_owned(),
                    name: name.to_owned(),
                });
            }
            let mut params = Vec::new();
            let list = match module.get("parameters") {
                Some(v) => array(v, &format!("{at}.parameters"), &shape)?,
                None => &[],
            };
            for (pi, p) in list.iter().enumerate() {
                let at = format!("{at}.parameters[{pi}]");
                let p = fields(p, &at, &["key", "value"], &shape)?;
                let key = opt_string(p.get("key"), &format!("{at}.key"), &shape)?;
                let value = opt_string(p.get("value"), &format!("{at}.value"), &shape)?;
                match (key, value) {
                    (Some(k), Some(v)) => params.push((k, v)),
                    _ => {
                        return Err(shape(
                            &at,
                            "a parameter needs both \"key\" and \"value\"".into(),
                        ));
                    }
                }
            }
            let m = module_from_params(origin, name, kind, library.clone(), &params)?;
            match kind {
                ModuleKind::Hook => cfg.hooks.push(m),
                ModuleKind::Isolator => {
                    if let Some(first) = cfg
                        .isolators
                        .iter()
                        .find(|i| i.module_name == m.module_name)
                    {
                        return Err(ConfigError::SharedModuleName {
                            origin: origin.to_owned(),
                            first: first.mesos_name.clone(),
                            second: m.mesos_name,
                            module_name: m.module_name,
                        });
                    }
                    cfg.isolators.push(m)
                }
            }
        }
    }
    Ok(cfg)
}

/// Keeps the modules named by `--hooks` and `--isolation`, in flag order (Mesos runs hooks
/// and `prepare` in that order). Names with a `/` in `isolation` are Mesos built-in
/// isolators (`filesystem/linux`, `posix/cpu`, …) and are skipped; every other name must be
/// a module of the right kind that `cfg` defines.
pub fn select(
    cfg: &ModulesConfig,
    hooks: &[&str],
    isolation: &[&str],
) -> Result<ModulesConfig, ConfigError> {
    fn pick(
        defined: &[CommandModule],
        names: &[&str],
        flag: &'static str,
        kind: ModuleKind,
        skip_builtins: bool,
    ) -> Result<Vec<CommandModule>, ConfigError> {
        let mut out: Vec<CommandModule> = Vec::new();
        for name in names.iter().map(|n| n.trim()).filter(|n| !n.is_empty()) {
            if skip_builtins && name.contains('/') {
                continue;
            }
            if out.iter().any(|m| m.mesos_name == name) {
                return Err(ConfigError::DuplicateSelection {
                    flag,
                    name: name.to_owned(),
                });
            }
            let m = defined
                .iter()
                .find(|m| m.mesos_name == name)
                .ok_or_else(|| ConfigError::NotConfigured {
                    flag,
                    name: name.to_owned(),
                    kind,
                })?;
            out.push(m.clone());
        }
        Ok(out)
    }
    Ok(ModulesConfig {
        hooks: pick(&cfg.hooks, hooks, "--hooks", ModuleKind::Hook, false)?,
        isolators: pick(
            &cfg.isolators,
            isolation,
            "--isolation",
            ModuleKind::Isolator,
            true,
        )?,
    })
}

/// `com_criteo_mesos_CommandHook`, `…Hook2` … `…Hook11`, same for `CommandIsolator`.
fn module_kind(name: &str) -> Option<ModuleKind> {
    let rest = name.strip_prefix(NAME_PREFIX)?;
    let (kind, n) = if let Some(n) = rest.strip_prefix("CommandHook") {
        (ModuleKind::Hook, n)
    } else {
        (ModuleKind::Isolator, rest.strip_prefix("CommandIsolator")?)
    };
    let ok = n.is_empty()
        || (!n.starts_with('0')
            && n.bytes().all(|b| b.is_ascii_digit())
            && n.parse::<u32>()
                .is_ok_and(|i| (2..=MAX_INSTANCE).contains(&i)));
    ok.then_some(kind)
}

fn module_from_params(
    origin: &str,
    name: &str,
    kind: ModuleKind,
    library: Option<String>,
    params: &[(&str, &str)],
) -> Result<CommandModule, ConfigError> {
    let mut seen: Vec<&str> = Vec::new();
    let mut module_name = None;
    let mut debug = false;
    let mut frequency = None;
    // method -> (key that set the command, command); and method -> timeout.
    let mut commands: BTreeMap<Method, (&str, &str)> = BTreeMap::new();
    let mut timeouts: BTreeMap<Method, Duration> = BTreeMap::new();
    let seconds = |key: &str, value: &str| {
        parse_seconds(value).ok_or_else(|| ConfigError::BadNumber {
            origin: origin.to_owned(),
            module: name.to_owned(),
            key: key.to_owned(),
            value: value.to_owned(),
        })
    };
    let unknown = |key: &str, hint: String| ConfigError::UnknownKey {
        origin: origin.to_owned(),
        module: name.to_owned(),
        key: key.to_owned(),
        hint,
    };
    for &(key, value) in params {
        if seen.contains(&key) {
            return Err(ConfigError::DuplicateKey {
                origin: origin.to_owned(),
                module: name.to_owned(),
                key: key.to_owned(),
            });
        }
        seen.push(key);
        match key {
            "module_name" => module_name = Some(value),
            "debug" => debug = value == "true",
            "isolator_watch_frequence" if kind == ModuleKind::Isolator => {
                frequency = Some(seconds(key, value)?)
            }
            _ => {
                let Some((method, role)) = classify(key) else {
                    let hint = if key == "isolator_watch_frequency" {
                        "Criteo spells it \"isolator_watch_frequence\"".to_owned()
                    } else {
                        format!("valid keys are module_name, debug and {}", valid_keys(kind))
                    };
                    return Err(unknown(key, hint));
                };
                if method.kind() != kind {
                    return Err(unknown(
                        key,
                        format!(
                            "it belongs to {} modules, not {kind} modules; move it to a {NAME_PREFIX}Command{} module",
                            method.kind(),
                            if kind == ModuleKind::Hook {
                                "Isolator"
                            } else {
                                "Hook"
                            }
                        ),
                    ));
                }
                match role {
                    Role::Timeout => {
                        timeouts.insert(method, seconds(key, value)?);
                    }
                    Role::Command | Role::Legacy => {
                        if let Some((other, _)) = commands.get(&method) {
                            let (legacy, current) = if role == Role::Legacy {
                                (key, *other)
                            } else {
                                (*other, key)
                            };
                            return Err(ConfigError::ConflictingKeys {
                                origin: origin.to_owned(),
                                module: name.to_owned(),
                                legacy: legacy.to_owned(),
                                current: current.to_owned(),
                                method,
                            });
                        }
                        commands.insert(method, (key, value));
                    }
                }
            }
        }
    }
    let module_name =
        module_name
            .filter(|n| !n.is_empty())
            .ok_or_else(|| ConfigError::MissingModuleName {
                origin: origin.to_owned(),
                module: name.to_owned(),
            })?;
    let commands = commands
        .into_iter()
        // Criteo: an empty command means "not configured".
        .filter(|(_, (_, command))| !command.is_empty())
        .map(|(method, (_, command))| {
            let timeout = timeouts.get(&method).copied().unwrap_or(DEFAULT_TIMEOUT);
            let command = command.to_owned();
            (method, MethodConfig { command, timeout })
        })
        .collect();
    Ok(CommandModule {
        mesos_name: name.to_owned(),
        library,
        module_name: module_name.to_owned(),
        debug,
        commands,
        watch_frequency: (kind == ModuleKind::Isolator)
            .then(|| frequency.unwrap_or(DEFAULT_WATCH_FREQUENCY)),
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Command,
    Timeout,
    Legacy,
}

fn classify(key: &str) -> Option<(Method, Role)> {
    Method::ALL.into_iter().find_map(|m| {
        let prefix = m.key_prefix();
        if (key == prefix && m.is_criteo()) || m.v001_key() == Some(key) {
            return Some((m, Role::Legacy));
        }
        match key.strip_prefix(prefix)? {
            "_command" => Some((m, Role::Command)),
            "_timeout" => Some((m, Role::Timeout)),
            _ => None,
        }
    })
}

fn valid_keys(kind: ModuleKind) -> String {
    let mut keys: Vec<String> = Method::ALL
        .into_iter()
        .filter(|m| m.kind() == kind)
        .map(|m| format!("{0}_command, {0}_timeout", m.key_prefix()))
        .collect();
    if kind == ModuleKind::Isolator {
        keys.push("isolator_watch_frequence".into());
    }
    keys.join(", ")
}

/// A whole number of seconds: ASCII digits only (Criteo's `stoul` also took `" 10s"`).
fn parse_seconds(value: &str) -> Option<Duration> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    value.parse::<u64>().ok().map(Duration::from_secs)
}

type Shape<'a> = &'a dyn Fn(&str, String) -> ConfigError;

fn fields<'v>(
    v: &'v json::Value,
    at: &str,
    allowed: &[&str],
    shape: Shape<'_>,
) -> Result<BTreeMap<&'v str, &'v json::Value>, ConfigError> {
    let json::Value::Object(members) = v else {
        return Err(shape(at, format!("expected an object, found {}", v.kind())));
    };
    let mut out = BTreeMap::new();
    for (k, val) in members {
        if !allowed.contains(&k.as_str()) {
            return Err(shape(
                at,
                format!(
                    "unknown field \"{k}\"; allowed fields are {}",
                    allowed.join(", ")
                ),
            ));
        }
        if out.insert(k.as_str(), val).is_some() {
            return Err(shape(at, format!("field \"{k}\" is given twice; keep one")));
        }
    }
    Ok(out)
}

fn array<'v>(
    v: &'v json::Value,
    at: &str,
    shape: Shape<'_>,
) -> Result<&'v [json::Value], ConfigError> {
    match v {
        json::Value::Array(items) => Ok(items),
        other => Err(shape(
            at,
            format!("expected an array, found {}", other.kind()),
        )),
    }
}

fn opt_string<'v>(
    v: Option<&&'v json::Value>,
    at: &str,
    shape: Shape<'_>,
) -> Result<Option<&'v str>, ConfigError> {
    match v {
        None => Ok(None),
        Some(json::Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(shape(
            at,
            format!(
                "expected a string, found {}; quote it, e.g. \"10\"",
                other.kind()
            ),
        )),
    }
}

/// A small strict JSON reader: RFC 8259 syntax, numbers and literals kept only as their
/// kind (the `Modules` message holds strings only). Errors carry a byte offset.
mod json {
    const MAX_DEPTH: usize = 64;

    #[derive(Debug)]
    pub(super) enum Value {
        Object(Vec<(String, Value)>),
        Array(Vec<Value>),
        String(String),
        Number,
        Bool,
        Null,
    }

    impl Value {
        pub(super) fn kind(&self) -> &'static str {
            match self {
                Value::Object(_) => "an object",
                Value::Array(_) => "an array",
                Value::String(_) => "a string",
                Value::Number => "a number",
                Value::Bool => "a boolean",
                Value::Null => "null",
            }
        }
    }

    type Error = (usize, String);

    pub(super) fn parse(text: &str) -> Result<Value, Error> {
        let mut p = Parser {
            b: text.as_bytes(),
            pos: 0,
        };
        let v = p.value(0)?;
        p.ws();
        if p.pos < p.b.len() {
            return Err(p.err("unexpected text after the JSON value"));
        }
        Ok(v)
    }

    struct Parser<'a> {
        b: &'a [u8],
        pos: usize,
    }

    impl Parser<'_> {
        fn err(&self, message: &str) -> Error {
            (self.pos, message.to_owned())
        }

        fn ws(&mut self) {
            while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.b.get(self.pos) {
                self.pos += 1;
            }
        }

        fn peek(&self) -> Option<u8> {
            self.b.get(self.pos).copied()
        }

        fn expect(&mut self, c: u8) -> Result<(), Error> {
            self.ws();
            if self.peek() == Some(c) {
                self.pos += 1;
                Ok(())
            } else {
                Err(self.err(&format!("expected '{}'", c as char)))
            }
        }

        fn value(&mut self, depth: usize) -> Result<Value, Error> {
            if depth > MAX_DEPTH {
                return Err(self.err("nested too deeply"));
            }
            self.ws();
            match self.peek() {
                None => Err(self.err("unexpected end of input, expected a value")),
                Some(b'{') => self.object(depth),
                Some(b'[') => self.array(depth),
                Some(b'"') => self.string().map(Value::String),
                Some(b't') => self.literal("true", Value::Bool),
                Some(b'f') => self.literal("false", Value::Bool),
                Some(b'n') => self.literal("null", Value::Null),
                Some(b'-' | b'0'..=b'9') => self.number(),
                Some(_) => Err(self.err("expected a value")),
            }
        }

        fn object(&mut self, depth: usize) -> Result<Value, Error> {
            self.pos += 1;
            let mut members = Vec::new();
            self.ws();
            if self.peek() == Some(b'}') {
                self.pos += 1;
                return Ok(Value::Object(members));
            }
            loop {
                self.ws();
                if self.peek() != Some(b'"') {
                    return Err(self.err("expected a string key"));
                }
                let key = self.string()?;
                self.expect(b':')?;
                members.push((key, self.value(depth + 1)?));
                self.ws();
                match self.peek() {
                    Some(b',') => self.pos += 1,
                    Some(b'}') => {
                        self.pos += 1;
                        return Ok(Value::Object(members));
                    }
                    _ => return Err(self.err("expected ',' or '}'")),
                }
            }
        }

        fn array(&mut self, depth: usize) -> Result<Value, Error> {
            self.pos += 1;
            let mut items = Vec::new();
            self.ws();
            if self.peek() == Some(b']') {
                self.pos += 1;
                return Ok(Value::Array(items));
            }
            loop {
                items.push(self.value(depth + 1)?);
                self.ws();
                match self.peek() {
                    Some(b',') => self.pos += 1,
                    Some(b']') => {
                        self.pos += 1;
                        return Ok(Value::Array(items));
                    }
                    _ => return Err(self.err("expected ',' or ']'")),
                }
            }
        }

        fn literal(&mut self, word: &str, v: Value) -> Result<Value, Error> {
            if self.b[self.pos..].starts_with(word.as_bytes()) {
                self.pos += word.len();
                Ok(v)
            } else {
                Err(self.err("expected a value"))
            }
        }

        fn digits(&mut self) -> usize {
            let start = self.pos;
            while self.peek().is_some_and(|c| c.is_ascii_digit()) {
                self.pos += 1;
            }
            self.pos - start
        }

        fn number(&mut self) -> Result<Value, Error> {
            if self.peek() == Some(b'-') {
                self.pos += 1;
            }
            let int_start = self.pos;
            match self.digits() {
                0 => return Err(self.err("expected a digit")),
                n if n > 1 && self.b[int_start] == b'0' => {
                    return Err((int_start, "leading zero in a number".into()));
                }
                _ => {}
            }
            if self.peek() == Some(b'.') {
                self.pos += 1;
                if self.digits() == 0 {
                    return Err(self.err("expected a digit after '.'"));
                }
            }
            if let Some(b'e' | b'E') = self.peek() {
                self.pos += 1;
                if let Some(b'+' | b'-') = self.peek() {
                    self.pos += 1;
                }
                if self.digits() == 0 {
                    return Err(self.err("expected a digit in the exponent"));
                }
            }
            Ok(Value::Number)
        }

        fn hex4(&mut self) -> Result<u32, Error> {
            let hex = self
                .b
                .get(self.pos..self.pos + 4)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u32::from_str_radix(h, 16).ok())
                .ok_or_else(|| self.err("expected 4 hex digits after \\u"))?;
            self.pos += 4;
            Ok(hex)
        }

        fn string(&mut self) -> Result<String, Error> {
            self.pos += 1;
            let mut out = Vec::new();
            loop {
                let Some(c) = self.peek() else {
                    return Err(self.err("unterminated string"));
                };
                match c {
                    b'"' => {
                        self.pos += 1;
                        // The input is a &str and escapes push whole chars: valid UTF-8.
                        return String::from_utf8(out)
                            .map_err(|_| self.err("invalid UTF-8 in string"));
                    }
                    b'\\' => {
                        let at = self.pos;
                        self.pos += 1;
                        let e = self.peek().ok_or_else(|| self.err("unterminated string"))?;
                        self.pos += 1;
                        let ch = match e {
                            b'"' => '"',
                            b'\\' => '\\',
                            b'/' => '/',
                            b'b' => '\u{8}',
                            b'f' => '\u{c}',
                            b'n' => '\n',
                            b'r' => '\r',
                            b't' => '\t',
                            b'u' => {
                                let hi = self.hex4()?;
                                let code = if (0xD800..0xDC00).contains(&hi) {
                                    if !self.b[self.pos..].starts_with(b"\\u") {
                                        return Err((at, "unpaired surrogate escape".into()));
                                    }
                                    self.pos += 2;
                                    let lo = self.hex4()?;
                                    if !(0xDC00..0xE000).contains(&lo) {
                                        return Err((at, "unpaired surrogate escape".into()));
                                    }
                                    0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
                                } else {
                                    hi
                                };
                                char::from_u32(code)
                                    .ok_or((at, "unpaired surrogate escape".to_owned()))?
                            }
                            _ => return Err((at, "invalid escape".into())),
                        };
                        let mut buf = [0; 4];
                        out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                    }
                    0..0x20 => return Err(self.err("control character in string")),
                    _ => {
                        out.push(c);
                        self.pos += 1;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
