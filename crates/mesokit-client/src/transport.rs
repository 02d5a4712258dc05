//! The HTTP plumbing shared by the three clients: URLs and redirects, connections (plain or
//! TLS) driven by `hyper::client::conn::http1`, a small keep-alive pool for calls, and the
//! RecordIO event reader for subscription streams.

use std::fmt;
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use http::header::{
    ACCEPT, AUTHORIZATION, CONTENT_TYPE, HOST, LOCATION, USER_AGENT, WWW_AUTHENTICATE,
};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use mesokit_proto::recordio;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

use crate::codec::{ContentType, WireMessage};
use crate::error::{ApiError, Error};

/// `http` or `https`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Scheme {
    Http,
    Https,
}

impl Scheme {
    fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
}

/// A parsed URL: where to connect and which path to ask for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Endpoint {
    pub(crate) scheme: Scheme,
    /// As written in the URL; IPv6 literals keep their brackets.
    host: String,
    port: u16,
    /// Path and query; empty for a bare base URL.
    path: String,
}

impl Endpoint {
    /// Parses a base URL such as `http://127.0.0.1:5050`, `https://m1:5050/prefix` or
    /// `127.0.0.1:5050` (scheme `http` assumed). A trailing `/` is dropped.
    pub(crate) fn parse_base(url: &str) -> Result<Endpoint, Error> {
        let mut ep = Endpoint::parse(url)?;
        if ep.path.contains('?') {
            return Err(invalid(url, "a base URL cannot have a query"));
        }
        while ep.path.ends_with('/') {
            ep.path.pop();
        }
        Ok(ep)
    }

    fn parse(url: &str) -> Result<Endpoint, Error> {
        let full = if url.contains("://") {
            url.to_owned()
        } else {
            format!("http://{url}")
        };
        let uri: Uri = full
            .parse()
            .map_err(|e: http::uri::InvalidUri| invalid(url, &e.to_string()))?;
        let scheme = match uri.scheme_str() {
            Some(s) if s.eq_ignore_ascii_case("http") => Scheme::Http,
            Some(s) if s.eq_ignore_ascii_case("https") => Scheme::Https,
            Some(s) => {
                return Err(invalid(
                    url,
                    &format!("unsupported scheme '{s}', use http or https"),
                ));
            }
            None => return Err(invalid(url, "no scheme")),
        };
        let host = match uri.host() {
            Some(h) if !h.is_empty() => h.to_owned(),
            _ => return Err(invalid(url, "no host")),
        };
        let port = uri.port_u16().unwrap_or(match scheme {
            Scheme::Http => 80,
            Scheme::Https => 443,
        });
        let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("");
        let path = if path == "/" {
            String::new()
        } else {
            path.to_owned()
        };
        Ok(Endpoint {
            scheme,
            host,
            port,
            path,
        })
    }

    /// This base URL with `suffix` appended to its path.
    pub(crate) fn join(&self, suffix: &str) -> Endpoint {
        Endpoint {
            path: format!("{}{suffix}", self.path),
            ..self.clone()
        }
    }

    /// Resolves a `Location` header against this URL. Mesos sends protocol-relative locations
    /// (`//host:port/path`), which keep our scheme; a location without a path keeps ours.
    pub(crate) fn resolve(&self, location: &str) -> Result<Endpoint, Error> {
        let location = location.trim();
        let mut ep = if location.starts_with("//") {
            Endpoint::parse(&format!("{}:{location}", self.scheme.as_str()))?
        } else if location.contains("://") {
            Endpoint::parse(location)?
        } else if location.starts_with('/') {
            Endpoint {
                path: location.to_owned(),
                ..self.clone()
            }
        } else {
            return Err(invalid(location, "unusable Location header"));
        };
        if ep.path.is_empty() {
            ep.path = self.path.clone();
        }
        Ok(ep)
    }

    /// The full URL, for messages and events.
    pub(crate) fn url(&self) -> String {
        format!(
            "{}://{}:{}{}",
            self.scheme.as_str(),
            self.host,
            self.port,
            self.path
        )
    }

    fn authority(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    fn connect_host(&self) -> &str {
        self.host.trim_start_matches('[').trim_end_matches(']')
    }

    fn path_or_root(&self) -> &str {
        if self.path.is_empty() {
            "/"
        } else {
            &self.path
        }
    }

    fn conn_key(&self) -> ConnKey {
        (self.scheme, self.host.clone(), self.port)
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.url())
    }
}

fn invalid(url: &str, reason: &str) -> Error {
    Error::InvalidUrl {
        url: url.to_owned(),
        reason: reason.to_owned(),
    }
}

/// HTTP basic-auth credentials of a framework or operator (Mesos `principal` and `secret`).
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The principal (user name).
    pub principal: String,
    /// The secret (password).
    pub secret: String,
}

impl Credentials {
    /// Credentials from a principal and a secret.
    pub fn new(principal: impl Into<String>, secret: impl Into<String>) -> Self {
        Credentials {
            principal: principal.into(),
            secret: secret.into(),
        }
    }

    pub(crate) fn header(&self) -> Result<HeaderValue, Error> {
        use base64::Engine as _;
        let token = base64::engine::general_purpose::STANDARD
            .encode(format!("{}:{}", self.principal, self.secret));
        sensitive(&format!("Basic {token}"))
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("principal", &self.principal)
            .field("secret", &"<redacted>")
            .finish()
    }
}

pub(crate) fn bearer(token: &str) -> Result<HeaderValue, Error> {
    sensitive(&format!("Bearer {token}"))
}

fn sensitive(value: &str) -> Result<HeaderValue, Error> {
    let mut v = HeaderValue::from_str(value).map_err(|_| {
        Error::Config("credentials contain characters not allowed in an HTTP header".into())
    })?;
    v.set_sensitive(true);
    Ok(v)
}

/// TLS settings for `https://` URLs (used only with the `tls` feature).
///
/// Server certificates are checked against the Mozilla roots (`webpki-roots`) plus any extra
/// CA certificates given here, e.g. the private CA of a Mesos cluster.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct TlsConfig {
    /// Extra trusted CA certificates, PEM encoded (one or more `BEGIN CERTIFICATE` blocks).
    pub extra_ca_pem: Option<Vec<u8>>,
}

impl fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsConfig")
            .field(
                "extra_ca_pem",
                &self
                    .extra_ca_pem
                    .as_ref()
                    .map(|p| format!("{} bytes", p.len())),
            )
            .finish()
    }
}

#[cfg(feature = "tls")]
mod tls {
    use std::sync::Arc;

    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
    use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};
    use tokio_rustls::{TlsConnector, client::TlsStream};

    use super::{Endpoint, TlsConfig};
    use crate::error::Error;

    fn config_error(reason: String) -> Error {
        Error::Tls {
            url: "config".into(),
            reason,
        }
    }

    pub(super) fn client_config(cfg: &TlsConfig) -> Result<Arc<ClientConfig>, Error> {
        let mut roots = RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        if let Some(pem) = &cfg.extra_ca_pem {
            let mut added = 0;
            for cert in CertificateDer::pem_slice_iter(pem) {
                let cert = cert.map_err(|e| config_error(format!("invalid extra CA PEM: {e}")))?;
                roots
                    .add(cert)
                    .map_err(|e| config_error(format!("unusable extra CA certificate: {e}")))?;
                added += 1;
            }
            if added == 0 {
                return Err(config_error("the extra CA PEM holds no certificate".into()));
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| config_error(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Arc::new(config))
    }

    pub(super) async fn handshake(
        config: &Arc<ClientConfig>,
        ep: &Endpoint,
        tcp: tokio::net::TcpStream,
    ) -> Result<TlsStream<tokio::net::TcpStream>, Error> {
        let name = ServerName::try_from(ep.connect_host().to_owned()).map_err(|e| Error::Tls {
            url: ep.url(),
            reason: format!("invalid server name: {e}"),
        })?;
        TlsConnector::from(config.clone())
            .connect(name, tcp)
            .await
            .map_err(|e| Error::Tls {
                url: ep.url(),
                reason: e.to_string(),
            })
    }
}

trait Io: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Io for T {}

/// Aborts a connection's driver task (and so closes its socket) when dropped.
#[derive(Debug)]
pub(crate) struct ConnGuard(JoinHandle<()>);

impl Drop for ConnGuard {
    fn drop(&mut self) {
        self.0.abort();
    }
}

type Sender = SendRequest<Full<Bytes>>;

/// Connections are shared between endpoints with the same scheme, host and port.
type ConnKey = (Scheme, String, u16);

/// Most idle keep-alive connections kept per client.
const MAX_IDLE: usize = 4;

/// A response read to the end.
#[derive(Debug)]
pub(crate) struct FullResponse {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

impl FullResponse {
    /// The error for a non-success status.
    pub(crate) fn api_error(&self, not_found_is_not_leader: bool) -> ApiError {
        ApiError::from_response(
            self.status,
            header_string(&self.headers, LOCATION),
            header_string(&self.headers, WWW_AUTHENTICATE),
            &self.body,
            not_found_is_not_leader,
        )
    }
}

pub(crate) fn header_string(headers: &HeaderMap, name: HeaderName) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// What every request of one client carries.
#[derive(Debug)]
pub(crate) struct Transport {
    authorization: Option<HeaderValue>,
    request_timeout: Duration,
    #[cfg(feature = "tls")]
    tls: Option<std::sync::Arc<tokio_rustls::rustls::ClientConfig>>,
    idle: Mutex<Vec<(ConnKey, Sender)>>,
}

impl Transport {
    /// A transport for the given endpoints: TLS is set up if one of them is `https`.
    pub(crate) fn new(
        endpoints: &[Endpoint],
        tls: &TlsConfig,
        authorization: Option<HeaderValue>,
        request_timeout: Duration,
    ) -> Result<Transport, Error> {
        let wants_tls =
            endpoints.iter().any(|e| e.scheme == Scheme::Https) || tls.extra_ca_pem.is_some();
        #[cfg(feature = "tls")]
        let tls = if wants_tls {
            Some(tls::client_config(tls)?)
        } else {
            None
        };
        #[cfg(not(feature = "tls"))]
        {
            let _ = tls;
            if wants_tls {
                let url = endpoints
                    .iter()
                    .find(|e| e.scheme == Scheme::Https)
                    .map(Endpoint::url)
                    .unwrap_or_else(|| "extra CA certificates".into());
                return Err(Error::TlsDisabled { url });
            }
        }
        Ok(Transport {
            authorization,
            request_timeout,
            #[cfg(feature = "tls")]
            tls,
            idle: Mutex::new(Vec::new()),
        })
    }

    pub(crate) fn request_timeout(&self) -> Duration {
        self.request_timeout
    }

    /// Builds a request. `body: None` means a GET without body.
    pub(crate) fn build(
        &self,
        method: Method,
        ep: &Endpoint,
        content_type: Option<ContentType>,
        accept: Option<&str>,
        extra: &[(&'static str, &str)],
        body: Bytes,
    ) -> Result<Request<Full<Bytes>>, Error> {
        let mut req = Request::new(Full::new(body));
        *req.method_mut() = method;
        *req.uri_mut() = ep
            .path_or_root()
            .parse()
            .map_err(|e: http::uri::InvalidUri| invalid(&ep.url(), &e.to_string()))?;
        let h = req.headers_mut();
        let value = |v: &str| {
            HeaderValue::from_str(v).map_err(|_| Error::Protocol {
                url: ep.url(),
                reason: format!("'{v}' cannot be sent as an HTTP header value"),
            })
        };
        h.insert(HOST, value(&ep.authority())?);
        h.insert(
            USER_AGENT,
            HeaderValue::from_static(concat!("mesokit/", env!("CARGO_PKG_VERSION"))),
        );
        if let Some(ct) = content_type {
            h.insert(CONTENT_TYPE, HeaderValue::from_static(ct.media_type()));
        }
        if let Some(accept) = accept {
            h.insert(ACCEPT, value(accept)?);
        }
        if let Some(auth) = &self.authorization {
            h.insert(AUTHORIZATION, auth.clone());
        }
        for (name, v) in extra {
            h.insert(HeaderName::from_static(name), value(v)?);
        }
        Ok(req)
    }

    async fn connect(&self, ep: &Endpoint) -> Result<(Sender, JoinHandle<()>), Error> {
        let tcp = TcpStream::connect((ep.connect_host(), ep.port))
            .await
            .map_err(|source| Error::Connect {
                url: ep.url(),
                source,
            })?;
        // Calls are small and latency matters more than packet count.
        let _ = tcp.set_nodelay(true);
        let io: Box<dyn Io> = match ep.scheme {
            Scheme::Http => Box::new(tcp),
            #[cfg(feature = "tls")]
            Scheme::Https => match &self.tls {
                Some(config) => Box::new(tls::handshake(config, ep, tcp).await?),
                None => return Err(Error::TlsDisabled { url: ep.url() }),
            },
            #[cfg(not(feature = "tls"))]
            Scheme::Https => return Err(Error::TlsDisabled { url: ep.url() }),
        };
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
            .await
            .map_err(|source| Error::Http {
                url: ep.url(),
                source,
            })?;
        let url = ep.url();
        let task = tokio::spawn(async move {
            if let Err(error) = conn.await {
                tracing::debug!(%url, %error, "connection closed with an error");
            }
        });
        Ok((sender, task))
    }

    fn checkout(&self, ep: &Endpoint) -> Option<Sender> {
        let key = ep.conn_key();
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        idle.retain(|(_, s)| !s.is_closed());
        let pos = idle.iter().position(|(k, s)| *k == key && s.is_ready())?;
        Some(idle.swap_remove(pos).1)
    }

    fn checkin(&self, ep: &Endpoint, sender: Sender) {
        if sender.is_closed() {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < MAX_IDLE {
            idle.push((ep.conn_key(), sender));
        }
    }

    /// Sends a request on a keep-alive connection and reads the whole response, all within the
    /// request timeout. A request that fails on a reused connection (closed by the server while
    /// idle) is retried once on a fresh one.
    pub(crate) async fn request(
        &self,
        ep: &Endpoint,
        make: &(dyn Fn() -> Result<Request<Full<Bytes>>, Error> + Sync),
    ) -> Result<FullResponse, Error> {
        let attempt = async {
            if let Some(sender) = self.checkout(ep) {
                match self.exchange(ep, sender, make()?).await {
                    Ok(resp) => return Ok(resp),
                    Err(Error::Http { source, .. }) => {
                        tracing::debug!(url = %ep, error = %source, "reused connection failed, retrying on a new one");
                    }
                    Err(e) => return Err(e),
                }
            }
            let (sender, _task) = self.connect(ep).await?;
            self.exchange(ep, sender, make()?).await
        };
        tokio::time::timeout(self.request_timeout, attempt)
            .await
            .map_err(|_| Error::Timeout {
                url: ep.url(),
                timeout: self.request_timeout,
            })?
    }

    async fn exchange(
        &self,
        ep: &Endpoint,
        mut sender: Sender,
        req: Request<Full<Bytes>>,
    ) -> Result<FullResponse, Error> {
        let http = |source| Error::Http {
            url: ep.url(),
            source,
        };
        sender.ready().await.map_err(http)?;
        let resp = sender.send_request(req).await.map_err(http)?;
        let (parts, body) = resp.into_parts();
        let body = body.collect().await.map_err(http)?.to_bytes();
        self.checkin(ep, sender);
        Ok(FullResponse {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }

    /// Sends a request on a connection of its own, for a subscription: returns once the
    /// response headers are in (within the request timeout). The connection lives as long as
    /// the returned guard.
    pub(crate) async fn open_stream(
        &self,
        ep: &Endpoint,
        req: Request<Full<Bytes>>,
    ) -> Result<(Response<Incoming>, ConnGuard), Error> {
        let attempt = async {
            let (mut sender, task) = self.connect(ep).await?;
            let guard = ConnGuard(task);
            let http = |source| Error::Http {
                url: ep.url(),
                source,
            };
            sender.ready().await.map_err(http)?;
            let resp = sender.send_request(req).await.map_err(http)?;
            Ok((resp, guard))
        };
        tokio::time::timeout(self.request_timeout, attempt)
            .await
            .map_err(|_| Error::Timeout {
                url: ep.url(),
                timeout: self.request_timeout,
            })?
    }
}

/// Reads an error response's body (bounded by the request timeout) and turns it into an error.
pub(crate) async fn error_response(
    ep: &Endpoint,
    resp: Response<Incoming>,
    timeout: Duration,
    not_found_is_not_leader: bool,
) -> Error {
    let (parts, body) = resp.into_parts();
    let body = match tokio::time::timeout(timeout, body.collect()).await {
        Ok(Ok(b)) => b.to_bytes(),
        _ => Bytes::new(),
    };
    let full = FullResponse {
        status: parts.status,
        headers: parts.headers,
        body,
    };
    Error::Api {
        url: ep.url(),
        error: full.api_error(not_found_is_not_leader),
    }
}

/// Decodes the RecordIO body of a subscription into messages, however the bytes are chunked.
#[derive(Debug)]
pub(crate) struct RecordStream {
    body: Incoming,
    decoder: recordio::Decoder,
    codec: ContentType,
    url: String,
    _conn: ConnGuard,
}

impl RecordStream {
    pub(crate) fn new(body: Incoming, codec: ContentType, url: String, conn: ConnGuard) -> Self {
        RecordStream {
            body,
            decoder: recordio::Decoder::default(),
            codec,
            url,
            _conn: conn,
        }
    }

    /// The next message; `Ok(None)` when the server ended the stream cleanly between records.
    /// Fails with [`Error::HeartbeatTimeout`] when no byte arrives for `idle`.
    ///
    /// Cancel-safe: bytes already read stay buffered in the decoder.
    pub(crate) async fn next<M: WireMessage>(
        &mut self,
        idle: Duration,
    ) -> Result<Option<M>, Error> {
        loop {
            let record = self
                .decoder
                .next_record()
                .map_err(|source| Error::RecordIo {
                    url: self.url.clone(),
                    source,
                })?;
            if let Some(record) = record {
                return self
                    .codec
                    .decode(&record)
                    .map(Some)
                    .map_err(|source| Error::Decode {
                        url: self.url.clone(),
                        what: "event",
                        source,
                    });
            }
            match tokio::time::timeout(idle, self.body.frame()).await {
                Err(_) => {
                    return Err(Error::HeartbeatTimeout {
                        url: self.url.clone(),
                        silence: idle,
                    });
                }
                Ok(None) => {
                    self.decoder.finish().map_err(|source| Error::RecordIo {
                        url: self.url.clone(),
                        source,
                    })?;
                    return Ok(None);
                }
                Ok(Some(Err(source))) => {
                    return Err(Error::Http {
                        url: self.url.clone(),
                        source,
                    });
                }
                Ok(Some(Ok(frame))) => {
                    if let Ok(data) = frame.into_data() {
                        self.decoder.feed(&data);
                    }
                }
            }
        }
    }
}

/// A delay drawn uniformly from `[0, max]`.
pub(crate) fn uniform_delay(max: Duration) -> Duration {
    let max = u64::try_from(max.as_nanos()).unwrap_or(u64::MAX);
    Duration::from_nanos(fastrand::u64(0..=max))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_parse() {
        let ep = Endpoint::parse_base("http://127.0.0.1:5050/").unwrap();
        assert_eq!(ep.url(), "http://127.0.0.1:5050");
        assert_eq!(
            ep.join("/api/v1/scheduler").url(),
            "http://127.0.0.1:5050/api/v1/scheduler"
        );
        let ep = Endpoint::parse_base("m1:5050").unwrap();
        assert_eq!(ep.url(), "http://m1:5050");
        let ep = Endpoint::parse_base("https://mesos.example/prefix").unwrap();
        assert_eq!(ep.url(), "https://mesos.example:443/prefix");
        let ep = Endpoint::parse_base("http://[::1]:5050").unwrap();
        assert_eq!(ep.connect_host(), "::1");
        assert_eq!(ep.authority(), "[::1]:5050");
        assert!(matches!(
            Endpoint::parse_base("ftp://x"),
            Err(Error::InvalidUrl { .. })
        ));
        assert!(matches!(
            Endpoint::parse_base("http://"),
            Err(Error::InvalidUrl { .. })
        ));
        assert!(matches!(
            Endpoint::parse_base("http://a/?q=1"),
            Err(Error::InvalidUrl { .. })
        ));
    }

    #[test]
    fn locations_resolve_like_mesos_means_them() {
        let ep = Endpoint::parse_base("https://m1:5050")
            .unwrap()
            .join("/api/v1/scheduler");
        let to = ep.resolve("//m2:5051/master/api/v1/scheduler").unwrap();
        assert_eq!(to.url(), "https://m2:5051/master/api/v1/scheduler");
        let to = ep.resolve("//m2:5051").unwrap();
        assert_eq!(to.url(), "https://m2:5051/api/v1/scheduler");
        let to = ep.resolve("http://m3:1/x").unwrap();
        assert_eq!(to.url(), "http://m3:1/x");
        let to = ep.resolve("/other").unwrap();
        assert_eq!(to.url(), "https://m1:5050/other");
        assert!(ep.resolve("m2:5050").is_err());
    }

    #[test]
    fn credentials_are_basic_and_redacted() {
        let c = Credentials::new("alice", "s3cret");
        assert_eq!(
            c.header().unwrap().to_str().unwrap(),
            "Basic YWxpY2U6czNjcmV0"
        );
        assert!(!format!("{c:?}").contains("s3cret"));
        assert!(bearer("a\nb").is_err());
    }

    #[test]
    fn uniform_delay_is_bounded() {
        for _ in 0..100 {
            assert!(uniform_delay(Duration::from_millis(5)) <= Duration::from_millis(5));
        }
        assert_eq!(uniform_delay(Duration::ZERO), Duration::ZERO);
    }
}
