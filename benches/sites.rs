//! How many sites one node holds: loads N sites (each with its own certificate and private
//! key, from one local CA) the way the edge loads its store — chain PEM parsed, key opened
//! from the store's seal and sealed again in memory, nothing decoded — into the real site
//! table, then reports resident memory per site, time from process start to the first
//! handshake served on a socket, and the server's CPU for a full TLS 1.3 handshake whose
//! signing key is cold (sealed: opened and decoded on the spot) versus cached.
//!
//! Run: `cargo bench --bench sites` (N = 1000, 100000, 1000000) or `cargo bench --bench
//! sites -- 5000 20000`. The certificates are generated on first use and kept under
//! `target/bench-sites/<N>/` (a store directory and one packed file; throwaway keys, sealed
//! under that directory's master key) so later runs start at once. Each N runs in a fresh
//! child process so its RSS is its own.

use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::client::{ClientConfig, ClientConnection};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::ServerConnection;
use rustls::{RootCertStore, ServerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use onehttps::certs::ServedCert;
use onehttps::certs::{CertBundle, HostName, Source};
use onehttps::config::{IssuerKind, MinTlsVersion, OriginUrl, SiteConfig, TlsSettings};
use onehttps::issue::Challenges;
use onehttps::sites::Site;
use onehttps::store::Store;
use onehttps::tls::{KeyCache, Routes, SiteTable, TableResolver, server_config};

/// Decoded keys kept in the benchmark, as the edge's default `tls.key_cache`.
const KEY_CACHE: usize = 50_000;
/// Handshakes measured per kind (cold keys need as many distinct sites).
const HANDSHAKES: usize = 2_000;

mod support;
use support::{BenchCa, Error, rss_bytes, site_name};

/// The edge binary's allocator (`src/main.rs`), so memory and load time are the edge's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> Result<(), Error> {
    let started = Instant::now();
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    if let [flag, n] = args.as_slice()
        && flag == "--child"
    {
        return child(n.parse()?, started);
    }
    let sizes: Vec<usize> = if args.is_empty() {
        vec![1_000, 100_000, 1_000_000]
    } else {
        args.iter().map(|a| a.parse()).collect::<Result<_, _>>()?
    };
    println!(
        "{:>9} | {:>12} | {:>10} | {:>13} | {:>14} | {:>15}",
        "sites", "RSS", "RSS/site", "start→serving", "cold handshake", "cached handshake"
    );
    for n in sizes {
        ensure_dataset(n)?;
        let out = std::process::Command::new(std::env::current_exe()?)
            .args(["--child", &n.to_string()])
            .output()?;
        if !out.status.success() {
            return Err(format!(
                "the {n}-site run failed: {}",
                String::from_utf8_lossy(&out.stderr)
            )
            .into());
        }
        print!("{}", String::from_utf8_lossy(&out.stdout));
        eprint!("{}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

fn dataset_dir(n: usize) -> PathBuf {
    support::dataset_dir("bench-sites", n)
}

// ---- the dataset: N certificates from one CA, stored once ----

/// Writes `sites.bin` (name, chain PEM, sealed key per site) and `root.der` unless present.
fn ensure_dataset(n: usize) -> Result<(), Error> {
    let dir = dataset_dir(n);
    if dir.join("done").exists() {
        return Ok(());
    }
    eprintln!("generating {n} certificates in {} (once)", dir.display());
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let store = Store::open(&dir.join("store"))?;
    let ca = BenchCa::new()?;

    let parts: Vec<Vec<u8>> = support::on_every_core(0..n, |i| {
        let host = site_name(i);
        let leaf = ca.issue(&host)?;
        let names = [HostName::parse(&host)?];
        let sealed =
            onehttps::managed::records::CertRecords::new(&store).seal_key(&names, &leaf.key_der)?;
        let mut out = Vec::new();
        for field in [
            host.as_bytes(),
            leaf.chain_pem.as_bytes(),
            sealed.as_bytes(),
        ] {
            out.extend_from_slice(&(field.len() as u32).to_le_bytes());
            out.extend_from_slice(field);
        }
        Ok(out)
    })?;
    let mut file = BufWriter::new(std::fs::File::create(dir.join("sites.bin"))?);
    for part in parts {
        file.write_all(&part)?;
    }
    file.flush()?;
    std::fs::write(dir.join("root.der"), &ca.root_der)?;
    std::fs::write(dir.join("done"), b"")?;
    Ok(())
}

/// One site as stored: its name, chain PEM and sealed key.
struct Stored {
    host: String,
    chain_pem: Vec<u8>,
    sealed: String,
}

fn read_field(r: &mut impl Read) -> std::io::Result<Option<Vec<u8>>> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let mut field = vec![0u8; u32::from_le_bytes(len) as usize];
    r.read_exact(&mut field)?;
    Ok(Some(field))
}

/// Reads the dataset in batches and loads each batch on every core, as the edge reads its
/// store record by record (so a batch's buffers are reused by the next, not all held at once).
fn load_dataset(dir: &Path, store: &Store, n: usize) -> Result<Vec<Arc<Site>>, Error> {
    const BATCH: usize = 16 * 1024;
    let threads = std::thread::available_parallelism().map_or(2, |p| p.get());
    let file = std::fs::File::open(dir.join("sites.bin"))?;
    let (batches, ready) = std::sync::mpsc::sync_channel::<Vec<Stored>>(2);
    // Reading overlaps loading, as the edge's reads of its record files would.
    let reader = std::thread::spawn(move || -> Result<(), Error> {
        let mut r = BufReader::with_capacity(1 << 20, file);
        loop {
            let mut batch = Vec::with_capacity(BATCH);
            while batch.len() < BATCH {
                let Some(host) = read_field(&mut r)? else {
                    break;
                };
                let chain_pem = read_field(&mut r)?.ok_or("truncated dataset")?;
                let sealed = read_field(&mut r)?.ok_or("truncated dataset")?;
                batch.push(Stored {
                    host: String::from_utf8(host)?,
                    chain_pem,
                    sealed: String::from_utf8(sealed)?,
                });
            }
            if batch.is_empty() || batches.send(batch).is_err() {
                return Ok(());
            }
        }
    });
    let mut sites = Vec::with_capacity(n);
    for batch in ready {
        let chunk = batch.len().div_ceil(threads);
        std::thread::scope(|scope| {
            let handles: Vec<_> = batch
                .chunks(chunk)
                .map(|part| {
                    scope.spawn(move || {
                        part.iter()
                            .map(|s| load_site(store, s))
                            .collect::<Result<Vec<_>, _>>()
                    })
                })
                .collect();
            for h in handles {
                sites.extend(h.join().map_err(|_| Error::from("loader panicked"))??);
            }
            Ok::<_, Error>(())
        })?;
    }
    reader
        .join()
        .map_err(|_| Error::from("reader panicked"))??;
    Ok(sites)
}

// ---- one measured run ----

/// The edge's path from a stored record to a servable site.
fn load_site(store: &Store, stored: &Stored) -> Result<Arc<Site>, Error> {
    let names = vec![HostName::parse(&stored.host)?];
    let key_der =
        onehttps::managed::records::CertRecords::new(store).open_key(&names, &stored.sealed)?;
    let key = PrivateKeyDer::try_from(key_der.to_vec())?;
    let bundle = CertBundle::from_stored(&stored.chain_pem, &key)?;
    let config = SiteConfig {
        hosts: names,
        origins: vec![OriginUrl {
            authority: http::uri::Authority::from_static("127.0.0.1:8080"),
        }],
        cert: None,
        hsts: Some("max-age=31536000".into()),
        issuer: IssuerKind::Acme,
        managed: true,
        registered: false,
    };
    let served = ServedCert::new(bundle, Source::Acme);
    Ok(Arc::new(Site::build(
        config,
        Some(Arc::new(served)),
        Duration::from_secs(10),
    )))
}

fn child(n: usize, started: Instant) -> Result<(), Error> {
    let dir = dataset_dir(n);
    let baseline = rss_bytes("self");
    let store = Store::open(&dir.join("store"))?;
    let sites = load_dataset(&dir, &store, n)?;
    let loaded = started.elapsed();
    let table = Arc::new(SiteTable::new());
    table.publish(Routes::new(sites, None));
    let published = started.elapsed();
    let keys = Arc::new(KeyCache::new(KEY_CACHE));
    let settings = TlsSettings {
        min_version: MinTlsVersion::Tls12,
        hsts: None,
        session_tickets: true,
        session_cache_entries: 20_000,
        key_cache_entries: KEY_CACHE,
        default_host: None,
        watch_interval: Duration::from_secs(1),
    };
    let server = server_config::build(
        &settings,
        Arc::new(TableResolver::new(table.clone(), keys.clone())),
        None,
    )?;
    let mut roots = RootCertStore::empty();
    roots.add(CertificateDer::from(std::fs::read(dir.join("root.der"))?))?;
    let client = Arc::new(
        ClientConfig::builder_with_provider(Arc::new(server_config::provider()))
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_root_certificates(roots)
            .with_no_client_auth(),
    );
    let mut client_no_resume = (*client).clone();
    client_no_resume.resumption = rustls::client::Resumption::disabled();
    let client_no_resume = Arc::new(client_no_resume);

    // Serving: a real socket, the edge's ClientHello gate, a handshake and one byte echoed.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(first_handshake_on_socket(
        table.clone(),
        server.clone(),
        client.clone(),
        &site_name(n / 2),
    ))?;
    let to_serving = started.elapsed();
    let loaded_rss = rss_bytes("self").saturating_sub(baseline);

    // Cold: each handshake to a site never touched (its key sealed); cached: one site again.
    let cold_sites: Vec<String> = (0..HANDSHAKES.min(n))
        .map(|i| site_name(i * (n / HANDSHAKES.min(n)).max(1)))
        .collect();
    let cold = mean_server_time(&server, &client_no_resume, &cold_sites)?;
    let warm = site_name(n / 2);
    let cached = mean_server_time(&server, &client_no_resume, &vec![warm; HANDSHAKES])?;

    println!(
        "{:>9} | {:>9.1} MiB | {:>8} B | {:>11.2} s | {:>11.1} µs | {:>13.1} µs",
        n,
        loaded_rss as f64 / (1024.0 * 1024.0),
        loaded_rss / n as u64,
        to_serving.as_secs_f64(),
        cold.as_secs_f64() * 1e6,
        cached.as_secs_f64() * 1e6,
    );
    eprintln!(
        "{n} sites: loaded at {:.2} s, table published at {:.2} s; {} decoded keys held after the run",
        loaded.as_secs_f64(),
        published.as_secs_f64(),
        keys.len()
    );
    Ok(())
}

/// Accepts one connection through the edge's gate and handshake, then echoes one byte.
async fn first_handshake_on_socket(
    table: Arc<SiteTable>,
    server: Arc<ServerConfig>,
    client: Arc<ClientConfig>,
    host: &str,
) -> Result<(), Error> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let accept = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await?;
        let (mut tls, _site) =
            onehttps::tls::accept(tcp, &table, &Challenges::default(), server).await?;
        let mut byte = [0u8; 1];
        tls.read_exact(&mut byte).await?;
        tls.write_all(&byte).await?;
        tls.shutdown().await?;
        Ok::<_, Error>(())
    });
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let connector = tokio_rustls::TlsConnector::from(client);
    let mut tls = connector
        .connect(ServerName::try_from(host.to_owned())?, tcp)
        .await?;
    tls.write_all(b"x").await?;
    let mut byte = [0u8; 1];
    tls.read_exact(&mut byte).await?;
    accept.await??;
    Ok(())
}

/// Mean server-side time of a full in-memory TLS 1.3 handshake to each of `hosts`.
fn mean_server_time(
    server: &Arc<ServerConfig>,
    client: &Arc<ClientConfig>,
    hosts: &[String],
) -> Result<Duration, Error> {
    let mut total = Duration::ZERO;
    for host in hosts {
        total += handshake(server, client, host)?;
    }
    Ok(total / hosts.len().max(1) as u32)
}

/// Runs a handshake in memory; returns the time spent on the server's side.
fn handshake(
    server_config: &Arc<ServerConfig>,
    client_config: &Arc<ClientConfig>,
    host: &str,
) -> Result<Duration, Error> {
    let mut client = ClientConnection::new(
        client_config.clone(),
        ServerName::try_from(host.to_owned())?,
    )?;
    let mut server_time = Duration::ZERO;
    let t = Instant::now();
    let mut server = ServerConnection::new(server_config.clone())?;
    server_time += t.elapsed();
    let mut buf = Vec::with_capacity(16 * 1024);
    while client.is_handshaking() || server.is_handshaking() {
        buf.clear();
        while client.wants_write() {
            client.write_tls(&mut buf)?;
        }
        let t = Instant::now();
        let mut rd = &buf[..];
        while !rd.is_empty() {
            server.read_tls(&mut rd)?;
        }
        server.process_new_packets()?;
        buf.clear();
        while server.wants_write() {
            server.write_tls(&mut buf)?;
        }
        server_time += t.elapsed();
        let mut rd = &buf[..];
        while !rd.is_empty() {
            client.read_tls(&mut rd)?;
        }
        client.process_new_packets()?;
    }
    Ok(server_time)
}
