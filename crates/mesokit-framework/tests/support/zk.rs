//! A real ZooKeeper server for tests (Debian's `zookeeper` package): a private data dir and
//! an ephemeral port, started with `ZooKeeperServerMain`, stopped on drop. Also a TCP proxy
//! that can cut a client off from the server (a network partition on 127.0.0.1).
#![allow(dead_code, unreachable_pub)]

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use mesokit_framework::zk::{ZkClient, ZkOptions, ZkUrl};

const ZK_JAR: &str = "/usr/share/java/zookeeper.jar";

/// A running ZooKeeper server.
#[derive(Debug)]
pub struct ZkServer {
    dir: PathBuf,
    port: u16,
    proc: Option<(Child, ChildStdin)>,
    /// For a member of an ensemble: its id and the `server.N=` lines of all members.
    quorum: Option<(usize, String)>,
}

fn free_port() -> u16 {
    free_ports(1)[0]
}

/// `n` distinct free ports: all are held open until all are chosen, so none repeats.
fn free_ports(n: usize) -> Vec<u16> {
    let held: Vec<std::net::TcpListener> = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0"))
        .collect();
    held.iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect()
}

fn unique_dir() -> PathBuf {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    std::env::temp_dir().join(format!(
        "mesokit-zk-{}-{}-{nanos}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ))
}

impl ZkServer {
    /// Starts a fresh server and waits until it answers a session handshake. Panics (the
    /// test fails) when ZooKeeper is not installed or does not come up.
    pub fn start() -> Self {
        let dir = unique_dir();
        std::fs::create_dir_all(dir.join("data")).unwrap();
        let mut s = Self {
            dir,
            port: free_port(),
            proc: None,
            quorum: None,
        };
        s.spawn();
        s
    }

    /// Starts an ensemble of `n` servers on 127.0.0.1 and waits until each answers.
    pub fn start_ensemble(n: usize) -> Vec<Self> {
        // Client, peer and election port of each member, all distinct.
        let ports = free_ports(3 * n);
        let mut lines = String::new();
        for id in 1..=n {
            lines.push_str(&format!(
                "server.{id}=127.0.0.1:{}:{}\n",
                ports[3 * (id - 1) + 1],
                ports[3 * (id - 1) + 2]
            ));
        }
        let mut servers: Vec<Self> = (1..=n)
            .map(|id| {
                let dir = unique_dir();
                std::fs::create_dir_all(dir.join("data")).unwrap();
                std::fs::write(dir.join("data/myid"), format!("{id}\n")).unwrap();
                Self {
                    dir,
                    port: ports[3 * (id - 1)],
                    proc: None,
                    quorum: Some((id, lines.clone())),
                }
            })
            .collect();
        // All must run before any can answer: a quorum forms first.
        for s in &mut servers {
            s.launch();
        }
        for s in &mut servers {
            s.wait_ready();
        }
        servers
    }

    /// `127.0.0.1:port`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `zk://127.0.0.1:port<path>`.
    pub fn url(&self, path: &str) -> String {
        format!("zk://{}{}", self.addr(), path)
    }

    /// Kills the server (SIGKILL, like a crash) and waits for it to exit; its data stays.
    pub fn stop(&mut self) {
        if let Some((mut child, mut stdin)) = self.proc.take() {
            // Closing the pipe makes the wrapper shell kill Java and wait for it; "keep"
            // tells it to leave the data dir for a restart.
            let _ = stdin.write_all(b"keep\n");
            drop(stdin);
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port and data dir.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    fn spawn(&mut self) {
        self.launch();
        self.wait_ready();
    }

    fn launch(&mut self) {
        assert!(
            Path::new(ZK_JAR).exists(),
            "ZooKeeper is not installed ({ZK_JAR} missing): run scripts/test.sh, or apt-get install -y zookeeper"
        );
        let cfg = self.dir.join("zoo.cfg");
        let mut f = std::fs::File::create(&cfg).unwrap();
        write!(
            f,
            "tickTime=2000\ndataDir={}\nclientPort={}\nclientPortAddress=127.0.0.1\n\
             admin.enableServer=false\nmaxClientCnxns=0\n",
            self.dir.join("data").display(),
            self.port
        )
        .unwrap();
        let main = match &self.quorum {
            Some((_, lines)) => {
                write!(f, "initLimit=10\nsyncLimit=5\n{lines}").unwrap();
                "org.apache.zookeeper.server.quorum.QuorumPeerMain"
            }
            None => "org.apache.zookeeper.server.ZooKeeperServerMain",
        };
        let log = self.dir.join("zk.log");
        // The shell holds our pipe on its stdin: when this process goes away (even when it
        // panics or is killed), `read` sees EOF and the server is killed with it.
        let script = r#"java -Xms32m -Xmx256m -cp "/usr/share/java/zookeeper.jar:/usr/share/java/*:/etc/zookeeper/conf" "$4" "$1" >>"$2" 2>&1 &
pid=$!
cmd=""
read -r cmd || true
kill -9 "$pid" 2>/dev/null
wait "$pid" 2>/dev/null
[ "$cmd" = keep ] || rm -rf "$3"
exit 0"#;
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(script)
            .arg("zk")
            .arg(&cfg)
            .arg(&log)
            .arg(&self.dir)
            .arg(main)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn sh for ZooKeeper");
        let stdin = child.stdin.take().unwrap();
        self.proc = Some((child, stdin));
    }

    fn wait_ready(&mut self) {
        let log = self.dir.join("zk.log");
        let url = ZkUrl::parse(&self.url("/")).unwrap();
        let deadline = Instant::now() + Duration::from_secs(90);
        // Our own client, on a private runtime (callers may be sync or on another runtime).
        let ok = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                while Instant::now() < deadline {
                    let opts = ZkOptions {
                        session_timeout: Duration::from_secs(4),
                        connect_timeout: Duration::from_secs(1),
                        session: None,
                    };
                    if let Ok(c) = ZkClient::connect_with(&url, opts).await {
                        c.close().await;
                        return true;
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                false
            })
        })
        .join()
        .unwrap();
        if !ok {
            let tail = std::fs::read_to_string(&log).unwrap_or_default();
            let tail: String = tail
                .lines()
                .rev()
                .take(30)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect::<Vec<_>>()
                .join("\n");
            panic!(
                "ZooKeeper did not answer on {} within 90 s; log:\n{tail}",
                self.addr()
            );
        }
    }
}

impl Drop for ZkServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One server shared by the tests of a test binary (each test uses its own chroot). It is
/// killed when the test process exits (see the pipe in `spawn`), and its directory removed.
pub fn shared() -> &'static ZkServer {
    static SERVER: std::sync::OnceLock<ZkServer> = std::sync::OnceLock::new();
    SERVER.get_or_init(ZkServer::start)
}

/// A TCP forwarder in front of a server; `cut` drops every connection through it and refuses
/// new ones until `heal`.
#[derive(Debug)]
pub struct Proxy {
    pub addr: String,
    cut: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    pub async fn start(target: String) -> Self {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let (cut, rx) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = l.accept().await else {
                    return;
                };
                if *rx.borrow() {
                    drop(inbound);
                    continue;
                }
                let target = target.clone();
                let mut rx = rx.clone();
                tokio::spawn(async move {
                    let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = rx.wait_for(|c| *c) => {}
                    }
                });
            }
        });
        Self { addr, cut, task }
    }

    pub fn url(&self, path: &str) -> String {
        format!("zk://{}{}", self.addr, path)
    }

    pub fn cut(&self) {
        self.cut.send_replace(true);
    }

    pub fn heal(&self) {
        self.cut.send_replace(false);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Awaits `f` for at most `secs` seconds (a hang guard, not a timing assertion).
pub async fn within<T>(secs: u64, what: &str, f: impl std::future::Future<Output = T>) -> T {
    match tokio::time::timeout(Duration::from_secs(secs), f).await {
        Ok(v) => v,
        Err(_) => panic!("{what}: nothing after {secs} s"),
    }
}
