//! The request path through the real binary: methods, streamed bodies both ways, forwarded
//! and hop-by-hop headers, HTTP/1.1 and HTTP/2, WebSocket tunnelling.

mod common;

use bytes::Bytes;
use common::*;
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;

const H2: &[&[u8]] = &[b"h2", b"http/1.1"];
const H1: &[&[u8]] = &[b"http/1.1"];

#[tokio::test(flavor = "multi_thread")]
async fn get_and_post_over_h1_and_h2_with_forwarded_headers() {
    let ca = TestCa::new();
    let origin = Origin::start("o1").await;
    let edge = start_edge(&ca, &[(&["shop.example.com"], vec![origin.url()])], "");

    for alpn in [H2, H1] {
        let mut conn = HttpConn::open(
            edge.https_addr(),
            "shop.example.com",
            client_config(&ca.root_der, alpn),
        )
        .await
        .unwrap();
        let h2 = conn.is_h2();
        assert_eq!(h2, alpn == H2);
        let mut req = request(h2, "GET", "shop.example.com", "/echo?q=1&r=two", empty());
        let headers = req.headers_mut();
        // A client's claims about its address never reach the origin.
        headers.insert("x-forwarded-for", "203.0.113.7".parse().unwrap());
        headers.insert("forwarded", "for=203.0.113.7".parse().unwrap());
        headers.insert("x-real-ip", "203.0.113.7".parse().unwrap());
        headers.append("cookie", "a=1".parse().unwrap());
        headers.append("cookie", "b=2".parse().unwrap());
        if !h2 {
            headers.insert("connection", "keep-alive, x-hop".parse().unwrap());
            headers.insert("x-hop", "secret".parse().unwrap());
            headers.insert("keep-alive", "timeout=9".parse().unwrap());
        }
        headers.insert("x-end-to-end", "kept".parse().unwrap());
        let got = read_whole(conn.send(req).await.unwrap()).await.unwrap();
        assert_eq!(got.status, 200);
        let seen = got.text();
        assert!(seen.contains("target /echo?q=1&r=two\n"), "{seen}");
        assert!(seen.contains("header host: shop.example.com\n"), "{seen}");
        assert!(
            seen.contains("header x-forwarded-for: 127.0.0.1\n"),
            "{seen}"
        );
        assert!(
            !seen.contains("203.0.113.7"),
            "a forged address reached the origin: {seen}"
        );
        if h2 {
            // RFC 9113 §8.2.3: HTTP/2 cookie fields become one HTTP/1.1 field.
            assert!(seen.contains("header cookie: a=1; b=2\n"), "{seen}");
        }
        assert!(seen.contains("header x-forwarded-proto: https\n"), "{seen}");
        assert!(
            seen.contains("header x-forwarded-host: shop.example.com\n"),
            "{seen}"
        );
        assert!(seen.contains("header x-end-to-end: kept\n"), "{seen}");
        assert!(
            !seen.contains("x-hop"),
            "hop-by-hop header reached the origin: {seen}"
        );
        assert!(!seen.contains("keep-alive: timeout=9"), "{seen}");
        // The origin's hop-by-hop response headers stay at the edge.
        assert!(got.headers.get("x-origin-private").is_none());
        assert!(got.headers.get("keep-alive").is_none());
        assert_eq!(got.headers["strict-transport-security"], "max-age=31536000");

        let post = request(
            h2,
            "POST",
            "shop.example.com",
            "/upload",
            full_body(b"hello world"),
        );
        let got = read_whole(conn.send(post).await.unwrap()).await.unwrap();
        assert_eq!(
            got.text(),
            format!(
                "bytes 11 sum {}",
                b"hello world".iter().map(|&b| u64::from(b)).sum::<u64>()
            )
        );
    }
    let log = edge.log();
    assert!(
        log.contains("method=GET path=/echo") && log.contains("status=200"),
        "no access log line:\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_trusted_proxy_keeps_its_forwarding_headers() {
    let ca = TestCa::new();
    let origin = Origin::start("o1").await;
    let edge = start_edge(
        &ca,
        &[(&["shop.example.com"], vec![origin.url()])],
        "[proxy]\ntrusted_proxies = [\"127.0.0.0/8\"]\n",
    );
    let mut conn = HttpConn::open(
        edge.https_addr(),
        "shop.example.com",
        client_config(&ca.root_der, H1),
    )
    .await
    .unwrap();
    let mut req = request(false, "GET", "shop.example.com", "/echo", empty());
    req.headers_mut()
        .insert("x-forwarded-for", "203.0.113.7".parse().unwrap());
    req.headers_mut()
        .insert("x-real-ip", "203.0.113.7".parse().unwrap());
    let seen = read_whole(conn.send(req).await.unwrap())
        .await
        .unwrap()
        .text();
    assert!(
        seen.contains("header x-forwarded-for: 203.0.113.7, 127.0.0.1\n"),
        "{seen}"
    );
    assert!(seen.contains("header x-real-ip: 203.0.113.7\n"), "{seen}");
}

fn full_body(data: &'static [u8]) -> http_body_util::combinators::BoxBody<Bytes, BoxError> {
    http_body_util::Full::new(Bytes::from_static(data))
        .map_err(|e| match e {})
        .boxed()
}

/// Bytes streamed in chunks, never held whole.
fn streamed(total: u64) -> http_body_util::combinators::BoxBody<Bytes, BoxError> {
    let chunk = Bytes::from(pattern(256 * 1024));
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
    BodyExt::boxed(StreamBody::new(stream))
}

fn expected_sum(total: u64) -> u64 {
    let chunk = pattern(256 * 1024);
    let full: u64 = chunk.iter().map(|&b| u64::from(b)).sum();
    let whole = total / chunk.len() as u64;
    let rest: u64 = chunk[..(total % chunk.len() as u64) as usize]
        .iter()
        .map(|&b| u64::from(b))
        .sum();
    whole * full + rest
}

fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn large_bodies_stream_both_ways_without_buffering() {
    const SIZE: u64 = 512 * 1024 * 1024;
    let ca = TestCa::new();
    let origin = Origin::start("big").await;
    let edge = start_edge(&ca, &[(&["big.example.com"], vec![origin.url()])], "");
    for alpn in [H1, H2] {
        let mut conn = HttpConn::open(
            edge.https_addr(),
            "big.example.com",
            client_config(&ca.root_der, alpn),
        )
        .await
        .unwrap();
        let h2 = conn.is_h2();
        let up = request(h2, "POST", "big.example.com", "/upload", streamed(SIZE));
        let got = read_whole(conn.send(up).await.unwrap()).await.unwrap();
        assert_eq!(
            got.text(),
            format!("bytes {SIZE} sum {}", expected_sum(SIZE)),
            "h2={h2}"
        );

        let down = request(
            h2,
            "GET",
            "big.example.com",
            &format!("/download?bytes={SIZE}"),
            empty(),
        );
        let mut body = conn.send(down).await.unwrap().into_body();
        let mut received = 0u64;
        while let Some(frame) = body.frame().await {
            if let Some(d) = frame.unwrap().data_ref() {
                received += d.len() as u64;
            }
        }
        assert_eq!(received, SIZE, "h2={h2}");
    }
    // 2 GiB went through; the edge's peak memory stays far below one body.
    let peak = peak_rss_kib(edge.pid());
    assert!(
        peak < 100 * 1024,
        "edge peak RSS {peak} KiB: bodies are being buffered"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn websocket_echo_through_the_edge() {
    let ca = TestCa::new();
    let ws = start_ws_origin().await;
    let edge = start_edge(
        &ca,
        &[(&["ws.example.com"], vec![format!("http://{ws}")])],
        "",
    );
    let tls = tls_connect(
        edge.https_addr(),
        Some("ws.example.com"),
        client_config(&ca.root_der, H1),
    )
    .await
    .unwrap();
    let (mut socket, response) = tokio_tungstenite::client_async("wss://ws.example.com/chat", tls)
        .await
        .unwrap();
    assert_eq!(response.status(), 101);
    for i in 0..20 {
        let msg = format!("message {i}");
        socket
            .send(tokio_tungstenite::tungstenite::Message::text(msg.clone()))
            .await
            .unwrap();
        let echoed = socket.next().await.unwrap().unwrap();
        assert_eq!(echoed.into_text().unwrap().as_str(), msg);
    }
    socket.close(None).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn curl_gets_a_page_over_h2_and_h1() {
    let ca = TestCa::new();
    let origin = Origin::start("curl").await;
    let edge = start_edge(&ca, &[(&["www.example.com"], vec![origin.url()])], "");
    for (flag, want) in [("--http2", "HTTP/2"), ("--http1.1", "HTTP/1.1")] {
        let (ok, out) = curl(
            "www.example.com",
            edge.https,
            "/hello",
            &edge.root_path(),
            &[flag, "-i"],
        );
        assert!(ok, "{out}");
        assert!(out.starts_with(want), "{out}");
        assert!(out.contains("origin curl /hello"), "{out}");
    }
}
