//! A restart with N onboarded sites: N sites registered through onboarding and active, each
//! with its own certificate and key in the default (embedded) store, exactly as the edge
//! writes them. Starts the real `onehttps` binary on that data directory and reports the time
//! from spawn to the first handshake served for a site in the middle and to "ready" (every
//! site in the table); once the start has also filled its renewal and DNS-check queues
//! (which it does beside serving), the RSS and the store's size on disk; then registers
//! [`ADDS`] more sites one after another through `POST /api/v1/sites` and reports the
//! latency of one registration at that size (p50 and p99).
//!
//! Run: `cargo bench --bench restart` (N = 1000, 100000, 1000000) or `cargo bench --bench
//! restart -- 20000`. The dataset is generated on first use under `target/bench-restart/<N>/`
//! (throwaway keys, sealed under that directory's master key) and reused.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use onehttps::config::StorageSettings;
use onehttps::onboarding::SiteRecord;
use onehttps::store::Store;

mod support;
use support::{
    BenchCa, Error, free_port, handshake, onboarded_site, rss_bytes, site_name, tls_client,
};

/// Registrations timed after the restart.
const ADDS: usize = 500;

/// Sites written per store transaction while generating.
const CHUNK: usize = 4096;

fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let sizes: Vec<usize> = if args.is_empty() {
        vec![1_000, 100_000, 1_000_000]
    } else {
        args.iter().map(|a| a.parse()).collect::<Result<_, _>>()?
    };
    println!(
        "{:>9} | {:>13} | {:>11} | {:>12} | {:>12} | {:>11} | {:>9} | {:>9}",
        "sites", "first served", "all ready", "RSS", "RSS/site", "store file", "add p50", "add p99"
    );
    for n in sizes {
        ensure_dataset(n)?;
        measure(n)?;
    }
    Ok(())
}

/// Writes N active onboarded sites with certificates into `<dir>/data` unless done before.
fn ensure_dataset(n: usize) -> Result<(), Error> {
    let dir = support::dataset_dir("bench-restart", n);
    if dir.join("done").exists() {
        return Ok(());
    }
    eprintln!("generating {n} onboarded sites in {} (once)", dir.display());
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let store = Store::open_with(&StorageSettings::Embedded, &dir.join("data"))?;
    let ca = BenchCa::new()?;
    let started = Instant::now();
    for first in (0..n).step_by(CHUNK) {
        let last = (first + CHUNK).min(n);
        let sites =
            support::on_every_core(first..last, |i| onboarded_site(&ca, &store, &site_name(i)))?;
        let entries: Vec<(String, Vec<u8>)> = sites.into_iter().flatten().collect();
        store.put_many(&entries)?;
        if last.is_multiple_of(CHUNK * 32) || last == n {
            eprintln!("  {last} sites ({:.0} s)", started.elapsed().as_secs_f64());
        }
    }
    std::fs::write(dir.join("root.der"), &ca.root_der)?;
    std::fs::write(dir.join("done"), b"")?;
    Ok(())
}

fn measure(n: usize) -> Result<(), Error> {
    let dir = support::dataset_dir("bench-restart", n);
    let data = dir.join("data");
    let (https, http, admin) = (free_port()?, free_port()?, free_port()?);
    let config = dir.join("onehttps.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nhttps = \"127.0.0.1:{https}\"\nhttp = \"127.0.0.1:{http}\"\nadmin = \"127.0.0.1:{admin}\"\ndata_dir = \"{}\"\n\n[onboarding]\ncname_zone = \"edge.bench.example\"\nallow_private_origins = true\n",
            data.display()
        ),
    )?;
    let log = std::fs::File::create(dir.join("edge.log"))?;
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_onehttps"))
        .args(["run", "--config"])
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()?;
    let pid = child.id();
    let result = serving_times(n, &dir, https, started).and_then(|(first, ready)| {
        let token = std::fs::read_to_string(data.join("admin.token"))?;
        // The RSS and a registration at this size once the start's last work (filling the
        // queues beside serving) is done.
        wait_log(&dir, "renewals and DNS checks queued", started)?;
        let rss = rss_bytes(&pid.to_string());
        Ok(((first, ready, rss), registrations(admin, token.trim())?))
    });
    let _ = Command::new("kill").arg(child.id().to_string()).status();
    let _ = child.wait();
    let ((first, ready, rss), mut adds) = result?;
    // The registrations are removed again, so the dataset stays N sites.
    let store = Store::open_with(&StorageSettings::Embedded, &data)?;
    for site in store
        .load_json_dir::<SiteRecord>("sites")
        .into_iter()
        .flatten()
    {
        if site.hosts[0].starts_with("added") {
            store.remove(&SiteRecord::path(&site.id))?;
        }
    }
    adds.sort_unstable();
    let file = std::fs::metadata(data.join("store.redb"))?.len();
    println!(
        "{:>9} | {:>11.2} s | {:>9.2} s | {:>8.0} MiB | {:>10} B | {:>7.0} MiB | {:>6.2} ms | {:>6.2} ms",
        n,
        first.as_secs_f64(),
        ready.as_secs_f64(),
        rss as f64 / (1024.0 * 1024.0),
        rss / n as u64,
        file as f64 / (1024.0 * 1024.0),
        adds[adds.len() / 2].as_secs_f64() * 1e3,
        adds[adds.len() * 99 / 100].as_secs_f64() * 1e3,
    );
    Ok(())
}

/// Registers [`ADDS`] sites one after another; the time of each `POST /api/v1/sites`.
fn registrations(admin: u16, token: &str) -> Result<Vec<Duration>, Error> {
    let mut times = Vec::with_capacity(ADDS);
    for i in 0..ADDS {
        let body = format!(
            "{{\"hosts\":[\"added{i}.bench.example\"],\"origins\":[\"http://127.0.0.1:9\"]}}"
        );
        let request = format!(
            "POST /api/v1/sites HTTP/1.1\r\nhost: 127.0.0.1\r\nauthorization: Bearer {token}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        let started = Instant::now();
        let mut tcp = TcpStream::connect(("127.0.0.1", admin))?;
        tcp.write_all(request.as_bytes())?;
        let mut response = String::new();
        tcp.read_to_string(&mut response)?;
        times.push(started.elapsed());
        if !response.starts_with("HTTP/1.1 201") {
            return Err(format!("registration {i} refused: {response}").into());
        }
    }
    Ok(times)
}

/// Waits for the first served handshake (a site in the middle), then for the log's "ready"
/// line, then checks sites across the whole range; returns both times.
fn serving_times(
    n: usize,
    dir: &Path,
    https: u16,
    started: Instant,
) -> Result<(Duration, Duration), Error> {
    let client = tls_client(&std::fs::read(dir.join("root.der"))?)?;
    let addr = SocketAddr::from(([127, 0, 0, 1], https));
    let deadline = started + Duration::from_secs(600);
    let first = loop {
        if handshake(&client, addr, &site_name(n / 2)).is_ok() {
            break started.elapsed();
        }
        if Instant::now() > deadline {
            return Err(format!(
                "no handshake within 600 s; see {}",
                dir.join("edge.log").display()
            )
            .into());
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let ready = wait_log(dir, "onehttps ready", started)?;
    for i in [0, n / 3, n - 1] {
        handshake(&client, addr, &site_name(i))
            .map_err(|e| format!("{} is not served: {e}", site_name(i)))?;
    }
    Ok((first, ready))
}

/// Waits for `line` in the edge's log; the time since `started`.
fn wait_log(dir: &Path, line: &str, started: Instant) -> Result<Duration, Error> {
    let deadline = started + Duration::from_secs(600);
    loop {
        if std::fs::read_to_string(dir.join("edge.log"))?.contains(line) {
            return Ok(started.elapsed());
        }
        if Instant::now() > deadline {
            return Err(format!("no \"{line}\" within 600 s").into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
