//! A fleet of three edges on a three-member etcd cluster, all on this machine: N onboarded,
//! active sites with their certificates in etcd (written as the edge writes them, sealed
//! under the fleet's master key). Starts the three `onehttps` nodes at once (127.0.0.1, .2
//! and .3, the same ports) and reports for each the time from spawn to its first handshake
//! for a site in the middle and to "ready", and its RSS once serving; then stores [`SWAPS`]
//! renewed certificates one after another, as the node that renewed them would, and reports
//! how long each took from the store to being swapped in on every node (p50, p99, max: from
//! just before the write to each node's "swapped in" log line, by its timestamp), once the
//! fleet has settled for [`SETTLE`].
//!
//! Run: `cargo bench --bench fleet` (N = 100000) or `cargo bench --bench fleet -- 10000`.
//! Needs `etcd` (Debian `etcd-server`). The etcd data is kept under
//! `target/bench-fleet/<N>/` and reused; the members are started and killed by the bench.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use rustls::ClientConfig;

use onehttps::certs::HostName;
use onehttps::config::Config;
use onehttps::store::Store;

mod support;
use support::{
    BenchCa, Error, certificate, free_port, handshake, onboarded_site, rss_bytes, site_name,
    tls_client,
};

/// Renewed certificates stored after the start.
const SWAPS: usize = 100;

/// Pause between the start and the swaps.
const SETTLE: Duration = Duration::from_secs(10);

/// Sites generated per batch (each batch: one transaction per 128 entries).
const CHUNK: usize = 4096;

const PREFIX: &str = "/bench";

fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let n: usize = match args.first() {
        Some(n) => n.parse()?,
        None => 100_000,
    };
    let dir = support::dataset_dir("bench-fleet", n);
    std::fs::create_dir_all(&dir)?;
    let etcd = EtcdCluster::start(&dir)?;
    let store = fleet_store(&etcd, &dir.join("generator"))?;
    let ca = ensure_dataset(n, &dir, &store)?;
    // As in a fleet whose etcd runs all along: history compacted (etcd's auto-compaction),
    // members idle before the edges start.
    etcd.compact()?;
    etcd.wait_idle();
    let etcd_cpu = etcd.cpu_seconds();
    let nodes = start_nodes(&dir, &etcd)?;
    let result = measure(n, &dir, &nodes, &store, &ca, || {
        etcd.cpu_seconds() - etcd_cpu
    });
    drop(nodes);
    result
}

/// The fleet's store as a fourth member sees it (the generator and the "renewing node").
fn fleet_store(etcd: &EtcdCluster, data: &Path) -> Result<Store, Error> {
    let config = Config::parse(
        &format!(
            "[storage]\nkind = \"etcd\"\nendpoints = {}\nprefix = \"{PREFIX}\"\nnode_id = \"bench\"\ntimeout = \"10s\"\n",
            etcd.endpoints_toml()
        ),
        data,
    )
    .map_err(|issues| format!("bench config: {issues:?}"))?;
    Ok(Store::open_with(&config.storage, data)?)
}

/// Writes N active onboarded sites with certificates into etcd unless done before; the CA.
fn ensure_dataset(n: usize, dir: &Path, store: &Store) -> Result<BenchCa, Error> {
    let ca_path = dir.join("ca.der");
    if dir.join("done").exists() {
        return BenchCa::load(&ca_path);
    }
    eprintln!("generating {n} onboarded sites in etcd (once)");
    let ca = BenchCa::new()?;
    let started = Instant::now();
    for first in (0..n).step_by(CHUNK) {
        let last = (first + CHUNK).min(n);
        let sites =
            support::on_every_core(first..last, |i| onboarded_site(&ca, store, &site_name(i)))?;
        let entries: Vec<(String, Vec<u8>)> = sites.into_iter().flatten().collect();
        store.put_many(&entries)?;
        if last.is_multiple_of(CHUNK * 8) || last == n {
            eprintln!("  {last} sites ({:.0} s)", started.elapsed().as_secs_f64());
        }
    }
    ca.save(&ca_path)?;
    std::fs::write(dir.join("done"), b"")?;
    Ok(ca)
}

/// Three members on loopback, on data kept between runs; killed on drop.
struct EtcdCluster {
    members: Vec<Child>,
    clients: Vec<u16>,
}

impl EtcdCluster {
    fn start(dir: &Path) -> Result<Self, Error> {
        let ports_file = dir.join("etcd-ports");
        // A member's peer address is in its data: the same ports on every run.
        let ports: Vec<u16> = match std::fs::read_to_string(&ports_file) {
            Ok(text) => text
                .split_whitespace()
                .map(str::parse)
                .collect::<Result<_, _>>()?,
            Err(_) => {
                let ports = (0..6).map(|_| free_port()).collect::<Result<Vec<_>, _>>()?;
                let text: Vec<String> = ports.iter().map(u16::to_string).collect();
                std::fs::write(&ports_file, text.join(" "))?;
                ports
            }
        };
        let (clients, peers) = ports.split_at(3);
        let cluster: Vec<String> = peers
            .iter()
            .enumerate()
            .map(|(i, p)| format!("m{i}=http://127.0.0.1:{p}"))
            .collect();
        let mut members = Vec::new();
        for i in 0..3 {
            let client = format!("http://127.0.0.1:{}", clients[i]);
            let peer = format!("http://127.0.0.1:{}", peers[i]);
            let log = std::fs::File::create(dir.join(format!("etcd-m{i}.log")))?;
            let child = Command::new("etcd")
                .arg("--name")
                .arg(format!("m{i}"))
                .arg("--data-dir")
                .arg(dir.join(format!("etcd-m{i}")))
                .args(["--listen-client-urls", &client])
                .args(["--advertise-client-urls", &client])
                .args(["--listen-peer-urls", &peer])
                .args(["--initial-advertise-peer-urls", &peer])
                .args(["--initial-cluster", &cluster.join(",")])
                .args(["--initial-cluster-state", "new"])
                .args(["--initial-cluster-token", "onehttps-bench"])
                .args(["--quota-backend-bytes", &(8u64 << 30).to_string()])
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log)
                .spawn()
                .map_err(|e| format!("cannot start etcd (Debian package etcd-server): {e}"))?;
            members.push(child);
        }
        let etcd = Self {
            members,
            clients: clients.to_vec(),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while !etcd.clients.iter().all(|p| health(*p)) {
            if Instant::now() > deadline {
                return Err("etcd did not become healthy within 60 s".into());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(etcd)
    }

    /// `etcdctl` on the first member.
    fn ctl(&self, args: &[&str]) -> Result<String, Error> {
        let out = Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints=http://127.0.0.1:{}", self.clients[0]))
            .args(["--command-timeout", "60s"])
            .args(args)
            .output()
            .map_err(|e| format!("cannot run etcdctl (Debian package etcd-client): {e}"))?;
        if !out.status.success() {
            return Err(
                format!("etcdctl {args:?}: {}", String::from_utf8_lossy(&out.stderr)).into(),
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Drops the history before the current revision and defragments every member.
    fn compact(&self) -> Result<(), Error> {
        let status = self.ctl(&["endpoint", "status", "-w", "json"])?;
        let status: serde_json::Value = serde_json::from_str(&status)?;
        let revision = status[0]["Status"]["header"]["revision"]
            .as_i64()
            .ok_or("etcdctl endpoint status: no revision")?;
        let _ = self.ctl(&["compact", &revision.to_string(), "--physical"]);
        let all: Vec<String> = self
            .clients
            .iter()
            .map(|p| format!("http://127.0.0.1:{p}"))
            .collect();
        self.ctl(&[
            "defrag",
            "--cluster",
            &format!("--endpoints={}", all.join(",")),
        ])?;
        Ok(())
    }

    /// CPU time the members have used, in seconds.
    fn cpu_seconds(&self) -> f64 {
        self.members.iter().map(|m| cpu_seconds(m.id())).sum()
    }

    /// Waits until the members use less than a tenth of a core (their start-up work done).
    fn wait_idle(&self) {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let before = self.cpu_seconds();
            std::thread::sleep(Duration::from_secs(1));
            let after = self.cpu_seconds();
            if after - before < 0.1 || Instant::now() > deadline {
                return;
            }
        }
    }

    fn endpoints_toml(&self) -> String {
        let list: Vec<String> = self
            .clients
            .iter()
            .map(|p| format!("\"http://127.0.0.1:{p}\""))
            .collect();
        format!("[{}]", list.join(", "))
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for child in &mut self.members {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Whether the member answering on `port` says it is healthy.
fn health(port: u16) -> bool {
    let Ok(mut tcp) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = tcp.set_read_timeout(Some(Duration::from_secs(2)));
    let request = "GET /health HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\r\n";
    let mut response = String::new();
    tcp.write_all(request.as_bytes()).is_ok()
        && tcp.read_to_string(&mut response).is_ok()
        && response.contains("\"health\":\"true\"")
}

/// One edge of the fleet.
struct Node {
    child: Child,
    started: Instant,
    log: PathBuf,
    addr: SocketAddr,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the three nodes at once, each with the fleet's master key.
fn start_nodes(dir: &Path, etcd: &EtcdCluster) -> Result<Vec<Node>, Error> {
    let (https, http) = (free_port()?, free_port()?);
    let master = std::fs::read(dir.join("generator/master.key"))?;
    let mut nodes = Vec::new();
    for i in 0..3 {
        let node_dir = dir.join(format!("node{i}"));
        let _ = std::fs::remove_dir_all(&node_dir);
        std::fs::create_dir_all(node_dir.join("data"))?;
        let key = node_dir.join("data/master.key");
        std::fs::write(&key, &master)?;
        std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
        let ip = format!("127.0.0.{}", i + 1);
        let config = node_dir.join("onehttps.toml");
        std::fs::write(
            &config,
            format!(
                "[server]\nhttps = \"{ip}:{https}\"\nhttp = \"{ip}:{http}\"\nadmin = \"127.0.0.1:{admin}\"\ndata_dir = \"{data}\"\n\n[storage]\nkind = \"etcd\"\nendpoints = {endpoints}\nprefix = \"{PREFIX}\"\nnode_id = \"edge-{n}\"\n\n[onboarding]\ncname_zone = \"edge.bench.example\"\nallow_private_origins = true\n",
                admin = free_port()?,
                data = node_dir.join("data").display(),
                endpoints = etcd.endpoints_toml(),
                n = i + 1,
            ),
        )?;
        let log = node_dir.join("edge.log");
        let started = Instant::now();
        let child = Command::new(env!("CARGO_BIN_EXE_onehttps"))
            .args(["run", "--config"])
            .arg(&config)
            .env(
                "RUST_LOG",
                std::env::var("BENCH_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()?;
        nodes.push(Node {
            child,
            started,
            log,
            addr: format!("{ip}:{https}").parse()?,
        });
    }
    Ok(nodes)
}

fn measure(
    n: usize,
    dir: &Path,
    nodes: &[Node],
    store: &Store,
    ca: &BenchCa,
    etcd_cpu: impl Fn() -> f64,
) -> Result<(), Error> {
    let client = tls_client(&ca.root_der)?;
    println!(
        "{:>7} | {:>13} | {:>9} | {:>10} | {:>8} | fleet of 3 on a 3-member etcd, {n} sites",
        "node", "first served", "ready", "CPU used", "RSS"
    );
    for (i, node) in nodes.iter().enumerate() {
        let (first, ready) = serving_times(n, node, &client)?;
        println!(
            "{:>7} | {:>11.2} s | {:>7.2} s | {:>8.2} s | {:>4.0} MiB",
            format!("edge-{}", i + 1),
            first.as_secs_f64(),
            ready.as_secs_f64(),
            cpu_seconds(node.child.id()),
            rss_bytes(&node.child.id().to_string()) as f64 / (1024.0 * 1024.0)
        );
    }
    println!(
        "etcd members: {:.1} CPU s while the nodes started",
        etcd_cpu()
    );
    // Swaps are measured on a settled fleet, not while the nodes' first background steps run.
    std::thread::sleep(SETTLE);
    let mut delays = Vec::with_capacity(SWAPS * nodes.len());
    for round in 0..SWAPS {
        let host = site_name(round * (n / SWAPS).max(1) % n);
        let (record, serial) = certificate(ca, store, &host)?;
        let names = [HostName::parse(&host)?];
        let (key, bytes) =
            onehttps::managed::records::CertRecords::new(store).encode(&names, &record)?;
        let stored_at = SystemTime::now();
        store.put_many(&[(key, bytes)])?;
        for node in nodes {
            let swapped = wait_swapped(node, &serial)?;
            delays.push(swapped.duration_since(stored_at).unwrap_or_default());
        }
    }
    delays.sort_unstable();
    let at = |q: f64| delays[((delays.len() - 1) as f64 * q).round() as usize];
    println!(
        "swap propagation, store → every node: {} swaps, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        delays.len(),
        at(0.5).as_secs_f64() * 1e3,
        at(0.99).as_secs_f64() * 1e3,
        delays[delays.len() - 1].as_secs_f64() * 1e3
    );
    let etcd_bytes = dir_size(&dir.join("etcd-m0"));
    println!(
        "etcd member data: {:.0} MiB",
        etcd_bytes as f64 / (1024.0 * 1024.0)
    );
    Ok(())
}

/// Time from the node's spawn to its first handshake for a site in the middle, and to its
/// "ready" line; then a few sites across the range are checked.
fn serving_times(
    n: usize,
    node: &Node,
    client: &Arc<ClientConfig>,
) -> Result<(Duration, Duration), Error> {
    let deadline = node.started + Duration::from_secs(600);
    let first = loop {
        if handshake(client, node.addr, &site_name(n / 2)).is_ok() {
            break node.started.elapsed();
        }
        if Instant::now() > deadline {
            return Err(format!("no handshake within 600 s; see {}", node.log.display()).into());
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let ready = loop {
        if std::fs::read_to_string(&node.log)?.contains("onehttps ready") {
            break node.started.elapsed();
        }
        if Instant::now() > deadline {
            return Err("no \"onehttps ready\" within 600 s".into());
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    for i in [0, n / 3, n - 1] {
        handshake(client, node.addr, &site_name(i))
            .map_err(|e| format!("{} is not served by {}: {e}", site_name(i), node.addr))?;
    }
    Ok((first.min(ready), ready))
}

/// When `node` logged swapping in the certificate with `serial` (its log's timestamp).
fn wait_swapped(node: &Node, serial: &str) -> Result<SystemTime, Error> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let needle = format!("serial={serial}");
    loop {
        let log = std::fs::read_to_string(&node.log)?;
        if let Some(line) = log
            .lines()
            .rev()
            .find(|l| l.contains("swapped in") && l.contains(&needle))
        {
            let stamp = line.split_whitespace().next().unwrap_or_default();
            return Ok(humantime::parse_rfc3339(stamp)?);
        }
        if Instant::now() > deadline {
            return Err(format!("{} never swapped in {serial}", node.addr).into());
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// CPU time (user + system) process `pid` has used, in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command (which may hold spaces) : utime and stime are the 12th and 13th.
    let after = stat.rsplit(')').next().unwrap_or_default();
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // USER_HZ: 100 on every Linux architecture.
    (ticks(11) + ticks(12)) / 100.0
}

/// Bytes of the files under `dir`.
fn dir_size(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_size(&e.path()),
            _ => e.metadata().map_or(0, |m| m.len()),
        })
        .sum()
}
