//! Certificates that obtain and renew themselves, against a real Pebble: HTTP-01 and
//! TLS-ALPN-01 issuance, restart without a new order, renewal under load, a CA outage during
//! renewal, kill -9 mid-issuance, and takeover of an expiring upload.

mod common;

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::pebble::{Pebble, PebbleOptions};
use common::{EdgePorts, EdgeProcess, Origin, TestCa, curl, served_cert_fields, site_table};

const HOST: &str = "shop.example.com";

fn start_origin() -> (tokio::runtime::Runtime, Origin) {
    common::origin_on_own_runtime("shop")
}

/// An edge with one ACME-managed site for `HOST`, pointed at `pebble`.
fn edge_with_site(
    pebble: &Pebble,
    ports: &EdgePorts,
    origin: &Origin,
    acme_extra: &str,
) -> EdgeProcess {
    let dir = tempfile::tempdir().unwrap();
    let mut config = ports.server_table(&dir.path().join("data"));
    config.push_str(&pebble.acme_table(acme_extra));
    config.push_str(&site_table(
        &[HOST, "www.shop.example.com"],
        &[origin.url()],
        None,
    ));
    EdgeProcess::start(dir, ports, &config)
}

fn serial(port: u16) -> String {
    served_cert_fields(port, HOST)
        .lines()
        .find_map(|l| l.strip_prefix("serial=").map(str::to_owned))
        .unwrap_or_default()
}

/// The first line of `log` that contains `text` (empty if none).
fn first_line_with<'a>(log: &'a str, text: &str) -> &'a str {
    log.lines().find(|l| l.contains(text)).unwrap_or_default()
}

/// curl over HTTPS to the site, trusting Pebble's issuing root only.
fn assert_served(edge: &EdgeProcess, pebble: &Pebble) {
    let root = pebble.write_issuing_root(edge.dir.path());
    for host in [HOST, "www.shop.example.com"] {
        let (ok, out) = curl(host, edge.https, "/echo", &root, &[]);
        assert!(ok, "curl to {host} failed: {out}\n{}", edge.log());
        assert!(out.contains("x-forwarded-proto: https"), "{out}");
    }
}

#[test]
fn http01_issuance_then_restart_serves_stored_certificate_without_a_new_order() {
    let (_rt, origin) = start_origin();
    let ports = EdgePorts::new();
    let pebble = Pebble::start(&ports, PebbleOptions::default());
    let mut edge = edge_with_site(&pebble, &ports, &origin, "challenges = [\"http-01\"]");
    edge.wait_log("certificate issued", Duration::from_secs(60));
    assert!(edge.log().contains("ACME order placed"));
    assert_served(&edge, &pebble);
    let first = serial(edge.https);
    common::assert_no_plaintext_keys(&edge.data_dir());
    // The new certificate was confirmed through a handshake with each of its names.
    edge.wait_log("self-check passed", Duration::from_secs(10));
    let deadline = Instant::now() + Duration::from_secs(10);
    while edge.count_log("self-check passed") < 2 {
        assert!(Instant::now() < deadline, "{}", edge.log());
        std::thread::sleep(Duration::from_millis(50));
    }

    edge.restart();
    // Served at once from the store, before any CA is contacted.
    let (ok, out) = curl(
        HOST,
        edge.https,
        "/",
        &edge.dir.path().join("pebble-root.pem"),
        &[],
    );
    assert!(ok, "{out}\n{}", edge.log());
    assert_eq!(serial(edge.https), first);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(edge.count_log("ACME order placed"), 0, "{}", edge.log());
    assert_eq!(edge.count_log("ACME account created"), 0, "{}", edge.log());
}

#[test]
fn tls_alpn01_issuance_with_pebble_rejecting_nonces() {
    let (_rt, origin) = start_origin();
    let ports = EdgePorts::new();
    let pebble = Pebble::start(
        &ports,
        PebbleOptions {
            reject_nonces: true,
            ..PebbleOptions::default()
        },
    );
    let mut edge = edge_with_site(&pebble, &ports, &origin, "challenges = [\"tls-alpn-01\"]");
    edge.wait_log("certificate issued", Duration::from_secs(60));
    assert_served(&edge, &pebble);
    // The validation came in over TLS-ALPN-01 on the HTTPS port, not over HTTP.
    assert!(
        edge.log()
            .contains("answered an ACME TLS-ALPN-01 validation"),
        "{}",
        edge.log()
    );
}

/// Loops HTTPS requests (new connection each, so each handshake sees the current
/// certificate) from `threads` threads until stopped; returns (ok, failed).
fn load(
    edge: &EdgeProcess,
    root: &std::path::Path,
    threads: usize,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<(usize, Vec<String>)> {
    let root = root.to_owned();
    let port = edge.https;
    std::thread::spawn(move || {
        let ok = Arc::new(AtomicUsize::new(0));
        let failures = Arc::new(std::sync::Mutex::new(Vec::new()));
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let (ok, failures, stop, root) =
                    (ok.clone(), failures.clone(), stop.clone(), root.clone());
                std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        let (good, out) = curl(HOST, port, "/", &root, &[]);
                        if good {
                            ok.fetch_add(1, Ordering::Relaxed);
                        } else {
                            failures.lock().unwrap().push(out);
                        }
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        let failed = failures.lock().unwrap().clone();
        (ok.load(Ordering::Relaxed), failed)
    })
}

/// An edge whose site holds a freshly issued 60-second certificate from Pebble.
struct ShortLived {
    _rt: tokio::runtime::Runtime,
    _origin: Origin,
    pebble: Pebble,
    edge: EdgeProcess,
    /// Pebble's issuing root, written into the edge's directory.
    root: std::path::PathBuf,
    /// Serial of the first certificate.
    first: String,
}

fn short_lived() -> ShortLived {
    let (rt, origin) = start_origin();
    let ports = EdgePorts::new();
    let pebble = Pebble::start(
        &ports,
        PebbleOptions {
            validity_secs: Some(60),
            ..PebbleOptions::default()
        },
    );
    let mut edge = edge_with_site(&pebble, &ports, &origin, "challenges = [\"http-01\"]");
    edge.wait_log("certificate issued", Duration::from_secs(60));
    let root = pebble.write_issuing_root(edge.dir.path());
    let first = serial(edge.https);
    ShortLived {
        _rt: rt,
        _origin: origin,
        pebble,
        edge,
        root,
        first,
    }
}

#[test]
fn renews_a_short_lived_certificate_by_itself_under_load() {
    let ShortLived {
        _rt,
        _origin,
        pebble: _pebble,
        mut edge,
        root,
        first,
    } = short_lived();
    let stop = Arc::new(AtomicBool::new(false));
    let clients = load(&edge, &root, 16, stop.clone());
    // A 60 s certificate renews in its last 20 s, at a moment in the first half of that.
    edge.wait_log("certificate renewed", Duration::from_secs(75));
    let deadline = Instant::now() + Duration::from_secs(2);
    while serial(edge.https) == first && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let second = serial(edge.https);
    std::thread::sleep(Duration::from_secs(1));
    stop.store(true, Ordering::Relaxed);
    let (ok, failed) = clients.join().unwrap();
    assert_ne!(second, first, "openssl s_client still sees the old serial");
    assert!(ok > 16, "clients made only {ok} requests");
    assert!(
        failed.is_empty(),
        "{} failed requests, e.g. {:?}",
        failed.len(),
        failed.first()
    );
}

#[test]
fn ca_outage_during_renewal_keeps_the_old_certificate_and_recovers() {
    let ShortLived {
        _rt,
        _origin,
        mut pebble,
        mut edge,
        root: old_root,
        first,
    } = short_lived();
    pebble.stop();

    // Renewal comes due while the CA is down: it fails, backs off, and retries.
    let deadline = Instant::now() + Duration::from_secs(70);
    while edge.count_log("certificate renewal failed") < 2 {
        assert!(
            Instant::now() < deadline,
            "no failed renewals logged:\n{}",
            edge.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let (ok, out) = curl(HOST, edge.https, "/", &old_root, &[]);
    assert!(ok, "the old certificate must keep serving: {out}");
    assert_eq!(serial(edge.https), first);
    let log = edge.log();
    let retries: Vec<u64> = log
        .lines()
        .filter(|l| l.contains("certificate renewal failed"))
        .filter_map(|l| {
            l.split("retry_in_s=")
                .nth(1)?
                .split(' ')
                .next()?
                .parse()
                .ok()
        })
        .collect();
    assert!(
        retries.len() >= 2 && retries[1] >= retries[0],
        "backoff {retries:?}"
    );
    // Said in words an operator can act on, not "client error (Connect)".
    let reason = first_line_with(&log, "certificate renewal failed");
    assert!(
        reason.contains("cannot reach the ACME directory https://127.0.0.1:")
            && reason.contains("connection refused"),
        "{reason}"
    );

    pebble.resume();
    edge.wait_log("certificate renewed", Duration::from_secs(40));
    std::thread::sleep(Duration::from_millis(200));
    assert_ne!(serial(edge.https), first);
    let new_root = pebble.write_issuing_root(edge.dir.path());
    let (ok, out) = curl(HOST, edge.https, "/", &new_root, &[]);
    assert!(ok, "{out}");
}

#[test]
fn a_ca_whose_certificate_is_not_trusted_is_named_with_the_setting_to_fix() {
    let (_rt, origin) = start_origin();
    let ports = EdgePorts::new();
    let pebble = Pebble::start(&ports, PebbleOptions::default());
    // The directory without `ca_roots`: Pebble's HTTPS certificate is from its own test root.
    let dir = tempfile::tempdir().unwrap();
    let mut config = ports.server_table(&dir.path().join("data"));
    config.push_str(&format!(
        "\n[acme]\ndirectory = \"https://127.0.0.1:{}/dir\"\nretry_min = \"1s\"\nretry_max = \"4s\"\nnameservers = [\"127.0.0.1:{}\"]\nhttp01_port = {}\ntls_alpn01_port = {}\n",
        pebble.port, pebble.dns_port, ports.http, ports.https
    ));
    config.push_str(&site_table(&[HOST], &[origin.url()], None));
    let mut edge = EdgeProcess::start(dir, &ports, &config);
    edge.wait_log("certificate issuance failed", Duration::from_secs(30));
    let log = edge.log();
    let reason = first_line_with(&log, "certificate issuance failed");
    assert!(
        reason.contains("the ACME directory's TLS certificate is not trusted")
            && reason.contains("acme.ca_roots"),
        "{reason}"
    );
    // The certificate's status says the same.
    let token = edge.token();
    let (code, status) = common::admin_call(
        ports.admin,
        "GET",
        "/api/v1/certificates",
        None,
        Some(&token),
    );
    assert_eq!(code, 200, "{status}");
    assert!(status.contains("acme.ca_roots"), "{status}");
}

#[test]
fn kill_9_mid_issuance_ends_with_exactly_one_valid_certificate() {
    let (_rt, origin) = start_origin();
    let ports = EdgePorts::new();
    let pebble = Pebble::start(&ports, PebbleOptions::default());
    let mut edge = edge_with_site(&pebble, &ports, &origin, "challenges = [\"http-01\"]");
    edge.wait_log("ACME order placed", Duration::from_secs(60));
    edge.kill9();
    edge.restart();
    edge.wait_log("certificate issued", Duration::from_secs(60));
    assert_served(&edge, &pebble);
    let records = common::stored_records(&edge.data_dir());
    assert_eq!(records.len(), 1, "{records:?}");
    let record = &records[0];
    assert_eq!(record["names"][0], HOST);
    assert_eq!(record["state"], "issued");
    assert_eq!(record["source"], "acme");
}

#[test]
fn an_uploaded_certificate_near_expiry_is_replaced_by_an_acme_one() {
    let (_rt, origin) = start_origin();
    let ports = EdgePorts::new();
    let pebble = Pebble::start(&ports, PebbleOptions::default());
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new();
    let now = time::OffsetDateTime::now_utc();
    let leaf = ca.issue_between(
        &[HOST],
        now - time::Duration::days(80),
        now + time::Duration::days(1),
    );
    let (cert, key) = (dir.path().join("up.pem"), dir.path().join("up.key"));
    std::fs::write(&cert, &leaf.chain_pem).unwrap();
    std::fs::write(&key, &leaf.key_pem).unwrap();
    let mut config = ports.server_table(&dir.path().join("data"));
    config.push_str(&pebble.acme_table("challenges = [\"http-01\"]"));
    config.push_str(&site_table(&[HOST], &[origin.url()], Some(&(cert, key))));
    let mut edge = EdgeProcess::start(dir, &ports, &config);
    edge.wait_log(
        "uploaded certificate replaced by a managed one",
        Duration::from_secs(60),
    );
    edge.wait_log("certificate renewed", Duration::from_secs(10));
    let root = pebble.write_issuing_root(edge.dir.path());
    let (ok, out) = curl(HOST, edge.https, "/", &root, &[]);
    assert!(ok, "{out}\n{}", edge.log());
    let records = common::stored_records(&edge.data_dir());
    let record = &records[0];
    assert_eq!(record["source"], "acme");
    assert!(record["replaced"]["serial"].is_string(), "{record}");

    // The takeover survives a restart: the managed certificate, not the upload, is served.
    edge.restart();
    let (ok, out) = curl(HOST, edge.https, "/", &root, &[]);
    assert!(ok, "{out}\n{}", edge.log());
    assert_eq!(edge.count_log("ACME order placed"), 0);
}

#[test]
fn many_sites_at_once_are_bounded_by_max_concurrent_orders_and_handshakes_continue() {
    let (_rt, origin) = start_origin();
    let ports = EdgePorts::new();
    let pebble = Pebble::start(&ports, PebbleOptions::default());
    let dir = tempfile::tempdir().unwrap();
    let mut config = ports.server_table(&dir.path().join("data"));
    config.push_str(&pebble.acme_table("challenges = [\"http-01\"]\nmax_concurrent_orders = 2"));
    const SITES: usize = 12;
    for i in 0..SITES {
        config.push_str(&site_table(
            &[&format!("site{i}.example.com")],
            &[origin.url()],
            None,
        ));
    }
    // A local site served from the start: its handshakes must not wait for the orders.
    config.push_str(&site_table(&["steady.test"], &[origin.url()], None));
    let mut edge = EdgeProcess::start(dir, &ports, &config);
    let out = Command::new(common::binary())
        .args(["ca", "root", "--config"])
        .arg(&edge.config_path)
        .output()
        .unwrap();
    let internal_root = edge.dir.path().join("internal-root.pem");
    std::fs::write(&internal_root, out.stdout).unwrap();
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut steady = 0;
    while edge.count_log("certificate issued") < SITES + 1 {
        assert!(
            Instant::now() < deadline,
            "not all sites issued:\n{}",
            edge.log()
        );
        let (ok, out) = curl("steady.test", edge.https, "/", &internal_root, &[]);
        assert!(ok, "a handshake stalled or failed during issuance: {out}");
        steady += 1;
    }
    assert!(steady > 0);
    // Replay the log: orders placed minus orders finished never exceeds the limit.
    let (mut open, mut most) = (0i32, 0i32);
    for line in edge.log().lines() {
        if line.contains("ACME order placed") {
            open += 1;
            most = most.max(open);
        } else if line.contains("certificate issued") && line.contains("source=acme") {
            open -= 1;
        }
    }
    assert!(most <= 2, "{most} orders were in flight at once");
    assert!(most >= 1);
    edge.wait_log("certificate issued", Duration::from_secs(1));
}

#[test]
fn a_ca_that_lost_our_account_gets_a_new_one_at_once_and_a_forced_renewal_says_so() {
    let (_rt, origin) = start_origin();
    let ports = EdgePorts::new();
    let mut pebble = Pebble::start(&ports, PebbleOptions::default());
    let mut edge = edge_with_site(&pebble, &ports, &origin, "challenges = [\"http-01\"]");
    edge.wait_log("certificate issued", Duration::from_secs(60));
    let first = serial(edge.https);

    // A fresh Pebble knows no account: the next order re-registers and goes through with no
    // failed attempt and no backoff.
    pebble.stop();
    pebble.resume();
    let (code, body) = edge.api("POST", &format!("/api/v1/certificates/{HOST}/renew"), None);
    assert_eq!(code, 202, "{body}");
    edge.wait_log("certificate renewed", Duration::from_secs(60));
    let log = edge.log();
    assert!(log.contains("a new one will be created"), "{log}");
    assert_eq!(edge.count_log("certificate renewal failed"), 0, "{log}");
    let (_, events) = edge.api("GET", "/api/v1/events", None);
    assert!(!events.contains("certificate.failed"), "{events}");
    // A renewal asked for by hand is not reported as a certificate in its renewal window.
    assert!(!log.contains("in its renewal window"), "{log}");
    assert!(!events.contains("certificate.expiring"), "{events}");
    assert_ne!(serial(edge.https), first);
}

/// Orders Pebble created (it logs its order count at each one).
fn pebble_orders(pebble: &Pebble) -> usize {
    pebble.log().matches("orders in the db").count()
}

#[test]
fn ca_limits_hold_orders_beyond_them_with_an_eta_counted_from_the_store_across_a_restart() {
    let (_rt, origin) = start_origin();
    let ports = EdgePorts::new();
    let pebble = Pebble::start(&ports, PebbleOptions::default());
    let dir = tempfile::tempdir().unwrap();
    let mut config = ports.server_table(&dir.path().join("data"));
    config.push_str(
        &pebble.acme_table("challenges = [\"http-01\"]\n\n[acme.limits]\nnew_orders_per_3h = 3\n"),
    );
    let hosts: Vec<String> = (0..5).map(|i| format!("limit{i}.example.com")).collect();
    for host in &hosts {
        config.push_str(&site_table(&[host], &[origin.url()], None));
    }
    let mut edge = EdgeProcess::start(dir, &ports, &config);
    let deadline = Instant::now() + Duration::from_secs(60);
    while edge.count_log("certificate issued") < 3
        || edge.count_log("order queued behind a CA limit") < 2
    {
        assert!(Instant::now() < deadline, "{}", edge.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(pebble_orders(&pebble), 3, "{}", pebble.log());
    assert_eq!(edge.count_log("certificate issued"), 3, "{}", edge.log());

    let describe = |edge: &EdgeProcess, host: &str| {
        let (status, body) = edge.api("GET", &format!("/api/v1/certificates/{host}"), None);
        assert_eq!(status, 200, "{body}");
        serde_json::from_str::<serde_json::Value>(&body).unwrap()
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut queued = Vec::new();
    for host in &hosts {
        let cert = describe(&edge, host);
        match cert["state"].as_str() {
            Some("issued") => {}
            Some("queued") => {
                let eta = cert["next_attempt_at"].as_u64().unwrap();
                assert_eq!(cert["queued"]["limit"], "new_orders_per_3h", "{cert}");
                let reason = cert["queued"]["reason"].as_str().unwrap();
                assert!(reason.contains("3 orders for this account"), "{reason}");
                queued.push((host.clone(), eta));
            }
            other => panic!("{host}: {other:?} {cert}"),
        }
    }
    assert_eq!(queued.len(), 2, "{queued:?}");
    // The first comes back when the oldest of the three orders leaves the 3-hour window, the
    // second one slot (3 h / 3 orders) later: they do not all come back at once.
    let mut etas: Vec<u64> = queued.iter().map(|(_, eta)| *eta).collect();
    etas.sort_unstable();
    assert!(
        etas[0] > now + 3 * 3600 - 120 && etas[0] <= now + 3 * 3600,
        "{etas:?}"
    );
    assert_eq!(etas[1], etas[0] + 3600, "{etas:?}");

    let (status, body) = edge.api("GET", "/api/v1/ca", None);
    assert_eq!(status, 200, "{body}");
    let ca: serde_json::Value = serde_json::from_str(&body).unwrap();
    let orders = ca["limits"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["key"] == "new_orders_per_3h")
        .unwrap_or_else(|| panic!("{ca}"));
    assert_eq!(
        (orders["used"].as_u64(), orders["max"].as_u64()),
        (Some(3), Some(3)),
        "{ca}"
    );
    let (_, metrics) = edge.api("GET", "/metrics", None);
    assert!(
        metrics.contains("onehttps_ca_limit_used{limit=\"new_orders_per_3h\"} 3"),
        "{metrics}"
    );
    assert!(
        metrics.contains("onehttps_issuance_held_total 2"),
        "{metrics}"
    );

    // A restart counts the same orders from the store: the queued sites stay queued with
    // the same moment, and a forced renewal of an issued one is held too.
    edge.restart();
    std::thread::sleep(Duration::from_secs(2));
    for (host, eta) in &queued {
        let cert = describe(&edge, host);
        assert_eq!(cert["state"], "queued", "{cert}");
        assert_eq!(cert["next_attempt_at"].as_u64(), Some(*eta), "{cert}");
    }
    let issued = hosts
        .iter()
        .find(|h| !queued.iter().any(|(q, _)| q == *h))
        .unwrap();
    let (status, _) = edge.api(
        "POST",
        &format!("/api/v1/certificates/{issued}/renew"),
        None,
    );
    assert_eq!(status, 202);
    edge.wait_log("order queued behind a CA limit", Duration::from_secs(10));
    assert_eq!(pebble_orders(&pebble), 3, "{}", pebble.log());
    let cert = describe(&edge, issued);
    assert_eq!(cert["state"], "queued", "{cert}");
    // The certificate in service keeps serving meanwhile.
    let fields = served_cert_fields(ports.https, issued);
    assert!(fields.contains(&format!("DNS:{issued}")), "{fields}");
}

/// The reason of the first failed issuance in `edge`'s log.
fn failure_reason(edge: &mut EdgeProcess) -> String {
    edge.wait_log("certificate issuance failed", Duration::from_secs(30));
    let log = edge.log();
    first_line_with(&log, "certificate issuance failed").to_owned()
}

#[test]
fn preflight_finds_a_closed_validation_port_and_a_name_pointing_elsewhere_without_an_order() {
    let (_rt, origin) = start_origin();
    let ports = EdgePorts::new();
    let pebble = Pebble::start(&ports, PebbleOptions::default());

    // The CA would connect to port 80 of the name's address and find nothing there.
    let closed = common::free_port();
    let acme = pebble
        .acme_table("challenges = [\"http-01\"]\n[acme.limits]\nnew_orders_per_3h = 10")
        .replace(
            &format!("http01_port = {}", ports.http),
            &format!("http01_port = {closed}"),
        );
    let dir = tempfile::tempdir().unwrap();
    let mut config = ports.server_table(&dir.path().join("data"));
    config.push_str(&acme);
    config.push_str(&site_table(&[HOST], &[origin.url()], None));
    let mut edge = EdgeProcess::start(dir, &ports, &config);
    let reason = failure_reason(&mut edge);
    assert!(
        reason.contains(&format!("at 127.0.0.1:{closed}"))
            && reason.contains("nothing accepts connections there (connection refused)")
            && reason.contains(&format!("make port {closed} of 127.0.0.1 reach this edge")),
        "{reason}"
    );
    // An order the CA never saw counts against none of its limits: it leaves the ledger when
    // its pre-flight fails (a retry in the middle of its pre-flight counts for that moment).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, ca) = edge.api("GET", "/api/v1/ca", None);
        let ca: serde_json::Value = serde_json::from_str(&ca).unwrap();
        assert_eq!(ca["limits"][0]["key"], "new_orders_per_3h", "{ca}");
        if ca["limits"][0]["used"] == 0 {
            break;
        }
        assert!(
            ca["limits"][0]["used"] == 1,
            "failed pre-flights pile up: {ca}"
        );
        assert!(Instant::now() < deadline, "{ca}");
        std::thread::sleep(Duration::from_millis(100));
    }
    edge.stop();

    // The name resolves to an address that is not this edge's.
    pebble.dns(
        "/add-a",
        serde_json::json!({ "host": format!("{HOST}."), "addresses": ["192.0.2.7"] }),
    );
    let ports = EdgePorts::new();
    let dir = tempfile::tempdir().unwrap();
    let mut config = ports.server_table(&dir.path().join("data"));
    config.push_str(&pebble.acme_table("challenges = [\"http-01\"]"));
    config.push_str("\n[onboarding]\nedge_addresses = [\"127.0.0.1\"]\n");
    config.push_str(&site_table(&[HOST], &[origin.url()], None));
    let mut edge = EdgeProcess::start(dir, &ports, &config);
    let reason = failure_reason(&mut edge);
    assert!(
        reason.contains(&format!(
            "{HOST} resolves to 192.0.2.7, not to this edge (127.0.0.1)"
        )),
        "{reason}"
    );
    assert_eq!(pebble_orders(&pebble), 0, "{}", pebble.log());
}
