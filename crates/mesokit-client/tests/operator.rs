//! The operator client against a fake master answering the v1 operator API (§5.5) and the v0
//! JSON endpoints (§5.1).

mod common;

use common::{FakeServer, Request, within};
use mesokit_client::operator::{OperatorClient, OperatorConfig};
use mesokit_client::{ApiError, ContentType, Credentials, Error};
use mesokit_proto::v1::master::{Call, Response, call, response};
use mesokit_proto::v1::{
    AgentId, AgentInfo, FrameworkId, FrameworkInfo, Task, TaskId, TaskState, VersionInfo,
};

fn client(master: &FakeServer, ct: ContentType) -> OperatorClient {
    let mut c = OperatorConfig::new(master.url());
    c.content_type = ct;
    OperatorClient::new(c).unwrap()
}

/// Checks a v1 operator request and returns its call.
fn assert_v1(req: &Request, ct: ContentType, ty: call::Type) -> Call {
    assert_eq!(req.method, "POST");
    assert_eq!(req.path, "/api/v1");
    assert_eq!(req.header("content-type"), Some(ct.media_type()));
    assert_eq!(req.header("accept"), Some(ct.media_type()));
    let call: Call = req.decode();
    assert_eq!(call.r#type, Some(ty as i32));
    call
}

fn reply(req: Request, ct: ContentType, resp: &Response) {
    req.respond(200, &[("Content-Type", ct.media_type())], &ct.encode(resp));
}

fn task(id: &str) -> Task {
    Task {
        name: id.into(),
        task_id: TaskId { value: id.into() },
        framework_id: FrameworkId {
            value: "F-0000".into(),
        },
        agent_id: AgentId { value: "S0".into() },
        state: TaskState::TaskRunning as i32,
        ..Default::default()
    }
}

#[tokio::test]
async fn get_health_speaks_the_reference_json() {
    let mut master = FakeServer::start().await;
    let ops = client(&master, ContentType::Json);
    let fake = async {
        let req = master.next().await;
        assert_eq!(req.body, br#"{"type":"GET_HEALTH"}"#);
        req.respond(
            200,
            &[("Content-Type", "application/json")],
            br#"{"type":"GET_HEALTH","get_health":{"healthy":true}}"#,
        );
    };
    let (healthy, ()) = tokio::join!(within("GET_HEALTH", ops.get_health()), fake);
    assert!(healthy.unwrap());
}

#[tokio::test]
async fn read_calls_in_both_encodings() {
    for ct in [ContentType::Json, ContentType::Protobuf] {
        let mut master = FakeServer::start().await;
        let ops = client(&master, ct);

        let fake = async {
            let req = master.next().await;
            assert_v1(&req, ct, call::Type::GetTasks);
            let resp = Response {
                r#type: Some(response::Type::GetTasks as i32),
                get_tasks: Some(response::GetTasks {
                    tasks: vec![task("t1"), task("t2")],
                    completed_tasks: vec![task("t0")],
                    ..Default::default()
                }),
                ..Default::default()
            };
            reply(req, ct, &resp);
        };
        let (tasks, ()) = tokio::join!(ops.get_tasks(), fake);
        let tasks = tasks.unwrap();
        assert_eq!(tasks.tasks, vec![task("t1"), task("t2")]);
        assert_eq!(tasks.completed_tasks.len(), 1);

        let version = VersionInfo {
            version: "1.12.0".into(),
            build_user: Some("mesokit".into()),
            ..Default::default()
        };
        let fake = async {
            let req = master.next().await;
            assert_v1(&req, ct, call::Type::GetVersion);
            let resp = Response {
                r#type: Some(response::Type::GetVersion as i32),
                get_version: Some(response::GetVersion {
                    version_info: version.clone(),
                }),
                ..Default::default()
            };
            reply(req, ct, &resp);
        };
        let (got, ()) = tokio::join!(ops.get_version(), fake);
        assert_eq!(got.unwrap(), version);

        let framework = response::get_frameworks::Framework {
            framework_info: FrameworkInfo {
                user: "alice".into(),
                name: "demo".into(),
                id: Some(FrameworkId {
                    value: "F-0000".into(),
                }),
                // Mesos JSON always writes these two defaults (reference §2.2).
                failover_timeout: Some(0.0),
                checkpoint: Some(false),
                ..Default::default()
            },
            active: true,
            connected: true,
            recovered: false,
            ..Default::default()
        };
        let agent = response::get_agents::Agent {
            agent_info: AgentInfo {
                hostname: "localhost".into(),
                port: Some(5051),
                id: Some(AgentId { value: "S0".into() }),
                ..Default::default()
            },
            active: true,
            version: "1.12.0".into(),
            ..Default::default()
        };
        let fake = async {
            let req = master.next().await;
            assert_v1(&req, ct, call::Type::GetFrameworks);
            reply(
                req,
                ct,
                &Response {
                    r#type: Some(response::Type::GetFrameworks as i32),
                    get_frameworks: Some(response::GetFrameworks {
                        frameworks: vec![framework.clone()],
                        ..Default::default()
                    }),
                    ..Default::default()
                },
            );
            let req = master.next().await;
            assert_v1(&req, ct, call::Type::GetAgents);
            reply(
                req,
                ct,
                &Response {
                    r#type: Some(response::Type::GetAgents as i32),
                    get_agents: Some(response::GetAgents {
                        agents: vec![agent.clone()],
                        ..Default::default()
                    }),
                    ..Default::default()
                },
            );
            let req = master.next().await;
            assert_v1(&req, ct, call::Type::GetState);
            reply(
                req,
                ct,
                &Response {
                    r#type: Some(response::Type::GetState as i32),
                    get_state: Some(Box::new(response::GetState {
                        get_tasks: Some(response::GetTasks {
                            tasks: vec![task("t1")],
                            ..Default::default()
                        }),
                        get_agents: Some(response::GetAgents {
                            agents: vec![agent.clone()],
                            ..Default::default()
                        }),
                        ..Default::default()
                    })),
                    ..Default::default()
                },
            );
        };
        let calls = async {
            let frameworks = ops.get_frameworks().await.unwrap();
            let agents = ops.get_agents().await.unwrap();
            let state = ops.get_state().await.unwrap();
            (frameworks, agents, state)
        };
        let ((frameworks, agents, state), ()) = tokio::join!(calls, fake);
        assert_eq!(frameworks.frameworks, vec![framework.clone()]);
        assert_eq!(agents.agents, vec![agent.clone()]);
        assert_eq!(state.get_tasks.unwrap().tasks, vec![task("t1")]);
        assert_eq!(
            state.get_agents.unwrap().agents[0].agent_info.hostname,
            "localhost"
        );
    }
}

#[tokio::test]
async fn a_response_without_its_result_is_a_protocol_error() {
    let mut master = FakeServer::start().await;
    let ops = client(&master, ContentType::Json);
    let fake = async {
        master.next().await.respond(
            200,
            &[("Content-Type", "application/json")],
            br#"{"type":"GET_STATE"}"#,
        );
    };
    let (r, ()) = tokio::join!(ops.get_state(), fake);
    let err = r.unwrap_err();
    assert!(
        matches!(&err, Error::Protocol { reason, .. } if reason.contains("GET_STATE")),
        "{err}"
    );
}

#[tokio::test]
async fn follows_the_redirect_of_a_standby_master() {
    let mut standby = FakeServer::start().await;
    let mut leader = FakeServer::start().await;
    let ops = client(&standby, ContentType::Json);
    let fake = async {
        let req = standby.next().await;
        let location = format!("//{}/master/api/v1", leader.authority());
        req.respond(307, &[("Location", &location)], b"");
        let req = leader.next().await;
        assert_eq!(req.path, "/master/api/v1");
        req.respond(
            200,
            &[("Content-Type", "application/json")],
            br#"{"type":"GET_HEALTH","get_health":{"healthy":false}}"#,
        );
    };
    let (healthy, ()) = tokio::join!(ops.get_health(), fake);
    assert!(!healthy.unwrap());
}

#[tokio::test]
async fn v0_state_is_returned_verbatim_and_version_is_decoded() {
    let mut master = FakeServer::start().await;
    let mut cfg = OperatorConfig::new(master.url());
    cfg.credentials = Some(Credentials::new("ops", "pw"));
    let ops = OperatorClient::new(cfg).unwrap();
    // v0 JSON may hold a bare Infinity, which is why it is handed over as text.
    let state = r#"{"version":"1.12.0","frameworks":[{"id":"F-0000","tasks":[{"id":"t1","limits":{"mem":Infinity}}]}],"slaves":[]}"#;
    let fake = async {
        let req = master.next().await;
        assert_eq!(req.method, "GET");
        assert_eq!(req.path, "/master/state");
        assert_eq!(req.header("accept"), Some("application/json"));
        assert_eq!(req.header("authorization"), Some("Basic b3BzOnB3"));
        req.respond(
            200,
            &[("Content-Type", "application/json")],
            state.as_bytes(),
        );
        let req = master.next().await;
        assert_eq!(req.path, "/version");
        req.respond(
            200,
            &[("Content-Type", "application/json")],
            br#"{"build_date":"2024-08-23 10:00:00","build_time":1724407200.0,"build_user":"root","git_sha":"c1b42f79","version":"1.12.0"}"#,
        );
    };
    let calls = async { (ops.state_json().await, ops.version().await) };
    let ((got, version), ()) = tokio::join!(calls, fake);
    assert_eq!(got.unwrap(), state);
    let version = version.unwrap();
    assert_eq!(version.version, "1.12.0");
    assert_eq!(version.git_sha.as_deref(), Some("c1b42f79"));
    assert_eq!(version.build_time, Some(1724407200.0));
}

#[tokio::test]
async fn errors_carry_the_status_and_text() {
    let mut master = FakeServer::start().await;
    let ops = client(&master, ContentType::Json);
    let fake = async {
        master.next().await.respond(
            401,
            &[
                ("WWW-Authenticate", "Basic realm=\"mesos\""),
                ("Content-Type", "text/plain"),
            ],
            b"",
        );
        master
            .next()
            .await
            .respond_text(503, "Master is not recovered yet");
        master.next().await.respond_text(404, "");
    };
    let calls = async {
        (
            ops.get_tasks().await,
            ops.state_json().await,
            ops.get_json("/nope").await,
        )
    };
    let ((a, b, c), ()) = tokio::join!(calls, fake);
    let a = a.unwrap_err();
    assert!(
        matches!(a.api(), Some(ApiError::Unauthorized { challenge: Some(c), .. }) if c.contains("mesos")),
        "{a:?}"
    );
    let b = b.unwrap_err();
    assert!(
        matches!(b.api(), Some(ApiError::Unavailable(m)) if m == "Master is not recovered yet")
    );
    assert!(matches!(c.unwrap_err().api(), Some(ApiError::NotFound(_))));
    assert!(matches!(
        ops.get_json("master/state").await,
        Err(Error::InvalidCall(_))
    ));
}

#[tokio::test]
async fn an_unreachable_master_is_a_connect_error() {
    let url = {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let ops = OperatorClient::new(OperatorConfig::new(url.clone())).unwrap();
    let err = ops.get_health().await.unwrap_err();
    assert!(
        matches!(&err, Error::Connect { url: u, .. } if u.starts_with(&url)),
        "{err:?}"
    );
}

#[cfg(feature = "tls")]
#[tokio::test]
async fn https_with_an_extra_ca() {
    let mut master = FakeServer::start_tls().await;
    let url = format!("https://{}", master.authority());
    let mut cfg = OperatorConfig::new(url.clone());
    cfg.tls.extra_ca_pem = Some(include_bytes!("data/ca.pem").to_vec());
    let ops = OperatorClient::new(cfg).unwrap();
    let fake = async {
        let req = master.next().await;
        assert_v1(&req, ContentType::Json, call::Type::GetHealth);
        req.respond(
            200,
            &[("Content-Type", "application/json")],
            br#"{"type":"GET_HEALTH","get_health":{"healthy":true}}"#,
        );
    };
    let (healthy, ()) = tokio::join!(ops.get_health(), fake);
    assert!(healthy.unwrap());

    // Without our CA the certificate is not trusted.
    let untrusting = OperatorClient::new(OperatorConfig::new(url)).unwrap();
    let err = untrusting.get_health().await.unwrap_err();
    assert!(
        matches!(&err, Error::Tls { reason, .. } if reason.contains("UnknownIssuer")),
        "{err:?}"
    );
}
