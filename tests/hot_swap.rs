//! Certificate hot swap: replacing a site's PEM files on disk puts the new certificate in
//! service within 2 s while 16 clients loop requests with zero failures; a corrupt
//! replacement is refused with a logged reason and the old certificate keeps serving.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::*;

const ALPN: &[&[u8]] = &[b"h2", b"http/1.1"];
const HOST: &str = "swap.example.com";
const CLIENTS: usize = 16;

fn enddate_served(port: u16) -> String {
    served_cert_fields(port, HOST)
        .lines()
        .find(|l| l.starts_with("notAfter="))
        .unwrap_or("")
        .to_owned()
}

/// Polls until openssl sees `want` as notAfter; returns how long it took.
fn wait_for_enddate(port: u16, want: &str, limit: Duration) -> Duration {
    let start = Instant::now();
    loop {
        let seen = enddate_served(port);
        if seen == want {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < limit,
            "after {limit:?} openssl still sees {seen:?}, want {want:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replacing_pem_files_swaps_the_certificate_without_failures() {
    let ca = TestCa::new();
    let origin = Origin::start("swap").await;
    let edge = start_edge(&ca, &[(&[HOST], vec![origin.url()])], "");
    let cert_path = edge.dir.path().join("site0.pem");
    let key_path = edge.dir.path().join("site0.key");
    let old_end = pem_enddate(&std::fs::read_to_string(&cert_path).unwrap());
    assert_eq!(enddate_served(edge.https), old_end);

    // 16 clients, each a new TLS connection every 4 requests, until told to stop.
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let config = client_config(&ca.root_der, ALPN);
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        let (stop, ok, failed, config, addr) = (
            stop.clone(),
            ok.clone(),
            failed.clone(),
            config.clone(),
            edge.https_addr(),
        );
        clients.push(tokio::spawn(async move {
            let mut errors = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let result = async {
                    let mut conn = HttpConn::open(addr, HOST, config.clone()).await?;
                    for _ in 0..4 {
                        let got = conn.get(HOST, "/loop").await?;
                        if got.status != 200 {
                            return Err(format!("status {}", got.status).into());
                        }
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok::<(), BoxError>(())
                }
                .await;
                if let Err(e) = result {
                    failed.fetch_add(1, Ordering::Relaxed);
                    errors.push(e.to_string());
                }
            }
            errors
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Replace both files by atomic rename, key first (as certbot's symlink swap may).
    let leaf = ca.issue(&[HOST], 60);
    let new_end = pem_enddate(&leaf.chain_pem);
    assert_ne!(new_end, old_end);
    let port = edge.https;
    let took = tokio::task::spawn_blocking(move || {
        replace_file(&key_path, leaf.key_pem.as_bytes());
        replace_file(&cert_path, leaf.chain_pem.as_bytes());
        wait_for_enddate(port, &new_end, Duration::from_secs(2))
    })
    .await
    .unwrap();
    eprintln!("new certificate served {took:?} after the files were replaced");
    tokio::time::sleep(Duration::from_millis(500)).await;

    stop.store(true, Ordering::Relaxed);
    let mut errors = Vec::new();
    for c in clients {
        errors.extend(c.await.unwrap());
    }
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    assert_eq!(failed, 0, "failed requests across the swap: {errors:?}");
    assert!(ok > 100, "clients made only {ok} requests");
    assert!(
        edge.log().contains("new certificate in service"),
        "{}",
        edge.log()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_corrupt_or_mismatched_replacement_is_refused_and_logged() {
    let ca = TestCa::new();
    let origin = Origin::start("keep").await;
    let mut edge = start_edge(&ca, &[(&[HOST], vec![origin.url()])], "");
    let cert_path = edge.dir.path().join("site0.pem");
    let key_path = edge.dir.path().join("site0.key");
    let old_end = pem_enddate(&std::fs::read_to_string(&cert_path).unwrap());

    // Truncated certificate.
    let good = std::fs::read_to_string(&cert_path).unwrap();
    replace_file(&cert_path, &good.as_bytes()[..good.len() / 2]);
    edge.wait_log("refused new certificate files", Duration::from_secs(5));
    assert!(
        edge.log().contains("site0.pem"),
        "the log names the file:\n{}",
        edge.log()
    );
    assert_eq!(enddate_served(edge.https), old_end);
    let got = get_once(
        edge.https_addr(),
        HOST,
        "/",
        client_config(&ca.root_der, ALPN),
    )
    .await
    .unwrap();
    assert_eq!(got.status, 200);

    // A valid certificate whose key is another one's.
    let a = ca.issue(&[HOST], 90);
    let b = ca.issue(&[HOST], 90);
    replace_file(&cert_path, a.chain_pem.as_bytes());
    replace_file(&key_path, b.key_pem.as_bytes());
    let deadline = Instant::now() + Duration::from_secs(5);
    while edge.log().matches("refused new certificate files").count() < 2 {
        assert!(
            Instant::now() < deadline,
            "mismatch not reported:\n{}",
            edge.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        edge.log()
            .contains("private key does not match the certificate"),
        "{}",
        edge.log()
    );
    assert_eq!(enddate_served(edge.https), old_end);

    // A certificate for other names.
    let other = ca.issue(&["other.example.com"], 90);
    replace_file(&key_path, other.key_pem.as_bytes());
    replace_file(&cert_path, other.chain_pem.as_bytes());
    let deadline = Instant::now() + Duration::from_secs(5);
    while !edge.log().contains("does not cover `swap.example.com`") {
        assert!(
            Instant::now() < deadline,
            "name mismatch not reported:\n{}",
            edge.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(enddate_served(edge.https), old_end);

    // Fixing the files brings the new certificate in.
    replace_file(&key_path, a.key_pem.as_bytes());
    replace_file(&cert_path, a.chain_pem.as_bytes());
    wait_for_enddate(
        edge.https,
        &pem_enddate(&a.chain_pem),
        Duration::from_secs(3),
    );
}

/// The serial of the certificate an edge at `port` serves for `HOST`, as the API shows it.
fn api_serial(edge: &EdgeProcess) -> String {
    let (status, body) = edge.api("GET", &format!("/api/v1/certificates/{HOST}"), None);
    assert_eq!(status, 200, "{body}");
    let cert: serde_json::Value = serde_json::from_str(&body).unwrap();
    cert["serial"].as_str().unwrap().to_owned()
}

#[test]
fn every_swap_is_confirmed_by_a_handshake_and_a_listener_serving_another_certificate_is_reported() {
    let ca = TestCa::new();
    let (_rt, origin) = origin_on_own_runtime("swap");
    // Confirmed: a swap through the files is checked against the edge's own listener.
    let edge = start_edge(&ca, &[(&[HOST], vec![origin.url()])], "");
    let leaf = ca.issue(&[HOST], 60);
    replace_file(&edge.dir.path().join("site0.key"), leaf.key_pem.as_bytes());
    replace_file(
        &edge.dir.path().join("site0.pem"),
        leaf.chain_pem.as_bytes(),
    );
    let mut edge = edge;
    edge.wait_log("self-check passed", Duration::from_secs(10));
    let (_, metrics) = edge.api("GET", "/metrics", None);
    assert!(
        metrics.contains("onehttps_self_checks_total 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("onehttps_self_check_failures_total 0"),
        "{metrics}"
    );

    // Reported: clients reach a stale edge (another process with an older certificate for
    // the same name) instead of this one.
    let stale = start_edge(&ca, &[(&[HOST], vec![origin.url()])], "");
    let mut checked = start_edge(
        &ca,
        &[(&[HOST], vec![origin.url()])],
        &format!("self_check_address = \"127.0.0.1:{}\"\n", stale.https),
    );
    let leaf = ca.issue(&[HOST], 60);
    replace_file(
        &checked.dir.path().join("site0.key"),
        leaf.key_pem.as_bytes(),
    );
    replace_file(
        &checked.dir.path().join("site0.pem"),
        leaf.chain_pem.as_bytes(),
    );
    checked.wait_log("self-check failed", Duration::from_secs(10));
    let want = api_serial(&checked);
    let got = api_serial(&stale);
    assert_ne!(want, got);
    let (_, events) = checked.api("GET", "/api/v1/events", None);
    let events: serde_json::Value = serde_json::from_str(&events).unwrap();
    let failed = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "certificate.self_check_failed")
        .unwrap_or_else(|| panic!("{events}"));
    let message = failed["message"].as_str().unwrap();
    assert!(
        message.contains(&format!("serves serial {got}")) && message.contains(&want),
        "{message}"
    );
    let (_, metrics) = checked.api("GET", "/metrics", None);
    assert!(
        !metrics.contains("onehttps_self_check_failures_total 0"),
        "{metrics}"
    );
    // The swap is made again and checked again (the first retry is after 1 s).
    let deadline = Instant::now() + Duration::from_secs(10);
    while checked.count_log("self-check failed") < 2 {
        assert!(Instant::now() < deadline, "{}", checked.log());
        std::thread::sleep(Duration::from_millis(100));
    }
}
