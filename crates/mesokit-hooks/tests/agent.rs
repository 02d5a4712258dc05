//! Command modules at run time against real scripts: what every method makes of good and
//! broken answers (hangs, no output, invalid JSON, an array, failures with and without an
//! error file, scripts deleting their temp files or leaving children behind), the watch loop,
//! hook chaining, and isolator state recovery. Every test checks that no temp file and no
//! script process is left.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use mesokit_hooks::agent::{CommandModules, Verdict, call_once, interpret};
use mesokit_hooks::mesos::{ContainerConfig, container_input};
use mesokit_hooks::modules::{self, CommandModule, Method};
use mesokit_hooks::runner::Runner;
use mesokit_proto::v1::{
    AgentInfo, CommandInfo, ContainerId, ExecutorId, ExecutorInfo, FrameworkInfo, Label, Labels,
    TaskId, TaskInfo, task_status,
};

struct Scratch {
    root: PathBuf,
    runner: Runner,
}

impl Scratch {
    fn new(name: &str) -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
            "hooks-agent-{name}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("tmp")).unwrap();
        let runner = Runner::new(root.join("tmp"));
        Scratch { root, runner }
    }

    /// A `/bin/sh` script; `@` stands for the scratch directory.
    fn script(&self, name: &str, body: &str) -> String {
        let path = self.root.join(name);
        let body = body.replace('@', self.root.to_str().unwrap());
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path.to_str().unwrap().to_owned()
    }

    /// A module of `kind` ("Hook" or "Isolator") with these parameters besides module_name.
    fn module(&self, kind: &str, params: &[(&str, &str)]) -> CommandModule {
        let cfg = modules::parse_json(&modules_json(kind, params), "test").expect("parses");
        cfg.hooks.into_iter().chain(cfg.isolators).next().unwrap()
    }

    async fn assert_clean(&self) {
        // The runner's private directory remains while it lives, empty.
        let left: Vec<_> = std::fs::read_dir(self.runner.dir())
            .unwrap()
            .flat_map(|e| {
                let e = e.unwrap();
                match std::fs::read_dir(e.path()) {
                    Ok(inner) => inner.map(|f| f.unwrap().path()).collect(),
                    Err(_) => vec![e.path()],
                }
            })
            .collect();
        assert!(left.is_empty(), "temp files left behind: {left:?}");
        for _ in 0..100 {
            if processes_mentioning(self.root.to_str().unwrap()).is_empty() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!(
            "processes left behind: {:?}",
            processes_mentioning(self.root.to_str().unwrap())
        );
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

fn modules_json(kind: &str, params: &[(&str, &str)]) -> String {
    let mut ps = vec![r#"{"key":"module_name","value":"m"}"#.to_owned()];
    ps.extend(
        params
            .iter()
            .map(|(k, v)| format!(r#"{{"key":"{k}","value":"{v}"}}"#)),
    );
    format!(
        r#"{{"libraries":[{{"file":"x.so","modules":[{{"name":"com_criteo_mesos_Command{kind}","parameters":[{}]}}]}}]}}"#,
        ps.join(",")
    )
}

fn processes_mentioning(needle: &str) -> Vec<String> {
    let me = std::process::id();
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        let zombie = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| s.rsplit_once(") ").map(|(_, r)| r.starts_with('Z')))
            .unwrap_or(true);
        if cmd.contains(needle) && !zombie {
            out.push(format!("{pid} {cmd}"));
        }
    }
    out
}

fn cid(v: &str) -> ContainerId {
    ContainerId {
        value: v.into(),
        parent: None,
    }
}

fn config() -> ContainerConfig {
    ContainerConfig {
        command_info: CommandInfo {
            value: Some("sleep 1".into()),
            ..Default::default()
        },
        directory: "/sandbox".into(),
        ..Default::default()
    }
}

fn task() -> TaskInfo {
    TaskInfo {
        name: "t".into(),
        task_id: TaskId { value: "t".into() },
        labels: Some(Labels {
            labels: vec![Label {
                key: "orig".into(),
                value: None,
            }],
        }),
        ..Default::default()
    }
}

fn executor() -> ExecutorInfo {
    ExecutorInfo {
        executor_id: ExecutorId { value: "e".into() },
        ..Default::default()
    }
}

/// Runs `method` of a one-method module whose script has `body`.
async fn verdict(s: &Scratch, method: Method, body: &str, timeout: &str) -> Verdict {
    let kind = match method.kind() {
        modules::ModuleKind::Hook => "Hook",
        modules::ModuleKind::Isolator => "Isolator",
    };
    let script = s.script(&format!("{}.sh", method.key_prefix()), body);
    let command_key = format!("{}_command", method.key_prefix());
    let timeout_key = format!("{}_timeout", method.key_prefix());
    let module = s.module(kind, &[(&command_key, &script), (&timeout_key, timeout)]);
    let input = container_input(Some(&config()), &cid("c1"), None);
    call_once(&s.runner, &module, method, input).await.unwrap()
}

const EVERY: [Method; 15] = Method::ALL;

#[tokio::test]
async fn a_hanging_script_is_killed_after_its_timeout() {
    let s = Scratch::new("hang");
    s.script("child.sh", "sleep 1000");
    for method in EVERY {
        let v = verdict(&s, method, "@/child.sh & sleep 1000", "1").await;
        let text = v.to_string();
        assert!(
            text.contains("took too long to execute"),
            "{method}: {text}"
        );
        match method {
            Method::RunTaskLabelDecorator
            | Method::ExecutorEnvironmentDecorator
            | Method::RemoveExecutorHook => assert!(matches!(v, Verdict::HookError(_))),
            Method::Prepare | Method::Isolate => assert!(matches!(v, Verdict::LaunchFails(_))),
            Method::Watch => assert!(matches!(v, Verdict::KeepWatching(Some(_)))),
            Method::Usage => match v {
                Verdict::Usage {
                    statistics,
                    warning: Some(_),
                } => {
                    assert!(statistics.timestamp > 0.0);
                    assert_eq!(statistics.mem_rss_bytes, None);
                }
                other => panic!("{other:?}"),
            },
            Method::Cleanup => assert!(matches!(v, Verdict::CleanupFails(_))),
            // mesokit's extra hooks: logged, nothing changes.
            _ => assert!(matches!(v, Verdict::HookError(_)), "{method}: {v:?}"),
        }
    }
    s.assert_clean().await;
}

#[tokio::test]
async fn empty_output_means_what_it_means_in_mesos() {
    let s = Scratch::new("empty");
    for method in EVERY {
        let v = verdict(&s, method, "exit 0", "5").await;
        let expected = match method {
            Method::RunTaskLabelDecorator
            | Method::ExecutorEnvironmentDecorator
            | Method::MasterLaunchTaskLabelDecorator
            | Method::MasterLaunchTaskResourceDecorator
            | Method::TaskStatusDecorator
            | Method::ResourcesDecorator
            | Method::AttributesDecorator => Verdict::HookError("No content to parse".into()),
            Method::RemoveExecutorHook
            | Method::Isolate
            | Method::Cleanup
            | Method::AgentLostHook
            | Method::PostFetchHook => Verdict::Done,
            Method::Prepare => Verdict::Launch(None),
            Method::Watch => Verdict::KeepWatching(None),
            Method::Usage => match &v {
                Verdict::Usage { statistics, .. } => Verdict::Usage {
                    statistics: mesokit_proto::v1::ResourceStatistics {
                        timestamp: statistics.timestamp,
                        ..Default::default()
                    },
                    warning: Some("Output is empty".into()),
                },
                other => panic!("{other:?}"),
            },
        };
        assert_eq!(v, expected, "{method}");
    }
    s.assert_clean().await;
}

#[tokio::test]
async fn invalid_json_an_array_and_a_lone_newline_are_errors() {
    let s = Scratch::new("invalid");
    for (body, error) in [
        ("echo '{not json' > \"$2\"", "Malformed JSON."),
        (
            "echo '[1,2]' > \"$2\"",
            "Malformed Protobuf. JSON object is expected.",
        ),
        ("echo > \"$2\"", "Malformed JSON."),
    ] {
        for method in EVERY {
            let v = verdict(&s, method, body, "5").await;
            let text = v.to_string();
            match method {
                // Output ignored.
                Method::RemoveExecutorHook
                | Method::Isolate
                | Method::Cleanup
                | Method::AgentLostHook
                | Method::PostFetchHook => assert_eq!(v, Verdict::Done, "{method}"),
                Method::Prepare => {
                    assert!(matches!(v, Verdict::LaunchFails(_)), "{method}: {text}");
                    assert!(
                        text.contains("Unable to deserialize ContainerLaunchInfo: ")
                            && text.contains(error),
                        "{text}"
                    );
                }
                _ => assert!(text.contains(error), "{method} {body}: {text}"),
            }
        }
    }
    s.assert_clean().await;
}

#[tokio::test]
async fn failures_name_the_command_the_status_and_the_error_file() {
    let s = Scratch::new("fail");
    let v = verdict(
        &s,
        Method::Prepare,
        "echo 'quota exceeded' > \"$3\"; exit 3",
        "5",
    )
    .await;
    let Verdict::LaunchFails(m) = v else {
        panic!("{v:?}")
    };
    assert!(
        m.contains("prepare.sh\" exited with return code 3. Cause: quota exceeded"),
        "{m}"
    );
    let v = verdict(&s, Method::RunTaskLabelDecorator, "exit 4", "5").await;
    let Verdict::HookError(m) = v else {
        panic!("{v:?}")
    };
    assert!(
        m.contains("exited with return code 4. The error file is empty."),
        "{m}"
    );
    let v = verdict(&s, Method::Cleanup, "kill -9 $$", "5").await;
    let Verdict::CleanupFails(m) = v else {
        panic!("{v:?}")
    };
    assert!(m.contains("exited via signal 9"), "{m}");
    s.assert_clean().await;
}

#[tokio::test]
async fn scripts_deleting_their_files_or_leaving_children_leave_nothing() {
    let s = Scratch::new("rude");
    s.script("child.sh", "sleep 1000");
    // Deletes all three files after writing an answer: no output left to read.
    let v = verdict(
        &s,
        Method::RunTaskLabelDecorator,
        "echo '{\"labels\":[]}' > \"$2\"; rm -f \"$1\" \"$2\" \"$3\"",
        "5",
    )
    .await;
    assert_eq!(v, Verdict::HookError("No content to parse".into()));
    // Leaves a child running in the background (also one detached with a subshell).
    let v = verdict(
        &s,
        Method::Watch,
        "@/child.sh & (@/child.sh &); echo '{}' > \"$2\"",
        "5",
    )
    .await;
    assert!(matches!(v, Verdict::Limitation(_)), "{v:?}");
    s.assert_clean().await;
}

#[tokio::test]
async fn valid_answers_are_read_as_mesos_reads_them() {
    let s = Scratch::new("valid");
    // Unknown keys are ignored, numbers may be strings, the script's timestamp is kept.
    let v = verdict(
        &s,
        Method::Usage,
        "echo '{\"timestamp\":12345,\"mem_rss_bytes\":\"77\",\"whatever\":[1]}' > \"$2\"",
        "5",
    )
    .await;
    let Verdict::Usage {
        statistics,
        warning: None,
    } = v
    else {
        panic!("{v:?}")
    };
    assert_eq!(statistics.timestamp, 12345.0);
    assert_eq!(statistics.mem_rss_bytes, Some(77));
    // A required field missing: the timestamp of a ResourceStatistics.
    let v = verdict(&s, Method::Usage, "echo '{\"processes\":1}' > \"$2\"", "5").await;
    let Verdict::Usage {
        warning: Some(w), ..
    } = v
    else {
        panic!("{v:?}")
    };
    assert!(w.contains("Error while converting JSON to protobuf"), "{w}");
    // A label without its key.
    let v = verdict(
        &s,
        Method::RunTaskLabelDecorator,
        "echo '{\"labels\":[{\"bad_key\":\"k\"}]}' > \"$2\"",
        "5",
    )
    .await;
    assert!(
        v.to_string()
            .contains("Error while converting JSON to protobuf"),
        "{v}"
    );
    // Any object is a limitation; an unknown reason is dropped for the default one.
    let v = verdict(
        &s,
        Method::Watch,
        "echo '{\"reason\":\"REASON_NOPE\"}' > \"$2\"",
        "5",
    )
    .await;
    let Verdict::Limitation(l) = v else {
        panic!("{v:?}")
    };
    assert_eq!(
        l.reason_or_default(),
        task_status::Reason::ContainerLimitation
    );
    s.assert_clean().await;
}

#[tokio::test]
async fn label_decorators_chain_in_hooks_order_and_errors_change_nothing() {
    let s = Scratch::new("chain");
    let first = s.script(
        "first.sh",
        "cp \"$1\" @/first.in; echo '{\"labels\":[{\"key\":\"a\"}]}' > \"$2\"",
    );
    let broken = s.script("broken.sh", "exit 1");
    let second = s.script(
        "second.sh",
        "cp \"$1\" @/second.in; echo '{\"labels\":[{\"key\":\"a\"},{\"key\":\"b\"}]}' > \"$2\"",
    );
    let json = format!(
        r#"{{"libraries":[{{"file":"x.so","modules":[
        {{"name":"com_criteo_mesos_CommandHook","parameters":[{{"key":"module_name","value":"1"}},{{"key":"hook_slave_run_task_label_decorator_command","value":"{first}"}}]}},
        {{"name":"com_criteo_mesos_CommandHook2","parameters":[{{"key":"module_name","value":"2"}},{{"key":"hook_slave_run_task_label_decorator_command","value":"{broken}"}}]}},
        {{"name":"com_criteo_mesos_CommandHook3","parameters":[{{"key":"module_name","value":"3"}},{{"key":"hook_slave_run_task_label_decorator_command","value":"{second}"}}]}}]}}]}}"#
    );
    let cfg = modules::parse_json(&json, "test").unwrap();
    let cfg = modules::select(
        &cfg,
        &[
            "com_criteo_mesos_CommandHook",
            "com_criteo_mesos_CommandHook2",
            "com_criteo_mesos_CommandHook3",
        ],
        &[],
    )
    .unwrap();
    let m = CommandModules::new(&cfg, s.runner.clone(), &s.root.join("state"));
    let labels = m
        .decorate_labels(
            &task(),
            &executor(),
            &FrameworkInfo::default(),
            &AgentInfo::default(),
        )
        .await
        .unwrap();
    let keys: Vec<&str> = labels.labels.iter().map(|l| l.key.as_str()).collect();
    assert_eq!(keys, ["a", "b"]);
    let first_in = std::fs::read_to_string(s.root.join("first.in")).unwrap();
    assert!(first_in.contains("\"key\":\"orig\""), "{first_in}");
    let second_in = std::fs::read_to_string(s.root.join("second.in")).unwrap();
    assert!(
        second_in.contains("\"labels\":{\"labels\":[{\"key\":\"a\"}]}"),
        "the second hook sees the first one's labels: {second_in}"
    );
    s.assert_clean().await;
}

fn isolator(s: &Scratch, params: &[(&str, String)]) -> Arc<CommandModules> {
    let params: Vec<(&str, &str)> = params.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let cfg = modules::parse_json(&modules_json("Isolator", &params), "test").unwrap();
    Arc::new(CommandModules::new(
        &cfg,
        s.runner.clone(),
        &s.root.join("state"),
    ))
}

#[tokio::test]
async fn the_watch_loop_retries_until_a_limitation_and_stops_at_cleanup() {
    let s = Scratch::new("watch");
    // Fails twice (no limitation), then reports one.
    let watch = s.script(
        "watch.sh",
        "echo x >> @/runs; n=$(wc -l < @/runs); if [ $n -ge 3 ]; then echo '{\"message\":\"enough\"}' > \"$2\"; else exit 1; fi",
    );
    let m = isolator(
        &s,
        &[
            ("isolator_watch_command", watch),
            ("isolator_watch_frequence", "0".into()),
        ],
    );
    m.prepare(&cid("c1"), &config()).await.unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel();
    m.watch(&cid("c1"), move |l| {
        let _ = tx.send(l);
    });
    let limited = tokio::time::timeout(Duration::from_secs(10), rx)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(limited.limitation.message.as_deref(), Some("enough"));
    assert_eq!(
        std::fs::read_to_string(s.root.join("runs"))
            .unwrap()
            .lines()
            .count(),
        3
    );
    m.cleanup(&cid("c1")).await.unwrap();

    // A loop that never limits stops when the container is cleaned up.
    let slow = s.script("slow.sh", "echo x >> @/slow_runs; exit 0");
    let m = isolator(
        &s,
        &[
            ("isolator_watch_command", slow),
            ("isolator_watch_frequence", "0".into()),
        ],
    );
    m.prepare(&cid("c2"), &config()).await.unwrap();
    m.watch(&cid("c2"), |_| panic!("no limitation expected"));
    while !s.root.join("slow_runs").exists() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    m.cleanup(&cid("c2")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let runs = std::fs::read_to_string(s.root.join("slow_runs"))
        .unwrap()
        .len();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        std::fs::read_to_string(s.root.join("slow_runs"))
            .unwrap()
            .len(),
        runs,
        "the loop kept running after cleanup"
    );
    s.assert_clean().await;
}

#[tokio::test]
async fn isolator_state_survives_a_restart_and_cleanup_removes_it() {
    let s = Scratch::new("recover");
    let cleanup = s.script("cleanup.sh", "cat \"$1\" > @/cleaned");
    let params = [("isolator_cleanup_command", cleanup)];
    let nested = ContainerId {
        value: "child".into(),
        parent: Some(Box::new(cid("parent"))),
    };
    {
        let m = isolator(&s, &params);
        m.prepare(&nested, &config()).await.unwrap();
        // Preparing the same container twice is refused.
        let again = m.prepare(&nested, &config()).await.unwrap_err();
        assert!(again.contains("already initialized"), "{again}");
    }
    let state = s.root.join("state/m/parent.child");
    assert!(state.exists());
    // A new agent process: the container comes back from its state file.
    let m = isolator(&s, &params);
    let found = m.recover();
    assert_eq!(found, vec![nested.clone()]);
    m.cleanup(&nested).await.unwrap();
    assert!(!state.exists());
    let cleaned = std::fs::read_to_string(s.root.join("cleaned")).unwrap();
    assert!(
        cleaned.contains("\"directory\":\"/sandbox\"")
            && cleaned.contains(
                "\"container_id\":{\"value\":\"child\",\"parent\":{\"value\":\"parent\"}}"
            ),
        "{cleaned}"
    );
    // Unknown containers are skipped, as Criteo does.
    m.cleanup(&cid("never")).await.unwrap();
    s.assert_clean().await;
}

#[tokio::test]
async fn usage_merges_isolators_and_skips_unknown_containers() {
    let s = Scratch::new("usage");
    let usage = s.script(
        "usage.sh",
        "echo '{\"timestamp\":1,\"processes\":3}' > \"$2\"",
    );
    let m = isolator(&s, &[("isolator_usage_command", usage)]);
    assert_eq!(m.usage(&cid("unknown")).await, None);
    m.prepare(&cid("c"), &config()).await.unwrap();
    let stats = m.usage(&cid("c")).await.unwrap();
    assert_eq!((stats.timestamp, stats.processes), (1.0, Some(3)));
    m.cleanup(&cid("c")).await.unwrap();
    s.assert_clean().await;
}

#[test]
fn interpret_needs_no_process() {
    // A run error for a hook is a logged error, never a panic.
    let err = mesokit_hooks::RunError::Timeout {
        label: "l".into(),
        command: "c".into(),
        after: Duration::from_secs(1),
    };
    assert!(matches!(
        interpret(Method::RemoveExecutorHook, Err(err), 0.0),
        Verdict::HookError(_)
    ));
}
