//! Limits on what a client controls (handshake time, request head time and size, idle
//! connections, connection count) and the TLS policy (versions, suites, groups, resumption).

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const ALPN_H1: &[&[u8]] = &[b"http/1.1"];
const HOST: &str = "limits.example.com";

/// Reads until EOF or error; returns how long the peer took to close.
async fn time_until_closed<S: tokio::io::AsyncRead + Unpin>(
    stream: &mut S,
    limit: Duration,
) -> Duration {
    let start = Instant::now();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(limit, stream.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => return start.elapsed(),
            Ok(Ok(_)) => {}
            Err(_) => panic!("connection still open after {limit:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn slow_clients_are_cut_off() {
    let ca = TestCa::new();
    let origin = Origin::start("lim").await;
    let edge = start_edge(
        &ca,
        &[(&[HOST], vec![origin.url()])],
        "handshake_timeout = \"1s\"\nheader_timeout = \"1s\"\nidle_timeout = \"2s\"\n",
    );
    // No ClientHello at all.
    let mut tcp = tokio::net::TcpStream::connect(edge.https_addr())
        .await
        .unwrap();
    let took = time_until_closed(&mut tcp, Duration::from_secs(5)).await;
    assert!(
        took >= Duration::from_millis(900),
        "closed too early: {took:?}"
    );

    // A request head that trickles in (slowloris).
    let config = client_config(&ca.root_der, ALPN_H1);
    // Silent after its handshake (the edge builds no HTTP state for it yet): still closed at
    // header_timeout, not before.
    let mut silent = tls_connect(edge.https_addr(), Some(HOST), config.clone())
        .await
        .unwrap();
    let took = time_until_closed(&mut silent, Duration::from_secs(5)).await;
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(4),
        "a client silent after its handshake was closed after {took:?}, not at header_timeout (1 s)"
    );
    // A request sent a while after the handshake is served (HTTP starts when it arrives).
    let mut late = tls_connect(edge.https_addr(), Some(HOST), config.clone())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    late.write_all(b"GET / HTTP/1.1\r\nHost: limits.example.com\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), late.read_to_end(&mut response)).await;
    assert!(
        response.starts_with(b"HTTP/1.1 200"),
        "late request: {:?}",
        String::from_utf8_lossy(&response)
    );

    let mut tls = tls_connect(edge.https_addr(), Some(HOST), config.clone())
        .await
        .unwrap();
    tls.write_all(b"GET / HTTP/1.1\r\nHost: limits.example.com\r\nX-Slow: ")
        .await
        .unwrap();
    time_until_closed(&mut tls, Duration::from_secs(5)).await;

    // An idle HTTP/2 connection after a request.
    let mut conn = HttpConn::open(
        edge.https_addr(),
        HOST,
        client_config(&ca.root_der, &[b"h2"]),
    )
    .await
    .unwrap();
    assert_eq!(conn.get(HOST, "/").await.unwrap().status, 200);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        conn.get(HOST, "/").await.is_err(),
        "idle h2 connection should have been closed"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn oversized_headers_get_431_and_nothing_reaches_the_origin() {
    let ca = TestCa::new();
    let origin = Origin::start("lim").await;
    let edge = start_edge(
        &ca,
        &[(&[HOST], vec![origin.url()])],
        "max_header_bytes = 16384\n",
    );
    // Just under the limit is served.
    let (ok, out) = curl(
        HOST,
        edge.https,
        "/",
        &edge.root_path(),
        &[
            "--http1.1",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-H",
            &format!("X-Big: {}", "a".repeat(12_000)),
        ],
    );
    assert!(ok, "{out}");
    assert_eq!(out, "200");
    // Over it: 431. The edge stops reading at the limit, so a client still sending may see
    // the connection reset before it reads the 431: read it with a client that sends its
    // head in one write and then reads.
    let config = client_config(&ca.root_der, ALPN_H1);
    let mut tls = tls_connect(edge.https_addr(), Some(HOST), config)
        .await
        .unwrap();
    let head = format!(
        "GET / HTTP/1.1\r\nHost: {HOST}\r\nX-Big: {}\r\n\r\n",
        "a".repeat(17_000)
    );
    let _ = tls.write_all(head.as_bytes()).await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    eprintln!("oversized head answered: {:?}", answer.lines().next());
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 431"),
        "{answer}"
    );
    let (_, out) = curl(
        HOST,
        edge.https,
        "/",
        &edge.root_path(),
        &[
            "--http2",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-H",
            &format!("X-Big: {}", "a".repeat(40_000)),
        ],
    );
    assert_ne!(out, "200", "h2 oversized header list was accepted: {out}");
    assert_eq!(
        origin.hits.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "only the request under the limit reaches the origin"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn connection_limit_holds_new_clients_until_a_slot_frees() {
    let ca = TestCa::new();
    let origin = Origin::start("lim").await;
    let edge = start_edge(
        &ca,
        &[(&[HOST], vec![origin.url()])],
        "max_connections = 2\n",
    );
    let config = client_config(&ca.root_der, ALPN_H1);
    let first = HttpConn::open(edge.https_addr(), HOST, config.clone())
        .await
        .unwrap();
    let _second = HttpConn::open(edge.https_addr(), HOST, config.clone())
        .await
        .unwrap();
    let third = tokio::time::timeout(
        Duration::from_millis(700),
        HttpConn::open(edge.https_addr(), HOST, config.clone()),
    )
    .await;
    assert!(
        third.is_err(),
        "a third connection was served beyond max_connections = 2"
    );
    drop(first);
    let mut fourth = tokio::time::timeout(
        Duration::from_secs(5),
        HttpConn::open(edge.https_addr(), HOST, config),
    )
    .await
    .unwrap_or_else(|_| panic!("a slot frees when a client leaves:\n{}", edge.log()))
    .unwrap();
    assert_eq!(fourth.get(HOST, "/").await.unwrap().status, 200);
}

fn openssl(port: u16, args: &[&str]) -> String {
    let out = Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &format!("127.0.0.1:{port}"),
            "-servername",
            HOST,
        ])
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

/// A client whose first key share is the post-quantum hybrid.
fn pq_client_config(ca: &TestCa) -> std::sync::Arc<rustls::ClientConfig> {
    use rustls::crypto::aws_lc_rs::{default_provider, kx_group};
    let provider = rustls::crypto::CryptoProvider {
        kx_groups: vec![kx_group::X25519MLKEM768, kx_group::X25519],
        ..default_provider()
    };
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.root_der.clone()).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(provider.into())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    std::sync::Arc::new(config)
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_policy_and_resumption() {
    let ca = TestCa::new();
    let origin = Origin::start("tls").await;
    let edge = start_edge(
        &ca,
        &[(&[HOST], vec![origin.url()])],
        "[log]\nformat = \"json\"\n",
    );

    // Versions and suites: the server's order wins, SHA-256 suites first, even though
    // OpenSSL lists AES-256-GCM-SHA384 first.
    let tls13 = openssl(edge.https, &["-tls1_3"]);
    assert!(
        tls13.contains("TLSv1.3, Cipher is TLS_AES_128_GCM_SHA256"),
        "{tls13}"
    );
    let tls12 = openssl(edge.https, &["-tls1_2"]);
    assert!(
        tls12.contains("Cipher is ECDHE-ECDSA-AES128-GCM-SHA256"),
        "{tls12}"
    );
    let only_384 = openssl(
        edge.https,
        &["-tls1_3", "-ciphersuites", "TLS_AES_256_GCM_SHA384"],
    );
    assert!(only_384.contains("TLS_AES_256_GCM_SHA384"), "{only_384}");
    for refused in [
        &["-tls1_1"][..],
        &["-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-SHA"],
        &["-tls1_2", "-cipher", "AES128-GCM-SHA256"],
    ] {
        let out = openssl(edge.https, refused);
        assert!(
            !out.contains("BEGIN CERTIFICATE"),
            "{refused:?} was accepted:\n{out}"
        );
    }
    // ALPN.
    assert!(openssl(edge.https, &["-alpn", "h2,http/1.1"]).contains("ALPN protocol: h2"));

    // Post-quantum hybrid key exchange with a client that offers it.
    let tls = tls_connect(edge.https_addr(), Some(HOST), pq_client_config(&ca))
        .await
        .unwrap();
    let group = tls
        .get_ref()
        .1
        .negotiated_key_exchange_group()
        .map(|g| g.name());
    assert_eq!(group, Some(rustls::NamedGroup::X25519MLKEM768));
    drop(tls);

    // TLS 1.3 resumption with tickets: the second connection of a client resumes.
    let config = client_config(&ca.root_der, ALPN_H1);
    for _ in 0..2 {
        let mut conn = HttpConn::open(edge.https_addr(), HOST, config.clone())
            .await
            .unwrap();
        assert_eq!(conn.get(HOST, "/").await.unwrap().status, 200);
    }
    // TLS 1.2 resumption through the session cache.
    let sess = edge.dir.path().join("tls12.sess");
    let first = openssl(
        edge.https,
        &["-tls1_2", "-sess_out", sess.to_str().unwrap()],
    );
    assert!(first.contains("New, TLSv1.2"), "{first}");
    let again = openssl(edge.https, &["-tls1_2", "-sess_in", sess.to_str().unwrap()]);
    assert!(
        again.contains("Reused, TLSv1.2"),
        "TLS 1.2 session not resumed:\n{again}"
    );

    // The access log is JSON, one object per request, with the resumption flag.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let requests: Vec<serde_json::Value> = edge
        .log()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["message"] == "request")
        .collect();
    assert_eq!(requests.len(), 2, "{}", edge.log());
    assert_eq!(requests[0]["tls_resumed"], false);
    assert_eq!(requests[1]["tls_resumed"], true);
    assert_eq!(requests[1]["status"], 200);
    assert_eq!(requests[1]["host"], HOST);
    assert_eq!(requests[1]["tls_version"], "TLSv1.3");
}
