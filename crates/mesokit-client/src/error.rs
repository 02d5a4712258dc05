//! Errors of the clients: one enum for everything that can go wrong on the wire, and
//! [`ApiError`] for the HTTP error statuses Mesos answers with (and the text it sends along).

use std::time::Duration;

use http::StatusCode;
use mesokit_proto::recordio::RecordIoError;

use crate::codec::DecodeError;

/// Everything that can go wrong while talking to a Mesos master or agent.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A URL in the configuration (or a `Location` header) could not be used.
    #[error("invalid URL '{url}': {reason}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The configuration is unusable.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// An `https://` URL while the crate was built without its `tls` feature.
    #[error("cannot reach {url}: https needs the `tls` feature of mesokit-client")]
    TlsDisabled {
        /// The URL.
        url: String,
    },
    /// The TLS configuration (extra CA certificates) could not be loaded, or a TLS handshake failed.
    #[error("TLS error for {url}: {reason}")]
    Tls {
        /// The URL (or `config` for configuration problems).
        url: String,
        /// What failed.
        reason: String,
    },
    /// TCP connection failed.
    #[error("cannot connect to {url}: {source}")]
    Connect {
        /// The URL.
        url: String,
        /// The socket error.
        #[source]
        source: std::io::Error,
    },
    /// An HTTP-level failure on an established connection (reset, malformed response, …).
    #[error("HTTP exchange with {url} failed: {source}")]
    Http {
        /// The URL.
        url: String,
        /// What hyper reported.
        #[source]
        source: hyper::Error,
    },
    /// A request (connect, send, response) took longer than the configured timeout.
    #[error("request to {url} timed out after {timeout:?}")]
    Timeout {
        /// The URL.
        url: String,
        /// The timeout that elapsed.
        timeout: Duration,
    },
    /// Mesos answered with an error status.
    #[error("{url}: {error}")]
    Api {
        /// The URL the request went to.
        url: String,
        /// The status and Mesos's explanation.
        #[source]
        error: ApiError,
    },
    /// The response violates the protocol (missing `Mesos-Stream-Id`, unknown content type,
    /// unexpected first event, …).
    #[error("protocol error from {url}: {reason}")]
    Protocol {
        /// The URL.
        url: String,
        /// What was wrong.
        reason: String,
    },
    /// A body or an event could not be decoded.
    #[error("cannot decode {what} from {url}: {source}")]
    Decode {
        /// The URL.
        url: String,
        /// What was being decoded (`event`, `response`, …).
        what: &'static str,
        /// Why decoding failed.
        #[source]
        source: DecodeError,
    },
    /// The RecordIO framing of an event stream is broken (including a stream cut inside a record).
    #[error("broken event stream from {url}: {source}")]
    RecordIo {
        /// The URL.
        url: String,
        /// The framing error.
        #[source]
        source: RecordIoError,
    },
    /// The event stream ended (the server closed the connection between records).
    #[error("event stream from {url} was closed by the server")]
    StreamEnded {
        /// The URL.
        url: String,
    },
    /// No event and no heartbeat arrived for the configured number of heartbeat intervals.
    #[error("no event or heartbeat from {url} for {silence:?}; the connection is presumed dead")]
    HeartbeatTimeout {
        /// The URL.
        url: String,
        /// How long the stream was silent.
        silence: Duration,
    },
    /// Following redirects came back to a URL already visited.
    #[error("redirect loop: {}; the masters disagree about the leader", chain.join(" -> "))]
    RedirectLoop {
        /// Every URL visited, in order, ending with the repeated one.
        chain: Vec<String>,
    },
    /// More redirects than allowed.
    #[error("more than {limit} redirects: {}", chain.join(" -> "))]
    TooManyRedirects {
        /// The configured limit.
        limit: usize,
        /// Every URL visited, in order.
        chain: Vec<String>,
    },
    /// The master (or agent) sent an ERROR event, e.g. "Framework has been removed" or
    /// "Framework failed over". The session is over; reconnecting would not help.
    #[error("the master ended the subscription with an error: {message}")]
    Rejected {
        /// The message of the ERROR event.
        message: String,
    },
    /// A call was made while no subscription is established.
    #[error("not subscribed: wait for the Connected event before sending calls")]
    NotSubscribed,
    /// A call cannot be sent as given.
    #[error("invalid call: {0}")]
    InvalidCall(String),
    /// Subscribing failed too many times in a row (see `max_reconnect_attempts`).
    #[error("gave up after {attempts} failed subscription attempts; last error: {last}")]
    GaveUp {
        /// Consecutive failed attempts.
        attempts: u32,
        /// The last failure.
        #[source]
        last: Box<Error>,
    },
    /// A checkpointing executor could not re-subscribe within `MESOS_RECOVERY_TIMEOUT`.
    #[error(
        "could not re-subscribe to the agent within the recovery timeout of {timeout:?}; \
         last error: {last}"
    )]
    RecoveryTimeout {
        /// The recovery timeout.
        timeout: Duration,
        /// The last failure.
        #[source]
        last: Box<Error>,
    },
    /// A non-checkpointing executor lost its agent: it should shut down.
    #[error(
        "lost the connection to the agent and checkpointing is off, so the executor should shut down: {reason}"
    )]
    AgentLost {
        /// Why the connection was lost.
        #[source]
        reason: Box<Error>,
    },
    /// The session was closed: teardown, SHUTDOWN, or the client was dropped.
    #[error("the session is closed")]
    Closed,
}

impl Error {
    /// The HTTP error status Mesos answered with, if that is what this error is.
    pub fn api(&self) -> Option<&ApiError> {
        match self {
            Error::Api { error, .. } => Some(error),
            _ => None,
        }
    }

    /// Whether retrying the subscription elsewhere or later may help.
    pub(crate) fn is_retryable(&self) -> bool {
        match self {
            Error::Api { error, .. } => error.is_retryable(),
            Error::InvalidUrl { .. }
            | Error::Config(_)
            | Error::TlsDisabled { .. }
            | Error::Rejected { .. }
            | Error::InvalidCall(_)
            | Error::GaveUp { .. }
            | Error::RecoveryTimeout { .. }
            | Error::AgentLost { .. }
            | Error::Closed => false,
            _ => true,
        }
    }
}

/// An HTTP error status from Mesos, with the plain-text explanation it sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// 400: the call is malformed or invalid (missing field, unknown framework, bad stream id…).
    #[error("400 Bad Request: {0}")]
    BadRequest(String),
    /// 401: authentication is enabled and the credentials are missing or wrong.
    #[error("401 Unauthorized: {message} (check the principal and secret or token)")]
    Unauthorized {
        /// Mesos's text.
        message: String,
        /// The `WWW-Authenticate` challenge, if any.
        challenge: Option<String>,
    },
    /// 403: the framework is not subscribed, or the principal is not authorized.
    #[error("403 Forbidden: {0}")]
    Forbidden(String),
    /// 307 or 404 on the scheduler API: this master is not (or no longer) the leader.
    #[error("{status} from a master that is not the leader{}: {message}",
        location.as_deref().map(|l| format!(" (leader: {l})")).unwrap_or_default())]
    NotLeader {
        /// 307 or 404.
        status: u16,
        /// The `Location` header of a 307.
        location: Option<String>,
        /// Mesos's text.
        message: String,
    },
    /// 404 elsewhere: no such endpoint.
    #[error("404 Not Found: {0}")]
    NotFound(String),
    /// 406: the server can produce neither JSON nor protobuf for our `Accept`.
    #[error("406 Not Acceptable: {0}")]
    NotAcceptable(String),
    /// 409: e.g. UPDATE_FRAMEWORK raced with the framework's removal.
    #[error("409 Conflict: {0}")]
    Conflict(String),
    /// 415: the `Content-Type` was refused.
    #[error("415 Unsupported Media Type: {0}")]
    UnsupportedMediaType(String),
    /// 503: no leader elected, or the master/agent is still recovering.
    #[error("503 Service Unavailable: {0}")]
    Unavailable(String),
    /// Any other unexpected status.
    #[error("{status}: {message}")]
    Other {
        /// The status code.
        status: u16,
        /// The body (or the status's reason phrase when the body is empty).
        message: String,
    },
}

impl ApiError {
    /// Builds the error for an unexpected status. `not_found_is_not_leader` is set for the
    /// scheduler API, where Mesos's own library treats 404 like a redirect.
    pub(crate) fn from_response(
        status: StatusCode,
        location: Option<String>,
        challenge: Option<String>,
        body: &[u8],
        not_found_is_not_leader: bool,
    ) -> ApiError {
        let text = String::from_utf8_lossy(body).trim().to_owned();
        let message = if text.is_empty() {
            status
                .canonical_reason()
                .unwrap_or("no explanation given")
                .to_owned()
        } else {
            text
        };
        match status.as_u16() {
            400 => ApiError::BadRequest(message),
            401 => ApiError::Unauthorized { message, challenge },
            403 => ApiError::Forbidden(message),
            307 => ApiError::NotLeader {
                status: 307,
                location,
                message,
            },
            404 if not_found_is_not_leader => ApiError::NotLeader {
                status: 404,
                location: None,
                message,
            },
            404 => ApiError::NotFound(message),
            406 => ApiError::NotAcceptable(message),
            409 => ApiError::Conflict(message),
            415 => ApiError::UnsupportedMediaType(message),
            503 => ApiError::Unavailable(message),
            status => ApiError::Other { status, message },
        }
    }

    /// The HTTP status code.
    pub fn status(&self) -> u16 {
        match self {
            ApiError::BadRequest(_) => 400,
            ApiError::Unauthorized { .. } => 401,
            ApiError::Forbidden(_) => 403,
            ApiError::NotLeader { status, .. } => *status,
            ApiError::NotFound(_) => 404,
            ApiError::NotAcceptable(_) => 406,
            ApiError::Conflict(_) => 409,
            ApiError::UnsupportedMediaType(_) => 415,
            ApiError::Unavailable(_) => 503,
            ApiError::Other { status, .. } => *status,
        }
    }

    /// Mesos's explanation (the response body).
    pub fn message(&self) -> &str {
        match self {
            ApiError::BadRequest(m)
            | ApiError::Forbidden(m)
            | ApiError::NotFound(m)
            | ApiError::NotAcceptable(m)
            | ApiError::Conflict(m)
            | ApiError::UnsupportedMediaType(m)
            | ApiError::Unavailable(m) => m,
            ApiError::Unauthorized { message, .. }
            | ApiError::NotLeader { message, .. }
            | ApiError::Other { message, .. } => message,
        }
    }

    /// Whether another master, or a later attempt, may succeed.
    fn is_retryable(&self) -> bool {
        matches!(self, ApiError::NotLeader { .. } | ApiError::Unavailable(_))
            || matches!(self, ApiError::Other { status, .. } if *status >= 500 && *status != 501)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_variants_with_the_body() {
        let e = ApiError::from_response(
            StatusCode::BAD_REQUEST,
            None,
            None,
            b"Failed to validate scheduler::Call: Expecting 'framework_id' to be present\n",
            true,
        );
        assert_eq!(
            e,
            ApiError::BadRequest(
                "Failed to validate scheduler::Call: Expecting 'framework_id' to be present".into()
            )
        );
        assert_eq!(e.status(), 400);
        let e = ApiError::from_response(StatusCode::NOT_FOUND, None, None, b"", true);
        assert!(matches!(e, ApiError::NotLeader { status: 404, .. }));
        assert_eq!(e.message(), "Not Found");
        let e = ApiError::from_response(StatusCode::NOT_FOUND, None, None, b"", false);
        assert_eq!(e, ApiError::NotFound("Not Found".into()));
        let table = [
            (
                StatusCode::NOT_ACCEPTABLE,
                ApiError::NotAcceptable("x".into()),
            ),
            (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                ApiError::UnsupportedMediaType("x".into()),
            ),
            (StatusCode::CONFLICT, ApiError::Conflict("x".into())),
            (StatusCode::FORBIDDEN, ApiError::Forbidden("x".into())),
            (
                StatusCode::SERVICE_UNAVAILABLE,
                ApiError::Unavailable("x".into()),
            ),
        ];
        for (status, want) in table {
            let got = ApiError::from_response(status, None, None, b"x", true);
            assert_eq!(got, want);
            assert_eq!(got.status(), status.as_u16());
        }
        let e = ApiError::from_response(
            StatusCode::TEMPORARY_REDIRECT,
            Some("//m2:5050/api/v1/scheduler".into()),
            None,
            b"",
            true,
        );
        assert!(e.to_string().contains("leader: //m2:5050"), "{e}");
        assert!(e.is_retryable());
        assert!(!ApiError::BadRequest("x".into()).is_retryable());
        let e = ApiError::from_response(StatusCode::IM_A_TEAPOT, None, None, b"tea", false);
        assert_eq!(
            e,
            ApiError::Other {
                status: 418,
                message: "tea".into()
            }
        );
        assert!(e.to_string().contains("418"));
    }
}
