//! The built-in hooks against small HTTP servers on 127.0.0.1 speaking the real APIs (Consul's
//! agent API, VaaS's `/api/v0.1/`, a webhook receiver), and the command hook with real scripts.

use std::convert::Infallible;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response};
use mesokit_hooks::builtin::{Chain, Settings};
use mesokit_hooks::events::Event;
use mesokit_proto::helpers::TaskBuilder;
use mesokit_proto::v1::TaskInfo;
use tokio::net::TcpListener;

/// A request the fake server received: method, path with query, one header, body.
#[derive(Debug, Clone, PartialEq)]
struct Seen {
    method: String,
    uri: String,
    token: Option<String>,
    body: String,
}

type Answer = Arc<dyn Fn(&str, &str) -> (u16, String) + Send + Sync>;

/// Serves HTTP/1.1 on an ephemeral port, answering with `answer(method, uri)`.
async fn server(answer: Answer) -> (String, Arc<Mutex<Vec<Seen>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let (log, answer) = (log.clone(), answer.clone());
            tokio::spawn(async move {
                let service =
                    hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                        let (log, answer) = (log.clone(), answer.clone());
                        async move {
                            let method = req.method().to_string();
                            let uri = req.uri().to_string();
                            let token = req
                                .headers()
                                .get("x-consul-token")
                                .map(|v| v.to_str().unwrap().to_owned());
                            let body = req.into_body().collect().await.unwrap().to_bytes();
                            let (status, text) = answer(&method, &uri);
                            log.lock().unwrap().push(Seen {
                                method,
                                uri,
                                token,
                                body: String::from_utf8_lossy(&body).into_owned(),
                            });
                            let mut r = Response::new(Full::new(Bytes::from(text)));
                            *r.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
                            Ok::<_, Infallible>(r)
                        }
                    });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, seen)
}

fn chain(env: &[(&str, &str)]) -> Chain {
    Chain::new(Settings::new(
        env.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
    ))
}

fn web_task() -> TaskInfo {
    TaskBuilder::new("web", "web.1", "S0")
        .shell("sleep 1")
        .ports(&[31001, 31002])
        .label("consul", "web-svc")
        .label("frontend", "tag")
        .label("director", "web-director")
        .label("canary", "yes")
        .label("weight:5", "tag")
        .build()
}

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

#[tokio::test]
async fn consul_registers_when_healthy_and_deregisters_before_terminate() {
    let (addr, seen) = server(Arc::new(|_, _| (200, String::new()))).await;
    let hooks = chain(&[("CONSUL_HTTP_ADDR", &addr), ("CONSUL_TOKEN", "acl")]);
    let task = web_task();
    let consul = names(&["consul"]);
    for event in [Event::BeforeTaskStart, Event::AfterTaskStart] {
        assert_eq!(hooks.run(&consul, event, &task).await.errors, []);
    }
    assert!(seen.lock().unwrap().is_empty(), "nothing before healthy");

    let r = hooks.run(&consul, Event::TaskHealthy, &task).await;
    assert_eq!(r.errors, []);
    let r = hooks.run(&consul, Event::BeforeTerminate, &task).await;
    assert_eq!(r.errors, []);
    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen,
        [
            Seen {
                method: "PUT".into(),
                uri: "/v1/agent/service/register".into(),
                token: Some("acl".into()),
                body: r#"{"ID":"web.1_web-svc_31001","Name":"web-svc","Tags":["frontend","weight:5"],"Port":31001,"EnableTagOverride":false}"#.into(),
            },
            Seen {
                method: "PUT".into(),
                uri: "/v1/agent/service/deregister/web.1_web-svc_31001".into(),
                token: Some("acl".into()),
                body: String::new(),
            },
        ]
    );
}

#[tokio::test]
async fn consul_errors_name_the_hook_the_event_and_the_answer() {
    let (addr, _) = server(Arc::new(|_, _| (500, "agent is sad".into()))).await;
    let hooks = chain(&[("CONSUL_HTTP_ADDR", &addr)]);
    let r = hooks
        .run(
            &names(&["consul", "webhook:http://127.0.0.1:1/never"]),
            Event::TaskHealthy,
            &web_task(),
        )
        .await;
    assert_eq!(r.errors.len(), 1, "the first error stops the chain: {r:?}");
    assert_eq!(
        r.errors[0].to_string(),
        "hook `consul` failed at task_healthy: Consul answered 500 to PUT \
         /v1/agent/service/register: agent is sad"
    );
    let no_port = TaskBuilder::new("x", "x1", "S0")
        .label("consul", "")
        .build();
    let r = hooks
        .run(&names(&["consul"]), Event::TaskHealthy, &no_port)
        .await;
    assert_eq!(
        r.errors[0].reason,
        "task `x1` has no port to register in Consul"
    );
    let r = hooks
        .run(
            &names(&["consul"]),
            Event::TaskHealthy,
            &TaskBuilder::new("x", "x2", "S0").build(),
        )
        .await;
    assert_eq!(r.errors, [], "tasks without a consul label are left alone");
}

#[tokio::test]
async fn vaas_adds_a_backend_when_healthy_and_deletes_it_before_terminate() {
    let answer: Answer = Arc::new(
        |method, uri| match (method, uri.split('?').next().unwrap()) {
            ("GET", "/api/v0.1/director/") => (
                200,
                r#"{"meta":{"total_count":1},"objects":[{"id":3,"name":"web-director"}]}"#.into(),
            ),
            ("GET", "/api/v0.1/dc/") => (200, r#"{"objects":[{"id":4,"symbol":"dc1"}]}"#.into()),
            ("POST", "/api/v0.1/backend/") => (201, r#"{"id":42,"port":31001}"#.into()),
            ("DELETE", "/api/v0.1/backend/42/") => (204, String::new()),
            _ => (404, "no such thing".into()),
        },
    );
    let (addr, seen) = server(answer).await;
    let hooks = chain(&[
        ("VAAS_HOST", &format!("http://{addr}")),
        ("VAAS_USERNAME", "ops"),
        ("MESOKIT_EXECUTOR_VAAS_TOKEN", "k&y"),
        ("CLOUD_DC", "dc1"),
        ("CLOUD_PUBLIC_IP", "10.0.0.7"),
    ]);
    let vaas = names(&["vaas"]);
    let task = web_task();
    assert_eq!(hooks.run(&vaas, Event::TaskHealthy, &task).await.errors, []);
    assert_eq!(
        hooks.run(&vaas, Event::BeforeTerminate, &task).await.errors,
        []
    );
    let seen: Vec<(String, String, String)> = seen
        .lock()
        .unwrap()
        .iter()
        .map(|s| (s.method.clone(), s.uri.clone(), s.body.clone()))
        .collect();
    let auth = "username=ops&api_key=k%26y";
    assert_eq!(
        seen,
        [
            ("GET".into(), format!("/api/v0.1/director/?name=web-director&{auth}"), String::new()),
            ("GET".into(), format!("/api/v0.1/dc/?name=dc1&{auth}"), String::new()),
            (
                "POST".into(),
                format!("/api/v0.1/backend/?{auth}"),
                r#"{"address":"10.0.0.7","port":31001,"director":"/api/v0.1/director/3/","dc":"/api/v0.1/dc/4/","weight":5,"tags":["canary"],"inherit_time_profile":true}"#.into()
            ),
            ("DELETE".into(), format!("/api/v0.1/backend/42/?{auth}"), String::new()),
        ]
    );
}

#[tokio::test]
async fn vaas_without_the_director_is_a_clear_error() {
    let (addr, _) = server(Arc::new(|_, _| (200, r#"{"objects":[]}"#.into()))).await;
    let hooks = chain(&[("VAAS_HOST", &format!("http://{addr}"))]);
    let r = hooks
        .run(&names(&["vaas"]), Event::TaskHealthy, &web_task())
        .await;
    assert_eq!(
        r.errors[0].reason,
        "VaaS has no director named `web-director`"
    );
    let r = chain(&[])
        .run(&names(&["vaas"]), Event::TaskHealthy, &web_task())
        .await;
    assert!(
        r.errors[0]
            .reason
            .contains("needs MESOKIT_EXECUTOR_VAAS_HOST"),
        "{r:?}"
    );
}

#[tokio::test]
async fn the_webhook_posts_every_event_as_json() {
    let (addr, seen) = server(Arc::new(|_, _| (204, String::new()))).await;
    let url = format!("http://{addr}/events");
    let hooks = chain(&[("MESOKIT_EXECUTOR_WEBHOOK_URL", &url)]);
    let task = TaskBuilder::new("t", "t\"1", "S0").shell("true").build();
    for event in Event::ALL {
        assert_eq!(
            hooks.run(&names(&["webhook"]), event, &task).await.errors,
            []
        );
    }
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 4);
    assert!(
        seen.iter()
            .all(|s| s.method == "POST" && s.uri == "/events")
    );
    assert!(
        seen[2]
            .body
            .starts_with(r#"{"event":"task_healthy","task_id":"t\"1","task_info":{"name":"t""#),
        "{}",
        seen[2].body
    );

    let (addr, _) = server(Arc::new(|_, _| (503, "busy".into()))).await;
    let url = format!("http://{addr}/e");
    let r = chain(&[])
        .run(
            &names(&[&format!("webhook:{url}")]),
            Event::AfterTaskStart,
            &task,
        )
        .await;
    assert_eq!(r.errors[0].reason, format!("{url} answered 503: busy"));
    assert_eq!(
        r.fatal(Event::AfterTaskStart),
        None,
        "only logged at after_task_start"
    );
}

fn script(name: &str, body: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mesokit-hooks-builtin-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

#[tokio::test]
async fn command_hooks_add_env_and_fail_clearly_on_garbage_errors_and_hangs() {
    let task = TaskBuilder::new("t", "t1", "S0").shell("true").build();
    let env = script(
        "env.sh",
        r#"grep -q '"event":"before_task_start"' "$1" || exit 9
echo '{"variables":[{"name":"FROM_HOOK","value":"1"}]}' > "$2""#,
    );
    let garbage = script("garbage.sh", r#"echo 'hello, I am not JSON' > "$2""#);
    let failing = script("fail.sh", r#"echo 'no database' > "$3"; exit 3"#);
    let hang = script("hang.sh", "echo $$ > \"$0.pid\"; exec sleep 30");

    let hooks = chain(&[]);
    let ok = format!("command:{}", env.display());
    let r = hooks
        .run(std::slice::from_ref(&ok), Event::BeforeTaskStart, &task)
        .await;
    assert_eq!(r.errors, []);
    assert_eq!(r.env, [("FROM_HOOK".to_owned(), "1".to_owned())]);

    let g = format!("command:{}", garbage.display());
    let r = hooks
        .run(&[g, ok.clone()], Event::BeforeTaskStart, &task)
        .await;
    assert_eq!(r.env, [], "the chain stopped at the garbage");
    assert!(
        r.errors[0]
            .reason
            .starts_with("the output is not a Mesos Environment in JSON"),
        "{r:?}"
    );

    let f = format!("command:{}", failing.display());
    let r = hooks.run(&[f], Event::TaskHealthy, &task).await;
    let reason = &r.errors[0].reason;
    assert!(reason.contains("exited with return code 3"), "{reason}");
    assert!(reason.contains("no database"), "{reason}");

    let mut settings = Settings::new(Vec::new());
    settings.timeout = Duration::from_millis(300);
    let short = Chain::new(settings);
    let h = format!("command:{}", hang.display());
    let r = short.run(&[h], Event::BeforeTerminate, &task).await;
    assert!(r.errors[0].reason.contains("took too long"), "{r:?}");
    let pid = std::fs::read_to_string(format!("{}.pid", hang.display())).unwrap();
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", pid.trim())).unwrap_or_default();
    assert!(
        !cmdline.starts_with(b"sleep"),
        "the hung hook's process is gone"
    );
}

#[tokio::test]
async fn an_unknown_hook_name_is_an_error_in_the_chain() {
    let task = TaskBuilder::new("t", "t1", "S0").build();
    let r = chain(&[])
        .run(&names(&["consol"]), Event::BeforeTaskStart, &task)
        .await;
    assert!(
        r.errors[0]
            .to_string()
            .starts_with("hook `consol` failed at before_task_start: unknown hook `consol`"),
        "{r:?}"
    );
}
