//! Origin failures: unreachable → 502, too slow → 504, one of two origins down → every
//! request still succeeds (skip + retry on another origin).

mod common;

use std::sync::atomic::Ordering;

use common::*;

const ALPN: &[&[u8]] = &[b"h2", b"http/1.1"];

/// A loopback address where nothing listens.
fn dead_origin() -> String {
    format!("http://127.0.0.1:{}", free_port())
}

#[tokio::test(flavor = "multi_thread")]
async fn unreachable_origin_gives_502_and_slow_origin_504() {
    let ca = TestCa::new();
    let slow = Origin::start("slow").await;
    let edge = start_edge(
        &ca,
        &[
            (&["down.example.com"], vec![dead_origin()]),
            (&["slow.example.com"], vec![slow.url()]),
        ],
        "[proxy]\nresponse_timeout = \"1s\"\n",
    );
    let config = client_config(&ca.root_der, ALPN);
    let got = get_once(edge.https_addr(), "down.example.com", "/", config.clone())
        .await
        .unwrap();
    assert_eq!(got.status, 502);
    assert!(got.text().contains("502 Bad Gateway"), "{}", got.text());
    assert_eq!(got.headers["content-type"], "text/html; charset=utf-8");

    let got = get_once(
        edge.https_addr(),
        "slow.example.com",
        "/stall",
        config.clone(),
    )
    .await
    .unwrap();
    assert_eq!(got.status, 504);
    assert!(got.text().contains("504 Gateway Timeout"), "{}", got.text());
    // A response that arrives in time is unaffected.
    let got = get_once(
        edge.https_addr(),
        "slow.example.com",
        "/slow?ms=200",
        config,
    )
    .await
    .unwrap();
    assert_eq!(got.status, 200);
    assert!(
        edge.log().contains("origin error"),
        "origin errors are logged:\n{}",
        edge.log()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn one_origin_down_of_two_loses_no_request() {
    let ca = TestCa::new();
    let up = Origin::start("up").await;
    let edge = start_edge(
        &ca,
        &[(&["pair.example.com"], vec![dead_origin(), up.url()])],
        "",
    );
    let config = client_config(&ca.root_der, ALPN);
    let mut conn = HttpConn::open(edge.https_addr(), "pair.example.com", config.clone())
        .await
        .unwrap();
    for i in 0..40 {
        let got = conn
            .get("pair.example.com", &format!("/r{i}"))
            .await
            .unwrap();
        assert_eq!(got.status, 200, "request {i}: {}", got.text());
        assert_eq!(got.text(), format!("origin up /r{i}"));
    }
    for i in 0..10 {
        let got = get_once(
            edge.https_addr(),
            "pair.example.com",
            "/fresh",
            config.clone(),
        )
        .await
        .unwrap();
        assert_eq!(got.status, 200, "fresh connection {i}");
    }
    assert_eq!(up.hits.load(Ordering::SeqCst), 50);
}

#[tokio::test(flavor = "multi_thread")]
async fn requests_are_spread_round_robin() {
    let ca = TestCa::new();
    let (a, b) = (Origin::start("a").await, Origin::start("b").await);
    let edge = start_edge(&ca, &[(&["rr.example.com"], vec![a.url(), b.url()])], "");
    let mut conn = HttpConn::open(
        edge.https_addr(),
        "rr.example.com",
        client_config(&ca.root_der, ALPN),
    )
    .await
    .unwrap();
    for _ in 0..20 {
        assert_eq!(conn.get("rr.example.com", "/").await.unwrap().status, 200);
    }
    assert_eq!(a.hits.load(Ordering::SeqCst), 10);
    assert_eq!(b.hits.load(Ordering::SeqCst), 10);
}
