//! Test harness: a test CA, origin servers, the real `onehttps` binary on free loopback
//! ports (killed on drop), and TLS clients (a rustls/hyper client, curl, openssl).
#![allow(dead_code, unreachable_pub)]

use std::convert::Infallible;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::{TcpListener, TcpStream};

pub mod browser;
pub mod etcd;
pub mod pebble;
pub mod unbound;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

// ---------------------------------------------------------------- certificates

/// A throwaway CA that issues leaf certificates for tests.
pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    pub root_pem: String,
    pub root_der: CertificateDer<'static>,
}

/// A leaf certificate chain and key, PEM.
pub struct Leaf {
    pub chain_pem: String,
    pub key_pem: String,
}

impl TestCa {
    pub fn new() -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params
            .distinguished_name
            .push(DnType::CommonName, "onehttps test CA");
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Self {
            root_pem: cert.pem(),
            root_der: cert.der().clone(),
            issuer: Issuer::new(params, key),
        }
    }

    /// Issues a leaf for `names`, valid from an hour ago for `days` days.
    pub fn issue(&self, names: &[&str], days: i64) -> Leaf {
        let now = time::OffsetDateTime::now_utc();
        self.issue_between(
            names,
            now - time::Duration::hours(1),
            now + time::Duration::days(days),
        )
    }

    /// Issues a leaf for `names` valid between the two instants.
    pub fn issue_between(
        &self,
        names: &[&str],
        not_before: time::OffsetDateTime,
        not_after: time::OffsetDateTime,
    ) -> Leaf {
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        params.distinguished_name.push(DnType::CommonName, names[0]);
        params.not_before = not_before;
        params.not_after = not_after;
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Leaf {
            chain_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }

    /// Writes a leaf as `<dir>/<stem>.pem` + `<dir>/<stem>.key`.
    pub fn write_leaf(
        &self,
        dir: &Path,
        stem: &str,
        names: &[&str],
        days: i64,
    ) -> (PathBuf, PathBuf) {
        let leaf = self.issue(names, days);
        let cert = dir.join(format!("{stem}.pem"));
        let key = dir.join(format!("{stem}.key"));
        std::fs::write(&cert, &leaf.chain_pem).unwrap();
        std::fs::write(&key, &leaf.key_pem).unwrap();
        (cert, key)
    }

    pub fn write_root(&self, dir: &Path) -> PathBuf {
        let path = dir.join("root.pem");
        std::fs::write(&path, &self.root_pem).unwrap();
        path
    }
}

// ---------------------------------------------------------------- ports

/// A loopback port that was free a moment ago.
/// A port free now, below the kernel's ephemeral range (32768+), so that no outgoing
/// connection's local port can take it between this call and the server's bind. Each test
/// process walks its own stretch of 20000..32000 and never hands out a port twice.
/// Fails the test with what to install when `binary` cannot be run.
pub fn need(binary: &str, package: &str) {
    assert!(
        Command::new("sh")
            .args(["-c", &format!("command -v {binary}")])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success()),
        "{binary} is missing: install the Debian package `{package}` (scripts/test does)"
    );
}

pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const FIRST: u32 = 20_000;
    const SPAN: u32 = 12_000;
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let _ = NEXT.compare_exchange(
        u32::MAX,
        (std::process::id() % 40) * 300,
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    for _ in 0..SPAN {
        let port = (FIRST + NEXT.fetch_add(1, Ordering::SeqCst) % SPAN) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
            && std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok()
        {
            return port;
        }
    }
    panic!("no free port in {FIRST}..{}", FIRST + SPAN)
}

// ---------------------------------------------------------------- origins

/// An HTTP/1.1 origin server for tests, answering:
/// `/echo` (request line and headers as text), `/upload` (byte count and sum of the body),
/// `/download?bytes=N` (N streamed bytes), `/slow?ms=N`, `/stall` (never answers),
/// anything else: `origin <name>`.
pub struct Origin {
    pub addr: SocketAddr,
    pub hits: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Origin {
    pub async fn start(name: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let hits = Arc::new(AtomicUsize::new(0));
        let name: Arc<str> = name.into();
        let counter = hits.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let name = name.clone();
                let counter = counter.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| {
                        counter.fetch_add(1, Ordering::SeqCst);
                        origin_respond(name.clone(), req)
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), service)
                        .with_upgrades()
                        .await;
                });
            }
        });
        Self { addr, hits, task }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

/// An origin on a runtime of its own, for tests that are blocking code; keep both alive.
pub fn origin_on_own_runtime(name: &str) -> (tokio::runtime::Runtime, Origin) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let origin = rt.block_on(Origin::start(name));
    (rt, origin)
}

impl Drop for Origin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

type TestBody = http_body_util::combinators::BoxBody<Bytes, BoxError>;

fn text(s: String) -> Response<TestBody> {
    Response::new(Full::new(Bytes::from(s)).map_err(|e| match e {}).boxed())
}

fn query_num(req: &Request<Incoming>, key: &str) -> u64 {
    req.uri()
        .query()
        .unwrap_or("")
        .split('&')
        .find_map(|kv| kv.strip_prefix(&format!("{key}=")))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

async fn origin_respond(
    name: Arc<str>,
    req: Request<Incoming>,
) -> Result<Response<TestBody>, Infallible> {
    let path = req.uri().path().to_owned();
    let response = match path.as_str() {
        "/echo" => {
            let mut out = format!("method {}\ntarget {}\n", req.method(), req.uri());
            for (k, v) in req.headers() {
                out.push_str(&format!("header {}: {}\n", k, v.to_str().unwrap_or("?")));
            }
            let mut r = text(out);
            // Hop-by-hop headers the edge must not pass to the client.
            r.headers_mut()
                .insert("connection", "x-origin-private".parse().unwrap());
            r.headers_mut()
                .insert("x-origin-private", "1".parse().unwrap());
            r.headers_mut()
                .insert("keep-alive", "timeout=5".parse().unwrap());
            r
        }
        "/upload" => {
            let mut body = req.into_body();
            let (mut count, mut sum) = (0u64, 0u64);
            while let Some(frame) = body.frame().await {
                let Ok(frame) = frame else { break };
                if let Some(data) = frame.data_ref() {
                    count += data.len() as u64;
                    sum = data.iter().fold(sum, |s, &b| s.wrapping_add(u64::from(b)));
                }
            }
            text(format!("bytes {count} sum {sum}"))
        }
        "/download" => {
            let total = query_num(&req, "bytes");
            let chunk = Bytes::from(pattern(64 * 1024));
            let stream = futures_util::stream::unfold(total, move |left| {
                let chunk = chunk.clone();
                async move {
                    (left > 0).then(|| {
                        let n = left.min(chunk.len() as u64);
                        (
                            Ok::<_, BoxError>(Frame::data(chunk.slice(..n as usize))),
                            left - n,
                        )
                    })
                }
            });
            Response::new(StreamBody::new(stream).boxed())
        }
        "/slow" => {
            tokio::time::sleep(Duration::from_millis(query_num(&req, "ms"))).await;
            text(format!("slow done by {name}"))
        }
        "/stall" => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            text(String::new())
        }
        _ => text(format!("origin {name} {path}")),
    };
    Ok(response)
}

/// Deterministic bytes: `i % 251`.
pub fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

/// A WebSocket echo origin.
pub async fn start_ws_origin() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                use futures_util::{SinkExt, StreamExt};
                let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else {
                    return;
                };
                while let Some(Ok(msg)) = ws.next().await {
                    if (msg.is_text() || msg.is_binary()) && ws.send(msg).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

// ---------------------------------------------------------------- the edge process

/// The real binary, started on a config in its own temp dir, killed on drop.
pub struct EdgeProcess {
    child: Option<Child>,
    pub dir: tempfile::TempDir,
    pub https: u16,
    pub http: u16,
    pub admin: u16,
    pub log_path: PathBuf,
    pub config_path: PathBuf,
}

/// Ports and paths a config template can use.
pub struct EdgePorts {
    pub https: u16,
    pub http: u16,
    pub admin: u16,
}

impl EdgePorts {
    pub fn new() -> Self {
        Self {
            https: free_port(),
            http: free_port(),
            admin: free_port(),
        }
    }

    /// The `[server]` table for these ports and `data_dir`.
    pub fn server_table(&self, data_dir: &Path) -> String {
        format!(
            "[server]\nhttps = \"127.0.0.1:{}\"\nhttp = \"127.0.0.1:{}\"\nadmin = \"127.0.0.1:{}\"\ndata_dir = \"{}\"\n",
            self.https,
            self.http,
            self.admin,
            data_dir.display()
        )
    }
}

/// `onehttps run --config <config>` with its log in `log` (truncated).
fn spawn_run(config: &Path, log: &Path) -> Child {
    spawn_run_with(config, log, None)
}

/// Like `spawn_run`, under a descriptor limit of `nofile` (soft and hard) when given.
fn spawn_run_with(config: &Path, log: &Path, nofile: Option<u32>) -> Child {
    let log = std::fs::File::create(log).unwrap();
    let mut cmd = match nofile {
        Some(n) => {
            let mut cmd = Command::new("prlimit");
            cmd.arg(format!("--nofile={n}:{n}")).arg("--").arg(binary());
            cmd
        }
        None => Command::new(binary()),
    };
    cmd.args(["run", "--config"])
        .arg(config)
        .env("RUST_LOG", "info,onehttps=debug")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start onehttps")
}

pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_onehttps")
}

impl EdgeProcess {
    /// Writes `config` to the temp dir and starts `onehttps run` on it; waits until ready.
    pub fn start(dir: tempfile::TempDir, ports: &EdgePorts, config: &str) -> Self {
        Self::start_limited(dir, ports, config, None)
    }

    /// `start` under a file descriptor limit (prlimit, from util-linux).
    pub fn start_with_nofile(
        dir: tempfile::TempDir,
        ports: &EdgePorts,
        config: &str,
        nofile: u32,
    ) -> Self {
        Self::start_limited(dir, ports, config, Some(nofile))
    }

    fn start_limited(
        dir: tempfile::TempDir,
        ports: &EdgePorts,
        config: &str,
        nofile: Option<u32>,
    ) -> Self {
        let config_path = dir.path().join("onehttps.toml");
        std::fs::write(&config_path, config).unwrap();
        let log_path = dir.path().join("edge.log");
        let child = spawn_run_with(&config_path, &log_path, nofile);
        let mut edge = Self {
            child: Some(child),
            dir,
            https: ports.https,
            http: ports.http,
            admin: ports.admin,
            log_path,
            config_path,
        };
        edge.wait_log("onehttps ready", Duration::from_secs(20));
        edge
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// `kill -9`: no cleanup, no graceful anything.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM and wait for the exit; `restart` starts it again.
    pub fn stop(&mut self) {
        if self.child.is_some() {
            self.signal("TERM");
            self.wait_exit(Duration::from_secs(20));
            self.child = None;
        }
    }

    /// Stops the process if running (SIGTERM, then waits) and starts it again on the same
    /// config and data; the previous log moves to `edge.log.<n>`. Waits until ready.
    pub fn restart(&mut self) {
        self.stop();
        let mut n = 1;
        while self.log_path.with_extension(format!("log.{n}")).exists() {
            n += 1;
        }
        std::fs::rename(
            &self.log_path,
            self.log_path.with_extension(format!("log.{n}")),
        )
        .unwrap();
        self.child = Some(spawn_run(&self.config_path, &self.log_path));
        self.wait_log("onehttps ready", Duration::from_secs(20));
    }

    /// How many times the current log contains `needle`.
    pub fn count_log(&self, needle: &str) -> usize {
        self.log().matches(needle).count()
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Waits until the log contains `needle`; panics with the log otherwise.
    pub fn wait_log(&mut self, needle: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if self.log().contains(needle) {
                return;
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                panic!(
                    "onehttps exited ({status}) before logging {needle:?}:\n{}",
                    self.log()
                );
            }
            if Instant::now() > deadline {
                panic!(
                    "onehttps did not log {needle:?} within {timeout:?}:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    pub fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.pid().to_string())
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for the process to exit and returns its exit code.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        let child = self.child.as_mut().unwrap();
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status.code();
            }
            if Instant::now() > deadline {
                panic!("onehttps did not exit within {timeout:?}:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Replaces the config file (atomically) with `config`.
    pub fn rewrite_config(&self, config: &str) {
        let tmp = self.config_path.with_extension("tmp");
        std::fs::write(&tmp, config).unwrap();
        std::fs::rename(tmp, &self.config_path).unwrap();
    }

    pub fn https_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.https))
    }

    /// The admin API's bearer token (generated in the data directory).
    pub fn token(&self) -> String {
        std::fs::read_to_string(self.data_dir().join("admin.token"))
            .unwrap()
            .trim()
            .to_owned()
    }

    /// An admin API call with the edge's token, through curl: (HTTP status, body).
    pub fn api(&self, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
        admin_call(self.admin, method, path, body, Some(&self.token()))
    }

    /// `curl -i http://host:<http port>path` (headers and body, and curl's errors).
    pub fn http_get(&self, host: &str, path: &str) -> String {
        let out = Command::new("curl")
            .args(["-sS", "-i", "--max-time", "10", "--resolve"])
            .arg(format!("{host}:{}:127.0.0.1", self.http))
            .arg(format!("http://{host}:{}{path}", self.http))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
    }
}

/// A raw admin API call with curl: (HTTP status, body).
pub fn admin_call(
    port: u16,
    method: &str,
    path: &str,
    body: Option<&str>,
    token: Option<&str>,
) -> (u16, String) {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "-o", "-", "-w", "\n%{http_code}", "-X", method]);
    if let Some(token) = token {
        cmd.arg("-H").arg(format!("Authorization: Bearer {token}"));
    }
    if let Some(body) = body {
        cmd.args([
            "-H",
            "content-type: application/json",
            "--data-binary",
            body,
        ]);
    }
    let out = cmd
        .arg(format!("http://127.0.0.1:{port}{path}"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_owned())
}

impl Drop for EdgeProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Writes `content` to `path` through a temporary file and a rename (as certbot does).
pub fn replace_file(path: &Path, content: &[u8]) {
    let tmp = path.with_extension("swap");
    let mut f = std::fs::File::create(&tmp).unwrap();
    f.write_all(content).unwrap();
    f.sync_all().unwrap();
    std::fs::rename(tmp, path).unwrap();
}

// ---------------------------------------------------------------- TLS + HTTP client

/// A rustls client config trusting `root`, offering `alpn`.
pub fn client_config(root: &CertificateDer<'static>, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(root.clone()).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

/// TLS connection to `addr` with SNI `sni` (`None`: no SNI, name checked against 127.0.0.1).
pub async fn tls_connect(
    addr: SocketAddr,
    sni: Option<&str>,
    config: Arc<rustls::ClientConfig>,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let name = match sni {
        Some(s) => ServerName::try_from(s.to_owned()).unwrap(),
        None => ServerName::IpAddress(addr.ip().into()),
    };
    tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
}

/// An HTTP connection over TLS, HTTP/2 or HTTP/1.1 as ALPN decided.
pub enum HttpConn {
    H1(hyper::client::conn::http1::SendRequest<TestBody>),
    H2(hyper::client::conn::http2::SendRequest<TestBody>),
}

/// A response read whole.
pub struct Got {
    pub status: StatusCode,
    pub headers: http::HeaderMap,
    pub body: Bytes,
    pub version: http::Version,
}

impl Got {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

impl HttpConn {
    pub async fn open(
        addr: SocketAddr,
        sni: &str,
        config: Arc<rustls::ClientConfig>,
    ) -> Result<Self, BoxError> {
        let tls = tls_connect(addr, Some(sni), config).await?;
        let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
        let io = TokioIo::new(tls);
        if h2 {
            let (send, conn) =
                hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), io)
                    .await?;
            tokio::spawn(conn);
            Ok(Self::H2(send))
        } else {
            let (send, conn) = hyper::client::conn::http1::handshake(io).await?;
            tokio::spawn(conn.with_upgrades());
            Ok(Self::H1(send))
        }
    }

    pub async fn send(&mut self, req: Request<TestBody>) -> Result<Response<Incoming>, BoxError> {
        Ok(match self {
            Self::H1(s) => {
                s.ready().await?;
                s.send_request(req).await?
            }
            Self::H2(s) => {
                s.ready().await?;
                s.send_request(req).await?
            }
        })
    }

    /// Sends a body-less request for `https://host{path}` and reads the response whole.
    pub async fn get(&mut self, host: &str, path: &str) -> Result<Got, BoxError> {
        let req = request(self.is_h2(), "GET", host, path, empty());
        read_whole(self.send(req).await?).await
    }

    pub fn is_h2(&self) -> bool {
        matches!(self, Self::H2(_))
    }
}

/// Builds a request; HTTP/2 carries the host in the URI authority, HTTP/1.1 in `Host`.
pub fn request(
    h2: bool,
    method: &str,
    host: &str,
    path: &str,
    body: TestBody,
) -> Request<TestBody> {
    let builder = Request::builder().method(method);
    let builder = if h2 {
        builder
            .uri(format!("https://{host}{path}"))
            .version(http::Version::HTTP_2)
    } else {
        builder.uri(path).header("host", host)
    };
    builder.body(body).unwrap()
}

pub fn empty() -> TestBody {
    http_body_util::Empty::new().map_err(|e| match e {}).boxed()
}

pub async fn read_whole(resp: Response<Incoming>) -> Result<Got, BoxError> {
    let (parts, body) = resp.into_parts();
    let body = body.collect().await?.to_bytes();
    Ok(Got {
        status: parts.status,
        headers: parts.headers,
        body,
        version: parts.version,
    })
}

/// One GET on a fresh connection.
pub async fn get_once(
    addr: SocketAddr,
    sni: &str,
    path: &str,
    config: Arc<rustls::ClientConfig>,
) -> Result<Got, BoxError> {
    HttpConn::open(addr, sni, config)
        .await?
        .get(sni, path)
        .await
}

// ---------------------------------------------------------------- command-line clients

/// `curl` to `https://host:port{path}` resolved to loopback, trusting `root`. Returns
/// (exit success, stdout).
pub fn curl(host: &str, port: u16, path: &str, root: &Path, extra: &[&str]) -> (bool, String) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "20", "--resolve"])
        .arg(format!("{host}:{port}:127.0.0.1"))
        .arg("--cacert")
        .arg(root)
        .args(extra)
        .arg(format!("https://{host}:{port}{path}"))
        .output()
        .expect("curl is installed (scripts/test installs it)");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

/// What `openssl s_client` printed for a connection with SNI `sni` (all of stdout+stderr).
pub fn s_client(port: u16, sni: Option<&str>) -> String {
    let mut cmd = Command::new("openssl");
    cmd.args(["s_client", "-connect"])
        .arg(format!("127.0.0.1:{port}"));
    match sni {
        Some(name) => cmd.args(["-servername", name]),
        None => cmd.arg("-noservername"),
    };
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .expect("openssl is installed (scripts/test installs it)");
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

/// `openssl x509 -noout -enddate -serial -subject` of the certificate served for `sni`.
pub fn served_cert_fields(port: u16, sni: &str) -> String {
    let pem = s_client(port, Some(sni));
    let mut child = Command::new("openssl")
        .args([
            "x509",
            "-noout",
            "-enddate",
            "-serial",
            "-ext",
            "subjectAltName",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(pem.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The `notAfter=` line of a PEM certificate, as openssl prints it.
pub fn pem_enddate(pem: &str) -> String {
    let mut child = Command::new("openssl")
        .args(["x509", "-noout", "-enddate"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(pem.as_bytes())
        .unwrap();
    String::from_utf8_lossy(&child.wait_with_output().unwrap().stdout)
        .trim()
        .to_owned()
}

// ---------------------------------------------------------------- config snippets

/// A `[[site]]` table.
pub fn site_table(hosts: &[&str], origins: &[String], cert: Option<&(PathBuf, PathBuf)>) -> String {
    let quote = |v: &[String]| {
        v.iter()
            .map(|s| format!("\"{s}\""))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let hosts: Vec<String> = hosts.iter().map(|h| h.to_string()).collect();
    let mut out = format!(
        "\n[[site]]\nhost = [{}]\norigins = [{}]\n",
        quote(&hosts),
        quote(origins)
    );
    if let Some((c, k)) = cert {
        out.push_str(&format!(
            "cert = \"{}\"\nkey = \"{}\"\n",
            c.display(),
            k.display()
        ));
    }
    out
}

/// An edge serving one site per entry of `sites` (host names, origin URLs), each with a
/// certificate from `ca`; `extra` is appended to the config.
pub fn start_edge(ca: &TestCa, sites: &[(&[&str], Vec<String>)], extra: &str) -> EdgeProcess {
    let dir = tempfile::tempdir().unwrap();
    let ports = EdgePorts::new();
    let mut config = ports.server_table(&dir.path().join("data"));
    config.push_str(extra);
    for (i, (hosts, origins)) in sites.iter().enumerate() {
        let files = ca.write_leaf(dir.path(), &format!("site{i}"), hosts, 30);
        config.push_str(&site_table(hosts, origins, Some(&files)));
    }
    ca.write_root(dir.path());
    EdgeProcess::start(dir, &ports, &config)
}

impl EdgeProcess {
    pub fn root_path(&self) -> PathBuf {
        self.dir.path().join("root.pem")
    }
}

/// Every file under `dir` is free of plaintext private keys, and every file holding a secret
/// (sealed keys, records, the master key) is 0600.
pub fn assert_no_plaintext_keys(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let mut stack = vec![dir.to_path_buf()];
    let mut files = 0;
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            files += 1;
            let text = String::from_utf8_lossy(&std::fs::read(&path).unwrap()).into_owned();
            assert!(
                !text.contains("PRIVATE KEY"),
                "{} holds a plaintext private key",
                path.display()
            );
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if name.ends_with(".sealed")
                || name.ends_with(".json")
                || name.ends_with(".redb")
                || name.starts_with("master.")
            {
                let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
                assert_eq!(mode, 0o600, "{} mode", path.display());
            }
        }
    }
    assert!(files > 0, "nothing stored under {}", dir.display());
}

// ---------------------------------------------------------------- the store

/// `[storage]` for tests that read or alter the one-file-per-entry layout on disk.
pub const FS_STORAGE: &str = "[storage]\nkind = \"fs\"\n";

/// Opens the edge's default (embedded) store beside the running edge (the file is shared
/// between processes), with the master key in `data_dir`.
pub fn open_store(data_dir: &Path) -> onehttps::store::Store {
    onehttps::store::Store::open_with(&onehttps::config::StorageSettings::Embedded, data_dir)
        .unwrap()
}

/// Every certificate record in the edge's embedded store, as JSON.
pub fn stored_records(data_dir: &Path) -> Vec<serde_json::Value> {
    let store = open_store(data_dir);
    onehttps::managed::records::CertRecords::new(&store)
        .load_all()
        .into_iter()
        .map(|r| serde_json::to_value(r.unwrap()).unwrap())
        .collect()
}

/// How many site registrations the edge's embedded store holds.
pub fn stored_sites(data_dir: &Path) -> usize {
    open_store(data_dir)
        .load_json_dir::<serde_json::Value>("sites")
        .len()
}
