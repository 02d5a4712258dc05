//! The `mesokit` binary and command modules: `mesokit hook test` on the example scripts of
//! `examples/modules/` for every method, and `mesokit local` refusing bad `--modules`
//! configurations at start-up with a message naming the key.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn mesokit(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mesokit"))
        .args(args)
        .current_dir(repo())
        .output()
        .expect("mesokit runs")
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn hook_test(method: &str, extra: &[&str]) -> (bool, String) {
    let mut args = vec![
        "hook",
        "test",
        "--modules",
        "examples/modules/modules.json",
        "--method",
        method,
    ];
    args.extend_from_slice(extra);
    let out = mesokit(&args);
    let (stdout, stderr) = text(&out);
    let result = stdout
        .lines()
        .find_map(|l| l.strip_prefix("result: "))
        .unwrap_or_else(|| panic!("no result line: {stdout} {stderr}"))
        .to_owned();
    (out.status.success(), result)
}

#[test]
fn hook_test_runs_every_example_method_on_its_sample() {
    let cases = [
        (
            "slaveRunTaskLabelDecorator",
            r#"the task's labels are replaced by {"labels":[{"key":"decorated-by","value":"examples/modules"},{"key":"task","value":"sample-task"}]}"#,
        ),
        (
            "hook_slave_executor_environment_decorator",
            r#"these variables are set in the executor's environment: {"variables":[{"name":"EXAMPLE_HOOK","type":"VALUE","value":"1"},{"name":"EXAMPLE_EXECUTOR_ID","type":"VALUE","value":"sample-task"}]}"#,
        ),
        ("slaveRemoveExecutorHook", "success; the output is ignored"),
        (
            "prepare",
            r#"the container launches with this launch info: {"environment":{"variables":[{"name":"EXAMPLE_CONTAINER_ID","type":"VALUE","value":"6d4b664d-615a-4a5c-b4a7-37b41d435c82"}]}}"#,
        ),
        ("isolate", "success; the output is ignored"),
        (
            "watch",
            "no limitation; the watch loop waits and runs the command again",
        ),
        ("cleanup", "success; the output is ignored"),
    ];
    for (method, expected) in cases {
        let (ok, result) = hook_test(method, &[]);
        assert!(ok, "{method}: {result}");
        assert_eq!(result, expected, "{method}");
    }
    let (ok, usage) = hook_test("usage", &[]);
    assert!(ok, "{usage}");
    assert!(
        usage.starts_with(r#"merged into /monitor/statistics: {"timestamp":"#)
            && usage.ends_with(r#","disk_used_bytes":0}"#),
        "{usage}"
    );
}

#[test]
fn hook_test_with_an_input_file_shows_a_watch_limitation() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("hook-cli-watch-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("LIMIT"), "").unwrap();
    let input = dir.join("input.json");
    std::fs::write(
        &input,
        format!(
            r#"{{"container_config":{{"command_info":{{"shell":true,"value":"sleep 1"}},"directory":"{}"}},"container_id":{{"value":"c1"}}}}"#,
            dir.display()
        ),
    )
    .unwrap();
    let (ok, result) = hook_test("watch", &["--input", input.to_str().unwrap()]);
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(ok, "{result}");
    assert_eq!(
        result,
        r#"limitation: the container is destroyed and its tasks fail: TASK_FAILED, REASON_CONTAINER_LIMITATION_DISK, message: LIMIT file found in the sandbox (answer: {"message":"LIMIT file found in the sandbox","reason":"REASON_CONTAINER_LIMITATION_DISK"})"#
    );
}

#[test]
fn hook_test_reports_a_failing_script_and_exits_non_zero() {
    let modules = r#"{"libraries":[{"name":"x","modules":[{"name":"com_criteo_mesos_CommandIsolator","parameters":[
        {"key":"module_name","value":"m"},{"key":"isolator_prepare_command","value":"/bin/false"}]}]}]}"#;
    let out = mesokit(&["hook", "test", "--modules", modules, "--method", "prepare"]);
    let (stdout, _) = text(&out);
    assert!(!out.status.success());
    assert!(
        stdout.contains(
            "result: the container launch fails: TASK_FAILED, REASON_CONTAINER_LAUNCH_FAILED, message: "
        ) && stdout.contains("command \"/bin/false\" exited with return code 1."),
        "{stdout}"
    );

    let out = mesokit(&["hook", "test", "--modules", modules, "--method", "nope"]);
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(
        stderr.contains("--method: unknown method \"nope\""),
        "{stderr}"
    );

    let out = mesokit(&["hook", "test", "--modules", modules, "--method", "usage"]);
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(stderr.contains("no usage command configured"), "{stderr}");
}

/// `mesokit local` with a bad configuration stops before binding anything.
fn local_fails(modules: &str, hooks: &str, isolation: &str) -> String {
    let out = mesokit(&[
        "local",
        "--port",
        "0",
        "--agent-port",
        "0",
        "--modules",
        modules,
        "--hooks",
        hooks,
        "--isolation",
        isolation,
    ]);
    let (_, stderr) = text(&out);
    assert!(!out.status.success(), "started: {stderr}");
    stderr
}

#[test]
fn local_refuses_bad_module_configurations_naming_the_key() {
    let module = |params: &str| {
        format!(
            r#"{{"libraries":[{{"file":"/x.so","modules":[{{"name":"com_criteo_mesos_CommandHook","parameters":[{params}]}}]}}]}}"#
        )
    };
    let hook = "com_criteo_mesos_CommandHook";
    let err = local_fails(
        &module(r#"{"key":"hook_slave_remove_executor_hook_command","value":"/bin/true"}"#),
        hook,
        "",
    );
    assert!(err.contains("module_name"), "{err}");
    let err = local_fails(
        &module(
            r#"{"key":"module_name","value":"h"},{"key":"hook_slave_remove_executor_hook_timeout","value":"ten"}"#,
        ),
        hook,
        "",
    );
    assert!(
        err.contains("hook_slave_remove_executor_hook_timeout = \"ten\""),
        "{err}"
    );
    let err = local_fails(
        &module(r#"{"key":"module_name","value":"h"},{"key":"hook_typo_command","value":"/x"}"#),
        hook,
        "",
    );
    assert!(err.contains("unknown key \"hook_typo_command\""), "{err}");
    let err = local_fails(
        &module(r#"{"key":"module_name","value":"h"}"#),
        "",
        "com_criteo_mesos_CommandIsolator3",
    );
    assert!(
        err.contains("--isolation names \"com_criteo_mesos_CommandIsolator3\""),
        "{err}"
    );
    let err = local_fails("/nonexistent/modules.json", "", "");
    assert!(err.contains("--modules: cannot read modules file"), "{err}");
}

#[test]
fn hook_test_covers_the_extension_hooks() {
    let dir =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("hook-cli-ext-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let script = |name: &str, answer: &str| {
        let path = dir.join(name);
        std::fs::write(
            &path,
            format!(
                "#!/bin/sh\ncp \"$1\" {}/{name}.in\necho '{answer}' > \"$2\"\n",
                dir.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        path.display().to_string()
    };
    let status = script(
        "status.sh",
        r#"{"task_id":{"value":"x"},"state":"TASK_RUNNING","labels":{"labels":[{"key":"k","value":"v"}]}}"#,
    );
    let attributes = script(
        "attributes.sh",
        r#"{"attributes":[{"name":"rack","type":"TEXT","text":{"value":"r1"}}]}"#,
    );
    let modules = format!(
        r#"{{"libraries":[{{"name":"x","modules":[{{"name":"com_criteo_mesos_CommandHook","parameters":[
        {{"key":"module_name","value":"m"}},
        {{"key":"hook_slave_task_status_decorator_command","value":"{status}"}},
        {{"key":"hook_slave_attributes_decorator_command","value":"{attributes}"}}]}}]}}]}}"#
    );
    let run = |method: &str| {
        let out = mesokit(&["hook", "test", "--modules", &modules, "--method", method]);
        let (stdout, stderr) = text(&out);
        assert!(out.status.success(), "{stdout} {stderr}");
        stdout
            .lines()
            .find_map(|l| l.strip_prefix("result: "))
            .unwrap()
            .to_owned()
    };
    assert_eq!(
        run("slaveTaskStatusDecorator"),
        r#"the status update's labels become {"labels":[{"key":"k","value":"v"}]} and its container_status none"#
    );
    let seen = std::fs::read_to_string(dir.join("status.sh.in")).unwrap();
    assert!(
        seen.starts_with(r#"{"framework_id":{"value":"#) && seen.contains(r#""task_status":{"#),
        "{seen}"
    );
    assert_eq!(
        run("hook_slave_attributes_decorator"),
        r#"the agent's attributes are replaced by {"attributes":[{"name":"rack","type":"TEXT","text":{"value":"r1"}}]}"#
    );
    let seen = std::fs::read_to_string(dir.join("attributes.sh.in")).unwrap();
    assert!(seen.starts_with(r#"{"slave_info":{"#), "{seen}");
    std::fs::remove_dir_all(&dir).unwrap();
}
