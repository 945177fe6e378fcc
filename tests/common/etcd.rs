//! A real etcd cluster for fleet tests (Debian package `etcd-server`): `n` members on free
//! loopback ports, each with its own data directory, killed by PID on drop. A member can be
//! killed and started again on the same data, and the whole cluster too. `start_tls` serves
//! clients over mutual TLS only, with certificates from a throwaway CA.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{TestCa, free_port};

struct Member {
    name: String,
    client: u16,
    peer: u16,
    child: Option<Child>,
}

pub struct Etcd {
    dir: tempfile::TempDir,
    members: Vec<Member>,
    tls: Option<TlsFiles>,
}

/// The CA the members' and clients' certificates chain to, a member certificate and a client
/// certificate accepted by the members (PEM files).
pub struct TlsFiles {
    pub ca: PathBuf,
    pub server: (PathBuf, PathBuf),
    pub client: (PathBuf, PathBuf),
}

impl Etcd {
    /// Starts `n` members and waits until the cluster answers.
    pub fn start(n: usize) -> Self {
        Self::start_with(n, false)
    }

    /// Starts `n` members that answer clients over TLS only and require a client certificate.
    pub fn start_tls(n: usize) -> Self {
        Self::start_with(n, true)
    }

    fn start_with(n: usize, tls: bool) -> Self {
        super::need("etcd", "etcd-server");
        super::need("etcdctl", "etcd-client");
        let members = (0..n)
            .map(|i| Member {
                name: format!("m{i}"),
                client: free_port(),
                peer: free_port(),
                child: None,
            })
            .collect();
        let dir = tempfile::tempdir().unwrap();
        let tls = tls.then(|| {
            let ca = TestCa::new();
            let (cert, key) = ca.write_leaf(dir.path(), "member", &["127.0.0.1"], 30);
            let client = ca.write_leaf(dir.path(), "client", &["edge.client"], 30);
            TlsFiles {
                ca: ca.write_root(dir.path()),
                server: (cert, key),
                client,
            }
        });
        let mut etcd = Self { dir, members, tls };
        for i in 0..n {
            etcd.start_member(i);
        }
        etcd.wait_healthy();
        etcd
    }

    fn cluster(&self) -> String {
        self.members
            .iter()
            .map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer))
            .collect::<Vec<_>>()
            .join(",")
    }

    fn log_path(&self, i: usize) -> PathBuf {
        self.dir
            .path()
            .join(format!("{}.log", self.members[i].name))
    }

    /// Starts member `i` (again) on its data directory.
    pub fn start_member(&mut self, i: usize) {
        let cluster = self.cluster();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path(i))
            .unwrap();
        let m = &self.members[i];
        let client = format!("{}://127.0.0.1:{}", self.scheme(), m.client);
        let peer = format!("http://127.0.0.1:{}", m.peer);
        let mut command = Command::new("etcd");
        if let Some(tls) = &self.tls {
            command
                .arg("--cert-file")
                .arg(&tls.server.0)
                .arg("--key-file")
                .arg(&tls.server.1)
                .arg("--trusted-ca-file")
                .arg(&tls.ca)
                .arg("--client-cert-auth");
        }
        let child = command
            .arg("--name")
            .arg(&m.name)
            .arg("--data-dir")
            .arg(self.dir.path().join(&m.name))
            .args(["--listen-client-urls", &client])
            .args(["--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &cluster])
            .args(["--initial-cluster-state", "new"])
            .args(["--initial-cluster-token", "onehttps-test"])
            .args(["--heartbeat-interval", "50", "--election-timeout", "500"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start etcd");
        self.members[i].child = Some(child);
    }

    /// `kill -9` member `i`.
    pub fn kill_member(&mut self, i: usize) {
        if let Some(mut child) = self.members[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// `kill -9` every member.
    pub fn kill_all(&mut self) {
        for i in 0..self.members.len() {
            self.kill_member(i);
        }
    }

    /// Starts every member that is not running and waits until the cluster answers.
    pub fn start_all(&mut self) {
        for i in 0..self.members.len() {
            if self.members[i].child.is_none() {
                self.start_member(i);
            }
        }
        self.wait_healthy();
    }

    /// The `endpoints = [...]` value for the edge's `[storage]` table.
    pub fn endpoints_toml(&self) -> String {
        let list: Vec<String> = self
            .members
            .iter()
            .map(|m| format!("\"{}://127.0.0.1:{}\"", self.scheme(), m.client))
            .collect();
        format!("[{}]", list.join(", "))
    }

    fn endpoints(&self) -> String {
        self.members
            .iter()
            .filter(|m| m.child.is_some())
            .map(|m| format!("{}://127.0.0.1:{}", self.scheme(), m.client))
            .collect::<Vec<_>>()
            .join(",")
    }

    fn scheme(&self) -> &'static str {
        if self.tls.is_some() { "https" } else { "http" }
    }

    /// The certificates of a TLS cluster.
    pub fn tls(&self) -> &TlsFiles {
        self.tls
            .as_ref()
            .expect("the cluster was started with start_tls")
    }

    /// `etcdctl` with the endpoints of the running members (and the client certificate).
    fn etcdctl(&self) -> Command {
        let mut command = Command::new("etcdctl");
        command
            .env("ETCDCTL_API", "3")
            .arg("--endpoints")
            .arg(self.endpoints());
        if let Some(tls) = &self.tls {
            command
                .arg("--cacert")
                .arg(&tls.ca)
                .arg("--cert")
                .arg(&tls.client.0)
                .arg("--key")
                .arg(&tls.client.1);
        }
        command
    }

    /// `etcdctl <args>` against the running members: stdout.
    pub fn ctl(&self, args: &[&str]) -> String {
        let out = self
            .etcdctl()
            .args(["--command-timeout", "3s"])
            .args(args)
            .output()
            .expect("etcdctl is installed");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The keys under `prefix`.
    pub fn keys(&self, prefix: &str) -> Vec<String> {
        self.ctl(&["get", prefix, "--prefix", "--keys-only"])
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect()
    }

    fn wait_healthy(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ok = self
                .etcdctl()
                .args(["--command-timeout", "2s", "put", "/health-probe", "ok"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if ok {
                return;
            }
            if Instant::now() > deadline {
                let logs: Vec<String> = (0..self.members.len())
                    .map(|i| std::fs::read_to_string(self.log_path(i)).unwrap_or_default())
                    .collect();
                panic!("etcd did not become healthy:\n{}", logs.join("\n----\n"));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.kill_all();
    }
}
