//! The request path without sockets, as a regression guard: a client sends requests over
//! one open TLS connection (in-memory duplex) to a real `Edge` — the same `serve_tls`, hyper
//! server, proxy and pooled origin client as on the listener — whose origin is an
//! in-process hyper server, also over in-memory streams. Everything runs on one thread, so
//! a change that adds work (or allocations) per request shows here, without the kernel's
//! loopback noise that dominates `benches/load.sh`.
//!
//! Also counted: heap allocations per request, through the edge and, as the baseline, with
//! the same client speaking plain HTTP straight to the same origin; the difference is the
//! edge's share (TLS both ways, the server, the proxy, the origin client). And the origin
//! client alone: a GET from the edge's pooled client against the same GET on one held
//! connection (what a pool checkout and return cost per request).
//!
//! Run: `cargo bench --bench request_path` (criterion; `-- --quick` for a short run).

use std::hint::black_box;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use http_body_util::{BodyExt, Empty, Full};
use hyper::client::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::RootCertStore;
use rustls::pki_types::{CertificateDer, ServerName};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};
use tokio::io::{AsyncRead, AsyncWrite, DuplexStream};
use tokio::runtime::Runtime;

use onehttps::config::Config;
use onehttps::edge::Edge;
use onehttps::proxy::client::{self, OriginClient};
use onehttps::proxy::connector::{MemoryOrigin, OriginConnector};

#[global_allocator]
static GLOBAL: &StatsAlloc<std::alloc::System> = &INSTRUMENTED_SYSTEM;

/// Bytes an in-memory stream buffers each way (like a socket buffer).
const DUPLEX_BYTES: usize = 64 * 1024;
const BODY: &[u8] = b"hello from the origin\n";

/// The in-process origin: answers every request with `BODY`.
fn serve_origin(io: DuplexStream) {
    tokio::spawn(async move {
        let service = service_fn(|_req| async {
            Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(Bytes::from_static(
                BODY,
            ))))
        });
        let _ = hyper::server::conn::http1::Builder::new()
            .serve_connection(TokioIo::new(io), service)
            .await;
    });
}

/// An in-memory origin connection per call, served by `serve_origin`.
fn memory_origin() -> MemoryOrigin {
    MemoryOrigin::new(|| {
        let (edge_end, origin_end) = tokio::io::duplex(DUPLEX_BYTES);
        serve_origin(origin_end);
        edge_end
    })
}

/// An edge serving `localhost` (a self-signed certificate) from the in-memory origin.
fn edge(dir: &Path) -> (Arc<Edge>, CertificateDer<'static>, Config) {
    let key = rcgen::KeyPair::generate().expect("generate key");
    let cert = rcgen::CertificateParams::new(vec!["localhost".into()])
        .expect("certificate params")
        .self_signed(&key)
        .expect("self-sign");
    std::fs::write(dir.join("cert.pem"), cert.pem()).expect("write cert");
    std::fs::write(dir.join("key.pem"), key.serialize_pem()).expect("write key");
    let toml = format!(
        r#"
[server]
https = "127.0.0.1:1"
http = "127.0.0.1:2"
admin = "127.0.0.1:3"
data_dir = "{dir}/data"
workers = 1
[log]
access = false
[[site]]
host = "localhost"
origins = ["http://127.0.0.1:9"]
cert = "{dir}/cert.pem"
key = "{dir}/key.pem"
managed = false
"#,
        dir = dir.display()
    );
    let config = Config::parse(&toml, dir).expect("bench config");
    let edge = Edge::with_memory_origin(config.clone(), memory_origin()).expect("bench edge");
    (edge, cert.der().clone(), config)
}

/// A TLS client connection to `edge` over an in-memory stream, offering `alpn`.
async fn connect(
    edge: &Arc<Edge>,
    cert: &CertificateDer<'static>,
    alpn: &[u8],
) -> tokio_rustls::client::TlsStream<DuplexStream> {
    let (client_end, edge_end) = tokio::io::duplex(DUPLEX_BYTES);
    let peer: SocketAddr = "127.0.0.1:40000".parse().expect("address");
    tokio::spawn(edge.clone().serve_stream(edge_end, peer));
    let mut roots = RootCertStore::empty();
    roots
        .add(cert.clone())
        .expect("trust the bench certificate");
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("protocol versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").expect("name"), client_end)
        .await
        .expect("TLS handshake with the edge")
}

fn request() -> hyper::Request<Empty<Bytes>> {
    hyper::Request::builder()
        .uri("/")
        .header(hyper::header::HOST, "localhost")
        .body(Empty::new())
        .expect("request")
}

/// Sends one GET and reads the whole response.
async fn get_h1(sender: &mut http1::SendRequest<Empty<Bytes>>) {
    sender.ready().await.expect("connection ready");
    let response = sender.send_request(request()).await.expect("response");
    assert!(response.status().is_success(), "{}", response.status());
    black_box(response.into_body().collect().await.expect("body"));
}

async fn get_h2(sender: &mut http2::SendRequest<Empty<Bytes>>) {
    let mut req = request();
    *req.uri_mut() = "https://localhost/".parse().expect("uri");
    let response = sender.send_request(req).await.expect("response");
    assert!(response.status().is_success(), "{}", response.status());
    black_box(response.into_body().collect().await.expect("body"));
}

async fn h1_over<IO>(io: IO) -> http1::SendRequest<Empty<Bytes>>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) = http1::handshake(TokioIo::new(io))
        .await
        .expect("HTTP/1.1 handshake");
    tokio::spawn(conn);
    sender
}

/// One GET from the edge's pooled origin client (a connection checked out of its pool and
/// returned per request), with the proxy's body type.
async fn get_pooled(client: &OriginClient) {
    let req = hyper::Request::builder()
        .uri("http://127.0.0.1:9/")
        .header(hyper::header::HOST, "localhost")
        .body(Empty::new().map_err(|never| match never {}).boxed())
        .expect("request");
    let response = client.request(req).await.expect("response");
    assert!(response.status().is_success(), "{}", response.status());
    black_box(response.into_body().collect().await.expect("body"));
}

/// Allocations per request over `n` requests made by `one`.
fn allocations_per_request<F: FnMut()>(n: u32, mut one: F) -> f64 {
    let region = Region::new(GLOBAL);
    for _ in 0..n {
        one();
    }
    region.change().allocations as f64 / f64::from(n)
}

fn request_path(c: &mut Criterion) {
    let rt = current_thread_runtime();
    let dir = tempfile::tempdir().expect("temp dir");
    let _guard = rt.enter();
    let (edge, cert, config) = edge(dir.path());
    let pooled = client::build(&config.proxy, OriginConnector::Memory(memory_origin()));

    let mut h1 = rt.block_on(async { h1_over(connect(&edge, &cert, b"http/1.1").await).await });
    let mut h2 = rt.block_on(async {
        let tls = connect(&edge, &cert, b"h2").await;
        let (sender, conn) = http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .expect("HTTP/2 handshake");
        tokio::spawn(conn);
        sender
    });
    let mut direct = rt.block_on(async {
        let (client_end, origin_end) = tokio::io::duplex(DUPLEX_BYTES);
        serve_origin(origin_end);
        h1_over(client_end).await
    });

    // Warm up the pools and buffers, then count.
    for _ in 0..1000 {
        rt.block_on(get_h1(&mut h1));
        rt.block_on(get_h2(&mut h2));
        rt.block_on(get_h1(&mut direct));
        rt.block_on(get_pooled(&pooled));
    }
    let n = 10_000;
    let through_h1 = allocations_per_request(n, || rt.block_on(get_h1(&mut h1)));
    let through_h2 = allocations_per_request(n, || rt.block_on(get_h2(&mut h2)));
    let baseline = allocations_per_request(n, || rt.block_on(get_h1(&mut direct)));
    let from_pool = allocations_per_request(n, || rt.block_on(get_pooled(&pooled)));
    println!(
        "allocations per request: HTTP/1.1 through the edge {through_h1:.1}, HTTP/2 through the edge \
         {through_h2:.1}; client straight to the origin {baseline:.1}; the edge's share: \
         HTTP/1.1 {:.1}, HTTP/2 {:.1}",
        through_h1 - baseline,
        through_h2 - baseline
    );
    println!(
        "allocations per request to the origin alone: the pooled origin client {from_pool:.1}, \
         one held connection {baseline:.1}"
    );

    let mut group = c.benchmark_group("request path (in memory)");
    group.bench_function("HTTP/1.1 keep-alive GET through the edge", |b| {
        b.iter(|| rt.block_on(get_h1(&mut h1)));
    });
    group.bench_function("HTTP/2 GET through the edge", |b| {
        b.iter(|| rt.block_on(get_h2(&mut h2)));
    });
    group.bench_function(
        "baseline: HTTP/1.1 GET straight to the origin (one held connection)",
        |b| {
            b.iter(|| rt.block_on(get_h1(&mut direct)));
        },
    );
    group.bench_function("origin alone: the edge's pooled origin client", |b| {
        b.iter(|| rt.block_on(get_pooled(&pooled)));
    });
    group.finish();
}

/// A single-threaded runtime: the client, the edge and the origin take turns on one thread.
fn current_thread_runtime() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

criterion_group!(benches, request_path);
criterion_main!(benches);
