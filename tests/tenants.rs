//! One tenant cannot hurt another: a registration cannot take a name another site serves,
//! an unverified site receives no traffic, tenants' origins cannot point the edge at its own
//! network (checked again at connect time), and the config cannot later take a registered
//! name. Real binary, real DNS (pebble-challtestsrv) where a site must verify.

mod common;

use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::pebble::{Pebble, PebbleOptions};
use common::*;

/// `[onboarding]` with DNS that never answers: registered sites stay `pending_dns`.
const ONBOARDING_NO_DNS: &str = "\n[onboarding]\ncname_zone = \"edge.test\"\nnameservers = [\"127.0.0.1:9\"]\nallow_private_origins = true\n";

/// `onehttps check --config <path>`.
fn check(path: &std::path::Path) -> std::process::Output {
    Command::new(binary())
        .arg("check")
        .arg("--config")
        .arg(path)
        .output()
        .unwrap()
}

fn site_body(host: &str, origin: &str) -> String {
    serde_json::json!({ "hosts": [host], "origins": [origin] }).to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_registration_cannot_take_a_name_another_site_serves() {
    let ca = TestCa::new();
    let owner = Origin::start("owner").await;
    let tenant = Origin::start("tenant").await;
    let mut edge = start_edge(
        &ca,
        &[(&["*.example.com"], vec![owner.url()])],
        ONBOARDING_NO_DNS,
    );

    // Covered by the configured wildcard: refused, naming the owner.
    let (code, body) = edge.api(
        "POST",
        "/api/v1/sites",
        Some(&site_body("admin.example.com", &tenant.url())),
    );
    assert_eq!(code, 409, "{body}");
    assert!(body.contains("*.example.com"), "{body}");
    // Inside the edge's own CNAME zone: refused.
    let (code, body) = edge.api(
        "POST",
        "/api/v1/sites",
        Some(&site_body("abc.edge.test", &tenant.url())),
    );
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("own zone"), "{body}");

    // The wildcard site still answers for the name, over HTTPS and on port 80.
    let got = get_once(
        edge.https_addr(),
        "admin.example.com",
        "/",
        client_config(&ca.root_der, &[b"http/1.1"]),
    )
    .await
    .unwrap();
    assert!(got.text().contains("origin owner"), "{}", got.text());
    let plain = edge.http_get("admin.example.com", "/");
    assert!(plain.contains("308"), "{plain}");

    // A new name is registered, but until its DNS points here it is not served at all.
    let (code, body) = edge.api(
        "POST",
        "/api/v1/sites",
        Some(&site_body("fresh.example.org", &tenant.url())),
    );
    assert_eq!(code, 201, "{body}");
    let (code, body) = edge.api(
        "POST",
        "/api/v1/sites",
        Some(&site_body("fresh.example.org", &tenant.url())),
    );
    assert_eq!(code, 409, "registered twice: {body}");
    let plain = edge.http_get("fresh.example.org", "/");
    assert!(plain.starts_with("HTTP/1.1 404"), "{plain}");
    let tls = get_once(
        edge.https_addr(),
        "fresh.example.org",
        "/",
        client_config(&ca.root_der, &[b"http/1.1"]),
    )
    .await;
    assert!(tls.is_err(), "an unverified site was served over HTTPS");
    assert_eq!(tenant.hits.load(Ordering::SeqCst), 0);

    // A [[site]] added later for the registered name: the reload is refused and says why…
    let mut config = std::fs::read_to_string(&edge.config_path).unwrap();
    let files = ca.write_leaf(edge.dir.path(), "fresh", &["fresh.example.org"], 30);
    config.push_str(&site_table(
        &["fresh.example.org"],
        &[owner.url()],
        Some(&files),
    ));
    edge.rewrite_config(&config);
    edge.signal("HUP");
    edge.wait_log("registered through the admin API", Duration::from_secs(10));
    assert!(edge.log().contains("reload refused"), "{}", edge.log());
    assert!(
        edge.http_get("fresh.example.org", "/")
            .starts_with("HTTP/1.1 404")
    );

    // …and a start with that config is a config error (exit 2) naming the site.
    edge.stop();
    let out = Command::new(binary())
        .args(["run", "--config"])
        .arg(&edge.config_path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("fresh.example.org"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread")]
async fn tenant_origins_cannot_reach_the_edges_own_network() {
    let origin = Origin::start("internal").await;
    let ports = EdgePorts::new();
    let pebble = Pebble::start(&ports, PebbleOptions::default());
    let dir = tempfile::tempdir().unwrap();
    let mut config = ports.server_table(&dir.path().join("data"));
    config.push_str(&pebble.onboarding_table_with(""));
    let edge = EdgeProcess::start(dir, &ports, &config);

    let refused = [
        format!("http://127.0.0.1:{}", origin.addr.port()),
        "http://169.254.169.254".to_owned(),
        "http://0.0.0.0:80".to_owned(),
        "http://10.1.2.3:8080".to_owned(),
        "http://[::1]:80".to_owned(),
        "http://localhost:8080".to_owned(),
        format!("http://127.0.0.1:{}", ports.admin),
        "http://origin.example.com:99999".to_owned(),
        "http://origin.example.com/#fragment".to_owned(),
    ];
    for bad in &refused {
        let (code, body) = edge.api(
            "POST",
            "/api/v1/sites",
            Some(&site_body("shop.example.com", bad)),
        );
        assert_eq!(code, 400, "{bad} was accepted: {body}");
        assert!(body.contains("bad_origin"), "{body}");
    }
    let (_, list) = edge.api("GET", "/api/v1/sites", None);
    assert!(!list.contains("shop.example.com"), "{list}");

    // A name that only resolves to loopback when connected (here `127.1`, which the
    // system resolver turns into 127.0.0.1, as a rebinding DNS name would) is caught when
    // the edge connects: the origin never sees a byte.
    let sneaky = format!("http://127.1:{}", origin.addr.port());
    let (code, body) = edge.api(
        "POST",
        "/api/v1/sites",
        Some(&site_body("shop.example.com", &sneaky)),
    );
    assert_eq!(code, 201, "{body}");
    let site: serde_json::Value = serde_json::from_str(&body).unwrap();
    pebble.set_cname("shop.example.com", site["cname_target"].as_str().unwrap());
    let deadline = Instant::now() + Duration::from_secs(30);
    let answer = loop {
        let answer = edge.http_get("shop.example.com", "/");
        if !answer.starts_with("HTTP/1.1 404") || Instant::now() > deadline {
            break answer;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(
        answer.starts_with("HTTP/1.1 502"),
        "{answer}\n{}",
        edge.log()
    );
    assert_eq!(origin.hits.load(Ordering::SeqCst), 0);
    assert!(
        edge.log().contains("refused for tenant origins"),
        "{}",
        edge.log()
    );

    // The webhook likewise: a private address is a config error unless allowed.
    let check_dir = tempfile::tempdir().unwrap();
    let path = check_dir.path().join("webhook.toml");
    std::fs::write(
        &path,
        "[events]\nwebhook = \"http://169.254.169.254/hook\"\n",
    )
    .unwrap();
    let out = check(&path);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("allow_private_origins"), "{stderr}");
    std::fs::write(
        &path,
        "[events]\nwebhook = \"http://169.254.169.254/hook\"\n[onboarding]\nallow_private_origins = true\n",
    )
    .unwrap();
    let out = check(&path);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
