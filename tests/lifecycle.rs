//! Process lifecycle: SIGHUP reloads sites without dropping in-flight requests (and refuses
//! a broken config), SIGTERM drains in-flight requests before exiting 0.

mod common;

use std::time::Duration;

use common::*;

const ALPN: &[&[u8]] = &[b"h2", b"http/1.1"];

#[tokio::test(flavor = "multi_thread")]
async fn sighup_adds_and_removes_sites_without_dropping_requests() {
    let ca = TestCa::new();
    let origin = Origin::start("life").await;
    let dir = tempfile::tempdir().unwrap();
    let ports = EdgePorts::new();
    let files: Vec<_> = ["keep", "gone", "new"]
        .iter()
        .map(|s| ca.write_leaf(dir.path(), s, &[&format!("{s}.example.com")], 30))
        .collect();
    let server = ports.server_table(&dir.path().join("data"));
    let site = |i: usize, name: &str| {
        site_table(
            &[&format!("{name}.example.com")],
            &[origin.url()],
            Some(&files[i]),
        )
    };
    let before = format!("{server}{}{}", site(0, "keep"), site(1, "gone"));
    let after = format!("{server}{}{}", site(0, "keep"), site(2, "new"));
    let mut edge = EdgeProcess::start(dir, &ports, &before);
    let config = client_config(&ca.root_der, ALPN);
    let addr = edge.https_addr();

    // In-flight requests on the site about to be removed and on the one that stays.
    let slow_gone = tokio::spawn(get_once(
        addr,
        "gone.example.com",
        "/slow?ms=1500",
        config.clone(),
    ));
    let slow_keep = tokio::spawn(get_once(
        addr,
        "keep.example.com",
        "/slow?ms=1500",
        config.clone(),
    ));
    let mut keep_conn = HttpConn::open(addr, "keep.example.com", config.clone())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;

    edge.rewrite_config(&after);
    edge.signal("HUP");
    edge.wait_log("configuration reloaded", Duration::from_secs(5));
    assert!(
        edge.log()
            .contains("1 added, 0 changed, 1 removed, 1 unchanged"),
        "{}",
        edge.log()
    );

    let got = slow_gone.await.unwrap().unwrap();
    assert_eq!(
        (got.status.as_u16(), got.text()),
        (200, "slow done by life".to_owned())
    );
    let got = slow_keep.await.unwrap().unwrap();
    assert_eq!(got.status, 200);
    // A connection opened before the reload keeps working.
    assert_eq!(
        keep_conn.get("keep.example.com", "/").await.unwrap().status,
        200
    );

    assert_eq!(
        get_once(addr, "new.example.com", "/", config.clone())
            .await
            .unwrap()
            .status,
        200
    );
    let err = tls_connect(addr, Some("gone.example.com"), config.clone())
        .await
        .expect_err("removed site");
    assert!(err.to_string().contains("UnrecognisedName"), "{err}");

    // A change to a section read only at start refuses the whole reload, naming it: the
    // site removed beside it stays served until the change is undone (or the edge restarts).
    let without_keep = format!("{server}{}", site(2, "new"));
    edge.rewrite_config(&format!("{without_keep}\n[acme]\nretry_min = \"2s\"\n"));
    edge.signal("HUP");
    edge.wait_log("restart onehttps to apply them", Duration::from_secs(5));
    let line = edge
        .log()
        .lines()
        .find(|l| l.contains("restart onehttps to apply them"))
        .unwrap_or_default()
        .to_owned();
    assert!(
        line.contains("[acme]") && line.contains("reload refused"),
        "{line}"
    );
    assert!(
        !line.contains("[server]"),
        "only what changed is named: {line}"
    );
    assert_eq!(
        get_once(addr, "keep.example.com", "/", config.clone())
            .await
            .unwrap()
            .status,
        200,
        "nothing of a refused reload is applied"
    );

    // A broken config is refused and changes nothing.
    edge.rewrite_config(&format!("{after}\n[server]\nbogus = 1\n"));
    edge.signal("HUP");
    edge.wait_log("configuration reload refused", Duration::from_secs(5));
    assert_eq!(
        get_once(addr, "new.example.com", "/", config)
            .await
            .unwrap()
            .status,
        200
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_lets_in_flight_requests_finish() {
    let ca = TestCa::new();
    let origin = Origin::start("drain").await;
    let mut edge = start_edge(&ca, &[(&["drain.example.com"], vec![origin.url()])], "");
    let config = client_config(&ca.root_der, ALPN);
    let addr = edge.https_addr();
    let slow = tokio::spawn(get_once(
        addr,
        "drain.example.com",
        "/slow?ms=1500",
        config.clone(),
    ));
    tokio::time::sleep(Duration::from_millis(300)).await;
    edge.signal("TERM");
    edge.wait_log("shutting down", Duration::from_secs(5));
    tokio::time::sleep(Duration::from_millis(200)).await;
    // No new connections while draining.
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "listener still accepting"
    );
    let got = slow.await.unwrap().unwrap();
    assert_eq!(
        (got.status.as_u16(), got.text()),
        (200, "slow done by drain".to_owned())
    );
    let code = tokio::task::spawn_blocking(move || {
        let code = edge.wait_exit(Duration::from_secs(10));
        (code, edge.log())
    })
    .await
    .unwrap();
    assert_eq!(code.0, Some(0), "{}", code.1);
    assert!(code.1.contains("stopped"));
}
