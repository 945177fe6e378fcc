//! A fleet of three edges on a real three-member etcd cluster, with Pebble as the CA. The
//! nodes listen on 127.0.0.1, .2 and .3 with the same ports, so the A record of a site's
//! CNAME target (pebble-challtestsrv) decides which node the CA validates through — often
//! not the node that placed the order. Faults are real: etcd members and edges are killed
//! by PID.

mod common;

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::etcd::Etcd;
use common::pebble::{Pebble, PebbleOptions};
use common::{EdgePorts, EdgeProcess, Origin, free_port};

/// The fleet tests run one at a time: each starts nine processes on a 2-core machine.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

const PREFIX: &str = "/fleet-test";

struct Fleet {
    webhook: Webhook,
    _rt: tokio::runtime::Runtime,
    _origin: Origin,
    pebble: Pebble,
    etcd: Etcd,
    nodes: Vec<Option<EdgeProcess>>,
    https: u16,
    http: u16,
    /// `[acme]` keys added to every node's config.
    acme_extra: &'static str,
}

/// The address node `i` (0-based) listens on.
fn ip(i: usize) -> String {
    format!("127.0.0.{}", i + 1)
}

impl Fleet {
    fn start() -> Self {
        Self::start_with("")
    }

    /// A fleet whose nodes have `acme_extra` in their `[acme]` table.
    fn start_with(acme_extra: &'static str) -> Self {
        let (rt, origin) = common::origin_on_own_runtime("fleet-origin");
        let (https, http) = (free_port(), free_port());
        let validation = EdgePorts {
            https,
            http,
            admin: 0,
        };
        let pebble = Pebble::start(&validation, PebbleOptions::default());
        let etcd = Etcd::start(3);
        let mut fleet = Self {
            webhook: Webhook::start(),
            _rt: rt,
            _origin: origin,
            pebble,
            etcd,
            nodes: Vec::new(),
            https,
            http,
            acme_extra,
        };
        let origin_url = fleet._origin.url();
        for i in 0..3 {
            let dir = tempfile::tempdir().unwrap();
            if let Some(Some(first)) = fleet.nodes.first() {
                // Every node has the fleet's master key in its own file.
                std::fs::create_dir_all(dir.path().join("data")).unwrap();
                std::fs::copy(
                    first.data_dir().join("master.key"),
                    dir.path().join("data/master.key"),
                )
                .unwrap();
            }
            let admin = free_port();
            let config = fleet.config(i, &dir, admin, &origin_url);
            let ports = EdgePorts { https, http, admin };
            fleet
                .nodes
                .push(Some(EdgeProcess::start(dir, &ports, &config)));
        }
        fleet
    }

    fn config(&self, i: usize, dir: &tempfile::TempDir, admin: u16, origin: &str) -> String {
        let _ = origin;
        format!(
            "[events]\nwebhook = \"http://127.0.0.1:{hook}/events\"\n\n[server]\nhttps = \"{ip}:{https}\"\nhttp = \"{ip}:{http}\"\nadmin = \"127.0.0.1:{admin}\"\ndata_dir = \"{data}\"\n\n[storage]\nkind = \"etcd\"\nendpoints = {endpoints}\nprefix = \"{PREFIX}\"\nnode_id = \"edge-{n}\"\nlease_ttl = \"2s\"\ntimeout = \"1s\"\n{acme}{onboarding}",
            ip = ip(i),
            hook = self.webhook.port,
            https = self.https,
            http = self.http,
            data = dir.path().join("data").display(),
            endpoints = self.etcd.endpoints_toml(),
            n = i + 1,
            acme = self.pebble.acme_table(self.acme_extra),
            // The fleet's names resolve to any of its nodes (or to 127.0.0.9, an address of
            // the fleet that stops answering in the order test).
            onboarding = self.pebble.onboarding_table().replace(
                "edge_addresses = [\"127.0.0.1\"]",
                "edge_addresses = [\"127.0.0.1\", \"127.0.0.2\", \"127.0.0.3\", \"127.0.0.9\"]"
            ),
        )
    }

    fn node(&self, i: usize) -> &EdgeProcess {
        self.nodes[i].as_ref().expect("node is running")
    }

    fn api(&self, i: usize, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
        self.node(i).api(method, path, body)
    }

    /// Registers `host` with the fleet's origin through node `i`; its CNAME target.
    fn add_site(&self, i: usize, host: &str) -> String {
        let body = format!(
            r#"{{"hosts":["{host}"],"origins":["{}"]}}"#,
            self._origin.url()
        );
        let (status, text) = self.api(i, "POST", "/api/v1/sites", Some(&body));
        assert_eq!(status, 201, "{text}");
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        value["cname_target"].as_str().unwrap().to_owned()
    }

    /// Points `host` at its CNAME target and the target at node `i` (where the CA validates).
    fn point(&self, host: &str, target: &str, node_ip: &str) {
        self.pebble.set_cname(host, target);
        self.pebble.dns(
            "/clear-a",
            serde_json::json!({ "host": format!("{target}.") }),
        );
        self.pebble.dns(
            "/add-a",
            serde_json::json!({ "host": format!("{target}."), "addresses": [node_ip] }),
        );
    }

    /// The serial of the certificate node `i` serves for `host` (empty: none).
    fn serial(&self, i: usize, host: &str) -> String {
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "openssl s_client -connect {}:{} -servername {host} </dev/null 2>/dev/null | openssl x509 -noout -serial 2>/dev/null",
                ip(i),
                self.https
            ))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// Waits until every running node serves the same certificate for `host`, other than
    /// `not`; returns its serial.
    fn wait_served_everywhere(&self, host: &str, not: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let serials: Vec<String> = (0..self.nodes.len())
                .filter(|i| self.nodes[*i].is_some())
                .map(|i| self.serial(i, host))
                .collect();
            let first = &serials[0];
            if !first.is_empty() && first != not && serials.iter().all(|s| s == first) {
                return first.clone();
            }
            if Instant::now() > deadline {
                let logs: Vec<String> = self.nodes.iter().flatten().map(EdgeProcess::log).collect();
                panic!(
                    "{host} not served alike by every node within {timeout:?}: {serials:?}\n{}\npebble:\n{}",
                    logs.join("\n=====\n"),
                    self.pebble.log()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// `curl https://host/` through node `i`: whether it answered 200 from the origin.
    fn fetch(&self, i: usize, host: &str, root: &std::path::Path) -> bool {
        let (code, error) = curl_status(self.https, &ip(i), host, root);
        if code != "200" {
            eprintln!("node {i}: {code} {error}");
        }
        code == "200"
    }
}

/// `curl https://host:port/` with `host` resolved to `node_ip`: (status code, curl's error).
fn curl_status(port: u16, node_ip: &str, host: &str, root: &std::path::Path) -> (String, String) {
    let out = Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "5",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
        ])
        .arg("--cacert")
        .arg(root)
        .arg("--resolve")
        .arg(format!("{host}:{port}:{node_ip}"))
        .arg(format!("https://{host}:{port}/"))
        .output()
        .unwrap();
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A webhook receiver: every event POSTed to it, by kind.
struct Webhook {
    port: u16,
    kinds: Arc<std::sync::Mutex<Vec<String>>>,
}

impl Webhook {
    fn start() -> Self {
        use std::io::{BufRead, BufReader, Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let kinds = Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = kinds.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let mut reader = BufReader::new(stream);
                let mut length = 0;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap_or(0);
                    }
                }
                let mut body = vec![0; length];
                if reader.read_exact(&mut body).is_ok()
                    && let Ok(event) = serde_json::from_slice::<serde_json::Value>(&body)
                {
                    seen.lock()
                        .unwrap()
                        .push(event["kind"].as_str().unwrap_or("").to_owned());
                }
                let _ = reader.get_mut().write_all(
                    b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                );
            }
        });
        Self { port, kinds }
    }

    fn count(&self, kind: &str) -> usize {
        self.kinds
            .lock()
            .unwrap()
            .iter()
            .filter(|k| *k == kind)
            .count()
    }
}

/// Waits for `check` to hold, up to `timeout`; panics naming `what`.
fn wait_until(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check() {
        assert!(Instant::now() < deadline, "{what}: not within {timeout:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Requests through node `i` in a loop until stopped; counts the failures.
struct Traffic {
    stop: Arc<AtomicBool>,
    failed: Arc<AtomicUsize>,
    done: Arc<AtomicUsize>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Traffic {
    fn start(https: u16, node_ip: String, host: &str, root: std::path::PathBuf) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let failed = Arc::new(AtomicUsize::new(0));
        let done = Arc::new(AtomicUsize::new(0));
        let (s, f, d, host) = (stop.clone(), failed.clone(), done.clone(), host.to_owned());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                if curl_status(https, &node_ip, &host, &root).0 != "200" {
                    f.fetch_add(1, Ordering::SeqCst);
                }
                d.fetch_add(1, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        Self {
            stop,
            failed,
            done,
            thread: Some(thread),
        }
    }

    /// Stops; (requests made, requests failed).
    fn finish(mut self) -> (usize, usize) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        (
            self.done.load(Ordering::SeqCst),
            self.failed.load(Ordering::SeqCst),
        )
    }
}

#[test]
fn a_fleet_serves_as_one_edge_and_survives_an_etcd_member_dying() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let fleet = Fleet::start();
    let root = fleet.pebble.write_issuing_root(fleet.node(0).dir.path());

    // A site added through node 2 is known to every node at once.
    let target = fleet.add_site(1, "shop.example.com");
    for i in [0, 2] {
        wait_until(
            "the site reaches every node",
            Duration::from_secs(5),
            || {
                fleet
                    .api(i, "GET", "/api/v1/sites", None)
                    .1
                    .contains(&target)
            },
        );
    }
    // The CA validates through node 3, whichever node ordered.
    fleet.point("shop.example.com", &target, &ip(2));
    let first = fleet.wait_served_everywhere("shop.example.com", "", Duration::from_secs(60));
    for i in 0..3 {
        assert!(
            fleet.fetch(i, "shop.example.com", &root),
            "node {i} proxies"
        );
    }
    let orders: usize = fleet
        .nodes
        .iter()
        .flatten()
        .map(|n| n.count_log("ACME order placed"))
        .sum();
    assert_eq!(orders, 1, "exactly one node ordered");
    // Each event is delivered once by the fleet, not once per node.
    wait_until(
        "the site's events are delivered",
        Duration::from_secs(10),
        || fleet.webhook.count("site.active") >= 1,
    );
    std::thread::sleep(Duration::from_millis(500));
    for kind in [
        "site.added",
        "site.verified",
        "certificate.issued",
        "site.active",
    ] {
        assert_eq!(
            fleet.webhook.count(kind),
            1,
            "{kind}: {:?}",
            fleet.webhook.kinds
        );
    }

    // Every node's event log is the fleet's: each event once, marked with its node.
    for i in 0..3 {
        wait_until(
            "the fleet's events reach every node",
            Duration::from_secs(10),
            || {
                let (_, text) = fleet.api(i, "GET", "/api/v1/events", None);
                let log: serde_json::Value = serde_json::from_str(&text).unwrap();
                let issued: Vec<&serde_json::Value> = log["events"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|e| e["kind"] == "certificate.issued")
                    .collect();
                issued.len() == 1
                    && issued[0]["subject"]
                        .as_str()
                        .is_some_and(|s| s.contains("shop.example.com"))
                    && issued[0]["node"]
                        .as_str()
                        .is_some_and(|n| n.starts_with("edge-"))
            },
        );
    }

    // A TLS 1.3 session from node 1 resumes on node 2: the ticket keys are the fleet's.
    let session = fleet.node(0).dir.path().join("session.pem");
    let handshake = |i: usize, arg: &str| {
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "sleep 0.5 | openssl s_client -tls1_3 -connect {}:{} -servername shop.example.com {arg} {} 2>&1",
                ip(i),
                fleet.https,
                session.display()
            ))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let first_handshake = handshake(0, "-sess_out");
    assert!(
        first_handshake.contains("New, TLSv1.3"),
        "{first_handshake}"
    );
    let resumed = handshake(1, "-sess_in");
    assert!(resumed.contains("Reused, TLSv1.3"), "{resumed}");

    // The fleet's members.
    let (status, nodes) = fleet.api(2, "GET", "/api/v1/nodes", None);
    assert_eq!(status, 200, "{nodes}");
    for id in ["edge-1", "edge-2", "edge-3"] {
        assert!(nodes.contains(&format!("\"id\":\"{id}\"")), "{nodes}");
    }
    let out = Command::new(common::binary())
        .args(["node", "list", "--config"])
        .arg(&fleet.node(0).config_path)
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && table.contains("edge-3"), "{table}");

    // One etcd member dies: no request fails, a renewal still reaches every node.
    let mut fleet = fleet;
    let traffic = Traffic::start(fleet.https, ip(1), "shop.example.com", root.clone());
    fleet.etcd.kill_member(0);
    let (status, text) = fleet.api(
        0,
        "POST",
        "/api/v1/certificates/shop.example.com/renew",
        None,
    );
    assert_eq!(status, 202, "{text}");
    let renewed = fleet.wait_served_everywhere("shop.example.com", &first, Duration::from_secs(30));
    assert_ne!(renewed, first);
    let (done, failed) = traffic.finish();
    assert!(done > 5, "traffic ran ({done} requests)");
    assert_eq!(failed, 0, "{failed} of {done} requests failed");

    // A node restarted on the fleet's store serves what the fleet has at once.
    fleet.nodes[1].as_mut().unwrap().restart();
    assert_eq!(fleet.serial(1, "shop.example.com"), renewed);
    // ... and shows the fleet's events from before its restart.
    let (_, log) = fleet.api(1, "GET", "/api/v1/events", None);
    assert!(log.contains("certificate.issued"), "{log}");
    assert!(fleet.fetch(1, "shop.example.com", &root));

    // Removed through node 3: no node serves it, and its record and key leave the store.
    let (status, text) = fleet.api(2, "DELETE", "/api/v1/sites/shop.example.com", None);
    assert_eq!(status, 204, "{text}");
    wait_until(
        "no node serves the removed site",
        Duration::from_secs(10),
        || (0..3).all(|i| fleet.serial(i, "shop.example.com").is_empty()),
    );
    wait_until(
        "its record leaves the store",
        Duration::from_secs(10),
        || {
            let keys = fleet.etcd.keys(&format!("{PREFIX}/"));
            !keys
                .iter()
                .any(|k| k.contains("shop.example.com") || k.contains("/sites/"))
        },
    );

    // A node whose master key is not the fleet's refuses to start.
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("data")).unwrap();
    std::fs::write(dir.path().join("data/master.key"), "11".repeat(32)).unwrap();
    let stderr = refused_start(&dir, &fleet.config(3, &dir, free_port(), ""));
    assert!(stderr.contains("sealed with another key"), "{stderr}");
}

/// Runs `onehttps run` on `config` (written into `dir`), which must refuse to start: its
/// stderr.
fn refused_start(dir: &tempfile::TempDir, config: &str) -> String {
    let path = dir.path().join("onehttps.toml");
    std::fs::write(&path, config).unwrap();
    let out = Command::new(common::binary())
        .args(["run", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "started with {config}: {stderr}");
    stderr
}

#[test]
fn an_order_survives_the_death_of_its_node_and_the_store_an_outage() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    // The pre-flight probe would find the black hole below and never place the order this
    // test needs in flight: it is off here.
    let mut fleet = Fleet::start_with("probe = false");
    // Not in a node's directory: a killed node's directory goes with it.
    let kept = tempfile::tempdir().unwrap();
    let root = fleet.pebble.write_issuing_root(kept.path());

    // The CA's validation hangs (a listener that never answers), so the order stays in
    // flight on whichever node placed it.
    let hole = "127.0.0.9";
    let _black_holes =
        [fleet.https, fleet.http].map(|port| std::net::TcpListener::bind((hole, port)).unwrap());
    let target = fleet.add_site(0, "slow.example.com");
    fleet.point("slow.example.com", &target, hole);
    let deadline = Instant::now() + Duration::from_secs(30);
    let holder = loop {
        if let Some(i) = (0..3).find(|i| fleet.node(*i).log().contains("ACME order placed")) {
            break i;
        }
        assert!(Instant::now() < deadline, "no node placed the order");
        std::thread::sleep(Duration::from_millis(25));
    };
    fleet.nodes[holder].as_mut().unwrap().kill9();
    fleet.nodes[holder] = None;
    let survivor = (0..3).find(|i| *i != holder).unwrap();
    // The CA can reach the fleet again; another node takes the order over once the dead
    // node's lease expires.
    fleet.point("slow.example.com", &target, &ip(survivor));
    let serial = fleet.wait_served_everywhere("slow.example.com", "", Duration::from_secs(60));
    let issued_by_survivor = fleet
        .nodes
        .iter()
        .flatten()
        .any(|n| n.log().contains("certificate issued"));
    assert!(issued_by_survivor, "a surviving node issued it");

    // All of etcd down: every node keeps serving, the API says the store is unavailable.
    fleet.etcd.kill_all();
    for i in (0..3).filter(|i| *i != holder) {
        for _ in 0..3 {
            assert!(fleet.fetch(i, "slow.example.com", &root), "node {i} serves");
        }
    }
    let body = format!(
        r#"{{"hosts":["later.example.com"],"origins":["{}"]}}"#,
        fleet._origin.url()
    );
    let (status, text) = fleet.api(survivor, "POST", "/api/v1/sites", Some(&body));
    assert_eq!(status, 503, "{text}");
    assert!(text.contains("store_unavailable"), "{text}");
    let (status, text) = fleet.api(survivor, "GET", "/api/v1/sites", None);
    assert_eq!(status, 200, "{text}");
    assert!(
        !text.contains("later.example.com"),
        "nothing half-written: {text}"
    );

    // etcd returns: writes work again and renewals resume by themselves.
    fleet.etcd.start_all();
    wait_until("the API writes again", Duration::from_secs(20), || {
        fleet.api(survivor, "POST", "/api/v1/sites", Some(&body)).0 == 201
    });
    let (status, text) = fleet.api(
        survivor,
        "POST",
        "/api/v1/certificates/slow.example.com/renew",
        None,
    );
    assert_eq!(status, 202, "{text}");
    fleet.wait_served_everywhere("slow.example.com", &serial, Duration::from_secs(30));
}

#[test]
fn a_node_reaches_etcd_over_mutual_tls_and_names_what_is_wrong_with_it() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let etcd = Etcd::start_tls(1);
    let tls = etcd.tls();
    let config = |dir: &tempfile::TempDir, ports: &EdgePorts, tls_keys: &str| {
        format!(
            "{server}\n[storage]\nkind = \"etcd\"\nendpoints = {endpoints}\nprefix = \"{PREFIX}-tls\"\nnode_id = \"edge-tls\"\ntimeout = \"1s\"\n{tls_keys}\n[[site]]\nhost = \"fleet.localhost\"\norigins = [\"http://127.0.0.1:9\"]\n",
            server = ports.server_table(&dir.path().join("data")),
            endpoints = etcd.endpoints_toml(),
        )
    };
    let trusted = format!(
        "ca_file = \"{}\"\ncert_file = \"{}\"\nkey_file = \"{}\"\n",
        tls.ca.display(),
        tls.client.0.display(),
        tls.client.1.display()
    );

    // Mutual TLS: the node stores its site's certificate in etcd and joins the fleet.
    let dir = tempfile::tempdir().unwrap();
    let ports = EdgePorts::new();
    let text = config(&dir, &ports, &trusted);
    let edge = EdgeProcess::start(dir, &ports, &text);
    let keys = etcd.keys(&format!("{PREFIX}-tls/"));
    assert!(
        keys.iter().any(|k| k.contains("fleet.localhost")),
        "{keys:?}"
    );
    let (status, nodes) = edge.api("GET", "/api/v1/nodes", None);
    assert_eq!(status, 200, "{nodes}");
    assert!(nodes.contains("\"id\":\"edge-tls\""), "{nodes}");
    drop(edge);

    // What an operator gets wrong, each refused at start with what to change.
    let other_ca = common::TestCa::new();
    let elsewhere = tempfile::tempdir().unwrap();
    let other_root = other_ca.write_root(elsewhere.path());
    let cases = [
        (
            format!(
                "ca_file = \"{}\"\ncert_file = \"{}\"\nkey_file = \"{}\"\n",
                other_root.display(),
                tls.client.0.display(),
                tls.client.1.display()
            ),
            "not trusted",
        ),
        (
            format!("ca_file = \"{}\"\n", tls.ca.display()),
            "client certificate",
        ),
        (
            format!(
                "ca_file = \"{}\"\ncert_file = \"{}\"\nkey_file = \"{}\"\n",
                tls.ca.display(),
                tls.client.0.display(),
                tls.server.1.display()
            ),
            "storage.cert_file",
        ),
        (String::new(), "storage.ca_file"),
    ];
    for (keys, expected) in cases {
        let dir = tempfile::tempdir().unwrap();
        let stderr = refused_start(&dir, &config(&dir, &EdgePorts::new(), &keys));
        assert!(
            stderr.contains(expected),
            "{keys}: expected {expected:?} in {stderr}"
        );
    }
}

/// Not a test: measures how long a renewed certificate takes from the store to every other
/// node (`cargo test --release --test fleet -- --ignored --nocapture swap_propagation`). From
/// the issuing node's "storing the certificate" line (written just before the record goes to
/// etcd) to each other node's "swapped in" line, by their microsecond timestamps.
#[test]
#[ignore = "a measurement for BENCHMARKS.md, not a check"]
fn swap_propagation() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let fleet = Fleet::start();
    let target = fleet.add_site(0, "bench.example.com");
    fleet.point("bench.example.com", &target, &ip(0));
    let mut serial = fleet.wait_served_everywhere("bench.example.com", "", Duration::from_secs(60));
    let rounds = 30;
    for round in 0..rounds {
        let (status, text) = fleet.api(
            round % 3,
            "POST",
            "/api/v1/certificates/bench.example.com/renew",
            None,
        );
        assert_eq!(status, 202, "{text}");
        serial =
            fleet.wait_served_everywhere("bench.example.com", &serial, Duration::from_secs(30));
    }
    let stamp = |line: &str| -> Option<f64> {
        let t = line.split_whitespace().next()?;
        let t = humantime::parse_rfc3339(t).ok()?;
        Some(t.duration_since(std::time::UNIX_EPOCH).ok()?.as_secs_f64())
    };
    let serial_of = |line: &str| -> Option<String> {
        let rest = line.split("serial=").nth(1)?;
        Some(rest.split_whitespace().next()?.trim_matches('"').to_owned())
    };
    let logs: Vec<String> = fleet.nodes.iter().flatten().map(EdgeProcess::log).collect();
    let mut stored = std::collections::HashMap::new();
    for (node, log) in logs.iter().enumerate() {
        for line in log
            .lines()
            .filter(|l| l.contains("storing the certificate"))
        {
            if let (Some(t), Some(s)) = (stamp(line), serial_of(line)) {
                stored.insert(s, (node, t));
            }
        }
    }
    let mut delays: Vec<f64> = Vec::new();
    for (node, log) in logs.iter().enumerate() {
        let mut seen = std::collections::HashSet::new();
        for line in log.lines().filter(|l| l.contains("swapped in")) {
            // The storing node may see its own record come back before it swaps it in
            // itself: not a propagation.
            if let (Some(t), Some(s)) = (stamp(line), serial_of(line))
                && let Some((by, t0)) = stored.get(&s)
                && *by != node
                && seen.insert(s.clone())
            {
                delays.push((t - t0) * 1000.0);
            }
        }
    }
    delays.sort_by(f64::total_cmp);
    let orders: usize = logs
        .iter()
        .map(|l| l.matches("ACME order placed").count())
        .sum();
    let stores: usize = logs
        .iter()
        .map(|l| l.matches("storing the certificate").count())
        .sum();
    println!("{rounds} renewals: {orders} orders, {stores} certificates stored");
    assert!(delays.len() >= rounds, "{delays:?}");
    let at = |q: f64| delays[((delays.len() as f64 - 1.0) * q).round() as usize];
    println!(
        "swap propagation, store → other node: {} swaps, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        delays.len(),
        at(0.5),
        at(0.99),
        delays[delays.len() - 1]
    );
}
