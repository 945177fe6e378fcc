//! A real recursive resolver for DNS-01 tests: unbound (Debian package `unbound`) on a free
//! loopback port, with the site owner's zone delegated (stub zone) to pebble-challtestsrv and
//! the edge's ACME zone delegated to the edge's own DNS server. Pebble resolves through it,
//! as a CA resolves through the public DNS. Killed on drop.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::free_port;

pub struct Unbound {
    _dir: tempfile::TempDir,
    child: Option<Child>,
    pub port: u16,
}

impl Unbound {
    /// Resolves `customer_zone` at `customer_dns` and `acme_zone` at `edge_dns` (loopback
    /// ports), nothing else.
    pub fn start(customer_zone: &str, customer_dns: u16, acme_zone: &str, edge_dns: u16) -> Self {
        // Debian installs it in /usr/sbin, which a non-root PATH may lack.
        let binary = if std::path::Path::new("/usr/sbin/unbound").exists() {
            "/usr/sbin/unbound"
        } else {
            "unbound"
        };
        super::need(binary, "unbound");
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let config = format!(
            r#"server:
    interface: 127.0.0.1
    port: {port}
    do-ip6: no
    do-daemonize: no
    use-syslog: no
    logfile: ""
    verbosity: 1
    chroot: ""
    username: ""
    directory: "{dir}"
    pidfile: ""
    access-control: 127.0.0.0/8 allow
    do-not-query-localhost: no
    module-config: "iterator"
    qname-minimisation: no
    cache-max-ttl: 0
    cache-max-negative-ttl: 0
    infra-host-ttl: 1
stub-zone:
    name: "{customer_zone}"
    stub-addr: 127.0.0.1@{customer_dns}
stub-zone:
    name: "{acme_zone}"
    stub-addr: 127.0.0.1@{edge_dns}
"#,
            dir = dir.path().display()
        );
        let path = dir.path().join("unbound.conf");
        std::fs::write(&path, config).unwrap();
        let log = std::fs::File::create(dir.path().join("unbound.log")).unwrap();
        let child = Command::new(binary)
            .arg("-d")
            .arg("-c")
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start unbound");
        let unbound = Self {
            child: Some(child),
            port,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "unbound did not listen on {port}:\n{}",
                unbound.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        unbound
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("unbound.log")).unwrap_or_default()
    }
}

impl Drop for Unbound {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
