//! A real etcd cluster for fleet tests (Debian package `etcd-server`): `n` members on free
//! loopback ports, each with its own data directory, killed by PID on drop. A member can be
//! killed and started again on the same data, and the whole cluster too.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::free_port;

struct Member {
    name: String,
    client: u16,
    peer: u16,
    child: Option<Child>,
}

pub struct Etcd {
    dir: tempfile::TempDir,
    members: Vec<Member>,
}

impl Etcd {
    /// Starts `n` members and waits until the cluster answers.
    pub fn start(n: usize) -> Self {
        assert!(
            Command::new("sh")
                .args(["-c", "command -v etcd && command -v etcdctl"])
                .stdout(Stdio::null())
                .status()
                .is_ok_and(|s| s.success()),
            "etcd is missing: install the Debian packages `etcd-server` and `etcd-client` (scripts/test does)"
        );
        let members = (0..n)
            .map(|i| Member {
                name: format!("m{i}"),
                client: free_port(),
                peer: free_port(),
                child: None,
            })
            .collect();
        let mut etcd = Self {
            dir: tempfile::tempdir().unwrap(),
            members,
        };
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
        let client = format!("http://127.0.0.1:{}", m.client);
        let peer = format!("http://127.0.0.1:{}", m.peer);
        let child = Command::new("etcd")
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
            .map(|m| format!("\"http://127.0.0.1:{}\"", m.client))
            .collect();
        format!("[{}]", list.join(", "))
    }

    fn endpoints(&self) -> String {
        self.members
            .iter()
            .filter(|m| m.child.is_some())
            .map(|m| format!("http://127.0.0.1:{}", m.client))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// `etcdctl <args>` against the running members: stdout.
    pub fn ctl(&self, args: &[&str]) -> String {
        let out = Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .arg("--endpoints")
            .arg(self.endpoints())
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
            let ok = Command::new("etcdctl")
                .env("ETCDCTL_API", "3")
                .arg("--endpoints")
                .arg(self.endpoints())
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
