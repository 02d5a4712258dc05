//! The operator side: the read calls a CLI needs from a master's v1 operator API
//! (`POST /api/v1` with a `master::Call`) and from its v0 JSON endpoints (`/master/state`,
//! `/version`, …).
//!
//! v0 endpoints speak a JSON that is not the protobuf mapping (and may contain bare
//! `Infinity`), so they are returned as text for the caller to parse as it likes; only
//! `/version`, whose fields are exactly those of `mesos.v1.VersionInfo`, is decoded.
//!
//! ```no_run
//! # async fn demo() -> Result<(), mesokit_client::Error> {
//! use mesokit_client::operator::{OperatorClient, OperatorConfig};
//!
//! let master = OperatorClient::new(OperatorConfig::new("http://127.0.0.1:5050"))?;
//! let tasks = master.get_tasks().await?;
//! println!("{} running, {} completed", tasks.tasks.len(), tasks.completed_tasks.len());
//! # Ok(())
//! # }
//! ```

use std::time::Duration;

use bytes::Bytes;
use http::header::LOCATION;
use http::{Method, StatusCode};
use mesokit_proto::v1::{VersionInfo, agent, master};

use crate::codec::{ContentType, WireMessage};
use crate::error::Error;
use crate::transport::{Credentials, Endpoint, FullResponse, TlsConfig, Transport, header_string};

/// The operator API path on masters and agents.
pub const OPERATOR_PATH: &str = "/api/v1";

/// How to reach a master (or an agent, for [`OperatorClient::agent_call`]).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct OperatorConfig {
    /// Base URL, e.g. `http://127.0.0.1:5050` (a non-leading master redirects to the leader).
    pub url: String,
    /// Encoding of v1 calls and responses.
    pub content_type: ContentType,
    /// HTTP basic-auth credentials, when the server authenticates operators.
    pub credentials: Option<Credentials>,
    /// TLS settings for `https://`.
    pub tls: TlsConfig,
    /// Timeout of each request, connection included (30 s).
    pub request_timeout: Duration,
    /// Redirects followed per request (5).
    pub max_redirects: usize,
}

impl OperatorConfig {
    /// A configuration for `url` with the defaults described on each field.
    pub fn new(url: impl Into<String>) -> Self {
        OperatorConfig {
            url: url.into(),
            content_type: ContentType::Json,
            credentials: None,
            tls: TlsConfig::default(),
            request_timeout: Duration::from_secs(30),
            max_redirects: 5,
        }
    }
}

/// A client of the operator endpoints of one master or agent.
#[derive(Debug)]
pub struct OperatorClient {
    base: Endpoint,
    transport: Transport,
    content_type: ContentType,
    max_redirects: usize,
}

impl OperatorClient {
    /// Validates the configuration. No connection is made until the first request.
    pub fn new(config: OperatorConfig) -> Result<Self, Error> {
        let base = Endpoint::parse_base(&config.url)?;
        let auth = config
            .credentials
            .as_ref()
            .map(Credentials::header)
            .transpose()?;
        let transport = Transport::new(
            std::slice::from_ref(&base),
            &config.tls,
            auth,
            config.request_timeout,
        )?;
        Ok(OperatorClient {
            base,
            transport,
            content_type: config.content_type,
            max_redirects: config.max_redirects,
        })
    }

    /// Sends a request, following 307s to the leader, and returns the final response.
    async fn request(
        &self,
        method: Method,
        path: &str,
        content_type: Option<ContentType>,
        accept: &str,
        body: Bytes,
    ) -> Result<(Endpoint, FullResponse), Error> {
        let mut ep = self.base.join(path);
        let mut chain = vec![ep.url()];
        loop {
            let t = &self.transport;
            let resp = t
                .request(&ep, &|| {
                    t.build(
                        method.clone(),
                        &ep,
                        content_type,
                        Some(accept),
                        &[],
                        body.clone(),
                    )
                })
                .await?;
            if resp.status != StatusCode::TEMPORARY_REDIRECT {
                return Ok((ep, resp));
            }
            let location =
                header_string(&resp.headers, LOCATION).ok_or_else(|| Error::Protocol {
                    url: ep.url(),
                    reason: "307 without a Location header".into(),
                })?;
            let next = ep.resolve(&location)?;
            chain.push(next.url());
            if chain[..chain.len() - 1].contains(&next.url()) {
                return Err(Error::RedirectLoop { chain });
            }
            if chain.len() - 1 > self.max_redirects {
                return Err(Error::TooManyRedirects {
                    limit: self.max_redirects,
                    chain,
                });
            }
            tracing::debug!(from = %ep, to = %next, "following redirect to the leading master");
            ep = next;
        }
    }

    async fn v1<C: WireMessage, R: WireMessage>(&self, call: &C) -> Result<R, Error> {
        let ct = self.content_type;
        let (ep, resp) = self
            .request(
                Method::POST,
                OPERATOR_PATH,
                Some(ct),
                ct.media_type(),
                Bytes::from(ct.encode(call)),
            )
            .await?;
        match resp.status {
            StatusCode::OK | StatusCode::ACCEPTED if resp.body.is_empty() => Ok(R::default()),
            StatusCode::OK => {
                let codec = header_string(&resp.headers, http::header::CONTENT_TYPE)
                    .and_then(|v| ContentType::from_media_type(&v))
                    .unwrap_or(ct);
                codec.decode(&resp.body).map_err(|source| Error::Decode {
                    url: ep.url(),
                    what: "operator response",
                    source,
                })
            }
            StatusCode::ACCEPTED => Ok(R::default()),
            _ => Err(Error::Api {
                url: ep.url(),
                error: resp.api_error(false),
            }),
        }
    }

    /// Sends any master operator call. Synchronous calls return their response; calls
    /// answered with an empty `200`/`202` return an empty `Response`.
    pub async fn call(&self, call: &master::Call) -> Result<master::Response, Error> {
        self.v1(call).await
    }

    /// Sends an agent operator call (when this client points at an agent).
    pub async fn agent_call(&self, call: &agent::Call) -> Result<agent::Response, Error> {
        self.v1(call).await
    }

    async fn get<T>(
        &self,
        ty: master::call::Type,
        take: impl FnOnce(master::Response) -> Option<T>,
    ) -> Result<T, Error> {
        let call = master::Call {
            r#type: Some(ty as i32),
            ..Default::default()
        };
        let resp = self.call(&call).await?;
        take(resp).ok_or_else(|| Error::Protocol {
            url: self.base.join(OPERATOR_PATH).url(),
            reason: format!("the {} response lacks its result field", ty.as_str_name()),
        })
    }

    /// GET_HEALTH: whether the master is healthy.
    pub async fn get_health(&self) -> Result<bool, Error> {
        self.get(master::call::Type::GetHealth, |r| {
            r.get_health.map(|h| h.healthy)
        })
        .await
    }

    /// GET_VERSION.
    pub async fn get_version(&self) -> Result<VersionInfo, Error> {
        self.get(master::call::Type::GetVersion, |r| {
            r.get_version.map(|v| v.version_info)
        })
        .await
    }

    /// GET_STATE: tasks, executors, frameworks and agents at once.
    pub async fn get_state(&self) -> Result<master::response::GetState, Error> {
        self.get(master::call::Type::GetState, |r| r.get_state.map(|s| *s))
            .await
    }

    /// GET_FRAMEWORKS.
    pub async fn get_frameworks(&self) -> Result<master::response::GetFrameworks, Error> {
        self.get(master::call::Type::GetFrameworks, |r| r.get_frameworks)
            .await
    }

    /// GET_TASKS.
    pub async fn get_tasks(&self) -> Result<master::response::GetTasks, Error> {
        self.get(master::call::Type::GetTasks, |r| r.get_tasks)
            .await
    }

    /// GET_AGENTS.
    pub async fn get_agents(&self) -> Result<master::response::GetAgents, Error> {
        self.get(master::call::Type::GetAgents, |r| r.get_agents)
            .await
    }

    /// GETs a v0 JSON endpoint such as `/master/state`, `/master/tasks?limit=10` or
    /// `/metrics/snapshot` and returns the body as text.
    pub async fn get_json(&self, path_and_query: &str) -> Result<String, Error> {
        if !path_and_query.starts_with('/') {
            return Err(Error::InvalidCall(format!(
                "'{path_and_query}' is not an absolute path; v0 endpoints look like /master/state"
            )));
        }
        let (ep, resp) = self
            .request(
                Method::GET,
                path_and_query,
                None,
                "application/json",
                Bytes::new(),
            )
            .await?;
        if resp.status != StatusCode::OK {
            return Err(Error::Api {
                url: ep.url(),
                error: resp.api_error(false),
            });
        }
        String::from_utf8(resp.body.to_vec()).map_err(|_| Error::Protocol {
            url: ep.url(),
            reason: "the JSON body is not UTF-8".into(),
        })
    }

    /// The master's `/master/state` document, as text.
    pub async fn state_json(&self) -> Result<String, Error> {
        self.get_json("/master/state").await
    }

    /// `/version`, decoded (its fields are those of `mesos.v1.VersionInfo`).
    pub async fn version(&self) -> Result<VersionInfo, Error> {
        let text = self.get_json("/version").await?;
        mesokit_proto::json::decode(text.as_bytes()).map_err(|e| Error::Decode {
            url: self.base.join("/version").url(),
            what: "version",
            source: e.into(),
        })
    }
}
