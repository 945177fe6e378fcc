//! CNAME onboarding end to end, with Pebble as the CA and pebble-challtestsrv as the DNS both
//! Pebble and the edge use: `onehttps site add` → CNAME set → active over HTTPS; CNAMEs to
//! the wrong target never verify; a removed CNAME makes an active site `dns_moved`; apex names
//! verify with A + TXT; malformed API requests are refused and store nothing.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::pebble::{Pebble, PebbleOptions};
use common::{EdgePorts, EdgeProcess, Origin, curl};

struct World {
    _rt: tokio::runtime::Runtime,
    origin: Origin,
    pebble: Pebble,
    edge: EdgeProcess,
    admin: u16,
}

fn world() -> World {
    world_with("")
}

fn world_with(extra: &str) -> World {
    let (rt, origin) = common::origin_on_own_runtime("shop-origin");
    let ports = EdgePorts::new();
    let pebble = Pebble::start(&ports, PebbleOptions::default());
    let edge = pebble.start_onboarding_edge(&ports, extra);
    World {
        _rt: rt,
        origin,
        pebble,
        edge,
        admin: ports.admin,
    }
}

impl World {
    /// `onehttps <args> --config <edge's config>`: (exit code, stdout, stderr).
    fn cli(&self, args: &[&str]) -> (i32, String, String) {
        let out = Command::new(common::binary())
            .args(args)
            .arg("--config")
            .arg(&self.edge.config_path)
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn token(&self) -> String {
        self.edge.token()
    }

    /// A raw API call with curl: (HTTP status, body).
    fn api(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
        token: Option<&str>,
    ) -> (u16, String) {
        common::admin_call(self.admin, method, path, body, token)
    }

    fn http_get(&self, host: &str, path: &str) -> String {
        self.edge.http_get(host, path)
    }

    fn site(&self, host: &str) -> serde_json::Value {
        let (code, out, err) = self.cli(&["site", "show", host, "--json"]);
        assert_eq!(code, 0, "{err}");
        serde_json::from_str(&out).unwrap()
    }

    fn wait_status(&self, host: &str, status: &str, timeout: Duration) -> serde_json::Value {
        let deadline = Instant::now() + timeout;
        loop {
            let site = self.site(host);
            if site["status"] == status {
                return site;
            }
            assert!(
                Instant::now() < deadline,
                "{host} never became {status}: {site}\n{}",
                self.edge.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn add(&self, hosts: &[&str]) -> String {
        let mut args = vec!["site", "add"];
        args.extend_from_slice(hosts);
        let origin = self.origin.url();
        args.extend_from_slice(&["--origin", &origin]);
        let (code, out, err) = self.cli(&args);
        assert_eq!(code, 0, "{err}");
        let target = out
            .split_whitespace()
            .skip_while(|w| *w != "CNAME")
            .nth(1)
            .unwrap_or_else(|| panic!("no CNAME target in {out}"))
            .to_owned();
        assert!(target.ends_with(".edge.test"), "{out}");
        target
    }
}

#[test]
fn the_whole_journey_from_site_add_to_https_and_dns_moved() {
    let mut w = world();
    let target = w.add(&["shop.example.com"]);
    assert_eq!(w.site("shop.example.com")["status"], "pending_dns");
    // Until DNS points here the site is not served at all: no order, and no traffic
    // reaches its origin (an unverified registration must not capture a name's requests).
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(w.edge.count_log("ACME order placed"), 0);
    let plain = w.http_get("shop.example.com", "/echo?x=1");
    assert!(plain.starts_with("HTTP/1.1 404"), "{plain}");
    assert_eq!(w.origin.hits.load(std::sync::atomic::Ordering::SeqCst), 0);

    w.pebble.set_cname("shop.example.com", &target);
    w.wait_status("shop.example.com", "active", Duration::from_secs(60));
    let root = w.pebble.write_issuing_root(w.edge.dir.path());
    let (ok, out) = curl("shop.example.com", w.edge.https, "/echo", &root, &[]);
    assert!(ok, "{out}");
    assert!(out.contains("x-forwarded-proto: https"), "{out}");

    // Active: plain HTTP now redirects to HTTPS.
    let redirect = w.http_get("shop.example.com", "/echo?x=1");
    assert!(
        redirect.contains("308") && redirect.contains("location: https://shop.example.com"),
        "{redirect}"
    );

    let (code, events) = w.api("GET", "/api/v1/events", None, Some(&w.token()));
    assert_eq!(code, 200);
    let events: serde_json::Value = serde_json::from_str(&events).unwrap();
    let kinds: Vec<&str> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["kind"].as_str())
        .collect();
    let order = [
        "site.added",
        "site.verified",
        "certificate.issued",
        "site.active",
    ];
    let positions: Vec<usize> = order
        .iter()
        .map(|k| {
            kinds
                .iter()
                .position(|x| x == k)
                .unwrap_or_else(|| panic!("no {k} in {kinds:?}"))
        })
        .collect();
    assert!(positions.windows(2).all(|p| p[0] < p[1]), "{kinds:?}");

    let (code, out, _) = w.cli(&["cert", "list"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("shop.example.com") && out.contains("acme") && out.contains("issued"),
        "{out}"
    );
    assert!(!out.contains("PRIVATE"), "{out}");

    // A forced renewal replaces the certificate at once.
    let (code, out, err) = w.cli(&["cert", "renew", "shop.example.com"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("requested"), "{out}");
    w.edge
        .wait_log("certificate renewed", Duration::from_secs(30));

    // The CNAME goes away: the site is noticed as moved.
    w.pebble.clear_cname("shop.example.com");
    let moved = w.wait_status("shop.example.com", "dns_moved", Duration::from_secs(20));
    assert!(moved["moved_since"].is_u64(), "{moved}");

    let (code, _, _) = w.cli(&["site", "remove", "shop.example.com"]);
    assert_eq!(code, 0);
    let (code, _, err) = w.cli(&["site", "show", "shop.example.com"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        common::stored_records(&w.edge.data_dir()).is_empty(),
        "key deleted"
    );
}

#[test]
fn only_a_cname_to_this_sites_own_target_verifies() {
    let w = world();
    let a = w.add(&["a.example.com"]);
    let b = w.add(&["b.example.com"]);
    assert_ne!(a, b);
    w.add(&["c.example.com"]);
    w.pebble.set_cname("a.example.com", &b);
    w.pebble.set_cname("c.example.com", "somewhere.example.net");
    std::thread::sleep(Duration::from_secs(4));
    for host in ["a.example.com", "b.example.com", "c.example.com"] {
        let site = w.site(host);
        assert_eq!(site["status"], "pending_dns", "{site}");
    }
    assert!(
        w.site("a.example.com")["reason"]
            .as_str()
            .unwrap()
            .contains(&b)
    );
    assert!(
        w.site("c.example.com")["reason"]
            .as_str()
            .unwrap()
            .contains("somewhere.example.net")
    );
    assert_eq!(w.edge.count_log("ACME order placed"), 0);
}

#[test]
fn an_apex_name_verifies_with_a_and_txt() {
    let w = world();
    w.add(&["example.org"]);
    let site = w.site("example.org");
    let token = site["txt_token"].as_str().unwrap().to_owned();
    // challtestsrv answers A 127.0.0.1 (the edge address) for every name; only the TXT is missing.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(w.site("example.org")["status"], "pending_dns");
    w.pebble.dns(
        "/set-txt",
        serde_json::json!({ "host": "_onehttps.example.org.", "value": token }),
    );
    w.wait_status("example.org", "active", Duration::from_secs(60));
}

#[test]
fn malformed_api_requests_get_4xx_and_store_nothing() {
    let w = world();
    let token = w.token();
    let origin = w.origin.url();
    let big = format!(
        "{{\"hosts\": [\"a.example.com\"], \"origins\": [\"{origin}\"], \"x\": \"{}\"}}",
        "a".repeat(70_000)
    );
    let cases: Vec<(&str, String, u16)> = vec![
        ("not json", "{hosts:".into(), 400),
        ("empty body", String::new(), 400),
        (
            "wrong type",
            "{\"hosts\": \"a.example.com\", \"origins\": []}".into(),
            422,
        ),
        (
            "unknown field",
            format!("{{\"hosts\": [\"a.example.com\"], \"origins\": [\"{origin}\"], \"tls\": 1}}"),
            422,
        ),
        (
            "missing origins",
            "{\"hosts\": [\"a.example.com\"]}".into(),
            422,
        ),
        (
            "no hosts",
            format!("{{\"hosts\": [], \"origins\": [\"{origin}\"]}}"),
            400,
        ),
        (
            "bad hostname",
            format!("{{\"hosts\": [\"not a host\"], \"origins\": [\"{origin}\"]}}"),
            400,
        ),
        (
            "ip address",
            format!("{{\"hosts\": [\"10.0.0.1\"], \"origins\": [\"{origin}\"]}}"),
            400,
        ),
        (
            "wildcard",
            format!("{{\"hosts\": [\"*.example.com\"], \"origins\": [\"{origin}\"]}}"),
            400,
        ),
        (
            "bare tld",
            format!("{{\"hosts\": [\"com\"], \"origins\": [\"{origin}\"]}}"),
            400,
        ),
        (
            "too long",
            format!(
                "{{\"hosts\": [\"{}.example.com\"], \"origins\": [\"{origin}\"]}}",
                "a".repeat(64)
            ),
            400,
        ),
        (
            "bad unicode",
            format!("{{\"hosts\": [\"bü cher.example\"], \"origins\": [\"{origin}\"]}}"),
            400,
        ),
        (
            "duplicate host",
            format!(
                "{{\"hosts\": [\"a.example.com\", \"A.example.com\"], \"origins\": [\"{origin}\"]}}"
            ),
            400,
        ),
        (
            "https origin",
            "{\"hosts\": [\"a.example.com\"], \"origins\": [\"https://127.0.0.1:1\"]}".into(),
            400,
        ),
        (
            "origin with path",
            "{\"hosts\": [\"a.example.com\"], \"origins\": [\"http://127.0.0.1:1/x\"]}".into(),
            400,
        ),
        ("oversize body", big, 413),
    ];
    for (name, body, want) in &cases {
        let (code, out) = w.api("POST", "/api/v1/sites", Some(body), Some(&token));
        assert_eq!(code, *want, "{name}: {out}");
        let json: serde_json::Value =
            serde_json::from_str(&out).unwrap_or_else(|_| panic!("{name}: not JSON: {out}"));
        assert!(
            json["error"].is_string() && json["message"].is_string(),
            "{name}: {out}"
        );
    }
    let (code, _) = w.api(
        "GET",
        "/api/v1/sites/nothing.example.com",
        None,
        Some(&token),
    );
    assert_eq!(code, 404);
    let (code, _) = w.api(
        "POST",
        "/api/v1/certificates/nothing.example.com/renew",
        None,
        Some(&token),
    );
    assert_eq!(code, 404);
    // Authentication.
    let (code, _) = w.api("GET", "/api/v1/sites", None, None);
    assert_eq!(code, 401);
    let (code, _) = w.api(
        "GET",
        "/api/v1/sites",
        None,
        Some("wrong-token-wrong-token"),
    );
    assert_eq!(code, 401);
    let (code, _) = w.api("GET", "/metrics", None, None);
    assert_eq!(code, 401);
    let (code, body) = w.api("GET", "/healthz", None, None);
    assert_eq!((code, body.trim()), (200, "ok"));
    // An internationalised name is accepted in its punycode form.
    let body = format!("{{\"hosts\": [\"Bücher.example.com\"], \"origins\": [\"{origin}\"]}}");
    let (code, out) = w.api("POST", "/api/v1/sites", Some(&body), Some(&token));
    assert_eq!(code, 201, "{out}");
    assert!(out.contains("\"xn--bcher-kva.example.com\""), "{out}");
    let (code, _) = w.api(
        "DELETE",
        "/api/v1/sites/xn--bcher-kva.example.com",
        None,
        Some(&token),
    );
    assert_eq!(code, 204);
    // Nothing was stored.
    let (code, list) = w.api("GET", "/api/v1/sites", None, Some(&token));
    assert_eq!(code, 200);
    let list: serde_json::Value = serde_json::from_str(&list).unwrap();
    assert_eq!(list["sites"], serde_json::json!([]), "{list}");
    assert_eq!(list["total"], 0, "{list}");
    assert_eq!(common::stored_sites(&w.edge.data_dir()), 0);
    // The token file is private.
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(w.edge.data_dir().join("admin.token"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn metrics_parse_as_prometheus_text_and_move() {
    let w = world();
    let token = w.token();
    let metrics = |w: &World| {
        let (code, text) = w.api("GET", "/metrics", None, Some(&token));
        assert_eq!(code, 200);
        let mut values = std::collections::HashMap::new();
        for line in text.lines() {
            if line.starts_with('#') || line.is_empty() {
                assert!(
                    line.is_empty() || line.starts_with("# HELP ") || line.starts_with("# TYPE "),
                    "{line}"
                );
                continue;
            }
            let (name, value) = line
                .rsplit_once(' ')
                .unwrap_or_else(|| panic!("bad line {line}"));
            let value: f64 = value
                .parse()
                .unwrap_or_else(|_| panic!("bad value in {line}"));
            values.insert(name.to_owned(), value);
        }
        values
    };
    let before = metrics(&w);
    assert_eq!(before.get("onehttps_sites{status=\"pending_dns\"}"), None);
    let target = w.add(&["m.example.com"]);
    let pending = metrics(&w);
    assert_eq!(pending["onehttps_sites{status=\"pending_dns\"}"], 1.0);
    w.pebble.set_cname("m.example.com", &target);
    w.wait_status("m.example.com", "active", Duration::from_secs(60));
    let after = metrics(&w);
    assert_eq!(after["onehttps_sites{status=\"active\"}"], 1.0);
    assert_eq!(
        after["onehttps_certificates{state=\"issued\",source=\"acme\"}"],
        1.0
    );
    assert!(after["onehttps_certificate_earliest_expiry_seconds"] > 0.0);
    assert_eq!(
        after["onehttps_events_total{kind=\"certificate.issued\"}"],
        1.0
    );
}

/// A webhook receiver: records each POSTed body; with `hang`, accepts and never answers.
fn webhook(
    rt: &tokio::runtime::Runtime,
    hang: bool,
) -> (
    String,
    std::sync::Arc<std::sync::Mutex<Vec<serde_json::Value>>>,
) {
    use http_body_util::BodyExt;
    let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let sink = got.clone();
    rt.spawn(async move {
        let mut held = Vec::new();
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            if hang {
                held.push(tcp);
                continue;
            }
            let sink = sink.clone();
            tokio::spawn(async move {
                let service =
                    hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let sink = sink.clone();
                        async move {
                            let body = req
                                .into_body()
                                .collect()
                                .await
                                .map(|b| b.to_bytes())
                                .unwrap_or_default();
                            if let Ok(event) = serde_json::from_slice(&body) {
                                sink.lock().unwrap().push(event);
                            }
                            Ok::<_, std::convert::Infallible>(http::Response::new(
                                http_body_util::Full::new(bytes::Bytes::new()),
                            ))
                        }
                    });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tcp), service)
                    .await;
            });
        }
    });
    (url, got)
}

#[test]
fn a_webhook_gets_the_events_in_order_and_a_dead_one_delays_nothing() {
    let hooks = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (url, got) = webhook(&hooks, false);
    let w = world_with(&format!("\n[events]\nwebhook = \"{url}\"\n"));
    let target = w.add(&["hook.example.com"]);
    w.pebble.set_cname("hook.example.com", &target);
    w.wait_status("hook.example.com", "active", Duration::from_secs(60));
    let deadline = Instant::now() + Duration::from_secs(10);
    while !got
        .lock()
        .unwrap()
        .iter()
        .any(|e| e["kind"] == "site.active")
    {
        assert!(
            Instant::now() < deadline,
            "webhook got {:?}",
            got.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let events = got.lock().unwrap().clone();
    let seqs: Vec<u64> = events.iter().filter_map(|e| e["seq"].as_u64()).collect();
    assert!(
        seqs.windows(2).all(|p| p[0] < p[1]),
        "out of order: {seqs:?}"
    );
    let kinds: Vec<&str> = events.iter().filter_map(|e| e["kind"].as_str()).collect();
    assert_eq!(
        &kinds[..],
        &[
            "site.added",
            "site.verified",
            "certificate.issued",
            "site.active"
        ],
        "{events:?}"
    );
    // The events API reports delivery (what the console's events page shows).
    let token = w.token();
    let (code, body) = w.api("GET", "/api/v1/events", None, Some(&token));
    assert_eq!(code, 200, "{body}");
    let state: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(state["webhook"]["delivered"].as_u64() >= Some(4), "{state}");
    assert_eq!(state["webhook"]["failed"], 0, "{state}");
    assert!(
        state["webhook"]["last_delivered_seq"].as_u64().is_some(),
        "{state}"
    );

    // A webhook that accepts connections and never answers.
    let (dead, _) = webhook(&hooks, true);
    let w = world_with(&format!(
        "\n[events]\nwebhook = \"{dead}\"\nwebhook_timeout = \"60s\"\n"
    ));
    let started = Instant::now();
    let target = w.add(&["slow-hook.example.com"]);
    w.pebble.set_cname("slow-hook.example.com", &target);
    w.wait_status("slow-hook.example.com", "active", Duration::from_secs(30));
    assert!(started.elapsed() < Duration::from_secs(30));
}

#[test]
fn certificates_uploaded_through_the_api_are_validated_then_served() {
    let w = world();
    let target = w.add(&["up.example.com"]);
    let token = w.token();
    let ca = common::TestCa::new();
    // Before its DNS is verified a registered site is not served: no upload makes it so.
    let early = ca.issue(&["up.example.com"], 30);
    let early = serde_json::json!({ "cert": early.chain_pem, "key": early.key_pem }).to_string();
    let (code, out) = w.api("POST", "/api/v1/certificates", Some(&early), Some(&token));
    assert_eq!(code, 409, "{out}");
    assert!(out.contains("site_unverified"), "{out}");
    w.pebble.set_cname("up.example.com", &target);
    w.wait_status("up.example.com", "active", Duration::from_secs(60));
    let good = ca.issue(&["up.example.com"], 30);
    let other = ca.issue(&["up.example.com"], 30);
    let expired = ca.issue(&["up.example.com"], -1);
    let wrong_name = ca.issue(&["other.example.com", "up.example.com.evil"], 30);
    let body = |cert: &str, key: &str| serde_json::json!({ "cert": cert, "key": key }).to_string();
    let cases = [
        (
            "key not matching",
            body(&good.chain_pem, &other.key_pem),
            400,
            "does not match",
        ),
        (
            "expired",
            body(&expired.chain_pem, &expired.key_pem),
            400,
            "expired",
        ),
        ("not pem", body("hello", "world"), 400, "no certificate"),
        (
            "a private key inside the chain",
            body(
                &format!("{}{}", good.chain_pem, good.key_pem),
                &good.key_pem,
            ),
            400,
            "certificates only",
        ),
        (
            "no site for its names",
            body(&wrong_name.chain_pem, &wrong_name.key_pem),
            404,
            "no site serves",
        ),
        (
            "unknown field",
            "{\"cert\": \"x\", \"key\": \"y\", \"chain\": 1}".to_owned(),
            422,
            "",
        ),
    ];
    for (name, body, want, text) in cases {
        let (code, out) = w.api("POST", "/api/v1/certificates", Some(&body), Some(&token));
        assert_eq!(code, want, "{name}: {out}");
        assert!(out.contains(text), "{name}: {out}");
    }
    let before = common::served_cert_fields(w.edge.https, "up.example.com");
    let good_end = common::pem_enddate(&good.chain_pem);
    assert!(
        !before.contains(&good_end),
        "a refused upload was served: {before}"
    );

    let dir = w.edge.dir.path();
    std::fs::write(dir.join("up.pem"), &good.chain_pem).unwrap();
    std::fs::write(dir.join("up.key"), &good.key_pem).unwrap();
    let (code, out, err) = w.cli(&[
        "cert",
        "upload",
        "--cert",
        dir.join("up.pem").to_str().unwrap(),
        "--key",
        dir.join("up.key").to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("uploaded"), "{out}");
    let root = ca.write_root(dir);
    let (ok, out) = curl("up.example.com", w.edge.https, "/", &root, &[]);
    assert!(ok, "{out}");
    common::assert_no_plaintext_keys(&w.edge.data_dir());
    let (_, shown, _) = w.cli(&["cert", "show", "up.example.com", "--json"]);
    assert!(!shown.contains("PRIVATE"), "{shown}");
    assert!(shown.contains("\"source\": \"uploaded\""), "{shown}");
}

#[test]
fn an_unmanaged_upload_in_its_window_raises_an_expiring_event() {
    let ca = common::TestCa::new();
    let dir = tempfile::tempdir().unwrap();
    let now = time::OffsetDateTime::now_utc();
    let leaf = ca.issue_between(
        &["old.example.com"],
        now - time::Duration::days(80),
        now + time::Duration::days(2),
    );
    let (cert, key) = (dir.path().join("old.pem"), dir.path().join("old.key"));
    std::fs::write(&cert, &leaf.chain_pem).unwrap();
    std::fs::write(&key, &leaf.key_pem).unwrap();
    let site = common::site_table(
        &["old.example.com"],
        &["http://127.0.0.1:9".into()],
        Some(&(cert, key)),
    );
    let w = world_with(&format!("{site}managed = false\n"));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, events) = w.api("GET", "/api/v1/events", None, Some(&w.token()));
        if events.contains("certificate.expiring") && events.contains("old.example.com") {
            break;
        }
        assert!(Instant::now() < deadline, "{events}");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(
        w.edge.count_log("ACME order placed"),
        0,
        "an unmanaged upload is never replaced"
    );
    let (_, cert, _) = w.cli(&["cert", "show", "old.example.com", "--json"]);
    assert!(cert.contains("\"state\": \"expiring\""), "{cert}");
}

#[test]
fn a_site_whose_validation_fails_is_failed_with_the_reason_and_retries() {
    let w = world();
    let target = w.add(&["broken.example.com"]);
    // DNS verifies for us, but the CA's validator is sent to an address nobody listens on.
    w.pebble.dns(
        "/add-a",
        serde_json::json!({ "host": format!("{target}."), "addresses": ["127.0.0.2"] }),
    );
    w.pebble.set_cname("broken.example.com", &target);
    let site = w.wait_status("broken.example.com", "failed", Duration::from_secs(60));
    let reason = site["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("certificate order failed"), "{site}");
    let (_, events) = w.api("GET", "/api/v1/events", None, Some(&w.token()));
    assert!(
        events.contains("site.failed") && events.contains("certificate.failed"),
        "{events}"
    );
    // A failed site waits for its next attempt: it is not re-verified in a loop, and it
    // raises one `site.failed` per failed attempt (retries here every 1-4 s).
    std::thread::sleep(Duration::from_secs(6));
    let (_, events) = w.api("GET", "/api/v1/events", None, Some(&w.token()));
    let count = |kind: &str| events.matches(&format!("\"kind\":\"{kind}\"")).count();
    assert_eq!(count("site.verified"), 1, "{events}");
    assert!(count("certificate.failed") >= 2, "{events}");
    assert!(
        (1..=count("certificate.failed")).contains(&count("site.failed")),
        "{events}"
    );
    // It keeps trying: once the validator can reach the edge, the site becomes active.
    w.pebble.dns(
        "/clear-a",
        serde_json::json!({ "host": format!("{target}.") }),
    );
    w.wait_status("broken.example.com", "active", Duration::from_secs(60));
}

#[test]
fn lists_come_in_pages_and_the_cli_lists_every_page() {
    let configured: String = (1..=3)
        .map(|i| {
            format!("\n[[site]]\nhost = \"p{i}.localhost\"\norigins = [\"http://127.0.0.1:9\"]\n")
        })
        .collect();
    let w = world_with(&configured);
    let token = w.token();
    let hosts = [
        "c.example.com",
        "a.example.com",
        "e.example.com",
        "b.example.com",
        "d.example.com",
    ];
    for host in hosts {
        w.add(&[host]);
    }
    let page = |path: &str| -> serde_json::Value {
        let (code, body) = w.api("GET", path, None, Some(&token));
        assert_eq!(code, 200, "{path}: {body}");
        serde_json::from_str(&body).unwrap()
    };

    // Registered sites: pages of two, every site once, the last page without `next`.
    let (mut seen, mut after, mut pages) = (Vec::new(), None::<String>, 0);
    loop {
        let path = match &after {
            Some(cursor) => format!("/api/v1/sites?limit=2&after={cursor}"),
            None => "/api/v1/sites?limit=2".to_owned(),
        };
        let got = page(&path);
        assert_eq!(got["total"], 5, "{got}");
        let items = got["sites"].as_array().unwrap();
        assert!(!items.is_empty() && items.len() <= 2, "{got}");
        seen.extend(
            items
                .iter()
                .map(|s| s["hosts"][0].as_str().unwrap().to_owned()),
        );
        pages += 1;
        match got["next"].as_str() {
            Some(next) => after = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    seen.sort();
    let mut expected = hosts.map(str::to_owned).to_vec();
    expected.sort();
    assert_eq!(seen, expected);

    // Certificates in service, by name; the cursor is the last name of the page.
    let first = page("/api/v1/certificates?limit=2");
    let names = |p: &serde_json::Value| -> Vec<String> {
        p["certificates"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["names"][0].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(names(&first), ["p1.localhost", "p2.localhost"], "{first}");
    assert_eq!(first["next"], "p2.localhost");
    assert_eq!(first["total"], 3);
    let second = page("/api/v1/certificates?limit=2&after=p2.localhost");
    assert_eq!(names(&second), ["p3.localhost"], "{second}");
    assert!(second["next"].is_null(), "{second}");

    // A page that is not one is refused, saying how to ask.
    for bad in ["limit=0", "limit=10001", "limit=two", "page=2"] {
        for list in ["sites", "certificates"] {
            let (code, body) = w.api("GET", &format!("/api/v1/{list}?{bad}"), None, Some(&token));
            assert_eq!(code, 400, "{list}?{bad}: {body}");
            assert!(
                body.contains("bad_page") && body.contains("limit"),
                "{body}"
            );
        }
    }

    // The CLI lists every page.
    let (code, out, err) = w.cli(&["site", "list"]);
    assert_eq!(code, 0, "{err}");
    assert!(hosts.iter().all(|h| out.contains(h)), "{out}");
    let (code, out, err) = w.cli(&["cert", "list"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        (1..=3).all(|i| out.contains(&format!("p{i}.localhost"))),
        "{out}"
    );
}

#[test]
fn a_site_beyond_the_cas_limit_is_queued_with_its_next_attempt() {
    let w = world_with("\n[acme.limits]\nnew_orders_per_3h = 1\n");
    let first = w.add(&["first.example.com"]);
    w.pebble.set_cname("first.example.com", &first);
    w.wait_status("first.example.com", "active", Duration::from_secs(30));
    let second = w.add(&["second.example.com"]);
    w.pebble.set_cname("second.example.com", &second);
    let site = w.wait_status("second.example.com", "queued", Duration::from_secs(30));
    let reason = site["reason"].as_str().unwrap();
    assert!(
        reason.contains("new_orders_per_3h") && reason.contains("1 orders for this account"),
        "{site}"
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let next = site["next_attempt_at"].as_u64().unwrap();
    assert!(
        next > now + 3 * 3600 - 120 && next <= now + 3 * 3600,
        "{site}"
    );
    assert!(
        site["next_step"]
            .as_str()
            .unwrap()
            .contains("next_attempt_at")
    );
    let (_, events) = w.api("GET", "/api/v1/events", None, Some(&w.token()));
    assert!(events.contains("site.queued"), "{events}");
    assert_eq!(w.pebble.log().matches("orders in the db").count(), 1);
}

#[test]
fn a_caa_record_for_another_ca_fails_the_site_with_the_record_and_no_order() {
    let w = world();
    let target = w.add(&["caa.example.com"]);
    w.pebble.dns(
        "/add-caa",
        serde_json::json!({ "host": "example.com.", "policies": [{ "tag": "issue", "value": "otherca.example" }] }),
    );
    w.pebble.set_cname("caa.example.com", &target);
    let site = w.wait_status("caa.example.com", "failed", Duration::from_secs(30));
    let reason = site["reason"].as_str().unwrap();
    assert!(
        reason.contains("CAA record of example.com")
            && reason.contains("allows only otherca.example")
            && reason.contains("add `example.com. CAA 0 issue \"pebble.letsencrypt.org\"`"),
        "{site}"
    );
    assert_eq!(w.pebble.log().matches("orders in the db").count(), 0);
    // The owner fixes the record: the next attempt goes through by itself.
    w.pebble
        .dns("/clear-caa", serde_json::json!({ "host": "example.com." }));
    w.wait_status("caa.example.com", "active", Duration::from_secs(30));
    assert_eq!(w.pebble.log().matches("orders in the db").count(), 1);
}

#[test]
fn a_wildcard_site_is_issued_over_dns01_through_its_delegation_and_serves_its_subdomains() {
    let (_rt, origin) = common::origin_on_own_runtime("wild-origin");
    let ports = EdgePorts::new();
    let edge_dns = common::free_port();
    // Pebble resolves through unbound: example.com at challtestsrv, the ACME zone at the edge.
    let pebble = Pebble::start(
        &ports,
        PebbleOptions {
            acme_zone: Some(("acme.edge.test", edge_dns)),
            ..PebbleOptions::default()
        },
    );
    let dir = tempfile::tempdir().unwrap();
    let mut config = ports.server_table(&dir.path().join("data"));
    config.push_str(&pebble.acme_table("challenges = [\"http-01\"]"));
    config.push_str(&pebble.onboarding_table_with(&format!(
        "allow_private_origins = true\nacme_zone = \"acme.edge.test\"\nacme_dns = \"127.0.0.1:{edge_dns}\"\n"
    )));
    let edge = EdgeProcess::start(dir, &ports, &config);
    let body = serde_json::json!({ "hosts": ["*.example.com"], "origins": [origin.url()] });
    let (code, created) = edge.api("POST", "/api/v1/sites", Some(&body.to_string()));
    assert_eq!(code, 201, "{created}");
    let created: serde_json::Value = serde_json::from_str(&created).unwrap();
    let delegation = &created["acme_challenge_cname"];
    assert_eq!(
        delegation["name"], "_acme-challenge.example.com",
        "{created}"
    );
    let target = delegation["target"].as_str().unwrap();
    assert_eq!(
        target,
        format!("{}.acme.edge.test", created["id"].as_str().unwrap())
    );
    assert!(
        created["next_step"]
            .as_str()
            .unwrap()
            .contains(&format!("_acme-challenge.example.com CNAME {target}")),
        "{created}"
    );
    // The one record the owner creates; no DNS API key changes hands.
    pebble.set_cname("_acme-challenge.example.com", target);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, site) = edge.api("GET", "/api/v1/sites/*.example.com", None);
        let site: serde_json::Value = serde_json::from_str(&site).unwrap();
        if site["status"] == "active" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{site}\n{}\n{}",
            edge.log(),
            pebble.unbound.as_ref().map(|u| u.log()).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let root = pebble.write_issuing_root(edge.dir.path());
    for host in ["shop.example.com", "blog.example.com"] {
        let (ok, out) = curl(host, edge.https, "/", &root, &[]);
        assert!(ok && out.contains("wild-origin"), "{host}: {out}");
    }
    assert!(edge.log().contains("ACME order placed"));
}

#[test]
fn an_apex_name_verifies_with_a_and_its_dns01_delegation_instead_of_the_txt_token() {
    let edge_dns = common::free_port();
    let w = world_with(&format!(
        "acme_zone = \"acme.edge.test\"\nacme_dns = \"127.0.0.1:{edge_dns}\"\n"
    ));
    w.add(&["example.net"]);
    let site = w.site("example.net");
    let target = format!("{}.acme.edge.test", site["id"].as_str().unwrap());
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(w.site("example.net")["status"], "pending_dns");
    // A delegation to another site's target proves nothing.
    w.pebble
        .set_cname("_acme-challenge.example.net", "someone-else.acme.edge.test");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(w.site("example.net")["status"], "pending_dns");
    w.pebble.set_cname("_acme-challenge.example.net", &target);
    w.wait_status("example.net", "active", Duration::from_secs(60));
}
