use super::*;

const BATCH: &str = "\
name: demo
kind: batch
groups:
  - name: work
    instances: 3
    priority: 5
    resources: {cpus: 0.25, mem: 64, ports: [8080, 0]}
    command:
      shell: echo hi
      env: {A: b}
      uris: [http://example.invalid/a.tgz, {value: /tmp/x, extract: false}]
    health_check: {type: http, port_index: 1, path: /health, interval: 2s}
    scheduler_check: {port_index: 0, path: /leader, statuses: [200], body_contains: yes, property: leader}
    labels: {team: infra}
    kill_grace: 5s
    restart:
      on: [failed, TASK_LOST]
      backoff: {initial: 500ms, factor: 3, max: 1min}
      max_restarts: 2
    constraints:
      - [hostname, UNIQUE]
      - [rack, GROUP_BY, 3]
      - [zone, LIKE, 'a.*']
";

fn err(yaml: &str) -> SpecError {
    JobSpec::from_yaml(yaml, Some("job.yaml")).unwrap_err()
}

#[test]
fn full_group_decodes() {
    let spec = JobSpec::from_yaml(BATCH, None).unwrap();
    assert_eq!(spec.name, "demo");
    assert_eq!(spec.roles, vec!["*".to_string()]);
    let g = &spec.groups[0];
    assert_eq!((g.instances, g.priority), (3, 5));
    assert_eq!(g.resources.cpus, 0.25);
    assert_eq!(g.resources.fixed_ports, vec![8080]);
    assert_eq!(g.resources.ports, 1);
    assert_eq!(g.command.shell.as_deref(), Some("echo hi"));
    assert_eq!(g.command.env["A"], "b");
    assert_eq!(g.command.uris.len(), 2);
    assert!(g.command.uris[0].extract && !g.command.uris[1].extract);
    let h = g.health_check.as_ref().unwrap();
    assert_eq!(h.interval, Duration::from_secs(2));
    assert_eq!(h.delay, Duration::from_secs(15), "Mesos default");
    assert_eq!(
        h.kind,
        HealthCheckKind::Http {
            port_index: 1,
            path: "/health".into()
        }
    );
    let sc = g.scheduler_check.as_ref().unwrap();
    assert_eq!(
        (sc.path.as_str(), sc.statuses.as_slice()),
        ("/leader", &[200u16][..])
    );
    assert_eq!(sc.property.as_deref(), Some("leader"));
    assert_eq!(sc.grace_failures, 3);
    assert_eq!(g.kill_grace, Some(Duration::from_secs(5)));
    use mesokit_proto::v1::TaskState as S;
    assert_eq!(g.restart.on, vec![S::TaskFailed, S::TaskLost]);
    assert_eq!(g.restart.max_restarts, Some(2));
    assert_eq!(g.restart.delay(1), Duration::from_millis(500));
    assert_eq!(g.restart.delay(2), Duration::from_millis(1500));
    assert_eq!(g.restart.delay(10), Duration::from_secs(60));
    assert_eq!(g.constraints.len(), 3);
    assert_eq!(g.constraints[1].op, ConstraintOp::GroupBy(3));
}

#[test]
fn json_spec_is_the_same_as_yaml() {
    let json = r#"{"name": "demo", "groups": [{"name": "w", "instances": 2,
        "resources": {"cpus": 1, "mem": 10}, "command": ["sleep", "1"]}]}"#;
    let spec = JobSpec::from_yaml(json, None).unwrap();
    assert_eq!(spec.groups[0].command.argv, vec!["sleep", "1"]);
    let built = JobSpec::new("demo", JobKind::Batch).group(GroupSpec {
        command: CommandSpec {
            argv: vec!["sleep".into(), "1".into()],
            ..CommandSpec::default()
        },
        ..GroupSpec::new("w", 2, "").resources(1.0, 10.0)
    });
    assert_eq!(spec, built);
}

#[test]
fn errors_name_file_line_and_field() {
    let e = err(
        "name: x\ngroups:\n  - name: a\n    resources: {cpus: lots, mem: 1}\n    command: true\n",
    );
    assert_eq!(e.field, "groups[0].resources.cpus");
    assert_eq!(e.pos.unwrap().line, 4);
    let text = e.to_string();
    assert!(text.starts_with("job.yaml:4:"), "{text}");
    assert!(text.contains("expected a number, found \"lots\""), "{text}");

    let e = err("name: x\ngroups:\n  - name: a\n    instnaces: 2\n    command: true\n");
    assert_eq!(e.field, "groups[0].instnaces");
    assert_eq!(e.pos.unwrap().line, 4);
    assert!(e.message.contains("unknown key"), "{e}");

    // A rule broken in validation still points at the line of the field.
    let e = err(
        "name: x\ngroups:\n  - name: a\n    command: true\n    resources: {cpus: 1}\n  - name: a\n    command: true\n    resources: {cpus: 1}\n",
    );
    assert_eq!(e.field, "groups[1].name");
    assert_eq!(e.pos.unwrap().line, 6);

    let e = err("name: x\ngroups:\n  - name: a\n    resources: {cpus: 1}\n");
    assert!(e.message.contains("needs a command"), "{e}");
    assert_eq!(e.pos.unwrap().line, 3);

    let e = err(
        "name: x\ngroups: [{name: a, command: x, resources: {cpus: 1}, health_check: {type: tcp}}]\n",
    );
    assert_eq!(e.field, "groups[0].health_check.port_index");

    let e = err(
        "name: x\ngroups: [{name: a, command: x, resources: {cpus: 1}, constraints: [[host, NEAR]]}]\n",
    );
    assert!(e.message.contains("unknown operator"), "{e}");
    let e = err(
        "name: x\ngroups: [{name: a, command: x, resources: {cpus: 1}, constraints: [[host, LIKE, '(']]}]\n",
    );
    assert!(e.message.contains("invalid regex"), "{e}");
    let e = err(
        "name: x\ngroups: [{name: a, command: x, resources: {cpus: 1}, kill_grace: 5 parsecs}]\n",
    );
    assert!(e.message.contains("unknown duration unit"), "{e}");
    let e = err(
        "name: x\ngroups: [{name: a, command: x, resources: {cpus: 1}, restart: {on: [running]}}]\n",
    );
    assert!(e.message.contains("not a terminal state"), "{e}");
    let e = err("groups: []\n");
    assert_eq!(e.field, "name");
    let e = err("name: x\ngroups: [{name: a\n");
    assert!(e.message.starts_with("invalid YAML"), "{e}");
    let e = err("- 1\n- 2\n");
    assert!(e.message.contains("expected a mapping"), "{e}");
    let e = err("name: x\nname: y\ngroups: []\n");
    assert!(e.message.contains("twice"), "{e}");
}

#[test]
fn service_defaults_restart_everything() {
    let spec = JobSpec::from_yaml(
        "name: s\nkind: service\ngroups: [{name: web, command: x, resources: {mem: 8}}]\n",
        None,
    )
    .unwrap();
    let g = &spec.groups[0];
    assert_eq!(g.restart.max_restarts, None);
    assert!(
        g.restart
            .on
            .contains(&mesokit_proto::v1::TaskState::TaskFinished)
    );
    assert_eq!(spec.failover_timeout, Duration::from_secs(7 * 24 * 3600));
}

#[test]
fn durations() {
    assert_eq!(parse_duration("15secs").unwrap(), Duration::from_secs(15));
    assert_eq!(parse_duration("2min").unwrap(), Duration::from_secs(120));
    assert_eq!(parse_duration("1.5h").unwrap(), Duration::from_secs(5400));
    assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
    assert_eq!(parse_duration("3").unwrap(), Duration::from_secs(3));
    assert!(parse_duration("soon").is_err());
}
