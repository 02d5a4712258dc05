//! Criteo command modules under `mesokit local`: a command task (run by `mesokit executor`)
//! goes through every hook and isolator method, each a shell script that records its input
//! and answers; the test checks what each script saw and what its answer did. A second test
//! configures broken scripts everywhere and checks that the task still runs and the agent
//! still answers. Both check that no temp file, state file or script process is left.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use mesokit_client::scheduler::{SchedulerClient, SchedulerConfig, SchedulerEvent};
use mesokit_local::cluster::{ClusterConfig, LocalCluster};
use mesokit_proto::helpers::TaskBuilder;
use mesokit_proto::v1::{FrameworkInfo, Label, Labels, TaskState, TaskStatus, offer, task_status};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A scratch directory (scripts, what they saw, the cluster's work dir); removed on drop.
struct Scratch {
    root: PathBuf,
}

impl Scratch {
    fn new(name: &str) -> Self {
        let root = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("hook-local-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("seen")).unwrap();
        std::fs::create_dir_all(root.join("work")).unwrap();
        Scratch { root }
    }

    fn path(&self, p: &str) -> PathBuf {
        self.root.join(p)
    }

    /// An executable `/bin/sh` script; `@` in `body` stands for the scratch directory.
    fn script(&self, name: &str, body: &str) -> String {
        let path = self.root.join(name);
        let body = body.replace('@', self.root.to_str().unwrap());
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path.to_str().unwrap().to_owned()
    }

    fn seen(&self, method: &str) -> Option<String> {
        std::fs::read_to_string(self.root.join("seen").join(format!("{method}.json"))).ok()
    }

    async fn wait_seen(&self, method: &str) -> String {
        for _ in 0..200 {
            if let Some(s) = self.seen(method).filter(|s| !s.is_empty()) {
                return s;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the {method} script never ran");
    }

    /// Nothing may be left: no temp file of the runner, no isolator state file, no process
    /// running one of our scripts.
    async fn assert_clean(&self) {
        // Hooks started by the last events (remove-executor, cleanup) may still be finishing.
        let tmp = self.path("work/tmp");
        let mut left: Vec<_> = Vec::new();
        for _ in 0..100 {
            left = std::fs::read_dir(&tmp)
                .map(|d| d.flatten().map(|e| e.file_name()).collect())
                .unwrap_or_default();
            if left.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(
            left.is_empty(),
            "temp files left in {}: {left:?}",
            tmp.display()
        );
        let state = self.path("work/runtime");
        let files = files_under(&state);
        assert!(files.is_empty(), "isolator state left: {files:?}");
        // A killed process may take a moment to be reaped.
        let mut procs = Vec::new();
        for _ in 0..100 {
            procs = processes_mentioning(self.root.to_str().unwrap());
            if procs.is_empty() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("script processes left: {procs:?}");
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        for (pid, _) in processes_mentioning(self.root.to_str().unwrap()) {
            // Best effort for a failed test: never leave processes behind.
            let _ = std::process::Command::new("kill")
                .args(["-9", &pid.to_string()])
                .status();
        }
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// Live processes whose command line mentions `needle` (zombies excluded).
fn processes_mentioning(needle: &str) -> Vec<(u32, String)> {
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
            out.push((pid, cmd));
        }
    }
    out
}

/// GET over HTTP/1.0 (no chunking): the body.
async fn get(addr: std::net::SocketAddr, path: &str) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.unwrap();
    let text = String::from_utf8_lossy(&buf).into_owned();
    assert!(
        text.starts_with("HTTP/1.0 200") || text.starts_with("HTTP/1.1 200"),
        "{text}"
    );
    text.split_once("\r\n\r\n").unwrap().1.to_owned()
}

fn modules_json(hook: &[(&str, String)], isolator: &[(&str, String)]) -> String {
    let params = |ps: &[(&str, String)]| {
        ps.iter()
            .map(|(k, v)| format!(r#"{{"key":"{k}","value":"{v}"}}"#))
            .collect::<Vec<_>>()
            .join(",")
    };
    format!(
        r#"{{"libraries":[{{"file":"/usr/lib/libmesos_command_modules.so","modules":[
            {{"name":"com_criteo_mesos_CommandHook","parameters":[{}]}},
            {{"name":"com_criteo_mesos_CommandIsolator2","parameters":[{}]}}]}}]}}"#,
        params(hook),
        params(isolator)
    )
}

fn cluster_config(scratch: &Scratch, modules: &str) -> ClusterConfig {
    config_with(
        scratch,
        modules,
        &["filesystem/linux", "com_criteo_mesos_CommandIsolator2"],
    )
}

fn config_with(scratch: &Scratch, modules: &str, isolation: &[&str]) -> ClusterConfig {
    let mut config = ClusterConfig::for_tests(vec![
        env!("CARGO_BIN_EXE_mesokit").into(),
        "executor".into(),
    ]);
    config.work_dir = Some(scratch.path("work"));
    let defined = mesokit_hooks::modules::parse(modules).expect("modules.json parses");
    config.modules =
        mesokit_hooks::modules::select(&defined, &["com_criteo_mesos_CommandHook"], isolation)
            .expect("selection");
    config
}

/// Subscribes, launches `task_cmd` as a command task with one label, and hands every update
/// (acknowledged) to `on_update` until it returns true.
async fn run_task(
    cluster: &LocalCluster,
    task_cmd: &str,
    mut on_update: impl AsyncFnMut(&TaskStatus) -> bool,
) {
    let info = FrameworkInfo {
        user: "root".into(),
        name: "hooks".into(),
        ..Default::default()
    };
    let (client, mut events) =
        SchedulerClient::start(SchedulerConfig::new([cluster.master_url()], info)).expect("client");
    let mut launched = false;
    let result = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let SchedulerEvent::Event(ev) = events.next_event().await.expect("session") else {
                continue;
            };
            if let (Some(offers), false) = (&ev.offers, launched) {
                let o = &offers.offers[0];
                let mut task = TaskBuilder::new("t1", "t1", &o.agent_id.value)
                    .cpus(0.1)
                    .mem(16.0)
                    .shell(task_cmd)
                    .build();
                task.labels = Some(Labels {
                    labels: vec![Label {
                        key: "orig-key".into(),
                        value: Some("orig-value".into()),
                    }],
                });
                let op = offer::Operation {
                    r#type: Some(offer::operation::Type::Launch as i32),
                    launch: Some(offer::operation::Launch {
                        task_infos: vec![task],
                    }),
                    ..Default::default()
                };
                client
                    .accept(vec![o.id.clone()], vec![op], None)
                    .await
                    .expect("accept");
                launched = true;
            }
            if let Some(u) = &ev.update {
                client.acknowledge(&u.status).await.expect("ack");
                if on_update(&u.status).await {
                    return;
                }
            }
        }
    })
    .await;
    let _ = client.teardown().await;
    result.expect("the task did not finish within 60 s");
}

async fn wait_for_file(path: &Path, contains: &str) -> String {
    for _ in 0..200 {
        if let Ok(s) = std::fs::read_to_string(path)
            && s.contains(contains)
        {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{} never contained {contains:?}", path.display());
}

/// The value of `"key":"…"` (first occurrence) in a JSON text.
fn string_field<'a>(json: &'a str, key: &str) -> &'a str {
    let pat = format!("\"{key}\":\"");
    let start = json
        .find(&pat)
        .unwrap_or_else(|| panic!("no {key} in {json}"))
        + pat.len();
    &json[start..start + json[start..].find('"').unwrap()]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_module_method_sees_its_input_and_its_answer_takes_effect() {
    let s = Scratch::new("all");
    let record = |m: &str| {
        format!("cat \"$1\" > @/seen/{m}.json.part && mv @/seen/{m}.json.part @/seen/{m}.json")
    };
    let hook = vec![
        ("module_name", "test_hook".to_owned()),
        ("debug", "true".to_owned()),
        (
            "hook_slave_run_task_label_decorator_command",
            s.script(
                "label.sh",
                &format!(
                    "{}\necho '{{\"labels\":[{{\"key\":\"decorated\",\"value\":\"by-hook\"}}]}}' > \"$2\"",
                    record("label")
                ),
            ),
        ),
        ("hook_slave_run_task_label_decorator_timeout", "10".into()),
        (
            "hook_slave_executor_environment_decorator_command",
            s.script(
                "env.sh",
                &format!(
                    "{}\necho '{{\"variables\":[{{\"name\":\"HOOK_ENV\",\"value\":\"from-hook\"}}]}}' > \"$2\"",
                    record("env")
                ),
            ),
        ),
        (
            "hook_slave_remove_executor_hook_command",
            s.script("remove.sh", &record("remove")),
        ),
    ];
    let isolator = vec![
        ("module_name", "test_isolator".to_owned()),
        (
            "isolator_prepare_command",
            s.script(
                "prepare.sh",
                &format!(
                    "{}\necho '{{\"environment\":{{\"variables\":[{{\"name\":\"PREP_ENV\",\"value\":\"from-prepare\"}}]}},\"pre_exec_commands\":[{{\"value\":\"pwd > pre_exec_ran; mkdir -p wd\"}}],\"working_directory\":\"wd\"}}' > \"$2\"",
                    record("prepare")
                ),
            ),
        ),
        ("isolator_isolate_command", s.script("isolate.sh", &record("isolate"))),
        (
            "isolator_watch_command",
            s.script(
                "watch.sh",
                &format!(
                    "{}\nif [ -e @/limit ]; then echo '{{\"message\":\"too much toto\",\"reason\":\"REASON_CONTAINER_LIMITATION_MEMORY\"}}' > \"$2\"; fi",
                    record("watch")
                ),
            ),
        ),
        ("isolator_watch_frequence", "1".into()),
        ("isolator_watch_timeout", "10".into()),
        (
            "isolator_usage_command",
            s.script(
                "usage.sh",
                &format!(
                    "{}\necho '{{\"timestamp\":12345,\"mem_cache_bytes\":4242}}' > \"$2\"",
                    record("usage")
                ),
            ),
        ),
        ("isolator_cleanup_command", s.script("cleanup.sh", &record("cleanup"))),
    ];
    let modules = modules_json(&hook, &isolator);
    let cluster = LocalCluster::start(cluster_config(&s, &modules))
        .await
        .expect("cluster starts");
    let agent = cluster.agents()[0].endpoint();

    let mut states = Vec::new();
    let mut final_status = None;
    run_task(
        &cluster,
        "env > \"$MESOS_SANDBOX/task_env\"; exec sleep 100",
        async |st: &TaskStatus| {
            let state = TaskState::try_from(st.state).unwrap();
            states.push(state.as_str_name());
            if state == TaskState::TaskRunning {
                // prepare's working_directory: the executor runs in <sandbox>/wd (made by
                // the pre-exec command).
                let isolate = s.seen("isolate").unwrap();
                let pid = isolate
                    .rsplit_once("\"pid\":")
                    .unwrap()
                    .1
                    .trim_end_matches('}');
                let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).unwrap();
                let prepare = s.seen("prepare").unwrap();
                let sandbox = PathBuf::from(string_field(&prepare, "directory"));
                assert_eq!(cwd, sandbox.join("wd"));
                // usage: the script's answer is merged into the container's statistics (its
                // timestamp overrides the agent's, as Mesos's MergeFrom does).
                let stats = get(agent, "/monitor/statistics").await;
                assert!(stats.contains("\"mem_cache_bytes\":4242"), "{stats}");
                assert!(stats.contains("\"timestamp\":12345"), "{stats}");
                assert!(stats.contains("\"executor_id\":\"t1\""), "{stats}");
                assert!(stats.contains("\"mem_limit_bytes\":"), "{stats}");
                // /containers merges the same usage (with the container's id and status).
                let containers = get(agent, "/containers").await;
                assert!(
                    containers.contains("\"mem_cache_bytes\":4242"),
                    "{containers}"
                );
                assert!(containers.contains("\"container_id\":\""), "{containers}");
                assert!(containers.contains("\"executor_pid\":"), "{containers}");
                // Only now may the watch script report a limitation.
                std::fs::write(s.path("limit"), "").unwrap();
            }
            if mesokit_proto::helpers::is_terminal_value(st.state) {
                final_status = Some(st.clone());
                return true;
            }
            false
        },
    )
    .await;

    // watch: the limitation killed the container; the task failed with its reason/message.
    let st = final_status.unwrap();
    assert_eq!(
        TaskState::try_from(st.state).unwrap(),
        TaskState::TaskFailed,
        "{states:?} {st:?}"
    );
    assert_eq!(
        st.reason,
        Some(task_status::Reason::ContainerLimitationMemory as i32),
        "{st:?}"
    );
    assert_eq!(st.message.as_deref(), Some("too much toto"));
    assert!(states.contains(&"TASK_RUNNING"), "{states:?}");

    // label decorator: saw the task with its own label, the executor, framework and agent;
    // its answer replaced the labels (the agent's state shows only the new one).
    let label = s.seen("label").unwrap();
    for key in [
        "\"executor_info\":",
        "\"framework_info\":",
        "\"slave_info\":",
        "\"task_info\":",
    ] {
        assert!(label.contains(key), "{key} missing in {label}");
    }
    assert!(label.contains("\"key\":\"orig-key\""), "{label}");
    assert!(
        label.starts_with("{\"executor_info\""),
        "keys sorted: {label}"
    );

    // environment decorator and prepare: the variables reached the task.
    let env = s.seen("env").unwrap();
    assert!(env.starts_with("{\"executor_info\":{"), "{env}");
    let prepare = s.seen("prepare").unwrap();
    let sandbox = PathBuf::from(string_field(&prepare, "directory"));
    let task_env = wait_for_file(&sandbox.join("task_env"), "PREP_ENV").await;
    assert!(task_env.contains("HOOK_ENV=from-hook"), "{task_env}");
    assert!(task_env.contains("PREP_ENV=from-prepare"), "{task_env}");
    // prepare saw the container config and id; its pre-exec command ran in the sandbox.
    assert!(
        prepare.contains("\"container_config\":{\"command_info\":"),
        "{prepare}"
    );
    assert!(prepare.contains("\"task_info\":"), "{prepare}");
    let container_id =
        string_field(prepare.split_once("\"container_id\":").unwrap().1, "value").to_owned();
    let pre_exec = std::fs::read_to_string(sandbox.join("pre_exec_ran")).unwrap();
    assert_eq!(
        Path::new(pre_exec.trim()).canonicalize().unwrap(),
        sandbox.canonicalize().unwrap()
    );

    // isolate: the config, the container id and the executor's pid.
    let isolate = s.seen("isolate").unwrap();
    assert!(isolate.contains("\"container_config\":"), "{isolate}");
    assert!(
        isolate.contains(&format!(
            "\"container_id\":{{\"value\":\"{container_id}\"}}"
        )),
        "{isolate} / {container_id}"
    );
    let pid: u32 = isolate
        .rsplit_once("\"pid\":")
        .and_then(|(_, r)| r.trim_end_matches('}').parse().ok())
        .unwrap_or_else(|| panic!("no pid in {isolate}"));
    assert!(pid > 1);

    // watch and usage saw the container.
    for m in ["watch", "usage"] {
        let seen = s.seen(m).unwrap();
        assert!(seen.contains(&container_id), "{m}: {seen}");
        assert!(seen.contains("\"container_config\":"), "{m}: {seen}");
    }

    // cleanup and the remove-executor hook ran once the container was gone.
    let cleanup = s.wait_seen("cleanup").await;
    assert!(cleanup.contains(&container_id), "{cleanup}");
    let remove = s.wait_seen("remove").await;
    assert!(remove.contains("\"executor_info\":"), "{remove}");
    assert!(remove.contains("\"framework_info\":"), "{remove}");
    assert!(remove.contains("\"value\":\"t1\""), "{remove}");

    // The agent's state shows the decorated labels only.
    let state = get(agent, "/state").await;
    assert!(state.contains("by-hook"), "{state}");
    assert!(!state.contains("orig-key"), "{state}");

    cluster.shutdown().await;
    s.assert_clean().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_scripts_never_stop_the_task_or_the_agent() {
    let s = Scratch::new("broken");
    let hook = vec![
        ("module_name", "bad_hook".to_owned()),
        // Hangs: killed after its 1 s timeout, labels unchanged.
        (
            "hook_slave_run_task_label_decorator_command",
            s.script("hang.sh", "sleep 1000"),
        ),
        ("hook_slave_run_task_label_decorator_timeout", "1".into()),
        // A JSON array: not an Environment.
        (
            "hook_slave_executor_environment_decorator_command",
            s.script("array.sh", "echo '[1,2]' > \"$2\""),
        ),
        // Fails with a cause.
        (
            "hook_slave_remove_executor_hook_command",
            s.script(
                "fail.sh",
                "echo 'no way' > \"$3\"; echo ran > @/seen/remove.json; exit 3",
            ),
        ),
    ];
    s.script("linger.sh", "sleep 1000");
    let isolator = vec![
        ("module_name", "bad_isolator".to_owned()),
        // Leaves a child behind and deletes its own temp files.
        (
            "isolator_prepare_command",
            s.script("prepare.sh", "(@/linger.sh &) ; rm -f \"$1\" \"$2\" \"$3\""),
        ),
        // Invalid JSON.
        (
            "isolator_usage_command",
            s.script("usage.sh", "echo '{not json' > \"$2\""),
        ),
        // Prints nothing, then exits non-zero without an error file.
        (
            "isolator_watch_command",
            s.script("watch.sh", "echo ran > @/seen/watch.json; exit 1"),
        ),
        ("isolator_watch_frequence", "1".into()),
        (
            "isolator_cleanup_command",
            s.script("cleanup.sh", "echo ran > @/seen/cleanup.json; exit 2"),
        ),
    ];
    let modules = modules_json(&hook, &isolator);
    let cluster = LocalCluster::start(cluster_config(&s, &modules))
        .await
        .expect("cluster starts");
    let agent = cluster.agents()[0].endpoint();

    let mut running = false;
    run_task(&cluster, "exec sleep 100", async |st: &TaskStatus| {
        if st.state == TaskState::TaskRunning as i32 {
            running = true;
            // usage broke: the entry is still there, with the agent's own statistics.
            let stats = get(agent, "/monitor/statistics").await;
            assert!(stats.contains("\"executor_id\":\"t1\""), "{stats}");
            assert!(stats.contains("\"mem_limit_bytes\":"), "{stats}");
            // watch keeps running (and failing) without killing the task.
            s.wait_seen("watch").await;
            return true;
        }
        assert!(
            !mesokit_proto::helpers::is_terminal_value(st.state),
            "{st:?}"
        );
        false
    })
    .await;
    assert!(running);
    // The labels were left alone by the hanging decorator.
    let state = get(agent, "/state").await;
    assert!(state.contains("orig-key"), "{state}");
    // Teardown destroys the container: cleanup (failing) and remove-executor (failing) run,
    // the agent keeps answering.
    s.wait_seen("cleanup").await;
    s.wait_seen("remove").await;
    let health = get(agent, "/state").await;
    assert!(health.contains("\"id\""));
    cluster.shutdown().await;
    s.assert_clean().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mesokit_extension_hooks_decorate_agent_master_and_status() {
    let s = Scratch::new("ext");
    let record = |m: &str| {
        format!("cat \"$1\" > @/seen/{m}.json.part && mv @/seen/{m}.json.part @/seen/{m}.json")
    };
    let hook = [
        ("module_name", "ext_hook".to_owned()),
        (
            "hook_slave_resources_decorator_command",
            s.script(
                "resources.sh",
                &format!(
                    "{}\necho '{{\"resources\":[{{\"name\":\"cpus\",\"type\":\"SCALAR\",\"scalar\":{{\"value\":3}}}},{{\"name\":\"mem\",\"type\":\"SCALAR\",\"scalar\":{{\"value\":1000}}}}]}}' > \"$2\"",
                    record("resources")
                ),
            ),
        ),
        (
            "hook_slave_attributes_decorator_command",
            s.script(
                "attributes.sh",
                &format!(
                    "{}\necho '{{\"attributes\":[{{\"name\":\"rack\",\"type\":\"TEXT\",\"text\":{{\"value\":\"r9\"}}}}]}}' > \"$2\"",
                    record("attributes")
                ),
            ),
        ),
        (
            "hook_master_launch_task_label_decorator_command",
            s.script(
                "master_labels.sh",
                &format!(
                    "{}\necho '{{\"labels\":[{{\"key\":\"master-decorated\",\"value\":\"yes\"}}]}}' > \"$2\"",
                    record("master_labels")
                ),
            ),
        ),
        (
            "hook_slave_task_status_decorator_command",
            s.script(
                "status.sh",
                &format!(
                    "{}\nsed 's/.*\"task_status\":\\(.*\\)}}$/\\1/' \"$1\" | sed 's/}}$/,\"labels\":{{\"labels\":[{{\"key\":\"status-decorated\"}}]}}}}/' > \"$2\"",
                    record("status")
                ),
            ),
        ),
        (
            "hook_slave_post_fetch_hook_command",
            s.script("post_fetch.sh", &record("post_fetch")),
        ),
    ];
    let modules = format!(
        r#"{{"libraries":[{{"file":"x.so","modules":[{{"name":"com_criteo_mesos_CommandHook","parameters":[{}]}}]}}]}}"#,
        hook.iter()
            .map(|(k, v)| format!(r#"{{"key":"{k}","value":"{v}"}}"#))
            .collect::<Vec<_>>()
            .join(",")
    );
    let config = config_with(&s, &modules, &[]);
    let cluster = LocalCluster::start(config).await.expect("cluster starts");
    let agent = cluster.agents()[0].endpoint();

    // Resources and attributes decorators ran at agent start; the master offers the result.
    let resources_in = s.seen("resources").unwrap();
    assert!(
        resources_in.starts_with("{\"slave_info\":{"),
        "{resources_in}"
    );
    let master_state = get(cluster.master_addr(), "/state").await;
    assert!(master_state.contains("\"rack\":\"r9\""), "{master_state}");
    assert!(master_state.contains("\"cpus\":3.0"), "{master_state}");

    let mut running_labels = None;
    run_task(&cluster, "exec sleep 100", async |st: &TaskStatus| {
        if st.state == TaskState::TaskRunning as i32 {
            running_labels = Some(st.labels.clone());
            return true;
        }
        false
    })
    .await;
    // The status decorator's labels reached the scheduler with the executor's update.
    let labels = running_labels.unwrap().unwrap();
    assert_eq!(labels.labels[0].key, "status-decorated", "{labels:?}");
    let status_in = s.seen("status").unwrap();
    assert!(
        status_in.starts_with("{\"framework_id\":{\"value\":"),
        "{status_in}"
    );
    // The master label decorator saw the task with its own label and replaced them.
    let master_in = s.seen("master_labels").unwrap();
    assert!(master_in.contains("\"key\":\"orig-key\""), "{master_in}");
    let state = get(agent, "/state").await;
    assert!(state.contains("master-decorated"), "{state}");
    assert!(!state.contains("orig-key"), "{state}");
    // The post-fetch hook got the container and its sandbox.
    let post_fetch = s.seen("post_fetch").unwrap();
    assert!(
        post_fetch.starts_with("{\"container_id\":{\"value\":\"")
            && post_fetch.contains("\"directory\":\"")
            && post_fetch.contains("/executors/t1/runs/"),
        "{post_fetch}"
    );
    cluster.shutdown().await;
    s.assert_clean().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn isolator_state_left_by_an_earlier_run_is_cleaned_up_at_start() {
    let s = Scratch::new("recover");
    // What an agent killed before its containers' cleanup leaves behind.
    let state = s.path("work/runtime/agent-0/isolators/command/rec_isolator");
    std::fs::create_dir_all(&state).unwrap();
    std::fs::write(
        state.join("old-container"),
        r#"{"command_info":{"shell":true,"value":"sleep 1"},"directory":"/gone/sandbox"}"#,
    )
    .unwrap();
    let cleanup = s.script(
        "cleanup.sh",
        "cat \"$1\" > @/seen/cleanup.json.part && mv @/seen/cleanup.json.part @/seen/cleanup.json",
    );
    let modules = format!(
        r#"{{"libraries":[{{"file":"x.so","modules":[
        {{"name":"com_criteo_mesos_CommandHook","parameters":[{{"key":"module_name","value":"h"}}]}},
        {{"name":"com_criteo_mesos_CommandIsolator2","parameters":[{{"key":"module_name","value":"rec_isolator"}},{{"key":"isolator_cleanup_command","value":"{cleanup}"}}]}}]}}]}}"#
    );
    let cluster = LocalCluster::start(cluster_config(&s, &modules))
        .await
        .expect("cluster starts");
    let seen = s.wait_seen("cleanup").await;
    assert_eq!(
        seen,
        r#"{"container_config":{"command_info":{"shell":true,"value":"sleep 1"},"directory":"/gone/sandbox"},"container_id":{"value":"old-container"}}"#
    );
    cluster.shutdown().await;
    s.assert_clean().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_modules_kill_a_task_that_creates_limit() {
    let s = Scratch::new("examples");
    let examples = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/modules")
        .canonicalize()
        .unwrap();
    let modules = std::fs::read_to_string(examples.join("modules.json"))
        .unwrap()
        .replace("examples/modules/", &format!("{}/", examples.display()))
        // Watch every second instead of every five.
        .replace(
            r#"{ "key": "isolator_watch_frequence", "value": "5" }"#,
            r#"{ "key": "isolator_watch_frequence", "value": "1" }"#,
        );
    assert!(modules.contains(r#""value": "1" }"#));
    let mut config = ClusterConfig::for_tests(vec![
        env!("CARGO_BIN_EXE_mesokit").into(),
        "executor".into(),
    ]);
    config.work_dir = Some(s.path("work"));
    let defined = mesokit_hooks::modules::parse(&modules).unwrap();
    config.modules = mesokit_hooks::modules::select(
        &defined,
        &["com_criteo_mesos_CommandHook"],
        &["com_criteo_mesos_CommandIsolator"],
    )
    .unwrap();
    let cluster = LocalCluster::start(config).await.expect("cluster starts");
    let agent = cluster.agents()[0].endpoint();
    let mut last = None;
    let mut labels_seen = false;
    run_task(
        &cluster,
        "env > \"$MESOS_SANDBOX/env\"; sleep 1; touch \"$MESOS_SANDBOX/LIMIT\"; exec sleep 100",
        async |st: &TaskStatus| {
            if st.state == TaskState::TaskRunning as i32 {
                let state = get(agent, "/state").await;
                labels_seen = state.contains("\"decorated-by\"");
            }
            if mesokit_proto::helpers::is_terminal_value(st.state) {
                last = Some(st.clone());
                return true;
            }
            false
        },
    )
    .await;
    let st = last.unwrap();
    assert_eq!(st.state, TaskState::TaskFailed as i32, "{st:?}");
    assert_eq!(
        st.reason,
        Some(task_status::Reason::ContainerLimitationDisk as i32)
    );
    assert_eq!(
        st.message.as_deref(),
        Some("LIMIT file found in the sandbox")
    );
    assert!(
        labels_seen,
        "the example label decorator's labels are in /state"
    );
    cluster.shutdown().await;
    s.assert_clean().await;
}

/// Runs one task under an isolator with these parameters and returns its terminal status.
async fn task_under_isolator(s: &Scratch, params: &[(&str, String)]) -> TaskStatus {
    let hook = [("module_name", "h".to_owned())];
    let mut isolator = vec![("module_name", "iso".to_owned())];
    isolator.extend(params.iter().cloned());
    let cluster = LocalCluster::start(cluster_config(s, &modules_json(&hook, &isolator)))
        .await
        .expect("cluster starts");
    let mut last = None;
    run_task(&cluster, "exec sleep 100", async |st: &TaskStatus| {
        if mesokit_proto::helpers::is_terminal_value(st.state) {
            last = Some(st.clone());
            return true;
        }
        false
    })
    .await;
    cluster.shutdown().await;
    last.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_prepare_answer_fails_the_launch_and_is_cleaned_up() {
    let s = Scratch::new("prepare-fails");
    let st = task_under_isolator(
        &s,
        &[
            (
                "isolator_prepare_command",
                s.script("prepare.sh", "echo '[1]' > \"$2\""),
            ),
            (
                "isolator_cleanup_command",
                s.script("cleanup.sh", "echo ran > @/seen/cleanup.json"),
            ),
        ],
    )
    .await;
    assert_eq!(st.state, TaskState::TaskFailed as i32, "{st:?}");
    assert_eq!(
        st.reason,
        Some(task_status::Reason::ContainerLaunchFailed as i32)
    );
    let message = st.message.unwrap();
    assert!(
        message.contains(
            "Unable to deserialize ContainerLaunchInfo: Malformed Protobuf. JSON object is expected."
        ),
        "{message}"
    );
    // prepare recorded the container before its command ran: cleanup runs.
    s.wait_seen("cleanup").await;
    s.assert_clean().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_isolate_kills_the_executor_and_fails_the_task_with_the_cause() {
    let s = Scratch::new("isolate-fails");
    let st = task_under_isolator(
        &s,
        &[(
            "isolator_isolate_command",
            s.script(
                "isolate.sh",
                "sed -n 's/.*\"pid\":\\([0-9]*\\).*/\\1/p' \"$1\" > @/seen/pid; echo 'no cgroup for you' > \"$3\"; exit 7",
            ),
        )],
    )
    .await;
    assert_eq!(st.state, TaskState::TaskFailed as i32, "{st:?}");
    assert_eq!(
        st.reason,
        Some(task_status::Reason::ContainerLaunchFailed as i32)
    );
    let message = st.message.unwrap();
    assert!(
        message.contains("exited with return code 7. Cause: no cgroup for you"),
        "{message}"
    );
    let pid = std::fs::read_to_string(s.path("seen/pid")).unwrap();
    let pid = pid.trim();
    assert!(!pid.is_empty());
    // The executor that was started is gone (or a zombie being reaped).
    for _ in 0..100 {
        let alive = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .is_ok_and(|s| !s.rsplit_once(") ").is_some_and(|(_, r)| r.starts_with('Z')));
        if !alive {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |s| s
            .rsplit_once(") ")
            .is_some_and(|(_, r)| r.starts_with('Z'))),
        "executor {pid} still runs"
    );
    s.assert_clean().await;
}
