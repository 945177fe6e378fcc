//! A real ACME CA for tests: Pebble (Debian package `pebble`) with pebble-challtestsrv as its
//! DNS server (every name answers 127.0.0.1), on free ports, killed on drop. Pebble's
//! validator connects to the edge's own HTTP and HTTPS ports.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{EdgePorts, TestCa, free_port, need};

/// How Pebble should behave.
#[derive(Debug, Clone, Copy, Default)]
pub struct PebbleOptions {
    /// Lifetime of issued certificates in seconds (`None`: Pebble's default, 5 years).
    pub validity_secs: Option<u64>,
    /// Keep Pebble's default 5 % `badNonce` rejection (real CAs reject nonces too).
    pub reject_nonces: bool,
    /// DNS-01 through a real resolver: Pebble asks unbound, which delegates `example.com` to
    /// challtestsrv and this zone to the edge's DNS server on this port.
    pub acme_zone: Option<(&'static str, u16)>,
}

/// How the edge is told Pebble names itself in CAA records (Pebble's directory has no
/// `caaIdentities`).
pub const PEBBLE_CAA_IDENTITY: &str = "pebble.letsencrypt.org";

pub struct Pebble {
    dir: tempfile::TempDir,
    pebble: Option<Child>,
    dns: Option<Child>,
    options: PebbleOptions,
    pub port: u16,
    pub mgmt_port: u16,
    pub dns_port: u16,
    pub dns_mgmt_port: u16,
    edge_http: u16,
    edge_https: u16,
    /// The resolver Pebble uses when `acme_zone` is set.
    pub unbound: Option<super::unbound::Unbound>,
}

impl Pebble {
    /// Starts challtestsrv and Pebble, validating against `edge`'s ports.
    pub fn start(edge: &EdgePorts, options: PebbleOptions) -> Self {
        need("pebble", "pebble");
        need("pebble-challtestsrv", "pebble");
        let dir = tempfile::tempdir().unwrap();
        // Pebble's own HTTPS certificate, for localhost / 127.0.0.1.
        let ca = TestCa::new();
        let leaf = ca.issue(&["localhost", "127.0.0.1"], 30);
        std::fs::write(dir.path().join("wfe.pem"), &leaf.chain_pem).unwrap();
        std::fs::write(dir.path().join("wfe.key"), &leaf.key_pem).unwrap();
        std::fs::write(dir.path().join("wfe-root.pem"), &ca.root_pem).unwrap();
        let mut pebble = Self {
            dir,
            pebble: None,
            dns: None,
            options,
            port: free_port(),
            mgmt_port: free_port(),
            dns_port: free_port(),
            dns_mgmt_port: free_port(),
            edge_http: edge.http,
            edge_https: edge.https,
            unbound: None,
        };
        pebble.start_dns();
        if let Some((zone, edge_dns)) = options.acme_zone {
            pebble.unbound = Some(super::unbound::Unbound::start(
                "example.com",
                pebble.dns_port,
                zone,
                edge_dns,
            ));
        }
        pebble.start_ca();
        pebble
    }

    fn start_dns(&mut self) {
        let log = std::fs::File::create(self.dir.path().join("dns.log")).unwrap();
        let child = Command::new("pebble-challtestsrv")
            .args(["-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""])
            .args(["-http01", "", "-https01", "", "-tlsalpn01", ""])
            .arg("-dns01")
            .arg(format!("127.0.0.1:{}", self.dns_port))
            .arg("-management")
            .arg(format!("127.0.0.1:{}", self.dns_mgmt_port))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start pebble-challtestsrv");
        self.dns = Some(child);
        wait_port(
            self.dns_mgmt_port,
            "pebble-challtestsrv",
            &self.dir.path().join("dns.log"),
        );
    }

    fn start_ca(&mut self) {
        let mut settings = serde_json::json!({
            "listenAddress": format!("127.0.0.1:{}", self.port),
            "managementListenAddress": format!("127.0.0.1:{}", self.mgmt_port),
            "certificate": self.dir.path().join("wfe.pem"),
            "privateKey": self.dir.path().join("wfe.key"),
            "httpPort": self.edge_http,
            "tlsPort": self.edge_https,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": false,
        });
        if let Some(secs) = self.options.validity_secs {
            settings["certificateValidityPeriod"] = secs.into();
        }
        let config = self.dir.path().join("pebble.json");
        std::fs::write(
            &config,
            serde_json::json!({ "pebble": settings }).to_string(),
        )
        .unwrap();
        let log_path = self.dir.path().join("pebble.log");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .unwrap();
        let mut cmd = Command::new("pebble");
        cmd.arg("-config")
            .arg(&config)
            .arg("-dnsserver")
            .arg(format!(
                "127.0.0.1:{}",
                self.unbound.as_ref().map_or(self.dns_port, |u| u.port)
            ))
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_AUTHZREUSE", "0");
        if !self.options.reject_nonces {
            cmd.env("PEBBLE_WFE_NONCEREJECT", "0");
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start pebble");
        self.pebble = Some(child);
        wait_port(self.port, "pebble", &log_path);
        wait_port(self.mgmt_port, "pebble management", &log_path);
    }

    /// Stops the CA (DNS keeps running); `resume` starts a fresh one on the same ports.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.pebble.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn resume(&mut self) {
        self.start_ca();
    }

    /// The `[acme]` table pointing the edge at this Pebble (fast retries for tests), with
    /// pre-flight checks asking challtestsrv, the DNS Pebble validates with.
    pub fn acme_table(&self, extra: &str) -> String {
        format!(
            "\n[acme]\ndirectory = \"https://127.0.0.1:{}/dir\"\nca_roots = \"{}\"\nretry_min = \"1s\"\nretry_max = \"4s\"\nnameservers = [\"127.0.0.1:{}\"]\ncaa_identities = [\"{PEBBLE_CAA_IDENTITY}\"]\nhttp01_port = {}\ntls_alpn01_port = {}\n{extra}\n",
            self.port,
            self.dir.path().join("wfe-root.pem").display(),
            self.dns_port,
            self.edge_http,
            self.edge_https
        )
    }

    /// An edge on `ports` issuing from this Pebble over HTTP-01, with CNAME onboarding on and
    /// `extra` appended to its config.
    pub fn start_onboarding_edge(&self, ports: &EdgePorts, extra: &str) -> super::EdgeProcess {
        let dir = tempfile::tempdir().unwrap();
        let mut config = ports.server_table(&dir.path().join("data"));
        config.push_str(&self.acme_table("challenges = [\"http-01\"]"));
        config.push_str(&self.onboarding_table());
        config.push_str(extra);
        super::EdgeProcess::start(dir, ports, &config)
    }

    /// The root Pebble issues under (random per start), PEM, written into `dir`.
    pub fn write_issuing_root(&self, dir: &Path) -> PathBuf {
        let out = Command::new("curl")
            .args(["-sS", "--fail", "--cacert"])
            .arg(self.dir.path().join("wfe-root.pem"))
            .arg(format!("https://127.0.0.1:{}/roots/0", self.mgmt_port))
            .output()
            .expect("curl is installed");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let path = dir.join("pebble-root.pem");
        std::fs::write(&path, &out.stdout).unwrap();
        path
    }

    /// POSTs `body` to a challtestsrv management endpoint (`/set-cname`, `/add-txt`, …).
    pub fn dns(&self, endpoint: &str, body: serde_json::Value) {
        let out = Command::new("curl")
            .args(["-sS", "--fail", "-X", "POST", "-d"])
            .arg(body.to_string())
            .arg(format!("http://127.0.0.1:{}{endpoint}", self.dns_mgmt_port))
            .output()
            .expect("curl is installed");
        assert!(
            out.status.success(),
            "{endpoint}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn set_cname(&self, host: &str, target: &str) {
        self.dns(
            "/set-cname",
            serde_json::json!({ "host": format!("{host}."), "target": format!("{target}.") }),
        );
    }

    pub fn clear_cname(&self, host: &str) {
        self.dns(
            "/clear-cname",
            serde_json::json!({ "host": format!("{host}.") }),
        );
    }

    /// The `[onboarding]` table using this DNS server, with fast re-checks for tests. Every
    /// origin of a test is on loopback, so private origins are allowed.
    pub fn onboarding_table(&self) -> String {
        self.onboarding_table_with("allow_private_origins = true\n")
    }

    /// The `[onboarding]` table with `extra` keys.
    pub fn onboarding_table_with(&self, extra: &str) -> String {
        format!(
            "\n[onboarding]\ncname_zone = \"edge.test\"\nnameservers = [\"127.0.0.1:{}\"]\nedge_addresses = [\"127.0.0.1\"]\nrecheck_min = \"500ms\"\nrecheck_max = \"1s\"\nactive_recheck = \"1s\"\n{extra}",
            self.dns_port
        )
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("pebble.log")).unwrap_or_default()
    }
}

impl Drop for Pebble {
    fn drop(&mut self) {
        for child in [self.pebble.take(), self.dns.take()].into_iter().flatten() {
            let mut child = child;
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn wait_port(port: u16, what: &str, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "{what} did not listen on {port}:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
