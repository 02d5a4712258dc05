//! HTTP plumbing shared by the master's and the agents' fronts: serving a listener, Mesos's
//! media-type rules and its plain-text error responses, RecordIO streaming bodies.

// Handlers return a ready `Response` as the error of their checks; its size is irrelevant next
// to the network round trip it answers.
#![allow(clippy::result_large_err)]

use std::convert::Infallible;
use std::future::Future;

use bytes::Bytes;
use http::{HeaderValue, Method, StatusCode, header};
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// Response body: a full buffer or a stream of chunks.
pub type Body = BoxBody<Bytes, Infallible>;
/// A response of ours.
pub type Response = http::Response<Body>;
/// A request as hyper hands it over.
pub type Request = http::Request<Incoming>;

/// Largest request body accepted (calls are small; LAUNCH of many tasks stays well below).
pub const MAX_BODY: usize = 16 << 20;

/// Serves `listener` until the returned task is aborted; each connection gets its own task,
/// and aborting the server ends its open connections too (an agent that stops must not
/// answer executors on connections it accepted before).
pub fn serve<H, F>(listener: TcpListener, handler: H) -> tokio::task::JoinHandle<()>
where
    H: Fn(Request) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response> + Send + 'static,
{
    tokio::spawn(async move {
        let mut connections = tokio::task::JoinSet::new();
        loop {
            while connections.try_join_next().is_some() {}
            let (stream, peer) = match listener.accept().await {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let handler = handler.clone();
            connections.spawn(async move {
                let svc = hyper::service::service_fn(move |req| {
                    let h = handler.clone();
                    async move { Ok::<_, Infallible>(h(req).await) }
                });
                if let Err(e) = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await
                {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
            });
        }
    })
}

/// A full body.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed()
}

/// A response with a body and content type.
pub fn bytes(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Response {
    let mut r = http::Response::new(full(body));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

/// A plain-text response, as Mesos writes its errors.
pub fn text(status: StatusCode, msg: impl Into<String>) -> Response {
    bytes(status, "text/plain; charset=utf-8", msg.into())
}

/// An empty response (`202 Accepted`, `200 OK`).
pub fn empty(status: StatusCode) -> Response {
    let mut r = http::Response::new(full(Bytes::new()));
    *r.status_mut() = status;
    r
}

/// A JSON response.
pub fn json(body: impl Into<Bytes>) -> Response {
    bytes(StatusCode::OK, "application/json", body)
}

/// A streaming response (chunked): each item of `rx` is one chunk, e.g. one RecordIO record.
/// The stream ends when every sender is dropped.
pub fn stream(content_type: Media, rx: mpsc::Receiver<Bytes>) -> Response {
    let mut r = http::Response::new(BoxBody::new(ChannelBody(rx)));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(content_type.as_str()),
    );
    r
}

/// Like [`stream`], fed by an unbounded channel (for senders that must never wait, such as
/// the master's single actor writing to many subscribers). `guard` is dropped when the body is,
/// that is when the response ended or the client went away: its `Drop` can tell the sender.
pub fn stream_unbounded(
    content_type: Media,
    rx: mpsc::UnboundedReceiver<Bytes>,
    guard: Box<dyn Send + Sync>,
) -> Response {
    let mut r = http::Response::new(BoxBody::new(UnboundedChannelBody(rx, guard)));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(content_type.as_str()),
    );
    r
}

/// A body fed by a channel.
struct ChannelBody(mpsc::Receiver<Bytes>);

impl hyper::body::Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0.poll_recv(cx).map(|o| o.map(|b| Ok(Frame::data(b))))
    }
}

/// A body fed by an unbounded channel, with a guard dropped along with it.
struct UnboundedChannelBody(
    mpsc::UnboundedReceiver<Bytes>,
    #[allow(dead_code)] Box<dyn Send + Sync>,
);

impl hyper::body::Body for UnboundedChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0.poll_recv(cx).map(|o| o.map(|b| Ok(Frame::data(b))))
    }
}

/// The two encodings of the v1 APIs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Media {
    /// `application/json`
    Json,
    /// `application/x-protobuf`
    Protobuf,
}

impl Media {
    /// The exact media type string.
    pub fn as_str(self) -> &'static str {
        match self {
            Media::Json => "application/json",
            Media::Protobuf => "application/x-protobuf",
        }
    }
}

/// Rejects anything but POST with 405 and `Allow: POST`, as libprocess does.
pub fn require_post(req: &Request) -> Result<(), Response> {
    if req.method() == Method::POST {
        return Ok(());
    }
    let mut r = text(
        StatusCode::METHOD_NOT_ALLOWED,
        format!(
            "Expecting one of {{ 'POST' }}, but received '{}'",
            req.method()
        ),
    );
    r.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("POST"));
    Err(r)
}

/// The request's `Content-Type`, compared exactly as Mesos does: missing -> 400, anything but
/// the two exact strings -> 415.
pub fn content_type(req: &Request) -> Result<Media, Response> {
    match req
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|v| v.as_bytes())
    {
        None => Err(text(
            StatusCode::BAD_REQUEST,
            "Expecting 'Content-Type' to be present",
        )),
        Some(b"application/json") => Ok(Media::Json),
        Some(b"application/x-protobuf") => Ok(Media::Protobuf),
        Some(_) => Err(text(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Expecting 'Content-Type' of application/json or application/x-protobuf",
        )),
    }
}

/// Negotiates the response encoding from `Accept`: JSON if acceptable, else protobuf, else
/// 406. A missing header means `*/*`. `q=0` excludes a type; other q values are ignored.
pub fn accept(req: &Request) -> Result<Media, Response> {
    let Some(v) = req.headers().get(header::ACCEPT) else {
        return Ok(Media::Json);
    };
    let v = v.to_str().unwrap_or("");
    let accepts = |want: &str| {
        let (wt, ws) = want.split_once('/').expect("type/subtype");
        let mut best: Option<(u8, bool)> = None; // (specificity, allowed)
        for item in v.split(',') {
            let mut parts = item.split(';');
            let range = parts.next().unwrap_or("").trim().to_ascii_lowercase();
            let zero = parts.any(|p| {
                let p = p.trim();
                p.strip_prefix("q=")
                    .is_some_and(|q| q.trim().parse::<f64>().is_ok_and(|q| q == 0.0))
            });
            let Some((t, s)) = range.split_once('/') else {
                continue;
            };
            let spec = match (t, s) {
                (t, s) if t == wt && s == ws => 3,
                (t, "*") if t == wt => 2,
                ("*", "*") => 1,
                _ => continue,
            };
            if best.is_none_or(|(b, _)| spec > b) {
                best = Some((spec, !zero));
            }
        }
        best.is_some_and(|(_, ok)| ok)
    };
    if accepts("application/json") {
        Ok(Media::Json)
    } else if accepts("application/x-protobuf") {
        Ok(Media::Protobuf)
    } else {
        Err(text(
            StatusCode::NOT_ACCEPTABLE,
            "Expecting 'Accept' to allow application/json or application/x-protobuf",
        ))
    }
}

/// Reads the whole request body, refusing more than `limit` bytes (413).
pub async fn read_body(req: Request, limit: usize) -> Result<Bytes, Response> {
    let body = http_body_util::Limited::new(req.into_body(), limit);
    match body.collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) => {
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                Err(text(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("Request body exceeds {limit} bytes"),
                ))
            } else {
                Err(text(
                    StatusCode::BAD_REQUEST,
                    format!("Failed to read the request body: {e}"),
                ))
            }
        }
    }
}

/// Query parameters of a request (`?a=1&b=x`), percent-decoded.
pub fn query(req: &Request) -> Vec<(String, String)> {
    req.uri().query().map(parse_form).unwrap_or_default()
}

/// Parses `application/x-www-form-urlencoded` text.
pub fn parse_form(s: &str) -> Vec<(String, String)> {
    s.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let hex = |c: u8| (c as char).to_digit(16);
                match (hex(b[i + 1]), hex(b[i + 2])) {
                    (Some(h), Some(l)) => {
                        out.push((h * 16 + l) as u8);
                        i += 2;
                    }
                    _ => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
