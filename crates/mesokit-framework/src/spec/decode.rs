//! From a positioned YAML tree to a [`JobSpec`]. Every error carries the node's position and
//! the field path; unknown keys are errors (a misspelt `instnaces` must not silently run one).

use std::collections::BTreeMap;
use std::time::Duration;

use mesokit_proto::v1::TaskState;

use super::tree::{Node, Value};
use super::*;

type Result<T> = std::result::Result<T, SpecError>;

/// A node and the path that reached it.
#[derive(Clone, Copy)]
struct At<'a> {
    node: &'a Node,
    path: &'a str,
}

fn fail<T>(at: At<'_>, message: impl Into<String>) -> Result<T> {
    Err(SpecError {
        file: None,
        pos: Some(at.node.pos),
        field: at.path.to_string(),
        message: message.into(),
    })
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// The keys of a mapping, consumed one by one; whatever is left is unknown.
struct MapReader<'a> {
    at: At<'a>,
    entries: Vec<(&'a str, &'a Node, &'a Node)>,
}

impl<'a> MapReader<'a> {
    fn new(at: At<'a>) -> Result<Self> {
        let Value::Map(entries) = &at.node.value else {
            return fail(
                at,
                format!("expected a mapping, found {}", at.node.value.kind()),
            );
        };
        let mut out = Vec::with_capacity(entries.len());
        for (k, v) in entries {
            let Value::Scalar { text, .. } = &k.value else {
                return fail(
                    At {
                        node: k,
                        path: at.path,
                    },
                    "mapping keys must be plain strings",
                );
            };
            if out.iter().any(|(name, _, _)| *name == text.as_str()) {
                return fail(
                    At {
                        node: k,
                        path: at.path,
                    },
                    format!("key {text:?} appears twice"),
                );
            }
            out.push((text.as_str(), k, v));
        }
        Ok(MapReader { at, entries: out })
    }

    /// Takes `key` (a null value counts as absent) and decodes it with `f`.
    fn take<T>(&mut self, key: &str, f: impl FnOnce(At<'_>) -> Result<T>) -> Result<Option<T>> {
        let Some(i) = self.entries.iter().position(|(k, _, _)| *k == key) else {
            return Ok(None);
        };
        let (_, _, v) = self.entries.remove(i);
        if v.value == Value::Null {
            return Ok(None);
        }
        let path = join(self.at.path, key);
        f(At {
            node: v,
            path: &path,
        })
        .map(Some)
    }

    fn finish(self, known: &[&str]) -> Result<()> {
        if let Some((k, key_node, _)) = self.entries.first() {
            let path = join(self.at.path, k);
            return fail(
                At {
                    node: key_node,
                    path: &path,
                },
                format!("unknown key (known keys here: {})", known.join(", ")),
            );
        }
        Ok(())
    }
}

fn scalar<'a>(at: At<'a>) -> Result<(&'a str, bool)> {
    match &at.node.value {
        Value::Scalar { text, quoted } => Ok((text, *quoted)),
        other => fail(
            at,
            format!("expected a single value, found {}", other.kind()),
        ),
    }
}

fn string(at: At<'_>) -> Result<String> {
    Ok(scalar(at)?.0.to_string())
}

fn number(at: At<'_>) -> Result<f64> {
    let (text, quoted) = scalar(at)?;
    match text.parse::<f64>() {
        Ok(v) if !quoted && v.is_finite() => Ok(v),
        _ => fail(at, format!("expected a number, found {:?}", text)),
    }
}

fn count(at: At<'_>) -> Result<u32> {
    let v = number(at)?;
    if v < 0.0 || v.fract() != 0.0 || v > u32::MAX as f64 {
        return fail(at, format!("expected a whole number >= 0, found {v}"));
    }
    Ok(v as u32)
}

fn boolean(at: At<'_>) -> Result<bool> {
    match scalar(at)? {
        ("true", false) => Ok(true),
        ("false", false) => Ok(false),
        (text, _) => fail(at, format!("expected true or false, found {text:?}")),
    }
}

fn duration(at: At<'_>) -> Result<Duration> {
    let (text, _) = scalar(at)?;
    parse_duration(text).or_else(|e| fail(at, e))
}

fn seq<'a>(at: At<'a>) -> Result<&'a [Node]> {
    match &at.node.value {
        Value::Seq(items) => Ok(items),
        other => fail(at, format!("expected a list, found {}", other.kind())),
    }
}

/// Applies `f` to every item of a list, with `path[i]` paths.
fn list<T>(at: At<'_>, mut f: impl FnMut(At<'_>) -> Result<T>) -> Result<Vec<T>> {
    let items = seq(at)?;
    let mut out = Vec::with_capacity(items.len());
    for (i, node) in items.iter().enumerate() {
        let path = format!("{}[{i}]", at.path);
        out.push(f(At { node, path: &path })?);
    }
    Ok(out)
}

fn string_map(at: At<'_>) -> Result<BTreeMap<String, String>> {
    let Value::Map(entries) = &at.node.value else {
        return fail(
            at,
            format!("expected a mapping, found {}", at.node.value.kind()),
        );
    };
    let mut out = BTreeMap::new();
    for (k, v) in entries {
        let key = string(At {
            node: k,
            path: at.path,
        })?;
        let path = join(at.path, &key);
        let value = match &v.value {
            Value::Null => String::new(),
            _ => string(At {
                node: v,
                path: &path,
            })?,
        };
        out.insert(key, value);
    }
    Ok(out)
}

pub(super) fn job(root: &Node) -> Result<JobSpec> {
    let mut m = MapReader::new(At {
        node: root,
        path: "",
    })?;
    let kind = m
        .take("kind", |at| match scalar(at)?.0 {
            "batch" => Ok(JobKind::Batch),
            "service" => Ok(JobKind::Service),
            other => fail(at, format!("expected batch or service, found {other:?}")),
        })?
        .unwrap_or_default();
    let name = match m.take("name", string)? {
        Some(n) => n,
        None => {
            return fail(
                At {
                    node: root,
                    path: "name",
                },
                "a job needs a name",
            );
        }
    };
    let mut spec = JobSpec::new(&name, kind);
    if let Some(roles) = m.take("roles", |at| list(at, string))? {
        spec.roles = roles;
    }
    if let Some(role) = m.take("role", string)? {
        spec.roles = vec![role];
    }
    spec.user = m.take("user", string)?;
    if let Some(d) = m.take("failover_timeout", duration)? {
        spec.failover_timeout = d;
    }
    let groups = m.take("groups", |at| list(at, |at| group(at, kind)))?;
    m.finish(&[
        "name",
        "kind",
        "role",
        "roles",
        "user",
        "failover_timeout",
        "groups",
    ])?;
    spec.groups = groups.unwrap_or_default();
    validate_at(&spec, root)?;
    Ok(spec)
}

/// Runs [`JobSpec::validate`] and, on error, finds the node its field path names so the
/// message points at the line.
fn validate_at(spec: &JobSpec, root: &Node) -> Result<()> {
    spec.validate().map_err(|mut e| {
        e.pos = find(root, &e.field).map(|n| n.pos).or(Some(root.pos));
        e
    })
}

/// The deepest node along a path like `groups[1].resources.cpus`.
fn find<'a>(root: &'a Node, path: &str) -> Option<&'a Node> {
    let mut node = root;
    for part in path.split('.').filter(|p| !p.is_empty()) {
        let (key, index) = match part.split_once('[') {
            Some((k, rest)) => (k, rest.trim_end_matches(']').parse::<usize>().ok()),
            None => (part, None),
        };
        let Value::Map(entries) = &node.value else {
            return Some(node);
        };
        let Some((_, v)) = entries
            .iter()
            .find(|(k, _)| matches!(&k.value, Value::Scalar { text, .. } if text == key))
        else {
            return Some(node);
        };
        node = v;
        if let (Some(i), Value::Seq(items)) = (index, &node.value) {
            match items.get(i) {
                Some(item) => node = item,
                None => return Some(node),
            }
        }
    }
    Some(node)
}

fn group(at: At<'_>, kind: JobKind) -> Result<GroupSpec> {
    let mut m = MapReader::new(at)?;
    let name = m.take("name", string)?.unwrap_or_default();
    let mut g = GroupSpec::new(&name, 1, "");
    g.command = CommandSpec::default();
    g.resources = ResourceSpec::default();
    if kind == JobKind::Service {
        g.restart = RestartPolicy::service_default();
    }
    if let Some(n) = m.take("instances", count)? {
        g.instances = n;
    }
    if let Some(p) = m.take("priority", |at| {
        let v = number(at)?;
        if v.fract() != 0.0 || v.abs() > i32::MAX as f64 {
            return fail(at, "expected a whole number");
        }
        Ok(v as i32)
    })? {
        g.priority = p;
    }
    if let Some(r) = m.take("resources", resources)? {
        g.resources = r;
    }
    if let Some(c) = m.take("command", command)? {
        g.command = c;
    }
    g.container = m.take("container", container)?;
    if let Some(e) = m.take("executor", executor)? {
        g.executor = e;
    }
    g.health_check = m.take("health_check", health_check)?;
    g.scheduler_check = m.take("scheduler_check", |at| scheduler_check(at, &name))?;
    if let Some(l) = m.take("labels", string_map)? {
        g.labels = l;
    }
    g.kill_grace = m.take("kill_grace", duration)?;
    if let Some(r) = m.take("roles", |at| list(at, string))? {
        g.roles = r;
    }
    if let Some(r) = m.take("restart", |at| restart(at, g.restart.clone()))? {
        g.restart = r;
    }
    if let Some(c) = m.take("constraints", |at| list(at, constraint))? {
        g.constraints = c;
    }
    m.finish(&[
        "name",
        "instances",
        "priority",
        "resources",
        "command",
        "container",
        "executor",
        "health_check",
        "scheduler_check",
        "labels",
        "kill_grace",
        "roles",
        "restart",
        "constraints",
    ])?;
    Ok(g)
}

fn resources(at: At<'_>) -> Result<ResourceSpec> {
    let mut m = MapReader::new(at)?;
    let mut r = ResourceSpec {
        cpus: m.take("cpus", number)?.unwrap_or(0.0),
        mem: m.take("mem", number)?.unwrap_or(0.0),
        disk: m.take("disk", number)?.unwrap_or(0.0),
        gpus: m.take("gpus", number)?.unwrap_or(0.0),
        ..ResourceSpec::default()
    };
    // `ports: 2` (two dynamic ports) or `ports: [8080, 0]` (fixed ports; 0 = any).
    if let Some((n, fixed)) = m.take("ports", |at| match &at.node.value {
        Value::Seq(_) => {
            let ports = list(at, |at| {
                let v = number(at)?;
                if !(0.0..=65535.0).contains(&v) || v.fract() != 0.0 {
                    return fail(at, format!("{v} is not a port number (0 means any port)"));
                }
                Ok(v as u64)
            })?;
            let dynamic = ports.iter().filter(|p| **p == 0).count() as u32;
            Ok((dynamic, ports.into_iter().filter(|p| *p != 0).collect()))
        }
        _ => Ok((count(at)?, Vec::new())),
    })? {
        r.ports = n;
        r.fixed_ports = fixed;
    }
    m.finish(&["cpus", "mem", "disk", "gpus", "ports"])?;
    Ok(r)
}

fn command(at: At<'_>) -> Result<CommandSpec> {
    if let Value::Scalar { .. } = at.node.value {
        return Ok(CommandSpec {
            shell: Some(string(at)?),
            ..CommandSpec::default()
        });
    }
    if let Value::Seq(_) = at.node.value {
        return Ok(CommandSpec {
            argv: list(at, string)?,
            ..CommandSpec::default()
        });
    }
    let mut m = MapReader::new(at)?;
    let c = CommandSpec {
        shell: m.take("shell", string)?,
        argv: m.take("argv", |at| list(at, string))?.unwrap_or_default(),
        env: m.take("env", string_map)?.unwrap_or_default(),
        uris: m.take("uris", |at| list(at, uri))?.unwrap_or_default(),
        user: m.take("user", string)?,
    };
    m.finish(&["shell", "argv", "env", "uris", "user"])?;
    Ok(c)
}

fn uri(at: At<'_>) -> Result<UriSpec> {
    if let Value::Scalar { .. } = at.node.value {
        return Ok(UriSpec {
            value: string(at)?,
            extract: true,
            executable: false,
            cache: false,
            output_file: None,
        });
    }
    let mut m = MapReader::new(at)?;
    let Some(value) = m.take("value", string)? else {
        return fail(at, "a URI needs a `value`");
    };
    let u = UriSpec {
        value,
        extract: m.take("extract", boolean)?.unwrap_or(true),
        executable: m.take("executable", boolean)?.unwrap_or(false),
        cache: m.take("cache", boolean)?.unwrap_or(false),
        output_file: m.take("output_file", string)?,
    };
    m.finish(&["value", "extract", "executable", "cache", "output_file"])?;
    Ok(u)
}

fn container(at: At<'_>) -> Result<ContainerSpec> {
    let mut m = MapReader::new(at)?;
    let kind = m
        .take("type", |at| match scalar(at)?.0 {
            "mesos" => Ok(ContainerKind::Mesos),
            "docker" => Ok(ContainerKind::Docker),
            other => fail(at, format!("expected mesos or docker, found {other:?}")),
        })?
        .unwrap_or(ContainerKind::Mesos);
    let Some(image) = m.take("image", string)? else {
        return fail(at, "a container needs an `image`");
    };
    let force_pull = m.take("force_pull", boolean)?.unwrap_or(false);
    m.finish(&["type", "image", "force_pull"])?;
    Ok(ContainerSpec {
        kind,
        image,
        force_pull,
    })
}

fn executor(at: At<'_>) -> Result<ExecutorSpec> {
    if let Value::Scalar { .. } = at.node.value {
        return match scalar(at)?.0 {
            "command" => Ok(ExecutorSpec::Command),
            "mesokit" => Ok(ExecutorSpec::Mesokit(MesokitExecutorSpec::default())),
            other => fail(at, format!("expected command or mesokit, found {other:?}")),
        };
    }
    let mut m = MapReader::new(at)?;
    let kind = m.take("type", string)?.unwrap_or_else(|| "mesokit".into());
    let spec = match kind.as_str() {
        "command" => ExecutorSpec::Command,
        "mesokit" => ExecutorSpec::Mesokit(MesokitExecutorSpec {
            command: m.take("command", string)?,
            before: m.take("before", |at| list(at, step))?.unwrap_or_default(),
            after: m.take("after", |at| list(at, step))?.unwrap_or_default(),
            hooks: m.take("hooks", |at| list(at, string))?.unwrap_or_default(),
        }),
        other => {
            return fail(
                at,
                format!("executor type must be command or mesokit, not {other:?}"),
            );
        }
    };
    m.finish(&["type", "command", "before", "after", "hooks"])?;
    Ok(spec)
}

fn step(at: At<'_>) -> Result<StepSpec> {
    if let Value::Scalar { .. } = at.node.value {
        return Ok(StepSpec {
            command: string(at)?,
            ..StepSpec::default()
        });
    }
    let mut m = MapReader::new(at)?;
    let Some(command) = m.take("command", string)? else {
        return fail(at, "a step needs a `command`");
    };
    let s = StepSpec {
        command,
        guard: m.take("guard", boolean)?.unwrap_or(false),
        r#async: m.take("async", boolean)?.unwrap_or(false),
    };
    m.finish(&["command", "guard", "async"])?;
    Ok(s)
}

fn health_check(at: At<'_>) -> Result<HealthCheckSpec> {
    let mut m = MapReader::new(at)?;
    let Some(kind) = m.take("type", string)? else {
        return fail(at, "a health check needs a `type` (http, tcp or command)");
    };
    let port_index = m.take("port_index", count)?.unwrap_or(0) as usize;
    let kind = match kind.as_str() {
        "http" => HealthCheckKind::Http {
            port_index,
            path: m.take("path", string)?.unwrap_or_else(|| "/".into()),
        },
        "tcp" => HealthCheckKind::Tcp { port_index },
        "command" => match m.take("command", string)? {
            Some(command) => HealthCheckKind::Command { command },
            None => return fail(at, "a command health check needs a `command`"),
        },
        other => {
            return fail(
                at,
                format!("type must be http, tcp or command, not {other:?}"),
            );
        }
    };
    // Mesos's defaults (HealthCheck in mesos.proto).
    let h = HealthCheckSpec {
        kind,
        delay: m
            .take("delay", duration)?
            .unwrap_or(Duration::from_secs(15)),
        interval: m
            .take("interval", duration)?
            .unwrap_or(Duration::from_secs(10)),
        timeout: m
            .take("timeout", duration)?
            .unwrap_or(Duration::from_secs(20)),
        consecutive_failures: m.take("consecutive_failures", count)?.unwrap_or(3),
        grace_period: m
            .take("grace_period", duration)?
            .unwrap_or(Duration::from_secs(10)),
    };
    m.finish(&[
        "type",
        "port_index",
        "path",
        "command",
        "delay",
        "interval",
        "timeout",
        "consecutive_failures",
        "grace_period",
    ])?;
    Ok(h)
}

fn scheduler_check(at: At<'_>, group: &str) -> Result<crate::health::HealthHelperConfig> {
    let mut m = MapReader::new(at)?;
    let mut c = crate::health::HealthHelperConfig::new(group, 0, "/");
    if let Some(i) = m.take("port_index", count)? {
        c.port_index = i as usize;
    }
    if let Some(p) = m.take("path", string)? {
        c.path = p;
    }
    if let Some(d) = m.take("interval", duration)? {
        c.interval = d;
    }
    if let Some(d) = m.take("timeout", duration)? {
        c.timeout = d;
    }
    if let Some(n) = m.take("grace_failures", count)? {
        c.grace_failures = n;
    }
    if let Some(s) = m.take("statuses", |at| {
        list(at, |at| {
            let n = count(at)?;
            if !(100..600).contains(&n) {
                return fail(at, format!("{n} is not an HTTP status"));
            }
            Ok(n as u16)
        })
    })? {
        c.statuses = s;
    }
    c.body_contains = m.take("body_contains", string)?;
    c.property = m.take("property", string)?;
    m.finish(&[
        "port_index",
        "path",
        "interval",
        "timeout",
        "grace_failures",
        "statuses",
        "body_contains",
        "property",
    ])?;
    Ok(c)
}

fn task_state(at: At<'_>) -> Result<TaskState> {
    let (text, _) = scalar(at)?;
    let upper = text.to_ascii_uppercase();
    let name = if upper.starts_with("TASK_") {
        upper
    } else {
        format!("TASK_{upper}")
    };
    match TaskState::from_str_name(&name) {
        Some(s) if mesokit_proto::helpers::is_terminal(s) => Ok(s),
        Some(_) => fail(at, format!("{text:?} is not a terminal state")),
        None => fail(
            at,
            format!("{text:?} is not a task state (e.g. failed, lost, finished, killed)"),
        ),
    }
}

fn restart(at: At<'_>, mut p: RestartPolicy) -> Result<RestartPolicy> {
    // `restart: never` / `restart: always` shorthands.
    if let Value::Scalar { .. } = at.node.value {
        match scalar(at)?.0 {
            "never" => {
                p.on.clear();
                return Ok(p);
            }
            "always" => {
                return Ok(RestartPolicy {
                    max_restarts: None,
                    ..RestartPolicy::service_default()
                });
            }
            other => {
                return fail(
                    at,
                    format!("expected never, always or a mapping, found {other:?}"),
                );
            }
        }
    }
    let mut m = MapReader::new(at)?;
    if let Some(on) = m.take("on", |at| list(at, task_state))? {
        p.on = on;
    }
    if let Some(()) = m.take("backoff", |at| {
        let mut b = MapReader::new(at)?;
        if let Some(d) = b.take("initial", duration)? {
            p.backoff_initial = d;
        }
        if let Some(f) = b.take("factor", number)? {
            p.backoff_factor = f;
        }
        if let Some(d) = b.take("max", duration)? {
            p.backoff_max = d;
        }
        b.finish(&["initial", "factor", "max"])
    })? {}
    if let Some(v) = m.take("max_restarts", |at| match scalar(at)?.0 {
        "unlimited" => Ok(None),
        _ => count(at).map(Some),
    })? {
        p.max_restarts = v;
    }
    m.finish(&["on", "backoff", "max_restarts"])?;
    Ok(p)
}

fn constraint(at: At<'_>) -> Result<Constraint> {
    let parts = list(at, string)?;
    if parts.len() < 2 || parts.len() > 3 {
        return fail(
            at,
            "a constraint is [field, OPERATOR] or [field, OPERATOR, value]",
        );
    }
    let field = parts[0].clone();
    let value = parts.get(2).cloned();
    let number = |v: &Option<String>| -> Result<u32> {
        match v.as_deref().map(str::parse::<u32>) {
            Some(Ok(n)) => Ok(n),
            _ => fail(
                at,
                format!("{} needs a whole number as its value", parts[1]),
            ),
        }
    };
    let op = match parts[1].to_ascii_uppercase().as_str() {
        "UNIQUE" => ConstraintOp::Unique,
        "CLUSTER" => ConstraintOp::Cluster(value),
        "GROUP_BY" => ConstraintOp::GroupBy(match value {
            None => 2,
            v => number(&v)?,
        }),
        "LIKE" | "UNLIKE" => {
            let Some(re) = value else {
                return fail(at, format!("{} needs a regex as its value", parts[1]));
            };
            if parts[1].eq_ignore_ascii_case("LIKE") {
                ConstraintOp::Like(re)
            } else {
                ConstraintOp::Unlike(re)
            }
        }
        "MAX_PER" => ConstraintOp::MaxPer(number(&value)?),
        other => {
            return fail(
                at,
                format!(
                    "unknown operator {other:?} (UNIQUE, CLUSTER, GROUP_BY, LIKE, UNLIKE, MAX_PER)"
                ),
            );
        }
    };
    Ok(Constraint { field, op })
}
