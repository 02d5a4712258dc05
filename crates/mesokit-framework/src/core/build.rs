//! From a group spec and the resources taken from an offer to a Mesos `TaskInfo`.

use std::time::Duration;

use mesokit_proto::helpers;
use mesokit_proto::v1::{
    AgentId, CommandInfo, ContainerInfo, Environment, ExecutorId, ExecutorInfo, HealthCheck, Image,
    KillPolicy, Label, Labels, Offer, Resource, TaskId, TaskInfo, command_info, container_info,
    environment, executor_info, health_check, image,
};

use crate::spec::{
    CommandSpec, ContainerKind, ExecutorSpec, GroupSpec, HealthCheckKind, JobSpec, StepSpec,
};

/// What a `mesokit executor` takes on top of its tasks: cpus, mem, disk, gpus.
pub(crate) const EXECUTOR_RESOURCES: [f64; 4] = [0.01, 16.0, 0.0, 0.0];

/// Everything needed to build one task.
#[derive(Debug)]
pub struct TaskContext<'a> {
    /// The job.
    pub job: &'a JobSpec,
    /// The task's group.
    pub group: &'a GroupSpec,
    /// Instance number.
    pub index: u32,
    /// Task id.
    pub task_id: &'a str,
    /// The offer it goes on.
    pub offer: &'a Offer,
    /// Ports given to it (fixed first).
    pub ports: &'a [u64],
    /// Command starting `mesokit executor`.
    pub executor_command: &'a str,
}

fn var(name: impl Into<String>, value: impl Into<String>) -> environment::Variable {
    environment::Variable {
        name: name.into(),
        value: Some(value.into()),
        ..environment::Variable::default()
    }
}

/// A number as a `String` sized for it (no formatting machinery, no spare capacity).
fn decimal(v: u64) -> String {
    let mut s = String::with_capacity(20);
    crate::core::record::push_u64(&mut s, v);
    s
}

fn command_info(c: &CommandSpec, ctx: &TaskContext<'_>) -> CommandInfo {
    // Exactly what is pushed below: the spec's, HOST and the three MESOKIT_ ones, then
    // PORTS, PORT and PORTn when there are ports.
    let port_vars = if ctx.ports.is_empty() {
        0
    } else {
        2 + ctx.ports.len()
    };
    let mut env: Vec<environment::Variable> = Vec::with_capacity(c.env.len() + 4 + port_vars);
    env.extend(c.env.iter().map(|(k, v)| var(k.as_str(), v.as_str())));
    env.push(var("HOST", ctx.offer.hostname.as_str()));
    env.push(var("MESOKIT_JOB", ctx.job.name.as_str()));
    env.push(var("MESOKIT_GROUP", ctx.group.name.as_str()));
    env.push(var("MESOKIT_INSTANCE", decimal(ctx.index.into())));
    if let Some(&first) = ctx.ports.first() {
        let mut list = String::with_capacity(6 * ctx.ports.len());
        for (i, p) in ctx.ports.iter().enumerate() {
            if i > 0 {
                list.push(',');
            }
            crate::core::record::push_u64(&mut list, *p);
        }
        env.push(var("PORTS", list));
        env.push(var("PORT", decimal(first)));
        for (i, p) in ctx.ports.iter().enumerate() {
            let mut name = String::with_capacity(8);
            name.push_str("PORT");
            crate::core::record::push_u64(&mut name, i as u64);
            env.push(var(name, decimal(*p)));
        }
    }
    let mut info = if let Some(shell) = &c.shell {
        helpers::shell(shell)
    } else if !c.argv.is_empty() {
        helpers::argv(&c.argv)
    } else {
        // A container image with its own entrypoint.
        CommandInfo {
            shell: Some(false),
            ..CommandInfo::default()
        }
    };
    info.environment = Some(Environment { variables: env });
    info.user = c.user.clone();
    info.uris = c
        .uris
        .iter()
        .map(|u| command_info::Uri {
            value: u.value.clone(),
            executable: Some(u.executable),
            extract: Some(u.extract),
            cache: Some(u.cache),
            output_file: u.output_file.clone(),
        })
        .collect();
    info
}

fn seconds(d: Duration) -> Option<f64> {
    Some(d.as_secs_f64())
}

fn steps_json(steps: &[StepSpec]) -> String {
    // The executor's format (mesokit-executor `commands`): [{"value", "guard", "async"}].
    let mut out = Vec::new();
    let mut w = mesokit_proto::json::Writer::new(&mut out);
    w.begin_array();
    for s in steps {
        w.begin_object();
        w.key("value");
        w.string(&s.command);
        w.key("guard");
        w.bool(s.guard);
        w.key("async");
        w.bool(s.r#async);
        w.end_object();
    }
    w.end_array();
    String::from_utf8(out).unwrap_or_default()
}

/// Builds the `TaskInfo` for one instance.
pub(crate) fn task_info(ctx: &TaskContext<'_>, mut resources: Vec<Resource>) -> TaskInfo {
    let g = ctx.group;
    let command = command_info(&g.command, ctx);
    let mut labels: Vec<Label> = g
        .labels
        .iter()
        .map(|(k, v)| Label {
            key: k.clone(),
            value: Some(v.clone()),
        })
        .collect();
    let container = g.container.as_ref().map(|c| {
        Box::new(match c.kind {
            ContainerKind::Mesos => ContainerInfo {
                r#type: container_info::Type::Mesos as i32,
                mesos: Some(container_info::MesosInfo {
                    image: Some(Box::new(Image {
                        r#type: image::Type::Docker as i32,
                        docker: Some(image::Docker {
                            name: c.image.clone(),
                            ..image::Docker::default()
                        }),
                        cached: Some(!c.force_pull),
                        ..Image::default()
                    })),
                }),
                ..ContainerInfo::default()
            },
            ContainerKind::Docker => ContainerInfo {
                r#type: container_info::Type::Docker as i32,
                docker: Some(container_info::DockerInfo {
                    image: c.image.clone(),
                    network: Some(container_info::docker_info::Network::Host as i32),
                    force_pull_image: Some(c.force_pull),
                    ..container_info::DockerInfo::default()
                }),
                ..ContainerInfo::default()
            },
        })
    });
    let health_check = g.health_check.as_ref().map(|h| {
        let port = |i: usize| ctx.ports.get(i).copied().unwrap_or(0) as u32;
        let mut hc = HealthCheck {
            delay_seconds: seconds(h.delay),
            interval_seconds: seconds(h.interval),
            timeout_seconds: seconds(h.timeout),
            consecutive_failures: Some(h.consecutive_failures),
            grace_period_seconds: seconds(h.grace_period),
            ..HealthCheck::default()
        };
        match &h.kind {
            HealthCheckKind::Http { port_index, path } => {
                hc.r#type = Some(health_check::Type::Http as i32);
                hc.http = Some(health_check::HttpCheckInfo {
                    port: port(*port_index),
                    path: Some(path.clone()),
                    ..health_check::HttpCheckInfo::default()
                });
            }
            HealthCheckKind::Tcp { port_index } => {
                hc.r#type = Some(health_check::Type::Tcp as i32);
                hc.tcp = Some(health_check::TcpCheckInfo {
                    port: port(*port_index),
                    ..health_check::TcpCheckInfo::default()
                });
            }
            HealthCheckKind::Command { command } => {
                hc.r#type = Some(health_check::Type::Command as i32);
                hc.command = Some(helpers::shell(command));
            }
        }
        Box::new(hc)
    });
    let executor = match &g.executor {
        ExecutorSpec::Command => None,
        ExecutorSpec::Mesokit(m) => {
            if !m.before.is_empty() {
                labels.push(Label {
                    key: "before_commands".into(),
                    value: Some(steps_json(&m.before)),
                });
            }
            if !m.after.is_empty() {
                labels.push(Label {
                    key: "after_commands".into(),
                    value: Some(steps_json(&m.after)),
                });
            }
            if !m.hooks.is_empty() {
                labels.push(Label {
                    key: "hooks".into(),
                    value: Some(m.hooks.join(",")),
                });
            }
            // The executor's own share, carved from the same offer entries as the task's
            // first scalars (so it carries the same role and allocation info).
            let mut exec_resources = Vec::new();
            for (name, amount) in ["cpus", "mem"].iter().zip(EXECUTOR_RESOURCES) {
                if let Some(pos) = resources.iter().position(|r| {
                    r.name == *name && r.scalar.as_ref().is_some_and(|s| s.value > amount)
                }) {
                    let mut r = resources[pos].clone();
                    let s = resources[pos].scalar.as_mut().unwrap();
                    let left = mesokit_proto::resources::to_fixed(s.value)
                        - mesokit_proto::resources::to_fixed(amount);
                    s.value = mesokit_proto::resources::from_fixed(left);
                    r.scalar = Some(mesokit_proto::v1::value::Scalar { value: amount });
                    exec_resources.push(r);
                }
            }
            let cmd = m.command.as_deref().unwrap_or(ctx.executor_command);
            Some(Box::new(ExecutorInfo {
                r#type: Some(executor_info::Type::Custom as i32),
                executor_id: ExecutorId {
                    value: ctx.task_id.to_string(),
                },
                name: Some(format!("mesokit executor for {}", ctx.task_id)),
                command: Some(helpers::shell(cmd)),
                resources: exec_resources,
                ..ExecutorInfo::default()
            }))
        }
    };
    // Mesos takes a command or an executor, never both. With the mesokit executor the
    // command travels in `TaskInfo.data` as `{"command": <CommandInfo in Mesos JSON>}`; the
    // executor reads it from there (mesokit-executor `launch`).
    let (command, data) = match &executor {
        Some(_) => {
            let mut out = Vec::new();
            {
                let mut w = mesokit_proto::json::Writer::new(&mut out);
                w.begin_object();
                w.key("command");
            }
            mesokit_proto::json::encode_into(&command, &mut out);
            out.push(b'}');
            (None, Some(bytes::Bytes::from(out)))
        }
        None => (Some(command), None),
    };
    TaskInfo {
        // The task id without its attempt suffix: `<job>.<group>.<index>`.
        name: ctx.task_id[..ctx.task_id.rfind('.').unwrap_or(ctx.task_id.len())].to_string(),
        task_id: TaskId {
            value: ctx.task_id.to_string(),
        },
        agent_id: AgentId {
            value: ctx.offer.agent_id.value.clone(),
        },
        resources: std::mem::take(&mut resources),
        executor,
        command,
        container,
        health_check,
        data,
        kill_policy: g.kill_grace.map(|d| KillPolicy {
            grace_period: Some(helpers::duration_info(d)),
        }),
        labels: (!labels.is_empty()).then_some(Labels { labels }),
        ..TaskInfo::default()
    }
}
