//! A scriptable fake Mesos endpoint on 127.0.0.1: every HTTP request it receives is handed to
//! the test, which answers it in full or streams a response piece by piece (RecordIO records,
//! odd chunkings, a cut in the middle), exactly as the conversation under test requires.

#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use mesokit_client::{ContentType, WireMessage};
use mesokit_proto::recordio;
use tokio::io::{
    AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader, ReadHalf,
    WriteHalf,
};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

#[cfg(feature = "tls")]
type Tls = Arc<tokio_rustls::rustls::ServerConfig>;
#[cfg(not(feature = "tls"))]
type Tls = std::convert::Infallible;

/// How long a test waits for something that must happen before declaring failure.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// Awaits `fut`, failing the test with `what` if it takes longer than [`PATIENCE`].
pub async fn within<T>(what: &str, fut: impl std::future::Future<Output = T>) -> T {
    match tokio::time::timeout(PATIENCE, fut).await {
        Ok(v) => v,
        Err(_) => panic!("timed out waiting for {what}"),
    }
}

/// A listening fake server. Dropping it stops accepting (new connections are refused) and
/// closes the connections it serves.
pub struct FakeServer {
    pub addr: SocketAddr,
    rx: mpsc::UnboundedReceiver<Request>,
    task: JoinHandle<()>,
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeServer {
    pub async fn start() -> FakeServer {
        Self::start_with(None).await
    }

    /// A server speaking HTTPS with the test certificate of `tests/data`.
    #[cfg(feature = "tls")]
    pub async fn start_tls() -> FakeServer {
        use pki_types::pem::PemObject;
        use tokio_rustls::rustls::{self, pki_types};
        let certs = pki_types::CertificateDer::pem_slice_iter(include_bytes!("../data/server.pem"))
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let key =
            pki_types::PrivateKeyDer::from_pem_slice(include_bytes!("../data/server.key")).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap();
        Self::start_with(Some(Arc::new(config))).await
    }

    async fn start_with(tls: Option<Tls>) -> FakeServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = mpsc::unbounded_channel();
        let ids = Arc::new(AtomicU64::new(0));
        let task = tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            loop {
                let Ok((sock, _)) = listener.accept().await else {
                    return;
                };
                let _ = sock.set_nodelay(true);
                let id = ids.fetch_add(1, Ordering::Relaxed);
                let tx = tx.clone();
                match &tls {
                    None => {
                        conns.spawn(serve(sock, id, tx));
                    }
                    #[cfg(feature = "tls")]
                    Some(config) => {
                        let acceptor = tokio_rustls::TlsAcceptor::from(config.clone());
                        conns.spawn(async move {
                            // A failed handshake (the client refusing our certificate) just ends.
                            if let Ok(stream) = acceptor.accept(sock).await {
                                serve(stream, id, tx).await;
                            }
                        });
                    }
                    #[cfg(not(feature = "tls"))]
                    Some(never) => match *never {},
                }
            }
        });
        FakeServer { addr, rx, task }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `127.0.0.1:<port>`.
    pub fn authority(&self) -> String {
        self.addr.to_string()
    }

    /// The next request received.
    pub async fn next(&mut self) -> Request {
        within("a request to the fake server", self.rx.recv())
            .await
            .expect("server stopped")
    }

    /// A request already received, if any (does not wait).
    pub fn try_next(&mut self) -> Option<Request> {
        self.rx.try_recv().ok()
    }
}

/// A received request, to be answered with [`Request::respond`] or [`Request::stream`].
pub struct Request {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Which connection it came on (0, 1, … in accept order).
    pub conn: u64,
    reply: oneshot::Sender<Reply>,
}

enum Reply {
    Full(Vec<u8>),
    Stream {
        head: Vec<u8>,
        ops: mpsc::UnboundedReceiver<Op>,
        client_gone: watch::Sender<bool>,
    },
}

enum Op {
    Raw(Vec<u8>),
    End,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Decodes the body using the request's Content-Type.
    pub fn decode<M: WireMessage>(&self) -> M {
        let ct =
            ContentType::from_media_type(self.header("content-type").expect("no content-type"))
                .expect("unknown content-type");
        ct.decode(&self.body).expect("undecodable request body")
    }

    /// Answers with a complete response (Content-Length set; the connection stays open).
    pub fn respond(self, status: u16, headers: &[(&str, &str)], body: &[u8]) {
        let mut out = head(status, headers);
        out.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
        out.extend_from_slice(body);
        let _ = self.reply.send(Reply::Full(out));
    }

    /// Answers with a plain-text error, as Mesos does.
    pub fn respond_text(self, status: u16, text: &str) {
        self.respond(
            status,
            &[("Content-Type", "text/plain; charset=utf-8")],
            text.as_bytes(),
        );
    }

    /// Starts a chunked streaming response.
    pub fn stream(self, status: u16, headers: &[(&str, &str)]) -> StreamWriter {
        let mut h = head(status, headers);
        h.extend_from_slice(b"Transfer-Encoding: chunked\r\n\r\n");
        let (tx, ops) = mpsc::unbounded_channel();
        let (client_gone, gone) = watch::channel(false);
        let _ = self.reply.send(Reply::Stream {
            head: h,
            ops,
            client_gone,
        });
        StreamWriter { tx, gone }
    }
}

fn head(status: u16, headers: &[(&str, &str)]) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 {status} {}\r\n", reason(status)).into_bytes();
    for (k, v) in headers {
        out.extend_from_slice(format!("{k}: {v}\r\n").as_bytes());
    }
    out
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        202 => "Accepted",
        307 => "Temporary Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        409 => "Conflict",
        503 => "Service Unavailable",
        _ => "Whatever",
    }
}

/// Writes a streaming response. Dropping it cuts the connection without the final chunk.
pub struct StreamWriter {
    tx: mpsc::UnboundedSender<Op>,
    gone: watch::Receiver<bool>,
}

impl StreamWriter {
    /// Bytes straight onto the socket (no chunk framing): for cutting inside a chunk.
    pub fn raw(&self, bytes: &[u8]) {
        let _ = self.tx.send(Op::Raw(bytes.to_vec()));
    }

    /// One HTTP chunk.
    pub fn chunk(&self, bytes: &[u8]) {
        let mut out = format!("{:x}\r\n", bytes.len()).into_bytes();
        out.extend_from_slice(bytes);
        out.extend_from_slice(b"\r\n");
        self.raw(&out);
    }

    /// Every byte in an HTTP chunk of its own.
    pub fn bytewise(&self, bytes: &[u8]) {
        for b in bytes {
            self.chunk(std::slice::from_ref(b));
        }
    }

    /// One RecordIO record as one chunk, as Mesos writes them.
    pub fn record(&self, data: &[u8]) {
        self.chunk(&recordio::frame(data));
    }

    /// A message encoded in `ct`, as one record.
    pub fn event<M: WireMessage>(&self, ct: ContentType, msg: &M) {
        self.record(&ct.encode(msg));
    }

    /// Ends the response properly (final empty chunk), then closes.
    pub fn end(self) {
        let _ = self.tx.send(Op::End);
    }

    /// Resolves once the client has closed its end of the connection.
    pub async fn client_closed(&mut self) {
        within("the client to close the stream", self.gone.wait_for(|g| *g))
            .await
            .expect("connection task ended");
    }
}

trait Io: AsyncRead + AsyncWrite + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + 'static> Io for T {}

async fn serve<S: Io>(sock: S, conn: u64, tx: mpsc::UnboundedSender<Request>) {
    let (read, mut write) = tokio::io::split(sock);
    let mut read = BufReader::new(read);
    loop {
        let Some((method, path, headers, body)) = read_request(&mut read).await else {
            return;
        };
        let (reply_tx, reply_rx) = oneshot::channel();
        let req = Request {
            method,
            path,
            headers,
            body,
            conn,
            reply: reply_tx,
        };
        if tx.send(req).is_err() {
            return;
        }
        let Ok(reply) = reply_rx.await else { return };
        match reply {
            Reply::Full(bytes) => {
                if write.write_all(&bytes).await.is_err() {
                    return;
                }
            }
            Reply::Stream {
                head,
                ops,
                client_gone,
            } => {
                stream(read, write, head, ops, client_gone).await;
                return;
            }
        }
    }
}

async fn stream<S: Io>(
    mut read: BufReader<ReadHalf<S>>,
    mut write: WriteHalf<S>,
    head: Vec<u8>,
    mut ops: mpsc::UnboundedReceiver<Op>,
    client_gone: watch::Sender<bool>,
) {
    if write.write_all(&head).await.is_err() {
        client_gone.send_replace(true);
        return;
    }
    let mut buf = [0u8; 512];
    loop {
        tokio::select! {
            op = ops.recv() => match op {
                Some(Op::Raw(bytes)) => {
                    if write.write_all(&bytes).await.is_err() || write.flush().await.is_err() {
                        break;
                    }
                }
                Some(Op::End) => {
                    let _ = write.write_all(b"0\r\n\r\n").await;
                    let _ = write.shutdown().await;
                    // Wait for the client to close too, so client_closed() can be observed.
                    loop {
                        match read.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(_) => {}
                        }
                    }
                    break;
                }
                None => {
                    // Writer dropped: cut the connection mid-stream.
                    let _ = write.shutdown().await;
                    return;
                }
            },
            n = read.read(&mut buf) => match n {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            },
        }
    }
    client_gone.send_replace(true);
}

type Parsed = (String, String, Vec<(String, String)>, Vec<u8>);

async fn read_request<S: Io>(read: &mut BufReader<ReadHalf<S>>) -> Option<Parsed> {
    let mut line = String::new();
    if read.read_line(&mut line).await.ok()? == 0 {
        return None;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_owned();
    let path = parts.next()?.to_owned();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if read.read_line(&mut h).await.ok()? == 0 {
            return None;
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':')?;
        headers.push((k.trim().to_owned(), v.trim().to_owned()));
    }
    let len = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse::<usize>().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    read.read_exact(&mut body).await.ok()?;
    Some((method, path, headers, body))
}
